use std::time::{Duration, UNIX_EPOCH};

use super::grant::map_grant;
use super::naming::{MAX_NAME_CHARS, password, subject_name};
use super::*;
use crate::naming::{encoded_revoke_time, timed_name as user_id, valid_prefix};
use crate::test_support::scopes;

#[test]
fn user_ids_carry_their_revocation_time_and_parse_back() {
    let id = user_id(
        "svid",
        1_764_760_000,
        [0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 0xff],
    );
    assert_eq!(id, "svid-1764760000-deadbeef000102ff");
    assert_eq!(encoded_revoke_time("svid", &id), Some(1_764_760_000));
}

#[test]
fn ids_that_only_look_alike_are_not_ours() {
    for id in [
        "svid-ci",
        "svid-2024-backup",
        "svid-1764760000",
        "svid-1764760000-deadbeef",
        "svid-1764760000-deadbeef000102ffaa",
        // Nexus's filter is case-insensitive: an upper-case look-alike comes back too.
        "SVID-1764760000-deadbeef000102ff",
        "svid-1764760000-DEADBEEF000102FF",
        "svid-17x4760000-deadbeef000102ff",
        "svid--deadbeef000102ff",
        "svid-1234567890123-deadbeef000102ff",
        "svidx-1764760000-deadbeef000102ff",
        "svid-1-1764760000-deadbeef000102ff",
    ] {
        assert_eq!(encoded_revoke_time("svid", id), None, "{id}");
    }
}

#[test]
fn prefixes_are_safe_in_a_path_an_address_and_basic_auth() {
    for good in ["svid", "svid-broker", "a.b_c-d", "0"] {
        assert!(valid_prefix(good), "{good}");
    }
    for bad in [
        "", "Svid", "svid-", "-svid", "svid--x", "svid:x", "svid@x", "sv id",
    ] {
        assert!(!valid_prefix(bad), "{bad}");
    }
}

#[test]
fn passwords_meet_the_usual_rules_and_use_every_random_byte() {
    let text = password(&[0u8; PASSWORD_RANDOM_CHARS]);
    assert_eq!(text.len(), 40);
    assert!(text.chars().any(|c| c.is_ascii_uppercase()));
    assert!(text.chars().any(|c| c.is_ascii_lowercase()));
    assert!(text.chars().any(|c| c.is_ascii_digit()));
    assert!(text.chars().any(|c| !c.is_ascii_alphanumeric()));
    let other = password(&[63u8; PASSWORD_RANDOM_CHARS]);
    assert_ne!(*text, *other);
    assert!(other.ends_with(&"_".repeat(PASSWORD_RANDOM_CHARS)));
}

#[test]
fn subjects_become_a_bounded_name() {
    assert_eq!(subject_name("spiffe://a/b"), "spiffe://a/b");
    assert_eq!(subject_name("\n"), "unknown");
    let long = format!("spiffe://example.org/{}", "x".repeat(400));
    let name = subject_name(&long);
    assert_eq!(name.chars().count(), MAX_NAME_CHARS);
    assert!(name.ends_with("..."));
}

#[test]
fn grants_map_to_an_action_set_over_all_repositories() {
    let pull = map_grant(&scopes(&["repository:a/app:pull", "repository:b:pull"])).unwrap();
    assert!(!pull.pushes());
    assert_eq!(pull.reuse_key(), "pull");
    let push = map_grant(&scopes(&["repository:a/app:pull", "repository:b:push"])).unwrap();
    assert!(push.pushes());
    assert_eq!(push.reuse_key(), "pull push");
    assert_eq!(
        map_grant(&scopes(&["repository:a:pull,delete"])),
        Err(Failure::UnsupportedAction {
            action: "delete".to_owned()
        })
    );
    assert_eq!(map_grant(&[]), Err(Failure::NoRepository));
    assert!(matches!(
        map_grant(&scopes(&["registry:catalog:*"])),
        Err(Failure::UnsupportedResource { .. })
    ));
}

#[test]
fn configuration_is_checked() {
    let config = |prefix: &str, pull: &str| {
        let mut c = NexusConfig::new(
            "corp",
            "http://127.0.0.1:1",
            "admin",
            SecretString::from("pw".to_owned()),
            pull,
            "push",
        );
        prefix.clone_into(&mut c.user_prefix);
        c
    };
    assert!(NexusBackend::new(config("svid", "pull")).is_ok());
    let error = NexusBackend::new(config("Svid", "pull")).unwrap_err();
    assert_eq!(error.kind, BackendKind::Nexus);
    assert!(matches!(
        error.problem,
        ConfigProblem::InvalidRobotPrefix { .. }
    ));
    assert!(NexusBackend::new(config("svid", " ")).is_err());
    let mut remote = config("svid", "pull");
    remote.url = "http://nexus.example.com".to_owned();
    assert!(matches!(
        NexusBackend::new(remote).unwrap_err().problem,
        ConfigProblem::PlainHttpNotLoopback { .. }
    ));
}

#[test]
fn debug_shows_no_secret() {
    let backend = NexusBackend::new(NexusConfig::new(
        "corp",
        "http://127.0.0.1:1",
        "admin",
        SecretString::from("hunter2-secret".to_owned()),
        "pull",
        "push",
    ))
    .unwrap();
    let shown = format!("{backend:?}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");
    let _ = (Duration::ZERO, UNIX_EPOCH);
}

#[test]
fn narrower_filters_follow_the_id_shape() {
    let root = "svid-";
    let first = narrower_filters(root, root.len());
    assert_eq!(first.len(), 10);
    assert!(first.contains(&"svid-0".to_owned()));
    let time = narrower_filters("svid-17", root.len());
    assert_eq!(time.len(), 11);
    assert!(time.contains(&"svid-17-".to_owned()));
    let full_time = narrower_filters("svid-176476000012", root.len());
    assert_eq!(full_time, ["svid-176476000012-"]);
    let random = narrower_filters("svid-1764760000-ab", root.len());
    assert_eq!(random.len(), 16);
    assert!(narrower_filters("svid-1764760000-deadbeef000102ff", root.len()).is_empty());
}
