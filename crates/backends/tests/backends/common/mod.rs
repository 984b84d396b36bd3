//! Helpers the backends' integration tests share.

#![allow(
    dead_code,
    reason = "the cloud modules that use some of these helpers are behind cargo features"
)]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed step is a failed test"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use svid_broker_backends::{
    Backend, BackendCredential, BackendError, BackendGrant, BackendService, Failure, ServiceConfig,
    SweepReport,
};
use svid_broker_identity::clock::Clock;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[path = "../../../src/test_support.rs"]
mod support;

pub(crate) use support::*;

pub(crate) const APP: &str = "spiffe://example.org/ns/team-a/sa/app";
pub(crate) const OTHER: &str = "spiffe://example.org/ns/team-a/sa/other";
pub(crate) const TTL: Duration = Duration::from_secs(300);
/// The request deadline of the timeout case (the fake is made slower than it).
pub(crate) const IMPATIENT: Duration = Duration::from_millis(300);

/// Service settings that poll every 10 ms.
pub(crate) fn quick_service() -> ServiceConfig {
    let mut config = ServiceConfig::default();
    config.poll_interval = Duration::from_millis(10);
    config
}

/// A grant for registry `corp` of `scopes`, revoked [`TTL`] after `now`.
pub(crate) fn grant(subject: &str, scopes: &[&str], now: SystemTime) -> BackendGrant {
    BackendGrant::new("corp", subject, support::scopes(scopes), now + TTL)
}

/// Asserts that `error` is shown as `<kind> registry "corp": <step>: ...` and names `corp`.
pub(crate) fn assert_names_of(kind: &str, error: &BackendError, step: &str) {
    let shown = error.to_string();
    let head = format!("{kind} registry \"corp\": {step}: ");
    assert!(shown.starts_with(&head), "{shown}");
    assert_eq!(error.registry, "corp");
}

/// The actions a registry token service's answer (`{"token": "<JWT>"}`) grants, over every
/// `access` entry of the token's claims.
pub(crate) fn token_body_actions(body: &[u8]) -> Vec<String> {
    let body: serde_json::Value = serde_json::from_slice(body).unwrap();
    let payload = body["token"].as_str().unwrap().split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["access"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|entry| entry["actions"].as_array().cloned().unwrap_or_default())
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// The error of one `team-a/app` pull issue through `service`, shown starting with
/// `<kind> registry "corp": <step_head>`; then, when `then_ok`, checks that the error was not
/// kept (with the fault used up, the next request succeeds).
pub(crate) async fn issue_error(
    service: &BackendService,
    kind: &str,
    step_head: &str,
    then_ok: bool,
) -> BackendError {
    let now = SystemTime::now();
    let error = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap_err();
    let shown = error.to_string();
    let head = format!("{kind} registry \"corp\": {step_head}");
    assert!(shown.starts_with(&head), "{shown}");
    assert_eq!(error.registry, "corp");
    if then_ok {
        let retry = service
            .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
            .await;
        assert!(retry.is_ok_and(|c| !c.reused));
    }
    error
}

/// Issues `APP`'s `team-a/app` pull grant 1000 times at once; the usernames handed out (equal
/// neighbours merged) and how many were not reused.
pub(crate) async fn issue_a_thousand_at_once(
    service: &BackendService,
    now: SystemTime,
) -> (Vec<String>, usize) {
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move {
                service
                    .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
                    .await
            })
        })
        .collect();
    let mut usernames = Vec::new();
    let mut fresh = 0;
    for task in tasks {
        let credential = task.await.unwrap().unwrap();
        fresh += usize::from(!credential.reused);
        usernames.push(credential.username);
    }
    usernames.dedup();
    (usernames, fresh)
}

// === the failure table every backend's `every_failure_names_the_registry_and_the_step` runs ===

/// What one row of the failure table asserts about the error its fault caused.
pub(crate) type FailureCheck = fn(&BackendError);

pub(crate) fn unreachable(error: &BackendError) {
    assert!(
        matches!(error.failure, Failure::Unreachable { .. }),
        "{error}"
    );
    assert!(error.retryable());
}

