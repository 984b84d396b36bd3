//! `svid-credential-provider`: a kubelet image credential provider that trades the node's
//! SPIFFE identity (or, in KEP-4412 mode, the pod's service-account token vouched for by it) for
//! a short-lived registry login credential from svid-broker.
//!
//! - Kubelet mode (default): one `CredentialProviderRequest` on stdin, one
//!   `CredentialProviderResponse` on stdout and nothing else; on failure a non-zero exit and one
//!   line on stderr naming the cause. Args from the kubelet config: `--config FILE`.
//! - Docker credential helper mode when run as `docker-credential-svid` (the `docker` module); its
//!   config search is `$SVID_CREDENTIAL_PROVIDER_CONFIG`, the per-user file, the node's file
//!   (said on stderr), and it appends to the config's `log_file` as kubelet mode does.
//! - `match-image PATTERN IMAGE` prints `true` or `false` by the kubelet's rule.
//! - `validate --kubelet-config FILE [--config FILE] [--policy FILE]` lints both configs and,
//!   with the broker's policy, warns where node mode would share per-identity grants.
//!
//! The binary's `main` is [`run`]; the library exists so the caps below are documented.

mod config;
mod docker;
mod kubelet;
mod matcher;
mod provider;
mod reference;
mod validate;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use svid_broker_client::{ClientError, blocking};
use svid_broker_identity::report::ErrorChain;

use crate::config::search::{self, ConfigSource};
use crate::config::{Config, ConfigError};
use crate::kubelet::{Request, RequestError, Response};
use crate::provider::PlanError;

pub use crate::config::search::USER_CONFIG_FILE;
pub use crate::config::{
    CONFIG_ENV, DEFAULT_CONFIG_PATH, DEFAULT_DEADLINE, DEFAULT_SAFETY_MARGIN, MAX_BUNDLE_FILE_SIZE,
    MAX_CONFIG_SIZE, MAX_DEADLINE, MAX_PATTERNS, MAX_REGISTRIES,
};
pub use crate::docker::MAX_SERVER_URL_LEN;
pub use crate::kubelet::{MAX_IMAGE_LEN, MAX_REQUEST_SIZE};
pub use crate::validate::MAX_KUBELET_CONFIG_SIZE;

/// Program name in diagnostics.
const NAME: &str = "svid-credential-provider";

#[derive(Parser, Debug)]
#[command(name = NAME, version, about = "Kubelet image credential provider backed by svid-broker")]
struct Cli {
    /// The plugin config (TOML). Default: $SVID_CREDENTIAL_PROVIDER_CONFIG, then
    /// /etc/svid-credential-provider/config.toml (no per-user file in kubelet mode).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Append one line per run to FILE (overrides the config's log_file).
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print `true` or `false`: does PATTERN match IMAGE by the kubelet's matchImages rule?
    MatchImage {
        /// A matchImages pattern, as a kubelet CredentialProviderConfig writes it.
        pattern: String,
        /// An image as the kubelet passes it (`host[:port]/path`, no tag).
        image: String,
    },
    /// Lint a kubelet CredentialProviderConfig (YAML or JSON) and, with --config, our config;
    /// with --policy (the broker's policy file, and --config), warn where a node-mode provider
    /// serves a registry the policy grants per identity.
    Validate {
        /// The kubelet's --image-credential-provider-config file.
        #[arg(long, value_name = "FILE")]
        kubelet_config: PathBuf,
        /// The broker's policy file: with it, warn where a node-mode provider serves a registry the
        /// policy grants per identity.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
}

/// A failed kubelet-mode run: the class for the stderr line, then the detail (printed with
/// [`ErrorChain`], so each cause appears once).
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("invalid request")]
    Request(#[from] RequestError),
    #[error("cannot read the request: {0}")]
    Stdin(std::io::Error),
    #[error("config error")]
    Config(#[from] ConfigError),
    #[error("config error")]
    Plan(#[from] PlanError),
    /// Not a `source()`: the client's line already holds its class and whole chain.
    #[error("{}", one_line_client(.0))]
    Client(ClientError),
    #[error("cannot write the response: {0}")]
    Output(String),
}

fn one_line_client(e: &ClientError) -> String {
    let class = e.class().to_string();
    let detail = e.one_line();
    if detail.starts_with(&class) {
        detail
    } else {
        format!("{class}: {detail}")
    }
}

/// The whole program: dispatches on argv\[0\] and the subcommand, returns the exit status.
pub fn run() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let invoked_as = Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if invoked_as.starts_with("docker-credential-") {
        return run_helper(&invoked_as);
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Command::MatchImage { pattern, image }) => match matcher::matches(&pattern, &image) {
            Ok(m) => {
                println!("{m}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{NAME}: invalid pattern or image: {e}");
                ExitCode::from(2)
            }
        },
        Some(Command::Validate {
            kubelet_config,
            policy,
        }) => run_validate(&kubelet_config, cli.config.as_deref(), policy.as_deref()),
        None => run_kubelet(cli.config.as_deref(), cli.log_file.as_deref()),
    }
}

