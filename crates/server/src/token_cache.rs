//! The issued-token cache: clients ask for the same token several times per operation
//! (skopeo three times per inspect), so a registry token is reused while more than half its
//! life is left.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use svid_broker_identity::SpiffeId;
use svid_broker_token::{Profile, RegistryToken};

/// Most cached tokens; past it the cache drops expired entries, then everything.
pub const MAX_CACHED_TOKENS: usize = 10_000;
/// Most memory the cached tokens may take, estimated per entry (key and token text, each allocation rounded up, and the table slot);
/// past it the cache drops expired entries, then everything. A registry token carries its
/// `x5c` chain (about 1.5 KiB), so this binds before [`MAX_CACHED_TOKENS`] does: about 4,000
/// tokens, which is the few thousand workloads a broker serves asking again within seconds.
pub const MAX_CACHED_TOKEN_BYTES: usize = 8 * 1024 * 1024;

/// Cache key: everything a minted token's content depends on (who, for which registry as the
/// policy configures it, with which canonical grant), so a token is only reused where minting
/// again would give an equivalent one, even across a policy reload racing a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The SPIFFE ID the token is issued to (the mapped subject, never a vouching actor).
    pub subject: SpiffeId,
    /// The registry's `service`, from the policy snapshot the grant was decided on.
    pub service: String,
    /// The granted scopes, canonical and space-joined.
    pub granted: String,
    /// The registry's token `iss`.
    pub issuer: String,
    /// The registry's token profile.
    pub profile: Profile,
    /// The lifetime the token was minted with.
    pub ttl: Duration,
}

/// One cached token.
#[derive(Debug, Clone)]
pub struct CachedToken {
    /// The token as issued (redacted in `Debug`).
    pub token: RegistryToken,
    /// Its `jti`: a reused token keeps the one it was minted with.
    pub jti: String,
    /// When it was issued.
    pub issued_at: SystemTime,
    /// Its `exp`: the cache never serves it past half its life.
    pub expires_at: SystemTime,
}

impl CachedToken {
    /// The memory one entry takes, estimated from above: the heap text of the key and the
    /// token (each allocation rounded up to the allocator's 16 bytes, plus 16 of header) and the
    /// table slot (key and value inline, one control byte, doubled for the table's load factor).
    fn weight(&self, key: &CacheKey) -> usize {
        let allocation = |len: usize| len.div_ceil(16) * 16 + 16;
        let slot = 2 * (size_of::<CacheKey>() + size_of::<CachedToken>() + 1);
        use svid_broker_identity::secret::ExposeSecret as _;
        slot + allocation(key.subject.as_str().len())
            + allocation(key.service.len())
            + allocation(key.granted.len())
            + allocation(key.issuer.len())
            + allocation(self.token.expose_secret().len())
            + allocation(self.jti.len())
    }
}

/// Reuses an issued token while more than half its lifetime is left: clients ask for the same
/// token several times per operation (skopeo three times per inspect). Bounded in entries
/// ([`MAX_CACHED_TOKENS`]) and in estimated memory ([`MAX_CACHED_TOKEN_BYTES`]).
#[derive(Debug)]
pub struct TokenCache {
    enabled: bool,
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    tokens: HashMap<CacheKey, CachedToken>,
    /// The sum of the entries' weights.
    bytes: usize,
}

impl TokenCache {
    /// A cache; disabled caches never hit.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// A cached token usable at `now`: issued no later than `now` (a clock moved back must not
    /// reuse a token from the "future") and with more than half its lifetime left.
    pub fn get(&self, key: &CacheKey, now: SystemTime) -> Option<CachedToken> {
        if !self.enabled {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let t = entries.tokens.get(key)?;
        let life = t.expires_at.duration_since(t.issued_at).ok()?;
        let left = t.expires_at.duration_since(now).ok()?;
        (now >= t.issued_at && left > life / 2).then(|| t.clone())
    }

    /// Stores a freshly minted token.
    pub fn put(&self, key: CacheKey, token: CachedToken, now: SystemTime) {
        if !self.enabled {
            return;
        }
        let weight = token.weight(&key);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = entries.tokens.remove(&key) {
            entries.bytes -= old.weight(&key);
        }
        let full = |e: &Entries| {
            e.tokens.len() >= MAX_CACHED_TOKENS || e.bytes + weight > MAX_CACHED_TOKEN_BYTES
        };
        if full(&entries) {
            entries.tokens.retain(|_, t| t.expires_at > now);
            entries.bytes = entries.tokens.iter().map(|(k, t)| t.weight(k)).sum();
            if full(&entries) {
                entries.tokens.clear();
                entries.bytes = 0;
            }
        }
        entries.bytes += weight;
        entries.tokens.insert(key, token);
    }

    /// Drops every entry (after a key rotation or a policy reload, so new grants take effect
    /// at once).
    pub fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.tokens.clear();
        entries.bytes = 0;
    }
}

#[cfg(test)]
mod tests;
