//! The fake's HTTP shell: Entra's token endpoint and ACR's exchange and login check, each on
//! its own listener; verifies the assertion through the shared verifier, words the queued
//! faults and turns the rules' answers into Entra's and ACR's responses. Connection bounds,
//! the fault queue and the body cap are the fakes' shared ones (`fake::http`).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Method, Request, header};
use hyper::body::Incoming;
use serde_json::json;
use svid_broker_identity::secret::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

use super::rules::{
    self, AcrError, CLIENT_CREDENTIALS, EntraError, EntraToken, JWT_BEARER, RefreshToken, State,
    cut,
};
use super::{
    ACCESS_TOKEN_LIFETIME, MAX_BODY_BYTES, REFRESH_TOKEN_USERNAME, Shared, VerifiedAssertion,
};
use crate::fake::http::{
    BodyError, Hangup, Query, Reply, Service, header_str, inject_fault, parse_basic, read_body,
    reply, retry_after_on_429,
};
use crate::fake::random_alphanumeric;
use crate::fake::server::lock;

/// The form content type both services read.
const FORM: &str = "application/x-www-form-urlencoded";

/// Entra's listener.
pub(super) struct EntraService(pub(super) Arc<Shared>);

/// ACR's listener.
pub(super) struct AcrService(pub(super) Arc<Shared>);

impl Service for EntraService {
    async fn call(&self, req: Request<Incoming>) -> Result<Reply, Hangup> {
        let shared = &*self.0;
        let path = req.uri().path().to_owned();
        let Some(tenant) = path
            .strip_prefix('/')
            .and_then(|p| p.strip_suffix("/oauth2/v2.0/token"))
            .filter(|t| !t.is_empty() && !t.contains('/'))
            .map(str::to_owned)
        else {
            return Ok(entra_error(&EntraError::invalid_request(
                900_561,
                "The endpoint only accepts POST requests to /{tenant}/oauth2/v2.0/token.",
            )));
        };
        let malformed = |_: &Method| json_reply(200, "{\"token_type\":\"Bearer\",".to_owned());
        if let Some(reply) =
            inject_fault(&shared.entra, req.method(), malformed, entra_fault).await?
        {
            return Ok(reply);
        }
        Ok(match token(shared, &tenant, req).await {
            Ok(reply) => {
                shared.entra.stats().counts.issued += 1;
                reply
            }
            Err(e) => {
                shared.entra.stats().counts.refused += 1;
                entra_error(&e)
            }
        })
    }
}

impl Service for AcrService {
    async fn call(&self, req: Request<Incoming>) -> Result<Reply, Hangup> {
        let shared = &*self.0;
        let path = req.uri().path().to_owned();
        if path == "/v2/" || path == "/v2" {
            return Ok(registry_check(shared, &req));
        }
        if path != super::EXCHANGE_PATH {
            return Ok(acr_error(&AcrError::new(404, "NOT_FOUND", "not found")));
        }
        let malformed = |_: &Method| json_reply(200, "{\"refresh_token\":".to_owned());
        if let Some(reply) = inject_fault(&shared.acr, req.method(), malformed, acr_fault).await? {
            return Ok(reply);
        }
        // ACR answers a GET of the exchange with 404 (Azure/acr#166).
        if req.method() != Method::POST {
            return Ok(acr_error(&AcrError::new(404, "NOT_FOUND", "not found")));
        }
        Ok(match exchange(shared, req).await {
            Ok(reply) => {
                shared.acr.stats().counts.issued += 1;
                reply
            }
            Err(e) => {
                shared.acr.stats().counts.refused += 1;
                acr_error(&e)
            }
        })
    }
}

/// The form body of `req`, when it is labelled as a form and within the cap; `Err` with the
/// body error's status.
async fn form(req: Request<Incoming>) -> Result<Option<Zeroizing<String>>, u16> {
    let is_form = header_str(&req, header::CONTENT_TYPE).is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case(FORM))
    });
    let bytes = read_body(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TimedOut => 408_u16,
            BodyError::TooLarge => 413,
        })?;
    if !is_form {
        return Ok(None);
    }
    Ok(String::from_utf8(bytes.to_vec()).ok().map(Zeroizing::new))
}

