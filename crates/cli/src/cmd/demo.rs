//! `svid-broker demo`: the whole flow of one image pull in one process, with no external service.
//!
//! A dev trust domain and its Workload API, the broker (realm and gRPC `Exchange`) with a sample
//! policy, the kubelet credential provider exec'd exactly as a kubelet would, the token realm
//! asked as containerd would, a Harbor-kind registry through a FAKE of Harbor's API (clearly
//! labelled: no Harbor runs here), and, when `docker-registry` and `skopeo` are installed, a
//! real push and pull. Everything listens on 127.0.0.1 or on Unix sockets in a private temporary
//! directory that is removed on exit; the only processes stopped are the demo's own children.
//!
//! Nothing secret is printed: keys never, credentials as their prefix and length, registry
//! tokens as their decoded header and claims only.

mod error;
mod harbor;
mod io;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use svid_broker_dev::registry::{RegistryChild, RegistrySpec, TokenAuth, free_loopback_addr};
use svid_broker_dev::{DevTrustDomain, WorkloadApiHandle, WorkloadApiServer};
use svid_broker_identity::SpiffeId;
use svid_broker_identity::clock::SystemClock;
use svid_broker_identity::report::ErrorChain;
use svid_broker_identity::secret::{ExposeSecret as _, SecretString};
use svid_broker_policy::{Policy, scope};
use svid_broker_server::audit::rfc3339;
use svid_broker_server::config::BrokerConfig;
use svid_broker_server::{BrokerServer, ServerHandle};

pub(crate) use self::error::{DemoError, DemoFailed, Step};
use self::io::{last_line, on_path, realm_get, run_child, skopeo};
use crate::error::CliError;

/// The name the kubelet execs the plugin by (`providers[].name`, looked up in its plugin bin
/// dir). When `svid-broker` is invoked under this name it is the plugin (see `main`).
pub(crate) const PLUGIN_NAME: &str = "svid-credential-provider";

/// The cluster's trust domain: the node's plugin and the CI workload live here.
const NODE_ID: &str = "spiffe://example.org/node/worker-1/credential-provider";
const CI_ID: &str = "spiffe://example.org/ci/builder";
/// A dev Workload API serves one default identity per socket, so the broker's SVID comes from a
/// second dev trust domain (in production one SPIRE deployment issues both).
const BROKER_ID: &str = "spiffe://infra.example.org/svid-broker";
const AUDIENCE: &str = "svid-broker";
const SERVICE: &str = "registry.demo";
const ISSUER: &str = "svid-broker-demo";
const REPOSITORY: &str = "team-a/hello";
const TAG: &str = "v1";
const PULL_SCOPE: &str = "repository:team-a/hello:pull";
const PULL_PUSH_SCOPE: &str = "repository:team-a/hello:pull,push";
/// How long the broker drains on shutdown (nothing is in flight when the demo stops).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// One allow rule of the sample policy; the TOML and the printed summary both come from here.
struct Rule {
    id: &'static str,
    subject: &'static str,
    repositories: &'static [&'static str],
    actions: &'static [&'static str],
}

const RULES: [Rule; 3] = [
    Rule {
        id: "nodes-pull-team-images",
        subject: "spiffe://example.org/node/*/credential-provider",
        repositories: &["team-a/*", "team-b/*"],
        actions: &["pull"],
    },
    Rule {
        id: "teams-pull-own-namespace",
        subject: "spiffe://example.org/ns/{ns}/sa/*",
        repositories: &["team-{ns}/*"],
        actions: &["pull"],
    },
    Rule {
        id: "ci-pushes",
        subject: "spiffe://example.org/ci/builder",
        repositories: &["team-a/*", "team-b/*"],
        actions: &["pull", "push"],
    },
];

