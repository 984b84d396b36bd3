//! `svid-broker audit report --audit FILE [--since DURATION] [--format markdown|json|html]`: the
//! audit log (one JSON line per decision, docs/operations.md "Audit events") turned into the
//! answers an auditor asks for: who got what from which registry and how often, what was
//! refused and why, what credential lifetimes were handed out, which identity pulled a
//! repository it never had before, and which hours stood out against the identity's own
//! baseline. The HTML page (`html`) shows the same facts with hourly charts drawn here, as SVG.
//!
//! Streamed: the file is read line by line (twice with `--since`: once for its newest time,
//! which ends the window, then for the counts), and memory is bounded by caps on what is kept
//! (identities and registries, repository pairs, hourly buckets); past a cap the report says
//! what it dropped rather than growing.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::Deserialize;
use serde_json::json;

use crate::cli::{AuditFormat, AuditReportArgs};
use crate::error::CliError;

/// Longest audit line read; a longer one is skipped and counted (the broker's lines are a
/// few hundred bytes).
pub(crate) const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most (identity, registry) rows kept; further ones are counted in `dropped`.
pub(crate) const MAX_ROWS: usize = 10_000;
/// Most (identity, registry, repository) pairs remembered for first-seen detection.
pub(crate) const MAX_PAIRS: usize = 200_000;
/// Most (identity, hour) buckets kept for the baselines.
pub(crate) const MAX_BUCKETS: usize = 1_000_000;
/// Most rows of a list section printed (the JSON holds the same cut).
pub(crate) const MAX_LISTED: usize = 100;
/// An hour stands out when it has at least this many events of its kind ...
pub(crate) const SPIKE_MIN: u32 = 10;
/// ... and this many times the identity's median hourly count.
pub(crate) const SPIKE_FACTOR: u32 = 5;
/// Most identities given an hourly series (JSON `hourly`, a chart in the HTML page), and most
/// registries and refusal codes charted; the busiest are kept, the tables list them all.
pub(crate) const MAX_CHARTED: usize = 24;
/// Most bins of an hourly series: a longer span is drawn in bins of several hours.
pub(crate) const MAX_BINS: i64 = 168;

/// The fields of an audit line the report reads; every other field is ignored. (`Cow`: a
/// value with an escape cannot be borrowed from the line.)
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    decision: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    subject: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    service: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    granted: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    expires_at: Option<Cow<'a, str>>,
    #[serde(default)]
    count: Option<u64>,
}

#[derive(Debug, Default, Clone)]
struct Row {
    issued: u64,
    refused: u64,
    min_lifetime: Option<i64>,
    max_lifetime: Option<i64>,
    first: i64,
    last: i64,
    refusal_codes: BTreeMap<String, u64>,
}

/// What the report counted.
#[derive(Debug, Default)]
pub(crate) struct Report {
    lines: u64,
    skipped: u64,
    decisions: u64,
    unauthenticated: u64,
    window_start: Option<i64>,
    oldest: Option<i64>,
    newest: Option<i64>,
    rows: BTreeMap<(String, String), Row>,
    dropped_rows: u64,
    /// (subject, service, repository) → first time granted.
    pairs: HashMap<(String, String, String), i64>,
    dropped_pairs: u64,
    /// (subject, hour) → (events, refusals), window and before.
    buckets: HashMap<(String, i64), (u32, u32)>,
    dropped_buckets: u64,
}

pub(crate) fn run(args: &AuditReportArgs) -> Result<(), CliError> {
    let since = args
        .since
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|reason| CliError::Usage {
            arg: "--since",
            reason: reason.to_owned(),
        })?;
    let open = || {
        std::fs::File::open(&args.audit).map_err(|source| CliError::Read {
            path: args.audit.clone(),
            source,
        })
    };
    let window_start = match since {
        Some(seconds) => {
            let newest = newest_time(open()?, &args.audit)?;
            newest.map(|t| t - seconds)
        }
        None => None,
    };
    let mut report = Report {
        window_start,
        ..Report::default()
    };
    report.read(open()?, &args.audit)?;
    let text = match args.format {
        AuditFormat::Markdown => report.markdown(&args.audit),
        AuditFormat::Json => report.json(&args.audit),
        AuditFormat::Html => html::render(&report, &args.audit),
    };
    print!("{text}");
    Ok(())
}

