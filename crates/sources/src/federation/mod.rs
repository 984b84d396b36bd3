//! [`FederationSource`]: the bundle of one foreign trust domain, fetched from its SPIFFE bundle
//! endpoint (SPIFFE_Federation.md) and refreshed as its `spiffe_refresh_hint` asks.
//!
//! # Profiles
//!
//! - `https_web` (§5.2.1): ordinary Web PKI. The server certificate is checked by rustls'
//!   webpki verifier against [`WebRoots`] (Mozilla's roots from `webpki-roots` by default, or
//!   configured roots for a private CA) with the normal hostname check against the URL's host.
//! - `https_spiffe` (§5.2.2): the server certificate must be an X.509-SVID whose SPIFFE ID is
//!   exactly the configured endpoint ID. It is verified with
//!   [`svid_broker_identity::tls::SpiffeServerCertVerifier`] and [`Authorizer::Exact`] against
//!   the bundle of the endpoint's trust domain. When the endpoint serves its own trust domain's
//!   bundle (the usual case), the first fetch uses the operator's bootstrap bundle and every later
//!   fetch uses the latest bundle fetched (§5.2.2: "MUST use the latest"). When the endpoint lives
//!   in another trust domain, the bootstrap bundle is used for every fetch.
//!
//! # Refresh and failure policy
//!
//! - One GET over HTTP/1.1 per refresh, bounded by [`FederationOptions::fetch_timeout`] and
//!   [`FederationOptions::max_response_bytes`]. Redirects are not followed: a 3xx is a failed
//!   refresh ([`FetchError::Redirect`]).
//! - The next refresh happens after the current bundle's `spiffe_refresh_hint` (5 minutes when
//!   absent, spec §4.1.2), clamped to [`FederationOptions::min_refresh`] ..
//!   [`FederationOptions::max_refresh`]. A failed refresh waits the same interval: a broken peer
//!   is not hammered.
//! - A fetched bundle whose `spiffe_sequence` is lower than the current one is ignored
//!   ([`FederationError::SequenceRegressed`]); a missing sequence on either side is accepted.
//! - Any failure keeps the last good bundle, counts in [`FederationSource::error_count`] and is
//!   kept in [`FederationSource::last_error`].

mod fetch;
#[cfg(test)]
mod tests;
mod url;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use rustls::client::danger::ServerCertVerifier;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use svid_broker_identity::authorize::Authorizer;
use svid_broker_identity::bundle::{BundleError, BundleProvider, BundleSet, SpiffeBundle};
use svid_broker_identity::id::{SpiffeId, TrustDomain};
use svid_broker_identity::report::ErrorChain;
use svid_broker_identity::tls::SpiffeServerCertVerifier;

pub use fetch::{FetchError, MAX_RESPONSE_HEADER_BYTES};
pub use url::{BundleEndpointUrl, EndpointUrlError, MAX_ENDPOINT_URL_LEN};

use crate::RUNTIME_MISSING;
use crate::snapshot::{AbortOnDrop, Snapshot, Updates};

/// Default cap on a bundle endpoint response body (the identity crate's document cap).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize =
    svid_broker_identity::bundle::MAX_BUNDLE_DOCUMENT_BYTES;
/// Default bound on one whole fetch: connect, TLS, request and body.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Default lower clamp on the refresh interval, whatever the peer's hint says.
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(30);
/// Default upper clamp on the refresh interval, so a huge hint cannot freeze key rotation.
pub const DEFAULT_MAX_REFRESH: Duration = Duration::from_secs(60 * 60);
/// Largest PEM text accepted for [`WebRoots::from_pem`].
pub const MAX_ROOTS_PEM_BYTES: usize = 4 * 1024 * 1024;

// === config ===

