//! [`ClientError`]: which step of an exchange failed, and why.

use std::fmt;
use std::time::Duration;

use svid_broker_identity::report::ErrorChain;
use svid_broker_sources::workload::WorkloadSourceError;

/// The step of an exchange that was running when an error (or the deadline) hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Connecting to the Workload API and its initial sync.
    WorkloadApi,
    /// Fetching a JWT-SVID for the broker.
    FetchJwtSvid,
    /// TCP and TLS to the broker.
    Connect,
    /// The `Exchange` call itself.
    Exchange,
    /// Waiting before a retry.
    Backoff,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WorkloadApi => "connecting to the workload api",
            Self::FetchJwtSvid => "fetching a jwt-svid",
            Self::Connect => "connecting to the broker",
            Self::Exchange => "the exchange call",
            Self::Backoff => "waiting to retry",
        })
    }
}

/// The coarse class of a [`ClientError`]: what an operator must fix. Its `Display` is a short
/// stable phrase, suitable as the start of a one-line diagnostic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The Workload API cannot be reached (no endpoint, socket missing, connection refused).
    WorkloadApiUnreachable,
    /// The Workload API answered but has no SVID for this process.
    NoSvid,
    /// The broker cannot be reached or answered `UNAVAILABLE` until retries ran out.
    BrokerUnavailable,
    /// The broker's certificate is not the expected broker SPIFFE ID, or the TLS handshake was
    /// refused.
    BrokerIdentity,
    /// The broker did not accept the caller's identity (`UNAUTHENTICATED`).
    Unauthenticated,
    /// The broker's policy does not allow what was asked (`PERMISSION_DENIED`).
    PermissionDenied,
    /// The overall deadline passed.
    Deadline,
    /// The request is malformed (locally, or `INVALID_ARGUMENT` from the broker).
    InvalidArgument,
    /// Anything else the broker answered (rate limited, unimplemented, bad response).
    Rejected,
    /// A local resource (async runtime) could not be created.
    Local,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WorkloadApiUnreachable => "workload api unreachable",
            Self::NoSvid => "no svid",
            Self::BrokerUnavailable => "broker unavailable",
            Self::BrokerIdentity => "broker identity rejected",
            Self::Unauthenticated => "unauthenticated",
            Self::PermissionDenied => "permission denied",
            Self::Deadline => "deadline exceeded",
            Self::InvalidArgument => "invalid argument",
            Self::Rejected => "rejected by broker",
            Self::Local => "local error",
        })
    }
}

/// Why an exchange failed. Messages never contain a token, key or password; broker reasons
/// are the broker's short client-facing text, cut to [`crate::MAX_REASON_LEN`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The Workload API cannot be reached or refused the connection.
    #[error("workload api unreachable")]
    WorkloadApiUnreachable {
        /// The source's classified reason.
        #[source]
        source: WorkloadSourceError,
    },
    /// The Workload API's Unix socket exists but refuses connections (the agent is down).
    #[error("workload api unreachable: {endpoint} refuses connections")]
    WorkloadApiRefused {
        /// The `unix://` endpoint, as configured or read from `SPIFFE_ENDPOINT_SOCKET`.
        endpoint: String,
        /// The connect error (always `ConnectionRefused`).
        #[source]
        source: std::io::Error,
    },
    /// The Workload API has issued no (usable) SVID to this process.
    #[error("the workload api has no svid for this process")]
    NoSvid {
        /// The source's reason.
        #[source]
        source: WorkloadSourceError,
    },
    /// The broker address is not `host:port`.
    #[error("invalid broker address {address:?}: expected host:port")]
    InvalidBrokerAddress {
        /// The broker address as configured ([`crate::ClientOptions::broker`]).
        address: String,
    },
    /// The broker stayed unavailable (connection refused, reset, `UNAVAILABLE`) for every
    /// attempt that fit in the deadline.
    #[error("broker {address} unavailable after {attempts} attempt(s): {last}")]
    BrokerUnavailable {
        /// The broker address as configured (`host:port`), not the resolved socket address.
        address: String,
        /// Attempts made, the first included (at most the retry policy's `max_attempts`).
        attempts: u32,
        /// The last attempt's failure on one line, without secrets (a resolve, connect or
        /// `UNAVAILABLE` reason).
        last: String,
    },
    /// The TLS handshake with the broker failed (its SVID is not trusted or not the expected
    /// broker ID, or it refused ours). Not retried.
    #[error("tls handshake with broker {address} failed")]
    BrokerIdentity {
        /// The broker address as configured (`host:port`).
        address: String,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The broker did not accept our credential (`UNAUTHENTICATED`).
    #[error("the broker did not accept this identity: {reason}")]
    Unauthenticated {
        /// The broker's client-facing reason, cut to [`crate::MAX_REASON_LEN`] bytes; never a
        /// secret.
        reason: String,
    },
    /// The broker's policy denied the request (`PERMISSION_DENIED`).
    #[error("the broker denied the request: {reason}")]
    PermissionDenied {
        /// The broker's client-facing reason, cut to [`crate::MAX_REASON_LEN`] bytes; never a
        /// secret.
        reason: String,
    },
    /// The broker rejected the request as malformed (`INVALID_ARGUMENT`).
    #[error("the broker rejected the request as invalid: {reason}")]
    InvalidArgument {
        /// The broker's client-facing reason, cut to [`crate::MAX_REASON_LEN`] bytes; never a
        /// secret.
        reason: String,
    },
    /// Any other gRPC status (rate limited, unimplemented, internal).
    #[error("the broker answered {code:?}: {reason}")]
    Rejected {
        /// The gRPC status the broker answered; never `OK`, `UNAVAILABLE`, `UNAUTHENTICATED`,
        /// `PERMISSION_DENIED`, `INVALID_ARGUMENT` or `DEADLINE_EXCEEDED` (those have their own
        /// variants).
        code: tonic::Code,
        /// The broker's client-facing reason, cut to [`crate::MAX_REASON_LEN`] bytes; never a
        /// secret.
        reason: String,
    },
    /// The overall deadline passed during `step`.
    #[error("deadline of {deadline:?} exceeded during {step}")]
    Deadline {
        /// The step that was running (`Exchange` also when the broker answered
        /// `DEADLINE_EXCEEDED`).
        step: Step,
        /// The configured overall deadline, not the time spent in `step`.
        deadline: Duration,
    },
    /// A local check on the request failed before anything was sent.
    #[error("invalid request: {rule}")]
    InvalidRequest {
        /// The local rule the request broke; nothing was sent.
        rule: RequestRule,
    },
    /// The broker's response breaks the protocol.
    #[error("invalid response from the broker: {rule}")]
    InvalidResponse {
        /// The protocol rule the broker's answer broke; no credential is returned.
        rule: ResponseRule,
    },
    /// rustls refused the client configuration (the SVID's key is unusable).
    #[error("cannot build the tls client configuration")]
    TlsConfig {
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The blocking wrapper could not build its runtime.
    #[error("cannot start the async runtime")]
    Runtime {
        /// The I/O error from building the Tokio runtime.
        #[source]
        source: std::io::Error,
    },
}

/// Local request rules (the caps are the server's, from [`svid_broker_identity::limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestRule {
    /// The audience (registry service) is empty.
    EmptyAudience,
    /// The audience is longer than [`svid_broker_identity::limits::MAX_SERVICE_LEN`].
    AudienceTooLong,
    /// More scopes than [`svid_broker_identity::limits::MAX_SCOPE_PARAMS`], or one longer than [`svid_broker_identity::limits::MAX_SCOPE_PARAM_LEN`].
    TooManyScopes,
    /// An access token was asked for without a scope.
    NoScope,
    /// The subject token is empty or longer than [`svid_broker_identity::limits::MAX_SUBJECT_TOKEN_LEN`].
    SubjectTokenSize,
    /// The JWT-SVID cannot be sent as header text.
    BearerNotHeaderText,
}

