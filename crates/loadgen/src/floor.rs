//! The crypto floor: what one exchange cannot avoid, timed in a tight loop on one thread.
//! Per iteration, one ES256 verification of a real JWT-SVID (issued like the scenarios' tokens)
//! and one ES256 signature over a real registry token's signing input (one the broker issued
//! in this run), both with aws-lc-rs directly. The same loop with the identity crate's
//! `JwtSvidValidator::validate` in place of the raw verification is reported beside it.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, ParsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use svid_broker_identity::bundle::BundleSet;
use svid_broker_identity::jwt::JwtSvidValidator;

use crate::LoadgenError;

/// Most iterations one floor loop runs, whatever its duration.
pub const MAX_ITERATIONS: u64 = 100_000_000;

/// Rates, per second on one thread, of the floor and its parts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Floor {
    /// Raw verify + raw sign per iteration: the floor the goal is measured against.
    pub raw_per_sec: f64,
    /// `JwtSvidValidator::validate` + raw sign per iteration.
    pub validator_per_sec: f64,
    /// Raw ES256 verification alone.
    pub verify_per_sec: f64,
    /// Raw ES256 signature alone.
    pub sign_per_sec: f64,
}

/// What the floor loops work on. Its `Debug` leaves out the two tokens.
pub struct FloorInput<'a> {
    /// A JWT-SVID for [`AUDIENCE`](crate::broker::AUDIENCE) that the validator accepts (checked
    /// before the floor runs); a bearer secret.
    pub jwt_svid: &'a str,
    /// The JWKS (`{"keys":[...]}`) holding its key.
    pub jwks_json: &'a [u8],
    /// The same keys as a bundle set, for the validator.
    pub bundles: &'a BundleSet,
    /// The audience the validator requires.
    pub audience: &'a str,
    /// A registry token as issued (its signing input is what gets signed).
    pub registry_token: &'a str,
}

impl std::fmt::Debug for FloorInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The JWT-SVID is a bearer secret and the registry token a credential: never printed.
        f.debug_struct("FloorInput")
            .field("jwks_json_len", &self.jwks_json.len())
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// Measures the floor, each loop for `duration`.
///
/// # Errors
/// [`LoadgenError::Floor`] if the inputs do not verify (a floor over failing checks would be
/// meaningless).
pub fn measure(input: &FloorInput<'_>, duration: Duration) -> Result<Floor, LoadgenError> {
    let fail = |what: &'static str| LoadgenError::Floor { what };
    let (signed, sig_b64) = input
        .jwt_svid
        .rsplit_once('.')
        .ok_or(fail("jwt-svid has no signature segment"))?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| fail("jwt-svid signature is not base64url"))?;
    let key = jwt_key(input.jwt_svid, input.jwks_json)?;
    key.verify_sig(signed.as_bytes(), &sig)
        .map_err(|_| fail("jwt-svid does not verify with its bundle key"))?;
    let validator =
        JwtSvidValidator::new([input.audience]).map_err(|_| fail("audience rejected"))?;
    let now = SystemTime::now();
    validator
        .validate(input.jwt_svid, input.bundles, now)
        .map_err(|_| fail("jwt-svid does not pass the validator"))?;
    let payload = input
        .registry_token
        .rsplit_once('.')
        .ok_or(fail("registry token has no signature segment"))?
        .0
        .as_bytes();
    let rng = SystemRandom::new();
    let signer = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| fail("cannot generate a p-256 key"))?;
    // Keep the public half reachable so the key is a whole, usable pair as in the broker.
    black_box(signer.public_key().as_ref().len());
    let sign = || signer.sign(&rng, black_box(payload)).is_ok();
    let verify = || {
        key.verify_sig(black_box(signed.as_bytes()), black_box(&sig))
            .is_ok()
    };

    let raw_per_sec = rate(duration, || verify() & sign());
    let validator_per_sec = rate(duration, || {
        validator
            .validate(black_box(input.jwt_svid), input.bundles, now)
            .is_ok()
            & sign()
    });
    let verify_per_sec = rate(duration, verify);
    let sign_per_sec = rate(duration, sign);
    Ok(Floor {
        raw_per_sec,
        validator_per_sec,
        verify_per_sec,
        sign_per_sec,
    })
}

/// Runs `step` until `duration` has passed (checked every 16 iterations) or
/// [`MAX_ITERATIONS`]; returns successful iterations per second.
fn rate(duration: Duration, mut step: impl FnMut() -> bool) -> f64 {
    let start = Instant::now();
    let mut ok = 0u64;
    let mut n = 0u64;
    loop {
        for _ in 0..16 {
            ok += u64::from(step());
        }
        n += 16;
        if n >= MAX_ITERATIONS || start.elapsed() >= duration {
            break;
        }
    }
    ok as f64 / start.elapsed().as_secs_f64()
}

/// The P-256 key of the JWKS entry whose `kid` the token's header names, parsed once.
fn jwt_key(token: &str, jwks_json: &[u8]) -> Result<ParsedPublicKey, LoadgenError> {
    let fail = |what: &'static str| LoadgenError::Floor { what };
    let header = token.split('.').next().unwrap_or_default();
    let header: serde_json::Value = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(fail("jwt-svid header is not base64url json"))?;
    let kid = header.get("kid").and_then(|k| k.as_str());
    let jwks: serde_json::Value =
        serde_json::from_slice(jwks_json).map_err(|_| fail("jwks is not json"))?;
    let keys = jwks
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or(fail("jwks has no keys"))?;
    let jwk = keys
        .iter()
        .find(|k| kid.is_none() || k.get("kid").and_then(|v| v.as_str()) == kid)
        .ok_or(fail("no jwks key matches the token's kid"))?;
    let coord = |name: &str| {
        jwk.get(name)
            .and_then(|v| v.as_str())
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .filter(|v| v.len() == 32)
            .ok_or(fail("jwk is not a p-256 key"))
    };
    let mut point = vec![0x04];
    point.extend_from_slice(&coord("x")?);
    point.extend_from_slice(&coord("y")?);
    ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
        .map_err(|_| fail("jwk point is not on p-256"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_counts_only_successes() {
        let mut flip = false;
        let half = rate(Duration::from_millis(20), || {
            flip = !flip;
            flip
        });
        let all = rate(Duration::from_millis(20), || true);
        assert!(half > 0.0);
        assert!(all > 0.0);
        assert_eq!(rate(Duration::from_millis(5), || false), 0.0);
    }

    #[test]
    fn debug_shows_neither_token() {
        let bundles = BundleSet::default();
        let input = FloorInput {
            jwt_svid: "eyJ.jwt-svid-secret.sig",
            jwks_json: b"{}",
            bundles: &bundles,
            audience: "svid-broker",
            registry_token: "eyJ.registry-token-secret.sig",
        };
        let shown = format!("{input:?}");
        assert!(shown.contains("svid-broker"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn jwt_key_rejects_a_jwks_without_the_kid() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"a"}"#);
        let token = format!("{header}.e30.c2ln");
        let jwks = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"b","x":"AA","y":"AA"}]}"#;
        assert!(matches!(
            jwt_key(&token, jwks),
            Err(LoadgenError::Floor { what }) if what.contains("kid")
        ));
    }
}
