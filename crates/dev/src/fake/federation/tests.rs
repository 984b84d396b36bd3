//! The verifier against issuers served by a [`DocumentHost`], with tokens signed by hand
//! (aws-lc-rs RSA keys): what it accepts, each rule it refuses on, and its key cache.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use serde_json::{Value, json};

use super::*;
use crate::fake::testing::{
    Call, Listening, rsa_jwk as jwk, sign_jws as sign, test_rsa_key as rsa,
};

const NOW: i64 = 1_800_000_000;
const DISCOVERY: &str = "/.well-known/openid-configuration";
const JWKS: &str = "/jwks.json";

impl Listening for DocumentHost {
    fn addr(&self) -> SocketAddr {
        DocumentHost::addr(self)
    }
}

/// An issuer at a [`DocumentHost`] publishing key 0 as `k0`.
struct Issuer {
    host: DocumentHost,
}

impl Issuer {
    fn start() -> Self {
        let issuer = Self {
            host: DocumentHost::start().unwrap(),
        };
        issuer.publish_discovery(&issuer.url());
        issuer.publish_keys(&[jwk("k0", rsa(0))]);
        issuer
    }

    fn url(&self) -> String {
        self.host.url()
    }

    fn publish_discovery(&self, issuer: &str) {
        let doc = json!({
            "issuer": issuer,
            "jwks_uri": format!("{}{JWKS}", self.url()),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        self.host
            .set(DISCOVERY, "application/json", doc.to_string());
    }

    fn publish_keys(&self, keys: &[Value]) {
        self.host.set(
            JWKS,
            "application/json",
            json!({ "keys": keys }).to_string(),
        );
    }

    fn claims(&self) -> Value {
        json!({
            "iss": self.url(),
            "sub": "spiffe://example.org/ns/ci/sa/builder",
            "aud": "quay.example.org",
            "iat": NOW - 10,
            "nbf": NOW - 10,
            "exp": NOW + 290,
            "jti": "abc",
        })
    }
}

fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn rs256(kid: &str) -> Value {
    json!({ "alg": "RS256", "typ": "JWT", "kid": kid })
}

async fn verify(
    verifier: &FederatedJwtVerifier,
    issuer: &Issuer,
    token: &str,
) -> Result<VerifiedJwt, JwtRejection> {
    verifier.verify_from(token, &[&issuer.url()], NOW).await
}

fn assert_send_sync<T: Send + Sync>(_: &T) {}
fn assert_send<T: Send>(_: &T) {}

#[test]
fn the_verifier_and_its_future_can_be_used_from_the_fakes_handlers() {
    let verifier = FederatedJwtVerifier::new();
    assert_send_sync(&verifier);
    let future = verifier.verify_from("", &[], NOW);
    assert_send(&future);
}

// === acceptance and the cache ===

#[tokio::test]
async fn accepts_a_token_signed_by_a_published_key() {
    let issuer = Issuer::start();
    let verifier = FederatedJwtVerifier::new();
    let token = sign(rsa(0), &rs256("k0"), &issuer.claims());
    let verified = verify(&verifier, &issuer, &token).await.unwrap();
    assert_eq!(verified.issuer, issuer.url());
    assert_eq!(verified.subject, "spiffe://example.org/ns/ci/sa/builder");
    assert_eq!(verified.audiences, vec!["quay.example.org".to_owned()]);
    assert_eq!(verified.kid, "k0");
    assert_eq!(verified.expires_at, NOW + 290);
    assert_eq!(verified.claims["jti"], "abc");
    assert_eq!(
        (verifier.discovery_fetches(), verifier.jwks_fetches()),
        (1, 1)
    );

    // The second token is checked against the cached keys: nothing fetched.
    let clone = verifier.clone();
    verify(&clone, &issuer, &token).await.unwrap();
    assert_eq!(
        (verifier.discovery_fetches(), verifier.jwks_fetches()),
        (1, 1)
    );
    assert_eq!(issuer.host.requests(DISCOVERY), 1);
    assert_eq!(issuer.host.requests(JWKS), 1);

    // Clearing the cache fetches again.
    verifier.clear_cache();
    verify(&verifier, &issuer, &token).await.unwrap();
    assert_eq!(
        (verifier.discovery_fetches(), verifier.jwks_fetches()),
        (2, 2)
    );
}

#[tokio::test]
async fn aud_may_be_an_array_nbf_is_optional_and_iat_is_required() {
    let issuer = Issuer::start();
    let verifier = FederatedJwtVerifier::new();
    let mut claims = issuer.claims();
    claims["aud"] = json!(["a", "b"]);
    let obj = claims.as_object_mut().unwrap();
    obj.remove("nbf");
    let token = sign(rsa(0), &rs256("k0"), &claims);
    let verified = verify(&verifier, &issuer, &token).await.unwrap();
    assert_eq!(verified.audiences, vec!["a".to_owned(), "b".to_owned()]);
    claims.as_object_mut().unwrap().remove("iat");
    let token = sign(rsa(0), &rs256("k0"), &claims);
    assert_eq!(
        verify(&verifier, &issuer, &token).await.unwrap_err(),
        JwtRejection::MissingClaim { name: "iat" }
    );
}

#[tokio::test]
async fn a_rotated_key_is_found_by_refetching_the_jwks() {
    let issuer = Issuer::start();
    let verifier = FederatedJwtVerifier::new();
    let old = sign(rsa(0), &rs256("k0"), &issuer.claims());
    verify(&verifier, &issuer, &old).await.unwrap();

    issuer.publish_keys(&[jwk("k1", rsa(1)), jwk("k0", rsa(0))]);
    let new = sign(rsa(1), &rs256("k1"), &issuer.claims());
    let verified = verify(&verifier, &issuer, &new).await.unwrap();
    assert_eq!(verified.kid, "k1");
    // Only the JWKS was fetched again, not discovery.
    assert_eq!(
        (verifier.discovery_fetches(), verifier.jwks_fetches()),
        (1, 2)
    );
    // Both keys are cached now.
    verify(&verifier, &issuer, &old).await.unwrap();
    assert_eq!(verifier.jwks_fetches(), 2);
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_then_is_refused() {
    let issuer = Issuer::start();
    let verifier = FederatedJwtVerifier::new();
    verify(
        &verifier,
        &issuer,
        &sign(rsa(0), &rs256("k0"), &issuer.claims()),
    )
    .await
    .unwrap();
    let token = sign(rsa(2), &rs256("nope"), &issuer.claims());
    assert_eq!(
        verify(&verifier, &issuer, &token).await.unwrap_err(),
        JwtRejection::UnknownKid {
            kid: "nope".to_owned()
        }
    );
    assert_eq!(
        (verifier.discovery_fetches(), verifier.jwks_fetches()),
        (1, 2)
    );
    // Each verification refetches at most once.
    verify(&verifier, &issuer, &token).await.unwrap_err();
    assert_eq!(verifier.jwks_fetches(), 3);

    // On a cold cache, the first fetch is the only one.
    let cold = FederatedJwtVerifier::new();
    assert!(matches!(
        verify(&cold, &issuer, &token).await,
        Err(JwtRejection::UnknownKid { .. })
    ));
    assert_eq!((cold.discovery_fetches(), cold.jwks_fetches()), (1, 1));
}

// === refused before any fetch ===

#[tokio::test]
async fn an_untrusted_issuer_is_refused_before_any_fetch() {
    let issuer = Issuer::start();
    let verifier = FederatedJwtVerifier::new();
    let token = sign(rsa(0), &rs256("k0"), &issuer.claims());
    let trusted = format!("{}/other", issuer.url());
    assert_eq!(
        verifier
            .verify_from(&token, &[&trusted], NOW)
            .await
            .unwrap_err(),
        JwtRejection::UntrustedIssuer {
            issuer: issuer.url()
        }
    );
    assert_eq!(
        verifier.verify_from(&token, &[], NOW).await.unwrap_err(),
        JwtRejection::UntrustedIssuer {
            issuer: issuer.url()
        }
    );
    assert_eq!(
        (verifier.discovery_fetches(), verifier.jwks_fetches()),
        (0, 0)
    );
    assert_eq!(issuer.host.requests(DISCOVERY), 0);
}

#[tokio::test]
async fn algorithms_other_than_rs256_are_refused_before_any_fetch() {
    let issuer = Issuer::start();
    let verifier = FederatedJwtVerifier::new();
    let claims = issuer.claims();
    let unsigned = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "kid": "k0"})),
        encode(&claims)
    );
    // HS256 keyed with the public modulus: the classic key-confusion attack.
    let hs_input = format!(
        "{}.{}",
        encode(&json!({"alg": "HS256", "kid": "k0"})),
        encode(&claims)
    );
    let hmac_key =
        aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, rsa(0).public_key().as_ref());
    let hs256 = format!(
        "{hs_input}.{}",
        URL_SAFE_NO_PAD.encode(aws_lc_rs::hmac::sign(&hmac_key, hs_input.as_bytes()))
    );
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let es_input = format!(
        "{}.{}",
        encode(&json!({"alg": "ES256", "kid": "k0"})),
        encode(&claims)
    );
    let es256 = format!(
        "{es_input}.{}",
        URL_SAFE_NO_PAD.encode(ec.sign(&SystemRandom::new(), es_input.as_bytes()).unwrap())
    );
    let ps256 = sign(rsa(0), &json!({"alg": "PS256", "kid": "k0"}), &claims);
    let lower = sign(rsa(0), &json!({"alg": "rs256", "kid": "k0"}), &claims);
    for (token, alg) in [
        (unsigned, "none"),
        (hs256, "HS256"),
        (es256, "ES256"),
        (ps256, "PS256"),
        (lower, "rs256"),
    ] {
        assert_eq!(
            verify(&verifier, &issuer, &token).await.unwrap_err(),
            JwtRejection::UnsupportedAlgorithm {
                alg: alg.to_owned()
            }
        );
    }
    assert_eq!(
        (verifier.discovery_fetches(), verifier.jwks_fetches()),
        (0, 0)
    );
}

