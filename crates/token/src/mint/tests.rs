use std::collections::HashSet;

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde_json::{Value, json};
use svid_broker_identity::secret::ExposeSecret as _;

use super::*;
use crate::keys::{KeyRingConfig, SigningAlgorithm};
use crate::testutil::{decode, minter, subject, t0};
use crate::verify28::{Registry28, Reject};

const ISSUER: &str = "svid-broker";
const SERVICE: &str = "registry.local";

fn access() -> Vec<Access> {
    vec![
        Access::new("repository", "team/b", ["push", "pull", "push"]),
        Access::new("repository", "localhost:5000/team/a", ["pull"]),
        Access::new("registry", "catalog", ["*"]),
    ]
}

fn mint_at(m: &TokenMinter, now: SystemTime, profile: Profile) -> MintedToken {
    let sub = subject();
    let access = access();
    m.mint(&MintRequest::new(
        ISSUER, SERVICE, &sub, &access, profile, now,
    ))
    .unwrap()
}

fn registry(m: &TokenMinter) -> Registry28 {
    Registry28::new(
        ISSUER,
        SERVICE,
        vec![m.key_ring().ca().trust_anchor().clone()],
    )
}

/// Re-signs `header` and `claims` with the minter's current leaf, to build tokens our minter
/// would never produce and show that the verifier rejects them for the right reason.
fn forge(m: &TokenMinter, header: &Value, claims: &Value) -> String {
    let leaf = m.key_ring().current();
    let mut t = URL_SAFE_NO_PAD.encode(header.to_string());
    t.push('.');
    t.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let sig = leaf.sign(t.as_bytes()).unwrap();
    t.push('.');
    t.push_str(&URL_SAFE_NO_PAD.encode(sig));
    t
}

#[test]
fn claims_are_exactly_the_distribution_claim_set() {
    let m = minter(SigningAlgorithm::Es256);
    let minted = mint_at(&m, t0(), Profile::Distribution2);
    let (_, claims, _) = decode(minted.token.expose_secret());
    let now = 1_800_000_000u64;
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "spiffe://example.org/ns/ci/sa/builder");
    assert!(claims["aud"].is_string(), "aud must be one string");
    assert_eq!(claims["aud"], SERVICE);
    assert_eq!(claims["exp"], now + 300);
    assert_eq!(claims["nbf"], now - 5);
    assert_eq!(claims["iat"], now - 5);
    assert_eq!(claims["jti"], minted.jti);
    assert_eq!(
        claims["access"],
        json!([
            {"type": "registry", "name": "catalog", "actions": ["*"]},
            {"type": "repository", "name": "localhost:5000/team/a", "actions": ["pull"]},
            {"type": "repository", "name": "team/b", "actions": ["pull", "push"]},
        ])
    );
    let keys: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["access", "aud", "exp", "iat", "iss", "jti", "nbf", "sub"]
    );
    assert!(!minted.token.expose_secret().contains("class"));

    assert_eq!(minted.issued_at, t0());
    assert_eq!(minted.expires_at, t0() + DEFAULT_TOKEN_TTL);
    assert_eq!(minted.expires_in(), DEFAULT_TOKEN_TTL);
    assert_eq!(minted.access.len(), 3);
}

#[test]
fn subsecond_now_and_ttl_are_truncated() {
    let m = minter(SigningAlgorithm::Es256);
    let sub = subject();
    let now = t0() + Duration::from_millis(999);
    let minted = m
        .mint(
            &MintRequest::new(ISSUER, SERVICE, &sub, &[], Profile::Distribution2, now)
                .with_ttl(Duration::from_millis(60_999)),
        )
        .unwrap();
    let (_, claims, _) = decode(minted.token.expose_secret());
    assert_eq!(claims["exp"], 1_800_000_060u64);
    assert_eq!(claims["access"], json!([]));
}

