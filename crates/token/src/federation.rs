//! The broker as an OIDC issuer for registries and clouds that federate (Quay, Artifactory;
//! later AWS STS, Google STS, Entra).
//!
//! Those services trust an external issuer by URL: they fetch
//! `{issuer}/.well-known/openid-configuration`, require its `issuer` to equal the token's
//! `iss`, fetch its `jwks_uri`, find the header `kid` there and verify an RS256 signature. So
//! the issuer here is a URL, a set of RSA keys and a token lifetime:
//!
//! - [`FederationIssuer::mint`] signs a JWT with the *first* key;
//! - [`FederationIssuer::jwks_json`] publishes *every* key, so rotation overlaps: publish a new
//!   key second (verifiers cache the JWKS and refetch on an unknown `kid`), move it first once
//!   the published set has propagated, and keep the old one until its last token has expired;
//! - [`FederationIssuer::replace_keys`] swaps the set atomically (reload).
//!
//! Everything is synchronous and takes the current time as an argument.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use svid_broker_identity::report::redact_url_userinfo;
use svid_broker_identity::secret::{SecretString, seal_string};
use zeroize::Zeroizing;

use crate::external::{ExternalAlgorithm, ExternalKey, ExternalKeyError};
use crate::keys::pem_block;
use crate::kid::{PublicJwk, strip_leading_zeros};

/// The one JWS algorithm of federated tokens: what Quay, AWS STS, Entra and Google STS all
/// accept.
pub const FEDERATION_ALGORITHM: &str = "RS256";
/// Most keys published at once. AWS stops resolving a `kid` past 100 keys; two or three are
/// all a rotation needs.
pub const MAX_FEDERATION_KEYS: usize = 10;
/// How far `nbf` is set before `iat`, for relying parties whose clock is behind.
pub const NOT_BEFORE_BACKDATE: Duration = Duration::from_secs(60);
/// Shortest token lifetime accepted.
pub const MIN_FEDERATION_TOKEN_TTL: Duration = Duration::from_secs(60);
/// Longest token lifetime accepted: a federated JWT only has to outlive one exchange call, and
/// every second more is a second a copy of it (a registry's log, a proxy) can be replayed at
/// another relying party that trusts the issuer.
pub const MAX_FEDERATION_TOKEN_TTL: Duration = Duration::from_secs(600);
/// The default token lifetime: the token is exchanged at once, so short is enough.
pub const DEFAULT_FEDERATION_TOKEN_TTL: Duration = Duration::from_secs(300);
/// Most extra claims a token carries.
pub const MAX_EXTRA_CLAIMS: usize = 8;
/// Longest extra claim name, in bytes.
pub const MAX_CLAIM_NAME_LEN: usize = 64;
/// Longest extra object claim (AWS's `https://aws.amazon.com/tags`), as serialized JSON, in bytes.
pub const MAX_OBJECT_CLAIM_LEN: usize = 4096;
/// Longest extra claim value, in bytes.
pub const MAX_CLAIM_VALUE_LEN: usize = 1024;
/// Longest `sub`, in bytes.
pub const MAX_SUBJECT_LEN: usize = 1024;
/// Longest `aud`, in bytes.
pub const MAX_AUDIENCE_LEN: usize = 1024;
/// Longest issuer URL, in bytes.
pub const MAX_ISSUER_URL_LEN: usize = 255;
/// Largest PEM input [`FederationKey::from_pem`] reads.
pub const MAX_FEDERATION_PEM_LEN: usize = 64 * 1024;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_FEDERATION_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (larger keys only slow every verifier down).
pub const MAX_FEDERATION_RSA_BITS: usize = 4096;
/// Appended to the issuer URL to find the discovery document.
pub const DISCOVERY_SUFFIX: &str = "/.well-known/openid-configuration";
/// Appended to the issuer URL to find the JWKS.
pub const JWKS_SUFFIX: &str = "/jwks.json";

/// Claims the issuer sets itself; an extra claim cannot override them.
const REGISTERED_CLAIMS: [&str; 7] = ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"];

// === FederationError ===

