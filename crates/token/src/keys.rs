//! Signing keys: the signing CA, the short-lived signing leaves it issues, and the key ring that
//! rotates them.
//!
//! Registries trust the CA (distribution's `rootcertbundle`) and verify the token's `x5c` chain
//! with Go's `x509.Verify` at request time. So a leaf can be replaced at any moment without
//! touching the registry, as long as every leaf stays valid until the last token it signed has
//! expired plus the registry's 60 s leeway. [`KeyRingConfig::validate`] makes that hold for
//! every accepted configuration, and [`KeyRing::rotate_if_due`] keeps it holding over time.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyUsagePurpose,
    PublicKeyData, SerialNumber, SignatureAlgorithm, SigningKey,
};
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED448, OID_SIG_ED25519,
};
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::Zeroizing;

use crate::error::{KeyError, PemSource, RotationRule};
use crate::kid::{PublicJwk, libtrust_key_id, strip_leading_zeros};
use crate::mint::{MIN_TOKEN_TTL, REGISTRY_LEEWAY};
use crate::profile::TokenProfile;

/// Default lifetime of a signing leaf. With the default rotation at half-life, a leaf signs
/// tokens for 30 minutes and then stays valid (as the previous leaf) for 30 more.
pub const DEFAULT_LEAF_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// Longest accepted leaf lifetime: leaves are meant to be short-lived.
pub const MAX_LEAF_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Default upper bound of token lifetimes the key ring is sized for.
pub const DEFAULT_MAX_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// How far a leaf's `notBefore` is set into the past, for registries whose clock is behind.
pub const LEAF_BACKDATE: Duration = Duration::from_secs(60);
/// Extra life a leaf must have beyond the longest token plus the registry leeway when it is
/// still used for signing (covers rotation running a little late).
pub const ROTATION_MARGIN: Duration = Duration::from_secs(60);
/// Largest PEM input (certificate chain or private key), in bytes.
pub const MAX_PEM_LEN: u64 = 64 * 1024;
/// Most certificates in the CA chain file.
pub const MAX_CA_CERTS: usize = 8;
/// Smallest accepted RSA modulus, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Longest leaf subject common name (X.520 `ub-common-name`).
pub const MAX_LEAF_COMMON_NAME_LEN: usize = 64;
/// Default subject common name of signing leaves.
pub const DEFAULT_LEAF_COMMON_NAME: &str = "svid-broker registry token signer";

/// How far a generated CA's `notBefore` is set into the past.
const GENERATED_CA_BACKDATE: Duration = Duration::from_secs(5 * 60);

// === SigningAlgorithm ===

/// The JWS algorithm of the signing leaves. Only what distribution 2.8 accepts and what we
/// need: EdDSA, PS* and HS* are rejected by 2.8 and not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// ECDSA P-256 with SHA-256, signature as fixed-length `r || s` (64 bytes).
    #[default]
    Es256,
    /// ECDSA P-384 with SHA-384, signature as fixed-length `r || s` (96 bytes).
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and a 2048-bit key.
    Rs256,
}

impl SigningAlgorithm {
    /// The JWS `alg` value.
    pub const fn jws_name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Rs256 => "RS256",
        }
    }

    /// Parses a JWS `alg` name; anything but ES256, ES384 and RS256 is refused.
    ///
    /// # Errors
    /// [`KeyError::UnsupportedAlgorithm`] with the (truncated) name.
    pub fn from_jws_name(name: &str) -> Result<Self, KeyError> {
        match name {
            "ES256" => Ok(Self::Es256),
            "ES384" => Ok(Self::Es384),
            "RS256" => Ok(Self::Rs256),
            other => Err(KeyError::UnsupportedAlgorithm {
                name: other.chars().take(32).collect(),
            }),
        }
    }

    fn rcgen(self) -> &'static SignatureAlgorithm {
        match self {
            Self::Es256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::Es384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Rs256 => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jws_name())
    }
}

impl std::str::FromStr for SigningAlgorithm {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_jws_name(s)
    }
}

// === CA key ===

/// The CA's private key, held by aws-lc-rs (which wipes it when freed). Signs certificates, so
/// ECDSA signatures are DER (ASN.1), unlike the JWS `r || s` of the leaves.
enum CaKey {
    Ecdsa {
        pair: EcdsaKeyPair,
        algorithm: SigningAlgorithm,
    },
    Rsa(RsaKeyPair),
}

