//! Tests of the gRPC listener: the TLS acceptor on its own (handshake rules, peer chains,
//! rotation), the edge conversions, and the whole service over real TLS on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use svid_broker_client::transport::{client_tls_config, connect};
use svid_broker_dev::{DevTrustDomain, DevX509Svid};
use svid_broker_identity::authorize::Authorizer;
use svid_broker_identity::bundle::BundleProvider;
use svid_broker_identity::clock::SystemClock;
use svid_broker_identity::id::{SpiffeId, TrustDomain};
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_identity::tls::{SpiffeClientCertVerifier, peer_spiffe_id};
use svid_broker_policy::Policy;
use svid_broker_policy::scope::{self, MAX_SCOPE_PARAM_LEN, MAX_SCOPE_PARAMS};
use svid_broker_proto::exchange::token_exchange_client::TokenExchangeClient;
use svid_broker_proto::exchange::{ExchangeRequest, ExchangeResponse, SubjectTokenType, TokenType};
use svid_broker_token::{KeyRing, KeyRingConfig, SigningAlgorithm, SigningCa, TokenMinter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::Channel;

use super::tls::{self, ServerSvid, certified_key, server_tls_config};
use super::{
    GrpcError, MAX_MESSAGE_SIZE, OptionalClientAuth, RequestError, SERVICE_NAME, TlsConn, serve,
    service,
};
use crate::audit::AuditSink;
use crate::authn::{AuthMethod, Subject};
use crate::credential::CredentialKeys;
use crate::engine::{Broker, BrokerOptions};
use crate::error::{AuthFailure, InvalidRequest};
use crate::request::{Endpoint, ExchangeKind, RequestContext};
use crate::throttle::RateLimit;

/// Bound on every network step, so a broken test fails instead of hanging.
const STEP: Duration = Duration::from_secs(10);

const BROKER_ID: &str = "spiffe://example.org/svid-broker";
const WORKLOAD_ID: &str = "spiffe://example.org/ns/blue/sa/app";

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

/// A dev trust domain serving the broker and one workload, and the broker's TLS state.
struct Pki {
    td: Arc<DevTrustDomain>,
    bundles: Arc<dyn BundleProvider>,
    server_svid: Arc<ServerSvid>,
    server_config: Arc<rustls::ServerConfig>,
}

impl Pki {
    fn new() -> Self {
        let td = Arc::new(
            DevTrustDomain::new(
                TrustDomain::parse("example.org").unwrap(),
                [id(BROKER_ID), id(WORKLOAD_ID)],
            )
            .unwrap(),
        );
        let bundles: Arc<dyn BundleProvider> = Arc::new(Arc::new(td.bundle_set().unwrap()));
        let own = td.x509_svid(&id(BROKER_ID)).unwrap();
        let server_svid = Arc::new(ArcSwap::new(
            certified_key(own.chain().to_vec(), own.private_key().to_rustls()).unwrap(),
        ));
        let verifier = Arc::new(SpiffeClientCertVerifier::new(
            Arc::clone(&bundles),
            Authorizer::MemberOf(td.trust_domain().clone()),
        ));
        let server_config = server_tls_config(Arc::clone(&server_svid), verifier).unwrap();
        Self {
            td,
            bundles,
            server_svid,
            server_config,
        }
    }

    fn workload_svid(&self) -> Arc<DevX509Svid> {
        self.td.x509_svid(&id(WORKLOAD_ID)).unwrap()
    }

    /// A TLS 1.3 client that authorizes exactly the broker's ID, with `client_cert` if given.
    fn client_config(&self, client_cert: Option<&DevX509Svid>) -> Arc<ClientConfig> {
        client_config(Arc::clone(&self.bundles), client_cert)
    }
}

fn client_config(
    bundles: Arc<dyn BundleProvider>,
    client_cert: Option<&DevX509Svid>,
) -> Arc<ClientConfig> {
    client_tls_config(
        bundles,
        Authorizer::Exact(id(BROKER_ID)),
        client_cert.map(|svid| (svid.chain().to_vec(), svid.private_key().to_rustls())),
    )
    .unwrap()
}

/// The server name is ignored by the SPIFFE verifier; any valid one will do.
fn server_name() -> ServerName<'static> {
    ServerName::try_from("svid-broker").unwrap()
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio::time::timeout(STEP, TlsConnector::from(config).connect(server_name(), tcp))
        .await
        .unwrap()
}

/// A client that got through the handshake learns of a rejected client certificate only from
/// the server's alert on its first read (TLS 1.3 sends the client's Finished first).
async fn first_read_error(stream: &mut TlsStream<TcpStream>) -> Option<std::io::Error> {
    let mut buf = [0u8; 16];
    tokio::time::timeout(STEP, stream.read(&mut buf))
        .await
        .unwrap()
        .err()
}

