//! The Docker credential helper (`docker-credential-svid get`, the real binary under that name)
//! against registries whose own API makes the credential: a Nexus registry, whose every
//! credential reaches the whole registry, is served a registry-wide user through the node
//! fixture of `backends.rs` and a fake of Nexus's API; a Harbor registry, whose credentials are
//! per project, is refused with a message that says why. Tested against a fake of the vendor's
//! API, not the real service.

use std::path::{Path, PathBuf};

use svid_broker_dev::fake::nexus::{FakeNexus, NexusSpec};
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_testkit::process::{Output, run};

use crate::backends::{NODE, Node, TTL_SECONDS, write_credential};

/// The helper's config entries (its `scope` is not read in helper mode: a server URL names no
/// repository, so every `get` is a registry-wide request).
const HELPER_REGISTRIES: &str = r#"
[[registries]]
service = "nexus-docker"
match_images = ["nexus.example"]

[[registries]]
service = "harbor-registry"
match_images = ["harbor.example"]
"#;

/// `docker-credential-svid get` with `server_url` on stdin, run as the node: the `svid-broker`
/// binary under the helper's name, the node's Workload API, the fixture's plugin config.
fn helper_get(node: &Node, bin: &Path, server_url: &str) -> Output {
    let helper = bin.join("docker-credential-svid");
    if !helper.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_svid-broker"), &helper).unwrap();
    }
    // The fixture serves the node's Workload API at `agent-1.sock` and writes the plugin's
    // config (broker address, broker ID and bundle, these registries) as `plugin.toml`.
    let endpoint = format!("unix://{}", node.dir().join("agent-1.sock").display());
    let config: PathBuf = node.dir().join("plugin.toml");
    run(
        std::process::Command::new(&helper)
            .arg("get")
            .env_clear()
            .env("SVID_CREDENTIAL_PROVIDER_CONFIG", &config)
            .env("SPIFFE_ENDPOINT_SOCKET", endpoint)
            .current_dir(node.dir()),
        Some(format!("{server_url}\n").as_bytes()),
    )
}

#[test]
fn the_credential_helper_gets_a_registry_wide_nexus_user_and_is_told_why_harbor_cannot() {
    let fake = FakeNexus::start(NexusSpec::new(["nx-docker-pull", "nx-docker-push"])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_credential(
        &dir.path().join("nexus.credential"),
        &format!("{}\n", fake.admin_credential_line().expose_secret()),
    );
    // Never called: the broker refuses the registry-wide request before Harbor's API.
    write_credential(
        &dir.path().join("harbor.credential"),
        "robot$manager:unused-secret\n",
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

[[registries]]
name = "corp"
service = "harbor-registry"
kind = "harbor"
url = "http://127.0.0.1:1"
credential_file = "{dir}/harbor.credential"
token_ttl_seconds = {TTL_SECONDS}
hosts = ["harbor.example"]

[[rules]]
id = "node-pushes-everything"
subject = "{NODE}"
registry = "nexus"
repositories = ["**"]
whole_registry = true
actions = ["pull", "push"]

[[rules]]
id = "node-may-not-push"
trust_domain = "nodes.example"
registry = "nexus"
repositories = ["**"]
effect = "deny"
actions = ["push"]

[[rules]]
id = "node-pulls-team-a"
subject = "{NODE}"
registry = "corp"
repositories = ["team-a/**"]
actions = ["pull"]
"#,
        url = fake.url(),
        dir = dir.path().display(),
    );
    let node = Node::start(dir, &policy, HELPER_REGISTRIES);
    let bin = tempfile::tempdir().unwrap();

    let url = "https://nexus.example/v2/";
    let out = helper_get(&node, bin.path(), url);
    assert!(out.success(), "helper failed: {out:?}");
    let answer: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer["ServerURL"], url);
    let user = answer["Username"].as_str().unwrap();
    let secret = answer["Secret"].as_str().unwrap();
    assert!(
        user.starts_with("svid-"),
        "a Nexus user, not the node: {user}"
    );
    assert!(fake.authenticate(user, secret), "the user logs in at Nexus");
    let users = fake.users();
    let made = users.iter().find(|u| u.user_id == user).unwrap();
    // Allowed pull and push on every repository, push denied: the pull role only.
    assert_eq!(made.roles, ["nx-docker-pull"]);

    // A second `get` reuses the user: same subject, same action set.
    let again = helper_get(&node, bin.path(), "nexus.example");
    assert!(again.success(), "helper failed: {again:?}");
    let again: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(again["Username"], user);
    assert_eq!(fake.users_created(), 1);

    // Harbor: a robot is per project and a server URL names none.
    let out = helper_get(&node, bin.path(), "harbor.example");
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stdout.contains("its credentials are per project")
            && out.stdout.contains("scope = \"repository\""),
        "{out:?}"
    );
    assert!(!out.stdout.contains(secret), "{out:?}");

    let audit = std::fs::read_to_string(node.dir().join("audit.log")).unwrap();
    let events: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["event"] == "svid-broker.exchange")
        .collect();
    let created = events
        .iter()
        .find(|e| e["decision"] == "allow" && e["service"] == "nexus-docker")
        .unwrap_or_else(|| panic!("no allow event for nexus: {audit}"));
    assert_eq!(created["granted"], "repository:**:pull", "{created}");
    assert!(
        events.iter().any(|e| e["decision"] == "deny"
            && e["service"] == "harbor-registry"
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("its credentials are per project"))),
        "no refusal event for harbor: {audit}"
    );
    assert!(!audit.contains(secret), "the audit log holds a secret");
}