impl CaKey {
    fn generate(algorithm: SigningAlgorithm) -> Result<Self, KeyError> {
        let failed = |_| KeyError::KeyGeneration { algorithm };
        Ok(match algorithm {
            SigningAlgorithm::Es256 | SigningAlgorithm::Es384 => Self::Ecdsa {
                pair: EcdsaKeyPair::generate(ca_ecdsa_alg(algorithm)).map_err(failed)?,
                algorithm,
            },
            SigningAlgorithm::Rs256 => {
                Self::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?)
            }
        })
    }

    fn from_pkcs8(algorithm: SigningAlgorithm, der: &[u8]) -> Result<Self, KeyError> {
        let malformed = |_| KeyError::MalformedPrivateKey;
        Ok(match algorithm {
            SigningAlgorithm::Es256 | SigningAlgorithm::Es384 => Self::Ecdsa {
                pair: EcdsaKeyPair::from_pkcs8(ca_ecdsa_alg(algorithm), der).map_err(malformed)?,
                algorithm,
            },
            SigningAlgorithm::Rs256 => Self::Rsa(RsaKeyPair::from_pkcs8(der).map_err(malformed)?),
        })
    }

    fn algorithm(&self) -> SigningAlgorithm {
        match self {
            Self::Ecdsa { algorithm, .. } => *algorithm,
            Self::Rsa(_) => SigningAlgorithm::Rs256,
        }
    }
}

fn ca_ecdsa_alg(algorithm: SigningAlgorithm) -> &'static EcdsaSigningAlgorithm {
    if algorithm == SigningAlgorithm::Es384 {
        &ECDSA_P384_SHA384_ASN1_SIGNING
    } else {
        &ECDSA_P256_SHA256_ASN1_SIGNING
    }
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            Self::Ecdsa { pair, .. } => pair.public_key().as_ref(),
            Self::Rsa(pair) => pair.public_key().as_ref(),
        }
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        CaKey::algorithm(self).rcgen()
    }
}

impl SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let rng = SystemRandom::new();
        match self {
            Self::Ecdsa { pair, .. } => pair
                .sign(&rng, msg)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| rcgen::Error::RingUnspecified),
            Self::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| rcgen::Error::RingUnspecified)?;
                Ok(sig)
            }
        }
    }
}

// === SigningCa ===

/// The CA that issues signing leaves. Registries trust it (or the top of its chain) through
/// `rootcertbundle`; it never signs tokens itself.
pub struct SigningCa {
    key: CaKey,
    /// The signing CA first, then its issuers; the last one is what registries trust.
    certs: Vec<CertificateDer<'static>>,
    /// The earliest `notAfter` of the chain: no leaf may outlive it.
    not_after: SystemTime,
}

