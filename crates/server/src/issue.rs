//! Issuance: one trait, [`CredentialIssuer`], between a decided [`Grant`] and what the caller
//! receives. Each kind of credential is one implementation; adding a kind (a registry's robot
//! account, a cloud registry token) is one more, and nothing before it (parsing,
//! authentication, the decision) or after it (audit, metrics) changes.
//!
//! Implementations here: [`RegistryTokenIssuer`] (broker-signed registry bearer tokens, with
//! the issued-token cache), [`LoginCredentialIssuer`] (`sbl1.` login credentials) and
//! [`RefreshTokenIssuer`] (`sbr2.` realm refresh tokens, joining the caller's session).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use svid_broker_backends::{BackendCredential, BackendError};
use svid_broker_policy::scope;
use svid_broker_policy::{RegistryKind, ResourceScope};
use svid_broker_token::{Access, MintRequest, RegistryToken, TokenError, TokenMinter};

use svid_broker_identity::secret::SecretString;

use crate::credential::{CredentialError, CredentialKeys, CredentialKind, Session};
use crate::decision::Grant;
use crate::error::{AuthFailure, ExchangeError, InvalidRequest, Unavailability};
use crate::metrics::Refusal;
use crate::request::ExchangeKind;
use crate::token_cache::{CacheKey, CachedToken, TokenCache};

/// Turns a decided grant into a credential.
pub trait CredentialIssuer {
    /// What it hands out.
    type Credential: Issued;

    /// Issues a credential for `grant` at `now`, valid at most `grant.lifetime(..)`.
    ///
    /// # Errors
    /// [`IssueError`]: the credential could not be made (signing failed, the session it would
    /// join is over).
    fn issue(&self, grant: &Grant, now: SystemTime) -> Result<Self::Credential, IssueError>;
}

/// What the audit log and the metrics record of an issued credential (never its secret).
pub trait Issued {
    /// The record: never the secret, only what identifies and bounds the credential.
    fn record(&self) -> IssuedRecord<'_>;
}

/// The recordable facts of an issued credential.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct IssuedRecord<'a> {
    /// The audit `kind`: `access_token`, `login_credential` or `refresh_token`.
    pub kind: &'static str,
    /// The credential's `jti`.
    pub jti: &'a str,
    /// Its expiry (the audit `expires_at`).
    pub expires_at: SystemTime,
    /// What it grants (an access token), or its ceiling (a login credential, a refresh token).
    pub scopes: &'a [ResourceScope],
    /// Present for credentials that carry a ceiling (empty ceiling: registry-wide).
    pub ceiling: Option<&'a [ResourceScope]>,
    /// For credentials that went through the issued-token cache: whether it was a hit (the
    /// audit `cached` and the hit/miss counters both come from it).
    pub cache_lookup: Option<bool>,
    /// The `svid_broker_issued_total` kind it counts as (refresh tokens count nowhere: they
    /// ride along an access token).
    pub counted_as: Option<ExchangeKind>,
    /// Answered, but nothing asked for was granted.
    pub refusal: Option<Refusal>,
    /// The audit `reason` of the issuance.
    pub reason: &'static str,
    /// For a credential a registry's own API made, the registry kind: then `jti` is the
    /// registry's id for the credential (audited as `credential_id`).
    pub backend: Option<&'static str>,
    /// For a registry credential the broker cannot revoke: when the registry itself ends it
    /// (audited as `valid_until`, at or after `expires_at`).
    pub valid_until: Option<SystemTime>,
}

