//! The connection governor both listeners (the realm's HTTP and the gRPC Exchange listener)
//! run every accepted TCP connection through: a cap on open connections, per source IP caps on
//! open connections and on pending handshakes, a deadline for the first request and an idle
//! timeout.
//!
//! # Decisions
//! - **Past a cap, accept and close at once.** A listener that stops calling `accept` leaves new
//!   clients in the kernel backlog, where an attacker's connections park legitimate clients
//!   for as long as the attacker likes. Accepting and closing costs one syscall pair and keeps
//!   the backlog moving, so a legitimate client behind a flood still gets its turn.
//! - **Requests, not bytes, are activity.** [`GovernedIo`] wraps the TCP stream (below TLS) and
//!   fails its next read, write or flush once the connection has had no request in flight for
//!   too long: the
//!   first-request deadline from accept (it covers the TLS handshake, the HTTP/2 preface and
//!   the first request head), then the idle timeout after the last request ended. Bytes alone
//!   never count, so HTTP/2 keepalive PING acks, SETTINGS or a trickle of header bytes cannot
//!   keep a connection open; only a request the service saw ([`InFlight`]) does.
//! - **Deadlines do not wait for a read.** A client that pipelines requests and never reads the
//!   replies fills the send buffer; the HTTP server then waits on its write and reads nothing
//!   more. So writes and flushes check the deadline too, with the timer armed, and a write that
//!   stays pending for an idle timeout (the peer stopped reading) fails the connection even
//!   while a request is in flight.
//! - **Optional bounds on a request and on a connection's age** ([`ActivityBounds`], the
//!   realm's listener): a request still in flight past its bound closes its connection, which
//!   covers an HTTP/2 client that holds a response by never opening its flow-control window
//!   (the body is then never polled, so a deadline inside it could not fire); past its maximum
//!   age a connection closes as soon as it is idle, and at the latest one request bound later.
//! - **One governor per listener.** Each listener gets its own budget, so a flood on the realm
//!   cannot close the Exchange listener and the other way round.
//! - **IP, not port.** Limits are per source IP address (IPv4-mapped IPv6 folded to IPv4).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Default most open connections per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default most open connections from one source IP address, per listener.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;
/// Default most connections from one source IP address that have not finished their TLS
/// handshake (or, on a plain listener, their first request head).
pub const DEFAULT_MAX_PENDING_HANDSHAKES_PER_IP: usize = 16;
/// Most pending handshakes per listener, over all source addresses.
pub const MAX_PENDING_HANDSHAKES: usize = 256;
/// Default deadline from accept to the first request (TLS handshake, HTTP/2 preface and
/// request head included).
pub const DEFAULT_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection may sit with no request in flight before it is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest `max_connections`.
pub const MAX_MAX_CONNECTIONS: usize = 65_536;
/// Longest first-request deadline, in seconds.
pub const MAX_FIRST_REQUEST_TIMEOUT_SECONDS: u64 = 300;
/// Longest idle timeout, in seconds.
pub const MAX_IDLE_TIMEOUT_SECONDS: u64 = 3600;

/// The caps and timeouts of one listener (`[server]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// Most open connections on the listener; past it a new one is accepted and closed at once.
    pub max_connections: usize,
    /// Most open connections from one source IP address.
    pub max_connections_per_ip: usize,
    /// Most connections from one source IP address still in their handshake.
    pub max_pending_handshakes_per_ip: usize,
    /// Deadline from accept to the first request.
    pub first_request_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_pending_handshakes_per_ip: DEFAULT_MAX_PENDING_HANDSHAKES_PER_IP,
            first_request_timeout: DEFAULT_FIRST_REQUEST_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Why a connection was closed at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The listener has `max_connections` open.
    ListenerFull,
    /// The source address has `max_connections_per_ip` open.
    PeerFull,
    /// The source address has `max_pending_handshakes_per_ip` handshakes in progress.
    PeerHandshakes,
    /// The listener has [`MAX_PENDING_HANDSHAKES`] in progress.
    ListenerHandshakes,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ListenerFull => "max_connections reached",
            Self::PeerFull => "max_connections_per_ip reached",
            Self::PeerHandshakes => "max_pending_handshakes_per_ip reached",
            Self::ListenerHandshakes => "too many pending handshakes",
        })
    }
}

// === impl Governor ===

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    pending: usize,
    per_ip: HashMap<IpAddr, PeerCounts>,
}

#[derive(Debug, Default, Clone, Copy)]
struct PeerCounts {
    open: usize,
    pending: usize,
}