/// Which roots an `https_web` relationship trusts.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum WebRoots {
    /// Mozilla's root program, from `webpki-roots` (the default).
    #[default]
    Mozilla,
    /// Only these roots (a private CA).
    Custom(Vec<CertificateDer<'static>>),
    /// Mozilla's roots plus these.
    MozillaAnd(Vec<CertificateDer<'static>>),
}

impl WebRoots {
    /// Reads roots from PEM text (`CERTIFICATE` blocks); with `include_mozilla` they are added to
    /// Mozilla's roots, otherwise they replace them.
    ///
    /// # Errors
    /// [`FederationConfigError::RootsPemTooLarge`], [`FederationConfigError::RootsPem`] or
    /// [`FederationConfigError::NoRoots`].
    pub fn from_pem(pem: &[u8], include_mozilla: bool) -> Result<Self, FederationConfigError> {
        if pem.len() > MAX_ROOTS_PEM_BYTES {
            return Err(FederationConfigError::RootsPemTooLarge {
                len: pem.len(),
                limit: MAX_ROOTS_PEM_BYTES,
            });
        }
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| FederationConfigError::RootsPem)?;
        if certs.is_empty() {
            return Err(FederationConfigError::NoRoots);
        }
        Ok(if include_mozilla {
            Self::MozillaAnd(certs)
        } else {
            Self::Custom(certs)
        })
    }

    fn store(&self) -> Result<RootCertStore, FederationConfigError> {
        let mut store = RootCertStore::empty();
        let extra = match self {
            Self::Mozilla => {
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                return Ok(store);
            }
            Self::Custom(extra) => extra,
            Self::MozillaAnd(extra) => {
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                extra
            }
        };
        if extra.is_empty() {
            return Err(FederationConfigError::NoRoots);
        }
        for (index, cert) in extra.iter().enumerate() {
            store
                .add(cert.clone())
                .map_err(|source| FederationConfigError::InvalidRoot { index, source })?;
        }
        Ok(store)
    }
}

/// The endpoint profile of a relationship (Federation §5.2).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum EndpointProfile {
    /// `https_web`: Web PKI server authentication.
    HttpsWeb(WebRoots),
    /// `https_spiffe`: the server presents an X.509-SVID for `endpoint_id`, verified against
    /// `bootstrap` (the bundle of the endpoint's trust domain) and later fetches.
    HttpsSpiffe {
        /// The SPIFFE ID the endpoint's server certificate must carry.
        endpoint_id: SpiffeId,
        /// The operator-supplied bundle of `endpoint_id`'s trust domain.
        bootstrap: Arc<SpiffeBundle>,
    },
}

/// One federation relationship: whose bundle, from where, checked how (Federation §7.2: the
/// trust domain is configured, never inferred from the URL).
#[derive(Clone, Debug)]
pub struct FederationRelationship {
    trust_domain: TrustDomain,
    url: BundleEndpointUrl,
    profile: EndpointProfile,
}

impl FederationRelationship {
    /// An `https_web` relationship: the endpoint is authenticated as an ordinary HTTPS server
    /// (Web PKI, against `roots`), and whatever bundle it serves is taken as `trust_domain`'s.
    pub fn https_web(trust_domain: TrustDomain, url: BundleEndpointUrl, roots: WebRoots) -> Self {
        Self {
            trust_domain,
            url,
            profile: EndpointProfile::HttpsWeb(roots),
        }
    }

    /// An `https_spiffe` relationship: the endpoint's server certificate must be an X.509-SVID
    /// for exactly `endpoint_id`, verified against `bootstrap` (and, for an endpoint of
    /// `trust_domain`, later against the latest bundle fetched).
    ///
    /// # Errors
    /// [`FederationConfigError::BootstrapTrustDomainMismatch`] when `bootstrap` is not the bundle
    /// of `endpoint_id`'s trust domain.
    pub fn https_spiffe(
        trust_domain: TrustDomain,
        url: BundleEndpointUrl,
        endpoint_id: SpiffeId,
        bootstrap: SpiffeBundle,
    ) -> Result<Self, FederationConfigError> {
        if bootstrap.trust_domain() != endpoint_id.trust_domain() {
            return Err(FederationConfigError::BootstrapTrustDomainMismatch {
                endpoint_id,
                bootstrap: bootstrap.trust_domain().clone(),
            });
        }
        Ok(Self {
            trust_domain,
            url,
            profile: EndpointProfile::HttpsSpiffe {
                endpoint_id,
                bootstrap: Arc::new(bootstrap),
            },
        })
    }

    /// The federated trust domain, as configured: the bundle fetched is published under this
    /// name, whatever the URL's host.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The bundle endpoint URL (`https` only).
    pub fn url(&self) -> &BundleEndpointUrl {
        &self.url
    }

