//! The Google Artifact Registry backend and its service against the fake Google (crates/dev
//! `fake::google`): STS verifies the broker's JWT as Google does (discovery and JWKS served
//! here by a `DocumentHost`, RS256, times on its clock), checks the provider's audience,
//! `google.subject`'s size and the attribute condition; IAM Credentials checks the
//! principal's `roles/iam.workloadIdentityUser` and the lifetime; `/v2/` checks the token.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed step is a failed test"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use svid_broker_backends::gar::{DOCKER_USERNAME, GarBackend, GarConfig};
use svid_broker_backends::{BackendError, BackendService, CredentialHandle, Failure, Step};
use svid_broker_dev::fake::google::{FakeGoogle, Fault, RegistryRole};
use svid_broker_identity::clock::Clock;
use svid_broker_identity::secret::ExposeSecret as _;

use crate::common::*;

const PROVIDER: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/svid-broker/providers/broker";
const SERVICE_ACCOUNT: &str = "puller@my-project.iam.gserviceaccount.com";
const STS_HEAD: &str = "exchange the broker's token at Google STS for provider \"//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/svid-broker/providers/broker\": ";
const GENERATE_HEAD: &str =
    "generate an access token for service account \"puller@my-project.iam.gserviceaccount.com\": ";

/// A fake Google whose provider trusts `broker` (default audiences, no condition), and a
/// reader service account `APP` may impersonate.
fn start(broker: &Broker) -> FakeGoogle {
    let fake = FakeGoogle::start().unwrap();
    fake.add_provider(PROVIDER, broker.issuer.issuer(), Vec::new(), None)
        .unwrap();
    reader_account(&fake, &FakeGoogle::principal(PROVIDER, APP).unwrap());
    fake
}

fn reader_account(fake: &FakeGoogle, member: &str) {
    fake.add_service_account(SERVICE_ACCOUNT);
    fake.grant_workload_identity_user(SERVICE_ACCOUNT, member)
        .unwrap();
    fake.set_registry_role(SERVICE_ACCOUNT, Some(RegistryRole::Reader))
        .unwrap();
}

fn config(fake: &FakeGoogle, broker: &Broker) -> GarConfig {
    let mut config = GarConfig::new(
        "corp",
        Arc::clone(&broker.issuer),
        PROVIDER,
        SERVICE_ACCOUNT,
    );
    config.sts_endpoint = fake.url();
    config.iamcredentials_endpoint = fake.url();
    config
}

fn service_with(config: GarConfig) -> BackendService {
    BackendService::new(Arc::new(GarBackend::new(config).unwrap()), quick_service())
}

/// The error of one `team-a/app` pull issue through a fresh service over `config`, shown
/// starting `gar registry "corp": <head>`; never showing a JWT. With `then_ok`, the next
/// request succeeds.
async fn issue_error(config: GarConfig, head: &str, then_ok: bool) -> BackendError {
    let service = service_with(config);
    let error = crate::common::issue_error(&service, "gar", head, then_ok).await;
    // A JWT's header starts `eyJ` (base64 of `{"`): none may show in the error.
    assert!(!error.to_string().contains("eyJ"), "{error}");
    error
}

async fn sts_error(config: GarConfig, then_ok: bool) -> BackendError {
    let error = issue_error(config, STS_HEAD, then_ok).await;
    assert_eq!(
        error.step,
        Step::ExchangeStsToken {
            provider: PROVIDER.to_owned()
        }
    );
    error
}

async fn generate_error(config: GarConfig, then_ok: bool) -> BackendError {
    let error = issue_error(config, GENERATE_HEAD, then_ok).await;
    assert_eq!(
        error.step,
        Step::GenerateAccessToken {
            service_account: SERVICE_ACCOUNT.to_owned()
        }
    );
    error
}

/// Asserts a refusal of the broker's JWT by STS whose message says `says`.
fn jwt_refused_saying(error: &BackendError, says: &str) {
    assert!(
        matches!(&error.failure, Failure::JwtRefused { message } if message.contains(says)),
        "{says}: {error}"
    );
    assert!(!error.retryable());
    assert!(
        error
            .to_string()
            .contains("Google STS refused the broker's JWT: invalid_grant: ")
            || error
                .to_string()
                .contains("Google STS refused the broker's JWT: unauthorized_client: "),
        "{error}"
    );
}

