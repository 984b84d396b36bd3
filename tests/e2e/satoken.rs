//! Service-account token mode (KEP-4412) end to end: a trusted credential-provider plugin, over
//! mTLS with its own X.509-SVID, exchanges a pod's Kubernetes service-account token (from a dev
//! issuer whose JWK Set the broker reads from a file) for a login credential of the mapped
//! identity `spiffe://example.org/ns/<namespace>/sa/<name>`, and `skopeo` (1.9.3) uses it as
//! `--src-creds` against Debian's `docker-registry` (2.8.2) whose realm is the broker: pulls in
//! the pod's namespace work, pulls from another namespace's repository are refused. The plugin
//! is trusted through a `{node}` pattern, so a token of a pod on another node is refused. And
//! `svid-broker serve` refuses, at load, two issuers whose templates can map to one ID.

use std::path::Path;
use std::sync::Arc;

use svid_broker_client::transport::{client_tls_config, exchange_client};
use svid_broker_dev::DevTrustDomain;
use svid_broker_dev::satoken::{DevSaAlgorithm, DevServiceAccountIssuer, SaTokenRequest};
use svid_broker_identity::authorize::Authorizer;
use svid_broker_identity::bundle::BundleProvider;
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_identity::{SpiffeId, TrustDomain};
use svid_broker_server::grpc::proto::{
    ExchangeRequest, ExchangeResponse, SubjectTokenType, TokenType,
};

use crate::fixtures::{BrokerFixture, BrokerSpec};
use crate::registry::{Registry, SkopeoOutput, TokenAuth, require, skopeo, write_oci_image};

const SERVICE: &str = "registry.local";
const ISSUER: &str = "svid-broker";
const BROKER_ID: &str = "spiffe://example.org/svid-broker";
const PLUGIN_ID: &str = "spiffe://example.org/k8s/node/node-1/credential-provider";
const BUILDER: &str = "spiffe://example.org/ns/ci/sa/builder";
const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const SA_AUDIENCE: &str = "svid-broker-registry";

const POLICY: &str = r#"
[[registries]]
name = "local"
service = "registry.local"
issuer = "svid-broker"
profile = "distribution-2"
hosts = ["127.0.0.1:5000"]

[[rules]]
id = "builder-seeds-every-team"
subject = "spiffe://example.org/ns/ci/sa/builder"
registry = "local"
repositories = ["team-blue/*", "team-red/*"]
actions = ["pull", "push"]

[[rules]]
id = "pods-pull-their-namespace"
subject = "spiffe://example.org/ns/{ns}/sa/*"
registry = "local"
repositories = ["team-{ns}/*"]
actions = ["pull"]
"#;

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

struct SaBroker {
    td: Arc<DevTrustDomain>,
    sa: DevServiceAccountIssuer,
    broker: BrokerFixture,
}

impl SaBroker {
    fn start() -> SaBroker {
        let td = Arc::new(
            DevTrustDomain::new(
                TrustDomain::parse("example.org").unwrap(),
                [id(BROKER_ID), id(PLUGIN_ID), id(BUILDER)],
            )
            .unwrap(),
        );
        let sa = DevServiceAccountIssuer::new(SA_ISSUER, DevSaAlgorithm::Rs256).unwrap();
        let broker = BrokerSpec::new(Arc::clone(&td))
            .policy(POLICY)
            .workload_api()
            .file("cluster.jwks.json", sa.jwks_json())
            .extra_config(&format!(
                r#"[service_account]
trusted_actors = ["spiffe://example.org/k8s/node/{{node}}/credential-provider"]
[[service_account.issuers]]
issuer = "{SA_ISSUER}"
audiences = ["{SA_AUDIENCE}"]
trust_domain = "example.org"
jwks_file = "cluster.jwks.json"
"#
            ))
            .start();
        SaBroker { td, sa, broker }
    }

