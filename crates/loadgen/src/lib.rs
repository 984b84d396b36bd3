//! Load generator and service benchmarks for svid-broker.
//!
//! One run starts a broker (by default `svid-broker serve` as a child process, optionally
//! pinned to its own CPU with `taskset`) with a dev trust domain, measures the crypto floor
//! (one JWT-SVID verification plus one token signature) on one core, then drives each
//! scenario (gRPC with mTLS, gRPC with a JWT-SVID bearer, the HTTP realm) through a
//! closed-loop phase for the peak rate and an open-loop phase at half that rate for latency,
//! and reports rates, p50/p99, the broker's CPU use and peak RSS, and the ratios to the goals.
//!
//! Everything is bounded: phases by time and request count, each request by
//! [`scenario::REQUEST_TIMEOUT`], sockets to 127.0.0.1, and the child process is killed when
//! the run ends.

pub mod broker;
pub mod churn;
pub mod floor;
pub mod pace;
pub mod report;
pub mod scenario;
pub mod stats;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use svid_broker_dev::ExposeSecret as _;
use svid_broker_identity::jwt::JwtSvidValidator;

use crate::broker::{AUDIENCE, BrokerSetup, CLIENT_ID, Mode, RunningBroker};
use crate::report::{HalfPeak, Machine, Peak, Report, ScenarioReport};
use crate::scenario::{Client, Kind, Target, TokenPool};

/// Goal: p99 latency at half the peak rate below this. (The per-core goals, shares of the
/// crypto floor, depend on the scenario: [`Kind::floor_goal`].)
pub const GOAL_P99: Duration = Duration::from_millis(5);
/// Most concurrent workers (connections) per scenario: the cap on `--workers`.
pub const MAX_WORKERS: usize = 1024;
/// Longest phase: the cap on `--warmup-secs`, `--duration-secs`, `--open-secs` and
/// `--floor-secs`.
pub const MAX_PHASE: Duration = Duration::from_secs(600);
/// Most JWT-SVIDs pre-minted for one cold scenario: the cap on `--cold-tokens`.
pub const MAX_COLD_TOKENS: usize = 2_000_000;

/// What went wrong with the run as a whole (single failed requests are counted, not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadgenError {
    /// A setup step failed.
    #[error("setup failed at {what}: {reason}")]
    Setup {
        /// The step, as a fixed phrase (`runtime`, `taskset`, `jwt-svid`, `svid-broker stdout`).
        what: &'static str,
        /// Why (error chain; never a token).
        reason: String,
    },
    /// The `svid-broker` binary is not there (child mode only).
    #[error("no svid-broker binary at {path} (build it: cargo build --release -p svid-broker)")]
    BrokerBinary {
        /// Where it was looked for: `--broker-bin`, or next to this executable.
        path: PathBuf,
    },
    /// The child never announced it was ready.
    #[error("svid-broker did not start: {reason} (its log: {log})")]
    BrokerNotReady {
        /// What was missing from the child's stdout (the `ready` line, the `http=ADDR` line).
        reason: String,
        /// The file the child's stderr was written to (`broker.log` in the run's directory).
        log: PathBuf,
    },
    /// The floor's inputs did not verify.
    #[error("crypto floor: {what}")]
    Floor {
        /// The check that failed, as a fixed phrase.
        what: &'static str,
    },
    /// An option is out of range.
    #[error("option {option}: {rule}")]
    Option {
        /// The option's flag (`--workers`).
        option: &'static str,
        /// The range the value must be in, as a fixed phrase.
        rule: &'static str,
    },
    /// A scenario's first exchange failed, so it cannot be measured.
    #[error("scenario {scenario:?} cannot exchange")]
    Scenario {
        /// The scenario; no phase of it ran.
        scenario: Kind,
        /// How its first exchange failed.
        #[source]
        source: scenario::CallError,
    },
}

