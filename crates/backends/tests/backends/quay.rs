//! The Quay backend and its service against the fake Quay (crates/dev `fake::quay`), which
//! enforces Quay's robot federation rules, with the broker's own [`FederationIssuer`] as the
//! OIDC issuer: its discovery document and JWKS served by a `DocumentHost` the fake fetches
//! from, as real Quay fetches from the broker.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed step is a failed test"
)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::Request;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use svid_broker_backends::quay::ROBOT_TOKEN_LIFETIME;
use svid_broker_backends::{
    BackendError, BackendGrant, BackendService, Failure, QuayBackend, QuayConfig, Step,
};
use svid_broker_dev::fake::quay::{FakeQuay, Fault, FederationEntry, QuayRole};
use svid_broker_identity::clock::Clock;
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_token::federation::FederationKey;

use crate::common::*;

const PULL: &str = "puller";
const PUSH: &str = "pusher";

/// RSA keys are slow to make: two shared by every test, as PEM (a key is not `Clone`).
fn key(index: usize) -> FederationKey {
    static PEMS: OnceLock<Vec<String>> = OnceLock::new();
    let pems = PEMS.get_or_init(|| {
        (0..2)
            .map(|_| {
                let key = FederationKey::generate().unwrap();
                key.to_pkcs8_pem().unwrap().expose_secret().to_owned()
            })
            .collect()
    });
    FederationKey::from_pem(pems[index].as_bytes()).unwrap()
}

/// The broker's issuer, published by a document host, and a Quay whose robots
/// `team-a+puller` (read) and `team-a+pusher` (write) trust it for [`APP`].
struct World {
    broker: PublishedIssuer,
    quay: FakeQuay,
}

impl World {
    fn start() -> Self {
        let broker = PublishedIssuer::start("", key(0));
        let quay = FakeQuay::start().unwrap();
        for (robot, role) in [(PULL, QuayRole::Read), (PUSH, QuayRole::Write)] {
            quay.add_robot("team-a", robot).unwrap();
            quay.grant_repository("team-a", robot, "team-a/app", role)
                .unwrap();
        }
        let world = Self { broker, quay };
        world.trust(&[FederationEntry::new(world.broker.issuer.issuer(), APP)]);
        world
    }

    /// Sets both robots' federation entries.
    fn trust(&self, entries: &[FederationEntry]) {
        for robot in [PULL, PUSH] {
            self.quay
                .set_federation("team-a", robot, entries.to_vec())
                .unwrap();
        }
    }

    fn config(&self) -> QuayConfig {
        QuayConfig::new(
            "corp",
            self.quay.url(),
            Arc::clone(&self.broker.issuer),
            PULL,
            PUSH,
        )
    }

    fn service(&self) -> BackendService {
        service_with(self.config())
    }
}

fn service_with(config: QuayConfig) -> BackendService {
    BackendService::new(Arc::new(QuayBackend::new(config).unwrap()), quick_service())
}

