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

/// Clients choose their SPIFFE ID path, the registry `service` and the repository names.
const HOSTILE: &str = "spiffe://example.org/ns/<script>alert(1)</script>/sa/app";

#[test]
fn the_html_page_escapes_every_name_from_the_log_and_loads_nothing() {
    let lines = [
        allow(
            "2026-12-03T10:00:00Z",
            HOSTILE,
            "repository:team-a/app:pull",
            "2026-12-03T10:05:00Z",
        ),
        // After the log's first hour: a first-seen pair, listed with its repository name.
        allow(
            "2026-12-03T12:00:00Z",
            HOSTILE,
            "repository:x/<script>y</script>:pull",
            "2026-12-03T12:05:00Z",
        ),
        json!({"time": "2026-12-03T12:01:00Z", "event": "svid-broker.exchange",
               "decision": "deny", "subject": A, "service": "<img src=x onerror=alert(3)>",
               "code": "<b>bad</b>"})
        .to_string(),
    ];
    let r = report(&lines, None);
    let page = html::render(&r, Path::new("<a>.log"));
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    for element in ["<script", "<img", "<b>"] {
        assert!(
            !page.to_ascii_lowercase().contains(element),
            "{element} became markup: {page}"
        );
    }
    for escaped in [
        "spiffe://example.org/ns/&lt;script&gt;alert(1)&lt;/script&gt;/sa/app",
        "x/&lt;script&gt;y&lt;/script&gt;",
        "&lt;img src=x onerror=alert(3)&gt;",
        "<span>&lt;b&gt;bad&lt;/b&gt; 1</span>",
        "Source <code>&lt;a&gt;.log</code>",
    ] {
        assert!(page.contains(escaped), "{escaped} missing: {page}");
    }
    assert!(page.contains(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
    ));
    for external in [
        "src=\"", "href=", "url(", "@import", "<link", "<iframe", "<object",
    ] {
        assert!(!page.contains(external), "{external} in the page");
    }
}

#[test]
fn the_html_page_has_the_markdowns_rows_first_grants_and_spikes() {
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
        allow(
            "2026-12-03T12:00:00Z",
            B,
            "repository:team-b/new:pull",
            "2026-12-03T12:05:00Z",
        ),
    ];
    let page = html::render(&report(&lines, None), Path::new("audit.log"));
    assert!(
        page.contains(&format!(
            "<td class=\"id\">{A}</td><td class=\"id\">registry.local</td><td class=\"num\">2</td><td class=\"num bad\">1</td><td class=\"num\">300–600</td><td class=\"mono\"><span>permission_denied 1</span></td>"
        )),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "<td class=\"time\">2026-12-03T12:00:00Z</td><td class=\"id\">{B}</td><td class=\"id\">registry.local</td><td class=\"id\">team-b/new</td>"
        )),
        "{page}"
    );
    // Lifetimes per registry: 5 to 10 minutes.
    assert!(page.contains(">5m–10m</text>"), "{page}");
    // No spike: the section says so and no bin is shaded.
    assert!(!page.contains("class=\"spike\""), "{page}");
    assert!(page.contains("against the identity's own median)</h2>\n<p>None.</p>"));

    let mut lines = Vec::new();
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
    let page = html::render(&report(&lines, None), Path::new("audit.log"));
    assert!(
        page.contains(&format!(
            "<td class=\"time\">2026-12-03T05:00:00Z</td><td class=\"id\">{A}</td><td>refusals</td><td class=\"num bad\">30</td><td class=\"num\">2</td>"
        )),
        "{page}"
    );
    // The spike's bin is shaded, in the all-identities chart and in A's.
    assert_eq!(page.matches("<rect class=\"spike\"").count(), 2, "{page}");
    assert_eq!(page.matches("<svg").count(), page.matches("</svg>").count());
}

#[test]
fn the_html_page_keeps_the_caps_and_cuts_long_names() {
    let mut r = Report::default();
    for i in 0..=MAX_ROWS {
        let line = deny(
            "2026-12-03T10:00:00Z",
            &format!("spiffe://example.org/ns/n/sa/s{i}"),
            "permission_denied",
        );
        r.add_line(line.as_bytes());
    }
    let long = format!("spiffe://example.org/{}", "a".repeat(1000));
    r.add_line(deny("2026-12-03T10:00:00Z", &long, "permission_denied").as_bytes());
    let page = html::render(&r, Path::new("audit.log"));
    assert!(page.contains("Caps reached: 2 rows"), "caps note missing");
    // Every kept row is in the table; the charts stop at MAX_CHARTED identities.
    assert_eq!(page.matches("<tr><td class=\"id\">").count(), MAX_ROWS);
    // All identities, per registry, per code, then one per charted identity (no lifetimes:
    // nothing was issued).
    assert_eq!(page.matches("<svg").count(), 3 + MAX_CHARTED);
    assert!(page.contains(&format!(
        "9,976 more identities not charted (the {MAX_CHARTED} with the most decisions are)"
    )));
    let mut short = Report::default();
    short.add_line(deny("2026-12-03T10:00:00Z", &long, "permission_denied").as_bytes());
    let page = html::render(&short, Path::new("audit.log"));
    let cut = &long[..256];
    assert!(page.contains(&format!("{cut}…")), "{page}");
    assert!(!page.contains(&long[..257]));
}

#[test]
fn the_hourly_series_count_the_windows_decisions_in_bounded_bins() {
    // One decision an hour for 30 days: 720 hours, drawn as 144 bins of 5 hours.
    let mut lines = Vec::new();
    for hour in 0..720 {
        let time = time_text(1_796_083_200 + hour * 3600);
        lines.push(deny(
            &time,
            if hour % 2 == 0 { A } else { B },
            "unavailable",
        ));
    }
    let r = report(&lines, None);
    let json: serde_json::Value = serde_json::from_str(&r.json(Path::new("audit.log"))).unwrap();
    let hourly = &json["hourly"];
    assert_eq!(hourly["bin_hours"], 5, "{hourly}");
    assert_eq!(hourly["from"], "2026-12-01T00:00:00Z");
    let events: Vec<u64> = hourly["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(events.len(), 144);
    assert!(events.iter().all(|e| *e == 5), "{events:?}");
    let identities = hourly["identities"].as_array().unwrap();
    assert_eq!(identities.len(), 2);
    assert_eq!(identities[0]["decisions"], 360);
    assert_eq!(identities[0]["refused"], 360);
    assert_eq!(identities[0]["median_events_per_hour"], 1);
    // No decision, no series.
    let empty = report(&[], None);
    let json: serde_json::Value =
        serde_json::from_str(&empty.json(Path::new("audit.log"))).unwrap();
    assert!(json["hourly"].is_null());
    let page = html::render(&empty, Path::new("audit.log"));
    assert!(!page.contains("<svg"), "{page}");
}
