//! Stateless broker credentials: registry login credentials (`sbl1.`) and realm refresh tokens
//! (`sbr2.`).
//!
//! Shape: `<prefix>.<base64url(json payload)>.<base64url(HMAC-SHA256)>`. The MAC covers the
//! prefix and the payload text, so a credential of one kind can never pass as the other even
//! if the keys were equal; they are not: each kind has its own key, derived with HKDF-SHA256
//! from the signing CA private key and a per-kind `info` label. Every replica holding the CA
//! therefore derives the same keys and nothing else needs sharing; rotating the CA revokes
//! every outstanding credential (they are short-lived, so that is acceptable).
//!
//! A refresh token also carries the session it belongs to: `auth_time` (when the SVID or login
//! credential it descends from was authenticated) and `sxp` (the session's absolute end), both
//! copied unchanged into every renewed token, so a chain of renewals can never outlive the
//! original authentication by more than the broker's `max_session`, nor a login credential it
//! was obtained with. Its `scope` is the ceiling inherited from that login credential. The
//! first refresh-token format (`sbr1.`) had neither and is refused with
//! [`CredentialError::UnsupportedVersion`].

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::{hkdf, hmac, rand};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use svid_broker_identity::SpiffeId;
use svid_broker_identity::secret::{SecretString, seal_string};
use svid_broker_policy::ResourceScope;
use svid_broker_policy::scope::{self, ScopeError};
use zeroize::Zeroizing;

/// Longest credential issued or accepted, in bytes (the workspace's one definition, in
/// [`svid_broker_identity::limits`], which says why its value). Issuance refuses anything
/// longer, so the broker never hands out a credential it would itself refuse. As a Basic
/// password (with a SPIFFE ID as the user name) it stays under the realm's
/// `MAX_AUTHORIZATION_BYTES`.
pub use svid_broker_identity::limits::MAX_CREDENTIAL_LEN;
/// Default lifetime of a login credential.
pub const DEFAULT_LOGIN_CREDENTIAL_TTL: Duration = Duration::from_secs(30 * 60);
/// Longest lifetime of a login credential.
pub const MAX_LOGIN_CREDENTIAL_TTL: Duration = Duration::from_secs(60 * 60);
/// Default lifetime of a refresh token (it is re-issued on each refresh grant, never past its
/// session's end).
pub const DEFAULT_REFRESH_TOKEN_TTL: Duration = Duration::from_secs(60 * 60);
/// Longest lifetime of a refresh token.
pub const MAX_REFRESH_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Default absolute bound on a refresh-token session: no renewal reaches past the original
/// authentication (`auth_time`) plus this. A working day: a 5-minute SVID should not become a
/// credential that outlives the shift it was issued in.
pub const DEFAULT_MAX_SESSION: Duration = Duration::from_secs(8 * 60 * 60);
/// Longest configurable refresh-token session (`credentials.max_session_seconds`).
pub const MAX_MAX_SESSION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Clock skew tolerated on `iat` between replicas.
pub const CREDENTIAL_IAT_LEEWAY: Duration = Duration::from_secs(60);
/// Shortest input keying material accepted for key derivation, in bytes.
pub const MIN_IKM_LEN: usize = 32;

const LOGIN_PREFIX: &str = "sbl1";
const REFRESH_PREFIX: &str = "sbr2";
/// The first refresh-token format: no session bound and no ceiling, so never accepted.
const LEGACY_REFRESH_PREFIX: &str = "sbr1";
const HKDF_SALT: &[u8] = b"svid-broker credential keys v1";
const LOGIN_INFO: &[u8] = b"svid-broker login credential v1";
const REFRESH_INFO: &[u8] = b"svid-broker refresh token v1";
const JTI_BYTES: usize = 16;

/// Which broker credential a secret is; each kind has its own wire prefix and MAC key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialKind {
    /// `sbl1.`: a registry login credential issued by `Exchange`, sent as a Basic password.
    LoginCredential,
    /// `sbr2.`: a refresh token issued by the realm for offline access.
    RefreshToken,
}

impl CredentialKind {
    /// The wire prefix (without the dot).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::LoginCredential => LOGIN_PREFIX,
            Self::RefreshToken => REFRESH_PREFIX,
        }
    }

    /// The kind a presented secret claims to be, by its prefix; `None` for anything else
    /// (a JWT-SVID, for instance). An outdated refresh-token prefix (`sbr1.`) is still a
    /// refresh token here, so that verifying it says why it is refused.
    pub fn sniff(secret: &str) -> Option<Self> {
        let (prefix, _) = secret.split_once('.')?;
        match prefix {
            LOGIN_PREFIX => Some(Self::LoginCredential),
            REFRESH_PREFIX | LEGACY_REFRESH_PREFIX => Some(Self::RefreshToken),
            _ => None,
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LoginCredential => "login credential",
            Self::RefreshToken => "refresh token",
        })
    }
}

