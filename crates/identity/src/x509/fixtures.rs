//! Test-only X.509-SVID fixture generator: every defect the verifier rejects has a function of
//! the same name here that mints it with rcgen, so no opaque DER blobs are checked in.
//!
//! Self-contained on purpose (rcgen, `rustls-pki-types` and `std` only, nothing from this
//! crate): benches and other test crates include it with `#[path = ".../fixtures.rs"] mod
//! fixtures;`. All certificates are valid from [`NOT_BEFORE_SECS`] to [`NOT_AFTER_SECS`] unless
//! the defect is about time; tests verify at [`now`], which lies inside that window, so they do
//! not depend on the wall clock.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "shared by the unit tests, the benches and other test crates; each uses a subset"
)]
#![allow(
    clippy::expect_used,
    reason = "test-only code: a fixture that cannot be minted is a bug in the fixture"
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
    SignatureAlgorithm,
};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

/// The trust domain every good fixture lives in.
pub(crate) const TD: &str = "example.org";
/// A second trust domain, for "wrong bundle" cases.
pub(crate) const OTHER_TD: &str = "other.example";
/// The SPIFFE ID of every good leaf.
pub(crate) const LEAF_ID: &str = "spiffe://example.org/ns/prod/sa/web";

/// 2026-01-01T00:00:00Z: notBefore of every fixture.
pub(crate) const NOT_BEFORE_SECS: u64 = 1_767_225_600;
/// 2027-01-01T00:00:00Z: notAfter of every fixture.
pub(crate) const NOT_AFTER_SECS: u64 = 1_798_761_600;
/// 2026-06-01T00:00:00Z: the verification time tests use.
pub(crate) const NOW_SECS: u64 = 1_780_272_000;

/// The verification time tests use (inside every good fixture's validity window).
pub(crate) fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

/// A minted chain plus what a verifier needs to trust it.
#[derive(Debug)]
pub(crate) struct Fixture {
    /// The presented chain, leaf first, then intermediates.
    pub(crate) chain: Vec<CertificateDer<'static>>,
    /// The trust domain name the bundle below belongs to.
    pub(crate) bundle_td: &'static str,
    /// Root certificates of that bundle.
    pub(crate) roots: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8), for TLS tests.
    pub(crate) leaf_key: PrivatePkcs8KeyDer<'static>,
}

/// A certificate authority that can sign.
#[derive(Debug)]
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
}

impl Ca {
    /// A self-signed P-256 root for `td`, subject CN `"{td} root"`.
    pub(crate) fn root(td: &str) -> Self {
        Self::root_named(td, "root")
    }

    /// A self-signed P-256 root for `td`, subject CN `"{td} {cn}"`.
    pub(crate) fn root_named(td: &str, cn: &str) -> Self {
        Self::self_signed(ca_params(td, cn), key(&rcgen::PKCS_ECDSA_P256_SHA256))
    }

    /// A self-signed root from explicit parameters and key.
    pub(crate) fn self_signed(params: CertificateParams, key: KeyPair) -> Self {
        let cert = params
            .self_signed(&key)
            .expect("self-sign root")
            .der()
            .clone();
        Self {
            issuer: Issuer::new(params, key),
            cert,
        }
    }

    /// A P-256 intermediate for `td` signed by `self`.
    pub(crate) fn intermediate(&self, td: &str) -> Self {
        self.sub_ca(
            ca_params(td, "intermediate"),
            key(&rcgen::PKCS_ECDSA_P256_SHA256),
        )
    }

    /// A sub-CA from explicit parameters and key, signed by `self`.
    pub(crate) fn sub_ca(&self, params: CertificateParams, key: KeyPair) -> Self {
        let cert = self.sign(&params, &key);
        Self {
            issuer: Issuer::new(params, key),
            cert,
        }
    }

