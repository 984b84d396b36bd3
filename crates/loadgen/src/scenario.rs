//! The three ways to exchange an SVID for a registry token, and the two load phases: closed
//! loop (each worker sends its next request as soon as the last answered: the peak rate) and
//! open loop (requests leave on a fixed schedule: latency at a given rate).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use svid_broker_client::transport::{client_tls_config, exchange_client, with_bearer};
use svid_broker_dev::DevTrustDomain;
use svid_broker_dev::ExposeSecret as _;
use svid_broker_identity::authorize::Authorizer;
use svid_broker_identity::bundle::BundleProvider;
use svid_broker_server::grpc::proto::token_exchange_client::TokenExchangeClient;
use svid_broker_server::grpc::proto::{ExchangeRequest, TokenType};
use tokio::sync::Mutex;
use tonic::transport::Channel;

use crate::LoadgenError;
use crate::broker::{AUDIENCE, BROKER_ID, CLIENT_ID, SCOPE, SERVICE, id};
use crate::pace;
use crate::stats::Samples;
use svid_broker_identity::report::ErrorChain;

/// How long one request may take before it counts as failed ([`CallError::Timeout`]).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest realm response body read, in bytes; a larger one fails the request.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// One way to get a registry token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// gRPC `Exchange`, the caller authenticated by its X.509-SVID over mTLS.
    GrpcMtls,
    /// gRPC `Exchange` over TLS without a client certificate, `authorization: Bearer
    /// <JWT-SVID>`; each worker presents its one JWT-SVID again and again (warm).
    GrpcBearer,
    /// The HTTP realm, `GET /token` with Basic credentials whose password is a JWT-SVID; each
    /// worker presents its one JWT-SVID again and again (warm).
    Realm,
    /// The realm with Basic credentials whose password is a broker login credential (obtained
    /// once per worker over gRPC), presented again and again (warm).
    RealmLogin,
    /// As [`Kind::GrpcBearer`], but every request presents a JWT-SVID never presented before
    /// (pre-minted before the scenario): cold.
    GrpcBearerCold,
    /// As [`Kind::Realm`], but every request presents a JWT-SVID never presented before: cold.
    RealmCold,
}

impl Kind {
    /// Every scenario, in report order.
    pub const ALL: [Kind; 6] = [
        Kind::GrpcMtls,
        Kind::GrpcBearerCold,
        Kind::RealmCold,
        Kind::GrpcBearer,
        Kind::Realm,
        Kind::RealmLogin,
    ];

    /// Short label for the report.
    pub fn label(self) -> &'static str {
        match self {
            Kind::GrpcMtls => "gRPC, mTLS (X.509-SVID)",
            Kind::GrpcBearer => "gRPC, JWT-SVID bearer, warm",
            Kind::Realm => "HTTP realm, GET /token (Basic JWT-SVID), warm",
            Kind::RealmLogin => "HTTP realm, GET /token (Basic login credential), warm",
            Kind::GrpcBearerCold => "gRPC, JWT-SVID bearer, cold",
            Kind::RealmCold => "HTTP realm, GET /token (Basic JWT-SVID), cold",
        }
    }

    /// Whether every request presents a new JWT-SVID (from a [`TokenPool`]).
    pub fn is_cold(self) -> bool {
        matches!(self, Kind::GrpcBearerCold | Kind::RealmCold)
    }

    /// The goal for exchanges per broker core, as a share of the crypto floor: a cold
    /// exchange pays the whole floor (at least 0.6x), a warm one only the token signature (at
    /// least 2x); mTLS keeps the first milestone's 0.5x.
    pub fn floor_goal(self) -> f64 {
        match self {
            Kind::GrpcMtls => 0.5,
            Kind::GrpcBearerCold | Kind::RealmCold => 0.6,
            Kind::GrpcBearer | Kind::Realm | Kind::RealmLogin => 2.0,
        }
    }
}

/// Credentials minted before a cold scenario, each handed out once: the JWT-SVID itself
/// (bearer) or the whole `Basic` header value (realm), so the phase spends nothing on minting.
pub struct TokenPool {
    items: Vec<String>,
    next: AtomicU64,
}

impl std::fmt::Debug for TokenPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPool")
            .field("len", &self.items.len())
            .field("remaining", &self.remaining())
            .finish_non_exhaustive()
    }
}