    /// How the endpoint is authenticated: `https_web` or `https_spiffe` with its endpoint ID and
    /// bootstrap bundle.
    pub fn profile(&self) -> &EndpointProfile {
        &self.profile
    }

    /// Whether the endpoint serves its own trust domain's bundle (`https_spiffe` only), so
    /// the bundle it serves also authenticates it next time.
    fn self_serving_bootstrap(&self) -> Option<&Arc<SpiffeBundle>> {
        match &self.profile {
            EndpointProfile::HttpsSpiffe {
                endpoint_id,
                bootstrap,
            } if endpoint_id.trust_domain() == &self.trust_domain => Some(bootstrap),
            _ => None,
        }
    }
}

/// Limits and timing of a [`FederationSource`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FederationOptions {
    /// Bound on one whole fetch. Default [`DEFAULT_FETCH_TIMEOUT`].
    pub fetch_timeout: Duration,
    /// Cap on the response body. Default [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub max_response_bytes: usize,
    /// Lower clamp on the refresh interval. Default [`DEFAULT_MIN_REFRESH`].
    pub min_refresh: Duration,
    /// Upper clamp on the refresh interval. Default [`DEFAULT_MAX_REFRESH`].
    pub max_refresh: Duration,
}

impl Default for FederationOptions {
    fn default() -> Self {
        Self {
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            min_refresh: DEFAULT_MIN_REFRESH,
            max_refresh: DEFAULT_MAX_REFRESH,
        }
    }
}

impl FederationOptions {
    /// Sets [`FederationOptions::fetch_timeout`].
    #[must_use]
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// Sets [`FederationOptions::max_response_bytes`].
    #[must_use]
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// Sets both refresh clamps.
    #[must_use]
    pub fn refresh_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_refresh = min;
        self.max_refresh = max;
        self
    }

    fn check(&self) -> Result<(), FederationConfigError> {
        if self.min_refresh.is_zero() || self.min_refresh > self.max_refresh {
            return Err(FederationConfigError::RefreshBounds {
                min: self.min_refresh,
                max: self.max_refresh,
            });
        }
        if self.fetch_timeout.is_zero() {
            return Err(FederationConfigError::ZeroFetchTimeout);
        }
        if self.max_response_bytes == 0 || self.max_response_bytes > DEFAULT_MAX_RESPONSE_BYTES {
            return Err(FederationConfigError::ResponseCap {
                limit: self.max_response_bytes,
                max: DEFAULT_MAX_RESPONSE_BYTES,
            });
        }
        Ok(())
    }
}

/// A relationship or option setting that cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationConfigError {
    /// The `https_spiffe` bootstrap bundle is for another trust domain than the endpoint ID.
    #[error(
        "bootstrap bundle is for trust domain {bootstrap}, but endpoint id {endpoint_id} needs its own trust domain's bundle"
    )]
    BootstrapTrustDomainMismatch {
        /// The `endpoint_id` given to [`FederationRelationship::https_spiffe`].
        endpoint_id: SpiffeId,
        /// The bootstrap bundle's trust domain.
        bootstrap: TrustDomain,
    },
    /// The roots PEM is larger than [`MAX_ROOTS_PEM_BYTES`].
    #[error("roots pem is {len} bytes, longer than the limit of {limit}")]
    RootsPemTooLarge {
        /// The PEM text's length in bytes.
        len: usize,
        /// The cap, [`MAX_ROOTS_PEM_BYTES`].
        limit: usize,
    },
    /// The roots PEM does not parse.
    #[error("roots pem is malformed")]
    RootsPem,
    /// The roots PEM holds no `CERTIFICATE` block, or a `Custom`/`MozillaAnd` list is empty.
    #[error("no root certificates configured")]
    NoRoots,
    /// A configured root is not a usable trust anchor.
    #[error("root certificate {index} is not a usable trust anchor")]
    InvalidRoot {
        /// 0-based position in the `Custom` or `MozillaAnd` list.
        index: usize,
        /// Why rustls refused it.
        #[source]
        source: rustls::Error,
    },
    /// `min_refresh` is zero or larger than `max_refresh`.
    #[error("refresh bounds are invalid: min {min:?} must be non-zero and at most max {max:?}")]
    RefreshBounds {
        /// The configured `min_refresh`.
        min: Duration,
        /// The configured `max_refresh`.
        max: Duration,
    },
    /// `fetch_timeout` is zero.
    #[error("fetch timeout must be non-zero")]
    ZeroFetchTimeout,
    /// `max_response_bytes` is zero or above the bundle document cap.
    #[error("response cap {limit} must be between 1 and {max} bytes")]
    ResponseCap {
        /// The configured `max_response_bytes`.
        limit: usize,
        /// [`DEFAULT_MAX_RESPONSE_BYTES`], the bundle document cap.
        max: usize,
    },
    /// rustls rejected the TLS configuration.
    #[error("cannot build the tls client configuration")]
    Tls {
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// [`FederationSource::start`] was called outside a tokio runtime.
    #[error("{RUNTIME_MISSING}")]
    NoRuntime,
}

