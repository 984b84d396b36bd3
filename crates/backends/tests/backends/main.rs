//! The backends against the fakes of their registries' and clouds' APIs (crates/dev `fake`),
//! in one test binary: each module is one backend, `common` the walks they share. One binary
//! rather than one per backend because each would link the fakes and the TLS stack again,
//! which costs gigabytes of disk and minutes of linking on a two-core CI machine.

mod common;

#[cfg(feature = "acr")]
mod acr;
mod artifactory;
#[cfg(feature = "ecr")]
mod ecr;
#[cfg(feature = "gar")]
mod gar;
mod gitlab;
mod harbor;
mod nexus;
mod quay;
mod tls;
