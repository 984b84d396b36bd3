//! Tests against an in-process broker (`BrokerServer`) and dev Workload APIs.
//!
//! The dev Workload API serves every identity of its trust domain with the first as default, so
//! each workload gets its own dev trust domain; the broker trusts them through bundle files, and
//! the client verifies the broker with [`ClientOptions::broker_bundles`].

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use svid_broker_dev::{DevTrustDomain, WorkloadApiHandle, WorkloadApiServer};
use svid_broker_identity::bundle::BundleProvider;
use svid_broker_identity::clock::SystemClock;
use svid_broker_identity::{SpiffeId, TrustDomain};
use svid_broker_server::config::BrokerConfig;
use svid_broker_server::{BrokerServer, ServerHandle};

use super::*;

const AUDIENCE: &str = "svid-broker";
const SERVICE: &str = "registry.local";
const BROKER: &str = "spiffe://broker.test/svid-broker";
const BUILDER: &str = "spiffe://ci.example/builder";
const STRANGER: &str = "spiffe://other.example/stranger";

const POLICY: &str = r#"
[[registries]]
name = "local"
service = "registry.local"
issuer = "svid-broker"
profile = "distribution-2"
hosts = ["127.0.0.1:5000"]

[[rules]]
id = "builder"
subject = "spiffe://ci.example/builder"
registry = "local"
repositories = ["team/*"]
actions = ["pull", "push"]
"#;

/// Runs `f` on a fresh current-thread runtime, as a one-shot caller would.
fn run<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn trust_domain(who: &str) -> Arc<DevTrustDomain> {
    let who = id(who);
    Arc::new(DevTrustDomain::new(who.trust_domain().clone(), [who]).unwrap())
}

struct Fixture {
    broker_td: Arc<DevTrustDomain>,
    handle: Option<ServerHandle>,
    apis: Vec<(String, WorkloadApiHandle)>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let broker_td = trust_domain(BROKER);
        let mut apis = Vec::new();
        let mut bundle_files = Vec::new();
        for (i, who) in [BROKER, BUILDER, STRANGER].into_iter().enumerate() {
            let td = if who == BROKER {
                Arc::clone(&broker_td)
            } else {
                let td = trust_domain(who);
                let path = dir.path().join(format!("bundle-{i}.json"));
                std::fs::write(&path, td.bundle_document_json()).unwrap();
                bundle_files.push(format!(
                    r#"{{ trust_domain = "{}", path = "{}" }}"#,
                    td.trust_domain(),
                    path.display()
                ));
                td
            };
            let api = runtime
                .block_on(
                    WorkloadApiServer::builder(td)
                        .auto_rotate(None)
                        .serve(dir.path().join(format!("agent-{i}.sock"))),
                )
                .unwrap();
            apis.push((who.to_owned(), api));
        }
        std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
        let config = BrokerConfig::from_toml_str(
            &format!(
                r#"
[server]
http_addr = "127.0.0.1:0"
grpc_addr = "127.0.0.1:0"
public_url = "http://127.0.0.1:1"
shutdown_grace_seconds = 5
[identity]
audience = "{AUDIENCE}"
workload_api = "{}"
bundle_files = [{}]
[policy]
file = "policy.toml"
[signing]
generate = true
[log]
audit = "audit.log"
"#,
                apis[0].1.endpoint(),
                bundle_files.join(", ")
            ),
            dir.path(),
        )
        .unwrap();
        let handle = runtime
            .block_on(BrokerServer::start(config, Arc::new(SystemClock)))
            .unwrap();
        Fixture {
            broker_td,
            handle: Some(handle),
            apis,
            runtime,
            _dir: dir,
        }
    }

    fn grpc_addr(&self) -> SocketAddr {
        self.handle.as_ref().unwrap().grpc_addr().unwrap()
    }

    fn endpoint(&self, who: &str) -> String {
        self.apis
            .iter()
            .find(|(w, _)| w == who)
            .map(|(_, api)| api.endpoint())
            .unwrap()
    }

    fn broker_bundles(&self) -> Arc<dyn BundleProvider> {
        Arc::new(Arc::new(self.broker_td.bundle_set().unwrap()))
    }

    /// Options for `who` against this broker, with fast retries.
    fn options(&self, who: &str) -> ClientOptions {
        ClientOptions::new(self.grpc_addr().to_string(), id(BROKER))
            .workload_api(self.endpoint(who))
            .broker_bundles(self.broker_bundles())
            .deadline(Duration::from_secs(10))
            .retry(
                RetryPolicy::default()
                    .backoff(Duration::from_millis(10), Duration::from_millis(50)),
            )
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.runtime.block_on(handle.shutdown());
        }
        for (_, api) in self.apis.drain(..) {
            let _ = self.runtime.block_on(api.shutdown());
        }
    }
}

