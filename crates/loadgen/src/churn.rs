//! The churn test: many distinct subjects, each seen once, through the per-subject rate
//! limiter and every cache the broker keeps (verified JWT-SVIDs, verified login credentials,
//! issued tokens), while the broker's resident set size is sampled from `/proc/PID/status`.
//! Whatever the broker remembers per subject must be bounded: RSS has to level off once the
//! caches are full and stay there however many more subjects arrive.
//!
//! Each subject `spiffe://example.org/ns/churn/sa/w<N>` makes two requests: a gRPC `Exchange`
//! with a freshly minted JWT-SVID as bearer for a login credential (a JWT-SVID cache entry and
//! a rate-limiter key), then the realm's `GET /token` with that login credential (a
//! login-credential cache entry, an issued-token cache entry, the rate limiter again). The
//! subjects are released on a fixed schedule (open loop) over the run, so the rate is the same
//! from start to end and the RSS curve is a function of subjects seen. With
//! `--churn-mtls-every N`, every Nth subject also makes a gRPC `Exchange` over a new mTLS
//! connection presenting an X.509-SVID issued for it: a verified-chain cache entry and a TLS
//! handshake per such subject. At the end the broker's cache lines are read from its
//! `/metrics`: the verified caches' entries, bytes and evictions, and the issued-token cache's
//! hits and misses (it exports no more).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use serde::Serialize;
use svid_broker_client::transport::{client_tls_config, exchange_client, with_bearer};
use svid_broker_dev::DevTrustDomain;
use svid_broker_dev::ExposeSecret as _;
use svid_broker_identity::SpiffeId;
use svid_broker_identity::authorize::Authorizer;
use svid_broker_identity::bundle::BundleProvider;
use svid_broker_server::grpc::proto::token_exchange_client::TokenExchangeClient;
use svid_broker_server::grpc::proto::{ExchangeRequest, TokenType};
use tokio::sync::Mutex;
use tonic::transport::Channel;

use svid_broker_identity::report::ErrorChain;

use crate::broker::{
    self, AUDIENCE, BROKER_ID, BrokerSetup, CHURN_ID_PREFIX, RunningBroker, SCOPE, SERVICE, id,
};
use crate::scenario::{MAX_RESPONSE_BYTES, REQUEST_TIMEOUT, form_query, http1_connect};
use crate::{LoadgenError, Options, pace};

/// Concurrent workers (each with its own gRPC and realm connection).
pub const CHURN_WORKERS: usize = 32;
/// The per-subject rate limit during the churn test (requests per second, burst): on, so the
/// limiter keeps a bucket per subject, and loose enough that two requests per subject pass.
pub const CHURN_RATE_LIMIT: (u32, u32) = (10, 20);
/// Most subjects one run may use.
pub const MAX_CHURN_SUBJECTS: u64 = 100_000_000;
/// Longest churn run, seconds.
pub const MAX_CHURN_SECS: f64 = 7200.0;

/// One RSS sample.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ChurnSample {
    /// Seconds since the first subject was released.
    pub secs: f64,
    /// Subjects whose two requests have both finished (successfully or not).
    pub subjects: u64,
    /// Failed requests so far.
    pub errors: u64,
    /// The broker's `VmRSS`, KiB.
    pub rss_kib: u64,
}

