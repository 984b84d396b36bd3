//! The ACR backend and its service against the fake Entra ID and ACR (crates/dev
//! `fake::azure`): Entra verifies the broker's JWT as it verifies an external issuer's token
//! (discovery and JWKS served here by a `DocumentHost`, RS256, times on its clock) and matches
//! a federated credential by issuer, subject and audience; ACR trades the Entra token for a
//! refresh token when the application holds a role on the registry.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed step is a failed test"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;
use svid_broker_backends::acr::{AcrBackend, AcrConfig, DEFAULT_AUDIENCE, REFRESH_TOKEN_USERNAME};
use svid_broker_backends::http::{ApiClient, ClientSettings};
use svid_broker_backends::{BackendError, BackendService, CredentialHandle, Failure, Step};
use svid_broker_dev::fake::azure::{Endpoint, FakeAzure, Fault};
use svid_broker_identity::clock::Clock;
use svid_broker_identity::secret::{ExposeSecret as _, SecretString};

use crate::common::*;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "af3110ba-0ba9-4412-b1a0-59f50b7e9273";

/// A fake whose application trusts `broker` for `subjects` with Entra's audience and holds
/// `AcrPull` on the registry.
fn start_trusting(broker: &Broker, subjects: &[&str]) -> FakeAzure {
    let fake = FakeAzure::start().unwrap();
    fake.add_app(TENANT, CLIENT).unwrap();
    for subject in subjects {
        fake.add_federated_credential(CLIENT, broker.issuer.issuer(), subject, &[DEFAULT_AUDIENCE])
            .unwrap();
    }
    fake.assign_role(CLIENT, "AcrPull").unwrap();
    fake
}

fn start(broker: &Broker) -> FakeAzure {
    start_trusting(broker, &[APP, OTHER])
}

fn config(fake: &FakeAzure, broker: &Broker) -> AcrConfig {
    let mut config = AcrConfig::new(
        "corp",
        Arc::clone(&broker.issuer),
        fake.registry_url(),
        TENANT,
        CLIENT,
    );
    config.authority_host = fake.authority_url();
    config
}

fn service_with(config: AcrConfig) -> BackendService {
    BackendService::new(Arc::new(AcrBackend::new(config).unwrap()), quick_service())
}

fn entra_head() -> String {
    format!("get an Entra ID token for application \"{CLIENT}\" with the broker's token: ")
}

/// The error of one `team-a/app` pull issue through a fresh service over `config`, at Entra;
/// with `then_ok`, the next request succeeds.
async fn entra_error(config: AcrConfig, then_ok: bool) -> BackendError {
    let service = service_with(config);
    let error = issue_error(&service, "acr", &entra_head(), then_ok).await;
    assert_eq!(
        error.step,
        Step::GetEntraToken {
            client_id: CLIENT.to_owned()
        }
    );
    assert!(!error.to_string().contains("eyJ"), "{error}");
    error
}

/// As [`entra_error`], at ACR's exchange.
async fn exchange_error(fake: &FakeAzure, config: AcrConfig, then_ok: bool) -> BackendError {
    let service = service_with(config);
    let head = format!(
        "exchange the Entra ID token for an ACR refresh token at \"{}\": ",
        fake.login_server()
    );
    let error = issue_error(&service, "acr", &head, then_ok).await;
    assert_eq!(
        error.step,
        Step::ExchangeAcrRefreshToken {
            login_server: fake.login_server()
        }
    );
    assert!(!error.to_string().contains("eyJ"), "{error}");
    error
}

/// Entra refused the broker's JWT with `code`, and the error says so naming Entra.
fn jwt_refused_with(error: &BackendError, code: &str) {
    assert!(
        matches!(&error.failure, Failure::JwtRefused { message } if message.contains(code)),
        "{code}: {error}"
    );
    assert!(!error.retryable());
    assert!(
        error
            .to_string()
            .contains("Microsoft Entra ID refused the broker's JWT: invalid_client: "),
        "{error}"
    );
}

