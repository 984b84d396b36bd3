//! Workload API server tests, driven by the real `spiffe` crate and by a raw tonic client.

use std::future::Future;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::Duration;

use prost_types::value::Kind;
use spiffe::{JwtSource, WorkloadApiClient, WorkloadApiError, X509Source};
use svid_broker_identity::id::{SpiffeId, TrustDomain};
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use svid_broker_proto::workload::{
    JwtBundlesRequest, JwtsvidRequest, ValidateJwtsvidRequest, X509BundlesRequest, X509svidRequest,
};
use tempfile::TempDir;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use super::*;

const DEFAULT_ID: &str = "spiffe://example.org/ns/default/sa/app";
const OTHER_ID: &str = "spiffe://example.org/ns/default/sa/other";

/// Upper bound for anything that waits on the server, so a bug fails the test instead of hanging.
const TEST_DEADLINE: Duration = Duration::from_secs(20);

async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_DEADLINE, fut)
        .await
        .expect("test step timed out")
}

/// Polls `check` every 50 ms for up to 10 s.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn dev_td() -> Arc<DevTrustDomain> {
    Arc::new(
        DevTrustDomain::new(
            TrustDomain::parse("example.org").unwrap(),
            [id(DEFAULT_ID), id(OTHER_ID)],
        )
        .unwrap(),
    )
}

async fn start() -> (TempDir, WorkloadApiHandle) {
    let dir = tempfile::tempdir().unwrap();
    let handle = WorkloadApiServer::start(dir.path(), dev_td())
        .await
        .unwrap();
    (dir, handle)
}

/// A generated client over the socket that adds no metadata by itself.
async fn raw_client(handle: &WorkloadApiHandle) -> SpiffeWorkloadApiClient<Channel> {
    let endpoint = spiffe::transport::Endpoint::parse(&handle.endpoint()).unwrap();
    let channel = spiffe::transport::connect(&endpoint).await.unwrap();
    SpiffeWorkloadApiClient::new(channel)
}

fn with_header<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(SECURITY_HEADER, MetadataValue::from_static("true"));
    request
}

async fn spiffe_client(handle: &WorkloadApiHandle) -> WorkloadApiClient {
    WorkloadApiClient::connect_to(handle.endpoint())
        .await
        .unwrap()
}

fn spiffe_td() -> spiffe::TrustDomain {
    spiffe::TrustDomain::new("example.org").unwrap()
}

// === the spiffe crate, unmodified ===

