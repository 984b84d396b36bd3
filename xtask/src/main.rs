//! `cargo run -p xtask -- <task>`: repository tasks. See the library docs.

use std::process::ExitCode;

const USAGE: &str = "usage: cargo run -p xtask -- codegen [--check]

  codegen          regenerate crates/proto/src/gen/ from proto/
  codegen --check  fail if the checked-in generated code is out of date";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let root = xtask::workspace_root();
    let result = match args.as_slice() {
        ["codegen"] => xtask::codegen(&root).map(|files| {
            for file in files {
                println!("wrote {}", file.display());
            }
        }),
        ["codegen", "--check"] => xtask::check(&root).map(|()| {
            println!("generated code is up to date");
        }),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: {}",
                svid_broker_identity::report::ErrorChain::new(&e)
            );
            ExitCode::FAILURE
        }
    }
}
