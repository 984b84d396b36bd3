//! SPIFFE identity validation for svid-broker.
//!
//! Sync code only (no async runtime): SPIFFE IDs and trust domains ([`id`]), authorizers
//! ([`authorize`]), trust bundles ([`bundle`]), JWT-SVID validation ([`jwt`]), standalone
//! X.509-SVID verification ([`x509`]) and the rustls verifiers built on it (`tls`, feature
//! `rustls`, on by default). The workspace's shared pieces live here too, because every other
//! crate depends on this one: the wire limits ([`limits`]), the secret type ([`secret`]) and the
//! error-chain printer ([`report`]). Every check takes the current time as an argument so tests
//! can pin it.
//!
//! Runnable example: `examples/verify_x509_svid.rs` in this crate (`cargo run -p
//! svid-broker-identity --example verify_x509_svid`); the crate's `README.md` sums up what a
//! caller may rely on.

pub mod authorize;
pub mod bundle;
pub mod clock;
pub mod id;
pub mod jwt;
pub mod limits;
pub mod report;
pub mod secret;
#[cfg(feature = "rustls")]
pub mod tls;
pub mod x509;

pub use authorize::{
    AuthorizeError, Authorizer, AuthorizerConfigError, Captures, PathPattern, PatternError,
};
pub use id::{IdError, MAX_SPIFFE_ID_LEN, MAX_TRUST_DOMAIN_LEN, ParseMode, SpiffeId, TrustDomain};
