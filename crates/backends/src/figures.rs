//! Counters for `/metrics`: API requests by step and outcome, and the service's credential
//! counts.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// Counts one backend's API requests by (step, outcome). The keys are the `&'static str`
/// labels of [`Step::name`](crate::Step::name) and
/// [`Failure::outcome`](crate::Failure::outcome) (or `ok`), so the map stays small.
#[derive(Debug, Default)]
pub struct ApiMeter {
    counts: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl ApiMeter {
    /// A meter with no request counted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request of `step` that ended with `outcome`.
    pub fn record(&self, step: &'static str, outcome: &'static str) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry((step, outcome)).or_default() += 1;
    }

    /// The counts so far, sorted by step then outcome.
    pub fn snapshot(&self) -> Vec<ApiRequestCount> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts
            .iter()
            .map(|(&(step, outcome), &count)| ApiRequestCount {
                step,
                outcome,
                count,
            })
            .collect()
    }
}

/// How many API requests of one step ended with one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiRequestCount {
    /// The step (`create_robot`, ...).
    pub step: &'static str,
    /// `ok`, or a [`Failure::outcome`](crate::Failure::outcome) label.
    pub outcome: &'static str,
    /// Requests of this step that ended with this outcome since the meter was made (never 0).
    pub count: u64,
}

/// A [`BackendService`](crate::BackendService)'s counters, for `/metrics`. Counts are since the
/// service was made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendFigures {
    /// The registry's name in the policy.
    pub registry: String,
    /// The backend kind (`harbor`).
    pub kind: &'static str,
    /// API requests by (step, outcome).
    pub api_requests: Vec<ApiRequestCount>,
    /// Credentials the registry made for this service.
    pub credentials_created: u64,
    /// Issues answered with a live credential made before (or by a concurrent creation).
    pub credentials_reused: u64,
    /// Credentials this service deleted at their revocation time (or found already gone).
    pub credentials_revoked: u64,
    /// Credentials of a backend that cannot revoke ([`Backend::revocable`](crate::Backend::revocable))
    /// whose time came: no longer handed out, still valid at the registry until its own expiry.
    pub credentials_expired: u64,
    /// Failed revocation attempts (each is retried with backoff, then left to the sweeper).
    pub revoke_failures: u64,
    /// Expired credentials the sweeper deleted.
    pub credentials_swept: u64,
    /// Credentials held for reuse now.
    pub live_leases: usize,
    /// Revocations waiting for their time now.
    pub queued_revocations: usize,
    /// Revocations not queued because the queue was full (the sweeper deletes those robots).
    pub revocations_not_queued: u64,
}
