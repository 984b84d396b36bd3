//! Trust bundles: the X.509 and JWT authorities of each trust domain.
//!
//! - [`X509Bundle`]: the CA certificates of one trust domain, parsed once into webpki trust anchors.
//! - [`JwtBundle`]: the JWT signing keys of one trust domain, parsed once into aws-lc-rs keys and
//!   indexed by `kid`.
//! - [`SpiffeBundle`]: both, plus `spiffe_sequence` and `spiffe_refresh_hint`, as read from or
//!   written to a SPIFFE bundle document (a JWK Set, SPIFFE Trust Domain and Bundle §4).
//! - [`BundleSet`]: one [`SpiffeBundle`] per trust domain. Bundles are never merged across trust
//!   domains: a verifier picks the bundle of the SVID's own trust domain and nothing else.
//! - [`BundleProvider`]: where a verifier gets the current [`BundleSet`] from.
//!
//! # Document ingestion policy
//!
//! The spec wants consumers to skip JWK entries they do not understand. This module separates
//! "unknown or unusable" from "broken":
//!
//! - **ignored** (recorded in [`SpiffeBundle::ignored`], the bundle still loads): missing or
//!   unknown `kty` or `use`, an `x509-svid` entry without `x5c`, a `jwt-svid` entry without `kid`
//!   or with an empty one, an unsupported curve or key type, a JWK `alg` outside the JWT-SVID set
//!   or not fitting the key, an RSA key below [`MIN_RSA_BITS`] or above [`MAX_RSA_BITS`], an
//!   `x509-svid` CA certificate that parses but whose key cannot be written back as a JWK
//!   (compressed EC point, another curve, RSASSA-PSS or another key type);
//! - **rejected** (the whole document fails, so the caller keeps its last good bundle): malformed
//!   JSON, a wrong JSON type for a member this module reads, duplicate JSON members, a size or count
//!   cap exceeded, bad base64, a certificate that does not parse, an EC point off its curve,
//!   duplicate `kid`s among the `jwt-svid` keys.
//!
//! An `x509-svid` entry carrying a `kid` (which the spec tells publishers not to set) is accepted:
//! the `kid` plays no part in X.509 verification.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls_pki_types::{CertificateDer, TrustAnchor};

use crate::id::{IdError, TrustDomain};
use crate::jwt::JwsAlgorithm;

mod document;
mod key;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use document::{IgnoreReason, IgnoredEntry};
pub(crate) use key::VerifyFailure;
pub use key::{EcCurve, JwtPublicKey, KeyError, MAX_RSA_BITS, MIN_RSA_BITS};

