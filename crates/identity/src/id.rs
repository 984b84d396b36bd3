//! SPIFFE IDs and trust domain names (SPIFFE-ID.md §2).
//!
//! The grammar is checked byte by byte, ASCII only, with no regex and no Unicode folding:
//!
//! ```text
//! spiffe-id    = "spiffe://" trust-domain [ 1*( "/" segment ) ]
//! trust-domain = 1*255( %x61-7A / DIGIT / "." / "_" / "-" )          ; [a-z0-9._-]
//! segment      = 1*( ALPHA / DIGIT / "." / "_" / "-" ), not "." or ".." ; [a-zA-Z0-9._-]
//! ```
//!
//! There is no query, fragment, userinfo, port or percent-encoding, and no trailing `/`.
//!
//! # Choices where the specification leaves room
//!
//! * **Case.** SPIFFE-ID.md §2.1 says the trust domain MUST be lower case while §2.4 calls scheme
//!   and trust domain case-insensitive. [`ParseMode::Strict`] (the default) follows §2.1 the way
//!   go-spiffe and SPIRE do: an upper-case letter in the scheme or trust domain is an error that
//!   names its byte offset. [`ParseMode::LowercaseAscii`] accepts such input and lower-cases the
//!   ASCII letters `A`-`Z` of the scheme and trust domain only; the path is never touched (it is
//!   case-sensitive) and non-ASCII bytes are never folded (so U+212A KELVIN SIGN stays
//!   invalid). The stored ID is always the canonical lower-case form.
//! * **Length.** §2.3 only says implementations must *support* 2048 bytes. We reject longer IDs
//!   ([`MAX_SPIFFE_ID_LEN`]) because an ID is attacker-controlled input (URI SANs, JWT `sub`) and
//!   nothing legitimate is longer. Trust domain names are capped at 255 bytes
//!   ([`MAX_TRUST_DOMAIN_LEN`], the RFC 3986 host limit).
//! * **Names that look like IPs or DNS names** get no special treatment (§2.1): `-x`, `a..b` and
//!   `999.999.999.999` are all valid trust domains.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// Longest SPIFFE ID we accept, in bytes (SPIFFE-ID.md §2.3; longer IDs are rejected).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// Longest trust domain name we accept, in bytes (SPIFFE-ID.md §2.3, the RFC 3986 host limit).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

const SCHEME: &str = "spiffe://";
const SCHEME_LEN: usize = SCHEME.len();

/// How to treat upper-case ASCII letters in the scheme and trust domain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ParseMode {
    /// Reject any upper-case letter in scheme or trust domain (SPIFFE-ID.md §2.1; go-spiffe and
    /// SPIRE do the same).
    #[default]
    Strict,
    /// Lower-case ASCII `A`-`Z` in the scheme and trust domain, then apply the strict rules. The
    /// path keeps its case and non-ASCII bytes are never folded.
    LowercaseAscii,
}

