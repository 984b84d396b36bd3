//! Remembered verifications of presented credentials: JWT-SVIDs, X.509-SVID chains and broker
//! login credentials.
//!
//! Real clients present the same credential many times: SPIRE hands out one JWT-SVID until half
//! its life is gone, an mTLS connection carries one chain for all its calls, and a registry
//! login credential comes back on every pull. Verifying each presentation again costs a
//! signature check (most of an exchange's CPU); this cache answers a presentation it has seen
//! succeed with the subject that verification yielded.
//!
//! Why a hit decides exactly as a miss would:
//! - The key is a SHA-256 over the **exact bytes** presented, behind a label per credential kind
//!   ([`CredentialDomain`]), so a different token, a chain of different certificates or the same
//!   bytes offered as another kind never share an entry. Nothing is decoded before hashing.
//! - An entry answers only for the **snapshot** of trust material it was verified against
//!   ([`Snapshot`]: the same `Arc<BundleSet>` by pointer for JWT-SVIDs and chains, the same
//!   `Arc<CredentialKeys>` for login credentials). A bundle update is a new `Arc`, so every entry stops
//!   answering at once, and the first insertion under the new snapshot drops them all.
//! - An entry answers only inside a [`Validity`] window that lies inside the verifier's own:
//!   from the latest of `iat`, `nbf` (or every certificate's notBefore) and the Unix epoch, up to
//!   but excluding `exp` (or the earliest notAfter). The verifiers compare whole seconds and
//!   allow a leeway, so they accept a little more than the window; a presentation outside the
//!   window is simply a miss and is verified afresh, which gives the verifier's own answer
//!   (including its exact error).
//! - A cache sits in front of one verifier with fixed options (one per authenticator and
//!   credential kind), so the audience, leeway and limits of every cached decision are the
//!   ones the next presentation would be checked with.
//!
//! Only credentials that **verified** enter, so an attacker fills the cache only with
//! credentials the trust domain really issued, and each insertion followed a full verification
//! the broker had to do anyway. Eviction is second-chance FIFO (an entry hit since it was
//! queued goes round once more), O(1) amortized per insertion and bounded in entries and in
//! (estimated) bytes. The worst an attacker with many valid credentials can do is push every
//! legitimate entry out, so legitimate callers pay one full verification again: the cost of
//! having no cache, never more (a miss costs one SHA-256 and one short lock).
//!
//! Nothing here logs or prints a credential; `Debug` shows counts only, never a digest.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::mem::size_of;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use svid_broker_identity::SpiffeId;
use svid_broker_identity::bundle::BundleSet;
use svid_broker_identity::jwt::{JwtSvidClaims, JwtSvidError, JwtSvidValidator};
use svid_broker_identity::x509::{self, VerifiedX509Svid, X509SvidError};

/// Default cap on entries per cache. A broker serves at most a few thousand distinct workloads,
/// each holding one JWT-SVID per audience at a time; past this the cache turns over rather
/// than grows.
pub(crate) const DEFAULT_MAX_ENTRIES: usize = 16_384;
/// Most entries `limits.verified_cache_entries` may set.
pub(crate) const MAX_MAX_ENTRIES: usize = 1_048_576;
/// Default cap on the memory of one cache, in bytes (entries, their subjects, and the table and
/// queue slots they occupy, counted for the worst moment). About 500 bytes per JWT-SVID entry
/// with a typical SPIFFE ID, so about 8,000 entries; more for shorter subjects.
pub(crate) const DEFAULT_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Fewest bytes `limits.verified_cache_bytes` may set (a few hundred entries).
pub(crate) const MIN_MAX_BYTES: usize = 64 * 1024;
/// Most bytes `limits.verified_cache_bytes` may set.
pub(crate) const MAX_MAX_BYTES: usize = 1024 * 1024 * 1024;

/// How large one cache may grow. Both caps apply; zero entries disables the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheLimits {
    /// Most entries held.
    pub max_entries: usize,
    /// Most estimated bytes held (entries, subjects, table and queue slots).
    pub max_bytes: usize,
}

impl CacheLimits {
    /// Each cache holds at most `max_entries` entries and `max_bytes` estimated bytes.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            max_entries,
            max_bytes,
        }
    }
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// The kind of credential a digest was taken of; part of the hashed input, so the same bytes
/// presented as two kinds have unrelated digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum CredentialDomain {
    /// A compact JWT-SVID, hashed as the exact string presented.
    JwtSvid,
    /// An X.509-SVID chain, leaf first.
    X509Chain,
    /// A broker login credential (`sbl1.`).
    LoginCredential,
}