/// The churn run's result.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnReport {
    /// The broker's `Cpus_allowed_list`.
    pub broker_cpus: String,
    /// The load generator's `Cpus_allowed_list`.
    pub loadgen_cpus: String,
    /// Whether the broker's issued-token cache was on.
    pub token_cache: bool,
    /// Subjects the run was asked for.
    pub subjects_planned: u64,
    /// Subjects finished.
    pub subjects_done: u64,
    /// Successful requests (two per subject when all goes well).
    pub requests_ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// The first failure recorded, if any request failed; never a token.
    pub first_error: Option<String>,
    /// Wall time, seconds.
    pub elapsed_secs: f64,
    /// Broker CPU seconds used over the run.
    pub broker_cpu_secs: Option<f64>,
    /// The broker's RSS before the first subject, KiB.
    pub rss_before_kib: u64,
    /// The samples, in time order (the last one taken when the run ended).
    pub samples: Vec<ChurnSample>,
    /// The broker's peak RSS (`VmHWM`) at the end, KiB.
    pub broker_peak_rss_kib: u64,
    /// Every how many subjects one made the mTLS step (0: none did).
    pub mtls_every: u64,
    /// The broker's cache lines of `/metrics` at the end (`svid_broker_verified_cache_*`,
    /// `svid_broker_token_cache_*`), as the broker wrote them; one `#` line saying why when
    /// `/metrics` could not be read.
    pub cache_metrics: Vec<String>,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl ChurnReport {
    /// Samples after the first fifth of the run (the warm-up, while the caches fill).
    pub fn after_warmup(&self) -> &[ChurnSample] {
        let warm = self.elapsed_secs / 5.0;
        let first = self
            .samples
            .iter()
            .position(|s| s.secs >= warm)
            .unwrap_or(self.samples.len());
        &self.samples[first..]
    }

    /// The report as Markdown: a summary and the RSS curve (at most about 25 rows; the JSON
    /// has every sample).
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "churn: broker on CPUs {}, load generator on CPUs {}, token cache {}, {}; {} of {} \
             subjects in {:.0} s ({:.0} subjects/s), {} requests ok, {} errors; broker CPU {} s\n",
            self.broker_cpus,
            self.loadgen_cpus,
            if self.token_cache { "on" } else { "off" },
            match self.mtls_every {
                0 => "no mTLS step".to_owned(),
                1 => "every subject also over mTLS".to_owned(),
                n => format!("one subject in {n} also over mTLS"),
            },
            self.subjects_done,
            self.subjects_planned,
            self.elapsed_secs,
            self.subjects_done as f64 / self.elapsed_secs.max(1e-9),
            self.requests_ok,
            self.errors,
            self.broker_cpu_secs
                .map_or_else(|| "n/a".to_owned(), |c| format!("{c:.1}")),
        );
        let _ = writeln!(out, "| time s | subjects | errors | broker RSS MiB |");
        let _ = writeln!(out, "|---:|---:|---:|---:|");
        let _ = writeln!(out, "| before | 0 | 0 | {:.1} |", mib(self.rss_before_kib));
        let step = self.samples.len().div_ceil(24).max(1);
        for (i, s) in self.samples.iter().enumerate() {
            if i % step == 0 || i + 1 == self.samples.len() {
                let _ = writeln!(
                    out,
                    "| {:.0} | {} | {} | {:.1} |",
                    s.secs,
                    s.subjects,
                    s.errors,
                    mib(s.rss_kib)
                );
            }
        }
        let warm = self.after_warmup();
        let lo = warm.iter().map(|s| s.rss_kib).min().unwrap_or_default();
        let hi = warm.iter().map(|s| s.rss_kib).max().unwrap_or_default();
        let _ = writeln!(
            out,
            "\nafter warm-up (the last four fifths, {} samples): RSS {:.1} to {:.1} MiB; \
             broker peak RSS (VmHWM) {:.1} MiB",
            warm.len(),
            mib(lo),
            mib(hi),
            mib(self.broker_peak_rss_kib)
        );
        if let Some(e) = &self.first_error {
            let _ = writeln!(out, "first error: {e}");
        }
        if !self.cache_metrics.is_empty() {
            let _ = writeln!(out, "\nthe broker's caches at the end (`/metrics`):\n```");
            for line in &self.cache_metrics {
                let _ = writeln!(out, "{line}");
            }
            let _ = writeln!(out, "```");
        }
        out
    }
}

#[derive(Default)]
struct Counters {
    done: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Counters {
    fn record(&self, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = self
                    .first_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                first.get_or_insert(e);
            }
        }
    }
}

/// Runs the churn test.
///
/// # Errors
/// A [`LoadgenError`] if an option is out of range or setup fails.
pub fn run(options: &Options) -> Result<ChurnReport, LoadgenError> {
    if options.churn_subjects == 0 || options.churn_subjects > MAX_CHURN_SUBJECTS {
        return Err(LoadgenError::Option {
            option: "--churn-subjects",
            rule: "must be between 1 and 100000000",
        });
    }
    if !(options.churn_secs.is_finite()
        && options.churn_secs > 0.0
        && options.churn_secs <= MAX_CHURN_SECS)
    {
        return Err(LoadgenError::Option {
            option: "--churn-secs",
            rule: "must be above 0 and at most 7200",
        });
    }
    if !(options.churn_sample_secs.is_finite() && options.churn_sample_secs >= 0.1) {
        return Err(LoadgenError::Option {
            option: "--churn-sample-secs",
            rule: "must be at least 0.1",
        });
    }
    if options.pin {
        crate::pin_self(&options.loadgen_cpus)?;
    }
    let binary = crate::broker_binary(options);
    let setup = BrokerSetup {
        mode: options.broker,
        binary,
        cpus: options.pin.then(|| options.broker_cpus.clone()),
        token_cache: !options.churn_without_token_cache,
        rate_limit: Some(CHURN_RATE_LIMIT),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.client_threads)
        .enable_all()
        .build()
        .map_err(|e| LoadgenError::Setup {
            what: "runtime",
            reason: e.to_string(),
        })?;
    let broker = runtime.block_on(RunningBroker::start(&setup))?;
    let result = runtime.block_on(drive(&broker, options));
    runtime.block_on(broker.stop());
    result
}