/// The process's environment, for [`search`].
fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// Credential-helper mode: one verb, the config found by [`search::for_helper`] (said on
/// stderr when it is the node's file), and one log line when the config names a `log_file`.
fn run_helper(invoked_as: &str) -> ExitCode {
    let started = Instant::now();
    let verb = std::env::args().nth(1);
    let mut used: Option<(PathBuf, Option<PathBuf>)> = None;
    let load = || {
        let located = search::for_helper(&process_env)
            .map_err(|e| format!("config error: {}", ErrorChain::new(&e)))?;
        if located.source == ConfigSource::Node {
            eprintln!(
                "{invoked_as}: {}",
                search::node_fallback_notice(&process_env)
            );
        }
        let config = Config::load(&located.path)
            .map_err(|e| format!("config error: {}", ErrorChain::new(&e)))?;
        used = Some((located.path, config.log_file.clone()));
        Ok(config)
    };
    let (code, log) = {
        let mut stdout = std::io::stdout().lock();
        docker::run(verb.as_deref(), load, &mut stdout)
    };
    if let Some((config_path, Some(log_file))) = used {
        let line = format!(
            "outcome={} helper={} server={:?} config={:?} elapsed_ms={} {}",
            log.outcome,
            verb.unwrap_or_default(),
            log.server,
            config_path.display().to_string(),
            started.elapsed().as_millis(),
            log.detail
        );
        append_log_line(&log_file, &line);
    }
    code
}

