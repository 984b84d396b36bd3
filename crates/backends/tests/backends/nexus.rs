//! The Nexus backend and its service against the fake Nexus (crates/dev `fake::nexus`), which
//! enforces Nexus's own rules: Basic auth on every call, the `nx-users-*` privileges, the
//! create body's validation, duplicate ids, the case-insensitive prefix filter.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed step is a failed test"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use svid_broker_backends::{
    BackendError, BackendService, CredentialHandle, Failure, NexusBackend, NexusConfig,
};
use svid_broker_dev::fake::nexus::{FakeNexus, Fault, NexusSpec};
use svid_broker_identity::clock::Clock;
use svid_broker_identity::secret::{ExposeSecret as _, SecretString};

use crate::common::*;

const PULL_ROLE: &str = "docker-pull";
const PUSH_ROLE: &str = "docker-push";

fn start() -> FakeNexus {
    FakeNexus::start(
        NexusSpec::new([PULL_ROLE, PUSH_ROLE])
            .role(
                "broker-ops",
                &["nx-users-create", "nx-users-read", "nx-users-delete"],
            )
            .password_rule(12, "Password does not match corporate policy"),
    )
    .unwrap()
}

fn admin_config(fake: &FakeNexus) -> NexusConfig {
    let line = fake.admin_credential_line();
    let (user, password) = line.expose_secret().split_once(':').unwrap();
    NexusConfig::new(
        "corp",
        fake.url(),
        user,
        SecretString::from(password.to_owned()),
        PULL_ROLE,
        PUSH_ROLE,
    )
}

fn service_with(config: NexusConfig) -> BackendService {
    BackendService::new(
        Arc::new(NexusBackend::new(config).unwrap()),
        quick_service(),
    )
}

fn assert_names(error: &BackendError, step: &str) {
    assert_names_of("nexus", error, step);
}

// === issue and use ===

