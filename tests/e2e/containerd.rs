//! containerd 1.6 (Debian's `containerd` package) as a real client of the broker: a private
//! daemon per test (its own root, state and socket in a temporary directory; the CRI plugin and
//! the snapshotters that need kernel support off), driven with `ctr` exactly as an operator
//! would. `ctr images pull --user ID:SECRET` splits at the FIRST colon, which sits inside the
//! SPIFFE ID, so these tests also hold the broker to the password-grant split containerd makes.
//!
//! containerd must run as root. `scripts/test.sh` installs it; without it (or without root)
//! these tests fail under `CI=true` and are skipped loudly otherwise.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use svid_broker_testkit::process::{KillOnDrop, Output, wait_until};

use crate::fixtures::{BUILDER, READER, STRANGER};
use crate::realm::{Broker, push, start_registry};
use crate::registry::require;
use crate::support::STEP_TIMEOUT;

/// The containerd namespace these tests use (images never mix with anything else).
const NAMESPACE: &str = "svid-e2e";

/// Whether this process runs as root; under `CI=true` a non-root run fails.
pub(crate) fn require_root() -> bool {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if uid == "0" {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "containerd tests need root under CI=true"
    );
    eprintln!("SKIPPED: containerd needs root");
    false
}

/// A private `containerd` daemon, killed (only it) when dropped.
pub(crate) struct Containerd {
    // Declared first: the daemon stops before its directory is removed.
    child: KillOnDrop,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Containerd {
    /// Starts a daemon, or `None` (after the loud skip) when containerd or root is missing.
    pub(crate) fn start() -> Option<Containerd> {
        if !require("containerd") || !require("ctr") || !require_root() {
            return None;
        }
        // Unix socket paths are short (108 bytes): keep the directory under /tmp.
        let dir = tempfile::Builder::new()
            .prefix("ctrd")
            .tempdir_in("/tmp")
            .unwrap();
        let socket = dir.path().join("c.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"#,
            root = dir.path().join("root").display(),
            state = dir.path().join("state").display(),
            socket = socket.display(),
        );
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = KillOnDrop::spawn(
            Command::new("containerd")
                .arg("--config")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        );
        let mut daemon = Containerd { child, dir, socket };
        wait_until("containerd to answer `ctr version`", STEP_TIMEOUT, || {
            assert!(
                daemon.child.is_running(),
                "containerd exited during start-up\n{}",
                daemon.log()
            );
            daemon.ctr(&["version"], &[]).success()
        });
        Some(daemon)
    }

    /// What the daemon logged so far, for assertion messages.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr -a SOCKET -n NAMESPACE ARGS` with `env` added, bounded.
    pub(crate) fn ctr(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", NAMESPACE])
            .args(args)
            .envs(env.iter().copied())
            .env("HOME", self.dir.path());
        svid_broker_testkit::process::run(&mut command, None)
    }

    /// `ctr images pull` of `registry/repo:tag` with `--user USER` and `env`, over plain HTTP
    /// unless `https`, unpacked with the native snapshotter (no kernel overlay support needed).
    pub(crate) fn pull(
        &self,
        registry: SocketAddr,
        repo_tag: &str,
        user: &str,
        env: &[(&str, &str)],
    ) -> Output {
        self.pull_with(registry, repo_tag, user, env, false)
    }

    /// [`Containerd::pull`], over HTTPS when `https`: containerd 1.6 talks plain HTTP to a
    /// loopback registry unless a `hosts.toml` under `--hosts-dir` says otherwise (as a node's
    /// `certs.d` does), so [`Containerd::trust_registry`] writes one.
    pub(crate) fn pull_with(
        &self,
        registry: SocketAddr,
        repo_tag: &str,
        user: &str,
        env: &[(&str, &str)],
        https: bool,
    ) -> Output {
        let reference = format!("{registry}/{repo_tag}");
        let hosts_dir = self.dir.path().join("certs.d").display().to_string();
        let mut args = vec!["images", "pull", "--snapshotter", "native", "--user", user];
        if https {
            args.extend(["--hosts-dir", hosts_dir.as_str()]);
        } else {
            args.push("--plain-http");
        }
        args.push(&reference);
        self.ctr(&args, env)
    }

    /// Writes `certs.d/HOST:PORT/hosts.toml` naming `registry` as an HTTPS host whose
    /// certificates (and those of its token realm, fetched with the same client) chain to `ca`.
    pub(crate) fn trust_registry(&self, registry: SocketAddr, ca: &std::path::Path) {
        let dir = self.dir.path().join("certs.d").join(registry.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("hosts.toml"),
            format!(
                "server = \"https://{registry}\"\n[host.\"https://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{}\"\n",
                ca.display()
            ),
        )
        .unwrap();
    }

    /// `ctr images push` of an image already in the content store to `registry/repo:tag`.
    pub(crate) fn push(
        &self,
        registry: SocketAddr,
        repo_tag: &str,
        local: &str,
        user: &str,
    ) -> Output {
        let reference = format!("{registry}/{repo_tag}");
        self.ctr(
            &[
                "images",
                "push",
                "--plain-http",
                "--user",
                user,
                &reference,
                local,
            ],
            &[],
        )
    }
}

/// Audit events that are not allows (refusals and authentication failures).
fn refusals(audit: &str) -> Vec<String> {
    audit
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .is_some_and(|e| e.get("decision").and_then(|d| d.as_str()) != Some("allow"))
        })
        .map(str::to_owned)
        .collect()
}

/// `ctr images pull --user "$SPIFFE_ID:$JWT_SVID"`: containerd splits at the first colon and
/// tries the OAuth2 password grant first; the broker must accept that first request (no
/// fallback to Basic, no refusal in the audit), the pulled image must unpack, a push outside
/// the grant must fail, and one inside it must succeed.
#[test]
fn ctr_pulls_and_pushes_with_a_spiffe_id_and_jwt_svid() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let Some(containerd) = Containerd::start() else {
        return;
    };
    let broker = Broker::start();
    let registry = start_registry(&broker);
    let work = tempfile::tempdir().unwrap();
    let out = push(&registry, work.path(), &broker.creds(BUILDER), "team/app");
    assert!(out.success(), "seed push failed: {}", out.stderr);

    let pulled = containerd.pull(registry.addr, "team/app:v1", &broker.creds(READER), &[]);
    assert!(
        pulled.success(),
        "ctr pull failed: {}\n{}\n{}",
        pulled.stderr,
        registry.log(),
        broker.audit()
    );
    let images = containerd.ctr(&["images", "list", "--quiet"], &[]);
    let local = format!("{}/team/app:v1", registry.addr);
    assert!(
        images.stdout.lines().any(|l| l == local),
        "{}",
        images.stdout
    );
    let audit = broker.audit();
    assert!(
        refusals(&audit).is_empty(),
        "the first (password-grant) request must succeed:\n{audit}"
    );
    assert!(audit.contains(READER), "{audit}");

    // The reader may not push; the builder may.
    let refused = containerd.push(registry.addr, "team/copy:v1", &local, &broker.creds(READER));
    assert!(!refused.success(), "reader push must be refused");
    let allowed = containerd.push(
        registry.addr,
        "team/copy:v1",
        &local,
        &broker.creds(BUILDER),
    );
    assert!(
        allowed.success(),
        "builder push failed: {}\n{}",
        allowed.stderr,
        broker.audit()
    );

    // An identity no rule names pulls nothing.
    let stranger = containerd.pull(registry.addr, "team/copy:v1", &broker.creds(STRANGER), &[]);
    assert!(!stranger.success(), "a stranger must not pull");
}