/// A listener on 127.0.0.1 with its handshake-completed connection stream.
async fn acceptor(
    config: Arc<rustls::ServerConfig>,
) -> (
    SocketAddr,
    tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsConn>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, tls::incoming(listener, config))
}

async fn next_conn(
    incoming: &mut tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsConn>>,
) -> TlsConn {
    tokio::time::timeout(STEP, incoming.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

// === TLS acceptor ===

#[tokio::test]
async fn a_client_certificate_reaches_the_handler_as_the_peer_chain() {
    let pki = Pki::new();
    let (addr, mut incoming) = acceptor(Arc::clone(&pki.server_config)).await;
    let workload = pki.workload_svid();
    let client = tls_connect(addr, pki.client_config(Some(&workload)))
        .await
        .unwrap();
    let conn = next_conn(&mut incoming).await;
    let info = tonic::transport::server::Connected::connect_info(&conn);
    let chain = info.peer_chain().unwrap();
    assert_eq!(peer_spiffe_id(chain), Some(id(WORKLOAD_ID)));
    assert_eq!(
        info.remote_addr(),
        Some(client.get_ref().0.local_addr().unwrap())
    );
    // The client saw the broker's SVID, negotiated h2, and TLS 1.3.
    let session = client.get_ref().1;
    assert_eq!(
        peer_spiffe_id(session.peer_certificates().unwrap()),
        Some(id(BROKER_ID))
    );
    assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

/// Past the connection cap the listener accepts and closes at once (an attacker cannot park
/// clients in the kernel backlog); once an established connection closes, the next client
/// gets through.
#[tokio::test]
async fn established_connections_are_capped() {
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = tls::incoming_with(listener, Arc::clone(&pki.server_config), STEP, 1);
    let _first_client = tls_connect(addr, pki.client_config(None)).await.unwrap();
    let first = next_conn(&mut incoming).await;

    // The only slot is taken: the second client is closed during its handshake.
    assert!(tls_connect(addr, pki.client_config(None)).await.is_err());
    drop(first);
    let third_client = tokio::spawn(tls_connect(addr, pki.client_config(None)));
    let _third = next_conn(&mut incoming).await;
    assert!(third_client.await.unwrap().is_ok());
}

#[tokio::test]
async fn a_client_without_a_certificate_completes_the_handshake_with_no_peer_chain() {
    let pki = Pki::new();
    let (addr, mut incoming) = acceptor(Arc::clone(&pki.server_config)).await;
    let _client = tls_connect(addr, pki.client_config(None)).await.unwrap();
    let conn = next_conn(&mut incoming).await;
    let info = tonic::transport::server::Connected::connect_info(&conn);
    assert!(info.peer_chain().is_none());
}

#[tokio::test]
async fn a_client_certificate_from_another_trust_domain_fails_the_handshake() {
    let pki = Pki::new();
    let (addr, mut incoming) = acceptor(Arc::clone(&pki.server_config)).await;
    let other_td = DevTrustDomain::new(
        TrustDomain::parse("other.example").unwrap(),
        [id("spiffe://other.example/ns/team/sa/app")],
    )
    .unwrap();
    let foreign = other_td
        .issue_x509_svid(&id("spiffe://other.example/ns/team/sa/app"))
        .unwrap();
    let mut bad = tls_connect(addr, pki.client_config(Some(&foreign)))
        .await
        .unwrap();
    let error = first_read_error(&mut bad)
        .await
        .expect("server must refuse");
    let alert = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .cloned();
    assert!(
        matches!(alert, Some(rustls::Error::AlertReceived(_))),
        "{error:?}"
    );
    // The refused connection never reaches tonic: the next one out of the stream is the good
    // client's.
    let _good = tls_connect(addr, pki.client_config(None)).await.unwrap();
    let conn = next_conn(&mut incoming).await;
    let info = tonic::transport::server::Connected::connect_info(&conn);
    assert!(info.peer_chain().is_none());
}

#[tokio::test]
async fn a_stalled_handshake_neither_blocks_others_nor_outlives_its_timeout() {
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = tls::incoming_with(
        listener,
        Arc::clone(&pki.server_config),
        Duration::from_millis(200),
        tls::MAX_CONNECTIONS,
    );
    // Connects and never sends a ClientHello.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    // Another client completes its handshake meanwhile.
    let _good = tls_connect(addr, pki.client_config(None)).await.unwrap();
    let _conn = next_conn(&mut incoming).await;
    // The stalled one is closed by the server once the timeout passes.
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(STEP, stalled.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn an_expired_client_certificate_fails_the_handshake() {
    let pki = Pki::new();
    let (addr, _incoming) = acceptor(Arc::clone(&pki.server_config)).await;
    let past = SystemTime::now() - Duration::from_secs(7200);
    let expired = pki
        .td
        .issue_x509_svid_at(&id(WORKLOAD_ID), past, Duration::from_secs(600))
        .unwrap();
    let mut client = tls_connect(addr, pki.client_config(Some(&expired)))
        .await
        .unwrap();
    assert!(first_read_error(&mut client).await.is_some());
}

/// A hand-built TLS 1.2 ClientHello (no `supported_versions` extension): the TLS 1.3-only
/// server must answer with a fatal `protocol_version` alert (rustls has TLS 1.2 compiled in
/// for the realm's HTTPS listener; this listener must still select 1.3 alone).
#[tokio::test]
async fn a_tls12_only_client_is_refused_with_protocol_version() {
    let pki = Pki::new();
    let (addr, _incoming) = acceptor(Arc::clone(&pki.server_config)).await;
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]); // ECDHE-*-AES128-GCM-SHA256
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let extensions: &[u8] = &[
        0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, // supported_groups: secp256r1
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats: uncompressed
        0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03, // signature_algorithms: ecdsa p256
    ];
    body.extend_from_slice(&u16::try_from(extensions.len()).unwrap().to_be_bytes());
    body.extend_from_slice(extensions);
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);

    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&record).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(STEP, tcp.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    // Alert record, fatal (2), protocol_version (70).
    assert_eq!(reply.first(), Some(&0x15), "{reply:02x?}");
    assert_eq!(reply.get(5..7), Some(&[2u8, 70][..]), "{reply:02x?}");
}

#[tokio::test]
async fn a_client_that_offers_only_http1_is_refused() {
    let pki = Pki::new();
    let (addr, _incoming) = acceptor(Arc::clone(&pki.server_config)).await;
    let mut config = (*pki.client_config(None)).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let error = tls_connect(addr, Arc::new(config)).await.unwrap_err();
    let alert = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .cloned();
    assert_eq!(
        alert,
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::NoApplicationProtocol
        ))
    );
}