#[tokio::test]
async fn an_issued_user_logs_in_with_the_pull_or_push_role() {
    let fake = start();
    let service = service_with(admin_config(&fake));
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
    assert_eq!(credential.expires_at, now + TTL);
    let id = credential.username.clone();
    let revoke_unix = unix(now + TTL) + 1; // Rounded up (now has sub-second nanos).
    assert!(
        id.starts_with(&format!("svid-{revoke_unix}-"))
            || id.starts_with(&format!("svid-{}-", revoke_unix - 1)),
        "{id}"
    );
    assert_eq!(id.len(), "svid-".len() + 10 + 1 + 16);
    assert_eq!(credential.credential_id, format!("user {id}"));
    assert_eq!(credential.handle, CredentialHandle::new(0, id.clone(), ""));
    let password = credential.password.expose_secret();
    assert!(password.len() >= 32);
    assert!(!credential.credential_id.contains(password));
    assert!(!format!("{credential:?}").contains(password));
    assert!(fake.authenticate(&id, password));

    let users = fake.users();
    let user = users.iter().find(|u| u.user_id == id).unwrap();
    assert_eq!(user.roles, [PULL_ROLE]);
    assert_eq!(user.status, "active");
    assert_eq!(user.email, format!("{id}@svid-broker.invalid"));
    assert_eq!(user.first_name, "svid-broker");
    assert_eq!(user.last_name, APP);

    // Any push: the push role, a different user (the action set is the reuse key).
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
    assert_ne!(pusher.username, id);
    let users = fake.users();
    let user = users.iter().find(|u| u.user_id == pusher.username).unwrap();
    assert_eq!(user.roles, [PUSH_ROLE]);
    assert!(fake.authenticate(&pusher.username, pusher.password.expose_secret()));

    let figures = service.figures();
    assert_eq!(figures.kind, "nexus");
    assert_eq!(figures.credentials_created, 2);
    assert!(counted(&service, "create_user", "ok", 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_issues_make_one_user_and_another_subject_a_second() {
    let fake = start();
    let service = service_with(admin_config(&fake));
    let now = SystemTime::now();
    let (usernames, fresh) = issue_a_thousand_at_once(&service, now).await;
    assert_eq!(fake.users_created(), 1);
    assert_eq!(fresh, 1);
    assert_eq!(usernames.len(), 1);

    // Later, another repository with the same action set: the same user (registry-wide).
    let (again, _) = reused_across_repositories_not_subjects(&service, now).await;
    assert_eq!(again.username, usernames[0]);
    assert_eq!(fake.users_created(), 2);
    let figures = service.figures();
    assert_eq!(
        (figures.credentials_created, figures.credentials_reused),
        (2, 1000)
    );
}

#[tokio::test]
async fn run_deletes_the_user_at_its_time_and_it_can_no_longer_log_in() {
    let fake = start();
    let service = service_with(admin_config(&fake));
    let clock = ManualClock::starting_now();
    let now = clock.now();
    let credential = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    let (stop, runner) = spawn_run(&service, &clock);
    clock.advance(TTL - Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(fake.users_deleted(), 0);
    assert!(fake.authenticate(&credential.username, credential.password.expose_secret()));

    clock.advance(Duration::from_secs(1));
    assert!(eventually(|| fake.users_deleted() == 1).await);
    assert!(eventually(|| service.figures().credentials_revoked == 1).await);
    assert!(!fake.authenticate(&credential.username, credential.password.expose_secret()));
    assert!(
        fake.users()
            .iter()
            .all(|u| u.user_id != credential.username)
    );
    // And it is not handed out again.
    assert_not_handed_out_again(&service, &clock, &credential).await;
    stop_run(stop, runner).await;
}

#[tokio::test]
async fn revoking_a_user_already_gone_succeeds() {
    let fake = start();
    issue_then_revoke_twice(&NexusBackend::new(admin_config(&fake)).unwrap()).await;
    assert_eq!(fake.users_deleted(), 1);
}

// === sweeping ===

#[tokio::test]
async fn after_a_restart_the_sweeper_deletes_only_the_expired_broker_user() {
    let fake = start();
    let clock = ManualClock::starting_now();
    let now = clock.now();
    fake.add_user("alice", "Alice-password-1", &[PULL_ROLE])
        .unwrap();
    fake.add_user("svid-ci", "Ci-password-123", &[PUSH_ROLE])
        .unwrap();
    // The filter ignores case; the sweeper must not.
    let shouting = format!("SVID-{}-deadbeef00000000", unix(now) - 10);
    fake.add_user(&shouting, "Shout-password-1", &[PULL_ROLE])
        .unwrap();
    let (expired, unexpired) = credentials_of_a_service_that_never_ran(
        service_with(admin_config(&fake)),
        now,
        "repository:team-b/app:push",
    )
    .await;
    clock.advance(TTL + Duration::from_secs(1));

    let new = service_with(admin_config(&fake));
    // Nexus users are registry-wide: one (empty) namespace turns the sweeper on.
    new.set_sweep_projects(vec![String::new()]);
    let (stop, runner) = spawn_run(&new, &clock);
    assert!(eventually(|| fake.users_deleted() == 1).await);
    assert!(eventually(|| new.figures().credentials_swept == 1).await);
    let left: Vec<String> = fake.users().into_iter().map(|u| u.user_id).collect();
    assert_same_names(
        left,
        vec![
            "admin".to_owned(),
            "alice".to_owned(),
            "svid-ci".to_owned(),
            shouting,
            unexpired.username.clone(),
        ],
    );
    assert!(!fake.authenticate(&expired.username, expired.password.expose_secret()));
    assert!(fake.authenticate(&unexpired.username, unexpired.password.expose_secret()));
    stop_run(stop, runner).await;
}

#[tokio::test]
async fn a_listing_over_the_cap_is_split_by_prefix_and_read_whole() {
    let fake = start();
    let now = SystemTime::now();
    for i in 0..30u64 {
        let at = 1_700_000_000 + i * 1_000_000;
        fake.add_user(
            &format!("svid-{at}-{i:016x}"),
            "Old-password-12",
            &[PULL_ROLE],
        )
        .unwrap();
    }
    let future = unix(now) + 100_000;
    for i in 0..3u64 {
        fake.add_user(
            &format!("svid-{future}-{i:016x}"),
            "New-password-12",
            &[PULL_ROLE],
        )
        .unwrap();
        fake.add_user(&format!("svid-keep-{i}"), "Keep-password-1", &[PULL_ROLE])
            .unwrap();
    }
    let mut config = admin_config(&fake);
    // About eight users per answer: the first listing, and some of its parts, are too large.
    config.max_response_bytes = 2048;
    let backend = NexusBackend::new(config).unwrap();
    let report = backend.sweep(&[String::new()], now).await.unwrap();
    assert!(
        report.failures.is_empty() && report.truncated.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.namespaces_listed, 1);
    // The first answer was too large; its parts only follow the broker's id shape, so the
    // `svid-keep-*` users drop out of view (they are not the broker's anyway).
    assert_eq!(report.credentials_seen, 33);
    assert_eq!((report.deleted, report.not_due), (30, 3));
    assert_eq!(fake.users().len(), 1 + 6);
}

#[tokio::test]
async fn a_listing_that_never_fits_is_reported_truncated() {
    let fake = start();
    let now = SystemTime::now();
    fake.add_user(
        &format!("svid-{}-{:016x}", unix(now) - 5, 1),
        "Old-password-12",
        &[PULL_ROLE],
    )
    .unwrap();
    let mut config = admin_config(&fake);
    config.max_response_bytes = 64;
    let backend = NexusBackend::new(config).unwrap();
    let report = backend.sweep(&[], now).await.unwrap();
    assert_eq!(report.deleted, 0);
    assert!(!report.truncated.is_empty(), "{report:?}");
    assert!(report.truncated.iter().all(|f| f.starts_with("svid-")));
    assert_eq!(fake.users_deleted(), 0);
}

#[tokio::test]
async fn sweep_failures_name_the_step() {
    let fake = start();
    let backend = NexusBackend::new(admin_config(&fake)).unwrap();
    fake.fail_next(Fault::Status(500), 1);
    let error = backend.sweep(&[], SystemTime::now()).await.unwrap_err();
    assert_names(&error, "list users");
    assert_eq!(error.failure, Failure::ServerError { status: 500 });
    fake.fail_next(Fault::Malformed, 1);
    let error = backend.sweep(&[], SystemTime::now()).await.unwrap_err();
    assert!(
        matches!(error.failure, Failure::Malformed { .. }),
        "{error}"
    );
}

// === failures ===

/// The error of one issue through a new service; then, when `then_ok`, checks that the error
/// was not kept (with the fault used up, the next request succeeds).
async fn issue_error(config: NexusConfig, then_ok: bool) -> BackendError {
    let service = service_with(config);
    crate::common::issue_error(&service, "nexus", "create user \"svid-", then_ok).await
}

#[tokio::test]
async fn every_failure_names_the_registry_and_the_step() {
    let fake = start();
    let cases = failure_table(
        Fault::Hangup,
        Fault::Status,
        Fault::Malformed,
        Some(|error| {
            assert_eq!(
                error.failure,
                Failure::Forbidden {
                    message: String::new()
                }
            );
        }),
        |error| {
            assert_eq!(
                error.failure,
                Failure::Rejected {
                    status: 400,
                    message: "injected fault".to_owned()
                }
            );
        },
    );
    check_failures(
        cases,
        |fault| fake.fail_next(fault, 1),
        async || issue_error(admin_config(&fake), true).await,
    )
    .await;

    fake.fail_next(Fault::Slow(Duration::from_secs(5)), 1);
    let mut impatient = admin_config(&fake);
    impatient.request_deadline = IMPATIENT;
    timed_out(&issue_error(impatient, true).await, "Nexus");
}

#[tokio::test]
async fn a_wrong_password_or_a_registry_that_is_down_fails_clearly() {
    let fake = start();
    let mut wrong = admin_config(&fake);
    wrong.password = SecretString::from("not-the-password".to_owned());
    let error = issue_error(wrong.clone(), false).await;
    assert_eq!(error.failure, Failure::Unauthorized);
    assert!(!error.to_string().contains("not-the-password"));

    let url = fake.url();
    drop(fake);
    let mut down = wrong;
    down.url = url;
    let error = issue_error(down, false).await;
    assert_eq!(error.failure, Failure::Unreachable { during: "connect" });
}

#[tokio::test]
async fn an_account_without_the_user_privileges_is_forbidden_and_one_with_them_works() {
    let fake = start();
    fake.add_user("puller", "Puller-password-1", &[PULL_ROLE])
        .unwrap();
    fake.add_user("broker", "Broker-password-1", &["broker-ops"])
        .unwrap();
    let account = |user: &str, password: &str| {
        let mut config = admin_config(&fake);
        config.username = user.to_owned();
        config.password = SecretString::from(password.to_owned());
        config
    };
    let error = issue_error(account("puller", "Puller-password-1"), false).await;
    assert_eq!(
        error.failure,
        Failure::Forbidden {
            message: String::new()
        }
    );
    assert!(
        error.to_string().ends_with("Nexus answered 403 Forbidden"),
        "{error}"
    );
    let backend = NexusBackend::new(account("puller", "Puller-password-1")).unwrap();
    let error = backend.sweep(&[], SystemTime::now()).await.unwrap_err();
    assert_names(&error, "list users");
    assert_eq!(fake.users_created(), 0);

    // The operator's limited account: create, list and delete, nothing more.
    let config = account("broker", "Broker-password-1");
    let service = service_with(config.clone());
    let now = SystemTime::now();
    let credential = service
        .issue(grant(APP, &["repository:team-a/app:push"], now), now)
        .await
        .unwrap();
    assert!(fake.authenticate(&credential.username, credential.password.expose_secret()));
    let backend = NexusBackend::new(config).unwrap();
    let report = backend
        .sweep(&[], now + TTL + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        (report.deleted, report.failures.len()),
        (1, 0),
        "{report:?}"
    );
}

#[tokio::test]
async fn nexus_validation_errors_reach_the_message() {
    // A Nexus whose password rule the broker's passwords cannot meet: Nexus's own message.
    let fake = FakeNexus::start(
        NexusSpec::new([PULL_ROLE, PUSH_ROLE])
            .password_rule(64, "Password does not match corporate policy"),
    )
    .unwrap();
    let error = issue_error(admin_config(&fake), false).await;
    assert_eq!(
        error.failure,
        Failure::Rejected {
            status: 400,
            message: "Password does not match corporate policy".to_owned()
        }
    );
    assert_eq!(fake.users_created(), 0);
}

#[tokio::test]
async fn a_role_typo_is_not_caught_by_nexus() {
    // Nexus stores unknown role ids unchecked and drops them when it reads the user: the user
    // logs in but holds nothing. This test pins that behaviour (a gap the operator must mind).
    let fake = start();
    let mut config = admin_config(&fake);
    config.pull_role = "docker-pul".to_owned();
    let backend = NexusBackend::new(config).unwrap();
    let now = SystemTime::now();
    let credential = backend
        .issue(&grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    let users = fake.users();
    let user = users
        .iter()
        .find(|u| u.user_id == credential.username)
        .unwrap();
    assert!(user.roles.is_empty());
    assert_eq!(user.requested_roles, ["docker-pul"]);
}

#[tokio::test]
async fn grants_nexus_cannot_serve_make_no_api_call() {
    let fake = start();
    let service = service_with(admin_config(&fake));
    let now = SystemTime::now();
    let error = service
        .issue(grant(APP, &["repository:team-a/app:delete"], now), now)
        .await
        .unwrap_err();
    assert_names(&error, "map the grant");
    assert_eq!(
        error.failure,
        Failure::UnsupportedAction {
            action: "delete".to_owned()
        }
    );
    let error = service
        .issue(grant(APP, &["registry:catalog:*"], now), now)
        .await
        .unwrap_err();
    assert!(
        matches!(error.failure, Failure::UnsupportedResource { .. }),
        "{error}"
    );
    let error = service.issue(grant(APP, &[], now), now).await.unwrap_err();
    assert_eq!(error.failure, Failure::NoRepository);
    let mut expired = grant(APP, &["repository:team-a/app:pull"], now);
    expired.revoke_at = now;
    let error = service.issue(expired, now).await.unwrap_err();
    assert_eq!(error.failure, Failure::GrantExpired);
    assert_eq!(fake.api_calls(), 0);
}

#[tokio::test]
async fn a_failed_delete_names_the_user_and_run_retries_it() {
    let fake = start();
    let backend = NexusBackend::new(admin_config(&fake)).unwrap();
    let now = SystemTime::now();
    let credential = backend
        .issue(&grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    fake.fail_next(Fault::Status(503), 1);
    let error = backend.revoke(&credential.handle).await.unwrap_err();
    assert_names(&error, &format!("delete user {:?}", credential.username));
    assert_eq!(error.failure, Failure::ServerError { status: 503 });
    assert!(error.retryable());

    let service = service_with(admin_config(&fake));
    let clock = ManualClock::starting_now();
    let now = clock.now();
    let second = service
        .issue(grant(OTHER, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    let (stop, runner) = spawn_run(&service, &clock);
    fake.fail_next(Fault::Hangup, 1);
    clock.advance(TTL);
    assert!(eventually(|| service.figures().revoke_failures == 1).await);
    assert!(fake.authenticate(&second.username, second.password.expose_secret()));
    // The first retry waits a second (of the injected clock).
    clock.advance(Duration::from_secs(1));
    assert!(eventually(|| service.figures().credentials_revoked == 1).await);
    assert!(!fake.authenticate(&second.username, second.password.expose_secret()));
    assert!(
        service
            .figures()
            .api_requests
            .iter()
            .any(|c| (c.step, c.outcome) == ("delete_user", "unreachable"))
    );
    stop_run(stop, runner).await;
}
