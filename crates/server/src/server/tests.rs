use std::io::{Read as _, Write as _};
use std::path::Path;

use base64::Engine as _;
use svid_broker_dev::DevTrustDomain;
use svid_broker_identity::TrustDomain;
use svid_broker_identity::clock::SystemClock;

use svid_broker_identity::secret::ExposeSecret as _;

use super::*;
use crate::testutil::{AUDIENCE, BUILDER, POLICY, id};

fn write_config(dir: &Path, td: &DevTrustDomain) -> BrokerConfig {
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    std::fs::write(dir.join("bundle.json"), td.bundle_document_json()).unwrap();
    let text = r#"
[server]
http_addr = "127.0.0.1:0"
public_url = "http://127.0.0.1:1"
shutdown_grace_seconds = 5
[identity]
audience = "svid-broker"
bundle_files = [{ trust_domain = "example.org", path = "bundle.json" }]
[policy]
file = "policy.toml"
poll_seconds = 3600
[signing]
generate = true
[log]
audit = "audit.log"
"#;
    BrokerConfig::from_toml_str(text, dir).unwrap()
}

/// One HTTP/1.1 request over a fresh connection; returns (status, body).
async fn http(addr: SocketAddr, path: &str, auth: Option<String>) -> (u16, String) {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split_once("\r\n\r\n").map(|x| x.1.to_owned()).unwrap();
        (status, body)
    })
    .await
    .unwrap()
}

fn basic(td: &DevTrustDomain, who: &str) -> String {
    let jwt = td.issue_jwt_svid(&id(who), &[AUDIENCE]).unwrap();
    let raw = format!("{who}:{}", jwt.token().expose_secret());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn granted(body: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    crate::testutil::claims(v["token"].as_str().unwrap())["access"].clone()
}

#[tokio::test]
async fn serves_reloads_rotates_and_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let td = DevTrustDomain::new(
        TrustDomain::parse("example.org").unwrap(),
        [id("spiffe://example.org/w")],
    )
    .unwrap();
    let config = write_config(dir.path(), &td);
    let handle = BrokerServer::start(config, Arc::new(SystemClock))
        .await
        .unwrap();
    let addr = handle.http_addr();
    assert_ne!(addr.port(), 0);
    assert!(handle.grpc_addr().is_none());
    assert!(
        handle
            .ca_bundle_pem()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );

    assert_eq!(http(addr, "/healthz", None).await.0, 200);
    assert_eq!(http(addr, "/readyz", None).await.0, 200);
    let token_path = "/token?service=registry.local&scope=repository:team/app:push";
    let (status, body) = http(addr, token_path, Some(basic(&td, BUILDER))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(granted(&body)[0]["actions"], serde_json::json!(["push"]));

    // A broken policy is refused and the last good one stays.
    std::fs::write(dir.path().join("policy.toml"), "[[rules]]\nbogus = 1\n").unwrap();
    assert!(matches!(
        handle.reload_policy(),
        Err(ServerError::Policy { .. })
    ));
    let (_, body) = http(addr, token_path, Some(basic(&td, BUILDER))).await;
    assert_eq!(granted(&body)[0]["actions"], serde_json::json!(["push"]));

    // A good one goes live at once (the cache is dropped too).
    let pull_only = POLICY.replace("actions = [\"pull\", \"push\"]", "actions = [\"pull\"]");
    std::fs::write(dir.path().join("policy.toml"), pull_only).unwrap();
    handle.reload_policy().unwrap();
    let (_, body) = http(addr, token_path, Some(basic(&td, BUILDER))).await;
    assert_eq!(granted(&body), serde_json::json!([]));
    let (_, metrics) = http(addr, "/metrics", None).await;
    assert!(metrics.contains("svid_broker_policy_reloads_total{result=\"ok\"} 1"));
    assert!(metrics.contains("svid_broker_policy_reloads_total{result=\"failed\"} 1"));

    // Rotation publishes the new leaf next to the previous one (each leaf is listed once per
    // `kid` format).
    let per_leaf = svid_broker_token::KidFormat::ALL.len();
    let (_, jwks) = http(addr, "/jwks.json", None).await;
    assert_eq!(jwks.matches("\"kid\"").count(), per_leaf);
    handle.rotate_signing_key(SystemTime::now()).unwrap();
    let (_, jwks) = http(addr, "/jwks.json", None).await;
    assert_eq!(jwks.matches("\"kid\"").count(), 2 * per_leaf);

    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert_eq!(audit.lines().count(), 3);
    assert!(audit.lines().all(|l| l.contains(BUILDER)));

    handle.shutdown().await;
    let refused = tokio::task::spawn_blocking(move || std::net::TcpStream::connect(addr).is_err())
        .await
        .unwrap();
    assert!(refused, "listener still accepting after shutdown");
}

#[tokio::test]
async fn start_fails_cleanly_on_a_bad_policy_or_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let td = DevTrustDomain::new(
        TrustDomain::parse("example.org").unwrap(),
        [id("spiffe://example.org/w")],
    )
    .unwrap();
    let mut config = write_config(dir.path(), &td);
    std::fs::write(dir.path().join("policy.toml"), "nonsense").unwrap();
    assert!(matches!(
        BrokerServer::start(config.clone(), Arc::new(SystemClock)).await,
        Err(ServerError::Policy { .. })
    ));
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    config.signing = SigningSource::Files {
        cert: dir.path().join("missing.pem"),
        key: dir.path().join("missing.key"),
    };
    assert!(matches!(
        BrokerServer::start(config, Arc::new(SystemClock)).await,
        Err(ServerError::Keys(_))
    ));
}

