//! Error types. Messages never contain a token, a key or key material.

use std::fmt;
use std::path::PathBuf;

use crate::keys::SigningAlgorithm;

/// A string claim of the token, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// `aud`: the registry's `service`.
    Audience,
    /// `iss`: the registry's configured issuer.
    Issuer,
    /// `sub`: the SPIFFE ID.
    Subject,
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Audience => "aud",
            Self::Issuer => "iss",
            Self::Subject => "sub",
        })
    }
}

/// Why a token was not minted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The requested lifetime is below [`crate::MIN_TOKEN_TTL`]; clients treat anything shorter as
    /// 60 s anyway and would use an expired token.
    #[error("token ttl of {ttl_secs} s is below the minimum of {min_secs} s")]
    TtlTooShort {
        /// The requested lifetime in whole seconds.
        ttl_secs: u64,
        /// [`crate::MIN_TOKEN_TTL`], in whole seconds.
        min_secs: u64,
    },
    /// The requested lifetime exceeds the key ring's `max_token_ttl`, which the leaf rotation is
    /// sized for.
    #[error("token ttl of {ttl_secs} s exceeds the key ring's maximum of {max_secs} s")]
    TtlTooLong {
        /// The requested lifetime in whole seconds.
        ttl_secs: u64,
        /// The key ring's `max_token_ttl`, in whole seconds.
        max_secs: u64,
    },
    /// A string claim is empty.
    #[error("claim {claim} is empty")]
    EmptyClaim {
        /// Which claim.
        claim: Claim,
    },
    /// A string claim is longer than its cap.
    #[error("claim {claim} is {len} bytes long, at most {max} allowed")]
    ClaimTooLong {
        /// Which claim.
        claim: Claim,
        /// The value's length in bytes (the value itself is not kept).
        len: usize,
        /// The claim's cap in bytes: [`svid_broker_identity::limits::MAX_ISSUER_LEN`] for `iss`,
        /// [`svid_broker_identity::limits::MAX_SERVICE_LEN`] for `aud`,
        /// [`svid_broker_identity::id::MAX_SPIFFE_ID_LEN`] for `sub`.
        max: usize,
    },
    /// A string claim contains a control character.
    #[error("claim {claim} contains a control character")]
    ClaimControlChar {
        /// Which claim.
        claim: Claim,
    },
    /// More access entries than [`crate::MAX_ACCESS_ENTRIES`].
    #[error("{count} access entries given, at most {max} allowed")]
    TooManyAccessEntries {
        /// Entries in the request, counted before duplicates are merged.
        count: usize,
        /// The cap, [`crate::MAX_ACCESS_ENTRIES`].
        max: usize,
    },
    /// An access entry's type does not match `[a-z0-9]+ ['(' [a-z0-9]+ ')']`.
    #[error("access entry {index} has an invalid resource type")]
    InvalidResourceType {
        /// 0-based position of the entry in the request.
        index: usize,
    },
    /// An access entry's name is empty.
    #[error("access entry {index} has an empty resource name")]
    EmptyResourceName {
        /// 0-based position of the entry in the request.
        index: usize,
    },
    /// An access entry's name is longer than [`svid_broker_identity::limits::MAX_REPOSITORY_NAME_LEN`].
    #[error("access entry {index} has a resource name of {len} bytes, at most {max} allowed")]
    ResourceNameTooLong {
        /// 0-based position of the entry in the request.
        index: usize,
        /// The name's length in bytes (the name itself is not kept).
        len: usize,
        /// The cap, [`svid_broker_identity::limits::MAX_REPOSITORY_NAME_LEN`] bytes.
        max: usize,
    },
    /// An access entry's name contains whitespace or a control character.
    #[error("access entry {index} has a resource name with whitespace or a control character")]
    InvalidResourceName {
        /// 0-based position of the entry in the request.
        index: usize,
    },
    /// An access entry lists more actions than [`crate::MAX_ACTIONS_PER_ENTRY`].
    #[error("access entry {index} lists {count} actions, at most {max} allowed")]
    TooManyActions {
        /// 0-based position of the entry in the request.
        index: usize,
        /// Actions the entry lists, counted before duplicates are merged.
        count: usize,
        /// The cap, [`crate::MAX_ACTIONS_PER_ENTRY`].
        max: usize,
    },
    /// An action is neither `*` nor `[a-z]+` of at most [`svid_broker_identity::limits::MAX_ACTION_LEN`] bytes.
    #[error("access entry {index} has an invalid action at position {action_index}")]
    InvalidAction {
        /// 0-based position of the entry in the request.
        index: usize,
        /// 0-based position of the action in the entry.
        action_index: usize,
    },
    /// `now` (or `now` plus the lifetime) cannot be written as a NumericDate.
    #[error("time out of range for a token")]
    TimeOutOfRange,
    /// The current signing leaf would expire before the token plus the registry's leeway.
    /// Rotation prevents this; the check is a last line of defence.
    #[error(
        "signing leaf ends at {leaf_not_after} but the token needs it until {required} (unix seconds)"
    )]
    LeafTooShortLived {
        /// The leaf's `notAfter`, unix seconds.
        leaf_not_after: u64,
        /// The token's `exp` plus the registry leeway, unix seconds.
        required: u64,
    },
    /// Rotating the signing leaf failed.
    #[error("signing key rotation failed")]
    Rotation(#[source] KeyError),
    /// The system random generator failed while making the `jti`.
    #[error("random generator failed")]
    Random,
    /// aws-lc-rs failed to sign.
    #[error("token signing failed")]
    Signing,
}

