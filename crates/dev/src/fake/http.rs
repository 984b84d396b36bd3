//! The HTTP pieces every fake shares: the bounded connection loop (count, header time,
//! connection lifetime), queued-fault injection, body capping and the small parsers and reply
//! builders. Each fake's own `http.rs` keeps only its routes and how it words its answers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use zeroize::Zeroizing;

use crate::fake::harbor::Fault;
use crate::fake::server::Control;

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

/// What every fake answers with: a whole body in memory.
pub(super) type Reply = Response<Full<Bytes>>;

/// Returned by a service to make hyper drop the connection unanswered ([`Fault::Hangup`]).
#[derive(Debug)]
pub(super) struct Hangup;

impl std::fmt::Display for Hangup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hang up (injected fault)")
    }
}

impl std::error::Error for Hangup {}

/// One fake's request handling: its routes, rules and error wording.
pub(super) trait Service: Send + Sync + 'static {
    /// Answers one request; [`Hangup`] drops the connection instead.
    fn call(&self, req: Request<Incoming>) -> impl Future<Output = Result<Reply, Hangup>> + Send;
}

/// Accepts until `shutdown` fires, each connection under the bounds above.
pub(super) async fn serve<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
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
        let service = Arc::clone(&service);
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let service = Arc::clone(&service);
                async move { service.call(req).await }
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

/// Counts one API call and applies the next queued fault: `Err` for [`Fault::Hangup`],
/// `Ok(Some(reply))` for the two the fake words itself (`malformed` gets the method,
/// `status` the status), and after [`Fault::Slow`]'s wait (capped at [`MAX_SLOW`]) or with
/// no fault `Ok(None)`: answer normally.
pub(super) async fn inject_fault<C>(
    control: &Control<C>,
    method: &Method,
    malformed: impl FnOnce(&Method) -> Reply,
    status: impl FnOnce(u16) -> Reply,
) -> Result<Option<Reply>, Hangup> {
    control.count_api_call();
    match control.next_fault() {
        Some(Fault::Hangup) => Err(Hangup),
        Some(Fault::Malformed) => Ok(Some(malformed(method))),
        Some(Fault::Status(code)) => Ok(Some(status(code))),
        Some(Fault::Slow(d)) => {
            tokio::time::sleep(d.min(MAX_SLOW)).await;
            Ok(None)
        }
        None => Ok(None),
    }
}

/// The success status a vendor answers `method` with: 201 for `POST` (a create), else 200.
/// What a [`Fault::Malformed`] answer claims.
pub(super) fn success_status(method: &Method) -> u16 {
    if method == Method::POST { 201 } else { 200 }
}

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyError {
    /// Not all of it arrived within [`BODY_READ_TIMEOUT`].
    TimedOut,
    /// Larger than the cap, or the stream failed.
    TooLarge,
}

/// The whole body, at most `max_bytes`, within [`BODY_READ_TIMEOUT`].
pub(super) async fn read_body(body: Incoming, max_bytes: usize) -> Result<Bytes, BodyError> {
    let collected =
        tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, max_bytes).collect())
            .await
            .map_err(|_| BodyError::TimedOut)?
            .map_err(|_| BodyError::TooLarge)?;
    Ok(collected.to_bytes())
}

/// A header's value when it is present and visible ASCII.
pub(super) fn header_str(req: &Request<Incoming>, name: impl header::AsHeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `body` with `status` (500 if not a status) and `Content-Type: content_type`.
pub(super) fn reply(status: u16, content_type: &'static str, body: String) -> Reply {
    let mut r = empty_reply(status);
    *r.body_mut() = Full::new(Bytes::from(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// No body and no `Content-Type`, with `status` (500 if not a status).
pub(super) fn empty_reply(status: u16) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

/// Adds `Retry-After: 1` when `status` is 429, as each vendor's rate limiter does.
pub(super) fn retry_after_on_429(status: u16, mut reply: Reply) -> Reply {
    if status == 429 {
        reply
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    reply
}

/// Query parameters, decoded once (as Go's `URL.Query`); the first value wins.
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    pub(super) fn parse(raw: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub(super) fn first(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every (key, value), in order.
    pub(super) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A path segment with `%XX` escapes decoded (a bad escape stays as it is; `+` is kept).
pub(super) fn percent_decode(segment: &str) -> String {
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

/// `Authorization: Basic base64(user:password)` as Go's `Request.BasicAuth` reads it: the
/// scheme is case-insensitive, the user ends at the first `:`.
pub(super) fn parse_basic(header: &str) -> Option<(String, Zeroizing<String>)> {
    use base64::Engine as _;
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?,
    );
    let text = std::str::from_utf8(&decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), Zeroizing::new(password.to_owned())))
}
