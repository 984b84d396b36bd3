use svid_broker_identity::limits::{MAX_REPOSITORY_NAME_LEN, MAX_SCOPES};
use svid_broker_identity::secret::ExposeSecret as _;

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
    assert!(c.secret.expose_secret().starts_with("sbl1."));
    let claims = keys()
        .verify(
            CredentialKind::LoginCredential,
            c.secret.expose_secret(),
            now,
        )
        .unwrap();
    assert_eq!(claims.subject, id(BUILDER));
    assert_eq!(claims.service, "registry.local");
    assert_eq!(claims.ceiling, ceiling());
    assert_eq!(claims.jti, c.jti);
    assert_eq!(claims.expires_at, c.expires_at);
}

#[test]
fn refresh_token_round_trips_with_its_ceiling_and_a_new_session() {
    let now = secs(1_800_000_000);
    let c = issue(CredentialKind::RefreshToken, Duration::from_secs(600), now);
    assert!(c.secret.expose_secret().starts_with("sbr2."));
    let claims = keys()
        .verify(CredentialKind::RefreshToken, c.secret.expose_secret(), now)
        .unwrap();
    assert_eq!(claims.ceiling, ceiling());
    assert_eq!(claims.kind, CredentialKind::RefreshToken);
    assert_eq!(claims.auth_time, now);
    assert_eq!(claims.session_end, now + Duration::from_secs(600));
    // Without a ceiling there is no `scope`, as before.
    let bare = keys()
        .issue(
            CredentialKind::RefreshToken,
            &id(BUILDER),
            "registry.local",
            &[],
            Duration::from_secs(600),
            now,
        )
        .unwrap();
    let claims = keys()
        .verify(
            CredentialKind::RefreshToken,
            bare.secret.expose_secret(),
            now,
        )
        .unwrap();
    assert!(claims.ceiling.is_empty());
}

#[test]
fn login_credential_session_is_its_own_lifetime() {
    let now = secs(1_800_000_000);
    let c = issue(
        CredentialKind::LoginCredential,
        Duration::from_secs(600),
        now,
    );
    let claims = keys()
        .verify(
            CredentialKind::LoginCredential,
            c.secret.expose_secret(),
            now,
        )
        .unwrap();
    assert_eq!(claims.auth_time, now);
    assert_eq!(claims.session_end, c.expires_at);
}

fn secs(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(n)
}

fn renew(session: Session, now: SystemTime) -> Result<IssuedCredential, CredentialError> {
    keys().issue_refresh(
        &id(BUILDER),
        "registry.local",
        &ceiling(),
        Duration::from_secs(3600),
        session,
        now,
    )
}

#[test]
fn renewed_refresh_tokens_keep_the_session_and_stop_at_its_end() {
    let start = secs(1_800_000_000);
    let session = Session {
        auth_time: start,
        end: start + Duration::from_secs(24 * 3600),
    };
    // Early in the session: the full refresh lifetime, `auth_time` unchanged.
    let now = start + Duration::from_secs(3600);
    let early = renew(session, now).unwrap();
    assert_eq!(early.expires_at, now + Duration::from_secs(3600));
    let claims = keys()
        .verify(
            CredentialKind::RefreshToken,
            early.secret.expose_secret(),
            now,
        )
        .unwrap();
    assert_eq!(claims.auth_time, start);
    assert_eq!(claims.session_end, session.end);
    assert_eq!(claims.ceiling, ceiling());
    // Late: cut to the session's end.
    let late = start + Duration::from_secs(23 * 3600 + 1800);
    let cut = renew(session, late).unwrap();
    assert_eq!(cut.expires_at, session.end);
    // At or past the end: nothing more.
    for at in [session.end, session.end + Duration::from_secs(1)] {
        assert_eq!(
            renew(session, at).unwrap_err(),
            CredentialError::SessionExpired {
                kind: CredentialKind::RefreshToken,
                session_end: 1_800_000_000 + 24 * 3600,
            }
        );
    }
    // A session that claims to start in the future is refused.
    let future = Session {
        auth_time: start + Duration::from_secs(10),
        end: session.end,
    };
    assert_eq!(
        renew(future, start).unwrap_err(),
        CredentialError::InvalidSession {
            kind: CredentialKind::RefreshToken
        }
    );
}

#[test]
fn a_refresh_token_past_its_session_end_says_so() {
    let start = secs(1_800_000_000);
    let session = Session {
        auth_time: start,
        end: start + Duration::from_secs(600),
    };
    let c = renew(session, start).unwrap();
    let k = keys();
    assert!(
        k.verify(
            CredentialKind::RefreshToken,
            c.secret.expose_secret(),
            session.end - Duration::from_secs(1)
        )
        .is_ok()
    );
    assert_eq!(
        k.verify(
            CredentialKind::RefreshToken,
            c.secret.expose_secret(),
            session.end
        )
        .unwrap_err(),
        CredentialError::SessionExpired {
            kind: CredentialKind::RefreshToken,
            session_end: 1_800_000_600,
        }
    );
}

/// A correctly MACed credential with a hand-written payload.
fn signed(kind: CredentialKind, prefix: &str, payload: &serde_json::Value) -> String {
    let mut text = format!("{prefix}.");
    URL_SAFE_NO_PAD.encode_string(payload.to_string(), &mut text);
    let tag = hmac::sign(keys().key(kind), text.as_bytes());
    text.push('.');
    URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut text);
    text
}

