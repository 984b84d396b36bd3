//! The async shell around the registry backends: one [`BackendService`] per policy registry of
//! a backend kind (Harbor), built from the policy and the broker's credential files, kept in
//! step with policy reloads, and asked by the gRPC edge for the credential of a decided grant.
//!
//! The engine stays synchronous: it decides, hands out a [`BackendPass`], and records what
//! came back. Everything that waits on a registry's API is here or in
//! `svid-broker-backends`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use svid_broker_backends::artifactory::{ArtifactoryBackend, ArtifactoryConfig};
use svid_broker_backends::quay::{QuayBackend, QuayConfig};
use svid_broker_backends::{
    Backend, BackendCredential, BackendError, BackendFigures, BackendGrant, BackendKind,
    BackendService, Failure, GitlabConfig, HarborConfig, NexusConfig, ServiceConfig, Step,
};
use svid_broker_identity::clock::Clock;
use svid_broker_identity::secret::{SecretString, seal_string};
use svid_broker_policy::{CloudAccount, Federation, Policy, Registry, RegistryApi, RegistryKind};
use svid_broker_sources::file::watched::{WatchedFileError, read_owner_only_file};
use svid_broker_token::federation::FederationIssuer;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::engine::BackendPass;

mod cloud;

/// Largest `credential_file` read, in bytes: one `username:password` line.
pub const MAX_CREDENTIAL_FILE_BYTES: usize = 4096;

/// How long one call to a registry's API may take, connect to last byte (and, again, the
/// longest wait for one of the registry's in-flight slots). Both together stay under the
/// kubelet plugin's default 10 s deadline and the gRPC request timeout, so a slow registry is
/// reported by the broker, naming the registry and the step, before the plugin gives up.
pub const DEFAULT_BACKEND_REQUEST_DEADLINE: Duration = Duration::from_secs(4);

/// Why the backends for a policy cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendsError {
    /// The policy entry lacks what its kind's backend is built from (a policy the policy
    /// crate accepted always has it: this is the backstop of an exhaustive match).
    #[error("registry {registry:?}: kind = \"{kind}\" has no backend to build from this entry")]
    KindNotBuilt {
        /// The registry's policy name.
        registry: String,
        /// Its kind.
        kind: RegistryKind,
    },
    /// `credential_file` is unreadable, not a regular file, or over [`MAX_CREDENTIAL_FILE_BYTES`].
    #[error("registry {registry:?}: cannot read credential_file {}", .path.display())]
    CredentialFile {
        /// The registry's policy name.
        registry: String,
        /// The registry's `credential_file`, an absolute path as the policy requires.
        path: PathBuf,
        /// Why.
        #[source]
        source: WatchedFileError,
    },
    /// The credential file may be read by group or others.
    #[error(
        "registry {registry:?}: credential_file {} has mode {mode:03o}: it must be readable by its owner only (chmod 600)",
        .path.display()
    )]
    CredentialFileOpen {
        /// The registry's policy name.
        registry: String,
        /// The registry's `credential_file`, an absolute path as the policy requires.
        path: PathBuf,
        /// Its permission bits (`mode & 0o777`), with some group or other bit set.
        mode: u32,
    },
    /// The credential file is not one `username:password` line.
    #[error(
        "registry {registry:?}: credential_file {} must hold one line `username:password` ({rule})",
        .path.display()
    )]
    CredentialFormat {
        /// The registry's policy name.
        registry: String,
        /// The registry's `credential_file`, an absolute path as the policy requires.
        path: PathBuf,
        /// The rule it breaks (never its content).
        rule: &'static str,
    },
    /// The registry's lifetime leaves too little above the reuse margin: every request would
    /// make a new credential instead of reusing a live one.
    #[error(
        "registry {registry:?}: token_ttl_seconds = {ttl_seconds} must be at least twice the {margin_seconds} s reuse margin, or every request makes a new {kind} credential"
    )]
    TtlBelowReuse {
        /// The registry's policy name.
        registry: String,
        /// Its kind.
        kind: RegistryKind,
        /// Its `token_ttl_seconds`.
        ttl_seconds: u64,
        /// The reuse margin, in seconds.
        margin_seconds: u64,
    },
    /// A Quay or Artifactory entry, but no `[federation]` in the broker's configuration: the
    /// broker has no issuer to sign the JWT the registry exchanges.
    #[error(
        "registry {registry:?} (kind {kind}) exchanges a JWT the broker signs: configure [federation] in the broker's configuration"
    )]
    NoFederationIssuer {
        /// The registry's policy name.
        registry: String,
        /// Its kind.
        kind: RegistryKind,
    },
    /// A token registry's `issuer` is the broker's federation issuer or `public_url`.
    #[error(
        "registry {registry:?}: issuer {issuer:?} is the broker's OIDC issuer (or its public_url); registry tokens and federated JWTs must not share an iss: pick another issuer"
    )]
    IssuerShared {
        /// The registry's policy name.
        registry: String,
        /// Its `issuer`.
        issuer: String,
    },
    /// A cloud registry kind whose cargo feature this build of the broker lacks.
    #[error(
        "registry {registry:?}: kind {kind} is not in this build of the broker (built without the cargo feature `{kind}`)"
    )]
    KindNotInBuild {
        /// The registry's policy name.
        registry: String,
        /// Its kind (also the feature's name).
        kind: RegistryKind,
    },
    /// The backend refused its configuration (URL, CA file).
    #[error("registry {registry:?}: backend configuration")]
    Config {
        /// The registry's policy name.
        registry: String,
        /// Why.
        #[source]
        source: svid_broker_backends::ConfigError,
    },
}