impl TokenPool {
    /// Mints `n` JWT-SVIDs for the load generator's identity, each distinct (ECDSA signatures
    /// are randomized, so even tokens minted in the same second differ), shaped for `kind`.
    ///
    /// # Errors
    /// [`LoadgenError::Setup`] if minting fails.
    pub fn mint(td: &DevTrustDomain, kind: Kind, n: usize) -> Result<Self, LoadgenError> {
        let me = id(CLIENT_ID)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            let svid = td
                .issue_jwt_svid(&me, &[AUDIENCE])
                .map_err(|e| LoadgenError::Setup {
                    what: "jwt-svid",
                    reason: ErrorChain::new(&e).to_string(),
                })?;
            let jwt = svid.token().expose_secret();
            items.push(match kind {
                Kind::RealmCold => {
                    format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:{jwt}")))
                }
                _ => jwt.to_owned(),
            });
        }
        Ok(Self {
            items,
            next: AtomicU64::new(0),
        })
    }

    /// Tokens not yet handed out (0 once the pool is used up).
    pub fn remaining(&self) -> u64 {
        (self.items.len() as u64).saturating_sub(self.next.load(Ordering::Relaxed))
    }

    fn take(&self) -> Option<&str> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.items.get(usize::try_from(i).ok()?).map(String::as_str)
    }
}

/// Why one request failed (never holds a token).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The gRPC call returned a status.
    #[error("grpc status {code:?}: {message}")]
    Status {
        /// The status code the broker answered.
        code: tonic::Code,
        /// The broker's status message as sent (its client-facing reason, no token).
        message: String,
    },
    /// The realm answered with a status other than 200.
    #[error("realm answered http {status}")]
    HttpStatus {
        /// The HTTP status the realm answered (not 200).
        status: u16,
    },
    /// Connection or protocol failure.
    #[error("transport: {reason}")]
    Transport {
        /// What failed, on one line (connecting, TLS, HTTP, decoding the answer, or a worker task);
        /// no token.
        reason: String,
    },
    /// The answer held no token.
    #[error("response has no token")]
    NoToken,
    /// No answer within [`REQUEST_TIMEOUT`].
    #[error("no response within {timeout:?}")]
    Timeout {
        /// Always [`REQUEST_TIMEOUT`].
        timeout: Duration,
    },
    /// A cold scenario used up its pre-minted tokens (the phase budget should prevent it).
    #[error("the pre-minted token pool is used up")]
    PoolExhausted,
}

fn transport(e: &dyn std::error::Error) -> CallError {
    CallError::Transport {
        reason: ErrorChain::new(e).to_string(),
    }
}

/// One connection's worth of client: a gRPC channel (its own TCP + TLS connection) or an
/// HTTP/1.1 keep-alive connection to the realm.
pub struct Client {
    inner: Inner,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            Inner::Grpc { .. } => "grpc",
            Inner::Realm { .. } => "realm",
        };
        f.debug_struct("Client")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

enum Inner {
    Grpc {
        client: TokenExchangeClient<Channel>,
        bearer: Option<String>,
        pool: Option<Arc<TokenPool>>,
        request: ExchangeRequest,
    },
    Realm {
        addr: SocketAddr,
        sender: Option<SendRequest<Empty<Bytes>>>,
        uri: String,
        authorization: http::HeaderValue,
        pool: Option<Arc<TokenPool>>,
    },
}

/// What a scenario's clients need: where the broker is and who to be.
#[derive(Debug, Clone)]
pub struct Target {
    /// The dev trust domain the broker trusts; each client's SVIDs are issued from it.
    pub td: Arc<DevTrustDomain>,
    /// The broker's HTTP realm listener, on 127.0.0.1.
    pub http_addr: SocketAddr,
    /// The broker's gRPC listener, on 127.0.0.1.
    pub grpc_addr: SocketAddr,
}

impl Client {
    /// Connects one client for `kind`.
    ///
    /// # Errors
    /// [`LoadgenError::Setup`] if the identity cannot be issued or the connection fails.
    pub async fn connect(kind: Kind, target: &Target) -> Result<Client, LoadgenError> {
        Self::connect_with(kind, target, None).await
    }