#[tokio::test]
async fn malformed_and_oversize_tokens_are_refused() {
    let issuer = Issuer::start();
    let verifier = FederatedJwtVerifier::new();
    let good = sign(rsa(0), &rs256("k0"), &issuer.claims());
    let parts: Vec<&str> = good.split('.').collect();
    let malformed_cases = [
        String::new(),
        "a.b".to_owned(),
        format!("{good}.extra"),
        format!("!!.{}.{}", parts[1], parts[2]),
        format!("{}.{}.{}", encode(&json!("str")), parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode("not json"),
            parts[2]
        ),
        format!("{}.{}.***", parts[0], parts[1]),
        format!("{}.{}.{}", parts[0], parts[1], "A".repeat(MAX_TOKEN_BYTES)),
    ];
    for token in malformed_cases {
        assert!(
            matches!(
                verify(&verifier, &issuer, &token).await,
                Err(JwtRejection::Malformed { .. })
            ),
            "{}",
            token.chars().take(80).collect::<String>()
        );
    }
    let oversize = format!("{}.{}.{}", parts[0], parts[1], "A".repeat(MAX_TOKEN_BYTES));
    assert_eq!(
        verify(&verifier, &issuer, &oversize).await.unwrap_err(),
        JwtRejection::Malformed {
            what: "token is longer than 16 KiB"
        }
    );
    let no_kid = sign(rsa(0), &json!({"alg": "RS256"}), &issuer.claims());
    assert_eq!(
        verify(&verifier, &issuer, &no_kid).await.unwrap_err(),
        JwtRejection::MissingClaim { name: "kid" }
    );
    let crit = sign(
        rsa(0),
        &json!({"alg": "RS256", "kid": "k0", "crit": ["b64"], "b64": false}),
        &issuer.claims(),
    );
    assert_eq!(
        verify(&verifier, &issuer, &crit).await.unwrap_err(),
        JwtRejection::Malformed {
            what: "crit header parameters are not supported"
        }
    );
    let mut claims = issuer.claims();
    claims.as_object_mut().unwrap().remove("iss");
    let no_iss = sign(rsa(0), &rs256("k0"), &claims);
    assert_eq!(
        verify(&verifier, &issuer, &no_iss).await.unwrap_err(),
        JwtRejection::MissingClaim { name: "iss" }
    );
    assert_eq!(verifier.discovery_fetches(), 0);
}

