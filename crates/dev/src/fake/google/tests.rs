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
use serde_json::{Value, json};

use super::{FakeGoogle, Fault, RegistryRole, STS_TOKEN_PATH};
use crate::fake::federation::DocumentHost;
use crate::fake::testing::{Call, Listening, Resp, rsa_jwk, sign_rs256, test_rsa_key};

const PROVIDER: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/svid-broker/providers/broker";
const SA: &str = "puller@my-project.iam.gserviceaccount.com";
const SUBJECT: &str = "spiffe://example.org/ns/team-a/sa/app";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

impl Listening for FakeGoogle {
    fn addr(&self) -> SocketAddr {
        FakeGoogle::addr(self)
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
        host.set(
            "/issuer/.well-known/openid-configuration",
            "application/json",
            json!({ "issuer": url, "jwks_uri": format!("{url}/jwks.json") }).to_string(),
        );
        let issuer = Self { host, url };
        issuer.publish(&[0]);
        issuer
    }

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

    /// A token signed by key `index` as `k<index>`, with `extra` claims over the defaults (a
    /// `null` removes one).
    fn token(&self, index: usize, extra: &Value) -> String {
        let now = unix_now();
        let mut claims = json!({
            "iss": self.url, "sub": SUBJECT, "aud": format!("https:{PROVIDER}"),
            "iat": now, "nbf": now, "exp": now + 300, "jti": "j1",
        });
        for (name, value) in extra.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        sign_rs256(&format!("k{index}"), test_rsa_key(index), &claims)
    }
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

/// A fake trusting `issuer` (default audiences, no condition), with a reader account whose
/// `roles/iam.workloadIdentityUser` is held by [`SUBJECT`]'s principal.
fn google(issuer: &Issuer) -> FakeGoogle {
    let fake = FakeGoogle::start().unwrap();
    fake.add_provider(PROVIDER, &issuer.url, Vec::new(), None)
        .unwrap();
    fake.add_service_account(SA);
    fake.grant_workload_identity_user(SA, &FakeGoogle::principal(PROVIDER, SUBJECT).unwrap())
        .unwrap();
    fake.set_registry_role(SA, Some(RegistryRole::Reader))
        .unwrap();
    fake
}

fn exchange_body(token: &str) -> Value {
    json!({
        "grantType": "urn:ietf:params:oauth:grant-type:token-exchange",
        "audience": PROVIDER,
        "scope": SCOPE,
        "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token",
        "subjectToken": token,
        "subjectTokenType": "urn:ietf:params:oauth:token-type:jwt",
    })
}

async fn exchange(fake: &FakeGoogle, body: &Value) -> Resp {
    Call::new(Method::POST, STS_TOKEN_PATH)
        .json(body)
        .send(fake)
        .await
}

/// Asserts an STS refusal: `status`, `error` and a description containing `says`.
fn sts_refused(resp: &Resp, status: u16, error: &str, says: &str) {
    assert_eq!(resp.status, status, "{}", resp.body);
    let body = resp.json();
    assert_eq!(body["error"], error, "{}", resp.body);
    assert!(
        body["error_description"].as_str().unwrap().contains(says),
        "{says}: {}",
        resp.body
    );
}

/// A federated token for `token`'s JWT.
async fn federated(fake: &FakeGoogle, token: &str) -> String {
    let resp = exchange(fake, &exchange_body(token)).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.json()["access_token"].as_str().unwrap().to_owned()
}

fn generate_path(email: &str) -> String {
    format!("/v1/projects/-/serviceAccounts/{email}:generateAccessToken")
}

async fn generate(fake: &FakeGoogle, path: &str, bearer: Option<&str>, body: &Value) -> Resp {
    let mut call = Call::new(Method::POST, path).json(body);
    if let Some(bearer) = bearer {
        call = call.header("authorization", format!("Bearer {bearer}"));
    }
    call.send(fake).await
}

/// Asserts Google's API error: `code`, `status` and a message containing `says`.
fn google_refused(resp: &Resp, code: u16, status: &str, says: &str) {
    assert_eq!(resp.status, code, "{}", resp.body);
    let body = resp.json();
    assert_eq!(body["error"]["code"], code, "{}", resp.body);
    assert_eq!(body["error"]["status"], status, "{}", resp.body);
    assert!(
        body["error"]["message"].as_str().unwrap().contains(says),
        "{says}: {}",
        resp.body
    );
}

async fn docker(fake: &FakeGoogle, user: &str, token: &str) -> u16 {
    Call::get("/v2/").auth(user, token).send(fake).await.status
}

// === STS ===

#[tokio::test]
async fn a_valid_exchange_answers_a_federated_token_and_audits_the_jwt() {
    let issuer = Issuer::start();
    let fake = google(&issuer);
    let resp = exchange(&fake, &exchange_body(&issuer.token(0, &json!({})))).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let body = resp.json();
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(!body["access_token"].as_str().unwrap().is_empty());
    let audit = fake.verified_jwts();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (
            audit[0].issuer.as_str(),
            audit[0].subject.as_str(),
            audit[0].kid.as_str()
        ),
        (issuer.url.as_str(), SUBJECT, "k0")
    );
    assert_eq!((fake.sts_calls(), fake.exchanges()), (1, 1));
    // The id_token subject token type is taken too, and the audience without `https:`.
    let mut body = exchange_body(&issuer.token(0, &json!({ "aud": PROVIDER })));
    body["subjectTokenType"] = json!("urn:ietf:params:oauth:token-type:id_token");
    assert_eq!(exchange(&fake, &body).await.status, 200);
}

