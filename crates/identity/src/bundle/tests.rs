use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::CertificateDer;

use super::key::KeyParams;
use super::testing::{TestKey, ca_cert, p256, rsa2048, td};
use super::*;

fn ec_jwk(key: &TestKey, kid: Option<&str>, extra: &str) -> String {
    let public = key.public();
    let KeyParams::Ec { curve, x, y } = public.params() else {
        panic!("not an ec key")
    };
    let kid = kid.map(|k| format!(r#","kid":"{k}""#)).unwrap_or_default();
    format!(
        r#"{{"kty":"EC","use":"jwt-svid","crv":"{}","x":"{}","y":"{}"{kid}{extra}}}"#,
        curve.jwk_name(),
        URL_SAFE_NO_PAD.encode(x),
        URL_SAFE_NO_PAD.encode(y),
    )
}

fn x509_jwk(cert: &CertificateDer<'_>) -> String {
    format!(
        r#"{{"kty":"EC","use":"x509-svid","x5c":["{}"]}}"#,
        STANDARD.encode(cert.as_ref())
    )
}

fn doc(keys: &[String]) -> String {
    format!(r#"{{"keys":[{}]}}"#, keys.join(","))
}

fn parse(json: &str) -> Result<SpiffeBundle, BundleError> {
    SpiffeBundle::parse_document(td("example.org"), json.as_bytes())
}

fn ignored_reasons(bundle: &SpiffeBundle) -> Vec<(usize, IgnoreReason)> {
    bundle
        .ignored()
        .iter()
        .map(|entry| (entry.index, entry.reason))
        .collect()
}

// === X509Bundle ===

#[test]
fn x509_bundle_parses_ca_certificates_into_anchors() {
    let certs = vec![
        ca_cert(&rcgen::PKCS_ECDSA_P256_SHA256),
        ca_cert(&rcgen::PKCS_ECDSA_P384_SHA384),
        ca_cert(&rcgen::PKCS_ED25519),
    ];
    let bundle = X509Bundle::new(td("example.org"), certs).unwrap();
    assert_eq!(bundle.authorities().len(), 3);
    assert_eq!(bundle.trust_anchors().len(), 3);
    assert_eq!(bundle.trust_domain().as_str(), "example.org");
}

#[test]
fn x509_bundle_garbage_certificate_is_rejected_by_index() {
    let certs = vec![
        ca_cert(&rcgen::PKCS_ECDSA_P256_SHA256),
        CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
    ];
    let err = X509Bundle::new(td("example.org"), certs).unwrap_err();
    assert!(
        matches!(err, BundleError::AuthorityUnparsable { index: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn x509_bundle_from_pem_reads_certificate_blocks() {
    let a = ca_cert(&rcgen::PKCS_ECDSA_P256_SHA256);
    let b = ca_cert(&rcgen::PKCS_ECDSA_P256_SHA256);
    let text = format!(
        "{}{}",
        pem::encode(&pem::Pem::new("CERTIFICATE", a.to_vec())),
        pem::encode(&pem::Pem::new("CERTIFICATE", b.to_vec()))
    );
    let bundle = X509Bundle::from_pem(td("example.org"), text.as_bytes()).unwrap();
    assert_eq!(bundle.authorities(), &[a, b]);
}

#[test]
fn x509_bundle_from_pem_private_key_block_is_rejected() {
    let a = ca_cert(&rcgen::PKCS_ECDSA_P256_SHA256);
    let text = format!(
        "{}{}",
        pem::encode(&pem::Pem::new("CERTIFICATE", a.to_vec())),
        pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]))
    );
    let err = X509Bundle::from_pem(td("example.org"), text.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, BundleError::PemNotCertificate { index: 1, label } if label == "PRIVATE KEY"),
        "{err:?}"
    );
}

#[test]
fn x509_bundle_from_pem_without_certificates_is_rejected() {
    let err = X509Bundle::from_pem(td("example.org"), b"no pem here").unwrap_err();
    assert!(matches!(err, BundleError::NoCertificates), "{err:?}");
}

#[test]
fn x509_bundle_from_pem_over_size_cap_is_rejected() {
    let text = " ".repeat(MAX_PEM_BUNDLE_BYTES + 1);
    let err = X509Bundle::from_pem(td("example.org"), text.as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::TooLarge {
                what: "pem bundle",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn x509_bundle_from_pem_malformed_base64_is_rejected() {
    let text = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    let err = X509Bundle::from_pem(td("example.org"), text.as_bytes()).unwrap_err();
    assert!(matches!(err, BundleError::Pem { .. }), "{err:?}");
}

// === JwtPublicKey ===

#[test]
fn ec_key_binds_each_curve_to_one_algorithm() {
    for (curve, alg) in [
        (EcCurve::P256, JwsAlgorithm::Es256),
        (EcCurve::P384, JwsAlgorithm::Es384),
        (EcCurve::P521, JwsAlgorithm::Es512),
    ] {
        let key = TestKey::ec(curve).public();
        for other in JwsAlgorithm::ALL {
            assert_eq!(key.supports(other), other == alg, "{curve} with {other}");
        }
    }
}

#[test]
fn ec_key_with_short_coordinate_is_rejected() {
    let err = JwtPublicKey::ec(EcCurve::P256, &[1; 31], &[1; 32]).unwrap_err();
    assert_eq!(
        err,
        KeyError::EcCoordinateLength {
            curve: EcCurve::P256,
            coordinate: "x",
            len: 31,
            expected: 32
        }
    );
}

#[test]
fn ec_key_off_curve_is_rejected() {
    let public = p256().public();
    let KeyParams::Ec { x, .. } = public.params() else {
        panic!()
    };
    let err = JwtPublicKey::ec(EcCurve::P256, x, x).unwrap_err();
    assert_eq!(
        err,
        KeyError::EcPointNotOnCurve {
            curve: EcCurve::P256
        }
    );
}

#[test]
fn ec_point_compressed_form_is_rejected() {
    let err = JwtPublicKey::ec_point(EcCurve::P256, &[0x02; 33]).unwrap_err();
    assert!(matches!(err, KeyError::EcPointEncoding { .. }), "{err:?}");
}

#[test]
fn rsa_key_supports_rs_and_ps_only() {
    let key = rsa2048().public();
    assert_eq!(key.rsa_bits(), Some(2048));
    for alg in JwsAlgorithm::ALL {
        assert_eq!(key.supports(alg), alg.is_rsa(), "{alg}");
    }
}

#[test]
fn rsa_key_below_2048_bits_is_rejected() {
    let mut n = vec![0xff; 128];
    n[127] = 0xfb;
    let err = JwtPublicKey::rsa(&n, &[1, 0, 1]).unwrap_err();
    assert_eq!(
        err,
        KeyError::RsaTooSmall {
            bits: 1024,
            min: 2048
        }
    );
}

#[test]
fn rsa_key_2047_bits_is_rejected() {
    let mut n = vec![0xff; 256];
    n[0] = 0x7f;
    let err = JwtPublicKey::rsa(&n, &[1, 0, 1]).unwrap_err();
    assert_eq!(
        err,
        KeyError::RsaTooSmall {
            bits: 2047,
            min: 2048
        }
    );
}

#[test]
fn rsa_key_above_8192_bits_is_rejected() {
    let n = vec![0xff; 1025];
    let err = JwtPublicKey::rsa(&n, &[1, 0, 1]).unwrap_err();
    assert_eq!(
        err,
        KeyError::RsaTooLarge {
            bits: 8200,
            max: 8192
        }
    );
}

#[test]
fn rsa_key_with_leading_zero_is_rejected() {
    let mut n = vec![0xff; 257];
    n[0] = 0;
    assert_eq!(
        JwtPublicKey::rsa(&n, &[1, 0, 1]).unwrap_err(),
        KeyError::RsaNotCanonical { component: "n" }
    );
    assert_eq!(
        JwtPublicKey::rsa(&n[1..], &[]).unwrap_err(),
        KeyError::RsaNotCanonical { component: "e" }
    );
}

#[test]
fn key_debug_shows_no_key_material() {
    let shown = format!("{:?}", p256().public());
    assert_eq!(shown, r#"JwtPublicKey { kty: "EC", crv: P256, .. }"#);
}

// === JwtBundle ===

#[test]
fn jwt_bundle_finds_authority_by_kid() {
    let bundle = JwtBundle::new(
        td("example.org"),
        vec![p256().authority("a"), rsa2048().authority("b")],
    )
    .unwrap();
    assert_eq!(bundle.find("b").map(|a| a.kid.as_str()), Some("b"));
    assert!(bundle.find("c").is_none());
    assert_eq!(bundle.len(), 2);
}

#[test]
fn jwt_bundle_duplicate_kid_is_rejected() {
    let err = JwtBundle::new(
        td("example.org"),
        vec![p256().authority("a"), rsa2048().authority("a")],
    )
    .unwrap_err();
    assert!(
        matches!(&err, BundleError::DuplicateKid { kid } if kid == "a"),
        "{err:?}"
    );
}

#[test]
fn authority_declared_alg_must_equal_token_alg() {
    let mut authority = rsa2048().authority("a");
    assert!(authority.accepts(JwsAlgorithm::Ps384));
    authority.alg = Some(JwsAlgorithm::Rs256);
    assert!(authority.accepts(JwsAlgorithm::Rs256));
    assert!(!authority.accepts(JwsAlgorithm::Ps384));
}

// === SpiffeBundle documents ===

#[test]
fn document_round_trips_through_json() {
    let cert = ca_cert(&rcgen::PKCS_ECDSA_P256_SHA256);
    let ed_cert = ca_cert(&rcgen::PKCS_ED25519);
    let rsa_cert = ca_cert(&rcgen::PKCS_RSA_SHA256);
    let x509 = X509Bundle::new(td("example.org"), vec![cert, ed_cert, rsa_cert]).unwrap();
    let mut rsa = rsa2048().authority("rsa");
    rsa.alg = Some(JwsAlgorithm::Ps256);
    let jwt = JwtBundle::new(td("example.org"), vec![p256().authority("ec"), rsa]).unwrap();
    let bundle = SpiffeBundle::new(x509, jwt)
        .unwrap()
        .with_sequence(u64::MAX)
        .with_refresh_hint(Duration::from_secs(60));

    let json = bundle.to_document_json();
    let parsed = parse(&json).unwrap();
    assert_eq!(parsed.x509().authorities(), bundle.x509().authorities());
    assert_eq!(parsed.jwt().authorities(), bundle.jwt().authorities());
    assert_eq!(parsed.sequence(), Some(u64::MAX));
    assert_eq!(parsed.refresh_hint(), Some(Duration::from_secs(60)));
    assert!(parsed.ignored().is_empty());

    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let keys = value["keys"].as_array().unwrap();
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["crv"], "P-256");
    assert_eq!(keys[0]["use"], "x509-svid");
    assert_eq!(keys[1]["kty"], "OKP");
    assert_eq!(keys[2]["kty"], "RSA");
    assert_eq!(keys[2]["e"], "AQAB");
    assert_eq!(keys[3]["use"], "jwt-svid");
    assert_eq!(keys[3]["kid"], "ec");
    assert_eq!(keys[4]["kty"], "RSA");
    assert_eq!(keys[4]["alg"], "PS256");
}

#[test]
fn document_with_empty_keys_trusts_nothing() {
    let bundle = parse(r#"{"keys":[]}"#).unwrap();
    assert!(bundle.x509().is_empty());
    assert!(bundle.jwt().is_empty());
    assert_eq!(bundle.refresh_hint_or_default(), DEFAULT_REFRESH_HINT);
}

#[test]
fn document_without_keys_is_rejected() {
    let err = parse(r#"{"spiffe_sequence":1}"#).unwrap_err();
    assert!(matches!(err, BundleError::Json { .. }), "{err:?}");
}

#[test]
fn document_malformed_json_is_rejected() {
    let err = parse(r#"{"keys":[}"#).unwrap_err();
    assert!(matches!(err, BundleError::Json { .. }), "{err:?}");
}

#[test]
fn document_wrong_type_for_known_member_is_rejected() {
    for json in [
        r#"{"keys":[{"kty":"EC","use":"jwt-svid","kid":7}]}"#,
        r#"{"keys":[],"spiffe_sequence":"1"}"#,
        r#"{"keys":[],"spiffe_sequence":-1}"#,
        r#"{"keys":[],"spiffe_refresh_hint":1.5}"#,
        r#"{"keys":{}}"#,
    ] {
        let err = parse(json).unwrap_err();
        assert!(matches!(err, BundleError::Json { .. }), "{json}: {err:?}");
    }
}

#[test]
fn document_duplicate_members_are_rejected() {
    for json in [
        r#"{"keys":[],"keys":[]}"#,
        r#"{"keys":[{"kty":"EC","kty":"RSA","use":"x"}]}"#,
    ] {
        let err = parse(json).unwrap_err();
        assert!(matches!(err, BundleError::Json { .. }), "{json}: {err:?}");
    }
}

#[test]
fn document_over_size_cap_is_rejected() {
    let json = format!(
        r#"{{"keys":[],"pad":"{}"}}"#,
        "a".repeat(MAX_BUNDLE_DOCUMENT_BYTES)
    );
    let err = parse(&json).unwrap_err();
    assert!(matches!(err, BundleError::TooLarge { .. }), "{err:?}");
}

#[test]
fn document_over_key_count_cap_is_rejected() {
    let at_cap = doc(&vec!["{}".to_owned(); MAX_BUNDLE_KEYS]);
    assert_eq!(parse(&at_cap).unwrap().ignored().len(), MAX_BUNDLE_KEYS);
    let over = doc(&vec!["{}".to_owned(); MAX_BUNDLE_KEYS + 1]);
    let err = parse(&over).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::TooManyKeys {
                max: MAX_BUNDLE_KEYS
            }
        ),
        "{err:?}"
    );
}

#[test]
fn document_ignores_entries_it_does_not_understand() {
    let cert = ca_cert(&rcgen::PKCS_ECDSA_P256_SHA256);
    let keys = vec![
        r#"{"use":"jwt-svid","kid":"a"}"#.to_owned(),
        r#"{"kty":"oct","use":"jwt-svid","kid":"a","k":"AAAA"}"#.to_owned(),
        ec_jwk(p256(), Some("b"), "").replace(r#""use":"jwt-svid","#, ""),
        r#"{"kty":"EC","use":"wit-svid","kid":"c"}"#.to_owned(),
        r#"{"kty":"EC","use":"x509-svid"}"#.to_owned(),
        r#"{"kty":"EC","use":"x509-svid","x5c":[]}"#.to_owned(),
        ec_jwk(p256(), None, ""),
        r#"{"kty":"EC","use":"jwt-svid","kid":"d","crv":"secp256k1","x":"AA","y":"AA"}"#.to_owned(),
        ec_jwk(p256(), Some("e"), r#","alg":"HS256""#),
        ec_jwk(p256(), Some("f"), r#","alg":"ES384""#),
        format!(
            r#"{{"kty":"RSA","use":"jwt-svid","kid":"g","n":"{}","e":"AQAB"}}"#,
            URL_SAFE_NO_PAD.encode([0xc5; 128])
        ),
        r#"{"kty":"OKP","use":"jwt-svid","kid":"h","crv":"Ed25519","x":"AA"}"#.to_owned(),
        // The usable ones.
        x509_jwk(&cert),
        ec_jwk(p256(), Some("ok"), r#","alg":"ES256""#),
    ];
    let bundle = parse(&doc(&keys)).unwrap();
    assert_eq!(
        ignored_reasons(&bundle),
        vec![
            (0, IgnoreReason::MissingKty),
            (1, IgnoreReason::UnsupportedKty),
            (2, IgnoreReason::MissingUse),
            (3, IgnoreReason::UnknownUse),
            (4, IgnoreReason::MissingX5c),
            (5, IgnoreReason::MissingX5c),
            (6, IgnoreReason::MissingKid),
            (7, IgnoreReason::UnsupportedCurve),
            (8, IgnoreReason::UnsupportedAlg),
            (9, IgnoreReason::AlgKeyMismatch),
            (10, IgnoreReason::WeakRsaKey),
            (11, IgnoreReason::UnsupportedKty),
        ]
    );
    assert_eq!(bundle.x509().authorities(), &[cert]);
    assert_eq!(bundle.jwt().len(), 1);
    assert_eq!(
        bundle.jwt().find("ok").and_then(|a| a.alg),
        Some(JwsAlgorithm::Es256)
    );
}

#[test]
fn document_x5c_uses_first_certificate_only() {
    let first = ca_cert(&rcgen::PKCS_ECDSA_P256_SHA256);
    let json = doc(&[format!(
        r#"{{"kty":"EC","use":"x509-svid","x5c":["{}","not even base64!",3]}}"#,
        STANDARD.encode(first.as_ref())
    )]);
    assert_eq!(parse(&json).unwrap().x509().authorities(), &[first]);
}

#[test]
fn document_x5c_bad_base64_is_rejected() {
    let json = doc(&[r#"{"kty":"EC","use":"x509-svid","x5c":["***"]}"#.to_owned()]);
    let err = parse(&json).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::InvalidEntry {
                index: 0,
                reason: EntryError::Base64 { member: "x5c" }
            }
        ),
        "{err:?}"
    );
}

#[test]
fn document_x5c_garbage_certificate_is_rejected_by_entry_index() {
    let good = x509_jwk(&ca_cert(&rcgen::PKCS_ECDSA_P256_SHA256));
    let json = doc(&[
        r#"{"use":"jwt-svid"}"#.to_owned(),
        good,
        r#"{"kty":"EC","use":"x509-svid","x5c":["MAMCAQE="]}"#.to_owned(),
    ]);
    let err = parse(&json).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::InvalidEntry {
                index: 2,
                reason: EntryError::Certificate
            }
        ),
        "{err:?}"
    );
}

#[test]
fn document_jwt_key_off_curve_is_rejected() {
    let public = p256().public();
    let KeyParams::Ec { x, .. } = public.params() else {
        panic!()
    };
    let x = URL_SAFE_NO_PAD.encode(x);
    let json = doc(&[format!(
        r#"{{"kty":"EC","use":"jwt-svid","kid":"a","crv":"P-256","x":"{x}","y":"{x}"}}"#
    )]);
    let err = parse(&json).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::InvalidEntry {
                index: 0,
                reason: EntryError::Key(KeyError::EcPointNotOnCurve { .. })
            }
        ),
        "{err:?}"
    );
}

#[test]
fn document_jwt_key_missing_coordinate_is_rejected() {
    let json =
        doc(&[r#"{"kty":"EC","use":"jwt-svid","kid":"a","crv":"P-256","x":"AA"}"#.to_owned()]);
    let err = parse(&json).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::InvalidEntry {
                reason: EntryError::MissingMember { member: "y" },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn document_duplicate_kid_is_rejected() {
    let json = doc(&[ec_jwk(p256(), Some("a"), ""), ec_jwk(p256(), Some("a"), "")]);
    let err = parse(&json).unwrap_err();
    assert!(matches!(err, BundleError::DuplicateKid { .. }), "{err:?}");
}

// === bundle maps ===

#[test]
fn bundle_map_parses_each_trust_domain_separately() {
    let json = format!(
        r#"{{"trust_domains":{{"example.org":{},"spiffe://other.org":{{"keys":[],"spiffe_sequence":2}}}}}}"#,
        doc(&[ec_jwk(p256(), Some("a"), "")])
    );
    let set = BundleSet::parse_bundle_map(json.as_bytes()).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set.jwt(&td("example.org")).map(JwtBundle::len), Some(1));
    assert_eq!(set.jwt(&td("other.org")).map(JwtBundle::len), Some(0));
    assert_eq!(
        set.get(&td("other.org")).and_then(|b| b.sequence()),
        Some(2)
    );
}

#[test]
fn bundle_map_duplicate_trust_domain_key_is_rejected() {
    for json in [
        r#"{"trust_domains":{"example.org":{"keys":[]},"example.org":{"keys":[]}}}"#,
        r#"{"trust_domains":{"example.org":{"keys":[]},"spiffe://example.org":{"keys":[]}}}"#,
    ] {
        let err = BundleSet::parse_bundle_map(json.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, BundleError::DuplicateTrustDomain { trust_domain } if trust_domain.as_str() == "example.org"),
            "{json}: {err:?}"
        );
    }
}

#[test]
fn bundle_map_invalid_trust_domain_key_is_rejected() {
    let json = r#"{"trust_domains":{"example.org":{"keys":[]},"Bad Domain":{"keys":[]}}}"#;
    let err = BundleSet::parse_bundle_map(json.as_bytes()).unwrap_err();
    assert!(
        matches!(err, BundleError::InvalidTrustDomain { index: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn bundle_map_without_trust_domains_is_rejected() {
    let err = BundleSet::parse_bundle_map(br#"{"keys":[]}"#).unwrap_err();
    assert!(matches!(err, BundleError::Json { .. }), "{err:?}");
}

#[test]
fn bundle_map_bad_inner_bundle_names_its_trust_domain() {
    let json = r#"{"trust_domains":{"example.org":{"keys":[{"kty":"EC","use":"x509-svid","x5c":["***"]}]}}}"#;
    let err = BundleSet::parse_bundle_map(json.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, BundleError::InMap { trust_domain, .. } if trust_domain.as_str() == "example.org"),
        "{err:?}"
    );
}

#[test]
fn bundle_map_over_trust_domain_cap_is_rejected() {
    let entries: Vec<String> = (0..=MAX_BUNDLE_MAP_TRUST_DOMAINS)
        .map(|i| format!(r#""td{i}.org":{{"keys":[]}}"#))
        .collect();
    let json = format!(r#"{{"trust_domains":{{{}}}}}"#, entries.join(","));
    let err = BundleSet::parse_bundle_map(json.as_bytes()).unwrap_err();
    assert!(
        matches!(err, BundleError::TooManyTrustDomains { .. }),
        "{err:?}"
    );
}

// === BundleSet and providers ===

#[test]
fn bundle_set_insert_rejects_second_bundle_for_a_trust_domain() {
    let mut set = BundleSet::new();
    set.insert(SpiffeBundle::empty(td("example.org"))).unwrap();
    set.insert(SpiffeBundle::empty(td("other.org"))).unwrap();
    let err = set
        .insert(SpiffeBundle::empty(td("example.org")))
        .unwrap_err();
    assert!(
        matches!(err, BundleError::DuplicateTrustDomain { .. }),
        "{err:?}"
    );
    assert_eq!(
        set.trust_domains()
            .map(TrustDomain::as_str)
            .collect::<Vec<_>>(),
        ["example.org", "other.org"]
    );
    assert!(set.x509(&td("third.org")).is_none());
    assert!(set.get_by_name("other.org").is_some());
}

#[test]
fn bundle_set_replace_swaps_one_trust_domain() {
    let mut set = BundleSet::new();
    set.insert(SpiffeBundle::empty(td("example.org"))).unwrap();
    let old = set.replace(SpiffeBundle::empty(td("example.org")).with_sequence(5));
    assert!(old.is_some());
    assert_eq!(
        set.get(&td("example.org")).and_then(|b| b.sequence()),
        Some(5)
    );
    assert!(set.remove(&td("example.org")).is_some());
    assert!(set.is_empty());
}

#[test]
fn bundle_set_clone_shares_bundles() {
    let mut set = BundleSet::new();
    set.insert(SpiffeBundle::empty(td("example.org"))).unwrap();
    let copy = set.clone();
    let (a, b) = (
        set.get(&td("example.org")).unwrap(),
        copy.get(&td("example.org")).unwrap(),
    );
    assert!(Arc::ptr_eq(a, b));
}

#[test]
fn spiffe_bundle_halves_from_different_trust_domains_are_rejected() {
    let err = SpiffeBundle::new(
        X509Bundle::empty(td("example.org")),
        JwtBundle::empty(td("other.org")),
    )
    .unwrap_err();
    assert!(
        matches!(err, BundleError::TrustDomainMismatch { .. }),
        "{err:?}"
    );
}

#[test]
fn providers_return_the_current_set() {
    let first = Arc::new(BundleSet::new());
    assert!(Arc::ptr_eq(&first.bundles(), &first));

    let swap = ArcSwap::from(Arc::clone(&first));
    assert!(swap.bundles().is_empty());
    let mut next = BundleSet::new();
    next.insert(SpiffeBundle::empty(td("example.org"))).unwrap();
    swap.store(Arc::new(next));
    assert_eq!(swap.bundles().len(), 1);
}

// === properties ===

proptest::proptest! {
    #[test]
    fn arbitrary_documents_never_panic_and_round_trip(json in "\\PC{0,200}") {
        if let Ok(bundle) = parse(&json) {
            let again = parse(&bundle.to_document_json()).unwrap();
            proptest::prop_assert_eq!(again.jwt().authorities(), bundle.jwt().authorities());
            proptest::prop_assert_eq!(again.sequence(), bundle.sequence());
        }
        let _ = BundleSet::parse_bundle_map(json.as_bytes());
    }
}

// === review fixes: empty kid, refresh hint bounds, unusable keys are ignored ===

#[test]
fn document_jwt_key_with_empty_kid_is_ignored() {
    let bundle = parse(&doc(&[
        ec_jwk(p256(), Some(""), ""),
        ec_jwk(p256(), Some("k1"), ""),
    ]))
    .unwrap();
    assert_eq!(
        ignored_reasons(&bundle),
        vec![(0, IgnoreReason::MissingKid)]
    );
    assert_eq!(bundle.jwt().len(), 1);
    assert!(bundle.jwt().find("").is_none());
    assert!(bundle.jwt().find("k1").is_some());
}

fn with_hint(hint: &str) -> SpiffeBundle {
    parse(&format!(r#"{{"keys":[],"spiffe_refresh_hint":{hint}}}"#)).unwrap()
}

#[test]
fn refresh_hint_within_bounds_is_used_as_is() {
    for secs in [30, 60, 86_400] {
        let bundle = with_hint(&secs.to_string());
        assert_eq!(bundle.refresh_hint(), Some(Duration::from_secs(secs)));
        assert_eq!(bundle.refresh_hint_or_default(), Duration::from_secs(secs));
        assert_eq!(bundle.refresh_interval(), Duration::from_secs(secs));
    }
    let absent = parse(r#"{"keys":[]}"#).unwrap();
    assert_eq!(absent.refresh_hint(), None);
    assert_eq!(absent.refresh_interval(), DEFAULT_REFRESH_HINT);
}

#[test]
fn refresh_hint_out_of_bounds_is_clamped_but_kept_raw() {
    for (hint, raw, clamped) in [
        ("0", Duration::ZERO, MIN_REFRESH_HINT),
        ("29", Duration::from_secs(29), MIN_REFRESH_HINT),
        ("86401", Duration::from_secs(86_401), MAX_REFRESH_HINT),
        (
            "18446744073709551615",
            Duration::from_secs(u64::MAX),
            MAX_REFRESH_HINT,
        ),
    ] {
        let bundle = with_hint(hint);
        assert_eq!(bundle.refresh_hint(), Some(raw), "{hint}");
        assert_eq!(bundle.refresh_hint_or_default(), clamped, "{hint}");
        assert_eq!(bundle.refresh_interval(), clamped, "{hint}");
    }
}

#[test]
fn document_jwt_rsa_key_above_8192_bits_is_ignored() {
    let big = format!(
        r#"{{"kty":"RSA","use":"jwt-svid","kid":"big","n":"{}","e":"AQAB"}}"#,
        URL_SAFE_NO_PAD.encode(vec![0xff; 1025])
    );
    let bundle = parse(&doc(&[big, ec_jwk(p256(), Some("k1"), "")])).unwrap();
    assert_eq!(
        ignored_reasons(&bundle),
        vec![(0, IgnoreReason::RsaKeyTooLarge)]
    );
    assert!(bundle.jwt().find("k1").is_some());
}

/// A CA certificate (signed by a real root) whose public key is `public_key`.
fn ca_with_raw_key(public_key: &crate::x509::fixtures::RawPublicKey) -> CertificateDer<'static> {
    use crate::x509::fixtures::{Ca, ca_params};
    Ca::root("example.org").sign(&ca_params("example.org", "odd"), public_key)
}

fn rsa_pss_ca() -> CertificateDer<'static> {
    const RSA_ENCRYPTION: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    let cert = ca_with_raw_key(&crate::x509::fixtures::RawPublicKey::rsa(2048));
    let mut der = cert.as_ref().to_vec();
    let at = der
        .windows(RSA_ENCRYPTION.len())
        .position(|w| w == RSA_ENCRYPTION)
        .unwrap();
    der[at + RSA_ENCRYPTION.len() - 1] = 0x0a;
    CertificateDer::from(der)
}

#[test]
fn document_x509_ca_whose_key_has_no_jwk_form_is_ignored() {
    use crate::x509::fixtures::RawPublicKey;
    let good = ca_cert(&rcgen::PKCS_ECDSA_P256_SHA256);
    let odd = [
        // 33 bytes under id-ecPublicKey/P-256: a compressed point's length.
        ca_with_raw_key(&RawPublicKey::opaque(&rcgen::PKCS_ECDSA_P256_SHA256, 33)),
        // An RSASSA-PSS SubjectPublicKeyInfo (rcgen cannot make one: patch rsaEncryption's OID
        // to id-RSASSA-PSS, the same length; a trust anchor's own signature is never checked).
        rsa_pss_ca(),
        // A key type outside the supported set.
        ca_with_raw_key(&RawPublicKey::opaque(&rcgen::PKCS_ML_DSA_44, 1312)),
    ];
    for cert in &odd {
        // Direct callers of X509Bundle::new still get the error.
        assert!(matches!(
            X509Bundle::new(td("example.org"), vec![cert.clone()]),
            Err(BundleError::UnsupportedAuthorityKey { index: 0 })
        ));
    }
    let mut keys = vec![x509_jwk(&good)];
    keys.extend(odd.iter().map(|cert| x509_jwk(cert)));
    let bundle = parse(&doc(&keys)).unwrap();
    assert_eq!(
        ignored_reasons(&bundle),
        vec![
            (1, IgnoreReason::UnsupportedCertificateKey),
            (2, IgnoreReason::UnsupportedCertificateKey),
            (3, IgnoreReason::UnsupportedCertificateKey),
        ]
    );
    assert_eq!(bundle.x509().authorities(), std::slice::from_ref(&good));
    // What was loaded writes back and reads again.
    let again = parse(&bundle.to_document_json()).unwrap();
    assert_eq!(again.x509().authorities(), std::slice::from_ref(&good));
    assert!(again.ignored().is_empty());
}

// === JwtBundle::parse_jwks (plain OIDC JWK Sets) ===

fn plain_ec_jwk(key: &TestKey, kid: &str, use_: Option<&str>) -> String {
    let jwk = ec_jwk(key, Some(kid), "");
    match use_ {
        Some(u) => jwk.replace(r#""use":"jwt-svid""#, &format!(r#""use":"{u}""#)),
        None => jwk.replace(r#""use":"jwt-svid","#, ""),
    }
}

fn rsa_jwk(kid: &str) -> String {
    let public = rsa2048().public();
    let KeyParams::Rsa { n, e } = public.params() else {
        panic!("not an rsa key")
    };
    format!(
        r#"{{"kty":"RSA","use":"sig","alg":"RS256","kid":"{kid}","n":"{}","e":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(n),
        URL_SAFE_NO_PAD.encode(e)
    )
}

#[test]
fn jwks_sig_and_absent_use_become_authorities() {
    let json = doc(&[
        rsa_jwk("rsa"),
        plain_ec_jwk(p256(), "ec-sig", Some("sig")),
        plain_ec_jwk(p256(), "ec-nouse", None),
    ]);
    let (bundle, ignored) = JwtBundle::parse_jwks(td("k8s.local"), json.as_bytes()).unwrap();
    assert_eq!(bundle.len(), 3);
    assert!(ignored.is_empty());
    assert_eq!(bundle.find("rsa").unwrap().alg, Some(JwsAlgorithm::Rs256));
    assert!(bundle.find("ec-nouse").is_some());
}

#[test]
fn jwks_other_uses_missing_kid_and_okp_are_skipped() {
    let json = doc(&[
        plain_ec_jwk(p256(), "enc", Some("enc")),
        ec_jwk(p256(), None, "").replace(r#""use":"jwt-svid","#, ""),
        r#"{"kty":"OKP","crv":"Ed25519","x":"AA","kid":"ed"}"#.to_owned(),
        r#"{"use":"sig","kid":"nokty"}"#.to_owned(),
    ]);
    let (bundle, ignored) = JwtBundle::parse_jwks(td("k8s.local"), json.as_bytes()).unwrap();
    assert!(bundle.is_empty());
    let reasons: Vec<_> = ignored.iter().map(|i| (i.index, i.reason)).collect();
    assert_eq!(
        reasons,
        [
            (0, IgnoreReason::UnknownUse),
            (1, IgnoreReason::MissingKid),
            (2, IgnoreReason::UnsupportedKty),
            (3, IgnoreReason::MissingKty),
        ]
    );
}

#[test]
fn jwks_malformed_entry_duplicate_kid_and_size_cap_are_errors() {
    let bad = r#"{"kty":"EC","crv":"P-256","kid":"k","x":"!!","y":"AA"}"#.to_owned();
    assert!(matches!(
        JwtBundle::parse_jwks(td("k8s.local"), doc(&[bad]).as_bytes()),
        Err(BundleError::InvalidEntry { index: 0, .. })
    ));
    let dup = doc(&[rsa_jwk("same"), plain_ec_jwk(p256(), "same", None)]);
    assert!(matches!(
        JwtBundle::parse_jwks(td("k8s.local"), dup.as_bytes()),
        Err(BundleError::DuplicateKid { .. })
    ));
    let big = vec![b' '; MAX_BUNDLE_DOCUMENT_BYTES + 1];
    assert!(matches!(
        JwtBundle::parse_jwks(td("k8s.local"), &big),
        Err(BundleError::TooLarge { .. })
    ));
    assert!(matches!(
        JwtBundle::parse_jwks(td("k8s.local"), b"[]"),
        Err(BundleError::Json { .. })
    ));
}
