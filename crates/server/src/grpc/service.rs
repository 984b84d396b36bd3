//! The `svid_broker.v1.TokenExchange` service: proto in, engine call, proto out.
//!
//! Everything protocol-specific happens in three functions, so the engine never sees proto
//! types and the client never sees an internal error: `convert` (request → the engine's
//! checked request), `response` ([`Exchanged`] → response) and `status` ([`ExchangeError`] →
//! `Status`).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use svid_broker_identity::clock::Clock;
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_policy::scope::{MAX_SCOPE_PARAM_LEN, MAX_SCOPE_PARAMS};
use svid_broker_proto::exchange::token_exchange_server::TokenExchange;
use svid_broker_proto::exchange::{ExchangeRequest, ExchangeResponse, SubjectTokenType, TokenType};
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};

use super::tls::PeerInfo;
use crate::backends::Backends;
use crate::engine::{BackendPass, Begun, Broker, ExchangeOutput, Exchanged};
use crate::error::{AuthFailure, ErrorCode, ExchangeError, InvalidRequest, Unavailability};
use crate::metrics::Route;
use crate::request::{
    Endpoint, ExchangeKind, ExchangeRequest as CheckedRequest, Presented, RequestContext,
};
use crate::satoken::MAX_SA_TOKEN_LEN;

/// Longest `audience` (registry service name) accepted, in bytes: the wire's service limit,
/// owned by [`svid_broker_identity::limits`].
pub use svid_broker_identity::limits::MAX_SERVICE_LEN as MAX_AUDIENCE_LEN;
/// Longest `authorization` metadata value accepted, in bytes. JWT-SVIDs are well under this.
pub const MAX_AUTHORIZATION_LEN: usize = 8 * 1024;
/// `token_type` of an access token response (RFC 8693 §2.2.1).
pub const TOKEN_TYPE_BEARER: &str = "Bearer";
/// `token_type` of a login credential response: not a token for a protected resource
/// (RFC 8693 §2.2.1).
pub const TOKEN_TYPE_NOT_APPLICABLE: &str = "N_A";

/// A request the edge rejects before the engine sees it. `Display` is what the client reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// `requested_token_type` is `TOKEN_TYPE_UNSPECIFIED`.
    #[error("requested_token_type is required")]
    TokenTypeUnspecified,
    /// `requested_token_type` is a number this server does not know.
    #[error("requested_token_type {value} is not known")]
    TokenTypeUnknown {
        /// The value sent (not a variant of the proto enum this server knows).
        value: i32,
    },
    /// `subject_token` was sent without `subject_token_type`.
    #[error("subject_token_type is required with subject_token")]
    SubjectTokenTypeMissing,
    /// `subject_token_type` is a number this server does not know.
    #[error("subject_token_type {value} is not known")]
    SubjectTokenTypeUnknown {
        /// The value sent (not a variant of the proto enum this server knows).
        value: i32,
    },
    /// `subject_token_type` was sent without a `subject_token`.
    #[error("subject_token is required with subject_token_type")]
    SubjectTokenMissing,
    /// `subject_token` is longer than [`MAX_SA_TOKEN_LEN`].
    #[error("subject_token is {len} bytes, more than the {max} allowed")]
    SubjectTokenTooLong {
        /// Its length, in bytes.
        len: usize,
        /// [`MAX_SA_TOKEN_LEN`].
        max: usize,
    },
    /// `audience` is empty.
    #[error("audience (the registry service name) is required")]
    AudienceMissing,
    /// `audience` is longer than [`MAX_AUDIENCE_LEN`].
    #[error("audience is {len} bytes, more than the {max} allowed")]
    AudienceTooLong {
        /// Its length, in bytes.
        len: usize,
        /// [`MAX_AUDIENCE_LEN`].
        max: usize,
    },
    /// An access token was asked for without any `scope`.
    #[error("scope is required for an access token")]
    ScopeMissing,
    /// More `scope` values than [`MAX_SCOPE_PARAMS`].
    #[error("{count} scope values sent, more than the {max} allowed")]
    TooManyScopes {
        /// The number of `scope` values in the request (each may hold several scopes).
        count: usize,
        /// [`MAX_SCOPE_PARAMS`].
        max: usize,
    },
    /// One `scope` value longer than [`MAX_SCOPE_PARAM_LEN`].
    #[error("a scope value is {len} bytes, more than the {max} allowed")]
    ScopeTooLong {
        /// The first over-long value's length, in bytes.
        len: usize,
        /// [`MAX_SCOPE_PARAM_LEN`].
        max: usize,
    },
}