#[tokio::test]
async fn malformed_exchange_requests_are_invalid_requests() {
    let issuer = Issuer::start();
    let fake = google(&issuer);
    let token = issuer.token(0, &json!({}));
    let with = |name: &str, value: Value| {
        let mut body = exchange_body(&token);
        if value.is_null() {
            body.as_object_mut().unwrap().remove(name);
        } else {
            body[name] = value;
        }
        body
    };
    for (body, says) in [
        (with("grantType", json!("client_credentials")), "grant_type"),
        (with("grantType", Value::Null), "grantType"),
        (
            with(
                "requestedTokenType",
                json!("urn:ietf:params:oauth:token-type:id_token"),
            ),
            "requested_token_type",
        ),
        (
            with(
                "subjectTokenType",
                json!("urn:ietf:params:oauth:token-type:saml2"),
            ),
            "subject_token_type",
        ),
        (
            with(
                "scope",
                json!("https://www.googleapis.com/auth/devstorage.read_only"),
            ),
            "scope",
        ),
        (with("scope", Value::Null), "scope"),
        (with("subjectToken", json!("")), "subjectToken"),
        (with("audience", json!(42)), "audience"),
        (with("resource", json!("x")), "Unknown name \"resource\""),
        (
            with(
                "audience",
                json!("projects/1/locations/global/workloadIdentityPools/p/providers/x"),
            ),
            "full resource name of the Identity Provider",
        ),
        (json!([1]), "Expected an object"),
    ] {
        sts_refused(&exchange(&fake, &body).await, 400, "invalid_request", says);
    }
    let resp = Call::new(Method::POST, STS_TOKEN_PATH)
        .body("application/json", b"{".to_vec())
        .send(&fake)
        .await;
    sts_refused(&resp, 400, "invalid_request", "Invalid JSON payload");
    let resp = Call::new(Method::POST, STS_TOKEN_PATH)
        .body("application/json", vec![b' '; super::MAX_BODY_BYTES + 1])
        .send(&fake)
        .await;
    assert_eq!(resp.status, 413);
    assert_eq!(fake.exchanges(), 0);
    assert!(fake.verified_jwts().is_empty());
}