// === refused after fetching ===

#[tokio::test]
async fn required_claims_must_be_present() {
    let issuer = Issuer::start();
    let verifier = FederatedJwtVerifier::new();
    for name in ["exp", "sub", "aud"] {
        let mut claims = issuer.claims();
        claims.as_object_mut().unwrap().remove(name);
        let token = sign(rsa(0), &rs256("k0"), &claims);
        assert_eq!(
            verify(&verifier, &issuer, &token).await.unwrap_err(),
            JwtRejection::MissingClaim { name }
        );
    }
    let mut claims = issuer.claims();
    claims["aud"] = json!(["a", 1]);
    let token = sign(rsa(0), &rs256("k0"), &claims);
    assert!(matches!(
        verify(&verifier, &issuer, &token).await,
        Err(JwtRejection::Malformed { .. })
    ));
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    let issuer = Issuer::start();
    let verifier = FederatedJwtVerifier::new();
    // Signed by another key under the published kid.
    let wrong_key = sign(rsa(1), &rs256("k0"), &issuer.claims());
    assert_eq!(
        verify(&verifier, &issuer, &wrong_key).await.unwrap_err(),
        JwtRejection::BadSignature
    );
    // A payload changed after signing.
    let good = sign(rsa(0), &rs256("k0"), &issuer.claims());
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims = issuer.claims();
    claims["sub"] = json!("spiffe://example.org/admin");
    let forged = format!("{}.{}.{}", parts[0], encode(&claims), parts[2]);
    assert_eq!(
        verify(&verifier, &issuer, &forged).await.unwrap_err(),
        JwtRejection::BadSignature
    );
    verify(&verifier, &issuer, &good).await.unwrap();
}

