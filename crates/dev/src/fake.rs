//! Fakes of registry back ends that cannot run on a development machine, for the broker's
//! tests and `svid-broker demo`. Each fake enforces the vendor's own rules (read from the
//! vendor's published code, named in each rule's docs) so a test against it proves something.
//!
//! - [`gitlab`]: GitLab's REST API v4 for project deploy tokens.
//! - [`harbor`]: Harbor's v2.0 robot and project API and core's token service.

pub mod gitlab;
pub mod harbor;
mod jwt;
pub mod nexus;

pub use jwt::SignerError;
