//! [`BackendService`]: one per registry of a backend kind. It hands out credentials (reusing a
//! live one for the same subject and grant, one creation for any number of equal concurrent
//! requests), revokes each at its time, and sweeps the registry for expired ones an earlier
//! run left behind.
//!
//! The backend's own API client caps the requests in flight to the registry (default 4), so
//! the registry sees a bounded request rate however many nodes ask at once; requests beyond
//! the cap wait up to one request deadline, then fail with
//! [`Failure::BudgetExhausted`].
//!
//! Time always comes from the caller: `issue` takes `now`, and [`BackendService::run`] reads
//! an injected [`Clock`].

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use svid_broker_identity::clock::Clock;
use svid_broker_identity::report::ErrorChain;
use tokio::sync::{Notify, watch};

use crate::backend::Backend;
use crate::credential::{BackendCredential, BackendGrant};
use crate::error::{BackendError, ConfigError, Failure, Step};
use crate::figures::BackendFigures;
use crate::gitlab::{GitlabBackend, GitlabConfig};
use crate::harbor::{HarborBackend, HarborConfig};
use crate::nexus::{NexusBackend, NexusConfig};

mod leases;
mod revocations;

use leases::{Begin, FlightResult, FlightWatch, LeaseKey, LeaseTable};
use revocations::{Revocation, RevocationQueue, backoff};

/// Default shortest remaining life of a credential handed out again: the kubelet credential
/// provider plugin's default safety margin, so a reused credential never reaches a node that
/// already considers it stale.
pub const DEFAULT_REUSE_MARGIN: Duration = Duration::from_secs(60);
/// Default cap on leases held for reuse.
pub const DEFAULT_MAX_LEASES: usize = 10_000;
/// Default time between two sweeps.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// Default longest sleep of [`BackendService::run`] between two looks at its queue and clock.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default cap on queued revocations (beyond it, the sweeper deletes the robots).
pub const DEFAULT_MAX_QUEUED_REVOCATIONS: usize = 100_000;
/// Default wait before the first retry of a failed revocation (doubled per failure).
pub const DEFAULT_REVOKE_RETRY_BASE: Duration = Duration::from_secs(1);
/// Default longest wait between two retries of a failed revocation.
pub const DEFAULT_REVOKE_RETRY_MAX: Duration = Duration::from_secs(300);
/// Default attempts at one revocation before it is left to the sweeper.
pub const DEFAULT_MAX_REVOKE_ATTEMPTS: u32 = 10;
/// Most revocations attempted at once (each still takes an in-flight slot of the client).
const REVOCATIONS_PER_ROUND: usize = 32;

/// How a [`BackendService`] reuses, bounds and revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// A live credential is handed out again only while it has at least this long left.
    pub reuse_margin: Duration,
    /// Most leases held for reuse (past it, leases that can no longer be reused go first,
    /// then the one that ends first).
    pub max_leases: usize,
    /// Time between two sweeps of the registry.
    pub sweep_interval: Duration,
    /// Longest sleep of [`BackendService::run`] between two looks at its clock.
    pub poll_interval: Duration,
    /// Most revocations queued; a credential made past it is left to the sweeper.
    pub max_queued_revocations: usize,
    /// Wait before the first retry of a failed revocation (doubled per failure).
    pub revoke_retry_base: Duration,
    /// Longest wait between two retries.
    pub revoke_retry_max: Duration,
    /// Attempts at one revocation before it is left to the sweeper.
    pub max_revoke_attempts: u32,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            reuse_margin: DEFAULT_REUSE_MARGIN,
            max_leases: DEFAULT_MAX_LEASES,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_queued_revocations: DEFAULT_MAX_QUEUED_REVOCATIONS,
            revoke_retry_base: DEFAULT_REVOKE_RETRY_BASE,
            revoke_retry_max: DEFAULT_REVOKE_RETRY_MAX,
            max_revoke_attempts: DEFAULT_MAX_REVOKE_ATTEMPTS,
        }
    }
}

