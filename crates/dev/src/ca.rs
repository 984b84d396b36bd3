//! The in-process development CA: one self-signed P-256 root per trust domain, X.509-SVIDs signed
//! by it, and ES256 JWT-SVIDs signed by a separate JWT key.
//!
//! Everything here is meant for tests, demos and laptops. The keys live in process memory and are
//! regenerated on every start; nothing is persisted.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm, SigningKey,
};
use rustls_pki_types::CertificateDer;
use svid_broker_identity::bundle::{BundleError, BundleSet, SpiffeBundle};
use svid_broker_identity::clock::{Clock, SystemClock};
use svid_broker_identity::id::{SpiffeId, TrustDomain};
use svid_broker_identity::limits::{MAX_JWT_AUDIENCE_LEN, MAX_JWT_AUDIENCES};
use svid_broker_identity::secret::SecretString;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::jwks;
use crate::secret::{SecretKeyDer, pem_block};

/// Default root lifetime, counted from `build` (the root is not renewed by rotations).
pub const DEFAULT_CA_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How far the root's `notBefore` is set into the past, so peers with a slow clock accept it.
pub const CA_BACKDATE: Duration = Duration::from_secs(5 * 60);
/// Default lifetime of an X.509-SVID.
pub const DEFAULT_X509_SVID_TTL: Duration = Duration::from_secs(60 * 60);
/// How far an X.509-SVID's `notBefore` is set into the past (clock skew between peers).
pub const X509_SVID_BACKDATE: Duration = Duration::from_secs(60);
/// Default lifetime of a JWT-SVID (SPIRE's `default_jwt_svid_ttl`).
pub const DEFAULT_JWT_SVID_TTL: Duration = Duration::from_secs(5 * 60);
/// Default `spiffe_refresh_hint` of the bundle document.
pub const DEFAULT_REFRESH_HINT: Duration = Duration::from_secs(5 * 60);
/// Most workload identities a builder may be given; more fails `build`.
pub const MAX_IDENTITIES: usize = 64;

/// Which lifetime setting was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TtlKind {
    /// The root certificate's lifetime.
    Ca,
    /// An X.509-SVID's lifetime.
    X509Svid,
    /// A JWT-SVID's lifetime.
    JwtSvid,
}

impl fmt::Display for TtlKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ca => "ca",
            Self::X509Svid => "x509-svid",
            Self::JwtSvid => "jwt-svid",
        })
    }
}

/// Why the dev CA refused to configure itself or to issue something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DevCaError {
    /// The SPIFFE ID belongs to another trust domain than this CA's.
    #[error("spiffe id {id} is not in trust domain {trust_domain}")]
    ForeignTrustDomain {
        /// The SPIFFE ID as given.
        id: SpiffeId,
        /// This CA's trust domain.
        trust_domain: TrustDomain,
    },
    /// The SPIFFE ID has no path: SVIDs name workloads, never the trust domain itself.
    #[error("spiffe id {id} has no path and cannot be a workload identity")]
    MissingPath {
        /// The trust domain's own ID (`spiffe://example.org`), as given.
        id: SpiffeId,
    },
    /// The same identity was configured twice.
    #[error("spiffe id {id} is configured more than once")]
    DuplicateIdentity {
        /// The SPIFFE ID that was added more than once.
        id: SpiffeId,
    },
    /// More identities than [`MAX_IDENTITIES`].
    #[error("{count} identities configured, at most {max} allowed")]
    TooManyIdentities {
        /// How many identities the builder was given.
        count: usize,
        /// Always [`MAX_IDENTITIES`].
        max: usize,
    },
    /// A lifetime was zero.
    #[error("{kind} ttl must be greater than zero")]
    ZeroTtl {
        /// Which lifetime: a builder setting, or the `ttl` of an `issue_*_at` call.
        kind: TtlKind,
    },
    /// A JWT-SVID was requested without any audience.
    #[error("a jwt-svid needs at least one audience")]
    NoAudience,
    /// One audience value was the empty string.
    #[error("audience {index} is empty")]
    EmptyAudience {
        /// Zero-based position of the empty value in the audience list.
        index: usize,
    },
    /// More audiences than [`MAX_JWT_AUDIENCES`].
    #[error("{count} audiences given, at most {max} allowed")]
    TooManyAudiences {
        /// How many audience values were given.
        count: usize,
        /// Always [`MAX_JWT_AUDIENCES`].
        max: usize,
    },
    /// One audience value is longer than [`MAX_JWT_AUDIENCE_LEN`].
    #[error("audience {index} is {len} bytes long, at most {max} allowed")]
    AudienceTooLong {
        /// Zero-based position of the value in the audience list.
        index: usize,
        /// Its length in bytes.
        len: usize,
        /// Always [`MAX_JWT_AUDIENCE_LEN`], in bytes.
        max: usize,
    },
    /// An issuing time (or time plus lifetime) falls before 1970 or cannot be represented.
    #[error("time out of range for {kind} issuance")]
    TimeOutOfRange {
        /// What was being issued.
        kind: TtlKind,
    },
    /// The system random generator or aws-lc-rs failed to make a key.
    #[error("key generation failed")]
    KeyGeneration,
    /// aws-lc-rs failed to sign a JWT.
    #[error("jwt signing failed")]
    JwtSigning,
    /// rcgen failed to build or sign a certificate.
    #[error("certificate generation failed")]
    Certificate(#[source] rcgen::Error),
}

