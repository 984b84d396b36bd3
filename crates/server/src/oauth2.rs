//! RFC 8693 token exchange over HTTP: `POST {public_url}/oauth2/token`.
//!
//! The third edge, beside the realm and gRPC `Exchange`, for OAuth 2.0 clients (authlib,
//! Go's `golang.org/x/oauth2`, an STS-aware SDK). It turns an
//! `application/x-www-form-urlencoded` body into the same [`ExchangeRequest`] and
//! [`Presented`] credential as the gRPC edge, and the engine does the rest in one pass: the
//! same JWT-SVID verifier, audience rule and verified cache, the same policy decision and
//! issuance, one audit event, the same metrics (labelled [`Endpoint::OAuth2Token`] and
//! [`Route::OAuth2Token`]).
//!
//! # Request
//!
//! - `grant_type` = [`GRANT_TYPE_TOKEN_EXCHANGE`], else `unsupported_grant_type`.
//! - `subject_token` with `subject_token_type` = [`TOKEN_TYPE_JWT`]: the caller's JWT-SVID,
//!   whose `aud` must be the broker's audience (as for a gRPC bearer). No token type is
//!   registered for SPIFFE SVIDs (the SPIFFE client-authentication draft defines a client
//!   assertion type, not a token type), so only the generic JWT type is accepted.
//! - `actor_token` with `actor_token_type` = [`TOKEN_TYPE_JWT`] (delegation, RFC 8693 §1.1):
//!   the actor's JWT-SVID; `subject_token` is then a Kubernetes service-account token the
//!   actor vouches for, exactly as gRPC `Exchange` with a bearer and a `subject_token`. The
//!   actor must be in `service_account.trusted_actors`.
//! - `audience` and/or `resource`: the registry's `service`, verbatim. Both may repeat (RFC
//!   8693 §2.1), but together they must name exactly one service: a token is for one
//!   registry.
//! - `scope`: registry scopes (`repository:team/app:pull`), space-separated, and, unlike RFC
//!   6749 §3.3, the parameter may repeat (as Docker clients send it at the realm). Required.
//! - `requested_token_type`: absent or [`TOKEN_TYPE_ACCESS_TOKEN`]; nothing else is served
//!   (a login credential has no registered token type).
//!
//! Every other parameter that RFC 8693 or RFC 6749 names may appear at most once; unknown
//! parameters are ignored, and empty ones count as absent (RFC 6749 §3.2). No client
//! authentication: the subject token is the only proof.
//!
//! # Response
//!
//! 200 `{"access_token", "issued_token_type", "token_type": "Bearer", "expires_in", "scope"}`
//! with `Cache-Control: no-store` (RFC 8693 §2.2.1). `scope` is what was granted, possibly
//! less than asked (RFC 6749 §3.3). The token is a bearer token for the registry
//! (`Authorization: Bearer` in the Docker token flow), hence `Bearer`, not `N_A`.
//!
//! Errors are RFC 6749 §5.2 JSON, see [`oauth2_error`]. `error_description` is the engine's
//! short reason (never a token), reduced to the characters §5.2 allows.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use axum::body::to_bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue, PRAGMA, RETRY_AFTER};
use serde_json::{Value, json};
use svid_broker_identity::limits::MAX_SERVICE_LEN;
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_policy::scope::{self, MAX_SCOPE_PARAM_LEN, MAX_SCOPE_PARAMS};
use zeroize::Zeroizing;

use crate::engine::ExchangeOutput;
use crate::error::{Denial, ExchangeError, InvalidRequest};
use crate::metrics::Route;
use crate::realm::{MAX_BODY_BYTES, RealmState};
use crate::request::{Endpoint, ExchangeKind, ExchangeRequest, Presented, RequestContext};
use crate::satoken::MAX_SA_TOKEN_LEN;

/// Where the endpoint is served, under the realm's `public_url`.
pub const TOKEN_PATH: &str = "/oauth2/token";
/// RFC 8693 §2.1 `grant_type`.
pub const GRANT_TYPE_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3 token type of a JWT (a JWT-SVID, a Kubernetes service-account token).
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 8693 §3 token type of an OAuth 2.0 access token: what this endpoint issues.
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// `token_type` of the answer (RFC 6750): registries take the token as a bearer token. The
/// gRPC edge's value.
pub use crate::grpc::service::TOKEN_TYPE_BEARER;

/// The content type the body must have (RFC 6749 §4.1.3, RFC 8693 §2.1).
const FORM: &str = "application/x-www-form-urlencoded";

