//! Turning a policy grant into one GitLab project's deploy token scopes.
//!
//! A GitLab container image lives under its project's path: `group/project` itself or
//! `group/project/<image>`. A project deploy token reaches every image of its project, so a
//! grant maps to the project (the first two components of the repository name) and a scope
//! set, and the policy must only grant GitLab repositories whose whole project the workload
//! may reach. A deploy token belongs to one project, so a grant across two projects is refused
//! rather than split into two credentials the caller cannot present at once.
//!
//! Projects in nested subgroups (`group/subgroup/project/...`) cannot be told apart from an
//! image below a two-component project by the name alone; they are out of scope: such a grant
//! maps to the project `group/subgroup`, which GitLab then answers with 404.

use std::collections::BTreeSet;

use svid_broker_policy::ResourceScope;

use crate::error::Failure;
use crate::grant::{RepositoryAction, one_project, reuse_key};

/// The GitLab side of a grant: one project and the deploy token scopes in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProjectGrant {
    /// The project's path, `group/project`.
    pub(crate) project: String,
    /// The scopes, sorted, at least one (`read_registry`, and `write_registry` for push).
    pub(crate) scopes: BTreeSet<RegistryScope>,
}

/// A deploy token scope the broker grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RegistryScope {
    Read,
    Write,
}

impl RegistryScope {
    /// The scope as GitLab's deploy token API spells it (`read_registry`, `write_registry`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read_registry",
            Self::Write => "write_registry",
        }
    }
}

impl ProjectGrant {
    /// What makes two grants the same deploy token: the project and the scope set.
    pub(crate) fn reuse_key(&self) -> String {
        reuse_key(&self.project, self.scopes.iter().map(|s| s.as_str()))
    }
}

/// Maps granted scopes to one project and its deploy token scopes: `pull` is `read_registry`,
/// `push` is `write_registry` and `read_registry` (a push needs to read the blobs it mounts).
/// Scopes with no action grant nothing and are skipped.
///
/// # Errors
/// [`Failure::UnsupportedResource`] (not `repository`), [`Failure::UnsupportedAction`] (not
/// `pull` or `push`), [`Failure::RepositoryOutsideProject`] (fewer than two path components),
/// [`Failure::GrantSpansProjects`] or [`Failure::NoRepository`].
pub(crate) fn map_grant(scopes: &[ResourceScope]) -> Result<ProjectGrant, Failure> {
    let (project, actions) = one_project(scopes, project_of)?;
    // Every action reads; the set is never empty here (a project was found).
    let mut granted = BTreeSet::from([RegistryScope::Read]);
    if actions.contains(&RepositoryAction::Push) {
        granted.insert(RegistryScope::Write);
    }
    Ok(ProjectGrant {
        project,
        scopes: granted,
    })
}

/// `group/project` of `group/project[/image...]`, when both components are non-empty and no
/// component below them is empty.
fn project_of(repository: &str) -> Option<String> {
    let mut parts = repository.split('/');
    let group = parts.next()?;
    let project = parts.next()?;
    if group.is_empty() || project.is_empty() || parts.any(str::is_empty) {
        return None;
    }
    Some(format!("{group}/{project}"))
}