/// Credentials of one registry: issue (with reuse and single-flight), revoke on time, sweep.
/// Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct BackendService {
    inner: Arc<Inner>,
}

/// Most namespaces a service remembers having made credentials in (for sweeps).
pub const MAX_REMEMBERED_NAMESPACES: usize = 1024;

struct Inner {
    backend: Arc<dyn Backend>,
    config: ServiceConfig,
    leases: Mutex<LeaseTable>,
    revocations: Mutex<RevocationQueue>,
    // Wakes `run` when a revocation earlier than all queued ones arrives, or a sweep is asked.
    wake: Notify,
    sweep_projects: Mutex<Arc<[String]>>,
    /// Also sweep every namespace the broker's credential can see (the policy reaches
    /// namespaces it does not name).
    sweep_visible: AtomicBool,
    /// Namespaces this service made credentials in (bounded): swept whatever the policy says
    /// now, so a rule removed or reached only through a template leaves nothing behind while
    /// this replica runs.
    made_in: Mutex<BTreeSet<String>>,
    sweep_requested: AtomicBool,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    created: AtomicU64,
    reused: AtomicU64,
    revoked: AtomicU64,
    expired: AtomicU64,
    revoke_failures: AtomicU64,
    swept: AtomicU64,
    not_queued: AtomicU64,
}

