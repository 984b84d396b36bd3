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
//! (see [`Broker::refuse_unauthenticated`]): one client sending garbage writes a few audit and log
//! lines per interval, not one per request.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::StatusCode;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use serde_json::{Value, json};
use svid_broker_identity::clock::Clock;
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_policy::scope;
use svid_broker_token::federation::FederationIssuer;
use zeroize::Zeroizing;

use crate::audit::rfc3339;
use crate::engine::{Broker, RealmTokens};
use crate::error::{AuthFailure, ErrorCode, ExchangeError, InvalidRequest};
use crate::metrics::Route;
use crate::request::{
    Endpoint, ExchangeKind, ExchangeRequest, Presented, RequestContext, is_valid_client_id,
};

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
    pub(crate) broker: Arc<Broker>,
    pub(crate) clock: Arc<dyn Clock>,
    public_url: Arc<str>,
    ready: Arc<AtomicBool>,
    backends: Option<Arc<crate::backends::Backends>>,
    federation: Option<Arc<FederationIssuer>>,
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
            backends: None,
            federation: None,
        }
    }

    /// Also exports the figures of `backends` (one family set per registry backend) on
    /// `/metrics`.
    #[must_use]
    pub fn with_backends(mut self, backends: Arc<crate::backends::Backends>) -> Self {
        self.backends = Some(backends);
        self
    }

    /// Also publishes `issuer`'s discovery document and JWKS (when `Some`) under
    /// [`FEDERATION_PATH`](crate::config::FEDERATION_PATH); without it those paths are 404.
    #[must_use]
    pub fn with_federation(mut self, issuer: Option<Arc<FederationIssuer>>) -> Self {
        self.federation = issuer;
        self
    }
}

/// The realm router.
pub fn router(state: RealmState) -> Router {
    Router::new()
        .route("/token", get(token_get).post(token_post))
        .route(crate::oauth2::TOKEN_PATH, post(crate::oauth2::token))
        .route("/jwks.json", get(jwks))
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route(federation_routes::DISCOVERY, get(federation_discovery))
        .route(federation_routes::JWKS, get(federation_jwks))
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

/// One decoded `key=value` of a form.
pub(crate) type FormField<'a> = (Cow<'a, str>, Cow<'a, str>);

/// The fields of a form body or query (`key=value&...`, percent-decoded), refused past
/// [`MAX_FIELDS`] or with a name of `single_valued` given twice: the one reading of a form
/// both HTTP edges share (the realm, `POST /oauth2/token`).
pub(crate) fn form_fields<'a>(
    bytes: &'a [u8],
    single_valued: &[&'static str],
) -> Result<Vec<FormField<'a>>, InvalidRequest> {
    let mut seen = vec![false; single_valued.len()];
    let mut fields = Vec::new();
    for (n, (key, value)) in form_urlencoded::parse(bytes).enumerate() {
        if n >= MAX_FIELDS {
            return Err(InvalidRequest::Malformed {
                what: "too many fields",
            });
        }
        if let Some(i) = single_valued.iter().position(|name| *name == key) {
            if seen[i] {
                return Err(InvalidRequest::RepeatedParameter {
                    name: single_valued[i],
                });
            }
            seen[i] = true;
        }
        fields.push((key, value));
    }
    Ok(fields)
}

