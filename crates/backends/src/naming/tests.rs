use super::*;
use crate::test_support::at;

#[test]
fn names_carry_their_time_and_only_the_exact_shape_parses_back() {
    let name = timed_name("svid", 1_800_000_000, [0x0f; 8]);
    assert_eq!(name, "svid-1800000000-0f0f0f0f0f0f0f0f");
    assert_eq!(encoded_revoke_time("svid", &name), Some(1_800_000_000));
    for other in [
        "svid-1800000000-0f0f0f0f0f0f0f0",
        "svid-1800000000-0F0F0F0F0F0F0F0F",
        "svid-1234567890123-0f0f0f0f0f0f0f0f",
        "svid--0f0f0f0f0f0f0f0f",
        "svidx-1800000000-0f0f0f0f0f0f0f0f",
        "other-1800000000-0f0f0f0f0f0f0f0f",
    ] {
        assert_eq!(encoded_revoke_time("svid", other), None, "{other}");
    }
}

#[test]
fn times_round_up_for_names_and_down_for_now() {
    let half = at(1_800_000_000) + std::time::Duration::from_millis(500);
    assert_eq!(unix_seconds_ceil(half), 1_800_000_001);
    assert_eq!(unix_seconds_floor(half), 1_800_000_000);
    assert_eq!(unix_seconds_ceil(at(7)), 7);
    assert_eq!(
        unix_seconds_ceil(UNIX_EPOCH - std::time::Duration::from_secs(1)),
        0
    );
}

#[test]
fn a_bad_prefix_is_the_config_problem_naming_it() {
    assert_eq!(check_prefix("svid"), Ok(()));
    assert_eq!(
        check_prefix("Svid"),
        Err(ConfigProblem::InvalidRobotPrefix {
            prefix: "Svid".to_owned(),
            max: MAX_PREFIX_LEN,
        })
    );
}

#[test]
fn text_is_blanked_and_capped_by_characters() {
    assert_eq!(blank_controls("a\nb\u{7}c"), "a b c");
    assert_eq!(cap_chars("abcdef", 6), "abcdef");
    assert_eq!(cap_chars("abcdefg", 6), "abc...");
    // Characters, not bytes: a multi-byte character is never cut in half.
    assert_eq!(cap_chars("ééééééé", 6), "ééé...");
}
