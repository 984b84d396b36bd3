//! The Harbor backend and its service against the fake Harbor (crates/dev `fake::harbor`),
//! which enforces Harbor's own rules: robot names, permission subsets for manager robots,
//! paging limits, and tokens from `/service/token` for the robots it holds.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed step is a failed test"
)]

use std::time::{Duration, SystemTime};

use http::Method;
use svid_broker_backends::http::{ApiClient, ClientSettings};
use svid_broker_backends::{
    BackendCredential, BackendError, BackendService, CredentialHandle, Failure, HarborBackend,
    HarborConfig,
};
use svid_broker_dev::fake::harbor::{FakeHarbor, Fault, HarborSpec};
use svid_broker_identity::clock::Clock;
use svid_broker_identity::secret::{ExposeSecret as _, SecretString};

use crate::common::*;

fn start() -> FakeHarbor {
    FakeHarbor::start(HarborSpec::new(["team-a", "team-b"])).unwrap()
}

fn admin_config(fake: &FakeHarbor) -> HarborConfig {
    let line = fake.admin_credential_line();
    let (user, password) = line.expose_secret().split_once(':').unwrap();
    HarborConfig::new(
        "corp",
        fake.url(),
        user,
        SecretString::from(password.to_owned()),
    )
}

fn service_with(config: HarborConfig) -> BackendService {
    BackendService::harbor(config, quick_service()).unwrap()
}