/// Largest SPIFFE bundle document accepted by [`SpiffeBundle::parse_document`], in bytes.
pub const MAX_BUNDLE_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Largest number of entries in a bundle document's `keys` array.
pub const MAX_BUNDLE_KEYS: usize = 1024;
/// Largest PEM input accepted by [`X509Bundle::from_pem`], in bytes.
pub const MAX_PEM_BUNDLE_BYTES: usize = 4 * 1024 * 1024;
/// Largest bundle map accepted by [`BundleSet::parse_bundle_map`], in bytes.
pub const MAX_BUNDLE_MAP_BYTES: usize = 16 * 1024 * 1024;
/// Largest number of trust domains in a bundle map.
pub const MAX_BUNDLE_MAP_TRUST_DOMAINS: usize = 1024;
/// The refresh interval to use when a document has no `spiffe_refresh_hint` (spec §4.1.2 suggests
/// about five minutes).
pub const DEFAULT_REFRESH_HINT: Duration = Duration::from_secs(300);
/// Shortest interval [`SpiffeBundle::refresh_hint_or_default`] returns: a publisher's hint of 0
/// or 1 s would otherwise have every consumer poll it in a tight loop.
pub const MIN_REFRESH_HINT: Duration = Duration::from_secs(30);
/// Longest interval [`SpiffeBundle::refresh_hint_or_default`] returns: a huge hint would
/// otherwise stop refreshes for good, so revoked authorities would never be dropped.
pub const MAX_REFRESH_HINT: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a bundle, bundle document or bundle map was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// An X.509 authority could not be parsed into a trust anchor.
    #[error("x509 authority {index} is not a usable ca certificate")]
    AuthorityUnparsable {
        /// Position of the certificate in the input.
        index: usize,
        /// Why webpki could not make a trust anchor of it.
        #[source]
        source: webpki::Error,
    },
    /// An X.509 authority's public key is not EC (P-256/P-384/P-521), RSA or Ed25519.
    #[error("x509 authority {index} has an unsupported public key type")]
    UnsupportedAuthorityKey {
        /// Position of the certificate in the input.
        index: usize,
    },
    /// The PEM input could not be parsed.
    #[error("malformed pem")]
    Pem {
        /// Why the `pem` crate refused the text (framing, labels or base64).
        #[source]
        source: pem::PemError,
    },
    /// A PEM bundle contains a block that is not a `CERTIFICATE`.
    #[error("pem block {index} is {label:?}, only CERTIFICATE blocks are allowed")]
    PemNotCertificate {
        /// 0-based position of the block in the PEM input.
        index: usize,
        /// The block label (at most 64 characters).
        label: String,
    },
    /// A PEM bundle contains no certificates.
    #[error("no certificates in pem input")]
    NoCertificates,
    /// Two JWT authorities of one bundle have the same `kid`.
    #[error("duplicate jwt authority key id {kid:?}")]
    DuplicateKid {
        /// The repeated `kid`, in full.
        kid: String,
    },
    /// The X.509 and JWT parts of a [`SpiffeBundle`] belong to different trust domains.
    #[error("x509 bundle is for {x509} but jwt bundle is for {jwt}")]
    TrustDomainMismatch {
        /// Trust domain of the X.509 part.
        x509: TrustDomain,
        /// Trust domain of the JWT part.
        jwt: TrustDomain,
    },
    /// A [`BundleSet`] or bundle map already has a bundle for this trust domain.
    #[error("duplicate bundle for trust domain {trust_domain}")]
    DuplicateTrustDomain {
        /// The trust domain given a second bundle.
        trust_domain: TrustDomain,
    },
    /// A bundle map key is not a trust domain name or trust domain SPIFFE ID.
    #[error("bundle map key {index} is not a trust domain")]
    InvalidTrustDomain {
        /// Position of the key in the map.
        index: usize,
        /// Why it did not parse.
        #[source]
        source: IdError,
    },
    /// A bundle document, JWK set, bundle map or PEM bundle is larger than its cap.
    #[error("{what} is {len} bytes, the maximum is {max}")]
    TooLarge {
        /// `"bundle document"`, `"jwk set"`, `"bundle map"` or `"pem bundle"`.
        what: &'static str,
        /// The input's length in bytes.
        len: usize,
        /// That input's cap in bytes: [`MAX_BUNDLE_DOCUMENT_BYTES`] (also for a JWK set),
        /// [`MAX_BUNDLE_MAP_BYTES`] or [`MAX_PEM_BUNDLE_BYTES`].
        max: usize,
    },
    /// The document has more `keys` entries than [`MAX_BUNDLE_KEYS`].
    #[error("bundle document has more than {max} keys")]
    TooManyKeys {
        /// The cap, [`MAX_BUNDLE_KEYS`].
        max: usize,
    },
    /// The bundle map has more trust domains than [`MAX_BUNDLE_MAP_TRUST_DOMAINS`].
    #[error("bundle map has more than {max} trust domains")]
    TooManyTrustDomains {
        /// The cap, [`MAX_BUNDLE_MAP_TRUST_DOMAINS`].
        max: usize,
    },
    /// The input is not JSON of the expected shape (also: wrong member types, duplicate members,
    /// missing `keys` or `trust_domains`).
    #[error("malformed bundle json")]
    Json {
        /// The serde_json error (position and expectation).
        #[source]
        source: serde_json::Error,
    },
    /// A JWK entry of a known kind is malformed.
    #[error("bundle key entry {index}: {reason}")]
    InvalidEntry {
        /// Position in `keys`.
        index: usize,
        /// What is wrong with it.
        reason: EntryError,
    },
    /// A bundle map entry (trust domain `index`) failed to parse.
    #[error("bundle for trust domain {trust_domain}")]
    InMap {
        /// The trust domain whose bundle failed.
        trust_domain: TrustDomain,
        /// Why that trust domain's bundle was rejected.
        #[source]
        source: Box<BundleError>,
    },
}

