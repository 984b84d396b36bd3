//! The revocation queue: each credential the service made, in order of when it must be
//! deleted, and failed deletions waiting for their retry. Sync and bounded.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::credential::CredentialHandle;
use crate::service::leases::LeaseKey;

/// One credential to delete.
#[derive(Debug, Clone)]
pub(crate) struct Revocation {
    pub(crate) handle: CredentialHandle,
    /// What the audit log calls it (to drop its lease).
    pub(crate) credential_id: String,
    /// Its lease, when it has one.
    pub(crate) lease: Option<LeaseKey>,
    /// Failed attempts so far.
    pub(crate) attempts: u32,
}

/// Revocations by due time (ties kept apart by arrival).
#[derive(Debug)]
pub(crate) struct RevocationQueue {
    due: BTreeMap<(SystemTime, u64), Revocation>,
    next_seq: u64,
    max: usize,
}

impl RevocationQueue {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            due: BTreeMap::new(),
            next_seq: 0,
            max,
        }
    }

    /// Queues a new revocation for `at`: `Ok(true)` when it is now the first one due (the
    /// runner should look again), `Err(())` (nothing queued) when the queue is full.
    pub(crate) fn push(&mut self, at: SystemTime, revocation: Revocation) -> Result<bool, ()> {
        if self.due.len() >= self.max {
            return Err(());
        }
        Ok(self.insert(at, revocation))
    }

    /// Queues a retry of a revocation just taken out; not bounded by `max`, since it only
    /// puts back what [`Self::take_due`] removed.
    pub(crate) fn retry(&mut self, at: SystemTime, revocation: Revocation) {
        self.insert(at, revocation);
    }

    /// Takes out up to `limit` revocations due at `now`, earliest first.
    pub(crate) fn take_due(&mut self, now: SystemTime, limit: usize) -> Vec<Revocation> {
        let mut taken = Vec::new();
        while taken.len() < limit {
            match self.due.first_key_value() {
                Some((&(at, _), _)) if at <= now => {}
                _ => break,
            }
            if let Some((_, revocation)) = self.due.pop_first() {
                taken.push(revocation);
            }
        }
        taken
    }

    /// Moves the queued revocation of `credential_id` to `at` (when it was queued later);
    /// `false` when none is queued for it.
    pub(crate) fn advance(&mut self, credential_id: &str, at: SystemTime) -> bool {
        let Some(key) = self
            .due
            .iter()
            .find(|(_, r)| r.credential_id == credential_id)
            .map(|(key, _)| *key)
        else {
            return false;
        };
        if key.0 > at
            && let Some(revocation) = self.due.remove(&key)
        {
            self.insert(at, revocation);
        }
        true
    }

    /// When the next revocation is due.
    pub(crate) fn next_due(&self) -> Option<SystemTime> {
        self.due.first_key_value().map(|(&(at, _), _)| at)
    }

    pub(crate) fn len(&self) -> usize {
        self.due.len()
    }

    fn insert(&mut self, at: SystemTime, revocation: Revocation) -> bool {
        let seq = self.next_seq;
        self.next_seq += 1;
        let first = self.next_due().is_none_or(|next| at < next);
        self.due.insert((at, seq), revocation);
        first
    }
}

/// The wait before retry number `attempts` (1 = the first retry): `base` doubled per failed
/// attempt, at most `max`.
pub(crate) fn backoff(attempts: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(max)
}