/// The status of `GET /v2/` at the fake with Basic `username:password`, as `docker login`
/// sends it.
async fn docker_check(fake: &FakeGoogle, username: &str, password: &str) -> u16 {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut stream = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
    let request = format!(
        "GET /v2/ HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {basic}\r\nConnection: close\r\n\r\n",
        fake.addr()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .unwrap()
        .parse()
        .unwrap()
}

// === issue and use ===

#[tokio::test]
async fn an_issued_token_logs_in_at_the_registry_and_the_jwt_was_verified() {
    let broker = Broker::start();
    let fake = start(&broker);
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    let credential = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    assert!(!credential.reused);
    assert_eq!(credential.username, DOCKER_USERNAME);
    // Google was asked for the grant's 300 s: its whole-second expireTime is at most then.
    assert!(credential.expires_at <= now + TTL, "{credential:?}");
    assert!(credential.expires_at > now + TTL - Duration::from_secs(2));
    assert_eq!(credential.registry_expires_at, Some(credential.expires_at));
    assert_eq!(
        credential.handle,
        CredentialHandle::new(0, SERVICE_ACCOUNT, "")
    );
    let token = credential.password.expose_secret();
    assert!(!credential.credential_id.contains(token));
    assert!(!format!("{credential:?}").contains(token));
    assert_eq!(fake.registry_role(token), Some(RegistryRole::Reader));
    assert_eq!(docker_check(&fake, DOCKER_USERNAME, token).await, 200);
    assert_eq!(
        docker_check(&fake, DOCKER_USERNAME, "ya29.forged").await,
        401
    );
    assert_eq!(docker_check(&fake, "someone", token).await, 401);
    assert_eq!(fake.registry_logins(), 1);

    let audit = fake.verified_jwts();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].issuer, broker.issuer.issuer());
    assert_eq!(audit[0].subject, APP);
    assert_eq!(audit[0].audiences, [format!("https:{PROVIDER}")]);
    assert_eq!(audit[0].kid, broker.issuer.signing_kid());
    assert_eq!((fake.sts_calls(), fake.generate_calls()), (1, 1));
    assert_eq!((fake.discovery_fetches(), fake.jwks_fetches()), (1, 1));

    let figures = service.figures();
    assert_eq!(figures.kind, "gar");
    assert!(counted(&service, "exchange_sts_token", "ok", 1));
    assert!(counted(&service, "generate_access_token", "ok", 1));
}

#[tokio::test]
async fn a_pool_wide_principal_set_and_allowed_audiences_work_too() {
    let broker = Broker::start();
    let fake = FakeGoogle::start().unwrap();
    fake.add_provider(
        PROVIDER,
        broker.issuer.issuer(),
        vec!["svid-broker-gar".to_owned()],
        Some(vec![APP.to_owned(), OTHER.to_owned()]),
    )
    .unwrap();
    reader_account(&fake, &FakeGoogle::pool_principal_set(PROVIDER).unwrap());
    let mut config = config(&fake, &broker);
    "svid-broker-gar".clone_into(&mut config.audience);
    let service = service_with(config);
    let now = SystemTime::now();
    for subject in [APP, OTHER] {
        let credential = service
            .issue(grant(subject, &["repository:team-a/app:pull"], now), now)
            .await
            .unwrap();
        assert!(
            fake.registry_role(credential.password.expose_secret())
                .is_some()
        );
    }
    assert_eq!(fake.verified_jwts()[1].audiences, ["svid-broker-gar"]);
}

