//! `svid-broker demo`: the whole flow of one image pull in one process, with no external service.
//!
//! A dev trust domain and its Workload API, the broker (realm and gRPC `Exchange`) with a sample
//! policy, the kubelet credential provider exec'd exactly as a kubelet would, the token realm
//! asked as containerd would, and, when `docker-registry` and `skopeo` are installed, a real
//! push and pull. Everything listens on 127.0.0.1 or on Unix sockets in a private temporary
//! directory that is removed on exit; the only processes stopped are the demo's own children.
//!
//! Nothing secret is printed: keys never, credentials as their prefix and length, registry
//! tokens as their decoded header and claims only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use svid_broker_dev::{DevTrustDomain, WorkloadApiHandle, WorkloadApiServer};
use svid_broker_identity::SpiffeId;
use svid_broker_identity::clock::SystemClock;
use svid_broker_policy::{Policy, scope};
use svid_broker_server::config::BrokerConfig;
use svid_broker_server::ops::rfc3339;
use svid_broker_server::{BrokerServer, ServerHandle};

use crate::cmd::policy::error_chain;
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

/// Upper bound on every wait: one child process, one HTTP exchange, a registry start-up.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest output read from a child process or an HTTP response, in bytes.
pub(crate) const MAX_OUTPUT_BYTES: u64 = 1024 * 1024;
/// Steps, for the `[n/N]` headers.
const STEPS: usize = 5;

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

/// Why the demo stopped: which step, and what went wrong (never a secret).
#[derive(Debug, thiserror::Error)]
#[error("demo step {step} ({title}) failed: {reason}")]
pub(crate) struct DemoFailed {
    step: usize,
    title: &'static str,
    reason: String,
}

