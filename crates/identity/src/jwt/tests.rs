use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::bundle::testing::{TestKey, b64, jwt_set, p256, rsa2048};
use crate::bundle::{BundleSet, EcCurve, JwtBundle, SpiffeBundle, X509Bundle};

const NOW: i64 = 1_800_000_000;
const SUB: &str = "spiffe://example.org/workload";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW as u64)
}

fn header(alg: &str, kid: &str) -> String {
    format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"JWT"}}"#)
}

fn claims_with(extra: &str) -> String {
    format!(
        r#"{{"sub":"{SUB}","aud":"svc","exp":{},"iat":{}{extra}}}"#,
        NOW + 300,
        NOW - 10
    )
}

fn claims() -> String {
    claims_with("")
}

fn validator() -> JwtSvidValidator {
    JwtSvidValidator::new(["svc"]).unwrap()
}

fn es256_set() -> BundleSet {
    jwt_set("example.org", vec![p256().authority("k1")])
}

fn es256(header: &str, claims: &str) -> String {
    p256().jws(JwsAlgorithm::Es256, header, claims)
}

fn validate(token: &str) -> Result<JwtSvidClaims, JwtSvidError> {
    validator().validate(token, &es256_set(), now())
}

fn err(token: &str) -> JwtSvidError {
    validate(token).unwrap_err()
}

// === success ===

#[test]
fn valid_token_for_each_of_the_nine_algorithms() {
    let p384 = TestKey::ec(EcCurve::P384);
    let p521 = TestKey::ec(EcCurve::P521);
    let set = jwt_set(
        "example.org",
        vec![
            p256().authority("p256"),
            p384.authority("p384"),
            p521.authority("p521"),
            rsa2048().authority("rsa"),
        ],
    );
    for alg in JwsAlgorithm::ALL {
        let (key, kid) = match alg {
            JwsAlgorithm::Es256 => (p256(), "p256"),
            JwsAlgorithm::Es384 => (&p384, "p384"),
            JwsAlgorithm::Es512 => (&p521, "p521"),
            _ => (rsa2048(), "rsa"),
        };
        let token = key.jws(alg, &header(alg.as_str(), kid), &claims());
        let verified = validator().validate(&token, &set, now()).unwrap();
        assert_eq!(verified.alg, alg);
        assert_eq!(verified.kid, kid);
    }
}

#[test]
fn valid_token_yields_its_claims() {
    let token = es256(
        r#"{"alg":"ES256","kid":"k1"}"#,
        &format!(
            r#"{{"sub":"{SUB}","aud":["other","svc"],"exp":{},"nbf":{},"iat":{},"x":{{"y":[1]}}}}"#,
            NOW + 60,
            NOW - 5,
            NOW - 10
        ),
    );
    let verified = validate(&token).unwrap();
    assert_eq!(verified.spiffe_id.as_str(), SUB);
    assert_eq!(verified.audiences, ["other", "svc"]);
    assert_eq!(verified.expires_at, now() + Duration::from_secs(60));
    assert_eq!(verified.not_before, Some(now() - Duration::from_secs(5)));
    assert_eq!(verified.issued_at, Some(now() - Duration::from_secs(10)));
    assert_eq!(verified.claims_map().unwrap()["x"]["y"][0], 1);
    assert!(!format!("{verified:?}").contains("claims_json"));
}

// === construction ===

#[test]
fn validator_needs_an_expected_audience() {
    assert_eq!(
        JwtSvidValidator::new(Vec::<String>::new()).unwrap_err(),
        JwtSvidError::NoExpectedAudience
    );
    assert_eq!(
        JwtSvidValidator::new(["a", ""]).unwrap_err(),
        JwtSvidError::EmptyExpectedAudience { index: 1 }
    );
}

#[test]
fn validator_leeway_is_whole_seconds_up_to_the_maximum() {
    assert_eq!(
        validator().with_leeway(MAX_LEEWAY).unwrap().leeway(),
        MAX_LEEWAY
    );
    for bad in [
        MAX_LEEWAY + Duration::from_secs(1),
        Duration::from_millis(1500),
    ] {
        assert!(matches!(
            validator().with_leeway(bad).unwrap_err(),
            JwtSvidError::InvalidLeeway { .. }
        ));
    }
}

#[test]
fn validator_limits_must_be_in_range() {
    assert!(validator().with_max_token_len(MAX_TOKEN_LEN_LIMIT).is_ok());
    assert!(validator().with_max_token_len(0).is_err());
    assert!(
        validator()
            .with_max_token_len(MAX_TOKEN_LEN_LIMIT + 1)
            .is_err()
    );
    assert!(validator().with_max_audiences(1).is_ok());
    assert!(validator().with_max_audiences(0).is_err());
    assert!(validator().with_max_kidless_candidates(65).is_err());
}

// === size and form ===

