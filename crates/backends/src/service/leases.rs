//! The lease table: which credential each (subject, grant) holds now, and which creations are
//! under way, so equal requests share one credential and one creation. Sync and bounded.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::credential::BackendCredential;
use crate::error::BackendError;

/// What a creation ends with, as every waiter sees it.
pub(crate) type FlightResult = Result<BackendCredential, BackendError>;
/// Where waiters watch for a creation's result (`None` until it ends).
pub(crate) type FlightWatch = watch::Receiver<Option<FlightResult>>;

/// What makes two requests interchangeable: the subject and the backend's reuse key (Harbor:
/// project and action set).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct LeaseKey {
    pub(crate) subject: String,
    pub(crate) grant: String,
}

/// What a request should do, as [`LeaseTable::begin`] decides.
#[derive(Debug)]
pub(crate) enum Begin {
    /// Hand out this live credential again (already marked `reused`).
    Reuse(BackendCredential),
    /// Wait for the creation under way.
    Join(FlightWatch),
    /// Start the creation: the table holds the slot as pending under `flight`; publish the
    /// result on `publish` and settle the slot with [`LeaseTable::settle`].
    Create {
        flight: u64,
        publish: watch::Sender<Option<FlightResult>>,
    },
    /// Create a credential without sharing it (the table is full of creations under way, or
    /// the one under way would outlive this grant).
    Alone,
}

#[derive(Debug)]
enum Slot {
    Live(BackendCredential),
    Pending {
        flight: u64,
        revoke_at: SystemTime,
        watch: FlightWatch,
    },
}

/// At most `max` slots; live credentials past reuse go first when room is needed.
#[derive(Debug)]
pub(crate) struct LeaseTable {
    slots: HashMap<LeaseKey, Slot>,
    max: usize,
    next_flight: u64,
}

impl LeaseTable {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            slots: HashMap::new(),
            max,
            next_flight: 0,
        }
    }

    /// Decides what a request for `key`, to be revoked at `revoke_at`, does at `now`.
    ///
    /// A live credential is reused while it has at least `margin` left and does not outlive
    /// the new grant (a shortened policy lifetime takes effect at once); a creation under way
    /// is joined on the same terms.
    pub(crate) fn begin(
        &mut self,
        key: &LeaseKey,
        revoke_at: SystemTime,
        now: SystemTime,
        margin: Duration,
    ) -> Begin {
        match self.slots.get(key) {
            Some(Slot::Live(credential)) if reusable(credential, revoke_at, now, margin) => {
                let mut again = credential.clone();
                again.reused = true;
                return Begin::Reuse(again);
            }
            // A creation whose task ended without settling (its runtime shut down under it)
            // is stale: replaced below rather than joined forever.
            Some(Slot::Pending { watch, .. }) if watch.has_changed().is_err() => {}
            Some(Slot::Pending {
                revoke_at: flight_revoke_at,
                watch,
                ..
            }) => {
                return if *flight_revoke_at <= revoke_at {
                    Begin::Join(watch.clone())
                } else {
                    Begin::Alone
                };
            }
            Some(Slot::Live(_)) => {}
            None => {
                if !self.make_room(now, margin) {
                    return Begin::Alone;
                }
            }
        }
        let flight = self.next_flight;
        self.next_flight += 1;
        let (publish, watch) = watch::channel(None);
        self.slots.insert(
            key.clone(),
            Slot::Pending {
                flight,
                revoke_at,
                watch,
            },
        );
        Begin::Create { flight, publish }
    }

    /// Ends creation `flight` for `key`: a credential becomes the live lease, an error frees
    /// the slot (errors are not kept, so the next request tries again).
    pub(crate) fn settle(&mut self, key: &LeaseKey, flight: u64, result: &FlightResult) {
        let ours = matches!(
            self.slots.get(key),
            Some(Slot::Pending { flight: pending, .. }) if *pending == flight
        );
        if !ours {
            return;
        }
        match result {
            Ok(credential) => {
                self.slots
                    .insert(key.clone(), Slot::Live(credential.clone()));
            }
            Err(_) => {
                self.slots.remove(key);
            }
        }
    }

    /// Drops the live lease of `key` if it is the credential `credential_id` (it is being
    /// revoked).
    pub(crate) fn forget(&mut self, key: &LeaseKey, credential_id: &str) {
        if matches!(
            self.slots.get(key),
            Some(Slot::Live(credential)) if credential.credential_id == credential_id
        ) {
            self.slots.remove(key);
        }
    }

    /// Drops the live lease holding the credential `credential_id`, wherever it is (it is
    /// being withdrawn).
    pub(crate) fn forget_credential(&mut self, credential_id: &str) {
        self.slots.retain(|_, slot| {
            !matches!(slot, Slot::Live(credential) if credential.credential_id == credential_id)
        });
    }

    /// How many credentials are leased out now (live slots only, not those being created).
    pub(crate) fn live(&self) -> usize {
        self.slots
            .values()
            .filter(|slot| matches!(slot, Slot::Live(_)))
            .count()
    }

    /// Makes room for one more slot: first drops every live lease no longer reusable (and
    /// every stale creation), then the live lease that ends first. False when every slot is a
    /// creation under way.
    fn make_room(&mut self, now: SystemTime, margin: Duration) -> bool {
        if self.slots.len() < self.max {
            return true;
        }
        let usable_until = now.checked_add(margin).unwrap_or(now);
        self.slots.retain(|_, slot| match slot {
            Slot::Live(credential) => credential.expires_at >= usable_until,
            // Kept while its task lives (see `begin` for a task that vanished).
            Slot::Pending { watch, .. } => watch.has_changed().is_ok(),
        });
        if self.slots.len() < self.max {
            return true;
        }
        let first_to_end = self
            .slots
            .iter()
            .filter_map(|(key, slot)| match slot {
                Slot::Live(credential) => Some((credential.expires_at, key)),
                Slot::Pending { .. } => None,
            })
            .min_by_key(|(expires_at, _)| *expires_at)
            .map(|(_, key)| key.clone());
        match first_to_end {
            Some(key) => {
                self.slots.remove(&key);
                true
            }
            None => false,
        }
    }
}

fn reusable(
    credential: &BackendCredential,
    revoke_at: SystemTime,
    now: SystemTime,
    margin: Duration,
) -> bool {
    let left = credential
        .expires_at
        .duration_since(now)
        .unwrap_or(Duration::ZERO);
    left >= margin && credential.expires_at <= revoke_at
}
