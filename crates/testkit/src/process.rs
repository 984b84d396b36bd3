//! Child processes with bounded waits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Upper bound for any single command or wait. Generous because CI machines are slow and
/// shared; a test that hits it fails instead of hanging.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the polling waits look again.
pub const POLL: Duration = Duration::from_millis(10);

/// What a finished command left behind.
#[derive(Debug)]
pub struct Output {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// From spawn to exit (for reports; tests make no timing assertions).
    pub elapsed: Duration,
}

impl Output {
    /// The exit code (`None` when a signal ended it).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The stderr lines, for tests that check "one line naming the rule".
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }

    /// The single stderr line of a failure; panics when there are more or none.
    pub fn one_stderr_line(&self) -> &str {
        let lines = self.stderr_lines();
        assert_eq!(
            lines.len(),
            1,
            "want exactly one stderr line: {:?}",
            self.stderr
        );
        lines[0]
    }
}

/// Runs `command` with its three streams piped and `stdin` written (then closed), waiting at
/// most [`STEP_TIMEOUT`]; a child still running then is killed and the test fails.
pub fn run(command: &mut Command, stdin: Option<&[u8]>) -> Output {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", command.get_program()));
    {
        let mut input = child.stdin.take().expect("stdin");
        // The child may exit before reading (e.g. on a bad config): a broken pipe is its
        // answer, which the caller checks, not a harness failure.
        let _ = input.write_all(stdin.unwrap_or_default());
    }
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let status = wait_bounded(&mut child, STEP_TIMEOUT)
        .unwrap_or_else(|| panic!("{:?} did not finish in time", command.get_program()));
    let elapsed = started.elapsed();
    Output {
        status,
        stdout: stdout.recv_timeout(STEP_TIMEOUT).expect("stdout"),
        stderr: stderr.recv_timeout(STEP_TIMEOUT).expect("stderr"),
        elapsed,
    }
}

/// Reads `pipe` to its end on a thread, so a child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

/// Waits for `child` up to `limit`; on timeout kills it (only this child), reaps it and
/// returns `None`.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until `ready()` holds, at most `limit`; fails the test naming `what` otherwise.
pub fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// Waits until `addr` accepts TCP connections, at most [`STEP_TIMEOUT`]; fails the test naming
/// `what` otherwise, or at once when `child` (the process meant to listen) exits first.
pub fn wait_for_port(what: &str, addr: SocketAddr, mut child: Option<&mut Child>) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Some(child) = child.as_deref_mut()
            && let Some(status) = child.try_wait().expect("try_wait")
        {
            panic!("{what} exited before listening on {addr}: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {addr} in time"
        );
        std::thread::sleep(POLL);
    }
}

/// A port on 127.0.0.1 that was free a moment ago (bound and released; the race with other
/// processes is tolerable for tests, and the start-up checks above catch it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Whether `program` is an executable on `PATH`.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Whether `program` is on `PATH`. Under `CI=true` a missing program fails the test; otherwise
/// the test is skipped loudly (the caller returns), never passed silently.
pub fn require(program: &str) -> bool {
    let found = on_path(program);
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{program} is required under CI=true (scripts/test.sh installs it)"
        );
        eprintln!("SKIPPED: {program} is not installed; run scripts/test.sh as root to install it");
    }
    found
}

/// A child killed (only it) and reaped when dropped, so a failing test never leaves it behind.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Spawns `command`.
    pub fn spawn(command: &mut Command) -> Self {
        Self(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {:?}: {e}", command.get_program())),
        )
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// SIGKILL (no shutdown path runs) and reap.
    pub fn kill(&mut self) {
        if self.is_running() {
            let _ = self.0.kill();
        }
        // SIGKILL cannot be caught: the reaping wait returns promptly.
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A long-running process that announces readiness with `ready` alone on its first stdout
/// line (the contract of `svid-broker serve` and `dev`), killed when dropped.
#[derive(Debug)]
pub struct Daemon {
    /// The process (tests may signal or kill it; only this one).
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Daemon {
    /// Spawns `command` (stdout piped, stderr inherited, stdin closed) and waits at most
    /// [`STEP_TIMEOUT`] for the `ready` line.
    pub fn start_until_ready(command: &mut Command) -> Daemon {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", command.get_program()));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let daemon = Daemon { child, lines };
        let first = daemon
            .lines
            .recv_timeout(STEP_TIMEOUT)
            .expect("no `ready` line in time");
        assert_eq!(first, "ready", "first stdout line must be exactly `ready`");
        daemon
    }

    /// The next stdout line, if one arrives within `limit`.
    pub fn next_line(&self, limit: Duration) -> Option<String> {
        self.lines.recv_timeout(limit).ok()
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (e.g. "TERM") to this process only.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -s {signal} {pid} failed");
    }

    /// Sends `signal` to this process only and waits at most [`STEP_TIMEOUT`] for it to exit.
    pub fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        self.signal(signal);
        wait_bounded(&mut self.child, STEP_TIMEOUT).expect("the daemon did not exit after signal")
    }

    /// SIGKILL (no shutdown path runs) and reap.
    pub fn kill(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_collects_both_streams_and_the_exit_code() {
        let out = run(
            Command::new("sh").args(["-c", "read x; echo \"got $x\"; echo err >&2; exit 3"]),
            Some(b"in\n"),
        );
        assert_eq!(out.code(), Some(3));
        assert_eq!(out.stdout, "got in\n");
        assert_eq!(out.one_stderr_line(), "err");
    }

    #[test]
    fn a_hung_child_is_killed_at_the_limit() {
        let mut child = Command::new("sleep").arg("600").spawn().unwrap();
        assert_eq!(wait_bounded(&mut child, Duration::from_millis(50)), None);
        // Reaped: nothing is left to wait for.
        assert!(child.try_wait().unwrap().is_some());
    }

    #[test]
    fn a_daemon_is_ready_after_its_ready_line_and_killed_on_drop() {
        let mut daemon = Daemon::start_until_ready(
            Command::new("sh").args(["-c", "echo ready; echo next; exec sleep 600"]),
        );
        assert_eq!(daemon.next_line(STEP_TIMEOUT).as_deref(), Some("next"));
        assert!(daemon.is_running());
        let status = daemon.signal_and_wait("TERM");
        assert!(!status.success());
    }

    #[test]
    fn a_child_that_exits_before_listening_fails_the_port_wait() {
        let mut child = Command::new("true").spawn().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for_port("true", addr, Some(&mut child));
        }));
        assert!(waited.is_err());
        assert!(on_path("sh") && !on_path("no-such-program-svid-broker"));
    }
}