/// Why one refresh did not replace the bundle. The last good bundle stays in place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationError {
    /// The HTTPS fetch failed (network, TLS or server authentication, HTTP, size, redirect).
    #[error("fetching the bundle of {trust_domain} failed")]
    Fetch {
        /// The relationship's configured trust domain (never taken from the URL).
        trust_domain: TrustDomain,
        /// What failed.
        #[source]
        source: FetchError,
    },
    /// The response is not a valid SPIFFE bundle document.
    #[error("the bundle served for {trust_domain} is invalid")]
    Parse {
        /// The relationship's configured trust domain (never taken from the URL).
        trust_domain: TrustDomain,
        /// What the parser rejected.
        #[source]
        source: BundleError,
    },
    /// The fetched `spiffe_sequence` is lower than the current bundle's: a stale or replayed
    /// document, ignored.
    #[error(
        "the bundle served for {trust_domain} has sequence {fetched}, older than the current {current}"
    )]
    SequenceRegressed {
        /// The relationship's configured trust domain (never taken from the URL).
        trust_domain: TrustDomain,
        /// The current bundle's sequence.
        current: u64,
        /// The fetched bundle's sequence.
        fetched: u64,
    },
    /// The TLS configuration for this fetch could not be built.
    #[error("cannot build the tls client configuration for {trust_domain}")]
    TlsConfig {
        /// The relationship's configured trust domain (never taken from the URL).
        trust_domain: TrustDomain,
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
}

/// What a successful refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshOutcome {
    /// A new bundle was published.
    Updated {
        /// The published bundle's `spiffe_sequence`; `None` when the document has none.
        sequence: Option<u64>,
    },
    /// The endpoint served byte-for-byte the current document; nothing was published.
    Unchanged,
}

// === FederationSource ===

/// The bundle of one federated trust domain, kept fresh from its bundle endpoint.
///
/// Implements [`BundleProvider`]: [`BundleProvider::bundles`] returns a set holding only this
/// trust domain (empty until the first successful fetch, except for a self-serving
/// `https_spiffe` endpoint, which starts with the bootstrap bundle).
pub struct FederationSource {
    inner: Arc<Inner>,
    _task: Option<AbortOnDrop>,
}

struct Inner {
    relationship: FederationRelationship,
    options: FederationOptions,
    tls: TlsMode,
    snapshot: Snapshot,
    // Serializes refreshes (poller vs refresh_now) so sequence checks see a consistent current.
    refresh_lock: tokio::sync::Mutex<RefreshState>,
    status: Mutex<Status>,
}

/// How a fetch authenticates the endpoint.
enum TlsMode {
    /// `https_web`: one fixed configuration.
    Web(Arc<ClientConfig>),
    /// `https_spiffe`: rebuilt per fetch, because the trusted bundle may change between fetches.
    Spiffe {
        authorizer: Authorizer,
        bootstrap: Arc<SpiffeBundle>,
    },
}

#[derive(Default)]
struct RefreshState {
    // The raw document last accepted, to tell "unchanged" from "updated" without re-publishing.
    last_body: Vec<u8>,
}

#[derive(Default)]
struct Status {
    last_error: Option<Arc<FederationError>>,
    error_count: u64,
}