/// Why a key, an issuer or a token was refused. Messages never contain a token or key
/// material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationError {
    /// The issuer URL given to [`FederationIssuer::new`] breaks a rule of its docs.
    #[error("issuer url {url:?} is invalid: {rule}")]
    InvalidIssuerUrl {
        /// The URL as given with any user info replaced by `***` (never the password it may
        /// have been refused for), cut to [`MAX_ISSUER_URL_LEN`] characters.
        url: String,
        /// The rule it breaks (`must have no userinfo`, `host is empty`, ...).
        rule: &'static str,
    },
    /// A PEM, generated or key-store key was refused.
    #[error("federation key refused: {rule}")]
    Key {
        /// The rule the key broke (`rsa key is shorter than 2048 bits`, ...); never key material.
        rule: &'static str,
    },
    /// The key set given is empty.
    #[error("a federation issuer needs at least one key")]
    NoKeys,
    /// More keys than [`MAX_FEDERATION_KEYS`].
    #[error("{count} federation keys given, at most {max} allowed")]
    TooManyKeys {
        /// Keys in the set given to [`FederationIssuer::new`] or `replace_keys`.
        count: usize,
        /// The cap, [`MAX_FEDERATION_KEYS`].
        max: usize,
    },
    /// Two keys have the same `kid` (the same public key).
    #[error("federation key {kid} is given twice")]
    DuplicateKid {
        /// The repeated `kid`: an RFC 7638 thumbprint, public.
        kid: String,
    },
    /// The token lifetime is outside [`MIN_FEDERATION_TOKEN_TTL`]..=[`MAX_FEDERATION_TOKEN_TTL`].
    #[error("federation token ttl of {ttl:?} is outside {min:?} to {max:?}")]
    TokenTtlOutOfRange {
        /// The lifetime passed to [`FederationIssuer::new`].
        ttl: Duration,
        /// [`MIN_FEDERATION_TOKEN_TTL`].
        min: Duration,
        /// [`MAX_FEDERATION_TOKEN_TTL`].
        max: Duration,
    },
    /// `sub`, `aud` or an extra claim breaks a rule of [`FederatedClaims`].
    #[error("claim {name:?} is invalid: {rule}")]
    InvalidClaim {
        /// The claim's name (cut to [`MAX_CLAIM_NAME_LEN`] characters).
        name: String,
        /// The rule it breaks (`claim must not be empty`, ...); never the claim's value.
        rule: &'static str,
    },
    /// More extra claims than [`MAX_EXTRA_CLAIMS`].
    #[error("{count} extra claims given, at most {max} allowed")]
    TooManyClaims {
        /// Extra string and object claims together.
        count: usize,
        /// The cap, [`MAX_EXTRA_CLAIMS`].
        max: usize,
    },
    /// `now` (or `now` plus the lifetime) cannot be written as a NumericDate.
    #[error("time out of range for a token")]
    TimeOutOfRange,
    /// aws-lc-rs could not generate an RSA key.
    #[error("rsa key generation failed")]
    KeyGeneration,
    /// aws-lc-rs could not encode the key as PKCS#8.
    #[error("pkcs#8 encoding of the key failed")]
    Encoding,
    /// aws-lc-rs failed to sign.
    #[error("federated token signing failed")]
    Signing,
    /// The key store holding the signing key did not sign.
    #[error("the federation key's key store did not sign")]
    ExternalSigning {
        /// The key store's error.
        #[source]
        source: ExternalKeyError,
    },
    /// The system random generator failed while making the `jti`.
    #[error("random generator failed")]
    Random,
}

// === FederationKey ===

/// One RSA signing key (2048 to 4096 bits), named by its `kid`: the RFC 7638 JWK thumbprint
/// (base64url SHA-256 of the canonical `{"e","kty","n"}`), so the same key always has the same
/// `kid`. `Debug` shows the `kid` only.
pub struct FederationKey {
    signer: FederationSigner,
    kid: String,
    /// Modulus, unsigned big-endian without leading zeros.
    n: Vec<u8>,
    /// Public exponent, likewise.
    e: Vec<u8>,
}

