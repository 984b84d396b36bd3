//! Tests of the federation issuer: key loading and naming, minting, publishing, rotation and
//! the caps.

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use svid_broker_identity::secret::ExposeSecret;

use super::*;
use crate::testutil::{decode, t0};

const ISSUER: &str = "https://broker.example.org/federation";

/// A 1024-bit RSA key made once with `openssl genpkey -algorithm RSA -pkeyopt
/// rsa_keygen_bits:1024` (test-only, never used anywhere).
const RSA1024_PKCS8_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIICdQIBADANBgkqhkiG9w0BAQEFAASCAl8wggJbAgEAAoGBAOWB2XuEzMCb5DVz
IfsdtxvHOwMTIlQxDqNv7o1e4vKNedaXJFWhYvTBw5c7oJDkoPKVHK1FWjR+WBM1
igIp4R1913fgMDJUCtSdW5cUhVfOd6oqKFVlGdz1lxw17carM1JaS04mEesxvIqs
iltgJsP2f8yJB24YAuNwb4wOe+g9AgMBAAECgYACRdPqhjkk2yZaZSZ7/yJWExYB
hMn9PXMgqTYajkr/Demb92kzs+Jv/A88yyle5fS2EkXzbVFkXa/vmMMiHFoPVOdW
N2AevSkI5Ce9lfHOulJA4RHLRjbj9rHy0y9a/bPXWT0cR5Thz1R96kjh8yfDlZXF
TliSYypcJrZjWjX7HQJBAPhOJyHtzXeuIwknfAqMrsNIeGFHspzTnIwGx4lbdbhw
Qg77HXbhZbcs8q7VttdLyK/JHzAdUTd1rYcG4eHUWY8CQQDsnpGMB/hGjynP6UMA
vmkXa3d5uKkXGZuxyIhLdweOoxfB3M4xS5WRUfZae1rBxP6wSXTk/lXIMfePQsWM
xQNzAkAkLs9JBGwien+kf9p1dxaoYlEYa+g9LiDrzrkY7Pj0jXcy06jxf9rgnG4o
x//C08pEw1wGGN+S41UMDhawX89FAkA5p9WtOk/r2XyFtb/m0X7H/x6ooS9Keqnu
Yv+a69ECl4j1avkvF8zFESSnHYGaz4aDrBJ4reR3GH3LAakjSOozAkB1evNEc1+Y
1dLPFaHF1SlFpCmOYATggbALa5Amw4WuJNb8evnr/ZWsXeYQUKo0EPuXWdZ3+vza
QRoFs5levG8y
-----END PRIVATE KEY-----
";

/// Key generation is slow-ish (RSA): make the two keys the tests share once.
fn shared_pems() -> &'static [String; 2] {
    static PEMS: OnceLock<[String; 2]> = OnceLock::new();
    PEMS.get_or_init(|| {
        let pem = || {
            FederationKey::generate()
                .unwrap()
                .to_pkcs8_pem()
                .unwrap()
                .expose_secret()
                .to_owned()
        };
        [pem(), pem()]
    })
}

fn key(index: usize) -> FederationKey {
    FederationKey::from_pem(shared_pems()[index].as_bytes()).unwrap()
}

fn issuer() -> FederationIssuer {
    FederationIssuer::new(ISSUER, vec![key(0)], DEFAULT_FEDERATION_TOKEN_TTL).unwrap()
}

fn key_rule(pem: &[u8]) -> &'static str {
    match FederationKey::from_pem(pem) {
        Err(FederationError::Key { rule }) => rule,
        other => panic!("expected a key refusal, got {other:?}"),
    }
}

