//! [`BrokerServer`]: builds the engine from a [`BrokerConfig`] and runs the listeners, the
//! policy reloader and the key-rotation task until [`ServerHandle::shutdown`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use svid_broker_identity::bundle::BundleProvider;
use svid_broker_identity::clock::Clock;
use svid_broker_policy::{MAX_POLICY_FILE_BYTES, Policy, PolicyError};
use svid_broker_sources::file::FileSourceConfig;
use svid_broker_sources::file::watched::{WatchedFileError, read_watched_file};
use svid_broker_sources::workload::WorkloadApiOptions;
use svid_broker_sources::{CombinedBundles, FileBundleSource, WorkloadApiSource};
use svid_broker_token::{KeyError, KeyRing, KeyRingConfig, SigningCa, TokenMinter};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit::AuditSink;
use crate::backends::{Backends, BackendsOptions};
use crate::config::{AuditTarget, BrokerConfig, SigningSource};
use crate::credential::{CredentialError, CredentialKeys};
use crate::engine::{Broker, BrokerOptions};
use crate::error::BrokerBuildError;
use crate::http_listener::HttpListenerOptions;
use crate::key_stores::KeyStores;
use crate::listen::Governor;
use crate::realm::{self, RealmState};
use crate::satoken::{
    IssuerKeys, KeySource, SaIssuer, ServiceAccountMode, ServiceAccountValidator, TrustedActors,
};
use crate::throttle::RateLimit;
use crate::tls_files::RealmCert;

