//! Standalone X.509-SVID verification against a per-trust-domain bundle set.
//!
//! [`verify`] takes a presented chain (leaf first, then intermediates), a [`BundleSet`] and the
//! time to check at, and returns the leaf's [`SpiffeId`] plus a few facts about the chain. It runs,
//! in this order, and stops at the first failure:
//!
//! 1. **Caps**: the chain is non-empty, at most [`X509VerifyOptions::max_chain_len`] certificates
//!    (default [`DEFAULT_MAX_CHAIN_LEN`]) and each certificate at most
//!    [`X509VerifyOptions::max_cert_der_len`] bytes (default [`DEFAULT_MAX_CERT_DER_LEN`]).
//! 2. **Leaf profile** (X509-SVID §2, §4.3, §5.2), one function shared with the rustls verifiers
//!    and [`check_leaf`]: exactly one URI SAN (a second one is refused even when it is not a
//!    `spiffe://` URI), a strictly parsed SPIFFE ID with a non-root path, basicConstraints present
//!    with `cA` false, keyUsage present with digitalSignature and without keyCertSign/cRLSign, the
//!    extended key usage allowed by [`EkuPolicy`], and a key of an allowed type (RSA of
//!    [`MIN_RSA_KEY_BITS`] to [`MAX_RSA_KEY_BITS`] bits, ECDSA P-256/P-384, Ed25519).
//! 3. **Intermediates**: basicConstraints `cA` true and keyUsage with keyCertSign (§4.3).
//! 4. **Validity** of the leaf and every intermediate at `now`; the error names which certificate
//!    (by index in the presented chain, 0 = leaf).
//! 5. **Bundle selection by the leaf's trust domain only** (Workload API §4.6, Federation §7.3).
//!    There is no fallback to another trust domain's bundle and bundles are never pooled.
//! 6. **URI name constraints**: rustls-webpki fails closed on them with a generic error, so a chain
//!    whose intermediates, or whose possible trust anchors, carry a URI subtree is refused with
//!    [`X509SvidError::UriNameConstraintsUnsupported`] before path validation.
//! 7. **RFC 5280 path validation** by rustls-webpki against that bundle's trust anchors, with the
//!    signature algorithms in [`SUPPORTED_SIG_ALGS`].
//!
//! # Decisions
//! - **No basicConstraints on the leaf is refused** ([`X509SvidError::LeafMissingBasicConstraints`]).
//!   RFC 5280 reads its absence as "not a CA", but SPIFFE issuers always set it and the `spiffe`
//!   crate refuses it too; accepting it would make the leaf/CA distinction rest on a default.
//! - **keyUsage criticality is not checked** (§4.3 is an issuer-side MUST; no peer checks it).
//! - **EKU**: the leaf is checked here against [`EkuPolicy`]; the default, [`EkuPolicy::Spiffe`],
//!   accepts a leaf with no EKU or one whose EKU has both serverAuth and clientAuth (§4.4), which
//!   is what an SVID usable for both sides of mTLS looks like. webpki's own EKU check is given a
//!   validator that accepts anything, so the EKU of CA certificates is not constrained (as in
//!   go-spiffe, which verifies with "any"); webpki still refuses an *empty* EKU extension.
//! - **URI name constraints are refused, not implemented**: webpki evaluates name constraints
//!   itself during path building and fails closed on URI subtrees, so a correct implementation
//!   here could not make such a chain pass; the specific error at least says why (§4.2 warns that
//!   libraries without support reject these chains). DNS/IP/email constraints are enforced by
//!   webpki as usual.
//! - Not checked: revocation (SPIFFE relies on short-lived SVIDs), the validity of trust anchors
//!   (RFC 5280 treats them as inputs), and the issuer-side rule that the URI SAN is critical when
//!   the subject is empty.
//!
//! Test fixtures are minted by the rcgen generator in `x509/fixtures.rs`, one function per defect.

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::Rfc3339;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, GeneralSubtree, NameConstraints};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::bundle::BundleSet;
use crate::id::{IdError, SpiffeId, TrustDomain};

/// Default cap on the number of certificates in a presented chain (leaf included).
///
/// rustls-webpki additionally refuses paths with more than 6 intermediates
/// ([`X509SvidError::PathTooDeep`]), so chains of 8 certificates only pass when some presented
/// intermediates are not needed for the path.
pub const DEFAULT_MAX_CHAIN_LEN: usize = 8;

/// Default cap on the DER size of one certificate, in bytes.
///
/// SPIRE-issued SVIDs are well under 2 KiB; 16 KiB leaves room for long DNS SAN lists while
/// bounding the parse work an attacker can ask for.
pub const DEFAULT_MAX_CERT_DER_LEN: usize = 16 * 1024;

/// Smallest RSA modulus, in bits, accepted for the leaf key (and, via webpki's algorithms, for
/// RSA issuers).
pub const MIN_RSA_KEY_BITS: usize = 2048;

