use super::*;
use crate::scope::parse_scopes;

const REGISTRIES: &str = r#"
[[registries]]
name = "local"
service = "registry.local"
issuer = "svid-broker"
profile = "distribution-2"
hosts = ["127.0.0.1:5000", "registry.local"]

[[registries]]
name = "other"
service = "registry.other"
issuer = "svid-broker-other"
profile = "distribution-3"
token_ttl_seconds = 120
hosts = ["[::1]:5001"]
"#;

fn policy(rules: &str) -> Policy {
    let text = format!("{REGISTRIES}\n{rules}");
    Policy::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn load_err(rules: &str) -> PolicyError {
    let text = format!("{REGISTRIES}\n{rules}");
    match Policy::from_toml_str(&text) {
        Ok(_) => panic!("policy loaded but should not:\n{text}"),
        Err(e) => e,
    }
}

/// Line of `needle`'s first occurrence in the rules text, as seen in the whole file.
fn line_of(rules: &str, needle: &str) -> usize {
    let text = format!("{REGISTRIES}\n{rules}");
    let offset = text.find(needle).expect("needle in text");
    text[..offset].matches('\n').count() + 1
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

/// Decides on "registry.local" and returns the granted scope string.
fn grant(p: &Policy, subject: &str, scopes: &[&str]) -> String {
    let req = parse_scopes(scopes.iter().copied()).unwrap();
    p.decide(&id(subject), "registry.local", &req)
        .unwrap()
        .granted_scope()
}

const TEAMS: &str = r#"
[[rules]]
id = "teams-pull-own-namespace"
subject = "spiffe://example.org/ns/{ns}/sa/*"
registry = "local"
repositories = ["team-{ns}/*"]
actions = ["pull"]
"#;

// ---------------------------------------------------------------------------------------------
// Loading

#[test]
fn loads_registries() {
    let p = policy(TEAMS);
    assert_eq!(p.registries().len(), 2);
    assert_eq!(p.rule_count(), 1);
    let local = p.registry_by_name("local").unwrap();
    assert_eq!(local.service(), "registry.local");
    assert_eq!(local.issuer(), Some("svid-broker"));
    assert_eq!(local.profile(), Some(Profile::Distribution2));
    assert_eq!(
        local.token_ttl(),
        Duration::from_secs(DEFAULT_TOKEN_TTL_SECONDS)
    );
    assert_eq!(local.hosts(), ["127.0.0.1:5000", "registry.local"]);
    let other = p.registry_by_service("registry.other").unwrap();
    assert_eq!(other.name(), "other");
    assert_eq!(other.profile(), Some(Profile::Distribution3));
    assert_eq!(other.token_ttl(), Duration::from_secs(120));
    assert!(p.registry_by_service("registry.nope").is_none());
    assert!(p.registry_by_name("nope").is_none());
    let names: Vec<&str> = p.registries().map(|r| r.name()).collect();
    assert_eq!(names, ["local", "other"]);
}

fn registry_with(extra: &str) -> String {
    format!(
        "[[registries]]\nname = \"r\"\nservice = \"s\"\nissuer = \"i\"\nprofile = \"zot\"\nhosts = [\"h\"]\n{extra}\n"
    )
}

#[test]
fn ttl_bounds() {
    for (ttl, ok) in [
        ("60", true),
        ("3600", true),
        ("59", false),
        ("-5", false),
        ("3601", false),
    ] {
        let text = registry_with(&format!("token_ttl_seconds = {ttl}"));
        let got = Policy::from_toml_str(&text);
        assert_eq!(got.is_ok(), ok, "{ttl}");
        if let Err(e) = got {
            let loc = Location {
                line: 7,
                column: 21,
            };
            match e {
                PolicyError::TtlTooShort {
                    registry, min, at, ..
                } => {
                    assert!(ttl.starts_with('-') || ttl == "59");
                    assert_eq!((registry.as_str(), min, at), ("r", 60, loc));
                }
                PolicyError::TtlTooLong { max, at, .. } => {
                    assert_eq!(ttl, "3601");
                    assert_eq!((max, at), (3600, loc));
                }
                other => panic!("{other}"),
            }
        }
    }
}

#[test]
fn unknown_keys_are_rejected_with_location() {
    let e = Policy::from_toml_str(&registry_with("colour = \"blue\"")).unwrap_err();
    let PolicyError::Syntax { at, message } = &e else {
        panic!("{e}")
    };
    assert_eq!(*at, Some(Location { line: 7, column: 1 }));
    assert!(message.contains("colour"), "{message}");

    let rules = "[[rules]]\nid = \"r\"\nsubject = \"spiffe://example.org/a\"\nregistry = \"local\"\nrepositories = [\"a\"]\nactions = [\"pull\"]\nrepos = [\"b\"]\n";
    let e = load_err(rules);
    let PolicyError::Syntax { at, message } = &e else {
        panic!("{e}")
    };
    assert_eq!(at.map(|l| l.line), Some(line_of(rules, "repos =")));
    assert!(message.contains("repos"), "{message}");

    let e = Policy::from_toml_str(&format!("{REGISTRIES}\nversion = 2\n")).unwrap_err();
    assert!(matches!(e, PolicyError::Syntax { at: Some(_), .. }), "{e}");
    assert!(e.to_string().contains("version"), "{e}");
}

#[test]
fn syntax_errors_have_location() {
    let e = Policy::from_toml_str("[[registries]]\nname = \"a\nservice = 1\n").unwrap_err();
    let PolicyError::Syntax { at: Some(at), .. } = e else {
        panic!("{e}")
    };
    assert_eq!(at.line, 2);

    let e = Policy::from_toml_str(
        &registry_with("").replace("profile = \"zot\"", "profile = \"quay\""),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            PolicyError::Syntax {
                at: Some(Location {
                    line: 5,
                    column: 11
                }),
                ..
            }
        ),
        "{e}"
    );

    let e = Policy::from_toml_str(&registry_with("").replace("hosts = [\"h\"]\n", "")).unwrap_err();
    assert!(e.to_string().contains("hosts"), "{e}");
}

#[test]
fn registry_validation() {
    let e = Policy::from_toml_str("").unwrap_err();
    assert!(matches!(e, PolicyError::NoRegistries), "{e}");

    let bad = |from: &str, to: &str| {
        let text = registry_with("").replace(from, to);
        Policy::from_toml_str(&text).unwrap_err()
    };
    let e = bad("name = \"r\"", "name = \"R!\"");
    assert!(
        matches!(&e, PolicyError::InvalidRegistryName { name, at } if name == "R!" && *at == Location { line: 2, column: 8 }),
        "{e}"
    );
    let e = bad("service = \"s\"", "service = \"a b\"");
    assert!(
        matches!(&e, PolicyError::InvalidService { at, .. } if at.line == 3),
        "{e}"
    );
    let e = bad("issuer = \"i\"", "issuer = \"\"");
    assert!(
        matches!(&e, PolicyError::InvalidIssuer { at, .. } if at.line == 4),
        "{e}"
    );
    let e = bad("hosts = [\"h\"]", "hosts = [\"h\", \"Upper.example\"]");
    assert!(
        matches!(&e, PolicyError::InvalidHost { host, at, .. } if host == "Upper.example" && *at == Location { line: 6, column: 15 }),
        "{e}"
    );
    let e = bad("hosts = [\"h\"]", "hosts = [\"https://h\"]");
    assert!(matches!(&e, PolicyError::InvalidHost { .. }), "{e}");
    let e = bad("hosts = [\"h\"]", "hosts = []");
    assert!(
        matches!(&e, PolicyError::EmptyList { owner, field: "hosts", at } if owner == "r" && at.line == 6),
        "{e}"
    );
    let e = bad("hosts = [\"h\"]", "hosts = [\"h:1\", \"h:1\"]");
    assert!(
        matches!(&e, PolicyError::DuplicateHost { host, .. } if host == "h:1"),
        "{e}"
    );
}

#[test]
fn duplicate_registries() {
    let two =
        |a: &str, b: &str| format!("{}{}", registry_with(""), registry_with("").replace(a, b));
    let e = Policy::from_toml_str(&two("hosts = [\"h\"]", "hosts = [\"h2\"]\n")).unwrap_err();
    assert!(
        matches!(&e, PolicyError::DuplicateRegistryName { name, at } if name == "r" && at.line == 9),
        "{e}"
    );
    // Second registry: new name, same service, its own host.
    let text =
        two("name = \"r\"", "name = \"r2\"").replacen("hosts = [\"h\"]", "hosts = [\"h1\"]", 1);
    let e = Policy::from_toml_str(&text).unwrap_err();
    assert!(
        matches!(&e, PolicyError::DuplicateService { service, registry, at } if service == "s" && registry == "r2" && at.line == 10),
        "{e}"
    );
    let text = two(
        "name = \"r\"\nservice = \"s\"",
        "name = \"r2\"\nservice = \"s2\"",
    );
    let e = Policy::from_toml_str(&text).unwrap_err();
    assert!(
        matches!(&e, PolicyError::DuplicateHost { host, registry, at } if host == "h" && registry == "r2" && at.line == 13),
        "{e}"
    );
}

fn rule(body: &str) -> String {
    format!("[[rules]]\n{body}\n")
}

#[test]
fn duplicate_rule_id() {
    let r = rule(
        "id = \"a\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"x\"]\nactions = [\"pull\"]",
    );
    let rules = format!("{r}{r}");
    let e = load_err(&rules);
    let text = format!("{REGISTRIES}\n{rules}");
    let want_line = text[..text.rfind("id = ").unwrap()].matches('\n').count() + 1;
    assert!(
        matches!(&e, PolicyError::DuplicateRuleId { rule, at } if rule == "a" && at.line == want_line),
        "{e}"
    );
}

#[test]
fn rule_id_must_be_sane() {
    let rules = rule(
        "id = \"has space\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"x\"]\nactions = [\"pull\"]",
    );
    let e = load_err(&rules);
    assert!(
        matches!(&e, PolicyError::InvalidRuleId { rule, .. } if rule == "has space"),
        "{e}"
    );
}

#[test]
fn unknown_registry() {
    let rules = rule(
        "id = \"a\"\ntrust_domain = \"example.org\"\nregistry = \"nope\"\nrepositories = [\"x\"]\nactions = [\"pull\"]",
    );
    let e = load_err(&rules);
    let line = line_of(&rules, "registry = \"nope\"");
    assert!(
        matches!(&e, PolicyError::UnknownRegistry { rule, registry, at } if rule == "a" && registry == "nope" && *at == Location { line, column: 12 }),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!("rule \"a\": unknown registry \"nope\" at line {line}, column 12")
    );
}

#[test]
fn undefined_capture() {
    let rules = rule(
        "id = \"a\"\nsubject = \"spiffe://example.org/ns/{ns}/sa/*\"\nregistry = \"local\"\nrepositories = [\"team-{ns}/*\", \"{sa}/x\"]\nactions = [\"pull\"]",
    );
    let e = load_err(&rules);
    let line = line_of(&rules, "repositories");
    assert!(
        matches!(&e, PolicyError::UndefinedCapture { rule, capture, at } if rule == "a" && capture == "sa" && *at == Location { line, column: 32 }),
        "{e}"
    );

    // An exact subject defines no captures at all.
    let rules = rule(
        "id = \"b\"\nsubject = \"spiffe://example.org/web\"\nregistry = \"local\"\nrepositories = [\"{ns}\"]\nactions = [\"pull\"]",
    );
    assert!(
        matches!(load_err(&rules), PolicyError::UndefinedCapture { capture, .. } if capture == "ns")
    );
}

#[test]
fn unused_capture() {
    let rules = rule(
        "id = \"a\"\nsubject = \"spiffe://example.org/ns/{ns}/sa/{sa}\"\nregistry = \"local\"\nrepositories = [\"team-{ns}/*\"]\nactions = [\"pull\"]",
    );
    let e = load_err(&rules);
    let line = line_of(&rules, "subject =");
    assert!(
        matches!(&e, PolicyError::UnusedCapture { rule, capture, at } if rule == "a" && capture == "sa" && *at == Location { line, column: 11 }),
        "{e}"
    );

    // A catalog rule uses no capture.
    let rules = rule(
        "id = \"c\"\nsubject = \"spiffe://example.org/ns/{ns}\"\nregistry = \"local\"\nactions = [\"registry:catalog:*\"]",
    );
    assert!(
        matches!(load_err(&rules), PolicyError::UnusedCapture { capture, .. } if capture == "ns")
    );

    // Used by one pattern of several is enough.
    policy(&rule(
        "id = \"d\"\nsubject = \"spiffe://example.org/ns/{ns}\"\nregistry = \"local\"\nrepositories = [\"shared/*\", \"{ns}/**\"]\nactions = [\"pull\"]",
    ));
}

#[test]
fn subject_matchers_are_validated() {
    let base = "id = \"a\"\nregistry = \"local\"\nrepositories = [\"x\"]\nactions = [\"pull\"]\n";
    // The value starts at column 11 (`subject = "`) or 16 (`trust_domain = "`) of its line.
    let subject_at = |rules: &str, column| Location {
        line: line_of(rules, "subject ="),
        column,
    };
    let rules = rule(&format!("{base}subject = \"spiffe://Example.org/a\""));
    let e = load_err(&rules);
    assert!(
        matches!(&e, PolicyError::InvalidSubject { rule, at, .. } if rule == "a" && *at == subject_at(&rules, 11)),
        "{e}"
    );
    let rules = rule(&format!("{base}subject = \"spiffe://example.org/a*\""));
    let e = load_err(&rules);
    assert!(
        matches!(&e, PolicyError::InvalidSubjectPattern { rule, at, .. } if rule == "a" && *at == subject_at(&rules, 11)),
        "{e}"
    );
    let rules = rule(&format!("{base}trust_domain = \"exa mple.org\""));
    let e = load_err(&rules);
    let td_at = Location {
        line: line_of(&rules, "trust_domain ="),
        column: 16,
    };
    assert!(
        matches!(&e, PolicyError::InvalidTrustDomain { rule, at, .. } if rule == "a" && *at == td_at),
        "{e}"
    );
    let e = load_err(&rule(&format!(
        "{base}subject = \"spiffe://example.org/{{ns}}\""
    )));
    assert!(matches!(&e, PolicyError::UnusedCapture { .. }), "{e}");
    let rules = rule(&format!(
        "{base}trust_domain = \"example.org\"\nsubject = \"spiffe://example.org/a\""
    ));
    let e = load_err(&rules);
    let line = line_of(&rules, "[[rules]]");
    assert!(
        matches!(&e, PolicyError::SubjectMatcher { rule, at } if rule == "a" && *at == Location { line, column: 1 }),
        "{e}"
    );
    let e = load_err(&rule(base));
    assert!(matches!(&e, PolicyError::SubjectMatcher { .. }), "{e}");
    // Both spellings of a trust domain work.
    policy(&rule(&format!(
        "{base}trust_domain = \"spiffe://example.org\""
    )));
}

#[test]
fn repository_patterns_are_validated() {
    let rules = rule(
        "id = \"a\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"ok\", \"Bad/*\"]\nactions = [\"pull\"]",
    );
    let e = load_err(&rules);
    let line = line_of(&rules, "repositories");
    assert!(
        matches!(&e, PolicyError::InvalidRepositoryPattern { rule, pattern, at, source: RepoPatternError::Literal(_) } if rule == "a" && pattern == "Bad/*" && *at == Location { line, column: 23 }),
        "{e}"
    );
    let rules = rule(
        "id = \"a\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"app-*\"]\nactions = [\"pull\"]",
    );
    assert!(matches!(
        load_err(&rules),
        PolicyError::InvalidRepositoryPattern {
            source: RepoPatternError::PartialWildcard { .. },
            ..
        }
    ));
}

#[test]
fn whole_registry_needs_marker() {
    for pattern in ["*", "**", "*/*", "*/**"] {
        let body = format!(
            "id = \"a\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"x/*\", \"{pattern}\"]\nactions = [\"pull\"]"
        );
        let rules = rule(&body);
        let e = load_err(&rules);
        let line = line_of(&rules, "repositories");
        assert!(
            matches!(&e, PolicyError::WholeRegistryNotMarked { rule, pattern: p, at } if rule == "a" && p == pattern && *at == Location { line, column: 24 }),
            "{pattern}: {e}"
        );
        let e = load_err(&rule(&format!("{body}\nwhole_registry = false")));
        assert!(
            matches!(&e, PolicyError::WholeRegistryNotMarked { .. }),
            "{e}"
        );
        policy(&rule(&format!("{body}\nwhole_registry = true")));
    }
    // A deny rule covering everything is safe without the marker.
    policy(&rule(
        "id = \"d\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"**\"]\nactions = [\"push\"]\neffect = \"deny\"",
    ));
}

#[test]
fn whole_registry_marker_must_be_needed() {
    let rules = rule(
        "id = \"a\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"x/*\"]\nactions = [\"pull\"]\nwhole_registry = true",
    );
    let e = load_err(&rules);
    let line = line_of(&rules, "whole_registry");
    assert!(
        matches!(&e, PolicyError::WholeRegistryUnused { rule, at } if rule == "a" && *at == Location { line, column: 18 }),
        "{e}"
    );
    let rules = rule(
        "id = \"c\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nactions = [\"registry:catalog:*\"]\nwhole_registry = true",
    );
    assert!(matches!(
        load_err(&rules),
        PolicyError::WholeRegistryUnused { .. }
    ));
}

#[test]
fn catalog_rules_stand_alone() {
    let rules = rule(
        "id = \"c\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"x\"]\nactions = [\"registry:catalog:*\"]",
    );
    let e = load_err(&rules);
    let line = line_of(&rules, "repositories");
    assert!(
        matches!(&e, PolicyError::CatalogWithRepositories { rule, at } if rule == "c" && *at == Location { line, column: 16 }),
        "{e}"
    );
    let rules = rule(
        "id = \"c\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nactions = [\"pull\", \"registry:catalog:*\"]",
    );
    let e = load_err(&rules);
    let line = line_of(&rules, "actions");
    assert!(
        matches!(&e, PolicyError::CatalogMixedActions { rule, at } if rule == "c" && *at == Location { line, column: 11 }),
        "{e}"
    );
    let rules = rule(
        "id = \"c\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nactions = [\"pull\"]",
    );
    let e = load_err(&rules);
    assert!(
        matches!(&e, PolicyError::MissingRepositories { rule, at } if rule == "c" && at.line == line_of(&rules, "[[rules]]")),
        "{e}"
    );
}

#[test]
fn empty_lists_are_rejected() {
    let rules = rule(
        "id = \"a\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = []\nactions = [\"pull\"]",
    );
    let e = load_err(&rules);
    assert!(
        matches!(&e, PolicyError::EmptyList { owner, field: "repositories", at } if owner == "a" && at.line == line_of(&rules, "repositories")),
        "{e}"
    );
    let rules = rule(
        "id = \"a\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"x\"]\nactions = []",
    );
    let e = load_err(&rules);
    assert!(
        matches!(&e, PolicyError::EmptyList { owner, field: "actions", at } if owner == "a" && at.line == line_of(&rules, "actions")),
        "{e}"
    );
}

#[test]
fn list_length_is_capped() {
    let many = vec!["\"x\""; MAX_LIST_LEN + 1].join(",");
    let rules = rule(&format!(
        "id = \"a\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [{many}]\nactions = [\"pull\"]"
    ));
    assert!(matches!(
        load_err(&rules),
        PolicyError::ListTooLong {
            field: "repositories",
            ..
        }
    ));
}

#[test]
fn actions_are_validated() {
    for bad in ["pul", "Pull", "registry:catalog:pull", "mount", ""] {
        let rules = rule(&format!(
            "id = \"a\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"x\"]\nactions = [\"pull\", \"{bad}\"]"
        ));
        let e = load_err(&rules);
        assert!(
            matches!(&e, PolicyError::InvalidAction { rule, action, at } if rule == "a" && action == bad && *at == Location { line: line_of(&rules, "actions"), column: 20 }),
            "{bad}: {e}"
        );
    }
}

#[test]
fn load_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, format!("{REGISTRIES}{TEAMS}")).unwrap();
    let p = Policy::load(&path).unwrap();
    assert_eq!(p.rule_count(), 1);

    let big = dir.path().join("big.toml");
    let mut text = format!("{REGISTRIES}{TEAMS}");
    text.push_str(&"#".repeat(usize::try_from(MAX_POLICY_FILE_BYTES).unwrap()));
    std::fs::write(&big, text).unwrap();
    let e = Policy::load(&big).unwrap_err();
    assert!(
        matches!(e, PolicyError::FileTooLarge { len, max, .. } if len == MAX_POLICY_FILE_BYTES + 1 && max == MAX_POLICY_FILE_BYTES),
        "{e}"
    );

    // A multi-byte character straddling the cap: still "too large", not invalid UTF-8.
    let cut = dir.path().join("cut.toml");
    // The read stops one byte past the cap, inside the two bytes of "é".
    let mut text = "#".repeat(usize::try_from(MAX_POLICY_FILE_BYTES).unwrap());
    text.push_str("é and more");
    std::fs::write(&cut, text).unwrap();
    let e = Policy::load(&cut).unwrap_err();
    assert!(matches!(e, PolicyError::FileTooLarge { .. }), "{e}");
    assert!(e.to_string().ends_with("is over 1048576 bytes"), "{e}");

    let e = Policy::load(dir.path().join("missing.toml")).unwrap_err();
    assert!(matches!(e, PolicyError::Io { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Deciding

#[test]
fn policy_and_decision_can_cross_threads() {
    fn check<T: Send + Sync>() {}
    check::<Policy>();
    check::<Decision>();
}

#[test]
fn exact_id_rule() {
    let p = policy(&rule(
        "id = \"web\"\nsubject = \"spiffe://example.org/web\"\nregistry = \"local\"\nrepositories = [\"apps/web\"]\nactions = [\"pull\", \"push\"]",
    ));
    assert_eq!(
        grant(
            &p,
            "spiffe://example.org/web",
            &["repository:apps/web:pull,push,delete"]
        ),
        "repository:apps/web:pull,push"
    );
    assert_eq!(
        grant(
            &p,
            "spiffe://example.org/web2",
            &["repository:apps/web:pull"]
        ),
        ""
    );
    assert_eq!(
        grant(
            &p,
            "spiffe://example.org/web/x",
            &["repository:apps/web:pull"]
        ),
        ""
    );
    assert_eq!(
        grant(&p, "spiffe://other.org/web", &["repository:apps/web:pull"]),
        ""
    );
    assert_eq!(
        grant(
            &p,
            "spiffe://example.org/web",
            &["repository:apps/api:pull"]
        ),
        ""
    );
}

#[test]
fn trust_domain_rule() {
    let p = policy(&rule(
        "id = \"td\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"public/*\"]\nactions = [\"pull\"]",
    ));
    assert_eq!(
        grant(
            &p,
            "spiffe://example.org/any/thing",
            &["repository:public/a:pull"]
        ),
        "repository:public/a:pull"
    );
    assert_eq!(
        grant(&p, "spiffe://example.org", &["repository:public/a:pull"]),
        "repository:public/a:pull"
    );
    assert_eq!(
        grant(&p, "spiffe://example.com/x", &["repository:public/a:pull"]),
        ""
    );
    assert_eq!(
        grant(
            &p,
            "spiffe://example.org/x",
            &["repository:public/a/b:pull"]
        ),
        ""
    );
}

#[test]
fn pattern_rule_with_captures() {
    let p = policy(TEAMS);
    let web = "spiffe://example.org/ns/prod/sa/web";
    assert_eq!(
        grant(&p, web, &["repository:team-prod/app:pull"]),
        "repository:team-prod/app:pull"
    );
    assert_eq!(grant(&p, web, &["repository:team-dev/app:pull"]), "");
    assert_eq!(grant(&p, web, &["repository:team-prod:pull"]), "");
    assert_eq!(grant(&p, web, &["repository:team-prod/a/b:pull"]), "");
    assert_eq!(
        grant(
            &p,
            "spiffe://example.org/ns/prod/sa/web/x",
            &["repository:team-prod/app:pull"]
        ),
        ""
    );
    assert_eq!(
        grant(
            &p,
            "spiffe://example.org/ns/dev/sa/api",
            &["repository:team-dev/app:pull"]
        ),
        "repository:team-dev/app:pull"
    );
}

#[test]
fn star_and_double_star_repositories() {
    let p = policy(&rule(
        "id = \"m\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"mirror/**\", \"tools/*\"]\nactions = [\"pull\"]",
    ));
    let who = "spiffe://example.org/ci";
    assert_eq!(
        grant(&p, who, &["repository:mirror/a:pull"]),
        "repository:mirror/a:pull"
    );
    assert_eq!(
        grant(&p, who, &["repository:mirror/a/b/c:pull"]),
        "repository:mirror/a/b/c:pull"
    );
    assert_eq!(grant(&p, who, &["repository:mirror:pull"]), "");
    assert_eq!(
        grant(&p, who, &["repository:tools/x:pull"]),
        "repository:tools/x:pull"
    );
    assert_eq!(grant(&p, who, &["repository:tools/x/y:pull"]), "");

    let p = policy(&rule(
        "id = \"all\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"**\"]\nactions = [\"pull\"]\nwhole_registry = true",
    ));
    assert_eq!(
        grant(&p, who, &["repository:a:pull", "repository:x/y/z:pull"]),
        "repository:a:pull repository:x/y/z:pull"
    );
}

const ALLOW_ALL_PROD: &str = r#"
[[rules]]
id = "prod-rw"
subject = "spiffe://example.org/ns/prod/sa/*"
registry = "local"
repositories = ["team-prod/**"]
actions = ["*"]
"#;

const DENY_PUSH_RELEASE: &str = r#"
[[rules]]
id = "no-push-release"
trust_domain = "example.org"
registry = "local"
repositories = ["team-prod/release/*"]
actions = ["push", "delete"]
effect = "deny"
"#;

#[test]
fn deny_overrides_allow_in_either_order() {
    let a = policy(&format!("{ALLOW_ALL_PROD}{DENY_PUSH_RELEASE}"));
    let b = policy(&format!("{DENY_PUSH_RELEASE}{ALLOW_ALL_PROD}"));
    let req = parse_scopes([
        "repository:team-prod/release/app:pull,push,delete repository:team-prod/dev/app:pull,push",
    ])
    .unwrap();
    let who = id("spiffe://example.org/ns/prod/sa/ci");
    let da = a.decide(&who, "registry.local", &req).unwrap();
    let db = b.decide(&who, "registry.local", &req).unwrap();
    assert_eq!(da, db);
    assert_eq!(
        da.granted_scope(),
        "repository:team-prod/dev/app:pull,push repository:team-prod/release/app:pull"
    );
    let t = &da.trace[1];
    assert_eq!(t.requested.name, "team-prod/release/app");
    assert_eq!(t.allowed_by.len(), 1);
    assert_eq!(&*t.allowed_by[0].rule, "prod-rw");
    assert_eq!(t.allowed_by[0].actions.to_string(), "delete,pull,push");
    assert_eq!(&*t.denied_by[0].rule, "no-push-release");
    assert_eq!(t.denied_by[0].actions.to_string(), "delete,push");
}

#[test]
fn deny_withdraws_star() {
    let p = policy(&format!("{ALLOW_ALL_PROD}{DENY_PUSH_RELEASE}"));
    let who = "spiffe://example.org/ns/prod/sa/ci";
    // `*` satisfies push at the registry, so a push denial must take `*` away too.
    assert_eq!(grant(&p, who, &["repository:team-prod/release/app:*"]), "");
    assert_eq!(
        grant(&p, who, &["repository:team-prod/release/app:*,pull"]),
        "repository:team-prod/release/app:pull"
    );
    assert_eq!(
        grant(&p, who, &["repository:team-prod/dev/app:*"]),
        "repository:team-prod/dev/app:*"
    );
}

#[test]
fn deny_star_denies_everything() {
    let p = policy(&format!(
        "{ALLOW_ALL_PROD}{}",
        rule(
            "id = \"freeze\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"team-prod/frozen\"]\nactions = [\"*\"]\neffect = \"deny\""
        )
    ));
    assert_eq!(
        grant(
            &p,
            "spiffe://example.org/ns/prod/sa/ci",
            &["repository:team-prod/frozen:pull,push,delete,*"]
        ),
        ""
    );
}

#[test]
fn default_deny() {
    let p = policy(TEAMS);
    let req = parse_scopes(["repository:elsewhere/app:pull"]).unwrap();
    let d = p
        .decide(
            &id("spiffe://example.org/ns/prod/sa/web"),
            "registry.local",
            &req,
        )
        .unwrap();
    assert!(d.is_empty());
    assert_eq!(d.trace.len(), 1);
    assert!(d.trace[0].allowed_by.is_empty() && d.trace[0].denied_by.is_empty());
    assert!(
        d.explain().contains("denied by default: no rule matched"),
        "{}",
        d.explain()
    );
    // A policy without rules denies everything.
    let empty = policy("");
    assert_eq!(
        grant(&empty, "spiffe://example.org/a", &["repository:a:pull"]),
        ""
    );
}

#[test]
fn partial_grant_is_not_an_error() {
    let p = policy(TEAMS);
    let web = "spiffe://example.org/ns/prod/sa/web";
    assert_eq!(
        grant(
            &p,
            web,
            &[
                "repository:team-prod/app:pull,push",
                "repository:team-dev/app:pull"
            ]
        ),
        "repository:team-prod/app:pull"
    );
}

#[test]
fn catalog_grant_and_absence() {
    let catalog = rule(
        "id = \"catalog\"\nsubject = \"spiffe://example.org/admin\"\nregistry = \"local\"\nactions = [\"registry:catalog:*\"]",
    );
    let everything = rule(
        "id = \"admin-all\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"**\"]\nactions = [\"*\"]\nwhole_registry = true",
    );
    let p = policy(&format!("{catalog}{everything}"));
    assert_eq!(
        grant(&p, "spiffe://example.org/admin", &["registry:catalog:*"]),
        "registry:catalog:*"
    );
    // `*` on every repository is not the catalog.
    assert_eq!(
        grant(&p, "spiffe://example.org/other", &["registry:catalog:*"]),
        ""
    );
    // The catalog grant is `*` only, and says nothing about repositories named "catalog".
    assert_eq!(
        grant(&p, "spiffe://example.org/admin", &["registry:catalog:pull"]),
        ""
    );
    let p = policy(&catalog);
    assert_eq!(
        grant(
            &p,
            "spiffe://example.org/admin",
            &["repository:catalog:pull"]
        ),
        ""
    );
    assert_eq!(
        grant(&p, "spiffe://example.org/admin", &["registry:other:*"]),
        ""
    );

    let deny = rule(
        "id = \"no-catalog\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nactions = [\"registry:catalog:*\"]\neffect = \"deny\"",
    );
    let p = policy(&format!("{catalog}{deny}"));
    assert_eq!(
        grant(&p, "spiffe://example.org/admin", &["registry:catalog:*"]),
        ""
    );
}

#[test]
fn star_semantics() {
    let star = policy(&rule(
        "id = \"s\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"a\"]\nactions = [\"*\"]",
    ));
    let named = policy(&rule(
        "id = \"n\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"a\"]\nactions = [\"pull\", \"push\", \"delete\"]",
    ));
    let who = "spiffe://example.org/x";
    assert_eq!(
        grant(&star, who, &["repository:a:pull,push,delete,*"]),
        "repository:a:*,delete,pull,push"
    );
    assert_eq!(
        grant(&named, who, &["repository:a:pull,push,delete,*"]),
        "repository:a:delete,pull,push"
    );
    assert_eq!(grant(&named, who, &["repository:a:*"]), "");
    // Unknown actions are never granted, even by `*`.
    assert_eq!(
        grant(&star, who, &["repository:a:mount,pull"]),
        "repository:a:pull"
    );
    assert_eq!(grant(&star, who, &["repository:a:mount"]), "");
    assert_eq!(grant(&star, who, &["repository:a:"]), "");
}

#[test]
fn plugin_type_is_covered_and_kept() {
    let p = policy(TEAMS);
    assert_eq!(
        grant(
            &p,
            "spiffe://example.org/ns/prod/sa/web",
            &["repository(plugin):team-prod/sshfs:pull"]
        ),
        "repository(plugin):team-prod/sshfs:pull"
    );
}

#[test]
fn rules_of_other_registries_do_not_apply() {
    let p = policy(&rule(
        "id = \"o\"\ntrust_domain = \"example.org\"\nregistry = \"other\"\nrepositories = [\"a\"]\nactions = [\"pull\"]",
    ));
    assert_eq!(
        grant(&p, "spiffe://example.org/x", &["repository:a:pull"]),
        ""
    );
    let req = parse_scopes(["repository:a:pull"]).unwrap();
    let d = p
        .decide(&id("spiffe://example.org/x"), "registry.other", &req)
        .unwrap();
    assert_eq!(d.granted_scope(), "repository:a:pull");
    assert_eq!(d.registry.name(), "other");
    assert_eq!(d.registry.token_ttl(), Duration::from_secs(120));
}

#[test]
fn unknown_service() {
    let p = policy(TEAMS);
    let e = p
        .decide(&id("spiffe://example.org/a"), "registry.nope", &[])
        .unwrap_err();
    assert_eq!(
        e,
        DecisionError::UnknownService {
            service: "registry.nope".into()
        }
    );
    let long = "é".repeat(MAX_SERVICE_LEN);
    let DecisionError::UnknownService { service } = p
        .decide(&id("spiffe://example.org/a"), &long, &[])
        .unwrap_err()
    else {
        panic!()
    };
    assert!(service.len() <= MAX_SERVICE_LEN);
}

#[test]
fn too_many_scopes() {
    let p = policy(TEAMS);
    let one = parse_scopes(["repository:a:pull"]).unwrap();
    let req = vec![one[0].clone(); MAX_SCOPES + 1];
    let e = p
        .decide(&id("spiffe://example.org/a"), "registry.local", &req)
        .unwrap_err();
    assert_eq!(
        e,
        DecisionError::TooManyScopes {
            count: MAX_SCOPES + 1,
            max: MAX_SCOPES
        }
    );
}

#[test]
fn unmerged_requests_are_merged_in_the_grant() {
    let p = policy(&rule(
        "id = \"s\"\ntrust_domain = \"example.org\"\nregistry = \"local\"\nrepositories = [\"a\"]\nactions = [\"*\"]",
    ));
    let req = vec![
        ResourceScope::parse("repository:a:push").unwrap(),
        ResourceScope::parse("repository:a:pull").unwrap(),
    ];
    let d = p
        .decide(&id("spiffe://example.org/x"), "registry.local", &req)
        .unwrap();
    assert_eq!(d.granted_scope(), "repository:a:pull,push");
    assert_eq!(d.trace.len(), 2);
}

#[test]
fn explain_names_the_deciding_rules() {
    let p = policy(&format!("{TEAMS}{ALLOW_ALL_PROD}{DENY_PUSH_RELEASE}"));
    let req = parse_scopes([
        "repository:team-prod/release/app:pull,push",
        "repository:nowhere/app:pull",
        "repository:team-prod/x:pull,mount",
    ])
    .unwrap();
    let d = p
        .decide(
            &id("spiffe://example.org/ns/prod/sa/ci"),
            "registry.local",
            &req,
        )
        .unwrap();
    let text = d.explain();
    let want = "\
subject:  spiffe://example.org/ns/prod/sa/ci
registry: local (service registry.local, issuer svid-broker, profile distribution-2, token ttl 300s)
granted:  repository:team-prod/release/app:pull repository:team-prod/x:pull

requested repository:nowhere/app:pull
  granted: nothing
  denied by default: no rule matched

requested repository:team-prod/release/app:pull,push
  granted: pull
  allowed pull,push by rule prod-rw
  denied push by rule no-push-release

requested repository:team-prod/x:mount,pull
  granted: pull
  allowed pull by rule prod-rw
  allowed pull by rule teams-pull-own-namespace
  denied mount: not an action policy can grant
";
    assert_eq!(text, want);
    assert_eq!(d.to_string(), want);

    // A partly decided scope names what fell to the default.
    let d = p
        .decide(
            &id("spiffe://example.org/ns/dev/sa/web"),
            "registry.local",
            &parse_scopes(["repository:team-dev/a:pull,push"]).unwrap(),
        )
        .unwrap();
    assert!(d.explain().contains("  allowed pull by rule teams-pull-own-namespace\n  denied push by default: no rule matched\n"), "{}", d.explain());
    let d = p
        .decide(&id("spiffe://example.org/a"), "registry.local", &[])
        .unwrap();
    assert!(
        d.explain()
            .contains("granted:  nothing\nno scopes requested\n"),
        "{}",
        d.explain()
    );
}

mod shuffle {
    use super::*;
    use proptest::prelude::*;

    const RULES: &[&str] = &[
        TEAMS,
        ALLOW_ALL_PROD,
        DENY_PUSH_RELEASE,
        r#"
[[rules]]
id = "ci-push-teams"
subject = "spiffe://example.org/ns/{ns}/sa/ci"
registry = "local"
repositories = ["team-{ns}/**"]
actions = ["push", "pull"]
"#,
        r#"
[[rules]]
id = "deny-dev-delete"
subject = "spiffe://example.org/ns/dev/sa/*"
registry = "local"
repositories = ["**"]
actions = ["delete"]
effect = "deny"
"#,
        r#"
[[rules]]
id = "admin"
subject = "spiffe://example.org/admin"
registry = "local"
repositories = ["**"]
actions = ["*"]
whole_registry = true
"#,
        r#"
[[rules]]
id = "admin-catalog"
subject = "spiffe://example.org/admin"
registry = "local"
actions = ["registry:catalog:*"]
"#,
        r#"
[[rules]]
id = "freeze"
trust_domain = "example.org"
registry = "local"
repositories = ["team-prod/frozen"]
actions = ["*"]
effect = "deny"
"#,
        r#"
[[rules]]
id = "other-td-pull"
trust_domain = "other.org"
registry = "local"
repositories = ["team-prod/*"]
actions = ["pull"]
"#,
    ];

    const SUBJECTS: &[&str] = &[
        "spiffe://example.org/ns/prod/sa/ci",
        "spiffe://example.org/ns/prod/sa/web",
        "spiffe://example.org/ns/dev/sa/ci",
        "spiffe://example.org/admin",
        "spiffe://other.org/x",
    ];

    const SCOPES: &[&str] = &[
        "repository:team-prod/app:pull,push,delete,*",
        "repository:team-prod/release/app:*",
        "repository:team-prod/frozen:pull",
        "repository:team-dev/a/b:delete,push",
        "repository:team-dev/x:pull",
        "registry:catalog:*",
        "repository(plugin):team-prod/p:pull",
        "repository:elsewhere:pull,push",
    ];

    proptest! {
        #[test]
        fn rule_order_never_changes_a_decision(
            order in Just((0..RULES.len()).collect::<Vec<_>>()).prop_shuffle(),
            subject in 0..SUBJECTS.len(),
            scopes in proptest::sample::subsequence((0..SCOPES.len()).collect::<Vec<_>>(), 0..=SCOPES.len()),
        ) {
            let base = policy(&RULES.concat());
            let shuffled = policy(&order.iter().map(|&i| RULES[i]).collect::<String>());
            let req = parse_scopes(scopes.iter().map(|&i| SCOPES[i])).unwrap();
            let who = id(SUBJECTS[subject]);
            let a = base.decide(&who, "registry.local", &req).unwrap();
            let b = shuffled.decide(&who, "registry.local", &req).unwrap();
            prop_assert_eq!(a.explain(), b.explain());
            prop_assert_eq!(a, b);
        }
    }
}

#[test]
fn has_allow_rule_matches_subjects_with_an_allow_rule_only() {
    let p = policy(&format!(
        "{TEAMS}\n[[rules]]\nid = \"deny-bad\"\nsubject = \"spiffe://example.org/ns/bad/sa/x\"\nregistry = \"local\"\nrepositories = [\"team-bad/*\"]\nactions = [\"push\"]\neffect = \"deny\"\n"
    ));
    let ok = id("spiffe://example.org/ns/prod/sa/web");
    assert!(p.has_allow_rule(&ok, "registry.local").unwrap());
    // Matches no subject pattern.
    assert!(
        !p.has_allow_rule(&id("spiffe://example.org/other"), "registry.local")
            .unwrap()
    );
    // Another trust domain.
    assert!(
        !p.has_allow_rule(&id("spiffe://other.org/ns/prod/sa/web"), "registry.local")
            .unwrap()
    );
    // The rule is for another registry.
    assert!(!p.has_allow_rule(&ok, "registry.other").unwrap());
    assert!(matches!(
        p.has_allow_rule(&ok, "nope"),
        Err(DecisionError::UnknownService { .. })
    ));
}

// Registry kinds: which keys each kind takes, and the project-wide rule for Harbor.

const HARBOR: &str = r#"
[[registries]]
name = "corp"
service = "harbor-registry"
kind = "harbor"
url = "https://harbor.example.org"
credential_file = "/etc/svid-broker/harbor.credential"
token_ttl_seconds = 600
hosts = ["harbor.example.org"]
"#;

fn kinds_policy(registries: &str, rules: &str) -> Result<Policy, PolicyError> {
    Policy::from_toml_str(&format!("{registries}\n{rules}"))
}

#[test]
fn a_registry_without_kind_is_the_token_kind() {
    let p = policy("");
    let local = p.registry_by_name("local").unwrap();
    assert_eq!(local.kind(), RegistryKind::Token);
    assert!(local.api().is_none());
}

#[test]
fn a_harbor_registry_needs_url_and_credential_file_and_takes_no_issuer_or_profile() {
    let p = kinds_policy(HARBOR, "").unwrap();
    let corp = p.registry_by_name("corp").unwrap();
    assert_eq!(corp.kind(), RegistryKind::Harbor);
    assert_eq!(corp.issuer(), None);
    assert_eq!(corp.profile(), None);
    let api = corp.api().unwrap();
    assert_eq!(api.url(), "https://harbor.example.org");
    assert_eq!(
        api.credential_file(),
        Some(Path::new("/etc/svid-broker/harbor.credential"))
    );
    assert_eq!(api.ca_file(), None);
    assert_eq!(corp.token_ttl(), Duration::from_secs(600));

    let without = |key: &str| {
        HARBOR
            .lines()
            .filter(|l| !l.starts_with(key))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (key, field) in [("url", "url"), ("credential_file", "credential_file")] {
        match kinds_policy(&without(key), "") {
            Err(PolicyError::FieldRequiredForKind {
                field: f,
                kind: RegistryKind::Harbor,
                ..
            }) => assert_eq!(f, field),
            other => panic!("{key}: {other:?}"),
        }
    }
    for extra in ["issuer = \"x\"", "profile = \"distribution-2\""] {
        let text = HARBOR.replace("kind = \"harbor\"", &format!("kind = \"harbor\"\n{extra}"));
        let err = kinds_policy(&text, "").unwrap_err();
        assert!(
            matches!(err, PolicyError::FieldNotForKind { .. }),
            "{extra}: {err:?}"
        );
        assert!(
            err.to_string()
                .contains("does not apply to kind = \"harbor\""),
            "{err}"
        );
    }
}

#[test]
fn the_token_kind_refuses_api_keys_and_requires_issuer_and_profile() {
    let base = REGISTRIES.split("[[registries]]").nth(1).unwrap();
    let base = format!("[[registries]]{base}");
    for extra in [
        "url = \"https://r.example.org\"",
        "credential_file = \"/etc/x\"",
        "ca_file = \"/etc/ca.pem\"",
    ] {
        let text = base.replace("name = \"local\"", &format!("name = \"local\"\n{extra}"));
        let err = kinds_policy(&text, "").unwrap_err();
        assert!(
            matches!(
                err,
                PolicyError::FieldNotForKind {
                    kind: RegistryKind::Token,
                    ..
                }
            ),
            "{extra}: {err:?}"
        );
    }
    let text = base.replace("issuer = \"svid-broker\"\n", "");
    assert!(matches!(
        kinds_policy(&text, "").unwrap_err(),
        PolicyError::FieldRequiredForKind {
            field: "issuer",
            ..
        }
    ));
}

#[test]
fn quay_and_artifactory_refuse_a_credential_file_and_every_kind_parses() {
    for kind in RegistryKind::ALL {
        if kind == RegistryKind::Token {
            continue;
        }
        let mut text = with_federation_keys(
            &HARBOR.replace("kind = \"harbor\"", &format!("kind = \"{kind}\"")),
            kind,
        );
        if !kind.needs_credential_file() {
            let err = kinds_policy(&text, "").unwrap_err();
            assert!(
                matches!(
                    err,
                    PolicyError::FieldNotForKind {
                        field: "credential_file",
                        ..
                    }
                ),
                "{kind}: {err:?}"
            );
            text = text
                .lines()
                .filter(|l| !l.starts_with("credential_file"))
                .collect::<Vec<_>>()
                .join("\n");
        }
        if kind == RegistryKind::Nexus {
            text = text.replace(
                "kind = \"nexus\"",
                "kind = \"nexus\"\npull_role = \"docker-pull\"\npush_role = \"docker-push\"",
            );
        }
        let p = kinds_policy(&text, "").unwrap_or_else(|e| panic!("{kind}: {e}"));
        let corp = p.registry_by_name("corp").unwrap();
        assert_eq!(corp.kind(), kind);
        let roles = corp.api().unwrap().nexus_roles();
        assert_eq!(
            roles,
            (kind == RegistryKind::Nexus).then_some(("docker-pull", "docker-push"))
        );
    }
}

#[test]
fn nexus_needs_both_roles_and_nobody_else_takes_them() {
    let nexus = HARBOR.replace("kind = \"harbor\"", "kind = \"nexus\"\npull_role = \"p\"");
    assert!(matches!(
        kinds_policy(&nexus, ""),
        Err(PolicyError::FieldRequiredForKind {
            field: "push_role",
            ..
        })
    ));
    let bad = nexus.replace("pull_role = \"p\"", "pull_role = \"\"\npush_role = \"q\"");
    assert!(matches!(
        kinds_policy(&bad, ""),
        Err(PolicyError::InvalidRole {
            field: "pull_role",
            ..
        })
    ));
    let harbor_with_role =
        HARBOR.replace("kind = \"harbor\"", "kind = \"harbor\"\npull_role = \"p\"");
    assert!(matches!(
        kinds_policy(&harbor_with_role, ""),
        Err(PolicyError::FieldNotForKind {
            field: "pull_role",
            ..
        })
    ));
}

#[test]
fn each_kind_takes_only_rules_written_at_the_reach_of_its_credentials() {
    let registry = |kind: &str| {
        let mut text = HARBOR.replace("kind = \"harbor\"", &format!("kind = \"{kind}\""));
        if kind == "nexus" {
            text = text.replace(
                "kind = \"nexus\"",
                "kind = \"nexus\"\npull_role = \"p\"\npush_role = \"q\"",
            );
        }
        if kind == "quay" || kind == "artifactory" {
            text = text
                .lines()
                .filter(|l| !l.starts_with("credential_file"))
                .collect::<Vec<_>>()
                .join("\n");
            let kind = if kind == "quay" {
                RegistryKind::Quay
            } else {
                RegistryKind::Artifactory
            };
            text = with_federation_keys(&text, kind);
        }
        text
    };
    let rule = |repos: &str, whole: bool| {
        format!(
            "[[rules]]\nid = \"r\"\ntrust_domain = \"example.org\"\nregistry = \"corp\"\n\
             repositories = [{repos}]\nactions = [\"pull\"]\n{}",
            if whole { "whole_registry = true\n" } else { "" }
        )
    };
    for (kind, pattern, whole, fits) in [
        ("harbor", r#""team-a/**""#, false, true),
        ("harbor", r#""group/team-a/**""#, false, false),
        ("gitlab", r#""group/project/**""#, false, true),
        ("gitlab", r#""group/*/**""#, false, true),
        ("gitlab", r#""group/**""#, false, false),
        ("gitlab", r#""group/project/app""#, false, false),
        ("nexus", r#""**""#, true, true),
        ("nexus", r#""team-a/**""#, false, false),
        ("quay", r#""team-a/**""#, false, true),
        ("quay", r#""team-a/app""#, false, false),
        ("artifactory", r#""**""#, true, true),
        ("artifactory", r#""docker-local/**""#, false, false),
    ] {
        let result = kinds_policy(&registry(kind), &rule(pattern, whole));
        match (fits, result) {
            (true, Ok(_)) => {}
            (false, Err(PolicyError::PatternNarrowerThanReach { .. })) => {}
            (fits, other) => panic!("{kind} {pattern}: expected fits={fits}, got {other:?}"),
        }
    }
}

#[test]
fn api_urls_must_be_https_unless_loopback_and_carry_no_credentials() {
    let with_url = |url: &str| HARBOR.replace("https://harbor.example.org", url);
    for ok in [
        "https://harbor.example.org/",
        "https://harbor.example.org:8443",
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://[::1]:8080",
        "https://[2001:db8::1]:443",
    ] {
        let p = kinds_policy(&with_url(ok), "").unwrap_or_else(|e| panic!("{ok}: {e}"));
        let api = p
            .registry_by_name("corp")
            .unwrap()
            .api()
            .unwrap()
            .url()
            .to_owned();
        assert!(!api.ends_with('/'), "{api}");
    }
    for (bad, rule) in [
        ("http://harbor.example.org", "only on a loopback"),
        ("http://10.0.0.1", "only on a loopback"),
        ("http://localhost:1", "only on a loopback"),
        ("http://127.0.0.1.evil.example", "only on a loopback"),
        ("http://[::ffff:127.0.0.1]", "only on a loopback"),
        ("ftp://harbor.example.org", "scheme"),
        ("harbor.example.org", "scheme"),
        ("https://admin:pw@harbor.example.org", "credential_file"),
        ("https://admin:pw#x@harbor.example.org", "fragment"),
        ("https://harbor.example.org?x=1", "query"),
        ("https://harbor.example.org#f", "fragment"),
        ("https://", "no host"),
        ("https://h:0", "port"),
        ("https://h:99999", "port"),
        ("https://h:abc", "port"),
        ("https://[::1", "IPv6"),
        ("https://h/\u{202e}x", "printable"),
    ] {
        match kinds_policy(&with_url(bad), "") {
            Err(e @ PolicyError::InvalidApiUrl { reason, .. }) => {
                assert!(reason.contains(rule), "{bad}: {reason}");
                // Refused for carrying a password, the message must not repeat it.
                assert!(!e.to_string().contains("admin:pw"), "{e}");
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    let long = format!("https://h/{}", "a".repeat(MAX_API_URL_LEN));
    assert!(matches!(
        kinds_policy(&with_url(&long), ""),
        Err(PolicyError::InvalidApiUrl { .. })
    ));
    let relative = HARBOR.replace("/etc/svid-broker/harbor.credential", "harbor.credential");
    assert!(matches!(
        kinds_policy(&relative, ""),
        Err(PolicyError::InvalidPath {
            field: "credential_file",
            ..
        })
    ));
}

#[test]
fn harbor_rules_must_be_project_wide_because_a_robot_names_a_whole_project() {
    let rule = |repos: &str, effect: &str| {
        format!(
            r#"
[[rules]]
id = "r"
subject = "spiffe://example.org/ns/{{ns}}/sa/*"
registry = "corp"
repositories = [{repos}]
actions = ["pull"]
effect = "{effect}"
"#
        )
    };
    for ok in [r#""team-{ns}/**""#, r#""shared/**", "team-{ns}/**""#] {
        kinds_policy(HARBOR, &rule(ok, "allow")).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, effect) in [
        (r#""team-{ns}/app""#, "allow"),
        (r#""team-{ns}/*""#, "allow"),
        (r#""shared/**", "team-{ns}/x/**""#, "allow"),
        (r#""team-{ns}/secret""#, "deny"),
    ] {
        let err = kinds_policy(HARBOR, &rule(bad, effect)).unwrap_err();
        let PolicyError::PatternNarrowerThanReach { pattern, .. } = &err else {
            panic!("{bad}: {err:?}");
        };
        assert!(bad.contains(pattern.as_str()), "{pattern}");
        assert!(err.to_string().contains("reach whole projects"), "{err}");
    }
    let p = kinds_policy(
        HARBOR,
        &rule(r#""shared/**", "team-{ns}/**", "base/**""#, "allow"),
    )
    .unwrap();
    assert_eq!(p.literal_projects("corp"), ["base", "shared"]);
    assert!(
        !p.names_every_project_literally("corp"),
        "team-{{ns}} is a template"
    );
    let literal = kinds_policy(
        HARBOR,
        "[[rules]]\nid = \"l\"\ntrust_domain = \"example.org\"\nregistry = \"corp\"\n\
         repositories = [\"shared/**\", \"base/**\"]\nactions = [\"pull\"]\n",
    )
    .unwrap();
    assert!(literal.names_every_project_literally("corp"));
    assert!(p.literal_projects("nowhere").is_empty());
    let catalog = r#"
[[rules]]
id = "cat"
trust_domain = "example.org"
registry = "corp"
actions = ["registry:catalog:*"]
"#;
    assert!(matches!(
        kinds_policy(HARBOR, catalog),
        Err(PolicyError::CatalogNotForKind { .. })
    ));
    // The same narrow rule is fine for a registry the broker signs tokens for.
    policy(
        r#"
[[rules]]
id = "narrow"
subject = "spiffe://example.org/ns/a/sa/b"
registry = "local"
repositories = ["team-a/app"]
actions = ["pull"]
"#,
    );
}

/// `text` (one registry of `kind`) with the keys a federated kind requires.
fn with_federation_keys(text: &str, kind: RegistryKind) -> String {
    let kind_line = format!("kind = \"{kind}\"");
    match kind {
        RegistryKind::Quay => text.replace(
            &kind_line,
            &format!("{kind_line}\npull_robot = \"svid_pull\"\npush_robot = \"svid_push\""),
        ),
        RegistryKind::Artifactory => text.replace(
            &kind_line,
            &format!("{kind_line}\nprovider_name = \"svid-broker\""),
        ),
        RegistryKind::Ecr => without_url(text).replace(
            &kind_line,
            &format!(
                "{kind_line}\naws.role_arn = \"arn:aws:iam::123456789012:role/puller\"\naws.region = \"us-east-1\""
            ),
        ),
        RegistryKind::Gar => without_url(text).replace(
            &kind_line,
            &format!(
                "{kind_line}\ngcp.workload_identity_provider = \"{GCP_PROVIDER}\"\ngcp.service_account = \"puller@proj.iam.gserviceaccount.com\""
            ),
        ),
        RegistryKind::Acr => text.replace(
            &kind_line,
            &format!("{kind_line}\nazure.tenant_id = \"{AZURE_TENANT}\"\nazure.client_id = \"{AZURE_CLIENT}\""),
        ),
        _ => text.to_owned(),
    }
}

const GCP_PROVIDER: &str = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/pool/providers/broker";
const AZURE_TENANT: &str = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b";
const AZURE_CLIENT: &str = "11111111-2222-3333-4444-555555555555";

/// `text` without its `url` line (ECR and Artifact Registry entries have none).
fn without_url(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("url"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn federated(kind: &str, extra: &str) -> String {
    let text = HARBOR
        .replace("kind = \"harbor\"", &format!("kind = \"{kind}\"\n{extra}"))
        .lines()
        .filter(|l| !l.starts_with("credential_file"))
        .collect::<Vec<_>>()
        .join("\n");
    format!("{text}\n")
}

#[test]
fn quay_needs_both_robots_and_reads_the_jwt_keys() {
    let p = kinds_policy(
        &federated(
            "quay",
            "pull_robot = \"svid_pull\"\npush_robot = \"svid_push\"\n\
             jwt_audience = \"quay.example.org\"\njwt_subject = \"svid-broker:{project}:{access}\"",
        ),
        "",
    )
    .unwrap();
    let federation = p
        .registry_by_name("corp")
        .unwrap()
        .api()
        .unwrap()
        .federation()
        .unwrap();
    assert_eq!(federation.quay_robots(), Some(("svid_pull", "svid_push")));
    assert_eq!(federation.audience(), Some("quay.example.org"));
    assert_eq!(
        federation.subject_template(),
        Some("svid-broker:{project}:{access}")
    );
    assert_eq!(federation.provider_name(), None);

    assert!(matches!(
        kinds_policy(&federated("quay", "pull_robot = \"svid_pull\""), ""),
        Err(PolicyError::FieldRequiredForKind {
            field: "push_robot",
            ..
        })
    ));
    for bad in ["Svid", "s", "svid--pull", "org+svid", "_svid", "svid."] {
        let text = federated(
            "quay",
            &format!("pull_robot = \"{bad}\"\npush_robot = \"svid_push\""),
        );
        assert!(
            matches!(
                kinds_policy(&text, ""),
                Err(PolicyError::InvalidRobotName {
                    field: "pull_robot",
                    ..
                })
            ),
            "{bad}"
        );
    }
}

#[test]
fn artifactory_needs_a_provider_and_no_robots() {
    let p = kinds_policy(
        &federated("artifactory", "provider_name = \"svid-broker\""),
        "",
    )
    .unwrap();
    let federation = p
        .registry_by_name("corp")
        .unwrap()
        .api()
        .unwrap()
        .federation()
        .unwrap();
    assert_eq!(federation.provider_name(), Some("svid-broker"));
    assert_eq!(federation.audience(), None);
    assert_eq!(federation.subject_template(), None);
    assert!(matches!(
        kinds_policy(&federated("artifactory", ""), ""),
        Err(PolicyError::FieldRequiredForKind {
            field: "provider_name",
            ..
        })
    ));
    assert!(matches!(
        kinds_policy(
            &federated(
                "artifactory",
                "provider_name = \"p\"\npull_robot = \"svid_pull\""
            ),
            ""
        ),
        Err(PolicyError::FieldNotForKind {
            field: "pull_robot",
            ..
        })
    ));
}

#[test]
fn subject_templates_use_only_the_kinds_placeholders() {
    for (kind, extra, template, ok) in [
        ("artifactory", "provider_name = \"p\"", "{spiffe_id}", true),
        (
            "artifactory",
            "provider_name = \"p\"",
            "svid:{access}",
            true,
        ),
        ("artifactory", "provider_name = \"p\"", "{project}", false),
        ("artifactory", "provider_name = \"p\"", "{spiffe_id", false),
        ("artifactory", "provider_name = \"p\"", "a}b", false),
        (
            "artifactory",
            "provider_name = \"p\"",
            "a}{spiffe_id}",
            false,
        ),
        (
            "artifactory",
            "provider_name = \"p\"",
            "{spiffe_id}{access}",
            false,
        ),
        (
            "artifactory",
            "provider_name = \"p\"",
            "{spiffe_id}#{access}",
            true,
        ),
        (
            "quay",
            "pull_robot = \"svid_pull\"\npush_robot = \"svid_push\"",
            "{project}/{access}",
            true,
        ),
        (
            "quay",
            "pull_robot = \"svid_pull\"\npush_robot = \"svid_push\"",
            "{namespace}",
            false,
        ),
    ] {
        let text = federated(kind, &format!("{extra}\njwt_subject = \"{template}\""));
        match (ok, kinds_policy(&text, "")) {
            (true, Ok(_)) => {}
            (false, Err(PolicyError::InvalidSubjectTemplate { .. })) => {}
            (ok, other) => panic!("{kind} {template}: expected ok={ok}, got {other:?}"),
        }
    }
}

#[test]
fn the_jwt_keys_belong_to_the_federated_kinds_only() {
    for field in ["jwt_audience", "jwt_subject", "provider_name", "pull_robot"] {
        let harbor = HARBOR.replace(
            "kind = \"harbor\"",
            &format!("kind = \"harbor\"\n{field} = \"x_y\""),
        );
        let err = kinds_policy(&harbor, "").unwrap_err();
        assert!(
            matches!(err, PolicyError::FieldNotForKind { field: f, .. } if f == field),
            "{field}: {err:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Registry-wide requests (decide_every_repository)

/// A Nexus registry "corp" (service "nexus-docker") and a Harbor one "proj" (service
/// "harbor-registry"), with `rules`.
fn registry_wide_policy(rules: &str) -> Policy {
    let nexus = HARBOR
        .replace(
            "kind = \"harbor\"",
            "kind = \"nexus\"\npull_role = \"p\"\npush_role = \"q\"",
        )
        .replace("harbor-registry", "nexus-docker")
        .replace("harbor.example.org\"]", "nexus.example.org\"]");
    let harbor = HARBOR.replace("name = \"corp\"", "name = \"proj\"");
    kinds_policy(&format!("{nexus}\n{harbor}"), rules).unwrap_or_else(|e| panic!("{e}"))
}

const WHOLE_REGISTRY_RULES: &str = r#"
[[rules]]
id = "ci-pushes-everything"
subject = "spiffe://example.org/ci"
registry = "corp"
repositories = ["**"]
whole_registry = true
actions = ["pull", "push"]

[[rules]]
id = "everyone-pulls"
trust_domain = "example.org"
registry = "corp"
repositories = ["**"]
whole_registry = true
actions = ["*"]

[[rules]]
id = "no-push-for-ns-frozen"
subject = "spiffe://example.org/ns/frozen/sa/*"
registry = "corp"
repositories = ["**"]
effect = "deny"
actions = ["push"]

[[rules]]
id = "ci-on-harbor"
subject = "spiffe://example.org/ci"
registry = "proj"
repositories = ["**"]
whole_registry = true
actions = ["pull", "push"]
"#;

#[test]
fn every_repository_scope_is_not_a_repository_name() {
    let every = ResourceScope::every_repository([Action::PUSH, Action::PULL]);
    assert!(every.is_every_repository());
    assert_eq!(every.to_string(), "repository:**:pull,push");
    // A request can never name it: the grammar refuses `**`.
    assert!(ResourceScope::parse("repository:**:pull").is_err());
    assert!(
        !ResourceScope::parse("repository:team/app:pull")
            .unwrap()
            .is_every_repository()
    );
}

#[test]
fn a_registry_wide_request_on_nexus_is_decided_by_the_rules_for_every_repository() {
    let p = registry_wide_policy(WHOLE_REGISTRY_RULES);
    let ci = p
        .decide_every_repository(&id("spiffe://example.org/ci"), "nexus-docker")
        .unwrap();
    assert_eq!(ci.registry.name(), "corp");
    assert_eq!(ci.granted_scope(), "repository:**:pull,push");
    assert!(ci.granted[0].is_every_repository());
    assert_eq!(ci.trace.len(), 1);
    assert_eq!(ci.trace[0].requested.to_string(), "repository:**:pull,push");
    let allowed: Vec<&str> = ci.trace[0].allowed_by.iter().map(|h| &*h.rule).collect();
    assert_eq!(allowed, ["ci-pushes-everything", "everyone-pulls"]);

    // `*` on a rule grants pull and push here, never `*` or `delete`: a backend credential
    // carries only those two.
    let web = p
        .decide_every_repository(&id("spiffe://example.org/ns/shop/sa/web"), "nexus-docker")
        .unwrap();
    assert_eq!(web.granted_scope(), "repository:**:pull,push");
}

#[test]
fn a_deny_rule_for_every_repository_removes_push_from_a_registry_wide_grant() {
    let p = registry_wide_policy(WHOLE_REGISTRY_RULES);
    let frozen = p
        .decide_every_repository(&id("spiffe://example.org/ns/frozen/sa/web"), "nexus-docker")
        .unwrap();
    assert_eq!(frozen.granted_scope(), "repository:**:pull");
    let denied = &frozen.trace[0].denied_by;
    assert_eq!(denied.len(), 1);
    assert_eq!(&*denied[0].rule, "no-push-for-ns-frozen");
    assert_eq!(denied[0].actions.to_string(), "push");
    let explained = frozen.explain();
    assert!(
        explained.contains("granted:  repository:**:pull\n"),
        "{explained}"
    );
    assert!(
        explained.contains("denied push by rule no-push-for-ns-frozen"),
        "{explained}"
    );
}

#[test]
fn a_registry_wide_request_grants_only_what_is_allowed_and_nothing_to_strangers() {
    let pull_only = r#"
[[rules]]
id = "reader"
subject = "spiffe://example.org/reader"
registry = "corp"
repositories = ["**"]
whole_registry = true
actions = ["pull", "delete"]
"#;
    let p = registry_wide_policy(pull_only);
    let reader = p
        .decide_every_repository(&id("spiffe://example.org/reader"), "nexus-docker")
        .unwrap();
    assert_eq!(reader.granted_scope(), "repository:**:pull");
    // Agrees with what `decide` says of any one repository.
    let one = p
        .decide(
            &id("spiffe://example.org/reader"),
            "nexus-docker",
            &parse_scopes(["repository:team/app:pull,push"]).unwrap(),
        )
        .unwrap();
    assert_eq!(one.granted_scope(), "repository:team/app:pull");

    let stranger = p
        .decide_every_repository(&id("spiffe://other.org/reader"), "nexus-docker")
        .unwrap();
    assert!(stranger.is_empty());
    assert_eq!(stranger.trace.len(), 1);
    assert!(stranger.trace[0].allowed_by.is_empty());
    assert!(
        stranger
            .explain()
            .contains("denied by default: no rule matched"),
        "{}",
        stranger.explain()
    );
}

#[test]
fn a_registry_wide_request_is_never_granted_on_a_registry_whose_credentials_are_narrower() {
    let p = registry_wide_policy(WHOLE_REGISTRY_RULES);
    // Harbor: a rule on `**` exists, but a robot is per project, so nothing is granted.
    let harbor = p
        .decide_every_repository(&id("spiffe://example.org/ci"), "harbor-registry")
        .unwrap();
    assert_eq!(harbor.registry.name(), "proj");
    assert!(harbor.is_empty());
    assert!(harbor.trace.is_empty());

    // The token kind: the broker signs per-repository tokens; `**` is no repository.
    let token = policy(
        r#"
[[rules]]
id = "all"
trust_domain = "example.org"
registry = "local"
repositories = ["**"]
whole_registry = true
actions = ["pull"]
"#,
    );
    let decision = token
        .decide_every_repository(&id("spiffe://example.org/x"), "registry.local")
        .unwrap();
    assert!(decision.is_empty() && decision.trace.is_empty());

    assert!(matches!(
        p.decide_every_repository(&id("spiffe://example.org/ci"), "nope"),
        Err(DecisionError::UnknownService { service }) if service == "nope"
    ));
}

#[test]
fn a_registry_wide_request_on_artifactory_is_decided_like_nexus() {
    let p = kinds_policy(
        &federated("artifactory", "provider_name = \"svid-broker\""),
        r#"
[[rules]]
id = "pull-all"
trust_domain = "example.org"
registry = "corp"
repositories = ["**"]
whole_registry = true
actions = ["pull"]
"#,
    )
    .unwrap();
    let d = p
        .decide_every_repository(&id("spiffe://example.org/x"), "harbor-registry")
        .unwrap();
    assert_eq!(d.registry.kind(), RegistryKind::Artifactory);
    assert_eq!(d.granted_scope(), "repository:**:pull");
}

#[test]
fn two_federated_registries_may_not_share_a_jwt_audience() {
    let quay = federated(
        "quay",
        "pull_robot = \"svid_pull\"\npush_robot = \"svid_push\"\njwt_audience = \"shared\"",
    );
    let jfrog = federated(
        "artifactory",
        "provider_name = \"p\"\njwt_audience = \"shared\"",
    )
    .replace("name = \"corp\"", "name = \"jfrog\"")
    .replace("service = \"harbor-registry\"", "service = \"jfrog\"")
    .replace(
        "hosts = [\"harbor.example.org\"]",
        "hosts = [\"jfrog.example.org\"]",
    );
    let err = kinds_policy(&format!("{quay}\n{jfrog}"), "").unwrap_err();
    assert!(
        matches!(&err, PolicyError::SharedJwtAudience { registry, other, audience, .. }
            if registry == "jfrog" && other == "corp" && audience == "shared"),
        "{err:?}"
    );
    // Their own audiences (or their distinct urls) are fine.
    let apart = jfrog.replace("jwt_audience = \"shared\"", "jwt_audience = \"jfrog\"");
    kinds_policy(&format!("{quay}\n{apart}"), "").unwrap();
}

const ECR: &str = r#"
[[registries]]
name = "ecr"
service = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
kind = "ecr"
aws.role_arn = "arn:aws:iam::123456789012:role/svid-puller"
aws.region = "us-east-1"
hosts = ["123456789012.dkr.ecr.us-east-1.amazonaws.com"]
"#;

#[test]
fn a_cloud_entry_reads_its_table_and_derives_its_api_and_audience() {
    let p = kinds_policy(ECR, "").unwrap();
    let ecr = p.registry_by_name("ecr").unwrap();
    let api = ecr.api().unwrap();
    assert_eq!(api.url(), "https://api.ecr.us-east-1.amazonaws.com");
    assert_eq!(api.jwt_audience().as_deref(), Some("sts.amazonaws.com"));
    let Some(CloudAccount::Aws(aws)) = api.cloud() else {
        panic!("{:?}", api.cloud());
    };
    assert_eq!(aws.role_arn, "arn:aws:iam::123456789012:role/svid-puller");
    assert_eq!(
        (aws.sts_endpoint.as_deref(), aws.session_duration_seconds),
        (None, None)
    );

    let text = ECR.replace(
        "aws.region = \"us-east-1\"",
        "aws.region = \"us-east-1\"\naws.sts_endpoint = \"http://127.0.0.1:9000\"\n\
         aws.ecr_endpoint = \"http://127.0.0.1:9001\"\naws.session_duration_seconds = 3600\n\
         aws.session_tags = \"/ns/{namespace}/sa/{service_account}\"",
    );
    let p = kinds_policy(&text, "").unwrap();
    let api = p.registry_by_name("ecr").unwrap().api().unwrap();
    assert_eq!(api.url(), "http://127.0.0.1:9001");
    let Some(CloudAccount::Aws(aws)) = api.cloud() else {
        panic!("{:?}", api.cloud());
    };
    assert_eq!(aws.sts_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(aws.session_duration_seconds, Some(3600));

    let gar = with_federation_keys(
        &HARBOR
            .replace("kind = \"harbor\"", "kind = \"gar\"")
            .lines()
            .filter(|l| !l.starts_with("credential_file"))
            .collect::<Vec<_>>()
            .join("\n"),
        RegistryKind::Gar,
    );
    let p = kinds_policy(&gar, "").unwrap();
    let api = p.registry_by_name("corp").unwrap().api().unwrap();
    assert_eq!(api.url(), "https://iamcredentials.googleapis.com");
    assert_eq!(api.jwt_audience().unwrap(), format!("https:{GCP_PROVIDER}"));
}

#[test]
fn cloud_tables_are_checked_and_belong_to_one_kind() {
    type Case = (&'static str, &'static str, fn(&PolicyError) -> bool);
    let cases: [Case; 8] = [
        ("aws.region = \"us-east-1\"", "", |e| {
            matches!(
                e,
                PolicyError::FieldRequiredForKind {
                    field: "aws.region",
                    ..
                }
            )
        }),
        (
            "arn:aws:iam::123456789012:role/svid-puller",
            "arn:aws:iam::1234:role/x",
            |e| {
                matches!(
                    e,
                    PolicyError::InvalidCloudSetting {
                        field: "aws.role_arn",
                        ..
                    }
                )
            },
        ),
        (
            "aws.region = \"us-east-1\"",
            "aws.region = \"us-east-1\"\naws.sts_endpoint = \"http://sts.example.org\"",
            |e| {
                matches!(
                    e,
                    PolicyError::InvalidApiUrl {
                        field: "aws.sts_endpoint",
                        ..
                    }
                )
            },
        ),
        (
            "aws.region = \"us-east-1\"",
            "aws.region = \"us-east-1\"\naws.session_duration_seconds = 899",
            |e| {
                matches!(
                    e,
                    PolicyError::InvalidCloudSetting {
                        field: "aws.session_duration_seconds",
                        ..
                    }
                )
            },
        ),
        (
            "aws.region = \"us-east-1\"",
            "aws.region = \"us-east-1\"\naws.colour = \"blue\"",
            |e| matches!(e, PolicyError::Syntax { .. }),
        ),
        (
            "aws.region = \"us-east-1\"",
            "aws.region = \"us-east-1\"\ngcp.service_account = \"a@b\"",
            |e| matches!(e, PolicyError::FieldNotForKind { field: "gcp", .. }),
        ),
        (
            "aws.region = \"us-east-1\"",
            "aws.region = \"us-east-1\"\nurl = \"https://ecr.example.org\"",
            |e| matches!(e, PolicyError::FieldNotForKind { field: "url", .. }),
        ),
        (
            "kind = \"ecr\"",
            "kind = \"harbor\"\nurl = \"https://h.example.org\"\ncredential_file = \"/etc/c\"",
            |e| matches!(e, PolicyError::FieldNotForKind { field: "aws", .. }),
        ),
    ];
    for (from, to, expected) in cases {
        let err = kinds_policy(&ECR.replace(from, to), "").unwrap_err();
        assert!(expected(&err), "{from} -> {to}: {err:?}");
        // A TOML error names the key and its place; every other names the registry.
        let named = matches!(err, PolicyError::Syntax { .. })
            || err.to_string().contains("registry \"ecr\"");
        assert!(named, "{err}");
    }
}

#[test]
fn cloud_entries_of_one_kind_share_its_audience_but_no_other_registry_may() {
    let second = ECR
        .replace("name = \"ecr\"", "name = \"ecr-eu\"")
        .replace("us-east-1", "eu-west-1");
    kinds_policy(&format!("{ECR}{second}"), "").unwrap();
    let quay = federated(
        "quay",
        "pull_robot = \"svid_pull\"\npush_robot = \"svid_push\"\njwt_audience = \"sts.amazonaws.com\"",
    );
    let err = kinds_policy(&format!("{ECR}{quay}"), "").unwrap_err();
    assert!(
        matches!(err, PolicyError::SharedJwtAudience { .. }),
        "{err:?}"
    );
}

#[test]
fn an_ecr_registry_serves_every_repository_but_a_narrower_deny_closes_it() {
    let rules = r#"
[[rules]]
id = "all"
subject = "spiffe://example.org/ns/a/sa/b"
registry = "ecr"
repositories = ["**"]
whole_registry = true
actions = ["pull", "push"]

[[rules]]
id = "one"
subject = "spiffe://example.org/ns/a/sa/c"
registry = "ecr"
repositories = ["team-a/app"]
actions = ["pull"]
"#;
    let p = kinds_policy(ECR, rules).unwrap();
    let service = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let b = SpiffeId::parse("spiffe://example.org/ns/a/sa/b").unwrap();
    let d = p.decide_every_repository(&b, service).unwrap();
    assert_eq!(d.granted.len(), 1, "{d:?}");
    assert_eq!(d.granted[0].to_string(), "repository:**:pull,push");
    let c = SpiffeId::parse("spiffe://example.org/ns/a/sa/c").unwrap();
    assert!(
        p.decide_every_repository(&c, service)
            .unwrap()
            .granted
            .is_empty()
    );

    let deny = format!(
        "{rules}\n[[rules]]\nid = \"no-secret\"\nsubject = \"spiffe://example.org/ns/a/sa/b\"\n\
         registry = \"ecr\"\nrepositories = [\"team-a/secret\"]\nactions = [\"push\"]\neffect = \"deny\"\n"
    );
    let p = kinds_policy(ECR, &deny).unwrap();
    let d = p.decide_every_repository(&b, service).unwrap();
    assert_eq!(d.granted[0].to_string(), "repository:**:pull", "{d:?}");
    assert_eq!(d.trace[0].denied_by[0].rule.to_string(), "no-secret");
}

#[test]
fn per_identity_rules_are_the_rules_for_a_subject() {
    let rules = r#"
[[rules]]
id = "everyone"
trust_domain = "example.org"
registry = "local"
repositories = ["base/*"]
actions = ["pull"]

[[rules]]
id = "team-b"
subject = "spiffe://example.org/ns/b/sa/*"
registry = "local"
repositories = ["team-b/*"]
actions = ["pull"]

[[rules]]
id = "team-a"
subject = "spiffe://example.org/ns/a/sa/b"
registry = "local"
repositories = ["team-a/*"]
actions = ["pull"]

[[rules]]
id = "no-secret"
subject = "spiffe://example.org/ns/a/sa/b"
registry = "local"
repositories = ["team-a/secret"]
actions = ["pull"]
effect = "deny"
"#;
    let p = policy(rules);
    // The deny counts: it takes team-a/secret away from one identity only.
    assert_eq!(
        p.per_identity_rules("registry.local", ""),
        ["no-secret", "team-a", "team-b"]
    );
    // A node-mode matchImages path `team-a` reaches team-a's rule only; `base` reaches none
    // of the per-identity rules; `team` (a string prefix, as the kubelet matches) both.
    assert_eq!(
        p.per_identity_rules("registry.local", "team-a"),
        ["no-secret", "team-a"]
    );
    assert!(p.per_identity_rules("registry.local", "base").is_empty());
    assert_eq!(
        p.per_identity_rules("registry.local", "team"),
        ["no-secret", "team-a", "team-b"]
    );
    assert!(p.per_identity_rules("no.such.service", "").is_empty());
    let everyone = policy(&rules[..rules.find("[[rules]]\nid = \"team-b\"").unwrap()]);
    assert!(everyone.per_identity_rules("registry.local", "").is_empty());
}
