//! [`FileBundleSource`]: bundles read from local files and reloaded when they change.
//!
//! # Files
//!
//! - A **bundle file** belongs to one configured trust domain. Its format is detected from the
//!   content: if the first non-blank byte is `{` it is a SPIFFE bundle document (JWK Set),
//!   otherwise PEM `CERTIFICATE` blocks (X.509 authorities only).
//! - A **bundle map** (`{"trust_domains": {...}}`, SPIFFE Trust Domain and Bundle §5) names its
//!   own trust domains and is loaded atomically, as the state of the world: a new map replaces
//!   the whole previous map or nothing. It must not name a trust domain that also has a bundle
//!   file (bundles are never merged).
//!
//! # Reload policy
//!
//! - Construction reads every file synchronously and fails closed: a missing, oversized or
//!   invalid file is an error naming the file and the rule.
//! - [`FileBundleSource::start`] then polls every [`DEFAULT_POLL_INTERVAL`] (configurable). A
//!   file is re-read when its fingerprint changes: modification time and length first, then a
//!   SHA-256 of the content. The content hash is what decides, because mtime granularity can hide
//!   a quick rewrite; mtime and length are trusted only once the file is older than
//!   [`RACY_WINDOW`] (the "racy timestamp" rule git uses). Polling needs no inotify and works
//!   with Kubernetes ConfigMap symlink swaps.
//! - A bad new file keeps that file's last good bundle, is logged once (`warn`), counted
//!   ([`FileBundleSource::error_count`]) and kept ([`FileBundleSource::last_error`]). It is not
//!   re-reported until its content changes again or [`FileBundleSource::reload_now`] is called.
//! - [`FileBundleSource::reload_now`] (for SIGHUP) re-reads every file at once.

#[cfg(test)]
mod tests;
pub mod watched;

use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use svid_broker_identity::bundle::{
    BundleError, BundleProvider, BundleSet, JwtBundle, MAX_BUNDLE_DOCUMENT_BYTES,
    MAX_BUNDLE_MAP_BYTES, SpiffeBundle, X509Bundle,
};
use svid_broker_identity::id::TrustDomain;
use svid_broker_identity::report::ErrorChain;

use crate::RUNTIME_MISSING;
use crate::snapshot::{AbortOnDrop, Snapshot, Updates};

/// How often [`FileBundleSource::start`] polls by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Shortest poll interval accepted, so a typo cannot turn polling into a busy loop.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Largest bundle file (PEM or bundle document) read, in bytes: the identity crate's document cap.
pub const MAX_BUNDLE_FILE_BYTES: usize = MAX_BUNDLE_DOCUMENT_BYTES;
/// Largest bundle map file read, in bytes: the identity crate's bundle map cap.
pub const MAX_BUNDLE_MAP_FILE_BYTES: usize = MAX_BUNDLE_MAP_BYTES;
/// A file modified less than this long before it was last checked is always re-hashed, because
/// a second write within the filesystem's timestamp granularity would not change its mtime.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

// === config ===

/// What a [`FileBundleSource`] reads.
#[derive(Clone, Debug)]
pub struct FileSourceConfig {
    bundles: Vec<(TrustDomain, PathBuf)>,
    bundle_map: Option<PathBuf>,
    poll_interval: Duration,
}