/// Tunables shared by every backend.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackendsOptions {
    /// One API call's deadline; [`DEFAULT_BACKEND_REQUEST_DEADLINE`] by default.
    pub request_deadline: Duration,
    /// Reuse, lease, sweep and revocation tunables, the same for every registry's service.
    pub service: ServiceConfig,
    /// The broker's OIDC issuer (`[federation]`), which Quay and Artifactory entries need.
    pub federation: Option<Arc<FederationIssuer>>,
}

impl Default for BackendsOptions {
    fn default() -> Self {
        Self {
            request_deadline: DEFAULT_BACKEND_REQUEST_DEADLINE,
            service: ServiceConfig::default(),
            federation: None,
        }
    }
}

/// What identifies a backend across reloads: a registry keeps its service (and its leases)
/// while its kind, URL and files, and the credential file's content, stay the same; a rotated
/// broker credential builds a new service on the next reload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BackendIdentity {
    kind: RegistryKind,
    url: String,
    credential_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    /// SHA-256 of the credential file's bytes (never the bytes).
    credential_digest: Option<[u8; 32]>,
    /// Nexus's roles.
    roles: Option<(String, String)>,
    /// What the broker's JWT says (Quay, Artifactory, the clouds).
    federation: Option<Federation>,
    /// The cloud identity (ECR, Artifact Registry, ACR).
    cloud: Option<CloudAccount>,
}

impl BackendIdentity {
    fn of(registry: &Registry, credential_digest: Option<[u8; 32]>) -> Option<Self> {
        let api = registry.api()?;
        Some(Self {
            kind: registry.kind(),
            url: api.url().to_owned(),
            credential_file: api.credential_file().map(Path::to_owned),
            ca_file: api.ca_file().map(Path::to_owned),
            credential_digest,
            roles: api
                .nexus_roles()
                .map(|(pull, push)| (pull.to_owned(), push.to_owned())),
            federation: api.federation().cloned(),
            cloud: api.cloud().cloned(),
        })
    }

    /// The same registry API, whatever the credential (a grant decided on one policy must be
    /// served by a backend built for that policy's entry).
    fn same_api(&self, registry: &Registry) -> bool {
        Self::of(registry, self.credential_digest).as_ref() == Some(self)
    }
}

#[derive(Debug)]
struct Entry {
    identity: BackendIdentity,
    service: Arc<BackendService>,
}

/// Registry name → its backend, for the current policy.
pub struct Backends {
    current: ArcSwap<HashMap<String, Entry>>,
    /// Every service ever started, including those a reload replaced: their revocation queues
    /// still hold credentials to delete, so their run loops go on until shutdown.
    started: Mutex<Vec<Arc<BackendService>>>,
    runner: Option<Runner>,
    options: BackendsOptions,
}

