//! A seeded in-process broker: a dev trust domain, the shared test policy, a config, and
//! `BrokerServer` on its own runtime, shut down (with its Workload APIs) on drop.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use svid_broker_dev::{DevTrustDomain, WorkloadApiHandle, WorkloadApiServer};
use svid_broker_identity::SpiffeId;
use svid_broker_identity::clock::{Clock, SystemClock};
use svid_broker_server::config::BrokerConfig;
use svid_broker_server::{BrokerServer, ServerHandle};

/// The audience JWT-SVIDs presented to the broker carry.
pub const AUDIENCE: &str = "svid-broker";
/// The test registry's `service` (token `aud`).
pub const SERVICE: &str = "registry.local";
/// The test registry's `issuer` (token `iss`).
pub const ISSUER: &str = "svid-broker";
/// May push and pull `team/*`.
pub const BUILDER: &str = "spiffe://example.org/ns/ci/sa/builder";
/// May pull `team/*`.
pub const READER: &str = "spiffe://example.org/ns/prod/sa/reader";
/// May list the catalog.
pub const ADMIN: &str = "spiffe://example.org/ns/ops/sa/admin";
/// No rule names it.
pub const STRANGER: &str = "spiffe://example.org/ns/other/sa/nobody";

/// The shared test policy: one registry ([`SERVICE`], [`ISSUER`]) and a rule each for
/// [`BUILDER`], [`READER`] and [`ADMIN`].
pub const POLICY: &str = r#"
[[registries]]
name = "local"
service = "registry.local"
issuer = "svid-broker"
profile = "distribution-2"
hosts = ["127.0.0.1:5000"]

[[rules]]
id = "builder-push-team"
subject = "spiffe://example.org/ns/ci/sa/builder"
registry = "local"
repositories = ["team/*"]
actions = ["pull", "push"]

[[rules]]
id = "reader-pull-team"
subject = "spiffe://example.org/ns/prod/sa/reader"
registry = "local"
repositories = ["team/*"]
actions = ["pull"]

[[rules]]
id = "admin-catalog"
subject = "spiffe://example.org/ns/ops/sa/admin"
registry = "local"
actions = ["registry:catalog:*"]
"#;

/// `s` as a SPIFFE ID (a constant of the test).
pub fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A two-worker runtime with IO and time, as every fixture uses.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// How the broker learns who it is and whom it trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Identity {
    /// `bundle_files` with the trust domain's bundle; no SVID of its own, so no gRPC listener.
    BundleFile,
    /// Its own X.509-SVID from a dev Workload API serving the trust domain
    /// (`DIR/agent.sock`); the gRPC listener runs.
    WorkloadApi,
}

/// What to start; [`BrokerSpec::start`] starts it.
#[derive(Debug)]
pub struct BrokerSpec {
    td: Arc<DevTrustDomain>,
    policy: String,
    identity: Identity,
    http_port: u16,
    public_url: Option<String>,
    extra_config: String,
    files: Vec<(String, Vec<u8>)>,
    clock: Arc<dyn Clock>,
}

