//! Writes the SPIFFE bundle document (SPIFFE Trust Domain and Bundle §4) and the plain JWKS the
//! Workload API sends for JWT bundles.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};

/// Length of an uncompressed P-256 point: `0x04 || x || y`.
const P256_POINT_LEN: usize = 65;
const P256_COORD_LEN: usize = 32;

/// Splits an uncompressed P-256 point into base64url `x` and `y`.
pub(crate) fn split_p256_point(point: &[u8]) -> Option<(String, String)> {
    if point.len() != P256_POINT_LEN || point.first() != Some(&0x04) {
        return None;
    }
    let x = point.get(1..1 + P256_COORD_LEN)?;
    let y = point.get(1 + P256_COORD_LEN..)?;
    Some((URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y)))
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url) of a P-256 key: a stable `kid` derived from the
/// key itself, so two keys never share a `kid`.
pub(crate) fn p256_thumbprint(x: &str, y: &str) -> String {
    // RFC 7638 §3.2: required members only, lexicographic order, no whitespace.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// The public half of a JWT signing key, ready for a JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JwtPublicJwk {
    pub(crate) kid: String,
    pub(crate) x: String,
    pub(crate) y: String,
}

impl JwtPublicJwk {
    pub(crate) fn from_point(kid: &str, point: &[u8]) -> Option<Self> {
        let (x, y) = split_p256_point(point)?;
        Some(Self {
            kid: kid.to_owned(),
            x,
            y,
        })
    }

    fn to_value(&self) -> Value {
        json!({
            "kty": "EC",
            "use": "jwt-svid",
            "kid": self.kid,
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
        })
    }
}

/// The full SPIFFE bundle document: one `x509-svid` JWK per root (with `x5c`), one `jwt-svid` JWK
/// per JWT key (`roots` pairs each root with its uncompressed public point), `spiffe_sequence` and `spiffe_refresh_hint` (whole seconds).
pub(crate) fn bundle_document(
    roots: &[(CertificateDer<'_>, Vec<u8>)],
    jwt_keys: &[JwtPublicJwk],
    sequence: u64,
    refresh_hint: Duration,
) -> String {
    let mut keys: Vec<Value> = Vec::with_capacity(roots.len() + jwt_keys.len());
    for (root, point) in roots {
        // The dev CA only ever makes P-256 roots, so a root without a P-256 point cannot occur;
        // skipping it keeps the document parseable rather than emitting a half JWK.
        if let Some((x, y)) = split_p256_point(point) {
            keys.push(json!({
                "kty": "EC",
                "use": "x509-svid",
                "crv": "P-256",
                "x": x,
                "y": y,
                "x5c": [STANDARD.encode(root.as_ref())],
            }));
        }
    }
    keys.extend(jwt_keys.iter().map(JwtPublicJwk::to_value));
    json!({
        "keys": keys,
        "spiffe_sequence": sequence,
        "spiffe_refresh_hint": refresh_hint.as_secs(),
    })
    .to_string()
}

/// A plain JWKS with just the JWT keys, as SPIRE's `FetchJWTBundles` sends it: the `spiffe`
/// crate (and other Workload API clients) require a `kid` on every key, which X.509 authorities
/// do not have.
pub(crate) fn jwt_only_jwks(jwt_keys: &[JwtPublicJwk]) -> String {
    let keys: Vec<Value> = jwt_keys.iter().map(JwtPublicJwk::to_value).collect();
    json!({ "keys": keys }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_accepts_only_uncompressed_p256() {
        let mut point = vec![0x04];
        point.extend([1u8; 32]);
        point.extend([2u8; 32]);
        let (x, y) = split_p256_point(&point).expect("valid point");
        assert_eq!(URL_SAFE_NO_PAD.decode(x).unwrap(), vec![1u8; 32]);
        assert_eq!(URL_SAFE_NO_PAD.decode(y).unwrap(), vec![2u8; 32]);

        point[0] = 0x02;
        assert_eq!(split_p256_point(&point), None, "compressed marker");
        assert_eq!(split_p256_point(&point[..33]), None, "short point");
    }

    #[test]
    fn thumbprint_matches_rfc7638_canonical_form() {
        // Thumbprint of a fixed key, computed independently from the canonical JSON.
        let x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
        let y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
        let expected = URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#).as_bytes(),
            )
            .as_ref(),
        );
        assert_eq!(p256_thumbprint(x, y), expected);
        assert_eq!(p256_thumbprint(x, y).len(), 43);
        assert_ne!(p256_thumbprint(y, x), expected);
    }

    #[test]
    fn jwt_only_jwks_has_kid_on_every_key() {
        let jwk = JwtPublicJwk {
            kid: "k1".into(),
            x: "xx".into(),
            y: "yy".into(),
        };
        let v: Value = serde_json::from_str(&jwt_only_jwks(&[jwk])).unwrap();
        let keys = v["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0]["kid"], "k1");
        assert_eq!(keys[0]["use"], "jwt-svid");
        assert!(v.get("spiffe_sequence").is_none());
    }
}
