//! Throttles: the per-subject rate limiter, the per-address budget of failed
//! authentications, and the aggregation of refusals before authentication (so one client
//! sending garbage writes a few audit lines per interval, not one per request). All take the
//! time from the caller, so tests are deterministic.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use svid_broker_identity::SpiffeId;

use crate::error::ErrorCode;
use crate::request::Endpoint;

/// Most subjects tracked by the rate limiter; past it, full buckets are forgotten first and,
/// if none is full, the table is cleared (a flood of identities must not grow memory).
pub const MAX_RATE_LIMITED_SUBJECTS: usize = 100_000;

/// Token-bucket settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Refill rate: tokens added per second to each key's bucket (a subject or an address).
    pub per_second: f64,
    /// Bucket size: requests a full bucket admits at once; a new key starts full.
    pub burst: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: SystemTime,
}

/// A token bucket per key (a SPIFFE ID for the per-subject limit, an IP address for the
/// limit on failed authentications). Time comes from the caller, so tests are deterministic.
#[derive(Debug)]
pub struct RateLimiter<K = SpiffeId> {
    limit: Option<RateLimit>,
    max_keys: usize,
    buckets: Mutex<BucketTable<K>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter tracking at most [`MAX_RATE_LIMITED_SUBJECTS`] keys; `None` never limits.
    pub fn new(limit: Option<RateLimit>) -> Self {
        Self::with_max_keys(limit, MAX_RATE_LIMITED_SUBJECTS)
    }

    /// A limiter tracking at most `max_keys` keys.
    pub fn with_max_keys(limit: Option<RateLimit>, max_keys: usize) -> Self {
        Self {
            limit,
            max_keys: max_keys.max(1),
            buckets: Mutex::new(BucketTable {
                keys: HashMap::new(),
                overflow: None,
            }),
        }
    }

    /// Takes one token for `key` at `now`; on refusal returns how long until one is
    /// available.
    ///
    /// # Errors
    /// The wait, when the bucket is empty.
    pub fn check(&self, key: &K, now: SystemTime) -> Result<(), Duration> {
        self.bucket(key, now, true)
    }

    /// Whether `key` has a token at `now`, without taking it.
    ///
    /// # Errors
    /// The wait, when the bucket is empty.
    pub fn peek(&self, key: &K, now: SystemTime) -> Result<(), Duration> {
        self.bucket(key, now, false)
    }

    fn bucket(&self, key: &K, now: SystemTime, take: bool) -> Result<(), Duration> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let mut table = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !table.keys.contains_key(key) {
            if table.keys.len() >= self.max_keys {
                // Full buckets carry no state worth keeping: forgetting them changes no answer.
                table
                    .keys
                    .retain(|_, b| refilled(b, limit, now) < limit.burst);
            }
            if table.keys.len() >= self.max_keys {
                // Every tracked key is still paying for recent requests. Evicting any would
                // hand it a fresh budget (an attacker with many addresses could then reset
                // the ones already limited), so new keys share one overflow bucket instead.
                if !take && table.overflow.is_none() {
                    return Ok(());
                }
                let bucket = table.overflow.get_or_insert(Bucket {
                    tokens: limit.burst,
                    at: now,
                });
                return spend(bucket, limit, now, take);
            }
            if !take {
                // An unknown key has a full bucket; peeking must not grow the table.
                return Ok(());
            }
        }
        let bucket = table.keys.entry(key.clone()).or_insert(Bucket {
            tokens: limit.burst,
            at: now,
        });
        spend(bucket, limit, now, take)
    }
}

/// The tokens `bucket` holds at `now` (a clock that went back refills nothing).
fn refilled(bucket: &Bucket, limit: RateLimit, now: SystemTime) -> f64 {
    let elapsed = now.duration_since(bucket.at).unwrap_or_default();
    (bucket.tokens + elapsed.as_secs_f64() * limit.per_second).min(limit.burst)
}

/// Refills `bucket` to `now` and, when `take`, spends one token; on refusal returns how long
/// until one is available.
fn spend(
    bucket: &mut Bucket,
    limit: RateLimit,
    now: SystemTime,
    take: bool,
) -> Result<(), Duration> {
    bucket.tokens = refilled(bucket, limit, now);
    bucket.at = bucket.at.max(now);
    if bucket.tokens >= 1.0 {
        if take {
            bucket.tokens -= 1.0;
        }
        Ok(())
    } else {
        let wait = (1.0 - bucket.tokens) / limit.per_second;
        Err(Duration::from_secs_f64(wait.clamp(0.0, 3600.0)))
    }
}

/// A limiter's buckets: one per tracked key, and the one new keys share once the table is full
/// of keys that are not.
#[derive(Debug)]
struct BucketTable<K> {
    keys: HashMap<K, Bucket>,
    overflow: Option<Bucket>,
}

