//! The HTTP side: the Docker/OCI token realm (`GET` and `POST /token`), `/jwks.json`,
//! `/.well-known/openid-configuration`, `/healthz`, `/readyz` and `/metrics`.
//!
//! Handlers read the raw request (query string, headers, body) themselves: real clients send
//! repeated `scope` parameters, space-joined ones, and chunked form bodies without a
//! `Content-Length`, which typed extractors handle poorly. Decisions are the engine's.
//!
//! Status codes: unknown or missing `service`, malformed scope or request → 400; bad or missing
//! credentials → 401 with `WWW-Authenticate: Basic realm="svid-broker"`; rate limited (per
//! subject, or per source address after too many failed requests) → 429 with `Retry-After`;
//! signing or audit failure → 503. A partial or empty grant is a 200 (the token spec's
//! clients expect a token; the registry then answers 401 `insufficient_scope`), audited as a
//! refusal.
//!
//! Requests refused before authentication are aggregated per source address and reason
//! (see [`Broker::record_rejection`]): one client sending garbage writes a few audit and log
//! lines per interval, not one per request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::StatusCode;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use serde_json::{Map, Value, json};
use svid_broker_identity::clock::Clock;
use svid_broker_policy::scope;
use zeroize::Zeroizing;

use crate::credential::CredentialKind;
use crate::engine::{
    AuthFailure, Authenticated, Broker, Endpoint, ErrorCode, ExchangeError, ExchangeInput,
    ExchangeKind, ExchangeOutput, InvalidRequest, is_valid_client_id,
};
use crate::ops::{Route, rfc3339};

/// Largest `POST /token` body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest query string accepted on `GET /token`, in bytes.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;
/// Longest `Authorization` header accepted, in bytes (a JWT-SVID is capped at 16 KiB by the
/// validator; base64 adds a third).
pub const MAX_AUTHORIZATION_BYTES: usize = 32 * 1024;
/// Most form or query fields accepted in one request.
pub const MAX_FIELDS: usize = 64;
/// The realm name in `WWW-Authenticate`.
pub const REALM_NAME: &str = "svid-broker";

/// What the realm's handlers share.
#[derive(Debug, Clone)]
pub struct RealmState {
    broker: Arc<Broker>,
    clock: Arc<dyn Clock>,
    public_url: Arc<str>,
    ready: Arc<AtomicBool>,
}

impl RealmState {
    /// State for a router serving `broker` at `public_url` (no trailing slash needed), reading
    /// time from `clock`. `ready` drives `/readyz`.
    pub fn new(
        broker: Arc<Broker>,
        clock: Arc<dyn Clock>,
        public_url: &str,
        ready: Arc<AtomicBool>,
    ) -> Self {
        Self {
            broker,
            clock,
            public_url: public_url.trim_end_matches('/').into(),
            ready,
        }
    }
}