/// Which file a PEM error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PemSource {
    /// The CA certificate chain PEM, the signing CA first.
    Certificate,
    /// The CA private key PEM; errors about it never quote its content.
    PrivateKey,
}

impl fmt::Display for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Certificate => "ca certificate",
            Self::PrivateKey => "ca private key",
        })
    }
}

/// Which key-ring setting broke a rotation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotationRule {
    /// `rotate_when_remaining` must be at least `max_token_ttl` + registry leeway + margin, so
    /// a leaf always outlives every token it signs.
    RotateTooLate,
    /// `leaf_lifetime - rotate_when_remaining` must be at least `max_token_ttl` + registry leeway,
    /// so a leaf stays in the JWKS (as the previous one) until its last token has expired.
    LeafTooShort,
    /// `leaf_lifetime` is above [`crate::MAX_LEAF_LIFETIME`].
    LeafTooLong,
    /// `max_token_ttl` is below [`crate::MIN_TOKEN_TTL`].
    MaxTtlTooShort,
}

impl fmt::Display for RotationRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RotateTooLate => {
                "rotate_when_remaining must be at least max_token_ttl + 60 s leeway + margin"
            }
            Self::LeafTooShort => {
                "leaf_lifetime - rotate_when_remaining must be at least max_token_ttl + 60 s leeway"
            }
            Self::LeafTooLong => "leaf_lifetime is above the maximum",
            Self::MaxTtlTooShort => "max_token_ttl is below the minimum token ttl",
        })
    }
}

