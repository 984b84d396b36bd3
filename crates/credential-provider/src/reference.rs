//! Image references, by the grammar of distribution's `reference` package:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [ domain "/" ] path-component [ "/" path-component ]*
//! domain           := host [ ":" port ]        host: domain-name | "[" IPv6 "]"
//! domain-component := /[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]/
//! path-component   := /[a-z0-9]+/ ( separator /[a-z0-9]+/ )*
//! separator        := "." | "_" | "__" | "-"+
//! tag              := /[\w][\w.-]{0,127}/
//! digest           := algorithm ":" hex        (sha256: 64, sha384: 96, sha512: 128 lowercase hex)
//! ```
//!
//! The name (domain included) is at most [`MAX_REPOSITORY_NAME_LEN`] bytes. The kubelet normally sends the
//! repository alone, but a request may carry a whole reference (`host:5000/repo:tag`,
//! `host/repo@sha256:…`); a scope or cache key built from it must never contain the tag or the
//! digest, so both are split off here, once, at the edge.

use svid_broker_identity::limits::MAX_REPOSITORY_NAME_LEN;

/// Longest input quoted back in an error.
const QUOTE_LEN: usize = 80;

/// Why an image reference is refused; each names the grammar rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ReferenceError {
    /// Nothing before the tag or digest.
    #[error("image reference has an empty repository name")]
    EmptyName,
    /// Longer than [`MAX_REPOSITORY_NAME_LEN`].
    #[error("repository name is {len} bytes, the maximum is {MAX_REPOSITORY_NAME_LEN}")]
    NameTooLong {
        /// The name's length in bytes, domain included, tag and digest not.
        len: usize,
    },
    /// A path with upper-case letters (only the registry host may have them).
    #[error("repository name {name:?} must be lowercase")]
    Uppercase {
        /// The name as given, cut to its first 80 characters.
        name: String,
    },
    /// A path component breaks `path-component`.
    #[error(
        "repository name {name:?} is invalid: each path component is lowercase letters and digits, joined by '.', '_', '__' or dashes"
    )]
    Path {
        /// The name as given, cut to its first 80 characters.
        name: String,
    },
    /// The text after the last `:` of the last component breaks `tag`.
    #[error(
        "tag {tag:?} is invalid: a tag is 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    )]
    Tag {
        /// The tag as given, cut to its first 80 characters.
        tag: String,
    },
    /// The text after `@` breaks `digest`.
    #[error(
        "digest {digest:?} is invalid: want sha256:, sha384: or sha512: and that many lowercase hex digits"
    )]
    Digest {
        /// The digest as given, cut to its first 80 characters.
        digest: String,
    },
}

/// A reference split into its parts; every part borrows the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ImageRef<'a> {
    /// `[domain "/"] path`: what scopes and cache keys are built from.
    pub(crate) name: &'a str,
    /// The tag, if any.
    pub(crate) tag: Option<&'a str>,
    /// The digest (`algorithm:hex`), if any.
    pub(crate) digest: Option<&'a str>,
}

/// Splits and checks `reference`.
pub(crate) fn parse(reference: &str) -> Result<ImageRef<'_>, ReferenceError> {
    // `@` appears nowhere but before the digest.
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        check_digest(digest)?;
    }
    // A `:` before the last `/` belongs to the domain's port, so only one after it starts a tag.
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    check_name(name)?;
    Ok(ImageRef { name, tag, digest })
}

fn quote(text: &str) -> String {
    text.chars().take(QUOTE_LEN).collect()
}

fn check_name(name: &str) -> Result<(), ReferenceError> {
    if name.is_empty() {
        return Err(ReferenceError::EmptyName);
    }
    if name.len() > MAX_REPOSITORY_NAME_LEN {
        return Err(ReferenceError::NameTooLong { len: name.len() });
    }
    // The grammar's domain is optional: the name is valid when it parses with its first
    // component as the domain, or without a domain at all.
    let valid = |name: &str| {
        name.split_once('/')
            .is_some_and(|(domain, path)| is_domain(domain) && is_path(path))
            || is_path(name)
    };
    if valid(name) {
        return Ok(());
    }
    if valid(&name.to_ascii_lowercase()) {
        return Err(ReferenceError::Uppercase { name: quote(name) });
    }
    Err(ReferenceError::Path { name: quote(name) })
}