#[test]
fn x509_svid_gets_a_login_credential() {
    let fx = Fixture::start();
    run(async {
        let before = SystemTime::now();
        let credential = exchange_once(
            fx.options(BUILDER),
            &ExchangeParams::login_credential(SERVICE),
        )
        .await
        .unwrap();
        assert_eq!(credential.kind, CredentialKind::LoginCredential);
        assert_eq!(credential.username, BUILDER);
        assert_eq!(credential.subject, BUILDER);
        assert!(credential.secret.expose_secret().starts_with("sbl1."));
        assert!(credential.remaining(before) > Duration::from_secs(60));
        assert!(!format!("{credential:?}").contains(credential.secret.expose_secret()));
    });
}

#[test]
fn jwt_svid_bearer_gets_an_access_token() {
    let fx = Fixture::start();
    run(async {
        let client = BrokerClient::connect(fx.options(BUILDER).jwt_svid(AUDIENCE))
            .await
            .unwrap();
        assert_eq!(client.spiffe_id().unwrap(), id(BUILDER));
        let credential = client
            .exchange(&ExchangeParams::access_token(
                SERVICE,
                ["repository:team/app:pull"],
            ))
            .await
            .unwrap();
        assert_eq!(credential.kind, CredentialKind::AccessToken);
        assert_eq!(credential.scopes, ["repository:team/app:pull"]);
        assert_eq!(credential.subject, BUILDER);
        // The same client again: one fresh connection per call.
        client
            .exchange(&ExchangeParams::login_credential(SERVICE))
            .await
            .unwrap();
    });
}

#[test]
fn an_identity_no_rule_allows_is_permission_denied() {
    let fx = Fixture::start();
    run(async {
        let err = exchange_once(
            fx.options(STRANGER),
            &ExchangeParams::access_token(SERVICE, ["repository:team/app:pull"]),
        )
        .await
        .unwrap_err();
        assert_eq!(err.class(), ErrorClass::PermissionDenied, "{err:?}");
    });
}

#[test]
fn the_wrong_broker_id_fails_the_handshake_without_retrying() {
    let fx = Fixture::start();
    run(async {
        let mut options = fx.options(BUILDER);
        options.broker_id = Authorizer::Exact(id("spiffe://broker.test/someone-else"));
        let err = exchange_once(options, &ExchangeParams::login_credential(SERVICE))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::BrokerIdentity { .. }), "{err:?}");
        assert_eq!(err.class(), ErrorClass::BrokerIdentity);
    });
}

#[test]
fn a_broker_that_is_down_is_retried_then_unavailable() {
    let fx = Fixture::start();
    run(async {
        // A port nothing listens on: bound, then released.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut options = fx.options(BUILDER);
        options.broker = format!("127.0.0.1:{port}");
        options.retry = RetryPolicy::default()
            .backoff(Duration::from_millis(1), Duration::from_millis(5))
            .max_attempts(3);
        let err = exchange_once(options, &ExchangeParams::login_credential(SERVICE))
            .await
            .unwrap_err();
        match &err {
            ClientError::BrokerUnavailable { attempts, .. } => assert_eq!(*attempts, 3),
            other => panic!("expected unavailable, got {other:?}"),
        }
        assert_eq!(err.class(), ErrorClass::BrokerUnavailable);
    });
}

#[test]
fn a_broker_that_never_answers_hits_the_deadline() {
    let fx = Fixture::start();
    run(async {
        // Accepts TCP (the kernel does, from the backlog) but never speaks TLS.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut options = fx.options(BUILDER);
        options.broker = silent.local_addr().unwrap().to_string();
        options.deadline = Duration::from_millis(500);
        let err = exchange_once(options, &ExchangeParams::login_credential(SERVICE))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Deadline {
                    step: Step::Connect,
                    ..
                }
            ),
            "{err:?}"
        );
        drop(silent);
    });
}

#[test]
fn a_missing_workload_api_socket_is_unreachable() {
    let fx = Fixture::start();
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let mut options = fx.options(BUILDER);
        options.workload_api = Some(format!("unix://{}", dir.path().join("none.sock").display()));
        let err = exchange_once(options, &ExchangeParams::login_credential(SERVICE))
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::WorkloadApiUnreachable, "{err:?}");
        assert!(
            err.one_line().contains("does not exist"),
            "{}",
            err.one_line()
        );
    });
}

