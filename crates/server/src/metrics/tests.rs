use std::time::Duration;

use super::*;

#[test]
fn metrics_render_as_prometheus_text() {
    let m = Metrics::default();
    m.issued(Endpoint::RealmGet, ExchangeKind::AccessToken);
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
fn refusals_have_their_own_counter() {
    let m = Metrics::default();
    m.refused(Endpoint::RealmPost, Refusal::NothingGranted);
    let text = m.render();
    assert!(text.contains(
        "svid_broker_refused_total{endpoint=\"realm_post\",reason=\"nothing_granted\"} 1"
    ));
    assert!(text.contains("svid_broker_audit_write_errors_total 0"));
}

#[test]
fn verified_cache_figures_render_per_cache_and_only_when_given() {
    let m = Metrics::default();
    assert!(!m.render().contains("verified_cache"));
    let mut jwt = VerifiedCacheFigures::empty(VerifiedCacheKind::JwtSvid);
    jwt.hits = 7;
    jwt.misses = 3;
    jwt.evictions = 2;
    jwt.entries = 1;
    jwt.bytes = 512;
    let text = m.render_with_caches(&[
        VerifiedCacheFigures::empty(VerifiedCacheKind::X509Svid),
        jwt,
    ]);
    for line in [
        "svid_broker_verified_cache_lookups_total{cache=\"jwt_svid\",result=\"hit\"} 7",
        "svid_broker_verified_cache_lookups_total{cache=\"jwt_svid\",result=\"miss\"} 3",
        "svid_broker_verified_cache_lookups_total{cache=\"x509_svid\",result=\"hit\"} 0",
        "svid_broker_verified_cache_evictions_total{cache=\"jwt_svid\"} 2",
        "svid_broker_verified_cache_entries{cache=\"jwt_svid\"} 1",
        "svid_broker_verified_cache_bytes{cache=\"jwt_svid\"} 512",
        "# TYPE svid_broker_verified_cache_entries gauge",
        "# TYPE svid_broker_verified_cache_evictions_total counter",
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
    assert!(!text.contains("cache=\"login_credential\""), "{text}");
}
