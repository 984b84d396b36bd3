use std::time::Duration;

use super::*;

use svid_broker_policy::scope;

use crate::testutil::{BUILDER, id, t0};

fn cached(issued: SystemTime, ttl: u64) -> CachedToken {
    let minter = crate::testutil::minter(issued);
    let access: Vec<svid_broker_token::Access> = Vec::new();
    let who = id(BUILDER);
    let req = svid_broker_token::MintRequest::new(
        "i",
        "a",
        &who,
        &access,
        Profile::Distribution2,
        issued,
    )
    .with_ttl(Duration::from_secs(ttl));
    let m = minter.mint(&req).unwrap();
    CachedToken {
        token: m.token,
        jti: m.jti,
        issued_at: m.issued_at,
        expires_at: m.expires_at,
    }
}

fn key() -> CacheKey {
    CacheKey {
        subject: id(BUILDER),
        service: "s".into(),
        granted: scope::join_scopes(&[]),
        issuer: "i".into(),
        profile: Profile::Distribution2,
        ttl: Duration::from_secs(3600),
    }
}

#[test]
fn cache_serves_tokens_with_more_than_half_their_life_left() {
    let c = TokenCache::new(true);
    let now = t0();
    let t = cached(now, 120);
    let issued = t.issued_at;
    c.put(key(), t, now);
    assert!(c.get(&key(), issued + Duration::from_secs(59)).is_some());
    assert!(c.get(&key(), issued + Duration::from_secs(60)).is_none());
    // Never a token from the "future" of a clock that went back.
    assert!(c.get(&key(), issued - Duration::from_secs(1)).is_none());
    let other = CacheKey {
        granted: "repository:a/b:pull".into(),
        ..key()
    };
    assert!(c.get(&other, issued).is_none());
    c.clear();
    assert!(c.get(&key(), issued).is_none());
}

#[test]
fn disabled_cache_never_hits() {
    let c = TokenCache::new(false);
    let now = t0();
    let t = cached(now, 120);
    let issued = t.issued_at;
    c.put(key(), t, now);
    assert!(c.get(&key(), issued).is_none());
}

#[test]
fn the_cache_is_bounded_in_memory_and_keeps_its_account_of_it() {
    let c = TokenCache::new(true);
    let now = t0();
    let token = cached(now, 3600);
    let longest = CacheKey {
        granted: "repository:r99999:pull".into(),
        ..key()
    };
    let weight = token.weight(&longest);
    assert!(
        weight > 1000,
        "a token with its x5c chain weighs over 1 KB: {weight}"
    );
    // Every key below weighs at most `weight`, so `fit` of them fit.
    let fit = MAX_CACHED_TOKEN_BYTES / weight;
    for i in 0..fit {
        let k = CacheKey {
            granted: format!("repository:r{i}:pull"),
            ..key()
        };
        c.put(k, token.clone(), now);
    }
    let account = |c: &TokenCache| {
        let e = c.entries.lock().unwrap();
        let recomputed: usize = e.tokens.iter().map(|(k, t)| t.weight(k)).sum();
        (e.tokens.len(), e.bytes, recomputed)
    };
    let (len, bytes, recomputed) = account(&c);
    assert_eq!(bytes, recomputed);
    assert!(bytes <= MAX_CACHED_TOKEN_BYTES, "{bytes}");
    assert_eq!(len, fit, "nothing dropped while under the cap");
    // Replacing an entry keeps the account; one more entry past the cap starts over.
    c.put(key(), token.clone(), now);
    c.put(key(), token.clone(), now);
    let (_, bytes, recomputed) = account(&c);
    assert_eq!(bytes, recomputed);
    assert!(bytes <= MAX_CACHED_TOKEN_BYTES, "{bytes}");
    for i in 0..fit {
        let k = CacheKey {
            granted: format!("repository:s{i}:pull"),
            ..key()
        };
        c.put(k, token.clone(), now);
        let (_, bytes, _) = account(&c);
        assert!(bytes <= MAX_CACHED_TOKEN_BYTES, "{bytes} after {i}");
    }
    let (_, bytes, recomputed) = account(&c);
    assert_eq!(bytes, recomputed);
    c.clear();
    assert_eq!(account(&c), (0, 0, 0));
}
