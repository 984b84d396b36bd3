//! A Harbor-kind registry end to end: the broker decides with its policy, makes a Harbor
//! project robot through the API of the Harbor fake (`svid_broker_dev::fake::harbor`, written
//! from Harbor's swagger and enforcing its rules), and the kubelet plugin hands the robot out.
//! The fake also plays Harbor core's `/service/token` for a **real** Debian `docker-registry`,
//! so `skopeo` and containerd's `ctr` pull with what the plugin answered; a push outside the
//! grant fails; 1,000 plugin calls for one node and one project make one robot; and at the
//! policy's lifetime the broker deletes the robot and the same credential stops working.
//!
//! The broker's clock is a test clock, moved past the lifetime instead of waiting it out.
//! Tested against a fake of Harbor's API; not against the real service.

use std::path::Path;
use std::time::Duration;

use svid_broker_dev::fake::harbor::{FakeHarbor, HarborSpec};
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_testkit::process::{Output, wait_until};

use crate::backends::{
    MARGIN_SECONDS, NODE, Node, TTL_SECONDS, denied, plugin_entry, registry_trusting, skopeo_pull,
    write_credential,
};
use crate::containerd::Containerd;
use crate::registry::{Registry, require, skopeo, write_oci_image};
/// The robot the broker authenticates as: a project robot that may manage robots in
/// `team-a` (Harbor v2.12+), not an admin.
const MANAGER: &str = "svid-manager";

struct Harbor {
    // Declared first: the registry stops before the fake it asks for tokens.
    registry: Registry,
    node: Node,
    fake: FakeHarbor,
}

impl Harbor {
    fn start() -> Harbor {
        let fake = FakeHarbor::start(HarborSpec::new(["team-a", "team-b"])).unwrap();
        let manager = fake
            .add_robot(
                "team-a",
                MANAGER,
                &[
                    ("repository", "pull"),
                    ("repository", "push"),
                    ("robot", "create"),
                    ("robot", "list"),
                    ("robot", "delete"),
                ],
                -1,
            )
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let registry = registry_trusting(
            dir.path(),
            &fake.token_realm(),
            fake.service(),
            fake.issuer(),
            &fake.token_ca_pem(),
        );
        write_credential(
            &dir.path().join("harbor.credential"),
            &format!("{}:{}\n", manager.name, manager.secret.expose_secret()),
        );
        let policy = format!(
            r#"
[[registries]]
name = "corp"
service = "{service}"
kind = "harbor"
url = "{url}"
credential_file = "{dir}/harbor.credential"
token_ttl_seconds = {TTL_SECONDS}
hosts = ["{host}"]

[[rules]]
id = "node-pulls-team-a"
subject = "{NODE}"
registry = "corp"
repositories = ["team-a/**"]
actions = ["pull"]
"#,
            service = fake.service(),
            url = fake.url(),
            dir = dir.path().display(),
            host = registry.addr,
        );
        let plugin_registries = plugin_entry(fake.service(), &registry.addr.to_string());
        let node = Node::start(dir, &policy, &plugin_registries);
        Harbor {
            registry,
            node,
            fake,
        }
    }

    fn dir(&self) -> &Path {
        self.node.dir()
    }

    fn image(&self, repository: &str) -> String {
        format!("{}/{repository}:v1", self.registry.addr)
    }

    fn skopeo_pull(&self, user: &str, password: &str, repository: &str, n: usize) -> Output {
        skopeo_pull(&self.registry, self.dir(), user, password, repository, n)
    }

    fn skopeo_push(&self, user: &str, password: &str, repository: &str) -> Output {
        let work = self
            .dir()
            .join(format!("push-{}", repository.replace('/', "-")));
        let image = write_oci_image(&work.join("image"), "v1", "hello from harbor\n");
        skopeo(
            &[
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &format!("{user}:{password}"),
                &format!("oci:{}:v1", image.display()),
                &self.registry.image_ref(repository, "v1"),
            ],
            &work,
        )
    }

