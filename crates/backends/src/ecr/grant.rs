//! Turning a policy grant into what the ECR session may do: the session policy that narrows
//! the role's permissions to the granted repositories, and the reuse key.
//!
//! STS intersects the role's permission policy with this session policy, so the temporary
//! credentials (and the ECR authorization token made with them) reach at most the granted
//! repositories, whatever the role allows. The action lists are those of Amazon ECR's user
//! guide ("IAM permissions for pushing an image", and the read-only managed policy for
//! pulls); push includes the pull actions, as `docker push` reads layers and manifests too.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use svid_broker_policy::ResourceScope;

use crate::error::Failure;
use crate::grant::{RepositoryAction, repository_actions};

/// The longest plaintext session policy STS accepts, in characters (the STS API reference:
/// "The plaintext that you use for both inline and managed session policies can't exceed
/// 2,048 characters").
pub const MAX_SESSION_POLICY_CHARS: usize = 2048;
/// The IAM action that makes an ECR authorization token; it has no resource-level
/// permission, so its statement names `*`.
pub const GET_AUTHORIZATION_TOKEN: &str = "ecr:GetAuthorizationToken";
/// The IAM actions of a pull.
pub const PULL_ACTIONS: [&str; 3] = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
];
/// The IAM actions a push adds to [`PULL_ACTIONS`].
pub const PUSH_ACTIONS: [&str; 4] = [
    "ecr:CompleteLayerUpload",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
];
/// The resource name of a registry-wide grant (`repository:**`): `repository/*`.
const EVERY_REPOSITORY_RESOURCE: &str = "*";

/// What the session may do: each granted repository (`*` for every one) with pull or push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EcrGrant {
    /// Repository name (or `*`) to its access; sorted, so equal grants make equal keys.
    pub(crate) repositories: BTreeMap<String, Access>,
}

/// A repository's access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Access {
    Pull,
    Push,
}

impl Access {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
        }
    }
}

impl EcrGrant {
    /// `push` when any repository is pushed to, else `pull`: the `{access}` placeholder.
    pub(crate) fn overall_access(&self) -> Access {
        if self.repositories.values().any(|a| *a == Access::Push) {
            Access::Push
        } else {
            Access::Pull
        }
    }

    /// The reuse key part of the grant: `team-a/app=pull team-b/lib=push`, sorted.
    pub(crate) fn key(&self) -> String {
        self.repositories
            .iter()
            .map(|(name, access)| format!("{name}={}", access.as_str()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The session policy (compact JSON): `ecr:GetAuthorizationToken` on `*`, the pull
    /// actions on every granted repository, the push actions on the pushed ones.
    /// `repository_arn_prefix` is `arn:<partition>:ecr:<region>:<account>:repository/`.
    pub(crate) fn session_policy(&self, repository_arn_prefix: &str) -> String {
        let arns = |only_push: bool| -> Vec<Value> {
            self.repositories
                .iter()
                .filter(|(_, access)| !only_push || **access == Access::Push)
                .map(|(name, _)| Value::from(format!("{repository_arn_prefix}{name}")))
                .collect()
        };
        let mut statements = vec![json!({
            "Effect": "Allow",
            "Action": GET_AUTHORIZATION_TOKEN,
            "Resource": "*",
        })];
        statements.push(json!({
            "Effect": "Allow",
            "Action": PULL_ACTIONS,
            "Resource": arns(false),
        }));
        let pushed = arns(true);
        if !pushed.is_empty() {
            statements.push(json!({
                "Effect": "Allow",
                "Action": PUSH_ACTIONS,
                "Resource": pushed,
            }));
        }
        json!({ "Version": "2012-10-17", "Statement": statements }).to_string()
    }
}

/// Each repository scope's name with pull or push (push when any scope pushes it); a
/// registry-wide scope (`repository:**`) becomes `*`.
///
/// # Errors
/// [`Failure::UnsupportedResource`] (not `repository`), [`Failure::UnsupportedAction`] (not
/// `pull` or `push`) or [`Failure::NoRepository`].
pub(crate) fn map_grant(scopes: &[ResourceScope]) -> Result<EcrGrant, Failure> {
    let mut repositories = BTreeMap::new();
    for scope in scopes {
        let actions = repository_actions(std::slice::from_ref(scope), |_| Ok(()))?;
        if actions.is_empty() {
            continue;
        }
        let access = if actions.contains(&RepositoryAction::Push) {
            Access::Push
        } else {
            Access::Pull
        };
        let name = if scope.is_every_repository() {
            EVERY_REPOSITORY_RESOURCE.to_owned()
        } else {
            scope.name.clone()
        };
        let entry = repositories.entry(name).or_insert(access);
        *entry = (*entry).max(access);
    }
    if repositories.is_empty() {
        return Err(Failure::NoRepository);
    }
    Ok(EcrGrant { repositories })
}
