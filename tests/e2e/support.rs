//! The `svid-broker` binary under test, run through the shared harness
//! (`svid_broker_testkit::process`): bounded waits, kill on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// The test venv `scripts/py-venv.sh` makes (`target/py-venv`).
const VENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/py-venv");

/// The venv's interpreter when it can `import` every module of `modules`
/// (`"spiffe, grpc"`), else `None` after a notice; under `CI=true` a missing venv fails the
/// test instead, so it never passes silently.
pub(crate) fn venv_python(modules: &str) -> Option<PathBuf> {
    let python = Path::new(VENV).join("bin/python");
    let usable = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if usable {
        return Some(python);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the venv {} with {modules} is required under CI=true (run scripts/py-venv.sh)",
        python.display()
    );
    eprintln!("SKIPPED: no venv with {modules} at {VENV}; run scripts/py-venv.sh");
    None
}
