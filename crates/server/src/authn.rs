//! Authentication: what a caller presented becomes a typed [`Subject`], or an
//! [`ExchangeError::Unauthenticated`] naming the rule that failed.
//!
//! Four proofs are accepted: an X.509-SVID over mutual TLS, a JWT-SVID whose audience is the
//! broker's, a broker login credential (`sbl1.`, with its SPIFFE ID as the username) and a
//! realm refresh token (`sbr2.`). A caller that proved an SVID may also present a Kubernetes
//! service-account token for someone else, when it is a trusted actor: the subject is then
//! the token's mapped SPIFFE ID ([`Authenticator::on_behalf_of`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use svid_broker_identity::SpiffeId;
use svid_broker_identity::bundle::BundleProvider;
use svid_broker_identity::jwt::{AudienceMatch, JwtSvidValidator};
use svid_broker_policy::ResourceScope;

use crate::audit::unix_secs;
use crate::credential::{CredentialError, CredentialKeys, CredentialKind};
use crate::error::{AuthFailure, BrokerBuildError, Denial, ExchangeError, Unavailability};
use crate::request::{MAX_USERNAME_LEN, Presented};
use crate::satoken::{ServiceAccountIdentity, ServiceAccountMode};

/// A caller whose proof verified; a mapped service account is one too (its own [`AuthMethod`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who: the SPIFFE ID the proof names.
    pub spiffe_id: SpiffeId,
    /// Which proof verified; [`AuthMethod::is_svid`] says whether it may vouch for someone else.
    pub method: AuthMethod,
}

/// Which proof a caller presented; [`Self::label`] names it in audit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// An X.509-SVID over mutual TLS.
    X509Svid,
    /// A JWT-SVID whose audience is the broker's.
    JwtSvid,
    /// A registry login credential issued by `Exchange`.
    LoginCredential,
    /// A refresh token issued by the realm.
    RefreshToken,
    /// A Kubernetes service-account token presented by a trusted actor (the subject is the
    /// mapped SPIFFE ID).
    ServiceAccountToken,
}

impl AuthMethod {
    /// The label audit events carry (`x509-svid`, `jwt-svid`, ..., `sa-token`).
    pub fn label(self) -> &'static str {
        match self {
            Self::X509Svid => "x509-svid",
            Self::JwtSvid => "jwt-svid",
            Self::LoginCredential => "login-credential",
            Self::RefreshToken => "refresh-token",
            Self::ServiceAccountToken => "sa-token",
        }
    }

    /// Whether the caller proved an SVID (only those may vouch for someone else: a broker
    /// credential is itself derived from a subject).
    pub fn is_svid(self) -> bool {
        match self {
            Self::X509Svid | Self::JwtSvid => true,
            Self::LoginCredential | Self::RefreshToken | Self::ServiceAccountToken => false,
        }
    }
}

/// What a broker credential (login credential or refresh token) restricts a caller to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CredentialBinding {
    /// The registry service it is valid for; any other is [`AuthFailure::WrongService`].
    pub service: String,
    /// The most it may grant; empty means whatever policy allows at the time.
    pub ceiling: Vec<ResourceScope>,
    /// The credential's `jti`, for the audit log.
    pub jti: String,
    /// When the session the credential belongs to began (a login credential's `iat`; a
    /// refresh token's `auth_time`, carried through renewals).
    pub auth_time: SystemTime,
    /// The session's absolute end: the earliest of the credential's own session end (a login
    /// credential's `exp`) and `auth_time` plus the broker's `max_session`. A refresh token
    /// issued in this session never outlives it.
    pub session_end: SystemTime,
}

/// A caller whose proof verified, plus what its credential restricts it to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Authenticated {
    /// The caller whose proof verified (for a broker credential, its verified `sub`).
    pub caller: Caller,
    /// Present exactly for login credentials and refresh tokens.
    pub binding: Option<CredentialBinding>,
}