#[tokio::test]
async fn times_are_checked_without_leeway() {
    let issuer = Issuer::start();
    let verifier = FederatedJwtVerifier::new();
    let with = |name: &str, value: i64| {
        let mut claims = issuer.claims();
        claims[name] = json!(value);
        sign(rsa(0), &rs256("k0"), &claims)
    };
    assert_eq!(
        verify(&verifier, &issuer, &with("exp", NOW))
            .await
            .unwrap_err(),
        JwtRejection::Expired { exp: NOW, now: NOW }
    );
    verify(&verifier, &issuer, &with("exp", NOW + 1))
        .await
        .unwrap();
    assert_eq!(
        verify(&verifier, &issuer, &with("nbf", NOW + 1))
            .await
            .unwrap_err(),
        JwtRejection::NotYetValid
    );
    assert_eq!(
        verify(&verifier, &issuer, &with("iat", NOW + 1))
            .await
            .unwrap_err(),
        JwtRejection::NotYetValid
    );
    verify(&verifier, &issuer, &with("nbf", NOW)).await.unwrap();
    let mut claims = issuer.claims();
    claims["exp"] = json!("soon");
    let token = sign(rsa(0), &rs256("k0"), &claims);
    assert!(matches!(
        verify(&verifier, &issuer, &token).await,
        Err(JwtRejection::Malformed { .. })
    ));
}