/// `GET /v2/` of the fake with Basic `user:password`: the status.
async fn registry_base(addr: SocketAddr, user: &str, password: &str) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let request = Request::get("/v2/")
        .header("host", addr.to_string())
        .header("authorization", format!("Basic {basic}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

async fn pull_error(service: &BackendService) -> BackendError {
    issue_error(
        service,
        "quay",
        "exchange the broker's token for robot \"team-a+puller\": ",
        false,
    )
    .await
}

// === issue and use ===

#[tokio::test]
async fn an_exchanged_robot_token_logs_in_as_the_pull_or_push_robot() {
    let world = World::start();
    let service = world.service();
    let now = SystemTime::now();
    let credential = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    assert!(!credential.reused);
    assert_eq!(credential.username, "team-a+puller");
    assert_eq!(credential.expires_at, now + TTL);
    assert!(
        credential
            .credential_id
            .starts_with("robot team-a+puller (federated jwt "),
        "{}",
        credential.credential_id
    );
    assert_eq!(credential.handle.name, "team-a+puller");
    assert_eq!(credential.handle.namespace, "team-a");
    let token = credential.password.expose_secret();
    assert!(!credential.credential_id.contains(token));
    assert!(!format!("{credential:?}").contains(token));
    assert_eq!(
        registry_base(world.quay.addr(), &credential.username, token).await,
        200
    );

    let pusher = service
        .issue(grant(APP, &["repository:team-a/app:pull,push"], now), now)
        .await
        .unwrap();
    assert_eq!(pusher.username, "team-a+pusher");
    assert_eq!(
        registry_base(
            world.quay.addr(),
            &pusher.username,
            pusher.password.expose_secret()
        )
        .await,
        200
    );
    assert_eq!(world.quay.exchanges(), 2);
    assert!(counted(&service, "exchange_robot_token", "ok", 2));
    let figures = service.figures();
    assert_eq!((figures.kind, figures.credentials_created), ("quay", 2));
}

#[tokio::test]
async fn the_credential_ends_with_the_robot_token_even_when_the_grant_runs_longer() {
    let world = World::start();
    let service = world.service();
    let now = SystemTime::now();
    let long = BackendGrant::new(
        "corp",
        APP,
        scopes(&["repository:team-a/app:pull"]),
        now + Duration::from_secs(7200),
    );
    let credential = service.issue(long, now).await.unwrap();
    assert_eq!(credential.expires_at, now + ROBOT_TOKEN_LIFETIME);
    let token = credential.password.expose_secret();
    world.quay.advance_clock(Duration::from_secs(3599));
    assert_eq!(
        registry_base(world.quay.addr(), &credential.username, token).await,
        200
    );
    world.quay.advance_clock(Duration::from_secs(2));
    assert_eq!(
        registry_base(world.quay.addr(), &credential.username, token).await,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_issues_make_one_exchange() {
    let world = World::start();
    let service = world.service();
    let now = SystemTime::now();
    let (usernames, fresh) = issue_a_thousand_at_once(&service, now).await;
    assert_eq!(world.quay.exchanges(), 1);
    assert_eq!(fresh, 1);
    assert_eq!(usernames, ["team-a+puller"]);
    let figures = service.figures();
    assert_eq!(
        (figures.credentials_created, figures.credentials_reused),
        (1, 999)
    );
}

#[tokio::test]
async fn at_its_time_the_credential_expires_without_a_revoke_call() {
    let world = World::start();
    let service = world.service();
    let clock = ManualClock::starting_now();
    let now = clock.now();
    let credential = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    let (stop, runner) = spawn_run(&service, &clock);
    // Quay's clock moves with the broker's: a JWT from the future would be refused.
    world.quay.advance_clock(TTL);
    clock.advance(TTL);
    assert!(eventually(|| service.figures().credentials_expired == 1).await);
    assert_eq!(service.figures().credentials_revoked, 0);
    assert_not_handed_out_again_quay(&service, &clock, &credential.credential_id).await;
    assert_eq!(world.quay.exchanges(), 2);
    stop_run(stop, runner).await;
}

/// The robot is the same, so the name is too: a new exchange (a new `jti`) is the proof.
async fn assert_not_handed_out_again_quay(
    service: &BackendService,
    clock: &ManualClock,
    credential_id: &str,
) {
    let later = clock.now();
    let fresh = service
        .issue(grant(APP, &["repository:team-a/app:pull"], later), later)
        .await
        .unwrap();
    assert!(!fresh.reused);
    assert_ne!(fresh.credential_id, credential_id);
}

// === what Quay refuses ===

#[tokio::test]
async fn a_subject_no_entry_names_is_refused() {
    let world = World::start();
    let mut config = world.config();
    "broker:{project}:{access}".clone_into(&mut config.subject_template);
    let error = pull_error(&service_with(config.clone())).await;
    assert_eq!(
        error.failure,
        Failure::Rejected {
            status: 400,
            message: "Token does not match robot".to_owned()
        }
    );
    assert!(!error.retryable());
    assert_eq!(
        error.step,
        Step::ExchangeRobotToken {
            robot: "team-a+puller".to_owned()
        }
    );
    // Trusting the rendered subject instead: accepted.
    world.trust(&[FederationEntry::new(
        world.broker.issuer.issuer(),
        "broker:team-a:pull",
    )]);
    let now = SystemTime::now();
    assert!(
        service_with(config)
            .issue(grant(OTHER, &["repository:team-a/app:pull"], now), now)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_audience_the_entry_does_not_list_is_refused() {
    let world = World::start();
    world.trust(&[FederationEntry::new(world.broker.issuer.issuer(), APP)
        .with_audiences(["https://quay.corp"])]);
    let error = pull_error(&world.service()).await;
    assert_eq!(
        error.failure,
        Failure::Rejected {
            status: 400,
            message: "Invalid token: Audience doesn't match".to_owned()
        }
    );
    let mut config = world.config();
    "https://quay.corp".clone_into(&mut config.audience);
    let now = SystemTime::now();
    assert!(
        service_with(config)
            .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_expired_jwt_is_refused() {
    let world = World::start();
    // The broker's JWT lives 300 s; Quay's clock is past that.
    world.quay.advance_clock(Duration::from_secs(301));
    let error = pull_error(&world.service()).await;
    let Failure::Rejected {
        status: 400,
        message,
    } = &error.failure
    else {
        panic!("{error}");
    };
    assert!(
        message.starts_with("Invalid token: token expired"),
        "{message}"
    );
}

#[tokio::test]
async fn an_issuer_quay_does_not_trust_is_refused() {
    let world = World::start();
    world.trust(&[FederationEntry::new("https://other.example.org", APP)]);
    let error = pull_error(&world.service()).await;
    let shown = error.to_string();
    assert!(
        shown.ends_with(&format!(
            "Quay answered 400 Bad Request: issuer {} not configured for this robot",
            world.broker.issuer.issuer()
        )),
        "{shown}"
    );
    // Quay fetched nothing from the broker.
    assert_eq!(world.quay.discovery_fetches(), 0);
}

#[tokio::test]
async fn an_unpublished_key_fails_on_quays_side_and_a_published_rotation_works() {
    let world = World::start();
    let service = world.service();
    // The broker signs with a new key its JWKS does not show yet: Quay cannot load the key,
    // an exception it does not handle.
    world
        .broker
        .issuer
        .replace_keys(vec![key(1), key(0)])
        .unwrap();
    let error = pull_error(&service).await;
    assert_eq!(error.failure, Failure::ServerError { status: 500 });
    assert!(
        error
            .to_string()
            .ends_with("Quay answered 500 Internal Server Error"),
        "{error}"
    );
    // Published (the old key kept for its last tokens): Quay fetches the JWKS anew.
    world.broker.publish();
    let now = SystemTime::now();
    let credential = service
        .issue(grant(APP, &["repository:team-a/app:pull"], now), now)
        .await
        .unwrap();
    assert_eq!(
        registry_base(
            world.quay.addr(),
            &credential.username,
            credential.password.expose_secret()
        )
        .await,
        200
    );
    assert_eq!(world.quay.discovery_fetches(), 2);
}

#[tokio::test]
async fn a_grant_across_organizations_makes_no_exchange() {
    let world = World::start();
    let service = world.service();
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
    assert_names_of("quay", &error, "map the grant");
    assert!(
        matches!(error.failure, Failure::GrantSpansProjects { .. }),
        "{error}"
    );
    assert_eq!(world.quay.api_calls(), 0);
}

#[tokio::test]
async fn an_unknown_robot_is_refused_with_quays_reason() {
    let world = World::start();
    let mut config = world.config();
    "ghost".clone_into(&mut config.pull_robot);
    let error = issue_error(
        &service_with(config),
        "quay",
        "exchange the broker's token for robot \"team-a+ghost\": ",
        false,
    )
    .await;
    assert_eq!(
        error.failure,
        Failure::Rejected {
            status: 400,
            message: "Could not find robot with specified username".to_owned()
        }
    );
}

// === faults ===

#[tokio::test]
async fn every_failure_names_quay_the_registry_and_the_step() {
    let world = World::start();
    let cases = with_jwt_refused(failure_table(
        Fault::Hangup,
        Fault::Status,
        Fault::Malformed,
        Some(|error| {
            assert_eq!(
                error.failure,
                Failure::Forbidden {
                    message: "injected fault".to_owned()
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
    ));
    check_failures(
        cases,
        |fault| world.quay.fail_next(fault, 1),
        async || {
            issue_error(
                &world.service(),
                "quay",
                "exchange the broker's token for robot \"team-a+puller\": ",
                true,
            )
            .await
        },
    )
    .await;

    world.quay.fail_next(Fault::Slow(Duration::from_secs(5)), 1);
    let mut impatient = world.config();
    impatient.request_deadline = IMPATIENT;
    let error = issue_error(
        &service_with(impatient),
        "quay",
        "exchange the broker's token for robot \"team-a+puller\": ",
        true,
    )
    .await;
    timed_out(&error, "Quay");
}

#[tokio::test]
async fn an_unreachable_quay_is_retryable() {
    let world = World::start();
    let mut config = world.config();
    "http://127.0.0.1:1".clone_into(&mut config.url);
    let error = pull_error(&service_with(config)).await;
    unreachable(&error);
}
