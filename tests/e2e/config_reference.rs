//! `docs/configuration.md` checked against the real parsers, so the reference cannot drift:
//! every key the broker config and policy parsers accept is documented and every documented key
//! is accepted, with its documented default (the parsed configuration is the same with and
//! without it), its allowed values and range ends. The plugin config's table is checked the same
//! way by the plugin crate (`crates/credential-provider/src/config/reference_tests.rs`), the
//! only place its parser is reachable. See `harness.rs` for the page's markers.

mod harness;

use std::path::{Path, PathBuf};

use svid_broker_identity::SpiffeId;
use svid_broker_policy::{Policy, scope};
use svid_broker_server::BrokerConfig;

use harness::{Base, check};

fn page() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn parse_broker(text: &str) -> Result<String, String> {
    BrokerConfig::from_toml_str(text, &PathBuf::from("/etc/svid-broker"))
        .map(|c| format!("{c:?}"))
        .map_err(|e| e.to_string())
}

/// Registries as parsed plus the full explanation of one decision: what a policy does, without
/// the unordered internals of `Policy`'s `Debug`.
fn parse_policy(text: &str) -> Result<String, String> {
    let policy = Policy::from_toml_str(text).map_err(|e| e.to_string())?;
    let registries: Vec<_> = policy.registries().collect();
    let who = SpiffeId::parse("spiffe://example.org/ns/a/sa/b").unwrap();
    let asked = scope::parse_scopes(["repository:team/app:pull,push,delete"]).unwrap();
    let decision = policy
        .decide(&who, "registry.local", &asked)
        .map(|d| d.explain())
        .map_err(|e| e.to_string());
    Ok(format!("{registries:?}\n{decision:?}"))
}

const SERVER: Base<'static> = &[
    ("server.http_addr", "\"127.0.0.1:8080\""),
    ("server.public_url", "\"http://127.0.0.1:8080\""),
    ("identity.audience", "\"svid-broker\""),
    ("policy.file", "\"policy.toml\""),
];

/// The smallest development config: bundle files and a generated signing CA.
fn broker_dev() -> Vec<(&'static str, &'static str)> {
    let mut b = SERVER.to_vec();
    b.extend([
        ("identity.bundle_files[].trust_domain", "\"example.org\""),
        ("identity.bundle_files[].path", "\"bundle.json\""),
        ("signing.generate", "true"),
    ]);
    b
}

/// Production shape: Workload API, CA files, service-account tokens with OIDC discovery.
fn broker_discovery() -> Vec<(&'static str, &'static str)> {
    let mut b = SERVER.to_vec();
    b.extend([
        ("identity.workload_api", "\"unix:///run/spire/agent.sock\""),
        ("signing.ca_cert_file", "\"ca.pem\""),
        ("signing.ca_key_file", "\"ca.key\""),
        // The realm over HTTPS (issue 8 item 15): both files or neither.
        ("server.tls.cert_file", "\"realm.pem\""),
        ("server.tls.key_file", "\"realm.key\""),
        (
            "service_account.trusted_actors",
            "[\"spiffe://example.org/node/credential-provider\"]",
        ),
        (
            "service_account.issuers[].issuer",
            "\"https://kubernetes.default.svc.cluster.local\"",
        ),
        ("service_account.issuers[].audiences", "[\"svid-broker\"]"),
        ("service_account.issuers[].trust_domain", "\"example.org\""),
        ("service_account.issuers[].oidc_discovery", "true"),
    ]);
    b
}

/// The broker as an OIDC issuer, with a generated key.
fn broker_federation() -> Vec<(&'static str, &'static str)> {
    let mut b = broker_dev();
    b.push(("federation.generate", "true"));
    b
}

/// The broker as an OIDC issuer, with key files.
fn broker_federation_files() -> Vec<(&'static str, &'static str)> {
    let mut b = broker_dev();
    b.push(("federation.key_files", "[\"federation.pem\"]"));
    b
}

/// The CA key in a PKCS#11 token, the PIN in a file.
fn broker_pkcs11() -> Vec<(&'static str, &'static str)> {
    let mut b = broker_dev();
    b.retain(|(key, _)| *key != "signing.generate");
    b.extend([
        ("signing.ca_cert_file", "\"ca.pem\""),
        (
            "signing.key",
            "\"pkcs11:token=svid-broker;object=signing-ca\"",
        ),
        (
            "signing.pkcs11_module",
            "\"/usr/lib/softhsm/libsofthsm2.so\"",
        ),
        ("signing.pin_file", "\"hsm.pin\""),
    ]);
    b
}

/// The federation keys in a PKCS#11 token, the PIN in the environment.
fn broker_pkcs11_federation() -> Vec<(&'static str, &'static str)> {
    let mut b = broker_dev();
    b.extend([
        (
            "signing.pkcs11_module",
            "\"/usr/lib/softhsm/libsofthsm2.so\"",
        ),
        ("signing.pin_env", "\"SVID_BROKER_HSM_PIN\""),
        (
            "federation.keys",
            "[\"pkcs11:token=svid-broker;object=federation-a\"]",
        ),
    ]);
    b
}

