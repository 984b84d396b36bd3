//! Criterion benchmarks for svid-broker-identity, one function per group:
//! `jwt_benches` (group `jwt_svid`), and room below for `x509_benches` and `id_benches`.
//!
//! Run: `cargo bench -p svid-broker-identity --bench identity -- --warm-up-time 1 --measurement-time 3`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark setup should fail loudly"
)]

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, KeyPair as _, ParsedPublicKey, RsaKeyPair, RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group};
use svid_broker_identity::bundle::{
    BundleSet, EcCurve, JwtAuthority, JwtBundle, JwtPublicKey, SpiffeBundle, X509Bundle,
};
use svid_broker_identity::id::TrustDomain;
use svid_broker_identity::jwt::JwtSvidValidator;

// === JWT-SVID ===

/// One signed token plus everything each contender needs to verify it.
struct JwtCase {
    name: &'static str,
    token: String,
    floor_key: ParsedPublicKey,
    ours: BundleSet,
    other_kid: BundleSet,
    spiffe: spiffe::JwtBundleSet,
}

impl JwtCase {
    fn es256() -> Self {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = pair.public_key().as_ref();
        let key = JwtPublicKey::ec_point(EcCurve::P256, point).unwrap();
        let coord = |range: std::ops::Range<usize>| URL_SAFE_NO_PAD.encode(&point[range]);
        let jwk = format!(
            r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}","kid":"k1","use":"jwt-svid"}}"#,
            coord(1..33),
            coord(33..65)
        );
        let token = mint("ES256", |input| {
            pair.sign(&SystemRandom::new(), input)
                .unwrap()
                .as_ref()
                .to_vec()
        });
        let floor_key = ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).unwrap();
        Self::new("es256", token, floor_key, &key, &jwk)
    }

    fn rs256() -> Self {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let public = pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero();
        let e = public.exponent().big_endian_without_leading_zero();
        let key = JwtPublicKey::rsa(n, e).unwrap();
        let jwk = format!(
            r#"{{"kty":"RSA","n":"{}","e":"{}","kid":"k1","use":"jwt-svid"}}"#,
            URL_SAFE_NO_PAD.encode(n),
            URL_SAFE_NO_PAD.encode(e)
        );
        let token = mint("RS256", |input| {
            let mut sig = vec![0; pair.public_modulus_len()];
            pair.sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input,
                &mut sig,
            )
            .unwrap();
            sig
        });
        let floor_key = RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
            .unwrap();
        Self::new("rs256", token, floor_key, &key, &jwk)
    }

    fn new(
        name: &'static str,
        token: String,
        floor_key: ParsedPublicKey,
        key: &JwtPublicKey,
        jwk: &str,
    ) -> Self {
        let set = |kid: &str| {
            let td = TrustDomain::parse("example.org").unwrap();
            let authority = JwtAuthority {
                kid: kid.to_owned(),
                key: key.clone(),
                alg: None,
            };
            let jwt = JwtBundle::new(td.clone(), vec![authority]).unwrap();
            let mut set = BundleSet::new();
            set.insert(SpiffeBundle::new(X509Bundle::empty(td), jwt).unwrap())
                .unwrap();
            set
        };
        let ours = set("k1");
        let other_kid = set("k2");

        let mut bundle = spiffe::JwtBundle::new(spiffe::TrustDomain::new("example.org").unwrap());
        bundle.add_jwk_authority_json(jwk.as_bytes()).unwrap();
        let mut spiffe = spiffe::JwtBundleSet::new();
        spiffe.add_bundle(bundle);

        Self {
            name,
            token,
            floor_key,
            ours,
            other_kid,
            spiffe,
        }
    }
}

