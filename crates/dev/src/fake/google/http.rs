//! The fake's HTTP shell: routes STS, IAM Credentials and the registry's login check,
//! verifies the JWT through the shared verifier, words the queued faults and turns the rules'
//! answers into Google's responses. The connection bounds, fault queue and body cap are the
//! fakes' shared ones (`fake::http`).

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Method, Request, header};
use hyper::body::Incoming;
use serde_json::{Value, json};
use svid_broker_identity::clock::Rfc3339;
use svid_broker_identity::secret::ExposeSecret as _;

use super::rules::{
    ACCESS_TOKEN_TYPE, FEDERATED_LIFETIME_SECS, GoogleError, StsError, decode_exchange,
    decode_generate, oauth_code, status_name,
};
use super::{MAX_BODY_BYTES, STS_TOKEN_PATH, Shared};
use crate::fake::federation::JwtRejection;
use crate::fake::http::{
    BodyError, Hangup, Reply, Service, header_str, inject_fault, parse_basic, percent_decode,
    read_body, reply, retry_after_on_429,
};
use crate::fake::random_alphanumeric;

/// Where IAM Credentials' service account methods live.
const PROJECTS_ROOT: &str = "/v1/projects/";
/// The method suffix of `generateAccessToken`.
const GENERATE_SUFFIX: &str = ":generateAccessToken";
/// The Docker username of an OAuth 2.0 access token.
const DOCKER_USERNAME: &str = "oauth2accesstoken";
/// Artifact Registry's challenge on a refused `/v2/`.
const CHALLENGE: &str =
    "Bearer realm=\"https://us-docker.pkg.dev/v2/token\",service=\"us-docker.pkg.dev\"";

impl Service for Shared {
    async fn call(&self, req: Request<Incoming>) -> Result<Reply, Hangup> {
        let path = req.uri().path().to_owned();
        if path == "/v2/" || path == "/v2" {
            return Ok(registry_check(self, &req));
        }
        if path == STS_TOKEN_PATH {
            let malformed = |_: &Method| json_reply(200, "{\"access_token\":".to_owned());
            if let Some(reply) = inject_fault(&self.sts, req.method(), malformed, sts_fault).await?
            {
                return Ok(reply);
            }
            if req.method() != Method::POST {
                return Ok(google_error(&GoogleError {
                    code: 405,
                    status: "INVALID_ARGUMENT",
                    message: "Method not allowed".to_owned(),
                }));
            }
            return Ok(match exchange(self, req).await {
                Ok(reply) => {
                    self.sts.stats().counts.exchanges += 1;
                    reply
                }
                Err(e) => {
                    self.sts.stats().counts.sts_refusals += 1;
                    sts_error(&e)
                }
            });
        }
        if path.starts_with(PROJECTS_ROOT) && path.ends_with(GENERATE_SUFFIX) {
            let malformed = |_: &Method| json_reply(200, "{\"accessToken\":".to_owned());
            if let Some(reply) =
                inject_fault(&self.iam, req.method(), malformed, generate_fault).await?
            {
                return Ok(reply);
            }
            if req.method() != Method::POST {
                return Ok(google_error(&GoogleError {
                    code: 405,
                    status: "INVALID_ARGUMENT",
                    message: "Method not allowed".to_owned(),
                }));
            }
            return Ok(match generate(self, req).await {
                Ok(reply) => {
                    self.sts.stats().counts.generated += 1;
                    reply
                }
                Err(e) => {
                    self.sts.stats().counts.generate_refusals += 1;
                    google_error(&e)
                }
            });
        }
        Ok(google_error(&GoogleError {
            code: 404,
            status: "NOT_FOUND",
            message: "The requested URL was not found on this server.".to_owned(),
        }))
    }
}

/// The registry's base check: 200 for Basic `oauth2accesstoken:<live access token>` of an
/// account with a registry role, else 401 with Artifact Registry's Bearer challenge.
fn registry_check(shared: &Shared, req: &Request<Incoming>) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return google_error(&GoogleError {
            code: 405,
            status: "INVALID_ARGUMENT",
            message: "Method not allowed".to_owned(),
        });
    }
    let now = shared.sts.now_unix();
    let valid = header_str(req, header::AUTHORIZATION)
        .and_then(parse_basic)
        .is_some_and(|(user, token)| {
            user == DOCKER_USERNAME && shared.state().registry_role(&token, now).is_some()
        });
    if valid {
        shared.sts.stats().counts.registry_logins += 1;
        let mut r = json_reply(200, "{}".to_owned());
        r.headers_mut().insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        return r;
    }
    let body = json!({ "errors": [{ "code": "UNAUTHORIZED",
        "message": "Unauthenticated request. Unauthenticated requests do not have permission \
                    \"artifactregistry.repositories.downloadArtifacts\" on resource" }] });
    let mut r = json_reply(401, body.to_string());
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(CHALLENGE),
    );
    r
}

