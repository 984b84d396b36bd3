use std::io::Write as _;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ECDSA_P521_SHA512,
    PKCS_ED25519, PKCS_RSA_SHA256, RsaKeySize,
};
use rustls_pki_types::CertificateDer;
use svid_broker_identity::secret::ExposeSecret as _;
use x509_parser::extensions::ParsedExtension;

use super::*;
use crate::Profile;
use crate::error::PemSource;
use crate::kid::libtrust_key_id;
use crate::mint::{MintRequest, TokenMinter};
use crate::testutil::{CA_LIFETIME, ca, config, ring, subject, t0};
use crate::verify28::Registry28;
use crate::{Access, TokenError};

/// A 1024-bit RSA CA made once with `openssl req -x509 -newkey rsa:1024` (valid 2026-2126).
const RSA1024_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIICCjCCAXOgAwIBAgIUAY+FlJdHZ8aLKLQ8DPuYglDXCEowDQYJKoZIhvcNAQEL
BQAwFjEUMBIGA1UEAwwLd2VhayByc2EgY2EwIBcNMjYxMTI2MDAyNDU3WhgPMjEy
NjExMDIwMDI0NTdaMBYxFDASBgNVBAMMC3dlYWsgcnNhIGNhMIGfMA0GCSqGSIb3
DQEBAQUAA4GNADCBiQKBgQDBOHQ3Es12LeNMmbGte44OdM3MCxYBkCW95sIe1PCs
ZWjC0poZO21eNG35K7EkEcE1pfH3l0F6S/Sj8zlaeXcf72qpkHvGgKiH878TNry5
GtvLNOP9MFZduK4Jn+Jtn32lbzo6cVW4FG2I/d4GK3kzM8lEMs6k0ieCMyj4AeCP
zwIDAQABo1MwUTAdBgNVHQ4EFgQUBniKp1bK3/1FwyNKQ1HFj9cpDyMwHwYDVR0j
BBgwFoAUBniKp1bK3/1FwyNKQ1HFj9cpDyMwDwYDVR0TAQH/BAUwAwEB/zANBgkq
hkiG9w0BAQsFAAOBgQAU7NB12DS3BQ3zdTnAHPkA4osjK2lqjYszWnicUH3LhKgS
3Vzk56T9gOFhlnzIj2YhtgxZwB2J22/0wRKvHreg0gtVGEqcTzcRX6vq/ikFxHAN
jlArbSOz7gUxZOLT9/1v6lt/Pcq3dXKaGq2Ps8X70FWKaMf8BMNDGmqx+q2jtQ==
-----END CERTIFICATE-----
";

const ISSUER: &str = "svid-broker";
const SERVICE: &str = "registry.local";

/// A CA made outside this crate (rcgen's own key pair), as an operator would bring one.
struct ExternalCa {
    cert_pem: String,
    key_pem: String,
    params: CertificateParams,
    key: KeyPair,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = (t0() - Duration::from_secs(3600)).into();
    params.not_after = (t0() + CA_LIFETIME).into();
    params
}

fn external_ca_with(key: KeyPair, params: CertificateParams) -> ExternalCa {
    let cert = params.self_signed(&key).unwrap();
    ExternalCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        params,
        key,
    }
}

fn external_ca(alg: &'static SignatureAlgorithm) -> ExternalCa {
    let key = if alg == &PKCS_RSA_SHA256 {
        KeyPair::generate_rsa_for(alg, RsaKeySize::_2048).unwrap()
    } else {
        KeyPair::generate_for(alg).unwrap()
    };
    external_ca_with(key, ca_params("external ca"))
}

fn load_err(cert_pem: &str, key_pem: &str) -> KeyError {
    SigningCa::from_pem(cert_pem, key_pem, t0()).unwrap_err()
}