/// What is wrong with a JWK entry of a known kind (see [`BundleError::InvalidEntry`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// A required key member (`crv`, `x`, `y`, `n`, `e`) is missing.
    #[error("missing member {member:?}")]
    MissingMember {
        /// `crv`, `x`, `y`, `n` or `e`.
        member: &'static str,
    },
    /// A member is not valid base64 (standard for `x5c`, base64url for key members).
    #[error("member {member:?} is not valid base64")]
    Base64 {
        /// `x5c`, or the key member `x`, `y`, `n` or `e`.
        member: &'static str,
    },
    /// The `x5c` certificate does not parse as a CA certificate.
    #[error("x5c certificate does not parse")]
    Certificate,
    /// The `x5c` certificate's key type is not supported.
    #[error("x5c certificate has an unsupported public key type")]
    CertificateKey,
    /// The key members do not make a usable public key.
    #[error(transparent)]
    Key(#[from] KeyError),
}

// === impl X509Bundle ===

/// The X.509 authorities (CA certificates) of one trust domain.
///
/// Each authority is parsed once into a webpki [`TrustAnchor`] when the bundle is built.
#[derive(Clone)]
pub struct X509Bundle {
    trust_domain: TrustDomain,
    authorities: Vec<CertificateDer<'static>>,
    trust_anchors: Vec<TrustAnchor<'static>>,
    // JWK members of each authority's key, for `to_document_json`.
    key_params: Vec<document::OwnedKeyParams>,
}

impl X509Bundle {
    /// Builds a bundle from DER certificates.
    ///
    /// # Errors
    /// [`BundleError::AuthorityUnparsable`] or [`BundleError::UnsupportedAuthorityKey`], naming the
    /// index of the first certificate that fails.
    pub fn new(
        trust_domain: TrustDomain,
        authorities: Vec<CertificateDer<'static>>,
    ) -> Result<Self, BundleError> {
        let mut trust_anchors = Vec::with_capacity(authorities.len());
        let mut key_params = Vec::with_capacity(authorities.len());
        for (index, cert) in authorities.iter().enumerate() {
            let anchor = webpki::anchor_from_trusted_cert(cert)
                .map_err(|source| BundleError::AuthorityUnparsable { index, source })?;
            trust_anchors.push(anchor.to_owned());
            key_params.push(
                document::OwnedKeyParams::from_certificate(cert)
                    .ok_or(BundleError::UnsupportedAuthorityKey { index })?,
            );
        }
        Ok(Self {
            trust_domain,
            authorities,
            trust_anchors,
            key_params,
        })
    }

    /// A bundle with no authorities: nothing from this trust domain verifies.
    pub fn empty(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            authorities: Vec::new(),
            trust_anchors: Vec::new(),
            key_params: Vec::new(),
        }
    }

    /// Builds a bundle from PEM text holding only `CERTIFICATE` blocks.
    ///
    /// # Errors
    /// Input over [`MAX_PEM_BUNDLE_BYTES`], malformed PEM, a block of another type, no
    /// certificates at all, or any error of
    /// [`X509Bundle::new`].
    pub fn from_pem(trust_domain: TrustDomain, pem_bytes: &[u8]) -> Result<Self, BundleError> {
        if pem_bytes.len() > MAX_PEM_BUNDLE_BYTES {
            return Err(BundleError::TooLarge {
                what: "pem bundle",
                len: pem_bytes.len(),
                max: MAX_PEM_BUNDLE_BYTES,
            });
        }
        let blocks = pem::parse_many(pem_bytes).map_err(|source| BundleError::Pem { source })?;
        if blocks.is_empty() {
            return Err(BundleError::NoCertificates);
        }
        let mut certs = Vec::with_capacity(blocks.len());
        for (index, block) in blocks.into_iter().enumerate() {
            if block.tag() != "CERTIFICATE" {
                return Err(BundleError::PemNotCertificate {
                    index,
                    label: block.tag().chars().take(64).collect(),
                });
            }
            certs.push(CertificateDer::from(block.into_contents()));
        }
        Self::new(trust_domain, certs)
    }

    /// The trust domain these authorities belong to.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The CA certificates (DER) that X.509-SVIDs of this trust domain must chain to, in bundle
    /// order; each parsed as a trust anchor with a supported key when the bundle was built.
    pub fn authorities(&self) -> &[CertificateDer<'static>] {
        &self.authorities
    }

    /// The CA certificates as webpki trust anchors, in the same order as
    /// [`X509Bundle::authorities`].
    pub fn trust_anchors(&self) -> &[TrustAnchor<'static>] {
        &self.trust_anchors
    }

    /// Whether there are no authorities.
    pub fn is_empty(&self) -> bool {
        self.authorities.is_empty()
    }
}

impl fmt::Debug for X509Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Bundle")
            .field("trust_domain", &self.trust_domain)
            .field("authorities", &self.authorities.len())
            .finish()
    }
}

