//! The broker's decisions as plain synchronous functions: authenticate a caller, decide what
//! policy grants, mint. The realm and the gRPC service only move bytes around these calls.
//!
//! Every [`Broker::exchange`] call emits exactly one audit event and updates the metrics,
//! whether it succeeds or fails (an issuance whose event cannot be written is withheld under
//! `audit_on_error = "deny"`). The realm and the gRPC service report refusals before
//! authentication through [`Broker::record_rejection`]: each is counted, charged to its source
//! address's failed-authentication budget, and audited in aggregate (the first per address and
//! reason in an interval in full, the rest as one summary).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls_pki_types::CertificateDer;
use svid_broker_identity::SpiffeId;
use svid_broker_identity::bundle::BundleProvider;
use svid_broker_identity::jwt::{AudienceMatch, JwtSvidError, JwtSvidValidator};
use svid_broker_identity::x509::{self, X509SvidError};
use svid_broker_policy::scope::{self, ScopeError};
use svid_broker_policy::{Action, DecisionError, Policy, Profile, ResourceScope};
use svid_broker_token::{
    Access, KeyError, MintRequest, RegistryToken, TokenError, TokenMinter, TokenProfile,
};

use crate::credential::{
    CredentialError, CredentialKeys, CredentialKind, DEFAULT_LOGIN_CREDENTIAL_TTL,
    DEFAULT_MAX_SESSION, DEFAULT_REFRESH_TOKEN_TTL, IssuedCredential, Secret, Session,
};
use crate::listen::client_key;
use crate::ops::{
    AuditEvent, AuditLog, AuditOnError, AuditSink, AuditUnavailable, CacheKey, CachedToken,
    DEFAULT_PREAUTH_AUDIT_INTERVAL, MAX_PREAUTH_TRACKED_IPS, Metrics, PREAUTH_SUMMARY_EVENT,
    PreauthDenials, PreauthKey, PreauthSummary, RateLimit, RateLimiter, Refusal, SubjectTokenAudit,
    TokenCache, VerifiedChainCache, ceiling_text, peer_text, rfc3339,
};
use crate::satoken::{SaTokenError, ServiceAccountIdentity, ServiceAccountMode};

/// Shortest lifetime of a credential derived from a service-account token whose own expiry is
/// nearer (the token crate's minimum token lifetime; the token is still valid within its leeway).
pub const MIN_DERIVED_TTL: Duration = Duration::from_secs(60);
/// Longest realm username accepted (Basic user or password-grant `username`): a SPIFFE ID is
/// at most 2048 bytes.
pub const MAX_USERNAME_LEN: usize = 2048;
/// Longest `client_id` accepted at the realm (printable ASCII only).
pub const MAX_CLIENT_ID_LEN: usize = 128;
/// Longest `service` recorded in the audit log of a refused request; longer ones are cut.
pub const MAX_AUDIT_SERVICE_LEN: usize = 128;

/// Where a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `GET /token`.
    RealmGet,
    /// `POST /token`.
    RealmPost,
    /// gRPC `Exchange`.
    Grpc,
}

impl Endpoint {
    /// The metrics and audit label.
    pub fn label(self) -> &'static str {
        match self {
            Self::RealmGet => "realm_get",
            Self::RealmPost => "realm_post",
            Self::Grpc => "grpc",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who.
    pub spiffe_id: SpiffeId,
    /// How they proved it.
    pub method: AuthMethod,
}

/// How a caller authenticated.
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
    /// The audit label.
    pub fn label(self) -> &'static str {
        match self {
            Self::X509Svid => "x509-svid",
            Self::JwtSvid => "jwt-svid",
            Self::LoginCredential => "login-credential",
            Self::RefreshToken => "refresh-token",
            Self::ServiceAccountToken => "sa-token",
        }
    }
}

/// What the caller wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExchangeKind {
    /// A registry bearer token for the given scopes.
    AccessToken,
    /// A registry login credential (username and password for the realm).
    LoginCredential,
}

impl ExchangeKind {
    fn label(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::LoginCredential => "login_credential",
        }
    }
}

/// One exchange request.
#[derive(Debug, Clone)]
pub struct ExchangeInput<'a> {
    /// What to issue.
    pub kind: ExchangeKind,
    /// The registry's `service`.
    pub service: &'a str,
    /// Raw scope parameters (each may hold several space-separated scopes).
    pub scopes: &'a [String],
    /// The client's address, for the audit log.
    pub peer: Option<SocketAddr>,
    /// Where the request came in.
    pub endpoint: Endpoint,
}

/// What an exchange issued.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ExchangeOutput {
    /// A registry bearer token.
    #[non_exhaustive]
    AccessToken {
        /// The token.
        token: RegistryToken,
        /// Its `jti`.
        jti: String,
        /// What it grants (possibly nothing).
        granted: Vec<ResourceScope>,
        /// When it was issued (a cached token keeps its original time).
        issued_at: SystemTime,
        /// Its `exp`.
        expires_at: SystemTime,
    },
    /// A registry login credential.
    #[non_exhaustive]
    LoginCredential {
        /// The username (the subject's SPIFFE ID).
        username: String,
        /// The password (`sbl1.` credential).
        password: Secret,
        /// The most tokens obtained with it may grant; empty = whatever policy allows.
        ceiling: Vec<ResourceScope>,
        /// Its expiry.
        expires_at: SystemTime,
    },
}

/// The class of an [`ExchangeError`], mapped to HTTP and gRPC status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Bad request (HTTP 400, gRPC INVALID_ARGUMENT).
    InvalidArgument,
    /// Bad or missing credentials (HTTP 401, gRPC UNAUTHENTICATED).
    Unauthenticated,
    /// Authenticated but not allowed (HTTP 403, gRPC PERMISSION_DENIED).
    PermissionDenied,
    /// Rate limited (HTTP 429, gRPC RESOURCE_EXHAUSTED).
    ResourceExhausted,
    /// The broker cannot serve now (HTTP 503, gRPC UNAVAILABLE).
    Unavailable,
}

impl ErrorCode {
    /// The metrics and audit label.
    pub fn label(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::Unauthenticated => "unauthenticated",
            Self::PermissionDenied => "permission_denied",
            Self::ResourceExhausted => "resource_exhausted",
            Self::Unavailable => "unavailable",
        }
    }
}