fn mint_and_verify(ring: KeyRing, roots: Vec<CertificateDer<'static>>) {
    let minter = TokenMinter::new(ring);
    let sub = subject();
    let access = [Access::new("repository", "team/app", ["pull"])];
    let token = minter
        .mint(&MintRequest::new(
            ISSUER,
            SERVICE,
            &sub,
            &access,
            Profile::Distribution2,
            t0(),
        ))
        .unwrap();
    let registry = Registry28::new(ISSUER, SERVICE, roots);
    registry.verify(token.token.expose_secret(), t0()).unwrap();
}

#[test]
fn algorithm_names_accept_only_es256_es384_rs256() {
    for alg in [
        SigningAlgorithm::Es256,
        SigningAlgorithm::Es384,
        SigningAlgorithm::Rs256,
    ] {
        assert_eq!(
            SigningAlgorithm::from_jws_name(alg.jws_name()).unwrap(),
            alg
        );
        assert_eq!(alg.to_string().parse::<SigningAlgorithm>().unwrap(), alg);
    }
    for bad in [
        "EdDSA", "PS256", "PS384", "HS256", "ES512", "RS384", "none", "es256", "",
    ] {
        assert!(
            matches!(
                SigningAlgorithm::from_jws_name(bad),
                Err(KeyError::UnsupportedAlgorithm { ref name }) if name == bad
            ),
            "{bad}"
        );
    }
    assert_eq!(SigningAlgorithm::default(), SigningAlgorithm::Es256);
}

#[test]
fn generated_ca_is_a_ca_for_every_algorithm() {
    for alg in [
        SigningAlgorithm::Es256,
        SigningAlgorithm::Es384,
        SigningAlgorithm::Rs256,
    ] {
        let ca = ca(alg);
        assert_eq!(ca.algorithm(), alg);
        let (_, cert) = x509_parser::parse_x509_certificate(ca.certificate()).unwrap();
        assert!(cert.basic_constraints().unwrap().unwrap().value.ca);
        assert!(cert.key_usage().unwrap().unwrap().value.key_cert_sign());
        assert_eq!(ca.not_after(), t0() + CA_LIFETIME);
        // The bundle is the certificate itself, as PEM.
        let pem = pem::parse(ca.ca_bundle_pem()).unwrap();
        assert_eq!(pem.tag(), "CERTIFICATE");
        assert_eq!(pem.contents(), ca.certificate().as_ref());
        assert_eq!(ca.trust_anchor(), ca.certificate());
    }
}

#[test]
fn generated_ca_rejects_bad_common_names() {
    for bad in [String::new(), "x".repeat(65), "a\nb".to_owned()] {
        assert!(matches!(
            SigningCa::generate(SigningAlgorithm::Es256, &bad, CA_LIFETIME, t0()),
            Err(KeyError::InvalidCommonName { .. })
        ));
    }
}

#[test]
fn loads_external_cas_of_every_supported_type() {
    for (alg, want) in [
        (&PKCS_ECDSA_P256_SHA256, SigningAlgorithm::Es256),
        (&PKCS_ECDSA_P384_SHA384, SigningAlgorithm::Es384),
        (&PKCS_RSA_SHA256, SigningAlgorithm::Rs256),
    ] {
        let ext = external_ca(alg);
        let ca = SigningCa::from_pem(&ext.cert_pem, &ext.key_pem, t0()).unwrap();
        assert_eq!(ca.algorithm(), want);
        let root = ca.certificate().clone();
        // The loaded key really is the CA's: leaves it issues verify against the certificate.
        let ring = KeyRing::new(ca, config(SigningAlgorithm::Es256), t0()).unwrap();
        mint_and_verify(ring, vec![root]);
    }
}

