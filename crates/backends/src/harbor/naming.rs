//! Robot names that carry their own revocation time, so the state of every credential the
//! broker made lives in Harbor: `<prefix>-<revoke_unix>-<16 hex>` (the project robot's full
//! name is `robot$<project>+<that>`).
//!
//! The random part keeps two creations in the same second (or by two replicas) apart; the
//! strict shape keeps the sweeper off robots people named alike (`svid-ci`,
//! `svid-2024-backup`).

use std::time::{SystemTime, UNIX_EPOCH};

use svid_broker_identity::clock::Rfc3339;

/// Longest robot name prefix: Harbor's robot names are short database strings, and the prefix
/// shares them with the time and the random part.
pub(crate) const MAX_PREFIX_LEN: usize = 32;
/// Longest robot description, in characters: a human hint, not state, so a long SPIFFE ID is
/// cut rather than letting the description grow with it.
pub(crate) const MAX_DESCRIPTION_CHARS: usize = 255;
/// Length of the random part (8 bytes as lowercase hex).
const RANDOM_HEX_LEN: usize = 16;
/// Most digits of the encoded Unix time (year 33658): anything longer is not ours.
const MAX_TIME_DIGITS: usize = 12;

/// True when `prefix` follows Harbor's robot name rule (`^[a-z0-9]+(?:[._-][a-z0-9]+)*$`,
/// `src/server/v2.0/handler/robot.go` `validateName`) and is at most [`MAX_PREFIX_LEN`] long.
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

/// A time as whole Unix seconds, rounded up (so a robot's encoded time is never before the
/// revocation time the caller was told); times before 1970 count as 0.
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

/// The robot's (local) name: `<prefix>-<revoke_unix>-<random as 16 hex>`.
pub(crate) fn robot_name(prefix: &str, revoke_unix: u64, random: [u8; 8]) -> String {
    let mut name = format!("{prefix}-{revoke_unix}-");
    for byte in random {
        name.push(char::from(HEX[usize::from(byte >> 4)]));
        name.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    name
}

/// The revocation time encoded in a robot's name, when the robot is one this prefix names.
///
/// `name` may be the full name (`robot$team-a+svid-...`: the part after the last `+` is read,
/// and Harbor's robot names cannot contain `+`) or the local one.
pub(crate) fn encoded_revoke_time(prefix: &str, name: &str) -> Option<u64> {
    let local = name.rsplit_once('+').map_or(name, |(_, local)| local);
    let rest = local.strip_prefix(prefix)?.strip_prefix('-')?;
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

/// The robot's description: `svid-broker: <SPIFFE ID> until <RFC 3339>`, the ID cut (with
/// `...`) so the whole stays within [`MAX_DESCRIPTION_CHARS`].
pub(crate) fn robot_description(subject: &str, revoke_at: SystemTime) -> String {
    const HEAD: &str = "svid-broker: ";
    let tail = format!(" until {}", Rfc3339(revoke_at));
    let room = MAX_DESCRIPTION_CHARS - HEAD.len() - tail.len();
    let mut text = String::from(HEAD);
    // Control characters would only garble the registry's UI; a SPIFFE ID has none.
    let subject: String = subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if subject.chars().count() <= room {
        text.push_str(&subject);
    } else {
        text.extend(subject.chars().take(room - 3));
        text.push_str("...");
    }
    text.push_str(&tail);
    text
}

const HEX: &[u8; 16] = b"0123456789abcdef";