/// Lifetime of a generated development CA.
pub const GENERATED_CA_LIFETIME: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Common name of a generated development CA.
pub const GENERATED_CA_COMMON_NAME: &str = "svid-broker development signing ca";
/// How often the rotation task asks whether the signing leaf is due.
pub const ROTATION_CHECK_PERIOD: Duration = Duration::from_secs(30);
/// Longest token lifetime the key ring is configured for (the policy allows up to an hour).
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(60 * 60);
/// Lifetime of a signing leaf; long enough that rotation overlaps a full token lifetime.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(4 * 60 * 60);
/// A leaf is replaced when less than this is left.
pub const ROTATE_WHEN_REMAINING: Duration = Duration::from_secs(2 * 60 * 60);
/// Longest wait for the Workload API's first answer.
pub const WORKLOAD_API_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start or reload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The policy file's text breaks a policy rule; on a reload the last good policy stays live.
    #[error("policy {path} is invalid")]
    Policy {
        /// The policy file, as configured.
        path: PathBuf,
        /// The underlying error (printed by the error chain, not by this `Display`); boxed,
        /// as a policy error carries the rule, the pattern and its location.
        #[source]
        source: Box<PolicyError>,
    },
    /// The policy file could not be read (not a regular file, larger than
    /// [`svid_broker_policy::MAX_POLICY_FILE_BYTES`], I/O).
    #[error("cannot load the policy file")]
    PolicyFile(#[source] WatchedFileError),
    /// The policy file is not UTF-8.
    #[error("policy {path} is not utf-8")]
    PolicyEncoding {
        /// The policy file, as configured.
        path: PathBuf,
    },
    /// `[server.tls]`: the certificate or key file is unusable.
    #[error("server.tls certificate unusable")]
    Tls(#[source] crate::tls_files::TlsFileError),
    /// The signing CA could not be loaded or generated, or the key ring refused it.
    #[error("signing keys are unusable")]
    Keys(#[source] KeyError),
    /// Credential keys could not be derived.
    #[error("credential keys could not be derived")]
    Credentials(#[source] CredentialError),
    /// A key in a key store (`signing.key`, `signing.mac_key`) could not be opened or used.
    #[error("the signing key store is unusable")]
    KeyStore(#[source] Box<crate::key_stores::KeyStoreError>),
    /// Bundle files could not be loaded.
    #[error("trust bundles could not be loaded")]
    Bundles(#[source] svid_broker_sources::file::FileSourceError),
    /// The Workload API's initial sync failed, or it has no X.509-SVID for the gRPC listener.
    #[error("the workload api is unavailable")]
    WorkloadApi(#[source] svid_broker_sources::workload::WorkloadSourceError),
    /// [`Broker::new`] refused the options built from the configuration.
    #[error("broker options are invalid")]
    Broker(#[source] BrokerBuildError),
    /// `log.audit` names a file that could not be opened (or created) for appending.
    #[error("cannot open audit log {path}")]
    Audit {
        /// The audit file, as configured.
        path: PathBuf,
        /// The underlying error (printed by the error chain, not by this `Display`).
        #[source]
        source: std::io::Error,
    },
    /// Binding a listener, or reading back its bound address, failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// `server.http_addr` or `server.grpc_addr` as configured (port 0 stays 0 here).
        addr: SocketAddr,
        /// The underlying error (printed by the error chain, not by this `Display`).
        #[source]
        source: std::io::Error,
    },
    /// The gRPC listener could not be set up.
    #[error("grpc listener setup failed")]
    Grpc(#[source] crate::grpc::GrpcError),
    /// `service_account.trusted_actors` is invalid (the configuration checks it first).
    #[error("service_account.trusted_actors is invalid")]
    TrustedActors(#[source] crate::satoken::TrustedActorError),
    /// A registry backend of the policy could not be built (its credential file, its URL).
    #[error("registry backends could not be set up")]
    Backends(#[source] crate::backends::BackendsError),
    /// `[federation]` could not be set up (a key file, the issuer URL).
    #[error("the federation issuer could not be set up")]
    Federation(#[source] crate::federation::FederationSetupError),
    /// The blocking task that re-reads the policy was cancelled (the runtime is shutting down).
    #[error("the policy reload task was cancelled")]
    ReloadTask,
    /// A service-account issuer's JWK Set file could not be loaded at start-up.
    #[error("service-account issuer {issuer} keys could not be loaded")]
    ServiceAccountKeys {
        /// The issuer (`iss`) as configured.
        issuer: String,
        /// The underlying error (printed by the error chain, not by this `Display`).
        #[source]
        source: crate::satoken::keys::KeyLoadError,
    },
}

/// Starts brokers.
#[derive(Debug)]
pub struct BrokerServer;

/// A running broker, returned by [`BrokerServer::start`] once every listener is bound.
pub struct ServerHandle {
    broker: Arc<Broker>,
    clock: Arc<dyn Clock>,
    http_addr: SocketAddr,
    grpc_addr: Option<SocketAddr>,
    reloader: Arc<PolicyReloader>,
    ready: Arc<AtomicBool>,
    shutdown_tx: watch::Sender<bool>,
    http_task: JoinHandle<()>,
    grpc_task: Option<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    grace: Duration,
    // Kept alive for as long as the server runs: dropping a source stops its poller.
    _file_source: Option<Arc<FileBundleSource>>,
    _workload: Option<Arc<WorkloadApiSource>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("http_addr", &self.http_addr)
            .field("grpc_addr", &self.grpc_addr)
            .finish_non_exhaustive()
    }
}

/// What the key store's HMAC key is asked to MAC to give every replica the bytes its
/// credential MAC keys come from ([`SigningCa::derived_secret`]'s part, for a CA key that
/// cannot be read).
const KEY_STORE_DERIVED_SECRET_LABEL: &[u8] = b"svid-broker key-store derived secret v1";

/// Builds the signing CA, key ring and credential keys from the configuration, at `now`.
/// With a key store, blocks for its round trips (PKCS#11 login, KMS calls).
///
/// # Errors
/// [`ServerError::Keys`], [`ServerError::KeyStore`],
/// [`ServerError::Credentials`].
pub fn load_signing(
    config: &BrokerConfig,
    now: SystemTime,
) -> Result<(TokenMinter, CredentialKeys), ServerError> {
    let ca = match &config.signing {
        SigningSource::Generate => SigningCa::generate(
            config.algorithm,
            GENERATED_CA_COMMON_NAME,
            GENERATED_CA_LIFETIME,
            now,
        )
        .map_err(ServerError::Keys)?,
        SigningSource::Files { cert, key } => {
            SigningCa::from_pem_files(cert, key, now).map_err(ServerError::Keys)?
        }
        SigningSource::KeyStore { cert, key, mac } => {
            let mut stores = KeyStores::new(&config.key_store);
            let signer = stores
                .signing_key("signing key", key)
                .map_err(|e| ServerError::KeyStore(Box::new(e)))?;
            let mac = stores
                .mac_key(mac)
                .map_err(|e| ServerError::KeyStore(Box::new(e)))?;
            // Replicas sharing the key store derive the same bytes; nothing is stored.
            let derived = mac
                .hmac_sha256(KEY_STORE_DERIVED_SECRET_LABEL)
                .map_err(|source| ServerError::Keys(KeyError::ExternalKey { source }))?;
            SigningCa::with_external_key_file(cert, signer, derived, now)
                .map_err(ServerError::Keys)?
        }
    };
    // Derived from the very private key the CA signs with (never from anything else the key
    // file holds, such as its certificate), so every replica with the CA shares the MAC keys
    // and nobody without the key can mint a credential. A generated CA gets random bytes: it is
    // single-replica by definition.
    let credential_keys =
        CredentialKeys::derive(ca.derived_secret()).map_err(ServerError::Credentials)?;
    let mut ring_config = KeyRingConfig::default();
    ring_config.algorithm = config.algorithm;
    ring_config.max_token_ttl = MAX_TOKEN_TTL;
    ring_config.leaf_lifetime = LEAF_LIFETIME;
    ring_config.rotate_when_remaining = ROTATE_WHEN_REMAINING;
    let ring = KeyRing::new(ca, ring_config, now).map_err(ServerError::Keys)?;
    Ok((TokenMinter::new(ring), credential_keys))
}

fn audit_sink(target: &AuditTarget) -> Result<AuditSink, ServerError> {
    Ok(match target {
        AuditTarget::Stderr => AuditSink::Stderr,
        AuditTarget::Stdout => AuditSink::Stdout,
        AuditTarget::File(path) => AuditSink::file(path).map_err(|source| ServerError::Audit {
            path: path.clone(),
            source,
        })?,
    })
}

/// Reads the policy file (a regular file of at most [`MAX_POLICY_FILE_BYTES`], never blocking
/// on open) and returns its bytes with their hash. Blocking: the poller calls it through
/// `spawn_blocking`.
fn read_policy_file(path: &Path) -> Result<(Vec<u8>, [u8; 32]), ServerError> {
    let bytes = read_watched_file(path, MAX_POLICY_FILE_BYTES as usize, "policy file")
        .map_err(ServerError::PolicyFile)?;
    // The file's bytes, not its mtime: a rewrite within the same second must still count.
    let mut stamp = [0u8; 32];
    stamp.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes).as_ref());
    Ok((bytes, stamp))
}

/// Parses policy bytes read by [`read_policy_file`].
fn parse_policy(path: &Path, bytes: &[u8]) -> Result<Policy, ServerError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ServerError::PolicyEncoding {
        path: path.to_owned(),
    })?;
    Policy::from_toml_str(text).map_err(|source| ServerError::Policy {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

impl BrokerServer {
    /// Builds the engine and starts every listener and background task. Must be called inside
    /// a Tokio runtime. `clock` governs every decision (tests inject one).
    ///
    /// The returned future is boxed: the start holds the whole configuration, the engine and
    /// every listener across its awaits (about 17 KB), which every caller would otherwise
    /// carry in its own future or on its stack.
    ///
    /// # Errors
    /// A [`ServerError`] naming what could not be set up; nothing keeps running on error.
    pub fn start(
        config: BrokerConfig,
        clock: Arc<dyn Clock>,
    ) -> impl Future<Output = Result<ServerHandle, ServerError>> + Send {
        Box::pin(Self::start_in_place(config, clock))
    }

    async fn start_in_place(
        config: BrokerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<ServerHandle, ServerError> {
        let now = clock.now();
        let (policy_bytes, stamp) = read_policy_file(&config.policy_file)?;
        let policy = parse_policy(&config.policy_file, &policy_bytes)?;
        let stamp = Some(stamp);
        let (minter, credential_keys) = load_signing(&config, now)?;
        let federation =
            crate::federation::load_federation(&config).map_err(ServerError::Federation)?;

        let mut providers: Vec<Arc<dyn BundleProvider>> = Vec::new();
        let mut file_source = None;
        if !config.bundle_files.is_empty() {
            let mut fc = FileSourceConfig::new().poll_interval(config.bundle_poll);
            for (td, path) in &config.bundle_files {
                fc = fc.bundle_file(td.clone(), path.clone());
            }
            let source = Arc::new(FileBundleSource::start(fc).map_err(ServerError::Bundles)?);
            providers.push(source.clone());
            file_source = Some(source);
        }
        let mut workload = None;
        if let Some(endpoint) = &config.workload_api {
            let options = WorkloadApiOptions::default()
                .endpoint(endpoint.clone())
                .initial_sync_timeout(WORKLOAD_API_SYNC_TIMEOUT);
            let source = Arc::new(
                WorkloadApiSource::connect(options)
                    .await
                    .map_err(ServerError::WorkloadApi)?,
            );
            providers.push(source.clone());
            workload = Some(source);
        }
        let bundles: Arc<dyn BundleProvider> = if providers.len() == 1 {
            providers.remove(0)
        } else {
            Arc::new(CombinedBundles::new(providers))
        };

        let mut options = BrokerOptions::new(config.audience.clone());
        options.login_credential_ttl = config.login_credential_ttl;
        options.refresh_token_ttl = config.refresh_token_ttl;
        options.max_session = config.max_session;
        options.rate_limit = (config.requests_per_second_per_subject > 0).then(|| RateLimit {
            per_second: f64::from(config.requests_per_second_per_subject),
            burst: f64::from(config.burst),
        });
        options.cache = config.token_cache;
        options.verified_cache = config.verified_cache;
        options.audit = audit_sink(&config.audit)?;
        options.audit_on_error = config.audit_on_error;
        options.audience_policy = config.audience_policy;
        options.failed_auth_limit = (config.failed_auth_per_second_per_ip > 0).then(|| RateLimit {
            per_second: f64::from(config.failed_auth_per_second_per_ip),
            burst: f64::from(config.failed_auth_burst_per_ip),
        });
        options.preauth_audit_interval = config.preauth_audit_interval;
        let mut key_sources = Vec::new();
        if let Some(sa) = &config.service_account {
            let (mode, sources) = service_account_mode(sa)?;
            options.service_accounts = Some(mode);
            key_sources = sources;
        }
        let broker = Arc::new(
            Broker::new(policy, bundles, minter, credential_keys, options)
                .map_err(ServerError::Broker)?,
        );

        // Before any listener exists: a bad pair stops start-up. Read synchronously, like the
        // policy at start-up (capped, regular files only).
        let realm_tls = match &config.listener.tls {
            None => None,
            Some(tls) => {
                let cert =
                    RealmCert::load(&tls.cert_file, &tls.key_file).map_err(ServerError::Tls)?;
                let server_config = cert
                    .server_config(config.listener.h2c)
                    .map_err(ServerError::Tls)?;
                Some((cert, server_config))
            }
        };

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let ready = Arc::new(AtomicBool::new(false));

        // Before any listener, like the policy: a registry backend whose credential file is
        // unreadable stops start-up, naming the registry.
        let backends = Arc::new(
            Backends::start(
                &broker.policy(),
                BackendsOptions {
                    federation: federation.clone(),
                    ..BackendsOptions::default()
                },
                tokio::runtime::Handle::current(),
                clock.clone(),
                shutdown_rx.clone(),
            )
            .map_err(ServerError::Backends)?,
        );

        // Before any listener: raise RLIMIT_NOFILE to its hard limit and warn when it is still
        // below both listeners' connection caps (see listen::fd_limit for why not refuse).
        let mut caps = vec![config.listener.limits.max_connections];
        if config.grpc_addr.is_some() {
            caps.push(config.listener.limits.max_connections);
        }
        crate::listen::fd_limit::raise_and_check(&caps);

        let http_listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.http_addr,
                source,
            })?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|source| ServerError::Bind {
                addr: config.http_addr,
                source,
            })?;

        let mut grpc_addr = None;
        let mut grpc_task = None;
        if let (Some(addr), Some(source)) = (config.grpc_addr, workload.as_ref()) {
            let svid = source.x509_svid().map_err(ServerError::WorkloadApi)?;
            let key =
                crate::grpc::certified_key(svid.chain().to_vec(), svid.private_key().to_rustls())
                    .map_err(ServerError::Grpc)?;
            let server_svid = Arc::new(crate::grpc::ServerSvid::new(key));
            let tls =
                crate::grpc::server_tls_config(server_svid.clone(), broker.tls_client_verifier())
                    .map_err(ServerError::Grpc)?;
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?;
            grpc_addr = Some(
                listener
                    .local_addr()
                    .map_err(|source| ServerError::Bind { addr, source })?,
            );
            let shutdown = wait_for(shutdown_rx.clone());
            let b = broker.clone();
            let c = clock.clone();
            let bk = backends.clone();
            let governor = Governor::new(config.listener.limits);
            grpc_task = Some(tokio::spawn(async move {
                if let Err(error) =
                    crate::grpc::serve_with_backends(b, c, bk, listener, tls, governor, shutdown)
                        .await
                {
                    tracing::error!(error = %svid_broker_identity::report::ErrorChain::new(&error), "grpc listener failed");
                }
            }));
            // The broker's own SVID rotates; the resolver reads `server_svid` per handshake.
            let source = source.clone();
            let mut rx = shutdown_rx.clone();
            let mut current = svid.chain().to_vec();
            grpc_task_svid(&mut current, &server_svid, &source);
            let refresher = tokio::spawn(async move {
                let mut tick = tokio::time::interval(ROTATION_CHECK_PERIOD);
                loop {
                    tokio::select! {
                        _ = tick.tick() => grpc_task_svid(&mut current, &server_svid, &source),
                        _ = rx.changed() => break,
                    }
                }
            });
            // Not awaited on shutdown beyond abort: it holds no request.
            drop(refresher);
        }

        let state = RealmState::new(
            broker.clone(),
            clock.clone(),
            &config.public_url,
            ready.clone(),
        )
        .with_backends(backends.clone())
        .with_federation(federation);
        let app = realm::router(state);
        let mut background = Vec::new();
        let mut http_options = HttpListenerOptions {
            limits: config.listener.limits,
            header_read_timeout: config.listener.header_read_timeout,
            body_read_timeout: config.listener.body_read_timeout,
            response_send_timeout: crate::http_listener::RESPONSE_SEND_TIMEOUT,
            h2c: config.listener.h2c,
            tls: None,
        };
        if let (Some(tls), Some((cert, server_config))) = (&config.listener.tls, realm_tls) {
            http_options.tls = Some(server_config);
            background.push(tokio::spawn(crate::tls_files::run(
                cert,
                tls.poll,
                shutdown_rx.clone(),
            )));
        }
        let http_shutdown = wait_for(shutdown_rx.clone());
        let http_task = tokio::spawn(crate::http_listener::serve(
            http_listener,
            app,
            http_options,
            http_shutdown,
        ));

        for (keys, source) in key_sources {
            background.push(tokio::spawn(crate::satoken::keys::run(
                keys,
                source,
                shutdown_rx.clone(),
            )));
        }
        // Key rotation: ask the ring every period (minting also rotates when due; this keeps
        // the published JWKS fresh when no one mints).
        {
            let broker = broker.clone();
            let clock = clock.clone();
            let mut rx = shutdown_rx.clone();
            background.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(ROTATION_CHECK_PERIOD);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            broker.flush_preauth_denials(clock.now());
                            // Off the runtime's workers: with the CA key in an HSM or a KMS,
                            // issuing a leaf waits for the key store's answer.
                            let rotating = broker.clone();
                            let now = clock.now();
                            let rotated = tokio::task::spawn_blocking(move || {
                                rotating.rotate_signing_key_if_due(now)
                            })
                            .await;
                            match rotated {
                                Ok(Ok(_)) => {}
                                Ok(Err(error)) => {
                                    tracing::error!(error = %svid_broker_identity::report::ErrorChain::new(&error), "signing key rotation failed");
                                }
                                Err(error) => {
                                    tracing::error!(error = %error, "signing key rotation task failed");
                                }
                            }
                        }
                        _ = rx.changed() => break,
                    }
                }
            }));
        }

        let reloader = Arc::new(PolicyReloader {
            broker: broker.clone(),
            backends,
            path: config.policy_file.clone(),
            stamp: Mutex::new(stamp),
        });
        {
            let reloader = reloader.clone();
            let mut rx = shutdown_rx.clone();
            let period = config.policy_poll;
            background.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            // Off the runtime: the read is capped and never blocks on open,
                            // but a slow file system must still not stall a worker.
                            let r = reloader.clone();
                            let _ = tokio::task::spawn_blocking(move || r.reload(false)).await;
                        }
                        _ = rx.changed() => break,
                    }
                }
            }));
        }

        ready.store(true, Ordering::Release);
        tracing::info!(%http_addr, grpc_addr = ?grpc_addr, "svid-broker serving");
        let handle = ServerHandle {
            broker,
            clock,
            http_addr,
            grpc_addr,
            reloader,
            ready,
            shutdown_tx,
            http_task,
            grpc_task,
            background,
            grace: config.shutdown_grace,
            _file_source: file_source,
            _workload: workload,
        };
        Ok(handle)
    }
}