impl RequestError {
    fn code(&self) -> Code {
        Code::InvalidArgument
    }

    /// The same as an engine error, for the metrics and the audit log.
    fn to_exchange_error(&self) -> ExchangeError {
        let what = match self {
            Self::TokenTypeUnspecified => "requested_token_type is required",
            Self::TokenTypeUnknown { .. } => "requested_token_type is not known",
            Self::SubjectTokenTypeMissing => "subject_token_type is required",
            Self::SubjectTokenTypeUnknown { .. } => "subject_token_type is not known",
            Self::SubjectTokenMissing => "subject_token is required with its type",
            Self::SubjectTokenTooLong { .. } => "subject_token is too long",
            Self::AudienceMissing => "audience is required",
            Self::AudienceTooLong { .. } => "audience is too long",
            Self::ScopeMissing => "scope is required for an access token",
            Self::TooManyScopes { .. } => "too many scope values",
            Self::ScopeTooLong { .. } => "a scope value is too long",
        };
        ExchangeError::InvalidArgument {
            reason: InvalidRequest::Malformed { what },
        }
    }
}

/// Serves `Exchange` over a shared [`Broker`].
pub struct ExchangeService {
    broker: Arc<Broker>,
    clock: Arc<dyn Clock>,
    backends: Arc<Backends>,
}

impl ExchangeService {
    /// A service answering with `broker`, reading the time from `clock`, with no registry
    /// backends (a registry of a backend kind is then refused as unavailable).
    pub fn new(broker: Arc<Broker>, clock: Arc<dyn Clock>) -> Self {
        Self::with_backends(broker, clock, Arc::new(Backends::none()))
    }

    /// A service that takes backend grants to `backends`.
    pub fn with_backends(
        broker: Arc<Broker>,
        clock: Arc<dyn Clock>,
        backends: Arc<Backends>,
    ) -> Self {
        Self {
            broker,
            clock,
            backends,
        }
    }
}

impl fmt::Debug for ExchangeService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeService")
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

#[tonic::async_trait]
impl TokenExchange for ExchangeService {
    async fn exchange(
        &self,
        request: Request<ExchangeRequest>,
    ) -> Result<Response<ExchangeResponse>, Status> {
        // Latency is wall time on the monotonic clock, whatever clock the decisions use.
        let start = Instant::now();
        let result = match self.handle(request) {
            Handled::Answered(result) => result,
            Handled::ToBackend(to) => {
                // A task of its own: a call cancelled while the registry's API works (the
                // client's deadline, a reset stream, the server's request timeout) must not
                // drop a decided grant halfway. The backend's answer is always recorded once,
                // and a credential it made is always queued for revocation.
                let broker = self.broker.clone();
                let backends = self.backends.clone();
                let clock = self.clock.clone();
                tokio::spawn(async move {
                    let ToBackend { request, pass } = *to;
                    finish_at_backend(&broker, &backends, clock.as_ref(), &request, pass).await
                })
                .await
                .unwrap_or_else(|_| {
                    Err(Status::unavailable(
                        "the registry backend task ended without an answer (shutting down)",
                    ))
                })
            }
        };
        self.broker
            .metrics()
            .observe(Route::GrpcExchange, start.elapsed());
        result.map(Response::new)
    }
}

impl ExchangeService {
    /// One call up to the registry's API: check the request at this edge, then the engine's
    /// pass (authenticate, decide, issue, record). Sync: every step is CPU-bound and short (a
    /// signature check and a signature); a registry whose own API makes the credential comes
    /// back as [`Handled::ToBackend`].
    fn handle(&self, request: Request<ExchangeRequest>) -> Handled {
        match self.handle_inner(request) {
            Ok(handled) => handled,
            Err(status) => Handled::Answered(Err(status)),
        }
    }

