//! `svid-broker dev`: a development trust domain in the foreground.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use svid_broker_dev::{DevTrustDomain, WorkloadApiServer};
use svid_broker_identity::{SpiffeId, TrustDomain};

use crate::cli::DevArgs;
use crate::error::CliError;

/// The socket name is part of the CLI contract (`DIR/workload.sock`).
const SOCKET_NAME: &str = "workload.sock";
const BUNDLE_PEM: &str = "bundle.pem";
const BUNDLE_DOCUMENT: &str = "bundle.jwks.json";
/// Long enough for a working day of demos; the X.509-SVIDs themselves rotate every 30 minutes.
const DEV_CA_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Everything `dev` needs, validated before any runtime starts.
#[derive(Debug)]
struct DevConfig {
    dir: PathBuf,
    trust_domain: TrustDomain,
    identities: Vec<SpiffeId>,
}

impl DevConfig {
    fn from_args(args: DevArgs) -> Result<Self, CliError> {
        let usage = |arg, reason: String| CliError::Usage { arg, reason };
        let mut identities: Vec<SpiffeId> = Vec::with_capacity(args.spiffe_ids.len());
        for raw in &args.spiffe_ids {
            let id = SpiffeId::parse(raw).map_err(|err| usage("--spiffe-id", err.to_string()))?;
            if id.is_trust_domain_id() {
                return Err(usage(
                    "--spiffe-id",
                    format!("{id} has no path; an SVID needs one"),
                ));
            }
            if identities.contains(&id) {
                return Err(usage("--spiffe-id", format!("{id} is given twice")));
            }
            identities.push(id);
        }
        let trust_domain = match &args.trust_domain {
            Some(raw) => TrustDomain::parse_id_or_name(raw)
                .map_err(|err| usage("--trust-domain", err.to_string()))?,
            None => identities
                .first()
                .map(|id| id.trust_domain().clone())
                .ok_or_else(|| usage("--spiffe-id", "at least one is required".to_owned()))?,
        };
        if let Some(foreign) = identities.iter().find(|id| !id.is_member_of(&trust_domain)) {
            return Err(usage(
                "--spiffe-id",
                format!("{foreign} is not in trust domain {trust_domain}"),
            ));
        }
        Ok(Self {
            dir: args.dir,
            trust_domain,
            identities,
        })
    }
}

pub(crate) fn run(args: DevArgs) -> Result<(), CliError> {
    let config = DevConfig::from_args(args)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.dir)
        .map_err(|err| {
            CliError::Dev(format!("cannot create {}: {err}", config.dir.display()).into())
        })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| CliError::Dev(Box::new(err)))?;
    runtime.block_on(serve(config))
}

async fn serve(config: DevConfig) -> Result<(), CliError> {
    let dev_error = |err: Box<dyn std::error::Error + Send + Sync>| CliError::Dev(err);
    let td = DevTrustDomain::builder(config.trust_domain.clone())
        .identities(config.identities.iter().cloned())
        .ca_ttl(DEV_CA_TTL)
        .build()
        .map_err(|err| dev_error(Box::new(err)))?;
    let td = Arc::new(td);
    write_bundles(&config.dir, &td)?;

    let mut signals = Signals::new()?;
    let server = WorkloadApiServer::start(config.dir.join(SOCKET_NAME), Arc::clone(&td))
        .await
        .map_err(|err| dev_error(Box::new(err)))?;

    // `ready` is the only thing on stdout: scripts wait for exactly this line.
    println!("ready");
    announce(&config, &server.endpoint());

    // JWT signing keys rotate with the SVIDs; keep the bundle files in step with what the
    // Workload API serves so offline verifiers see the same keys.
    let mut generations = td.subscribe();
    loop {
        tokio::select! {
            signal = signals.next() => {
                eprintln!("svid-broker dev: {signal}, shutting down");
                break;
            }
            changed = generations.changed() => {
                if changed.is_err() {
                    break;
                }
                write_bundles(&config.dir, &td)?;
            }
        }
    }
    server
        .shutdown()
        .await
        .map_err(|err| dev_error(Box::new(err)))
}

fn announce(config: &DevConfig, endpoint: &str) {
    let ids: Vec<&str> = config.identities.iter().map(SpiffeId::as_str).collect();
    eprintln!(
        "svid-broker dev: trust domain {td} is up\n\
         \x20 identities (first is the default): {ids}\n\
         \x20 Workload API: {endpoint}\n\
         \x20 trust bundle: {pem} and {doc}\n\
         \x20 try: SPIFFE_ENDPOINT_SOCKET={endpoint} <your SPIFFE client>\n\
         \x20 stop with Ctrl-C",
        td = config.trust_domain,
        ids = ids.join(", "),
        pem = config.dir.join(BUNDLE_PEM).display(),
        doc = config.dir.join(BUNDLE_DOCUMENT).display(),
    );
}

/// Writes both bundle files atomically (temporary file, then rename) so a reader never sees half
/// a bundle.
fn write_bundles(dir: &Path, td: &DevTrustDomain) -> Result<(), CliError> {
    write_atomic(&dir.join(BUNDLE_PEM), td.bundle_pem().as_bytes())?;
    write_atomic(
        &dir.join(BUNDLE_DOCUMENT),
        td.bundle_document_json().as_bytes(),
    )
}

fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), CliError> {
    let fail = |err: std::io::Error| {
        CliError::Dev(format!("cannot write {}: {err}", path.display()).into())
    };
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(fail)?;
    file.write_all(contents).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// SIGINT and SIGTERM, the two ways the dev trust domain is asked to stop.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self, CliError> {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind| signal(kind).map_err(|err| CliError::Dev(Box::new(err)));
        Ok(Self {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signals")
    }
}