    /// `Exchange` over mTLS as `who` for a login credential, with `subject_token` if given;
    /// an error is the status as `Code: message`.
    fn login_credential(
        &self,
        who: &str,
        subject_token: Option<&str>,
    ) -> Result<ExchangeResponse, String> {
        let bundles: Arc<dyn BundleProvider> = Arc::new(Arc::new(self.td.bundle_set().unwrap()));
        let svid = self.td.x509_svid(&id(who)).unwrap();
        let tls = client_tls_config(
            bundles,
            Authorizer::Exact(id(BROKER_ID)),
            Some((svid.chain().to_vec(), svid.private_key().to_rustls())),
        )
        .unwrap();
        let mut message = ExchangeRequest {
            requested_token_type: TokenType::RegistryLoginCredential.into(),
            audience: SERVICE.to_owned(),
            ..Default::default()
        };
        if let Some(token) = subject_token {
            message.subject_token = token.to_owned();
            message.subject_token_type = SubjectTokenType::KubernetesServiceAccount.into();
        }
        let addr = self.broker.grpc_addr();
        self.broker.runtime().block_on(async {
            let mut client = exchange_client(addr, tls).await.unwrap();
            client
                .exchange(message)
                .await
                .map(|r| r.into_inner())
                .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
        })
    }

    fn audit(&self) -> String {
        self.broker.audit()
    }
}

fn creds(response: &ExchangeResponse) -> String {
    format!("{}:{}", response.username, response.access_token)
}

fn push(registry: &Registry, work: &Path, creds: &str, repo: &str) -> SkopeoOutput {
    let image = work.join(format!("image-{}", repo.replace('/', "-")));
    write_oci_image(&image, "v1", &format!("hello {repo}\n"));
    skopeo(
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds,
            &format!("oci:{}:v1", image.display()),
            &registry.image_ref(repo, "v1"),
        ],
        work,
    )
}

fn pull(registry: &Registry, work: &Path, creds: &str, repo: &str) -> SkopeoOutput {
    let dest = work.join(format!("pulled-{}", repo.replace('/', "-")));
    skopeo(
        &[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            creds,
            &registry.image_ref(repo, "v1"),
            &format!("oci:{}:v1", dest.display()),
        ],
        work,
    )
}