#[tokio::test]
async fn spiffe_client_fetches_x509_svids_and_bundles() {
    let (_dir, handle) = start().await;
    let client = within(spiffe_client(&handle)).await;

    let svid = within(client.fetch_x509_svid()).await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), DEFAULT_ID);
    let ours = handle.trust_domain().x509_svids();
    assert_eq!(svid.leaf().as_bytes(), ours[0].leaf().as_ref());

    let all = within(client.fetch_all_x509_svids()).await.unwrap();
    let ids: Vec<String> = all.iter().map(|s| s.spiffe_id().to_string()).collect();
    assert_eq!(ids, [DEFAULT_ID, OTHER_ID]);

    let bundles = within(client.fetch_x509_bundles()).await.unwrap();
    let bundle = bundles.get(&spiffe_td()).unwrap();
    let roots = handle.trust_domain().ca_certificates();
    assert_eq!(bundle.authorities().len(), 1);
    assert_eq!(bundle.authorities()[0].as_bytes(), roots[0].as_ref());

    let context = within(client.fetch_x509_context()).await.unwrap();
    assert_eq!(context.svids().len(), 2);
    assert!(context.bundle_set().get(&spiffe_td()).is_some());
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn spiffe_client_fetches_and_validates_jwt_svids() {
    let (_dir, handle) = start().await;
    let client = within(spiffe_client(&handle)).await;

    let jwt = within(client.fetch_jwt_svid(["registry"], None))
        .await
        .unwrap();
    assert_eq!(jwt.spiffe_id().to_string(), DEFAULT_ID);
    assert_eq!(jwt.audience(), ["registry"]);
    assert_eq!(jwt.key_id(), handle.trust_domain().jwt_key_ids()[0]);

    let all = within(client.fetch_all_jwt_svids(["registry"], None))
        .await
        .unwrap();
    let ids: Vec<String> = all.iter().map(|s| s.spiffe_id().to_string()).collect();
    assert_eq!(
        ids,
        [DEFAULT_ID, OTHER_ID],
        "one per identity, default first"
    );

    let other = spiffe::SpiffeId::new(OTHER_ID).unwrap();
    let jwt_other = within(client.fetch_jwt_svid(["registry"], Some(&other)))
        .await
        .unwrap();
    assert_eq!(jwt_other.spiffe_id(), &other);

    let bundles = within(client.fetch_jwt_bundles()).await.unwrap();
    let bundle = bundles.get(&spiffe_td()).unwrap();
    assert!(bundle.find_jwt_authority(jwt.key_id()).is_some());

    let validated = within(client.validate_jwt_token("registry", jwt.token()))
        .await
        .unwrap();
    assert_eq!(validated.spiffe_id().to_string(), DEFAULT_ID);
    let wrong_audience = within(client.validate_jwt_token("elsewhere", jwt.token())).await;
    assert!(
        wrong_audience
            .as_ref()
            .is_err_and(WorkloadApiError::is_invalid_argument),
        "{wrong_audience:?}"
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn x509_source_follows_rotation() {
    let (_dir, handle) = start().await;
    let source = within(
        X509Source::builder()
            .endpoint(handle.endpoint())
            .initial_sync_timeout(Duration::from_secs(10))
            .build(),
    )
    .await
    .unwrap();
    let first = source.svid().unwrap();
    assert_eq!(first.spiffe_id().to_string(), DEFAULT_ID);
    assert!(source.bundle_set().unwrap().get(&spiffe_td()).is_some());

    handle.rotate().unwrap();
    let expected = handle.trust_domain().x509_svids()[0].leaf().clone();
    let seen = eventually(|| {
        source
            .svid()
            .is_ok_and(|s| s.leaf().as_bytes() == expected.as_ref())
    })
    .await;
    assert!(seen, "the source did not pick up the rotated svid");
    assert_ne!(first.leaf().as_bytes(), expected.as_ref());
    source.shutdown().await;
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn jwt_source_fetches_svids_and_follows_bundle_rotation() {
    let (_dir, handle) = start().await;
    let source = within(JwtSource::builder().endpoint(handle.endpoint()).build())
        .await
        .unwrap();
    let jwt = within(source.fetch_jwt_svid(["registry"])).await.unwrap();
    assert_eq!(jwt.spiffe_id().to_string(), DEFAULT_ID);
    let bundle = source.bundle_set().unwrap().get(&spiffe_td()).unwrap();
    assert!(bundle.find_jwt_authority(jwt.key_id()).is_some());

    handle.rotate().unwrap();
    let new_kid = handle.trust_domain().jwt_key_ids()[0].clone();
    assert_ne!(new_kid, jwt.key_id());
    let seen = eventually(|| {
        source
            .bundle_set()
            .ok()
            .and_then(|set| set.get(&spiffe_td()))
            .is_some_and(|b| {
                // The old key stays while the token it signed is live.
                b.find_jwt_authority(&new_kid).is_some()
                    && b.find_jwt_authority(jwt.key_id()).is_some()
            })
    })
    .await;
    assert!(seen, "the source did not pick up the rotated jwt bundle");
    source.shutdown().await;
    handle.shutdown().await.unwrap();
}

// === security header ===

#[tokio::test]
async fn requests_without_the_security_header_are_invalid_argument() {
    let (_dir, handle) = start().await;
    let mut client = within(raw_client(&handle)).await;

    let mut codes = Vec::new();
    codes.push(
        within(client.fetch_x509svid(X509svidRequest {}))
            .await
            .unwrap_err()
            .code(),
    );
    codes.push(
        within(client.fetch_x509_bundles(X509BundlesRequest {}))
            .await
            .unwrap_err()
            .code(),
    );
    codes.push(
        within(client.fetch_jwt_bundles(JwtBundlesRequest {}))
            .await
            .unwrap_err()
            .code(),
    );
    codes.push(
        within(client.fetch_jwtsvid(JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err()
        .code(),
    );
    codes.push(
        within(client.validate_jwtsvid(ValidateJwtsvidRequest {
            audience: "a".into(),
            svid: "x.y.z".into(),
        }))
        .await
        .unwrap_err()
        .code(),
    );
    assert_eq!(codes, vec![Code::InvalidArgument; 5]);

    // The value must be exactly "true".
    let mut request = Request::new(X509BundlesRequest {});
    request
        .metadata_mut()
        .insert(SECURITY_HEADER, MetadataValue::from_static("True"));
    let status = within(client.fetch_x509_bundles(request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // And with it, the same call works.
    let ok = within(client.fetch_x509_bundles(with_header(X509BundlesRequest {}))).await;
    assert!(ok.is_ok());
    handle.shutdown().await.unwrap();
}

#[test]
fn security_header_check_rejects_duplicates() {
    let mut request = Request::new(());
    request
        .metadata_mut()
        .append(SECURITY_HEADER, MetadataValue::from_static("true"));
    assert!(check_security_header(request).is_ok());

    let mut request = Request::new(());
    request
        .metadata_mut()
        .append(SECURITY_HEADER, MetadataValue::from_static("true"));
    request
        .metadata_mut()
        .append(SECURITY_HEADER, MetadataValue::from_static("false"));
    assert_eq!(
        check_security_header(request).unwrap_err().code(),
        Code::InvalidArgument
    );
}

// === RPC semantics (raw client) ===

#[tokio::test]
async fn x509_svid_stream_sends_full_state_now_and_on_rotation() {
    let (_dir, handle) = start().await;
    let mut client = within(raw_client(&handle)).await;
    let mut stream = within(client.fetch_x509svid(with_header(X509svidRequest {})))
        .await
        .unwrap()
        .into_inner();

    let first = within(stream.message()).await.unwrap().unwrap();
    let td = handle.trust_domain();
    assert_eq!(first.svids.len(), 2);
    assert_eq!(first.svids[0].spiffe_id, DEFAULT_ID);
    assert_eq!(first.svids[1].spiffe_id, OTHER_ID);
    for (msg, ours) in first.svids.iter().zip(td.x509_svids()) {
        assert_eq!(msg.x509_svid, ours.chain_der());
        assert_eq!(msg.x509_svid_key, ours.private_key().pkcs8_der());
        assert_eq!(msg.bundle, td.x509_bundle_der());
    }

    handle.rotate().unwrap();
    let second = within(stream.message()).await.unwrap().unwrap();
    assert_eq!(second.svids.len(), 2);
    assert_ne!(second.svids[0].x509_svid, first.svids[0].x509_svid);
    assert_eq!(second.svids[0].x509_svid, td.x509_svids()[0].chain_der());
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn bundle_streams_are_keyed_by_trust_domain_id() {
    let (_dir, handle) = start().await;
    let td = Arc::clone(handle.trust_domain());
    let mut client = within(raw_client(&handle)).await;

    let mut x509 = within(client.fetch_x509_bundles(with_header(X509BundlesRequest {})))
        .await
        .unwrap()
        .into_inner();
    let msg = within(x509.message()).await.unwrap().unwrap();
    assert_eq!(msg.bundles.len(), 1);
    assert_eq!(
        msg.bundles.get("spiffe://example.org"),
        Some(&td.x509_bundle_der())
    );

    let mut jwt = within(client.fetch_jwt_bundles(with_header(JwtBundlesRequest {})))
        .await
        .unwrap()
        .into_inner();
    let msg = within(jwt.message()).await.unwrap().unwrap();
    let jwks: serde_json::Value =
        serde_json::from_slice(msg.bundles.get("spiffe://example.org").unwrap()).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], td.jwt_key_ids()[0].as_str());

    handle.rotate().unwrap();
    let msg = within(jwt.message()).await.unwrap().unwrap();
    let jwks: serde_json::Value =
        serde_json::from_slice(msg.bundles.get("spiffe://example.org").unwrap()).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], td.jwt_key_ids()[0].as_str());
    assert!(
        within(x509.message()).await.unwrap().is_some(),
        "pushed too"
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn fetch_jwt_svid_request_rules() {
    let (_dir, handle) = start().await;
    let mut client = within(raw_client(&handle)).await;
    let call = |audience: Vec<&str>, spiffe_id: &str| {
        with_header(JwtsvidRequest {
            audience: audience.into_iter().map(String::from).collect(),
            spiffe_id: spiffe_id.to_owned(),
        })
    };

    let ok = within(client.fetch_jwtsvid(call(vec!["a"], OTHER_ID)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.svids.len(), 1);
    assert_eq!(ok.svids[0].spiffe_id, OTHER_ID);

    let cases = [
        (call(vec![], ""), Code::InvalidArgument),
        (call(vec![""], ""), Code::InvalidArgument),
        (call(vec!["a"], "not a spiffe id"), Code::InvalidArgument),
        (
            call(vec!["a"], "spiffe://example.org/unknown"),
            Code::PermissionDenied,
        ),
        (
            call(vec!["a"], "spiffe://other.org/x"),
            Code::PermissionDenied,
        ),
    ];
    for (request, want) in cases {
        let status = within(client.fetch_jwtsvid(request)).await.unwrap_err();
        assert_eq!(status.code(), want, "{status:?}");
    }
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn validate_jwt_svid_returns_claims_or_the_broken_rule() {
    let (_dir, handle) = start().await;
    let td = Arc::clone(handle.trust_domain());
    let mut client = within(raw_client(&handle)).await;
    let jwt = td
        .issue_jwt_svid(&id(DEFAULT_ID), &["registry", "x"])
        .unwrap();

    let ok = within(client.validate_jwtsvid(with_header(ValidateJwtsvidRequest {
        audience: "registry".into(),
        svid: jwt.token().expose_secret().to_owned(),
    })))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(ok.spiffe_id, DEFAULT_ID);
    let claims = ok.claims.unwrap().fields;
    assert_eq!(
        claims["sub"].kind,
        Some(Kind::StringValue(DEFAULT_ID.to_owned()))
    );
    let Some(Kind::ListValue(aud)) = &claims["aud"].kind else {
        panic!("aud is not a list: {:?}", claims["aud"]);
    };
    assert_eq!(aud.values.len(), 2);
    #[expect(
        clippy::cast_precision_loss,
        reason = "test value is a small timestamp"
    )]
    let exp = jwt.expiry() as f64;
    assert_eq!(claims["exp"].kind, Some(Kind::NumberValue(exp)));

    let expired = td
        .issue_jwt_svid_at(
            &id(DEFAULT_ID),
            &["registry"],
            td.clock().now() - Duration::from_secs(3600),
            Duration::from_secs(60),
        )
        .unwrap();
    let cases = [
        ("registry", String::new()),
        ("", jwt.token().expose_secret().to_owned()),
        ("elsewhere", jwt.token().expose_secret().to_owned()),
        ("registry", "not.a.jwt".to_owned()),
        ("registry", expired.token().expose_secret().to_owned()),
    ];
    for (audience, svid) in cases {
        let status = within(client.validate_jwtsvid(with_header(ValidateJwtsvidRequest {
            audience: audience.into(),
            svid,
        })))
        .await
        .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{audience}: {status:?}"
        );
        assert!(!status.message().contains(jwt.token().expose_secret()));
    }
    handle.shutdown().await.unwrap();
}

#[test]
fn json_claims_convert_to_protobuf_values() {
    let value = serde_json::json!({
        "s": "x", "n": 1.5, "b": true, "z": null, "l": [1, "a"], "o": {"k": "v"}
    });
    let Some(Kind::StructValue(s)) = json_to_prost(value).kind else {
        panic!("not a struct");
    };
    assert_eq!(s.fields["s"].kind, Some(Kind::StringValue("x".into())));
    assert_eq!(s.fields["n"].kind, Some(Kind::NumberValue(1.5)));
    assert_eq!(s.fields["b"].kind, Some(Kind::BoolValue(true)));
    assert!(matches!(s.fields["z"].kind, Some(Kind::NullValue(_))));
    assert!(matches!(&s.fields["l"].kind, Some(Kind::ListValue(l)) if l.values.len() == 2));
    assert!(matches!(&s.fields["o"].kind, Some(Kind::StructValue(o)) if o.fields.len() == 1));
}

// === lifecycle and socket handling ===

#[tokio::test]
async fn shutdown_ends_streams_cleanly_and_removes_the_socket() {
    let (_dir, handle) = start().await;
    let path = handle.socket_path().to_owned();
    let mut client = within(raw_client(&handle)).await;
    let mut stream = within(client.fetch_x509svid(with_header(X509svidRequest {})))
        .await
        .unwrap()
        .into_inner();
    assert!(within(stream.message()).await.unwrap().is_some());

    within(handle.shutdown()).await.unwrap();
    let end = within(stream.message()).await;
    assert!(
        matches!(end, Ok(None)),
        "stream should end with OK: {end:?}"
    );
    assert!(!path.exists(), "socket file removed");
}

#[tokio::test]
async fn socket_is_private_and_named_in_the_directory() {
    let (dir, handle) = start().await;
    assert_eq!(handle.socket_path(), dir.path().join(DEFAULT_SOCKET_NAME));
    let mode = std::fs::metadata(handle.socket_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(handle.endpoint().starts_with("unix:///"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, [std::ffi::OsString::from(DEFAULT_SOCKET_NAME)]);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn explicit_socket_path_is_used_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custom.sock");
    let handle = WorkloadApiServer::start(&path, dev_td()).await.unwrap();
    assert_eq!(handle.socket_path(), path);
    let client = within(spiffe_client(&handle)).await;
    assert!(within(client.fetch_x509_svid()).await.is_ok());
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn stale_socket_is_replaced_but_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    // A socket file nobody listens on any more, as a crashed server leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let first = WorkloadApiServer::start(&path, dev_td()).await.unwrap();

    let second = WorkloadApiServer::start(&path, dev_td()).await;
    assert!(
        matches!(&second, Err(ServerError::SocketInUse { path: p }) if *p == path),
        "{second:?}"
    );
    // The running server is untouched.
    let client = within(spiffe_client(&first)).await;
    assert!(within(client.fetch_x509_svid()).await.is_ok());
    first.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_regular_file_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    std::fs::write(&path, b"not a socket").unwrap();
    let result = WorkloadApiServer::start(&path, dev_td()).await;
    assert!(
        matches!(&result, Err(ServerError::NotASocket { .. })),
        "{result:?}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
}

#[tokio::test]
async fn a_trust_domain_without_identities_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let td = Arc::new(
        DevTrustDomain::builder(TrustDomain::parse("example.org").unwrap())
            .build()
            .unwrap(),
    );
    let result = WorkloadApiServer::start(dir.path(), td).await;
    assert!(
        matches!(&result, Err(ServerError::NoIdentities { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn auto_rotation_pushes_new_svids() {
    let dir = tempfile::tempdir().unwrap();
    let td = dev_td();
    let handle = WorkloadApiServer::builder(Arc::clone(&td))
        .auto_rotate(Some(Duration::from_millis(100)))
        .serve(dir.path())
        .await
        .unwrap();
    let start = td.generation();
    assert!(eventually(|| td.generation() > start).await);
    handle.shutdown().await.unwrap();

    let quiet = WorkloadApiServer::builder(Arc::clone(&td)).auto_rotate(None);
    assert_eq!(quiet.auto_rotate, None);
    let default = WorkloadApiServer::builder(Arc::clone(&td));
    assert_eq!(default.auto_rotate, Some(td.x509_svid_ttl() / 2));
}

#[tokio::test]
async fn long_socket_paths_still_bind_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().as_os_str().len() + 1;
    // sun_path holds 108 bytes including the NUL: make the final path fit (100 bytes) while the
    // temporary name (final + ".<pid>-<n>.tmp") does not.
    assert!(base < 90, "temp dir path too long for this test");
    let path = dir.path().join("s".repeat(100 - base));
    let handle = WorkloadApiServer::start(&path, dev_td()).await.unwrap();
    assert_eq!(handle.socket_path(), path);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let client = within(spiffe_client(&handle)).await;
    assert!(within(client.fetch_x509_svid()).await.is_ok());
    handle.shutdown().await.unwrap();

    let too_long = dir.path().join("s".repeat(120 - base));
    let result = WorkloadApiServer::start(&too_long, dev_td()).await;
    assert!(
        matches!(&result, Err(ServerError::Bind { .. })),
        "{result:?}"
    );
}

// --- grpc-core's `:authority` (see `authority.rs`) ------------------------------------------

/// What grpcio 1.85 sent for two FetchJWTSVID calls, `:authority` = the percent-encoded socket
/// path, one frame per line (after the client preface).
const GRPC_CORE_CAPTURE: &str = include_str!("testdata/grpc-core-1.85-fetch-jwtsvid.hex");

fn grpc_core_capture() -> Vec<u8> {
    let digits: Vec<u8> = GRPC_CORE_CAPTURE
        .lines()
        .filter(|line| !line.starts_with('#'))
        .flat_map(|line| line.bytes().filter(u8::is_ascii_hexdigit))
        .collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// How each stream of a raw HTTP/2 exchange ended.
#[derive(Debug, Default)]
struct RawStream {
    /// For stream 0: the parameters of the server's SETTINGS frames.
    settings: Vec<(u16, u32)>,
    headers: Vec<(String, String)>,
    data_bytes: usize,
    reset: Option<u32>,
    ended: bool,
}

/// Replays `client_frames` (after the preface) and reads until every stream in `streams` ended,
/// acknowledging the server's SETTINGS and decoding its header blocks.
async fn replay(
    handle: &WorkloadApiHandle,
    client_frames: &[u8],
    streams: &[u32],
) -> HashMap<u32, RawStream> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut socket = UnixStream::connect(handle.socket_path()).await.unwrap();
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    socket.write_all(client_frames).await.unwrap();
    let mut decoder = loona_hpack::Decoder::new();
    let mut seen: HashMap<u32, RawStream> = HashMap::new();
    while !streams.iter().all(|s| seen.get(s).is_some_and(|r| r.ended)) {
        let mut header = [0u8; 9];
        socket.read_exact(&mut header).await.unwrap();
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let (frame_type, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        let mut payload = vec![0; len];
        socket.read_exact(&mut payload).await.unwrap();
        let entry = seen.entry(stream).or_default();
        match frame_type {
            0x0 => entry.data_bytes += len,
            0x1 => {
                assert_eq!(flags & 0x4, 0x4, "the server's headers fit one frame");
                let skip = if flags & 0x20 != 0 { 5 } else { 0 };
                let fields = decoder.decode(&payload[skip..]).unwrap();
                entry.headers.extend(
                    fields.into_iter().map(|(n, v)| {
                        (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap())
                    }),
                );
            }
            0x3 => {
                entry.reset = Some(u32::from_be_bytes(payload[..4].try_into().unwrap()));
                entry.ended = true;
            }
            0x4 if flags & 0x1 == 0 => {
                entry.settings.extend(payload.chunks_exact(6).map(|p| {
                    (
                        u16::from_be_bytes([p[0], p[1]]),
                        u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
                    )
                }));
                socket
                    .write_all(&[0, 0, 0, 0x4, 0x1, 0, 0, 0, 0])
                    .await
                    .unwrap();
            }
            0x7 => panic!("server sent GOAWAY: {payload:02x?}"),
            _ => {}
        }
        if matches!(frame_type, 0x0 | 0x1) && flags & 0x1 != 0 {
            entry.ended = true;
        }
    }
    seen
}

#[tokio::test]
async fn grpc_core_requests_with_a_percent_encoded_authority_are_served() {
    let (_dir, handle) = start().await;
    let seen = within(replay(&handle, &grpc_core_capture(), &[1, 3])).await;
    // The front decodes with the HTTP/2 default table size and splits at this frame size; the
    // server must not announce others (SETTINGS_HEADER_TABLE_SIZE = 0x1, MAX_FRAME_SIZE = 0x5).
    let settings = &seen[&0].settings;
    assert!(
        settings.iter().all(|&(id, value)| match id {
            0x1 => value as usize == authority::CLIENT_HEADER_TABLE_SIZE,
            0x5 => value == authority::MAX_FRAME_SIZE,
            _ => true,
        }),
        "{settings:?}"
    );
    assert!(settings.iter().any(|&(id, _)| id == 0x5), "{settings:?}");
    // Stream 3 names its `:authority` by dynamic-table index only.
    for stream in [1, 3] {
        let answer = &seen[&stream];
        assert_eq!(answer.reset, None, "stream {stream} was reset: {answer:?}");
        assert!(
            answer.headers.contains(&(":status".into(), "200".into())),
            "stream {stream}: {answer:?}"
        );
        assert!(
            answer.headers.contains(&("grpc-status".into(), "0".into())),
            "stream {stream}: {answer:?}"
        );
        assert!(
            answer.data_bytes > 100,
            "stream {stream} carries a JWT-SVID: {answer:?}"
        );
    }
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_connection_that_breaks_http2_framing_is_closed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (_dir, handle) = start().await;
    let mut socket = UnixStream::connect(handle.socket_path()).await.unwrap();
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // SETTINGS, then a HEADERS frame larger than the maximum frame size (header only).
    socket
        .write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    socket
        .write_all(&[0, 0x40, 0x01, 0x1, 0x4, 0, 0, 0, 1])
        .await
        .unwrap();
    // `read_to_end` returns (EOF or reset) only once the server closed the connection;
    // `within` fails the test if it never does.
    let mut rest = Vec::new();
    let _closed = within(socket.read_to_end(&mut rest)).await;
    // A well-behaved client on a new connection is still served.
    let client = within(spiffe_client(&handle)).await;
    assert!(within(client.fetch_x509_svid()).await.is_ok());
    handle.shutdown().await.unwrap();
}