impl CredentialDomain {
    /// The label hashed before the credential: distinct, fixed-length-terminated by a NUL that
    /// none of them contains.
    fn label(self) -> &'static [u8] {
        match self {
            Self::JwtSvid => b"svid-broker verified-cache v1 jwt-svid\0",
            Self::X509Chain => b"svid-broker verified-cache v1 x509-chain\0",
            Self::LoginCredential => b"svid-broker verified-cache v1 login-credential\0",
        }
    }
}

/// SHA-256 of a presented credential under its [`CredentialDomain`]: the cache key. `Debug`
/// does not print it (a digest of a bearer token identifies the token).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TokenDigest([u8; 32]);

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(<redacted>)")
    }
}

impl TokenDigest {
    /// The digest of a single-string credential (a JWT-SVID or a login credential), over its
    /// exact bytes.
    pub(crate) fn of_token(domain: CredentialDomain, token: &[u8]) -> Self {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(domain.label());
        ctx.update(token);
        Self::finish(ctx)
    }

    /// The digest of a certificate chain: each certificate's length (u64, big-endian) then its
    /// DER, so no two different chains (split differently) hash the same input.
    pub(crate) fn of_chain(chain: &[CertificateDer<'_>]) -> Self {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(CredentialDomain::X509Chain.label());
        for cert in chain {
            ctx.update(&(cert.len() as u64).to_be_bytes());
            ctx.update(cert.as_ref());
        }
        Self::finish(ctx)
    }

    fn finish(ctx: aws_lc_rs::digest::Context) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Self(out)
    }
}

/// The trust material a verification was made against. An entry answers only while the
/// snapshot presented with the lookup is the same one it was stored under.
pub(crate) trait Snapshot: Clone {
    /// Whether `self` and `other` are the same snapshot (not merely equal content).
    fn same_snapshot(&self, other: &Self) -> bool;
}

/// Identity by pointer: a bundle update installs a new `Arc`, even with equal content, and so
/// invalidates everything verified before it.
impl<T: ?Sized> Snapshot for Arc<T> {
    fn same_snapshot(&self, other: &Self) -> bool {
        Arc::ptr_eq(self, other)
    }
}

/// When a cached verification may answer: `from <= now < until`, never before the Unix epoch
/// (every verifier refuses a clock before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validity {
    from: SystemTime,
    until: SystemTime,
}

impl Validity {
    /// The window `[from, until)`, with `from` raised to the Unix epoch. Callers must pass a
    /// window inside the one their verifier accepts.
    pub(crate) fn new(from: SystemTime, until: SystemTime) -> Self {
        Self {
            from: from.max(UNIX_EPOCH),
            until,
        }
    }

    /// A verified JWT-SVID's window: from the later of `iat` and `nbf` to `exp` (exclusive), no
    /// leeway. The validator accepts `now` when whole-second `now` is below `exp + leeway` and
    /// not below `nbf - leeway` nor `iat - leeway`; for whole-second claims every instant of
    /// this window passes those tests.
    pub(crate) fn jwt_svid(claims: &JwtSvidClaims) -> Self {
        let from = [claims.issued_at, claims.not_before]
            .into_iter()
            .flatten()
            .fold(UNIX_EPOCH, SystemTime::max);
        Self::new(from, claims.expires_at)
    }

    /// A verified chain's window: from the latest notBefore of the presented certificates to
    /// the earliest notAfter (exclusive; the verifier accepts that last second too).
    pub(crate) fn x509_chain(verified: &VerifiedX509Svid) -> Self {
        Self::new(verified.chain_not_before(), verified.chain_not_after())
    }

    /// Whether `now` is inside the window.
    pub(crate) fn contains(&self, now: SystemTime) -> bool {
        self.from <= now && now < self.until
    }
}

/// Heap memory a cached value owns, in bytes, counted as the allocator hands it out
/// ([`allocation`] for each block).
pub(crate) trait HeapSize {
    /// Bytes on the heap owned by `self`.
    fn heap_bytes(&self) -> usize;
}

/// What one heap block of `len` bytes costs: glibc's malloc adds an 8-byte header, rounds up
/// to 16 and never hands out less than 32.
pub(crate) fn allocation(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        len.saturating_add(8).next_multiple_of(16).max(32)
    }
}

impl HeapSize for SpiffeId {
    fn heap_bytes(&self) -> usize {
        allocation(self.as_str().len())
    }
}

impl HeapSize for String {
    fn heap_bytes(&self) -> usize {
        allocation(self.capacity())
    }
}

/// Counters of one cache, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CacheStats {
    /// Lookups answered from the cache.
    pub(crate) hits: u64,
    /// Lookups that had to verify.
    pub(crate) misses: u64,
    /// Entries stored.
    pub(crate) insertions: u64,
    /// Entries pushed out by a cap.
    pub(crate) evictions: u64,
    /// Entries held now.
    pub(crate) entries: usize,
    /// Estimated bytes held now.
    pub(crate) bytes: usize,
}

