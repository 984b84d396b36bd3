//! Token minting cost against its floor: one raw aws-lc-rs ES256 signature over the same
//! signing input. The ratio `mint / floor` is the overhead of claims, checks and encoding.
//!
//! Run: `cargo bench -p svid-broker-token --bench mint -- --warm-up-time 1 --measurement-time 3`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark setup should fail loudly"
)]

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use criterion::{Criterion, criterion_group, criterion_main};
use svid_broker_identity::id::SpiffeId;
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_token::{
    Access, KeyRing, KeyRingConfig, MintRequest, Profile, SigningAlgorithm, SigningCa, TokenMinter,
};

fn mint(c: &mut Criterion) {
    let now = SystemTime::now();
    let ca = SigningCa::generate(
        SigningAlgorithm::Es256,
        "bench ca",
        Duration::from_secs(86_400),
        now,
    )
    .unwrap();
    let ring = KeyRing::new(ca, KeyRingConfig::default(), now).unwrap();
    let minter = TokenMinter::new(ring);
    let sub = SpiffeId::parse("spiffe://example.org/ns/ci/sa/builder").unwrap();
    // A typical push grant: the target repository plus a cross-repository mount source.
    let access = [
        Access::new("repository", "team/app", ["pull", "push"]),
        Access::new("repository", "team/base", ["pull"]),
    ];
    let req = MintRequest::new(
        "svid-broker",
        "registry.local",
        &sub,
        &access,
        Profile::Distribution2,
        now,
    );

    let sample = minter.mint(&req).unwrap();
    let token = sample.token.expose_secret();
    let (signed, _) = token.rsplit_once('.').unwrap();
    let signing_input = signed.as_bytes().to_vec();
    let floor_key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let rng = SystemRandom::new();

    let mut group = c.benchmark_group("registry_token");
    group.bench_function("floor_es256_sign", |b| {
        b.iter(|| floor_key.sign(&rng, black_box(&signing_input)).unwrap());
    });
    group.bench_function("mint_es256", |b| {
        b.iter(|| minter.mint(black_box(&req)).unwrap());
    });
    group.finish();
}

criterion_group!(benches, mint);
criterion_main!(benches);
