//! Public keys of JWT authorities, parsed once when the bundle is built so that validating a token
//! costs one signature verification and nothing else.

use std::fmt;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::signature::{
    self, EcdsaVerificationAlgorithm, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents,
};

use crate::jwt::JwsAlgorithm;

/// Smallest RSA modulus accepted for a JWT authority, in bits.
pub const MIN_RSA_BITS: u32 = 2048;
/// Largest RSA modulus accepted for a JWT authority, in bits (the aws-lc-rs verification limit).
pub const MAX_RSA_BITS: u32 = 8192;

/// An elliptic curve a JWT authority key can be on (JWK `crv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EcCurve {
    /// NIST P-256, used with ES256.
    P256,
    /// NIST P-384, used with ES384.
    P384,
    /// NIST P-521, used with ES512.
    P521,
}

impl EcCurve {
    /// The JWK `crv` name (`P-256`, `P-384`, `P-521`).
    pub fn jwk_name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
        }
    }

    /// Parses a JWK `crv` name; names are case-sensitive.
    pub fn from_jwk_name(name: &str) -> Option<Self> {
        match name {
            "P-256" => Some(Self::P256),
            "P-384" => Some(Self::P384),
            "P-521" => Some(Self::P521),
            _ => None,
        }
    }

    /// Length in bytes of one coordinate (`x` or `y`); RFC 7518 §6.2.1.2 requires the full length.
    pub fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    /// The only JWS algorithm this curve may be used with.
    pub fn algorithm(self) -> JwsAlgorithm {
        match self {
            Self::P256 => JwsAlgorithm::Es256,
            Self::P384 => JwsAlgorithm::Es384,
            Self::P521 => JwsAlgorithm::Es512,
        }
    }

    fn verification(self) -> &'static EcdsaVerificationAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            Self::P384 => &signature::ECDSA_P384_SHA384_FIXED,
            Self::P521 => &signature::ECDSA_P521_SHA512_FIXED,
        }
    }
}

impl fmt::Display for EcCurve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jwk_name())
    }
}

/// Why public key material was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// An EC coordinate does not have the curve's full length.
    #[error("ec {curve} coordinate {coordinate} is {len} bytes, expected {expected}")]
    EcCoordinateLength {
        /// The curve the key was given as.
        curve: EcCurve,
        /// `"x"` or `"y"`.
        coordinate: &'static str,
        /// The coordinate's length in bytes.
        len: usize,
        /// The curve's full coordinate length in bytes.
        expected: usize,
    },
    /// An uncompressed EC point does not have the form `0x04 || x || y` for the curve.
    #[error("ec {curve} point is not an uncompressed point of {expected} bytes ({len} given)")]
    EcPointEncoding {
        /// The curve the key was given as.
        curve: EcCurve,
        /// The point's length in bytes.
        len: usize,
        /// The form's length in bytes: the `0x04` byte, then two full-length coordinates.
        expected: usize,
    },
    /// The EC point is not on the curve.
    #[error("ec point is not on curve {curve}")]
    EcPointNotOnCurve {
        /// The curve the point was checked against.
        curve: EcCurve,
    },
    /// The RSA modulus or exponent is empty or has leading zero bytes.
    #[error("rsa {component} is not a canonical unsigned big-endian integer")]
    RsaNotCanonical {
        /// `"n"` or `"e"`.
        component: &'static str,
    },
    /// The RSA modulus is shorter than [`MIN_RSA_BITS`].
    #[error("rsa modulus has {bits} bits, the minimum is {min}")]
    RsaTooSmall {
        /// The modulus's exact length in bits.
        bits: u32,
        /// [`MIN_RSA_BITS`].
        min: u32,
    },
    /// The RSA modulus is longer than [`MAX_RSA_BITS`].
    #[error("rsa modulus has {bits} bits, the maximum is {max}")]
    RsaTooLarge {
        /// The modulus's length in bits (saturated, never wrapped, for an absurdly long `n`).
        bits: u32,
        /// [`MAX_RSA_BITS`].
        max: u32,
    },
    /// aws-lc-rs rejected the RSA components (for example an even or out-of-range exponent).
    #[error("rsa public key components were rejected")]
    RsaRejected,
}

/// A JWT authority's public key, pre-parsed for aws-lc-rs verification.
///
/// Cheap to clone (reference counted). `Debug` shows the key type only.
#[derive(Clone)]
pub struct JwtPublicKey(Arc<Inner>);

enum Inner {
    Ec {
        curve: EcCurve,
        // Uncompressed SEC1 point, kept to write the JWK back out.
        point: Box<[u8]>,
        verifier: ParsedPublicKey,
    },
    Rsa {
        n: Box<[u8]>,
        e: Box<[u8]>,
        bits: u32,
        // One aws-lc-rs key per RSA algorithm, because a ParsedPublicKey is bound to its
        // padding and digest. RS256 is built eagerly (it also validates the components); the
        // others on first use, so a bundle of many RSA keys stays cheap to load.
        verifiers: Box<[OnceLock<Option<ParsedPublicKey>>; RSA_ALGS]>,
    },
}