struct Worker {
    grpc: TokenExchangeClient<Channel>,
    realm: Option<SendRequest<Empty<Bytes>>>,
    /// For the mTLS step's client configurations.
    bundles: Arc<dyn BundleProvider>,
    grpc_addr: std::net::SocketAddr,
}

async fn drive(broker: &RunningBroker, options: &Options) -> Result<ChurnReport, LoadgenError> {
    let fail = |what: &'static str| {
        move |e: &dyn std::error::Error| LoadgenError::Setup {
            what,
            reason: ErrorChain::new(e).to_string(),
        }
    };
    let pid = broker.pid();
    let ticks = broker::ticks_per_second();
    let bundles: Arc<dyn BundleProvider> = Arc::new(Arc::new(
        broker.td.bundle_set().map_err(|e| fail("bundle")(&e))?,
    ));
    let mut workers = Vec::with_capacity(CHURN_WORKERS);
    for _ in 0..CHURN_WORKERS {
        let tls = client_tls_config(
            Arc::clone(&bundles),
            Authorizer::Exact(id(BROKER_ID)?),
            None,
        )
        .map_err(|e| fail("client tls")(&e))?;
        let grpc = exchange_client(broker.grpc_addr, tls)
            .await
            .map_err(|e| fail("grpc connect")(&e))?;
        let realm = http1_connect(broker.http_addr)
            .await
            .map_err(|e| fail("realm connect")(&e))?;
        workers.push(Worker {
            grpc,
            realm: Some(realm),
            bundles: Arc::clone(&bundles),
            grpc_addr: broker.grpc_addr,
        });
    }
    let mtls_every = options.churn_mtls_every;
    // One subject through both steps before the clock starts: setup is right or the run stops.
    {
        let counters = Counters::default();
        let first = workers.first_mut().ok_or(LoadgenError::Setup {
            what: "workers",
            reason: "none".to_owned(),
        })?;
        // With the mTLS step on, the setup subject takes it too.
        let mtls = mtls_every > 0;
        subject(
            first,
            &broker.td,
            broker.http_addr,
            u64::MAX,
            mtls,
            &counters,
        )
        .await;
        if let Some(e) = counters
            .first_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            return Err(LoadgenError::Setup {
                what: "churn subject",
                reason: e,
            });
        }
    }

    let rss_before_kib = broker::memory_kib(pid).map_or(0, |(_, rss)| rss);
    let cpu_before = broker::cpu_time(pid, ticks);
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let sample_every = Duration::from_secs_f64(options.churn_sample_secs);
    let sampler = {
        let counters = Arc::clone(&counters);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut next = start + sample_every;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until(next.into()).await;
                next += sample_every;
                samples.push(sample(pid, start, &counters));
            }
            samples
        })
    };

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let rx = Arc::new(Mutex::new(rx));
    let mut tasks = Vec::with_capacity(workers.len());
    for mut worker in workers {
        let rx = Arc::clone(&rx);
        let counters = Arc::clone(&counters);
        let td = Arc::clone(&broker.td);
        let http = broker.http_addr;
        tasks.push(tokio::spawn(async move {
            loop {
                let job = rx.lock().await.recv().await;
                let Some(n) = job else { break };
                let mtls = mtls_every > 0 && n % mtls_every == 0;
                subject(&mut worker, &td, http, n, mtls, &counters).await;
            }
        }));
    }
    let total = options.churn_subjects;
    let rate = total as f64 / options.churn_secs;
    let mut sent = 0u64;
    while sent < total {
        let due = pace::due_count(start.elapsed(), rate, total);
        while sent < due {
            // Workers stop only after the sender is dropped, so this cannot fail.
            let _ = tx.send(sent);
            sent += 1;
        }
        if sent < total {
            tokio::time::sleep_until((start + pace::due_at(sent, rate)).into()).await;
        }
    }
    drop(tx);
    for task in tasks {
        // A worker that panicked has its subjects missing from `done`; the report shows it.
        let _ = task.await;
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut samples = sampler.await.unwrap_or_default();
    samples.push(sample(pid, start, &counters));
    let cpu_after = broker::cpu_time(pid, ticks);
    let first_error = counters
        .first_error
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Ok(ChurnReport {
        broker_cpus: broker::cpus_allowed(pid).unwrap_or_default(),
        loadgen_cpus: broker::cpus_allowed(std::process::id()).unwrap_or_default(),
        token_cache: !options.churn_without_token_cache,
        subjects_planned: total,
        subjects_done: counters.done.load(Ordering::Relaxed),
        requests_ok: counters.ok.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        first_error,
        elapsed_secs: elapsed.as_secs_f64(),
        broker_cpu_secs: cpu_before
            .zip(cpu_after)
            .and_then(|(a, b)| b.checked_sub(a))
            .map(|d| d.as_secs_f64()),
        rss_before_kib,
        samples,
        broker_peak_rss_kib: broker::memory_kib(pid).map_or(0, |(hwm, _)| hwm),
        mtls_every,
        // A report without the section would look like a broker without caches: say why.
        cache_metrics: cache_metrics(broker.http_addr)
            .await
            .unwrap_or_else(|e| vec![format!("# the broker's /metrics could not be read: {e}")]),
    })
}

