//! Shared helpers: run the real `svid-broker` binary with bounded waits.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Upper bound for any single command or wait in these tests. Generous because CI machines are
/// slow and shared; a test that hits it fails instead of hanging.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// The binary under test, built by Cargo for this test target.
pub(crate) fn broker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_svid-broker"))
}

/// What a finished command left behind.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    pub(crate) fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The stderr lines, for tests that check "one line naming the rule".
    pub(crate) fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// Runs `args` with `stdin` fed in, waiting at most [`STEP_TIMEOUT`]; kills the child on timeout.
pub(crate) fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = broker()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn svid-broker");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
    }
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let status =
        wait_bounded(&mut child, STEP_TIMEOUT).expect("svid-broker did not finish in time");
    Output {
        status,
        stdout: stdout.recv_timeout(STEP_TIMEOUT).expect("stdout"),
        stderr: stderr.recv_timeout(STEP_TIMEOUT).expect("stderr"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    rx
}

/// Waits for `child` up to `limit`; on timeout kills it (only this child) and returns `None`.
pub(crate) fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
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
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A long-running `svid-broker` process that is killed when dropped, so a failing test never
/// leaves it behind. Only the process this test started is ever signalled.
#[derive(Debug)]
pub(crate) struct Daemon {
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
}

impl Daemon {
    /// Spawns `args` and waits until the process prints `ready` on stdout.
    pub(crate) fn start_until_ready(args: &[&str]) -> Daemon {
        let mut child = broker()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn svid-broker");
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

    /// Further stdout lines, if any arrived within `limit`.
    pub(crate) fn next_line(&self, limit: Duration) -> Option<String> {
        self.lines.recv_timeout(limit).ok()
    }

    /// Sends `signal` (e.g. "TERM") to this process only and waits for it to exit.
    pub(crate) fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -s {signal} {pid} failed");
        wait_bounded(&mut self.child, STEP_TIMEOUT).expect("svid-broker did not exit after signal")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
