//! Fakes of registry back ends that cannot run on a development machine, for the broker's
//! tests and `svid-broker demo`. Each fake enforces the vendor's own rules (read from the
//! vendor's published code, named in each rule's docs) so a test against it proves something.
//!
//! - [`aws`]: AWS STS `AssumeRoleWithWebIdentity` (the JWT verified through the issuer's
//!   discovery document, a role's trust policy) and ECR `GetAuthorizationToken` (SigV4 checked
//!   by the fake's own verifier), with a registry `/v2/` that honours the session policy.
//! - [`azure`]: Entra ID client credentials with a federated client assertion, and ACR's
//!   `/oauth2/exchange` with role assignments.
//! - [`google`]: Google STS token exchange for a workload identity pool provider, IAM
//!   Credentials `generateAccessToken` with `roles/iam.workloadIdentityUser` bindings.
//! - [`artifactory`]: JFrog Artifactory's OIDC token exchange (`/access/api/v1/oidc/token`),
//!   identity mappings, and Docker logins with the access tokens it issues.
//! - [`federation`]: what those registries (and clouds) check of an external OIDC issuer's
//!   JWT, through its discovery document and JWKS fetched over HTTP; and a document host for
//!   tests.
//! - [`gitlab`]: GitLab's REST API v4 for project deploy tokens.
//! - [`harbor`]: Harbor's v2.0 robot and project API and core's token service.
//! - [`nexus`]: Nexus Repository 3's security REST API for local users.
//! - [`quay`]: Quay's robot federation (`/oauth2/federation/robot/token`) and its registry
//!   token realm for robot tokens.

pub mod artifactory;
pub mod aws;
pub mod azure;
pub mod federation;
pub mod gitlab;
pub mod google;
pub mod harbor;
mod http;
mod jwt;
pub mod nexus;
pub mod quay;
mod server;
#[cfg(test)]
mod testing;

pub use jwt::SignerError;

use svid_broker_identity::secret::{SecretString, seal_string};
use zeroize::Zeroizing;

/// `prefix` then `len` random characters from `[a-zA-Z0-9]`, sealed; `None` when the random
/// number generator fails. The passwords, access tokens and `jti`s the fakes make.
fn random_alphanumeric(prefix: &str, len: usize) -> Option<SecretString> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    aws_lc_rs::rand::fill(bytes.as_mut_slice()).ok()?;
    let mut text = Zeroizing::new(String::with_capacity(prefix.len() + len));
    text.push_str(prefix);
    text.extend(
        bytes
            .iter()
            .map(|b| char::from(CHARS[usize::from(*b) % CHARS.len()])),
    );
    Some(seal_string(text))
}