pub(crate) fn run() -> Result<(), CliError> {
    init_logging();
    let mut demo = Demo::prepare().map_err(|source| {
        CliError::Demo(DemoFailed {
            step: Step::Setup,
            source: Box::new(source),
        })
    })?;
    let result = demo.run_steps();
    demo.stop();
    let steps = Step::NUMBERED.len();
    match result {
        Ok(RegistryStep::Skipped) => {
            println!(
                "\ndemo ok: steps 1-{} worked, the real-registry step was skipped; everything it \
                 started is stopped and removed.",
                steps - 1
            );
            Ok(())
        }
        Ok(RegistryStep::Ran) => {
            println!(
                "\ndemo ok: all {steps} steps worked; everything it started is stopped and removed."
            );
            Ok(())
        }
        Err(failed) => {
            println!("  FAILED: {}", ErrorChain::new(&failed.source));
            Err(CliError::Demo(failed))
        }
    }
}

/// Library logs stay quiet unless asked for: the demo's output is meant to be read.
fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// Whether step 5 ran or found no docker-registry or skopeo (and CI is not set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegistryStep {
    Ran,
    Skipped,
}

/// What runs until [`Demo::stop`]: the directory, the runtime, the Workload APIs and the
/// broker. Values the steps hand to each other are returned, not stored.
struct Demo {
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    apis: Vec<WorkloadApiHandle>,
    broker: Option<ServerHandle>,
}

/// The broker's addresses, and the registry's (chosen before the policy names it).
#[derive(Debug, Clone, Copy)]
struct Addresses {
    realm: SocketAddr,
    grpc: SocketAddr,
    registry: SocketAddr,
}

/// The node's login credential from step 3 (the password is never printed).
struct NodeCredential {
    username: String,
    password: SecretString,
}