/// The helper's entries for the three clouds.
const CLOUD_HELPER_REGISTRIES: &str = r#"
[[registries]]
service = "ecr.example"
match_images = ["ecr.example"]

[[registries]]
service = "gar.example"
match_images = ["gar.example"]

[[registries]]
service = "acr.example"
match_images = ["acr.example"]
"#;

#[test]
fn the_credential_helper_gets_registry_wide_ecr_gar_and_acr_credentials() {
    use svid_broker_dev::fake::aws::{Condition, FakeAws};
    use svid_broker_dev::fake::azure::FakeAzure;
    use svid_broker_dev::fake::google::{FakeGoogle, RegistryRole};

    const ROLE: &str = "arn:aws:iam::123456789012:role/svid-puller";
    const PROVIDER: &str = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/svid/providers/broker";
    const SA: &str = "puller@proj.iam.gserviceaccount.com";
    const TENANT: &str = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b";
    const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
    let (aws, google, azure) = (
        FakeAws::start().unwrap(),
        FakeGoogle::start().unwrap(),
        FakeAzure::start().unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (node, issuer) = Node::start_federated(
        dir,
        |_| {
            let rule = |id: &str, registry: &str| {
                format!(
                    "[[rules]]\nid = \"{id}\"\nsubject = \"{NODE}\"\nregistry = \"{registry}\"\n\
                     repositories = [\"**\"]\nwhole_registry = true\nactions = [\"pull\"]\n"
                )
            };
            format!(
                r#"
[[registries]]
name = "ecr"
service = "ecr.example"
kind = "ecr"
aws.role_arn = "{ROLE}"
aws.region = "{region}"
aws.sts_endpoint = "{sts}"
aws.ecr_endpoint = "{ecr}"
token_ttl_seconds = {TTL_SECONDS}
hosts = ["ecr.example"]

[[registries]]
name = "gar"
service = "gar.example"
kind = "gar"
gcp.workload_identity_provider = "{PROVIDER}"
gcp.service_account = "{SA}"
gcp.sts_endpoint = "{google}"
gcp.iamcredentials_endpoint = "{google}"
token_ttl_seconds = {TTL_SECONDS}
hosts = ["gar.example"]

[[registries]]
name = "acr"
service = "acr.example"
kind = "acr"
url = "{acr}"
azure.tenant_id = "{TENANT}"
azure.client_id = "{CLIENT}"
azure.authority_host = "{entra}"
token_ttl_seconds = {TTL_SECONDS}
hosts = ["acr.example"]

{ecr_rule}
{gar_rule}
{acr_rule}"#,
                region = aws.region(),
                sts = aws.sts_url(),
                ecr = aws.ecr_url(),
                google = google.url(),
                acr = azure.registry_url(),
                entra = azure.authority_url(),
                ecr_rule = rule("ecr-all", "ecr"),
                gar_rule = rule("gar-all", "gar"),
                acr_rule = rule("acr-all", "acr"),
            )
        },
        CLOUD_HELPER_REGISTRIES,
    );
    crate::cloud::trust_the_broker(&aws, &issuer, Condition::StringEquals(NODE.to_owned()));
    google
        .add_provider(PROVIDER, &issuer, Vec::new(), None)
        .unwrap();
    google.add_service_account(SA);
    google
        .grant_workload_identity_user(SA, &FakeGoogle::principal(PROVIDER, NODE).unwrap())
        .unwrap();
    google
        .set_registry_role(SA, Some(RegistryRole::Reader))
        .unwrap();
    azure.add_app(TENANT, CLIENT).unwrap();
    azure
        .add_federated_credential(CLIENT, &issuer, NODE, &["api://AzureADTokenExchange"])
        .unwrap();
    azure.assign_role(CLIENT, "AcrPull").unwrap();
    let bin = tempfile::tempdir().unwrap();

    let get = |url: &str| {
        let out = helper_get(&node, bin.path(), url);
        assert!(out.success(), "helper failed for {url}: {out:?}");
        let answer: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        (
            answer["Username"].as_str().unwrap().to_owned(),
            answer["Secret"].as_str().unwrap().to_owned(),
        )
    };
    let (user, password) = get("https://ecr.example");
    assert_eq!(user, "AWS");
    assert!(aws.token_is_live(&password));
    let (user, token) = get("gar.example");
    assert_eq!(user, "oauth2accesstoken");
    assert_eq!(google.registry_role(&token), Some(RegistryRole::Reader));
    let (user, refresh) = get("acr.example");
    assert_eq!(user, "00000000-0000-0000-0000-000000000000");
    assert!(azure.authenticate(&refresh));

    let audit = std::fs::read_to_string(node.dir().join("audit.log")).unwrap();
    for service in ["ecr.example", "gar.example", "acr.example"] {
        assert!(
            audit.lines().any(|l| l.contains("\"decision\":\"allow\"")
                && l.contains(&format!("\"service\":\"{service}\""))
                && l.contains("repository:**:pull")),
            "no registry-wide grant for {service}: {audit}"
        );
    }
    for secret in [&password, &token, &refresh] {
        assert!(
            !audit.contains(secret.as_str()),
            "the audit log holds a secret"
        );
    }
}