/// The CA key and its HMAC key in AWS KMS.
fn broker_kms() -> Vec<(&'static str, &'static str)> {
    let mut b = broker_dev();
    b.retain(|(key, _)| *key != "signing.generate");
    b.extend([
        ("signing.ca_cert_file", "\"ca.pem\""),
        ("signing.key", "\"awskms:alias/svid-broker-ca\""),
        ("signing.mac_key", "\"awskms:alias/svid-broker-mac\""),
        ("signing.aws_region", "\"eu-west-1\""),
    ]);
    b
}

/// Service-account tokens with a JWK Set file.
fn broker_jwks_file() -> Vec<(&'static str, &'static str)> {
    let mut b = broker_dev();
    b.extend([
        (
            "service_account.issuers[].issuer",
            "\"https://kubernetes.default.svc.cluster.local\"",
        ),
        ("service_account.issuers[].audiences", "[\"svid-broker\"]"),
        ("service_account.issuers[].trust_domain", "\"example.org\""),
        (
            "service_account.issuers[].jwks_file",
            "\"cluster.jwks.json\"",
        ),
    ]);
    b
}

const REGISTRY: Base<'static> = &[
    ("registries[].name", "\"local\""),
    ("registries[].service", "\"registry.local\""),
    ("registries[].issuer", "\"svid-broker\""),
    ("registries[].profile", "\"distribution-2\""),
    ("registries[].hosts", "[\"127.0.0.1:5000\"]"),
];

fn policy_subject_rule() -> Vec<(&'static str, &'static str)> {
    let mut b = REGISTRY.to_vec();
    b.extend([
        ("rules[].id", "\"team-pull\""),
        ("rules[].subject", "\"spiffe://example.org/ns/a/sa/b\""),
        ("rules[].registry", "\"local\""),
        ("rules[].repositories", "[\"team/*\"]"),
        ("rules[].actions", "[\"pull\"]"),
    ]);
    b
}

fn policy_whole_registry_rule() -> Vec<(&'static str, &'static str)> {
    let mut b = REGISTRY.to_vec();
    b.extend([
        ("rules[].id", "\"everyone-pulls\""),
        ("rules[].trust_domain", "\"example.org\""),
        ("rules[].registry", "\"local\""),
        ("rules[].repositories", "[\"**\"]"),
        ("rules[].actions", "[\"pull\"]"),
        ("rules[].whole_registry", "true"),
    ]);
    b
}

fn policy_catalog_rule() -> Vec<(&'static str, &'static str)> {
    let mut b = REGISTRY.to_vec();
    b.extend([
        ("rules[].id", "\"catalog\""),
        ("rules[].subject", "\"spiffe://example.org/ns/a/sa/b\""),
        ("rules[].registry", "\"local\""),
        ("rules[].actions", "[\"registry:catalog:*\"]"),
    ]);
    b
}

/// A Harbor registry: the broker makes robots through its API, so `url` and
/// `credential_file` instead of `issuer` and `profile`, and rules written project-wide.
fn policy_harbor_registry() -> Vec<(&'static str, &'static str)> {
    vec![
        ("registries[].name", "\"corp\""),
        ("registries[].service", "\"harbor-registry\""),
        ("registries[].kind", "\"harbor\""),
        ("registries[].url", "\"https://harbor.example.org\""),
        (
            "registries[].credential_file",
            "\"/etc/svid-broker/harbor.credential\"",
        ),
        ("registries[].hosts", "[\"harbor.example.org\"]"),
        ("rules[].id", "\"team-pull\""),
        ("rules[].subject", "\"spiffe://example.org/ns/a/sa/b\""),
        ("rules[].registry", "\"corp\""),
        // Registry-wide: at the reach of every backend kind (a Harbor or GitLab project, Nexus).
        ("rules[].repositories", "[\"**\"]"),
        ("rules[].whole_registry", "true"),
        ("rules[].actions", "[\"pull\"]"),
    ]
}

/// A registry that trusts the broker as an OIDC issuer: `url`, and no `credential_file`;
/// Quay's two robots.
fn policy_federated_registry() -> Vec<(&'static str, &'static str)> {
    vec![
        ("registries[].name", "\"quay\""),
        ("registries[].service", "\"quay.example.org\""),
        ("registries[].kind", "\"quay\""),
        ("registries[].url", "\"https://quay.example.org\""),
        ("registries[].pull_robot", "\"svid_pull\""),
        ("registries[].push_robot", "\"svid_push\""),
        ("registries[].hosts", "[\"quay.example.org\"]"),
    ]
}

/// Artifactory: the OIDC integration's name.
fn policy_artifactory_registry() -> Vec<(&'static str, &'static str)> {
    vec![
        ("registries[].name", "\"jfrog\""),
        ("registries[].service", "\"jfrog.example.org\""),
        ("registries[].kind", "\"artifactory\""),
        ("registries[].url", "\"https://jfrog.example.org\""),
        ("registries[].provider_name", "\"svid-broker\""),
        ("registries[].hosts", "[\"jfrog.example.org\"]"),
    ]
}

