//! Tests of the real `svid-credential-provider` binary, run the way the kubelet runs it:
//! golden request/response files for all three API versions checked against a strict schema,
//! the diagnostics subcommands, the Docker credential-helper mode, and end-to-end flows against
//! an in-process broker, dev Workload APIs, Debian's `docker-registry` and `skopeo`.
//!
//! Declared by `crates/credential-provider/Cargo.toml` (Cargo hands `CARGO_BIN_EXE_*` only to
//! tests of the package that builds the binary); the registry harness is shared with
//! `tests/e2e` through `#[path]`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test harness helpers: a failed step must fail the test, with the step named"
)]

mod strict;
mod support;

#[allow(dead_code, reason = "shared harness: this binary uses part of it")]
#[path = "../e2e/registry.rs"]
mod registry;

mod bench;
mod flow;
mod helper;
mod protocol;