/// The realm router.
pub fn router(state: RealmState) -> Router {
    Router::new()
        .route("/token", get(token_get).post(token_post))
        .route("/jwks.json", get(jwks))
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn peer_of(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

/// The request's fields (query or form), with repeated `scope` kept in order.
#[derive(Default)]
struct Fields {
    service: Option<String>,
    scopes: Vec<String>,
    client_id: Option<String>,
    offline: bool,
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<Zeroizing<String>>,
    refresh_token: Option<Zeroizing<String>>,
}

/// Parameters that may appear at most once: with two, the broker and a proxy or log reader
/// in front of it could each act on a different one.
const SINGLE_VALUED: [&str; 7] = [
    "service",
    "client_id",
    "grant_type",
    "account",
    "username",
    "password",
    "refresh_token",
];

fn parse_fields(bytes: &[u8]) -> Result<Fields, InvalidRequest> {
    let mut f = Fields::default();
    let mut seen = [false; SINGLE_VALUED.len()];
    for (n, (key, value)) in form_urlencoded::parse(bytes).enumerate() {
        if n >= MAX_FIELDS {
            return Err(InvalidRequest::Malformed {
                what: "too many fields",
            });
        }
        if let Some(i) = SINGLE_VALUED.iter().position(|name| *name == key) {
            if seen[i] {
                return Err(InvalidRequest::RepeatedParameter {
                    name: SINGLE_VALUED[i],
                });
            }
            seen[i] = true;
        }
        match &*key {
            "service" => f.service = Some(value.into_owned()),
            "scope" => f.scopes.push(value.into_owned()),
            "client_id" => {
                if !is_valid_client_id(&value) {
                    return Err(InvalidRequest::InvalidClientId);
                }
                f.client_id = Some(value.into_owned());
            }
            "offline_token" => f.offline |= value == "true",
            "access_type" => f.offline |= value == "offline",
            "grant_type" => f.grant_type = Some(value.into_owned()),
            "username" => f.username = Some(value.into_owned()),
            "password" => f.password = Some(Zeroizing::new(value.into_owned())),
            "refresh_token" => f.refresh_token = Some(Zeroizing::new(value.into_owned())),
            // `account` is informational (the Basic user); unknown fields are ignored as the
            // token spec's clients add their own.
            _ => {}
        }
    }
    Ok(f)
}

/// The (username, secret) of a password grant, split the way Basic credentials are: at the
/// *last* colon of `username:password`. containerd's `ctr --user ID:SECRET` splits at the
/// first colon, inside the SPIFFE ID (`spiffe` / `//example.org/...:SECRET`); rejoining
/// undoes that, and a correctly split pair comes out unchanged since no secret the broker
/// accepts contains a colon.
fn password_grant_credentials(
    username: Option<&str>,
    password: &str,
) -> (Option<String>, Zeroizing<String>) {
    let Some(username) = username else {
        return (None, Zeroizing::new(password.to_owned()));
    };
    let joined = Zeroizing::new(format!("{username}:{password}"));
    match joined.rsplit_once(':') {
        Some((user, secret)) => (Some(user.to_owned()), Zeroizing::new(secret.to_owned())),
        None => (
            Some(username.to_owned()),
            Zeroizing::new(password.to_owned()),
        ),
    }
}

/// Credentials from the `Authorization` header.
enum HeaderCredentials {
    None,
    Basic {
        username: String,
        password: Zeroizing<String>,
    },
    Bearer(Zeroizing<String>),
}

fn header_credentials(headers: &HeaderMap) -> Result<HeaderCredentials, AuthFailure> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(HeaderCredentials::None);
    };
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(AuthFailure::MalformedAuthorization);
    }
    let value = value
        .to_str()
        .map_err(|_| AuthFailure::MalformedAuthorization)?;
    let (scheme, rest) = value
        .split_once(' ')
        .ok_or(AuthFailure::MalformedAuthorization)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(rest)
                .map_err(|_| AuthFailure::MalformedAuthorization)?,
        );
        let text =
            std::str::from_utf8(&decoded).map_err(|_| AuthFailure::MalformedAuthorization)?;
        // The password is split off at the *last* colon: every secret the broker accepts is
        // colon-free (JWS, `sbl1.`/`sbr2.`), while the username is a SPIFFE ID
        // (`spiffe://...`), which `skopeo --creds ID:SECRET` sends unsplit.
        let (username, password) = text
            .rsplit_once(':')
            .ok_or(AuthFailure::MalformedAuthorization)?;
        Ok(HeaderCredentials::Basic {
            username: username.to_owned(),
            password: Zeroizing::new(password.to_owned()),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Ok(HeaderCredentials::Bearer(Zeroizing::new(rest.to_owned())))
    } else {
        Err(AuthFailure::MalformedAuthorization)
    }
}

async fn token_get(State(state): State<RealmState>, req: Request) -> Response {
    let start = Instant::now();
    let peer = peer_of(&req);
    let query = req.uri().query().unwrap_or("");
    let response = if query.len() > MAX_QUERY_BYTES {
        bad_request_early(&state, Endpoint::RealmGet, peer, "query too long")
    } else {
        match parse_fields(query.as_bytes()) {
            Ok(fields) => {
                let creds = header_credentials(req.headers());
                serve_token(&state, Endpoint::RealmGet, peer, &fields, creds)
            }
            Err(e) => fail(
                &state,
                Endpoint::RealmGet,
                peer,
                &Fields::default(),
                &ExchangeError::InvalidArgument { reason: e },
            ),
        }
    };
    state
        .broker
        .metrics()
        .observe(Route::TokenGet, start.elapsed());
    response
}

async fn token_post(State(state): State<RealmState>, req: Request) -> Response {
    let start = Instant::now();
    let peer = peer_of(&req);
    let (parts, body) = req.into_parts();
    // hyper has already removed chunked framing; this reads until the end of the body,
    // whether or not a Content-Length was sent.
    let response = match to_bytes(body, MAX_BODY_BYTES).await {
        Err(_) => {
            let resp = bad_request_early(&state, Endpoint::RealmPost, peer, "body too large");
            (StatusCode::PAYLOAD_TOO_LARGE, resp).into_response()
        }
        Ok(bytes) => match parse_fields(&bytes) {
            Ok(fields) => {
                let creds = header_credentials(&parts.headers);
                serve_token(&state, Endpoint::RealmPost, peer, &fields, creds)
            }
            Err(e) => fail(
                &state,
                Endpoint::RealmPost,
                peer,
                &Fields::default(),
                &ExchangeError::InvalidArgument { reason: e },
            ),
        },
    };
    state
        .broker
        .metrics()
        .observe(Route::TokenPost, start.elapsed());
    response
}

