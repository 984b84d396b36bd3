//! The fake's rules, each driven over real HTTP with a hyper client.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;
use serde_json::{Value, json};
use svid_broker_identity::secret::{ExposeSecret as _, SecretString};

use super::rules::{datetime_millis, parse_datetime};
use super::{FakeGitlab, Fault, GitlabSpec, Role};
use crate::fake::testing::{CALL_TIMEOUT, Call, Resp};

const TOKENS: &str = "/api/v4/projects/team-a%2Fapp/deploy_tokens";

fn gitlab() -> FakeGitlab {
    FakeGitlab::start(GitlabSpec::new(["team-a/app", "team-b/web"])).unwrap()
}

/// One request on a fresh connection, within [`CALL_TIMEOUT`]; `Err` when the connection
/// ends unanswered.
async fn call(
    fake: &FakeGitlab,
    method: Method,
    path: &str,
    token: Option<&SecretString>,
    body: Option<(&str, Vec<u8>)>,
) -> Result<Resp, hyper::Error> {
    let mut request = Call::new(method, path);
    if let Some(token) = token {
        request = request.header("PRIVATE-TOKEN", token.expose_secret());
    }
    if let Some((content_type, bytes)) = body {
        request = request.body(content_type, bytes);
    }
    tokio::time::timeout(CALL_TIMEOUT, request.try_send(fake))
        .await
        .unwrap()
}

async fn get(fake: &FakeGitlab, path: &str, token: &SecretString) -> Resp {
    call(fake, Method::GET, path, Some(token), None)
        .await
        .unwrap()
}

async fn post(fake: &FakeGitlab, path: &str, token: &SecretString, body: &Value) -> Resp {
    let bytes = body.to_string().into_bytes();
    post_raw(fake, path, token, "application/json", bytes).await
}

async fn post_raw(
    fake: &FakeGitlab,
    path: &str,
    token: &SecretString,
    content_type: &str,
    bytes: Vec<u8>,
) -> Resp {
    call(
        fake,
        Method::POST,
        path,
        Some(token),
        Some((content_type, bytes)),
    )
    .await
    .unwrap()
}

async fn delete(fake: &FakeGitlab, path: &str, token: &SecretString) -> Resp {
    call(fake, Method::DELETE, path, Some(token), None)
        .await
        .unwrap()
}