/// Replicas sharing the CA files derive the same credential keys: a refresh token issued by
/// one verifies on the other; a different CA key does not.
#[test]
fn replicas_with_the_same_ca_share_credential_keys() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    let dir = tempfile::tempdir().unwrap();
    let td = DevTrustDomain::new(
        TrustDomain::parse("example.org").unwrap(),
        [id("spiffe://example.org/w")],
    )
    .unwrap();
    let mut config = write_config(dir.path(), &td);
    let ca = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (
            dir.path().join(format!("{name}.pem")),
            dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        SigningSource::Files { cert: c, key: k }
    };
    let (first, second) = (ca("a"), ca("b"));
    let now = SystemTime::now();
    config.signing = first;
    let (_, one) = load_signing(&config, now).unwrap();
    let (_, two) = load_signing(&config, now).unwrap();
    config.signing = second;
    let (_, other) = load_signing(&config, now).unwrap();
    let kind = crate::credential::CredentialKind::RefreshToken;
    let issued = one
        .issue(
            kind,
            &id(BUILDER),
            "registry.local",
            &[],
            Duration::from_secs(60),
            now,
        )
        .unwrap();
    assert!(two.verify(kind, issued.secret.expose_secret(), now).is_ok());
    assert!(
        other
            .verify(kind, issued.secret.expose_secret(), now)
            .is_err()
    );

    // A key file that also holds the CA certificate (a common combined layout) derives the
    // same keys as the key alone: the secret comes from the private key the CA loaded, never
    // from the first PEM block. And the public certificate is no key: a credential forged with
    // keys derived from it is refused (the review's proof of concept, now failing).
    let SigningSource::Files { cert, key } = ca("c") else {
        unreachable!()
    };
    let combined = dir.path().join("combined.pem");
    let cert_pem = std::fs::read_to_string(&cert).unwrap();
    let key_pem = std::fs::read_to_string(&key).unwrap();
    std::fs::write(&combined, format!("{cert_pem}{key_pem}")).unwrap();
    config.signing = SigningSource::Files {
        cert: cert.clone(),
        key,
    };
    let (_, key_only) = load_signing(&config, now).unwrap();
    config.signing = SigningSource::Files {
        cert,
        key: combined,
    };
    let (_, from_combined) = load_signing(&config, now).unwrap();
    let issued = key_only
        .issue(
            kind,
            &id(BUILDER),
            "registry.local",
            &[],
            Duration::from_secs(60),
            now,
        )
        .unwrap();
    assert!(
        from_combined
            .verify(kind, issued.secret.expose_secret(), now)
            .is_ok()
    );
    let cert_der = pem::parse(cert_pem.as_bytes()).unwrap().into_contents();
    let forged = CredentialKeys::derive(&cert_der)
        .unwrap()
        .issue(
            crate::credential::CredentialKind::LoginCredential,
            &id(BUILDER),
            "registry.local",
            &[],
            Duration::from_secs(60),
            now,
        )
        .unwrap();
    for keys in [&key_only, &from_combined] {
        assert!(
            keys.verify(
                crate::credential::CredentialKind::LoginCredential,
                forged.secret.expose_secret(),
                now
            )
            .is_err(),
            "a credential keyed by the public CA certificate must never verify"
        );
    }
}

