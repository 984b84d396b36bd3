//! Registries whose own API makes the credential, end to end through the broker and the real
//! kubelet plugin: the shared node fixture (a broker on a test clock, a node identity with its
//! Workload API, the `svid-broker` binary under the plugin's name), and the GitLab and Nexus
//! kinds against fakes of their APIs (`svid_broker_dev::fake::{gitlab, nexus}`, written from
//! the vendors' API definitions and enforcing their rules). GitLab's fake also plays GitLab's
//! registry token service, so a real `docker-registry` serves the pull. Harbor's end-to-end
//! test is `harbor.rs`. Tested against fakes of the vendors' APIs; not against the real services.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use svid_broker_dev::DevTrustDomain;
use svid_broker_dev::fake::gitlab::{self, FakeGitlab, GitlabSpec};
use svid_broker_dev::fake::nexus::{FakeNexus, NexusSpec};
use svid_broker_identity::clock::Clock;
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_testkit::broker::{BrokerFixture, id, runtime, serve_workload_api};
use svid_broker_testkit::process::{Output, run, wait_until};

use crate::registry::{Registry, TokenAuth, require, skopeo, write_oci_image};

pub(crate) const BROKER: &str = "spiffe://broker.test/svid-broker";
pub(crate) const NODE: &str = "spiffe://nodes.example/node/worker-1/credential-provider";
const AUDIENCE: &str = "svid-broker";
/// The policy's lifetime for backend credentials (the broker revokes them this long after
/// making them).
pub(crate) const TTL_SECONDS: u64 = 600;
/// The plugin's safety margin: what it subtracts from the credential's life.
pub(crate) const MARGIN_SECONDS: u64 = 30;

/// A clock the test moves.
#[derive(Debug)]
pub(crate) struct TestClock(Mutex<SystemTime>);

impl TestClock {
    pub(crate) fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

/// A broker on a test clock with one node identity, and the plugin that node runs.
pub(crate) struct Node {
    pub(crate) broker: BrokerFixture,
    pub(crate) clock: Arc<TestClock>,
    node_endpoint: String,
    plugin: PathBuf,
    plugin_config: PathBuf,
    _bin: tempfile::TempDir,
}

impl Node {
    /// Starts the broker in `dir` (which may already hold credential files) with `policy`,
    /// and writes a plugin config whose registry entries are `plugin_registries`.
    pub(crate) fn start(dir: tempfile::TempDir, policy: &str, plugin_registries: &str) -> Node {
        Self::start_on(dir, policy, plugin_registries, None)
    }

    /// As [`Node::start`], with the broker as an OIDC issuer (`[federation]`, a generated key)
    /// at a realm address known before it starts, so fakes can be told the issuer's URL; the
    /// port is free when chosen. Returns the issuer URL too.
    pub(crate) fn start_federated(
        dir: tempfile::TempDir,
        policy: impl FnOnce(&str) -> String,
        plugin_registries: &str,
    ) -> (Node, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let issuer = format!("http://127.0.0.1:{port}/federation");
        let policy = policy(&issuer);
        let node = Self::start_on(dir, &policy, plugin_registries, Some(port));
        (node, issuer)
    }

