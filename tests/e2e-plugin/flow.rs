//! End to end: the broker runs in-process (`BrokerServer`) with its SVID from a dev Workload
//! API; every workload identity (the node's plugin, a CI builder, a stranger) has its own dev
//! trust domain and Workload API, trusted by the broker through bundle files; Debian's
//! `docker-registry` (2.8.2) uses the broker as its token realm. The plugin binary is run the
//! way the kubelet runs it: args and env from a `CredentialProviderConfig`, one request on stdin;
//! the username and password it answers make `skopeo` (1.9.3) pull, and push only where policy
//! allows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use svid_broker_dev::DevTrustDomain;
use svid_broker_dev::satoken::{DevSaAlgorithm, DevServiceAccountIssuer, SaTokenRequest};
use svid_broker_identity::clock::SystemClock;
use svid_broker_identity::secret::ExposeSecret as _;

use crate::registry::{
    Registry, SkopeoOutput, TokenAuth, require, skopeo, skopeo_with_env, write_oci_image,
};
use crate::strict::{self, StrictResponse};
use crate::support::{Output, PLUGIN, plugin, run};
use crate::testkit;
use crate::testkit::broker::{BrokerFixture, id};

const AUDIENCE: &str = "svid-broker";
const SERVICE: &str = "registry.local";
const ISSUER: &str = "svid-broker";
const BROKER: &str = "spiffe://broker.test/svid-broker";
pub(crate) const NODE: &str = "spiffe://nodes.example/node/worker-1/credential-provider";
const BUILDER: &str = "spiffe://ci.example/builder";
const STRANGER: &str = "spiffe://other.example/stranger";
const SA_ISSUER: &str = "https://kubernetes.default.svc";
const SA_APP: &str = "spiffe://example.org/ns/team-a/sa/app";
const DEADLINE_SECONDS: u64 = 5;

const POLICY: &str = r#"
[[registries]]
name = "local"
service = "registry.local"
issuer = "svid-broker"
profile = "distribution-2"
hosts = ["127.0.0.1:5000"]

[[rules]]
id = "node-pull"
subject = "spiffe://nodes.example/node/worker-1/credential-provider"
registry = "local"
repositories = ["team/*"]
actions = ["pull"]

[[rules]]
id = "builder"
subject = "spiffe://ci.example/builder"
registry = "local"
repositories = ["team/*"]
actions = ["pull", "push"]

[[rules]]
id = "sa-app"
subject = "spiffe://example.org/ns/team-a/sa/app"
registry = "local"
repositories = ["team/*"]
actions = ["pull"]
"#;

pub(crate) struct Fixture {
    // Declared first: the registry stops before the broker it asks for tokens.
    registry: Registry,
    broker: BrokerFixture,
    /// Who each Workload API (owned by `broker`) serves, and its endpoint.
    endpoints: Vec<(String, String)>,
    sa: Option<DevServiceAccountIssuer>,
}

impl Fixture {
    /// Broker, Workload APIs and registry; with `sa`, the broker also accepts service-account
    /// tokens of a dev issuer with the node's plugin as trusted actor.
    pub(crate) fn start(sa: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let runtime = testkit::broker::runtime();
        let mut apis = Vec::new();
        let mut endpoints = Vec::new();
        let mut bundle_files = Vec::new();
        for (i, who) in [BROKER, NODE, BUILDER, STRANGER].into_iter().enumerate() {
            let who_id = id(who);
            let td = Arc::new(
                DevTrustDomain::new(who_id.trust_domain().clone(), [who_id.clone()]).unwrap(),
            );
            let bundle = dir.path().join(format!("bundle-{i}.json"));
            std::fs::write(&bundle, td.bundle_document_json()).unwrap();
            if who != BROKER {
                bundle_files.push(format!(
                    r#"{{ trust_domain = "{}", path = "{}" }}"#,
                    td.trust_domain(),
                    bundle.display()
                ));
            }
            let api = testkit::broker::serve_workload_api(
                &runtime,
                &td,
                &dir.path().join(format!("agent-{i}.sock")),
            );
            endpoints.push((who.to_owned(), api.endpoint()));
            apis.push(api);
        }
        std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
        let mut sa_section = String::new();
        let issuer = sa.then(|| {
            let issuer = DevServiceAccountIssuer::new(SA_ISSUER, DevSaAlgorithm::Es256).unwrap();
            issuer.write_jwks(dir.path().join("sa.jwks.json")).unwrap();
            sa_section = format!(
                r#"
[service_account]
trusted_actors = ["{NODE}"]
[[service_account.issuers]]
issuer = "{SA_ISSUER}"
audiences = ["{AUDIENCE}"]
trust_domain = "example.org"
jwks_file = "sa.jwks.json"
"#
            );
            issuer
        });
        let config = format!(
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
# The latency benchmark execs the plugin hundreds of times a second for one node identity;
# the per-subject rate limit (tested in the server crate) would answer for it instead.
[limits]
requests_per_second_per_subject = 0
[log]
audit = "audit.log"
{sa_section}"#,
            endpoints[0].1,
            bundle_files.join(", ")
        );
        let broker =
            BrokerFixture::start_with_config(dir, runtime, apis, &config, Arc::new(SystemClock));
        let registry = Registry::start(Some(&TokenAuth {
            realm: &broker.realm_url(),
            service: SERVICE,
            issuer: ISSUER,
            rootcertbundle: &broker.ca_path(),
        }));
        Fixture {
            registry,
            broker,
            endpoints,
            sa: issuer,
        }
    }

    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn dir(&self) -> &Path {
        self.broker.dir()
    }

