//! The broker's error vocabulary: why a request was refused, in classes that map one to one
//! onto HTTP and gRPC status codes. `Display` of an [`ExchangeError`] is the short reason a
//! client may read; [`ExchangeError::chain`] adds the rule that failed, for logs and audit.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use svid_broker_identity::SpiffeId;
use svid_broker_identity::jwt::JwtSvidError;
use svid_broker_identity::x509::X509SvidError;
use svid_broker_policy::DecisionError;
use svid_broker_policy::scope::ScopeError;
use svid_broker_token::TokenError;

use crate::audit::AuditUnavailable;
use crate::credential::CredentialError;
use crate::satoken::SaTokenError;

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
    /// The snake_case label metrics and audit events carry (`invalid_argument` ... `unavailable`).
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
    /// A `scope` parameter does not parse (checked before the policy is consulted).
    #[error("invalid scope")]
    Scope(#[source] ScopeError),
    /// Too many scopes for the policy.
    #[error("too many scopes")]
    TooManyScopes(#[source] DecisionError),
    /// The request itself is malformed (realm form or query).
    #[error("malformed request: {what}")]
    Malformed {
        /// What was wrong, a fixed phrase (never the caller's text).
        what: &'static str,
    },
    /// `grant_type` is not `password` or `refresh_token`.
    #[error("unsupported grant_type")]
    UnsupportedGrantType,
    /// A parameter that must appear at most once was repeated (which one would count is
    /// ambiguous between the broker and whatever sits in front of it).
    #[error("parameter {name} may appear at most once")]
    RepeatedParameter {
        /// The parameter's name (never the caller's text).
        name: &'static str,
    },
    /// The registry's kind cannot serve what was asked (a Harbor registry is asked for a
    /// broker-signed access token, or is reached through the realm).
    #[error(
        "registry {registry:?} is kind = \"{kind}\": the broker hands out its registry's own credentials (ask for a login credential), not {asked}"
    )]
    KindNotServed {
        /// The registry's policy name.
        registry: String,
        /// Its kind.
        kind: svid_broker_policy::RegistryKind,
        /// What was asked for, a fixed phrase.
        asked: &'static str,
    },
    /// A registry-wide login credential (no scope: what the Docker credential helper and a
    /// kubelet plugin entry with `scope = "registry"` ask for) was asked of a registry whose
    /// credentials are per project (Harbor, GitLab, Quay): no project is named, so none can be
    /// made.
    #[error(
        "registry {registry:?} is kind = \"{kind}\": its credentials are per project and a registry-wide request (a Docker server URL) names none: use the kubelet plugin with scope = \"repository\", or Exchange with a repository scope"
    )]
    RegistryWideNotServed {
        /// The registry's policy name.
        registry: String,
        /// Its kind.
        kind: svid_broker_policy::RegistryKind,
    },
    /// The synchronous [`crate::Broker::exchange`] was asked for a registry whose own API makes
    /// the credential: it cannot wait for that API (an embedder's mistake; the gRPC edge uses
    /// [`crate::Broker::begin_exchange`]).
    #[error(
        "registry {registry:?}'s credentials come from its own API, which the synchronous Broker::exchange cannot wait for: use Broker::begin_exchange and the backends"
    )]
    NeedsBackend {
        /// The registry's policy name.
        registry: String,
    },
    /// The registry's backend cannot express the grant (it spans two Harbor projects, names
    /// an action the registry has no permission for, or names no repository).
    #[error(transparent)]
    Backend(Arc<svid_broker_backends::BackendError>),
    /// The request's scopes are missing or past a cap (`POST /oauth2/token`: RFC 6749 §3.3
    /// answers an absent scope with `invalid_scope`).
    #[error("invalid scope request: {what}")]
    ScopeRequest {
        /// What was wrong, a fixed phrase (never the caller's text).
        what: &'static str,
    },
    /// `client_id` is not 1 to [`MAX_CLIENT_ID_LEN`](crate::request::MAX_CLIENT_ID_LEN) bytes of printable ASCII.
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
    /// The JWT-SVID failed validation (form, bundle key, `aud`, times); the source says which rule.
    #[error("jwt-svid rejected")]
    JwtSvid(#[source] JwtSvidError),
    /// The X.509-SVID chain failed verification against the current bundles; the source says why.
    #[error("x509-svid rejected")]
    X509Svid(#[source] X509SvidError),
    /// A login credential or refresh token was rejected.
    #[error("broker credential rejected")]
    Credential(#[source] CredentialError),
    /// The credential is bound to another registry service.
    #[error("credential is bound to another service")]
    WrongService {
        /// The `service` the verified credential carries (the request named another).
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
    /// The username is longer than [`MAX_USERNAME_LEN`](crate::request::MAX_USERNAME_LEN). (The message leaves `len` out: it is
    /// the caller's to vary, and refusals are aggregated by message.)
    #[error("username is longer than the {max} bytes allowed")]
    UsernameTooLong {
        /// Its length, in bytes.
        len: usize,
        /// [`MAX_USERNAME_LEN`](crate::request::MAX_USERNAME_LEN).
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
        /// The refresh token's subject.
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
        /// The actor that presented the subject token.
        actor: SpiffeId,
    },
}

/// Why the broker could not serve.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailability {
    /// Signing the registry token failed.
    #[error("token signing failed")]
    Mint(#[source] Arc<TokenError>),
    /// Issuing a login credential or refresh token failed (random source, lifetime or length).
    #[error("credential issuance failed")]
    Credential(#[source] CredentialError),
    /// The subject token's issuer has no keys loaded yet.
    #[error("service-account issuer keys are not available")]
    IssuerKeys(#[source] SaTokenError),
    /// The registry's own API failed (unreachable, too slow, refused the broker's credential,
    /// answered garbage); the error names the registry and the step.
    #[error(transparent)]
    Backend(Arc<svid_broker_backends::BackendError>),
    /// The issuance could not be audited and `[log] audit_on_error = "deny"`.
    #[error("audit log unavailable")]
    Audit(#[source] AuditUnavailable),
}

/// Why an exchange failed. `Display` is the short reason a client may see; the source chain
/// (for logs and audit) says which rule failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The request is malformed or asks what policy cannot serve ([`ErrorCode::InvalidArgument`]).
    #[error(transparent)]
    InvalidArgument {
        /// The rule the request broke; `Display` is what the client reads.
        reason: InvalidRequest,
    },
    /// Bad or missing credentials ([`ErrorCode::Unauthenticated`]).
    #[error(transparent)]
    Unauthenticated {
        /// The check the presented proof failed; `Display` is what the client reads.
        reason: AuthFailure,
    },
    /// The caller authenticated but is refused ([`ErrorCode::PermissionDenied`]).
    #[error(transparent)]
    PermissionDenied {
        /// The rule that refused the authenticated caller.
        reason: Denial,
    },
    /// The subject's rate limit is spent ([`ErrorCode::ResourceExhausted`]).
    #[error("rate limit exceeded")]
    ResourceExhausted {
        /// The authenticated subject's SPIFFE ID; its per-subject bucket is empty.
        subject: SpiffeId,
        /// Until the bucket holds a token again; sent as HTTP `Retry-After`, seconds rounded up.
        retry_after: Duration,
    },
    /// Too many requests from this address failed before authentication; refused before any
    /// credential is looked at.
    #[error("too many failed requests from this address")]
    PeerLimited {
        /// The address key the budget is kept for (IPv4, or the IPv6 /64).
        peer: IpAddr,
        /// Until the address's budget admits a request again; sent as `Retry-After`, rounded up.
        retry_after: Duration,
    },
    /// The broker cannot serve now; the request may succeed later ([`ErrorCode::Unavailable`]).
    #[error(transparent)]
    Unavailable {
        /// What the broker could not do (the client may retry later).
        reason: Unavailability,
    },
}

impl ExchangeError {
    /// The class, which fixes the HTTP and gRPC status (see [`ErrorCode`]).
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
        svid_broker_identity::report::ErrorChain::new(self).to_string()
    }

    pub(crate) fn unauthenticated(reason: AuthFailure) -> Self {
        Self::Unauthenticated { reason }
    }

    /// An [`InvalidRequest::UnknownService`] error for `service` (cut to 256 bytes).
    pub fn unknown_service(service: &str) -> Self {
        Self::invalid(InvalidRequest::UnknownService {
            service: crate::audit::cut(service, 256).to_owned(),
        })
    }

    pub(crate) fn invalid(reason: InvalidRequest) -> Self {
        Self::InvalidArgument { reason }
    }

    pub(crate) fn unavailable(reason: Unavailability) -> Self {
        Self::Unavailable { reason }
    }
}

impl From<InvalidRequest> for ExchangeError {
    fn from(reason: InvalidRequest) -> Self {
        Self::InvalidArgument { reason }
    }
}

/// Why a [`crate::Broker`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerBuildError {
    /// The audience is not acceptable to the JWT-SVID validator.
    #[error("invalid broker audience")]
    Audience(#[source] JwtSvidError),
}
