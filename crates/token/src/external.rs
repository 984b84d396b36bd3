//! Keys the broker never holds: a private key in a hardware token (PKCS#11) or a cloud KMS,
//! which signs on request and is never read.
//!
//! The signing CA ([`crate::SigningCa::with_external_key`]) and the federation issuer
//! ([`crate::federation::FederationKey::external`]) take one through [`ExternalKey`]. The
//! seam is synchronous, like the rest of this crate: a key store's call blocks the calling
//! thread for one round trip. Both callers sign rarely (a CA signs one leaf every couple of
//! hours; the federation issuer one JWT per cached cloud or registry exchange), so the broker
//! never puts a key store on the per-request path.
//!
//! Implementations live outside this crate (`svid-broker-keystore`: PKCS#11 through
//! `cryptoki`, AWS KMS behind a feature); anything that can sign one of
//! [`ExternalAlgorithm`]'s schemes plugs in the same way.

use std::fmt;

use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
};
use x509_parser::prelude::FromDer as _;
use x509_parser::x509::SubjectPublicKeyInfo;

/// Longest SubjectPublicKeyInfo accepted from a key store (an RSA-4096 key's is 550 bytes).
pub const MAX_SPKI_LEN: usize = 2048;

/// The signature schemes a key store may sign with for the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExternalAlgorithm {
    /// ECDSA over P-256 with SHA-256 (`ES256`; `CKM_ECDSA` over a SHA-256 digest; KMS
    /// `ECDSA_SHA_256`).
    EcdsaP256Sha256,
    /// ECDSA over P-384 with SHA-384 (`ES384`).
    EcdsaP384Sha384,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (`RS256`; `CKM_SHA256_RSA_PKCS`; KMS
    /// `RSASSA_PKCS1_V1_5_SHA_256`), 2048 to 4096 bits.
    RsaPkcs1Sha256,
}

impl ExternalAlgorithm {
    /// The JWS `alg` header value: `ES256`, `ES384` or `RS256`.
    pub fn jws_name(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256 => "ES256",
            Self::EcdsaP384Sha384 => "ES384",
            Self::RsaPkcs1Sha256 => "RS256",
        }
    }

    /// The byte length of each of `r` and `s` in a JWS ECDSA signature; `None` for RSA.
    pub fn ecdsa_scalar_len(self) -> Option<usize> {
        match self {
            Self::EcdsaP256Sha256 => Some(32),
            Self::EcdsaP384Sha384 => Some(48),
            Self::RsaPkcs1Sha256 => None,
        }
    }
}

/// Why a key store did not sign. Never carries key material or a PIN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExternalKeyError {
    /// The store could not be reached or did not answer in time; retrying may succeed.
    #[error("{store} is unavailable: {reason}")]
    Unavailable {
        /// What the store is ([`ExternalKey::describe`]).
        store: String,
        /// What went wrong, in the store's words where it gave any.
        reason: String,
    },
    /// The store answered and refused (wrong PIN, key disabled, access denied).
    #[error("{store} refused: {reason}")]
    Refused {
        /// What the store is ([`ExternalKey::describe`]).
        store: String,
        /// The store's reason, in its words where it gave any (a KMS message, a PKCS#11 error).
        reason: String,
    },
    /// The store's answer broke a rule (a signature of the wrong form or length, a public key
    /// that is not of the configured kind).
    #[error("{store} answered something unusable: {rule}")]
    Malformed {
        /// What the store is ([`ExternalKey::describe`]).
        store: String,
        /// The rule the answer broke (`RSA signature is not as long as the modulus`, ...).
        rule: &'static str,
    },
}

/// A private key held by a key store. `Debug` and [`Self::describe`] never print a secret.
pub trait ExternalKey: Send + Sync + fmt::Debug {
    /// What the key is, for errors and logs: a PKCS#11 URI without its PIN, a KMS key ARN.
    fn describe(&self) -> &str;

    /// The scheme [`Self::sign`] signs with.
    fn algorithm(&self) -> ExternalAlgorithm;

    /// The public key as an X.509 SubjectPublicKeyInfo, DER.
    fn public_key_spki(&self) -> &[u8];

    /// Signs `message` (the store or this implementation hashes it) under
    /// [`Self::algorithm`]. ECDSA signatures are DER `ECDSA-Sig-Value` (the form X.509
    /// certificates carry); RSA signatures are the PKCS#1 v1.5 bytes, as long as the modulus.
    ///
    /// # Errors
    /// [`ExternalKeyError`].
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ExternalKeyError>;
}

