//! Cloud registries without cloud keys, end to end: the broker serves its federation issuer,
//! the real kubelet plugin asks it (over `Exchange`) for a credential, and the broker trades a
//! JWT it signs at a fake cloud: AWS STS then ECR (`ecr`), Google STS then IAM Credentials
//! (`gar`), Entra ID then ACR's `/oauth2/exchange` (`acr`). Each fake fetches the broker's
//! discovery document and JWKS over HTTP and verifies the JWT as the cloud does
//! (`svid_broker_dev::fake::{aws, google, azure}`); the fake ECR checks the SigV4 signature
//! of `GetAuthorizationToken` with its own verifier. Tested against fakes of the clouds' APIs;
//! not against the real services.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use base64::Engine as _;
use svid_broker_dev::fake::aws::{self, Condition, FakeAws, RoleTrust, Statement};
use svid_broker_dev::fake::azure::{self, FakeAzure};
use svid_broker_dev::fake::google::{FakeGoogle, RegistryRole};
use svid_broker_dev::fake::harbor::Fault;

use crate::backends::{MARGIN_SECONDS, NODE, Node, TTL_SECONDS, plugin_entry};

const ROLE: &str = "arn:aws:iam::123456789012:role/svid-puller";
const PROVIDER: &str = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/svid/providers/broker";
const SERVICE_ACCOUNT: &str = "puller@proj.iam.gserviceaccount.com";
const TENANT: &str = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b";
const CLIENT: &str = "11111111-2222-3333-4444-555555555555";

/// The text of a refused plugin call.
fn refusal(node: &Node, image: &str) -> String {
    let out = node.plugin_for(image);
    assert!(!out.success(), "{out:?}");
    format!("{}{}", out.stdout, out.stderr)
}

/// `GET path` at `addr` with Basic `user:password`: the status.
fn basic_get(addr: SocketAddr, path: &str, user: &str, password: &str) -> u16 {
    let credential = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {credential}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"))
}

