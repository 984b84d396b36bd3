//! Registries that trust the broker as an OIDC issuer, end to end: the broker serves its
//! federation issuer (`[federation]`, discovery document and JWKS on its realm listener), the
//! real kubelet plugin asks it for a credential, and the broker exchanges a JWT it signs at a
//! fake Quay (robot federation) or a fake Artifactory (OIDC token exchange). Each fake fetches
//! the broker's discovery document and JWKS over HTTP and verifies the JWT as the vendor does
//! (`svid_broker_dev::fake::{quay, artifactory}`), so a pass here means the broker's issuer is
//! one those verifiers accept. Tested against fakes of the vendors' APIs; not against the real
//! services.

use std::time::Duration;

use svid_broker_dev::fake::artifactory::{FakeArtifactory, TokenSpec};
use svid_broker_dev::fake::harbor::Fault;
use svid_broker_dev::fake::quay::{self, FakeQuay, FederationEntry, QuayRole};
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_testkit::process::wait_until;

use crate::backends::{
    MARGIN_SECONDS, NODE, Node, TTL_SECONDS, denied, plugin_entry, registry_trusting, skopeo_pull,
};
use crate::registry::{require, skopeo, write_oci_image};

/// The one-hour life of a Quay robot token (`TMP_ROBOT_TOKEN_VALIDITY_LIFETIME_S`).
const QUAY_TOKEN_SECONDS: u64 = 3600;

fn quay_policy(url: &str) -> String {
    format!(
        r#"
[[registries]]
name = "quay"
service = "quay.example"
kind = "quay"
url = "{url}"
pull_robot = "svid_pull"
push_robot = "svid_push"
jwt_subject = "svid-broker:{{access}}"
token_ttl_seconds = {TTL_SECONDS}
hosts = ["quay.example"]

[[rules]]
id = "node-pulls-team-orgs"
subject = "{NODE}"
registry = "quay"
repositories = ["team-a/**", "team-c/**"]
actions = ["pull"]
"#
    )
}

#[test]
fn a_quay_robot_token_is_exchanged_for_the_brokers_jwt_reused_and_dropped_at_the_ttl() {
    let fake = FakeQuay::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (node, issuer) = Node::start_federated(
        dir,
        |_| quay_policy(&fake.url()),
        &plugin_entry("quay.example", "quay.example"),
    );
    fake.add_robot("team-a", "svid_pull").unwrap();
    fake.grant_repository("team-a", "svid_pull", "team-a/web", QuayRole::Read)
        .unwrap();
    fake.set_federation(
        "team-a",
        "svid_pull",
        vec![FederationEntry::new(&issuer, "svid-broker:pull").with_audiences([fake.url()])],
    )
    .unwrap();
    // team-c's robot trusts the broker for another subject only: Quay refuses the exchange.
    fake.add_robot("team-c", "svid_pull").unwrap();
    fake.set_federation(
        "team-c",
        "svid_pull",
        vec![FederationEntry::new(&issuer, "someone-else")],
    )
    .unwrap();

    let (user, token, cache) = node.credential("quay.example/team-a/web:v1");
    assert_eq!(user, "team-a+svid_pull");
    assert!(fake.token_works(&user, &token), "the robot token logs in");
    assert!(
        cache <= TTL_SECONDS - MARGIN_SECONDS,
        "cacheDuration {cache}s outlives the policy's {TTL_SECONDS}s"
    );
    // Quay fetched the broker's own discovery document and JWKS to verify the JWT.
    assert!(fake.discovery_fetches() >= 1 && fake.jwks_fetches() >= 1);
    let (again, same, _) = node.credential("quay.example/team-a/api:v2");
    assert_eq!(
        (again.as_str(), same.as_str()),
        (user.as_str(), token.as_str())
    );
    assert_eq!(fake.exchanges(), 1, "one exchange per subject and robot");

    let refused = node.plugin_for("quay.example/team-c/web:v1");
    assert!(!refused.success(), "{refused:?}");
    let text = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        text.contains("quay registry \"quay\"") && text.contains("team-c+svid_pull"),
        "the error names the registry and the robot: {text}"
    );
    let outside = node.plugin_for("quay.example/team-b/web:v1");
    assert!(!outside.success(), "no rule for team-b: {outside:?}");

    let audit = std::fs::read_to_string(node.dir().join("audit.log")).unwrap();
    assert!(audit.contains("\"backend\":\"quay\""), "{audit}");
    assert!(audit.contains("team-a+svid_pull"), "{audit}");
    // The broker stops handing it out at the policy's time; Quay ends it at its hour.
    assert!(audit.contains("\"valid_until\":"), "{audit}");
    assert!(
        !audit.contains(&token),
        "the audit log holds the robot token"
    );

    // The policy's lifetime ends: the broker stops handing the token out (it cannot revoke
    // it), and says so in its metrics; Quay ends it at its own hour.
    node.clock.advance(Duration::from_secs(TTL_SECONDS + 1));
    let expired =
        r#"svid_broker_backend_credentials_total{registry="quay",kind="quay",event="expired"} 1"#;
    wait_until(
        "the broker drops the token at the policy's lifetime",
        Duration::from_secs(20),
        || node.metrics().contains(expired),
    );
    // The registry's clock moves with the broker's (the broker's next JWT is dated then).
    fake.advance_clock(Duration::from_secs(TTL_SECONDS + 1));
    assert!(
        fake.token_works(&user, &token),
        "Quay robot tokens cannot be revoked one by one"
    );
    let (_, fresh, _) = node.credential("quay.example/team-a/web:v1");
    assert_ne!(fresh, token, "a new exchange after the lifetime");
    assert_eq!(fake.exchanges(), 2);
    fake.advance_clock(Duration::from_secs(QUAY_TOKEN_SECONDS + 1));
    assert!(!fake.token_works(&user, &token), "Quay ends it at its hour");
}

