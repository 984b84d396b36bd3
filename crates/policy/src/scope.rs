//! The registry scope grammar (distribution's `scope.md`), shared by the policy, the token
//! crate and the HTTP realm.
//!
//! ```text
//! scope         := resourcescope *(' ' resourcescope)
//! resourcescope := resourcetype ':' resourcename ':' action *(',' action)
//! resourcetype  := [a-z0-9]+ ['(' [a-z0-9]+ ')']
//! resourcename  := [host[':' port] '/'] component *('/' component)
//! component     := [a-z0-9]+ *(separator [a-z0-9]+)
//! separator     := '.' | '_' | '__' | '-'+
//! action        := '*' | [a-z]*
//! ```
//!
//! A name may carry `host:port/`, so the type ends at the *first* `:` and the actions start
//! after the *last* `:`; splitting on every `:` would be wrong.
//!
//! Clients send scopes both as repeated parameters (containers/image, `GET`) and space-joined in
//! one parameter (docker, `POST`), so [`parse_scopes`] takes a list of parameters and accepts
//! both at once, merging scopes that name the same resource.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use svid_broker_identity::limits::{MAX_ACTION_LEN, MAX_REPOSITORY_NAME_LEN, MAX_SCOPES};
// Re-exported at their old paths for the server's edges, which import them from here. The
// workspace's one definition (and why each value) is in `svid_broker_identity::limits`;
// `MAX_SCOPES` counts resource scopes before duplicates are merged, and `MAX_SCOPE_PARAMS`
// counts empty parameters too.
pub use svid_broker_identity::limits::{MAX_SCOPE_PARAM_LEN, MAX_SCOPE_PARAMS};

/// Most comma-separated actions accepted in one resource scope (empty ones included).
pub const MAX_ACTIONS_PER_SCOPE: usize = 8;

/// An action on a resource: `pull`, `push`, `delete`, `*`, or another `[a-z]+` word.
///
/// Other words are parsed (the grammar allows them) but no policy rule ever grants them.
/// Ordering is by the action's text, so canonical forms list `*` first, then words
/// alphabetically.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Action(ActionRepr);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ActionRepr {
    Pull,
    Push,
    Delete,
    All,
    // Never holds the text of a known action: `Action::parse` maps those to their variants,
    // which keeps `Eq` consistent with the text-based `Ord`.
    Other(Box<str>),
}

impl Action {
    /// `pull`.
    pub const PULL: Self = Self(ActionRepr::Pull);
    /// `push`.
    pub const PUSH: Self = Self(ActionRepr::Push);
    /// `delete`.
    pub const DELETE: Self = Self(ActionRepr::Delete);
    /// `*`: the registry treats it as every action.
    pub const ALL: Self = Self(ActionRepr::All);

    /// Parses one non-empty action (`*` or `[a-z]+`, at most [`MAX_ACTION_LEN`] bytes).
    pub fn parse(action: &str) -> Result<Self, ScopeError> {
        match action {
            "pull" => Ok(Self::PULL),
            "push" => Ok(Self::PUSH),
            "delete" => Ok(Self::DELETE),
            "*" => Ok(Self::ALL),
            _ if action.len() > MAX_ACTION_LEN => Err(ScopeError::ActionTooLong {
                len: action.len(),
                max: MAX_ACTION_LEN,
            }),
            _ if !action.is_empty() && action.bytes().all(|b| b.is_ascii_lowercase()) => {
                Ok(Self(ActionRepr::Other(action.into())))
            }
            _ => Err(ScopeError::InvalidAction {
                action: action.to_owned(),
            }),
        }
    }

    /// The action's text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            ActionRepr::Pull => "pull",
            ActionRepr::Push => "push",
            ActionRepr::Delete => "delete",
            ActionRepr::All => "*",
            ActionRepr::Other(s) => s,
        }
    }

    /// True for `pull`, `push`, `delete` and `*`, the actions a policy can grant.
    pub fn is_known(&self) -> bool {
        !matches!(self.0, ActionRepr::Other(_))
    }
}

