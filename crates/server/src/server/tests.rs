use std::io::{Read as _, Write as _};
use std::path::Path;

use base64::Engine as _;
use svid_broker_dev::DevTrustDomain;
use svid_broker_identity::TrustDomain;
use svid_broker_identity::clock::SystemClock;

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
    let raw = format!("{who}:{}", jwt.token().expose());
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

    // Rotation publishes the new leaf next to the previous one.
    let (_, jwks) = http(addr, "/jwks.json", None).await;
    assert!(jwks.matches("\"kid\"").count() == 1);
    handle.rotate_signing_key(SystemTime::now()).unwrap();
    let (_, jwks) = http(addr, "/jwks.json", None).await;
    assert_eq!(jwks.matches("\"kid\"").count(), 2);

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
    assert!(two.verify(kind, issued.secret.expose(), now).is_ok());
    assert!(other.verify(kind, issued.secret.expose(), now).is_err());

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
            .verify(kind, issued.secret.expose(), now)
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
                forged.secret.expose(),
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
    let actor = crate::engine::Caller {
        spiffe_id: id("spiffe://example.org/plugin"),
        method: crate::engine::AuthMethod::X509Svid,
    };
    let input = crate::engine::ExchangeInput {
        kind: crate::engine::ExchangeKind::LoginCredential,
        service: "registry.local",
        scopes: &[],
        peer: None,
        endpoint: crate::engine::Endpoint::Grpc,
    };
    let (subject, _) = handle
        .broker()
        .exchange_with_subject_token(&actor, token.expose(), &input, SystemTime::now())
        .unwrap();
    assert_eq!(subject.spiffe_id.as_str(), BUILDER);
    handle.shutdown().await;
}