impl BrokerSpec {
    /// The shared [`POLICY`], trust in `td` through its bundle file, the realm on an ephemeral
    /// port, a generated signing CA, the system clock.
    pub fn new(td: Arc<DevTrustDomain>) -> Self {
        Self {
            td,
            policy: POLICY.to_owned(),
            identity: Identity::BundleFile,
            http_port: 0,
            public_url: None,
            extra_config: String::new(),
            files: Vec::new(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Another policy file.
    #[must_use]
    pub fn policy(mut self, policy: &str) -> Self {
        self.policy = policy.to_owned();
        self
    }

    /// The broker's own SVID from a dev Workload API serving the trust domain; the gRPC
    /// `Exchange` listener runs (on an ephemeral port).
    #[must_use]
    pub fn workload_api(mut self) -> Self {
        self.identity = Identity::WorkloadApi;
        self
    }

    /// The realm on this port of 127.0.0.1 (its `public_url` follows unless set).
    #[must_use]
    pub fn http_port(mut self, port: u16) -> Self {
        self.http_port = port;
        self
    }

    /// `server.public_url`.
    #[must_use]
    pub fn public_url(mut self, url: &str) -> Self {
        self.public_url = Some(url.to_owned());
        self
    }

    /// TOML appended to the config (after `[log]`; tables such as `[server.tls]` or
    /// `[limits]` may follow).
    #[must_use]
    pub fn extra_config(mut self, toml: &str) -> Self {
        self.extra_config.push_str(toml);
        self
    }

    /// A file written into the broker's directory before it starts (a JWK Set, a CA), for the
    /// config to name by its relative path.
    #[must_use]
    pub fn file(mut self, name: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.to_owned(), contents.into()));
        self
    }

    /// The clock the broker judges time by.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Writes the policy and config into a fresh temporary directory, starts the broker, and
    /// writes the CA bundle registries trust to `DIR/ca.pem`.
    pub fn start(self) -> BrokerFixture {
        let dir = tempfile::tempdir().expect("broker temp dir");
        let runtime = runtime();
        let mut apis = Vec::new();
        let identity = match self.identity {
            Identity::BundleFile => {
                std::fs::write(
                    dir.path().join("bundle.json"),
                    self.td.bundle_document_json(),
                )
                .expect("write bundle.json");
                format!(
                    "bundle_files = [{{ trust_domain = \"{}\", path = \"bundle.json\" }}]",
                    self.td.trust_domain()
                )
            }
            Identity::WorkloadApi => {
                let api = serve_workload_api(&runtime, &self.td, &dir.path().join("agent.sock"));
                let line = format!("workload_api = \"{}\"", api.endpoint());
                apis.push(api);
                line
            }
        };
        let grpc = match self.identity {
            Identity::BundleFile => "",
            Identity::WorkloadApi => "grpc_addr = \"127.0.0.1:0\"\n",
        };
        let public_url = self.public_url.unwrap_or_else(|| match self.http_port {
            // An ephemeral port is unknown until bound; the URL is only echoed, never dialled.
            0 => "http://127.0.0.1:1".to_owned(),
            port => format!("http://127.0.0.1:{port}"),
        });
        std::fs::write(dir.path().join("policy.toml"), &self.policy).expect("write policy.toml");
        for (name, contents) in &self.files {
            std::fs::write(dir.path().join(name), contents)
                .unwrap_or_else(|e| panic!("write {name}: {e}"));
        }
        let config = format!(
            "[server]\nhttp_addr = \"127.0.0.1:{}\"\n{grpc}public_url = \"{public_url}\"\n\
             shutdown_grace_seconds = 5\n[identity]\naudience = \"{AUDIENCE}\"\n{identity}\n\
             [policy]\nfile = \"policy.toml\"\n[signing]\ngenerate = true\n[log]\n\
             audit = \"audit.log\"\n{}",
            self.http_port, self.extra_config
        );
        BrokerFixture::start_with_config(dir, runtime, apis, &config, self.clock)
    }
}

/// Serves `td` on a dev Workload API at `socket` (no automatic rotation: tests rotate when
/// they mean to).
pub fn serve_workload_api(
    runtime: &tokio::runtime::Runtime,
    td: &Arc<DevTrustDomain>,
    socket: &Path,
) -> WorkloadApiHandle {
    runtime
        .block_on(
            WorkloadApiServer::builder(Arc::clone(td))
                .auto_rotate(None)
                .serve(socket),
        )
        .unwrap_or_else(|e| panic!("dev Workload API at {}: {e}", socket.display()))
}

/// A running broker, its directory (config, policy, `ca.pem`, `audit.log`) and the Workload
/// APIs it was started with; all stopped on drop, the broker first.
#[derive(Debug)]
pub struct BrokerFixture {
    handle: Option<ServerHandle>,
    apis: Vec<WorkloadApiHandle>,
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl BrokerFixture {
    /// Starts a broker from `config` (TOML, relative paths under `dir`) on `runtime`; `apis`
    /// are Workload APIs the caller started for it, stopped with it. Writes `DIR/ca.pem`.
    pub fn start_with_config(
        dir: tempfile::TempDir,
        runtime: tokio::runtime::Runtime,
        apis: Vec<WorkloadApiHandle>,
        config: &str,
        clock: Arc<dyn Clock>,
    ) -> BrokerFixture {
        let parsed = BrokerConfig::from_toml_str(config, dir.path())
            .unwrap_or_else(|e| panic!("broker config: {e}\n{config}"));
        let handle = runtime
            .block_on(BrokerServer::start(parsed, clock))
            .unwrap_or_else(|e| panic!("broker start: {e}"));
        std::fs::write(dir.path().join("ca.pem"), handle.ca_bundle_pem()).expect("write ca.pem");
        BrokerFixture {
            handle: Some(handle),
            apis,
            runtime,
            dir,
        }
    }

    /// The running broker.
    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("the broker runs until drop")
    }

    /// The runtime the broker runs on (for clients the test drives).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// The broker's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The realm's address.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        self.handle().http_addr()
    }

    /// The gRPC listener's address; panics when the fixture has none.
    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.handle()
            .grpc_addr()
            .expect("a gRPC listener is configured")
    }

    /// `http://ADDR/token`.
    pub fn realm_url(&self) -> String {
        format!("http://{}/token", self.http_addr())
    }

    /// The CA bundle registries trust (`DIR/ca.pem`).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The audit log so far (empty when not written yet).
    pub fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default()
    }

    /// Hands the Workload APIs to the caller (to stop or restart them mid-test); the fixture
    /// then stops only the broker.
    pub fn take_workload_apis(&mut self) -> Vec<WorkloadApiHandle> {
        std::mem::take(&mut self.apis)
    }

    /// The Workload API endpoints the fixture owns, in start order.
    pub fn workload_api_endpoints(&self) -> Vec<String> {
        self.apis.iter().map(WorkloadApiHandle::endpoint).collect()
    }
}

impl Drop for BrokerFixture {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.runtime.block_on(handle.shutdown());
        }
        for api in self.apis.drain(..) {
            let _ = self.runtime.block_on(api.shutdown());
        }
    }
}