impl Ord for Action {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Action {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The resource types svid-broker understands.
///
/// `repository(plugin)` stays distinct from `repository`: distribution 2.8 compares the type
/// string literally, so a token must echo exactly the type that was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ResourceType {
    /// `registry` (only `registry:catalog:*` means anything).
    Registry,
    /// `repository`.
    Repository,
    /// `repository(plugin)` (docker plugins).
    RepositoryPlugin,
}

impl ResourceType {
    /// The type as it appears in a scope and in a token's `access` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registry => "registry",
            Self::Repository => "repository",
            Self::RepositoryPlugin => "repository(plugin)",
        }
    }

    /// True for `repository` and `repository(plugin)`, which name the same repositories.
    pub fn is_repository(self) -> bool {
        matches!(self, Self::Repository | Self::RepositoryPlugin)
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource scope: `type:name:action[,action...]`.
///
/// `Display` gives the canonical form (actions sorted, duplicates gone), e.g.
/// `repository:team/app:pull,push`. The action set may be empty (`repository:x:` is valid
/// grammar and grants nothing).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceScope {
    /// The resource type as requested (`repository(plugin)` is kept apart from `repository`).
    pub resource_type: ResourceType,
    /// The resource name (a repository name, or `catalog` for the registry type).
    pub name: String,
    /// The actions, sorted and without duplicates; may be empty (then the scope grants
    /// nothing).
    pub actions: BTreeSet<Action>,
}

impl ResourceScope {
    /// Parses one resource scope (no spaces).
    pub fn parse(scope: &str) -> Result<Self, ScopeError> {
        if scope.len() > MAX_SCOPE_PARAM_LEN {
            return Err(ScopeError::ParameterTooLong {
                len: scope.len(),
                max: MAX_SCOPE_PARAM_LEN,
            });
        }
        let malformed = || ScopeError::Malformed {
            scope: scope.to_owned(),
        };
        let first = scope.find(':').ok_or_else(malformed)?;
        let last = scope.rfind(':').ok_or_else(malformed)?;
        if first == last {
            return Err(malformed());
        }
        let type_str = &scope[..first];
        let name = &scope[first + 1..last];
        let actions_str = &scope[last + 1..];

        let resource_type = parse_resource_type(type_str)?;
        check_name(name).map_err(|source| ScopeError::InvalidName {
            name: name.to_owned(),
            source,
        })?;

        let mut actions = BTreeSet::new();
        for (n, action) in actions_str.split(',').enumerate() {
            if n >= MAX_ACTIONS_PER_SCOPE {
                return Err(ScopeError::TooManyActions {
                    scope: scope.to_owned(),
                    max: MAX_ACTIONS_PER_SCOPE,
                });
            }
            // `action := [a-z]*` allows the empty word; it names nothing, so it adds nothing.
            if !action.is_empty() {
                actions.insert(Action::parse(action)?);
            }
        }
        Ok(Self {
            resource_type,
            name: name.to_owned(),
            actions,
        })
    }

    /// True for `registry:catalog:*`-style scopes (type `registry`, name `catalog`).
    pub fn is_catalog(&self) -> bool {
        self.resource_type == ResourceType::Registry && self.name == CATALOG_NAME
    }

    /// The scope `repository:**:<actions>`: these actions on every repository of a registry.
    ///
    /// [`EVERY_REPOSITORY`] is not a repository name ([`Self::parse`] refuses it), so such a
    /// scope never comes from a request and never names a real repository. The policy makes it
    /// only in [`crate::Policy::decide_every_repository`]'s grant, for a registry whose kind's
    /// credentials reach the whole registry anyway ([`crate::Reach::Registry`]); it is never
    /// put in a broker-signed token.
    pub fn every_repository(actions: impl IntoIterator<Item = Action>) -> Self {
        Self {
            resource_type: ResourceType::Repository,
            name: EVERY_REPOSITORY.to_owned(),
            actions: actions.into_iter().collect(),
        }
    }

    /// True for a scope made by [`Self::every_repository`] (type `repository`, name
    /// [`EVERY_REPOSITORY`]).
    pub fn is_every_repository(&self) -> bool {
        self.resource_type == ResourceType::Repository && self.name == EVERY_REPOSITORY
    }
}