impl Authenticated {
    /// A caller with no credential binding (an SVID).
    pub fn svid(caller: Caller) -> Self {
        Self {
            caller,
            binding: None,
        }
    }
}

/// Who a credential is issued to, and who asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Subject {
    /// The subject: the caller itself, or the SPIFFE ID a trusted actor's service-account
    /// token maps to (method [`AuthMethod::ServiceAccountToken`]).
    pub authenticated: Authenticated,
    /// Present when a trusted actor presented a service-account token for the subject.
    pub on_behalf: Option<OnBehalf>,
}

impl Subject {
    /// The subject's caller.
    pub fn caller(&self) -> &Caller {
        &self.authenticated.caller
    }

    /// The subject's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.authenticated.caller.spiffe_id
    }

    /// The credential binding, for login credentials and refresh tokens.
    pub fn binding(&self) -> Option<&CredentialBinding> {
        self.authenticated.binding.as_ref()
    }

    /// The latest time a credential issued to this subject should last until: a
    /// service-account token's own expiry. ([`crate::decision::Grant::lifetime`] applies it,
    /// never going below [`MIN_DERIVED_TTL`].)
    pub fn not_after(&self) -> Option<SystemTime> {
        self.on_behalf.as_ref().map(|o| o.account.expires_at)
    }
}

/// A trusted actor (a kubelet plugin, authenticated by its SVID) and the service account it
/// vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OnBehalf {
    /// The actor: authenticated by its own SVID, and a trusted actor.
    pub actor: Caller,
    /// The validated service-account token's identity.
    pub account: ServiceAccountIdentity,
}

/// Shortest lifetime of a credential derived from a service-account token whose own expiry is
/// nearer (the token crate's minimum token lifetime; the token is still valid within its
/// leeway).
pub const MIN_DERIVED_TTL: Duration = Duration::from_secs(60);

