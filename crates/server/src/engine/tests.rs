use std::time::Duration;

use super::*;
use crate::listen::client_key;
use crate::testutil::{
    ADMIN, AUDIENCE, BUILDER, Fixture, READER, SERVICE, STRANGER, claims, id, t0,
};

fn input<'a>(
    kind: ExchangeKind,
    service: &'a str,
    scopes: &'a [String],
    endpoint: Endpoint,
) -> ExchangeInput<'a> {
    ExchangeInput {
        kind,
        service,
        scopes,
        peer: Some("127.0.0.1:4000".parse().unwrap()),
        endpoint,
    }
}

fn scopes(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| (*x).to_owned()).collect()
}

fn caller(who: &str) -> Caller {
    Caller {
        spiffe_id: id(who),
        method: AuthMethod::JwtSvid,
    }
}

fn access_token(out: ExchangeOutput) -> (RegistryToken, String, Vec<ResourceScope>, SystemTime) {
    match out {
        ExchangeOutput::AccessToken {
            token,
            jti,
            granted,
            expires_at,
            ..
        } => (token, jti, granted, expires_at),
        other => panic!("{other:?}"),
    }
}

#[test]
fn jwt_svid_with_the_broker_audience_authenticates() {
    let f = Fixture::new();
    let c = f
        .broker
        .authenticate_jwt_svid(&f.jwt(BUILDER, AUDIENCE), t0())
        .unwrap();
    assert_eq!(c.spiffe_id, id(BUILDER));
    assert_eq!(c.method, AuthMethod::JwtSvid);
}

#[test]
fn jwt_svid_with_another_audience_is_unauthenticated() {
    let f = Fixture::new();
    let err = f
        .broker
        .authenticate_jwt_svid(&f.jwt(BUILDER, "someone-else"), t0())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unauthenticated);
    assert!(matches!(
        err,
        ExchangeError::Unauthenticated {
            reason: AuthFailure::JwtSvid(_)
        }
    ));
    let err = f.broker.authenticate_jwt_svid("garbage", t0()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unauthenticated);
}

#[test]
fn x509_svids_of_trusted_domains_authenticate() {
    let f = Fixture::new();
    let svid =
        f.td.x509_svid(&id("spiffe://example.org/workload"))
            .unwrap();
    let c = f.broker.authenticate_x509(svid.chain(), t0()).unwrap();
    assert_eq!(c.method, AuthMethod::X509Svid);
    let other = svid_broker_dev::DevTrustDomain::new(
        svid_broker_identity::TrustDomain::parse("other.org").unwrap(),
        [id("spiffe://other.org/w")],
    )
    .unwrap();
    let foreign = other.x509_svid(&id("spiffe://other.org/w")).unwrap();
    let err = f
        .broker
        .authenticate_x509(foreign.chain(), t0())
        .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::Unauthenticated {
            reason: AuthFailure::X509Svid(_)
        }
    ));
}

/// The verified-chain cache may only ever give the answer a full verification would: it is
/// bypassed outside the chain's validity window and for any other bundle snapshot.
#[test]
fn verified_chains_are_reused_only_for_their_bundle_snapshot_and_validity() {
    let f = Fixture::new();
    let bundles = Arc::new(ArcSwap::from_pointee(f.td.bundle_set().unwrap()));
    let provider: Arc<dyn BundleProvider> = bundles.clone();
    let broker = Broker::new(
        Policy::from_toml_str(crate::testutil::POLICY).unwrap(),
        provider,
        crate::testutil::minter(t0()),
        CredentialKeys::derive(&[7u8; 32]).unwrap(),
        BrokerOptions::new(AUDIENCE),
    )
    .unwrap();
    let svid =
        f.td.x509_svid(&id("spiffe://example.org/workload"))
            .unwrap();
    let key = VerifiedChainCache::key(svid.chain());
    assert!(
        broker
            .verified_chains
            .get(&key, &bundles.load_full(), t0())
            .is_none()
    );

    // First call verifies and remembers; the second is answered from the cache.
    broker.authenticate_x509(svid.chain(), t0()).unwrap();
    let cached = broker.verified_chains.get(&key, &bundles.load_full(), t0());
    assert_eq!(
        cached.as_ref().map(SpiffeId::as_str),
        Some("spiffe://example.org/workload")
    );
    let again = broker.authenticate_x509(svid.chain(), t0()).unwrap();
    assert_eq!(again.spiffe_id.as_str(), "spiffe://example.org/workload");

    // After the chain expires the cache does not answer and verification refuses.
    let late = svid.not_after() + Duration::from_secs(5);
    assert!(
        broker
            .verified_chains
            .get(&key, &bundles.load_full(), late)
            .is_none()
    );
    assert!(matches!(
        broker.authenticate_x509(svid.chain(), late),
        Err(ExchangeError::Unauthenticated { .. })
    ));

    // A new bundle snapshot (here: the trust domain re-keyed to another CA) is never answered
    // from a verification made against the old one.
    let rekeyed = svid_broker_dev::DevTrustDomain::new(
        svid_broker_identity::TrustDomain::parse("example.org").unwrap(),
        [id("spiffe://example.org/workload")],
    )
    .unwrap();
    bundles.store(Arc::new(rekeyed.bundle_set().unwrap()));
    assert!(matches!(
        broker.authenticate_x509(svid.chain(), t0()),
        Err(ExchangeError::Unauthenticated { .. })
    ));
}

