//! Secret-holding types, built on the workspace's one secret type
//! ([`svid_broker_identity::secret`]): zeroized on drop, redacted in `Debug`, no `Display`.

use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use svid_broker_identity::id::SpiffeId;
use svid_broker_identity::secret::{ExposeSecret, SecretSlice, SecretString};

/// The private key of an X.509-SVID: unencrypted PKCS#8 DER (Workload API §5.2), zeroized on
/// drop. `Debug` prints only that it is redacted.
#[derive(Debug, Clone)]
pub struct SvidPrivateKey(SecretSlice<u8>);

impl SvidPrivateKey {
    pub(crate) fn from_pkcs8_der(der: &[u8]) -> Self {
        Self(SecretSlice::from(der.to_vec()))
    }

    /// The PKCS#8 DER bytes. Do not log them.
    pub fn pkcs8_der(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// A rustls copy of the key, for a TLS client or server configuration. rustls zeroizes its
    /// own copy on drop.
    pub fn to_rustls(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8_der().to_vec()))
    }
}

/// A JWT-SVID fetched from the Workload API. The token is a bearer credential: zeroized on drop;
/// `Debug` shows the SPIFFE ID, audiences and expiry, never the token, which comes out only
/// through [`ExposeSecret::expose_secret`]. Send it only to the audience it was minted for.
#[derive(Debug, Clone)]
pub struct JwtSvidToken {
    token: SecretString,
    spiffe_id: SpiffeId,
    audience: Vec<String>,
    expiry: i64,
}

impl JwtSvidToken {
    pub(crate) fn new(
        token: &str,
        spiffe_id: SpiffeId,
        audience: Vec<String>,
        expiry: i64,
    ) -> Self {
        Self {
            token: SecretString::from(token),
            spiffe_id,
            audience,
            expiry,
        }
    }

    /// The `sub` claim as the `spiffe` crate decoded it, re-checked by [`SpiffeId::parse`].
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The `aud` claim as the `spiffe` crate decoded it, always as a list.
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// The `exp` claim, seconds since the Unix epoch.
    pub fn expiry_unix(&self) -> i64 {
        self.expiry
    }
}

impl ExposeSecret<str> for JwtSvidToken {
    /// The compact JWS. Never log it.
    fn expose_secret(&self) -> &str {
        self.token.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let key = SvidPrivateKey::from_pkcs8_der(b"very-secret-key-bytes");
        let shown = format!("{key:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
        assert_eq!(key.pkcs8_der(), b"very-secret-key-bytes");

        let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
        let token = JwtSvidToken::new("eyJhbGciOi.secret.sig", id, vec!["aud".into()], 42);
        let shown = format!("{token:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("spiffe://example.org/w"), "{shown}");
        assert_eq!(token.expose_secret(), "eyJhbGciOi.secret.sig");
    }
}
