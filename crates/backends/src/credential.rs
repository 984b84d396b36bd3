//! The types every backend shares: what the policy granted, what the registry made for it,
//! what revoking it takes, and what a sweep did.

use std::time::SystemTime;

use svid_broker_identity::secret::SecretString;
use svid_broker_policy::ResourceScope;

use crate::error::BackendError;

/// What the broker's policy granted one workload at one registry: the input of
/// [`Backend::issue`](crate::Backend::issue).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendGrant {
    /// The registry's name in the policy.
    pub registry: String,
    /// The workload's SPIFFE ID (as authenticated by the broker).
    pub subject: String,
    /// The granted scopes (repository names without a registry host, e.g. `team-a/app`).
    pub scopes: Vec<ResourceScope>,
    /// When the credential must stop working: the broker deletes it then.
    pub revoke_at: SystemTime,
}

impl BackendGrant {
    /// A grant of `scopes` to `subject` at `registry` until `revoke_at`.
    pub fn new(
        registry: impl Into<String>,
        subject: impl Into<String>,
        scopes: Vec<ResourceScope>,
        revoke_at: SystemTime,
    ) -> Self {
        Self {
            registry: registry.into(),
            subject: subject.into(),
            scopes,
            revoke_at,
        }
    }
}

/// A credential the registry made (or one handed out before and still live).
///
/// `Debug` shows every field but the password (`[REDACTED]`); there is no `Display`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackendCredential {
    /// The user name to present to the registry (`robot$team-a+svid-1764...`).
    pub username: String,
    /// The password (the robot's secret).
    pub password: SecretString,
    /// What the audit log records about the credential (`robot 42 robot$team-a+svid-...`);
    /// never the secret.
    pub credential_id: String,
    /// When the broker revokes it: what the caller is told as its expiry. The registry's own
    /// expiry may be later (Harbor's floor is one day); the broker's delete is what ends it.
    pub expires_at: SystemTime,
    /// When the registry itself ends the credential, if the broker cannot end it earlier
    /// (Quay's robot tokens, Artifactory's access tokens): at or after `expires_at`, which is
    /// then only when the broker stops handing it out. `None` where the broker's revocation
    /// at `expires_at` ends it.
    pub registry_expires_at: Option<SystemTime>,
    /// True when this credential was made for an earlier (or concurrent) request and handed
    /// out again.
    pub reused: bool,
    /// What revoking it takes: the registry's id, full name and namespace of the credential.
    pub handle: CredentialHandle,
}

impl BackendCredential {
    /// A credential just made (`reused: false`): what a [`Backend`](crate::Backend)
    /// implementation returns, and what embedders and tests build.
    pub fn new(
        username: impl Into<String>,
        password: SecretString,
        credential_id: impl Into<String>,
        expires_at: SystemTime,
        handle: CredentialHandle,
    ) -> Self {
        Self {
            username: username.into(),
            password,
            credential_id: credential_id.into(),
            expires_at,
            registry_expires_at: None,
            reused: false,
            handle,
        }
    }

    /// The same credential, stated to stay valid at the registry until `at` whatever the
    /// broker does (see [`Self::registry_expires_at`]).
    #[must_use]
    pub fn valid_at_registry_until(mut self, at: SystemTime) -> Self {
        self.registry_expires_at = Some(at);
        self
    }
}

/// What revoking one credential takes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct CredentialHandle {
    /// The registry's numeric id of the credential (Harbor's robot id).
    pub id: i64,
    /// The credential's full name (`robot$team-a+svid-...`).
    pub name: String,
    /// The namespace it lives in (Harbor's project).
    pub namespace: String,
}

impl CredentialHandle {
    /// A handle for credential `id` named `name` in `namespace`.
    pub fn new(id: i64, name: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            id,
            name: name.into(),
            namespace: namespace.into(),
        }
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Namespaces (Harbor projects) whose credentials were listed.
    pub namespaces_listed: usize,
    /// Credentials seen in them (the broker's and everyone else's).
    pub credentials_seen: usize,
    /// The broker's credentials whose revocation time had passed, deleted now (or found gone).
    pub deleted: usize,
    /// The broker's credentials whose revocation time is still ahead, left alone.
    pub not_due: usize,
    /// Namespaces with more credentials than one sweep reads; the rest wait for the next sweep.
    pub truncated: Vec<String>,
    /// What failed (a namespace that could not be listed, a delete that failed); the sweep
    /// went on with the rest.
    pub failures: Vec<BackendError>,
}