/// Sends `request` on `conn`: the status and the body, read up to [`MAX_RESPONSE_BYTES`].
async fn send(
    conn: &mut SendRequest<Empty<Bytes>>,
    request: http::Request<Empty<Bytes>>,
) -> Result<(u16, Bytes), String> {
    conn.ready().await.map_err(|e| e.to_string())?;
    let response = conn
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// The cache lines of the broker's `/metrics` (the realm listener serves it).
async fn cache_metrics(http: std::net::SocketAddr) -> Result<Vec<String>, String> {
    let mut conn = http1_connect(http).await.map_err(|e| e.to_string())?;
    let request = http::Request::get("/metrics")
        .header(http::header::HOST, "127.0.0.1")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, send(&mut conn, request))
        .await
        .map_err(|_| "metrics: timeout".to_owned())??;
    if status != 200 {
        return Err(format!("metrics: http {status}"));
    }
    Ok(String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| {
            l.starts_with("svid_broker_verified_cache_")
                || l.starts_with("svid_broker_token_cache_")
        })
        .map(str::to_owned)
        .collect())
}

fn sample(pid: u32, start: Instant, counters: &Counters) -> ChurnSample {
    ChurnSample {
        secs: start.elapsed().as_secs_f64(),
        subjects: counters.done.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        rss_kib: broker::memory_kib(pid).map_or(0, |(_, rss)| rss),
    }
}

/// Subject `n`'s two requests (three with `mtls`); every failure is counted once.
async fn subject(
    worker: &mut Worker,
    td: &DevTrustDomain,
    http: std::net::SocketAddr,
    n: u64,
    mtls: bool,
    counters: &Counters,
) {
    let minted = SpiffeId::parse(&format!("{CHURN_ID_PREFIX}{n}"))
        .map_err(|e| e.to_string())
        .and_then(|who| {
            let jwt = td
                .issue_jwt_svid(&who, &[AUDIENCE])
                .map_err(|e| ErrorChain::new(&e).to_string())?;
            Ok((who, jwt))
        });
    match minted {
        Err(e) => counters.record(Err(e)),
        Ok((who, jwt)) => {
            match login_credential(&mut worker.grpc, jwt.token().expose_secret()).await {
                Err(e) => counters.record(Err(e)),
                Ok(password) => {
                    counters.record(Ok(()));
                    counters.record(realm_token(worker, http, &who, &password).await);
                }
            }
            if mtls {
                counters.record(mtls_exchange(worker, td, &who).await);
            }
        }
    }
    counters.done.fetch_add(1, Ordering::Relaxed);
}

/// One `Exchange` over a new mTLS connection presenting an X.509-SVID issued for `who`: the
/// broker verifies a chain it has never seen and remembers it.
async fn mtls_exchange(worker: &Worker, td: &DevTrustDomain, who: &SpiffeId) -> Result<(), String> {
    let svid = td
        .issue_x509_svid(who)
        .map_err(|e| format!("mTLS: x509-svid: {}", ErrorChain::new(&e)))?;
    let identity = Some((svid.chain().to_vec(), svid.private_key().to_rustls()));
    let broker_id = id(BROKER_ID).map_err(|e| format!("mTLS: {e}"))?;
    let tls = client_tls_config(
        Arc::clone(&worker.bundles),
        Authorizer::Exact(broker_id),
        identity,
    )
    .map_err(|e| format!("mTLS: client tls: {}", ErrorChain::new(&e)))?;
    let request = ExchangeRequest {
        requested_token_type: TokenType::RegistryAccessToken.into(),
        audience: SERVICE.to_owned(),
        scope: vec![SCOPE.to_owned()],
        ..Default::default()
    };
    let exchange = async {
        let mut client = exchange_client(worker.grpc_addr, tls)
            .await
            .map_err(|e| format!("mTLS: connect: {}", ErrorChain::new(&e)))?;
        client
            .exchange(request)
            .await
            .map_err(|s| format!("mTLS: grpc {:?}: {}", s.code(), s.message()))
    };
    let response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| "mTLS: timeout".to_owned())??
        .into_inner();
    Some(response.access_token)
        .filter(|t| !t.is_empty())
        .map(|_| ())
        .ok_or_else(|| "mTLS: empty".to_owned())
}