/// Largest RSA modulus, in bits, accepted for the leaf key; matches webpki's `*_2048_8192_*`
/// algorithms so the leaf can always be used to verify a handshake signature.
pub const MAX_RSA_KEY_BITS: usize = 8192;

/// Signature algorithms accepted on certificates in the chain: ECDSA P-256/P-384 with SHA-256/384,
/// Ed25519, RSA PKCS#1 v1.5 (SHA-256/384/512) and RSA-PSS (SHA-256/384/512), RSA keys of 2048 to
/// 8192 bits. P-521 and SHA-1 are not accepted.
pub static SUPPORTED_SIG_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::aws_lc_rs::ECDSA_P256_SHA256,
    webpki::aws_lc_rs::ECDSA_P256_SHA384,
    webpki::aws_lc_rs::ECDSA_P384_SHA256,
    webpki::aws_lc_rs::ECDSA_P384_SHA384,
    webpki::aws_lc_rs::ED25519,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA384,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA512,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

// === options ===

/// Which extended key usage the leaf may carry.
///
/// An absent EKU extension is accepted under every policy (RFC 5280 §4.2.1.12: no restriction).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EkuPolicy {
    /// X509-SVID §4.4: if present, the EKU contains both serverAuth and clientAuth.
    #[default]
    Spiffe,
    /// If present, the EKU contains serverAuth (a TLS server's certificate).
    ServerAuth,
    /// If present, the EKU contains clientAuth (a TLS client's certificate).
    ClientAuth,
    /// The leaf's EKU is not checked.
    Ignore,
}

/// Knobs for [`verify_with`]. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct X509VerifyOptions {
    /// Most certificates a presented chain may hold, leaf included.
    pub max_chain_len: usize,
    /// Most DER bytes one certificate may have.
    pub max_cert_der_len: usize,
    /// What the leaf's extended key usage must allow.
    pub eku: EkuPolicy,
}

impl Default for X509VerifyOptions {
    fn default() -> Self {
        Self {
            max_chain_len: DEFAULT_MAX_CHAIN_LEN,
            max_cert_der_len: DEFAULT_MAX_CERT_DER_LEN,
            eku: EkuPolicy::Spiffe,
        }
    }
}

impl X509VerifyOptions {
    /// [`DEFAULT_MAX_CHAIN_LEN`], [`DEFAULT_MAX_CERT_DER_LEN`] and [`EkuPolicy::Spiffe`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`Self::max_chain_len`].
    #[must_use]
    pub fn with_max_chain_len(mut self, max: usize) -> Self {
        self.max_chain_len = max;
        self
    }

    /// Sets [`Self::max_cert_der_len`].
    #[must_use]
    pub fn with_max_cert_der_len(mut self, max: usize) -> Self {
        self.max_cert_der_len = max;
        self
    }

    /// Sets [`Self::eku`].
    #[must_use]
    pub fn with_eku(mut self, eku: EkuPolicy) -> Self {
        self.eku = eku;
        self
    }
}

// === result ===

/// The type of the leaf's public key, as accepted by the leaf profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeafKeyAlgorithm {
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA with a modulus of `bits` bits.
    Rsa {
        /// The modulus's exact length in bits, within [`MIN_RSA_KEY_BITS`]..=[`MAX_RSA_KEY_BITS`].
        bits: usize,
    },
}

/// A chain that passed [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedX509Svid {
    spiffe_id: SpiffeId,
    not_before: SystemTime,
    not_after: SystemTime,
    chain_not_before: SystemTime,
    chain_not_after: SystemTime,
    serial_hex: String,
    chain_len: usize,
    key_algorithm: LeafKeyAlgorithm,
}

impl VerifiedX509Svid {
    /// The leaf's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The latest notBefore of any presented certificate (leaf and intermediates): before it,
    /// this chain would not verify. Trust anchors are not included (RFC 5280 inputs).
    pub fn chain_not_before(&self) -> SystemTime {
        self.chain_not_before
    }

    /// The earliest notAfter of any presented certificate: after it, this chain would not
    /// verify. Callers that cache a verification (for example per TLS connection) must not use
    /// it past this instant.
    pub fn chain_not_after(&self) -> SystemTime {
        self.chain_not_after
    }

    /// The leaf's SPIFFE ID, by value.
    pub fn into_spiffe_id(self) -> SpiffeId {
        self.spiffe_id
    }

    /// The leaf's notBefore.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// The leaf's notAfter.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The leaf's serial number as lower-case hex of its DER content bytes (no separators).
    pub fn serial_hex(&self) -> &str {
        &self.serial_hex
    }

    /// How many certificates were presented (leaf included).
    pub fn chain_len(&self) -> usize {
        self.chain_len
    }

    /// The leaf's key type.
    pub fn key_algorithm(&self) -> LeafKeyAlgorithm {
        self.key_algorithm
    }
}

// === errors ===

/// An X.509 extension named in an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CertExtension {
    /// basicConstraints (2.5.29.19).
    BasicConstraints,
    /// keyUsage (2.5.29.15).
    KeyUsage,
    /// extKeyUsage (2.5.29.37).
    ExtendedKeyUsage,
    /// subjectAltName (2.5.29.17).
    SubjectAltName,
    /// nameConstraints (2.5.29.30).
    NameConstraints,
}

