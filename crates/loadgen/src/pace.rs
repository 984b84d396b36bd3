//! Open-loop pacing: request `i` (from 0) is due `i / rate` seconds after the start, whatever
//! happened to earlier requests, so a slow response delays nothing but itself (no coordinated
//! omission). Tokio's timer has millisecond granularity, so the dispatcher wakes at most once a
//! millisecond and releases every request that has fallen due: the average rate is exact,
//! requests due within the same millisecond leave together.

use std::time::Duration;

/// Highest rate the pacer accepts, requests per second.
pub const MAX_RATE: f64 = 10_000_000.0;

/// When request `i` is due, relative to the start of the phase (rounded up to the next
/// nanosecond, so a request is never released early).
pub fn due_at(i: u64, rate: f64) -> Duration {
    let nanos = (i as f64 * 1e9 / rate.clamp(f64::MIN_POSITIVE, MAX_RATE)).ceil();
    if nanos >= u64::MAX as f64 {
        Duration::from_nanos(u64::MAX)
    } else {
        Duration::from_nanos(nanos as u64)
    }
}

/// How many of `total` requests are due `elapsed` after the start (request 0 is due at once).
pub fn due_count(elapsed: Duration, rate: f64, total: u64) -> u64 {
    if total == 0 {
        return 0;
    }
    let rate = rate.clamp(f64::MIN_POSITIVE, MAX_RATE);
    // Small epsilon: `due_at(i)` converted back must count request `i` as due.
    let due = (elapsed.as_secs_f64() * rate + 1e-9).floor();
    if due >= (total - 1) as f64 {
        total
    } else {
        due as u64 + 1
    }
}

/// How many requests a phase of `duration` at `rate` sends, at most `cap`.
pub fn total_requests(rate: f64, duration: Duration, cap: u64) -> u64 {
    let n = (rate.clamp(0.0, MAX_RATE) * duration.as_secs_f64()).round();
    if n >= cap as f64 { cap } else { n as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_is_due_at_once() {
        assert_eq!(due_at(0, 1000.0), Duration::ZERO);
        assert_eq!(due_count(Duration::ZERO, 1000.0, 10), 1);
    }

    #[test]
    fn requests_are_spaced_by_the_rate() {
        assert_eq!(due_at(1, 1000.0), Duration::from_millis(1));
        assert_eq!(due_at(250, 500.0), Duration::from_millis(500));
    }

    #[test]
    fn due_count_is_the_inverse_of_due_at() {
        let rate = 3333.0;
        for i in [1u64, 2, 17, 999, 3332] {
            let at = due_at(i, rate);
            assert_eq!(
                due_count(at, rate, u64::MAX),
                i + 1,
                "request {i} due at {at:?}"
            );
            if let Some(before) = at.checked_sub(Duration::from_micros(1)) {
                assert_eq!(due_count(before, rate, u64::MAX), i, "request {i} early");
            }
        }
    }

    #[test]
    fn due_count_never_exceeds_total() {
        assert_eq!(due_count(Duration::from_secs(100), 1000.0, 50), 50);
        assert_eq!(due_count(Duration::from_secs(1), 1000.0, 0), 0);
    }

    #[test]
    fn one_millisecond_tick_releases_a_burst() {
        // At 5000/s, five requests fall due per millisecond.
        assert_eq!(due_count(Duration::from_millis(1), 5000.0, 1000), 6);
        assert_eq!(due_count(Duration::from_millis(2), 5000.0, 1000), 11);
    }

    #[test]
    fn total_is_rate_times_duration_capped() {
        assert_eq!(
            total_requests(1000.0, Duration::from_secs(10), 1_000_000),
            10_000
        );
        assert_eq!(total_requests(1000.0, Duration::from_secs(10), 50), 50);
        assert_eq!(total_requests(0.0, Duration::from_secs(10), 50), 0);
    }
}
