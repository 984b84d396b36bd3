use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::body::Body;
use http::Request as HttpRequest;
use http_body_util::BodyExt as _;
use svid_broker_dev::satoken::{DevSaAlgorithm, DevServiceAccountIssuer, SaTokenRequest};
use svid_broker_identity::TrustDomain;
use svid_broker_identity::clock::FixedClock;
use svid_broker_identity::secret::ExposeSecret as _;
use tower::ServiceExt as _;

use super::*;
use crate::realm::MAX_FIELDS;
use crate::realm::router;
use crate::satoken::{
    IdTemplate, IssuerKeys, SaIssuer, ServiceAccountMode, ServiceAccountValidator, TrustedActors,
};
use crate::testutil::{AUDIENCE, BUILDER, Fixture, POLICY, READER, STRANGER, claims, t0};

const URL: &str = "http://127.0.0.1:9999";
const PLUGIN: &str = "spiffe://example.org/k8s/node/n1/credential-provider";
const MAPPED: &str = "spiffe://example.org/ns/blue/sa/app";
const SA_ISS: &str = "https://k8s.test";
const SA_AUD: &str = "svid-broker-sa";

fn app(f: &Fixture) -> Router {
    router(RealmState::new(
        f.broker.clone(),
        Arc::new(FixedClock(t0())),
        URL,
        Arc::new(AtomicBool::new(true)),
    ))
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// An RFC 6749 §5.2 error of `status` with `code`; its description is returned.
    fn error(&self, status: StatusCode, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        let v = self.json();
        assert_eq!(v["error"], code, "{}", self.body);
        assert_eq!(self.headers[CACHE_CONTROL], "no-store");
        let description = v["error_description"].as_str().unwrap().to_owned();
        assert!(
            description
                .chars()
                .all(|c| matches!(c, ' '..='!' | '#'..='[' | ']'..='~')),
            "{description:?}"
        );
        description
    }
}

async fn send(app: Router, req: HttpRequest<Body>) -> Reply {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn post_as(app: Router, content_type: &str, body: String) -> Reply {
    let req = HttpRequest::post(TOKEN_PATH)
        .header(CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    send(app, req).await
}

async fn post(app: Router, form: &[(&str, &str)]) -> Reply {
    post_as(app, FORM, encode(form)).await
}

fn encode(form: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
}

/// A token-exchange form for `subject_token`, `service` and `scope`, plus `extra`.
fn exchange<'a>(
    subject_token: &'a str,
    service: &'a str,
    scope: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", GRANT_TYPE_TOKEN_EXCHANGE),
        ("subject_token", subject_token),
        ("subject_token_type", TOKEN_TYPE_JWT),
        ("audience", service),
        ("scope", scope),
    ];
    form.extend_from_slice(extra);
    form
}

#[tokio::test]
async fn an_allowed_jwt_svid_gets_a_registry_access_token() {
    let f = Fixture::new();
    let jwt = f.jwt(BUILDER, AUDIENCE);
    let form = exchange(
        &jwt,
        "registry.local",
        "repository:team/app:pull,push",
        &[
            ("scope", "repository:team/base:pull"),
            ("requested_token_type", TOKEN_TYPE_ACCESS_TOKEN),
        ],
    );
    let r = post(app(&f), &form).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers[CACHE_CONTROL], "no-store");
    assert!(
        r.headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let v = r.json();
    assert_eq!(v["issued_token_type"], TOKEN_TYPE_ACCESS_TOKEN);
    assert_eq!(v["token_type"], "Bearer");
    let expires_in = v["expires_in"].as_u64().unwrap();
    assert!((60..=3600).contains(&expires_in), "{expires_in}");
    assert_eq!(
        v["scope"],
        "repository:team/app:pull,push repository:team/base:pull"
    );
    let c = claims(v["access_token"].as_str().unwrap());
    assert_eq!(c["aud"], "registry.local");
    assert_eq!(c["sub"], BUILDER);
    assert_eq!(c["access"].as_array().unwrap().len(), 2);
    // One audit event, for this endpoint, without the presented token or the issued one.
    let events = f.audit_lines();
    assert_eq!(events.len(), 1, "{events:?}");
    let ev = &events[0];
    assert_eq!(ev["decision"], "allow");
    assert_eq!(ev["endpoint"], "oauth2_token");
    assert_eq!(ev["subject"], BUILDER);
    let audit = f.audit.lock().unwrap().join("\n");
    assert!(!audit.contains(&jwt));
    assert!(!audit.contains(v["access_token"].as_str().unwrap()));
    let metrics = f.broker.metrics().render();
    assert!(
        metrics.contains(
            "svid_broker_issued_total{endpoint=\"oauth2_token\",kind=\"access_token\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("svid_broker_request_duration_seconds_count{route=\"oauth2_token\"} 1")
    );
}

#[tokio::test]
async fn resource_names_the_service_too_and_a_partial_grant_narrows_scope() {
    let f = Fixture::new();
    let jwt = f.jwt(READER, AUDIENCE);
    let form = [
        ("grant_type", GRANT_TYPE_TOKEN_EXCHANGE),
        ("subject_token", jwt.as_str()),
        ("subject_token_type", TOKEN_TYPE_JWT),
        ("resource", "registry.local"),
        ("audience", "registry.local"),
        ("scope", "repository:team/app:pull,push registry:catalog:*"),
        // Empty parameters count as absent (RFC 6749 §3.2); unknown ones are ignored.
        ("actor_token", ""),
        ("client_id", "authlib"),
        ("x-unknown", "1"),
    ];
    let r = post(app(&f), &form).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["scope"], "repository:team/app:pull");
}