#[tokio::test]
async fn an_unknown_provider_is_an_invalid_target() {
    let issuer = Issuer::start();
    let fake = google(&issuer);
    let mut body = exchange_body(&issuer.token(0, &json!({})));
    body["audience"] = json!(PROVIDER.replace("providers/broker", "providers/other"));
    sts_refused(
        &exchange(&fake, &body).await,
        400,
        "invalid_target",
        "doesn't exist",
    );
}

#[tokio::test]
async fn jwts_that_fail_verification_are_invalid_grants() {
    let issuer = Issuer::start();
    let stranger = Issuer::start();
    let fake = google(&issuer);
    let cases = [
        (
            stranger.token(0, &json!({})),
            "does not match the expected ones",
        ),
        (
            issuer.token(0, &json!({ "exp": unix_now() - 1, "iat": 1_700_000_000 })),
            "ID Token issued at 1700000000 is stale to sign-in.",
        ),
        (issuer.token(1, &json!({})), "kid"),
        (format!("{}x", issuer.token(0, &json!({}))), "signature"),
        ("not-a-jwt".to_owned(), "malformed"),
    ];
    for (token, says) in cases {
        sts_refused(
            &exchange(&fake, &exchange_body(&token)).await,
            400,
            "invalid_grant",
            says,
        );
    }
    assert!(fake.verified_jwts().is_empty());
    // An issuer that cannot be reached.
    issuer
        .host
        .remove("/issuer/.well-known/openid-configuration");
    fake.shared.verifier.clear_cache();
    sts_refused(
        &exchange(&fake, &exchange_body(&issuer.token(0, &json!({})))).await,
        400,
        "invalid_grant",
        "Error connecting to the given credential's issuer.",
    );
}

#[tokio::test]
async fn a_rotated_key_is_found_by_refetching_the_jwks() {
    let issuer = Issuer::start();
    let fake = google(&issuer);
    federated(&fake, &issuer.token(0, &json!({}))).await;
    issuer.publish(&[0, 1]);
    federated(&fake, &issuer.token(1, &json!({}))).await;
    assert_eq!((fake.discovery_fetches(), fake.jwks_fetches()), (1, 2));
    assert_eq!(fake.verified_jwts()[1].kid, "k1");
}

#[tokio::test]
async fn the_audience_must_be_the_providers_or_an_allowed_one() {
    let issuer = Issuer::start();
    let fake = google(&issuer);
    let wrong = issuer.token(0, &json!({ "aud": "https://elsewhere.example.com" }));
    sts_refused(
        &exchange(&fake, &exchange_body(&wrong)).await,
        400,
        "invalid_grant",
        "The audience in ID Token [https://elsewhere.example.com] does not match the expected audience.",
    );
    // The JWT itself verified: it is in the audit.
    assert_eq!(fake.verified_jwts().len(), 1);
    fake.add_provider(PROVIDER, &issuer.url, vec!["my-audience".to_owned()], None)
        .unwrap();
    let default = issuer.token(0, &json!({}));
    sts_refused(
        &exchange(&fake, &exchange_body(&default)).await,
        400,
        "invalid_grant",
        "audience",
    );
    let allowed = issuer.token(0, &json!({ "aud": ["other", "my-audience"] }));
    assert_eq!(exchange(&fake, &exchange_body(&allowed)).await.status, 200);
}

