//! A client for svid-broker's `Exchange` API: the caller's SPIFFE identity, fetched from the
//! Workload API, goes in; a registry access token or a registry login credential comes out.
//!
//! - **Identity**: the caller's X.509-SVID as the TLS client certificate (mTLS), or, with
//!   [`AuthMethod::JwtSvid`], a JWT-SVID for the broker's audience sent as
//!   `authorization: Bearer`. Both come from the Workload API named by
//!   [`ClientOptions::workload_api`] or `SPIFFE_ENDPOINT_SOCKET`.
//! - **Broker authentication**: TLS 1.3 only; the broker's certificate is verified as an
//!   X.509-SVID against the Workload API's bundles and must satisfy [`ClientOptions::broker_id`]
//!   (host names play no part).
//! - **One deadline** ([`ClientOptions::deadline`], default [`DEFAULT_DEADLINE`]) bounds every
//!   step of a call: Workload API, JWT-SVID, connect, `Exchange`, backoff.
//! - **Retries** with exponential backoff and jitter happen only for an unavailable broker
//!   (connection refused or reset, gRPC `UNAVAILABLE`), and only while the next attempt still
//!   fits in the deadline.
//! - **Errors** ([`ClientError`]) say which step failed; [`ClientError::class`] gives the coarse
//!   class (Workload API unreachable, no SVID, broker unavailable, permission denied, deadline,
//!   invalid argument, ...). No message contains a secret.
//! - **Secrets** are [`SecretString`]s (the workspace's one secret type, re-exported with
//!   [`ExposeSecret`]): zeroized on drop, redacted in `Debug`, no `Display`.
//! - [`blocking`] wraps it all in a current-thread runtime for one-shot programs.
//!
//! Each [`BrokerClient::exchange`] opens a fresh connection with the SVID current at that
//! moment, so a rotated SVID is always the one presented.
//!
//! # Example
//! ```no_run
//! use std::time::Duration;
//! use svid_broker_client::{BrokerClient, ClientOptions, ExchangeParams};
//! use svid_broker_identity::SpiffeId;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let broker_id = SpiffeId::parse("spiffe://example.org/svid-broker")?;
//! let options = ClientOptions::new("broker.example.org:8443", broker_id)
//!     .workload_api("unix:///run/spire/agent.sock")
//!     .deadline(Duration::from_secs(5));
//! let client = BrokerClient::connect(options).await?;
//! let credential = client
//!     .exchange(&ExchangeParams::login_credential("registry.example.org"))
//!     .await?;
//! println!("user {} until {:?}", credential.username, credential.expires_at);
//! // credential.secret.expose_secret() is the password; never log it.
//! # Ok(()) }
//! ```
//!
//! A runnable program: `examples/exchange_client.rs` in the repository (`cargo run -p
//! svid-broker-examples --example exchange_client`).
//!
//! Runnable example: `examples/error_classes.rs` in this crate
//! (`cargo run -p svid-broker-client --example error_classes`); the crate's `README.md` sums up
//! what a caller may rely on.

pub mod blocking;
mod error;
pub mod transport;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use svid_broker_identity::SpiffeId;
use svid_broker_identity::authorize::Authorizer;
use svid_broker_identity::bundle::BundleProvider;
use svid_broker_identity::limits::{
    MAX_CREDENTIAL_LEN, MAX_SCOPE_PARAM_LEN, MAX_SCOPE_PARAMS, MAX_SERVICE_LEN,
    MAX_SUBJECT_TOKEN_LEN,
};
use svid_broker_identity::report::ErrorChain;
use svid_broker_proto::exchange as proto;
use svid_broker_proto::exchange::token_exchange_client::TokenExchangeClient;
use svid_broker_sources::WorkloadApiSource;
use svid_broker_sources::workload::{WorkloadApiOptions, WorkloadSourceError};
use tokio::time::Instant;
use tonic::metadata::MetadataValue;

pub use error::{ClientError, ErrorClass, RequestRule, ResponseRule, Step};
pub use svid_broker_identity::secret::{ExposeSecret, SecretString};
pub use transport::{SERVER_NAME, client_tls_config};