#[test]
fn refuses_edwards_curve_cas() {
    let ext = external_ca(&PKCS_ED25519);
    assert!(matches!(
        load_err(&ext.cert_pem, &ext.key_pem),
        KeyError::EdwardsCurveRefused { index: 0 }
    ));
    // Also as the trust anchor above a good signing CA: 2.8 would panic on the bundle.
    let good = external_ca(&PKCS_ECDSA_P256_SHA256);
    let chain = format!("{}{}", good.cert_pem, ext.cert_pem);
    assert!(matches!(
        load_err(&chain, &good.key_pem),
        KeyError::EdwardsCurveRefused { index: 1 }
    ));
    let msg = load_err(&ext.cert_pem, &ext.key_pem).to_string();
    assert!(
        msg.contains("ed25519") && msg.contains("rootcertbundle"),
        "{msg}"
    );
}

#[test]
fn refuses_unsupported_and_weak_keys() {
    let p521 = external_ca(&PKCS_ECDSA_P521_SHA512);
    assert!(matches!(
        load_err(&p521.cert_pem, &p521.key_pem),
        KeyError::UnsupportedKeyType { index: 0 }
    ));
    let good = external_ca(&PKCS_ECDSA_P256_SHA256);
    assert!(matches!(
        load_err(RSA1024_CA_PEM, &good.key_pem),
        KeyError::RsaKeyTooSmall {
            bits: 1024,
            min: MIN_RSA_BITS
        }
    ));
}

#[test]
fn refuses_non_ca_certificates() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = ca_params("not a ca");
    params.is_ca = IsCa::ExplicitNoCa;
    let leafish = external_ca_with(key, params);
    assert!(matches!(
        load_err(&leafish.cert_pem, &leafish.key_pem),
        KeyError::NotCa
    ));

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = ca_params("ca without keyCertSign");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let no_sign = external_ca_with(key, params);
    assert!(matches!(
        load_err(&no_sign.cert_pem, &no_sign.key_pem),
        KeyError::CaCannotSignCertificates
    ));
}

#[test]
fn refuses_cas_not_valid_now() {
    let ext = external_ca(&PKCS_ECDSA_P256_SHA256);
    for when in [t0() - Duration::from_secs(7200), t0() + CA_LIFETIME * 2] {
        assert!(matches!(
            SigningCa::from_pem(&ext.cert_pem, &ext.key_pem, when),
            Err(KeyError::CertificateNotValidNow { index: 0, .. })
        ));
    }
}

#[test]
fn refuses_wrong_or_missing_keys() {
    let a = external_ca(&PKCS_ECDSA_P256_SHA256);
    let b = external_ca(&PKCS_ECDSA_P256_SHA256);
    assert!(matches!(
        load_err(&a.cert_pem, &b.key_pem),
        KeyError::KeyMismatch
    ));
    let p384 = external_ca(&PKCS_ECDSA_P384_SHA384);
    assert!(matches!(
        load_err(&a.cert_pem, &p384.key_pem),
        KeyError::MalformedPrivateKey
    ));
    assert!(matches!(load_err(&a.cert_pem, ""), KeyError::NoPrivateKey));
    let sec1 = a.key_pem.replace("PRIVATE KEY", "EC PRIVATE KEY");
    assert!(matches!(
        load_err(&a.cert_pem, &sec1),
        KeyError::UnsupportedKeyFormat { ref label } if label == "EC PRIVATE KEY"
    ));
    let two = format!("{}{}", a.key_pem, b.key_pem);
    assert!(matches!(
        load_err(&a.cert_pem, &two),
        KeyError::MalformedPem {
            source_kind: PemSource::PrivateKey
        }
    ));
    // The error never quotes key material.
    let shown = format!(
        "{:?} {}",
        load_err(&a.cert_pem, &b.key_pem),
        load_err(&a.cert_pem, &sec1)
    );
    let body: String = b.key_pem.lines().nth(1).unwrap().to_owned();
    assert!(!shown.contains(&body));
}

