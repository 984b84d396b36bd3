//! Test-only re-implementation of docker-registry 2.8.2's token verification, step by step as
//! the reference note (registry-token-auth.md §2.2) records it, so tests show our tokens pass
//! what the real registry checks. The end-to-end test against the real binary lives elsewhere.
//!
//! 1. Split on `.` into exactly three parts; base64url-decode; JSON-decode the header and the
//!    claims into fixed shapes (`aud` is a Go `string`, so an array is malformed).
//! 2. `iss` and `aud` must equal the configured issuer and service.
//! 3. `now > exp + 60 s` and `now + 60 s < nbf` fail; missing `exp`/`nbf` count as 0.
//! 4. The signature must not be empty.
//! 5. The key is the first present of: `x5c` (chain checked against the bundle at `now`, any
//!    EKU, leaf key used), `jwk` (not modelled: we never emit it), `kid` (libtrust ID of a
//!    certificate in the bundle). No fallback once one is present.
//! 6. libtrust: RSA takes RS256/384/512 only (PKCS#1 v1.5); EC takes only the alg of its curve
//!    and a raw `r || s` of exactly twice the coordinate size.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use serde_json::Value;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION,
};

use crate::kid::libtrust_key_id;

const LEEWAY: Duration = Duration::from_secs(60);

/// What the registry's `auth.token` block configures.
pub(crate) struct Registry28 {
    pub(crate) issuer: String,
    pub(crate) service: String,
    pub(crate) roots: Vec<CertificateDer<'static>>,
}

/// Why the registry answered 401 `invalid_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reject {
    Malformed,
    Issuer,
    Audience,
    Expired,
    NotYetValid,
    EmptySignature,
    X5cEncoding,
    Chain,
    JwkNotModelled,
    UntrustedKid,
    NoKey,
    UnsupportedKey,
    Algorithm,
    SignatureLength,
    Signature,
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    alg: String,
    #[serde(default)]
    kid: String,
    #[serde(default)]
    x5c: Vec<String>,
    #[serde(default)]
    jwk: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ResourceActions {
    #[serde(rename = "type")]
    pub(crate) resource_type: String,
    pub(crate) name: String,
    pub(crate) actions: Vec<String>,
}

/// Distribution's `ClaimSet`, with Go's zero values for missing members.
#[derive(Debug, Deserialize)]
pub(crate) struct Claims28 {
    #[serde(default)]
    pub(crate) iss: String,
    #[serde(default)]
    pub(crate) sub: String,
    #[serde(default)]
    pub(crate) aud: String,
    #[serde(default)]
    pub(crate) exp: i64,
    #[serde(default)]
    pub(crate) nbf: i64,
    #[serde(default)]
    pub(crate) iat: i64,
    #[serde(default)]
    pub(crate) jti: String,
    #[serde(default)]
    pub(crate) access: Vec<ResourceActions>,
}

enum Key {
    Rsa(Vec<u8>),
    Ec { curve_size: usize, point: Vec<u8> },
}

/// Accepts any EKU, like Go's `x509.ExtKeyUsageAny`.
struct AnyEku;