/// Why a string is not a valid SPIFFE ID or trust domain name.
///
/// Offsets are byte offsets into the input as given. Bytes are shown escaped in messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The input is empty.
    #[error("spiffe id is empty")]
    Empty,
    /// The whole ID is longer than [`MAX_SPIFFE_ID_LEN`].
    #[error("spiffe id is {len} bytes long, the maximum is {max}")]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
        /// The cap, [`MAX_SPIFFE_ID_LEN`] bytes.
        max: usize,
    },
    /// There is no `scheme://` at all.
    #[error("missing scheme: a spiffe id starts with \"spiffe://\"")]
    MissingScheme,
    /// The scheme is something other than `spiffe`.
    #[error("wrong scheme: a spiffe id starts with \"spiffe://\"")]
    WrongScheme,
    /// The scheme is `spiffe` but not all lower case (strict mode).
    #[error("scheme must be lower case \"spiffe://\" (strict mode)")]
    UppercaseScheme,
    /// The trust domain name is empty.
    #[error("trust domain is missing")]
    MissingTrustDomain,
    /// The trust domain name is longer than [`MAX_TRUST_DOMAIN_LEN`].
    #[error("trust domain is {len} bytes long, the maximum is {max}")]
    TrustDomainTooLong {
        /// Length of the trust domain name in bytes.
        len: usize,
        /// The cap, [`MAX_TRUST_DOMAIN_LEN`] bytes.
        max: usize,
    },
    /// An upper-case ASCII letter in the trust domain (strict mode).
    #[error("trust domain must be lower case: upper-case letter at byte {offset} (strict mode)")]
    UppercaseTrustDomain {
        /// Byte offset of the letter.
        offset: usize,
    },
    /// A byte outside `[a-z0-9._-]` in the trust domain.
    #[error(
        "trust domain may only contain a-z 0-9 . _ -: found {} at byte {offset}",
        ShownByte(*.byte)
    )]
    BadTrustDomainChar {
        /// Byte offset of the offending byte.
        offset: usize,
        /// The byte itself (a non-ASCII character's first byte); messages show it escaped.
        byte: u8,
    },
    /// The authority has userinfo (`user@`).
    #[error("userinfo ('@' at byte {offset}) is not allowed in a spiffe id")]
    Userinfo {
        /// Byte offset of the `@`.
        offset: usize,
    },
    /// The authority has a port (`:port`).
    #[error("a port (':' at byte {offset}) is not allowed in a spiffe id")]
    Port {
        /// Byte offset of the `:`.
        offset: usize,
    },
    /// A query (`?`).
    #[error("a query ('?' at byte {offset}) is not allowed in a spiffe id")]
    Query {
        /// Byte offset of the `?`.
        offset: usize,
    },
    /// A fragment (`#`).
    #[error("a fragment ('#' at byte {offset}) is not allowed in a spiffe id")]
    Fragment {
        /// Byte offset of the `#`.
        offset: usize,
    },
    /// Percent-encoding (`%`) anywhere.
    #[error("percent-encoding ('%' at byte {offset}) is not allowed in a spiffe id")]
    PercentEncoding {
        /// Byte offset of the `%`.
        offset: usize,
    },
    /// An empty path segment (`//`).
    #[error("empty path segment at byte {offset}")]
    EmptySegment {
        /// Byte offset where the empty segment starts (just after its `/`).
        offset: usize,
    },
    /// A `.` or `..` path segment.
    #[error("path segment \".\" or \"..\" at byte {offset} is not allowed")]
    DotSegment {
        /// Byte offset of the segment.
        offset: usize,
    },
    /// The path ends with `/`.
    #[error("path must not end with '/'")]
    TrailingSlash,
    /// A byte outside `[a-zA-Z0-9._-]` in a path segment.
    #[error(
        "path segments may only contain a-z A-Z 0-9 . _ -: found {} at byte {offset}",
        ShownByte(*.byte)
    )]
    BadPathChar {
        /// Byte offset of the offending byte.
        offset: usize,
        /// The byte itself (a non-ASCII character's first byte); messages show it escaped.
        byte: u8,
    },
    /// A bare trust domain name was expected but the input has a `scheme://`.
    #[error(
        "expected a bare trust domain name such as \"example.org\", found a scheme at byte {offset}"
    )]
    UnexpectedScheme {
        /// Byte offset of the `:` of `://`.
        offset: usize,
    },
    /// A trust domain was expected but the SPIFFE ID has a path.
    #[error("expected a trust domain, but the spiffe id has a path starting at byte {offset}")]
    UnexpectedPath {
        /// Byte offset where the path starts.
        offset: usize,
    },
}

/// Shows a byte for operators: printable ASCII as `'c'`, anything else as `0xNN`, so a message
/// never carries raw control or partial UTF-8 bytes.
struct ShownByte(u8);

impl fmt::Display for ShownByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", char::from(self.0))
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

fn is_td_byte(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-')
}

fn is_path_byte(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-')
}

/// Checks the scheme; `Ok` means `bytes` starts with `spiffe://` (case-folded in lenient mode).
fn check_scheme(bytes: &[u8], mode: ParseMode) -> Result<(), IdError> {
    if bytes.starts_with(SCHEME.as_bytes()) {
        return Ok(());
    }
    if bytes.len() >= SCHEME_LEN && bytes[..SCHEME_LEN].eq_ignore_ascii_case(SCHEME.as_bytes()) {
        return match mode {
            ParseMode::Strict => Err(IdError::UppercaseScheme),
            ParseMode::LowercaseAscii => Ok(()),
        };
    }
    if find_scheme_sep(bytes).is_some() {
        Err(IdError::WrongScheme)
    } else {
        Err(IdError::MissingScheme)
    }
}

