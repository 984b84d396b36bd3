//! What a caller sees when an exchange cannot happen: each failure names its step and has a
//! coarse [`ErrorClass`] to branch on, retries stop at the deadline, and no message carries a
//! secret. Runs without a broker: a missing Workload API, then a real (dev) Workload API with no
//! broker behind the address.
//!
//! ```text
//! cargo run -p svid-broker-client --example error_classes
//! ```
//!
//! A successful exchange against an in-process broker is `examples/exchange_client.rs` in the
//! repository (`cargo run -p svid-broker-examples --example exchange_client`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use svid_broker_client::{BrokerClient, ClientOptions, ErrorClass, ExchangeParams, RetryPolicy};
use svid_broker_dev::{DevTrustDomain, WorkloadApiServer};
use svid_broker_identity::{SpiffeId, TrustDomain};

type Error = Box<dyn std::error::Error>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let broker_id = SpiffeId::parse("spiffe://example.org/svid-broker")?;
    let login = ExchangeParams::login_credential("registry.example.org");

    // 1. No Workload API at the configured socket.
    let missing = format!("unix://{}", dir.path().join("no-agent.sock").display());
    let options = ClientOptions::new("127.0.0.1:1", broker_id.clone()).workload_api(missing);
    let err = match BrokerClient::connect(options).await {
        Ok(client) => client.exchange(&login).await.err(),
        Err(e) => Some(e),
    }
    .ok_or("an exchange without a Workload API must fail")?;
    // The class for the program (exit codes, retry decisions), the chain for the operator.
    println!("[{}] {}", err.class(), err.one_line());
    expect(err.class(), ErrorClass::WorkloadApiUnreachable)?;

    // 2. An SVID is available, but nothing listens at the broker's address: retried with
    //    backoff, never past the deadline.
    let workload = SpiffeId::parse("spiffe://example.org/ns/ci/sa/builder")?;
    let td = Arc::new(DevTrustDomain::new(
        TrustDomain::parse("example.org")?,
        [workload],
    )?);
    let agent = WorkloadApiServer::start(dir.path().join("agent.sock"), Arc::clone(&td)).await?;
    let options = ClientOptions::new("127.0.0.1:1", broker_id)
        .workload_api(agent.endpoint())
        .retry(
            RetryPolicy::default()
                .backoff(Duration::from_millis(20), Duration::from_millis(100))
                .max_attempts(3),
        )
        .deadline(Duration::from_secs(5));
    let started = Instant::now();
    let client = BrokerClient::connect(options).await?;
    println!("connected to the Workload API as {}", client.spiffe_id()?);
    let err = client
        .exchange(&login)
        .await
        .err()
        .ok_or("an exchange with no broker must fail")?;
    println!(
        "[{}] {} (after {} ms)",
        err.class(),
        err.one_line(),
        started.elapsed().as_millis()
    );
    expect(err.class(), ErrorClass::BrokerUnavailable)?;

    agent.shutdown().await?;
    Ok(())
}

fn expect(got: ErrorClass, want: ErrorClass) -> Result<(), Error> {
    if got == want {
        Ok(())
    } else {
        Err(format!("expected class {want:?}, got {got:?}").into())
    }
}