#[test]
fn access_token_carries_the_policy_grant_and_registry_claims() {
    let f = Fixture::new();
    let s = scopes(&["repository:team/app:pull,push,delete"]);
    let out = f
        .broker
        .exchange(
            &caller(BUILDER),
            &input(ExchangeKind::AccessToken, SERVICE, &s, Endpoint::Grpc),
            t0(),
        )
        .unwrap();
    let (token, jti, granted, _) = access_token(out);
    assert_eq!(
        scope::join_scopes(&granted),
        "repository:team/app:pull,push"
    );
    let c = claims(token.expose());
    assert_eq!(c["iss"], "svid-broker");
    assert_eq!(c["aud"], SERVICE);
    assert_eq!(c["sub"], BUILDER);
    assert_eq!(c["jti"], jti.as_str());
    assert_eq!(
        c["access"],
        serde_json::json!([{"type":"repository","name":"team/app","actions":["pull","push"]}])
    );
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 305);
}

#[test]
fn realm_accepts_empty_grants_but_grpc_refuses_them() {
    let f = Fixture::new();
    let s = scopes(&["repository:team/app:pull"]);
    let out = f
        .broker
        .exchange(
            &caller(STRANGER),
            &input(ExchangeKind::AccessToken, SERVICE, &s, Endpoint::RealmGet),
            t0(),
        )
        .unwrap();
    let (token, _, granted, _) = access_token(out);
    assert!(granted.is_empty());
    assert_eq!(claims(token.expose())["access"], serde_json::json!([]));
    let err = f
        .broker
        .exchange(
            &caller(STRANGER),
            &input(ExchangeKind::AccessToken, SERVICE, &s, Endpoint::Grpc),
            t0(),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::PermissionDenied {
            reason: Denial::EmptyGrant
        }
    ));
}

#[test]
fn unknown_service_and_bad_scopes_are_invalid_arguments() {
    let f = Fixture::new();
    let s = scopes(&["repository:team/app:pull"]);
    let err = f
        .broker
        .exchange(
            &caller(BUILDER),
            &input(ExchangeKind::AccessToken, "nope", &s, Endpoint::Grpc),
            t0(),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::InvalidArgument {
            reason: InvalidRequest::UnknownService { .. }
        }
    ));
    let bad = scopes(&["repository::pull"]);
    let err = f
        .broker
        .exchange(
            &caller(BUILDER),
            &input(ExchangeKind::AccessToken, SERVICE, &bad, Endpoint::Grpc),
            t0(),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::InvalidArgument {
            reason: InvalidRequest::Scope(_)
        }
    ));
    let err = f
        .broker
        .exchange(
            &caller(BUILDER),
            &input(ExchangeKind::AccessToken, "", &s, Endpoint::Grpc),
            t0(),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::InvalidArgument {
            reason: InvalidRequest::MissingService
        }
    ));
}

