//! The token's claims: the `access` entries and checks on every string that goes into a token.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use svid_broker_identity::limits::{MAX_ACTION_LEN, MAX_REPOSITORY_NAME_LEN};

use crate::error::{Claim, TokenError};

/// Most access entries in one token. Distribution asks for at most three scopes per request
/// (push with a cross-repository mount); 64 leaves room for catalog and batch grants while
/// bounding the token size.
pub const MAX_ACCESS_ENTRIES: usize = 64;
/// Most actions in one access entry.
pub const MAX_ACTIONS_PER_ENTRY: usize = 16;
/// Longest resource type (`repository(plugin)` is 18), in bytes.
pub const MAX_RESOURCE_TYPE_LEN: usize = 64;

/// One entry of the token's `access` claim: a resource and the actions granted on it.
///
/// This is the claim's wire shape only; the policy decides what goes in. `class` is
/// deliberately absent: distribution ignores it when matching and newer specs deprecate it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Access {
    /// The resource type: `repository`, `repository(plugin)` or `registry`.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// The resource name, e.g. `team/app` or `catalog`.
    pub name: String,
    /// The granted actions, e.g. `pull`, `push`, `delete` or `*`.
    pub actions: Vec<String>,
}

impl Access {
    /// An entry for `resource_type:name` with `actions`.
    pub fn new(
        resource_type: impl Into<String>,
        name: impl Into<String>,
        actions: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            resource_type: resource_type.into(),
            name: name.into(),
            actions: actions.into_iter().map(Into::into).collect(),
        }
    }
}

/// Checks every entry and returns the canonical `access` claim: entries sorted by type then
/// name, duplicates of one resource merged, actions sorted and deduplicated, entries without
/// any action dropped (they grant nothing).
pub(crate) fn normalize_access(entries: &[Access]) -> Result<Vec<Access>, TokenError> {
    if entries.len() > MAX_ACCESS_ENTRIES {
        return Err(TokenError::TooManyAccessEntries {
            count: entries.len(),
            max: MAX_ACCESS_ENTRIES,
        });
    }
    let mut merged: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        check_entry(index, entry)?;
        merged
            .entry((&entry.resource_type, &entry.name))
            .or_default()
            .extend(entry.actions.iter().map(String::as_str));
    }
    Ok(merged
        .into_iter()
        .filter(|(_, actions)| !actions.is_empty())
        .map(|((resource_type, name), actions)| Access {
            resource_type: resource_type.to_owned(),
            name: name.to_owned(),
            actions: actions.into_iter().map(str::to_owned).collect(),
        })
        .collect())
}

fn check_entry(index: usize, entry: &Access) -> Result<(), TokenError> {
    if !is_resource_type(&entry.resource_type) {
        return Err(TokenError::InvalidResourceType { index });
    }
    let name = &entry.name;
    if name.is_empty() {
        return Err(TokenError::EmptyResourceName { index });
    }
    if name.len() > MAX_REPOSITORY_NAME_LEN {
        return Err(TokenError::ResourceNameTooLong {
            index,
            len: name.len(),
            max: MAX_REPOSITORY_NAME_LEN,
        });
    }
    // Whitespace would split the name when the realm echoes it as a space-joined `scope`.
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(TokenError::InvalidResourceName { index });
    }
    if entry.actions.len() > MAX_ACTIONS_PER_ENTRY {
        return Err(TokenError::TooManyActions {
            index,
            count: entry.actions.len(),
            max: MAX_ACTIONS_PER_ENTRY,
        });
    }
    for (action_index, action) in entry.actions.iter().enumerate() {
        if !is_action(action) {
            return Err(TokenError::InvalidAction {
                index,
                action_index,
            });
        }
    }
    Ok(())
}

/// `resourcetype := [a-z0-9]+ ['(' [a-z0-9]+ ')']` (distribution scope.md).
fn is_resource_type(s: &str) -> bool {
    fn word(w: &str) -> bool {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    }
    if s.len() > MAX_RESOURCE_TYPE_LEN {
        return false;
    }
    match s.split_once('(') {
        None => word(s),
        Some((base, rest)) => word(base) && rest.strip_suffix(')').is_some_and(word),
    }
}

/// `*`, or `[a-z]+`. The grammar allows an empty action, but it can only be a mistake.
fn is_action(s: &str) -> bool {
    s == "*"
        || (!s.is_empty() && s.len() <= MAX_ACTION_LEN && s.bytes().all(|b| b.is_ascii_lowercase()))
}

/// Checks a string claim: non-empty, at most `max` bytes, no control characters.
pub(crate) fn check_claim(claim: Claim, value: &str, max: usize) -> Result<(), TokenError> {
    if value.is_empty() {
        return Err(TokenError::EmptyClaim { claim });
    }
    if value.len() > max {
        return Err(TokenError::ClaimTooLong {
            claim,
            len: value.len(),
            max,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(TokenError::ClaimControlChar { claim });
    }
    Ok(())
}

/// The claim set in the order distribution's `ClaimSet` declares it.
#[derive(Serialize)]
pub(crate) struct Claims<'a> {
    pub(crate) iss: &'a str,
    pub(crate) sub: &'a str,
    /// One string: distribution 2.8 decodes `aud` into a Go `string` and rejects an array.
    pub(crate) aud: &'a str,
    pub(crate) exp: u64,
    pub(crate) nbf: u64,
    pub(crate) iat: u64,
    pub(crate) jti: &'a str,
    pub(crate) access: &'a [Access],
}

#[cfg(test)]
mod tests;