/// What starting a service's run loop takes.
struct Runner {
    runtime: tokio::runtime::Handle,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field(
                "registries",
                &self.current.load().keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Backends {
    /// No backends: every backend grant is refused as unavailable.
    pub fn none() -> Self {
        Self {
            current: ArcSwap::from_pointee(HashMap::new()),
            started: Mutex::new(Vec::new()),
            runner: None,
            options: BackendsOptions::default(),
        }
    }

    /// The backends `policy` needs, each with its run loop (revocations at their time, sweeps)
    /// on `runtime` until `shutdown` turns true. Reads the credential files (blocking, capped).
    ///
    /// # Errors
    /// [`BackendsError`], naming the registry.
    pub fn start(
        policy: &Policy,
        options: BackendsOptions,
        runtime: tokio::runtime::Handle,
        clock: Arc<dyn Clock>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, BackendsError> {
        let backends = Self {
            current: ArcSwap::from_pointee(HashMap::new()),
            started: Mutex::new(Vec::new()),
            runner: Some(Runner {
                runtime,
                clock,
                shutdown,
            }),
            options,
        };
        backends.apply(backends.prepare(policy)?, policy);
        Ok(backends)
    }

    /// Checks that `policy`'s backends can be built, without installing them: the reloader
    /// calls it before it installs a policy, so a bad credential file keeps the last good
    /// policy in place. Returns what [`Self::apply`] installs.
    ///
    /// # Errors
    /// [`BackendsError`], naming the registry.
    pub fn prepare(&self, policy: &Policy) -> Result<PreparedBackends, BackendsError> {
        if let Some(issuer) = &self.options.federation {
            check_issuers_apart(policy, issuer.issuer())?;
        }
        let current = self.current.load();
        let mut next = HashMap::new();
        for registry in policy.registries() {
            let Some(api) = registry.api() else {
                continue;
            };
            check_lifetime(registry, &self.options)?;
            let credential = api
                .credential_file()
                .map(|path| read_credential_file(registry.name(), path))
                .transpose()?;
            let digest = credential.as_ref().map(|(_, digest)| *digest);
            let Some(identity) = BackendIdentity::of(registry, digest) else {
                continue;
            };
            let service = match current.get(registry.name()) {
                Some(entry) if entry.identity == identity => entry.service.clone(),
                _ => Arc::new(build_service(
                    registry,
                    credential.as_ref().map(|(bytes, _)| &bytes[..]),
                    &self.options,
                )?),
            };
            next.insert(registry.name().to_owned(), Entry { identity, service });
        }
        Ok(PreparedBackends(next))
    }

    /// Installs `prepared` (from [`Self::prepare`] on `policy`), starts the run loops of new
    /// services, and points every sweep at the projects `policy` names.
    pub fn apply(&self, prepared: PreparedBackends, policy: &Policy) {
        let next = prepared.0;
        for (name, entry) in &next {
            // A Nexus user is registry-wide: its sweep lists users, in no namespace.
            let namespaces = match entry.identity.kind {
                RegistryKind::Nexus => vec![String::new()],
                _ => policy.literal_projects(name),
            };
            entry.service.set_sweep_projects(namespaces);
            // Rules reaching projects through templates or `*` cannot be listed from the
            // policy: after a restart, only listing what the broker's credential sees finds
            // the robots an earlier run made there.
            entry
                .service
                .set_sweep_visible(!policy.names_every_project_literally(name));
        }
        if let Some(runner) = &self.runner
            && let Ok(mut started) = self.started.lock()
        {
            for entry in next.values() {
                if !started.iter().any(|s| Arc::ptr_eq(s, &entry.service)) {
                    started.push(entry.service.clone());
                    let service = entry.service.clone();
                    let clock = runner.clock.clone();
                    let shutdown = runner.shutdown.clone();
                    runner
                        .runtime
                        .spawn(async move { service.run(clock, shutdown).await });
                }
            }
        }
        self.current.store(Arc::new(next));
    }

    /// The credential for `pass`, from its registry's backend (reused while live).
    ///
    /// # Errors
    /// The backend's [`BackendError`], naming the registry and the step.
    pub async fn issue(
        &self,
        pass: &BackendPass,
        now: SystemTime,
    ) -> Result<BackendCredential, BackendError> {
        let grant = pass.grant();
        let registry = grant.registry.name();
        let current = self.current.load();
        let entry = current
            .get(registry)
            .filter(|e| e.identity.same_api(&grant.registry));
        let Some(service) = entry.map(|e| e.service.clone()) else {
            // An embedder that built the gRPC service without backends gets here, and a grant
            // decided on a policy whose entry a reload has just changed (its URL, its files):
            // refused rather than served by a backend built for another entry; a retry
            // decides on the new policy.
            return Err(BackendError::new(
                registry,
                backend_kind(grant.registry.kind()),
                Step::Issue,
                Failure::Internal {
                    what: "no backend is set up for this registry entry (retry after a reload)",
                },
            ));
        };
        let request = BackendGrant::new(
            registry,
            pass.subject().spiffe_id().as_str(),
            grant.granted.clone(),
            pass.revoke_at(now),
        );
        service.issue(request, now).await
    }

    /// Withdraws `credential`, just made for `registry` but never handed out (its issuance
    /// could not be audited): revoked now, not reused.
    pub fn withdraw(&self, registry: &str, credential: &BackendCredential, now: SystemTime) {
        if let Some(entry) = self.current.load().get(registry) {
            entry.service.withdraw(credential, now);
        }
    }

    /// Figures for `/metrics`: every backend started, including those a reload replaced (their
    /// pending revocations still run), summed per registry and kind.
    pub fn figures(&self) -> Vec<BackendFigures> {
        let mut services: Vec<Arc<BackendService>> = self
            .started
            .lock()
            .map(|started| started.clone())
            .unwrap_or_default();
        for entry in self.current.load().values() {
            if !services.iter().any(|s| Arc::ptr_eq(s, &entry.service)) {
                services.push(entry.service.clone());
            }
        }
        let mut figures: Vec<BackendFigures> = Vec::new();
        for figure in services.iter().map(|s| s.figures()) {
            match figures
                .iter_mut()
                .find(|f| f.registry == figure.registry && f.kind == figure.kind)
            {
                Some(sum) => add_figures(sum, &figure),
                None => figures.push(figure),
            }
        }
        figures.sort_by(|a, b| (&a.registry, a.kind).cmp(&(&b.registry, b.kind)));
        figures
    }
}

/// Adds `more`'s counters and gauges into `sum` (the same registry's services, old and new).
fn add_figures(sum: &mut BackendFigures, more: &BackendFigures) {
    sum.credentials_created += more.credentials_created;
    sum.credentials_reused += more.credentials_reused;
    sum.credentials_revoked += more.credentials_revoked;
    sum.credentials_expired += more.credentials_expired;
    sum.credentials_swept += more.credentials_swept;
    sum.revoke_failures += more.revoke_failures;
    sum.live_leases += more.live_leases;
    sum.queued_revocations += more.queued_revocations;
    sum.revocations_not_queued += more.revocations_not_queued;
    for request in &more.api_requests {
        match sum
            .api_requests
            .iter_mut()
            .find(|r| r.step == request.step && r.outcome == request.outcome)
        {
            Some(r) => r.count += request.count,
            None => sum.api_requests.push(*request),
        }
    }
}

/// Backends built for a policy, not yet installed (see [`Backends::prepare`]).
#[derive(Debug)]
pub struct PreparedBackends(HashMap<String, Entry>);

/// A lifetime under twice the reuse margin would make a new credential for nearly every
/// request: a credential is handed out again only while more than the margin is left of it.
fn check_lifetime(registry: &Registry, options: &BackendsOptions) -> Result<(), BackendsError> {
    let margin = options.service.reuse_margin;
    if registry.token_ttl() < margin.saturating_mul(2) {
        return Err(BackendsError::TtlBelowReuse {
            registry: registry.name().to_owned(),
            kind: registry.kind(),
            ttl_seconds: registry.token_ttl().as_secs(),
            margin_seconds: margin.as_secs(),
        });
    }
    Ok(())
}

/// `credential` is the credential file's bytes, when the entry has one.
fn build_service(
    registry: &Registry,
    credential: Option<&[u8]>,
    options: &BackendsOptions,
) -> Result<BackendService, BackendsError> {
    let name = registry.name().to_owned();
    let Some(api) = registry.api() else {
        return Err(BackendsError::KindNotBuilt {
            registry: name,
            kind: registry.kind(),
        });
    };
    if let Some(federation) = api.federation() {
        return build_federated(registry, api, federation, options);
    }
    let Some(path) = api.credential_file() else {
        return Err(BackendsError::KindNotBuilt {
            registry: name,
            kind: registry.kind(),
        });
    };
    let credential = credential.unwrap_or_default();
    match registry.kind() {
        RegistryKind::Harbor => {
            let (username, password) = user_password(&name, path, credential)?;
            let mut config = HarborConfig::new(name.clone(), api.url(), username, password);
            config.ca_file = api.ca_file().map(Path::to_owned);
            config.request_deadline = options.request_deadline;
            BackendService::harbor(config, options.service.clone()).map_err(|source| {
                BackendsError::Config {
                    registry: name.clone(),
                    source,
                }
            })
        }
        RegistryKind::Gitlab => {
            let line = one_line(&name, path, credential)?;
            if line.is_empty() {
                return Err(BackendsError::CredentialFormat {
                    registry: name,
                    path: path.to_owned(),
                    rule: "an empty token",
                });
            }
            let token = seal_string(Zeroizing::new(line.to_owned()));
            let mut config = GitlabConfig::new(name.clone(), api.url(), token);
            config.ca_file = api.ca_file().map(Path::to_owned);
            config.request_deadline = options.request_deadline;
            BackendService::gitlab(config, options.service.clone()).map_err(|source| {
                BackendsError::Config {
                    registry: name,
                    source,
                }
            })
        }
        RegistryKind::Nexus => {
            let (username, password) = user_password(&name, path, credential)?;
            let Some((pull_role, push_role)) = api.nexus_roles() else {
                return Err(BackendsError::KindNotBuilt {
                    registry: name,
                    kind: RegistryKind::Nexus,
                });
            };
            let mut config = NexusConfig::new(
                name.clone(),
                api.url(),
                username,
                password,
                pull_role.to_owned(),
                push_role.to_owned(),
            );
            config.ca_file = api.ca_file().map(Path::to_owned);
            config.request_deadline = options.request_deadline;
            BackendService::nexus(config, options.service.clone()).map_err(|source| {
                BackendsError::Config {
                    registry: name,
                    source,
                }
            })
        }
        kind @ (RegistryKind::Token
        | RegistryKind::Quay
        | RegistryKind::Artifactory
        | RegistryKind::Ecr
        | RegistryKind::Gar
        | RegistryKind::Acr) => Err(BackendsError::KindNotBuilt {
            registry: name,
            kind,
        }),
    }
}

/// A token registry whose `issuer` is the federation issuer, or `public_url` (whose discovery
/// document publishes the registry-token keys), would have the broker sign registry tokens a
/// registry trusting the federation issuer (or pointed at `public_url` by mistake) could take
/// for identity JWTs: refused, so the two token families never share an `iss`.
fn check_issuers_apart(policy: &Policy, federation_issuer: &str) -> Result<(), BackendsError> {
    let public_url = federation_issuer
        .strip_suffix(crate::config::FEDERATION_PATH)
        .unwrap_or(federation_issuer);
    for registry in policy.registries() {
        if let Some(issuer) = registry.issuer()
            && (issuer == federation_issuer || issuer == public_url)
        {
            return Err(BackendsError::IssuerShared {
                registry: registry.name().to_owned(),
                issuer: issuer.to_owned(),
            });
        }
    }
    Ok(())
}

/// The backend product of a registry kind, for errors raised before any backend runs. The
/// token kind has none; it never reaches a backend, and is named as the closest product.
fn backend_kind(kind: RegistryKind) -> BackendKind {
    match kind {
        RegistryKind::Harbor | RegistryKind::Token => BackendKind::Harbor,
        RegistryKind::Gitlab => BackendKind::Gitlab,
        RegistryKind::Nexus => BackendKind::Nexus,
        RegistryKind::Quay => BackendKind::Quay,
        RegistryKind::Artifactory => BackendKind::Artifactory,
        RegistryKind::Ecr => BackendKind::Ecr,
        RegistryKind::Gar => BackendKind::Gar,
        RegistryKind::Acr => BackendKind::Acr,
    }
}

/// A Quay, Artifactory or cloud service: no broker secret, the broker's JWT from
/// `options.federation`.
fn build_federated(
    registry: &Registry,
    api: &RegistryApi,
    federation: &Federation,
    options: &BackendsOptions,
) -> Result<BackendService, BackendsError> {
    let name = registry.name().to_owned();
    let Some(issuer) = options.federation.clone() else {
        return Err(BackendsError::NoFederationIssuer {
            registry: name,
            kind: registry.kind(),
        });
    };
    let config_error = |source| BackendsError::Config {
        registry: name.clone(),
        source,
    };
    if let Some(cloud) = api.cloud() {
        let entry = cloud::CloudEntry {
            name: &name,
            api,
            federation,
            issuer,
            options,
        };
        let backend = cloud::build(&entry, cloud)?;
        return Ok(BackendService::new(backend, options.service.clone()));
    }
    let backend: Arc<dyn Backend> = match (
        registry.kind(),
        federation.quay_robots(),
        federation.provider_name(),
    ) {
        (RegistryKind::Quay, Some((pull, push)), _) => {
            let mut config = QuayConfig::new(name.clone(), api.url(), issuer, pull, push);
            if let Some(audience) = federation.audience() {
                audience.clone_into(&mut config.audience);
            }
            if let Some(template) = federation.subject_template() {
                template.clone_into(&mut config.subject_template);
            }
            config.ca_file = api.ca_file().map(Path::to_owned);
            config.request_deadline = options.request_deadline;
            Arc::new(QuayBackend::new(config).map_err(config_error)?)
        }
        (RegistryKind::Artifactory, _, Some(provider)) => {
            let mut config = ArtifactoryConfig::new(name.clone(), api.url(), issuer, provider);
            if let Some(audience) = federation.audience() {
                audience.clone_into(&mut config.audience);
            }
            if let Some(template) = federation.subject_template() {
                template.clone_into(&mut config.subject_template);
            }
            config.ca_file = api.ca_file().map(Path::to_owned);
            config.request_deadline = options.request_deadline;
            Arc::new(ArtifactoryBackend::new(config).map_err(config_error)?)
        }
        (kind, _, _) => {
            return Err(BackendsError::KindNotBuilt {
                registry: name,
                kind,
            });
        }
    };
    Ok(BackendService::new(backend, options.service.clone()))
}

/// The credential file's bytes (capped, a regular file only its owner may read, wiped on
/// drop) and their SHA-256.
fn read_credential_file(
    registry: &str,
    path: &Path,
) -> Result<(Zeroizing<Vec<u8>>, [u8; 32]), BackendsError> {
    let bytes = Zeroizing::new(
        read_owner_only_file(path, MAX_CREDENTIAL_FILE_BYTES, "credential file").map_err(
            |source| match source {
                WatchedFileError::NotOwnerOnly { mode, .. } => BackendsError::CredentialFileOpen {
                    registry: registry.to_owned(),
                    path: path.to_owned(),
                    mode,
                },
                source => BackendsError::CredentialFile {
                    registry: registry.to_owned(),
                    path: path.to_owned(),
                    source,
                },
            },
        )?,
    );
    let mut digest = [0u8; 32];
    digest.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes).as_ref());
    Ok((bytes, digest))
}

/// One line (a final newline allowed), without control characters: the text of a credential
/// file.
fn one_line<'b>(registry: &str, path: &Path, bytes: &'b [u8]) -> Result<&'b str, BackendsError> {
    let bad = |rule| BackendsError::CredentialFormat {
        registry: registry.to_owned(),
        path: path.to_owned(),
        rule,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
    let line = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if line.contains(['\n', '\r']) {
        return Err(bad("more than one line"));
    }
    Ok(line)
}

