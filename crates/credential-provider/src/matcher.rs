//! The kubelet's `matchImages` rule (`credentialprovider.URLsMatchStr`), reimplemented:
//!
//! 1. Both strings are parsed as URLs after prefixing `https://` (Go `net/url` rules: `#` starts a
//!    fragment and `?` a query, both dropped; the authority ends at the first `/`; userinfo
//!    before the last `@` is ignored; `%xx` escapes are decoded in the path and refused in the
//!    host). A parse error is no match (and a config error for a pattern).
//! 2. The host is split into `.` labels and a port (Go `net.SplitHostPort`; no port = `""`).
//! 3. Ports must be equal strings; label counts must be equal; each pattern label is a Go
//!    `filepath.Match` glob against the image label (`*` within one label, `?`, `[a-z]`
//!    classes, `\` escapes).
//! 4. The image path must start with the pattern path: a plain string prefix, no glob, no
//!    segment boundary.
//! 5. Case-sensitive everywhere.

use std::fmt;

/// Why a pattern or image does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum MatchError {
    /// An ASCII control character (Go refuses them anywhere in a URL).
    #[error("invalid control character in url")]
    ControlCharacter,
    /// A character Go does not allow in a host name.
    #[error("invalid character {0:?} in host name")]
    HostCharacter(char),
    /// A `%` escape in the host, which Go refuses for registry names.
    #[error("percent escape in host name")]
    HostEscape,
    /// A bad `%xx` escape in the path.
    #[error("invalid url escape in path")]
    PathEscape,
    /// The text after the last `:` of the host is not a port.
    #[error("invalid port {0:?} after host")]
    InvalidPort(String),
    /// An IPv6 literal without its closing `]`.
    #[error("missing ']' in host")]
    UnclosedBracket,
    /// A host label of the pattern whose glob cannot be parsed (an unclosed `[`, a bad range).
    #[error("syntax error in pattern")]
    BadPattern,
}

/// An image or pattern as the matcher sees it: no scheme, the host split into labels, the path
/// decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemelessUrl {
    /// Host labels (split on `.`).
    pub(crate) labels: Vec<String>,
    /// The port text, `""` when none.
    pub(crate) port: String,
    /// The decoded path, `""` or starting with `/`.
    pub(crate) path: String,
}

impl fmt::Display for SchemelessUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.labels.join("."))?;
        if !self.port.is_empty() {
            write!(f, ":{}", self.port)?;
        }
        f.write_str(&self.path)
    }
}

/// Parses `text` the way `ParseSchemelessURL` does.
pub(crate) fn parse(text: &str) -> Result<SchemelessUrl, MatchError> {
    if text.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(MatchError::ControlCharacter);
    }
    let rest = text.split_once('#').map_or(text, |(before, _)| before);
    let rest = rest.split_once('?').map_or(rest, |(before, _)| before);
    let (authority, raw_path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    check_host(host)?;
    let (name, port) = split_host_port(host);
    Ok(SchemelessUrl {
        labels: name.split('.').map(str::to_owned).collect(),
        port,
        path: unescape_path(raw_path)?,
    })
}

/// Go's `parseHost` checks: bracketed IPv6 literals, a valid optional port, host characters.
fn check_host(host: &str) -> Result<(), MatchError> {
    let checked = if let Some(inner) = host.strip_prefix('[') {
        let close = inner.find(']').ok_or(MatchError::UnclosedBracket)?;
        let after = &inner[close + 1..];
        if !after.is_empty() {
            valid_port(after)?;
        }
        &inner[..close]
    } else {
        if let Some(i) = host.rfind(':') {
            valid_port(&host[i..])?;
        }
        host
    };
    for c in checked.chars() {
        if c == '%' {
            return Err(MatchError::HostEscape);
        }
        if c.is_ascii() && !host_char_allowed(c) {
            return Err(MatchError::HostCharacter(c));
        }
    }
    Ok(())
}

/// `:` followed by digits only (Go `validOptionalPort`).
fn valid_port(colon_port: &str) -> Result<(), MatchError> {
    match colon_port.strip_prefix(':') {
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(MatchError::InvalidPort(colon_port.to_owned())),
    }
}

/// Go `shouldEscape(c, encodeHost) == false`.
fn host_char_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '_'
                | '.'
                | '~'
                | '!'
                | '$'
                | '&'
                | '\''
                | '('
                | ')'
                | '*'
                | '+'
                | ','
                | ';'
                | '='
                | ':'
                | '['
                | ']'
                | '<'
                | '>'
                | '"'
        )
}

/// Go `net.SplitHostPort`, falling back to (whole host, "") on its errors as the kubelet does.
fn split_host_port(host: &str) -> (String, String) {
    let whole = || (host.to_owned(), String::new());
    if let Some(inner) = host.strip_prefix('[') {
        return match inner.split_once(']') {
            Some((name, rest)) => match rest.strip_prefix(':') {
                Some(port) if !port.contains(':') => (name.to_owned(), port.to_owned()),
                _ => whole(),
            },
            None => whole(),
        };
    }
    match host.split_once(':') {
        Some((name, port)) if !port.contains(':') => (name.to_owned(), port.to_owned()),
        _ => whole(),
    }
}

