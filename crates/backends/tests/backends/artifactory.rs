//! The Artifactory backend and its service against the fake JFrog Platform (crates/dev
//! `fake::artifactory`), which verifies the broker's JWT as an OIDC relying party does
//! (discovery and JWKS served here by a `DocumentHost`, RS256, times on its clock), checks the
//! integration's audience and picks an identity mapping by exact claim match.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed step is a failed test"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use svid_broker_backends::artifactory::ACCESS_CLAIM;
use svid_broker_backends::{
    ArtifactoryBackend, ArtifactoryConfig, BackendError, BackendService, CredentialHandle, Failure,
    Step,
};
use svid_broker_dev::fake::artifactory::{FakeArtifactory, Fault, TokenSpec};
use svid_broker_identity::clock::Clock;
use svid_broker_identity::secret::ExposeSecret as _;

use crate::common::*;

const PROVIDER: &str = "svid-broker";
const PULLER: &str = "svid-puller";
const PUSHER: &str = "svid-pusher";
/// The mappings' token lifetime: the grants' [`TTL`] (a longer one is refused, see
/// `a_token_outliving_the_grant_is_refused_and_not_handed_out`).
const TOKEN_LIFE: u64 = TTL.as_secs();

fn access(value: &str) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert(ACCESS_CLAIM.to_owned(), Value::from(value));
    claims
}

/// A fake whose integration trusts `broker` with the fake's URL as audience, with a pull and
/// a push mapping of [`TOKEN_LIFE`].
fn start(broker: &Broker) -> FakeArtifactory {
    let fake = FakeArtifactory::start().unwrap();
    fake.add_provider(PROVIDER, broker.issuer.issuer(), Some(fake.url()));
    map(&fake, "pull", access("pull"), PULLER, TOKEN_LIFE);
    map(&fake, "push", access("push"), PUSHER, TOKEN_LIFE);
    fake
}

fn map(fake: &FakeArtifactory, name: &str, claims: Map<String, Value>, user: &str, life: u64) {
    let scope = format!("applied-permissions/groups:{name}ers");
    fake.add_identity_mapping(PROVIDER, name, 1, claims, TokenSpec::new(user, scope, life))
        .unwrap();
}

fn config(fake: &FakeArtifactory, broker: &Broker) -> ArtifactoryConfig {
    ArtifactoryConfig::new("corp", fake.url(), Arc::clone(&broker.issuer), PROVIDER)
}

fn service_with(config: ArtifactoryConfig) -> BackendService {
    BackendService::new(
        Arc::new(ArtifactoryBackend::new(config).unwrap()),
        quick_service(),
    )
}

/// The error of one `team-a/app` pull issue through a fresh service over `config`, shown as
/// an exchange with the provider failing; with `then_ok`, the next request succeeds.
async fn issue_error(config: ArtifactoryConfig, then_ok: bool) -> BackendError {
    let service = service_with(config);
    let error = crate::common::issue_error(
        &service,
        "artifactory",
        "exchange the broker's token with OIDC provider \"svid-broker\": ",
        then_ok,
    )
    .await;
    assert_eq!(
        error.step,
        Step::ExchangeOidcToken {
            provider: PROVIDER.to_owned()
        }
    );
    error
}

fn rejected_saying(error: &BackendError, says: &str) {
    assert!(
        matches!(&error.failure, Failure::Rejected { status: 400, message } if message.contains(says)),
        "{says}: {error}"
    );
    assert!(!error.retryable());
    assert!(
        error.to_string().contains("Artifactory answered 400"),
        "{error}"
    );
}

// === issue and use ===

#[tokio::test]
async fn an_issued_token_logs_in_as_the_pull_or_push_mappings_user() {
    let broker = Broker::start();
    let fake = start(&broker);
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    let credential = service
        .issue(
            grant(
                APP,
                &["repository:team-a/app:pull", "repository:lib:pull"],
                now,
            ),
            now,
        )
        .await
        .unwrap();
    assert!(!credential.reused);
    assert_eq!(credential.username, PULLER);
    // The grant ends before the token: the grant's time.
    assert_eq!(credential.expires_at, now + TTL);
    assert_eq!(credential.handle, CredentialHandle::new(0, PULLER, ""));
    let id = &credential.credential_id;
    assert!(
        id.starts_with("access token for svid-puller via provider svid-broker (federated jwt "),
        "{id}"
    );
    let token = credential.password.expose_secret();
    assert!(!id.contains(token));
    assert!(!format!("{credential:?}").contains(token));
    assert!(fake.authenticate(PULLER, token));
    let tokens = fake.tokens();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].mapping, "pull");
    assert_eq!(tokens[0].subject, APP);

    let pusher = service
        .issue(
            grant(
                APP,
                &["repository:team-a/app:pull", "repository:team-a/app:push"],
                now,
            ),
            now,
        )
        .await
        .unwrap();
    assert!(!pusher.reused);
    assert_eq!(pusher.username, PUSHER);
    assert!(fake.authenticate(PUSHER, pusher.password.expose_secret()));
    assert!(!fake.authenticate(PULLER, pusher.password.expose_secret()));

    let figures = service.figures();
    assert_eq!(figures.kind, "artifactory");
    assert_eq!(figures.credentials_created, 2);
    assert!(counted(&service, "exchange_oidc_token", "ok", 2));
    // The broker's discovery and JWKS were read once, then cached.
    assert_eq!((fake.discovery_fetches(), fake.jwks_fetches()), (1, 1));
}

