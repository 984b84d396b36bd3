//! Latency samples and their percentiles: a plain sorted `Vec` of durations (nearest-rank
//! percentiles), which is exact and, at the sample counts of one run, small.

use std::time::Duration;

use serde::Serialize;

/// Most samples one phase keeps; further requests are counted but not timed, so a long run
/// cannot grow memory without bound (16 bytes a sample: 64 MiB).
pub const MAX_SAMPLES: usize = 4 * 1024 * 1024;

/// The latencies of one phase, in the order they were recorded.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    values: Vec<Duration>,
    dropped: u64,
}

impl Samples {
    /// An empty set: nothing recorded, nothing dropped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one latency (counted but not kept beyond [`MAX_SAMPLES`]).
    pub fn record(&mut self, latency: Duration) {
        if self.values.len() < MAX_SAMPLES {
            self.values.push(latency);
        } else {
            self.dropped += 1;
        }
    }

    /// Moves every sample of `other` into `self`.
    pub fn merge(&mut self, other: Samples) {
        self.dropped += other.dropped;
        for v in other.values {
            self.record(v);
        }
    }

    /// Samples kept.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no sample was kept.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Sorts the samples and summarizes them.
    pub fn summarize(mut self) -> Summary {
        self.values.sort_unstable();
        let sorted = &self.values;
        let total: Duration = sorted.iter().sum();
        let mean = u32::try_from(sorted.len())
            .ok()
            .filter(|n| *n > 0)
            .map_or(Duration::ZERO, |n| total / n);
        Summary {
            count: sorted.len() as u64 + self.dropped,
            p50: percentile(sorted, 50.0).unwrap_or_default(),
            p99: percentile(sorted, 99.0).unwrap_or_default(),
            max: sorted.last().copied().unwrap_or_default(),
            mean,
        }
    }
}

/// The nearest-rank percentile `p` (0 < p <= 100) of `sorted` (ascending): the smallest sample
/// such that at least `p`% of the samples are at or below it. `None` when empty or `p` is out
/// of range.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let n = sorted.len() as f64;
    // Rank counts from 1; the float product can land a hair above an integer (99% of 100 =
    // 99.00000000000001), which `ceil` would push one rank too far.
    let rank = ((p / 100.0) * n - 1e-9).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// A phase's latency distribution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Requests timed (including those beyond [`MAX_SAMPLES`], which are not in the
    /// percentiles).
    pub count: u64,
    /// Median.
    #[serde(serialize_with = "as_micros")]
    pub p50: Duration,
    /// 99th percentile.
    #[serde(serialize_with = "as_micros")]
    pub p99: Duration,
    /// Slowest.
    #[serde(serialize_with = "as_micros")]
    pub max: Duration,
    /// Arithmetic mean.
    #[serde(serialize_with = "as_micros")]
    pub mean: Duration,
}

fn as_micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn one_to(n: u64) -> Vec<Duration> {
        (1..=n).map(ms).collect()
    }

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        let s = one_to(100);
        assert_eq!(percentile(&s, 50.0), Some(ms(50)));
        assert_eq!(percentile(&s, 99.0), Some(ms(99)));
        assert_eq!(percentile(&s, 100.0), Some(ms(100)));
        assert_eq!(percentile(&s, 1.0), Some(ms(1)));
    }

    #[test]
    fn nearest_rank_rounds_up_between_ranks() {
        // 10 samples: p50 is rank 5, p99 is rank ceil(9.9) = 10, p51 is rank ceil(5.1) = 6.
        let s = one_to(10);
        assert_eq!(percentile(&s, 50.0), Some(ms(5)));
        assert_eq!(percentile(&s, 51.0), Some(ms(6)));
        assert_eq!(percentile(&s, 99.0), Some(ms(10)));
    }

    #[test]
    fn single_sample_is_every_percentile() {
        let s = [ms(7)];
        assert_eq!(percentile(&s, 0.1), Some(ms(7)));
        assert_eq!(percentile(&s, 99.0), Some(ms(7)));
    }

    #[test]
    fn empty_or_out_of_range_has_no_percentile() {
        assert_eq!(percentile(&[], 50.0), None);
        let s = one_to(3);
        assert_eq!(percentile(&s, 0.0), None);
        assert_eq!(percentile(&s, 100.5), None);
        assert_eq!(percentile(&s, f64::NAN), None);
    }

    #[test]
    fn summarize_sorts_unordered_samples() {
        let mut samples = Samples::new();
        for v in [5, 1, 4, 2, 3] {
            samples.record(ms(v));
        }
        let summary = samples.summarize();
        assert_eq!(summary.count, 5);
        assert_eq!(summary.p50, ms(3));
        assert_eq!(summary.p99, ms(5));
        assert_eq!(summary.max, ms(5));
        assert_eq!(summary.mean, ms(3));
    }

    #[test]
    fn merge_keeps_every_sample() {
        let mut a = Samples::new();
        a.record(ms(1));
        let mut b = Samples::new();
        b.record(ms(9));
        b.record(ms(2));
        a.merge(b);
        assert_eq!(a.len(), 3);
        assert_eq!(a.summarize().max, ms(9));
    }

    #[test]
    fn empty_summary_is_zero() {
        let summary = Samples::new().summarize();
        assert_eq!(summary, Summary::default());
    }
}
