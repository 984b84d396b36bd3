//! Turning a policy grant into what the ECR session may do: the session policy that narrows
//! the role's permissions to the granted repositories, and the reuse key.
//!
//! STS intersects the role's permission policy with this session policy, so the temporary
//! credentials (and the ECR authorization token made with them) reach at most the granted
//! repositories, whatever the role allows. The action lists are those of Amazon ECR's user
//! guide ("IAM permissions for pushing an image", and the read-only managed policy for
//! pulls). Pull and push are kept apart per repository: a grant of push alone (a policy that
//! denies pull there) gets the push actions and `ecr:BatchCheckLayerAvailability` (which a push
//! needs to skip layers already there; it reads no content), never the pull actions.

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
/// The IAM actions a pull needs, on the ARNs of the repositories granted pull (the session
/// policy puts [`GET_AUTHORIZATION_TOKEN`] on `*` apart).
pub const PULL_ACTIONS: [&str; 3] = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
];
/// The IAM actions a push needs, on the ARNs of the repositories granted push (a pull's are
/// granted apart).
pub const PUSH_ACTIONS: [&str; 5] = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:CompleteLayerUpload",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
];
/// The resource name of a registry-wide grant (`repository:**`): `repository/*`.
const EVERY_REPOSITORY_RESOURCE: &str = "*";

/// What the session may do: each granted repository (`*` for every one) with its actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EcrGrant {
    /// Repository name (or `*`) to its access; sorted, so equal grants make equal keys.
    pub(crate) repositories: BTreeMap<String, Access>,
}

/// A repository's granted actions (at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Access {
    pub(crate) pull: bool,
    pub(crate) push: bool,
}

impl Access {
    /// `pull`, `push` or `pull,push`: the reuse key's words.
    pub(crate) fn as_str(self) -> &'static str {
        match (self.pull, self.push) {
            (true, true) => "pull,push",
            (false, true) => "push",
            _ => "pull",
        }
    }
}

impl EcrGrant {
    /// `push` when any repository is pushed to, else `pull`: the `{access}` placeholder.
    pub(crate) fn overall_access(&self) -> &'static str {
        if self.repositories.values().any(|a| a.push) {
            "push"
        } else {
            "pull"
        }
    }

    /// The reuse key part of the grant: `team-a/app=pull team-b/lib=pull,push`, sorted.
    pub(crate) fn key(&self) -> String {
        self.repositories
            .iter()
            .map(|(name, access)| format!("{name}={}", access.as_str()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The session policy (compact JSON): `ecr:GetAuthorizationToken` on `*`, the pull
    /// actions on the repositories granted pull, the push actions on those granted push.
    /// `repository_arn_prefix` is `arn:<partition>:ecr:<region>:<account>:repository/`.
    pub(crate) fn session_policy(&self, repository_arn_prefix: &str) -> String {
        let arns = |wanted: fn(&Access) -> bool| -> Vec<Value> {
            self.repositories
                .iter()
                .filter(|(_, access)| wanted(access))
                .map(|(name, _)| Value::from(format!("{repository_arn_prefix}{name}")))
                .collect()
        };
        let mut statements = vec![json!({
            "Effect": "Allow",
            "Action": GET_AUTHORIZATION_TOKEN,
            "Resource": "*",
        })];
        let pulled = arns(|a| a.pull);
        if !pulled.is_empty() {
            statements.push(json!({
                "Effect": "Allow",
                "Action": PULL_ACTIONS,
                "Resource": pulled,
            }));
        }
        let pushed = arns(|a| a.push);
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

/// Each repository scope's name with the actions granted on it (over every scope naming it); a
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
        let pull = actions.contains(&RepositoryAction::Pull);
        let push = actions.contains(&RepositoryAction::Push);
        let name = if scope.is_every_repository() {
            EVERY_REPOSITORY_RESOURCE.to_owned()
        } else {
            scope.name.clone()
        };
        let entry = repositories.entry(name).or_insert(Access {
            pull: false,
            push: false,
        });
        entry.pull |= pull;
        entry.push |= push;
    }
    if repositories.is_empty() {
        return Err(Failure::NoRepository);
    }
    Ok(EcrGrant { repositories })
}
