//! User ids that carry their own revocation time, so the state of every user the broker made
//! lives in Nexus: `<prefix>-<revoke_unix>-<16 hex>`.
//!
//! The random part keeps two creations in the same second (or by two replicas) apart; the
//! strict shape keeps the sweeper off users people named alike (`svid-ci`, `SVID-1-...`): Nexus's
//! `userId` filter is a case-insensitive prefix match, so the listing also returns those.

use std::time::{SystemTime, UNIX_EPOCH};

/// Longest user id prefix: room for the time and the random part in a short database string.
pub(crate) const MAX_PREFIX_LEN: usize = 32;
/// Longest name field sent (the subject goes in `lastName`), in characters.
pub(crate) const MAX_NAME_CHARS: usize = 255;
/// Length of the random part (8 bytes as lowercase hex).
const RANDOM_HEX_LEN: usize = 16;
/// Most digits of the encoded Unix time (year 33658): anything longer is not ours.
const MAX_TIME_DIGITS: usize = 12;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// True when `prefix` is 1 to [`MAX_PREFIX_LEN`] runs of `[a-z0-9]` joined by single `.`, `_`
/// or `-`: safe in a URL path, an e-mail local part and a Basic auth user name.
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

/// A time as whole Unix seconds, rounded up (so the encoded time is never before the
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

/// The user id: `<prefix>-<revoke_unix>-<random as 16 hex>`.
pub(crate) fn user_id(prefix: &str, revoke_unix: u64, random: [u8; 8]) -> String {
    let mut id = format!("{prefix}-{revoke_unix}-");
    for byte in random {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

/// The revocation time encoded in a user id, when the id is exactly one this prefix makes.
pub(crate) fn encoded_revoke_time(prefix: &str, user_id: &str) -> Option<u64> {
    let rest = user_id.strip_prefix(prefix)?.strip_prefix('-')?;
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

/// A human hint for the user's `lastName`: the subject, control characters blanked, cut (with
/// `...`) to [`MAX_NAME_CHARS`]; never empty (Nexus requires the field).
pub(crate) fn subject_name(subject: &str) -> String {
    let clean: String = subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    if clean.is_empty() {
        return "unknown".to_owned();
    }
    if clean.chars().count() <= MAX_NAME_CHARS {
        return clean.to_owned();
    }
    let mut cut: String = clean.chars().take(MAX_NAME_CHARS - 3).collect();
    cut.push_str("...");
    cut
}

/// Characters of a generated password: 64 of them, so a random byte maps to one without bias
/// (`byte % 64`), and none that a shell, a URL or a Basic auth pair would mangle.
const PASSWORD_CHARS: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Random characters in a password (6 bits each: 216 bits).
pub(crate) const PASSWORD_RANDOM_CHARS: usize = 36;

/// A password from `random` (one byte per character) that meets the usual corporate rules a
/// Nexus `nexus.password.validator` regex enforces: it starts with one upper-case letter, one
/// lower-case letter, one digit and one symbol, then 36 random characters (40 in all).
pub(crate) fn password(random: &[u8; PASSWORD_RANDOM_CHARS]) -> zeroize::Zeroizing<String> {
    let mut text = zeroize::Zeroizing::new(String::with_capacity(4 + PASSWORD_RANDOM_CHARS));
    text.push_str("Aa0-");
    text.extend(
        random
            .iter()
            .map(|b| char::from(PASSWORD_CHARS[usize::from(*b % 64)])),
    );
    text
}