fn in_an_hour() -> String {
    let at = SystemTime::now() + Duration::from_secs(3600);
    datetime_millis(i64::try_from(at.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap())
}

#[tokio::test]
async fn every_call_needs_a_valid_private_token() {
    let fake = gitlab();
    for token in [None, Some(SecretString::from("glpat-wrong".to_owned()))] {
        let r = call(&fake, Method::GET, TOKENS, token.as_ref(), None)
            .await
            .unwrap();
        assert_eq!(r.status, 401);
        assert_eq!(r.json(), json!({ "message": "401 Unauthorized" }));
    }
    // Even for a project that does not exist: authentication comes first.
    let r = call(
        &fake,
        Method::GET,
        "/api/v4/projects/nope%2Fnope/deploy_tokens",
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(fake.api_calls(), 3);
}

#[tokio::test]
async fn projects_are_found_by_id_or_encoded_path_and_hidden_from_non_members() {
    let fake = gitlab();
    let admin = fake.admin_token();
    for path in [TOKENS, "/api/v4/projects/1/deploy_tokens"] {
        let r = get(&fake, path, &admin).await;
        assert_eq!((r.status, r.json()), (200, json!([])), "{path}");
    }
    for path in [
        "/api/v4/projects/99/deploy_tokens",
        "/api/v4/projects/team-a%2Fnope/deploy_tokens",
        // An unencoded slash is another route, as in GitLab.
        "/api/v4/projects/team-a/app/deploy_tokens",
    ] {
        let r = get(&fake, path, &admin).await;
        assert_eq!(r.status, 404, "{path}");
    }
    let r = get(&fake, "/api/v4/projects/99/deploy_tokens", &admin).await;
    assert_eq!(r.json(), json!({ "message": "404 Project Not Found" }));

    // A Maintainer of team-a/app only: team-b/web looks missing.
    let scoped = fake
        .add_user_token(Role::Maintainer, &["team-a/app"])
        .unwrap();
    assert_eq!(get(&fake, TOKENS, &scoped).await.status, 200);
    let r = get(
        &fake,
        "/api/v4/projects/team-b%2Fweb/deploy_tokens",
        &scoped,
    )
    .await;
    assert_eq!(r.json(), json!({ "message": "404 Project Not Found" }));
    assert!(fake.add_user_token(Role::Owner, &["no/such"]).is_err());
}

#[tokio::test]
async fn managing_deploy_tokens_needs_the_maintainer_role() {
    let fake = gitlab();
    let developer = fake
        .add_user_token(Role::Developer, &["team-a/app"])
        .unwrap();
    let forbidden = json!({ "message": "403 Forbidden" });
    let r = get(&fake, TOKENS, &developer).await;
    assert_eq!((r.status, r.json()), (403, forbidden.clone()));
    let body = json!({ "name": "x", "scopes": ["read_registry"] });
    let r = post(&fake, TOKENS, &developer, &body).await;
    assert_eq!((r.status, r.json()), (403, forbidden.clone()));
    let made = post(&fake, TOKENS, &fake.admin_token(), &body).await;
    let id = made.json()["id"].as_i64().unwrap();
    let r = delete(&fake, &format!("{TOKENS}/{id}"), &developer).await;
    assert_eq!((r.status, r.json()), (403, forbidden));
    assert_eq!(fake.deploy_tokens().len(), 1);

    let owner = fake.add_user_token(Role::Owner, &["team-a/app"]).unwrap();
    assert_eq!(
        delete(&fake, &format!("{TOKENS}/{id}"), &owner)
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn a_created_token_is_shown_once_with_its_fields() {
    let fake = gitlab();
    let admin = fake.admin_token();
    let expires = in_an_hour();
    let r = post(
        &fake,
        TOKENS,
        &admin,
        &json!({
            "name": "svid-1-00",
            "username": "svid-1-00",
            "scopes": ["write_registry", "read_registry"],
            "expires_at": expires,
        }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    assert_eq!(created["name"], "svid-1-00");
    assert_eq!(created["username"], "svid-1-00");
    assert_eq!(created["expires_at"], expires.as_str());
    assert_eq!(
        created["scopes"],
        json!(["read_registry", "write_registry"])
    );
    assert_eq!(
        (created["revoked"].clone(), created["expired"].clone()),
        (json!(false), json!(false))
    );
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("gldt-") && token.len() == 25, "{token}");

    // Neither the listing nor the single view shows the value again.
    let id = created["id"].as_i64().unwrap();
    let listed = get(&fake, TOKENS, &admin).await;
    assert!(!listed.body.contains(token));
    assert_eq!(listed.json()[0]["id"], id);
    let one = get(&fake, &format!("{TOKENS}/{id}"), &admin).await;
    assert_eq!(one.json()["name"], "svid-1-00");
    assert!(one.json().get("token").is_none());

    // Without a username or an expiry: GitLab's default username, and never expires.
    let r = post(
        &fake,
        "/api/v4/projects/1/deploy_tokens",
        &admin,
        &json!({ "name": "ci", "scopes": "read_registry,read_repository" }),
    )
    .await;
    let plain = r.json();
    assert_eq!(
        plain["username"],
        format!("gitlab+deploy-token-{}", plain["id"])
    );
    assert_eq!(plain["expires_at"], Value::Null);
    assert_eq!(fake.tokens_created(), 2);
    let infos = fake.deploy_tokens();
    assert_eq!(infos[0].project, "team-a/app");
    assert_eq!(infos[1].expires_at, None);
}

#[tokio::test]
async fn creation_is_validated_as_gitlab_does() {
    let fake = gitlab();
    let admin = fake.admin_token();
    let past = "2020-02-14T00:00:00.000Z";
    let cases = [
        (
            json!({ "scopes": ["read_registry"] }),
            json!({ "error": "name is missing" }),
        ),
        (
            json!({ "name": "a" }),
            json!({ "error": "scopes is missing" }),
        ),
        (
            json!({ "name": "a", "scopes": ["api"] }),
            json!({ "error": "scopes does not have a valid value" }),
        ),
        (
            json!({ "name": "a", "scopes": [] }),
            json!({ "message": "Scopes can't be blank" }),
        ),
        (
            json!({ "name": "a", "scopes": ["read_registry"], "expires_at": "tomorrow" }),
            json!({ "error": "expires_at is invalid" }),
        ),
        (
            json!({ "name": "a", "scopes": ["read_registry"], "expires_at": past }),
            json!({ "message": "Expires at must be in the future" }),
        ),
        (
            json!({ "name": "a", "scopes": ["read_registry"], "username": "a b" }),
            json!({ "message": "Username can contain only letters, digits, '_', '-', '+', and '.'" }),
        ),
        (
            json!({ "name": "a".repeat(256), "scopes": ["read_registry"] }),
            json!({ "message": "Name is too long (maximum is 255 characters)" }),
        ),
        (
            json!({ "name": " ", "scopes": ["read_registry"] }),
            json!({ "message": "Name can't be blank" }),
        ),
    ];
    for (body, expected) in cases {
        let r = post(&fake, TOKENS, &admin, &body).await;
        assert_eq!((r.status, r.json()), (400, expected), "{body}");
    }
    let form = post_raw(
        &fake,
        TOKENS,
        &admin,
        "application/x-www-form-urlencoded",
        b"name=a".to_vec(),
    )
    .await;
    assert_eq!(form.status, 415);
    let huge = post_raw(
        &fake,
        TOKENS,
        &admin,
        "application/json",
        vec![b' '; super::MAX_BODY_BYTES + 1],
    )
    .await;
    assert_eq!(huge.status, 413);
    let garbage = post_raw(&fake, TOKENS, &admin, "application/json", b"{".to_vec()).await;
    assert_eq!(garbage.status, 400);
    assert!(fake.deploy_tokens().is_empty());
    assert_eq!(fake.tokens_created(), 0);
    // A human's token may be made out of band with the same rules.
    assert!(
        fake.add_deploy_token("team-a/app", "old", &["read_registry"], Some(UNIX_EPOCH))
            .is_err()
    );
}

#[tokio::test]
async fn listings_page_at_most_a_hundred_and_filter_active_ones() {
    let fake = gitlab();
    let admin = fake.admin_token();
    let soon = SystemTime::now() + Duration::from_secs(60);
    for i in 0..130 {
        let expiry = (i < 10).then_some(soon);
        fake.add_deploy_token("team-a/app", &format!("t{i}"), &["read_registry"], expiry)
            .unwrap();
    }
    let first = get(&fake, &format!("{TOKENS}?per_page=500&page=1"), &admin).await;
    assert_eq!(first.json().as_array().unwrap().len(), 100);
    assert_eq!(first.header("x-total"), Some("130"));
    assert_eq!(first.header("x-per-page"), Some("100"));
    assert_eq!(first.header("x-next-page"), Some("2"));
    let second = get(&fake, &format!("{TOKENS}?per_page=100&page=2"), &admin).await;
    assert_eq!(second.json().as_array().unwrap().len(), 30);
    assert_eq!(second.header("x-next-page"), Some(""));
    let default = get(&fake, TOKENS, &admin).await;
    assert_eq!(default.json().as_array().unwrap().len(), 20);
    assert_eq!(
        get(&fake, &format!("{TOKENS}?page=x"), &admin).await.status,
        400
    );

    fake.advance_clock(Duration::from_secs(120));
    let active = get(
        &fake,
        &format!("{TOKENS}?active=true&per_page=100&page=2"),
        &admin,
    )
    .await;
    assert_eq!(active.header("x-total"), Some("120"));
    let inactive = get(&fake, &format!("{TOKENS}?active=false"), &admin).await;
    let inactive = inactive.json();
    assert_eq!(inactive.as_array().unwrap().len(), 10);
    assert_eq!(inactive[0]["expired"], true);
}

#[tokio::test]
async fn a_deleted_token_is_gone() {
    let fake = gitlab();
    let admin = fake.admin_token();
    let made = fake
        .add_deploy_token("team-a/app", "svid-x", &["read_registry"], None)
        .unwrap();
    let path = format!("{TOKENS}/{}", made.info.id);
    // Another project's path does not reach it.
    let other = format!(
        "/api/v4/projects/team-b%2Fweb/deploy_tokens/{}",
        made.info.id
    );
    let r = delete(&fake, &other, &admin).await;
    assert_eq!(
        (r.status, r.json()),
        (404, json!({ "message": "404 Deploy Token Not Found" }))
    );
    let r = delete(&fake, &path, &admin).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(delete(&fake, &path, &admin).await.status, 404);
    assert_eq!(
        delete(&fake, &format!("{TOKENS}/abc"), &admin).await.status,
        400
    );
    assert_eq!(fake.tokens_revoked(), 1);
    assert!(fake.deploy_tokens().is_empty());
}

#[tokio::test]
async fn faults_are_served_in_order_then_the_api_again() {
    let fake = gitlab();
    let admin = fake.admin_token();
    fake.fail_next(Fault::Hangup, 1);
    assert!(
        call(&fake, Method::GET, TOKENS, Some(&admin), None)
            .await
            .is_err()
    );
    fake.fail_next(Fault::Status(429), 2);
    for _ in 0..2 {
        let r = get(&fake, TOKENS, &admin).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.json(), json!({ "message": "429 Too Many Requests" }));
    }
    fake.fail_next(Fault::Malformed, 1);
    let r = post(&fake, TOKENS, &admin, &json!({})).await;
    assert_eq!(r.status, 201);
    assert!(serde_json::from_str::<Value>(&r.body).is_err());
    assert_eq!(get(&fake, TOKENS, &admin).await.status, 200);
    assert_eq!(fake.api_calls(), 5);
    assert_eq!(fake.tokens_created(), 0);
}

/// `/jwt/auth` with Basic credentials: (status, granted actions per access entry).
async fn registry_token(
    fake: &FakeGitlab,
    basic: Option<(&str, &str)>,
    query: &str,
) -> (u16, Vec<Vec<String>>) {
    use base64::Engine as _;
    let mut request = Call::get(format!("/jwt/auth?{query}"));
    if let Some((user, password)) = basic {
        request = request.auth(user, password);
    }
    let response = request.send(fake).await;
    if response.status != 200 {
        return (response.status, Vec::new());
    }
    let body = response.json();
    let payload = body["token"].as_str().unwrap().split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], "container_registry");
    assert_eq!(claims["iss"], "gitlab-issuer");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
    let actions = claims["access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a["actions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_owned())
                .collect()
        })
        .collect();
    (200, actions)
}

