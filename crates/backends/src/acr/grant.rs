//! Turning a policy grant into what the ACR backend asks for: `pull` or `push`.
//!
//! An ACR refresh token reaches whatever the application's role assignments reach on the
//! registry: the whole registry with `AcrPull`/`AcrPush`, or the repositories an ABAC
//! condition names with the `Container Registry Repository Reader`/`Writer` roles. The broker
//! cannot narrow it below that; the access only picks the reuse key and the `{access}`
//! placeholder of the JWT's subject (so an operator can give push its own credential).

use svid_broker_policy::ResourceScope;

use crate::error::Failure;
use crate::grant::{RepositoryAction, repository_actions};

/// What a grant asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Access {
    /// Only pulls were granted.
    Pull,
    /// Some scope grants `push`.
    Push,
}

impl Access {
    /// `pull` or `push`: the reuse key and the `{access}` placeholder.
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
