//! Running the plugin binary with bounded waits.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Upper bound for any single command or wait in these tests; a test that hits it fails
/// instead of hanging.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// The binary under test.
pub(crate) const PLUGIN: &str = env!("CARGO_BIN_EXE_svid-credential-provider");

/// The golden files.
pub(crate) fn data(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

/// What a finished plugin run left behind.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) elapsed: Duration,
}

impl Output {
    pub(crate) fn success(&self) -> bool {
        self.status.success()
    }

    /// The single stderr line of a failure.
    pub(crate) fn one_stderr_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "want exactly one stderr line: {:?}",
            self.stderr
        );
        lines[0]
    }
}

/// Runs `program` (the plugin, or a link to it) with `args`, `env` added to a cleared
/// environment (plus PATH), and `stdin` fed in; kills it after [`STEP_TIMEOUT`].
pub(crate) fn run(program: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the plugin");
    {
        let mut input = child.stdin.take().expect("stdin");
        // The plugin may exit before reading (e.g. on a bad config): ignore a broken pipe.
        let _ = input.write_all(stdin.as_bytes());
    }
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let status = wait_bounded(&mut child, STEP_TIMEOUT).expect("the plugin did not finish in time");
    let elapsed = started.elapsed();
    Output {
        status,
        stdout: stdout.recv_timeout(STEP_TIMEOUT).expect("stdout"),
        stderr: stderr.recv_timeout(STEP_TIMEOUT).expect("stderr"),
        elapsed,
    }
}

/// [`run`] on the plugin binary itself.
pub(crate) fn plugin(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    run(Path::new(PLUGIN), args, env, stdin)
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
        std::thread::sleep(Duration::from_millis(5));
    }
}
