//! The demo's talk to its children and to the realm: bounded in time and in bytes.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, HOST, USER_AGENT};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;

use super::error::DemoError;

/// Upper bound on every wait: one child process, one HTTP exchange, a registry start-up.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest output read from a child process or an HTTP response, in bytes.
pub(crate) const MAX_OUTPUT_BYTES: u64 = 1024 * 1024;

/// What a finished child process left behind (each stream cut at [`MAX_OUTPUT_BYTES`]).
pub(crate) struct ChildOutput {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `command` with `stdin` fed in and its output collected; after [`STEP_TIMEOUT`] it is
/// killed (only it: `kill_on_drop`) and the run fails.
pub(crate) async fn run_child(
    mut command: Command,
    stdin: &[u8],
) -> Result<ChildOutput, DemoError> {
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| DemoError::Exec {
            program: program.clone(),
            source,
        })?;
    let input = child.stdin.take();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let feed = async move {
        if let Some(mut input) = input {
            // The child may exit before reading (a bad config): a broken pipe is its answer,
            // which its exit status and stderr report.
            let _ = input.write_all(stdin).await;
        }
        // `input` dropped here: the child sees end of file.
    };
    let finished = async {
        let ((), stdout, stderr, status) = tokio::join!(
            feed,
            read_bounded(stdout),
            read_bounded(stderr),
            child.wait()
        );
        status.map(|status| ChildOutput {
            status,
            stdout,
            stderr,
        })
    };
    match tokio::time::timeout(STEP_TIMEOUT, finished).await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(source)) => Err(DemoError::Exec { program, source }),
        Err(_elapsed) => Err(DemoError::Timeout {
            program,
            limit: STEP_TIMEOUT,
        }),
    }
}

async fn read_bounded(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let mut bytes = Vec::new();
    if let Some(pipe) = pipe {
        // A read error ends the stream; what arrived is still reported.
        let _ = pipe.take(MAX_OUTPUT_BYTES).read_to_end(&mut bytes).await;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `skopeo ARGS` with a private HOME, so no user auth file or policy leaks in.
pub(crate) async fn skopeo(args: &[&str], home: &Path) -> Result<ChildOutput, DemoError> {
    let mut command = Command::new("skopeo");
    command
        .args(args)
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", home)
        .env_remove("REGISTRY_AUTH_FILE");
    run_child(command, b"").await
}

/// One HTTP/1.1 GET of `target` at the realm on a fresh connection, within [`STEP_TIMEOUT`];
/// returns the status and at most [`MAX_OUTPUT_BYTES`] of body.
pub(crate) async fn realm_get(
    addr: SocketAddr,
    target: &str,
    authorization: &str,
) -> Result<(u16, Bytes), DemoError> {
    let io = |source: Box<dyn std::error::Error + Send + Sync>| DemoError::RealmIo { addr, source };
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        // Drives the connection until the response is read; ends with it.
        tokio::spawn(connection);
        let request = hyper::Request::get(target)
            .header(HOST, addr.to_string())
            .header(AUTHORIZATION, authorization)
            .header(USER_AGENT, "svid-broker-demo")
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let limit = usize::try_from(MAX_OUTPUT_BYTES).unwrap_or(usize::MAX);
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await?
            .to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
    };
    tokio::time::timeout(STEP_TIMEOUT, exchange)
        .await
        .map_err(|elapsed| io(Box::new(elapsed)))?
        .map_err(io)
}

/// Whether `program` is an executable file in a `PATH` directory.
pub(crate) fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The last non-empty line of `text`, trimmed (a child's one-line reason).
pub(crate) fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}