#[tokio::test]
async fn the_discovery_issuer_must_equal_iss_exactly() {
    let issuer = Issuer::start();
    let verifier = FederatedJwtVerifier::new();
    issuer.publish_discovery(&format!("{}/", issuer.url()));
    let token = sign(rsa(0), &rs256("k0"), &issuer.claims());
    assert_eq!(
        verify(&verifier, &issuer, &token).await.unwrap_err(),
        JwtRejection::IssuerMismatch {
            document: format!("{}/", issuer.url()),
            token: issuer.url(),
        }
    );
    assert_eq!(
        (verifier.discovery_fetches(), verifier.jwks_fetches()),
        (1, 0)
    );
}

#[tokio::test]
async fn unusable_published_keys_are_refused() {
    let issuer = Issuer::start();
    let verifier = FederatedJwtVerifier::new();
    let token = sign(rsa(0), &rs256("k0"), &issuer.claims());
    let cases = [
        ("kty", json!("EC"), "kty is not RSA"),
        ("use", json!("enc"), "use is not sig"),
        ("alg", json!("RS384"), "alg is not RS256"),
        ("n", json!("!!"), "n or e is missing or not base64url"),
    ];
    for (member, value, rule) in cases {
        let mut key = jwk("k0", rsa(0));
        key[member] = value;
        issuer.publish_keys(&[key]);
        verifier.clear_cache();
        assert_eq!(
            verify(&verifier, &issuer, &token).await.unwrap_err(),
            JwtRejection::UnusableKey {
                kid: "k0".to_owned(),
                rule
            }
        );
    }
    // Without `use` and `alg` the key is fine (both are optional in a JWK).
    let mut key = jwk("k0", rsa(0));
    key.as_object_mut().unwrap().remove("use");
    key.as_object_mut().unwrap().remove("alg");
    issuer.publish_keys(&[key]);
    verifier.clear_cache();
    verify(&verifier, &issuer, &token).await.unwrap();
}

fn discovery_error(result: Result<VerifiedJwt, JwtRejection>) -> String {
    match result {
        Err(JwtRejection::Discovery { what }) => what,
        other => panic!("expected a discovery failure, got {other:?}"),
    }
}

#[tokio::test]
async fn discovery_failures_are_refused_naming_what_failed() {
    let issuer = Issuer::start();
    let verifier = FederatedJwtVerifier::new();
    let token = sign(rsa(0), &rs256("k0"), &issuer.claims());

    issuer.host.remove(DISCOVERY);
    let what = discovery_error(verify(&verifier, &issuer, &token).await);
    assert!(what.contains("404"), "{what}");

    issuer
        .host
        .redirect(DISCOVERY, &format!("{}/elsewhere", issuer.url()));
    let what = discovery_error(verify(&verifier, &issuer, &token).await);
    assert!(what.contains("redirect"), "{what}");
    assert_eq!(issuer.host.requests("/elsewhere"), 0);

    issuer.host.set(
        DISCOVERY,
        "application/json",
        "x".repeat(MAX_DOCUMENT_BYTES + 1),
    );
    let what = discovery_error(verify(&verifier, &issuer, &token).await);
    assert!(what.contains("body over"), "{what}");

    issuer
        .host
        .set(DISCOVERY, "application/json", "[]".to_owned());
    let what = discovery_error(verify(&verifier, &issuer, &token).await);
    assert!(what.contains("not a JSON object"), "{what}");

    issuer.host.set(
        DISCOVERY,
        "application/json",
        json!({ "issuer": issuer.url() }).to_string(),
    );
    let what = discovery_error(verify(&verifier, &issuer, &token).await);
    assert!(what.contains("no jwks_uri"), "{what}");

    for (jwks_uri, expected) in [
        ("http://192.0.2.1/jwks.json", "not loopback"),
        ("http://localhost/jwks.json", "loopback ip literal"),
        ("https://127.0.0.1/jwks.json", "https"),
        ("file:///etc/passwd", "not an http url"),
    ] {
        issuer.host.set(
            DISCOVERY,
            "application/json",
            json!({ "issuer": issuer.url(), "jwks_uri": jwks_uri }).to_string(),
        );
        let what = discovery_error(verify(&verifier, &issuer, &token).await);
        assert!(what.contains(expected), "{jwks_uri}: {what}");
    }

    issuer.publish_discovery(&issuer.url());
    issuer
        .host
        .set(JWKS, "application/json", "{\"keys\":".to_owned());
    let what = discovery_error(verify(&verifier, &issuer, &token).await);
    assert!(what.starts_with("jwks"), "{what}");
    issuer.host.set(JWKS, "application/json", "{}".to_owned());
    let what = discovery_error(verify(&verifier, &issuer, &token).await);
    assert!(what.contains("no keys array"), "{what}");

    // Nothing failed was cached: once fixed, the issuer is usable.
    issuer.publish_keys(&[jwk("k0", rsa(0))]);
    verify(&verifier, &issuer, &token).await.unwrap();
}