    /// Signs a certificate for `public_key` with `params`.
    pub(crate) fn sign(
        &self,
        params: &CertificateParams,
        public_key: &impl PublicKeyData,
    ) -> CertificateDer<'static> {
        params
            .signed_by(public_key, &self.issuer)
            .expect("sign certificate")
            .der()
            .clone()
    }

    /// This CA's certificate.
    pub(crate) fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// A good P-256 leaf for `id`, returned with its PKCS#8 key.
    pub(crate) fn leaf(&self, id: &str) -> (CertificateDer<'static>, PrivatePkcs8KeyDer<'static>) {
        let key = key(&rcgen::PKCS_ECDSA_P256_SHA256);
        let cert = self.sign(&leaf_params(id), &key);
        (cert, pkcs8(&key))
    }
}

/// A fresh key pair for `alg`.
pub(crate) fn key(alg: &'static SignatureAlgorithm) -> KeyPair {
    KeyPair::generate_for(alg).expect("generate key")
}

fn pkcs8(key: &KeyPair) -> PrivatePkcs8KeyDer<'static> {
    PrivatePkcs8KeyDer::from(key.serialize_der())
}

fn validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2026, 1, 1);
    params.not_after = rcgen::date_time_ymd(2027, 1, 1);
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().expect("ia5 uri"))
}

fn td_id(td: &str) -> String {
    format!("spiffe://{td}")
}

/// Parameters of a well-formed SPIFFE signing certificate: cA, keyCertSign + cRLSign, the trust
/// domain's ID as URI SAN.
pub(crate) fn ca_params(td: &str, cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    validity(&mut p);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{td} {cn}"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.subject_alt_names = vec![uri(&td_id(td))];
    p
}

/// Parameters of a well-formed X.509-SVID leaf for `id` (shaped like SPIRE's): cA false,
/// digitalSignature + keyEncipherment + keyAgreement, EKU serverAuth + clientAuth, one URI SAN.
pub(crate) fn leaf_params(id: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    validity(&mut p);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "SPIFFE");
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyAgreement,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.subject_alt_names = vec![
        uri(id),
        SanType::DnsName("web.example.org".try_into().expect("dns")),
    ];
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0x02, 0xab]));
    p
}

/// Root → leaf, with the leaf minted from `params` for `leaf_key`.
fn direct(params: &CertificateParams, leaf_key: &KeyPair) -> Fixture {
    let root = Ca::root(TD);
    let leaf = root.sign(params, leaf_key);
    Fixture {
        chain: vec![leaf],
        bundle_td: TD,
        roots: vec![root.cert().clone()],
        leaf_key: pkcs8(leaf_key),
    }
}

/// Root → leaf with a P-256 leaf minted from `params`.
fn direct_p256(params: &CertificateParams) -> Fixture {
    direct(params, &key(&rcgen::PKCS_ECDSA_P256_SHA256))
}

/// Root → intermediate (from `inter_params`) → good leaf.
pub(crate) fn via_intermediate(inter_params: CertificateParams) -> Fixture {
    let root = Ca::root(TD);
    let inter = root.sub_ca(inter_params, key(&rcgen::PKCS_ECDSA_P256_SHA256));
    let leaf_key = key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let leaf = inter.sign(&leaf_params(LEAF_ID), &leaf_key);
    Fixture {
        chain: vec![leaf, inter.cert().clone()],
        bundle_td: TD,
        roots: vec![root.cert().clone()],
        leaf_key: pkcs8(&leaf_key),
    }
}

// === good chains ===

/// P-256 root → P-256 leaf.
pub(crate) fn good_p256() -> Fixture {
    direct_p256(&leaf_params(LEAF_ID))
}

/// P-256 root → P-384 leaf.
pub(crate) fn good_p384() -> Fixture {
    direct(&leaf_params(LEAF_ID), &key(&rcgen::PKCS_ECDSA_P384_SHA384))
}

/// P-256 root → Ed25519 leaf.
pub(crate) fn good_ed25519() -> Fixture {
    direct(&leaf_params(LEAF_ID), &key(&rcgen::PKCS_ED25519))
}

/// P-256 root → RSA-2048 leaf.
pub(crate) fn good_rsa2048() -> Fixture {
    let k = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .expect("rsa key");
    direct(&leaf_params(LEAF_ID), &k)
}