    pub(crate) fn host(&self) -> String {
        self.registry().addr.to_string()
    }

    pub(crate) fn endpoint(&self, who: &str) -> String {
        self.endpoints
            .iter()
            .find(|(w, _)| w == who)
            .map(|(_, endpoint)| endpoint.clone())
            .unwrap()
    }

    fn grpc_addr(&self) -> String {
        self.broker.grpc_addr().to_string()
    }

    /// Writes a plugin config for this registry; `broker` overrides the broker address.
    pub(crate) fn plugin_config(&self, name: &str, scope: &str, broker: Option<&str>) -> PathBuf {
        let path = self.dir().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                r#"broker = "{}"
broker_id = "{BROKER}"
broker_bundle_file = "bundle-0.json"
deadline_seconds = {DEADLINE_SECONDS}
log_file = "plugin.log"

[[registries]]
service = "{SERVICE}"
match_images = ["{}"]
scope = "{scope}"
"#,
                broker.map_or_else(|| self.grpc_addr(), str::to_owned),
                self.host()
            ),
        )
        .unwrap();
        path
    }

    /// A kubelet `CredentialProviderConfig` whose one provider runs the plugin with `config`
    /// and the Workload API of `who`.
    fn kubelet_config(&self, name: &str, config: &Path, endpoint: &str) -> PathBuf {
        let path = self.dir().join(format!("{name}.kubelet.json"));
        let json = serde_json::json!({
            "apiVersion": "kubelet.config.k8s.io/v1",
            "kind": "CredentialProviderConfig",
            "providers": [{
                "name": "svid-credential-provider",
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "matchImages": [self.host()],
                "defaultCacheDuration": "0s",
                "args": ["--config", config.display().to_string()],
                "env": [{"name": "SPIFFE_ENDPOINT_SOCKET", "value": endpoint}],
            }],
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
        path
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("plugin.log")).unwrap_or_default()
    }
}

/// Execs the first provider of `kubelet_config` as the kubelet does: its args, its env entries
/// (the kubelet's own environment is empty here), the request on stdin with a trailing newline.
fn kubelet_exec(kubelet_config: &Path, request: &serde_json::Value) -> Output {
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(kubelet_config).unwrap()).unwrap();
    let provider = &config["providers"][0];
    let args: Vec<String> = provider["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let env: Vec<(String, String)> = provider["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut stdin = serde_json::to_string(request).unwrap();
    stdin.push('\n');
    plugin(&args, &env, &stdin)
}

pub(crate) fn request(api_version: &str, image: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "CredentialProviderRequest",
        "apiVersion": format!("credentialprovider.kubelet.k8s.io/{api_version}"),
        "image": image,
    })
}

/// Runs the plugin for `image` as `who`, expects success, decodes strictly, and returns the
/// response with its single credential.
fn credentials(
    fx: &Fixture,
    config: &Path,
    who: &str,
    api_version: &str,
    image: &str,
) -> (StrictResponse, String, String) {
    let kubelet = fx.kubelet_config(api_version, config, &fx.endpoint(who));
    let out = kubelet_exec(&kubelet, &request(api_version, image));
    assert!(out.success(), "plugin failed: {out:?}");
    assert_eq!(out.stderr, "", "stderr must stay empty on success");
    let response = strict::decode(
        &out.stdout,
        &format!("credentialprovider.kubelet.k8s.io/{api_version}"),
    );
    let auth = response.auth.as_ref().unwrap();
    assert_eq!(auth.len(), 1, "{auth:?}");
    let creds = auth.values().next().unwrap();
    let (user, password) = (creds.username.clone(), creds.password.clone());
    (response, user, password)
}

