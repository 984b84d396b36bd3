//! The fake's HTTP shell: accepts connections with bounds (count, header time, body size and
//! time, connection lifetime), routes `/api/v4` requests, applies queued faults and turns the
//! rules' answers into GitLab's responses. No decision is made here.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};

use super::rules::{ApiError, DeployTokenCreate, Page, Paging, datetime_millis};
use super::{Fault, MAX_BODY_BYTES, REGISTRY_SERVICE, Shared};

/// Connections served at once; further ones wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 128;
/// Time a client has to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request's body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// After this a connection is asked to close (after its current request), then cut
/// [`CLOSE_GRACE`] later.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
const CLOSE_GRACE: Duration = Duration::from_secs(30);
/// Bound on the request head (hyper's buffer).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest [`Fault::Slow`] honoured, so a test cannot park the fake forever.
const MAX_SLOW: Duration = Duration::from_secs(120);
/// `scope` values one registry token request may carry. The fake's bound.
const MAX_SCOPES: usize = 64;

/// Returned by the service to make hyper drop the connection unanswered ([`Fault::Hangup`]).
#[derive(Debug)]
struct Hangup;

impl std::fmt::Display for Hangup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hang up (injected fault)")
    }
}

impl std::error::Error for Hangup {}

type Reply = Response<Full<Bytes>>;

/// Accepts until `shutdown` fires.
pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors and the like: pause rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { handle(&shared, req).await }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                () = tokio::time::sleep(CONNECTION_LIFETIME) => conn.as_mut().graceful_shutdown(),
            }
            let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
        });
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Result<Reply, Hangup> {
    let path = req.uri().path().to_owned();
    if path == "/jwt/auth" {
        return Ok(registry_token(shared, &req));
    }
    if path != "/api/v4" && !path.starts_with("/api/v4/") {
        return Ok(json_reply(404, &json!({ "error": "404 Not Found" })));
    }
    shared.stats().api_calls += 1;
    match shared.next_fault() {
        Some(Fault::Hangup) => return Err(Hangup),
        Some(Fault::Malformed) => {
            let status = if req.method() == Method::POST {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            return Ok(reply(status, "{\"id\":1,\"name\":\"svid".to_owned()));
        }
        Some(Fault::Status(status)) => return Ok(fault_reply(status)),
        Some(Fault::Slow(d)) => tokio::time::sleep(d.min(MAX_SLOW)).await,
        None => {}
    }
    Ok(match api(shared, req, &path).await {
        Ok(reply) => reply,
        Err(e) => json_reply(e.status, &e.body),
    })
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
        let token = req
            .headers()
            .get("private-token")
            .and_then(|v| v.to_str().ok());
        shared.state().authenticate(token)?
    };
    let query = Query::parse(req.uri().query());
    let now = shared.now_unix();
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
            shared.stats().tokens_created += 1;
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
                shared.stats().tokens_revoked += 1;
                Ok(empty_reply(StatusCode::NO_CONTENT))
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
        .0
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .take(MAX_SCOPES + 1)
        .collect();
    if scopes.len() > MAX_SCOPES {
        return json_reply(400, &json!({ "message": "too many scopes" }));
    }
    let Some((username, value)) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_basic)
    else {
        return denied();
    };
    let now = shared.now_unix();
    let Some(access) = shared
        .state()
        .registry_access(&username, &value, &scopes, now)
    else {
        return denied();
    };
    let ttl = i64::try_from(shared.token_ttl.as_secs()).unwrap_or(i64::MAX);
    let access: Vec<Value> = access
        .into_iter()
        .map(|a| json!({ "type": a.kind, "name": a.name, "actions": a.actions }))
        .collect();
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

/// `Authorization: Basic base64(user:password)`.
fn parse_basic(header: &str) -> Option<(String, zeroize::Zeroizing<String>)> {
    use base64::Engine as _;
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?,
    );
    let text = std::str::from_utf8(&decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((
        user.to_owned(),
        zeroize::Zeroizing::new(password.to_owned()),
    ))
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`] within [`BODY_READ_TIMEOUT`]: too large is
/// 413; anything but `application/json` is 415 (GitLab also takes form bodies; the broker
/// sends JSON, so the fake holds it to that); bad JSON is 400.
async fn read_json_body(req: Request<Incoming>) -> Result<Value, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let collected = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY_BYTES).collect(),
    )
    .await
    .map_err(|_| ApiError::message(408, "408 Request Timeout"))?
    .map_err(|_| ApiError::message(413, "413 Request Entity Too Large"))?;
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::message(415, "415 Unsupported Media Type"));
    }
    let bytes = collected.to_bytes();
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
    let mut r = json_reply(status, &json!({ "message": format!("{status} {reason}") }));
    if status == 429 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

fn json_reply(status: u16, body: &Value) -> Reply {
    reply(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body.to_string(),
    )
}

fn reply(status: StatusCode, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn empty_reply(status: StatusCode) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// Query parameters, decoded once; the first value wins.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn first(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Grape's Boolean coercion.
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "t" | "yes" => Some(true),
        "false" | "0" | "f" | "no" => Some(false),
        _ => None,
    }
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = segment
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