/// The poller picks up a changed policy file by itself (no SIGHUP).
#[tokio::test]
async fn policy_file_changes_are_polled() {
    let dir = tempfile::tempdir().unwrap();
    let td = DevTrustDomain::new(
        TrustDomain::parse("example.org").unwrap(),
        [id("spiffe://example.org/w")],
    )
    .unwrap();
    let mut config = write_config(dir.path(), &td);
    config.policy_poll = Duration::from_millis(50);
    let handle = BrokerServer::start(config, Arc::new(SystemClock))
        .await
        .unwrap();
    let before = handle.broker().policy().rule_count();
    let fewer = POLICY.replace(
        "[[rules]]\nid = \"admin-catalog\"",
        "[[unused]]\nid = \"admin-catalog\"",
    );
    // Dropping the last rule keeps the file valid.
    let fewer = fewer.split("[[unused]]").next().unwrap().to_owned();
    std::fs::write(dir.path().join("policy.toml"), fewer).unwrap();
    let mut seen = false;
    for _ in 0..100 {
        if handle.broker().policy().rule_count() == before - 1 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "the poller did not reload the policy");
    handle.shutdown().await;
}

const SA_CONFIG: &str = r#"
[server]
http_addr = "127.0.0.1:0"
public_url = "http://127.0.0.1:1"
shutdown_grace_seconds = 5
[identity]
audience = "svid-broker"
bundle_files = [{ trust_domain = "example.org", path = "bundle.json" }]
[policy]
file = "policy.toml"
poll_seconds = 3600
[signing]
generate = true
[log]
audit = "audit.log"
[service_account]
trusted_actors = ["spiffe://example.org/plugin"]
[[service_account.issuers]]
issuer = "https://k8s.test"
audiences = ["svid-broker"]
trust_domain = "example.org"
jwks_file = "sa.jwks.json"
"#;

#[tokio::test]
async fn service_account_keys_load_at_start_or_stop_it() {
    use svid_broker_dev::satoken::{DevSaAlgorithm, DevServiceAccountIssuer, SaTokenRequest};

    let dir = tempfile::tempdir().unwrap();
    let td = DevTrustDomain::new(
        TrustDomain::parse("example.org").unwrap(),
        [id("spiffe://example.org/plugin")],
    )
    .unwrap();
    write_config(dir.path(), &td);
    let config = BrokerConfig::from_toml_str(SA_CONFIG, dir.path()).unwrap();

    // No JWK Set file yet: start-up fails and names the issuer.
    let err = BrokerServer::start(config.clone(), Arc::new(SystemClock))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ServerError::ServiceAccountKeys { issuer, .. } if issuer == "https://k8s.test"),
        "{err:?}"
    );

    let sa = DevServiceAccountIssuer::new("https://k8s.test", DevSaAlgorithm::Es256).unwrap();
    sa.write_jwks(dir.path().join("sa.jwks.json")).unwrap();
    let handle = BrokerServer::start(config, Arc::new(SystemClock))
        .await
        .unwrap();
    let token = sa
        .mint(&SaTokenRequest::new("ci", "builder", "svid-broker"))
        .unwrap();
    let actor = crate::authn::Caller {
        spiffe_id: id("spiffe://example.org/plugin"),
        method: crate::authn::AuthMethod::X509Svid,
    };
    let context = crate::request::RequestContext::new(
        crate::request::ExchangeKind::LoginCredential,
        crate::request::Endpoint::Grpc,
        None,
    );
    let request = crate::request::ExchangeRequest::parse(context, "registry.local", &[]).unwrap();
    let now = SystemTime::now();
    let subject = handle
        .broker()
        .authenticator()
        .on_behalf_of(&actor, token.expose_secret(), now)
        .unwrap();
    let exchanged = handle
        .broker()
        .exchange_for(&subject, &request, now)
        .unwrap();
    let subject = exchanged.subject.authenticated.caller;
    assert_eq!(subject.spiffe_id.as_str(), BUILDER);
    handle.shutdown().await;
}

// === issue 8 item 4: watched files are read capped, regular files only ===

