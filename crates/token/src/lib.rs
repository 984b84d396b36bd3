//! Registry bearer tokens for svid-broker, per the distribution token specification.
//!
//! A [`TokenMinter`] turns a decision that was already made (who, for which registry, which
//! access) into a signed JWT that unmodified registries accept:
//!
//! - **Claims** follow the distribution token spec: `iss`, `sub` (the SPIFFE ID), `aud` as one
//!   JSON string (distribution 2.8 rejects arrays), `exp`, `nbf` and `iat` back-dated by
//!   [`CLOCK_BACKDATE`], a random `jti`, and `access` sorted with deduplicated actions and never a
//!   `class`.
//! - **Signing** uses ES256 (default), ES384 or RS256 through aws-lc-rs. EdDSA, PS* and HS* are
//!   refused because distribution 2.8 rejects them.
//! - **Keys**: a [`SigningCa`] (loaded from PEM, or generated for development) issues short-lived
//!   signing leaves. The [`KeyRing`] holds the current and the previous leaf and rotates before a
//!   leaf could expire under a live token, so the registry (which trusts the CA through its
//!   `rootcertbundle` and checks the `x5c` chain at request time) never needs a restart.
//! - **Profiles** ([`Profile`], the policy's enum, re-exported) choose the header `kid`
//!   ([`KidFormat`]): the libtrust key ID for distribution 2.x, Harbor and GitLab; the RFC 7638
//!   thumbprint for distribution 3 and zot. Every profile carries the `x5c` chain, which every
//!   version checks first.
//! - **Publishing**: [`KeyRing::jwks_json`] (every key under every `kid` format, so it serves
//!   all profiles at once), [`KeyRing::openid_configuration_json`] and
//!   [`KeyRing::ca_bundle_pem`].
//!
//! Everything is synchronous and takes the current time as an argument.
//!
//! Runnable example: `examples/mint.rs` in this crate
//! (`cargo run -p svid-broker-token --example mint`); the crate's `README.md` sums up
//! what a caller may rely on.

mod claims;
mod error;
pub mod external;
pub mod federation;
mod keys;
mod kid;
mod mint;
mod publish;

#[cfg(test)]
mod testutil;
#[cfg(test)]
mod verify28;

pub use claims::{Access, MAX_ACCESS_ENTRIES, MAX_ACTIONS_PER_ENTRY, MAX_RESOURCE_TYPE_LEN};
pub use error::{Claim, KeyError, PemSource, RotationRule, TokenError};
pub use keys::{
    DEFAULT_LEAF_COMMON_NAME, DEFAULT_LEAF_LIFETIME, DEFAULT_MAX_TOKEN_TTL, KeyRing, KeyRingConfig,
    LEAF_BACKDATE, MAX_CA_CERTS, MAX_LEAF_COMMON_NAME_LEN, MAX_LEAF_LIFETIME, MAX_PEM_LEN,
    MIN_RSA_BITS, ROTATION_MARGIN, SigningAlgorithm, SigningCa, SigningLeaf,
};
pub use kid::{KidFormat, libtrust_key_id};
pub use mint::{
    CLOCK_BACKDATE, DEFAULT_TOKEN_TTL, MIN_TOKEN_TTL, MintRequest, MintedToken, REGISTRY_LEEWAY,
    RegistryToken, TokenMinter,
};
/// The token profile of a registry: the policy's enum, so the policy file, the token and the
/// server name one type and no crate maps between two.
pub use svid_broker_policy::Profile;