/// The newest `time` of the file (the window ends there).
fn newest_time(file: impl Read, path: &Path) -> Result<Option<i64>, CliError> {
    let mut newest = None;
    for_each_line(file, path, |line| {
        if let Ok(parsed) = serde_json::from_slice::<Line<'_>>(line)
            && let Some(t) = parsed.time.as_deref().and_then(parse_time)
        {
            newest = Some(newest.map_or(t, |n: i64| n.max(t)));
        }
    })?;
    Ok(newest)
}

/// Calls `each` with every line of at most [`MAX_LINE_BYTES`] (without its newline); a longer
/// one is read to its end and passed as empty, so it is counted as skipped.
fn for_each_line(
    file: impl Read,
    path: &Path,
    mut each: impl FnMut(&[u8]),
) -> Result<(), CliError> {
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|source| CliError::Read {
                path: path.to_owned(),
                source,
            })?;
        if read == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > MAX_LINE_BYTES {
            // The rest of an over-long line, up to its newline, is thrown away.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let n = (&mut reader)
                    .take(MAX_LINE_BYTES as u64)
                    .read_until(b'\n', &mut rest)
                    .map_err(|source| CliError::Read {
                        path: path.to_owned(),
                        source,
                    })?;
                if n == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            each(&[]);
            continue;
        }
        each(&line);
    }
}

impl Report {
    fn read(&mut self, file: impl Read, path: &Path) -> Result<(), CliError> {
        for_each_line(file, path, |line| self.add_line(line))
    }

