//! The policy decision, as a value: what an authenticated subject gets for a checked request.
//! Every rule that can refuse an authenticated caller is here, before anything is issued.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use svid_broker_identity::SpiffeId;
use svid_broker_policy::{Action, DecisionError, Policy, Reach, Registry, ResourceScope};

use crate::authn::{AuthMethod, CredentialBinding, MIN_DERIVED_TTL, Subject};
use crate::error::{AuthFailure, Denial, ExchangeError, InvalidRequest};
use crate::request::{ExchangeKind, ExchangeRequest};
use crate::throttle::RateLimiter;

/// What policy granted: the input of every [`crate::issue::CredentialIssuer`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Grant {
    /// Who the credential is for.
    pub subject: SpiffeId,
    /// Which credential kind is issued (access token or login credential).
    pub kind: ExchangeKind,
    /// The registry, from the policy snapshot the decision was made on.
    pub registry: Arc<Registry>,
    /// The scopes the request named, parsed; empty for a registry-wide request.
    pub requested: Vec<ResourceScope>,
    /// What policy allows of it, within the presented credential's ceiling; possibly empty
    /// (an empty access token at the realm).
    pub granted: Vec<ResourceScope>,
    /// The presented broker credential's binding (login credential, refresh token): a refresh
    /// token issued now joins its session.
    pub binding: Option<CredentialBinding>,
    /// The latest a credential may last (a service-account token's expiry), if any.
    pub not_after: Option<SystemTime>,
}

impl Grant {
    /// The registry's `service`.
    pub fn service(&self) -> &str {
        self.registry.service()
    }

    /// `ttl`, shortened so it ends by [`Self::not_after`] (but never below [`MIN_DERIVED_TTL`]).
    pub fn lifetime(&self, ttl: Duration, now: SystemTime) -> Duration {
        match self.not_after {
            Some(at) => ttl.min(
                at.duration_since(now)
                    .unwrap_or_default()
                    .max(MIN_DERIVED_TTL),
            ),
            None => ttl,
        }
    }

    /// Scopes were asked for and none was granted: answered, but a refusal.
    pub fn nothing_granted(&self) -> bool {
        !self.requested.is_empty() && self.granted.is_empty()
    }
}

/// Decides `request` for `subject` on `policy`, spending one of the subject's rate-limit
/// tokens.
///
/// # Errors
/// [`AuthFailure::WrongService`] and [`AuthFailure::NoLongerAllowed`] (Unauthenticated: the
/// presented credential no longer serves), [`InvalidRequest::UnknownService`] and
/// [`InvalidRequest::TooManyScopes`], [`ExchangeError::ResourceExhausted`],
/// [`Denial::EmptyGrant`] (an access token over gRPC with nothing granted),
/// [`Denial::RegistryNotAllowed`] (a login credential for a registry the subject may not use)
/// and [`InvalidRequest::RegistryWideNotServed`] (a registry-wide login credential for a
/// registry whose credentials are per project).
///
/// A login credential asked with no scope is registry-wide. For the token kind that is the
/// broker's login credential, allowed when any allow rule lets the subject use the registry
/// (the tokens later obtained with it are decided one by one). For a kind whose every
/// credential reaches the whole registry anyway ([`Reach::Registry`]: Nexus, Artifactory) it
/// is decided as pull and push on every repository
/// ([`Policy::decide_every_repository`]), so the backend gets the actions its credential
/// carries; nothing granted is refused as [`Denial::RegistryNotAllowed`]. For a kind whose
/// credentials are per project no credential can be made without a project, so it is refused.
pub(crate) fn decide(
    policy: &Policy,
    subject: &Subject,
    request: &ExchangeRequest,
    limiter: &RateLimiter,
    now: SystemTime,
) -> Result<Grant, ExchangeError> {
    let caller = subject.caller();
    let binding = subject.binding();
    if let Some(b) = binding
        && b.service != request.service
    {
        return Err(ExchangeError::unauthenticated(AuthFailure::WrongService {
            bound: b.service.clone(),
        }));
    }
    // A registry-wide request for a registry whose credentials reach every repository: decided
    // for every repository, so the grant names the actions the credential will carry.
    let every_repository = request.context.kind == ExchangeKind::LoginCredential
        && request.scopes.is_empty()
        && policy
            .registry_by_service(&request.service)
            .is_some_and(|r| r.kind().serves_every_repository());
    let decision = if every_repository {
        policy.decide_every_repository(&caller.spiffe_id, &request.service)
    } else {
        policy.decide(&caller.spiffe_id, &request.service, &request.scopes)
    }
    .map_err(|e| {
        ExchangeError::invalid(match e {
            DecisionError::UnknownService { service } => InvalidRequest::UnknownService { service },
            e => InvalidRequest::TooManyScopes(e),
        })
    })?;
    let may_use_registry = || {
        policy
            .has_allow_rule(&caller.spiffe_id, &request.service)
            .unwrap_or(false)
    };
    // A refresh token is a standing grant: once no rule lets its subject use this registry the
    // chain ends here (401, nothing re-issued) rather than renewing empty grants.
    if caller.method == AuthMethod::RefreshToken && !may_use_registry() {
        return Err(ExchangeError::unauthenticated(
            AuthFailure::NoLongerAllowed {
                subject: caller.spiffe_id.clone(),
            },
        ));
    }
    limiter
        .check(&caller.spiffe_id, now)
        .map_err(|retry_after| ExchangeError::ResourceExhausted {
            subject: caller.spiffe_id.clone(),
            retry_after,
        })?;
    let granted = match binding {
        Some(b) if !b.ceiling.is_empty() => within_ceiling(&decision.granted, &b.ceiling),
        _ => decision.granted,
    };
    let grant = Grant {
        subject: caller.spiffe_id.clone(),
        kind: request.context.kind,
        registry: decision.registry,
        requested: request.scopes.clone(),
        granted,
        binding: binding.cloned(),
        not_after: subject.not_after(),
    };
    match grant.kind {
        ExchangeKind::AccessToken => {
            if !request.context.endpoint.is_realm() && grant.nothing_granted() {
                return Err(ExchangeError::PermissionDenied {
                    reason: Denial::EmptyGrant,
                });
            }
        }
        ExchangeKind::LoginCredential => {
            let allowed = if grant.requested.is_empty() && !every_repository {
                may_use_registry()
            } else {
                !grant.granted.is_empty()
            };
            if !allowed {
                return Err(ExchangeError::PermissionDenied {
                    reason: Denial::RegistryNotAllowed,
                });
            }
            // After the policy, so a subject with no rule here learns only that it may not use
            // the registry.
            let kind = grant.registry.kind();
            if grant.requested.is_empty() && matches!(kind.reach(), Reach::Project { .. }) {
                return Err(ExchangeError::invalid(
                    InvalidRequest::RegistryWideNotServed {
                        registry: grant.registry.name().to_owned(),
                        kind,
                    },
                ));
            }
        }
    }
    Ok(grant)
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
            let actions: BTreeSet<Action> = if c.actions.contains(&Action::ALL) {
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
