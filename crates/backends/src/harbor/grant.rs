//! Turning a policy grant into one Harbor project robot's permissions.
//!
//! Harbor's robot permissions are per project: `repository:pull` in project `team-a` reaches
//! every repository of `team-a`, not just the one the policy named. So a grant maps to a
//! project and an action set, and the policy must only grant Harbor repositories whose whole
//! project the workload may reach. A project robot names exactly one project (robot.go), so a
//! grant across two projects is refused rather than split into two credentials the caller
//! cannot present at once.

use std::collections::BTreeSet;

use svid_broker_policy::{Action, ResourceScope, ResourceType};

use crate::error::{Failure, MAX_LISTED_PROJECTS};

/// The Harbor side of a grant: one project and the repository actions in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProjectGrant {
    /// The project.
    pub(crate) project: String,
    /// The actions, from `pull` and `push`, sorted, at least one.
    pub(crate) actions: BTreeSet<RepositoryAction>,
}

/// A repository action a Harbor robot can hold for the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RepositoryAction {
    Pull,
    Push,
}

impl RepositoryAction {
    /// The action as Harbor's permission spells it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
        }
    }
}

impl ProjectGrant {
    /// What makes two grants the same robot: the project and the action set.
    pub(crate) fn reuse_key(&self) -> String {
        let mut key = self.project.clone();
        for action in &self.actions {
            key.push(' ');
            key.push_str(action.as_str());
        }
        key
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
    let mut projects = BTreeSet::new();
    let mut actions = BTreeSet::new();
    for scope in scopes.iter().filter(|s| !s.actions.is_empty()) {
        if scope.resource_type != ResourceType::Repository {
            return Err(Failure::UnsupportedResource {
                resource_type: scope.resource_type.as_str().to_owned(),
            });
        }
        let project = match scope.name.split_once('/') {
            Some((project, rest)) if !project.is_empty() && !rest.is_empty() => project,
            _ => {
                return Err(Failure::RepositoryOutsideProject {
                    repository: scope.name.clone(),
                });
            }
        };
        for action in &scope.actions {
            actions.insert(repository_action(action)?);
        }
        projects.insert(project.to_owned());
    }
    if projects.len() > 1 {
        return Err(Failure::GrantSpansProjects {
            projects: projects.into_iter().take(MAX_LISTED_PROJECTS).collect(),
        });
    }
    match projects.pop_first() {
        Some(project) => Ok(ProjectGrant { project, actions }),
        None => Err(Failure::NoRepository),
    }
}

fn repository_action(action: &Action) -> Result<RepositoryAction, Failure> {
    if *action == Action::PULL {
        Ok(RepositoryAction::Pull)
    } else if *action == Action::PUSH {
        Ok(RepositoryAction::Push)
    } else {
        Err(Failure::UnsupportedAction {
            action: action.as_str().to_owned(),
        })
    }
}