    /// Robots the broker made (its naming shape), by name.
    fn broker_robots(&self) -> Vec<String> {
        self.fake
            .robots()
            .into_iter()
            .map(|r| r.name)
            .filter(|n| n.starts_with("robot$team-a+svid-") && !n.ends_with(MANAGER))
            .collect()
    }
}

#[test]
fn a_harbor_robot_made_for_the_plugin_pulls_is_reused_and_is_deleted_at_the_policys_ttl() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let h = Harbor::start();

    // Seed images as an operator would, with a robot of their own.
    for project in ["team-a", "team-b"] {
        let seeder = h
            .fake
            .add_robot(
                project,
                "seeder",
                &[("repository", "pull"), ("repository", "push")],
                -1,
            )
            .unwrap();
        let out = h.skopeo_push(
            &seeder.name,
            seeder.secret.expose_secret(),
            &format!("{project}/app"),
        );
        assert!(
            out.success(),
            "seed {project}: {out:?}\n{}",
            h.registry.log()
        );
    }
    assert_eq!(h.fake.robots_created(), 0);

    // The plugin's answer is a robot of project team-a, cached for its life less the margin.
    let (user, password, cache) = h.node.credential(&h.image("team-a/app"));
    assert!(user.starts_with("robot$team-a+svid-"), "{user}");
    assert!(
        cache > 0 && cache <= TTL_SECONDS - MARGIN_SECONDS,
        "cacheDuration {cache}s"
    );
    assert_eq!(h.fake.robots_created(), 1);
    let robots = h.fake.robots();
    let made = robots.iter().find(|r| r.name == user).unwrap();
    assert_eq!(made.project.as_deref(), Some("team-a"));
    assert_eq!(made.access, [("repository".to_owned(), "pull".to_owned())]);

    // It pulls with skopeo and with containerd's ctr.
    let out = h.skopeo_pull(&user, &password, "team-a/app", 1);
    assert!(out.success(), "skopeo pull: {out:?}\n{}", h.registry.log());
    if let Some(ctrd) = Containerd::start() {
        let out = ctrd.pull(
            h.registry.addr,
            "team-a/app:v1",
            &format!("{user}:{password}"),
            &[],
        );
        assert!(out.success(), "ctr pull: {out:?}\n{}", ctrd.log());
    }

    // Outside the grant: no push, and nothing of another project.
    let out = h.skopeo_push(&user, &password, "team-a/app2");
    assert!(denied(&out), "a pull-only robot pushed: {out:?}");
    let out = h.skopeo_pull(&user, &password, "team-b/app", 2);
    assert!(denied(&out), "a team-a robot pulled team-b: {out:?}");
    let out = h.node.plugin_for(&h.image("team-b/app"));
    assert!(
        !out.success(),
        "the policy grants nothing on team-b: {out:?}"
    );
    assert!(
        out.stderr.contains("permission") || out.stderr.contains("denied"),
        "{out:?}"
    );

    // 1,000 plugin calls from this node for images of team-a: the same robot every time.
    let calls = 1000;
    std::thread::scope(|s| {
        for t in 0..4 {
            let h = &h;
            let user = &user;
            s.spawn(move || {
                for i in (t..calls).step_by(4) {
                    let (u, _, _) = h.node.credential(&h.image(&format!("team-a/img-{i}")));
                    assert_eq!(&u, user, "call {i}");
                }
            });
        }
    });
    assert_eq!(h.fake.robots_created(), 1, "one robot for {calls} calls");
    assert_eq!(h.broker_robots(), std::slice::from_ref(&user));

    // The audit log names the robot, never its secret.
    let audit = h.node.broker.audit();
    assert!(
        !audit.contains(&password),
        "the audit log holds the robot's secret"
    );
    let issued: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| {
            e["kind"] == "registry_credential" && e["decision"] == "allow"
        })
        .collect();
    assert_eq!(issued.len(), calls + 1, "one event per issuance");
    assert_eq!(issued[0]["reason"], "registry credential created");
    assert_eq!(issued[1]["reason"], "registry credential reused");
    assert_eq!(issued[0]["backend"], "harbor");
    assert!(
        issued[0]["credential_id"].as_str().unwrap().contains(&user),
        "{}",
        issued[0]
    );

    // At the policy's lifetime the broker deletes the robot, and the credential stops working.
    h.node.clock.advance(Duration::from_secs(TTL_SECONDS + 1));
    wait_until(
        "the broker deletes the robot",
        Duration::from_secs(20),
        || h.broker_robots().is_empty(),
    );
    assert_eq!(h.fake.robots_deleted(), 1);
    let out = h.skopeo_pull(&user, &password, "team-a/app", 3);
    assert!(denied(&out), "a deleted robot pulled: {out:?}");

    let metrics = h.node.metrics();
    for line in [
        r#"svid_broker_backend_credentials_total{registry="corp",kind="harbor",event="created"} 1"#,
        r#"svid_broker_backend_credentials_total{registry="corp",kind="harbor",event="revoked"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(!metrics.contains(&password));

    // After the revocation a new call makes a new robot.
    let (again, _, _) = h.node.credential(&h.image("team-a/app"));
    assert_ne!(again, user);
    assert_eq!(h.fake.robots_created(), 2);
}

