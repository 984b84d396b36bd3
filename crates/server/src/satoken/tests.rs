use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt as _;
use serde_json::{Value, json};
use svid_broker_dev::satoken::{DevSaAlgorithm, DevServiceAccountIssuer, SaTokenRequest};
use svid_broker_identity::jwt::{JwtSvidError, RejectedAlgorithm};

use svid_broker_identity::secret::ExposeSecret as _;

use super::*;

const ISS: &str = "https://k8s.test";
const AUD: &str = "svid-broker";

/// A caller admitted by an entry without `{node}`: no node binding.
const UNBOUND: Admission<'static> = Admission {
    entry: "spiffe://example.org/plugin",
    node: None,
};

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn td() -> TrustDomain {
    TrustDomain::parse("example.org").unwrap()
}

/// One shared ES256 and one RS256 issuer: key generation is slow, sharing couples nothing.
fn es() -> &'static DevServiceAccountIssuer {
    static I: OnceLock<DevServiceAccountIssuer> = OnceLock::new();
    I.get_or_init(|| DevServiceAccountIssuer::new(ISS, DevSaAlgorithm::Es256).unwrap())
}

fn rs() -> &'static DevServiceAccountIssuer {
    static I: OnceLock<DevServiceAccountIssuer> = OnceLock::new();
    I.get_or_init(|| DevServiceAccountIssuer::new(ISS, DevSaAlgorithm::Rs256).unwrap())
}

fn keys_for(issuer: &DevServiceAccountIssuer) -> Arc<IssuerKeys> {
    let keys = Arc::new(IssuerKeys::new(td()));
    keys.install_jwks(issuer.jwks_json().as_bytes()).unwrap();
    keys
}

fn validator_with(
    issuer: &DevServiceAccountIssuer,
    template: IdTemplate,
) -> ServiceAccountValidator {
    ServiceAccountValidator::new(vec![SaIssuer::new(
        ISS,
        vec![AUD.to_owned(), "other-aud".to_owned()],
        template,
        keys_for(issuer),
    )])
}

fn validator() -> ServiceAccountValidator {
    validator_with(es(), IdTemplate::default_for(&td()))
}

fn request() -> SaTokenRequest {
    SaTokenRequest::new("team-a", "app", AUD)
        .pod("app-0")
        .issued_at(now())
}

fn good_claims() -> Value {
    es().claims(&request()).unwrap()
}

fn sign(claims: &Value) -> String {
    es().sign_claims(claims).unwrap().expose_secret().to_owned()
}

fn with(mut claims: Value, path: &[&str], value: Option<Value>) -> Value {
    let mut target = &mut claims;
    for key in &path[..path.len() - 1] {
        target = target.get_mut(*key).unwrap();
    }
    let map = target.as_object_mut().unwrap();
    let last = path[path.len() - 1];
    match value {
        Some(v) => {
            map.insert(last.to_owned(), v);
        }
        None => {
            map.remove(last);
        }
    }
    claims
}

fn err(token: &str) -> SaTokenError {
    validator().validate(token, &UNBOUND, now()).unwrap_err()
}

// === success ===

#[test]
fn valid_es256_token_maps_by_the_default_template() {
    let token = es().mint(&request()).unwrap();
    let id = validator()
        .validate(token.expose_secret(), &UNBOUND, now())
        .unwrap();
    assert_eq!(
        id.spiffe_id.as_str(),
        "spiffe://example.org/ns/team-a/sa/app"
    );
    assert_eq!(id.namespace, "team-a");
    assert_eq!(id.name, "app");
    assert_eq!(id.issuer, ISS);
    assert_eq!(id.pod_name.as_deref(), Some("app-0"));
    assert!(id.pod_uid.is_some());
    assert_eq!(id.expires_at, now() + Duration::from_secs(3600));
}