#[test]
fn refuses_malformed_certificate_pem() {
    let a = external_ca(&PKCS_ECDSA_P256_SHA256);
    assert!(matches!(
        load_err("", &a.key_pem),
        KeyError::NoCaCertificate
    ));
    assert!(matches!(
        load_err(&a.key_pem, &a.key_pem),
        KeyError::UnexpectedCertificateLabel { index: 0, ref label } if label == "PRIVATE KEY"
    ));
    assert!(matches!(
        load_err(&a.cert_pem.repeat(MAX_CA_CERTS + 1), &a.key_pem),
        KeyError::TooManyCaCertificates {
            count: 9,
            max: MAX_CA_CERTS
        }
    ));
    assert!(SigningCa::from_pem(&a.cert_pem.repeat(2), &a.key_pem, t0()).is_ok());
    let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        load_err(garbage, &a.key_pem),
        KeyError::MalformedCertificate { index: 0 }
    ));
    let bad_b64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        load_err(bad_b64, &a.key_pem),
        KeyError::MalformedPem {
            source_kind: PemSource::Certificate
        }
    ));
    let huge = "x".repeat(MAX_PEM_LEN + 1);
    assert!(matches!(
        load_err(&huge, &a.key_pem),
        KeyError::PemTooLarge {
            source_kind: PemSource::Certificate,
            ..
        }
    ));
    assert!(matches!(
        load_err(&a.cert_pem, &huge),
        KeyError::PemTooLarge {
            source_kind: PemSource::PrivateKey,
            ..
        }
    ));
}

#[test]
fn loads_from_files_with_a_size_cap() {
    let a = external_ca(&PKCS_ECDSA_P256_SHA256);
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("ca.pem");
    let key = dir.path().join("ca.key");
    std::fs::write(&cert, &a.cert_pem).unwrap();
    std::fs::write(&key, &a.key_pem).unwrap();
    assert!(SigningCa::from_pem_files(&cert, &key, t0()).is_ok());

    let missing = dir.path().join("missing.pem");
    assert!(matches!(
        SigningCa::from_pem_files(&missing, &key, t0()),
        Err(KeyError::Io {
            source_kind: PemSource::Certificate,
            ..
        })
    ));
    let big = dir.path().join("big.pem");
    let mut f = std::fs::File::create(&big).unwrap();
    f.write_all(&vec![b'x'; MAX_PEM_LEN + 10]).unwrap();
    assert!(matches!(
        SigningCa::from_pem_files(&cert, &big, t0()),
        Err(KeyError::PemTooLarge {
            source_kind: PemSource::PrivateKey,
            ..
        })
    ));
}

#[test]
fn intermediate_signing_ca_travels_in_x5c_and_root_is_the_bundle() {
    let root = external_ca(&PKCS_ECDSA_P384_SHA384);
    let root_issuer = Issuer::new(root.params.clone(), &root.key);
    let inter_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let inter = ca_params("intermediate")
        .signed_by(&inter_key, &root_issuer)
        .unwrap();
    let chain = format!("{}{}", inter.pem(), root.cert_pem);
    let ca = SigningCa::from_pem(&chain, &inter_key.serialize_pem(), t0()).unwrap();
    assert_eq!(ca.certificate(), inter.der());
    assert_eq!(
        pem::parse(ca.ca_bundle_pem()).unwrap().contents(),
        pem::parse(&root.cert_pem).unwrap().contents()
    );
    let anchor = ca.trust_anchor().clone();
    let ring = KeyRing::new(ca, config(SigningAlgorithm::Es256), t0()).unwrap();
    let leaf = ring.current();
    assert_eq!(leaf.x5c().len(), 2);
    assert_eq!(leaf.x5c()[1], STANDARD.encode(inter.der()));
    mint_and_verify(ring, vec![anchor]);
}

