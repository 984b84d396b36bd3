//! Operations: audit events, Prometheus metrics, the per-subject rate limiter and the
//! issued-token cache. All synchronous and lock-light; nothing here ever sees a token's text
//! except the cache, which holds issued tokens in their redacting wrapper.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::fs::File;
use std::hash::Hash;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use svid_broker_identity::SpiffeId;
use svid_broker_identity::clock::Rfc3339;
use svid_broker_token::RegistryToken;

use crate::engine::{Endpoint, ErrorCode};

// === Audit ===

/// Most audit lines the in-memory sink keeps (tests only read the last few).
pub const MAX_MEMORY_AUDIT_LINES: usize = 10_000;

/// Where audit events go: one JSON object per line, on a stream of their own.
#[derive(Clone)]
pub enum AuditSink {
    /// Standard error.
    Stderr,
    /// Standard output.
    Stdout,
    /// An append-only file.
    File(Arc<Mutex<File>>),
    /// Kept in memory (tests), at most [`MAX_MEMORY_AUDIT_LINES`].
    Memory(Arc<Mutex<Vec<String>>>),
    /// Any writer (tests: one that fails like a full filesystem).
    Writer(Arc<Mutex<SinkWriter>>),
    /// Dropped.
    Discard,
}

impl fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stderr => "AuditSink::Stderr",
            Self::Stdout => "AuditSink::Stdout",
            Self::File(_) => "AuditSink::File",
            Self::Memory(_) => "AuditSink::Memory",
            Self::Writer(_) => "AuditSink::Writer",
            Self::Discard => "AuditSink::Discard",
        })
    }
}

impl AuditSink {
    /// Opens `path` for appending (created if missing).
    ///
    /// # Errors
    /// The I/O error.
    pub fn file(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self::File(Arc::new(Mutex::new(file))))
    }

    /// An in-memory sink and the handle to read it.
    pub fn memory() -> (Self, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (Self::Memory(lines.clone()), lines)
    }

    /// A sink writing to `writer`.
    pub fn writer(writer: impl std::io::Write + Send + 'static) -> Self {
        Self::Writer(Arc::new(Mutex::new(SinkWriter {
            inner: Box::new(writer),
            broken_line: false,
        })))
    }

    /// Writes one event as a JSON line, in one `write_all` so concurrent events never
    /// interleave. What a failure means (refuse the decision or serve on) is
    /// [`AuditLog`]'s business, so this only reports it.
    ///
    /// # Errors
    /// The I/O error (`ENOSPC`, `EPIPE`, ...).
    pub fn emit(&self, event: &AuditEvent<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_string(event).map_err(std::io::Error::other)?;
        line.push('\n');
        match self {
            Self::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            Self::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
            Self::File(file) => {
                let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
                // A write cut short (ENOSPC after a partial write) would leave half a line
                // that the next event is appended to, making both unreadable: cut the file
                // back to where this event started. The file is append-only, so its length
                // is where this event starts.
                let start = file.metadata()?.len();
                file.write_all(line.as_bytes()).inspect_err(|_| {
                    let _ = file.set_len(start);
                })
            }
            Self::Memory(lines) => {
                let mut lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
                if lines.len() >= MAX_MEMORY_AUDIT_LINES {
                    lines.remove(0);
                }
                line.pop();
                lines.push(line);
                Ok(())
            }
            Self::Writer(w) => {
                let mut w = w.lock().unwrap_or_else(PoisonError::into_inner);
                // A stream cannot be cut back: after a failed write, start the next event on
                // a line of its own so at most the broken one is unreadable.
                if w.broken_line {
                    line.insert(0, '\n');
                }
                let result = w
                    .inner
                    .write_all(line.as_bytes())
                    .and_then(|()| w.inner.flush());
                w.broken_line = result.is_err();
                result
            }
            Self::Discard => Ok(()),
        }
    }
}

/// A caller-supplied audit stream, and whether its last write may have left a partial line.
pub struct SinkWriter {
    inner: Box<dyn std::io::Write + Send>,
    broken_line: bool,
}