// === impl keys ===

/// The CA's signing key, wired into rcgen so certificates are signed by aws-lc-rs directly and
/// no unzeroized copy of the private key is kept by rcgen.
struct CaKey {
    pair: EcdsaKeyPair,
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.pair
            .sign(&SystemRandom::new(), msg)
            .map(|sig| sig.as_ref().to_vec())
            .map_err(|_| rcgen::Error::RingUnspecified)
    }
}

/// A leaf's public key (uncompressed P-256 point) for rcgen.
struct LeafPublicKey(Vec<u8>);

impl PublicKeyData for LeafPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// One ES256 JWT signing key.
struct JwtKey {
    kid: String,
    pair: EcdsaKeyPair,
    /// The latest `exp` of any token signed with this key: once that has passed, a retired key
    /// can leave the bundle without breaking a token still in use.
    latest_exp: SystemTime,
}

impl JwtKey {
    fn generate() -> Result<Self, DevCaError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| DevCaError::KeyGeneration)?;
        let (x, y) =
            jwks::split_p256_point(pair.public_key().as_ref()).ok_or(DevCaError::KeyGeneration)?;
        Ok(Self {
            kid: jwks::p256_thumbprint(&x, &y),
            pair,
            latest_exp: UNIX_EPOCH,
        })
    }
}

fn uncompressed_point(pair: &EcdsaKeyPair) -> Vec<u8> {
    pair.public_key().as_ref().to_vec()
}

/// Random positive serial of 16 bytes (RFC 5280 allows up to 20).
fn random_serial() -> Result<SerialNumber, DevCaError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| DevCaError::KeyGeneration)?;
    // Clear the sign bit so the INTEGER stays positive, and set a low bit of the first byte so
    // DER does not need to strip a leading zero (which would shorten the serial).
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn unix_seconds(t: SystemTime, kind: TtlKind) -> Result<u64, DevCaError> {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| DevCaError::TimeOutOfRange { kind })
}

fn checked_window(
    now: SystemTime,
    backdate: Duration,
    ttl: Duration,
    kind: TtlKind,
) -> Result<(SystemTime, SystemTime), DevCaError> {
    let not_before = now
        .checked_sub(backdate)
        .ok_or(DevCaError::TimeOutOfRange { kind })?;
    let not_after = now
        .checked_add(ttl)
        .ok_or(DevCaError::TimeOutOfRange { kind })?;
    // rcgen encodes as UTCTime/GeneralizedTime; anything before the epoch is out of our range.
    unix_seconds(not_before, kind)?;
    unix_seconds(not_after, kind)?;
    Ok((not_before, not_after))
}

