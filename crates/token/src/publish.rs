//! Published documents: the JWKS and the OpenID discovery document.

use serde_json::{Map, Value, json};

use crate::keys::{KeyRing, SigningLeaf};
use crate::kid::KidFormat;

impl KeyRing {
    /// The JWKS (RFC 7517) with the current leaf and, after a rotation, the previous one, whose
    /// tokens may still be live. Each leaf appears once per [`KidFormat`] (libtrust key ID,
    /// then RFC 7638 thumbprint), with the same key material, `use: sig`, `alg` and `x5c` (the
    /// chain up to, not including, the trust anchor) in every entry.
    ///
    /// Independent of the policy: the header `kid` of a token of any [`crate::Profile`] names
    /// an entry here, whichever registries exist and in whatever order. Distribution 3's
    /// `auth.token.jwks` file indexes keys by their own `kid`, and OIDC relying parties look the
    /// header `kid` up; distribution 2.8 has no JWKS and relies on `x5c` and the
    /// `rootcertbundle`. Four entries at most, far under the ~100 keys some consumers cap.
    pub fn jwks_json(&self) -> String {
        let mut keys = Vec::with_capacity(2 * KidFormat::ALL.len());
        let current = self.current();
        let previous = self.previous();
        for leaf in std::iter::once(&current).chain(previous.as_ref()) {
            keys.extend(KidFormat::ALL.map(|format| jwk_entry(leaf, format)));
        }
        json!({ "keys": keys }).to_string()
    }

    /// A minimal OpenID Connect discovery document (`/.well-known/openid-configuration`) for
    /// relying parties that fetch keys by discovery: `issuer`, `jwks_uri`, the signing
    /// algorithm, and the members OpenID Connect Discovery 1.0 §3 marks required.
    pub fn openid_configuration_json(&self, issuer_url: &str, jwks_url: &str) -> String {
        json!({
            "issuer": issuer_url,
            "jwks_uri": jwks_url,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.config().algorithm.jws_name()],
            "claims_supported": ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"],
        })
        .to_string()
    }
}

fn jwk_entry(leaf: &SigningLeaf, format: KidFormat) -> Value {
    let mut m: Map<String, Value> = leaf.jwk().members();
    m.insert("kid".into(), leaf.key_id_in(format).into());
    m.insert("use".into(), "sig".into());
    m.insert("alg".into(), leaf.algorithm().jws_name().into());
    m.insert("x5c".into(), leaf.x5c().into());
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::Value;

    use crate::Profile;
    use crate::keys::{KeyRing, KeyRingConfig, SigningAlgorithm, SigningCa};

    fn ring(algorithm: SigningAlgorithm, now: SystemTime) -> KeyRing {
        let ca = SigningCa::generate(
            SigningAlgorithm::Es256,
            "test ca",
            Duration::from_secs(86_400),
            now,
        )
        .unwrap();
        let config = KeyRingConfig {
            algorithm,
            ..KeyRingConfig::default()
        };
        KeyRing::new(ca, config, now).unwrap()
    }

    fn keys(doc: &str) -> Vec<Value> {
        let v: Value = serde_json::from_str(doc).unwrap();
        v["keys"].as_array().unwrap().clone()
    }

    #[test]
    fn jwks_has_current_then_previous_under_every_kid_format() {
        let now = SystemTime::now();
        let ring = ring(SigningAlgorithm::Es256, now);
        assert_eq!(keys(&ring.jwks_json()).len(), 2);

        let first = ring.current();
        ring.rotate(now + Duration::from_secs(1)).unwrap();
        let second = ring.current();

        let ks = keys(&ring.jwks_json());
        let kids: Vec<&str> = ks.iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert_eq!(
            kids,
            [
                second.libtrust_key_id(),
                second.thumbprint(),
                first.libtrust_key_id(),
                first.thumbprint()
            ]
        );
        for (k, leaf) in ks.iter().zip([&second, &second, &first, &first]) {
            assert_eq!(k["kty"], "EC");
            assert_eq!(k["crv"], "P-256");
            assert_eq!(k["use"], "sig");
            assert_eq!(k["alg"], "ES256");
            assert_eq!(k["x"].as_str().unwrap().len(), 43);
            assert_eq!(k["y"].as_str().unwrap().len(), 43);
            assert!(k.get("d").is_none(), "private member published");
            let x5c0 = k["x5c"][0].as_str().unwrap();
            assert_eq!(STANDARD.decode(x5c0).unwrap(), leaf.certificate().as_ref());
        }
        // The two entries of one leaf differ only in `kid`.
        let without_kid = |k: &Value| {
            let mut k = k.clone();
            k.as_object_mut().unwrap().remove("kid");
            k
        };
        assert_eq!(without_kid(&ks[0]), without_kid(&ks[1]));
        assert_ne!(without_kid(&ks[0]), without_kid(&ks[2]));
    }

    #[test]
    fn every_profile_kid_is_in_the_one_jwks() {
        // What the realm used to get wrong: the JWKS must serve every profile's tokens, so
        // which profiles a policy uses, and in which order, cannot matter.
        let now = SystemTime::now();
        let ring = ring(SigningAlgorithm::Es256, now);
        ring.rotate(now + Duration::from_secs(1)).unwrap();
        let doc = ring.jwks_json();
        let ks = keys(&doc);
        let previous = ring.previous().unwrap();
        for leaf in [ring.current(), previous] {
            for profile in Profile::ALL {
                let kid = leaf.key_id(profile);
                let entry = ks.iter().find(|k| k["kid"] == kid).unwrap();
                let x5c0 = entry["x5c"][0].as_str().unwrap();
                assert_eq!(STANDARD.decode(x5c0).unwrap(), leaf.certificate().as_ref());
            }
        }
        // `jwks_json` takes nothing from the policy: the document is a function of the key
        // ring alone, the same on every call until the next rotation.
        assert_eq!(ring.jwks_json(), doc);
    }

    #[test]
    fn jwks_for_rsa_and_p384_leaves() {
        let now = SystemTime::now();
        let rsa = keys(&ring(SigningAlgorithm::Rs256, now).jwks_json());
        assert_eq!(rsa[0]["kty"], "RSA");
        assert_eq!(rsa[0]["alg"], "RS256");
        assert_eq!(rsa[0]["e"], "AQAB");
        // 2048-bit modulus without a leading zero: 256 bytes = 342 base64url characters.
        assert_eq!(rsa[0]["n"].as_str().unwrap().len(), 342);

        let p384 = keys(&ring(SigningAlgorithm::Es384, now).jwks_json());
        assert_eq!(p384[0]["crv"], "P-384");
        assert_eq!(p384[0]["alg"], "ES384");
        assert_eq!(p384[0]["x"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn openid_configuration_is_minimal_and_valid() {
        let ring = ring(SigningAlgorithm::Es384, SystemTime::now());
        let doc: Value = serde_json::from_str(&ring.openid_configuration_json(
            "https://broker.example",
            "https://broker.example/jwks.json",
        ))
        .unwrap();
        assert_eq!(doc["issuer"], "https://broker.example");
        assert_eq!(doc["jwks_uri"], "https://broker.example/jwks.json");
        assert_eq!(doc["id_token_signing_alg_values_supported"][0], "ES384");
        assert_eq!(doc["response_types_supported"][0], "id_token");
        assert_eq!(doc["subject_types_supported"][0], "public");
    }
}