fn unescape_path(raw: &str) -> Result<String, MatchError> {
    if !raw.contains('%') {
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(MatchError::PathEscape)?;
            let hi = (hex[0] as char)
                .to_digit(16)
                .ok_or(MatchError::PathEscape)?;
            let lo = (hex[1] as char)
                .to_digit(16)
                .ok_or(MatchError::PathEscape)?;
            out.push(u8::try_from(hi * 16 + lo).map_err(|_| MatchError::PathEscape)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| MatchError::PathEscape)
}

/// `URLsMatchStr(pattern, image)`.
pub(crate) fn matches(pattern: &str, image: &str) -> Result<bool, MatchError> {
    let glob = parse(pattern)?;
    let target = parse(image)?;
    urls_match(&glob, &target)
}

/// `URLsMatch` on parsed URLs.
pub(crate) fn urls_match(glob: &SchemelessUrl, target: &SchemelessUrl) -> Result<bool, MatchError> {
    if glob.port != target.port || glob.labels.len() != target.labels.len() {
        return Ok(false);
    }
    for (p, t) in glob.labels.iter().zip(&target.labels) {
        if !glob_match(p, t)? {
            return Ok(false);
        }
    }
    Ok(target.path.starts_with(&glob.path))
}

/// Go `filepath.Match` on Unix (separator `/`). The whole pattern is checked for syntax first,
/// so a malformed pattern is an error whatever the name.
pub(crate) fn glob_match(pattern: &str, name: &str) -> Result<bool, MatchError> {
    let p: Vec<char> = pattern.chars().collect();
    check_glob(&p)?;
    let n: Vec<char> = name.chars().collect();
    Ok(glob_at(&p, &n))
}

fn check_glob(p: &[char]) -> Result<(), MatchError> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err(MatchError::BadPattern);
                }
                i += 2;
            }
            '[' => i = class_end(p, i + 1)?.1,
            _ => i += 1,
        }
    }
    Ok(())
}

/// Parses the class starting after `[` at `start`; returns (items, index after `]`).
#[allow(
    clippy::type_complexity,
    reason = "private helper, the tuple is documented"
)]
fn class_end(p: &[char], start: usize) -> Result<(bool, usize, Vec<(char, char)>), MatchError> {
    let mut i = start;
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if p.get(i) == Some(&']') && !ranges.is_empty() {
            return Ok((negated, i + 1, ranges));
        }
        let (lo, next) = class_char(p, i)?;
        i = next;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            let (h, next) = class_char(p, i + 1)?;
            hi = h;
            i = next;
        }
        if lo > hi {
            return Err(MatchError::BadPattern);
        }
        ranges.push((lo, hi));
    }
}

fn class_char(p: &[char], i: usize) -> Result<(char, usize), MatchError> {
    match p.get(i) {
        None | Some('-' | ']') => Err(MatchError::BadPattern),
        Some('\\') => p
            .get(i + 1)
            .map(|c| (*c, i + 2))
            .ok_or(MatchError::BadPattern),
        Some(c) => Ok((*c, i + 1)),
    }
}

fn glob_at(p: &[char], n: &[char]) -> bool {
    let Some(&first) = p.first() else {
        return n.is_empty();
    };
    match first {
        '*' => {
            // Any run of non-separator characters, shortest first.
            for k in 0..=n.len() {
                if glob_at(&p[1..], &n[k..]) {
                    return true;
                }
                if k < n.len() && n[k] == '/' {
                    break;
                }
            }
            false
        }
        '?' => !n.is_empty() && n[0] != '/' && glob_at(&p[1..], &n[1..]),
        '[' => {
            let Ok((negated, end, ranges)) = class_end(p, 1) else {
                return false;
            };
            let Some(&c) = n.first() else {
                return false;
            };
            let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
            c != '/' && inside != negated && glob_at(&p[end..], &n[1..])
        }
        '\\' => p.get(1).is_some_and(|&e| n.first() == Some(&e)) && glob_at(&p[2..], &n[1..]),
        c => n.first() == Some(&c) && glob_at(&p[1..], &n[1..]),
    }
}