impl webpki::ExtendedKeyUsageValidator for AnyEku {
    fn validate(&self, _iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

impl Registry28 {
    pub(crate) fn new(issuer: &str, service: &str, roots: Vec<CertificateDer<'static>>) -> Self {
        Self {
            issuer: issuer.to_owned(),
            service: service.to_owned(),
            roots,
        }
    }

    pub(crate) fn verify(&self, token: &str, now: SystemTime) -> Result<Claims28, Reject> {
        let parts: Vec<&str> = token.split('.').collect();
        let [header_b64, claims_b64, sig_b64] = parts.as_slice() else {
            return Err(Reject::Malformed);
        };
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| Reject::Malformed);
        let header: Header =
            serde_json::from_slice(&decode(header_b64)?).map_err(|_| Reject::Malformed)?;
        let claims: Claims28 =
            serde_json::from_slice(&decode(claims_b64)?).map_err(|_| Reject::Malformed)?;
        let signature = decode(sig_b64)?;

        if claims.iss != self.issuer {
            return Err(Reject::Issuer);
        }
        if claims.aud != self.service {
            return Err(Reject::Audience);
        }
        if now > unix(claims.exp) + LEEWAY {
            return Err(Reject::Expired);
        }
        if now + LEEWAY < unix(claims.nbf) {
            return Err(Reject::NotYetValid);
        }
        if signature.is_empty() {
            return Err(Reject::EmptySignature);
        }

        let key = if !header.x5c.is_empty() {
            self.key_from_x5c(&header.x5c, now)?
        } else if header.jwk.is_some() {
            return Err(Reject::JwkNotModelled);
        } else if !header.kid.is_empty() {
            self.key_from_kid(&header.kid)?
        } else {
            return Err(Reject::NoKey);
        };

        let signed = &token[..header_b64.len() + 1 + claims_b64.len()];
        verify_libtrust(&key, &header.alg, signed.as_bytes(), &signature)?;
        Ok(claims)
    }

    fn key_from_x5c(&self, x5c: &[String], now: SystemTime) -> Result<Key, Reject> {
        let certs: Vec<CertificateDer<'static>> = x5c
            .iter()
            .map(|c| STANDARD.decode(c).map(CertificateDer::from))
            .collect::<Result<_, _>>()
            .map_err(|_| Reject::X5cEncoding)?;
        let (leaf, intermediates) = certs.split_first().ok_or(Reject::X5cEncoding)?;
        let anchors: Vec<_> = self
            .roots
            .iter()
            .map(|r| webpki::anchor_from_trusted_cert(r).map(|a| a.to_owned()))
            .collect::<Result<_, _>>()
            .map_err(|_| Reject::Chain)?;
        let ee = webpki::EndEntityCert::try_from(leaf).map_err(|_| Reject::Chain)?;
        let time =
            UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).map_err(|_| Reject::Chain)?);
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            intermediates,
            time,
            AnyEku,
            None,
            None,
        )
        .map_err(|_| Reject::Chain)?;
        key_of_cert(leaf)
    }

    fn key_from_kid(&self, kid: &str) -> Result<Key, Reject> {
        for root in &self.roots {
            let (_, cert) =
                x509_parser::parse_x509_certificate(root).map_err(|_| Reject::UntrustedKid)?;
            if libtrust_key_id(cert.public_key().raw) == kid {
                return key_of_cert(root);
            }
        }
        Err(Reject::UntrustedKid)
    }
}

fn unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn key_of_cert(der: &CertificateDer<'_>) -> Result<Key, Reject> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| Reject::UnsupportedKey)?;
    let spki = cert.public_key();
    let data = spki.subject_public_key.data.to_vec();
    if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION {
        return Ok(Key::Rsa(data));
    }
    if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or(Reject::UnsupportedKey)?;
        let curve_size = if curve == OID_EC_P256 {
            32
        } else if curve == OID_NIST_EC_P384 {
            48
        } else if curve == OID_NIST_EC_P521 {
            66
        } else {
            return Err(Reject::UnsupportedKey);
        };
        return Ok(Key::Ec {
            curve_size,
            point: data,
        });
    }
    Err(Reject::UnsupportedKey)
}

fn verify_libtrust(key: &Key, alg: &str, signed: &[u8], sig: &[u8]) -> Result<(), Reject> {
    let (algorithm, public): (&'static dyn VerificationAlgorithm, &[u8]) = match key {
        Key::Rsa(pkcs1) => {
            let a: &'static dyn VerificationAlgorithm = match alg {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                _ => return Err(Reject::Algorithm),
            };
            (a, pkcs1)
        }
        Key::Ec { curve_size, point } => {
            let (expected_alg, a): (&str, &'static dyn VerificationAlgorithm) = match curve_size {
                32 => ("ES256", &signature::ECDSA_P256_SHA256_FIXED),
                48 => ("ES384", &signature::ECDSA_P384_SHA384_FIXED),
                _ => ("ES512", &signature::ECDSA_P521_SHA512_FIXED),
            };
            if alg != expected_alg {
                return Err(Reject::Algorithm);
            }
            if sig.len() != 2 * curve_size {
                return Err(Reject::SignatureLength);
            }
            (a, point)
        }
    };
    UnparsedPublicKey::new(algorithm, public)
        .verify(signed, sig)
        .map_err(|_| Reject::Signature)
}