impl SigningCa {
    /// Generates a self-signed CA in memory, for development. The key exists only in this
    /// process; registries need only [`Self::ca_bundle_pem`].
    ///
    /// # Errors
    /// [`KeyError::InvalidCommonName`], [`KeyError::TimeOutOfRange`], or a key or certificate
    /// generation failure.
    pub fn generate(
        algorithm: SigningAlgorithm,
        common_name: &str,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<Self, KeyError> {
        check_common_name(common_name)?;
        let now = whole_seconds(now)?;
        let not_before = now
            .checked_sub(GENERATED_CA_BACKDATE)
            .ok_or(KeyError::TimeOutOfRange)?;
        let not_after = now.checked_add(lifetime).ok_or(KeyError::TimeOutOfRange)?;
        unix_secs(not_before)?;
        let key = CaKey::generate(algorithm)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_dn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(random_serial(algorithm)?);
        let cert = params.self_signed(&key).map_err(KeyError::Certificate)?;
        Ok(Self {
            key,
            certs: vec![cert.der().clone()],
            not_after,
        })
    }

    /// Loads the CA from PEM text.
    ///
    /// `cert_pem` holds the signing CA certificate first, then optionally the certificates
    /// above it; the last one is the trust anchor for registries, and the ones before it travel
    /// in every token's `x5c`. `key_pem` holds the signing CA's unencrypted PKCS#8 key
    /// (`PRIVATE KEY`). The signing CA must be P-256, P-384 or RSA >= 2048 bits, have
    /// basicConstraints cA=true, allow keyCertSign, and match the key; no certificate in the
    /// chain may have an Ed25519/Ed448 key; all must be valid at `now`.
    ///
    /// # Errors
    /// A [`KeyError`] naming the rule that failed.
    pub fn from_pem(cert_pem: &str, key_pem: &str, now: SystemTime) -> Result<Self, KeyError> {
        check_pem_len(PemSource::Certificate, cert_pem.len())?;
        check_pem_len(PemSource::PrivateKey, key_pem.len())?;
        let certs = parse_cert_chain(cert_pem)?;
        let now_unix = i64::try_from(unix_secs(now)?).map_err(|_| KeyError::TimeOutOfRange)?;
        let mut not_after = i64::MAX;
        let mut algorithm = SigningAlgorithm::Es256;
        let mut signing_public_key = Vec::new();
        for (index, der) in certs.iter().enumerate() {
            let (_, cert) = x509_parser::parse_x509_certificate(der)
                .map_err(|_| KeyError::MalformedCertificate { index })?;
            let spki = cert.public_key();
            if spki.algorithm.algorithm == OID_SIG_ED25519
                || spki.algorithm.algorithm == OID_SIG_ED448
            {
                return Err(KeyError::EdwardsCurveRefused { index });
            }
            let validity = cert.validity();
            let (nb, na) = (
                validity.not_before.timestamp(),
                validity.not_after.timestamp(),
            );
            if now_unix < nb || now_unix > na {
                return Err(KeyError::CertificateNotValidNow {
                    index,
                    not_before: nb,
                    not_after: na,
                });
            }
            not_after = not_after.min(na);
            if index == 0 {
                algorithm = ca_key_algorithm(spki)?;
                check_is_ca(&cert)?;
                signing_public_key = spki.subject_public_key.data.to_vec();
            }
        }
        let key_der = parse_private_key(key_pem)?;
        let key = CaKey::from_pkcs8(algorithm, &key_der)?;
        if key.der_bytes() != signing_public_key.as_slice() {
            return Err(KeyError::KeyMismatch);
        }
        let not_after = UNIX_EPOCH
            + Duration::from_secs(u64::try_from(not_after).map_err(|_| KeyError::TimeOutOfRange)?);
        Ok(Self {
            key,
            certs,
            not_after,
        })
    }

    /// Reads [`Self::from_pem`]'s inputs from files, refusing files over [`MAX_PEM_LEN`].
    ///
    /// # Errors
    /// [`KeyError::Io`], [`KeyError::PemTooLarge`], or any error of [`Self::from_pem`].
    pub fn from_pem_files(
        cert_path: &Path,
        key_path: &Path,
        now: SystemTime,
    ) -> Result<Self, KeyError> {
        let cert = read_pem_file(PemSource::Certificate, cert_path)?;
        let key = read_pem_file(PemSource::PrivateKey, key_path)?;
        Self::from_pem(&cert, &key, now)
    }

    /// The signing CA's certificate (the first of the chain).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certs[0]
    }

