use std::net::SocketAddr;
use std::sync::Mutex;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use svid_broker_dev::satoken::{DevSaAlgorithm, DevServiceAccountIssuer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::*;

/// Bounded wait: polls `check` every 10 ms, at most 500 times.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn td() -> TrustDomain {
    TrustDomain::parse("example.org").unwrap()
}

fn issuer() -> DevServiceAccountIssuer {
    DevServiceAccountIssuer::new("https://k8s.test", DevSaAlgorithm::Es256).unwrap()
}

#[test]
fn load_file_caps_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let keys = IssuerKeys::new(td());
    let missing = dir.path().join("missing.json");
    assert!(matches!(
        keys.load_file(&missing),
        Err(KeyLoadError::Io { .. })
    ));
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; MAX_JWKS_BYTES + 1]).unwrap();
    assert!(matches!(
        keys.load_file(&big),
        Err(KeyLoadError::Jwks(BundleError::TooLarge { .. }))
    ));
    let good = dir.path().join("good.json");
    issuer().write_jwks(&good).unwrap();
    assert_eq!(keys.load_file(&good).unwrap(), 1);
}

#[tokio::test]
async fn file_source_reloads_on_change_and_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sa.jwks.json");
    let (first, second) = (issuer(), issuer());
    first.write_jwks(&path).unwrap();
    let keys = Arc::new(IssuerKeys::new(td()));
    keys.load_file(&path).unwrap();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(run(
        keys.clone(),
        KeySource::File {
            path: path.clone(),
            poll: Duration::from_millis(10),
        },
        rx,
    ));

    second.write_jwks(&path).unwrap();
    let has = |kid: &str| keys.current().is_some_and(|b| b.find(kid).is_some());
    assert!(eventually(|| has(second.kid())).await);
    assert!(!has(first.kid()));

    std::fs::write(&path, b"{\"keys\": broken").unwrap();
    // Give the poller a few rounds to see (and reject) the broken file.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(has(second.kid()));

    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

// === OIDC discovery against a TLS server on 127.0.0.1 ===

/// Path, status and body of one canned response.
type Routes = Arc<Mutex<Vec<(String, u16, Vec<u8>)>>>;

/// A tiny HTTPS server: `routes` maps a path to (status, body); every request is counted.
struct Https {
    addr: SocketAddr,
    ca_file: tempfile::NamedTempFile,
    hits: Arc<Mutex<Vec<String>>>,
    routes: Routes,
}

impl Https {
    async fn start() -> Self {
        Self::start_with_versions(&[&rustls::version::TLS13]).await
    }