impl fmt::Debug for SinkWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkWriter")
            .field("broken_line", &self.broken_line)
            .finish_non_exhaustive()
    }
}

/// What the broker does when an audit event cannot be written (`[log] audit_on_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuditOnError {
    /// A credential whose issuance cannot be audited is not handed out: the request fails
    /// with 503 / UNAVAILABLE (as Vault refuses requests it cannot audit). Refusals are still
    /// answered (an unwritten denial hides nothing issued).
    #[default]
    Deny,
    /// Serve on; the lost events are only counted.
    Continue,
}

impl AuditOnError {
    /// The config spelling.
    pub fn label(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Continue => "continue",
        }
    }
}

/// Shortest time between two log lines about audit write failures: a full disk fails every
/// write, and one log line per request would fill the next disk.
pub const AUDIT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The audit sink with its failure policy: counts write errors in
/// `svid_broker_audit_write_errors_total`, logs them at most once per
/// [`AUDIT_ERROR_LOG_INTERVAL`], never panics.
#[derive(Debug)]
pub struct AuditLog {
    sink: AuditSink,
    on_error: AuditOnError,
    /// Unix seconds of the last warning (0: none yet).
    last_warning: AtomicU64,
}

/// An audit event could not be written and `audit_on_error = "deny"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the audit log cannot be written (audit_on_error = \"deny\")")]
#[non_exhaustive]
pub struct AuditUnavailable;

impl AuditLog {
    /// A log writing to `sink` that reacts to failures as `on_error` says.
    pub fn new(sink: AuditSink, on_error: AuditOnError) -> Self {
        Self {
            sink,
            on_error,
            last_warning: AtomicU64::new(0),
        }
    }

    /// The failure policy.
    pub fn on_error(&self) -> AuditOnError {
        self.on_error
    }

    /// Writes `event`. On failure the error is counted in `metrics` and logged (rate-limited);
    /// the result says whether the decision may stand.
    ///
    /// # Errors
    /// [`AuditUnavailable`] when the write failed and the policy is [`AuditOnError::Deny`].
    pub fn record(
        &self,
        event: &AuditEvent<'_>,
        metrics: &Metrics,
    ) -> Result<(), AuditUnavailable> {
        let Err(error) = self.sink.emit(event) else {
            return Ok(());
        };
        metrics.audit_write_error();
        let now = unix_secs(SystemTime::now());
        let last = self.last_warning.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= AUDIT_ERROR_LOG_INTERVAL.as_secs())
            && self
                .last_warning
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(
                %error,
                audit_on_error = self.on_error.label(),
                "audit events cannot be written (further failures are only counted in svid_broker_audit_write_errors_total for a minute)"
            );
        }
        match self.on_error {
            AuditOnError::Deny => Err(AuditUnavailable),
            AuditOnError::Continue => Ok(()),
        }
    }
}

/// One audit event: a decision of the broker. Never carries a token or a secret.
#[derive(Debug, Serialize)]
pub struct AuditEvent<'a> {
    /// Event time, RFC 3339.
    pub time: String,
    /// Always `svid-broker.exchange`.
    pub event: &'static str,
    /// `allow` or `deny` (a request the policy grants nothing is a `deny`).
    pub decision: &'static str,
    /// The error class for denials (`unauthenticated`, ...), absent on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// Why (the error chain for denials, `granted` or `partial` on success).
    pub reason: String,
    /// The authenticated SPIFFE ID, when authentication got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<&'a str>,
    /// How the subject authenticated, plus the client's `client_id` when it sent one.
    pub actor: String,
    /// The registry `service` asked for.
    pub service: &'a str,
    /// What was asked for (scopes, space-joined).
    pub requested: String,
    /// What was granted (scopes, space-joined).
    pub granted: String,
    /// `access_token`, `login_credential` or `refresh_token`.
    pub kind: &'static str,
    /// A login credential's or refresh token's ceiling: space-joined scopes, or
    /// `registry-wide` when it carries none (tokens obtained with it get whatever policy
    /// grants at the time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<String>,
    /// The issued token's or credential's `jti`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<&'a str>,
    /// Its expiry, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Whether a cached token was reused.
    pub cached: bool,
    /// The client's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Which endpoint.
    pub endpoint: &'static str,
    /// Present when the caller (then `actor`) presented a subject token for the subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_token: Option<SubjectTokenAudit<'a>>,
    /// `svid-broker.preauth_denials` summaries: how many requests of this peer, endpoint and
    /// reason were refused before authentication in the interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// `svid-broker.preauth_denials` summaries: the interval's length in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u64>,
}

