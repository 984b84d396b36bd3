//! The broker's one pass. Each request, from either edge, goes through the same steps once:
//!
//! 1. **snapshot**: the current policy, one snapshot for the whole pass;
//! 2. **check**: the request's `service` must name a registry of that policy;
//! 3. **authenticate** what the caller presented ([`crate::authn`]), and, when a trusted actor
//!    presents a service-account token, map it to its subject;
//! 4. **decide** ([`crate::decision`]): the grant, as a value;
//! 5. **issue** through a [`CredentialIssuer`] ([`crate::issue`]);
//! 6. **record** the outcome, once: one audit event per issued credential or refusal, and the
//!    metrics and the log line, in `Broker::record` (an issuance whose event cannot be written is withheld
//!    under `audit_on_error = "deny"`).
//!
//! Refusals before a subject is authenticated (steps 1 to 3, and the edges' own syntax
//! checks) go through [`Broker::refuse_unauthenticated`]: each is counted, charged to its
//! source address's failed-authentication budget, and audited in aggregate (the first per
//! address and reason in an interval in full, the rest as one summary).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use svid_broker_identity::bundle::BundleProvider;
use svid_broker_identity::jwt::AudienceMatch;
use svid_broker_policy::Policy;
use svid_broker_policy::scope;
use svid_broker_token::{KeyError, TokenMinter};

use crate::audit::{
    AuditEvent, AuditLog, AuditOnError, AuditSink, SubjectTokenAudit, ceiling_text, peer_text,
    printable, rfc3339,
};
use crate::authn::{Authenticated, Authenticator, Caller, Subject};
use crate::credential::{
    CredentialKeys, DEFAULT_LOGIN_CREDENTIAL_TTL, DEFAULT_MAX_SESSION, DEFAULT_REFRESH_TOKEN_TTL,
};
use crate::decision::{Grant, decide};
use crate::error::{BrokerBuildError, ExchangeError, Unavailability};
use crate::issue::{
    AccessToken, CredentialIssuer, Issued, IssuedRecord, LoginCredential, LoginCredentialIssuer,
    RefreshToken, RefreshTokenIssuer, RegistryTokenIssuer,
};
use crate::listen::client_key;
use crate::metrics::Metrics;
use crate::request::{ExchangeKind, ExchangeRequest, MAX_CLIENT_ID_LEN, Presented, RequestContext};
use crate::satoken::ServiceAccountMode;
use crate::throttle::{
    DEFAULT_PREAUTH_AUDIT_INTERVAL, MAX_PREAUTH_TRACKED_IPS, PREAUTH_SUMMARY_EVENT, PreauthDenials,
    PreauthKey, PreauthSummary, RateLimit, RateLimiter,
};

/// What an `Exchange` issued.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ExchangeOutput {
    /// A registry bearer token.
    AccessToken(AccessToken),
    /// A registry login credential.
    LoginCredential(LoginCredential),
}

impl Issued for ExchangeOutput {
    fn record(&self) -> IssuedRecord<'_> {
        match self {
            Self::AccessToken(t) => t.record(),
            Self::LoginCredential(c) => c.record(),
        }
    }
}