fn find_scheme_sep(bytes: &[u8]) -> Option<usize> {
    bytes.windows(3).position(|w| w == b"://")
}

/// Validates a trust domain name found at `bytes[base..]`; offsets in errors are `base + i`.
pub(crate) fn check_trust_domain(name: &[u8], base: usize, mode: ParseMode) -> Result<(), IdError> {
    if name.is_empty() {
        return Err(IdError::MissingTrustDomain);
    }
    // Userinfo and port are reported before single-character faults: "user@host" and
    // "host:443" deserve a message about what they are, not about the first odd byte.
    if let Some(i) = name.iter().position(|&b| b == b'@') {
        return Err(IdError::Userinfo { offset: base + i });
    }
    if let Some(i) = name.iter().position(|&b| b == b':') {
        return Err(IdError::Port { offset: base + i });
    }
    if name.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(IdError::TrustDomainTooLong {
            len: name.len(),
            max: MAX_TRUST_DOMAIN_LEN,
        });
    }
    for (i, &b) in name.iter().enumerate() {
        if is_td_byte(b) || (b.is_ascii_uppercase() && mode == ParseMode::LowercaseAscii) {
            continue;
        }
        let offset = base + i;
        return Err(match b {
            b'A'..=b'Z' => IdError::UppercaseTrustDomain { offset },
            b'%' => IdError::PercentEncoding { offset },
            b'?' => IdError::Query { offset },
            b'#' => IdError::Fragment { offset },
            _ => IdError::BadTrustDomainChar { offset, byte: b },
        });
    }
    Ok(())
}

/// Validates one path segment at `bytes[base..]` (without its leading `/`).
pub(crate) fn check_segment(seg: &[u8], base: usize) -> Result<(), IdError> {
    for (i, &b) in seg.iter().enumerate() {
        if is_path_byte(b) {
            continue;
        }
        let offset = base + i;
        return Err(match b {
            b'%' => IdError::PercentEncoding { offset },
            b'?' => IdError::Query { offset },
            b'#' => IdError::Fragment { offset },
            _ => IdError::BadPathChar { offset, byte: b },
        });
    }
    match seg {
        b"" => Err(IdError::EmptySegment { offset: base }),
        b"." | b".." => Err(IdError::DotSegment { offset: base }),
        _ => Ok(()),
    }
}

/// Validates a path (`""` or `/seg(/seg)*`) found at `bytes[base..]`.
fn check_path(path: &[u8], base: usize) -> Result<(), IdError> {
    if path.is_empty() {
        return Ok(());
    }
    // The authority ends at '/', '?' or '#', so a non-empty path starts with one of those.
    match path[0] {
        b'/' => {}
        b'?' => return Err(IdError::Query { offset: base }),
        _ => return Err(IdError::Fragment { offset: base }),
    }
    let mut start = 1;
    loop {
        let rest = &path[start..];
        let seg_len = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        let seg = &rest[..seg_len];
        let is_last = seg_len == rest.len();
        if seg.is_empty() && is_last {
            return Err(IdError::TrailingSlash);
        }
        check_segment(seg, base + start)?;
        if is_last {
            return Ok(());
        }
        start += seg_len + 1;
    }
}

/// Validates a whole SPIFFE ID; returns the end offset of the trust domain.
fn validate_id(s: &str, mode: ParseMode) -> Result<usize, IdError> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(IdError::Empty);
    }
    if bytes.len() > MAX_SPIFFE_ID_LEN {
        return Err(IdError::TooLong {
            len: bytes.len(),
            max: MAX_SPIFFE_ID_LEN,
        });
    }
    check_scheme(bytes, mode)?;
    let after = &bytes[SCHEME_LEN..];
    let td_len = after
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(after.len());
    check_trust_domain(&after[..td_len], SCHEME_LEN, mode)?;
    let td_end = SCHEME_LEN + td_len;
    check_path(&bytes[td_end..], td_end)?;
    Ok(td_end)
}

