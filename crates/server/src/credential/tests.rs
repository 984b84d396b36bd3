use super::*;
use crate::testutil::{BUILDER, id, t0};

fn keys() -> CredentialKeys {
    CredentialKeys::derive(&[1u8; 32]).unwrap()
}

fn ceiling() -> Vec<ResourceScope> {
    scope::parse_scopes(["repository:team/app:pull"]).unwrap()
}

fn issue(kind: CredentialKind, ttl: Duration, now: SystemTime) -> IssuedCredential {
    keys()
        .issue(kind, &id(BUILDER), "registry.local", &ceiling(), ttl, now)
        .unwrap()
}

#[test]
fn login_credential_round_trips_with_its_ceiling() {
    let now = t0();
    let c = issue(
        CredentialKind::LoginCredential,
        Duration::from_secs(600),
        now,
    );
    assert!(c.secret.expose().starts_with("sbl1."));
    let claims = keys()
        .verify(CredentialKind::LoginCredential, c.secret.expose(), now)
        .unwrap();
    assert_eq!(claims.subject, id(BUILDER));
    assert_eq!(claims.service, "registry.local");
    assert_eq!(claims.ceiling, ceiling());
    assert_eq!(claims.jti, c.jti);
    assert_eq!(claims.expires_at, c.expires_at);
}

#[test]
fn refresh_token_round_trips_without_a_ceiling() {
    let now = t0();
    let c = issue(CredentialKind::RefreshToken, Duration::from_secs(600), now);
    assert!(c.secret.expose().starts_with("sbr1."));
    let claims = keys()
        .verify(CredentialKind::RefreshToken, c.secret.expose(), now)
        .unwrap();
    assert!(claims.ceiling.is_empty());
    assert_eq!(claims.kind, CredentialKind::RefreshToken);
}

#[test]
fn keys_derived_from_the_same_material_agree_and_others_do_not() {
    let now = t0();
    let c = issue(
        CredentialKind::LoginCredential,
        Duration::from_secs(60),
        now,
    );
    let same = CredentialKeys::derive(&[1u8; 32]).unwrap();
    assert!(
        same.verify(CredentialKind::LoginCredential, c.secret.expose(), now)
            .is_ok()
    );
    let other = CredentialKeys::derive(&[2u8; 32]).unwrap();
    assert_eq!(
        other
            .verify(CredentialKind::LoginCredential, c.secret.expose(), now)
            .unwrap_err(),
        CredentialError::BadMac {
            kind: CredentialKind::LoginCredential
        }
    );
}

#[test]
fn weak_key_material_is_refused() {
    assert!(matches!(
        CredentialKeys::derive(&[1u8; 16]),
        Err(CredentialError::WeakKeyMaterial { len: 16, min: 32 })
    ));
    assert!(CredentialKeys::random().is_ok());
}

#[test]
fn a_tampered_payload_fails_the_mac() {
    let now = t0();
    let c = issue(
        CredentialKind::LoginCredential,
        Duration::from_secs(60),
        now,
    );
    let text = c.secret.expose();
    let (head, mac) = text.rsplit_once('.').unwrap();
    let (prefix, payload) = head.split_once('.').unwrap();
    let mut json = URL_SAFE_NO_PAD.decode(payload).unwrap();
    let s = String::from_utf8(json.clone()).unwrap();
    json = s.replace("builder", "admin00").into_bytes();
    let forged = format!("{prefix}.{}.{mac}", URL_SAFE_NO_PAD.encode(json));
    assert!(matches!(
        keys().verify(CredentialKind::LoginCredential, &forged, now),
        Err(CredentialError::BadMac { .. })
    ));
}

#[test]
fn one_kind_never_passes_as_the_other() {
    let now = t0();
    let login = issue(
        CredentialKind::LoginCredential,
        Duration::from_secs(60),
        now,
    );
    assert_eq!(
        keys()
            .verify(CredentialKind::RefreshToken, login.secret.expose(), now)
            .unwrap_err(),
        CredentialError::WrongKind {
            expected: CredentialKind::RefreshToken
        }
    );
    // Relabelling the prefix does not help: the MAC covers it and the keys differ.
    let relabelled = login.secret.expose().replacen("sbl1", "sbr1", 1);
    assert!(matches!(
        keys().verify(CredentialKind::RefreshToken, &relabelled, now),
        Err(CredentialError::BadMac { .. })
    ));
}