#[tokio::test]
async fn a_fifo_or_an_oversized_policy_file_is_refused_and_the_last_good_policy_serves() {
    use svid_broker_sources::file::watched::WatchedFileError;
    let dir = tempfile::tempdir().unwrap();
    let td = DevTrustDomain::new(
        TrustDomain::parse("example.org").unwrap(),
        [id("spiffe://example.org/w")],
    )
    .unwrap();
    let config = write_config(dir.path(), &td);
    let handle = BrokerServer::start(config, Arc::new(SystemClock))
        .await
        .unwrap();
    let addr = handle.http_addr();
    let token_path = "/token?service=registry.local&scope=repository:team/app:push";
    let pushes = || async {
        let (status, body) = http(addr, token_path, Some(basic(&td, BUILDER))).await;
        assert_eq!(status, 200, "{body}");
        granted(&body)[0]["actions"].clone()
    };
    assert_eq!(pushes().await, serde_json::json!(["push"]));
    let policy = dir.path().join("policy.toml");

    // A FIFO nobody writes to: a blocking open would hang the reloader for good.
    std::fs::remove_file(&policy).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&policy)
        .status()
        .unwrap();
    assert!(made.success());
    let err = tokio::time::timeout(Duration::from_secs(10), async { handle.reload_policy() })
        .await
        .expect("reload blocked on a fifo")
        .unwrap_err();
    assert!(
        matches!(
            err,
            ServerError::PolicyFile(WatchedFileError::NotRegular { kind: "fifo", .. })
        ),
        "{err:?}"
    );
    assert!(
        svid_broker_identity::report::ErrorChain::new(&err)
            .to_string()
            .contains("must be a regular file"),
        "{err}"
    );
    assert_eq!(pushes().await, serde_json::json!(["push"]));

    // One byte over the cap.
    std::fs::remove_file(&policy).unwrap();
    let cap = usize::try_from(MAX_POLICY_FILE_BYTES).unwrap();
    let mut big = POLICY.to_owned();
    big.push_str(&"#".repeat(cap + 1 - big.len()));
    std::fs::write(&policy, big).unwrap();
    let err = handle.reload_policy().unwrap_err();
    assert!(
        matches!(
            err,
            ServerError::PolicyFile(WatchedFileError::TooLarge {
                what: "policy file",
                ..
            })
        ),
        "{err:?}"
    );
    assert!(
        svid_broker_identity::report::ErrorChain::new(&err)
            .to_string()
            .contains("larger than 1048576 bytes"),
        "{err}"
    );
    assert_eq!(pushes().await, serde_json::json!(["push"]));

    // A directory in its place.
    std::fs::remove_file(&policy).unwrap();
    std::fs::create_dir(&policy).unwrap();
    assert!(matches!(
        handle.reload_policy(),
        Err(ServerError::PolicyFile(WatchedFileError::NotRegular {
            kind: "directory",
            ..
        }))
    ));
    assert_eq!(pushes().await, serde_json::json!(["push"]));
    handle.shutdown().await;
}

// === issue 8 item 15: the realm over TLS ===

/// A self-signed certificate for 127.0.0.1 and its key, as PEM.
fn realm_pair() -> (String, String, rustls_pki_types::CertificateDer<'static>) {
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    (
        pair.cert.pem(),
        pair.signing_key.serialize_pem(),
        pair.cert.der().clone(),
    )
}

/// The broker configuration of [`write_config`] with `[server.tls]` (files `realm.pem` and
/// `realm.key` in `dir`, polled every second).
fn write_tls_config(dir: &Path, td: &DevTrustDomain) -> BrokerConfig {
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    std::fs::write(dir.join("bundle.json"), td.bundle_document_json()).unwrap();
    let text = r#"
[server]
http_addr = "127.0.0.1:0"
public_url = "https://127.0.0.1:1"
shutdown_grace_seconds = 5
[server.tls]
cert_file = "realm.pem"
key_file = "realm.key"
poll_seconds = 1
[identity]
audience = "svid-broker"
bundle_files = [{ trust_domain = "example.org", path = "bundle.json" }]
[policy]
file = "policy.toml"
poll_seconds = 3600
[signing]
generate = true
[log]
audit = "audit.log"
"#;
    BrokerConfig::from_toml_str(text, dir).unwrap()
}

/// One HTTPS GET with a client trusting only `root`, offering only `version`; returns the
/// status, the body and the negotiated protocol version.
async fn https_get(
    addr: SocketAddr,
    root: &rustls_pki_types::CertificateDer<'static>,
    version: &'static rustls::SupportedProtocolVersion,
    path: &str,
    auth: Option<String>,
) -> Result<(u16, String, rustls::ProtocolVersion), Box<dyn std::error::Error + Send + Sync>> {
    use http_body_util::BodyExt as _;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone())?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[version])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let step = Duration::from_secs(10);
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1")?;
    let tls = tokio::time::timeout(
        step,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await??;
    let negotiated = tls.get_ref().1.protocol_version().ok_or("no version")?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    let driver = tokio::spawn(connection);
    let mut request = http::Request::get(path).header("host", addr.to_string());
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let request = request.body(http_body_util::Empty::<hyper::body::Bytes>::new())?;
    let response = tokio::time::timeout(step, sender.send_request(request)).await??;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(step, response.into_body().collect()).await??;
    driver.abort();
    Ok((
        status,
        String::from_utf8(body.to_bytes().to_vec())?,
        negotiated,
    ))
}