/// Why a request is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// No `service` was given.
    #[error("missing service")]
    MissingService,
    /// No registry has this `service`.
    #[error("unknown service")]
    UnknownService {
        /// The service asked for, cut to 256 bytes.
        service: String,
    },
    /// A scope does not parse.
    #[error("invalid scope")]
    Scope(#[source] ScopeError),
    /// Too many scopes for the policy.
    #[error("too many scopes")]
    TooManyScopes(#[source] DecisionError),
    /// The request itself is malformed (realm form or query).
    #[error("malformed request: {what}")]
    Malformed {
        /// What was wrong.
        what: &'static str,
    },
    /// `grant_type` is not `password` or `refresh_token`.
    #[error("unsupported grant_type")]
    UnsupportedGrantType,
    /// A parameter that must appear at most once was repeated (which one would count is
    /// ambiguous between the broker and whatever sits in front of it).
    #[error("parameter {name} may appear at most once")]
    RepeatedParameter {
        /// The parameter.
        name: &'static str,
    },
    /// `client_id` is not 1 to [`MAX_CLIENT_ID_LEN`] bytes of printable ASCII.
    #[error(
        "client_id must be 1 to 128 printable ASCII characters (no spaces, controls or Unicode)"
    )]
    InvalidClientId,
}

/// Why authentication failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFailure {
    /// No credentials were presented.
    #[error("credentials required")]
    MissingCredentials,
    /// The `Authorization` header is not `Basic` or `Bearer`, or does not decode.
    #[error("malformed authorization header")]
    MalformedAuthorization,
    /// The JWT-SVID was rejected.
    #[error("jwt-svid rejected")]
    JwtSvid(#[source] JwtSvidError),
    /// The X.509-SVID was rejected.
    #[error("x509-svid rejected")]
    X509Svid(#[source] X509SvidError),
    /// A login credential or refresh token was rejected.
    #[error("broker credential rejected")]
    Credential(#[source] CredentialError),
    /// The credential is bound to another registry service.
    #[error("credential is bound to another service")]
    WrongService {
        /// The service it is bound to.
        bound: String,
    },
    /// A login credential's Basic username is not its subject.
    #[error("username does not match the credential")]
    UsernameMismatch,
    /// A login credential was presented without its subject as the username (as a Bearer
    /// token, or with an empty username).
    #[error(
        "a login credential must be sent with its SPIFFE ID as the username (Basic auth or the password grant)"
    )]
    LoginCredentialWithoutUsername,
    /// The username is longer than [`MAX_USERNAME_LEN`]. (The message leaves `len` out: it is
    /// the caller's to vary, and refusals are aggregated by message.)
    #[error("username is longer than the {max} bytes allowed")]
    UsernameTooLong {
        /// Its length.
        len: usize,
        /// [`MAX_USERNAME_LEN`].
        max: usize,
    },
    /// A refresh token's session is over: its original authentication was more than the
    /// broker's `max_session` ago, or the login credential it was obtained with has expired.
    #[error("refresh token session expired")]
    SessionExpired {
        /// The session's end, Unix seconds.
        session_end: u64,
    },
    /// A refresh token was presented for a registry no allow rule lets its subject use any
    /// more (the policy changed since it was issued).
    #[error("refresh token subject may no longer use this registry")]
    NoLongerAllowed {
        /// The subject.
        subject: SpiffeId,
    },
    /// The subject token (a Kubernetes service-account token) was rejected; `Display` is the
    /// rule that failed.
    #[error(transparent)]
    ServiceAccountToken(SaTokenError),
}

/// Why an authenticated caller was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// An access token was asked for over gRPC and policy granted none of the scopes.
    #[error("no requested scope is allowed")]
    EmptyGrant,
    /// A login credential was asked for a registry no allow rule lets the subject use.
    #[error("subject may not use this registry")]
    RegistryNotAllowed,
    /// A subject token was sent but service-account token mode is not configured.
    #[error(
        "service-account token mode is not enabled on this broker (no [service_account] trusted_actors and issuers)"
    )]
    SubjectTokensDisabled,
    /// The caller may not present subject tokens.
    #[error("caller may not present subject tokens: not in service_account.trusted_actors")]
    UntrustedActor {
        /// The caller.
        actor: SpiffeId,
    },
}

/// Why the broker could not serve.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailability {
    /// Minting failed.
    #[error("token signing failed")]
    Mint(#[source] Arc<TokenError>),
    /// Issuing a credential failed.
    #[error("credential issuance failed")]
    Credential(#[source] CredentialError),
    /// The subject token's issuer has no keys loaded yet.
    #[error("service-account issuer keys are not available")]
    IssuerKeys(#[source] SaTokenError),
    /// The issuance could not be audited and `[log] audit_on_error = "deny"`.
    #[error("audit log unavailable")]
    Audit(#[source] AuditUnavailable),
}

/// Why an exchange failed. `Display` is the short reason a client may see; the source chain
/// (for logs and audit) says which rule failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// Bad request.
    #[error("{reason}")]
    InvalidArgument {
        /// Why.
        #[source]
        reason: InvalidRequest,
    },
    /// Bad or missing credentials.
    #[error("{reason}")]
    Unauthenticated {
        /// Why.
        #[source]
        reason: AuthFailure,
    },
    /// Not allowed.
    #[error("{reason}")]
    PermissionDenied {
        /// Why.
        #[source]
        reason: Denial,
    },
    /// Rate limited.
    #[error("rate limit exceeded")]
    ResourceExhausted {
        /// Who.
        subject: SpiffeId,
        /// When to try again.
        retry_after: Duration,
    },
    /// Too many requests from this address failed before authentication; refused before any
    /// credential is looked at.
    #[error("too many failed requests from this address")]
    PeerLimited {
        /// The address.
        peer: IpAddr,
        /// When to try again.
        retry_after: Duration,
    },
    /// Cannot serve now.
    #[error("{reason}")]
    Unavailable {
        /// Why.
        #[source]
        reason: Unavailability,
    },
}

impl ExchangeError {
    /// The error class.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            Self::Unauthenticated { .. } => ErrorCode::Unauthenticated,
            Self::PermissionDenied { .. } => ErrorCode::PermissionDenied,
            Self::ResourceExhausted { .. } | Self::PeerLimited { .. } => {
                ErrorCode::ResourceExhausted
            }
            Self::Unavailable { .. } => ErrorCode::Unavailable,
        }
    }

    /// How long the client should wait, for rate-limit errors.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::ResourceExhausted { retry_after, .. } | Self::PeerLimited { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    /// The whole chain, `: `-joined, for logs and the audit `reason`.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        // The outer Display already repeats the first source's text.
        if let Some(first) = source
            && first.to_string() == out
        {
            source = first.source();
        }
        while let Some(e) = source {
            out.push_str(": ");
            out.push_str(&e.to_string());
            source = e.source();
        }
        out
    }

    fn unauthenticated(reason: AuthFailure) -> Self {
        Self::Unauthenticated { reason }
    }

    /// An [`InvalidRequest::UnknownService`] error for `service`.
    pub fn unknown_service(service: &str) -> Self {
        Self::invalid(InvalidRequest::UnknownService {
            service: cut(service, 256).to_owned(),
        })
    }

    fn invalid(reason: InvalidRequest) -> Self {
        Self::InvalidArgument { reason }
    }
}

