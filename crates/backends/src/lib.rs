//! Native short-lived registry credentials for svid-broker.
//!
//! Some registries cannot trust the broker's own tokens; for them the broker makes a native
//! credential through the registry's API for each grant its policy decided, hands it out, and
//! deletes it at the policy's lifetime. Harbor is the first such backend: a project robot per
//! (workload, project, action set).
//!
//! - [`HarborBackend`] speaks Harbor's v2.0 API: [`HarborBackend::issue`] creates a robot,
//!   [`HarborBackend::revoke`] deletes one, [`HarborBackend::sweep`] deletes the broker's
//!   expired robots, found by the revocation time in their names, so nothing is lost across
//!   restarts and replicas share the state (it is in Harbor).
//! - [`GitlabBackend`] speaks GitLab's REST API v4: a project deploy token (`read_registry`,
//!   plus `write_registry` for push) per (workload, project, scope set), with GitLab's own
//!   `expires_at` at the broker's revocation time and the time in its name for the sweeper.
//! - [`NexusBackend`] speaks Nexus Repository 3's security REST API: a local user with the
//!   operator's pull or push role per (workload, action set), its revocation time in its id.
//! - [`ArtifactoryBackend`] speaks JFrog Access's OIDC token exchange: the broker signs its own
//!   JWT (it is the OIDC provider Artifactory trusts) and trades it for a short access token
//!   per (workload, pull or push); such tokens cannot be revoked, so they live to their expiry.
//! - [`QuayBackend`] speaks Quay 3.13+'s robot federation: the broker signs its own JWT (it is
//!   the OIDC issuer the robot trusts) and exchanges it for a one-hour robot token of the
//!   operator's pull or push robot in the grant's organization; nothing to revoke or sweep.
//! - The cloud registries, each behind its cargo feature, trade the broker's JWT at the cloud's
//!   own STS, so no cloud key exists: `ecr` (feature `ecr`: AWS STS `AssumeRoleWithWebIdentity`
//!   with a session policy naming exactly the granted repositories, then ECR
//!   `GetAuthorizationToken` signed with AWS's `aws-sigv4`), `gar` (feature `gar`: Google STS,
//!   then IAM Credentials `generateAccessToken` for a service account) and `acr` (feature `acr`:
//!   Entra ID client credentials with the JWT as the assertion, then ACR's `/oauth2/exchange`).
//!   None can be revoked one by one; each lives to the cloud's own end.
//! - [`BackendService`] wraps any [`Backend`] for one registry: reuse of live credentials,
//!   one creation for many equal concurrent requests, a bounded lease table, a revocation
//!   queue and periodic sweeps driven by [`BackendService::run`], and [`BackendFigures`] for
//!   `/metrics`.
//! - [`http::ApiClient`] is the small HTTP/1.1 JSON client under every backend: https with
//!   TLS 1.3 (or http to a loopback address only), one deadline per request, capped answers,
//!   a cap on requests in flight.
//! - Every failure is a [`BackendError`] naming the registry, the [`Step`] and the
//!   [`Failure`], and saying whether it is [`retryable`](BackendError::retryable).
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//! use svid_broker_backends::{BackendGrant, BackendService, HarborConfig, ServiceConfig};
//! use svid_broker_identity::clock::SystemClock;
//! use svid_broker_identity::secret::SecretString;
//! use svid_broker_policy::ResourceScope;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let harbor = HarborConfig::new(
//!     "corp",
//!     "https://harbor.example.com",
//!     "admin",
//!     SecretString::from("password".to_owned()),
//! );
//! let service = BackendService::harbor(harbor, ServiceConfig::default())?;
//! service.set_sweep_projects(vec!["team-a".to_owned()]);
//! let (_stop, shutdown) = tokio::sync::watch::channel(false);
//! let runner = service.clone();
//! tokio::spawn(async move { runner.run(Arc::new(SystemClock), shutdown).await });
//!
//! let now = SystemTime::now();
//! let grant = BackendGrant::new(
//!     "corp",
//!     "spiffe://example.org/ns/team-a/sa/app",
//!     vec![ResourceScope::parse("repository:team-a/app:pull")?],
//!     now + Duration::from_secs(900),
//! );
//! let credential = service.issue(grant, now).await?;
//! println!("{} until {:?}", credential.username, credential.expires_at);
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "acr")]
pub mod acr;
mod api;
pub mod artifactory;
mod backend;
mod credential;
#[cfg(feature = "ecr")]
pub mod ecr;
pub mod error;
mod figures;
#[cfg(feature = "gar")]
pub mod gar;
pub mod gitlab;
mod grant;
pub mod harbor;
pub mod http;
mod naming;
pub mod nexus;
pub mod quay;
pub mod service;
mod sweep;
#[cfg(test)]
mod test_support;

#[cfg(feature = "acr")]
pub use acr::{AcrBackend, AcrConfig};
pub use artifactory::{ArtifactoryBackend, ArtifactoryConfig};
pub use backend::Backend;
pub use credential::{BackendCredential, BackendGrant, CredentialHandle, SweepReport};
#[cfg(feature = "ecr")]
pub use ecr::{EcrBackend, EcrConfig};
pub use error::{BackendError, BackendKind, ConfigError, ConfigProblem, Failure, Step};
pub use figures::{ApiMeter, ApiRequestCount, BackendFigures};
#[cfg(feature = "gar")]
pub use gar::{GarBackend, GarConfig};
pub use gitlab::{GitlabBackend, GitlabConfig};
pub use harbor::{HarborBackend, HarborConfig};
pub use nexus::{NexusBackend, NexusConfig};
pub use quay::{QuayBackend, QuayConfig};
pub use service::{BackendService, ServiceConfig};