/// An HMAC-SHA256 key held by a key store, for secrets every replica must derive alike
/// without any of them storing one (the broker's credential MAC keys).
pub trait ExternalMac: Send + Sync + fmt::Debug {
    /// What the key is, for errors and logs.
    fn describe(&self) -> &str;

    /// HMAC-SHA256 of `message` under the stored key.
    ///
    /// # Errors
    /// [`ExternalKeyError`].
    fn hmac_sha256(&self, message: &[u8])
    -> Result<zeroize::Zeroizing<[u8; 32]>, ExternalKeyError>;
}

/// The public key of an [`ExternalKey`], parsed once and checked against its algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExternalPublicKey {
    /// The subjectPublicKey bits: the uncompressed EC point, or the PKCS#1 `RSAPublicKey`.
    pub(crate) key_bits: Vec<u8>,
    /// For RSA: the modulus length in bytes, the signature length.
    pub(crate) rsa_modulus_len: Option<usize>,
}

/// Parses `key`'s SubjectPublicKeyInfo and checks it matches `key.algorithm()`.
pub(crate) fn parse_public_key(key: &dyn ExternalKey) -> Result<ExternalPublicKey, &'static str> {
    let spki = key.public_key_spki();
    if spki.len() > MAX_SPKI_LEN {
        return Err("public key is longer than 2048 bytes");
    }
    let Ok((rest, info)) = SubjectPublicKeyInfo::from_der(spki) else {
        return Err("public key is not a DER SubjectPublicKeyInfo");
    };
    if !rest.is_empty() {
        return Err("public key has bytes after its SubjectPublicKeyInfo");
    }
    let oid = &info.algorithm.algorithm;
    let key_bits = info.subject_public_key.data.to_vec();
    match key.algorithm() {
        ExternalAlgorithm::RsaPkcs1Sha256 => {
            if *oid != OID_PKCS1_RSAENCRYPTION {
                return Err("key store key is not an RSA key, but RS256 was asked for");
            }
            let bits = info
                .parsed()
                .map_err(|_| "RSA public key is malformed")?
                .key_size();
            if !(2048..=4096).contains(&bits) {
                return Err("RSA key must be 2048 to 4096 bits");
            }
            Ok(ExternalPublicKey {
                key_bits,
                rsa_modulus_len: Some(bits.div_ceil(8)),
            })
        }
        algorithm @ (ExternalAlgorithm::EcdsaP256Sha256 | ExternalAlgorithm::EcdsaP384Sha384) => {
            let want = if algorithm == ExternalAlgorithm::EcdsaP256Sha256 {
                OID_EC_P256
            } else {
                OID_NIST_EC_P384
            };
            let curve = info
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            if *oid != OID_KEY_TYPE_EC_PUBLIC_KEY || curve.as_ref() != Some(&want) {
                return Err("key store key is not an EC key on the asked curve");
            }
            let scalar = algorithm.ecdsa_scalar_len().unwrap_or(0);
            if key_bits.len() != 1 + 2 * scalar || key_bits.first() != Some(&4) {
                return Err("EC public key is not an uncompressed point");
            }
            Ok(ExternalPublicKey {
                key_bits,
                rsa_modulus_len: None,
            })
        }
    }
}

/// What [`probe`] has the key sign.
const PROBE_MESSAGE: &[u8] =
    b"svid-broker key store probe: does the private key match its public key?";

/// Has `key` sign a fixed message and verifies the signature under `public`: a store whose
/// private key is not the pair of the public key it reports (a leftover public object, a
/// mislabelled key) is refused before anything signed with it reaches a registry.
pub(crate) fn probe(key: &dyn ExternalKey, public: &ExternalPublicKey) -> Result<(), ProbeError> {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, RSA_PKCS1_2048_8192_SHA256,
        UnparsedPublicKey, VerificationAlgorithm,
    };
    let signature = key.sign(PROBE_MESSAGE).map_err(ProbeError::Sign)?;
    let algorithm: &'static dyn VerificationAlgorithm = match key.algorithm() {
        ExternalAlgorithm::EcdsaP256Sha256 => &ECDSA_P256_SHA256_ASN1,
        ExternalAlgorithm::EcdsaP384Sha384 => &ECDSA_P384_SHA384_ASN1,
        ExternalAlgorithm::RsaPkcs1Sha256 => &RSA_PKCS1_2048_8192_SHA256,
    };
    UnparsedPublicKey::new(algorithm, &public.key_bits)
        .verify(PROBE_MESSAGE, &signature)
        .map_err(|_| ProbeError::Mismatch)
}

