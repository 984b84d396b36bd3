//! The workspace's one secret type: [`secrecy`]'s [`SecretString`] and [`SecretBox`], re-exported
//! here so every crate names the same types (and the [`ExposeSecret`] trait that reads them)
//! through the crate they all depend on.
//!
//! A secret is wiped on drop (through `zeroize`), its `Debug` prints only `[REDACTED]`, and it
//! has no `Display`, so it cannot reach a log line by accident. A named secret (a registry
//! token, a private key) wraps one of these and derives `Debug`; no crate writes its own
//! redaction. Reading the text is always a visible `expose_secret()` call.
//!
//! [`seal_string`] and [`seal_bytes`] move text that was built in a [`Zeroizing`] buffer into a
//! secret without leaving a copy behind.

use zeroize::Zeroizing;

pub use secrecy::{ExposeSecret, SecretBox, SecretSlice, SecretString};

/// Moves `text` into a [`SecretString`], leaving no unwiped copy.
///
/// `SecretString::from(String)` shrinks the buffer to its length first, which may move it and
/// leave the old allocation unwiped. This copies the text into an allocation of exactly its
/// length (which the shrink keeps in place) and wipes `text` when it drops.
pub fn seal_string(text: Zeroizing<String>) -> SecretString {
    let mut exact = String::with_capacity(text.len());
    exact.push_str(&text);
    drop(text); // Wipes the original.
    SecretString::from(exact)
}

/// Moves `bytes` into a [`SecretSlice`], leaving no unwiped copy (see [`seal_string`]).
pub fn seal_bytes(bytes: Zeroizing<Vec<u8>>) -> SecretSlice<u8> {
    let mut exact = Vec::with_capacity(bytes.len());
    exact.extend_from_slice(&bytes);
    drop(bytes); // Wipes the original.
    SecretSlice::from(exact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_keep_their_text_and_never_print_it() {
        let mut built = Zeroizing::new(String::with_capacity(64));
        built.push_str("hunter2-very-secret");
        let text = seal_string(built);
        assert_eq!(text.expose_secret(), "hunter2-very-secret");
        let bytes = seal_bytes(Zeroizing::new(b"key-bytes-secret".to_vec()));
        assert_eq!(bytes.expose_secret(), b"key-bytes-secret");
        let shown = format!("{text:?} {bytes:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }
}
