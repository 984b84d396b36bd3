//! The fake's HTTP shell: accepts connections with bounds (count, header time, body size and
//! time, connection lifetime), routes requests, applies queued faults and turns the rules'
//! answers into Harbor's responses. No decision is made here.

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

use super::decode::{RobotCreate, parse_paging};
use super::rules::{ApiError, Paging, datetime};
use super::{Fault, MAX_BODY_BYTES, Shared};

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
/// `scope` values (after splitting on spaces) one token request may carry. The fake's bound.
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
    if path == "/api/v2.0" || path.starts_with("/api/v2.0/") {
        shared.stats().api_calls += 1;
        match shared.next_fault() {
            Some(Fault::Hangup) => return Err(Hangup),
            Some(Fault::Malformed) => {
                let status = if req.method() == Method::POST {
                    201
                } else {
                    200
                };
                return Ok(json_reply(status, "{\"id\":1,\"name\":\"robot$".to_owned()));
            }
            Some(Fault::Status(status)) => return Ok(fault_reply(status)),
            Some(Fault::Slow(d)) => tokio::time::sleep(d.min(MAX_SLOW)).await,
            None => {}
        }
        return Ok(match api(shared, req, &path).await {
            Ok(reply) => reply,
            Err(e) => error_reply(&e),
        });
    }
    if path == "/service/token" {
        return Ok(token(shared, &req));
    }
    Ok(text_reply(404, "404 page not found\n"))
}

/// Routes `/api/v2.0/...`.
async fn api(shared: &Shared, req: Request<Incoming>, path: &str) -> Result<Reply, ApiError> {
    let rest = path.trim_start_matches("/api/v2.0").trim_end_matches('/');
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let query = Query::parse(req.uri().query());
    let now = shared.now_unix();
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let who = shared.state().authenticate(authorization.as_deref(), now);
    let method = req.method().clone();
    match (segments.as_slice(), &method) {
        (["projects"], &Method::GET) => {
            let paging = parse_paging(query.first("page"), query.first("page_size"))?;
            let public = match query.first("public") {
                None => None,
                Some(v) => Some(parse_bool(v).ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "public in query must be of type boolean: \"{v}\""
                    ))
                })?),
            };
            let (page, total) =
                shared
                    .state()
                    .list_projects(who, query.first("name"), public, paging);
            Ok(list_reply(page, total, path, &query, paging))
        }
        (["projects", name_or_id], &Method::GET) => {
            let name_or_id = percent_decode(name_or_id);
            let is_name = match req
                .headers()
                .get("X-Is-Resource-Name")
                .map(HeaderValue::to_str)
            {
                None => false,
                Some(Ok(v)) => parse_bool(v).ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "X-Is-Resource-Name in header must be of type boolean: \"{v}\""
                    ))
                })?,
                Some(Err(_)) => {
                    return Err(ApiError::unprocessable(
                        "X-Is-Resource-Name in header must be of type boolean",
                    ));
                }
            };
            let project = shared.state().get_project(who, &name_or_id, is_name)?;
            Ok(json_reply(200, project.to_string()))
        }
        (["robots"], &Method::GET) => {
            let paging = parse_paging(query.first("page"), query.first("page_size"))?;
            let (page, total) =
                shared
                    .state()
                    .list_robots(who, query.first("q"), query.first("sort"), paging)?;
            Ok(list_reply(page, total, path, &query, paging))
        }
        (["robots"], &Method::POST) => {
            let body = read_json_body(req).await?;
            let robot = RobotCreate::from_json(&body)?;
            let created = shared.state().create_robot(who, &robot, now)?;
            shared.stats().robots_created += 1;
            let location = format!("{}/{}", path.trim_end_matches('/'), created.id);
            let payload = json!({
                "id": created.id,
                "name": created.name,
                "secret": created.secret.as_str(),
                "creation_time": datetime(created.creation_time),
                "expires_at": created.expires_at,
            });
            let mut reply = json_reply(201, payload.to_string());
            if let Ok(v) = HeaderValue::from_str(&location) {
                reply.headers_mut().insert(header::LOCATION, v);
            }
            Ok(reply)
        }
        (["robots", id], &Method::GET | &Method::DELETE) => {
            let id = id.parse::<i64>().map_err(|_| {
                ApiError::unprocessable(format!("robot_id in path must be of type int64: \"{id}\""))
            })?;
            if method == Method::GET {
                let robot = shared.state().get_robot(who, id)?;
                Ok(json_reply(200, robot.to_string()))
            } else {
                shared.state().delete_robot(who, id)?;
                shared.stats().robots_deleted += 1;
                Ok(empty_reply(200))
            }
        }
        (["projects"] | ["projects", _] | ["robots"] | ["robots", _], _) => Err(ApiError::new(
            405,
            "METHOD_NOT_ALLOWED",
            format!("method {method} is not allowed, but [GET] are"),
        )),
        _ => Err(ApiError::not_found(format!("path {path} was not found"))),
    }
}