    /// The certificate registries trust: the last of the chain.
    pub fn trust_anchor(&self) -> &CertificateDer<'static> {
        // The constructors never build an empty chain.
        &self.certs[self.certs.len() - 1]
    }

    /// The CA key's algorithm (independent of the leaves' algorithm).
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.key.algorithm()
    }

    /// The earliest `notAfter` in the chain.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The trust anchor as PEM, for the registry's `auth.token.rootcertbundle`.
    pub fn ca_bundle_pem(&self) -> String {
        pem_block("CERTIFICATE", self.trust_anchor())
    }

    /// The certificates that follow the leaf in `x5c`: the chain without its trust anchor
    /// (empty for a self-signed signing CA).
    fn x5c_tail(&self) -> &[CertificateDer<'static>] {
        &self.certs[..self.certs.len() - 1]
    }

    fn issue_leaf(&self, config: &KeyRingConfig, now: SystemTime) -> Result<SigningLeaf, KeyError> {
        let algorithm = config.algorithm;
        let now = whole_seconds(now)?;
        let not_before = now
            .checked_sub(LEAF_BACKDATE)
            .ok_or(KeyError::TimeOutOfRange)?;
        let not_after = now
            .checked_add(config.leaf_lifetime)
            .ok_or(KeyError::TimeOutOfRange)?;
        unix_secs(not_before)?;
        let not_after_unix = unix_secs(not_after)?;
        if not_after > self.not_after {
            return Err(KeyError::CaExpiresTooSoon {
                leaf_not_after: not_after_unix,
                ca_not_after: unix_secs(self.not_after)?,
            });
        }
        let key = TokenKey::generate(algorithm)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_dn(&config.leaf_common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(random_serial(algorithm)?);
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_ca_cert_der(self.certificate(), &self.key)
            .map_err(KeyError::Certificate)?;
        let public = LeafPublicKey {
            der: key.public_der(),
            algorithm,
        };
        let cert = params
            .signed_by(&public, &issuer)
            .map_err(KeyError::Certificate)?;
        let cert = cert.der().clone();
        let mut x5c = Vec::with_capacity(1 + self.x5c_tail().len());
        x5c.push(STANDARD.encode(&cert));
        x5c.extend(self.x5c_tail().iter().map(|c| STANDARD.encode(c)));
        SigningLeaf::new(LeafParts {
            key,
            algorithm,
            cert,
            x5c,
            not_before,
            not_after,
            not_after_unix,
        })
    }
}

impl fmt::Debug for SigningCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningCa")
            .field("algorithm", &self.algorithm())
            .field("chain_len", &self.certs.len())
            .field("not_after", &self.not_after)
            .field("key", &"[redacted]")
            .finish()
    }
}

fn check_common_name(cn: &str) -> Result<(), KeyError> {
    if cn.is_empty() || cn.len() > MAX_LEAF_COMMON_NAME_LEN || cn.chars().any(char::is_control) {
        return Err(KeyError::InvalidCommonName {
            len: cn.len(),
            max: MAX_LEAF_COMMON_NAME_LEN,
        });
    }
    Ok(())
}

fn common_name_dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn check_pem_len(source_kind: PemSource, len: usize) -> Result<(), KeyError> {
    let len = u64::try_from(len).unwrap_or(u64::MAX);
    if len > MAX_PEM_LEN {
        return Err(KeyError::PemTooLarge {
            source_kind,
            len,
            max: MAX_PEM_LEN,
        });
    }
    Ok(())
}

fn read_pem_file(source_kind: PemSource, path: &Path) -> Result<Zeroizing<String>, KeyError> {
    use std::io::Read as _;
    let io = |source| KeyError::Io {
        source_kind,
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // Read one byte past the cap so an oversized file is detected without reading it all.
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_PEM_LEN + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    check_pem_len(source_kind, text.len())?;
    Ok(text)
}

fn parse_cert_chain(cert_pem: &str) -> Result<Vec<CertificateDer<'static>>, KeyError> {
    let blocks = pem::parse_many(cert_pem).map_err(|_| KeyError::MalformedPem {
        source_kind: PemSource::Certificate,
    })?;
    if blocks.is_empty() {
        return Err(KeyError::NoCaCertificate);
    }
    if blocks.len() > MAX_CA_CERTS {
        return Err(KeyError::TooManyCaCertificates {
            count: blocks.len(),
            max: MAX_CA_CERTS,
        });
    }
    blocks
        .into_iter()
        .enumerate()
        .map(|(index, block)| {
            if block.tag() == "CERTIFICATE" {
                Ok(CertificateDer::from(block.into_contents()))
            } else {
                Err(KeyError::UnexpectedCertificateLabel {
                    index,
                    label: block.tag().chars().take(64).collect(),
                })
            }
        })
        .collect()
}

/// Finds the one `PRIVATE KEY` block; every decoded block is wiped when this returns.
fn parse_private_key(key_pem: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let malformed = KeyError::MalformedPem {
        source_kind: PemSource::PrivateKey,
    };
    let blocks: Vec<(String, Zeroizing<Vec<u8>>)> = pem::parse_many(key_pem)
        .map_err(|_| malformed)?
        .into_iter()
        .map(|b| (b.tag().to_owned(), Zeroizing::new(b.into_contents())))
        .collect();
    let mut pkcs8 = blocks.iter().filter(|(tag, _)| tag == "PRIVATE KEY");
    match (pkcs8.next(), pkcs8.next()) {
        (Some((_, der)), None) => Ok(der.clone()),
        (Some(_), Some(_)) => Err(KeyError::MalformedPem {
            source_kind: PemSource::PrivateKey,
        }),
        (None, _) => match blocks.iter().find(|(tag, _)| tag.contains("PRIVATE KEY")) {
            Some((tag, _)) => Err(KeyError::UnsupportedKeyFormat {
                label: tag.chars().take(64).collect(),
            }),
            None => Err(KeyError::NoPrivateKey),
        },
    }
}

