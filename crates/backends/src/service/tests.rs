use std::sync::Mutex;
use std::sync::atomic::AtomicU32;
use std::time::UNIX_EPOCH;

use futures_util::future::BoxFuture;
use svid_broker_identity::secret::{ExposeSecret as _, SecretString};
use svid_broker_policy::ResourceScope;

use super::*;
use crate::credential::{CredentialHandle, SweepReport};
use crate::error::BackendKind;
use crate::figures::ApiMeter;
use crate::test_support::{ManualClock, eventually};

/// A backend in memory: counts creations and deletions, fails on request.
#[derive(Debug, Default)]
struct MockBackend {
    issued: AtomicU64,
    fail_issues: AtomicU32,
    fail_revokes: AtomicU32,
    revoked: Mutex<Vec<i64>>,
    swept_with: Mutex<Vec<(Vec<String>, SystemTime)>>,
    meter: ApiMeter,
}

impl MockBackend {
    fn failure(step: Step) -> BackendError {
        BackendError::new(
            "mock",
            BackendKind::Harbor,
            step,
            Failure::ServerError { status: 503 },
        )
    }
}

impl Backend for MockBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Harbor
    }

    fn registry(&self) -> &str {
        "mock"
    }

    fn reuse_key(&self, grant: &BackendGrant) -> Result<String, BackendError> {
        Ok(grant
            .scopes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "))
    }

    fn issue<'a>(
        &'a self,
        grant: &'a BackendGrant,
        _now: SystemTime,
    ) -> BoxFuture<'a, Result<BackendCredential, BackendError>> {
        Box::pin(async move {
            // Let every concurrent caller reach the table before this creation ends.
            tokio::task::yield_now().await;
            if self
                .fail_issues
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(Self::failure(Step::CreateRobot {
                    project: "p".to_owned(),
                }));
            }
            let id = i64::try_from(self.issued.fetch_add(1, Ordering::SeqCst)).unwrap() + 1;
            let name = format!("robot$p+mock-{id}");
            Ok(BackendCredential {
                username: name.clone(),
                password: SecretString::from(format!("secret-{id}")),
                credential_id: format!("robot {id} {name}"),
                expires_at: grant.revoke_at,
                registry_expires_at: None,
                reused: false,
                handle: CredentialHandle::new(id, name, "p"),
            })
        })
    }

    fn revoke<'a>(
        &'a self,
        handle: &'a CredentialHandle,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            if self
                .fail_revokes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(Self::failure(Step::DeleteRobot {
                    robot_id: handle.id,
                    name: handle.name.clone(),
                }));
            }
            self.revoked.lock().unwrap().push(handle.id);
            Ok(())
        })
    }

    fn sweep<'a>(
        &'a self,
        namespaces: &'a [String],
        now: SystemTime,
    ) -> BoxFuture<'a, Result<SweepReport, BackendError>> {
        Box::pin(async move {
            self.swept_with
                .lock()
                .unwrap()
                .push((namespaces.to_vec(), now));
            Ok(SweepReport {
                deleted: 2,
                ..SweepReport::default()
            })
        })
    }

    fn meter(&self) -> &ApiMeter {
        &self.meter
    }
}

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn grant(subject: &str, scope: &str, revoke_at: SystemTime) -> BackendGrant {
    BackendGrant::new(
        "mock",
        subject,
        vec![ResourceScope::parse(scope).unwrap()],
        revoke_at,
    )
}

const APP: &str = "spiffe://example.org/app";
const PULL: &str = "repository:p/app:pull";

fn service(config: ServiceConfig) -> (Arc<MockBackend>, BackendService) {
    let backend = Arc::new(MockBackend::default());
    let service = BackendService::new(Arc::clone(&backend) as Arc<dyn Backend>, config);
    (backend, service)
}

#[tokio::test]
async fn concurrent_equal_requests_share_one_creation() {
    let (backend, service) = service(ServiceConfig::default());
    let ttl = Duration::from_secs(900);
    let calls = (0..1000).map(|_| service.issue(grant(APP, PULL, t0() + ttl), t0()));
    let results = futures_util::future::join_all(calls).await;
    assert_eq!(backend.issued.load(Ordering::SeqCst), 1);
    let first = results[0].as_ref().unwrap();
    assert!(!first.reused);
    for result in &results[1..] {
        let credential = result.as_ref().unwrap();
        assert!(credential.reused);
        assert_eq!(credential.username, first.username);
        assert_eq!(
            credential.password.expose_secret(),
            first.password.expose_secret()
        );
        assert_eq!(credential.expires_at, first.expires_at);
    }
    let figures = service.figures();
    assert_eq!(
        (figures.credentials_created, figures.credentials_reused),
        (1, 999)
    );
    assert_eq!((figures.live_leases, figures.queued_revocations), (1, 1));
}

