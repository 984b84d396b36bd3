//! The broker's one pass. Each request, from either edge, goes through the same steps once:
//!
//! 1. **snapshot**: the current policy, one snapshot for the whole pass;
//! 2. **check**: the request's `service` must name a registry of that policy;
//! 3. **authenticate** what the caller presented ([`crate::authn`]), and, when a trusted actor
//!    presents a service-account token, map it to its subject;
//! 4. **decide** ([`crate::decision`]): the grant, as a value;
//! 5. **issue** through a [`CredentialIssuer`] ([`crate::issue`]);
//! 6. **record** the outcome, once: one audit event per issued credential or refusal, and the
//!    metrics and the log line, in the `engine::record` module (an issuance whose event cannot be written is withheld
//!    under `audit_on_error = "deny"`).
//!
//! Refusals before a subject is authenticated (steps 1 to 3, and the edges' own syntax
//! checks) go through [`Broker::refuse_unauthenticated`]: each is counted, charged to its
//! source address's failed-authentication budget, and audited in aggregate (the first per
//! address and reason in an interval in full, the rest as one summary).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use svid_broker_backends::{BackendCredential, BackendError};
use svid_broker_identity::bundle::BundleProvider;
use svid_broker_identity::jwt::AudienceMatch;
use svid_broker_policy::Policy;
use svid_broker_token::{KeyError, TokenMinter};

use crate::audit::{AuditLog, AuditOnError, AuditSink};
use crate::authn::{Authenticated, Authenticator, Subject};
use crate::credential::{
    CredentialKeys, DEFAULT_LOGIN_CREDENTIAL_TTL, DEFAULT_MAX_SESSION, DEFAULT_REFRESH_TOKEN_TTL,
};
use crate::decision::{Grant, decide};
use crate::error::{BrokerBuildError, ExchangeError, InvalidRequest};
use crate::issue::{
    AccessToken, CredentialIssuer, IssueError, Issued, IssuedRecord, LoginCredential,
    LoginCredentialIssuer, RefreshToken, RefreshTokenIssuer, RegistryCredential,
    RegistryTokenIssuer,
};
use crate::metrics::Metrics;
use crate::request::{ExchangeKind, ExchangeRequest, Presented};
use crate::satoken::ServiceAccountMode;
use crate::throttle::{
    DEFAULT_PREAUTH_AUDIT_INTERVAL, MAX_PREAUTH_TRACKED_IPS, PreauthDenials, RateLimit, RateLimiter,
};
use record::Party;

/// What an `Exchange` issued.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ExchangeOutput {
    /// A registry bearer token signed by the broker's key ring.
    AccessToken(AccessToken),
    /// A broker login credential (`sbl1.` password, SPIFFE ID username) the realm accepts.
    LoginCredential(LoginCredential),
    /// A credential the registry's own API made (a Harbor robot), answered like a login
    /// credential.
    RegistryCredential(RegistryCredential),
}

impl Issued for ExchangeOutput {
    fn record(&self) -> IssuedRecord<'_> {
        match self {
            Self::AccessToken(t) => t.record(),
            Self::LoginCredential(c) => c.record(),
            Self::RegistryCredential(c) => c.record(),
        }
    }
}

/// Where the synchronous pass stopped: with the answer, or, for a registry whose own API
/// makes its credentials, with the decided grant for the caller to take to that API
/// ([`Broker::finish_exchange`] then records the outcome).
///
/// The pass stays synchronous (policy, authentication and the decision never wait on a
/// network); only the registry API call is async, and it lives in the shell that owns a
/// runtime (the gRPC service).
#[derive(Debug)]
#[non_exhaustive]
pub enum Begun {
    /// Issued (or refused) without leaving the broker.
    Done(Exchanged),
    /// Decided; the credential must come from the registry's backend.
    Backend(BackendPass),
}

/// A grant decided for a registry of a backend kind, on its way to the registry's API. Only
/// [`Broker::finish_exchange`] consumes it, so every such grant ends in one recorded outcome.
#[derive(Debug)]
#[must_use = "a decided grant must be finished with Broker::finish_exchange, which records it"]
pub struct BackendPass {
    subject: Subject,
    grant: Grant,
}

