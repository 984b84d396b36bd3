//! [`WorkloadApiSource`]: bundles and the workload's own SVIDs from the SPIFFE Workload API.
//!
//! # What we rely on from the `spiffe` crate (0.19)
//!
//! The connection lifecycle is the `spiffe` crate's [`X509Source`] and [`JwtSource`]; we do not
//! re-implement it. Read from its source (`x509_source/supervisor.rs`,
//! `jwt_source/supervisor.rs`, `workload_api/supervisor_common.rs`):
//!
//! - the endpoint is the configured one, else `SPIFFE_ENDPOINT_SOCKET` (Workload Endpoint §4);
//!   every request carries the `workload.spiffe.io: true` header;
//! - streams are reconnected with exponential backoff between the builder's min and max
//!   (default 200 ms .. 10 s), with a slower backoff while the agent answers "no identity issued";
//! - an `INVALID_ARGUMENT` (or `UNIMPLEMENTED`) answer during initial sync is **not retried**: the
//!   build fails at once (Workload Endpoint §6: clients SHOULD NOT retry `InvalidArgument`);
//! - `initial_sync_timeout` bounds the initial sync;
//! - a `PermissionDenied` withdraws the material: `X509Source::svid` then fails until the agent
//!   issues an identity again.
//!
//! # What this source adds
//!
//! - The bundles of both streams are converted into one [`BundleSet`]: X.509 authorities (DER)
//!   become [`X509Bundle`]s; the JWT authorities, which the `spiffe` crate keeps as raw JWK JSON,
//!   are reassembled into a JWK Set and parsed with [`SpiffeBundle::parse_document`], so the
//!   identity crate's key rules apply (only `use: jwt-svid` keys count). One caveat: the
//!   `spiffe` crate indexes JWT authorities by `kid` and silently keeps the last of duplicates,
//!   so a duplicate-`kid` JWKS from the agent is not rejected here. The set is re-published
//!   on every update of either stream. A conversion failure or withdrawal keeps the last good
//!   set and is recorded in [`WorkloadApiSource::last_error`].
//! - [`WorkloadApiSource::x509_svid`] returns the current own X.509-SVID with its key in a
//!   zeroizing, redacted [`SvidPrivateKey`]; [`WorkloadApiSource::fetch_jwt_svid`] fetches a
//!   JWT-SVID as a redacted [`JwtSvidToken`].
//! - A failed initial sync is classified: socket missing, endpoint unreachable, no identity
//!   issued yet, request rejected, or plain timeout.

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use spiffe::transport::Endpoint;
use spiffe::{JwtSource, JwtSourceError, WorkloadApiClient, X509Source, X509SourceError};
use svid_broker_identity::bundle::{
    BundleError, BundleProvider, BundleSet, JwtBundle, SpiffeBundle, X509Bundle,
};
use svid_broker_identity::id::{IdError, SpiffeId, TrustDomain};
use svid_broker_identity::limits::{MAX_JWT_AUDIENCE_LEN, MAX_JWT_AUDIENCES};
use svid_broker_identity::report::ErrorChain;

use crate::secret::{JwtSvidToken, SvidPrivateKey};
use crate::snapshot::{AbortOnDrop, Snapshot, Updates};

/// Default bound on the initial sync of each stream.
pub const DEFAULT_INITIAL_SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the diagnosis after a timed-out initial sync may take.
pub const DIAGNOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The environment variable naming the Workload API endpoint (Workload Endpoint §4).
pub const ENDPOINT_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

/// Where the Workload API is, and how long to wait for and between connections to it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WorkloadApiOptions {
    /// `unix:///path` or `tcp://ip:port`; `None` reads [`ENDPOINT_ENV`].
    pub endpoint: Option<String>,
    /// Bound on each stream's initial sync. Default [`DEFAULT_INITIAL_SYNC_TIMEOUT`].
    pub initial_sync_timeout: Duration,
    /// Reconnect backoff `(min, max)`; `None` keeps the `spiffe` crate's default.
    pub reconnect_backoff: Option<(Duration, Duration)>,
}

impl Default for WorkloadApiOptions {
    fn default() -> Self {
        Self {
            endpoint: None,
            initial_sync_timeout: DEFAULT_INITIAL_SYNC_TIMEOUT,
            reconnect_backoff: None,
        }
    }
}