#[test]
fn issued_tokens_are_reused_for_half_their_life() {
    let f = Fixture::new();
    let s = scopes(&["repository:team/app:pull"]);
    let now = t0();
    let ask = |at| {
        access_token(
            f.broker
                .exchange(
                    &caller(READER),
                    &input(ExchangeKind::AccessToken, SERVICE, &s, Endpoint::RealmGet),
                    at,
                )
                .unwrap(),
        )
        .1
    };
    let first = ask(now);
    assert_eq!(ask(now + Duration::from_secs(100)), first);
    assert_eq!(f.broker.metrics().cache_hits(), 1);
    // 300 s lifetime: past 150 s a fresh token is minted.
    assert_ne!(ask(now + Duration::from_secs(160)), first);
    assert_eq!(f.broker.metrics().cache_misses(), 2);
    // A rotation empties the cache.
    let again = ask(now + Duration::from_secs(161));
    f.broker
        .rotate_signing_key(now + Duration::from_secs(162))
        .unwrap();
    assert_ne!(ask(now + Duration::from_secs(163)), again);
}

#[test]
fn the_cache_is_off_when_disabled() {
    let f = Fixture::with(|o| o.cache = false);
    let s = scopes(&["repository:team/app:pull"]);
    let ask = || {
        access_token(
            f.broker
                .exchange(
                    &caller(READER),
                    &input(ExchangeKind::AccessToken, SERVICE, &s, Endpoint::RealmGet),
                    t0(),
                )
                .unwrap(),
        )
        .1
    };
    assert_ne!(ask(), ask());
}

#[test]
fn per_subject_rate_limit_refuses_past_the_burst() {
    let f = Fixture::with(|o| {
        o.rate_limit = Some(RateLimit {
            per_second: 1.0,
            burst: 2.0,
        });
    });
    let s = scopes(&["repository:team/app:pull"]);
    let now = t0();
    let ask = |who, at| {
        f.broker.exchange(
            &caller(who),
            &input(ExchangeKind::AccessToken, SERVICE, &s, Endpoint::RealmGet),
            at,
        )
    };
    assert!(ask(READER, now).is_ok());
    assert!(ask(READER, now).is_ok());
    let err = ask(READER, now).unwrap_err();
    assert!(matches!(err, ExchangeError::ResourceExhausted { .. }));
    assert_eq!(err.code(), ErrorCode::ResourceExhausted);
    // Another subject has its own bucket; time refills.
    assert!(ask(BUILDER, now).is_ok());
    assert!(ask(READER, now + Duration::from_secs(1)).is_ok());
}

#[test]
fn login_credential_needs_a_rule_for_the_registry() {
    let f = Fixture::new();
    let none: Vec<String> = Vec::new();
    let out = f
        .broker
        .exchange(
            &caller(BUILDER),
            &input(
                ExchangeKind::LoginCredential,
                SERVICE,
                &none,
                Endpoint::Grpc,
            ),
            t0(),
        )
        .unwrap();
    let ExchangeOutput::LoginCredential {
        username,
        password,
        ceiling,
        ..
    } = out
    else {
        panic!()
    };
    assert_eq!(username, BUILDER);
    assert!(password.expose().starts_with("sbl1."));
    assert!(ceiling.is_empty());
    for who in [STRANGER, ADMIN] {
        let service = if who == ADMIN {
            "registry.other"
        } else {
            SERVICE
        };
        let err = f
            .broker
            .exchange(
                &caller(who),
                &input(
                    ExchangeKind::LoginCredential,
                    service,
                    &none,
                    Endpoint::Grpc,
                ),
                t0(),
            )
            .unwrap_err();
        assert!(matches!(
            err,
            ExchangeError::PermissionDenied {
                reason: Denial::RegistryNotAllowed
            }
        ));
    }
}

fn login(f: &Fixture, who: &str, ceiling: &[&str]) -> Secret {
    let s = scopes(ceiling);
    match f
        .broker
        .exchange(
            &caller(who),
            &input(ExchangeKind::LoginCredential, SERVICE, &s, Endpoint::Grpc),
            t0(),
        )
        .unwrap()
    {
        ExchangeOutput::LoginCredential { password, .. } => password,
        other => panic!("{other:?}"),
    }
}

