//! [`RegistryKind`]: how a registry's credentials are made, named once for the policy file, the
//! server's issuers and the docs.

use std::fmt;

use serde::Deserialize;

/// How the broker makes a credential for a registry (`kind` in the policy file, default
/// `"token"`). The policy decides *what* a subject may do; the kind decides *how* the
/// credential that carries it is made.
///
/// Exhaustive on purpose, like [`crate::Profile`]: the server matches on it to pick an issuer,
/// and a new kind must fail to compile there rather than fall into some other kind's arm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistryKind {
    /// The broker signs registry bearer tokens itself (distribution, zot, any registry whose
    /// `auth.token` trusts the broker's realm).
    #[default]
    Token,
    /// Harbor: a project robot made through `POST /api/v2.0/robots`, deleted at the policy's
    /// lifetime (Harbor's own floor is one day).
    Harbor,
    /// GitLab: a project deploy token with `expires_at`, revoked early at the policy's lifetime.
    Gitlab,
    /// Quay 3.13+: robot federation, with the broker as the OIDC issuer the robot trusts.
    Quay,
    /// Artifactory: the OIDC token exchange, with the broker as the OIDC issuer.
    Artifactory,
    /// Nexus Repository: a local user with a role, deleted at the policy's lifetime.
    Nexus,
    /// Amazon ECR: AWS STS `AssumeRoleWithWebIdentity` with the broker's JWT, a session policy
    /// naming exactly the granted repositories, then ECR `GetAuthorizationToken`.
    Ecr,
    /// Google Artifact Registry: Google STS with the broker's JWT, then a service account's
    /// access token from IAM Credentials.
    Gar,
    /// Azure Container Registry: an Entra ID token for an application whose federated
    /// identity credential trusts the broker, then an ACR refresh token.
    Acr,
}

impl RegistryKind {
    /// Every kind, in a stable order.
    pub const ALL: [Self; 9] = [
        Self::Token,
        Self::Harbor,
        Self::Gitlab,
        Self::Quay,
        Self::Artifactory,
        Self::Nexus,
        Self::Ecr,
        Self::Gar,
        Self::Acr,
    ];

    /// The name used in the policy file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Harbor => "harbor",
            Self::Gitlab => "gitlab",
            Self::Quay => "quay",
            Self::Artifactory => "artifactory",
            Self::Nexus => "nexus",
            Self::Ecr => "ecr",
            Self::Gar => "gar",
            Self::Acr => "acr",
        }
    }

    /// True for `token`: the broker signs the registry's tokens, so the entry needs `issuer`
    /// and `profile` and has no `url`.
    pub const fn is_broker_signed(self) -> bool {
        matches!(self, Self::Token)
    }

    /// Whether the broker needs its own secret for the registry's API (`credential_file`):
    /// Harbor and Nexus (`username:password`) and GitLab (a token); Quay and Artifactory
    /// trust the broker as an OIDC issuer instead, and the token kind needs nothing.
    pub const fn needs_credential_file(self) -> bool {
        matches!(self, Self::Harbor | Self::Gitlab | Self::Nexus)
    }

    /// How much of the registry one of its credentials reaches. A Harbor robot names a project
    /// (the first component of a repository name), a Quay robot an organization (the same
    /// component: a robot lives in one), a GitLab deploy token a project (the first two), a
    /// Nexus user whatever its role reaches, an Artifactory token whatever its identity
    /// mapping's scope reaches, an Artifact Registry token whatever its service account's IAM
    /// bindings reach and an ACR token whatever its application's role assignments reach (the
    /// whole registry, as far as the broker can know); an ECR token reaches exactly the
    /// granted repositories (the STS session policy names them). A grant on
    /// `team-a/app` becomes a credential for all of that. Every rule for such a registry must
    /// therefore be written at that reach (`team-a/**`, `group/project/**`, `**`), so that the
    /// policy means what the registry enforces.
    pub const fn reach(self) -> Reach {
        match self {
            Self::Harbor | Self::Quay => Reach::Project { components: 1 },
            Self::Gitlab => Reach::Project { components: 2 },
            Self::Token | Self::Ecr => Reach::Repository,
            Self::Nexus | Self::Artifactory | Self::Gar | Self::Acr => Reach::Registry,
        }
    }

    /// Whether a request that names no repository (a Docker server URL, a plugin entry with
    /// `scope = "registry"`) can be served with one credential for every repository: the
    /// registry-wide kinds, and ECR, whose session policy can name every repository
    /// (`repository/*`).
    pub const fn serves_every_repository(self) -> bool {
        matches!(self.reach(), Reach::Registry) || matches!(self, Self::Ecr)
    }
}

impl fmt::Display for RegistryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one credential of a registry kind reaches ([`RegistryKind::reach`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Exactly the repositories granted (the broker signs the token, or the registry maps it).
    Repository,
    /// Every repository under the project: the first `components` components of the name.
    Project {
        /// How many leading components name the project (Harbor 1, GitLab 2).
        components: usize,
    },
    /// Every repository of the registry.
    Registry,
}

impl Reach {
    /// What a rule for such a registry must be written as, for error messages.
    pub const fn rule_shape(self) -> &'static str {
        match self {
            Self::Repository => "any repository pattern",
            Self::Project { components: 1 } => {
                "\"<project>/**\" (or \"**\" with whole_registry = true)"
            }
            Self::Project { .. } => {
                "\"<group>/<project>/**\" (or \"**\" with whole_registry = true)"
            }
            Self::Registry => "\"**\" with whole_registry = true",
        }
    }

    /// What one credential reaches, for error messages.
    pub const fn description(self) -> &'static str {
        match self {
            Self::Repository => "the repositories granted",
            Self::Project { .. } => "whole projects",
            Self::Registry => "the whole registry",
        }
    }
}
