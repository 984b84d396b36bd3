//! Minting: claims plus one signature with the key ring's current leaf.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use svid_broker_identity::id::{MAX_SPIFFE_ID_LEN, SpiffeId};
use svid_broker_identity::limits::{MAX_ISSUER_LEN, MAX_SERVICE_LEN};
use svid_broker_identity::secret::{ExposeSecret, SecretString, seal_string};
use zeroize::Zeroizing;

use crate::Profile;
use crate::claims::{Access, Claims, check_claim, normalize_access};
use crate::error::{Claim, TokenError};
use crate::keys::KeyRing;

/// Default token lifetime.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);
/// Shortest token lifetime: the token spec's default `expires_in`, and what clients assume as
/// a floor.
pub const MIN_TOKEN_TTL: Duration = Duration::from_secs(60);
/// The leeway distribution (2.8 and 3.x) grants on `exp` and `nbf`.
pub const REGISTRY_LEEWAY: Duration = Duration::from_secs(60);
/// How far `nbf` and `iat` are set into the past: zot checks `iat` with zero leeway, so a
/// registry whose clock is a little behind ours would otherwise reject a fresh token.
pub const CLOCK_BACKDATE: Duration = Duration::from_secs(5);

/// Length of the random `jti`, in bytes (128 bits).
const JTI_BYTES: usize = 16;
/// `jti`s drawn from the random generator at once (see [`JtiPool`]).
const JTIS_PER_DRAW: usize = 64;
/// Longest base64url signature: RSA-2048 (256 bytes) is 342 characters.
const MAX_SIGNATURE_B64_LEN: usize = 342;

/// Signs registry tokens with a [`KeyRing`].
#[derive(Debug)]
pub struct TokenMinter {
    keys: KeyRing,
    jtis: Mutex<JtiPool>,
}

/// Random bytes for [`JTIS_PER_DRAW`] `jti`s, drawn in one call and handed out 16 at a time.
///
/// Each `rand::fill` call pays aws-lc's per-call overhead (about 1% of a realm exchange in a
/// profile) for 16 bytes; one draw per 64 tokens pays it once. The bytes are not secret (a
/// `jti` is logged and audited), only unpredictable and unique, which drawing them ahead of
/// time does not change. Each byte is handed out once and zeroed when taken.
struct JtiPool {
    bytes: [u8; JTI_BYTES * JTIS_PER_DRAW],
    /// How many `jti`s of `bytes` are taken (all, initially, so the first mint draws).
    taken: usize,
}

impl std::fmt::Debug for JtiPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JtiPool").finish_non_exhaustive()
    }
}

impl JtiPool {
    fn new() -> Self {
        Self {
            bytes: [0; JTI_BYTES * JTIS_PER_DRAW],
            taken: JTIS_PER_DRAW,
        }
    }

    fn take(&mut self) -> Result<[u8; JTI_BYTES], TokenError> {
        if self.taken == JTIS_PER_DRAW {
            aws_lc_rs::rand::fill(&mut self.bytes).map_err(|_| TokenError::Random)?;
            self.taken = 0;
        }
        let slot = &mut self.bytes[self.taken * JTI_BYTES..(self.taken + 1) * JTI_BYTES];
        let mut jti = [0u8; JTI_BYTES];
        jti.copy_from_slice(slot);
        slot.fill(0);
        self.taken += 1;
        Ok(jti)
    }
}

/// What to put into one token. Build with [`MintRequest::new`], then adjust fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MintRequest<'a> {
    /// `iss`: exactly the registry's configured `auth.token.issuer`.
    pub issuer: &'a str,
    /// `aud`: exactly the registry's `auth.token.service`.
    pub audience: &'a str,
    /// `sub`: the workload's SPIFFE ID (registries log it as the user).
    pub subject: &'a SpiffeId,
    /// The granted access; normalized (sorted, merged, deduplicated) before signing.
    pub access: &'a [Access],
    /// Lifetime; whole seconds count, at least [`MIN_TOKEN_TTL`] and at most the key ring's
    /// `max_token_ttl`. Default [`DEFAULT_TOKEN_TTL`].
    pub ttl: Duration,
    /// Header profile of the target registry (the policy's [`Profile`] for it).
    pub profile: Profile,
    /// The issuing time; truncated to whole seconds. `iat` and `nbf` are [`CLOCK_BACKDATE`]
    /// before it and `exp` is `ttl` after it.
    pub now: SystemTime,
}

impl<'a> MintRequest<'a> {
    /// A request with the default lifetime. There is no default profile: a token shaped for
    /// the wrong registry flavour would be refused there.
    pub fn new(
        issuer: &'a str,
        audience: &'a str,
        subject: &'a SpiffeId,
        access: &'a [Access],
        profile: Profile,
        now: SystemTime,
    ) -> Self {
        Self {
            issuer,
            audience,
            subject,
            access,
            ttl: DEFAULT_TOKEN_TTL,
            profile,
            now,
        }
    }