#[test]
fn valid_rs256_token_without_pod_binding() {
    let token = rs()
        .mint(&SaTokenRequest::new("ns", "sa", AUD).issued_at(now()))
        .unwrap();
    let id = validator_with(rs(), IdTemplate::default_for(&td()))
        .validate(token.expose_secret(), &UNBOUND, now())
        .unwrap();
    assert_eq!(id.spiffe_id.as_str(), "spiffe://example.org/ns/ns/sa/sa");
    assert_eq!(id.pod_name, None);
}

#[test]
fn custom_template_is_applied() {
    let template =
        IdTemplate::parse("spiffe://example.org/k8s/c1/{namespace}/{name}", &td()).unwrap();
    let token = es().mint(&request()).unwrap();
    let id = validator_with(es(), template)
        .validate(token.expose_secret(), &UNBOUND, now())
        .unwrap();
    assert_eq!(
        id.spiffe_id.as_str(),
        "spiffe://example.org/k8s/c1/team-a/app"
    );
}

// === templates ===

#[test]
fn template_rules() {
    let ok = IdTemplate::parse(DEFAULT_ID_TEMPLATE, &td()).unwrap();
    assert_eq!(ok, IdTemplate::default_for(&td()));
    assert_eq!(ok.as_str(), "spiffe://example.org/ns/{namespace}/sa/{name}");
    assert!(IdTemplate::parse("spiffe://example.org/ns/{namespace}", &td()).is_ok());
    let cases = [
        (
            "spiffe://evil.org/ns/{namespace}/sa/{name}",
            TemplateError::TrustDomain,
        ),
        ("spiffe://{namespace}/sa/{name}", TemplateError::TrustDomain),
        (
            "spiffe://example.org/ns-{namespace}/sa/{name}",
            TemplateError::Segment { index: 0 },
        ),
        (
            "spiffe://example.org/ns/{pod}/sa/{name}",
            TemplateError::Segment { index: 1 },
        ),
        (
            "spiffe://example.org/{name}/{name}",
            TemplateError::Placeholders,
        ),
        ("spiffe://example.org/static", TemplateError::Placeholders),
        // A name without its namespace: "deployer" in any namespace would be one identity.
        (
            "spiffe://example.org/sa/{name}",
            TemplateError::Placeholders,
        ),
        (
            "spiffe://example.org/ns/{namespace}/{namespace}",
            TemplateError::Placeholders,
        ),
    ];
    for (text, want) in cases {
        assert_eq!(IdTemplate::parse(text, &td()).unwrap_err(), want, "{text}");
    }
    assert!(matches!(
        IdTemplate::parse("spiffe://example.org//{namespace}", &td()),
        Err(TemplateError::Render(_))
    ));
    // A namespace-wide identity (no `{name}`) parses; the configuration accepts it only with
    // `allow_shared_identity = true` (config tests).
    assert!(IdTemplate::parse("spiffe://example.org/ns/{namespace}", &td()).is_ok());
}

#[test]
fn segment_rule() {
    for good in ["a", "team-a", "a.b_c", &"x".repeat(MAX_K8S_NAME_LEN)] {
        assert!(is_valid_segment(good), "{good}");
    }
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "a b",
        "ä",
        "a%2f",
        &"x".repeat(MAX_K8S_NAME_LEN + 1),
    ] {
        assert!(!is_valid_segment(bad), "{bad}");
    }
}

// === template overlap ===

fn template(text: &str) -> IdTemplate {
    let td = SpiffeId::parse(text.replace(['{', '}'], "x").as_str())
        .unwrap()
        .trust_domain()
        .clone();
    IdTemplate::parse(text, &td).unwrap()
}

/// Issue 8 item 5: a second cluster's `.../sa/builder` template turns every one of its accounts
/// into the first cluster's `builder`. The check the configuration runs catches the pair.
#[test]
fn a_fixed_name_template_impersonates_another_clusters_account() {
    let a = template("spiffe://example.org/ns/{namespace}/sa/{name}");
    let b = template("spiffe://example.org/ns/{namespace}/sa/builder");
    assert_eq!(
        a.render("team-a", "builder").unwrap(),
        b.render("team-a", "anything").unwrap()
    );
    assert!(a.overlaps(&b) && b.overlaps(&a));
    assert!(!b.has_name() && a.has_name());
}