/// One issuer's key holder and the source that keeps it fresh.
type KeyTask = (Arc<IssuerKeys>, KeySource);

/// The engine's service-account mode and the key sources to keep fresh. JWK Set files are
/// loaded now so a broken file stops start-up; discovery starts empty and fills in the
/// background (tokens meanwhile get UNAVAILABLE).
fn service_account_mode(
    config: &crate::config::ServiceAccountConfig,
) -> Result<(ServiceAccountMode, Vec<KeyTask>), ServerError> {
    let trusted_actors =
        TrustedActors::parse(&config.trusted_actors).map_err(ServerError::TrustedActors)?;
    let mut issuers = Vec::with_capacity(config.issuers.len());
    let mut sources = Vec::with_capacity(config.issuers.len());
    for i in &config.issuers {
        let keys = Arc::new(IssuerKeys::new(i.trust_domain.clone()));
        if let KeySource::File { path, .. } = &i.keys {
            keys.load_file(path)
                .map_err(|source| ServerError::ServiceAccountKeys {
                    issuer: i.issuer.clone(),
                    source,
                })?;
        }
        issuers.push(SaIssuer::new(
            i.issuer.clone(),
            i.audiences.clone(),
            i.template.clone(),
            keys.clone(),
        ));
        sources.push((keys, i.keys.clone()));
    }
    Ok((
        ServiceAccountMode {
            trusted_actors,
            validator: ServiceAccountValidator::new(issuers),
        },
        sources,
    ))
}