#[test]
fn ttl_must_be_between_60_s_and_the_ring_maximum() {
    let m = minter(SigningAlgorithm::Es256);
    let sub = subject();
    let req = |ttl| {
        MintRequest::new(ISSUER, SERVICE, &sub, &[], Profile::Distribution2, t0()).with_ttl(ttl)
    };
    assert!(matches!(
        m.mint(&req(Duration::from_secs(59))),
        Err(TokenError::TtlTooShort {
            ttl_secs: 59,
            min_secs: 60
        })
    ));
    assert!(matches!(
        m.mint(&req(Duration::from_millis(59_999))),
        Err(TokenError::TtlTooShort { ttl_secs: 59, .. })
    ));
    assert!(m.mint(&req(MIN_TOKEN_TTL)).is_ok());
    let max = KeyRingConfig::default().max_token_ttl;
    assert!(m.mint(&req(max)).is_ok());
    assert!(matches!(
        m.mint(&req(max + Duration::from_secs(1))),
        Err(TokenError::TtlTooLong { max_secs: 900, .. })
    ));
}

#[test]
fn string_claims_are_checked() {
    let m = minter(SigningAlgorithm::Es256);
    let sub = subject();
    let mint = |iss: &str, aud: &str| {
        m.mint(&MintRequest::new(
            iss,
            aud,
            &sub,
            &[],
            Profile::Distribution2,
            t0(),
        ))
    };
    assert!(matches!(
        mint("", SERVICE),
        Err(TokenError::EmptyClaim {
            claim: Claim::Issuer
        })
    ));
    assert!(matches!(
        mint(ISSUER, ""),
        Err(TokenError::EmptyClaim {
            claim: Claim::Audience
        })
    ));
    assert!(matches!(
        mint(ISSUER, &"a".repeat(MAX_SERVICE_LEN + 1)),
        Err(TokenError::ClaimTooLong {
            claim: Claim::Audience,
            ..
        })
    ));
    assert!(matches!(
        mint("svid\u{1b}broker", SERVICE),
        Err(TokenError::ClaimControlChar {
            claim: Claim::Issuer
        })
    ));
    let bad_access = [Access::new("repository", "a", ["PULL"])];
    assert!(matches!(
        m.mint(&MintRequest::new(
            ISSUER,
            SERVICE,
            &sub,
            &bad_access,
            Profile::Distribution2,
            t0()
        )),
        Err(TokenError::InvalidAction { index: 0, .. })
    ));
    assert!(matches!(
        m.mint(&MintRequest::new(
            ISSUER,
            SERVICE,
            &sub,
            &[],
            Profile::Distribution2,
            UNIX_EPOCH
        )),
        Err(TokenError::TimeOutOfRange)
    ));
}

#[test]
fn jti_is_unique_128_bit_base64url() {
    let m = minter(SigningAlgorithm::Es256);
    let mut seen = HashSet::new();
    for _ in 0..1000 {
        let minted = mint_at(&m, t0(), Profile::Distribution2);
        assert_eq!(minted.jti.len(), 22);
        let bytes = URL_SAFE_NO_PAD.decode(&minted.jti).unwrap();
        assert_eq!(bytes.len(), 16);
        // 1,000 tokens span many draws of the pool: a slot handed out after it was zeroed
        // would show as all zeros.
        assert_ne!(bytes, [0u8; 16], "a used pool slot came out again");
        assert!(seen.insert(minted.jti), "jti repeated");
    }
}