/// Why a credential could not be issued.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// Signing the registry token failed.
    #[error("token signing failed")]
    Signing(#[source] Arc<TokenError>),
    /// Making a broker credential failed.
    #[error("credential issuance failed")]
    Credential(#[source] CredentialError),
    /// The session a refresh token would join is over (or too nearly over to issue one).
    #[error("refresh token session expired")]
    SessionExpired {
        /// The session's end, Unix seconds.
        session_end: u64,
    },
    /// A broker-signed credential was asked of a registry whose own service makes its
    /// credentials (the engine routes such requests to the registry's backend instead).
    #[error("registry {registry:?} is kind = \"{kind}\": the broker does not sign its tokens")]
    NotBrokerSigned {
        /// The registry's policy name.
        registry: String,
        /// Its kind.
        kind: RegistryKind,
    },
    /// The registry's own API could not make (or refused to make) the credential.
    #[error(transparent)]
    Backend(Arc<BackendError>),
}

impl From<IssueError> for ExchangeError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Signing(e) => Self::unavailable(Unavailability::Mint(e)),
            IssueError::Credential(e) => Self::unavailable(Unavailability::Credential(e)),
            IssueError::SessionExpired { session_end } => {
                Self::unauthenticated(AuthFailure::SessionExpired { session_end })
            }
            IssueError::NotBrokerSigned { registry, kind } => {
                Self::invalid(InvalidRequest::KindNotServed {
                    registry,
                    kind,
                    asked: "a broker-signed token",
                })
            }
            IssueError::Backend(e) if refuses_the_request(&e) => {
                Self::invalid(InvalidRequest::Backend(e))
            }
            IssueError::Backend(e) => Self::unavailable(Unavailability::Backend(e)),
        }
    }
}

/// Whether a backend failure is the request's (the grant cannot be expressed at the registry:
/// answered as a bad request) rather than the registry's or the broker's (answered as
/// unavailable, to be retried).
fn refuses_the_request(e: &BackendError) -> bool {
    use svid_broker_backends::Failure;
    // `Failure` is another crate's `#[non_exhaustive]` enum: a failure it adds later is taken
    // as unavailable (retried, not blamed on the caller) until it is placed here.
    matches!(
        e.failure,
        Failure::GrantSpansProjects { .. }
            | Failure::UnsupportedAction { .. }
            | Failure::UnsupportedResource { .. }
            | Failure::RepositoryOutsideProject { .. }
            | Failure::NoRepository
            | Failure::NoSuchProject
    )
}

/// A registry bearer token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AccessToken {
    /// The signed token (redacted in `Debug`).
    pub token: RegistryToken,
    /// Its `jti`, unique per minted token (a cached token keeps its own).
    pub jti: String,
    /// What it grants, canonical; possibly empty.
    pub granted: Vec<ResourceScope>,
    /// Its `iat` (a cached token keeps its original time).
    pub issued_at: SystemTime,
    /// Its `exp`: at most the registry's `token_ttl` after `issued_at`, shortened by the grant.
    pub expires_at: SystemTime,
    /// It came from the issued-token cache.
    pub cached: bool,
    /// Scopes were asked for and none granted (answered at the realm, audited as a refusal).
    pub nothing_granted: bool,
}

impl Issued for AccessToken {
    fn record(&self) -> IssuedRecord<'_> {
        IssuedRecord {
            kind: "access_token",
            jti: &self.jti,
            expires_at: self.expires_at,
            scopes: &self.granted,
            ceiling: None,
            cache_lookup: Some(self.cached),
            counted_as: Some(ExchangeKind::AccessToken),
            refusal: self.nothing_granted.then_some(Refusal::NothingGranted),
            backend: None,
            valid_until: None,
            reason: if self.nothing_granted {
                "nothing granted"
            } else if self.granted.is_empty() {
                "authenticated (no scope requested)"
            } else {
                "granted"
            },
        }
    }
}

/// A registry login credential: a username and password the realm accepts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoginCredential {
    /// The username: the subject's SPIFFE ID.
    pub username: String,
    /// The password (`sbl1.` credential; redacted in `Debug`).
    pub password: SecretString,
    /// The most tokens obtained with it may grant; empty means whatever policy allows then.
    pub ceiling: Vec<ResourceScope>,
    /// Its `jti`, unique per credential (the audit log's handle on it).
    pub jti: String,
    /// Its expiry: at most the login-credential TTL, shortened by the grant's lifetime cap.
    pub expires_at: SystemTime,
}

impl Issued for LoginCredential {
    fn record(&self) -> IssuedRecord<'_> {
        IssuedRecord {
            kind: "login_credential",
            jti: &self.jti,
            expires_at: self.expires_at,
            scopes: &self.ceiling,
            ceiling: Some(&self.ceiling),
            cache_lookup: None,
            counted_as: Some(ExchangeKind::LoginCredential),
            refusal: None,
            backend: None,
            valid_until: None,
            reason: if self.ceiling.is_empty() {
                "login credential issued (registry-wide)"
            } else {
                "login credential issued (scoped)"
            },
        }
    }
}

