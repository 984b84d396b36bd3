//! Service-account issuer keys: a JWK Set from a file (re-read on change) or from the issuer's
//! OIDC discovery document (`{issuer}/.well-known/openid-configuration` → `jwks_uri`, https
//! only, refreshed on an interval and, rate limited, when a token names an unknown `kid`). On
//! any failure the last good key set stays in place.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::Uri;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use svid_broker_identity::TrustDomain;
use svid_broker_identity::bundle::{BundleError, JwtBundle, MAX_BUNDLE_DOCUMENT_BYTES};
use tokio::sync::{Notify, watch};

/// Largest JWK Set read (file or `jwks_uri`), in bytes.
pub const MAX_JWKS_BYTES: usize = MAX_BUNDLE_DOCUMENT_BYTES;
/// Largest OIDC discovery document read, in bytes.
pub const MAX_DISCOVERY_BYTES: usize = 64 * 1024;
/// Time allowed for one HTTPS fetch (connect, TLS, request, body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Default discovery refresh interval.
pub const DEFAULT_DISCOVERY_REFRESH: Duration = Duration::from_secs(300);
/// Default shortest time between two discovery fetches triggered by unknown `kid`s.
pub const DEFAULT_MIN_REFRESH_SPACING: Duration = Duration::from_secs(10);

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// A JWK Set file, re-read every `poll`.
    File {
        /// The `jwks_file` setting, resolved against the config file's directory when relative.
        path: PathBuf,
        /// How often the file is re-read; a new key set is installed only when its bytes changed.
        poll: Duration,
    },
    /// Fetched over https through the issuer's OIDC discovery document.
    Discovery(DiscoveryConfig),
}

/// OIDC discovery settings of one issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveryConfig {
    /// The discovery document URL (`https://…/.well-known/openid-configuration`).
    pub url: String,
    /// The `issuer` the document must declare, compared byte for byte (a trailing `/` counts).
    pub issuer: String,
    /// PEM CA certificates to trust instead of the public web roots.
    pub ca_file: Option<PathBuf>,
    /// Time between scheduled fetches (the config's `discovery_refresh_seconds`, 30..=86400).
    pub refresh: Duration,
    /// Shortest time between fetches (unknown-`kid` triggers are dropped inside it).
    pub min_spacing: Duration,
}

impl DiscoveryConfig {
    /// Discovery for `issuer` at `{issuer}/.well-known/openid-configuration`, public roots,
    /// default intervals.
    pub fn for_issuer(issuer: &str) -> Self {
        Self {
            url: format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ),
            issuer: issuer.to_owned(),
            ca_file: None,
            refresh: DEFAULT_DISCOVERY_REFRESH,
            min_spacing: DEFAULT_MIN_REFRESH_SPACING,
        }
    }
}

/// The current key set of one issuer, swapped whole; `None` until the first load.
#[derive(Debug)]
pub struct IssuerKeys {
    trust_domain: TrustDomain,
    current: ArcSwapOption<JwtBundle>,
    refresh: Notify,
}

/// Why keys could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyLoadError {
    /// Reading the file failed.
    #[error("cannot read {path}")]
    Io {
        /// The path given to [`IssuerKeys::load_file`] or polled by [`run`] (the JWK Set file).
        path: PathBuf,
        /// The underlying error (printed by the error chain, not by this `Display`).
        #[source]
        source: std::io::Error,
    },
    /// The JWK Set is malformed or too large.
    #[error("invalid jwk set")]
    Jwks(#[source] BundleError),
    /// The JWK Set parsed but holds no usable key (it is empty, or every entry was skipped).
    #[error("jwk set has no usable signing key")]
    NoKeys,
    /// A URL is not `https://host[:port]/path`.
    #[error("{what} is not an https url")]
    NotHttps {
        /// `discovery url` or `jwks_uri`.
        what: &'static str,
    },
    /// The discovery document is not JSON with string `issuer` and `jwks_uri`.
    #[error("malformed discovery document")]
    Discovery,
    /// The discovery document's `issuer` is not the configured one (OIDC Discovery §4.3).
    #[error("discovery document issuer does not match")]
    IssuerMismatch,
    /// The CA file is unreadable, over 4 MiB, not PEM, or holds no certificate rustls accepts.
    #[error("invalid ca file {path}")]
    CaFile {
        /// The resolved `discovery_ca_file`; empty if the TLS 1.3 client config could not be built.
        path: PathBuf,
    },
    /// Connecting, TLS or HTTP failed.
    #[error("fetching {what} failed: {reason}")]
    Fetch {
        /// `discovery document` or `jwk set`.
        what: &'static str,
        /// Which step failed; carries no URL, header or body text.
        reason: FetchFailure,
    },
}

