use std::net::Ipv4Addr;

use super::*;
use crate::testutil::{Canned, TestCa, TestServer};

const REMOTE: &str = "remote.test";
const ENDPOINT_ID: &str = "spiffe://remote.test/bundle-endpoint";

fn remote() -> TrustDomain {
    TrustDomain::parse(REMOTE).unwrap()
}

fn authorities(source: &FederationSource) -> Vec<CertificateDer<'static>> {
    source
        .bundles()
        .x509(&remote())
        .map(|b| b.authorities().to_vec())
        .unwrap_or_default()
}

fn fetch_error(e: &FederationError) -> &FetchError {
    match e {
        FederationError::Fetch { source, .. } => source,
        other => panic!("expected a fetch error, got {other:?}"),
    }
}

/// A Web PKI endpoint (private CA) serving `body`, and an `https_web` source trusting that CA.
async fn web_setup(
    body: String,
    options: FederationOptions,
) -> (TestServer, FederationSource, TestCa) {
    let web_ca = TestCa::new("web root", None);
    let (chain, key) = web_ca.server_cert();
    let server = TestServer::start(chain, key, Canned::ok(body)).await;
    let rel = FederationRelationship::https_web(
        remote(),
        BundleEndpointUrl::parse(&server.url("/bundle")).unwrap(),
        WebRoots::Custom(vec![web_ca.der()]),
    );
    (server, FederationSource::new(rel, options).unwrap(), web_ca)
}

/// A SPIFFE endpoint whose certificate is an SVID for `served_id` issued by `ca`.
async fn spiffe_server(ca: &TestCa, served_id: &str, body: String) -> TestServer {
    let (chain, key) = ca.svid(served_id);
    TestServer::start(chain, key, Canned::ok(body)).await
}

fn spiffe_source(
    server: &TestServer,
    endpoint_id: &str,
    bootstrap: SpiffeBundle,
) -> FederationSource {
    let rel = FederationRelationship::https_spiffe(
        remote(),
        BundleEndpointUrl::parse(&server.url("/")).unwrap(),
        SpiffeId::parse(endpoint_id).unwrap(),
        bootstrap,
    )
    .unwrap();
    FederationSource::new(rel, FederationOptions::default()).unwrap()
}

#[tokio::test]
async fn https_web_fetches_and_publishes() {
    let remote_ca = TestCa::new("remote", Some(REMOTE));
    let (server, source, _) = web_setup(
        remote_ca.bundle_document(REMOTE, Some(1)),
        FederationOptions::default(),
    )
    .await;
    assert!(
        source.bundles().is_empty(),
        "nothing before the first fetch"
    );
    let mut updates = source.subscribe();

    assert_eq!(
        source.refresh_now().await.unwrap(),
        RefreshOutcome::Updated { sequence: Some(1) }
    );
    assert!(updates.has_changed().unwrap());
    updates.borrow_and_update();
    assert_eq!(authorities(&source), [remote_ca.der()]);
    assert_eq!(source.current().unwrap().sequence(), Some(1));
    // The document's hint is 60 s, inside the default clamps.
    assert_eq!(source.refresh_interval(), Duration::from_secs(60));

    // Same document again: nothing new is published.
    assert_eq!(
        source.refresh_now().await.unwrap(),
        RefreshOutcome::Unchanged
    );
    assert!(!updates.has_changed().unwrap());
    assert_eq!(server.requests(), 2);
    assert_eq!(source.error_count(), 0);
}

#[tokio::test]
async fn https_web_rejects_an_untrusted_server() {
    let remote_ca = TestCa::new("remote", Some(REMOTE));
    let other_root = TestCa::new("someone else", None);
    let web_ca = TestCa::new("web root", None);
    let (chain, key) = web_ca.server_cert();
    let server = TestServer::start(
        chain,
        key,
        Canned::ok(remote_ca.bundle_document(REMOTE, None)),
    )
    .await;
    let url = BundleEndpointUrl::parse(&server.url("/")).unwrap();

    for roots in [WebRoots::Custom(vec![other_root.der()]), WebRoots::Mozilla] {
        let rel = FederationRelationship::https_web(remote(), url.clone(), roots);
        let source = FederationSource::new(rel, FederationOptions::default()).unwrap();
        let err = source.refresh_now().await.unwrap_err();
        assert!(
            matches!(fetch_error(&err), FetchError::Tls { .. }),
            "{err:?}"
        );
        assert!(source.bundles().is_empty());
        assert_eq!(source.error_count(), 1);
        assert!(source.last_error().is_some());
    }
    assert_eq!(
        server.requests(),
        0,
        "no request may reach an unauthenticated server"
    );
}

