//! What every backend reads from a policy grant: the `pull`/`push` actions of its repository
//! scopes, and (for per-project credentials) the one project they all fall in.

use std::collections::BTreeSet;

use svid_broker_policy::{Action, ResourceScope, ResourceType};

use crate::error::{Failure, MAX_LISTED_PROJECTS};

/// A repository action a broker credential can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RepositoryAction {
    Pull,
    Push,
}

impl RepositoryAction {
    /// The action as the policy (and Harbor's permission) spells it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
        }
    }
}

/// The actions of every repository scope, checking each scope with `each_repository` (the
/// project rule) before its actions. Scopes with no action grant nothing and are skipped; the
/// set is empty when every scope was skipped.
///
/// # Errors
/// [`Failure::UnsupportedResource`] (not `repository`), what `each_repository` returns, or
/// [`Failure::UnsupportedAction`] (not `pull` or `push`).
pub(crate) fn repository_actions(
    scopes: &[ResourceScope],
    mut each_repository: impl FnMut(&ResourceScope) -> Result<(), Failure>,
) -> Result<BTreeSet<RepositoryAction>, Failure> {
    let mut actions = BTreeSet::new();
    for scope in scopes.iter().filter(|s| !s.actions.is_empty()) {
        if scope.resource_type != ResourceType::Repository {
            return Err(Failure::UnsupportedResource {
                resource_type: scope.resource_type.as_str().to_owned(),
            });
        }
        each_repository(scope)?;
        for action in &scope.actions {
            actions.insert(repository_action(action)?);
        }
    }
    Ok(actions)
}

/// The one project every repository scope falls in, as `project_of` reads it from the
/// repository name, and the actions in it.
///
/// # Errors
/// Those of [`repository_actions`], [`Failure::RepositoryOutsideProject`] (`project_of` found
/// none), [`Failure::GrantSpansProjects`] or [`Failure::NoRepository`].
pub(crate) fn one_project(
    scopes: &[ResourceScope],
    project_of: fn(&str) -> Option<String>,
) -> Result<(String, BTreeSet<RepositoryAction>), Failure> {
    let mut projects = BTreeSet::new();
    let actions = repository_actions(scopes, |scope| {
        let project = project_of(&scope.name).ok_or_else(|| Failure::RepositoryOutsideProject {
            repository: scope.name.clone(),
        })?;
        projects.insert(project);
        Ok(())
    })?;
    if projects.len() > 1 {
        return Err(Failure::GrantSpansProjects {
            projects: projects.into_iter().take(MAX_LISTED_PROJECTS).collect(),
        });
    }
    match projects.pop_first() {
        Some(project) => Ok((project, actions)),
        None => Err(Failure::NoRepository),
    }
}

/// A reuse key: `head` then each of `parts`, space-separated (no leading space when `head` is
/// empty).
pub(crate) fn reuse_key<'a>(head: &str, parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut key = head.to_owned();
    for part in parts {
        if !key.is_empty() {
            key.push(' ');
        }
        key.push_str(part);
    }
    key
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

#[cfg(test)]
mod tests;

/// What a grant asks of a credential that reaches what the registry's own setup reaches
/// (Artifactory's identity mapping, an Artifact Registry service account's bindings, an ACR
/// application's role assignments): only pulls, or some push. The broker cannot narrow such a
/// credential; the access picks which of the operator's credentials applies and keys reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Access {
    /// Only pulls were granted.
    Pull,
    /// Some scope grants `push`.
    Push,
}

impl Access {
    /// `pull` or `push`: a claim's value, the reuse key and the `{access}` placeholder.
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
pub(crate) fn pull_or_push(scopes: &[ResourceScope]) -> Result<Access, Failure> {
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