#[test]
fn headers_per_profile() {
    for alg in [
        SigningAlgorithm::Es256,
        SigningAlgorithm::Es384,
        SigningAlgorithm::Rs256,
    ] {
        let m = minter(alg);
        let leaf = m.key_ring().current();
        for profile in Profile::ALL {
            let minted = mint_at(&m, t0(), profile);
            let (header, _, sig) = decode(minted.token.expose_secret());
            assert_eq!(header["typ"], "JWT");
            assert_eq!(header["alg"], alg.jws_name());
            assert!(header.get("jwk").is_none());
            let x5c = header["x5c"].as_array().unwrap();
            assert_eq!(x5c.len(), 1);
            // Standard base64 with padding rules, not base64url.
            let x5c0 = x5c[0].as_str().unwrap();
            assert_eq!(x5c0, STANDARD.encode(leaf.certificate()));
            assert_eq!(STANDARD.decode(x5c0).unwrap(), leaf.certificate().as_ref());
            let kid = header["kid"].as_str().unwrap();
            assert_eq!(kid, minted.key_id);
            match profile {
                Profile::Distribution2 => {
                    assert_eq!(kid, leaf.libtrust_key_id());
                    let groups: Vec<&str> = kid.split(':').collect();
                    assert_eq!(groups.len(), 12);
                    assert!(groups.iter().all(|g| {
                        g.len() == 4
                            && g.bytes()
                                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
                    }));
                }
                Profile::Distribution3 | Profile::Zot => {
                    assert_eq!(kid, leaf.thumbprint());
                    assert_eq!(kid.len(), 43);
                    assert_eq!(URL_SAFE_NO_PAD.decode(kid).unwrap().len(), 32);
                }
            }
            let want_sig_len = match alg {
                SigningAlgorithm::Es256 => 64,
                SigningAlgorithm::Es384 => 96,
                _ => 256,
            };
            assert_eq!(sig.len(), want_sig_len);
        }
    }
}

#[test]
fn x5c_is_not_base64url() {
    // Across a few leaves, the DER always produces '+' or '/' somewhere; the header must keep
    // them (standard alphabet), which base64url would have turned into '-' / '_'.
    let m = minter(SigningAlgorithm::Es256);
    let mut saw_std_only_char = false;
    for i in 0..8 {
        m.key_ring().rotate(t0() + Duration::from_secs(i)).unwrap();
        let x5c0 = m.key_ring().current().x5c()[0].clone();
        assert!(!x5c0.contains('-') && !x5c0.contains('_'));
        saw_std_only_char |= x5c0.contains('+') || x5c0.contains('/');
        assert_ne!(
            URL_SAFE.encode(m.key_ring().current().certificate()) == x5c0,
            x5c0.contains('+') || x5c0.contains('/')
        );
    }
    assert!(saw_std_only_char);
}

#[test]
fn tokens_pass_the_distribution_2_8_verifier() {
    for alg in [
        SigningAlgorithm::Es256,
        SigningAlgorithm::Es384,
        SigningAlgorithm::Rs256,
    ] {
        let m = minter(alg);
        let reg = registry(&m);
        for profile in Profile::ALL {
            let minted = mint_at(&m, t0(), profile);
            let claims = reg.verify(minted.token.expose_secret(), t0()).unwrap();
            assert_eq!(claims.sub, "spiffe://example.org/ns/ci/sa/builder");
            assert_eq!(claims.jti, minted.jti);
            assert_eq!(claims.iat, 1_800_000_000 - 5);
            assert_eq!(claims.access.len(), 3);
            assert_eq!(claims.access[2].resource_type, "repository");
            assert_eq!(claims.access[2].name, "team/b");
            assert_eq!(claims.access[2].actions, ["pull", "push"]);
        }
    }
}

