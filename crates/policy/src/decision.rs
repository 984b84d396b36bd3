//! The outcome of [`crate::Policy::decide`]: the grant, plus a trace of which rules decided
//! each requested scope, for `policy explain` and audit events.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use svid_broker_identity::SpiffeId;

use crate::policy::Registry;
use crate::scope::{self, Action, ResourceScope};

/// A set of the actions a policy can grant (`pull`, `push`, `delete`, `*`), as a bitset so
/// deciding never allocates per rule. Iterates in canonical order: `*`, `delete`, `pull`, `push`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ActionSet(u8);

impl ActionSet {
    const ALL_BIT: u8 = 1;
    const DELETE_BIT: u8 = 2;
    const PULL_BIT: u8 = 4;
    const PUSH_BIT: u8 = 8;
    const ORDER: [(u8, Action); 4] = [
        (Self::ALL_BIT, Action::ALL),
        (Self::DELETE_BIT, Action::DELETE),
        (Self::PULL_BIT, Action::PULL),
        (Self::PUSH_BIT, Action::PUSH),
    ];

    /// No actions.
    pub const EMPTY: Self = Self(0);
    /// What a rule's `*` grants: `pull`, `push`, `delete` and `*` itself.
    pub const EVERYTHING: Self =
        Self(Self::ALL_BIT | Self::DELETE_BIT | Self::PULL_BIT | Self::PUSH_BIT);
    /// Just `*` (what `registry:catalog:*` needs).
    pub const STAR: Self = Self(Self::ALL_BIT);

    fn bit(action: &Action) -> u8 {
        match action.as_str() {
            "*" => Self::ALL_BIT,
            "delete" => Self::DELETE_BIT,
            "pull" => Self::PULL_BIT,
            "push" => Self::PUSH_BIT,
            // Any other `[a-z]+` action is well-formed but no rule can grant it (rules name only
            // these four), so it maps to no bit and is never granted: fail closed.
            _ => 0,
        }
    }

    /// The grantable actions among `actions` (others are dropped).
    pub fn from_actions<'a>(actions: impl IntoIterator<Item = &'a Action>) -> Self {
        Self(actions.into_iter().fold(0, |m, a| m | Self::bit(a)))
    }

    /// True when empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when `action` is in the set.
    pub fn contains(self, action: &Action) -> bool {
        let bit = Self::bit(action);
        bit != 0 && self.0 & bit != 0
    }

    /// The actions, in canonical order.
    pub fn iter(self) -> impl Iterator<Item = Action> {
        Self::ORDER
            .into_iter()
            .filter(move |(bit, _)| self.0 & bit != 0)
            .map(|(_, a)| a)
    }

    /// The actions as a sorted set.
    pub fn to_set(self) -> BTreeSet<Action> {
        self.iter().collect()
    }

    pub(crate) fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub(crate) fn intersect(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    pub(crate) fn minus(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// What a deny rule naming these actions takes away: the actions themselves, and `*` as
    /// soon as any action is denied, because the registry treats `*` as every action (an
    /// allowed `*` would otherwise bring a denied `push` back).
    pub(crate) fn deny_closure(self) -> Self {
        if self.is_empty() {
            self
        } else if self.0 & Self::ALL_BIT != 0 {
            Self::EVERYTHING
        } else {
            Self(self.0 | Self::ALL_BIT)
        }
    }
}

impl fmt::Display for ActionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(a.as_str())?;
        }
        Ok(())
    }
}

/// One rule that took part in deciding one requested scope.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuleHit {
    /// The rule's `id`.
    pub rule: Arc<str>,
    /// The requested actions this rule allowed (for an allow rule) or took away (for a deny
    /// rule).
    pub actions: ActionSet,
}

/// How one requested scope was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScopeTrace {
    /// The scope as the caller requested it (after parsing: actions sorted, duplicates gone).
    pub requested: ResourceScope,
    /// The actions granted for it (possibly none).
    pub granted: ActionSet,
    /// Allow rules that matched and allowed some requested action, sorted by rule id.
    pub allowed_by: Vec<RuleHit>,
    /// Deny rules that matched and took away some requested action, sorted by rule id.
    pub denied_by: Vec<RuleHit>,
}