#[tokio::test]
async fn a_subject_template_shapes_the_sub_the_mappings_see() {
    let broker = Broker::start();
    let fake = FakeArtifactory::start().unwrap();
    fake.add_provider(PROVIDER, broker.issuer.issuer(), None);
    let mut claims = Map::new();
    claims.insert(
        "sub".to_owned(),
        Value::from(format!("workload:{APP}:pull")),
    );
    map(&fake, "app", claims, "app-user", TOKEN_LIFE);
    let mut config = config(&fake, &broker);
    config.subject_template = "workload:{spiffe_id}:{access}".to_owned();
    "jfrog".clone_into(&mut config.audience);
    let service = service_with(config);
    let now = SystemTime::now();
    let credential = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    assert_eq!(credential.username, "app-user");
    assert_eq!(fake.tokens()[0].subject, format!("workload:{APP}:pull"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_issues_make_one_exchange_and_another_subject_a_second() {
    let broker = Broker::start();
    let fake = start(&broker);
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    let (usernames, fresh) = issue_a_thousand_at_once(&service, now).await;
    assert_eq!(fake.exchanges(), 1);
    assert_eq!(fresh, 1);
    assert_eq!(usernames, [PULLER]);

    // Another repository, the same access: the same token (registry-wide).
    reused_across_repositories_not_subjects(&service, now).await;
    assert_eq!(fake.exchanges(), 2);
    let figures = service.figures();
    assert_eq!(
        (figures.credentials_created, figures.credentials_reused),
        (2, 1000)
    );
}

// === what Artifactory refuses ===

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    let broker = Broker::start();
    let fake = start(&broker);
    let mut wrong = config(&fake, &broker);
    "https://someone-else.example.com".clone_into(&mut wrong.audience);
    rejected_saying(&issue_error(wrong, false).await, "Invalid audience");
    assert_eq!((fake.exchanges(), fake.refusals()), (0, 1));
}

#[tokio::test]
async fn a_token_from_an_issuer_the_integration_does_not_trust_is_refused() {
    let broker = Broker::start();
    let stranger = Broker::start();
    let fake = start(&broker);
    let error = issue_error(config(&fake, &stranger), false).await;
    rejected_saying(&error, "is not trusted");
    // Refused before anything was fetched.
    assert_eq!(fake.discovery_fetches(), 0);
}

#[tokio::test]
async fn a_token_no_identity_mapping_matches_is_refused() {
    let broker = Broker::start();
    let fake = FakeArtifactory::start().unwrap();
    fake.add_provider(PROVIDER, broker.issuer.issuer(), Some(fake.url()));
    // Only a push mapping: a pull grant's JWT matches nothing.
    map(&fake, "push", access("push"), PUSHER, TOKEN_LIFE);
    let error = issue_error(config(&fake, &broker), false).await;
    assert!(
        matches!(&error.failure, Failure::JwtRefused { message } if message.contains("no identity mapping matches")),
        "{:?}",
        error.failure
    );
    assert!(!error.retryable());
    assert!(
        error
            .to_string()
            .contains("Artifactory refused the broker's JWT"),
        "{error}"
    );
    assert_eq!(fake.refusals(), 1);
}

#[tokio::test]
async fn an_expired_jwt_is_refused() {
    let broker = Broker::start();
    let fake = start(&broker);
    // The broker signs at the real time with a 300 s life; Artifactory's clock is later.
    fake.advance_clock(Duration::from_secs(301));
    rejected_saying(&issue_error(config(&fake, &broker), false).await, "expired");
}

#[tokio::test]
async fn a_key_that_was_never_published_is_refused() {
    let broker = Broker::start();
    let fake = start(&broker);
    // The issuer signs with a new key the published JWKS does not hold.
    broker.sign_with_an_unpublished_key();
    let error = issue_error(config(&fake, &broker), false).await;
    rejected_saying(&error, "kid");
    // The unknown kid made the verifier refetch the JWKS once.
    assert_eq!(fake.jwks_fetches(), 1);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_by_refetching_the_jwks() {
    let broker = Broker::start();
    let fake = start(&broker);
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    // Rotation: a new key signs, the old one stays published.
    let (other, new_kid) =
        issue_across_a_rotation(&service, &broker, now, || fake.jwks_fetches()).await;
    assert_eq!(other.username, PULLER);
    assert_eq!(broker.issuer.signing_kid(), new_kid);
    assert_eq!(fake.jwks_fetches(), 2);
    assert_eq!(fake.exchanges(), 2);
}

// === faults ===

#[tokio::test]
async fn faults_fail_the_exchange_clearly_and_are_not_kept() {
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
                    message: "FORBIDDEN: injected fault".to_owned()
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
    ));
    check_failures(
        cases,
        |fault| fake.fail_next(fault, 1),
        async || issue_error(config(&fake, &broker), true).await,
    )
    .await;

    fake.fail_next(Fault::Status(503), 1);
    let error = issue_error(config(&fake, &broker), true).await;
    assert_eq!(error.failure, Failure::ServerError { status: 503 });
    assert!(error.retryable());

    fake.fail_next(Fault::Slow(Duration::from_secs(5)), 1);
    let mut impatient = config(&fake, &broker);
    impatient.request_deadline = IMPATIENT;
    timed_out(&issue_error(impatient, true).await, "Artifactory");
}

#[tokio::test]
async fn an_artifactory_that_is_down_is_unreachable() {
    let broker = Broker::start();
    let fake = start(&broker);
    let config = config(&fake, &broker);
    drop(fake);
    let error = issue_error(config, false).await;
    unreachable(&error);
}

// === expiry ===

#[tokio::test]
async fn a_token_outliving_the_grant_is_refused_and_not_handed_out() {
    let broker = Broker::start();
    let fake = FakeArtifactory::start().unwrap();
    fake.add_provider(PROVIDER, broker.issuer.issuer(), Some(fake.url()));
    // An hour, against a 300 s grant: nothing could end it at the policy's time.
    map(&fake, "pull", access("pull"), PULLER, 3600);
    let error = issue_error(config(&fake, &broker), false).await;
    assert_eq!(
        error.failure,
        Failure::OutlivesGrant {
            lives: Duration::from_secs(3600),
            granted: TTL,
        }
    );
    assert!(!error.retryable());
    assert!(
        error
            .to_string()
            .contains("lives 3600s, longer than the 300s the policy grants"),
        "{error}"
    );
    // Within the slack (a second-granular expires_in, clock differences) it is handed out.
    let fake = FakeArtifactory::start().unwrap();
    fake.add_provider(PROVIDER, broker.issuer.issuer(), Some(fake.url()));
    map(&fake, "pull", access("pull"), PULLER, TTL.as_secs() + 30);
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    let credential = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    assert_eq!(
        credential.expires_at,
        now + TTL,
        "the caller is told the grant's end"
    );
}

#[tokio::test]
async fn a_token_shorter_than_the_grant_expires_first_and_is_not_revoked() {
    let broker = Broker::start();
    let fake = FakeArtifactory::start().unwrap();
    fake.add_provider(PROVIDER, broker.issuer.issuer(), Some(fake.url()));
    map(&fake, "pull", access("pull"), PULLER, 60);
    let service = service_with(config(&fake, &broker));
    let clock = ManualClock::starting_now();
    let now = clock.now();
    let credential = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    // The token's own 60 s, not the grant's 300 s.
    assert_eq!(credential.expires_at, now + Duration::from_secs(60));
    let token = credential.password.expose_secret().to_owned();
    assert!(fake.authenticate(PULLER, &token));

    let (stop, runner) = spawn_run(&service, &clock);
    // Both clocks move: the broker signs its next JWT at its clock's time, which Artifactory
    // checks against its own.
    clock.advance(Duration::from_secs(60));
    fake.advance_clock(Duration::from_secs(60));
    assert!(eventually(|| service.figures().credentials_expired == 1).await);
    assert_eq!(service.figures().credentials_revoked, 0);
    // Artifactory ended it at its own time, and it is not handed out again: a new exchange.
    assert!(!fake.authenticate(PULLER, &token));
    let fresh = assert_not_handed_out_again_by_token(&service, &clock, &token).await;
    assert!(fake.authenticate(PULLER, &fresh));
    assert_eq!(fake.exchanges(), 2);
    stop_run(stop, runner).await;
}

/// The username is the mapping's, the same for every token: compare the tokens. Returns the
/// new one.
async fn assert_not_handed_out_again_by_token(
    service: &BackendService,
    clock: &ManualClock,
    token: &str,
) -> String {
    let later = clock.now();
    let fresh = service
        .issue(grant(APP, &["repository:team-a/app:pull"], later), later)
        .await
        .unwrap();
    assert!(!fresh.reused);
    assert_ne!(fresh.password.expose_secret(), token);
    fresh.password.expose_secret().to_owned()
}

#[tokio::test]
async fn revoking_does_nothing_and_succeeds() {
    let broker = Broker::start();
    let fake = start(&broker);
    let backend = ArtifactoryBackend::new(config(&fake, &broker)).unwrap();
    issue_then_revoke_twice(&backend).await;
    assert_eq!(fake.exchanges(), 1);
    assert_eq!(fake.api_calls(), 1);
}
