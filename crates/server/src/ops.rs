//! Operations: audit events, Prometheus metrics, the per-subject rate limiter and the
//! issued-token cache. All synchronous and lock-light; nothing here ever sees a token's text
//! except the cache, which holds issued tokens in their redacting wrapper.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
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

    /// Writes one event as a JSON line. Audit failures are logged, never fatal: refusing
    /// service because stderr is closed would turn an ops problem into an outage.
    pub fn emit(&self, event: &AuditEvent<'_>) {
        let Ok(mut line) = serde_json::to_string(event) else {
            return;
        };
        line.push('\n');
        let result = match self {
            Self::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            Self::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
            Self::File(file) => file
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .write_all(line.as_bytes()),
            Self::Memory(lines) => {
                let mut lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
                if lines.len() >= MAX_MEMORY_AUDIT_LINES {
                    lines.remove(0);
                }
                line.pop();
                lines.push(line);
                Ok(())
            }
            Self::Discard => Ok(()),
        };
        if let Err(error) = result {
            tracing::warn!(%error, "audit event could not be written");
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
    /// `allow` or `deny`.
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
    /// `access_token` or `login_credential`.
    pub kind: &'static str,
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
}

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
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    policy_reloads_ok: AtomicU64,
    policy_reloads_failed: AtomicU64,
    key_rotations: AtomicU64,
    latency: [Histogram; 8],
}

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
        for (name, help, v) in [
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

/// A token bucket per SPIFFE ID. Time comes from the caller, so tests are deterministic.
#[derive(Debug)]
pub struct RateLimiter {
    limit: Option<RateLimit>,
    buckets: Mutex<HashMap<SpiffeId, Bucket>>,
}

impl RateLimiter {
    /// A limiter; `None` never limits.
    pub fn new(limit: Option<RateLimit>) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `subject` at `now`; on refusal returns how long until one is
    /// available.
    ///
    /// # Errors
    /// The wait, when the bucket is empty.
    pub fn check(&self, subject: &SpiffeId, now: SystemTime) -> Result<(), Duration> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_RATE_LIMITED_SUBJECTS && !buckets.contains_key(subject) {
            let refill = |b: &Bucket| {
                b.tokens
                    + now.duration_since(b.at).unwrap_or_default().as_secs_f64() * limit.per_second
            };
            buckets.retain(|_, b| refill(b) < limit.burst);
            if buckets.len() >= MAX_RATE_LIMITED_SUBJECTS {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(subject.clone()).or_insert(Bucket {
            tokens: limit.burst,
            at: now,
        });
        // A clock that went back refills nothing rather than panicking or going negative.
        let elapsed = now.duration_since(bucket.at).unwrap_or_default();
        bucket.tokens = (bucket.tokens + elapsed.as_secs_f64() * limit.per_second).min(limit.burst);
        bucket.at = bucket.at.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / limit.per_second;
            Err(Duration::from_secs_f64(wait.clamp(0.0, 3600.0)))
        }
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