fn ca_key_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> Result<SigningAlgorithm, KeyError> {
    let oid = &spki.algorithm.algorithm;
    if *oid == OID_PKCS1_RSAENCRYPTION {
        let bits = spki
            .parsed()
            .map_err(|_| KeyError::MalformedCertificate { index: 0 })?
            .key_size();
        if bits < MIN_RSA_BITS {
            return Err(KeyError::RsaKeyTooSmall {
                bits,
                min: MIN_RSA_BITS,
            });
        }
        return Ok(SigningAlgorithm::Rs256);
    }
    if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        if curve.as_ref() == Some(&OID_EC_P256) {
            return Ok(SigningAlgorithm::Es256);
        }
        if curve.as_ref() == Some(&OID_NIST_EC_P384) {
            return Ok(SigningAlgorithm::Es384);
        }
    }
    Err(KeyError::UnsupportedKeyType { index: 0 })
}

fn check_is_ca(cert: &X509Certificate<'_>) -> Result<(), KeyError> {
    let is_ca = cert
        .basic_constraints()
        .map_err(|_| KeyError::MalformedCertificate { index: 0 })?
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(KeyError::NotCa);
    }
    let key_usage = cert
        .key_usage()
        .map_err(|_| KeyError::MalformedCertificate { index: 0 })?;
    if key_usage.is_some_and(|ku| !ku.value.key_cert_sign()) {
        return Err(KeyError::CaCannotSignCertificates);
    }
    Ok(())
}

// === signing leaves ===

/// A leaf's token-signing key, held by aws-lc-rs. ECDSA keys sign in the JWS `r || s` form.
enum TokenKey {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl TokenKey {
    fn generate(algorithm: SigningAlgorithm) -> Result<Self, KeyError> {
        let failed = |_| KeyError::KeyGeneration { algorithm };
        Ok(match algorithm {
            SigningAlgorithm::Es256 => Self::Ecdsa(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(failed)?,
            ),
            SigningAlgorithm::Es384 => Self::Ecdsa(
                EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).map_err(failed)?,
            ),
            SigningAlgorithm::Rs256 => {
                Self::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?)
            }
        })
    }

    fn public_der(&self) -> &[u8] {
        match self {
            Self::Ecdsa(pair) => pair.public_key().as_ref(),
            Self::Rsa(pair) => pair.public_key().as_ref(),
        }
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let rng = SystemRandom::new();
        match self {
            Self::Ecdsa(pair) => pair.sign(&rng, msg).map(|sig| sig.as_ref().to_vec()),
            Self::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig)?;
                Ok(sig)
            }
        }
    }
}

/// A leaf's public key as rcgen wants it for the certificate's SPKI.
struct LeafPublicKey<'a> {
    der: &'a [u8],
    algorithm: SigningAlgorithm,
}

impl PublicKeyData for LeafPublicKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.der
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm.rcgen()
    }
}

struct LeafParts {
    key: TokenKey,
    algorithm: SigningAlgorithm,
    cert: CertificateDer<'static>,
    x5c: Vec<String>,
    not_before: SystemTime,
    not_after: SystemTime,
    not_after_unix: u64,
}

struct LeafInner {
    parts: LeafParts,
    libtrust_kid: String,
    thumbprint_kid: String,
    jwk: PublicJwk,
    /// The base64url JOSE header per profile ([`TokenProfile::index`]), computed once because it
    /// is the same for every token this leaf signs.
    headers: [String; 3],
}

/// A short-lived signing leaf: certificate, key IDs and the (hidden) private key.
///
/// Cheap to clone. `Debug` never shows the key.
#[derive(Clone)]
pub struct SigningLeaf(Arc<LeafInner>);