/// A bounded cache of successful verifications, valid per snapshot `S` and per [`Validity`],
/// holding the value `V` the verification yielded (a subject, usually).
pub(crate) struct VerifiedCache<S, V> {
    limits: CacheLimits,
    inner: Mutex<Inner<S, V>>,
}

impl<S: Snapshot, V: Clone + HeapSize> fmt::Debug for VerifiedCache<S, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("limits", &self.limits)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

struct Inner<S, V> {
    /// The snapshot every entry was verified against; `None` before the first insertion.
    snapshot: Option<S>,
    entries: HashMap<TokenDigest, Entry<V>>,
    /// Insertion order for eviction: (digest, sequence). A slot whose entry was since removed
    /// or replaced (sequence differs) is stale and skipped.
    order: VecDeque<(TokenDigest, u64)>,
    bytes: usize,
    next_seq: u64,
    stats: CacheStats,
}

struct Entry<V> {
    value: V,
    validity: Validity,
    seq: u64,
    bytes: usize,
    /// Hit since it was last queued: survives one eviction pass.
    referenced: bool,
}

/// Bytes charged for one entry on top of its value's heap, counted for the worst moment so
/// that `max_bytes` bounds the real footprint: the table slot and its control byte at the
/// lowest load right after hashbrown doubles its table (7/16), and four queue slots (the queue
/// is compacted once it holds more than twice the live entries, and its buffer doubles as it
/// grows). Measured in a release build, one million insertions into a cache of the default
/// caps grew the process's RSS by 5.6 MiB for the 4 MiB cap, with the allocator's retention
/// of the million freed subjects included (docs/performance.md).
fn entry_overhead<V>() -> usize {
    (size_of::<(TokenDigest, Entry<V>)>() + 1) * 16 / 7 + 4 * size_of::<(TokenDigest, u64)>()
}

impl<S: Snapshot, V: Clone + HeapSize> VerifiedCache<S, V> {
    /// An empty cache, bound to no snapshot yet; `max_entries == 0` keeps it empty.
    pub(crate) fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            inner: Mutex::new(Inner {
                snapshot: None,
                entries: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
                next_seq: 0,
                stats: CacheStats::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<S, V>> {
        // The state stays consistent at every await-free step, so a panic elsewhere while
        // holding the lock leaves nothing half-done worth refusing service over.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value a verification of `digest` against this very `snapshot` yielded, if `now` is
    /// inside that verification's window.
    pub(crate) fn get(&self, digest: &TokenDigest, snapshot: &S, now: SystemTime) -> Option<V> {
        let mut inner = self.lock();
        let current = inner
            .snapshot
            .as_ref()
            .is_some_and(|s| s.same_snapshot(snapshot));
        let answer = if current {
            inner.lookup(digest, now)
        } else {
            None
        };
        match answer {
            Some(_) => inner.stats.hits += 1,
            None => inner.stats.misses += 1,
        }
        answer
    }

    /// Remembers a successful verification of `digest` against `snapshot`, answering inside
    /// `validity`. Call it only with what the verifier accepted. A first insertion under a new
    /// snapshot drops every entry of the old one; a window already over at `now`, or an entry
    /// larger than the byte cap, is not stored.
    pub(crate) fn insert(
        &self,
        digest: TokenDigest,
        snapshot: S,
        value: V,
        validity: Validity,
        now: SystemTime,
    ) {
        if self.limits.max_entries == 0 || now >= validity.until {
            return;
        }
        let bytes = entry_overhead::<V>().saturating_add(value.heap_bytes());
        if bytes > self.limits.max_bytes {
            return;
        }
        let mut inner = self.lock();
        let current = inner
            .snapshot
            .as_ref()
            .is_some_and(|s| s.same_snapshot(&snapshot));
        if !current {
            // Entries of another snapshot can never answer again (snapshots only move
            // forward; a request still holding an older one just verifies). Dropping them
            // also releases that snapshot's memory.
            inner.clear();
            inner.snapshot = Some(snapshot);
        }
        if let Some(old) = inner.entries.remove(&digest) {
            inner.bytes -= old.bytes;
        }
        inner.make_room(self.limits, bytes);
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.entries.insert(
            digest,
            Entry {
                value,
                validity,
                seq,
                bytes,
                referenced: false,
            },
        );
        inner.order.push_back((digest, seq));
        inner.bytes += bytes;
        inner.stats.insertions += 1;
        inner.compact_order();
    }

    /// The cached value if any, else `verify()`; a success is remembered with the window it
    /// returns. Errors are returned as they are and never cached.
    ///
    /// # Errors
    /// Whatever `verify` returns.
    pub(crate) fn get_or_verify<E>(
        &self,
        digest: TokenDigest,
        snapshot: &S,
        now: SystemTime,
        verify: impl FnOnce() -> Result<(V, Validity), E>,
    ) -> Result<V, E> {
        if let Some(hit) = self.get(&digest, snapshot, now) {
            return Ok(hit);
        }
        let (value, validity) = verify()?;
        self.insert(digest, snapshot.clone(), value.clone(), validity, now);
        Ok(value)
    }

    /// A copy of the counters, with the entries and estimated bytes held right now.
    pub(crate) fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            entries: inner.entries.len(),
            bytes: inner.bytes,
            ..inner.stats
        }
    }

    /// Queue slots held, live and stale (for the compaction test).
    #[cfg(test)]
    fn queue_len(&self) -> usize {
        self.lock().order.len()
    }
}

impl<S, V: Clone> Inner<S, V> {
    fn lookup(&mut self, digest: &TokenDigest, now: SystemTime) -> Option<V> {
        let entry = self.entries.get_mut(digest)?;
        if entry.validity.contains(now) {
            entry.referenced = true;
            return Some(entry.value.clone());
        }
        if now >= entry.validity.until {
            // Over for good (a clock set back verifies afresh and may store it again).
            if let Some(dead) = self.entries.remove(digest) {
                self.bytes -= dead.bytes;
            }
        }
        None
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.bytes = 0;
    }

