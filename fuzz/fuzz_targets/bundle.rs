//! Fuzzes SPIFFE bundle documents and bundle maps.
//!
//! Invariants: nothing panics; a document that parses writes back (`to_document_json`) to one
//! that parses to the same authorities, sequence and refresh hint with nothing ignored; a bundle
//! map that parses stays within its cap and holds each trust domain once.
//!
//! Run with `cargo +nightly fuzz run bundle` (nightly only, not in CI).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use svid_broker_identity::bundle::{
    BundleSet, MAX_BUNDLE_MAP_TRUST_DOMAINS, SpiffeBundle,
};
use svid_broker_identity::id::TrustDomain;

fuzz_target!(|data: &[u8]| {
    let td = TrustDomain::parse("example.org").expect("td");

    if let Ok(bundle) = SpiffeBundle::parse_document(td.clone(), data) {
        let written = bundle.to_document_json();
        let again = SpiffeBundle::parse_document(td, written.as_bytes())
            .expect("a written document parses");
        assert_eq!(again.x509().authorities(), bundle.x509().authorities());
        assert_eq!(again.jwt().authorities(), bundle.jwt().authorities());
        assert_eq!(again.sequence(), bundle.sequence());
        // Written in whole seconds, which is what was read.
        assert_eq!(
            again.refresh_hint(),
            bundle.refresh_hint().map(|h| Duration::from_secs(h.as_secs()))
        );
        assert!(again.ignored().is_empty());
    }

    if let Ok(set) = BundleSet::parse_bundle_map(data) {
        assert!(set.len() <= MAX_BUNDLE_MAP_TRUST_DOMAINS);
        let mut seen: Vec<&TrustDomain> = set.trust_domains().collect();
        seen.dedup();
        assert_eq!(seen.len(), set.len());
        for (td, bundle) in &set {
            assert_eq!(bundle.trust_domain(), td);
        }
    }
});
