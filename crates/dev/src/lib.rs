//! A development SPIFFE trust domain for tests, demos and machines without SPIRE.
//!
//! - [`DevTrustDomain`]: an in-process P-256 CA that issues X.509-SVIDs and ES256 JWT-SVIDs for a
//!   fixed list of identities, rotates them on demand, and exposes its trust bundle as PEM, as a
//!   SPIFFE bundle document and as the identity crate's bundle types.
//! - [`WorkloadApiServer`]: a real SPIFFE Workload API server on a Unix socket, serving a
//!   [`DevTrustDomain`]; unmodified SPIFFE clients (the `spiffe` crate, go-spiffe, py-spiffe and
//!   other grpc-core clients, whose `:authority` h2 alone would refuse) work against it.
//!
//! Keys live only in memory and are never printed (`Debug` redacts them).
//!
//! ```no_run
//! use std::sync::Arc;
//! use svid_broker_dev::{DevTrustDomain, WorkloadApiServer};
//! use svid_broker_identity::id::{SpiffeId, TrustDomain};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let td = Arc::new(DevTrustDomain::new(
//!     TrustDomain::parse("example.org")?,
//!     [SpiffeId::parse("spiffe://example.org/ns/default/sa/app")?],
//! )?);
//! std::fs::write("bundle.pem", td.bundle_pem())?;
//! std::fs::write("bundle.jwks.json", td.bundle_document_json())?;
//!
//! let server = WorkloadApiServer::start("/tmp/dev-agent", Arc::clone(&td)).await?;
//! // Bound and listening once `start` returns: clients may connect now.
//! println!("ready {}", server.endpoint());
//! server.rotate()?; // every open stream gets the new SVIDs
//! server.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Material for tests: [`DevTrustDomain::issue_x509_svid_at`] and
//! [`DevTrustDomain::issue_jwt_svid_at`] take the issuing time, so expired SVIDs are one call away;
//! [`DevTrustDomain::bundle_set`] feeds the identity crate's validators.
//!
//! [`satoken::DevServiceAccountIssuer`] plays a Kubernetes service-account issuer (JWK Set and
//! projected tokens) for the KEP-4412 service-account token mode.
//!
//! [`registry`] runs Debian's `docker-registry` as a child process configured for the broker's
//! tokens, and [`oci`] writes a one-layer OCI image layout to push through it: the real
//! registry of the demo and the end-to-end tests, with no network.
//!
//! [`fake`] holds fakes of registry back ends that cannot run here: [`fake::harbor`] plays
//! Harbor's robot API and token service, enforcing Harbor's own rules.
//!
//! Runnable example: `examples/workload_api.rs` in this crate
//! (`cargo run -p svid-broker-dev --example workload_api`); the crate's `README.md` sums up
//! what a caller may rely on.

mod ca;
pub mod fake;
mod jwks;
pub mod oci;
pub mod registry;
pub mod satoken;
mod secret;
mod server;

pub use ca::{
    CA_BACKDATE, DEFAULT_CA_TTL, DEFAULT_JWT_SVID_TTL, DEFAULT_REFRESH_HINT, DEFAULT_X509_SVID_TTL,
    DevCaError, DevJwtSvid, DevTrustDomain, DevTrustDomainBuilder, DevX509Svid, MAX_IDENTITIES,
    TtlKind, X509_SVID_BACKDATE,
};
pub use secret::SecretKeyDer;
pub use server::{
    DEFAULT_SOCKET_NAME, MAX_CONCURRENT_STREAMS, MAX_REQUEST_MESSAGE_BYTES, SECURITY_HEADER,
    SHUTDOWN_GRACE, ServerError, WorkloadApiHandle, WorkloadApiServer,
};
pub use svid_broker_identity::secret::{ExposeSecret, SecretString};