impl Default for FileSourceConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl FileSourceConfig {
    /// An empty configuration polling every [`DEFAULT_POLL_INTERVAL`].
    pub fn new() -> Self {
        Self {
            bundles: Vec::new(),
            bundle_map: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }

    /// Adds the bundle file of `trust_domain` (PEM or SPIFFE bundle document).
    #[must_use]
    pub fn bundle_file(mut self, trust_domain: TrustDomain, path: impl Into<PathBuf>) -> Self {
        self.bundles.push((trust_domain, path.into()));
        self
    }

    /// Sets the bundle map file.
    #[must_use]
    pub fn bundle_map(mut self, path: impl Into<PathBuf>) -> Self {
        self.bundle_map = Some(path.into());
        self
    }

    /// Sets the poll interval (at least [`MIN_POLL_INTERVAL`]).
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
}

/// The format a file was parsed as: a bundle file's is detected from its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileFormat {
    /// PEM `CERTIFICATE` blocks.
    Pem,
    /// A SPIFFE bundle document (JWK Set): a bundle file whose first non-blank byte is `{`.
    BundleDocument,
    /// A bundle map: the configured bundle map file, never detected from content.
    BundleMap,
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pem => "pem bundle",
            Self::BundleDocument => "spiffe bundle document",
            Self::BundleMap => "bundle map",
        })
    }
}

/// Why a configuration or a file was rejected. Every variant that concerns a file names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileSourceError {
    /// No bundle file and no bundle map configured.
    #[error("no bundle files configured")]
    NothingConfigured,
    /// Two bundle files were configured for one trust domain.
    #[error("trust domain {trust_domain} has two bundle files: {} and {}", .first.display(), .second.display())]
    DuplicateTrustDomain {
        /// The trust domain given two bundle files.
        trust_domain: TrustDomain,
        /// The path configured first for it, as given.
        first: PathBuf,
        /// The path configured next for it, as given.
        second: PathBuf,
    },
    /// The poll interval is below [`MIN_POLL_INTERVAL`].
    #[error("poll interval {interval:?} is shorter than the minimum {min:?}")]
    PollInterval {
        /// The interval passed to [`FileSourceConfig::poll_interval`].
        interval: Duration,
        /// [`MIN_POLL_INTERVAL`].
        min: Duration,
    },
    /// The file cannot be opened or read.
    #[error("cannot read bundle file {}: {kind}", .path.display())]
    Read {
        /// The file's path as the caller gave it.
        path: PathBuf,
        /// The I/O error kind (not found, permission denied, ...).
        kind: io::ErrorKind,
    },
    /// The path is not a regular file (a FIFO, a device, a directory).
    #[error("bundle file {} is a {kind}: a watched file must be a regular file", .path.display())]
    NotRegular {
        /// The file's path as the caller gave it.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The file is larger than its cap.
    #[error("bundle file {} is larger than {limit} bytes", .path.display())]
    TooLarge {
        /// The file's path as the caller gave it.
        path: PathBuf,
        /// The cap ([`MAX_BUNDLE_FILE_BYTES`] or [`MAX_BUNDLE_MAP_FILE_BYTES`]).
        limit: usize,
    },
    /// The content is not a valid bundle of the detected format.
    #[error("bundle file {} is not a valid {format}", .path.display())]
    Parse {
        /// The file's path as the caller gave it.
        path: PathBuf,
        /// The format it was parsed as (detected from the content for a bundle file).
        format: FileFormat,
        /// What the parser rejected.
        #[source]
        source: BundleError,
    },
    /// The bundle map names a trust domain that has its own bundle file.
    #[error("bundle map {} has trust domain {trust_domain}, which already has bundle file {}", .path.display(), .other.display())]
    MapConflict {
        /// The bundle map file's path, as configured.
        path: PathBuf,
        /// A trust domain the map names that has a bundle file (the first such, in config order).
        trust_domain: TrustDomain,
        /// The bundle file of that trust domain.
        other: PathBuf,
    },
    /// [`FileBundleSource::start`] was called outside a tokio runtime.
    #[error("{RUNTIME_MISSING}")]
    NoRuntime,
}

/// What one reload did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ReloadOutcome {
    /// Whether a new bundle set was published.
    pub updated: bool,
    /// The files that failed; their last good bundles stay in place.
    pub errors: Vec<Arc<FileSourceError>>,
}

// === FileBundleSource ===

/// Bundles from local files, reloaded on change. See the [module docs](self).
pub struct FileBundleSource {
    inner: Arc<Inner>,
    _task: Option<AbortOnDrop>,
}