/// The `ceiling` audit text of a broker credential.
pub fn ceiling_text(ceiling: &[svid_broker_policy::ResourceScope]) -> String {
    if ceiling.is_empty() {
        REGISTRY_WIDE.to_owned()
    } else {
        svid_broker_policy::scope::join_scopes(ceiling)
    }
}

/// The `ceiling` of a credential without one.
pub const REGISTRY_WIDE: &str = "registry-wide";

/// What the audit log records of a subject token (never the token itself).
#[derive(Debug, Default, Serialize)]
pub struct SubjectTokenAudit<'a> {
    /// The token kind: `kubernetes-service-account`.
    pub kind: &'static str,
    /// How the actor authenticated (`x509-svid`, `jwt-svid`).
    pub actor_method: &'static str,
    /// The token's issuer, once validated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<&'a str>,
    /// `kubernetes.io.namespace`, once validated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
    /// `kubernetes.io.serviceaccount.name`, once validated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<&'a str>,
    /// `kubernetes.io.pod.name`, when the token is pod-bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<&'a str>,
    /// `kubernetes.io.pod.uid`, when the token is pod-bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<&'a str>,
    /// `kubernetes.io.node.name`, when the token names the pod's node (the node a `{node}`
    /// trusted-actor binding checked it against).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<&'a str>,
}

/// RFC 3339 text of `t`.
pub fn rfc3339(t: SystemTime) -> String {
    Rfc3339(t).to_string()
}

/// Formats a peer address for the audit log.
pub fn peer_text(peer: Option<SocketAddr>) -> Option<String> {
    peer.map(|p| p.to_string())
}

// === Metrics ===

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// HTTP and gRPC routes with a latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// `GET /token`.
    TokenGet,
    /// `POST /token`.
    TokenPost,
    /// `/jwks.json`.
    Jwks,
    /// `/.well-known/openid-configuration`.
    OpenidConfiguration,
    /// `/healthz`, `/readyz`.
    Health,
    /// `/metrics`.
    Metrics,
    /// The gRPC `Exchange` call.
    GrpcExchange,
    /// Anything else.
    Other,
}

impl Route {
    const ALL: [Self; 8] = [
        Self::TokenGet,
        Self::TokenPost,
        Self::Jwks,
        Self::OpenidConfiguration,
        Self::Health,
        Self::Metrics,
        Self::GrpcExchange,
        Self::Other,
    ];

    /// The `route` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::TokenGet => "token_get",
            Self::TokenPost => "token_post",
            Self::Jwks => "jwks",
            Self::OpenidConfiguration => "openid_configuration",
            Self::Health => "health",
            Self::Metrics => "metrics",
            Self::GrpcExchange => "grpc_exchange",
            Self::Other => "other",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(7)
    }
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

const ENDPOINTS: [Endpoint; 3] = [Endpoint::RealmGet, Endpoint::RealmPost, Endpoint::Grpc];
const CODES: [ErrorCode; 5] = [
    ErrorCode::InvalidArgument,
    ErrorCode::Unauthenticated,
    ErrorCode::PermissionDenied,
    ErrorCode::ResourceExhausted,
    ErrorCode::Unavailable,
];

/// The broker's counters and histograms, rendered as Prometheus text by hand (no metrics
/// dependency). Labels are fixed enums: never a subject, token or other caller input.
#[derive(Debug, Default)]
pub struct Metrics {
    issued: [[AtomicU64; 2]; 3],
    denied: [[AtomicU64; 5]; 3],
    refused: [[AtomicU64; REFUSALS.len()]; 3],
    audit_write_errors: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    policy_reloads_ok: AtomicU64,
    policy_reloads_failed: AtomicU64,
    key_rotations: AtomicU64,
    latency: [Histogram; 8],
}