/// Which step of one HTTPS fetch failed: a fixed label (or a status code), safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchFailure {
    /// TCP connect failed.
    #[error("connect")]
    Connect,
    /// The TLS handshake failed (certificate not trusted, ...).
    #[error("tls")]
    Tls,
    /// The HTTP/1.1 handshake, sending the GET, or reading a body frame failed.
    #[error("http")]
    Http,
    /// A non-2xx status.
    #[error("status {0}")]
    Status(u16),
    /// The body passed its cap ([`MAX_DISCOVERY_BYTES`] or [`MAX_JWKS_BYTES`]); the rest is unread.
    #[error("body too large")]
    TooLarge,
    /// [`FETCH_TIMEOUT`] elapsed.
    #[error("timeout")]
    Timeout,
}

impl IssuerKeys {
    /// No keys yet; `trust_domain` labels the key set (the issuer's mapping trust domain).
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            current: ArcSwapOption::empty(),
            refresh: Notify::new(),
        }
    }

    /// The last key set installed, as a snapshot; `None` until the first successful load.
    pub fn current(&self) -> Option<Arc<JwtBundle>> {
        self.current.load_full()
    }

    /// Parses a JWK Set and installs it; on error the previous set stays.
    ///
    /// # Errors
    /// [`KeyLoadError::Jwks`] or [`KeyLoadError::NoKeys`].
    pub fn install_jwks(&self, bytes: &[u8]) -> Result<usize, KeyLoadError> {
        let (bundle, ignored) =
            JwtBundle::parse_jwks(self.trust_domain.clone(), bytes).map_err(KeyLoadError::Jwks)?;
        if bundle.is_empty() {
            return Err(KeyLoadError::NoKeys);
        }
        if !ignored.is_empty() {
            tracing::debug!(
                ignored = ignored.len(),
                "sa issuer jwk set: entries skipped"
            );
        }
        let n = bundle.len();
        self.current.store(Some(Arc::new(bundle)));
        Ok(n)
    }

    /// Reads and installs a JWK Set file.
    ///
    /// # Errors
    /// As [`Self::install_jwks`], or [`KeyLoadError::Io`].
    pub fn load_file(&self, path: &Path) -> Result<usize, KeyLoadError> {
        let bytes = read_capped(path, MAX_JWKS_BYTES)?;
        self.install_jwks(&bytes)
    }

    /// Asks the refresher for an early fetch (a token named an unknown `kid`).
    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }

    /// Resolves once [`Self::request_refresh`] was called (a pending request is kept).
    pub async fn refresh_requested(&self) {
        self.refresh.notified().await;
    }
}

fn read_capped(path: &Path, max: usize) -> Result<Vec<u8>, KeyLoadError> {
    use svid_broker_sources::file::watched::{WatchedFileError, read_watched_file};
    // The shared watched-file read: a regular file only, opened without blocking, capped.
    read_watched_file(path, max, "jwk set file").map_err(|error| match error {
        WatchedFileError::TooLarge { max, .. } => KeyLoadError::Jwks(BundleError::TooLarge {
            what: "jwk set",
            len: max + 1,
            max,
        }),
        WatchedFileError::Io { source, .. } => KeyLoadError::Io {
            path: path.to_owned(),
            source,
        },
        other => KeyLoadError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, other),
        },
    })
}