struct Inner {
    slots: Mutex<Vec<Slot>>,
    snapshot: Snapshot,
    poll_interval: Duration,
    status: Mutex<Status>,
}

#[derive(Default)]
struct Status {
    last_error: Option<Arc<FileSourceError>>,
    error_count: u64,
}

struct Slot {
    path: PathBuf,
    kind: SlotKind,
    // Fingerprint of the content last looked at (good or bad), to avoid re-parsing it.
    seen: Option<Fingerprint>,
    // Hash of the content `good` came from.
    good_hash: [u8; 32],
    good: Loaded,
    // Set while the file's newest content or state is unusable.
    failing: Option<FailKey>,
}

enum SlotKind {
    Single(TrustDomain),
    Map,
}

enum Loaded {
    Single(Box<SpiffeBundle>),
    Map(BundleSet),
}

#[derive(Clone, Copy)]
struct Fingerprint {
    mtime: Option<SystemTime>,
    len: u64,
    hash: [u8; 32],
    checked_at: SystemTime,
}

impl FileBundleSource {
    /// Reads every configured file once, without polling (call [`FileBundleSource::reload_now`]
    /// to re-read). Use [`FileBundleSource::start`] for automatic reload.
    ///
    /// # Errors
    /// The first configuration or file error, naming the file and the rule.
    pub fn load(config: FileSourceConfig) -> Result<Self, FileSourceError> {
        if config.bundles.is_empty() && config.bundle_map.is_none() {
            return Err(FileSourceError::NothingConfigured);
        }
        if config.poll_interval < MIN_POLL_INTERVAL {
            return Err(FileSourceError::PollInterval {
                interval: config.poll_interval,
                min: MIN_POLL_INTERVAL,
            });
        }
        for (i, (td, path)) in config.bundles.iter().enumerate() {
            if let Some((_, first)) = config.bundles[..i].iter().find(|(t, _)| t == td) {
                return Err(FileSourceError::DuplicateTrustDomain {
                    trust_domain: td.clone(),
                    first: first.clone(),
                    second: path.clone(),
                });
            }
        }

        let targets = config
            .bundles
            .into_iter()
            .map(|(td, path)| (path, SlotKind::Single(td)))
            .chain(config.bundle_map.map(|path| (path, SlotKind::Map)));
        let mut slots = Vec::new();
        for (path, kind) in targets {
            let (fingerprint, content) = read_fresh(&path, cap_for(&kind))?;
            let good = parse(&path, &kind, &content)?;
            slots.push(Slot {
                path,
                kind,
                seen: Some(fingerprint),
                good_hash: fingerprint.hash,
                good,
                failing: None,
            });
        }
        let set = build_set(&slots)?;
        Ok(Self {
            inner: Arc::new(Inner {
                slots: Mutex::new(slots),
                snapshot: Snapshot::new(set),
                poll_interval: config.poll_interval,
                status: Mutex::new(Status::default()),
            }),
            _task: None,
        })
    }

    /// Like [`FileBundleSource::load`], then polls the files on the current tokio runtime until
    /// the source is dropped.
    ///
    /// # Errors
    /// As [`FileBundleSource::load`], plus [`FileSourceError::NoRuntime`].
    pub fn start(config: FileSourceConfig) -> Result<Self, FileSourceError> {
        let handle =
            tokio::runtime::Handle::try_current().map_err(|_| FileSourceError::NoRuntime)?;
        let mut source = Self::load(config)?;
        let weak = Arc::downgrade(&source.inner);
        let interval = source.inner.poll_interval;
        source._task = Some(AbortOnDrop(handle.spawn(poll_loop(weak, interval))));
        Ok(source)
    }