#[derive(Serialize)]
struct Header<'a> {
    typ: &'static str,
    alg: &'static str,
    kid: &'a str,
    x5c: &'a [String],
}

impl SigningLeaf {
    fn new(parts: LeafParts) -> Result<Self, KeyError> {
        let malformed = || KeyError::MalformedCertificate { index: 0 };
        let (_, cert) =
            x509_parser::parse_x509_certificate(&parts.cert).map_err(|_| malformed())?;
        let spki = cert.public_key();
        let libtrust_kid = libtrust_key_id(spki.raw);
        let jwk = public_jwk(spki).ok_or_else(malformed)?;
        let thumbprint_kid = jwk.thumbprint();
        let header = |profile: TokenProfile| {
            let kid = if profile.uses_libtrust_kid() {
                &libtrust_kid
            } else {
                &thumbprint_kid
            };
            let json = serde_json::to_vec(&Header {
                typ: "JWT",
                alg: parts.algorithm.jws_name(),
                kid,
                x5c: &parts.x5c,
            })
            // Serializing plain strings cannot fail.
            .unwrap_or_default();
            URL_SAFE_NO_PAD.encode(json)
        };
        let headers = TokenProfile::ALL.map(header);
        Ok(Self(Arc::new(LeafInner {
            parts,
            libtrust_kid,
            thumbprint_kid,
            jwk,
            headers,
        })))
    }

    /// The leaf certificate (DER).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.0.parts.cert
    }

    /// The `x5c` header value: the leaf and the CA chain below the trust anchor, standard base64
    /// DER (RFC 7515 §4.1.6; not base64url).
    pub fn x5c(&self) -> &[String] {
        &self.0.parts.x5c
    }

    /// The JWS algorithm this leaf signs with.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.0.parts.algorithm
    }

    /// The certificate's `notBefore` (back-dated by [`LEAF_BACKDATE`]).
    pub fn not_before(&self) -> SystemTime {
        self.0.parts.not_before
    }

    /// The certificate's `notAfter`.
    pub fn not_after(&self) -> SystemTime {
        self.0.parts.not_after
    }

    /// The `kid` this leaf gets under `profile`.
    pub fn key_id(&self, profile: TokenProfile) -> &str {
        if profile.uses_libtrust_kid() {
            &self.0.libtrust_kid
        } else {
            &self.0.thumbprint_kid
        }
    }

    /// The libtrust key ID of the leaf's public key.
    pub fn libtrust_key_id(&self) -> &str {
        &self.0.libtrust_kid
    }

    /// The RFC 7638 thumbprint of the leaf's public key.
    pub fn thumbprint(&self) -> &str {
        &self.0.thumbprint_kid
    }

    pub(crate) fn not_after_unix(&self) -> u64 {
        self.0.parts.not_after_unix
    }

    pub(crate) fn header_b64(&self, profile: TokenProfile) -> &str {
        &self.0.headers[profile.index()]
    }

    pub(crate) fn jwk(&self) -> &PublicJwk {
        &self.0.jwk
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        self.0.parts.key.sign(msg)
    }

    fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for SigningLeaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningLeaf")
            .field("algorithm", &self.algorithm())
            .field("kid", &self.0.libtrust_kid)
            .field("thumbprint", &self.0.thumbprint_kid)
            .field("not_before", &self.not_before())
            .field("not_after", &self.not_after())
            .field("key", &"[redacted]")
            .finish()
    }
}

/// The JWK members of a P-256, P-384 or RSA `SubjectPublicKeyInfo`.
pub(crate) fn public_jwk(spki: &SubjectPublicKeyInfo<'_>) -> Option<PublicJwk> {
    if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION {
        let x509_parser::public_key::PublicKey::RSA(rsa) = spki.parsed().ok()? else {
            return None;
        };
        return Some(PublicJwk::Rsa {
            n: strip_leading_zeros(rsa.modulus).to_vec(),
            e: strip_leading_zeros(rsa.exponent).to_vec(),
        });
    }
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return None;
    }
    let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
    let (crv, size) = if curve == OID_EC_P256 {
        ("P-256", 32)
    } else if curve == OID_NIST_EC_P384 {
        ("P-384", 48)
    } else {
        return None;
    };
    let point = spki.subject_public_key.data.as_ref();
    // Uncompressed form only: 0x04 || x || y.
    if point.len() != 1 + 2 * size || point[0] != 0x04 {
        return None;
    }
    Some(PublicJwk::Ec {
        crv,
        x: point[1..=size].to_vec(),
        y: point[1 + size..].to_vec(),
    })
}

