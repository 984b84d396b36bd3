//! The run's report: a Markdown table for humans and docs/performance.md, and the same data
//! as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::GOAL_P99;
use crate::floor::Floor;
use crate::scenario::Kind;
use crate::stats::Summary;

/// Where and how the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs this process could use, counted before `--pin` narrowed them (0 if unknown).
    pub available_cores: usize,
    /// "child process" or "in process".
    pub broker_mode: &'static str,
    /// The broker's `Cpus_allowed_list` from `/proc` (empty if unreadable).
    pub broker_cpus: String,
    /// The load generator's `Cpus_allowed_list` from `/proc` (empty if unreadable).
    pub loadgen_cpus: String,
    /// Tokio worker threads in the load generator.
    pub client_threads: usize,
    /// Concurrent workers (connections) per scenario.
    pub workers: usize,
    /// Configured closed-loop (peak) phase length, seconds (`--duration-secs`), not the measured
    /// time.
    pub peak_secs: f64,
    /// Configured open-loop phase length, seconds (`--open-secs`), not the measured time.
    pub open_secs: f64,
    /// Whether the broker's issued-token cache was on (`--token-cache`).
    pub token_cache: bool,
}

/// The closed-loop phase's figures: the peak rate and what it cost the broker.
#[derive(Debug, Clone, Serialize)]
pub struct Peak {
    /// Exchanges answered with a token in the peak phase (the warm-up is not counted).
    pub ok: u64,
    /// Failed exchanges in the peak phase.
    pub errors: u64,
    /// One failure's message, if any exchange failed; never a token.
    pub first_error: Option<String>,
    /// Successful exchanges per second of the phase's wall time.
    pub rate: f64,
    /// CPU the broker used, in cores (CPU seconds per wall second).
    pub broker_cores: Option<f64>,
    /// CPU everything else on the machine used meanwhile, in cores (noise).
    pub other_cores: Option<f64>,
    /// Successful exchanges per broker CPU second (`rate` / `broker_cores`); `None` when the
    /// broker's CPU time could not be read or was 0.
    pub per_core: Option<f64>,
    /// `per_core` / the floor's `raw_per_sec`.
    pub floor_share: Option<f64>,
    /// The goal for `floor_share` ([`Kind::floor_goal`]).
    pub floor_goal: f64,
    /// Latency of successful exchanges, send to answer, under saturation.
    pub latency: Summary,
}

/// The open-loop phase at half the peak rate.
#[derive(Debug, Clone, Serialize)]
pub struct HalfPeak {
    /// The paced rate, exchanges per second: half the peak phase's `rate`.
    pub target_rate: f64,
    /// Exchanges answered with a token in the open-loop phase.
    pub ok: u64,
    /// Failed exchanges in the open-loop phase.
    pub errors: u64,
    /// One failure's message, if any exchange failed; never a token.
    pub first_error: Option<String>,
    /// Achieved successful exchanges per second.
    pub rate: f64,
    /// CPU the broker used, in cores.
    pub broker_cores: Option<f64>,
    /// CPU everything else on the machine used meanwhile, in cores (noise).
    pub other_cores: Option<f64>,
    /// Latency from release by the pacer to response.
    pub latency: Summary,
    /// Latency from the scheduled send time to response.
    pub from_schedule: Summary,
}

/// One scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// The scenario, as `--scenarios` names it.
    pub kind: Kind,
    /// Its short label in the Markdown tables.
    pub label: &'static str,
    /// The closed-loop phase at the peak rate.
    pub peak: Peak,
    /// Open loop at half the peak.
    pub half: HalfPeak,
}

impl ScenarioReport {
    /// Whether exchanges per broker core reach the scenario's goal share of the floor.
    pub fn meets_floor_goal(&self) -> bool {
        self.peak
            .floor_share
            .is_some_and(|s| s >= self.peak.floor_goal)
    }

    /// Whether p99 at half the peak rate is under [`GOAL_P99`].
    pub fn meets_latency_goal(&self) -> bool {
        self.half.ok > 0 && self.half.latency.p99 < GOAL_P99
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where and how the run happened.
    pub machine: Machine,
    /// The crypto floor, per second on one core.
    pub floor: Floor,
    /// One report per scenario, in the order they ran.
    pub scenarios: Vec<ScenarioReport>,
    /// The broker's peak RSS (`VmHWM`), KiB, read after the last scenario (0 if unreadable).
    pub broker_peak_rss_kib: u64,
    /// The load generator's peak RSS, KiB (equal to the broker's in in-process mode).
    pub loadgen_peak_rss_kib: u64,
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "**no**" }
}