/// Which part of a credential could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialPart {
    /// The overall `prefix.payload.mac` shape.
    Shape,
    /// The payload's base64url.
    PayloadEncoding,
    /// The MAC's base64url.
    MacEncoding,
    /// The payload's JSON.
    PayloadJson,
}

impl fmt::Display for CredentialPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Shape => "shape",
            Self::PayloadEncoding => "payload encoding",
            Self::MacEncoding => "mac encoding",
            Self::PayloadJson => "payload json",
        })
    }
}

/// Why a credential was refused. Never carries the credential itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// Longer than [`MAX_CREDENTIAL_LEN`].
    #[error("{kind} is {len} bytes, the maximum is {max}")]
    TooLong {
        /// The kind the caller asked to verify (what the prefix claimed, for a mismatch).
        kind: CredentialKind,
        /// Its length, in bytes.
        len: usize,
        /// [`MAX_CREDENTIAL_LEN`].
        max: usize,
    },
    /// The prefix is not the expected kind's.
    #[error("not a {expected}")]
    WrongKind {
        /// The kind the caller asked to verify (what the prefix claimed, for a mismatch).
        expected: CredentialKind,
    },
    /// An outdated format of the kind that is no longer accepted (`sbr1.` refresh tokens
    /// carried no session bound); the client must authenticate again.
    #[error("{kind} format {prefix} is no longer accepted, authenticate again")]
    UnsupportedVersion {
        /// The credential's kind, from its prefix.
        kind: CredentialKind,
        /// The refused prefix, without its dot (`sbr1`).
        prefix: &'static str,
    },
    /// A refresh token's session (`sxp`) has ended: the chain of renewals is over.
    #[error("{kind} session expired")]
    SessionExpired {
        /// The credential's kind, from its prefix.
        kind: CredentialKind,
        /// The session's end, Unix seconds.
        session_end: u64,
    },
    /// A refresh token's session fields are missing or inconsistent (`auth_time` after
    /// `iat`, `exp` past `sxp`).
    #[error("{kind} has an invalid session")]
    InvalidSession {
        /// The credential's kind, from its prefix.
        kind: CredentialKind,
    },
    /// A part does not decode (shape and MAC encoding before the MAC check, the payload after it).
    #[error("malformed {kind}: bad {part}")]
    Malformed {
        /// The kind the caller asked to verify (what the prefix claimed, for a mismatch).
        kind: CredentialKind,
        /// The first part that failed; never its bytes.
        part: CredentialPart,
    },
    /// The MAC does not verify (forged, altered, or from another signing CA).
    #[error("{kind} signature does not verify")]
    BadMac {
        /// The kind the caller asked to verify (what the prefix claimed, for a mismatch).
        kind: CredentialKind,
    },
    /// `sub` is not a SPIFFE ID.
    #[error("{kind} subject is not a spiffe id")]
    InvalidSubject {
        /// The kind the caller asked to verify (what the prefix claimed, for a mismatch).
        kind: CredentialKind,
    },
    /// The ceiling does not parse as scopes.
    #[error("{kind} scope ceiling is invalid")]
    InvalidCeiling {
        /// The kind the caller asked to verify (what the prefix claimed, for a mismatch).
        kind: CredentialKind,
        /// The underlying error (printed by the error chain, not by this `Display`).
        #[source]
        source: ScopeError,
    },
    /// `exp` is at or before the verifier's clock (no leeway).
    #[error("{kind} expired at unix time {expired_at}")]
    Expired {
        /// The credential's kind, from its prefix.
        kind: CredentialKind,
        /// `exp`, Unix seconds.
        expired_at: u64,
    },
    /// `iat` is in the future beyond [`CREDENTIAL_IAT_LEEWAY`].
    #[error("{kind} was issued in the future (unix time {issued_at})")]
    IssuedInFuture {
        /// The credential's kind, from its prefix.
        kind: CredentialKind,
        /// `iat`, Unix seconds.
        issued_at: u64,
    },
    /// `exp` is not after `iat`, or the lifetime exceeds the kind's maximum.
    #[error("{kind} has an invalid lifetime")]
    InvalidLifetime {
        /// The credential's kind, from its prefix.
        kind: CredentialKind,
    },
    /// Issuing: the lifetime is zero or over the kind's maximum.
    #[error("{kind} lifetime of {ttl_secs}s is outside 1..={max_secs}s")]
    TtlOutOfRange {
        /// The credential's kind, from its prefix.
        kind: CredentialKind,
        /// The requested lifetime, in seconds.
        ttl_secs: u64,
        /// The kind's longest lifetime, in seconds.
        max_secs: u64,
    },
    /// Issuing: the time is before the Unix epoch or overflows.
    #[error("time out of range")]
    TimeOutOfRange,
    /// Issuing: the random `jti` could not be drawn.
    #[error("random number generator failed")]
    Random,
    /// Key derivation: too little keying material.
    #[error("key material is {len} bytes, at least {min} are needed")]
    WeakKeyMaterial {
        /// The material's length, in bytes.
        len: usize,
        /// [`MIN_IKM_LEN`].
        min: usize,
    },
}