fn run_validate(kubelet_config: &Path, ours: Option<&Path>, policy: Option<&Path>) -> ExitCode {
    let ours = match ours.map(Config::load).transpose() {
        Ok(c) => c,
        Err(e) => {
            println!("error: config: {}", ErrorChain::new(&e));
            return ExitCode::FAILURE;
        }
    };
    if policy.is_some() && ours.is_none() {
        println!(
            "error: --policy: needs --config (which registry services the plugin's patterns reach)"
        );
        return ExitCode::FAILURE;
    }
    let policy = match policy.map(svid_broker_policy::Policy::load).transpose() {
        Ok(p) => p,
        Err(e) => {
            println!("error: policy: {}", ErrorChain::new(&e));
            return ExitCode::FAILURE;
        }
    };
    let text = match std::fs::read(kubelet_config) {
        Ok(bytes) if bytes.len() <= MAX_KUBELET_CONFIG_SIZE => {
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Ok(_) => {
            println!("error: file: larger than 1 MiB");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            println!("error: file: cannot read {}: {e}", kubelet_config.display());
            return ExitCode::FAILURE;
        }
    };
    let mut findings = validate::lint(&text, ours.as_ref());
    if let (Some(ours), Some(policy)) = (&ours, &policy) {
        findings.extend(validate::lint_node_mode_sharing(&text, ours, policy));
    }
    for f in &findings {
        println!("{f}");
    }
    if findings
        .iter()
        .any(|f| f.severity == validate::Severity::Error)
    {
        ExitCode::FAILURE
    } else {
        if findings.is_empty() {
            println!("ok");
        }
        ExitCode::SUCCESS
    }
}

/// What one kubelet-mode run did, for the log file.
struct RunLog {
    image: String,
    outcome: &'static str,
    detail: String,
}

fn run_kubelet(config_flag: Option<&Path>, log_flag: Option<&Path>) -> ExitCode {
    let started = Instant::now();
    let mut log_file = log_flag.map(Path::to_path_buf);
    let result = serve_one(config_flag, &mut log_file);
    let (code, log) = match result {
        Ok((response, log)) => match write_stdout(&response) {
            Ok(()) => (ExitCode::SUCCESS, log),
            Err(e) => fail(&Failure::Output(e.to_string()), log.image),
        },
        Err((failure, image)) => fail(&failure, image),
    };
    if let Some(path) = log_file {
        let line = format!(
            "outcome={} image={:?} elapsed_ms={} {}",
            log.outcome,
            log.image,
            started.elapsed().as_millis(),
            log.detail
        );
        append_log_line(&path, &line);
    }
    code
}

fn fail(failure: &Failure, image: String) -> (ExitCode, RunLog) {
    let line = ErrorChain::new(failure)
        .to_string()
        .replace(['\n', '\r'], " ");
    eprintln!("{NAME}: {line}");
    (
        ExitCode::FAILURE,
        RunLog {
            image,
            outcome: "error",
            detail: line,
        },
    )
}

#[allow(
    clippy::type_complexity,
    reason = "private: response and log, or failure and image"
)]
fn serve_one(
    config_flag: Option<&Path>,
    log_file: &mut Option<PathBuf>,
) -> Result<(Response, RunLog), (Box<Failure>, String)> {
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_REQUEST_SIZE as u64 + 1)
        .read_to_end(&mut input)
        .map_err(|e| (Box::new(Failure::Stdin(e)), String::new()))?;
    let request = Request::parse(&input).map_err(|e| (Box::new(e.into()), String::new()))?;
    let image = request.image.clone();
    let config = search::for_kubelet(config_flag, &process_env)
        .and_then(|located| Config::load(&located.path))
        .map_err(|e| (Box::new(e.into()), image.clone()))?;
    if log_file.is_none() {
        log_file.clone_from(&config.log_file);
    }
    let Some(plan) =
        provider::plan(&config, &request).map_err(|e| (Box::new(e.into()), image.clone()))?
    else {
        return Ok((
            Response::empty(&request.api_version),
            RunLog {
                image,
                outcome: "not-ours",
                detail: "cache_duration=0s".into(),
            },
        ));
    };
    let options = provider::client_options(&config);
    let credential = blocking::exchange_once(options, &plan.params)
        .map_err(|e| (Box::new(Failure::Client(e)), image.clone()))?;
    let detail = format!(
        "key={} cache_key_type={:?} subject={} sa_mode={}",
        plan.key,
        plan.cache_key_type,
        credential.subject,
        plan.params.subject_token.is_some()
    );
    let response = provider::respond(
        &request,
        plan,
        credential,
        SystemTime::now(),
        config.safety_margin,
    );
    Ok((
        response,
        RunLog {
            image,
            outcome: "ok",
            detail,
        },
    ))
}

/// The one write to stdout: the whole response in a single call, then flush.
fn write_stdout(response: &Response) -> std::io::Result<()> {
    let text = response.to_json_line().map_err(std::io::Error::other)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// Appends `ts=<unix seconds> <line>` (no secrets: the callers log outcome, image or server,
/// subject, elapsed time). Failures to log are ignored: logging must never change the answer.
fn append_log_line(path: &Path, line: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
    else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let _ = file.write_all(format!("ts={now} {line}\n").as_bytes());
}
