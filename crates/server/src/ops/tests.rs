use std::time::Duration;

use svid_broker_policy::scope;

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

fn cached(issued: SystemTime, ttl: u64) -> CachedToken {
    let minter = crate::testutil::minter(issued);
    let access: Vec<svid_broker_token::Access> = Vec::new();
    let who = id(BUILDER);
    let req = svid_broker_token::MintRequest::new("i", "a", &who, &access, issued)
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

#[test]
fn metrics_render_as_prometheus_text() {
    let m = Metrics::default();
    m.issued(Endpoint::RealmGet, false);
    m.denied(Endpoint::Grpc, ErrorCode::PermissionDenied);
    m.cache(true);
    m.cache(false);
    m.cache(false);
    m.observe(Route::TokenGet, Duration::from_millis(3));
    m.policy_reload(false);
    let text = m.render();
    for line in [
        "svid_broker_issued_total{endpoint=\"realm_get\",kind=\"access_token\"} 1",
        "svid_broker_issued_total{endpoint=\"grpc\",kind=\"login_credential\"} 0",
        "svid_broker_denied_total{endpoint=\"grpc\",code=\"permission_denied\"} 1",
        "svid_broker_token_cache_hits_total 1",
        "svid_broker_token_cache_misses_total 2",
        "svid_broker_policy_reloads_total{result=\"failed\"} 1",
        "svid_broker_request_duration_seconds_bucket{route=\"token_get\",le=\"0.0025\"} 0",
        "svid_broker_request_duration_seconds_bucket{route=\"token_get\",le=\"0.005\"} 1",
        "svid_broker_request_duration_seconds_bucket{route=\"token_get\",le=\"+Inf\"} 1",
        "svid_broker_request_duration_seconds_count{route=\"token_get\"} 1",
        "# TYPE svid_broker_request_duration_seconds histogram",
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
}

#[test]
fn audit_memory_sink_keeps_json_lines() {
    let (sink, lines) = AuditSink::memory();
    sink.emit(&AuditEvent {
        time: rfc3339(UNIX_EPOCH),
        event: "svid-broker.exchange",
        decision: "allow",
        code: None,
        reason: "granted".into(),
        subject: Some(BUILDER),
        actor: "jwt-svid".into(),
        service: "s",
        requested: String::new(),
        granted: String::new(),
        kind: "access_token",
        ceiling: None,
        jti: Some("j"),
        expires_at: None,
        cached: false,
        peer: None,
        endpoint: "grpc",
        subject_token: None,
        count: None,
        interval_seconds: None,
    })
    .unwrap();
    let lines = lines.lock().unwrap();
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["time"], "1970-01-01T00:00:00Z");
    assert_eq!(v["subject"], BUILDER);
    assert!(v.get("code").is_none());
}

#[test]
fn audit_file_sink_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let sink = AuditSink::file(&path).unwrap();
    let ev = AuditEvent {
        time: rfc3339(UNIX_EPOCH),
        event: "svid-broker.exchange",
        decision: "deny",
        code: Some("unauthenticated"),
        reason: "r".into(),
        subject: None,
        actor: "unauthenticated".into(),
        service: "s",
        requested: String::new(),
        granted: String::new(),
        kind: "access_token",
        ceiling: None,
        jti: None,
        expires_at: None,
        cached: false,
        peer: None,
        endpoint: "realm_get",
        subject_token: None,
        count: None,
        interval_seconds: None,
    };
    sink.emit(&ev).unwrap();
    sink.emit(&ev).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
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

struct FailingWriter;

impl std::io::Write for FailingWriter {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::from_raw_os_error(28))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn event() -> AuditEvent<'static> {
    AuditEvent {
        time: rfc3339(UNIX_EPOCH),
        event: "svid-broker.exchange",
        decision: "allow",
        code: None,
        reason: "granted".into(),
        subject: Some(BUILDER),
        actor: "jwt-svid".into(),
        service: "s",
        requested: String::new(),
        granted: String::new(),
        kind: "access_token",
        ceiling: None,
        jti: None,
        expires_at: None,
        cached: false,
        peer: None,
        endpoint: "grpc",
        subject_token: None,
        count: None,
        interval_seconds: None,
    }
}

#[test]
fn audit_log_failures_are_counted_and_follow_the_policy() {
    let metrics = Metrics::default();
    let deny = AuditLog::new(AuditSink::writer(FailingWriter), AuditOnError::Deny);
    assert_eq!(deny.record(&event(), &metrics), Err(AuditUnavailable));
    let first_warning = deny.last_warning.load(Ordering::Relaxed);
    assert!(first_warning > 0);
    // Further failures within the interval count but do not log again.
    for _ in 0..100 {
        assert!(deny.record(&event(), &metrics).is_err());
    }
    assert_eq!(deny.last_warning.load(Ordering::Relaxed), first_warning);
    let go_on = AuditLog::new(AuditSink::writer(FailingWriter), AuditOnError::Continue);
    assert_eq!(go_on.record(&event(), &metrics), Ok(()));
    assert_eq!(metrics.audit_write_errors(), 102);
    let ok = AuditLog::new(AuditSink::Discard, AuditOnError::Deny);
    assert_eq!(ok.record(&event(), &metrics), Ok(()));
    assert_eq!(metrics.audit_write_errors(), 102);
}

#[test]
fn refusals_have_their_own_counter() {
    let m = Metrics::default();
    m.refused(Endpoint::RealmPost, Refusal::NothingGranted);
    let text = m.render();
    assert!(text.contains(
        "svid_broker_refused_total{endpoint=\"realm_post\",reason=\"nothing_granted\"} 1"
    ));
    assert!(text.contains("svid_broker_audit_write_errors_total 0"));
}

/// A sink that takes `room` bytes, then fails with ENOSPC until `room` is raised again.
struct ShortDisk {
    written: Arc<Mutex<Vec<u8>>>,
    room: Arc<Mutex<usize>>,
}

impl std::io::Write for ShortDisk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut room = self.room.lock().unwrap();
        if *room == 0 {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        let n = buf.len().min(*room);
        *room -= n;
        self.written.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An event cut short by a full disk leaves at most itself unreadable: the next one starts on
/// a line of its own and parses.
#[test]
fn a_partial_audit_write_does_not_corrupt_the_next_event() {
    let written = Arc::new(Mutex::new(Vec::new()));
    let room = Arc::new(Mutex::new(100));
    let sink = AuditSink::writer(ShortDisk {
        written: Arc::clone(&written),
        room: Arc::clone(&room),
    });
    let log = AuditLog::new(sink, AuditOnError::Deny);
    let metrics = Metrics::default();
    let mut first = event();
    first.reason = "first".into();
    assert!(log.record(&first, &metrics).is_err());
    *room.lock().unwrap() = 1 << 20;
    let mut second = event();
    second.reason = "second".into();
    assert!(log.record(&second, &metrics).is_ok());
    let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
    let last = text.lines().last().unwrap();
    let event: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(event["reason"], "second", "{text}");
}