/// Who holds a federation key's private half.
enum FederationSigner {
    /// aws-lc-rs, in this process (which wipes it when freed).
    Local(RsaKeyPair),
    /// A key store that signs on request (an HSM, a cloud KMS); the key is never read.
    External {
        key: Arc<dyn ExternalKey>,
        modulus_len: usize,
    },
}

impl FederationKey {
    /// A key held by a key store: it must be an RSA key (2048 to 4096 bits) signing
    /// [`ExternalAlgorithm::RsaPkcs1Sha256`], because RS256 is the one algorithm every relying
    /// service takes (Entra ID's federated credentials take no other). The `kid` is the same
    /// RFC 7638 thumbprint a PEM file of that key would get.
    ///
    /// # Errors
    /// [`FederationError::Key`] naming the rule the store's public key broke.
    pub fn external(key: Arc<dyn ExternalKey>) -> Result<Self, FederationError> {
        use x509_parser::prelude::FromDer as _;
        use x509_parser::public_key::PublicKey;
        let refuse = |rule| Err(FederationError::Key { rule });
        if key.algorithm() != ExternalAlgorithm::RsaPkcs1Sha256 {
            return refuse("a key store key for the federation issuer must sign RS256");
        }
        let spki = key.public_key_spki();
        if spki.len() > crate::external::MAX_SPKI_LEN {
            return refuse("key store public key is longer than 2048 bytes");
        }
        let Ok(([], info)) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki) else {
            return refuse("key store public key is not one DER SubjectPublicKeyInfo");
        };
        let Ok(PublicKey::RSA(rsa)) = info.parsed() else {
            return refuse("key store key is not an RSA key");
        };
        let n = strip_leading_zeros(rsa.modulus).to_vec();
        let e = strip_leading_zeros(rsa.exponent).to_vec();
        let bits = n.len() * 8;
        if bits < MIN_FEDERATION_RSA_BITS {
            return refuse(RSA_TOO_SHORT);
        }
        if bits > MAX_FEDERATION_RSA_BITS {
            return refuse(RSA_TOO_LONG);
        }
        let public = crate::external::ExternalPublicKey {
            key_bits: info.subject_public_key.data.to_vec(),
            rsa_modulus_len: Some(n.len()),
        };
        match crate::external::probe(key.as_ref(), &public) {
            Ok(()) => {}
            Err(crate::external::ProbeError::Sign(source)) => {
                return Err(FederationError::ExternalSigning { source });
            }
            Err(crate::external::ProbeError::Mismatch) => {
                return refuse(crate::external::PROBE_MISMATCH);
            }
        }
        let kid = rsa_thumbprint(&n, &e);
        Ok(Self {
            signer: FederationSigner::External {
                key,
                modulus_len: n.len(),
            },
            kid,
            n,
            e,
        })
    }

    /// Loads one unencrypted RSA private key: a `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY`
    /// (PKCS#1) PEM block, the only block of the input.
    ///
    /// # Errors
    /// [`FederationError::Key`] naming the rule: input over [`MAX_FEDERATION_PEM_LEN`], not
    /// PEM, not exactly one block, an encrypted, EC or public key, a malformed key, or a
    /// modulus outside [`MIN_FEDERATION_RSA_BITS`]..=[`MAX_FEDERATION_RSA_BITS`].
    pub fn from_pem(pem: &[u8]) -> Result<Self, FederationError> {
        let refuse = |rule| Err(FederationError::Key { rule });
        if pem.len() > MAX_FEDERATION_PEM_LEN {
            return refuse("pem input is larger than 64 KiB");
        }
        let Ok(text) = std::str::from_utf8(pem) else {
            return refuse("pem input is not utf-8 text");
        };
        // The parser's error is dropped on purpose: it could quote parts of the key.
        let Ok(blocks) = pem::parse_many(text) else {
            return refuse("pem input is malformed");
        };
        let mut blocks: Vec<(String, Zeroizing<Vec<u8>>)> = blocks
            .into_iter()
            .map(|b| (b.tag().to_owned(), Zeroizing::new(b.into_contents())))
            .collect();
        if blocks.len() > 1 {
            return refuse("pem input must hold exactly one private key block");
        }
        let Some((tag, der)) = blocks.pop() else {
            return refuse("pem input holds no pem block");
        };
        let pair = match tag.as_str() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der).map_err(|e| {
                rejected(
                    e,
                    "PRIVATE KEY block is not a valid pkcs#8 rsa key (only rsa keys sign RS256)",
                )
            })?,
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der)
                .map_err(|e| rejected(e, "RSA PRIVATE KEY block is not a valid pkcs#1 rsa key"))?,
            "ENCRYPTED PRIVATE KEY" => {
                return refuse("encrypted private keys are not supported; decrypt to pkcs#8");
            }
            "EC PRIVATE KEY" => return refuse("an ec key cannot sign RS256; use an rsa key"),
            "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                return refuse("a public key cannot sign; give the private key");
            }
            _ => return refuse("pem block is not a PRIVATE KEY or RSA PRIVATE KEY"),
        };
        Self::from_pair(pair)
    }

    /// A fresh RSA-2048 key (`svid-broker federation-key`, and `generate = true` in development).
    ///
    /// # Errors
    /// [`FederationError::KeyGeneration`].
    pub fn generate() -> Result<Self, FederationError> {
        let pair =
            RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| FederationError::KeyGeneration)?;
        Self::from_pair(pair)
    }

    fn from_pair(pair: RsaKeyPair) -> Result<Self, FederationError> {
        let bits = pair.public_modulus_len() * 8;
        if bits < MIN_FEDERATION_RSA_BITS {
            return Err(FederationError::Key {
                rule: RSA_TOO_SHORT,
            });
        }
        if bits > MAX_FEDERATION_RSA_BITS {
            return Err(FederationError::Key { rule: RSA_TOO_LONG });
        }
        let public = pair.public_key();
        let n = strip_leading_zeros(public.modulus().big_endian_without_leading_zero()).to_vec();
        let e = strip_leading_zeros(public.exponent().big_endian_without_leading_zero()).to_vec();
        let kid = rsa_thumbprint(&n, &e);
        Ok(Self {
            signer: FederationSigner::Local(pair),
            kid,
            n,
            e,
        })
    }

    /// The key as an unencrypted PKCS#8 `PRIVATE KEY` PEM, which [`Self::from_pem`] reads back
    /// to the same `kid`.
    ///
    /// # Errors
    /// [`FederationError::Encoding`], also for a key in a key store (it cannot be read).
    pub fn to_pkcs8_pem(&self) -> Result<SecretString, FederationError> {
        let FederationSigner::Local(pair) = &self.signer else {
            return Err(FederationError::Encoding);
        };
        let der = pair.as_der().map_err(|_| FederationError::Encoding)?;
        Ok(seal_string(Zeroizing::new(pem_block(
            "PRIVATE KEY",
            der.as_ref(),
        ))))
    }

    /// The RFC 7638 thumbprint, the header `kid` of tokens this key signs.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The modulus length in bits, counted in whole bytes (so a multiple of 8): 2048 to 4096.
    pub fn bits(&self) -> usize {
        self.n.len() * 8
    }

    fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "alg": FEDERATION_ALGORITHM,
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.n),
            "e": URL_SAFE_NO_PAD.encode(&self.e),
        })
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, FederationError> {
        match &self.signer {
            FederationSigner::Local(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)
                    .map_err(|_| FederationError::Signing)?;
                Ok(sig)
            }
            FederationSigner::External { key, modulus_len } => {
                let sig = key
                    .sign(msg)
                    .map_err(|source| FederationError::ExternalSigning { source })?;
                if sig.len() != *modulus_len {
                    return Err(FederationError::ExternalSigning {
                        source: ExternalKeyError::Malformed {
                            store: key.describe().to_owned(),
                            rule: "RSA signature is not as long as the modulus",
                        },
                    });
                }
                Ok(sig)
            }
        }
    }
}

