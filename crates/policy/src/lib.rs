//! Registry access policy for svid-broker. Sync: no async runtime.
//!
//! - [`scope`]: the registry scope grammar (`repository:team/app:pull,push`), used by the
//!   policy, the token crate and the HTTP realm.
//! - [`Policy`]: a strictly parsed TOML policy (registries and rules), validated at load time,
//!   and [`Policy::decide`], which turns a SPIFFE ID, a `service` and requested scopes into a
//!   [`Decision`]: default deny, deny overrides allow, rule order never matters.
//! - [`Decision::explain`]: the plain-text report behind `svid-broker policy explain`.
//!
//! # Policy file
//!
//! Unknown keys are errors; every error carries a line and column.
//!
//! `[[registries]]`: `name` (referenced by rules), `service` (the token `aud` and the realm's
//! `service` parameter, unique), `issuer` (the token `iss`), `profile` (`distribution-2`,
//! `distribution-3` or `zot`), `token_ttl_seconds` (default 300, between 60 and 3600), `hosts`
//! (lowercase `host[:port]`s, unique across registries).
//!
//! `[[rules]]`: `id` (unique), exactly one of `subject` (an exact SPIFFE ID, or a pattern with
//! `*`, trailing `**` and `{name}` captures, see [`svid_broker_identity::PathPattern`]) and
//! `trust_domain`, `registry`, `repositories` (see [`repository::RepositoryPattern`]; captures
//! come from the subject and each one must be used), `actions` (`pull`, `push`, `delete`, `*`,
//! or alone `registry:catalog:*` with no `repositories`), `effect` (`allow`, the default, or
//! `deny`), `whole_registry` (must be `true` on an allow rule with a pattern made only of `*`
//! and `**`, and is refused on a rule without such a pattern).
//!
//! ```
//! use svid_broker_identity::SpiffeId;
//! use svid_broker_policy::{Policy, scope};
//!
//! let policy = Policy::from_toml_str(r#"
//!     [[registries]]
//!     name = "local"
//!     service = "registry.local"
//!     issuer = "svid-broker"
//!     profile = "distribution-2"
//!     hosts = ["127.0.0.1:5000"]
//!
//!     [[rules]]
//!     id = "teams-pull-own-namespace"
//!     subject = "spiffe://example.org/ns/{ns}/sa/*"
//!     registry = "local"
//!     repositories = ["team-{ns}/*"]
//!     actions = ["pull"]
//! "#)?;
//! let who = SpiffeId::parse("spiffe://example.org/ns/prod/sa/web")?;
//! let asked = scope::parse_scopes(["repository:team-prod/app:pull,push"])?;
//! let decision = policy.decide(&who, "registry.local", &asked)?;
//! assert_eq!(decision.granted_scope(), "repository:team-prod/app:pull");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Runnable example: `examples/decide.rs` in this crate
//! (`cargo run -p svid-broker-policy --example decide`); the crate's `README.md` sums up
//! what a caller may rely on.

mod decision;
mod error;
mod kind;
mod policy;
mod profile;
pub mod repository;
pub mod scope;
pub mod subject;

pub use decision::{ActionSet, Decision, RuleHit, ScopeTrace};
pub use error::{DecisionError, Location, PolicyError};
pub use kind::{Reach, RegistryKind};
pub use policy::{
    AWS_DEFAULT_JWT_AUDIENCE, AZURE_DEFAULT_JWT_AUDIENCE, AwsAccount, AzureAccount, CATALOG_ACTION,
    CloudAccount, DEFAULT_TOKEN_TTL_SECONDS, Effect, Federation, GcpAccount, MAX_API_URL_LEN,
    MAX_AWS_SESSION_SECONDS, MAX_CLOUD_FIELD_LEN, MAX_FEDERATION_FIELD_LEN, MAX_LIST_LEN,
    MAX_PATH_LEN, MAX_POLICY_FILE_BYTES, MAX_REGISTRIES, MAX_REGISTRY_NAME_LEN, MAX_ROLE_LEN,
    MAX_RULE_ID_LEN, MAX_RULES, MAX_TOKEN_TTL_SECONDS, MIN_AWS_SESSION_SECONDS,
    MIN_TOKEN_TTL_SECONDS, Policy, Registry, RegistryApi, aws_domain,
};
pub use profile::Profile;
pub use scope::{Action, ResourceScope, ResourceType, ScopeError};
