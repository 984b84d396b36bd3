//! The fault suite: the broker, its Workload API, the registry, the policy file and the audit
//! file each fail while real clients (skopeo against Debian's docker-registry) keep working,
//! and what must hold is asserted. docs/operations.md reports the matrix.
//!
//! Every process these tests stop is one they started; every wait is bounded.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use svid_broker_dev::{DevTrustDomain, WorkloadApiServer};
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_identity::{SpiffeId, TrustDomain};

use crate::fixtures::{AUDIENCE, BUILDER, BrokerSpec, ISSUER, POLICY, READER, SERVICE};
use crate::realm::{enc, http, jws_part, pull, push, write_ca_files};
use crate::registry::{Registry, TokenAuth, free_port, require};
use crate::support::{Daemon, STEP_TIMEOUT, daemon};

/// Waits until `ready()` holds, at most [`STEP_TIMEOUT`]; fails naming `what` otherwise.
fn wait_until(what: &str, ready: impl FnMut() -> bool) {
    svid_broker_testkit::process::wait_until(what, STEP_TIMEOUT, ready);
}

/// `svid-broker serve --config` as a separate process (so it can be SIGKILLed) with its signing
/// CA in files, so a restarted broker is the same issuer to the registry.
struct ProcessBroker {
    dir: tempfile::TempDir,
    td: Arc<DevTrustDomain>,
    port: u16,
    ca_cert: PathBuf,
    config: PathBuf,
    daemon: Option<Daemon>,
}

impl ProcessBroker {
    /// A configured (not yet started) broker: `audit` is the audit file path, `extra` is
    /// appended to the config.
    fn new(audit: &Path, policy_poll_seconds: u64, extra: &str) -> ProcessBroker {
        let dir = tempfile::tempdir().unwrap();
        let (ca_cert, ca_key) = write_ca_files(dir.path());
        let td = Arc::new(
            DevTrustDomain::new(
                TrustDomain::parse("example.org").unwrap(),
                [SpiffeId::parse("spiffe://example.org/workload").unwrap()],
            )
            .unwrap(),
        );
        std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
        std::fs::write(dir.path().join("bundle.json"), td.bundle_document_json()).unwrap();
        let port = free_port();
        let config = dir.path().join("broker.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[server]
http_addr = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
shutdown_grace_seconds = 2
[identity]
audience = "{AUDIENCE}"
bundle_files = [{{ trust_domain = "example.org", path = "bundle.json" }}]
[policy]
file = "policy.toml"
poll_seconds = {policy_poll_seconds}
[signing]
ca_cert_file = "{}"
ca_key_file = "{}"
[log]
audit = "{}"
{extra}
"#,
                ca_cert.display(),
                ca_key.display(),
                audit.display(),
            ),
        )
        .unwrap();
        ProcessBroker {
            dir,
            td,
            port,
            ca_cert,
            config,
            daemon: None,
        }
    }

    fn start(&mut self) {
        let config = self.config.display().to_string();
        self.daemon = Some(daemon(&["serve", "--config", &config]));
    }

    /// SIGKILL: no shutdown path runs.
    fn kill(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.kill();
        }
    }

    fn is_running(&mut self) -> bool {
        self.daemon.as_mut().is_some_and(Daemon::is_running)
    }

    fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.toml")
    }

    fn creds(&self, who: &str) -> String {
        creds(&self.td, who)
    }

    fn basic(&self, who: &str) -> String {
        format!("Basic {}", STANDARD.encode(self.creds(who)))
    }

    fn registry(&self) -> Registry {
        Registry::start(Some(&TokenAuth {
            realm: &self.realm(),
            service: SERVICE,
            issuer: ISSUER,
            rootcertbundle: &self.ca_cert,
        }))
    }

    /// The realm's answer to `who` asking for `scope`: (status, body).
    fn ask(&self, who: &str, scope: &str) -> (u16, String) {
        let path = format!("/token?service={SERVICE}&scope={}", enc(scope));
        let (status, _, body) = http(self.addr(), &path, Some(&self.basic(who)));
        (status, body)
    }

    /// Whether the realm grants `who` anything of `scope` now.
    fn granted(&self, who: &str, scope: &str) -> bool {
        let (status, body) = self.ask(who, scope);
        if status != 200 {
            return false;
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        jws_part(v["token"].as_str().unwrap(), 1)["access"] != serde_json::json!([])
    }

    fn metrics(&self) -> String {
        http(self.addr(), "/metrics", None).2
    }
}

impl Drop for ProcessBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `ID:JWT-SVID` for skopeo's `--creds`, from `td`.
fn creds(td: &DevTrustDomain, who: &str) -> String {
    let jwt = td
        .issue_jwt_svid(&SpiffeId::parse(who).unwrap(), &[AUDIENCE])
        .unwrap();
    format!("{who}:{}", jwt.token().expose_secret())
}