#[test]
fn template_overlap_is_segment_wise() {
    let overlapping = [
        (
            "spiffe://example.org/ns/{namespace}/sa/{name}",
            "spiffe://example.org/ns/{namespace}/sa/{name}",
        ),
        (
            "spiffe://example.org/ns/{namespace}/sa/{name}",
            "spiffe://example.org/ns/{namespace}/sa/builder",
        ),
        (
            "spiffe://example.org/ns/{namespace}/sa/{name}",
            "spiffe://example.org/ns/prod/sa/{namespace}",
        ),
        (
            "spiffe://example.org/ns/{namespace}/sa/{name}",
            "spiffe://example.org/{namespace}/sa/{name}/x",
        ),
        (
            "spiffe://example.org/{namespace}/{name}",
            "spiffe://example.org/cluster-b/{namespace}",
        ),
        (
            "spiffe://example.org/{namespace}/{name}",
            "spiffe://example.org/{name}/{namespace}",
        ),
    ];
    for (a, b) in overlapping {
        assert!(template(a).overlaps(&template(b)), "{a} / {b}");
        assert!(template(b).overlaps(&template(a)), "{b} / {a}");
    }
    let disjoint = [
        // Another trust domain never overlaps.
        (
            "spiffe://example.org/ns/{namespace}/sa/{name}",
            "spiffe://cluster-b.example.org/ns/{namespace}/sa/{name}",
        ),
        // Another prefix, or another segment count.
        (
            "spiffe://example.org/ns/{namespace}/sa/{name}",
            "spiffe://example.org/cluster/b/ns/{namespace}/sa/{name}",
        ),
        (
            "spiffe://example.org/ns/{namespace}/sa/{name}",
            "spiffe://example.org/ns/{namespace}",
        ),
        (
            "spiffe://example.org/a/{namespace}/{name}",
            "spiffe://example.org/b/{namespace}/{name}",
        ),
        // Paths are case-sensitive.
        (
            "spiffe://example.org/A/{namespace}",
            "spiffe://example.org/a/{namespace}",
        ),
    ];
    for (a, b) in disjoint {
        assert!(!template(a).overlaps(&template(b)), "{a} / {b}");
        assert!(!template(b).overlaps(&template(a)), "{b} / {a}");
    }
    // A literal longer than any Kubernetes name: no placeholder renders it.
    let long = format!(
        "spiffe://example.org/ns/{{namespace}}/{}",
        "x".repeat(MAX_K8S_NAME_LEN + 1)
    );
    assert!(!template(&long).overlaps(&template("spiffe://example.org/ns/{namespace}/{name}")));
}

/// Every template of up to three segments over a small alphabet, every pair: `overlaps` is
/// false exactly when no renderings coincide. The values tried (the literals, plus one fresh
/// value) suffice as witnesses, because each placeholder occurs once per template.
#[test]
fn template_overlap_agrees_with_rendering_exhaustively() {
    let long = "x".repeat(MAX_K8S_NAME_LEN + 1);
    let parts = ["a", "b", &long, "{namespace}", "{name}"];
    let values = ["a", "b", "c"];
    let mut templates = Vec::new();
    for len in 1..=3u32 {
        for mut n in 0..parts.len().pow(len) {
            let mut path = Vec::new();
            for _ in 0..len {
                path.push(parts[n % parts.len()]);
                n /= parts.len();
            }
            for td in ["example.org", "other.org"] {
                let text = format!("spiffe://{td}/{}", path.join("/"));
                if let Ok(t) = IdTemplate::parse(&text, &TrustDomain::parse(td).unwrap()) {
                    templates.push(t);
                }
            }
        }
    }
    assert!(templates.len() > 50, "{}", templates.len());
    let renderings = |t: &IdTemplate| {
        let mut out = Vec::new();
        for ns in values {
            for name in values {
                out.push(t.render(ns, name).unwrap());
            }
        }
        out
    };
    let mut overlapping_pairs = 0;
    for a in &templates {
        let ra = renderings(a);
        for b in &templates {
            let coincide = renderings(b).iter().any(|id| ra.contains(id));
            assert_eq!(a.overlaps(b), coincide, "{} / {}", a.as_str(), b.as_str());
            overlapping_pairs += usize::from(coincide);
        }
    }
    assert!(overlapping_pairs > templates.len(), "{overlapping_pairs}");
}

