//! The CLI's errors and their exit codes.
//!
//! `main` prints an error with its whole source chain (`: `-joined), so no variant's message
//! repeats its source.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cmd::demo::DemoFailed;

/// Why a command failed. `Rejected` and `Demo` are verdicts (exit 1); everything else means the
/// command could not reach a verdict (exit 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CliError {
    /// The SPIFFE ID, token or chain was checked and failed a rule.
    #[error("{0}")]
    Rejected(Box<dyn std::error::Error + Send + Sync>),
    /// A demo step failed; the step is named, the cause is the source.
    #[error(transparent)]
    Demo(DemoFailed),
    /// The value of `arg` (a flag such as `--subject`) was refused; `reason` says why.
    #[error("invalid {arg}: {reason}")]
    Usage { arg: &'static str, reason: String },
    /// `serve --config`: the file does not parse or a value in it is invalid.
    #[error("invalid --config")]
    Config {
        #[source]
        source: Box<svid_broker_server::ConfigError>,
    },
    /// `serve`: the configuration is valid but the service could not start with it (a busy
    /// port, an unreadable key or policy file, an unreachable Workload API).
    #[error("cannot start the broker")]
    Start {
        #[source]
        source: Box<svid_broker_server::ServerError>,
    },
    /// The async runtime or a signal handler could not be set up (a resource limit).
    #[error("cannot set up {what}")]
    Process {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Opening, reading or creating the file or directory at `path` failed.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A trust bundle file did not parse.
    #[error("bundle {}", path.display())]
    Bundle {
        path: PathBuf,
        #[source]
        source: svid_broker_identity::bundle::BundleError,
    },
    /// The dev trust domain failed to start or run.
    #[error("dev trust domain: {0}")]
    Dev(Box<dyn std::error::Error + Send + Sync>),
    /// `keystore init`: a key store or key refused, or the certificate does not match.
    #[error("keystore init failed")]
    KeyStore(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Output could not be written.
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
}

impl CliError {
    pub(crate) fn rejected(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Rejected(Box::new(err))
    }

    pub(crate) fn key_store(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::KeyStore(Box::new(err))
    }

    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            Self::Rejected(_) | Self::Demo(_) => ExitCode::from(1),
            Self::Usage { .. }
            | Self::Config { .. }
            | Self::Start { .. }
            | Self::Process { .. }
            | Self::Read { .. }
            | Self::Bundle { .. }
            | Self::Dev(_)
            | Self::KeyStore(_)
            | Self::Output(_) => ExitCode::from(2),
        }
    }
}