impl fmt::Display for CertExtension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BasicConstraints => "basicConstraints",
            Self::KeyUsage => "keyUsage",
            Self::ExtendedKeyUsage => "extKeyUsage",
            Self::SubjectAltName => "subjectAltName",
            Self::NameConstraints => "nameConstraints",
        })
    }
}

/// Where a URI name constraint was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameConstraintsLocation {
    /// On the presented intermediate at this index (0 is the leaf).
    Intermediate {
        /// Index in the presented chain.
        index: usize,
    },
    /// On a trust anchor of the bundle that issued one of the presented certificates.
    TrustAnchor,
}

impl fmt::Display for NameConstraintsLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Intermediate { index } => write!(f, "intermediate certificate {index}"),
            Self::TrustAnchor => f.write_str("a trust anchor"),
        }
    }
}

/// Why a presented chain is not a valid X.509-SVID. Certificate indexes count from 0 = leaf in the
/// presented chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum X509SvidError {
    /// No certificate was presented.
    #[error("the certificate chain is empty")]
    EmptyChain,
    /// More certificates than [`X509VerifyOptions::max_chain_len`].
    #[error("the certificate chain has {len} certificates, the maximum is {max}")]
    ChainTooLong {
        /// Presented chain length.
        len: usize,
        /// The options' [`X509VerifyOptions::max_chain_len`].
        max: usize,
    },
    /// A certificate is larger than [`X509VerifyOptions::max_cert_der_len`].
    #[error("certificate {index} is {len} bytes long, the maximum is {max}")]
    CertTooLarge {
        /// Index in the presented chain.
        index: usize,
        /// The certificate's DER length in bytes.
        len: usize,
        /// The options' [`X509VerifyOptions::max_cert_der_len`] ([`DEFAULT_MAX_CERT_DER_LEN`] for
        /// [`leaf_spiffe_id`]), in bytes.
        max: usize,
    },
    /// A certificate is not DER-encoded X.509 (or has trailing bytes).
    #[error("certificate {index} is not a well-formed der x.509 certificate")]
    MalformedCertificate {
        /// Index in the presented chain.
        index: usize,
    },
    /// An extension is malformed or present more than once.
    #[error("certificate {index} has a malformed or duplicate {extension} extension")]
    MalformedExtension {
        /// Index in the presented chain.
        index: usize,
        /// Which extension.
        extension: CertExtension,
    },
    /// The leaf has no URI SAN (X509-SVID §2).
    #[error("the leaf has no uri subject alternative name")]
    LeafNoUriSan,
    /// The leaf has more than one URI SAN (X509-SVID §2, §5.2); the extra ones need not be
    /// SPIFFE IDs.
    #[error("the leaf has {count} uri subject alternative names, exactly one is allowed")]
    LeafMultipleUriSans {
        /// Number of URI SANs.
        count: usize,
    },
    /// The leaf's URI SAN is not a valid SPIFFE ID (strict parsing).
    #[error("the leaf uri san is not a valid spiffe id")]
    LeafInvalidSpiffeId {
        /// The SPIFFE ID parse error (also the error's `source()`).
        #[source]
        source: IdError,
    },
    /// The leaf's SPIFFE ID is a trust domain ID with no path (X509-SVID §5.2).
    #[error("the leaf spiffe id {id} has no path")]
    LeafRootPath {
        /// The leaf's SPIFFE ID, a trust domain ID (`spiffe://<trust domain>`).
        id: SpiffeId,
    },
    /// The leaf has no basicConstraints extension (our decision: see the module docs).
    #[error("the leaf has no basicConstraints extension")]
    LeafMissingBasicConstraints,
    /// The leaf has basicConstraints `cA` true (X509-SVID §5.2).
    #[error("the leaf is a ca certificate (basicConstraints ca is true)")]
    LeafIsCa,
    /// The leaf has no keyUsage extension (X509-SVID §4.3).
    #[error("the leaf has no keyUsage extension")]
    LeafMissingKeyUsage,
    /// The leaf's keyUsage lacks digitalSignature (X509-SVID §4.3).
    #[error("the leaf keyUsage lacks digitalSignature")]
    LeafNoDigitalSignature,
    /// The leaf's keyUsage has keyCertSign (X509-SVID §4.3, §5.2).
    #[error("the leaf keyUsage has keyCertSign")]
    LeafKeyCertSign,
    /// The leaf's keyUsage has cRLSign (X509-SVID §4.3, §5.2).
    #[error("the leaf keyUsage has cRLSign")]
    LeafCrlSign,
    /// The leaf's extended key usage does not satisfy the [`EkuPolicy`].
    #[error(
        "the leaf extKeyUsage (serverAuth: {server_auth}, clientAuth: {client_auth}) does not satisfy policy {policy:?}"
    )]
    LeafExtendedKeyUsage {
        /// The options' [`X509VerifyOptions::eku`] that refused the leaf.
        policy: EkuPolicy,
        /// Whether serverAuth is present.
        server_auth: bool,
        /// Whether clientAuth is present.
        client_auth: bool,
    },
    /// The leaf's RSA key size is outside [`MIN_RSA_KEY_BITS`]..=[`MAX_RSA_KEY_BITS`].
    #[error("the leaf rsa key has {bits} bits, allowed are {min} to {max}")]
    LeafRsaKeySize {
        /// The modulus's exact length in bits.
        bits: usize,
        /// [`MIN_RSA_KEY_BITS`].
        min: usize,
        /// [`MAX_RSA_KEY_BITS`].
        max: usize,
    },
    /// An intermediate's RSA key size is outside [`MIN_RSA_KEY_BITS`]..=[`MAX_RSA_KEY_BITS`].
    #[error("intermediate certificate {index} rsa key has {bits} bits, allowed are {min} to {max}")]
    IntermediateRsaKeySize {
        /// Index in the presented chain.
        index: usize,
        /// The modulus's exact length in bits.
        bits: usize,
        /// [`MIN_RSA_KEY_BITS`].
        min: usize,
        /// [`MAX_RSA_KEY_BITS`].
        max: usize,
    },
    /// Every trust anchor that could have issued the chain has an RSA key outside
    /// [`MIN_RSA_KEY_BITS`]..=[`MAX_RSA_KEY_BITS`].
    #[error(
        "the bundle's issuing authority has an rsa key of {bits} bits, allowed are {min} to {max}"
    )]
    TrustAnchorRsaKeySize {
        /// The modulus length in bits of the last such anchor checked.
        bits: usize,
        /// [`MIN_RSA_KEY_BITS`].
        min: usize,
        /// [`MAX_RSA_KEY_BITS`].
        max: usize,
    },
    /// The leaf's EC key is on a curve other than P-256 or P-384.
    #[error("the leaf ec key is on an unsupported curve ({curve_oid})")]
    LeafEcCurveUnsupported {
        /// Dotted OID of the named curve, or `"none"` when not a named curve.
        curve_oid: String,
    },
    /// The leaf's key is neither RSA, ECDSA nor Ed25519.
    #[error("the leaf key algorithm {algorithm_oid} is not supported")]
    LeafKeyAlgorithmUnsupported {
        /// Dotted OID of the SubjectPublicKeyInfo algorithm.
        algorithm_oid: String,
    },
    /// The leaf's public key cannot be parsed.
    #[error("the leaf public key is malformed")]
    LeafKeyMalformed,
    /// An intermediate lacks basicConstraints `cA` true (X509-SVID §4.3).
    #[error("intermediate certificate {index} is not a ca (basicConstraints ca missing or false)")]
    IntermediateNotCa {
        /// Index in the presented chain.
        index: usize,
    },
    /// An intermediate has no keyUsage extension (X509-SVID §4.3).
    #[error("intermediate certificate {index} has no keyUsage extension")]
    IntermediateMissingKeyUsage {
        /// Index in the presented chain.
        index: usize,
    },
    /// An intermediate's keyUsage lacks keyCertSign (X509-SVID §4.3).
    #[error("intermediate certificate {index} keyUsage lacks keyCertSign")]
    IntermediateNoKeyCertSign {
        /// Index in the presented chain.
        index: usize,
    },
    /// A certificate's notBefore is after its notAfter.
    #[error("certificate {index} has notBefore after notAfter")]
    InvalidValidityPeriod {
        /// Index in the presented chain.
        index: usize,
    },
    /// A certificate's notAfter is before the verification time.
    #[error(
        "certificate {index} expired (notAfter {}, now {})",
        Rfc3339(*.not_after),
        Rfc3339(*.now)
    )]
    CertExpired {
        /// Index in the presented chain.
        index: usize,
        /// The certificate's notAfter.
        not_after: SystemTime,
        /// The verification time the caller passed as `now`.
        now: SystemTime,
    },
    /// A certificate's notBefore is after the verification time.
    #[error(
        "certificate {index} is not valid yet (notBefore {}, now {})",
        Rfc3339(*.not_before),
        Rfc3339(*.now)
    )]
    CertNotYetValid {
        /// Index in the presented chain.
        index: usize,
        /// The certificate's notBefore.
        not_before: SystemTime,
        /// The verification time the caller passed as `now`.
        now: SystemTime,
    },
    /// The verification time is before 1970.
    #[error("the verification time is before the unix epoch")]
    TimeBeforeUnixEpoch,
    /// There is no X.509 bundle for the leaf's trust domain: the peer is untrusted.
    #[error("no x.509 bundle for trust domain {trust_domain}")]
    NoBundle {
        /// The leaf's trust domain.
        trust_domain: TrustDomain,
    },
    /// A CA in the path has a URI name constraint, which path validation does not implement.
    #[error("{location} has uri name constraints, which are not supported")]
    UriNameConstraintsUnsupported {
        /// The presented intermediate, or a trust anchor of the bundle, that has the constraint.
        location: NameConstraintsLocation,
    },
    /// No path from the leaf to a trust anchor of the leaf's bundle.
    #[error("the chain does not lead to a trust anchor of the bundle (unknown issuer)")]
    UnknownIssuer,
    /// A signature in the chain does not verify.
    #[error("a certificate signature in the chain is invalid")]
    BadSignature,
    /// A signature in the chain uses an algorithm (or key) outside [`SUPPORTED_SIG_ALGS`].
    #[error("a certificate in the chain uses an unsupported signature algorithm or key")]
    UnsupportedSignatureAlgorithm,
    /// A certificate's inner and outer signature algorithms differ.
    #[error("a certificate's signature algorithm does not match its tbsCertificate")]
    SignatureAlgorithmMismatch,
    /// A CA's pathLenConstraint is exceeded.
    #[error("a ca path length constraint is violated")]
    PathLenConstraintViolated,
    /// A (non-URI) name constraint is violated.
    #[error("a name constraint is violated")]
    NameConstraintViolation,
    /// The path needs more intermediates than path validation allows (6).
    #[error("the certificate path is too deep")]
    PathTooDeep,
    /// Path building gave up after its work budget.
    #[error("path building exceeded its work budget")]
    PathBuildingBudgetExceeded,
    /// A certificate in the path has a critical extension path validation does not understand.
    #[error("a certificate in the path has an unsupported critical extension")]
    UnsupportedCriticalExtension,
    /// A certificate in the path has an extKeyUsage extension with no purposes.
    #[error("a certificate in the path has an empty extKeyUsage extension")]
    EmptyExtendedKeyUsage,
    /// Any other path validation failure.
    #[error("certificate path validation failed")]
    PathValidation {
        /// The path validator's error.
        #[source]
        source: webpki::Error,
    },
}

