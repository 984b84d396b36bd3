//! Real-component harness: Debian's `docker-registry` (distribution 2.8.2) on 127.0.0.1 and
//! `skopeo` (1.9.3) as the client, plus a tiny OCI image built here so no network is needed.
//!
//! `scripts/test.sh` installs both packages. When one is missing, tests that need it fail under
//! `CI=true` and are skipped loudly otherwise; they never pass silently.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{STEP_TIMEOUT, wait_bounded};

/// Whether `program` is on PATH. Under `CI=true` a missing program fails the test.
pub(crate) fn require(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{program} is required under CI=true (scripts/test.sh installs it)"
        );
        eprintln!("SKIPPED: {program} is not installed; run scripts/test.sh as root to install it");
    }
    found
}

/// A free port on 127.0.0.1 (bound and released; the race with other processes is tolerable
/// for tests and the registry's start-up check catches it).
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Token authentication settings for the registry (`auth.token`).
pub(crate) struct TokenAuth<'a> {
    pub(crate) realm: &'a str,
    pub(crate) service: &'a str,
    pub(crate) issuer: &'a str,
    pub(crate) rootcertbundle: &'a Path,
}

/// A `docker-registry serve` process on 127.0.0.1, killed (only it) when dropped.
pub(crate) struct Registry {
    child: Child,
    pub(crate) addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry with filesystem storage in a temporary directory and, when `auth` is
    /// given, token authentication; waits until it accepts connections.
    pub(crate) fn start(auth: Option<&TokenAuth<'_>>) -> Registry {
        Self::start_with_tls(auth, None)
    }

    /// [`Registry::start`], serving HTTPS with `tls` = (certificate PEM, key PEM) when given.
    pub(crate) fn start_with_tls(
        auth: Option<&TokenAuth<'_>>,
        tls: Option<(&Path, &Path)>,
    ) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        );
        if let Some((certificate, key)) = tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                certificate.display(),
                key.display()
            ));
        }
        if let Some(auth) = auth {
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                auth.realm,
                auth.service,
                auth.issuer,
                auth.rootcertbundle.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        // The registry logs every 404 of a blob probe at error level; keep that out of the test
        // output, next to the config, for `log()` to show when an assertion fails.
        let child = Self::spawn(dir.path());
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut registry = Registry { child, addr, dir };
        registry.wait_listening();
        registry
    }

    fn spawn(dir: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("registry.log"))
            .unwrap();
        Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry")
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited during start-up: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen in time"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the registry (SIGKILL, only this process) and leaves it down.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = wait_bounded(&mut self.child, STEP_TIMEOUT);
    }

    /// Starts the registry again on the same address, configuration and storage.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(self.dir.path());
        self.wait_listening();
    }

    /// What the registry logged so far, for assertion messages.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `docker://127.0.0.1:PORT/REPO:TAG`.
    pub(crate) fn image_ref(&self, repository: &str, tag: &str) -> String {
        format!("docker://{}/{repository}:{tag}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_bounded(&mut self.child, STEP_TIMEOUT);
    }
}

/// What a skopeo run left behind.
#[derive(Debug)]
pub(crate) struct SkopeoOutput {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `skopeo ARGS` (plain HTTP to the loopback registry is allowed by `--*-tls-verify=false`,
/// which the callers pass) with a bounded wait; `HOME` is isolated so no user auth file leaks in.
pub(crate) fn skopeo(args: &[&str], home: &Path) -> SkopeoOutput {
    skopeo_with_env(args, home, &[])
}

/// [`skopeo`] with `env` added (e.g. `SSL_CERT_FILE` for an `https://` token realm).
pub(crate) fn skopeo_with_env(args: &[&str], home: &Path, env: &[(&str, &str)]) -> SkopeoOutput {
    let mut child = Command::new("skopeo")
        .args(args)
        .envs(env.iter().copied())
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", home)
        .env_remove("REGISTRY_AUTH_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn skopeo");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = wait_bounded(&mut child, STEP_TIMEOUT).expect("skopeo did not finish in time");
    SkopeoOutput {
        success: status.success(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Writes a one-layer OCI image layout (`oci:DIR:TAG` for skopeo) whose layer is an
/// uncompressed tar holding `/hello.txt` with `contents`.
pub(crate) fn write_oci_image(dir: &Path, tag: &str, contents: &str) -> PathBuf {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let digest = sha256_hex(bytes);
        std::fs::write(blobs.join(&digest), bytes).unwrap();
        (format!("sha256:{digest}"), bytes.len())
    };
    let layer = tar_with_one_file("hello.txt", contents.as_bytes());
    let (layer_digest, layer_size) = put(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}},"config":{{}}}}"#
    );
    let (config_digest, config_size) = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{layer_size}}}]}}"#
    );
    let (manifest_digest, manifest_size) = put(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#
    );
    std::fs::write(dir.join("index.json"), index).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    dir.to_path_buf()
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A POSIX ustar archive with one regular file: a 512-byte header, the data padded to 512, and
/// two zero blocks.
fn tar_with_one_file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], value: u64| {
        let text = format!("{value:0width$o}\0", width = field.len() - 1);
        field.copy_from_slice(text.as_bytes());
    };
    octal(&mut header[100..108], 0o644);
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    octal(&mut header[124..136], data.len() as u64);
    octal(&mut header[136..148], 0);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{checksum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// The harness itself, against an unauthenticated registry: push an image built here, then read
/// it back. Proves the registry, skopeo and the OCI layout work before any auth is layered on.
#[test]
fn harness_pushes_and_pulls_through_a_real_registry() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let registry = Registry::start(None);
    let work = tempfile::tempdir().unwrap();
    let image = write_oci_image(&work.path().join("image"), "v1", "hello from svid-broker\n");
    let src = format!("oci:{}:v1", image.display());
    let dest = registry.image_ref("team/app", "v1");
    let out = skopeo(
        &["copy", "--dest-tls-verify=false", &src, &dest],
        work.path(),
    );
    assert!(
        out.success,
        "push failed: {}\n{}",
        out.stderr,
        registry.log()
    );
    let out = skopeo(&["inspect", "--tls-verify=false", &dest], work.path());
    assert!(out.success, "inspect failed: {}", out.stderr);
    let manifest: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        manifest["Layers"].as_array().map(Vec::len),
        Some(1),
        "{manifest}"
    );
    let pulled = work.path().join("pulled");
    let out = skopeo(
        &[
            "copy",
            "--src-tls-verify=false",
            &dest,
            &format!("oci:{}:v1", pulled.display()),
        ],
        work.path(),
    );
    assert!(out.success, "pull failed: {}", out.stderr);
}
