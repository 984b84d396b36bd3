use super::*;
use svid_broker_identity::{PathPattern, SpiffeId};

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

#[test]
fn literal_and_star() {
    let p = RepositoryPattern::parse("team/*", &[]).unwrap();
    assert!(p.is_match("team/app", None));
    assert!(!p.is_match("team", None));
    assert!(!p.is_match("team/app/x", None));
    assert!(!p.is_match("other/app", None));
    assert!(!p.is_registry_wide());
}

#[test]
fn double_star_needs_one_component_and_works_anywhere() {
    let p = RepositoryPattern::parse("mirror/**", &[]).unwrap();
    assert!(p.is_match("mirror/a", None));
    assert!(p.is_match("mirror/a/b/c", None));
    assert!(!p.is_match("mirror", None));
    assert!(!p.is_match("mirrors/a", None));

    let p = RepositoryPattern::parse("a/**/cache", &[]).unwrap();
    assert!(p.is_match("a/x/cache", None));
    assert!(p.is_match("a/x/y/cache", None));
    assert!(!p.is_match("a/cache", None));
    assert!(!p.is_match("a/x/cache/y", None));

    let p = RepositoryPattern::parse("**/cache", &[]).unwrap();
    assert!(p.is_match("x/cache", None));
    assert!(!p.is_match("cache", None));
}

#[test]
fn registry_wide_patterns() {
    for s in ["*", "**", "*/*", "*/**", "**/*"] {
        assert!(
            RepositoryPattern::parse(s, &[]).unwrap().is_registry_wide(),
            "{s}"
        );
    }
    for s in ["a/*", "**/a", "{ns}"] {
        let p = RepositoryPattern::parse(s, &["ns"]).unwrap();
        assert!(!p.is_registry_wide(), "{s}");
    }
}

#[test]
fn captures_fill_templates() {
    let subject = PathPattern::parse("spiffe://example.org/ns/{ns}/sa/{sa}").unwrap();
    let names: Vec<&str> = subject.capture_names().collect();
    let p = RepositoryPattern::parse("team-{ns}/{sa}-cache/*", &names).unwrap();
    assert_eq!(p.captures_used().collect::<Vec<_>>(), vec![0, 1]);

    let who = id("spiffe://example.org/ns/prod/sa/web");
    let caps = subject.matches(&who).unwrap();
    assert!(p.is_match("team-prod/web-cache/x", Some(&caps)));
    assert!(!p.is_match("team-dev/web-cache/x", Some(&caps)));
    assert!(!p.is_match("team-prod/api-cache/x", Some(&caps)));
    assert!(!p.is_match("team-prodx/web-cache/x", Some(&caps)));
    assert!(!p.is_match("team-prod/web-cache", Some(&caps)));
    // Without captures a template matches nothing (fail closed).
    assert!(!p.is_match("team-prod/web-cache/x", None));

    let whole = RepositoryPattern::parse("{ns}", &names).unwrap();
    assert!(whole.is_match("prod", Some(&caps)));
    assert!(!whole.is_match("prod2", Some(&caps)));
}

#[test]
fn invalid_patterns() {
    let cases: &[(&str, RepoPatternError)] = &[
        ("", RepoPatternError::Empty),
        ("a//b", RepoPatternError::EmptyComponent { offset: 2 }),
        ("a/", RepoPatternError::EmptyComponent { offset: 2 }),
        ("**/x/**", RepoPatternError::SecondDoubleStar { offset: 5 }),
        ("app-*", RepoPatternError::PartialWildcard { offset: 4 }),
        ("***", RepoPatternError::PartialWildcard { offset: 0 }),
        ("a/{ns", RepoPatternError::UnbalancedBrace { offset: 2 }),
        ("a}", RepoPatternError::UnbalancedBrace { offset: 1 }),
        ("{ns}}", RepoPatternError::UnbalancedBrace { offset: 4 }),
        (
            "{ns}-{sa}",
            RepoPatternError::TwoCapturesInComponent { offset: 5 },
        ),
        ("{Ns}", RepoPatternError::BadCaptureName { offset: 0 }),
        ("{}", RepoPatternError::BadCaptureName { offset: 0 }),
        (
            "x/{other}",
            RepoPatternError::UndefinedCapture {
                name: "other".into(),
                offset: 2,
            },
        ),
        (
            "Team/*",
            RepoPatternError::Literal(NameError::Uppercase { offset: 0 }),
        ),
        (
            "a/../b",
            RepoPatternError::Literal(NameError::LeadingSeparator { offset: 2 }),
        ),
        (
            "T-{ns}",
            RepoPatternError::Literal(NameError::Uppercase { offset: 0 }),
        ),
        (
            "t@{ns}",
            RepoPatternError::Literal(NameError::InvalidChar { offset: 1 }),
        ),
    ];
    for (pattern, want) in cases {
        let got = RepositoryPattern::parse(pattern, &["ns", "sa"]);
        assert_eq!(got.as_ref().err(), Some(want), "{pattern:?}");
    }
    let long = "a".repeat(MAX_REPOSITORY_NAME_LEN + 1);
    assert!(matches!(
        RepositoryPattern::parse(&long, &[]),
        Err(RepoPatternError::TooLong { .. })
    ));
}