/// Command-line options.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "svid-broker-loadgen",
    about = "Benchmarks svid-broker's token exchange",
    args_override_self = true
)]
pub struct Options {
    /// Run the broker as a child process or inside the load generator.
    #[arg(long, value_enum, default_value = "child")]
    pub broker: Mode,
    /// The `svid-broker` binary for child mode (default: next to this executable).
    #[arg(long)]
    pub broker_bin: Option<PathBuf>,
    /// Pin the broker and the load generator to separate CPUs with `taskset`.
    #[arg(long)]
    pub pin: bool,
    /// CPU list for the broker when pinning.
    #[arg(long, default_value = "0")]
    pub broker_cpus: String,
    /// CPU list for the load generator when pinning.
    #[arg(long, default_value = "1")]
    pub loadgen_cpus: String,
    /// Tokio worker threads in the load generator.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Scenarios to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<Kind>,
    /// Concurrent workers (each with its own connection) per scenario.
    #[arg(long, default_value_t = 16)]
    pub workers: usize,
    /// Closed-loop warm-up before the peak phase, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_secs: f64,
    /// Closed-loop (peak rate) phase, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Open-loop phase at half the peak rate, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub open_secs: f64,
    /// Most requests per phase.
    #[arg(long, default_value_t = 5_000_000)]
    pub max_requests: u64,
    /// Length of each crypto-floor loop, seconds.
    #[arg(long, default_value_t = 2.0)]
    pub floor_secs: f64,
    /// Keep the broker's issued-token cache on (then repeated requests are cache hits;
    /// default off, so every exchange signs a token).
    #[arg(long)]
    pub token_cache: bool,
    /// JWT-SVIDs pre-minted for each cold scenario (its warm-up, peak and half-peak phases
    /// together send at most this many requests).
    #[arg(long, default_value_t = 400_000)]
    pub cold_tokens: usize,
    /// Run the churn test instead of the scenarios: distinct subjects through the rate
    /// limiter and every cache, sampling the broker's RSS.
    #[arg(long)]
    pub churn: bool,
    /// Churn: distinct subjects.
    #[arg(long, default_value_t = 1_000_000)]
    pub churn_subjects: u64,
    /// Churn: how long to take for them, seconds (a paced, open-loop rate).
    #[arg(long, default_value_t = 600.0)]
    pub churn_secs: f64,
    /// Churn: seconds between RSS samples.
    #[arg(long, default_value_t = 5.0)]
    pub churn_sample_secs: f64,
    /// Churn: turn the broker's issued-token cache off (to see what it holds; it is on by
    /// default, so every cache is exercised).
    #[arg(long)]
    pub churn_without_token_cache: bool,
    /// Churn: every Nth subject also makes a gRPC `Exchange` over a new mTLS connection with
    /// an X.509-SVID of its own (a verified-chain cache entry and a TLS handshake each); 0
    /// turns the step off. A handshake costs the broker several times an exchange, so a full
    /// million of them does not fit ten minutes on one core.
    #[arg(long, default_value_t = 0)]
    pub churn_mtls_every: u64,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// What a run produced: the scenario benchmarks or the churn test.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum Outcome {
    /// The scenario benchmarks, with the crypto floor and the machine they ran on.
    Scenarios(Report),
    /// The churn test's rates and RSS samples.
    Churn(churn::ChurnReport),
}

impl Outcome {
    /// The report as Markdown (what the binary prints).
    pub fn to_markdown(&self) -> String {
        match self {
            Outcome::Scenarios(r) => r.to_markdown(),
            Outcome::Churn(r) => r.to_markdown(),
        }
    }
}

fn secs(option: &'static str, v: f64) -> Result<Duration, LoadgenError> {
    if !(v.is_finite() && v >= 0.0 && v <= MAX_PHASE.as_secs_f64()) {
        return Err(LoadgenError::Option {
            option,
            rule: "must be between 0 and 600 seconds",
        });
    }
    Ok(Duration::from_secs_f64(v))
}

/// Pins this process (all its threads) to `cpus` with `taskset`. Must run before any runtime
/// starts so every later thread inherits the mask.
fn pin_self(cpus: &str) -> Result<(), LoadgenError> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| LoadgenError::Setup {
            what: "taskset",
            reason: e.to_string(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(LoadgenError::Setup {
            what: "taskset",
            reason: format!("exited with {status}"),
        })
    }
}

/// Runs the scenarios, or the churn test with `--churn`.
///
/// # Errors
/// A [`LoadgenError`] if setup fails or a scenario cannot exchange at all.
pub fn run_any(options: &Options) -> Result<Outcome, LoadgenError> {
    if options.churn {
        churn::run(options).map(Outcome::Churn)
    } else {
        run(options).map(Outcome::Scenarios)
    }
}

/// The `svid-broker` binary: `--broker-bin`, or the one next to this executable.
fn broker_binary(options: &Options) -> PathBuf {
    match &options.broker_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("svid-broker")))
            .unwrap_or_else(|| PathBuf::from("svid-broker")),
    }
}

