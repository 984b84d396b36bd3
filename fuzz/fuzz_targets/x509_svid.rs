//! Fuzzes X.509-SVID parsing and verification with arbitrary DER.
//!
//! Invariants: nothing panics; `check_leaf` and `leaf_spiffe_id` agree on the ID whenever the
//! full profile accepts; with no bundles nothing verifies; a successful `verify` reports the ID
//! `check_leaf` reads. Run with `cargo +nightly fuzz run x509_svid` (nightly only, not in CI).
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;
use svid_broker_identity::bundle::BundleSet;
use svid_broker_identity::x509::{self, X509VerifyOptions};

fuzz_target!(|data: &[u8]| {
    // First byte: how many certificates (1..=4) the rest is cut into, evenly.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 4) + 1;
    let step = rest.len().div_ceil(n).max(1);
    let chain: Vec<CertificateDer<'_>> = rest.chunks(step).map(CertificateDer::from).collect();
    let Some(leaf) = chain.first() else {
        return;
    };

    let options = X509VerifyOptions::default();
    if let Ok(id) = x509::check_leaf(leaf, &options) {
        assert_eq!(x509::leaf_spiffe_id(leaf).as_ref(), Ok(&id));
    }

    let now = UNIX_EPOCH + Duration::from_secs(1_780_272_000);
    let empty = BundleSet::new();
    assert!(x509::verify(&chain, &empty, now).is_err());
});
