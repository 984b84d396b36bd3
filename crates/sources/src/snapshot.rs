//! The publish side every source shares: an `ArcSwap` snapshot plus a revision counter on a
//! `watch` channel, so readers never block and async consumers can wait for a change.

use std::sync::Arc;

use arc_swap::ArcSwap;
use svid_broker_identity::bundle::BundleSet;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Receiver of a source's update signal.
///
/// The value is the revision number of the published snapshot: it starts at 0 and grows by one
/// every time the source publishes a new [`BundleSet`]. Use `changed().await` to wait for the
/// next publication; a failed reload never advances it.
pub type Updates = watch::Receiver<u64>;

/// Current bundle set plus the revision signal.
#[derive(Debug)]
pub(crate) struct Snapshot {
    current: ArcSwap<BundleSet>,
    revision: watch::Sender<u64>,
}

impl Snapshot {
    pub(crate) fn new(initial: BundleSet) -> Self {
        Self {
            current: ArcSwap::from_pointee(initial),
            revision: watch::Sender::new(0),
        }
    }

    pub(crate) fn load(&self) -> Arc<BundleSet> {
        self.current.load_full()
    }

    /// Stores the new set first, then bumps the revision, so a woken receiver always sees it.
    pub(crate) fn publish(&self, set: Arc<BundleSet>) {
        self.current.store(set);
        // send_modify notifies even when nobody subscribed yet; later subscribers read the value.
        self.revision.send_modify(|r| *r = r.wrapping_add(1));
    }

    pub(crate) fn subscribe(&self) -> Updates {
        self.revision.subscribe()
    }

    pub(crate) fn revision(&self) -> u64 {
        *self.revision.borrow()
    }
}

/// Aborts a background task when the owning source is dropped, so no poller outlives its source.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
