use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use svid_broker_identity::bundle::BundleProvider;
use svid_broker_identity::jwt::AudienceMatch;
use svid_broker_identity::secret::{ExposeSecret as _, SecretString};
use svid_broker_policy::{Policy, ResourceScope, scope};

use super::*;
use crate::audit::{AuditOnError, AuditSink, rfc3339};
use crate::authn::{AuthMethod, Authenticated, Caller, CredentialBinding, Subject};
use crate::credential::{CredentialError, CredentialKeys};
use crate::error::{AuthFailure, Denial, ErrorCode, ExchangeError, InvalidRequest, Unavailability};
use crate::issue::{AccessToken, LoginCredential, RefreshToken};
use crate::listen::client_key;
use crate::request::{Endpoint, ExchangeKind, ExchangeRequest, Presented, RequestContext};
use crate::testutil::{
    ADMIN, AUDIENCE, BUILDER, Fixture, READER, SERVICE, STRANGER, claims, id, t0,
};
use crate::throttle::RateLimit;

const PEER: &str = "127.0.0.1:4000";

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| (*x).to_owned()).collect()
}

/// What an edge records of a request from [`PEER`] before checking it.
fn context(
    kind: ExchangeKind,
    service: &str,
    scopes: &[&str],
    endpoint: Endpoint,
) -> RequestContext {
    RequestContext::new(kind, endpoint, Some(PEER.parse().unwrap()))
        .with_service(service)
        .with_scopes(&strings(scopes))
}

/// A request from [`PEER`] that passed its edge's checks.
fn request(
    kind: ExchangeKind,
    service: &str,
    scopes: &[&str],
    endpoint: Endpoint,
) -> ExchangeRequest {
    ExchangeRequest::parse(
        context(kind, service, scopes, endpoint),
        service,
        &strings(scopes),
    )
    .unwrap()
}

/// An access-token request at the realm (`GET /token`).
fn realm(scopes: &[&str]) -> ExchangeRequest {
    request(
        ExchangeKind::AccessToken,
        SERVICE,
        scopes,
        Endpoint::RealmGet,
    )
}

/// An access-token request for `SERVICE` at the gRPC edge, where an empty grant is refused.
fn grpc(scopes: &[&str]) -> ExchangeRequest {
    request(ExchangeKind::AccessToken, SERVICE, scopes, Endpoint::Grpc)
}

fn with_client_id(mut request: ExchangeRequest, client_id: &str) -> ExchangeRequest {
    request.context = request.context.with_client_id(Some(client_id));
    request
}

fn caller(who: &str) -> Caller {
    Caller {
        spiffe_id: id(who),
        method: AuthMethod::JwtSvid,
    }
}

fn svid_auth(who: &str) -> Authenticated {
    Authenticated::svid(caller(who))
}

fn subject_of(authenticated: Authenticated) -> Subject {
    Subject {
        authenticated,
        on_behalf: None,
    }
}

/// A subject `who` that proved a JWT-SVID: no credential binding, no vouching actor.
fn subject(who: &str) -> Subject {
    subject_of(svid_auth(who))
}

fn access_token(exchanged: Exchanged) -> AccessToken {
    match exchanged.output {
        ExchangeOutput::AccessToken(t) => t,
        other => panic!("{other:?}"),
    }
}

fn login_credential(exchanged: Exchanged) -> LoginCredential {
    match exchanged.output {
        ExchangeOutput::LoginCredential(c) => c,
        other => panic!("{other:?}"),
    }
}

/// A refresh token for `who` (an SVID caller), in a session starting at `now`.
fn refresh_token(f: &Fixture, who: &str, now: SystemTime) -> RefreshToken {
    f.broker
        .realm_token_for(&subject(who), &realm(&[]).with_refresh_token(true), now)
        .unwrap()
        .refresh
        .unwrap()
}