/// The audit log's registry-credential events.
fn issued(node: &Node) -> Vec<serde_json::Value> {
    std::fs::read_to_string(node.dir().join("audit.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["kind"] == "registry_credential")
        .collect()
}

/// The IAM side for the broker at `issuer`: its OIDC provider (client id `sts.amazonaws.com`)
/// and [`ROLE`] trusting JWTs whose `sub` meets `sub`, allowed every ECR action (the session
/// policy narrows each session).
pub(crate) fn trust_the_broker(fake: &FakeAws, issuer: &str, sub: Condition) {
    fake.add_oidc_provider(issuer, &["sts.amazonaws.com"]);
    fake.add_role(
        ROLE,
        RoleTrust::new(
            issuer.trim_start_matches("http://"),
            sub,
            Condition::StringEquals("sts.amazonaws.com".to_owned()),
        ),
        &[Statement::allow(&["ecr:*"], &["*"])],
    )
    .unwrap();
}

pub(crate) fn ecr_policy(fake: &FakeAws) -> String {
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

[[rules]]
id = "node-pulls-team-a"
subject = "{NODE}"
registry = "ecr"
repositories = ["team-a/**"]
actions = ["pull"]
"#,
        region = fake.region(),
        sts = fake.sts_url(),
        ecr = fake.ecr_url(),
    )
}

#[test]
fn an_ecr_token_comes_from_the_brokers_jwt_narrowed_to_the_image_and_reused() {
    let fake = FakeAws::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (node, issuer) = Node::start_federated(
        dir,
        |_| ecr_policy(&fake),
        &plugin_entry("ecr.example", "ecr.example"),
    );
    trust_the_broker(&fake, &issuer, Condition::StringEquals(NODE.to_owned()));

    let (user, password, cache) = node.credential("ecr.example/team-a/app:v1");
    assert_eq!(user, "AWS");
    assert!(fake.token_is_live(&password), "ECR knows the token");
    assert!(
        cache <= TTL_SECONDS - MARGIN_SECONDS,
        "cacheDuration {cache}s outlives the policy's {TTL_SECONDS}s"
    );
    // STS verified the broker's own JWT, fetched from the broker's issuer over HTTP.
    let audit = fake.audit();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (audit[0].issuer.as_str(), audit[0].subject.as_str()),
        (issuer.as_str(), NODE)
    );
    assert_eq!(audit[0].outcome, "issued");
    assert!(fake.discovery_fetches() >= 1 && fake.jwks_fetches() >= 1);
    // Least privilege: the credential lists the granted repository, not a neighbour.
    let registry: SocketAddr = fake
        .registry_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    assert_eq!(basic_get(registry, "/v2/", &user, &password), 200);
    assert_eq!(
        basic_get(registry, "/v2/team-a/app/tags/list", &user, &password),
        200
    );
    assert_eq!(
        basic_get(registry, "/v2/team-a/other/tags/list", &user, &password),
        403,
        "the session policy names only the granted repository"
    );

    // 1,000 plugin calls for the same image and role: ECR's 20 calls per second are safe.
    let calls = 1000;
    std::thread::scope(|s| {
        for t in 0..4 {
            let node = &node;
            let password = &password;
            s.spawn(move || {
                for i in (t..calls).step_by(4) {
                    let (_, p, _) = node.credential("ecr.example/team-a/app:v1");
                    assert_eq!(&p, password, "call {i}");
                }
            });
        }
    });
    assert_eq!(
        (fake.sts_calls(), fake.ecr_calls()),
        (1, 1),
        "one STS session and one ECR token for {calls} calls"
    );
    let events = issued(&node);
    assert_eq!(events.len(), calls + 1, "one audit event per answer");
    assert_eq!(events[0]["backend"], "ecr");
    assert!(events[0]["valid_until"].is_string(), "{}", events[0]);
    let log = std::fs::read_to_string(node.dir().join("audit.log")).unwrap();
    assert!(
        !log.contains(&password),
        "the audit log holds the ECR password"
    );
    // `svid-broker audit report` over this real log: the node, the registry, 1,001 answers.
    let audit_path = node.dir().join("audit.log");
    let out = crate::support::run(
        &[
            "audit",
            "report",
            "--audit",
            audit_path.to_str().unwrap(),
            "--format",
            "json",
        ],
        None,
    );
    assert!(out.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let rows = report["identities"].as_array().unwrap();
    let node_row = rows
        .iter()
        .find(|r| r["subject"] == NODE && r["service"] == "ecr.example")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(node_row["issued"], calls + 1, "{node_row}");
    assert!(!out.stdout.contains(&password));

    // A workload the role does not trust: STS refuses, the broker names the cloud and step.
    let text = refusal(&node, "ecr.example/team-b/app:v1");
    assert!(
        text.contains("denied") || text.contains("permission"),
        "{text}"
    );
    fake.add_role(
        ROLE,
        RoleTrust::new(
            issuer.trim_start_matches("http://"),
            Condition::StringEquals("spiffe://nodes.example/someone-else".to_owned()),
            Condition::StringEquals("sts.amazonaws.com".to_owned()),
        ),
        &[Statement::allow(&["ecr:*"], &["*"])],
    )
    .unwrap();
    let text = refusal(&node, "ecr.example/team-a/api:v1");
    assert!(
        text.contains("ecr registry \"ecr\"")
            && text.contains("AWS STS")
            && text.contains("AccessDenied"),
        "the error names the registry, the cloud and its refusal: {text}"
    );
}

/// A node whose broker reaches `fake` for the `ecr` entry, the role trusting every node.
fn ecr_node(fake: &FakeAws) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let (node, issuer) = Node::start_federated(
        dir,
        |_| ecr_policy(fake),
        &plugin_entry("ecr.example", "ecr.example"),
    );
    trust_the_broker(
        fake,
        &issuer,
        Condition::StringLike("spiffe://nodes.example/*".to_owned()),
    );
    node
}

#[test]
fn a_failing_sts_is_a_clear_error_naming_the_cloud_and_the_step() {
    let fake = FakeAws::start().unwrap();
    let node = ecr_node(&fake);
    fake.fail_next(aws::Endpoint::Sts, Fault::Status(503), 100);
    let text = refusal(&node, "ecr.example/team-a/app:v1");
    assert!(
        text.contains("ecr registry \"ecr\"")
            && text.contains("with the broker's token (AWS STS)")
            && text.contains("AWS STS answered 503"),
        "{text}"
    );
    assert_eq!(fake.ecr_calls(), 0, "no ECR call without a session");
}

