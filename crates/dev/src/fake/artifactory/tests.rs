//! The fake's rules, each driven over real HTTP with a hyper client and JWTs signed here by a
//! test issuer whose discovery document and JWKS a [`DocumentHost`] serves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;
use serde_json::{Map, Value, json};

use super::{FakeArtifactory, Fault, OIDC_TOKEN_PATH, TokenSpec};
use crate::fake::federation::DocumentHost;
use crate::fake::testing::{Call, Listening, Resp, rsa_jwk, sign_rs256, test_rsa_key};

const PROVIDER: &str = "svid-broker";
const AUDIENCE: &str = "jfrog-audience";
const SUBJECT: &str = "spiffe://example.org/ns/team-a/sa/app";

impl Listening for FakeArtifactory {
    fn addr(&self) -> SocketAddr {
        FakeArtifactory::addr(self)
    }
}

/// A test OIDC issuer at a document host.
struct Issuer {
    host: DocumentHost,
    url: String,
}

impl Issuer {
    /// Publishes discovery and a JWKS holding key 0 as `k0`.
    fn start() -> Self {
        let host = DocumentHost::start().unwrap();
        let url = format!("{}/issuer", host.url());
        let issuer = Self { host, url };
        issuer.host.set(
            "/issuer/.well-known/openid-configuration",
            "application/json",
            json!({ "issuer": issuer.url, "jwks_uri": format!("{}/jwks.json", issuer.url) })
                .to_string(),
        );
        issuer.publish(&[0]);
        issuer
    }

    /// Publishes the keys of these indexes as `k<index>`.
    fn publish(&self, indexes: &[usize]) {
        let keys: Vec<Value> = indexes
            .iter()
            .map(|&i| rsa_jwk(&format!("k{i}"), test_rsa_key(i)))
            .collect();
        self.host.set(
            "/issuer/jwks.json",
            "application/json",
            json!({ "keys": keys }).to_string(),
        );
    }

    /// A token from this issuer signed by key `index` as `k<index>`, with `extra` claims over
    /// the defaults (a `null` removes one).
    fn token(&self, index: usize, extra: &Value) -> String {
        let now = unix_now();
        let mut claims = json!({
            "iss": self.url, "sub": SUBJECT, "aud": AUDIENCE,
            "iat": now, "nbf": now, "exp": now + 300, "jti": "j1",
            "svid_broker_access": "pull",
        });
        for (name, value) in extra.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        sign(index, &format!("k{index}"), &claims)
    }
}

/// A token signed by shared key `index` under `kid`.
fn sign(index: usize, kid: &str, claims: &Value) -> String {
    sign_rs256(kid, test_rsa_key(index), claims)
}

fn unix_now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn claims(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect()
}

/// A fake trusting `issuer` with the audience, a pull mapping (priority 1) and a push mapping.
fn artifactory(issuer: &Issuer) -> FakeArtifactory {
    let fake = FakeArtifactory::start().unwrap();
    fake.add_provider(PROVIDER, &issuer.url, Some(AUDIENCE.to_owned()));
    fake.add_identity_mapping(
        PROVIDER,
        "pull",
        1,
        claims(&[("svid_broker_access", "pull")]),
        TokenSpec::new("svid-puller", "applied-permissions/groups:readers", 600),
    )
    .unwrap();
    fake.add_identity_mapping(
        PROVIDER,
        "push",
        2,
        claims(&[("svid_broker_access", "push")]),
        TokenSpec::new("svid-pusher", "applied-permissions/groups:deployers", 600),
    )
    .unwrap();
    fake
}

fn exchange_body(token: &str) -> Value {
    json!({
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "subject_token": token,
        "provider_name": PROVIDER,
        "provider_type": "Generic OpenID Connect",
        "audience": AUDIENCE,
    })
}

async fn post(fake: &FakeArtifactory, body: &Value) -> Resp {
    Call::new(Method::POST, OIDC_TOKEN_PATH)
        .json(body)
        .send(fake)
        .await
}

/// Asserts a refusal with Access's error body; returns its message.
fn refused(resp: &Resp, status: u16, code: &str) -> String {
    assert_eq!(resp.status, status, "{}", resp.body);
    let body = resp.json();
    assert_eq!(body["errors"][0]["code"], code, "{}", resp.body);
    body["errors"][0]["message"].as_str().unwrap().to_owned()
}

async fn login(fake: &FakeArtifactory, path: &str, user: &str, token: &str) -> Resp {
    Call::get(path).auth(user, token).send(fake).await
}

