//! Turning a policy grant into the Quay robot whose token the broker asks for.
//!
//! A Quay robot reaches what its organization gave it: repository permissions (read, write,
//! admin) set by the operator in Quay. The broker cannot narrow a robot's token below them, so
//! a grant maps to an organization (the first component of every repository, `team-a` of
//! `team-a/app`) and to one of two robots there: the pull robot when the grant only pulls,
//! the push robot when any scope pushes. The policy must only grant Quay repositories the
//! chosen robot may reach as a whole. A robot belongs to one organization, so a grant across
//! two is refused rather than split into credentials the caller cannot present at once.

use std::collections::BTreeSet;

use svid_broker_policy::ResourceScope;

use crate::error::Failure;
use crate::grant::{RepositoryAction, one_project};

/// Shortest robot short name Quay accepts (`validate_username`, `util/validation.py`).
pub(crate) const MIN_ROBOT_NAME_LEN: usize = 2;
/// Longest robot short name Quay accepts.
pub(crate) const MAX_ROBOT_NAME_LEN: usize = 255;

/// The Quay side of a grant: one organization and the repository actions in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RobotGrant {
    /// The organization (Quay's namespace).
    pub(crate) org: String,
    /// The actions, from `pull` and `push`, sorted, at least one.
    pub(crate) actions: BTreeSet<RepositoryAction>,
}

impl RobotGrant {
    /// True when any scope asked for `push`: the push robot's token is asked for then.
    pub(crate) fn pushes(&self) -> bool {
        self.actions.contains(&RepositoryAction::Push)
    }

    /// `pull` or `push`: the `{access}` of the subject template.
    pub(crate) fn access(&self) -> &'static str {
        if self.pushes() { "push" } else { "pull" }
    }

    /// The robot's full name, `<org>+<short>`, with `short` the pull or push robot.
    pub(crate) fn robot(&self, pull_robot: &str, push_robot: &str) -> String {
        let short = if self.pushes() {
            push_robot
        } else {
            pull_robot
        };
        format!("{}+{short}", self.org)
    }
}

/// Maps granted scopes to one organization and its actions. Scopes with no action grant
/// nothing and are skipped.
///
/// # Errors
/// [`Failure::UnsupportedResource`] (not `repository`), [`Failure::UnsupportedAction`] (not
/// `pull` or `push`), [`Failure::RepositoryOutsideProject`] (no `org/` part),
/// [`Failure::GrantSpansProjects`] or [`Failure::NoRepository`].
pub(crate) fn map_grant(scopes: &[ResourceScope]) -> Result<RobotGrant, Failure> {
    let (org, actions) = one_project(scopes, org_of)?;
    Ok(RobotGrant { org, actions })
}

/// `org` of `org/<repository>`, when both parts are non-empty: Quay repositories are always
/// `namespace/name` (a name may hold further `/`).
fn org_of(repository: &str) -> Option<String> {
    match repository.split_once('/') {
        Some((org, rest)) if !org.is_empty() && !rest.is_empty() => Some(org.to_owned()),
        _ => None,
    }
}

/// True when `name` is a robot short name Quay can hold: runs of `[a-z0-9]` joined by single
/// `.`, `_` or `-`, 2 to 255 characters (`VALID_USERNAME_REGEX` and the length bounds of
/// `validate_username`, which `create_robot` applies). Such a name has no `+` or `:`, so
/// `<org>+<short>` parses back and fits a Basic user name.
pub(crate) fn valid_robot_name(name: &str) -> bool {
    if !(MIN_ROBOT_NAME_LEN..=MAX_ROBOT_NAME_LEN).contains(&name.len()) {
        return false;
    }
    let mut previous_was_separator = true; // No separator first.
    for byte in name.bytes() {
        let separator = matches!(byte, b'.' | b'_' | b'-');
        if separator && previous_was_separator {
            return false;
        }
        if !separator && !byte.is_ascii_lowercase() && !byte.is_ascii_digit() {
            return false;
        }
        previous_was_separator = separator;
    }
    !previous_was_separator
}