/// Reads one DER TLV at the front of `der`: (tag, contents, rest).
fn tlv(der: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = der[0];
    let (len, header) = if der[1] < 0x80 {
        (usize::from(der[1]), 2)
    } else {
        let n = usize::from(der[1] & 0x7f);
        let len = der[2..2 + n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, 2 + n)
    };
    (tag, &der[header..header + len], &der[header + len..])
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo`: the third member, an OCTET
/// STRING.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    let (tag, info, _) = tlv(pkcs8);
    assert_eq!(tag, 0x30);
    let (_, _, rest) = tlv(info); // version
    let (_, _, rest) = tlv(rest); // algorithm
    let (tag, private_key, _) = tlv(rest);
    assert_eq!(tag, 0x04);
    private_key.to_vec()
}

fn pem_der(pem: &str) -> Vec<u8> {
    pem::parse(pem).unwrap().into_contents()
}

fn jwks(issuer: &FederationIssuer) -> Vec<Value> {
    let doc: Value = serde_json::from_str(&issuer.jwks_json()).unwrap();
    doc["keys"].as_array().unwrap().clone()
}

/// Verifies `token` as a relying party does: the key with the header `kid` from the JWKS,
/// RSASSA-PKCS1-v1_5 SHA-256 over `header.payload`.
fn verify_with_jwks(token: &str, jwks: &[Value]) -> Result<(), &'static str> {
    let (header, _, signature) = decode(token);
    let jwk = jwks
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .ok_or("kid not published")?;
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap();
    let signing_input = token.rsplit_once('.').unwrap().0;
    RsaPublicKeyComponents { n: &n, e: &e }
        .verify(
            &RSA_PKCS1_2048_8192_SHA256,
            signing_input.as_bytes(),
            &signature,
        )
        .map_err(|_| "bad signature")
}

// === keys ===

#[test]
fn kid_is_the_rfc7638_thumbprint_of_its_example_key() {
    // RFC 7638 section 3.1.
    let n = URL_SAFE_NO_PAD
        .decode(
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        )
        .unwrap();
    let e = URL_SAFE_NO_PAD.decode("AQAB").unwrap();
    assert_eq!(
        rsa_thumbprint(&n, &e),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    // A DER-style leading zero byte does not change it.
    let mut padded = vec![0u8];
    padded.extend_from_slice(&n);
    assert_eq!(
        rsa_thumbprint(&padded, &e),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn kid_matches_the_published_jwk() {
    let issuer = issuer();
    let jwk = &jwks(&issuer)[0];
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap();
    assert_eq!(jwk["kid"], issuer.signing_kid());
    assert_eq!(rsa_thumbprint(&n, &e), issuer.signing_kid());
    assert_eq!(issuer.signing_kid().len(), 43);
}

#[test]
fn pkcs8_pem_round_trips_to_the_same_kid() {
    let original = FederationKey::generate().unwrap();
    assert_eq!(original.bits(), 2048);
    let pem = original.to_pkcs8_pem().unwrap();
    assert!(
        pem.expose_secret()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );
    let loaded = FederationKey::from_pem(pem.expose_secret().as_bytes()).unwrap();
    assert_eq!(loaded.kid(), original.kid());
    assert_ne!(key(0).kid(), key(1).kid());
}

#[test]
fn pkcs1_pem_loads_to_the_same_kid() {
    let pkcs8 = pem_der(&shared_pems()[0]);
    let pkcs1 = pem_block("RSA PRIVATE KEY", &pkcs1_from_pkcs8(&pkcs8));
    let loaded = FederationKey::from_pem(pkcs1.as_bytes()).unwrap();
    assert_eq!(loaded.kid(), key(0).kid());
    // PKCS#1 DER under the PKCS#8 label is refused, and the reverse.
    let swapped = pem_block("PRIVATE KEY", &pkcs1_from_pkcs8(&pkcs8));
    assert!(key_rule(swapped.as_bytes()).contains("pkcs#8"));
    let swapped = pem_block("RSA PRIVATE KEY", &pkcs8);
    assert!(key_rule(swapped.as_bytes()).contains("pkcs#1"));
}

#[test]
fn rsa_keys_up_to_4096_bits_load() {
    let pem = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
        .unwrap()
        .serialize_pem();
    assert_eq!(
        FederationKey::from_pem(pem.as_bytes()).unwrap().bits(),
        3072
    );
}

#[test]
fn non_rsa_and_non_private_keys_are_refused_naming_the_rule() {
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ec_pem = ec.serialize_pem();
    assert!(key_rule(ec_pem.as_bytes()).contains("only rsa keys"));
    let sec1 = pem_block("EC PRIVATE KEY", &[0x30, 0x00]);
    assert!(key_rule(sec1.as_bytes()).contains("ec key"));
    let public = ec.public_key_pem();
    assert!(key_rule(public.as_bytes()).contains("public key"));
    let encrypted = pem_block("ENCRYPTED PRIVATE KEY", &[0x30, 0x00]);
    assert!(key_rule(encrypted.as_bytes()).contains("encrypted"));
    let cert = pem_block("CERTIFICATE", &[0x30, 0x00]);
    assert!(key_rule(cert.as_bytes()).contains("not a PRIVATE KEY"));
    assert!(key_rule(b"not pem at all").contains("no pem block"));
    assert!(key_rule(b"").contains("no pem block"));
    assert!(key_rule(&[0xff, 0xfe, 0x00]).contains("utf-8"));
    let bad_base64 = "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n";
    assert!(key_rule(bad_base64.as_bytes()).contains("malformed"));
    let two = format!("{}{}", shared_pems()[0], shared_pems()[1]);
    assert!(key_rule(two.as_bytes()).contains("exactly one"));
    let garbage = pem_block("PRIVATE KEY", b"garbage");
    assert!(key_rule(garbage.as_bytes()).contains("pkcs#8"));
}

#[test]
fn short_rsa_keys_and_oversize_input_are_refused() {
    let rule = key_rule(RSA1024_PKCS8_PEM.as_bytes());
    assert!(rule.contains("2048"), "{rule}");
    let huge = vec![b'A'; MAX_FEDERATION_PEM_LEN + 1];
    assert!(key_rule(&huge).contains("64 KiB"));
}

#[test]
fn debug_shows_the_kid_only() {
    let key = key(0);
    let shown = format!("{key:?}");
    assert!(shown.contains(key.kid()));
    assert!(!shown.contains("BEGIN"));
    let pem_body: String = shared_pems()[0].lines().nth(1).unwrap().to_owned();
    assert!(!shown.contains(&pem_body));
    let issuer = issuer();
    let shown = format!("{issuer:?}");
    assert!(shown.contains(ISSUER) && shown.contains(&issuer.signing_kid()));
}

// === minting ===

#[test]
fn minted_token_verifies_with_the_published_key_and_carries_the_claims() {
    let issuer = issuer();
    let claims = FederatedClaims::new("spiffe://example.org/ns/ci/sa/builder", "quay.example.org")
        .with_claim("spiffe_id", "spiffe://example.org/ns/ci/sa/builder")
        .with_claim("repository", "org/app");
    let minted = issuer.mint(&claims, t0()).unwrap();
    let token = minted.token.expose_secret();
    verify_with_jwks(token, &jwks(&issuer)).unwrap();

    let (header, payload, signature) = decode(token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], minted.kid.as_str());
    assert_eq!(header.as_object().unwrap().len(), 3);
    assert_eq!(signature.len(), 256);
    let iat = t0().duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(payload["iss"], ISSUER);
    assert_eq!(payload["sub"], "spiffe://example.org/ns/ci/sa/builder");
    assert_eq!(payload["aud"], "quay.example.org");
    assert_eq!(payload["iat"], iat);
    assert_eq!(
        payload["nbf"].as_u64().unwrap(),
        payload["iat"].as_u64().unwrap() - NOT_BEFORE_BACKDATE.as_secs()
    );
    assert_eq!(payload["exp"], iat + 300);
    assert_eq!(payload["jti"], minted.jti.as_str());
    assert_eq!(payload["repository"], "org/app");
    assert_eq!(payload.as_object().unwrap().len(), 9);
    assert_eq!(URL_SAFE_NO_PAD.decode(&minted.jti).unwrap().len(), 16);
    assert_eq!(minted.issued_at, t0());
    assert_eq!(minted.expires_at, t0() + Duration::from_secs(300));

    // A changed payload no longer verifies.
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = payload;
    forged["sub"] = "spiffe://example.org/admin".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged.to_string()),
        parts[2]
    );
    assert_eq!(
        verify_with_jwks(&forged, &jwks(&issuer)),
        Err("bad signature")
    );
}

#[test]
fn jti_differs_and_fractional_now_is_truncated() {
    let issuer = issuer();
    let claims = FederatedClaims::new("sub", "aud");
    let a = issuer
        .mint(&claims, t0() + Duration::from_millis(999))
        .unwrap();
    let b = issuer.mint(&claims, t0()).unwrap();
    assert_ne!(a.jti, b.jti);
    assert_eq!(a.issued_at, t0());
    let debug = format!("{a:?}");
    assert!(!debug.contains(a.token.expose_secret()));
}

#[test]
fn invalid_claims_are_refused_naming_the_rule() {
    let issuer = issuer();
    let refused = |claims: FederatedClaims| match issuer.mint(&claims, t0()) {
        Err(FederationError::InvalidClaim { name, rule }) => (name, rule),
        other => panic!("expected an invalid claim, got {other:?}"),
    };
    let ok = || FederatedClaims::new("sub", "aud");
    assert_eq!(refused(FederatedClaims::new("", "aud")).0, "sub");
    assert_eq!(refused(FederatedClaims::new("sub", "")).0, "aud");
    assert_eq!(
        refused(FederatedClaims::new("a\nb", "aud")).1,
        "claim contains a control character"
    );
    assert_eq!(
        refused(FederatedClaims::new("sub", "x".repeat(1025))).0,
        "aud"
    );
    assert!(
        issuer
            .mint(
                &FederatedClaims::new("s".repeat(1024), "a".repeat(1024)),
                t0()
            )
            .is_ok()
    );
    for registered in ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"] {
        let (name, rule) = refused(ok().with_claim(registered, "x"));
        assert_eq!(name, registered);
        assert!(rule.contains("registered"));
    }
    assert!(refused(ok().with_claim("", "x")).1.contains("1 to 64"));
    assert!(
        refused(ok().with_claim("n".repeat(65), "x"))
            .1
            .contains("1 to 64")
    );
    assert!(
        refused(ok().with_claim("bad name", "x"))
            .1
            .contains("[A-Za-z0-9_.:/-]")
    );
    assert!(
        refused(ok().with_claim("a", "x").with_claim("a", "y"))
            .1
            .contains("twice")
    );
    assert!(
        refused(ok().with_claim("a", "x".repeat(1025)))
            .1
            .contains("1024")
    );
    assert!(
        refused(ok().with_claim("a", "tab\there"))
            .1
            .contains("control")
    );
    assert!(
        issuer
            .mint(&ok().with_claim("https://x.example/ns:a_b-c.d", ""), t0())
            .is_ok()
    );

    let mut many = ok();
    for i in 0..=MAX_EXTRA_CLAIMS {
        many = many.with_claim(format!("c{i}"), "v");
    }
    assert!(matches!(
        issuer.mint(&many, t0()),
        Err(FederationError::TooManyClaims { count: 9, max: 8 })
    ));
}

#[test]
fn time_before_the_epoch_is_refused() {
    let issuer = issuer();
    assert!(matches!(
        issuer.mint(
            &FederatedClaims::new("s", "a"),
            UNIX_EPOCH - Duration::from_secs(1)
        ),
        Err(FederationError::TimeOutOfRange)
    ));
}

// === publishing ===

#[test]
fn jwks_lists_every_key_with_the_required_members() {
    let issuer =
        FederationIssuer::new(ISSUER, vec![key(0), key(1)], DEFAULT_FEDERATION_TOKEN_TTL).unwrap();
    let keys = jwks(&issuer);
    assert_eq!(keys.len(), 2);
    for (jwk, kid) in keys.iter().zip(issuer.published_kids()) {
        let members: Vec<&str> = jwk
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(members.len(), 6, "{members:?}");
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(jwk["kid"], kid.as_str());
        let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len(), 256);
        assert_ne!(n[0], 0, "n must not carry a leading zero byte");
        assert!(!jwk["n"].as_str().unwrap().contains('='));
    }
}

#[test]
fn discovery_document_has_what_aws_iam_requires() {
    let issuer = issuer();
    let doc: Value = serde_json::from_str(&issuer.discovery_json()).unwrap();
    assert_eq!(doc["issuer"], ISSUER);
    assert_eq!(doc["jwks_uri"], format!("{ISSUER}/jwks.json"));
    assert_eq!(issuer.jwks_uri(), format!("{ISSUER}/jwks.json"));
    assert_eq!(
        doc["response_types_supported"],
        serde_json::json!(["id_token"])
    );
    assert_eq!(
        doc["subject_types_supported"],
        serde_json::json!(["public"])
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    let claims = doc["claims_supported"].as_array().unwrap();
    for claim in ["iss", "sub", "aud", "exp", "iat"] {
        assert!(claims.contains(&Value::from(claim)), "{claim}");
    }
    assert_eq!(
        FederationIssuer::discovery_path_suffix(),
        "/.well-known/openid-configuration"
    );
    assert_eq!(
        issuer.discovery_url(),
        format!("{ISSUER}/.well-known/openid-configuration")
    );
}

// === rotation ===

#[test]
fn rotation_publishes_the_next_key_before_it_signs_and_keeps_the_old_one() {
    let issuer = issuer();
    let claims = FederatedClaims::new("sub", "aud");
    let old_token = issuer.mint(&claims, t0()).unwrap();
    let (old, new) = (key(0).kid().to_owned(), key(1).kid().to_owned());
    let shared = issuer.clone();

    // Step 1: publish the new key second; the old one still signs.
    issuer.replace_keys(vec![key(0), key(1)]).unwrap();
    assert_eq!(shared.published_kids(), vec![old.clone(), new.clone()]);
    assert_eq!(shared.signing_kid(), old);
    assert_eq!(shared.mint(&claims, t0()).unwrap().kid, old);

    // Step 2: the new key signs; the old one stays published for its live tokens.
    issuer.replace_keys(vec![key(1), key(0)]).unwrap();
    let new_token = shared.mint(&claims, t0()).unwrap();
    assert_eq!(new_token.kid, new);
    let published = jwks(&shared);
    verify_with_jwks(old_token.token.expose_secret(), &published).unwrap();
    verify_with_jwks(new_token.token.expose_secret(), &published).unwrap();

    // Step 3: the old key is dropped; its tokens no longer find a key.
    issuer.replace_keys(vec![key(1)]).unwrap();
    assert_eq!(
        verify_with_jwks(old_token.token.expose_secret(), &jwks(&shared)),
        Err("kid not published")
    );
}

#[test]
fn replace_keys_applies_the_rules_of_new_and_keeps_the_set_on_error() {
    let issuer = issuer();
    let before = issuer.published_kids();
    assert!(matches!(
        issuer.replace_keys(vec![]),
        Err(FederationError::NoKeys)
    ));
    assert!(matches!(
        issuer.replace_keys(vec![key(0), key(1), key(0)]),
        Err(FederationError::DuplicateKid { kid }) if kid == before[0]
    ));
    assert_eq!(issuer.published_kids(), before);
}

// === caps ===

#[test]
fn key_count_is_capped() {
    let keys = || {
        (0..=MAX_FEDERATION_KEYS)
            .map(|i| key(i % 2))
            .collect::<Vec<_>>()
    };
    assert!(matches!(
        FederationIssuer::new(ISSUER, keys(), DEFAULT_FEDERATION_TOKEN_TTL),
        Err(FederationError::TooManyKeys { count: 11, max: 10 })
    ));
    assert!(matches!(
        FederationIssuer::new(ISSUER, vec![], DEFAULT_FEDERATION_TOKEN_TTL),
        Err(FederationError::NoKeys)
    ));
    assert!(matches!(
        FederationIssuer::new(ISSUER, vec![key(0), key(0)], DEFAULT_FEDERATION_TOKEN_TTL),
        Err(FederationError::DuplicateKid { .. })
    ));
}

#[test]
fn token_ttl_must_be_within_bounds() {
    for ttl in [MIN_FEDERATION_TOKEN_TTL, MAX_FEDERATION_TOKEN_TTL] {
        let issuer = FederationIssuer::new(ISSUER, vec![key(0)], ttl).unwrap();
        assert_eq!(issuer.token_ttl(), ttl);
    }
    for ttl in [
        MIN_FEDERATION_TOKEN_TTL - Duration::from_secs(1),
        MAX_FEDERATION_TOKEN_TTL + Duration::from_secs(1),
    ] {
        let err = FederationIssuer::new(ISSUER, vec![key(0)], ttl).unwrap_err();
        assert!(
            matches!(err, FederationError::TokenTtlOutOfRange { .. }),
            "{err}"
        );
    }
}

#[test]
fn issuer_urls_follow_the_rules() {
    let good = [
        "https://broker.example.org",
        "https://broker.example.org:8443",
        "https://broker.example.org/federation/v1",
        "https://10.0.0.1",
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8080/issuer",
        "http://[::1]:8080",
    ];
    for url in good {
        let issuer = FederationIssuer::new(url, vec![key(0)], DEFAULT_FEDERATION_TOKEN_TTL)
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(issuer.issuer(), url);
    }
    let long = format!("https://broker.example.org/{}", "a".repeat(230));
    let bad = [
        ("http://broker.example.org", "loopback"),
        ("http://10.0.0.1", "loopback"),
        ("ftp://broker.example.org", "scheme"),
        ("broker.example.org", "scheme"),
        ("https://", "host is empty"),
        ("https://broker.example.org/", "'/'"),
        ("https://broker.example.org/a//b", "segment"),
        ("https://broker.example.org/a/../b", "segment"),
        ("https://broker.example.org?x=1", "query"),
        ("https://broker.example.org#f", "fragment"),
        ("https://user@broker.example.org", "userinfo"),
        ("https://user:s3cret@broker.example.org", "userinfo"),
        // Refused for its "query" before its user info is looked at: still not repeated.
        ("https://user:s3cret?x@broker.example.org", "query"),
        ("https://broker.example.org:0", "port"),
        ("https://broker.example.org:99999", "port"),
        ("https://broker.example.org:", "port"),
        ("https://bro ker.example.org", "whitespace"),
        ("https://-broker.example.org", "dns name"),
        ("https://broker..example.org", "dns name"),
        ("https://broker.example.org/a%20b", "path"),
        (long.as_str(), "255"),
    ];
    for (url, rule_part) in bad {
        match FederationIssuer::new(url, vec![key(0)], DEFAULT_FEDERATION_TOKEN_TTL) {
            Err(e @ FederationError::InvalidIssuerUrl { rule, .. }) => {
                assert!(rule.contains(rule_part), "{url}: {rule}");
                assert!(e.to_string().contains(rule));
                assert!(
                    !e.to_string().contains("s3cret"),
                    "the password is repeated: {e}"
                );
            }
            other => panic!("{url}: expected an issuer url refusal, got {other:?}"),
        }
    }
}

#[test]
fn pem_round_trip_goes_through_standard_base64() {
    // The PEM body is standard base64 of the PKCS#8 DER (what `openssl pkey` reads).
    let pem = &shared_pems()[0];
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert_eq!(STANDARD.decode(body).unwrap(), pem_der(pem));
    assert!(pem.lines().all(|l| l.len() <= 64));
}
