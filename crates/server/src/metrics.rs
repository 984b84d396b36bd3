//! Prometheus metrics, rendered by hand (no metrics dependency). Labels are fixed enums:
//! never a subject, token or other caller input.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::ErrorCode;
use crate::request::{Endpoint, ExchangeKind};

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
    /// `/federation/.well-known/openid-configuration`.
    FederationDiscovery,
    /// `/federation/jwks.json`.
    FederationJwks,
    /// `/healthz`, `/readyz`.
    Health,
    /// `/metrics`.
    Metrics,
    /// The gRPC `Exchange` call, served on the gRPC listener (not the realm's).
    GrpcExchange,
    /// `POST /oauth2/token`.
    OAuth2Token,
    /// Anything else.
    Other,
}

impl Route {
    const ALL: [Self; 11] = [
        Self::TokenGet,
        Self::TokenPost,
        Self::Jwks,
        Self::OpenidConfiguration,
        Self::FederationDiscovery,
        Self::FederationJwks,
        Self::Health,
        Self::Metrics,
        Self::GrpcExchange,
        Self::OAuth2Token,
        Self::Other,
    ];

    /// The `route` label value, snake_case (`token_get`, `grpc_exchange`, ...).
    pub fn label(self) -> &'static str {
        match self {
            Self::TokenGet => "token_get",
            Self::TokenPost => "token_post",
            Self::Jwks => "jwks",
            Self::OpenidConfiguration => "openid_configuration",
            Self::FederationDiscovery => "federation_discovery",
            Self::FederationJwks => "federation_jwks",
            Self::Health => "health",
            Self::Metrics => "metrics",
            Self::GrpcExchange => "grpc_exchange",
            Self::OAuth2Token => "oauth2_token",
            Self::Other => "other",
        }
    }

    /// The histogram slot: an exhaustive match, so a new route cannot share another's slot.
    fn index(self) -> usize {
        match self {
            Self::TokenGet => 0,
            Self::TokenPost => 1,
            Self::Jwks => 2,
            Self::OpenidConfiguration => 3,
            Self::Health => 4,
            Self::Metrics => 5,
            Self::GrpcExchange => 6,
            Self::Other => 7,
            Self::FederationDiscovery => 8,
            Self::FederationJwks => 9,
            Self::OAuth2Token => 10,
        }
    }
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

const ENDPOINTS: [Endpoint; 4] = [
    Endpoint::RealmGet,
    Endpoint::RealmPost,
    Endpoint::Grpc,
    Endpoint::OAuth2Token,
];
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
    issued: [[AtomicU64; 2]; ENDPOINTS.len()],
    denied: [[AtomicU64; 5]; ENDPOINTS.len()],
    refused: [[AtomicU64; REFUSALS.len()]; ENDPOINTS.len()],
    audit_write_errors: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    policy_reloads_ok: AtomicU64,
    policy_reloads_failed: AtomicU64,
    key_rotations: AtomicU64,
    latency: [Histogram; Route::ALL.len()],
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

/// Counter slots are exhaustive matches, so a new variant cannot silently count as another.
fn endpoint_index(e: Endpoint) -> usize {
    match e {
        Endpoint::RealmGet => 0,
        Endpoint::RealmPost => 1,
        Endpoint::Grpc => 2,
        Endpoint::OAuth2Token => 3,
    }
}

fn code_index(code: ErrorCode) -> usize {
    match code {
        ErrorCode::InvalidArgument => 0,
        ErrorCode::Unauthenticated => 1,
        ErrorCode::PermissionDenied => 2,
        ErrorCode::ResourceExhausted => 3,
        ErrorCode::Unavailable => 4,
    }
}

const ISSUED_KINDS: [ExchangeKind; 2] = [ExchangeKind::AccessToken, ExchangeKind::LoginCredential];

fn kind_index(kind: ExchangeKind) -> usize {
    match kind {
        ExchangeKind::AccessToken => 0,
        ExchangeKind::LoginCredential => 1,
    }
}

fn refusal_index(refusal: Refusal) -> usize {
    match refusal {
        Refusal::NothingGranted => 0,
    }
}