// === entry points ===

/// Verifies an X.509-SVID chain (leaf first) against the bundle of the leaf's trust domain, with
/// the default [`X509VerifyOptions`]. See the module docs for the checks.
pub fn verify(
    chain: &[CertificateDer<'_>],
    bundles: &BundleSet,
    now: SystemTime,
) -> Result<VerifiedX509Svid, X509SvidError> {
    verify_with(chain, bundles, now, &X509VerifyOptions::default())
}

/// [`verify`] with explicit options.
pub fn verify_with(
    chain: &[CertificateDer<'_>],
    bundles: &BundleSet,
    now: SystemTime,
    options: &X509VerifyOptions,
) -> Result<VerifiedX509Svid, X509SvidError> {
    let (leaf, intermediates) = chain.split_first().ok_or(X509SvidError::EmptyChain)?;
    verify_parts(leaf, intermediates, bundles, now, options)
}

/// Checks only the leaf profile of one certificate (no chain, no time, no trust), returning its
/// SPIFFE ID: for checking an SVID one is about to present. The same function [`verify`] uses.
pub fn check_leaf(
    leaf: &CertificateDer<'_>,
    options: &X509VerifyOptions,
) -> Result<SpiffeId, X509SvidError> {
    check_size(0, leaf, options.max_cert_der_len)?;
    let cert = parse(0, leaf)?;
    leaf_profile(&cert, options.eku).map(|(id, _)| id)
}

/// Reads the SPIFFE ID from a leaf's single URI SAN, without any other check.
///
/// Meant for after a handshake whose verifier already ran [`verify`]; refuses what the leaf
/// profile refuses about the URI SAN (none, several, not a SPIFFE ID, no path).
pub fn leaf_spiffe_id(leaf: &CertificateDer<'_>) -> Result<SpiffeId, X509SvidError> {
    check_size(0, leaf, DEFAULT_MAX_CERT_DER_LEN)?;
    let cert = parse(0, leaf)?;
    uri_san_id(&cert)
}

/// The one implementation behind [`verify`], [`verify_with`] and the rustls verifiers.
pub(crate) fn verify_parts(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    bundles: &BundleSet,
    now: SystemTime,
    options: &X509VerifyOptions,
) -> Result<VerifiedX509Svid, X509SvidError> {
    let chain_len = intermediates.len() + 1;
    if chain_len > options.max_chain_len {
        return Err(X509SvidError::ChainTooLong {
            len: chain_len,
            max: options.max_chain_len,
        });
    }
    check_size(0, leaf, options.max_cert_der_len)?;
    for (i, der) in intermediates.iter().enumerate() {
        check_size(i + 1, der, options.max_cert_der_len)?;
    }
    let now_unix = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| X509SvidError::TimeBeforeUnixEpoch)?;
    let now_secs = i64::try_from(now_unix.as_secs()).unwrap_or(i64::MAX);

    let leaf_cert = parse(0, leaf)?;
    let (spiffe_id, key_algorithm) = leaf_profile(&leaf_cert, options.eku)?;
    let (not_before, not_after) = check_validity(0, &leaf_cert, now_secs, now)?;

    // Raw issuer names of every presented certificate: a trust anchor with one of these subjects
    // could end the path, so its name constraints matter.
    let mut issuers: Vec<&[u8]> = Vec::with_capacity(chain_len);
    issuers.push(leaf_cert.issuer().as_raw());
    let mut parsed = Vec::with_capacity(intermediates.len());
    let (mut chain_not_before, mut chain_not_after) = (not_before, not_after);
    for (i, der) in intermediates.iter().enumerate() {
        let index = i + 1;
        let cert = parse(index, der)?;
        intermediate_profile(index, &cert)?;
        let (nb, na) = check_validity(index, &cert, now_secs, now)?;
        chain_not_before = chain_not_before.max(nb);
        chain_not_after = chain_not_after.min(na);
        parsed.push(cert);
    }
    issuers.extend(parsed.iter().map(|c| c.issuer().as_raw()));

    let bundle = bundles
        .x509(spiffe_id.trust_domain())
        .ok_or_else(|| X509SvidError::NoBundle {
            trust_domain: spiffe_id.trust_domain().clone(),
        })?;
    let anchors = bundle.trust_anchors();
    check_anchor_name_constraints(anchors, &issuers)?;
    check_anchor_rsa_key_size(anchors, &issuers)?;

    let ee = webpki::EndEntityCert::try_from(leaf).map_err(map_webpki)?;
    ee.verify_for_usage(
        SUPPORTED_SIG_ALGS,
        anchors,
        intermediates,
        UnixTime::since_unix_epoch(now_unix),
        AnyEku,
        None,
        None,
    )
    .map_err(map_webpki)?;

    Ok(VerifiedX509Svid {
        spiffe_id,
        not_before,
        not_after,
        chain_not_before,
        chain_not_after,
        serial_hex: hex(leaf_cert.raw_serial()),
        chain_len,
        key_algorithm,
    })
}

// === leaf profile ===

/// The X.509-SVID leaf profile: the single function every path (verify, check_leaf, TLS) uses.
fn leaf_profile(
    cert: &X509Certificate<'_>,
    eku: EkuPolicy,
) -> Result<(SpiffeId, LeafKeyAlgorithm), X509SvidError> {
    let id = uri_san_id(cert)?;
    let malformed = |extension| X509SvidError::MalformedExtension {
        index: 0,
        extension,
    };

    match cert.basic_constraints() {
        Err(_) => return Err(malformed(CertExtension::BasicConstraints)),
        Ok(None) => return Err(X509SvidError::LeafMissingBasicConstraints),
        Ok(Some(bc)) if bc.value.ca => return Err(X509SvidError::LeafIsCa),
        Ok(Some(_)) => {}
    }

    let ku = cert
        .key_usage()
        .map_err(|_| malformed(CertExtension::KeyUsage))?
        .ok_or(X509SvidError::LeafMissingKeyUsage)?
        .value;
    if !ku.digital_signature() {
        return Err(X509SvidError::LeafNoDigitalSignature);
    }
    if ku.key_cert_sign() {
        return Err(X509SvidError::LeafKeyCertSign);
    }
    if ku.crl_sign() {
        return Err(X509SvidError::LeafCrlSign);
    }

    let ext_ku = cert
        .extended_key_usage()
        .map_err(|_| malformed(CertExtension::ExtendedKeyUsage))?;
    if let Some(ext_ku) = ext_ku {
        let (server_auth, client_auth) = (ext_ku.value.server_auth, ext_ku.value.client_auth);
        let ok = match eku {
            EkuPolicy::Spiffe => server_auth && client_auth,
            EkuPolicy::ServerAuth => server_auth,
            EkuPolicy::ClientAuth => client_auth,
            EkuPolicy::Ignore => true,
        };
        if !ok {
            return Err(X509SvidError::LeafExtendedKeyUsage {
                policy: eku,
                server_auth,
                client_auth,
            });
        }
    }

    let key = leaf_key_algorithm(cert.public_key())?;
    Ok((id, key))
}

/// Exactly one URI SAN, a strict SPIFFE ID, with a path.
fn uri_san_id(cert: &X509Certificate<'_>) -> Result<SpiffeId, X509SvidError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|_| X509SvidError::MalformedExtension {
            index: 0,
            extension: CertExtension::SubjectAltName,
        })?
        .ok_or(X509SvidError::LeafNoUriSan)?;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    let first = uris.next().ok_or(X509SvidError::LeafNoUriSan)?;
    let extra = uris.count();
    if extra > 0 {
        return Err(X509SvidError::LeafMultipleUriSans { count: extra + 1 });
    }
    let id =
        SpiffeId::parse(first).map_err(|source| X509SvidError::LeafInvalidSpiffeId { source })?;
    if id.is_trust_domain_id() {
        return Err(X509SvidError::LeafRootPath { id });
    }
    Ok(id)
}