/// Why [`probe`] failed.
#[derive(Debug)]
pub(crate) enum ProbeError {
    /// The store did not sign the probe message.
    Sign(ExternalKeyError),
    /// It signed, and the signature does not verify under the public key it reports.
    Mismatch,
}

/// The rule [`ProbeError::Mismatch`] breaks.
pub(crate) const PROBE_MISMATCH: &str = "a signature by the private key does not verify under the public key the store reports (not a key pair)";

/// Converts a DER `ECDSA-Sig-Value` (`SEQUENCE { r INTEGER, s INTEGER }`, what X.509, KMS and
/// most HSM tools return) into the fixed-length `r || s` JWS needs, each scalar left-padded to
/// `scalar_len` bytes.
///
/// Written here rather than through a crate: it is twenty lines of strict DER (minimal lengths,
/// positive minimal integers) and aws-lc-rs exposes no converter.
///
/// # Errors
/// A fixed phrase naming the DER rule the input broke (`ECDSA signature has bytes after s`).
pub fn ecdsa_der_to_jws(der: &[u8], scalar_len: usize) -> Result<Vec<u8>, &'static str> {
    let body = match der {
        [0x30, len, body @ ..] if usize::from(*len) == body.len() && *len < 0x80 => body,
        [0x30, 0x81, len, body @ ..] if usize::from(*len) == body.len() && *len >= 0x80 => body,
        _ => return Err("ECDSA signature is not one DER SEQUENCE"),
    };
    let (r, rest) = der_unsigned_integer(body)?;
    let (s, rest) = der_unsigned_integer(rest)?;
    if !rest.is_empty() {
        return Err("ECDSA signature has bytes after s");
    }
    let mut out = vec![0u8; 2 * scalar_len];
    for (value, slot) in [(r, 0), (s, scalar_len)] {
        if value.len() > scalar_len || value.is_empty() {
            return Err("ECDSA signature scalar does not fit the curve");
        }
        out[slot + scalar_len - value.len()..slot + scalar_len].copy_from_slice(value);
    }
    Ok(out)
}

/// One DER INTEGER that must be positive and minimally encoded; returns its magnitude without
/// the sign byte, and what follows.
fn der_unsigned_integer(input: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let [0x02, len, rest @ ..] = input else {
        return Err("ECDSA signature scalar is not a DER INTEGER");
    };
    let len = usize::from(*len);
    if len >= 0x80 || len == 0 || rest.len() < len {
        return Err("ECDSA signature scalar has a bad length");
    }
    let (value, rest) = rest.split_at(len);
    if value[0] & 0x80 != 0 {
        return Err("ECDSA signature scalar is negative");
    }
    if value.len() > 1 && value[0] == 0 && value[1] & 0x80 == 0 {
        return Err("ECDSA signature scalar is not minimally encoded");
    }
    let magnitude = if value[0] == 0 { &value[1..] } else { value };
    Ok((magnitude, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED, EcdsaKeyPair, KeyPair as _,
        UnparsedPublicKey,
    };

    #[test]
    fn der_signatures_convert_to_verifiable_jws_form() {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref());
        // Enough signatures that short r or s (a leading zero byte dropped in DER) occur.
        for i in 0..300u32 {
            let message = i.to_be_bytes();
            let der = pair.sign(&SystemRandom::new(), &message).unwrap();
            let jws = ecdsa_der_to_jws(der.as_ref(), 32).unwrap();
            assert_eq!(jws.len(), 64);
            public.verify(&message, &jws).unwrap();
        }
    }

    #[test]
    fn malformed_der_signatures_are_refused_by_rule() {
        let cases: &[(&[u8], &str)] = &[
            (&[], "not one DER SEQUENCE"),
            (&[0x30, 0x03, 0x02, 0x01, 0x01], "not a DER INTEGER"),
            (
                &[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x81],
                "negative",
            ),
            (
                &[0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01],
                "minimally",
            ),
            (
                &[0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00],
                "bytes after s",
            ),
            (&[0x30, 0x04, 0x02, 0x00, 0x02, 0x00], "bad length"),
        ];
        for (der, rule) in cases {
            let error = ecdsa_der_to_jws(der, 32).unwrap_err();
            assert!(error.contains(rule), "{der:?}: {error}");
        }
        let mut too_long = vec![0x30, 0x26, 0x02, 0x21, 0x01];
        too_long.extend([0u8; 32]);
        too_long.extend([0x02, 0x01, 0x01]);
        assert_eq!(
            ecdsa_der_to_jws(&too_long, 32).unwrap_err(),
            "ECDSA signature scalar does not fit the curve"
        );
    }
}