impl Metrics {
    /// Counts an issued access token or login credential.
    pub fn issued(&self, endpoint: Endpoint, kind: ExchangeKind) {
        self.issued[endpoint_index(endpoint)][kind_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused request.
    pub fn denied(&self, endpoint: Endpoint, code: ErrorCode) {
        self.denied[endpoint_index(endpoint)][code_index(code)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request answered with nothing granted.
    pub fn refused(&self, endpoint: Endpoint, refusal: Refusal) {
        self.refused[endpoint_index(endpoint)][refusal_index(refusal)]
            .fetch_add(1, Ordering::Relaxed);
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

    /// The Prometheus text exposition of the counters this value owns.
    pub fn render(&self) -> String {
        self.render_with_caches(&[])
    }

    /// The exposition with the verified caches' figures appended (what `/metrics` serves:
    /// the caches keep their own counters under their locks, so a scrape reads them then).
    pub fn render_with_caches(&self, caches: &[VerifiedCacheFigures]) -> String {
        self.render_with(caches, &[])
    }

    /// [`Self::render_with_caches`], plus the figures of each registry backend (Harbor):
    /// API requests by step and outcome, and credentials created, reused, revoked and swept.
    pub fn render_with(
        &self,
        caches: &[VerifiedCacheFigures],
        backends: &[svid_broker_backends::BackendFigures],
    ) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = self.write(&mut out);
        if !caches.is_empty() {
            let _ = write_verified_caches(&mut out, caches);
        }
        if !backends.is_empty() {
            let _ = write_backends(&mut out, backends);
        }
        out
    }

    fn write(&self, out: &mut String) -> fmt::Result {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        writeln!(
            out,
            "# HELP svid_broker_issued_total Tokens and login credentials issued."
        )?;
        writeln!(out, "# TYPE svid_broker_issued_total counter")?;
        for endpoint in &ENDPOINTS {
            for kind in ISSUED_KINDS {
                writeln!(
                    out,
                    "svid_broker_issued_total{{endpoint=\"{}\",kind=\"{}\"}} {}",
                    endpoint.label(),
                    kind.label(),
                    load(&self.issued[endpoint_index(*endpoint)][kind_index(kind)])
                )?;
            }
        }
        writeln!(
            out,
            "# HELP svid_broker_denied_total Requests refused, by error class."
        )?;
        writeln!(out, "# TYPE svid_broker_denied_total counter")?;
        for endpoint in &ENDPOINTS {
            for code in &CODES {
                writeln!(
                    out,
                    "svid_broker_denied_total{{endpoint=\"{}\",code=\"{}\"}} {}",
                    endpoint.label(),
                    code.label(),
                    load(&self.denied[endpoint_index(*endpoint)][code_index(*code)])
                )?;
            }
        }
        writeln!(
            out,
            "# HELP svid_broker_refused_total Authenticated requests answered with nothing granted, by reason."
        )?;
        writeln!(out, "# TYPE svid_broker_refused_total counter")?;
        for endpoint in &ENDPOINTS {
            for refusal in &REFUSALS {
                writeln!(
                    out,
                    "svid_broker_refused_total{{endpoint=\"{}\",reason=\"{}\"}} {}",
                    endpoint.label(),
                    refusal.label(),
                    load(&self.refused[endpoint_index(*endpoint)][refusal_index(*refusal)])
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

/// Which verified cache a figure is about: the `cache` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifiedCacheKind {
    /// Verified X.509-SVID chains (mTLS callers).
    X509Svid,
    /// Validated JWT-SVIDs (bearer and realm callers).
    JwtSvid,
    /// Verified `sbl1.` login credentials.
    LoginCredential,
}

impl VerifiedCacheKind {
    /// Every cache, in exposition order.
    pub const ALL: [Self; 3] = [Self::X509Svid, Self::JwtSvid, Self::LoginCredential];

    /// The `cache` label value (`x509_svid`, `jwt_svid` or `login_credential`).
    pub fn label(self) -> &'static str {
        match self {
            Self::X509Svid => "x509_svid",
            Self::JwtSvid => "jwt_svid",
            Self::LoginCredential => "login_credential",
        }
    }
}

/// One verified cache's figures at the time of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedCacheFigures {
    /// Which cache.
    pub cache: VerifiedCacheKind,
    /// Presentations answered from the cache since start.
    pub hits: u64,
    /// Presentations that were verified in full since start (refusals included).
    pub misses: u64,
    /// Entries pushed out by the entry or byte cap since start.
    pub evictions: u64,
    /// Entries held now.
    pub entries: u64,
    /// Estimated bytes held now (the figure the byte cap bounds).
    pub bytes: u64,
}

impl VerifiedCacheFigures {
    /// Figures of a cache that has seen nothing.
    pub fn empty(cache: VerifiedCacheKind) -> Self {
        Self {
            cache,
            hits: 0,
            misses: 0,
            evictions: 0,
            entries: 0,
            bytes: 0,
        }
    }
}

fn write_verified_caches(out: &mut String, caches: &[VerifiedCacheFigures]) -> fmt::Result {
    writeln!(
        out,
        "# HELP svid_broker_verified_cache_lookups_total Presented credentials looked up in a verified cache, by result."
    )?;
    writeln!(
        out,
        "# TYPE svid_broker_verified_cache_lookups_total counter"
    )?;
    for c in caches {
        for (result, value) in [("hit", c.hits), ("miss", c.misses)] {
            writeln!(
                out,
                "svid_broker_verified_cache_lookups_total{{cache=\"{}\",result=\"{result}\"}} {value}",
                c.cache.label()
            )?;
        }
    }
    for (name, kind, help, value) in [
        (
            "svid_broker_verified_cache_evictions_total",
            "counter",
            "Verified-cache entries pushed out by a cap.",
            (|c: &VerifiedCacheFigures| c.evictions) as fn(&VerifiedCacheFigures) -> u64,
        ),
        (
            "svid_broker_verified_cache_entries",
            "gauge",
            "Verified-cache entries held.",
            |c| c.entries,
        ),
        (
            "svid_broker_verified_cache_bytes",
            "gauge",
            "Estimated bytes held by a verified cache.",
            |c| c.bytes,
        ),
    ] {
        writeln!(out, "# HELP {name} {help}")?;
        writeln!(out, "# TYPE {name} {kind}")?;
        for c in caches {
            writeln!(out, "{name}{{cache=\"{}\"}} {}", c.cache.label(), value(c))?;
        }
    }
    Ok(())
}

/// The registry backends' families. Labels are the registry's policy name (bounded by the
/// policy's registry cap, operator-written), its kind, and fixed step and outcome words.
fn write_backends(
    out: &mut String,
    backends: &[svid_broker_backends::BackendFigures],
) -> fmt::Result {
    writeln!(
        out,
        "# HELP svid_broker_backend_api_requests_total Calls to a registry's own API, by step and outcome."
    )?;
    writeln!(out, "# TYPE svid_broker_backend_api_requests_total counter")?;
    for b in backends {
        for r in &b.api_requests {
            writeln!(
                out,
                "svid_broker_backend_api_requests_total{{registry=\"{}\",kind=\"{}\",step=\"{}\",outcome=\"{}\"}} {}",
                b.registry, b.kind, r.step, r.outcome, r.count
            )?;
        }
    }
    writeln!(
        out,
        "# HELP svid_broker_backend_credentials_total Registry credentials by what happened to them: created, reused (handed out again while live), revoked (deleted at their time), expired (past their time at a registry that cannot revoke them: Quay, Artifactory), swept (deleted by the sweeper), revoke_failed."
    )?;
    writeln!(out, "# TYPE svid_broker_backend_credentials_total counter")?;
    for b in backends {
        for (event, value) in [
            ("created", b.credentials_created),
            ("reused", b.credentials_reused),
            ("revoked", b.credentials_revoked),
            ("expired", b.credentials_expired),
            ("swept", b.credentials_swept),
            ("revoke_failed", b.revoke_failures),
        ] {
            writeln!(
                out,
                "svid_broker_backend_credentials_total{{registry=\"{}\",kind=\"{}\",event=\"{event}\"}} {value}",
                b.registry, b.kind
            )?;
        }
    }
    writeln!(
        out,
        "# HELP svid_broker_backend_live_credentials Registry credentials this replica hands out again while they live."
    )?;
    writeln!(out, "# TYPE svid_broker_backend_live_credentials gauge")?;
    for b in backends {
        writeln!(
            out,
            "svid_broker_backend_live_credentials{{registry=\"{}\",kind=\"{}\"}} {}",
            b.registry, b.kind, b.live_leases
        )?;
    }
    writeln!(
        out,
        "# HELP svid_broker_backend_pending_revocations Registry credentials waiting for their revocation time."
    )?;
    writeln!(out, "# TYPE svid_broker_backend_pending_revocations gauge")?;
    for b in backends {
        writeln!(
            out,
            "svid_broker_backend_pending_revocations{{registry=\"{}\",kind=\"{}\"}} {}",
            b.registry, b.kind, b.queued_revocations
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