    fn handle_inner(&self, request: Request<ExchangeRequest>) -> Result<Handled, Status> {
        let now = self.clock.now();
        let peer_info = request.extensions().get::<PeerInfo>().cloned();
        let peer = peer_info.as_ref().and_then(PeerInfo::remote_addr);
        let (metadata, _, message) = request.into_parts();

        // The request is checked before the caller: a malformed one is refused the same way
        // whoever sends it, and nothing below runs on unchecked sizes. The engine records (and
        // logs) every refusal, those before authentication in aggregate.
        let (checked, subject_token) = match convert(&message, peer) {
            Ok(converted) => converted,
            Err(refused) => {
                let Refused { context, error } = *refused;
                let (answer, _) =
                    self.broker
                        .refuse_unauthenticated(&context, &error.to_exchange_error(), now);
                return Err(match (&answer, error) {
                    (ExchangeError::PeerLimited { .. }, _) => status(&answer),
                    (_, EdgeError::Wire(error)) => Status::new(error.code(), error.to_string()),
                    (_, EdgeError::Request(_)) => status(&answer),
                });
            }
        };
        // The client certificate, when the handshake carried one (a bearer is then ignored:
        // the certificate is the stronger, channel-bound credential), otherwise the bearer.
        let presented = match peer_info.as_ref().and_then(PeerInfo::peer_chain) {
            Some(chain) => Presented::X509Chain(chain),
            None => match bearer(&metadata) {
                Ok(Some(token)) => Presented::JwtSvid(token),
                Ok(None) => Presented::Nothing,
                Err(reason) => Presented::Unreadable(reason),
            },
        };
        match self
            .broker
            .begin_exchange(&checked, &presented, subject_token, now)
        {
            Ok(Begun::Done(exchanged)) => Ok(Handled::Answered(Ok(response(&exchanged, now)))),
            Ok(Begun::Backend(pass)) => Ok(Handled::ToBackend(Box::new(ToBackend {
                request: checked,
                pass,
            }))),
            Err(error) => Err(status(&error)),
        }
    }
}

/// A backend grant: the registry's API makes the credential (the one await of a call), then
/// the engine records the outcome.
async fn finish_at_backend(
    broker: &Broker,
    backends: &Backends,
    clock: &dyn Clock,
    request: &CheckedRequest,
    pass: BackendPass,
) -> Result<ExchangeResponse, Status> {
    let issued = backends.issue(&pass, clock.now()).await;
    let now = clock.now();
    // A credential made for this call that the caller will not get (its issuance cannot be
    // audited, under `audit_on_error = "deny"`) must not live on unaudited for others.
    let made = issued.as_ref().ok().filter(|c| !c.reused).cloned();
    let registry = pass.grant().registry.name().to_owned();
    let result = broker.finish_exchange(request, pass, issued, now);
    if let (Err(error), Some(credential)) = (&result, made)
        && matches!(
            error,
            ExchangeError::Unavailable {
                reason: Unavailability::Audit(_)
            }
        )
    {
        backends.withdraw(&registry, &credential, now);
    }
    result
        .map(|exchanged| response(&exchanged, now))
        .map_err(|error| status(&error))
}

/// Where the synchronous part of a call ended.
enum Handled {
    /// With the answer.
    Answered(Result<ExchangeResponse, Status>),
    /// With a grant for the registry's backend (boxed: the common answer stays small).
    ToBackend(Box<ToBackend>),
}

/// A grant on its way to the registry's backend.
struct ToBackend {
    /// The checked request (its context is what the outcome is recorded against).
    request: CheckedRequest,
    /// The decided grant; only [`Broker::finish_exchange`] consumes it, recording the outcome.
    pass: BackendPass,
}

/// A request this edge refused, with what can be recorded of it.
#[derive(Debug)]
pub(crate) struct Refused {
    /// What the audit log records.
    pub(crate) context: RequestContext,
    /// Which check at this edge refused it.
    pub(crate) error: EdgeError,
}

