use svid_broker_dev::DevTrustDomain;
use svid_broker_identity::TrustDomain;

use super::*;
use crate::testutil::id;

fn unix_now() -> UnixTime {
    UnixTime::since_unix_epoch(SystemTime::now().duration_since(UNIX_EPOCH).unwrap())
}

#[test]
fn svids_of_any_trusted_domain_pass_and_others_fail() {
    let td = DevTrustDomain::new(
        TrustDomain::parse("example.org").unwrap(),
        [id("spiffe://example.org/w")],
    )
    .unwrap();
    let bundles: Arc<dyn BundleProvider> = Arc::new(Arc::new(td.bundle_set().unwrap()));
    let v = AnyTrustDomainVerifier::new(bundles);
    assert!(v.offer_client_auth());
    assert!(!v.client_auth_mandatory());
    assert!(!v.supported_verify_schemes().is_empty());
    let svid = td.x509_svid(&id("spiffe://example.org/w")).unwrap();
    let chain = svid.chain();
    assert!(
        v.verify_client_cert(&chain[0], &chain[1..], unix_now())
            .is_ok()
    );

    let other = DevTrustDomain::new(
        TrustDomain::parse("other.org").unwrap(),
        [id("spiffe://other.org/w")],
    )
    .unwrap();
    let foreign = other.x509_svid(&id("spiffe://other.org/w")).unwrap();
    let chain = foreign.chain();
    assert!(
        v.verify_client_cert(&chain[0], &chain[1..], unix_now())
            .is_err()
    );
}
