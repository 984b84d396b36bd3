//! Tests for SPIFFE ID and trust domain parsing.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeSet, HashSet};

fn strict(s: &str) -> Result<SpiffeId, IdError> {
    SpiffeId::parse(s)
}

fn lenient(s: &str) -> Result<SpiffeId, IdError> {
    SpiffeId::parse_with(s, ParseMode::LowercaseAscii)
}

// One row per rule, in strict mode: the input and the expected outcome (`Ok(())` = valid).
const TABLE: &[(&str, Result<(), IdError>)] = &[
    // Valid shapes.
    ("spiffe://example.org", Ok(())),
    ("spiffe://example.org/a", Ok(())),
    ("spiffe://example.org/ns/prod/sa/web", Ok(())),
    ("spiffe://a", Ok(())),
    ("spiffe://-x", Ok(())),
    ("spiffe://x.", Ok(())),
    ("spiffe://a..b", Ok(())),
    ("spiffe://999.999.999.999", Ok(())),
    ("spiffe://a_b-c.d0/Path.With-Mixed_Case09", Ok(())),
    ("spiffe://td/.a", Ok(())),
    ("spiffe://td/..a", Ok(())),
    ("spiffe://td/...", Ok(())),
    ("spiffe://td/a.", Ok(())),
    // Empty.
    ("", Err(IdError::Empty)),
    // Scheme.
    ("example.org/a", Err(IdError::MissingScheme)),
    ("spiffe:/example.org", Err(IdError::MissingScheme)),
    ("s", Err(IdError::MissingScheme)),
    ("spiffe", Err(IdError::MissingScheme)),
    ("https://example.org/a", Err(IdError::WrongScheme)),
    ("spiffex://example.org", Err(IdError::WrongScheme)),
    ("Spiffe://example.org", Err(IdError::UppercaseScheme)),
    ("SPIFFE://example.org/a", Err(IdError::UppercaseScheme)),
    // Trust domain.
    ("spiffe://", Err(IdError::MissingTrustDomain)),
    ("spiffe:///", Err(IdError::MissingTrustDomain)),
    ("spiffe:///a", Err(IdError::MissingTrustDomain)),
    ("spiffe://?q", Err(IdError::MissingTrustDomain)),
    (
        "spiffe://Example.org",
        Err(IdError::UppercaseTrustDomain { offset: 9 }),
    ),
    (
        "spiffe://example.ORG/a",
        Err(IdError::UppercaseTrustDomain { offset: 17 }),
    ),
    (
        "spiffe://exa mple.org",
        Err(IdError::BadTrustDomainChar {
            offset: 12,
            byte: b' ',
        }),
    ),
    ("spiffe://[::1]", Err(IdError::Port { offset: 10 })),
    (
        "spiffe://[v1]",
        Err(IdError::BadTrustDomainChar {
            offset: 9,
            byte: b'[',
        }),
    ),
    (
        "spiffe://user@example.org/a",
        Err(IdError::Userinfo { offset: 13 }),
    ),
    (
        "spiffe://example.org:443/a",
        Err(IdError::Port { offset: 20 }),
    ),
    (
        "spiffe://example%2eorg",
        Err(IdError::PercentEncoding { offset: 16 }),
    ),
    // Query and fragment, right after the trust domain and inside the path.
    (
        "spiffe://example.org?x=1",
        Err(IdError::Query { offset: 20 }),
    ),
    (
        "spiffe://example.org/a?x",
        Err(IdError::Query { offset: 22 }),
    ),
    (
        "spiffe://example.org#f",
        Err(IdError::Fragment { offset: 20 }),
    ),
    (
        "spiffe://example.org/a#f",
        Err(IdError::Fragment { offset: 22 }),
    ),
    // Path.
    (
        "spiffe://td/a%2Fb",
        Err(IdError::PercentEncoding { offset: 13 }),
    ),
    ("spiffe://td//a", Err(IdError::EmptySegment { offset: 12 })),
    (
        "spiffe://td/a//b",
        Err(IdError::EmptySegment { offset: 14 }),
    ),
    ("spiffe://td/.", Err(IdError::DotSegment { offset: 12 })),
    ("spiffe://td/..", Err(IdError::DotSegment { offset: 12 })),
    ("spiffe://td/a/./b", Err(IdError::DotSegment { offset: 14 })),
    (
        "spiffe://td/a/../b",
        Err(IdError::DotSegment { offset: 14 }),
    ),
    ("spiffe://td/", Err(IdError::TrailingSlash)),
    ("spiffe://td/a/", Err(IdError::TrailingSlash)),
    (
        "spiffe://td/a b",
        Err(IdError::BadPathChar {
            offset: 13,
            byte: b' ',
        }),
    ),
    (
        "spiffe://td/a\nb",
        Err(IdError::BadPathChar {
            offset: 13,
            byte: b'\n',
        }),
    ),
    (
        "spiffe://td/a\n",
        Err(IdError::BadPathChar {
            offset: 13,
            byte: b'\n',
        }),
    ),
];