/// Verifies what callers present. Shared by both edges through the [`crate::Broker`].
pub struct Authenticator {
    bundles: Arc<dyn BundleProvider>,
    validator: JwtSvidValidator,
    credentials: Arc<CredentialKeys>,
    max_session: Duration,
    service_accounts: Option<ServiceAccountMode>,
    verified: VerifiedCaches,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("max_session", &self.max_session)
            .field("service_accounts", &self.service_accounts.is_some())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator for JWT-SVIDs addressed to `audience` (matched as `audience_policy`
    /// says), SVIDs of `bundles`, and broker credentials under `credentials`.
    ///
    /// # Errors
    /// [`BrokerBuildError::Audience`] for an audience the validator refuses.
    pub(crate) fn new(
        bundles: Arc<dyn BundleProvider>,
        audience: &str,
        audience_policy: AudienceMatch,
        credentials: Arc<CredentialKeys>,
        max_session: Duration,
        service_accounts: Option<ServiceAccountMode>,
        cache_limits: CacheLimits,
    ) -> Result<Self, BrokerBuildError> {
        let validator = JwtSvidValidator::new([audience.to_owned()])
            .map_err(BrokerBuildError::Audience)?
            .with_audience_match(audience_policy);
        Ok(Self {
            bundles,
            validator,
            credentials,
            max_session,
            service_accounts,
            verified: VerifiedCaches::new(cache_limits),
        })
    }

    /// The bundle provider SVIDs are checked against.
    pub fn bundles(&self) -> &Arc<dyn BundleProvider> {
        &self.bundles
    }

    /// Verifies what the edge found.
    ///
    /// # Errors
    /// [`ExchangeError::Unauthenticated`] naming the rule that failed.
    pub fn authenticate(
        &self,
        presented: &Presented<'_>,
        now: SystemTime,
    ) -> Result<Authenticated, ExchangeError> {
        match presented {
            Presented::Nothing => Err(ExchangeError::unauthenticated(
                AuthFailure::MissingCredentials,
            )),
            Presented::Unreadable(reason) => Err(ExchangeError::unauthenticated(reason.clone())),
            Presented::X509Chain(chain) => {
                self.authenticate_x509(chain, now).map(Authenticated::svid)
            }
            Presented::JwtSvid(token) => self
                .authenticate_jwt_svid(token, now)
                .map(Authenticated::svid),
            Presented::Secret { username, secret } => {
                self.authenticate_secret(*username, secret, now)
            }
            Presented::RefreshToken(token) => {
                if CredentialKind::sniff(token) != Some(CredentialKind::RefreshToken) {
                    return Err(ExchangeError::unauthenticated(AuthFailure::Credential(
                        CredentialError::WrongKind {
                            expected: CredentialKind::RefreshToken,
                        },
                    )));
                }
                self.authenticate_secret(None, token, now)
            }
        }
    }

    /// Authenticates an X.509-SVID chain (leaf first) against the trust bundles. A chain
    /// already verified against this very bundle snapshot is not verified again while `now`
    /// is inside every certificate's validity window (the answer is the one a full
    /// verification gives).
    ///
    /// # Errors
    /// [`ExchangeError::Unauthenticated`] with the verifier's reason.
    pub fn authenticate_x509(
        &self,
        chain: &[CertificateDer<'_>],
        now: SystemTime,
    ) -> Result<Caller, ExchangeError> {
        let bundles = self.bundles.bundles();
        let spiffe_id = self
            .verified
            .chains
            .verify_x509(chain, &bundles, now)
            .map_err(|e| ExchangeError::unauthenticated(AuthFailure::X509Svid(e)))?;
        Ok(Caller {
            spiffe_id,
            method: AuthMethod::X509Svid,
        })
    }

    /// The subject a trusted actor vouches for with a service-account token: the actor must
    /// have proved an SVID and be in `service_account.trusted_actors` (checked before the
    /// token, so an untrusted actor learns nothing about it), and the token must validate.
    ///
    /// # Errors
    /// [`Denial::SubjectTokensDisabled`] and [`Denial::UntrustedActor`] (PermissionDenied),
    /// [`AuthFailure::ServiceAccountToken`] (Unauthenticated), [`Unavailability::IssuerKeys`].
    pub fn on_behalf_of(
        &self,
        actor: &Caller,
        subject_token: &str,
        now: SystemTime,
    ) -> Result<Subject, ExchangeError> {
        let mode = self
            .service_accounts
            .as_ref()
            .filter(|m| !m.trusted_actors.is_empty() && !m.validator.issuers().is_empty())
            .ok_or(ExchangeError::PermissionDenied {
                reason: Denial::SubjectTokensDisabled,
            })?;
        let admission = mode
            .trusted_actors
            .admits(&actor.spiffe_id)
            .filter(|_| actor.method.is_svid())
            .ok_or_else(|| ExchangeError::PermissionDenied {
                reason: Denial::UntrustedActor {
                    actor: actor.spiffe_id.clone(),
                },
            })?;
        let account = mode
            .validator
            .validate(subject_token, &admission, now)
            .map_err(|e| {
                if e.is_unavailable() {
                    ExchangeError::unavailable(Unavailability::IssuerKeys(e))
                } else {
                    ExchangeError::unauthenticated(AuthFailure::ServiceAccountToken(e))
                }
            })?;
        Ok(Subject {
            authenticated: Authenticated::svid(Caller {
                spiffe_id: account.spiffe_id.clone(),
                method: AuthMethod::ServiceAccountToken,
            }),
            on_behalf: Some(OnBehalf {
                actor: actor.clone(),
                account,
            }),
        })
    }

    /// Authenticates a JWT-SVID whose `aud` must be (`single`) or contain (`any`) the broker's
    /// audience. A token already validated against this very bundle snapshot is answered from
    /// the verified cache while `now` is between its `iat`/`nbf` and its `exp` (the answer is
    /// the one a full validation gives; see the `verified_cache` module).
    ///
    /// # Errors
    /// [`ExchangeError::Unauthenticated`] with the validator's reason.
    pub fn authenticate_jwt_svid(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<Caller, ExchangeError> {
        let bundles = self.bundles.bundles();
        let spiffe_id = self
            .verified
            .jwt_svids
            .validate_jwt_svid(&self.validator, token, &bundles, now)
            .map_err(|e| ExchangeError::unauthenticated(AuthFailure::JwtSvid(e)))?;
        Ok(Caller {
            spiffe_id,
            method: AuthMethod::JwtSvid,
        })
    }

    /// Authenticates a secret presented at the realm (a Basic password, a Bearer token or a
    /// `refresh_token` form field): a login credential (`sbl1.`), a refresh token (`sbr2.`), or
    /// else a JWT-SVID. A login credential needs its subject as `username` (so not as a
    /// Bearer token); for a JWT-SVID the username is informational. Any username is at most
    /// [`MAX_USERNAME_LEN`] bytes.
    ///
    /// # Errors
    /// [`ExchangeError::Unauthenticated`].
    pub fn authenticate_secret(
        &self,
        username: Option<&str>,
        secret: &str,
        now: SystemTime,
    ) -> Result<Authenticated, ExchangeError> {
        if let Some(u) = username
            && u.len() > MAX_USERNAME_LEN
        {
            return Err(ExchangeError::unauthenticated(
                AuthFailure::UsernameTooLong {
                    len: u.len(),
                    max: MAX_USERNAME_LEN,
                },
            ));
        }
        let Some(kind) = CredentialKind::sniff(secret) else {
            return self
                .authenticate_jwt_svid(secret, now)
                .map(Authenticated::svid);
        };
        let claims = self.verify_credential(kind, secret, now).map_err(|e| {
            ExchangeError::unauthenticated(match e {
                CredentialError::SessionExpired { session_end, .. } => {
                    AuthFailure::SessionExpired { session_end }
                }
                e => AuthFailure::Credential(e),
            })
        })?;
        let method = match kind {
            CredentialKind::RefreshToken => AuthMethod::RefreshToken,
            CredentialKind::LoginCredential => {
                // The username is the second half of the login: a leaked password alone (in a
                // log of Bearer headers, say) is not enough to name its subject.
                match username {
                    None | Some("") => {
                        return Err(ExchangeError::unauthenticated(
                            AuthFailure::LoginCredentialWithoutUsername,
                        ));
                    }
                    Some(u) if u != claims.subject.as_str() => {
                        return Err(ExchangeError::unauthenticated(
                            AuthFailure::UsernameMismatch,
                        ));
                    }
                    Some(_) => AuthMethod::LoginCredential,
                }
            }
        };
        // `max_session` is applied here as well as at issuance, so lowering it in the config
        // shortens sessions already under way.
        let session_end = claims.session_end.min(
            claims
                .auth_time
                .checked_add(self.max_session)
                .unwrap_or(claims.session_end),
        );
        if method == AuthMethod::RefreshToken && now >= session_end {
            return Err(ExchangeError::unauthenticated(
                AuthFailure::SessionExpired {
                    session_end: unix_secs(session_end),
                },
            ));
        }
        Ok(Authenticated {
            caller: Caller {
                spiffe_id: claims.subject,
                method,
            },
            binding: Some(CredentialBinding {
                service: claims.service,
                ceiling: claims.ceiling,
                jti: claims.jti,
                auth_time: claims.auth_time,
                session_end,
            }),
        })
    }
}

// The verified caches.

use crate::credential::{CredentialClaims, MAX_CREDENTIAL_LEN};
use crate::metrics::{VerifiedCacheFigures, VerifiedCacheKind};
use crate::verified_cache::{
    CacheLimits, CacheStats, CredentialDomain, HeapSize, SubjectCache, TokenDigest, Validity,
    VerifiedCache, allocation,
};

/// The verified caches of one [`Authenticator`], one per credential kind it accepts that is
/// worth caching (see [`crate::verified_cache`] for why a hit decides exactly as a
/// verification would). Refresh tokens are not cached: each is normally presented once, to be
/// renewed.
#[derive(Debug)]
pub(crate) struct VerifiedCaches {
    /// X.509-SVID chains by digest, per bundle snapshot.
    chains: SubjectCache,
    /// JWT-SVIDs by digest, per bundle snapshot; used with the authenticator's one validator.
    jwt_svids: SubjectCache,
    /// Login credentials by digest, per credential key set.
    login_credentials: VerifiedCache<Arc<CredentialKeys>, CredentialClaims>,
}

impl Default for VerifiedCaches {
    fn default() -> Self {
        Self::new(CacheLimits::default())
    }
}

impl VerifiedCaches {
    /// Three caches, each bounded by `limits`.
    pub(crate) fn new(limits: CacheLimits) -> Self {
        Self {
            chains: SubjectCache::new(limits),
            jwt_svids: SubjectCache::new(limits),
            login_credentials: VerifiedCache::new(limits),
        }
    }

    /// Each cache's figures, for `/metrics`.
    fn figures(&self) -> [VerifiedCacheFigures; 3] {
        let figures = |cache, stats: CacheStats| {
            let mut f = VerifiedCacheFigures::empty(cache);
            f.hits = stats.hits;
            f.misses = stats.misses;
            f.evictions = stats.evictions;
            f.entries = u64::try_from(stats.entries).unwrap_or(u64::MAX);
            f.bytes = u64::try_from(stats.bytes).unwrap_or(u64::MAX);
            f
        };
        [
            figures(VerifiedCacheKind::X509Svid, self.chains.stats()),
            figures(VerifiedCacheKind::JwtSvid, self.jwt_svids.stats()),
            figures(
                VerifiedCacheKind::LoginCredential,
                self.login_credentials.stats(),
            ),
        ]
    }
}

impl Authenticator {
    /// The verified caches' figures now (hits, misses, evictions, size), for `/metrics`.
    pub fn verified_cache_figures(&self) -> [VerifiedCacheFigures; 3] {
        self.verified.figures()
    }

    /// [`CredentialKeys::verify`], with login credentials answered from the verified cache
    /// while `now` is between the credential's `iat` and `exp` (the verifier accepts that whole
    /// window and a little more: `iat` up to [`crate::credential::CREDENTIAL_IAT_LEEWAY`] in
    /// the future). Refresh tokens are always verified.
    fn verify_credential(
        &self,
        kind: CredentialKind,
        secret: &str,
        now: SystemTime,
    ) -> Result<CredentialClaims, CredentialError> {
        // Oversized secrets are refused before any work: do not hash them either.
        if kind != CredentialKind::LoginCredential || secret.len() > MAX_CREDENTIAL_LEN {
            return self.credentials.verify(kind, secret, now);
        }
        let digest = TokenDigest::of_token(CredentialDomain::LoginCredential, secret.as_bytes());
        self.verified
            .login_credentials
            .get_or_verify(digest, &self.credentials, now, || {
                let claims = self.credentials.verify(kind, secret, now)?;
                let validity = Validity::new(claims.issued_at, claims.expires_at);
                Ok((claims, validity))
            })
    }
}

impl HeapSize for CredentialClaims {
    /// The strings and the ceiling: its vector, each scope's name, and one B-tree node for
    /// each scope's action set.
    fn heap_bytes(&self) -> usize {
        const ACTION_SET_NODE: usize = 128;
        let scopes: usize = self
            .ceiling
            .iter()
            .map(|scope| {
                allocation(scope.name.len())
                    + if scope.actions.is_empty() {
                        0
                    } else {
                        ACTION_SET_NODE
                    }
            })
            .sum();
        self.subject.heap_bytes()
            + allocation(self.service.len())
            + allocation(self.jti.len())
            + allocation(self.ceiling.len() * size_of::<ResourceScope>())
            + scopes
    }
}

#[cfg(test)]
mod login_cache_tests {
    use std::time::UNIX_EPOCH;

    use svid_broker_identity::bundle::BundleSet;
    use svid_broker_identity::secret::ExposeSecret;

    use super::*;

    /// The verified cache in front of login credentials decides as the verifier does: the same
    /// claims or the same error, field for field, at every time around `iat` and `exp`,
    /// forwards then backwards, for valid, tampered, foreign-key and refresh-kind secrets,
    /// through one long-lived cache and through a second authenticator whose key set was
    /// derived anew from the same secret.
    #[test]
    fn cached_and_uncached_login_credential_verification_agree() {
        let keys = Arc::new(CredentialKeys::derive(&[7; 32]).unwrap());
        let other_keys = CredentialKeys::derive(&[8; 32]).unwrap();
        let authn = |keys: &Arc<CredentialKeys>| {
            Authenticator::new(
                Arc::new(Arc::new(BundleSet::new())),
                "svid-broker",
                AudienceMatch::Single,
                Arc::clone(keys),
                Duration::from_secs(8 * 3600),
                None,
                CacheLimits::default(),
            )
            .unwrap()
        };
        let cached = authn(&keys);
        let subject = SpiffeId::parse("spiffe://example.org/ns/ci/sa/builder").unwrap();
        let ceiling =
            svid_broker_policy::scope::parse_scopes(["repository:team/app:pull"]).unwrap();
        let issued_at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ttl = Duration::from_secs(900);
        let issue = |keys: &CredentialKeys, kind| {
            keys.issue(kind, &subject, "registry.local", &ceiling, ttl, issued_at)
                .unwrap()
                .secret
        };
        let valid = issue(&keys, CredentialKind::LoginCredential);
        let mut tampered = valid.expose_secret().to_owned();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        let secrets = [
            valid.expose_secret().to_owned(),
            tampered,
            issue(&other_keys, CredentialKind::LoginCredential)
                .expose_secret()
                .to_owned(),
            issue(&keys, CredentialKind::RefreshToken)
                .expose_secret()
                .to_owned(),
        ];
        let iat = 1_800_000_000_i64;
        let exp = iat + 900;
        let leeway = i64::try_from(crate::credential::CREDENTIAL_IAT_LEEWAY.as_secs()).unwrap();
        let mut offsets = Vec::new();
        for edge in [iat - leeway, iat, exp] {
            for delta_ms in [-31_000, -1_000, -1, 0, 1, 999, 1_000, 31_000] {
                offsets.push(edge * 1000 + delta_ms);
            }
        }
        offsets.push((iat + 300) * 1000);
        let backwards: Vec<i64> = offsets.iter().rev().copied().collect();
        offsets.extend(backwards);
        let at = |ms: i64| UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap());
        let same_content = Arc::new(CredentialKeys::derive(&[7; 32]).unwrap());
        let later = authn(&same_content);
        let mut compared = 0;
        for secret in &secrets {
            for &ms in &offsets {
                let now = at(ms);
                let uncached = format!(
                    "{:?}",
                    keys.verify(CredentialKind::LoginCredential, secret, now)
                );
                for (who, authn) in [("first", &cached), ("fresh keys", &later)] {
                    let answer = format!(
                        "{:?}",
                        authn.verify_credential(CredentialKind::LoginCredential, secret, now)
                    );
                    assert_eq!(answer, uncached, "{who} at {ms} ms");
                    compared += 1;
                }
            }
        }
        assert!(compared > 200);
        let figures = cached.verified_cache_figures();
        let login = figures[2];
        assert_eq!(login.cache, VerifiedCacheKind::LoginCredential);
        assert!(login.hits > 10, "{login:?}");
        assert_eq!(login.entries, 1, "only the valid credential is stored");
    }
}
