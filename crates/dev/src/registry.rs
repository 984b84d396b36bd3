//! Debian's `docker-registry` (distribution 2.8) as a child process on 127.0.0.1: the real
//! registry the demo and the end-to-end tests push to and pull from.
//!
//! [`RegistryChild::start`] writes the registry's config into a directory the caller owns,
//! spawns `docker-registry serve`, and returns once the registry accepts TCP connections, or
//! fails within [`READY_TIMEOUT`]. The child is killed (SIGKILL, that process only) and reaped
//! when the handle is dropped, so a failing caller never leaves it behind.
//!
//! ```no_run
//! use svid_broker_dev::registry::{RegistryChild, RegistrySpec, free_loopback_addr};
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join("my-registry");
//! std::fs::create_dir_all(&dir)?;
//! let registry = RegistryChild::start(RegistrySpec::new(&dir, free_loopback_addr()?))?;
//! println!("push to {}", registry.addr());
//! # Ok(())
//! # }
//! ```

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The program spawned (Debian package `docker-registry`), looked up on `PATH`.
pub const REGISTRY_PROGRAM: &str = "docker-registry";
/// How long [`RegistryChild::start`] waits for the registry to accept connections.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one readiness probe (a TCP connect) may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// The registry's `auth.token` settings: it sends clients to `realm` and accepts the tokens
/// `issuer` signs for `service` with a certificate chaining to `rootcertbundle`.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    /// The token realm URL the registry's 401 points clients to.
    pub realm: String,
    /// The registry's `service` (the tokens' `aud`).
    pub service: String,
    /// The tokens' required `iss`.
    pub issuer: String,
    /// PEM file of the CA certificates that may sign tokens.
    pub rootcertbundle: PathBuf,
}

/// What to start: where the registry keeps its files and listens, and how it authenticates.
#[derive(Debug, Clone)]
pub struct RegistrySpec {
    dir: PathBuf,
    addr: SocketAddr,
    token_auth: Option<TokenAuth>,
    tls: Option<(PathBuf, PathBuf)>,
}

impl RegistrySpec {
    /// A registry with filesystem storage under `dir` (which must exist and stays the caller's;
    /// `config.yml`, `registry.log` and `storage/` are written there), listening on `addr`,
    /// without authentication and over plain HTTP.
    pub fn new(dir: impl Into<PathBuf>, addr: SocketAddr) -> Self {
        Self {
            dir: dir.into(),
            addr,
            token_auth: None,
            tls: None,
        }
    }

    /// Requires registry tokens (`auth.token`).
    #[must_use]
    pub fn token_auth(mut self, auth: TokenAuth) -> Self {
        self.token_auth = Some(auth);
        self
    }

    /// Serves HTTPS with this certificate chain and key (PEM files).
    #[must_use]
    pub fn tls(mut self, certificate: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls = Some((certificate.into(), key.into()));
        self
    }

    /// The registry's YAML config for this spec.
    fn config_yaml(&self) -> String {
        // Deletes are enabled so tests can remove what they pushed; nothing else needs them.
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: {}\n",
            self.dir.join("storage").display(),
            self.addr
        );
        if let Some((certificate, key)) = &self.tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                certificate.display(),
                key.display()
            ));
        }
        if let Some(auth) = &self.token_auth {
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    \
                 rootcertbundle: {}\n",
                auth.realm,
                auth.service,
                auth.issuer,
                auth.rootcertbundle.display()
            ));
        }
        config
    }
}

/// Why the registry child could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The config or log file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file that could not be written, inside the directory the caller gave.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// `docker-registry` could not be executed (typically: not installed).
    #[error("cannot start {program}")]
    Spawn {
        /// The program looked up on `PATH`: always [`REGISTRY_PROGRAM`].
        program: &'static str,
        /// What `exec` said.
        #[source]
        source: std::io::Error,
    },
    /// The registry exited before it listened; `log_tail` is the last line it logged.
    #[error("{REGISTRY_PROGRAM} exited during start-up ({status}): {log_tail}")]
    Exited {
        /// Its exit status (a code, or the signal that ended it).
        status: ExitStatus,
        /// The last non-empty line of its log (config errors, a busy address).
        log_tail: String,
    },
    /// The registry ran but did not accept connections within `waited`.
    #[error("{REGISTRY_PROGRAM} did not listen on {addr} within {waited:?}")]
    NotListening {
        /// The address it was configured to listen on.
        addr: SocketAddr,
        /// How long the start waited: always [`READY_TIMEOUT`].
        waited: Duration,
    },
    /// The child's state could not be queried.
    #[error("cannot wait for {REGISTRY_PROGRAM}")]
    Wait {
        /// What `waitpid` said.
        #[source]
        source: std::io::Error,
    },
}

