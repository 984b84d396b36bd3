use std::path::Path;

use super::*;

const A: &str = "spiffe://example.org/ns/team-a/sa/app";
const B: &str = "spiffe://example.org/ns/team-b/sa/app";

fn allow(time: &str, subject: &str, granted: &str, expires: &str) -> String {
    json!({"time": time, "event": "svid-broker.exchange", "decision": "allow",
           "subject": subject, "service": "registry.local", "granted": granted,
           "expires_at": expires})
    .to_string()
}

fn deny(time: &str, subject: &str, code: &str) -> String {
    json!({"time": time, "event": "svid-broker.exchange", "decision": "deny",
           "subject": subject, "service": "registry.local", "code": code})
    .to_string()
}

fn report(lines: &[String], window_start: Option<&str>) -> Report {
    let mut report = Report {
        window_start: window_start.and_then(parse_time),
        ..Report::default()
    };
    for line in lines {
        report.add_line(line.as_bytes());
    }
    report
}

#[test]
fn audit_times_parse_as_the_broker_writes_them() {
    assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_time("2026-12-03T18:00:00Z"), Some(1_796_320_800));
    assert_eq!(time_text(1_796_320_800), "2026-12-03T18:00:00Z");
    for bad in [
        "2026-12-03 18:00:00Z",
        "2026-13-03T18:00:00Z",
        "2026-12-03T18:00:00",
        "x",
    ] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
    assert_eq!(parse_duration("24h"), Ok(86_400));
    assert_eq!(parse_duration("90"), Ok(90));
    assert!(parse_duration("0s").is_err() && parse_duration("3w").is_err());
    assert!(parse_duration("99999999999d").is_err());
}

#[test]
fn identities_registries_lifetimes_and_refusals_are_counted() {
    let lines = [
        allow(
            "2026-12-03T10:00:00Z",
            A,
            "repository:team-a/app:pull",
            "2026-12-03T10:05:00Z",
        ),
        allow(
            "2026-12-03T10:01:00Z",
            A,
            "repository:team-a/app:pull",
            "2026-12-03T10:11:00Z",
        ),
        deny("2026-12-03T10:02:00Z", A, "permission_denied"),
        deny("2026-12-03T10:03:00Z", B, "unauthenticated"),
        json!({"time": "2026-12-03T10:04:00Z", "event": "svid-broker.preauth_denials",
               "decision": "deny", "count": 41})
        .to_string(),
        "not json".to_owned(),
        json!({"time": "2026-12-03T10:05:00Z", "event": "something.else"}).to_string(),
    ];
    let r = report(&lines, None);
    assert_eq!(
        (r.lines, r.skipped, r.decisions, r.unauthenticated),
        (7, 2, 4, 41)
    );
    let a = &r.rows[&(A.to_owned(), "registry.local".to_owned())];
    assert_eq!((a.issued, a.refused), (2, 1));
    assert_eq!((a.min_lifetime, a.max_lifetime), (Some(300), Some(600)));
    assert_eq!(a.refusal_codes["permission_denied"], 1);
    let md = r.markdown(Path::new("audit.log"));
    assert!(
        md.contains(&format!(
            "| {A} | registry.local | 2 | 1 | 300–600 | permission_denied 1 |"
        )),
        "{md}"
    );
    let parsed: serde_json::Value = serde_json::from_str(&r.json(Path::new("audit.log"))).unwrap();
    assert_eq!(parsed["decisions"], 4);
    assert_eq!(parsed["refused_before_authentication"], 41);
    assert_eq!(parsed["identities"].as_array().unwrap().len(), 2);
}

#[test]
fn the_window_counts_only_its_own_decisions_and_finds_first_grants() {
    let lines = [
        allow(
            "2026-12-01T10:00:00Z",
            A,
            "repository:team-a/app:pull",
            "2026-12-01T10:05:00Z",
        ),
        allow(
            "2026-12-03T10:00:00Z",
            A,
            "repository:team-a/app:pull",
            "2026-12-03T10:05:00Z",
        ),
        // New in the window: A had never been granted team-a/secret.
        allow(
            "2026-12-03T11:00:00Z",
            A,
            "repository:team-a/secret:pull repository:team-a/app:pull",
            "2026-12-03T11:05:00Z",
        ),
    ];
    let r = report(&lines, Some("2026-12-03T00:00:00Z"));
    assert_eq!(r.decisions, 2);
    let new: Vec<String> = r.first_seen().iter().map(|(k, _)| k.2.clone()).collect();
    assert_eq!(new, ["team-a/secret"]);
    // Without a window: nothing in the file's first hour is "new".
    let all = report(&lines[..1], None);
    assert!(all.first_seen().is_empty());
}

#[test]
fn an_hour_far_above_the_identitys_median_stands_out() {
    let mut lines = Vec::new();
    // A baseline of two refusals an hour for 24 hours, then 30 in one hour.
    for hour in 0..24 {
        for minute in [0, 30] {
            lines.push(deny(
                &format!("2026-12-02T{hour:02}:{minute:02}:00Z"),
                A,
                "permission_denied",
            ));
        }
    }
    for minute in 0..30 {
        lines.push(deny(
            &format!("2026-12-03T05:{minute:02}:00Z"),
            A,
            "permission_denied",
        ));
    }
    let r = report(&lines, None);
    let spikes = r.spikes();
    let refusals: Vec<_> = spikes.iter().filter(|s| s.2 == "refusals").collect();
    assert_eq!(refusals.len(), 1, "{spikes:?}");
    assert_eq!(time_text(refusals[0].1 * 3600), "2026-12-03T05:00:00Z");
    assert_eq!((refusals[0].3, refusals[0].4), (30, 2));
}

#[test]
fn over_long_lines_are_skipped_and_caps_are_reported() {
    let mut text = allow(
        "2026-12-03T10:00:00Z",
        A,
        "repository:team-a/app:pull",
        "2026-12-03T10:05:00Z",
    );
    text.push('\n');
    text.push_str(&"x".repeat(MAX_LINE_BYTES * 3));
    text.push('\n');
    text.push_str(&deny("2026-12-03T10:01:00Z", B, "unauthenticated"));
    let mut r = Report::default();
    r.read(text.as_bytes(), Path::new("audit.log")).unwrap();
    assert_eq!((r.lines, r.skipped, r.decisions), (3, 1, 2));
    let md = r.markdown(Path::new("a|b.log"));
    assert!(md.contains("Source `a b.log`"), "{md}");
}

#[test]
fn past_the_row_cap_further_identities_are_counted_not_kept() {
    let mut r = Report::default();
    for i in 0..=MAX_ROWS {
        let line = deny(
            "2026-12-03T10:00:00Z",
            &format!("spiffe://example.org/ns/n/sa/s{i}"),
            "permission_denied",
        );
        r.add_line(line.as_bytes());
    }
    assert_eq!((r.rows.len(), r.dropped_rows), (MAX_ROWS, 1));
    assert_eq!(r.decisions, MAX_ROWS as u64 + 1);
    let md = r.markdown(Path::new("audit.log"));
    assert!(md.contains("Caps reached: 1 rows"), "{md}");
    let json: serde_json::Value = serde_json::from_str(&r.json(Path::new("audit.log"))).unwrap();
    assert_eq!(json["dropped"]["rows"], 1);
}