impl Demo {
    fn prepare() -> Result<Self, DemoError> {
        // `tempfile` creates the directory with mode 0700: sockets and configs stay private.
        let dir = tempfile::Builder::new()
            .prefix("svid-broker-demo-")
            .tempdir()
            .map_err(|source| DemoError::TempDir { source })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|source| DemoError::Runtime { source })?;
        Ok(Self {
            dir,
            runtime,
            apis: Vec::new(),
            broker: None,
        })
    }

    fn run_steps(&mut self) -> Result<RegistryStep, DemoFailed> {
        println!(
            "svid-broker demo: registry credentials from workload identity, end to end.\n\
             Everything runs in this process or its children, on 127.0.0.1 and Unix sockets under\n\
             {}; nothing else is contacted and no secret is stored or printed.",
            self.dir().display()
        );
        let cluster = step(Step::Identities, || self.identities())?;
        let addrs = step(Step::Broker, || self.broker())?;
        let node = step(Step::Kubelet, || self.kubelet(addrs))?;
        step(Step::Realm, || self.realm(addrs, &node))?;
        step(Step::Harbor, || self.harbor(addrs))?;
        step(Step::RealRegistry, || {
            self.real_registry(addrs, &node, &cluster)
        })
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn identities(&mut self) -> Result<Arc<DevTrustDomain>, DemoError> {
        let node = parse_id(NODE_ID)?;
        let ci = parse_id(CI_ID)?;
        let broker = parse_id(BROKER_ID)?;
        let dev_ca = |source| DemoError::DevCa { source };
        let cluster = Arc::new(
            DevTrustDomain::builder(node.trust_domain().clone())
                .identity(node.clone())
                .build()
                .map_err(dev_ca)?,
        );
        let infra = Arc::new(
            DevTrustDomain::builder(broker.trust_domain().clone())
                .identity(broker.clone())
                .build()
                .map_err(dev_ca)?,
        );
        write(
            &self.dir().join("example.org.bundle.json"),
            &cluster.bundle_document_json(),
        )?;
        write(
            &self.dir().join("infra.example.org.bundle.json"),
            &infra.bundle_document_json(),
        )?;
        for (td, socket) in [(&cluster, "node-agent.sock"), (&infra, "broker-agent.sock")] {
            let path = self.dir().join(socket);
            let api = self
                .runtime
                .block_on(
                    WorkloadApiServer::builder(Arc::clone(td))
                        .auto_rotate(None)
                        .serve(path),
                )
                .map_err(|source| DemoError::WorkloadApi { source })?;
            self.apis.push(api);
        }
        let ci_jwt = cluster.issue_jwt_svid(&ci, &[AUDIENCE]).map_err(dev_ca)?;
        explain("A CA for each trust domain and a real SPIFFE Workload API on a Unix socket,");
        explain("as a SPIRE agent would serve them. Private keys stay behind the sockets.");
        for (td, api, role) in [
            (
                &cluster,
                &self.apis[0],
                "the cluster: the node's kubelet plugin, CI jobs",
            ),
            (&infra, &self.apis[1], "the broker's own identity"),
        ] {
            println!("  trust domain {}  ({role})", td.trust_domain());
            println!("    Workload API   {}", api.endpoint());
            for svid in td.x509_svids() {
                println!(
                    "    X.509-SVID     {}  (valid until {})",
                    svid.spiffe_id(),
                    rfc3339(svid.not_after())
                );
            }
            if Arc::ptr_eq(td, &cluster) {
                println!(
                    "    JWT-SVID       {}  (audience {AUDIENCE}, valid until {}; the CI job's, for step 5)",
                    ci_jwt.spiffe_id(),
                    rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(ci_jwt.expiry()))
                );
            }
        }
        Ok(cluster)
    }

    fn broker(&mut self) -> Result<Addresses, DemoError> {
        let registry = free_loopback_addr().map_err(|source| DemoError::FreePort { source })?;
        let policy_text = sample_policy(&registry.to_string());
        // Validated here too, so a broken sample fails with the policy's own message.
        Policy::from_toml_str(&policy_text).map_err(|source| DemoError::Policy { source })?;
        write(&self.dir().join("policy.toml"), &policy_text)?;
        let config_text = format!(
            r#"[server]
http_addr = "127.0.0.1:0"
grpc_addr = "127.0.0.1:0"
public_url = "http://127.0.0.1:1"
shutdown_grace_seconds = {}
[identity]
audience = "{AUDIENCE}"
workload_api = "{}"
bundle_files = [{{ trust_domain = "example.org", path = "example.org.bundle.json" }}]
[policy]
file = "policy.toml"
[signing]
generate = true
[log]
audit = "audit.log"
"#,
            SHUTDOWN_GRACE.as_secs(),
            self.apis[1].endpoint()
        );
        let config = BrokerConfig::from_toml_str(&config_text, self.dir())
            .map_err(|source| DemoError::BrokerConfig { source })?;
        let handle = self
            .runtime
            .block_on(BrokerServer::start(config, Arc::new(SystemClock)))
            .map_err(|source| DemoError::BrokerStart { source })?;
        let addrs = Addresses {
            realm: handle.http_addr(),
            grpc: handle.grpc_addr().ok_or(DemoError::NoGrpcListener)?,
            registry,
        };
        let ca_pem = handle.ca_bundle_pem();
        self.broker = Some(handle);
        write(&self.dir().join("broker-ca.pem"), &ca_pem)?;
        explain("The broker authenticates SVIDs, applies one policy file and signs registry");
        explain("tokens with a CA generated in memory (a registry trusts that CA, nothing else).");
        println!(
            "  token realm      http://{}/token   (what the registry's 401 points clients to)",
            addrs.realm
        );
        println!(
            "  gRPC Exchange    {}   (mutual TLS with its SVID {BROKER_ID})",
            addrs.grpc
        );
        println!("  registry         {SERVICE} (issuer {ISSUER}) at {registry}");
        println!("  policy rules (default deny):");
        for rule in &RULES {
            println!(
                "    {:<26} {} may {} {}",
                rule.id,
                rule.subject,
                rule.actions.join("+"),
                rule.repositories.join(", ")
            );
        }
        Ok(addrs)
    }

    fn kubelet(&self, addrs: Addresses) -> Result<NodeCredential, DemoError> {
        let Addresses { grpc, registry, .. } = addrs;
        // The kubelet's --image-credential-provider-bin-dir: the plugin is found there by name.
        let bin_dir = self.dir().join("bin");
        std::fs::create_dir(&bin_dir).map_err(|source| DemoError::Write {
            path: bin_dir.clone(),
            source,
        })?;
        let exe = std::env::current_exe().map_err(|source| DemoError::CurrentExe { source })?;
        let plugin = bin_dir.join(PLUGIN_NAME);
        std::os::unix::fs::symlink(&exe, &plugin).map_err(|source| DemoError::Link {
            path: plugin.clone(),
            source,
        })?;

        let plugin_config = self.dir().join("credential-provider.toml");
        write(
            &plugin_config,
            &format!(
                r#"broker = "{grpc}"
broker_id = "{BROKER_ID}"
broker_bundle_file = "infra.example.org.bundle.json"
deadline_seconds = 10

[[registries]]
service = "{SERVICE}"
match_images = ["{registry}"]
scope = "registry"
"#
            ),
        )?;
        let kubelet_config_path = self.dir().join("credential-provider-config.json");
        let kubelet_config = self.kubelet_config(&registry.to_string(), &plugin_config);
        write(&kubelet_config_path, &pretty(&kubelet_config))?;
        let image = format!("{registry}/{REPOSITORY}");
        let request = plugin_request(&image);

        explain(
            "For an image on a registry in its CredentialProviderConfig, the kubelet execs the",
        );
        explain("plugin with the config's args and env and writes one request to its stdin.");
        println!("  kubelet config   {}", kubelet_config_path.display());
        println!("  plugin config    {}", plugin_config.display());
        println!(
            "  plugin binary    {} -> {} (svid-broker acts as the plugin when run by that name)",
            plugin.display(),
            exe.display()
        );
        println!("  request (stdin): {request}");
        let output = self
            .runtime
            .block_on(kubelet_exec(&plugin, &kubelet_config, &request))?;
        if !output.status.success() {
            return Err(DemoError::PluginFailed {
                status: output.status,
                stderr: output.stderr.trim().to_owned(),
            });
        }
        if !output.stderr.is_empty() {
            return Err(DemoError::PluginStderr {
                stderr: output.stderr.trim().to_owned(),
            });
        }
        let (response, node) = redact_response(&output.stdout, &registry)?;
        println!("  response (stdout, password redacted):");
        for line in pretty(&response).lines() {
            println!("    {line}");
        }
        println!(
            "  the kubelet caches it per {} for {}; containerd gets username and password.",
            response["cacheKeyType"].as_str().unwrap_or("?"),
            response["cacheDuration"].as_str().unwrap_or("?")
        );

        // The credential is registry-wide; the grant is decided per request at the realm, by the
        // same policy the broker runs. What it will say for a pull, and for a push:
        let policy = Policy::from_toml_str(&sample_policy(&registry.to_string()))
            .map_err(|source| DemoError::Policy { source })?;
        let subject = parse_id(&node.username)?;
        let asked =
            scope::parse_scopes([PULL_PUSH_SCOPE]).map_err(|source| DemoError::Scope { source })?;
        let decision = policy
            .decide(&subject, SERVICE, &asked)
            .map_err(|source| DemoError::Decision { source })?;
        println!("  policy decision for this identity (svid-broker policy explain):");
        for line in decision.explain().lines().filter(|l| !l.is_empty()) {
            println!("    {line}");
        }
        if decision.granted_scope() != PULL_SCOPE {
            return Err(DemoError::UnexpectedGrant {
                granted: decision.granted_scope(),
                expected: PULL_SCOPE,
            });
        }
        Ok(node)
    }

    /// A kubelet `CredentialProviderConfig` whose one provider is the plugin for images on
    /// `match_image`, with `plugin_config` and the node's Workload API.
    fn kubelet_config(&self, match_image: &str, plugin_config: &Path) -> Value {
        json!({
            "apiVersion": "kubelet.config.k8s.io/v1",
            "kind": "CredentialProviderConfig",
            "providers": [{
                "name": PLUGIN_NAME,
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "matchImages": [match_image],
                "defaultCacheDuration": "0s",
                "args": ["--config", plugin_config.display().to_string()],
                "env": [{"name": "SPIFFE_ENDPOINT_SOCKET", "value": self.apis[0].endpoint()}],
            }],
        })
    }

    fn realm(&self, addrs: Addresses, node: &NodeCredential) -> Result<(), DemoError> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("service", SERVICE)
            .append_pair("scope", PULL_PUSH_SCOPE)
            .finish();
        let basic = basic_auth(&node.username, node.password.expose_secret());
        explain("The registry answers 401 with the realm; the client sends the login credential");
        explain(
            "there as HTTP Basic auth and gets a short-lived JWT the registry verifies offline.",
        );
        println!(
            "  GET /token?{query}   (Basic auth: {} + the sbl1. credential)",
            node.username
        );
        let (status, body) = self.runtime.block_on(realm_get(
            addrs.realm,
            &format!("/token?{query}"),
            basic.expose_secret(),
        ))?;
        if status != 200 {
            return Err(DemoError::RealmStatus { status });
        }
        let body: Value = serde_json::from_slice(&body).map_err(|_| DemoError::RealmResponse {
            problem: "is not JSON",
        })?;
        let token = body["token"].as_str().ok_or(DemoError::RealmResponse {
            problem: "has no token",
        })?;
        let (header, claims) = decode_jwt(token)?;
        println!(
            "  HTTP 200: a registry token (not shown), expires_in {}s",
            body["expires_in"]
        );
        println!(
            "    header   alg {}, kid {}, x5c: {} certificate(s) chaining to the broker CA",
            header["alg"].as_str().unwrap_or("?"),
            header["kid"].as_str().unwrap_or("?"),
            header["x5c"].as_array().map_or(0, Vec::len)
        );
        for key in ["iss", "sub", "aud", "access"] {
            println!("    {key:<8} {}", claims[key]);
        }
        let exp = claims["exp"].as_u64().unwrap_or(0);
        println!(
            "    exp      {exp} ({})",
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(exp))
        );
        let actions = &claims["access"][0]["actions"];
        if claims["access"].as_array().map(Vec::len) != Some(1) || *actions != json!(["pull"]) {
            return Err(DemoError::TokenGrant {
                repository: REPOSITORY,
                granted: claims["access"].to_string(),
            });
        }
        println!("  push was asked for and left out: the node may only pull.");
        Ok(())
    }

    fn real_registry(
        &self,
        addrs: Addresses,
        node: &NodeCredential,
        cluster: &DevTrustDomain,
    ) -> Result<RegistryStep, DemoError> {
        let missing: Vec<&'static str> = ["docker-registry", "skopeo"]
            .into_iter()
            .filter(|p| !on_path(p))
            .collect();
        if !missing.is_empty() {
            let skipped = DemoError::ToolsMissing { missing };
            if std::env::var("CI").as_deref() == Ok("true") {
                return Err(skipped);
            }
            // The same words as the CI failure, without its last clause.
            let line = skipped.to_string();
            let line = line
                .strip_suffix("; CI=true requires this step")
                .unwrap_or(&line);
            println!("  {line}");
            return Ok(RegistryStep::Skipped);
        }
        let addr = addrs.registry;
        let realm = format!("http://{}/token", addrs.realm);
        let root = self.dir().join("registry");
        std::fs::create_dir(&root).map_err(|source| DemoError::Write {
            path: root.clone(),
            source,
        })?;
        // Killed when this step returns, whatever the outcome.
        let _registry =
            RegistryChild::start(RegistrySpec::new(&root, addr).token_auth(TokenAuth {
                realm: realm.clone(),
                service: SERVICE.to_owned(),
                issuer: ISSUER.to_owned(),
                rootcertbundle: self.dir().join("broker-ca.pem"),
            }))
            .map_err(|source| DemoError::Registry { source })?;
        explain("Debian's docker-registry (unmodified) trusts the broker CA and sends clients to");
        explain(
            "the realm; skopeo logs in with the credentials above, like any registry password.",
        );
        println!("  registry         docker-registry at {addr}, auth.token.realm = {realm}");

        let work = self.dir().join("skopeo");
        let image = svid_broker_dev::oci::write_image(
            &work.join("image"),
            TAG,
            "hello.txt",
            b"hello from svid-broker\n",
        )
        .map_err(|source| DemoError::Image { source })?;
        let source = image.reference();
        let dest = format!("docker://{addr}/{REPOSITORY}:{TAG}");
        let copy = |args: &[&str]| self.runtime.block_on(skopeo(args, &work));

        // CI presents a JWT-SVID (audience svid-broker) straight to the realm as its password.
        let ci = parse_id(CI_ID)?;
        let jwt = cluster
            .issue_jwt_svid(&ci, &[AUDIENCE])
            .map_err(|source| DemoError::DevCa { source })?;
        let ci_auth = write_auth_file(&work, "ci", &addr, CI_ID, jwt.token().expose_secret())?;
        let push = copy(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-authfile",
            &ci_auth,
            &source,
            &dest,
        ])?;
        if !push.status.success() {
            return Err(DemoError::Skopeo {
                what: "CI push",
                stderr_tail: last_line(&push.stderr).to_owned(),
            });
        }
        println!("  push  {CI_ID} (JWT-SVID) -> {REPOSITORY}:{TAG}: ok");

        let node_auth = write_auth_file(
            &work,
            "node",
            &addr,
            &node.username,
            node.password.expose_secret(),
        )?;
        let pulled = work.join("pulled");
        let pull = copy(&[
            "copy",
            "--src-tls-verify=false",
            "--src-authfile",
            &node_auth,
            &dest,
            &format!("oci:{}:{TAG}", pulled.display()),
        ])?;
        if !pull.status.success() {
            return Err(DemoError::Skopeo {
                what: "node pull",
                stderr_tail: last_line(&pull.stderr).to_owned(),
            });
        }
        if !pulled.join("index.json").is_file() {
            return Err(DemoError::PulledImageIncomplete);
        }
        println!(
            "  pull  {} (plugin credential) <- {REPOSITORY}:{TAG}: ok",
            node.username
        );

        let denied = copy(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-authfile",
            &node_auth,
            &source,
            &format!("docker://{addr}/{REPOSITORY}:pushed-by-node"),
        ])?;
        let refused = !denied.status.success()
            && (denied.stderr.contains("unauthorized") || denied.stderr.contains("denied"));
        if !refused {
            return Err(DemoError::PushNotRefused {
                exit_ok: denied.status.success(),
                stderr_tail: last_line(&denied.stderr).to_owned(),
            });
        }
        println!(
            "  push  {} (plugin credential) -> {REPOSITORY}: refused, as the policy says",
            node.username
        );
        println!("  real registry: push ok, pull ok, denied push refused");
        Ok(RegistryStep::Ran)
    }

    /// Stops what the demo started, in reverse order (the registry child already stopped with
    /// its step): the broker, the Workload APIs, the runtime; then removes the directory.
    fn stop(mut self) {
        if let Some(broker) = self.broker.take() {
            self.runtime.block_on(broker.shutdown());
        }
        for api in self.apis.drain(..) {
            let _ = self.runtime.block_on(api.shutdown());
        }
        self.runtime.shutdown_timeout(SHUTDOWN_GRACE);
        drop(self.dir);
    }
}