impl FederationSource {
    /// Builds the source without a background task: call [`FederationSource::refresh_now`] to
    /// fetch. Use [`FederationSource::start`] for automatic refresh.
    ///
    /// # Errors
    /// [`FederationConfigError`] when the options or roots are unusable.
    pub fn new(
        relationship: FederationRelationship,
        options: FederationOptions,
    ) -> Result<Self, FederationConfigError> {
        options.check()?;
        let tls = match &relationship.profile {
            EndpointProfile::HttpsWeb(roots) => {
                let store = roots.store()?;
                // TLS 1.3 only: the workspace enables rustls `tls12` for the realm's HTTPS
                // listener, and the safe defaults would then offer 1.2 here as well.
                let builder = ClientConfig::builder_with_provider(crate::crypto_provider())
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .map_err(|source| FederationConfigError::Tls { source })?;
                let mut config = builder.with_root_certificates(store).with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                TlsMode::Web(Arc::new(config))
            }
            EndpointProfile::HttpsSpiffe {
                endpoint_id,
                bootstrap,
            } => TlsMode::Spiffe {
                authorizer: Authorizer::Exact(endpoint_id.clone()),
                bootstrap: Arc::clone(bootstrap),
            },
        };
        let mut initial = BundleSet::new();
        if let Some(bootstrap) = relationship.self_serving_bootstrap() {
            initial.replace(SpiffeBundle::clone(bootstrap));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                relationship,
                options,
                tls,
                snapshot: Snapshot::new(initial),
                refresh_lock: tokio::sync::Mutex::new(RefreshState::default()),
                status: Mutex::new(Status::default()),
            }),
            _task: None,
        })
    }

    /// Builds the source and spawns its refresh task on the current tokio runtime: the first
    /// fetch starts immediately, later ones follow the refresh interval. The task stops when the
    /// source is dropped.
    ///
    /// # Errors
    /// As [`FederationSource::new`], plus [`FederationConfigError::NoRuntime`].
    pub fn start(
        relationship: FederationRelationship,
        options: FederationOptions,
    ) -> Result<Self, FederationConfigError> {
        let handle =
            tokio::runtime::Handle::try_current().map_err(|_| FederationConfigError::NoRuntime)?;
        let mut source = Self::new(relationship, options)?;
        let weak = Arc::downgrade(&source.inner);
        source._task = Some(AbortOnDrop(handle.spawn(refresh_loop(weak))));
        Ok(source)
    }

    /// Fetches the bundle once now.
    ///
    /// # Errors
    /// The [`FederationError`] of this attempt (also kept in [`FederationSource::last_error`]);
    /// the last good bundle stays published.
    pub async fn refresh_now(&self) -> Result<RefreshOutcome, Arc<FederationError>> {
        self.inner.refresh().await
    }

    /// The relationship's configured trust domain, the only one [`BundleProvider::bundles`] holds.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.inner.relationship.trust_domain
    }

    /// The current bundle of the federated trust domain, if any.
    pub fn current(&self) -> Option<Arc<SpiffeBundle>> {
        self.inner.current()
    }

    /// The update signal: advances on every published bundle.
    pub fn subscribe(&self) -> Updates {
        self.inner.snapshot.subscribe()
    }

    /// The error of the most recent failed refresh, cleared by the next successful one.
    pub fn last_error(&self) -> Option<Arc<FederationError>> {
        self.inner.status().last_error.clone()
    }

    /// How many refreshes have failed since the source was built.
    pub fn error_count(&self) -> u64 {
        self.inner.status().error_count
    }

    /// The interval the refresh task waits after the current attempt.
    pub fn refresh_interval(&self) -> Duration {
        self.inner.refresh_interval()
    }
}

impl BundleProvider for FederationSource {
    fn bundles(&self) -> Arc<BundleSet> {
        self.inner.snapshot.load()
    }
}

impl fmt::Debug for FederationSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FederationSource")
            .field("trust_domain", &self.inner.relationship.trust_domain)
            .field("url", &self.inner.relationship.url)
            .field("revision", &self.inner.snapshot.revision())
            .field("error_count", &self.error_count())
            .finish_non_exhaustive()
    }
}

async fn refresh_loop(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        // Errors are logged and recorded inside refresh(); the loop only schedules.
        let _ = inner.refresh().await;
        let delay = inner.refresh_interval();
        drop(inner);
        tokio::time::sleep(delay).await;
    }
}