#[test]
fn a_slow_ecr_is_a_clear_error_within_the_plugins_deadline() {
    let fake = FakeAws::start().unwrap();
    let node = ecr_node(&fake);
    // Longer than the broker's per-call deadline (4 s), so every attempt times out.
    fake.fail_next(aws::Endpoint::Ecr, Fault::Slow(Duration::from_secs(6)), 100);
    let text = refusal(&node, "ecr.example/team-a/app:v1");
    assert!(
        text.contains("ecr registry \"ecr\"")
            && text.contains("get an ECR authorization token in region")
            && text.contains("did not answer within"),
        "the error names the cloud, the step and the timeout: {text}"
    );
}

#[test]
fn an_artifact_registry_token_is_a_service_accounts_for_the_brokers_jwt() {
    let fake = FakeGoogle::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (node, issuer) = Node::start_federated(
        dir,
        |_| {
            format!(
                r#"
[[registries]]
name = "gar"
service = "gar.example"
kind = "gar"
gcp.workload_identity_provider = "{PROVIDER}"
gcp.service_account = "{SERVICE_ACCOUNT}"
gcp.sts_endpoint = "{url}"
gcp.iamcredentials_endpoint = "{url}"
token_ttl_seconds = {TTL_SECONDS}
hosts = ["gar.example"]

[[rules]]
id = "node-pulls"
subject = "{NODE}"
registry = "gar"
repositories = ["**"]
whole_registry = true
actions = ["pull"]
"#,
                url = fake.url()
            )
        },
        &plugin_entry("gar.example", "gar.example"),
    );
    fake.add_provider(PROVIDER, &issuer, Vec::new(), None)
        .unwrap();
    fake.add_service_account(SERVICE_ACCOUNT);
    let principal = FakeGoogle::principal(PROVIDER, NODE).unwrap();
    fake.grant_workload_identity_user(SERVICE_ACCOUNT, &principal)
        .unwrap();
    fake.set_registry_role(SERVICE_ACCOUNT, Some(RegistryRole::Reader))
        .unwrap();

    let (user, token, cache) = node.credential("gar.example/proj/repo/app:v1");
    assert_eq!(user, "oauth2accesstoken");
    assert_eq!(fake.registry_role(&token), Some(RegistryRole::Reader));
    assert!(
        cache <= TTL_SECONDS - MARGIN_SECONDS,
        "cacheDuration {cache}s"
    );
    let verified = fake.verified_jwts();
    assert_eq!(verified.len(), 1, "{verified:?}");
    assert_eq!(
        (verified[0].issuer.as_str(), verified[0].subject.as_str()),
        (issuer.as_str(), NODE)
    );
    assert_eq!(verified[0].audiences, [format!("https:{PROVIDER}")]);
    let (_, again, _) = node.credential("gar.example/proj/repo/other:v2");
    assert_eq!(again, token, "one token per subject and access");
    assert_eq!((fake.sts_calls(), fake.generate_calls()), (1, 1));
    let events = issued(&node);
    assert_eq!(events[0]["backend"], "gar");
    let log = std::fs::read_to_string(node.dir().join("audit.log")).unwrap();
    assert!(
        !log.contains(&token),
        "the audit log holds the access token"
    );

    // The service account no longer trusts the workload: refused at the impersonation.
    fake.revoke_workload_identity_user(SERVICE_ACCOUNT, &principal)
        .unwrap();
    node.clock.advance(Duration::from_secs(TTL_SECONDS + 1));
    fake.advance_clock(Duration::from_secs(TTL_SECONDS + 1));
    let text = refusal(&node, "gar.example/proj/repo/app:v1");
    assert!(
        text.contains("gar registry \"gar\"")
            && text.contains("Google IAM Credentials")
            && text.contains("403"),
        "{text}"
    );
}