#[tokio::test]
async fn an_exchanged_token_logs_in_until_it_expires() {
    let issuer = Issuer::start();
    let fake = artifactory(&issuer);
    let resp = post(&fake, &exchange_body(&issuer.token(0, &json!({})))).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let answer = resp.json();
    assert_eq!(answer["username"], "svid-puller");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 600);
    assert_eq!(answer["scope"], "applied-permissions/groups:readers");
    assert_eq!(
        answer["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    let token = answer["access_token"].as_str().unwrap().to_owned();
    assert!(token.len() > 32);
    assert_eq!((fake.exchanges(), fake.refusals()), (1, 0));
    let info = fake.tokens();
    assert_eq!(info.len(), 1);
    assert_eq!(
        (info[0].mapping.as_str(), info[0].subject.as_str()),
        ("pull", SUBJECT)
    );

    for path in ["/v2/", "/artifactory/api/docker/docker-local/v2/"] {
        let ok = login(&fake, path, "svid-puller", &token).await;
        assert_eq!(ok.status, 200, "{path}");
        assert_eq!(
            ok.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
    }
    assert!(fake.authenticate("svid-puller", &token));
    // Another username with the token, or no credential: refused with the realm.
    for resp in [
        login(&fake, "/v2/", "svid-pusher", &token).await,
        Call::get("/v2/").send(&fake).await,
    ] {
        assert_eq!(resp.status, 401);
        assert_eq!(
            resp.header("www-authenticate"),
            Some("Basic realm=\"Artifactory Realm\"")
        );
        assert_eq!(resp.json()["errors"][0]["message"], "Bad credentials");
    }

    fake.advance_clock(Duration::from_secs(601));
    assert_eq!(
        login(&fake, "/v2/", "svid-puller", &token).await.status,
        401
    );
    assert!(!fake.authenticate("svid-puller", &token));
}

#[tokio::test]
async fn mappings_are_tried_by_priority_and_may_be_named() {
    let issuer = Issuer::start();
    let fake = artifactory(&issuer);
    // A catch-all for this subject at a higher priority than the pull mapping.
    fake.add_identity_mapping(
        PROVIDER,
        "app",
        0,
        claims(&[("sub", SUBJECT)]),
        TokenSpec::new("app-user", "applied-permissions/user", 60),
    )
    .unwrap();
    let resp = post(&fake, &exchange_body(&issuer.token(0, &json!({})))).await;
    assert_eq!(resp.json()["username"], "app-user");
    let push = issuer.token(
        0,
        &json!({ "svid_broker_access": "push", "sub": "spiffe://x/y" }),
    );
    let resp = post(&fake, &exchange_body(&push)).await;
    assert_eq!(resp.json()["username"], "svid-pusher");
    // A named mapping must still match.
    let mut body = exchange_body(&issuer.token(0, &json!({})));
    body["identity_mapping_name"] = json!("pull");
    assert_eq!(post(&fake, &body).await.json()["username"], "svid-puller");
    body["identity_mapping_name"] = json!("push");
    refused(&post(&fake, &body).await, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn malformed_requests_are_refused_naming_the_field() {
    let issuer = Issuer::start();
    let fake = artifactory(&issuer);
    let token = issuer.token(0, &json!({}));
    let cases: Vec<(&str, Value, &str)> = vec![
        ("grant_type", json!("client_credentials"), "grant_type"),
        (
            "subject_token_type",
            json!("urn:ietf:params:oauth:token-type:jwt"),
            "subject_token_type",
        ),
        ("subject_token", json!(""), "subject_token"),
        ("subject_token", Value::Null, "subject_token"),
        ("provider_name", json!(7), "provider_name"),
        ("provider_type", json!(["x"]), "provider_type"),
        (
            "include_reference_token",
            json!("yes"),
            "include_reference_token",
        ),
    ];
    for (field, value, named) in cases {
        let mut body = exchange_body(&token);
        body[field] = value;
        let message = refused(&post(&fake, &body).await, 400, "BAD_REQUEST");
        assert!(message.contains(named), "{field}: {message}");
    }
    refused(&post(&fake, &json!(["x"])).await, 400, "BAD_REQUEST");
    let not_json = Call::new(Method::POST, OIDC_TOKEN_PATH)
        .body("application/json", b"{".to_vec())
        .send(&fake)
        .await;
    refused(&not_json, 400, "BAD_REQUEST");
    let huge = Call::new(Method::POST, OIDC_TOKEN_PATH)
        .body("application/json", vec![b' '; super::MAX_BODY_BYTES + 1])
        .send(&fake)
        .await;
    assert_eq!(huge.status, 413);
    let get = Call::get(OIDC_TOKEN_PATH).send(&fake).await;
    assert_eq!(get.status, 405);
    // Ten refusals by the rules (the wrong method is not an exchange).
    assert_eq!(fake.exchanges(), 0);
    assert_eq!(fake.refusals(), 10);
}

#[tokio::test]
async fn tokens_that_fail_verification_or_the_integration_are_refused() {
    let issuer = Issuer::start();
    let other = Issuer::start();
    let fake = artifactory(&issuer);
    let now = unix_now();

    let mut unknown = exchange_body(&issuer.token(0, &json!({})));
    unknown["provider_name"] = json!("github");
    let message = refused(&post(&fake, &unknown).await, 400, "BAD_REQUEST");
    assert!(message.contains("'github' was not found"), "{message}");

    let cases: Vec<(String, &str)> = vec![
        (other.token(0, &json!({})), "is not trusted"),
        (
            issuer.token(0, &json!({ "aud": "someone-else" })),
            "Invalid audience",
        ),
        (
            issuer.token(
                0,
                &json!({ "iat": now - 600, "nbf": now - 600, "exp": now - 1 }),
            ),
            "expired",
        ),
        (issuer.token(1, &json!({})), "kid"),
        (
            // Key 1's signature under key 0's kid.
            sign(
                1,
                "k0",
                &json!({
                    "iss": issuer.url, "sub": SUBJECT, "aud": AUDIENCE,
                    "iat": now, "nbf": now, "exp": now + 300,
                }),
            ),
            "signature",
        ),
        ("not.a.jwt".to_owned(), "malformed"),
    ];
    for (token, says) in cases {
        let message = refused(
            &post(&fake, &exchange_body(&token)).await,
            400,
            "BAD_REQUEST",
        );
        assert!(message.contains(says), "{says}: {message}");
    }

    let unmapped = issuer.token(0, &json!({ "svid_broker_access": "delete" }));
    let message = refused(
        &post(&fake, &exchange_body(&unmapped)).await,
        401,
        "UNAUTHORIZED",
    );
    assert!(message.contains("no identity mapping"), "{message}");
    // Exact match: no case folding, no type coercion.
    for value in [json!("PULL"), json!(["pull"]), Value::Null] {
        let token = issuer.token(0, &json!({ "svid_broker_access": value }));
        refused(
            &post(&fake, &exchange_body(&token)).await,
            401,
            "UNAUTHORIZED",
        );
    }
    assert_eq!(fake.exchanges(), 0);
    assert_eq!(fake.refusals(), 11);
    assert!(fake.tokens().is_empty());

    // Without an audience on the integration, any aud passes.
    fake.add_provider(PROVIDER, &issuer.url, None);
    let resp = post(
        &fake,
        &exchange_body(&issuer.token(0, &json!({ "aud": "someone-else" }))),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
}

#[tokio::test]
async fn an_expired_jwt_on_the_fakes_clock_is_refused() {
    let issuer = Issuer::start();
    let fake = artifactory(&issuer);
    let token = issuer.token(0, &json!({}));
    fake.advance_clock(Duration::from_secs(301));
    let message = refused(
        &post(&fake, &exchange_body(&token)).await,
        400,
        "BAD_REQUEST",
    );
    assert!(message.contains("expired"), "{message}");
}

#[tokio::test]
async fn a_rotated_key_is_found_by_refetching_the_jwks() {
    let issuer = Issuer::start();
    let fake = artifactory(&issuer);
    assert_eq!(
        post(&fake, &exchange_body(&issuer.token(0, &json!({}))))
            .await
            .status,
        200
    );
    assert_eq!((fake.discovery_fetches(), fake.jwks_fetches()), (1, 1));
    // Cached: no fetch for a known kid.
    assert_eq!(
        post(&fake, &exchange_body(&issuer.token(0, &json!({}))))
            .await
            .status,
        200
    );
    assert_eq!(fake.jwks_fetches(), 1);
    issuer.publish(&[1, 0]);
    let resp = post(&fake, &exchange_body(&issuer.token(1, &json!({})))).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(fake.jwks_fetches(), 2);
}

#[tokio::test]
async fn queued_faults_answer_as_access_would() {
    let issuer = Issuer::start();
    let fake = artifactory(&issuer);
    let body = exchange_body(&issuer.token(0, &json!({})));
    for (status, code) in [
        (401, "UNAUTHORIZED"),
        (403, "FORBIDDEN"),
        (404, "NOT_FOUND"),
        (503, "INTERNAL_SERVER_ERROR"),
    ] {
        fake.fail_next(Fault::Status(status), 1);
        refused(&post(&fake, &body).await, status, code);
    }
    fake.fail_next(Fault::Status(429), 1);
    let limited = post(&fake, &body).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("1"));
    fake.fail_next(Fault::Malformed, 1);
    let malformed = post(&fake, &body).await;
    assert_eq!(malformed.status, 200);
    assert!(serde_json::from_str::<Value>(&malformed.body).is_err());
    fake.fail_next(Fault::Hangup, 1);
    assert!(
        Call::new(Method::POST, OIDC_TOKEN_PATH)
            .json(&body)
            .try_send(&fake)
            .await
            .is_err()
    );
    // Faults are not refusals; the registry API is not faulted.
    fake.fail_next(Fault::Status(500), 1);
    assert_eq!(Call::get("/v2/").send(&fake).await.status, 401);
    assert_eq!(post(&fake, &body).await.status, 500);
    assert_eq!(post(&fake, &body).await.status, 200);
    assert_eq!((fake.exchanges(), fake.refusals()), (1, 0));
    assert_eq!(fake.api_calls(), 9);
}

#[test]
fn mappings_need_an_existing_integration() {
    let fake = FakeArtifactory::start().unwrap();
    let error = fake
        .add_identity_mapping("nope", "m", 1, Map::new(), TokenSpec::new("u", "s", 60))
        .unwrap_err();
    assert!(error.to_string().contains("404"), "{error}");
}