/// `POST /oauth2/token`.
pub(crate) async fn token(State(state): State<RealmState>, req: Request) -> Response {
    let start = Instant::now();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let (parts, body) = req.into_parts();
    let response = if !is_form(&parts.headers) {
        // Before the body is read: nothing else about the request matters.
        refuse_early(
            &state,
            peer,
            "content type must be application/x-www-form-urlencoded",
        )
    } else {
        match to_bytes(body, MAX_BODY_BYTES).await {
            Err(_) => {
                // 413 for the refusal itself; a rate-limited address keeps its 429.
                let resp = refuse_early(&state, peer, "body too large or not fully sent");
                if resp.status() == StatusCode::BAD_REQUEST {
                    (StatusCode::PAYLOAD_TOO_LARGE, resp).into_response()
                } else {
                    resp
                }
            }
            Ok(bytes) => serve(&state, peer, &bytes),
        }
    };
    state
        .broker
        .metrics()
        .observe(Route::OAuth2Token, start.elapsed());
    response
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(FORM))
}

fn context(peer: Option<SocketAddr>) -> RequestContext {
    RequestContext::new(ExchangeKind::AccessToken, Endpoint::OAuth2Token, peer)
}

fn refuse_early(state: &RealmState, peer: Option<SocketAddr>, what: &'static str) -> Response {
    refuse(
        state,
        &context(peer),
        &InvalidRequest::Malformed { what }.into(),
    )
}

/// A request refused before authentication: recorded by the engine (counted, charged to the
/// address, audited in aggregate), answered with a spent budget's 429 when it is spent.
fn refuse(state: &RealmState, context: &RequestContext, err: &ExchangeError) -> Response {
    let (answer, _) = state
        .broker
        .refuse_unauthenticated(context, err, state.clock.now());
    error_response(&answer)
}

/// The form, parsed: each single-valued parameter at most once.
#[derive(Default)]
struct Form {
    grant_type: Option<String>,
    subject_token: Option<Zeroizing<String>>,
    subject_token_type: Option<String>,
    actor_token: Option<Zeroizing<String>>,
    actor_token_type: Option<String>,
    requested_token_type: Option<String>,
    /// `audience` and `resource` values, in order.
    targets: Vec<String>,
    scopes: Vec<String>,
}

/// Parameters that may appear at most once (RFC 6749 §3.2, RFC 8693 §2.1): with two, the
/// broker and a proxy or log reader in front of it could each act on a different one.
/// `audience`, `resource` (RFC 8693) and `scope` (as at the realm) may repeat.
const SINGLE_VALUED: [&str; 8] = [
    "grant_type",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
    "client_id",
    "client_secret",
];

fn parse_form(bytes: &[u8]) -> Result<Form, InvalidRequest> {
    let mut f = Form::default();
    for (key, value) in crate::realm::form_fields(bytes, &SINGLE_VALUED)? {
        // RFC 6749 §3.2: a parameter sent without a value is treated as omitted.
        if value.is_empty() {
            continue;
        }
        match &*key {
            "grant_type" => f.grant_type = Some(value.into_owned()),
            "subject_token" => f.subject_token = Some(Zeroizing::new(value.into_owned())),
            "subject_token_type" => f.subject_token_type = Some(value.into_owned()),
            "actor_token" => f.actor_token = Some(Zeroizing::new(value.into_owned())),
            "actor_token_type" => f.actor_token_type = Some(value.into_owned()),
            "requested_token_type" => f.requested_token_type = Some(value.into_owned()),
            "audience" => f.targets.push(value.into_owned()),
            // RFC 8693 §2.1: `resource` is an absolute URI; the registry it names is its
            // authority (`https://registry.example.org/` → `registry.example.org`). A value
            // without a scheme is taken as the service itself, as `audience` is.
            "resource" => f.targets.push(resource_service(&value).to_owned()),
            "scope" => f.scopes.push(value.into_owned()),
            // Unrecognised parameters are ignored (RFC 6749 §3.2); `client_id` and
            // `client_secret` too (there is no client authentication), but only once each.
            _ => {}
        }
    }
    Ok(f)
}

/// The service a `resource` URI names: its authority, or the value itself when it has no
/// `scheme://`.
fn resource_service(resource: &str) -> &str {
    match resource.split_once("://") {
        Some((_, rest)) => rest.split(['/', '?', '#']).next().unwrap_or(rest),
        None => resource,
    }
}

/// The one target service the request names.
enum Target<'a> {
    None,
    One(&'a str),
    Several,
}

impl Form {
    fn target(&self) -> Target<'_> {
        let mut targets = self.targets.iter();
        let Some(first) = targets.next() else {
            return Target::None;
        };
        if targets.all(|t| t == first) {
            Target::One(first)
        } else {
            Target::Several
        }
    }

    /// What the audit records of the request: the service and scopes as sent, once they
    /// passed the size caps.
    fn recorded(&self, peer: Option<SocketAddr>) -> RequestContext {
        let mut ctx = context(peer);
        if let Target::One(service) = self.target()
            && service.len() <= MAX_SERVICE_LEN
        {
            ctx = ctx.with_service(service);
        }
        if self.scopes.len() <= MAX_SCOPE_PARAMS
            && self.scopes.iter().all(|s| s.len() <= MAX_SCOPE_PARAM_LEN)
        {
            ctx = ctx.with_scopes(&self.scopes);
        }
        ctx
    }
}

