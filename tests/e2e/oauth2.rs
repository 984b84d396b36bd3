//! The RFC 8693 endpoint (`POST {public_url}/oauth2/token`) with a client library nobody here
//! wrote: authlib's `OAuth2Session` (PyPI, pinned in `scripts/py-venv.sh`) exchanges a
//! JWT-SVID for a registry access token, and is refused with RFC 6749 error codes for a broken
//! signature, an unknown service and another grant type; the JWT-SVID is never echoed.
//!
//! Without the venv this test fails under `CI=true` and is skipped with a notice otherwise.

use std::process::Command;
use std::sync::Arc;

use svid_broker_dev::DevTrustDomain;
use svid_broker_identity::TrustDomain;
use svid_broker_identity::secret::ExposeSecret as _;

use crate::fixtures::{AUDIENCE, BrokerSpec, READER, SERVICE, id};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/e2e/py/oauth2_client.py"
);
#[test]
fn authlib_exchanges_a_jwt_svid_at_the_rfc_8693_endpoint() {
    let Some(python) = crate::support::venv_python("authlib, requests") else {
        return;
    };
    let td = Arc::new(
        DevTrustDomain::new(TrustDomain::parse("example.org").unwrap(), [id(READER)]).unwrap(),
    );
    let broker = BrokerSpec::new(Arc::clone(&td)).start();
    let dir = tempfile::tempdir().unwrap();
    let svid_file = dir.path().join("jwt-svid");
    let jwt = td.issue_jwt_svid(&id(READER), &[AUDIENCE]).unwrap();
    std::fs::write(&svid_file, jwt.token().expose_secret()).unwrap();

    let url = format!("http://{}/oauth2/token", broker.http_addr());
    let out = svid_broker_testkit::process::run(
        Command::new(&python)
            .arg(SCRIPT)
            .args([url.as_str(), SERVICE, "repository:team/app:pull"])
            .arg("--jwt-svid-file")
            .arg(&svid_file),
        None,
    );
    assert!(
        out.success(),
        "authlib failed ({}):\n{}\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "issued_token_type=urn:ietf:params:oauth:token-type:access_token",
            "token_type=Bearer",
            "scope=repository:team/app:pull",
            "expires_in_positive=true",
            "expires_at_set=true",
            &format!("aud={SERVICE}"),
            &format!("sub={READER}"),
            "tampered=invalid_request",
            "unknown_service=invalid_target",
            "other_grant=unsupported_grant_type",
            "echoed=false",
        ]
    );
    let audit = broker.audit();
    assert!(
        audit.contains("\"endpoint\":\"oauth2_token\""),
        "the exchange is audited as the OAuth 2.0 endpoint's: {audit}"
    );
    assert!(
        !audit.contains(jwt.token().expose_secret()),
        "the audit log holds the JWT-SVID"
    );
}
