//! The dev CA's private-key holder, built on the workspace's one secret type
//! ([`svid_broker_identity::secret`]; bearer tokens are plain [`SecretString`]s): wiped on
//! drop, never printed.

use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
#[cfg(doc)]
use svid_broker_identity::secret::SecretString;
use svid_broker_identity::secret::{ExposeSecret, SecretSlice, seal_bytes};
use zeroize::Zeroizing;

/// An unencrypted PKCS#8 DER private key.
///
/// The bytes are wiped when the value is dropped and `Debug` prints only a placeholder, so an
/// SVID can be logged with `{:?}` without leaking its key.
#[derive(Debug, Clone)]
pub struct SecretKeyDer(SecretSlice<u8>);

impl SecretKeyDer {
    pub(crate) fn new(pkcs8_der: Zeroizing<Vec<u8>>) -> Self {
        Self(seal_bytes(pkcs8_der))
    }

    /// The PKCS#8 DER bytes (what the Workload API sends as `x509_svid_key`).
    pub fn pkcs8_der(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// A copy of the key (PKCS#8) for rustls.
    ///
    /// The copy is a plain `rustls-pki-types` value that does not zeroize itself; keep it only as
    /// long as the TLS configuration needs it.
    pub fn to_rustls(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8_der().to_vec()))
    }

    /// The key as a PEM `PRIVATE KEY` block.
    pub fn to_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem_block("PRIVATE KEY", self.pkcs8_der()))
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
    fn debug_never_shows_the_key() {
        let key = SecretKeyDer::new(Zeroizing::new(b"very-secret-key-bytes".to_vec()));
        let shown = format!("{key:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
        assert_eq!(key.pkcs8_der(), b"very-secret-key-bytes");
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
