//! The fake's rules, each driven over real HTTP with a hyper client, against an issuer whose
//! discovery document and JWKS a [`DocumentHost`] serves, with tokens signed by hand.
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
use serde_json::{Value, json};

use super::{FakeError, FakeQuay, Fault, FederationEntry, QuayRole};
use crate::fake::federation::DocumentHost;
use crate::fake::testing::{
    Call, Listening, Resp, rsa_jwk as jwk, sign_rs256 as sign, test_rsa_key as rsa,
};

const EXCHANGE: &str = "/oauth2/federation/robot/token";
const ROBOT: &str = "team-a+puller";
const SUBJECT: &str = "spiffe://example.org/ns/team-a/sa/app";

impl Listening for FakeQuay {
    fn addr(&self) -> SocketAddr {
        FakeQuay::addr(self)
    }
}

fn now_unix() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// An issuer at a [`DocumentHost`] publishing key 0 as `k0`.
struct Issuer {
    host: DocumentHost,
}

impl Issuer {
    fn start() -> Self {
        let issuer = Self {
            host: DocumentHost::start().unwrap(),
        };
        let doc = json!({
            "issuer": issuer.url(),
            "jwks_uri": format!("{}/jwks.json", issuer.url()),
        });
        issuer.host.set(
            "/.well-known/openid-configuration",
            "application/json",
            doc.to_string(),
        );
        issuer.publish(&[("k0", 0)]);
        issuer
    }

    fn url(&self) -> String {
        self.host.url()
    }

    fn publish(&self, keys: &[(&str, usize)]) {
        let keys: Vec<Value> = keys.iter().map(|(kid, i)| jwk(kid, rsa(*i))).collect();
        self.host.set(
            "/jwks.json",
            "application/json",
            json!({ "keys": keys }).to_string(),
        );
    }

    /// Claims this issuer would sign for `sub`, valid 5 minutes from now.
    fn claims(&self, sub: &str) -> Value {
        let now = now_unix();
        json!({
            "iss": self.url(), "sub": sub, "aud": "quay", "iat": now, "nbf": now,
            "exp": now + 300, "jti": "j1",
        })
    }
}

/// A Quay with robot `team-a+puller` trusting `issuer` for [`SUBJECT`].
fn quay_trusting(issuer: &Issuer) -> FakeQuay {
    let quay = FakeQuay::start().unwrap();
    quay.add_robot("team-a", "puller").unwrap();
    quay.grant_repository("team-a", "puller", "team-a/app", QuayRole::Read)
        .unwrap();
    quay.set_federation(
        "team-a",
        "puller",
        vec![FederationEntry::new(issuer.url(), SUBJECT)],
    )
    .unwrap();
    quay
}

async fn exchange(quay: &FakeQuay, user: &str, jwt: &str) -> Resp {
    Call::get(EXCHANGE).auth(user, jwt).send(quay).await
}

async fn registry_base(quay: &FakeQuay, user: &str, token: &str) -> u16 {
    Call::get("/v2/").auth(user, token).send(quay).await.status
}

fn assert_refused(resp: &Resp, status: u16, key: &str, text: &str) {
    assert_eq!(resp.status, status, "{}", resp.body);
    let message = resp.json()[key].as_str().unwrap().to_owned();
    assert!(message.contains(text), "{message}");
}

#[tokio::test]
async fn a_verified_jwt_becomes_a_robot_token_that_works_for_an_hour() {
    let issuer = Issuer::start();
    let quay = quay_trusting(&issuer);
    let resp = exchange(&quay, ROBOT, &sign("k0", rsa(0), &issuer.claims(SUBJECT))).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let token = resp.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    assert_eq!(registry_base(&quay, ROBOT, &token).await, 200);
    assert!(quay.token_works(ROBOT, &token));
    assert_eq!(registry_base(&quay, "team-a+other", &token).await, 401);
    assert_eq!(registry_base(&quay, ROBOT, "not-the-token").await, 401);
    assert_eq!(
        (quay.exchanges(), quay.tokens_issued(), quay.refusals()),
        (1, 1, 0)
    );
    assert_eq!(quay.discovery_fetches(), 1);

    quay.advance_clock(Duration::from_secs(3599));
    assert_eq!(registry_base(&quay, ROBOT, &token).await, 200);
    quay.advance_clock(Duration::from_secs(2));
    let resp = Call::get("/v2/").auth(ROBOT, &token).send(&quay).await;
    assert_eq!(resp.status, 401);
    assert!(
        resp.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer realm=")
    );
}