/// A running `docker-registry serve`, killed and reaped (only that process) when dropped.
#[derive(Debug)]
pub struct RegistryChild {
    child: Option<Child>,
    spec: RegistrySpec,
}

impl RegistryChild {
    /// Writes the config, starts the registry and waits until it accepts connections.
    ///
    /// # Errors
    /// [`RegistryError`] naming what failed; a child that started is killed before returning.
    pub fn start(spec: RegistrySpec) -> Result<Self, RegistryError> {
        let config_path = spec.dir.join("config.yml");
        std::fs::write(&config_path, spec.config_yaml()).map_err(|source| {
            RegistryError::Write {
                path: config_path.clone(),
                source,
            }
        })?;
        let mut registry = Self { child: None, spec };
        registry.spawn_and_wait()?;
        Ok(registry)
    }

    /// The address it listens on, as the spec configured it.
    pub fn addr(&self) -> SocketAddr {
        self.spec.addr
    }

    /// The directory holding its config, log and storage.
    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }

    /// What the registry logged so far (it logs every blob probe's 404 at error level, so the
    /// log goes to this file rather than the caller's output); empty if unreadable.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills the registry (SIGKILL: no shutdown path runs) and leaves it down.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL cannot be caught, so the reaping `wait` returns promptly.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the registry if it runs and starts it again with the same address, config and
    /// storage.
    ///
    /// # Errors
    /// As [`RegistryChild::start`].
    pub fn restart(&mut self) -> Result<(), RegistryError> {
        self.kill();
        self.spawn_and_wait()
    }

    fn log_path(&self) -> PathBuf {
        self.spec.dir.join("registry.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), RegistryError> {
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| RegistryError::Write {
                path: log_path,
                source,
            })?;
        let child = Command::new(REGISTRY_PROGRAM)
            .arg("serve")
            .arg(self.spec.dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| RegistryError::Spawn {
                program: REGISTRY_PROGRAM,
                source,
            })?;
        self.child = Some(child);
        let outcome = self.wait_listening();
        if outcome.is_err() {
            self.kill();
        }
        outcome
    }

    fn wait_listening(&mut self) -> Result<(), RegistryError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = self.spec.addr;
        while TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).is_err() {
            let exited = match self.child.as_mut() {
                Some(child) => child
                    .try_wait()
                    .map_err(|source| RegistryError::Wait { source })?,
                None => None,
            };
            if let Some(status) = exited {
                self.child = None;
                return Err(RegistryError::Exited {
                    status,
                    log_tail: last_line(&self.log()).to_owned(),
                });
            }
            if Instant::now() >= deadline {
                return Err(RegistryError::NotListening {
                    addr,
                    waited: READY_TIMEOUT,
                });
            }
            std::thread::sleep(PROBE_INTERVAL);
        }
        Ok(())
    }
}

impl Drop for RegistryChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 127.0.0.1 address whose port was free a moment ago (bound, then released). Another
/// process may take it before the caller binds it; [`RegistryChild::start`] then fails with
/// [`RegistryError::Exited`] naming the busy address, rather than talking to a stranger.
///
/// # Errors
/// When no port can be bound on 127.0.0.1.
pub fn free_loopback_addr() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// The last non-empty line of `text`, trimmed.
fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn the_config_names_storage_auth_and_tls() {
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let plain = RegistrySpec::new("/r", addr).config_yaml();
        assert!(plain.contains("rootdirectory: /r/storage\n"), "{plain}");
        assert!(plain.contains("  addr: 127.0.0.1:5000\n"), "{plain}");
        assert!(
            !plain.contains("auth:") && !plain.contains("tls:"),
            "{plain}"
        );

        let full = RegistrySpec::new("/r", addr)
            .token_auth(TokenAuth {
                realm: "http://127.0.0.1:1/token".to_owned(),
                service: "registry.local".to_owned(),
                issuer: "svid-broker".to_owned(),
                rootcertbundle: "/r/ca.pem".into(),
            })
            .tls("/r/cert.pem", "/r/key.pem")
            .config_yaml();
        for want in [
            "  tls:\n    certificate: /r/cert.pem\n    key: /r/key.pem\n",
            "    realm: http://127.0.0.1:1/token\n",
            "    service: registry.local\n",
            "    issuer: svid-broker\n",
            "    rootcertbundle: /r/ca.pem\n",
        ] {
            assert!(full.contains(want), "{want:?} missing from {full}");
        }
    }

    #[test]
    fn a_free_address_is_loopback_and_the_log_tail_is_its_last_line() {
        let addr = free_loopback_addr().unwrap();
        assert!(addr.ip().is_loopback() && addr.port() != 0);
        assert_eq!(last_line("a\nb\n\n"), "b");
    }
}
