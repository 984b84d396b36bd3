//! The GitLab backend and its service against the fake GitLab (crates/dev `fake::gitlab`),
//! which enforces GitLab's own rules: `PRIVATE-TOKEN` on every call, projects by encoded path,
//! the Maintainer role for deploy tokens, scopes and `expires_at` validation, paging limits.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed step is a failed test"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;
use svid_broker_backends::http::{ApiClient, ClientSettings, encode_query_component};
use svid_broker_backends::{
    BackendError, BackendService, CredentialHandle, Failure, GitlabBackend, GitlabConfig,
};
use svid_broker_dev::fake::gitlab::{FakeGitlab, Fault, GitlabSpec, Role};
use svid_broker_identity::clock::Clock;
use svid_broker_identity::secret::{ExposeSecret as _, SecretString};

use crate::common::*;

fn start() -> FakeGitlab {
    FakeGitlab::start(GitlabSpec::new(["team-a/app", "team-b/web"])).unwrap()
}

fn admin_config(fake: &FakeGitlab) -> GitlabConfig {
    GitlabConfig::new("corp", fake.url(), fake.admin_token())
}

fn service_with(config: GitlabConfig) -> BackendService {
    BackendService::new(
        Arc::new(GitlabBackend::new(config).unwrap()),
        quick_service(),
    )
}

/// Asks the fake's registry token service (`/jwt/auth`) for `scope` with a deploy token's
/// username and value: the actions granted, or `None` when it answers 401.
async fn registry_actions(
    fake: &FakeGitlab,
    username: &str,
    password: &SecretString,
    scope: &str,
) -> Option<Vec<String>> {
    let client =
        ApiClient::new(&ClientSettings::new(fake.url(), username, password.clone())).unwrap();
    let path = format!(
        "/jwt/auth?service=container_registry&scope={}",
        encode_query_component(scope)
    );
    let response = client.send(Method::GET, &path, None).await.unwrap();
    if response.status == 401 {
        return None;
    }
    assert_eq!(response.status, 200);
    Some(token_body_actions(&response.body))
}

fn assert_names(error: &BackendError, step: &str) {
    assert_names_of("gitlab", error, step);
}

// === issue ===

#[tokio::test]
async fn a_pull_grant_makes_a_read_registry_token_expiring_at_the_revocation_second() {
    let fake = start();
    let service = service_with(admin_config(&fake));
    // A revocation time with a fraction of a second, to see the rounding.
    let now = UNIX_EPOCH + Duration::from_millis(unix(SystemTime::now()) * 1000 + 250);
    let credential = service
        .issue(grant(APP, &["repository:team-a/app/web:pull"], now), now)
        .await
        .unwrap();
    assert!(!credential.reused);
    assert_eq!(credential.expires_at, now + TTL);
    let revoke_unix = unix(now + TTL) + 1;

    let tokens = fake.deploy_tokens();
    assert_eq!(tokens.len(), 1);
    let token = &tokens[0];
    assert_eq!(token.project, "team-a/app");
    assert_eq!(token.scopes, ["read_registry"]);
    assert_eq!(token.expires_at, Some(i64::try_from(revoke_unix).unwrap()));
    let prefix = format!("svid-{revoke_unix}-");
    assert!(token.name.starts_with(&prefix), "{}", token.name);
    assert_eq!(token.name.len(), prefix.len() + 16);
    // The username says what the token is; the password is the token GitLab showed once.
    assert_eq!(token.username, token.name);
    assert_eq!(credential.username, token.name);
    assert!(credential.password.expose_secret().starts_with("gldt-"));
    assert_eq!(
        credential.credential_id,
        format!("deploy token {} {} of team-a/app", token.id, token.name)
    );
    assert_eq!(
        credential.handle,
        CredentialHandle::new(token.id, token.name.clone(), "team-a/app")
    );
    assert!(
        !format!("{credential:?} {}", credential.credential_id)
            .contains(credential.password.expose_secret())
    );

    let figures = service.figures();
    assert_eq!(figures.credentials_created, 1);
    assert!(counted(&service, "create_deploy_token", "ok", 1));
}