#[test]
fn login_credential_ceiling_limits_later_grants() {
    let f = Fixture::new();
    let password = login(&f, BUILDER, &["repository:team/app:pull"]);
    let auth = f
        .broker
        .authenticate_secret(Some(BUILDER), password.expose(), t0())
        .unwrap();
    assert_eq!(auth.caller.method, AuthMethod::LoginCredential);
    let s = scopes(&[
        "repository:team/app:pull,push",
        "repository:team/other:pull",
    ]);
    let out = f
        .broker
        .exchange_authenticated(
            &auth,
            &input(ExchangeKind::AccessToken, SERVICE, &s, Endpoint::RealmGet),
            Some("containers/image"),
            t0(),
        )
        .unwrap();
    assert_eq!(
        scope::join_scopes(&access_token(out).2),
        "repository:team/app:pull"
    );
    // No ceiling: whatever policy allows.
    let open = login(&f, BUILDER, &[]);
    let auth = f
        .broker
        .authenticate_secret(Some(BUILDER), open.expose(), t0())
        .unwrap();
    let out = f
        .broker
        .exchange_authenticated(
            &auth,
            &input(ExchangeKind::AccessToken, SERVICE, &s, Endpoint::RealmGet),
            None,
            t0(),
        )
        .unwrap();
    assert_eq!(
        scope::join_scopes(&access_token(out).2),
        "repository:team/app:pull,push repository:team/other:pull"
    );
}

#[test]
fn login_credential_is_bound_to_its_username_and_service() {
    let f = Fixture::new();
    let password = login(&f, BUILDER, &[]);
    let err = f
        .broker
        .authenticate_secret(Some(READER), password.expose(), t0())
        .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::Unauthenticated {
            reason: AuthFailure::UsernameMismatch
        }
    ));
    // Without its subject as the username (empty, or as a Bearer token): refused.
    for username in [None, Some("")] {
        let err = f
            .broker
            .authenticate_secret(username, password.expose(), t0())
            .unwrap_err();
        assert!(
            matches!(
                err,
                ExchangeError::Unauthenticated {
                    reason: AuthFailure::LoginCredentialWithoutUsername
                }
            ),
            "{username:?}: {err:?}"
        );
    }
    let auth = f
        .broker
        .authenticate_secret(Some(BUILDER), password.expose(), t0())
        .unwrap();
    let none: Vec<String> = Vec::new();
    let err = f
        .broker
        .exchange_authenticated(
            &auth,
            &input(
                ExchangeKind::AccessToken,
                "registry.other",
                &none,
                Endpoint::RealmGet,
            ),
            None,
            t0(),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::Unauthenticated {
            reason: AuthFailure::WrongService { .. }
        }
    ));
}

#[test]
fn refresh_tokens_authenticate_until_they_expire() {
    let f = Fixture::new();
    let now = t0();
    let r = f
        .broker
        .issue_refresh_token(&id(READER), SERVICE, now)
        .unwrap();
    let auth = f
        .broker
        .authenticate_secret(None, r.secret.expose(), now)
        .unwrap();
    assert_eq!(auth.caller.method, AuthMethod::RefreshToken);
    assert_eq!(auth.caller.spiffe_id, id(READER));
    let err = f
        .broker
        .authenticate_secret(None, r.secret.expose(), now + Duration::from_secs(3600))
        .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::Unauthenticated {
            reason: AuthFailure::Credential(CredentialError::Expired { .. })
        }
    ));
}

#[test]
fn every_exchange_is_audited_without_secrets() {
    let f = Fixture::new();
    let s = scopes(&["repository:team/app:pull,push"]);
    let out = f
        .broker
        .exchange_authenticated(
            &Authenticated {
                caller: caller(READER),
                binding: None,
            },
            &input(ExchangeKind::AccessToken, SERVICE, &s, Endpoint::RealmGet),
            Some("containers/image"),
            t0(),
        )
        .unwrap();
    let (token, jti, _, _) = access_token(out);
    let _ = f.broker.exchange(
        &caller(READER),
        &input(ExchangeKind::AccessToken, "nope", &s, Endpoint::Grpc),
        t0(),
    );
    let lines = f.audit_lines();
    assert_eq!(lines.len(), 2);
    let ok = &lines[0];
    assert_eq!(ok["decision"], "allow");
    assert_eq!(ok["subject"], READER);
    assert_eq!(ok["actor"], "jwt-svid client_id=containers/image");
    assert_eq!(ok["requested"], "repository:team/app:pull,push");
    assert_eq!(ok["granted"], "repository:team/app:pull");
    assert_eq!(ok["jti"], jti.as_str());
    assert_eq!(ok["peer"], "127.0.0.1:4000");
    assert_eq!(ok["endpoint"], "realm_get");
    assert!(ok["expires_at"].as_str().unwrap().ends_with('Z'));
    let denied = &lines[1];
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["code"], "invalid_argument");
    assert!(
        denied["reason"]
            .as_str()
            .unwrap()
            .contains("unknown service")
    );
    let all = f.audit.lock().unwrap().join("\n");
    assert!(!all.contains(token.expose()));
}