#[test]
fn table_strict() {
    for (input, want) in TABLE {
        let got = strict(input).map(|id| {
            assert_eq!(id.as_str(), *input, "strict parse must not rewrite");
        });
        assert_eq!(&got, want, "input {input:?}");
    }
}

#[test]
fn table_lenient_differs_only_on_case() {
    for (input, want) in TABLE {
        let got = lenient(input).map(|_| ());
        match want {
            Err(IdError::UppercaseScheme | IdError::UppercaseTrustDomain { .. }) => {
                assert_eq!(got, Ok(()), "input {input:?}");
            }
            _ => assert_eq!(&got, want, "input {input:?}"),
        }
    }
}

#[test]
fn lowercase_mode_folds_scheme_and_trust_domain_only() {
    let id = lenient("SPIFFE://Example.ORG/NS/Prod").unwrap();
    assert_eq!(id.as_str(), "spiffe://example.org/NS/Prod");
    assert_eq!(id.trust_domain().as_str(), "example.org");
    assert_eq!(id.path(), "/NS/Prod");
    assert_eq!(id, strict("spiffe://example.org/NS/Prod").unwrap());
}

#[test]
fn lowercase_mode_does_not_fold_non_ascii() {
    // U+212A KELVIN SIGN lower-cases to 'k' under Unicode rules; we must not do that.
    let err = lenient("spiffe://\u{212A}.org").unwrap_err();
    assert_eq!(
        err,
        IdError::BadTrustDomainChar {
            offset: 9,
            byte: 0xe2
        }
    );
    // Long s (U+017F) upper-cases to 'S' under Unicode rules; the scheme must not match.
    assert_eq!(lenient("\u{17F}piffe://td"), Err(IdError::WrongScheme));
}

#[test]
fn strict_mode_is_the_default() {
    assert_eq!(ParseMode::default(), ParseMode::Strict);
    assert_eq!(
        "spiffe://TD".parse::<SpiffeId>(),
        Err(IdError::UppercaseTrustDomain { offset: 9 })
    );
}

/// What the trust-domain sweep `spiffe://a<c>b` should give for character `c`.
fn expected_td_sweep(c: char, input: &str) -> Result<(), IdError> {
    let offset = 10;
    match c {
        'a'..='z' | '0'..='9' | '.' | '_' | '-' => Ok(()),
        // '/' ends the trust domain: "spiffe://a/b" is a valid ID with a path.
        '/' => Ok(()),
        'A'..='Z' => Err(IdError::UppercaseTrustDomain { offset }),
        '@' => Err(IdError::Userinfo { offset }),
        ':' => Err(IdError::Port { offset }),
        '%' => Err(IdError::PercentEncoding { offset }),
        '?' => Err(IdError::Query { offset }),
        '#' => Err(IdError::Fragment { offset }),
        _ => Err(IdError::BadTrustDomainChar {
            offset,
            byte: input.as_bytes()[offset],
        }),
    }
}

/// Every byte value: ASCII bytes as themselves, 0x80..=0xff as the Latin-1 code point, whose
/// UTF-8 lead byte (0xc2/0xc3) is what the parser sees first.
fn sweep_chars() -> impl Iterator<Item = char> {
    (0u8..=255).map(char::from)
}

