//! The signing CA: loaded from PEM (operator-provided) or generated (development), and the
//! issuer of signing leaves.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyUsagePurpose,
    PublicKeyData, SignatureAlgorithm, SigningKey,
};
use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED448, OID_SIG_ED25519,
};
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::Zeroizing;

use super::leaf::{LeafParts, LeafPublicKey, SigningLeaf, TokenKey};
use super::{
    GENERATED_CA_BACKDATE, KeyRingConfig, LEAF_BACKDATE, MAX_CA_CERTS, MAX_LEAF_COMMON_NAME_LEN,
    MAX_PEM_LEN, MIN_RSA_BITS, SigningAlgorithm, pem_block, random_serial, unix_secs,
    whole_seconds,
};
use crate::error::{KeyError, PemSource};
use crate::external::{
    ExternalAlgorithm, ExternalKey, ExternalKeyError, ExternalPublicKey, PROBE_MISMATCH,
    ProbeError, parse_public_key,
};

// === CA key ===

/// The CA's private key, held by aws-lc-rs (which wipes it when freed) or by a key store that
/// signs on request. Signs certificates, so ECDSA signatures are DER (ASN.1), unlike the JWS
/// `r || s` of the leaves.
enum CaKey {
    Ecdsa {
        pair: EcdsaKeyPair,
        algorithm: SigningAlgorithm,
    },
    Rsa(RsaKeyPair),
    External(ExternalCaKey),
}

/// A CA key in a key store. rcgen's signing callback can only answer an opaque
/// `RemoteKeyError`, so the store's own error waits in `last_error` for the caller to report.
struct ExternalCaKey {
    key: Arc<dyn ExternalKey>,
    public: ExternalPublicKey,
    algorithm: SigningAlgorithm,
    last_error: Mutex<Option<ExternalKeyError>>,
}

impl ExternalCaKey {
    fn new(key: Arc<dyn ExternalKey>) -> Result<Self, KeyError> {
        let public =
            parse_public_key(key.as_ref()).map_err(|rule| KeyError::ExternalPublicKey {
                store: key.describe().to_owned(),
                rule,
            })?;
        crate::external::probe(key.as_ref(), &public).map_err(|error| match error {
            ProbeError::Sign(source) => KeyError::ExternalKey { source },
            ProbeError::Mismatch => KeyError::ExternalPublicKey {
                store: key.describe().to_owned(),
                rule: PROBE_MISMATCH,
            },
        })?;
        let algorithm = match key.algorithm() {
            ExternalAlgorithm::EcdsaP256Sha256 => SigningAlgorithm::Es256,
            ExternalAlgorithm::EcdsaP384Sha384 => SigningAlgorithm::Es384,
            ExternalAlgorithm::RsaPkcs1Sha256 => SigningAlgorithm::Rs256,
        };
        Ok(Self {
            key,
            public,
            algorithm,
            last_error: Mutex::new(None),
        })
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let result = self.key.sign(msg).and_then(|sig| self.check_signature(sig));
        result.map_err(|error| {
            *self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(error);
            rcgen::Error::RemoteKeyError
        })
    }

    /// A signature of the wrong form would make a certificate no registry accepts; refuse it
    /// here, naming the store, rather than there.
    fn check_signature(&self, sig: Vec<u8>) -> Result<Vec<u8>, ExternalKeyError> {
        let malformed = |rule| ExternalKeyError::Malformed {
            store: self.key.describe().to_owned(),
            rule,
        };
        match (
            self.public.rsa_modulus_len,
            self.key.algorithm().ecdsa_scalar_len(),
        ) {
            (Some(len), _) if sig.len() != len => {
                Err(malformed("RSA signature is not as long as the modulus"))
            }
            (None, Some(scalar)) => {
                crate::external::ecdsa_der_to_jws(&sig, scalar).map_err(malformed)?;
                Ok(sig)
            }
            _ => Ok(sig),
        }
    }

    /// Turns rcgen's opaque error back into the store's, when the store caused it.
    fn take_error(&self, error: rcgen::Error) -> KeyError {
        match self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            Some(source) if matches!(error, rcgen::Error::RemoteKeyError) => {
                KeyError::ExternalKey { source }
            }
            _ => KeyError::Certificate(error),
        }
    }
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
            Self::External(external) => external.algorithm,
        }
    }

    /// A certificate error, with the key store's own error when it was the cause.
    fn certificate_error(&self, error: rcgen::Error) -> KeyError {
        match self {
            Self::External(external) => external.take_error(error),
            _ => KeyError::Certificate(error),
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
            Self::External(external) => &external.public.key_bits,
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
            Self::External(external) => external.sign(msg),
        }
    }
}

