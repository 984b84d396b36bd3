//! Deciding whether an authenticated SPIFFE ID is allowed: [`Authorizer`] and [`PathPattern`].
//!
//! Authentication (a verified SVID) says *who* a peer is; an [`Authorizer`] says whether that
//! identity is acceptable here. There is deliberately no "allow any" authorizer: every
//! authorizer names what it accepts, and one that could accept nothing still accepts nothing.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::id::{self, IdError, MAX_SPIFFE_ID_LEN, ParseMode, SpiffeId, TrustDomain};

/// Longest path pattern accepted, in bytes (patterns match IDs, which are at most
/// [`MAX_SPIFFE_ID_LEN`] bytes, so nothing useful is longer).
pub const MAX_PATTERN_LEN: usize = MAX_SPIFFE_ID_LEN;

const SCHEME: &str = "spiffe://";

/// Why a path pattern is invalid. Offsets are byte offsets into the pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern is longer than [`MAX_PATTERN_LEN`].
    #[error("pattern is {len} bytes long, the maximum is {max}")]
    TooLong {
        /// Length of the pattern in bytes.
        len: usize,
        /// The cap, [`MAX_PATTERN_LEN`] bytes.
        max: usize,
    },
    /// The pattern does not start with `spiffe://`.
    #[error("pattern must start with \"spiffe://\"")]
    Scheme,
    /// The trust domain contains `*` or `{`: trust domains in patterns are literal.
    #[error("wildcards and captures are not allowed in the trust domain (byte {offset})")]
    WildcardTrustDomain {
        /// Byte offset of the `*` or `{`.
        offset: usize,
    },
    /// The trust domain is not a valid trust domain name.
    #[error("invalid trust domain in pattern: {0}")]
    TrustDomain(IdError),
    /// An empty segment (`//`).
    #[error("empty path segment at byte {offset} in pattern")]
    EmptySegment {
        /// Byte offset where the empty segment starts.
        offset: usize,
    },
    /// The pattern ends with `/`.
    #[error("pattern must not end with '/'")]
    TrailingSlash,
    /// `**` somewhere other than the last segment.
    #[error("\"**\" is only allowed as the last segment (found at byte {offset})")]
    DoubleStarNotLast {
        /// Byte offset of the `**` segment.
        offset: usize,
    },
    /// A segment mixes `*` or `{...}` with other characters (`a*`, `x{n}`).
    #[error("a wildcard or capture must be a whole segment (byte {offset})")]
    PartialWildcard {
        /// Byte offset of the segment.
        offset: usize,
    },
    /// A capture name is not `[a-z_][a-z0-9_]*`.
    #[error("capture name at byte {offset} must match [a-z_][a-z0-9_]*")]
    BadCaptureName {
        /// Byte offset of the `{`.
        offset: usize,
    },
    /// The same capture name appears twice.
    #[error("capture name {name:?} at byte {offset} is used twice")]
    DuplicateCapture {
        /// Byte offset of the second `{`.
        offset: usize,
        /// The repeated capture name, without braces.
        name: String,
    },
    /// A literal segment breaks the SPIFFE ID path rules.
    #[error("invalid literal segment in pattern: {0}")]
    Literal(IdError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    /// `*`: exactly one segment.
    Any,
    /// `{name}`: one segment, captured; the index into `PathPattern::names`.
    Capture(usize),
}

/// A SPIFFE ID pattern such as `spiffe://example.org/ns/{ns}/sa/*`.
///
/// The trust domain is literal. Each path segment is one of:
/// - a literal, compared byte for byte (paths are case-sensitive);
/// - `*`, exactly one segment;
/// - `{name}`, exactly one segment, captured under `name` (`[a-z_][a-z0-9_]*`, unique);
/// - `**`, zero or more trailing segments, allowed only last (so `spiffe://td/a/**` also
///   matches `spiffe://td/a`).
///
/// The pattern is split once at parse time; matching walks the ID's segments without
/// allocating ([`PathPattern::is_match`]), and [`PathPattern::matches`] allocates one small
/// vector only when the pattern has captures.
///
/// ```
/// use svid_broker_identity::{PathPattern, SpiffeId};
///
/// let pattern = PathPattern::parse("spiffe://example.org/ns/{ns}/sa/*")?;
/// let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/web")?;
/// let captures = pattern.matches(&id).expect("matches");
/// assert_eq!(captures.get("ns"), Some("prod"));
/// assert!(!pattern.is_match(&SpiffeId::parse("spiffe://example.org/ns/prod")?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    trust_domain: TrustDomain,
    segments: Vec<Segment>,
    /// Ends with `**`.
    rest: bool,
    names: Vec<Box<str>>,
}

fn is_capture_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((first, rest)) => {
            matches!(first, b'a'..=b'z' | b'_')
                && rest
                    .iter()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        }
        None => false,
    }
}