/// Default overall deadline of one call.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// Largest response message the client decodes, in bytes.
pub const MAX_RESPONSE_SIZE: usize = 64 * 1024;
/// Longest broker reason kept in an error, in bytes.
pub const MAX_REASON_LEN: usize = 256;

/// How the caller proves its identity to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// The X.509-SVID as the TLS client certificate.
    X509Svid,
    /// A JWT-SVID for `audience` (the broker's configured audience) as a bearer token, no
    /// client certificate.
    JwtSvid {
        /// The broker's JWT-SVID audience.
        audience: String,
    },
}

/// Retry schedule for an unavailable broker: `initial`, doubled per attempt up to `max`, with
/// up to 25 % jitter, for at most `max_attempts` attempts in all, never past the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Wait after the first failed attempt, before jitter; each later wait doubles, up to `max`.
    pub initial: Duration,
    /// Longest wait between two attempts, before jitter.
    pub max: Duration,
    /// Most attempts, including the first (at least 1).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            max_attempts: 5,
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Sets the backoff bounds.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial = initial;
        self.max = max.max(initial);
        self
    }

    /// Sets the attempt cap (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The wait before attempt `attempt + 1` (after `attempt` failures, 1-based), without jitter.
    fn base_delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Where the broker is, who it must be, how we authenticate, and the bounds of each call.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// `host:port` of the broker's gRPC listener.
    pub broker: String,
    /// Who the broker's X.509-SVID must name.
    pub broker_id: Authorizer,
    /// How we authenticate. Default [`AuthMethod::X509Svid`].
    pub auth: AuthMethod,
    /// `unix:///path` or `tcp://ip:port`; `None` reads `SPIFFE_ENDPOINT_SOCKET`.
    pub workload_api: Option<String>,
    /// Overall deadline of each call (and of [`BrokerClient::connect`]).
    pub deadline: Duration,
    /// Retry schedule for an unavailable broker.
    pub retry: RetryPolicy,
    /// The bundles that verify the broker's certificate; `None` = the Workload API's bundles
    /// (which include federated ones under SPIRE). Set it when the broker lives in a trust
    /// domain the Workload API does not federate with.
    pub broker_bundles: Option<Arc<dyn BundleProvider>>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("broker", &self.broker)
            .field("broker_id", &self.broker_id)
            .field("auth", &self.auth)
            .field("workload_api", &self.workload_api)
            .field("deadline", &self.deadline)
            .field("retry", &self.retry)
            .field("broker_bundles", &self.broker_bundles.is_some())
            .finish()
    }
}

impl ClientOptions {
    /// Options for the broker at `broker` (`host:port`) whose SVID must be exactly `broker_id`.
    pub fn new(broker: impl Into<String>, broker_id: SpiffeId) -> Self {
        Self {
            broker: broker.into(),
            broker_id: Authorizer::Exact(broker_id),
            auth: AuthMethod::X509Svid,
            workload_api: None,
            deadline: DEFAULT_DEADLINE,
            retry: RetryPolicy::default(),
            broker_bundles: None,
        }
    }

    /// Verifies the broker's certificate against `bundles` instead of the Workload API's.
    #[must_use]
    pub fn broker_bundles(mut self, bundles: Arc<dyn BundleProvider>) -> Self {
        self.broker_bundles = Some(bundles);
        self
    }

    /// Accepts any broker SVID that `authorizer` allows (for several broker replicas with
    /// distinct IDs).
    #[must_use]
    pub fn broker_authorizer(mut self, authorizer: Authorizer) -> Self {
        self.broker_id = authorizer;
        self
    }

    /// Authenticates with a JWT-SVID for `audience` instead of the X.509-SVID.
    #[must_use]
    pub fn jwt_svid(mut self, audience: impl Into<String>) -> Self {
        self.auth = AuthMethod::JwtSvid {
            audience: audience.into(),
        };
        self
    }