fn leaf_key_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> Result<LeafKeyAlgorithm, X509SvidError> {
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(X509SvidError::LeafKeyMalformed);
        };
        let bits = unsigned_bits(rsa.modulus);
        if !(MIN_RSA_KEY_BITS..=MAX_RSA_KEY_BITS).contains(&bits) {
            return Err(X509SvidError::LeafRsaKeySize {
                bits,
                min: MIN_RSA_KEY_BITS,
                max: MAX_RSA_KEY_BITS,
            });
        }
        Ok(LeafKeyAlgorithm::Rsa { bits })
    } else if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) if c == OID_EC_P256 => Ok(LeafKeyAlgorithm::EcdsaP256),
            Some(c) if c == OID_NIST_EC_P384 => Ok(LeafKeyAlgorithm::EcdsaP384),
            other => Err(X509SvidError::LeafEcCurveUnsupported {
                curve_oid: other.map_or_else(|| "none".to_owned(), |c| c.to_id_string()),
            }),
        }
    } else if *alg == OID_SIG_ED25519 {
        Ok(LeafKeyAlgorithm::Ed25519)
    } else {
        Err(X509SvidError::LeafKeyAlgorithmUnsupported {
            algorithm_oid: alg.to_id_string(),
        })
    }
}

/// Bit length of a big-endian unsigned integer (leading zero bytes and bits ignored).
fn unsigned_bits(be: &[u8]) -> usize {
    let Some(start) = be.iter().position(|b| *b != 0) else {
        return 0;
    };
    let rest = &be[start..];
    // `leading_zeros` of a non-zero u8 is at most 7.
    rest.len() * 8 - rest[0].leading_zeros() as usize
}