/// RSA-2048 root (PKCS#1 SHA-256 signatures) → P-256 leaf: exercises RSA chain signatures.
pub(crate) fn good_rsa_root() -> Fixture {
    let rk = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .expect("rsa key");
    let root = Ca::self_signed(ca_params(TD, "rsa root"), rk);
    let (leaf, leaf_key) = root.leaf(LEAF_ID);
    Fixture {
        chain: vec![leaf],
        bundle_td: TD,
        roots: vec![root.cert().clone()],
        leaf_key,
    }
}

/// P-384 root → P-256 leaf: exercises ECDSA P-384 SHA-384 chain signatures.
pub(crate) fn good_p384_root() -> Fixture {
    let root = Ca::self_signed(
        ca_params(TD, "p384 root"),
        key(&rcgen::PKCS_ECDSA_P384_SHA384),
    );
    let (leaf, leaf_key) = root.leaf(LEAF_ID);
    Fixture {
        chain: vec![leaf],
        bundle_td: TD,
        roots: vec![root.cert().clone()],
        leaf_key,
    }
}

/// Root → intermediate → leaf, all well-formed.
pub(crate) fn good_with_intermediate() -> Fixture {
    via_intermediate(ca_params(TD, "intermediate"))
}

/// A leaf without any EKU extension (allowed: the EKU is a SHOULD).
pub(crate) fn leaf_no_eku() -> Fixture {
    let mut p = leaf_params(LEAF_ID);
    p.extended_key_usages.clear();
    direct_p256(&p)
}

/// A good leaf for an arbitrary SPIFFE ID, minted under its own root for `td`.
pub(crate) fn good_for(td: &'static str, id: &str) -> Fixture {
    let root = Ca::root(td);
    let (leaf, leaf_key) = root.leaf(id);
    Fixture {
        chain: vec![leaf],
        bundle_td: td,
        roots: vec![root.cert().clone()],
        leaf_key,
    }
}

// === leaf defects ===

/// Leaf with basicConstraints cA = true.
pub(crate) fn leaf_ca_true() -> Fixture {
    let mut p = leaf_params(LEAF_ID);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    direct_p256(&p)
}

/// Leaf without a basicConstraints extension.
pub(crate) fn leaf_no_basic_constraints() -> Fixture {
    let mut p = leaf_params(LEAF_ID);
    p.is_ca = IsCa::NoCa;
    direct_p256(&p)
}

/// Leaf whose keyUsage includes keyCertSign.
pub(crate) fn leaf_key_cert_sign() -> Fixture {
    let mut p = leaf_params(LEAF_ID);
    p.key_usages.push(KeyUsagePurpose::KeyCertSign);
    direct_p256(&p)
}

/// Leaf whose keyUsage includes cRLSign.
pub(crate) fn leaf_crl_sign() -> Fixture {
    let mut p = leaf_params(LEAF_ID);
    p.key_usages.push(KeyUsagePurpose::CrlSign);
    direct_p256(&p)
}

/// Leaf whose keyUsage lacks digitalSignature.
pub(crate) fn leaf_no_digital_signature() -> Fixture {
    let mut p = leaf_params(LEAF_ID);
    p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    direct_p256(&p)
}

/// Leaf without a keyUsage extension.
pub(crate) fn leaf_no_key_usage() -> Fixture {
    let mut p = leaf_params(LEAF_ID);
    p.key_usages.clear();
    direct_p256(&p)
}

/// Leaf with a second keyUsage extension (digitalSignature only) after rcgen's own.
pub(crate) fn leaf_duplicate_key_usage() -> Fixture {
    let mut p = leaf_params(LEAF_ID);
    // KeyUsage ::= BIT STRING; 0x80 = digitalSignature, 7 unused bits.
    let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 15], tlv(0x03, &[0x07, 0x80]));
    ext.set_criticality(true);
    p.custom_extensions.push(ext);
    direct_p256(&p)
}