#[tokio::test]
async fn the_content_type_may_carry_a_charset() {
    let f = Fixture::new();
    let jwt = f.jwt(READER, AUDIENCE);
    let body = encode(&exchange(
        &jwt,
        "registry.local",
        "repository:team/app:pull",
        &[],
    ));
    let r = post_as(
        app(&f),
        "Application/X-WWW-Form-URLEncoded; charset=UTF-8",
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn other_grant_types_are_unsupported() {
    let f = Fixture::new();
    let jwt = f.jwt(BUILDER, AUDIENCE);
    let mut form = exchange(&jwt, "registry.local", "repository:team/app:pull", &[]);
    form[0] = ("grant_type", "password");
    post(app(&f), &form)
        .await
        .error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    form.remove(0);
    post(app(&f), &form)
        .await
        .error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
}

#[tokio::test]
async fn malformed_requests_are_invalid_request_naming_the_parameter() {
    let f = Fixture::new();
    let jwt = f.jwt(BUILDER, AUDIENCE);
    let ok = exchange(&jwt, "registry.local", "repository:team/app:pull", &[]);
    let without = |name: &str| -> Vec<(&str, &str)> {
        ok.iter().copied().filter(|(k, _)| *k != name).collect()
    };
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        let mut form = ok.clone();
        form.extend_from_slice(extra);
        form
    };
    let replaced = |name: &'static str, value: &'static str| -> Vec<(&str, &str)> {
        ok.iter()
            .map(|&(k, v)| if k == name { (k, value) } else { (k, v) })
            .collect()
    };
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (without("subject_token"), "subject_token is required"),
        (
            without("subject_token_type"),
            "subject_token_type is required",
        ),
        (
            replaced(
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            "subject_token_type must be",
        ),
        (without("audience"), "missing service"),
        (
            with(&[("requested_token_type", TOKEN_TYPE_JWT)]),
            "requested_token_type must be",
        ),
        (
            with(&[("subject_token_type", TOKEN_TYPE_JWT)]),
            "subject_token_type may appear at most once",
        ),
        (
            with(&[("grant_type", GRANT_TYPE_TOKEN_EXCHANGE)]),
            "grant_type may appear at most once",
        ),
        (
            with(&[("actor_token_type", TOKEN_TYPE_JWT)]),
            "actor_token_type was sent without actor_token",
        ),
        (
            with(&[("actor_token", "x.y.z")]),
            "actor_token_type is required",
        ),
        (
            with(&[
                ("actor_token", "x.y.z"),
                ("actor_token_type", "urn:ietf:params:oauth:token-type:saml2"),
            ]),
            "actor_token_type must be",
        ),
    ];
    for (form, expect) in cases {
        let description = post(app(&f), &form)
            .await
            .error(StatusCode::BAD_REQUEST, "invalid_request");
        assert!(description.contains(expect), "{description} / {expect}");
        assert!(!description.contains(&jwt));
    }
    // RFC 6749 §3.3: an absent scope is `invalid_scope`, not `invalid_request`.
    let description = post(app(&f), &without("scope"))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_scope");
    assert!(description.contains("scope is required"), "{description}");
    let fields: Vec<(&str, &str)> = (0..=MAX_FIELDS).map(|_| ("x", "1")).collect();
    let description = post(app(&f), &fields)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(description.contains("too many fields"), "{description}");
}

#[tokio::test]
async fn a_rejected_jwt_svid_is_invalid_request_and_never_echoed() {
    let f = Fixture::new();
    let other_td = crate::testutil::id("spiffe://elsewhere.test/ns/ci/sa/builder");
    let foreign = svid_broker_dev::DevTrustDomain::new(
        TrustDomain::parse("elsewhere.test").unwrap(),
        [other_td.clone()],
    )
    .unwrap()
    .issue_jwt_svid(&other_td, &[AUDIENCE])
    .unwrap()
    .token()
    .expose_secret()
    .to_owned();
    let wrong_audience = f.jwt(BUILDER, "someone-else");
    let mut tampered = f.jwt(BUILDER, AUDIENCE);
    tampered.push('A');
    for token in [
        wrong_audience.as_str(),
        foreign.as_str(),
        tampered.as_str(),
        "not-a-jwt",
    ] {
        let form = exchange(token, "registry.local", "repository:team/app:pull", &[]);
        let r = post(app(&f), &form).await;
        let description = r.error(StatusCode::BAD_REQUEST, "invalid_request");
        assert!(description.contains("jwt-svid rejected"), "{description}");
        assert!(!r.body.contains(token));
    }
    let audit = f.audit.lock().unwrap().join("\n");
    for token in [&wrong_audience, &foreign, &tampered] {
        assert!(!audit.contains(token.as_str()));
    }
    assert!(audit.contains("oauth2_token"), "{audit}");
}

#[tokio::test]
async fn unknown_and_ambiguous_targets() {
    let f = Fixture::new();
    let jwt = f.jwt(BUILDER, AUDIENCE);
    let form = exchange(&jwt, "registry.nope", "repository:team/app:pull", &[]);
    post(app(&f), &form)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_target");
    let form = exchange(
        &jwt,
        "registry.local",
        "repository:team/app:pull",
        &[("resource", "registry.other")],
    );
    let description = post(app(&f), &form)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        description.contains("more than one service"),
        "{description}"
    );
}