#[tokio::test]
async fn https_web_checks_the_hostname() {
    // The certificate is for 127.0.0.1; reaching the same server as "localhost" must fail.
    let remote_ca = TestCa::new("remote", Some(REMOTE));
    let web_ca = TestCa::new("web root", None);
    let (chain, key) = web_ca.server_cert();
    let server = TestServer::start(
        chain,
        key,
        Canned::ok(remote_ca.bundle_document(REMOTE, None)),
    )
    .await;
    let url = format!("https://localhost:{}/", server.addr.port());
    let rel = FederationRelationship::https_web(
        remote(),
        BundleEndpointUrl::parse(&url).unwrap(),
        WebRoots::Custom(vec![web_ca.der()]),
    );
    let source = FederationSource::new(rel, FederationOptions::default()).unwrap();
    let err = source.refresh_now().await.unwrap_err();
    // localhost may resolve to ::1 where nothing listens; either way nothing is accepted.
    assert!(
        matches!(
            fetch_error(&err),
            FetchError::Tls { .. } | FetchError::Connect { .. }
        ),
        "{err:?}"
    );
    assert!(source.bundles().is_empty());
}

#[tokio::test]
async fn https_spiffe_uses_bootstrap_then_latest_bundle() {
    let ca1 = TestCa::new("remote ca 1", Some(REMOTE));
    let ca2 = TestCa::new("remote ca 2", Some(REMOTE));
    let server = spiffe_server(&ca1, ENDPOINT_ID, ca1.bundle_document(REMOTE, Some(1))).await;
    let source = spiffe_source(&server, ENDPOINT_ID, ca1.spiffe_bundle(REMOTE));
    // Self-serving endpoint: the bootstrap bundle is published from the start.
    assert_eq!(authorities(&source), [ca1.der()]);

    assert_eq!(
        source.refresh_now().await.unwrap(),
        RefreshOutcome::Updated { sequence: Some(1) }
    );

    // The endpoint now publishes a bundle that no longer holds the CA of its own certificate.
    // That fetch is still authenticated by the current bundle (ca1) and accepted...
    server.set(Canned::ok(ca2.bundle_document(REMOTE, Some(2))));
    assert_eq!(
        source.refresh_now().await.unwrap(),
        RefreshOutcome::Updated { sequence: Some(2) }
    );
    assert_eq!(authorities(&source), [ca2.der()]);
    // ...and the next fetch must use that latest bundle, so the ca1 certificate is refused.
    let err = source.refresh_now().await.unwrap_err();
    assert!(
        matches!(fetch_error(&err), FetchError::Tls { .. }),
        "{err:?}"
    );
    assert_eq!(authorities(&source), [ca2.der()]);
}

#[tokio::test]
async fn https_spiffe_rejects_the_wrong_endpoint_id() {
    let ca = TestCa::new("remote ca", Some(REMOTE));
    let server = spiffe_server(
        &ca,
        "spiffe://remote.test/not-the-endpoint",
        ca.bundle_document(REMOTE, Some(1)),
    )
    .await;
    let source = spiffe_source(&server, ENDPOINT_ID, ca.spiffe_bundle(REMOTE));
    let err = source.refresh_now().await.unwrap_err();
    assert!(
        matches!(fetch_error(&err), FetchError::Tls { .. }),
        "{err:?}"
    );
    assert_eq!(server.requests(), 0);
    // Still the bootstrap bundle, untouched.
    assert_eq!(authorities(&source), [ca.der()]);
    assert_eq!(source.current().unwrap().sequence(), None);
}

#[tokio::test]
async fn https_spiffe_rejects_an_svid_from_another_ca() {
    let ca = TestCa::new("remote ca", Some(REMOTE));
    let impostor = TestCa::new("impostor", Some(REMOTE));
    let server = spiffe_server(
        &impostor,
        ENDPOINT_ID,
        impostor.bundle_document(REMOTE, Some(9)),
    )
    .await;
    let source = spiffe_source(&server, ENDPOINT_ID, ca.spiffe_bundle(REMOTE));
    let err = source.refresh_now().await.unwrap_err();
    assert!(
        matches!(fetch_error(&err), FetchError::Tls { .. }),
        "{err:?}"
    );
    assert_eq!(authorities(&source), [ca.der()]);
}

#[tokio::test]
async fn https_spiffe_endpoint_in_another_trust_domain_always_uses_bootstrap() {
    // The bundle of remote.test is served by an endpoint of hub.test.
    let hub = TestCa::new("hub ca", Some("hub.test"));
    let remote_ca = TestCa::new("remote ca", Some(REMOTE));
    let endpoint = "spiffe://hub.test/bundles";
    let server = spiffe_server(&hub, endpoint, remote_ca.bundle_document(REMOTE, Some(1))).await;
    let source = spiffe_source(&server, endpoint, hub.spiffe_bundle("hub.test"));
    assert!(
        source.bundles().is_empty(),
        "the hub bootstrap is not remote.test's bundle"
    );
    source.refresh_now().await.unwrap();
    assert_eq!(authorities(&source), [remote_ca.der()]);
    // A second fetch still authenticates the hub with its bootstrap bundle.
    server.set(Canned::ok(remote_ca.bundle_document(REMOTE, Some(2))));
    assert_eq!(
        source.refresh_now().await.unwrap(),
        RefreshOutcome::Updated { sequence: Some(2) }
    );
}