#[test]
fn registry_leeway_and_claim_checks() {
    let m = minter(SigningAlgorithm::Es256);
    let minted = mint_at(&m, t0(), Profile::Distribution2);
    let token = minted.token.expose_secret();
    let exp = minted.expires_at;
    let reg = registry(&m);
    // 30 s past exp is inside the 60 s leeway, 90 s is not (reference §2.4 matrix).
    assert!(reg.verify(token, exp + Duration::from_secs(30)).is_ok());
    assert!(reg.verify(token, exp + Duration::from_secs(60)).is_ok());
    assert_eq!(
        reg.verify(token, exp + Duration::from_secs(90))
            .unwrap_err(),
        Reject::Expired
    );
    // A registry whose clock is behind: nbf (5 s back) plus the 60 s leeway would allow 65 s,
    // but a leaf issued right now is back-dated only 60 s, so that bounds the skew.
    assert!(reg.verify(token, t0() - Duration::from_secs(60)).is_ok());
    assert_eq!(
        reg.verify(token, t0() - Duration::from_secs(62))
            .unwrap_err(),
        Reject::Chain
    );
    assert_eq!(
        reg.verify(token, t0() - Duration::from_secs(70))
            .unwrap_err(),
        Reject::NotYetValid
    );
    let wrong_aud = Registry28::new(ISSUER, "other.registry", reg.roots.clone());
    assert_eq!(wrong_aud.verify(token, t0()).unwrap_err(), Reject::Audience);
    let wrong_iss = Registry28::new("someone-else", SERVICE, reg.roots.clone());
    assert_eq!(wrong_iss.verify(token, t0()).unwrap_err(), Reject::Issuer);
    // Another CA in the bundle: the x5c chain does not verify.
    let other = minter(SigningAlgorithm::Es256);
    assert_eq!(
        registry(&other).verify(token, t0()).unwrap_err(),
        Reject::Chain
    );
    // A flipped signature bit.
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[10] ^= 0x01;
    let tampered = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(reg.verify(&tampered, t0()).unwrap_err(), Reject::Signature);
}

#[test]
fn verifier_rejects_what_2_8_rejects() {
    // Negative controls: the verifier is not vacuous. Each token is validly signed by the leaf
    // but breaks one rule 2.8 enforces.
    let m = minter(SigningAlgorithm::Es256);
    let reg = registry(&m);
    let minted = mint_at(&m, t0(), Profile::Distribution2);
    let (header, claims, _) = decode(minted.token.expose_secret());
    assert!(reg.verify(&forge(&m, &header, &claims), t0()).is_ok());

    let mut array_aud = claims.clone();
    array_aud["aud"] = json!([SERVICE]);
    assert_eq!(
        reg.verify(&forge(&m, &header, &array_aud), t0())
            .unwrap_err(),
        Reject::Malformed
    );
    for alg in ["PS256", "EdDSA", "ES384", "RS256", "HS256"] {
        let mut h = header.clone();
        h["alg"] = alg.into();
        assert_eq!(
            reg.verify(&forge(&m, &h, &claims), t0()).unwrap_err(),
            Reject::Algorithm,
            "{alg}"
        );
    }
    // A signature of the wrong length (e.g. DER instead of r || s), and an empty one.
    let good = forge(&m, &header, &claims);
    let (signed, sig) = good.rsplit_once('.').unwrap();
    let mut long_sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    long_sig.push(0);
    let long = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(long_sig));
    assert_eq!(
        reg.verify(&long, t0()).unwrap_err(),
        Reject::SignatureLength
    );
    assert_eq!(
        reg.verify(&format!("{signed}."), t0()).unwrap_err(),
        Reject::EmptySignature
    );
    assert_eq!(
        reg.verify(&format!("{signed}.x.y"), t0()).unwrap_err(),
        Reject::Malformed
    );

    let mut no_exp = claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        reg.verify(&forge(&m, &header, &no_exp), t0()).unwrap_err(),
        Reject::Expired
    );
    // A libtrust kid of the leaf without x5c: the leaf is not in the bundle (§2.4 matrix).
    let mut kid_only = header.clone();
    kid_only.as_object_mut().unwrap().remove("x5c");
    assert_eq!(
        reg.verify(&forge(&m, &kid_only, &claims), t0())
            .unwrap_err(),
        Reject::UntrustedKid
    );
    // x5c as base64url is not what Go's StdEncoding decodes (when it differs at all).
    let leaf_der = m.key_ring().current().certificate().clone();
    let url = URL_SAFE.encode(&leaf_der);
    if url != STANDARD.encode(&leaf_der) {
        let mut h = header;
        h["x5c"] = json!([url]);
        assert_eq!(
            reg.verify(&forge(&m, &h, &claims), t0()).unwrap_err(),
            Reject::X5cEncoding
        );
    }
}