/// One `username:password` line; the password is sealed at once.
fn user_password(
    registry: &str,
    path: &Path,
    bytes: &[u8],
) -> Result<(String, SecretString), BackendsError> {
    let bad = |rule| BackendsError::CredentialFormat {
        registry: registry.to_owned(),
        path: path.to_owned(),
        rule,
    };
    let line = one_line(registry, path, bytes)?;
    let (username, password) = line.split_once(':').ok_or_else(|| bad("no `:`"))?;
    if username.is_empty() || password.is_empty() {
        return Err(bad("an empty username or password"));
    }
    if username.chars().any(char::is_control) {
        return Err(bad("a control character in the username"));
    }
    Ok((
        username.to_owned(),
        seal_string(Zeroizing::new(password.to_owned())),
    ))
}

/// [`user_password`] of a file (tests).
#[cfg(test)]
fn read_user_password(
    registry: &str,
    path: &Path,
) -> Result<(String, SecretString), BackendsError> {
    let (bytes, _) = read_credential_file(registry, path)?;
    user_password(registry, path, &bytes)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use svid_broker_identity::secret::ExposeSecret as _;

    use super::*;

    fn file(content: &[u8]) -> tempfile::NamedTempFile {
        // tempfile creates it 0600, as a credential file must be.
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        f
    }

    fn write_private(path: &Path, content: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn harbor_policy(dir: &Path, ttl: u64) -> Policy {
        Policy::from_toml_str(&format!(
            r#"
[[registries]]
name = "corp"
service = "harbor-registry"
kind = "harbor"
url = "http://127.0.0.1:1"
credential_file = "{}/harbor.credential"
token_ttl_seconds = {ttl}
hosts = ["harbor.example.org"]
"#,
            dir.display()
        ))
        .unwrap()
    }

    fn service_of(backends: &Backends) -> Arc<BackendService> {
        backends.current.load()["corp"].service.clone()
    }

    #[test]
    fn a_reload_keeps_a_backend_until_its_credential_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let credential = dir.path().join("harbor.credential");
        write_private(&credential, "robot$team-a+manager:first\n");
        let backends = Backends::none();
        let policy = harbor_policy(dir.path(), 600);
        backends.apply(backends.prepare(&policy).unwrap(), &policy);
        let first = service_of(&backends);

        backends.apply(backends.prepare(&policy).unwrap(), &policy);
        assert!(
            Arc::ptr_eq(&first, &service_of(&backends)),
            "unchanged: kept"
        );

        // The manager robot's secret was rotated in Harbor and in the file.
        write_private(&credential, "robot$team-a+manager:second\n");
        backends.apply(backends.prepare(&policy).unwrap(), &policy);
        assert!(
            !Arc::ptr_eq(&first, &service_of(&backends)),
            "rotated: rebuilt"
        );

        // A file that became unreadable keeps the last good backends (prepare fails first).
        write_private(&credential, "no colon\n");
        assert!(matches!(
            backends.prepare(&policy),
            Err(BackendsError::CredentialFormat { .. })
        ));
        // A lifetime too short to reuse anything is refused on reload too.
        write_private(&credential, "robot$team-a+manager:second\n");
        assert!(matches!(
            backends.prepare(&harbor_policy(dir.path(), 60)),
            Err(BackendsError::TtlBelowReuse {
                ttl_seconds: 60,
                ..
            })
        ));
    }

    #[test]
    fn a_credential_file_is_one_user_password_line() {
        let f = file(b"robot$team-a+manager:S3cret:with:colons\n");
        let (user, password) = read_user_password("corp", f.path()).unwrap();
        assert_eq!(user, "robot$team-a+manager");
        assert_eq!(password.expose_secret(), "S3cret:with:colons");
    }

    #[test]
    fn a_bad_credential_file_names_the_rule_and_never_its_content() {
        for (content, rule) in [
            (&b"no-colon-here"[..], "no `:`"),
            (b":s3cretpw", "empty"),
            (b"user:", "empty"),
            (b"a:b\nsecondline:d\n", "more than one line"),
            (b"\xff\xfe:s3cretpw", "UTF-8"),
            (b"us\x07er:s3cretpw", "control"),
        ] {
            let f = file(content);
            let err = read_user_password("corp", f.path()).unwrap_err();
            let text = svid_broker_identity::report::ErrorChain::new(&err).to_string();
            assert!(text.contains(rule), "{text}");
            assert!(text.contains("\"corp\""), "{text}");
            // Distinctive strings: a temporary file's random name may hold any short one.
            assert!(
                !text.contains("s3cretpw") && !text.contains("secondline"),
                "{text}"
            );
        }
        let open = file(b"user:pw\n");
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let err = read_user_password("corp", open.path()).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let big = file(&vec![b'a'; MAX_CREDENTIAL_FILE_BYTES + 1]);
        assert!(matches!(
            read_user_password("corp", big.path()),
            Err(BackendsError::CredentialFile { .. })
        ));
    }
}