/// Whether a pattern's path part contains glob characters, which the kubelet never expands:
/// such a pattern only matches images whose path literally contains them (in practice never).
pub(crate) fn path_has_glob(pattern: &SchemelessUrl) -> bool {
    pattern.path.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table from the reference note (kubelet keyring tests and documented examples).
    #[test]
    fn match_images_table() {
        let cases: &[(&str, &str, bool)] = &[
            // Exact and glob hosts.
            ("gcr.io", "gcr.io/project/app", true),
            ("*.azurecr.io", "myreg.azurecr.io/app", true),
            ("*.azurecr.io", "azurecr.io/app", false),
            ("*.io", "a.k8s.io/x", false),
            ("*.*.registry.io", "a.b.registry.io/x", true),
            ("*.*.registry.io", "a.registry.io/x", false),
            ("app*.k8s.io", "app1.k8s.io/x", true),
            ("app*.k8s.io", "bpp1.k8s.io/x", false),
            ("*registry.io", "myregistry.io/x", true),
            (
                "123456789.dkr.ecr.us-east-1.amazonaws.com",
                "123456789.dkr.ecr.us-east-1.amazonaws.com/app",
                true,
            ),
            // Ports must be equal strings.
            ("registry.io:8080/path", "registry.io:8080/path/app", true),
            ("registry.io:8080", "registry.io/app", false),
            ("registry.io", "registry.io:8080/app", false),
            (
                "prefix.*.io/foo",
                "prefix.kubernetes.io:1111/foo/bar",
                false,
            ),
            ("127.0.0.1:5000", "127.0.0.1:5000/team/app", true),
            ("127.0.0.1:5000", "127.0.0.1:5001/team/app", false),
            // Plain path prefix, no segment boundary, no glob.
            ("reg.io/team-a", "reg.io/team-ab/x", true),
            ("reg.io/team-a", "reg.io/team-b/x", false),
            ("reg.io/*", "reg.io/team/app", false),
            ("reg.io/", "reg.io", false),
            ("reg.io", "reg.io", true),
            // Case-sensitive.
            ("Reg.io", "reg.io/app", false),
            ("reg.io/Team", "reg.io/team/app", false),
            // A query ends the host: never matches.
            ("k?s.io", "k8s.io/x", false),
            // Scheme prefixes are not stripped for matchImages.
            ("https://registry.io", "registry.io/app", false),
            // Character classes within a label.
            ("reg[0-9].io", "reg7.io/x", true),
            ("reg[a-c].io", "reg7.io/x", false),
            // Userinfo is ignored, the fragment dropped.
            ("user@reg.io", "reg.io/x", true),
            ("reg.io#frag", "reg.io/x", true),
        ];
        for &(pattern, image, want) in cases {
            assert_eq!(matches(pattern, image), Ok(want), "{pattern} vs {image}");
        }
    }

    #[test]
    fn invalid_patterns_are_errors() {
        assert_eq!(matches("%invalid%", "x"), Err(MatchError::HostEscape));
        assert_eq!(
            matches("reg.io/%zz", "reg.io/x"),
            Err(MatchError::PathEscape)
        );
        assert!(matches("reg.io:abc", "reg.io/x").is_err());
        assert!(matches("reg io", "reg.io/x").is_err());
        assert!(matches("reg[.io", "reg.io/x").is_err());
        assert!(matches("reg\\", "reg.io/x").is_err());
        assert!(matches("[::1", "x").is_err());
        // Go refuses `^` in host names, so negated classes cannot be written there.
        assert_eq!(
            matches("reg[^0-9].io", "reg7.io/x"),
            Err(MatchError::HostCharacter('^'))
        );
        assert!(matches("reg\u{7}.io", "x").is_err());
        assert_eq!(matches("reg.io", "reg.io/x"), Ok(true));
    }

    #[test]
    fn path_escapes_are_decoded_before_the_prefix_check() {
        assert_eq!(matches("reg.io/te%61m", "reg.io/team/app"), Ok(true));
        assert_eq!(matches("reg.io/team", "reg.io/te%61m/app"), Ok(true));
    }

    #[test]
    fn ipv6_and_odd_ports() {
        assert_eq!(matches("[::1]:5000", "[::1]:5000/app"), Ok(true));
        assert_eq!(matches("[::1]:5000", "[::1]:5001/app"), Ok(false));
        // An empty port equals no port (Go's SplitHostPort("h:") gives port "").
        assert_eq!(matches("reg.io:", "reg.io/app"), Ok(true));
    }

    #[test]
    fn glob_rules() {
        assert_eq!(glob_match("*", ""), Ok(true));
        assert_eq!(glob_match("a*c", "abbbc"), Ok(true));
        assert_eq!(glob_match("a*c", "abbb"), Ok(false));
        assert_eq!(glob_match("a?c", "abc"), Ok(true));
        assert_eq!(glob_match("a?c", "ac"), Ok(false));
        assert_eq!(glob_match("a\\*c", "a*c"), Ok(true));
        assert_eq!(glob_match("a\\*c", "abc"), Ok(false));
        assert_eq!(glob_match("[a-c]x", "bx"), Ok(true));
        assert_eq!(glob_match("[a-c]x", "dx"), Ok(false));
        assert_eq!(glob_match("[]a]", "a"), Err(MatchError::BadPattern));
        assert_eq!(glob_match("[z-a]", "a"), Err(MatchError::BadPattern));
        assert_eq!(glob_match("[a", "a"), Err(MatchError::BadPattern));
    }

    #[test]
    fn path_globs_are_flagged() {
        assert!(path_has_glob(&parse("reg.io/*").unwrap()));
        assert!(!path_has_glob(&parse("*.reg.io/team").unwrap()));
    }

    #[test]
    fn display_round_trips_the_parts() {
        assert_eq!(parse("a.b:5/c").unwrap().to_string(), "a.b:5/c");
        assert_eq!(parse("a.b/c").unwrap().to_string(), "a.b/c");
    }
}