pub(crate) fn unauthorized(error: &BackendError) {
    assert_eq!(error.failure, Failure::Unauthorized);
    assert!(!error.retryable());
}

/// A 401 about a credential that is not the broker's own (an STS session at ECR): the vendor's
/// reason is kept.
pub(crate) fn rejected_401(error: &BackendError) {
    assert!(
        matches!(&error.failure, Failure::Rejected { status: 401, message } if !message.is_empty()),
        "{error}"
    );
    assert!(!error.retryable());
}

/// A federated exchange's 401 (Quay, Artifactory): the registry refused the broker's JWT.
pub(crate) fn jwt_refused(error: &BackendError) {
    assert!(
        matches!(error.failure, Failure::JwtRefused { .. }),
        "{error}"
    );
    assert!(!error.retryable());
}

/// The row of [`failure_table`]'s 401, for a backend whose 401 is about the broker's JWT.
pub(crate) fn with_jwt_refused<F>(mut cases: Vec<(F, FailureCheck)>) -> Vec<(F, FailureCheck)> {
    cases[1].1 = jwt_refused;
    cases
}

pub(crate) fn rate_limited_for_a_second(error: &BackendError) {
    assert_eq!(
        error.failure,
        Failure::RateLimited {
            retry_after: Some(Duration::from_secs(1))
        }
    );
    assert!(error.retryable());
}

pub(crate) fn server_error_500(error: &BackendError) {
    assert_eq!(error.failure, Failure::ServerError { status: 500 });
}

pub(crate) fn malformed_check(error: &BackendError) {
    assert!(
        matches!(error.failure, Failure::Malformed { .. }),
        "{error}"
    );
}

/// The timeout case: `error` is a [`Failure::Timeout`] after [`IMPATIENT`], shown ending with
/// `<product> did not answer within 0.3s`.
pub(crate) fn timed_out(error: &BackendError, product: &str) {
    assert_eq!(error.failure, Failure::Timeout { after: IMPATIENT });
    let tail = format!("{product} did not answer within 0.3s");
    assert!(error.to_string().ends_with(&tail), "{error}");
}

pub(crate) fn forbidden(error: &BackendError) {
    assert!(
        matches!(error.failure, Failure::Forbidden { .. }),
        "{error}"
    );
}

pub(crate) fn rejected_400(error: &BackendError) {
    assert!(
        matches!(error.failure, Failure::Rejected { status: 400, .. }),
        "{error}"
    );
}

/// The failure table in order: hang-up, 401, 403 (when the backend's row is given), 429, 500,
/// 400 and a malformed answer, each fault (made by the fake's constructors) with its check.
pub(crate) fn failure_table<F>(
    hangup: F,
    status: fn(u16) -> F,
    malformed: F,
    forbidden: Option<FailureCheck>,
    rejected: FailureCheck,
) -> Vec<(F, FailureCheck)> {
    let mut cases: Vec<(F, FailureCheck)> =
        vec![(hangup, unreachable), (status(401), unauthorized)];
    cases.extend(forbidden.map(|check| (status(403), check)));
    cases.extend([
        (status(429), rate_limited_for_a_second as FailureCheck),
        (status(500), server_error_500),
        (status(400), rejected),
        (malformed, malformed_check),
    ]);
    cases
}

/// Runs each row of `cases`: `inject` arms the fault, `issue` makes the failing request, and
/// the row's check judges the error.
pub(crate) async fn check_failures<F>(
    cases: Vec<(F, FailureCheck)>,
    mut inject: impl FnMut(F),
    issue: impl AsyncFn() -> BackendError,
) {
    for (fault, check) in cases {
        inject(fault);
        check(&issue().await);
    }
}

/// `service.run` on its own task with `clock`: the sender that stops it, and the task.
pub(crate) fn spawn_run(
    service: &BackendService,
    clock: &Arc<ManualClock>,
) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (stop, shutdown) = watch::channel(false);
    let service = service.clone();
    let clock = Arc::clone(clock) as Arc<dyn Clock>;
    let runner = tokio::spawn(async move { service.run(clock, shutdown).await });
    (stop, runner)
}