#[test]
fn an_acr_refresh_token_comes_from_an_entra_token_for_the_brokers_jwt() {
    let fake = FakeAzure::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (node, issuer) = Node::start_federated(
        dir,
        |_| {
            format!(
                r#"
[[registries]]
name = "acr"
service = "acr.example"
kind = "acr"
url = "{registry}"
azure.tenant_id = "{TENANT}"
azure.client_id = "{CLIENT}"
azure.authority_host = "{authority}"
token_ttl_seconds = {TTL_SECONDS}
hosts = ["acr.example"]

[[rules]]
id = "node-pulls"
subject = "{NODE}"
registry = "acr"
repositories = ["**"]
whole_registry = true
actions = ["pull"]
"#,
                registry = fake.registry_url(),
                authority = fake.authority_url(),
            )
        },
        &plugin_entry("acr.example", "acr.example"),
    );
    fake.add_app(TENANT, CLIENT).unwrap();
    fake.add_federated_credential(CLIENT, &issuer, NODE, &["api://AzureADTokenExchange"])
        .unwrap();
    fake.assign_role(CLIENT, "AcrPull").unwrap();

    let (user, token, cache) = node.credential("acr.example/team-a/app:v1");
    assert_eq!(user, "00000000-0000-0000-0000-000000000000");
    assert!(fake.authenticate(&token), "ACR takes the refresh token");
    assert!(
        cache <= TTL_SECONDS - MARGIN_SECONDS,
        "cacheDuration {cache}s"
    );
    let verified = fake.verified_assertions();
    assert_eq!(verified.len(), 1, "{verified:?}");
    assert_eq!(
        (verified[0].issuer.as_str(), verified[0].subject.as_str()),
        (issuer.as_str(), NODE)
    );
    let (_, again, _) = node.credential("acr.example/team-b/api:v2");
    assert_eq!(again, token, "one refresh token per subject and access");
    assert_eq!((fake.entra_calls(), fake.exchange_calls()), (1, 1));
    assert_eq!(issued(&node)[0]["backend"], "acr");
    let log = std::fs::read_to_string(node.dir().join("audit.log")).unwrap();
    assert!(
        !log.contains(&token),
        "the audit log holds the refresh token"
    );

    // Entra unreachable in the broker's eyes: a clear error naming the cloud and the step.
    node.clock.advance(Duration::from_secs(TTL_SECONDS + 1));
    fake.advance_clock(Duration::from_secs(TTL_SECONDS + 1));
    fake.fail_next(azure::Endpoint::Entra, Fault::Status(500), 10);
    let text = refusal(&node, "acr.example/team-a/app:v1");
    assert!(
        text.contains("acr registry \"acr\"") && text.contains("Entra ID") && text.contains("500"),
        "{text}"
    );
}

/// Not a test: the measurement behind docs/performance.md ("The cached cloud path"). The
/// plugin's latency for an image whose ECR credential the broker holds, against the same
/// plugin for a `token` registry (the broker signs a registry token per call), 300 calls each,
/// interleaved, in one run. Run with `cargo test --release -p svid-broker --test e2e --
/// --ignored cloud::measure --nocapture`.
#[test]
#[ignore = "a measurement, run by hand for docs/performance.md"]
fn measure_cached_cloud_plugin_latency() {
    let fake = FakeAws::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_registry = format!(
        "\n[[registries]]\nname = \"local\"\nservice = \"local\"\nissuer = \"svid-broker\"\n\
         profile = \"distribution-2\"\nhosts = [\"local.example\"]\n\n[[rules]]\nid = \"local\"\n\
         subject = \"{NODE}\"\nregistry = \"local\"\nrepositories = [\"team-a/**\"]\nactions = [\"pull\"]\n"
    );
    let plugin = format!(
        "{}{}",
        plugin_entry("ecr.example", "ecr.example"),
        plugin_entry("local", "local.example")
    );
    let (node, issuer) = Node::start_federated(
        dir,
        |_| format!("{}{token_registry}", ecr_policy(&fake)),
        &plugin,
    );
    trust_the_broker(&fake, &issuer, Condition::StringEquals(NODE.to_owned()));
    node.credential("ecr.example/team-a/app:v1");
    node.credential("local.example/team-a/app:v1");
    let (mut cloud, mut token) = (Vec::new(), Vec::new());
    for _ in 0..300 {
        for (image, into) in [
            ("ecr.example/team-a/app:v1", &mut cloud),
            ("local.example/team-a/app:v1", &mut token),
        ] {
            let started = std::time::Instant::now();
            node.credential(image);
            into.push(started.elapsed());
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let p99 = |v: &Vec<Duration>| v[v.len() * 99 / 100];
    let (cm, tm) = (median(&mut cloud), median(&mut token));
    println!(
        "plugin exec, cached ECR: median {cm:?} p99 {:?}; token registry: median {tm:?} p99 {:?}; \
         ratio of medians {:.2}; STS calls {}, ECR calls {}",
        p99(&cloud),
        p99(&token),
        cm.as_secs_f64() / tm.as_secs_f64(),
        fake.sts_calls(),
        fake.ecr_calls()
    );
    assert_eq!((fake.sts_calls(), fake.ecr_calls()), (1, 1));
}