const RSA_ALGS: usize = 6;

/// Outcome of a failed verification, for the validator to map to its own errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VerifyFailure {
    /// The algorithm does not fit this key's type, curve or size.
    KeyMismatch,
    /// The algorithm fits the key, but the signature does not verify under it.
    BadSignature,
}

impl JwtPublicKey {
    /// Builds an EC key from the JWK `x` and `y` coordinates (big-endian, full length).
    ///
    /// # Errors
    /// A coordinate of the wrong length, or a point that is not on the curve.
    pub fn ec(curve: EcCurve, x: &[u8], y: &[u8]) -> Result<Self, KeyError> {
        let expected = curve.coordinate_len();
        for (coordinate, value) in [("x", x), ("y", y)] {
            if value.len() != expected {
                return Err(KeyError::EcCoordinateLength {
                    curve,
                    coordinate,
                    len: value.len(),
                    expected,
                });
            }
        }
        let mut point = Vec::with_capacity(1 + 2 * expected);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        Self::ec_point(curve, &point)
    }

    /// Builds an EC key from an uncompressed SEC1 point (`0x04 || x || y`), the form
    /// `aws_lc_rs::signature::EcdsaKeyPair::public_key` returns.
    ///
    /// # Errors
    /// A point of the wrong form or length, or one that is not on the curve.
    pub fn ec_point(curve: EcCurve, point: &[u8]) -> Result<Self, KeyError> {
        let expected = 1 + 2 * curve.coordinate_len();
        if point.len() != expected || point.first() != Some(&0x04) {
            return Err(KeyError::EcPointEncoding {
                curve,
                len: point.len(),
                expected,
            });
        }
        let verifier = ParsedPublicKey::new(curve.verification(), point)
            .map_err(|_| KeyError::EcPointNotOnCurve { curve })?;
        Ok(Self(Arc::new(Inner::Ec {
            curve,
            point: point.into(),
            verifier,
        })))
    }

    /// Builds an RSA key from the modulus `n` and exponent `e` (canonical big-endian, no leading
    /// zero bytes), with a modulus of [`MIN_RSA_BITS`] to [`MAX_RSA_BITS`] bits.
    ///
    /// # Errors
    /// Non-canonical integers, a modulus out of range, or components aws-lc-rs rejects.
    pub fn rsa(n: &[u8], e: &[u8]) -> Result<Self, KeyError> {
        let bits = match n.first() {
            Some(&first) if first != 0 => {
                // Bounded by MAX_RSA_BITS below; a longer n fails the check instead of overflowing.
                let whole = u32::try_from(n.len() - 1)
                    .unwrap_or(u32::MAX / 16)
                    .saturating_mul(8);
                whole.saturating_add(8 - first.leading_zeros())
            }
            _ => return Err(KeyError::RsaNotCanonical { component: "n" }),
        };
        if e.first().is_none_or(|&b| b == 0) {
            return Err(KeyError::RsaNotCanonical { component: "e" });
        }
        if bits < MIN_RSA_BITS {
            return Err(KeyError::RsaTooSmall {
                bits,
                min: MIN_RSA_BITS,
            });
        }
        if bits > MAX_RSA_BITS {
            return Err(KeyError::RsaTooLarge {
                bits,
                max: MAX_RSA_BITS,
            });
        }
        // RS256 is slot 0 (see `rsa_algorithm`).
        let first = RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
            .map_err(|_| KeyError::RsaRejected)?;
        let verifiers = Box::new([
            OnceLock::from(Some(first)),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ]);
        Ok(Self(Arc::new(Inner::Rsa {
            n: n.into(),
            e: e.into(),
            bits,
            verifiers,
        })))
    }

    /// The curve, for an EC key.
    pub fn curve(&self) -> Option<EcCurve> {
        match &*self.0 {
            Inner::Ec { curve, .. } => Some(*curve),
            Inner::Rsa { .. } => None,
        }
    }

    /// The modulus size in bits, for an RSA key.
    pub fn rsa_bits(&self) -> Option<u32> {
        match &*self.0 {
            Inner::Rsa { bits, .. } => Some(*bits),
            Inner::Ec { .. } => None,
        }
    }