fn push(fx: &Fixture, user: &str, password: &str, repo: &str) -> SkopeoOutput {
    let work = fx.dir().join(format!("push-{}", repo.replace('/', "-")));
    let image = write_oci_image(&work.join("image"), "v1", "hello from the plugin\n");
    skopeo(
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &format!("{user}:{password}"),
            &format!("oci:{}:v1", image.display()),
            &fx.registry().image_ref(repo, "v1"),
        ],
        &work,
    )
}

fn pull(fx: &Fixture, user: &str, password: &str, repo: &str, n: usize) -> SkopeoOutput {
    let work = fx.dir().join(format!("pull-{n}"));
    std::fs::create_dir_all(&work).unwrap();
    skopeo(
        &[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &format!("{user}:{password}"),
            &fx.registry().image_ref(repo, "v1"),
            &format!("oci:{}:v1", work.join("pulled").display()),
        ],
        &work,
    )
}

fn denied(out: &SkopeoOutput) -> bool {
    !out.success() && (out.stderr.contains("unauthorized") || out.stderr.contains("denied"))
}

#[test]
fn node_mode_credentials_pull_and_push_only_where_policy_allows() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let fx = Fixture::start(false);
    let config = fx.plugin_config("registry-scope", "registry", None);
    let image = format!("{}/team/app", fx.host());

    // Both configs lint clean, with the kubelet's matcher.
    let kubelet = fx.kubelet_config("lint", &config, &fx.endpoint(NODE));
    let out = plugin(
        &[
            "validate",
            "--kubelet-config",
            kubelet.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
        "",
    );
    assert_eq!(out.stdout, "ok\n", "{out:?}");

    // The builder's plugin (v1beta1 provider) gets a registry-wide credential and pushes.
    let (response, user, password) = credentials(&fx, &config, BUILDER, "v1beta1", &image);
    assert_eq!(response.cache_key_type, "Registry");
    assert_eq!(
        response.auth.as_ref().unwrap().keys().next().unwrap(),
        &fx.host()
    );
    assert_eq!(user, BUILDER);
    let life = strict::go_duration_secs(response.cache_duration.as_deref().unwrap());
    assert!(life > 0 && life <= 1800 - 60, "cacheDuration {life}s");
    let out = push(&fx, &user, &password, "team/app");
    assert!(
        out.success(),
        "builder push failed: {}\n{}",
        out.stderr,
        fx.registry().log()
    );

    // The node's plugin (v1 provider) pulls; its policy does not allow push.
    let (response, user, password) = credentials(&fx, &config, NODE, "v1", &image);
    assert_eq!(user, NODE);
    assert_eq!(response.cache_key_type, "Registry");
    let out = pull(&fx, &user, &password, "team/app", 1);
    assert!(
        out.success(),
        "node pull failed: {}\n{}",
        out.stderr,
        fx.registry().log()
    );
    let out = push(&fx, &user, &password, "team/app2");
    assert!(denied(&out), "a pull-only node pushed: {out:?}");

    // The same with a JWT-SVID bearer instead of mTLS.
    let jwt_config = fx.dir().join("jwt.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[[registries]]",
        &format!("[svid]\nauth = \"jwt\"\njwt_audience = \"{AUDIENCE}\"\n\n[[registries]]"),
    );
    std::fs::write(&jwt_config, text).unwrap();
    let (_, user, password) = credentials(&fx, &jwt_config, NODE, "v1", &image);
    assert_eq!(user, NODE);
    let out = pull(&fx, &user, &password, "team/app", 5);
    assert!(out.success(), "node pull (jwt) failed: {}", out.stderr);

    // v1alpha1 works the same.
    let (response, _, _) = credentials(&fx, &config, NODE, "v1alpha1", &image);
    assert_eq!(
        response.api_version,
        "credentialprovider.kubelet.k8s.io/v1alpha1"
    );

    // An image that is not ours: empty answer, not cached.
    let out = kubelet_exec(&kubelet, &request("v1", "docker.io/library/nginx"));
    assert!(out.success());
    let response = strict::decode(&out.stdout, "credentialprovider.kubelet.k8s.io/v1");
    assert_eq!(response.cache_duration.as_deref(), Some("0s"));
    assert!(response.auth.unwrap().is_empty());

    // The log file has one line per run and no password.
    let log = fx.log();
    assert!(log.lines().count() >= 4, "{log}");
    assert!(
        log.contains("outcome=ok") && log.contains("outcome=not-ours"),
        "{log}"
    );
    assert!(!log.contains(&password), "the log holds a password");
}