impl Inner {
    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        // Status holds plain counters; a panic elsewhere cannot leave it inconsistent.
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> Option<Arc<SpiffeBundle>> {
        self.snapshot
            .load()
            .get(&self.relationship.trust_domain)
            .cloned()
    }

    fn refresh_interval(&self) -> Duration {
        let hint = self
            .current()
            .map_or(svid_broker_identity::bundle::DEFAULT_REFRESH_HINT, |b| {
                b.refresh_hint_or_default()
            });
        hint.clamp(self.options.min_refresh, self.options.max_refresh)
    }

    async fn refresh(&self) -> Result<RefreshOutcome, Arc<FederationError>> {
        let mut state = self.refresh_lock.lock().await;
        let result = self.try_refresh(&mut state).await;
        let rel = &self.relationship;
        match result {
            Ok(outcome) => {
                self.status().last_error = None;
                if let RefreshOutcome::Updated { sequence } = outcome {
                    tracing::info!(trust_domain = %rel.trust_domain, url = %rel.url, ?sequence,
                        "federated bundle updated");
                }
                Ok(outcome)
            }
            Err(e) => {
                let e = Arc::new(e);
                tracing::warn!(trust_domain = %rel.trust_domain, url = %rel.url,
                    error = %ErrorChain::new(&*e), "federated bundle refresh failed, keeping the last good bundle");
                let mut status = self.status();
                status.error_count = status.error_count.saturating_add(1);
                status.last_error = Some(Arc::clone(&e));
                Err(e)
            }
        }
    }

    async fn try_refresh(
        &self,
        state: &mut RefreshState,
    ) -> Result<RefreshOutcome, FederationError> {
        let rel = &self.relationship;
        let tls = self.client_config()?;
        let body = fetch::fetch_bundle(
            &rel.url,
            tls,
            self.options.fetch_timeout,
            self.options.max_response_bytes,
        )
        .await
        .map_err(|source| FederationError::Fetch {
            trust_domain: rel.trust_domain.clone(),
            source,
        })?;
        let bundle =
            SpiffeBundle::parse_document(rel.trust_domain.clone(), &body).map_err(|source| {
                FederationError::Parse {
                    trust_domain: rel.trust_domain.clone(),
                    source,
                }
            })?;
        let current = self.current();
        if let (Some(current), Some(fetched)) = (
            current.as_ref().and_then(|c| c.sequence()),
            bundle.sequence(),
        ) && fetched < current
        {
            return Err(FederationError::SequenceRegressed {
                trust_domain: rel.trust_domain.clone(),
                current,
                fetched,
            });
        }
        if current.is_some() && body == state.last_body {
            return Ok(RefreshOutcome::Unchanged);
        }
        let sequence = bundle.sequence();
        let mut set = BundleSet::new();
        set.replace(bundle);
        self.snapshot.publish(Arc::new(set));
        state.last_body = body;
        Ok(RefreshOutcome::Updated { sequence })
    }

    fn client_config(&self) -> Result<Arc<ClientConfig>, FederationError> {
        let (authorizer, bootstrap) = match &self.tls {
            TlsMode::Web(config) => return Ok(Arc::clone(config)),
            TlsMode::Spiffe {
                authorizer,
                bootstrap,
            } => (authorizer, bootstrap),
        };
        // Self-serving endpoint: authenticate it with the latest bundle we accepted from it
        // (initially the bootstrap, which new() published). Otherwise: always the bootstrap.
        let trust = match self.relationship.self_serving_bootstrap() {
            Some(_) => self.current().unwrap_or_else(|| Arc::clone(bootstrap)),
            None => Arc::clone(bootstrap),
        };
        let mut set = BundleSet::new();
        set.replace(SpiffeBundle::clone(&trust));
        let verifier: Arc<dyn ServerCertVerifier> = Arc::new(SpiffeServerCertVerifier::new(
            Arc::new(Arc::new(set)),
            authorizer.clone(),
        ));
        // The SPIFFE verifier checks TLS 1.3 handshake signatures only.
        let mut config = ClientConfig::builder_with_provider(crate::crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| self.tls_config_error(e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    fn tls_config_error(&self, source: rustls::Error) -> FederationError {
        FederationError::TlsConfig {
            trust_domain: self.relationship.trust_domain.clone(),
            source,
        }
    }
}