#[test]
fn rotation_invariant_holds_for_tokens_minted_at_any_time() {
    // Mint the longest allowed token every 7 minutes for 6 hours (many rotations). Every token
    // must verify at issuance and at the very last instant a registry accepts it (exp + 60 s),
    // with whichever leaf signed it, against the CA alone; and its leaf must stay published
    // (current or previous) for as long as the token is live.
    let m = minter(SigningAlgorithm::Es256);
    let reg = registry(&m);
    let max_ttl = m.key_ring().config().max_token_ttl;
    let sub = subject();
    let access = access();
    let mut live: Vec<(SystemTime, String)> = Vec::new();
    let mut leaves_seen = HashSet::new();
    for step in 0..(6 * 60 / 7) {
        let now = t0() + Duration::from_secs(step * 7 * 60);
        let minted = m
            .mint(
                &MintRequest::new(ISSUER, SERVICE, &sub, &access, Profile::Distribution2, now)
                    .with_ttl(max_ttl),
            )
            .unwrap();
        let leaf = m.key_ring().current();
        leaves_seen.insert(leaf.libtrust_key_id().to_owned());
        assert!(leaf.not_after() > minted.expires_at + REGISTRY_LEEWAY);
        assert!(leaf.not_before() <= now);
        let token = minted.token.expose_secret();
        reg.verify(token, now).unwrap();
        reg.verify(token, minted.expires_at + REGISTRY_LEEWAY)
            .unwrap();

        live.push((
            minted.expires_at + REGISTRY_LEEWAY,
            leaf.libtrust_key_id().to_owned(),
        ));
        live.retain(|(until, _)| *until >= now);
        let published: Vec<String> = [Some(m.key_ring().current()), m.key_ring().previous()]
            .into_iter()
            .flatten()
            .map(|l| l.libtrust_key_id().to_owned())
            .collect();
        for (_, kid) in &live {
            assert!(published.contains(kid), "a live token's leaf left the JWKS");
        }
    }
    assert!(
        leaves_seen.len() >= 10,
        "rotated {} times",
        leaves_seen.len()
    );
}

#[test]
fn tokens_of_the_previous_leaf_still_verify_after_rotation() {
    let m = minter(SigningAlgorithm::Es256);
    let reg = registry(&m);
    let old = mint_at(&m, t0(), Profile::Distribution3);
    let old_leaf = m.key_ring().current();
    m.key_ring().rotate(t0() + Duration::from_secs(10)).unwrap();
    let new = mint_at(&m, t0() + Duration::from_secs(10), Profile::Distribution3);
    assert_ne!(old.key_id, new.key_id);
    assert_eq!(
        m.key_ring().previous().unwrap().thumbprint(),
        old_leaf.thumbprint()
    );
    let jwks: Value = serde_json::from_str(&m.key_ring().jwks_json()).unwrap();
    // Current leaf (libtrust, thumbprint), then the previous one.
    assert_eq!(jwks["keys"][3]["kid"], old.key_id);
    reg.verify(old.token.expose_secret(), t0() + Duration::from_secs(20))
        .unwrap();
    reg.verify(new.token.expose_secret(), t0() + Duration::from_secs(20))
        .unwrap();
}

#[test]
fn token_is_redacted_in_debug() {
    let m = minter(SigningAlgorithm::Es256);
    let minted = mint_at(&m, t0(), Profile::Distribution2);
    let shown = format!("{minted:?} {m:?}");
    assert!(
        shown.contains("RegistryToken(SecretBox<str>([REDACTED]))"),
        "{shown}"
    );
    let signature = minted.token.expose_secret().rsplit('.').next().unwrap();
    assert!(!shown.contains(signature));
    assert!(!shown.contains(minted.token.expose_secret()));
}
