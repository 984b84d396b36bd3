//! Identities, names and the policy the broker end-to-end tests share (realm, gRPC).

use svid_broker_identity::SpiffeId;

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