#[tokio::test]
async fn a_push_grant_adds_write_registry_and_the_project_itself_is_an_image() {
    let fake = start();
    let backend = GitlabBackend::new(admin_config(&fake)).unwrap();
    let now = SystemTime::now();
    let credential = backend
        .issue(
            &grant(
                APP,
                &[
                    "repository:team-b/web:push",
                    "repository:team-b/web/cache:pull",
                ],
                now,
            ),
            now,
        )
        .await
        .unwrap();
    let tokens = fake.deploy_tokens();
    assert_eq!(tokens[0].project, "team-b/web");
    assert_eq!(tokens[0].scopes, ["read_registry", "write_registry"]);
    assert_eq!(credential.handle.namespace, "team-b/web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_issues_make_one_token_and_another_subject_a_second() {
    let fake = start();
    let service = service_with(admin_config(&fake));
    let now = SystemTime::now();
    let (usernames, fresh) = issue_a_thousand_at_once(&service, now).await;
    assert_eq!(fake.tokens_created(), 1);
    assert_eq!(fresh, 1);
    assert_eq!(usernames.len(), 1);

    // Later, another image of the same project and the same scopes: the same token again.
    let later = now + Duration::from_secs(60);
    let again = service
        .issue(
            grant(APP, &["repository:team-a/app/other:pull"], later),
            later,
        )
        .await
        .unwrap();
    assert!(again.reused);
    assert_eq!(again.username, usernames[0]);
    // Push is another scope set: another token.
    let push = service
        .issue(grant(APP, &["repository:team-a/app:push"], later), later)
        .await
        .unwrap();
    assert!(!push.reused);

    let other = service
        .issue(grant(OTHER, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    assert!(!other.reused);
    assert_ne!(other.username, usernames[0]);
    assert_eq!(fake.tokens_created(), 3);
    let figures = service.figures();
    assert_eq!(
        (figures.credentials_created, figures.credentials_reused),
        (3, 1000)
    );
}

#[tokio::test]
async fn an_issued_token_works_at_the_registry_token_service_until_revoked() {
    let fake = start();
    let backend = GitlabBackend::new(admin_config(&fake)).unwrap();
    let now = SystemTime::now();
    let pull = backend
        .issue(&grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    let (user, password) = (&pull.username, &pull.password);
    // A deploy token reaches every image of its project, pull only; nothing elsewhere.
    assert_eq!(
        registry_actions(&fake, user, password, "repository:team-a/app/web:pull,push").await,
        Some(vec!["pull".to_owned()])
    );
    assert_eq!(
        registry_actions(&fake, user, password, "repository:team-b/web:pull").await,
        Some(vec![])
    );
    let push = backend
        .issue(&grant(OTHER, &["repository:team-a/app:push"], now), now)
        .await
        .unwrap();
    assert_eq!(
        registry_actions(
            &fake,
            &push.username,
            &push.password,
            "repository:team-a/app:pull,push"
        )
        .await,
        Some(vec!["pull".to_owned(), "push".to_owned()])
    );

    backend.revoke(&pull.handle).await.unwrap();
    assert_eq!(
        registry_actions(&fake, user, password, "repository:team-a/app:pull").await,
        None
    );
    // GitLab's own expiry ends it too, should the broker never revoke it.
    fake.advance_clock(TTL + Duration::from_secs(1));
    assert_eq!(
        registry_actions(
            &fake,
            &push.username,
            &push.password,
            "repository:team-a/app:pull"
        )
        .await,
        None
    );
}

// === revoke ===

#[tokio::test]
async fn run_revokes_the_token_at_its_time() {
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
    assert_eq!(fake.tokens_revoked(), 0);
    assert_eq!(fake.deploy_tokens().len(), 1);

    clock.advance(Duration::from_secs(1));
    assert!(eventually(|| fake.tokens_revoked() == 1).await);
    assert!(fake.deploy_tokens().is_empty());
    assert!(eventually(|| service.figures().credentials_revoked == 1).await);
    // And it is not handed out again.
    assert_not_handed_out_again(&service, &clock, &credential).await;

    stop_run(stop, runner).await;
}

#[tokio::test]
async fn revoking_a_token_already_gone_succeeds() {
    let fake = start();
    issue_then_revoke_twice(&GitlabBackend::new(admin_config(&fake)).unwrap()).await;
    assert_eq!(fake.tokens_revoked(), 1);
    assert_eq!(fake.api_calls(), 3);
}

#[tokio::test]
async fn a_failed_delete_names_the_token_and_run_retries_it() {
    let fake = start();
    let backend = GitlabBackend::new(admin_config(&fake)).unwrap();
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
            "delete deploy token {} of project \"team-a/app\"",
            credential.handle.id
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
    assert_eq!(fake.deploy_tokens().len(), 2);
    // The first retry waits a second (of the injected clock).
    clock.advance(Duration::from_secs(1));
    assert!(eventually(|| service.figures().credentials_revoked == 1).await);
    assert_eq!(fake.deploy_tokens().len(), 1);
    assert!(
        service
            .figures()
            .api_requests
            .iter()
            .any(|c| (c.step, c.outcome) == ("delete_deploy_token", "unreachable"))
    );
    stop_run(stop, runner).await;
}

// === sweeping ===

#[tokio::test]
async fn after_a_restart_the_sweeper_deletes_only_the_expired_broker_token() {
    let fake = start();
    let clock = ManualClock::starting_now();
    let now = clock.now();
    let human = fake
        .add_deploy_token("team-a/app", "ci-reader", &["read_registry"], None)
        .unwrap();
    let lookalike = fake
        .add_deploy_token("team-a/app", "svid-ci", &["read_registry"], None)
        .unwrap();
    let (expired, unexpired) = credentials_of_a_service_that_never_ran(
        service_with(admin_config(&fake)),
        now,
        "repository:team-b/web:pull",
    )
    .await;
    clock.advance(TTL + Duration::from_secs(1));

    let new = service_with(admin_config(&fake));
    new.set_sweep_projects(vec!["team-a/app".to_owned(), "team-b/web".to_owned()]);
    let (stop, runner) = spawn_run(&new, &clock);
    assert!(eventually(|| fake.tokens_revoked() == 1).await);
    assert!(eventually(|| new.figures().credentials_swept == 1).await);
    let left: Vec<String> = fake.deploy_tokens().into_iter().map(|t| t.name).collect();
    assert_same_names(
        left.clone(),
        vec![human.info.name, lookalike.info.name, unexpired.username],
    );
    assert!(!left.contains(&expired.username));
    stop_run(stop, runner).await;
}

#[tokio::test]
async fn a_sweep_reads_every_page_before_deleting() {
    let fake = start();
    let backend = GitlabBackend::new(admin_config(&fake)).unwrap();
    let now = SystemTime::now();
    let past = unix(now) - 10;
    for i in 0..130u64 {
        fake.add_deploy_token(
            "team-a/app",
            &format!("svid-{past}-{i:016x}"),
            &["read_registry"],
            None,
        )
        .unwrap();
    }
    for i in 0..5u64 {
        let future = past + 100_000;
        fake.add_deploy_token(
            "team-a/app",
            &format!("svid-{future}-{i:016x}"),
            &["read_registry"],
            None,
        )
        .unwrap();
        fake.add_deploy_token("team-a/app", &format!("keep-{i}"), &["read_registry"], None)
            .unwrap();
    }
    let report = backend
        .sweep(&["team-a/app".to_owned(), "team-b/web".to_owned()], now)
        .await
        .unwrap();
    assert_clean_sweep(&report, 2, 140, 130, 5);
    assert_eq!(fake.deploy_tokens().len(), 10);
}

#[tokio::test]
async fn sweep_failures_name_the_project_and_the_step() {
    let fake = start();
    let backend = GitlabBackend::new(admin_config(&fake)).unwrap();
    let now = SystemTime::now();
    let error = backend
        .sweep(&["team-a/nope".to_owned()], now)
        .await
        .unwrap_err();
    assert_names(&error, "list deploy tokens of project \"team-a/nope\"");
    assert_eq!(error.failure, Failure::NoSuchProject);

    fake.fail_next(Fault::Status(500), 1);
    let error = backend
        .sweep(&["team-a/app".to_owned()], now)
        .await
        .unwrap_err();
    assert_names(&error, "list deploy tokens of project \"team-a/app\"");
    assert_eq!(error.failure, Failure::ServerError { status: 500 });

    fake.fail_next(Fault::Malformed, 1);
    let error = backend
        .sweep(&["team-a/app".to_owned()], now)
        .await
        .unwrap_err();
    assert!(
        matches!(error.failure, Failure::Malformed { .. }),
        "{error}"
    );

    // One project failing does not stop the others.
    assert_one_failing_namespace_does_not_stop_the_others(
        &backend,
        "team-a/nope",
        "team-a/app",
        now,
    )
    .await;
}

// === failures ===

/// The error of one issue through a new service; then, when `then_ok`, checks that the error
/// was not kept (with the fault used up, the next request succeeds).
async fn issue_error(config: GitlabConfig, then_ok: bool) -> BackendError {
    let service = service_with(config);
    crate::common::issue_error(
        &service,
        "gitlab",
        "create deploy token in project \"team-a/app\": ",
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
        None,
        |error| {
            assert_eq!(
                error.failure,
                Failure::Rejected {
                    status: 400,
                    message: "400 Bad Request".to_owned()
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
    timed_out(&issue_error(impatient, true).await, "GitLab");
}

#[tokio::test]
async fn a_developer_token_is_forbidden_and_a_foreign_project_is_not_found() {
    let fake = start();
    let developer = fake
        .add_user_token(Role::Developer, &["team-a/app"])
        .unwrap();
    let mut config = admin_config(&fake);
    config.token = developer;
    let error = issue_error(config.clone(), false).await;
    assert_eq!(
        error.failure,
        Failure::Forbidden {
            message: "403 Forbidden".to_owned()
        }
    );
    assert!(!error.retryable());

    let service = service_with(config);
    let now = SystemTime::now();
    let error = service
        .issue(grant(APP, &["repository:team-b/web:pull"], now), now)
        .await
        .unwrap_err();
    assert_names(&error, "create deploy token in project \"team-b/web\"");
    assert_eq!(error.failure, Failure::NoSuchProject);
    assert!(fake.deploy_tokens().is_empty());
}

#[tokio::test]
async fn a_wrong_token_or_a_registry_that_is_down_fails_clearly() {
    let fake = start();
    let mut wrong = admin_config(&fake);
    wrong.token = SecretString::from("glpat-not-the-token".to_owned());
    let error = issue_error(wrong.clone(), false).await;
    assert_eq!(error.failure, Failure::Unauthorized);
    assert!(!error.to_string().contains("glpat-not-the-token"));

    let url = fake.url();
    drop(fake);
    let mut down = wrong;
    down.url = url;
    let error = issue_error(down, false).await;
    assert_eq!(error.failure, Failure::Unreachable { during: "connect" });
}

#[tokio::test]
async fn grants_gitlab_cannot_serve_make_no_api_call() {
    let fake = start();
    let service = service_with(admin_config(&fake));
    let now = SystemTime::now();
    let error = service
        .issue(
            grant(
                APP,
                &["repository:team-a/app:pull", "repository:team-b/web:pull"],
                now,
            ),
            now,
        )
        .await
        .unwrap_err();
    assert_names(&error, "map the grant");
    assert_eq!(
        error.failure,
        Failure::GrantSpansProjects {
            projects: vec!["team-a/app".to_owned(), "team-b/web".to_owned()]
        }
    );
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
    let error = service
        .issue(grant(APP, &["repository:app:pull"], now), now)
        .await
        .unwrap_err();
    assert_names(&error, "map the grant");
    assert_eq!(
        error.failure,
        Failure::RepositoryOutsideProject {
            repository: "app".to_owned()
        }
    );
    let mut expired = grant(APP, &["repository:team-a/app:pull"], now);
    expired.revoke_at = now;
    let error = service.issue(expired, now).await.unwrap_err();
    assert_eq!(error.failure, Failure::GrantExpired);
    assert_eq!(fake.api_calls(), 0);
}