fn bad_request_early(
    state: &RealmState,
    endpoint: Endpoint,
    peer: Option<SocketAddr>,
    what: &'static str,
) -> Response {
    fail(
        state,
        endpoint,
        peer,
        &Fields::default(),
        &ExchangeError::InvalidArgument {
            reason: InvalidRequest::Malformed { what },
        },
    )
}

fn serve_token(
    state: &RealmState,
    endpoint: Endpoint,
    peer: Option<SocketAddr>,
    fields: &Fields,
    creds: Result<HeaderCredentials, AuthFailure>,
) -> Response {
    let now = state.clock.now();
    let broker = &state.broker;
    let service = fields.service.as_deref().unwrap_or("");
    if service.is_empty() {
        return fail(
            state,
            endpoint,
            peer,
            fields,
            &ExchangeError::InvalidArgument {
                reason: InvalidRequest::MissingService,
            },
        );
    }
    // Unknown services and malformed scopes are 400 whatever the credentials: check them
    // before authenticating, so a client learns about its typo rather than a 401.
    if broker.policy().registry_by_service(service).is_none() {
        return fail(
            state,
            endpoint,
            peer,
            fields,
            &ExchangeError::unknown_service(service),
        );
    }
    if let Err(e) = scope::parse_scopes(fields.scopes.iter().map(String::as_str)) {
        return fail(
            state,
            endpoint,
            peer,
            fields,
            &ExchangeError::InvalidArgument {
                reason: InvalidRequest::Scope(e),
            },
        );
    }

    let auth = match authenticate(state, endpoint, fields, creds, now) {
        Ok(a) => a,
        Err(e) => return fail(state, endpoint, peer, fields, &e),
    };
    let input = ExchangeInput {
        kind: ExchangeKind::AccessToken,
        service,
        scopes: &fields.scopes,
        peer,
        endpoint,
    };
    let out = match broker.exchange_authenticated(&auth, &input, fields.client_id.as_deref(), now) {
        Ok(out) => out,
        // Already audited and counted by the engine.
        Err(e) => return error_response(&e, true),
    };
    let ExchangeOutput::AccessToken {
        token,
        granted,
        issued_at,
        expires_at,
        ..
    } = out
    else {
        return error_response(
            &ExchangeError::InvalidArgument {
                reason: InvalidRequest::Malformed {
                    what: "unexpected exchange output",
                },
            },
            true,
        );
    };
    let is_refresh_grant = fields.grant_type.as_deref() == Some("refresh_token");
    // The refresh token joins the caller's session: a login credential's or refresh token's
    // ceiling, `auth_time` and session end carry over, so renewing never widens or extends it.
    let refresh = if fields.offline || is_refresh_grant {
        match broker.issue_refresh_token_for(&auth, &input, fields.client_id.as_deref(), now) {
            Ok(r) => Some(r),
            Err(e) => return error_response(&e, true),
        }
    } else {
        None
    };
    let expires_in = expires_at
        .duration_since(issued_at)
        .unwrap_or(Duration::ZERO)
        .as_secs()
        .max(60);
    let mut body = Map::new();
    body.insert("token".into(), token.expose().into());
    body.insert("access_token".into(), token.expose().into());
    body.insert("expires_in".into(), expires_in.into());
    body.insert("issued_at".into(), rfc3339(issued_at).into());
    if let Some(r) = &refresh {
        body.insert("refresh_token".into(), r.secret.expose().into());
    }
    if endpoint == Endpoint::RealmPost {
        body.insert("scope".into(), scope::join_scopes(&granted).into());
    }
    json_response(StatusCode::OK, &Value::Object(body))
}