/// Why an authenticated request that was answered got nothing (`svid_broker_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Scopes were asked for and policy granted none of them; the realm still answers with an
    /// (empty) token, as the token spec's clients expect, and the registry then says 401.
    NothingGranted,
}

impl Refusal {
    /// The `reason` label and audit reason.
    pub fn label(self) -> &'static str {
        match self {
            Self::NothingGranted => "nothing_granted",
        }
    }
}

const REFUSALS: [Refusal; 1] = [Refusal::NothingGranted];

fn endpoint_index(e: Endpoint) -> usize {
    ENDPOINTS.iter().position(|x| *x == e).unwrap_or(0)
}

impl Metrics {
    /// Counts an issued token (`login == false`) or login credential.
    pub fn issued(&self, endpoint: Endpoint, login: bool) {
        self.issued[endpoint_index(endpoint)][usize::from(login)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused request.
    pub fn denied(&self, endpoint: Endpoint, code: ErrorCode) {
        let c = CODES.iter().position(|x| *x == code).unwrap_or(0);
        self.denied[endpoint_index(endpoint)][c].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request answered with nothing granted.
    pub fn refused(&self, endpoint: Endpoint, refusal: Refusal) {
        let r = REFUSALS.iter().position(|x| *x == refusal).unwrap_or(0);
        self.refused[endpoint_index(endpoint)][r].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an audit event that could not be written.
    pub fn audit_write_error(&self) {
        self.audit_write_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Audit events not written so far.
    pub fn audit_write_errors(&self) -> u64 {
        self.audit_write_errors.load(Ordering::Relaxed)
    }

    /// Counts a cache lookup.
    pub fn cache(&self, hit: bool) {
        if hit {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.cache_misses.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a policy reload attempt.
    pub fn policy_reload(&self, ok: bool) {
        if ok {
            self.policy_reloads_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.policy_reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a signing-key rotation.
    pub fn key_rotated(&self) {
        self.key_rotations.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one request's latency.
    pub fn observe(&self, route: Route, elapsed: Duration) {
        let h = &self.latency[route.index()];
        let secs = elapsed.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        h.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Cache hits so far.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits.load(Ordering::Relaxed)
    }

    /// Cache misses so far.
    pub fn cache_misses(&self) -> u64 {
        self.cache_misses.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) -> fmt::Result {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        writeln!(
            out,
            "# HELP svid_broker_issued_total Tokens and login credentials issued."
        )?;
        writeln!(out, "# TYPE svid_broker_issued_total counter")?;
        for (e, endpoint) in ENDPOINTS.iter().enumerate() {
            for (k, kind) in ["access_token", "login_credential"].iter().enumerate() {
                writeln!(
                    out,
                    "svid_broker_issued_total{{endpoint=\"{}\",kind=\"{kind}\"}} {}",
                    endpoint.label(),
                    load(&self.issued[e][k])
                )?;
            }
        }
        writeln!(
            out,
            "# HELP svid_broker_denied_total Requests refused, by error class."
        )?;
        writeln!(out, "# TYPE svid_broker_denied_total counter")?;
        for (e, endpoint) in ENDPOINTS.iter().enumerate() {
            for (c, code) in CODES.iter().enumerate() {
                writeln!(
                    out,
                    "svid_broker_denied_total{{endpoint=\"{}\",code=\"{}\"}} {}",
                    endpoint.label(),
                    code.label(),
                    load(&self.denied[e][c])
                )?;
            }
        }
        writeln!(
            out,
            "# HELP svid_broker_refused_total Authenticated requests answered with nothing granted, by reason."
        )?;
        writeln!(out, "# TYPE svid_broker_refused_total counter")?;
        for (e, endpoint) in ENDPOINTS.iter().enumerate() {
            for (r, refusal) in REFUSALS.iter().enumerate() {
                writeln!(
                    out,
                    "svid_broker_refused_total{{endpoint=\"{}\",reason=\"{}\"}} {}",
                    endpoint.label(),
                    refusal.label(),
                    load(&self.refused[e][r])
                )?;
            }
        }
        for (name, help, v) in [
            (
                "svid_broker_audit_write_errors_total",
                "Audit events that could not be written.",
                &self.audit_write_errors,
            ),
            (
                "svid_broker_token_cache_hits_total",
                "Issued-token cache hits.",
                &self.cache_hits,
            ),
            (
                "svid_broker_token_cache_misses_total",
                "Issued-token cache misses.",
                &self.cache_misses,
            ),
            (
                "svid_broker_key_rotations_total",
                "Signing leaf rotations triggered by the server.",
                &self.key_rotations,
            ),
        ] {
            writeln!(out, "# HELP {name} {help}")?;
            writeln!(out, "# TYPE {name} counter")?;
            writeln!(out, "{name} {}", load(v))?;
        }
        writeln!(
            out,
            "# HELP svid_broker_policy_reloads_total Policy reload attempts."
        )?;
        writeln!(out, "# TYPE svid_broker_policy_reloads_total counter")?;
        writeln!(
            out,
            "svid_broker_policy_reloads_total{{result=\"ok\"}} {}",
            load(&self.policy_reloads_ok)
        )?;
        writeln!(
            out,
            "svid_broker_policy_reloads_total{{result=\"failed\"}} {}",
            load(&self.policy_reloads_failed)
        )?;
        writeln!(
            out,
            "# HELP svid_broker_request_duration_seconds Request latency by route."
        )?;
        writeln!(out, "# TYPE svid_broker_request_duration_seconds histogram")?;
        for route in Route::ALL {
            let h = &self.latency[route.index()];
            let label = route.label();
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                writeln!(
                    out,
                    "svid_broker_request_duration_seconds_bucket{{route=\"{label}\",le=\"{bound}\"}} {}",
                    load(&h.buckets[i])
                )?;
            }
            let count = load(&h.count);
            writeln!(
                out,
                "svid_broker_request_duration_seconds_bucket{{route=\"{label}\",le=\"+Inf\"}} {count}"
            )?;
            #[allow(
                clippy::cast_precision_loss,
                reason = "microsecond sums stay far below 2^52"
            )]
            let sum = load(&h.sum_micros) as f64 / 1e6;
            writeln!(
                out,
                "svid_broker_request_duration_seconds_sum{{route=\"{label}\"}} {sum}"
            )?;
            writeln!(
                out,
                "svid_broker_request_duration_seconds_count{{route=\"{label}\"}} {count}"
            )?;
        }
        Ok(())
    }
}

// === Rate limiter ===

/// Most subjects tracked by the rate limiter; past it, full buckets are forgotten first and,
/// if none is full, the table is cleared (a flood of identities must not grow memory).
pub const MAX_RATE_LIMITED_SUBJECTS: usize = 100_000;

/// Token-bucket settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second per subject.
    pub per_second: f64,
    /// Bucket size.
    pub burst: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: SystemTime,
}

/// A token bucket per key (a SPIFFE ID for the per-subject limit, an IP address for the
/// limit on failed authentications). Time comes from the caller, so tests are deterministic.
#[derive(Debug)]
pub struct RateLimiter<K = SpiffeId> {
    limit: Option<RateLimit>,
    max_keys: usize,
    buckets: Mutex<BucketTable<K>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter tracking at most [`MAX_RATE_LIMITED_SUBJECTS`] keys; `None` never limits.
    pub fn new(limit: Option<RateLimit>) -> Self {
        Self::with_max_keys(limit, MAX_RATE_LIMITED_SUBJECTS)
    }

    /// A limiter tracking at most `max_keys` keys.
    pub fn with_max_keys(limit: Option<RateLimit>, max_keys: usize) -> Self {
        Self {
            limit,
            max_keys: max_keys.max(1),
            buckets: Mutex::new(BucketTable {
                keys: HashMap::new(),
                overflow: None,
            }),
        }
    }

    /// Takes one token for `key` at `now`; on refusal returns how long until one is
    /// available.
    ///
    /// # Errors
    /// The wait, when the bucket is empty.
    pub fn check(&self, key: &K, now: SystemTime) -> Result<(), Duration> {
        self.bucket(key, now, true)
    }

    /// Whether `key` has a token at `now`, without taking it.
    ///
    /// # Errors
    /// The wait, when the bucket is empty.
    pub fn peek(&self, key: &K, now: SystemTime) -> Result<(), Duration> {
        self.bucket(key, now, false)
    }

    fn bucket(&self, key: &K, now: SystemTime, take: bool) -> Result<(), Duration> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let mut table = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !table.keys.contains_key(key) {
            if table.keys.len() >= self.max_keys {
                // Full buckets carry no state worth keeping: forgetting them changes no answer.
                table
                    .keys
                    .retain(|_, b| refilled(b, limit, now) < limit.burst);
            }
            if table.keys.len() >= self.max_keys {
                // Every tracked key is still paying for recent requests. Evicting any would
                // hand it a fresh budget (an attacker with many addresses could then reset
                // the ones already limited), so new keys share one overflow bucket instead.
                if !take && table.overflow.is_none() {
                    return Ok(());
                }
                let bucket = table.overflow.get_or_insert(Bucket {
                    tokens: limit.burst,
                    at: now,
                });
                return spend(bucket, limit, now, take);
            }
            if !take {
                // An unknown key has a full bucket; peeking must not grow the table.
                return Ok(());
            }
        }
        let bucket = table.keys.entry(key.clone()).or_insert(Bucket {
            tokens: limit.burst,
            at: now,
        });
        spend(bucket, limit, now, take)
    }
}

/// The tokens `bucket` holds at `now` (a clock that went back refills nothing).
fn refilled(bucket: &Bucket, limit: RateLimit, now: SystemTime) -> f64 {
    let elapsed = now.duration_since(bucket.at).unwrap_or_default();
    (bucket.tokens + elapsed.as_secs_f64() * limit.per_second).min(limit.burst)
}

/// Refills `bucket` to `now` and, when `take`, spends one token; on refusal returns how long
/// until one is available.
fn spend(
    bucket: &mut Bucket,
    limit: RateLimit,
    now: SystemTime,
    take: bool,
) -> Result<(), Duration> {
    bucket.tokens = refilled(bucket, limit, now);
    bucket.at = bucket.at.max(now);
    if bucket.tokens >= 1.0 {
        if take {
            bucket.tokens -= 1.0;
        }
        Ok(())
    } else {
        let wait = (1.0 - bucket.tokens) / limit.per_second;
        Err(Duration::from_secs_f64(wait.clamp(0.0, 3600.0)))
    }
}

/// A limiter's buckets: one per tracked key, and the one new keys share once the table is full
/// of keys that are not.
#[derive(Debug)]
struct BucketTable<K> {
    keys: HashMap<K, Bucket>,
    overflow: Option<Bucket>,
}

// === Pre-authentication denials ===

/// Most source addresses the failed-authentication limiter tracks; past it, full buckets are
/// forgotten first, and new addresses share one overflow bucket while the table stays full.
pub const MAX_PREAUTH_TRACKED_IPS: usize = 16_384;
/// Most distinct (peer, endpoint, reason) keys aggregated per interval; past it, further
/// denials are counted under one overflow key without a peer.
pub const MAX_PREAUTH_AGGREGATES: usize = 1024;
/// Default length of a pre-authentication aggregation interval.
pub const DEFAULT_PREAUTH_AUDIT_INTERVAL: Duration = Duration::from_secs(10);
/// The audit `event` of a pre-authentication summary.
pub const PREAUTH_SUMMARY_EVENT: &str = "svid-broker.preauth_denials";
/// The reason of the overflow key.
const PREAUTH_OVERFLOW_REASON: &str = "other (aggregation table full)";

/// What a pre-authentication denial is aggregated by: fixed labels and the address, never
/// caller-chosen text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PreauthKey {
    /// The client's IP address (the port changes per connection).
    pub peer: Option<IpAddr>,
    /// Where.
    pub endpoint: Endpoint,
    /// The request kind label.
    pub kind: &'static str,
    /// The error class.
    pub code: ErrorCode,
    /// The short reason (the error's `Display`, which never carries request text).
    pub reason: String,
}

/// One aggregated key at the end of an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreauthSummary {
    /// The key.
    pub key: PreauthKey,
    /// Denials in the interval (including the first one, audited in full).
    pub count: u64,
    /// The interval's length.
    pub interval: Duration,
}

#[derive(Debug)]
struct PreauthWindow {
    start: Option<SystemTime>,
    counts: HashMap<PreauthKey, u64>,
}

/// Aggregates denials that happen before a subject is authenticated: the first of each key
/// in an interval is audited (and logged) in full; the rest only count, and one summary per
/// key with more than one denial is audited when the interval ends. One client sending
/// garbage thus writes a few lines per interval, not one per request.
#[derive(Debug)]
pub struct PreauthDenials {
    interval: Duration,
    window: Mutex<PreauthWindow>,
}

impl PreauthDenials {
    /// An aggregator with intervals of `interval` (at least one second).
    pub fn new(interval: Duration) -> Self {
        Self {
            interval: interval.max(Duration::from_secs(1)),
            window: Mutex::new(PreauthWindow {
                start: None,
                counts: HashMap::new(),
            }),
        }
    }

    /// Counts one denial at `now`. Returns whether it is the first of its key in the
    /// interval (then the caller audits and logs it in full), and the summaries of the
    /// interval that `now` ended, if any.
    pub fn note(&self, mut key: PreauthKey, now: SystemTime) -> (bool, Vec<PreauthSummary>) {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let flushed = Self::roll(&mut window, self.interval, now);
        if window.counts.len() >= MAX_PREAUTH_AGGREGATES && !window.counts.contains_key(&key) {
            key = PreauthKey {
                peer: None,
                endpoint: key.endpoint,
                kind: key.kind,
                code: key.code,
                reason: PREAUTH_OVERFLOW_REASON.to_owned(),
            };
            // The overflow key's own first denial is not audited in full either: a flood of
            // addresses must not turn into a flood of lines.
            *window.counts.entry(key).or_insert(0) += 1;
            return (false, flushed);
        }
        let count = window.counts.entry(key).or_insert(0);
        *count += 1;
        (*count == 1, flushed)
    }

    /// The summaries of an interval that ended by `now` (nothing otherwise), for a periodic
    /// flush when no denial comes to trigger one.
    pub fn flush_due(&self, now: SystemTime) -> Vec<PreauthSummary> {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        Self::roll(&mut window, self.interval, now)
    }

    fn roll(
        window: &mut PreauthWindow,
        interval: Duration,
        now: SystemTime,
    ) -> Vec<PreauthSummary> {
        let Some(start) = window.start else {
            window.start = Some(now);
            return Vec::new();
        };
        // A clock that went back ends the interval too, rather than holding counts forever.
        let ended = now
            .duration_since(start)
            .map_or(true, |elapsed| elapsed >= interval);
        if !ended {
            return Vec::new();
        }
        window.start = Some(now);
        let mut out: Vec<PreauthSummary> = window
            .counts
            .drain()
            // A key seen once was audited in full already; the overflow key never was.
            .filter(|(key, count)| *count > 1 || key.reason == PREAUTH_OVERFLOW_REASON)
            .map(|(key, count)| PreauthSummary {
                key,
                count,
                interval,
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.count));
        out
    }
}

// === Issued-token cache ===

/// Most cached tokens; past it the cache drops expired entries, then everything.
pub const MAX_CACHED_TOKENS: usize = 10_000;

/// Cache key: who, for which registry, with which (canonical) grant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The subject.
    pub subject: SpiffeId,
    /// The registry service.
    pub service: String,
    /// The granted scopes, canonical and space-joined.
    pub granted: String,
}

/// One cached token.
#[derive(Debug, Clone)]
pub struct CachedToken {
    /// The token.
    pub token: RegistryToken,
    /// Its `jti`.
    pub jti: String,
    /// When it was issued.
    pub issued_at: SystemTime,
    /// When it expires.
    pub expires_at: SystemTime,
}

/// Reuses an issued token while more than half its lifetime is left: clients ask for the same
/// token several times per operation (skopeo three times per inspect).
#[derive(Debug)]
pub struct TokenCache {
    enabled: bool,
    entries: Mutex<HashMap<CacheKey, CachedToken>>,
}

impl TokenCache {
    /// A cache; disabled caches never hit.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// A cached token usable at `now`: issued no later than `now` (a clock moved back must not
    /// reuse a token from the "future") and with more than half its lifetime left.
    pub fn get(&self, key: &CacheKey, now: SystemTime) -> Option<CachedToken> {
        if !self.enabled {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let t = entries.get(key)?;
        let life = t.expires_at.duration_since(t.issued_at).ok()?;
        let left = t.expires_at.duration_since(now).ok()?;
        (now >= t.issued_at && left > life / 2).then(|| t.clone())
    }

    /// Stores a freshly minted token.
    pub fn put(&self, key: CacheKey, token: CachedToken, now: SystemTime) {
        if !self.enabled {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_CACHED_TOKENS {
            entries.retain(|_, t| t.expires_at > now);
            if entries.len() >= MAX_CACHED_TOKENS {
                entries.clear();
            }
        }
        entries.insert(key, token);
    }

    /// Drops every entry (after a key rotation or a policy reload, so new grants take effect
    /// at once).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Most verified client chains remembered; past it the cache starts over (only chains that
/// verified get in, so filling it costs an attacker one valid SVID per entry).
pub const MAX_CACHED_CHAINS: usize = 4096;

/// Client X.509-SVID chains already verified, so the calls on one mTLS connection do not redo
/// path validation each time (without it, re-verification was nearly half the broker's CPU under
/// mTLS load). An entry answers only for the exact bundle snapshot it was verified against and
/// only inside the validity window of every presented certificate; a new bundle, a different
/// chain or a time outside the window verifies afresh, so the answer is always the one a full
/// verification would give.
#[derive(Debug, Default)]
pub struct VerifiedChainCache {
    entries: Mutex<HashMap<[u8; 32], VerifiedChain>>,
}

#[derive(Debug, Clone)]
struct VerifiedChain {
    bundles: Arc<svid_broker_identity::bundle::BundleSet>,
    spiffe_id: SpiffeId,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl VerifiedChainCache {
    /// The key for a presented chain: SHA-256 over each certificate's length and bytes.
    pub fn key(chain: &[rustls_pki_types::CertificateDer<'_>]) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for cert in chain {
            ctx.update(&(cert.len() as u64).to_be_bytes());
            ctx.update(cert.as_ref());
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    /// The SPIFFE ID of a chain verified against this very `bundles` snapshot, if `now` is
    /// inside the validity window of all its certificates.
    pub fn get(
        &self,
        key: &[u8; 32],
        bundles: &Arc<svid_broker_identity::bundle::BundleSet>,
        now: SystemTime,
    ) -> Option<SpiffeId> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let hit = entries.get(key)?;
        (Arc::ptr_eq(&hit.bundles, bundles) && hit.not_before <= now && now <= hit.not_after)
            .then(|| hit.spiffe_id.clone())
    }

    /// Remembers a chain that `x509::verify` just accepted against `bundles`.
    pub fn put(
        &self,
        key: [u8; 32],
        bundles: Arc<svid_broker_identity::bundle::BundleSet>,
        verified: &svid_broker_identity::x509::VerifiedX509Svid,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_CACHED_CHAINS {
            entries.clear();
        }
        entries.insert(
            key,
            VerifiedChain {
                bundles,
                spiffe_id: verified.spiffe_id().clone(),
                not_before: verified.chain_not_before(),
                not_after: verified.chain_not_after(),
            },
        );
    }
}

/// Seconds since the Unix epoch, 0 before it.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