    /// Evicts until one more entry of `bytes` fits both caps.
    fn make_room(&mut self, limits: CacheLimits, bytes: usize) {
        while !self.entries.is_empty()
            && (self.entries.len() >= limits.max_entries
                || self.bytes.saturating_add(bytes) > limits.max_bytes)
        {
            let Some((digest, seq)) = self.order.pop_front() else {
                // Every live entry has a queue slot; an empty queue with entries left would be
                // a bookkeeping bug, and starting over is the safe answer to it.
                self.clear();
                return;
            };
            let Some(entry) = self.entries.get_mut(&digest) else {
                continue;
            };
            if entry.seq != seq {
                continue;
            }
            if entry.referenced {
                entry.referenced = false;
                self.order.push_back((digest, seq));
                continue;
            }
            if let Some(evicted) = self.entries.remove(&digest) {
                self.bytes -= evicted.bytes;
                self.stats.evictions += 1;
            }
        }
    }

    /// Drops stale queue slots once they outnumber live entries (amortized O(1): each pass
    /// follows at least as many insertions or removals as it visits slots).
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(digest, seq)| entries.get(digest).is_some_and(|e| e.seq == *seq));
        }
    }
}

/// A cache of verified SVIDs answering with their subject, for JWT-SVIDs or X.509-SVID
/// chains (keep one per kind: a hit is only as good as the verifier that stored it).
pub(crate) type SubjectCache = VerifiedCache<Arc<BundleSet>, SpiffeId>;

impl SubjectCache {
    /// The subject of `token` validated by `validator` against `bundles` at `now`: the same
    /// answer as [`JwtSvidValidator::validate`] (the same subject, or the same error), from the
    /// cache when this token already validated against this very snapshot and `now` is inside
    /// its window.
    ///
    /// One cache must only ever be used with one validator: every cached decision was made
    /// with that validator's audiences, leeway and limits.
    ///
    /// # Errors
    /// The validator's [`JwtSvidError`].
    pub(crate) fn validate_jwt_svid(
        &self,
        validator: &JwtSvidValidator,
        token: &str,
        bundles: &Arc<BundleSet>,
        now: SystemTime,
    ) -> Result<SpiffeId, JwtSvidError> {
        // An oversized token is refused before any work: do not hash it either.
        if token.len() > validator.max_token_len() {
            return validator
                .validate(token, bundles, now)
                .map(|claims| claims.spiffe_id);
        }
        let digest = TokenDigest::of_token(CredentialDomain::JwtSvid, token.as_bytes());
        self.get_or_verify(digest, bundles, now, || {
            let claims = validator.validate(token, bundles, now)?;
            let validity = Validity::jwt_svid(&claims);
            Ok((claims.spiffe_id, validity))
        })
    }

    /// The SPIFFE ID of `chain` (leaf first) verified by [`x509::verify`] (default options)
    /// against `bundles` at `now`: the same answer as a verification, from the cache when this
    /// exact chain already verified against this very snapshot and `now` is inside every
    /// certificate's validity.
    ///
    /// # Errors
    /// The verifier's [`X509SvidError`].
    pub(crate) fn verify_x509(
        &self,
        chain: &[CertificateDer<'_>],
        bundles: &Arc<BundleSet>,
        now: SystemTime,
    ) -> Result<SpiffeId, X509SvidError> {
        let digest = TokenDigest::of_chain(chain);
        self.get_or_verify(digest, bundles, now, || {
            let verified = x509::verify(chain, bundles, now)?;
            let validity = Validity::x509_chain(&verified);
            Ok((verified.into_spiffe_id(), validity))
        })
    }
}

#[cfg(test)]
mod tests;
