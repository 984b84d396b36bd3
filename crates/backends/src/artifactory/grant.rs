//! Turning a policy grant into what the broker's JWT asks Artifactory for: `pull` or `push`.
//!
//! The access token reaches whatever the matched identity mapping's scope reaches (a user's
//! or a group's permissions): registry-wide, like the Nexus backend's role. The broker only
//! picks which of the operator's two mappings applies, through [`super::ACCESS_CLAIM`]; the
//! policy must only grant Artifactory repositories the workload may reach as a whole.

use svid_broker_policy::ResourceScope;

use crate::error::Failure;
use crate::grant::{RepositoryAction, repository_actions};

/// What the broker's JWT asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Access {
    /// Only pulls were granted.
    Pull,
    /// Some scope grants `push` (the push mapping's scope is expected to include pull).
    Push,
}

impl Access {
    /// `pull` or `push`: the claim's value, the reuse key and the `{access}` placeholder.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
        }
    }
}

/// `push` when any repository scope pushes, else `pull`.
///
/// # Errors
/// [`Failure::UnsupportedResource`] (not `repository`), [`Failure::UnsupportedAction`] (not
/// `pull` or `push`) or [`Failure::NoRepository`].
pub(crate) fn map_grant(scopes: &[ResourceScope]) -> Result<Access, Failure> {
    let actions = repository_actions(scopes, |_| Ok(()))?;
    if actions.is_empty() {
        return Err(Failure::NoRepository);
    }
    Ok(if actions.contains(&RepositoryAction::Push) {
        Access::Push
    } else {
        Access::Pull
    })
}