#[cfg(test)]
mod federated_tests {
    use svid_broker_token::federation::FederationKey;

    use super::*;

    fn options() -> BackendsOptions {
        let issuer = FederationIssuer::new(
            "https://broker.example.org/federation",
            vec![FederationKey::generate().unwrap()],
            Duration::from_secs(300),
        )
        .unwrap();
        BackendsOptions {
            federation: Some(Arc::new(issuer)),
            ..BackendsOptions::default()
        }
    }

    fn quay_policy(extra_registry: &str) -> Policy {
        Policy::from_toml_str(&format!(
            r#"
[[registries]]
name = "quay"
service = "quay.example.org"
kind = "quay"
url = "https://quay.example.org"
pull_robot = "svid_pull"
push_robot = "svid_push"
token_ttl_seconds = 600
hosts = ["quay.example.org"]
{extra_registry}
"#
        ))
        .unwrap()
    }

    fn backends_with(options: BackendsOptions) -> Backends {
        let backends = Backends::none();
        Backends {
            options,
            ..backends
        }
    }

    #[test]
    fn a_federated_registry_needs_the_issuer_and_gets_a_service() {
        let policy = quay_policy("");
        let err = Backends::none().prepare(&policy).unwrap_err();
        assert!(
            matches!(&err, BackendsError::NoFederationIssuer { registry, kind: RegistryKind::Quay } if registry == "quay"),
            "{err:?}"
        );
        assert!(err.to_string().contains("configure [federation]"), "{err}");
        let prepared = backends_with(options()).prepare(&policy).unwrap();
        assert!(prepared.0.contains_key("quay"));
    }