/// Most source addresses the failed-authentication limiter tracks; past it, full buckets are
/// forgotten first, and new addresses share one overflow bucket while the table stays full.
pub const MAX_PREAUTH_TRACKED_IPS: usize = 16_384;
/// Most distinct (peer, endpoint, reason) keys aggregated per interval; past it, further
/// denials are counted under one overflow key without a peer.
pub const MAX_PREAUTH_AGGREGATES: usize = 1024;
/// Default length of a pre-authentication aggregation interval.
pub const DEFAULT_PREAUTH_AUDIT_INTERVAL: Duration = Duration::from_secs(10);
/// The audit `event` of a pre-authentication summary.
pub const PREAUTH_SUMMARY_EVENT: &str = "svid-broker.preauth_denials";
/// The `reason` denials share once [`MAX_PREAUTH_AGGREGATES`] keys are tracked.
const PREAUTH_OVERFLOW_REASON: &str = "other (aggregation table full)";

/// What a pre-authentication denial is aggregated by: fixed labels and the address, never
/// caller-chosen text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PreauthKey {
    /// The address key (IPv4, or the IPv6 /64); `None` for an unknown peer or the overflow key.
    pub peer: Option<IpAddr>,
    /// The edge it came in at (realm `GET`/`POST`, `/oauth2/token`, or gRPC).
    pub endpoint: Endpoint,
    /// [`ExchangeKind::label`](crate::request::ExchangeKind::label) of what was asked for.
    pub kind: &'static str,
    /// The class of the answer sent (resource exhausted when the address's budget was spent).
    pub code: ErrorCode,
    /// The short reason (the error's `Display`, which never carries request text).
    pub reason: String,
}

/// One aggregated key at the end of an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreauthSummary {
    /// What the denials were aggregated by.
    pub key: PreauthKey,
    /// Denials in the interval (including the first one, audited in full).
    pub count: u64,
    /// The configured interval length, not the time that actually elapsed.
    pub interval: Duration,
}

#[derive(Debug)]
struct PreauthWindow {
    start: Option<SystemTime>,
    counts: HashMap<PreauthKey, u64>,
}

/// Aggregates denials that happen before a subject is authenticated: the first of each key
/// in an interval is audited (and logged) in full; the rest only count, and one summary per
/// key with more than one denial is audited when the interval ends. One client sending
/// garbage thus writes a few lines per interval, not one per request.
#[derive(Debug)]
pub struct PreauthDenials {
    interval: Duration,
    window: Mutex<PreauthWindow>,
}

impl PreauthDenials {
    /// An aggregator with intervals of `interval` (at least one second).
    pub fn new(interval: Duration) -> Self {
        Self {
            interval: interval.max(Duration::from_secs(1)),
            window: Mutex::new(PreauthWindow {
                start: None,
                counts: HashMap::new(),
            }),
        }
    }

    /// Counts one denial at `now`. Returns whether it is the first of its key in the
    /// interval (then the caller audits and logs it in full), and the summaries of the
    /// interval that `now` ended, if any.
    pub fn note(&self, mut key: PreauthKey, now: SystemTime) -> (bool, Vec<PreauthSummary>) {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let flushed = Self::roll(&mut window, self.interval, now);
        if window.counts.len() >= MAX_PREAUTH_AGGREGATES && !window.counts.contains_key(&key) {
            key = PreauthKey {
                peer: None,
                endpoint: key.endpoint,
                kind: key.kind,
                code: key.code,
                reason: PREAUTH_OVERFLOW_REASON.to_owned(),
            };
            // The overflow key's own first denial is not audited in full either: a flood of
            // addresses must not turn into a flood of lines.
            *window.counts.entry(key).or_insert(0) += 1;
            return (false, flushed);
        }
        let count = window.counts.entry(key).or_insert(0);
        *count += 1;
        (*count == 1, flushed)
    }

    /// The summaries of an interval that ended by `now` (nothing otherwise), for a periodic
    /// flush when no denial comes to trigger one.
    pub fn flush_due(&self, now: SystemTime) -> Vec<PreauthSummary> {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        Self::roll(&mut window, self.interval, now)
    }

    fn roll(
        window: &mut PreauthWindow,
        interval: Duration,
        now: SystemTime,
    ) -> Vec<PreauthSummary> {
        let Some(start) = window.start else {
            window.start = Some(now);
            return Vec::new();
        };
        // A clock that went back ends the interval too, rather than holding counts forever.
        let ended = now
            .duration_since(start)
            .map_or(true, |elapsed| elapsed >= interval);
        if !ended {
            return Vec::new();
        }
        window.start = Some(now);
        let mut out: Vec<PreauthSummary> = window
            .counts
            .drain()
            // A key seen once was audited in full already; the overflow key never was.
            .filter(|(key, count)| *count > 1 || key.reason == PREAUTH_OVERFLOW_REASON)
            .map(|(key, count)| PreauthSummary {
                key,
                count,
                interval,
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.count));
        out
    }
}

#[cfg(test)]
mod tests;