/// Stops a run started by [`spawn_run`] and waits for it to end.
pub(crate) async fn stop_run(stop: watch::Sender<bool>, runner: JoinHandle<()>) {
    stop.send_replace(true);
    runner.await.unwrap();
}

/// After `credential` was revoked, the same subject and grant at `clock`'s time get a new
/// credential, not the revoked one.
pub(crate) async fn assert_not_handed_out_again(
    service: &BackendService,
    clock: &ManualClock,
    credential: &BackendCredential,
) {
    let later = clock.now();
    let fresh = service
        .issue(grant(APP, &["repository:team-a/app:pull"], later), later)
        .await
        .unwrap();
    assert!(!fresh.reused);
    assert_ne!(fresh.username, credential.username);
}

/// Issues `APP`'s `team-a/app` pull credential through `backend`, then revokes it twice: the
/// second revocation (of a credential already gone) succeeds too.
pub(crate) async fn issue_then_revoke_twice(backend: &dyn Backend) {
    let now = SystemTime::now();
    let credential = backend
        .issue(&grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    backend.revoke(&credential.handle).await.unwrap();
    backend.revoke(&credential.handle).await.unwrap();
}

/// A sweep over `missing` (a namespace that fails) and `present` lists `present` and reports
/// the one failure.
pub(crate) async fn assert_one_failing_namespace_does_not_stop_the_others(
    backend: &dyn Backend,
    missing: &str,
    present: &str,
    now: SystemTime,
) {
    let report = backend
        .sweep(&[missing.to_owned(), present.to_owned()], now)
        .await
        .unwrap();
    assert_eq!(report.namespaces_listed, 1);
    assert_eq!(report.failures.len(), 1);
}

/// Through `old`, a service that never runs (so its revocation queue is lost when it is
/// dropped here): `APP`'s `team-a/app` pull credential revoked after [`TTL`], and `OTHER`'s
/// `long_scope` one revoked after an hour.
pub(crate) async fn credentials_of_a_service_that_never_ran(
    old: BackendService,
    now: SystemTime,
    long_scope: &str,
) -> (BackendCredential, BackendCredential) {
    let expired = old
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    let mut long = grant(OTHER, &[long_scope], now);
    long.revoke_at = now + Duration::from_secs(3600);
    let unexpired = old.issue(long, now).await.unwrap();
    drop(old);
    (expired, unexpired)
}

/// Asserts that `left` holds exactly `expected`, in any order.
pub(crate) fn assert_same_names(mut left: Vec<String>, mut expected: Vec<String>) {
    left.sort();
    expected.sort();
    assert_eq!(left, expected);
}

/// Whether `service` counted `count` requests at `step` with `outcome`.
pub(crate) fn counted(service: &BackendService, step: &str, outcome: &str, count: u64) -> bool {
    service
        .figures()
        .api_requests
        .iter()
        .any(|c| (c.step, c.outcome, c.count) == (step, outcome, count))
}

/// Asserts a sweep report without failures or cut listings, with these counts.
pub(crate) fn assert_clean_sweep(
    report: &SweepReport,
    namespaces_listed: usize,
    credentials_seen: usize,
    deleted: usize,
    not_due: usize,
) {
    assert_eq!(report.namespaces_listed, namespaces_listed);
    assert_eq!(report.credentials_seen, credentials_seen);
    assert_eq!(report.deleted, deleted);
    assert_eq!(report.not_due, not_due);
    assert!(
        report.failures.is_empty() && report.truncated.is_empty(),
        "{report:?}"
    );
}

// === the broker's federation issuer, for the backends that exchange its JWT ===

/// The broker's federation issuer at `host.url()` + a path, its discovery document and JWKS
/// served there by a document host, as the realm serves them.
pub(crate) struct PublishedIssuer {
    host: svid_broker_dev::fake::federation::DocumentHost,
    pub(crate) issuer: Arc<svid_broker_token::federation::FederationIssuer>,
}

impl PublishedIssuer {
    /// An issuer at `path` (`""` or `/federation`) signing with `key`, 300 s tokens, published.
    pub(crate) fn start(path: &str, key: svid_broker_token::federation::FederationKey) -> Self {
        let host = svid_broker_dev::fake::federation::DocumentHost::start().unwrap();
        let issuer = Arc::new(
            svid_broker_token::federation::FederationIssuer::new(
                format!("{}{path}", host.url()),
                vec![key],
                Duration::from_secs(300),
            )
            .unwrap(),
        );
        let published = Self { host, issuer };
        published.publish();
        published
    }

    /// Serves the issuer's discovery document and its current JWKS (after a key change).
    pub(crate) fn publish(&self) {
        let base = self.host.url();
        let path = |url: &str| url.strip_prefix(base.as_str()).unwrap().to_owned();
        self.host.set(
            &path(&self.issuer.discovery_url()),
            "application/json",
            self.issuer.discovery_json(),
        );
        self.host.set(
            &path(&self.issuer.jwks_uri()),
            "application/json",
            self.issuer.jwks_json(),
        );
    }
}

/// The broker's issuer at `/federation`, published, with its first signing key kept so a
/// rotation can keep publishing it (the federated backends' tests).
pub(crate) struct Broker {
    published: PublishedIssuer,
    first_key: svid_broker_identity::secret::SecretString,
}

impl Broker {
    pub(crate) fn start() -> Self {
        let key = svid_broker_token::federation::FederationKey::generate().unwrap();
        let first_key = key.to_pkcs8_pem().unwrap();
        Self {
            published: PublishedIssuer::start("/federation", key),
            first_key,
        }
    }

    /// Rotation with overlap: a new key signs, the first stays published; returns the new
    /// key's `kid`.
    pub(crate) fn rotate(&self) -> String {
        use svid_broker_identity::secret::ExposeSecret as _;
        use svid_broker_token::federation::FederationKey;
        let old = FederationKey::from_pem(self.first_key.expose_secret().as_bytes()).unwrap();
        let new = FederationKey::generate().unwrap();
        let kid = new.kid().to_owned();
        self.issuer.replace_keys(vec![new, old]).unwrap();
        self.publish();
        kid
    }

    /// Signs from now on with a key the published JWKS does not hold.
    pub(crate) fn sign_with_an_unpublished_key(&self) {
        let key = svid_broker_token::federation::FederationKey::generate().unwrap();
        self.issuer.replace_keys(vec![key]).unwrap();
    }
}

impl std::ops::Deref for Broker {
    type Target = PublishedIssuer;

    fn deref(&self) -> &PublishedIssuer {
        &self.published
    }
}

/// A registry-wide credential of `APP` is handed out again for another repository with the same
/// access, and `OTHER` gets one of its own: returns (`APP`'s again, `OTHER`'s).
pub(crate) async fn reused_across_repositories_not_subjects(
    service: &BackendService,
    now: SystemTime,
) -> (BackendCredential, BackendCredential) {
    let later = now + Duration::from_secs(60);
    let again = service
        .issue(grant(APP, &["repository:team-b/other:pull"], later), later)
        .await
        .unwrap();
    assert!(again.reused);
    let other = service
        .issue(grant(OTHER, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    assert!(!other.reused);
    (again, other)
}

/// Issues for `APP` (the fake fetches the issuer's JWKS once: `jwks_fetches`), rotates the
/// broker's key with overlap, and issues for `OTHER` (the fake refetches it): returns
/// `OTHER`'s credential and the new signing `kid`.
pub(crate) async fn issue_across_a_rotation(
    service: &BackendService,
    broker: &Broker,
    now: SystemTime,
    jwks_fetches: impl Fn() -> u64,
) -> (BackendCredential, String) {
    service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    assert_eq!(jwks_fetches(), 1);
    let kid = broker.rotate();
    let other = service
        .issue(grant(OTHER, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    assert_eq!(jwks_fetches(), 2);
    (other, kid)
}