    /// Re-reads every file now (for SIGHUP), reporting errors even for content already seen.
    /// File I/O runs on tokio's blocking pool.
    pub async fn reload_now(&self) -> ReloadOutcome {
        let inner = Arc::clone(&self.inner);
        // Only a panic inside reload() fails the join; the snapshot was not touched then.
        tokio::task::spawn_blocking(move || inner.reload(true))
            .await
            .unwrap_or_default()
    }

    /// The update signal: advances on every published bundle set.
    pub fn subscribe(&self) -> Updates {
        self.inner.snapshot.subscribe()
    }

    /// The most recent file error; cleared once no configured file is failing any more.
    pub fn last_error(&self) -> Option<Arc<FileSourceError>> {
        self.inner.status().last_error.clone()
    }

    /// How many file errors were recorded since the source was built.
    pub fn error_count(&self) -> u64 {
        self.inner.status().error_count
    }
}

impl BundleProvider for FileBundleSource {
    fn bundles(&self) -> Arc<BundleSet> {
        self.inner.snapshot.load()
    }
}

impl fmt::Debug for FileBundleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<PathBuf> = self.inner.slots().iter().map(|s| s.path.clone()).collect();
        f.debug_struct("FileBundleSource")
            .field("files", &files)
            .field("poll_interval", &self.inner.poll_interval)
            .field("revision", &self.inner.snapshot.revision())
            .field("error_count", &self.error_count())
            .finish_non_exhaustive()
    }
}

async fn poll_loop(weak: Weak<Inner>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        // Outcomes are logged and recorded inside reload(); a panic there only skips one round.
        let _ = tokio::task::spawn_blocking(move || inner.reload(false)).await;
    }
}

impl Inner {
    fn slots(&self) -> MutexGuard<'_, Vec<Slot>> {
        // Slots are only replaced whole after a successful parse; a panic cannot half-update one.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reload(&self, force: bool) -> ReloadOutcome {
        let mut slots = self.slots();
        let mut outcome = ReloadOutcome::default();
        let mut changed = false;
        for i in 0..slots.len() {
            let result = check_slot(&mut slots[i], force).and_then(|check| match check {
                Check::New(loaded) => {
                    check_map_conflicts(&slots, i, &loaded).map(|()| Check::New(loaded))
                }
                other => Ok(other),
            });
            let slot = &mut slots[i];
            match result {
                Ok(Check::Unchanged) => slot.failing = None,
                Ok(Check::StillRejected) => {}
                Ok(Check::New(loaded)) => {
                    slot.good = loaded;
                    slot.good_hash = slot.seen.map_or([0; 32], |f| f.hash);
                    slot.failing = None;
                    changed = true;
                }
                Err(e) => {
                    let key = FailKey::of(&e, slot.seen.as_ref());
                    // The same failure on the same content is reported once, not every poll.
                    if force || slot.failing != Some(key) {
                        outcome.errors.push(Arc::new(e));
                    }
                    if !matches!(key, FailKey::Content(_)) {
                        // The file vanished or blew up: look at it afresh next time, whatever
                        // its mtime says.
                        slot.seen = None;
                    }
                    slot.failing = Some(key);
                }
            }
        }
        if changed {
            match build_set(&slots) {
                Ok(set) => {
                    self.snapshot.publish(Arc::new(set));
                    outcome.updated = true;
                    tracing::info!(files = slots.len(), "bundle files reloaded");
                }
                // check_map_conflicts ran first, so this only guards the invariant.
                Err(e) => outcome.errors.push(Arc::new(e)),
            }
        }
        let any_failing = slots.iter().any(|s| s.failing.is_some());
        drop(slots);

        let mut status = self.status();
        for e in &outcome.errors {
            tracing::warn!(error = %ErrorChain::new(&**e), "bundle file rejected, keeping its last good bundle");
            status.error_count = status.error_count.saturating_add(1);
        }
        if let Some(last) = outcome.errors.last() {
            status.last_error = Some(Arc::clone(last));
        } else if !any_failing {
            status.last_error = None;
        }
        outcome
    }
}