/// The value of one metrics line (`name{labels}`), 0 when absent.
fn metric(f: &Fixture, series: &str) -> u64 {
    let text = f.broker.metrics().render();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// The sum of every `svid_broker_denied_total` series.
fn denied_total(f: &Fixture) -> u64 {
    f.broker
        .metrics()
        .render()
        .lines()
        .filter(|l| l.starts_with("svid_broker_denied_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn denied(endpoint: &str, code: &str) -> String {
    format!("svid_broker_denied_total{{endpoint=\"{endpoint}\",code=\"{code}\"}}")
}

#[test]
fn jwt_svid_with_the_broker_audience_authenticates() {
    let f = Fixture::new();
    let c = f
        .broker
        .authenticator()
        .authenticate_jwt_svid(&f.jwt(BUILDER, AUDIENCE), t0())
        .unwrap();
    assert_eq!(c.spiffe_id, id(BUILDER));
    assert_eq!(c.method, AuthMethod::JwtSvid);
}

#[test]
fn jwt_svid_with_another_audience_is_unauthenticated() {
    let f = Fixture::new();
    let authn = f.broker.authenticator();
    let err = authn
        .authenticate_jwt_svid(&f.jwt(BUILDER, "someone-else"), t0())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unauthenticated);
    assert!(matches!(
        err,
        ExchangeError::Unauthenticated {
            reason: AuthFailure::JwtSvid(_)
        }
    ));
    let err = authn.authenticate_jwt_svid("garbage", t0()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unauthenticated);
}

#[test]
fn x509_svids_of_trusted_domains_authenticate() {
    let f = Fixture::new();
    let svid =
        f.td.x509_svid(&id("spiffe://example.org/workload"))
            .unwrap();
    let c = f
        .broker
        .authenticator()
        .authenticate_x509(svid.chain(), t0())
        .unwrap();
    assert_eq!(c.method, AuthMethod::X509Svid);
    let other = svid_broker_dev::DevTrustDomain::new(
        svid_broker_identity::TrustDomain::parse("other.org").unwrap(),
        [id("spiffe://other.org/w")],
    )
    .unwrap();
    let foreign = other.x509_svid(&id("spiffe://other.org/w")).unwrap();
    let err = f
        .broker
        .authenticator()
        .authenticate_x509(foreign.chain(), t0())
        .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::Unauthenticated {
            reason: AuthFailure::X509Svid(_)
        }
    ));
}

/// A chain verified once gives the same answer when presented again, and the verified-chain
/// cache never answers outside the chain's validity window nor for another bundle snapshot.
/// (The cache's own entries are checked in `verified_cache`'s tests.)
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
    let authn = broker.authenticator();
    let svid =
        f.td.x509_svid(&id("spiffe://example.org/workload"))
            .unwrap();

    // The first call verifies and remembers; the second gives the same answer.
    let first = authn.authenticate_x509(svid.chain(), t0()).unwrap();
    let again = authn.authenticate_x509(svid.chain(), t0()).unwrap();
    assert_eq!(first, again);
    assert_eq!(again.spiffe_id.as_str(), "spiffe://example.org/workload");

    // After the chain expires it is refused, remembered or not.
    let late = svid.not_after() + Duration::from_secs(5);
    assert!(matches!(
        authn.authenticate_x509(svid.chain(), late),
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
        authn.authenticate_x509(svid.chain(), t0()),
        Err(ExchangeError::Unauthenticated { .. })
    ));
}

#[test]
fn access_token_carries_the_policy_grant_and_registry_claims() {
    let f = Fixture::new();
    let out = f
        .broker
        .exchange_for(
            &subject(BUILDER),
            &grpc(&["repository:team/app:pull,push,delete"]),
            t0(),
        )
        .unwrap();
    assert_eq!(out.subject, subject(BUILDER));
    let t = access_token(out);
    assert_eq!(
        scope::join_scopes(&t.granted),
        "repository:team/app:pull,push"
    );
    let c = claims(t.token.expose_secret());
    assert_eq!(c["iss"], "svid-broker");
    assert_eq!(c["aud"], SERVICE);
    assert_eq!(c["sub"], BUILDER);
    assert_eq!(c["jti"], t.jti.as_str());
    assert_eq!(
        c["access"],
        serde_json::json!([{"type":"repository","name":"team/app","actions":["pull","push"]}])
    );
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 305);
}

#[test]
fn realm_accepts_empty_grants_but_grpc_refuses_them() {
    let f = Fixture::new();
    let s = ["repository:team/app:pull"];
    let tokens = f
        .broker
        .realm_token_for(&subject(STRANGER), &realm(&s), t0())
        .unwrap();
    assert!(tokens.access.granted.is_empty());
    assert!(tokens.refresh.is_none());
    assert_eq!(
        claims(tokens.access.token.expose_secret())["access"],
        serde_json::json!([])
    );
    let err = f
        .broker
        .exchange_for(&subject(STRANGER), &grpc(&s), t0())
        .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::PermissionDenied {
            reason: Denial::EmptyGrant
        }
    ));
}