impl BackendService {
    /// A service over `backend`, with no lease and nothing queued; it calls the registry only when
    /// asked to (a `max_leases` of 0 counts as 1).
    pub fn new(backend: Arc<dyn Backend>, config: ServiceConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                leases: Mutex::new(LeaseTable::new(config.max_leases.max(1))),
                revocations: Mutex::new(RevocationQueue::new(config.max_queued_revocations)),
                backend,
                config,
                wake: Notify::new(),
                sweep_projects: Mutex::new(Arc::from(Vec::new())),
                sweep_visible: AtomicBool::new(false),
                made_in: Mutex::new(BTreeSet::new()),
                sweep_requested: AtomicBool::new(false),
                counters: Counters::default(),
            }),
        }
    }

    /// A service over a new [`HarborBackend`].
    ///
    /// # Errors
    /// As [`HarborBackend::new`].
    pub fn harbor(harbor: HarborConfig, config: ServiceConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(Arc::new(HarborBackend::new(harbor)?), config))
    }

    /// A service over a new [`GitlabBackend`].
    ///
    /// # Errors
    /// As [`GitlabBackend::new`].
    pub fn gitlab(gitlab: GitlabConfig, config: ServiceConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(Arc::new(GitlabBackend::new(gitlab)?), config))
    }

    /// A service over a new [`NexusBackend`].
    ///
    /// # Errors
    /// As [`NexusBackend::new`].
    pub fn nexus(nexus: NexusConfig, config: ServiceConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(Arc::new(NexusBackend::new(nexus)?), config))
    }

    /// The registry's name in the policy.
    pub fn registry(&self) -> &str {
        self.inner.backend.registry()
    }

    /// The backend this service drives, shared: calls made on it directly bypass the lease table.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// A credential for `grant` at `now`.
    ///
    /// - A live credential made for the same subject and an equal grant (Harbor: same project
    ///   and action set) is handed out again (`reused: true`, same user name, password and
    ///   expiry) while it has at least `reuse_margin` left and does not outlive the grant.
    /// - Concurrent requests that would be answered by one credential share one creation; the
    ///   creation goes on even if every caller gives up waiting.
    /// - Errors are not kept: the next request tries again.
    /// - Every credential made is queued for deletion at its `expires_at`.
    ///
    /// # Errors
    /// The backend's error, at [`Step::MapGrant`] when the grant cannot be served.
    pub async fn issue(
        &self,
        grant: BackendGrant,
        now: SystemTime,
    ) -> Result<BackendCredential, BackendError> {
        let inner = &self.inner;
        let reuse_key = inner.backend.reuse_key(&grant)?;
        if grant.revoke_at <= now {
            return Err(inner.error(Step::MapGrant, Failure::GrantExpired));
        }
        let key = LeaseKey {
            subject: grant.subject.clone(),
            grant: reuse_key,
        };
        let begin =
            inner
                .lock_leases()
                .begin(&key, grant.revoke_at, now, inner.config.reuse_margin);
        match begin {
            Begin::Reuse(credential) => {
                inner.counters.reused.fetch_add(1, Ordering::Relaxed);
                Ok(credential)
            }
            Begin::Join(watch) => {
                let mut credential = inner.wait(watch).await?;
                credential.reused = true;
                inner.counters.reused.fetch_add(1, Ordering::Relaxed);
                Ok(credential)
            }
            Begin::Create { flight, publish } => {
                let watch = publish.subscribe();
                let creator = Arc::clone(inner);
                // A task of its own, so the creation (and settling its slot) finishes even if
                // the caller that started it is cancelled.
                tokio::spawn(async move {
                    let result = creator.backend.issue(&grant, now).await;
                    creator.lock_leases().settle(&key, flight, &result);
                    if let Ok(credential) = &result {
                        creator.created(credential, Some(key));
                    }
                    publish.send_replace(Some(result));
                });
                inner.wait(watch).await
            }
            Begin::Alone => {
                let credential = inner.backend.issue(&grant, now).await?;
                inner.created(&credential, None);
                Ok(credential)
            }
        }
    }

    /// Sets the namespaces (Harbor projects) the sweeper looks in and asks for a sweep soon;
    /// the server derives them from the policy. Sweeps also cover the namespaces this service
    /// made credentials in, and with [`Self::set_sweep_visible`] every namespace the broker's
    /// credential can see; with none of the three, nothing is swept.
    pub fn set_sweep_projects(&self, projects: Vec<String>) {
        let mut projects = projects;
        projects.sort();
        projects.dedup();
        *self
            .inner
            .sweep_projects
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Arc::from(projects);
        self.inner.sweep_requested.store(true, Ordering::Relaxed);
        self.inner.wake.notify_one();
    }

    /// Withdraws a credential this service just made that its caller never received (the
    /// broker could not record the issuance): it is not handed out again and is revoked now
    /// rather than at its time.
    pub fn withdraw(&self, credential: &BackendCredential, now: SystemTime) {
        let inner = &self.inner;
        inner
            .lock_leases()
            .forget_credential(&credential.credential_id);
        let mut revocations = inner.lock_revocations();
        if !revocations.advance(&credential.credential_id, now) {
            // Not queued (the queue was full when it was made): queued now, or left to the
            // sweeper as before if the queue is still full.
            let revocation = Revocation {
                handle: credential.handle.clone(),
                credential_id: credential.credential_id.clone(),
                lease: None,
                attempts: 0,
            };
            if revocations.push(now, revocation).is_err() {
                inner.counters.not_queued.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(revocations);
        inner.wake.notify_one();
    }

    /// Whether sweeps also cover every namespace the broker's credential can see (for a
    /// policy that reaches namespaces through templates or `*`, which it cannot list).
    pub fn set_sweep_visible(&self, visible: bool) {
        self.inner.sweep_visible.store(visible, Ordering::Relaxed);
        self.inner.sweep_requested.store(true, Ordering::Relaxed);
        self.inner.wake.notify_one();
    }

    /// Deletes credentials at their time and sweeps every `sweep_interval` (and once at the
    /// start, for what an earlier run left behind), reading time from `clock`, until
    /// `shutdown` turns true (or its sender is dropped). Failed deletions are retried with
    /// backoff, then left to the sweeper. Credentials still live at shutdown are not deleted:
    /// their robots carry their time, and the next run (or another replica) sweeps them.
    pub async fn run(&self, clock: Arc<dyn Clock>, mut shutdown: watch::Receiver<bool>) {
        let inner = &self.inner;
        let mut next_sweep = clock.now();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let now = clock.now();
            inner.revoke_due(now).await;
            let requested = inner.sweep_requested.swap(false, Ordering::Relaxed);
            if requested || now >= next_sweep {
                inner.sweep(now).await;
                next_sweep = clock
                    .now()
                    .checked_add(inner.config.sweep_interval)
                    .unwrap_or(now);
            }
            let now = clock.now();
            let until_due = inner
                .lock_revocations()
                .next_due()
                .map_or(inner.config.poll_interval, |due| {
                    due.duration_since(now).unwrap_or(Duration::ZERO)
                });
            let until_sweep = next_sweep.duration_since(now).unwrap_or(Duration::ZERO);
            // At least a millisecond, so zero settings cannot make this loop spin.
            let wait = inner
                .config
                .poll_interval
                .min(until_due)
                .min(until_sweep)
                .max(Duration::from_millis(1));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = inner.wake.notified() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// The counters, for `/metrics`.
    pub fn figures(&self) -> BackendFigures {
        let inner = &self.inner;
        let counters = &inner.counters;
        BackendFigures {
            registry: inner.backend.registry().to_owned(),
            kind: inner.backend.kind().as_str(),
            api_requests: inner.backend.meter().snapshot(),
            credentials_created: counters.created.load(Ordering::Relaxed),
            credentials_reused: counters.reused.load(Ordering::Relaxed),
            credentials_revoked: counters.revoked.load(Ordering::Relaxed),
            credentials_expired: counters.expired.load(Ordering::Relaxed),
            revoke_failures: counters.revoke_failures.load(Ordering::Relaxed),
            credentials_swept: counters.swept.load(Ordering::Relaxed),
            live_leases: inner.lock_leases().live(),
            queued_revocations: inner.lock_revocations().len(),
            revocations_not_queued: counters.not_queued.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for BackendService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendService")
            .field("backend", &self.inner.backend)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn lock_leases(&self) -> MutexGuard<'_, LeaseTable> {
        // The table is consistent after every statement; a panic elsewhere leaves it usable.
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_revocations(&self) -> MutexGuard<'_, RevocationQueue> {
        self.revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn error(&self, step: Step, failure: Failure) -> BackendError {
        BackendError::new(self.backend.registry(), self.backend.kind(), step, failure)
    }

    async fn wait(&self, mut watch: FlightWatch) -> FlightResult {
        let outcome = watch
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|result| result.clone());
        outcome.unwrap_or_else(|| Err(self.error(Step::Issue, Failure::Interrupted)))
    }

    /// Counts a credential made, remembers its namespace for sweeps, and queues its
    /// revocation.
    fn created(&self, credential: &BackendCredential, lease: Option<LeaseKey>) {
        self.counters.created.fetch_add(1, Ordering::Relaxed);
        {
            let mut made_in = self.made_in.lock().unwrap_or_else(PoisonError::into_inner);
            if made_in.len() < MAX_REMEMBERED_NAMESPACES && !credential.handle.namespace.is_empty()
            {
                made_in.insert(credential.handle.namespace.clone());
            }
        }
        let revocation = Revocation {
            handle: credential.handle.clone(),
            credential_id: credential.credential_id.clone(),
            lease,
            attempts: 0,
        };
        let pushed = self
            .lock_revocations()
            .push(credential.expires_at, revocation);
        match pushed {
            Ok(true) => self.wake.notify_one(),
            Ok(false) => {}
            Err(()) => {
                self.counters.not_queued.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    registry = %self.backend.registry(),
                    credential = %credential.credential_id,
                    "revocation queue full; the sweeper will delete this credential"
                );
            }
        }
    }

    /// Deletes every credential due at `now`, in rounds of [`REVOCATIONS_PER_ROUND`].
    async fn revoke_due(&self, now: SystemTime) {
        loop {
            let batch = self.lock_revocations().take_due(now, REVOCATIONS_PER_ROUND);
            let full = batch.len() == REVOCATIONS_PER_ROUND;
            if batch.is_empty() {
                return;
            }
            for revocation in &batch {
                // Past its time, the lease is not handed out again, whatever the delete does.
                if let Some(key) = &revocation.lease {
                    self.lock_leases().forget(key, &revocation.credential_id);
                }
            }
            if !self.backend.revocable() {
                // Nothing to call: the registry ends the credential at its own expiry.
                let count = u64::try_from(batch.len()).unwrap_or(u64::MAX);
                self.counters.expired.fetch_add(count, Ordering::Relaxed);
                if !full {
                    return;
                }
                continue;
            }
            let results = futures_util::future::join_all(
                batch
                    .iter()
                    .map(|revocation| self.backend.revoke(&revocation.handle)),
            )
            .await;
            for (mut revocation, result) in batch.into_iter().zip(results) {
                match result {
                    Ok(()) => {
                        self.counters.revoked.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            registry = %self.backend.registry(),
                            credential = %revocation.credential_id,
                            "credential revoked"
                        );
                    }
                    Err(error) => {
                        self.counters
                            .revoke_failures
                            .fetch_add(1, Ordering::Relaxed);
                        // The broker's own in-flight cap being full says nothing about the
                        // registry: it is retried without spending one of the attempts that
                        // hand a credential over to the sweeper.
                        if !matches!(error.failure, Failure::BudgetExhausted { .. }) {
                            revocation.attempts += 1;
                        }
                        if revocation.attempts >= self.config.max_revoke_attempts {
                            tracing::warn!(
                                error = %ErrorChain::new(&error),
                                attempts = revocation.attempts,
                                "revocation failed; leaving the credential to the sweeper"
                            );
                            continue;
                        }
                        let wait = backoff(
                            revocation.attempts,
                            self.config.revoke_retry_base,
                            self.config.revoke_retry_max,
                        );
                        tracing::warn!(
                            error = %ErrorChain::new(&error),
                            attempts = revocation.attempts,
                            retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                            "revocation failed; will retry"
                        );
                        let at = now.checked_add(wait).unwrap_or(now);
                        self.lock_revocations().retry(at, revocation);
                    }
                }
            }
            if !full {
                return;
            }
        }
    }

    async fn sweep(&self, now: SystemTime) {
        let mut projects: BTreeSet<String> = self
            .sweep_projects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        projects.extend(
            self.made_in
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned(),
        );
        if self.sweep_visible.load(Ordering::Relaxed) {
            match self.backend.visible_namespaces().await {
                Ok(visible) => projects.extend(visible),
                Err(error) => {
                    tracing::warn!(error = %ErrorChain::new(&error), "sweep: cannot list projects");
                }
            }
        }
        if projects.is_empty() {
            return;
        }
        let projects: Vec<String> = projects.into_iter().collect();
        match self.backend.sweep(&projects, now).await {
            Ok(report) => {
                self.counters
                    .swept
                    .fetch_add(report.deleted as u64, Ordering::Relaxed);
                for failure in &report.failures {
                    tracing::warn!(error = %ErrorChain::new(failure), "sweep: step failed");
                }
                for project in &report.truncated {
                    tracing::warn!(
                        registry = %self.backend.registry(),
                        project = %project,
                        "sweep: more robots than one sweep reads; the rest wait for the next"
                    );
                }
                tracing::debug!(
                    registry = %self.backend.registry(),
                    listed = report.namespaces_listed,
                    seen = report.credentials_seen,
                    deleted = report.deleted,
                    not_due = report.not_due,
                    "sweep done"
                );
            }
            Err(error) => tracing::warn!(error = %ErrorChain::new(&error), "sweep failed"),
        }
    }
}

#[cfg(test)]
mod tests;