    async fn start_with_versions(versions: &[&'static rustls::SupportedProtocolVersion]) -> Self {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let der = CertificateDer::from(cert.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let mut ca_file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut ca_file, cert.cert.pem().as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let routes: Routes = Arc::new(Mutex::new(Vec::new()));
        let (h, r) = (hits.clone(), routes.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, h, r) = (acceptor.clone(), h.clone(), r.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&buf);
                    let path = text.split(' ').nth(1).unwrap_or("").to_owned();
                    h.lock().unwrap().push(path.clone());
                    let (status, body) = r
                        .lock()
                        .unwrap()
                        .iter()
                        .find(|(p, _, _)| *p == path)
                        .map_or((404, Vec::new()), |(_, s, b)| (*s, b.clone()));
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = tls.write_all(head.as_bytes()).await;
                    let _ = tls.write_all(&body).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self {
            addr,
            ca_file,
            hits,
            routes,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn route(&self, path: &str, status: u16, body: impl Into<Vec<u8>>) {
        let mut routes = self.routes.lock().unwrap();
        routes.retain(|(p, _, _)| p != path);
        routes.push((path.to_owned(), status, body.into()));
    }

    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }

    fn config(&self, issuer: &str) -> DiscoveryConfig {
        let mut c = DiscoveryConfig::for_issuer(issuer);
        c.url = self.url("/.well-known/openid-configuration");
        c.ca_file = Some(self.ca_file.path().to_owned());
        c
    }

    fn connector(&self) -> tokio_rustls::TlsConnector {
        tls_connector(Some(self.ca_file.path())).unwrap()
    }
}

fn discovery_doc(issuer: &str, jwks_uri: &str) -> String {
    serde_json::json!({ "issuer": issuer, "jwks_uri": jwks_uri }).to_string()
}

#[test]
fn for_issuer_derives_the_well_known_url() {
    assert_eq!(
        DiscoveryConfig::for_issuer("https://k8s.test/").url,
        "https://k8s.test/.well-known/openid-configuration"
    );
}

#[tokio::test]
async fn discovery_fetches_the_jwks_named_by_the_document() {
    let server = Https::start().await;
    let sa = issuer();
    server.route(
        "/.well-known/openid-configuration",
        200,
        discovery_doc("https://k8s.test", &server.url("/openid/v1/jwks")),
    );
    server.route("/openid/v1/jwks", 200, sa.jwks_json());
    let bytes = discover(&server.connector(), &server.config("https://k8s.test"))
        .await
        .unwrap();
    assert_eq!(bytes, sa.jwks_json().as_bytes());
}

#[tokio::test]
async fn discovery_refuses_a_tls12_only_server() {
    let server = Https::start_with_versions(&[&rustls::version::TLS12]).await;
    server.route(
        "/.well-known/openid-configuration",
        200,
        discovery_doc("https://k8s.test", &server.url("/openid/v1/jwks")),
    );
    let result = discover(&server.connector(), &server.config("https://k8s.test")).await;
    assert!(result.is_err(), "a TLS 1.2-only server was accepted");
    // Refused in the handshake: the server never saw a request.
    assert_eq!(server.hits("/.well-known/openid-configuration"), 0);
}

#[tokio::test]
async fn discovery_rules() {
    let server = Https::start().await;
    let doc_path = "/.well-known/openid-configuration";
    let config = server.config("https://k8s.test");
    let connector = server.connector();

    server.route(
        doc_path,
        200,
        discovery_doc("https://evil", &server.url("/jwks")),
    );
    assert!(matches!(
        discover(&connector, &config).await,
        Err(KeyLoadError::IssuerMismatch)
    ));

    let plain = format!("http://{}/jwks", server.addr);
    server.route(doc_path, 200, discovery_doc("https://k8s.test", &plain));
    assert!(matches!(
        discover(&connector, &config).await,
        Err(KeyLoadError::NotHttps { what: "jwks_uri" })
    ));

    server.route(doc_path, 200, "not json");
    assert!(matches!(
        discover(&connector, &config).await,
        Err(KeyLoadError::Discovery)
    ));

    server.route(doc_path, 200, vec![b' '; MAX_DISCOVERY_BYTES + 1]);
    assert!(matches!(
        discover(&connector, &config).await,
        Err(KeyLoadError::Fetch {
            reason: FetchFailure::TooLarge,
            ..
        })
    ));

    server.route(doc_path, 503, "");
    assert!(matches!(
        discover(&connector, &config).await,
        Err(KeyLoadError::Fetch {
            reason: FetchFailure::Status(503),
            ..
        })
    ));

    let mut http = config.clone();
    http.url = format!("http://{}{doc_path}", server.addr);
    assert!(matches!(
        discover(&connector, &http).await,
        Err(KeyLoadError::NotHttps {
            what: "discovery url"
        })
    ));

    // The public web roots do not trust the test server's certificate.
    server.route(
        doc_path,
        200,
        discovery_doc("https://k8s.test", &server.url("/jwks")),
    );
    assert!(matches!(
        discover(&tls_connector(None).unwrap(), &config).await,
        Err(KeyLoadError::Fetch {
            reason: FetchFailure::Tls,
            ..
        })
    ));
}

#[tokio::test]
async fn discovery_source_installs_keys_and_refreshes_on_request() {
    let server = Https::start().await;
    let (first, second) = (issuer(), issuer());
    server.route(
        "/.well-known/openid-configuration",
        200,
        discovery_doc("https://k8s.test", &server.url("/jwks")),
    );
    server.route("/jwks", 200, first.jwks_json());
    let keys = Arc::new(IssuerKeys::new(td()));
    let mut config = server.config("https://k8s.test");
    config.refresh = Duration::from_secs(3600);
    config.min_spacing = Duration::from_millis(20);
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(run(keys.clone(), KeySource::Discovery(config), rx));
    let has = |kid: &str| keys.current().is_some_and(|b| b.find(kid).is_some());
    assert!(eventually(|| has(first.kid())).await);

    // A failing round keeps the keys.
    server.route("/jwks", 500, "");
    keys.request_refresh();
    assert!(eventually(|| server.hits("/jwks") >= 2).await);
    assert!(has(first.kid()));

    // The issuer rotated: an unknown-kid request fetches the new set.
    server.route("/jwks", 200, second.jwks_json());
    keys.request_refresh();
    assert!(eventually(|| has(second.kid())).await);

    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}