// === impl JwtBundle ===

/// One JWT signing key of a trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAuthority {
    /// The key id (`kid`), unique within its bundle.
    pub kid: String,
    /// The public key, already checked when the bundle was parsed (a supported curve, or RSA
    /// within the allowed sizes).
    pub key: JwtPublicKey,
    /// The JWK `alg`, when the bundle declared one: tokens must then use exactly this algorithm.
    pub alg: Option<JwsAlgorithm>,
}

impl JwtAuthority {
    /// Whether a token signed with `alg` may be verified by this authority: the key type and curve
    /// fit, and the declared `alg` (if any) is the same.
    pub fn accepts(&self, alg: JwsAlgorithm) -> bool {
        self.alg.is_none_or(|declared| declared == alg) && self.key.supports(alg)
    }
}

/// The JWT authorities of one trust domain, indexed by `kid`.
#[derive(Clone)]
pub struct JwtBundle {
    trust_domain: TrustDomain,
    authorities: Vec<JwtAuthority>,
    by_kid: HashMap<String, usize>,
}

impl JwtBundle {
    /// Builds a bundle.
    ///
    /// # Errors
    /// [`BundleError::DuplicateKid`] when two authorities share a `kid`.
    pub fn new(
        trust_domain: TrustDomain,
        authorities: Vec<JwtAuthority>,
    ) -> Result<Self, BundleError> {
        let mut by_kid = HashMap::with_capacity(authorities.len());
        for (index, authority) in authorities.iter().enumerate() {
            if by_kid.insert(authority.kid.clone(), index).is_some() {
                return Err(BundleError::DuplicateKid {
                    kid: authority.kid.clone(),
                });
            }
        }
        Ok(Self {
            trust_domain,
            authorities,
            by_kid,
        })
    }

    /// A bundle with no authorities: no JWT-SVID from this trust domain verifies.
    pub fn empty(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            authorities: Vec::new(),
            by_kid: HashMap::new(),
        }
    }

    /// Reads a plain JWK Set (RFC 7517 §5, as an OIDC `jwks_uri` serves it, for example a
    /// Kubernetes service-account issuer's) as the signing keys of `trust_domain`. Entries whose
    /// `use` is absent or `sig` become authorities; entries with another `use`, no `kid`, or a
    /// key type, curve, `alg` or RSA size a JWT-SVID key could not have are skipped and listed.
    ///
    /// # Errors
    /// Malformed JSON, caps exceeded ([`MAX_BUNDLE_DOCUMENT_BYTES`], [`MAX_BUNDLE_KEYS`]), a
    /// malformed key entry, or two keys with the same `kid`.
    pub fn parse_jwks(
        trust_domain: TrustDomain,
        bytes: &[u8],
    ) -> Result<(Self, Vec<IgnoredEntry>), BundleError> {
        document::parse_jwks(trust_domain, bytes)
    }

    /// The trust domain these authorities belong to.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// All authorities, in bundle order.
    pub fn authorities(&self) -> &[JwtAuthority] {
        &self.authorities
    }

    /// The authority whose `kid` is exactly `kid` (case-sensitive); `None` when this bundle has
    /// no such key, so a token naming it does not validate.
    pub fn find(&self, kid: &str) -> Option<&JwtAuthority> {
        self.by_kid
            .get(kid)
            .and_then(|&index| self.authorities.get(index))
    }

    /// Number of authorities.
    pub fn len(&self) -> usize {
        self.authorities.len()
    }

    /// Whether there are no authorities.
    pub fn is_empty(&self) -> bool {
        self.authorities.is_empty()
    }
}

