//! The ECR backend and its service against the fake AWS (crates/dev `fake::aws`): STS verifies
//! the broker's JWT as IAM does (discovery and JWKS served here by a `DocumentHost`, RS256,
//! times on its clock, the OIDC provider's client ids, the role's trust conditions), ECR
//! verifies the SigV4 signature with its own implementation, and the fake registry checks
//! what the session policy allows.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed step is a failed test"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::Method;
use svid_broker_backends::ecr::{EcrBackend, EcrConfig};
use svid_broker_backends::http::{ApiClient, ClientSettings};
use svid_broker_backends::{BackendError, BackendService, Failure, Step};
use svid_broker_dev::fake::aws::{Condition, Endpoint, FakeAws, Fault, RoleTrust, Statement};
use svid_broker_identity::secret::{ExposeSecret as _, SecretString};

use crate::common::*;

const ROLE: &str = "arn:aws:iam::111122223333:role/svid-broker-ecr";
const AUDIENCE: &str = "sts.amazonaws.com";
const STS_STEP: &str = "assume role \"arn:aws:iam::111122223333:role/svid-broker-ecr\" with the broker's token (AWS STS): ";
const ECR_STEP: &str = "get an ECR authorization token in region \"us-east-1\": ";

fn trust(broker: &Broker) -> RoleTrust {
    RoleTrust::new(
        broker.issuer.issuer(),
        Condition::StringLike("spiffe://example.org/ns/team-a/*".to_owned()),
        Condition::StringEquals(AUDIENCE.to_owned()),
    )
}

/// What the role may do: every ECR action on every repository of the account.
fn role_permissions() -> Vec<Statement> {
    vec![
        Statement::allow(&["ecr:GetAuthorizationToken"], &["*"]),
        Statement::allow(
            &["ecr:*"],
            &["arn:aws:ecr:us-east-1:111122223333:repository/*"],
        ),
    ]
}

/// A fake AWS whose IAM trusts `broker` (client id `sts.amazonaws.com`) for [`ROLE`], which
/// team-a's workloads may assume.
fn start_with(broker: &Broker, trust: RoleTrust) -> FakeAws {
    let fake = FakeAws::start().unwrap();
    fake.add_oidc_provider(broker.issuer.issuer(), &[AUDIENCE]);
    fake.add_role(ROLE, trust, &role_permissions()).unwrap();
    fake
}

fn start(broker: &Broker) -> FakeAws {
    start_with(broker, trust(broker))
}

fn config(fake: &FakeAws, broker: &Broker) -> EcrConfig {
    let mut config = EcrConfig::new("corp", Arc::clone(&broker.issuer), ROLE, fake.region());
    config.sts_endpoint = fake.sts_url();
    config.ecr_endpoint = fake.ecr_url();
    config
}

fn service_with(config: EcrConfig) -> BackendService {
    BackendService::new(Arc::new(EcrBackend::new(config).unwrap()), quick_service())
}

/// The status of `GET path` at the fake registry with Basic `AWS:<password>`.
async fn registry_status(fake: &FakeAws, password: &SecretString, path: &str) -> u16 {
    let client = ApiClient::new(&ClientSettings::new(
        fake.registry_url(),
        "AWS",
        password.clone(),
    ))
    .unwrap();
    client
        .send(Method::GET, path, None)
        .await
        .unwrap()
        .status
        .as_u16()
}

/// The error of one `team-a/app` pull issue through a fresh service over `config`, shown at
/// `step_head`; with `then_ok`, the next request succeeds. The error never shows a JWT.
async fn issue_error(config: EcrConfig, step_head: &str, then_ok: bool) -> BackendError {
    let service = service_with(config);
    let error = crate::common::issue_error(&service, "ecr", step_head, then_ok).await;
    assert!(!error.to_string().contains("eyJ"), "{error}");
    error
}

fn sts_step() -> Step {
    Step::AssumeRoleWithWebIdentity {
        role_arn: ROLE.to_owned(),
    }
}

fn jwt_refused_saying(error: &BackendError, says: &str) {
    assert_eq!(error.step, sts_step());
    assert!(
        matches!(&error.failure, Failure::JwtRefused { message } if message.contains(says)),
        "{says}: {error}"
    );
    assert!(!error.retryable());
    // The step names the service; the message is STS's own `Code: Message`.
    let shown = error.to_string();
    assert!(shown.contains("(AWS STS): AWS STS "), "{shown}");
    assert!(
        shown.ends_with(&format!(": {}", message_of(error))),
        "{shown}"
    );
}

