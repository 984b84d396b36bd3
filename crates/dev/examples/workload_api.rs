//! A throwaway SPIFFE trust domain behind a real Workload API socket: an unmodified SPIFFE client
//! (the `spiffe` crate's `X509Source`) fetches its SVID from it, and a rotation reaches the client
//! without a reconnect.
//!
//! ```text
//! cargo run -p svid-broker-dev --example workload_api
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use svid_broker_dev::{DevTrustDomain, WorkloadApiServer};
use svid_broker_identity::{SpiffeId, TrustDomain};

type Error = Box<dyn std::error::Error>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let web = SpiffeId::parse("spiffe://example.org/ns/default/sa/web")?;
    let td = Arc::new(DevTrustDomain::new(
        TrustDomain::parse("example.org")?,
        [web],
    )?);
    let dir = tempfile::tempdir()?;
    // Listening once `start` returns: clients may connect right away.
    let server = WorkloadApiServer::start(dir.path().join("agent.sock"), Arc::clone(&td)).await?;
    println!("Workload API at {}", server.endpoint());

    let source = spiffe::X509Source::builder()
        .endpoint(server.endpoint())
        .build()
        .await?;
    let first = source.svid()?;
    println!("X509Source got {}", first.spiffe_id());

    // Every open stream receives the rotated SVID; the client just sees a new certificate.
    server.rotate()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = source.svid()?;
        if now.leaf().as_ref() != first.leaf().as_ref() {
            println!("after rotate(): a new SVID for {}", now.spiffe_id());
            break;
        }
        if Instant::now() > deadline {
            return Err("the rotated SVID did not reach the client".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    source.shutdown().await;
    server.shutdown().await?;
    Ok(())
}
