//! Trust sources for svid-broker: where the current [`BundleSet`] comes from.
//!
//! Every source keeps its current snapshot behind an `ArcSwap` and implements
//! [`BundleProvider`], so verifiers read it without locking; each keeps its **last good state on
//! any failure**, records the failure (`last_error()`, `error_count()`, a `tracing` event), and
//! exposes an update signal ([`Updates`]) that advances on every publication.
//!
//! | source | bundles from | refresh |
//! | --- | --- | --- |
//! | [`FileBundleSource`] | PEM files, SPIFFE bundle documents, a bundle map | polls files (mtime, length, SHA-256) |
//! | [`WorkloadApiSource`] | the SPIFFE Workload API (via the `spiffe` crate) | streamed by the agent |
//! | [`FederationSource`] | a SPIFFE bundle endpoint (`https_web`, `https_spiffe`) | `spiffe_refresh_hint` |
//! | [`CombinedBundles`] | several of the above | on read, when an input changed |
//!
//! Bundles of one trust domain are never merged (SPIFFE_Federation.md §4.2): a trust domain comes
//! from exactly one source, see [`CombinedBundles`].
//!
//! All TLS uses rustls with the aws-lc-rs provider.
//!
//! Runnable example: `examples/bundle_file.rs` in this crate
//! (`cargo run -p svid-broker-sources --example bundle_file`); the crate's `README.md` sums up
//! what a caller may rely on.

mod combined;
pub mod federation;
pub mod file;
mod secret;
mod snapshot;
#[cfg(test)]
mod testutil;
pub mod workload;

use std::sync::Arc;

pub use combined::{CombinedBundles, TrustDomainConflict};
pub use federation::FederationSource;
pub use file::FileBundleSource;
pub use secret::{JwtSvidToken, SvidPrivateKey};
pub use snapshot::Updates;
#[doc(no_inline)]
pub use svid_broker_identity::bundle::{BundleProvider, BundleSet};
pub use workload::WorkloadApiSource;

/// Message of every "needs a tokio runtime" error.
const RUNTIME_MISSING: &str = "no tokio runtime is running; start the source from async code";

/// The one crypto stack of the workspace.
fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
