//! Verify an X.509-SVID chain offline and authorize its SPIFFE ID, with nothing but this crate.
//!
//! The CA and the SVID are minted here with rcgen, standing in for a SPIRE server; in production
//! the chain is what a peer presented and the bundle comes from `svid-broker-sources`.
//!
//! ```text
//! cargo run -p svid-broker-identity --example verify_x509_svid
//! ```

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;
use svid_broker_identity::bundle::{BundleSet, JwtBundle, SpiffeBundle, X509Bundle};
use svid_broker_identity::{Authorizer, SpiffeId, TrustDomain, x509};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let td = TrustDomain::parse("example.org")?;
    let workload = SpiffeId::parse("spiffe://example.org/ns/prod/sa/web")?;
    let (root, chain) = mint_svid(&workload)?;

    // One bundle per trust domain: a chain is only ever checked against its own trust domain's.
    let mut bundles = BundleSet::new();
    bundles.insert(SpiffeBundle::new(
        X509Bundle::new(td.clone(), vec![root])?,
        JwtBundle::empty(td),
    )?)?;

    let now = SystemTime::now();
    let verified = x509::verify(&chain, &bundles, now)?;
    println!(
        "verified {} (serial {}, chain of {})",
        verified.spiffe_id(),
        verified.serial_hex(),
        verified.chain_len()
    );

    // Verification says who the peer is; an authorizer says whether that peer may connect.
    let web_in_any_namespace = Authorizer::pattern("spiffe://example.org/ns/*/sa/web")?;
    web_in_any_namespace.authorize(verified.spiffe_id())?;
    println!("authorized by spiffe://example.org/ns/*/sa/web");
    let batch_only = Authorizer::pattern("spiffe://example.org/ns/*/sa/batch")?;
    match batch_only.authorize(verified.spiffe_id()) {
        Ok(()) => return Err("the web SVID must not pass the batch authorizer".into()),
        Err(refused) => println!("refused by the batch authorizer: {refused}"),
    }

    // Every check takes the time as an argument: the same chain after it expired.
    match x509::verify(&chain, &bundles, now + Duration::from_secs(2 * 3600)) {
        Ok(_) => Err("an expired SVID must not verify".into()),
        Err(rule) => {
            println!("two hours later: {rule}");
            Ok(())
        }
    }
}

/// A P-256 root for example.org and a one-hour X.509-SVID for `id` under it, leaf first.
fn mint_svid(
    id: &SpiffeId,
) -> Result<(CertificateDer<'static>, Vec<CertificateDer<'static>>), Error> {
    let now = SystemTime::now();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.subject_alt_names = vec![SanType::URI("spiffe://example.org".try_into()?)];
    ca.not_before = (now - Duration::from_secs(60)).into();
    ca.not_after = (now + Duration::from_secs(24 * 3600)).into();
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let root = ca.self_signed(&ca_key)?.der().clone();
    let issuer = Issuer::new(ca, ca_key);

    // The X509-SVID leaf profile: not a CA, digitalSignature, exactly one URI SAN.
    let mut leaf = CertificateParams::default();
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    leaf.subject_alt_names = vec![SanType::URI(id.as_str().try_into()?)];
    leaf.not_before = (now - Duration::from_secs(60)).into();
    leaf.not_after = (now + Duration::from_secs(3600)).into();
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let leaf = leaf.signed_by(&leaf_key, &issuer)?.der().clone();
    Ok((root, vec![leaf]))
}
