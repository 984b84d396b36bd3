//! Repository name patterns such as `team-{ns}/*` or `mirror/**`.
//!
//! SPIFFE IDs are matched by the identity crate's [`PathPattern`]; repository names follow a
//! different grammar (lowercase components, `**` needing at least one component, captures
//! embedded in a component), so they get this small matcher, whose `{name}` captures refer to
//! the captures of the rule's subject pattern.
//!
//! [`PathPattern`]: svid_broker_identity::PathPattern

use std::fmt;

use svid_broker_identity::Captures;

use svid_broker_identity::limits::MAX_REPOSITORY_NAME_LEN;

use crate::scope::{self, NameError};

/// A pattern over repository names, bound to the capture names of one subject pattern.
///
/// Components are separated by `/`; each is one of:
/// - a literal component, compared byte for byte (it must itself be a valid component);
/// - `*`: exactly one component;
/// - `**`: one or more components (at most one `**` per pattern, anywhere);
/// - a template holding exactly one `{name}`, optionally with literal text around it
///   (`team-{ns}`), matching the component equal to that text with the subject's captured
///   value substituted.
///
/// Only one capture per component is allowed: SPIFFE path segments may contain `-`, `.` and
/// `_`, so `{a}-{b}` would let `a=x-y,b=z` and `a=x,b=y-z` claim the same repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryPattern {
    source: String,
    segments: Vec<RepoSegment>,
    /// Index in `segments` where `**` stands (the segments after it match from the end).
    double_star: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RepoSegment {
    Literal(Box<str>),
    Any,
    Template {
        prefix: Box<str>,
        capture: usize,
        suffix: Box<str>,
    },
}

impl RepositoryPattern {
    /// Parses `pattern`; `capture_names` are the subject pattern's captures, in order, and
    /// every `{name}` must be one of them.
    pub fn parse(pattern: &str, capture_names: &[&str]) -> Result<Self, RepoPatternError> {
        if pattern.is_empty() {
            return Err(RepoPatternError::Empty);
        }
        if pattern.len() > MAX_REPOSITORY_NAME_LEN {
            return Err(RepoPatternError::TooLong {
                len: pattern.len(),
                max: MAX_REPOSITORY_NAME_LEN,
            });
        }
        let mut segments = Vec::new();
        let mut double_star = None;
        let mut start = 0;
        for part in pattern.split('/') {
            match part {
                "" => return Err(RepoPatternError::EmptyComponent { offset: start }),
                "*" => segments.push(RepoSegment::Any),
                "**" => {
                    if double_star.is_some() {
                        return Err(RepoPatternError::SecondDoubleStar { offset: start });
                    }
                    double_star = Some(segments.len());
                }
                _ => segments.push(parse_component(part, start, capture_names)?),
            }
            start += part.len() + 1;
        }
        Ok(Self {
            source: pattern.to_owned(),
            segments,
            double_star,
        })
    }

    /// The pattern's text exactly as given to [`RepositoryPattern::parse`].
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the pattern has no literal text and no capture (`*`, `**`, `*/*`, `*/**`...):
    /// it matches every repository of some depth, whoever the subject is.
    pub fn is_registry_wide(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, RepoSegment::Any))
    }

    /// True when the pattern matches every repository under whatever project it matches at
    /// all, the project being the first `components` components: `<p>/**` (one component) or
    /// `<group>/<project>/**` (two), each a literal, a template or `*`; or `**` alone. The
    /// patterns a registry that grants whole projects (Harbor, GitLab) can honour.
    pub fn is_project_wide(&self, components: usize) -> bool {
        match self.double_star {
            Some(0) => self.segments.is_empty(),
            Some(n) => n == components && self.segments.len() == components,
            None => false,
        }
    }

    /// True for `**` alone: every repository of the registry.
    pub fn is_everything(&self) -> bool {
        self.double_star == Some(0) && self.segments.is_empty()
    }

    /// The first component when it is literal text (`team-a` of `team-a/**`), else `None`.
    pub fn literal_first_component(&self) -> Option<&str> {
        if self.double_star == Some(0) {
            return None;
        }
        match self.segments.first()? {
            RepoSegment::Literal(text) => Some(text),
            RepoSegment::Any | RepoSegment::Template { .. } => None,
        }
    }

    /// Indices (into the subject's capture names) of the captures this pattern uses.
    pub fn captures_used(&self) -> impl Iterator<Item = usize> + '_ {
        self.segments.iter().filter_map(|s| match s {
            RepoSegment::Template { capture, .. } => Some(*capture),
            _ => None,
        })
    }

    /// True when `name` matches, with `{name}` templates filled from `captures` (which must
    /// come from the subject pattern this pattern was parsed against). Never allocates.
    pub fn is_match(&self, name: &str, captures: Option<&Captures<'_, '_>>) -> bool {
        let mut components = name.split('/');
        let front = self.double_star.unwrap_or(self.segments.len());
        for seg in &self.segments[..front] {
            match components.next() {
                Some(c) if seg.matches(c, captures) => {}
                _ => return false,
            }
        }
        if self.double_star.is_none() {
            return components.next().is_none();
        }
        for seg in self.segments[front..].iter().rev() {
            match components.next_back() {
                Some(c) if seg.matches(c, captures) => {}
                _ => return false,
            }
        }
        // `**` needs at least one component of its own.
        components.next().is_some()
    }
}