#[test]
fn token_over_length_cap_is_rejected() {
    let token = es256(&header("ES256", "k1"), &claims());
    let at_cap = validator().with_max_token_len(token.len()).unwrap();
    assert!(at_cap.validate(&token, &es256_set(), now()).is_ok());
    let below = validator().with_max_token_len(token.len() - 1).unwrap();
    assert_eq!(
        below.validate(&token, &es256_set(), now()).unwrap_err(),
        JwtSvidError::TokenTooLarge {
            len: token.len(),
            max: token.len() - 1
        }
    );
}

#[test]
fn json_serialization_is_rejected() {
    let token = r#"{"payload":"e30","signatures":[]}"#;
    assert_eq!(err(token), JwtSvidError::JsonSerialization);
}

#[test]
fn token_without_three_segments_is_rejected() {
    let token = es256(&header("ES256", "k1"), &claims());
    let two = token.rsplit_once('.').unwrap().0;
    assert_eq!(err(two), JwtSvidError::SegmentCount { segments: 2 });
    let five = format!("{token}.a.b");
    assert_eq!(err(&five), JwtSvidError::SegmentCount { segments: 5 });
}

#[test]
fn padded_or_non_base64url_segments_are_rejected() {
    let token = es256(&header("ES256", "k1"), &claims());
    let (h, rest) = token.split_once('.').unwrap();
    let padded_header = format!("{h}=.{rest}");
    assert_eq!(
        err(&padded_header),
        JwtSvidError::Base64 {
            part: TokenPart::Header
        }
    );
    let (c, s) = rest.split_once('.').unwrap();
    let bad_claims = format!("{h}.{c}+.{s}");
    assert_eq!(
        err(&bad_claims),
        JwtSvidError::Base64 {
            part: TokenPart::Claims
        }
    );
    let padded_sig = format!("{token}==");
    assert_eq!(
        err(&padded_sig),
        JwtSvidError::Base64 {
            part: TokenPart::Signature
        }
    );
}

#[test]
fn oversized_signature_is_rejected() {
    let token = es256(&header("ES256", "k1"), &claims());
    let (input, _) = token.rsplit_once('.').unwrap();
    let big = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode([7u8; MAX_SIGNATURE_LEN + 10])
    );
    assert_eq!(
        err(&big),
        JwtSvidError::Base64 {
            part: TokenPart::Signature
        }
    );
}

// === header ===

#[test]
fn header_that_is_not_an_object_is_rejected() {
    let token = es256("[1]", &claims());
    assert!(matches!(
        err(&token),
        JwtSvidError::MalformedJson {
            part: TokenPart::Header,
            ..
        }
    ));
}