    /// Counts one line.
    pub(crate) fn add_line(&mut self, line: &[u8]) {
        self.lines += 1;
        let Ok(parsed) = serde_json::from_slice::<Line<'_>>(line) else {
            self.skipped += 1;
            return;
        };
        let Some(time) = parsed.time.as_deref().and_then(parse_time) else {
            self.skipped += 1;
            return;
        };
        self.oldest = Some(self.oldest.map_or(time, |t| t.min(time)));
        self.newest = Some(self.newest.map_or(time, |t| t.max(time)));
        let in_window = self.window_start.is_none_or(|start| time >= start);
        match parsed.event.as_deref() {
            Some("svid-broker.preauth_denials") => {
                if in_window {
                    self.unauthenticated += parsed.count.unwrap_or(1);
                }
            }
            Some("svid-broker.exchange") => self.add_decision(&parsed, time, in_window),
            _ => self.skipped += 1,
        }
    }

    fn add_decision(&mut self, line: &Line<'_>, time: i64, in_window: bool) {
        let allowed = line.decision.as_deref() == Some("allow");
        let Some(subject) = line.subject.as_deref() else {
            // Refused before authentication: no identity to count it against.
            if in_window && !allowed {
                self.unauthenticated += 1;
            }
            return;
        };
        let service = line.service.as_deref().unwrap_or("");
        // Repositories first granted: remembered over the whole file, reported when new in
        // the window.
        if allowed {
            for scope in line
                .granted
                .as_deref()
                .unwrap_or("")
                .split(' ')
                .filter(|s| !s.is_empty())
            {
                let repository = scope
                    .strip_prefix("repository:")
                    .and_then(|rest| rest.rsplit_once(':'))
                    .map_or(scope, |(name, _)| name);
                let key = (
                    subject.to_owned(),
                    service.to_owned(),
                    repository.to_owned(),
                );
                if let Some(first) = self.pairs.get_mut(&key) {
                    *first = (*first).min(time);
                } else if self.pairs.len() < MAX_PAIRS {
                    self.pairs.insert(key, time);
                } else {
                    self.dropped_pairs += 1;
                }
            }
        }
        let hour = time.div_euclid(3600);
        let bucket_key = (subject.to_owned(), hour);
        let room = self.buckets.len() < MAX_BUCKETS;
        if let Some(bucket) = self.buckets.get_mut(&bucket_key) {
            add_to_bucket(bucket, allowed);
        } else if room {
            let mut bucket = (0, 0);
            add_to_bucket(&mut bucket, allowed);
            self.buckets.insert(bucket_key, bucket);
        } else {
            self.dropped_buckets += 1;
        }
        if !in_window {
            return;
        }
        self.decisions += 1;
        let key = (subject.to_owned(), service.to_owned());
        if !self.rows.contains_key(&key) && self.rows.len() >= MAX_ROWS {
            self.dropped_rows += 1;
            return;
        }
        let row = self.rows.entry(key).or_insert_with(|| Row {
            first: time,
            last: time,
            ..Row::default()
        });
        row.first = row.first.min(time);
        row.last = row.last.max(time);
        if allowed {
            row.issued += 1;
            if let Some(lifetime) = line
                .expires_at
                .as_deref()
                .and_then(parse_time)
                .map(|end| end - time)
            {
                row.min_lifetime = Some(row.min_lifetime.map_or(lifetime, |m| m.min(lifetime)));
                row.max_lifetime = Some(row.max_lifetime.map_or(lifetime, |m| m.max(lifetime)));
            }
        } else {
            row.refused += 1;
            let code = line.code.as_deref().unwrap_or("denied").to_owned();
            if row.refusal_codes.len() < 16 || row.refusal_codes.contains_key(&code) {
                *row.refusal_codes.entry(code).or_default() += 1;
            }
        }
    }

    /// Pairs first granted inside the window (after the file's first hour, so the start of a
    /// log is not all "new"), newest first, at most [`MAX_LISTED`].
    fn first_seen(&self) -> Vec<(&(String, String, String), i64)> {
        let start = self
            .window_start
            .or(self.oldest.map(|t| t + 3600))
            .unwrap_or(i64::MAX);
        let mut new: Vec<_> = self
            .pairs
            .iter()
            .filter(|(_, first)| **first >= start)
            .map(|(k, first)| (k, *first))
            .collect();
        new.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        new.truncate(MAX_LISTED);
        new
    }

    /// Every kept hourly bucket, by subject: (hour, events, refusals).
    fn hours_by_subject(&self) -> HashMap<&str, Vec<(i64, u32, u32)>> {
        let mut per_subject: HashMap<&str, Vec<(i64, u32, u32)>> = HashMap::new();
        for ((subject, hour), (events, refusals)) in &self.buckets {
            per_subject
                .entry(subject.as_str())
                .or_default()
                .push((*hour, *events, *refusals));
        }
        per_subject
    }

    /// Hours in the window where an identity's events or refusals stood out against its own
    /// median hourly count: (subject, hour, what, count, median).
    fn spikes(&self) -> Vec<(String, i64, &'static str, u32, u32)> {
        let start_hour = self.window_start.map(|s| s.div_euclid(3600));
        let mut out = Vec::new();
        for (subject, hours) in self.hours_by_subject() {
            for (what, pick) in [
                ("events", (|e: u32, _r: u32| e) as fn(u32, u32) -> u32),
                ("refusals", |_e, r| r),
            ] {
                let median = median(hours.iter().map(|(_, e, r)| pick(*e, *r)));
                for (hour, e, r) in &hours {
                    let count = pick(*e, *r);
                    let in_window = start_hour.is_none_or(|s| *hour >= s);
                    if in_window
                        && count >= SPIKE_MIN
                        && count >= median.max(1).saturating_mul(SPIKE_FACTOR)
                    {
                        out.push((subject.to_owned(), *hour, what, count, median));
                    }
                }
            }
        }
        out.sort_by(|a, b| {
            b.3.cmp(&a.3)
                .then_with(|| a.0.cmp(&b.0))
                .then(a.1.cmp(&b.1))
        });
        out.truncate(MAX_LISTED);
        out
    }

    /// The window's decisions per hour (in bins of several hours past [`MAX_BINS`]): all
    /// identities together, and each of the [`MAX_CHARTED`] identities with the most decisions
    /// in the window; the bins holding one of `spikes` ([`Report::spikes`]) marked. `None`
    /// without a decision.
    fn hourly(&self, spikes: &[(String, i64, &'static str, u32, u32)]) -> Option<Hourly> {
        if self.rows.is_empty() {
            return None;
        }
        let start_hour = self.window_start.or(self.oldest)?.div_euclid(3600);
        let end_hour = self.newest?.div_euclid(3600);
        let hours = end_hour.saturating_sub(start_hour).saturating_add(1).max(1);
        // `i64::div_ceil` is unstable; both are positive.
        let div_ceil = |a: i64, b: i64| a / b + i64::from(a % b != 0);
        let bin_hours = div_ceil(hours, MAX_BINS);
        let bins = usize::try_from(div_ceil(hours, bin_hours)).unwrap_or(1);
        let mut decisions: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for ((subject, _), row) in &self.rows {
            let entry = decisions.entry(subject.as_str()).or_default();
            entry.0 += row.issued + row.refused;
            entry.1 += row.refused;
        }
        let total_identities = decisions.len();
        let mut busiest: Vec<(&str, (u64, u64))> = decisions.into_iter().collect();
        busiest.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(b.0)));
        busiest.truncate(MAX_CHARTED);
        let index: HashMap<&str, usize> = busiest
            .iter()
            .enumerate()
            .map(|(i, (subject, _))| (*subject, i))
            .collect();
        let mut total = vec![(0, 0); bins];
        let mut identities: Vec<Series> = busiest
            .iter()
            .map(|(subject, (decisions, refused))| Series {
                subject: (*subject).to_owned(),
                decisions: *decisions,
                refused: *refused,
                median_events: 0,
                bins: vec![(0, 0); bins],
                spikes: vec![false; bins],
            })
            .collect();
        let mut charted_hours: Vec<Vec<u32>> = vec![Vec::new(); identities.len()];
        let bin_of = |hour: i64| -> Option<usize> {
            if hour < start_hour || hour > end_hour {
                return None;
            }
            usize::try_from((hour - start_hour) / bin_hours).ok()
        };
        for ((subject, hour), (events, refusals)) in &self.buckets {
            let charted = index.get(subject.as_str()).copied();
            if let Some(i) = charted {
                // The median is over every kept hour, as for the spikes.
                charted_hours[i].push(*events);
            }
            let Some(bin) = bin_of(*hour) else { continue };
            total[bin].0 += u64::from(*events);
            total[bin].1 += u64::from(*refusals);
            if let Some(i) = charted {
                identities[i].bins[bin].0 += u64::from(*events);
                identities[i].bins[bin].1 += u64::from(*refusals);
            }
        }
        let mut spike_bins = vec![false; bins];
        for (subject, hour, _, _, _) in spikes {
            let Some(bin) = bin_of(*hour) else { continue };
            spike_bins[bin] = true;
            if let Some(&i) = index.get(subject.as_str()) {
                identities[i].spikes[bin] = true;
            }
        }
        for (series, hours) in identities.iter_mut().zip(charted_hours) {
            series.median_events = median(hours.into_iter());
        }
        Some(Hourly {
            start_hour,
            bin_hours,
            total,
            spike_bins,
            not_charted: total_identities - identities.len(),
            identities,
        })
    }

    fn dropped(&self) -> serde_json::Value {
        json!({
            "rows": self.dropped_rows,
            "pairs": self.dropped_pairs,
            "buckets": self.dropped_buckets,
        })
    }

    pub(crate) fn json(&self, path: &Path) -> String {
        let rows: Vec<_> = self
            .rows
            .iter()
            .map(|((subject, service), row)| {
                json!({
                    "subject": subject, "service": service,
                    "issued": row.issued, "refused": row.refused,
                    "refusals_by_code": row.refusal_codes,
                    "min_lifetime_seconds": row.min_lifetime,
                    "max_lifetime_seconds": row.max_lifetime,
                    "first_seen": time_text(row.first), "last_seen": time_text(row.last),
                })
            })
            .collect();
        let first_seen: Vec<_> = self
            .first_seen()
            .into_iter()
            .map(|((subject, service, repository), first)| {
                json!({ "subject": subject, "service": service, "repository": repository,
                        "first_granted": time_text(first) })
            })
            .collect();
        let spike_list = self.spikes();
        let spikes: Vec<_> = spike_list
            .iter()
            .map(|(subject, hour, what, count, median)| {
                json!({ "subject": subject, "hour": time_text(hour * 3600), "kind": what,
                        "count": count, "median_per_hour": median })
            })
            .collect();
        let hourly = self.hourly(&spike_list).map(|h| {
            let split = |bins: &[(u64, u64)]| {
                (
                    bins.iter().map(|b| b.0).collect::<Vec<_>>(),
                    bins.iter().map(|b| b.1).collect::<Vec<_>>(),
                )
            };
            let (events, refusals) = split(&h.total);
            let identities: Vec<_> = h
                .identities
                .iter()
                .map(|s| {
                    let (events, refusals) = split(&s.bins);
                    json!({ "subject": s.subject, "decisions": s.decisions, "refused": s.refused,
                            "median_events_per_hour": s.median_events,
                            "events": events, "refusals": refusals })
                })
                .collect();
            json!({
                "from": time_text(h.start_hour * 3600),
                "bin_hours": h.bin_hours,
                "events": events,
                "refusals": refusals,
                "identities": identities,
                "identities_not_charted": h.not_charted,
            })
        });
        let mut out = json!({
            "source": path.display().to_string(),
            "from": self.oldest.map(time_text),
            "to": self.newest.map(time_text),
            "window_start": self.window_start.map(time_text),
            "lines": self.lines,
            "skipped_lines": self.skipped,
            "decisions": self.decisions,
            "refused_before_authentication": self.unauthenticated,
            "identities": rows,
            "first_seen": first_seen,
            "spikes": spikes,
            "hourly": hourly,
            "dropped": self.dropped(),
        })
        .to_string();
        out.push('\n');
        out
    }

    pub(crate) fn markdown(&self, path: &Path) -> String {
        let mut out = String::new();
        let when = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), time_text);
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# svid-broker audit report\n");
        let _ = writeln!(
            out,
            "Source `{}`: {} lines from {} to {}; {} decisions{}; {} lines skipped (not an audit event); {} refused before authentication.\n",
            cell(&path.display().to_string()),
            self.lines,
            when(self.oldest),
            when(self.newest),
            self.decisions,
            self.window_start
                .map(|s| format!(" since {}", time_text(s)))
                .unwrap_or_default(),
            self.skipped,
            self.unauthenticated,
        );
        let _ = writeln!(out, "## Identities and registries\n");
        let _ = writeln!(
            out,
            "| subject | service | issued | refused | lifetime (s) | refusals by code | first | last |\n|---|---|---|---|---|---|---|---|"
        );
        for ((subject, service), row) in &self.rows {
            let lifetime = match (row.min_lifetime, row.max_lifetime) {
                (Some(min), Some(max)) if min == max => min.to_string(),
                (Some(min), Some(max)) => format!("{min}–{max}"),
                _ => "-".to_owned(),
            };
            let codes = row
                .refusal_codes
                .iter()
                .map(|(code, n)| format!("{} {n}", cell(code)))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {lifetime} | {} | {} | {} |",
                cell(subject),
                cell(service),
                row.issued,
                row.refused,
                if codes.is_empty() {
                    "-".to_owned()
                } else {
                    codes
                },
                time_text(row.first),
                time_text(row.last),
            );
        }
        let _ = writeln!(
            out,
            "\n## First granted (new identity and repository pairs)\n"
        );
        let first_seen = self.first_seen();
        if first_seen.is_empty() {
            let _ = writeln!(out, "None.");
        } else {
            let _ = writeln!(
                out,
                "| first granted | subject | service | repository |\n|---|---|---|---|"
            );
            for ((subject, service, repository), first) in first_seen {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    time_text(first),
                    cell(subject),
                    cell(service),
                    cell(repository)
                );
            }
        }
        let _ = writeln!(
            out,
            "\n## Hours that stand out (against the identity's own median)\n"
        );
        let spikes = self.spikes();
        if spikes.is_empty() {
            let _ = writeln!(out, "None.");
        } else {
            let _ = writeln!(
                out,
                "| hour | subject | what | count | median per hour |\n|---|---|---|---|---|"
            );
            for (subject, hour, what, count, median) in spikes {
                let _ = writeln!(
                    out,
                    "| {} | {} | {what} | {count} | {median} |",
                    time_text(hour * 3600),
                    cell(&subject)
                );
            }
        }
        if self.dropped_rows + self.dropped_pairs + self.dropped_buckets > 0 {
            let _ = writeln!(
                out,
                "\nCaps reached: {} rows, {} repository pairs, {} hourly buckets not kept.",
                self.dropped_rows, self.dropped_pairs, self.dropped_buckets
            );
        }
        out
    }
}

