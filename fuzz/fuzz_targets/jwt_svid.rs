//! Fuzzes JWT-SVID validation.
//!
//! The first input byte picks a mode:
//! - even: the rest is the token as given. It can never validate (the only trusted key's private
//!   half is discarded at start-up), so every input must end in an error, never a panic;
//! - odd: the rest is `header JSON \0 claims JSON`, signed with the trusted key, so the fuzzer
//!   reaches the checks after the signature. Whatever validates must satisfy the validator's
//!   promises: subject in the bundle's trust domain, an expected audience, not expired, ES256,
//!   the trusted kid.
//!
//! Run with `cargo +nightly fuzz run jwt_svid` (nightly only, not in CI).
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use svid_broker_identity::bundle::{
    BundleSet, EcCurve, JwtAuthority, JwtBundle, JwtPublicKey, SpiffeBundle, X509Bundle,
};
use svid_broker_identity::id::TrustDomain;
use svid_broker_identity::jwt::{JwsAlgorithm, JwtSvidValidator, KidMode};

const NOW_SECS: u64 = 1_800_000_000;
const LEEWAY_SECS: u64 = 30;

struct Fixture {
    signer: EcdsaKeyPair,
    bundles: BundleSet,
    strict: JwtSvidValidator,
    lenient: JwtSvidValidator,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let signer =
            EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen");
        let key = JwtPublicKey::ec_point(EcCurve::P256, signer.public_key().as_ref()).expect("key");
        let td = TrustDomain::parse("example.org").expect("td");
        let authority = JwtAuthority {
            kid: "k1".to_owned(),
            key,
            alg: None,
        };
        let jwt = JwtBundle::new(td.clone(), vec![authority]).expect("bundle");
        let mut bundles = BundleSet::new();
        bundles
            .insert(SpiffeBundle::new(X509Bundle::empty(td), jwt).expect("bundle"))
            .expect("insert");
        let strict = JwtSvidValidator::new(["svc"]).expect("validator");
        let lenient = strict.clone().with_kid_mode(KidMode::TryTrustDomainKeys);
        Fixture {
            signer,
            bundles,
            strict,
            lenient,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    let now = UNIX_EPOCH + Duration::from_secs(NOW_SECS);

    if mode % 2 == 0 {
        let token = String::from_utf8_lossy(rest);
        assert!(fixture.strict.validate(&token, &fixture.bundles, now).is_err());
        assert!(fixture.lenient.validate(&token, &fixture.bundles, now).is_err());
        return;
    }

    let (header, claims) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig = fixture
        .signer
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("sign");
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));

    for validator in [&fixture.strict, &fixture.lenient] {
        if let Ok(verified) = validator.validate(&token, &fixture.bundles, now) {
            assert_eq!(verified.spiffe_id.trust_domain().as_str(), "example.org");
            assert!(verified.audiences.iter().any(|aud| aud == "svc"));
            assert!(verified.expires_at > now - Duration::from_secs(LEEWAY_SECS));
            assert_eq!(verified.alg, JwsAlgorithm::Es256);
            assert_eq!(verified.kid, "k1");
            assert_eq!(verified.claims_json(), claims);
        }
    }
});