#[test]
fn trust_domain_byte_sweep() {
    for c in sweep_chars() {
        let input = format!("spiffe://a{c}b");
        let got = strict(&input).map(|_| ());
        assert_eq!(got, expected_td_sweep(c, &input), "char {c:?}");

        // Bare-name parsing applies the same character rules (offset shifts by the scheme).
        let name = format!("a{c}b");
        let got = TrustDomain::parse(&name).map(|_| ());
        let want = match c {
            '/' => Err(IdError::BadTrustDomainChar {
                offset: 1,
                byte: b'/',
            }),
            _ => expected_td_sweep(c, &input).map_err(|e| shift(e, 9)),
        };
        assert_eq!(got, want, "bare name char {c:?}");
    }
}

fn shift(e: IdError, by: usize) -> IdError {
    match e {
        IdError::UppercaseTrustDomain { offset } => IdError::UppercaseTrustDomain {
            offset: offset - by,
        },
        IdError::BadTrustDomainChar { offset, byte } => IdError::BadTrustDomainChar {
            offset: offset - by,
            byte,
        },
        IdError::Userinfo { offset } => IdError::Userinfo {
            offset: offset - by,
        },
        IdError::Port { offset } => IdError::Port {
            offset: offset - by,
        },
        IdError::PercentEncoding { offset } => IdError::PercentEncoding {
            offset: offset - by,
        },
        IdError::Query { offset } => IdError::Query {
            offset: offset - by,
        },
        IdError::Fragment { offset } => IdError::Fragment {
            offset: offset - by,
        },
        other => other,
    }
}

#[test]
fn path_byte_sweep() {
    for c in sweep_chars() {
        let input = format!("spiffe://td/a{c}b");
        let offset = 13;
        let want = match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' | '/' => Ok(()),
            '%' => Err(IdError::PercentEncoding { offset }),
            '?' => Err(IdError::Query { offset }),
            '#' => Err(IdError::Fragment { offset }),
            _ => Err(IdError::BadPathChar {
                offset,
                byte: input.as_bytes()[offset],
            }),
        };
        assert_eq!(strict(&input).map(|_| ()), want, "char {c:?}");
    }
}

#[test]
fn length_edges() {
    let td255 = "a".repeat(MAX_TRUST_DOMAIN_LEN);
    let td256 = "a".repeat(MAX_TRUST_DOMAIN_LEN + 1);
    assert!(TrustDomain::parse(&td255).is_ok());
    assert_eq!(
        TrustDomain::parse(&td256),
        Err(IdError::TrustDomainTooLong { len: 256, max: 255 })
    );
    assert!(strict(&format!("spiffe://{td255}/x")).is_ok());
    assert_eq!(
        strict(&format!("spiffe://{td256}/x")).map(|_| ()),
        Err(IdError::TrustDomainTooLong { len: 256, max: 255 })
    );

    let prefix = "spiffe://td/";
    let id2048 = format!("{prefix}{}", "p".repeat(MAX_SPIFFE_ID_LEN - prefix.len()));
    let id2049 = format!("{id2048}p");
    assert_eq!(id2048.len(), 2048);
    assert!(strict(&id2048).is_ok());
    assert_eq!(
        strict(&id2049).map(|_| ()),
        Err(IdError::TooLong {
            len: 2049,
            max: 2048
        })
    );
}

#[test]
fn accessors() {
    let id = strict("spiffe://example.org/ns/prod/sa/web").unwrap();
    assert_eq!(id.trust_domain().as_str(), "example.org");
    assert_eq!(id.trust_domain().id_str(), "spiffe://example.org");
    assert_eq!(id.path(), "/ns/prod/sa/web");
    assert_eq!(
        id.segments().collect::<Vec<_>>(),
        ["ns", "prod", "sa", "web"]
    );
    assert!(!id.is_trust_domain_id());
    assert_eq!(id.to_string(), "spiffe://example.org/ns/prod/sa/web");
    assert_eq!(id.as_ref(), id.as_str());
    assert_eq!(
        format!("{id:?}"),
        "SpiffeId(\"spiffe://example.org/ns/prod/sa/web\")"
    );

    let td_id = strict("spiffe://example.org").unwrap();
    assert!(td_id.is_trust_domain_id());
    assert_eq!(td_id.path(), "");
    assert_eq!(td_id.segments().count(), 0);
    assert_eq!(td_id, id.trust_domain().id());
}

