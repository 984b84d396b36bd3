//! The issued-token cache: clients ask for the same token several times per operation
//! (skopeo three times per inspect), so a registry token is reused while more than half its
//! life is left.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use svid_broker_identity::SpiffeId;
use svid_broker_token::RegistryToken;

/// Most cached tokens; past it the cache drops expired entries, then everything.
pub const MAX_CACHED_TOKENS: usize = 10_000;

/// Cache key: who, for which registry, with which (canonical) grant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The subject.
    pub subject: SpiffeId,
    /// The registry service.
    pub service: String,
    /// The granted scopes, canonical and space-joined.
    pub granted: String,
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
    /// When it expires.
    pub expires_at: SystemTime,
}

/// Reuses an issued token while more than half its lifetime is left: clients ask for the same
/// token several times per operation (skopeo three times per inspect).
#[derive(Debug)]
pub struct TokenCache {
    enabled: bool,
    entries: Mutex<HashMap<CacheKey, CachedToken>>,
}

impl TokenCache {
    /// A cache; disabled caches never hit.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// A cached token usable at `now`: issued no later than `now` (a clock moved back must not
    /// reuse a token from the "future") and with more than half its lifetime left.
    pub fn get(&self, key: &CacheKey, now: SystemTime) -> Option<CachedToken> {
        if !self.enabled {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let t = entries.get(key)?;
        let life = t.expires_at.duration_since(t.issued_at).ok()?;
        let left = t.expires_at.duration_since(now).ok()?;
        (now >= t.issued_at && left > life / 2).then(|| t.clone())
    }

    /// Stores a freshly minted token.
    pub fn put(&self, key: CacheKey, token: CachedToken, now: SystemTime) {
        if !self.enabled {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_CACHED_TOKENS {
            entries.retain(|_, t| t.expires_at > now);
            if entries.len() >= MAX_CACHED_TOKENS {
                entries.clear();
            }
        }
        entries.insert(key, token);
    }

    /// Drops every entry (after a key rotation or a policy reload, so new grants take effect
    /// at once).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests;
