//! `svid-broker dev`: the process contract (`ready`, files, signals) and the real `spiffe`
//! crate client talking to it.

use std::time::Duration;

use spiffe::{WorkloadApiClient, X509Source};
use svid_broker_identity::SpiffeId;
use svid_broker_identity::bundle::{BundleSet, SpiffeBundle};
use svid_broker_identity::jwt::JwtSvidValidator;

use crate::support::{daemon, run};

const WORKLOAD: &str = "spiffe://example.org/ns/default/sa/web";
const SECOND: &str = "spiffe://example.org/ns/default/sa/batch";

#[test]
fn dev_serves_the_workload_api_writes_bundles_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let mut daemon = daemon(&[
        "dev",
        "--dir",
        dir_arg,
        "--spiffe-id",
        WORKLOAD,
        "--spiffe-id",
        SECOND,
    ]);

    let socket = dir.path().join("workload.sock");
    assert!(socket.exists(), "DIR/workload.sock must exist once ready");
    let pem = std::fs::read_to_string(dir.path().join("bundle.pem")).unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE"));
    let document = std::fs::read(dir.path().join("bundle.jwks.json")).unwrap();
    let td = svid_broker_identity::TrustDomain::parse("example.org").unwrap();
    let bundle = SpiffeBundle::parse_document(td, &document).unwrap();
    assert!(!bundle.x509().is_empty() && !bundle.jwt().is_empty());
    assert!(bundle.ignored().is_empty(), "{:?}", bundle.ignored());
    assert_eq!(
        daemon.next_line(Duration::from_millis(200)),
        None,
        "stdout carries only `ready`"
    );

    let endpoint = format!("unix://{}", socket.display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (svids, token) = runtime.block_on(async {
        let client = WorkloadApiClient::connect_to(&endpoint).await.unwrap();
        let svids = client.fetch_all_x509_svids().await.unwrap();
        let token = client
            .fetch_jwt_token(&["svid-broker"], None)
            .await
            .unwrap();
        let source = X509Source::builder()
            .endpoint(&endpoint)
            .build()
            .await
            .unwrap();
        let default = source.svid().unwrap();
        assert_eq!(
            default.spiffe_id().to_string(),
            WORKLOAD,
            "first --spiffe-id is the default"
        );
        (svids, token)
    });
    let ids: Vec<String> = svids.iter().map(|s| s.spiffe_id().to_string()).collect();
    assert_eq!(ids, [WORKLOAD, SECOND]);

    // What the Workload API hands out verifies offline against the files `dev` wrote.
    let mut set = BundleSet::new();
    set.insert(bundle).unwrap();
    let claims = JwtSvidValidator::new(["svid-broker"])
        .unwrap()
        .validate(&token, &set, std::time::SystemTime::now())
        .unwrap();
    assert_eq!(claims.spiffe_id.as_str(), WORKLOAD);
    let chain = dir.path().join("chain.pem");
    let pem_chain: String = svids[1]
        .cert_chain()
        .iter()
        .map(|c| pem_block(c.as_ref()))
        .collect();
    std::fs::write(&chain, pem_chain).unwrap();
    let bundle_arg = format!("example.org={}", dir.path().join("bundle.pem").display());
    let out = run(
        &[
            "verify",
            "x509",
            "--bundle",
            &bundle_arg,
            chain.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), SECOND);
    drop(runtime);

    let status = daemon.signal_and_wait("TERM");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(!socket.exists(), "the socket is removed on shutdown");
}

#[test]
fn dev_stops_cleanly_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = daemon(&["dev", "--dir", dir.path().to_str().unwrap()]);
    let status = daemon.signal_and_wait("INT");
    assert!(status.success(), "{status:?}");
}

#[test]
fn dev_rejects_bad_identities_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--spiffe-id", "spiffe://Example.org/web"], "lower case"),
        (&["--spiffe-id", "spiffe://example.org"], "no path"),
        (
            &[
                "--spiffe-id",
                WORKLOAD,
                "--spiffe-id",
                "spiffe://other.org/x",
            ],
            "not in trust domain",
        ),
        (&["--spiffe-id", WORKLOAD, "--spiffe-id", WORKLOAD], "twice"),
        (
            &["--spiffe-id", WORKLOAD, "--trust-domain", "other.org"],
            "not in trust domain",
        ),
    ];
    for (extra, rule) in cases {
        let out = run(&[&["dev", "--dir", dir_arg][..], extra].concat(), None);
        assert_eq!(out.code(), Some(2), "{extra:?}: {out:?}");
        assert!(out.stderr.contains(rule), "{extra:?}: {}", out.stderr);
        assert!(!dir.path().join("workload.sock").exists());
    }
}

fn pem_block(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[test]
fn spiffe_id_type_round_trips_with_the_spiffe_crate() {
    // Our IDs and the spiffe crate's agree on canonical form for what `dev` serves.
    let ours = SpiffeId::parse(WORKLOAD).unwrap();
    let theirs = spiffe::SpiffeId::new(WORKLOAD).unwrap();
    assert_eq!(ours.as_str(), theirs.to_string());
}