/// Leaf with two URI SANs; the second is not even a SPIFFE ID.
pub(crate) fn leaf_two_uri_sans() -> Fixture {
    let mut p = leaf_params(LEAF_ID);
    p.subject_alt_names.push(uri("https://example.org/other"));
    direct_p256(&p)
}

/// Leaf with only a DNS SAN.
pub(crate) fn leaf_no_uri_san() -> Fixture {
    let mut p = leaf_params(LEAF_ID);
    p.subject_alt_names = vec![SanType::DnsName("web.example.org".try_into().expect("dns"))];
    direct_p256(&p)
}

/// Leaf whose URI SAN is the trust domain ID (`spiffe://example.org`, no path).
pub(crate) fn leaf_root_path() -> Fixture {
    direct_p256(&leaf_params(&td_id(TD)))
}

/// Leaf whose URI SAN has an `https` scheme.
pub(crate) fn leaf_not_spiffe_scheme() -> Fixture {
    direct_p256(&leaf_params("https://example.org/ns/prod/sa/web"))
}

/// Leaf whose URI SAN has an upper-case trust domain.
pub(crate) fn leaf_uppercase_td() -> Fixture {
    direct_p256(&leaf_params("spiffe://Example.org/ns/prod/sa/web"))
}

/// Leaf whose EKU has serverAuth only (the SPIFFE profile wants both or none).
pub(crate) fn leaf_eku_server_only() -> Fixture {
    let mut p = leaf_params(LEAF_ID);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    direct_p256(&p)
}

/// Root → leaf whose key has no private half (see [`RawPublicKey`]).
fn leaf_with_raw_key(public_key: &RawPublicKey) -> Fixture {
    let root = Ca::root(TD);
    Fixture {
        chain: vec![root.sign(&leaf_params(LEAF_ID), public_key)],
        bundle_td: TD,
        roots: vec![root.cert().clone()],
        // Unrelated key: the certificate's own key has no private half.
        leaf_key: pkcs8(&key(&rcgen::PKCS_ECDSA_P256_SHA256)),
    }
}

/// Leaf with a 1024-bit RSA key.
pub(crate) fn rsa_1024_leaf() -> Fixture {
    leaf_with_raw_key(&RawPublicKey::rsa(1024))
}

/// Leaf with an 8200-bit RSA key (above the 8192-bit maximum).
pub(crate) fn leaf_rsa_too_large() -> Fixture {
    leaf_with_raw_key(&RawPublicKey::rsa(8200))
}

/// Leaf with an ML-DSA-44 key (a key type outside the allowed set).
pub(crate) fn leaf_unsupported_key_algorithm() -> Fixture {
    leaf_with_raw_key(&RawPublicKey::opaque(&rcgen::PKCS_ML_DSA_44, 1312))
}

/// Leaf with a P-521 key (a curve outside the allowed set).
pub(crate) fn leaf_p521_key() -> Fixture {
    direct(&leaf_params(LEAF_ID), &key(&rcgen::PKCS_ECDSA_P521_SHA512))
}

/// A good chain whose leaf signature has been corrupted after signing.
pub(crate) fn leaf_bad_signature() -> Fixture {
    let mut fx = good_p256();
    let mut der = fx.chain[0].to_vec();
    // The signature BIT STRING is the last element; an ECDSA signature ends in the s INTEGER, so
    // flipping the final byte keeps the DER well-formed and only breaks the math.
    let last = der.len() - 1;
    der[last] ^= 0x01;
    fx.chain[0] = CertificateDer::from(der);
    fx
}

/// Root → P-521 intermediate → leaf: the leaf's signature (ECDSA P-521 SHA-512) uses an
/// algorithm outside the allowed list. The P-521 key sits on an intermediate so the bundle
/// itself only holds a P-256 root.
pub(crate) fn signed_with_p521_intermediate() -> Fixture {
    let root = Ca::root(TD);
    let inter = root.sub_ca(
        ca_params(TD, "p521 intermediate"),
        key(&rcgen::PKCS_ECDSA_P521_SHA512),
    );
    let (leaf, leaf_key) = inter.leaf(LEAF_ID);
    Fixture {
        chain: vec![leaf, inter.cert().clone()],
        bundle_td: TD,
        roots: vec![root.cert().clone()],
        leaf_key,
    }
}

