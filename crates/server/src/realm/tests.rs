use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use http::Request as HttpRequest;
use http_body_util::BodyExt as _;
use svid_broker_identity::clock::FixedClock;
use svid_broker_identity::secret::ExposeSecret as _;
use tower::ServiceExt as _;

use super::*;
use crate::authn::{AuthMethod, Authenticated, Caller, Subject};
use crate::engine::ExchangeOutput;
use crate::testutil::{AUDIENCE, BUILDER, Fixture, READER, claims, t0};
use crate::throttle::RateLimit;

const URL: &str = "http://127.0.0.1:9999";

fn app(f: &Fixture, ready: bool) -> Router {
    router(RealmState::new(
        f.broker.clone(),
        Arc::new(FixedClock(t0())),
        URL,
        Arc::new(AtomicBool::new(ready)),
    ))
}

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")))
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn send(app: Router, req: HttpRequest<Body>) -> Reply {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn get_request(uri: &str, auth: Option<&str>) -> HttpRequest<Body> {
    let mut b = HttpRequest::get(uri);
    if let Some(a) = auth {
        b = b.header(AUTHORIZATION, a);
    }
    b.body(Body::empty()).unwrap()
}

async fn get(app: Router, uri: &str, auth: Option<&str>) -> Reply {
    send(app, get_request(uri, auth)).await
}

async fn post(app: Router, form: &str, auth: Option<&str>) -> Reply {
    let mut b =
        HttpRequest::post("/token").header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(a) = auth {
        b = b.header(AUTHORIZATION, a);
    }
    send(app, b.body(Body::from(form.to_owned())).unwrap()).await
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn get_token_with_basic_jwt_svid_and_repeated_scopes() {
    let f = Fixture::new();
    let jwt = f.jwt(BUILDER, AUDIENCE);
    let uri = format!(
        "/token?account={}&service=registry.local&scope={}&scope={}",
        enc(BUILDER),
        enc("repository:team/app:pull,push"),
        enc("repository:team/base:pull")
    );
    let r = get(app(&f, true), &uri, Some(&basic(BUILDER, &jwt))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["token"], v["access_token"]);
    assert!(v["expires_in"].as_u64().unwrap() >= 60);
    let issued = v["issued_at"].as_str().unwrap();
    assert_eq!(issued.len(), "2026-11-25T23:58:29Z".len(), "{issued}");
    assert!(issued.ends_with('Z') && issued.as_bytes()[10] == b'T');
    assert!(v.get("refresh_token").is_none());
    assert!(v.get("scope").is_none());
    let c = claims(v["token"].as_str().unwrap());
    assert_eq!(c["access"].as_array().unwrap().len(), 2);
    assert_eq!(r.headers[CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn bearer_jwt_svid_is_accepted_too() {
    let f = Fixture::new();
    let jwt = f.jwt(READER, AUDIENCE);
    let r = get(
        app(&f, true),
        "/token?service=registry.local&scope=repository:team/app:pull",
        Some(&format!("Bearer {jwt}")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn offline_token_returns_a_refresh_token_usable_on_post() {
    let f = Fixture::new();
    let jwt = f.jwt(READER, AUDIENCE);
    let r = get(
        app(&f, true),
        "/token?service=registry.local&offline_token=true&client_id=test",
        Some(&basic(READER, &jwt)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_owned();
    assert!(refresh.starts_with("sbr2."));
    let form = format!(
        "grant_type=refresh_token&refresh_token={}&service=registry.local&client_id=containers%2Fimage&scope={}&scope={}",
        enc(&refresh),
        enc("repository:team/app:pull,push"),
        enc("repository:team/b:pull")
    );
    let r = post(app(&f, true), &form, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(
        v["scope"],
        "repository:team/app:pull repository:team/b:pull"
    );
    assert_eq!(v["token"], v["access_token"]);
    assert!(v["refresh_token"].as_str().unwrap().starts_with("sbr2."));
    // Every field, in the order the answer has always had (sorted, as `serde_json`'s map
    // wrote it): clients parse JSON, but a changed body should be a decision.
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_in",
            "issued_at",
            "refresh_token",
            "scope",
            "token"
        ]
    );
    let order: Vec<usize> = keys
        .iter()
        .map(|k| r.body.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(order.is_sorted(), "{}", r.body);
}

#[tokio::test]
async fn post_password_grant_with_space_joined_scope() {
    let f = Fixture::new();
    let jwt = f.jwt(BUILDER, AUDIENCE);
    let form = format!(
        "grant_type=password&username={}&password={}&service=registry.local&client_id=docker&access_type=offline&scope={}",
        enc(BUILDER),
        enc(&jwt),
        enc("repository:team/app:push repository:team/app:pull registry:catalog:*")
    );
    let r = post(app(&f, true), &form, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    // Partial grant: no catalog for the builder, and that is not an error.
    assert_eq!(v["scope"], "repository:team/app:pull,push");
    assert!(v.get("refresh_token").is_some());
}

#[tokio::test]
async fn refresh_grant_refuses_other_credential_kinds() {
    let f = Fixture::new();
    let jwt = f.jwt(BUILDER, AUDIENCE);
    let form = format!(
        "grant_type=refresh_token&refresh_token={}&service=registry.local",
        enc(&jwt)
    );
    let r = post(app(&f, true), &form, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = post(
        app(&f, true),
        "grant_type=refresh_token&service=registry.local",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = post(
        app(&f, true),
        "grant_type=magic&service=registry.local",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_requests_get_400() {
    let f = Fixture::new();
    let auth = basic(BUILDER, &f.jwt(BUILDER, AUDIENCE));
    for uri in [
        "/token?scope=repository:team/app:pull",
        "/token?service=unknown.registry",
        "/token?service=registry.local&scope=repository:team/app",
        "/token?service=registry.local&scope=repository:team//app:pull",
        "/token?service=registry.local&scope=nonsense",
    ] {
        let r = get(app(&f, true), uri, Some(&auth)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.body);
        assert_eq!(r.json()["errors"][0]["code"], "INVALID_REQUEST");
    }
}

#[tokio::test]
async fn bad_or_missing_credentials_get_401_with_a_basic_challenge() {
    let f = Fixture::new();
    let wrong_audience = f.jwt(BUILDER, "not-the-broker");
    for auth in [
        None,
        Some(basic(BUILDER, &wrong_audience)),
        Some(basic(BUILDER, "not-a-token")),
        Some("Digest abc".to_owned()),
        Some("Basic !!!".to_owned()),
    ] {
        let r = get(
            app(&f, true),
            "/token?service=registry.local&scope=repository:team/app:pull",
            auth.as_deref(),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}: {}", r.body);
        assert_eq!(r.headers[WWW_AUTHENTICATE], "Basic realm=\"svid-broker\"");
    }
    // The first refusal of each reason is audited in full (the two wrong JWT-SVIDs and the
    // two malformed headers share theirs), and no secret reaches the audit log.
    let audit = f.audit.lock().unwrap().join("\n");
    assert_eq!(audit.lines().count(), 3, "{audit}");
    assert!(!audit.contains(&wrong_audience));
}

#[tokio::test]
async fn rate_limited_requests_get_429_with_retry_after() {
    let f = Fixture::with(|o| {
        o.rate_limit = Some(RateLimit {
            per_second: 0.5,
            burst: 1.0,
        });
    });
    let auth = basic(READER, &f.jwt(READER, AUDIENCE));
    let uri = "/token?service=registry.local&scope=repository:team/app:pull";
    assert_eq!(
        get(app(&f, true), uri, Some(&auth)).await.status,
        StatusCode::OK
    );
    let r = get(app(&f, true), uri, Some(&auth)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers[RETRY_AFTER], "2");
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let f = Fixture::new();
    let form = format!("service=registry.local&x={}", "a".repeat(MAX_BODY_BYTES));
    let r = post(app(&f, true), &form, None).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn login_credentials_work_as_basic_passwords() {
    let f = Fixture::new();
    let (username, password) = login_credential(&f, BUILDER, &[]);
    let r = get(
        app(&f, true),
        "/token?service=registry.local&scope=repository:team/app:push",
        Some(&basic(&username, &password)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Bound to its service.
    let r = get(
        app(&f, true),
        "/token?service=registry.other",
        Some(&basic(&username, &password)),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn jwks_discovery_health_and_metrics() {
    let f = Fixture::new();
    let r = get(app(&f, true), "/jwks.json", None).await;
    assert_eq!(r.status, StatusCode::OK);
    // One signing leaf, listed once per `kid` format (whatever profiles the policy uses).
    assert_eq!(
        r.json()["keys"].as_array().unwrap().len(),
        svid_broker_token::KidFormat::ALL.len()
    );
    let r = get(app(&f, true), "/.well-known/openid-configuration", None).await;
    assert_eq!(r.json()["issuer"], URL);
    assert_eq!(r.json()["jwks_uri"], format!("{URL}/jwks.json"));
    assert_eq!(
        get(app(&f, true), "/healthz", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(app(&f, true), "/readyz", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(app(&f, false), "/readyz", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let auth = basic(READER, &f.jwt(READER, AUDIENCE));
    let token = get(
        app(&f, true),
        "/token?service=registry.local&scope=repository:team/app:pull",
        Some(&auth),
    )
    .await
    .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = get(app(&f, true), "/metrics", None).await;
    assert!(
        r.headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        r.body
            .contains("svid_broker_issued_total{endpoint=\"realm_get\",kind=\"access_token\"} 1")
    );
    assert!(
        r.body
            .contains("svid_broker_request_duration_seconds_count{route=\"token_get\"} 1")
    );
    assert!(!r.body.contains(&token));
}

/// One JWT-SVID presented twice to the realm (both answered 200), then `/metrics`: the SVID
/// and the metrics page.
async fn present_twice_then_metrics(f: &Fixture) -> (String, String) {
    let svid = f.jwt(READER, AUDIENCE);
    let auth = basic(READER, &svid);
    for _ in 0..2 {
        let r = get(
            app(f, true),
            "/token?service=registry.local&scope=repository:team/app:pull",
            Some(&auth),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    (svid, get(app(f, true), "/metrics", None).await.body)
}

/// `/metrics` carries the verified caches' figures: one JWT-SVID presented twice is one miss
/// (verified, then stored) and one hit, and the cache then holds one entry.
#[tokio::test]
async fn metrics_count_verified_cache_hits_and_misses() {
    let f = Fixture::new();
    let (svid, body) = present_twice_then_metrics(&f).await;
    for line in [
        "# TYPE svid_broker_verified_cache_lookups_total counter",
        "svid_broker_verified_cache_lookups_total{cache=\"jwt_svid\",result=\"hit\"} 1",
        "svid_broker_verified_cache_lookups_total{cache=\"jwt_svid\",result=\"miss\"} 1",
        "svid_broker_verified_cache_lookups_total{cache=\"x509_svid\",result=\"miss\"} 0",
        "svid_broker_verified_cache_entries{cache=\"jwt_svid\"} 1",
        "svid_broker_verified_cache_entries{cache=\"login_credential\"} 0",
        "svid_broker_verified_cache_evictions_total{cache=\"jwt_svid\"} 0",
        "# TYPE svid_broker_verified_cache_bytes gauge",
    ] {
        assert!(body.contains(line), "missing {line}\n{body}");
    }
    let bytes = body
        .lines()
        .find_map(|l| l.strip_prefix("svid_broker_verified_cache_bytes{cache=\"jwt_svid\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    assert!(bytes > 0, "{body}");
    assert!(!body.contains(&svid));
}

/// `limits.verified_cache_entries = 0` turns the cache off: the same JWT-SVID presented twice
/// is verified twice (two misses, nothing stored), with the same answers.
#[tokio::test]
async fn a_cache_capped_at_zero_entries_verifies_every_time() {
    let f = Fixture::with(|o| o.verified_cache = crate::CacheLimits::new(0, 64 * 1024));
    let (_, body) = present_twice_then_metrics(&f).await;
    for line in [
        "svid_broker_verified_cache_lookups_total{cache=\"jwt_svid\",result=\"hit\"} 0",
        "svid_broker_verified_cache_lookups_total{cache=\"jwt_svid\",result=\"miss\"} 2",
        "svid_broker_verified_cache_entries{cache=\"jwt_svid\"} 0",
    ] {
        assert!(body.contains(line), "missing {line}\n{body}");
    }
}

/// A real listener and a hand-written chunked POST, as containers/image sends it (no
/// Content-Length).
#[tokio::test]
async fn chunked_post_bodies_are_read_whole() {
    let f = Fixture::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app(&f, true).into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, service).await;
    });
    let refresh = refresh_token(&f, READER);
    let before = f.audit_lines().len();
    let form = format!(
        "grant_type=refresh_token&refresh_token={}&service=registry.local&client_id=containers%2Fimage&scope={}",
        enc(&refresh),
        enc("repository:team/app:pull")
    );
    let (a, b) = form.split_at(form.len() / 2);
    let request = format!(
        "POST /token HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let response = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    server.abort();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("\"scope\":\"repository:team/app:pull\""),
        "{response}"
    );
    let audit = f.audit_lines();
    assert_eq!(
        audit[before]["peer"].as_str().unwrap().split(':').next(),
        Some("127.0.0.1")
    );
    assert_eq!(
        audit[before]["actor"],
        "refresh-token client_id=containers/image"
    );
}

// --- Refresh-token session bound, policy re-check, ceiling inheritance, audit ---

fn app_at(f: &Fixture, at: SystemTime) -> Router {
    router(RealmState::new(
        f.broker.clone(),
        Arc::new(FixedClock(at)),
        URL,
        Arc::new(AtomicBool::new(true)),
    ))
}

/// A `refresh_token` grant at `at` (the leaf is rotated first when due, so minting works at
/// any simulated time).
async fn refresh_at(f: &Fixture, at: SystemTime, refresh: &str, scopes: &[&str]) -> Reply {
    f.broker.rotate_signing_key_if_due(at).unwrap();
    let mut form = format!(
        "grant_type=refresh_token&refresh_token={}&service=registry.local&client_id=test",
        enc(refresh)
    );
    for s in scopes {
        form.push_str("&scope=");
        form.push_str(&enc(s));
    }
    post(app_at(f, at), &form, None).await
}

fn refresh_of(r: &Reply) -> String {
    r.json()["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token: {}", r.body))
        .to_owned()
}

async fn offline_with_jwt(f: &Fixture, who: &str) -> String {
    let jwt = f.jwt(who, AUDIENCE);
    let r = get(
        app(f, true),
        "/token?service=registry.local&offline_token=true&client_id=test",
        Some(&basic(who, &jwt)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    refresh_of(&r)
}

/// A subject that proved a JWT-SVID.
fn svid_subject(who: &str) -> Subject {
    Subject {
        authenticated: Authenticated::svid(Caller {
            spiffe_id: crate::testutil::id(who),
            method: AuthMethod::JwtSvid,
        }),
        on_behalf: None,
    }
}

/// A checked request for `registry.local` with no scopes.
fn checked(kind: ExchangeKind, endpoint: Endpoint, scopes: &[&str]) -> ExchangeRequest {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    let context = RequestContext::new(kind, endpoint, None)
        .with_service("registry.local")
        .with_scopes(&scopes);
    ExchangeRequest::parse(context, "registry.local", &scopes).unwrap()
}

/// A login credential for `who` (obtained over gRPC with `ceiling`): its username and password.
fn login_credential(f: &Fixture, who: &str, ceiling: &[&str]) -> (String, String) {
    let request = checked(ExchangeKind::LoginCredential, Endpoint::Grpc, ceiling);
    let out = f
        .broker
        .exchange_for(&svid_subject(who), &request, t0())
        .unwrap();
    let ExchangeOutput::LoginCredential(c) = out.output else {
        panic!("{out:?}")
    };
    (c.username, c.password.expose_secret().to_owned())
}

/// A refresh token for `who` (an SVID caller), in a session starting at `t0()`. (Issuing it
/// writes the realm's two audit events.)
fn refresh_token(f: &Fixture, who: &str) -> String {
    let request =
        checked(ExchangeKind::AccessToken, Endpoint::RealmGet, &[]).with_refresh_token(true);
    let tokens = f
        .broker
        .realm_token_for(&svid_subject(who), &request, t0())
        .unwrap();
    tokens.refresh.unwrap().secret.expose_secret().to_owned()
}

/// Renewing once per 50 minutes keeps a chain alive only until the session bound (24 h by
/// default) after the original authentication; then the grant is a 401.
#[tokio::test]
async fn refresh_chain_ends_at_the_absolute_session_bound() {
    let f = Fixture::new();
    let mut refresh = offline_with_jwt(&f, READER).await;
    let step = Duration::from_secs(50 * 60);
    let mut at = t0();
    let mut ended = None;
    for i in 1..=40u32 {
        at += step;
        let r = refresh_at(&f, at, &refresh, &["repository:team/app:pull"]).await;
        if r.status != StatusCode::OK {
            ended = Some((i, r));
            break;
        }
        refresh = refresh_of(&r);
    }
    let (i, r) = ended.expect("the refresh chain never ended");
    // 9 × 50 min = 7 h 30 min is inside the 8 h session; 10 × 50 min is past it.
    assert_eq!(i, 10, "{}", r.body);
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(
        r.body.contains("refresh token session expired"),
        "{}",
        r.body
    );
    assert!(r.headers.contains_key(WWW_AUTHENTICATE));
}

/// A subject whose allow rules are removed cannot renew: 401, and no new refresh token.
#[tokio::test]
async fn refresh_grant_is_refused_once_policy_drops_the_subject() {
    let f = Fixture::new();
    let refresh = offline_with_jwt(&f, READER).await;
    // Still allowed: renews.
    let r = refresh_at(&f, t0(), &refresh, &["repository:team/app:pull"]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let start = crate::testutil::POLICY
        .find("[[rules]]\nid = \"reader-pull-team\"")
        .unwrap();
    let end = start
        + crate::testutil::POLICY[start..]
            .find("\n[[rules]]")
            .unwrap();
    let without_reader = format!(
        "{}{}",
        &crate::testutil::POLICY[..start],
        &crate::testutil::POLICY[end..]
    );
    f.broker
        .replace_policy(svid_broker_policy::Policy::from_toml_str(&without_reader).unwrap());
    let r = refresh_at(&f, t0(), &refresh, &["repository:team/app:pull"]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(!r.body.contains("refresh_token"), "{}", r.body);
    let last = f.audit_lines().pop().unwrap();
    assert_eq!(last["decision"], "deny");
    assert_eq!(last["subject"], READER);
}

/// A refresh token obtained with a login credential keeps the credential's ceiling through
/// offline → refresh → refresh, on GET (`offline_token`) and POST (`access_type=offline`).
#[tokio::test]
async fn login_credential_ceiling_holds_through_refreshes() {
    let f = Fixture::new();
    let (user, pass) = login_credential(&f, BUILDER, &["repository:team/app:pull"]);
    let asked = [
        "repository:team/app:pull,push",
        "repository:team/other:pull",
    ];
    let via_get = get(
        app(&f, true),
        "/token?service=registry.local&offline_token=true&scope=repository:team/app:push",
        Some(&basic(&user, &pass)),
    )
    .await;
    assert_eq!(via_get.status, StatusCode::OK, "{}", via_get.body);
    let via_post = post(
        app(&f, true),
        &format!(
            "grant_type=password&username={}&password={}&service=registry.local&access_type=offline",
            enc(&user),
            enc(&pass)
        ),
        None,
    )
    .await;
    assert_eq!(via_post.status, StatusCode::OK, "{}", via_post.body);
    for first in [refresh_of(&via_get), refresh_of(&via_post)] {
        let mut refresh = first;
        for _ in 0..2 {
            let r = refresh_at(&f, t0(), &refresh, &asked).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            assert_eq!(r.json()["scope"], "repository:team/app:pull", "{}", r.body);
            refresh = refresh_of(&r);
        }
    }
    // Without a ceiling (a JWT-SVID's refresh token) the same request gets the full grant.
    let unbounded = offline_with_jwt(&f, BUILDER).await;
    let r = refresh_at(&f, t0(), &unbounded, &asked).await;
    assert_eq!(
        r.json()["scope"],
        "repository:team/app:pull,push repository:team/other:pull"
    );
}

/// A refresh token obtained with a login credential never outlives the credential.
#[tokio::test]
async fn refresh_token_from_a_login_credential_ends_with_it() {
    let f = Fixture::new();
    let (user, pass) = login_credential(&f, BUILDER, &[]);
    let r = get(
        app(&f, true),
        "/token?service=registry.local&offline_token=true",
        Some(&basic(&user, &pass)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let refresh = refresh_of(&r);
    // The login credential lives 30 min (the default): a renewal at 20 min works...
    let later = t0() + Duration::from_secs(20 * 60);
    let r = refresh_at(&f, later, &refresh, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let renewed = refresh_of(&r);
    // ...and neither token is accepted past the credential's own expiry.
    let past = t0() + Duration::from_secs(30 * 60 + 1);
    for token in [&refresh, &renewed] {
        let r = refresh_at(&f, past, token, &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        assert!(
            r.body.contains("refresh token session expired"),
            "{}",
            r.body
        );
    }
}

/// Every issued refresh token is audited with its `jti`, never with the token.
#[tokio::test]
async fn issued_refresh_tokens_are_audited_with_their_jti() {
    let f = Fixture::new();
    let refresh = offline_with_jwt(&f, READER).await;
    let r = refresh_at(&f, t0(), &refresh, &["repository:team/app:pull"]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let renewed = refresh_of(&r);
    let lines = f.audit_lines();
    let refresh_events: Vec<_> = lines
        .iter()
        .filter(|l| l["kind"] == "refresh_token")
        .collect();
    assert_eq!(refresh_events.len(), 2, "{lines:?}");
    for (event, token) in refresh_events.iter().zip([&refresh, &renewed]) {
        assert_eq!(event["decision"], "allow");
        assert_eq!(event["subject"], READER);
        let jti = event["jti"].as_str().unwrap();
        assert!(!jti.is_empty());
        let claims = f
            .broker
            .authenticator()
            .authenticate_secret(None, token, t0())
            .unwrap()
            .binding
            .unwrap();
        assert_eq!(claims.jti, jti);
    }
    let all = f.audit.lock().unwrap().join("\n");
    assert!(!all.contains(&refresh) && !all.contains(&renewed));
}

fn from(req: HttpRequest<Body>, addr: &str) -> HttpRequest<Body> {
    let mut req = req;
    req.extensions_mut()
        .insert(ConnectInfo(addr.parse::<SocketAddr>().unwrap()));
    req
}

/// Item 3 of the hardening issue: 10,000 unauthenticated requests from one address write a
/// bounded amount of audit (here a few lines, whatever the count), the address is limited
/// (429) once its failure budget is spent, the totals are reported in one summary per reason,
/// and a legitimate client on another address is served throughout.
#[tokio::test]
async fn a_flood_of_bad_requests_writes_bounded_audit_and_spares_other_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let sink = crate::audit::AuditSink::file(&path).unwrap();
    let f = Fixture::with(|o| o.audit = sink);
    let uri = "/token?service=registry.local&scope=repository:team/app:pull";
    // One instant for the whole flood: the budget refills 10 per second.
    let at = t0();
    let mut limited = 0;
    for i in 0..10_000u32 {
        let req = HttpRequest::get(uri)
            .header(AUTHORIZATION, basic(BUILDER, &format!("not-a-token-{i}")))
            .body(Body::empty())
            .unwrap();
        let r = send(app_at(&f, at), from(req, "127.0.0.2:40000")).await;
        match r.status {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(r.headers.contains_key(RETRY_AFTER));
                limited += 1;
            }
            other => panic!("{other}: {}", r.body),
        }
    }
    // The default budget: 100 failures, then refused before authentication.
    assert_eq!(limited, 10_000 - 100);
    let bytes = std::fs::metadata(&path).unwrap().len();
    assert!(
        bytes <= 4 * 1024,
        "{bytes} bytes of audit for 10,000 bad requests"
    );

    // Another address is served meanwhile.
    let jwt = f.jwt(READER, AUDIENCE);
    let req = HttpRequest::get(uri)
        .header(AUTHORIZATION, basic(READER, &jwt))
        .body(Body::empty())
        .unwrap();
    let r = send(app_at(&f, at), from(req, "127.0.0.1:40001")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // When the interval ends, one summary per reason carries the counts.
    f.broker.flush_preauth_denials(at + Duration::from_secs(11));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summaries: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "svid-broker.preauth_denials")
        .collect();
    let total: u64 = summaries.iter().map(|l| l["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 10_000, "{text}");
    for s in &summaries {
        assert_eq!(s["peer"], "127.0.0.2");
        assert_eq!(s["interval_seconds"], 10);
        assert_eq!(s["decision"], "deny");
    }
    assert!(
        summaries
            .iter()
            .any(|s| s["code"] == "resource_exhausted" && s["count"] == 9_900)
    );
    // Full events: the first of each reason, plus the legitimate issuance.
    assert_eq!(lines.len() - summaries.len(), 3, "{text}");
    let bytes = text.len();
    assert!(
        bytes <= 4 * 1024,
        "{bytes} bytes of audit after the summary"
    );
    eprintln!("audit after 10,000 bad requests and one good one: {bytes} bytes");
}

#[tokio::test]
async fn login_credentials_need_their_subject_as_username() {
    let f = Fixture::new();
    let (username, password) = login_credential(&f, BUILDER, &[]);
    let uri = "/token?service=registry.local&scope=repository:team/app:pull";
    for auth in [format!("Bearer {password}"), basic("", &password)] {
        let r = get(app(&f, true), uri, Some(&auth)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        assert!(
            r.body.contains("must be sent with its SPIFFE ID"),
            "{}",
            r.body
        );
    }
    let form = format!(
        "grant_type=password&service=registry.local&password={}",
        enc(&password)
    );
    let r = post(app(&f, true), &form, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let r = get(app(&f, true), uri, Some(&basic(&username, &password))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn overlong_usernames_are_refused() {
    let f = Fixture::new();
    let jwt = f.jwt(BUILDER, AUDIENCE);
    let long = "u".repeat(crate::request::MAX_USERNAME_LEN + 1);
    let uri = "/token?service=registry.local&scope=repository:team/app:pull";
    let r = get(app(&f, true), uri, Some(&basic(&long, &jwt))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(
        r.body
            .contains("username is longer than the 2048 bytes allowed"),
        "{}",
        r.body
    );
    let form = format!(
        "grant_type=password&service=registry.local&username={long}&password={}",
        enc(&jwt)
    );
    let r = post(app(&f, true), &form, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(
        r.body
            .contains("username is longer than the 2048 bytes allowed"),
        "{}",
        r.body
    );
    // At the cap, the username is fine (informational for a JWT-SVID).
    let at_cap = "u".repeat(crate::request::MAX_USERNAME_LEN);
    let r = get(app(&f, true), uri, Some(&basic(&at_cap, &jwt))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// `ctr images pull --user "$SPIFFE_ID:$SECRET"` splits at the first colon, so containerd's
/// password grant (`fetchTokenWithOAuth`) sends `username=spiffe` and the rest of the ID in
/// `password`. The first request must succeed.
#[tokio::test]
async fn containerd_password_grant_split_at_the_first_colon_is_accepted() {
    let f = Fixture::new();
    let jwt = f.jwt(BUILDER, AUDIENCE);
    let (user, rest) = BUILDER.split_once(':').unwrap();
    let (_, login_password) = login_credential(&f, BUILDER, &[]);
    for secret in [jwt.as_str(), login_password.as_str()] {
        let form = format!(
            "scope={}&service=registry.local&client_id=containerd-client&grant_type=password&username={user}&password={}",
            enc("repository:team/app:pull"),
            enc(&format!("{rest}:{secret}"))
        );
        let r = post(app(&f, true), &form, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.json()["scope"], "repository:team/app:pull");
    }
    // A correctly split pair still works the same.
    let form = format!(
        "service=registry.local&grant_type=password&username={}&password={}&scope={}",
        enc(BUILDER),
        enc(&jwt),
        enc("repository:team/app:pull")
    );
    let r = post(app(&f, true), &form, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let audit = f.audit.lock().unwrap().join("\n");
    assert!(!audit.contains("segments"), "{audit}");
    assert!(!audit.contains("\"deny\""), "{audit}");
}

#[tokio::test]
async fn repeated_single_valued_parameters_are_refused() {
    let f = Fixture::new();
    let jwt = f.jwt(BUILDER, AUDIENCE);
    for (query, name) in [
        ("service=registry.local&service=registry.other", "service"),
        (
            "service=registry.local&client_id=a&client_id=b",
            "client_id",
        ),
        ("service=registry.local&account=a&account=b", "account"),
        (
            "service=registry.local&grant_type=x&grant_type=y",
            "grant_type",
        ),
    ] {
        let r = get(
            app(&f, true),
            &format!("/token?{query}"),
            Some(&basic(BUILDER, &jwt)),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.body);
        assert!(
            r.body
                .contains(&format!("parameter {name} may appear at most once")),
            "{}",
            r.body
        );
        let r = post(
            app(&f, true),
            &format!("grant_type=password&{query}&password={}", enc(&jwt)),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.body);
    }
}

#[tokio::test]
async fn client_id_must_be_printable_ascii() {
    let f = Fixture::new();
    let jwt = f.jwt(BUILDER, AUDIENCE);
    let long = "c".repeat(crate::request::MAX_CLIENT_ID_LEN + 1);
    for bad in [
        "evil\u{202e}txt",
        "a\u{200b}b",
        "with space",
        "",
        "tab\t",
        long.as_str(),
    ] {
        let r = get(
            app(&f, true),
            &format!("/token?service=registry.local&client_id={}", enc(bad)),
            Some(&basic(BUILDER, &jwt)),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}: {}", r.body);
        assert!(
            r.body
                .contains("client_id must be 1 to 128 printable ASCII"),
            "{}",
            r.body
        );
    }
    let audit = f.audit.lock().unwrap().join("\n");
    assert!(!audit.contains('\u{202e}') && !audit.contains('\u{200b}'));
    let r = get(
        app(&f, true),
        "/token?service=registry.local&client_id=docker-credential-svid/1.0",
        Some(&basic(BUILDER, &jwt)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// A request the policy grants nothing still gets a (useless) token, as the token spec's
/// clients expect, but is audited and counted as a refusal.
#[tokio::test]
async fn empty_grants_are_answered_but_audited_and_counted_as_refusals() {
    let f = Fixture::new();
    let jwt = f.jwt(READER, AUDIENCE);
    let r = get(
        app(&f, true),
        "/token?service=registry.local&scope=repository:team/app:push",
        Some(&basic(READER, &jwt)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let lines = f.audit_lines();
    let last = lines.last().unwrap();
    assert_eq!(last["decision"], "deny", "{last}");
    assert_eq!(last["reason"], "nothing granted");
    assert_eq!(last["code"], "permission_denied");
    assert_eq!(last["subject"], READER);
    let metrics = f.broker.metrics().render();
    assert!(metrics.contains(
        "svid_broker_refused_total{endpoint=\"realm_get\",reason=\"nothing_granted\"} 1"
    ));
    assert!(
        metrics
            .contains("svid_broker_issued_total{endpoint=\"realm_get\",kind=\"access_token\"} 0")
    );
    // No scope asked for (`docker login`): an authentication check, not a refusal.
    let r = get(
        app(&f, true),
        "/token?service=registry.local",
        Some(&basic(READER, &jwt)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let lines = f.audit_lines();
    assert_eq!(lines.last().unwrap()["decision"], "allow");
}

/// `audience_policy = "single"` (the default) refuses a JWT-SVID also minted for another
/// relying party at every realm entry; `"any"` accepts it.
#[tokio::test]
async fn multi_audience_jwt_svids_follow_the_audience_policy() {
    use svid_broker_identity::jwt::AudienceMatch;
    for (policy, expected) in [
        (AudienceMatch::Single, StatusCode::UNAUTHORIZED),
        (AudienceMatch::AnyOf, StatusCode::OK),
    ] {
        let f = Fixture::with(|o| o.audience_policy = policy);
        let jwt =
            f.td.issue_jwt_svid(&crate::testutil::id(BUILDER), &[AUDIENCE, "other-rp"])
                .unwrap()
                .token()
                .expose_secret()
                .to_owned();
        let uri = "/token?service=registry.local&scope=repository:team/app:pull";
        for auth in [basic(BUILDER, &jwt), format!("Bearer {jwt}")] {
            let r = get(app(&f, true), uri, Some(&auth)).await;
            assert_eq!(r.status, expected, "{policy:?}: {}", r.body);
        }
        let form = format!(
            "grant_type=password&service=registry.local&username={}&password={}&scope={}",
            enc(BUILDER),
            enc(&jwt),
            enc("repository:team/app:pull")
        );
        let r = post(app(&f, true), &form, None).await;
        assert_eq!(r.status, expected, "{policy:?}: {}", r.body);
        if expected != StatusCode::OK {
            let audit = f.audit.lock().unwrap().join("\n");
            assert!(audit.contains("exactly one"), "{audit}");
        }
    }
}

async fn get_from(f: &Fixture, peer: &str, uri: &str, auth: Option<&str>) -> Reply {
    send(app(f, true), from(get_request(uri, auth), peer)).await
}

/// Someone failing from a shared address (NAT, a node IP) spends that address's failure
/// budget, but cannot lock out a client behind it that authenticates: only failures are held
/// against an address. Failures from the spent address are answered 429.
#[tokio::test]
async fn a_spent_address_still_serves_clients_that_authenticate() {
    let f = Fixture::new();
    let mut limited = false;
    for _ in 0..150 {
        let r = get_from(
            &f,
            "10.0.0.5:40000",
            "/token?service=registry.local",
            Some("Bearer x"),
        )
        .await;
        limited |= r.status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "150 failures never spent the budget");
    let jwt = f.jwt(READER, AUDIENCE);
    let r = get_from(
        &f,
        "10.0.0.5:40001",
        "/token?service=registry.local&scope=repository:team/app:pull",
        Some(&format!("Bearer {jwt}")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = get_from(
        &f,
        "10.0.0.5:40002",
        "/token?service=registry.local",
        Some("Bearer x"),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
}

/// Caller text in a refused request's audit line is printable ASCII only, and a username's
/// length does not split the aggregation key.
#[tokio::test]
async fn refused_requests_audit_printable_text_and_aggregate_by_rule() {
    let f = Fixture::new();
    let r = get_from(
        &f,
        "10.0.0.9:1",
        "/token?service=reg%E2%80%AEistry%E2%80%8B&scope=repository%3Aa%E2%80%AEb%3Apull",
        None,
    )
    .await;
    assert_ne!(r.status, StatusCode::OK);
    let all = f.audit.lock().unwrap().join("\n");
    assert!(!all.is_empty());
    assert!(
        all.chars()
            .all(|c| c == '\n' || c.is_ascii_graphic() || c == ' '),
        "{all}"
    );
    let before = f.audit.lock().unwrap().len();
    for n in 0..50 {
        let u = "a".repeat(2049 + n);
        let _ = get_from(
            &f,
            "10.0.0.7:1",
            "/token?service=registry.local",
            Some(&basic(&u, "x")),
        )
        .await;
    }
    let written = f.audit.lock().unwrap().len() - before;
    assert!(
        written <= 2,
        "50 long usernames wrote {written} audit lines"
    );
}

/// The realm's clock, not the wall clock, stamps its audit events: a refresh grant's access
/// token and renewed refresh token are each audited once, at the clock's time.
#[tokio::test]
async fn realm_audit_events_carry_the_injected_clock_time() {
    let f = Fixture::new();
    // An hour from the wall clock: an event stamped with wall time would say otherwise.
    let at = t0() + Duration::from_secs(3600);
    let request =
        checked(ExchangeKind::AccessToken, Endpoint::RealmGet, &[]).with_refresh_token(true);
    let refresh = f
        .broker
        .realm_token_for(&svid_subject(READER), &request, at)
        .unwrap()
        .refresh
        .unwrap();
    let before = f.audit_lines().len();
    let r = refresh_at(
        &f,
        at,
        refresh.secret.expose_secret(),
        &["repository:team/app:pull"],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let written = f.audit_lines().split_off(before);
    let kinds: Vec<_> = written.iter().map(|e| e["kind"].clone()).collect();
    assert_eq!(kinds, ["access_token", "refresh_token"], "{written:?}");
    for event in &written {
        assert_eq!(event["time"], rfc3339(at), "{event}");
        assert_eq!(event["decision"], "allow", "{event}");
        assert_eq!(event["endpoint"], "realm_post", "{event}");
    }
}

/// `POST /token` names its grant: without `grant_type` it is refused as before issue 9's
/// restructuring, even with a valid `Authorization` header, and nothing is issued.
#[tokio::test]
async fn post_without_grant_type_is_refused_even_with_a_valid_header() {
    let f = Fixture::new();
    let jwt = f.jwt(BUILDER, AUDIENCE);
    let form = format!(
        "service=registry.local&scope={}",
        enc("repository:team/app:pull")
    );
    let r = post(app(&f, true), &form, Some(&basic(BUILDER, &jwt))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("unsupported grant_type"), "{}", r.body);
    assert!(!r.body.contains("token\":"), "{}", r.body);
    let r = post(
        app(&f, true),
        &format!("grant_type=client_credentials&{form}"),
        Some(&basic(BUILDER, &jwt)),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

#[tokio::test]
async fn the_federation_issuer_has_its_own_discovery_document_and_keys() {
    use svid_broker_token::federation::{FederationIssuer, FederationKey};

    let f = Fixture::new();
    let issuer_url = format!("{URL}{}", crate::config::FEDERATION_PATH);
    let key = FederationKey::generate().unwrap();
    let kid = key.kid().to_owned();
    let issuer = Arc::new(
        FederationIssuer::new(issuer_url.clone(), vec![key], Duration::from_secs(300)).unwrap(),
    );
    let with = || {
        router(
            RealmState::new(
                f.broker.clone(),
                Arc::new(FixedClock(t0())),
                URL,
                Arc::new(AtomicBool::new(true)),
            )
            .with_federation(Some(issuer.clone())),
        )
    };
    let discovery_path = format!(
        "{}{}",
        crate::config::FEDERATION_PATH,
        svid_broker_token::federation::DISCOVERY_SUFFIX
    );
    let r = get(with(), &discovery_path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["issuer"], issuer_url.as_str());
    let jwks_uri = r.json()["jwks_uri"].as_str().unwrap().to_owned();
    assert_eq!(jwks_uri, issuer.jwks_uri());
    let jwks_path = jwks_uri.strip_prefix(URL).unwrap();
    let r = get(with(), jwks_path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let keys = r.json()["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], kid.as_str());
    assert_eq!(keys[0]["alg"], "RS256");
    // Disjoint from the registry-token keys, both ways.
    let tokens = get(with(), "/jwks.json", None).await.json();
    assert!(
        tokens["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kid"] != kid.as_str()),
        "{tokens}"
    );
    assert_eq!(
        get(with(), "/.well-known/openid-configuration", None)
            .await
            .json()["issuer"],
        URL
    );
    // Without [federation] the paths do not exist.
    assert_eq!(
        get(app(&f, true), &discovery_path, None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(app(&f, true), jwks_path, None).await.status,
        StatusCode::NOT_FOUND
    );
}
