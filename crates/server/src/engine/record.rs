//! Step 6 of the pass, and the refusals before it: every outcome is recorded here, once, from
//! the outcome itself. An issued credential is one audit event (its `Issued::record`), one
//! metric, and nothing in the log; a refusal is one audit event (those before authentication in
//! aggregate), one metric and one log line (likewise aggregated).

use std::net::SocketAddr;
use std::time::SystemTime;

use svid_broker_policy::scope;

use super::Broker;
use crate::audit::{AuditEvent, SubjectTokenAudit, ceiling_text, peer_text, printable, rfc3339};
use crate::authn::{Caller, Subject};
use crate::error::{ErrorCode, ExchangeError, Unavailability};
use crate::issue::Issued;
use crate::listen::client_key;
use crate::request::{MAX_CLIENT_ID_LEN, RequestContext};
use crate::satoken::ServiceAccountIdentity;
use crate::throttle::{PREAUTH_SUMMARY_EVENT, PreauthKey, PreauthSummary};

impl Broker {
    /// Step 6: records an outcome after authentication. An issued credential whose event
    /// cannot be written is withheld under `audit_on_error = "deny"` (then the answer is
    /// [`Unavailability::Audit`]); a request that got nothing it asked for is counted as a
    /// refusal, not an issuance.
    pub(super) fn record<C: Issued>(
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
        // The lookup happened whatever becomes of the answer.
        if let Some(cached) = record.cache_lookup {
            self.metrics.cache(cached);
        }
        let refused = record.refusal.is_some();
        let party = Party::Subject(subject);
        let event = AuditEvent {
            time: rfc3339(now),
            event: EXCHANGE_EVENT,
            decision: if refused { "deny" } else { "allow" },
            code: record.refusal.map(|_| ErrorCode::PermissionDenied.label()),
            reason: record.reason.to_owned(),
            subject: Some(subject.spiffe_id().as_str()),
            actor: party.actor(context.client_id.as_deref()),
            service: &context.service,
            requested: context.requested.clone(),
            granted: scope::join_scopes(record.scopes),
            kind: record.kind,
            ceiling: record.ceiling.map(ceiling_text),
            jti: record.backend.is_none().then_some(record.jti),
            backend: record.backend,
            credential_id: record.backend.is_some().then_some(record.jti),
            expires_at: Some(rfc3339(record.expires_at)),
            valid_until: record.valid_until.map(rfc3339),
            cached: record.cache_lookup == Some(true),
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
        match (record.refusal, record.counted_as) {
            (Some(refusal), _) => self.metrics.refused(context.endpoint, refusal),
            (None, Some(kind)) => self.metrics.issued(context.endpoint, kind),
            // Refresh tokens ride along an access token, which is what `issued_total` counts.
            (None, None) => {}
        }
        Ok(issued)
    }

    pub(super) fn record_failure(
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
    pub(super) fn record_refusal(
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
    pub(super) fn record_refusal_of(
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
        let event = refusal_event(context, kind, party, err, now);
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
                &refusal_event(
                    context,
                    context.kind.label(),
                    Party::Unauthenticated,
                    &answer,
                    now,
                ),
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
                    backend: None,
                    credential_id: None,
                    expires_at: None,
                    valid_until: None,
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
pub(super) enum Party<'a> {
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
    kind: &'static str,
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
        kind,
        ceiling: None,
        jti: None,
        backend: None,
        credential_id: None,
        expires_at: None,
        valid_until: None,
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
    sa: Option<&'a ServiceAccountIdentity>,
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