fn parse_fields(bytes: &[u8]) -> Result<Fields, InvalidRequest> {
    let mut f = Fields::default();
    for (key, value) in form_fields(bytes, &SINGLE_VALUED)? {
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
        serve_token(
            &state,
            Endpoint::RealmGet,
            peer,
            query.as_bytes(),
            req.headers(),
        )
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
        Ok(bytes) => serve_token(&state, Endpoint::RealmPost, peer, &bytes, &parts.headers),
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
    let context = RequestContext::new(ExchangeKind::AccessToken, endpoint, peer);
    fail(state, &context, &InvalidRequest::Malformed { what }.into())
}

/// The realm's edge: the fields and headers become one checked [`ExchangeRequest`] and what
/// the caller presented; the engine does the rest in one pass.
fn serve_token(
    state: &RealmState,
    endpoint: Endpoint,
    peer: Option<SocketAddr>,
    fields: &[u8],
    headers: &HeaderMap,
) -> Response {
    let context = RequestContext::new(ExchangeKind::AccessToken, endpoint, peer);
    let fields = match parse_fields(fields) {
        Ok(fields) => fields,
        Err(e) => return fail(state, &context, &e.into()),
    };
    // What the audit records of this request; it moves into the checked request, and a
    // refusal (rare) builds it again.
    let recorded = || {
        RequestContext::new(ExchangeKind::AccessToken, endpoint, peer)
            .with_service(fields.service.as_deref().unwrap_or(""))
            .with_scopes(&fields.scopes)
            .with_client_id(fields.client_id.as_deref())
    };
    let grant = match Grant::of(endpoint, &fields) {
        Ok(grant) => grant,
        Err(e) => return fail(state, &recorded(), &e.into()),
    };
    let request = match ExchangeRequest::parse(
        recorded(),
        fields.service.as_deref().unwrap_or(""),
        &fields.scopes,
    ) {
        Ok(request) => request.with_refresh_token(fields.offline || grant == Grant::Refresh),
        Err(e) => return fail(state, &recorded(), &e.into()),
    };
    // Owned here so `Presented` can borrow it: a password grant's rejoined credentials.
    let password_grant = match (grant, fields.password.as_deref()) {
        (Grant::Password, Some(password)) => Some(password_grant_credentials(
            fields.username.as_deref(),
            password,
        )),
        _ => None,
    };
    let header = header_credentials(headers);
    let presented = match (grant, &password_grant) {
        (Grant::Refresh, _) => fields
            .refresh_token
            .as_deref()
            .map_or(Presented::Nothing, |t| Presented::RefreshToken(t)),
        (Grant::Password, Some((username, secret))) => Presented::Secret {
            username: username.as_deref(),
            secret,
        },
        (Grant::Password | Grant::Header, _) => match &header {
            Err(e) => Presented::Unreadable(e.clone()),
            Ok(HeaderCredentials::None) => Presented::Nothing,
            Ok(HeaderCredentials::Basic { username, password }) => Presented::Secret {
                username: Some(username),
                secret: password,
            },
            Ok(HeaderCredentials::Bearer(token)) => Presented::Secret {
                username: None,
                secret: token,
            },
        },
    };
    let tokens = match state
        .broker
        .realm_token(&request, &presented, state.clock.now())
    {
        Ok(tokens) => tokens,
        // Recorded (audited, counted, logged) by the engine.
        Err(e) => return error_response(&e),
    };
    let RealmTokens {
        access, refresh, ..
    } = tokens;
    let expires_in = access
        .expires_at
        .duration_since(access.issued_at)
        .unwrap_or(Duration::ZERO)
        .as_secs()
        .max(60);
    let body = TokenResponse {
        access_token: access.token.expose_secret(),
        expires_in,
        issued_at: rfc3339(access.issued_at),
        refresh_token: refresh.as_ref().map(|r| r.secret.expose_secret()),
        scope: (endpoint == Endpoint::RealmPost).then(|| scope::join_scopes(&access.granted)),
        token: access.token.expose_secret(),
    };
    // Serialized straight from the borrowed secrets into the buffer hyper sends, sized up
    // front so it does not reallocate (each reallocation would free an unwiped partial copy of
    // the token), and without an intermediate `Value` holding copies of its own.
    let refresh_len = body.refresh_token.map_or(0, str::len);
    let scope_len = body.scope.as_ref().map_or(0, String::len);
    let mut bytes = Vec::with_capacity(2 * body.token.len() + refresh_len + scope_len + 256);
    match serde_json::to_writer(&mut bytes, &body) {
        Ok(()) => json_bytes_response(StatusCode::OK, bytes),
        Err(_) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({ "errors": [{ "code": "UNKNOWN", "message": "the token response could not be encoded" }] }),
        ),
    }
}

/// The token endpoint's success body. Fields in the order the earlier `serde_json::Map`
/// (sorted keys) wrote them, so the bytes on the wire did not change.
#[derive(serde::Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    expires_in: u64,
    issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    token: &'a str,
}