#[tokio::test]
async fn a_rotated_server_svid_is_served_from_the_next_handshake() {
    let pki = Pki::new();
    let (addr, _incoming) = acceptor(Arc::clone(&pki.server_config)).await;
    let before = tls_connect(addr, pki.client_config(None)).await.unwrap();
    let first_leaf = before.get_ref().1.peer_certificates().unwrap()[0].clone();

    let fresh = pki.td.issue_x509_svid(&id(BROKER_ID)).unwrap();
    assert_ne!(fresh.leaf(), &first_leaf);
    pki.server_svid
        .store(certified_key(fresh.chain().to_vec(), fresh.private_key().to_rustls()).unwrap());
    let after = tls_connect(addr, pki.client_config(None)).await.unwrap();
    assert_eq!(
        &after.get_ref().1.peer_certificates().unwrap()[0],
        fresh.leaf()
    );
}

#[tokio::test]
async fn a_server_svid_the_client_does_not_authorize_fails_on_the_client() {
    let pki = Pki::new();
    let (addr, _incoming) = acceptor(Arc::clone(&pki.server_config)).await;
    // The broker serves the workload's SVID; the client insists on the broker's ID.
    let wrong = pki.workload_svid();
    pki.server_svid
        .store(certified_key(wrong.chain().to_vec(), wrong.private_key().to_rustls()).unwrap());
    assert!(tls_connect(addr, pki.client_config(None)).await.is_err());
    // The same through the client helper: connecting fails, nothing is sent.
    assert!(
        tokio::time::timeout(STEP, connect(addr, pki.client_config(None)))
            .await
            .unwrap()
            .is_err()
    );
}

#[test]
fn certified_key_rejects_an_empty_chain_and_a_mismatched_key() {
    let pki = Pki::new();
    let broker = pki.td.x509_svid(&id(BROKER_ID)).unwrap();
    let workload = pki.workload_svid();
    assert!(matches!(
        certified_key(Vec::new(), broker.private_key().to_rustls()),
        Err(GrpcError::EmptyServerChain)
    ));
    assert!(matches!(
        certified_key(broker.chain().to_vec(), workload.private_key().to_rustls()),
        Err(GrpcError::ServerKey { .. })
    ));
    assert!(certified_key(broker.chain().to_vec(), broker.private_key().to_rustls()).is_ok());
}

#[test]
fn optional_client_auth_offers_but_does_not_require_a_certificate() {
    use rustls::server::danger::ClientCertVerifier;
    let pki = Pki::new();
    let inner = Arc::new(SpiffeClientCertVerifier::new(
        Arc::clone(&pki.bundles),
        Authorizer::MemberOf(pki.td.trust_domain().clone()),
    ));
    assert!(inner.client_auth_mandatory());
    let optional = OptionalClientAuth::new(inner);
    assert!(optional.offer_client_auth());
    assert!(!optional.client_auth_mandatory());
}

#[test]
fn server_config_offers_h2_and_no_resumption() {
    let pki = Pki::new();
    let config = &pki.server_config;
    assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    assert_eq!(config.send_tls13_tickets, 0);
    assert!(!config.session_storage.can_cache());
}

// === edge conversions ===

