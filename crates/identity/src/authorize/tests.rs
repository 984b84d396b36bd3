//! Tests for path patterns and authorizers.

use super::*;

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn pat(s: &str) -> PathPattern {
    PathPattern::parse(s).unwrap()
}

#[test]
fn literal_pattern() {
    let p = pat("spiffe://example.org/ns/prod");
    assert!(p.is_match(&id("spiffe://example.org/ns/prod")));
    assert!(
        !p.is_match(&id("spiffe://example.org/ns/Prod")),
        "paths are case-sensitive"
    );
    assert!(!p.is_match(&id("spiffe://example.org/ns")));
    assert!(!p.is_match(&id("spiffe://example.org/ns/prod/x")));
    assert!(!p.is_match(&id("spiffe://example.com/ns/prod")));
    assert!(!p.is_match(&id("spiffe://example.org")));
    assert_eq!(p.capture_names().count(), 0);
    assert_eq!(p.trust_domain().as_str(), "example.org");
    assert_eq!(p.to_string(), "spiffe://example.org/ns/prod");
}

#[test]
fn trust_domain_only_pattern_matches_only_the_trust_domain_id() {
    let p = pat("spiffe://example.org");
    assert!(p.is_match(&id("spiffe://example.org")));
    assert!(!p.is_match(&id("spiffe://example.org/a")));
}

#[test]
fn single_star_matches_exactly_one_segment() {
    let p = pat("spiffe://td/ns/*/sa");
    assert!(p.is_match(&id("spiffe://td/ns/a/sa")));
    assert!(!p.is_match(&id("spiffe://td/ns/sa")));
    assert!(!p.is_match(&id("spiffe://td/ns/a/b/sa")));
    let last = pat("spiffe://td/ns/*");
    assert!(last.is_match(&id("spiffe://td/ns/x")));
    assert!(!last.is_match(&id("spiffe://td/ns")));
    assert!(!last.is_match(&id("spiffe://td/ns/x/y")));
}

#[test]
fn double_star_matches_zero_or_more_trailing_segments() {
    let p = pat("spiffe://td/ns/**");
    assert!(p.is_match(&id("spiffe://td/ns")));
    assert!(p.is_match(&id("spiffe://td/ns/a")));
    assert!(p.is_match(&id("spiffe://td/ns/a/b/c")));
    assert!(!p.is_match(&id("spiffe://td/other/a")));
    assert!(!p.is_match(&id("spiffe://td")));
    assert!(!p.is_match(&id("spiffe://other/ns/a")));
    let all = pat("spiffe://td/**");
    assert!(all.is_match(&id("spiffe://td")));
    assert!(all.is_match(&id("spiffe://td/x/y")));
    assert!(!all.is_match(&id("spiffe://td2/x")));
}

#[test]
fn captures() {
    let p = pat("spiffe://example.org/ns/{ns}/sa/{sa}");
    assert_eq!(p.capture_names().collect::<Vec<_>>(), ["ns", "sa"]);
    let the_id = id("spiffe://example.org/ns/prod/sa/web");
    let caps = p.matches(&the_id).unwrap();
    assert_eq!(caps.get("ns"), Some("prod"));
    assert_eq!(caps.get("sa"), Some("web"));
    assert_eq!(caps.get("nope"), None);
    assert_eq!(caps.len(), 2);
    assert!(!caps.is_empty());
    assert_eq!(
        caps.iter().collect::<Vec<_>>(),
        [("ns", "prod"), ("sa", "web")]
    );
    assert!(p.matches(&id("spiffe://example.org/ns/prod/sa")).is_none());
    assert!(
        p.matches(&id("spiffe://example.org/ns/prod/xx/web"))
            .is_none()
    );

    let mixed = pat("spiffe://td/{a}/*/{b}/**");
    let the_id = id("spiffe://td/1/2/3/4/5");
    let caps = mixed.matches(&the_id).unwrap();
    assert_eq!(caps.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "3")]);

    let literal = pat("spiffe://td/x");
    let the_id = id("spiffe://td/x");
    assert!(literal.matches(&the_id).unwrap().is_empty());
}

