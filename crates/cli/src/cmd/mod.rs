//! One module per subcommand; `run` dispatches.

mod audit;
pub(crate) mod demo;
mod dev;
mod federation_key;
mod inspect;
mod keystore;
mod policy;
mod registry_config;
mod serve;
mod verify;

use crate::cli::{Cli, Command, KeystoreCommand};
use crate::error::CliError;

pub(crate) fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Demo => demo::run(),
        Command::Dev(args) => dev::run(args),
        Command::Inspect(cmd) => inspect::run(cmd),
        Command::Verify(cmd) => verify::run(cmd),
        Command::Serve(args) => serve::run(&args),
        Command::Policy(cmd) => policy::run(cmd),
        Command::RegistryConfig(args) => registry_config::run(&args),
        Command::FederationKey(args) => federation_key::run(&args),
        Command::Keystore(KeystoreCommand::Init(args)) => keystore::init(&args),
        Command::Audit(crate::cli::AuditCommand::Report(args)) => audit::run(&args),
    }
}
