//! The harness svid-broker's tests share, so each fixture has one owner:
//!
//! - [`process`]: child processes with bounded waits; a run that hangs is killed and fails the
//!   test instead of hanging it, and a long-running child is killed when its guard drops. Only
//!   processes a test started are ever signalled.
//! - [`broker`]: an in-process broker seeded with a dev trust domain and a policy, on its own
//!   runtime, shut down on drop.
//! - [`registry`]: Debian's `docker-registry` (from `svid_broker_dev::registry`) in a temporary
//!   directory, `skopeo` with an isolated `HOME`, and a one-layer OCI image to push.
//!
//! A failed step panics with the step named: these are test helpers, and a panic is how a test
//! fails. Nothing here is used by a shipped binary (`publish = false`).
//!
//! Inner modules refer to each other through `super::`, so a test binary of a package without
//! this crate as a dependency can include them with `#[path]` (see `tests/e2e-plugin/main.rs`).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test harness: a failed step must fail the calling test, with the step named"
)]

pub mod broker;
pub mod process;
pub mod registry;
