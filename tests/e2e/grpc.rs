//! The gRPC `Exchange` against the real registry and client: the broker runs in-process with
//! its own X.509-SVID from a dev Workload API, a workload exchanges its SVID (over mTLS, or a
//! JWT-SVID bearer without a client certificate) for a registry access token, and `skopeo`
//! (1.9.3) pushes and pulls with it as `--dest-registry-token` / `--src-registry-token` against
//! Debian's `docker-registry` (2.8.2), which never talks to the broker.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use svid_broker_client::transport::{client_tls_config, exchange_client, with_bearer};
use svid_broker_dev::DevTrustDomain;
use svid_broker_identity::TrustDomain;
use svid_broker_identity::authorize::Authorizer;
use svid_broker_identity::bundle::BundleProvider;
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_server::grpc::proto::{ExchangeRequest, ExchangeResponse, TokenType};

use crate::fixtures::{AUDIENCE, BUILDER, BrokerFixture, BrokerSpec, ISSUER, READER, SERVICE, id};
use crate::registry::{Registry, SkopeoOutput, TokenAuth, require, skopeo, write_oci_image};

const BROKER_ID: &str = "spiffe://example.org/svid-broker";

/// The broker with both listeners, its dev Workload API, and the trust domain of both.
struct GrpcBroker {
    td: Arc<DevTrustDomain>,
    broker: BrokerFixture,
}

impl GrpcBroker {
    fn start() -> GrpcBroker {
        // The broker's own identity first: the Workload API's default SVID is its server
        // certificate.
        let td = Arc::new(
            DevTrustDomain::new(
                TrustDomain::parse("example.org").unwrap(),
                [id(BROKER_ID), id(BUILDER), id(READER)],
            )
            .unwrap(),
        );
        let broker = BrokerSpec::new(Arc::clone(&td)).workload_api().start();
        GrpcBroker { td, broker }
    }

    fn grpc_addr(&self) -> SocketAddr {
        self.broker.grpc_addr()
    }

    fn audit(&self) -> String {
        self.broker.audit()
    }

    /// `Exchange` for an access token: over mTLS with `who`'s X.509-SVID, or, with
    /// `bearer = true`, without a client certificate and with `who`'s JWT-SVID.
    fn access_token(&self, who: &str, scope: &str, bearer: bool) -> ExchangeResponse {
        self.exchange(TokenType::RegistryAccessToken, who, &[scope], bearer)
    }

    fn exchange(
        &self,
        kind: TokenType,
        who: &str,
        scopes: &[&str],
        bearer: bool,
    ) -> ExchangeResponse {
        let bundles: Arc<dyn BundleProvider> = Arc::new(Arc::new(self.td.bundle_set().unwrap()));
        let svid = self.td.x509_svid(&id(who)).unwrap();
        let identity = (!bearer).then(|| (svid.chain().to_vec(), svid.private_key().to_rustls()));
        let tls = client_tls_config(bundles, Authorizer::Exact(id(BROKER_ID)), identity).unwrap();
        let message = ExchangeRequest {
            requested_token_type: kind.into(),
            audience: SERVICE.to_owned(),
            scope: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        };
        let jwt = self.td.issue_jwt_svid(&id(who), &[AUDIENCE]).unwrap();
        self.broker.runtime().block_on(async {
            let mut client = exchange_client(self.grpc_addr(), tls).await.unwrap();
            let response = if bearer {
                client
                    .exchange(with_bearer(message, jwt.token().expose_secret()).unwrap())
                    .await
            } else {
                client.exchange(message).await
            };
            response.unwrap().into_inner()
        })
    }
}

/// How skopeo authenticates: `--*-registry-token TOKEN` or `--*-creds USER:PASSWORD`.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Token(&'a str),
    Creds(&'a str),
}

impl Auth<'_> {
    fn args(self, side: &str) -> [String; 2] {
        match self {
            Auth::Token(token) => [format!("--{side}-registry-token"), token.to_owned()],
            Auth::Creds(creds) => [format!("--{side}-creds"), creds.to_owned()],
        }
    }
}

fn push_with(registry: &Registry, work: &Path, auth: Auth<'_>, repo: &str) -> SkopeoOutput {
    let image = work.join(format!("image-{}", repo.replace('/', "-")));
    write_oci_image(&image, "v1", "hello over grpc\n");
    let [flag, value] = auth.args("dest");
    skopeo(
        &[
            "copy",
            "--dest-tls-verify=false",
            &flag,
            &value,
            &format!("oci:{}:v1", image.display()),
            &registry.image_ref(repo, "v1"),
        ],
        work,
    )
}