    #[test]
    fn a_token_registry_may_not_take_the_federation_issuer_or_public_url_as_its_issuer() {
        for issuer in [
            "https://broker.example.org/federation",
            "https://broker.example.org",
        ] {
            let policy = quay_policy(&format!(
                "[[registries]]\nname = \"local\"\nservice = \"local\"\nissuer = \"{issuer}\"\n\
                 profile = \"distribution-2\"\nhosts = [\"127.0.0.1:5000\"]\n"
            ));
            let err = backends_with(options()).prepare(&policy).unwrap_err();
            assert!(
                matches!(&err, BackendsError::IssuerShared { registry, .. } if registry == "local"),
                "{issuer}: {err:?}"
            );
        }
        let fine = quay_policy(
            "[[registries]]\nname = \"local\"\nservice = \"local\"\nissuer = \"svid-broker\"\n\
             profile = \"distribution-2\"\nhosts = [\"127.0.0.1:5000\"]\n",
        );
        backends_with(options()).prepare(&fine).unwrap();
    }

    /// One entry of each cloud kind, with loopback endpoints (nothing is called when building).
    const CLOUD_POLICY: &str = r#"
[[registries]]
name = "ecr"
service = "ecr.example"
kind = "ecr"
aws.role_arn = "arn:aws:iam::123456789012:role/svid-puller"
aws.region = "us-east-1"
aws.sts_endpoint = "http://127.0.0.1:9"
aws.ecr_endpoint = "http://127.0.0.1:9"
token_ttl_seconds = 600
hosts = ["ecr.example"]

[[registries]]
name = "gar"
service = "gar.example"
kind = "gar"
gcp.workload_identity_provider = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/svid/providers/broker"
gcp.service_account = "puller@proj.iam.gserviceaccount.com"
token_ttl_seconds = 600
hosts = ["gar.example"]

[[registries]]
name = "acr"
service = "acr.example"
kind = "acr"
url = "https://corp.azurecr.io"
azure.tenant_id = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
azure.client_id = "11111111-2222-3333-4444-555555555555"
token_ttl_seconds = 600
hosts = ["acr.example"]
"#;