impl WorkloadApiOptions {
    /// Sets the endpoint.
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets the initial sync timeout.
    #[must_use]
    pub fn initial_sync_timeout(mut self, timeout: Duration) -> Self {
        self.initial_sync_timeout = timeout;
        self
    }

    /// Sets the reconnect backoff bounds.
    #[must_use]
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_backoff = Some((min, max));
        self
    }
}

/// Which Workload API stream an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiStream {
    /// `FetchX509SVID`.
    X509,
    /// `FetchJWTBundles` / `FetchJWTSVID`.
    Jwt,
}

impl fmt::Display for ApiStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::X509 => "x509",
            Self::Jwt => "jwt",
        })
    }
}

/// Why the Workload API source could not start or serve a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadSourceError {
    /// No endpoint configured and [`ENDPOINT_ENV`] unset.
    #[error("no workload api endpoint configured and {ENDPOINT_ENV} is not set")]
    NoEndpoint,
    /// The endpoint text is not a valid Workload API endpoint URI.
    #[error("invalid workload api endpoint")]
    InvalidEndpoint {
        /// The parser's reason.
        #[source]
        source: spiffe::transport::EndpointError,
    },
    /// The endpoint is a Unix socket path that does not exist.
    #[error("workload api socket {} does not exist", .path.display())]
    SocketMissing {
        /// The socket's path, from the `unix://` endpoint.
        path: PathBuf,
    },
    /// The endpoint cannot be connected to.
    #[error("workload api endpoint is unreachable")]
    Unreachable {
        /// Why the diagnostic connection, made after the initial sync timed out, failed.
        #[source]
        source: spiffe::WorkloadApiError,
    },
    /// The agent answered, but has not issued an identity to this workload (yet).
    #[error("the workload api has issued no identity to this workload")]
    NoIdentityIssued,
    /// The agent rejected the request as invalid (`INVALID_ARGUMENT`); not retried.
    #[error("the workload api rejected the {stream} request as invalid, not retrying")]
    Rejected {
        /// Which Workload API stream (X.509-SVIDs, or JWT bundles and SVIDs).
        stream: ApiStream,
    },
    /// The initial sync did not complete in time, for no more specific reason found.
    #[error("initial sync of the {stream} stream did not complete within {timeout:?}")]
    InitialSyncTimeout {
        /// Which Workload API stream (X.509-SVIDs, or JWT bundles and SVIDs).
        stream: ApiStream,
        /// [`WorkloadApiOptions::initial_sync_timeout`], which ran out.
        timeout: Duration,
    },
    /// The X.509 source failed.
    #[error("x509 workload api source failed")]
    X509 {
        /// The `spiffe` crate's error.
        #[source]
        source: X509SourceError,
    },
    /// The JWT source failed.
    #[error("jwt workload api source failed")]
    Jwt {
        /// The `spiffe` crate's error.
        #[source]
        source: JwtSourceError,
    },
    /// A trust domain or SPIFFE ID from the Workload API is not valid under our parser.
    #[error("the workload api sent an invalid spiffe id or trust domain")]
    InvalidId {
        /// The parser's reason.
        #[source]
        source: IdError,
    },
    /// A bundle from the Workload API was rejected by the identity crate.
    #[error("the workload api sent an invalid bundle for trust domain {trust_domain}")]
    InvalidBundle {
        /// The trust domain the Workload API sent the bundle under.
        trust_domain: TrustDomain,
        /// What was rejected.
        #[source]
        source: BundleError,
    },
    /// The JWT-SVID request has no audience.
    #[error("a jwt-svid request needs at least one audience")]
    NoAudience,
    /// Too many audiences, or one too long.
    #[error(
        "jwt-svid audiences exceed the limits ({MAX_JWT_AUDIENCES} values of at most {MAX_JWT_AUDIENCE_LEN} bytes)"
    )]
    AudienceLimits,
    /// An empty audience value.
    #[error("a jwt-svid audience must not be empty")]
    EmptyAudience,
    /// [`WorkloadApiSource::connect`] was called outside a tokio runtime.
    #[error("{}", crate::RUNTIME_MISSING)]
    NoRuntime,
}

/// The workload's own X.509-SVID.
#[derive(Clone)]
pub struct OwnX509Svid {
    spiffe_id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    key: SvidPrivateKey,
}

