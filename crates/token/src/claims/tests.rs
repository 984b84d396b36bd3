use super::*;

fn access(t: &str, n: &str, actions: &[&str]) -> Access {
    Access::new(t, n, actions.iter().copied())
}

#[test]
fn access_is_sorted_merged_and_deduplicated() {
    let input = [
        access("repository", "team/b", &["push", "pull", "pull"]),
        access("registry", "catalog", &["*"]),
        access("repository", "team/a", &["pull"]),
        access("repository", "team/b", &["delete"]),
        access("repository(plugin)", "team/a", &["pull"]),
    ];
    let out = normalize_access(&input).unwrap();
    assert_eq!(
        out,
        vec![
            access("registry", "catalog", &["*"]),
            access("repository", "team/a", &["pull"]),
            access("repository", "team/b", &["delete", "pull", "push"]),
            access("repository(plugin)", "team/a", &["pull"]),
        ]
    );
}

#[test]
fn entries_without_actions_are_dropped() {
    let out = normalize_access(&[
        access("repository", "team/a", &[]),
        access("repository", "team/b", &["pull"]),
    ])
    .unwrap();
    assert_eq!(out, vec![access("repository", "team/b", &["pull"])]);
    assert!(normalize_access(&[]).unwrap().is_empty());
}

#[test]
fn serializes_with_type_and_without_class() {
    let json = serde_json::to_value(access("repository", "h:5000/a", &["pull"])).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"type": "repository", "name": "h:5000/a", "actions": ["pull"]})
    );
}

#[test]
fn resource_type_grammar() {
    for good in [
        "repository",
        "registry",
        "repository(plugin)",
        "a1",
        "x(y2)",
    ] {
        assert!(is_resource_type(good), "{good}");
    }
    for bad in [
        "",
        "Repository",
        "repo-sitory",
        "repository(",
        "repository()",
        "repository(plugin",
        "(plugin)",
        "repository(plugin)x",
        "repository(a(b))",
        "repository:x",
    ] {
        assert!(!is_resource_type(bad), "{bad:?}");
        assert!(matches!(
            normalize_access(&[access(bad, "a", &["pull"])]),
            Err(TokenError::InvalidResourceType { index: 0 })
        ));
    }
    assert!(!is_resource_type(&"a".repeat(MAX_RESOURCE_TYPE_LEN + 1)));
    assert!(is_resource_type(&"a".repeat(MAX_RESOURCE_TYPE_LEN)));
}

#[test]
fn action_grammar() {
    for good in ["pull", "push", "delete", "*", "a"] {
        assert!(is_action(good), "{good}");
    }
    for bad in [
        "",
        "Pull",
        "pu ll",
        "pull,push",
        "**",
        "pull1",
        "scanner-pull",
    ] {
        assert!(!is_action(bad), "{bad:?}");
    }
    assert!(is_action(&"a".repeat(MAX_ACTION_LEN)));
    assert!(!is_action(&"a".repeat(MAX_ACTION_LEN + 1)));
    let err = normalize_access(&[
        access("repository", "a", &["pull"]),
        access("repository", "b", &["pull", "PUSH"]),
    ])
    .unwrap_err();
    assert!(matches!(
        err,
        TokenError::InvalidAction {
            index: 1,
            action_index: 1
        }
    ));
}

#[test]
fn resource_name_rules() {
    assert!(
        normalize_access(&[access("repository", "localhost:5000/team/app", &["pull"])]).is_ok()
    );
    assert!(matches!(
        normalize_access(&[access("repository", "", &["pull"])]),
        Err(TokenError::EmptyResourceName { index: 0 })
    ));
    for bad in ["team/a b", "team/a\n", "team\u{7}"] {
        assert!(matches!(
            normalize_access(&[access("repository", bad, &["pull"])]),
            Err(TokenError::InvalidResourceName { index: 0 })
        ));
    }
    let long = "a".repeat(MAX_REPOSITORY_NAME_LEN + 1);
    assert!(matches!(
        normalize_access(&[access("repository", &long, &["pull"])]),
        Err(TokenError::ResourceNameTooLong { index: 0, len, max: MAX_REPOSITORY_NAME_LEN })
            if len == MAX_REPOSITORY_NAME_LEN + 1
    ));
    assert!(normalize_access(&[access("repository", &long[1..], &["pull"])]).is_ok());
}

#[test]
fn caps_on_entries_and_actions() {
    let many: Vec<Access> = (0..MAX_ACCESS_ENTRIES)
        .map(|i| access("repository", &format!("r{i}"), &["pull"]))
        .collect();
    assert_eq!(normalize_access(&many).unwrap().len(), MAX_ACCESS_ENTRIES);
    let mut too_many = many;
    too_many.push(access("repository", "x", &["pull"]));
    assert!(matches!(
        normalize_access(&too_many),
        Err(TokenError::TooManyAccessEntries { count, max: MAX_ACCESS_ENTRIES })
            if count == MAX_ACCESS_ENTRIES + 1
    ));

    let actions: Vec<String> = (0..MAX_ACTIONS_PER_ENTRY)
        .map(|i| "a".repeat(i + 1))
        .collect();
    let ok = Access::new("repository", "r", actions.clone());
    assert!(normalize_access(&[ok]).is_ok());
    let mut more = actions;
    more.push("pull".into());
    assert!(matches!(
        normalize_access(&[Access::new("repository", "r", more)]),
        Err(TokenError::TooManyActions { index: 0, .. })
    ));
}

#[test]
fn claim_strings_are_checked() {
    assert!(check_claim(Claim::Issuer, "svid-broker", 10).is_err());
    assert!(check_claim(Claim::Issuer, "svid-broker", 11).is_ok());
    assert!(matches!(
        check_claim(Claim::Audience, "", 10),
        Err(TokenError::EmptyClaim {
            claim: Claim::Audience
        })
    ));
    assert!(matches!(
        check_claim(Claim::Audience, "registry\u{0}", 100),
        Err(TokenError::ClaimControlChar {
            claim: Claim::Audience
        })
    ));
    assert!(matches!(
        check_claim(Claim::Issuer, "abc", 2),
        Err(TokenError::ClaimTooLong {
            claim: Claim::Issuer,
            len: 3,
            max: 2
        })
    ));
}