// === impl DevX509Svid ===

/// An X.509-SVID issued by the dev CA: the certificate chain (leaf first) and its private key.
#[derive(Clone)]
pub struct DevX509Svid {
    spiffe_id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    key: SecretKeyDer,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl DevX509Svid {
    /// The SPIFFE ID in the leaf's URI SAN.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The chain, leaf first. The dev CA signs leaves directly, so this holds just the leaf; the
    /// root is in the bundle, not the chain.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The leaf certificate (DER), whose URI SAN is [`spiffe_id`](Self::spiffe_id).
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // The constructor always puts the leaf at index 0.
        &self.chain[0]
    }

    /// The leaf's private key (PKCS#8).
    pub fn private_key(&self) -> &SecretKeyDer {
        &self.key
    }

    /// The leaf's `notBefore` (already back-dated).
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// The leaf's `notAfter`: the issuing time plus the X.509-SVID lifetime (the back-dating not
    /// included), never past the root's own `notAfter`.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The chain as concatenated DER, leaf first (the Workload API's `x509_svid` field).
    pub fn chain_der(&self) -> Vec<u8> {
        concat_der(&self.chain)
    }

    /// The chain as PEM `CERTIFICATE` blocks, leaf first (`svid.pem`).
    pub fn chain_pem(&self) -> String {
        self.chain
            .iter()
            .map(|c| pem_block("CERTIFICATE", c.as_ref()))
            .collect()
    }
}

impl fmt::Debug for DevX509Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevX509Svid")
            .field("spiffe_id", &self.spiffe_id)
            .field("chain_len", &self.chain.len())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key", &self.key)
            .finish()
    }
}

pub(crate) fn concat_der(certs: &[CertificateDer<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(certs.iter().map(|c| c.len()).sum());
    for c in certs {
        out.extend_from_slice(c.as_ref());
    }
    out
}

// === impl DevJwtSvid ===

/// A JWT-SVID issued by the dev CA. `Debug` never shows the token.
#[derive(Clone)]
pub struct DevJwtSvid {
    token: SecretString,
    spiffe_id: SpiffeId,
    audience: Vec<String>,
    kid: String,
    issued_at: u64,
    expiry: u64,
}

impl DevJwtSvid {
    /// The signed JWT-SVID in JWS compact form, as the Workload API hands it out. A bearer
    /// secret: `Debug` never shows it.
    pub fn token(&self) -> &SecretString {
        &self.token
    }

    /// The `sub` claim: the workload's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The `aud` claim, in the order requested (at least one value, none empty).
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// The `kid` header: which bundle key signed it.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The `iat` claim (seconds since the epoch).
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// The `exp` claim (seconds since the epoch).
    pub fn expiry(&self) -> u64 {
        self.expiry
    }
}

impl fmt::Debug for DevJwtSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevJwtSvid")
            .field("spiffe_id", &self.spiffe_id)
            .field("audience", &self.audience)
            .field("kid", &self.kid)
            .field("issued_at", &self.issued_at)
            .field("expiry", &self.expiry)
            .field("token", &self.token)
            .finish()
    }
}

// === impl DevTrustDomainBuilder ===

/// Configures a [`DevTrustDomain`].
#[derive(Debug)]
pub struct DevTrustDomainBuilder {
    trust_domain: TrustDomain,
    identities: Vec<SpiffeId>,
    ca_ttl: Duration,
    x509_svid_ttl: Duration,
    jwt_svid_ttl: Duration,
    refresh_hint: Duration,
    clock: Arc<dyn Clock>,
}

impl DevTrustDomainBuilder {
    /// Adds a workload identity the CA issues SVIDs for on every rotation. The first one added is
    /// the default identity of the Workload API.
    #[must_use]
    pub fn identity(mut self, id: SpiffeId) -> Self {
        self.identities.push(id);
        self
    }

