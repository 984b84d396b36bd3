//! Service-account token mode over the real gRPC listener (TLS on 127.0.0.1): a trusted plugin
//! presents a pod's service-account token and gets a credential for the mapped identity.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use svid_broker_dev::satoken::{DevSaAlgorithm, DevServiceAccountIssuer, SaTokenRequest};
use svid_broker_dev::{DevTrustDomain, DevX509Svid};
use svid_broker_identity::authorize::Authorizer;
use svid_broker_identity::bundle::BundleProvider;
use svid_broker_identity::clock::SystemClock;
use svid_broker_identity::id::{SpiffeId, TrustDomain};
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_policy::Policy;
use svid_broker_proto::exchange::token_exchange_client::TokenExchangeClient;
use svid_broker_proto::exchange::{ExchangeRequest, ExchangeResponse, SubjectTokenType, TokenType};
use svid_broker_token::{KeyRing, KeyRingConfig, SigningAlgorithm, SigningCa, TokenMinter};
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::Channel;

use super::tls::{certified_key, server_tls_config};
use super::{GrpcError, serve};
use crate::audit::AuditSink;
use crate::authn::{AuthMethod, Caller, Subject};
use crate::credential::CredentialKeys;
use crate::engine::{Broker, BrokerOptions, ExchangeOutput};
use crate::error::{Denial, ExchangeError};
use crate::request::{Endpoint, ExchangeKind, RequestContext};
use crate::satoken::{
    IdTemplate, IssuerKeys, SaIssuer, ServiceAccountMode, ServiceAccountValidator, TrustedActors,
};
use svid_broker_client::transport::{client_tls_config, connect};

const STEP: Duration = Duration::from_secs(10);
const BROKER_ID: &str = "spiffe://example.org/svid-broker";
const PLUGIN_ID: &str = "spiffe://example.org/k8s/node/n1/credential-provider";
/// The plugin of another node (for the `{node}` binding).
const PLUGIN_N2_ID: &str = "spiffe://example.org/k8s/node/n2/credential-provider";
const UNTRUSTED_ID: &str = "spiffe://example.org/ns/blue/sa/app";
const MAPPED: &str = "spiffe://example.org/ns/blue/sa/app";
const SERVICE: &str = "registry.local";
const AUDIENCE: &str = "svid-broker";
const SA_ISS: &str = "https://k8s.test";
const SA_AUD: &str = "svid-broker-sa";

const POLICY: &str = r#"
[[registries]]
name = "local"
service = "registry.local"
issuer = "svid-broker"
profile = "distribution-2"
hosts = ["127.0.0.1:5000"]

[[rules]]
id = "teams-own-namespace"
subject = "spiffe://example.org/ns/{ns}/sa/*"
registry = "local"
repositories = ["team-{ns}/*"]
actions = ["pull", "push"]
"#;

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

enum Mode {
    /// Trusted actors = the node plugins, one issuer with keys.
    On,
    /// No `[service_account]` at all.
    Off,
    /// Configured, but the issuer's keys never loaded.
    NoKeys,
    /// Like `On`, but the trusted actor pattern captures `{node}`.
    NodeBound,
}

struct Running {
    td: Arc<DevTrustDomain>,
    bundles: Arc<dyn BundleProvider>,
    sa: DevServiceAccountIssuer,
    broker: Arc<Broker>,
    audit: Arc<Mutex<Vec<String>>>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), GrpcError>>,
}