/// Identifies a failure so an unchanged failing file is reported once.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FailKey {
    Read(io::ErrorKind),
    TooLarge,
    Content([u8; 32]),
}

impl FailKey {
    fn of(e: &FileSourceError, seen: Option<&Fingerprint>) -> Self {
        match e {
            FileSourceError::Read { kind, .. } => Self::Read(*kind),
            FileSourceError::TooLarge { .. } => Self::TooLarge,
            // Everything else is about the content (or the setup) at the fingerprint seen.
            FileSourceError::NothingConfigured
            | FileSourceError::DuplicateTrustDomain { .. }
            | FileSourceError::PollInterval { .. }
            | FileSourceError::NotRegular { .. }
            | FileSourceError::Parse { .. }
            | FileSourceError::MapConflict { .. }
            | FileSourceError::NoRuntime => Self::Content(seen.map_or([0; 32], |f| f.hash)),
        }
    }
}

/// What polling one file found.
enum Check {
    /// Same content as the last good load (or no sign of change).
    Unchanged,
    /// Content that was already rejected and has not changed since.
    StillRejected,
    /// New content that parses.
    New(Loaded),
}

fn check_slot(slot: &mut Slot, force: bool) -> Result<Check, FileSourceError> {
    let previous = if force { None } else { slot.seen };
    let Some((fingerprint, content)) =
        read_if_changed(&slot.path, cap_for(&slot.kind), previous.as_ref())?
    else {
        return Ok(if slot.failing.is_some() {
            Check::StillRejected
        } else {
            Check::Unchanged
        });
    };
    let already_seen = slot.seen.is_some_and(|s| s.hash == fingerprint.hash);
    slot.seen = Some(fingerprint);
    if fingerprint.hash == slot.good_hash {
        return Ok(Check::Unchanged);
    }
    if already_seen && !force && matches!(slot.failing, Some(FailKey::Content(_))) {
        return Ok(Check::StillRejected);
    }
    parse(&slot.path, &slot.kind, &content).map(Check::New)
}

/// Stats and reads `path`, returning `None` when mtime and length show no change since
/// `previous` and that check was safely after the last write (see [`RACY_WINDOW`]).
fn read_if_changed(
    path: &Path,
    cap: usize,
    previous: Option<&Fingerprint>,
) -> Result<Option<(Fingerprint, Vec<u8>)>, FileSourceError> {
    let checked_at = SystemTime::now();
    let (file, meta) = open(path)?;
    if let Some(prev) = previous {
        let settled = match (prev.mtime, meta.modified().ok()) {
            (Some(old), Some(new)) => {
                old == new
                    && prev
                        .checked_at
                        .duration_since(old)
                        .is_ok_and(|age| age >= RACY_WINDOW)
            }
            _ => false,
        };
        if settled && prev.len == meta.len() {
            return Ok(None);
        }
    }
    read_open(path, file, &meta, cap, checked_at).map(Some)
}

/// Reads `path` whatever its timestamps say.
fn read_fresh(path: &Path, cap: usize) -> Result<(Fingerprint, Vec<u8>), FileSourceError> {
    let checked_at = SystemTime::now();
    let (file, meta) = open(path)?;
    read_open(path, file, &meta, cap, checked_at)
}

fn read_error(path: &Path, e: &io::Error) -> FileSourceError {
    FileSourceError::Read {
        path: path.to_owned(),
        kind: e.kind(),
    }
}

fn open(path: &Path) -> Result<(File, Metadata), FileSourceError> {
    // Regular files only, opened without blocking: a FIFO or a device would hang the poller.
    watched::open_regular(path).map_err(|e| match e {
        watched::WatchedFileError::NotRegular { path, kind } => {
            FileSourceError::NotRegular { path, kind }
        }
        watched::WatchedFileError::Io { path, source } => FileSourceError::Read {
            path,
            kind: source.kind(),
        },
        watched::WatchedFileError::TooLarge { path, max, .. } => {
            FileSourceError::TooLarge { path, limit: max }
        }
        // `open_regular` does not check ownership (bundles are public); were it to, a refusal
        // reads as a permission problem.
        watched::WatchedFileError::NotOwnerOnly { path, .. } => FileSourceError::Read {
            path,
            kind: io::ErrorKind::PermissionDenied,
        },
    })
}