fn unix(at: SystemTime) -> i64 {
    i64::try_from(at.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

// === issue and use ===

#[tokio::test]
async fn an_issued_refresh_token_logs_in_to_the_registry() {
    let broker = Broker::start();
    let fake = start(&broker);
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    let credential = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    assert!(!credential.reused);
    assert_eq!(credential.username, REFRESH_TOKEN_USERNAME);
    // The grant ends before the refresh token's three hours: the caller is told the grant's
    // end, and that the registry honours the token until its exp.
    assert_eq!(credential.expires_at, now + TTL);
    let refresh = fake.refresh_tokens();
    assert_eq!(refresh.len(), 1);
    assert_eq!(
        (refresh[0].tenant.as_str(), refresh[0].client_id.as_str()),
        (TENANT, CLIENT)
    );
    let exp = UNIX_EPOCH + Duration::from_secs(u64::try_from(refresh[0].expires_at).unwrap());
    assert_eq!(credential.registry_expires_at, Some(exp));
    assert!(exp >= now + Duration::from_secs(3 * 3600 - 5), "{exp:?}");
    assert!(credential.expires_at <= credential.registry_expires_at.unwrap());
    assert_eq!(
        credential.handle,
        CredentialHandle::new(0, CLIENT, fake.login_server())
    );
    let token = credential.password.expose_secret();
    assert!(!credential.credential_id.contains(token));
    assert!(!format!("{credential:?}").contains(token));

    // Docker's login check with the null GUID and the refresh token.
    let registry = ApiClient::new(&ClientSettings::new(
        fake.registry_url(),
        REFRESH_TOKEN_USERNAME,
        credential.password.clone(),
    ))
    .unwrap();
    let answer = registry.send(Method::GET, "/v2/", None).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(fake.registry_logins(), 1);
    let stranger = ApiClient::new(&ClientSettings::new(
        fake.registry_url(),
        REFRESH_TOKEN_USERNAME,
        SecretString::from("eyJ.not-a-token.x".to_owned()),
    ))
    .unwrap();
    assert_eq!(
        stranger
            .send(Method::GET, "/v2/", None)
            .await
            .unwrap()
            .status,
        401
    );

    // The audit: Entra verified the broker's own JWT.
    let audit = fake.verified_assertions();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].issuer, broker.issuer.issuer());
    assert_eq!(audit[0].subject, APP);
    assert_eq!(audit[0].audiences, [DEFAULT_AUDIENCE]);
    assert_eq!(audit[0].kid, broker.issuer.signing_kid());

    let figures = service.figures();
    assert_eq!(figures.kind, "acr");
    assert!(counted(&service, "get_entra_token", "ok", 1));
    assert!(counted(&service, "exchange_acr_refresh_token", "ok", 1));
    assert_eq!((fake.discovery_fetches(), fake.jwks_fetches()), (1, 1));
}

#[tokio::test]
async fn a_push_grant_gets_its_own_token_and_the_subject_template_shapes_sub() {
    let broker = Broker::start();
    let fake = start_trusting(&broker, &[&format!("svid:{APP}:push")]);
    let mut config = config(&fake, &broker);
    config.subject_template = "svid:{spiffe_id}:{access}".to_owned();
    let service = service_with(config);
    let now = SystemTime::now();
    let pusher = service
        .issue(grant(APP, &["repository:team-a/app:push"], now), now)
        .await
        .unwrap();
    assert!(fake.authenticate(pusher.password.expose_secret()));
    assert_eq!(
        fake.verified_assertions()[0].subject,
        format!("svid:{APP}:push")
    );
    // The pull subject matches no credential: Entra refuses it.
    let error = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap_err();
    jwt_refused_with(&error, "AADSTS700213");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_issues_reach_entra_and_acr_once() {
    let broker = Broker::start();
    let fake = start(&broker);
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    let (usernames, fresh) = issue_a_thousand_at_once(&service, now).await;
    assert_eq!((fake.entra_calls(), fake.exchange_calls()), (1, 1));
    assert_eq!(fresh, 1);
    assert_eq!(usernames, [REFRESH_TOKEN_USERNAME]);

    // Another repository, the same access: the same token (it is registry-wide).
    reused_across_repositories_not_subjects(&service, now).await;
    assert_eq!((fake.entra_calls(), fake.exchange_calls()), (2, 2));
}

// === what Entra refuses ===

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    let broker = Broker::start();
    let fake = start(&broker);
    let mut wrong = config(&fake, &broker);
    "api://someone-else".clone_into(&mut wrong.audience);
    jwt_refused_with(&entra_error(wrong, false).await, "AADSTS700212");
    assert_eq!((fake.entra_refusals(), fake.exchange_calls()), (1, 0));
}

#[tokio::test]
async fn a_subject_no_credential_names_is_refused() {
    let broker = Broker::start();
    let fake = start_trusting(&broker, &[OTHER]);
    jwt_refused_with(
        &entra_error(config(&fake, &broker), false).await,
        "AADSTS700213",
    );
}

#[tokio::test]
async fn an_expired_jwt_is_refused() {
    let broker = Broker::start();
    let fake = start(&broker);
    // The broker signs at the real time with a 300 s life; Entra's clock is later.
    fake.advance_clock(Duration::from_secs(301));
    jwt_refused_with(
        &entra_error(config(&fake, &broker), false).await,
        "AADSTS700024",
    );
}

