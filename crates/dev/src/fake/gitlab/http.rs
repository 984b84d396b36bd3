//! The fake's HTTP shell: routes `/api/v4` requests, words the queued faults and turns the
//! rules' answers into GitLab's responses. The connection bounds, fault queue and body cap are
//! the fakes' shared ones (`fake::http`). No decision is made here.

use http::{HeaderValue, Method, Request, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::rules::{ApiError, DeployTokenCreate, Page, Paging, datetime_millis};
use super::{MAX_BODY_BYTES, REGISTRY_SERVICE, Shared};
use crate::fake::http::{
    BodyError, Hangup, Query, Reply, Service, empty_reply, header_str, inject_fault, parse_basic,
    percent_decode, read_body, reply, retry_after_on_429, success_status,
};

/// `scope` values one registry token request may carry. The fake's bound.
const MAX_SCOPES: usize = 64;

/// Every request: the API root counted and faulted, then routed.
impl Service for Shared {
    async fn call(&self, req: Request<Incoming>) -> Result<Reply, Hangup> {
        let path = req.uri().path().to_owned();
        if path == "/jwt/auth" {
            return Ok(registry_token(self, &req));
        }
        if path != "/api/v4" && !path.starts_with("/api/v4/") {
            return Ok(json_reply(404, &json!({ "error": "404 Not Found" })));
        }
        let malformed = |method: &Method| {
            json_text_reply(
                success_status(method),
                "{\"id\":1,\"name\":\"svid".to_owned(),
            )
        };
        if let Some(reply) =
            inject_fault(&self.control, req.method(), malformed, fault_reply).await?
        {
            return Ok(reply);
        }
        Ok(match api(self, req, &path).await {
            Ok(reply) => reply,
            Err(e) => json_reply(e.status, &e.body),
        })
    }
}

/// Routes `/api/v4/projects/:id/deploy_tokens[/:token_id]`.
async fn api(shared: &Shared, req: Request<Incoming>, path: &str) -> Result<Reply, ApiError> {
    // The raw path keeps `%2F` inside the project segment, so split before decoding.
    let segments: Vec<&str> = path
        .trim_start_matches("/api/v4")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let who = {
        let token = header_str(&req, "private-token");
        shared.state().authenticate(token)?
    };
    let query = Query::parse(req.uri().query());
    let now = shared.control.now_unix();
    let method = req.method().clone();
    match (segments.as_slice(), &method) {
        (["projects", project, "deploy_tokens"], &Method::GET) => {
            let project = percent_decode(project);
            let paging = Paging::parse(query.first("page"), query.first("per_page"))?;
            let active = match query.first("active") {
                None => None,
                Some(v) => Some(parse_bool(v).ok_or_else(|| ApiError::param("active is invalid"))?),
            };
            let page = shared
                .state()
                .list_tokens(who, &project, active, paging, now)?;
            Ok(list_reply(page))
        }
        (["projects", project, "deploy_tokens"], &Method::POST) => {
            let project = percent_decode(project);
            let body = read_json_body(req).await?;
            let request = DeployTokenCreate::from_json(&body)?;
            let created = shared.state().create_token(who, &project, &request, now)?;
            shared.control.stats().counts.tokens_created += 1;
            let t = &created.token;
            // `Entities::DeployTokenWithToken`: the only answer that carries the token.
            let payload = json!({
                "id": t.id,
                "name": t.name,
                "username": t.username,
                "expires_at": t.expires_at.map(datetime_millis),
                "token": created.value.as_str(),
                "revoked": t.revoked,
                "expired": false,
                "scopes": t.scopes,
            });
            Ok(json_reply(201, &payload))
        }
        (["projects", project, "deploy_tokens", token_id], &Method::GET | &Method::DELETE) => {
            let project = percent_decode(project);
            let token_id = token_id
                .parse::<i64>()
                .map_err(|_| ApiError::param("token_id is invalid"))?;
            if method == Method::GET {
                let token = shared.state().get_token(who, &project, token_id, now)?;
                Ok(json_reply(200, &token))
            } else {
                shared.state().delete_token(who, &project, token_id)?;
                shared.control.stats().counts.tokens_revoked += 1;
                Ok(empty_reply(204))
            }
        }
        (["projects", _, "deploy_tokens", ..], _) => {
            Err(ApiError::message(405, "405 Method Not Allowed"))
        }
        _ => Err(ApiError::message(404, "404 Not Found")),
    }
}

/// `GET /jwt/auth?service=container_registry&scope=...` with a deploy token's username and
/// value as Basic credentials: 200 `{"token"}` with the access it holds, 401 in the
/// registry's error shape for anything but an active deploy token. Another `service` is 400
/// (the fake's strictness).
fn registry_token(shared: &Shared, req: &Request<Incoming>) -> Reply {
    let denied = || {
        json_reply(
            401,
            &json!({ "errors": [{ "code": "UNAUTHORIZED", "message": "HTTP Basic: Access denied" }] }),
        )
    };
    if req.method() != Method::GET {
        return json_reply(405, &json!({ "message": "405 Method Not Allowed" }));
    }
    let query = Query::parse(req.uri().query());
    if query.first("service") != Some(REGISTRY_SERVICE) {
        return json_reply(400, &json!({ "message": "unknown service" }));
    }
    let scopes: Vec<String> = query
        .all("scope")
        .flat_map(|v| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .take(MAX_SCOPES + 1)
        .collect();
    if scopes.len() > MAX_SCOPES {
        return json_reply(400, &json!({ "message": "too many scopes" }));
    }
    let Some((username, value)) = header_str(req, header::AUTHORIZATION).and_then(parse_basic)
    else {
        return denied();
    };
    let now = shared.control.now_unix();
    let Some(access) = shared
        .state()
        .registry_access(&username, &value, &scopes, now)
    else {
        return denied();
    };
    let ttl = i64::try_from(shared.token_ttl.as_secs()).unwrap_or(i64::MAX);
    let access: Vec<Value> = access.into_iter().map(|a| a.claim()).collect();
    let claims = json!({
        "iss": super::TOKEN_ISSUER,
        "sub": username,
        "aud": REGISTRY_SERVICE,
        "iat": now,
        "nbf": now - 5,
        "exp": now.saturating_add(ttl),
        "access": access,
    });
    match shared.signer.sign(&claims) {
        Ok(token) => json_reply(200, &json!({ "token": token })),
        Err(_) => json_reply(500, &json!({ "message": "500 Internal Server Error" })),
    }
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`] (within the shared read timeout): too large is
/// 413; anything but `application/json` is 415 (GitLab also takes form bodies; the broker
/// sends JSON, so the fake holds it to that); bad JSON is 400.
async fn read_json_body(req: Request<Incoming>) -> Result<Value, ApiError> {
    let content_type = header_str(&req, header::CONTENT_TYPE)
        .unwrap_or("")
        .to_owned();
    let bytes = read_body(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TimedOut => ApiError::message(408, "408 Request Timeout"),
            BodyError::TooLarge => ApiError::message(413, "413 Request Entity Too Large"),
        })?;
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::message(415, "415 Unsupported Media Type"));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::param("The provided content-type 'application/json' is not valid JSON")
    })
}

/// A page with GitLab's offset pagination headers: `X-Total`, `X-Total-Pages`, `X-Page`,
/// `X-Per-Page`, `X-Next-Page` (empty on the last page) and `X-Prev-Page`.
fn list_reply(page: Page) -> Reply {
    let Page {
        items,
        total,
        paging: Paging { page, per_page },
    } = page;
    let total = i64::try_from(total).unwrap_or(i64::MAX);
    let total_pages = (total + per_page - 1) / per_page;
    let next = if page < total_pages {
        (page + 1).to_string()
    } else {
        String::new()
    };
    let prev = if page > 1 {
        (page - 1).to_string()
    } else {
        String::new()
    };
    let mut r = json_reply(200, &Value::Array(items));
    let headers = r.headers_mut();
    for (name, value) in [
        ("x-total", total.to_string()),
        ("x-total-pages", total_pages.max(1).to_string()),
        ("x-page", page.to_string()),
        ("x-per-page", per_page.to_string()),
        ("x-next-page", next),
        ("x-prev-page", prev),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    r
}

/// GitLab's error body for an injected status (`{"message":"<status> <reason>"}`); 429 adds
/// `Retry-After: 1` as GitLab's rate limiter does.
fn fault_reply(status: u16) -> Reply {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    retry_after_on_429(
        status,
        json_reply(status, &json!({ "message": format!("{status} {reason}") })),
    )
}

fn json_reply(status: u16, body: &Value) -> Reply {
    json_text_reply(status, body.to_string())
}

/// `body` as it is, labelled `application/json` (what GitLab sends, without a charset).
fn json_text_reply(status: u16, body: String) -> Reply {
    reply(status, "application/json", body)
}

/// Grape's Boolean coercion.
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "t" | "yes" => Some(true),
        "false" | "0" | "f" | "no" => Some(false),
        _ => None,
    }
}