/// What the caller presented, and the service-account token it vouches for (delegation).
struct Tokens<'a> {
    presented: Presented<'a>,
    subject_token: Option<&'a str>,
}

/// Checks the form up to the engine: grant type, token types, target, scopes. The refusals
/// name the parameter (a fixed phrase: never the caller's text).
fn check(form: &Form) -> Result<(&str, Tokens<'_>), ExchangeError> {
    let malformed = |what| Err(ExchangeError::from(InvalidRequest::Malformed { what }));
    if form.grant_type.as_deref() != Some(GRANT_TYPE_TOKEN_EXCHANGE) {
        return Err(InvalidRequest::UnsupportedGrantType.into());
    }
    let Some(subject_token) = form.subject_token.as_deref() else {
        return malformed("subject_token is required");
    };
    match form.subject_token_type.as_deref() {
        None => return malformed("subject_token_type is required"),
        Some(TOKEN_TYPE_JWT) => {}
        Some(_) => {
            return malformed(
                "subject_token_type must be urn:ietf:params:oauth:token-type:jwt (a JWT-SVID, or a service-account token with an actor_token)",
            );
        }
    }
    let tokens = match (
        form.actor_token.as_deref(),
        form.actor_token_type.as_deref(),
    ) {
        (None, None) => Tokens {
            presented: Presented::JwtSvid(subject_token),
            subject_token: None,
        },
        (Some(actor), Some(TOKEN_TYPE_JWT)) => {
            // Checked here as the gRPC edge does: the service-account validator is not
            // reached with an over-long token.
            if subject_token.len() > MAX_SA_TOKEN_LEN {
                return malformed("subject_token is too long for a service-account token");
            }
            Tokens {
                presented: Presented::JwtSvid(actor),
                subject_token: Some(subject_token),
            }
        }
        (Some(_), None) => return malformed("actor_token_type is required with actor_token"),
        (Some(_), Some(_)) => {
            return malformed(
                "actor_token_type must be urn:ietf:params:oauth:token-type:jwt (a JWT-SVID)",
            );
        }
        (None, Some(_)) => return malformed("actor_token_type was sent without actor_token"),
    };
    match form.requested_token_type.as_deref() {
        None | Some(TOKEN_TYPE_ACCESS_TOKEN) => {}
        Some(_) => {
            return malformed(
                "requested_token_type must be urn:ietf:params:oauth:token-type:access_token",
            );
        }
    }
    let service = match form.target() {
        Target::None => return Err(InvalidRequest::MissingService.into()),
        Target::Several => {
            return Err(ExchangeError::from(InvalidRequest::Malformed {
                what: "audience and resource name more than one service (a token is for one registry)",
            }));
        }
        Target::One(service) if service.len() > MAX_SERVICE_LEN => {
            return malformed("audience is too long");
        }
        Target::One(service) => service,
    };
    let scope_error = |what| Err(ExchangeError::from(InvalidRequest::ScopeRequest { what }));
    if form.scopes.len() > MAX_SCOPE_PARAMS {
        return scope_error("too many scope values");
    }
    if form.scopes.iter().any(|s| s.len() > MAX_SCOPE_PARAM_LEN) {
        return scope_error("a scope value is too long");
    }
    if form.scopes.iter().all(|s| s.trim().is_empty()) {
        return scope_error("scope is required");
    }
    Ok((service, tokens))
}

/// The edge: the form becomes one checked [`ExchangeRequest`] and what the caller presented;
/// the engine does the rest in one pass.
fn serve(state: &RealmState, peer: Option<SocketAddr>, body: &[u8]) -> Response {
    let form = match parse_form(body) {
        Ok(form) => form,
        Err(e) => return refuse(state, &context(peer), &e.into()),
    };
    let (service, tokens) = match check(&form) {
        Ok(checked) => checked,
        Err(e) => return refuse(state, &form.recorded(peer), &e),
    };
    let request = match ExchangeRequest::parse(form.recorded(peer), service, &form.scopes) {
        Ok(request) => request,
        Err(e) => return refuse(state, &form.recorded(peer), &e.into()),
    };
    let now = state.clock.now();
    // The synchronous pass: an access token never reaches a registry's own API (the engine
    // refuses an access token for a backend kind, Harbor and the like, before
    // authentication, as at the realm).
    match state
        .broker
        .exchange(&request, &tokens.presented, tokens.subject_token, now)
    {
        // Recorded (audited, counted, logged) by the engine.
        Ok(exchanged) => success(&exchanged.output, now),
        Err(e) => error_response(&e),
    }
}