/// A `svid-broker serve` process with its registry, `team/app:v1` pushed by the builder, and a
/// registry token the reader was issued for it.
struct Seeded {
    audit_dir: tempfile::TempDir,
    broker: ProcessBroker,
    registry: Registry,
    work: tempfile::TempDir,
    reader_token: String,
}

impl Seeded {
    fn start() -> Seeded {
        let audit_dir = tempfile::tempdir().unwrap();
        let mut broker = ProcessBroker::new(&audit_dir.path().join("audit.log"), 3600, "");
        broker.start();
        let registry = broker.registry();
        let work = tempfile::tempdir().unwrap();
        let out = push(&registry, work.path(), &broker.creds(BUILDER), "team/app");
        assert!(out.success(), "seed push failed: {}", out.stderr);
        let (status, body) = broker.ask(READER, "repository:team/app:pull");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let reader_token = v["token"].as_str().unwrap().to_owned();
        Seeded {
            audit_dir,
            broker,
            registry,
            work,
            reader_token,
        }
    }
}

/// One form POST over a fresh loopback connection: (status, body).
fn post_form(addr: SocketAddr, path: &str, form: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// The registry's answer to a manifest GET with a registry token (no broker involved).
fn manifest_status(registry: SocketAddr, repo: &str, token: &str) -> u16 {
    let mut s = TcpStream::connect_timeout(&registry, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /v2/{repo}/manifests/v1 HTTP/1.1\r\nHost: {registry}\r\nAuthorization: Bearer {token}\r\n\
         Accept: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// One pull of the loop: when it started, whether it worked, what skopeo said.
struct PullResult {
    started: Instant,
    finished: Instant,
    success: bool,
    stderr: String,
}

/// SIGKILL the broker in the middle of a skopeo pull loop, then start it again on the same
/// address: pulls while it is down fail with an error naming the token endpoint, pulls after
/// the restart succeed, and a registry token and a refresh token issued before the kill keep
/// working until their expiry (replicas are stateless: the CA is all they share).
#[test]
fn broker_killed_and_restarted_during_a_pull_loop() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let Seeded {
        audit_dir,
        mut broker,
        registry,
        work,
        reader_token: registry_token,
    } = Seeded::start();
    // `registry_token` was issued before the kill.
    let path = format!(
        "/token?service={SERVICE}&scope={}&offline_token=true&client_id=e2e",
        enc("repository:team/app:pull")
    );
    let (status, _, body) = http(broker.addr(), &path, Some(&broker.basic(READER)));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let refresh_token = v["refresh_token"].as_str().unwrap().to_owned();

    let results: Mutex<Vec<PullResult>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let td = Arc::clone(&broker.td);
    let (killed_at, restarted_at) = std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..200 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let started = Instant::now();
                let creds = creds(&td, READER);
                let out = pull(
                    &registry,
                    work.path(),
                    &["--src-creds", &creds],
                    "team/app",
                    &format!("pulled-{i}"),
                );
                results.lock().unwrap().push(PullResult {
                    started,
                    finished: Instant::now(),
                    success: out.success(),
                    stderr: out.stderr,
                });
            }
        });
        let count = |pred: &dyn Fn(&PullResult) -> bool| {
            results.lock().unwrap().iter().filter(|r| pred(r)).count()
        };
        wait_until("a first successful pull", || count(&|r| r.success) >= 1);
        broker.kill();
        let killed_at = Instant::now();
        wait_until("two pulls made while the broker is down", || {
            count(&|r| r.started > killed_at) >= 2
        });
        broker.start();
        let restarted_at = Instant::now();
        wait_until("two successful pulls after the restart", || {
            count(&|r| r.started > restarted_at && r.success) >= 2
        });
        stop.store(true, Ordering::SeqCst);
        (killed_at, restarted_at)
    });
    let results = results.into_inner().unwrap();
    // Pulls made entirely while the broker was down failed; every failure (including pulls in
    // flight at the kill or the restart) names the token endpoint.
    let down: Vec<&PullResult> = results
        .iter()
        .filter(|r| r.started > killed_at && r.finished < restarted_at)
        .collect();
    assert!(down.len() >= 2);
    eprintln!(
        "fault matrix: broker down: {} pulls failed, {} succeeded after the restart; first error: {}",
        down.len(),
        results.iter().filter(|r| r.started > restarted_at).count(),
        down[0].stderr.trim()
    );
    assert!(
        down.iter().all(|r| !r.success),
        "a pull made while the broker was down succeeded"
    );
    for r in results.iter().filter(|r| !r.success) {
        assert!(
            r.stderr.contains(&broker.realm()) || r.stderr.contains("connection refused"),
            "the failure must name the token endpoint: {}",
            r.stderr
        );
    }
    let after: Vec<&PullResult> = results
        .iter()
        .filter(|r| r.started > restarted_at)
        .collect();
    assert!(
        after.iter().all(|r| r.success),
        "pulls after the restart failed: {:?}",
        after.iter().map(|r| &r.stderr).collect::<Vec<_>>()
    );

    // Credentials from before the kill: the registry token verifies at the registry, and the
    // restarted broker honours the refresh token.
    assert_eq!(
        manifest_status(registry.addr, "team/app", &registry_token),
        200
    );
    let form = format!(
        "grant_type=refresh_token&refresh_token={}&service={SERVICE}&scope={}&client_id=e2e",
        enc(&refresh_token),
        enc("repository:team/app:pull")
    );
    let (status, body) = post_form(broker.addr(), "/token", &form);
    assert_eq!(status, 200, "refresh after restart: {body}");
    let audit = std::fs::read_to_string(audit_dir.path().join("audit.log")).unwrap();
    assert!(
        !audit.contains(&refresh_token),
        "the audit holds a refresh token"
    );
}

