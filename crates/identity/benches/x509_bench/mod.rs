//! X.509-SVID verification benchmarks (criterion group `x509_svid`).
//!
//! Included by the crate's bench target with `mod x509_bench;` and run through
//! [`x509_benches`]. Certificates come from the same rcgen fixture generator the unit tests use.

use std::hint::black_box;

use criterion::Criterion;
use svid_broker_identity::bundle::{BundleSet, JwtBundle, SpiffeBundle, X509Bundle};
use svid_broker_identity::id::TrustDomain;
use svid_broker_identity::x509;

#[path = "../../src/x509/fixtures.rs"]
mod fixtures;

fn bundle_set(fx: &fixtures::Fixture) -> Option<BundleSet> {
    let td = TrustDomain::parse(fx.bundle_td).ok()?;
    let x509 = X509Bundle::new(td.clone(), fx.roots.clone()).ok()?;
    let mut set = BundleSet::new();
    set.insert(SpiffeBundle::new(x509, JwtBundle::empty(td)).ok()?)
        .ok()?;
    Some(set)
}

/// Group `x509_svid`: `verify` of a 2-certificate chain (root in the bundle, leaf presented) and
/// of a 3-certificate chain (root in the bundle, leaf and intermediate presented), P-256
/// throughout.
pub(crate) fn x509_benches(c: &mut Criterion) {
    let now = fixtures::now();
    let cases = [
        ("verify_2_cert_chain", fixtures::good_p256()),
        ("verify_3_cert_chain", fixtures::good_with_intermediate()),
    ];
    let mut group = c.benchmark_group("x509_svid");
    for (name, fx) in &cases {
        let Some(set) = bundle_set(fx) else {
            continue;
        };
        // A benchmark of a failing path would measure the wrong thing.
        assert!(
            x509::verify(&fx.chain, &set, now).is_ok(),
            "{name}: fixture does not verify"
        );
        group.bench_function(*name, |b| {
            b.iter(|| x509::verify(black_box(&fx.chain), black_box(&set), now).is_ok());
        });
    }
    group.finish();
}