fn authenticate(
    state: &RealmState,
    endpoint: Endpoint,
    fields: &Fields,
    creds: Result<HeaderCredentials, AuthFailure>,
    now: SystemTime,
) -> Result<Authenticated, ExchangeError> {
    let unauth = |reason| ExchangeError::Unauthenticated { reason };
    let broker = &state.broker;
    if endpoint == Endpoint::RealmPost {
        match fields.grant_type.as_deref() {
            Some("refresh_token") => {
                let token = fields
                    .refresh_token
                    .as_deref()
                    .ok_or(unauth(AuthFailure::MissingCredentials))?;
                if CredentialKind::sniff(token) != Some(CredentialKind::RefreshToken) {
                    return Err(unauth(AuthFailure::Credential(
                        crate::credential::CredentialError::WrongKind {
                            expected: CredentialKind::RefreshToken,
                        },
                    )));
                }
                return broker.authenticate_secret(None, token, now);
            }
            Some("password") => {
                if let Some(password) = fields.password.as_deref() {
                    let (username, secret) =
                        password_grant_credentials(fields.username.as_deref(), password);
                    return broker.authenticate_secret(username.as_deref(), &secret, now);
                }
            }
            _ => {
                return Err(ExchangeError::InvalidArgument {
                    reason: InvalidRequest::UnsupportedGrantType,
                });
            }
        }
    }
    match creds.map_err(unauth)? {
        HeaderCredentials::None => Err(unauth(AuthFailure::MissingCredentials)),
        HeaderCredentials::Basic { username, password } => {
            broker.authenticate_secret(Some(&username), &password, now)
        }
        HeaderCredentials::Bearer(token) => broker.authenticate_secret(None, &token, now),
    }
}

fn fail(
    state: &RealmState,
    endpoint: Endpoint,
    peer: Option<SocketAddr>,
    fields: &Fields,
    err: &ExchangeError,
) -> Response {
    let input = ExchangeInput {
        kind: ExchangeKind::AccessToken,
        service: fields.service.as_deref().unwrap_or(""),
        scopes: &fields.scopes,
        peer,
        endpoint,
    };
    // A spent failure budget turns the answer into 429 (see `refuse_unauthenticated`).
    let (answer, first) = state.broker.refuse_unauthenticated(
        &input,
        fields.client_id.as_deref(),
        err,
        state.clock.now(),
    );
    // Only the first of its kind per address and interval is logged, as it is audited.
    error_response(&answer, first)
}

/// The HTTP status for an error class.
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn error_response(err: &ExchangeError, log: bool) -> Response {
    let code = err.code();
    let status = status_for(code);
    if log {
        tracing::info!(code = code.label(), reason = %err.chain(), "token request refused");
    }
    let wire_code = match code {
        ErrorCode::InvalidArgument => "INVALID_REQUEST",
        ErrorCode::Unauthenticated => "UNAUTHORIZED",
        ErrorCode::PermissionDenied => "DENIED",
        ErrorCode::ResourceExhausted => "TOOMANYREQUESTS",
        _ => "UNAVAILABLE",
    };
    let mut resp = json_response(
        status,
        &json!({ "errors": [{ "code": wire_code, "message": err.to_string() }] }),
    );
    let headers = resp.headers_mut();
    if let ExchangeError::Unauthenticated { .. } = err {
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"svid-broker\""),
        );
    }
    if let Some(retry_after) = err.retry_after() {
        // Rounded up: a client retrying after the advertised time must find a token.
        let secs = (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            headers.insert(RETRY_AFTER, v);
        }
    }
    resp
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn jwks(State(state): State<RealmState>) -> Response {
    let start = Instant::now();
    let policy = state.broker.policy();
    // One JWKS for the realm: the `kid` format of the first registry's profile (the x5c and
    // key material are the same for every profile).
    let profile = policy
        .registries()
        .next()
        .map(|r| crate::engine::token_profile(r.profile()))
        .unwrap_or_default();
    let body = state.broker.minter().key_ring().jwks_json(profile);
    let resp = raw_json(body);
    state.broker.metrics().observe(Route::Jwks, start.elapsed());
    resp
}

async fn openid_configuration(State(state): State<RealmState>) -> Response {
    let start = Instant::now();
    let body = state.broker.minter().key_ring().openid_configuration_json(
        &state.public_url,
        &format!("{}/jwks.json", state.public_url),
    );
    let resp = raw_json(body);
    state
        .broker
        .metrics()
        .observe(Route::OpenidConfiguration, start.elapsed());
    resp
}

fn raw_json(body: String) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn healthz(State(state): State<RealmState>) -> Response {
    let start = Instant::now();
    let resp = (StatusCode::OK, "ok\n").into_response();
    state
        .broker
        .metrics()
        .observe(Route::Health, start.elapsed());
    resp
}

async fn readyz(State(state): State<RealmState>) -> Response {
    let start = Instant::now();
    let ready = state.ready.load(Ordering::Acquire) && !state.broker.bundles().bundles().is_empty();
    let resp = if ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    };
    state
        .broker
        .metrics()
        .observe(Route::Health, start.elapsed());
    resp
}

async fn metrics(State(state): State<RealmState>) -> Response {
    let start = Instant::now();
    let mut resp = Response::new(Body::from(state.broker.metrics().render()));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    state
        .broker
        .metrics()
        .observe(Route::Metrics, start.elapsed());
    resp
}

#[cfg(test)]
mod tests;