impl Running {
    async fn start(mode: Mode) -> Self {
        let td = Arc::new(
            DevTrustDomain::new(
                TrustDomain::parse("example.org").unwrap(),
                [
                    id(BROKER_ID),
                    id(PLUGIN_ID),
                    id(PLUGIN_N2_ID),
                    id(UNTRUSTED_ID),
                ],
            )
            .unwrap(),
        );
        let bundles: Arc<dyn BundleProvider> = Arc::new(Arc::new(td.bundle_set().unwrap()));
        let sa = DevServiceAccountIssuer::new(SA_ISS, DevSaAlgorithm::Es256).unwrap();
        let now = SystemTime::now();
        let ca = SigningCa::generate(
            SigningAlgorithm::Es256,
            "sa grpc test",
            Duration::from_secs(30 * 24 * 3600),
            now,
        )
        .unwrap();
        let ring = KeyRing::new(ca, KeyRingConfig::default(), now).unwrap();
        let (sink, audit) = AuditSink::memory();
        let mut options = BrokerOptions::new(AUDIENCE);
        options.audit = sink;
        let example = TrustDomain::parse("example.org").unwrap();
        let keys = Arc::new(IssuerKeys::new(example.clone()));
        if matches!(mode, Mode::On | Mode::NodeBound) {
            keys.install_jwks(sa.jwks_json().as_bytes()).unwrap();
        }
        let actor_pattern = match mode {
            Mode::NodeBound => "spiffe://example.org/k8s/node/{node}/credential-provider",
            _ => "spiffe://example.org/k8s/node/*/credential-provider",
        };
        if !matches!(mode, Mode::Off) {
            options.service_accounts = Some(ServiceAccountMode {
                trusted_actors: TrustedActors::parse(&[actor_pattern]).unwrap(),
                validator: ServiceAccountValidator::new(vec![SaIssuer::new(
                    SA_ISS,
                    vec![SA_AUD.to_owned()],
                    IdTemplate::default_for(&example),
                    keys,
                )]),
            });
        }
        let broker = Arc::new(
            Broker::new(
                Policy::from_toml_str(POLICY).unwrap(),
                Arc::clone(&bundles),
                TokenMinter::new(ring),
                CredentialKeys::random().unwrap(),
                options,
            )
            .unwrap(),
        );
        let own = td.x509_svid(&id(BROKER_ID)).unwrap();
        let server_svid = Arc::new(arc_swap::ArcSwap::new(
            certified_key(own.chain().to_vec(), own.private_key().to_rustls()).unwrap(),
        ));
        let tls = server_tls_config(server_svid, broker.tls_client_verifier()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            Arc::clone(&broker),
            Arc::new(SystemClock),
            listener,
            tls,
            async move {
                let _ = rx.await;
            },
        ));
        Self {
            td,
            bundles,
            sa,
            broker,
            audit,
            addr,
            shutdown: Some(tx),
            task,
        }
    }

    fn svid(&self, who: &str) -> Arc<DevX509Svid> {
        self.td.x509_svid(&id(who)).unwrap()
    }

    async fn client(&self, cert: Option<&DevX509Svid>) -> TokenExchangeClient<Channel> {
        let config = client_tls_config(
            Arc::clone(&self.bundles),
            Authorizer::Exact(id(BROKER_ID)),
            cert.map(|s| (s.chain().to_vec(), s.private_key().to_rustls())),
        )
        .unwrap();
        let channel = tokio::time::timeout(STEP, connect(self.addr, config))
            .await
            .unwrap()
            .unwrap();
        TokenExchangeClient::new(channel)
    }

    fn sa_token(&self, request: &SaTokenRequest) -> String {
        self.sa.mint(request).unwrap().expose_secret().to_owned()
    }

    fn audit_events(&self) -> Vec<serde_json::Value> {
        self.audit
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(STEP, &mut self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn pod_token_request() -> SaTokenRequest {
    SaTokenRequest::new("blue", "app", SA_AUD).pod("app-7d9f")
}

fn sa_request(kind: TokenType, scopes: &[&str], token: &str) -> ExchangeRequest {
    ExchangeRequest {
        requested_token_type: kind.into(),
        audience: SERVICE.to_owned(),
        scope: scopes.iter().map(|s| (*s).to_owned()).collect(),
        subject_token: token.to_owned(),
        subject_token_type: SubjectTokenType::KubernetesServiceAccount.into(),
    }
}

async fn call(
    client: &mut TokenExchangeClient<Channel>,
    request: impl tonic::IntoRequest<ExchangeRequest>,
) -> Result<ExchangeResponse, tonic::Status> {
    tokio::time::timeout(STEP, client.exchange(request))
        .await
        .unwrap()
        .map(tonic::Response::into_inner)
}

/// A request for `SERVICE` that passed `ExchangeRequest::parse` (panics on a bad scope).
fn checked(kind: ExchangeKind, endpoint: Endpoint, scopes: &[String]) -> crate::ExchangeRequest {
    let context = RequestContext::new(kind, endpoint, None)
        .with_service(SERVICE)
        .with_scopes(scopes);
    crate::ExchangeRequest::parse(context, SERVICE, scopes).unwrap()
}

/// What the realm would grant a caller presenting `username`/`password` for `scope`.
fn realm_grant(broker: &Broker, username: &str, password: &str, scope: &str) -> Vec<String> {
    let now = SystemTime::now();
    let auth = broker
        .authenticator()
        .authenticate_secret(Some(username), password, now)
        .unwrap();
    assert_eq!(auth.caller.spiffe_id.as_str(), MAPPED);
    let request = checked(
        ExchangeKind::AccessToken,
        Endpoint::RealmGet,
        &[scope.to_owned()],
    );
    let subject = Subject {
        authenticated: auth,
        on_behalf: None,
    };
    broker
        .realm_token_for(&subject, &request, now)
        .unwrap()
        .access
        .granted
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[tokio::test]
async fn trusted_plugin_gets_a_login_credential_for_the_mapped_pod_identity() {
    let server = Running::start(Mode::On).await;
    let plugin = server.svid(PLUGIN_ID);
    let mut client = server.client(Some(&plugin)).await;
    let token = server.sa_token(&pod_token_request());
    let response = call(
        &mut client,
        sa_request(TokenType::RegistryLoginCredential, &[], &token),
    )
    .await
    .unwrap();
    assert_eq!(response.subject, MAPPED);
    assert_eq!(response.username, MAPPED);
    assert_ne!(response.access_token, token);
    assert!(response.access_token.starts_with("sbl1."));
    assert!(response.expires_in > 0);

    // Policy applies to the mapped identity: its namespace's repositories, nothing else.
    let pass = &response.access_token;
    assert_eq!(
        realm_grant(
            &server.broker,
            MAPPED,
            pass,
            "repository:team-blue/app:pull"
        ),
        ["repository:team-blue/app:pull"]
    );
    assert!(realm_grant(&server.broker, MAPPED, pass, "repository:team-red/app:pull").is_empty());

    // One audit event: subject = mapped ID, actor = the plugin, the pod recorded.
    let events = server.audit_events();
    let ev = events.iter().find(|e| e["endpoint"] == "grpc").unwrap();
    assert_eq!(ev["decision"], "allow");
    assert_eq!(ev["subject"], MAPPED);
    assert_eq!(ev["actor"], PLUGIN_ID);
    assert_eq!(ev["subject_token"]["namespace"], "blue");
    assert_eq!(ev["subject_token"]["service_account"], "app");
    assert_eq!(ev["subject_token"]["pod"], "app-7d9f");
    assert_eq!(ev["subject_token"]["actor_method"], "x509-svid");
    let text = server.audit.lock().unwrap().join("\n");
    assert!(!text.contains(&token) && !text.contains(pass.as_str()));
    server.stop().await;
}

#[tokio::test]
async fn access_tokens_follow_the_mapped_identity_policy() {
    let server = Running::start(Mode::On).await;
    let plugin = server.svid(PLUGIN_ID);
    let mut client = server.client(Some(&plugin)).await;
    let token = server.sa_token(&pod_token_request());
    let ok = call(
        &mut client,
        sa_request(
            TokenType::RegistryAccessToken,
            &["repository:team-blue/app:pull"],
            &token,
        ),
    )
    .await
    .unwrap();
    assert_eq!(ok.subject, MAPPED);
    assert_eq!(ok.scope, ["repository:team-blue/app:pull"]);
    let other_ns = call(
        &mut client,
        sa_request(
            TokenType::RegistryAccessToken,
            &["repository:team-red/app:pull"],
            &token,
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(other_ns.code(), Code::PermissionDenied, "{other_ns:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_jwt_svid_bearer_actor_is_accepted_too() {
    let server = Running::start(Mode::On).await;
    let mut client = server.client(None).await;
    let bearer = server
        .td
        .issue_jwt_svid(&id(PLUGIN_ID), &[AUDIENCE])
        .unwrap()
        .token()
        .expose_secret()
        .to_owned();
    let token = server.sa_token(&pod_token_request());
    let request = svid_broker_client::transport::with_bearer(
        sa_request(TokenType::RegistryLoginCredential, &[], &token),
        &bearer,
    )
    .unwrap();
    let response = call(&mut client, request).await.unwrap();
    assert_eq!(response.subject, MAPPED);
    server.stop().await;
}

#[tokio::test]
async fn an_untrusted_actor_is_permission_denied() {
    let server = Running::start(Mode::On).await;
    let workload = server.svid(UNTRUSTED_ID);
    let mut client = server.client(Some(&workload)).await;
    let token = server.sa_token(&pod_token_request());
    let status = call(
        &mut client,
        sa_request(TokenType::RegistryLoginCredential, &[], &token),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("trusted_actors"),
        "{}",
        status.message()
    );
    let events = server.audit_events();
    let ev = events.last().unwrap();
    assert_eq!(ev["decision"], "deny");
    assert_eq!(ev["actor"], UNTRUSTED_ID);
    assert!(ev.get("subject").is_none());
    server.stop().await;
}

#[tokio::test]
async fn bad_service_account_tokens_are_unauthenticated() {
    let server = Running::start(Mode::On).await;
    let plugin = server.svid(PLUGIN_ID);
    let mut client = server.client(Some(&plugin)).await;
    let stranger = DevServiceAccountIssuer::new(SA_ISS, DevSaAlgorithm::Es256).unwrap();
    let other_issuer =
        DevServiceAccountIssuer::new("https://other", DevSaAlgorithm::Es256).unwrap();
    let good = server.sa_token(&pod_token_request());
    let (input, _) = good.rsplit_once('.').unwrap();
    let forged_sig = {
        let other = server.sa_token(&SaTokenRequest::new("red", "app", SA_AUD));
        format!("{input}.{}", other.rsplit_once('.').unwrap().1)
    };
    let cases = [
        (
            "wrong audience",
            server.sa_token(&SaTokenRequest::new("blue", "app", "kubernetes")),
            "audience",
        ),
        (
            "expired",
            server.sa_token(
                &pod_token_request()
                    .issued_at(SystemTime::now() - Duration::from_secs(7200))
                    .ttl(Duration::from_secs(600)),
            ),
            "expired",
        ),
        (
            "unknown issuer",
            other_issuer
                .mint(&pod_token_request())
                .unwrap()
                .expose_secret()
                .to_owned(),
            "issuer",
        ),
        (
            "unknown key",
            stranger
                .mint(&pod_token_request())
                .unwrap()
                .expose_secret()
                .to_owned(),
            "signature",
        ),
        ("bad signature", forged_sig, "signature"),
        ("not a jwt", "garbage".to_owned(), "compact jws"),
    ];
    for (what, token, needle) in cases {
        let status = call(
            &mut client,
            sa_request(TokenType::RegistryLoginCredential, &[], &token),
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        assert!(
            status.message().contains(needle),
            "{what}: {}",
            status.message()
        );
        assert!(!status.message().contains(&token), "{what}");
    }
    server.stop().await;
}

#[tokio::test]
async fn without_service_account_mode_subject_tokens_are_refused_clearly() {
    let server = Running::start(Mode::Off).await;
    let plugin = server.svid(PLUGIN_ID);
    let mut client = server.client(Some(&plugin)).await;
    let token = server.sa_token(&pod_token_request());
    let status = call(
        &mut client,
        sa_request(TokenType::RegistryLoginCredential, &[], &token),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status
            .message()
            .contains("service-account token mode is not enabled"),
        "{}",
        status.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn issuer_without_keys_is_unavailable() {
    let server = Running::start(Mode::NoKeys).await;
    let plugin = server.svid(PLUGIN_ID);
    let mut client = server.client(Some(&plugin)).await;
    let token = server.sa_token(&pod_token_request());
    let status = call(
        &mut client,
        sa_request(TokenType::RegistryLoginCredential, &[], &token),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    server.stop().await;
}

#[tokio::test]
async fn plain_requests_still_use_the_callers_own_identity() {
    let server = Running::start(Mode::On).await;
    let workload = server.svid(UNTRUSTED_ID);
    let mut client = server.client(Some(&workload)).await;
    let response = call(
        &mut client,
        ExchangeRequest {
            requested_token_type: TokenType::RegistryLoginCredential.into(),
            audience: SERVICE.to_owned(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(response.subject, UNTRUSTED_ID);
    server.stop().await;
}

#[tokio::test]
async fn derived_credentials_do_not_outlive_the_service_account_token() {
    let server = Running::start(Mode::On).await;
    let plugin = server.svid(PLUGIN_ID);
    let mut client = server.client(Some(&plugin)).await;
    // 10 minutes left on the token; login credentials default to 30 minutes.
    let short = server.sa_token(&pod_token_request().ttl(Duration::from_secs(600)));
    let login = call(
        &mut client,
        sa_request(TokenType::RegistryLoginCredential, &[], &short),
    )
    .await
    .unwrap();
    assert!(
        (590..=600).contains(&login.expires_in),
        "{}",
        login.expires_in
    );
    // Nearly expired (within the leeway): the floor is the minimum token lifetime.
    let nearly = server.sa_token(
        &pod_token_request()
            .issued_at(SystemTime::now() - Duration::from_secs(3590))
            .ttl(Duration::from_secs(3600)),
    );
    let access = call(
        &mut client,
        sa_request(
            TokenType::RegistryAccessToken,
            &["repository:team-blue/app:pull"],
            &nearly,
        ),
    )
    .await
    .unwrap();
    assert!(
        (50..=60).contains(&access.expires_in),
        "{}",
        access.expires_in
    );
    // A long-lived token leaves the configured lifetime in force.
    let long = server.sa_token(&pod_token_request());
    let login = call(
        &mut client,
        sa_request(TokenType::RegistryLoginCredential, &[], &long),
    )
    .await
    .unwrap();
    assert!(login.expires_in > 1700, "{}", login.expires_in);
    server.stop().await;
}

#[tokio::test]
async fn only_an_svid_may_vouch_for_a_subject() {
    let server = Running::start(Mode::On).await;
    let token = server.sa_token(&pod_token_request());
    let request = checked(ExchangeKind::LoginCredential, Endpoint::Grpc, &[]);
    let now = SystemTime::now();
    let authn = server.broker.authenticator();
    // The plugin's own ID, but proven by a broker credential rather than an SVID.
    let by_credential = Caller {
        spiffe_id: id(PLUGIN_ID),
        method: AuthMethod::LoginCredential,
    };
    let err = authn.on_behalf_of(&by_credential, &token, now).unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::PermissionDenied {
            reason: Denial::UntrustedActor { .. }
        }
    ));
    let by_svid = Caller {
        spiffe_id: id(PLUGIN_ID),
        method: AuthMethod::X509Svid,
    };
    let subject = authn.on_behalf_of(&by_svid, &token, now).unwrap();
    assert_eq!(subject.spiffe_id().as_str(), MAPPED);
    assert_eq!(subject.caller().method, AuthMethod::ServiceAccountToken);
    let exchanged = server.broker.exchange_for(&subject, &request, now).unwrap();
    assert_eq!(exchanged.subject, subject);
    let ExchangeOutput::LoginCredential(c) = exchanged.output else {
        panic!("{exchanged:?}")
    };
    assert_eq!(c.username, MAPPED);
    server.stop().await;
}

/// Issue 8 item 5: with `{node}` in the trusted actor pattern, a node's plugin gets credentials
/// only for pods bound to its own node; a token for a pod elsewhere, or one without the node
/// claim, is refused and audited.
#[tokio::test]
async fn a_node_bound_plugin_speaks_only_for_pods_of_its_node() {
    let server = Running::start(Mode::NodeBound).await;
    let n1 = server.svid(PLUGIN_ID);
    let n2 = server.svid(PLUGIN_N2_ID);
    let mut on_n1 = server.client(Some(&n1)).await;
    let mut on_n2 = server.client(Some(&n2)).await;
    let pod_on_n1 = server.sa_token(&pod_token_request().node("n1"));

    let ok = call(
        &mut on_n1,
        sa_request(TokenType::RegistryLoginCredential, &[], &pod_on_n1),
    )
    .await
    .unwrap();
    assert_eq!(ok.subject, MAPPED);
    let events = server.audit_events();
    let ev = events.last().unwrap();
    assert_eq!(ev["decision"], "allow");
    assert_eq!(ev["subject_token"]["node"], "n1", "{ev}");

    let other_node = call(
        &mut on_n2,
        sa_request(TokenType::RegistryLoginCredential, &[], &pod_on_n1),
    )
    .await
    .unwrap_err();
    assert_eq!(other_node.code(), Code::Unauthenticated, "{other_node:?}");
    assert!(
        other_node.message().contains("another node"),
        "{}",
        other_node.message()
    );
    let events = server.audit_events();
    let ev = events.last().unwrap();
    assert_eq!(ev["decision"], "deny");
    assert_eq!(ev["actor"], PLUGIN_N2_ID);
    assert!(ev.get("subject").is_none());

    let unbound = server.sa_token(&pod_token_request());
    let no_claim = call(
        &mut on_n1,
        sa_request(
            TokenType::RegistryAccessToken,
            &["repository:team-blue/app:pull"],
            &unbound,
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(no_claim.code(), Code::Unauthenticated, "{no_claim:?}");
    assert!(
        no_claim.message().contains("kubernetes.io.node.name"),
        "{}",
        no_claim.message()
    );
    server.stop().await;
}