#[test]
fn the_first_refresh_token_format_is_refused_by_name() {
    let now = 1_800_000_000u64;
    let legacy = signed(
        CredentialKind::RefreshToken,
        "sbr1",
        &serde_json::json!({"sub": BUILDER, "svc": "registry.local", "iat": now, "exp": now + 600, "jti": "x"}),
    );
    let err = keys()
        .verify(CredentialKind::RefreshToken, &legacy, secs(now))
        .unwrap_err();
    assert_eq!(
        err,
        CredentialError::UnsupportedVersion {
            kind: CredentialKind::RefreshToken,
            prefix: "sbr1"
        }
    );
    assert_eq!(
        err.to_string(),
        "refresh token format sbr1 is no longer accepted, authenticate again"
    );
}

#[test]
fn inconsistent_sessions_are_refused() {
    let now = 1_800_000_000u64;
    let base = serde_json::json!({"sub": BUILDER, "svc": "registry.local", "iat": now, "exp": now + 600, "jti": "x"});
    let with = |extra: serde_json::Value| {
        let mut p = base.clone();
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        p
    };
    let refresh = CredentialKind::RefreshToken;
    let login = CredentialKind::LoginCredential;
    let cases = [
        // A refresh token without its session.
        (refresh, "sbr2", base.clone()),
        (refresh, "sbr2", with(serde_json::json!({"auth_time": now}))),
        // `exp` past the session's end.
        (
            refresh,
            "sbr2",
            with(serde_json::json!({"auth_time": now, "sxp": now + 300})),
        ),
        // The session starting after the token.
        (
            refresh,
            "sbr2",
            with(serde_json::json!({"auth_time": now + 1, "sxp": now + 600})),
        ),
        // A login credential carrying session fields.
        (
            login,
            "sbl1",
            with(serde_json::json!({"auth_time": now, "sxp": now + 600})),
        ),
    ];
    for (kind, prefix, payload) in cases {
        let text = signed(kind, prefix, &payload);
        assert_eq!(
            keys().verify(kind, &text, secs(now)).unwrap_err(),
            CredentialError::InvalidSession { kind },
            "{payload}"
        );
    }
    // The consistent one passes.
    let ok = signed(
        refresh,
        "sbr2",
        &with(serde_json::json!({"auth_time": now - 60, "sxp": now + 600})),
    );
    let claims = keys().verify(refresh, &ok, secs(now)).unwrap();
    assert_eq!(claims.auth_time, secs(now - 60));
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
        same.verify(
            CredentialKind::LoginCredential,
            c.secret.expose_secret(),
            now
        )
        .is_ok()
    );
    let other = CredentialKeys::derive(&[2u8; 32]).unwrap();
    assert_eq!(
        other
            .verify(
                CredentialKind::LoginCredential,
                c.secret.expose_secret(),
                now
            )
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
    let text = c.secret.expose_secret();
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
            .verify(
                CredentialKind::RefreshToken,
                login.secret.expose_secret(),
                now
            )
            .unwrap_err(),
        CredentialError::WrongKind {
            expected: CredentialKind::RefreshToken
        }
    );
    // Relabelling the prefix does not help: the MAC covers it and the keys differ.
    let relabelled = login.secret.expose_secret().replacen("sbl1", "sbr2", 1);
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
    // In a longer session, so that the token's own `exp` is what ends it.
    let session = Session {
        auth_time: now,
        end: now + Duration::from_secs(3600),
    };
    let k = keys();
    let c = k
        .issue_refresh(
            &id(BUILDER),
            "registry.local",
            &[],
            Duration::from_secs(60),
            session,
            now,
        )
        .unwrap();
    let kind = CredentialKind::RefreshToken;
    assert!(
        k.verify(
            kind,
            c.secret.expose_secret(),
            now + Duration::from_secs(59)
        )
        .is_ok()
    );
    assert!(matches!(
        k.verify(
            kind,
            c.secret.expose_secret(),
            now + Duration::from_secs(60)
        ),
        Err(CredentialError::Expired { .. })
    ));
    assert!(
        k.verify(
            kind,
            c.secret.expose_secret(),
            now - Duration::from_secs(60)
        )
        .is_ok()
    );
    assert!(matches!(
        k.verify(
            kind,
            c.secret.expose_secret(),
            now - Duration::from_secs(61)
        ),
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
        CredentialKind::sniff("sbr2.x.y"),
        Some(CredentialKind::RefreshToken)
    );
    // The outdated format is still recognised, so that it is refused by name.
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
    assert!(!shown.contains(c.secret.expose_secret()));
    assert!(!shown.contains("sbl1."), "{shown}");
    assert!(shown.contains("REDACTED"), "{shown}");
}

/// The largest ceiling the scope grammar allows (every scope at the longest repository name
/// and all actions) still makes a credential the broker itself accepts.
#[test]
fn a_maximal_ceiling_issues_a_credential_that_verifies() {
    let component = "a".repeat(60);
    let params: Vec<String> = (0..MAX_SCOPES)
        .map(|i| {
            let name = format!("{i:02}{component}/{component}/{component}/{component}");
            format!(
                "repository:{}:pull,push,delete",
                &name[..name.len().min(MAX_REPOSITORY_NAME_LEN)]
            )
        })
        .collect();
    let ceiling = scope::parse_scopes(params.iter().map(String::as_str)).unwrap();
    assert_eq!(ceiling.len(), MAX_SCOPES);
    let now = SystemTime::now();
    let issued = keys()
        .issue(
            CredentialKind::LoginCredential,
            &SpiffeId::parse("spiffe://example.org/ns/prod/sa/deployer").unwrap(),
            "registry.example",
            &ceiling,
            Duration::from_secs(1800),
            now,
        )
        .unwrap();
    assert!(
        issued.secret.expose_secret().len() > 8 * 1024,
        "the case this test is about"
    );
    let claims = keys()
        .verify(
            CredentialKind::LoginCredential,
            issued.secret.expose_secret(),
            now,
        )
        .unwrap();
    assert_eq!(claims.ceiling, ceiling);
}