    /// Sets the lifetime.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

/// A signed registry token: a bearer credential. It is a [`SecretString`], so it is wiped on
/// drop, `Debug` prints no part of it, and there is no `Display`; the text comes out only
/// through [`ExposeSecret::expose_secret`] (the compact JWS, to send as
/// `Authorization: Bearer` or in the realm's `token` field).
#[derive(Debug, Clone)]
pub struct RegistryToken(SecretString);

impl ExposeSecret<str> for RegistryToken {
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A minted token and what the caller needs for the response and the audit log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MintedToken {
    /// The signed compact JWS, to send as `Authorization: Bearer` or in the realm's `token`
    /// field. A secret: never log it; the `jti` below identifies it instead.
    pub token: RegistryToken,
    /// The `jti` (128 random bits, base64url): safe to log, identifies the token in audits.
    pub jti: String,
    /// The issuing time, whole seconds (the realm's `issued_at`). The `iat` and `nbf` claims
    /// are [`CLOCK_BACKDATE`] earlier.
    pub issued_at: SystemTime,
    /// The `exp` claim, whole seconds: `issued_at` plus the request's TTL. Registries accept the
    /// token until this instant (plus their own leeway, [`REGISTRY_LEEWAY`] for distribution).
    pub expires_at: SystemTime,
    /// The `access` claim as signed (normalized).
    pub access: Vec<Access>,
    /// The `kid` header value under the request's profile.
    pub key_id: String,
}

impl MintedToken {
    /// `expires_at - issued_at`, the realm's `expires_in`.
    pub fn expires_in(&self) -> Duration {
        self.expires_at
            .duration_since(self.issued_at)
            .unwrap_or_default()
    }
}

impl TokenMinter {
    /// A minter signing with `keys`.
    pub fn new(keys: KeyRing) -> Self {
        Self {
            keys,
            jtis: Mutex::new(JtiPool::new()),
        }
    }

    /// The key ring (for JWKS, discovery and the CA bundle).
    pub fn key_ring(&self) -> &KeyRing {
        &self.keys
    }

    /// Checks the request, rotates the signing leaf if due, and signs one token.
    ///
    /// # Errors
    /// A [`TokenError`] naming the rejected input, or a rotation/signing failure.
    pub fn mint(&self, req: &MintRequest<'_>) -> Result<MintedToken, TokenError> {
        let ttl_secs = req.ttl.as_secs();
        if ttl_secs < MIN_TOKEN_TTL.as_secs() {
            return Err(TokenError::TtlTooShort {
                ttl_secs,
                min_secs: MIN_TOKEN_TTL.as_secs(),
            });
        }
        let max = self.keys.config().max_token_ttl.as_secs();
        if ttl_secs > max {
            return Err(TokenError::TtlTooLong {
                ttl_secs,
                max_secs: max,
            });
        }
        check_claim(Claim::Issuer, req.issuer, MAX_ISSUER_LEN)?;
        check_claim(Claim::Audience, req.audience, MAX_SERVICE_LEN)?;
        check_claim(Claim::Subject, req.subject.as_str(), MAX_SPIFFE_ID_LEN)?;
        let access = normalize_access(req.access)?;

        let now = req
            .now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| TokenError::TimeOutOfRange)?
            .as_secs();
        let iat = now
            .checked_sub(CLOCK_BACKDATE.as_secs())
            .ok_or(TokenError::TimeOutOfRange)?;
        let exp = now
            .checked_add(ttl_secs)
            .ok_or(TokenError::TimeOutOfRange)?;

        let required = exp + REGISTRY_LEEWAY.as_secs();
        let leaf = self.keys.current();
        // A CA key in a key store (an HSM, a KMS) is asked to sign a leaf only when this token
        // cannot do without one: the ring's owner rotates on its own schedule, off the request
        // path, so a slow or unreachable store never holds requests while the current leaf
        // still serves. A CA key in memory rotates here when due, as it always did.
        let must_rotate = leaf.not_after_unix() <= required || req.now < leaf.not_before();
        if must_rotate || !self.keys.ca_key_is_external() {
            self.keys
                .rotate_if_due(req.now)
                .map_err(TokenError::Rotation)?;
        }
        let leaf = self.keys.current();
        if leaf.not_after_unix() <= required {
            return Err(TokenError::LeafTooShortLived {
                leaf_not_after: leaf.not_after_unix(),
                required,
            });
        }

        let jti_bytes = self
            .jtis
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        let jti = URL_SAFE_NO_PAD.encode(jti_bytes);

        let claims = serde_json::to_vec(&Claims {
            iss: req.issuer,
            sub: req.subject.as_str(),
            aud: req.audience,
            exp,
            nbf: iat,
            iat,
            jti: &jti,
            access: &access,
        })
        .map_err(|_| TokenError::Signing)?;
        let header = leaf.header_b64(req.profile);
        // Sized up front so the buffer never reallocates: a reallocation would leave an
        // unwiped copy of the token behind.
        let mut token = Zeroizing::new(String::with_capacity(
            header.len() + 2 + claims.len().div_ceil(3) * 4 + MAX_SIGNATURE_B64_LEN,
        ));
        token.push_str(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
        let signature = leaf
            .sign(token.as_bytes())
            .map_err(|_| TokenError::Signing)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);

        Ok(MintedToken {
            token: RegistryToken(seal_string(token)),
            jti,
            issued_at: UNIX_EPOCH + Duration::from_secs(now),
            expires_at: UNIX_EPOCH + Duration::from_secs(exp),
            access,
            key_id: leaf.key_id(req.profile).to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