/// A credential the registry's own API made (a Harbor robot): handed out as a username and
/// password, like a login credential, and revoked by the broker at `expires_at`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegistryCredential {
    /// The registry's kind (the audit `backend`).
    pub backend: RegistryKind,
    /// What the registry made, with its id (audited) and secret (redacted in `Debug`).
    pub credential: BackendCredential,
    /// What the policy granted (a per-project registry widens it to the project: the policy
    /// file is refused unless its rules for such a registry are written project-wide).
    pub granted: Vec<ResourceScope>,
}

impl Issued for RegistryCredential {
    fn record(&self) -> IssuedRecord<'_> {
        IssuedRecord {
            kind: "registry_credential",
            jti: &self.credential.credential_id,
            expires_at: self.credential.expires_at,
            scopes: &self.granted,
            ceiling: None,
            cache_lookup: None,
            counted_as: Some(ExchangeKind::LoginCredential),
            refusal: None,
            backend: Some(self.backend.as_str()),
            valid_until: self.credential.registry_expires_at,
            reason: if self.credential.reused {
                "registry credential reused"
            } else {
                "registry credential created"
            },
        }
    }
}

/// A realm refresh token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RefreshToken {
    /// The token (`sbr2.`; redacted in `Debug`).
    pub secret: SecretString,
    /// Its ceiling, inherited from the session's login credential; empty means none.
    pub ceiling: Vec<ResourceScope>,
    /// Its `jti`, unique per token.
    pub jti: String,
    /// Its expiry (never past its session's end).
    pub expires_at: SystemTime,
}

impl Issued for RefreshToken {
    fn record(&self) -> IssuedRecord<'_> {
        IssuedRecord {
            kind: crate::engine::REFRESH_TOKEN_KIND,
            jti: &self.jti,
            expires_at: self.expires_at,
            scopes: &self.ceiling,
            ceiling: Some(&self.ceiling),
            cache_lookup: None,
            counted_as: None,
            refusal: None,
            backend: None,
            valid_until: None,
            reason: "refresh token issued",
        }
    }
}

/// Broker-signed registry tokens, reused from the cache while more than half their life is
/// left and they would not outlive the grant's lifetime cap.
#[derive(Debug)]
pub struct RegistryTokenIssuer {
    minter: TokenMinter,
    cache: TokenCache,
}

impl RegistryTokenIssuer {
    /// An issuer signing with `minter`; `cache` turns the issued-token cache on.
    pub fn new(minter: TokenMinter, cache: bool) -> Self {
        Self {
            minter,
            cache: TokenCache::new(cache),
        }
    }

    /// The minter (key ring, JWKS, CA bundle).
    pub fn minter(&self) -> &TokenMinter {
        &self.minter
    }

    /// Forgets every cached token (after a key rotation or a policy change).
    pub fn clear_cache(&self) {
        self.cache.clear();
    }
}

impl CredentialIssuer for RegistryTokenIssuer {
    type Credential = AccessToken;

    fn issue(&self, grant: &Grant, now: SystemTime) -> Result<AccessToken, IssueError> {
        let registry = &grant.registry;
        // The engine sends only broker-signed registries here; a registry of another kind has
        // no issuer or profile to sign with, and is refused rather than signed for with some
        // default.
        let (Some(issuer), Some(profile)) = (registry.issuer(), registry.profile()) else {
            return Err(IssueError::NotBrokerSigned {
                registry: registry.name().to_owned(),
                kind: registry.kind(),
            });
        };
        let ttl = grant.lifetime(registry.token_ttl(), now);
        let key = CacheKey {
            subject: grant.subject.clone(),
            service: grant.service().to_owned(),
            granted: scope::join_scopes(&grant.granted),
            issuer: issuer.to_owned(),
            profile,
            ttl: registry.token_ttl(),
        };
        let nothing_granted = grant.nothing_granted();
        if let Some(hit) = self.cache.get(&key, now).filter(|hit| {
            let left = hit.expires_at.duration_since(now).unwrap_or_default();
            grant.lifetime(left, now) == left
        }) {
            return Ok(AccessToken {
                token: hit.token,
                jti: hit.jti,
                granted: grant.granted.clone(),
                issued_at: hit.issued_at,
                expires_at: hit.expires_at,
                cached: true,
                nothing_granted,
            });
        }
        let access: Vec<Access> = grant.granted.iter().map(to_access).collect();
        let request = MintRequest::new(
            issuer,
            registry.service(),
            &grant.subject,
            &access,
            profile,
            now,
        )
        .with_ttl(ttl);
        let minted = self
            .minter
            .mint(&request)
            .map_err(|e| IssueError::Signing(Arc::new(e)))?;
        self.cache.put(
            key,
            CachedToken {
                token: minted.token.clone(),
                jti: minted.jti.clone(),
                issued_at: minted.issued_at,
                expires_at: minted.expires_at,
            },
            now,
        );
        Ok(AccessToken {
            token: minted.token,
            jti: minted.jti,
            granted: grant.granted.clone(),
            issued_at: minted.issued_at,
            expires_at: minted.expires_at,
            cached: false,
            nothing_granted,
        })
    }
}

