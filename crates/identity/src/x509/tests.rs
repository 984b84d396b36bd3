use std::time::{Duration, UNIX_EPOCH};

use super::fixtures::{self, Fixture};
use super::*;
use crate::bundle::{BundleSet, JwtBundle, SpiffeBundle, X509Bundle};
use crate::id::IdError;

fn td(name: &str) -> TrustDomain {
    TrustDomain::parse(name).unwrap()
}

fn bundle(name: &str, roots: Vec<CertificateDer<'static>>) -> SpiffeBundle {
    let x509 = X509Bundle::new(td(name), roots).unwrap();
    SpiffeBundle::new(x509, JwtBundle::empty(td(name))).unwrap()
}

fn bundles(fx: &Fixture) -> BundleSet {
    let mut set = BundleSet::new();
    set.insert(bundle(fx.bundle_td, fx.roots.clone())).unwrap();
    set
}

fn run(fx: &Fixture) -> Result<VerifiedX509Svid, X509SvidError> {
    verify(&fx.chain, &bundles(fx), fixtures::now())
}

fn run_with(fx: &Fixture, options: &X509VerifyOptions) -> Result<VerifiedX509Svid, X509SvidError> {
    verify_with(&fx.chain, &bundles(fx), fixtures::now(), options)
}

fn err(fx: &Fixture) -> X509SvidError {
    run(fx).unwrap_err()
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

// === good chains ===

#[test]
fn good_p256_leaf_verifies_and_reports_facts() {
    let v = run(&fixtures::good_p256()).unwrap();
    assert_eq!(v.spiffe_id().as_str(), fixtures::LEAF_ID);
    assert_eq!(v.chain_len(), 1);
    assert_eq!(v.serial_hex(), "0102ab");
    assert_eq!(v.not_before(), at(fixtures::NOT_BEFORE_SECS));
    assert_eq!(v.not_after(), at(fixtures::NOT_AFTER_SECS));
    assert_eq!(v.key_algorithm(), LeafKeyAlgorithm::EcdsaP256);
}

#[test]
fn good_p384_leaf_verifies() {
    let v = run(&fixtures::good_p384()).unwrap();
    assert_eq!(v.key_algorithm(), LeafKeyAlgorithm::EcdsaP384);
}

#[test]
fn good_ed25519_leaf_verifies() {
    let v = run(&fixtures::good_ed25519()).unwrap();
    assert_eq!(v.key_algorithm(), LeafKeyAlgorithm::Ed25519);
}

#[test]
fn good_rsa2048_leaf_verifies() {
    let v = run(&fixtures::good_rsa2048()).unwrap();
    assert_eq!(v.key_algorithm(), LeafKeyAlgorithm::Rsa { bits: 2048 });
}

#[test]
fn rsa_and_p384_roots_sign_acceptably() {
    run(&fixtures::good_rsa_root()).unwrap();
    run(&fixtures::good_p384_root()).unwrap();
}

#[test]
fn good_chain_with_intermediate_verifies() {
    let v = run(&fixtures::good_with_intermediate()).unwrap();
    assert_eq!(v.chain_len(), 2);
    assert_eq!(v.spiffe_id().as_str(), fixtures::LEAF_ID);
}

#[test]
fn chain_validity_window_is_the_intersection_of_every_presented_certificate() {
    // Leaf and intermediate both run 2026-01-01..2027-01-01 in the fixtures; shorten the
    // intermediate on both ends and the window must follow it, not the leaf.
    let mut p = fixtures::ca_params(fixtures::TD, "intermediate");
    p.not_before = rcgen::date_time_ymd(2026, 2, 1);
    p.not_after = rcgen::date_time_ymd(2026, 12, 1);
    let v = run(&fixtures::via_intermediate(p)).unwrap();
    assert_eq!(v.chain_not_before(), at(1_769_904_000)); // 2026-02-01
    assert_eq!(v.chain_not_after(), at(1_796_083_200)); // 2026-12-01
    assert_eq!(v.not_after(), at(1_798_761_600)); // the leaf's own: 2027-01-01
    // With only a leaf, the window is the leaf's.
    let v = run(&fixtures::good_p256()).unwrap();
    assert_eq!(
        (v.chain_not_before(), v.chain_not_after()),
        (v.not_before(), v.not_after())
    );
}

// === caps ===

#[test]
fn empty_chain_is_refused() {
    let set = BundleSet::new();
    assert_eq!(
        verify(&[], &set, fixtures::now()).unwrap_err(),
        X509SvidError::EmptyChain
    );
}

#[test]
fn chain_too_long_is_refused_before_any_parsing() {
    assert_eq!(
        err(&fixtures::chain_too_long()),
        X509SvidError::ChainTooLong { len: 9, max: 8 }
    );
}

#[test]
fn chain_len_cap_is_an_option() {
    let fx = fixtures::good_with_intermediate();
    run_with(&fx, &X509VerifyOptions::new().with_max_chain_len(2)).unwrap();
    assert_eq!(
        run_with(&fx, &X509VerifyOptions::new().with_max_chain_len(1)).unwrap_err(),
        X509SvidError::ChainTooLong { len: 2, max: 1 }
    );
}

#[test]
fn six_intermediates_verify_and_seven_exceed_the_path_depth() {
    // 7 certificates: within our cap and within webpki's depth limit.
    run(&fixtures::chain_with_intermediates(6)).unwrap();
    // 8 certificates: within our cap of 8, but the path itself is too deep for webpki.
    assert_eq!(
        err(&fixtures::chain_with_intermediates(7)),
        X509SvidError::PathTooDeep
    );
}

#[test]
fn der_size_cap_applies_to_each_certificate() {
    let fx = fixtures::good_with_intermediate();
    let leaf_len = fx.chain[0].len();
    let inter_len = fx.chain[1].len();
    let max = leaf_len.max(inter_len);
    run_with(&fx, &X509VerifyOptions::new().with_max_cert_der_len(max)).unwrap();

    let small = leaf_len.min(inter_len) - 1;
    let e = run_with(&fx, &X509VerifyOptions::new().with_max_cert_der_len(small)).unwrap_err();
    assert_eq!(
        e,
        X509SvidError::CertTooLarge {
            index: 0,
            len: leaf_len,
            max: small
        }
    );

    // Leaf fits, intermediate does not: the error names index 1.
    let mut fx = fx;
    let mut big = fx.chain[1].to_vec();
    big.resize(DEFAULT_MAX_CERT_DER_LEN + 1, 0);
    fx.chain[1] = CertificateDer::from(big);
    assert_eq!(
        err(&fx),
        X509SvidError::CertTooLarge {
            index: 1,
            len: DEFAULT_MAX_CERT_DER_LEN + 1,
            max: DEFAULT_MAX_CERT_DER_LEN
        }
    );
}

#[test]
fn malformed_der_is_refused_with_its_index() {
    let mut fx = fixtures::good_p256();
    fx.chain[0] = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
    assert_eq!(err(&fx), X509SvidError::MalformedCertificate { index: 0 });

    let mut fx = fixtures::good_with_intermediate();
    let mut trailing = fx.chain[1].to_vec();
    trailing.push(0);
    fx.chain[1] = CertificateDer::from(trailing);
    assert_eq!(err(&fx), X509SvidError::MalformedCertificate { index: 1 });
}

// === leaf profile: URI SAN and SPIFFE ID ===

#[test]
fn leaf_two_uri_sans_is_refused() {
    assert_eq!(
        err(&fixtures::leaf_two_uri_sans()),
        X509SvidError::LeafMultipleUriSans { count: 2 }
    );
}

#[test]
fn leaf_no_uri_san_is_refused() {
    assert_eq!(
        err(&fixtures::leaf_no_uri_san()),
        X509SvidError::LeafNoUriSan
    );
}

#[test]
fn leaf_root_path_is_refused() {
    let e = err(&fixtures::leaf_root_path());
    assert!(
        matches!(&e, X509SvidError::LeafRootPath { id } if id.as_str() == "spiffe://example.org"),
        "{e:?}"
    );
}

#[test]
fn leaf_not_spiffe_scheme_is_refused() {
    assert_eq!(
        err(&fixtures::leaf_not_spiffe_scheme()),
        X509SvidError::LeafInvalidSpiffeId {
            source: IdError::WrongScheme
        }
    );
}

#[test]
fn leaf_uppercase_td_is_refused_by_strict_parsing() {
    let e = err(&fixtures::leaf_uppercase_td());
    assert!(
        matches!(
            e,
            X509SvidError::LeafInvalidSpiffeId {
                source: IdError::UppercaseTrustDomain { .. }
            }
        ),
        "{e:?}"
    );
}

// === leaf profile: basicConstraints and keyUsage ===

#[test]
fn leaf_ca_true_is_refused() {
    assert_eq!(err(&fixtures::leaf_ca_true()), X509SvidError::LeafIsCa);
}

#[test]
fn leaf_without_basic_constraints_is_refused() {
    assert_eq!(
        err(&fixtures::leaf_no_basic_constraints()),
        X509SvidError::LeafMissingBasicConstraints
    );
}

#[test]
fn leaf_key_cert_sign_is_refused() {
    assert_eq!(
        err(&fixtures::leaf_key_cert_sign()),
        X509SvidError::LeafKeyCertSign
    );
}

#[test]
fn leaf_crl_sign_is_refused() {
    assert_eq!(err(&fixtures::leaf_crl_sign()), X509SvidError::LeafCrlSign);
}

#[test]
fn leaf_no_digital_signature_is_refused() {
    assert_eq!(
        err(&fixtures::leaf_no_digital_signature()),
        X509SvidError::LeafNoDigitalSignature
    );
}

#[test]
fn leaf_no_key_usage_is_refused() {
    assert_eq!(
        err(&fixtures::leaf_no_key_usage()),
        X509SvidError::LeafMissingKeyUsage
    );
}

#[test]
fn duplicate_leaf_extension_is_refused() {
    assert_eq!(
        err(&fixtures::leaf_duplicate_key_usage()),
        X509SvidError::MalformedExtension {
            index: 0,
            extension: CertExtension::KeyUsage
        }
    );
}

// === leaf profile: EKU ===

#[test]
fn leaf_without_eku_is_accepted() {
    run(&fixtures::leaf_no_eku()).unwrap();
}

#[test]
fn eku_policy_decides_a_server_only_leaf() {
    let fx = fixtures::leaf_eku_server_only();
    assert_eq!(
        err(&fx),
        X509SvidError::LeafExtendedKeyUsage {
            policy: EkuPolicy::Spiffe,
            server_auth: true,
            client_auth: false
        }
    );
    run_with(
        &fx,
        &X509VerifyOptions::new().with_eku(EkuPolicy::ServerAuth),
    )
    .unwrap();
    run_with(&fx, &X509VerifyOptions::new().with_eku(EkuPolicy::Ignore)).unwrap();
    assert!(matches!(
        run_with(
            &fx,
            &X509VerifyOptions::new().with_eku(EkuPolicy::ClientAuth)
        ),
        Err(X509SvidError::LeafExtendedKeyUsage {
            policy: EkuPolicy::ClientAuth,
            ..
        })
    ));
    // A leaf with both purposes satisfies every policy.
    let good = fixtures::good_p256();
    for policy in [
        EkuPolicy::ServerAuth,
        EkuPolicy::ClientAuth,
        EkuPolicy::Spiffe,
    ] {
        run_with(&good, &X509VerifyOptions::new().with_eku(policy)).unwrap();
    }
}

// === leaf profile: key type ===

#[test]
fn rsa_1024_leaf_is_refused() {
    assert_eq!(
        err(&fixtures::rsa_1024_leaf()),
        X509SvidError::LeafRsaKeySize {
            bits: 1024,
            min: MIN_RSA_KEY_BITS,
            max: MAX_RSA_KEY_BITS
        }
    );
}

#[test]
fn rsa_leaf_above_8192_bits_is_refused() {
    assert_eq!(
        err(&fixtures::leaf_rsa_too_large()),
        X509SvidError::LeafRsaKeySize {
            bits: 8200,
            min: MIN_RSA_KEY_BITS,
            max: MAX_RSA_KEY_BITS
        }
    );
}

#[test]
fn leaf_key_of_another_algorithm_is_refused() {
    assert_eq!(
        err(&fixtures::leaf_unsupported_key_algorithm()),
        X509SvidError::LeafKeyAlgorithmUnsupported {
            algorithm_oid: "2.16.840.1.101.3.4.3.17".to_owned()
        }
    );
}

#[test]
fn p521_leaf_key_is_refused() {
    assert_eq!(
        err(&fixtures::leaf_p521_key()),
        X509SvidError::LeafEcCurveUnsupported {
            curve_oid: "1.3.132.0.35".to_owned()
        }
    );
}

#[test]
fn unsigned_bits_ignores_leading_zeros() {
    assert_eq!(unsigned_bits(&[]), 0);
    assert_eq!(unsigned_bits(&[0, 0]), 0);
    assert_eq!(unsigned_bits(&[0, 0x80, 0]), 16);
    assert_eq!(unsigned_bits(&[0x01, 0xff]), 9);
}

// === intermediates ===

#[test]
fn intermediate_not_ca_is_refused() {
    assert_eq!(
        err(&fixtures::intermediate_not_ca()),
        X509SvidError::IntermediateNotCa { index: 1 }
    );
}

#[test]
fn intermediate_no_key_cert_sign_is_refused() {
    assert_eq!(
        err(&fixtures::intermediate_no_key_cert_sign()),
        X509SvidError::IntermediateNoKeyCertSign { index: 1 }
    );
}

#[test]
fn intermediate_no_key_usage_is_refused() {
    assert_eq!(
        err(&fixtures::intermediate_no_key_usage()),
        X509SvidError::IntermediateMissingKeyUsage { index: 1 }
    );
}

// === time ===

#[test]
fn expired_leaf_is_refused_naming_the_leaf() {
    let not_after = rcgen_date(2026, 3, 1);
    assert_eq!(
        err(&fixtures::expired()),
        X509SvidError::CertExpired {
            index: 0,
            not_after,
            now: fixtures::now()
        }
    );
}

#[test]
fn not_yet_valid_leaf_is_refused_naming_the_leaf() {
    assert_eq!(
        err(&fixtures::not_yet_valid()),
        X509SvidError::CertNotYetValid {
            index: 0,
            not_before: rcgen_date(2026, 9, 1),
            now: fixtures::now()
        }
    );
}

#[test]
fn expired_intermediate_is_refused_naming_it() {
    let e = err(&fixtures::intermediate_expired());
    assert!(
        matches!(e, X509SvidError::CertExpired { index: 1, .. }),
        "{e:?}"
    );
}

#[test]
fn validity_bounds_are_inclusive_at_whole_seconds() {
    let fx = fixtures::good_p256();
    let set = bundles(&fx);
    verify(&fx.chain, &set, at(fixtures::NOT_BEFORE_SECS)).unwrap();
    verify(&fx.chain, &set, at(fixtures::NOT_AFTER_SECS)).unwrap();
    // Sub-second past notAfter still counts as the same second (as in webpki).
    verify(
        &fx.chain,
        &set,
        at(fixtures::NOT_AFTER_SECS) + Duration::from_millis(999),
    )
    .unwrap();
    assert!(matches!(
        verify(&fx.chain, &set, at(fixtures::NOT_AFTER_SECS + 1)),
        Err(X509SvidError::CertExpired { index: 0, .. })
    ));
    assert!(matches!(
        verify(&fx.chain, &set, at(fixtures::NOT_BEFORE_SECS - 1)),
        Err(X509SvidError::CertNotYetValid { index: 0, .. })
    ));
}

#[test]
fn time_before_epoch_is_refused() {
    let fx = fixtures::good_p256();
    let before = UNIX_EPOCH - Duration::from_secs(1);
    assert_eq!(
        verify(&fx.chain, &bundles(&fx), before).unwrap_err(),
        X509SvidError::TimeBeforeUnixEpoch
    );
}

fn rcgen_date(year: i32, month: u8, day: u8) -> SystemTime {
    let secs = rcgen::date_time_ymd(year, month, day).unix_timestamp();
    at(u64::try_from(secs).unwrap())
}

// === bundle selection and trust ===

#[test]
fn wrong_trust_domain_bundle_is_not_used() {
    assert_eq!(
        err(&fixtures::wrong_trust_domain_bundle()),
        X509SvidError::NoBundle {
            trust_domain: td(fixtures::TD)
        }
    );
}

#[test]
fn bundles_are_never_pooled_across_trust_domains() {
    // The root that signed the leaf is trusted, but only for another trust domain; the leaf's own
    // trust domain has a different root.
    let fx = fixtures::good_p256();
    let unrelated = fixtures::Ca::root_named(fixtures::TD, "unrelated root");
    let mut set = BundleSet::new();
    set.insert(bundle(fixtures::OTHER_TD, fx.roots.clone()))
        .unwrap();
    set.insert(bundle(fixtures::TD, vec![unrelated.cert().clone()]))
        .unwrap();
    assert_eq!(
        verify(&fx.chain, &set, fixtures::now()).unwrap_err(),
        X509SvidError::UnknownIssuer
    );
}

#[test]
fn empty_bundle_trusts_nothing() {
    let fx = fixtures::good_p256();
    let mut set = BundleSet::new();
    set.insert(SpiffeBundle::empty(td(fixtures::TD))).unwrap();
    assert_eq!(
        verify(&fx.chain, &set, fixtures::now()).unwrap_err(),
        X509SvidError::UnknownIssuer
    );
}

#[test]
fn signed_by_other_ca_is_unknown_issuer() {
    assert_eq!(
        err(&fixtures::signed_by_other_ca()),
        X509SvidError::UnknownIssuer
    );
}

#[test]
fn impostor_with_the_trusted_name_is_bad_signature() {
    assert_eq!(
        err(&fixtures::signed_by_same_name_other_ca()),
        X509SvidError::BadSignature
    );
}

#[test]
fn corrupted_leaf_signature_is_bad_signature() {
    assert_eq!(
        err(&fixtures::leaf_bad_signature()),
        X509SvidError::BadSignature
    );
}

#[test]
fn p521_signature_is_an_unsupported_algorithm() {
    assert_eq!(
        err(&fixtures::signed_with_p521_intermediate()),
        X509SvidError::UnsupportedSignatureAlgorithm
    );
}

// === name constraints ===

#[test]
fn uri_name_constraints_on_an_intermediate_are_refused_specifically() {
    assert_eq!(
        err(&fixtures::uri_name_constraints()),
        X509SvidError::UriNameConstraintsUnsupported {
            location: NameConstraintsLocation::Intermediate { index: 1 }
        }
    );
}

#[test]
fn uri_name_constraints_on_the_trust_anchor_are_refused_specifically() {
    assert_eq!(
        err(&fixtures::uri_name_constraints_on_root()),
        X509SvidError::UriNameConstraintsUnsupported {
            location: NameConstraintsLocation::TrustAnchor
        }
    );
}

#[test]
fn dns_name_constraints_are_enforced_not_refused() {
    run(&fixtures::dns_name_constraints()).unwrap();
    assert_eq!(
        err(&fixtures::dns_name_constraints_violated()),
        X509SvidError::NameConstraintViolation
    );
}

#[test]
fn der_helpers_round_trip() {
    for len in [0_usize, 1, 0x7f, 0x80, 0xff, 0x100, 0x1_0000] {
        let contents = vec![0xab; len];
        let seq = der_sequence(&contents);
        assert_eq!(der_contents(&seq), Some(&contents[..]), "len {len}");
    }
    assert_eq!(der_contents(&[0x30]), None);
    assert_eq!(der_contents(&[0x30, 0x05, 0x00]), None);
    assert_eq!(der_contents(&[0x30, 0x80]), None);
}

// === single-certificate helpers ===

#[test]
fn check_leaf_runs_the_same_profile() {
    let good = fixtures::good_p256();
    assert_eq!(
        check_leaf(&good.chain[0], &X509VerifyOptions::default())
            .unwrap()
            .as_str(),
        fixtures::LEAF_ID
    );
    let bad = fixtures::leaf_ca_true();
    assert_eq!(
        check_leaf(&bad.chain[0], &X509VerifyOptions::default()).unwrap_err(),
        X509SvidError::LeafIsCa
    );
}

#[test]
fn leaf_spiffe_id_reads_only_the_uri_san() {
    // A CA leaf still has a readable ID: this helper is for after verification.
    let fx = fixtures::leaf_ca_true();
    assert_eq!(
        leaf_spiffe_id(&fx.chain[0]).unwrap().as_str(),
        fixtures::LEAF_ID
    );
    let fx = fixtures::leaf_two_uri_sans();
    assert_eq!(
        leaf_spiffe_id(&fx.chain[0]).unwrap_err(),
        X509SvidError::LeafMultipleUriSans { count: 2 }
    );
}

#[test]
fn error_messages_are_lowercase_without_trailing_period() {
    let samples = [
        X509SvidError::EmptyChain,
        X509SvidError::ChainTooLong { len: 9, max: 8 },
        X509SvidError::LeafNoUriSan,
        X509SvidError::LeafIsCa,
        X509SvidError::CertExpired {
            index: 0,
            not_after: UNIX_EPOCH,
            now: UNIX_EPOCH,
        },
        X509SvidError::NoBundle {
            trust_domain: td("example.org"),
        },
        X509SvidError::UriNameConstraintsUnsupported {
            location: NameConstraintsLocation::TrustAnchor,
        },
        X509SvidError::UnknownIssuer,
        X509SvidError::PathValidation {
            source: webpki::Error::BadDer,
        },
    ];
    for e in samples {
        let msg = e.to_string();
        let first = msg.chars().next().unwrap();
        assert!(!first.is_ascii_uppercase(), "{msg}");
        assert!(!msg.ends_with('.'), "{msg}");
    }
}

// === review additions: RSA sizes of issuers and leaves, intermediate not yet valid ===

#[test]
fn rsa_2048_issuers_from_openssl_verify() {
    // Controls for the 2047-bit tests below: same construction, one bit more.
    assert_eq!(
        run(&fixtures::openssl_rsa_root(2048))
            .unwrap()
            .spiffe_id()
            .as_str(),
        fixtures::LEAF_ID
    );
    assert_eq!(
        run(&fixtures::openssl_rsa_intermediate(2048))
            .unwrap()
            .chain_len(),
        2
    );
}

#[test]
fn rsa_2047_root_is_refused() {
    assert_eq!(
        err(&fixtures::openssl_rsa_root(2047)),
        X509SvidError::TrustAnchorRsaKeySize {
            bits: 2047,
            min: MIN_RSA_KEY_BITS,
            max: MAX_RSA_KEY_BITS
        }
    );
}

#[test]
fn rsa_2047_intermediate_is_refused() {
    assert_eq!(
        err(&fixtures::openssl_rsa_intermediate(2047)),
        X509SvidError::IntermediateRsaKeySize {
            index: 1,
            bits: 2047,
            min: MIN_RSA_KEY_BITS,
            max: MAX_RSA_KEY_BITS
        }
    );
}

#[test]
fn rsa_2047_leaf_is_refused() {
    assert_eq!(
        err(&fixtures::rsa_leaf_bits(2047)),
        X509SvidError::LeafRsaKeySize {
            bits: 2047,
            min: MIN_RSA_KEY_BITS,
            max: MAX_RSA_KEY_BITS
        }
    );
}

#[test]
fn intermediate_not_yet_valid_is_refused_naming_it() {
    assert_eq!(
        err(&fixtures::intermediate_not_yet_valid()),
        X509SvidError::CertNotYetValid {
            index: 1,
            not_before: rcgen_date(2026, 9, 1),
            now: fixtures::now()
        }
    );
}

/// webpki's RSA algorithms (`RSA_PKCS1_2048_8192_*`) refuse a public key outside 2048..=8192
/// bits when verifying the signature it made, so a short issuer key surfaces as a signature
/// failure; the 2048-bit controls, built the same way, verify.
#[test]
fn rsa_exact_bits_fixture_is_well_formed_at_the_minimum() {
    // The 2047-bit refusal above is about size, not encoding: the same construction at 2048
    // bits verifies (the leaf key's private half is never needed, the root signs the leaf).
    let v = run(&fixtures::rsa_leaf_bits(2048)).unwrap();
    assert_eq!(v.key_algorithm(), LeafKeyAlgorithm::Rsa { bits: 2048 });
}