#[test]
fn header_members_outside_the_allow_list_are_rejected_by_name() {
    for member in ["crit", "jku", "jwk", "x5u", "x5c", "b64", "cty", "x5t"] {
        let token = es256(
            &format!(r#"{{"alg":"ES256","kid":"k1","{member}":["x"]}}"#),
            &claims(),
        );
        assert_eq!(
            err(&token),
            JwtSvidError::HeaderMemberNotAllowed {
                member: member.to_owned()
            }
        );
    }
}

#[test]
fn header_duplicate_member_is_rejected() {
    let token = es256(r#"{"alg":"ES256","kid":"k1","alg":"ES256"}"#, &claims());
    assert_eq!(
        err(&token),
        JwtSvidError::DuplicateMember {
            part: TokenPart::Header,
            member: Some("alg")
        }
    );
}

#[test]
fn header_alg_of_wrong_type_is_rejected() {
    let token = es256(r#"{"alg":256,"kid":"k1"}"#, &claims());
    assert_eq!(
        err(&token),
        JwtSvidError::WrongType {
            part: TokenPart::Header,
            member: "alg"
        }
    );
}

#[test]
fn header_without_alg_is_rejected() {
    let token = es256(r#"{"kid":"k1"}"#, &claims());
    assert_eq!(err(&token), JwtSvidError::MissingAlg);
}

#[test]
fn disallowed_algorithms_are_rejected_before_any_key_lookup() {
    // An empty bundle set: had a key lookup happened first, the error would be NoBundle.
    let empty = BundleSet::new();
    for (alg, kind) in [
        ("none", RejectedAlgorithm::None),
        ("HS256", RejectedAlgorithm::Hmac),
        ("HS512", RejectedAlgorithm::Hmac),
        ("EdDSA", RejectedAlgorithm::EdDsa),
        ("es256", RejectedAlgorithm::Other),
        ("RS1", RejectedAlgorithm::Other),
    ] {
        let token = es256(&header(alg, "k1"), &claims());
        assert_eq!(
            validator().validate(&token, &empty, now()).unwrap_err(),
            JwtSvidError::UnsupportedAlgorithm { kind },
            "{alg}"
        );
    }
}

#[test]
fn typ_must_be_jwt_or_jose() {
    for typ in ["JWT", "JOSE"] {
        let token = es256(
            &format!(r#"{{"alg":"ES256","kid":"k1","typ":"{typ}"}}"#),
            &claims(),
        );
        assert!(validate(&token).is_ok(), "{typ}");
    }
    for typ in ["jwt", "at+jwt", ""] {
        let token = es256(
            &format!(r#"{{"alg":"ES256","kid":"k1","typ":"{typ}"}}"#),
            &claims(),
        );
        assert_eq!(err(&token), JwtSvidError::InvalidTyp, "{typ}");
    }
}

// === kid ===

#[test]
fn kid_is_required_by_default() {
    let token = es256(r#"{"alg":"ES256"}"#, &claims());
    assert_eq!(err(&token), JwtSvidError::MissingKid);
}

#[test]
fn kidless_token_is_tried_against_fitting_trust_domain_keys_when_enabled() {
    let other = TestKey::ec(EcCurve::P256);
    let set = jwt_set(
        "example.org",
        vec![
            other.authority("first"),
            rsa2048().authority("rsa"),
            p256().authority("second"),
        ],
    );
    let token = es256(r#"{"alg":"ES256"}"#, &claims());
    let lenient = validator().with_kid_mode(KidMode::TryTrustDomainKeys);
    assert_eq!(lenient.validate(&token, &set, now()).unwrap().kid, "second");

    let forged = other.jws(JwsAlgorithm::Es256, r#"{"alg":"ES256"}"#, &claims());
    let set = jwt_set("example.org", vec![p256().authority("only")]);
    assert_eq!(
        lenient.validate(&forged, &set, now()).unwrap_err(),
        JwtSvidError::InvalidSignature
    );
}

#[test]
fn kidless_token_without_fitting_key_is_rejected() {
    let set = jwt_set("example.org", vec![rsa2048().authority("rsa")]);
    let token = es256(r#"{"alg":"ES256"}"#, &claims());
    let lenient = validator().with_kid_mode(KidMode::TryTrustDomainKeys);
    assert_eq!(
        lenient.validate(&token, &set, now()).unwrap_err(),
        JwtSvidError::NoCandidateKey {
            alg: JwsAlgorithm::Es256
        }
    );
}

#[test]
fn kidless_token_with_too_many_candidate_keys_is_rejected() {
    let keys: Vec<TestKey> = (0..3).map(|_| TestKey::ec(EcCurve::P256)).collect();
    let mut authorities: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| k.authority(&format!("k{i}")))
        .collect();
    authorities.push(p256().authority("real"));
    let set = jwt_set("example.org", authorities);
    let token = es256(r#"{"alg":"ES256"}"#, &claims());
    let lenient = validator().with_kid_mode(KidMode::TryTrustDomainKeys);
    assert!(
        lenient
            .clone()
            .with_max_kidless_candidates(4)
            .unwrap()
            .validate(&token, &set, now())
            .is_ok()
    );
    assert_eq!(
        lenient
            .with_max_kidless_candidates(3)
            .unwrap()
            .validate(&token, &set, now())
            .unwrap_err(),
        JwtSvidError::TooManyCandidateKeys { count: 4, max: 3 }
    );
}

#[test]
fn escaped_kid_is_matched_by_value() {
    let token = es256(r#"{"alg":"ES256","kid":"k\u0031"}"#, &claims());
    assert_eq!(validate(&token).unwrap().kid, "k1");
}

#[test]
fn unknown_kid_is_rejected() {
    let token = es256(&header("ES256", "k2"), &claims());
    assert_eq!(err(&token), JwtSvidError::UnknownKid);
}

// === claims ===

#[test]
fn claims_that_are_not_an_object_are_rejected() {
    let token = es256(&header("ES256", "k1"), "not json");
    assert!(matches!(
        err(&token),
        JwtSvidError::MalformedJson {
            part: TokenPart::Claims,
            ..
        }
    ));
    let trailing = es256(&header("ES256", "k1"), &format!("{} {{}}", claims()));
    assert!(matches!(
        err(&trailing),
        JwtSvidError::MalformedJson {
            part: TokenPart::Claims,
            ..
        }
    ));
}

#[test]
fn missing_required_claims_are_rejected() {
    for (claim, json) in [
        ("sub", format!(r#"{{"aud":"svc","exp":{}}}"#, NOW + 60)),
        ("aud", format!(r#"{{"sub":"{SUB}","exp":{}}}"#, NOW + 60)),
        ("exp", format!(r#"{{"sub":"{SUB}","aud":"svc"}}"#)),
    ] {
        let token = es256(&header("ES256", "k1"), &json);
        assert_eq!(err(&token), JwtSvidError::MissingClaim { claim });
    }
}

#[test]
fn claims_of_wrong_type_are_rejected() {
    for (member, json) in [
        (
            "sub",
            format!(r#"{{"sub":7,"aud":"svc","exp":{}}}"#, NOW + 60),
        ),
        (
            "aud",
            format!(r#"{{"sub":"{SUB}","aud":7,"exp":{}}}"#, NOW + 60),
        ),
        (
            "aud",
            format!(r#"{{"sub":"{SUB}","aud":["svc",7],"exp":{}}}"#, NOW + 60),
        ),
        (
            "exp",
            format!(r#"{{"sub":"{SUB}","aud":"svc","exp":"{}"}}"#, NOW + 60),
        ),
        (
            "exp",
            format!(r#"{{"sub":"{SUB}","aud":"svc","exp":{}.5}}"#, NOW + 60),
        ),
        (
            "exp",
            format!(r#"{{"sub":"{SUB}","aud":"svc","exp":{}}}"#, u64::MAX),
        ),
        (
            "nbf",
            format!(
                r#"{{"sub":"{SUB}","aud":"svc","exp":{},"nbf":null}}"#,
                NOW + 60
            ),
        ),
        (
            "iat",
            format!(
                r#"{{"sub":"{SUB}","aud":"svc","exp":{},"iat":[1]}}"#,
                NOW + 60
            ),
        ),
    ] {
        let token = es256(&header("ES256", "k1"), &json);
        assert_eq!(
            err(&token),
            JwtSvidError::WrongType {
                part: TokenPart::Claims,
                member
            },
            "{json}"
        );
    }
}

#[test]
fn duplicate_claims_are_rejected() {
    let token = es256(&header("ES256", "k1"), &claims_with(r#","sub":"x""#));
    assert_eq!(
        err(&token),
        JwtSvidError::DuplicateMember {
            part: TokenPart::Claims,
            member: Some("sub")
        }
    );
    let token = es256(
        &header("ES256", "k1"),
        &claims_with(r#","jti":"a","jti":"b""#),
    );
    assert_eq!(
        err(&token),
        JwtSvidError::DuplicateMember {
            part: TokenPart::Claims,
            member: None
        }
    );
}

#[test]
fn claims_over_member_cap_are_rejected() {
    let extra: String = (0..MAX_CLAIMS_MEMBERS)
        .map(|i| format!(r#","c{i}":0"#))
        .collect();
    let token = es256(&header("ES256", "k1"), &claims_with(&extra));
    assert_eq!(
        err(&token),
        JwtSvidError::TooManyClaims {
            max: MAX_CLAIMS_MEMBERS
        }
    );
}

#[test]
fn empty_audience_array_is_rejected() {
    let json = format!(r#"{{"sub":"{SUB}","aud":[],"exp":{}}}"#, NOW + 60);
    let token = es256(&header("ES256", "k1"), &json);
    assert_eq!(err(&token), JwtSvidError::EmptyAudience);
}

#[test]
fn audience_count_over_cap_is_rejected() {
    let auds = |n: usize| {
        let values: Vec<String> = (0..n).map(|i| format!(r#""a{i}""#)).collect();
        format!(
            r#"{{"sub":"{SUB}","aud":[{},"svc"],"exp":{}}}"#,
            values.join(","),
            NOW + 60
        )
    };
    let at_cap = es256(&header("ES256", "k1"), &auds(DEFAULT_MAX_AUDIENCES - 1));
    assert!(validate(&at_cap).is_ok());
    let over = es256(&header("ES256", "k1"), &auds(DEFAULT_MAX_AUDIENCES));
    assert_eq!(
        err(&over),
        JwtSvidError::TooManyAudiences {
            max: DEFAULT_MAX_AUDIENCES
        }
    );
}

// === subject and trust domain ===

#[test]
fn subject_that_is_not_a_strict_spiffe_id_is_rejected() {
    for sub in [
        "spiffe://Example.org/w",
        "https://example.org/w",
        "spiffe://example.org/w/",
    ] {
        let json = format!(r#"{{"sub":"{sub}","aud":"svc","exp":{}}}"#, NOW + 60);
        let token = es256(&header("ES256", "k1"), &json);
        assert!(
            matches!(err(&token), JwtSvidError::InvalidSubject { .. }),
            "{sub}"
        );
    }
}

#[test]
fn subject_from_trust_domain_without_bundle_is_rejected_without_echoing_it() {
    let json = format!(
        r#"{{"sub":"spiffe://elsewhere.test/w","aud":"svc","exp":{}}}"#,
        NOW + 60
    );
    let token = es256(&header("ES256", "k1"), &json);
    let error = err(&token);
    assert_eq!(error, JwtSvidError::NoBundle);
    assert!(!error.to_string().contains("elsewhere"));
}

#[test]
fn keys_of_other_trust_domains_are_never_used() {
    // The signing key is trusted, but only for other.org.
    let mut set = jwt_set("other.org", vec![p256().authority("k1")]);
    set.insert(SpiffeBundle::empty(crate::bundle::testing::td(
        "example.org",
    )))
    .unwrap();
    let token = es256(&header("ES256", "k1"), &claims());
    assert_eq!(
        validator().validate(&token, &set, now()).unwrap_err(),
        JwtSvidError::UnknownKid
    );
}

#[test]
fn x509_authorities_are_never_used_for_jwt() {
    let td = crate::bundle::testing::td("example.org");
    let x509 = X509Bundle::new(
        td.clone(),
        vec![crate::bundle::testing::ca_cert(
            &rcgen::PKCS_ECDSA_P256_SHA256,
        )],
    )
    .unwrap();
    let mut set = BundleSet::new();
    set.insert(SpiffeBundle::new(x509, JwtBundle::empty(td)).unwrap())
        .unwrap();
    let token = es256(&header("ES256", "k1"), &claims());
    assert_eq!(
        validator().validate(&token, &set, now()).unwrap_err(),
        JwtSvidError::UnknownKid
    );
}

// === key binding and signature ===

#[test]
fn alg_that_does_not_fit_the_key_is_rejected() {
    let set = jwt_set(
        "example.org",
        vec![p256().authority("ec"), rsa2048().authority("rsa")],
    );
    for (alg, kid) in [
        (JwsAlgorithm::Es384, "ec"),
        (JwsAlgorithm::Rs256, "ec"),
        (JwsAlgorithm::Es256, "rsa"),
    ] {
        let token = format!(
            "{}.{}.{}",
            b64(&header(alg.as_str(), kid)),
            b64(&claims()),
            URL_SAFE_NO_PAD.encode([1u8; 64])
        );
        assert_eq!(
            validator().validate(&token, &set, now()).unwrap_err(),
            JwtSvidError::AlgorithmKeyMismatch { alg },
            "{alg} with {kid}"
        );
    }
}

#[test]
fn alg_other_than_the_jwk_declared_alg_is_rejected() {
    let mut authority = rsa2048().authority("rsa");
    authority.alg = Some(JwsAlgorithm::Rs256);
    let set = jwt_set("example.org", vec![authority]);
    let ok = rsa2048().jws(JwsAlgorithm::Rs256, &header("RS256", "rsa"), &claims());
    assert!(validator().validate(&ok, &set, now()).is_ok());
    let token = rsa2048().jws(JwsAlgorithm::Ps256, &header("PS256", "rsa"), &claims());
    assert_eq!(
        validator().validate(&token, &set, now()).unwrap_err(),
        JwtSvidError::AlgorithmKeyMismatch {
            alg: JwsAlgorithm::Ps256
        }
    );
}

#[test]
fn tampered_claims_fail_the_signature() {
    let token = es256(&header("ES256", "k1"), &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let other_claims = b64(&claims().replace("svc", "svd"));
    let tampered = format!("{}.{other_claims}.{}", parts[0], parts[2]);
    let validator = JwtSvidValidator::new(["svd"]).unwrap();
    assert_eq!(
        validator
            .validate(&tampered, &es256_set(), now())
            .unwrap_err(),
        JwtSvidError::InvalidSignature
    );
}

#[test]
fn signature_by_another_key_is_rejected() {
    let token =
        TestKey::ec(EcCurve::P256).jws(JwsAlgorithm::Es256, &header("ES256", "k1"), &claims());
    assert_eq!(err(&token), JwtSvidError::InvalidSignature);
}

#[test]
fn time_and_audience_are_checked_only_after_the_signature() {
    let json = format!(r#"{{"sub":"{SUB}","aud":"nobody","exp":{}}}"#, NOW - 3600);
    let forged = TestKey::ec(EcCurve::P256).jws(JwsAlgorithm::Es256, &header("ES256", "k1"), &json);
    assert_eq!(err(&forged), JwtSvidError::InvalidSignature);
}

// === time ===

fn with_times(exp: i64, nbf: Option<i64>, iat: Option<i64>) -> String {
    let mut json = format!(r#"{{"sub":"{SUB}","aud":"svc","exp":{exp}"#);
    if let Some(nbf) = nbf {
        json.push_str(&format!(r#","nbf":{nbf}"#));
    }
    if let Some(iat) = iat {
        json.push_str(&format!(r#","iat":{iat}"#));
    }
    json.push('}');
    es256(&header("ES256", "k1"), &json)
}

#[test]
fn exp_at_now_minus_leeway_is_expired() {
    let strict = validator().with_leeway(Duration::ZERO).unwrap();
    let set = es256_set();
    assert!(
        strict
            .validate(&with_times(NOW + 1, None, None), &set, now())
            .is_ok()
    );
    assert_eq!(
        strict
            .validate(&with_times(NOW, None, None), &set, now())
            .unwrap_err(),
        JwtSvidError::Expired {
            exp: NOW,
            now: NOW,
            leeway_secs: 0
        }
    );
    // Default leeway 30 s.
    assert!(validate(&with_times(NOW - 29, None, None)).is_ok());
    assert!(matches!(
        err(&with_times(NOW - 30, None, None)),
        JwtSvidError::Expired { .. }
    ));
}

#[test]
fn now_is_truncated_to_whole_seconds() {
    let strict = validator().with_leeway(Duration::ZERO).unwrap();
    let almost = now() + Duration::from_millis(999);
    assert!(
        strict
            .validate(&with_times(NOW + 1, None, None), &es256_set(), almost)
            .is_ok()
    );
}

#[test]
fn nbf_beyond_leeway_is_rejected() {
    assert!(validate(&with_times(NOW + 60, Some(NOW + 30), None)).is_ok());
    assert!(matches!(
        err(&with_times(NOW + 60, Some(NOW + 31), None)),
        JwtSvidError::NotYetValid { nbf, .. } if nbf == NOW + 31
    ));
}

#[test]
fn iat_beyond_leeway_is_rejected() {
    assert!(validate(&with_times(NOW + 60, None, Some(NOW + 30))).is_ok());
    assert!(matches!(
        err(&with_times(NOW + 60, None, Some(NOW + 31))),
        JwtSvidError::IssuedInFuture { iat, .. } if iat == NOW + 31
    ));
}

#[test]
fn clock_before_epoch_is_rejected() {
    let token = es256(&header("ES256", "k1"), &claims());
    let before = UNIX_EPOCH - Duration::from_secs(1);
    assert_eq!(
        validator()
            .validate(&token, &es256_set(), before)
            .unwrap_err(),
        JwtSvidError::ClockBeforeEpoch
    );
}

// === audience ===

#[test]
fn audience_must_contain_an_expected_value() {
    let token = es256(&header("ES256", "k1"), &claims());
    let any_of = JwtSvidValidator::new(["x", "svc"]).unwrap();
    assert!(any_of.validate(&token, &es256_set(), now()).is_ok());
    let other = JwtSvidValidator::new(["x", "y"]).unwrap();
    assert_eq!(
        other.validate(&token, &es256_set(), now()).unwrap_err(),
        JwtSvidError::AudienceMismatch
    );
}

fn claims_aud(aud: &str) -> String {
    format!(
        r#"{{"sub":"{SUB}","aud":{aud},"exp":{},"iat":{}}}"#,
        NOW + 300,
        NOW - 10
    )
}

#[test]
fn single_audience_match_refuses_multi_audience_tokens() {
    let single = validator().with_audience_match(AudienceMatch::Single);
    assert_eq!(single.audience_match(), AudienceMatch::Single);
    // One value, as a string or a one-element array: accepted.
    for aud in [r#""svc""#, r#"["svc"]"#] {
        let token = es256(&header("ES256", "k1"), &claims_aud(aud));
        assert!(
            single.validate(&token, &es256_set(), now()).is_ok(),
            "{aud}"
        );
    }
    // A token also minted for another relying party: accepted by any-of, refused by single.
    for (aud, count) in [(r#"["svc","other"]"#, 2), (r#"["svc","svc"]"#, 2)] {
        let token = es256(&header("ES256", "k1"), &claims_aud(aud));
        assert!(validator().validate(&token, &es256_set(), now()).is_ok());
        assert_eq!(
            single.validate(&token, &es256_set(), now()).unwrap_err(),
            JwtSvidError::AudienceNotSingle { count }
        );
    }
    // One value that is not ours: still a mismatch.
    let token = es256(&header("ES256", "k1"), &claims_aud(r#"["other"]"#));
    assert_eq!(
        single.validate(&token, &es256_set(), now()).unwrap_err(),
        JwtSvidError::AudienceMismatch
    );
}

// === JwtSvid ===

#[test]
fn jwt_svid_redacts_debug() {
    let token = es256(&header("ES256", "k1"), &claims());
    let svid = JwtSvid::new(token.clone());
    assert_eq!(svid.expose_secret(), token);
    assert_eq!(svid.len(), token.len());
    let shown = format!("{svid:?}");
    assert!(!shown.contains(&token[..10]), "{shown}");
    assert!(shown.contains("REDACTED"), "{shown}");
}

// === properties ===

proptest::proptest! {
    #[test]
    fn arbitrary_compact_tokens_never_validate(token in "[A-Za-z0-9_.-]{0,400}") {
        let set = es256_set();
        let lenient = validator().with_kid_mode(KidMode::TryTrustDomainKeys);
        proptest::prop_assert!(validator().validate(&token, &set, now()).is_err());
        proptest::prop_assert!(lenient.validate(&token, &set, now()).is_err());
    }

    #[test]
    fn arbitrary_signed_json_never_panics(header in "\\PC{0,60}", claims in "\\PC{0,120}") {
        // Signed with the trusted key, so parsing, time and audience checks all run.
        let token = es256(&header, &claims);
        let _ = validate(&token);
    }
}

// === review fixes: claim values, date range, empty kid, empty bundle ===

#[test]
fn unknown_claims_with_plain_values_validate_and_map() {
    let nested = format!(
        "{}1{}",
        "[".repeat(MAX_CLAIM_NESTING),
        "]".repeat(MAX_CLAIM_NESTING)
    );
    for extra in [
        r#","x":1e300"#.to_owned(),
        r#","x":18446744073709551616"#.to_owned(),
        r#","x":"\ud83d\ude00""#.to_owned(),
        r#","x":{"a":[true,null,-1.5,"s"]}"#.to_owned(),
        format!(r#","x":{nested}"#),
    ] {
        let verified = validate(&es256(&header("ES256", "k1"), &claims_with(&extra)))
            .unwrap_or_else(|e| panic!("{extra}: {e}"));
        let map = verified.claims_map().unwrap();
        assert!(map.contains_key("x"), "{extra}");
    }
}

#[test]
fn unknown_claim_with_number_out_of_range_is_rejected() {
    for extra in [r#","x":1e400"#, r#","x":[-1e999]"#, r#","x":{"y":1e309}"#] {
        let token = es256(&header("ES256", "k1"), &claims_with(extra));
        assert!(
            matches!(
                err(&token),
                JwtSvidError::InvalidClaimValue {
                    problem: ClaimValueProblem::NumberOutOfRange,
                    ..
                }
            ),
            "{extra}: {:?}",
            err(&token)
        );
    }
}

#[test]
fn unknown_claim_with_invalid_string_is_rejected() {
    for extra in [
        r#","x":"\ud800""#,
        r#","x":"\udc00""#,
        r#","x":["\ud800x"]"#,
        r#","x":{"\ud800":1}"#,
    ] {
        let token = es256(&header("ES256", "k1"), &claims_with(extra));
        assert!(
            matches!(
                err(&token),
                JwtSvidError::InvalidClaimValue {
                    problem: ClaimValueProblem::InvalidString,
                    ..
                }
            ),
            "{extra}: {:?}",
            err(&token)
        );
    }
}

#[test]
fn unknown_claim_with_invalid_utf8_is_rejected() {
    let mut claims = claims_with(r#","x":"AB""#).into_bytes();
    let at = claims.iter().rposition(|&b| b == b'A').unwrap();
    claims[at] = 0xff;
    let signing_input = format!(
        "{}.{}",
        b64(&header("ES256", "k1")),
        URL_SAFE_NO_PAD.encode(&claims)
    );
    let sig = p256().sign(JwsAlgorithm::Es256, signing_input.as_bytes());
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert!(
        matches!(
            err(&token),
            JwtSvidError::InvalidClaimValue {
                problem: ClaimValueProblem::InvalidString,
                ..
            }
        ),
        "{:?}",
        err(&token)
    );
}

#[test]
fn unknown_claim_nested_too_deep_is_rejected() {
    for depth in [MAX_CLAIM_NESTING + 1, 2000] {
        for (open, close) in [("[", "]"), (r#"{"a":"#, "}")] {
            let extra = format!(r#","x":{}1{}"#, open.repeat(depth), close.repeat(depth));
            let token = es256(&header("ES256", "k1"), &claims_with(&extra));
            assert_eq!(
                err(&token),
                JwtSvidError::InvalidClaimValue {
                    problem: ClaimValueProblem::TooDeep {
                        max: MAX_CLAIM_NESTING
                    },
                    column: err(&token).column_for_test(),
                },
                "depth {depth} {open}"
            );
        }
    }
}

impl JwtSvidError {
    fn column_for_test(&self) -> usize {
        match self {
            Self::InvalidClaimValue { column, .. } | Self::MalformedJson { column, .. } => *column,
            _ => 0,
        }
    }
}

#[test]
fn numeric_dates_up_to_year_9999_are_accepted() {
    let token = with_times(MAX_NUMERIC_DATE, Some(NOW - 5), Some(NOW - 5));
    let verified = validate(&token).unwrap();
    assert_eq!(
        verified.expires_at,
        UNIX_EPOCH + Duration::from_secs(MAX_NUMERIC_DATE as u64)
    );
}

#[test]
fn numeric_dates_after_year_9999_are_out_of_range() {
    for exp in [MAX_NUMERIC_DATE + 1, i64::MAX] {
        let token = with_times(exp, None, None);
        assert_eq!(
            err(&token),
            JwtSvidError::TimeOutOfRange { claim: "exp" },
            "{exp}"
        );
    }
    for nbf in [MIN_NUMERIC_DATE - 1, i64::MIN] {
        let token = with_times(NOW + 100, Some(nbf), None);
        assert_eq!(err(&token), JwtSvidError::TimeOutOfRange { claim: "nbf" });
        let token = with_times(NOW + 100, None, Some(nbf));
        assert_eq!(err(&token), JwtSvidError::TimeOutOfRange { claim: "iat" });
    }
}

#[test]
fn empty_kid_in_token_header_counts_as_missing() {
    let set = jwt_set("example.org", vec![p256().authority("")]);
    let token = es256(r#"{"alg":"ES256","kid":""}"#, &claims());
    assert_eq!(
        validator().validate(&token, &set, now()).unwrap_err(),
        JwtSvidError::MissingKid
    );
    // With kid-less search allowed, "" is no key id either: the key is found by trying keys.
    let verified = validator()
        .with_kid_mode(KidMode::TryTrustDomainKeys)
        .validate(&token, &es256_set(), now())
        .unwrap();
    assert_eq!(verified.kid, "k1");
}

fn p256_jwk(kid: &str) -> String {
    let TestKey::Ec(_, pair) = p256() else {
        unreachable!("p256() is an EC key")
    };
    use aws_lc_rs::signature::KeyPair as _;
    let point = pair.public_key().as_ref();
    format!(
        r#"{{"kty":"EC","use":"jwt-svid","kid":"{kid}","crv":"P-256","x":"{}","y":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..])
    )
}

fn set_from_document(doc: &str) -> BundleSet {
    let td = crate::id::TrustDomain::parse("example.org").unwrap();
    let mut set = BundleSet::new();
    set.insert(SpiffeBundle::parse_document(td, doc.as_bytes()).unwrap())
        .unwrap();
    set
}

#[test]
fn bundle_document_with_empty_keys_trusts_nothing() {
    let token = es256(&header("ES256", "k1"), &claims());
    let empty = set_from_document(r#"{"keys":[]}"#);
    assert_eq!(
        validator().validate(&token, &empty, now()).unwrap_err(),
        JwtSvidError::UnknownKid
    );
    assert_eq!(
        validator()
            .with_kid_mode(KidMode::TryTrustDomainKeys)
            .validate(&token, &empty, now())
            .unwrap_err(),
        JwtSvidError::UnknownKid
    );
    let kidless = es256(r#"{"alg":"ES256"}"#, &claims());
    assert_eq!(
        validator()
            .with_kid_mode(KidMode::TryTrustDomainKeys)
            .validate(&kidless, &empty, now())
            .unwrap_err(),
        JwtSvidError::NoCandidateKey {
            alg: JwsAlgorithm::Es256
        }
    );
    let full = set_from_document(&format!(r#"{{"keys":[{}]}}"#, p256_jwk("k1")));
    assert_eq!(
        validator().validate(&token, &full, now()).unwrap().kid,
        "k1"
    );
}

// === verify_compact_jws (non-SVID JWTs, e.g. Kubernetes service-account tokens) ===

mod compact_jws {
    use super::*;

    const SA_CLAIMS: &str = r#"{"iss":"https://k8s.local","sub":"system:serviceaccount:a:b"}"#;

    fn bundle() -> JwtBundle {
        JwtBundle::new(
            crate::bundle::testing::td("example.org"),
            vec![p256().authority("k1"), rsa2048().authority("r1")],
        )
        .unwrap()
    }

    #[test]
    fn returns_claims_as_signed_for_a_non_spiffe_sub() {
        let token = es256(r#"{"alg":"ES256","kid":"k1"}"#, SA_CLAIMS);
        let verified = verify_compact_jws(&token, &bundle(), 8192).unwrap();
        assert_eq!(verified.alg, JwsAlgorithm::Es256);
        assert_eq!(verified.kid, "k1");
        assert_eq!(verified.claims_json(), SA_CLAIMS.as_bytes());
        assert!(!format!("{verified:?}").contains("serviceaccount"));
        let rs = rsa2048().jws(
            JwsAlgorithm::Rs256,
            r#"{"alg":"RS256","kid":"r1"}"#,
            SA_CLAIMS,
        );
        assert_eq!(
            verify_compact_jws(&rs, &bundle(), 8192).unwrap().alg,
            JwsAlgorithm::Rs256
        );
    }

    #[test]
    fn size_cap() {
        let token = es256(r#"{"alg":"ES256","kid":"k1"}"#, SA_CLAIMS);
        assert!(matches!(
            verify_compact_jws(&token, &bundle(), 16),
            Err(JwtSvidError::TokenTooLarge { max: 16, .. })
        ));
    }

    #[test]
    fn alg_outside_the_allow_list_is_rejected_before_the_key() {
        let token = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"HS256","kid":"nope"}"#),
            b64(SA_CLAIMS),
            b64("sig")
        );
        assert!(matches!(
            verify_compact_jws(&token, &bundle(), 8192),
            Err(JwtSvidError::UnsupportedAlgorithm {
                kind: RejectedAlgorithm::Hmac
            })
        ));
    }

    #[test]
    fn kid_is_required_and_must_be_known() {
        let token = es256(r#"{"alg":"ES256"}"#, SA_CLAIMS);
        assert_eq!(
            verify_compact_jws(&token, &bundle(), 8192).unwrap_err(),
            JwtSvidError::MissingKid
        );
        let token = es256(r#"{"alg":"ES256","kid":"other"}"#, SA_CLAIMS);
        assert_eq!(
            verify_compact_jws(&token, &bundle(), 8192).unwrap_err(),
            JwtSvidError::UnknownKid
        );
    }

    #[test]
    fn alg_is_bound_to_the_key_type() {
        // An ES256 header naming the RSA key.
        let token = es256(r#"{"alg":"ES256","kid":"r1"}"#, SA_CLAIMS);
        assert_eq!(
            verify_compact_jws(&token, &bundle(), 8192).unwrap_err(),
            JwtSvidError::AlgorithmKeyMismatch {
                alg: JwsAlgorithm::Es256
            }
        );
    }

    #[test]
    fn bad_signature_and_bad_form() {
        let token = es256(r#"{"alg":"ES256","kid":"k1"}"#, SA_CLAIMS);
        let (input, _) = token.rsplit_once('.').unwrap();
        let other = es256(r#"{"alg":"ES256","kid":"k1"}"#, r#"{"iss":"x"}"#);
        let forged = format!("{input}.{}", other.rsplit_once('.').unwrap().1);
        assert_eq!(
            verify_compact_jws(&forged, &bundle(), 8192).unwrap_err(),
            JwtSvidError::InvalidSignature
        );
        assert!(matches!(
            verify_compact_jws("a.b", &bundle(), 8192),
            Err(JwtSvidError::SegmentCount { segments: 2 })
        ));
        assert_eq!(
            verify_compact_jws("{\"payload\":1}", &bundle(), 8192).unwrap_err(),
            JwtSvidError::JsonSerialization
        );
    }
}