    /// Sets the Workload API endpoint.
    #[must_use]
    pub fn workload_api(mut self, endpoint: impl Into<String>) -> Self {
        self.workload_api = Some(endpoint.into());
        self
    }

    /// Sets the overall deadline.
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets the retry schedule.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

/// What to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialKind {
    /// A registry access token (the JWT the registry verifies) for the scopes asked.
    AccessToken,
    /// A registry login credential (user name and password for the broker's token realm).
    LoginCredential,
}

/// What a subject token is, sent as the request's `subject_token_type` so the broker knows
/// how to verify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectTokenKind {
    /// A Kubernetes service-account token (KEP-4412 credential-provider mode).
    KubernetesServiceAccount,
}

/// A token for another identity that the caller presents as actor (RFC 8693 `subject_token`).
#[derive(Debug, Clone)]
pub struct SubjectToken {
    /// What the token is; sent as the RFC 8693 `subject_token_type`, and decides how the
    /// broker validates it.
    pub kind: SubjectTokenKind,
    /// The token as the caller received it (for a service-account token, the JWT the kubelet
    /// passed in). Sent as `subject_token`; never logged.
    pub token: SecretString,
}

impl SubjectToken {
    /// A Kubernetes service-account token.
    pub fn kubernetes_service_account(token: SecretString) -> Self {
        Self {
            kind: SubjectTokenKind::KubernetesServiceAccount,
            token,
        }
    }
}

/// One `Exchange` request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExchangeParams {
    /// Which credential to ask for (RFC 8693 `requested_token_type`).
    pub kind: CredentialKind,
    /// The registry's `service` name as the broker's policy knows it (RFC 8693 `audience`); it
    /// becomes the token's `aud`. At most [`svid_broker_identity::limits::MAX_SERVICE_LEN`]
    /// bytes, checked before anything is sent.
    pub audience: String,
    /// Distribution scopes (`repository:team/app:pull`). Required for access tokens; for
    /// login credentials a ceiling (empty = whatever policy allows).
    pub scopes: Vec<String>,
    /// A subject token to act for; `None` = the caller's own SVID is the subject.
    pub subject_token: Option<SubjectToken>,
}

impl ExchangeParams {
    /// A login credential for the registry `audience`, no ceiling.
    pub fn login_credential(audience: impl Into<String>) -> Self {
        Self {
            kind: CredentialKind::LoginCredential,
            audience: audience.into(),
            scopes: Vec::new(),
            subject_token: None,
        }
    }

    /// An access token for the registry `audience` and `scopes`.
    pub fn access_token(
        audience: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            kind: CredentialKind::AccessToken,
            audience: audience.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
            subject_token: None,
        }
    }

    /// Sets the scopes (a ceiling, for login credentials).
    #[must_use]
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Acts for the subject of `token`.
    #[must_use]
    pub fn subject_token(mut self, token: SubjectToken) -> Self {
        self.subject_token = Some(token);
        self
    }

    fn check(&self) -> Result<(), ClientError> {
        let fail = |rule| Err(ClientError::InvalidRequest { rule });
        if self.audience.is_empty() {
            return fail(RequestRule::EmptyAudience);
        }
        if self.audience.len() > MAX_SERVICE_LEN {
            return fail(RequestRule::AudienceTooLong);
        }
        if self.scopes.len() > MAX_SCOPE_PARAMS
            || self.scopes.iter().any(|s| s.len() > MAX_SCOPE_PARAM_LEN)
        {
            return fail(RequestRule::TooManyScopes);
        }
        if self.kind == CredentialKind::AccessToken && self.scopes.is_empty() {
            return fail(RequestRule::NoScope);
        }
        if let Some(subject) = &self.subject_token
            && (subject.token.expose_secret().is_empty()
                || subject.token.expose_secret().len() > MAX_SUBJECT_TOKEN_LEN)
        {
            return fail(RequestRule::SubjectTokenSize);
        }
        Ok(())
    }

    /// The wire message. It holds the subject token, so it is built right before sending.
    pub(crate) fn to_proto(&self) -> proto::ExchangeRequest {
        let requested = match self.kind {
            CredentialKind::AccessToken => proto::TokenType::RegistryAccessToken,
            CredentialKind::LoginCredential => proto::TokenType::RegistryLoginCredential,
        };
        let (subject_token, subject_token_type) = match &self.subject_token {
            Some(s) => (
                s.token.expose_secret().to_owned(),
                match s.kind {
                    SubjectTokenKind::KubernetesServiceAccount => {
                        proto::SubjectTokenType::KubernetesServiceAccount
                    }
                },
            ),
            None => (String::new(), proto::SubjectTokenType::Unspecified),
        };
        proto::ExchangeRequest {
            requested_token_type: requested.into(),
            audience: self.audience.clone(),
            scope: self.scopes.clone(),
            subject_token,
            subject_token_type: subject_token_type.into(),
        }
    }
}