/// Runs the whole benchmark and returns the report.
///
/// # Errors
/// A [`LoadgenError`] if setup fails or a scenario cannot exchange at all.
pub fn run(options: &Options) -> Result<Report, LoadgenError> {
    let warmup = secs("--warmup-secs", options.warmup_secs)?;
    let duration = secs("--duration-secs", options.duration_secs)?;
    let open = secs("--open-secs", options.open_secs)?;
    let floor_time = secs("--floor-secs", options.floor_secs)?;
    if options.workers == 0 || options.workers > MAX_WORKERS {
        return Err(LoadgenError::Option {
            option: "--workers",
            rule: "must be between 1 and 1024",
        });
    }
    if options.cold_tokens > MAX_COLD_TOKENS {
        return Err(LoadgenError::Option {
            option: "--cold-tokens",
            rule: "must be at most 2000000",
        });
    }
    if options.client_threads == 0 || options.client_threads > 64 {
        return Err(LoadgenError::Option {
            option: "--client-threads",
            rule: "must be between 1 and 64",
        });
    }
    let scenarios = if options.scenarios.is_empty() {
        Kind::ALL.to_vec()
    } else {
        options.scenarios.clone()
    };
    // Counted before pinning narrows what this process sees.
    let available_cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    if options.pin {
        pin_self(&options.loadgen_cpus)?;
    }
    let binary = broker_binary(options);
    let setup = BrokerSetup {
        mode: options.broker,
        binary,
        cpus: options.pin.then(|| options.broker_cpus.clone()),
        token_cache: options.token_cache,
        rate_limit: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.client_threads)
        .enable_all()
        .build()
        .map_err(|e| LoadgenError::Setup {
            what: "runtime",
            reason: e.to_string(),
        })?;
    let ticks = broker::ticks_per_second();
    let broker = runtime.block_on(RunningBroker::start(&setup))?;
    let result = runtime.block_on(async {
        measure_all(
            options,
            &broker,
            &scenarios,
            available_cores,
            Phases {
                warmup,
                duration,
                open,
                floor: floor_time,
            },
            ticks,
        )
        .await
    });
    runtime.block_on(broker.stop());
    result
}

#[derive(Debug, Clone, Copy)]
struct Phases {
    warmup: Duration,
    duration: Duration,
    open: Duration,
    floor: Duration,
}

async fn measure_all(
    options: &Options,
    broker: &RunningBroker,
    scenarios: &[Kind],
    available_cores: usize,
    phases: Phases,
    ticks: u64,
) -> Result<Report, LoadgenError> {
    let target = Target {
        td: broker.td.clone(),
        http_addr: broker.http_addr,
        grpc_addr: broker.grpc_addr,
    };
    // The floor works on what this run really exchanges: the scenarios' JWT-SVID and a
    // registry token the broker issued.
    let mut sample = Client::connect(Kind::Realm, &target).await?;
    let registry_token = sample
        .call()
        .await
        .map_err(|source| LoadgenError::Scenario {
            scenario: Kind::Realm,
            source,
        })?;
    drop(sample);
    let me = broker::id(CLIENT_ID)?;
    let jwt = broker
        .td
        .issue_jwt_svid(&me, &[AUDIENCE])
        .map_err(|e| LoadgenError::Setup {
            what: "jwt-svid",
            reason: svid_broker_identity::report::ErrorChain::new(&e).to_string(),
        })?;
    let bundles = broker.td.bundle_set().map_err(|e| LoadgenError::Setup {
        what: "bundle",
        reason: svid_broker_identity::report::ErrorChain::new(&e).to_string(),
    })?;
    // Fail early if the validator itself rejects the token (the floor checks it again).
    JwtSvidValidator::new([AUDIENCE])
        .ok()
        .and_then(|v| {
            v.validate(
                jwt.token().expose_secret(),
                &bundles,
                std::time::SystemTime::now(),
            )
            .ok()
        })
        .ok_or(LoadgenError::Floor {
            what: "jwt-svid rejected by the validator",
        })?;
    let jwks = broker.td.jwt_bundle_jwks_json();
    let floor_input = floor::FloorInput {
        jwt_svid: jwt.token().expose_secret(),
        jwks_json: &jwks,
        bundles: &bundles,
        audience: AUDIENCE,
        registry_token: &registry_token,
    };
    // The broker is idle meanwhile; the loop runs on a blocking thread so the runtime (and
    // the Workload API it serves) stays responsive.
    let floor = tokio::task::block_in_place(|| floor::measure(&floor_input, phases.floor))?;

    let pid = broker.pid();
    let mut reports = Vec::new();
    for &kind in scenarios {
        reports.push(measure_scenario(kind, &target, options, phases, pid, ticks, &floor).await?);
    }
    let (broker_hwm, _) = broker::memory_kib(pid).unwrap_or_default();
    let (loadgen_hwm, _) = broker::memory_kib(std::process::id()).unwrap_or_default();
    Ok(Report {
        machine: Machine {
            available_cores,
            broker_mode: if broker.is_child() {
                "child process"
            } else {
                "in process"
            },
            broker_cpus: broker::cpus_allowed(pid).unwrap_or_default(),
            loadgen_cpus: broker::cpus_allowed(std::process::id()).unwrap_or_default(),
            client_threads: options.client_threads,
            workers: options.workers,
            peak_secs: phases.duration.as_secs_f64(),
            open_secs: phases.open.as_secs_f64(),
            token_cache: options.token_cache,
        },
        floor,
        scenarios: reports,
        broker_peak_rss_kib: broker_hwm,
        loadgen_peak_rss_kib: loadgen_hwm,
    })
}