#[tokio::test]
async fn scopes_that_do_not_parse_or_are_not_granted_are_invalid_scope() {
    let f = Fixture::new();
    let jwt = f.jwt(BUILDER, AUDIENCE);
    let form = exchange(&jwt, "registry.local", "no-colons", &[]);
    post(app(&f), &form)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_scope");
    let stranger = f.jwt(STRANGER, AUDIENCE);
    let form = exchange(&stranger, "registry.local", "repository:team/app:pull", &[]);
    let description = post(app(&f), &form)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_scope");
    assert!(description.contains("no requested scope"), "{description}");
    // The refusal after authentication is audited once, for this endpoint.
    let events = f.audit_lines();
    let denied: Vec<_> = events.iter().filter(|e| e["subject"] == STRANGER).collect();
    assert_eq!(denied.len(), 1, "{events:?}");
    assert_eq!(denied[0]["decision"], "deny");
    assert_eq!(denied[0]["endpoint"], "oauth2_token");
}

#[tokio::test]
async fn a_harbor_registry_is_refused_as_invalid_target() {
    let policy = format!(
        r#"{POLICY}
[[registries]]
name = "corp"
service = "harbor-registry"
kind = "harbor"
url = "http://127.0.0.1:1"
credential_file = "/nonexistent/harbor.credential"
token_ttl_seconds = 600
hosts = ["harbor.example.org"]
"#
    );
    let f = Fixture::with_policy(&policy, |_| {});
    let jwt = f.jwt(BUILDER, AUDIENCE);
    let form = exchange(&jwt, "harbor-registry", "repository:team-b/app:pull", &[]);
    let description = post(app(&f), &form)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_target");
    // The registry's name is quoted in the engine's reason; `"` is not allowed here.
    assert!(description.contains("'corp'"), "{description}");
}

#[tokio::test]
async fn a_wrong_content_type_is_refused_before_the_body_is_read() {
    let f = Fixture::new();
    let jwt = f.jwt(BUILDER, AUDIENCE);
    let body = encode(&exchange(
        &jwt,
        "registry.local",
        "repository:team/app:pull",
        &[],
    ));
    for content_type in ["application/json", "text/plain", "multipart/form-data"] {
        let description = post_as(app(&f), content_type, body.clone())
            .await
            .error(StatusCode::BAD_REQUEST, "invalid_request");
        assert!(description.contains("content type"), "{description}");
    }
    let req = HttpRequest::post(TOKEN_PATH)
        .body(Body::from(body))
        .unwrap();
    send(app(&f), req)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(f.audit_lines().iter().all(|e| e["decision"] != "allow"));
}

#[tokio::test]
async fn a_body_over_the_cap_is_413() {
    let f = Fixture::new();
    let body = format!("grant_type=x&pad={}", "a".repeat(MAX_BODY_BYTES));
    let description = post_as(app(&f), FORM, body)
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request");
    assert!(description.contains("body too large"), "{description}");
}