#[test]
fn harbor_failures_reach_the_plugin_naming_the_registry_and_the_step() {
    use svid_broker_dev::fake::harbor::Fault;
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let h = Harbor::start();
    let image = h.image("team-a/app");
    for (fault, expect) in [
        (Fault::Status(503), "503"),
        (Fault::Status(429), "429"),
        (Fault::Status(401), "401"),
        (Fault::Malformed, "malformed"),
        (Fault::Hangup, "create robot"),
        // Past the broker's 4 s deadline per API call, inside the plugin's 10 s.
        (Fault::Slow(Duration::from_secs(7)), "did not answer within"),
    ] {
        // Enough for the plugin's retries of an unavailable broker to meet the fault too.
        h.fake.fail_next(fault, 10);
        let out = h.node.plugin_for(&image);
        h.fake.fail_next(fault, 0);
        assert!(!out.success(), "{fault:?}: {out:?}");
        // A slow Harbor costs an attempt the broker's whole deadline, so the plugin's retry may
        // meet the plugin's own deadline and report that instead; the broker records each
        // attempt's cause whatever became of the call.
        if matches!(fault, Fault::Slow(_)) {
            let reasons = || {
                h.node
                    .broker
                    .audit()
                    .lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                    .filter_map(|e| e["reason"].as_str().map(str::to_lowercase))
                    .filter(|r| r.contains(expect))
                    .collect::<Vec<_>>()
            };
            wait_until(
                "the slow attempt's refusal is audited",
                Duration::from_secs(20),
                || !reasons().is_empty(),
            );
            let said = reasons().join("\n");
            assert!(
                said.contains("\"corp\"") && said.contains("create robot"),
                "the audit must name the registry and the step: {said}"
            );
        } else {
            let said = out.stderr.to_lowercase();
            assert!(
                said.contains("\"corp\"") && said.contains("create robot") && said.contains(expect),
                "{fault:?}: the plugin's error must name the registry, the step and the cause: {}",
                out.stderr
            );
        }
        assert_eq!(h.fake.robots_created(), 0, "{fault:?}");
    }
    // Once Harbor answers again, the same call works: failures are not remembered.
    let (user, _, _) = h.node.credential(&image);
    assert!(user.starts_with("robot$team-a+svid-"), "{user}");
    let refusals = h
        .node
        .broker
        .audit()
        .lines()
        .filter(|l| l.contains("\"decision\":\"deny\"") && l.contains("corp"))
        .count();
    assert!(
        refusals >= 6,
        "each failure is audited: {}",
        h.node.broker.audit()
    );
}
