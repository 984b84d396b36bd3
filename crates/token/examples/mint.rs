//! Mint a registry bearer token under a signing CA and publish what a registry needs to trust it:
//! the CA bundle (distribution's `rootcertbundle`) and the JWKS. The token is a secret: this prints
//! what it grants and how long it lives, never its text.
//!
//! ```text
//! cargo run -p svid-broker-token --example mint
//! ```
//!
//! `examples/mint_verify_token.rs` in the repository then verifies such a token the way
//! distribution 2.8 does.

use std::time::{Duration, SystemTime};

use svid_broker_identity::SpiffeId;
use svid_broker_token::{
    Access, KeyRing, KeyRingConfig, MintRequest, Profile, SigningAlgorithm, SigningCa, TokenMinter,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = SystemTime::now();
    // In production every replica loads the same CA from PEM (`SigningCa::from_pem`).
    let ca = SigningCa::generate(
        SigningAlgorithm::Es256,
        "example signing ca",
        Duration::from_secs(24 * 3600),
        now,
    )?;
    let minter = TokenMinter::new(KeyRing::new(ca, KeyRingConfig::default(), now)?);

    let subject = SpiffeId::parse("spiffe://example.org/ns/ci/sa/builder")?;
    // Actions are sorted and deduplicated before signing: this grants `pull,push`.
    let access = [Access::new(
        "repository",
        "team/app",
        ["push", "pull", "push"],
    )];
    let request = MintRequest::new(
        "svid-broker",
        "registry.example.org",
        &subject,
        &access,
        Profile::Distribution2,
        now,
    );
    let minted = minter.mint(&request)?;
    println!(
        "token for {subject}: kid {}, jti {}, expires in {} s, grants {:?}",
        minted.key_id,
        minted.jti,
        minted.expires_in().as_secs(),
        minted.access
    );

    let ring = minter.key_ring();
    let bundle = ring.ca_bundle_pem();
    println!(
        "rootcertbundle: {} certificate(s); JWKS: {} bytes",
        bundle.matches("BEGIN CERTIFICATE").count(),
        ring.jwks_json().len()
    );

    // A lifetime past the key ring's ceiling is refused, not shortened.
    let too_long = request.with_ttl(Duration::from_secs(48 * 3600));
    match minter.mint(&too_long) {
        Ok(_) => Err("a 48-hour token must be refused".into()),
        Err(e) => {
            println!("48-hour token refused: {e}");
            Ok(())
        }
    }
}