/// The verified content of a broker credential.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CredentialClaims {
    /// Which kind it is (verified: the MAC covers the prefix).
    pub kind: CredentialKind,
    /// The SPIFFE ID it was issued to (`sub`, parsed once the MAC verified).
    pub subject: SpiffeId,
    /// The registry `service` it is bound to, as issued; the caller must compare it.
    pub service: String,
    /// `iat`, whole seconds; at most [`CREDENTIAL_IAT_LEEWAY`] ahead of the verifier's clock.
    pub issued_at: SystemTime,
    /// `exp`, whole seconds: after `issued_at`, within the kind's longest lifetime, not yet past.
    pub expires_at: SystemTime,
    /// Its unique ID (safe to log).
    pub jti: String,
    /// The most that tokens obtained with it may grant; empty means whatever policy allows.
    /// A refresh token carries the ceiling of the login credential it descends from.
    pub ceiling: Vec<ResourceScope>,
    /// When the session began: the authentication (SVID or login credential) the credential
    /// descends from. A login credential's is its `iat`.
    pub auth_time: SystemTime,
    /// The session's absolute end: no credential of the session is valid past it. A login
    /// credential's is its `exp`.
    pub session_end: SystemTime,
}

/// The session a refresh token belongs to, carried unchanged through renewals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// When the original authentication happened.
    pub auth_time: SystemTime,
    /// The session's absolute end; renewals are cut to it, and none is issued at or past it.
    pub end: SystemTime,
}

/// A freshly issued credential; only `secret` is sensitive.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuedCredential {
    /// The credential text: wiped on drop, never printed.
    pub secret: SecretString,
    /// Its `jti`: 128 random bits, base64url, unique per credential (the audit log's handle
    /// on it).
    pub jti: String,
    /// Its expiry (`exp`, whole seconds).
    pub expires_at: SystemTime,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    sub: String,
    svc: String,
    iat: u64,
    exp: u64,
    jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    /// Refresh tokens only: the session's `auth_time`, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_time: Option<u64>,
    /// Refresh tokens only: the session's absolute end, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sxp: Option<u64>,
}

/// The MAC keys of both credential kinds.
pub struct CredentialKeys {
    login: hmac::Key,
    refresh: hmac::Key,
}

impl fmt::Debug for CredentialKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialKeys([redacted])")
    }
}

