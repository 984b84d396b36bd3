//! Credential names that carry their own revocation time, so the state of every credential
//! the broker made lives in the registry: `<prefix>-<revoke_unix>-<16 hex>` (a Harbor robot's
//! local name, a GitLab deploy token's name and username, a Nexus user id).
//!
//! The random part keeps two creations in the same second (or by two replicas) apart; the
//! strict shape keeps the sweeper off credentials people named alike (`svid-ci`,
//! `svid-2024-backup`).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::ConfigProblem;

/// Longest name prefix: it shares the registry's short name field with the time and the
/// random part, and a short prefix keeps names readable in the registry's UI.
pub(crate) const MAX_PREFIX_LEN: usize = 32;
/// Length of the random part (8 bytes as lowercase hex).
const RANDOM_HEX_LEN: usize = 16;
/// Most digits of the encoded Unix time (year 33658): anything longer is not ours.
const MAX_TIME_DIGITS: usize = 12;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// True when `prefix` is 1 to [`MAX_PREFIX_LEN`] runs of `[a-z0-9]` joined by single `.`,
/// `_` or `-`: Harbor's robot name rule (`^[a-z0-9]+(?:[._-][a-z0-9]+)*$`,
/// `src/server/v2.0/handler/robot.go` `validateName`), inside GitLab's deploy token username
/// rule (`[a-zA-Z0-9.+_-]`, at most 255), and safe in a URL path, an e-mail local part and a
/// Basic auth user name (Nexus).
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

/// [`ConfigProblem::InvalidRobotPrefix`] unless `prefix` is [`valid_prefix`].
pub(crate) fn check_prefix(prefix: &str) -> Result<(), ConfigProblem> {
    if valid_prefix(prefix) {
        Ok(())
    } else {
        Err(ConfigProblem::InvalidRobotPrefix {
            prefix: prefix.to_owned(),
            max: MAX_PREFIX_LEN,
        })
    }
}

/// A time as whole Unix seconds, rounded up (so an encoded time, and a registry-side expiry,
/// is never before the revocation time the caller was told); times before 1970 count as 0.
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

/// The name: `<prefix>-<revoke_unix>-<random as 16 hex>`.
pub(crate) fn timed_name(prefix: &str, revoke_unix: u64, random: [u8; 8]) -> String {
    let mut name = format!("{prefix}-{revoke_unix}-");
    for byte in random {
        name.push(char::from(HEX[usize::from(byte >> 4)]));
        name.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    name
}

/// The revocation time encoded in `name`, when it is exactly a name this prefix makes.
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

/// `text` with every control character blanked: they would only garble the registry's UI,
/// and a SPIFFE ID has none.
pub(crate) fn blank_controls(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `text` when it has at most `max` characters (`max` at least 3), otherwise its first
/// `max - 3` characters and `...`.
pub(crate) fn cap_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 3).collect();
    cut.push_str("...");
    cut
}

#[cfg(test)]
mod tests;