fn message_of(error: &BackendError) -> &str {
    match &error.failure {
        Failure::JwtRefused { message } | Failure::Forbidden { message } => message,
        _ => "",
    }
}

// === issue and use ===

#[tokio::test]
async fn a_pull_credential_logs_in_and_reaches_only_the_granted_repository() {
    let broker = Broker::start();
    let fake = start(&broker);
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    let credential = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    assert!(!credential.reused);
    assert_eq!(credential.username, "AWS");
    // The grant ends long before ECR's 12-hour token: the caller is told the grant's end.
    assert_eq!(credential.expires_at, now + TTL);
    let registry_end = credential.registry_expires_at.unwrap();
    assert!(
        registry_end > now + Duration::from_secs(11 * 3600),
        "{registry_end:?}"
    );
    assert!(registry_end <= now + Duration::from_secs(12 * 3600 + 60));
    let id = &credential.credential_id;
    assert!(id.starts_with("ecr session svid-"), "{id}");
    assert!(id.contains("(federated jwt "), "{id}");
    let password = credential.password.expose_secret();
    assert!(!id.contains(password));
    assert!(!format!("{credential:?}").contains(password));

    assert_eq!(
        registry_status(&fake, &credential.password, "/v2/").await,
        200
    );
    assert_eq!(
        registry_status(&fake, &credential.password, "/v2/team-a/app/tags/list").await,
        200
    );
    // The role reaches every repository; the session policy narrowed this credential.
    assert_eq!(
        registry_status(&fake, &credential.password, "/v2/team-b/other/tags/list").await,
        403
    );
    let wrong = SecretString::from("not-a-token".to_owned());
    assert_eq!(registry_status(&fake, &wrong, "/v2/").await, 401);

    let audit = fake.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].issuer, broker.issuer.issuer());
    assert_eq!(audit[0].subject, APP);
    assert_eq!(audit[0].audiences, [AUDIENCE]);
    assert_eq!(audit[0].kid, broker.issuer.signing_kid());
    assert_eq!(audit[0].outcome, "issued");
    assert!(audit[0].session_tags.is_empty());
    assert!(audit[0].role_session_name.starts_with("svid-"));
    assert_eq!((fake.sts_calls(), fake.ecr_calls()), (1, 1));
    assert!(counted(&service, "assume_role_with_web_identity", "ok", 1));
    assert!(counted(&service, "get_authorization_token", "ok", 1));
}

#[tokio::test]
async fn a_push_grant_is_its_own_session_and_reaches_the_pushed_repository() {
    let broker = Broker::start();
    let fake = start(&broker);
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    let pull = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    let push = service
        .issue(
            grant(
                APP,
                &[
                    "repository:team-a/app:pull,push",
                    "repository:team-a/lib:pull",
                ],
                now,
            ),
            now,
        )
        .await
        .unwrap();
    assert!(!push.reused);
    assert_ne!(pull.password.expose_secret(), push.password.expose_secret());
    for repository in ["team-a/app", "team-a/lib"] {
        let path = format!("/v2/{repository}/tags/list");
        assert_eq!(registry_status(&fake, &push.password, &path).await, 200);
    }
    assert_eq!(
        registry_status(&fake, &push.password, "/v2/team-a/other/tags/list").await,
        403
    );
    assert_eq!(fake.sessions_issued(), 2);
}

