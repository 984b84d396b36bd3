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
        svid_broker_token::Profile::Distribution2,
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