/// The window's decisions in hourly bins, for charts ([`Report::hourly`]).
struct Hourly {
    /// The first bin's hour (Unix seconds / 3600).
    start_hour: i64,
    /// Hours per bin: 1 up to [`MAX_BINS`] hours, more past it.
    bin_hours: i64,
    /// All identities: (events, refusals) per bin.
    total: Vec<(u64, u64)>,
    /// Bins holding an hour listed among the spikes.
    spike_bins: Vec<bool>,
    /// The busiest identities, busiest first.
    identities: Vec<Series>,
    /// Identities with decisions in the window but no series (past [`MAX_CHARTED`]).
    not_charted: usize,
}

/// One identity's hourly series.
struct Series {
    subject: String,
    /// Its decisions in the window, and how many of them were refusals.
    decisions: u64,
    refused: u64,
    /// Its median events per hour with any (the spikes' baseline).
    median_events: u32,
    /// (events, refusals) per bin.
    bins: Vec<(u64, u64)>,
    /// Bins holding one of its hours listed among the spikes.
    spikes: Vec<bool>,
}

/// The median of `counts` (the upper one of an even count; 0 for none).
fn median(counts: impl Iterator<Item = u32>) -> u32 {
    let mut counts: Vec<u32> = counts.collect();
    counts.sort_unstable();
    counts.get(counts.len() / 2).copied().unwrap_or(0)
}