impl PathPattern {
    /// Parses a pattern.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let bytes = pattern.as_bytes();
        if bytes.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong {
                len: bytes.len(),
                max: MAX_PATTERN_LEN,
            });
        }
        let Some(after) = bytes.strip_prefix(SCHEME.as_bytes()) else {
            return Err(PatternError::Scheme);
        };
        let base = SCHEME.len();
        let td_len = after.iter().position(|&b| b == b'/').unwrap_or(after.len());
        let td_bytes = &after[..td_len];
        if let Some(i) = td_bytes.iter().position(|&b| b == b'*' || b == b'{') {
            return Err(PatternError::WildcardTrustDomain { offset: base + i });
        }
        id::check_trust_domain(td_bytes, base, ParseMode::Strict)
            .map_err(PatternError::TrustDomain)?;
        let trust_domain =
            TrustDomain::parse(&pattern[base..base + td_len]).map_err(PatternError::TrustDomain)?;

        let mut segments = Vec::new();
        let mut names: Vec<Box<str>> = Vec::new();
        let mut double_star_at: Option<usize> = None;
        let path_start = base + td_len;
        if path_start < bytes.len() {
            let mut start = path_start + 1;
            loop {
                let tail = &bytes[start..];
                let len = tail.iter().position(|&b| b == b'/').unwrap_or(tail.len());
                let seg = &tail[..len];
                let is_last = len == tail.len();
                if let Some(offset) = double_star_at {
                    return Err(PatternError::DoubleStarNotLast { offset });
                }
                match seg {
                    b"" if is_last => return Err(PatternError::TrailingSlash),
                    b"" => return Err(PatternError::EmptySegment { offset: start }),
                    b"*" => segments.push(Segment::Any),
                    b"**" => double_star_at = Some(start),
                    [b'{', name @ .., b'}'] => {
                        if !is_capture_name(name) {
                            return Err(PatternError::BadCaptureName { offset: start });
                        }
                        let name = &pattern[start + 1..start + 1 + name.len()];
                        if names.iter().any(|n| **n == *name) {
                            return Err(PatternError::DuplicateCapture {
                                offset: start,
                                name: name.to_owned(),
                            });
                        }
                        segments.push(Segment::Capture(names.len()));
                        names.push(name.into());
                    }
                    _ if seg.iter().any(|&b| matches!(b, b'*' | b'{' | b'}')) => {
                        return Err(PatternError::PartialWildcard { offset: start });
                    }
                    _ => {
                        id::check_segment(seg, start).map_err(PatternError::Literal)?;
                        segments.push(Segment::Literal(pattern[start..start + len].into()));
                    }
                }
                if is_last {
                    break;
                }
                start += len + 1;
            }
        }
        Ok(Self {
            source: pattern.to_owned(),
            trust_domain,
            segments,
            rest: double_star_at.is_some(),
            names,
        })
    }

    /// The pattern's text exactly as given to [`PathPattern::parse`] (`Display` writes it too).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The (literal) trust domain the pattern matches in.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The capture names in the order they appear.
    pub fn capture_names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.names.iter().map(|n| &**n)
    }

    /// True when `id` matches; never allocates.
    pub fn is_match(&self, id: &SpiffeId) -> bool {
        self.walk(id, |_| {})
    }

    /// Matches `id`, returning the captured segments, or `None` when it does not match.
    pub fn matches<'p, 'a>(&'p self, id: &'a SpiffeId) -> Option<Captures<'p, 'a>> {
        let mut values = Vec::with_capacity(self.names.len());
        self.walk(id, |v| values.push(v)).then_some(Captures {
            names: &self.names,
            values,
        })
    }

    /// Walks the pattern over `id`, reporting captured values in capture-index order (captures
    /// are numbered in segment order, so the n-th call is capture n).
    fn walk<'a>(&self, id: &'a SpiffeId, mut capture: impl FnMut(&'a str)) -> bool {
        if id.trust_domain() != &self.trust_domain {
            return false;
        }
        let mut segs = id.segments();
        for pat in &self.segments {
            let Some(seg) = segs.next() else {
                return false;
            };
            match pat {
                Segment::Literal(lit) => {
                    if **lit != *seg {
                        return false;
                    }
                }
                Segment::Any => {}
                Segment::Capture(_) => capture(seg),
            }
        }
        self.rest || segs.next().is_none()
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for PathPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The segments captured by a [`PathPattern`] match, borrowed from the pattern and the ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captures<'p, 'a> {
    names: &'p [Box<str>],
    values: Vec<&'a str>,
}

impl<'p, 'a> Captures<'p, 'a> {
    /// The segment captured under `name`, if the pattern has that capture.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        let i = self.names.iter().position(|n| **n == *name)?;
        self.values.get(i).copied()
    }

    /// `(name, value)` pairs in pattern order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&'p str, &'a str)> + '_ {
        self.names
            .iter()
            .map(|n| &**n)
            .zip(self.values.iter().copied())
    }

    /// Number of captures.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the pattern has no captures.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Why an [`Authorizer`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorizerConfigError {
    /// `OneOf` with no IDs would authorize nobody; that is almost certainly a configuration
    /// mistake, so it is refused rather than silently denying everything.
    #[error("an allow-list of spiffe ids must not be empty")]
    EmptyOneOf,
    /// The pattern does not parse.
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