/// A validated trust domain name such as `example.org`.
///
/// Equality, ordering and hashing use the name, and [`Borrow<str>`] borrows the name, so a map
/// keyed by `TrustDomain` can be searched with a `&str`.
pub struct TrustDomain {
    // `spiffe://` + name, optionally followed by a path: a `SpiffeId` stores its one string
    // here so that `SpiffeId::trust_domain()` can hand out `&TrustDomain` without a second
    // allocation. Anything after `end` is never part of the trust domain's identity, and
    // `Clone` drops it.
    uri: String,
    end: usize,
}

impl TrustDomain {
    /// Parses a bare trust domain name such as `example.org` (strict mode).
    pub fn parse(name: &str) -> Result<Self, IdError> {
        Self::parse_with(name, ParseMode::Strict)
    }

    /// Parses a bare trust domain name with the given case handling.
    pub fn parse_with(name: &str, mode: ParseMode) -> Result<Self, IdError> {
        let bytes = name.as_bytes();
        if let Some(offset) = find_scheme_sep(bytes) {
            return Err(IdError::UnexpectedScheme { offset });
        }
        check_trust_domain(bytes, 0, mode)?;
        let mut uri = String::with_capacity(SCHEME_LEN + name.len());
        uri.push_str(SCHEME);
        uri.push_str(name);
        uri.make_ascii_lowercase();
        let end = uri.len();
        Ok(Self { uri, end })
    }

    /// Parses either a bare name (`example.org`) or a trust domain's SPIFFE ID
    /// (`spiffe://example.org`), strict mode.
    ///
    /// A SPIFFE ID with a path is rejected ([`IdError::UnexpectedPath`]) rather than cut down to
    /// its trust domain, so that a misplaced workload ID in configuration cannot silently widen
    /// into a whole trust domain.
    pub fn parse_id_or_name(s: &str) -> Result<Self, IdError> {
        Self::parse_id_or_name_with(s, ParseMode::Strict)
    }

    /// [`TrustDomain::parse_id_or_name`] with the given case handling.
    pub fn parse_id_or_name_with(s: &str, mode: ParseMode) -> Result<Self, IdError> {
        if find_scheme_sep(s.as_bytes()).is_none() {
            return Self::parse_with(s, mode);
        }
        let id = SpiffeId::parse_with(s, mode)?;
        if !id.is_trust_domain_id() {
            return Err(IdError::UnexpectedPath { offset: id.td.end });
        }
        Ok(id.td)
    }

    /// The bare name, e.g. `example.org`.
    pub fn as_str(&self) -> &str {
        &self.uri[SCHEME_LEN..self.end]
    }

    /// The trust domain's SPIFFE ID as a string, e.g. `spiffe://example.org` (the key form used
    /// in Workload API bundle maps).
    pub fn id_str(&self) -> &str {
        &self.uri[..self.end]
    }

    /// The trust domain's SPIFFE ID, `spiffe://<name>`.
    pub fn id(&self) -> SpiffeId {
        SpiffeId { td: self.clone() }
    }
}

impl Clone for TrustDomain {
    fn clone(&self) -> Self {
        Self {
            uri: self.uri[..self.end].to_owned(),
            end: self.end,
        }
    }
}

