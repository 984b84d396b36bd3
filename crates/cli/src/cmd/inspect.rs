//! `svid-broker inspect id`.

use std::io::Write;

use svid_broker_identity::SpiffeId;

use crate::cli::InspectCommand;
use crate::error::CliError;

pub(crate) fn run(cmd: InspectCommand) -> Result<(), CliError> {
    match cmd {
        InspectCommand::Id { json, id } => inspect_id(&id, json),
    }
}

fn inspect_id(input: &str, json: bool) -> Result<(), CliError> {
    let id = SpiffeId::parse(input)
        .map_err(|err| CliError::rejected(Prefixed("invalid SPIFFE ID", err)))?;
    let mut out = std::io::stdout().lock();
    let written = if json {
        let object = serde_json::json!({
            "trust_domain": id.trust_domain().as_str(),
            "path": id.path(),
        });
        writeln!(out, "{object}")
    } else {
        writeln!(
            out,
            "{id}\ntrust domain: {}\npath: {}",
            id.trust_domain(),
            if id.path().is_empty() {
                "(none: names the trust domain)"
            } else {
                id.path()
            }
        )
    };
    written.map_err(CliError::Output)
}

/// An error shown after a short context, keeping the inner error as the source.
#[derive(Debug)]
pub(crate) struct Prefixed<E>(pub(crate) &'static str, pub(crate) E);

impl<E: std::fmt::Display> std::fmt::Display for Prefixed<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0, self.1)
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Prefixed<E> {}