    /// Adds several workload identities, in order.
    #[must_use]
    pub fn identities(mut self, ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        self.identities.extend(ids);
        self
    }

    /// The root certificate's lifetime (default [`DEFAULT_CA_TTL`]).
    #[must_use]
    pub fn ca_ttl(mut self, ttl: Duration) -> Self {
        self.ca_ttl = ttl;
        self
    }

    /// The X.509-SVID lifetime (default [`DEFAULT_X509_SVID_TTL`]).
    #[must_use]
    pub fn x509_svid_ttl(mut self, ttl: Duration) -> Self {
        self.x509_svid_ttl = ttl;
        self
    }

    /// The JWT-SVID lifetime (default [`DEFAULT_JWT_SVID_TTL`]).
    #[must_use]
    pub fn jwt_svid_ttl(mut self, ttl: Duration) -> Self {
        self.jwt_svid_ttl = ttl;
        self
    }

    /// The `spiffe_refresh_hint` of the bundle document (default [`DEFAULT_REFRESH_HINT`]).
    #[must_use]
    pub fn refresh_hint(mut self, hint: Duration) -> Self {
        self.refresh_hint = hint;
        self
    }

    /// The clock used for everything issued without an explicit time (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the configuration, creates the root and the JWT key and issues the first SVIDs.
    ///
    /// # Errors
    /// [`DevCaError`] naming the rejected setting, or a key/certificate generation failure.
    pub fn build(self) -> Result<DevTrustDomain, DevCaError> {
        for (ttl, kind) in [
            (self.ca_ttl, TtlKind::Ca),
            (self.x509_svid_ttl, TtlKind::X509Svid),
            (self.jwt_svid_ttl, TtlKind::JwtSvid),
        ] {
            if ttl.is_zero() {
                return Err(DevCaError::ZeroTtl { kind });
            }
        }
        if self.identities.len() > MAX_IDENTITIES {
            return Err(DevCaError::TooManyIdentities {
                count: self.identities.len(),
                max: MAX_IDENTITIES,
            });
        }
        for (i, id) in self.identities.iter().enumerate() {
            check_workload_id(&self.trust_domain, id)?;
            if self.identities[..i].contains(id) {
                return Err(DevCaError::DuplicateIdentity { id: id.clone() });
            }
        }

        let now = self.clock.now();
        let ca = Ca::generate(&self.trust_domain, now, self.ca_ttl)?;
        let jwt_key = JwtKey::generate()?;
        let (generation_tx, _) = watch::channel(0);
        let td = DevTrustDomain {
            config: Config {
                trust_domain: self.trust_domain,
                identities: self.identities,
                x509_svid_ttl: self.x509_svid_ttl,
                jwt_svid_ttl: self.jwt_svid_ttl,
                refresh_hint: self.refresh_hint,
                clock: self.clock,
            },
            state: Mutex::new(State {
                ca,
                jwt_keys: vec![jwt_key],
                svids: Vec::new(),
                generation: 0,
            }),
            generation_tx,
        };
        {
            let mut state = td.lock();
            state.svids = td.issue_configured(&state, now)?;
            state.generation = 1;
        }
        td.generation_tx.send_replace(1);
        Ok(td)
    }
}

fn check_workload_id(td: &TrustDomain, id: &SpiffeId) -> Result<(), DevCaError> {
    if id.trust_domain() != td {
        return Err(DevCaError::ForeignTrustDomain {
            id: id.clone(),
            trust_domain: td.clone(),
        });
    }
    if id.is_trust_domain_id() {
        return Err(DevCaError::MissingPath { id: id.clone() });
    }
    Ok(())
}

// === impl DevTrustDomain ===

struct Ca {
    key: CaKey,
    params: CertificateParams,
    cert: CertificateDer<'static>,
    not_after: SystemTime,
}