pub(crate) fn run() -> Result<(), CliError> {
    init_logging();
    let mut demo = Demo::default();
    let result = demo.run_steps();
    demo.stop();
    match result {
        Ok(()) if demo.registry_skipped => {
            println!(
                "\ndemo ok: steps 1-{} worked, the real-registry step was skipped; everything it \
                 started is stopped and removed.",
                STEPS - 1
            );
            Ok(())
        }
        Ok(()) => {
            println!(
                "\ndemo ok: all {STEPS} steps worked; everything it started is stopped and removed."
            );
            Ok(())
        }
        Err(failed) => {
            println!("  FAILED: {}", failed.reason);
            Err(CliError::rejected(failed))
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

/// What the steps build and hand to each other; torn down by [`Demo::stop`].
#[derive(Default)]
struct Demo {
    dir: Option<tempfile::TempDir>,
    runtime: Option<tokio::runtime::Runtime>,
    apis: Vec<WorkloadApiHandle>,
    cluster: Option<Arc<DevTrustDomain>>,
    broker: Option<ServerHandle>,
    registry_addr: Option<SocketAddr>,
    /// The node's login credential from step 3 (username, password).
    node_credential: Option<(String, Secret)>,
    /// Step 5 found no docker-registry or skopeo (and CI is not set).
    registry_skipped: bool,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo").finish_non_exhaustive()
    }
}

/// A credential the demo holds but never prints.
struct Secret(String);

impl Demo {
    fn run_steps(&mut self) -> Result<(), DemoFailed> {
        self.prepare().map_err(|reason| DemoFailed {
            step: 0,
            title: "setup",
            reason,
        })?;
        println!(
            "svid-broker demo: registry credentials from workload identity, end to end.\n\
             Everything runs in this process or its children, on 127.0.0.1 and Unix sockets under\n\
             {}; nothing else is contacted and no secret is stored or printed.",
            self.dir().display()
        );
        step(1, "identities: development SPIFFE trust domains", || {
            self.identities()
        })?;
        step(
            2,
            "the broker: token realm, Exchange API and policy",
            || self.broker(),
        )?;
        step(3, "the kubelet runs the credential provider plugin", || {
            self.kubelet()
        })?;
        step(
            4,
            "containerd trades the credential for a registry token",
            || self.realm(),
        )?;
        step(5, "a real registry: push and pull with skopeo", || {
            self.real_registry()
        })
    }

    fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("."), tempfile::TempDir::path)
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, String> {
        self.runtime.as_ref().ok_or_else(|| "no runtime".to_owned())
    }

    fn prepare(&mut self) -> Result<(), String> {
        // `tempfile` creates the directory with mode 0700: sockets and configs stay private.
        let dir = tempfile::Builder::new()
            .prefix("svid-broker-demo-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        self.dir = Some(dir);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        self.runtime = Some(runtime);
        Ok(())
    }

    fn identities(&mut self) -> Result<(), String> {
        let node = parse_id(NODE_ID)?;
        let ci = parse_id(CI_ID)?;
        let broker = parse_id(BROKER_ID)?;
        let cluster = Arc::new(
            DevTrustDomain::builder(node.trust_domain().clone())
                .identity(node.clone())
                .build()
                .map_err(|e| error_chain(&e))?,
        );
        let infra = Arc::new(
            DevTrustDomain::builder(broker.trust_domain().clone())
                .identity(broker.clone())
                .build()
                .map_err(|e| error_chain(&e))?,
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
                .runtime()?
                .block_on(
                    WorkloadApiServer::builder(Arc::clone(td))
                        .auto_rotate(None)
                        .serve(path),
                )
                .map_err(|e| error_chain(&e))?;
            self.apis.push(api);
        }
        let ci_jwt = cluster
            .issue_jwt_svid(&ci, &[AUDIENCE])
            .map_err(|e| error_chain(&e))?;
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
        self.cluster = Some(cluster);
        Ok(())
    }

    fn broker(&mut self) -> Result<(), String> {
        let port = free_port()?;
        let registry: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
        self.registry_addr = Some(registry);
        let policy_text = sample_policy(&registry.to_string());
        // Validated here too, so a broken sample fails with the policy's own message.
        Policy::from_toml_str(&policy_text).map_err(|e| format!("sample policy: {e}"))?;
        write(&self.dir().join("policy.toml"), &policy_text)?;
        let config_text = format!(
            r#"[server]
http_addr = "127.0.0.1:0"
grpc_addr = "127.0.0.1:0"
public_url = "http://127.0.0.1:1"
shutdown_grace_seconds = 2
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
            self.apis[1].endpoint()
        );
        let config = BrokerConfig::from_toml_str(&config_text, self.dir())
            .map_err(|e| format!("broker config: {}", error_chain(&e)))?;
        let handle = self
            .runtime()?
            .block_on(BrokerServer::start(config, Arc::new(SystemClock)))
            .map_err(|e| error_chain(&e))?;
        let grpc = handle
            .grpc_addr()
            .ok_or_else(|| "the gRPC listener did not start".to_owned())?;
        write(&self.dir().join("broker-ca.pem"), &handle.ca_bundle_pem())?;
        explain("The broker authenticates SVIDs, applies one policy file and signs registry");
        explain("tokens with a CA generated in memory (a registry trusts that CA, nothing else).");
        println!(
            "  token realm      http://{}/token   (what the registry's 401 points clients to)",
            handle.http_addr()
        );
        println!("  gRPC Exchange    {grpc}   (mutual TLS with its SVID {BROKER_ID})");
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
        self.broker = Some(handle);
        Ok(())
    }

    fn kubelet(&mut self) -> Result<(), String> {
        let (grpc, registry) = match (&self.broker, self.registry_addr) {
            (Some(b), Some(r)) => (b.grpc_addr(), r),
            _ => return Err("the broker is not running".to_owned()),
        };
        let grpc = grpc.ok_or_else(|| "the gRPC listener did not start".to_owned())?;
        // The kubelet's --image-credential-provider-bin-dir: the plugin is found there by name.
        let bin_dir = self.dir().join("bin");
        std::fs::create_dir(&bin_dir).map_err(|e| format!("cannot create {bin_dir:?}: {e}"))?;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let plugin = bin_dir.join(PLUGIN_NAME);
        std::os::unix::fs::symlink(&exe, &plugin)
            .map_err(|e| format!("cannot link {}: {e}", plugin.display()))?;

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
        let kubelet_config = json!({
            "apiVersion": "kubelet.config.k8s.io/v1",
            "kind": "CredentialProviderConfig",
            "providers": [{
                "name": PLUGIN_NAME,
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "matchImages": [registry.to_string()],
                "defaultCacheDuration": "0s",
                "args": ["--config", plugin_config.display().to_string()],
                "env": [{"name": "SPIFFE_ENDPOINT_SOCKET", "value": self.apis[0].endpoint()}],
            }],
        });
        write(&kubelet_config_path, &pretty(&kubelet_config))?;
        let image = format!("{registry}/{REPOSITORY}");
        let request = json!({
            "kind": "CredentialProviderRequest",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "image": image,
        });

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
        let output = kubelet_exec(&plugin, &kubelet_config, &request)?;
        if !output.status.success() {
            return Err(format!(
                "the plugin exited with {}: {}",
                output.status,
                output.stderr.trim()
            ));
        }
        if !output.stderr.is_empty() {
            return Err(format!(
                "the plugin wrote to stderr on success: {}",
                output.stderr.trim()
            ));
        }
        let (response, username, password) = redact_response(&output.stdout, &registry)?;
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
            .map_err(|e| e.to_string())?;
        let subject = parse_id(&username)?;
        let asked = scope::parse_scopes([PULL_PUSH_SCOPE]).map_err(|e| e.to_string())?;
        let decision = policy
            .decide(&subject, SERVICE, &asked)
            .map_err(|e| e.to_string())?;
        println!("  policy decision for this identity (svid-broker policy explain):");
        for line in decision.explain().lines().filter(|l| !l.is_empty()) {
            println!("    {line}");
        }
        if decision.granted_scope() != PULL_SCOPE {
            return Err(format!(
                "the policy granted {:?}, expected {PULL_SCOPE:?}",
                decision.granted_scope()
            ));
        }
        self.node_credential = Some((username, password));
        Ok(())
    }

    fn realm(&mut self) -> Result<(), String> {
        let (Some(broker), Some((username, password))) = (&self.broker, &self.node_credential)
        else {
            return Err("no credential from step 3".to_owned());
        };
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("service", SERVICE)
            .append_pair("scope", PULL_PUSH_SCOPE)
            .finish();
        let basic = basic_auth(username, &password.0);
        explain("The registry answers 401 with the realm; the client sends the login credential");
        explain(
            "there as HTTP Basic auth and gets a short-lived JWT the registry verifies offline.",
        );
        println!("  GET /token?{query}   (Basic auth: {username} + the sbl1. credential)");
        let (status, body) = http_get(broker.http_addr(), &format!("/token?{query}"), &basic.0)?;
        if status != 200 {
            return Err(format!("the realm answered HTTP {status}"));
        }
        let body: Value =
            serde_json::from_slice(&body).map_err(|e| format!("realm response: {e}"))?;
        let token = body["token"]
            .as_str()
            .ok_or_else(|| "the realm response has no token".to_owned())?;
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
            return Err(format!(
                "expected exactly pull on {REPOSITORY}, the token grants {}",
                claims["access"]
            ));
        }
        println!("  push was asked for and left out: the node may only pull.");
        Ok(())
    }

    fn real_registry(&mut self) -> Result<(), String> {
        let missing: Vec<&str> = ["docker-registry", "skopeo"]
            .into_iter()
            .filter(|p| !on_path(p))
            .collect();
        if !missing.is_empty() {
            let line = format!(
                "skipped: docker-registry/skopeo not installed (apt-get install docker-registry skopeo); missing: {}",
                missing.join(", ")
            );
            if std::env::var("CI").as_deref() == Ok("true") {
                return Err(format!("{line}; CI=true requires this step"));
            }
            println!("  {line}");
            self.registry_skipped = true;
            return Ok(());
        }
        let (Some(broker), Some(addr), Some((node_user, node_password)), Some(cluster)) = (
            &self.broker,
            self.registry_addr,
            &self.node_credential,
            &self.cluster,
        ) else {
            return Err("earlier steps did not finish".to_owned());
        };
        let realm = format!("http://{}/token", broker.http_addr());
        // Killed when this step returns, whatever the outcome.
        let _registry = start_registry(self.dir(), addr, &realm)?;
        explain("Debian's docker-registry (unmodified) trusts the broker CA and sends clients to");
        explain(
            "the realm; skopeo logs in with the credentials above, like any registry password.",
        );
        println!("  registry         docker-registry at {addr}, auth.token.realm = {realm}");

        let work = self.dir().join("skopeo");
        let image_dir = write_oci_image(&work.join("image"), TAG, "hello from svid-broker\n")?;
        let source = format!("oci:{}:{TAG}", image_dir.display());
        let dest = format!("docker://{addr}/{REPOSITORY}:{TAG}");

        // CI presents a JWT-SVID (audience svid-broker) straight to the realm as its password.
        let ci = parse_id(CI_ID)?;
        let jwt = cluster
            .issue_jwt_svid(&ci, &[AUDIENCE])
            .map_err(|e| error_chain(&e))?;
        let ci_auth = write_auth_file(&work, "ci", &addr, CI_ID, jwt.token().expose())?;
        let push = skopeo(
            &[
                "copy",
                "--dest-tls-verify=false",
                "--dest-authfile",
                &ci_auth,
                &source,
                &dest,
            ],
            &work,
        )?;
        if !push.success {
            return Err(format!("CI push failed: {}", last_line(&push.stderr)));
        }
        println!("  push  {CI_ID} (JWT-SVID) -> {REPOSITORY}:{TAG}: ok");

        let node_auth = write_auth_file(&work, "node", &addr, node_user, &node_password.0)?;
        let pulled = work.join("pulled");
        let pull = skopeo(
            &[
                "copy",
                "--src-tls-verify=false",
                "--src-authfile",
                &node_auth,
                &dest,
                &format!("oci:{}:{TAG}", pulled.display()),
            ],
            &work,
        )?;
        if !pull.success {
            return Err(format!("node pull failed: {}", last_line(&pull.stderr)));
        }
        if !pulled.join("index.json").is_file() {
            return Err("the pulled image has no index.json".to_owned());
        }
        println!("  pull  {node_user} (plugin credential) <- {REPOSITORY}:{TAG}: ok");

        let denied = skopeo(
            &[
                "copy",
                "--dest-tls-verify=false",
                "--dest-authfile",
                &node_auth,
                &source,
                &format!("docker://{addr}/{REPOSITORY}:pushed-by-node"),
            ],
            &work,
        )?;
        let refused = !denied.success
            && (denied.stderr.contains("unauthorized") || denied.stderr.contains("denied"));
        if !refused {
            return Err(format!(
                "a push with the pull-only node credential was not refused (exit ok: {}): {}",
                denied.success,
                last_line(&denied.stderr)
            ));
        }
        println!(
            "  push  {node_user} (plugin credential) -> {REPOSITORY}: refused, as the policy says"
        );
        println!("  real registry: push ok, pull ok, denied push refused");
        Ok(())
    }

    /// Stops what the demo started, in reverse order (the registry child already stopped with
    /// its step): the broker, the Workload APIs; then removes the directory.
    fn stop(&mut self) {
        if let Some(runtime) = &self.runtime {
            if let Some(broker) = self.broker.take() {
                runtime.block_on(broker.shutdown());
            }
            for api in self.apis.drain(..) {
                let _ = runtime.block_on(api.shutdown());
            }
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
        drop(self.dir.take());
    }
}

/// Prints the step header, runs it, and names it when it fails.
fn step(
    n: usize,
    title: &'static str,
    body: impl FnOnce() -> Result<(), String>,
) -> Result<(), DemoFailed> {
    println!("\n[{n}/{STEPS}] {title}");
    body().map_err(|reason| DemoFailed {
        step: n,
        title,
        reason,
    })
}

fn explain(line: &str) {
    println!("  {line}");
}

fn parse_id(s: &str) -> Result<SpiffeId, String> {
    SpiffeId::parse(s).map_err(|e| format!("{s}: {e}"))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
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

/// A port that was free a moment ago on 127.0.0.1 (the registry's start-up check catches the
/// rare race with another process).
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// What a finished child process left behind.
struct ChildOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `command` with `stdin` fed in, reading at most [`MAX_OUTPUT_BYTES`] of each stream, and
/// kills it (only it) after [`STEP_TIMEOUT`].
fn run_child(command: &mut Command, stdin: &[u8]) -> Result<ChildOutput, String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
    if let Some(mut input) = child.stdin.take() {
        // The child may exit before reading (a bad config): a broken pipe is its answer, not ours.
        let _ = input.write_all(stdin);
    }
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(MAX_OUTPUT_BYTES).read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = wait_bounded(&mut child)?;
    Ok(ChildOutput {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn wait_bounded(child: &mut Child) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("did not finish within {STEP_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Execs the provider as the kubelet does: the file named `providers[0].name` in the bin dir,
/// its `args`, its `env` on top of a minimal environment, the request on stdin.
fn kubelet_exec(
    plugin: &Path,
    kubelet_config: &Value,
    request: &Value,
) -> Result<ChildOutput, String> {
    let provider = &kubelet_config["providers"][0];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let args = strings(&provider["args"]);
    let env: Vec<(String, String)> = provider["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    Some((
                        e["name"].as_str()?.to_owned(),
                        e["value"].as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut stdin = request.to_string();
    stdin.push('\n');
    run_child(
        Command::new(plugin)
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env),
        stdin.as_bytes(),
    )
}

/// Parses the plugin's answer and replaces the password by its prefix and length.
fn redact_response(stdout: &str, registry: &SocketAddr) -> Result<(Value, String, Secret), String> {
    let mut response: Value = serde_json::from_str(stdout)
        .map_err(|e| format!("the plugin's stdout is not JSON: {e}"))?;
    let key = registry.to_string();
    let entry = response["auth"]
        .get_mut(&key)
        .ok_or_else(|| format!("the response has no credential for {key}"))?;
    let username = entry["username"]
        .as_str()
        .ok_or_else(|| "the response has no username".to_owned())?
        .to_owned();
    let password = entry["password"]
        .as_str()
        .ok_or_else(|| "the response has no password".to_owned())?
        .to_owned();
    if !password.starts_with("sbl1.") {
        return Err("the password is not an sbl1. login credential".to_owned());
    }
    entry["password"] = Value::from(format!("sbl1.… (REDACTED, {} characters)", password.len()));
    if username != NODE_ID {
        return Err(format!(
            "the credential is for {username}, expected {NODE_ID}"
        ));
    }
    Ok((response, username, Secret(password)))
}

fn basic_auth(username: &str, password: &str) -> Secret {
    Secret(format!(
        "Basic {}",
        STANDARD.encode(format!("{username}:{password}"))
    ))
}

/// One HTTP/1.1 GET on a fresh connection; returns the status and the (de-chunked) body.
fn http_get(addr: SocketAddr, target: &str, authorization: &str) -> Result<(u16, Vec<u8>), String> {
    let io = |e: std::io::Error| format!("realm at {addr}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, STEP_TIMEOUT).map_err(io)?;
    stream.set_read_timeout(Some(STEP_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(STEP_TIMEOUT)).map_err(io)?;
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\n\
         User-Agent: svid-broker-demo\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream
        .take(MAX_OUTPUT_BYTES)
        .read_to_end(&mut raw)
        .map_err(io)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| "the realm's response has no header end".to_owned())?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| "the realm's status line is malformed".to_owned())?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(&body)? } else { body };
    Ok((status, body))
}

fn dechunk(mut input: &[u8]) -> Result<Vec<u8>, String> {
    let bad = || "malformed chunked body".to_owned();
    let mut out = Vec::new();
    loop {
        let line_end = input
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(bad)?;
        let size_text = String::from_utf8_lossy(&input[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        input = &input[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = input.get(..size).ok_or_else(bad)?;
        out.extend_from_slice(chunk);
        input = input.get(size + 2..).ok_or_else(bad)?;
    }
}

/// The header and claims of a compact JWS, decoded without verifying (the registry verifies).
fn decode_jwt(token: &str) -> Result<(Value, Value), String> {
    let mut parts = token.split('.');
    let mut part = |what: &str| -> Result<Value, String> {
        let text = parts
            .next()
            .ok_or_else(|| format!("the token has no {what}"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| format!("the token's {what} is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| format!("the token's {what} is not JSON"))
    };
    Ok((part("header")?, part("claims")?))
}

/// A `docker-registry serve` child on `addr`, killed (only it) when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = wait_bounded(&mut self.0);
    }
}

fn start_registry(dir: &Path, addr: SocketAddr, realm: &str) -> Result<ChildGuard, String> {
    let root = dir.join("registry");
    std::fs::create_dir(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
         http:\n  addr: {addr}\nauth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    \
         issuer: {ISSUER}\n    rootcertbundle: {}\n",
        root.join("storage").display(),
        dir.join("broker-ca.pem").display()
    );
    let config_path = root.join("config.yml");
    write(&config_path, &config)?;
    // Its log (every blob probe's 404 at error level) goes to a file, not the demo's output.
    let log = std::fs::File::create(root.join("registry.log")).map_err(|e| e.to_string())?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start docker-registry: {e}"))?;
    let mut guard = ChildGuard(child);
    let deadline = Instant::now() + STEP_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = guard.0.try_wait() {
            let log = std::fs::read_to_string(root.join("registry.log")).unwrap_or_default();
            return Err(format!(
                "docker-registry exited during start-up ({status}): {}",
                last_line(&log)
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!("docker-registry did not listen on {addr} in time"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(guard)
}

/// A containers-auth.json for one registry, mode 0600: credentials never go on a command line,
/// where other users could read them in `ps`.
fn write_auth_file(
    work: &Path,
    name: &str,
    registry: &SocketAddr,
    username: &str,
    password: &str,
) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let path = work.join(format!("{name}-auth.json"));
    let auth = STANDARD.encode(format!("{username}:{password}"));
    let text = json!({"auths": {registry.to_string(): {"auth": auth}}}).to_string();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

struct SkopeoOutput {
    success: bool,
    stderr: String,
}

/// `skopeo ARGS` with a private HOME, so no user auth file or policy leaks in.
fn skopeo(args: &[&str], home: &Path) -> Result<SkopeoOutput, String> {
    let out = run_child(
        Command::new("skopeo")
            .args(args)
            .env("HOME", home)
            .env("XDG_RUNTIME_DIR", home)
            .env_remove("REGISTRY_AUTH_FILE"),
        b"",
    )
    .map_err(|e| format!("skopeo: {e}"))?;
    Ok(SkopeoOutput {
        success: out.status.success(),
        stderr: out.stderr,
    })
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// A one-layer OCI image layout (`oci:DIR:TAG`) whose layer is an uncompressed tar holding
/// `hello.txt`; built here so the demo needs no network.
fn write_oci_image(dir: &Path, tag: &str, contents: &str) -> Result<PathBuf, String> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| e.to_string())?;
    let put = |bytes: &[u8]| -> Result<(String, usize), String> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(blobs.join(&hex), bytes).map_err(|e| e.to_string())?;
        Ok((format!("sha256:{hex}"), bytes.len()))
    };
    let (layer, layer_size) = put(&tar_one_file("hello.txt", contents.as_bytes()))?;
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer]},
        "config": {},
    });
    let (config_digest, config_size) = put(config.to_string().as_bytes())?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer,
            "size": layer_size,
        }],
    });
    let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes())?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    write(&dir.join("index.json"), &index.to_string())?;
    write(&dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(dir.to_path_buf())
}

/// A POSIX ustar archive with one regular file: header, data padded to 512 bytes, two zero
/// blocks.
fn tar_one_file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], value: u64| {
        let text = format!("{value:0width$o}\0", width = field.len() - 1);
        field.copy_from_slice(text.as_bytes());
    };
    octal(&mut header[100..108], 0o644);
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    octal(&mut header[124..136], data.len() as u64);
    octal(&mut header[136..148], 0);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    header[148..156].copy_from_slice(b"        ");
    let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
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
        let (response, user, password) = redact_response(&stdout, &registry).unwrap();
        assert_eq!(user, NODE_ID);
        assert_eq!(password.0, secret);
        let shown = response.to_string();
        assert!(!shown.contains("payload"), "{shown}");
        assert!(shown.contains(&format!("REDACTED, {} characters", secret.len())));

        let not_ours = stdout.replace("sbl1.", "xyz.");
        assert!(redact_response(&not_ours, &registry).is_err());
        let other_key: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        assert!(redact_response(&stdout, &other_key).is_err());
    }

    #[test]
    fn chunked_bodies_decode_and_malformed_ones_fail() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert!(dechunk(b"5\r\nab").is_err());
        assert!(dechunk(b"zz\r\n").is_err());
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
        assert!(decode_jwt("not-a-jwt").is_err());
    }

    #[test]
    fn tar_headers_are_well_formed() {
        let tar = tar_one_file("hello.txt", b"hi\n");
        assert_eq!(tar.len(), 512 + 512 + 1024);
        assert_eq!(&tar[257..262], b"ustar");
        let stored: u32 = std::str::from_utf8(&tar[148..154])
            .ok()
            .and_then(|s| u32::from_str_radix(s, 8).ok())
            .unwrap();
        let mut header = tar[..512].to_vec();
        header[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, header.iter().map(|&b| u32::from(b)).sum::<u32>());
    }
}