#[tokio::test]
async fn the_basic_header_is_read_as_quay_reads_it() {
    let quay = FakeQuay::start().unwrap();
    let resp = Call::get(EXCHANGE).send(&quay).await;
    assert_refused(&resp, 401, "error", "No auth header");
    for (header, text) in [
        ("Bearer abc", "Invalid basic auth header"),
        ("Basic a b", "Invalid basic auth header"),
        ("Basic !!!!", "Could not parse basic auth header"),
        ("Basic bm9jb2xvbg==", "Unexpected number of credentials"),
    ] {
        let resp = Call::get(EXCHANGE)
            .header("authorization", header)
            .send(&quay)
            .await;
        assert_refused(&resp, 401, "error", text);
    }
    let resp = exchange(&quay, "devtable", "x.y.z").await;
    assert_refused(&resp, 401, "error", "Invalid robot");
    let resp = exchange(&quay, "team-a+ghost", "x.y.z").await;
    assert_refused(
        &resp,
        400,
        "message",
        "Could not find robot with specified username",
    );
    assert_eq!(quay.refusals(), 7);
    assert_eq!(quay.exchanges(), 0);
}

#[tokio::test]
async fn the_issuer_is_read_unverified_and_must_be_configured() {
    let issuer = Issuer::start();
    let quay = quay_trusting(&issuer);
    // Not a JWT: PyJWT's DecodeError escapes Quay's handlers.
    let resp = exchange(&quay, ROBOT, "not-a-jwt").await;
    assert_eq!(resp.status, 500);
    assert!(resp.body.contains("Internal Server Error"), "{}", resp.body);

    let mut claims = issuer.claims(SUBJECT);
    claims.as_object_mut().unwrap().remove("iss");
    let resp = exchange(&quay, ROBOT, &sign("k0", rsa(0), &claims)).await;
    assert_refused(&resp, 400, "message", "Token does not contain issuer");

    let mut claims = issuer.claims(SUBJECT);
    claims["iss"] = json!("http://127.0.0.1:9");
    let resp = exchange(&quay, ROBOT, &sign("k0", rsa(0), &claims)).await;
    assert_refused(
        &resp,
        400,
        "message",
        "issuer http://127.0.0.1:9 not configured for this robot",
    );

    quay.add_robot("team-a", "bare").unwrap();
    let resp = exchange(
        &quay,
        "team-a+bare",
        &sign("k0", rsa(0), &issuer.claims(SUBJECT)),
    )
    .await;
    assert_refused(
        &resp,
        400,
        "message",
        "Robot does not have federated login configured",
    );
    // Nothing was fetched for any of these.
    assert_eq!(quay.discovery_fetches(), 0);
}

#[tokio::test]
async fn the_subject_must_match_an_entry_exactly() {
    let issuer = Issuer::start();
    let quay = quay_trusting(&issuer);
    for sub in [
        "spiffe://example.org/ns/team-a/sa/app/",
        "spiffe://example.org/ns/team-a/sa/other",
        "SPIFFE://example.org/ns/team-a/sa/app",
    ] {
        let resp = exchange(&quay, ROBOT, &sign("k0", rsa(0), &issuer.claims(sub))).await;
        assert_refused(&resp, 400, "message", "Token does not match robot");
    }
    assert_eq!(quay.tokens_issued(), 0);
}

#[tokio::test]
async fn audiences_are_checked_only_when_an_entry_lists_them() {
    let issuer = Issuer::start();
    let quay = quay_trusting(&issuer);
    // The default claims say `aud: "quay"`: without audiences anything goes.
    let resp = exchange(&quay, ROBOT, &sign("k0", rsa(0), &issuer.claims(SUBJECT))).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    quay.set_federation(
        "team-a",
        "puller",
        vec![FederationEntry::new(issuer.url(), SUBJECT).with_audiences(["https://quay.corp"])],
    )
    .unwrap();
    let resp = exchange(&quay, ROBOT, &sign("k0", rsa(0), &issuer.claims(SUBJECT))).await;
    assert_refused(
        &resp,
        400,
        "message",
        "Invalid token: Audience doesn't match",
    );
    let mut claims = issuer.claims(SUBJECT);
    claims["aud"] = json!(["other", "https://quay.corp"]);
    let resp = exchange(&quay, ROBOT, &sign("k0", rsa(0), &claims)).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
}