/// The resource name of [`ResourceScope::every_repository`]: `**`, the policy's pattern for
/// every repository. Not a valid repository name, so it cannot be confused with one.
pub const EVERY_REPOSITORY: &str = "**";

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.resource_type, self.name)?;
        for (i, action) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(action.as_str())?;
        }
        Ok(())
    }
}

impl FromStr for ResourceScope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The resource name of the registry catalog scope (`registry:catalog:*`).
pub const CATALOG_NAME: &str = "catalog";

/// Parses the `scope` parameters of one request, each holding one or more space-separated
/// resource scopes, and merges scopes naming the same resource (union of actions).
///
/// Empty parameters (an auth-only request) and empty pieces between spaces contribute
/// nothing. The result is sorted by type, then name.
pub fn parse_scopes<'a, I>(params: I) -> Result<Vec<ResourceScope>, ScopeError>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut merged: BTreeMap<(ResourceType, String), BTreeSet<Action>> = BTreeMap::new();
    let mut count = 0usize;
    for (n, param) in params.into_iter().enumerate() {
        if n >= MAX_SCOPE_PARAMS {
            return Err(ScopeError::TooManyParameters {
                max: MAX_SCOPE_PARAMS,
            });
        }
        if param.len() > MAX_SCOPE_PARAM_LEN {
            return Err(ScopeError::ParameterTooLong {
                len: param.len(),
                max: MAX_SCOPE_PARAM_LEN,
            });
        }
        for piece in param.split(' ').filter(|p| !p.is_empty()) {
            count += 1;
            if count > MAX_SCOPES {
                return Err(ScopeError::TooManyScopes { max: MAX_SCOPES });
            }
            let scope = ResourceScope::parse(piece)?;
            merged
                .entry((scope.resource_type, scope.name))
                .or_default()
                .extend(scope.actions);
        }
    }
    Ok(merged
        .into_iter()
        .map(|((resource_type, name), actions)| ResourceScope {
            resource_type,
            name,
            actions,
        })
        .collect())
}

/// Joins scopes with single spaces (the form of the OAuth2 `scope` response field).
pub fn join_scopes(scopes: &[ResourceScope]) -> String {
    let mut out = String::new();
    for (i, scope) in scopes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&scope.to_string());
    }
    out
}

fn parse_resource_type(s: &str) -> Result<ResourceType, ScopeError> {
    let invalid = || ScopeError::InvalidResourceType {
        resource_type: s.to_owned(),
    };
    let is_word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let (base, class) = match s.split_once('(') {
        Some((base, rest)) => (base, Some(rest.strip_suffix(')').ok_or_else(invalid)?)),
        None => (s, None),
    };
    if !is_word(base) || class.is_some_and(|c| !is_word(c)) {
        return Err(invalid());
    }
    match s {
        "repository" => Ok(ResourceType::Repository),
        "repository(plugin)" => Ok(ResourceType::RepositoryPlugin),
        "registry" => Ok(ResourceType::Registry),
        _ => Err(ScopeError::UnsupportedResourceType {
            resource_type: s.to_owned(),
        }),
    }
}

/// Checks a resource name: an optional `host[:port]/` prefix, then `/`-separated components
/// per distribution's reference grammar, at most [`MAX_REPOSITORY_NAME_LEN`] bytes in all.
///
/// The first part counts as a host only when it is not a valid component (it has a port,
/// brackets or capitals) and more components follow; a host such as `example.com` is also a
/// valid component, and either reading accepts the name.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_REPOSITORY_NAME_LEN {
        return Err(NameError::TooLong {
            len: name.len(),
            max: MAX_REPOSITORY_NAME_LEN,
        });
    }
    let bytes = name.as_bytes();
    let mut start = 0;
    let mut first = true;
    loop {
        let len = bytes[start..]
            .iter()
            .position(|&b| b == b'/')
            .unwrap_or(bytes.len() - start);
        let part = &bytes[start..start + len];
        let more = start + len < bytes.len();
        if first && more {
            if let Err(component_err) = check_component(part, start) {
                let looks_like_host = part.iter().any(|&b| b == b':' || b == b'[');
                match check_host(part) {
                    Ok(()) => {}
                    Err(()) if looks_like_host => return Err(NameError::InvalidHost),
                    Err(()) => return Err(component_err),
                }
            }
        } else {
            check_component(part, start)?;
        }
        if !more {
            return Ok(());
        }
        first = false;
        start += len + 1;
    }
}