/// Keeps `keys` in step with its source until `shutdown` turns true.
pub async fn run(keys: Arc<IssuerKeys>, source: KeySource, mut shutdown: watch::Receiver<bool>) {
    match source {
        KeySource::File { path, poll } => {
            // The bytes' digest, not the mtime: a same-size rewrite within one timestamp tick
            // must still count. `None` at first, so a change between the start-up load and
            // this task's first look is never missed.
            let mut last: Option<Vec<u8>> = None;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(poll) => {}
                    _ = shutdown.changed() => return,
                }
                let read_path = path.clone();
                let Ok(read) =
                    tokio::task::spawn_blocking(move || read_capped(&read_path, MAX_JWKS_BYTES))
                        .await
                else {
                    return;
                };
                let result = read.and_then(|bytes| {
                    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes)
                        .as_ref()
                        .to_vec();
                    if last.as_ref() == Some(&digest) {
                        return Ok(None);
                    }
                    last = Some(digest);
                    keys.install_jwks(&bytes).map(Some)
                });
                match result {
                    Ok(None) => {}
                    Ok(Some(n)) => {
                        tracing::info!(path = %path.display(), keys = n, "sa issuer jwk set loaded");
                    }
                    Err(e) => tracing::warn!(
                        path = %path.display(),
                        error = %svid_broker_identity::report::ErrorChain::new(&e),
                        "sa issuer jwk set reload failed; keeping the last good one"
                    ),
                }
            }
        }
        KeySource::Discovery(config) => {
            let connector = match tls_connector(config.ca_file.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %svid_broker_identity::report::ErrorChain::new(&e), "sa issuer discovery disabled");
                    return;
                }
            };
            loop {
                match discover(&connector, &config).await {
                    Ok(bytes) => match keys.install_jwks(&bytes) {
                        Ok(n) => {
                            tracing::info!(issuer = %config.issuer, keys = n, "sa issuer keys fetched")
                        }
                        Err(e) => {
                            tracing::warn!(issuer = %config.issuer, error = %svid_broker_identity::report::ErrorChain::new(&e), "sa issuer jwk set rejected; keeping the last good one")
                        }
                    },
                    Err(e) => {
                        tracing::warn!(issuer = %config.issuer, error = %svid_broker_identity::report::ErrorChain::new(&e), "sa issuer discovery failed; keeping the last good keys")
                    }
                }
                // Spacing first, so unknown-kid storms cost at most one fetch per spacing.
                tokio::select! {
                    () = tokio::time::sleep(config.min_spacing) => {}
                    _ = shutdown.changed() => return,
                }
                let rest = config.refresh.saturating_sub(config.min_spacing);
                tokio::select! {
                    () = tokio::time::sleep(rest) => {}
                    () = keys.refresh_requested() => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// Builds the TLS connector: the CA file's certificates, or the public web roots.
///
/// # Errors
/// [`KeyLoadError::CaFile`].
pub fn tls_connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, KeyLoadError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = || KeyLoadError::CaFile {
                path: path.to_owned(),
            };
            let bytes = read_capped(path, 4 * 1024 * 1024).map_err(|_| bad())?;
            let blocks = pem::parse_many(&bytes).map_err(|_| bad())?;
            for block in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
                roots
                    .add(rustls::pki_types::CertificateDer::from(
                        block.contents().to_vec(),
                    ))
                    .map_err(|_| bad())?;
            }
            if roots.is_empty() {
                return Err(bad());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // TLS 1.3 only: the workspace enables rustls `tls12` for the realm's HTTPS listener, and
    // the safe defaults would then let this client negotiate 1.2 as well.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|_| KeyLoadError::CaFile {
        path: PathBuf::new(),
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One discovery round: the document, its checks, then the JWK Set bytes.
///
/// # Errors
/// A [`KeyLoadError`] naming the step.
pub async fn discover(
    connector: &tokio_rustls::TlsConnector,
    config: &DiscoveryConfig,
) -> Result<Vec<u8>, KeyLoadError> {
    #[derive(serde::Deserialize)]
    struct Doc {
        issuer: String,
        jwks_uri: String,
    }
    let url = https_uri(&config.url, "discovery url")?;
    let body = fetch(connector, &url, MAX_DISCOVERY_BYTES, "discovery document").await?;
    let doc: Doc = serde_json::from_slice(&body).map_err(|_| KeyLoadError::Discovery)?;
    if doc.issuer != config.issuer {
        return Err(KeyLoadError::IssuerMismatch);
    }
    let jwks = https_uri(&doc.jwks_uri, "jwks_uri")?;
    fetch(connector, &jwks, MAX_JWKS_BYTES, "jwk set").await
}

fn https_uri(text: &str, what: &'static str) -> Result<Uri, KeyLoadError> {
    let uri: Uri = text.parse().map_err(|_| KeyLoadError::NotHttps { what })?;
    if uri.scheme_str() != Some("https") || uri.host().is_none_or(str::is_empty) {
        return Err(KeyLoadError::NotHttps { what });
    }
    Ok(uri)
}

async fn fetch(
    connector: &tokio_rustls::TlsConnector,
    uri: &Uri,
    max: usize,
    what: &'static str,
) -> Result<Vec<u8>, KeyLoadError> {
    let fail = |reason| KeyLoadError::Fetch { what, reason };
    tokio::time::timeout(FETCH_TIMEOUT, fetch_inner(connector, uri, max))
        .await
        .map_err(|_| fail(FetchFailure::Timeout))?
        .map_err(fail)
}

async fn fetch_inner(
    connector: &tokio_rustls::TlsConnector,
    uri: &Uri,
    max: usize,
) -> Result<Vec<u8>, FetchFailure> {
    let host = uri.host().unwrap_or_default();
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((bare_host, port))
        .await
        .map_err(|_| FetchFailure::Connect)?;
    let name = ServerName::try_from(bare_host.to_owned()).map_err(|_| FetchFailure::Tls)?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|_| FetchFailure::Tls)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|_| FetchFailure::Http)?;
    let driver = tokio::spawn(conn);
    let authority = uri.authority().map_or(host, |a| a.as_str()).to_owned();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let request = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|_| FetchFailure::Http)?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| FetchFailure::Http)?;
        if !response.status().is_success() {
            return Err(FetchFailure::Status(response.status().as_u16()));
        }
        let mut body = response.into_body();
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| FetchFailure::Http)?;
            if let Some(data) = frame.data_ref() {
                if out.len() + data.len() > max {
                    return Err(FetchFailure::TooLarge);
                }
                out.extend_from_slice(data);
            }
        }
        Ok(out)
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests;
