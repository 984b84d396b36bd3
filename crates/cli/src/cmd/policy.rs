//! `svid-broker policy explain`.

use std::io::Write;

use svid_broker_identity::SpiffeId;
use svid_broker_identity::report::ErrorChain;
use svid_broker_policy::{Policy, scope};

use crate::cli::PolicyCommand;
use crate::error::CliError;

pub(crate) fn run(cmd: PolicyCommand) -> Result<(), CliError> {
    match cmd {
        PolicyCommand::Explain {
            policy,
            subject,
            service,
            scopes,
        } => {
            let usage = |arg, err: &dyn std::error::Error| CliError::Usage {
                arg,
                reason: ErrorChain::new(err).to_string(),
            };
            let policy = Policy::load(&policy).map_err(|e| usage("--policy", &e))?;
            let subject = SpiffeId::parse(&subject).map_err(|e| usage("--subject", &e))?;
            let requested = scope::parse_scopes(scopes.iter().map(String::as_str))
                .map_err(|e| usage("--scope", &e))?;
            let decision = policy
                .decide(&subject, &service, &requested)
                .map_err(|e| usage("--service", &e))?;
            std::io::stdout()
                .lock()
                .write_all(decision.explain().as_bytes())
                .map_err(CliError::Output)
        }
    }
}