/// Why this edge refused a request: the wire form (sizes, enums), or its content (scope
/// grammar).
#[derive(Debug)]
pub(crate) enum EdgeError {
    /// The wire form (sizes, enums, presence): refused with its own message.
    Wire(RequestError),
    /// The content (the scope grammar): refused as the engine would.
    Request(InvalidRequest),
}

impl EdgeError {
    fn to_exchange_error(&self) -> ExchangeError {
        match self {
            Self::Wire(e) => e.to_exchange_error(),
            Self::Request(e) => ExchangeError::from(e.clone()),
        }
    }
}

/// What the audit log records of any request: only what passed the size caps.
fn context_of(message: &ExchangeRequest, peer: Option<SocketAddr>) -> RequestContext {
    let kind = match TokenType::try_from(message.requested_token_type) {
        Ok(TokenType::RegistryLoginCredential) => ExchangeKind::LoginCredential,
        // Unspecified and unknown kinds are refused by `convert`; their refusal is recorded
        // as the default request.
        Ok(TokenType::RegistryAccessToken | TokenType::Unspecified) | Err(_) => {
            ExchangeKind::AccessToken
        }
    };
    let context = RequestContext::new(kind, Endpoint::Grpc, peer);
    let context = if message.audience.len() <= MAX_AUDIENCE_LEN {
        context.with_service(&message.audience)
    } else {
        context
    };
    if message.scope.len() <= MAX_SCOPE_PARAMS
        && message.scope.iter().all(|s| s.len() <= MAX_SCOPE_PARAM_LEN)
    {
        context.with_scopes(&message.scope)
    } else {
        context
    }
}

/// The bearer token of the `authorization` metadata, if there is one.
pub(crate) fn bearer(metadata: &MetadataMap) -> Result<Option<&str>, AuthFailure> {
    let mut values = metadata.get_all("authorization").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() || value.len() > MAX_AUTHORIZATION_LEN {
        return Err(AuthFailure::MalformedAuthorization);
    }
    let value = value
        .to_str()
        .map_err(|_| AuthFailure::MalformedAuthorization)?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(AuthFailure::MalformedAuthorization)?;
    let token = token.trim_start_matches(' ');
    // RFC 9110 §11.1: the scheme is case-insensitive.
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(AuthFailure::MalformedAuthorization);
    }
    Ok(Some(token))
}

/// The one conversion of a proto request into the engine's checked request, with the
/// subject token if there is one. Presence and sizes are checked here, the scope grammar by
/// [`svid_broker_server::ExchangeRequest::parse`](crate::request::ExchangeRequest::parse).
pub(crate) fn convert(
    request: &ExchangeRequest,
    peer: Option<SocketAddr>,
) -> Result<(CheckedRequest, Option<&str>), Box<Refused>> {
    let context = context_of(request, peer);
    let wire = |e| {
        Err(Box::new(Refused {
            context: context.clone(),
            error: EdgeError::Wire(e),
        }))
    };
    match TokenType::try_from(request.requested_token_type) {
        Ok(TokenType::Unspecified) => return wire(RequestError::TokenTypeUnspecified),
        Ok(TokenType::RegistryAccessToken | TokenType::RegistryLoginCredential) => {}
        Err(_) => {
            return wire(RequestError::TokenTypeUnknown {
                value: request.requested_token_type,
            });
        }
    }
    let subject_token = match subject_token(request) {
        Ok(token) => token,
        Err(e) => return wire(e),
    };
    if request.audience.is_empty() {
        return wire(RequestError::AudienceMissing);
    }
    if request.audience.len() > MAX_AUDIENCE_LEN {
        return wire(RequestError::AudienceTooLong {
            len: request.audience.len(),
            max: MAX_AUDIENCE_LEN,
        });
    }
    if request.scope.len() > MAX_SCOPE_PARAMS {
        return wire(RequestError::TooManyScopes {
            count: request.scope.len(),
            max: MAX_SCOPE_PARAMS,
        });
    }
    if let Some(long) = request.scope.iter().find(|s| s.len() > MAX_SCOPE_PARAM_LEN) {
        return wire(RequestError::ScopeTooLong {
            len: long.len(),
            max: MAX_SCOPE_PARAM_LEN,
        });
    }
    if context.kind == ExchangeKind::AccessToken
        && request.scope.iter().all(|s| s.trim().is_empty())
    {
        return wire(RequestError::ScopeMissing);
    }
    // The context moves into the request; a refusal (rare) builds it again.
    match CheckedRequest::parse(context, &request.audience, &request.scope) {
        Ok(checked) => Ok((checked, subject_token)),
        Err(e) => Err(Box::new(Refused {
            context: context_of(request, peer),
            error: EdgeError::Request(e),
        })),
    }
}