#[tokio::test]
async fn expired_or_forged_tokens_are_invalid() {
    let issuer = Issuer::start();
    let quay = quay_trusting(&issuer);
    let jwt = sign("k0", rsa(0), &issuer.claims(SUBJECT));
    // Signed by another key under the published kid.
    let forged = sign("k0", rsa(1), &issuer.claims(SUBJECT));
    let resp = exchange(&quay, ROBOT, &forged).await;
    assert_refused(
        &resp,
        400,
        "message",
        "Invalid token: signature does not verify",
    );
    let mut no_kid = issuer.claims(SUBJECT);
    no_kid["sub"] = json!(SUBJECT);
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(no_kid.to_string());
    let resp = exchange(&quay, ROBOT, &format!("{header}.{payload}.AAAA")).await;
    assert_refused(&resp, 400, "message", "Missing `kid` header");

    quay.advance_clock(Duration::from_secs(301));
    let resp = exchange(&quay, ROBOT, &jwt).await;
    assert_refused(&resp, 400, "message", "Invalid token: token expired");
}

#[tokio::test]
async fn an_unknown_kid_is_an_unhandled_key_load_failure_and_rotation_works() {
    let issuer = Issuer::start();
    let quay = quay_trusting(&issuer);
    let rotated = sign("k1", rsa(1), &issuer.claims(SUBJECT));
    let resp = exchange(&quay, ROBOT, &rotated).await;
    assert_eq!(resp.status, 500, "{}", resp.body);
    // The issuer publishes the new key (the old one kept): Quay fetches anew every time.
    issuer.publish(&[("k1", 1), ("k0", 0)]);
    let resp = exchange(&quay, ROBOT, &rotated).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let resp = exchange(&quay, ROBOT, &sign("k0", rsa(0), &issuer.claims(SUBJECT))).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(quay.discovery_fetches(), 3);
    assert!(quay.jwks_fetches() >= 3);
    // The issuer gone: discovery fails, which Quay does not catch either.
    issuer.host.remove("/.well-known/openid-configuration");
    let resp = exchange(&quay, ROBOT, &rotated).await;
    assert_eq!(resp.status, 500, "{}", resp.body);
}

#[tokio::test]
async fn a_deleted_robot_ends_its_tokens_a_removed_federation_does_not() {
    let issuer = Issuer::start();
    let quay = quay_trusting(&issuer);
    let resp = exchange(&quay, ROBOT, &sign("k0", rsa(0), &issuer.claims(SUBJECT))).await;
    let token = resp.json()["token"].as_str().unwrap().to_owned();
    quay.set_federation("team-a", "puller", Vec::new()).unwrap();
    assert_eq!(registry_base(&quay, ROBOT, &token).await, 200);
    let resp = exchange(&quay, ROBOT, &sign("k0", rsa(0), &issuer.claims(SUBJECT))).await;
    assert_refused(
        &resp,
        400,
        "message",
        "Robot does not have federated login configured",
    );
    quay.delete_robot("team-a", "puller").unwrap();
    assert_eq!(registry_base(&quay, ROBOT, &token).await, 401);
}

#[tokio::test]
async fn faults_are_worded_as_quays_stack_would() {
    let issuer = Issuer::start();
    let quay = quay_trusting(&issuer);
    let jwt = sign("k0", rsa(0), &issuer.claims(SUBJECT));
    quay.fail_next(Fault::Status(429), 1);
    let resp = exchange(&quay, ROBOT, &jwt).await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("1"));
    quay.fail_next(Fault::Status(503), 1);
    let resp = exchange(&quay, ROBOT, &jwt).await;
    assert_eq!(resp.status, 503);
    quay.fail_next(Fault::Status(401), 1);
    assert_refused(
        &exchange(&quay, ROBOT, &jwt).await,
        401,
        "error",
        "injected",
    );
    quay.fail_next(Fault::Malformed, 1);
    let resp = exchange(&quay, ROBOT, &jwt).await;
    assert_eq!(resp.status, 200);
    assert!(serde_json::from_str::<Value>(&resp.body).is_err());
    quay.fail_next(Fault::Hangup, 1);
    assert!(
        Call::get(EXCHANGE)
            .auth(ROBOT, &jwt)
            .try_send(&quay)
            .await
            .is_err()
    );
    assert_eq!(exchange(&quay, ROBOT, &jwt).await.status, 200);
    assert_eq!(quay.api_calls(), 6);
    assert_eq!((quay.refusals(), quay.exchanges()), (0, 1));
}