impl OwnX509Svid {
    /// The SVID's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The private key (zeroized on drop, redacted in `Debug`).
    pub fn private_key(&self) -> &SvidPrivateKey {
        &self.key
    }
}

impl fmt::Debug for OwnX509Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnX509Svid")
            .field("spiffe_id", &self.spiffe_id)
            .field("chain_len", &self.chain.len())
            .field("key", &self.key)
            .finish()
    }
}

/// Bundles and own SVIDs from the SPIFFE Workload API. See the [module docs](self).
pub struct WorkloadApiSource {
    inner: Arc<Inner>,
    _task: AbortOnDrop,
}

struct Inner {
    x509: X509Source,
    jwt: JwtSource,
    snapshot: Snapshot,
    status: Mutex<Status>,
}

#[derive(Default)]
struct Status {
    last_error: Option<Arc<WorkloadSourceError>>,
    error_count: u64,
}

impl WorkloadApiSource {
    /// Connects, waits (bounded) for the first X.509 context and JWT bundles, publishes the
    /// bundles and starts following both streams.
    ///
    /// # Errors
    /// [`WorkloadSourceError`] saying why the initial sync failed.
    pub async fn connect(options: WorkloadApiOptions) -> Result<Self, WorkloadSourceError> {
        let handle =
            tokio::runtime::Handle::try_current().map_err(|_| WorkloadSourceError::NoRuntime)?;
        let raw = match options.endpoint.clone() {
            Some(e) => e,
            None => std::env::var(ENDPOINT_ENV).map_err(|_| WorkloadSourceError::NoEndpoint)?,
        };
        let endpoint = Endpoint::parse(&raw)
            .map_err(|source| WorkloadSourceError::InvalidEndpoint { source })?;
        if let Endpoint::Unix(path) = &endpoint
            && !path.exists()
        {
            return Err(WorkloadSourceError::SocketMissing { path: path.clone() });
        }

        let timeout = options.initial_sync_timeout;
        let mut x509_builder = X509Source::builder()
            .endpoint(&raw)
            .initial_sync_timeout(timeout);
        let mut jwt_builder = JwtSource::builder()
            .endpoint(&raw)
            .initial_sync_timeout(timeout);
        if let Some((min, max)) = options.reconnect_backoff {
            x509_builder = x509_builder.reconnect_backoff(min, max);
            jwt_builder = jwt_builder.reconnect_backoff(min, max);
        }
        // Both initial syncs run at once, so startup is bounded by one timeout, not two.
        let (x509, jwt) = tokio::join!(x509_builder.build(), jwt_builder.build());
        let x509 = match x509 {
            Ok(s) => s,
            Err(e) => return Err(classify_x509(e, &endpoint, timeout).await),
        };
        let jwt = match jwt {
            Ok(s) => s,
            Err(e) => return Err(classify_jwt(e, &endpoint, timeout).await),
        };

        // Subscribe before the first conversion, so an update racing it is not lost.
        let (x509_updates, jwt_updates) = (x509.updated(), jwt.updated());
        let initial = convert(&x509, &jwt)?;
        let inner = Arc::new(Inner {
            x509,
            jwt,
            snapshot: Snapshot::new(initial),
            status: Mutex::new(Status::default()),
        });
        let task = handle.spawn(follow(Arc::downgrade(&inner), x509_updates, jwt_updates));
        Ok(Self {
            inner,
            _task: AbortOnDrop(task),
        })
    }

    /// The current own X.509-SVID (the default identity, the first the agent lists).
    ///
    /// # Errors
    /// [`WorkloadSourceError::X509`] when the material is withdrawn or the source closed.
    pub fn x509_svid(&self) -> Result<OwnX509Svid, WorkloadSourceError> {
        let svid = self
            .inner
            .x509
            .svid()
            .map_err(|source| WorkloadSourceError::X509 { source })?;
        let spiffe_id = SpiffeId::parse(&svid.spiffe_id().to_string())
            .map_err(|source| WorkloadSourceError::InvalidId { source })?;
        let chain = svid
            .cert_chain()
            .iter()
            .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
            .collect();
        Ok(OwnX509Svid {
            spiffe_id,
            chain,
            key: SvidPrivateKey::from_pkcs8_der(svid.private_key().as_bytes()),
        })
    }