#[tokio::test]
async fn a_registry_wide_grant_reaches_every_repository_the_role_does() {
    let broker = Broker::start();
    let fake = start(&broker);
    let backend = EcrBackend::new(config(&fake, &broker)).unwrap();
    let now = SystemTime::now();
    let every = svid_broker_backends::BackendGrant::new(
        "corp",
        APP,
        vec![svid_broker_policy::ResourceScope::every_repository([
            svid_broker_policy::Action::PULL,
        ])],
        now + TTL,
    );
    let credential = backend.issue(&every, now).await.unwrap();
    assert_eq!(
        registry_status(&fake, &credential.password, "/v2/team-b/other/tags/list").await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_issues_make_one_session_and_one_token() {
    let broker = Broker::start();
    let fake = start(&broker);
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    let (usernames, fresh) = issue_a_thousand_at_once(&service, now).await;
    assert_eq!(fresh, 1);
    assert_eq!(usernames, ["AWS"]);
    assert_eq!((fake.sts_calls(), fake.ecr_calls()), (1, 1));
    let figures = service.figures();
    assert_eq!(figures.kind, "ecr");
    assert_eq!(
        (figures.credentials_created, figures.credentials_reused),
        (1, 999)
    );
}

// === what STS refuses ===

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    let broker = Broker::start();
    let fake = start(&broker);
    let mut wrong = config(&fake, &broker);
    "someone-else".clone_into(&mut wrong.audience);
    let error = issue_error(wrong, STS_STEP, false).await;
    jwt_refused_saying(&error, "InvalidIdentityToken: Incorrect token audience");
    assert_eq!(fake.sessions_issued(), 0);
    assert_eq!(fake.ecr_calls(), 0);
}

#[tokio::test]
async fn a_subject_the_trust_policy_does_not_name_is_denied() {
    let broker = Broker::start();
    let fake = start(&broker);
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    let error = service
        .issue(
            grant(
                "spiffe://example.org/ns/team-b/sa/app",
                &["repository:team-b/app:pull"],
                now,
            ),
            now,
        )
        .await
        .unwrap_err();
    assert_eq!(error.step, sts_step());
    assert!(
        matches!(&error.failure, Failure::Forbidden { message } if message.contains("AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity")),
        "{error}"
    );
    assert!(
        error.to_string().contains("AWS STS answered 403 Forbidden"),
        "{error}"
    );
    assert_eq!(fake.audit()[0].outcome, "AccessDenied");
}

#[tokio::test]
async fn an_expired_jwt_is_refused() {
    let broker = Broker::start();
    let fake = start(&broker);
    // The broker signs at the real time with a 300 s life; AWS's clock is later.
    fake.advance_clock(Duration::from_secs(301));
    let error = issue_error(config(&fake, &broker), STS_STEP, false).await;
    jwt_refused_saying(&error, "ExpiredTokenException: Token expired");
}

#[tokio::test]
async fn a_token_from_an_issuer_with_no_oidc_provider_is_refused() {
    let broker = Broker::start();
    let stranger = Broker::start();
    let fake = start(&broker);
    let error = issue_error(config(&fake, &stranger), STS_STEP, false).await;
    jwt_refused_saying(
        &error,
        "InvalidIdentityToken: No OpenIDConnect provider found in your account for",
    );
    assert_eq!(fake.discovery_fetches(), 0);
}

#[tokio::test]
async fn an_unknown_kid_is_refused_and_a_rotation_is_picked_up_by_refetching() {
    let broker = Broker::start();
    let fake = start(&broker);
    // A key the published JWKS never held.
    broker.sign_with_an_unpublished_key();
    let error = issue_error(config(&fake, &broker), STS_STEP, false).await;
    jwt_refused_saying(&error, "InvalidIdentityToken");
    assert_eq!(fake.jwks_fetches(), 1);

    // Rotation: a new key signs, the old one stays published; the fake refetches.
    broker.rotate();
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    assert_eq!(fake.jwks_fetches(), 2);
    assert_eq!(
        fake.audit().last().unwrap().kid,
        broker.issuer.signing_kid()
    );
}

// === session tags ===

#[tokio::test]
async fn session_tags_reach_sts_and_a_role_without_tag_session_refuses_them() {
    let broker = Broker::start();
    let fake = start_with(&broker, trust(&broker).with_tag_session());
    let mut tagged = config(&fake, &broker);
    tagged.session_tags = Some("/ns/{namespace}/sa/{service_account}".to_owned());
    let service = service_with(tagged.clone());
    let now = SystemTime::now();
    service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    let tags = &fake.audit()[0].session_tags;
    assert_eq!(tags.get("namespace").map(String::as_str), Some("team-a"));
    assert_eq!(tags.get("service_account").map(String::as_str), Some("app"));
    assert_eq!(tags.len(), 2);

    // A workload the pattern does not match is refused before any call.
    let error = service
        .issue(
            grant(
                "spiffe://example.org/other/app",
                &["repository:team-a/app:pull"],
                now,
            ),
            now,
        )
        .await
        .unwrap_err();
    assert_eq!(error.step, Step::MapGrant);
    assert!(
        error
            .to_string()
            .contains("does not match the session_tags pattern"),
        "{error}"
    );

    // Without sts:TagSession in the trust policy, STS refuses the tagged JWT.
    let strict = start(&broker);
    let mut tagged = config(&strict, &broker);
    tagged.session_tags = Some("/ns/{namespace}/sa/{service_account}".to_owned());
    let error = issue_error(tagged, STS_STEP, false).await;
    assert!(
        matches!(error.failure, Failure::Forbidden { .. }),
        "{error}"
    );
    assert_eq!(strict.audit()[0].outcome, "AccessDenied");
}

// === what the backend refuses of AWS's answers ===

#[tokio::test]
async fn an_expires_at_in_the_past_is_malformed() {
    let broker = Broker::start();
    let fake = start(&broker);
    // moto answers a 2015 date.
    fake.force_expires_at(Some(1_440_000_000.0));
    let error = issue_error(config(&fake, &broker), ECR_STEP, false).await;
    assert!(
        matches!(error.failure, Failure::Malformed { what } if what.contains("expiresAt")),
        "{error}"
    );
    fake.force_expires_at(Some(4_000_000_000.0));
    let error = issue_error(config(&fake, &broker), ECR_STEP, false).await;
    assert!(
        matches!(error.failure, Failure::Malformed { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_grant_whose_session_policy_is_too_long_is_refused_before_any_call() {
    let broker = Broker::start();
    let fake = start(&broker);
    let service = service_with(config(&fake, &broker));
    let now = SystemTime::now();
    let names: Vec<String> = (0..40)
        .map(|i| format!("repository:team-a/a-rather-long-repository-name-{i}:pull"))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let error = service
        .issue(grant(APP, &names, now), now)
        .await
        .unwrap_err();
    assert_eq!(error.step, Step::MapGrant);
    assert!(
        error.to_string().contains("2048-character limit"),
        "{error}"
    );
    assert_eq!(fake.sts_calls(), 0);
}

// === faults ===

#[tokio::test]
async fn sts_faults_fail_the_assume_role_step_clearly_and_are_not_kept() {
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
                    message: "AccessDenied: injected fault".to_owned()
                }
            );
        }),
        |error| {
            assert_eq!(
                error.failure,
                Failure::Rejected {
                    status: 400,
                    message: "ValidationError: injected fault".to_owned()
                }
            );
        },
    ));
    check_failures(
        cases,
        |fault| fake.fail_next(Endpoint::Sts, fault, 1),
        async || issue_error(config(&fake, &broker), STS_STEP, true).await,
    )
    .await;

    fake.fail_next(Endpoint::Sts, Fault::Slow(Duration::from_secs(5)), 1);
    let mut impatient = config(&fake, &broker);
    impatient.request_deadline = IMPATIENT;
    timed_out(&issue_error(impatient, STS_STEP, true).await, "AWS STS");
}

