//! `--format html`: the report as one self-contained page. The same facts as the Markdown and
//! JSON (the same rows, lists and caps), plus charts of the JSON's `hourly` series, drawn here
//! as inline SVG.
//!
//! Self-contained and inert: inline CSS, no script, no external resource, and a
//! Content-Security-Policy that forbids both, so the page can be mailed or archived and opened
//! anywhere. Every text that comes from the audit file (identities, registries, repositories,
//! codes, the path) is attacker-influenced: it goes through [`text`], which escapes it, drops
//! control characters and cuts it to [`MAX_TEXT`] characters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::{Hourly, MAX_CHARTED, Report, Row, time_text};

/// Longest text from the audit file shown (as the Markdown's table cells).
const MAX_TEXT: usize = 256;
/// Longest label drawn inside a chart, where text cannot wrap; the whole text (up to
/// [`MAX_TEXT`]) is in the element's tooltip.
const MAX_LABEL: usize = 30;

const ISSUED: &str = "#2f6fdb";
const REFUSED: &str = "#d64545";

const STYLE: &str = r#"
:root { color-scheme: light; --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bg: #f5f7fa;
  --issued: #2f6fdb; --refused: #d64545; --spike: #f0b429; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
header { background: #1f2933; color: #f5f7fa; padding: 22px 32px 18px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; letter-spacing: .2px; }
header p { margin: 0; color: #cbd2d9; font-size: 13px; }
header code { color: #fff; }
main { max-width: 1240px; margin: 0 auto; padding: 20px 32px 32px; }
h2 { font-size: 16px; margin: 0 0 10px; font-weight: 600; }
h3 { font-size: 13px; margin: 0; font-weight: 600; font-family: ui-monospace, "DejaVu Sans Mono", monospace;
  overflow-wrap: anywhere; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(118px, 1fr)); gap: 10px; margin-bottom: 16px; }
.tile { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.tile strong { display: block; font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.tile span { color: var(--muted); font-size: 12px; }
.tile.issued strong { color: var(--issued); } .tile.refused strong { color: var(--refused); }
.tile.spike strong { color: #b44d12; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px; margin-bottom: 16px; }
.card > p.note, p.note { color: var(--muted); font-size: 12px; margin: 6px 0 0; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.grid2 > .card, .grid2 > div > .card:last-child { margin-bottom: 0; }
.multiples { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.multiples .card { margin: 0; padding: 12px 14px 8px; }
.facts { color: var(--muted); font-size: 12px; margin: 2px 0 4px; }
.legend { display: flex; gap: 16px; color: var(--muted); font-size: 12px; margin: 0 0 6px; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; vertical-align: -1px; }
.legend .median { height: 0; border-top: 2px dashed #52606d; border-radius: 0; vertical-align: 3px; }
section { margin-bottom: 16px; }
svg { display: block; width: 100%; height: auto; }
svg text { font: 10px system-ui, "DejaVu Sans", sans-serif; fill: #616e7c; }
svg text.label { fill: #1f2933; font-size: 11px; }
svg .grid { stroke: #e4e7eb; stroke-width: 1; }
svg .axis { stroke: #9aa5b1; stroke-width: 1; }
svg .issued { fill: var(--issued); } svg .refused { fill: var(--refused); }
svg .spike { fill: var(--spike); fill-opacity: .28; }
svg .mark { fill: #cb6e17; }
svg .range { fill: #7b93c9; } svg .tick { stroke: #e4e7eb; stroke-width: 1; }
svg .median { stroke: #52606d; stroke-width: 1; stroke-dasharray: 4 3; fill: none; }
table { width: 100%; border-collapse: collapse; font-size: 12.5px; }
th { text-align: left; font-weight: 600; color: var(--muted); border-bottom: 2px solid var(--line); padding: 6px 8px; white-space: nowrap; }
td { border-bottom: 1px solid var(--line); padding: 5px 8px; vertical-align: top; }
td.id { overflow-wrap: anywhere; min-width: 18ch; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
td.mono span { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.time { white-space: nowrap; font-variant-numeric: tabular-nums; color: var(--muted); }
td.bad { color: var(--refused); font-weight: 600; }
tbody tr:nth-child(even) { background: #fafbfc; }
.caps { background: #fffbea; border: 1px solid #f0b429; border-radius: 8px; padding: 10px 14px; }
footer { color: var(--muted); font-size: 12px; }
"#;

/// The whole page for `report` read from `path`; audit-file text only through [`text`].
pub(super) fn render(report: &Report, path: &Path) -> String {
    let mut out = String::with_capacity(64 * 1024 + report.rows.len() * 400);
    let spikes = report.spikes();
    let first_seen = report.first_seen();
    let hourly = report.hourly(&spikes);
    let (issued, refused) = report
        .rows
        .values()
        .fold((0, 0), |(i, r), row| (i + row.issued, r + row.refused));
    let identities = report
        .rows
        .keys()
        .map(|(subject, _)| subject)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let registries = per_registry(report);
    let when = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), time_text);

    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>svid-broker audit report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
    );
    let _ = writeln!(
        out,
        "<header><h1>svid-broker audit report</h1>\n<p>Source <code>{}</code>: {} lines from {} to {}; {} decisions{}; {} lines skipped (not an audit event); {} refused before authentication.</p></header>\n<main>",
        text(&path.display().to_string()),
        n(report.lines),
        when(report.oldest),
        when(report.newest),
        n(report.decisions),
        report
            .window_start
            .map(|s| format!(" since {}", time_text(s)))
            .unwrap_or_default(),
        n(report.skipped),
        n(report.unauthenticated),
    );

    let _ = writeln!(out, "<div class=\"tiles\">");
    for (class, value, label) in [
        ("", n(report.decisions), "decisions"),
        ("issued", n(issued), "issued"),
        ("refused", n(refused), "refused"),
        ("", n(identities as u64), "identities"),
        ("", n(registries.len() as u64), "registries"),
        ("", n(first_seen.len() as u64), "first grants"),
        ("spike", n(spikes.len() as u64), "hours standing out"),
        (
            "",
            n(report.unauthenticated),
            "refused before authentication",
        ),
    ] {
        let _ = writeln!(
            out,
            "<div class=\"tile {class}\"><strong>{value}</strong><span>{label}</span></div>"
        );
    }
    let _ = writeln!(out, "</div>");

    if let Some(hourly) = &hourly {
        let _ = writeln!(
            out,
            "<section class=\"card\"><h2>Decisions per {} (all identities)</h2>",
            bin_name(hourly.bin_hours)
        );
        legend(&mut out, false);
        bars(
            &mut out,
            hourly,
            &hourly.total,
            &hourly.spike_bins,
            None,
            (1160, 190),
            "All identities",
        );
        let _ = writeln!(
            out,
            "<p class=\"note\">Shaded: a bin holding an hour that stands out for some identity (listed below).</p></section>"
        );
    }

    let _ = writeln!(out, "<div class=\"grid2\">");
    let _ = writeln!(
        out,
        "<section class=\"card\"><h2>Issued and refused per registry</h2>"
    );
    let rows: Vec<(&str, u64, u64)> = registries
        .iter()
        .map(|(service, (i, r))| (service.as_str(), *i, *r))
        .collect();
    pairs_chart(&mut out, rows, "registries");
    let _ = writeln!(out, "</section>");
    let _ = writeln!(
        out,
        "<div><section class=\"card\"><h2>Refusals by code</h2>"
    );
    let mut codes: BTreeMap<&str, u64> = BTreeMap::new();
    for row in report.rows.values() {
        for (code, count) in &row.refusal_codes {
            *codes.entry(code.as_str()).or_default() += count;
        }
    }
    let codes: Vec<(&str, u64, u64)> = codes.into_iter().map(|(c, k)| (c, 0, k)).collect();
    pairs_chart(&mut out, codes, "codes");
    let _ = writeln!(out, "</section>");
    let _ = writeln!(
        out,
        "<section class=\"card\"><h2>Credential lifetimes per registry</h2>"
    );
    lifetimes_chart(&mut out, report);
    let _ = writeln!(out, "</section></div></div>");

    if let Some(hourly) = &hourly
        && !hourly.identities.is_empty()
    {
        let _ = writeln!(
            out,
            "<section style=\"margin-top:16px\"><h2>Per identity: decisions per {} against its own median</h2>",
            bin_name(hourly.bin_hours)
        );
        legend(&mut out, true);
        let _ = writeln!(out, "<div class=\"multiples\">");
        for series in &hourly.identities {
            let marked = series.spikes.iter().filter(|s| **s).count();
            let _ = writeln!(
                out,
                "<div class=\"card\"><h3>{}</h3><p class=\"facts\">{} decisions, {} refused; median {}/h{}</p>",
                text(&series.subject),
                n(series.decisions),
                n(series.refused),
                series.median_events,
                match marked {
                    0 => String::new(),
                    1 => "; 1 bin stands out".to_owned(),
                    k => format!("; {k} bins stand out"),
                },
            );
            bars(
                &mut out,
                hourly,
                &series.bins,
                &series.spikes,
                Some(series.median_events),
                (560, 130),
                &series.subject,
            );
            let _ = writeln!(out, "</div>");
        }
        let _ = writeln!(out, "</div>");
        if hourly.not_charted > 0 {
            let _ = writeln!(
                out,
                "<p class=\"note\">{} more identities not charted (the {MAX_CHARTED} with the most decisions are); the table lists them all.</p>",
                n(hourly.not_charted as u64)
            );
        }
        let _ = writeln!(out, "</section>");
    }

    identities_table(&mut out, report);

    let _ = writeln!(
        out,
        "<section class=\"card\"><h2>First granted (new identity and repository pairs)</h2>"
    );
    if first_seen.is_empty() {
        let _ = writeln!(out, "<p>None.</p>");
    } else {
        let _ = writeln!(
            out,
            "<table><thead><tr><th>first granted</th><th>subject</th><th>service</th><th>repository</th></tr></thead><tbody>"
        );
        for ((subject, service, repository), first) in first_seen {
            let _ = writeln!(
                out,
                "<tr><td class=\"time\">{}</td><td class=\"id\">{}</td><td class=\"id\">{}</td><td class=\"id\">{}</td></tr>",
                time_text(first),
                text(subject),
                text(service),
                text(repository),
            );
        }
        let _ = writeln!(out, "</tbody></table>");
    }
    let _ = writeln!(out, "</section>");

    let _ = writeln!(
        out,
        "<section class=\"card\"><h2>Hours that stand out (against the identity's own median)</h2>"
    );
    if spikes.is_empty() {
        let _ = writeln!(out, "<p>None.</p>");
    } else {
        let _ = writeln!(
            out,
            "<table><thead><tr><th>hour</th><th>subject</th><th>what</th><th class=\"num\">count</th><th class=\"num\">median per hour</th></tr></thead><tbody>"
        );
        for (subject, hour, what, count, median) in &spikes {
            let _ = writeln!(
                out,
                "<tr><td class=\"time\">{}</td><td class=\"id\">{}</td><td>{what}</td><td class=\"num bad\">{count}</td><td class=\"num\">{median}</td></tr>",
                time_text(hour * 3600),
                text(subject),
            );
        }
        let _ = writeln!(out, "</tbody></table>");
    }
    let _ = writeln!(out, "</section>");

    if report.dropped_rows + report.dropped_pairs + report.dropped_buckets > 0 {
        let _ = writeln!(
            out,
            "<p class=\"caps\">Caps reached: {} rows, {} repository pairs, {} hourly buckets not kept.</p>",
            report.dropped_rows, report.dropped_pairs, report.dropped_buckets
        );
    }
    let _ = writeln!(
        out,
        "<footer>An hour stands out with at least {} events (or refusals) and {} times the identity's median hourly count. Times are UTC. This page runs no script and loads nothing.</footer>\n</main>\n</body>\n</html>",
        super::SPIKE_MIN,
        super::SPIKE_FACTOR,
    );
    out
}

/// Issued and refused per registry `service`, over the rows.
fn per_registry(report: &Report) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for ((_, service), row) in &report.rows {
        let entry = out.entry(service.clone()).or_default();
        entry.0 += row.issued;
        entry.1 += row.refused;
    }
    out
}

fn identities_table(out: &mut String, report: &Report) {
    let _ = writeln!(
        out,
        "<section class=\"card\"><h2>Identities and registries</h2>\n<table><thead><tr><th>subject</th><th>service</th><th class=\"num\">issued</th><th class=\"num\">refused</th><th class=\"num\">lifetime (s)</th><th>refusals by code</th><th>first</th><th>last</th></tr></thead><tbody>"
    );
    for ((subject, service), row) in &report.rows {
        let Row {
            issued,
            refused,
            min_lifetime,
            max_lifetime,
            first,
            last,
            refusal_codes,
        } = row;
        let lifetime = match (min_lifetime, max_lifetime) {
            (Some(min), Some(max)) if min == max => min.to_string(),
            (Some(min), Some(max)) => format!("{min}–{max}"),
            _ => "-".to_owned(),
        };
        let codes = if refusal_codes.is_empty() {
            "-".to_owned()
        } else {
            refusal_codes
                .iter()
                .map(|(code, count)| format!("<span>{} {count}</span>", text(code)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "<tr><td class=\"id\">{}</td><td class=\"id\">{}</td><td class=\"num\">{issued}</td><td class=\"num{}\">{refused}</td><td class=\"num\">{lifetime}</td><td class=\"mono\">{codes}</td><td class=\"time\">{}</td><td class=\"time\">{}</td></tr>",
            text(subject),
            text(service),
            if *refused > 0 { " bad" } else { "" },
            time_text(*first),
            time_text(*last),
        );
    }
    let _ = writeln!(out, "</tbody></table>");
    if report.rows.is_empty() {
        let _ = writeln!(out, "<p>None.</p>");
    }
    let _ = writeln!(out, "</section>");
}

fn legend(out: &mut String, median: bool) {
    let _ = writeln!(
        out,
        "<div class=\"legend\"><span><i style=\"background:{ISSUED}\"></i>allowed</span><span><i style=\"background:{REFUSED}\"></i>refused</span><span><i style=\"background:#f0b429;opacity:.5\"></i>stands out</span>{}</div>",
        if median {
            "<span><i class=\"median\"></i>median per hour</span>"
        } else {
            ""
        }
    );
}

/// "hour", or "N hours" for wider bins.
fn bin_name(bin_hours: i64) -> String {
    if bin_hours == 1 {
        "hour".to_owned()
    } else {
        format!("{bin_hours} hours")
    }
}

/// A stacked bar chart of (events, refusals) per bin: refused at the bottom, the allowed rest
/// above; marked bins shaded; with `median`, a dashed line at that many events per hour.
fn bars(
    out: &mut String,
    hourly: &Hourly,
    bins: &[(u64, u64)],
    marked: &[bool],
    median: Option<u32>,
    (width, height): (u32, u32),
    label: &str,
) {
    let (left, right, top, bottom) = (40.0, 8.0, 8.0, 18.0);
    let plot_w = f64::from(width) - left - right;
    let plot_h = f64::from(height) - top - bottom;
    let baseline = median.map(|m| u64::from(m) * u64::try_from(hourly.bin_hours).unwrap_or(1));
    let peak = bins.iter().map(|b| b.0).chain(baseline).max().unwrap_or(0);
    let y_max = nice(peak);
    let count = bins.len().max(1);
    let step = plot_w / count as f64;
    let gap = if step >= 4.0 { 1.0 } else { 0.0 };
    let y = |v: u64| top + plot_h - plot_h * (v as f64 / y_max as f64);
    let _ = writeln!(
        out,
        "<svg viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{}: decisions per {}\">",
        text(label),
        bin_name(hourly.bin_hours)
    );
    for v in [0, y_max / 2, y_max] {
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left + plot_w,
            y(v),
            y(v),
            left - 5.0,
            y(v) + 3.5,
            n(v)
        );
    }
    for (i, &(events, refusals)) in bins.iter().enumerate() {
        let x = left + step * i as f64;
        if marked.get(i).copied().unwrap_or(false) {
            let _ = writeln!(
                out,
                "<rect class=\"spike\" x=\"{x:.1}\" y=\"{top}\" width=\"{step:.1}\" height=\"{plot_h:.1}\"/><rect class=\"mark\" x=\"{x:.1}\" y=\"{top}\" width=\"{step:.1}\" height=\"3\"/>"
            );
        }
        if events == 0 {
            continue;
        }
        let refusals = refusals.min(events);
        let w = (step - gap).max(0.5);
        let _ = write!(
            out,
            "<g><title>{}: {events} events, {refusals} refused</title>",
            bin_time(hourly, i)
        );
        if events > refusals {
            let _ = write!(
                out,
                "<rect class=\"issued\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\"/>",
                y(events),
                y(refusals) - y(events)
            );
        }
        if refusals > 0 {
            let _ = write!(
                out,
                "<rect class=\"refused\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\"/>",
                y(refusals),
                y(0) - y(refusals)
            );
        }
        let _ = writeln!(out, "</g>");
    }
    if let (Some(m), Some(b)) = (median, baseline)
        && m > 0
    {
        let _ = writeln!(
            out,
            "<line class=\"median\" x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"><title>median {m} events per hour</title></line>",
            left + plot_w,
            y(b),
            y(b)
        );
    }
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
        left + plot_w,
        y(0),
        y(0)
    );
    // Time labels: first bin, middle, last (bin starts).
    let label_y = f64::from(height) - 4.0;
    let last = count - 1;
    let mut ticks = vec![(0, "start")];
    if count >= 3 {
        ticks.push((count / 2, "middle"));
    }
    if last > 0 {
        ticks.push((last, "end"));
    }
    for (i, anchor) in ticks {
        let x = match anchor {
            "start" => left,
            "end" => left + plot_w,
            _ => left + step * i as f64,
        };
        let _ = writeln!(
            out,
            "<text x=\"{x:.1}\" y=\"{label_y:.1}\" text-anchor=\"{anchor}\">{}</text>",
            bin_time(hourly, i)
        );
    }
    let _ = writeln!(out, "</svg>");
}

/// Horizontal bars per name: issued (blue) over refused (red), each with its count; names with
/// the largest sums first, at most [`MAX_CHARTED`]. An issued count of 0 everywhere draws only
/// the refused bars (the codes chart).
fn pairs_chart(out: &mut String, mut rows: Vec<(&str, u64, u64)>, what: &str) {
    if rows.is_empty() {
        let _ = writeln!(out, "<p>None.</p>");
        return;
    }
    let all = rows.len();
    rows.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then_with(|| a.0.cmp(b.0)));
    rows.truncate(MAX_CHARTED);
    let two = rows.iter().any(|r| r.1 > 0);
    let bar_h = 11.0;
    let row_h = if two {
        2.0 * bar_h + 10.0
    } else {
        bar_h + 12.0
    };
    let (width, label_w, value_w) = (560.0, 190.0, 56.0);
    let height = row_h * rows.len() as f64 + 4.0;
    let plot_w = width - label_w - value_w;
    let max = rows.iter().map(|r| r.1.max(r.2)).max().unwrap_or(0).max(1);
    let len = |v: u64| (plot_w * v as f64 / max as f64).max(if v > 0 { 1.0 } else { 0.0 });
    let _ = writeln!(
        out,
        "<svg viewBox=\"0 0 {width} {height:.0}\" role=\"img\" aria-label=\"issued and refused per {what}\">"
    );
    for (i, (name, issued, refused)) in rows.iter().enumerate() {
        let y0 = 4.0 + row_h * i as f64;
        let shown = if name.is_empty() { "(none)" } else { name };
        let _ = writeln!(
            out,
            "<g><title>{}: {issued} issued, {refused} refused</title><text class=\"label\" x=\"0\" y=\"{:.1}\">{}</text>",
            text(shown),
            y0 + if two { bar_h + 4.0 } else { bar_h - 1.0 },
            text_cut(shown, MAX_LABEL),
        );
        let mut y = y0;
        let mut bar = |class: &str, v: u64| {
            let w = len(v);
            let _ = writeln!(
                out,
                "<rect class=\"{class}\" x=\"{label_w}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{bar_h}\" rx=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                label_w + w + 4.0,
                y + bar_h - 2.0,
                n(v)
            );
            y += bar_h + 2.0;
        };
        if two {
            bar("issued", *issued);
        }
        bar("refused", *refused);
        let _ = writeln!(out, "</g>");
    }
    let _ = writeln!(out, "</svg>");
    if all > rows.len() {
        let _ = writeln!(
            out,
            "<p class=\"note\">{} more {what} not charted.</p>",
            n((all - rows.len()) as u64)
        );
    }
    if two {
        let _ = writeln!(
            out,
            "<div class=\"legend\" style=\"margin-top:6px\"><span><i style=\"background:{ISSUED}\"></i>issued</span><span><i style=\"background:{REFUSED}\"></i>refused</span></div>"
        );
    }
}

/// Per registry, the shortest to the longest lifetime issued, as a range on a log scale from a
/// minute to a day (wider when the log has shorter or longer ones); longest first, at most
/// [`MAX_CHARTED`].
fn lifetimes_chart(out: &mut String, report: &Report) {
    let mut ranges: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for ((_, service), row) in &report.rows {
        if let (Some(min), Some(max)) = (row.min_lifetime, row.max_lifetime) {
            let entry = ranges.entry(service.as_str()).or_insert((min, max));
            entry.0 = entry.0.min(min);
            entry.1 = entry.1.max(max);
        }
    }
    if ranges.is_empty() {
        let _ = writeln!(out, "<p>None issued.</p>");
        return;
    }
    let all = ranges.len();
    let mut ranges: Vec<(&str, (i64, i64))> = ranges.into_iter().collect();
    ranges.sort_by(|a, b| b.1.1.cmp(&a.1.1).then_with(|| a.0.cmp(b.0)));
    ranges.truncate(MAX_CHARTED);
    let low = ranges
        .iter()
        .map(|r| r.1.0)
        .min()
        .unwrap_or(60)
        .clamp(1, 60);
    let high = ranges
        .iter()
        .map(|r| r.1.1)
        .max()
        .unwrap_or(86_400)
        .max(86_400);
    let (width, label_w, value_w, row_h) = (560.0, 190.0, 88.0, 20.0);
    let plot_w = width - label_w - value_w - 8.0;
    let span = (high as f64).ln() - (low as f64).ln();
    let x = |seconds: i64| {
        let t = ((seconds.max(1) as f64).ln() - (low as f64).ln()) / span.max(f64::MIN_POSITIVE);
        label_w + plot_w * t.clamp(0.0, 1.0)
    };
    let height = row_h * ranges.len() as f64 + 18.0;
    let _ = writeln!(
        out,
        "<svg viewBox=\"0 0 {width} {height:.0}\" role=\"img\" aria-label=\"credential lifetimes per registry\">"
    );
    let mut last_label = f64::MIN;
    for (seconds, name) in [
        (60, "1m"),
        (600, "10m"),
        (3600, "1h"),
        (43_200, "12h"),
        (86_400, "1d"),
    ] {
        if !(low..=high).contains(&seconds) {
            continue;
        }
        let at = x(seconds);
        let _ = writeln!(
            out,
            "<line class=\"tick\" x1=\"{at:.1}\" x2=\"{at:.1}\" y1=\"0\" y2=\"{:.1}\"/>",
            height - 16.0
        );
        // Close ticks (a long span squeezes 12h and 1d): only the first is labelled.
        if at - last_label >= 24.0 {
            last_label = at;
            let _ = writeln!(
                out,
                "<text x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{name}</text>",
                height - 4.0
            );
        }
    }
    for (i, (name, (min, max))) in ranges.iter().enumerate() {
        let y = row_h * i as f64;
        let shown = if name.is_empty() { "(none)" } else { name };
        let (from, to) = (x(*min), x(*max));
        let _ = writeln!(
            out,
            "<g><title>{}: {min}–{max} s</title><text class=\"label\" x=\"0\" y=\"{:.1}\">{}</text><rect class=\"range\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"8\" rx=\"4\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            text(shown),
            y + 13.0,
            text_cut(shown, MAX_LABEL),
            from - 4.0,
            y + 6.0,
            to - from + 8.0,
            label_w + plot_w + 12.0,
            y + 13.0,
            if min == max {
                duration(*min)
            } else {
                format!("{}–{}", duration(*min), duration(*max))
            },
        );
    }
    let _ = writeln!(out, "</svg>");
    if all > ranges.len() {
        let _ = writeln!(
            out,
            "<p class=\"note\">{} more registries not charted.</p>",
            n((all - ranges.len()) as u64)
        );
    }
}

/// Seconds as `45s`, `5m`, `1h30m`, `2d`: the largest units, at most two.
fn duration(seconds: i64) -> String {
    if seconds < 0 {
        return format!("{seconds}s");
    }
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut out = String::new();
    let mut rest = seconds;
    let mut parts = 0;
    for (size, name) in units {
        if rest >= size && parts < 2 {
            let _ = write!(out, "{}{name}", rest / size);
            rest %= size;
            parts += 1;
        } else if parts > 0 {
            // Only adjacent units: `1d5s` is shown as `1d`.
            parts = 2;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// A bin's start, `MM-DD HH:00` (UTC), for axis labels and tooltips.
fn bin_time(hourly: &Hourly, bin: usize) -> String {
    let hour = hourly.start_hour + hourly.bin_hours * i64::try_from(bin).unwrap_or(0);
    let full = time_text(hour * 3600);
    // `YYYY-MM-DDTHH:MM:SSZ`: the month, day and hour.
    match (full.get(5..10), full.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time}"),
        _ => full,
    }
}

/// The smallest of 1, 2, 5 × 10ⁿ at least `v` (and at least 1): a round top for an axis.
fn nice(v: u64) -> u64 {
    let mut magnitude = 1u64;
    loop {
        for m in [1, 2, 5] {
            let top = magnitude.saturating_mul(m);
            if top >= v || top == u64::MAX {
                return top.max(1);
            }
        }
        magnitude = magnitude.saturating_mul(10);
    }
}

/// `1234567` as `1,234,567`.
fn n(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Text from the audit file, fit for HTML text and attribute values: escaped, control
/// characters dropped, at most [`MAX_TEXT`] characters.
pub(super) fn text(raw: &str) -> String {
    text_cut(raw, MAX_TEXT)
}

/// As [`text`], cut at `max` characters (with `…` when cut).
/// Characters dropped from audit text: control characters, and the invisible format
/// characters (bidirectional overrides and isolates, zero-width marks, the BOM) that could
/// make one identity or repository name look like another on the page.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

fn text_cut(raw: &str, max: usize) -> String {
    let mut out = String::with_capacity(raw.len().min(max * 6));
    for (i, c) in raw.chars().filter(|&c| !hidden(c)).enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn invisible_and_reordering_characters_never_reach_the_page() {
        // A right-to-left override would show `.../sa/evil` as `.../sa/live`.
        let disguised =
            "spiffe://example.org/sa/\u{202E}live\u{202C}\u{200B}\u{FEFF}\u{2066}x\u{2069}";
        assert_eq!(
            super::text_cut(disguised, 256),
            "spiffe://example.org/sa/livex"
        );
        assert_eq!(super::text_cut("a\u{7}<b>", 256), "a&lt;b&gt;");
    }
}