#[test]
fn robots_federation_and_permissions_follow_quays_rules() {
    let quay = FakeQuay::start().unwrap();
    quay.add_robot("team-a", "puller").unwrap();
    let refused = |e: FakeError| match e {
        FakeError::Refused { status, .. } => status,
        other => panic!("{other}"),
    };
    assert_eq!(
        refused(quay.add_robot("team-a", "puller").unwrap_err()),
        400
    );
    assert_eq!(
        refused(quay.add_robot("team-a", "Puller").unwrap_err()),
        400
    );
    assert_eq!(refused(quay.add_robot("t", "puller").unwrap_err()), 400);
    let entry = FederationEntry::new("https://issuer", "s");
    assert_eq!(
        refused(
            quay.set_federation("team-a", "puller", vec![entry.clone(), entry.clone()])
                .unwrap_err()
        ),
        400
    );
    assert_eq!(
        refused(
            quay.set_federation(
                "team-a",
                "puller",
                vec![FederationEntry::new("issuer", "s")]
            )
            .unwrap_err()
        ),
        400
    );
    assert_eq!(
        refused(
            quay.set_federation("team-a", "ghost", vec![entry])
                .unwrap_err()
        ),
        404
    );
    assert_eq!(
        refused(
            quay.grant_repository("team-a", "puller", "team-b/app", QuayRole::Read)
                .unwrap_err()
        ),
        400
    );
    quay.grant_repository("team-a", "puller", "team-a/app", QuayRole::Write)
        .unwrap();
    assert_eq!(
        quay.role_of("team-a", "puller", "team-a/app"),
        Some(QuayRole::Write)
    );
    assert_eq!(quay.role_of("team-a", "puller", "team-a/lib"), None);
}

fn claims_of(resp: &Resp) -> Value {
    assert_eq!(resp.status, 200, "{}", resp.body);
    let token = resp.json()["token"].as_str().unwrap().to_owned();
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn the_token_realm_grants_what_the_robots_role_allows() {
    let issuer = Issuer::start();
    let quay = quay_trusting(&issuer);
    assert!(quay.token_ca_pem().contains("BEGIN CERTIFICATE"));
    assert_eq!(quay.token_realm(), format!("{}/v2/auth", quay.url()));
    let resp = exchange(&quay, ROBOT, &sign("k0", rsa(0), &issuer.claims(SUBJECT))).await;
    let token = resp.json()["token"].as_str().unwrap().to_owned();

    let path = "/v2/auth?service=registry&scope=repository:team-a/app:pull,push\
                &scope=repository:team-a/other:pull";
    let claims = claims_of(&Call::get(path).auth(ROBOT, &token).send(&quay).await);
    assert_eq!(claims["sub"], ROBOT);
    assert_eq!(claims["aud"], "registry");
    assert_eq!(claims["iss"], super::TOKEN_ISSUER);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    assert_eq!(
        claims["access"],
        json!([
            { "type": "repository", "name": "team-a/app", "actions": ["pull"] },
            { "type": "repository", "name": "team-a/other", "actions": [] },
        ])
    );
    quay.grant_repository("team-a", "puller", "team-a/app", QuayRole::Write)
        .unwrap();
    let claims = claims_of(&Call::get(path).auth(ROBOT, &token).send(&quay).await);
    assert_eq!(claims["access"][0]["actions"], json!(["push", "pull"]));

    // Bad credentials, none at all without a scope, a scope that does not parse.
    let resp = Call::get(path).auth(ROBOT, "wrong").send(&quay).await;
    assert_eq!(resp.status, 401);
    assert_eq!(
        Call::get("/v2/auth?service=registry")
            .send(&quay)
            .await
            .status,
        401
    );
    let anonymous = claims_of(&Call::get(path).send(&quay).await);
    assert_eq!(anonymous["access"][0]["actions"], json!([]));
    let resp = Call::get("/v2/auth?service=registry&scope=repository:team-a/app:delete")
        .auth(ROBOT, &token)
        .send(&quay)
        .await;
    assert_eq!(resp.status, 400);
    // An expired robot token no longer logs in.
    quay.advance_clock(Duration::from_secs(3601));
    assert_eq!(
        Call::get(path).auth(ROBOT, &token).send(&quay).await.status,
        401
    );
}