// === intermediates ===

fn intermediate_profile(index: usize, cert: &X509Certificate<'_>) -> Result<(), X509SvidError> {
    let malformed = |extension| X509SvidError::MalformedExtension { index, extension };
    let is_ca = cert
        .basic_constraints()
        .map_err(|_| malformed(CertExtension::BasicConstraints))?
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(X509SvidError::IntermediateNotCa { index });
    }
    let ku = cert
        .key_usage()
        .map_err(|_| malformed(CertExtension::KeyUsage))?
        .ok_or(X509SvidError::IntermediateMissingKeyUsage { index })?
        .value;
    if !ku.key_cert_sign() {
        return Err(X509SvidError::IntermediateNoKeyCertSign { index });
    }
    // webpki would refuse a short RSA issuer key too, but only as a bad signature; say why.
    if let Some(bits) = rsa_bits_out_of_range(cert.public_key()) {
        return Err(X509SvidError::IntermediateRsaKeySize {
            index,
            bits,
            min: MIN_RSA_KEY_BITS,
            max: MAX_RSA_KEY_BITS,
        });
    }
    let nc = cert
        .name_constraints()
        .map_err(|_| malformed(CertExtension::NameConstraints))?;
    if nc.is_some_and(|nc| has_uri_subtree(nc.value)) {
        return Err(X509SvidError::UriNameConstraintsUnsupported {
            location: NameConstraintsLocation::Intermediate { index },
        });
    }
    Ok(())
}