    /// Connects one client for `kind`; a cold kind takes each request's token from `pool`.
    ///
    /// # Errors
    /// [`LoadgenError::Setup`] if the identity cannot be issued, the connection fails, or a
    /// cold kind has no pool.
    pub async fn connect_with(
        kind: Kind,
        target: &Target,
        pool: Option<Arc<TokenPool>>,
    ) -> Result<Client, LoadgenError> {
        if kind.is_cold() && pool.is_none() {
            return Err(LoadgenError::Setup {
                what: "token pool",
                reason: "a cold scenario needs pre-minted tokens".to_owned(),
            });
        }
        let fail = |what: &'static str| {
            move |e: &dyn std::error::Error| LoadgenError::Setup {
                what,
                reason: ErrorChain::new(e).to_string(),
            }
        };
        let me = id(CLIENT_ID)?;
        let jwt = || -> Result<String, LoadgenError> {
            let svid = target
                .td
                .issue_jwt_svid(&me, &[AUDIENCE])
                .map_err(|e| fail("jwt-svid")(&e))?;
            Ok(svid.token().expose_secret().to_owned())
        };
        let request = ExchangeRequest {
            requested_token_type: TokenType::RegistryAccessToken.into(),
            audience: SERVICE.to_owned(),
            scope: vec![SCOPE.to_owned()],
            ..Default::default()
        };
        let inner = match kind {
            Kind::GrpcMtls | Kind::GrpcBearer | Kind::GrpcBearerCold => {
                let bundles: Arc<dyn BundleProvider> = Arc::new(Arc::new(
                    target.td.bundle_set().map_err(|e| fail("bundle")(&e))?,
                ));
                let (identity, bearer) = if kind == Kind::GrpcMtls {
                    let svid = target.td.x509_svid(&me).ok_or(LoadgenError::Setup {
                        what: "x509-svid",
                        reason: CLIENT_ID.to_owned(),
                    })?;
                    let pair = (svid.chain().to_vec(), svid.private_key().to_rustls());
                    (Some(pair), None)
                } else if kind == Kind::GrpcBearer {
                    (None, Some(jwt()?))
                } else {
                    (None, None)
                };
                let tls = client_tls_config(bundles, Authorizer::Exact(id(BROKER_ID)?), identity)
                    .map_err(|e| fail("client tls")(&e))?;
                let client = exchange_client(target.grpc_addr, tls)
                    .await
                    .map_err(|e| fail("grpc connect")(&e))?;
                Inner::Grpc {
                    client,
                    bearer,
                    pool,
                    request,
                }
            }
            Kind::Realm | Kind::RealmLogin | Kind::RealmCold => {
                let password = match kind {
                    Kind::RealmLogin => login_credential(target, jwt()?).await?,
                    _ => jwt()?,
                };
                let basic = STANDARD.encode(format!("{CLIENT_ID}:{password}"));
                let authorization = http::HeaderValue::try_from(format!("Basic {basic}"))
                    .map_err(|e| fail("authorization header")(&e))?;
                let query: String = form_query(&[
                    ("service", SERVICE),
                    ("scope", SCOPE),
                    ("account", CLIENT_ID),
                ]);
                let sender = http1_connect(target.http_addr)
                    .await
                    .map_err(|e| fail("realm connect")(&e))?;
                Inner::Realm {
                    addr: target.http_addr,
                    sender: Some(sender),
                    uri: format!("/token?{query}"),
                    authorization,
                    pool,
                }
            }
        };
        Ok(Client { inner })
    }

    /// One exchange; returns the registry token.
    ///
    /// # Errors
    /// A [`CallError`] saying how the request failed.
    pub async fn call(&mut self) -> Result<String, CallError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.call_inner()).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout {
                timeout: REQUEST_TIMEOUT,
            }),
        }
    }

    async fn call_inner(&mut self) -> Result<String, CallError> {
        match &mut self.inner {
            Inner::Grpc {
                client,
                bearer,
                pool,
                request,
            } => {
                let message = request.clone();
                let jwt = match pool {
                    Some(pool) => Some(pool.take().ok_or(CallError::PoolExhausted)?),
                    None => bearer.as_deref(),
                };
                let request = match jwt {
                    Some(jwt) => with_bearer(message, jwt).map_err(|e| transport(&e))?,
                    None => tonic::Request::new(message),
                };
                let response = client
                    .exchange(request)
                    .await
                    .map_err(|s| CallError::Status {
                        code: s.code(),
                        message: s.message().to_owned(),
                    })?
                    .into_inner();
                Some(response.access_token)
                    .filter(|t| !t.is_empty())
                    .ok_or(CallError::NoToken)
            }
            Inner::Realm {
                addr,
                sender,
                uri,
                authorization,
                pool,
            } => {
                let authorization = match pool {
                    Some(pool) => {
                        let basic = pool.take().ok_or(CallError::PoolExhausted)?;
                        http::HeaderValue::try_from(basic).map_err(|e| transport(&e))?
                    }
                    None => authorization.clone(),
                };
                // A keep-alive connection the server closed is replaced, once per request.
                if sender.as_ref().is_none_or(SendRequest::is_closed) {
                    *sender = Some(http1_connect(*addr).await.map_err(|e| transport(&e))?);
                }
                let Some(conn) = sender.as_mut() else {
                    return Err(CallError::Transport {
                        reason: "no connection".to_owned(),
                    });
                };
                let request = http::Request::get(uri.as_str())
                    .header(http::header::HOST, "127.0.0.1")
                    .header(http::header::AUTHORIZATION, authorization)
                    .body(Empty::<Bytes>::new())
                    .map_err(|e| transport(&e))?;
                conn.ready().await.map_err(|e| transport(&e))?;
                let response = conn
                    .send_request(request)
                    .await
                    .map_err(|e| transport(&e))?;
                let status = response.status().as_u16();
                let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                    .collect()
                    .await
                    .map_err(|e| CallError::Transport {
                        reason: e.to_string(),
                    })?
                    .to_bytes();
                if status != 200 {
                    return Err(CallError::HttpStatus { status });
                }
                let json: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| transport(&e))?;
                json.get("token")
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .ok_or(CallError::NoToken)
            }
        }
    }
}