/// Entra's client-credentials grant with a federated assertion.
async fn token(shared: &Shared, tenant: &str, req: Request<Incoming>) -> Result<Reply, EntraError> {
    if req.method() != Method::POST {
        return Err(EntraError::invalid_request(
            900_561,
            "The endpoint only accepts POST, OPTIONS requests. Received a GET request.",
        ));
    }
    let body = form(req).await.map_err(|status| EntraError {
        status,
        error: "invalid_request",
        code: 900_144,
        description: "The request body could not be read.".to_owned(),
    })?;
    let body = body.unwrap_or_default();
    let query = Query::parse(Some(body.as_str()));
    let required = |name: &'static str| -> Result<String, EntraError> {
        query
            .first(name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                EntraError::invalid_request(
                    900_144,
                    format!("The request body must contain the following parameter: '{name}'."),
                )
            })
    };
    if !rules::is_guid(tenant) {
        return Err(EntraError::invalid_request(
            900_023,
            format!(
                "Specified tenant identifier '{}' is neither a valid DNS name, nor a valid external domain.",
                cut(tenant)
            ),
        ));
    }
    let grant_type = required("grant_type")?;
    if grant_type != CLIENT_CREDENTIALS {
        return Err(EntraError {
            status: 400,
            error: "unsupported_grant_type",
            code: 70_003,
            description: format!(
                "The app requested an unsupported grant type '{}'.",
                cut(&grant_type)
            ),
        });
    }
    let client_id = required("client_id")?;
    let scope = required("scope")?;
    let assertion_type = required("client_assertion_type")?;
    let assertion = SecretString::from(required("client_assertion")?);
    drop(query);
    drop(body);
    if assertion_type != JWT_BEARER {
        return Err(EntraError::invalid_request(
            7_000_219,
            "'client_assertion_type' must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
        ));
    }
    let resource = rules::scope_resource(&scope)?;
    let (issuers, app) = {
        let state = shared.state();
        let app = state.app(tenant, &client_id)?.clone();
        let issuers: Vec<String> = app.fics.iter().map(|f| f.issuer.clone()).collect();
        (issuers, app)
    };
    if issuers.is_empty() {
        return Err(EntraError::invalid_client(
            70_025,
            "The client has no configured federated identity credentials.",
        ));
    }
    let trusted: Vec<&str> = issuers.iter().map(String::as_str).collect();
    let now = shared.now_unix();
    let hint = issuers.first().cloned().unwrap_or_default();
    let jwt = shared
        .verifier
        .verify_from(assertion.expose_secret(), &trusted, now)
        .await
        .map_err(|rejection| rules::assertion_refusal(&rejection, &hint))?;
    State::match_credential(&app, &jwt)?;
    let text =
        random_alphanumeric("eyJ0eXAiOiJKV1QiLCJmYWtlIjoiZW50cmEifQ.", 96).ok_or(EntraError {
            status: 500,
            error: "server_error",
            code: 90_033,
            description: "random generator failed".to_owned(),
        })?;
    let lifetime = i64::try_from(ACCESS_TOKEN_LIFETIME.as_secs()).unwrap_or(3599);
    shared.state().record_entra(
        text.expose_secret().to_owned(),
        EntraToken {
            tenant: tenant.to_ascii_lowercase(),
            client_id: client_id.to_ascii_lowercase(),
            resource,
            expires_at: now.saturating_add(lifetime),
        },
        now,
    )?;
    {
        let mut audit = lock(&shared.audit);
        if audit.len() < rules::MAX_AUDIT {
            audit.push(VerifiedAssertion {
                issuer: jwt.issuer,
                subject: jwt.subject,
                audiences: jwt.audiences,
                kid: jwt.kid,
                client_id: client_id.to_ascii_lowercase(),
            });
        }
    }
    let answer = json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": text.expose_secret(),
    });
    Ok(json_reply(200, answer.to_string()))
}