/// A Nexus registry: the broker's users get one of two roles the operator made.
fn policy_nexus_registry() -> Vec<(&'static str, &'static str)> {
    vec![
        ("registries[].name", "\"nexus\""),
        ("registries[].service", "\"nexus.example.org\""),
        ("registries[].kind", "\"nexus\""),
        ("registries[].url", "\"https://nexus.example.org\""),
        (
            "registries[].credential_file",
            "\"/etc/svid-broker/nexus.credential\"",
        ),
        ("registries[].pull_role", "\"nx-docker-pull\""),
        ("registries[].push_role", "\"nx-docker-push\""),
        ("registries[].hosts", "[\"nexus.example.org\"]"),
    ]
}

/// Amazon ECR: the `aws` table, no `url`; rules at any repository pattern.
fn policy_ecr_registry() -> Vec<(&'static str, &'static str)> {
    vec![
        ("registries[].name", "\"ecr\""),
        ("registries[].service", "\"ecr.example\""),
        ("registries[].kind", "\"ecr\""),
        (
            "registries[].aws.role_arn",
            "\"arn:aws:iam::123456789012:role/svid-puller\"",
        ),
        ("registries[].aws.region", "\"us-east-1\""),
        ("registries[].hosts", "[\"ecr.example\"]"),
    ]
}

/// Artifact Registry: the `gcp` table, no `url`.
fn policy_gar_registry() -> Vec<(&'static str, &'static str)> {
    vec![
        ("registries[].name", "\"gar\""),
        ("registries[].service", "\"gar.example\""),
        ("registries[].kind", "\"gar\""),
        (
            "registries[].gcp.workload_identity_provider",
            "\"//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/svid/providers/broker\"",
        ),
        (
            "registries[].gcp.service_account",
            "\"puller@my-project.iam.gserviceaccount.com\"",
        ),
        ("registries[].hosts", "[\"gar.example\"]"),
    ]
}

/// ACR: the `azure` table and the login server as `url`.
fn policy_acr_registry() -> Vec<(&'static str, &'static str)> {
    vec![
        ("registries[].name", "\"acr\""),
        ("registries[].service", "\"acr.example\""),
        ("registries[].kind", "\"acr\""),
        ("registries[].url", "\"https://corp.azurecr.io\""),
        (
            "registries[].azure.tenant_id",
            "\"0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b\"",
        ),
        (
            "registries[].azure.client_id",
            "\"11111111-2222-3333-4444-555555555555\"",
        ),
        ("registries[].hosts", "[\"corp.azurecr.io\"]"),
    ]
}

#[test]
fn broker_config_reference_matches_the_parser() {
    let (a, b, c, d, e) = (
        broker_dev(),
        broker_discovery(),
        broker_jwks_file(),
        broker_federation(),
        broker_federation_files(),
    );
    let (f, g, h) = (broker_pkcs11(), broker_pkcs11_federation(), broker_kms());
    let checked = check(
        &page(),
        "broker",
        &parse_broker,
        &[&a, &b, &c, &d, &e, &f, &g, &h],
    );
    assert!(checked >= 30, "only {checked} broker keys");
}

#[test]
fn policy_reference_matches_the_parser() {
    let (a, b, c, d, e, f, g) = (
        policy_subject_rule(),
        policy_whole_registry_rule(),
        policy_catalog_rule(),
        policy_harbor_registry(),
        policy_federated_registry(),
        policy_nexus_registry(),
        policy_artifactory_registry(),
    );
    let (h, i, j) = (
        policy_ecr_registry(),
        policy_gar_registry(),
        policy_acr_registry(),
    );
    let checked = check(
        &page(),
        "policy",
        &parse_policy,
        &[&a, &b, &c, &d, &e, &f, &g, &h, &i, &j],
    );
    assert!(checked >= 20, "only {checked} policy keys");
}

/// The probe really depends on the parser: a parser knowing one more key than the page
/// documents makes the check fail.
#[test]
#[should_panic(expected = "keys the parser accepts but the page does not document")]
fn an_undocumented_key_fails_the_check() {
    let md = "<!-- check:config-keys t -->\n| key | type | default | allowed | meaning |\n\
              |---|---|---|---|---|\n| `a` | integer | required, e.g. `1` | | x |\n\
              <!-- /check:config-keys -->\n```toml reference=t\na = 1\n```\n";
    // Accepts `a` and `b`, refusing anything else the way serde does.
    let parse = |text: &str| -> Result<String, String> {
        for line in text.lines() {
            let key = line.split(" = ").next().unwrap_or("");
            if key != "a" && key != "b" {
                return Err(format!("unknown field `{key}`, expected `a` or `b`"));
            }
        }
        if text.contains("a = ") {
            Ok(text.to_owned())
        } else {
            Err("missing field `a`".to_owned())
        }
    };
    check(md, "t", &parse, &[&[("a", "1")]]);
}
