//! Exec-to-response latency of the plugin against a warm broker, beside the floor: spawning a
//! program that only reads stdin and exits (`cat` with stdout to /dev/null). One run, both
//! measured interleaved so they share the machine's noise. Ignored by default; run with
//!
//! ```text
//! cargo test --release -p svid-credential-provider --test e2e-plugin bench -- --ignored --nocapture
//! ```
//!
//! `SVID_CP_BENCH_BINARY=PATH` measures another build of the plugin (e.g. one whose aws-lc was
//! built with `AWS_LC_SYS_NO_JITTER_ENTROPY=1`) against the same broker.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::flow::{Fixture, NODE, request};
use crate::registry::require;
use crate::support::PLUGIN;

const RUNS: usize = 200;
const RSS_RUNS: usize = 20;

/// Spawn, write the request, read stdout to EOF, reap: the kubelet's view of one exec.
fn exec(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
    null_out: bool,
) -> Duration {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(if null_out {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    assert!(out.status.success());
    elapsed
}

/// Peak RSS in KiB over `runs` executions, from GNU time's `%M`.
fn peak_rss(program: &str, args: &[&str], env: &[(&str, &str)], stdin: &str, runs: usize) -> u64 {
    let mut peak = 0;
    for _ in 0..runs {
        let mut child = Command::new("/usr/bin/time")
            .args(["-f", "%M", program])
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        let kib: u64 = text.lines().last().unwrap().trim().parse().unwrap();
        peak = peak.max(kib);
    }
    peak
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[test]
#[ignore = "benchmark: run explicitly, in release"]
fn bench_exec_latency_against_a_warm_broker() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let fx = Fixture::start(false);
    let config = fx.plugin_config("bench", "registry", None);
    let config = config.to_str().unwrap().to_owned();
    let endpoint = fx.endpoint(NODE);
    let env = [("SPIFFE_ENDPOINT_SOCKET", endpoint.as_str())];
    let args = ["--config", config.as_str()];
    let mut stdin =
        serde_json::to_string(&request("v1", &format!("{}/team/app", fx.host()))).unwrap();
    stdin.push('\n');
    let cat = Path::new("/bin/cat");
    let mut contenders: Vec<(String, String)> = vec![(
        "`svid-credential-provider` (node mode, mTLS, login credential)".to_owned(),
        PLUGIN.to_owned(),
    )];
    if let Ok(other) = std::env::var("SVID_CP_BENCH_BINARY") {
        contenders.push((format!("same, `{other}`"), other));
    }

    for _ in 0..10 {
        for (_, binary) in &contenders {
            exec(Path::new(binary), &args, &env, &stdin, false);
        }
        exec(cat, &[], &[], &stdin, true);
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(RUNS); contenders.len() + 1];
    for _ in 0..RUNS {
        times[0].push(exec(cat, &[], &[], &stdin, true));
        for (i, (_, binary)) in contenders.iter().enumerate() {
            times[i + 1].push(exec(Path::new(binary), &args, &env, &stdin, false));
        }
    }
    let mut rows = vec![(
        "floor: `cat` reading the request, stdout to /dev/null".to_owned(),
        peak_rss("/bin/cat", &[], &[], &stdin, RSS_RUNS),
    )];
    for (name, binary) in &contenders {
        rows.push((
            name.clone(),
            peak_rss(binary, &args, &env, &stdin, RSS_RUNS),
        ));
    }
    println!("| program | runs | p50 | p99 | max | peak RSS |");
    println!("|---|---:|---:|---:|---:|---:|");
    for ((name, rss), v) in rows.iter().zip(times.iter_mut()) {
        v.sort();
        println!(
            "| {name} | {} | {} | {} | {} | {rss} KiB |",
            v.len(),
            ms(percentile(v, 50.0)),
            ms(percentile(v, 99.0)),
            ms(*v.last().unwrap()),
        );
    }
}