/// `GET /service/token` (`src/core/service/token/token.go`): an unknown `service` is 400 with
/// a plain-text message, an anonymous caller without a scope 401 with an empty body, anyone
/// else 200 with a token.
fn token(shared: &Shared, req: &Request<Incoming>) -> Reply {
    if req.method() != Method::GET {
        return text_reply(405, "Method Not Allowed\n");
    }
    let query = Query::parse(req.uri().query());
    let service = query.first("service").unwrap_or("");
    if service != shared.service {
        return text_reply(
            400,
            &format!("Unable to handle service: {}", html_escape(service)),
        );
    }
    let scopes: Vec<String> = query
        .all("scope")
        .flat_map(|s| s.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    if scopes.len() > MAX_SCOPES {
        return text_reply(400, "too many scopes\n");
    }
    let now = shared.now();
    let now_unix = shared.now_unix();
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let grant = {
        let state = shared.state();
        let who = state.authenticate(authorization, now_unix);
        state.token_access(who, &scopes)
    };
    let Some((subject, access)) = grant else {
        return empty_reply(401);
    };
    let ttl = i64::try_from(shared.token_ttl.as_secs()).unwrap_or(i64::MAX);
    let access = access.map(|list| {
        list.into_iter()
            .map(|a| json!({ "type": a.kind, "name": a.name, "actions": a.actions }))
            .collect::<Vec<_>>()
    });
    let Some(jti) = random_jti() else {
        return text_reply(500, "");
    };
    let claims = json!({
        "iss": shared.issuer,
        "sub": subject,
        // Harbor sets `MarshalSingleStringAsArray = false`, so `aud` is a string, the only form
        // distribution 2.8 parses (`src/pkg/token/claims/v2/claims.go`).
        "aud": shared.service,
        "exp": now_unix.saturating_add(ttl),
        "nbf": now_unix,
        "iat": now_unix,
        "jti": jti,
        "access": access,
    });
    let Ok(token) = shared.signer.sign(&claims) else {
        return text_reply(500, "");
    };
    // `models.Token` (`src/common/models/token.go`): Harbor never fills `access_token`.
    let body = json!({
        "token": token,
        "access_token": "",
        "expires_in": ttl,
        "issued_at": svid_broker_identity::clock::Rfc3339(now).to_string(),
    });
    json_reply(200, body.to_string())
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`] within [`BODY_READ_TIMEOUT`] the way
/// go-openapi binds it: too large is 413; an empty body is 422 "required" whatever its type;
/// a non-empty one must be `application/json` (415, a missing type counting as
/// `application/octet-stream`) and parse (400).
async fn read_json_body(req: Request<Incoming>) -> Result<Value, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let too_large = || ApiError::new(413, "REQUEST_ENTITY_TOO_LARGE", "request entity too large");
    let collected = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY_BYTES).collect(),
    )
    .await
    .map_err(|_| ApiError::bad_request("timed out reading the request body"))?
    .map_err(|_| too_large())?;
    let bytes = collected.to_bytes();
    if bytes.is_empty() {
        return Err(ApiError::unprocessable("robot in body is required"));
    }
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("unsupported media type {content_type:?}, only [application/json] are allowed"),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::unprocessable("robot in body is required"));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!("parsing robot body from \"\" failed, because {e}"))
    })
}

/// A list with `X-Total-Count` and Harbor's `Link` header (`src/server/v2.0/handler/base.go`).
fn list_reply(items: Vec<Value>, total: usize, path: &str, query: &Query, paging: Paging) -> Reply {
    let mut reply = json_reply(200, Value::Array(items).to_string());
    reply
        .headers_mut()
        .insert("X-Total-Count", HeaderValue::from(total as u64));
    let total = i64::try_from(total).unwrap_or(i64::MAX);
    let Paging { page, page_size } = paging;
    let mut links = Vec::new();
    if page_size > 0 {
        if page > 1 && (page - 1).saturating_mul(page_size) < total {
            links.push(format!(
                "<{}>; rel=\"prev\"",
                query.with_page(path, page - 1, page_size)
            ));
        }
        if page_size.saturating_mul(page) < total {
            links.push(format!(
                "<{}>; rel=\"next\"",
                query.with_page(path, page + 1, page_size)
            ));
        }
    }
    if !links.is_empty()
        && let Ok(v) = HeaderValue::from_str(&links.join(" , "))
    {
        reply.headers_mut().insert(header::LINK, v);
    }
    reply
}

fn fault_reply(status: u16) -> Reply {
    let e = match status {
        401 => ApiError::unauthorized(),
        403 => ApiError::forbidden("forbidden"),
        404 => ApiError::not_found("resource not found"),
        409 => ApiError::new(409, "CONFLICT", "resource conflict"),
        429 => ApiError::new(429, "TOO_MANY_REQUEST", "too many requests"),
        s if s >= 500 => ApiError::new(s, "UNKNOWN", "internal server error"),
        s => ApiError::new(s, "BAD_REQUEST", "bad request"),
    };
    let mut reply = error_reply(&e);
    if status == 429 {
        reply
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    reply
}

/// Harbor's error body; `SendError` sets no other header (`src/lib/http/error.go`).
fn error_reply(e: &ApiError) -> Reply {
    json_reply(e.status, e.body())
}

fn json_reply(status: u16, body: String) -> Reply {
    reply(status, "application/json; charset=utf-8", body)
}

fn text_reply(status: u16, body: &str) -> Reply {
    reply(status, "text/plain; charset=utf-8", body.to_owned())
}

fn empty_reply(status: u16) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

fn reply(status: u16, content_type: &'static str, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Query parameters, decoded once (as Go's `URL.Query`); the first value wins.
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

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// This query with `page` and `page_size` set, for `Link`.
    fn with_page(&self, path: &str, page: i64, page_size: i64) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            if k != "page" && k != "page_size" {
                out.append_pair(k, v);
            }
        }
        out.append_pair("page", &page.to_string());
        out.append_pair("page_size", &page_size.to_string());
        format!("{path}?{}", out.finish())
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
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

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// 16 random characters, as `GenerateRandomStringWithLen(16)` makes the `jti`.
fn random_jti() -> Option<String> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(
        bytes
            .iter()
            .map(|b| char::from(CHARS[usize::from(*b) % CHARS.len()]))
            .collect(),
    )
}
