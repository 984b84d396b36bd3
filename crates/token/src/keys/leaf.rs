//! Signing leaves: a short-lived certificate under the signing CA plus the token-signing key.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{PublicKeyData, SignatureAlgorithm};
use rustls_pki_types::CertificateDer;
use serde_json::json;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::SigningAlgorithm;
use crate::Profile;
use crate::error::KeyError;
use crate::kid::{KidFormat, PublicJwk, libtrust_key_id, strip_leading_zeros};

// === signing leaves ===

/// A leaf's token-signing key, held by aws-lc-rs. ECDSA keys sign in the JWS `r || s` form.
pub(super) enum TokenKey {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl TokenKey {
    pub(super) fn generate(algorithm: SigningAlgorithm) -> Result<Self, KeyError> {
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

    pub(super) fn public_der(&self) -> &[u8] {
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
pub(super) struct LeafPublicKey<'a> {
    pub(super) der: &'a [u8],
    pub(super) algorithm: SigningAlgorithm,
}

impl PublicKeyData for LeafPublicKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.der
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm.rcgen()
    }
}

pub(super) struct LeafParts {
    pub(super) key: TokenKey,
    pub(super) algorithm: SigningAlgorithm,
    pub(super) cert: CertificateDer<'static>,
    pub(super) x5c: Vec<String>,
    pub(super) not_before: SystemTime,
    pub(super) not_after: SystemTime,
    pub(super) not_after_unix: u64,
}

struct LeafInner {
    parts: LeafParts,
    libtrust_kid: String,
    thumbprint_kid: String,
    jwk: PublicJwk,
    /// The base64url JOSE header per `kid` format ([`KidFormat::index`]), computed once because
    /// it is the same for every token this leaf signs.
    headers: [String; KidFormat::ALL.len()],
}

/// A short-lived signing leaf: certificate, key IDs and the (hidden) private key.
///
/// Cheap to clone. `Debug` never shows the key.
#[derive(Clone)]
pub struct SigningLeaf(Arc<LeafInner>);

impl SigningLeaf {
    pub(super) fn new(parts: LeafParts) -> Result<Self, KeyError> {
        let malformed = || KeyError::MalformedCertificate { index: 0 };
        let (_, cert) =
            x509_parser::parse_x509_certificate(&parts.cert).map_err(|_| malformed())?;
        let spki = cert.public_key();
        let libtrust_kid = libtrust_key_id(spki.raw);
        let jwk = public_jwk(spki).ok_or_else(malformed)?;
        let thumbprint_kid = jwk.thumbprint();
        let header = |format: KidFormat| {
            let kid = match format {
                KidFormat::Libtrust => &libtrust_kid,
                KidFormat::Thumbprint => &thumbprint_kid,
            };
            let json = json!({
                "typ": "JWT",
                "alg": parts.algorithm.jws_name(),
                "kid": kid,
                "x5c": parts.x5c,
            });
            URL_SAFE_NO_PAD.encode(json.to_string())
        };
        let headers = KidFormat::ALL.map(header);
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

    /// The certificate's `notBefore` (back-dated by [`crate::LEAF_BACKDATE`]).
    pub fn not_before(&self) -> SystemTime {
        self.0.parts.not_before
    }

    /// The certificate's `notAfter`. The key ring rotates to a new leaf before a token signed
    /// with this one could outlive it, so registries that check the `x5c` chain at request time
    /// never see an expired leaf.
    pub fn not_after(&self) -> SystemTime {
        self.0.parts.not_after
    }

    /// The `kid` this leaf gets in the header of a token minted under `profile`.
    pub fn key_id(&self, profile: Profile) -> &str {
        self.key_id_in(KidFormat::of(profile))
    }

    /// The leaf's `kid` in `format`.
    pub fn key_id_in(&self, format: KidFormat) -> &str {
        match format {
            KidFormat::Libtrust => &self.0.libtrust_kid,
            KidFormat::Thumbprint => &self.0.thumbprint_kid,
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

    pub(crate) fn header_b64(&self, profile: Profile) -> &str {
        &self.0.headers[KidFormat::of(profile).index()]
    }

    pub(crate) fn jwk(&self) -> &PublicJwk {
        &self.0.jwk
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        self.0.parts.key.sign(msg)
    }

    #[cfg(test)]
    pub(crate) fn same_as(&self, other: &Self) -> bool {
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