fn has_uri_subtree(nc: &NameConstraints<'_>) -> bool {
    let is_uri = |s: &GeneralSubtree<'_>| matches!(s.base, GeneralName::URI(_));
    [&nc.permitted_subtrees, &nc.excluded_subtrees]
        .into_iter()
        .flatten()
        .any(|subtrees| subtrees.iter().any(is_uri))
}

/// Refuses when a trust anchor that could end the path (its subject is the issuer of a presented
/// certificate) has a URI name constraint. webpki stores the anchor's subject and name
/// constraints as DER contents without the outer SEQUENCE header.
fn check_anchor_name_constraints(
    anchors: &[TrustAnchor<'_>],
    issuers: &[&[u8]],
) -> Result<(), X509SvidError> {
    for anchor in anchors {
        let Some(nc) = anchor.name_constraints.as_deref() else {
            continue;
        };
        let subject: &[u8] = &anchor.subject;
        let issues_one = issuers
            .iter()
            .any(|raw| der_contents(raw).is_some_and(|c| c == subject));
        if !issues_one {
            continue;
        }
        let wrapped = der_sequence(nc);
        // An unparsable constraint is left to webpki, which fails closed on it.
        if let Ok((_, parsed)) = NameConstraints::from_der(&wrapped)
            && has_uri_subtree(&parsed)
        {
            return Err(X509SvidError::UriNameConstraintsUnsupported {
                location: NameConstraintsLocation::TrustAnchor,
            });
        }
    }
    Ok(())
}

/// The modulus size of an RSA key outside the allowed range; `None` for a fitting RSA key or any
/// other key type.
fn rsa_bits_out_of_range(spki: &SubjectPublicKeyInfo<'_>) -> Option<usize> {
    if spki.algorithm.algorithm != OID_PKCS1_RSAENCRYPTION {
        return None;
    }
    let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
        return None;
    };
    let bits = unsigned_bits(rsa.modulus);
    (!(MIN_RSA_KEY_BITS..=MAX_RSA_KEY_BITS).contains(&bits)).then_some(bits)
}