#[test]
fn pattern_errors() {
    let cases: &[(&str, PatternError)] = &[
        ("http://td/a", PatternError::Scheme),
        ("SPIFFE://td/a", PatternError::Scheme),
        (
            "spiffe://*.td/a",
            PatternError::WildcardTrustDomain { offset: 9 },
        ),
        (
            "spiffe://{td}/a",
            PatternError::WildcardTrustDomain { offset: 9 },
        ),
        (
            "spiffe:///a",
            PatternError::TrustDomain(IdError::MissingTrustDomain),
        ),
        (
            "spiffe://TD/a",
            PatternError::TrustDomain(IdError::UppercaseTrustDomain { offset: 9 }),
        ),
        ("spiffe://td/a/", PatternError::TrailingSlash),
        ("spiffe://td/", PatternError::TrailingSlash),
        ("spiffe://td//a", PatternError::EmptySegment { offset: 12 }),
        (
            "spiffe://td/**/a",
            PatternError::DoubleStarNotLast { offset: 12 },
        ),
        (
            "spiffe://td/x/**/**",
            PatternError::DoubleStarNotLast { offset: 14 },
        ),
        (
            "spiffe://td/a*",
            PatternError::PartialWildcard { offset: 12 },
        ),
        (
            "spiffe://td/***",
            PatternError::PartialWildcard { offset: 12 },
        ),
        (
            "spiffe://td/x{n}",
            PatternError::PartialWildcard { offset: 12 },
        ),
        (
            "spiffe://td/{n",
            PatternError::PartialWildcard { offset: 12 },
        ),
        (
            "spiffe://td/{}",
            PatternError::BadCaptureName { offset: 12 },
        ),
        (
            "spiffe://td/{Ns}",
            PatternError::BadCaptureName { offset: 12 },
        ),
        (
            "spiffe://td/{1a}",
            PatternError::BadCaptureName { offset: 12 },
        ),
        (
            "spiffe://td/{a-b}",
            PatternError::BadCaptureName { offset: 12 },
        ),
        (
            "spiffe://td/{n}/{n}",
            PatternError::DuplicateCapture {
                offset: 16,
                name: "n".to_owned(),
            },
        ),
        (
            "spiffe://td/a/..",
            PatternError::Literal(IdError::DotSegment { offset: 14 }),
        ),
        (
            "spiffe://td/a%20",
            PatternError::Literal(IdError::PercentEncoding { offset: 13 }),
        ),
        (
            "spiffe://td/a?b",
            PatternError::Literal(IdError::Query { offset: 13 }),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(PathPattern::parse(input).as_ref(), Err(want), "{input:?}");
    }
    let long = format!("spiffe://td/{}", "a".repeat(MAX_PATTERN_LEN));
    assert_eq!(
        PathPattern::parse(&long),
        Err(PatternError::TooLong {
            len: long.len(),
            max: MAX_PATTERN_LEN
        })
    );
}

#[test]
fn valid_capture_names() {
    for name in ["a", "_", "ns", "_x1", "a_b_9"] {
        let p = pat(&format!("spiffe://td/{{{name}}}"));
        assert_eq!(p.capture_names().collect::<Vec<_>>(), [name]);
    }
}

#[test]
fn exact_authorizer() {
    let a = Authorizer::exact(id("spiffe://td/a"));
    assert_eq!(a.authorize(&id("spiffe://td/a")), Ok(()));
    let err = a.authorize(&id("spiffe://td/b")).unwrap_err();
    assert_eq!(
        err,
        AuthorizeError::NotExact {
            id: id("spiffe://td/b"),
            expected: id("spiffe://td/a"),
        }
    );
    assert_eq!(
        err.to_string(),
        "spiffe id spiffe://td/b is not authorized: expected exactly spiffe://td/a"
    );
    assert_eq!(err.id(), &id("spiffe://td/b"));
}

#[test]
fn one_of_authorizer() {
    let a = Authorizer::one_of([id("spiffe://td/a"), id("spiffe://td/b")]).unwrap();
    assert_eq!(a.authorize(&id("spiffe://td/a")), Ok(()));
    assert_eq!(a.authorize(&id("spiffe://td/b")), Ok(()));
    let err = a.authorize(&id("spiffe://td/c")).unwrap_err();
    assert_eq!(
        err,
        AuthorizeError::NotOneOf {
            id: id("spiffe://td/c"),
            allowed: 2
        }
    );
    assert!(err.to_string().contains("spiffe://td/c"));
}

#[test]
fn empty_one_of_is_refused_and_denies_if_built_directly() {
    assert_eq!(
        Authorizer::one_of(Vec::new()),
        Err(AuthorizerConfigError::EmptyOneOf)
    );
    let a = Authorizer::OneOf(BTreeSet::new());
    assert!(a.authorize(&id("spiffe://td/a")).is_err());
}

#[test]
fn member_of_authorizer() {
    let a = Authorizer::member_of(TrustDomain::parse("example.org").unwrap());
    assert_eq!(a.authorize(&id("spiffe://example.org/a/b")), Ok(()));
    assert_eq!(a.authorize(&id("spiffe://example.org")), Ok(()));
    let err = a.authorize(&id("spiffe://example.org.evil/a")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spiffe id spiffe://example.org.evil/a is not authorized: not a member of trust domain example.org"
    );
    assert!(a.authorize(&id("spiffe://evil.example.org/a")).is_err());
}

#[test]
fn pattern_authorizer() {
    let a = Authorizer::pattern("spiffe://td/ns/{ns}/sa/*").unwrap();
    assert_eq!(a.authorize(&id("spiffe://td/ns/x/sa/y")), Ok(()));
    let err = a.authorize(&id("spiffe://td/ns/x/sa")).unwrap_err();
    assert_eq!(
        err,
        AuthorizeError::NoPatternMatch {
            id: id("spiffe://td/ns/x/sa"),
            pattern: "spiffe://td/ns/{ns}/sa/*".to_owned(),
        }
    );
    assert_eq!(
        Authorizer::pattern("spiffe://td/a*"),
        Err(AuthorizerConfigError::Pattern(
            PatternError::PartialWildcard { offset: 12 }
        ))
    );
}

#[test]
fn authorizer_display_names_the_rule() {
    assert_eq!(
        Authorizer::exact(id("spiffe://td/a")).to_string(),
        "exactly spiffe://td/a"
    );
    assert_eq!(
        Authorizer::one_of([id("spiffe://td/a")])
            .unwrap()
            .to_string(),
        "one of 1 spiffe ids"
    );
    assert_eq!(
        Authorizer::member_of(TrustDomain::parse("td").unwrap()).to_string(),
        "member of trust domain td"
    );
    assert_eq!(
        Authorizer::pattern("spiffe://td/**").unwrap().to_string(),
        "matching spiffe://td/**"
    );
}