/// Counts one listener's connections against its [`ConnectionLimits`].
#[derive(Debug)]
pub struct Governor {
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
    refused: AtomicU64,
}

impl Governor {
    /// A fresh governor for one listener: nothing counted yet, `limits` fixed for its life.
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counts: Mutex::new(Counts::default()),
            refused: AtomicU64::new(0),
        })
    }

    /// The limits given to [`Self::new`]; they never change.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Connections closed at accept so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.lock().open
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a connection just accepted from `ip` as open and pending its handshake, or says
    /// which cap it would break (the caller closes it at once).
    ///
    /// # Errors
    /// The [`Refusal`].
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refusal> {
        let ip = client_key(ip);
        let mut counts = self.lock();
        let peer = counts.per_ip.get(&ip).copied().unwrap_or_default();
        let refusal = if counts.open >= self.limits.max_connections {
            Some(Refusal::ListenerFull)
        } else if peer.open >= self.limits.max_connections_per_ip {
            Some(Refusal::PeerFull)
        } else if peer.pending >= self.limits.max_pending_handshakes_per_ip {
            Some(Refusal::PeerHandshakes)
        } else if counts.pending >= MAX_PENDING_HANDSHAKES {
            Some(Refusal::ListenerHandshakes)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            drop(counts);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(refusal);
        }
        counts.open += 1;
        counts.pending += 1;
        let entry = counts.per_ip.entry(ip).or_default();
        entry.open += 1;
        entry.pending += 1;
        Ok(Admission {
            governor: Arc::clone(self),
            ip,
            pending: true,
        })
    }

    fn release(&self, ip: IpAddr, open: bool, pending: bool) {
        let mut counts = self.lock();
        counts.open -= usize::from(open);
        counts.pending -= usize::from(pending);
        if let Some(entry) = counts.per_ip.get_mut(&ip) {
            entry.open -= usize::from(open);
            entry.pending -= usize::from(pending);
            if entry.open == 0 && entry.pending == 0 {
                counts.per_ip.remove(&ip);
            }
        }
    }
}

/// The key a client address is counted under, by the connection caps and by the broker's
/// failure budget alike: IPv4 as is (IPv4-mapped IPv6 folded to it), IPv6 by its /64, the
/// smallest block a host is usually given, so rotating addresses within it gains nothing.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !((1u128 << 64) - 1),
        )),
        v4 => v4,
    }
}

/// One admitted connection's place in its [`Governor`]; released on drop.
#[derive(Debug)]
pub struct Admission {
    governor: Arc<Governor>,
    ip: IpAddr,
    pending: bool,
}

impl Admission {
    /// The handshake finished: the connection no longer counts against the pending caps.
    pub fn handshake_done(&mut self) {
        if std::mem::take(&mut self.pending) {
            self.governor.release(self.ip, false, true);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.governor.release(self.ip, true, self.pending);
    }
}

// === impl ConnActivity ===

/// Bounds beyond the idle rules, set per listener with [`GovernedIo::with_bounds`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActivityBounds {
    /// Longest a request may stay in flight (head received to response body sent); past it
    /// the connection is closed.
    pub max_request_duration: Option<Duration>,
    /// Past this age the connection is closed once idle, or one `max_request_duration` later
    /// at the latest.
    pub max_connection_age: Option<Duration>,
}

impl ActivityBounds {
    /// Both bounds.
    pub fn new(max_request_duration: Duration, max_connection_age: Option<Duration>) -> Self {
        Self {
            max_request_duration: Some(max_request_duration),
            max_connection_age,
        }
    }
}

/// A connection's request activity, shared between its IO (which enforces the deadlines) and
/// the service (which marks requests with [`InFlight`]).
#[derive(Debug)]
pub struct ConnActivity {
    born: Instant,
    in_flight: AtomicUsize,
    served: AtomicBool,
    /// Milliseconds from `born` to the end of the last request.
    last_end_ms: AtomicU64,
    /// Start instants of the requests in flight (a multiset), for the oldest one's bound.
    starts: Mutex<BTreeMap<Instant, usize>>,
}