#[test]
fn trust_domain_clone_drops_the_path_but_keeps_identity() {
    let id = strict("spiffe://example.org/a/b").unwrap();
    let td = id.trust_domain().clone();
    assert_eq!(&td, id.trust_domain());
    assert_eq!(td.id_str(), "spiffe://example.org");
    assert_eq!(td.id().as_str(), "spiffe://example.org");
    assert_eq!(format!("{td:?}"), "TrustDomain(\"example.org\")");
    assert_eq!(td.to_string(), "example.org");
    // A clone of the ID keeps its path.
    let copy = id.clone();
    assert_eq!(copy.as_str(), "spiffe://example.org/a/b");
    assert_eq!(copy, id);
}

#[test]
fn trust_domain_eq_hash_ignore_embedding() {
    let a = strict("spiffe://example.org/a").unwrap();
    let b = TrustDomain::parse("example.org").unwrap();
    let mut set = HashSet::new();
    set.insert(a.trust_domain().clone());
    assert!(set.contains(&b));
    assert!(set.contains("example.org"));
    assert!(a.is_member_of(&b));
    assert!(!a.is_member_of(&TrustDomain::parse("example.com").unwrap()));
}

#[test]
fn spiffe_id_eq_ord_hash_on_string() {
    let ids: BTreeSet<SpiffeId> = ["spiffe://b/x", "spiffe://a/y", "spiffe://a"]
        .into_iter()
        .map(|s| strict(s).unwrap())
        .collect();
    let order: Vec<&str> = ids.iter().map(SpiffeId::as_str).collect();
    assert_eq!(order, ["spiffe://a", "spiffe://a/y", "spiffe://b/x"]);
    assert!(ids.contains("spiffe://a/y"));
    assert!(!ids.contains("spiffe://a/z"));
}

#[test]
fn trust_domain_parse_forms() {
    assert_eq!(
        TrustDomain::parse("spiffe://example.org"),
        Err(IdError::UnexpectedScheme { offset: 6 })
    );
    assert_eq!(TrustDomain::parse(""), Err(IdError::MissingTrustDomain));
    assert_eq!(
        TrustDomain::parse("Example.org"),
        Err(IdError::UppercaseTrustDomain { offset: 0 })
    );
    let td = TrustDomain::parse_with("Example.ORG", ParseMode::LowercaseAscii).unwrap();
    assert_eq!(td.as_str(), "example.org");
    assert_eq!(td.id_str(), "spiffe://example.org");

    let a = TrustDomain::parse_id_or_name("example.org").unwrap();
    let b = TrustDomain::parse_id_or_name("spiffe://example.org").unwrap();
    assert_eq!(a, b);
    assert_eq!(b.id_str(), "spiffe://example.org");
    assert_eq!(
        TrustDomain::parse_id_or_name("spiffe://example.org/ns/a"),
        Err(IdError::UnexpectedPath { offset: 20 })
    );
    assert_eq!(
        TrustDomain::parse_id_or_name("SPIFFE://example.org"),
        Err(IdError::UppercaseScheme)
    );
    assert_eq!(
        TrustDomain::parse_id_or_name_with("SPIFFE://Example.org", ParseMode::LowercaseAscii),
        Ok(a.clone())
    );
    assert_eq!("example.org".parse::<TrustDomain>(), Ok(a.clone()));
    assert_eq!(TrustDomain::try_from("example.org"), Ok(a));
}

#[test]
fn from_segments_checks_each_segment() {
    let td = TrustDomain::parse("example.org").unwrap();
    let id = SpiffeId::from_segments(&td, &["ns", "prod"]).unwrap();
    assert_eq!(id.as_str(), "spiffe://example.org/ns/prod");
    assert_eq!(id, strict("spiffe://example.org/ns/prod").unwrap());
    assert_eq!(SpiffeId::from_segments(&td, &[]).unwrap(), td.id());

    assert_eq!(
        SpiffeId::from_segments(&td, &["a/b"]),
        Err(IdError::BadPathChar {
            offset: 22,
            byte: b'/'
        })
    );
    assert_eq!(
        SpiffeId::from_segments(&td, &["ok", ""]),
        Err(IdError::EmptySegment { offset: 24 })
    );
    assert_eq!(
        SpiffeId::from_segments(&td, &[".."]),
        Err(IdError::DotSegment { offset: 21 })
    );
    let long = "x".repeat(MAX_SPIFFE_ID_LEN);
    assert_eq!(
        SpiffeId::from_segments(&td, &[&long]),
        Err(IdError::TooLong {
            len: 20 + 1 + MAX_SPIFFE_ID_LEN,
            max: MAX_SPIFFE_ID_LEN
        })
    );
}