impl RepoSegment {
    fn matches(&self, component: &str, captures: Option<&Captures<'_, '_>>) -> bool {
        match self {
            Self::Literal(lit) => **lit == *component,
            Self::Any => true,
            Self::Template {
                prefix,
                capture,
                suffix,
            } => {
                let Some(value) = captures.and_then(|c| c.iter().nth(*capture).map(|(_, v)| v))
                else {
                    return false;
                };
                component.len() == prefix.len() + value.len() + suffix.len()
                    && component.starts_with(&**prefix)
                    && component.ends_with(&**suffix)
                    && component[prefix.len()..component.len() - suffix.len()] == *value
            }
        }
    }
}

fn parse_component(
    part: &str,
    start: usize,
    capture_names: &[&str],
) -> Result<RepoSegment, RepoPatternError> {
    let bytes = part.as_bytes();
    if let Some(i) = bytes.iter().position(|&b| b == b'*') {
        return Err(RepoPatternError::PartialWildcard { offset: start + i });
    }
    let Some(open) = bytes.iter().position(|&b| b == b'{') else {
        if let Some(i) = bytes.iter().position(|&b| b == b'}') {
            return Err(RepoPatternError::UnbalancedBrace { offset: start + i });
        }
        scope::check_component(bytes, start).map_err(RepoPatternError::Literal)?;
        return Ok(RepoSegment::Literal(part.into()));
    };
    let close = bytes[open..]
        .iter()
        .position(|&b| b == b'}')
        .map(|i| open + i)
        .ok_or(RepoPatternError::UnbalancedBrace {
            offset: start + open,
        })?;
    let prefix = &part[..open];
    let name = &part[open + 1..close];
    let suffix = &part[close + 1..];
    if let Some(i) = prefix.bytes().position(|b| b == b'}') {
        return Err(RepoPatternError::UnbalancedBrace { offset: start + i });
    }
    if let Some(i) = suffix.bytes().position(|b| b == b'{') {
        return Err(RepoPatternError::TwoCapturesInComponent {
            offset: start + close + 1 + i,
        });
    }
    if let Some(i) = suffix.bytes().position(|b| b == b'}') {
        return Err(RepoPatternError::UnbalancedBrace {
            offset: start + close + 1 + i,
        });
    }
    if !is_capture_name(name) {
        return Err(RepoPatternError::BadCaptureName {
            offset: start + open,
        });
    }
    let capture = capture_names
        .iter()
        .position(|n| *n == name)
        .ok_or_else(|| RepoPatternError::UndefinedCapture {
            name: name.to_owned(),
            offset: start + open,
        })?;
    check_template_text(prefix, start)?;
    check_template_text(suffix, start + close + 1)?;
    Ok(RepoSegment::Template {
        prefix: prefix.into(),
        capture,
        suffix: suffix.into(),
    })
}

/// Literal text around a capture may only use component characters; whether the filled-in
/// component is valid depends on the captured value and is settled by the request's name.
fn check_template_text(text: &str, base: usize) -> Result<(), RepoPatternError> {
    for (i, b) in text.bytes().enumerate() {
        if b.is_ascii_uppercase() {
            return Err(RepoPatternError::Literal(NameError::Uppercase {
                offset: base + i,
            }));
        }
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')) {
            return Err(RepoPatternError::Literal(NameError::InvalidChar {
                offset: base + i,
            }));
        }
    }
    Ok(())
}

/// Same rule as the identity crate's pattern captures, so a name valid there is valid here.
fn is_capture_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

impl fmt::Display for RepositoryPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Why a repository pattern is invalid. Offsets are byte offsets into the pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RepoPatternError {
    /// The pattern is empty.
    #[error("repository pattern is empty")]
    Empty,
    /// The pattern is longer than a repository name may be.
    #[error("repository pattern is {len} bytes long, the maximum is {max}")]
    TooLong {
        /// The pattern's length in bytes.
        len: usize,
        /// The cap, [`svid_broker_identity::limits::MAX_REPOSITORY_NAME_LEN`] bytes.
        max: usize,
    },
    /// An empty component (`a//b`, leading or trailing `/`).
    #[error("empty component at byte {offset}")]
    EmptyComponent {
        /// Byte offset where the empty component would start (0, or just after a `/`).
        offset: usize,
    },
    /// More than one `**`.
    #[error("second \"**\" at byte {offset} (at most one per pattern)")]
    SecondDoubleStar {
        /// Where the second `**` starts.
        offset: usize,
    },
    /// `*` mixed with other characters in one component (`app-*`, `***`).
    #[error("'*' must be a whole component (\"*\" or \"**\"), found at byte {offset}")]
    PartialWildcard {
        /// Byte offset of the component's first `*`.
        offset: usize,
    },
    /// A `{` without `}` or a stray `}`.
    #[error("unbalanced brace at byte {offset}")]
    UnbalancedBrace {
        /// Byte offset of the unmatched `{`, or of the stray `}`.
        offset: usize,
    },
    /// Two captures in one component (ambiguous, see [`RepositoryPattern`]).
    #[error("second capture in one component at byte {offset} (captures can be ambiguous)")]
    TwoCapturesInComponent {
        /// Where the second `{` is.
        offset: usize,
    },
    /// A capture name is not `[a-z_][a-z0-9_]*`.
    #[error("capture name at byte {offset} must match [a-z_][a-z0-9_]*")]
    BadCaptureName {
        /// Where the `{` is.
        offset: usize,
    },
    /// The capture is not defined by the rule's subject pattern.
    #[error("undefined capture {{{name}}} at byte {offset}: the subject does not define it")]
    UndefinedCapture {
        /// The capture's name, without braces.
        name: String,
        /// Where the `{` is.
        offset: usize,
    },
    /// Literal text breaks the repository name grammar.
    #[error("invalid literal: {0}")]
    Literal(NameError),
}

#[cfg(test)]
mod tests;