#[tokio::test]
async fn the_realm_serves_https_follows_a_rotated_pair_and_keeps_the_last_good_one() {
    use rustls::version::{TLS12, TLS13};
    let dir = tempfile::tempdir().unwrap();
    let td = DevTrustDomain::new(
        TrustDomain::parse("example.org").unwrap(),
        [id("spiffe://example.org/w")],
    )
    .unwrap();
    let (cert, key, first_root) = realm_pair();
    std::fs::write(dir.path().join("realm.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("realm.key"), &key).unwrap();
    let config = write_tls_config(dir.path(), &td);
    assert_eq!(config.realm_url(), "https://127.0.0.1:1/token");
    let handle = BrokerServer::start(config, Arc::new(SystemClock))
        .await
        .unwrap();
    let addr = handle.http_addr();

    // /healthz and /token over TLS 1.3 and TLS 1.2.
    let (status, _, version) = https_get(addr, &first_root, &TLS13, "/healthz", None)
        .await
        .unwrap();
    assert_eq!((status, version), (200, rustls::ProtocolVersion::TLSv1_3));
    let token_path = "/token?service=registry.local&scope=repository:team/app:push";
    let (status, body, version) = https_get(
        addr,
        &first_root,
        &TLS12,
        token_path,
        Some(basic(&td, BUILDER)),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_2);
    assert_eq!(granted(&body)[0]["actions"], serde_json::json!(["push"]));
    // Plain HTTP on the TLS port is not served.
    let plain = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = write!(s, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(!plain.starts_with(b"HTTP/1.1 200"), "{plain:?}");

    // Rotation: a new pair is picked up within a few poll periods.
    let (cert2, key2, second_root) = realm_pair();
    std::fs::write(dir.path().join("realm.key"), &key2).unwrap();
    std::fs::write(dir.path().join("realm.pem"), &cert2).unwrap();
    let mut rotated = false;
    for _ in 0..50 {
        if https_get(addr, &second_root, &TLS13, "/healthz", None)
            .await
            .is_ok()
        {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(rotated, "the rotated certificate was never served");
    assert!(
        https_get(addr, &first_root, &TLS13, "/healthz", None)
            .await
            .is_err()
    );

    // A bad update (a certificate whose key is not in the key file, then garbage) keeps the
    // last good pair.
    let (cert3, _key3, third_root) = realm_pair();
    std::fs::write(dir.path().join("realm.pem"), &cert3).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    std::fs::write(dir.path().join("realm.pem"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, _, _) = https_get(addr, &second_root, &TLS13, "/healthz", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        https_get(addr, &third_root, &TLS13, "/healthz", None)
            .await
            .is_err()
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn a_bad_tls_pair_stops_start_up_with_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let td = DevTrustDomain::new(
        TrustDomain::parse("example.org").unwrap(),
        [id("spiffe://example.org/w")],
    )
    .unwrap();
    let (cert, _key, _) = realm_pair();
    let (_, other_key, _) = realm_pair();
    std::fs::write(dir.path().join("realm.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("realm.key"), &other_key).unwrap();
    let config = write_tls_config(dir.path(), &td);
    let err = BrokerServer::start(config, Arc::new(SystemClock))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ServerError::Tls(crate::tls_files::TlsFileError::Mismatch(_))
        ),
        "{err:?}"
    );
}

/// Issue 8 item 4 for JWK Set files: the same watched-file rules.
#[test]
fn a_jwk_set_file_that_is_a_fifo_or_too_large_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = IssuerKeys::new(TrustDomain::parse("example.org").unwrap());
    let fifo = dir.path().join("jwks.json");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let err = keys.load_file(&fifo).unwrap_err();
    assert!(
        svid_broker_identity::report::ErrorChain::new(&err)
            .to_string()
            .contains("must be a regular file"),
        "{err}"
    );
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; crate::satoken::keys::MAX_JWKS_BYTES + 1]).unwrap();
    let err = keys.load_file(&big).unwrap_err();
    assert!(
        matches!(
            err,
            crate::satoken::keys::KeyLoadError::Jwks(
                svid_broker_identity::bundle::BundleError::TooLarge { .. }
            )
        ),
        "{err:?}"
    );
}