impl fmt::Debug for FederationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FederationKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Names why aws-lc-rs refused a parsed key: its size (it takes 2048 to 8192 bits), else
/// `otherwise`.
fn rejected(e: aws_lc_rs::error::KeyRejected, otherwise: &'static str) -> FederationError {
    let rule = match e.description_() {
        "TooSmall" => RSA_TOO_SHORT,
        "TooLarge" => RSA_TOO_LONG,
        _ => otherwise,
    };
    FederationError::Key { rule }
}

const RSA_TOO_SHORT: &str = "rsa key is shorter than 2048 bits";
const RSA_TOO_LONG: &str = "rsa key is longer than 4096 bits";

/// The RFC 7638 thumbprint of an RSA public key given as unsigned big-endian `n` and `e`.
pub(crate) fn rsa_thumbprint(n: &[u8], e: &[u8]) -> String {
    PublicJwk::Rsa {
        n: strip_leading_zeros(n).to_vec(),
        e: strip_leading_zeros(e).to_vec(),
    }
    .thumbprint()
}

// === FederatedClaims ===

/// What one federated JWT says beyond `iss`, `iat`, `nbf`, `exp` and `jti`, which the issuer
/// sets. Checked when minted: `sub` and `aud` 1 to 1024 bytes without control characters; at
/// most [`MAX_EXTRA_CLAIMS`] extra string claims, each named by 1 to 64 characters of
/// `[A-Za-z0-9_.:/-]`, not a registered claim nor repeated, with a value of at most 1024
/// bytes without control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FederatedClaims {
    /// `sub`: what the relying service matches its trust rule against.
    pub subject: String,
    /// `aud`, written as one JSON string.
    pub audience: String,
    /// Extra string claims, in order.
    pub extra: Vec<(String, String)>,
    /// Extra object claims, after the string claims (AWS session tags:
    /// `https://aws.amazon.com/tags`), each at most [`MAX_OBJECT_CLAIM_LEN`] bytes as JSON.
    pub extra_objects: Vec<(String, Map<String, Value>)>,
}