impl BackendPass {
    /// The decided grant (registry, granted scopes, lifetime cap).
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The subject the grant is for, with the actor that vouched for it, if any.
    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    /// When the broker revokes what the backend makes: the registry's `token_ttl_seconds`,
    /// shortened by the grant's cap (a service-account token's expiry).
    pub fn revoke_at(&self, now: SystemTime) -> SystemTime {
        now + self.grant.lifetime(self.grant.registry.token_ttl(), now)
    }
}

/// What an `Exchange` call answers: the credential and whom it was issued to (the mapped
/// subject when a trusted actor presented a service-account token).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Exchanged {
    /// Who the credential is for.
    pub subject: Subject,
    /// The credential (its secret is redacted in `Debug`).
    pub output: ExchangeOutput,
}

/// What the token realm answers: a registry token, and a refresh token when one was asked for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RealmTokens {
    /// Who the tokens are for.
    pub subject: Subject,
    /// The registry token (possibly granting nothing: the token spec's clients expect one).
    pub access: AccessToken,
    /// The refresh token, when the request asked for offline access or was a refresh grant.
    pub refresh: Option<RefreshToken>,
}

/// Tunables of the engine (the config file fills them).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BrokerOptions {
    /// The audience JWT-SVIDs presented to the broker must carry.
    pub audience: String,
    /// Lifetime of each login credential before the grant's cap shortens it (config: 60..=3600 s).
    pub login_credential_ttl: Duration,
    /// Lifetime of each refresh token, cut to its session's end (config: 60..=86400 s).
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
    /// The caps of each verified-credential cache (X.509 chains, JWT-SVIDs, login
    /// credentials).
    pub verified_cache: crate::verified_cache::CacheLimits,
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
            verified_cache: crate::verified_cache::CacheLimits::default(),
            audit: AuditSink::Stderr,
            audit_on_error: AuditOnError::Deny,
            service_accounts: None,
        }
    }
}

