//! `svid-broker serve`: the token-exchange service in the foreground.

use std::net::SocketAddr;
use std::sync::Arc;

use svid_broker_identity::clock::SystemClock;
use svid_broker_server::config::{BrokerConfig, LogFormat};
use svid_broker_server::{BrokerServer, ServerHandle};
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::ServeArgs;
use crate::error::CliError;

pub(crate) fn run(args: &ServeArgs) -> Result<(), CliError> {
    // Everything the file says is checked before a runtime or a socket exists: only this is
    // "invalid --config"; what fails later (binding, reading keys) is a start failure.
    let config = BrokerConfig::load(&args.config).map_err(|source| CliError::Config {
        source: Box::new(source),
    })?;
    init_logging(config.log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Process {
            what: "the async runtime",
            source,
        })?;
    runtime.block_on(serve(config))
}

fn init_logging(format: LogFormat) -> Result<(), CliError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second subscriber (tests calling twice) is not an error worth failing on.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
        // `LogFormat` is `#[non_exhaustive]`: a format added to the config crate that this
        // binary cannot write is refused rather than silently logged as text.
        other => {
            return Err(CliError::Usage {
                arg: "--config",
                reason: format!("log format {other:?} is not supported by this binary"),
            });
        }
    };
    Ok(())
}

async fn serve(config: BrokerConfig) -> Result<(), CliError> {
    let install = |kind| {
        signal(kind).map_err(|source| CliError::Process {
            what: "the signal handlers",
            source,
        })
    };
    let mut hangup = install(SignalKind::hangup())?;
    let mut interrupt = install(SignalKind::interrupt())?;
    let mut terminate = install(SignalKind::terminate())?;
    let handle: ServerHandle = BrokerServer::start(config, Arc::new(SystemClock))
        .await
        .map_err(|source| CliError::Start {
            source: Box::new(source),
        })?;
    // `ready` alone on the first line (the contract `dev` follows too), then the bound address.
    println!("ready");
    print!("{}", address_lines(handle.http_addr(), handle.grpc_addr()));
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                // The reloader logs the outcome; a bad file keeps the last good policy.
                let _ = handle.reload_policy_off_runtime().await;
            }
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    eprintln!("svid-broker serve: shutting down");
    handle.shutdown().await;
    Ok(())
}

/// The bound addresses, one `name=ADDR` line each: `http=` always, `grpc=` when the gRPC
/// listener runs (scripts and tests read them after `ready`).
fn address_lines(http: SocketAddr, grpc: Option<SocketAddr>) -> String {
    let mut out = format!("http={http}\n");
    if let Some(grpc) = grpc {
        out.push_str(&format!("grpc={grpc}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_bound_addresses_are_printed() {
        let http: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let grpc: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        assert_eq!(
            address_lines(http, Some(grpc)),
            "http=127.0.0.1:8080\ngrpc=127.0.0.1:8443\n"
        );
        assert_eq!(address_lines(http, None), "http=127.0.0.1:8080\n");
    }
}