#[tokio::test]
async fn get_is_not_served() {
    let f = Fixture::new();
    let req = HttpRequest::get(TOKEN_PATH).body(Body::empty()).unwrap();
    let r = send(app(&f), req).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

/// A broker whose service-account mode trusts the node plugins, with a rule for the pod's
/// mapped identity, and the issuer that mints the pod's token.
fn delegation_fixture(on: bool) -> (Fixture, DevServiceAccountIssuer) {
    let sa = DevServiceAccountIssuer::new(SA_ISS, DevSaAlgorithm::Es256).unwrap();
    let policy = format!(
        r#"{POLICY}
[[rules]]
id = "blue-app"
subject = "{MAPPED}"
registry = "local"
repositories = ["team-blue/*"]
actions = ["pull"]
"#
    );
    let jwks = sa.jwks_json();
    let f = Fixture::with_policy(&policy, |options| {
        if !on {
            return;
        }
        let example = TrustDomain::parse("example.org").unwrap();
        let keys = Arc::new(IssuerKeys::new(example.clone()));
        keys.install_jwks(jwks.as_bytes()).unwrap();
        options.service_accounts = Some(ServiceAccountMode {
            trusted_actors: TrustedActors::parse(&[
                "spiffe://example.org/k8s/node/*/credential-provider",
            ])
            .unwrap(),
            validator: ServiceAccountValidator::new(vec![SaIssuer::new(
                SA_ISS,
                vec![SA_AUD.to_owned()],
                IdTemplate::default_for(&example),
                keys,
            )]),
        });
    });
    (f, sa)
}

fn pod_token(sa: &DevServiceAccountIssuer) -> String {
    sa.mint(&SaTokenRequest::new("blue", "app", SA_AUD).pod("app-7d9f"))
        .unwrap()
        .expose_secret()
        .to_owned()
}

#[tokio::test]
async fn a_trusted_actor_exchanges_a_service_account_token_for_its_pod() {
    let (f, sa) = delegation_fixture(true);
    let actor = f.jwt(PLUGIN, AUDIENCE);
    let pod = pod_token(&sa);
    let form = exchange(
        &pod,
        "registry.local",
        "repository:team-blue/app:pull",
        &[
            ("actor_token", &actor),
            ("actor_token_type", TOKEN_TYPE_JWT),
        ],
    );
    let r = post(app(&f), &form).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(claims(v["access_token"].as_str().unwrap())["sub"], MAPPED);
    let events = f.audit_lines();
    let ev = events.last().unwrap();
    assert_eq!(ev["subject"], MAPPED);
    assert_eq!(ev["actor"], PLUGIN);
    assert_eq!(ev["endpoint"], "oauth2_token");
    let audit = f.audit.lock().unwrap().join("\n");
    assert!(!audit.contains(&pod) && !audit.contains(&actor));

    // An actor that is not trusted to vouch: its token is unacceptable by policy.
    let untrusted = f.jwt(BUILDER, AUDIENCE);
    let form = exchange(
        &pod,
        "registry.local",
        "repository:team-blue/app:pull",
        &[
            ("actor_token", &untrusted),
            ("actor_token_type", TOKEN_TYPE_JWT),
        ],
    );
    let description = post(app(&f), &form)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(description.contains("trusted_actors"), "{description}");
}

#[tokio::test]
async fn without_service_account_mode_an_actor_token_is_refused_clearly() {
    let (f, sa) = delegation_fixture(false);
    let actor = f.jwt(PLUGIN, AUDIENCE);
    let pod = pod_token(&sa);
    let form = exchange(
        &pod,
        "registry.local",
        "repository:team-blue/app:pull",
        &[
            ("actor_token", &actor),
            ("actor_token_type", TOKEN_TYPE_JWT),
        ],
    );
    let r = post(app(&f), &form).await;
    let description = r.error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        description.contains("service-account token mode is not enabled"),
        "{description}"
    );
    assert!(!r.body.contains(&pod));
}

#[test]
fn error_codes_cover_each_engine_class() {
    use std::time::Duration;
    let rate = ExchangeError::ResourceExhausted {
        subject: crate::testutil::id(BUILDER),
        retry_after: Duration::from_millis(1500),
    };
    assert_eq!(
        oauth2_error(&rate),
        ("temporarily_unavailable", StatusCode::TOO_MANY_REQUESTS)
    );
    let resp = error_response(&rate);
    assert_eq!(resp.headers()[RETRY_AFTER], "2");
    assert_eq!(
        oauth2_error(&InvalidRequest::UnsupportedGrantType.into()).0,
        "unsupported_grant_type"
    );
    assert_eq!(
        oauth2_error(&ExchangeError::unknown_service("x")).0,
        "invalid_target"
    );
    assert_eq!(description("a \"b\" \\ é\n"), "a 'b' ' ??");
}

#[test]
fn a_resource_uri_names_its_authority() {
    assert_eq!(
        resource_service("https://registry.local/v2/"),
        "registry.local"
    );
    assert_eq!(
        resource_service("https://registry.local:5000?x#y"),
        "registry.local:5000"
    );
    assert_eq!(resource_service("registry.local"), "registry.local");
}