/// The registry restarts under the broker: pulls fail while it is down (naming the registry),
/// succeed after, and a token issued before the restart still verifies (the registry keeps no
/// session state; the broker needs no restart).
#[test]
fn registry_restarted_while_the_broker_serves() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let Seeded {
        audit_dir: _audit_dir,
        mut broker,
        mut registry,
        work,
        reader_token: token,
    } = Seeded::start();

    registry.kill();
    let creds = broker.creds(READER);
    let down = pull(
        &registry,
        work.path(),
        &["--src-creds", &creds],
        "team/app",
        "down",
    );
    assert!(!down.success());
    eprintln!("fault matrix: registry down: {}", down.stderr.trim());
    assert!(
        down.stderr.contains(&registry.addr.to_string()),
        "the failure must name the registry: {}",
        down.stderr
    );
    assert!(broker.is_running());

    registry.restart();
    assert_eq!(manifest_status(registry.addr, "team/app", &token), 200);
    let creds = broker.creds(READER);
    let up = pull(
        &registry,
        work.path(),
        &["--src-creds", &creds],
        "team/app",
        "up",
    );
    assert!(up.success(), "pull after restart: {}", up.stderr);
}

fn reload_count(metrics: &str, result: &str) -> u64 {
    let prefix = format!("svid_broker_policy_reloads_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The policy file is replaced (atomically, as a ConfigMap update does) by garbage, then by a
/// valid policy: the last good policy serves until the good one loads, and the failure is
/// counted.
#[test]
fn policy_replaced_by_garbage_then_by_a_valid_policy() {
    let audit_dir = tempfile::tempdir().unwrap();
    let mut broker = ProcessBroker::new(&audit_dir.path().join("audit.log"), 1, "");
    broker.start();
    let scope = "repository:team/app:pull";
    assert!(broker.granted(READER, scope));

    let policy_path = broker.policy_path();
    let replace = |text: &str| {
        let tmp = policy_path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &policy_path).unwrap();
    };
    replace("[[rules]\nthis is not toml = = =\n\u{0}\u{ff}");
    wait_until("the failed reload to be counted", || {
        reload_count(&broker.metrics(), "failed") >= 1
    });
    assert!(broker.is_running());
    assert!(
        broker.granted(READER, scope),
        "the last good policy must keep serving"
    );
    assert!(broker.granted(BUILDER, "repository:team/app:push"));

    // A valid policy without the reader's rule: it goes live at the next poll.
    let without_reader = POLICY.replace(
        "[[rules]]\nid = \"reader-pull-team\"\nsubject = \"spiffe://example.org/ns/prod/sa/reader\"\nregistry = \"local\"\nrepositories = [\"team/*\"]\nactions = [\"pull\"]\n",
        "",
    );
    assert_ne!(without_reader, POLICY);
    replace(&without_reader);
    wait_until("the valid policy to go live", || {
        !broker.granted(READER, scope)
    });
    assert!(reload_count(&broker.metrics(), "ok") >= 1);
    assert!(broker.granted(BUILDER, "repository:team/app:push"));
}

/// The Workload API the broker takes its bundles from goes away, the trust domain rotates its
/// JWT key meanwhile, and the Workload API comes back: while it is down the broker keeps the
/// last good bundle (old tokens verify, a token of the unseen new key does not), and once it is
/// back the broker follows the new bundle with no restart.
#[test]
fn workload_api_restarted_and_rotated_while_the_broker_serves() {
    let td = Arc::new(
        DevTrustDomain::builder(TrustDomain::parse("example.org").unwrap())
            .identity(SpiffeId::parse("spiffe://example.org/ns/infra/sa/broker").unwrap())
            .build()
            .unwrap(),
    );
    let mut broker = BrokerSpec::new(Arc::clone(&td)).workload_api().start();
    let workload_api = broker.take_workload_apis().remove(0);
    let runtime = broker.runtime();
    let addr = broker.http_addr();
    let basic = |jwt: &str| format!("Basic {}", STANDARD.encode(format!("{READER}:{jwt}")));
    let ask = |jwt: &str| {
        let path = format!(
            "/token?service={SERVICE}&scope={}",
            enc("repository:team/app:pull")
        );
        http(addr, &path, Some(&basic(jwt))).0
    };
    let jwt = || {
        td.issue_jwt_svid(&SpiffeId::parse(READER).unwrap(), &[AUDIENCE])
            .unwrap()
            .token()
            .expose_secret()
            .to_owned()
    };
    let before = jwt();
    assert_eq!(ask(&before), 200);

    let socket = workload_api.socket_path().to_path_buf();
    runtime.block_on(workload_api.shutdown()).unwrap();
    assert_eq!(ask(&before), 200, "the last good bundle must keep serving");
    td.rotate().unwrap();
    let rotated = jwt();
    assert_ne!(rotated.split('.').next(), before.split('.').next());
    assert_eq!(
        ask(&rotated),
        401,
        "a key the broker has not seen must not verify"
    );

    let workload_api = runtime
        .block_on(
            WorkloadApiServer::builder(Arc::clone(&td))
                .auto_rotate(None)
                .serve(socket),
        )
        .unwrap();
    wait_until("the broker to follow the rotated bundle", || {
        ask(&rotated) == 200
    });
    // The old key stays in the bundle while tokens it signed live.
    assert_eq!(ask(&before), 200);
    runtime.block_on(workload_api.shutdown()).unwrap();
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted (lazily) when dropped.
struct SmallFilesystem {
    dir: tempfile::TempDir,
}

impl SmallFilesystem {
    fn mount(size: &str) -> SmallFilesystem {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs failed");
        SmallFilesystem { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem with `filler` until the kernel says ENOSPC.
    fn fill(&self) {
        let mut file = std::fs::File::create(self.path().join("filler")).unwrap();
        let block = [0u8; 1024];
        for _ in 0..100_000 {
            match file.write_all(&block).and_then(|()| file.sync_all()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => return,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        panic!("the tmpfs never filled up");
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn audit_errors(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("svid_broker_audit_write_errors_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The audit file's filesystem fills up. With `audit_on_error = "deny"` (the default) a
/// decision that cannot be audited is refused with an error that says so, the broker stays up
/// and healthy, and it issues again once there is room; with `"continue"` it keeps issuing and
/// counts the lost lines. Nothing crashes either way.
#[test]
fn audit_file_on_a_full_filesystem() {
    if !crate::containerd::require_root() {
        return;
    }
    for mode in ["deny", "continue"] {
        let fs = SmallFilesystem::mount("16k");
        let mut broker = ProcessBroker::new(
            &fs.path().join("audit.log"),
            3600,
            &format!("audit_on_error = \"{mode}\""),
        );
        broker.start();
        let scope = "repository:team/app:pull";
        assert!(
            broker.granted(READER, scope),
            "{mode}: before the disk fills"
        );
        fs.fill();
        // Enough requests that any buffering in the sink must reach the disk.
        let answers: Vec<(u16, String)> = (0..20).map(|_| broker.ask(READER, scope)).collect();
        assert!(broker.is_running(), "{mode}: the broker died on ENOSPC");
        assert_eq!(http(broker.addr(), "/healthz", None).0, 200, "{mode}");
        assert!(
            audit_errors(&broker.metrics()) >= 1,
            "{mode}: errors not counted"
        );
        let last = answers.last().unwrap();
        match mode {
            "deny" => {
                assert_ne!(last.0, 200, "deny: issued without an audit line");
                assert!(
                    last.1.contains("audit"),
                    "deny: the error must say why: {}",
                    last.1
                );
            }
            "continue" => assert_eq!(last.0, 200, "continue: {}", last.1),
            other => panic!("no expectation for audit_on_error = {other:?}"),
        }
        eprintln!(
            "fault matrix: audit on a full filesystem, {mode}: HTTP {} {}",
            last.0, last.1
        );
        fs.free();
        wait_until("issuing again once there is room", || {
            broker.granted(READER, scope)
        });
        // Writes cut short by ENOSPC were cut back: every line the file holds is one event.
        let audit = std::fs::read_to_string(fs.path().join("audit.log")).unwrap();
        for line in audit.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "{mode}: an unreadable audit line: {line}"
            );
        }
        broker.kill();
    }
}