impl ScopeTrace {
    /// Requested actions that no policy can grant (anything but `pull`, `push`, `delete`, `*`).
    pub fn ungrantable(&self) -> impl Iterator<Item = &Action> {
        self.requested.actions.iter().filter(|a| !a.is_known())
    }

    /// Requested grantable actions that no rule allowed or denied: denied by default.
    pub fn unmatched(&self) -> ActionSet {
        let touched = self
            .allowed_by
            .iter()
            .chain(&self.denied_by)
            .fold(ActionSet::EMPTY, |m, h| m.union(h.actions));
        ActionSet::from_actions(&self.requested.actions).minus(touched)
    }
}

/// The result of [`crate::Policy::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// The registry the request's `service` named (its service, issuer, profile and TTL say
    /// how to mint the token).
    pub registry: Arc<Registry>,
    /// The `subject` given to the [`crate::Policy`] call that made this decision, unchanged.
    pub subject: SpiffeId,
    /// What is granted: the intersection of what was asked and what policy allows, sorted,
    /// merged per resource, without entries left with no action. May be empty.
    pub granted: Vec<ResourceScope>,
    /// One entry per requested scope, in request order.
    pub trace: Vec<ScopeTrace>,
}

impl Decision {
    /// True when nothing was granted (a valid outcome, not an error).
    pub fn is_empty(&self) -> bool {
        self.granted.is_empty()
    }

    /// The granted scopes joined by spaces (the OAuth2 `scope` response field).
    pub fn granted_scope(&self) -> String {
        scope::join_scopes(&self.granted)
    }

    /// Plain-text explanation for `svid-broker policy explain`: the grant, then for each
    /// requested scope the rules that decided it, or "denied by default: no rule matched".
    pub fn explain(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_explain(&mut out);
        out
    }

    fn write_explain(&self, out: &mut String) -> fmt::Result {
        let r = &self.registry;
        writeln!(out, "subject:  {}", self.subject)?;
        match (r.issuer(), r.profile()) {
            (Some(issuer), Some(profile)) => writeln!(
                out,
                "registry: {} (service {}, issuer {}, profile {}, token ttl {}s)",
                r.name(),
                r.service(),
                issuer,
                profile,
                r.token_ttl().as_secs()
            )?,
            _ => writeln!(
                out,
                "registry: {} (service {}, kind {}, credential ttl {}s)",
                r.name(),
                r.service(),
                r.kind(),
                r.token_ttl().as_secs()
            )?,
        }
        if self.granted.is_empty() {
            writeln!(out, "granted:  nothing")?;
        } else {
            writeln!(out, "granted:  {}", self.granted_scope())?;
        }
        if self.trace.is_empty() {
            writeln!(out, "no scopes requested")?;
        }
        for t in &self.trace {
            writeln!(out)?;
            writeln!(out, "requested {}", t.requested)?;
            if t.granted.is_empty() {
                writeln!(out, "  granted: nothing")?;
            } else {
                writeln!(out, "  granted: {}", t.granted)?;
            }
            if t.requested.actions.is_empty() {
                writeln!(out, "  no actions requested")?;
            } else if t.allowed_by.is_empty() && t.denied_by.is_empty() {
                writeln!(out, "  denied by default: no rule matched")?;
            } else {
                for hit in &t.allowed_by {
                    writeln!(out, "  allowed {} by rule {}", hit.actions, hit.rule)?;
                }
                for hit in &t.denied_by {
                    writeln!(out, "  denied {} by rule {}", hit.actions, hit.rule)?;
                }
                let unmatched = t.unmatched();
                if !unmatched.is_empty() {
                    writeln!(out, "  denied {unmatched} by default: no rule matched")?;
                }
            }
            for a in t.ungrantable() {
                writeln!(out, "  denied {a}: not an action policy can grant")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explain())
    }
}