#[test]
fn a_quay_outage_is_a_clear_error_naming_the_registry_and_the_step() {
    let fake = FakeQuay::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (node, issuer) = Node::start_federated(
        dir,
        |_| quay_policy(&fake.url()),
        &plugin_entry("quay.example", "quay.example"),
    );
    fake.add_robot("team-a", "svid_pull").unwrap();
    fake.set_federation(
        "team-a",
        "svid_pull",
        vec![FederationEntry::new(&issuer, "svid-broker:pull")],
    )
    .unwrap();
    fake.fail_next(Fault::Status(503), 10);
    let out = node.plugin_for("quay.example/team-a/web:v1");
    assert!(!out.success(), "{out:?}");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("quay registry \"quay\"") && text.contains("503"),
        "{text}"
    );
}

fn artifactory_policy(url: &str, provider: &str) -> String {
    format!(
        r#"
[[registries]]
name = "jfrog"
service = "jfrog.example"
kind = "artifactory"
url = "{url}"
provider_name = "{provider}"
token_ttl_seconds = {TTL_SECONDS}
hosts = ["jfrog.example"]

[[rules]]
id = "node-pulls-everything"
subject = "{NODE}"
registry = "jfrog"
repositories = ["**"]
whole_registry = true
actions = ["pull"]
"#
    )
}

#[test]
fn an_artifactory_token_is_exchanged_for_the_brokers_jwt_reused_and_dropped_at_the_ttl() {
    let fake = FakeArtifactory::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (node, issuer) = Node::start_federated(
        dir,
        |_| artifactory_policy(&fake.url(), "svid-broker"),
        &plugin_entry("jfrog.example", "jfrog.example"),
    );
    fake.add_provider("svid-broker", &issuer, Some(fake.url()));
    let pull = serde_json::json!({ "svid_broker_access": "pull" });
    fake.add_identity_mapping(
        "svid-broker",
        "pullers",
        1,
        pull.as_object().unwrap().clone(),
        TokenSpec::new(
            "svid-puller",
            "applied-permissions/groups:readers",
            TTL_SECONDS,
        ),
    )
    .unwrap();

    let (user, token, cache) = node.credential("jfrog.example/docker-local/web:v1");
    assert_eq!(user, "svid-puller");
    assert!(fake.authenticate(&user, &token), "the access token logs in");
    assert!(
        cache <= TTL_SECONDS - MARGIN_SECONDS,
        "cacheDuration {cache}s"
    );
    assert!(fake.discovery_fetches() >= 1 && fake.jwks_fetches() >= 1);
    let (again, same, _) = node.credential("jfrog.example/docker-remote/api:v2");
    assert_eq!(
        (again.as_str(), same.as_str()),
        (user.as_str(), token.as_str())
    );
    assert_eq!(
        fake.exchanges(),
        1,
        "registry-wide: one token per subject and access"
    );

    let audit = std::fs::read_to_string(node.dir().join("audit.log")).unwrap();
    assert!(audit.contains("\"backend\":\"artifactory\""), "{audit}");
    assert!(
        !audit.contains(&token),
        "the audit log holds the access token"
    );

    node.clock.advance(Duration::from_secs(TTL_SECONDS + 1));
    let expired = r#"svid_broker_backend_credentials_total{registry="jfrog",kind="artifactory",event="expired"} 1"#;
    wait_until(
        "the broker drops the token at the policy's lifetime",
        Duration::from_secs(20),
        || node.metrics().contains(expired),
    );
    fake.advance_clock(Duration::from_secs(TTL_SECONDS + 1));
    let (_, fresh, _) = node.credential("jfrog.example/docker-local/web:v1");
    assert_ne!(fresh, token);
    assert_eq!(fake.exchanges(), 2);
}