/// Checks one path component; `base` is its byte offset in the name (for errors).
pub(crate) fn check_component(c: &[u8], base: usize) -> Result<(), NameError> {
    if c.is_empty() {
        return Err(NameError::EmptyComponent { offset: base });
    }
    for (i, &b) in c.iter().enumerate() {
        if b.is_ascii_uppercase() {
            return Err(NameError::Uppercase { offset: base + i });
        }
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')) {
            return Err(NameError::InvalidChar { offset: base + i });
        }
    }
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !is_alnum(c[0]) {
        return Err(NameError::LeadingSeparator { offset: base });
    }
    if !is_alnum(c[c.len() - 1]) {
        return Err(NameError::TrailingSeparator {
            offset: base + c.len() - 1,
        });
    }
    let mut i = 0;
    while i < c.len() {
        if is_alnum(c[i]) {
            i += 1;
            continue;
        }
        let run_start = i;
        while i < c.len() && !is_alnum(c[i]) {
            i += 1;
        }
        let run = &c[run_start..i];
        let ok = matches!(run, b"." | b"_" | b"__") || run.iter().all(|&b| b == b'-');
        if !ok {
            return Err(NameError::BadSeparator {
                offset: base + run_start,
            });
        }
    }
    Ok(())
}

/// True when `h` is a `host[:port]` per distribution's domain grammar.
pub(crate) fn is_host(h: &str) -> bool {
    check_host(h.as_bytes()).is_ok()
}

/// `domain := domain-component ('.' domain-component)* [':' port]` or `'[' ipv6 ']' [':' port]`.
fn check_host(h: &[u8]) -> Result<(), ()> {
    let (host, port) = if let Some(rest) = h.strip_prefix(b"[") {
        let end = rest.iter().position(|&b| b == b']').ok_or(())?;
        let inner = &rest[..end];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(());
        }
        match &rest[end + 1..] {
            [] => return Ok(()),
            [b':', port @ ..] => (None, Some(port)),
            _ => return Err(()),
        }
    } else {
        match h.iter().position(|&b| b == b':') {
            Some(i) => (Some(&h[..i]), Some(&h[i + 1..])),
            None => (Some(h), None),
        }
    };
    if let Some(host) = host {
        for label in host.split(|&b| b == b'.') {
            let ok = match label {
                [] => false,
                [one] => one.is_ascii_alphanumeric(),
                [first, middle @ .., last] => {
                    first.is_ascii_alphanumeric()
                        && last.is_ascii_alphanumeric()
                        && middle
                            .iter()
                            .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
                }
            };
            if !ok {
                return Err(());
            }
        }
    }
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit))
    {
        return Err(());
    }
    Ok(())
}

/// Why a resource name is invalid. Offsets are byte offsets into the name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than [`MAX_REPOSITORY_NAME_LEN`].
    #[error("name is {len} bytes long, the maximum is {max}")]
    TooLong {
        /// The name's length in bytes.
        len: usize,
        /// The cap, [`MAX_REPOSITORY_NAME_LEN`] bytes.
        max: usize,
    },
    /// An empty component (`a//b`, a leading or trailing `/`).
    #[error("empty path component at byte {offset}")]
    EmptyComponent {
        /// Byte offset where the empty component would start (0, or just after a `/`).
        offset: usize,
    },
    /// A capital letter in a path component (repository names are lowercase).
    #[error("uppercase letter at byte {offset} (repository names are lowercase)")]
    Uppercase {
        /// Byte offset of the letter.
        offset: usize,
    },
    /// A character outside `[a-z0-9._-]` in a path component.
    #[error("invalid character at byte {offset}")]
    InvalidChar {
        /// Byte offset of the character's first byte.
        offset: usize,
    },
    /// A component starts with a separator (`.`, `_` or `-`).
    #[error("path component starting at byte {offset} must start with a letter or digit")]
    LeadingSeparator {
        /// Byte offset of the component, which is its leading separator.
        offset: usize,
    },
    /// A component ends with a separator.
    #[error("path component must end with a letter or digit (byte {offset})")]
    TrailingSeparator {
        /// Byte offset of the component's last byte, the separator.
        offset: usize,
    },
    /// A separator other than `.`, `_`, `__` or a run of `-` (for example `..`).
    #[error("invalid separator at byte {offset} (allowed: '.', '_', '__', '-'+)")]
    BadSeparator {
        /// Byte offset of the run's first byte.
        offset: usize,
    },
    /// The first part has a port or brackets but is not a valid `host[:port]`.
    #[error("invalid host[:port] prefix")]
    InvalidHost,
}

