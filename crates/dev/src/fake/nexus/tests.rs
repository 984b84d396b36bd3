//! The fake's rules, each driven over real HTTP with a hyper client.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use svid_broker_identity::secret::ExposeSecret as _;

use super::{FakeError, FakeNexus, Fault, NexusSpec};
use crate::fake::testing::{Call, Resp};

const ADMIN_PASSWORD: &str = "admin123";
const USERS: &str = "/service/rest/v1/security/users";

fn nexus() -> FakeNexus {
    FakeNexus::start(
        NexusSpec::new(["docker-pull", "docker-push"])
            .role("reader", &["nx-users-read"])
            .role(
                "ops",
                &["nx-users-create", "nx-users-read", "nx-users-delete"],
            )
            .admin("admin", ADMIN_PASSWORD),
    )
    .unwrap()
}

fn request<'a>(
    method: Method,
    path: &str,
    auth: Option<(&str, &str)>,
    body: Option<&Value>,
) -> Call<'a> {
    let mut request = Call::new(method, path);
    if let Some((user, password)) = auth {
        request = request.auth(user, password);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request
}

/// One request on a fresh connection; `Err` when the connection ends unanswered.
async fn try_call(
    nexus: &FakeNexus,
    method: Method,
    path: &str,
    auth: Option<(&str, &str)>,
    body: Option<&Value>,
) -> Result<Resp, hyper::Error> {
    request(method, path, auth, body).try_send(nexus).await
}

/// [`try_call`] within the shared call timeout; panics without a whole answer.
async fn call(
    nexus: &FakeNexus,
    method: Method,
    path: &str,
    auth: Option<(&str, &str)>,
    body: Option<&Value>,
) -> Resp {
    request(method, path, auth, body).send(nexus).await
}

/// `POST` of a user body to the users API.
async fn post_user(nexus: &FakeNexus, auth: Option<(&str, &str)>, body: &Value) -> Resp {
    call(nexus, Method::POST, USERS, auth, Some(body)).await
}

const ADMIN: Option<(&str, &str)> = Some(("admin", ADMIN_PASSWORD));

fn user_body(id: &str, roles: &[&str]) -> Value {
    json!({
        "userId": id,
        "firstName": "Test",
        "lastName": "User",
        "emailAddress": format!("{id}@example.org"),
        "password": "Secret-123",
        "status": "active",
        "roles": roles,
    })
}