/// `host [":" port]`.
fn is_domain(domain: &str) -> bool {
    let (host_ok, after_host) = if let Some(inner) = domain.strip_prefix('[') {
        let Some((address, after)) = inner.split_once(']') else {
            return false;
        };
        let ipv6 =
            !address.is_empty() && address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
        (ipv6, after)
    } else {
        let end = domain.find(':').unwrap_or(domain.len());
        let (host, after) = domain.split_at(end);
        (host.split('.').all(is_domain_component), after)
    };
    let port_ok = match after_host.strip_prefix(':') {
        None => after_host.is_empty(),
        Some(port) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
    };
    host_ok && port_ok
}

fn is_domain_component(label: &str) -> bool {
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

fn is_path(path: &str) -> bool {
    path.split('/').all(is_path_component)
}

fn is_path_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    if !bytes.first().is_some_and(|b| alnum(*b)) || !bytes.last().is_some_and(|b| alnum(*b)) {
        return false;
    }
    // Every run of non-alphanumerics between two alphanumeric runs must be one separator.
    bytes
        .split(|b| alnum(*b))
        .filter(|run| !run.is_empty())
        .all(|run| matches!(run, b"." | b"_" | b"__") || run.iter().all(|b| *b == b'-'))
}

fn check_tag(tag: &str) -> Result<(), ReferenceError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let ok = (1..=128).contains(&bytes.len())
        && word(bytes[0])
        && bytes.iter().all(|b| word(*b) || *b == b'.' || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::Tag { tag: quote(tag) })
    }
}

