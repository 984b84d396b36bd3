//! Injectable time: validation functions take `now` as an argument; these types supply it.

use std::time::SystemTime;

/// A source of the current time, for the components that run on their own (servers, sources,
/// caches) and so cannot take `now` as an argument. Tests pass a clock they control.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The time to check and issue at. Wall-clock time: it may jump (NTP) and is not monotonic,
    /// so callers compare it with certificate and token times, never measure durations with it.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock ([`SystemTime::now`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock stopped at one instant, for tests and for `--at` on the command line.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub SystemTime);

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}

/// Shows a time as RFC 3339 UTC (`2026-11-25T23:58:29Z`) in error messages, so operators can
/// compare certificate validity with their own clock at a glance. Whole seconds; times before
/// 1970 are shown as the Unix epoch's negative offset in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub SystemTime);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = match self.0.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(since) => since.as_secs(),
            Err(before) => return write!(f, "-{}s before 1970", before.duration().as_secs()),
        };
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::{Clock, FixedClock, Rfc3339, SystemClock};

    #[test]
    fn fixed_clock_returns_its_instant_every_time() {
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = FixedClock(at);
        assert_eq!(clock.now(), at);
        assert_eq!(clock.now(), at);
        let dyn_clock: &dyn Clock = &clock;
        assert_eq!(dyn_clock.now(), at);
        assert_ne!(FixedClock(UNIX_EPOCH).now(), at);
    }

    #[test]
    fn system_clock_follows_the_wall_clock() {
        // Bracketed by two direct readings, so no assumption about how fast the test runs.
        let before = SystemTime::now();
        let now = SystemClock.now();
        let after = SystemTime::now();
        assert!(before <= now && now <= after);
        // And it is not stuck at a constant such as the epoch.
        assert!(now > UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    }

    #[test]
    fn rfc3339_known_instants() {
        let at = |secs| Rfc3339(UNIX_EPOCH + Duration::from_secs(secs)).to_string();
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_651_109), "2026-11-25T23:58:29Z");
        assert_eq!(at(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn rfc3339_before_epoch_is_explicit() {
        let before = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(Rfc3339(before).to_string(), "-5s before 1970");
    }
}