#[test]
fn repository_scope_keys_by_image_and_caps_the_credential() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let fx = Fixture::start(false);
    let registry_scope = fx.plugin_config("registry-scope", "registry", None);
    let image = format!("{}/team/app", fx.host());
    let (_, user, password) = credentials(&fx, &registry_scope, BUILDER, "v1", &image);
    assert!(push(&fx, &user, &password, "team/app").success());

    // Repository scope: keyed by the image, cached per image, ceiling = pull on that
    // repository, so even the builder cannot push with it.
    let repo_scope = fx.plugin_config("repository-scope", "repository", None);
    let (response, user, password) = credentials(&fx, &repo_scope, BUILDER, "v1", &image);
    assert_eq!(response.cache_key_type, "Image");
    assert_eq!(
        response.auth.as_ref().unwrap().keys().next().unwrap(),
        &image
    );
    let out = pull(&fx, &user, &password, "team/app", 2);
    assert!(out.success(), "pull failed: {}", out.stderr);
    let out = push(&fx, &user, &password, "team/app");
    assert!(denied(&out), "a pull-ceiling credential pushed: {out:?}");
}

#[test]
fn failures_name_their_cause() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let fx = Fixture::start(false);
    let image = format!("{}/team/app", fx.host());
    // No timing assertion: the harness kills a plugin that outlives its step limit (failing the
    // test), and the deadline's own arithmetic is unit-tested in the client crate.
    let check = |out: &Output, want: &str| {
        assert!(!out.success(), "{out:?}");
        assert_eq!(out.stdout, "", "nothing on stdout on failure");
        let line = out.one_stderr_line();
        eprintln!("failure line: {line} ({:?})", out.elapsed);
        assert!(
            line.starts_with(&format!("svid-credential-provider: {want}")),
            "want {want:?}: {line}"
        );
    };

    // Broker down: a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let down = fx.plugin_config("broker-down", "registry", Some(&closed));
    let kubelet = fx.kubelet_config("down", &down, &fx.endpoint(NODE));
    check(
        &kubelet_exec(&kubelet, &request("v1", &image)),
        "broker unavailable",
    );

    // Workload API down: the agent socket is gone.
    let config = fx.plugin_config("registry-scope", "registry", None);
    let gone = format!("unix://{}", fx.dir().join("gone.sock").display());
    let kubelet = fx.kubelet_config("no-agent", &config, &gone);
    check(
        &kubelet_exec(&kubelet, &request("v1", &image)),
        "workload api unreachable",
    );

    // Workload API down with its socket left behind: connections are refused until the
    // initial sync gives up, then the probe names the cause.
    let stale = fx.dir().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let kubelet = fx.kubelet_config(
        "stale-agent",
        &config,
        &format!("unix://{}", stale.display()),
    );
    check(
        &kubelet_exec(&kubelet, &request("v1", &image)),
        "workload api unreachable",
    );

    // A trusted identity that no rule allows.
    let kubelet = fx.kubelet_config("stranger", &config, &fx.endpoint(STRANGER));
    let out = kubelet_exec(&kubelet, &request("v1", &image));
    check(&out, "permission denied");
}