#[test]
fn an_artifactory_without_the_brokers_provider_refuses_with_the_step_named() {
    let fake = FakeArtifactory::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (node, _issuer) = Node::start_federated(
        dir,
        |_| artifactory_policy(&fake.url(), "not-configured"),
        &plugin_entry("jfrog.example", "jfrog.example"),
    );
    let out = node.plugin_for("jfrog.example/docker-local/web:v1");
    assert!(!out.success(), "{out:?}");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("artifactory registry \"jfrog\"") && text.contains("not-configured"),
        "{text}"
    );
    assert_eq!(fake.exchanges(), 0);
}

#[test]
fn a_quay_robot_token_from_the_plugin_pulls_from_a_real_registry_and_cannot_push() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let fake = FakeQuay::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A real docker-registry whose token realm is Quay's (the fake's `/v2/auth`).
    let registry = registry_trusting(
        dir.path(),
        &fake.token_realm(),
        "quay-registry",
        quay::TOKEN_ISSUER,
        &fake.token_ca_pem(),
    );
    let host = registry.addr.to_string();
    let (node, issuer) = Node::start_federated(
        dir,
        |_| {
            quay_policy(&fake.url())
                .replace("service = \"quay.example\"", "service = \"quay-registry\"")
                .replace(
                    "hosts = [\"quay.example\"]",
                    &format!("hosts = [\"{host}\"]"),
                )
        },
        &plugin_entry("quay-registry", &host),
    );
    fake.add_robot("team-a", "svid_pull").unwrap();
    fake.grant_repository("team-a", "svid_pull", "team-a/web", QuayRole::Read)
        .unwrap();
    fake.set_federation(
        "team-a",
        "svid_pull",
        vec![FederationEntry::new(&issuer, "svid-broker:pull")],
    )
    .unwrap();

    // The operator's own robot seeds the image.
    fake.add_robot("team-a", "seeder").unwrap();
    fake.grant_repository("team-a", "seeder", "team-a/web", QuayRole::Write)
        .unwrap();
    let seeder = fake.robot_token("team-a", "seeder").unwrap();
    let work = node.dir().join("seed");
    let image = write_oci_image(&work.join("image"), "v1", "hello from quay\n");
    let out = skopeo(
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &format!("team-a+seeder:{}", seeder.expose_secret()),
            &format!("oci:{}:v1", image.display()),
            &registry.image_ref("team-a/web", "v1"),
        ],
        &work,
    );
    assert!(out.success(), "seed: {out:?}\n{}", registry.log());

    let (user, password, _) = node.credential(&format!("{host}/team-a/web:v1"));
    assert_eq!(user, "team-a+svid_pull");
    let out = skopeo_pull(&registry, node.dir(), &user, &password, "team-a/web", 1);
    assert!(out.success(), "pull: {out:?}\n{}", registry.log());

    // The pull robot's token cannot push.
    let push_work = node.dir().join("push");
    let image = write_oci_image(&push_work.join("image"), "v2", "not allowed\n");
    let out = skopeo(
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &format!("{user}:{password}"),
            &format!("oci:{}:v2", image.display()),
            &registry.image_ref("team-a/web", "v2"),
        ],
        &push_work,
    );
    assert!(denied(&out), "a pull robot's token pushed: {out:?}");
}

#[test]
fn federation_key_writes_an_owner_only_key_whose_kid_it_prints_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("federation.pem");
    let make = || {
        svid_broker_testkit::process::run(
            std::process::Command::new(env!("CARGO_BIN_EXE_svid-broker"))
                .args(["federation-key", "--out"])
                .arg(&path),
            None,
        )
    };
    let out = make();
    assert!(out.success(), "{out:?}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key =
        svid_broker_token::federation::FederationKey::from_pem(&std::fs::read(&path).unwrap())
            .unwrap();
    assert_eq!(out.stdout.trim(), key.kid());
    let before = std::fs::read(&path).unwrap();
    let again = make();
    assert!(!again.success(), "{again:?}");
    assert!(again.stderr.contains("--out"), "{again:?}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the key was overwritten"
    );
}