    /// Fetches a JWT-SVID of the default identity for `audiences` (Workload API `FetchJWTSVID`).
    ///
    /// # Errors
    /// Audience rule violations ([`WorkloadSourceError::NoAudience`],
    /// [`WorkloadSourceError::EmptyAudience`], [`WorkloadSourceError::AudienceLimits`]) or
    /// [`WorkloadSourceError::Jwt`].
    pub async fn fetch_jwt_svid<S: AsRef<str>>(
        &self,
        audiences: &[S],
    ) -> Result<JwtSvidToken, WorkloadSourceError> {
        check_audiences(audiences)?;
        let svid = self
            .inner
            .jwt
            .fetch_jwt_svid(audiences.iter().map(AsRef::as_ref))
            .await
            .map_err(|source| WorkloadSourceError::Jwt { source })?;
        let spiffe_id = SpiffeId::parse(&svid.spiffe_id().to_string())
            .map_err(|source| WorkloadSourceError::InvalidId { source })?;
        Ok(JwtSvidToken::new(
            svid.token(),
            spiffe_id,
            svid.audience().to_vec(),
            svid.claims().exp(),
        ))
    }

    /// The update signal: advances on every published bundle set.
    pub fn subscribe(&self) -> Updates {
        self.inner.snapshot.subscribe()
    }

    /// The most recent failed update, cleared by the next successful one.
    pub fn last_error(&self) -> Option<Arc<WorkloadSourceError>> {
        self.inner.status().last_error.clone()
    }

    /// How many updates failed since the source was built.
    pub fn error_count(&self) -> u64 {
        self.inner.status().error_count
    }

    /// Closes both Workload API streams and waits for their tasks (bounded by the `spiffe`
    /// crate's 30 s shutdown grace).
    pub async fn shutdown(&self) {
        let _ = self.inner.x509.shutdown_configured().await;
        let _ = self.inner.jwt.shutdown_configured().await;
    }
}

impl BundleProvider for WorkloadApiSource {
    fn bundles(&self) -> Arc<BundleSet> {
        self.inner.snapshot.load()
    }
}

impl fmt::Debug for WorkloadApiSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadApiSource")
            .field("revision", &self.inner.snapshot.revision())
            .field("error_count", &self.error_count())
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn rebuild(&self) {
        match convert(&self.x509, &self.jwt) {
            Ok(set) => {
                self.snapshot.publish(Arc::new(set));
                self.status().last_error = None;
                tracing::debug!("workload api bundles updated");
            }
            Err(e) => {
                tracing::warn!(error = %ErrorChain::new(&e), "workload api update rejected, keeping the last good bundles");
                let mut status = self.status();
                status.error_count = status.error_count.saturating_add(1);
                status.last_error = Some(Arc::new(e));
            }
        }
    }
}

/// Re-publishes on every update of either stream until either source closes or ours drops.
async fn follow(
    weak: std::sync::Weak<Inner>,
    mut x509_updates: spiffe::X509SourceUpdates,
    mut jwt_updates: spiffe::JwtSourceUpdates,
) {
    loop {
        let closed = tokio::select! {
            r = x509_updates.changed() => r.is_err(),
            r = jwt_updates.changed() => r.is_err(),
        };
        if closed {
            tracing::debug!("workload api source closed");
            return;
        }
        let Some(inner) = weak.upgrade() else {
            return;
        };
        inner.rebuild();
    }
}