#[tokio::test]
async fn non_loopback_and_https_issuers_are_not_fetched() {
    let verifier = FederatedJwtVerifier::new();
    for (iss, expected) in [
        ("https://broker.example.org", "https"),
        ("http://192.0.2.1:8080", "not loopback"),
        ("http://user@127.0.0.1:1", "userinfo"),
    ] {
        let claims = json!({ "iss": iss, "sub": "s", "aud": "a", "exp": NOW + 60 });
        let token = sign(rsa(0), &rs256("k0"), &claims);
        let what = discovery_error(verifier.verify_from(&token, &[iss], NOW).await);
        assert!(what.contains(expected), "{iss}: {what}");
    }
}

#[tokio::test]
async fn an_unreachable_issuer_is_a_discovery_failure() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let iss = format!("http://127.0.0.1:{port}");
    let claims = json!({ "iss": iss, "sub": "s", "aud": "a", "exp": NOW + 60 });
    let token = sign(rsa(0), &rs256("k0"), &claims);
    let verifier = FederatedJwtVerifier::new();
    let what = discovery_error(verifier.verify_from(&token, &[&iss], NOW).await);
    assert!(what.contains("connect"), "{what}");
}

#[tokio::test]
async fn a_silent_issuer_is_cut_off_at_the_fetch_deadline() {
    // The kernel completes the connection; nobody ever answers on it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let iss = format!("http://{}", silent.local_addr().unwrap());
    let claims = json!({ "iss": iss, "sub": "s", "aud": "a", "exp": NOW + 60 });
    let token = sign(rsa(0), &rs256("k0"), &claims);
    let verifier = FederatedJwtVerifier::new();
    let what = discovery_error(verifier.verify_from(&token, &[&iss], NOW).await);
    assert!(what.contains("no answer within 2s"), "{what}");
}

#[tokio::test]
async fn a_fractional_exp_is_compared_in_whole_seconds() {
    let issuer = Issuer::start();
    let verifier = FederatedJwtVerifier::new();
    let mut claims = issuer.claims();
    claims["exp"] = json!(NOW as f64 + 30.5);
    let token = sign(rsa(0), &rs256("k0"), &claims);
    let verified = verify(&verifier, &issuer, &token).await.unwrap();
    assert_eq!(verified.expires_at, NOW + 30);
}

// === DocumentHost ===

#[tokio::test]
async fn document_host_serves_what_was_set_and_counts_requests() {
    let host = DocumentHost::start().unwrap();
    host.set("/a", "text/plain", "hello".to_owned());
    let resp = Call::get("/a").send(&host).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, "hello");
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    assert_eq!(Call::get("/b").send(&host).await.status, 404);
    assert_eq!(Call::new(Method::POST, "/a").send(&host).await.status, 405);
    assert_eq!(host.requests("/a"), 2);
    assert_eq!(host.requests("/b"), 1);
    assert_eq!(host.requests("/c"), 0);
    assert!(host.url().starts_with("http://127.0.0.1:"));
    assert!(!host.url().ends_with('/'));
}
