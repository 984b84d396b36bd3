//! `svid-broker serve` tells a configuration it cannot accept ("invalid --config", checked
//! before anything starts) from a valid one it cannot start with (a busy port, an unreadable
//! key): the operator's fix differs, so the message does.

use std::net::TcpListener;
use std::path::Path;

use svid_broker_dev::DevTrustDomain;
use svid_broker_identity::TrustDomain;

use crate::fixtures::{POLICY, id};
use crate::support::{Output, run};

/// A broker config in `dir` whose realm listens on `http_addr` and whose signing CA is
/// `[signing]` as given; the policy and bundle files it names are written next to it.
fn write_config(dir: &Path, http_addr: &str, signing: &str) -> String {
    let td = DevTrustDomain::new(
        TrustDomain::parse("example.org").unwrap(),
        [id("spiffe://example.org/workload")],
    )
    .unwrap();
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    std::fs::write(dir.join("bundle.json"), td.bundle_document_json()).unwrap();
    let path = dir.join("broker.toml");
    std::fs::write(
        &path,
        format!(
            r#"[server]
http_addr = "{http_addr}"
public_url = "http://{http_addr}"
[identity]
audience = "svid-broker"
bundle_files = [{{ trust_domain = "example.org", path = "bundle.json" }}]
[policy]
file = "policy.toml"
[signing]
{signing}
[log]
audit = "audit.log"
"#
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn serve(config: &str) -> Output {
    run(&["serve", "--config", config], None)
}

#[test]
fn a_busy_port_is_a_start_failure_naming_the_address_not_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    // Held for the whole test: the broker's bind must fail.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = serve(&write_config(dir.path(), &addr, "generate = true"));
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert_eq!(out.stdout, "", "no `ready` line");
    let line = out.one_stderr_line();
    assert!(
        line.starts_with("svid-broker: cannot start the broker: "),
        "{line}"
    );
    assert!(line.contains(&addr), "the address is named: {line}");
    assert!(
        line.to_ascii_lowercase().contains("address already in use"),
        "the cause is said: {line}"
    );
    assert!(!line.contains("invalid --config"), "{line}");
}

#[test]
fn an_unreadable_key_is_a_start_failure_and_a_bad_value_is_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca.pem");
    let signing = format!(
        "ca_cert_file = \"{0}\"\nca_key_file = \"{0}\"",
        missing.display()
    );
    let out = serve(&write_config(dir.path(), "127.0.0.1:0", &signing));
    assert_eq!(out.code(), Some(2), "{out:?}");
    let line = out.one_stderr_line();
    assert!(
        line.starts_with("svid-broker: cannot start the broker: "),
        "{line}"
    );
    assert!(!line.contains("invalid --config"), "{line}");

    let out = serve(&write_config(
        dir.path(),
        "not-an-address",
        "generate = true",
    ));
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.one_stderr_line()
            .starts_with("svid-broker: invalid --config: "),
        "{out:?}"
    );
}
