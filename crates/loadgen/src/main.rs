//! `svid-broker-loadgen`: benchmarks svid-broker's token exchange in one run and prints the
//! report (see the library docs and docs/performance.md).

use std::process::ExitCode;

use clap::Parser as _;
use svid_broker_loadgen::{Options, run_any};

fn main() -> ExitCode {
    let options = Options::parse();
    match run_any(&options) {
        Ok(report) => {
            print!("{}", report.to_markdown());
            if let Some(path) = &options.json {
                let written = serde_json::to_vec_pretty(&report)
                    .map_err(std::io::Error::other)
                    .and_then(|json| std::fs::write(path, json));
                if let Err(e) = written {
                    eprintln!("svid-broker-loadgen: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "svid-broker-loadgen: {}",
                svid_broker_identity::report::ErrorChain::new(&e)
            );
            ExitCode::FAILURE
        }
    }
}
