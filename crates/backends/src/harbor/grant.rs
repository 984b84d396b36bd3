//! Turning a policy grant into one Harbor project robot's permissions.
//!
//! Harbor's robot permissions are per project: `repository:pull` in project `team-a` reaches
//! every repository of `team-a`, not just the one the policy named. So a grant maps to a
//! project and an action set, and the policy must only grant Harbor repositories whose whole
//! project the workload may reach. A project robot names exactly one project (robot.go), so a
//! grant across two projects is refused rather than split into two credentials the caller
//! cannot present at once.

use std::collections::BTreeSet;

use svid_broker_policy::ResourceScope;

use crate::error::Failure;
pub(crate) use crate::grant::RepositoryAction;
use crate::grant::{one_project, reuse_key};

/// The Harbor side of a grant: one project and the repository actions in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProjectGrant {
    /// The project's name: the part of every granted repository before its first `/`.
    pub(crate) project: String,
    /// The actions, from `pull` and `push`, sorted, at least one.
    pub(crate) actions: BTreeSet<RepositoryAction>,
}

impl ProjectGrant {
    /// What makes two grants the same robot: the project and the action set.
    pub(crate) fn reuse_key(&self) -> String {
        reuse_key(&self.project, self.actions.iter().map(|a| a.as_str()))
    }
}

/// Maps granted scopes to one project and its actions. Scopes with no action grant nothing
/// and are skipped.
///
/// # Errors
/// [`Failure::UnsupportedResource`] (not `repository`), [`Failure::UnsupportedAction`] (not
/// `pull` or `push`), [`Failure::RepositoryOutsideProject`] (no `project/` part),
/// [`Failure::GrantSpansProjects`] or [`Failure::NoRepository`].
pub(crate) fn map_grant(scopes: &[ResourceScope]) -> Result<ProjectGrant, Failure> {
    let (project, actions) = one_project(scopes, project_of)?;
    Ok(ProjectGrant { project, actions })
}

/// `project` of `project/<repository>`, when both parts are non-empty.
fn project_of(repository: &str) -> Option<String> {
    match repository.split_once('/') {
        Some((project, rest)) if !project.is_empty() && !rest.is_empty() => {
            Some(project.to_owned())
        }
        _ => None,
    }
}