/// The service is checked by the pass before authentication (so a client with a typo learns
/// about the typo, not about a 401), and again by the decision for a subject authenticated
/// elsewhere; the scope grammar and a missing service are the edge's, at parse time.
#[test]
fn unknown_service_and_bad_scopes_are_invalid_arguments() {
    let f = Fixture::new();
    let s = ["repository:team/app:pull"];
    let unknown = request(ExchangeKind::AccessToken, "nope", &s, Endpoint::Grpc);
    let err = f
        .broker
        .exchange_for(&subject(BUILDER), &unknown, t0())
        .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::InvalidArgument {
            reason: InvalidRequest::UnknownService { .. }
        }
    ));
    for presented in [Presented::Nothing, Presented::JwtSvid("garbage")] {
        let err = f
            .broker
            .exchange(&unknown, &presented, None, t0())
            .unwrap_err();
        assert!(
            matches!(
                err,
                ExchangeError::InvalidArgument {
                    reason: InvalidRequest::UnknownService { .. }
                }
            ),
            "{presented:?}: {err:?}"
        );
    }
    let realm_unknown = request(ExchangeKind::AccessToken, "nope", &s, Endpoint::RealmGet);
    let err = f
        .broker
        .realm_token(&realm_unknown, &Presented::Nothing, t0())
        .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::InvalidArgument {
            reason: InvalidRequest::UnknownService { .. }
        }
    ));

    let ctx = context(ExchangeKind::AccessToken, SERVICE, &[], Endpoint::Grpc);
    let err =
        ExchangeRequest::parse(ctx.clone(), SERVICE, &strings(&["repository::pull"])).unwrap_err();
    assert!(matches!(err, InvalidRequest::Scope(_)), "{err:?}");
    assert_eq!(ExchangeError::from(err).code(), ErrorCode::InvalidArgument);
    let err = ExchangeRequest::parse(ctx, "", &strings(&s)).unwrap_err();
    assert_eq!(err, InvalidRequest::MissingService);
    assert!(matches!(
        ExchangeError::from(err),
        ExchangeError::InvalidArgument {
            reason: InvalidRequest::MissingService
        }
    ));
}