async fn login_credential(
    grpc: &mut TokenExchangeClient<Channel>,
    jwt: &str,
) -> Result<String, String> {
    let request = ExchangeRequest {
        requested_token_type: TokenType::RegistryLoginCredential.into(),
        audience: SERVICE.to_owned(),
        scope: vec![SCOPE.to_owned()],
        ..Default::default()
    };
    let request = with_bearer(request, jwt).map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(REQUEST_TIMEOUT, grpc.exchange(request))
        .await
        .map_err(|_| "login credential: timeout".to_owned())?
        .map_err(|s| format!("login credential: grpc {:?}: {}", s.code(), s.message()))?
        .into_inner();
    Some(response.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "login credential: empty".to_owned())
}

async fn realm_token(
    worker: &mut Worker,
    http: std::net::SocketAddr,
    who: &SpiffeId,
    password: &str,
) -> Result<(), String> {
    if worker.realm.as_ref().is_none_or(SendRequest::is_closed) {
        worker.realm = Some(http1_connect(http).await.map_err(|e| e.to_string())?);
    }
    let conn = worker
        .realm
        .as_mut()
        .ok_or_else(|| "realm: no connection".to_owned())?;
    let query = form_query(&[
        ("service", SERVICE),
        ("scope", SCOPE),
        ("account", who.as_str()),
    ]);
    let basic = STANDARD.encode(format!("{}:{password}", who.as_str()));
    let request = http::Request::get(format!("/token?{query}"))
        .header(http::header::HOST, "127.0.0.1")
        .header(http::header::AUTHORIZATION, format!("Basic {basic}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let (status, body) = send(conn, request).await?;
        if status != 200 {
            return Err(format!("realm: http {status}"));
        }
        let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        json.get("token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(|_| ())
            .ok_or_else(|| "realm: no token".to_owned())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| "realm: timeout".to_owned())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(samples: &[(f64, u64)]) -> ChurnReport {
        ChurnReport {
            broker_cpus: "0".to_owned(),
            loadgen_cpus: "1".to_owned(),
            token_cache: true,
            subjects_planned: 10,
            subjects_done: 10,
            requests_ok: 20,
            errors: 0,
            first_error: None,
            elapsed_secs: 100.0,
            broker_cpu_secs: Some(1.0),
            rss_before_kib: 1024,
            samples: samples
                .iter()
                .map(|&(secs, rss_kib)| ChurnSample {
                    secs,
                    subjects: 1,
                    errors: 0,
                    rss_kib,
                })
                .collect(),
            broker_peak_rss_kib: 4096,
            mtls_every: 0,
            cache_metrics: Vec::new(),
        }
    }

    #[test]
    fn warm_up_is_the_first_fifth() {
        let r = report(&[(10.0, 1), (19.9, 2), (20.0, 3), (60.0, 4), (100.0, 5)]);
        let warm: Vec<u64> = r.after_warmup().iter().map(|s| s.rss_kib).collect();
        assert_eq!(warm, [3, 4, 5]);
        let table = r.to_markdown();
        assert!(table.contains("RSS 0.0 to 0.0 MiB"), "{table}");
        assert!(table.contains("| before | 0 | 0 | 1.0 |"), "{table}");
    }

    #[test]
    fn long_curves_are_thinned_but_keep_the_last_sample() {
        let samples: Vec<(f64, u64)> = (0..120).map(|i| (f64::from(i) * 5.0, 2048)).collect();
        let table = report(&samples).to_markdown();
        let rows = table.lines().filter(|l| l.starts_with("| ")).count();
        // Header, "before", at most 24 thinned rows and the last one.
        assert!(rows <= 27, "{rows}: {table}");
        assert!(table.contains("| 595 | 1 | 0 | 2.0 |"), "{table}");
    }
}