impl FederatedClaims {
    /// A `sub` and an `aud`, no extra claims.
    pub fn new(subject: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            audience: audience.into(),
            extra: Vec::new(),
            extra_objects: Vec::new(),
        }
    }

    /// Adds an extra object claim.
    #[must_use]
    pub fn with_object_claim(mut self, name: impl Into<String>, value: Map<String, Value>) -> Self {
        self.extra_objects.push((name.into(), value));
        self
    }

    /// Adds an extra string claim.
    #[must_use]
    pub fn with_claim(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// Checks the rules in the type's docs.
    ///
    /// # Errors
    /// [`FederationError::InvalidClaim`] or [`FederationError::TooManyClaims`].
    pub fn validate(&self) -> Result<(), FederationError> {
        check_value("sub", &self.subject, MAX_SUBJECT_LEN, false)?;
        check_value("aud", &self.audience, MAX_AUDIENCE_LEN, false)?;
        let count = self.extra.len() + self.extra_objects.len();
        if count > MAX_EXTRA_CLAIMS {
            return Err(FederationError::TooManyClaims {
                count,
                max: MAX_EXTRA_CLAIMS,
            });
        }
        let mut seen = HashSet::with_capacity(count);
        for (name, value) in &self.extra {
            check_claim_name(name)?;
            if !seen.insert(name.as_str()) {
                return Err(invalid_claim(name, "claim is given twice"));
            }
            check_value(name, value, MAX_CLAIM_VALUE_LEN, true)?;
        }
        for (name, value) in &self.extra_objects {
            check_claim_name(name)?;
            if !seen.insert(name.as_str()) {
                return Err(invalid_claim(name, "claim is given twice"));
            }
            if Value::Object(value.clone()).to_string().len() > MAX_OBJECT_CLAIM_LEN {
                return Err(invalid_claim(
                    name,
                    "object claim is longer than 4096 bytes as JSON",
                ));
            }
        }
        Ok(())
    }
}

fn invalid_claim(name: &str, rule: &'static str) -> FederationError {
    FederationError::InvalidClaim {
        name: name.chars().take(MAX_CLAIM_NAME_LEN).collect(),
        rule,
    }
}