#[tokio::test]
async fn a_token_from_an_issuer_no_credential_trusts_is_refused() {
    let broker = Broker::start();
    let stranger = Broker::start();
    let fake = start(&broker);
    let error = entra_error(config(&fake, &stranger), false).await;
    jwt_refused_with(&error, "AADSTS700211");
    // Refused before anything was fetched.
    assert_eq!(fake.discovery_fetches(), 0);
}

#[tokio::test]
async fn a_key_that_was_never_published_is_refused() {
    let broker = Broker::start();
    let fake = start(&broker);
    broker.sign_with_an_unpublished_key();
    let error = entra_error(config(&fake, &broker), false).await;
    jwt_refused_with(&error, "AADSTS7000272");
    assert_eq!(fake.jwks_fetches(), 1);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_by_refetching_the_jwks() {
    let broker = Broker::start();
    let fake = start(&broker);
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    // Rotation: a new key signs, the old one stays published.
    let (_, new_kid) =
        issue_across_a_rotation(&service, &broker, now, || fake.jwks_fetches()).await;
    assert_eq!(fake.jwks_fetches(), 2);
    assert_eq!(fake.verified_assertions()[1].kid, new_kid);
}

#[tokio::test]
async fn an_unknown_application_or_tenant_is_a_rejected_request() {
    let broker = Broker::start();
    let fake = start(&broker);
    let mut unknown = config(&fake, &broker);
    "00000000-1111-2222-3333-444444444444".clone_into(&mut unknown.client_id);
    let service = service_with(unknown);
    let now = SystemTime::now();
    let error = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap_err();
    assert!(
        matches!(&error.failure, Failure::Rejected { status: 400, message } if message.starts_with("unauthorized_client: AADSTS700016")),
        "{error}"
    );
    let mut tenant = config(&fake, &broker);
    "00000000-1111-2222-3333-444444444444".clone_into(&mut tenant.tenant_id);
    let error = entra_error(tenant, false).await;
    assert!(
        matches!(&error.failure, Failure::Rejected { status: 400, message } if message.contains("AADSTS90002")),
        "{error}"
    );
}

// === what ACR refuses ===

#[tokio::test]
async fn an_application_without_a_role_is_refused_at_the_exchange() {
    let broker = Broker::start();
    let fake = FakeAzure::start().unwrap();
    fake.add_app(TENANT, CLIENT).unwrap();
    fake.add_federated_credential(CLIENT, broker.issuer.issuer(), APP, &[DEFAULT_AUDIENCE])
        .unwrap();
    let error = exchange_error(&fake, config(&fake, &broker), false).await;
    assert!(
        matches!(&error.failure, Failure::Rejected { status: 401, message } if message.contains("no role assignment")),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("Azure Container Registry answered 401 Unauthorized: UNAUTHORIZED: "),
        "{error}"
    );
    // Entra issued its token; ACR refused it.
    assert_eq!(
        (fake.entra_tokens_issued(), fake.exchange_refusals()),
        (1, 1)
    );
    assert!(fake.refresh_tokens().is_empty());
}

#[tokio::test]
async fn an_arm_scope_stops_working_when_the_registry_disables_arm_tokens() {
    let broker = Broker::start();
    let fake = start(&broker);
    let mut arm = config(&fake, &broker);
    "https://management.azure.com/.default".clone_into(&mut arm.scope);
    let now = SystemTime::now();
    service_with(arm.clone())
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    fake.disable_arm_audience_tokens();
    let error = exchange_error(&fake, arm, false).await;
    assert!(
        matches!(&error.failure, Failure::Rejected { status: 401, message } if message.contains("audience")),
        "{error}"
    );
}

// === faults ===

#[tokio::test]
async fn entra_faults_fail_clearly_and_are_not_kept() {
    let broker = Broker::start();
    let fake = start(&broker);
    let cases = with_jwt_refused(failure_table(
        Fault::Hangup,
        Fault::Status,
        Fault::Malformed,
        Some(|error| {
            assert!(
                matches!(&error.failure, Failure::Forbidden { message } if message.contains("injected fault")),
                "{error}"
            );
        }),
        |error| {
            assert!(
                matches!(&error.failure, Failure::Rejected { status: 400, message } if message == "invalid_request: AADSTS900144: injected fault Trace ID: 00000000-0000-0000-0000-fa4e00000000 Correlation ID: 00000000-0000-0000-0000-fa4e00000000 Timestamp: fake"),
                "{error}"
            );
            assert!(
                error
                    .to_string()
                    .contains("Microsoft Entra ID answered 400 Bad Request"),
                "{error}"
            );
        },
    ));
    check_failures(
        cases,
        |fault| fake.fail_next(Endpoint::Entra, fault, 1),
        async || entra_error(config(&fake, &broker), true).await,
    )
    .await;

    fake.fail_next(Endpoint::Entra, Fault::Slow(Duration::from_secs(5)), 1);
    let mut impatient = config(&fake, &broker);
    impatient.request_deadline = IMPATIENT;
    timed_out(&entra_error(impatient, true).await, "Microsoft Entra ID");
}

#[tokio::test]
async fn acr_faults_fail_clearly_and_are_not_kept() {
    let broker = Broker::start();
    let fake = start(&broker);
    let mut cases = failure_table(
        Fault::Hangup,
        Fault::Status,
        Fault::Malformed,
        Some(|error| {
            assert_eq!(
                error.failure,
                Failure::Forbidden {
                    message: "DENIED: injected fault".to_owned()
                }
            );
        }),
        |error| {
            assert_eq!(
                error.failure,
                Failure::Rejected {
                    status: 400,
                    message: "BAD_REQUEST: injected fault".to_owned()
                }
            );
        },
    );
    cases[1].1 = |error| {
        assert_eq!(
            error.failure,
            Failure::Rejected {
                status: 401,
                message: "UNAUTHORIZED: injected fault".to_owned()
            }
        );
    };
    check_failures(
        cases,
        |fault| fake.fail_next(Endpoint::Acr, fault, 1),
        async || exchange_error(&fake, config(&fake, &broker), true).await,
    )
    .await;

    fake.fail_next(Endpoint::Acr, Fault::Slow(Duration::from_secs(5)), 1);
    let mut impatient = config(&fake, &broker);
    impatient.request_deadline = IMPATIENT;
    timed_out(
        &exchange_error(&fake, impatient, true).await,
        "Azure Container Registry",
    );
}

#[tokio::test]
async fn entra_or_acr_down_is_unreachable_at_its_step() {
    let broker = Broker::start();
    let fake = start(&broker);
    let gone = FakeAzure::start().unwrap();
    let (gone_entra, gone_acr) = (gone.authority_url(), gone.registry_url());
    drop(gone);

    let mut no_entra = config(&fake, &broker);
    no_entra.authority_host = gone_entra;
    let error = entra_error(no_entra, false).await;
    unreachable(&error);
    assert!(
        error
            .to_string()
            .contains("cannot reach Microsoft Entra ID"),
        "{error}"
    );

    let mut no_acr = config(&fake, &broker);
    no_acr.url = gone_acr;
    let service = service_with(no_acr);
    let now = SystemTime::now();
    let error = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap_err();
    assert!(
        matches!(error.step, Step::ExchangeAcrRefreshToken { .. }),
        "{error}"
    );
    unreachable(&error);
    assert!(
        error
            .to_string()
            .contains("cannot reach Azure Container Registry"),
        "{error}"
    );
}

// === expiry ===

#[tokio::test]
async fn a_refresh_token_shorter_than_the_grant_ends_the_credential_at_its_exp() {
    let broker = Broker::start();
    let fake = start(&broker);
    fake.set_refresh_token_lifetime(Duration::from_secs(60));
    let service = service_with(config(&fake, &broker));
    let clock = ManualClock::starting_now();
    let now = clock.now();
    let credential = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    let exp = fake.refresh_tokens()[0].expires_at;
    assert!(unix(credential.expires_at) == exp, "{credential:?} {exp}");
    assert!(credential.expires_at <= now + TTL);
    assert_eq!(credential.registry_expires_at, Some(credential.expires_at));
    let token = credential.password.expose_secret().to_owned();
    assert!(fake.authenticate(&token));

    let (stop, runner) = spawn_run(&service, &clock);
    clock.advance(Duration::from_secs(61));
    fake.advance_clock(Duration::from_secs(61));
    assert!(eventually(|| service.figures().credentials_expired == 1).await);
    assert!(!fake.authenticate(&token));
    let later = clock.now();
    let fresh = service
        .issue(grant(APP, &["repository:team-a/app:pull"], later), later)
        .await
        .unwrap();
    assert!(!fresh.reused);
    assert_ne!(fresh.password.expose_secret(), token);
    assert_eq!(fake.exchange_calls(), 2);
    stop_run(stop, runner).await;
}

#[tokio::test]
async fn revoking_does_nothing_and_succeeds() {
    let broker = Broker::start();
    let fake = start(&broker);
    let backend = AcrBackend::new(config(&fake, &broker)).unwrap();
    issue_then_revoke_twice(&backend).await;
    assert_eq!((fake.entra_calls(), fake.exchange_calls()), (1, 1));
    // The token still works: the broker cannot end it.
    assert_eq!(fake.refresh_tokens().len(), 1);
}