#[test]
fn sa_token_login_credential_pulls_only_the_pods_namespace() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let broker = SaBroker::start();
    let realm = broker.broker.realm_url();
    let ca = broker.broker.ca_path();
    let registry = Registry::start(Some(&TokenAuth {
        realm: &realm,
        service: SERVICE,
        issuer: ISSUER,
        rootcertbundle: &ca,
    }));
    let work = tempfile::tempdir().unwrap();

    // Seed both namespaces' repositories with the builder's own identity.
    let builder = broker.login_credential(BUILDER, None).unwrap();
    for repo in ["team-blue/app", "team-red/app"] {
        let out = push(&registry, work.path(), &creds(&builder), repo);
        assert!(
            out.success(),
            "seeding {repo} failed: {}\n{}",
            out.stderr,
            registry.log()
        );
    }

    // The plugin presents the pod's projected token (namespace blue, service account app).
    let token = broker
        .sa
        .mint(
            &SaTokenRequest::new("blue", "app", SA_AUDIENCE)
                .pod("app-5f7c9")
                .node("node-1"),
        )
        .unwrap();
    let pod = broker
        .login_credential(PLUGIN_ID, Some(token.expose_secret()))
        .unwrap();
    assert_eq!(pod.username, "spiffe://example.org/ns/blue/sa/app");
    assert_eq!(pod.subject, pod.username);
    assert_ne!(pod.access_token, token.expose_secret());

    let out = pull(&registry, work.path(), &creds(&pod), "team-blue/app");
    assert!(
        out.success(),
        "pull in the pod's namespace failed: {}\n{}",
        out.stderr,
        registry.log()
    );
    assert!(
        work.path()
            .join("pulled-team-blue-app/index.json")
            .is_file()
    );
    let out = pull(&registry, work.path(), &creds(&pod), "team-red/app");
    assert!(!out.success(), "a blue pod pulled team-red/app");
    assert!(
        out.stderr.contains("unauthorized") || out.stderr.contains("denied"),
        "{}",
        out.stderr
    );

    // The same token from a caller that is not a trusted plugin is refused.
    let denied = broker
        .login_credential(BUILDER, Some(token.expose_secret()))
        .unwrap_err();
    assert!(denied.starts_with("PermissionDenied:"), "{denied}");
    // A token for another audience is not accepted from the plugin either.
    let other = broker
        .sa
        .mint(&SaTokenRequest::new("blue", "app", "kubernetes"))
        .unwrap();
    let refused = broker
        .login_credential(PLUGIN_ID, Some(other.expose_secret()))
        .unwrap_err();
    assert!(refused.starts_with("Unauthenticated:"), "{refused}");
    // Node 1's plugin may not speak for a pod on node 2, nor for a token without the node.
    for request in [
        SaTokenRequest::new("blue", "app", SA_AUDIENCE).node("node-2"),
        SaTokenRequest::new("blue", "app", SA_AUDIENCE),
    ] {
        let elsewhere = broker.sa.mint(&request).unwrap();
        let refused = broker
            .login_credential(PLUGIN_ID, Some(elsewhere.expose_secret()))
            .unwrap_err();
        assert!(refused.starts_with("Unauthenticated:"), "{refused}");
        assert!(refused.contains("node"), "{refused}");
    }

    let audit = broker.audit();
    assert!(
        audit.contains(r#""subject":"spiffe://example.org/ns/blue/sa/app""#)
            && audit.contains(&format!(r#""actor":"{PLUGIN_ID}""#)),
        "{audit}"
    );
    assert!(!audit.contains(token.expose_secret()) && !audit.contains(&pod.access_token));
}

/// Issue 8 item 5, at the binary: a second cluster whose template renders `.../sa/builder` would
/// make every one of its accounts in namespace `ci` the first cluster's `ci/builder` (the
/// identity that may push to every team above). `serve` refuses the file before it listens.
#[test]
fn serve_refuses_issuers_whose_templates_can_map_to_one_id() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    let config = |second_template: &str| {
        format!(
            r#"[server]
http_addr = "127.0.0.1:0"
public_url = "http://127.0.0.1:8080"
[identity]
audience = "svid-broker"
bundle_files = [{{ trust_domain = "example.org", path = "bundle.json" }}]
[policy]
file = "policy.toml"
[signing]
generate = true
[service_account]
trusted_actors = ["spiffe://example.org/k8s/node/{{node}}/credential-provider"]
[[service_account.issuers]]
issuer = "{SA_ISSUER}"
audiences = ["{SA_AUDIENCE}"]
trust_domain = "example.org"
jwks_file = "cluster-a.jwks.json"
[[service_account.issuers]]
issuer = "https://cluster-b.example.org"
audiences = ["{SA_AUDIENCE}"]
trust_domain = "example.org"
jwks_file = "cluster-b.jwks.json"
{second_template}
"#
        )
    };
    let cases = [
        (
            "spiffe_id_template = \"spiffe://example.org/ns/{namespace}/sa/builder\"\nallow_shared_identity = true",
            "two issuers map service accounts to the same SPIFFE IDs",
        ),
        (
            "spiffe_id_template = \"spiffe://example.org/ns/{namespace}/sa/builder\"",
            "allow_shared_identity = true",
        ),
    ];
    for (second, rule) in cases {
        let path = dir.path().join("broker.toml");
        std::fs::write(&path, config(second)).unwrap();
        let out = crate::support::run(&["serve", "--config", path.to_str().unwrap()], None);
        assert!(!out.status.success(), "{second}: {}", out.stderr);
        assert!(out.stderr.contains(rule), "{second}: {}", out.stderr);
        assert!(
            out.stderr.contains("service_account.issuers"),
            "{}",
            out.stderr
        );
    }
}