/// Why a scope could not be parsed; the realm turns it into a 400.
///
/// Fields holding request text are bounded by [`MAX_SCOPE_PARAM_LEN`] and printed with
/// escapes, so they cannot inject lines into logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// A `scope` parameter is longer than [`MAX_SCOPE_PARAM_LEN`].
    #[error("scope parameter is {len} bytes long, the maximum is {max}")]
    ParameterTooLong {
        /// The parameter's length in bytes (from [`ResourceScope::parse`]: the scope's).
        len: usize,
        /// The cap, [`MAX_SCOPE_PARAM_LEN`] bytes.
        max: usize,
    },
    /// More than [`MAX_SCOPE_PARAMS`] `scope` parameters.
    #[error("more than {max} scope parameters")]
    TooManyParameters {
        /// The cap, [`MAX_SCOPE_PARAMS`] (empty parameters count).
        max: usize,
    },
    /// More than [`MAX_SCOPES`] resource scopes in all.
    #[error("more than {max} resource scopes")]
    TooManyScopes {
        /// The cap, [`MAX_SCOPES`], counted before duplicates are merged.
        max: usize,
    },
    /// A resource scope without two `:` separators.
    #[error("scope {scope:?} is not of the form type:name:actions")]
    Malformed {
        /// The resource scope as sent.
        scope: String,
    },
    /// The type does not match `[a-z0-9]+ ['(' [a-z0-9]+ ')']`.
    #[error("invalid resource type {resource_type:?}")]
    InvalidResourceType {
        /// The text before the scope's first `:`, as sent.
        resource_type: String,
    },
    /// A well-formed type other than `repository`, `repository(plugin)` and `registry`.
    #[error(
        "unsupported resource type {resource_type:?} (expected repository, repository(plugin) or registry)"
    )]
    UnsupportedResourceType {
        /// The well-formed type as sent (`blob`, `repository(foo)`, ...).
        resource_type: String,
    },
    /// The resource name breaks the name grammar.
    #[error("invalid resource name {name:?}")]
    InvalidName {
        /// The text between the scope's first and last `:`, as sent.
        name: String,
        /// Which name rule it breaks, with a byte offset where one applies; also `source()`.
        source: NameError,
    },
    /// An action other than `*` or `[a-z]+`.
    #[error("invalid action {action:?} (expected '*' or lowercase letters)")]
    InvalidAction {
        /// The action as sent, at most [`MAX_ACTION_LEN`] bytes (longer: [`Self::ActionTooLong`]).
        action: String,
    },
    /// An action longer than [`MAX_ACTION_LEN`].
    #[error("action is {len} bytes long, the maximum is {max}")]
    ActionTooLong {
        /// The action's length in bytes (its text is not kept).
        len: usize,
        /// The cap, [`MAX_ACTION_LEN`] bytes.
        max: usize,
    },
    /// More than [`MAX_ACTIONS_PER_SCOPE`] actions in one resource scope.
    #[error("scope {scope:?} has more than {max} actions")]
    TooManyActions {
        /// The resource scope as sent.
        scope: String,
        /// The cap, [`MAX_ACTIONS_PER_SCOPE`] (empty actions count).
        max: usize,
    },
}

#[cfg(test)]
mod tests;