#[tokio::test]
async fn bad_responses_keep_the_last_good_bundle() {
    let remote_ca = TestCa::new("remote", Some(REMOTE));
    let options = FederationOptions::default().max_response_bytes(64 * 1024);
    let (server, source, _) = web_setup(remote_ca.bundle_document(REMOTE, Some(5)), options).await;
    source.refresh_now().await.unwrap();
    let good = source.bundles();

    type Check = fn(&FederationError) -> bool;
    let cases: Vec<(Canned, Check)> = vec![
        (
            Canned::status(
                "302 Found",
                &[("location", "https://127.0.0.1:1/elsewhere")],
            ),
            |e| matches!(fetch_error(e), FetchError::Redirect { status: 302 }),
        ),
        (Canned::status("500 Internal Server Error", &[]), |e| {
            matches!(fetch_error(e), FetchError::Status { status: 500 })
        }),
        (Canned::ok("this is not json"), |e| {
            matches!(e, FederationError::Parse { .. })
        }),
        (
            Canned::ok(r#"{"keys":[{"kty":"EC","use":"x509-svid","x5c":["!!"]}]}"#),
            |e| matches!(e, FederationError::Parse { .. }),
        ),
        (Canned::ok(vec![b' '; 64 * 1024 + 1]), |e| {
            matches!(fetch_error(e), FetchError::TooLarge { limit: 65536 })
        }),
        (
            Canned {
                omit_length: true,
                ..Canned::ok(vec![b' '; 200 * 1024])
            },
            |e| matches!(fetch_error(e), FetchError::TooLarge { .. }),
        ),
        // An older sequence is a stale document: ignored.
        (
            Canned::ok(remote_ca.bundle_document(REMOTE, Some(4))),
            |e| {
                matches!(
                    e,
                    FederationError::SequenceRegressed {
                        current: 5,
                        fetched: 4,
                        ..
                    }
                )
            },
        ),
    ];
    let total = cases.len() as u64;
    for (canned, check) in cases {
        server.set(canned.clone());
        let err = source.refresh_now().await.unwrap_err();
        assert!(check(&err), "{canned:?} gave {err:?}");
        assert!(
            Arc::ptr_eq(&good, &source.bundles()),
            "{canned:?} replaced the bundle"
        );
        assert!(Arc::ptr_eq(&err, &source.last_error().unwrap()));
    }
    assert_eq!(source.error_count(), total);

    // A newer sequence is accepted and clears the error.
    let newer = TestCa::new("newer", Some(REMOTE));
    server.set(Canned::ok(newer.bundle_document(REMOTE, Some(6))));
    source.refresh_now().await.unwrap();
    assert_eq!(authorities(&source), [newer.der()]);
    assert!(source.last_error().is_none());
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold connections without ever answering the TLS handshake.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let rel = FederationRelationship::https_web(
        remote(),
        BundleEndpointUrl::parse(&format!("https://127.0.0.1:{port}/")).unwrap(),
        WebRoots::Custom(vec![TestCa::new("r", None).der()]),
    );
    let timeout = Duration::from_millis(200);
    let source =
        FederationSource::new(rel, FederationOptions::default().fetch_timeout(timeout)).unwrap();
    let err = source.refresh_now().await.unwrap_err();
    assert!(
        matches!(fetch_error(&err), FetchError::Timeout { timeout: t } if *t == timeout),
        "{err:?}"
    );
    holder.abort();
}

#[tokio::test]
async fn start_fetches_in_the_background() {
    let remote_ca = TestCa::new("remote", Some(REMOTE));
    let web_ca = TestCa::new("web root", None);
    let (chain, key) = web_ca.server_cert();
    let server = TestServer::start(
        chain,
        key,
        Canned::ok(remote_ca.bundle_document(REMOTE, Some(1))),
    )
    .await;
    let rel = FederationRelationship::https_web(
        remote(),
        BundleEndpointUrl::parse(&server.url("/")).unwrap(),
        WebRoots::Custom(vec![web_ca.der()]),
    );
    let source = FederationSource::start(rel, FederationOptions::default()).unwrap();
    let mut updates = source.subscribe();
    tokio::time::timeout(Duration::from_secs(10), updates.changed())
        .await
        .expect("no fetch within 10 s")
        .unwrap();
    assert_eq!(authorities(&source), [remote_ca.der()]);
}

#[test]
fn start_needs_a_runtime() {
    let rel = FederationRelationship::https_web(
        remote(),
        BundleEndpointUrl::parse("https://127.0.0.1:1/").unwrap(),
        WebRoots::Mozilla,
    );
    assert!(matches!(
        FederationSource::start(rel, FederationOptions::default()),
        Err(FederationConfigError::NoRuntime)
    ));
}

#[tokio::test]
async fn refresh_interval_follows_the_hint_within_clamps() {
    let remote_ca = TestCa::new("remote", Some(REMOTE));
    let no_hint = SpiffeBundle::parse_document(
        remote(),
        remote_ca
            .spiffe_bundle(REMOTE)
            .with_sequence(1)
            .to_document_json()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(no_hint.refresh_hint(), None);
    let (_server, source, _) =
        web_setup(no_hint.to_document_json(), FederationOptions::default()).await;
    // Nothing fetched yet: the spec's default of 5 minutes.
    assert_eq!(source.refresh_interval(), Duration::from_secs(300));
    source.refresh_now().await.unwrap();
    assert_eq!(source.refresh_interval(), Duration::from_secs(300));

    // A 60 s hint under a 120 s floor is raised to the floor.
    let options = FederationOptions::default()
        .refresh_bounds(Duration::from_secs(120), Duration::from_secs(600));
    let (_server, source, _) = web_setup(remote_ca.bundle_document(REMOTE, None), options).await;
    source.refresh_now().await.unwrap();
    assert_eq!(source.refresh_interval(), Duration::from_secs(120));

    // A 300 s default under a 100 s ceiling is lowered to the ceiling.
    let options = FederationOptions::default()
        .refresh_bounds(Duration::from_secs(10), Duration::from_secs(100));
    let (_server, source, _) = web_setup(no_hint.to_document_json(), options).await;
    assert_eq!(source.refresh_interval(), Duration::from_secs(100));
}

#[test]
fn configuration_errors() {
    let ca = TestCa::new("ca", Some("other.test"));
    let url = BundleEndpointUrl::parse("https://example.org/").unwrap();
    let err = FederationRelationship::https_spiffe(
        remote(),
        url.clone(),
        SpiffeId::parse(ENDPOINT_ID).unwrap(),
        ca.spiffe_bundle("other.test"),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            FederationConfigError::BootstrapTrustDomainMismatch { .. }
        ),
        "{err:?}"
    );

    let rel = FederationRelationship::https_web(remote(), url.clone(), WebRoots::Mozilla);
    let bad_options = [
        FederationOptions::default().refresh_bounds(Duration::ZERO, Duration::from_secs(1)),
        FederationOptions::default().refresh_bounds(Duration::from_secs(2), Duration::from_secs(1)),
        FederationOptions::default().fetch_timeout(Duration::ZERO),
        FederationOptions::default().max_response_bytes(0),
        FederationOptions::default().max_response_bytes(DEFAULT_MAX_RESPONSE_BYTES + 1),
    ];
    for options in bad_options {
        assert!(
            FederationSource::new(rel.clone(), options.clone()).is_err(),
            "{options:?}"
        );
    }
    assert!(FederationSource::new(rel, FederationOptions::default()).is_ok());

    let empty = FederationRelationship::https_web(remote(), url, WebRoots::Custom(Vec::new()));
    assert!(matches!(
        FederationSource::new(empty, FederationOptions::default()),
        Err(FederationConfigError::NoRoots)
    ));
}

#[test]
fn web_roots_from_pem() {
    let (a, b) = (TestCa::new("a", None), TestCa::new("b", None));
    let pem = format!("{}{}", a.pem(), b.pem());
    match WebRoots::from_pem(pem.as_bytes(), false).unwrap() {
        WebRoots::Custom(certs) => assert_eq!(certs, [a.der(), b.der()]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        WebRoots::from_pem(a.pem().as_bytes(), true).unwrap(),
        WebRoots::MozillaAnd(_)
    ));
    assert!(matches!(
        WebRoots::from_pem(b"", false),
        Err(FederationConfigError::NoRoots)
    ));
    assert!(matches!(
        WebRoots::from_pem(
            b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
            false
        ),
        Err(FederationConfigError::RootsPem)
    ));
    assert!(matches!(
        WebRoots::from_pem(&vec![b'a'; MAX_ROOTS_PEM_BYTES + 1], false),
        Err(FederationConfigError::RootsPemTooLarge { .. })
    ));
    // A DER blob that is not a certificate cannot become a trust anchor.
    let rel = FederationRelationship::https_web(
        remote(),
        BundleEndpointUrl::parse("https://example.org/").unwrap(),
        WebRoots::Custom(vec![CertificateDer::from(vec![0x30, 0x00])]),
    );
    assert!(matches!(
        FederationSource::new(rel, FederationOptions::default()),
        Err(FederationConfigError::InvalidRoot { index: 0, .. })
    ));
}
