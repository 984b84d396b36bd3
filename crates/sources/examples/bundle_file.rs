//! Keep a trust bundle current from a PEM file: a broken write keeps the last good bundle in
//! place (and is reported), a CA rotation is picked up on the next reload, and verifiers read the
//! current bundles through `BundleProvider` without locking.
//!
//! ```text
//! cargo run -p svid-broker-sources --example bundle_file
//! ```

use std::time::SystemTime;

use svid_broker_dev::DevTrustDomain;
use svid_broker_identity::{SpiffeId, TrustDomain, x509};
use svid_broker_sources::file::FileSourceConfig;
use svid_broker_sources::{BundleProvider, FileBundleSource};

type Error = Box<dyn std::error::Error>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let td = TrustDomain::parse("example.org")?;
    let web = SpiffeId::parse("spiffe://example.org/ns/prod/sa/web")?;
    // Two CAs for the same trust domain: before and after a rotation.
    let old_ca = DevTrustDomain::new(td.clone(), [web.clone()])?;
    let new_ca = DevTrustDomain::new(td.clone(), [web.clone()])?;
    let svid_from_new_ca = new_ca.issue_x509_svid(&web)?;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("example.org.pem");
    std::fs::write(&path, old_ca.bundle_pem())?;
    // `start` would also poll the file; `load` plus `reload_now` keeps this example step by step.
    let source = FileBundleSource::load(FileSourceConfig::new().bundle_file(td, &path))?;
    let verifies = |source: &FileBundleSource| {
        x509::verify(
            svid_from_new_ca.chain(),
            &source.bundles(),
            SystemTime::now(),
        )
        .is_ok()
    };
    println!(
        "old CA in the file; SVID from the new CA verifies: {}",
        verifies(&source)
    );
    if verifies(&source) {
        return Err("an SVID from a CA that is not in the bundle must not verify".into());
    }

    // A half-written file: the reload fails, the old bundle stays, the error is kept.
    std::fs::write(&path, "-----BEGIN CERTIFICATE-----\ntruncated")?;
    let outcome = source.reload_now().await;
    println!(
        "broken file: updated {}, {} error(s), last error: {}",
        outcome.updated,
        outcome.errors.len(),
        source
            .last_error()
            .map(|e| e.to_string())
            .unwrap_or_default()
    );
    if outcome.updated || source.bundles().is_empty() {
        return Err("a broken file must not replace the last good bundle".into());
    }

    // The rotated bundle: published, and the new CA's SVID verifies.
    std::fs::write(&path, new_ca.bundle_pem())?;
    let outcome = source.reload_now().await;
    println!(
        "new CA in the file: updated {}; SVID from the new CA verifies: {}",
        outcome.updated,
        verifies(&source)
    );
    if !verifies(&source) {
        return Err("the rotated bundle must be used".into());
    }
    Ok(())
}
