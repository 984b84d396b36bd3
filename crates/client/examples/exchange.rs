//! Exchanges this workload's SPIFFE identity for a registry login credential and prints the
//! user name and expiry (never the password).
//!
//! ```text
//! SPIFFE_ENDPOINT_SOCKET=unix:///run/spire/agent.sock \
//!   cargo run -p svid-broker-client --example exchange -- \
//!   127.0.0.1:8443 spiffe://example.org/svid-broker registry.local
//! ```

use std::process::ExitCode;

use svid_broker_client::{ClientOptions, ExchangeParams, blocking};
use svid_broker_identity::SpiffeId;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [broker, broker_id, service] = args.as_slice() else {
        eprintln!("usage: exchange BROKER_ADDR BROKER_SPIFFE_ID REGISTRY_SERVICE");
        return ExitCode::from(2);
    };
    let broker_id = match SpiffeId::parse(broker_id) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("invalid broker id: {e}");
            return ExitCode::from(2);
        }
    };
    let options = ClientOptions::new(broker.clone(), broker_id);
    match blocking::exchange_once(options, &ExchangeParams::login_credential(service.clone())) {
        Ok(credential) => {
            println!(
                "username={} subject={} expires_at={:?}",
                credential.username, credential.subject, credential.expires_at
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {}", e.class(), e.one_line());
            ExitCode::FAILURE
        }
    }
}