fn to_access(scope: &ResourceScope) -> Access {
    Access::new(
        scope.resource_type.as_str(),
        scope.name.clone(),
        scope.actions.iter().map(|a| a.as_str().to_owned()),
    )
}

/// `sbl1.` login credentials, bound to the grant's service with the grant as their ceiling.
#[derive(Debug)]
pub struct LoginCredentialIssuer {
    keys: Arc<CredentialKeys>,
    ttl: Duration,
}

impl LoginCredentialIssuer {
    /// An issuer with `keys`, issuing credentials valid for `ttl` (shortened by the grant).
    pub fn new(keys: Arc<CredentialKeys>, ttl: Duration) -> Self {
        Self { keys, ttl }
    }
}

impl CredentialIssuer for LoginCredentialIssuer {
    type Credential = LoginCredential;

    fn issue(&self, grant: &Grant, now: SystemTime) -> Result<LoginCredential, IssueError> {
        let issued = self
            .keys
            .issue(
                CredentialKind::LoginCredential,
                &grant.subject,
                grant.service(),
                &grant.granted,
                grant.lifetime(self.ttl, now),
                now,
            )
            .map_err(IssueError::Credential)?;
        Ok(LoginCredential {
            username: grant.subject.as_str().to_owned(),
            password: issued.secret,
            ceiling: grant.granted.clone(),
            jti: issued.jti,
            expires_at: issued.expires_at,
        })
    }
}

/// `sbr2.` refresh tokens. A refresh token belongs to the caller's session: a fresh one for
/// an SVID (`auth_time` = now); for a login credential or refresh token, the credential's
/// `auth_time`, ceiling and session end carry over, so renewing never widens or extends it.
#[derive(Debug)]
pub struct RefreshTokenIssuer {
    keys: Arc<CredentialKeys>,
    ttl: Duration,
    max_session: Duration,
}

impl RefreshTokenIssuer {
    /// An issuer with `keys`, issuing tokens valid for `ttl`, in sessions of at most
    /// `max_session` from their original authentication.
    pub fn new(keys: Arc<CredentialKeys>, ttl: Duration, max_session: Duration) -> Self {
        Self {
            keys,
            ttl,
            max_session,
        }
    }
}

impl CredentialIssuer for RefreshTokenIssuer {
    type Credential = RefreshToken;

    fn issue(&self, grant: &Grant, now: SystemTime) -> Result<RefreshToken, IssueError> {
        let max_end = |from: SystemTime| from.checked_add(self.max_session);
        let (session, ceiling) = match &grant.binding {
            None => (
                Session {
                    auth_time: now,
                    end: max_end(now).unwrap_or(now),
                },
                &[][..],
            ),
            Some(b) => (
                Session {
                    auth_time: b.auth_time,
                    end: max_end(b.auth_time).map_or(b.session_end, |m| m.min(b.session_end)),
                },
                &b.ceiling[..],
            ),
        };
        let issued = self
            .keys
            .issue_refresh(
                &grant.subject,
                grant.service(),
                ceiling,
                self.ttl,
                session,
                now,
            )
            .map_err(|e| match e {
                CredentialError::SessionExpired { session_end, .. } => {
                    IssueError::SessionExpired { session_end }
                }
                e => IssueError::Credential(e),
            })?;
        Ok(RefreshToken {
            secret: issued.secret,
            ceiling: ceiling.to_vec(),
            jti: issued.jti,
            expires_at: issued.expires_at,
        })
    }
}
