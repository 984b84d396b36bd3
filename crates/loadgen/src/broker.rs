//! The broker under load: a dev trust domain and its Workload API (served by the load
//! generator), a policy, and `svid-broker serve` as a child process (so its CPU time and peak
//! RSS are its own), or `BrokerServer` in this process (for the smoke test).

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use svid_broker_dev::{DevTrustDomain, WorkloadApiHandle, WorkloadApiServer};
use svid_broker_identity::clock::SystemClock;
use svid_broker_identity::{SpiffeId, TrustDomain};
use svid_broker_server::config::BrokerConfig;
use svid_broker_server::{BrokerServer, ServerHandle};

use crate::LoadgenError;

/// The broker's JWT-SVID audience.
pub const AUDIENCE: &str = "svid-broker";
/// The registry's `service` (token `aud`).
pub const SERVICE: &str = "registry.local";
/// The scope every request asks for, in the Docker token protocol's `type:name:actions` form.
pub const SCOPE: &str = "repository:team/app:pull";
/// The broker's own SPIFFE ID (its gRPC server certificate).
pub const BROKER_ID: &str = "spiffe://example.org/svid-broker";
/// The workload the load generator acts as.
pub const CLIENT_ID: &str = "spiffe://example.org/ns/ci/sa/builder";
/// The churn test's subjects are this followed by a number.
pub const CHURN_ID_PREFIX: &str = "spiffe://example.org/ns/churn/sa/w";
/// How long the child gets to print `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Lifetime of the dev JWT-SVIDs, longer than any bounded run.
pub const JWT_SVID_TTL: Duration = Duration::from_secs(3600);

const POLICY: &str = r#"
[[registries]]
name = "local"
service = "registry.local"
issuer = "svid-broker"
profile = "distribution-2"
hosts = ["127.0.0.1:5000"]

[[rules]]
id = "builder-pull-team"
subject = "spiffe://example.org/ns/ci/sa/builder"
registry = "local"
repositories = ["team/*"]
actions = ["pull", "push"]

[[rules]]
id = "churn-pull-team"
subject = "spiffe://example.org/ns/churn/sa/*"
registry = "local"
repositories = ["team/*"]
actions = ["pull"]
"#;

/// Where the broker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `svid-broker serve --config FILE` as a child process.
    Child,
    /// `BrokerServer` inside the load generator (RSS and CPU then include the load generator).
    InProcess,
}

/// How the broker is started and configured for one run.
#[derive(Debug, Clone)]
pub struct BrokerSetup {
    /// Child or in-process.
    pub mode: Mode,
    /// The `svid-broker` binary (child mode).
    pub binary: PathBuf,
    /// CPU list for `taskset -c` on the child, if pinning.
    pub cpus: Option<String>,
    /// Whether the issued-token cache is on.
    pub token_cache: bool,
    /// The per-subject rate limit (requests per second, burst); `None` turns it off.
    pub rate_limit: Option<(u32, u32)>,
}

/// A running broker and the dev trust domain it trusts.
pub struct RunningBroker {
    /// The dev trust domain (the load generator's identities come from it).
    pub td: Arc<DevTrustDomain>,
    /// The realm's address.
    pub http_addr: SocketAddr,
    /// The gRPC listener's address.
    pub grpc_addr: SocketAddr,
    process: Process,
    workload_api: Option<WorkloadApiHandle>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for RunningBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningBroker")
            .field("http_addr", &self.http_addr)
            .field("grpc_addr", &self.grpc_addr)
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

enum Process {
    Child(ChildGuard),
    InProcess(Option<ServerHandle>),
}

/// Kills the one child this load generator started, whatever way the run ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The SPIFFE ID `s` (a constant of this module).
pub fn id(s: &str) -> Result<SpiffeId, LoadgenError> {
    SpiffeId::parse(s).map_err(|_| LoadgenError::Setup {
        what: "spiffe id",
        reason: s.to_owned(),
    })
}

fn setup<E: std::error::Error>(what: &'static str) -> impl FnOnce(E) -> LoadgenError {
    move |e| LoadgenError::Setup {
        what,
        reason: svid_broker_identity::report::ErrorChain::new(&e).to_string(),
    }
}

/// A free port on 127.0.0.1 (the child's gRPC listener: `serve` prints only the realm's
/// address). The port is released before the child binds it; nothing else here binds ports.
fn free_port() -> Result<u16, LoadgenError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(setup("free port"))?;
    Ok(listener.local_addr().map_err(setup("free port"))?.port())
}