/// What an `Exchange` call answers: the credential and whom it was issued to (the mapped
/// subject when a trusted actor presented a service-account token).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Exchanged {
    /// Who the credential is for.
    pub subject: Subject,
    /// The credential.
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

    /// The current policy snapshot.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Installs a new policy (already validated); drops cached tokens so the new grants apply
    /// at once.
    pub fn replace_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
        self.registry_tokens.clear_cache();
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The token minter (key ring, JWKS, CA bundle).
    pub fn minter(&self) -> &TokenMinter {
        self.registry_tokens.minter()
    }

    /// The bundle provider.
    pub fn bundles(&self) -> &Arc<dyn BundleProvider> {
        self.authenticator.bundles()
    }

    /// The authenticator (for callers that check a proof without asking for a credential).
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// The audience JWT-SVIDs must carry.
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
    /// when it vouches for someone else, a service-account `subject_token`.
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
        self.exchange_on(&self.policy.load_full(), subject, request, now)
    }

    fn exchange_on(
        &self,
        policy: &Policy,
        subject: &Subject,
        request: &ExchangeRequest,
        now: SystemTime,
    ) -> Result<Exchanged, ExchangeError> {
        let result = match request.context.kind {
            ExchangeKind::AccessToken => self
                .decide_and_issue(policy, subject, request, &self.registry_tokens, now)
                .map(|(_, t)| ExchangeOutput::AccessToken(t)),
            ExchangeKind::LoginCredential => self
                .decide_and_issue(policy, subject, request, &self.login_credentials, now)
                .map(|(_, c)| ExchangeOutput::LoginCredential(c)),
        };
        let output = self.record(&request.context, subject, result, now)?;
        Ok(Exchanged {
            subject: subject.clone(),
            output,
        })
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
    /// be issued (its session is over), the request is refused as a whole and the access
    /// token is not handed out, so it is not recorded as issued either.
    fn realm_token_on(
        &self,
        policy: &Policy,
        subject: &Subject,
        request: &ExchangeRequest,
        now: SystemTime,
    ) -> Result<RealmTokens, ExchangeError> {
        let (grant, access) =
            match self.decide_and_issue(policy, subject, request, &self.registry_tokens, now) {
                Ok(issued) => issued,
                Err(err) => return Err(self.record_failure(&request.context, subject, err, now)),
            };
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
        if policy.registry_by_service(&request.service).is_none() {
            return Err(refuse(ExchangeError::unknown_service(&request.service)));
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

    /// Step 6: records an outcome after authentication. An issued credential whose event
    /// cannot be written is withheld under `audit_on_error = "deny"` (then the answer is
    /// [`Unavailability::Audit`]); a request that got nothing it asked for is counted as a
    /// refusal, not an issuance.
    fn record<C: Issued>(
        &self,
        context: &RequestContext,
        subject: &Subject,
        result: Result<C, ExchangeError>,
        now: SystemTime,
    ) -> Result<C, ExchangeError> {
        let issued = match result {
            Ok(issued) => issued,
            Err(err) => return Err(self.record_failure(context, subject, err, now)),
        };
        let record = issued.record();
        let refused = record.refusal.is_some();
        let party = Party::Subject(subject);
        let event = AuditEvent {
            time: rfc3339(now),
            event: EXCHANGE_EVENT,
            decision: if refused { "deny" } else { "allow" },
            code: record
                .refusal
                .map(|_| crate::error::ErrorCode::PermissionDenied.label()),
            reason: record.reason.to_owned(),
            subject: Some(subject.spiffe_id().as_str()),
            actor: party.actor(context.client_id.as_deref()),
            service: &context.service,
            requested: context.requested.clone(),
            granted: scope::join_scopes(record.scopes),
            kind: record.kind,
            ceiling: record.ceiling.map(ceiling_text),
            jti: Some(record.jti),
            expires_at: Some(rfc3339(record.expires_at)),
            cached: record.cached,
            peer: peer_text(context.peer),
            endpoint: context.endpoint.label(),
            subject_token: party.subject_token(),
            count: None,
            interval_seconds: None,
        };
        if let Err(e) = self.audit.record(&event, &self.metrics) {
            let err = ExchangeError::unavailable(Unavailability::Audit(e));
            self.metrics.denied(context.endpoint, err.code());
            return Err(err);
        }
        if let Some(cached) = record.cache_lookup {
            self.metrics.cache(cached);
        }
        match (record.refusal, record.counted_as) {
            (Some(refusal), _) => self.metrics.refused(context.endpoint, refusal),
            (None, Some(kind)) => self.metrics.issued(context.endpoint, kind),
            // Refresh tokens ride along an access token, which is what `issued_total` counts.
            (None, None) => {}
        }
        Ok(issued)
    }

    fn record_failure(
        &self,
        context: &RequestContext,
        subject: &Subject,
        err: ExchangeError,
        now: SystemTime,
    ) -> ExchangeError {
        self.record_refusal(context, Party::Subject(subject), &err, now);
        err
    }

    /// A refusal after authentication: counted, and audited (a denial that cannot be audited
    /// is still refused; the failure is only counted).
    fn record_refusal(
        &self,
        context: &RequestContext,
        party: Party<'_>,
        err: &ExchangeError,
        now: SystemTime,
    ) {
        self.record_refusal_of(context, context.kind.label(), party, err, now);
    }

    /// [`Self::record_refusal`] of a credential of audit `kind` (a refresh token refused after
    /// its access token was issued).
    fn record_refusal_of(
        &self,
        context: &RequestContext,
        kind: &'static str,
        party: Party<'_>,
        err: &ExchangeError,
        now: SystemTime,
    ) {
        self.metrics.denied(context.endpoint, err.code());
        tracing::info!(
            endpoint = context.endpoint.label(),
            peer = ?context.peer,
            kind,
            code = err.code().label(),
            reason = %err.chain(),
            "request refused"
        );
        let mut event = refusal_event(context, party, err, now);
        event.kind = kind;
        let _ = self.audit.record(&event, &self.metrics);
    }

    /// Refuses a request from `peer` before authentication when too many of its requests
    /// failed lately ([`BrokerOptions::failed_auth_limit`]).
    fn admit_peer(&self, peer: Option<SocketAddr>, now: SystemTime) -> Result<(), ExchangeError> {
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

    /// Refuses a request that failed before a subject was authenticated (an edge's syntax
    /// check, an unknown service, a bad proof): returns the error to answer with and whether
    /// it was audited in full (the caller logs only those). The answer is `err` itself, or
    /// [`ExchangeError::PeerLimited`] once the address's failure budget is spent.
    ///
    /// Each refusal is counted in the metrics and charged to the address's budget; the first
    /// per (address, endpoint, reason) in an aggregation interval is audited in full, the
    /// others are summed into one `svid-broker.preauth_denials` event when the interval ends.
    /// Only failures are held against an address: a request that authenticates never comes
    /// here, so clients behind a shared address (NAT, a node IP) cannot lock each other out.
    pub fn refuse_unauthenticated(
        &self,
        context: &RequestContext,
        err: &ExchangeError,
        now: SystemTime,
    ) -> (ExchangeError, bool) {
        let answer = match self.admit_peer(context.peer, now) {
            Err(limited) => limited,
            Ok(()) => err.clone(),
        };
        self.metrics.denied(context.endpoint, answer.code());
        let ip = context.peer.map(|p| client_key(p.ip()));
        if let Some(ip) = ip
            && !matches!(answer, ExchangeError::PeerLimited { .. })
        {
            // Ignoring the answer: this request is refused either way.
            let _ = self.failed_auth.check(&ip, now);
        }
        let key = PreauthKey {
            peer: ip,
            endpoint: context.endpoint,
            kind: context.kind.label(),
            code: answer.code(),
            reason: answer.to_string(),
        };
        let (first, summaries) = self.preauth.note(key, now);
        self.write_preauth_summaries(&summaries, now);
        if first {
            // Logged like it is audited: the first per address and reason in an interval.
            tracing::info!(
                endpoint = context.endpoint.label(),
                peer = ?context.peer,
                code = answer.code().label(),
                reason = %answer.chain(),
                "request refused before authentication"
            );
            // A refusal that cannot be audited is still a refusal: the failure only counts.
            let _ = self.audit.record(
                &refusal_event(context, Party::Unauthenticated, &answer, now),
                &self.metrics,
            );
        }
        (answer, first)
    }

    /// Writes the pre-authentication summaries of an interval that ended by `now` (the
    /// server calls this periodically, so a summary is not held back until the next denial).
    pub fn flush_preauth_denials(&self, now: SystemTime) {
        let summaries = self.preauth.flush_due(now);
        self.write_preauth_summaries(&summaries, now);
    }

    fn write_preauth_summaries(&self, summaries: &[PreauthSummary], now: SystemTime) {
        for s in summaries {
            let peer = s.key.peer.map(|ip| ip.to_string());
            // A refusal that cannot be audited is still a refusal: the result only counts.
            let _ = self.audit.record(
                &AuditEvent {
                    time: rfc3339(now),
                    event: PREAUTH_SUMMARY_EVENT,
                    decision: "deny",
                    code: Some(s.key.code.label()),
                    reason: s.key.reason.clone(),
                    subject: None,
                    actor: UNAUTHENTICATED.to_owned(),
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
}

/// The audit `event` of every decision on a request.
pub const EXCHANGE_EVENT: &str = "svid-broker.exchange";
/// The audit `kind` of a realm refresh token.
pub(crate) const REFRESH_TOKEN_KIND: &str = "refresh_token";
/// The audit `actor` of a request refused before authentication.
const UNAUTHENTICATED: &str = "unauthenticated";
/// The audit `subject_token.kind` of a Kubernetes service-account token.
const SERVICE_ACCOUNT_TOKEN_KIND: &str = "kubernetes-service-account";

/// Who an audit event is about.
#[derive(Clone, Copy)]
enum Party<'a> {
    /// Nobody authenticated yet.
    Unauthenticated,
    /// An authenticated actor whose subject token was refused.
    Actor(&'a Caller),
    /// The subject a credential is (or would have been) issued to.
    Subject(&'a Subject),
}

impl<'a> Party<'a> {
    /// The audit `actor`: how the subject authenticated (plus its `client_id`), or the actor
    /// that vouched for it.
    fn actor(self, client_id: Option<&str>) -> String {
        let method = match self {
            Self::Unauthenticated => UNAUTHENTICATED,
            Self::Actor(actor) => return actor.spiffe_id.as_str().to_owned(),
            Self::Subject(s) => match &s.on_behalf {
                Some(o) => return o.actor.spiffe_id.as_str().to_owned(),
                None => s.caller().method.label(),
            },
        };
        match client_id {
            // `RequestContext` admits only valid client IDs; cut and filter again so no
            // caller that skipped the edge check writes format characters into the log.
            Some(id) => {
                let id: String = crate::audit::cut(id, MAX_CLIENT_ID_LEN)
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .collect();
                format!("{method} client_id={id}")
            }
            None => method.to_owned(),
        }
    }

    /// What the audit records of a subject token: the actor's method, and the token's
    /// identity once it validated.
    fn subject_token(self) -> Option<SubjectTokenAudit<'a>> {
        match self {
            Self::Unauthenticated => None,
            Self::Actor(actor) => Some(sa_audit(actor.method.label(), None)),
            Self::Subject(s) => s
                .on_behalf
                .as_ref()
                .map(|o| sa_audit(o.actor.method.label(), Some(&o.account))),
        }
    }
}

fn refusal_event<'a>(
    context: &'a RequestContext,
    party: Party<'a>,
    err: &ExchangeError,
    now: SystemTime,
) -> AuditEvent<'a> {
    let subject = match party {
        Party::Unauthenticated | Party::Actor(_) => None,
        Party::Subject(s) => Some(s.spiffe_id().as_str()),
    };
    AuditEvent {
        time: rfc3339(now),
        event: EXCHANGE_EVENT,
        decision: "deny",
        code: Some(err.code().label()),
        reason: printable(&err.chain()),
        subject,
        actor: party.actor(context.client_id.as_deref()),
        service: &context.service,
        requested: context.requested.clone(),
        granted: String::new(),
        kind: context.kind.label(),
        ceiling: None,
        jti: None,
        expires_at: None,
        cached: false,
        peer: peer_text(context.peer),
        endpoint: context.endpoint.label(),
        subject_token: party.subject_token(),
        count: None,
        interval_seconds: None,
    }
}

fn sa_audit<'a>(
    actor_method: &'static str,
    sa: Option<&'a crate::satoken::ServiceAccountIdentity>,
) -> SubjectTokenAudit<'a> {
    SubjectTokenAudit {
        kind: SERVICE_ACCOUNT_TOKEN_KIND,
        actor_method,
        issuer: sa.map(|s| s.issuer.as_str()),
        namespace: sa.map(|s| s.namespace.as_str()),
        service_account: sa.map(|s| s.name.as_str()),
        pod: sa.and_then(|s| s.pod_name.as_deref()),
        pod_uid: sa.and_then(|s| s.pod_uid.as_deref()),
        node: sa.and_then(|s| s.node_name.as_deref()),
    }
}

#[cfg(test)]
mod tests;