fn request(kind: TokenType, audience: &str, scopes: &[&str]) -> ExchangeRequest {
    ExchangeRequest {
        requested_token_type: kind.into(),
        audience: audience.to_owned(),
        scope: scopes.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

#[test]
fn convert_maps_both_token_types() {
    let req = request(
        TokenType::RegistryAccessToken,
        SERVICE,
        &["repository:team-blue/app:pull"],
    );
    let (checked, subject_token) = service::convert(&req, None).unwrap();
    assert_eq!(checked.context.kind, ExchangeKind::AccessToken);
    assert_eq!(checked.service, SERVICE);
    assert_eq!(checked.context.service, SERVICE);
    assert_eq!(
        scope::join_scopes(&checked.scopes),
        "repository:team-blue/app:pull"
    );
    assert_eq!(checked.context.requested, "repository:team-blue/app:pull");
    assert_eq!(checked.context.endpoint, Endpoint::Grpc);
    assert!(!checked.refresh_token);
    assert_eq!(subject_token, None);
    let req = request(TokenType::RegistryLoginCredential, SERVICE, &[]);
    let (checked, _) = service::convert(&req, None).unwrap();
    assert_eq!(checked.context.kind, ExchangeKind::LoginCredential);
}

#[test]
fn convert_rejects_each_malformed_field() {
    let ok = request(
        TokenType::RegistryAccessToken,
        SERVICE,
        &["repository:a:pull"],
    );
    // The wire form's refusals; each comes with the context the refusal is audited with.
    let err = |req: &ExchangeRequest| {
        let refused = service::convert(req, None).unwrap_err();
        assert_eq!(refused.context.endpoint, Endpoint::Grpc);
        match refused.error {
            service::EdgeError::Wire(e) => e,
            other => panic!("{other:?}"),
        }
    };

    let mut req = ok.clone();
    req.requested_token_type = TokenType::Unspecified.into();
    assert_eq!(err(&req), RequestError::TokenTypeUnspecified);
    req.requested_token_type = 99;
    assert_eq!(err(&req), RequestError::TokenTypeUnknown { value: 99 });

    let mut req = ok.clone();
    req.subject_token = "eyJ.e30.sig".into();
    assert_eq!(err(&req), RequestError::SubjectTokenTypeMissing);
    req.subject_token_type = 7;
    assert_eq!(
        err(&req),
        RequestError::SubjectTokenTypeUnknown { value: 7 }
    );
    req.subject_token_type = SubjectTokenType::KubernetesServiceAccount.into();
    assert!(service::convert(&req, None).is_ok());
    assert_eq!(service::subject_token(&req), Ok(Some("eyJ.e30.sig")));
    req.subject_token = "a".repeat(crate::satoken::MAX_SA_TOKEN_LEN + 1);
    assert_eq!(
        err(&req),
        RequestError::SubjectTokenTooLong {
            len: crate::satoken::MAX_SA_TOKEN_LEN + 1,
            max: crate::satoken::MAX_SA_TOKEN_LEN
        }
    );
    req.subject_token.clear();
    assert_eq!(err(&req), RequestError::SubjectTokenMissing);
    assert_eq!(service::subject_token(&ok), Ok(None));

    let mut req = ok.clone();
    req.audience.clear();
    assert_eq!(err(&req), RequestError::AudienceMissing);
    req.audience = "a".repeat(service::MAX_AUDIENCE_LEN + 1);
    assert!(matches!(err(&req), RequestError::AudienceTooLong { .. }));
    req.audience = "a".repeat(service::MAX_AUDIENCE_LEN);
    assert!(service::convert(&req, None).is_ok());

    let mut req = ok;
    req.scope = vec![" ".into()];
    assert_eq!(err(&req), RequestError::ScopeMissing);
    req.scope = vec!["repository:a:pull".into(); MAX_SCOPE_PARAMS + 1];
    assert!(matches!(err(&req), RequestError::TooManyScopes { .. }));
    req.scope = vec!["a".repeat(MAX_SCOPE_PARAM_LEN + 1)];
    assert!(matches!(err(&req), RequestError::ScopeTooLong { .. }));

    // The scope grammar is `ExchangeRequest::parse`'s, at this edge too.
    req.scope = vec!["repository::pull".into()];
    let refused = service::convert(&req, None).unwrap_err();
    assert!(
        matches!(
            refused.error,
            service::EdgeError::Request(InvalidRequest::Scope(_))
        ),
        "{refused:?}"
    );
    assert_eq!(refused.context.requested, "repository::pull");
    assert_eq!(refused.context.service, SERVICE);
}

#[test]
fn with_bearer_refuses_a_token_that_is_not_header_text() {
    assert!(matches!(
        svid_broker_client::transport::with_bearer((), "a\nb"),
        Err(svid_broker_client::transport::InvalidBearer)
    ));
    let request = svid_broker_client::transport::with_bearer((), "a.b.c").unwrap();
    assert_eq!(service::bearer(request.metadata()).unwrap(), Some("a.b.c"));
}

#[test]
fn bearer_accepts_one_well_formed_bearer_header() {
    use tonic::metadata::{MetadataMap, MetadataValue};
    let with = |values: &[&'static str]| {
        let mut map = MetadataMap::new();
        for v in values {
            map.append("authorization", MetadataValue::from_static(v));
        }
        map
    };
    assert_eq!(service::bearer(&with(&[])).unwrap(), None);
    assert_eq!(
        service::bearer(&with(&["Bearer a.b.c"])).unwrap(),
        Some("a.b.c")
    );
    assert_eq!(
        service::bearer(&with(&["bearer a.b.c"])).unwrap(),
        Some("a.b.c")
    );
    for bad in [
        &["Basic dXNlcjpwYXNz"][..],
        &["Bearer"],
        &["Bearer "],
        &["Bearer a b"],
        &["Bearer a", "Bearer b"],
    ] {
        assert!(
            matches!(
                service::bearer(&with(bad)),
                Err(AuthFailure::MalformedAuthorization)
            ),
            "{bad:?}"
        );
    }
    let mut map = MetadataMap::new();
    let long = format!("Bearer {}", "a".repeat(service::MAX_AUTHORIZATION_LEN));
    map.insert("authorization", long.parse().unwrap());
    assert!(service::bearer(&map).is_err());
}

// === the service over TLS ===

const SERVICE: &str = "registry.local";
const AUDIENCE: &str = "svid-broker";
const OUTSIDER_ID: &str = "spiffe://example.org/jobs/batch";

const POLICY: &str = r#"
[[registries]]
name = "local"
service = "registry.local"
issuer = "svid-broker"
profile = "distribution-2"
hosts = ["127.0.0.1:5000"]

[[rules]]
id = "teams-own-namespace"
subject = "spiffe://example.org/ns/{ns}/sa/*"
registry = "local"
repositories = ["team-{ns}/*"]
actions = ["pull", "push"]
"#;

type AuditLines = Arc<std::sync::Mutex<Vec<String>>>;

fn test_broker(
    bundles: Arc<dyn BundleProvider>,
    rate_limit: Option<RateLimit>,
) -> (Arc<Broker>, AuditLines) {
    let now = SystemTime::now();
    let ca = SigningCa::generate(
        SigningAlgorithm::Es256,
        "svid-broker grpc test",
        Duration::from_secs(30 * 24 * 3600),
        now,
    )
    .unwrap();
    let ring = KeyRing::new(ca, KeyRingConfig::default(), now).unwrap();
    let (audit, lines) = AuditSink::memory();
    let mut options = BrokerOptions::new(AUDIENCE);
    options.audit = audit;
    options.rate_limit = rate_limit;
    let broker = Broker::new(
        Policy::from_toml_str(POLICY).unwrap(),
        bundles,
        TokenMinter::new(ring),
        CredentialKeys::random().unwrap(),
        options,
    )
    .unwrap();
    (Arc::new(broker), lines)
}

/// A running gRPC server on 127.0.0.1.
struct Running {
    pki: Pki,
    broker: Arc<Broker>,
    audit: AuditLines,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), GrpcError>>,
}

impl Running {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    async fn start_with(rate_limit: Option<RateLimit>) -> Self {
        let pki = Pki::new();
        let (broker, audit) = test_broker(Arc::clone(&pki.bundles), rate_limit);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            Arc::clone(&broker),
            Arc::new(SystemClock),
            listener,
            Arc::clone(&pki.server_config),
            async move {
                let _ = rx.await;
            },
        ));
        Self {
            pki,
            broker,
            audit,
            addr,
            shutdown: Some(tx),
            task,
        }
    }

    async fn channel(&self, client_cert: Option<&DevX509Svid>) -> Channel {
        channel(self.addr, self.pki.client_config(client_cert)).await
    }

    async fn client(&self, client_cert: Option<&DevX509Svid>) -> TokenExchangeClient<Channel> {
        TokenExchangeClient::new(self.channel(client_cert).await)
    }

    fn jwt_svid(&self, subject: &str, audience: &str) -> String {
        self.pki
            .td
            .issue_jwt_svid(&id(subject), &[audience])
            .unwrap()
            .token()
            .expose_secret()
            .to_owned()
    }

    fn audit_events(&self) -> Vec<serde_json::Value> {
        self.audit
            .lock()
            .unwrap()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(STEP, &mut self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

async fn channel(addr: SocketAddr, config: Arc<ClientConfig>) -> Channel {
    tokio::time::timeout(STEP, connect(addr, config))
        .await
        .unwrap()
        .unwrap()
}

fn with_bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    svid_broker_client::transport::with_bearer(message, token).unwrap()
}

async fn call(
    client: &mut TokenExchangeClient<Channel>,
    request: impl tonic::IntoRequest<ExchangeRequest>,
) -> Result<ExchangeResponse, tonic::Status> {
    tokio::time::timeout(STEP, client.exchange(request))
        .await
        .unwrap()
        .map(tonic::Response::into_inner)
}

/// The registry token's claims (the signature is the token crate's business, tested there).
fn claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn assert_access_token(response: &ExchangeResponse, subject: &str, granted: &[&str]) {
    assert_eq!(response.token_type, "Bearer");
    assert_eq!(response.issued_token_type(), TokenType::RegistryAccessToken);
    assert_eq!(response.subject, subject);
    assert_eq!(response.scope, granted);
    assert!(response.username.is_empty());
    assert!(response.expires_in >= 60, "{response:?}");
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    // expires_at is the same instant as now + expires_in, give or take the call's duration.
    assert!((response.expires_at - (now + response.expires_in)).abs() <= 5);
    let claims = claims(&response.access_token);
    assert_eq!(claims["sub"], subject);
    assert_eq!(claims["aud"], SERVICE);
    assert_eq!(claims["exp"], response.expires_at);
}

#[tokio::test]
async fn mtls_caller_gets_an_access_token_with_the_granted_scopes() {
    let server = Running::start().await;
    let workload = server.pki.workload_svid();
    let mut client = server.client(Some(&workload)).await;
    let response = call(
        &mut client,
        request(
            TokenType::RegistryAccessToken,
            SERVICE,
            // One allowed in part (delete is not granted), one not at all.
            &["repository:team-blue/app:pull,push,delete repository:team-red/app:pull"],
        ),
    )
    .await
    .unwrap();
    assert_access_token(
        &response,
        WORKLOAD_ID,
        &["repository:team-blue/app:pull,push"],
    );
    let access = &claims(&response.access_token)["access"];
    assert_eq!(access[0]["name"], "team-blue/app");
    server.stop().await;
}

#[tokio::test]
async fn mtls_caller_is_the_certificate_even_with_a_bearer() {
    let server = Running::start().await;
    let workload = server.pki.workload_svid();
    let mut client = server.client(Some(&workload)).await;
    let response = call(
        &mut client,
        with_bearer(
            request(
                TokenType::RegistryAccessToken,
                SERVICE,
                &["repository:team-blue/app:pull"],
            ),
            "not-a-jwt",
        ),
    )
    .await
    .unwrap();
    assert_eq!(response.subject, WORKLOAD_ID);
    server.stop().await;
}

#[tokio::test]
async fn bearer_jwt_svid_without_a_client_certificate_gets_an_access_token() {
    let server = Running::start().await;
    let token = server.jwt_svid(WORKLOAD_ID, AUDIENCE);
    let mut client = server.client(None).await;
    let response = call(
        &mut client,
        with_bearer(
            request(
                TokenType::RegistryAccessToken,
                SERVICE,
                &["repository:team-blue/app:pull"],
            ),
            &token,
        ),
    )
    .await
    .unwrap();
    assert_access_token(&response, WORKLOAD_ID, &["repository:team-blue/app:pull"]);
    server.stop().await;
}

#[tokio::test]
async fn no_credentials_are_unauthenticated() {
    let server = Running::start().await;
    let mut client = server.client(None).await;
    let status = call(
        &mut client,
        request(
            TokenType::RegistryAccessToken,
            SERVICE,
            &["repository:team-blue/app:pull"],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    server.stop().await;
}

#[tokio::test]
async fn bad_bearers_are_unauthenticated_and_the_reason_is_short() {
    let server = Running::start().await;
    let wrong_audience = server.jwt_svid(WORKLOAD_ID, "someone-else");
    let other_td = DevTrustDomain::new(
        TrustDomain::parse("other.example").unwrap(),
        [id("spiffe://other.example/w")],
    )
    .unwrap();
    let foreign = other_td
        .issue_jwt_svid(&id("spiffe://other.example/w"), &[AUDIENCE])
        .unwrap();
    let mut client = server.client(None).await;
    for token in [
        wrong_audience.as_str(),
        foreign.token().expose_secret(),
        "not-a-jwt",
    ] {
        let status = call(
            &mut client,
            with_bearer(
                request(
                    TokenType::RegistryAccessToken,
                    SERVICE,
                    &["repository:team-blue/app:pull"],
                ),
                token,
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        // The client sees the short reason, never the validator's detail or the token.
        assert_eq!(status.message(), "jwt-svid rejected");
    }
    let mut request = tonic::Request::new(request(
        TokenType::RegistryAccessToken,
        SERVICE,
        &["repository:team-blue/app:pull"],
    ));
    request
        .metadata_mut()
        .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    let status = call(&mut client, request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), "malformed authorization header");
    server.stop().await;
}

#[tokio::test]
async fn a_policy_that_grants_nothing_is_permission_denied() {
    let server = Running::start().await;
    let workload = server.pki.workload_svid();
    let mut client = server.client(Some(&workload)).await;
    let status = call(
        &mut client,
        request(
            TokenType::RegistryAccessToken,
            SERVICE,
            &["repository:team-red/app:pull"],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // A login credential for a registry no rule lets the subject use.
    let outsider = server.jwt_svid(OUTSIDER_ID, AUDIENCE);
    let mut client = server.client(None).await;
    let status = call(
        &mut client,
        with_bearer(
            request(TokenType::RegistryLoginCredential, SERVICE, &[]),
            &outsider,
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    server.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_invalid_argument_and_subject_tokens_need_sa_mode() {
    let server = Running::start().await;
    let workload = server.pki.workload_svid();
    let mut client = server.client(Some(&workload)).await;
    let cases = [
        (
            request(
                TokenType::RegistryAccessToken,
                SERVICE,
                &["repository:Team/App:pull"],
            ),
            tonic::Code::InvalidArgument,
        ),
        (
            request(
                TokenType::RegistryAccessToken,
                "registry.unknown",
                &["repository:a:pull"],
            ),
            tonic::Code::InvalidArgument,
        ),
        (
            request(TokenType::Unspecified, SERVICE, &["repository:a:pull"]),
            tonic::Code::InvalidArgument,
        ),
        (
            ExchangeRequest {
                subject_token: "eyJ.e30.sig".into(),
                subject_token_type: SubjectTokenType::KubernetesServiceAccount.into(),
                ..request(
                    TokenType::RegistryAccessToken,
                    SERVICE,
                    &["repository:a:pull"],
                )
            },
            // No service-account mode on this broker: refused, not half-served.
            tonic::Code::PermissionDenied,
        ),
    ];
    for (req, code) in cases {
        let status = call(&mut client, req).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_message_is_refused() {
    let server = Running::start().await;
    let workload = server.pki.workload_svid();
    let mut client = server.client(Some(&workload)).await;
    let big = "a".repeat(MAX_MESSAGE_SIZE);
    let status = call(
        &mut client,
        request(TokenType::RegistryAccessToken, SERVICE, &[&big]),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    server.stop().await;
}

#[tokio::test]
async fn rate_limited_callers_get_resource_exhausted() {
    let server = Running::start_with(Some(RateLimit {
        per_second: 0.001,
        burst: 1.0,
    }))
    .await;
    let workload = server.pki.workload_svid();
    let mut client = server.client(Some(&workload)).await;
    let req = request(
        TokenType::RegistryAccessToken,
        SERVICE,
        &["repository:team-blue/app:pull"],
    );
    call(&mut client, req.clone()).await.unwrap();
    let status = call(&mut client, req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    server.stop().await;
}

#[tokio::test]
async fn login_credential_is_n_a_with_a_username_and_a_password_the_realm_accepts() {
    let server = Running::start().await;
    let workload = server.pki.workload_svid();
    let mut client = server.client(Some(&workload)).await;
    let response = call(
        &mut client,
        request(
            TokenType::RegistryLoginCredential,
            SERVICE,
            &["repository:team-blue/app:pull"],
        ),
    )
    .await
    .unwrap();
    assert_eq!(response.token_type, "N_A");
    assert_eq!(
        response.issued_token_type(),
        TokenType::RegistryLoginCredential
    );
    assert_eq!(response.username, WORKLOAD_ID);
    assert_eq!(response.subject, WORKLOAD_ID);
    assert_eq!(response.scope, ["repository:team-blue/app:pull"]);
    assert!(response.expires_in >= 60);
    assert!(response.access_token.starts_with("sbl1."));

    // What a registry client does next: present it to the realm as Basic credentials.
    let now = SystemTime::now();
    let auth = server
        .broker
        .authenticator()
        .authenticate_secret(Some(&response.username), &response.access_token, now)
        .unwrap();
    assert_eq!(auth.caller.spiffe_id, id(WORKLOAD_ID));
    assert_eq!(auth.caller.method, AuthMethod::LoginCredential);
    let scopes = vec!["repository:team-blue/app:pull,push".to_owned()];
    let context = RequestContext::new(ExchangeKind::AccessToken, Endpoint::RealmGet, None)
        .with_service(SERVICE)
        .with_scopes(&scopes);
    let realm = crate::request::ExchangeRequest::parse(context, SERVICE, &scopes).unwrap();
    let subject = Subject {
        authenticated: auth,
        on_behalf: None,
    };
    let tokens = server
        .broker
        .realm_token_for(&subject, &realm, now)
        .unwrap();
    // The credential's ceiling holds: push is not granted.
    assert_eq!(
        tokens
            .access
            .granted
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["repository:team-blue/app:pull"]
    );
    // Someone else's username with it is refused.
    assert!(
        server
            .broker
            .authenticator()
            .authenticate_secret(Some(OUTSIDER_ID), &response.access_token, now)
            .is_err()
    );
    server.stop().await;
}

#[tokio::test]
async fn health_reports_serving_for_the_exchange_service() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    assert_eq!(SERVICE_NAME, "svid_broker.v1.TokenExchange");
    let server = Running::start().await;
    let mut health = HealthClient::new(server.channel(None).await);
    for service in [SERVICE_NAME, ""] {
        let response = tokio::time::timeout(
            STEP,
            health.check(HealthCheckRequest {
                service: service.to_owned(),
            }),
        )
        .await
        .unwrap()
        .unwrap()
        .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
    let status = tokio::time::timeout(
        STEP,
        health.check(HealthCheckRequest {
            service: "no.such.Service".to_owned(),
        }),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_stops_accepting_and_returns() {
    let server = Running::start().await;
    let addr = server.addr;
    let workload = server.pki.workload_svid();
    let config = server.pki.client_config(Some(&workload));
    {
        let mut client = server.client(Some(&workload)).await;
        call(
            &mut client,
            request(
                TokenType::RegistryAccessToken,
                SERVICE,
                &["repository:team-blue/app:pull"],
            ),
        )
        .await
        .unwrap();
    }
    server.stop().await;
    // The listener is closed: a new TLS connection cannot be made.
    assert!(tls_connect(addr, config).await.is_err());
}

#[tokio::test]
async fn every_call_leaves_one_audit_event_without_secrets_and_is_measured() {
    let server = Running::start().await;
    let token = server.jwt_svid(WORKLOAD_ID, AUDIENCE);
    let mut client = server.client(None).await;
    let ok = request(
        TokenType::RegistryAccessToken,
        SERVICE,
        &["repository:team-blue/app:pull"],
    );
    // Edge rejection, authentication failure, success.
    let malformed = request(TokenType::Unspecified, SERVICE, &["repository:a:pull"]);
    call(&mut client, with_bearer(malformed, &token))
        .await
        .unwrap_err();
    call(&mut client, ok.clone()).await.unwrap_err();
    let issued = call(&mut client, with_bearer(ok, &token)).await.unwrap();

    let events = server.audit_events();
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["decision"].as_str().unwrap(),
                e["code"].as_str(),
                e["endpoint"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("deny", Some("invalid_argument"), "grpc"),
            ("deny", Some("unauthenticated"), "grpc"),
            ("allow", None, "grpc"),
        ],
        "{events:?}"
    );
    assert_eq!(events[2]["subject"], WORKLOAD_ID);
    let metrics = server.broker.metrics().render();
    for line in [
        r#"svid_broker_request_duration_seconds_count{route="grpc_exchange"} 3"#,
        r#"svid_broker_issued_total{endpoint="grpc",kind="access_token"} 1"#,
        r#"svid_broker_denied_total{endpoint="grpc",code="invalid_argument"} 1"#,
        r#"svid_broker_denied_total{endpoint="grpc",code="unauthenticated"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
    }
    let all = server.audit.lock().unwrap().join("\n");
    assert!(!all.contains(&token));
    assert!(!all.contains(&issued.access_token));
    server.stop().await;
}

/// The per-address budget for failed authentication holds on the gRPC listener too: a client
/// that keeps failing is answered RESOURCE_EXHAUSTED before its credentials are looked at, and
/// the failures are aggregated in the audit instead of one line each.
#[tokio::test]
async fn repeated_failed_authentication_from_one_address_is_throttled_and_aggregated() {
    let server = Running::start().await;
    let mut client = server.client(None).await;
    let mut unauthenticated = 0;
    let mut exhausted = None;
    for attempt in 0..1_000 {
        let status = call(
            &mut client,
            with_bearer(
                request(
                    TokenType::RegistryAccessToken,
                    SERVICE,
                    &["repository:team-blue/app:pull"],
                ),
                "not.a.jwt",
            ),
        )
        .await
        .unwrap_err();
        match status.code() {
            tonic::Code::Unauthenticated => unauthenticated += 1,
            tonic::Code::ResourceExhausted => {
                exhausted = Some(attempt);
                break;
            }
            other => panic!("unexpected {other:?}: {status:?}"),
        }
    }
    let exhausted = exhausted.expect("a failing client was never throttled");
    assert!(
        unauthenticated >= 100,
        "throttled after {unauthenticated} failures, before the burst was spent"
    );
    let events = server.audit_events();
    assert!(
        events.len() < 10,
        "{exhausted} failures wrote {} audit lines",
        events.len()
    );
    // Only failures are held against the address: a caller that authenticates still passes.
    let jwt = server.jwt_svid(WORKLOAD_ID, AUDIENCE);
    let response = call(
        &mut client,
        with_bearer(
            request(
                TokenType::RegistryAccessToken,
                SERVICE,
                &["repository:team-blue/app:pull"],
            ),
            &jwt,
        ),
    )
    .await
    .unwrap();
    assert_access_token(&response, WORKLOAD_ID, &["repository:team-blue/app:pull"]);
    server.stop().await;
}