/// What the broker issued.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Credential {
    /// Which credential this is: the kind the request asked for.
    pub kind: CredentialKind,
    /// The user name (login credentials; empty for access tokens).
    pub username: String,
    /// The access token, or the login credential's password.
    pub secret: SecretString,
    /// When it expires, as the broker's `expires_at` said (whole Unix seconds, after the epoch).
    pub expires_at: SystemTime,
    /// What was granted (access tokens), or the ceiling (login credentials).
    pub scopes: Vec<String>,
    /// The SPIFFE ID it was issued to (the subject, not the actor), as the broker sent it.
    pub subject: String,
}

impl Credential {
    /// A credential from its parts (for caches and tests); no scopes, no subject.
    pub fn new(
        kind: CredentialKind,
        username: String,
        secret: SecretString,
        expires_at: SystemTime,
    ) -> Self {
        Self {
            kind,
            username,
            secret,
            expires_at,
            scopes: Vec::new(),
            subject: String::new(),
        }
    }

    /// Time left until expiry at `now` (zero once expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.expires_at.duration_since(now).unwrap_or_default()
    }

    fn from_proto(
        kind: CredentialKind,
        mut response: proto::ExchangeResponse,
    ) -> Result<Self, ClientError> {
        let fail = |rule| Err(ClientError::InvalidResponse { rule });
        let token = SecretString::from(std::mem::take(&mut response.access_token));
        if token.expose_secret().is_empty() {
            return fail(ResponseRule::EmptyToken);
        }
        if token.expose_secret().len() > MAX_CREDENTIAL_LEN {
            return fail(ResponseRule::TokenTooLong);
        }
        if kind == CredentialKind::LoginCredential && response.username.is_empty() {
            return fail(ResponseRule::NoUsername);
        }
        let Ok(secs) = u64::try_from(response.expires_at) else {
            return fail(ResponseRule::NoExpiry);
        };
        if secs == 0 {
            return fail(ResponseRule::NoExpiry);
        }
        Ok(Self {
            kind,
            username: response.username,
            secret: token,
            expires_at: UNIX_EPOCH + Duration::from_secs(secs),
            scopes: response.scope,
            subject: response.subject,
        })
    }
}

/// A connected client: the Workload API source stays open (its SVIDs and bundles follow
/// rotation); each [`exchange`](Self::exchange) connects to the broker anew.
pub struct BrokerClient {
    options: ClientOptions,
    source: Arc<WorkloadApiSource>,
}