#[tokio::test]
async fn another_subject_or_action_set_gets_its_own_credential() {
    let (backend, service) = service(ServiceConfig::default());
    let revoke_at = t0() + Duration::from_secs(900);
    let a = service
        .issue(grant(APP, PULL, revoke_at), t0())
        .await
        .unwrap();
    let b = service
        .issue(grant("spiffe://example.org/other", PULL, revoke_at), t0())
        .await
        .unwrap();
    let c = service
        .issue(grant(APP, "repository:p/app:pull,push", revoke_at), t0())
        .await
        .unwrap();
    assert_eq!(backend.issued.load(Ordering::SeqCst), 3);
    assert!(a.username != b.username && b.username != c.username);
}

#[tokio::test]
async fn a_credential_is_reused_until_its_life_falls_under_the_margin() {
    let (backend, service) = service(ServiceConfig::default());
    let ttl = Duration::from_secs(300);
    let first = service
        .issue(grant(APP, PULL, t0() + ttl), t0())
        .await
        .unwrap();
    // 240 s later it has 60 s left: exactly the margin, still reused.
    let later = t0() + Duration::from_secs(240);
    let again = service
        .issue(grant(APP, PULL, later + ttl), later)
        .await
        .unwrap();
    assert!(again.reused);
    assert_eq!(again.username, first.username);
    // One second more and it is too close to its end.
    let too_late = later + Duration::from_secs(1);
    let fresh = service
        .issue(grant(APP, PULL, too_late + ttl), too_late)
        .await
        .unwrap();
    assert!(!fresh.reused);
    assert_ne!(fresh.username, first.username);
    assert_eq!(backend.issued.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_shorter_grant_never_gets_a_longer_lived_credential() {
    let (backend, service) = service(ServiceConfig::default());
    let long = service
        .issue(grant(APP, PULL, t0() + Duration::from_secs(3600)), t0())
        .await
        .unwrap();
    let short = service
        .issue(grant(APP, PULL, t0() + Duration::from_secs(600)), t0())
        .await
        .unwrap();
    assert!(!short.reused);
    assert_eq!(short.expires_at, t0() + Duration::from_secs(600));
    assert_ne!(short.username, long.username);
    assert_eq!(backend.issued.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn errors_are_not_kept() {
    let (backend, service) = service(ServiceConfig::default());
    backend.fail_issues.store(1, Ordering::SeqCst);
    let revoke_at = t0() + Duration::from_secs(900);
    let error = service
        .issue(grant(APP, PULL, revoke_at), t0())
        .await
        .unwrap_err();
    assert_eq!(error.failure, Failure::ServerError { status: 503 });
    let credential = service
        .issue(grant(APP, PULL, revoke_at), t0())
        .await
        .unwrap();
    assert!(!credential.reused);
    assert_eq!(service.figures().credentials_created, 1);
}

#[tokio::test]
async fn concurrent_waiters_all_see_a_shared_failure() {
    let (backend, service) = service(ServiceConfig::default());
    backend.fail_issues.store(1, Ordering::SeqCst);
    let revoke_at = t0() + Duration::from_secs(900);
    let calls = (0..50).map(|_| service.issue(grant(APP, PULL, revoke_at), t0()));
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_err));
    assert_eq!(backend.issued.load(Ordering::SeqCst), 0);
    assert_eq!(service.figures().live_leases, 0);
}

#[tokio::test]
async fn expired_grants_are_refused_before_any_call() {
    let (backend, service) = service(ServiceConfig::default());
    let error = service
        .issue(grant(APP, PULL, t0()), t0())
        .await
        .unwrap_err();
    assert_eq!(
        (error.step, error.failure),
        (Step::MapGrant, Failure::GrantExpired)
    );
    assert_eq!(backend.issued.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_lease_table_stays_bounded() {
    let (backend, service) = service(ServiceConfig {
        max_leases: 2,
        ..ServiceConfig::default()
    });
    let revoke_at = t0() + Duration::from_secs(900);
    for i in 0..5 {
        service
            .issue(
                grant(&format!("spiffe://example.org/w{i}"), PULL, revoke_at),
                t0(),
            )
            .await
            .unwrap();
    }
    assert_eq!(backend.issued.load(Ordering::SeqCst), 5);
    assert_eq!(service.figures().live_leases, 2);
    // Every credential is still revoked on time, held or not.
    assert_eq!(service.figures().queued_revocations, 5);
}

#[tokio::test]
async fn run_revokes_at_the_time_retries_failures_and_sweeps() {
    let (backend, service) = service(ServiceConfig {
        poll_interval: Duration::from_millis(10),
        revoke_retry_base: Duration::from_secs(1),
        ..ServiceConfig::default()
    });
    let clock = ManualClock::starting_at(t0());
    service.set_sweep_projects(vec!["p".to_owned(), "q".to_owned(), "p".to_owned()]);
    let credential = service
        .issue(grant(APP, PULL, t0() + Duration::from_secs(300)), t0())
        .await
        .unwrap();
    let (stop, shutdown) = watch::channel(false);
    let runner = {
        let service = service.clone();
        let clock = Arc::clone(&clock) as Arc<dyn Clock>;
        tokio::spawn(async move { service.run(clock, shutdown).await })
    };
    // The first sweep runs at once, over the deduplicated projects.
    assert!(eventually(|| !backend.swept_with.lock().unwrap().is_empty()).await);
    assert_eq!(
        backend.swept_with.lock().unwrap()[0],
        (vec!["p".to_owned(), "q".to_owned()], t0())
    );
    assert!(backend.revoked.lock().unwrap().is_empty());

    backend.fail_revokes.store(1, Ordering::SeqCst);
    clock.advance(Duration::from_secs(300));
    assert!(eventually(|| service.figures().revoke_failures == 1).await);
    // The lease is gone at its time even though the delete failed: not handed out again.
    assert_eq!(service.figures().live_leases, 0);
    assert!(backend.revoked.lock().unwrap().is_empty());
    clock.advance(Duration::from_secs(1));
    assert!(eventually(|| service.figures().credentials_revoked == 1).await);
    assert_eq!(*backend.revoked.lock().unwrap(), [credential.handle.id]);

    clock.advance(Duration::from_secs(30));
    assert!(eventually(|| backend.swept_with.lock().unwrap().len() >= 2).await);
    assert!(service.figures().credentials_swept >= 4);

    stop.send_replace(true);
    runner.await.unwrap();
}

#[tokio::test]
async fn a_revocation_that_keeps_failing_is_left_to_the_sweeper() {
    let (backend, service) = service(ServiceConfig {
        poll_interval: Duration::from_millis(10),
        max_revoke_attempts: 3,
        revoke_retry_base: Duration::from_secs(1),
        ..ServiceConfig::default()
    });
    let clock = ManualClock::starting_at(t0());
    service
        .issue(grant(APP, PULL, t0() + Duration::from_secs(60)), t0())
        .await
        .unwrap();
    backend.fail_revokes.store(100, Ordering::SeqCst);
    let (stop, shutdown) = watch::channel(false);
    let runner = {
        let service = service.clone();
        let clock = Arc::clone(&clock) as Arc<dyn Clock>;
        tokio::spawn(async move { service.run(clock, shutdown).await })
    };
    clock.advance(Duration::from_secs(60));
    // Retries after 1 s, then 2 s; the third failure drops it.
    for (advance, failures) in [(0, 1), (1, 2), (2, 3)] {
        clock.advance(Duration::from_secs(advance));
        assert!(eventually(|| service.figures().revoke_failures == failures).await);
    }
    assert!(eventually(|| service.figures().queued_revocations == 0).await);
    clock.advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(service.figures().revoke_failures, 3);
    stop.send_replace(true);
    runner.await.unwrap();
}

#[tokio::test]
async fn run_stops_when_the_shutdown_sender_is_dropped() {
    let (_backend, service) = service(ServiceConfig::default());
    let (stop, shutdown) = watch::channel(false);
    let runner = {
        let service = service.clone();
        tokio::spawn(async move { service.run(ManualClock::starting_at(t0()), shutdown).await })
    };
    drop(stop);
    runner.await.unwrap();
}

// === the pure parts ===

fn credential(id: i64, expires_at: SystemTime) -> BackendCredential {
    BackendCredential {
        username: format!("robot$p+mock-{id}"),
        password: SecretString::from(format!("secret-{id}")),
        credential_id: format!("robot {id}"),
        expires_at,
        registry_expires_at: None,
        reused: false,
        handle: CredentialHandle::new(id, format!("robot$p+mock-{id}"), "p"),
    }
}

#[test]
fn the_lease_table_shares_reuses_and_forgets() {
    let margin = Duration::from_secs(60);
    let key = LeaseKey {
        subject: APP.to_owned(),
        grant: "p pull".to_owned(),
    };
    let revoke_at = t0() + Duration::from_secs(300);
    let mut table = LeaseTable::new(10);
    let Begin::Create { flight, publish } = table.begin(&key, revoke_at, t0(), margin) else {
        panic!("first request creates");
    };
    assert!(matches!(
        table.begin(&key, revoke_at, t0(), margin),
        Begin::Join(_)
    ));
    // A grant ending before the creation under way cannot share it.
    assert!(matches!(
        table.begin(&key, revoke_at - Duration::from_secs(1), t0(), margin),
        Begin::Alone
    ));
    let made = credential(1, revoke_at);
    table.settle(&key, flight, &Ok(made));
    drop(publish);
    match table.begin(&key, revoke_at, t0(), margin) {
        Begin::Reuse(again) => assert!(again.reused && again.credential_id == "robot 1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(table.live(), 1);
    table.forget(&key, "robot 2");
    assert_eq!(table.live(), 1);
    table.forget(&key, "robot 1");
    assert_eq!(table.live(), 0);
}

#[test]
fn a_creation_whose_task_vanished_is_replaced() {
    let key = LeaseKey {
        subject: APP.to_owned(),
        grant: "p pull".to_owned(),
    };
    let revoke_at = t0() + Duration::from_secs(300);
    let mut table = LeaseTable::new(10);
    let Begin::Create { publish, .. } = table.begin(&key, revoke_at, t0(), Duration::ZERO) else {
        panic!("first request creates");
    };
    drop(publish);
    assert!(matches!(
        table.begin(&key, revoke_at, t0(), Duration::ZERO),
        Begin::Create { .. }
    ));
}

#[test]
fn a_full_lease_table_drops_unusable_leases_first_and_never_creations() {
    let margin = Duration::from_secs(60);
    let key = |i: usize| LeaseKey {
        subject: format!("s{i}"),
        grant: "p pull".to_owned(),
    };
    let far = t0() + Duration::from_secs(3600);
    let mut table = LeaseTable::new(2);
    let mut publishers = Vec::new();
    for (i, expires_at) in [(0, t0() + Duration::from_secs(30)), (1, far)] {
        let Begin::Create { flight, publish } = table.begin(&key(i), far, t0(), margin) else {
            panic!("creates");
        };
        table.settle(&key(i), flight, &Ok(credential(i as i64, expires_at)));
        publishers.push(publish);
    }
    // Full: the lease with 30 s left (under the margin) goes, the other stays.
    let Begin::Create { publish, .. } = table.begin(&key(2), far, t0(), margin) else {
        panic!("room was made");
    };
    publishers.push(publish);
    assert!(matches!(
        table.begin(&key(1), far, t0(), margin),
        Begin::Reuse(_)
    ));
    // Full of one live lease and one creation: the live one goes.
    let Begin::Create { publish, .. } = table.begin(&key(3), far, t0(), margin) else {
        panic!("room was made");
    };
    assert_eq!(table.live(), 0);
    // Now two creations under way: nothing can go, so the next request is served alone...
    assert!(matches!(
        table.begin(&key(4), far, t0(), margin),
        Begin::Alone
    ));
    // ...until one of them vanishes without settling.
    drop(publish);
    assert!(matches!(
        table.begin(&key(4), far, t0(), margin),
        Begin::Create { .. }
    ));
    drop(publishers);
}

#[test]
fn revocations_come_out_in_time_order_and_the_queue_is_bounded() {
    let mut queue = RevocationQueue::new(2);
    let revocation = |id| Revocation {
        handle: CredentialHandle::new(id, format!("r{id}"), "p"),
        credential_id: format!("robot {id}"),
        lease: None,
        attempts: 0,
    };
    assert_eq!(
        queue.push(t0() + Duration::from_secs(20), revocation(1)),
        Ok(true)
    );
    assert_eq!(
        queue.push(t0() + Duration::from_secs(10), revocation(2)),
        Ok(true)
    );
    assert_eq!(queue.push(t0(), revocation(3)), Err(()));
    assert_eq!(queue.next_due(), Some(t0() + Duration::from_secs(10)));
    assert!(queue.take_due(t0() + Duration::from_secs(9), 10).is_empty());
    let due: Vec<i64> = queue
        .take_due(t0() + Duration::from_secs(30), 10)
        .iter()
        .map(|r| r.handle.id)
        .collect();
    assert_eq!(due, [2, 1]);
    // Retries may exceed the bound: they only put back what was taken.
    queue.push(t0(), revocation(4)).unwrap();
    queue.push(t0(), revocation(5)).unwrap();
    queue.retry(t0(), revocation(6));
    assert_eq!(queue.len(), 3);
    assert_eq!(queue.take_due(t0(), 2).len(), 2);
}

#[test]
fn backoff_doubles_up_to_its_cap() {
    let base = Duration::from_secs(1);
    let max = Duration::from_secs(300);
    let waits: Vec<u64> = (1..=12).map(|n| backoff(n, base, max).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    assert_eq!(backoff(u32::MAX, base, max), max);
}