impl CredentialKeys {
    /// Derives both keys with HKDF-SHA256 from `ikm`: the signing CA's private key (PKCS#8
    /// DER), so replicas sharing the CA agree; or, for a generated development CA, random
    /// bytes that live only in this process.
    ///
    /// # Errors
    /// [`CredentialError::WeakKeyMaterial`] under [`MIN_IKM_LEN`] bytes.
    pub fn derive(ikm: &[u8]) -> Result<Self, CredentialError> {
        if ikm.len() < MIN_IKM_LEN {
            return Err(CredentialError::WeakKeyMaterial {
                len: ikm.len(),
                min: MIN_IKM_LEN,
            });
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(ikm);
        let expand = |info: &[u8]| -> Result<hmac::Key, CredentialError> {
            let info = [info];
            let okm = prk.expand(&info, hmac::HMAC_SHA256).map_err(|_| {
                CredentialError::WeakKeyMaterial {
                    len: ikm.len(),
                    min: MIN_IKM_LEN,
                }
            })?;
            Ok(hmac::Key::from(okm))
        };
        Ok(Self {
            login: expand(LOGIN_INFO)?,
            refresh: expand(REFRESH_INFO)?,
        })
    }

    /// Keys from fresh random material (a generated development CA, single replica).
    ///
    /// # Errors
    /// [`CredentialError::Random`].
    pub fn random() -> Result<Self, CredentialError> {
        let mut ikm = Zeroizing::new([0u8; 32]);
        rand::fill(ikm.as_mut()).map_err(|_| CredentialError::Random)?;
        Self::derive(ikm.as_ref())
    }

    fn key(&self, kind: CredentialKind) -> &hmac::Key {
        match kind {
            CredentialKind::LoginCredential => &self.login,
            CredentialKind::RefreshToken => &self.refresh,
        }
    }

    /// Issues a credential of `kind` for `subject` and `service`, valid from `now` for `ttl`.
    /// A refresh token issued this way starts a new session at `now` that ends with it (use
    /// [`Self::issue_refresh`] to renew within a session).
    ///
    /// # Errors
    /// [`CredentialError::TtlOutOfRange`], [`CredentialError::TimeOutOfRange`],
    /// [`CredentialError::Random`].
    pub fn issue(
        &self,
        kind: CredentialKind,
        subject: &SpiffeId,
        service: &str,
        ceiling: &[ResourceScope],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<IssuedCredential, CredentialError> {
        let session = match kind {
            CredentialKind::RefreshToken => Some(Session {
                auth_time: now,
                end: now
                    .checked_add(ttl)
                    .ok_or(CredentialError::TimeOutOfRange)?,
            }),
            _ => None,
        };
        self.issue_inner(kind, subject, service, ceiling, ttl, now, session)
    }

    /// Issues a refresh token of `session` for `subject` and `service` with `ceiling`: valid
    /// from `now` for `ttl`, cut to the session's end.
    ///
    /// # Errors
    /// [`CredentialError::SessionExpired`] when less than a second of the session is left,
    /// [`CredentialError::InvalidSession`] when `auth_time` is after `now`, and the errors of
    /// [`Self::issue`].
    pub fn issue_refresh(
        &self,
        subject: &SpiffeId,
        service: &str,
        ceiling: &[ResourceScope],
        ttl: Duration,
        session: Session,
        now: SystemTime,
    ) -> Result<IssuedCredential, CredentialError> {
        let kind = CredentialKind::RefreshToken;
        let end = unix(session.end)?;
        let now_secs = unix(now)?;
        if end <= now_secs {
            return Err(CredentialError::SessionExpired {
                kind,
                session_end: end,
            });
        }
        if unix(session.auth_time)? > now_secs {
            return Err(CredentialError::InvalidSession { kind });
        }
        let ttl = ttl.min(Duration::from_secs(end - now_secs));
        self.issue_inner(kind, subject, service, ceiling, ttl, now, Some(session))
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "private; the public entry points keep their argument lists short"
    )]
    fn issue_inner(
        &self,
        kind: CredentialKind,
        subject: &SpiffeId,
        service: &str,
        ceiling: &[ResourceScope],
        ttl: Duration,
        now: SystemTime,
        session: Option<Session>,
    ) -> Result<IssuedCredential, CredentialError> {
        let max = max_ttl(kind);
        let ttl_secs = ttl.as_secs();
        if ttl_secs == 0 || ttl > max {
            return Err(CredentialError::TtlOutOfRange {
                kind,
                ttl_secs,
                max_secs: max.as_secs(),
            });
        }
        let iat = unix(now)?;
        let mut exp = iat
            .checked_add(ttl_secs)
            .ok_or(CredentialError::TimeOutOfRange)?;
        let (auth_time, sxp) = match session {
            Some(s) => {
                let sxp = unix(s.end)?;
                exp = exp.min(sxp);
                (Some(unix(s.auth_time)?), Some(sxp))
            }
            None => (None, None),
        };
        let mut jti = [0u8; JTI_BYTES];
        rand::fill(&mut jti).map_err(|_| CredentialError::Random)?;
        let jti = URL_SAFE_NO_PAD.encode(jti);
        let scope = (!ceiling.is_empty()).then(|| scope::join_scopes(ceiling));
        let payload = Payload {
            sub: subject.as_str().to_owned(),
            svc: service.to_owned(),
            iat,
            exp,
            jti: jti.clone(),
            scope,
            auth_time,
            sxp,
        };
        let json = serde_json::to_vec(&payload).map_err(|_| CredentialError::TimeOutOfRange)?;
        let mut text = Zeroizing::new(String::with_capacity(
            kind.prefix().len() + 2 + json.len() * 4 / 3 + 4 + 44,
        ));
        text.push_str(kind.prefix());
        text.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut text);
        let tag = hmac::sign(self.key(kind), text.as_bytes());
        text.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut text);
        if text.len() > MAX_CREDENTIAL_LEN {
            return Err(CredentialError::TooLong {
                kind,
                len: text.len(),
                max: MAX_CREDENTIAL_LEN,
            });
        }
        Ok(IssuedCredential {
            secret: seal_string(text),
            jti,
            expires_at: UNIX_EPOCH + Duration::from_secs(exp),
        })
    }

    /// Verifies a credential of `kind` at `now`: shape, MAC (constant time), then payload,
    /// lifetime and expiry. The caller checks the service binding.
    ///
    /// # Errors
    /// The first [`CredentialError`] rule that fails.
    pub fn verify(
        &self,
        kind: CredentialKind,
        credential: &str,
        now: SystemTime,
    ) -> Result<CredentialClaims, CredentialError> {
        if credential.len() > MAX_CREDENTIAL_LEN {
            return Err(CredentialError::TooLong {
                kind,
                len: credential.len(),
                max: MAX_CREDENTIAL_LEN,
            });
        }
        let malformed = |part| CredentialError::Malformed { kind, part };
        let (signed, mac_b64) = credential
            .rsplit_once('.')
            .ok_or(malformed(CredentialPart::Shape))?;
        let (prefix, payload_b64) = signed
            .split_once('.')
            .ok_or(malformed(CredentialPart::Shape))?;
        if kind == CredentialKind::RefreshToken && prefix == LEGACY_REFRESH_PREFIX {
            return Err(CredentialError::UnsupportedVersion {
                kind,
                prefix: LEGACY_REFRESH_PREFIX,
            });
        }
        if prefix != kind.prefix() {
            return Err(CredentialError::WrongKind { expected: kind });
        }
        if payload_b64.contains('.') {
            return Err(malformed(CredentialPart::Shape));
        }
        let mac = URL_SAFE_NO_PAD
            .decode(mac_b64)
            .map_err(|_| malformed(CredentialPart::MacEncoding))?;
        hmac::verify(self.key(kind), signed.as_bytes(), &mac)
            .map_err(|_| CredentialError::BadMac { kind })?;
        let json = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| malformed(CredentialPart::PayloadEncoding))?;
        let payload: Payload =
            serde_json::from_slice(&json).map_err(|_| malformed(CredentialPart::PayloadJson))?;
        let subject =
            SpiffeId::parse(&payload.sub).map_err(|_| CredentialError::InvalidSubject { kind })?;
        if payload.exp <= payload.iat || payload.exp - payload.iat > max_ttl(kind).as_secs() {
            return Err(CredentialError::InvalidLifetime { kind });
        }
        let now_secs = unix(now)?;
        if payload.iat > now_secs.saturating_add(CREDENTIAL_IAT_LEEWAY.as_secs()) {
            return Err(CredentialError::IssuedInFuture {
                kind,
                issued_at: payload.iat,
            });
        }
        let (auth_time, session_end) = match (kind, payload.auth_time, payload.sxp) {
            (CredentialKind::LoginCredential, None, None) => (payload.iat, payload.exp),
            (CredentialKind::RefreshToken, Some(auth_time), Some(sxp))
                if auth_time <= payload.iat && payload.exp <= sxp =>
            {
                (auth_time, sxp)
            }
            _ => return Err(CredentialError::InvalidSession { kind }),
        };
        // The session's end first: past it the chain is over, whatever the token's own `exp`.
        if kind == CredentialKind::RefreshToken && now_secs >= session_end {
            return Err(CredentialError::SessionExpired { kind, session_end });
        }
        if now_secs >= payload.exp {
            return Err(CredentialError::Expired {
                kind,
                expired_at: payload.exp,
            });
        }
        let ceiling = match &payload.scope {
            // One parameter per scope, as issued: the per-parameter cap is for request
            // parameters, and a full ceiling is longer than one of them.
            Some(s) => scope::parse_scopes(s.split(' '))
                .map_err(|source| CredentialError::InvalidCeiling { kind, source })?,
            None => Vec::new(),
        };
        Ok(CredentialClaims {
            kind,
            subject,
            service: payload.svc,
            issued_at: UNIX_EPOCH + Duration::from_secs(payload.iat),
            expires_at: UNIX_EPOCH + Duration::from_secs(payload.exp),
            jti: payload.jti,
            ceiling,
            auth_time: UNIX_EPOCH + Duration::from_secs(auth_time),
            session_end: UNIX_EPOCH + Duration::from_secs(session_end),
        })
    }
}

fn max_ttl(kind: CredentialKind) -> Duration {
    match kind {
        CredentialKind::LoginCredential => MAX_LOGIN_CREDENTIAL_TTL,
        CredentialKind::RefreshToken => MAX_REFRESH_TOKEN_TTL,
    }
}

fn unix(t: SystemTime) -> Result<u64, CredentialError> {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| CredentialError::TimeOutOfRange)
}

#[cfg(test)]
mod tests;
