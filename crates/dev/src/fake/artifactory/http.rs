//! The fake's HTTP shell: routes the token exchange and the Docker registry API's login check,
//! verifies the JWT through the shared verifier, words the queued faults and turns the rules'
//! answers into Access's and Artifactory's responses. The connection bounds, fault queue and
//! body cap are the fakes' shared ones (`fake::http`).

use http::{HeaderValue, Method, Request, header};
use hyper::body::Incoming;
use serde_json::{Value, json};
use svid_broker_identity::secret::ExposeSecret as _;

use super::rules::{ApiError, ISSUED_TOKEN_TYPE, code_of, decode_exchange};
use super::{MAX_BODY_BYTES, Shared};
use crate::fake::http::{
    BodyError, Hangup, Reply, Service, header_str, inject_fault, parse_basic, read_body, reply,
    retry_after_on_429,
};
use crate::fake::random_alphanumeric;

/// Where JFrog Access's API lives; faults and call counts apply below it.
const ACCESS_ROOT: &str = "/access/api/";
/// The token exchange's path (JFrog Access `POST`).
pub(super) const OIDC_TOKEN: &str = "/access/api/v1/oidc/token";
/// Artifactory's Basic realm (`WWW-Authenticate` of a registry 401).
const REALM: &str = "Basic realm=\"Artifactory Realm\"";
/// Where a repository's Docker API lives (the repository path method).
const DOCKER_REPO_ROOT: &str = "/artifactory/api/docker/";

impl Service for Shared {
    async fn call(&self, req: Request<Incoming>) -> Result<Reply, Hangup> {
        let path = req.uri().path().to_owned();
        if is_registry_root(&path) {
            return Ok(registry_check(self, &req));
        }
        if !path.starts_with(ACCESS_ROOT) {
            return Ok(jfrog_error(404, "Not Found"));
        }
        let malformed = |_: &Method| json_reply(200, "{\"access_token\":".to_owned());
        if let Some(reply) =
            inject_fault(&self.control, req.method(), malformed, fault_reply).await?
        {
            return Ok(reply);
        }
        if path != OIDC_TOKEN {
            return Ok(jfrog_error(404, "Not Found"));
        }
        if req.method() != Method::POST {
            return Ok(jfrog_error(405, "Method Not Allowed"));
        }
        Ok(match exchange(self, req).await {
            Ok(reply) => {
                self.control.stats().counts.exchanges += 1;
                reply
            }
            Err(e) => {
                self.control.stats().counts.refusals += 1;
                jfrog_error(e.status, &e.message)
            }
        })
    }
}

/// `/v2/`, or `/artifactory/api/docker/<repo>/v2/` for one repository name segment.
fn is_registry_root(path: &str) -> bool {
    if path == "/v2/" || path == "/v2" {
        return true;
    }
    path.strip_prefix(DOCKER_REPO_ROOT)
        .and_then(|rest| {
            rest.strip_suffix("/v2/")
                .or_else(|| rest.strip_suffix("/v2"))
        })
        .is_some_and(|repo| !repo.is_empty() && !repo.contains('/'))
}

/// The Docker API's base check: 200 for a live token handed to that username, else 401 with
/// Artifactory's realm (no Bearer token service: Basic is what `docker login` sends here).
fn registry_check(shared: &Shared, req: &Request<Incoming>) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return jfrog_error(405, "Method Not Allowed");
    }
    let valid = header_str(req, header::AUTHORIZATION)
        .and_then(parse_basic)
        .is_some_and(|(user, token)| {
            shared
                .state()
                .token_valid(&user, &token, shared.control.now_unix())
        });
    if valid {
        shared.control.stats().counts.registry_logins += 1;
        let mut r = json_reply(200, "{}".to_owned());
        r.headers_mut().insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        return r;
    }
    let mut r = artifactory_error(401, "Bad credentials");
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
    r
}

/// The exchange: body, integration, JWT against the integration's issuer, then the rules.
async fn exchange(shared: &Shared, req: Request<Incoming>) -> Result<Reply, ApiError> {
    let bytes = read_body(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TimedOut => ApiError::bad_request("request body read timed out"),
            BodyError::TooLarge => ApiError {
                status: 413,
                message: "Request body is too large".to_owned(),
            },
        })?;
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::bad_request("Malformed JSON request body"))?;
    let request = decode_exchange(&body)?;
    let issuer = shared
        .state()
        .provider(&request.provider_name)?
        .issuer_url
        .clone();
    let now = shared.control.now_unix();
    let jwt = shared
        .verifier
        .verify_from(request.subject_token.expose_secret(), &[&issuer], now)
        .await
        .map_err(|rejection| {
            ApiError::bad_request(format!("Failed to validate the subject token: {rejection}"))
        })?;
    let token = random_alphanumeric("eyJmYWtlIjoiYXJ0aWZhY3Rvcnki", 64).ok_or(ApiError {
        status: 500,
        message: "random generator failed".to_owned(),
    })?;
    let issued = shared.state().exchange(&request, &jwt, &token, now)?;
    let answer = json!({
        "access_token": token.expose_secret(),
        "token_type": "Bearer",
        "expires_in": issued.expires_at.saturating_sub(now),
        "scope": issued.scope,
        "issued_token_type": ISSUED_TOKEN_TYPE,
        "username": issued.username,
    });
    Ok(json_reply(200, answer.to_string()))
}

/// A queued fault's status, worded as Access would (429 adds `Retry-After: 1`).
fn fault_reply(status: u16) -> Reply {
    retry_after_on_429(status, jfrog_error(status, "injected fault"))
}

/// Access's error body: `{"errors":[{"code","message"}]}`.
fn jfrog_error(status: u16, message: &str) -> Reply {
    let body = json!({ "errors": [{ "code": code_of(status), "message": message }] });
    json_reply(status, body.to_string())
}

/// Artifactory's own error body: `{"errors":[{"status","message"}]}`.
fn artifactory_error(status: u16, message: &str) -> Reply {
    let body = json!({ "errors": [{ "status": status, "message": message }] });
    json_reply(status, body.to_string())
}

fn json_reply(status: u16, body: String) -> Reply {
    reply(status, "application/json", body)
}