fn check_claim_name(name: &str) -> Result<(), FederationError> {
    if name.is_empty() || name.len() > MAX_CLAIM_NAME_LEN {
        return Err(invalid_claim(name, "claim name must be 1 to 64 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b))
    {
        return Err(invalid_claim(
            name,
            "claim name must match [A-Za-z0-9_.:/-]+",
        ));
    }
    if REGISTERED_CLAIMS.contains(&name) {
        return Err(invalid_claim(
            name,
            "registered claims (iss, sub, aud, iat, nbf, exp, jti) are set by the issuer",
        ));
    }
    Ok(())
}

fn check_value(name: &str, value: &str, max: usize, empty_ok: bool) -> Result<(), FederationError> {
    if value.is_empty() && !empty_ok {
        return Err(invalid_claim(name, "claim must not be empty"));
    }
    if value.len() > max {
        return Err(invalid_claim(name, "claim is longer than 1024 bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid_claim(name, "claim contains a control character"));
    }
    Ok(())
}

// === MintedFederatedToken ===

/// A signed federated JWT. `Debug` redacts the token.
#[derive(Debug)]
#[non_exhaustive]
pub struct MintedFederatedToken {
    /// The signed compact JWS: a bearer credential, sealed so `Debug` never shows it.
    pub token: SecretString,
    /// The header `kid`: the signing key's thumbprint.
    pub kid: String,
    /// The `jti`: 16 random bytes, base64url.
    pub jti: String,
    /// `iat` (and `nbf`), whole seconds.
    pub issued_at: SystemTime,
    /// `exp`: `iat` plus the issuer's lifetime.
    pub expires_at: SystemTime,
}

// === FederationIssuer ===

struct Inner {
    issuer: String,
    token_ttl: Duration,
    keys: ArcSwap<Vec<FederationKey>>,
}

/// The issuer: its URL, its key set and the token lifetime.
///
/// The first key signs; all keys are published, so a new key can be published before it signs
/// and an old one kept until its last token has expired (rotation with overlap). Clones share
/// one key set, which [`Self::replace_keys`] swaps atomically for every clone (reload).
#[derive(Clone)]
pub struct FederationIssuer {
    inner: Arc<Inner>,
}

impl FederationIssuer {
    /// An issuer at `issuer_url` signing with `keys[0]` and publishing all of `keys`.
    ///
    /// `issuer_url` must be `https://host[:port][/path]`, or `http://` with a loopback IP
    /// literal host (tests); without query, fragment, userinfo or trailing `/`; at most
    /// [`MAX_ISSUER_URL_LEN`] bytes. `keys` must be 1 to [`MAX_FEDERATION_KEYS`] keys with
    /// distinct `kid`s, and `token_ttl` within
    /// [`MIN_FEDERATION_TOKEN_TTL`]..=[`MAX_FEDERATION_TOKEN_TTL`].
    ///
    /// # Errors
    /// [`FederationError::InvalidIssuerUrl`], [`FederationError::NoKeys`],
    /// [`FederationError::TooManyKeys`], [`FederationError::DuplicateKid`] or
    /// [`FederationError::TokenTtlOutOfRange`].
    pub fn new(
        issuer_url: impl Into<String>,
        keys: Vec<FederationKey>,
        token_ttl: Duration,
    ) -> Result<Self, FederationError> {
        let issuer = issuer_url.into();
        check_issuer_url(&issuer)?;
        if !(MIN_FEDERATION_TOKEN_TTL..=MAX_FEDERATION_TOKEN_TTL).contains(&token_ttl) {
            return Err(FederationError::TokenTtlOutOfRange {
                ttl: token_ttl,
                min: MIN_FEDERATION_TOKEN_TTL,
                max: MAX_FEDERATION_TOKEN_TTL,
            });
        }
        check_keys(&keys)?;
        Ok(Self {
            inner: Arc::new(Inner {
                issuer,
                token_ttl,
                keys: ArcSwap::from_pointee(keys),
            }),
        })
    }

    /// The issuer URL, exactly as tokens' `iss` and the discovery document's `issuer` say it.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The JWKS URL: the issuer plus [`JWKS_SUFFIX`].
    pub fn jwks_uri(&self) -> String {
        format!("{}{JWKS_SUFFIX}", self.inner.issuer)
    }

    /// The path suffix of the discovery document, [`DISCOVERY_SUFFIX`].
    pub fn discovery_path_suffix() -> &'static str {
        DISCOVERY_SUFFIX
    }

    /// The discovery document's URL: the issuer plus [`DISCOVERY_SUFFIX`].
    pub fn discovery_url(&self) -> String {
        format!("{}{DISCOVERY_SUFFIX}", self.inner.issuer)
    }

    /// The lifetime set at [`Self::new`]; every token's `exp` is its `iat` plus this, in
    /// whole seconds.
    pub fn token_ttl(&self) -> Duration {
        self.inner.token_ttl
    }

    /// Replaces the key set (under the rules of [`Self::new`]); tokens minted afterwards are
    /// signed by the new first key. The set stays unchanged on error.
    ///
    /// # Errors
    /// [`FederationError::NoKeys`], [`FederationError::TooManyKeys`] or
    /// [`FederationError::DuplicateKid`].
    pub fn replace_keys(&self, keys: Vec<FederationKey>) -> Result<(), FederationError> {
        check_keys(&keys)?;
        self.inner.keys.store(Arc::new(keys));
        Ok(())
    }

    /// Whether the signing key is held by a key store, which answers a signature after a
    /// round trip (so async callers should sign on a blocking thread).
    pub fn signs_externally(&self) -> bool {
        self.inner
            .keys
            .load()
            .first()
            .is_some_and(|k| matches!(k.signer, FederationSigner::External { .. }))
    }

    /// The `kid` of the key that signs now.
    pub fn signing_kid(&self) -> String {
        self.inner
            .keys
            .load()
            .first()
            .map(|k| k.kid.clone())
            .unwrap_or_default()
    }

    /// The `kid`s of every published key, signing key first.
    pub fn published_kids(&self) -> Vec<String> {
        self.inner
            .keys
            .load()
            .iter()
            .map(|k| k.kid.clone())
            .collect()
    }

    /// Signs a JWT for `claims` at `now`: header `{"alg":"RS256","typ":"JWT","kid"}`; payload
    /// `iss`, `sub`, `aud` (one string), `iat` = `now` in whole seconds, `nbf` =
    /// `iat` - [`NOT_BEFORE_BACKDATE`],
    /// `exp` = `iat` + the lifetime, a random `jti`, then the extra claims.
    ///
    /// # Errors
    /// Any error of [`FederatedClaims::validate`], [`FederationError::TimeOutOfRange`],
    /// [`FederationError::Random`] or [`FederationError::Signing`].
    pub fn mint(
        &self,
        claims: &FederatedClaims,
        now: SystemTime,
    ) -> Result<MintedFederatedToken, FederationError> {
        claims.validate()?;
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| FederationError::TimeOutOfRange)?
            .as_secs();
        let exp = iat
            .checked_add(self.inner.token_ttl.as_secs())
            .filter(|&e| i64::try_from(e).is_ok())
            .ok_or(FederationError::TimeOutOfRange)?;
        let mut jti_bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti_bytes).map_err(|_| FederationError::Random)?;
        let jti = URL_SAFE_NO_PAD.encode(jti_bytes);

        let keys = self.inner.keys.load();
        // `check_keys` keeps the set non-empty.
        let key = keys.first().ok_or(FederationError::NoKeys)?;

        let mut payload = Map::new();
        payload.insert("iss".into(), self.inner.issuer.clone().into());
        payload.insert("sub".into(), claims.subject.clone().into());
        payload.insert("aud".into(), claims.audience.clone().into());
        payload.insert("iat".into(), iat.into());
        // Back-dated, as registry tokens are: a registry whose clock is behind the broker's
        // still takes the JWT at once. `iat` stays the truth.
        payload.insert(
            "nbf".into(),
            iat.saturating_sub(NOT_BEFORE_BACKDATE.as_secs()).into(),
        );
        payload.insert("exp".into(), exp.into());
        payload.insert("jti".into(), jti.clone().into());
        for (name, value) in &claims.extra {
            payload.insert(name.clone(), value.clone().into());
        }
        for (name, value) in &claims.extra_objects {
            payload.insert(name.clone(), Value::Object(value.clone()));
        }
        // Written by hand: a fixed member order, and the kid is base64url (nothing to escape).
        let header = format!(
            r#"{{"alg":"{FEDERATION_ALGORITHM}","typ":"JWT","kid":"{}"}}"#,
            key.kid
        );
        let mut jws = Zeroizing::new(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(Value::Object(payload).to_string())
        ));
        let signature = key.sign(jws.as_bytes())?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(MintedFederatedToken {
            token: seal_string(jws),
            kid: key.kid.clone(),
            jti,
            issued_at: UNIX_EPOCH + Duration::from_secs(iat),
            expires_at: UNIX_EPOCH + Duration::from_secs(exp),
        })
    }

    /// The JWKS: `{"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid","n","e"}, ...]}`,
    /// every key in order, `n` and `e` base64url without padding or leading zero bytes.
    pub fn jwks_json(&self) -> String {
        let keys: Vec<Value> = self
            .inner
            .keys
            .load()
            .iter()
            .map(FederationKey::jwk)
            .collect();
        json!({ "keys": keys }).to_string()
    }

    /// The OIDC discovery document, with the fields AWS IAM requires of an OIDC provider.
    pub fn discovery_json(&self) -> String {
        json!({
            "issuer": self.inner.issuer,
            "jwks_uri": self.jwks_uri(),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [FEDERATION_ALGORITHM],
            "claims_supported": REGISTERED_CLAIMS,
        })
        .to_string()
    }
}

impl fmt::Debug for FederationIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FederationIssuer")
            .field("issuer", &self.inner.issuer)
            .field("kids", &self.published_kids())
            .field("token_ttl", &self.inner.token_ttl)
            .finish()
    }
}

