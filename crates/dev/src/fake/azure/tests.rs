//! The fake's rules, each driven over real HTTP with a hyper client and assertions signed
//! here by a test issuer whose discovery document and JWKS a [`DocumentHost`] serves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use serde_json::{Value, json};

use super::{Endpoint, FakeAzure, Fault, REFRESH_TOKEN_USERNAME};
use crate::fake::federation::DocumentHost;
use crate::fake::harbor::FakeError;
use crate::fake::testing::{Call, Listening, Resp, rsa_jwk, sign_rs256, test_rsa_key};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "af3110ba-0ba9-4412-b1a0-59f50b7e9273";
const SUBJECT: &str = "spiffe://example.org/ns/team-a/sa/app";
const AUDIENCE: &str = "api://AzureADTokenExchange";
const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The Entra listener of a fake, for [`Call`].
struct Entra<'a>(&'a FakeAzure);
/// The ACR listener of a fake, for [`Call`].
struct Acr<'a>(&'a FakeAzure);

impl Listening for Entra<'_> {
    fn addr(&self) -> SocketAddr {
        self.0.entra_addr()
    }
}

impl Listening for Acr<'_> {
    fn addr(&self) -> SocketAddr {
        self.0.acr_addr()
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

    /// An assertion signed by key `index` as `k<index>`, `extra` over the default claims (a
    /// `null` removes one).
    fn assertion(&self, index: usize, extra: &Value) -> String {
        self.assertion_as(index, &format!("k{index}"), extra)
    }

    fn assertion_as(&self, index: usize, kid: &str, extra: &Value) -> String {
        let now = unix_now();
        let mut claims = json!({
            "iss": self.url, "sub": SUBJECT, "aud": AUDIENCE,
            "iat": now, "nbf": now, "exp": now + 300, "jti": "j1",
        });
        for (name, value) in extra.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        sign_rs256(kid, test_rsa_key(index), &claims)
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

/// A fake whose app trusts `issuer` for [`SUBJECT`] and holds `AcrPull`.
fn azure(issuer: &Issuer) -> FakeAzure {
    let fake = FakeAzure::start().unwrap();
    fake.add_app(TENANT, CLIENT).unwrap();
    fake.add_federated_credential(CLIENT, &issuer.url, SUBJECT, &[AUDIENCE])
        .unwrap();
    fake.assign_role(CLIENT, "AcrPull").unwrap();
    fake
}

/// The token request's fields for `assertion`.
fn token_fields(assertion: &str) -> Vec<(&'static str, String)> {
    vec![
        ("client_id", CLIENT.to_owned()),
        ("scope", ACR_SCOPE.to_owned()),
        ("grant_type", "client_credentials".to_owned()),
        ("client_assertion_type", JWT_BEARER.to_owned()),
        ("client_assertion", assertion.to_owned()),
    ]
}

fn encode(fields: &[(&str, String)]) -> Vec<u8> {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        serializer.append_pair(name, value);
    }
    serializer.finish().into_bytes()
}

async fn post_token(fake: &FakeAzure, tenant: &str, fields: &[(&str, String)]) -> Resp {
    Call::new(Method::POST, format!("/{tenant}/oauth2/v2.0/token"))
        .body("application/x-www-form-urlencoded", encode(fields))
        .send(&Entra(fake))
        .await
}

async fn post_exchange(fake: &FakeAzure, fields: &[(&str, String)]) -> Resp {
    Call::new(Method::POST, "/oauth2/exchange")
        .body("application/x-www-form-urlencoded", encode(fields))
        .send(&Acr(fake))
        .await
}

/// Asserts an Entra error: status, `error`, and the AADSTS code in both places.
fn assert_entra(resp: &Resp, status: u16, error: &str, code: u64) {
    assert_eq!(resp.status, status, "{}", resp.body);
    let body = resp.json();
    assert_eq!(body["error"], error, "{}", resp.body);
    assert_eq!(body["error_codes"], json!([code]), "{}", resp.body);
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
}

fn assert_acr(resp: &Resp, status: u16, code: &str) {
    assert_eq!(resp.status, status, "{}", resp.body);
    assert_eq!(resp.json()["errors"][0]["code"], code, "{}", resp.body);
}

/// A live Entra token of `fake` for `scope`.
async fn entra_token(fake: &FakeAzure, issuer: &Issuer, scope: &str) -> String {
    let mut fields = token_fields(&issuer.assertion(0, &json!({})));
    fields[1].1 = scope.to_owned();
    let resp = post_token(fake, TENANT, &fields).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.json()["access_token"].as_str().unwrap().to_owned()
}

fn exchange_fields(fake: &FakeAzure, token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "access_token".to_owned()),
        ("service", fake.login_server()),
        ("tenant", TENANT.to_owned()),
        ("access_token", token.to_owned()),
    ]
}