/// Root → intermediate with a DNS name constraint permitting `example.org` → leaf whose DNS
/// SAN `web.example.org` is inside it (non-URI constraints are enforced, not refused).
pub(crate) fn dns_name_constraints() -> Fixture {
    let mut p = ca_params(TD, "intermediate");
    p.name_constraints = Some(rcgen::NameConstraints {
        permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName(TD.to_owned())],
        excluded_subtrees: Vec::new(),
    });
    via_intermediate(p)
}

/// As [`dns_name_constraints`], but the constraint permits only `other.test`, which the leaf's
/// DNS SAN violates.
pub(crate) fn dns_name_constraints_violated() -> Fixture {
    let mut p = ca_params(TD, "intermediate");
    p.name_constraints = Some(rcgen::NameConstraints {
        permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("other.test".to_owned())],
        excluded_subtrees: Vec::new(),
    });
    via_intermediate(p)
}

// === intermediate defects ===

/// An intermediate without cA (basicConstraints cA = false) that signs the leaf.
pub(crate) fn intermediate_not_ca() -> Fixture {
    let mut p = ca_params(TD, "intermediate");
    p.is_ca = IsCa::ExplicitNoCa;
    via_intermediate(p)
}

/// An intermediate whose keyUsage lacks keyCertSign.
pub(crate) fn intermediate_no_key_cert_sign() -> Fixture {
    let mut p = ca_params(TD, "intermediate");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
    via_intermediate(p)
}

/// An intermediate without a keyUsage extension.
pub(crate) fn intermediate_no_key_usage() -> Fixture {
    let mut p = ca_params(TD, "intermediate");
    p.key_usages.clear();
    via_intermediate(p)
}

/// An intermediate whose validity ended before [`now`].
pub(crate) fn intermediate_expired() -> Fixture {
    let mut p = ca_params(TD, "intermediate");
    p.not_after = rcgen::date_time_ymd(2026, 3, 1);
    via_intermediate(p)
}

/// An intermediate whose validity starts after [`now`].
pub(crate) fn intermediate_not_yet_valid() -> Fixture {
    let mut p = ca_params(TD, "intermediate");
    p.not_before = rcgen::date_time_ymd(2026, 9, 1);
    via_intermediate(p)
}

/// Leaf with an RSA key of exactly `bits` bits (2047 is one short of the minimum).
pub(crate) fn rsa_leaf_bits(bits: usize) -> Fixture {
    leaf_with_raw_key(&RawPublicKey::rsa_exact_bits(bits))
}

// === RSA issuers, minted with OpenSSL (aws-lc-rs and rcgen refuse to sign with a key below
// 2048 bits); `testdata/README.md` has the script. Valid 2026-01-01 to 2027-01-01, P-256 leaves
// for LEAF_ID. ===

