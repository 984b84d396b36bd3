//! `svid-broker`: the token-exchange service and its operator CLI.
//!
//! Exit codes are a contract scripts rely on:
//! - `0`: the command did what was asked (the ID or SVID is valid, the dev trust domain ran and
//!   stopped cleanly on a signal).
//! - `1`: the input was judged and rejected; one line on stderr names the rule that failed.
//! - `2`: the command could not judge anything: bad usage, an unreadable or invalid file, a
//!   socket that cannot be bound.

mod cli;
mod cmd;
mod error;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cmd::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("svid-broker: {err}");
            err.exit_code()
        }
    }
}
