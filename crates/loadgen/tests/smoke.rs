//! Runs every scenario end to end for a few requests against an in-process broker, checking
//! only that the exchanges succeed (no timing assertions: the machine is shared).

use clap::Parser as _;
use svid_broker_loadgen::scenario::Kind;
use svid_broker_loadgen::{LoadgenError, Options, Outcome, run, run_any};

fn options(extra: &[&str]) -> Options {
    let mut args = vec![
        "svid-broker-loadgen",
        "--broker",
        "in-process",
        "--client-threads",
        "2",
        "--workers",
        "4",
        "--warmup-secs",
        "0",
        "--duration-secs",
        "30",
        "--open-secs",
        "30",
        "--max-requests",
        "50",
        "--floor-secs",
        "0.05",
        // Each cold scenario sends at most 1 + 50 + 50 requests here.
        "--cold-tokens",
        "200",
    ];
    args.extend_from_slice(extra);
    Options::parse_from(args)
}

#[test]
fn every_scenario_exchanges_successfully() {
    let report = run(&options(&[])).unwrap();
    let kinds: Vec<Kind> = report.scenarios.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, Kind::ALL.to_vec());
    for s in &report.scenarios {
        assert_eq!(s.peak.errors, 0, "{}: {:?}", s.label, s.peak.first_error);
        assert_eq!(s.peak.ok, 50, "{}", s.label);
        assert_eq!(s.peak.latency.count, 50, "{}", s.label);
        assert_eq!(s.half.errors, 0, "{}: {:?}", s.label, s.half.first_error);
        assert_eq!(s.half.ok, 50, "{}", s.label);
        assert_eq!(s.half.from_schedule.count, 50, "{}", s.label);
    }
    assert!(report.floor.raw_per_sec > 0.0);
    assert!(report.floor.validator_per_sec > 0.0);
    assert!(report.broker_peak_rss_kib > 0);
    let table = report.to_markdown();
    for kind in Kind::ALL {
        assert!(table.contains(kind.label()));
    }
    assert!(
        serde_json::to_string(&report)
            .unwrap()
            .contains("floor_share")
    );
}

#[test]
fn token_cache_scenario_also_succeeds() {
    let report = run(&options(&["--scenarios", "realm", "--token-cache"])).unwrap();
    assert_eq!(report.scenarios.len(), 1);
    assert_eq!(report.scenarios[0].peak.errors, 0);
    assert_eq!(report.scenarios[0].peak.ok, 50);
    assert!(report.machine.token_cache);
}

/// A churn of 40 subjects over one second, with `extra` options.
fn churn_of_40(extra: &[&str]) -> Result<Outcome, LoadgenError> {
    let mut args = vec![
        "--churn",
        "--churn-subjects",
        "40",
        "--churn-secs",
        "1",
        "--churn-sample-secs",
        "0.2",
    ];
    args.extend_from_slice(extra);
    run_any(&options(&args))
}

/// All 40 subjects finished, none failed.
fn assert_all_done(report: &svid_broker_loadgen::churn::ChurnReport) {
    assert_eq!(report.errors, 0, "{:?}", report.first_error);
    assert_eq!(report.subjects_done, 40);
}

#[test]
fn churn_run_takes_every_subject_through_both_requests() {
    let Outcome::Churn(report) = churn_of_40(&[]).unwrap() else {
        panic!("not a churn report");
    };
    assert_all_done(&report);
    assert_eq!(report.requests_ok, 80);
    assert_eq!(report.mtls_every, 0);
    assert!(!report.samples.is_empty());
    assert!(report.samples.iter().all(|s| s.rss_kib > 0));
    assert!(report.to_markdown().contains("broker RSS MiB"));
}

/// With the mTLS step every second subject, half the subjects make a third request over a
/// connection of their own, and the report carries the broker's verified-chain cache filled.
#[test]
fn churn_with_the_mtls_step_fills_the_verified_chain_cache() {
    let Outcome::Churn(report) = churn_of_40(&["--churn-mtls-every", "2"]).unwrap() else {
        panic!("not a churn report");
    };
    assert_all_done(&report);
    assert_eq!(report.requests_ok, 80 + 20);
    assert_eq!(report.mtls_every, 2);
    // The setup subject and the 20 even ones: 21 chains verified and kept.
    let entries = report
        .cache_metrics
        .iter()
        .find(|l| l.starts_with("svid_broker_verified_cache_entries") && l.contains("x509"))
        .unwrap_or_else(|| panic!("no chain cache gauge in {:?}", report.cache_metrics));
    assert!(entries.ends_with(" 21"), "{entries}");
    assert!(
        report
            .to_markdown()
            .contains("one subject in 2 also over mTLS")
    );
}

#[test]
fn bad_options_are_refused() {
    let err = run(&options(&["--workers", "0"])).unwrap_err();
    assert!(matches!(
        err,
        LoadgenError::Option {
            option: "--workers",
            ..
        }
    ));
    let err = run_any(&options(&["--churn", "--churn-subjects", "0"])).unwrap_err();
    assert!(matches!(
        err,
        LoadgenError::Option {
            option: "--churn-subjects",
            ..
        }
    ));
    let err = run(&options(&["--open-secs=-1"])).unwrap_err();
    assert!(matches!(
        err,
        LoadgenError::Option {
            option: "--open-secs",
            ..
        }
    ));
}

#[test]
fn missing_broker_binary_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("svid-broker");
    let mut o = options(&[]);
    o.broker = svid_broker_loadgen::broker::Mode::Child;
    o.broker_bin = Some(missing);
    assert!(matches!(run(&o), Err(LoadgenError::BrokerBinary { .. })));
}
