//! The realm's HTTPS certificate: a PEM certificate chain and private key from files
//! (`[server.tls]`), re-read when their content changes, the last good pair kept on a bad
//! update.
//!
//! # Decisions
//! - **TLS 1.2 and 1.3.** The realm's clients are registries' clients (docker, containerd,
//!   podman, skopeo), some of which still negotiate 1.2; the gRPC listener stays 1.3-only.
//! - **Content hash, not mtime.** A rewrite within the same second (or a `mv` of an older
//!   file over the current one) must still count; both files' bytes go into one SHA-256.
//! - **A pair, checked together.** The key must match the certificate's public key
//!   ([`CertifiedKey::from_der`] checks it); a new certificate with the old key (a rotation
//!   caught between two writes) is refused and the old pair keeps serving until both files
//!   agree.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use svid_broker_sources::file::watched::{WatchedFileError, read_watched_file};
use tokio::sync::watch;

/// Largest certificate chain file read, in bytes.
pub const MAX_TLS_CERT_FILE_BYTES: usize = 1024 * 1024;
/// Largest private key file read, in bytes.
pub const MAX_TLS_KEY_FILE_BYTES: usize = 64 * 1024;
/// ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";
/// ALPN protocol id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";

/// Why a certificate/key pair was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFileError {
    /// A file could not be read (not a regular file, too large, I/O).
    #[error("cannot load server.tls file")]
    Read(#[source] WatchedFileError),
    /// The certificate file holds no PEM `CERTIFICATE` block, or a malformed one.
    #[error("{}: no pem certificate", .path.display())]
    NoCertificate {
        /// `server.tls.cert_file` as resolved from the configuration.
        path: PathBuf,
    },
    /// The key file holds no PEM private key (PKCS#8, SEC1 or PKCS#1).
    #[error("{}: no pem private key", .path.display())]
    NoKey {
        /// `server.tls.key_file` as resolved; the error never holds key bytes.
        path: PathBuf,
    },
    /// The key is unusable or does not match the certificate.
    #[error("server.tls key_file does not match cert_file or is unusable")]
    Mismatch(#[source] rustls::Error),
    /// rustls refused the configuration.
    #[error("invalid tls configuration")]
    Config(#[source] rustls::Error),
}

/// The certificate and key files of the realm's HTTPS listener and the pair they last gave.
pub struct RealmCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: ArcSwap<CertifiedKey>,
    stamp: Mutex<[u8; 32]>,
}

impl fmt::Debug for RealmCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths and chain length only: the key must never be printed.
        f.debug_struct("RealmCert")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("chain_len", &self.current.load().cert.len())
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads and checks a pair; returns it with the content hash of both files. Blocking.
fn load_pair(cert_file: &Path, key_file: &Path) -> Result<(CertifiedKey, [u8; 32]), TlsFileError> {
    let cert_pem = read_watched_file(cert_file, MAX_TLS_CERT_FILE_BYTES, "tls certificate file")
        .map_err(TlsFileError::Read)?;
    let key_pem = zeroize::Zeroizing::new(
        read_watched_file(key_file, MAX_TLS_KEY_FILE_BYTES, "tls key file")
            .map_err(TlsFileError::Read)?,
    );
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(&cert_pem);
    ctx.update(&key_pem);
    let mut stamp = [0u8; 32];
    stamp.copy_from_slice(ctx.finish().as_ref());

    let no_cert = || TlsFileError::NoCertificate {
        path: cert_file.to_owned(),
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| no_cert())?;
    if chain.is_empty() {
        return Err(no_cert());
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsFileError::NoKey {
        path: key_file.to_owned(),
    })?;
    let certified =
        CertifiedKey::from_der(chain, key, &provider()).map_err(TlsFileError::Mismatch)?;
    Ok((certified, stamp))
}

impl RealmCert {
    /// Loads the pair at start-up (a bad pair stops start-up). Blocking.
    ///
    /// # Errors
    /// A [`TlsFileError`] naming the file and the rule.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<Self>, TlsFileError> {
        let (certified, stamp) = load_pair(cert_file, key_file)?;
        Ok(Arc::new(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: ArcSwap::from_pointee(certified),
            stamp: Mutex::new(stamp),
        }))
    }

    /// Re-reads both files; installs the pair when its content changed and it is good.
    /// `Ok(true)` when a new pair went live; on error the current pair stays. Blocking.
    ///
    /// # Errors
    /// A [`TlsFileError`]; the last good pair keeps serving.
    pub fn reload(&self) -> Result<bool, TlsFileError> {
        let (certified, stamp) = load_pair(&self.cert_file, &self.key_file)?;
        let mut last = self.stamp.lock().unwrap_or_else(PoisonError::into_inner);
        if *last == stamp {
            return Ok(false);
        }
        *last = stamp;
        self.current.store(Arc::new(certified));
        Ok(true)
    }

    /// The certificate chain served now, leaf first.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.load().cert.clone()
    }

    /// The rustls configuration of the realm's HTTPS listener: TLS 1.2 and 1.3, aws-lc-rs, the
    /// current pair at every handshake, ALPN `http/1.1` (and `h2` first when `h2` is on).
    ///
    /// # Errors
    /// [`TlsFileError::Config`].
    pub fn server_config(self: &Arc<Self>, h2: bool) -> Result<Arc<ServerConfig>, TlsFileError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsFileError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(Arc::clone(self))));
        config.alpn_protocols = if h2 {
            vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()]
        } else {
            vec![ALPN_HTTP11.to_vec()]
        };
        Ok(Arc::new(config))
    }
}

struct Resolver(Arc<RealmCert>);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load_full())
    }
}

/// Re-reads the pair every `period` (off the runtime) until `shutdown` turns true; logs each
/// change and each refused update once per content.
pub async fn run(cert: Arc<RealmCert>, period: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last error printed, so a bad file is reported once rather than every period.
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let c = Arc::clone(&cert);
        let Ok(result) = tokio::task::spawn_blocking(move || c.reload()).await else {
            continue;
        };
        match result {
            Ok(true) => {
                last_error = None;
                tracing::info!(cert_file = %cert.cert_file.display(), "realm tls certificate reloaded");
            }
            Ok(false) => last_error = None,
            Err(error) => {
                let text = svid_broker_identity::report::ErrorChain::new(&error).to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::error!(error = %text, "realm tls reload failed; keeping the last good certificate");
                    last_error = Some(text);
                }
            }
        }
    }
}