/// A token valid for an hour of wall-clock time (the spiffe crate reads the system clock).
fn mint(alg: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = format!(r#"{{"alg":"{alg}","kid":"k1","typ":"JWT"}}"#);
    let claims = format!(
        r#"{{"sub":"spiffe://example.org/ns/prod/sa/web","aud":["svc"],"exp":{},"iat":{now}}}"#,
        now + 3600
    );
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn jwt_benches(c: &mut Criterion) {
    let validator = JwtSvidValidator::new(["svc"]).unwrap();
    let mut group = c.benchmark_group("jwt_svid");
    for case in [JwtCase::es256(), JwtCase::rs256()] {
        let (input, sig) = case.token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        // Every contender must accept the token, or the numbers compare failure paths.
        case.floor_key.verify_sig(input.as_bytes(), &sig).unwrap();
        validator
            .validate(&case.token, &case.ours, SystemTime::now())
            .unwrap();
        spiffe::JwtSvid::parse_and_validate(&case.token, &case.spiffe, &["svc"]).unwrap();

        group.bench_function(format!("{}/floor", case.name), |b| {
            b.iter(|| {
                case.floor_key
                    .verify_sig(black_box(input.as_bytes()), black_box(&sig))
                    .is_ok()
            });
        });
        group.bench_function(format!("{}/ours", case.name), |b| {
            let now = SystemTime::now();
            b.iter(|| {
                validator
                    .validate(black_box(&case.token), &case.ours, now)
                    .is_ok()
            });
        });
        // Everything before the signature: the same token against a bundle that lacks its kid
        // is rejected right before verification, so this is the cost any caller can impose.
        group.bench_function(format!("{}/ours_unknown_kid", case.name), |b| {
            let now = SystemTime::now();
            b.iter(|| {
                validator
                    .validate(black_box(&case.token), &case.other_kid, now)
                    .is_err()
            });
        });
        group.bench_function(format!("{}/spiffe_crate", case.name), |b| {
            b.iter(|| {
                spiffe::JwtSvid::parse_and_validate(black_box(&case.token), &case.spiffe, &["svc"])
                    .is_ok()
            });
        });
    }
    group.finish();
}

// === X.509-SVID ===

// The unit tests' rcgen fixture generator (self-contained: rcgen, pki-types and std only).
#[path = "../src/x509/fixtures.rs"]
mod fixtures;

fn x509_bundle_set(fx: &fixtures::Fixture) -> BundleSet {
    let td = TrustDomain::parse(fx.bundle_td).unwrap();
    let x509 = X509Bundle::new(td.clone(), fx.roots.clone()).unwrap();
    let mut set = BundleSet::new();
    set.insert(SpiffeBundle::new(x509, JwtBundle::empty(td)).unwrap())
        .unwrap();
    set
}

/// `ours`: the full `x509::verify` (caps, leaf profile, intermediates, per-TD bundle, path
/// validation). `webpki_floor`: rustls-webpki path validation alone on the same chain and
/// anchors, i.e. the signature checks any verifier must pay. P-256 throughout.
fn x509_benches(c: &mut Criterion) {
    let now = fixtures::now();
    let webpki_now =
        rustls_pki_types::UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap());
    let cases = [
        // Root in the bundle; leaf presented.
        ("2_cert", fixtures::good_p256()),
        // Root in the bundle; leaf and intermediate presented.
        ("3_cert", fixtures::good_with_intermediate()),
    ];
    let mut group = c.benchmark_group("x509_svid");
    for (name, fx) in &cases {
        let set = x509_bundle_set(fx);
        let anchors = set
            .x509(&TrustDomain::parse(fx.bundle_td).unwrap())
            .unwrap()
            .trust_anchors()
            .to_vec();
        let floor = || {
            let ee = webpki::EndEntityCert::try_from(&fx.chain[0])?;
            ee.verify_for_usage(
                svid_broker_identity::x509::SUPPORTED_SIG_ALGS,
                &anchors,
                &fx.chain[1..],
                webpki_now,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map(|_| ())
        };
        // Both must accept, or the numbers compare failure paths.
        svid_broker_identity::x509::verify(&fx.chain, &set, now).unwrap();
        floor().unwrap();

        group.bench_function(format!("{name}/ours"), |b| {
            b.iter(|| svid_broker_identity::x509::verify(black_box(&fx.chain), &set, now).is_ok());
        });
        group.bench_function(format!("{name}/webpki_floor"), |b| {
            b.iter(|| black_box(floor()).is_ok());
        });
    }
    group.finish();
}

// === SPIFFE ID ===

fn id_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("spiffe_id");
    let typical = "spiffe://example.org/ns/production/sa/image-puller";
    let long = format!("spiffe://example.org/{}", ["segment"; 200].join("/"));
    group.bench_function("parse_typical", |b| {
        b.iter(|| svid_broker_identity::SpiffeId::parse(black_box(typical)))
    });
    group.bench_function("parse_1.6kb", |b| {
        b.iter(|| svid_broker_identity::SpiffeId::parse(black_box(&long)))
    });
    group.bench_function("spiffe_crate_typical", |b| {
        b.iter(|| spiffe::SpiffeId::new(black_box(typical)))
    });
    group.finish();
}

criterion_group!(benches, id_benches, jwt_benches, x509_benches);

// === Instruction counts ===
//
// Wall-clock ratios on a shared 2-core machine move by 10-20% between runs. Instruction counts
// under callgrind do not, so the JWT comparison is also measured that way:
//
//   SVID_BENCH_INSTRUCTIONS=es256/ours valgrind --tool=callgrind \
//     --toggle-collect='*measured_loop*' target/release/deps/identity-<hash>
//
// counts only what `measured_loop` runs (COUNT validations), not key generation or setup.

const INSTRUCTION_COUNT_ITERATIONS: usize = 200;

#[inline(never)]
fn measured_loop(iterations: usize, mut one: impl FnMut() -> bool) -> usize {
    (0..iterations).filter(|_| black_box(one())).count()
}

fn count_instructions(spec: &str) {
    let (alg, contender) = spec.split_once('/').expect("spec is ALG/CONTENDER");
    let case = match alg {
        "es256" => JwtCase::es256(),
        "rs256" => JwtCase::rs256(),
        other => panic!("unknown alg {other}"),
    };
    let validator = JwtSvidValidator::new(["svc"]).unwrap();
    let (input, sig) = case.token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let now = SystemTime::now();
    let ok = match contender {
        "floor" => measured_loop(INSTRUCTION_COUNT_ITERATIONS, || {
            case.floor_key.verify_sig(input.as_bytes(), &sig).is_ok()
        }),
        "ours" => measured_loop(INSTRUCTION_COUNT_ITERATIONS, || {
            validator.validate(&case.token, &case.ours, now).is_ok()
        }),
        "spiffe_crate" => measured_loop(INSTRUCTION_COUNT_ITERATIONS, || {
            spiffe::JwtSvid::parse_and_validate(&case.token, &case.spiffe, &["svc"]).is_ok()
        }),
        other => panic!("unknown contender {other}"),
    };
    assert_eq!(
        ok, INSTRUCTION_COUNT_ITERATIONS,
        "every iteration must accept the token"
    );
}

fn main() {
    if let Ok(spec) = std::env::var("SVID_BENCH_INSTRUCTIONS") {
        count_instructions(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