impl PartialEq for TrustDomain {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TrustDomain {}

impl PartialOrd for TrustDomain {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TrustDomain {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for TrustDomain {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Borrow<str> for TrustDomain {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for TrustDomain {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TrustDomain").field(&self.as_str()).finish()
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TrustDomain {
    type Err = IdError;

    /// Same as [`TrustDomain::parse`]: a bare name, strict mode.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for TrustDomain {
    type Error = IdError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

/// A validated SPIFFE ID such as `spiffe://example.org/ns/prod/sa/web`.
///
/// Stored as one canonical string plus the end offset of the trust domain. Equality, ordering
/// and hashing use the whole string, and [`Borrow<str>`] borrows it.
///
/// ```
/// use svid_broker_identity::id::{IdError, ParseMode, SpiffeId};
///
/// let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/web")?;
/// assert_eq!(id.trust_domain().as_str(), "example.org");
/// assert_eq!(id.path(), "/ns/prod/sa/web");
///
/// assert_eq!(
///     SpiffeId::parse("spiffe://Example.org/a"),
///     Err(IdError::UppercaseTrustDomain { offset: 9 })
/// );
/// let lenient = SpiffeId::parse_with("SPIFFE://Example.org/A", ParseMode::LowercaseAscii)?;
/// assert_eq!(lenient.as_str(), "spiffe://example.org/A");
/// # Ok::<(), IdError>(())
/// ```
pub struct SpiffeId {
    td: TrustDomain,
}

impl SpiffeId {
    /// Parses a SPIFFE ID in strict mode.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        Self::parse_with(s, ParseMode::Strict)
    }

    /// Parses a SPIFFE ID with the given case handling.
    pub fn parse_with(s: &str, mode: ParseMode) -> Result<Self, IdError> {
        let end = validate_id(s, mode)?;
        let mut uri = s.to_owned();
        if mode == ParseMode::LowercaseAscii {
            uri[..end].make_ascii_lowercase();
        }
        Ok(Self {
            td: TrustDomain { uri, end },
        })
    }

    /// Parses an owned string in strict mode, reusing its allocation.
    pub fn parse_owned(s: String) -> Result<Self, IdError> {
        let end = validate_id(&s, ParseMode::Strict)?;
        Ok(Self {
            td: TrustDomain { uri: s, end },
        })
    }

    /// Builds `spiffe://<td>/<seg>/<seg>...`, checking each segment on its own (so a segment
    /// containing `/` is rejected, not split). No segments gives the trust domain's ID.
    ///
    /// Error offsets refer to the ID being built.
    pub fn from_segments(td: &TrustDomain, segments: &[&str]) -> Result<Self, IdError> {
        let len = td.end + segments.iter().map(|s| s.len() + 1).sum::<usize>();
        if len > MAX_SPIFFE_ID_LEN {
            return Err(IdError::TooLong {
                len,
                max: MAX_SPIFFE_ID_LEN,
            });
        }
        let mut uri = String::with_capacity(len);
        uri.push_str(td.id_str());
        for seg in segments {
            uri.push('/');
            check_segment(seg.as_bytes(), uri.len())?;
            uri.push_str(seg);
        }
        Ok(Self {
            td: TrustDomain { uri, end: td.end },
        })
    }

    /// The trust domain the ID belongs to: the one whose bundle verifies its SVIDs.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.td
    }

    /// The path: `""` for a trust domain's ID, otherwise `/a/b`.
    pub fn path(&self) -> &str {
        &self.td.uri[self.td.end..]
    }

    /// The whole ID, `spiffe://` + trust domain + path, in its canonical form: scheme and trust
    /// domain lower-case (as required, or as folded by [`ParseMode::LowercaseAscii`]), the path
    /// byte for byte as given. Two IDs are equal exactly when these strings are.
    pub fn as_str(&self) -> &str {
        &self.td.uri
    }

    /// The path segments, without their slashes (none for a trust domain's ID).
    pub fn segments(&self) -> impl DoubleEndedIterator<Item = &str> + '_ {
        let path = self.path();
        // `path` is "" or "/a/b"; skipping the leading '/' makes `split` yield exactly the
        // segments, and filtering the one empty item handles the "" case.
        path.get(1..)
            .unwrap_or("")
            .split('/')
            .filter(|s| !s.is_empty())
    }

    /// True when the path is empty, i.e. this is the ID of a trust domain itself.
    pub fn is_trust_domain_id(&self) -> bool {
        self.td.end == self.td.uri.len()
    }

    /// True when this ID belongs to `td`.
    pub fn is_member_of(&self, td: &TrustDomain) -> bool {
        self.td == *td
    }

    /// Gives back the canonical string.
    pub fn into_string(self) -> String {
        self.td.uri
    }
}

impl Clone for SpiffeId {
    fn clone(&self) -> Self {
        // Not `self.td.clone()`: that would drop the path.
        Self {
            td: TrustDomain {
                uri: self.td.uri.clone(),
                end: self.td.end,
            },
        }
    }
}

impl PartialEq for SpiffeId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SpiffeId {}

impl PartialOrd for SpiffeId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SpiffeId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for SpiffeId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Borrow<str> for SpiffeId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SpiffeId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SpiffeId {
    type Err = IdError;

    /// Same as [`SpiffeId::parse`] (strict mode).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for SpiffeId {
    type Error = IdError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl TryFrom<String> for SpiffeId {
    type Error = IdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse_owned(s)
    }
}

impl From<SpiffeId> for String {
    fn from(id: SpiffeId) -> Self {
        id.into_string()
    }
}

#[cfg(test)]
mod tests;