impl std::fmt::Debug for BrokerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerClient")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl BrokerClient {
    /// Connects to the Workload API (bounded by the deadline) and waits for its first SVID and
    /// bundles.
    ///
    /// # Errors
    /// [`ClientError::WorkloadApiUnreachable`], [`ClientError::NoSvid`], or
    /// [`ClientError::Deadline`] with [`Step::WorkloadApi`].
    pub async fn connect(options: ClientOptions) -> Result<Self, ClientError> {
        let deadline = Instant::now() + options.deadline;
        Box::pin(Self::connect_until(options, deadline)).await
    }

    async fn connect_until(options: ClientOptions, deadline: Instant) -> Result<Self, ClientError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        // Leave part of the budget for the source's diagnosis of a timed-out sync, so a dead
        // agent is reported as unreachable rather than as a bare deadline.
        let reserve = (remaining / 4).min(Duration::from_secs(1));
        let mut workload = WorkloadApiOptions::default()
            .initial_sync_timeout(remaining.saturating_sub(reserve))
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500));
        if let Some(endpoint) = &options.workload_api {
            workload = workload.endpoint(endpoint.clone());
        }
        probe_unix_endpoint(options.workload_api.as_deref()).await?;
        let source = within(
            deadline,
            options.deadline,
            Step::WorkloadApi,
            Box::pin(WorkloadApiSource::connect(workload)),
        )
        .await?
        .map_err(classify_workload)?;
        Ok(Self {
            options,
            source: Arc::new(source),
        })
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Our current SPIFFE ID (from the X.509-SVID).
    ///
    /// # Errors
    /// [`ClientError::NoSvid`] when the Workload API has withdrawn it.
    pub fn spiffe_id(&self) -> Result<SpiffeId, ClientError> {
        let svid = self
            .source
            .x509_svid()
            .map_err(|source| ClientError::NoSvid { source })?;
        Ok(svid.spiffe_id().clone())
    }

    /// Exchanges our identity (or `params.subject_token`, with us as actor) for a credential,
    /// within the overall deadline.
    ///
    /// # Errors
    /// See [`ClientError`]; [`ClientError::class`] says which kind of failure it is.
    pub async fn exchange(&self, params: &ExchangeParams) -> Result<Credential, ClientError> {
        let deadline = Instant::now() + self.options.deadline;
        self.exchange_until(params, deadline).await
    }

    async fn exchange_until(
        &self,
        params: &ExchangeParams,
        deadline: Instant,
    ) -> Result<Credential, ClientError> {
        params.check()?;
        let total = self.options.deadline;
        let bundles: Arc<dyn BundleProvider> = match &self.options.broker_bundles {
            Some(b) => Arc::clone(b),
            None => self.source.clone(),
        };
        let (identity, bearer) = match &self.options.auth {
            AuthMethod::X509Svid => {
                let svid = self
                    .source
                    .x509_svid()
                    .map_err(|source| ClientError::NoSvid { source })?;
                let identity = (svid.chain().to_vec(), svid.private_key().to_rustls());
                (Some(identity), None)
            }
            AuthMethod::JwtSvid { audience } => {
                let jwt = within(
                    deadline,
                    total,
                    Step::FetchJwtSvid,
                    self.source.fetch_jwt_svid(std::slice::from_ref(audience)),
                )
                .await?
                .map_err(classify_workload)?;
                let mut value = MetadataValue::try_from(format!("Bearer {}", jwt.expose_secret()))
                    .map_err(|_| ClientError::InvalidRequest {
                        rule: RequestRule::BearerNotHeaderText,
                    })?;
                // Keeps the token out of HPACK's dynamic table.
                value.set_sensitive(true);
                (None, Some(value))
            }
        };
        let tls = client_tls_config(bundles, self.options.broker_id.clone(), identity)
            .map_err(|source| ClientError::TlsConfig { source })?;

        let retry = self.options.retry;
        let mut attempt = 0u32;
        let mut earlier: Option<String> = None;
        loop {
            attempt += 1;
            let failure = match self
                .attempt(params, &tls, bearer.as_ref(), deadline, total)
                .await
            {
                Ok(credential) => return Ok(credential),
                // A retry cut off by the deadline would hide why the broker was unavailable
                // (a registry's API timing out, named with its step): report that reason.
                // Only at the deadline itself: a `CANCELLED` earlier (a broker shutting down)
                // is its own answer.
                Err(Attempt::Fatal(e))
                    if cut_off_by_deadline(&e)
                        && earlier.is_some()
                        && deadline.saturating_duration_since(Instant::now())
                            < DEADLINE_CUT_SLACK =>
                {
                    let last = earlier.take().unwrap_or_default();
                    return Err(ClientError::BrokerUnavailable {
                        address: self.options.broker.clone(),
                        attempts: attempt,
                        last: format!("{last} (then the {total:?} deadline passed)"),
                    });
                }
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Unavailable(reason)) => reason,
            };
            earlier = Some(failure.clone());
            let unavailable = || ClientError::BrokerUnavailable {
                address: self.options.broker.clone(),
                attempts: attempt,
                last: failure.clone(),
            };
            if attempt >= retry.max_attempts {
                return Err(unavailable());
            }
            let delay = with_jitter(retry.base_delay(attempt));
            if Instant::now() + delay >= deadline {
                return Err(unavailable());
            }
            tracing::debug!(attempt, ?delay, reason = %failure, "broker unavailable, retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        params: &ExchangeParams,
        tls: &Arc<rustls::ClientConfig>,
        bearer: Option<&MetadataValue<tonic::metadata::Ascii>>,
        deadline: Instant,
        total: Duration,
    ) -> Result<Credential, Attempt> {
        let addr = within(
            deadline,
            total,
            Step::Connect,
            resolve(&self.options.broker),
        )
        .await
        .map_err(Attempt::Fatal)??;
        let channel = within(
            deadline,
            total,
            Step::Connect,
            transport::connect(addr, Arc::clone(tls)),
        )
        .await
        .map_err(Attempt::Fatal)?
        .map_err(|e| match transport::find_tls_error(&e) {
            Some(source) => Attempt::Fatal(ClientError::BrokerIdentity {
                address: self.options.broker.clone(),
                source,
            }),
            None => Attempt::Unavailable(error::sanitize(
                &ErrorChain::new(&e).to_string(),
                MAX_REASON_LEN,
            )),
        })?;
        let mut client =
            TokenExchangeClient::new(channel).max_decoding_message_size(MAX_RESPONSE_SIZE);
        let mut request = tonic::Request::new(params.to_proto());
        request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        if let Some(value) = bearer {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        let response = within(deadline, total, Step::Exchange, client.exchange(request))
            .await
            .map_err(Attempt::Fatal)?;
        match response {
            Ok(response) => {
                Credential::from_proto(params.kind, response.into_inner()).map_err(Attempt::Fatal)
            }
            Err(status) => Err(classify_status(&status, &self.options.broker, total)),
        }
    }
}

/// One attempt's failure: retry or give up.
enum Attempt {
    Unavailable(String),
    Fatal(ClientError),
}

impl From<ClientError> for Attempt {
    fn from(e: ClientError) -> Self {
        Self::Fatal(e)
    }
}

/// Connects to the Workload API and exchanges once, all within one deadline: the usual call of a
/// one-shot program.
///
/// # Errors
/// As [`BrokerClient::connect`] and [`BrokerClient::exchange`].
pub async fn exchange_once(
    options: ClientOptions,
    params: &ExchangeParams,
) -> Result<Credential, ClientError> {
    let deadline = Instant::now() + options.deadline;
    params.check()?;
    let client = Box::pin(BrokerClient::connect_until(options, deadline)).await?;
    client.exchange_until(params, deadline).await
}

/// A Unix-socket agent that is down leaves its socket file behind, and the Workload API client
/// would retry a refused connection until its sync timeout; one plain connect tells at once.
/// Anything but "refused" is left to the source, which classifies it.
async fn probe_unix_endpoint(configured: Option<&str>) -> Result<(), ClientError> {
    let endpoint = match configured {
        Some(e) => e.to_owned(),
        None => match std::env::var(svid_broker_sources::workload::ENDPOINT_ENV) {
            Ok(e) => e,
            Err(_) => return Ok(()),
        },
    };
    let Some(path) = endpoint.strip_prefix("unix://") else {
        return Ok(());
    };
    match tokio::net::UnixStream::connect(path).await {
        Err(source) if source.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(ClientError::WorkloadApiRefused { endpoint, source })
        }
        _ => Ok(()),
    }
}