#[test]
fn rejections_before_an_exchange_are_audited_and_counted() {
    let f = Fixture::new();
    let s = scopes(&[]);
    let err = f.broker.authenticate_jwt_svid("x", t0()).unwrap_err();
    f.broker.record_rejection(
        &input(ExchangeKind::AccessToken, SERVICE, &s, Endpoint::RealmPost),
        None,
        &err,
        t0(),
    );
    let lines = f.audit_lines();
    assert_eq!(lines[0]["code"], "unauthenticated");
    assert_eq!(lines[0]["actor"], "unauthenticated");
    assert!(
        f.broker.metrics().render().contains(
            "svid_broker_denied_total{endpoint=\"realm_post\",code=\"unauthenticated\"} 1"
        )
    );
}

#[test]
fn error_chain_names_the_rule() {
    let f = Fixture::new();
    let err = f
        .broker
        .authenticate_jwt_svid(&f.jwt(BUILDER, "other"), t0())
        .unwrap_err();
    let chain = err.chain();
    assert!(chain.starts_with("jwt-svid rejected: "), "{chain}");
    assert!(chain.len() > "jwt-svid rejected: ".len());
}

#[test]
fn ceiling_star_covers_every_action() {
    let granted = scope::parse_scopes(["repository:a/b:pull,push"]).unwrap();
    let star = scope::parse_scopes(["repository:a/b:*"]).unwrap();
    assert_eq!(within_ceiling(&granted, &star), granted);
    let pull = scope::parse_scopes(["repository:a/b:pull"]).unwrap();
    assert_eq!(within_ceiling(&granted, &pull), pull);
    let other = scope::parse_scopes(["repository:a/c:pull"]).unwrap();
    assert!(within_ceiling(&granted, &other).is_empty());
}

#[test]
fn profiles_map_to_token_profiles() {
    assert_eq!(
        token_profile(Profile::Distribution2),
        TokenProfile::Distribution2
    );
    assert_eq!(
        token_profile(Profile::Distribution3),
        TokenProfile::Distribution3
    );
    assert_eq!(token_profile(Profile::Zot), TokenProfile::Zot);
}

#[test]
fn scheduled_rotation_happens_only_when_due() {
    let f = Fixture::new();
    let now = t0();
    assert!(!f.broker.rotate_signing_key_if_due(now).unwrap());
    // Leaves live 4 h and rotate with 2 h left.
    let later = now + Duration::from_secs(2 * 3600 + 120);
    assert!(f.broker.rotate_signing_key_if_due(later).unwrap());
    assert!(!f.broker.rotate_signing_key_if_due(later).unwrap());
    assert!(
        f.broker
            .metrics()
            .render()
            .contains("svid_broker_key_rotations_total 1")
    );
}

/// A login credential issued by `Exchange` is audited with its `jti`, never its secret.
#[test]
fn login_credential_issuance_is_audited_with_its_jti() {
    let f = Fixture::new();
    let password = login(&f, BUILDER, &["repository:team/app:pull"]);
    let auth = f
        .broker
        .authenticate_secret(Some(BUILDER), password.expose(), t0())
        .unwrap();
    let lines = f.audit_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["kind"], "login_credential");
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(
        lines[0]["jti"].as_str(),
        Some(auth.binding.unwrap().jti.as_str())
    );
    let all = f.audit.lock().unwrap().join("\n");
    assert!(!all.contains(password.expose()));
}

fn svid_auth(who: &str) -> Authenticated {
    Authenticated {
        caller: caller(who),
        binding: None,
    }
}

/// `max_session` is applied when a refresh token is presented too, so lowering it shortens
/// sessions already under way (replicas share keys, so one broker's token reaches another).
#[test]
fn max_session_bounds_refresh_tokens_at_authentication() {
    let long = Fixture::new();
    let short = Fixture::with(|o| o.max_session = Duration::from_secs(30 * 60));
    let none: Vec<String> = Vec::new();
    let now = t0();
    let issued = long
        .broker
        .issue_refresh_token_for(
            &svid_auth(READER),
            &input(
                ExchangeKind::AccessToken,
                SERVICE,
                &none,
                Endpoint::RealmGet,
            ),
            None,
            now,
        )
        .unwrap();
    let inside = now + Duration::from_secs(29 * 60);
    let auth = short
        .broker
        .authenticate_secret(None, issued.secret.expose(), inside)
        .unwrap();
    let binding = auth.binding.unwrap();
    assert_eq!(
        binding
            .auth_time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    );
    assert!(
        long.broker
            .authenticate_secret(
                None,
                issued.secret.expose(),
                now + Duration::from_secs(31 * 60)
            )
            .is_ok()
    );
    let err = short
        .broker
        .authenticate_secret(
            None,
            issued.secret.expose(),
            now + Duration::from_secs(31 * 60),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::Unauthenticated {
            reason: AuthFailure::SessionExpired { .. }
        }
    ));
    assert_eq!(err.to_string(), "refresh token session expired");
}