fn der(bytes: &'static [u8]) -> CertificateDer<'static> {
    CertificateDer::from(bytes)
}

/// RSA-`bits` root (2047 or 2048) → P-256 leaf.
pub(crate) fn openssl_rsa_root(bits: usize) -> Fixture {
    let (root, leaf): (&'static [u8], &'static [u8]) = match bits {
        2047 => (
            include_bytes!("testdata/rsa2047_root.der"),
            include_bytes!("testdata/rsa2047_root_leaf.der"),
        ),
        _ => (
            include_bytes!("testdata/rsa2048_root.der"),
            include_bytes!("testdata/rsa2048_root_leaf.der"),
        ),
    };
    Fixture {
        chain: vec![der(leaf)],
        bundle_td: TD,
        roots: vec![der(root)],
        leaf_key: pkcs8(&key(&rcgen::PKCS_ECDSA_P256_SHA256)),
    }
}

/// P-256 root → RSA-`bits` intermediate (2047 or 2048) → P-256 leaf.
pub(crate) fn openssl_rsa_intermediate(bits: usize) -> Fixture {
    let (root, inter, leaf): (&'static [u8], &'static [u8], &'static [u8]) = match bits {
        2047 => (
            include_bytes!("testdata/p256_root_for_2047.der"),
            include_bytes!("testdata/rsa2047_inter.der"),
            include_bytes!("testdata/rsa2047_inter_leaf.der"),
        ),
        _ => (
            include_bytes!("testdata/p256_root_for_2048.der"),
            include_bytes!("testdata/rsa2048_inter.der"),
            include_bytes!("testdata/rsa2048_inter_leaf.der"),
        ),
    };
    Fixture {
        chain: vec![der(leaf), der(inter)],
        bundle_td: TD,
        roots: vec![der(root)],
        leaf_key: pkcs8(&key(&rcgen::PKCS_ECDSA_P256_SHA256)),
    }
}

/// The DER of a critical nameConstraints extension permitting only URIs in `host`.
fn uri_name_constraints_ext(host: &str) -> CustomExtension {
    // NameConstraints ::= SEQUENCE { permittedSubtrees [0] GeneralSubtrees }
    // GeneralSubtree ::= SEQUENCE { base GeneralName }; uniformResourceIdentifier is [6] IA5String.
    let subtree = tlv(0x30, &tlv(0x86, host.as_bytes()));
    let content = tlv(0x30, &tlv(0xa0, &subtree));
    let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 30], content);
    ext.set_criticality(true);
    ext
}

/// An intermediate with a URI name constraint (`example.org`).
pub(crate) fn uri_name_constraints() -> Fixture {
    let mut p = ca_params(TD, "intermediate");
    p.custom_extensions.push(uri_name_constraints_ext(TD));
    via_intermediate(p)
}

/// A root (trust anchor) with a URI name constraint (`example.org`).
pub(crate) fn uri_name_constraints_on_root() -> Fixture {
    let mut p = ca_params(TD, "root");
    p.custom_extensions.push(uri_name_constraints_ext(TD));
    let root = Ca::self_signed(p, key(&rcgen::PKCS_ECDSA_P256_SHA256));
    let (leaf, leaf_key) = root.leaf(LEAF_ID);
    Fixture {
        chain: vec![leaf],
        bundle_td: TD,
        roots: vec![root.cert().clone()],
        leaf_key,
    }
}

/// Root → `n` intermediates → leaf (chain of `n + 1` certificates).
pub(crate) fn chain_with_intermediates(n: usize) -> Fixture {
    let root = Ca::root(TD);
    let mut cas: Vec<Ca> = Vec::with_capacity(n);
    for i in 0..n {
        let parent = cas.last().unwrap_or(&root);
        let ca = parent.sub_ca(
            ca_params(TD, &format!("intermediate {i}")),
            key(&rcgen::PKCS_ECDSA_P256_SHA256),
        );
        cas.push(ca);
    }
    let (leaf, leaf_key) = cas.last().unwrap_or(&root).leaf(LEAF_ID);
    let mut chain = vec![leaf];
    chain.extend(cas.iter().rev().map(|c| c.cert().clone()));
    Fixture {
        chain,
        bundle_td: TD,
        roots: vec![root.cert().clone()],
        leaf_key,
    }
}

/// Nine certificates (leaf + 8 intermediates): one over the default cap of 8.
pub(crate) fn chain_too_long() -> Fixture {
    chain_with_intermediates(8)
}

// === time defects ===

/// A leaf whose validity ended before [`now`].
pub(crate) fn expired() -> Fixture {
    expired_signed_by(&Ca::root(TD))
}

/// A leaf of `ca` whose validity ended before [`now`] (for handshakes with a shared root).
pub(crate) fn expired_signed_by(ca: &Ca) -> Fixture {
    let mut p = leaf_params(LEAF_ID);
    p.not_after = rcgen::date_time_ymd(2026, 3, 1);
    let leaf_key = key(&rcgen::PKCS_ECDSA_P256_SHA256);
    Fixture {
        chain: vec![ca.sign(&p, &leaf_key)],
        bundle_td: TD,
        roots: vec![ca.cert().clone()],
        leaf_key: pkcs8(&leaf_key),
    }
}