fn grpc_task_svid(
    current: &mut Vec<rustls_pki_types::CertificateDer<'static>>,
    server_svid: &crate::grpc::ServerSvid,
    source: &WorkloadApiSource,
) {
    let Ok(svid) = source.x509_svid() else {
        return;
    };
    if svid.chain() == current.as_slice() {
        return;
    }
    match crate::grpc::certified_key(svid.chain().to_vec(), svid.private_key().to_rustls()) {
        Ok(key) => {
            server_svid.store(key);
            *current = svid.chain().to_vec();
        }
        Err(error) => {
            tracing::error!(error = %svid_broker_identity::report::ErrorChain::new(&error), "new broker svid is unusable");
        }
    }
}

/// Loads the policy file into the broker, keeping the last good policy on error.
#[derive(Debug)]
struct PolicyReloader {
    broker: Arc<Broker>,
    backends: Arc<Backends>,
    path: PathBuf,
    stamp: Mutex<Option<[u8; 32]>>,
}

impl PolicyReloader {
    /// Reloads when forced or when the file's content changed; `Ok(true)` when a new policy
    /// went live.
    fn reload(&self, force: bool) -> Result<bool, ServerError> {
        let read = read_policy_file(&self.path);
        let stamp = read.as_ref().ok().map(|(_, stamp)| *stamp);
        let mut last = self.stamp.lock().unwrap_or_else(PoisonError::into_inner);
        if !force && *last == stamp {
            return Ok(false);
        }
        // Remember even a bad version, so the poller reports it once rather than every period.
        *last = stamp;
        // The new policy's backends are built before it goes live: a registry whose
        // credential file is unreadable keeps the last good policy, and its backends, in place.
        let prepared = read
            .and_then(|(bytes, _)| parse_policy(&self.path, &bytes))
            .and_then(|policy| {
                let backends = self
                    .backends
                    .prepare(&policy)
                    .map_err(ServerError::Backends)?;
                Ok((policy, backends))
            });
        match prepared {
            Ok((policy, backends)) => {
                self.backends.apply(backends, &policy);
                self.broker.replace_policy(policy);
                self.broker.metrics().policy_reload(true);
                tracing::info!(path = %self.path.display(), "policy reloaded");
                Ok(true)
            }
            Err(err) => {
                self.broker.metrics().policy_reload(false);
                tracing::error!(
                    error = %svid_broker_identity::report::ErrorChain::new(&err),
                    "policy reload failed; keeping the last good policy"
                );
                Err(err)
            }
        }
    }
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    // Either the flag flips or the sender is gone: both mean stop.
    let _ = rx.wait_for(|stop| *stop).await;
}

