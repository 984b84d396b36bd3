use std::time::Duration;

use super::*;

use crate::testutil::{BUILDER, READER, id, t0};

#[test]
fn rate_limiter_allows_the_burst_then_refills_over_time() {
    let l = RateLimiter::new(Some(RateLimit {
        per_second: 2.0,
        burst: 3.0,
    }));
    let now = t0();
    let who = id(BUILDER);
    for _ in 0..3 {
        assert!(l.check(&who, now).is_ok());
    }
    let wait = l.check(&who, now).unwrap_err();
    assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500));
    assert!(l.check(&who, now + Duration::from_millis(500)).is_ok());
    assert!(l.check(&who, now + Duration::from_millis(500)).is_err());
    // A clock going back refills nothing and does not panic.
    assert!(l.check(&who, now - Duration::from_secs(10)).is_err());
    assert!(l.check(&id(READER), now).is_ok());
}

#[test]
fn rate_limiter_without_a_limit_never_refuses() {
    let l = RateLimiter::new(None);
    for _ in 0..1000 {
        assert!(l.check(&id(BUILDER), t0()).is_ok());
    }
}

fn preauth_key(peer: Option<&str>, reason: &str) -> PreauthKey {
    PreauthKey {
        peer: peer.map(|p| p.parse().unwrap()),
        endpoint: Endpoint::RealmGet,
        kind: "access_token",
        code: ErrorCode::Unauthenticated,
        reason: reason.to_owned(),
    }
}

#[test]
fn preauth_denials_are_audited_once_per_key_then_summed_per_interval() {
    let agg = PreauthDenials::new(Duration::from_secs(10));
    let now = t0();
    assert_eq!(
        agg.note(preauth_key(Some("127.0.0.2"), "a"), now),
        (true, vec![])
    );
    for _ in 0..99 {
        assert_eq!(
            agg.note(preauth_key(Some("127.0.0.2"), "a"), now),
            (false, vec![])
        );
    }
    assert!(agg.note(preauth_key(Some("127.0.0.3"), "a"), now).0);
    assert!(agg.note(preauth_key(Some("127.0.0.2"), "b"), now).0);
    assert!(agg.flush_due(now + Duration::from_secs(9)).is_empty());
    let summaries = agg.flush_due(now + Duration::from_secs(10));
    // Keys seen once were audited in full already: no summary for them.
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(summaries[0].count, 100);
    assert_eq!(summaries[0].key, preauth_key(Some("127.0.0.2"), "a"));
    // A new interval starts afresh.
    assert!(
        agg.note(
            preauth_key(Some("127.0.0.2"), "a"),
            now + Duration::from_secs(11)
        )
        .0
    );
}

#[test]
fn preauth_aggregation_is_bounded_under_a_flood_of_addresses() {
    let agg = PreauthDenials::new(Duration::from_secs(10));
    let now = t0();
    let mut full = 0;
    for i in 0..(MAX_PREAUTH_AGGREGATES as u32 + 500) {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
        if agg.note(preauth_key(Some(&ip), "a"), now).0 {
            full += 1;
        }
    }
    assert_eq!(full, MAX_PREAUTH_AGGREGATES);
    let summaries = agg.flush_due(now + Duration::from_secs(10));
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].key.peer, None);
    assert_eq!(summaries[0].count, 500);
}

#[test]
fn rate_limiter_peek_takes_nothing_and_keys_are_bounded() {
    let l: RateLimiter<IpAddr> = RateLimiter::with_max_keys(
        Some(RateLimit {
            per_second: 1.0,
            burst: 1.0,
        }),
        2,
    );
    let now = t0();
    let a: IpAddr = "127.0.0.2".parse().unwrap();
    for _ in 0..5 {
        assert!(l.peek(&a, now).is_ok());
    }
    assert!(l.check(&a, now).is_ok());
    assert!(l.peek(&a, now).is_err());
    // More keys than the table holds: it never grows past its bound.
    for i in 0..10u8 {
        let _ = l.check(&IpAddr::from([10, 0, 0, i]), now);
    }
    assert!(l.buckets.lock().unwrap().keys.len() <= 2);
}

/// A table full of spent keys is never cleared or evicted by new keys (that would hand a
/// limited address a fresh budget): new keys share one overflow bucket, which is limited too.
#[test]
fn a_full_limiter_table_keeps_its_spent_keys_and_limits_new_ones_together() {
    let l: RateLimiter<IpAddr> = RateLimiter::with_max_keys(
        Some(RateLimit {
            per_second: 0.001,
            burst: 2.0,
        }),
        16,
    );
    let now = t0();
    let limited: IpAddr = "127.0.0.2".parse().unwrap();
    assert!(l.check(&limited, now).is_ok());
    assert!(l.check(&limited, now).is_ok());
    assert!(l.peek(&limited, now).is_err());
    let mut refused_newcomers = 0;
    for i in 0..1_000u32 {
        let ip = IpAddr::from((0x7f10_0000u32 + i).to_be_bytes());
        if l.check(&ip, now).is_err() {
            refused_newcomers += 1;
        }
    }
    assert!(l.peek(&limited, now).is_err(), "the spent key was reset");
    assert!(l.buckets.lock().unwrap().keys.len() <= 16);
    assert!(
        refused_newcomers >= 900,
        "new keys past the table share one bucket: {refused_newcomers} refused"
    );
    let stranger: IpAddr = "10.9.9.9".parse().unwrap();
    assert!(
        l.peek(&stranger, now).is_err(),
        "an untracked key is answered by the spent overflow bucket"
    );
}