/// A broker login credential for the load generator's identity, from one gRPC `Exchange`
/// with a JWT-SVID bearer.
async fn login_credential(target: &Target, jwt: String) -> Result<String, LoadgenError> {
    let fail = |what: &'static str| {
        move |e: &dyn std::error::Error| LoadgenError::Setup {
            what,
            reason: ErrorChain::new(e).to_string(),
        }
    };
    let bundles: Arc<dyn BundleProvider> = Arc::new(Arc::new(
        target.td.bundle_set().map_err(|e| fail("bundle")(&e))?,
    ));
    let tls = client_tls_config(bundles, Authorizer::Exact(id(BROKER_ID)?), None)
        .map_err(|e| fail("client tls")(&e))?;
    let mut client = exchange_client(target.grpc_addr, tls)
        .await
        .map_err(|e| fail("grpc connect")(&e))?;
    let request = ExchangeRequest {
        requested_token_type: TokenType::RegistryLoginCredential.into(),
        audience: SERVICE.to_owned(),
        scope: vec![SCOPE.to_owned()],
        ..Default::default()
    };
    let request = with_bearer(request, &jwt).map_err(|e| fail("bearer")(&e))?;
    let response = client
        .exchange(request)
        .await
        .map_err(|s| LoadgenError::Setup {
            what: "login credential",
            reason: format!("grpc status {:?}: {}", s.code(), s.message()),
        })?
        .into_inner();
    Some(response.access_token)
        .filter(|t| !t.is_empty())
        .ok_or(LoadgenError::Setup {
            what: "login credential",
            reason: "empty".to_owned(),
        })
}

pub(crate) fn form_query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

pub(crate) async fn http1_connect(
    addr: SocketAddr,
) -> Result<SendRequest<Empty<Bytes>>, std::io::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; either is fine here.
        let _ = connection.await;
    });
    Ok(sender)
}

/// The outcome of one phase.
#[derive(Debug)]
pub struct Phase {
    /// Requests answered with a token.
    pub ok: u64,
    /// Requests that failed (timeouts included), plus any worker task that died.
    pub errors: u64,
    /// One failure, if any (the first of the first worker that had one); the rest are only
    /// counted.
    pub first_error: Option<CallError>,
    /// Wall time of the phase, from its start until its last request ended.
    pub elapsed: Duration,
    /// Latencies of the successful requests, from the moment each was sent (closed loop) or
    /// released by the pacer (open loop).
    pub latency: Samples,
    /// Open loop only: latencies from each request's scheduled time (includes any lateness of
    /// the pacer and any wait for a free connection).
    pub from_schedule: Samples,
}

impl Phase {
    /// Successful requests per second of [`elapsed`](Self::elapsed) (0 when none elapsed).
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }
}

#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    first_error: Option<CallError>,
    latency: Samples,
    from_schedule: Samples,
}

