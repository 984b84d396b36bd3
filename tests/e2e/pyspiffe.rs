//! py-spiffe (grpc-core through grpcio) against `svid-broker dev`, with no client option: the
//! channel sends the percent-encoded socket path as `:authority`, which h2 alone would refuse
//! (crates/dev/src/server/authority.rs).
//!
//! The venv is `target/py-venv`, made by `scripts/py-venv.sh` (which `scripts/test.sh` runs)
//! with pinned `spiffe` and `grpcio` from PyPI. Without it this test fails under `CI=true` and
//! is skipped with a notice otherwise.

use std::path::Path;
use std::process::Command;

use crate::support::daemon;

const WORKLOAD: &str = "spiffe://example.org/ns/default/sa/web";
const SECOND: &str = "spiffe://example.org/ns/default/sa/batch";
const AUDIENCE: &str = "svid-broker";
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/e2e/py/workload_api.py"
);
/// Runs the script and returns its stdout lines; a non-zero exit fails the test with stderr.
fn run_script(python: &Path, socket: &Path) -> Vec<String> {
    let out = svid_broker_testkit::process::run(
        Command::new(python)
            .arg(SCRIPT)
            .arg(socket)
            .arg(AUDIENCE)
            .env_remove("SPIFFE_ENDPOINT_SOCKET"),
        None,
    );
    assert!(
        out.success(),
        "py-spiffe failed ({}):\n{}\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    out.stdout.lines().map(str::to_owned).collect()
}

#[test]
fn py_spiffe_makes_every_workload_api_call_against_dev() {
    let Some(python) = crate::support::venv_python("spiffe, grpc") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = daemon(&[
        "dev",
        "--dir",
        dir.path().to_str().unwrap(),
        "--spiffe-id",
        WORKLOAD,
        "--spiffe-id",
        SECOND,
    ]);

    let lines = run_script(&python, &dir.path().join("workload.sock"));
    assert_eq!(
        lines,
        [
            format!("x509_svid={WORKLOAD}"),
            "x509_svid_chain=1".to_owned(),
            "x509_bundle=example.org authorities=1".to_owned(),
            format!("jwt_svid={WORKLOAD} aud={AUDIENCE}"),
            "jwt_bundle=example.org authorities=1".to_owned(),
            format!("validated={WORKLOAD}"),
            format!("verified_locally={WORKLOAD}"),
            "wrong_audience=refused".to_owned(),
        ]
    );

    let status = daemon.signal_and_wait("TERM");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}
