//! `svid-broker`: the token-exchange service and its operator CLI.
//!
//! Exit codes are a contract scripts rely on:
//! - `0`: the command did what was asked (the ID or SVID is valid, the dev trust domain ran and
//!   stopped cleanly on a signal).
//! - `1`: the input was judged and rejected; one line on stderr names the rule that failed.
//!   For `demo`: a step failed; the stderr line names the step.
//! - `2`: the command could not judge anything: bad usage, an unreadable or invalid file, a
//!   socket that cannot be bound.

mod cli;
mod cmd;
mod error;

use std::process::ExitCode;

use clap::Parser;
use svid_broker_identity::report::ErrorChain;

fn main() -> ExitCode {
    // Multicall: run under the kubelet plugin's name (a link, as `demo` makes one; a name it
    // starts, such as the `-sa` link `deploy/node/install-plugin.sh` makes), this binary is
    // that plugin, unchanged; the plugin's own binary is the same code.
    //
    // Why the CLI links the whole plugin (`svid-credential-provider`, and with it
    // `svid-broker-client`, `serde_norway` and `unsafe-libyaml-norway`; everything else it
    // needs the CLI links anyway): `cargo run -- demo` builds only this package's binary, and
    // stable Cargo cannot make one package's build produce another package's binary
    // (artifact dependencies, `-Z bindeps`, are nightly-only). The demo's step 3 must exec the
    // plugin the way a kubelet does: a file in a bin directory, a fresh process, args and env
    // from a `CredentialProviderConfig`, the request on stdin. A library call would skip the
    // parts that break in production (argv, env, stdin/stdout framing, exit status), so the
    // exec'd binary is this one, under the plugin's name.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let invoked_as = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Under the plugin's name, or as the Docker credential helper (`docker-credential-svid`),
    // which the plugin's binary is too: the same library decides by its own name.
    if invoked_as.starts_with(cmd::demo::PLUGIN_NAME)
        || invoked_as.starts_with("docker-credential-")
    {
        return svid_credential_provider::run();
    }
    let args = cli::Cli::parse();
    match cmd::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("svid-broker: {}", ErrorChain::new(&err));
            err.exit_code()
        }
    }
}