/// Why a signing CA or key ring could not be loaded, generated or rotated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading a PEM file failed.
    #[error("reading {source_kind} file {path}")]
    Io {
        /// What the file should hold.
        source_kind: PemSource,
        /// The path as the caller gave it.
        path: PathBuf,
        /// From opening or reading; `InvalidData` when the file is not UTF-8.
        #[source]
        source: std::io::Error,
    },
    /// A PEM input is larger than [`crate::MAX_PEM_LEN`].
    #[error("{source_kind} pem is {len} bytes, at most {max} allowed")]
    PemTooLarge {
        /// Whether the certificate or the key input is too large.
        source_kind: PemSource,
        /// Bytes seen: `max + 1` for a file (reading stops one past the cap), the whole
        /// length for text given directly.
        len: usize,
        /// The cap, [`crate::MAX_PEM_LEN`] bytes.
        max: usize,
    },
    /// A PEM input could not be parsed. The parser's error is dropped on purpose: it could quote
    /// parts of a private key file.
    #[error("{source_kind} pem is malformed")]
    MalformedPem {
        /// Whether the certificate or the key input is malformed.
        source_kind: PemSource,
    },
    /// The certificate PEM holds no `CERTIFICATE` block.
    #[error("ca certificate pem holds no certificate")]
    NoCaCertificate,
    /// The certificate PEM holds more than [`crate::MAX_CA_CERTS`] certificates.
    #[error("ca certificate pem holds {count} certificates, at most {max} allowed")]
    TooManyCaCertificates {
        /// PEM blocks in the certificate input, whatever their label.
        count: usize,
        /// The cap, [`crate::MAX_CA_CERTS`].
        max: usize,
    },
    /// A block in the certificate PEM is not a `CERTIFICATE`.
    #[error("ca certificate pem block {index} is {label:?}, expected CERTIFICATE")]
    UnexpectedCertificateLabel {
        /// 0-based position of the block in the certificate PEM.
        index: usize,
        /// The block's label (`PRIVATE KEY`, ...), cut to 64 characters.
        label: String,
    },
    /// A certificate is not valid DER X.509.
    #[error("ca certificate {index} is not valid der x.509")]
    MalformedCertificate {
        /// Position in the chain (0 = the signing CA).
        index: usize,
    },
    /// A certificate holds an Ed25519 or Ed448 key. Distribution 2.8 panics at startup on an
    /// Ed25519 certificate in its `rootcertbundle`, and rejects EdDSA tokens.
    #[error(
        "ca certificate {index} has an edwards-curve key: docker-registry 2.8 panics on ed25519 certificates in its rootcertbundle; use p-256, p-384 or rsa"
    )]
    EdwardsCurveRefused {
        /// Position in the chain (0 = the signing CA).
        index: usize,
    },
    /// The signing CA's key type is not P-256, P-384 or RSA.
    #[error("ca certificate {index} has an unsupported key type; use p-256, p-384 or rsa")]
    UnsupportedKeyType {
        /// Position in the chain (0 = the signing CA).
        index: usize,
    },
    /// An RSA key is shorter than [`crate::MIN_RSA_BITS`].
    #[error("rsa key is {bits} bits, at least {min} required")]
    RsaKeyTooSmall {
        /// The signing CA certificate's RSA modulus size, in bits.
        bits: usize,
        /// [`crate::MIN_RSA_BITS`].
        min: usize,
    },
    /// The signing CA certificate does not have basicConstraints cA=true.
    #[error("ca certificate is not a ca: basicConstraints cA is not true")]
    NotCa,
    /// The signing CA certificate has a keyUsage without keyCertSign.
    #[error("ca certificate keyUsage lacks keyCertSign")]
    CaCannotSignCertificates,
    /// A certificate of the chain is not valid now.
    #[error(
        "ca certificate {index} is not valid now: valid from {not_before} to {not_after} (unix seconds)"
    )]
    CertificateNotValidNow {
        /// Position in the chain (0 = the signing CA).
        index: usize,
        /// Its `notBefore`, unix seconds.
        not_before: i64,
        /// Its `notAfter`, unix seconds.
        not_after: i64,
    },
    /// The key PEM holds no `PRIVATE KEY` block.
    #[error("ca private key pem holds no PRIVATE KEY (pkcs#8) block")]
    NoPrivateKey,
    /// The key PEM holds a key in a format other than unencrypted PKCS#8.
    #[error(
        "ca private key pem block {label:?} is not supported; convert it to unencrypted pkcs#8 (PRIVATE KEY)"
    )]
    UnsupportedKeyFormat {
        /// The label (`RSA PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`, ...), cut to 64 characters.
        label: String,
    },
    /// The private key is not a valid PKCS#8 key of the CA certificate's key type.
    #[error("ca private key is not a valid pkcs#8 key of the certificate's key type")]
    MalformedPrivateKey,
    /// The private key does not belong to the CA certificate.
    #[error("ca private key does not match the ca certificate's public key")]
    KeyMismatch,
    /// The key store holding the CA key did not sign (unreachable, refused, or answered
    /// something unusable).
    #[error("the ca key's key store did not sign")]
    ExternalKey {
        /// The key store's error.
        #[source]
        source: crate::external::ExternalKeyError,
    },
    /// The key store's public key broke a rule (not the asked algorithm, malformed).
    #[error("the ca key in {store} is unusable: {rule}")]
    ExternalPublicKey {
        /// The store's [`crate::external::ExternalKey::describe`]: never a PIN or other secret.
        store: String,
        /// The rule the public key broke (`RSA public key is malformed`, a key-pair mismatch, ...).
        rule: &'static str,
    },
    /// A JWS algorithm name that is not one of ES256, ES384 and RS256.
    #[error(
        "signing algorithm {name:?} is not supported; use ES256, ES384 or RS256 (EdDSA, PS* and HS* are rejected by distribution 2.8)"
    )]
    UnsupportedAlgorithm {
        /// The name as given, cut to 32 characters.
        name: String,
    },
    /// A key-ring setting breaks a rotation rule.
    #[error("invalid key ring configuration: {rule}")]
    InvalidRotation {
        /// Which rule, and so which setting to change.
        rule: RotationRule,
    },
    /// The leaf common name is empty or longer than [`crate::MAX_LEAF_COMMON_NAME_LEN`].
    #[error("leaf common name is {len} bytes long, 1 to {max} allowed")]
    InvalidCommonName {
        /// The common name's length in bytes (0 when empty).
        len: usize,
        /// The cap, [`crate::MAX_LEAF_COMMON_NAME_LEN`] bytes.
        max: usize,
    },
    /// A new leaf would outlive the signing CA: it could not be verified for its whole life.
    #[error(
        "a new signing leaf would end at {leaf_not_after} but the ca ends at {ca_not_after} (unix seconds); renew the ca"
    )]
    CaExpiresTooSoon {
        /// The leaf's intended `notAfter`, unix seconds.
        leaf_not_after: u64,
        /// The CA's `notAfter`, unix seconds.
        ca_not_after: u64,
    },
    /// A time cannot be represented in a certificate.
    #[error("time out of range for a certificate")]
    TimeOutOfRange,
    /// The system random generator or aws-lc-rs failed to make a key.
    #[error("key generation with {algorithm} failed")]
    KeyGeneration {
        /// The algorithm of the key being made (also set when the random serial or derived
        /// secret for it could not be drawn).
        algorithm: SigningAlgorithm,
    },
    /// rcgen failed to build or sign a certificate.
    #[error("certificate generation failed")]
    Certificate(#[source] rcgen::Error),
}
