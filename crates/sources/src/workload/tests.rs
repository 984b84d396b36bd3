use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use futures_util::Stream;
use svid_broker_dev::{DevTrustDomain, WorkloadApiHandle, WorkloadApiServer};
use svid_broker_identity::jwt::JwtSvidValidator;
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_proto::workload::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use svid_broker_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svidRequest,
    X509svidResponse,
};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Code, Request, Response, Status};

use super::*;

const WORKLOAD: &str = "spiffe://dev.test/workload";

fn dev_td() -> Arc<DevTrustDomain> {
    Arc::new(
        DevTrustDomain::new(
            TrustDomain::parse("dev.test").unwrap(),
            [SpiffeId::parse(WORKLOAD).unwrap()],
        )
        .unwrap(),
    )
}

async fn dev_server(dir: &tempfile::TempDir) -> WorkloadApiHandle {
    WorkloadApiServer::builder(dev_td())
        .auto_rotate(None)
        .serve(dir.path())
        .await
        .unwrap()
}

fn options(endpoint: String) -> WorkloadApiOptions {
    WorkloadApiOptions::default()
        .endpoint(endpoint)
        .initial_sync_timeout(Duration::from_secs(10))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
}

fn jwt_kids(source: &WorkloadApiSource) -> Vec<String> {
    let set = source.bundles();
    let td = TrustDomain::parse("dev.test").unwrap();
    let mut kids: Vec<String> = set
        .jwt(&td)
        .unwrap()
        .authorities()
        .iter()
        .map(|a| a.kid.clone())
        .collect();
    kids.sort();
    kids
}

#[tokio::test]
async fn follows_the_dev_workload_api() {
    let dir = tempfile::tempdir().unwrap();
    let server = dev_server(&dir).await;
    let td = Arc::clone(server.trust_domain());
    let source = WorkloadApiSource::connect(options(server.endpoint()))
        .await
        .unwrap();

    // Bundles: X.509 authorities and JWT keys of the dev trust domain, in one SpiffeBundle.
    let set = source.bundles();
    let dev = TrustDomain::parse("dev.test").unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set.x509(&dev).unwrap().authorities(), td.ca_certificates());
    let mut want_kids = td.jwt_key_ids();
    want_kids.sort();
    assert_eq!(jwt_kids(&source), want_kids);

    // Own X.509-SVID: the dev CA's current one, key included, verifiable with our bundles.
    let own = source.x509_svid().unwrap();
    let id = SpiffeId::parse(WORKLOAD).unwrap();
    let issued = td.x509_svid(&id).unwrap();
    assert_eq!(own.spiffe_id(), &id);
    assert_eq!(own.chain(), issued.chain());
    assert_eq!(
        own.private_key().pkcs8_der(),
        issued.private_key().pkcs8_der()
    );
    let verified =
        svid_broker_identity::x509::verify(own.chain(), &source.bundles(), SystemTime::now());
    assert!(verified.is_ok(), "{verified:?}");
    assert!(!format!("{own:?}").contains("pkcs8"), "key redacted");

    // A JWT-SVID that our published JWT bundle verifies.
    let token = source.fetch_jwt_svid(&["registry.example"]).await.unwrap();
    assert_eq!(token.spiffe_id(), &id);
    assert_eq!(token.audience(), ["registry.example"]);
    let claims = JwtSvidValidator::new(["registry.example"])
        .unwrap()
        .validate(token.expose_secret(), &source.bundles(), SystemTime::now())
        .unwrap();
    assert_eq!(claims.spiffe_id, id);
    assert!(!format!("{token:?}").contains(token.expose_secret()));

    // Rotation: a new JWT key appears in a freshly published set.
    let mut updates = source.subscribe();
    server.rotate().unwrap();
    let mut want_kids = td.jwt_key_ids();
    want_kids.sort();
    for _ in 0..100 {
        if jwt_kids(&source) == want_kids {
            break;
        }
        tokio::time::timeout(Duration::from_secs(10), updates.changed())
            .await
            .expect("no update within 10 s")
            .unwrap();
    }
    assert_eq!(jwt_kids(&source), want_kids);
    assert_eq!(want_kids.len(), 2, "old key kept until its tokens expire");
    assert_eq!(
        source.x509_svid().unwrap().chain(),
        td.x509_svid(&id).unwrap().chain()
    );
    assert_eq!(source.error_count(), 0);

    source.shutdown().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn jwt_audience_rules() {
    let dir = tempfile::tempdir().unwrap();
    let server = dev_server(&dir).await;
    let source = WorkloadApiSource::connect(options(server.endpoint()))
        .await
        .unwrap();
    let none: [&str; 0] = [];
    assert!(matches!(
        source.fetch_jwt_svid(&none).await,
        Err(WorkloadSourceError::NoAudience)
    ));
    assert!(matches!(
        source.fetch_jwt_svid(&[""]).await,
        Err(WorkloadSourceError::EmptyAudience)
    ));
    let long = "a".repeat(MAX_JWT_AUDIENCE_LEN + 1);
    assert!(matches!(
        source.fetch_jwt_svid(&[long.as_str()]).await,
        Err(WorkloadSourceError::AudienceLimits)
    ));
    let many = vec!["a"; MAX_JWT_AUDIENCES + 1];
    assert!(matches!(
        source.fetch_jwt_svid(&many).await,
        Err(WorkloadSourceError::AudienceLimits)
    ));
    let max = vec!["a"; MAX_JWT_AUDIENCES];
    assert!(source.fetch_jwt_svid(&max).await.is_ok());
}

