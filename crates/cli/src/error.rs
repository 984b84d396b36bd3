//! The CLI's errors and their exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

/// Why a command failed. `Rejected` is a verdict on the input (exit 1); everything else means the
/// command could not reach a verdict (exit 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CliError {
    /// The SPIFFE ID, token or chain was checked and failed a rule.
    #[error("{0}")]
    Rejected(Box<dyn std::error::Error + Send + Sync>),
    /// An argument has the wrong form.
    #[error("invalid {arg}: {reason}")]
    Usage { arg: &'static str, reason: String },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A trust bundle file did not parse.
    #[error("bundle {}: {source}", path.display())]
    Bundle {
        path: PathBuf,
        source: svid_broker_identity::bundle::BundleError,
    },
    /// The dev trust domain failed to start or run.
    #[error("dev trust domain: {0}")]
    Dev(Box<dyn std::error::Error + Send + Sync>),
    /// Output could not be written.
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
}

impl CliError {
    pub(crate) fn rejected(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Rejected(Box::new(err))
    }

    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            Self::Rejected(_) => ExitCode::from(1),
            _ => ExitCode::from(2),
        }
    }
}