/// Builds our [`BundleSet`] from both sources' current bundles.
fn convert(x509: &X509Source, jwt: &JwtSource) -> Result<BundleSet, WorkloadSourceError> {
    let x509_set = x509
        .bundle_set()
        .map_err(|source| WorkloadSourceError::X509 { source })?;
    let jwt_set = jwt
        .bundle_set()
        .map_err(|source| WorkloadSourceError::Jwt { source })?;

    let mut names: Vec<&str> = x509_set
        .iter()
        .map(|(td, _)| td.as_str())
        .chain(jwt_set.iter().map(|(td, _)| td.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();

    let mut set = BundleSet::new();
    for name in names {
        let td =
            TrustDomain::parse(name).map_err(|source| WorkloadSourceError::InvalidId { source })?;
        let bundle_err = |source| WorkloadSourceError::InvalidBundle {
            trust_domain: td.clone(),
            source,
        };
        let x509_bundle = match x509_set.iter().find(|(t, _)| t.as_str() == name) {
            Some((_, b)) => X509Bundle::new(
                td.clone(),
                b.authorities()
                    .iter()
                    .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
                    .collect(),
            )
            .map_err(bundle_err)?,
            None => X509Bundle::empty(td.clone()),
        };
        let jwt_bundle = match jwt_set.iter().find(|(t, _)| t.as_str() == name) {
            Some((_, b)) => {
                let jwks = jwks_document(b.jwt_authorities().map(|a| a.jwk_json()));
                SpiffeBundle::parse_document(td.clone(), &jwks)
                    .map_err(bundle_err)?
                    .jwt()
                    .clone()
            }
            None => JwtBundle::empty(td.clone()),
        };
        let bundle = SpiffeBundle::new(x509_bundle, jwt_bundle).map_err(bundle_err)?;
        set.insert(bundle).map_err(bundle_err)?;
    }
    Ok(set)
}

/// Reassembles a JWK Set from single JWK JSON objects. Each one was produced by
/// `serde_json::to_vec` in the `spiffe` crate, so joining them with commas is valid JSON.
fn jwks_document<'a>(keys: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = b"{\"keys\":[".to_vec();
    for (i, key) in keys.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(key);
    }
    out.extend_from_slice(b"]}");
    out
}

fn check_audiences<S: AsRef<str>>(audiences: &[S]) -> Result<(), WorkloadSourceError> {
    if audiences.is_empty() {
        return Err(WorkloadSourceError::NoAudience);
    }
    if audiences.len() > MAX_JWT_AUDIENCES {
        return Err(WorkloadSourceError::AudienceLimits);
    }
    for a in audiences {
        let a = a.as_ref();
        if a.is_empty() {
            return Err(WorkloadSourceError::EmptyAudience);
        }
        if a.len() > MAX_JWT_AUDIENCE_LEN {
            return Err(WorkloadSourceError::AudienceLimits);
        }
    }
    Ok(())
}

async fn classify_x509(
    e: X509SourceError,
    endpoint: &Endpoint,
    timeout: Duration,
) -> WorkloadSourceError {
    match e {
        X509SourceError::Source(ref inner) if inner.is_invalid_argument() => {
            WorkloadSourceError::Rejected {
                stream: ApiStream::X509,
            }
        }
        X509SourceError::InitialSyncTimeout => diagnose(endpoint, ApiStream::X509, timeout).await,
        source => WorkloadSourceError::X509 { source },
    }
}

async fn classify_jwt(
    e: JwtSourceError,
    endpoint: &Endpoint,
    timeout: Duration,
) -> WorkloadSourceError {
    match e {
        JwtSourceError::Source(ref inner) if inner.is_invalid_argument() => {
            WorkloadSourceError::Rejected {
                stream: ApiStream::Jwt,
            }
        }
        JwtSourceError::InitialSyncTimeout => diagnose(endpoint, ApiStream::Jwt, timeout).await,
        source => WorkloadSourceError::Jwt { source },
    }
}

/// After a timed-out initial sync, one quick probe tells "unreachable" from "no identity yet".
async fn diagnose(
    endpoint: &Endpoint,
    stream: ApiStream,
    timeout: Duration,
) -> WorkloadSourceError {
    let fallback = WorkloadSourceError::InitialSyncTimeout { stream, timeout };
    let probe = async {
        let client = match WorkloadApiClient::connect(endpoint.clone()).await {
            Ok(c) => c,
            Err(source) => return WorkloadSourceError::Unreachable { source },
        };
        let result = match stream {
            ApiStream::X509 => client.fetch_x509_svid().await.map(drop),
            ApiStream::Jwt => client.fetch_jwt_bundles().await.map(drop),
        };
        match result {
            Err(spiffe::WorkloadApiError::NoIdentityIssued) => {
                WorkloadSourceError::NoIdentityIssued
            }
            Err(spiffe::WorkloadApiError::PermissionDenied(_)) => {
                WorkloadSourceError::NoIdentityIssued
            }
            // The probe answered, or failed some other way: nothing more specific to say than
            // that the first sync did not arrive in time.
            _ => WorkloadSourceError::InitialSyncTimeout { stream, timeout },
        }
    };
    tokio::time::timeout(DIAGNOSE_TIMEOUT, probe)
        .await
        .unwrap_or(fallback)
}