#[tokio::test]
async fn google_subject_over_127_bytes_and_the_attribute_condition_are_refused() {
    let issuer = Issuer::start();
    let fake = google(&issuer);
    let long = "s".repeat(128);
    sts_refused(
        &exchange(
            &fake,
            &exchange_body(&issuer.token(0, &json!({ "sub": long }))),
        )
        .await,
        400,
        "invalid_grant",
        "exceeds the 127 bytes limit",
    );
    let fits = "s".repeat(127);
    assert_eq!(
        exchange(
            &fake,
            &exchange_body(&issuer.token(0, &json!({ "sub": fits })))
        )
        .await
        .status,
        200
    );
    fake.add_provider(
        PROVIDER,
        &issuer.url,
        Vec::new(),
        Some(vec!["spiffe://other".to_owned()]),
    )
    .unwrap();
    sts_refused(
        &exchange(&fake, &exchange_body(&issuer.token(0, &json!({})))).await,
        400,
        "unauthorized_client",
        "The given credential is rejected by the attribute condition.",
    );
    let other = issuer.token(0, &json!({ "sub": "spiffe://other" }));
    assert_eq!(exchange(&fake, &exchange_body(&other)).await.status, 200);
}

#[tokio::test]
async fn an_expired_jwt_on_the_fakes_clock_is_stale() {
    let issuer = Issuer::start();
    let fake = google(&issuer);
    fake.advance_clock(Duration::from_secs(301));
    sts_refused(
        &exchange(&fake, &exchange_body(&issuer.token(0, &json!({})))).await,
        400,
        "invalid_grant",
        "is stale to sign-in",
    );
}

// === IAM Credentials ===

#[tokio::test]
async fn generate_answers_an_access_token_for_the_lifetime_asked() {
    let issuer = Issuer::start();
    let fake = google(&issuer);
    let bearer = federated(&fake, &issuer.token(0, &json!({}))).await;
    let before = unix_now();
    let resp = generate(
        &fake,
        &generate_path(SA),
        Some(&bearer),
        &json!({ "scope": [SCOPE], "lifetime": "300s" }),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let body = resp.json();
    let token = body["accessToken"].as_str().unwrap().to_owned();
    let expire = body["expireTime"].as_str().unwrap();
    assert!(expire.ends_with('Z') && expire.len() == 20, "{expire}");
    let expected = |secs: i64| {
        svid_broker_identity::clock::Rfc3339(
            UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap()),
        )
        .to_string()
    };
    let after = unix_now();
    assert!(
        (before..=after).any(|t| expected(t + 300) == expire),
        "{expire}"
    );
    assert_eq!(fake.registry_role(&token), Some(RegistryRole::Reader));
    assert_eq!(docker(&fake, "oauth2accesstoken", &token).await, 200);
    assert_eq!(fake.registry_logins(), 1);
    // Without a lifetime, the default hour; percent-encoded emails are the same account.
    let resp = generate(
        &fake,
        &generate_path(&SA.replace('@', "%40")),
        Some(&bearer),
        &json!({ "scope": [SCOPE] }),
    )
    .await;
    let expire = resp.json()["expireTime"].as_str().unwrap().to_owned();
    assert!(
        (before..=unix_now()).any(|t| expected(t + 3600) == expire),
        "{expire}"
    );
    assert_eq!((fake.generate_calls(), fake.generated()), (2, 2));
}

#[tokio::test]
async fn generate_needs_a_live_federated_token() {
    let issuer = Issuer::start();
    let fake = google(&issuer);
    let body = json!({ "scope": [SCOPE], "lifetime": "300s" });
    let path = generate_path(SA);
    google_refused(
        &generate(&fake, &path, None, &body).await,
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials",
    );
    google_refused(
        &generate(&fake, &path, Some("ya29.forged"), &body).await,
        401,
        "UNAUTHENTICATED",
        "Expected OAuth 2 access token",
    );
    let bearer = federated(&fake, &issuer.token(0, &json!({}))).await;
    let resp = Call::new(Method::POST, path.clone())
        .json(&body)
        .auth("x", &bearer)
        .send(&fake)
        .await;
    assert_eq!(resp.status, 401, "Basic is not Bearer: {}", resp.body);
    fake.advance_clock(Duration::from_secs(3600));
    google_refused(
        &generate(&fake, &path, Some(&bearer), &body).await,
        401,
        "UNAUTHENTICATED",
        "",
    );
    assert_eq!(fake.generate_refusals(), 4);
}

