//! The limits of the broker's wire inputs, each defined once: the Exchange request and
//! response, the realm's `service` and `scope` parameters, and the SPIFFE and JWT inputs
//! they carry. The client checks a request against the same numbers the server enforces, so a
//! request the client sends is never refused for its size, and the dev CA never mints what the
//! broker would refuse.
//!
//! They live here because every crate that checks one of these inputs (client, server, dev,
//! token, policy, sources, the credential provider) depends on svid-broker-identity and it on
//! none of them. The proto crate, which defines the Exchange messages, would be the other
//! candidate, but the token and policy crates do not (and should not) depend on gRPC code.

pub use crate::id::{MAX_SPIFFE_ID_LEN, MAX_TRUST_DOMAIN_LEN};

/// Longest registry `service` name, in bytes: the Exchange request's `audience`, the realm's
/// `service` parameter, a policy registry's `service` and the token's `aud`.
///
/// 255: a service is a host name (DNS names are at most 253 bytes) or `host:port` in practice.
/// The policy refuses a longer `service` when it loads, so a longer request could never match
/// a registry; the edges refuse it before any lookup.
pub const MAX_SERVICE_LEN: usize = 255;

/// Longest token `iss` (a registry's `auth.token.issuer`), in bytes. The same bound as
/// [`MAX_SERVICE_LEN`]: a name, or a URL, written once per registry in the policy.
pub const MAX_ISSUER_LEN: usize = 255;

/// Longest single `scope` value, in bytes: one Exchange `scope` entry, one realm `scope`
/// parameter.
///
/// One resource scope is at most about 300 bytes (a type, a [`MAX_REPOSITORY_NAME_LEN`] name and
/// its actions), but docker's POST sends all its scopes space-joined in one parameter; 4096
/// leaves room for a dozen full-length scopes in one value and bounds the parse work per value.
pub const MAX_SCOPE_PARAM_LEN: usize = 4096;

/// Most `scope` values in one request (Exchange `scope` entries, realm `scope` parameters).
///
/// Distribution asks for at most three scopes per request (push with a cross-repository
/// mount); 32 leaves room for batch clients and bounds the policy work per request.
pub const MAX_SCOPE_PARAMS: usize = 32;

/// Most resource scopes in one request once space-joined values are split: the same 32 as
/// [`MAX_SCOPE_PARAMS`], so both ways of writing a request have the same ceiling.
pub const MAX_SCOPES: usize = 32;

/// Longest repository name, domain included, in bytes: distribution's reference grammar
/// (`NameTotalLengthMax = 255`), which registries enforce, so a longer name names nothing.
pub const MAX_REPOSITORY_NAME_LEN: usize = 255;

/// Longest action name (`pull`, `push`, `delete`, `*`) in a scope or a token's `access`, in
/// bytes. The real ones are at most 6; 32 leaves room for registry extensions.
pub const MAX_ACTION_LEN: usize = 32;

/// Longest subject token in an Exchange request (a Kubernetes service-account token), in
/// bytes. Real ones are 1–2 KiB; 16 KiB bounds the work of parsing and verifying one.
pub const MAX_SUBJECT_TOKEN_LEN: usize = 16 * 1024;

/// Longest credential the broker issues, and accepts back, in bytes: a registry token, or a
/// login credential or refresh token. A login credential with a full ceiling of [`MAX_SCOPES`]
/// longest scopes is about 12 KiB; the broker refuses to issue anything longer, so it never
/// hands out a credential it would itself refuse, and the client refuses a longer response.
pub const MAX_CREDENTIAL_LEN: usize = 16 * 1024;

/// Longest JWT-SVID audience value, in bytes: what a workload asks the Workload API for, and
/// what the dev CA mints. Audiences are URLs or names; 1 KiB is generous for either.
pub const MAX_JWT_AUDIENCE_LEN: usize = 1024;

/// Most JWT-SVID audience values in one request or token. 32 is the `spiffe` crate's cap on
/// `aud` in a Workload API request, and the JWT-SVID validator's default
/// ([`crate::jwt::DEFAULT_MAX_AUDIENCES`] is this constant), so the dev CA and the Workload API
/// source never produce a token the broker's default validator refuses.
pub const MAX_JWT_AUDIENCES: usize = 32;