    fn cloud_policy() -> Policy {
        Policy::from_toml_str(CLOUD_POLICY).unwrap()
    }

    /// What this build does with each cloud entry: a service when its feature is in, else a
    /// refusal naming the feature. `scripts/test.sh` runs this without the features too.
    #[test]
    fn each_cloud_entry_gets_a_service_or_names_the_missing_feature() {
        let policy = cloud_policy();
        let err = Backends::none().prepare(&policy).unwrap_err();
        assert!(
            matches!(err, BackendsError::NoFederationIssuer { .. }),
            "{err:?}"
        );
        for (name, built) in [
            ("ecr", cfg!(feature = "ecr")),
            ("gar", cfg!(feature = "gar")),
            ("acr", cfg!(feature = "acr")),
        ] {
            let one = Policy::from_toml_str(&policy_text_of(&policy, name)).unwrap();
            let result = backends_with(options()).prepare(&one);
            match result {
                Ok(prepared) => {
                    assert!(built, "{name} built without its feature");
                    assert!(prepared.0.contains_key(name));
                }
                Err(err) => {
                    assert!(!built, "{name}: {err}");
                    assert!(
                        matches!(&err, BackendsError::KindNotInBuild { registry, .. } if registry == name),
                        "{err:?}"
                    );
                    let text = err.to_string();
                    assert!(
                        text.contains(&format!("built without the cargo feature `{name}`")),
                        "{text}"
                    );
                }
            }
        }
    }

    /// The one registry `name` of [`cloud_policy`], as its own policy text.
    fn policy_text_of(policy: &Policy, name: &str) -> String {
        assert!(policy.registry_by_name(name).is_some());
        CLOUD_POLICY
            .split("[[registries]]")
            .find(|entry| entry.contains(&format!("name = \"{name}\"")))
            .map(|entry| format!("[[registries]]{entry}"))
            .unwrap()
    }
}
