//! Tests of the real `svid-credential-provider` binary, run the way the kubelet runs it:
//! golden request/response files for all three API versions checked against a strict schema,
//! the diagnostics subcommands, the Docker credential-helper mode, and end-to-end flows against
//! an in-process broker, dev Workload APIs, Debian's `docker-registry` and `skopeo`.
//!
//! Declared by `crates/credential-provider/Cargo.toml` (Cargo hands `CARGO_BIN_EXE_*` only to
//! tests of the package that builds the binary). The process, broker and registry harness is
//! the workspace's one (`crates/testkit`), the same `tests/e2e` uses.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test harness helpers: a failed step must fail the test, with the step named"
)]

mod registry;
mod strict;
mod support;

use svid_broker_testkit as testkit;

mod bench;
mod flow;
mod helper;
mod protocol;