// === size and form ===

#[test]
fn token_over_the_size_cap_is_rejected_first() {
    let big = "a".repeat(MAX_SA_TOKEN_LEN + 1);
    assert_eq!(
        err(&big),
        SaTokenError::TooLarge {
            len: MAX_SA_TOKEN_LEN + 1,
            max: MAX_SA_TOKEN_LEN
        }
    );
}

#[test]
fn malformed_tokens() {
    assert_eq!(err("abc"), SaTokenError::Malformed);
    assert_eq!(err("a.b.c.d"), SaTokenError::Malformed);
    assert_eq!(err("e30.!!!.sig"), SaTokenError::Malformed);
    let not_json = format!("e30.{}.sig", URL_SAFE_NO_PAD.encode("[1]"));
    assert_eq!(err(&not_json), SaTokenError::Malformed);
}

// === issuer selection ===

#[test]
fn missing_or_unknown_issuer() {
    assert_eq!(
        err(&sign(&with(good_claims(), &["iss"], None))),
        SaTokenError::MissingIssuer
    );
    assert_eq!(
        err(&sign(&with(
            good_claims(),
            &["iss"],
            Some(json!("https://other"))
        ))),
        SaTokenError::UnknownIssuer
    );
}

#[test]
fn duplicate_iss_is_malformed() {
    let claims = good_claims().to_string();
    let dup = claims.replacen('{', r#"{"iss":"https://other","#, 1);
    let token = es()
        .sign_raw(&json!({"alg":"ES256","kid":es().kid()}).to_string(), &dup)
        .unwrap();
    assert_eq!(err(token.expose_secret()), SaTokenError::Malformed);
}

#[test]
fn issuer_without_keys_is_unavailable() {
    let v = ServiceAccountValidator::new(vec![SaIssuer::new(
        ISS,
        vec![AUD.to_owned()],
        IdTemplate::default_for(&td()),
        Arc::new(IssuerKeys::new(td())),
    )]);
    let token = es().mint(&request()).unwrap();
    let e = v
        .validate(token.expose_secret(), &UNBOUND, now())
        .unwrap_err();
    assert!(e.is_unavailable());
    assert!(!SaTokenError::UnknownIssuer.is_unavailable());
}

// === JWS layer ===

#[test]
fn alg_outside_the_allow_list() {
    for (alg, kind) in [
        ("none", RejectedAlgorithm::None),
        ("HS256", RejectedAlgorithm::Hmac),
    ] {
        let header = json!({"alg": alg, "kid": es().kid()}).to_string();
        let token = es().sign_raw(&header, &good_claims().to_string()).unwrap();
        assert_eq!(
            err(token.expose_secret()),
            SaTokenError::Jws(JwtSvidError::UnsupportedAlgorithm { kind })
        );
    }
}

#[test]
fn alg_bound_to_the_key_type() {
    let header = json!({"alg": "RS256", "kid": es().kid()}).to_string();
    let token = es().sign_raw(&header, &good_claims().to_string()).unwrap();
    assert_eq!(
        err(token.expose_secret()),
        SaTokenError::Jws(JwtSvidError::AlgorithmKeyMismatch {
            alg: svid_broker_identity::jwt::JwsAlgorithm::Rs256
        })
    );
}

#[test]
fn unknown_kid_is_rejected_and_asks_for_a_refresh() {
    let keys = keys_for(es());
    let v = ServiceAccountValidator::new(vec![SaIssuer::new(
        ISS,
        vec![AUD.to_owned()],
        IdTemplate::default_for(&td()),
        keys.clone(),
    )]);
    // No request yet: the notification is not pending.
    assert!(keys.refresh_requested().now_or_never().is_none());
    let token = rs().mint(&request()).unwrap();
    assert_eq!(
        v.validate(token.expose_secret(), &UNBOUND, now())
            .unwrap_err(),
        SaTokenError::Jws(JwtSvidError::UnknownKid)
    );
    assert!(keys.refresh_requested().now_or_never().is_some());
}

#[test]
fn bad_signature() {
    let a = es().mint(&request()).unwrap();
    let b = es().mint(&request().pod("other")).unwrap();
    let (input, _) = a.expose_secret().rsplit_once('.').unwrap();
    let (_, sig) = b.expose_secret().rsplit_once('.').unwrap();
    assert_eq!(
        err(&format!("{input}.{sig}")),
        SaTokenError::Jws(JwtSvidError::InvalidSignature)
    );
}

// === claims ===

#[test]
fn claims_of_the_wrong_type_are_malformed() {
    assert!(matches!(
        err(&sign(&with(good_claims(), &["exp"], Some(json!("soon"))))),
        SaTokenError::MalformedClaims { .. }
    ));
    assert!(matches!(
        err(&sign(&with(
            good_claims(),
            &["kubernetes.io", "namespace"],
            Some(json!(7))
        ))),
        SaTokenError::MalformedClaims { .. }
    ));
}

#[test]
fn exp_is_required_and_enforced_with_leeway() {
    assert_eq!(
        err(&sign(&with(good_claims(), &["exp"], None))),
        SaTokenError::MissingClaim { claim: "exp" }
    );
    let t = |secs: i64| now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 + secs;
    let expired = sign(&with(good_claims(), &["exp"], Some(json!(t(-31)))));
    assert_eq!(
        err(&expired),
        SaTokenError::Expired {
            exp: t(-31),
            now: t(0)
        }
    );
    let in_leeway = sign(&with(good_claims(), &["exp"], Some(json!(t(-29)))));
    assert!(validator().validate(&in_leeway, &UNBOUND, now()).is_ok());
}

#[test]
fn nbf_and_iat_are_honoured() {
    let t = |secs: i64| now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 + secs;
    assert_eq!(
        err(&sign(&with(good_claims(), &["nbf"], Some(json!(t(120)))))),
        SaTokenError::NotYetValid {
            nbf: t(120),
            now: t(0)
        }
    );
    assert_eq!(
        err(&sign(&with(good_claims(), &["iat"], Some(json!(t(120)))))),
        SaTokenError::IssuedInFuture {
            iat: t(120),
            now: t(0)
        }
    );
    let both_absent = with(with(good_claims(), &["nbf"], None), &["iat"], None);
    assert!(
        validator()
            .validate(&sign(&both_absent), &UNBOUND, now())
            .is_ok()
    );
}

#[test]
fn audience_rules() {
    assert_eq!(
        err(&sign(&with(good_claims(), &["aud"], None))),
        SaTokenError::MissingClaim { claim: "aud" }
    );
    assert_eq!(
        err(&sign(&with(
            good_claims(),
            &["aud"],
            Some(json!(["kubernetes"]))
        ))),
        SaTokenError::AudienceMismatch
    );
    assert_eq!(
        err(&sign(&with(good_claims(), &["aud"], Some(json!([]))))),
        SaTokenError::AudienceCount {
            count: 0,
            max: MAX_SA_TOKEN_AUDIENCES
        }
    );
    // A single string, and any-of over several values, are accepted.
    for aud in [json!("other-aud"), json!(["kubernetes", AUD])] {
        let token = sign(&with(good_claims(), &["aud"], Some(aud)));
        assert!(validator().validate(&token, &UNBOUND, now()).is_ok());
    }
}

#[test]
fn kubernetes_claims_are_required() {
    assert_eq!(
        err(&sign(&with(good_claims(), &["kubernetes.io"], None))),
        SaTokenError::MissingClaim {
            claim: CLAIM_NAMESPACE
        }
    );
    assert_eq!(
        err(&sign(&with(
            good_claims(),
            &["kubernetes.io", "namespace"],
            None
        ))),
        SaTokenError::MissingClaim {
            claim: CLAIM_NAMESPACE
        }
    );
    assert_eq!(
        err(&sign(&with(
            good_claims(),
            &["kubernetes.io", "serviceaccount", "name"],
            None
        ))),
        SaTokenError::MissingClaim {
            claim: CLAIM_SA_NAME
        }
    );
}

#[test]
fn names_must_be_spiffe_segments() {
    let claims = with(good_claims(), &["sub"], None);
    assert_eq!(
        err(&sign(&with(
            claims.clone(),
            &["kubernetes.io", "namespace"],
            Some(json!("a/b"))
        ))),
        SaTokenError::InvalidSegment {
            claim: CLAIM_NAMESPACE
        }
    );
    assert_eq!(
        err(&sign(&with(
            claims,
            &["kubernetes.io", "serviceaccount", "name"],
            Some(json!(".."))
        ))),
        SaTokenError::InvalidSegment {
            claim: CLAIM_SA_NAME
        }
    );
}

#[test]
fn sub_must_agree_with_the_kubernetes_claims() {
    let other = sign(&with(
        good_claims(),
        &["sub"],
        Some(json!("system:serviceaccount:team-b:app")),
    ));
    assert_eq!(err(&other), SaTokenError::SubjectMismatch);
    let absent = sign(&with(good_claims(), &["sub"], None));
    assert!(validator().validate(&absent, &UNBOUND, now()).is_ok());
}

#[test]
fn errors_do_not_echo_the_token() {
    let token = es().mint(&request()).unwrap();
    let e = ServiceAccountValidator::new(vec![])
        .validate(token.expose_secret(), &UNBOUND, now())
        .unwrap_err();
    assert_eq!(e, SaTokenError::UnknownIssuer);
    assert!(!format!("{e} {e:?}").contains(token.expose_secret()));
}

// === trusted actors ===

#[test]
fn trusted_actors_exact_and_pattern() {
    let actors = TrustedActors::parse(&[
        "spiffe://example.org/plugin",
        "spiffe://example.org/node/*/plugin",
    ])
    .unwrap();
    let id = |s: &str| SpiffeId::parse(s).unwrap();
    let entry = |s: &str| actors.admits(&id(s)).map(|a| a.entry().to_owned());
    assert_eq!(
        entry("spiffe://example.org/plugin").as_deref(),
        Some("spiffe://example.org/plugin")
    );
    assert_eq!(
        entry("spiffe://example.org/node/n1/plugin").as_deref(),
        Some("spiffe://example.org/node/*/plugin")
    );
    assert_eq!(entry("spiffe://example.org/ns/a/sa/b"), None);
    assert_eq!(entry("spiffe://evil.org/plugin"), None);
    // `*` binds nothing.
    let n1 = id("spiffe://example.org/node/n1/plugin");
    assert_eq!(actors.admits(&n1).unwrap().node(), None);
    assert!(TrustedActors::parse::<&str>(&[]).unwrap().is_empty());
    assert_eq!(
        TrustedActors::parse(&["spiffe://example.org/ok", "not an id"]).unwrap_err(),
        TrustedActorError::Invalid { index: 1 }
    );
    assert!(TrustedActors::parse(&["spiffe://example.org/**/x/{"]).is_err());
}

#[test]
fn trusted_actor_patterns_may_not_end_in_double_star() {
    for (entries, index) in [
        (&["spiffe://example.org/k8s/**"][..], 0),
        (
            &["spiffe://example.org/plugin", "spiffe://example.org/**"][..],
            1,
        ),
        (&["spiffe://example.org/k8s/{node}/**"][..], 0),
    ] {
        assert_eq!(
            TrustedActors::parse(entries).unwrap_err(),
            TrustedActorError::TrailingDoubleStar { index },
            "{entries:?}"
        );
    }
    // `**` anywhere else was never a valid pattern.
    assert_eq!(
        TrustedActors::parse(&["spiffe://example.org/**/plugin"]).unwrap_err(),
        TrustedActorError::Invalid { index: 0 }
    );
    // A literal segment that merely contains stars is no pattern either.
    assert!(TrustedActors::parse(&["spiffe://example.org/k8s/a**"]).is_err());
}

#[test]
fn trusted_actor_patterns_capture_only_the_node() {
    assert_eq!(
        TrustedActors::parse(&["spiffe://example.org/k8s/node/{nodes}/plugin"]).unwrap_err(),
        TrustedActorError::UnknownCapture { index: 0 }
    );
    assert_eq!(
        TrustedActors::parse(&["spiffe://example.org/k8s/{ns}/{node}"]).unwrap_err(),
        TrustedActorError::UnknownCapture { index: 0 }
    );
    let actors =
        TrustedActors::parse(&["spiffe://example.org/k8s/node/{node}/credential-provider"])
            .unwrap();
    let id = SpiffeId::parse("spiffe://example.org/k8s/node/worker-1/credential-provider").unwrap();
    let admission = actors.admits(&id).unwrap();
    assert_eq!(admission.node(), Some("worker-1"));
    assert_eq!(
        admission.entry(),
        "spiffe://example.org/k8s/node/{node}/credential-provider"
    );
}

#[test]
fn a_broader_trusted_actor_does_not_lift_the_node_binding() {
    let id = SpiffeId::parse("spiffe://example.org/k8s/node/worker-1/credential-provider").unwrap();
    for entries in [
        [
            "spiffe://example.org/k8s/node/*/credential-provider",
            "spiffe://example.org/k8s/node/{node}/credential-provider",
        ],
        [
            "spiffe://example.org/k8s/node/worker-1/credential-provider",
            "spiffe://example.org/k8s/node/{node}/credential-provider",
        ],
    ] {
        let actors = TrustedActors::parse(&entries).unwrap();
        assert_eq!(
            actors.admits(&id).unwrap().node(),
            Some("worker-1"),
            "{entries:?}"
        );
    }
}

// === node binding ===

fn node_bound_validate(
    actor_node: &str,
    request: &SaTokenRequest,
) -> Result<ServiceAccountIdentity, SaTokenError> {
    let actors =
        TrustedActors::parse(&["spiffe://example.org/k8s/node/{node}/credential-provider"])
            .unwrap();
    let actor = SpiffeId::parse(&format!(
        "spiffe://example.org/k8s/node/{actor_node}/credential-provider"
    ))
    .unwrap();
    let admission = actors.admits(&actor).unwrap();
    let token = es().mint(request).unwrap();
    validator().validate(token.expose_secret(), &admission, now())
}

#[test]
fn a_node_bound_actor_speaks_only_for_pods_of_its_node() {
    let on_n1 = request().node("n1");
    let id = node_bound_validate("n1", &on_n1).unwrap();
    assert_eq!(
        id.spiffe_id.as_str(),
        "spiffe://example.org/ns/team-a/sa/app"
    );
    assert_eq!(id.node_name.as_deref(), Some("n1"));
    assert_eq!(
        node_bound_validate("n2", &on_n1).unwrap_err(),
        SaTokenError::NodeMismatch
    );
    // Not a prefix or case-insensitive comparison.
    assert_eq!(
        node_bound_validate("n1", &request().node("n10")).unwrap_err(),
        SaTokenError::NodeMismatch
    );
    assert_eq!(
        node_bound_validate("n1", &request().node("N1")).unwrap_err(),
        SaTokenError::NodeMismatch
    );
}

#[test]
fn a_node_bound_actor_needs_the_node_claim() {
    assert_eq!(
        node_bound_validate("n1", &request()).unwrap_err(),
        SaTokenError::MissingClaim {
            claim: CLAIM_NODE_NAME
        }
    );
    // `kubernetes.io.node` present but without a name, or a name of the wrong type.
    let no_name = with(
        good_claims(),
        &["kubernetes.io", "node"],
        Some(json!({"uid": "u"})),
    );
    let wrong_type = with(
        good_claims(),
        &["kubernetes.io", "node"],
        Some(json!({"name": 7})),
    );
    let actors =
        TrustedActors::parse(&["spiffe://example.org/k8s/node/{node}/credential-provider"])
            .unwrap();
    let actor = SpiffeId::parse("spiffe://example.org/k8s/node/n1/credential-provider").unwrap();
    let admission = actors.admits(&actor).unwrap();
    assert_eq!(
        validator()
            .validate(&sign(&no_name), &admission, now())
            .unwrap_err(),
        SaTokenError::MissingClaim {
            claim: CLAIM_NODE_NAME
        }
    );
    assert!(matches!(
        validator().validate(&sign(&wrong_type), &admission, now()),
        Err(SaTokenError::MalformedClaims { .. })
    ));
}

#[test]
fn without_a_node_capture_the_node_claim_is_not_required() {
    let id = validator()
        .validate(
            es().mint(&request()).unwrap().expose_secret(),
            &UNBOUND,
            now(),
        )
        .unwrap();
    assert_eq!(id.node_name, None);
    let on_n2 = es().mint(&request().node("n2")).unwrap();
    let id = validator()
        .validate(on_n2.expose_secret(), &UNBOUND, now())
        .unwrap();
    assert_eq!(id.node_name.as_deref(), Some("n2"));
}

// === key loading ===

#[test]
fn key_install_keeps_the_last_good_set() {
    let keys = IssuerKeys::new(td());
    assert!(keys.current().is_none());
    assert_eq!(keys.install_jwks(es().jwks_json().as_bytes()).unwrap(), 1);
    assert!(keys.install_jwks(b"not json").is_err());
    assert!(matches!(
        keys.install_jwks(br#"{"keys":[]}"#),
        Err(keys::KeyLoadError::NoKeys)
    ));
    assert!(keys.current().unwrap().find(es().kid()).is_some());
}

#[test]
fn exp_beyond_year_9999_is_out_of_range() {
    let far = sign(&with(good_claims(), &["exp"], Some(json!(i64::MAX))));
    assert_eq!(err(&far), SaTokenError::ExpOutOfRange);
    let last = sign(&with(
        good_claims(),
        &["exp"],
        Some(json!(MAX_NUMERIC_DATE)),
    ));
    assert!(validator().validate(&last, &UNBOUND, now()).is_ok());
}

#[test]
fn missing_keys_ask_for_a_refresh() {
    let keys = Arc::new(IssuerKeys::new(td()));
    let v = ServiceAccountValidator::new(vec![SaIssuer::new(
        ISS,
        vec![AUD.to_owned()],
        IdTemplate::default_for(&td()),
        keys.clone(),
    )]);
    assert!(keys.refresh_requested().now_or_never().is_none());
    let token = es().mint(&request()).unwrap();
    assert!(
        v.validate(token.expose_secret(), &UNBOUND, now())
            .unwrap_err()
            .is_unavailable()
    );
    assert!(keys.refresh_requested().now_or_never().is_some());
}