/// What a broker credential (login credential or refresh token) restricts a caller to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CredentialBinding {
    /// The registry service it is valid for.
    pub service: String,
    /// The most it may grant; empty = whatever policy allows.
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

/// A caller authenticated at the realm, plus what its credential restricts it to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Authenticated {
    /// The caller.
    pub caller: Caller,
    /// Present for login credentials and refresh tokens.
    pub binding: Option<CredentialBinding>,
}

/// Tunables of the engine (the config file fills them).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BrokerOptions {
    /// The audience JWT-SVIDs presented to the broker must carry.
    pub audience: String,
    /// Lifetime of login credentials.
    pub login_credential_ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_token_ttl: Duration,
    /// Absolute bound on a refresh-token session, from the original authentication
    /// (`auth_time`); renewals never reach past it.
    pub max_session: Duration,
    /// Per-subject rate limit; `None` disables it.
    pub rate_limit: Option<RateLimit>,
    /// How `aud` of a presented JWT-SVID is matched against `audience`.
    pub audience_policy: AudienceMatch,
    /// Per-source-address limit on requests that fail before authentication; once an
    /// address's bucket is empty its requests are refused (429 / RESOURCE_EXHAUSTED) before
    /// any credential is checked. `None` disables it.
    pub failed_auth_limit: Option<RateLimit>,
    /// Length of a pre-authentication aggregation interval.
    pub preauth_audit_interval: Duration,
    /// Whether issued tokens are cached.
    pub cache: bool,
    /// Where audit events go.
    pub audit: AuditSink,
    /// What an audit write failure does to the decision.
    pub audit_on_error: AuditOnError,
    /// Service-account token mode (subject tokens); `None` = off.
    pub service_accounts: Option<ServiceAccountMode>,
}

/// Default limit on failed pre-authentication requests per source address: a client that
/// fails 10 times a second for long is not a client with a typo.
pub const DEFAULT_FAILED_AUTH_LIMIT: RateLimit = RateLimit {
    per_second: 10.0,
    burst: 100.0,
};

impl BrokerOptions {
    /// Defaults for `audience`: default lifetimes, single-audience JWT-SVIDs, no per-subject
    /// rate limit, the default failed-authentication limit, cache on, audit to stderr
    /// (failing closed).
    pub fn new(audience: impl Into<String>) -> Self {
        Self {
            audience: audience.into(),
            login_credential_ttl: DEFAULT_LOGIN_CREDENTIAL_TTL,
            refresh_token_ttl: DEFAULT_REFRESH_TOKEN_TTL,
            max_session: DEFAULT_MAX_SESSION,
            rate_limit: None,
            audience_policy: AudienceMatch::Single,
            failed_auth_limit: Some(DEFAULT_FAILED_AUTH_LIMIT),
            preauth_audit_interval: DEFAULT_PREAUTH_AUDIT_INTERVAL,
            cache: true,
            audit: AuditSink::Stderr,
            audit_on_error: AuditOnError::Deny,
            service_accounts: None,
        }
    }
}

/// Why a [`Broker`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerBuildError {
    /// The audience is not acceptable to the JWT-SVID validator.
    #[error("invalid broker audience")]
    Audience(#[source] JwtSvidError),
}

/// The engine: policy, bundles, key ring and operations, shared behind an `Arc`.
pub struct Broker {
    policy: ArcSwap<Policy>,
    bundles: Arc<dyn BundleProvider>,
    validator: JwtSvidValidator,
    minter: TokenMinter,
    credentials: CredentialKeys,
    options: BrokerOptions,
    audit: AuditLog,
    metrics: Metrics,
    limiter: RateLimiter,
    failed_auth: RateLimiter<IpAddr>,
    preauth: PreauthDenials,
    cache: TokenCache,
    verified_chains: VerifiedChainCache,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("audience", &self.options.audience)
            .field("rules", &self.policy.load().rule_count())
            .field("minter", &self.minter)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Builds the engine.
    ///
    /// # Errors
    /// [`BrokerBuildError::Audience`] for an empty audience.
    pub fn new(
        policy: Policy,
        bundles: Arc<dyn BundleProvider>,
        minter: TokenMinter,
        credentials: CredentialKeys,
        options: BrokerOptions,
    ) -> Result<Self, BrokerBuildError> {
        let validator = JwtSvidValidator::new([options.audience.clone()])
            .map_err(BrokerBuildError::Audience)?
            .with_audience_match(options.audience_policy);
        Ok(Self {
            policy: ArcSwap::from_pointee(policy),
            bundles,
            validator,
            minter,
            credentials,
            audit: AuditLog::new(options.audit.clone(), options.audit_on_error),
            failed_auth: RateLimiter::with_max_keys(
                options.failed_auth_limit,
                MAX_PREAUTH_TRACKED_IPS,
            ),
            preauth: PreauthDenials::new(options.preauth_audit_interval),
            limiter: RateLimiter::new(options.rate_limit),
            cache: TokenCache::new(options.cache),
            verified_chains: VerifiedChainCache::default(),
            options,
            metrics: Metrics::default(),
        })
    }

    /// The current policy snapshot.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Installs a new policy (already validated); drops cached tokens so the new grants apply
    /// at once.
    pub fn replace_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
        self.cache.clear();
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The token minter (key ring, JWKS, CA bundle).
    pub fn minter(&self) -> &TokenMinter {
        &self.minter
    }

    /// The bundle provider.
    pub fn bundles(&self) -> &Arc<dyn BundleProvider> {
        &self.bundles
    }

    /// The audience JWT-SVIDs must carry.
    pub fn audience(&self) -> &str {
        &self.options.audience
    }

    /// Issues a new signing leaf now (the old one stays published as the previous leaf).
    ///
    /// # Errors
    /// The key ring's error; the current leaf stays in place.
    pub fn rotate_signing_key(&self, now: SystemTime) -> Result<(), KeyError> {
        self.minter.key_ring().rotate(now)?;
        self.cache.clear();
        self.metrics.key_rotated();
        Ok(())
    }