fn add_to_bucket(bucket: &mut (u32, u32), allowed: bool) {
    bucket.0 = bucket.0.saturating_add(1);
    if !allowed {
        bucket.1 = bucket.1.saturating_add(1);
    }
}

/// Text fit for a Markdown table cell: no `|`, no line break, no control character, at most
/// 256 characters (the audit holds what clients sent, already made printable).
fn cell(text: &str) -> String {
    text.chars()
        .take(256)
        .map(|c| if c == '|' || c.is_control() { ' ' } else { c })
        .collect()
}

/// `30m`, `24h`, `7d` (or plain seconds) in seconds: at least 1 s, at most 10 years.
fn parse_duration(text: &str) -> Result<i64, &'static str> {
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let n: i64 = number
        .parse()
        .map_err(|_| "a number followed by s, m, h or d (24h, 7d)")?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err("a number followed by s, m, h or d (24h, 7d)"),
    };
    n.checked_mul(unit)
        .filter(|s| (1..=10 * 365 * 86_400).contains(s))
        .ok_or("between 1 second and 10 years")
}

/// The audit's time, `YYYY-MM-DDTHH:MM:SSZ` (what the broker writes), in Unix seconds.
fn parse_time(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (H. Hinnant's algorithm), proleptic Gregorian.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Unix seconds as the audit writes them.
fn time_text(t: i64) -> String {
    let secs = u64::try_from(t).unwrap_or(0);
    svid_broker_server::audit::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

mod html;

#[cfg(test)]
mod tests;