/// The policy re-check applies to refresh tokens only: an SVID caller without rules still
/// gets an (empty) realm token.
#[test]
fn refresh_tokens_need_a_current_allow_rule() {
    let f = Fixture::new();
    let s = scopes(&["repository:team/app:pull"]);
    let realm = input(ExchangeKind::AccessToken, SERVICE, &s, Endpoint::RealmPost);
    let stranger = f
        .broker
        .issue_refresh_token(&id(STRANGER), SERVICE, t0())
        .unwrap();
    let auth = f
        .broker
        .authenticate_secret(None, stranger.secret.expose(), t0())
        .unwrap();
    let err = f
        .broker
        .exchange_authenticated(&auth, &realm, None, t0())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unauthenticated);
    assert!(matches!(
        err,
        ExchangeError::Unauthenticated {
            reason: AuthFailure::NoLongerAllowed { .. }
        }
    ));
    let (_, _, granted, _) = access_token(
        f.broker
            .exchange_authenticated(&svid_auth(STRANGER), &realm, None, t0())
            .unwrap(),
    );
    assert!(granted.is_empty());
    // A subject that still has a rule renews.
    let reader = f
        .broker
        .issue_refresh_token(&id(READER), SERVICE, t0())
        .unwrap();
    let auth = f
        .broker
        .authenticate_secret(None, reader.secret.expose(), t0())
        .unwrap();
    assert!(
        f.broker
            .exchange_authenticated(&auth, &realm, None, t0())
            .is_ok()
    );
}

#[test]
fn first_format_refresh_tokens_are_refused_as_outdated() {
    let f = Fixture::new();
    let err = f
        .broker
        .authenticate_secret(None, "sbr1.e30.AAAA", t0())
        .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::Unauthenticated {
            reason: AuthFailure::Credential(CredentialError::UnsupportedVersion { .. })
        }
    ));
    assert!(
        err.chain().contains("no longer accepted"),
        "{}",
        err.chain()
    );
}

/// Login credentials are audited with their ceiling, registry-wide ones saying so (they were
/// audited as "nothing granted" before).
#[test]
fn login_credentials_are_audited_with_their_ceiling() {
    let f = Fixture::new();
    login(&f, BUILDER, &[]);
    login(&f, BUILDER, &["repository:team/app:pull"]);
    let lines = f.audit_lines();
    assert_eq!(lines[0]["ceiling"], "registry-wide", "{}", lines[0]);
    assert_eq!(
        lines[0]["reason"],
        "login credential issued (registry-wide)"
    );
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(
        lines[1]["ceiling"], "repository:team/app:pull",
        "{}",
        lines[1]
    );
    assert_eq!(lines[1]["reason"], "login credential issued (scoped)");
    // Access tokens carry no ceiling.
    let s = scopes(&["repository:team/app:pull"]);
    f.broker
        .exchange(
            &caller(BUILDER),
            &input(ExchangeKind::AccessToken, SERVICE, &s, Endpoint::Grpc),
            t0(),
        )
        .unwrap();
    assert!(f.audit_lines()[2].get("ceiling").is_none());
}

/// A writer failing like a full filesystem.
struct FullDisk;