#[test]
fn config_rules() {
    let ok = KeyRingConfig::default();
    ok.validate().unwrap();
    let rule = |c: &KeyRingConfig| match c.validate() {
        Err(KeyError::InvalidRotation { rule }) => Some(rule),
        Ok(()) => None,
        Err(other) => panic!("{other}"),
    };
    let secs = Duration::from_secs;

    let mut c = ok.clone();
    c.max_token_ttl = secs(59);
    assert_eq!(rule(&c), Some(RotationRule::MaxTtlTooShort));

    let mut c = ok.clone();
    c.leaf_lifetime = MAX_LEAF_LIFETIME + secs(1);
    c.rotate_when_remaining = MAX_LEAF_LIFETIME / 2;
    assert_eq!(rule(&c), Some(RotationRule::LeafTooLong));

    // rotate_when_remaining >= max_token_ttl + 60 + 60, boundary included.
    let mut c = ok.clone();
    c.max_token_ttl = secs(300);
    c.rotate_when_remaining = secs(419);
    assert_eq!(rule(&c), Some(RotationRule::RotateTooLate));
    c.rotate_when_remaining = secs(420);
    c.leaf_lifetime = secs(420 + 360);
    assert_eq!(rule(&c), None);
    // leaf_lifetime >= rotate_when_remaining + max_token_ttl + 60, boundary included.
    c.leaf_lifetime = secs(420 + 359);
    assert_eq!(rule(&c), Some(RotationRule::LeafTooShort));

    let mut c = ok;
    c.leaf_common_name = String::new();
    assert!(matches!(
        c.validate(),
        Err(KeyError::InvalidCommonName { len: 0, .. })
    ));
    assert!(matches!(
        KeyRing::new(ca(SigningAlgorithm::Es256), c, t0()),
        Err(KeyError::InvalidCommonName { .. })
    ));
}

#[test]
fn leaf_certificate_profile() {
    for alg in [
        SigningAlgorithm::Es256,
        SigningAlgorithm::Es384,
        SigningAlgorithm::Rs256,
    ] {
        let ring = ring(alg);
        let leaf = ring.current();
        assert_eq!(leaf.algorithm(), alg);
        assert_eq!(leaf.not_before(), t0() - LEAF_BACKDATE);
        assert_eq!(leaf.not_after(), t0() + DEFAULT_LEAF_LIFETIME);
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.certificate()).unwrap();
        assert_eq!(
            cert.validity().not_before.timestamp(),
            1_800_000_000 - 60,
            "notBefore back-dated 60 s"
        );
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), DEFAULT_LEAF_COMMON_NAME);
        let bc = cert.basic_constraints().unwrap().map(|b| b.value.ca);
        assert_ne!(bc, Some(true), "leaf must not be a CA");
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.digital_signature());
        assert!(!ku.value.key_cert_sign());
        assert_eq!(ku.value.flags, 1, "digitalSignature only");
        let no_eku = !cert
            .extensions()
            .iter()
            .any(|e| matches!(e.parsed_extension(), ParsedExtension::ExtendedKeyUsage(_)));
        assert!(no_eku);
        let (_, ca_cert) = x509_parser::parse_x509_certificate(ring.ca().certificate()).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        assert_eq!(leaf.x5c(), [STANDARD.encode(leaf.certificate())]);
        assert_eq!(
            leaf.libtrust_key_id(),
            libtrust_key_id(cert.public_key().raw)
        );
        assert_eq!(leaf.key_id(Profile::Distribution2), leaf.libtrust_key_id());
        assert_eq!(leaf.key_id(Profile::Zot), leaf.thumbprint());
    }
}

#[test]
fn rsa_leaf_spki_matches_gos_encoding() {
    // Go's MarshalPKIXPublicKey writes rsaEncryption with NULL parameters; the libtrust kid
    // is computed over that exact encoding, so the leaf's SPKI must use it too.
    let ring = ring(SigningAlgorithm::Rs256);
    let leaf = ring.current();
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.certificate()).unwrap();
    let raw = cert.public_key().raw;
    let alg_id = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    assert_eq!(&raw[4..4 + alg_id.len()], alg_id);
}