/// Which credentials a realm request authenticates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    /// The `Authorization` header (`GET`).
    Header,
    /// `grant_type=password`: the form's `username` and `password` (the header when the form
    /// carries no password).
    Password,
    /// `grant_type=refresh_token`: the form's `refresh_token`.
    Refresh,
}

impl Grant {
    fn of(endpoint: Endpoint, fields: &Fields) -> Result<Self, InvalidRequest> {
        if endpoint != Endpoint::RealmPost {
            return Ok(Self::Header);
        }
        // `POST /token` is the OAuth2 form: it names its grant (a client sending none would be
        // served from whatever `Authorization` header a proxy left on it).
        match fields.grant_type.as_deref() {
            Some("password") => Ok(Self::Password),
            Some("refresh_token") => Ok(Self::Refresh),
            Some(_) | None => Err(InvalidRequest::UnsupportedGrantType),
        }
    }
}

/// A request refused before authentication: recorded by the engine (counted, charged to the
/// address, audited in aggregate), answered with a spent budget's 429 when it is spent.
fn fail(state: &RealmState, context: &RequestContext, err: &ExchangeError) -> Response {
    let (answer, _) = state
        .broker
        .refuse_unauthenticated(context, err, state.clock.now());
    error_response(&answer)
}

/// The HTTP status for an error class.
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn error_response(err: &ExchangeError) -> Response {
    let code = err.code();
    let status = status_for(code);
    let wire_code = match code {
        ErrorCode::InvalidArgument => "INVALID_REQUEST",
        ErrorCode::Unauthenticated => "UNAUTHORIZED",
        ErrorCode::PermissionDenied => "DENIED",
        ErrorCode::ResourceExhausted => "TOOMANYREQUESTS",
        ErrorCode::Unavailable => "UNAVAILABLE",
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
    json_bytes_response(status, body.to_string().into_bytes())
}

fn json_bytes_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn jwks(State(state): State<RealmState>) -> Response {
    let start = Instant::now();
    // One JWKS for the realm, whatever the registries' profiles: every key under every `kid`
    // format a profile uses.
    let body = state.broker.minter().key_ring().jwks_json();
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

/// The federation issuer's paths (under [`FEDERATION_PATH`](crate::config::FEDERATION_PATH)),
/// spelled out because routes are `&'static str`; a test checks they agree.
mod federation_routes {
    /// `{issuer}/.well-known/openid-configuration`.
    pub(super) const DISCOVERY: &str = "/federation/.well-known/openid-configuration";
    /// `{issuer}/jwks.json`, the issuer's `jwks_uri`.
    pub(super) const JWKS: &str = "/federation/jwks.json";
}

async fn federation_discovery(State(state): State<RealmState>) -> Response {
    let start = Instant::now();
    let resp = match &state.federation {
        Some(issuer) => cacheable_json(issuer.discovery_json()),
        None => StatusCode::NOT_FOUND.into_response(),
    };
    state
        .broker
        .metrics()
        .observe(Route::FederationDiscovery, start.elapsed());
    resp
}

async fn federation_jwks(State(state): State<RealmState>) -> Response {
    let start = Instant::now();
    let resp = match &state.federation {
        Some(issuer) => cacheable_json(issuer.jwks_json()),
        None => StatusCode::NOT_FOUND.into_response(),
    };
    state
        .broker
        .metrics()
        .observe(Route::FederationJwks, start.elapsed());
    resp
}

/// A JSON document verifiers may cache briefly: five minutes bounds how long a registry keeps
/// a key set after a rotation step, which the rotation procedure waits out.
fn cacheable_json(body: String) -> Response {
    let mut resp = raw_json(body);
    resp.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
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
    let caches = state.broker.authenticator().verified_cache_figures();
    let backends = state
        .backends
        .as_ref()
        .map(|b| b.figures())
        .unwrap_or_default();
    let mut resp = Response::new(Body::from(
        state.broker.metrics().render_with(&caches, &backends),
    ));
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