#[test]
fn conversions() {
    let s = "spiffe://td/a";
    let a = SpiffeId::try_from(s).unwrap();
    let b = SpiffeId::try_from(s.to_owned()).unwrap();
    assert_eq!(a, b);
    assert_eq!(String::from(b), s);
    assert_eq!(a.into_string(), s);
    assert_eq!(
        SpiffeId::parse_owned("spiffe://TD".to_owned()),
        Err(IdError::UppercaseTrustDomain { offset: 9 })
    );
}

#[test]
fn display_names_the_rule_and_escapes_bytes() {
    let msg = |s: &str| strict(s).unwrap_err().to_string();
    assert_eq!(
        msg("spiffe://TD"),
        "trust domain must be lower case: upper-case letter at byte 9 (strict mode)"
    );
    assert_eq!(
        msg("spiffe://td/a\u{1b}"),
        "path segments may only contain a-z A-Z 0-9 . _ -: found 0x1b at byte 13"
    );
    assert_eq!(
        msg("spiffe://t d"),
        "trust domain may only contain a-z 0-9 . _ -: found 0x20 at byte 10"
    );
    assert_eq!(
        msg("spiffe://t!d"),
        "trust domain may only contain a-z 0-9 . _ -: found '!' at byte 10"
    );
    assert_eq!(msg("spiffe://td/"), "path must not end with '/'");
    // Every message is printable ASCII without control bytes, whatever the input.
    for c in sweep_chars() {
        for input in [format!("spiffe://a{c}"), format!("spiffe://a/b{c}")] {
            if let Err(e) = strict(&input) {
                let m = e.to_string();
                assert!(
                    m.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
                    "{m:?}"
                );
            }
        }
    }
}

// Generators for valid IDs, following the grammar.
fn td_strategy() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,64}"
}

fn segment_strategy() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,16}".prop_filter("dot segments are invalid", |s| s != "." && s != "..")
}

fn id_strategy() -> impl Strategy<Value = String> {
    (
        td_strategy(),
        prop::collection::vec(segment_strategy(), 0..8),
    )
        .prop_map(|(td, segs)| {
            let mut s = format!("spiffe://{td}");
            for seg in segs {
                s.push('/');
                s.push_str(&seg);
            }
            s
        })
}

/// Upper-cases the ASCII letters of scheme and trust domain, leaving the path as is.
fn upper_head(s: &str) -> String {
    let end = s[9..].find('/').map_or(s.len(), |i| i + 9);
    let mut out = s[..end].to_ascii_uppercase();
    out.push_str(&s[end..]);
    out
}

proptest! {
    #[test]
    fn valid_ids_round_trip(s in id_strategy()) {
        let id = strict(&s).unwrap();
        prop_assert_eq!(id.as_str(), s.as_str());
        let again = strict(&format!("{id}")).unwrap();
        prop_assert_eq!(&again, &id);
        let rebuilt = SpiffeId::from_segments(
            id.trust_domain(),
            &id.segments().collect::<Vec<_>>(),
        ).unwrap();
        prop_assert_eq!(&rebuilt, &id);
        prop_assert_eq!(lenient(&s).unwrap(), id);
    }

    #[test]
    fn lowercase_mode_equals_strict_of_lowered(s in id_strategy()) {
        let upper = upper_head(&s);
        let lowered = lenient(&upper).unwrap();
        prop_assert_eq!(lowered, strict(&s).unwrap());
        if upper != s {
            prop_assert!(strict(&upper).is_err());
        }
    }

    #[test]
    fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let s = String::from_utf8_lossy(&bytes);
        for input in [s.to_string(), format!("spiffe://{s}"), format!("spiffe://td/{s}")] {
            if let Ok(id) = strict(&input) {
                prop_assert_eq!(id.as_str(), input.as_str());
            }
            if let Ok(id) = lenient(&input) {
                prop_assert_eq!(strict(id.as_str()).unwrap(), id);
            }
            let _ = TrustDomain::parse_id_or_name(&input);
        }
    }
}