    /// The JWK `kty`: `"EC"` or `"RSA"`.
    pub fn kty(&self) -> &'static str {
        match &*self.0 {
            Inner::Ec { .. } => "EC",
            Inner::Rsa { .. } => "RSA",
        }
    }

    /// Whether tokens signed with `alg` can be verified with this key: ES256/384/512 need a key
    /// on P-256/P-384/P-521 respectively, RS* and PS* need an RSA key.
    pub fn supports(&self, alg: JwsAlgorithm) -> bool {
        match &*self.0 {
            Inner::Ec { curve, .. } => curve.algorithm() == alg,
            Inner::Rsa { .. } => rsa_algorithm(alg).is_some(),
        }
    }

    /// Verifies `signature` over `message` with `alg`.
    pub(crate) fn verify(
        &self,
        alg: JwsAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyFailure> {
        match &*self.0 {
            Inner::Ec {
                curve, verifier, ..
            } => {
                if curve.algorithm() != alg {
                    return Err(VerifyFailure::KeyMismatch);
                }
                verifier
                    .verify_sig(message, signature)
                    .map_err(|_| VerifyFailure::BadSignature)
            }
            Inner::Rsa {
                n, e, verifiers, ..
            } => {
                let (index, parameters) = rsa_algorithm(alg).ok_or(VerifyFailure::KeyMismatch)?;
                let slot = verifiers.get(index).ok_or(VerifyFailure::KeyMismatch)?;
                let verifier = slot.get_or_init(|| {
                    RsaPublicKeyComponents {
                        n: &n[..],
                        e: &e[..],
                    }
                    .to_parsed_public_key(parameters)
                    .ok()
                });
                match verifier {
                    Some(verifier) => verifier
                        .verify_sig(message, signature)
                        .map_err(|_| VerifyFailure::BadSignature),
                    // The RS256 key parsed, so this cannot happen with the same components; fail
                    // closed all the same.
                    None => Err(VerifyFailure::BadSignature),
                }
            }
        }
    }

    /// The JWK key members, for writing bundle documents.
    pub(crate) fn params(&self) -> KeyParams<'_> {
        match &*self.0 {
            Inner::Ec { curve, point, .. } => {
                let len = curve.coordinate_len();
                let coords = point.get(1..).unwrap_or_default();
                let (x, y) = coords.split_at(len.min(coords.len()));
                KeyParams::Ec {
                    curve: *curve,
                    x,
                    y,
                }
            }
            Inner::Rsa { n, e, .. } => KeyParams::Rsa { n, e },
        }
    }
}

/// JWK members of a public key, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyParams<'a> {
    Ec {
        curve: EcCurve,
        x: &'a [u8],
        y: &'a [u8],
    },
    Rsa {
        n: &'a [u8],
        e: &'a [u8],
    },
}

impl fmt::Debug for JwtPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Inner::Ec { curve, .. } => f
                .debug_struct("JwtPublicKey")
                .field("kty", &"EC")
                .field("crv", curve)
                .finish_non_exhaustive(),
            Inner::Rsa { bits, .. } => f
                .debug_struct("JwtPublicKey")
                .field("kty", &"RSA")
                .field("bits", bits)
                .finish_non_exhaustive(),
        }
    }
}

impl PartialEq for JwtPublicKey {
    fn eq(&self, other: &Self) -> bool {
        match (&*self.0, &*other.0) {
            (
                Inner::Ec {
                    curve: c1,
                    point: p1,
                    ..
                },
                Inner::Ec {
                    curve: c2,
                    point: p2,
                    ..
                },
            ) => c1 == c2 && p1 == p2,
            (Inner::Rsa { n: n1, e: e1, .. }, Inner::Rsa { n: n2, e: e2, .. }) => {
                n1 == n2 && e1 == e2
            }
            // Spelled out so a new key kind must say how it compares.
            (Inner::Ec { .. }, Inner::Rsa { .. }) | (Inner::Rsa { .. }, Inner::Ec { .. }) => false,
        }
    }
}

impl Eq for JwtPublicKey {}

/// The slot in `Inner::Rsa::verifiers` and the aws-lc-rs parameters of an RSA algorithm; `None`
/// for the EC ones. One exhaustive match, so a slot can never pair with another algorithm's
/// padding or digest.
fn rsa_algorithm(alg: JwsAlgorithm) -> Option<(usize, &'static RsaParameters)> {
    match alg {
        JwsAlgorithm::Rs256 => Some((0, &signature::RSA_PKCS1_2048_8192_SHA256)),
        JwsAlgorithm::Rs384 => Some((1, &signature::RSA_PKCS1_2048_8192_SHA384)),
        JwsAlgorithm::Rs512 => Some((2, &signature::RSA_PKCS1_2048_8192_SHA512)),
        JwsAlgorithm::Ps256 => Some((3, &signature::RSA_PSS_2048_8192_SHA256)),
        JwsAlgorithm::Ps384 => Some((4, &signature::RSA_PSS_2048_8192_SHA384)),
        JwsAlgorithm::Ps512 => Some((5, &signature::RSA_PSS_2048_8192_SHA512)),
        JwsAlgorithm::Es256 | JwsAlgorithm::Es384 | JwsAlgorithm::Es512 => None,
    }
}
