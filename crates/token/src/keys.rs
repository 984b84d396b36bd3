//! Signing keys: the signing CA, the short-lived signing leaves it issues, and the key ring that
//! rotates them.
//!
//! Registries trust the CA (distribution's `rootcertbundle`) and verify the token's `x5c` chain
//! with Go's `x509.Verify` at request time. So a leaf can be replaced at any moment without
//! touching the registry, as long as every leaf stays valid until the last token it signed has
//! expired plus the registry's 60 s leeway. [`KeyRingConfig::validate`] makes that hold for
//! every accepted configuration, and [`KeyRing::rotate_if_due`] keeps it holding over time.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{SerialNumber, SignatureAlgorithm};

use crate::error::{KeyError, RotationRule};
use crate::mint::{MIN_TOKEN_TTL, REGISTRY_LEEWAY};

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
pub const MAX_PEM_LEN: usize = 64 * 1024;
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
    /// The JWS `alg` header value: `"ES256"`, `"ES384"` or `"RS256"` (the inverse of
    /// [`SigningAlgorithm::from_jws_name`]).
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
        ca::check_common_name(&self.leaf_common_name)
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

    /// Whether the CA key is held by a key store ([`SigningCa::with_external_key`]): then
    /// [`TokenMinter::mint`](crate::TokenMinter::mint) issues a leaf only when the current one
    /// cannot sign the token, and rotation is the owner's job ([`Self::rotate_if_due`] on a
    /// schedule, off any request path).
    pub fn ca_key_is_external(&self) -> bool {
        self.ca.key_is_external()
    }

    /// The configuration (validated).
    pub fn config(&self) -> &KeyRingConfig {
        &self.config
    }

    /// The signing CA: it issues every leaf, and its certificate is the registry's trust anchor.
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

mod ca;
mod leaf;

pub use ca::SigningCa;
pub use leaf::SigningLeaf;

#[cfg(test)]
mod tests;