impl ServerHandle {
    /// The realm's bound address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The gRPC listener's bound address, when one runs.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// The engine the listeners serve (shared; its policy and keys are swapped in place).
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The signing CA trust anchor as PEM, for a registry's `rootcertbundle`.
    pub fn ca_bundle_pem(&self) -> String {
        self.broker.minter().key_ring().ca_bundle_pem()
    }

    /// Issues a new signing leaf now; registries keep verifying through the CA.
    ///
    /// # Errors
    /// The key ring's error; the current leaf stays.
    pub fn rotate_signing_key(&self, now: SystemTime) -> Result<(), KeyError> {
        self.broker.rotate_signing_key(now)
    }

    /// Re-reads the policy file now (SIGHUP). On success the new policy is live; on error the
    /// last good policy stays and the error says why.
    ///
    /// # Errors
    /// [`ServerError::Policy`].
    pub fn reload_policy(&self) -> Result<(), ServerError> {
        self.reloader.reload(true).map(|_| ())
    }

    /// [`ServerHandle::reload_policy`] from async code (the SIGHUP handler): the file is read on
    /// a blocking thread, like the poller's reads, so a slow file system never stalls a worker.
    ///
    /// # Errors
    /// [`ServerError::Policy`]; [`ServerError::ReloadTask`] if the blocking task was cancelled.
    pub async fn reload_policy_off_runtime(&self) -> Result<(), ServerError> {
        let reloader = Arc::clone(&self.reloader);
        tokio::task::spawn_blocking(move || reloader.reload(true).map(|_| ()))
            .await
            .map_err(|_| ServerError::ReloadTask)?
    }

    /// The clock passed to [`BrokerServer::start`], which every decision reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Asks every listener to stop accepting, waits up to the configured grace period (one
    /// deadline for both listeners, which drain at the same time) for in-flight requests to
    /// finish, aborts what is left, then stops the background tasks.
    pub async fn shutdown(self) {
        self.ready.store(false, Ordering::Release);
        let _ = self.shutdown_tx.send(true);
        let deadline = tokio::time::Instant::now() + self.grace;
        let mut http = self.http_task;
        if tokio::time::timeout_at(deadline, &mut http).await.is_err() {
            tracing::warn!("http listener did not drain in time; aborting");
            http.abort();
        }
        if let Some(mut grpc) = self.grpc_task
            && tokio::time::timeout_at(deadline, &mut grpc).await.is_err()
        {
            tracing::warn!("grpc listener did not drain in time; aborting");
            grpc.abort();
        }
        for task in self.background {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests;