fn ids(resp: &Resp) -> Vec<String> {
    let mut ids: Vec<String> = resp
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn create_answers_the_user_and_the_user_can_log_in() {
    let nexus = nexus();
    let resp = post_user(&nexus, ADMIN, &user_body("alice", &["docker-pull"])).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let user = resp.json();
    assert_eq!(user["userId"], "alice");
    assert_eq!(user["source"], "default");
    assert_eq!(user["status"], "active");
    assert_eq!(user["roles"], json!(["docker-pull"]));
    assert!(user.get("password").is_none());
    assert!(nexus.authenticate("alice", "Secret-123"));
    assert!(!nexus.authenticate("alice", "Secret-124"));
    assert_eq!(nexus.users_created(), 1);
    let info = nexus
        .users()
        .into_iter()
        .find(|u| u.user_id == "alice")
        .unwrap();
    assert_eq!(info.roles, ["docker-pull"]);
}

#[tokio::test]
async fn every_call_needs_basic_auth_of_an_active_user() {
    let nexus = nexus();
    for auth in [None, Some(("admin", "wrong")), Some(("nobody", "x"))] {
        let resp = call(&nexus, Method::GET, USERS, auth, None).await;
        assert_eq!(resp.status, 401);
        assert_eq!(
            resp.headers.get("www-authenticate").unwrap(),
            "BASIC realm=\"Sonatype Nexus Repository Manager\""
        );
        assert!(resp.body.is_empty());
    }
    // A user that is not active cannot log in.
    let mut body = user_body("locked", &["ops"]);
    body["status"] = json!("locked");
    assert_eq!(post_user(&nexus, ADMIN, &body).await.status, 200);
    let resp = call(
        &nexus,
        Method::GET,
        USERS,
        Some(("locked", "Secret-123")),
        None,
    )
    .await;
    assert_eq!(resp.status, 401);
    assert!(!nexus.authenticate("locked", "Secret-123"));
}

#[tokio::test]
async fn each_operation_needs_its_privilege() {
    let nexus = nexus();
    nexus
        .add_user("plain", "Secret-123", &["docker-push"])
        .unwrap();
    nexus.add_user("reader", "Secret-123", &["reader"]).unwrap();
    nexus.add_user("ops", "Secret-123", &["ops"]).unwrap();
    let plain = Some(("plain", "Secret-123"));
    let reader = Some(("reader", "Secret-123"));
    let ops = Some(("ops", "Secret-123"));
    let body = user_body("bob", &["docker-pull"]);

    for (method, path, b) in [
        (Method::GET, USERS.to_owned(), None),
        (Method::POST, USERS.to_owned(), Some(&body)),
        (Method::DELETE, format!("{USERS}/reader"), None),
    ] {
        let resp = call(&nexus, method, &path, plain, b).await;
        assert_eq!(resp.status, 403, "{path}");
        assert!(resp.body.is_empty());
    }
    assert_eq!(
        call(&nexus, Method::GET, USERS, reader, None).await.status,
        200
    );
    assert_eq!(post_user(&nexus, reader, &body).await.status, 403);
    assert_eq!(post_user(&nexus, ops, &body).await.status, 200);
    assert_eq!(
        call(&nexus, Method::DELETE, &format!("{USERS}/bob"), ops, None)
            .await
            .status,
        204
    );
    assert_eq!(nexus.users_deleted(), 1);
    assert!(!nexus.authenticate("bob", "Secret-123"));
}

#[tokio::test]
async fn create_validates_every_field_and_lists_every_violation() {
    let nexus = nexus();
    let body = json!({
        "userId": "  ",
        "firstName": "",
        "emailAddress": "not-an-address",
        "password": "",
        "roles": [],
    });
    let resp = post_user(&nexus, ADMIN, &body).await;
    assert_eq!(resp.status, 400);
    let mut found: Vec<(String, String)> = resp
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    let expected: Vec<(String, String)> = [
        (
            "PARAMETER emailAddress",
            "must be a well-formed email address",
        ),
        ("PARAMETER firstName", "must not be empty"),
        ("PARAMETER lastName", "must not be empty"),
        ("PARAMETER password", "must not be empty"),
        ("PARAMETER roles", "must not be empty"),
        ("PARAMETER status", "must not be null"),
        ("PARAMETER userId", "must not be blank"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(found, expected);

    let mut bad_status = user_body("carol", &["docker-pull"]);
    bad_status["status"] = json!("enabled");
    let resp = post_user(&nexus, ADMIN, &bad_status).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()[0]["id"], "status");

    let mut wrong_type = user_body("carol", &["docker-pull"]);
    wrong_type["roles"] = json!("docker-pull");
    let resp = post_user(&nexus, ADMIN, &wrong_type).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()[0]["id"], "roles");

    // A `.invalid` domain is well-formed.
    let mut invalid_tld = user_body("dave", &["docker-pull"]);
    invalid_tld["emailAddress"] = json!("dave@svid-broker.invalid");
    assert_eq!(post_user(&nexus, ADMIN, &invalid_tld).await.status, 200);
    assert_eq!(nexus.users_created(), 1);
}

#[tokio::test]
async fn duplicates_fail_as_nexus_fails_and_unknown_roles_are_dropped() {
    let nexus = nexus();
    let body = user_body("erin", &["docker-pull", "no-such-role"]);
    let resp = post_user(&nexus, ADMIN, &body).await;
    assert_eq!(resp.status, 200);
    // The answer echoes what was asked; reading the user shows only roles that exist.
    assert_eq!(resp.json()["roles"], json!(["docker-pull", "no-such-role"]));
    let listed = call(
        &nexus,
        Method::GET,
        &format!("{USERS}?userId=erin"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(listed.json()[0]["roles"], json!(["docker-pull"]));

    let resp = post_user(&nexus, ADMIN, &body).await;
    assert_eq!(resp.status, 500);
    assert!(resp.body.starts_with("ERROR: (ID "), "{}", resp.body);
    assert!(
        resp.body.contains("User erin already exists."),
        "{}",
        resp.body
    );
    assert_eq!(nexus.users_created(), 1);
}

#[tokio::test]
async fn the_user_id_filter_is_a_case_insensitive_prefix() {
    let nexus = nexus();
    for id in ["svid-1-aa", "SVID-2-bb", "ci-svid-x", "svidx"] {
        nexus.add_user(id, "Secret-123", &["docker-pull"]).unwrap();
    }
    let resp = call(
        &nexus,
        Method::GET,
        &format!("{USERS}?userId=svid-&source=default"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(ids(&resp), ["SVID-2-bb", "svid-1-aa"]);
    let all = call(&nexus, Method::GET, USERS, ADMIN, None).await;
    assert_eq!(ids(&all).len(), 5);
    let other = call(
        &nexus,
        Method::GET,
        &format!("{USERS}?source=LDAP"),
        ADMIN,
        None,
    )
    .await;
    assert!(ids(&other).is_empty());
}

#[tokio::test]
async fn delete_of_an_unknown_user_is_404() {
    let nexus = nexus();
    let resp = call(
        &nexus,
        Method::DELETE,
        &format!("{USERS}/ghost"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(resp.status, 404);
    assert!(resp.body.is_empty());
    assert_eq!(nexus.users_deleted(), 0);
}

#[tokio::test]
async fn a_password_rule_refuses_weak_passwords() {
    let nexus = FakeNexus::start(
        NexusSpec::new(["docker-pull"])
            .admin("admin", ADMIN_PASSWORD)
            .password_rule(12, "Password does not match corporate policy"),
    )
    .unwrap();
    let resp = post_user(&nexus, ADMIN, &user_body("weak", &["docker-pull"])).await;
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.json(),
        json!([{"id": "*", "message": "Password does not match corporate policy"}])
    );
    match nexus.add_user("weak", "short", &["docker-pull"]) {
        Err(FakeError::Refused { status: 400, .. }) => {}
        other => panic!("{other:?}"),
    }
    nexus
        .add_user("strong", "Long-enough-123", &["docker-pull"])
        .unwrap();
}

#[tokio::test]
async fn faults_apply_to_the_rest_api_and_are_counted() {
    let nexus = nexus();
    nexus.fail_next(Fault::Hangup, 1);
    assert!(
        try_call(&nexus, Method::GET, USERS, ADMIN, None)
            .await
            .is_err()
    );
    nexus.fail_next(Fault::Status(429), 1);
    let resp = call(&nexus, Method::GET, USERS, ADMIN, None).await;
    assert_eq!(
        (
            resp.status,
            resp.headers.get("retry-after").unwrap().to_str().unwrap()
        ),
        (429, "1")
    );
    nexus.fail_next(Fault::Malformed, 1);
    let resp = post_user(&nexus, ADMIN, &user_body("f", &["docker-pull"])).await;
    assert_eq!(resp.status, 200);
    assert!(serde_json::from_str::<Value>(&resp.body).is_err());
    assert_eq!(nexus.users_created(), 0);
    assert_eq!(
        call(&nexus, Method::GET, USERS, ADMIN, None).await.status,
        200
    );
    assert_eq!(nexus.api_calls(), 4);
    // Outside the REST API: no fault, not counted.
    assert_eq!(call(&nexus, Method::GET, "/", None, None).await.status, 404);
    assert_eq!(nexus.api_calls(), 4);
}

#[tokio::test]
async fn bodies_are_bounded() {
    let nexus = nexus();
    let mut body = user_body("big", &["docker-pull"]);
    body["lastName"] = json!("x".repeat(super::MAX_BODY_BYTES));
    let resp = post_user(&nexus, ADMIN, &body).await;
    assert_eq!(resp.status, 413);
    assert!(nexus.users().iter().all(|u| u.user_id != "big"));
}

#[test]
fn the_admin_line_and_the_user_list_hold_no_other_secret() {
    let nexus = FakeNexus::start(NexusSpec::new(["docker-pull"])).unwrap();
    let line = nexus.admin_credential_line();
    let (user, password) = line.expose_secret().split_once(':').unwrap();
    assert_eq!(user, "admin");
    assert!(nexus.authenticate(user, password));
    let shown = format!("{:?}", nexus.users());
    assert!(!shown.contains(password));
    nexus.advance_clock(Duration::from_secs(3600));
    nexus
        .add_user("later", "Secret-123", &["docker-pull"])
        .unwrap();
    let admin_created = nexus
        .users()
        .iter()
        .find(|u| u.user_id == "admin")
        .unwrap()
        .created;
    let later_created = nexus
        .users()
        .iter()
        .find(|u| u.user_id == "later")
        .unwrap()
        .created;
    assert!(later_created >= admin_created + 3600);
}