impl Report {
    /// The report as Markdown tables.
    pub fn to_markdown(&self) -> String {
        let m = &self.machine;
        let f = &self.floor;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "broker: {} on CPUs {}; load generator on CPUs {} ({} tokio thread(s), {} workers); \
             {} cores available; peak phase {:.0} s, half-peak phase {:.0} s; token cache {}\n",
            m.broker_mode,
            m.broker_cpus,
            m.loadgen_cpus,
            m.client_threads,
            m.workers,
            m.available_cores,
            m.peak_secs,
            m.open_secs,
            if m.token_cache { "on" } else { "off" },
        );
        let _ = writeln!(out, "| crypto floor (one core) | per second |");
        let _ = writeln!(out, "|---|---:|");
        let _ = writeln!(
            out,
            "| **floor: raw ES256 verify of the JWT-SVID + raw ES256 sign of a registry token** | **{:.0}** |",
            f.raw_per_sec
        );
        let _ = writeln!(
            out,
            "| `JwtSvidValidator::validate` + raw ES256 sign | {:.0} |",
            f.validator_per_sec
        );
        let _ = writeln!(out, "| raw ES256 verify alone | {:.0} |", f.verify_per_sec);
        let _ = writeln!(out, "| raw ES256 sign alone | {:.0} |\n", f.sign_per_sec);

        let _ = writeln!(
            out,
            "| scenario | peak/s | errors | broker cores | other load, cores | per core/s | share of floor | p50 at peak ms | p99 at peak ms | half-peak/s | other load, cores | p50 ms | p99 ms | p99 from schedule ms | floor goal | p99 < 5 ms |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
        );
        for s in &self.scenarios {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} (>= {:.0}%) | {} |",
                s.label,
                s.peak.rate,
                s.peak.errors + s.half.errors,
                opt(s.peak.broker_cores, 2),
                opt(s.peak.other_cores, 2),
                opt(s.peak.per_core, 0),
                opt(s.peak.floor_share.map(|v| v * 100.0), 0) + "%",
                ms(s.peak.latency.p50),
                ms(s.peak.latency.p99),
                s.half.rate,
                opt(s.half.other_cores, 2),
                ms(s.half.latency.p50),
                ms(s.half.latency.p99),
                ms(s.half.from_schedule.p99),
                yes(s.meets_floor_goal()),
                s.peak.floor_goal * 100.0,
                yes(s.meets_latency_goal()),
            );
        }
        let _ = writeln!(
            out,
            "\nbroker peak RSS (VmHWM): {:.1} MiB; load generator peak RSS: {:.1} MiB",
            self.broker_peak_rss_kib as f64 / 1024.0,
            self.loadgen_peak_rss_kib as f64 / 1024.0
        );
        for s in &self.scenarios {
            for (phase, e) in [("peak", &s.peak.first_error), ("half", &s.half.first_error)] {
                if let Some(e) = e {
                    let _ = writeln!(out, "first error, {} {phase}: {e}", s.label);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(share: Option<f64>, p99_ms: u64, half_ok: u64) -> ScenarioReport {
        let latency = Summary {
            count: half_ok,
            p99: Duration::from_millis(p99_ms),
            ..Summary::default()
        };
        ScenarioReport {
            kind: Kind::Realm,
            label: Kind::Realm.label(),
            peak: Peak {
                ok: 10,
                errors: 0,
                first_error: None,
                rate: 10.0,
                broker_cores: Some(1.0),
                other_cores: None,
                per_core: Some(10.0),
                floor_share: share,
                floor_goal: 0.5,
                latency: Summary::default(),
            },
            half: HalfPeak {
                target_rate: 5.0,
                ok: half_ok,
                errors: 0,
                first_error: None,
                rate: 5.0,
                broker_cores: Some(0.5),
                other_cores: None,
                latency,
                from_schedule: latency,
            },
        }
    }

    #[test]
    fn floor_goal_is_half_the_floor() {
        assert!(scenario(Some(0.5), 1, 1).meets_floor_goal());
        assert!(!scenario(Some(0.49), 1, 1).meets_floor_goal());
        assert!(!scenario(None, 1, 1).meets_floor_goal());
    }

    #[test]
    fn latency_goal_is_p99_under_five_ms() {
        assert!(scenario(Some(1.0), 4, 1).meets_latency_goal());
        assert!(!scenario(Some(1.0), 5, 1).meets_latency_goal());
        // No successful request proves nothing.
        assert!(!scenario(Some(1.0), 0, 0).meets_latency_goal());
    }
}