#[test]
fn rotation_happens_when_due_and_keeps_the_previous_leaf() {
    let ring = ring(SigningAlgorithm::Es256);
    let first = ring.current();
    assert!(ring.previous().is_none());
    let due_at = first.not_after() - ring.config().rotate_when_remaining;
    assert!(!ring.is_rotation_due(due_at));
    assert!(!ring.rotate_if_due(due_at).unwrap());
    assert!(ring.current().same_as(&first));

    let later = due_at + Duration::from_secs(1);
    assert!(ring.is_rotation_due(later));
    assert!(ring.rotate_if_due(later).unwrap());
    let second = ring.current();
    assert!(!second.same_as(&first));
    assert!(ring.previous().unwrap().same_as(&first));
    assert_ne!(second.libtrust_key_id(), first.libtrust_key_id());
    assert!(
        !ring.rotate_if_due(later).unwrap(),
        "not due again right away"
    );

    // A clock that jumps back before the leaf's notBefore forces a new leaf.
    let before = second.not_before() - Duration::from_secs(1);
    assert!(ring.rotate_if_due(before).unwrap());
    assert!(ring.previous().unwrap().same_as(&second));
}

#[test]
fn manual_rotation_always_issues_a_new_leaf() {
    let ring = ring(SigningAlgorithm::Es256);
    let first = ring.current();
    ring.rotate(t0()).unwrap();
    assert!(!ring.current().same_as(&first));
    assert!(ring.previous().unwrap().same_as(&first));
}

#[test]
fn a_leaf_never_outlives_its_ca() {
    let short = SigningCa::generate(
        SigningAlgorithm::Es256,
        "short ca",
        Duration::from_secs(30 * 60),
        t0(),
    )
    .unwrap();
    assert!(matches!(
        KeyRing::new(short, KeyRingConfig::default(), t0()),
        Err(KeyError::CaExpiresTooSoon { .. })
    ));

    // Enough CA life for the first leaf but not for the rotated one: rotation fails, and so
    // does minting, rather than signing with a leaf that would expire under the token.
    let ca = SigningCa::generate(
        SigningAlgorithm::Es256,
        "ca",
        DEFAULT_LEAF_LIFETIME + Duration::from_secs(600),
        t0(),
    )
    .unwrap();
    let ring = KeyRing::new(ca, KeyRingConfig::default(), t0()).unwrap();
    let when = t0() + Duration::from_secs(40 * 60);
    assert!(matches!(
        ring.rotate_if_due(when),
        Err(KeyError::CaExpiresTooSoon { .. })
    ));
    let minter = TokenMinter::new(ring);
    let sub = subject();
    assert!(matches!(
        minter.mint(&MintRequest::new(
            ISSUER,
            SERVICE,
            &sub,
            &[],
            Profile::Distribution2,
            when
        )),
        Err(TokenError::Rotation(KeyError::CaExpiresTooSoon { .. }))
    ));
}

#[test]
fn debug_output_redacts_keys() {
    let ext = external_ca(&PKCS_ECDSA_P256_SHA256);
    let ca = SigningCa::from_pem(&ext.cert_pem, &ext.key_pem, t0()).unwrap();
    let ring = KeyRing::new(ca, KeyRingConfig::default(), t0()).unwrap();
    let shown = format!("{ring:?} {:?} {:?}", ring.ca(), ring.current());
    assert!(shown.contains("[redacted]"));
    for line in ext.key_pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!shown.contains(line));
    }
}

#[test]
fn concurrent_rotation_issues_exactly_one_leaf() {
    let ring = ring(SigningAlgorithm::Es256);
    let first = ring.current();
    let later = first.not_after() - ring.config().rotate_when_remaining + Duration::from_secs(1);
    let rotated: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| usize::from(ring.rotate_if_due(later).unwrap())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(rotated, 1);
    assert!(ring.previous().unwrap().same_as(&first));
}

#[test]
fn key_ring_and_minter_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<KeyRing>();
    assert_send_sync::<TokenMinter>();
    assert_send_sync::<SigningLeaf>();
}
