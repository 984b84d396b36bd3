//! Turning a policy grant into the Nexus role a broker user gets.
//!
//! A Nexus user reaches whatever its roles reach: the broker hands out one of two roles the
//! operator made (pull, or pull and push, on the Docker repository), so the granularity is the
//! whole registry per action set. The policy must only grant Nexus repositories the workload
//! may reach as a whole through that role; the broker cannot narrow below it.

use std::collections::BTreeSet;

use svid_broker_policy::ResourceScope;

use crate::error::Failure;
use crate::grant::{RepositoryAction, repository_actions, reuse_key};

/// The Nexus side of a grant: the repository actions over every granted scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserGrant {
    /// The actions, from `pull` and `push`, sorted, at least one.
    pub(crate) actions: BTreeSet<RepositoryAction>,
}

impl UserGrant {
    /// True when any scope asked for `push`: the user then gets the push role.
    pub(crate) fn pushes(&self) -> bool {
        self.actions.contains(&RepositoryAction::Push)
    }

    /// What makes two grants the same user: the action set (`pull`, `pull push`, `push`).
    pub(crate) fn reuse_key(&self) -> String {
        reuse_key("", self.actions.iter().map(|a| a.as_str()))
    }
}

/// Collects the actions of every repository scope. Scopes with no action grant nothing and are
/// skipped.
///
/// # Errors
/// [`Failure::UnsupportedResource`] (not `repository`), [`Failure::UnsupportedAction`] (not
/// `pull` or `push`) or [`Failure::NoRepository`].
pub(crate) fn map_grant(scopes: &[ResourceScope]) -> Result<UserGrant, Failure> {
    let actions = repository_actions(scopes, |_| Ok(()))?;
    if actions.is_empty() {
        return Err(Failure::NoRepository);
    }
    Ok(UserGrant { actions })
}