#[tokio::test]
async fn a_subject_template_shapes_google_subject() {
    let broker = Broker::start();
    let fake = FakeGoogle::start().unwrap();
    fake.add_provider(PROVIDER, broker.issuer.issuer(), Vec::new(), None)
        .unwrap();
    let subject = format!("{APP}#push");
    reader_account(&fake, &FakeGoogle::principal(PROVIDER, &subject).unwrap());
    let mut config = config(&fake, &broker);
    "{spiffe_id}#{access}".clone_into(&mut config.subject_template);
    let service = service_with(config);
    let now = SystemTime::now();
    service
        .issue(grant(APP, &["repository:team-a/app:push"], now), now)
        .await
        .unwrap();
    assert_eq!(fake.verified_jwts()[0].subject, subject);
    // The pull subject is another principal, without the binding.
    let error = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap_err();
    assert!(
        matches!(error.failure, Failure::Forbidden { .. }),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_issues_make_one_exchange_and_another_subject_a_second() {
    let broker = Broker::start();
    let fake = start(&broker);
    fake.grant_workload_identity_user(
        SERVICE_ACCOUNT,
        &FakeGoogle::principal(PROVIDER, OTHER).unwrap(),
    )
    .unwrap();
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    let (usernames, fresh) = issue_a_thousand_at_once(&service, now).await;
    assert_eq!((fake.sts_calls(), fake.generate_calls()), (1, 1));
    assert_eq!(fresh, 1);
    assert_eq!(usernames, [DOCKER_USERNAME]);

    // Another repository, the same access: the same token (it reaches the whole registry).
    reused_across_repositories_not_subjects(&service, now).await;
    assert_eq!((fake.sts_calls(), fake.generate_calls()), (2, 2));
    let figures = service.figures();
    assert_eq!(
        (figures.credentials_created, figures.credentials_reused),
        (2, 1000)
    );
}

// === what Google STS refuses ===

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    let broker = Broker::start();
    let fake = start(&broker);
    let mut wrong = config(&fake, &broker);
    "https://someone-else.example.com".clone_into(&mut wrong.audience);
    let error = sts_error(wrong, false).await;
    jwt_refused_saying(&error, "does not match the expected audience");
    assert_eq!((fake.exchanges(), fake.sts_refusals()), (0, 1));
    // The JWT verified; the provider refused its audience.
    assert_eq!(fake.verified_jwts().len(), 1);
    assert_eq!(fake.generate_calls(), 0);
}

#[tokio::test]
async fn a_subject_the_attribute_condition_rejects_is_refused() {
    let broker = Broker::start();
    let fake = FakeGoogle::start().unwrap();
    fake.add_provider(
        PROVIDER,
        broker.issuer.issuer(),
        Vec::new(),
        Some(vec![OTHER.to_owned()]),
    )
    .unwrap();
    reader_account(&fake, &FakeGoogle::principal(PROVIDER, APP).unwrap());
    let error = sts_error(config(&fake, &broker), false).await;
    jwt_refused_saying(
        &error,
        "unauthorized_client: The given credential is rejected",
    );
}

#[tokio::test]
async fn a_subject_over_127_bytes_is_refused_before_anything_is_sent() {
    let broker = Broker::start();
    let fake = start(&broker);
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    let long = format!("spiffe://example.org/ns/team-a/sa/{}", "a".repeat(94));
    assert_eq!(long.len(), 128);
    let error = service
        .issue(grant(&long, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap_err();
    assert_eq!(error.step, Step::MapGrant);
    assert!(
        error.to_string().contains("google.subject's 127 bytes"),
        "{error}"
    );
    assert_eq!(fake.sts_calls(), 0);
    // 127 bytes is within Google's limit (the binding is missing, so IAM refuses).
    let fits = &long[..127];
    let error = service
        .issue(grant(fits, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap_err();
    assert!(
        matches!(error.failure, Failure::Forbidden { .. }),
        "{error}"
    );
    assert_eq!(fake.verified_jwts()[0].subject, fits);
}

#[tokio::test]
async fn a_token_from_an_issuer_the_provider_does_not_trust_is_refused() {
    let broker = Broker::start();
    let stranger = Broker::start();
    let fake = start(&broker);
    let error = sts_error(config(&fake, &stranger), false).await;
    jwt_refused_saying(&error, "does not match the expected ones");
    assert_eq!(fake.discovery_fetches(), 0);
    assert!(fake.verified_jwts().is_empty());
}

#[tokio::test]
async fn an_unknown_provider_is_an_invalid_target() {
    let broker = Broker::start();
    let fake = start(&broker);
    let mut config = config(&fake, &broker);
    config.workload_identity_provider = PROVIDER.replace("providers/broker", "providers/other");
    let error = issue_error(config, "exchange the broker's token at Google STS", false).await;
    assert!(
        matches!(&error.failure, Failure::Rejected { status: 400, message } if message.starts_with("invalid_target: ")),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("Google STS answered 400 Bad Request"),
        "{error}"
    );
}

#[tokio::test]
async fn an_expired_jwt_is_refused() {
    let broker = Broker::start();
    let fake = start(&broker);
    // The broker signs at the real time with a 300 s life; Google's clock is later.
    fake.advance_clock(Duration::from_secs(301));
    let error = sts_error(config(&fake, &broker), false).await;
    jwt_refused_saying(&error, "is stale to sign-in");
}

#[tokio::test]
async fn a_key_that_was_never_published_is_refused() {
    let broker = Broker::start();
    let fake = start(&broker);
    broker.sign_with_an_unpublished_key();
    let error = sts_error(config(&fake, &broker), false).await;
    jwt_refused_saying(&error, "kid");
    assert_eq!(fake.jwks_fetches(), 1);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_by_refetching_the_jwks() {
    let broker = Broker::start();
    let fake = start(&broker);
    fake.grant_workload_identity_user(
        SERVICE_ACCOUNT,
        &FakeGoogle::principal(PROVIDER, OTHER).unwrap(),
    )
    .unwrap();
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    // Rotation: a new key signs, the old one stays published.
    let (_, new_kid) =
        issue_across_a_rotation(&service, &broker, now, || fake.jwks_fetches()).await;
    assert_eq!(fake.jwks_fetches(), 2);
    assert_eq!(fake.verified_jwts()[1].kid, new_kid);
    assert_eq!(fake.exchanges(), 2);
}

// === what IAM Credentials refuses ===

#[tokio::test]
async fn a_principal_without_workload_identity_user_is_forbidden() {
    let broker = Broker::start();
    let fake = FakeGoogle::start().unwrap();
    fake.add_provider(PROVIDER, broker.issuer.issuer(), Vec::new(), None)
        .unwrap();
    reader_account(&fake, &FakeGoogle::principal(PROVIDER, OTHER).unwrap());
    let error = generate_error(config(&fake, &broker), false).await;
    assert!(
        matches!(&error.failure, Failure::Forbidden { message } if message.contains("Permission 'iam.serviceAccounts.getAccessToken' denied")),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("Google IAM Credentials answered 403 Forbidden: PERMISSION_DENIED: "),
        "{error}"
    );
    // STS admitted the JWT; IAM refused the impersonation.
    assert_eq!((fake.exchanges(), fake.generate_refusals()), (1, 1));
}

#[tokio::test]
async fn an_unknown_service_account_is_not_found() {
    let broker = Broker::start();
    let fake = start(&broker);
    let mut config = config(&fake, &broker);
    "nobody@my-project.iam.gserviceaccount.com".clone_into(&mut config.service_account);
    let error = issue_error(
        config,
        "generate an access token for service account",
        false,
    )
    .await;
    assert!(
        matches!(&error.failure, Failure::Rejected { status: 404, message } if message.starts_with("NOT_FOUND: ")),
        "{error}"
    );
}

// === lifetime ===

#[tokio::test]
async fn the_lifetime_is_capped_at_an_hour_and_never_outlives_the_grant() {
    let broker = Broker::start();
    let fake = start(&broker);
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    let mut long = grant(APP, &["repository:team-a/app:pull"], now);
    long.revoke_at = now + Duration::from_secs(2 * 3600);
    let credential = service.issue(long, now).await.unwrap();
    // An hour (Google's default maximum), whole seconds: before the grant's two hours.
    assert!(credential.expires_at <= now + Duration::from_secs(3600));
    assert!(credential.expires_at > now + Duration::from_secs(3598));
    assert_eq!(credential.registry_expires_at, Some(credential.expires_at));
}

#[tokio::test]
async fn a_token_shorter_than_the_grant_expires_first_and_is_not_revoked() {
    let broker = Broker::start();
    let fake = start(&broker);
    let service = service_with(config(&fake, &broker));
    let clock = ManualClock::starting_now();
    let now = clock.now();
    let mut long = grant(APP, &["repository:team-a/app:pull"], now);
    long.revoke_at = now + Duration::from_secs(2 * 3600);
    let credential = service.issue(long, now).await.unwrap();
    let token = credential.password.expose_secret().to_owned();
    assert_eq!(docker_check(&fake, DOCKER_USERNAME, &token).await, 200);
    let (stop, runner) = spawn_run(&service, &clock);
    clock.advance(Duration::from_secs(3600));
    fake.advance_clock(Duration::from_secs(3600));
    assert!(eventually(|| service.figures().credentials_expired == 1).await);
    assert_eq!(service.figures().credentials_revoked, 0);
    // Google ended it at its own time.
    assert_eq!(fake.registry_role(&token), None);
    assert_eq!(docker_check(&fake, DOCKER_USERNAME, &token).await, 401);
    stop_run(stop, runner).await;
}

#[tokio::test]
async fn revoking_does_nothing_and_succeeds() {
    let broker = Broker::start();
    let fake = start(&broker);
    let backend = GarBackend::new(config(&fake, &broker)).unwrap();
    issue_then_revoke_twice(&backend).await;
    assert_eq!((fake.sts_calls(), fake.generate_calls()), (1, 1));
}

// === faults ===

#[tokio::test]
async fn sts_faults_fail_the_exchange_clearly_and_are_not_kept() {
    let broker = Broker::start();
    let fake = start(&broker);
    let cases = with_jwt_refused(failure_table(
        Fault::Hangup,
        Fault::Status,
        Fault::Malformed,
        Some(|error| {
            assert_eq!(
                error.failure,
                Failure::Forbidden {
                    message: "access_denied: injected fault".to_owned()
                }
            );
        }),
        |error| {
            assert_eq!(
                error.failure,
                Failure::Rejected {
                    status: 400,
                    message: "invalid_request: injected fault".to_owned()
                }
            );
        },
    ));
    check_failures(
        cases,
        |fault| fake.fail_next_sts(fault, 1),
        async || sts_error(config(&fake, &broker), true).await,
    )
    .await;

    fake.fail_next_sts(Fault::Status(503), 1);
    let error = sts_error(config(&fake, &broker), true).await;
    assert_eq!(error.failure, Failure::ServerError { status: 503 });
    assert!(error.retryable());

    fake.fail_next_sts(Fault::Slow(Duration::from_secs(5)), 1);
    let mut impatient = config(&fake, &broker);
    impatient.request_deadline = IMPATIENT;
    timed_out(&sts_error(impatient, true).await, "Google STS");
}

#[tokio::test]
async fn iam_credentials_faults_fail_the_impersonation_clearly_and_are_not_kept() {
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
                    message: "PERMISSION_DENIED: injected fault".to_owned()
                }
            );
        }),
        |error| {
            assert_eq!(
                error.failure,
                Failure::Rejected {
                    status: 400,
                    message: "INVALID_ARGUMENT: injected fault".to_owned()
                }
            );
        },
    );
    // The second row is the 401: about the federated token, not a broker secret, so Google's
    // reason is kept.
    cases[1].1 = rejected_401;
    check_failures(
        cases,
        |fault| fake.fail_next_generate(fault, 1),
        async || generate_error(config(&fake, &broker), true).await,
    )
    .await;

    fake.fail_next_generate(Fault::Slow(Duration::from_secs(5)), 1);
    let mut impatient = config(&fake, &broker);
    impatient.request_deadline = IMPATIENT;
    timed_out(
        &generate_error(impatient, true).await,
        "Google IAM Credentials",
    );
}

#[tokio::test]
async fn a_google_that_is_down_is_unreachable() {
    let broker = Broker::start();
    let fake = start(&broker);
    let config = config(&fake, &broker);
    drop(fake);
    let error = sts_error(config, false).await;
    unreachable(&error);
    assert!(
        error.to_string().contains("cannot reach Google STS"),
        "{error}"
    );
}