#[test]
fn issued_tokens_are_reused_for_half_their_life() {
    let f = Fixture::new();
    let req = realm(&["repository:team/app:pull"]);
    let now = t0();
    let ask = |at| {
        f.broker
            .realm_token_for(&subject(READER), &req, at)
            .unwrap()
            .access
            .jti
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
    let req = realm(&["repository:team/app:pull"]);
    let ask = || {
        f.broker
            .realm_token_for(&subject(READER), &req, t0())
            .unwrap()
            .access
            .jti
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
    let req = realm(&["repository:team/app:pull"]);
    let now = t0();
    let ask = |who, at| f.broker.realm_token_for(&subject(who), &req, at);
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
    let req = request(ExchangeKind::LoginCredential, SERVICE, &[], Endpoint::Grpc);
    let c = login_credential(
        f.broker
            .exchange_for(&subject(BUILDER), &req, t0())
            .unwrap(),
    );
    assert_eq!(c.username, BUILDER);
    assert!(c.password.expose_secret().starts_with("sbl1."));
    assert!(c.ceiling.is_empty());
    for who in [STRANGER, ADMIN] {
        let service = if who == ADMIN {
            "registry.other"
        } else {
            SERVICE
        };
        let req = request(ExchangeKind::LoginCredential, service, &[], Endpoint::Grpc);
        let err = f
            .broker
            .exchange_for(&subject(who), &req, t0())
            .unwrap_err();
        assert!(matches!(
            err,
            ExchangeError::PermissionDenied {
                reason: Denial::RegistryNotAllowed
            }
        ));
    }
}

fn login(f: &Fixture, who: &str, ceiling: &[&str]) -> SecretString {
    let req = request(
        ExchangeKind::LoginCredential,
        SERVICE,
        ceiling,
        Endpoint::Grpc,
    );
    login_credential(f.broker.exchange_for(&subject(who), &req, t0()).unwrap()).password
}

#[test]
fn login_credential_ceiling_limits_later_grants() {
    let f = Fixture::new();
    let password = login(&f, BUILDER, &["repository:team/app:pull"]);
    let auth = f
        .broker
        .authenticator()
        .authenticate_secret(Some(BUILDER), password.expose_secret(), t0())
        .unwrap();
    assert_eq!(auth.caller.method, AuthMethod::LoginCredential);
    let s = [
        "repository:team/app:pull,push",
        "repository:team/other:pull",
    ];
    let tokens = f
        .broker
        .realm_token_for(
            &subject_of(auth),
            &with_client_id(realm(&s), "containers/image"),
            t0(),
        )
        .unwrap();
    assert_eq!(
        scope::join_scopes(&tokens.access.granted),
        "repository:team/app:pull"
    );
    // No ceiling: whatever policy allows.
    let open = login(&f, BUILDER, &[]);
    let auth = f
        .broker
        .authenticator()
        .authenticate_secret(Some(BUILDER), open.expose_secret(), t0())
        .unwrap();
    let tokens = f
        .broker
        .realm_token_for(&subject_of(auth), &realm(&s), t0())
        .unwrap();
    assert_eq!(
        scope::join_scopes(&tokens.access.granted),
        "repository:team/app:pull,push repository:team/other:pull"
    );
}

#[test]
fn login_credential_is_bound_to_its_username_and_service() {
    let f = Fixture::new();
    let password = login(&f, BUILDER, &[]);
    let authn = f.broker.authenticator();
    let err = authn
        .authenticate_secret(Some(READER), password.expose_secret(), t0())
        .unwrap_err();
    assert!(matches!(
        err,
        ExchangeError::Unauthenticated {
            reason: AuthFailure::UsernameMismatch
        }
    ));
    // Without its subject as the username (empty, or as a Bearer token): refused.
    for username in [None, Some("")] {
        let err = authn
            .authenticate_secret(username, password.expose_secret(), t0())
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
    let auth = authn
        .authenticate_secret(Some(BUILDER), password.expose_secret(), t0())
        .unwrap();
    let other = request(
        ExchangeKind::AccessToken,
        "registry.other",
        &[],
        Endpoint::RealmGet,
    );
    let err = f
        .broker
        .realm_token_for(&subject_of(auth), &other, t0())
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
    let r = refresh_token(&f, READER, now);
    let authn = f.broker.authenticator();
    let auth = authn
        .authenticate_secret(None, r.secret.expose_secret(), now)
        .unwrap();
    assert_eq!(auth.caller.method, AuthMethod::RefreshToken);
    assert_eq!(auth.caller.spiffe_id, id(READER));
    let err = authn
        .authenticate_secret(
            None,
            r.secret.expose_secret(),
            now + Duration::from_secs(3600),
        )
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
    let s = ["repository:team/app:pull,push"];
    let tokens = f
        .broker
        .realm_token_for(
            &subject(READER),
            &with_client_id(realm(&s), "containers/image"),
            t0(),
        )
        .unwrap();
    let unknown = request(ExchangeKind::AccessToken, "nope", &s, Endpoint::Grpc);
    let _ = f.broker.exchange_for(&subject(READER), &unknown, t0());
    let lines = f.audit_lines();
    assert_eq!(lines.len(), 2);
    let ok = &lines[0];
    assert_eq!(ok["decision"], "allow");
    assert_eq!(ok["subject"], READER);
    assert_eq!(ok["actor"], "jwt-svid client_id=containers/image");
    assert_eq!(ok["requested"], "repository:team/app:pull,push");
    assert_eq!(ok["granted"], "repository:team/app:pull");
    assert_eq!(ok["jti"], tokens.access.jti.as_str());
    assert_eq!(ok["peer"], PEER);
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
    assert!(!all.contains(tokens.access.token.expose_secret()));
}

#[test]
fn rejections_before_an_exchange_are_audited_and_counted() {
    let f = Fixture::new();
    let err = f
        .broker
        .authenticator()
        .authenticate_jwt_svid("x", t0())
        .unwrap_err();
    let ctx = RequestContext::new(ExchangeKind::AccessToken, Endpoint::RealmPost, None)
        .with_service(SERVICE);
    let (answer, first) = f.broker.refuse_unauthenticated(&ctx, &err, t0());
    assert!(first);
    assert_eq!(answer.code(), ErrorCode::Unauthenticated);
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
        .authenticator()
        .authenticate_jwt_svid(&f.jwt(BUILDER, "other"), t0())
        .unwrap_err();
    let chain = err.chain();
    assert!(chain.starts_with("jwt-svid rejected: "), "{chain}");
    assert!(chain.len() > "jwt-svid rejected: ".len());
}

/// A login credential's ceiling restricts what it obtains; `*` in the ceiling covers every
/// action, as the registry reads it.
#[test]
fn ceiling_star_covers_every_action() {
    let f = Fixture::new();
    let bound = |ceiling: &str| {
        subject_of(Authenticated {
            caller: Caller {
                spiffe_id: id(BUILDER),
                method: AuthMethod::LoginCredential,
            },
            binding: Some(CredentialBinding {
                service: SERVICE.to_owned(),
                ceiling: scope::parse_scopes([ceiling]).unwrap(),
                jti: "j".to_owned(),
                auth_time: t0(),
                session_end: t0() + Duration::from_secs(600),
            }),
        })
    };
    let req = realm(&["repository:team/app:pull,push"]);
    let granted = |ceiling| {
        f.broker
            .realm_token_for(&bound(ceiling), &req, t0())
            .unwrap()
            .access
            .granted
    };
    let text = |scopes: Vec<ResourceScope>| scope::join_scopes(&scopes);
    assert_eq!(
        text(granted("repository:team/app:*")),
        "repository:team/app:pull,push"
    );
    assert_eq!(
        text(granted("repository:team/app:pull")),
        "repository:team/app:pull"
    );
    assert!(granted("repository:team/other:pull").is_empty());
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
        .authenticator()
        .authenticate_secret(Some(BUILDER), password.expose_secret(), t0())
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
    assert!(!all.contains(password.expose_secret()));
}

/// `max_session` is applied when a refresh token is presented too, so lowering it shortens
/// sessions already under way (replicas share keys, so one broker's token reaches another).
#[test]
fn max_session_bounds_refresh_tokens_at_authentication() {
    let long = Fixture::new();
    let short = Fixture::with(|o| o.max_session = Duration::from_secs(30 * 60));
    let now = t0();
    let issued = refresh_token(&long, READER, now);
    let inside = now + Duration::from_secs(29 * 60);
    let auth = short
        .broker
        .authenticator()
        .authenticate_secret(None, issued.secret.expose_secret(), inside)
        .unwrap();
    let binding = auth.binding.unwrap();
    assert_eq!(
        binding
            .auth_time
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        now.duration_since(UNIX_EPOCH).unwrap().as_secs()
    );
    assert!(
        long.broker
            .authenticator()
            .authenticate_secret(
                None,
                issued.secret.expose_secret(),
                now + Duration::from_secs(31 * 60)
            )
            .is_ok()
    );
    let err = short
        .broker
        .authenticator()
        .authenticate_secret(
            None,
            issued.secret.expose_secret(),
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
    let at_realm = request(
        ExchangeKind::AccessToken,
        SERVICE,
        &["repository:team/app:pull"],
        Endpoint::RealmPost,
    );
    let stranger = refresh_token(&f, STRANGER, t0());
    let auth = f
        .broker
        .authenticator()
        .authenticate_secret(None, stranger.secret.expose_secret(), t0())
        .unwrap();
    let err = f
        .broker
        .realm_token_for(&subject_of(auth), &at_realm, t0())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unauthenticated);
    assert!(matches!(
        err,
        ExchangeError::Unauthenticated {
            reason: AuthFailure::NoLongerAllowed { .. }
        }
    ));
    let tokens = f
        .broker
        .realm_token_for(&subject(STRANGER), &at_realm, t0())
        .unwrap();
    assert!(tokens.access.granted.is_empty());
    // A subject that still has a rule renews.
    let reader = refresh_token(&f, READER, t0());
    let auth = f
        .broker
        .authenticator()
        .authenticate_secret(None, reader.secret.expose_secret(), t0())
        .unwrap();
    assert!(
        f.broker
            .realm_token_for(&subject_of(auth), &at_realm, t0())
            .is_ok()
    );
}

#[test]
fn first_format_refresh_tokens_are_refused_as_outdated() {
    let f = Fixture::new();
    let err = f
        .broker
        .authenticator()
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
    f.broker
        .exchange_for(
            &subject(BUILDER),
            &grpc(&["repository:team/app:pull"]),
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
    let req = grpc(&["repository:team/app:pull"]);
    for _ in 0..3 {
        let err = f
            .broker
            .exchange_for(&subject(BUILDER), &req, t0())
            .unwrap_err();
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
    let err = f
        .broker
        .exchange_for(
            &subject(BUILDER),
            &grpc(&["repository:elsewhere/x:pull"]),
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
    f.broker
        .exchange_for(
            &subject(BUILDER),
            &grpc(&["repository:team/app:pull"]),
            t0(),
        )
        .unwrap();
    let password = login(&f, BUILDER, &[]);
    assert!(password.expose_secret().starts_with("sbl1."));
    assert_eq!(f.broker.metrics().audit_write_errors(), 2);
}

#[test]
fn multi_audience_jwt_svids_are_refused_unless_audience_policy_is_any() {
    let td_jwt = |f: &Fixture| {
        f.td.issue_jwt_svid(&id(BUILDER), &[AUDIENCE, "another-relying-party"])
            .unwrap()
            .token()
            .expose_secret()
            .to_owned()
    };
    let single = Fixture::new();
    let err = single
        .broker
        .authenticator()
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
            .authenticator()
            .authenticate_jwt_svid(&single.jwt(BUILDER, AUDIENCE), t0())
            .is_ok()
    );
    let any = Fixture::with(|o| o.audience_policy = AudienceMatch::AnyOf);
    let c = any
        .broker
        .authenticator()
        .authenticate_jwt_svid(&td_jwt(&any), t0())
        .unwrap();
    assert_eq!(c.spiffe_id.as_str(), BUILDER);
}

/// Failures spend their address's budget (per address: others and unknown addresses keep
/// theirs); once it is spent the answer is 429 / RESOURCE_EXHAUSTED, and time refills it.
#[test]
fn the_failed_auth_limit_is_per_address_and_spares_successes() {
    let f = Fixture::with(|o| {
        o.failed_auth_limit = Some(RateLimit {
            per_second: 1.0,
            burst: 2.0,
        });
    });
    let bad: SocketAddr = "127.0.0.2:1".parse().unwrap();
    let good: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let from = |peer| RequestContext::new(ExchangeKind::AccessToken, Endpoint::Grpc, peer);
    let now = t0();
    let err = f
        .broker
        .authenticator()
        .authenticate_jwt_svid("x", now)
        .unwrap_err();
    // Successes spend nothing.
    let mut ok = grpc(&["repository:team/app:pull"]);
    ok.context.peer = Some(bad);
    let jwt = f.jwt(BUILDER, AUDIENCE);
    for _ in 0..3 {
        f.broker
            .exchange(&ok, &Presented::JwtSvid(&jwt), None, now)
            .unwrap();
    }
    let answer = |peer, at| f.broker.refuse_unauthenticated(&from(peer), &err, at);
    let (first_answer, audited) = answer(Some(bad), now);
    assert!(audited);
    assert_eq!(first_answer.code(), ErrorCode::Unauthenticated);
    let (second, first) = answer(Some(bad), now);
    assert!(!first);
    assert_eq!(second.code(), ErrorCode::Unauthenticated);
    // Only the first of the two identical refusals was audited in full.
    let denials = |f: &Fixture| {
        f.audit_lines()
            .iter()
            .filter(|l| l["decision"] == "deny")
            .count()
    };
    assert_eq!(denials(&f), 1);
    let (limited, _) = answer(Some(bad), now);
    assert!(
        matches!(limited, ExchangeError::PeerLimited { .. }),
        "{limited:?}"
    );
    assert_eq!(limited.code(), ErrorCode::ResourceExhausted);
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(answer(Some(good), now).0.code(), ErrorCode::Unauthenticated);
    assert_eq!(answer(None, now).0.code(), ErrorCode::Unauthenticated);
    // Refilled after a second.
    assert_eq!(
        answer(Some(bad), now + Duration::from_secs(1)).0.code(),
        ErrorCode::Unauthenticated
    );
}

/// Only failures are held against an address: a caller that authenticates is served from an
/// address whose failure budget others spent (clients behind one NAT or node IP cannot lock
/// each other out), and its success spends nothing.
#[test]
fn a_spent_address_still_serves_callers_that_authenticate() {
    let f = Fixture::with(|o| {
        o.failed_auth_limit = Some(RateLimit {
            per_second: 0.001,
            burst: 2.0,
        });
    });
    let shared: SocketAddr = "127.0.0.2:1".parse().unwrap();
    let now = t0();
    let mut req = grpc(&["repository:team/app:pull"]);
    req.context.peer = Some(shared);
    for _ in 0..3 {
        let _ = f.broker.exchange(&req, &Presented::JwtSvid("x"), None, now);
    }
    let err = f
        .broker
        .exchange(&req, &Presented::JwtSvid("x"), None, now)
        .unwrap_err();
    assert!(matches!(err, ExchangeError::PeerLimited { .. }), "{err:?}");
    let jwt = f.jwt(BUILDER, AUDIENCE);
    let out = f
        .broker
        .exchange(&req, &Presented::JwtSvid(&jwt), None, now)
        .unwrap();
    assert_eq!(out.subject.spiffe_id(), &id(BUILDER));
    let mut realm_req = realm(&["repository:team/app:pull"]);
    realm_req.context.peer = Some(shared);
    let tokens = f
        .broker
        .realm_token(
            &realm_req,
            &Presented::Secret {
                username: None,
                secret: &jwt,
            },
            now,
        )
        .unwrap();
    assert_eq!(
        scope::join_scopes(&tokens.access.granted),
        "repository:team/app:pull"
    );
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

/// The realm token and the refresh token are each audited once, with the time the pass was
/// given (the injected clock's), not the wall clock's.
#[test]
fn realm_and_refresh_tokens_are_each_audited_once_at_the_injected_time() {
    let f = Fixture::new();
    // An hour from the wall clock: an event stamped with wall time would say otherwise.
    let now = t0() + Duration::from_secs(3600);
    let tokens = f
        .broker
        .realm_token_for(
            &subject(READER),
            &realm(&["repository:team/app:pull"]).with_refresh_token(true),
            now,
        )
        .unwrap();
    let refresh = tokens.refresh.as_ref().unwrap();
    let lines = f.audit_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let of = |kind: &str| {
        let found: Vec<_> = lines.iter().filter(|l| l["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "{kind}: {lines:?}");
        found[0].clone()
    };
    let access = of("access_token");
    assert_eq!(access["time"], rfc3339(now));
    assert_eq!(access["decision"], "allow");
    assert_eq!(access["jti"], tokens.access.jti.as_str());
    assert_eq!(access["expires_at"], rfc3339(tokens.access.expires_at));
    let refreshed = of("refresh_token");
    assert_eq!(refreshed["time"], rfc3339(now));
    assert_eq!(refreshed["decision"], "allow");
    assert_eq!(refreshed["reason"], "refresh token issued");
    assert_eq!(refreshed["ceiling"], "registry-wide");
    assert_eq!(refreshed["jti"], refresh.jti.as_str());
    assert_eq!(refreshed["expires_at"], rfc3339(refresh.expires_at));
    // Neither secret is written.
    let all = f.audit.lock().unwrap().join("\n");
    assert!(!all.contains(tokens.access.token.expose_secret()));
    assert!(!all.contains(refresh.secret.expose_secret()));
    // One issuance counted (refresh tokens ride along the access token).
    assert_eq!(
        metric(
            &f,
            "svid_broker_issued_total{endpoint=\"realm_get\",kind=\"access_token\"}"
        ),
        1
    );
}

/// Checks that `refuse` refused with `code` at `endpoint`, writing exactly one denial to the
/// audit log (stamped `now`) and counting exactly one denial, in that endpoint's and code's
/// series, and `events` audit events in all. Returns the events the call wrote.
fn refused_once(
    f: &Fixture,
    endpoint: &str,
    code: &str,
    now: SystemTime,
    events: usize,
    refuse: impl FnOnce() -> Result<(), ExchangeError>,
) -> Vec<serde_json::Value> {
    let lines_before = f.audit_lines().len();
    let denied_before = denied_total(f);
    let series_before = metric(f, &denied(endpoint, code));
    let err = refuse().expect_err("refused");
    assert_eq!(err.code().label(), code, "{err:?}");
    let written = f.audit_lines().split_off(lines_before);
    assert_eq!(written.len(), events, "{err:?}: {written:?}");
    let denials: Vec<_> = written.iter().filter(|e| e["decision"] == "deny").collect();
    assert_eq!(denials.len(), 1, "{err:?}: {written:?}");
    let event = denials[0];
    assert_eq!(event["code"], code, "{event}");
    assert_eq!(event["endpoint"], endpoint, "{event}");
    assert_eq!(event["time"], rfc3339(now), "{event}");
    assert_eq!(denied_total(f), denied_before + 1, "{err:?}");
    assert_eq!(
        metric(f, &denied(endpoint, code)),
        series_before + 1,
        "{err:?}"
    );
    written
}

/// A refused request is audited once and counted once in `svid_broker_denied_total`, whichever
/// step refused it: the edge, the pass before authentication, authentication, the actor check,
/// the decision or issuance.
#[test]
fn a_refused_request_is_audited_once_and_counted_once_whichever_step_refused_it() {
    let f = Fixture::with(|o| {
        o.rate_limit = Some(RateLimit {
            per_second: 0.001,
            burst: 1.0,
        });
    });
    let now = t0() + Duration::from_secs(60);
    let jwt = f.jwt(BUILDER, AUDIENCE);
    let s = ["repository:team/app:pull"];

    // The edge: the scope grammar, refused through `refuse_unauthenticated`.
    refused_once(&f, "grpc", "invalid_argument", now, 1, || {
        let ctx = context(
            ExchangeKind::AccessToken,
            SERVICE,
            &["repository::pull"],
            Endpoint::Grpc,
        );
        let err = ExchangeRequest::parse(ctx.clone(), SERVICE, &strings(&["repository::pull"]))
            .unwrap_err();
        Err(f.broker.refuse_unauthenticated(&ctx, &err.into(), now).0)
    });
    // Before authentication: an unknown service, whatever the credentials.
    refused_once(&f, "realm_get", "invalid_argument", now, 1, || {
        let unknown = request(ExchangeKind::AccessToken, "nope", &s, Endpoint::RealmGet);
        f.broker
            .realm_token(&unknown, &Presented::Nothing, now)
            .map(drop)
    });
    // Authentication.
    refused_once(&f, "grpc", "unauthenticated", now, 1, || {
        f.broker
            .exchange(&grpc(&s), &Presented::JwtSvid("garbage"), None, now)
            .map(drop)
    });
    refused_once(&f, "realm_post", "unauthenticated", now, 1, || {
        let req = request(ExchangeKind::AccessToken, SERVICE, &s, Endpoint::RealmPost);
        f.broker
            .realm_token(&req, &Presented::RefreshToken("sbl1.x"), now)
            .map(drop)
    });
    // The actor check: subject tokens are not enabled on this broker.
    refused_once(&f, "grpc", "permission_denied", now, 1, || {
        f.broker
            .exchange(&grpc(&s), &Presented::JwtSvid(&jwt), Some("sa-token"), now)
            .map(drop)
    });
    // The decision: nothing granted over gRPC, a credential bound elsewhere, the rate limit.
    refused_once(&f, "grpc", "permission_denied", now, 1, || {
        f.broker
            .exchange(
                &grpc(&["repository:elsewhere/x:pull"]),
                &Presented::JwtSvid(&jwt),
                None,
                now,
            )
            .map(drop)
    });
    let password = login(&f, READER, &[]);
    refused_once(&f, "realm_get", "unauthenticated", now, 1, || {
        let other = request(
            ExchangeKind::AccessToken,
            "registry.other",
            &[],
            Endpoint::RealmGet,
        );
        f.broker
            .realm_token(
                &other,
                &Presented::Secret {
                    username: Some(READER),
                    secret: password.expose_secret(),
                },
                now,
            )
            .map(drop)
    });
    refused_once(&f, "grpc", "resource_exhausted", now, 1, || {
        f.broker
            .exchange(&grpc(&s), &Presented::JwtSvid(&jwt), None, now)
            .map(drop)
    });
    // Issuance: a refresh token for a session that is (all but) over. Both credentials are
    // issued before either is recorded, so the refusal is the request's only event: no
    // access token is audited or counted as issued that the caller never receives.
    let ending = subject_of(Authenticated {
        caller: Caller {
            spiffe_id: id(ADMIN),
            method: AuthMethod::LoginCredential,
        },
        binding: Some(CredentialBinding {
            service: SERVICE.to_owned(),
            ceiling: Vec::new(),
            jti: "j".to_owned(),
            auth_time: now - Duration::from_secs(600),
            session_end: now,
        }),
    });
    let issued = "svid_broker_issued_total{endpoint=\"realm_get\",kind=\"access_token\"}";
    let issued_before = metric(&f, issued);
    let written = refused_once(&f, "realm_get", "unauthenticated", now, 1, || {
        f.broker
            .realm_token_for(&ending, &realm(&[]).with_refresh_token(true), now)
            .map(drop)
    });
    assert_eq!(
        written[0]["reason"], "refresh token session expired",
        "{written:?}"
    );
    assert_eq!(metric(&f, issued), issued_before);
}