/// Prints the step header, runs it, and names it when it fails.
fn step<T>(step: Step, body: impl FnOnce() -> Result<T, DemoError>) -> Result<T, DemoFailed> {
    println!(
        "\n[{}/{}] {}",
        step.number(),
        Step::NUMBERED.len(),
        step.title()
    );
    body().map_err(|source| DemoFailed {
        step,
        source: Box::new(source),
    })
}

fn explain(line: &str) {
    println!("  {line}");
}

fn parse_id(s: &str) -> Result<SpiffeId, DemoError> {
    SpiffeId::parse(s).map_err(|source| DemoError::SpiffeId {
        id: s.to_owned(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<(), DemoError> {
    std::fs::write(path, text).map_err(|source| DemoError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn sample_policy(registry_host: &str) -> String {
    let mut text = format!(
        "[[registries]]\nname = \"demo\"\nservice = \"{SERVICE}\"\nissuer = \"{ISSUER}\"\n\
         profile = \"distribution-2\"\nhosts = [\"{registry_host}\"]\n"
    );
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for rule in &RULES {
        text.push_str(&format!(
            "\n[[rules]]\nid = \"{}\"\nsubject = \"{}\"\nregistry = \"demo\"\nrepositories = [{}]\nactions = [{}]\n",
            rule.id,
            rule.subject,
            list(rule.repositories),
            list(rule.actions)
        ));
    }
    text
}

/// The kubelet's request for `image` (`credentialprovider.kubelet.k8s.io/v1`).
fn plugin_request(image: &str) -> Value {
    json!({
        "kind": "CredentialProviderRequest",
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "image": image,
    })
}

/// Execs the provider as the kubelet does: the file named `providers[0].name` in the bin dir,
/// its `args`, its `env` on top of a minimal environment, the request on stdin.
async fn kubelet_exec(
    plugin: &Path,
    kubelet_config: &Value,
    request: &Value,
) -> Result<io::ChildOutput, DemoError> {
    let provider = &kubelet_config["providers"][0];
    let args: Vec<&str> = provider["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let env: Vec<(&str, &str)> = provider["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut command = tokio::process::Command::new(plugin);
    command
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env);
    let mut stdin = request.to_string();
    stdin.push('\n');
    run_child(command, stdin.as_bytes()).await
}

/// Parses the plugin's answer and replaces the password by its prefix and length.
fn redact_response(
    stdout: &str,
    registry: &SocketAddr,
) -> Result<(Value, NodeCredential), DemoError> {
    let mut response: Value =
        serde_json::from_str(stdout).map_err(|source| DemoError::PluginJson { source })?;
    let problem = |problem| DemoError::PluginResponse { problem };
    let entry = response["auth"]
        .get_mut(registry.to_string())
        .ok_or(problem("has no credential for the registry"))?;
    let username = entry["username"]
        .as_str()
        .ok_or(problem("has no username"))?
        .to_owned();
    let password = entry["password"]
        .as_str()
        .ok_or(problem("has no password"))?
        .to_owned();
    if !password.starts_with("sbl1.") {
        return Err(problem("password is not an sbl1. login credential"));
    }
    entry["password"] = Value::from(format!("sbl1.… (REDACTED, {} characters)", password.len()));
    if username != NODE_ID {
        return Err(DemoError::WrongSubject {
            got: username,
            expected: NODE_ID,
        });
    }
    Ok((
        response,
        NodeCredential {
            username,
            password: SecretString::from(password),
        },
    ))
}

fn basic_auth(username: &str, password: &str) -> SecretString {
    SecretString::from(format!(
        "Basic {}",
        STANDARD.encode(format!("{username}:{password}"))
    ))
}

/// The header and claims of a compact JWS, decoded without verifying (the registry verifies).
fn decode_jwt(token: &str) -> Result<(Value, Value), DemoError> {
    let mut parts = token.split('.');
    let mut part = |part: &'static str| -> Result<Value, DemoError> {
        parts
            .next()
            .and_then(|text| URL_SAFE_NO_PAD.decode(text).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(DemoError::TokenPart { part })
    };
    Ok((part("header")?, part("claims")?))
}

/// A containers-auth.json for one registry, mode 0600: credentials never go on a command line,
/// where other users could read them in `ps`.
fn write_auth_file(
    work: &Path,
    name: &str,
    registry: &SocketAddr,
    username: &str,
    password: &str,
) -> Result<String, DemoError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path: PathBuf = work.join(format!("{name}-auth.json"));
    let failed = |source| DemoError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(work).map_err(failed)?;
    let auth = STANDARD.encode(format!("{username}:{password}"));
    let text = json!({"auths": {registry.to_string(): {"auth": auth}}}).to_string();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(failed)?;
    Ok(path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_policy_parses_and_grants_what_the_demo_shows() {
        let policy = Policy::from_toml_str(&sample_policy("127.0.0.1:5000")).unwrap();
        let asked = scope::parse_scopes([PULL_PUSH_SCOPE]).unwrap();
        let node = policy
            .decide(&parse_id(NODE_ID).unwrap(), SERVICE, &asked)
            .unwrap();
        assert_eq!(node.granted_scope(), PULL_SCOPE);
        let ci = policy
            .decide(&parse_id(CI_ID).unwrap(), SERVICE, &asked)
            .unwrap();
        assert_eq!(ci.granted_scope(), PULL_PUSH_SCOPE);
        let stranger = policy
            .decide(
                &parse_id("spiffe://example.org/ns/b/sa/x").unwrap(),
                SERVICE,
                &asked,
            )
            .unwrap();
        assert!(stranger.is_empty(), "{}", stranger.explain());
    }

    #[test]
    fn the_response_password_is_redacted_and_checked() {
        let registry: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let secret = "sbl1.payload.mac-that-must-not-show";
        let stdout = json!({
            "kind": "CredentialProviderResponse",
            "auth": {"127.0.0.1:5000": {"username": NODE_ID, "password": secret}},
        })
        .to_string();
        let (response, node) = redact_response(&stdout, &registry).unwrap();
        assert_eq!(node.username, NODE_ID);
        assert_eq!(node.password.expose_secret(), secret);
        let shown = response.to_string();
        assert!(!shown.contains("payload"), "{shown}");
        assert!(shown.contains(&format!("REDACTED, {} characters", secret.len())));

        let not_ours = stdout.replace("sbl1.", "xyz.");
        assert!(matches!(
            redact_response(&not_ours, &registry),
            Err(DemoError::PluginResponse { .. })
        ));
        let other_key: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        assert!(matches!(
            redact_response(&stdout, &other_key),
            Err(DemoError::PluginResponse { .. })
        ));
        let someone_else = stdout.replace(NODE_ID, "spiffe://example.org/x");
        assert!(matches!(
            redact_response(&someone_else, &registry),
            Err(DemoError::WrongSubject { .. })
        ));
    }

    #[test]
    fn jwt_parts_decode_without_the_signature() {
        let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let token = format!(
            "{}.{}.sig",
            enc(json!({"alg": "ES256"})),
            enc(json!({"sub": "x"}))
        );
        let (header, claims) = decode_jwt(&token).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(claims["sub"], "x");
        assert!(matches!(
            decode_jwt("not-a-jwt"),
            Err(DemoError::TokenPart { part: "header" })
        ));
    }

    #[test]
    fn a_failure_names_its_step_and_keeps_the_cause_as_its_source() {
        let failed = DemoFailed {
            step: Step::RealRegistry,
            source: Box::new(DemoError::ToolsMissing {
                missing: vec!["skopeo"],
            }),
        };
        assert_eq!(
            failed.to_string(),
            "demo step 6 (a real registry: push and pull with skopeo) failed"
        );
        assert_eq!(
            ErrorChain::new(&failed).to_string(),
            "demo step 6 (a real registry: push and pull with skopeo) failed: skipped: \
             docker-registry/skopeo not installed (apt-get install docker-registry skopeo); \
             missing: skopeo; CI=true requires this step"
        );
        let numbers: Vec<usize> = Step::NUMBERED.iter().map(|s| s.number()).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
    }
}
