//! Secret-holding types: zeroized on drop, redacted in `Debug`, no `Display`.

use std::fmt;

use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use svid_broker_identity::id::SpiffeId;
use zeroize::Zeroizing;

/// The private key of an X.509-SVID: unencrypted PKCS#8 DER (Workload API §5.2), zeroized on
/// drop. `Debug` prints only that it is redacted.
#[derive(Clone)]
pub struct SvidPrivateKey(Zeroizing<Vec<u8>>);

impl SvidPrivateKey {
    pub(crate) fn from_pkcs8_der(der: &[u8]) -> Self {
        Self(Zeroizing::new(der.to_vec()))
    }

    /// The PKCS#8 DER bytes. Do not log them.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.0
    }

    /// A rustls copy of the key, for a TLS client or server configuration. rustls zeroizes its
    /// own copy on drop.
    pub fn to_rustls(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.0.to_vec()))
    }
}

impl fmt::Debug for SvidPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SvidPrivateKey(<redacted>)")
    }
}

/// A JWT-SVID fetched from the Workload API. The token is a bearer credential: zeroized on drop;
/// `Debug` shows the SPIFFE ID, audiences and expiry, never the token.
#[derive(Clone)]
pub struct JwtSvidToken {
    token: Zeroizing<String>,
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
            token: Zeroizing::new(token.to_owned()),
            spiffe_id,
            audience,
            expiry,
        }
    }

    /// The compact JWS. Send it only to the audience it was minted for; never log it.
    pub fn expose_token(&self) -> &str {
        &self.token
    }

    /// The `sub` claim.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The `aud` claim.
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// The `exp` claim, seconds since the Unix epoch.
    pub fn expiry_unix(&self) -> i64 {
        self.expiry
    }
}

impl fmt::Debug for JwtSvidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSvidToken")
            .field("token", &"<redacted>")
            .field("spiffe_id", &self.spiffe_id)
            .field("audience", &self.audience)
            .field("expiry", &self.expiry)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let key = SvidPrivateKey::from_pkcs8_der(b"very-secret-key-bytes");
        assert_eq!(format!("{key:?}"), "SvidPrivateKey(<redacted>)");
        assert_eq!(key.pkcs8_der(), b"very-secret-key-bytes");

        let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
        let token = JwtSvidToken::new("eyJhbGciOi.secret.sig", id, vec!["aud".into()], 42);
        let shown = format!("{token:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("spiffe://example.org/w"), "{shown}");
        assert_eq!(token.expose_token(), "eyJhbGciOi.secret.sig");
    }
}