// === SigningCa ===

/// The CA that issues signing leaves. Registries trust it (or the top of its chain) through
/// `rootcertbundle`; it never signs tokens itself.
pub struct SigningCa {
    key: CaKey,
    /// See [`SigningCa::derived_secret`].
    derived_secret: Zeroizing<[u8; 32]>,
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
        let key = CaKey::generate(algorithm)?;
        let (params, not_after) = ca_params(common_name, algorithm, lifetime, now)?;
        let cert = params.self_signed(&key).map_err(KeyError::Certificate)?;
        // The generated key never leaves this process, so there is nothing to derive from that
        // another process could share: random bytes play the part.
        let mut derived_secret = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::SecureRandom::fill(&SystemRandom::new(), derived_secret.as_mut())
            .map_err(|_| KeyError::KeyGeneration { algorithm })?;
        Ok(Self {
            key,
            derived_secret,
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
        let chain = check_chain(cert_pem, now)?;
        let key_der = parse_private_key(key_pem)?;
        let key = CaKey::from_pkcs8(chain.algorithm, &key_der)?;
        if key.der_bytes() != chain.signing_public_key.as_slice() {
            return Err(KeyError::KeyMismatch);
        }
        Ok(Self {
            key,
            derived_secret: derive_secret(&key_der),
            certs: chain.certs,
            not_after: chain.not_after,
        })
    }

    /// A CA whose private key stays in a key store (an HSM, a cloud KMS): `cert_pem` as for
    /// [`Self::from_pem`], under the same rules, and `key` signs every leaf certificate.
    /// `derived_secret` plays the part of [`Self::derived_secret`]: bytes every replica must
    /// derive alike from something only the key store holds (an HMAC key there), since the
    /// private key cannot be read to derive them from.
    ///
    /// # Errors
    /// A [`KeyError`] naming the rule: any of [`Self::from_pem`]'s certificate rules,
    /// [`KeyError::ExternalPublicKey`] when the store's public key is unusable, and
    /// [`KeyError::KeyMismatch`] when it is not the certificate's.
    pub fn with_external_key(
        cert_pem: &str,
        key: Arc<dyn ExternalKey>,
        derived_secret: Zeroizing<[u8; 32]>,
        now: SystemTime,
    ) -> Result<Self, KeyError> {
        check_pem_len(PemSource::Certificate, cert_pem.len())?;
        let chain = check_chain(cert_pem, now)?;
        let key = CaKey::External(ExternalCaKey::new(key)?);
        if key.algorithm() != chain.algorithm
            || key.der_bytes() != chain.signing_public_key.as_slice()
        {
            return Err(KeyError::KeyMismatch);
        }
        Ok(Self {
            key,
            derived_secret,
            certs: chain.certs,
            not_after: chain.not_after,
        })
    }

    /// Reads the certificate chain of [`Self::with_external_key`] from a file, refusing one
    /// over [`MAX_PEM_LEN`].
    ///
    /// # Errors
    /// [`KeyError::Io`], [`KeyError::PemTooLarge`], or any error of
    /// [`Self::with_external_key`].
    pub fn with_external_key_file(
        cert_path: &Path,
        key: Arc<dyn ExternalKey>,
        derived_secret: Zeroizing<[u8; 32]>,
        now: SystemTime,
    ) -> Result<Self, KeyError> {
        let cert = read_pem_file(PemSource::Certificate, cert_path)?;
        Self::with_external_key(&cert, key, derived_secret, now)
    }

    /// A self-signed CA certificate for a key held in a key store, as PEM: what an operator
    /// makes once, when the key is generated in the store, and gives the broker as
    /// `signing.ca_cert_file` (and registries as their `rootcertbundle`). Same profile as
    /// [`Self::generate`]'s certificate: cA with path length 0, keyCertSign and cRLSign.
    ///
    /// # Errors
    /// [`KeyError::InvalidCommonName`], [`KeyError::TimeOutOfRange`],
    /// [`KeyError::ExternalPublicKey`], [`KeyError::ExternalKey`] when the store did not sign.
    pub fn self_signed_external_pem(
        key: Arc<dyn ExternalKey>,
        common_name: &str,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<String, KeyError> {
        check_common_name(common_name)?;
        let key = CaKey::External(ExternalCaKey::new(key)?);
        let (params, _) = ca_params(common_name, key.algorithm(), lifetime, now)?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| key.certificate_error(e))?;
        Ok(pem_block("CERTIFICATE", cert.der()))
    }

    /// 32 bytes derived one way from the CA's PKCS#8 private key (HMAC-SHA256 under a fixed
    /// label): every process that loads the same key gets the same bytes, and the bytes reveal
    /// nothing about the key. Input keying material for symmetric keys that every replica
    /// holding the CA must share (the broker's credential MAC keys), so that nothing but the CA
    /// needs distributing. Always from the exact key this CA signs with, whatever else the key
    /// file holds; random for a generated CA.
    pub fn derived_secret(&self) -> &[u8; 32] {
        &self.derived_secret
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

    /// Whether the CA key is held by a key store, which signs on request.
    pub fn key_is_external(&self) -> bool {
        matches!(self.key, CaKey::External(_))
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

    pub(super) fn issue_leaf(
        &self,
        config: &KeyRingConfig,
        now: SystemTime,
    ) -> Result<SigningLeaf, KeyError> {
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
            .map_err(|e| self.key.certificate_error(e))?;
        let public = LeafPublicKey {
            der: key.public_der(),
            algorithm,
        };
        let cert = params
            .signed_by(&public, &issuer)
            .map_err(|e| self.key.certificate_error(e))?;
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

/// The profile of every CA certificate this module makes: cA with path length 0, keyCertSign
/// and cRLSign, back-dated by [`GENERATED_CA_BACKDATE`], a random serial; and its `notAfter`.
fn ca_params(
    common_name: &str,
    algorithm: SigningAlgorithm,
    lifetime: Duration,
    now: SystemTime,
) -> Result<(CertificateParams, SystemTime), KeyError> {
    let now = whole_seconds(now)?;
    let not_before = now
        .checked_sub(GENERATED_CA_BACKDATE)
        .ok_or(KeyError::TimeOutOfRange)?;
    let not_after = now.checked_add(lifetime).ok_or(KeyError::TimeOutOfRange)?;
    unix_secs(not_before)?;
    unix_secs(not_after)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_dn(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    params.serial_number = Some(random_serial(algorithm)?);
    Ok((params, not_after))
}

/// A certificate chain that passed [`SigningCa::from_pem`]'s rules.
struct CheckedChain {
    certs: Vec<CertificateDer<'static>>,
    not_after: SystemTime,
    algorithm: SigningAlgorithm,
    /// The signing CA's subjectPublicKey bits, to match against its private key.
    signing_public_key: Vec<u8>,
}

fn check_chain(cert_pem: &str, now: SystemTime) -> Result<CheckedChain, KeyError> {
    let certs = parse_cert_chain(cert_pem)?;
    let now_unix = i64::try_from(unix_secs(now)?).map_err(|_| KeyError::TimeOutOfRange)?;
    let mut not_after = i64::MAX;
    let mut algorithm = SigningAlgorithm::Es256;
    let mut signing_public_key = Vec::new();
    for (index, der) in certs.iter().enumerate() {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|_| KeyError::MalformedCertificate { index })?;
        let spki = cert.public_key();
        if spki.algorithm.algorithm == OID_SIG_ED25519 || spki.algorithm.algorithm == OID_SIG_ED448
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
    let not_after = UNIX_EPOCH
        + Duration::from_secs(u64::try_from(not_after).map_err(|_| KeyError::TimeOutOfRange)?);
    Ok(CheckedChain {
        certs,
        not_after,
        algorithm,
        signing_public_key,
    })
}

pub(super) fn check_common_name(cn: &str) -> Result<(), KeyError> {
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
    // Allocated once at the cap so reading never reallocates and leaves an unwiped copy.
    let mut text = Zeroizing::new(String::with_capacity(MAX_PEM_LEN + 1));
    file.take(u64::try_from(MAX_PEM_LEN + 1).unwrap_or(u64::MAX))
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
/// Domain separation for [`SigningCa::derived_secret`]: the label keys an HMAC over the key.
const DERIVED_SECRET_LABEL: &[u8] = b"svid-broker signing-ca derived secret v1";

fn derive_secret(pkcs8: &[u8]) -> Zeroizing<[u8; 32]> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, DERIVED_SECRET_LABEL);
    let tag = aws_lc_rs::hmac::sign(&key, pkcs8);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(tag.as_ref());
    out
}

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