#[tokio::test]
async fn ecr_faults_fail_the_token_step_clearly_and_are_not_kept() {
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
                    message: "AccessDeniedException: injected fault".to_owned()
                }
            );
        }),
        rejected_400,
    );
    // The table's second row is the 401: at ECR it is about the STS session, not a broker
    // secret, so the vendor's reason is kept.
    cases[1].1 = rejected_401;
    check_failures(
        cases,
        |fault| fake.fail_next(Endpoint::Ecr, fault, 1),
        async || issue_error(config(&fake, &broker), ECR_STEP, true).await,
    )
    .await;

    fake.fail_next(Endpoint::Ecr, Fault::Slow(Duration::from_secs(5)), 1);
    let mut impatient = config(&fake, &broker);
    impatient.request_deadline = IMPATIENT;
    timed_out(&issue_error(impatient, ECR_STEP, true).await, "Amazon ECR");
}

#[tokio::test]
async fn an_aws_that_is_down_is_unreachable() {
    let broker = Broker::start();
    let fake = start(&broker);
    let config = config(&fake, &broker);
    drop(fake);
    let error = issue_error(config, STS_STEP, false).await;
    unreachable(&error);
    assert!(
        error.to_string().contains("cannot reach AWS STS"),
        "{error}"
    );
}

#[tokio::test]
async fn a_role_that_does_not_allow_get_authorization_token_is_refused_by_ecr() {
    let broker = Broker::start();
    let fake = FakeAws::start().unwrap();
    fake.add_oidc_provider(broker.issuer.issuer(), &[AUDIENCE]);
    fake.add_role(
        ROLE,
        trust(&broker),
        &[Statement::allow(&["ecr:BatchGetImage"], &["*"])],
    )
    .unwrap();
    let error = issue_error(config(&fake, &broker), ECR_STEP, false).await;
    assert!(
        matches!(&error.failure, Failure::Forbidden { message } if message.starts_with("AccessDeniedException: User: arn:aws:sts::111122223333:assumed-role/svid-broker-ecr/svid-")),
        "{error}"
    );
}

#[tokio::test]
async fn revoking_does_nothing_and_succeeds() {
    let broker = Broker::start();
    let fake = start(&broker);
    let backend = EcrBackend::new(config(&fake, &broker)).unwrap();
    issue_then_revoke_twice(&backend).await;
    assert_eq!((fake.sts_calls(), fake.ecr_calls()), (1, 1));
}