impl Ca {
    fn generate(td: &TrustDomain, now: SystemTime, ttl: Duration) -> Result<Self, DevCaError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
            .map_err(|_| DevCaError::KeyGeneration)?;
        let key = CaKey { pair };
        let (not_before, not_after) = checked_window(now, CA_BACKDATE, ttl, TtlKind::Ca)?;

        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "svid-broker dev");
        dn.push(DnType::CommonName, format!("svid-broker dev CA {td}"));
        params.distinguished_name = dn;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        // A signing certificate may carry the trust domain's own ID (X509-SVID §4.2); it helps
        // operators see which trust domain a root belongs to.
        params.subject_alt_names = vec![SanType::URI(
            td.id_str()
                .to_owned()
                .try_into()
                .map_err(DevCaError::Certificate)?,
        )];
        let cert = params
            .self_signed(&key)
            .map_err(DevCaError::Certificate)?
            .der()
            .clone();
        Ok(Self {
            key,
            params,
            cert,
            not_after,
        })
    }
}

struct State {
    ca: Ca,
    /// Current key first, then retired keys whose tokens may still be live.
    jwt_keys: Vec<JwtKey>,
    /// One SVID per configured identity, in configuration order.
    svids: Vec<Arc<DevX509Svid>>,
    generation: u64,
}

#[derive(Debug)]
struct Config {
    trust_domain: TrustDomain,
    identities: Vec<SpiffeId>,
    x509_svid_ttl: Duration,
    jwt_svid_ttl: Duration,
    refresh_hint: Duration,
    clock: Arc<dyn Clock>,
}

/// A development SPIFFE trust domain: an in-process CA plus the identities it serves.
///
/// Shared as `Arc<DevTrustDomain>` between the test (or CLI) and a
/// [`WorkloadApiServer`](crate::WorkloadApiServer); [`rotate`](Self::rotate) is seen by every
/// [`subscribe`](Self::subscribe)r.
pub struct DevTrustDomain {
    config: Config,
    state: Mutex<State>,
    generation_tx: watch::Sender<u64>,
}

