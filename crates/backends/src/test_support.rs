//! Test helpers shared by the unit tests and (through `#[path]` in `tests/common`) the
//! integration tests, so both move time and poll the same way.

#![allow(
    dead_code,
    reason = "each test build uses its own subset of these helpers"
)]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed step is a failed test"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use svid_broker_identity::clock::Clock;
use svid_broker_policy::ResourceScope;

/// A clock that moves only when a test advances it.
#[derive(Debug)]
pub(crate) struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    /// A clock showing `at` until a test moves it.
    pub(crate) fn starting_at(at: SystemTime) -> Arc<Self> {
        Arc::new(Self(Mutex::new(at)))
    }

    /// A clock showing the system time: the fakes keep the registry's own times on the
    /// system clock, so tests against them start there.
    pub(crate) fn starting_now() -> Arc<Self> {
        Self::starting_at(SystemTime::now())
    }

    pub(crate) fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

/// Polls `done` up to 500 times, 10 ms apart.
pub(crate) async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

/// Each text parsed as a resource scope (`repository:team-a/app:pull`).
pub(crate) fn scopes(texts: &[&str]) -> Vec<ResourceScope> {
    texts
        .iter()
        .map(|t| ResourceScope::parse(t).unwrap())
        .collect()
}

/// Whole Unix seconds as a time.
pub(crate) fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

/// A time as whole Unix seconds (it must not be before 1970).
pub(crate) fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_secs()
}
