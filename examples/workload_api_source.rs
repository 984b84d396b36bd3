//! Serve a dev trust domain over the SPIFFE Workload API and consume it with the `spiffe` crate's
//! `X509Source`, exactly as a workload next to a SPIRE agent would; then verify the SVID it hands
//! out with `svid-broker-identity`.

use std::sync::Arc;
use std::time::SystemTime;

use rustls_pki_types::CertificateDer;
use svid_broker_dev::{DevTrustDomain, WorkloadApiServer};
use svid_broker_identity::{SpiffeId, TrustDomain, x509};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workload = SpiffeId::parse("spiffe://example.org/ns/default/sa/web")?;
    let dev = Arc::new(DevTrustDomain::new(
        TrustDomain::parse("example.org")?,
        [workload],
    )?);
    let dir = tempfile::tempdir()?;
    let server =
        WorkloadApiServer::start(dir.path().join("workload.sock"), Arc::clone(&dev)).await?;
    println!("Workload API at {}", server.endpoint());

    let source = spiffe::X509Source::builder()
        .endpoint(server.endpoint())
        .build()
        .await?;
    let svid = source.svid()?;
    println!("X509Source got {}", svid.spiffe_id());

    let chain: Vec<_> = svid
        .cert_chain()
        .iter()
        .map(|cert| CertificateDer::from(cert.as_ref().to_vec()))
        .collect();
    let verified = x509::verify(&chain, &dev.bundle_set()?, SystemTime::now())?;
    println!(
        "verified offline against the dev bundle: {}",
        verified.spiffe_id()
    );

    source.shutdown().await;
    server.shutdown().await?;
    Ok(())
}
