//! The `svid-broker` binary under test, run through the shared harness
//! (`svid_broker_testkit::process`): bounded waits, kill on drop.

use std::process::Command;

pub(crate) use svid_broker_testkit::process::{Daemon, Output, STEP_TIMEOUT};

/// The binary under test, built by Cargo for this test target.
pub(crate) fn broker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_svid-broker"))
}

/// Runs `svid-broker ARGS` with `stdin` fed in, waiting at most [`STEP_TIMEOUT`].
pub(crate) fn run(args: &[&str], stdin: Option<&str>) -> Output {
    svid_broker_testkit::process::run(broker().args(args), stdin.map(str::as_bytes))
}

/// `svid-broker ARGS` as a long-running process, once it printed `ready`; killed on drop.
pub(crate) fn daemon(args: &[&str]) -> Daemon {
    Daemon::start_until_ready(broker().args(args))
}