    fn start_on(
        dir: tempfile::TempDir,
        policy: &str,
        plugin_registries: &str,
        federation_port: Option<u16>,
    ) -> Node {
        let runtime = runtime();
        let mut apis = Vec::new();
        let mut endpoints = Vec::new();
        for (i, who) in [BROKER, NODE].into_iter().enumerate() {
            let who_id = id(who);
            let td = Arc::new(
                DevTrustDomain::new(who_id.trust_domain().clone(), [who_id.clone()]).unwrap(),
            );
            std::fs::write(
                dir.path().join(format!("bundle-{i}.json")),
                td.bundle_document_json(),
            )
            .unwrap();
            let api =
                serve_workload_api(&runtime, &td, &dir.path().join(format!("agent-{i}.sock")));
            endpoints.push(api.endpoint());
            apis.push(api);
        }
        std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
        let (http_port, public_port, federation) = match federation_port {
            Some(port) => (port, port, "[federation]\ngenerate = true\n"),
            None => (0, 1, ""),
        };
        let config = format!(
            r#"
[server]
http_addr = "127.0.0.1:{http_port}"
grpc_addr = "127.0.0.1:0"
public_url = "http://127.0.0.1:{public_port}"
shutdown_grace_seconds = 5
[identity]
audience = "{AUDIENCE}"
workload_api = "{}"
bundle_files = [{{ trust_domain = "nodes.example", path = "bundle-1.json" }}]
[policy]
file = "policy.toml"
[signing]
generate = true
# 1,000 plugin calls from one node in a few seconds: the per-subject rate limit (tested in
# the server crate) would answer for the backend otherwise.
[limits]
requests_per_second_per_subject = 0
[log]
audit = "audit.log"
{federation}"#,
            endpoints[0]
        );
        let clock = Arc::new(TestClock(Mutex::new(SystemTime::now())));
        let broker = BrokerFixture::start_with_config(dir, runtime, apis, &config, clock.clone());
        let plugin_config = broker.dir().join("plugin.toml");
        std::fs::write(
            &plugin_config,
            format!(
                "broker = \"{}\"\nbroker_id = \"{BROKER}\"\nbroker_bundle_file = \"bundle-0.json\"\n\
                 deadline_seconds = 10\nsafety_margin_seconds = {MARGIN_SECONDS}\n{plugin_registries}",
                broker.grpc_addr(),
            ),
        )
        .unwrap();
        // The `svid-broker` binary links the plugin and is the plugin under its name.
        let bin = tempfile::tempdir().unwrap();
        let plugin = bin.path().join("svid-credential-provider");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_svid-broker"), &plugin).unwrap();
        Node {
            broker,
            clock,
            node_endpoint: endpoints[1].clone(),
            plugin,
            plugin_config,
            _bin: bin,
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        self.broker.dir()
    }

    /// The kubelet's exec of the plugin for `image`: args, the node's Workload API, one
    /// request on stdin.
    pub(crate) fn plugin_for(&self, image: &str) -> Output {
        let request = serde_json::json!({
            "kind": "CredentialProviderRequest",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "image": image,
        });
        let mut stdin = serde_json::to_string(&request).unwrap();
        stdin.push('\n');
        run(
            std::process::Command::new(&self.plugin)
                .args(["--config", self.plugin_config.to_str().unwrap()])
                .env_clear()
                .env("SPIFFE_ENDPOINT_SOCKET", &self.node_endpoint)
                .current_dir(self.dir()),
            Some(stdin.as_bytes()),
        )
    }

    /// The plugin's answer for `image`: (username, password, cacheDuration in seconds).
    pub(crate) fn credential(&self, image: &str) -> (String, String, u64) {
        let out = self.plugin_for(image);
        assert!(out.success(), "plugin failed: {out:?}");
        let response: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let auth = response["auth"].as_object().unwrap();
        assert_eq!(auth.len(), 1, "{response}");
        let (key, entry) = auth.iter().next().unwrap();
        let untagged = image.rsplit_once(':').map_or(image, |(repo, _)| repo);
        assert_eq!(key, untagged, "repository scope keys by image");
        let cache = response["cacheDuration"].as_str().unwrap();
        (
            entry["username"].as_str().unwrap().to_owned(),
            entry["password"].as_str().unwrap().to_owned(),
            parse_go_seconds(cache),
        )
    }

    pub(crate) fn metrics(&self) -> String {
        let (status, _, body) = crate::realm::http(self.broker.http_addr(), "/metrics", None);
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// `12m30s`, `45s`, `0s` (the kubelet's Go duration) in whole seconds.
fn parse_go_seconds(text: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number.parse().unwrap_or_else(|_| panic!("duration {text}"));
        number.clear();
        total += match c {
            'h' => value * 3600.0,
            'm' => value * 60.0,
            's' => value,
            _ => panic!("duration {text}"),
        } as u64;
    }
    total
}

pub(crate) fn denied(out: &Output) -> bool {
    !out.success()
        && (out.stderr.contains("unauthorized")
            || out.stderr.contains("denied")
            || out.stderr.contains("authentication required"))
}

/// A real `docker-registry` whose `auth.token` trusts the registry product's own token
/// service (a fake's): `realm`, `service`, `issuer`, and the CA PEM written into `dir`.
pub(crate) fn registry_trusting(
    dir: &Path,
    realm: &str,
    service: &str,
    issuer: &str,
    ca_pem: &str,
) -> Registry {
    let ca = dir.join(format!("{service}-token-ca.pem"));
    std::fs::write(&ca, ca_pem).unwrap();
    Registry::start(Some(&TokenAuth {
        realm,
        service,
        issuer,
        rootcertbundle: &ca,
    }))
}

/// Writes a broker credential file, readable by its owner only (the broker refuses others).
pub(crate) fn write_credential(path: &Path, line: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, line).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A plugin registry entry: `service`, images on `host`, repository-scoped.
pub(crate) fn plugin_entry(service: &str, host: &str) -> String {
    format!(
        "\n[[registries]]\nservice = \"{service}\"\nmatch_images = [\"{host}\"]\nscope = \"repository\"\n"
    )
}

/// `skopeo copy` of `repository:v1` from `registry` with `user:password`, into a fresh
/// directory `pull-N` under `dir`.
pub(crate) fn skopeo_pull(
    registry: &Registry,
    dir: &Path,
    user: &str,
    password: &str,
    repository: &str,
    n: usize,
) -> Output {
    let work = dir.join(format!("pull-{n}"));
    std::fs::create_dir_all(&work).unwrap();
    skopeo(
        &[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &format!("{user}:{password}"),
            &registry.image_ref(repository, "v1"),
            &format!("oci:{}:v1", work.join("pulled").display()),
        ],
        &work,
    )
}

#[test]
fn a_gitlab_deploy_token_made_for_the_plugin_pulls_is_reused_and_is_revoked_at_the_ttl() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let fake = FakeGitlab::start(GitlabSpec::new(["group/app", "group/other"])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let registry = registry_trusting(
        dir.path(),
        &fake.token_realm(),
        gitlab::REGISTRY_SERVICE,
        gitlab::TOKEN_ISSUER,
        &fake.token_ca_pem(),
    );
    write_credential(
        &dir.path().join("gitlab.credential"),
        &format!("{}\n", fake.admin_token().expose_secret()),
    );
    let policy = format!(
        r#"
[[registries]]
name = "gitlab"
service = "{service}"
kind = "gitlab"
url = "{url}"
credential_file = "{dir}/gitlab.credential"
token_ttl_seconds = {TTL_SECONDS}
hosts = ["{host}"]

[[rules]]
id = "node-pulls-group-app"
subject = "{NODE}"
registry = "gitlab"
repositories = ["group/app/**"]
actions = ["pull"]
"#,
        service = gitlab::REGISTRY_SERVICE,
        url = fake.url(),
        dir = dir.path().display(),
        host = registry.addr,
    );
    let plugin_registries = plugin_entry(gitlab::REGISTRY_SERVICE, &registry.addr.to_string());
    let node = Node::start(dir, &policy, &plugin_registries);

    // Seed an image with a deploy token of the operator's.
    let seeder = fake
        .add_deploy_token(
            "group/app",
            "seeder",
            &["read_registry", "write_registry"],
            None,
        )
        .unwrap();
    let work = node.dir().join("seed");
    let image = write_oci_image(&work.join("image"), "v1", "hello from gitlab\n");
    let out = skopeo(
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &format!("{}:{}", seeder.info.username, seeder.token.expose_secret()),
            &format!("oci:{}:v1", image.display()),
            &registry.image_ref("group/app/web", "v1"),
        ],
        &work,
    );
    assert!(out.success(), "seed: {out:?}\n{}", registry.log());

    let image = format!("{}/group/app/web:v1", registry.addr);
    let (user, password, cache) = node.credential(&image);
    assert!(user.starts_with("svid-"), "{user}");
    assert!(
        cache > 0 && cache <= TTL_SECONDS - MARGIN_SECONDS,
        "{cache}s"
    );
    let tokens = fake.deploy_tokens();
    let made = tokens.iter().find(|t| t.username == user).unwrap();
    assert_eq!(made.scopes, ["read_registry"]);
    let out = skopeo_pull(&registry, node.dir(), &user, &password, "group/app/web", 1);
    assert!(out.success(), "pull: {out:?}\n{}", registry.log());

    // Another image of the same project: the same token.
    let (again, _, _) = node.credential(&format!("{}/group/app/api:v1", registry.addr));
    assert_eq!(again, user);
    assert_eq!(fake.tokens_created(), 1);
    // Nothing on the other project.
    let out = node.plugin_for(&format!("{}/group/other/web:v1", registry.addr));
    assert!(!out.success(), "{out:?}");

    node.clock.advance(Duration::from_secs(TTL_SECONDS + 1));
    wait_until(
        "the broker revokes the deploy token",
        Duration::from_secs(20),
        || fake.tokens_revoked() == 1,
    );
    let out = skopeo_pull(&registry, node.dir(), &user, &password, "group/app/web", 2);
    assert!(denied(&out), "a revoked deploy token pulled: {out:?}");
    let audit = node.broker.audit();
    assert!(audit.contains("\"backend\":\"gitlab\""), "{audit}");
    assert!(!audit.contains(&password));
}

#[test]
fn a_nexus_user_made_for_the_plugin_is_reused_and_deleted_at_the_ttl() {
    let fake = FakeNexus::start(NexusSpec::new(["nx-docker-pull", "nx-docker-push"])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_credential(
        &dir.path().join("nexus.credential"),
        &format!("{}\n", fake.admin_credential_line().expose_secret()),
    );
    let policy = format!(
        r#"
[[registries]]
name = "nexus"
service = "nexus-docker"
kind = "nexus"
url = "{url}"
credential_file = "{dir}/nexus.credential"
pull_role = "nx-docker-pull"
push_role = "nx-docker-push"
token_ttl_seconds = {TTL_SECONDS}
hosts = ["nexus.example"]

[[rules]]
id = "node-pulls-everything"
subject = "{NODE}"
registry = "nexus"
repositories = ["**"]
whole_registry = true
actions = ["pull"]
"#,
        url = fake.url(),
        dir = dir.path().display(),
    );
    let node = Node::start(dir, &policy, &plugin_entry("nexus-docker", "nexus.example"));

    let (user, password, _) = node.credential("nexus.example/team/web:v1");
    assert!(user.starts_with("svid-"), "{user}");
    assert!(fake.authenticate(&user, &password), "the user logs in");
    let users = fake.users();
    let made = users.iter().find(|u| u.user_id == user).unwrap();
    assert_eq!(made.roles, ["nx-docker-pull"]);
    let (again, _, _) = node.credential("nexus.example/other/api:v1");
    assert_eq!(
        again, user,
        "registry-wide: one user per node and action set"
    );
    assert_eq!(fake.users_created(), 1);

    node.clock.advance(Duration::from_secs(TTL_SECONDS + 1));
    wait_until(
        "the broker deletes the user",
        Duration::from_secs(20),
        || fake.users_deleted() == 1,
    );
    assert!(
        !fake.authenticate(&user, &password),
        "a deleted user logs in"
    );
    let metrics = node.metrics();
    let line =
        r#"svid_broker_backend_credentials_total{registry="nexus",kind="nexus",event="revoked"} 1"#;
    assert!(metrics.contains(line), "{line} missing:\n{metrics}");
}