impl ConnActivity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            last_end_ms: AtomicU64::new(0),
            starts: Mutex::new(BTreeMap::new()),
        })
    }

    fn starts(&self) -> std::sync::MutexGuard<'_, BTreeMap<Instant, usize>> {
        self.starts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection must be closed if nothing changes; `None` while a request is in
    /// flight and no bound applies.
    fn deadline(&self, limits: &ConnectionLimits, bounds: &ActivityBounds) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            let oldest = self.starts().keys().next().copied();
            let request = bounds
                .max_request_duration
                .zip(oldest)
                .map(|(limit, start)| start + limit);
            let age = bounds
                .max_connection_age
                .map(|age| self.born + age + bounds.max_request_duration.unwrap_or_default());
            return earliest(request, age);
        }
        let idle = if self.served.load(Ordering::Acquire) {
            let last = Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
            self.born + last + limits.idle_timeout
        } else {
            self.born + limits.first_request_timeout
        };
        let age = bounds.max_connection_age.map(|age| self.born + age);
        earliest(Some(idle), age)
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Marks one request in flight on its connection until dropped (when the response body has
/// been sent or abandoned).
#[derive(Debug)]
pub struct InFlight {
    activity: Arc<ConnActivity>,
    started: Instant,
}

impl InFlight {
    /// Starts a request on `activity`.
    pub fn start(activity: &Arc<ConnActivity>) -> Self {
        let started = Instant::now();
        *activity.starts().entry(started).or_default() += 1;
        activity.served.store(true, Ordering::Release);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self {
            activity: Arc::clone(activity),
            started,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.activity;
        let ms = u64::try_from(activity.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.last_end_ms.fetch_max(ms, Ordering::AcqRel);
        {
            let mut starts = activity.starts();
            if let Some(count) = starts.get_mut(&self.started) {
                *count -= 1;
                if *count == 0 {
                    starts.remove(&self.started);
                }
            }
        }
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

// === impl GovernedIo ===

/// An accepted stream under the governor: holds its [`Admission`] and fails reads, writes and
/// flushes once the connection is past its first-request deadline, idle timeout or
/// [`ActivityBounds`], or once a write has been pending for an idle timeout, so the HTTP server
/// on top drops it.
pub struct GovernedIo<S> {
    inner: S,
    activity: Arc<ConnActivity>,
    limits: ConnectionLimits,
    bounds: ActivityBounds,
    timer: Pin<Box<Sleep>>,
    /// Since when the peer has not taken what we write (a write or flush returned pending).
    write_stalled_since: Option<Instant>,
    admission: Admission,
}

/// Why [`GovernedIo`] closed its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// No request in time, a request or the connection past its bound.
    Activity,
    /// The peer took none of our bytes for an idle timeout.
    WriteStalled,
}

impl Expiry {
    fn error(self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            match self {
                Self::Activity => {
                    "connection closed: no request before the first-request deadline or idle \
                     timeout, or a request or the connection past its bound"
                }
                Self::WriteStalled => {
                    "connection closed: the peer read nothing we sent for server.idle_timeout_seconds"
                }
            },
        )
    }
}

impl<S> GovernedIo<S> {
    /// Wraps a stream just admitted by `governor`.
    pub fn new(inner: S, admission: Admission) -> Self {
        let limits = admission.governor.limits;
        let activity = ConnActivity::new();
        let timer = Box::pin(tokio::time::sleep_until(
            activity.born + limits.first_request_timeout,
        ));
        Self {
            inner,
            activity,
            limits,
            bounds: ActivityBounds::default(),
            timer,
            write_stalled_since: None,
            admission,
        }
    }

    /// Adds `bounds` to the idle rules.
    #[must_use]
    pub fn with_bounds(mut self, bounds: ActivityBounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// The activity record the service marks requests on.
    pub fn activity(&self) -> &Arc<ConnActivity> {
        &self.activity
    }

    /// The handshake finished (see [`Admission::handshake_done`]).
    pub fn handshake_done(&mut self) {
        self.admission.handshake_done();
    }

    /// The wrapped stream (e.g. for its peer address); deadlines apply only to I/O through `self`.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether the connection is past a deadline; arms the timer to wake the task at the next
    /// one otherwise.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<Expiry> {
        // Bounded: each turn either returns or pushes the timer further out; the caller must
        // leave with the timer registered (pending), or nothing would wake it at the deadline.
        let mut slack = Duration::ZERO;
        loop {
            let now = Instant::now();
            let stall = self
                .write_stalled_since
                .map(|since| since + self.limits.idle_timeout);
            if stall.is_some_and(|stall| stall <= now) {
                return Some(Expiry::WriteStalled);
            }
            let activity = self.activity.deadline(&self.limits, &self.bounds);
            if activity.is_some_and(|deadline| deadline <= now) {
                return Some(Expiry::Activity);
            }
            let target = match earliest(stall, activity) {
                Some(deadline) => deadline + slack,
                // With neither (a request in flight, writes flowing) nothing is due: a timer
                // still in the future will wake us to look again, so leave it (re-arming the
                // timer on every read and write of a busy connection costs the timer wheel
                // for nothing); otherwise look again an idle period from now.
                None if self.timer.deadline() > now => self.timer.deadline(),
                None => now + self.limits.idle_timeout + slack,
            };
            if self.timer.deadline() != target {
                self.timer.as_mut().reset(target);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return None;
            }
            // The timer fired a little before our clock reached the deadline: aim later.
            slack += Duration::from_millis(1);
        }
    }
}

impl<S> fmt::Debug for GovernedIo<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GovernedIo")
            .field("peer_ip", &self.admission.ip)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GovernedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(expiry) = self.expired(cx) {
            return Poll::Ready(Err(expiry.error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S> GovernedIo<S> {
    /// Runs one write-side poll under the deadlines: fails once expired, starts the stall clock
    /// when the peer takes nothing, and stops it when bytes move.
    fn governed_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut S, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let Some(expiry) = self.expired(cx) {
            return Poll::Ready(Err(expiry.error()));
        }
        match poll(&mut self.inner, cx) {
            Poll::Pending => {
                if self.write_stalled_since.is_none() {
                    self.write_stalled_since = Some(Instant::now());
                    // Re-arm the timer for the stall deadline.
                    if let Some(expiry) = self.expired(cx) {
                        return Poll::Ready(Err(expiry.error()));
                    }
                }
                Poll::Pending
            }
            Poll::Ready(result) => {
                self.write_stalled_since = None;
                Poll::Ready(result)
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GovernedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.governed_write(cx, |inner, cx| Pin::new(inner).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.governed_write(cx, |inner, cx| {
            Pin::new(inner).poll_write_vectored(cx, bufs)
        })
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.governed_write(cx, |inner, cx| Pin::new(inner).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A shutdown that cannot finish (TLS close_notify to a peer that reads nothing) is
        // bounded by the same stall rule.
        self.governed_write(cx, |inner, cx| Pin::new(inner).poll_shutdown(cx))
    }
}

// === bodies ===

/// A response body that keeps its request [`InFlight`] until the body is done or dropped.
pub struct TrackedBody<B> {
    inner: Pin<Box<B>>,
    _in_flight: Option<InFlight>,
}

impl<B> TrackedBody<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, in_flight: Option<InFlight>) -> Self {
        Self {
            inner: Box::pin(inner),
            _in_flight: in_flight,
        }
    }
}

impl<B> fmt::Debug for TrackedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedBody").finish_non_exhaustive()
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.inner.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails once its read deadline passes (a client trickling a body).
pub struct DeadlineBody<B> {
    inner: Pin<Box<B>>,
    deadline: Pin<Box<Sleep>>,
}

impl<B> DeadlineBody<B> {
    /// `inner`, readable for `timeout` from now.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner: Box::pin(inner),
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl<B> fmt::Debug for DeadlineBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineBody").finish_non_exhaustive()
    }
}

/// The request body was not received within the body read timeout.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within server.body_read_timeout_seconds")]
#[non_exhaustive]
pub struct BodyTimeout;

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = self.inner.as_mut().poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === tower layer (gRPC) ===

/// Where a request finds its connection's [`ConnActivity`].
pub trait HasActivity {
    /// The activity record, if the connection is governed.
    fn activity(&self) -> Option<&Arc<ConnActivity>>;
}

/// Marks every request [`InFlight`] on the connection whose info `I` (a
/// [`tonic::transport::server::Connected::ConnectInfo`]) sits in its extensions.
#[derive(Debug)]
pub struct ActivityLayer<I>(std::marker::PhantomData<fn() -> I>);

impl<I> ActivityLayer<I> {
    /// A stateless layer: each request's connection record is found in its extensions.
    pub fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<I> Default for ActivityLayer<I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I> Clone for ActivityLayer<I> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<S, I> tower::Layer<S> for ActivityLayer<I> {
    type Service = ActivityService<S, I>;

    fn layer(&self, inner: S) -> Self::Service {
        ActivityService {
            inner,
            _info: std::marker::PhantomData,
        }
    }
}

/// See [`ActivityLayer`].
#[derive(Debug)]
pub struct ActivityService<S, I> {
    inner: S,
    _info: std::marker::PhantomData<fn() -> I>,
}

impl<S: Clone, I> Clone for ActivityService<S, I> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _info: std::marker::PhantomData,
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, I, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for ActivityService<S, I>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    I: HasActivity + Send + Sync + 'static,
{
    type Response = http::Response<TrackedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let in_flight = request
            .extensions()
            .get::<I>()
            .and_then(HasActivity::activity)
            .map(InFlight::start);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody::new(body, in_flight)))
        })
    }
}

pub mod fd_limit;

#[cfg(test)]
mod tests;