/// A rule that an authenticated SPIFFE ID must satisfy. There is no "any" variant: fail closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Authorizer {
    /// Exactly this ID.
    Exact(SpiffeId),
    /// One of these IDs. An empty set authorizes nobody; build with [`Authorizer::one_of`] to
    /// have that refused up front.
    OneOf(BTreeSet<SpiffeId>),
    /// Any ID in this trust domain (including the trust domain's own ID).
    MemberOf(TrustDomain),
    /// Any ID matching this pattern.
    Pattern(PathPattern),
}

impl Authorizer {
    /// Allows exactly `id`.
    pub fn exact(id: SpiffeId) -> Self {
        Self::Exact(id)
    }

    /// Allows any of `ids`; an empty list is an error.
    pub fn one_of(ids: impl IntoIterator<Item = SpiffeId>) -> Result<Self, AuthorizerConfigError> {
        let set: BTreeSet<SpiffeId> = ids.into_iter().collect();
        if set.is_empty() {
            return Err(AuthorizerConfigError::EmptyOneOf);
        }
        Ok(Self::OneOf(set))
    }

    /// Allows every ID of `td`.
    pub fn member_of(td: TrustDomain) -> Self {
        Self::MemberOf(td)
    }

    /// Allows IDs matching `pattern` (see [`PathPattern`]).
    pub fn pattern(pattern: &str) -> Result<Self, AuthorizerConfigError> {
        Ok(Self::Pattern(PathPattern::parse(pattern)?))
    }

    /// Checks `id` against the rule.
    pub fn authorize(&self, id: &SpiffeId) -> Result<(), AuthorizeError> {
        let ok = match self {
            Self::Exact(want) => want == id,
            Self::OneOf(set) => set.contains(id),
            Self::MemberOf(td) => id.is_member_of(td),
            Self::Pattern(p) => p.is_match(id),
        };
        if ok {
            return Ok(());
        }
        let id = id.clone();
        Err(match self {
            Self::Exact(expected) => AuthorizeError::NotExact {
                id,
                expected: expected.clone(),
            },
            Self::OneOf(set) => AuthorizeError::NotOneOf {
                id,
                allowed: set.len(),
            },
            Self::MemberOf(td) => AuthorizeError::NotMemberOf {
                id,
                trust_domain: td.clone(),
            },
            Self::Pattern(p) => AuthorizeError::NoPatternMatch {
                id,
                pattern: p.as_str().to_owned(),
            },
        })
    }
}

impl fmt::Display for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(id) => write!(f, "exactly {id}"),
            Self::OneOf(set) => write!(f, "one of {} spiffe ids", set.len()),
            Self::MemberOf(td) => write!(f, "member of trust domain {td}"),
            Self::Pattern(p) => write!(f, "matching {p}"),
        }
    }
}

/// A SPIFFE ID was authenticated but is not authorized; says which rule refused which ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorizeError {
    /// [`Authorizer::Exact`] refused.
    #[error("spiffe id {id} is not authorized: expected exactly {expected}")]
    NotExact {
        /// The authenticated ID that was refused (an ID, not a secret).
        id: SpiffeId,
        /// The only ID allowed.
        expected: SpiffeId,
    },
    /// [`Authorizer::OneOf`] refused.
    #[error("spiffe id {id} is not authorized: not in the allow-list of {allowed} ids")]
    NotOneOf {
        /// The authenticated ID that was refused (an ID, not a secret).
        id: SpiffeId,
        /// Size of the allow-list; the allowed IDs themselves are not in the error.
        allowed: usize,
    },
    /// [`Authorizer::MemberOf`] refused.
    #[error("spiffe id {id} is not authorized: not a member of trust domain {trust_domain}")]
    NotMemberOf {
        /// The authenticated ID that was refused (an ID, not a secret).
        id: SpiffeId,
        /// The trust domain required.
        trust_domain: TrustDomain,
    },
    /// [`Authorizer::Pattern`] refused.
    #[error("spiffe id {id} is not authorized: does not match pattern {pattern}")]
    NoPatternMatch {
        /// The authenticated ID that was refused (an ID, not a secret).
        id: SpiffeId,
        /// The pattern's text, as [`PathPattern::as_str`] gives it.
        pattern: String,
    },
}

impl AuthorizeError {
    /// The SPIFFE ID that was refused, whichever rule refused it (safe to log: IDs are not
    /// secrets).
    pub fn id(&self) -> &SpiffeId {
        match self {
            Self::NotExact { id, .. }
            | Self::NotOneOf { id, .. }
            | Self::NotMemberOf { id, .. }
            | Self::NoPatternMatch { id, .. } => id,
        }
    }
}

#[cfg(test)]
mod tests;