#[test]
fn malformed_credentials_name_the_bad_part() {
    let now = t0();
    let k = keys();
    let kind = CredentialKind::LoginCredential;
    let part = |s: &str| match k.verify(kind, s, now) {
        Err(CredentialError::Malformed { part, .. }) => part,
        other => panic!("{other:?}"),
    };
    assert_eq!(part("nodots"), CredentialPart::Shape);
    assert_eq!(part("sbl1only"), CredentialPart::Shape);
    assert_eq!(part("sbl1.a.b.c"), CredentialPart::Shape);
    assert_eq!(part("sbl1.abc.!!!"), CredentialPart::MacEncoding);
    // A correct MAC over a payload that is not base64url / not JSON.
    let sign = |payload: &str| {
        let signed = format!("sbl1.{payload}");
        let tag = hmac::sign(k.key(kind), signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    };
    assert_eq!(part(&sign("***")), CredentialPart::PayloadEncoding);
    assert_eq!(
        part(&sign(&URL_SAFE_NO_PAD.encode("not json"))),
        CredentialPart::PayloadJson
    );
    // Unknown payload members are refused too.
    let extra = r#"{"sub":"spiffe://example.org/a","svc":"s","iat":1,"exp":2,"jti":"j","x":1}"#;
    assert_eq!(
        part(&sign(&URL_SAFE_NO_PAD.encode(extra))),
        CredentialPart::PayloadJson
    );
    let bad_sub = r#"{"sub":"not-an-id","svc":"s","iat":1,"exp":2,"jti":"j"}"#;
    assert!(matches!(
        k.verify(kind, &sign(&URL_SAFE_NO_PAD.encode(bad_sub)), now),
        Err(CredentialError::InvalidSubject { .. })
    ));
    let bad_life = r#"{"sub":"spiffe://example.org/a","svc":"s","iat":5,"exp":5,"jti":"j"}"#;
    assert!(matches!(
        k.verify(kind, &sign(&URL_SAFE_NO_PAD.encode(bad_life)), now),
        Err(CredentialError::InvalidLifetime { .. })
    ));
    let bad_scope =
        r#"{"sub":"spiffe://example.org/a","svc":"s","iat":1,"exp":2,"jti":"j","scope":"nope"}"#;
    let now1 = UNIX_EPOCH + Duration::from_secs(1);
    assert!(matches!(
        k.verify(kind, &sign(&URL_SAFE_NO_PAD.encode(bad_scope)), now1),
        Err(CredentialError::InvalidCeiling { .. })
    ));
}

#[test]
fn oversized_credentials_are_refused_before_parsing() {
    let long = format!("sbl1.{}", "a".repeat(MAX_CREDENTIAL_LEN));
    assert!(matches!(
        keys().verify(CredentialKind::LoginCredential, &long, t0()),
        Err(CredentialError::TooLong { .. })
    ));
}

#[test]
fn expiry_and_future_issue_are_enforced() {
    let now = t0();
    let c = issue(CredentialKind::RefreshToken, Duration::from_secs(60), now);
    let k = keys();
    let kind = CredentialKind::RefreshToken;
    assert!(
        k.verify(kind, c.secret.expose(), now + Duration::from_secs(59))
            .is_ok()
    );
    assert!(matches!(
        k.verify(kind, c.secret.expose(), now + Duration::from_secs(60)),
        Err(CredentialError::Expired { .. })
    ));
    assert!(
        k.verify(kind, c.secret.expose(), now - Duration::from_secs(60))
            .is_ok()
    );
    assert!(matches!(
        k.verify(kind, c.secret.expose(), now - Duration::from_secs(61)),
        Err(CredentialError::IssuedInFuture { .. })
    ));
}

#[test]
fn lifetimes_are_bounded_at_issue() {
    let k = keys();
    for (kind, max) in [
        (CredentialKind::LoginCredential, MAX_LOGIN_CREDENTIAL_TTL),
        (CredentialKind::RefreshToken, MAX_REFRESH_TOKEN_TTL),
    ] {
        assert!(k.issue(kind, &id(BUILDER), "s", &[], max, t0()).is_ok());
        for ttl in [Duration::ZERO, max + Duration::from_secs(1)] {
            assert!(matches!(
                k.issue(kind, &id(BUILDER), "s", &[], ttl, t0()),
                Err(CredentialError::TtlOutOfRange { .. })
            ));
        }
    }
}

#[test]
fn sniff_recognises_prefixes_only() {
    assert_eq!(
        CredentialKind::sniff("sbl1.x.y"),
        Some(CredentialKind::LoginCredential)
    );
    assert_eq!(
        CredentialKind::sniff("sbr1.x.y"),
        Some(CredentialKind::RefreshToken)
    );
    assert_eq!(CredentialKind::sniff("eyJhbGciOi.x.y"), None);
    assert_eq!(CredentialKind::sniff("sbl1"), None);
}

#[test]
fn secrets_and_keys_never_print() {
    let c = issue(
        CredentialKind::LoginCredential,
        Duration::from_secs(60),
        t0(),
    );
    let shown = format!("{c:?} {:?}", keys());
    assert!(!shown.contains(c.secret.expose()));
    assert!(shown.contains("redacted"));
}
