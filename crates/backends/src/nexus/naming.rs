//! Nexus's side of the broker's names (see [`crate::naming`]): the user id is
//! `<prefix>-<revoke_unix>-<16 hex>`, and its strict shape also keeps the sweeper off users
//! named alike in another case (`SVID-1-...`): Nexus's `userId` filter is a case-insensitive
//! prefix match, so the listing returns those too. The subject goes in `lastName`, and the
//! password is generated here.

use crate::naming::{blank_controls, cap_chars};

/// Longest name field sent (the subject goes in `lastName`), in characters.
pub(crate) const MAX_NAME_CHARS: usize = 255;

/// A human hint for the user's `lastName`: the subject, control characters blanked, cut (with
/// `...`) to [`MAX_NAME_CHARS`]; never empty (Nexus requires the field).
pub(crate) fn subject_name(subject: &str) -> String {
    let clean = blank_controls(subject);
    let clean = clean.trim();
    if clean.is_empty() {
        return "unknown".to_owned();
    }
    cap_chars(clean, MAX_NAME_CHARS)
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