fn pull_with(registry: &Registry, work: &Path, auth: Auth<'_>, repo: &str) -> SkopeoOutput {
    let dest = work.join(format!("pulled-{}", repo.replace('/', "-")));
    let [flag, value] = auth.args("src");
    skopeo(
        &[
            "copy",
            "--src-tls-verify=false",
            &flag,
            &value,
            &registry.image_ref(repo, "v1"),
            &format!("oci:{}:v1", dest.display()),
        ],
        work,
    )
}

fn start_registry(broker: &GrpcBroker) -> Registry {
    let realm = broker.broker.realm_url();
    let ca = broker.broker.ca_path();
    Registry::start(Some(&TokenAuth {
        realm: &realm,
        service: SERVICE,
        issuer: ISSUER,
        rootcertbundle: &ca,
    }))
}

#[test]
fn grpc_exchange_tokens_push_and_pull_through_a_real_registry() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let broker = GrpcBroker::start();
    let registry = start_registry(&broker);
    let work = tempfile::tempdir().unwrap();

    // The builder, over mTLS, pushes.
    let push = broker.access_token(BUILDER, "repository:team/app:pull,push", false);
    assert_eq!(push.token_type, "Bearer");
    assert_eq!(push.subject, BUILDER);
    assert_eq!(push.scope, ["repository:team/app:pull,push"]);
    let out = push_with(
        &registry,
        work.path(),
        Auth::Token(&push.access_token),
        "team/app",
    );
    assert!(
        out.success(),
        "push with a grpc token failed: {}\n{}",
        out.stderr,
        registry.log()
    );

    // The reader, with a JWT-SVID bearer and no client certificate, pulls; push was asked
    // for and not granted.
    let pull = broker.access_token(READER, "repository:team/app:pull,push", true);
    assert_eq!(pull.subject, READER);
    assert_eq!(pull.scope, ["repository:team/app:pull"]);
    let out = pull_with(
        &registry,
        work.path(),
        Auth::Token(&pull.access_token),
        "team/app",
    );
    assert!(
        out.success(),
        "pull with a grpc token failed: {}\n{}",
        out.stderr,
        registry.log()
    );
    let pulled = work.path().join("pulled-team-app");
    assert!(pulled.join("index.json").is_file(), "nothing was pulled");
    // Manifest, config and the one layer (skopeo recompresses it on push, so its bytes
    // differ from the source's).
    let blobs = std::fs::read_dir(pulled.join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 3, "unexpected pulled image layout");

    // The registry enforces the grant: the reader's token cannot push.
    let out = push_with(
        &registry,
        work.path(),
        Auth::Token(&pull.access_token),
        "team/other",
    );
    assert!(!out.success(), "a pull-only token pushed");
    assert!(
        out.stderr.contains("unauthorized") || out.stderr.contains("denied"),
        "{}",
        out.stderr
    );

    let audit = broker.audit();
    assert!(
        audit.contains(r#""endpoint":"grpc""#) && audit.contains(BUILDER),
        "{audit}"
    );
    assert!(!audit.contains(&push.access_token));
}

/// A login credential from `Exchange` is a username and password skopeo sends to the broker's
/// realm (`--creds`), which then issues the access tokens; its scope ceiling holds there.
#[test]
fn grpc_login_credentials_work_as_skopeo_creds_through_the_realm() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let broker = GrpcBroker::start();
    let registry = start_registry(&broker);
    let work = tempfile::tempdir().unwrap();

    let builder = broker.exchange(TokenType::RegistryLoginCredential, BUILDER, &[], false);
    assert_eq!(builder.token_type, "N_A");
    assert_eq!(builder.username, BUILDER);
    let creds = format!("{}:{}", builder.username, builder.access_token);
    let out = push_with(&registry, work.path(), Auth::Creds(&creds), "team/app");
    assert!(
        out.success(),
        "push with a login credential failed: {}\n{}",
        out.stderr,
        registry.log()
    );

    // A credential whose ceiling is pull-only: pulls work, pushes are refused, although the
    // builder's policy would allow them.
    let capped = broker.exchange(
        TokenType::RegistryLoginCredential,
        BUILDER,
        &["repository:team/app:pull"],
        true,
    );
    assert_eq!(capped.scope, ["repository:team/app:pull"]);
    let creds = format!("{}:{}", capped.username, capped.access_token);
    let out = pull_with(&registry, work.path(), Auth::Creds(&creds), "team/app");
    assert!(out.success(), "pull failed: {}", out.stderr);
    let out = push_with(&registry, work.path(), Auth::Creds(&creds), "team/app2");
    assert!(!out.success(), "a pull-only credential pushed");
    assert!(
        out.stderr.contains("unauthorized") || out.stderr.contains("denied"),
        "{}",
        out.stderr
    );
}