impl Tally {
    fn record(&mut self, result: Result<String, CallError>, latency: Duration) {
        match result {
            Ok(_) => {
                self.ok += 1;
                self.latency.record(latency);
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latency.merge(other.latency);
        self.from_schedule.merge(other.from_schedule);
    }

    fn into_phase(self, elapsed: Duration) -> Phase {
        Phase {
            ok: self.ok,
            errors: self.errors,
            first_error: self.first_error,
            elapsed,
            latency: self.latency,
            from_schedule: self.from_schedule,
        }
    }
}

/// Closed loop: every client sends back to back until `duration` has passed or `max_requests`
/// have been sent in all. Returns the clients for the next phase.
pub async fn closed_loop(
    clients: Vec<Client>,
    duration: Duration,
    max_requests: u64,
) -> (Vec<Client>, Phase) {
    let budget = Arc::new(AtomicU64::new(max_requests));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(clients.len());
    for mut client in clients {
        let budget = Arc::clone(&budget);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline && take_one(&budget) {
                let sent = Instant::now();
                let result = client.call().await;
                tally.record(result, sent.elapsed());
            }
            (client, tally)
        }));
    }
    collect(tasks, start).await
}

fn take_one(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// Open loop: `total` requests released on the schedule of [`pace`] at `rate` per second and
/// served by whichever client is free. Returns the clients for the next phase.
pub async fn open_loop(clients: Vec<Client>, rate: f64, total: u64) -> (Vec<Client>, Phase) {
    // (scheduled, released) per request.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Instant)>();
    let rx = Arc::new(Mutex::new(rx));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients.len());
    for mut client in clients {
        let rx = Arc::clone(&rx);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                let job = rx.lock().await.recv().await;
                let Some((scheduled, released)) = job else {
                    break;
                };
                let result = client.call().await;
                if result.is_ok() {
                    tally.from_schedule.record(scheduled.elapsed());
                }
                tally.record(result, released.elapsed());
            }
            (client, tally)
        }));
    }
    let mut sent = 0u64;
    while sent < total {
        let due = pace::due_count(start.elapsed(), rate, total);
        let now = Instant::now();
        while sent < due {
            // Workers only stop after the sender is dropped, so this cannot fail.
            let _ = tx.send((start + pace::due_at(sent, rate), now));
            sent += 1;
        }
        if sent < total {
            tokio::time::sleep_until((start + pace::due_at(sent, rate)).into()).await;
        }
    }
    drop(tx);
    collect(tasks, start).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<(Client, Tally)>>,
    start: Instant,
) -> (Vec<Client>, Phase) {
    let mut clients = Vec::with_capacity(tasks.len());
    let mut total = Tally::default();
    for task in tasks {
        match task.await {
            Ok((client, tally)) => {
                clients.push(client);
                total.merge(tally);
            }
            Err(e) => {
                total.errors += 1;
                total.first_error.get_or_insert(CallError::Transport {
                    reason: format!("worker task failed: {e}"),
                });
            }
        }
    }
    (clients, total.into_phase(start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_percent_encoded() {
        assert_eq!(
            form_query(&[("scope", "repository:team/app:pull"), ("a", "b c")]),
            "scope=repository%3Ateam%2Fapp%3Apull&a=b%20c"
        );
    }

    #[test]
    fn token_pool_hands_out_each_distinct_token_once() {
        let td = DevTrustDomain::builder(
            svid_broker_identity::TrustDomain::parse("example.org").unwrap(),
        )
        .build()
        .unwrap();
        let pool = TokenPool::mint(&td, Kind::GrpcBearerCold, 5).unwrap();
        assert_eq!(pool.remaining(), 5);
        let mut seen = std::collections::HashSet::new();
        while let Some(token) = pool.take() {
            assert!(seen.insert(token.to_owned()), "a token came out twice");
        }
        assert_eq!((seen.len(), pool.remaining()), (5, 0));
        let realm = TokenPool::mint(&td, Kind::RealmCold, 1).unwrap();
        assert!(realm.take().unwrap().starts_with("Basic "));
    }

    #[test]
    fn budget_runs_out() {
        let budget = AtomicU64::new(2);
        assert!(take_one(&budget));
        assert!(take_one(&budget));
        assert!(!take_one(&budget));
    }

    #[test]
    fn tally_counts_failures_and_keeps_the_first() {
        let mut tally = Tally::default();
        tally.record(Ok("t".to_owned()), Duration::from_millis(1));
        tally.record(Err(CallError::NoToken), Duration::from_millis(1));
        tally.record(
            Err(CallError::HttpStatus { status: 401 }),
            Duration::from_millis(1),
        );
        let phase = tally.into_phase(Duration::from_secs(1));
        assert_eq!((phase.ok, phase.errors), (1, 2));
        assert!(matches!(phase.first_error, Some(CallError::NoToken)));
        assert_eq!(phase.latency.len(), 1);
        assert!((phase.rate() - 1.0).abs() < 1e-9);
    }
}