/// Asks the fake's token service for `scope` as `credential`; the actions granted.
async fn token_actions(
    fake: &FakeHarbor,
    username: &str,
    password: &SecretString,
    scope: &str,
) -> Vec<String> {
    let client =
        ApiClient::new(&ClientSettings::new(fake.url(), username, password.clone())).unwrap();
    let scope = svid_broker_backends::http::encode_query_component(scope);
    let response = client
        .send(
            Method::GET,
            &format!("/service/token?service={}&scope={scope}", fake.service()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    token_body_actions(&response.body)
}

async fn credential_actions(
    fake: &FakeHarbor,
    credential: &BackendCredential,
    scope: &str,
) -> Vec<String> {
    token_actions(fake, &credential.username, &credential.password, scope).await
}

fn assert_names(error: &BackendError, step: &str) {
    assert_names_of("harbor", error, step);
}

// === issue and use ===

#[tokio::test]
async fn an_issued_robot_works_at_the_token_service() {
    let fake = start();
    let service = service_with(admin_config(&fake));
    let now = SystemTime::now();
    let credential = service
        .issue(grant(APP, &["repository:team-a/app:pull,push"], now), now)
        .await
        .unwrap();
    assert!(!credential.reused);
    assert_eq!(credential.expires_at, now + TTL);
    assert!(
        credential.username.starts_with("robot$team-a+svid-"),
        "{}",
        credential.username
    );

    let mut actions =
        credential_actions(&fake, &credential, "repository:team-a/app:pull,push").await;
    actions.sort();
    assert!(
        actions.contains(&"pull".to_owned()) && actions.contains(&"push".to_owned()),
        "{actions:?}"
    );
    // Harbor robots are project-wide: another repository of the project works too, another
    // project does not.
    assert!(
        !credential_actions(&fake, &credential, "repository:team-a/lib:pull")
            .await
            .is_empty()
    );
    assert!(
        credential_actions(&fake, &credential, "repository:team-b/app:pull")
            .await
            .is_empty()
    );

    let robots = fake.robots();
    assert_eq!(robots.len(), 1);
    let robot = &robots[0];
    assert_eq!(robot.name, credential.username);
    assert_eq!(
        credential.credential_id,
        format!("robot {} {}", robot.id, robot.name)
    );
    assert_eq!(
        credential.handle,
        CredentialHandle::new(robot.id, robot.name.clone(), "team-a")
    );
    assert_eq!(robot.project.as_deref(), Some("team-a"));
    assert!(
        robot
            .description
            .starts_with(&format!("svid-broker: {APP} until ")),
        "{}",
        robot.description
    );
    let mut access = robot.access.clone();
    access.sort();
    assert_eq!(
        access,
        [
            ("repository".to_owned(), "pull".to_owned()),
            ("repository".to_owned(), "push".to_owned())
        ]
    );
    // Harbor's one-day floor; the broker's delete is the real end.
    assert_eq!(robot.expires_at - robot.creation_time, 86_400, "{robot:?}");
    assert!(
        !credential
            .credential_id
            .contains(credential.password.expose_secret())
    );

    let figures = service.figures();
    assert_eq!(figures.credentials_created, 1);
    assert!(counted(&service, "create_robot", "ok", 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_issues_make_one_robot_and_another_subject_a_second() {
    let fake = start();
    let service = service_with(admin_config(&fake));
    let now = SystemTime::now();
    let (usernames, fresh) = issue_a_thousand_at_once(&service, now).await;
    assert_eq!(fake.robots_created(), 1);
    assert_eq!(fresh, 1);
    assert_eq!(usernames.len(), 1);

    // Later, the same subject and grant: the same robot again.
    let later = now + Duration::from_secs(60);
    let again = service
        .issue(grant(APP, &["repository:team-a/other:pull"], later), later)
        .await
        .unwrap();
    assert!(again.reused);
    assert_eq!(again.username, usernames[0]);
    assert_eq!(fake.robots_created(), 1);

    let other = service
        .issue(grant(OTHER, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    assert!(!other.reused);
    assert_ne!(other.username, usernames[0]);
    assert_eq!(fake.robots_created(), 2);
    let figures = service.figures();
    assert_eq!(
        (figures.credentials_created, figures.credentials_reused),
        (2, 1000)
    );
}

#[tokio::test]
async fn a_withdrawn_robot_is_deleted_now_and_never_handed_out_again() {
    // What the server does when it cannot audit an issuance: the caller never got the robot.
    let fake = start();
    let service = service_with(admin_config(&fake));
    let clock = ManualClock::starting_now();
    let now = clock.now();
    let withdrawn = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    let (stop, runner) = spawn_run(&service, &clock);
    service.withdraw(&withdrawn, now);
    assert!(
        eventually(|| fake.robots_deleted() == 1).await,
        "deleted before its time"
    );
    assert!(fake.robots().is_empty());
    let fresh = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    assert!(!fresh.reused);
    assert_ne!(fresh.username, withdrawn.username);
    assert_eq!(fake.robots_created(), 2);
    stop_run(stop, runner).await;
}

#[tokio::test]
async fn run_deletes_the_robot_at_its_time() {
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
    assert_eq!(fake.robots_deleted(), 0);
    assert_eq!(fake.robots().len(), 1);

    clock.advance(Duration::from_secs(1));
    assert!(eventually(|| fake.robots_deleted() == 1).await);
    assert!(fake.robots().is_empty());
    assert!(eventually(|| service.figures().credentials_revoked == 1).await);
    // Harbor answers a deleted robot with a token that grants nothing.
    assert!(
        credential_actions(&fake, &credential, "repository:team-a/app:pull")
            .await
            .is_empty()
    );
    // And it is not handed out again.
    assert_not_handed_out_again(&service, &clock, &credential).await;

    stop_run(stop, runner).await;
}

#[tokio::test]
async fn revoking_a_robot_already_gone_succeeds() {
    let fake = start();
    issue_then_revoke_twice(&HarborBackend::new(admin_config(&fake)).unwrap()).await;
    assert_eq!(fake.robots_deleted(), 1);
}

// === sweeping ===

#[tokio::test]
async fn after_a_restart_the_sweeper_deletes_only_the_expired_broker_robots() {
    let fake = start();
    let clock = ManualClock::starting_now();
    let now = clock.now();
    let ci = fake
        .add_robot("team-a", "ci-bot", &[("repository", "pull")], 30)
        .unwrap();
    let lookalike = fake
        .add_robot("team-a", "svid-ci", &[("repository", "pull")], 30)
        .unwrap();
    let (expired, unexpired) = credentials_of_a_service_that_never_ran(
        service_with(admin_config(&fake)),
        now,
        "repository:team-b/app:pull",
    )
    .await;
    clock.advance(TTL + Duration::from_secs(1));

    let new = service_with(admin_config(&fake));
    new.set_sweep_projects(vec!["team-a".to_owned(), "team-b".to_owned()]);
    let (stop, runner) = spawn_run(&new, &clock);
    assert!(eventually(|| fake.robots_deleted() == 1).await);
    assert!(eventually(|| new.figures().credentials_swept == 1).await);
    let left: Vec<String> = fake.robots().into_iter().map(|r| r.name).collect();
    assert_same_names(
        left.clone(),
        vec![ci.name, lookalike.name, unexpired.username],
    );
    assert!(!left.contains(&expired.username));
    stop_run(stop, runner).await;
}

#[tokio::test]
async fn after_a_restart_a_policy_naming_no_project_sweeps_the_projects_it_can_see() {
    // The policy reaches projects only through a template (`team-{ns}/**`): the new service
    // is told no project, and finds the old robot by listing the projects it can see.
    let fake = start();
    let clock = ManualClock::starting_now();
    let now = clock.now();
    let expired = {
        let old = service_with(admin_config(&fake));
        old.issue(grant(APP, &["repository:team-b/app:pull"], now), now)
            .await
            .unwrap()
    };
    clock.advance(TTL + Duration::from_secs(1));
    let new = service_with(admin_config(&fake));
    let (stop, runner) = spawn_run(&new, &clock);
    // Without the listing nothing is swept: the policy names no project.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(fake.robots_deleted(), 0);
    new.set_sweep_visible(true);
    assert!(eventually(|| fake.robots_deleted() == 1).await);
    assert!(!fake.robots().iter().any(|r| r.name == expired.username));
    stop_run(stop, runner).await;
}

#[tokio::test]
async fn a_running_service_sweeps_the_projects_it_made_robots_in() {
    // A robot whose queued revocation is lost (the queue holds none) is still swept while
    // this service runs, in the project it was made in, whatever the policy names.
    let fake = start();
    let clock = ManualClock::starting_now();
    let now = clock.now();
    let mut config = quick_service();
    config.max_queued_revocations = 0;
    let service = BackendService::harbor(admin_config(&fake), config).unwrap();
    let robot = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    let (stop, runner) = spawn_run(&service, &clock);
    clock.advance(TTL + Duration::from_secs(1));
    // A sweep is asked for (as a policy reload does); no project is named.
    service.set_sweep_projects(Vec::new());
    assert!(eventually(|| fake.robots_deleted() == 1).await);
    assert!(!fake.robots().iter().any(|r| r.name == robot.username));
    assert_eq!(service.figures().credentials_swept, 1);
    stop_run(stop, runner).await;
}

#[tokio::test]
async fn a_sweep_reads_every_page_before_deleting() {
    let fake = start();
    let backend = HarborBackend::new(admin_config(&fake)).unwrap();
    let now = SystemTime::now();
    let past = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 10;
    for i in 0..130u64 {
        fake.add_robot(
            "team-a",
            &format!("svid-{past}-{i:016x}"),
            &[("repository", "pull")],
            1,
        )
        .unwrap();
    }
    for i in 0..5u64 {
        let future = past + 100_000;
        fake.add_robot(
            "team-a",
            &format!("svid-{future}-{i:016x}"),
            &[("repository", "pull")],
            1,
        )
        .unwrap();
        fake.add_robot("team-a", &format!("keep-{i}"), &[("repository", "pull")], 1)
            .unwrap();
    }
    let report = backend
        .sweep(&["team-a".to_owned(), "team-b".to_owned()], now)
        .await
        .unwrap();
    assert_clean_sweep(&report, 2, 140, 130, 5);
    assert_eq!(fake.robots().len(), 10);
}

#[tokio::test]
async fn sweep_failures_name_the_project_and_the_step() {
    let fake = start();
    let backend = HarborBackend::new(admin_config(&fake)).unwrap();
    let now = SystemTime::now();
    let error = backend.sweep(&["nope".to_owned()], now).await.unwrap_err();
    assert_names(&error, "look up project \"nope\"");
    assert_eq!(error.failure, Failure::NoSuchProject);

    fake.fail_next(Fault::Status(500), 1);
    let error = backend
        .sweep(&["team-a".to_owned()], now)
        .await
        .unwrap_err();
    assert_names(&error, "look up project \"team-a\"");
    assert_eq!(error.failure, Failure::ServerError { status: 500 });

    // One project failing does not stop the others.
    assert_one_failing_namespace_does_not_stop_the_others(&backend, "nope", "team-a", now).await;
}

// === failures ===

/// The error of one issue through a new service; then, when `then_ok`, checks that the error
/// was not kept (with the fault used up, the next request succeeds).
async fn issue_error(config: HarborConfig, then_ok: bool) -> BackendError {
    let service = service_with(config);
    crate::common::issue_error(
        &service,
        "harbor",
        "create robot in project \"team-a\": ",
        then_ok,
    )
    .await
}

#[tokio::test]
async fn every_failure_names_the_registry_and_the_step() {
    let fake = start();
    let cases = failure_table(
        Fault::Hangup,
        Fault::Status,
        Fault::Malformed,
        Some(forbidden),
        rejected_400,
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
    timed_out(&issue_error(impatient, true).await, "Harbor");
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
    let service = service_with(down);
    let now = SystemTime::now();
    let error = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap_err();
    assert_names(&error, "create robot in project \"team-a\"");
    assert_eq!(error.failure, Failure::Unreachable { during: "connect" });
}

#[tokio::test]
async fn grants_harbor_cannot_serve_make_no_api_call() {
    let fake = start();
    let service = service_with(admin_config(&fake));
    let now = SystemTime::now();
    let error = service
        .issue(
            grant(
                APP,
                &["repository:team-a/app:pull", "repository:team-b/app:pull"],
                now,
            ),
            now,
        )
        .await
        .unwrap_err();
    assert_names(&error, "map the grant");
    assert!(matches!(error.failure, Failure::GrantSpansProjects { .. }));
    let error = service
        .issue(grant(APP, &["repository:team-a/app:delete"], now), now)
        .await
        .unwrap_err();
    assert_eq!(
        error.failure,
        Failure::UnsupportedAction {
            action: "delete".to_owned()
        }
    );
    assert_eq!(fake.api_calls(), 0);
}

// === a manager robot instead of the admin ===

#[tokio::test]
async fn a_manager_robot_can_make_robots_within_its_own_permissions() {
    let fake = start();
    let manager = fake
        .add_robot(
            "team-a",
            "broker",
            &[
                ("repository", "pull"),
                ("repository", "push"),
                ("robot", "create"),
                ("robot", "list"),
                ("robot", "delete"),
            ],
            -1,
        )
        .unwrap();
    let mut config = admin_config(&fake);
    config.username = manager.name.clone();
    config.password = manager.secret;
    let service = service_with(config.clone());
    let now = SystemTime::now();
    let credential = service
        .issue(grant(APP, &["repository:team-a/app:pull,push"], now), now)
        .await
        .unwrap();
    let actions = credential_actions(&fake, &credential, "repository:team-a/app:pull,push").await;
    assert!(actions.contains(&"push".to_owned()), "{actions:?}");

    // Another project is beyond it.
    let error = service
        .issue(grant(APP, &["repository:team-b/app:pull"], now), now)
        .await
        .unwrap_err();
    assert_names(&error, "create robot in project \"team-b\"");
    assert!(
        matches!(error.failure, Failure::Forbidden { .. }),
        "{error}"
    );

    // It can sweep its project too (look up, list, delete).
    let backend = HarborBackend::new(config).unwrap();
    let report = backend
        .sweep(&["team-a".to_owned()], now + TTL + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        (report.deleted, report.failures.len()),
        (1, 0),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_manager_robot_asked_for_more_than_it_holds_is_forbidden() {
    let fake = start();
    let manager = fake
        .add_robot(
            "team-a",
            "puller",
            &[("repository", "pull"), ("robot", "create")],
            -1,
        )
        .unwrap();
    let mut config = admin_config(&fake);
    config.username = manager.name;
    config.password = manager.secret;
    let service = service_with(config);
    let now = SystemTime::now();
    service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    let error = service
        .issue(grant(OTHER, &["repository:team-a/app:pull,push"], now), now)
        .await
        .unwrap_err();
    assert_names(&error, "create robot in project \"team-a\"");
    match &error.failure {
        Failure::Forbidden { message } => {
            assert!(message.contains("permission scope is invalid"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.robots_created(), 1);
}

#[tokio::test]
async fn a_failed_delete_names_the_robot_and_run_retries_it() {
    let fake = start();
    let backend = HarborBackend::new(admin_config(&fake)).unwrap();
    let now = SystemTime::now();
    let credential = backend
        .issue(&grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    fake.fail_next(Fault::Status(503), 1);
    let error = backend.revoke(&credential.handle).await.unwrap_err();
    assert_names(
        &error,
        &format!(
            "delete robot {} {:?}",
            credential.handle.id, credential.username
        ),
    );
    assert_eq!(error.failure, Failure::ServerError { status: 503 });
    assert!(error.retryable());

    let service = service_with(admin_config(&fake));
    let clock = ManualClock::starting_now();
    let now = clock.now();
    service
        .issue(grant(OTHER, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    let (stop, runner) = spawn_run(&service, &clock);
    fake.fail_next(Fault::Hangup, 1);
    clock.advance(TTL);
    assert!(eventually(|| service.figures().revoke_failures == 1).await);
    assert_eq!(fake.robots().len(), 2);
    // The first retry waits a second (of the injected clock).
    clock.advance(Duration::from_secs(1));
    assert!(eventually(|| service.figures().credentials_revoked == 1).await);
    assert_eq!(fake.robots().len(), 1);
    let figures = service.figures();
    assert!(
        figures
            .api_requests
            .iter()
            .any(|c| (c.step, c.outcome) == ("delete_robot", "unreachable"))
    );
    stop_run(stop, runner).await;
}