impl fmt::Debug for DevTrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevTrustDomain")
            .field("trust_domain", &self.config.trust_domain)
            .field("identities", &self.config.identities)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl DevTrustDomain {
    /// Starts configuring a dev trust domain.
    pub fn builder(trust_domain: TrustDomain) -> DevTrustDomainBuilder {
        DevTrustDomainBuilder {
            trust_domain,
            identities: Vec::new(),
            ca_ttl: DEFAULT_CA_TTL,
            x509_svid_ttl: DEFAULT_X509_SVID_TTL,
            jwt_svid_ttl: DEFAULT_JWT_SVID_TTL,
            refresh_hint: DEFAULT_REFRESH_HINT,
            clock: Arc::new(SystemClock),
        }
    }

    /// A dev trust domain with default lifetimes, serving `identities` (first = default).
    ///
    /// # Errors
    /// See [`DevTrustDomainBuilder::build`].
    pub fn new(
        trust_domain: TrustDomain,
        identities: impl IntoIterator<Item = SpiffeId>,
    ) -> Result<Self, DevCaError> {
        Self::builder(trust_domain).identities(identities).build()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation replaces whole fields after all fallible work is done, so the state is
        // consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The trust domain every SVID is issued in, also in the root's URI SAN.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.config.trust_domain
    }

    /// The configured workload identities, default first.
    pub fn identities(&self) -> &[SpiffeId] {
        &self.config.identities
    }

    /// The configured X.509-SVID lifetime: what [`issue_x509_svid`](Self::issue_x509_svid) and rotations
    /// use.
    pub fn x509_svid_ttl(&self) -> Duration {
        self.config.x509_svid_ttl
    }

    /// The configured JWT-SVID lifetime: what [`issue_jwt_svid`](Self::issue_jwt_svid) uses.
    pub fn jwt_svid_ttl(&self) -> Duration {
        self.config.jwt_svid_ttl
    }

    /// The clock used when no explicit time is given.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.config.clock
    }

    /// Counts rotations: 1 after `build`, +1 per [`rotate`](Self::rotate).
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// A receiver that sees the generation change on every rotation (for streaming servers).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation_tx.subscribe()
    }

    /// The current X.509-SVIDs of the configured identities, default first.
    pub fn x509_svids(&self) -> Vec<Arc<DevX509Svid>> {
        self.lock().svids.clone()
    }

    /// The current X.509-SVID of one configured identity.
    pub fn x509_svid(&self, id: &SpiffeId) -> Option<Arc<DevX509Svid>> {
        self.lock()
            .svids
            .iter()
            .find(|s| s.spiffe_id() == id)
            .cloned()
    }

    /// Issues a fresh X.509-SVID for any workload ID in this trust domain, valid from now (minus
    /// [`X509_SVID_BACKDATE`]) for the configured lifetime.
    ///
    /// # Errors
    /// [`DevCaError::ForeignTrustDomain`], [`DevCaError::MissingPath`] or a generation failure.
    pub fn issue_x509_svid(&self, id: &SpiffeId) -> Result<DevX509Svid, DevCaError> {
        self.issue_x509_svid_at(id, self.config.clock.now(), self.config.x509_svid_ttl)
    }

    /// Issues an X.509-SVID as if the time were `now`, valid for `ttl`: tests use a past `now` to
    /// mint expired SVIDs. `notAfter` never exceeds the root's `notAfter`.
    ///
    /// # Errors
    /// As [`issue_x509_svid`](Self::issue_x509_svid), plus [`DevCaError::ZeroTtl`] and
    /// [`DevCaError::TimeOutOfRange`].
    pub fn issue_x509_svid_at(
        &self,
        id: &SpiffeId,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<DevX509Svid, DevCaError> {
        check_workload_id(&self.config.trust_domain, id)?;
        if ttl.is_zero() {
            return Err(DevCaError::ZeroTtl {
                kind: TtlKind::X509Svid,
            });
        }
        let state = self.lock();
        issue_leaf(&state.ca, id, now, ttl)
    }

    /// Issues a JWT-SVID for any workload ID in this trust domain with the configured lifetime.
    ///
    /// # Errors
    /// The ID or audience rule that failed, or a signing failure.
    pub fn issue_jwt_svid<S: AsRef<str>>(
        &self,
        id: &SpiffeId,
        audience: &[S],
    ) -> Result<DevJwtSvid, DevCaError> {
        self.issue_jwt_svid_at(
            id,
            audience,
            self.config.clock.now(),
            self.config.jwt_svid_ttl,
        )
    }

    /// Issues a JWT-SVID as if the time were `now`, valid for `ttl` (`iat` = `now`,
    /// `exp` = `now + ttl`, whole seconds).
    ///
    /// # Errors
    /// As [`issue_jwt_svid`](Self::issue_jwt_svid), plus [`DevCaError::ZeroTtl`] and
    /// [`DevCaError::TimeOutOfRange`].
    pub fn issue_jwt_svid_at<S: AsRef<str>>(
        &self,
        id: &SpiffeId,
        audience: &[S],
        now: SystemTime,
        ttl: Duration,
    ) -> Result<DevJwtSvid, DevCaError> {
        check_workload_id(&self.config.trust_domain, id)?;
        let audience = check_audience(audience)?;
        if ttl.is_zero() {
            return Err(DevCaError::ZeroTtl {
                kind: TtlKind::JwtSvid,
            });
        }
        let kind = TtlKind::JwtSvid;
        let exp_time = now
            .checked_add(ttl)
            .ok_or(DevCaError::TimeOutOfRange { kind })?;
        let iat = unix_seconds(now, kind)?;
        let exp = unix_seconds(exp_time, kind)?;

        let mut state = self.lock();
        let key = state.jwt_keys.first_mut().ok_or(DevCaError::JwtSigning)?;
        let header = serde_json::json!({ "alg": "ES256", "kid": key.kid, "typ": "JWT" });
        let claims = serde_json::json!({
            "sub": id.as_str(),
            "aud": audience,
            "exp": exp,
            "iat": iat,
        });
        let mut token = String::with_capacity(512);
        token.push_str(&URL_SAFE_NO_PAD.encode(header.to_string()));
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = key
            .pair
            .sign(&SystemRandom::new(), token.as_bytes())
            .map_err(|_| DevCaError::JwtSigning)?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
        if exp_time > key.latest_exp {
            key.latest_exp = exp_time;
        }
        Ok(DevJwtSvid {
            token: SecretString::from(token),
            spiffe_id: id.clone(),
            audience,
            kid: key.kid.clone(),
            issued_at: iat,
            expiry: exp,
        })
    }

    /// Issues fresh X.509-SVIDs for every configured identity and a new JWT signing key. The
    /// previous JWT keys stay in the bundle until the last token they signed has expired.
    /// Subscribers see the new generation.
    ///
    /// # Errors
    /// A key or certificate generation failure; the previous material then stays in place.
    pub fn rotate(&self) -> Result<u64, DevCaError> {
        let now = self.config.clock.now();
        let new_key = JwtKey::generate()?;
        let generation = {
            let mut state = self.lock();
            let svids = self.issue_configured(&state, now)?;
            state.svids = svids;
            let mut keys = Vec::with_capacity(state.jwt_keys.len() + 1);
            keys.push(new_key);
            keys.extend(
                std::mem::take(&mut state.jwt_keys)
                    .into_iter()
                    .filter(|k| k.latest_exp > now),
            );
            state.jwt_keys = keys;
            state.generation += 1;
            state.generation
        };
        tracing::info!(
            trust_domain = %self.config.trust_domain,
            generation,
            "dev trust domain rotated"
        );
        self.generation_tx.send_replace(generation);
        Ok(generation)
    }

    fn issue_configured(
        &self,
        state: &State,
        now: SystemTime,
    ) -> Result<Vec<Arc<DevX509Svid>>, DevCaError> {
        self.config
            .identities
            .iter()
            .map(|id| issue_leaf(&state.ca, id, now, self.config.x509_svid_ttl).map(Arc::new))
            .collect()
    }

    /// The root certificates (the X.509 authorities of the bundle).
    pub fn ca_certificates(&self) -> Vec<CertificateDer<'static>> {
        vec![self.lock().ca.cert.clone()]
    }

    /// The X.509 authorities as concatenated DER (the Workload API's `bundle` fields).
    pub fn x509_bundle_der(&self) -> Vec<u8> {
        concat_der(&self.ca_certificates())
    }

    /// The X.509 authorities as PEM (`bundle.pem`).
    pub fn bundle_pem(&self) -> String {
        self.ca_certificates()
            .iter()
            .map(|c| pem_block("CERTIFICATE", c.as_ref()))
            .collect()
    }

    /// The SPIFFE bundle document (`bundle.jwks.json`): X.509 and JWT authorities,
    /// `spiffe_sequence` (= the generation) and `spiffe_refresh_hint`.
    pub fn bundle_document_json(&self) -> String {
        let state = self.lock();
        let jwt = jwt_keys_of(&state);
        jwks::bundle_document(
            &[(
                state.ca.cert.clone(),
                uncompressed_point(&state.ca.key.pair),
            )],
            &jwt,
            state.generation,
            self.config.refresh_hint,
        )
    }

    /// The JWT authorities as a plain JWKS (what the Workload API's `FetchJWTBundles` sends:
    /// JWT keys only, so clients that need a `kid` on every key accept it).
    pub fn jwt_bundle_jwks_json(&self) -> Vec<u8> {
        let state = self.lock();
        jwks::jwt_only_jwks(&jwt_keys_of(&state)).into_bytes()
    }

    /// The trust bundle as the identity crate's [`SpiffeBundle`], parsed from
    /// [`bundle_document_json`](Self::bundle_document_json) so it goes through the same ingestion
    /// rules as any other bundle.
    ///
    /// # Errors
    /// A [`BundleError`] would mean the dev CA wrote a document the identity crate rejects (a bug).
    pub fn spiffe_bundle(&self) -> Result<SpiffeBundle, BundleError> {
        SpiffeBundle::parse_document(
            self.config.trust_domain.clone(),
            self.bundle_document_json().as_bytes(),
        )
    }

    /// A [`BundleSet`] holding just this trust domain's bundle, for the identity crate's
    /// validators.
    ///
    /// # Errors
    /// As [`spiffe_bundle`](Self::spiffe_bundle).
    pub fn bundle_set(&self) -> Result<BundleSet, BundleError> {
        let mut set = BundleSet::new();
        set.insert(self.spiffe_bundle()?)?;
        Ok(set)
    }

    /// The `kid`s of the JWT keys in the bundle, current key first.
    pub fn jwt_key_ids(&self) -> Vec<String> {
        self.lock().jwt_keys.iter().map(|k| k.kid.clone()).collect()
    }

    /// The root's `notAfter`, fixed at `build`: no SVID outlives it.
    pub fn ca_not_after(&self) -> SystemTime {
        self.lock().ca.not_after
    }
}