/// Runs `fut` until `deadline`; the error names `step`.
async fn within<T>(
    deadline: Instant,
    total: Duration,
    step: Step,
    fut: impl Future<Output = T>,
) -> Result<T, ClientError> {
    tokio::time::timeout_at(deadline, fut)
        .await
        .map_err(|_| ClientError::Deadline {
            step,
            deadline: total,
        })
}

async fn resolve(address: &str) -> Result<SocketAddr, Attempt> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let invalid = || {
        Attempt::Fatal(ClientError::InvalidBrokerAddress {
            address: address.to_owned(),
        })
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(invalid());
    }
    // A name that does not resolve (yet) is treated like a broker that is not up (yet).
    match tokio::net::lookup_host(address).await {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| Attempt::Unavailable(format!("{host} resolves to no address"))),
        Err(e) => Err(Attempt::Unavailable(format!("cannot resolve {host}: {e}"))),
    }
}

fn classify_workload(e: WorkloadSourceError) -> ClientError {
    match e {
        WorkloadSourceError::NoIdentityIssued | WorkloadSourceError::X509 { .. } => {
            ClientError::NoSvid { source: e }
        }
        WorkloadSourceError::NoEndpoint
        | WorkloadSourceError::InvalidEndpoint { .. }
        | WorkloadSourceError::SocketMissing { .. }
        | WorkloadSourceError::Unreachable { .. }
        | WorkloadSourceError::Rejected { .. }
        | WorkloadSourceError::InitialSyncTimeout { .. }
        | WorkloadSourceError::Jwt { .. }
        | WorkloadSourceError::InvalidId { .. }
        | WorkloadSourceError::InvalidBundle { .. } => {
            ClientError::WorkloadApiUnreachable { source: e }
        }
        // The enum is `#[non_exhaustive]` in another crate, so a wildcard is required; every
        // variant known today is listed above, and a new one is a Workload API failure too.
        _ => ClientError::WorkloadApiUnreachable { source: e },
    }
}

