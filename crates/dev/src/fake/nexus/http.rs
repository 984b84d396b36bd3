//! The fake's HTTP shell: accepts connections with bounds (count, header time, body size and
//! time, connection lifetime), routes `/service/rest/v1/security/users`, applies queued faults
//! and turns the rules' answers into Nexus's responses. No decision is made here.

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

use super::rules::{ApiError, UsersAction, decode_new_user};
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
/// Nexus's Basic realm (`WWW-Authenticate` of a 401).
const REALM: &str = "BASIC realm=\"Sonatype Nexus Repository Manager\"";
/// Where the REST API lives; faults and call counts apply below it.
const REST_ROOT: &str = "/service/rest";
const USERS: &str = "/service/rest/v1/security/users";

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
    if path != REST_ROOT && !path.starts_with("/service/rest/") {
        return Ok(text_reply(404, ""));
    }
    shared.stats().api_calls += 1;
    match shared.next_fault() {
        Some(Fault::Hangup) => return Err(Hangup),
        Some(Fault::Malformed) => {
            let body = if req.method() == Method::POST {
                "{\"userId\":\""
            } else {
                "[{\"userId\":"
            };
            return Ok(json_reply(200, body.to_owned()));
        }
        Some(Fault::Status(status)) => return Ok(fault_reply(status)),
        Some(Fault::Slow(d)) => tokio::time::sleep(d.min(MAX_SLOW)).await,
        None => {}
    }
    Ok(match users_api(shared, req, &path).await {
        Ok(reply) => reply,
        Err(e) => error_reply(&e),
    })
}

/// Routes the users API; anything else under `/service/rest` is 404.
async fn users_api(shared: &Shared, req: Request<Incoming>, path: &str) -> Result<Reply, ApiError> {
    let Some(rest) = path.strip_prefix(USERS) else {
        return Err(ApiError::NotFound);
    };
    let rest = rest.trim_start_matches('/');
    let target: Option<String> = (!rest.is_empty()).then(|| percent_decode(rest));
    if target.as_deref().is_some_and(|t| t.contains('/')) {
        return Err(ApiError::NotFound);
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Authentication comes first: an anonymous or bad caller gets 401 whatever it asks.
    let who = shared.state().authenticate(authorization.as_deref())?;
    let method = req.method().clone();
    match (target, &method) {
        (None, &Method::GET) => {
            shared.state().require(&who, UsersAction::Read)?;
            let query = Query::parse(req.uri().query());
            let listed = shared
                .state()
                .list_users(query.first("userId"), query.first("source"));
            Ok(json_reply(200, Value::Array(listed).to_string()))
        }
        (None, &Method::POST) => {
            shared.state().require(&who, UsersAction::Create)?;
            let body = read_json_body(req).await?;
            let new = decode_new_user(&body)?;
            let now = shared.now_unix();
            let answer = shared.state().create_user(new, now)?;
            shared.stats().users_created += 1;
            Ok(json_reply(200, answer.to_string()))
        }
        (Some(user), &Method::DELETE) => {
            shared.state().require(&who, UsersAction::Delete)?;
            shared.state().delete_user(&user)?;
            shared.stats().users_deleted += 1;
            Ok(empty_reply(204))
        }
        _ => Ok(empty_reply(405)),
    }
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`] within [`BODY_READ_TIMEOUT`]: too large is
/// 413; a body that is not JSON is Jackson's 400.
async fn read_json_body(req: Request<Incoming>) -> Result<Value, ApiError> {
    let collected = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY_BYTES).collect(),
    )
    .await
    .map_err(|_| ApiError::Validation(vec![("*".to_owned(), "body read timed out".to_owned())]))?
    .map_err(|_| ApiError::TooLarge)?;
    let bytes = collected.to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::Validation(vec![("*".to_owned(), format!("Unexpected character: {e}"))])
    })
}

fn fault_reply(status: u16) -> Reply {
    let mut reply = match status {
        401 => error_reply(&ApiError::Unauthorized),
        403 => error_reply(&ApiError::Forbidden),
        404 => error_reply(&ApiError::NotFound),
        s if s >= 500 => text_reply(
            s,
            "ERROR: (ID 00000000-0000-0000-0000-000000000000) injected",
        ),
        s => {
            let body = json!([{ "id": "*", "message": "injected fault" }]);
            json_reply(s, body.to_string())
        }
    };
    if status == 429 {
        reply
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    reply
}

fn error_reply(e: &ApiError) -> Reply {
    match e {
        ApiError::Unauthorized => {
            let mut r = empty_reply(401);
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
            r
        }
        ApiError::Forbidden => empty_reply(403),
        ApiError::NotFound => empty_reply(404),
        ApiError::TooLarge => empty_reply(413),
        ApiError::Validation(errors) => {
            let list: Vec<Value> = errors
                .iter()
                .map(|(id, message)| json!({ "id": id, "message": message }))
                .collect();
            json_reply(400, Value::Array(list).to_string())
        }
        ApiError::Unexpected(what) => text_reply(
            500,
            &format!("ERROR: (ID 00000000-0000-0000-0000-000000000000) {what}"),
        ),
    }
}

fn json_reply(status: u16, body: String) -> Reply {
    reply(status, "application/json", body)
}

fn text_reply(status: u16, body: &str) -> Reply {
    reply(status, "text/plain", body.to_owned())
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
