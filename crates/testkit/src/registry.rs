//! Real-component harness: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, started
//! by [`svid_broker_dev::registry`], and `skopeo` as the client, plus the one-layer OCI image of
//! [`svid_broker_dev::oci`] so no network is needed.
//!
//! `scripts/test.sh` installs both packages; a test that needs them calls
//! [`super::process::require`] first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use svid_broker_dev::registry::{RegistryChild, RegistrySpec};

use super::process::{Output, free_port, run};

/// Token authentication for the registry (`auth.token`), borrowed from the test's values.
#[derive(Debug, Clone, Copy)]
pub struct TokenAuth<'a> {
    /// The token realm URL.
    pub realm: &'a str,
    /// The registry's `service` (token `aud`).
    pub service: &'a str,
    /// The required token `iss`.
    pub issuer: &'a str,
    /// PEM file of the CA certificates that may sign tokens.
    pub rootcertbundle: &'a Path,
}

impl From<&TokenAuth<'_>> for svid_broker_dev::registry::TokenAuth {
    fn from(auth: &TokenAuth<'_>) -> Self {
        Self {
            realm: auth.realm.to_owned(),
            service: auth.service.to_owned(),
            issuer: auth.issuer.to_owned(),
            rootcertbundle: auth.rootcertbundle.to_path_buf(),
        }
    }
}

/// A `docker-registry` child with its storage in a temporary directory; killed (only it) and
/// the directory removed when dropped.
#[derive(Debug)]
pub struct Registry {
    /// Where it listens (127.0.0.1, a port free at start).
    pub addr: SocketAddr,
    child: RegistryChild,
    // Declared after `child`, so the registry is stopped before its directory goes.
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry with filesystem storage and, when `auth` is given, token
    /// authentication; returns once it accepts connections.
    pub fn start(auth: Option<&TokenAuth<'_>>) -> Registry {
        Self::start_with_tls(auth, None)
    }

    /// [`Registry::start`], serving HTTPS with `tls` = (certificate PEM, key PEM) when given.
    pub fn start_with_tls(auth: Option<&TokenAuth<'_>>, tls: Option<(&Path, &Path)>) -> Registry {
        let dir = tempfile::tempdir().expect("registry temp dir");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut spec = RegistrySpec::new(dir.path(), addr);
        if let Some(auth) = auth {
            spec = spec.token_auth(auth.into());
        }
        if let Some((certificate, key)) = tls {
            spec = spec.tls(certificate, key);
        }
        let child = RegistryChild::start(spec)
            .unwrap_or_else(|e| panic!("{}", svid_broker_identity::report::ErrorChain::new(&e)));
        Registry {
            addr,
            child,
            _dir: dir,
        }
    }

    /// Kills the registry (SIGKILL, only this process) and leaves it down.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Starts the registry again on the same address, configuration and storage.
    pub fn restart(&mut self) {
        self.child
            .restart()
            .unwrap_or_else(|e| panic!("{}", svid_broker_identity::report::ErrorChain::new(&e)));
    }

    /// What the registry logged so far, for assertion messages.
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// `docker://127.0.0.1:PORT/REPO:TAG`.
    pub fn image_ref(&self, repository: &str, tag: &str) -> String {
        format!("docker://{}/{repository}:{tag}", self.addr)
    }
}

/// Runs `skopeo ARGS` with a bounded wait and `HOME` (and `XDG_RUNTIME_DIR`) at `home`, so no
/// user auth file or policy leaks in. Plain HTTP to the loopback registry needs the
/// `--*-tls-verify=false` the callers pass.
pub fn skopeo(args: &[&str], home: &Path) -> Output {
    skopeo_with_env(args, home, &[])
}

/// [`skopeo`] with `env` added (e.g. `SSL_CERT_FILE` for an `https://` token realm).
pub fn skopeo_with_env(args: &[&str], home: &Path, env: &[(&str, &str)]) -> Output {
    run(
        Command::new("skopeo")
            .args(args)
            .envs(env.iter().copied())
            .env("HOME", home)
            .env("XDG_RUNTIME_DIR", home)
            .env_remove("REGISTRY_AUTH_FILE"),
        None,
    )
}

/// Writes a one-layer OCI image layout (`oci:DIR:TAG` for skopeo) into `dir` whose layer holds
/// `/hello.txt` with `contents`; returns `dir`.
pub fn write_oci_image(dir: &Path, tag: &str, contents: &str) -> PathBuf {
    svid_broker_dev::oci::write_image(dir, tag, "hello.txt", contents.as_bytes())
        .expect("write the OCI image")
        .dir()
        .to_path_buf()
}