// === KeyRing ===

/// How the key ring issues and rotates leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyRingConfig {
    /// The leaves' JWS algorithm (default ES256).
    pub algorithm: SigningAlgorithm,
    /// A leaf's validity (default [`DEFAULT_LEAF_LIFETIME`]).
    pub leaf_lifetime: Duration,
    /// Rotate when the current leaf has less than this left (default: half the default
    /// lifetime).
    pub rotate_when_remaining: Duration,
    /// The longest token lifetime the minter accepts (default [`DEFAULT_MAX_TOKEN_TTL`]).
    pub max_token_ttl: Duration,
    /// The leaves' subject common name (default [`DEFAULT_LEAF_COMMON_NAME`]).
    pub leaf_common_name: String,
}

impl Default for KeyRingConfig {
    fn default() -> Self {
        Self {
            algorithm: SigningAlgorithm::Es256,
            leaf_lifetime: DEFAULT_LEAF_LIFETIME,
            rotate_when_remaining: DEFAULT_LEAF_LIFETIME / 2,
            max_token_ttl: DEFAULT_MAX_TOKEN_TTL,
            leaf_common_name: DEFAULT_LEAF_COMMON_NAME.to_owned(),
        }
    }
}

impl KeyRingConfig {
    /// Checks the rotation rules that make every token verifiable for its whole life:
    ///
    /// 1. `max_token_ttl >= MIN_TOKEN_TTL`;
    /// 2. `rotate_when_remaining >= max_token_ttl + REGISTRY_LEEWAY + ROTATION_MARGIN`: the
    ///    current leaf always outlives a new token's `exp` plus the registry's leeway;
    /// 3. `leaf_lifetime >= rotate_when_remaining + max_token_ttl + REGISTRY_LEEWAY`: a leaf is
    ///    still published as the previous leaf until every token it signed has expired;
    /// 4. `leaf_lifetime <= MAX_LEAF_LIFETIME`, and the common name is 1 to 64 bytes.
    ///
    /// # Errors
    /// [`KeyError::InvalidRotation`] naming the rule, or [`KeyError::InvalidCommonName`].
    pub fn validate(&self) -> Result<(), KeyError> {
        let broken = |rule| Err(KeyError::InvalidRotation { rule });
        if self.max_token_ttl < MIN_TOKEN_TTL {
            return broken(RotationRule::MaxTtlTooShort);
        }
        if self.leaf_lifetime > MAX_LEAF_LIFETIME {
            return broken(RotationRule::LeafTooLong);
        }
        let token_life = self.max_token_ttl + REGISTRY_LEEWAY;
        if self.rotate_when_remaining < token_life + ROTATION_MARGIN {
            return broken(RotationRule::RotateTooLate);
        }
        if self.leaf_lifetime < self.rotate_when_remaining + token_life {
            return broken(RotationRule::LeafTooShort);
        }
        check_common_name(&self.leaf_common_name)
    }
}

struct LeafSet {
    current: SigningLeaf,
    previous: Option<SigningLeaf>,
}

/// The signing CA plus the current and previous signing leaf.
///
/// Shared by reference between threads: signing reads the current leaf without locking, and
/// rotation swaps it atomically.
pub struct KeyRing {
    ca: SigningCa,
    config: KeyRingConfig,
    leaves: ArcSwap<LeafSet>,
    /// Serializes rotations so two threads noticing the same due leaf issue only one new one.
    rotation: Mutex<()>,
}

impl KeyRing {
    /// Validates `config` and issues the first leaf at `now`.
    ///
    /// # Errors
    /// Any error of [`KeyRingConfig::validate`], [`KeyError::CaExpiresTooSoon`], or a key or
    /// certificate generation failure.
    pub fn new(ca: SigningCa, config: KeyRingConfig, now: SystemTime) -> Result<Self, KeyError> {
        config.validate()?;
        let current = ca.issue_leaf(&config, now)?;
        Ok(Self {
            ca,
            config,
            leaves: ArcSwap::from_pointee(LeafSet {
                current,
                previous: None,
            }),
            rotation: Mutex::new(()),
        })
    }

