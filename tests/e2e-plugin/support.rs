//! Running the plugin binary with bounded waits (the shared harness's runner).

use std::path::Path;
use std::process::Command;

pub(crate) use crate::testkit::process::Output;

/// The binary under test.
pub(crate) const PLUGIN: &str = env!("CARGO_BIN_EXE_svid-credential-provider");

/// The golden files.
pub(crate) fn data(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

/// Runs `program` (the plugin, or a link to it) with `args`, `env` added to a cleared
/// environment (plus PATH), and `stdin` fed in; killed after the harness's step timeout.
pub(crate) fn run(program: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    crate::testkit::process::run(
        Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().copied()),
        Some(stdin.as_bytes()),
    )
}

/// [`run`] on the plugin binary itself.
pub(crate) fn plugin(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    run(Path::new(PLUGIN), args, env, stdin)
}