fn classify_status(status: &tonic::Status, broker: &str, total: Duration) -> Attempt {
    if let Some(source) = transport::find_tls_error(status) {
        return Attempt::Fatal(ClientError::BrokerIdentity {
            address: broker.to_owned(),
            source,
        });
    }
    let reason = error::sanitize(status.message(), MAX_REASON_LEN);
    Attempt::Fatal(match status.code() {
        tonic::Code::Unavailable => {
            let text = if reason.is_empty() {
                "unavailable".to_owned()
            } else {
                reason
            };
            return Attempt::Unavailable(text);
        }
        tonic::Code::PermissionDenied => ClientError::PermissionDenied { reason },
        tonic::Code::Unauthenticated => ClientError::Unauthenticated { reason },
        tonic::Code::InvalidArgument => ClientError::InvalidArgument { reason },
        tonic::Code::DeadlineExceeded => ClientError::Deadline {
            step: Step::Exchange,
            deadline: total,
        },
        code => ClientError::Rejected { code, reason },
    })
}

/// How near the deadline an attempt's `CANCELLED` or `DEADLINE_EXCEEDED` must come to be taken
/// for the deadline cutting it off (the broker enforces the same `grpc-timeout`).
const DEADLINE_CUT_SLACK: Duration = Duration::from_millis(250);

/// Whether an attempt ended because the call's deadline passed: the client's own timer, or the
/// broker answering `DEADLINE_EXCEEDED` or `CANCELLED` to the request's `grpc-timeout`.
fn cut_off_by_deadline(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Deadline { .. }
            | ClientError::Rejected {
                code: tonic::Code::Cancelled | tonic::Code::DeadlineExceeded,
                ..
            }
    )
}

/// Adds up to 25 % random jitter, so a fleet of one-shot clients does not retry in lockstep.
fn with_jitter(delay: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let fraction = match aws_lc_rs::rand::fill(&mut byte) {
        Ok(()) => f64::from(byte[0]) / 255.0 * 0.25,
        Err(_) => 0.0,
    };
    delay.mul_f64(1.0 + fraction)
}