#[test]
fn a_dead_agent_socket_is_unreachable_within_the_deadline() {
    let fx = Fixture::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.sock");
    // The socket file stays behind when the listener goes: connections are refused.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let mut options = fx.options(BUILDER);
    options.workload_api = Some(format!("unix://{}", path.display()));
    options.deadline = Duration::from_millis(800);
    let err = run(exchange_once(
        options,
        &ExchangeParams::login_credential(SERVICE),
    ))
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::WorkloadApiUnreachable, "{err:?}");
}

#[test]
fn an_invalid_broker_address_is_refused() {
    let fx = Fixture::start();
    run(async {
        let mut options = fx.options(BUILDER);
        options.broker = "no-port".to_owned();
        let err = exchange_once(options, &ExchangeParams::login_credential(SERVICE))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::InvalidBrokerAddress { .. }),
            "{err:?}"
        );
    });
}

/// The broker side of subject tokens is being built separately; whatever it answers, the
/// request must carry the token (the broker reacts to it) and the call must not succeed as the
/// actor.
#[test]
fn a_subject_token_is_sent_with_the_actor_svid() {
    let fx = Fixture::start();
    run(async {
        let params = ExchangeParams::login_credential(SERVICE).subject_token(
            SubjectToken::kubernetes_service_account(SecretString::from(
                "eyJhbGciOiJub25lIn0.e30.x",
            )),
        );
        let result = exchange_once(fx.options(BUILDER), &params).await;
        match result {
            Err(e) => assert!(
                matches!(
                    e.class(),
                    ErrorClass::Rejected
                        | ErrorClass::Unauthenticated
                        | ErrorClass::InvalidArgument
                        | ErrorClass::PermissionDenied
                ),
                "{e:?}"
            ),
            Ok(c) => panic!("an unsigned subject token was accepted for {}", c.subject),
        }
    });
}

#[test]
fn the_wire_request_carries_the_subject_token_and_its_type() {
    let params = ExchangeParams::login_credential(SERVICE)
        .scopes(["repository:team/app:pull"])
        .subject_token(SubjectToken::kubernetes_service_account(
            SecretString::from("sa-token"),
        ));
    let wire = params.to_proto();
    assert_eq!(wire.subject_token, "sa-token");
    assert_eq!(
        wire.subject_token_type(),
        proto::SubjectTokenType::KubernetesServiceAccount
    );
    assert_eq!(
        wire.requested_token_type(),
        proto::TokenType::RegistryLoginCredential
    );
    assert_eq!(wire.scope, ["repository:team/app:pull"]);
    assert_eq!(wire.audience, SERVICE);

    let own = ExchangeParams::access_token(SERVICE, ["repository:a:pull"]).to_proto();
    assert!(own.subject_token.is_empty());
    assert_eq!(
        own.subject_token_type(),
        proto::SubjectTokenType::Unspecified
    );
    assert_eq!(
        own.requested_token_type(),
        proto::TokenType::RegistryAccessToken
    );
}

#[test]
fn local_request_rules() {
    let rule = |p: ExchangeParams| match p.check() {
        Err(ClientError::InvalidRequest { rule }) => Some(rule),
        Ok(()) => None,
        Err(e) => panic!("{e:?}"),
    };
    assert_eq!(rule(ExchangeParams::login_credential(SERVICE)), None);
    assert_eq!(
        rule(ExchangeParams::login_credential("")),
        Some(RequestRule::EmptyAudience)
    );
    assert_eq!(
        rule(ExchangeParams::login_credential(
            "a".repeat(MAX_SERVICE_LEN + 1)
        )),
        Some(RequestRule::AudienceTooLong)
    );
    assert_eq!(
        rule(ExchangeParams::access_token(SERVICE, Vec::<String>::new())),
        Some(RequestRule::NoScope)
    );
    assert_eq!(
        rule(ExchangeParams::access_token(
            SERVICE,
            vec!["repository:a:pull"; MAX_SCOPE_PARAMS + 1]
        )),
        Some(RequestRule::TooManyScopes)
    );
    assert_eq!(
        rule(ExchangeParams::access_token(
            SERVICE,
            ["x".repeat(MAX_SCOPE_PARAM_LEN + 1)]
        )),
        Some(RequestRule::TooManyScopes)
    );
    let big = SubjectToken::kubernetes_service_account(SecretString::from(
        "a".repeat(MAX_SUBJECT_TOKEN_LEN + 1),
    ));
    assert_eq!(
        rule(ExchangeParams::login_credential(SERVICE).subject_token(big)),
        Some(RequestRule::SubjectTokenSize)
    );
    let empty = SubjectToken::kubernetes_service_account(SecretString::from(""));
    assert_eq!(
        rule(ExchangeParams::login_credential(SERVICE).subject_token(empty)),
        Some(RequestRule::SubjectTokenSize)
    );
}