#[tokio::test]
async fn the_registry_token_service_grants_what_an_active_deploy_token_holds() {
    let fake = gitlab();
    let reader = fake
        .add_deploy_token("team-a/app", "r", &["read_registry"], None)
        .unwrap();
    let writer = fake
        .add_deploy_token(
            "team-a/app",
            "w",
            &["read_registry", "write_registry"],
            Some(SystemTime::now() + Duration::from_secs(60)),
        )
        .unwrap();
    let basic = |t: &super::DeployTokenSecret| {
        (t.info.username.clone(), t.token.expose_secret().to_owned())
    };
    let (ru, rp) = basic(&reader);
    let (wu, wp) = basic(&writer);
    let scope = "service=container_registry&scope=repository:team-a/app/web:pull,push\
                 &scope=repository:team-a/application:pull&scope=repository:team-b/web:pull";
    let (status, actions) = registry_token(&fake, Some((&ru, &rp)), scope).await;
    assert_eq!(status, 200);
    assert_eq!(actions, [vec!["pull".to_owned()], vec![], vec![]]);
    let (_, actions) = registry_token(&fake, Some((&wu, &wp)), scope).await;
    assert_eq!(actions[0], ["pull", "push"]);

    // Wrong value, no credentials, another service.
    let anything = "service=container_registry&scope=repository:team-a/app:pull";
    assert_eq!(
        registry_token(&fake, Some((&ru, "gldt-wrong")), anything)
            .await
            .0,
        401
    );
    assert_eq!(registry_token(&fake, None, anything).await.0, 401);
    let other = "service=other&scope=repository:team-a/app:pull";
    assert_eq!(registry_token(&fake, Some((&ru, &rp)), other).await.0, 400);
    // An expired or deleted deploy token is refused.
    fake.advance_clock(Duration::from_secs(120));
    assert_eq!(
        registry_token(&fake, Some((&wu, &wp)), anything).await.0,
        401
    );
    let path = format!("{TOKENS}/{}", reader.info.id);
    assert_eq!(delete(&fake, &path, &fake.admin_token()).await.status, 204);
    assert_eq!(
        registry_token(&fake, Some((&ru, &rp)), anything).await.0,
        401
    );
    // None of this is an API call.
    assert_eq!(fake.api_calls(), 1);
}

#[test]
fn datetimes_parse_as_rfc_3339_or_a_date() {
    assert_eq!(parse_datetime("1970-01-01"), Some(0));
    assert_eq!(parse_datetime("2027-01-15T08:00:01Z"), Some(1_800_000_001));
    assert_eq!(
        parse_datetime("2027-01-15T08:00:01.999Z"),
        Some(1_800_000_001)
    );
    assert_eq!(
        parse_datetime("2027-01-15T09:00:01+01:00"),
        Some(1_800_000_001)
    );
    assert_eq!(parse_datetime("2027-01-15 08:00:01z"), Some(1_800_000_001));
    for bad in [
        "",
        "2027-13-01",
        "2027-02-30",
        "2027-01-15T25:00:00Z",
        "2027-01-15T08:00:01",
        "2027-01-15T08:00:01.Z",
        "27-01-15",
        "2027-01-15T08:00:01+0100",
    ] {
        assert_eq!(parse_datetime(bad), None, "{bad}");
    }
    assert_eq!(datetime_millis(1_800_000_001), "2027-01-15T08:00:01.000Z");
    assert_eq!(
        parse_datetime(&datetime_millis(1_800_000_001)),
        Some(1_800_000_001)
    );
}