impl RunningBroker {
    /// Starts the Workload API and the broker. Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// [`LoadgenError::Setup`] naming the step that failed.
    pub async fn start(options: &BrokerSetup) -> Result<Self, LoadgenError> {
        let dir = tempfile::tempdir().map_err(setup("temp dir"))?;
        let td = Arc::new(
            DevTrustDomain::builder(
                TrustDomain::parse("example.org").map_err(setup("trust domain"))?,
            )
            .identities([id(BROKER_ID)?, id(CLIENT_ID)?])
            .jwt_svid_ttl(JWT_SVID_TTL)
            .build()
            .map_err(setup("dev trust domain"))?,
        );
        // No rotation during a run: the numbers are for steady state.
        let workload_api = WorkloadApiServer::builder(Arc::clone(&td))
            .auto_rotate(None)
            .serve(dir.path().join("agent.sock"))
            .await
            .map_err(setup("workload api"))?;
        std::fs::write(dir.path().join("policy.toml"), POLICY).map_err(setup("policy file"))?;
        let grpc_port = match options.mode {
            Mode::Child => free_port()?,
            Mode::InProcess => 0,
        };
        let config = format!(
            r#"[server]
http_addr = "127.0.0.1:0"
grpc_addr = "127.0.0.1:{grpc_port}"
public_url = "http://127.0.0.1:1"
shutdown_grace_seconds = 1
# Every simulated workload connects from 127.0.0.1, so the per-address caps (which guard
# against one misbehaving address) would cap the whole load: the churn's 32 workers open a
# new mTLS connection per subject on top of their own.
max_connections_per_ip = 1024
max_pending_handshakes_per_ip = 256
[identity]
audience = "{AUDIENCE}"
workload_api = "{endpoint}"
[policy]
file = "policy.toml"
[signing]
generate = true
algorithm = "ES256"
[limits]
requests_per_second_per_subject = {rps}
burst = {burst}
token_cache = {cache}
[log]
audit = "audit.log"
"#,
            endpoint = workload_api.endpoint(),
            cache = options.token_cache,
            rps = options.rate_limit.map_or(0, |(rps, _)| rps),
            burst = options.rate_limit.map_or(100, |(_, burst)| burst),
        );
        let config_path = dir.path().join("broker.toml");
        std::fs::write(&config_path, &config).map_err(setup("broker config"))?;

        let (process, http_addr, grpc_addr) = match options.mode {
            Mode::Child => {
                let (child, http) = spawn_child(options, &config_path, dir.path())?;
                (
                    Process::Child(child),
                    http,
                    SocketAddr::from(([127, 0, 0, 1], grpc_port)),
                )
            }
            Mode::InProcess => {
                let config = BrokerConfig::load(&config_path).map_err(setup("broker config"))?;
                let handle = BrokerServer::start(config, Arc::new(SystemClock))
                    .await
                    .map_err(setup("broker"))?;
                let http = handle.http_addr();
                let grpc = handle.grpc_addr().ok_or(LoadgenError::Setup {
                    what: "broker",
                    reason: "no grpc listener".to_owned(),
                })?;
                (Process::InProcess(Some(handle)), http, grpc)
            }
        };
        Ok(Self {
            td,
            http_addr,
            grpc_addr,
            process,
            workload_api: Some(workload_api),
            _dir: dir,
        })
    }

    /// The broker's process id (this process in in-process mode).
    pub fn pid(&self) -> u32 {
        match &self.process {
            Process::Child(c) => c.0.id(),
            Process::InProcess(_) => std::process::id(),
        }
    }

    /// Whether the broker runs in its own process.
    pub fn is_child(&self) -> bool {
        matches!(self.process, Process::Child(_))
    }