async fn measure_scenario(
    kind: Kind,
    target: &Target,
    options: &Options,
    phases: Phases,
    pid: u32,
    ticks: u64,
    floor: &floor::Floor,
) -> Result<ScenarioReport, LoadgenError> {
    // Cold: every request gets a token never presented before, minted now (the broker is
    // idle meanwhile), one pool per scenario so no scenario warms another's cache.
    let pool = if kind.is_cold() {
        let minted =
            tokio::task::block_in_place(|| TokenPool::mint(&target.td, kind, options.cold_tokens))?;
        Some(std::sync::Arc::new(minted))
    } else {
        None
    };
    // A cold phase sends no more requests than there are fresh tokens left.
    let budget = |cap: u64| pool.as_ref().map_or(cap, |p| cap.min(p.remaining()));
    let mut clients = Vec::with_capacity(options.workers);
    for _ in 0..options.workers {
        clients.push(Client::connect_with(kind, target, pool.clone()).await?);
    }
    // One exchange up front: a scenario that cannot exchange at all is an error, not a rate.
    if let Some(first) = clients.first_mut() {
        first
            .call()
            .await
            .map_err(|source| LoadgenError::Scenario {
                scenario: kind,
                source,
            })?;
    }
    let (clients, _) =
        scenario::closed_loop(clients, phases.warmup, budget(options.max_requests)).await;

    let cpu0 = Cpu::now(pid, ticks);
    let (clients, peak) =
        scenario::closed_loop(clients, phases.duration, budget(options.max_requests)).await;
    let cpu1 = Cpu::now(pid, ticks);
    let peak_rate = peak.rate();
    let target_rate = peak_rate / 2.0;
    let total = pace::total_requests(target_rate, phases.open, budget(options.max_requests));
    let (clients, half) = scenario::open_loop(clients, target_rate, total).await;
    let cpu2 = Cpu::now(pid, ticks);
    drop(clients);

    let peak_cores = Cpu::cores(cpu0.broker, cpu1.broker, peak.elapsed);
    let per_core = peak_cores.filter(|c| *c > 0.0).map(|c| peak_rate / c);
    Ok(ScenarioReport {
        kind,
        label: kind.label(),
        peak: Peak {
            ok: peak.ok,
            errors: peak.errors,
            first_error: peak.first_error.as_ref().map(ToString::to_string),
            rate: peak_rate,
            broker_cores: peak_cores,
            other_cores: Cpu::others(&cpu0, &cpu1, peak.elapsed),
            per_core,
            floor_share: per_core.map(|r| r / floor.raw_per_sec),
            floor_goal: kind.floor_goal(),
            latency: peak.latency.summarize(),
        },
        half: HalfPeak {
            target_rate,
            ok: half.ok,
            errors: half.errors,
            first_error: half.first_error.as_ref().map(ToString::to_string),
            rate: half.rate(),
            broker_cores: Cpu::cores(cpu1.broker, cpu2.broker, half.elapsed),
            other_cores: Cpu::others(&cpu1, &cpu2, half.elapsed),
            latency: half.latency.summarize(),
            from_schedule: half.from_schedule.summarize(),
        },
    })
}

/// CPU time used so far by the broker, by this process and by the whole machine.
struct Cpu {
    broker: Option<Duration>,
    own: Option<Duration>,
    machine: Option<Duration>,
    same_process: bool,
}

impl Cpu {
    fn now(broker_pid: u32, ticks: u64) -> Self {
        let own_pid = std::process::id();
        Self {
            broker: broker::cpu_time(broker_pid, ticks),
            own: broker::cpu_time(own_pid, ticks),
            machine: broker::machine_busy(ticks),
            same_process: broker_pid == own_pid,
        }
    }

    /// Cores used between two readings over `wall`.
    fn cores(a: Option<Duration>, b: Option<Duration>, wall: Duration) -> Option<f64> {
        let used = b?.checked_sub(a?)?;
        (wall > Duration::ZERO).then(|| used.as_secs_f64() / wall.as_secs_f64())
    }

    /// Cores used by everything but the broker and the load generator: the noise from other
    /// work on the shared machine.
    fn others(a: &Cpu, b: &Cpu, wall: Duration) -> Option<f64> {
        let machine = Self::cores(a.machine, b.machine, wall)?;
        let own = Self::cores(a.own, b.own, wall)?;
        let broker = if a.same_process {
            0.0
        } else {
            Self::cores(a.broker, b.broker, wall)?
        };
        Some((machine - own - broker).max(0.0))
    }
}