#[tokio::test]
async fn endpoint_errors_are_specific() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("nothing.sock");
    let err = WorkloadApiSource::connect(options(format!("unix://{}", missing.display())))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WorkloadSourceError::SocketMissing { path } if path == &missing),
        "{err:?}"
    );

    let err = WorkloadApiSource::connect(options("http://127.0.0.1:1".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, WorkloadSourceError::InvalidEndpoint { .. }),
        "{err:?}"
    );

    // A stale socket file: it exists, but nothing listens.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let err = WorkloadApiSource::connect(
        options(format!("unix://{}", stale.display()))
            .initial_sync_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, WorkloadSourceError::Unreachable { .. }),
        "{err:?}"
    );
}

/// A Workload API that answers every RPC with one status, counting the calls per RPC.
#[derive(Clone)]
struct Refuser {
    code: Code,
    message: &'static str,
    calls: Arc<Calls>,
}

#[derive(Default)]
struct Calls {
    x509: AtomicUsize,
    jwt_bundles: AtomicUsize,
    other: AtomicUsize,
}

type Refused<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl Refuser {
    fn refuse<T>(&self, counter: &AtomicUsize) -> Result<T, Status> {
        counter.fetch_add(1, Ordering::SeqCst);
        Err(Status::new(self.code, self.message))
    }
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for Refuser {
    type FetchX509SVIDStream = Refused<X509svidResponse>;
    type FetchX509BundlesStream = Refused<X509BundlesResponse>;
    type FetchJWTBundlesStream = Refused<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        _: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        self.refuse(&self.calls.x509)
    }
    async fn fetch_x509_bundles(
        &self,
        _: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        self.refuse(&self.calls.other)
    }
    async fn fetch_jwtsvid(
        &self,
        _: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        self.refuse(&self.calls.other)
    }
    async fn fetch_jwt_bundles(
        &self,
        _: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        self.refuse(&self.calls.jwt_bundles)
    }
    async fn validate_jwtsvid(
        &self,
        _: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        self.refuse(&self.calls.other)
    }
}

async fn refusing_server(
    dir: &tempfile::TempDir,
    code: Code,
    message: &'static str,
) -> (String, Arc<Calls>, AbortOnDrop) {
    let path = dir.path().join("refuser.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let calls = Arc::new(Calls::default());
    let service = Refuser {
        code,
        message,
        calls: Arc::clone(&calls),
    };
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(SpiffeWorkloadApiServer::new(service))
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await;
    });
    (
        format!("unix://{}", path.display()),
        calls,
        AbortOnDrop(task),
    )
}

#[tokio::test]
async fn invalid_argument_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, calls, _server) =
        refusing_server(&dir, Code::InvalidArgument, "missing security header").await;
    // A long sync timeout and a long backoff: only the no-retry rule can end this quickly; the
    // outer bound only keeps a regression from hanging the suite.
    let options = WorkloadApiOptions::default()
        .endpoint(endpoint)
        .initial_sync_timeout(Duration::from_secs(60))
        .reconnect_backoff(Duration::from_secs(30), Duration::from_secs(60));
    let err = tokio::time::timeout(Duration::from_secs(20), WorkloadApiSource::connect(options))
        .await
        .expect("initial sync retried an INVALID_ARGUMENT")
        .unwrap_err();
    assert!(
        matches!(
            err,
            WorkloadSourceError::Rejected {
                stream: ApiStream::X509
            }
        ),
        "{err:?}"
    );
    // One call per stream's initial sync, no retry.
    assert_eq!(
        calls.x509.load(Ordering::SeqCst),
        1,
        "FetchX509SVID retried"
    );
    assert_eq!(
        calls.jwt_bundles.load(Ordering::SeqCst),
        1,
        "FetchJWTBundles retried"
    );
    assert_eq!(calls.other.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn no_identity_issued_is_reported_after_the_sync_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, calls, _server) =
        refusing_server(&dir, Code::PermissionDenied, "no identity issued").await;
    let options = WorkloadApiOptions::default()
        .endpoint(endpoint)
        .initial_sync_timeout(Duration::from_millis(300))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(50));
    let err = WorkloadApiSource::connect(options).await.unwrap_err();
    assert!(
        matches!(err, WorkloadSourceError::NoIdentityIssued),
        "{err:?}"
    );
    assert!(
        calls.x509.load(Ordering::SeqCst) >= 2,
        "retried while waiting"
    );
}

#[test]
fn jwks_reassembly() {
    assert_eq!(jwks_document(std::iter::empty()), br#"{"keys":[]}"#);
    let keys: [&[u8]; 2] = [br#"{"kid":"a"}"#, br#"{"kid":"b"}"#];
    assert_eq!(
        jwks_document(keys.into_iter()),
        br#"{"keys":[{"kid":"a"},{"kid":"b"}]}"#
    );
}
