//! The realm's HTTP listener: hyper serving the realm's axum router, plain or over TLS
//! (`[server.tls]`), every connection under the listener's [`Governor`].
//!
//! # Decisions
//! - **hyper directly, not `axum::serve`.** `axum::serve` runs hyper without a timer, so its
//!   header read timeout is off, and it has no connection caps. Here: a header read timeout, a
//!   body read timeout ([`DeadlineBody`]), a head buffer cap ([`MAX_HEAD_BYTES`]), and the
//!   governor's caps, first-request deadline and idle timeout.
//! - **HTTP/1.1 only unless `server.h2c`.** Registries' clients speak HTTP/1.1 to a token
//!   realm; HTTP/2 (prior knowledge on a plain listener, ALPN `h2` over TLS) is one more parser
//!   for an attacker and is off by default.
//! - **Every request and (with `h2c`) every connection has a bound.** A request in flight
//!   longer than [`max_request_duration`] (the body read timeout plus
//!   [`RESPONSE_SEND_TIMEOUT`]) closes its connection: an HTTP/2 client that never opens its
//!   flow-control window would otherwise hold a response, and its connection, for good. With
//!   `h2c`, HTTP/2 keepalive pings drop a peer that stopped answering and
//!   [`H2_MAX_CONNECTION_AGE`] retires a connection once idle.
//! - **`ConnectInfo<SocketAddr>` is inserted per request**, as
//!   `into_make_service_with_connect_info` did, so the realm's handlers see the peer.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::listen::{
    ActivityBounds, ConnActivity, ConnectionLimits, DeadlineBody, GovernedIo, Governor, InFlight,
    TrackedBody,
};

/// Largest request head (request line and headers) buffered, in bytes; past it the
/// connection gets `431` and is closed.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Default longest a client may take to send a request head once it started one.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default longest a client may take to send a request body, from the request's start.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest TLS handshake on the HTTPS listener.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most concurrent HTTP/2 streams per connection when `h2c` is on.
pub const MAX_H2_STREAMS: u32 = 64;
/// Longest time, after the body read timeout, a request may take to be answered and its
/// response sent (see [`max_request_duration`]).
pub const RESPONSE_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// With `h2c`: how often an HTTP/2 connection is pinged.
pub const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// With `h2c`: how long a ping may go unanswered before the connection is closed.
pub const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// With `h2c`: past this age a connection is closed once idle (or one
/// [`max_request_duration`] later at the latest).
pub const H2_MAX_CONNECTION_AGE: Duration = Duration::from_secs(30 * 60);
/// Longest header and body read timeouts, in seconds.
pub const MAX_READ_TIMEOUT_SECONDS: u64 = 300;

/// How the realm listener serves (`[server]` in the configuration).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpListenerOptions {
    /// Connection caps and timeouts.
    pub limits: ConnectionLimits,
    /// Header read timeout.
    pub header_read_timeout: Duration,
    /// Body read timeout.
    pub body_read_timeout: Duration,
    /// Longest a response may take after the body read timeout (see
    /// [`max_request_duration`]); [`RESPONSE_SEND_TIMEOUT`] unless a test shortens it.
    pub response_send_timeout: Duration,
    /// Whether HTTP/2 is served (prior knowledge on plain TCP, ALPN `h2` over TLS).
    pub h2c: bool,
    /// The HTTPS configuration; `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for HttpListenerOptions {
    fn default() -> Self {
        Self {
            limits: ConnectionLimits::default(),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            response_send_timeout: RESPONSE_SEND_TIMEOUT,
            h2c: false,
            tls: None,
        }
    }
}

/// Longest a realm request may stay in flight, from its head to the end of its response body:
/// the body read timeout plus the response send timeout ([`RESPONSE_SEND_TIMEOUT`]).
pub fn max_request_duration(options: &HttpListenerOptions) -> Duration {
    options.body_read_timeout + options.response_send_timeout
}

fn activity_bounds(options: &HttpListenerOptions) -> ActivityBounds {
    ActivityBounds::new(
        max_request_duration(options),
        options.h2c.then_some(H2_MAX_CONNECTION_AGE),
    )
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// open connections to finish their requests (the caller bounds the wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: HttpListenerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    serve_governed(
        listener,
        router,
        Governor::new(options.limits),
        options,
        shutdown,
    )
    .await;
}

/// [`serve`] under `governor` (tests read its counters).
pub async fn serve_governed(
    listener: TcpListener,
    router: Router,
    governor: Arc<Governor>,
    options: HttpListenerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let builder = Arc::new(builder(&options));
    let bounds = activity_bounds(&options);
    let acceptor = options.tls.clone().map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // ECONNABORTED and EMFILE both land here; a pause keeps the latter from spinning.
                tracing::warn!(%error, "http: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admission = match governor.admit(peer.ip()) {
            Ok(admission) => admission,
            Err(refusal) => {
                // Closed at once; debug level so a flood is not a log flood.
                tracing::debug!(%peer, %refusal, "http: connection refused");
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let io = GovernedIo::new(tcp, admission).with_bounds(bounds);
        let connection = Connection {
            builder: Arc::clone(&builder),
            router: router.clone(),
            body_read_timeout: options.body_read_timeout,
            peer,
        };
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => connection.serve_plain(io, watcher).await,
                Some(acceptor) => connection.serve_tls(io, acceptor, watcher).await,
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

fn builder(options: &HttpListenerOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_H2_STREAMS)
        .max_header_list_size(u32::try_from(MAX_HEAD_BYTES).unwrap_or(u32::MAX))
        .max_send_buf_size(MAX_HEAD_BYTES)
        .keep_alive_interval(Some(H2_KEEPALIVE_INTERVAL))
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT);
    if options.h2c {
        builder
    } else {
        builder.http1_only()
    }
}

struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    body_read_timeout: Duration,
    peer: SocketAddr,
}

impl Connection {
    async fn serve_plain(
        self,
        mut io: GovernedIo<TcpStream>,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        // No handshake on a plain listener: the header read timeout and the first-request
        // deadline bound the head instead.
        io.handshake_done();
        let activity = Arc::clone(io.activity());
        self.serve_io(TokioIo::new(io), activity, watcher).await;
    }

    async fn serve_tls(
        self,
        io: GovernedIo<TcpStream>,
        acceptor: TlsAcceptor,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let activity = Arc::clone(io.activity());
        let peer = self.peer;
        let mut stream =
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "http: tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "http: tls handshake timed out");
                    return;
                }
            };
        stream.get_mut().0.handshake_done();
        self.serve_io(TokioIo::new(stream), activity, watcher).await;
    }

    async fn serve_io<I>(
        self,
        io: TokioIo<I>,
        activity: Arc<ConnActivity>,
        watcher: hyper_util::server::graceful::Watcher,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            builder,
            router,
            body_read_timeout,
            peer,
        } = self;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = InFlight::start(&activity);
            let mut request = request.map(|body| DeadlineBody::new(body, body_read_timeout));
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let response = match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, Some(in_flight))))
            }
        });
        let connection = builder.serve_connection(io, service);
        if let Err(error) = watcher.watch(connection).await {
            tracing::debug!(%peer, error = %svid_broker_identity::report::ErrorChain::new(&*error), "http: connection ended with an error");
        }
    }
}

#[cfg(test)]
mod tests;