/// Refuses when every trust anchor that could end the path has an RSA key of a size webpki's
/// algorithms refuse, so the failure names the key size instead of a bad signature. When any
/// candidate is acceptable, path validation decides.
fn check_anchor_rsa_key_size(
    anchors: &[TrustAnchor<'_>],
    issuers: &[&[u8]],
) -> Result<(), X509SvidError> {
    let mut too_weak = None;
    for anchor in anchors {
        let subject: &[u8] = &anchor.subject;
        if !issuers
            .iter()
            .any(|raw| der_contents(raw).is_some_and(|c| c == subject))
        {
            continue;
        }
        let wrapped = der_sequence(&anchor.subject_public_key_info);
        let bits = SubjectPublicKeyInfo::from_der(&wrapped)
            .ok()
            .and_then(|(_, spki)| rsa_bits_out_of_range(&spki));
        match bits {
            Some(bits) => too_weak = Some(bits),
            None => return Ok(()),
        }
    }
    match too_weak {
        Some(bits) => Err(X509SvidError::TrustAnchorRsaKeySize {
            bits,
            min: MIN_RSA_KEY_BITS,
            max: MAX_RSA_KEY_BITS,
        }),
        None => Ok(()),
    }
}

/// The contents of one DER TLV (tag and definite length stripped).
fn der_contents(tlv: &[u8]) -> Option<&[u8]> {
    let first = *tlv.get(1)?;
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = tlv.get(2..2 + n)?;
        let len = bytes
            .iter()
            .fold(0_usize, |acc, b| (acc << 8) | usize::from(*b));
        (2 + n, len)
    };
    tlv.get(header..header.checked_add(len)?)
}

fn der_sequence(contents: &[u8]) -> Vec<u8> {
    let len = contents.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(0x30);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

// === shared helpers ===

fn check_size(index: usize, der: &CertificateDer<'_>, max: usize) -> Result<(), X509SvidError> {
    let len = der.as_ref().len();
    if len > max {
        return Err(X509SvidError::CertTooLarge { index, len, max });
    }
    Ok(())
}

fn parse<'a>(
    index: usize,
    der: &'a CertificateDer<'_>,
) -> Result<X509Certificate<'a>, X509SvidError> {
    match X509Certificate::from_der(der.as_ref()) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(X509SvidError::MalformedCertificate { index }),
    }
}

/// webpki compares at whole seconds (`not_before <= now <= not_after`); this does the same so the
/// two never disagree, and names the certificate, which webpki cannot.
fn check_validity(
    index: usize,
    cert: &X509Certificate<'_>,
    now_secs: i64,
    now: SystemTime,
) -> Result<(SystemTime, SystemTime), X509SvidError> {
    let nb = cert.validity().not_before.timestamp();
    let na = cert.validity().not_after.timestamp();
    if nb > na {
        return Err(X509SvidError::InvalidValidityPeriod { index });
    }
    if now_secs < nb {
        return Err(X509SvidError::CertNotYetValid {
            index,
            not_before: unix_to_system(nb),
            now,
        });
    }
    if now_secs > na {
        return Err(X509SvidError::CertExpired {
            index,
            not_after: unix_to_system(na),
            now,
        });
    }
    Ok((unix_to_system(nb), unix_to_system(na)))
}

fn unix_to_system(secs: i64) -> SystemTime {
    let d = Duration::from_secs(secs.unsigned_abs());
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    };
    t.unwrap_or(UNIX_EPOCH)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// The leaf's EKU is checked by [`leaf_profile`] against the caller's [`EkuPolicy`]; CA EKUs are
/// deliberately unconstrained (see the module docs).
struct AnyEku;

impl webpki::ExtendedKeyUsageValidator for AnyEku {
    fn validate(&self, _iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

fn map_webpki(e: webpki::Error) -> X509SvidError {
    use webpki::Error as W;
    match e {
        W::UnknownIssuer => X509SvidError::UnknownIssuer,
        W::InvalidSignatureForPublicKey => X509SvidError::BadSignature,
        W::UnsupportedSignatureAlgorithmContext(_)
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            X509SvidError::UnsupportedSignatureAlgorithm
        }
        W::SignatureAlgorithmMismatch => X509SvidError::SignatureAlgorithmMismatch,
        W::CaUsedAsEndEntity => X509SvidError::LeafIsCa,
        W::PathLenConstraintViolated => X509SvidError::PathLenConstraintViolated,
        W::NameConstraintViolation => X509SvidError::NameConstraintViolation,
        W::MaximumPathDepthExceeded => X509SvidError::PathTooDeep,
        W::MaximumSignatureChecksExceeded
        | W::MaximumPathBuildCallsExceeded
        | W::MaximumNameConstraintComparisonsExceeded => X509SvidError::PathBuildingBudgetExceeded,
        W::UnsupportedCriticalExtension => X509SvidError::UnsupportedCriticalExtension,
        W::EmptyEkuExtension => X509SvidError::EmptyExtendedKeyUsage,
        other => X509SvidError::PathValidation { source: other },
    }
}
