//! `svid-broker inspect id`: exit codes, JSON shape, and one stderr line naming the rule.

use crate::support::run;

#[test]
fn valid_id_exits_zero_and_prints_json() {
    let out = run(
        &[
            "inspect",
            "id",
            "--json",
            "spiffe://example.org/ns/prod/sa/api",
        ],
        None,
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    let value: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"trust_domain": "example.org", "path": "/ns/prod/sa/api"})
    );
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "exactly one JSON object line"
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn trust_domain_only_id_has_empty_path() {
    let out = run(&["inspect", "id", "--json", "spiffe://example.org"], None);
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    let value: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(value["trust_domain"], "example.org");
    assert_eq!(value["path"], "");
}

#[test]
fn human_output_names_trust_domain_and_path() {
    let out = run(&["inspect", "id", "spiffe://example.org/web"], None);
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert!(
        out.stdout.contains("trust domain: example.org"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("path: /web"), "{}", out.stdout);
}

/// Each invalid ID exits 1 with exactly one stderr line; the line must name the failed rule.
#[test]
fn invalid_ids_exit_one_with_one_line_naming_the_rule() {
    let cases: &[(&str, &str)] = &[
        (
            "spiffe://Example.org/web",
            "trust domain must be lower case",
        ),
        ("SPIFFE://example.org/web", "scheme must be lower case"),
        ("https://example.org/web", "wrong scheme"),
        ("spiffe:///web", "trust domain is missing"),
        ("spiffe://example.org/web/", "must not end with '/'"),
        ("spiffe://example.org//web", "empty path segment"),
        ("spiffe://example.org/a/../b", "\"..\""),
        ("spiffe://example.org/we%20b", "percent-encoding"),
        ("spiffe://example.org/web?x=1", "query"),
        ("spiffe://example.org/web#x", "fragment"),
        ("spiffe://user@example.org/web", "userinfo"),
        ("spiffe://example.org:8080/web", "port"),
        (
            "spiffe://example.org/w\u{e9}b",
            "path segments may only contain",
        ),
        ("", "spiffe id is empty"),
    ];
    for (input, rule_word) in cases {
        let out = run(&["inspect", "id", input], None);
        assert_eq!(out.code(), Some(1), "{input:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{input:?}: nothing on stdout");
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "{input:?}: one stderr line, got {lines:?}");
        assert!(
            lines[0].contains(rule_word),
            "{input:?}: stderr should name the rule ({rule_word}): {}",
            lines[0]
        );
    }
}

#[test]
fn overlong_id_is_rejected_by_length_rule() {
    let long = format!("spiffe://example.org/{}", "a".repeat(2100));
    let out = run(&["inspect", "id", &long], None);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("2048"), "{}", out.stderr);
}