fn success(output: &ExchangeOutput, now: SystemTime) -> Response {
    let ExchangeOutput::AccessToken(t) = output else {
        // Only access tokens are asked for at this edge.
        return error_response(&ExchangeError::from(InvalidRequest::Malformed {
            what: "only access tokens are issued here",
        }));
    };
    let expires_in = t.expires_at.duration_since(now).map_or(0, |d| d.as_secs());
    let body = json!({
        "access_token": t.token.expose_secret(),
        "issued_token_type": TOKEN_TYPE_ACCESS_TOKEN,
        "token_type": TOKEN_TYPE_BEARER,
        "expires_in": expires_in,
        "scope": scope::join_scopes(&t.granted),
    });
    json_response(StatusCode::OK, &body)
}

/// The RFC 6749 §5.2 `error` code for an engine error, and its HTTP status.
///
/// | engine error | `error` | status |
/// | --- | --- | --- |
/// | `grant_type` other than token exchange | `unsupported_grant_type` | 400 |
/// | unknown `service`; a registry kind this edge cannot serve (Harbor etc.) | `invalid_target` | 400 |
/// | scope grammar, too many scopes, nothing granted by policy | `invalid_scope` | 400 |
/// | bad, expired or untrusted `subject_token` / `actor_token`; actor not trusted to vouch | `invalid_request` | 400 |
/// | any other malformed request | `invalid_request` | 400 |
/// | rate limited (per subject, or per address after failures) | `temporarily_unavailable` | 429 |
/// | signing, audit or issuer keys unavailable | `temporarily_unavailable` | 503 |
///
/// A token that fails to verify is `invalid_request`, not `invalid_grant`: RFC 8693 §2.2.2
/// says a subject or actor token that is "invalid for any reason, or are unacceptable based
/// on policy" MUST be answered `invalid_request`. Policy granting none of the scopes is
/// `invalid_scope` (the requested scope "exceeds the scope granted", RFC 6749 §5.2), not
/// `invalid_target`: the broker does issue for that registry, just not those scopes, and
/// `invalid_target` (RFC 8693 §2.2.2) would tell the client its `audience` is wrong.
pub fn oauth2_error(err: &ExchangeError) -> (&'static str, StatusCode) {
    let bad = StatusCode::BAD_REQUEST;
    match err {
        ExchangeError::InvalidArgument { reason } => (
            match reason {
                InvalidRequest::UnsupportedGrantType => "unsupported_grant_type",
                InvalidRequest::UnknownService { .. }
                | InvalidRequest::KindNotServed { .. }
                | InvalidRequest::RegistryWideNotServed { .. }
                | InvalidRequest::NeedsBackend { .. } => "invalid_target",
                InvalidRequest::Scope(_)
                | InvalidRequest::TooManyScopes(_)
                | InvalidRequest::ScopeRequest { .. }
                | InvalidRequest::Backend(_) => "invalid_scope",
                InvalidRequest::MissingService
                | InvalidRequest::Malformed { .. }
                | InvalidRequest::RepeatedParameter { .. }
                | InvalidRequest::InvalidClientId => "invalid_request",
            },
            bad,
        ),
        ExchangeError::PermissionDenied { reason } => (
            match reason {
                Denial::EmptyGrant => "invalid_scope",
                Denial::RegistryNotAllowed => "invalid_target",
                // The actor may not vouch for subjects: its token is "unacceptable based on
                // policy" (RFC 8693 §2.2.2).
                Denial::SubjectTokensDisabled | Denial::UntrustedActor { .. } => "invalid_request",
            },
            bad,
        ),
        ExchangeError::Unauthenticated { .. } => ("invalid_request", bad),
        ExchangeError::ResourceExhausted { .. } | ExchangeError::PeerLimited { .. } => {
            ("temporarily_unavailable", StatusCode::TOO_MANY_REQUESTS)
        }
        ExchangeError::Unavailable { .. } => {
            ("temporarily_unavailable", StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

fn error_response(err: &ExchangeError) -> Response {
    let (error, status) = oauth2_error(err);
    let mut resp = json_response(
        status,
        &json!({ "error": error, "error_description": description(&err.to_string()) }),
    );
    if let Some(retry_after) = err.retry_after() {
        // Rounded up: a client retrying after the advertised time must be served.
        let secs = (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(RETRY_AFTER, v);
        }
    }
    resp
}

/// `error_description` may hold only `%x20-21 / %x23-5B / %x5D-7E` (RFC 6749 §5.2): no
/// quote, no backslash, ASCII only. Engine reasons quote registry names; they become `'`.
fn description(reason: &str) -> String {
    reason
        .chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    // RFC 6749 §5.1: the answer carries a token and must not be cached.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests;