impl std::io::Write for FullDisk {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn audit_on_error_deny_withholds_what_cannot_be_audited() {
    let f = Fixture::with(|o| {
        o.audit = AuditSink::writer(FullDisk);
        o.audit_on_error = AuditOnError::Deny;
    });
    let s = scopes(&["repository:team/app:pull"]);
    let req = input(ExchangeKind::AccessToken, SERVICE, &s, Endpoint::Grpc);
    for _ in 0..3 {
        let err = f.broker.exchange(&caller(BUILDER), &req, t0()).unwrap_err();
        assert!(
            matches!(
                err,
                ExchangeError::Unavailable {
                    reason: Unavailability::Audit(_)
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "audit log unavailable");
    }
    // A refusal is still a refusal (and is counted as unwritten too).
    let none = scopes(&["repository:elsewhere/x:pull"]);
    let err = f
        .broker
        .exchange(
            &caller(BUILDER),
            &input(ExchangeKind::AccessToken, SERVICE, &none, Endpoint::Grpc),
            t0(),
        )
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    let m = f.broker.metrics();
    assert_eq!(m.audit_write_errors(), 4);
    let text = m.render();
    assert!(
        text.contains("svid_broker_audit_write_errors_total 4"),
        "{text}"
    );
    assert!(text.contains("svid_broker_denied_total{endpoint=\"grpc\",code=\"unavailable\"} 3"));
    assert!(text.contains("svid_broker_issued_total{endpoint=\"grpc\",kind=\"access_token\"} 0"));
}

#[test]
fn audit_on_error_continue_serves_and_counts() {
    let f = Fixture::with(|o| {
        o.audit = AuditSink::writer(FullDisk);
        o.audit_on_error = AuditOnError::Continue;
    });
    let s = scopes(&["repository:team/app:pull"]);
    let req = input(ExchangeKind::AccessToken, SERVICE, &s, Endpoint::Grpc);
    f.broker.exchange(&caller(BUILDER), &req, t0()).unwrap();
    let password = login(&f, BUILDER, &[]);
    assert!(password.expose().starts_with("sbl1."));
    assert_eq!(f.broker.metrics().audit_write_errors(), 2);
}

#[test]
fn multi_audience_jwt_svids_are_refused_unless_audience_policy_is_any() {
    let td_jwt = |f: &Fixture| {
        f.td.issue_jwt_svid(&id(BUILDER), &[AUDIENCE, "another-relying-party"])
            .unwrap()
            .token()
            .expose()
            .to_owned()
    };
    let single = Fixture::new();
    let err = single
        .broker
        .authenticate_jwt_svid(&td_jwt(&single), t0())
        .unwrap_err();
    assert!(
        err.chain().contains("aud has 2 values; exactly one"),
        "{}",
        err.chain()
    );
    // The one-audience token passes either way.
    assert!(
        single
            .broker
            .authenticate_jwt_svid(&single.jwt(BUILDER, AUDIENCE), t0())
            .is_ok()
    );
    let any = Fixture::with(|o| o.audience_policy = AudienceMatch::AnyOf);
    let c = any
        .broker
        .authenticate_jwt_svid(&td_jwt(&any), t0())
        .unwrap();
    assert_eq!(c.spiffe_id.as_str(), BUILDER);
}

#[test]
fn the_failed_auth_limit_is_per_address_and_spares_successes() {
    let f = Fixture::with(|o| {
        o.failed_auth_limit = Some(RateLimit {
            per_second: 1.0,
            burst: 2.0,
        });
    });
    let s = scopes(&[]);
    let bad: SocketAddr = "127.0.0.2:1".parse().unwrap();
    let good: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let mut inp = input(ExchangeKind::AccessToken, SERVICE, &s, Endpoint::Grpc);
    inp.peer = Some(bad);
    let now = t0();
    let err = f.broker.authenticate_jwt_svid("x", now).unwrap_err();
    assert!(f.broker.admit_peer(Some(bad), now).is_ok());
    f.broker.record_rejection(&inp, None, &err, now);
    f.broker.record_rejection(&inp, None, &err, now);
    let limited = f.broker.admit_peer(Some(bad), now).unwrap_err();
    assert_eq!(limited.code(), ErrorCode::ResourceExhausted);
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(1)));
    assert!(f.broker.admit_peer(Some(good), now).is_ok());
    assert!(f.broker.admit_peer(None, now).is_ok());
    // Refilled after a second.
    assert!(
        f.broker
            .admit_peer(Some(bad), now + Duration::from_secs(1))
            .is_ok()
    );
    // Only the first of the two identical refusals was audited in full.
    assert_eq!(f.audit_lines().len(), 1);
}

#[test]
fn addresses_are_limited_per_ipv4_address_and_per_ipv6_64() {
    let v4: IpAddr = "192.0.2.7".parse().unwrap();
    assert_eq!(client_key(v4), v4);
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    assert_eq!(client_key(mapped), v4);
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
    let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(client_key(a), client_key(b));
    assert_eq!(client_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
    assert_ne!(client_key(a), client_key(other));
}
