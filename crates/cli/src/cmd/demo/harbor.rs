//! Step 5: a registry that cannot trust the broker (`kind = "harbor"`), shown through a FAKE of
//! Harbor's API. No Harbor runs here; `svid_broker_dev::fake::harbor` plays its robot API,
//! enforcing Harbor's rules (it is what the broker's tests run against), and the output says
//! so on every line that involves it.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use serde_json::Value;
use svid_broker_dev::fake::harbor::{FakeHarbor, HarborSpec};
use svid_broker_identity::secret::ExposeSecret as _;

use super::{
    Addresses, BROKER_ID, Demo, DemoError, NODE_ID, PLUGIN_NAME, explain, kubelet_exec,
    plugin_request, pretty, write,
};

/// The Harbor host the sample registry entry names (the kubelet matches images on it; nothing
/// is pulled from it in this step).
const HARBOR_HOST: &str = "harbor.demo";
/// What the plugin asks the broker for (the registry entry's `service`).
const HARBOR_SERVICE: &str = "harbor-registry";
/// How long the broker lets a robot live before deleting it.
const ROBOT_TTL_SECONDS: u64 = 300;
/// The project the sample rule grants, project-wide (a Harbor robot names a whole project).
const PROJECT: &str = "team-a";

impl Demo {
    pub(super) fn harbor(&self, addrs: Addresses) -> Result<(), DemoError> {
        let fake = FakeHarbor::start(HarborSpec::new([PROJECT]))
            .map_err(|source| DemoError::FakeHarbor { source })?;
        // The broker's own credential: a manager robot of the project (Harbor v2.12+ lets a
        // robot create robots with permissions up to its own), never an admin.
        let manager = fake
            .add_robot(
                PROJECT,
                "svid-manager",
                &[
                    ("repository", "pull"),
                    ("robot", "create"),
                    ("robot", "list"),
                    ("robot", "delete"),
                ],
                -1,
            )
            .map_err(|source| DemoError::FakeHarbor { source })?;
        explain("Harbor's registry trusts only Harbor's own token service, so the broker cannot");
        explain("sign for it. For a kind = \"harbor\" entry it decides with the same policy, then");
        explain(
            "makes a short-lived project robot through Harbor's API and deletes it at the TTL.",
        );
        println!(
            "  FAKE Harbor API  {} (svid_broker_dev::fake::harbor: NOT a real Harbor; it enforces",
            fake.url()
        );
        println!("                   Harbor's robot rules and is what the tests run against)");
        println!(
            "  broker's secret  {} (a manager robot of {PROJECT}, not an admin)",
            manager.name
        );

        let credential_file = self.dir().join("harbor.credential");
        write_private(
            &credential_file,
            &format!("{}:{}\n", manager.name, manager.secret.expose_secret()),
        )?;
        let policy_path = self.dir().join("policy.toml");
        let mut policy =
            std::fs::read_to_string(&policy_path).map_err(|source| DemoError::Write {
                path: policy_path.clone(),
                source,
            })?;
        let entry = format!(
            r#"
[[registries]]
name = "harbor"
service = "{HARBOR_SERVICE}"
kind = "harbor"
url = "{}"
credential_file = "{}"
token_ttl_seconds = {ROBOT_TTL_SECONDS}
hosts = ["{HARBOR_HOST}"]

[[rules]]
id = "nodes-pull-team-a-on-harbor"
subject = "spiffe://example.org/node/*/credential-provider"
registry = "harbor"
repositories = ["{PROJECT}/**"]
actions = ["pull"]
"#,
            fake.url(),
            credential_file.display()
        );
        policy.push_str(&entry);
        write(&policy_path, &policy)?;
        self.broker
            .as_ref()
            .ok_or(DemoError::NoGrpcListener)?
            .reload_policy()
            .map_err(|source| DemoError::BrokerStart { source })?;
        println!(
            "  policy entry     kind = \"harbor\", rule: nodes may pull {PROJECT}/** (reloaded)"
        );

        let plugin = self.dir().join("bin").join(PLUGIN_NAME);
        let plugin_config = self.dir().join("credential-provider-harbor.toml");
        write(
            &plugin_config,
            &format!(
                r#"broker = "{}"
broker_id = "{BROKER_ID}"
broker_bundle_file = "infra.example.org.bundle.json"
deadline_seconds = 10

[[registries]]
service = "{HARBOR_SERVICE}"
match_images = ["{HARBOR_HOST}"]
scope = "repository"
"#,
                addrs.grpc
            ),
        )?;
        let kubelet_config = self.kubelet_config(HARBOR_HOST, &plugin_config);
        let mut first_robot = None;
        for image in [
            format!("{HARBOR_HOST}/{PROJECT}/hello"),
            format!("{HARBOR_HOST}/{PROJECT}/other"),
        ] {
            let request = plugin_request(&image);
            let output = self
                .runtime
                .block_on(kubelet_exec(&plugin, &kubelet_config, &request))?;
            if !output.status.success() {
                return Err(DemoError::PluginFailed {
                    status: output.status,
                    stderr: output.stderr.trim().to_owned(),
                });
            }
            let (response, username) = redact_robot(&output.stdout, &image)?;
            match &first_robot {
                None => {
                    println!("  plugin for {image} (stdout, secret redacted):");
                    for line in pretty(&response).lines() {
                        println!("    {line}");
                    }
                    first_robot = Some(username);
                }
                Some(first) if *first == username => {
                    println!("  plugin for {image}: the same robot again (reused while it lives)");
                }
                Some(_) => {
                    return Err(DemoError::HarborRobot {
                        problem: "a second robot was made for the same node and project",
                    });
                }
            }
        }
        let robots: Vec<_> = fake
            .robots()
            .into_iter()
            .filter(|r| Some(&r.name) == first_robot.as_ref())
            .collect();
        let [robot] = robots.as_slice() else {
            return Err(DemoError::HarborRobot {
                problem: "the fake holds no robot of the name the plugin answered",
            });
        };
        if fake.robots_created() != 1 {
            return Err(DemoError::HarborRobot {
                problem: "the broker made more than one robot",
            });
        }
        let access: Vec<String> = robot
            .access
            .iter()
            .map(|(resource, action)| format!("{resource}:{action}"))
            .collect();
        println!(
            "  FAKE Harbor now holds {} (project {}, {}); robots made: 1",
            robot.name,
            robot.project.as_deref().unwrap_or("?"),
            access.join(", ")
        );
        explain("Harbor's own floor is one day; the broker deletes the robot at the policy's");
        explain(&format!(
            "token_ttl_seconds ({ROBOT_TTL_SECONDS} s here), and any replica's sweeper finds it by the"
        ));
        explain("time in its name after a restart. (Not waited for: the demo stops here.)");
        println!(
            "  Harbor step (FAKE Harbor API): robot made for {NODE_ID}, reused, scoped to {PROJECT}"
        );
        Ok(())
    }
}

/// The plugin's answer with the robot's secret replaced by its length; the robot's name.
fn redact_robot(stdout: &str, image: &str) -> Result<(Value, String), DemoError> {
    let mut response: Value =
        serde_json::from_str(stdout).map_err(|source| DemoError::PluginJson { source })?;
    let problem = |problem| DemoError::PluginResponse { problem };
    let entry = response["auth"]
        .get_mut(image)
        .ok_or(problem("has no credential for the image"))?;
    let username = entry["username"]
        .as_str()
        .ok_or(problem("has no username"))?
        .to_owned();
    let secret_len = entry["password"]
        .as_str()
        .ok_or(problem("has no password"))?
        .len();
    if !username.starts_with(&format!("robot${PROJECT}+")) {
        return Err(DemoError::HarborRobot {
            problem: "the plugin's username is not a robot of the project",
        });
    }
    entry["password"] = Value::from(format!("(REDACTED robot secret, {secret_len} characters)"));
    Ok((response, username))
}

/// Writes `text` to a new file only its owner can read: it holds the manager robot's secret.
fn write_private(path: &Path, text: &str) -> Result<(), DemoError> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| DemoError::Write {
            path: path.to_owned(),
            source,
        })
}