fn read_open(
    path: &Path,
    file: File,
    meta: &Metadata,
    cap: usize,
    checked_at: SystemTime,
) -> Result<(Fingerprint, Vec<u8>), FileSourceError> {
    let too_large = || FileSourceError::TooLarge {
        path: path.to_owned(),
        limit: cap,
    };
    let len = meta.len();
    if len > cap as u64 {
        return Err(too_large());
    }
    // The file may grow between stat and read; `take` keeps the cap authoritative.
    let mut content = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(cap));
    file.take(cap as u64 + 1)
        .read_to_end(&mut content)
        .map_err(|e| read_error(path, &e))?;
    if content.len() > cap {
        return Err(too_large());
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest::digest(&digest::SHA256, &content).as_ref());
    let fingerprint = Fingerprint {
        mtime: meta.modified().ok(),
        len,
        hash,
        checked_at,
    };
    Ok((fingerprint, content))
}

fn cap_for(kind: &SlotKind) -> usize {
    match kind {
        SlotKind::Single(_) => MAX_BUNDLE_FILE_BYTES,
        SlotKind::Map => MAX_BUNDLE_MAP_FILE_BYTES,
    }
}

/// Whether the content is a JSON bundle document rather than PEM: first non-blank byte is `{`.
fn looks_like_document(content: &[u8]) -> bool {
    let content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
    content
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

fn parse(path: &Path, kind: &SlotKind, content: &[u8]) -> Result<Loaded, FileSourceError> {
    let (format, result) = match kind {
        SlotKind::Map => (
            FileFormat::BundleMap,
            BundleSet::parse_bundle_map(content).map(Loaded::Map),
        ),
        SlotKind::Single(td) if looks_like_document(content) => (
            FileFormat::BundleDocument,
            SpiffeBundle::parse_document(td.clone(), content).map(|b| Loaded::Single(Box::new(b))),
        ),
        SlotKind::Single(td) => (
            FileFormat::Pem,
            X509Bundle::from_pem(td.clone(), content).and_then(|x509| {
                SpiffeBundle::new(x509, JwtBundle::empty(td.clone()))
                    .map(|b| Loaded::Single(Box::new(b)))
            }),
        ),
    };
    result.map_err(|source| FileSourceError::Parse {
        path: path.to_owned(),
        format,
        source,
    })
}

/// A candidate bundle map for slot `index` must not name a trust domain of a bundle file.
fn check_map_conflicts(
    slots: &[Slot],
    index: usize,
    loaded: &Loaded,
) -> Result<(), FileSourceError> {
    let Loaded::Map(map) = loaded else {
        return Ok(());
    };
    for slot in slots {
        if let SlotKind::Single(td) = &slot.kind
            && map.get(td).is_some()
        {
            return Err(FileSourceError::MapConflict {
                path: slots[index].path.clone(),
                trust_domain: td.clone(),
                other: slot.path.clone(),
            });
        }
    }
    Ok(())
}

fn build_set(slots: &[Slot]) -> Result<BundleSet, FileSourceError> {
    let mut set = BundleSet::new();
    for (index, slot) in slots.iter().enumerate() {
        match &slot.good {
            Loaded::Single(bundle) => {
                set.replace(SpiffeBundle::clone(bundle));
            }
            Loaded::Map(map) => {
                check_map_conflicts(slots, index, &slot.good)?;
                for (_, bundle) in map.iter() {
                    set.replace(SpiffeBundle::clone(bundle));
                }
            }
        }
    }
    Ok(set)
}