fn check_keys(keys: &[FederationKey]) -> Result<(), FederationError> {
    if keys.is_empty() {
        return Err(FederationError::NoKeys);
    }
    if keys.len() > MAX_FEDERATION_KEYS {
        return Err(FederationError::TooManyKeys {
            count: keys.len(),
            max: MAX_FEDERATION_KEYS,
        });
    }
    let mut seen = HashSet::with_capacity(keys.len());
    for key in keys {
        if !seen.insert(key.kid.as_str()) {
            return Err(FederationError::DuplicateKid {
                kid: key.kid.clone(),
            });
        }
    }
    Ok(())
}

fn check_issuer_url(url: &str) -> Result<(), FederationError> {
    let refuse = |rule| {
        Err(FederationError::InvalidIssuerUrl {
            url: redact_url_userinfo(url)
                .chars()
                .take(MAX_ISSUER_URL_LEN)
                .collect(),
            rule,
        })
    };
    if url.len() > MAX_ISSUER_URL_LEN {
        return refuse("longer than 255 bytes");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return refuse("contains whitespace or a control character");
    }
    if url.contains('?') || url.contains('#') {
        return refuse("must have no query or fragment");
    }
    if url.contains('@') {
        return refuse("must have no userinfo");
    }
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return refuse("scheme must be https (or http for a loopback ip in tests)");
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = split_host_port(authority);
    if host.is_empty() {
        return refuse("host is empty");
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p != 0);
        if !valid {
            return refuse("port must be 1 to 65535");
        }
    }
    if https {
        if !is_dns_name(host) && host != "[::1]" {
            return refuse("host must be a dns name or ipv4 address");
        }
    } else if !(host == "[::1]" || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())) {
        return refuse("http is only allowed with a loopback ip literal host");
    }
    if path.ends_with('/') {
        return refuse("must not end with '/'");
    }
    if !path.is_empty() {
        let segments_ok = path[1..]
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
        if !segments_ok {
            return refuse("path has an empty, '.' or '..' segment");
        }
        if !path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
        {
            return refuse("path must match [A-Za-z0-9._~/-]");
        }
    }
    Ok(())
}

/// Splits `host[:port]`, where a host in brackets (IPv6) may contain colons.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => {
                let (host, rest) = authority.split_at(end + 1);
                (
                    host,
                    rest.strip_prefix(':')
                        .or((!rest.is_empty()).then_some(rest)),
                )
            }
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests;
