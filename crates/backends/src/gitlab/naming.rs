//! Deploy token names that carry their own revocation time, so the state of every credential
//! the broker made lives in GitLab: `<prefix>-<revoke_unix>-<16 hex>`, used as both the
//! token's name and its username (so whoever reads a registry log sees what it is).
//!
//! The random part keeps two creations in the same second (or by two replicas) apart; the
//! strict shape keeps the sweeper off tokens people named alike (`svid-ci`,
//! `svid-2024-backup`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use svid_broker_identity::clock::Rfc3339;

/// Longest name prefix: it shares the name with the time and the random part, and a short
/// prefix keeps names readable in GitLab's UI.
pub(crate) const MAX_PREFIX_LEN: usize = 32;
/// Length of the random part (8 bytes as lowercase hex).
const RANDOM_HEX_LEN: usize = 16;
/// Most digits of the encoded Unix time (year 33658): anything longer is not ours.
const MAX_TIME_DIGITS: usize = 12;

/// True when `prefix` is 1 to [`MAX_PREFIX_LEN`] runs of `[a-z0-9]` joined by single `.`,
/// `_` or `-`: inside GitLab's deploy token username rule (`[a-zA-Z0-9.+_-]`, at most 255).
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
        return false;
    }
    let mut previous_was_separator = true; // No separator first.
    for byte in prefix.bytes() {
        let separator = matches!(byte, b'.' | b'_' | b'-');
        if separator && previous_was_separator {
            return false;
        }
        if !separator && !byte.is_ascii_lowercase() && !byte.is_ascii_digit() {
            return false;
        }
        previous_was_separator = separator;
    }
    !previous_was_separator
}

/// A time as whole Unix seconds, rounded up (so a token's encoded time and GitLab's expiry are
/// never before the revocation time the caller was told); times before 1970 count as 0.
pub(crate) fn unix_seconds_ceil(at: SystemTime) -> u64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs() + u64::from(since.subsec_nanos() > 0),
        Err(_) => 0,
    }
}

/// A time as whole Unix seconds, rounded down; times before 1970 count as 0.
pub(crate) fn unix_seconds_floor(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Whole Unix seconds as RFC 3339 UTC (`2026-12-03T08:15:00Z`), GitLab's `expires_at` input.
pub(crate) fn rfc3339_seconds(unix: u64) -> String {
    Rfc3339(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// The token's name: `<prefix>-<revoke_unix>-<random as 16 hex>`.
pub(crate) fn token_name(prefix: &str, revoke_unix: u64, random: [u8; 8]) -> String {
    let mut name = format!("{prefix}-{revoke_unix}-");
    for byte in random {
        name.push(char::from(HEX[usize::from(byte >> 4)]));
        name.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    name
}

/// The revocation time encoded in a token's name, when the token is one this prefix names.
pub(crate) fn encoded_revoke_time(prefix: &str, name: &str) -> Option<u64> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let (time, random) = rest.split_once('-')?;
    let time_ok = !time.is_empty()
        && time.len() <= MAX_TIME_DIGITS
        && time.bytes().all(|b| b.is_ascii_digit());
    let random_ok = random.len() == RANDOM_HEX_LEN && random.bytes().all(|b| HEX.contains(&b));
    if time_ok && random_ok {
        time.parse().ok()
    } else {
        None
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";