/// The grammar's `digest`, narrowed as `reference.Parse` narrows it (go-digest): only the
/// registered algorithms, each with its exact length of lowercase hex.
fn check_digest(digest: &str) -> Result<(), ReferenceError> {
    let hex_len = match digest.split_once(':') {
        Some(("sha256", hex)) => Some((64, hex)),
        Some(("sha384", hex)) => Some((96, hex)),
        Some(("sha512", hex)) => Some((128, hex)),
        _ => None,
    };
    match hex_len {
        Some((len, hex))
            if hex.len() == len
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(ReferenceError::Digest {
            digest: quote(digest),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn name(reference: &str) -> &str {
        parse(reference)
            .unwrap_or_else(|e| panic!("{reference}: {e}"))
            .name
    }

    #[test]
    fn tags_and_digests_are_split_off() {
        let r = parse("reg.io/team/app:v1.2").unwrap();
        assert_eq!(
            (r.name, r.tag, r.digest),
            ("reg.io/team/app", Some("v1.2"), None)
        );
        let at = format!("reg.io/team/app@{SHA}");
        let r = parse(&at).unwrap();
        assert_eq!(
            (r.name, r.tag, r.digest),
            ("reg.io/team/app", None, Some(SHA))
        );
        let both = format!("reg.io/team/app:v1@{SHA}");
        let r = parse(&both).unwrap();
        assert_eq!(
            (r.name, r.tag, r.digest),
            ("reg.io/team/app", Some("v1"), Some(SHA))
        );
        let r = parse("reg.io/team/app").unwrap();
        assert_eq!((r.name, r.tag, r.digest), ("reg.io/team/app", None, None));
    }

    #[test]
    fn a_port_is_not_a_tag() {
        assert_eq!(name("host:5000/repo:tag"), "host:5000/repo");
        assert_eq!(parse("host:5000/repo:tag").unwrap().tag, Some("tag"));
        assert_eq!(name("host:5000/repo"), "host:5000/repo");
        assert_eq!(parse("host:5000/repo").unwrap().tag, None);
        assert_eq!(name(&format!("host:5000/a/b:1@{SHA}")), "host:5000/a/b");
        assert_eq!(
            name("127.0.0.1:5000/team/app:v1"),
            "127.0.0.1:5000/team/app"
        );
        assert_eq!(name("[::1]:5000/repo:tag"), "[::1]:5000/repo");
        assert_eq!(name("[fe80::1]/repo"), "[fe80::1]/repo");
        // Without a path the grammar reads `host:5000` as repository `host`, tag `5000`.
        let r = parse("host:5000").unwrap();
        assert_eq!((r.name, r.tag), ("host", Some("5000")));
    }

    #[test]
    fn names_follow_the_grammar() {
        for ok in [
            "Reg.Example.ORG/team/app",
            "localhost/app",
            "a-b.example/x__y/z---w/v.u/t_s",
            "docker.io/library/nginx",
            "nginx",
            "sub-1.reg.io:443/a/b/c/d",
        ] {
            assert_eq!(name(ok), ok);
        }
        let path = |s: &str| ReferenceError::Path { name: s.to_owned() };
        assert_eq!(parse("reg.io/a..b"), Err(path("reg.io/a..b")));
        assert_eq!(parse("reg.io/a___b"), Err(path("reg.io/a___b")));
        assert_eq!(parse("reg.io/-a"), Err(path("reg.io/-a")));
        assert_eq!(parse("reg.io/a-"), Err(path("reg.io/a-")));
        assert_eq!(parse("reg.io//a"), Err(path("reg.io//a")));
        assert_eq!(parse("reg.io/a/"), Err(path("reg.io/a/")));
        assert_eq!(parse("-reg.io/a"), Err(path("-reg.io/a")));
        assert_eq!(parse("reg.io:/a"), Err(path("reg.io:/a")));
        assert_eq!(parse("reg.io:x/a"), Err(path("reg.io:x/a")));
        assert_eq!(parse("[::1/a"), Err(path("[::1/a")));
        assert_eq!(parse("[zz]/a"), Err(path("[zz]/a")));
        assert_eq!(parse("reg io/a"), Err(path("reg io/a")));
        assert_eq!(parse("reg.io/a b"), Err(path("reg.io/a b")));
        assert_eq!(
            parse("reg.io/Team/App:v1"),
            Err(ReferenceError::Uppercase {
                name: "reg.io/Team/App".into()
            })
        );
        assert_eq!(parse(":v1"), Err(ReferenceError::EmptyName));
        assert_eq!(parse(""), Err(ReferenceError::EmptyName));
        let long = format!("reg.io/{}", "a".repeat(MAX_REPOSITORY_NAME_LEN));
        assert_eq!(
            parse(&long),
            Err(ReferenceError::NameTooLong {
                len: MAX_REPOSITORY_NAME_LEN + 7
            })
        );
        assert_eq!(
            name(&long[..MAX_REPOSITORY_NAME_LEN]),
            &long[..MAX_REPOSITORY_NAME_LEN]
        );
    }

    #[test]
    fn bad_tags_and_digests_are_refused_by_rule() {
        let tag = |s: &str| ReferenceError::Tag { tag: s.to_owned() };
        assert_eq!(parse("reg.io/a:"), Err(tag("")));
        assert_eq!(parse("reg.io/a:.v1"), Err(tag(".v1")));
        assert_eq!(parse("reg.io/a:-v1"), Err(tag("-v1")));
        assert_eq!(parse("reg.io/a:v+1"), Err(tag("v+1")));
        assert_eq!(
            parse(&format!("reg.io/a:{}", "t".repeat(129))),
            Err(tag(&"t".repeat(80)))
        );
        assert!(parse(&format!("reg.io/a:{}", "t".repeat(128))).is_ok());
        assert!(parse("reg.io/a:_V1.2-rc").is_ok());
        let digest = |s: &str| ReferenceError::Digest {
            digest: s.to_owned(),
        };
        assert_eq!(parse("reg.io/a@"), Err(digest("")));
        assert_eq!(parse("reg.io/a@sha256:abc"), Err(digest("sha256:abc")));
        assert_eq!(
            parse(&format!("reg.io/a@{}", SHA.to_uppercase())),
            Err(digest(&SHA.to_uppercase()))
        );
        assert_eq!(
            parse(&format!("reg.io/a@md5:{}", &SHA[7..39])),
            Err(digest(&format!("md5:{}", &SHA[7..39])))
        );
        assert_eq!(
            parse(&format!("reg.io/a@{SHA}@{SHA}")),
            Err(digest(&format!("{SHA}@{SHA}")[..80]))
        );
        assert!(parse(&format!("reg.io/a@sha512:{}", "0".repeat(128))).is_ok());
        assert!(parse(&format!("reg.io/a@sha384:{}", "f".repeat(96))).is_ok());
    }
}