    /// The leaf new tokens are signed with.
    pub fn current(&self) -> SigningLeaf {
        self.leaves.load().current.clone()
    }

    /// The leaf in use before the last rotation, still published because tokens it signed may
    /// still be live.
    pub fn previous(&self) -> Option<SigningLeaf> {
        self.leaves.load().previous.clone()
    }

    /// Whether the current leaf must be replaced before signing at `now`: it has less than
    /// `rotate_when_remaining` left, or `now` is before its `notBefore` (the clock went back).
    pub fn is_rotation_due(&self, now: SystemTime) -> bool {
        self.leaf_due(&self.leaves.load().current, now)
    }

    /// Issues a new leaf if [`Self::is_rotation_due`]; the old one becomes the previous leaf.
    /// Returns whether it rotated. Cheap when nothing is due, so callers may run it before
    /// every signature.
    ///
    /// # Errors
    /// [`KeyError::CaExpiresTooSoon`] once the CA cannot cover a full leaf lifetime, or a key
    /// or certificate generation failure. The current leaf stays in place on error.
    pub fn rotate_if_due(&self, now: SystemTime) -> Result<bool, KeyError> {
        if !self.is_rotation_due(now) {
            return Ok(false);
        }
        let _guard = self.rotation.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = self.leaves.load_full();
        // Another thread may have rotated while this one waited for the lock.
        if !self.leaf_due(&seen.current, now) {
            return Ok(false);
        }
        self.install(&seen, now)?;
        Ok(true)
    }

    /// Issues a new leaf now, whether due or not (manual rotation, e.g. after a suspected
    /// compromise of the current leaf).
    ///
    /// # Errors
    /// As [`Self::rotate_if_due`].
    pub fn rotate(&self, now: SystemTime) -> Result<(), KeyError> {
        let _guard = self.rotation.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = self.leaves.load_full();
        self.install(&seen, now)
    }

    fn install(&self, seen: &LeafSet, now: SystemTime) -> Result<(), KeyError> {
        let next = self.ca.issue_leaf(&self.config, now)?;
        debug_assert!(!next.same_as(&seen.current));
        self.leaves.store(Arc::new(LeafSet {
            current: next,
            previous: Some(seen.current.clone()),
        }));
        Ok(())
    }

    fn leaf_due(&self, leaf: &SigningLeaf, now: SystemTime) -> bool {
        if now < leaf.not_before() {
            return true;
        }
        leaf.not_after()
            .duration_since(now)
            .map_or(true, |left| left < self.config.rotate_when_remaining)
    }

    /// The configuration (validated).
    pub fn config(&self) -> &KeyRingConfig {
        &self.config
    }

    /// The signing CA.
    pub fn ca(&self) -> &SigningCa {
        &self.ca
    }

    /// The trust anchor as PEM, for the registry's `rootcertbundle`.
    pub fn ca_bundle_pem(&self) -> String {
        self.ca.ca_bundle_pem()
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let leaves = self.leaves.load();
        f.debug_struct("KeyRing")
            .field("ca", &self.ca)
            .field("config", &self.config)
            .field("current", &leaves.current)
            .field("previous", &leaves.previous)
            .finish()
    }
}

// === helpers ===

/// Encodes one PEM block with 64-column lines and `\n` endings.
pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        out.extend(line.iter().map(|&b| char::from(b)));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// A random positive 16-byte serial (RFC 5280 allows up to 20 bytes).
fn random_serial(algorithm: SigningAlgorithm) -> Result<SerialNumber, KeyError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyError::KeyGeneration { algorithm })?;
    // Clear the sign bit so the INTEGER is positive, and set the next one so DER does not drop a
    // leading zero byte.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn unix_secs(t: SystemTime) -> Result<u64, KeyError> {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| KeyError::TimeOutOfRange)
}

/// Truncates to whole seconds: certificates cannot carry fractions, and comparisons against
/// the encoded validity must agree with what a registry reads.
fn whole_seconds(t: SystemTime) -> Result<SystemTime, KeyError> {
    Ok(UNIX_EPOCH + Duration::from_secs(unix_secs(t)?))
}

#[cfg(test)]
mod tests;
