use super::*;

fn one(s: &str) -> ResourceScope {
    ResourceScope::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn actions(list: &[&str]) -> BTreeSet<Action> {
    list.iter().map(|a| Action::parse(a).unwrap()).collect()
}

#[test]
fn parses_simple_repository_scope() {
    let s = one("repository:library/alpine:pull,push");
    assert_eq!(s.resource_type, ResourceType::Repository);
    assert_eq!(s.name, "library/alpine");
    assert_eq!(s.actions, actions(&["pull", "push"]));
    assert_eq!(s.to_string(), "repository:library/alpine:pull,push");
}

#[test]
fn canonical_form_sorts_and_dedups_actions() {
    let s = one("repository:a:push,pull,push,*");
    assert_eq!(s.to_string(), "repository:a:*,pull,push");
}

#[test]
fn host_port_name_splits_type_at_first_and_actions_at_last_colon() {
    let s = one("repository:127.0.0.1:5000/team/app:pull");
    assert_eq!(s.resource_type, ResourceType::Repository);
    assert_eq!(s.name, "127.0.0.1:5000/team/app");
    assert_eq!(s.actions, actions(&["pull"]));
    assert_eq!(s.to_string(), "repository:127.0.0.1:5000/team/app:pull");

    let s = one("repository:Registry.Example.com:443/app:push");
    assert_eq!(s.name, "Registry.Example.com:443/app");
    let s = one("repository:[::1]:5000/app:pull");
    assert_eq!(s.name, "[::1]:5000/app");
    let s = one("repository:localhost/app:pull");
    assert_eq!(s.name, "localhost/app");
}

#[test]
fn bad_hosts_are_rejected() {
    for name in [
        "host:port/app",
        "host:/app",
        "host:123456/app",
        "-host:5000/app",
        "[zz]:5000/app",
        "[::1]x/app",
        "a..b:1/app",
    ] {
        let err = ResourceScope::parse(&format!("repository:{name}:pull")).unwrap_err();
        assert!(
            matches!(
                err,
                ScopeError::InvalidName {
                    source: NameError::InvalidHost,
                    ..
                }
            ),
            "{name}: {err}"
        );
    }
    // A host alone, without a repository after it, is not a name.
    let err = ResourceScope::parse("repository:host:5000:pull").unwrap_err();
    assert!(matches!(err, ScopeError::InvalidName { .. }), "{err}");
}

#[test]
fn plugin_type_is_kept_distinct() {
    let s = one("repository(plugin):vieux/sshfs:pull");
    assert_eq!(s.resource_type, ResourceType::RepositoryPlugin);
    assert_eq!(s.to_string(), "repository(plugin):vieux/sshfs:pull");
    let merged = parse_scopes(["repository(plugin):a:pull repository:a:push"]).unwrap();
    assert_eq!(merged.len(), 2);
}

#[test]
fn registry_catalog_scope() {
    let s = one("registry:catalog:*");
    assert_eq!(s.resource_type, ResourceType::Registry);
    assert!(s.is_catalog());
    assert_eq!(s.actions, actions(&["*"]));
    assert!(!one("repository:catalog:*").is_catalog());
}

#[test]
fn resource_type_grammar() {
    for t in [
        "Repository",
        "repo-sitory",
        "repository(",
        "repository()",
        "a(b)c",
        "(x)",
        "",
    ] {
        let err = ResourceScope::parse(&format!("{t}:a:pull")).unwrap_err();
        assert!(
            matches!(err, ScopeError::InvalidResourceType { .. }),
            "{t:?}: {err}"
        );
    }
    for t in ["image", "repository(foo)", "registry2"] {
        let err = ResourceScope::parse(&format!("{t}:a:pull")).unwrap_err();
        assert_eq!(
            err,
            ScopeError::UnsupportedResourceType {
                resource_type: t.to_owned()
            }
        );
    }
}

#[test]
fn empty_action_list_parses_to_no_actions() {
    let s = one("repository:a:");
    assert!(s.actions.is_empty());
    assert_eq!(s.to_string(), "repository:a:");
    assert_eq!(
        one("repository:a:pull,,push").actions,
        actions(&["pull", "push"])
    );
}

#[test]
fn unknown_actions_parse_but_are_not_known() {
    let s = one("repository:a:pull,mount");
    let mount = Action::parse("mount").unwrap();
    assert!(s.actions.contains(&mount));
    assert!(!mount.is_known());
    assert!(Action::PULL.is_known() && Action::ALL.is_known());
    assert_eq!(Action::parse("pull").unwrap(), Action::PULL);
}

#[test]
fn bad_actions_are_rejected() {
    for a in ["Pull", "pull1", "pu-ll", "**", "pull push"] {
        let err = ResourceScope::parse(&format!("repository:a:{a}")).unwrap_err();
        assert!(
            matches!(
                err,
                ScopeError::InvalidAction { .. } | ScopeError::InvalidName { .. }
            ),
            "{a}: {err}"
        );
    }
    let long = "a".repeat(MAX_ACTION_LEN + 1);
    assert!(matches!(
        ResourceScope::parse(&format!("repository:a:{long}")),
        Err(ScopeError::ActionTooLong { .. })
    ));
    let many = ["pull"; MAX_ACTIONS_PER_SCOPE + 1].join(",");
    assert!(matches!(
        ResourceScope::parse(&format!("repository:a:{many}")),
        Err(ScopeError::TooManyActions { .. })
    ));
    let ok = ["pull"; MAX_ACTIONS_PER_SCOPE].join(",");
    assert!(ResourceScope::parse(&format!("repository:a:{ok}")).is_ok());
}

#[test]
fn malformed_scopes() {
    for s in ["repository", "repository:a", ":", "repositorya:pull"] {
        let err = ResourceScope::parse(s).unwrap_err();
        assert!(matches!(err, ScopeError::Malformed { .. }), "{s}: {err}");
    }
    // `::` has two colons: empty type.
    assert!(matches!(
        ResourceScope::parse("::pull"),
        Err(ScopeError::InvalidResourceType { .. })
    ));
    assert!(matches!(
        ResourceScope::parse("repository::pull"),
        Err(ScopeError::InvalidName {
            source: NameError::Empty,
            ..
        })
    ));
}

fn name_err(name: &str) -> NameError {
    check_name(name).unwrap_err()
}

#[test]
fn name_grammar_accepts_distribution_names() {
    for name in [
        "a",
        "library/alpine",
        "a.b/c_d/e__f/g-h/i---j",
        "0/1/2",
        "team-prod/app",
        "example.com/app",
        "localhost:5000/a/b",
    ] {
        assert_eq!(check_name(name), Ok(()), "{name}");
    }
    assert_eq!(check_name(&"a".repeat(MAX_REPOSITORY_NAME_LEN)), Ok(()));
}

#[test]
fn name_grammar_rejects_bad_names() {
    assert_eq!(name_err("Library"), NameError::Uppercase { offset: 0 });
    assert_eq!(name_err("a/Library/b"), NameError::Uppercase { offset: 2 });
    assert_eq!(
        name_err("library/Alpine"),
        NameError::Uppercase { offset: 8 }
    );
    assert_eq!(name_err("a/b c"), NameError::InvalidChar { offset: 3 });
    assert_eq!(name_err("a/b@c"), NameError::InvalidChar { offset: 3 });
    assert_eq!(name_err("a/é"), NameError::InvalidChar { offset: 2 });
    assert_eq!(
        name_err("a/../b"),
        NameError::LeadingSeparator { offset: 2 }
    );
    assert_eq!(name_err("a..b"), NameError::BadSeparator { offset: 1 });
    assert_eq!(name_err("a___b"), NameError::BadSeparator { offset: 1 });
    assert_eq!(name_err("a.-b"), NameError::BadSeparator { offset: 1 });
    assert_eq!(name_err("a-"), NameError::TrailingSeparator { offset: 1 });
    assert_eq!(name_err("_a"), NameError::LeadingSeparator { offset: 0 });
    assert_eq!(name_err("a//b"), NameError::EmptyComponent { offset: 2 });
    assert_eq!(name_err("/a"), NameError::EmptyComponent { offset: 0 });
    assert_eq!(name_err("a/"), NameError::EmptyComponent { offset: 2 });
    assert_eq!(name_err(""), NameError::Empty);
    assert_eq!(
        name_err(&"a".repeat(MAX_REPOSITORY_NAME_LEN + 1)),
        NameError::TooLong {
            len: MAX_REPOSITORY_NAME_LEN + 1,
            max: MAX_REPOSITORY_NAME_LEN
        }
    );
    // A capital first part is a host (distribution's domain grammar allows capitals), but only
    // when a repository follows it.
    assert_eq!(check_name("Host/app"), Ok(()));
    assert_eq!(name_err("Host"), NameError::Uppercase { offset: 0 });
}

#[test]
fn too_long_scope_parameter() {
    let long = format!("repository:{}:pull", "a/".repeat(MAX_SCOPE_PARAM_LEN / 2));
    assert!(matches!(
        parse_scopes([long.as_str()]),
        Err(ScopeError::ParameterTooLong { .. })
    ));
    let long_name = format!(
        "repository:{}:pull",
        "a".repeat(MAX_REPOSITORY_NAME_LEN + 1)
    );
    assert!(matches!(
        parse_scopes([long_name.as_str()]),
        Err(ScopeError::InvalidName {
            source: NameError::TooLong { .. },
            ..
        })
    ));
}

#[test]
fn duplicates_are_merged() {
    let got = parse_scopes([
        "repository:a:pull",
        "repository:a:push",
        "repository:a:pull",
        "registry:catalog:*",
    ])
    .unwrap();
    assert_eq!(
        join_scopes(&got),
        "registry:catalog:* repository:a:pull,push"
    );
}

#[test]
fn space_joined_and_repeated_together() {
    let got = parse_scopes([
        "repository:b:pull repository:a:push",
        "",
        "repository:a:pull  repository:c:delete",
    ])
    .unwrap();
    assert_eq!(
        join_scopes(&got),
        "repository:a:pull,push repository:b:pull repository:c:delete"
    );
}

#[test]
fn empty_parameters_mean_no_scopes() {
    assert_eq!(parse_scopes([""]).unwrap(), vec![]);
    assert_eq!(parse_scopes(std::iter::empty()).unwrap(), vec![]);
}

#[test]
fn scope_count_caps() {
    let many: Vec<String> = (0..=MAX_SCOPES)
        .map(|i| format!("repository:r{i}:pull"))
        .collect();
    let joined = many.join(" ");
    assert_eq!(
        parse_scopes([joined.as_str()]),
        Err(ScopeError::TooManyScopes { max: MAX_SCOPES })
    );
    // Duplicates count before merging, so repeating one scope cannot slip past the cap.
    let same = vec!["repository:a:pull"; MAX_SCOPES + 1].join(" ");
    assert_eq!(
        parse_scopes([same.as_str()]),
        Err(ScopeError::TooManyScopes { max: MAX_SCOPES })
    );
    let exact = many[..MAX_SCOPES].join(" ");
    assert_eq!(parse_scopes([exact.as_str()]).unwrap().len(), MAX_SCOPES);

    let params = vec![""; MAX_SCOPE_PARAMS + 1];
    assert_eq!(
        parse_scopes(params),
        Err(ScopeError::TooManyParameters {
            max: MAX_SCOPE_PARAMS
        })
    );
}

#[test]
fn errors_escape_request_text() {
    let err = ResourceScope::parse("repository:a\nb:pull").unwrap_err();
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.contains("\\n"), "{msg}");
}
