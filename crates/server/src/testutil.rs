//! Shared fixtures for the crate's unit tests: a dev trust domain, a policy and a broker.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use svid_broker_dev::DevTrustDomain;
use svid_broker_identity::bundle::{BundleProvider, BundleSet};
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_identity::{SpiffeId, TrustDomain};
use svid_broker_policy::Policy;
use svid_broker_token::{KeyRing, KeyRingConfig, SigningAlgorithm, SigningCa, TokenMinter};

use crate::audit::AuditSink;
use crate::credential::CredentialKeys;
use crate::engine::{Broker, BrokerOptions};

pub(crate) const AUDIENCE: &str = "svid-broker";
pub(crate) const SERVICE: &str = "registry.local";
pub(crate) const BUILDER: &str = "spiffe://example.org/ns/ci/sa/builder";
pub(crate) const READER: &str = "spiffe://example.org/ns/prod/sa/reader";
pub(crate) const ADMIN: &str = "spiffe://example.org/ns/ops/sa/admin";
pub(crate) const STRANGER: &str = "spiffe://example.org/ns/other/sa/nobody";

pub(crate) const POLICY: &str = r#"
[[registries]]
name = "local"
service = "registry.local"
issuer = "svid-broker"
profile = "distribution-2"
hosts = ["127.0.0.1:5000"]

[[registries]]
name = "other"
service = "registry.other"
issuer = "svid-broker"
profile = "distribution-3"
hosts = ["127.0.0.1:5001"]

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

pub(crate) fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

pub(crate) fn t0() -> SystemTime {
    SystemTime::now()
}

pub(crate) struct Fixture {
    pub(crate) td: DevTrustDomain,
    pub(crate) broker: Arc<Broker>,
    pub(crate) audit: Arc<Mutex<Vec<String>>>,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        Self::with(|_| {})
    }

    pub(crate) fn with(adjust: impl FnOnce(&mut BrokerOptions)) -> Self {
        Self::with_policy(POLICY, adjust)
    }

    /// A broker on `policy` (a whole policy file's text).
    pub(crate) fn with_policy(policy: &str, adjust: impl FnOnce(&mut BrokerOptions)) -> Self {
        let td = DevTrustDomain::new(
            TrustDomain::parse("example.org").unwrap(),
            [id("spiffe://example.org/workload")],
        )
        .unwrap();
        let bundles: Arc<dyn BundleProvider> = Arc::new(Arc::new(td.bundle_set().unwrap()));
        let (sink, audit) = AuditSink::memory();
        let mut options = BrokerOptions::new(AUDIENCE);
        options.audit = sink;
        adjust(&mut options);
        let broker = Broker::new(
            Policy::from_toml_str(policy).unwrap(),
            bundles,
            minter(t0()),
            CredentialKeys::derive(&[7u8; 32]).unwrap(),
            options,
        )
        .unwrap();
        Self {
            td,
            broker: Arc::new(broker),
            audit,
        }
    }

    /// A JWT-SVID for `who` with audience `aud`.
    pub(crate) fn jwt(&self, who: &str, aud: &str) -> String {
        self.td
            .issue_jwt_svid(&id(who), &[aud])
            .unwrap()
            .token()
            .expose_secret()
            .to_owned()
    }

    pub(crate) fn audit_lines(&self) -> Vec<serde_json::Value> {
        self.audit
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

pub(crate) fn minter(now: SystemTime) -> TokenMinter {
    let ca = SigningCa::generate(
        SigningAlgorithm::Es256,
        "test ca",
        Duration::from_secs(30 * 24 * 3600),
        now,
    )
    .unwrap();
    let mut config = KeyRingConfig::default();
    config.max_token_ttl = Duration::from_secs(3600);
    config.leaf_lifetime = Duration::from_secs(4 * 3600);
    config.rotate_when_remaining = Duration::from_secs(2 * 3600);
    TokenMinter::new(KeyRing::new(ca, config, now).unwrap())
}

#[allow(dead_code, reason = "kept for tests that need an empty bundle set")]
pub(crate) fn empty_bundles() -> Arc<dyn BundleProvider> {
    Arc::new(Arc::new(BundleSet::new()))
}

/// Decodes a JWT's claims without verifying (tests only).
pub(crate) fn claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A TCP connection to `addr` from the local address `source` (e.g. 127.0.0.2, which Linux
/// routes to `lo`), so attack tests can play a second client address.
pub(crate) async fn connect_from(
    source: std::net::IpAddr,
    addr: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// Waits (bounded by `limit`) for the server to close `read`: EOF or an error. Bytes that
/// arrive meanwhile are discarded.
pub(crate) async fn closed_within(
    mut read: impl tokio::io::AsyncRead + Unpin,
    limit: Duration,
) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 512];
    let stop = std::time::Instant::now() + limit;
    loop {
        let left = stop.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, read.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// This process's open file descriptors and resident set size (KiB), for attack tests' reports.
pub(crate) fn fds_and_rss() -> (usize, u64) {
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    (fds, rss)
}