impl fmt::Display for RequestRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EmptyAudience => "the audience must not be empty",
            Self::AudienceTooLong => "the audience is too long",
            Self::TooManyScopes => "too many scopes, or a scope too long",
            Self::NoScope => "an access token needs at least one scope",
            Self::SubjectTokenSize => "the subject token is empty or too long",
            Self::BearerNotHeaderText => "the jwt-svid is not valid header text",
        })
    }
}

/// Rules on the broker's answer, checked before a credential is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseRule {
    /// No token or password.
    EmptyToken,
    /// The token is longer than [`svid_broker_identity::limits::MAX_CREDENTIAL_LEN`].
    TokenTooLong,
    /// A login credential without a user name.
    NoUsername,
    /// No or a non-positive expiry.
    NoExpiry,
}

impl fmt::Display for ResponseRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EmptyToken => "no token",
            Self::TokenTooLong => "token too long",
            Self::NoUsername => "login credential without a user name",
            Self::NoExpiry => "no expiry",
        })
    }
}

impl ClientError {
    /// What kind of failure this is, for one-line diagnostics and exit codes.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::WorkloadApiUnreachable { .. } | Self::WorkloadApiRefused { .. } => {
                ErrorClass::WorkloadApiUnreachable
            }
            Self::NoSvid { .. } => ErrorClass::NoSvid,
            Self::BrokerUnavailable { .. } => ErrorClass::BrokerUnavailable,
            Self::BrokerIdentity { .. } => ErrorClass::BrokerIdentity,
            Self::Unauthenticated { .. } => ErrorClass::Unauthenticated,
            Self::PermissionDenied { .. } => ErrorClass::PermissionDenied,
            Self::Deadline { .. } => ErrorClass::Deadline,
            Self::InvalidBrokerAddress { .. }
            | Self::InvalidArgument { .. }
            | Self::InvalidRequest { .. } => ErrorClass::InvalidArgument,
            Self::Rejected { .. } | Self::InvalidResponse { .. } => ErrorClass::Rejected,
            Self::Runtime { .. } | Self::TlsConfig { .. } => ErrorClass::Local,
        }
    }

    /// The error and its causes on one line (`a: b: c`), control characters replaced; a cause
    /// whose text the previous one already ended with is not repeated.
    pub fn one_line(&self) -> String {
        sanitize(&ErrorChain::new(self).to_string(), usize::MAX)
    }
}

/// Replaces control characters with spaces and cuts at `max` bytes (on a char boundary).
pub(crate) fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        if out.len() + c.len_utf8() > max {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_has_no_newlines_and_keeps_causes() {
        let e = ClientError::PermissionDenied {
            reason: sanitize("no rule\nallows", 100),
        };
        assert_eq!(
            e.one_line(),
            "the broker denied the request: no rule allows"
        );
        assert_eq!(e.class(), ErrorClass::PermissionDenied);
        assert_eq!(e.class().to_string(), "permission denied");

        let e = ClientError::WorkloadApiUnreachable {
            source: WorkloadSourceError::NoEndpoint,
        };
        assert_eq!(
            e.one_line(),
            "workload api unreachable: no workload api endpoint configured and SPIFFE_ENDPOINT_SOCKET is not set"
        );
    }

    #[test]
    fn sanitize_cuts_long_reasons() {
        assert_eq!(sanitize("abcdef", 3), "abc…");
        assert_eq!(sanitize("abc", 3), "abc");
        assert_eq!(sanitize("a\tb", 10), "a b");
    }
}