impl fmt::Debug for JwtBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtBundle")
            .field("trust_domain", &self.trust_domain)
            .field(
                "kids",
                &self
                    .authorities
                    .iter()
                    .map(|a| a.kid.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

// === impl SpiffeBundle ===

/// The complete bundle of one trust domain: X.509 and JWT authorities plus document metadata.
#[derive(Debug, Clone)]
pub struct SpiffeBundle {
    x509: X509Bundle,
    jwt: JwtBundle,
    sequence: Option<u64>,
    refresh_hint: Option<Duration>,
    ignored: Vec<IgnoredEntry>,
}

impl SpiffeBundle {
    /// Combines the two halves of a trust domain's bundle.
    ///
    /// # Errors
    /// [`BundleError::TrustDomainMismatch`] when they belong to different trust domains.
    pub fn new(x509: X509Bundle, jwt: JwtBundle) -> Result<Self, BundleError> {
        if x509.trust_domain() != jwt.trust_domain() {
            return Err(BundleError::TrustDomainMismatch {
                x509: x509.trust_domain().clone(),
                jwt: jwt.trust_domain().clone(),
            });
        }
        Ok(Self {
            x509,
            jwt,
            sequence: None,
            refresh_hint: None,
            ignored: Vec::new(),
        })
    }

    /// A bundle with no authorities: nothing from this trust domain verifies (spec §4.1.3).
    pub fn empty(trust_domain: TrustDomain) -> Self {
        Self {
            x509: X509Bundle::empty(trust_domain.clone()),
            jwt: JwtBundle::empty(trust_domain),
            sequence: None,
            refresh_hint: None,
            ignored: Vec::new(),
        }
    }

    /// Sets `spiffe_sequence`.
    #[must_use]
    pub fn with_sequence(mut self, sequence: u64) -> Self {
        self.sequence = Some(sequence);
        self
    }

    /// Sets `spiffe_refresh_hint` (written in whole seconds).
    #[must_use]
    pub fn with_refresh_hint(mut self, refresh_hint: Duration) -> Self {
        self.refresh_hint = Some(refresh_hint);
        self
    }

    /// Parses a SPIFFE bundle document (JWK Set) for `trust_domain`; see the
    /// [module docs](self) for what is ignored and what is rejected.
    ///
    /// # Errors
    /// Malformed JSON, caps exceeded ([`MAX_BUNDLE_DOCUMENT_BYTES`], [`MAX_BUNDLE_KEYS`]), or a
    /// malformed entry of a known kind.
    pub fn parse_document(trust_domain: TrustDomain, bytes: &[u8]) -> Result<Self, BundleError> {
        document::parse_document(trust_domain, bytes)
    }

    /// Writes this bundle as a SPIFFE bundle document: X.509 authorities as
    /// `{kty, use: "x509-svid", x5c, key members}`, JWT authorities as
    /// `{kty, use: "jwt-svid", kid, key members[, alg]}`.
    pub fn to_document_json(&self) -> String {
        document::to_document_json(self)
    }

    /// The trust domain both parts belong to ([`SpiffeBundle::new`] checks they match).
    pub fn trust_domain(&self) -> &TrustDomain {
        self.x509.trust_domain()
    }

    /// The X.509 authorities.
    pub fn x509(&self) -> &X509Bundle {
        &self.x509
    }

    /// The JWT authorities, indexed by `kid`.
    pub fn jwt(&self) -> &JwtBundle {
        &self.jwt
    }

    /// `spiffe_sequence`, when present.
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }

    /// `spiffe_refresh_hint`, when present, exactly as published (unbounded: use
    /// [`SpiffeBundle::refresh_hint_or_default`] to schedule refreshes).
    pub fn refresh_hint(&self) -> Option<Duration> {
        self.refresh_hint
    }

    /// The interval to refresh this bundle at: `spiffe_refresh_hint` clamped to
    /// [`MIN_REFRESH_HINT`]..=[`MAX_REFRESH_HINT`], or [`DEFAULT_REFRESH_HINT`] when absent. The
    /// hint comes from the publisher, so it is not trusted to be sane; the raw value stays
    /// available from [`SpiffeBundle::refresh_hint`].
    pub fn refresh_hint_or_default(&self) -> Duration {
        self.refresh_hint.map_or(DEFAULT_REFRESH_HINT, |hint| {
            hint.clamp(MIN_REFRESH_HINT, MAX_REFRESH_HINT)
        })
    }

    /// Same as [`SpiffeBundle::refresh_hint_or_default`]: the clamped refresh interval.
    pub fn refresh_interval(&self) -> Duration {
        self.refresh_hint_or_default()
    }

    /// Document entries that were skipped while parsing, with the reason, for operators.
    pub fn ignored(&self) -> &[IgnoredEntry] {
        &self.ignored
    }
}

// === impl BundleSet ===

/// One [`SpiffeBundle`] per trust domain. Bundles are never merged.
///
/// Cloning copies one reference count per trust domain; share it behind an `Arc` (see
/// [`BundleProvider`]).
#[derive(Debug, Clone, Default)]
pub struct BundleSet {
    bundles: BTreeMap<TrustDomain, Arc<SpiffeBundle>>,
}

impl BundleSet {
    /// An empty set: nothing verifies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the bundle of a trust domain that has none yet.
    ///
    /// # Errors
    /// [`BundleError::DuplicateTrustDomain`] when the set already has a bundle for it.
    pub fn insert(&mut self, bundle: SpiffeBundle) -> Result<(), BundleError> {
        let trust_domain = bundle.trust_domain().clone();
        if self.bundles.contains_key(&trust_domain) {
            return Err(BundleError::DuplicateTrustDomain { trust_domain });
        }
        self.bundles.insert(trust_domain, Arc::new(bundle));
        Ok(())
    }

    /// Sets the bundle of its trust domain, returning the one it replaces (for sources that
    /// refresh one trust domain at a time).
    pub fn replace(&mut self, bundle: SpiffeBundle) -> Option<Arc<SpiffeBundle>> {
        self.bundles
            .insert(bundle.trust_domain().clone(), Arc::new(bundle))
    }

    /// Removes the bundle of a trust domain.
    pub fn remove(&mut self, trust_domain: &TrustDomain) -> Option<Arc<SpiffeBundle>> {
        self.bundles.remove(trust_domain)
    }

    /// Parses a bundle map `{"trust_domains": {td: bundle document, ...}}` (spec §5). Keys are
    /// trust domain names or trust domain SPIFFE IDs; two keys naming the same trust domain are
    /// rejected.
    ///
    /// # Errors
    /// Malformed JSON, a bad or duplicate key, caps exceeded ([`MAX_BUNDLE_MAP_BYTES`],
    /// [`MAX_BUNDLE_MAP_TRUST_DOMAINS`], and the per-document caps), or a bundle that fails to parse.
    pub fn parse_bundle_map(bytes: &[u8]) -> Result<Self, BundleError> {
        document::parse_bundle_map(bytes)
    }

    /// The bundle of exactly this trust domain; `None` when the set has none (there is no
    /// fallback to another trust domain's bundle).
    pub fn get(&self, trust_domain: &TrustDomain) -> Option<&Arc<SpiffeBundle>> {
        self.bundles.get(trust_domain)
    }

    /// The bundle of a trust domain, looked up by bare name.
    pub fn get_by_name(&self, trust_domain: &str) -> Option<&Arc<SpiffeBundle>> {
        self.bundles.get(trust_domain)
    }

    /// The X.509 authorities of a trust domain.
    pub fn x509(&self, trust_domain: &TrustDomain) -> Option<&X509Bundle> {
        self.get(trust_domain).map(|b| b.x509())
    }

    /// The JWT authorities of a trust domain.
    pub fn jwt(&self, trust_domain: &TrustDomain) -> Option<&JwtBundle> {
        self.get(trust_domain).map(|b| b.jwt())
    }

    /// Bundles in trust domain order.
    pub fn iter(&self) -> impl Iterator<Item = (&TrustDomain, &Arc<SpiffeBundle>)> + '_ {
        self.bundles.iter()
    }

    /// The trust domains that have a bundle.
    pub fn trust_domains(&self) -> impl Iterator<Item = &TrustDomain> + '_ {
        self.bundles.keys()
    }

    /// Number of trust domains.
    pub fn len(&self) -> usize {
        self.bundles.len()
    }

    /// Whether the set has no trust domain at all (then nothing verifies against it).
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }
}

impl<'a> IntoIterator for &'a BundleSet {
    type Item = (&'a TrustDomain, &'a Arc<SpiffeBundle>);
    type IntoIter = std::collections::btree_map::Iter<'a, TrustDomain, Arc<SpiffeBundle>>;

    fn into_iter(self) -> Self::IntoIter {
        self.bundles.iter()
    }
}

// === BundleProvider ===

/// Where verifiers get the current bundles from. Implementations return a snapshot; the caller
/// uses that one snapshot for a whole verification.
pub trait BundleProvider: Send + Sync + fmt::Debug {
    /// The latest published bundles, as one immutable snapshot. Implementations must not block
    /// or do I/O here (the sources return an `Arc` clone); callers take one snapshot per
    /// verification so every check of it sees the same bundles. An empty set means nothing
    /// verifies.
    fn bundles(&self) -> Arc<BundleSet>;
}

impl BundleProvider for ArcSwap<BundleSet> {
    fn bundles(&self) -> Arc<BundleSet> {
        self.load_full()
    }
}

impl BundleProvider for Arc<BundleSet> {
    fn bundles(&self) -> Arc<BundleSet> {
        Arc::clone(self)
    }
}
