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
        jti: Some("j"),
        expires_at: None,
        cached: false,
        peer: None,
        endpoint: "grpc",
        subject_token: None,
    });
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
        jti: None,
        expires_at: None,
        cached: false,
        peer: None,
        endpoint: "realm_get",
        subject_token: None,
    };
    sink.emit(&ev);
    sink.emit(&ev);
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
}
