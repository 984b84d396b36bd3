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

mod combined;
pub mod federation;
pub mod file;
mod secret;
mod snapshot;
#[cfg(test)]
mod testutil;
pub mod workload;

use std::error::Error;
use std::fmt;
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

/// Displays an error followed by its `source()` chain, `a: b: c`, for log lines. A cause whose
/// text its parent already printed is not repeated.
pub(crate) struct ErrorChain<'a>(pub(crate) &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            let text = e.to_string();
            if !shown.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            next = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle: {0}")]
    struct Middle(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[test]
    fn error_chain_prints_each_cause_once() {
        let e = Outer(Middle(Inner));
        // "inner" is already in the middle message, so it is not repeated.
        assert_eq!(ErrorChain(&e).to_string(), "outer: middle: inner");
        assert_eq!(ErrorChain(&Inner).to_string(), "inner");
    }
}