fn jwt_keys_of(state: &State) -> Vec<jwks::JwtPublicJwk> {
    state
        .jwt_keys
        .iter()
        .filter_map(|k| jwks::JwtPublicJwk::from_point(&k.kid, &uncompressed_point(&k.pair)))
        .collect()
}

fn check_audience<S: AsRef<str>>(audience: &[S]) -> Result<Vec<String>, DevCaError> {
    if audience.is_empty() {
        return Err(DevCaError::NoAudience);
    }
    if audience.len() > MAX_JWT_AUDIENCES {
        return Err(DevCaError::TooManyAudiences {
            count: audience.len(),
            max: MAX_JWT_AUDIENCES,
        });
    }
    audience
        .iter()
        .enumerate()
        .map(|(index, a)| {
            let a = a.as_ref();
            if a.is_empty() {
                Err(DevCaError::EmptyAudience { index })
            } else if a.len() > MAX_JWT_AUDIENCE_LEN {
                Err(DevCaError::AudienceTooLong {
                    index,
                    len: a.len(),
                    max: MAX_JWT_AUDIENCE_LEN,
                })
            } else {
                Ok(a.to_owned())
            }
        })
        .collect()
}

fn issue_leaf(
    ca: &Ca,
    id: &SpiffeId,
    now: SystemTime,
    ttl: Duration,
) -> Result<DevX509Svid, DevCaError> {
    let kind = TtlKind::X509Svid;
    let (not_before, not_after) = checked_window(now, X509_SVID_BACKDATE, ttl, kind)?;
    // A leaf must not outlive its issuer; peers would reject the chain at the root's expiry
    // anyway, and a shorter notAfter makes rotation happen in time.
    let not_after = not_after.min(ca.not_after);

    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
        .map_err(|_| DevCaError::KeyGeneration)?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
        .map_err(|_| DevCaError::KeyGeneration)?;
    let public = LeafPublicKey(uncompressed_point(&pair));
    let key = SecretKeyDer::new(Zeroizing::new(pkcs8.as_ref().to_vec()));

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "svid-broker dev");
    params.distinguished_name = dn;
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::ExplicitNoCa;
    // rcgen always marks keyUsage critical, as X509-SVID §4.3 wants.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.subject_alt_names = vec![SanType::URI(
        id.as_str()
            .to_owned()
            .try_into()
            .map_err(DevCaError::Certificate)?,
    )];
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let cert = params
        .signed_by(&public, &issuer)
        .map_err(DevCaError::Certificate)?
        .der()
        .clone();
    Ok(DevX509Svid {
        spiffe_id: id.clone(),
        chain: vec![cert],
        key,
        not_before,
        not_after,
    })
}

#[cfg(test)]
mod tests;