    /// Rotates the signing leaf if due; returns whether it did.
    ///
    /// # Errors
    /// The key ring's error.
    pub fn rotate_signing_key_if_due(&self, now: SystemTime) -> Result<bool, KeyError> {
        let rotated = self.minter.key_ring().rotate_if_due(now)?;
        if rotated {
            self.cache.clear();
            self.metrics.key_rotated();
        }
        Ok(rotated)
    }

    /// The gRPC listener's client-certificate verifier: any X.509-SVID that verifies against
    /// the bundle of its own trust domain passes the handshake; the policy decides per request
    /// what the identity may do. (`grpc::server_tls_config` makes client certificates optional,
    /// for callers that use a JWT-SVID bearer instead.)
    pub fn tls_client_verifier(&self) -> Arc<dyn rustls::server::danger::ClientCertVerifier> {
        Arc::new(
            svid_broker_identity::tls::SpiffeClientCertVerifier::authenticate_only(
                self.bundles.clone(),
            ),
        )
    }

    /// Authenticates a JWT-SVID whose `aud` must be (`single`) or contain (`any`) the broker's
    /// audience.
    ///
    /// # Errors
    /// [`ExchangeError::Unauthenticated`] with the validator's reason.
    pub fn authenticate_jwt_svid(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<Caller, ExchangeError> {
        let bundles = self.bundles.bundles();
        let claims = self
            .validator
            .validate(token, &bundles, now)
            .map_err(|e| ExchangeError::unauthenticated(AuthFailure::JwtSvid(e)))?;
        Ok(Caller {
            spiffe_id: claims.spiffe_id,
            method: AuthMethod::JwtSvid,
        })
    }

    /// Authenticates an X.509-SVID chain (leaf first) against the trust bundles.
    ///
    /// # Errors
    /// [`ExchangeError::Unauthenticated`] with the verifier's reason.
    pub fn authenticate_x509(
        &self,
        chain: &[CertificateDer<'_>],
        now: SystemTime,
    ) -> Result<Caller, ExchangeError> {
        let bundles = self.bundles.bundles();
        let key = VerifiedChainCache::key(chain);
        if let Some(spiffe_id) = self.verified_chains.get(&key, &bundles, now) {
            return Ok(Caller {
                spiffe_id,
                method: AuthMethod::X509Svid,
            });
        }
        let verified = x509::verify(chain, &bundles, now)
            .map_err(|e| ExchangeError::unauthenticated(AuthFailure::X509Svid(e)))?;
        self.verified_chains.put(key, bundles, &verified);
        Ok(Caller {
            spiffe_id: verified.into_spiffe_id(),
            method: AuthMethod::X509Svid,
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
        match CredentialKind::sniff(secret) {
            Some(kind) => {
                let claims = self.credentials.verify(kind, secret, now).map_err(|e| {
                    ExchangeError::unauthenticated(match e {
                        CredentialError::SessionExpired { session_end, .. } => {
                            AuthFailure::SessionExpired { session_end }
                        }
                        e => AuthFailure::Credential(e),
                    })
                })?;
                if kind == CredentialKind::LoginCredential {
                    // The username is the second half of the login: a leaked password alone
                    // (in a log of Bearer headers, say) is not enough to name its subject.
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
                        Some(_) => {}
                    }
                }
                let method = match kind {
                    CredentialKind::RefreshToken => AuthMethod::RefreshToken,
                    _ => AuthMethod::LoginCredential,
                };
                // `max_session` is applied here as well as at issuance, so lowering it in the
                // config shortens sessions already under way.
                let session_end = claims.session_end.min(
                    claims
                        .auth_time
                        .checked_add(self.options.max_session)
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
            None => Ok(Authenticated {
                caller: self.authenticate_jwt_svid(secret, now)?,
                binding: None,
            }),
        }
    }

    /// Issues a realm refresh token for `subject` bound to `service` that starts a new session
    /// at `now` (no ceiling, bounded by `max_session`). Not audited: the realm uses
    /// [`Self::issue_refresh_token_for`].
    ///
    /// # Errors
    /// [`ExchangeError::Unavailable`].
    pub fn issue_refresh_token(
        &self,
        subject: &SpiffeId,
        service: &str,
        now: SystemTime,
    ) -> Result<IssuedCredential, ExchangeError> {
        let session = Session {
            auth_time: now,
            end: now
                .checked_add(self.options.max_session)
                .unwrap_or(now + self.options.refresh_token_ttl),
        };
        self.credentials
            .issue_refresh(
                subject,
                service,
                &[],
                self.options.refresh_token_ttl,
                session,
                now,
            )
            .map_err(|e| ExchangeError::Unavailable {
                reason: Unavailability::Credential(e),
            })
    }

    /// Issues the refresh token the realm returns for offline access or a refresh grant, after
    /// `auth` was allowed by [`Self::exchange_authenticated`] for the same `input`, and
    /// writes one audit event (kind `refresh_token`, with its `jti`). It belongs to the
    /// caller's session: a fresh one for an SVID (`auth_time` = `now`); for a login
    /// credential or refresh token, the credential's `auth_time`, ceiling and session end, so
    /// it never outlives the login credential nor `auth_time` plus `max_session`.
    ///
    /// # Errors
    /// [`AuthFailure::SessionExpired`] when the session has (all but) ended,
    /// [`AuthFailure::WrongService`], [`ExchangeError::Unavailable`].
    pub fn issue_refresh_token_for(
        &self,
        auth: &Authenticated,
        input: &ExchangeInput<'_>,
        client_id: Option<&str>,
        now: SystemTime,
    ) -> Result<IssuedCredential, ExchangeError> {
        let caller = &auth.caller;
        let result = self.refresh_token_in_session(auth, input.service, now);
        let actor_text = actor(Some(caller), client_id);
        match &result {
            Ok(issued) => {
                let ceiling = auth.binding.as_ref().map_or(&[][..], |b| &b.ceiling[..]);
                let audited = self.audit.record(
                    &AuditEvent {
                        time: rfc3339(SystemTime::now()),
                        event: "svid-broker.exchange",
                        decision: "allow",
                        code: None,
                        reason: "refresh token issued".to_owned(),
                        subject: Some(caller.spiffe_id.as_str()),
                        actor: actor_text,
                        service: input.service,
                        requested: requested_text(input.scopes),
                        granted: scope::join_scopes(ceiling),
                        kind: REFRESH_TOKEN_KIND,
                        ceiling: Some(ceiling_text(ceiling)),
                        jti: Some(&issued.jti),
                        expires_at: Some(rfc3339(issued.expires_at)),
                        cached: false,
                        peer: peer_text(input.peer),
                        endpoint: input.endpoint.label(),
                        subject_token: None,
                        count: None,
                        interval_seconds: None,
                    },
                    &self.metrics,
                );
                if let Err(e) = audited {
                    let err = ExchangeError::Unavailable {
                        reason: Unavailability::Audit(e),
                    };
                    self.metrics.denied(input.endpoint, err.code());
                    return Err(err);
                }
            }
            Err(err) => {
                self.metrics.denied(input.endpoint, err.code());
                self.audit_failure_kind(
                    Some(caller),
                    actor_text,
                    None,
                    input,
                    REFRESH_TOKEN_KIND,
                    err,
                );
            }
        }
        result
    }

    fn refresh_token_in_session(
        &self,
        auth: &Authenticated,
        service: &str,
        now: SystemTime,
    ) -> Result<IssuedCredential, ExchangeError> {
        let max_end = |from: SystemTime| from.checked_add(self.options.max_session);
        let (session, ceiling) = match &auth.binding {
            None => (
                Session {
                    auth_time: now,
                    end: max_end(now).unwrap_or(now),
                },
                &[][..],
            ),
            Some(b) => {
                if b.service != service {
                    return Err(ExchangeError::unauthenticated(AuthFailure::WrongService {
                        bound: b.service.clone(),
                    }));
                }
                let end = max_end(b.auth_time).map_or(b.session_end, |m| m.min(b.session_end));
                (
                    Session {
                        auth_time: b.auth_time,
                        end,
                    },
                    &b.ceiling[..],
                )
            }
        };
        self.credentials
            .issue_refresh(
                &auth.caller.spiffe_id,
                service,
                ceiling,
                self.options.refresh_token_ttl,
                session,
                now,
            )
            .map_err(|e| match e {
                CredentialError::SessionExpired { session_end, .. } => {
                    ExchangeError::unauthenticated(AuthFailure::SessionExpired { session_end })
                }
                e => ExchangeError::Unavailable {
                    reason: Unavailability::Credential(e),
                },
            })
    }

    /// Decides and issues for an authenticated caller (gRPC: no credential binding).
    ///
    /// # Errors
    /// See [`ExchangeError`]. Over gRPC an access-token request whose scopes are all refused
    /// is [`Denial::EmptyGrant`]; at the realm an empty grant is a valid (empty) token.
    pub fn exchange(
        &self,
        caller: &Caller,
        input: &ExchangeInput<'_>,
        now: SystemTime,
    ) -> Result<ExchangeOutput, ExchangeError> {
        self.exchange_as(caller, None, input, None, now)
    }

    /// [`Self::exchange`] for a caller authenticated at the realm: a login credential's
    /// ceiling and service binding apply, and `client_id` goes to the audit log.
    ///
    /// # Errors
    /// See [`Self::exchange`]; a credential bound to another service is
    /// [`AuthFailure::WrongService`].
    pub fn exchange_authenticated(
        &self,
        auth: &Authenticated,
        input: &ExchangeInput<'_>,
        client_id: Option<&str>,
        now: SystemTime,
    ) -> Result<ExchangeOutput, ExchangeError> {
        self.exchange_as(&auth.caller, auth.binding.as_ref(), input, client_id, now)
    }

    fn exchange_as(
        &self,
        caller: &Caller,
        binding: Option<&CredentialBinding>,
        input: &ExchangeInput<'_>,
        client_id: Option<&str>,
        now: SystemTime,
    ) -> Result<ExchangeOutput, ExchangeError> {
        let mut notes = IssueNotes::default();
        let result = self.decide_and_issue(caller, binding, input, None, now, &mut notes);
        self.conclude(
            caller,
            actor(Some(caller), client_id),
            None,
            input,
            &notes,
            result,
        )
    }

    /// Audits and counts an exchange's outcome. An output whose audit event cannot be written
    /// is withheld when `audit_on_error = "deny"` (then the result is
    /// [`Unavailability::Audit`]); a request that got nothing it asked for is counted as a
    /// refusal, not an issuance.
    fn conclude(
        &self,
        caller: &Caller,
        actor: String,
        subject_token: Option<SubjectTokenAudit<'_>>,
        input: &ExchangeInput<'_>,
        notes: &IssueNotes,
        result: Result<ExchangeOutput, ExchangeError>,
    ) -> Result<ExchangeOutput, ExchangeError> {
        match result {
            Ok(out) => {
                let refusal = refusal_of(input, &out);
                if let Err(e) =
                    self.audit_success(caller, actor, subject_token, input, &out, notes, refusal)
                {
                    let err = ExchangeError::Unavailable {
                        reason: Unavailability::Audit(e),
                    };
                    self.metrics.denied(input.endpoint, err.code());
                    return Err(err);
                }
                match refusal {
                    Some(r) => self.metrics.refused(input.endpoint, r),
                    None => self.metrics.issued(
                        input.endpoint,
                        matches!(out, ExchangeOutput::LoginCredential { .. }),
                    ),
                }
                Ok(out)
            }
            Err(err) => {
                self.metrics.denied(input.endpoint, err.code());
                self.audit_failure(Some(caller), actor, subject_token, input, &err);
                Err(err)
            }
        }
    }

    /// Decides and issues for the subject of a service-account token that `actor` (a trusted
    /// plugin, authenticated by its SVID) presents: the actor must be in
    /// `service_account.trusted_actors`, the token must validate, and policy then runs on the
    /// mapped SPIFFE ID, to which the credential is issued. Returns the mapped subject with the
    /// output. One audit event records subject = mapped ID and actor = the actor's ID.
    ///
    /// # Errors
    /// [`Denial::SubjectTokensDisabled`] and [`Denial::UntrustedActor`] (PermissionDenied),
    /// [`AuthFailure::ServiceAccountToken`] (Unauthenticated), [`Unavailability::IssuerKeys`],
    /// then whatever [`Self::exchange`] returns for the mapped subject.
    pub fn exchange_with_subject_token(
        &self,
        actor: &Caller,
        subject_token: &str,
        input: &ExchangeInput<'_>,
        now: SystemTime,
    ) -> Result<(Caller, ExchangeOutput), ExchangeError> {
        let method = actor.method.label();
        let actor_text = actor.spiffe_id.as_str().to_owned();
        let sa = match self.validate_subject_token(actor, subject_token, now) {
            Ok(sa) => sa,
            Err(err) => {
                self.metrics.denied(input.endpoint, err.code());
                self.audit_failure(None, actor_text, Some(sa_audit(method, None)), input, &err);
                return Err(err);
            }
        };
        let subject = Caller {
            spiffe_id: sa.spiffe_id.clone(),
            method: AuthMethod::ServiceAccountToken,
        };
        let mut notes = IssueNotes::default();
        let not_after = Some(sa.expires_at);
        let result = self.decide_and_issue(&subject, None, input, not_after, now, &mut notes);
        let result = self.conclude(
            &subject,
            actor_text,
            Some(sa_audit(method, Some(&sa))),
            input,
            &notes,
            result,
        );
        result.map(|out| (subject, out))
    }

    /// The actor check, then the token: an untrusted actor learns nothing about the token.
    fn validate_subject_token(
        &self,
        actor: &Caller,
        subject_token: &str,
        now: SystemTime,
    ) -> Result<ServiceAccountIdentity, ExchangeError> {
        let mode = self
            .options
            .service_accounts
            .as_ref()
            .filter(|m| !m.trusted_actors.is_empty() && !m.validator.issuers().is_empty())
            .ok_or(ExchangeError::PermissionDenied {
                reason: Denial::SubjectTokensDisabled,
            })?;
        // Only a caller that proved an SVID may vouch for someone else; a broker credential
        // (itself derived from a subject) never may.
        let svid = matches!(actor.method, AuthMethod::X509Svid | AuthMethod::JwtSvid);
        let admission = mode.trusted_actors.admits(&actor.spiffe_id);
        let Some(admission) = admission.filter(|_| svid) else {
            return Err(ExchangeError::PermissionDenied {
                reason: Denial::UntrustedActor {
                    actor: actor.spiffe_id.clone(),
                },
            });
        };
        mode.validator
            .validate(subject_token, &admission, now)
            .map_err(|e| {
                if e.is_unavailable() {
                    ExchangeError::Unavailable {
                        reason: Unavailability::IssuerKeys(e),
                    }
                } else {
                    ExchangeError::unauthenticated(AuthFailure::ServiceAccountToken(e))
                }
            })
    }

    /// Refuses a request from `peer` before authentication when too many of its requests
    /// failed lately ([`BrokerOptions::failed_auth_limit`]). The refusal itself is for the
    /// caller to record with [`Self::record_rejection`].
    ///
    /// # Errors
    /// [`ExchangeError::PeerLimited`].
    pub fn admit_peer(
        &self,
        peer: Option<SocketAddr>,
        now: SystemTime,
    ) -> Result<(), ExchangeError> {
        let Some(ip) = peer.map(|p| client_key(p.ip())) else {
            return Ok(());
        };
        self.failed_auth
            .peek(&ip, now)
            .map_err(|retry_after| ExchangeError::PeerLimited {
                peer: ip,
                retry_after,
            })
    }

    /// Refuses a request that failed before a subject was authenticated: records it
    /// ([`Self::record_rejection`]) and returns the error to answer with and whether it was
    /// audited in full. That is `err` itself, or [`ExchangeError::PeerLimited`] when the peer's
    /// failure budget is spent ([`Self::admit_peer`]). Only failures are held against an
    /// address: a request that authenticates never comes here, so clients behind a shared
    /// address (NAT, a node IP) cannot lock each other out by failing.
    pub fn refuse_unauthenticated(
        &self,
        input: &ExchangeInput<'_>,
        client_id: Option<&str>,
        err: &ExchangeError,
        now: SystemTime,
    ) -> (ExchangeError, bool) {
        let answer = match self.admit_peer(input.peer, now) {
            Err(limited) => limited,
            Ok(()) => err.clone(),
        };
        let first = self.record_rejection(input, client_id, &answer, now);
        (answer, first)
    }

    /// Records a request refused before a subject was authenticated (bad credentials,
    /// malformed request, address limited): counted in the metrics and charged to the peer's
    /// failed-authentication bucket. The first refusal per (peer address, endpoint, reason)
    /// in an aggregation interval is audited in full; the others are summed into one
    /// `svid-broker.preauth_denials` event when the interval ends. Returns whether this one
    /// was audited in full (the caller logs only those).
    pub fn record_rejection(
        &self,
        input: &ExchangeInput<'_>,
        client_id: Option<&str>,
        err: &ExchangeError,
        now: SystemTime,
    ) -> bool {
        self.metrics.denied(input.endpoint, err.code());
        let ip = input.peer.map(|p| client_key(p.ip()));
        if let Some(ip) = ip
            && !matches!(err, ExchangeError::PeerLimited { .. })
        {
            // Ignoring the answer: this request is refused either way.
            let _ = self.failed_auth.check(&ip, now);
        }
        let key = PreauthKey {
            peer: ip,
            endpoint: input.endpoint,
            kind: input.kind.label(),
            code: err.code(),
            reason: err.to_string(),
        };
        let (first, summaries) = self.preauth.note(key, now);
        self.write_preauth_summaries(&summaries);
        if first {
            self.audit_failure(None, actor(None, client_id), None, input, err);
        }
        first
    }

    /// Writes the pre-authentication summaries of an interval that ended by `now` (the
    /// server calls this periodically, so a summary is not held back until the next denial).
    pub fn flush_preauth_denials(&self, now: SystemTime) {
        let summaries = self.preauth.flush_due(now);
        self.write_preauth_summaries(&summaries);
    }

    fn write_preauth_summaries(&self, summaries: &[PreauthSummary]) {
        for s in summaries {
            let peer = s.key.peer.map(|ip| ip.to_string());
            // A refusal that cannot be audited is still a refusal: the result only counts.
            let _ = self.audit.record(
                &AuditEvent {
                    time: rfc3339(SystemTime::now()),
                    event: PREAUTH_SUMMARY_EVENT,
                    decision: "deny",
                    code: Some(s.key.code.label()),
                    reason: s.key.reason.clone(),
                    subject: None,
                    actor: "unauthenticated".to_owned(),
                    service: "",
                    requested: String::new(),
                    granted: String::new(),
                    kind: s.key.kind,
                    ceiling: None,
                    jti: None,
                    expires_at: None,
                    cached: false,
                    peer,
                    endpoint: s.key.endpoint.label(),
                    subject_token: None,
                    count: Some(s.count),
                    interval_seconds: Some(s.interval.as_secs()),
                },
                &self.metrics,
            );
        }
    }

    /// `not_after` caps the issued lifetime (a credential derived from a service-account token
    /// never outlives it by more than [`MIN_DERIVED_TTL`]).
    fn decide_and_issue(
        &self,
        caller: &Caller,
        binding: Option<&CredentialBinding>,
        input: &ExchangeInput<'_>,
        not_after: Option<SystemTime>,
        now: SystemTime,
        notes: &mut IssueNotes,
    ) -> Result<ExchangeOutput, ExchangeError> {
        let cap = |ttl: Duration| match not_after {
            Some(at) => ttl.min(
                at.duration_since(now)
                    .unwrap_or_default()
                    .max(MIN_DERIVED_TTL),
            ),
            None => ttl,
        };
        if input.service.is_empty() {
            return Err(ExchangeError::invalid(InvalidRequest::MissingService));
        }
        if let Some(b) = binding
            && b.service != input.service
        {
            return Err(ExchangeError::unauthenticated(AuthFailure::WrongService {
                bound: b.service.clone(),
            }));
        }
        let requested = scope::parse_scopes(input.scopes.iter().map(String::as_str))
            .map_err(|e| ExchangeError::invalid(InvalidRequest::Scope(e)))?;
        let policy = self.policy.load();
        let decision = policy
            .decide(&caller.spiffe_id, input.service, &requested)
            .map_err(|e| {
                ExchangeError::invalid(match e {
                    DecisionError::UnknownService { service } => {
                        InvalidRequest::UnknownService { service }
                    }
                    _ => InvalidRequest::TooManyScopes(e),
                })
            })?;
        // A refresh token is a standing grant: once no rule lets its subject use this registry
        // the chain ends here (401, nothing re-issued) rather than renewing empty grants.
        if caller.method == AuthMethod::RefreshToken
            && !policy
                .has_allow_rule(&caller.spiffe_id, input.service)
                .unwrap_or(false)
        {
            return Err(ExchangeError::unauthenticated(
                AuthFailure::NoLongerAllowed {
                    subject: caller.spiffe_id.clone(),
                },
            ));
        }
        self.limiter
            .check(&caller.spiffe_id, now)
            .map_err(|retry_after| ExchangeError::ResourceExhausted {
                subject: caller.spiffe_id.clone(),
                retry_after,
            })?;
        let mut granted = decision.granted;
        if let Some(b) = binding
            && !b.ceiling.is_empty()
        {
            granted = within_ceiling(&granted, &b.ceiling);
        }
        let registry = decision.registry;
        match input.kind {
            ExchangeKind::AccessToken => {
                if input.endpoint == Endpoint::Grpc && !requested.is_empty() && granted.is_empty() {
                    return Err(ExchangeError::PermissionDenied {
                        reason: Denial::EmptyGrant,
                    });
                }
                let key = CacheKey {
                    subject: caller.spiffe_id.clone(),
                    service: input.service.to_owned(),
                    granted: scope::join_scopes(&granted),
                };
                // A cached token is reused only if it would not outlive the cap.
                if let Some(hit) = self.cache.get(&key, now).filter(|hit| {
                    let left = hit.expires_at.duration_since(now).unwrap_or_default();
                    cap(left) == left
                }) {
                    self.metrics.cache(true);
                    notes.cached = true;
                    return Ok(ExchangeOutput::AccessToken {
                        token: hit.token,
                        jti: hit.jti,
                        granted,
                        issued_at: hit.issued_at,
                        expires_at: hit.expires_at,
                    });
                }
                self.metrics.cache(false);
                let access: Vec<Access> = granted.iter().map(to_access).collect();
                let req = MintRequest::new(
                    registry.issuer(),
                    registry.service(),
                    &caller.spiffe_id,
                    &access,
                    now,
                )
                .with_ttl(cap(registry.token_ttl()))
                .with_profile(token_profile(registry.profile()));
                let minted = self
                    .minter
                    .mint(&req)
                    .map_err(|e| ExchangeError::Unavailable {
                        reason: Unavailability::Mint(Arc::new(e)),
                    })?;
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
                Ok(ExchangeOutput::AccessToken {
                    token: minted.token,
                    jti: minted.jti,
                    granted,
                    issued_at: minted.issued_at,
                    expires_at: minted.expires_at,
                })
            }
            ExchangeKind::LoginCredential => {
                let allowed = if requested.is_empty() {
                    policy
                        .has_allow_rule(&caller.spiffe_id, input.service)
                        .unwrap_or(false)
                } else {
                    !granted.is_empty()
                };
                if !allowed {
                    return Err(ExchangeError::PermissionDenied {
                        reason: Denial::RegistryNotAllowed,
                    });
                }
                let issued = self
                    .credentials
                    .issue(
                        CredentialKind::LoginCredential,
                        &caller.spiffe_id,
                        input.service,
                        &granted,
                        cap(self.options.login_credential_ttl),
                        now,
                    )
                    .map_err(|e| ExchangeError::Unavailable {
                        reason: Unavailability::Credential(e),
                    })?;
                notes.credential_jti = Some(issued.jti);
                Ok(ExchangeOutput::LoginCredential {
                    username: caller.spiffe_id.as_str().to_owned(),
                    password: issued.secret,
                    ceiling: granted,
                    expires_at: issued.expires_at,
                })
            }
        }
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one audit event's parts, all distinct"
    )]
    fn audit_success(
        &self,
        caller: &Caller,
        actor: String,
        subject_token: Option<SubjectTokenAudit<'_>>,
        input: &ExchangeInput<'_>,
        out: &ExchangeOutput,
        notes: &IssueNotes,
        refusal: Option<Refusal>,
    ) -> Result<(), AuditUnavailable> {
        let (granted, jti, expires_at, ceiling, reason) = match out {
            ExchangeOutput::AccessToken {
                granted,
                jti,
                expires_at,
                ..
            } => {
                let reason = match refusal {
                    Some(_) => "nothing granted",
                    None if granted.is_empty() => "authenticated (no scope requested)",
                    None => "granted",
                };
                (
                    granted.as_slice(),
                    Some(jti.as_str()),
                    *expires_at,
                    None,
                    reason,
                )
            }
            ExchangeOutput::LoginCredential {
                ceiling,
                expires_at,
                ..
            } => (
                ceiling.as_slice(),
                notes.credential_jti.as_deref(),
                *expires_at,
                Some(ceiling_text(ceiling)),
                if ceiling.is_empty() {
                    "login credential issued (registry-wide)"
                } else {
                    "login credential issued (scoped)"
                },
            ),
        };
        self.audit.record(
            &AuditEvent {
                time: rfc3339(SystemTime::now()),
                event: "svid-broker.exchange",
                decision: if refusal.is_some() { "deny" } else { "allow" },
                code: refusal.map(|_| ErrorCode::PermissionDenied.label()),
                reason: reason.to_owned(),
                subject: Some(caller.spiffe_id.as_str()),
                actor,
                service: input.service,
                requested: requested_text(input.scopes),
                granted: scope::join_scopes(granted),
                kind: input.kind.label(),
                ceiling,
                jti,
                expires_at: Some(rfc3339(expires_at)),
                cached: notes.cached,
                peer: peer_text(input.peer),
                endpoint: input.endpoint.label(),
                subject_token,
                count: None,
                interval_seconds: None,
            },
            &self.metrics,
        )
    }

    fn audit_failure(
        &self,
        caller: Option<&Caller>,
        actor: String,
        subject_token: Option<SubjectTokenAudit<'_>>,
        input: &ExchangeInput<'_>,
        err: &ExchangeError,
    ) {
        self.audit_failure_kind(caller, actor, subject_token, input, input.kind.label(), err);
    }

    fn audit_failure_kind(
        &self,
        caller: Option<&Caller>,
        actor: String,
        subject_token: Option<SubjectTokenAudit<'_>>,
        input: &ExchangeInput<'_>,
        kind: &'static str,
        err: &ExchangeError,
    ) {
        // What a refused request named is the caller's text, unchecked: printable ASCII only
        // reaches the audit (no RLO, ZWSP or control characters to disguise a line).
        let service = printable(cut(input.service, MAX_AUDIT_SERVICE_LEN));
        // A denial that cannot be audited is still refused: the failure is only counted.
        let _ = self.audit.record(
            &AuditEvent {
                time: rfc3339(SystemTime::now()),
                event: "svid-broker.exchange",
                decision: "deny",
                code: Some(err.code().label()),
                reason: printable(&err.chain()),
                subject: caller.map(|c| c.spiffe_id.as_str()),
                actor,
                service: &service,
                requested: requested_text(input.scopes),
                granted: String::new(),
                kind,
                ceiling: None,
                jti: None,
                expires_at: None,
                cached: false,
                peer: peer_text(input.peer),
                endpoint: input.endpoint.label(),
                subject_token,
                count: None,
                interval_seconds: None,
            },
            &self.metrics,
        );
    }
}

fn sa_audit<'a>(
    actor_method: &'static str,
    sa: Option<&'a ServiceAccountIdentity>,
) -> SubjectTokenAudit<'a> {
    SubjectTokenAudit {
        kind: "kubernetes-service-account",
        actor_method,
        issuer: sa.map(|s| s.issuer.as_str()),
        namespace: sa.map(|s| s.namespace.as_str()),
        service_account: sa.map(|s| s.name.as_str()),
        pod: sa.and_then(|s| s.pod_name.as_deref()),
        pod_uid: sa.and_then(|s| s.pod_uid.as_deref()),
        node: sa.and_then(|s| s.node_name.as_deref()),
    }
}

/// Whether an answered exchange granted nothing it asked for: scopes were requested and the
/// access token carries none.
fn refusal_of(input: &ExchangeInput<'_>, out: &ExchangeOutput) -> Option<Refusal> {
    let asked = input.scopes.iter().any(|s| !s.trim().is_empty());
    match out {
        ExchangeOutput::AccessToken { granted, .. } if asked && granted.is_empty() => {
            Some(Refusal::NothingGranted)
        }
        _ => None,
    }
}

/// The audit `kind` of a refresh token issued by the realm.
const REFRESH_TOKEN_KIND: &str = "refresh_token";

/// What an issuance reports besides its output, for the audit event.
#[derive(Debug, Default)]
struct IssueNotes {
    /// A cached access token was reused.
    cached: bool,
    /// The `jti` of an issued login credential (the output carries only its secret).
    credential_jti: Option<String>,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An error and its `source()` chain as `a: b: c`, for log lines.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

fn actor(caller: Option<&Caller>, client_id: Option<&str>) -> String {
    let method = caller.map_or("unauthenticated", |c| c.method.label());
    match client_id {
        Some(id) if !id.is_empty() => {
            // The realm refuses anything else; this keeps a caller that skipped the edge check
            // from writing format characters (RLO, ZWSP) into the log.
            let id: String = cut(id, MAX_CLIENT_ID_LEN)
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .collect();
            format!("{method} client_id={id}")
        }
        _ => method.to_owned(),
    }
}

/// Whether `client_id` is acceptable: 1 to [`MAX_CLIENT_ID_LEN`] bytes of printable ASCII
/// (`!` to `~`). Client IDs go to the audit log verbatim, where Unicode format characters
/// (RLO, ZWSP) would make a line read differently from what it says.
pub fn is_valid_client_id(client_id: &str) -> bool {
    (1..=MAX_CLIENT_ID_LEN).contains(&client_id.len())
        && client_id.bytes().all(|b| b.is_ascii_graphic())
}

fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Requested scopes for the audit log, capped so a hostile request cannot bloat it.
fn requested_text(scopes: &[String]) -> String {
    let joined = scopes
        .iter()
        .filter(|s| !s.is_empty())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    printable(cut(&joined, 4096))
}

/// `s` with every character that is not printable ASCII (or a space) replaced by `?`, for
/// caller-supplied text in the audit log.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The grant restricted to a login credential's ceiling. `*` in the ceiling covers every
/// action, as the registry reads it.
fn within_ceiling(granted: &[ResourceScope], ceiling: &[ResourceScope]) -> Vec<ResourceScope> {
    granted
        .iter()
        .filter_map(|g| {
            let c = ceiling
                .iter()
                .find(|c| c.resource_type == g.resource_type && c.name == g.name)?;
            let actions: std::collections::BTreeSet<Action> = if c.actions.contains(&Action::ALL) {
                g.actions.clone()
            } else {
                g.actions.intersection(&c.actions).cloned().collect()
            };
            (!actions.is_empty()).then(|| ResourceScope {
                resource_type: g.resource_type,
                name: g.name.clone(),
                actions,
            })
        })
        .collect()
}

fn to_access(scope: &ResourceScope) -> Access {
    Access::new(
        scope.resource_type.as_str(),
        scope.name.clone(),
        scope.actions.iter().map(|a| a.as_str().to_owned()),
    )
}

/// The token crate's profile for a policy registry profile.
pub fn token_profile(profile: Profile) -> TokenProfile {
    match profile {
        Profile::Distribution3 => TokenProfile::Distribution3,
        Profile::Zot => TokenProfile::Zot,
        _ => TokenProfile::Distribution2,
    }
}

#[cfg(test)]
mod tests;