/// A leaf whose validity starts after [`now`].
pub(crate) fn not_yet_valid() -> Fixture {
    let mut p = leaf_params(LEAF_ID);
    p.not_before = rcgen::date_time_ymd(2026, 9, 1);
    direct_p256(&p)
}

// === trust defects ===

/// A good leaf of `example.org`, but the only bundle is for `other.example` (and holds the
/// very root that signed the leaf: the verifier must still refuse to cross trust domains).
pub(crate) fn wrong_trust_domain_bundle() -> Fixture {
    let mut fx = good_p256();
    fx.bundle_td = OTHER_TD;
    fx
}

/// A leaf signed by a root (same trust domain, different subject name) that is not in the
/// bundle: no issuer is found.
pub(crate) fn signed_by_other_ca() -> Fixture {
    let trusted = Ca::root(TD);
    let other = Ca::root_named(TD, "rogue root");
    let (leaf, leaf_key) = other.leaf(LEAF_ID);
    Fixture {
        chain: vec![leaf],
        bundle_td: TD,
        roots: vec![trusted.cert().clone()],
        leaf_key,
    }
}

/// A leaf signed by an impostor root that copies the trusted root's subject name: the name
/// matches, the signature does not.
pub(crate) fn signed_by_same_name_other_ca() -> Fixture {
    let trusted = Ca::root(TD);
    let other = Ca::root(TD);
    let (leaf, leaf_key) = other.leaf(LEAF_ID);
    Fixture {
        chain: vec![leaf],
        bundle_td: TD,
        roots: vec![trusted.cert().clone()],
        leaf_key,
    }
}

// === DER helpers ===

/// One DER TLV with a definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(u8::try_from(len).expect("short length"));
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | u8::try_from(bytes.len() - skip).expect("length of length"));
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A public key with no private half, for key-policy tests: the certificate can be signed by
/// its issuer, but nobody can use the key.
#[derive(Debug)]
pub(crate) struct RawPublicKey {
    der: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

impl RawPublicKey {
    /// An RSA key with a `bits`-bit modulus (top bit set, odd) and exponent 65537.
    pub(crate) fn rsa(bits: usize) -> Self {
        let mut modulus = vec![0x5a_u8; bits / 8];
        modulus[0] = 0xc5;
        if let Some(last) = modulus.last_mut() {
            *last |= 1;
        }
        // INTEGER is signed: a leading zero keeps the modulus positive.
        let mut n = vec![0];
        n.extend_from_slice(&modulus);
        let mut body = tlv(0x02, &n);
        body.extend_from_slice(&tlv(0x02, &[0x01, 0x00, 0x01]));
        Self {
            der: tlv(0x30, &body),
            alg: &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// An RSA key whose modulus has exactly `bits` bits (top bit set, odd), exponent 65537.
    pub(crate) fn rsa_exact_bits(bits: usize) -> Self {
        let mut modulus = vec![0x5a_u8; bits.div_ceil(8)];
        let top = (bits - 1) % 8;
        modulus[0] = (1 << top) | (0x5a & ((1u8 << top) - 1));
        if let Some(last) = modulus.last_mut() {
            *last |= 1;
        }
        // DER INTEGERs are minimal: a leading zero only when the top bit would read as a sign.
        let mut n = if modulus[0] & 0x80 == 0 {
            vec![]
        } else {
            vec![0]
        };
        n.extend_from_slice(&modulus);
        let mut body = tlv(0x02, &n);
        body.extend_from_slice(&tlv(0x02, &[0x01, 0x00, 0x01]));
        Self {
            der: tlv(0x30, &body),
            alg: &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// Arbitrary key bytes under `alg`'s SubjectPublicKeyInfo algorithm identifier.
    pub(crate) fn opaque(alg: &'static SignatureAlgorithm, len: usize) -> Self {
        Self {
            der: vec![0x42; len],
            alg,
        }
    }
}

impl PublicKeyData for RawPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.der
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}