/// The token exchange: body, provider, JWT against the provider's issuer, then the rules.
async fn exchange(shared: &Shared, req: Request<Incoming>) -> Result<Reply, StsError> {
    let body = read_json(req).await.map_err(|e| match e {
        BodyProblem::TooLarge => StsError {
            status: 413,
            error: "invalid_request",
            description: "Request body is too large".to_owned(),
        },
        BodyProblem::Unreadable(message) => StsError::invalid_request(message),
    })?;
    let request = decode_exchange(&body)?;
    let issuer = shared
        .state()
        .provider(&request.audience)?
        .issuer_uri
        .clone();
    let now = shared.sts.now_unix();
    let token_text = request.subject_token.expose_secret();
    let jwt = shared
        .verifier
        .verify_from(token_text, &[&issuer], now)
        .await
        .map_err(|rejection| refusal(&rejection, token_text, &issuer))?;
    shared.state().audit(&jwt);
    let token = random_alphanumeric("ya29.d.", 96).ok_or(StsError {
        status: 500,
        error: "server_error",
        description: "random generator failed".to_owned(),
    })?;
    shared
        .state()
        .exchange(&request.audience, &jwt, &token, now)?;
    let answer = json!({
        "access_token": token.expose_secret(),
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": FEDERATED_LIFETIME_SECS,
    });
    Ok(json_reply(200, answer.to_string()))
}

/// A verification failure, as STS words it (see the module docs for the sources).
fn refusal(rejection: &JwtRejection, token: &str, issuer_uri: &str) -> StsError {
    StsError::invalid_grant(match rejection {
        JwtRejection::UntrustedIssuer { issuer } => format!(
            "The issuer in ID Token {issuer} does not match the expected ones: {issuer_uri}"
        ),
        JwtRejection::Expired { .. } => format!(
            "ID Token issued at {} is stale to sign-in.",
            unverified_iat(token).unwrap_or_default()
        ),
        JwtRejection::Discovery { .. } => {
            "Error connecting to the given credential's issuer.".to_owned()
        }
        other => format!("Invalid ID Token: {other}"),
    })
}

/// The `iat` of a token whose signature verified but which expired (for the message only).
fn unverified_iat(token: &str) -> Option<i64> {
    let payload = URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?).ok()?;
    serde_json::from_slice::<Value>(&payload)
        .ok()?
        .get("iat")?
        .as_i64()
}

/// Impersonation: path, caller, body, then the rules.
async fn generate(shared: &Shared, req: Request<Incoming>) -> Result<Reply, GoogleError> {
    let path = req.uri().path().to_owned();
    let not_found = || GoogleError {
        code: 404,
        status: "NOT_FOUND",
        message: "The requested URL was not found on this server.".to_owned(),
    };
    let name = path
        .strip_prefix(PROJECTS_ROOT)
        .and_then(|rest| rest.strip_suffix(GENERATE_SUFFIX))
        .ok_or_else(not_found)?;
    let (project, email) = name.split_once("/serviceAccounts/").ok_or_else(not_found)?;
    let email = percent_decode(email);
    if email.is_empty() || email.contains('/') {
        return Err(not_found());
    }
    if project != "-" {
        return Err(GoogleError::invalid_argument(
            "The - wildcard character is required for the project; replacing it with a project \
             ID is invalid.",
        ));
    }
    let now = shared.sts.now_unix();
    let caller = {
        let bearer = header_str(&req, header::AUTHORIZATION)
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned())
            .ok_or_else(GoogleError::unauthenticated)?;
        shared.state().federated(&bearer, now)?
    };
    let body = read_json(req).await.map_err(|e| match e {
        BodyProblem::TooLarge => GoogleError {
            code: 413,
            status: "INVALID_ARGUMENT",
            message: "Request body is too large".to_owned(),
        },
        BodyProblem::Unreadable(message) => GoogleError::invalid_argument(message),
    })?;
    let lifetime = decode_generate(&body)?;
    let token = random_alphanumeric("ya29.c.", 120).ok_or(GoogleError {
        code: 500,
        status: "INTERNAL",
        message: "random generator failed".to_owned(),
    })?;
    let expires_at = shared
        .state()
        .generate(&email, &caller, lifetime, &token, now)?;
    let expire_time = UNIX_EPOCH + Duration::from_secs(u64::try_from(expires_at).unwrap_or(0));
    let answer = json!({
        "accessToken": token.expose_secret(),
        "expireTime": Rfc3339(expire_time).to_string(),
    });
    Ok(json_reply(200, answer.to_string()))
}

/// Why a body could not be read as JSON.
enum BodyProblem {
    TooLarge,
    Unreadable(&'static str),
}

async fn read_json(req: Request<Incoming>) -> Result<Value, BodyProblem> {
    let bytes = read_body(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TimedOut => BodyProblem::Unreadable("request body read timed out"),
            BodyError::TooLarge => BodyProblem::TooLarge,
        })?;
    serde_json::from_slice(&bytes)
        .map_err(|_| BodyProblem::Unreadable("Invalid JSON payload received."))
}

/// A queued STS fault's status as an OAuth error (429 adds `Retry-After: 1`).
fn sts_fault(status: u16) -> Reply {
    retry_after_on_429(
        status,
        sts_error(&StsError {
            status,
            error: oauth_code(status),
            description: "injected fault".to_owned(),
        }),
    )
}

/// A queued IAM Credentials fault's status as Google's error (429 adds `Retry-After: 1`).
fn generate_fault(status: u16) -> Reply {
    retry_after_on_429(
        status,
        google_error(&GoogleError {
            code: status,
            status: status_name(status),
            message: "injected fault".to_owned(),
        }),
    )
}

/// RFC 6749's error body, as STS answers.
fn sts_error(e: &StsError) -> Reply {
    let body = json!({ "error": e.error, "error_description": e.description });
    json_reply(e.status, body.to_string())
}

/// Google's API error body.
fn google_error(e: &GoogleError) -> Reply {
    let body = json!({ "error": { "code": e.code, "message": e.message, "status": e.status } });
    json_reply(e.code, body.to_string())
}

fn json_reply(status: u16, body: String) -> Reply {
    reply(status, "application/json; charset=UTF-8", body)
}