#[tokio::test]
async fn generate_needs_the_account_and_the_principals_binding() {
    let issuer = Issuer::start();
    let fake = google(&issuer);
    let body = json!({ "scope": [SCOPE], "lifetime": "300s" });
    let other = issuer.token(
        0,
        &json!({ "sub": "spiffe://example.org/ns/team-a/sa/other" }),
    );
    let bearer = federated(&fake, &other).await;
    google_refused(
        &generate(&fake, &generate_path(SA), Some(&bearer), &body).await,
        403,
        "PERMISSION_DENIED",
        "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
    );
    google_refused(
        &generate(
            &fake,
            &generate_path("nobody@my-project.iam.gserviceaccount.com"),
            Some(&bearer),
            &body,
        )
        .await,
        404,
        "NOT_FOUND",
        "not found",
    );
    google_refused(
        &generate(
            &fake,
            &format!("/v1/projects/my-project/serviceAccounts/{SA}:generateAccessToken"),
            Some(&bearer),
            &body,
        )
        .await,
        400,
        "INVALID_ARGUMENT",
        "wildcard",
    );
    // The pool's principal set lets every identity of the pool in.
    fake.grant_workload_identity_user(SA, &FakeGoogle::pool_principal_set(PROVIDER).unwrap())
        .unwrap();
    assert_eq!(
        generate(&fake, &generate_path(SA), Some(&bearer), &body)
            .await
            .status,
        200
    );
    // And removing the binding ends it for new requests.
    fake.revoke_workload_identity_user(SA, &FakeGoogle::pool_principal_set(PROVIDER).unwrap())
        .unwrap();
    assert_eq!(
        generate(&fake, &generate_path(SA), Some(&bearer), &body)
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn generate_bodies_follow_the_request_message() {
    let issuer = Issuer::start();
    let fake = google(&issuer);
    let bearer = federated(&fake, &issuer.token(0, &json!({}))).await;
    for (body, says) in [
        (
            json!({ "scope": [SCOPE], "lifetime": "3601s" }),
            "The access token lifetime cannot exceed 3600 seconds.",
        ),
        (
            json!({ "scope": [SCOPE], "lifetime": "3600.5s" }),
            "cannot exceed 3600 seconds",
        ),
        (json!({ "scope": [SCOPE], "lifetime": "0s" }), "positive"),
        (
            json!({ "scope": [SCOPE], "lifetime": "300" }),
            "Illegal duration format",
        ),
        (json!({ "scope": [SCOPE], "lifetime": 300 }), "lifetime"),
        (json!({ "lifetime": "300s" }), "Scope required."),
        (
            json!({ "scope": [], "lifetime": "300s" }),
            "Scope required.",
        ),
        (
            json!({ "scope": [SCOPE], "delegates": ["projects/-/serviceAccounts/x@y.iam.gserviceaccount.com"] }),
            "delegat",
        ),
        (
            json!({ "scope": [SCOPE], "lifetme": "300s" }),
            "Unknown name \"lifetme\"",
        ),
        (json!("scope"), "Expected an object"),
    ] {
        google_refused(
            &generate(&fake, &generate_path(SA), Some(&bearer), &body).await,
            400,
            "INVALID_ARGUMENT",
            says,
        );
    }
    let ok = json!({ "scope": [SCOPE], "lifetime": "3600s", "delegates": [] });
    assert_eq!(
        generate(&fake, &generate_path(SA), Some(&bearer), &ok)
            .await
            .status,
        200
    );
}

// === the registry ===

#[tokio::test]
async fn the_docker_check_takes_live_tokens_of_accounts_with_a_role() {
    let issuer = Issuer::start();
    let fake = google(&issuer);
    let bearer = federated(&fake, &issuer.token(0, &json!({}))).await;
    let body = json!({ "scope": [SCOPE], "lifetime": "60s" });
    let resp = generate(&fake, &generate_path(SA), Some(&bearer), &body).await;
    let token = resp.json()["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(docker(&fake, "oauth2accesstoken", &token).await, 200);
    let refused = Call::get("/v2/").auth("someone", &token).send(&fake).await;
    assert_eq!(refused.status, 401);
    assert!(
        refused
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer realm=")
    );
    // The federated token is not a registry credential.
    assert_eq!(docker(&fake, "oauth2accesstoken", &bearer).await, 401);
    fake.set_registry_role(SA, None).unwrap();
    assert_eq!(docker(&fake, "oauth2accesstoken", &token).await, 401);
    fake.set_registry_role(SA, Some(RegistryRole::Writer))
        .unwrap();
    assert_eq!(fake.registry_role(&token), Some(RegistryRole::Writer));
    fake.advance_clock(Duration::from_secs(60));
    assert_eq!(docker(&fake, "oauth2accesstoken", &token).await, 401);
    assert_eq!(fake.registry_logins(), 1);
}

// === operator side and faults ===

#[test]
fn the_operator_side_checks_names() {
    let fake = FakeGoogle::start().unwrap();
    assert!(
        fake.add_provider("projects/1", "http://127.0.0.1:1", Vec::new(), None)
            .is_err()
    );
    let too_many = (0..11).map(|i| format!("a{i}")).collect();
    assert!(
        fake.add_provider(PROVIDER, "http://127.0.0.1:1", too_many, None)
            .is_err()
    );
    assert!(
        fake.grant_workload_identity_user(SA, "principal://x")
            .is_err()
    );
    assert!(fake.set_registry_role(SA, None).is_err());
    assert_eq!(
        FakeGoogle::principal(PROVIDER, "s").unwrap(),
        "principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/svid-broker/subject/s"
    );
    assert_eq!(
        FakeGoogle::pool_principal_set(PROVIDER).unwrap(),
        "principalSet://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/svid-broker/*"
    );
    assert_eq!(
        FakeGoogle::principal("//iam.googleapis.com/projects/x", "s"),
        None
    );
}

#[tokio::test]
async fn faults_apply_per_endpoint() {
    let issuer = Issuer::start();
    let fake = google(&issuer);
    let token = issuer.token(0, &json!({}));
    fake.fail_next_sts(Fault::Status(429), 1);
    let resp = exchange(&fake, &exchange_body(&token)).await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(resp.json()["error"], "temporarily_unavailable");
    fake.fail_next_sts(Fault::Hangup, 1);
    assert!(
        Call::new(Method::POST, STS_TOKEN_PATH)
            .json(&exchange_body(&token))
            .try_send(&fake)
            .await
            .is_err()
    );
    fake.fail_next_sts(Fault::Malformed, 1);
    let resp = exchange(&fake, &exchange_body(&token)).await;
    assert_eq!(resp.status, 200);
    assert!(serde_json::from_str::<Value>(&resp.body).is_err());
    let bearer = federated(&fake, &token).await;
    // An IAM fault leaves STS alone, and the other way round.
    fake.fail_next_generate(Fault::Status(403), 1);
    assert_eq!(exchange(&fake, &exchange_body(&token)).await.status, 200);
    let body = json!({ "scope": [SCOPE], "lifetime": "60s" });
    let resp = generate(&fake, &generate_path(SA), Some(&bearer), &body).await;
    google_refused(&resp, 403, "PERMISSION_DENIED", "injected fault");
    assert_eq!(
        generate(&fake, &generate_path(SA), Some(&bearer), &body)
            .await
            .status,
        200
    );
    assert_eq!((fake.sts_calls(), fake.generate_calls()), (5, 2));
    // Faults are not rule refusals.
    assert_eq!((fake.sts_refusals(), fake.generate_refusals()), (0, 0));
}