#[test]
fn docker_credential_helper_get_works_with_skopeo() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let fx = Fixture::start(false);
    let config = fx.plugin_config("helper", "registry", None);
    let (_, user, password) = credentials(
        &fx,
        &config,
        BUILDER,
        "v1",
        &format!("{}/team/app", fx.host()),
    );
    assert!(push(&fx, &user, &password, "team/app").success());

    let link = fx.dir().join("docker-credential-svid");
    std::os::unix::fs::symlink(PLUGIN, &link).unwrap();
    let endpoint = fx.endpoint(NODE);
    let env = [
        ("SVID_CREDENTIAL_PROVIDER_CONFIG", config.to_str().unwrap()),
        ("SPIFFE_ENDPOINT_SOCKET", endpoint.as_str()),
    ];
    let url = format!("http://{}", fx.host());
    let out = run(&link, &["get"], &env, &format!("{url}\n"));
    assert!(out.status.success(), "{out:?}");
    let answer: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer["ServerURL"], url.as_str());
    assert_eq!(answer["Username"], NODE);
    let secret = answer["Secret"].as_str().unwrap();
    let out = pull(&fx, NODE, secret, "team/app", 3);
    assert!(
        out.success(),
        "pull with helper credentials failed: {}",
        out.stderr
    );

    // skopeo finds the helper itself: `credHelpers` in its auth.json
    // ($XDG_RUNTIME_DIR/containers/auth.json) names `svid`, so it runs `docker-credential-svid
    // get` from PATH with the registry's host:port on stdin and pulls with the answer.
    let work = fx.dir().join("pull-cred-helpers");
    std::fs::create_dir_all(work.join("containers")).unwrap();
    std::fs::write(
        work.join("containers/auth.json"),
        serde_json::json!({"credHelpers": {fx.host(): "svid"}}).to_string(),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        fx.dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = skopeo_with_env(
        &[
            "copy",
            "--src-tls-verify=false",
            &fx.registry().image_ref("team/app", "v1"),
            &format!("oci:{}:v1", work.join("pulled").display()),
        ],
        &work,
        &[
            ("PATH", path.as_str()),
            ("SVID_CREDENTIAL_PROVIDER_CONFIG", config.to_str().unwrap()),
            ("SPIFFE_ENDPOINT_SOCKET", endpoint.as_str()),
        ],
    );
    assert!(
        out.success(),
        "pull through credHelpers failed: {}",
        out.stderr
    );
    let log = fx.log();
    let helper_line = log
        .lines()
        .find(|l| l.contains(" helper=get ") && l.contains(&format!("server={:?}", fx.host())))
        .unwrap_or_else(|| panic!("no helper log line for {}: {log}", fx.host()));
    assert!(helper_line.contains("outcome=ok"), "{helper_line}");
    assert!(
        helper_line.ends_with(&format!(" subject={NODE}")),
        "{helper_line}"
    );
    assert!(!log.contains(secret), "the log holds a secret");
}

/// KEP-4412 mode: the node's plugin presents the pod's service-account token as subject and
/// its SVID as actor; the credential belongs to the mapped SPIFFE ID and policy applies to it.
#[test]
fn service_account_token_mode_pulls_as_the_pod_identity() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let fx = Fixture::start(true);
    let config = fx.plugin_config("registry-scope", "registry", None);
    let image = format!("{}/team/app", fx.host());
    let (_, user, password) = credentials(&fx, &config, BUILDER, "v1", &image);
    assert!(push(&fx, &user, &password, "team/app").success());

    let issuer = fx.sa.as_ref().unwrap();
    let token = issuer
        .mint(&SaTokenRequest::new("team-a", "app", AUDIENCE).pod("app-0"))
        .unwrap();
    let token = token.expose_secret().to_owned();
    let mut req = request("v1", &image);
    req["serviceAccountToken"] = token.clone().into();
    req["serviceAccountAnnotations"] = serde_json::json!({"example.io/role": "puller"});
    let kubelet = fx.kubelet_config("sa", &config, &fx.endpoint(NODE));
    let out = kubelet_exec(&kubelet, &req);
    assert!(out.success(), "{out:?}");
    let response = strict::decode(&out.stdout, "credentialprovider.kubelet.k8s.io/v1");
    let (_, creds) = response.auth.as_ref().unwrap().iter().next().unwrap();
    assert_eq!(creds.username, SA_APP);
    assert_ne!(
        creds.password, token,
        "the password must never be the sa token"
    );
    let life = strict::go_duration_secs(response.cache_duration.as_deref().unwrap());
    assert!(life > 0 && life <= 3600, "{life}");
    let out = pull(&fx, &creds.username, &creds.password, "team/app", 4);
    assert!(out.success(), "sa pull failed: {}", out.stderr);
    let out = push(&fx, &creds.username, &creds.password, "team/app3");
    assert!(denied(&out), "an sa pull-only credential pushed");
    assert!(!fx.log().contains(&token), "the log holds the sa token");

    // A service account no rule allows.
    let other = issuer
        .mint(&SaTokenRequest::new("team-b", "other", AUDIENCE))
        .unwrap();
    req["serviceAccountToken"] = other.expose_secret().into();
    let out = kubelet_exec(&kubelet, &req);
    assert!(!out.success());
    let line = out.one_stderr_line();
    assert!(line.contains("permission denied"), "{line}");
    assert!(!line.contains(other.expose_secret()));

    // An actor that is not trusted to present subject tokens.
    req["serviceAccountToken"] = token.clone().into();
    let kubelet = fx.kubelet_config("sa-untrusted", &config, &fx.endpoint(BUILDER));
    let out = kubelet_exec(&kubelet, &req);
    assert!(!out.success(), "{out:?}");
    assert!(!out.stderr.contains(&token));
}