/// ACR's exchange of an Entra access token for a refresh token.
async fn exchange(shared: &Shared, req: Request<Incoming>) -> Result<Reply, AcrError> {
    let body = form(req)
        .await
        .map_err(|status| {
            AcrError::new(status, "BAD_REQUEST", "the request body could not be read")
        })?
        .ok_or_else(|| {
            AcrError::new(
                400,
                "BAD_REQUEST",
                "the body must be application/x-www-form-urlencoded",
            )
        })?;
    let query = Query::parse(Some(body.as_str()));
    let field = |name: &str| {
        query
            .first(name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let bad = |message: String| AcrError::new(400, "BAD_REQUEST", message);
    match field("grant_type").as_deref() {
        Some("access_token") => {}
        Some(other) => return Err(bad(format!("unsupported grant_type {}", cut(other)))),
        None => return Err(bad("grant_type is required".to_owned())),
    }
    let service = field("service").ok_or_else(|| bad("service is required".to_owned()))?;
    let login_server = lock(&shared.login_server).clone();
    if !service.eq_ignore_ascii_case(&login_server) {
        return Err(bad(format!(
            "service {} is not this registry's login server",
            cut(&service)
        )));
    }
    let access_token = Zeroizing::new(
        field("access_token").ok_or_else(|| bad("access_token is required".to_owned()))?,
    );
    let tenant = field("tenant");
    drop(query);
    drop(body);
    let now = shared.now_unix();
    let (token, roles) = shared
        .state()
        .check_exchange(&access_token, tenant.as_deref(), now)?;
    let lifetime = i64::try_from(lock(&shared.refresh_lifetime).as_secs()).unwrap_or(i64::MAX);
    let expires_at = now.saturating_add(lifetime);
    let jti = random_alphanumeric("", 32)
        .ok_or_else(|| AcrError::new(500, "INTERNAL", "random generator failed"))?;
    let signature = random_alphanumeric("", 86)
        .ok_or_else(|| AcrError::new(500, "INTERNAL", "random generator failed"))?;
    let actions: Vec<&str> = if roles
        .iter()
        .any(|r| r.contains("Push") || r.contains("Writer"))
    {
        vec!["read", "write"]
    } else {
        vec!["read"]
    };
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": "fake-acr" });
    let claims = json!({
        "jti": jti.expose_secret(), "sub": token.client_id, "nbf": now, "exp": expires_at,
        "iat": now, "iss": "Azure Container Registry", "aud": login_server, "version": "1.0",
        "grant_type": "refresh_token", "tenant": token.tenant,
        "permissions": { "actions": actions, "notActions": [] }, "roles": [],
    });
    let text = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        signature.expose_secret()
    );
    let answer = json!({ "refresh_token": text }).to_string();
    shared.state().record_refresh(
        text,
        RefreshToken {
            tenant: token.tenant,
            client_id: token.client_id,
            roles,
            expires_at,
        },
        now,
    )?;
    Ok(json_reply(200, answer))
}

/// The registry's base check with the refresh token as a Basic password.
fn registry_check(shared: &Shared, req: &Request<Incoming>) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return acr_error(&AcrError::new(
            405,
            "UNSUPPORTED",
            "the operation is unsupported",
        ));
    }
    let valid = header_str(req, header::AUTHORIZATION)
        .and_then(parse_basic)
        .is_some_and(|(user, token)| {
            user == REFRESH_TOKEN_USERNAME
                && shared.state().refresh_valid(&token, shared.now_unix())
        });
    if valid {
        shared.acr.stats().counts.logins += 1;
        let mut r = json_reply(200, "{}".to_owned());
        r.headers_mut().insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        return r;
    }
    let login_server = lock(&shared.login_server).clone();
    let mut r = acr_error(&AcrError::new(
        401,
        "UNAUTHORIZED",
        "authentication required, visit https://aka.ms/acr/authorization for more information.",
    ));
    let challenge =
        format!("Bearer realm=\"http://{login_server}/oauth2/token\",service=\"{login_server}\"");
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    r
}

/// A queued fault's status as Entra words it (401 and 400 with assertion-free codes).
fn entra_fault(status: u16) -> Reply {
    let (error, code) = match status {
        400 => ("invalid_request", 900_144),
        401 => ("invalid_client", 70_021),
        403 => ("access_denied", 50_105),
        429 => ("temporarily_unavailable", 50_196),
        _ => ("server_error", 90_033),
    };
    retry_after_on_429(
        status,
        entra_error(&EntraError {
            status,
            error,
            code,
            description: "injected fault".to_owned(),
        }),
    )
}

/// A queued fault's status as ACR words it.
fn acr_fault(status: u16) -> Reply {
    let code = match status {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "DENIED",
        429 => "TOOMANYREQUESTS",
        _ => "INTERNAL",
    };
    retry_after_on_429(
        status,
        acr_error(&AcrError::new(status, code, "injected fault")),
    )
}

/// Entra's error body.
fn entra_error(e: &EntraError) -> Reply {
    let trace = "00000000-0000-0000-0000-fa4e00000000";
    let body = json!({
        "error": e.error,
        "error_description": format!(
            "AADSTS{}: {} Trace ID: {trace} Correlation ID: {trace} Timestamp: fake",
            e.code, e.description
        ),
        "error_codes": [e.code],
        "timestamp": "fake",
        "trace_id": trace,
        "correlation_id": trace,
        "error_uri": format!("https://login.microsoftonline.com/error?code={}", e.code),
    });
    json_reply(e.status, body.to_string())
}

/// ACR's error body: `{"errors":[{"code","message"}]}`.
fn acr_error(e: &AcrError) -> Reply {
    let body = json!({ "errors": [{ "code": e.code, "message": e.message }] });
    json_reply(e.status, body.to_string())
}

fn json_reply(status: u16, body: String) -> Reply {
    reply(status, "application/json; charset=utf-8", body)
}