#[test]
fn response_rules() {
    let ok = proto::ExchangeResponse {
        access_token: "pw".into(),
        username: "spiffe://td/w".into(),
        expires_at: 2_000_000_000,
        ..Default::default()
    };
    let c = Credential::from_proto(CredentialKind::LoginCredential, ok.clone()).unwrap();
    assert_eq!(
        c.expires_at,
        UNIX_EPOCH + Duration::from_secs(2_000_000_000)
    );
    let rule = |kind, r: proto::ExchangeResponse| match Credential::from_proto(kind, r) {
        Err(ClientError::InvalidResponse { rule }) => rule,
        other => panic!("{other:?}"),
    };
    let login = CredentialKind::LoginCredential;
    assert_eq!(
        rule(
            login,
            proto::ExchangeResponse {
                access_token: String::new(),
                ..ok.clone()
            }
        ),
        ResponseRule::EmptyToken
    );
    assert_eq!(
        rule(
            login,
            proto::ExchangeResponse {
                access_token: "a".repeat(MAX_CREDENTIAL_LEN + 1),
                ..ok.clone()
            }
        ),
        ResponseRule::TokenTooLong
    );
    assert_eq!(
        rule(
            login,
            proto::ExchangeResponse {
                username: String::new(),
                ..ok.clone()
            }
        ),
        ResponseRule::NoUsername
    );
    // Access tokens need no user name.
    assert!(
        Credential::from_proto(
            CredentialKind::AccessToken,
            proto::ExchangeResponse {
                username: String::new(),
                ..ok.clone()
            }
        )
        .is_ok()
    );
    assert_eq!(
        rule(
            login,
            proto::ExchangeResponse {
                expires_at: 0,
                ..ok.clone()
            }
        ),
        ResponseRule::NoExpiry
    );
    assert_eq!(
        rule(
            login,
            proto::ExchangeResponse {
                expires_at: -5,
                ..ok
            }
        ),
        ResponseRule::NoExpiry
    );
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let p = RetryPolicy::default().backoff(Duration::from_millis(100), Duration::from_millis(350));
    assert_eq!(p.base_delay(1), Duration::from_millis(100));
    assert_eq!(p.base_delay(2), Duration::from_millis(200));
    assert_eq!(p.base_delay(3), Duration::from_millis(350));
    assert_eq!(p.base_delay(40), Duration::from_millis(350));
    let jittered = with_jitter(Duration::from_millis(100));
    assert!(jittered >= Duration::from_millis(100) && jittered <= Duration::from_millis(125));
    assert_eq!(RetryPolicy::none().max_attempts, 1);
    assert_eq!(RetryPolicy::default().max_attempts(0).max_attempts, 1);
}

#[test]
fn blocking_wrapper_works_outside_a_runtime() {
    let fx = Fixture::start();
    let client = blocking::BrokerClient::connect(fx.options(BUILDER)).unwrap();
    let credential = client
        .exchange(&ExchangeParams::login_credential(SERVICE))
        .unwrap();
    assert_eq!(credential.username, BUILDER);
    let credential = blocking::exchange_once(
        fx.options(BUILDER).jwt_svid(AUDIENCE),
        &ExchangeParams::login_credential(SERVICE),
    )
    .unwrap();
    assert_eq!(credential.subject, BUILDER);
    let _ = TrustDomain::parse("example.org").unwrap();
}

#[test]
fn only_a_deadline_cuts_a_retry_short() {
    let deadline = ClientError::Deadline {
        step: Step::Exchange,
        deadline: Duration::from_secs(10),
    };
    let cancelled = ClientError::Rejected {
        code: tonic::Code::Cancelled,
        reason: "Timeout expired".to_owned(),
    };
    let refused = ClientError::Rejected {
        code: tonic::Code::FailedPrecondition,
        reason: "no".to_owned(),
    };
    assert!(cut_off_by_deadline(&deadline));
    assert!(cut_off_by_deadline(&cancelled));
    assert!(!cut_off_by_deadline(&refused));
    assert!(!cut_off_by_deadline(&ClientError::PermissionDenied {
        reason: String::new()
    }));
}
