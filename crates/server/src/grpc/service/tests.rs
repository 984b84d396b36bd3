//! The handler without a listener: the engine's rules as a gRPC caller meets them.

use std::sync::Arc;

use svid_broker_identity::clock::FixedClock;
use svid_broker_identity::jwt::AudienceMatch;
use svid_broker_identity::secret::ExposeSecret as _;
use tonic::metadata::MetadataValue;

use super::*;
use crate::testutil::{AUDIENCE, BUILDER, Fixture, id, t0};

fn access_token_request(jwt: &str) -> Request<ExchangeRequest> {
    let mut request = Request::new(ExchangeRequest {
        requested_token_type: TokenType::RegistryAccessToken.into(),
        audience: "registry.local".to_owned(),
        scope: vec!["repository:team/app:pull".to_owned()],
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {jwt}")).unwrap(),
    );
    request
}

/// The gRPC bearer follows `identity.audience_policy` like the realm: a JWT-SVID also minted
/// for another relying party is UNAUTHENTICATED under `single` (the default), fine under `any`.
#[tokio::test]
async fn grpc_bearer_follows_the_audience_policy() {
    for (policy, ok) in [(AudienceMatch::Single, false), (AudienceMatch::AnyOf, true)] {
        let f = Fixture::with(|o| o.audience_policy = policy);
        let service = ExchangeService::new(f.broker.clone(), Arc::new(FixedClock(t0())));
        let multi =
            f.td.issue_jwt_svid(&id(BUILDER), &[AUDIENCE, "another-relying-party"])
                .unwrap()
                .token()
                .expose_secret()
                .to_owned();
        let result = service.exchange(access_token_request(&multi)).await;
        match (ok, result) {
            (true, Ok(response)) => assert_eq!(response.get_ref().subject, BUILDER),
            (false, Err(status)) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                let audit = f.audit.lock().unwrap().join("\n");
                assert!(audit.contains("aud has 2 values"), "{audit}");
            }
            (ok, other) => panic!("{policy:?} (ok = {ok}): {other:?}"),
        }
        // A single-audience JWT-SVID passes under both.
        let single = f.jwt(BUILDER, AUDIENCE);
        assert!(
            service
                .exchange(access_token_request(&single))
                .await
                .is_ok()
        );
    }
}

/// The service's clock, not the wall clock, decides and stamps the audit events: an issued
/// token and a refusal before authentication are each audited once, at the clock's time.
#[tokio::test]
async fn audit_events_carry_the_service_clock_time() {
    let f = Fixture::new();
    // An hour from the wall clock: an event stamped with wall time would say otherwise.
    let at = t0() + std::time::Duration::from_secs(3600);
    let service = ExchangeService::new(f.broker.clone(), Arc::new(FixedClock(at)));
    let jwt =
        f.td.issue_jwt_svid_at(
            &id(BUILDER),
            &[AUDIENCE],
            at,
            std::time::Duration::from_secs(300),
        )
        .unwrap()
        .token()
        .expose_secret()
        .to_owned();
    let response = service.exchange(access_token_request(&jwt)).await.unwrap();
    assert_eq!(response.get_ref().subject, BUILDER);
    let status = service
        .exchange(access_token_request("not.a.jwt"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let events = f.audit_lines();
    let decisions: Vec<_> = events.iter().map(|e| e["decision"].clone()).collect();
    assert_eq!(decisions, ["allow", "deny"], "{events:?}");
    for event in &events {
        assert_eq!(event["time"], crate::audit::rfc3339(at), "{event}");
        assert_eq!(event["endpoint"], "grpc", "{event}");
    }
}
