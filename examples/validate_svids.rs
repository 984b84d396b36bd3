//! Validate a JWT-SVID and verify an X.509-SVID chain offline with `svid-broker-identity`.
//!
//! The SVIDs come from an in-process dev trust domain; in production they come from a workload
//! and the bundles from a `svid-broker-sources` source.

use std::time::{Duration, SystemTime};

use svid_broker_dev::DevTrustDomain;
use svid_broker_identity::jwt::JwtSvidValidator;
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_identity::{SpiffeId, TrustDomain, x509};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workload = SpiffeId::parse("spiffe://example.org/ns/ci/sa/builder")?;
    let dev = DevTrustDomain::new(TrustDomain::parse("example.org")?, [workload.clone()])?;
    // One bundle per trust domain; validation only ever uses the subject's own.
    let bundles = dev.bundle_set()?;
    let now = SystemTime::now();

    // JWT-SVID: the validator's audience set may never be empty (that would mean "anyone").
    let validator = JwtSvidValidator::new(["registry.example.org"])?;
    let token = dev.issue_jwt_svid(&workload, &["registry.example.org"])?;
    let claims = validator.validate(token.token().expose_secret(), &bundles, now)?;
    println!("JWT-SVID valid: {} (kid {})", claims.spiffe_id, claims.kid);

    let wrong_audience = dev.issue_jwt_svid(&workload, &["someone-else"])?;
    match validator.validate(wrong_audience.token().expose_secret(), &bundles, now) {
        Ok(_) => return Err("a token for another audience must not validate".into()),
        Err(rule) => println!("JWT-SVID for another audience rejected: {rule}"),
    }

    // X.509-SVID: the full RFC 5280 path plus the SPIFFE leaf profile, no TLS needed.
    let svid = dev.issue_x509_svid(&workload)?;
    let verified = x509::verify(svid.chain(), &bundles, now)?;
    println!("X.509-SVID valid: {}", verified.spiffe_id());

    let in_two_days = now + Duration::from_secs(2 * 24 * 3600);
    match x509::verify(svid.chain(), &bundles, in_two_days) {
        Ok(_) => return Err("an expired SVID must not verify".into()),
        Err(rule) => println!("the same X.509-SVID two days later: {rule}"),
    }
    Ok(())
}