/// The engine: policy, authentication, issuers and operations, shared behind an `Arc`.
pub struct Broker {
    policy: ArcSwap<Policy>,
    authenticator: Authenticator,
    registry_tokens: RegistryTokenIssuer,
    login_credentials: LoginCredentialIssuer,
    refresh_tokens: RefreshTokenIssuer,
    audience: String,
    audit: AuditLog,
    metrics: Metrics,
    limiter: RateLimiter,
    failed_auth: RateLimiter<IpAddr>,
    preauth: PreauthDenials,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("audience", &self.audience)
            .field("rules", &self.policy.load().rule_count())
            .field("minter", self.registry_tokens.minter())
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
        let keys = Arc::new(credentials);
        let authenticator = Authenticator::new(
            bundles,
            &options.audience,
            options.audience_policy,
            keys.clone(),
            options.max_session,
            options.service_accounts,
            options.verified_cache,
        )?;
        Ok(Self {
            policy: ArcSwap::from_pointee(policy),
            authenticator,
            registry_tokens: RegistryTokenIssuer::new(minter, options.cache),
            login_credentials: LoginCredentialIssuer::new(
                keys.clone(),
                options.login_credential_ttl,
            ),
            refresh_tokens: RefreshTokenIssuer::new(
                keys,
                options.refresh_token_ttl,
                options.max_session,
            ),
            audience: options.audience,
            audit: AuditLog::new(options.audit, options.audit_on_error),
            failed_auth: RateLimiter::with_max_keys(
                options.failed_auth_limit,
                MAX_PREAUTH_TRACKED_IPS,
            ),
            preauth: PreauthDenials::new(options.preauth_audit_interval),
            limiter: RateLimiter::new(options.rate_limit),
            metrics: Metrics::default(),
        })
    }

    /// The policy in force, as a snapshot: a later [`Self::replace_policy`] does not change it.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Installs a new policy (already validated); drops cached tokens so the new grants apply
    /// at once.
    pub fn replace_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
        self.registry_tokens.clear_cache();
    }

    /// This engine's counters and histograms (fixed labels, never caller input).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The token minter (key ring, JWKS, CA bundle).
    pub fn minter(&self) -> &TokenMinter {
        self.registry_tokens.minter()
    }

    /// The trust bundles given to [`Self::new`], which every presented SVID is checked against.
    pub fn bundles(&self) -> &Arc<dyn BundleProvider> {
        self.authenticator.bundles()
    }

    /// The authenticator (for callers that check a proof without asking for a credential).
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// The configured `aud` value ([`BrokerOptions::audience`]), matched per `audience_policy`.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Issues a new signing leaf now (the old one stays published as the previous leaf).
    ///
    /// # Errors
    /// The key ring's error; the current leaf stays in place.
    pub fn rotate_signing_key(&self, now: SystemTime) -> Result<(), KeyError> {
        self.minter().key_ring().rotate(now)?;
        self.registry_tokens.clear_cache();
        self.metrics.key_rotated();
        Ok(())
    }

    /// Rotates the signing leaf if due; returns whether it did.
    ///
    /// # Errors
    /// The key ring's error.
    pub fn rotate_signing_key_if_due(&self, now: SystemTime) -> Result<bool, KeyError> {
        let rotated = self.minter().key_ring().rotate_if_due(now)?;
        if rotated {
            self.registry_tokens.clear_cache();
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
                self.bundles().clone(),
            ),
        )
    }

    /// gRPC `Exchange`: the whole pass for `request`, with what the caller `presented` and,
    /// when it vouches for someone else, a service-account `subject_token`. For a registry
    /// whose own API makes its credentials, use [`Self::begin_exchange`]: this synchronous
    /// call refuses such registries (recorded, as any refusal).
    ///
    /// # Errors
    /// See [`ExchangeError`]. An access token whose scopes are all refused is
    /// [`crate::Denial::EmptyGrant`] here (at the realm it is an empty token).
    pub fn exchange(
        &self,
        request: &ExchangeRequest,
        presented: &Presented<'_>,
        subject_token: Option<&str>,
        now: SystemTime,
    ) -> Result<Exchanged, ExchangeError> {
        let begun = self.begin_exchange(request, presented, subject_token, now)?;
        self.done_or_refuse(request, begun, now)
    }

    /// The pass up to the registry's API: the answer for a broker-signed registry, or the
    /// decided grant for one whose own API makes its credentials.
    ///
    /// # Errors
    /// See [`Self::exchange`].
    pub fn begin_exchange(
        &self,
        request: &ExchangeRequest,
        presented: &Presented<'_>,
        subject_token: Option<&str>,
        now: SystemTime,
    ) -> Result<Begun, ExchangeError> {
        // One policy snapshot for the whole pass, so a reload in between cannot make step 2
        // and step 4 see different registries.
        let policy = self.policy.load_full();
        let authenticated = self.authenticate(&policy, request, presented, now)?;
        let subject = match subject_token {
            None => Subject {
                authenticated,
                on_behalf: None,
            },
            Some(token) => self
                .authenticator
                .on_behalf_of(&authenticated.caller, token, now)
                .inspect_err(|err| {
                    self.record_refusal(
                        &request.context,
                        Party::Actor(&authenticated.caller),
                        err,
                        now,
                    );
                })?,
        };
        self.exchange_on(&policy, &subject, request, now)
    }

    /// The pass from step 4 on, for a subject authenticated by the caller (an embedder that
    /// checked the proof itself, or tests).
    ///
    /// # Errors
    /// See [`Self::exchange`].
    pub fn exchange_for(
        &self,
        subject: &Subject,
        request: &ExchangeRequest,
        now: SystemTime,
    ) -> Result<Exchanged, ExchangeError> {
        let begun = self.begin_exchange_for(subject, request, now)?;
        self.done_or_refuse(request, begun, now)
    }

    /// [`Self::begin_exchange`] from step 4 on, for a subject authenticated by the caller.
    ///
    /// # Errors
    /// See [`Self::exchange`].
    pub fn begin_exchange_for(
        &self,
        subject: &Subject,
        request: &ExchangeRequest,
        now: SystemTime,
    ) -> Result<Begun, ExchangeError> {
        self.exchange_on(&self.policy.load_full(), subject, request, now)
    }

    /// Step 5 and 6 for a backend grant: `issued` is what the registry's API answered (the
    /// caller's async shell asked it), recorded here once like every other outcome.
    ///
    /// # Errors
    /// The backend's failure, named by registry and step; or the audit failing under
    /// `audit_on_error = "deny"` (the credential is then withheld; the backend revokes it at
    /// its time as always).
    pub fn finish_exchange(
        &self,
        request: &ExchangeRequest,
        pass: BackendPass,
        issued: Result<BackendCredential, BackendError>,
        now: SystemTime,
    ) -> Result<Exchanged, ExchangeError> {
        let BackendPass { subject, grant } = pass;
        let result = issued
            .map(|credential| RegistryCredential {
                backend: grant.registry.kind(),
                credential,
                granted: grant.granted.clone(),
            })
            .map_err(|e| ExchangeError::from(IssueError::Backend(Arc::new(e))));
        let credential = self.record(&request.context, &subject, result, now)?;
        Ok(Exchanged {
            subject,
            output: ExchangeOutput::RegistryCredential(credential),
        })
    }

    /// The synchronous entry points end here: a backend grant cannot be finished without a
    /// runtime, so it is refused, and recorded as refused.
    fn done_or_refuse(
        &self,
        request: &ExchangeRequest,
        begun: Begun,
        now: SystemTime,
    ) -> Result<Exchanged, ExchangeError> {
        match begun {
            Begun::Done(exchanged) => Ok(exchanged),
            Begun::Backend(pass) => {
                let err = ExchangeError::from(InvalidRequest::NeedsBackend {
                    registry: pass.grant.registry.name().to_owned(),
                });
                Err(self.record_failure(&request.context, &pass.subject, err, now))
            }
        }
    }

    fn exchange_on(
        &self,
        policy: &Policy,
        subject: &Subject,
        request: &ExchangeRequest,
        now: SystemTime,
    ) -> Result<Begun, ExchangeError> {
        let result = match request.context.kind {
            ExchangeKind::AccessToken => self
                .decide_and_issue(policy, subject, request, &self.registry_tokens, now)
                .map(|(_, t)| ExchangeOutput::AccessToken(t)),
            // With no scope, `decide` grants a Nexus or Artifactory registry's backend pull
            // and push on every repository as policy allows (its credentials reach them all),
            // and refuses a per-project kind (there is no project to make a credential in).
            ExchangeKind::LoginCredential => {
                match decide(policy, subject, request, &self.limiter, now) {
                    Ok(grant) if !grant.registry.kind().is_broker_signed() => {
                        return Ok(Begun::Backend(BackendPass {
                            subject: subject.clone(),
                            grant,
                        }));
                    }
                    Ok(grant) => self
                        .login_credentials
                        .issue(&grant, now)
                        .map(ExchangeOutput::LoginCredential)
                        .map_err(ExchangeError::from),
                    Err(err) => Err(err),
                }
            }
        };
        let output = self.record(&request.context, subject, result, now)?;
        Ok(Begun::Done(Exchanged {
            subject: subject.clone(),
            output,
        }))
    }

    /// The token realm (`GET`/`POST /token`): the whole pass for a registry token and, when
    /// `request.refresh_token`, a refresh token in the caller's session.
    ///
    /// # Errors
    /// See [`ExchangeError`].
    pub fn realm_token(
        &self,
        request: &ExchangeRequest,
        presented: &Presented<'_>,
        now: SystemTime,
    ) -> Result<RealmTokens, ExchangeError> {
        let policy = self.policy.load_full();
        let subject = Subject {
            authenticated: self.authenticate(&policy, request, presented, now)?,
            on_behalf: None,
        };
        self.realm_token_on(&policy, &subject, request, now)
    }

    /// [`Self::realm_token`] from step 4 on, for a subject authenticated by the caller.
    ///
    /// # Errors
    /// See [`ExchangeError`].
    pub fn realm_token_for(
        &self,
        subject: &Subject,
        request: &ExchangeRequest,
        now: SystemTime,
    ) -> Result<RealmTokens, ExchangeError> {
        self.realm_token_on(&self.policy.load_full(), subject, request, now)
    }

    /// Both credentials are issued before either is recorded: when the refresh token cannot
    /// be issued (its session is over), the request is refused as a whole and no access token
    /// is minted.
    fn realm_token_on(
        &self,
        policy: &Policy,
        subject: &Subject,
        request: &ExchangeRequest,
        now: SystemTime,
    ) -> Result<RealmTokens, ExchangeError> {
        let grant = match decide(policy, subject, request, &self.limiter, now) {
            Ok(grant) => grant,
            Err(err) => return Err(self.record_failure(&request.context, subject, err, now)),
        };
        // The refresh token first: it is stateless, so when the access token then fails
        // nothing is left behind, while an access token minted first would already sit in the
        // issued-token cache, unaudited, when the refresh token is refused.
        let refresh = match request
            .refresh_token
            .then(|| self.refresh_tokens.issue(&grant, now))
            .transpose()
        {
            Ok(refresh) => refresh,
            Err(err) => {
                let err = ExchangeError::from(err);
                self.record_refusal_of(
                    &request.context,
                    REFRESH_TOKEN_KIND,
                    Party::Subject(subject),
                    &err,
                    now,
                );
                return Err(err);
            }
        };
        let access = match self.registry_tokens.issue(&grant, now) {
            Ok(access) => access,
            Err(err) => {
                return Err(self.record_failure(&request.context, subject, err.into(), now));
            }
        };
        // Two events, written one after the other: should the second write fail (the sink
        // failing in between), the access token is recorded as issued although the caller is
        // answered 503. The log then over-reports, the safe direction for an audit trail.
        let access = self.record(&request.context, subject, Ok(access), now)?;
        let refresh = match refresh {
            Some(r) => Some(self.record(&request.context, subject, Ok(r), now)?),
            None => None,
        };
        Ok(RealmTokens {
            subject: subject.clone(),
            access,
            refresh,
        })
    }

    /// Steps 1 to 3: the pre-authentication refusals go through
    /// [`Self::refuse_unauthenticated`].
    fn authenticate(
        &self,
        policy: &Policy,
        request: &ExchangeRequest,
        presented: &Presented<'_>,
        now: SystemTime,
    ) -> Result<Authenticated, ExchangeError> {
        // An address whose failure budget is spent is not refused here: only failures are
        // held against it (clients behind one NAT cannot lock each other out), and each
        // refusal below is answered 429 by `refuse_unauthenticated` once the budget is spent.
        let refuse =
            |err: ExchangeError| self.refuse_unauthenticated(&request.context, &err, now).0;
        // Unknown services are refused whatever the credentials, so a client learns about its
        // typo rather than about a 401.
        let Some(registry) = policy.registry_by_service(&request.service) else {
            return Err(refuse(ExchangeError::unknown_service(&request.service)));
        };
        // A registry whose own service signs its tokens (Harbor core) never sends clients to
        // the realm and cannot use a broker-signed token: only a login credential (the
        // registry's own credential, made through its API) can serve it.
        if !registry.kind().is_broker_signed() && request.context.kind == ExchangeKind::AccessToken
        {
            return Err(refuse(ExchangeError::from(InvalidRequest::KindNotServed {
                registry: registry.name().to_owned(),
                kind: registry.kind(),
                asked: "a broker-signed access token",
            })));
        }
        self.authenticator
            .authenticate(presented, now)
            .map_err(refuse)
    }

    fn decide_and_issue<I: CredentialIssuer>(
        &self,
        policy: &Policy,
        subject: &Subject,
        request: &ExchangeRequest,
        issuer: &I,
        now: SystemTime,
    ) -> Result<(Grant, I::Credential), ExchangeError> {
        let grant = decide(policy, subject, request, &self.limiter, now)?;
        let credential = issuer.issue(&grant, now)?;
        Ok((grant, credential))
    }
}

mod record;

pub use record::EXCHANGE_EVENT;
pub(crate) use record::REFRESH_TOKEN_KIND;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod backend_tests;