/// The subject token of a request, if it carries one, with its type and size checked. Only
/// Kubernetes service-account tokens are known.
pub(crate) fn subject_token(request: &ExchangeRequest) -> Result<Option<&str>, RequestError> {
    let token = request.subject_token.as_str();
    match (
        token.is_empty(),
        SubjectTokenType::try_from(request.subject_token_type),
    ) {
        (true, Ok(SubjectTokenType::Unspecified)) => Ok(None),
        (true, _) => Err(RequestError::SubjectTokenMissing),
        (false, Ok(SubjectTokenType::Unspecified)) => Err(RequestError::SubjectTokenTypeMissing),
        (false, Err(_)) => Err(RequestError::SubjectTokenTypeUnknown {
            value: request.subject_token_type,
        }),
        (false, Ok(SubjectTokenType::KubernetesServiceAccount)) => {
            if token.len() > MAX_SA_TOKEN_LEN {
                return Err(RequestError::SubjectTokenTooLong {
                    len: token.len(),
                    max: MAX_SA_TOKEN_LEN,
                });
            }
            Ok(Some(token))
        }
    }
}

/// The one mapping of an engine result to the proto response.
pub(crate) fn response(exchanged: &Exchanged, now: SystemTime) -> ExchangeResponse {
    let subject = exchanged.subject.spiffe_id().to_string();
    match &exchanged.output {
        ExchangeOutput::AccessToken(t) => ExchangeResponse {
            access_token: t.token.expose_secret().to_owned(),
            issued_token_type: TokenType::RegistryAccessToken.into(),
            token_type: TOKEN_TYPE_BEARER.to_owned(),
            expires_in: seconds_until(t.expires_at, now),
            scope: t.granted.iter().map(ToString::to_string).collect(),
            username: String::new(),
            expires_at: unix_seconds(t.expires_at),
            subject,
        },
        ExchangeOutput::LoginCredential(c) => ExchangeResponse {
            access_token: c.password.expose_secret().to_owned(),
            issued_token_type: TokenType::RegistryLoginCredential.into(),
            token_type: TOKEN_TYPE_NOT_APPLICABLE.to_owned(),
            expires_in: seconds_until(c.expires_at, now),
            scope: c.ceiling.iter().map(ToString::to_string).collect(),
            username: c.username.clone(),
            expires_at: unix_seconds(c.expires_at),
            subject,
        },
        // The registry's own credential, answered as a login credential: the plugin and the
        // credential helper hand out username and password whatever made them, and cache
        // them until `expires_at` (the broker's revocation time) less their safety margin.
        ExchangeOutput::RegistryCredential(c) => ExchangeResponse {
            access_token: c.credential.password.expose_secret().to_owned(),
            issued_token_type: TokenType::RegistryLoginCredential.into(),
            token_type: TOKEN_TYPE_NOT_APPLICABLE.to_owned(),
            expires_in: seconds_until(c.credential.expires_at, now),
            scope: c.granted.iter().map(ToString::to_string).collect(),
            username: c.credential.username.clone(),
            expires_at: unix_seconds(c.credential.expires_at),
            subject,
        },
    }
}

/// The one mapping of an engine error to a gRPC status: the class picks the code, the short
/// `Display` is the message; the source chain stays in the log.
pub(crate) fn status(error: &ExchangeError) -> Status {
    let code = match error.code() {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::Unauthenticated => Code::Unauthenticated,
        ErrorCode::PermissionDenied => Code::PermissionDenied,
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
        ErrorCode::Unavailable => Code::Unavailable,
    };
    Status::new(code, error.to_string())
}

fn seconds_until(at: SystemTime, now: SystemTime) -> i64 {
    at.duration_since(now)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn unix_seconds(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