    /// Stops the broker (the child is killed; it is stateless) and the Workload API.
    pub async fn stop(mut self) {
        match &mut self.process {
            Process::Child(_) => {}
            Process::InProcess(handle) => {
                if let Some(h) = handle.take() {
                    h.shutdown().await;
                }
            }
        }
        if let Some(api) = self.workload_api.take() {
            let _ = api.shutdown().await;
        }
        // Dropping `self` kills and reaps the child.
    }
}

/// Starts `svid-broker serve` (under `taskset` when pinning) and waits for its `ready` line
/// and the realm address that follows.
fn spawn_child(
    options: &BrokerSetup,
    config: &Path,
    dir: &Path,
) -> Result<(ChildGuard, SocketAddr), LoadgenError> {
    if !options.binary.is_file() {
        return Err(LoadgenError::BrokerBinary {
            path: options.binary.clone(),
        });
    }
    let mut command = match &options.cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(&options.binary);
            c
        }
        None => Command::new(&options.binary),
    };
    let log = std::fs::File::create(dir.join("broker.log")).map_err(setup("broker log"))?;
    command
        .arg("serve")
        .arg("--config")
        .arg(config)
        // Per-request logging is at info only for refusals; warn keeps start-up chatter out.
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    let mut child = ChildGuard(command.spawn().map_err(setup("spawn svid-broker"))?);
    let stdout = child.0.stdout.take().ok_or(LoadgenError::Setup {
        what: "svid-broker stdout",
        reason: "not piped".to_owned(),
    })?;
    // A thread reads the two start-up lines so the wait can time out.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.next().and_then(Result::ok);
        let http = lines.next().and_then(Result::ok);
        let _ = tx.send((ready, http));
        // Keep draining so the child never blocks on a full pipe; ends when it exits.
        for _ in lines {}
    });
    let not_ready = |reason: &str| LoadgenError::BrokerNotReady {
        reason: reason.to_owned(),
        log: dir.join("broker.log"),
    };
    let (ready, http) = rx
        .recv_timeout(READY_TIMEOUT)
        .map_err(|_| not_ready("no ready line in time"))?;
    if ready.as_deref() != Some("ready") {
        return Err(not_ready("first line is not `ready`"));
    }
    let http = http
        .as_deref()
        .and_then(|l| l.strip_prefix("http="))
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .ok_or_else(|| not_ready("no http=ADDR line"))?;
    Ok((child, http))
}

/// Peak and current resident set size of `pid`, in KiB (`VmHWM`, `VmRSS`).
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// CPU time (user + system) `pid` has used, from `/proc/PID/stat` in clock ticks.
pub fn cpu_time(pid: u32, ticks_per_second: u64) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks_per_second.max(1) as f64,
    ))
}

/// Busy CPU time of the whole machine (every CPU: user, nice, system, irq, softirq, steal),
/// from `/proc/stat`; the rest of the machine's load is this minus the broker's and ours.
pub fn machine_busy(ticks_per_second: u64) -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    Some(Duration::from_secs_f64(
        busy as f64 / ticks_per_second.max(1) as f64,
    ))
}

/// The kernel's clock tick rate (`getconf CLK_TCK`; 100 if that fails, the Linux default).
pub fn ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// The CPUs `pid` may run on (`Cpus_allowed_list`).
pub fn cpus_allowed(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_memory_and_cpu_figures() {
        let pid = std::process::id();
        let (hwm, rss) = memory_kib(pid).unwrap();
        assert!(hwm >= rss && rss > 0);
        assert!(cpu_time(pid, ticks_per_second()).is_some());
        assert!(cpus_allowed(pid).is_some());
        assert!(machine_busy(ticks_per_second()).is_some());
    }

    #[test]
    fn missing_process_has_no_figures() {
        // Pid 0 has no /proc entry.
        assert_eq!(memory_kib(0), None);
        assert_eq!(cpu_time(0, 100), None);
    }

    #[test]
    fn missing_binary_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let options = BrokerSetup {
            mode: Mode::Child,
            binary: dir.path().join("no-such-broker"),
            cpus: None,
            token_cache: false,
            rate_limit: None,
        };
        let err = spawn_child(&options, &dir.path().join("c.toml"), dir.path())
            .err()
            .unwrap();
        assert!(matches!(err, LoadgenError::BrokerBinary { .. }));
    }
}