// === Entra ===

#[tokio::test]
async fn a_matching_assertion_gets_an_access_token_and_is_audited() {
    let issuer = Issuer::start();
    let fake = azure(&issuer);
    let resp = post_token(
        &fake,
        TENANT,
        &token_fields(&issuer.assertion(0, &json!({}))),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let body = resp.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    assert!(body["access_token"].as_str().unwrap().len() > 40);
    let audit = fake.verified_assertions();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (
            audit[0].issuer.as_str(),
            audit[0].subject.as_str(),
            audit[0].kid.as_str()
        ),
        (issuer.url.as_str(), SUBJECT, "k0")
    );
    assert_eq!(audit[0].audiences, [AUDIENCE]);
    assert_eq!((fake.entra_calls(), fake.entra_tokens_issued()), (1, 1));
    // The tenant's GUID in upper case is the same tenant.
    let resp = post_token(
        &fake,
        &TENANT.to_ascii_uppercase(),
        &token_fields(&issuer.assertion(0, &json!({}))),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
}

#[tokio::test]
async fn the_request_must_be_a_complete_client_credentials_form() {
    let issuer = Issuer::start();
    let fake = azure(&issuer);
    let good = token_fields(&issuer.assertion(0, &json!({})));
    for missing in 0..good.len() {
        let mut fields = good.clone();
        let (name, _) = fields.remove(missing);
        let resp = post_token(&fake, TENANT, &fields).await;
        assert_entra(&resp, 400, "invalid_request", 900_144);
        assert!(resp.body.contains(&format!("'{name}'")), "{}", resp.body);
    }
    let with = |index: usize, value: &str| {
        let mut fields = good.clone();
        fields[index].1 = value.to_owned();
        fields
    };
    assert_entra(
        &post_token(&fake, TENANT, &with(2, "password")).await,
        400,
        "unsupported_grant_type",
        70_003,
    );
    assert_entra(
        &post_token(
            &fake,
            TENANT,
            &with(
                3,
                "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            ),
        )
        .await,
        400,
        "invalid_request",
        7_000_219,
    );
    assert_entra(
        &post_token(
            &fake,
            TENANT,
            &with(1, "https://containerregistry.azure.net/repository.read"),
        )
        .await,
        400,
        "invalid_scope",
        1_002_012,
    );
    assert_entra(
        &post_token(&fake, TENANT, &with(1, "https://vault.azure.net/.default")).await,
        400,
        "invalid_resource",
        500_011,
    );
    // A JSON body is not a form.
    let resp = Call::new(Method::POST, format!("/{TENANT}/oauth2/v2.0/token"))
        .json(&json!({ "grant_type": "client_credentials" }))
        .send(&Entra(&fake))
        .await;
    assert_entra(&resp, 400, "invalid_request", 900_144);
    let resp = Call::get(format!("/{TENANT}/oauth2/v2.0/token"))
        .send(&Entra(&fake))
        .await;
    assert_entra(&resp, 400, "invalid_request", 900_561);
    assert_eq!(fake.entra_tokens_issued(), 0);
    assert!(fake.verified_assertions().is_empty());
}

#[tokio::test]
async fn the_tenant_and_the_application_must_exist() {
    let issuer = Issuer::start();
    let fake = azure(&issuer);
    let fields = token_fields(&issuer.assertion(0, &json!({})));
    assert_entra(
        &post_token(&fake, "contoso.com", &fields).await,
        400,
        "invalid_request",
        900_023,
    );
    assert_entra(
        &post_token(&fake, "00000000-1111-2222-3333-444444444444", &fields).await,
        400,
        "invalid_request",
        90_002,
    );
    let mut other_app = fields.clone();
    other_app[0].1 = "00000000-1111-2222-3333-444444444444".to_owned();
    assert_entra(
        &post_token(&fake, TENANT, &other_app).await,
        400,
        "unauthorized_client",
        700_016,
    );
    // An app of another tenant is not found in this one.
    let elsewhere = "11111111-2222-3333-4444-555555555555";
    fake.add_app(elsewhere, "bbbbbbbb-2222-3333-4444-555555555555")
        .unwrap();
    let mut foreign = fields.clone();
    foreign[0].1 = "bbbbbbbb-2222-3333-4444-555555555555".to_owned();
    assert_entra(
        &post_token(&fake, TENANT, &foreign).await,
        400,
        "unauthorized_client",
        700_016,
    );
    // In its own tenant it exists but trusts nobody.
    assert_entra(
        &post_token(&fake, elsewhere, &foreign).await,
        401,
        "invalid_client",
        70_025,
    );
}

#[tokio::test]
async fn assertions_are_matched_by_issuer_subject_and_audience() {
    let issuer = Issuer::start();
    let stranger = Issuer::start();
    let fake = azure(&issuer);
    let post = |assertion: String| {
        let fake = &fake;
        async move { post_token(fake, TENANT, &token_fields(&assertion)).await }
    };
    assert_entra(
        &post(stranger.assertion(0, &json!({}))).await,
        401,
        "invalid_client",
        700_211,
    );
    // Case-sensitive subject matching.
    let upper = SUBJECT.replace("team-a", "Team-A");
    assert_entra(
        &post(issuer.assertion(0, &json!({ "sub": upper }))).await,
        401,
        "invalid_client",
        700_213,
    );
    assert_entra(
        &post(issuer.assertion(0, &json!({ "aud": "api://AzureADTokenExchangeX" }))).await,
        401,
        "invalid_client",
        700_212,
    );
    // An array audience holding the expected one is fine.
    let resp = post(issuer.assertion(0, &json!({ "aud": ["x", AUDIENCE] }))).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(fake.entra_refusals(), 3);
    // Nothing was fetched for the untrusted issuer.
    assert_eq!(
        stranger
            .host
            .requests("/issuer/.well-known/openid-configuration"),
        0
    );
}

#[tokio::test]
async fn times_keys_and_signatures_are_checked() {
    let issuer = Issuer::start();
    let fake = azure(&issuer);
    let post = |assertion: String| {
        let fake = &fake;
        async move { post_token(fake, TENANT, &token_fields(&assertion)).await }
    };
    let now = unix_now();
    assert_entra(
        &post(issuer.assertion(0, &json!({ "exp": now - 1 }))).await,
        401,
        "invalid_client",
        700_024,
    );
    assert_entra(
        &post(issuer.assertion(0, &json!({ "nbf": now + 600 }))).await,
        401,
        "invalid_client",
        700_024,
    );
    // Key 1 was never published: one refetch, then refused.
    let fetched = fake.jwks_fetches();
    assert_entra(
        &post(issuer.assertion(1, &json!({}))).await,
        401,
        "invalid_client",
        7_000_272,
    );
    assert_eq!(fake.jwks_fetches(), fetched + 1);
    // Key 1 signing under key 0's kid.
    assert_entra(
        &post(issuer.assertion_as(1, "k0", &json!({}))).await,
        401,
        "invalid_client",
        50_013,
    );
    assert_entra(
        &post("not.a.jwt".to_owned()).await,
        400,
        "invalid_request",
        50_027,
    );
    // After a rotation the new key is found by refetching.
    issuer.publish(&[0, 1]);
    let resp = post(issuer.assertion(1, &json!({}))).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    // The fake's clock moves past the assertion's life.
    fake.advance_clock(Duration::from_secs(301));
    assert_entra(
        &post(issuer.assertion(0, &json!({}))).await,
        401,
        "invalid_client",
        700_024,
    );
}

#[test]
fn federated_credentials_follow_graphs_rules() {
    let fake = FakeAzure::start().unwrap();
    let refused_status = |result: Result<(), FakeError>| match result {
        Err(FakeError::Refused { status, .. }) => status,
        other => panic!("not refused: {other:?}"),
    };
    assert_eq!(refused_status(fake.add_app("not-a-guid", CLIENT)), 400);
    fake.add_app(TENANT, CLIENT).unwrap();
    assert_eq!(refused_status(fake.add_app(TENANT, CLIENT)), 409);
    let issuer = "https://broker.example.org/federation";
    assert_eq!(
        refused_status(fake.add_federated_credential(
            "00000000-0000-0000-0000-000000000001",
            issuer,
            "s",
            &[AUDIENCE]
        )),
        404
    );
    assert_eq!(
        refused_status(fake.add_federated_credential(CLIENT, issuer, "s", &[AUDIENCE, "x"])),
        400
    );
    assert_eq!(
        refused_status(fake.add_federated_credential(CLIENT, issuer, "s", &[])),
        400
    );
    assert_eq!(
        refused_status(fake.add_federated_credential(
            CLIENT,
            issuer,
            &"s".repeat(601),
            &[AUDIENCE]
        )),
        400
    );
    fake.add_federated_credential(CLIENT, issuer, &"s".repeat(600), &[AUDIENCE])
        .unwrap();
    for i in 1..20 {
        fake.add_federated_credential(CLIENT, issuer, &format!("subject-{i}"), &[AUDIENCE])
            .unwrap();
    }
    assert_eq!(
        refused_status(fake.add_federated_credential(CLIENT, issuer, "one-too-many", &[AUDIENCE])),
        400
    );
    assert_eq!(
        refused_status(fake.add_federated_credential(CLIENT, issuer, "subject-1", &[AUDIENCE])),
        400
    );
    let other = "bbbbbbbb-2222-3333-4444-555555555555";
    fake.add_app(TENANT, other).unwrap();
    fake.add_federated_credential(other, issuer, "s", &[AUDIENCE])
        .unwrap();
    assert_eq!(
        refused_status(fake.add_federated_credential(other, issuer, "s", &[AUDIENCE])),
        409
    );
    assert_eq!(refused_status(fake.assign_role(other, "Owner")), 400);
    assert_eq!(
        refused_status(fake.assign_role("00000000-0000-0000-0000-000000000001", "AcrPull")),
        404
    );
    fake.assign_role(other, "Container Registry Repository Writer")
        .unwrap();
}

// === ACR ===

#[tokio::test]
async fn an_entra_token_is_exchanged_for_a_three_hour_refresh_token() {
    let issuer = Issuer::start();
    let fake = azure(&issuer);
    let token = entra_token(&fake, &issuer, ACR_SCOPE).await;
    let resp = post_exchange(&fake, &exchange_fields(&fake, &token)).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let refresh = resp.json()["refresh_token"].as_str().unwrap().to_owned();
    let payload = refresh.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let now = unix_now();
    let exp = claims["exp"].as_i64().unwrap();
    assert!((now + 10_790..=now + 10_810).contains(&exp), "{claims}");
    assert_eq!(claims["iss"], "Azure Container Registry");
    assert_eq!(claims["aud"], fake.login_server());
    assert_eq!(claims["tenant"], TENANT);
    assert_eq!(claims["grant_type"], "refresh_token");
    let held = fake.refresh_tokens();
    assert_eq!((held.len(), held[0].expires_at), (1, exp));
    assert_eq!(held[0].roles, ["AcrPull"]);

    // The registry's login check with the null GUID.
    let ok = Call::get("/v2/")
        .auth(REFRESH_TOKEN_USERNAME, &refresh)
        .send(&Acr(&fake))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let wrong_user = Call::get("/v2/")
        .auth("someone", &refresh)
        .send(&Acr(&fake))
        .await;
    assert_eq!(wrong_user.status, 401);
    assert!(
        wrong_user
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer realm=")
    );
    assert_acr(&wrong_user, 401, "UNAUTHORIZED");
    fake.advance_clock(Duration::from_secs(3 * 3600));
    let expired = Call::get("/v2/")
        .auth(REFRESH_TOKEN_USERNAME, &refresh)
        .send(&Acr(&fake))
        .await;
    assert_eq!(expired.status, 401);
    assert_eq!(fake.registry_logins(), 1);
    assert!(!fake.authenticate(&refresh));
}

#[tokio::test]
async fn the_exchange_enforces_its_form_service_token_tenant_and_role() {
    let issuer = Issuer::start();
    let fake = azure(&issuer);
    let token = entra_token(&fake, &issuer, ACR_SCOPE).await;
    let good = exchange_fields(&fake, &token);
    let with = |index: usize, value: &str| {
        let mut fields = good.clone();
        fields[index].1 = value.to_owned();
        fields
    };
    assert_acr(
        &post_exchange(&fake, &with(0, "refresh_token")).await,
        400,
        "BAD_REQUEST",
    );
    assert_acr(
        &post_exchange(&fake, &with(1, "corp.azurecr.io")).await,
        400,
        "BAD_REQUEST",
    );
    assert_acr(
        &post_exchange(&fake, &with(3, "eyJnot-issued")).await,
        401,
        "UNAUTHORIZED",
    );
    assert_acr(
        &post_exchange(&fake, &with(2, "11111111-2222-3333-4444-555555555555")).await,
        401,
        "UNAUTHORIZED",
    );
    let mut no_service = good.clone();
    no_service.remove(1);
    assert_acr(&post_exchange(&fake, &no_service).await, 400, "BAD_REQUEST");
    // The tenant is optional (the SDKs omit it).
    let mut no_tenant = good.clone();
    no_tenant.remove(2);
    assert_eq!(post_exchange(&fake, &no_tenant).await.status, 200);
    // A GET is not found, as ACR answers.
    assert_eq!(
        Call::get("/oauth2/exchange").send(&Acr(&fake)).await.status,
        404
    );
    // Without a role the exchange is refused.
    fake.remove_roles(CLIENT);
    let resp = post_exchange(&fake, &good).await;
    assert_acr(&resp, 401, "UNAUTHORIZED");
    assert!(resp.body.contains("no role assignment"), "{}", resp.body);
    // An Entra token past its hour is refused.
    fake.assign_role(CLIENT, "AcrPush").unwrap();
    assert_eq!(post_exchange(&fake, &good).await.status, 200);
    fake.advance_clock(Duration::from_secs(3600));
    assert_acr(&post_exchange(&fake, &good).await, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn arm_audience_tokens_work_until_the_registry_disables_them() {
    let issuer = Issuer::start();
    let fake = azure(&issuer);
    let arm = entra_token(&fake, &issuer, "https://management.azure.com/.default").await;
    assert_eq!(
        post_exchange(&fake, &exchange_fields(&fake, &arm))
            .await
            .status,
        200
    );
    fake.disable_arm_audience_tokens();
    assert_acr(
        &post_exchange(&fake, &exchange_fields(&fake, &arm)).await,
        401,
        "UNAUTHORIZED",
    );
    let acr = entra_token(&fake, &issuer, ACR_SCOPE).await;
    assert_eq!(
        post_exchange(&fake, &exchange_fields(&fake, &acr))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn faults_apply_to_their_endpoint_only() {
    let issuer = Issuer::start();
    let fake = azure(&issuer);
    fake.fail_next(Endpoint::Entra, Fault::Status(429), 1);
    let limited = post_token(
        &fake,
        TENANT,
        &token_fields(&issuer.assertion(0, &json!({}))),
    )
    .await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("1"));
    let token = entra_token(&fake, &issuer, ACR_SCOPE).await;
    fake.fail_next(Endpoint::Acr, Fault::Hangup, 1);
    let hung = Call::new(Method::POST, "/oauth2/exchange")
        .body(
            "application/x-www-form-urlencoded",
            encode(&exchange_fields(&fake, &token)),
        )
        .try_send(&Acr(&fake))
        .await;
    assert!(hung.is_err());
    fake.fail_next(Endpoint::Acr, Fault::Malformed, 1);
    let malformed = post_exchange(&fake, &exchange_fields(&fake, &token)).await;
    assert_eq!(malformed.status, 200);
    assert!(serde_json::from_str::<Value>(&malformed.body).is_err());
    assert_eq!(
        post_exchange(&fake, &exchange_fields(&fake, &token))
            .await
            .status,
        200
    );
    assert_eq!((fake.entra_calls(), fake.exchange_calls()), (2, 3));
    assert_eq!(fake.refresh_tokens_issued(), 1);
    // Debug shows no token.
    let shown = format!("{fake:?}");
    assert!(!shown.contains(&token), "{shown}");
}

#[tokio::test]
async fn legacy_roles_are_not_honoured_in_the_abac_mode() {
    let issuer = Issuer::start();
    let fake = azure(&issuer);
    let token = entra_token(&fake, &issuer, ACR_SCOPE).await;
    fake.enable_abac_repository_permissions();
    let resp = post_exchange(&fake, &exchange_fields(&fake, &token)).await;
    assert_acr(&resp, 401, "UNAUTHORIZED");
    fake.assign_role(CLIENT, "Container Registry Repository Reader")
        .unwrap();
    let resp = post_exchange(&fake, &exchange_fields(&fake, &token)).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        fake.refresh_tokens()[0].roles,
        ["Container Registry Repository Reader"]
    );
}
