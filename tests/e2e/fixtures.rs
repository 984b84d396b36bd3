//! Identities, names and the policy the broker end-to-end tests share (realm, gRPC).

use std::path::Path;
use std::sync::Arc;

use svid_broker_dev::{DevTrustDomain, WorkloadApiHandle, WorkloadApiServer};
use svid_broker_identity::SpiffeId;
use svid_broker_identity::clock::SystemClock;
use svid_broker_server::config::BrokerConfig;
use svid_broker_server::{BrokerServer, ServerHandle};

/// The audience JWT-SVIDs presented to the broker carry.
pub(crate) const AUDIENCE: &str = "svid-broker";
/// The test registry's `service` (token `aud`).
pub(crate) const SERVICE: &str = "registry.local";
/// The test registry's `issuer` (token `iss`).
pub(crate) const ISSUER: &str = "svid-broker";
/// May push and pull `team/*`.
pub(crate) const BUILDER: &str = "spiffe://example.org/ns/ci/sa/builder";
/// May pull `team/*`.
pub(crate) const READER: &str = "spiffe://example.org/ns/prod/sa/reader";
/// May list the catalog.
pub(crate) const ADMIN: &str = "spiffe://example.org/ns/ops/sa/admin";
/// No rule names it.
pub(crate) const STRANGER: &str = "spiffe://example.org/ns/other/sa/nobody";

pub(crate) const POLICY: &str = r#"
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

pub(crate) fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

/// A broker with both listeners, in `dir`, whose own X.509-SVID comes from a dev Workload API
/// serving `td` (the socket is `dir/agent.sock`); `policy` is its policy file and
/// `extra_config` is appended to its config. The CA bundle registries trust is written to
/// `dir/ca.pem`. The runtime must outlive the broker and the Workload API.
pub(crate) fn start_broker_with_workload_api(
    dir: &Path,
    td: &Arc<DevTrustDomain>,
    policy: &str,
    extra_config: &str,
) -> (tokio::runtime::Runtime, WorkloadApiHandle, ServerHandle) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let workload_api = runtime
        .block_on(
            WorkloadApiServer::builder(Arc::clone(td))
                .auto_rotate(None)
                .serve(dir.join("agent.sock")),
        )
        .unwrap();
    std::fs::write(dir.join("policy.toml"), policy).unwrap();
    let config = BrokerConfig::from_toml_str(
        &format!(
            r#"
[server]
http_addr = "127.0.0.1:0"
grpc_addr = "127.0.0.1:0"
public_url = "http://127.0.0.1:1"
shutdown_grace_seconds = 5
[identity]
audience = "{AUDIENCE}"
workload_api = "{}"
[policy]
file = "policy.toml"
[signing]
generate = true
[log]
audit = "audit.log"
{extra_config}"#,
            workload_api.endpoint()
        ),
        dir,
    )
    .unwrap();
    let handle = runtime
        .block_on(BrokerServer::start(config, Arc::new(SystemClock)))
        .unwrap();
    std::fs::write(dir.join("ca.pem"), handle.ca_bundle_pem()).unwrap();
    (runtime, workload_api, handle)
}
