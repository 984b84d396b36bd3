//! Holders for private keys and bearer tokens: zeroized on drop, never printed.

use std::fmt;

use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

/// An unencrypted PKCS#8 DER private key.
///
/// The bytes are wiped when the value is dropped and `Debug` prints only a placeholder, so an
/// SVID can be logged with `{:?}` without leaking its key.
#[derive(Clone)]
pub struct SecretKeyDer(Zeroizing<Vec<u8>>);

impl SecretKeyDer {
    pub(crate) fn new(pkcs8_der: Zeroizing<Vec<u8>>) -> Self {
        Self(pkcs8_der)
    }

    /// The PKCS#8 DER bytes (what the Workload API sends as `x509_svid_key`).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.0
    }

    /// A copy of the key for rustls.
    ///
    /// The copy is a plain `rustls-pki-types` value that does not zeroize itself; keep it only as
    /// long as the TLS configuration needs it.
    pub fn to_rustls(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.0.to_vec()))
    }

    /// The key as a PEM `PRIVATE KEY` block.
    pub fn to_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem_block("PRIVATE KEY", &self.0))
    }
}

impl fmt::Debug for SecretKeyDer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKeyDer([redacted])")
    }
}

/// A compact-serialized JWT (a bearer token): wiped on drop, never printed by `Debug`.
#[derive(Clone)]
pub struct SecretToken(Zeroizing<String>);

impl SecretToken {
    pub(crate) fn new(token: String) -> Self {
        Self(Zeroizing::new(token))
    }

    /// The token text, to put into a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken([redacted])")
    }
}

/// Encodes one PEM block with 64-column lines (RFC 7468 strict form).
pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk boundary is a char boundary.
        out.extend(line.iter().map(|&b| char::from(b)));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_or_token() {
        let key = SecretKeyDer::new(Zeroizing::new(b"very-secret-key-bytes".to_vec()));
        let token = SecretToken::new("eyJhbGciOiJFUzI1NiJ9.secret.sig".to_owned());
        let shown = format!("{key:?} {token:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("[redacted]"));
        assert_eq!(key.pkcs8_der(), b"very-secret-key-bytes");
        assert_eq!(token.expose(), "eyJhbGciOiJFUzI1NiJ9.secret.sig");
    }

    #[test]
    fn pem_block_wraps_at_64_columns() {
        let pem = pem_block("CERTIFICATE", &[0u8; 100]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines.first(), Some(&"-----BEGIN CERTIFICATE-----"));
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
        assert_eq!(lines.get(1).map(|l| l.len()), Some(64));
        assert!(lines.iter().all(|l| l.len() <= 64));
    }
}
