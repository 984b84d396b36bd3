//! The fake's rules, each driven over real HTTP with a hyper client.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::Method;
use serde_json::{Value, json};
use svid_broker_identity::secret::ExposeSecret as _;

use super::{FakeHarbor, Fault, HarborSpec, RobotSecret};
use crate::fake::testing::{CALL_TIMEOUT, Call, Resp};

const ADMIN_PASSWORD: &str = "Harbor12345";

fn harbor() -> FakeHarbor {
    FakeHarbor::start(HarborSpec::new(["team-a", "team-b"]).admin("admin", ADMIN_PASSWORD)).unwrap()
}

/// Harbor's words on the shared [`Resp`] and [`Call`].
trait HarborResp {
    /// `errors[0].code` of Harbor's errors body.
    fn error_code(&self) -> String;
    /// Asserts this status and `errors[0].code`, showing the body when either differs.
    fn assert_error(&self, status: u16, code: &str);
}

impl HarborResp for Resp {
    fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.error_code().as_str()),
            (status, code),
            "{}",
            self.body
        );
    }
}

trait AdminCall {
    /// Basic credentials of the spec's admin.
    fn admin(self) -> Self;
}

impl AdminCall for Call<'_> {
    fn admin(self) -> Self {
        self.auth("admin", ADMIN_PASSWORD)
    }
}

fn robot_body(name: &str, project: &str, access: &[(&str, &str)], duration: i64) -> Value {
    json!({
        "name": name,
        "description": "made by a test",
        "level": "project",
        "duration": duration,
        "permissions": [{
            "kind": "project",
            "namespace": project,
            "access": access.iter().map(|(r, a)| json!({"resource": r, "action": a})).collect::<Vec<_>>(),
        }],
    })
}

async fn create(harbor: &FakeHarbor, auth: (&str, &str), body: &Value) -> Resp {
    Call::new(Method::POST, "/api/v2.0/robots")
        .auth(auth.0, auth.1)
        .json(body)
        .send(harbor)
        .await
}

/// Creates the project robot [`robot_body`] describes, as `auth`.
async fn create_robot(
    harbor: &FakeHarbor,
    auth: (&str, &str),
    name: &str,
    project: &str,
    access: &[(&str, &str)],
    duration: i64,
) -> Resp {
    create(harbor, auth, &robot_body(name, project, access, duration)).await
}

fn manager(harbor: &FakeHarbor) -> RobotSecret {
    harbor
        .add_robot(
            "team-a",
            "manager",
            &[
                ("robot", "create"),
                ("robot", "list"),
                ("robot", "delete"),
                ("repository", "pull"),
                ("repository", "push"),
            ],
            -1,
        )
        .unwrap()
}

fn token_path(service: &str, scopes: &[&str]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("service", service);
    for s in scopes {
        q.append_pair("scope", s);
    }
    format!("/service/token?{}", q.finish())
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn actions_of(resp: &Resp) -> Vec<Vec<String>> {
    let c = claims(resp.json()["token"].as_str().unwrap());
    c["access"]
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
        .collect()
}

// === authentication ===

#[tokio::test]
async fn api_calls_without_valid_credentials_get_401_with_the_errors_body() {
    let harbor = harbor();
    let none = Call::get("/api/v2.0/robots?q=Level=project,ProjectID=1")
        .send(&harbor)
        .await;
    assert_eq!(none.status, 401, "{}", none.body);
    assert_eq!(
        none.json(),
        json!({"errors": [{"code": "UNAUTHORIZED", "message": "unauthorized"}]})
    );
    let wrong = Call::get("/api/v2.0/robots?q=Level=project,ProjectID=1")
        .auth("admin", "nope")
        .send(&harbor)
        .await;
    assert_eq!(wrong.status, 401);
    let wrong_robot = Call::get("/api/v2.0/robots?q=Level=project,ProjectID=1")
        .auth("robot$team-a+manager", "Wrong123")
        .send(&harbor)
        .await;
    assert_eq!(wrong_robot.status, 401);
    let create_anon = Call::new(Method::POST, "/api/v2.0/robots")
        .json(&robot_body("x", "team-a", &[("repository", "pull")], 1))
        .send(&harbor)
        .await;
    assert_eq!(create_anon.status, 401, "{}", create_anon.body);
    let admin = Call::get("/api/v2.0/robots?q=Level=project,ProjectID=1")
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(admin.status, 200, "{}", admin.body);
    assert_eq!(harbor.api_calls(), 5);
}

#[tokio::test]
async fn expired_disabled_and_deleted_robots_cannot_authenticate() {
    let harbor = harbor();
    let m = manager(&harbor);
    let list = "/api/v2.0/robots?q=Level=project,ProjectID=1";
    let short = harbor
        .add_robot("team-a", "short", &[("robot", "list")], 1)
        .unwrap();
    assert_eq!(
        Call::get(list)
            .auth(&short.name, short.secret.expose_secret())
            .send(&harbor)
            .await
            .status,
        200
    );
    harbor.advance_clock(Duration::from_secs(86_400));
    let expired = Call::get(list)
        .auth(&short.name, short.secret.expose_secret())
        .send(&harbor)
        .await;
    assert_eq!(
        expired.status, 401,
        "expires_at <= now is expired: {}",
        expired.body
    );
    // The never-expiring manager still works.
    assert_eq!(
        Call::get(list)
            .auth(&m.name, m.secret.expose_secret())
            .send(&harbor)
            .await
            .status,
        200
    );

    let mut body = robot_body("off", "team-a", &[("robot", "list")], 5);
    body["disable"] = json!(true);
    let off = create(&harbor, ("admin", ADMIN_PASSWORD), &body).await;
    assert_eq!(off.status, 201, "{}", off.body);
    let off_name = off.json()["name"].as_str().unwrap().to_owned();
    let off_secret = off.json()["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        Call::get(list)
            .auth(&off_name, &off_secret)
            .send(&harbor)
            .await
            .status,
        401
    );

    let id = harbor
        .robots()
        .iter()
        .find(|r| r.name == m.name)
        .unwrap()
        .id;
    let del = Call::new(Method::DELETE, format!("/api/v2.0/robots/{id}"))
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(del.status, 200, "{}", del.body);
    assert_eq!(
        Call::get(list)
            .auth(&m.name, m.secret.expose_secret())
            .send(&harbor)
            .await
            .status,
        401
    );
}

// === create ===

#[tokio::test]
async fn admin_creates_a_project_robot_named_and_expiring_as_harbor_does() {
    let harbor = harbor();
    let mut body = robot_body(
        "ci-1",
        "team-a",
        &[("repository", "pull"), ("repository", "push")],
        3,
    );
    body["secret"] = json!("IgnoredSecret1");
    body["unknown_field"] = json!({"anything": 1});
    let resp = create(&harbor, ("admin", ADMIN_PASSWORD), &body).await;
    assert_eq!(resp.status, 201, "{}", resp.body);
    let created = resp.json();
    assert_eq!(created["name"], "robot$team-a+ci-1");
    let secret = created["secret"].as_str().unwrap();
    assert_ne!(secret, "IgnoredSecret1", "the body's secret is ignored");
    assert!(
        super::rules::is_valid_secret(secret) && secret.len() == 32,
        "{secret}"
    );
    let id = created["id"].as_i64().unwrap();
    assert_eq!(
        resp.header("location"),
        Some(format!("/api/v2.0/robots/{id}").as_str())
    );
    let info = harbor.robots().into_iter().find(|r| r.id == id).unwrap();
    assert_eq!(info.expires_at, info.creation_time + 3 * 86_400);
    assert_eq!(created["expires_at"].as_i64(), Some(info.expires_at));
    assert_eq!(info.project.as_deref(), Some("team-a"));
    assert_eq!(info.description, "made by a test");
    assert!(
        created["creation_time"]
            .as_str()
            .unwrap()
            .ends_with(".000Z"),
        "{created}"
    );
    assert_eq!(harbor.robots_created(), 1);

    let never = create_robot(
        &harbor,
        ("admin", ADMIN_PASSWORD),
        "forever",
        "team-a",
        &[("repository", "pull")],
        -1,
    )
    .await;
    assert_eq!(never.json()["expires_at"], -1);
    // Member names match case-insensitively, as Go's decoder does.
    let shouting = json!({"NAME": "loud", "Level": "project", "Duration": 1,
        "Permissions": [{"Kind": "project", "Namespace": "team-b", "Access": [{"Resource": "repository", "Action": "pull"}]}]});
    let loud = create(&harbor, ("admin", ADMIN_PASSWORD), &shouting).await;
    assert_eq!(loud.status, 201, "{}", loud.body);
    assert_eq!(loud.json()["name"], "robot$team-b+loud");
}

#[tokio::test]
async fn create_validates_like_robot_go() {
    let harbor = harbor();
    let admin = ("admin", ADMIN_PASSWORD);
    let pull = [("repository", "pull")];
    let mut cases: Vec<(&str, Value, u16, &str)> = Vec::new();
    for bad in ["", "Upper", "a+b", "-lead", "trail.", "two..dots", "sp ace"] {
        cases.push((
            "name",
            robot_body(bad, "team-a", &pull, 1),
            400,
            "BAD_REQUEST",
        ));
    }
    for d in [0, -2, i64::from(i32::MAX)] {
        cases.push((
            "duration",
            robot_body("d", "team-a", &pull, d),
            400,
            "BAD_REQUEST",
        ));
    }
    let mut level = robot_body("lvl", "team-a", &pull, 1);
    level["level"] = json!("team");
    cases.push(("level", level, 400, "BAD_REQUEST"));
    let mut empty = robot_body("empty", "team-a", &pull, 1);
    empty["permissions"] = json!([]);
    cases.push(("no permissions", empty, 400, "BAD_REQUEST"));
    cases.push((
        "no access",
        robot_body("noacc", "team-a", &[], 1),
        400,
        "BAD_REQUEST",
    ));
    let mut null_access = robot_body("nullacc", "team-a", &pull, 1);
    null_access["permissions"][0]["access"] = json!([null]);
    cases.push(("null access", null_access, 400, "BAD_REQUEST"));
    let mut two = robot_body("two", "team-a", &pull, 1);
    let second = two["permissions"][0].clone();
    two["permissions"].as_array_mut().unwrap().push(second);
    cases.push(("two project permissions", two, 400, "BAD_REQUEST"));
    let mut kind = robot_body("kind", "team-a", &pull, 1);
    kind["permissions"][0]["kind"] = json!("cluster");
    cases.push(("kind", kind, 400, "BAD_REQUEST"));
    cases.push((
        "unknown pair",
        robot_body("pair", "team-a", &[("repository", "fly")], 1),
        400,
        "BAD_REQUEST",
    ));
    cases.push((
        "system pair in project",
        robot_body("sys", "team-a", &[("user", "create")], 1),
        400,
        "BAD_REQUEST",
    ));
    cases.push((
        "missing project",
        robot_body("ghost", "team-z", &pull, 1),
        404,
        "NOT_FOUND",
    ));
    let mut wrong_type = robot_body("typed", "team-a", &pull, 1);
    wrong_type["duration"] = json!("1");
    cases.push(("duration as string", wrong_type, 400, "BAD_REQUEST"));
    let mut fraction = robot_body("frac", "team-a", &pull, 1);
    fraction["duration"] = json!(1.5);
    cases.push(("fractional duration", fraction, 400, "BAD_REQUEST"));
    cases.push((
        "long name",
        robot_body(&"a".repeat(250), "team-a", &pull, 1),
        500,
        "UNKNOWN",
    ));
    for (what, body, status, code) in cases {
        let resp = create(&harbor, admin, &body).await;
        assert_eq!(resp.status, status, "{what}: {}", resp.body);
        assert_eq!(resp.error_code(), code, "{what}");
    }
    assert!(harbor.robots().is_empty(), "nothing refused was stored");

    let ok = robot_body("dup", "team-a", &pull, 1);
    assert_eq!(create(&harbor, admin, &ok).await.status, 201);
    let dup = create(&harbor, admin, &ok).await;
    dup.assert_error(409, "CONFLICT");
    // The same name in another project is another robot.
    assert_eq!(
        create(&harbor, admin, &robot_body("dup", "team-b", &pull, 1))
            .await
            .status,
        201
    );
    assert_eq!(
        create(
            &harbor,
            admin,
            &robot_body("edge", "team-a", &pull, i64::from(i32::MAX) - 1)
        )
        .await
        .status,
        201
    );
}

#[tokio::test]
async fn create_refuses_bodies_that_are_empty_unparsable_untyped_or_too_large() {
    let harbor = harbor();
    let send = |body: Vec<u8>, content_type: &'static str| {
        Call::new(Method::POST, "/api/v2.0/robots")
            .admin()
            .body(content_type, body)
    };
    let empty = send(Vec::new(), "application/json").send(&harbor).await;
    empty.assert_error(422, "UNPROCESSABLE_ENTITY");
    let broken = send(b"{\"name\":".to_vec(), "application/json")
        .send(&harbor)
        .await;
    assert_eq!(broken.status, 400, "{}", broken.body);
    let array = send(b"[]".to_vec(), "application/json").send(&harbor).await;
    assert_eq!(array.status, 400, "{}", array.body);
    let text = send(b"{}".to_vec(), "text/plain").send(&harbor).await;
    assert_eq!(text.status, 415, "{}", text.body);
    let untyped = Call::new(Method::POST, "/api/v2.0/robots")
        .admin()
        .unlabelled_body(b"{}".to_vec());
    assert_eq!(
        untyped.send(&harbor).await.status,
        415,
        "no Content-Type is octet-stream"
    );
    let empty_text = send(Vec::new(), "text/plain").send(&harbor).await;
    assert_eq!(
        empty_text.status, 422,
        "an empty body is 'required' before its type counts"
    );
    let mut big = robot_body("big", "team-a", &[("repository", "pull")], 1);
    big["description"] = json!("x".repeat(super::MAX_BODY_BYTES));
    let large = send(big.to_string().into_bytes(), "application/json")
        .send(&harbor)
        .await;
    large.assert_error(413, "REQUEST_ENTITY_TOO_LARGE");
}

#[tokio::test]
async fn a_robot_creates_robots_only_within_its_own_permissions_compared_as_exact_strings() {
    let harbor = harbor();
    let m = manager(&harbor);
    let me = (m.name.as_str(), m.secret.expose_secret());
    // Narrower, with the same (empty) effect the UI stored: allowed.
    let ok = create_robot(&harbor, me, "child", "team-a", &[("repository", "pull")], 1).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(
        harbor
            .robots()
            .iter()
            .find(|r| r.name == "robot$team-a+child")
            .unwrap()
            .access,
        [("repository".to_owned(), "pull".to_owned())]
    );
    // `effect: allow` is not the stored empty effect: refused.
    let mut allow = robot_body("allow", "team-a", &[("repository", "pull")], 1);
    allow["permissions"][0]["access"][0]["effect"] = json!("allow");
    let refused = create(&harbor, me, &allow).await;
    refused.assert_error(403, "DENIED");
    // Broader than the creator: refused.
    let wider = create_robot(
        &harbor,
        me,
        "wider",
        "team-a",
        &[("repository", "delete")],
        1,
    )
    .await;
    wider.assert_error(403, "DENIED");
    // Another project: no robot:create there.
    let other = create_robot(&harbor, me, "other", "team-b", &[("repository", "pull")], 1).await;
    other.assert_error(403, "FORBIDDEN");
    // A project that does not exist is project 0 for the permission check: 403, not 404.
    let ghost = create_robot(&harbor, me, "ghost", "team-z", &[("repository", "pull")], 1).await;
    assert_eq!(ghost.status, 403, "{}", ghost.body);
    // System robots need system access.
    let mut system = robot_body("sys", "team-a", &[("repository", "pull")], 1);
    system["level"] = json!("system");
    assert_eq!(create(&harbor, me, &system).await.status, 403);
    // A robot without robot:create may not create at all.
    let puller = harbor
        .add_robot("team-a", "puller", &[("repository", "pull")], 1)
        .unwrap();
    let no = create_robot(
        &harbor,
        (&puller.name, puller.secret.expose_secret()),
        "n",
        "team-a",
        &[("repository", "pull")],
        1,
    )
    .await;
    assert_eq!(no.status, 403, "{}", no.body);
    assert_eq!(harbor.robots_created(), 1);
}

#[tokio::test]
async fn admin_creates_system_robots_whose_project_grants_cover_every_project() {
    let harbor = harbor();
    let body = json!({"name": "fleet", "level": "system", "duration": -1, "permissions": [
        {"kind": "system", "namespace": "/", "access": [{"resource": "robot", "action": "list"}]},
        {"kind": "project", "namespace": "*", "access": [{"resource": "repository", "action": "pull"}, {"resource": "robot", "action": "list"}]},
    ]});
    let resp = create(&harbor, ("admin", ADMIN_PASSWORD), &body).await;
    assert_eq!(resp.status, 201, "{}", resp.body);
    assert_eq!(resp.json()["name"], "robot$fleet");
    let secret = resp.json()["secret"].as_str().unwrap().to_owned();
    let system = Call::get("/api/v2.0/robots?q=Level=system")
        .auth("robot$fleet", &secret)
        .send(&harbor)
        .await;
    assert_eq!(system.status, 200, "{}", system.body);
    let in_b = Call::get("/api/v2.0/robots?q=Level=project,ProjectID=2")
        .auth("robot$fleet", &secret)
        .send(&harbor)
        .await;
    assert_eq!(in_b.status, 200, "{}", in_b.body);
    let mut bad_ns = body.clone();
    bad_ns["name"] = json!("badns");
    bad_ns["permissions"][0]["namespace"] = json!("team-a");
    let refused = create(&harbor, ("admin", ADMIN_PASSWORD), &bad_ns).await;
    assert_eq!(
        refused.status, 400,
        "system permissions need namespace '/': {}",
        refused.body
    );
}

#[tokio::test]
async fn a_system_robot_with_project_star_creates_project_robots_within_its_grants() {
    let harbor = harbor();
    let body = json!({"name": "manager", "level": "system", "duration": -1, "permissions": [
        {"kind": "project", "namespace": "*", "access": [
            {"resource": "robot", "action": "create"}, {"resource": "repository", "action": "pull"}]},
    ]});
    let made = create(&harbor, ("admin", ADMIN_PASSWORD), &body)
        .await
        .json();
    let secret = made["secret"].as_str().unwrap().to_owned();
    let me = ("robot$manager", secret.as_str());
    let child = create_robot(&harbor, me, "child", "team-b", &[("repository", "pull")], 1).await;
    assert_eq!(child.status, 201, "{}", child.body);
    assert_eq!(child.json()["name"], "robot$team-b+child");
    let wider = create_robot(&harbor, me, "wider", "team-b", &[("repository", "push")], 1).await;
    assert_eq!(wider.status, 403, "{}", wider.body);
    // A system robot gets no implied pull from push, and none of its grants reach the system
    // level unless it holds a system permission.
    let list = Call::get("/api/v2.0/robots")
        .auth(me.0, me.1)
        .send(&harbor)
        .await;
    assert_eq!(list.status, 403, "{}", list.body);
}

// === list, get, delete ===

#[tokio::test]
async fn listing_needs_the_numeric_project_id_pages_at_most_100_and_hides_secrets() {
    let harbor = harbor();
    for i in 0..12 {
        harbor
            .add_robot(
                "team-a",
                &format!("svid-{i:02}"),
                &[("repository", "pull")],
                1,
            )
            .unwrap();
    }
    harbor
        .add_robot("team-b", "svid-b", &[("repository", "pull")], 1)
        .unwrap();
    let page1 = Call::get("/api/v2.0/robots?q=Level=project,ProjectID=1")
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(page1.status, 200, "{}", page1.body);
    assert_eq!(page1.header("x-total-count"), Some("12"));
    let robots = page1.json();
    assert_eq!(
        robots.as_array().unwrap().len(),
        10,
        "the default page size is 10"
    );
    assert_eq!(robots[0]["name"], "robot$team-a+svid-00");
    assert!(
        robots
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("secret").is_none() && r.get("description").is_none()),
        "no secret, and an empty description is omitted as Harbor's model does: {robots}"
    );
    assert_eq!(
        robots[0]["permissions"][0]["access"][0],
        json!({"resource": "repository", "action": "pull"})
    );
    assert!(page1.header("link").unwrap().contains("rel=\"next\""));
    let page2 = Call::get("/api/v2.0/robots?q=Level=project,ProjectID=1&page=2&page_size=10")
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(page2.json().as_array().unwrap().len(), 2);

    let too_big = Call::get("/api/v2.0/robots?q=Level=project,ProjectID=1&page_size=101")
        .admin()
        .send(&harbor)
        .await;
    too_big.assert_error(422, "UNPROCESSABLE_ENTITY");
    let not_int = Call::get("/api/v2.0/robots?page=x")
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(not_int.status, 422);
    let by_name = Call::get("/api/v2.0/robots?q=Level=project,ProjectID=team-a")
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(by_name.status, 400, "{}", by_name.body);
    let no_id = Call::get("/api/v2.0/robots?q=Level=project")
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(no_id.status, 400);
    let bad_q = Call::get("/api/v2.0/robots?q=Level")
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(bad_q.status, 400);

    // `name=~` is a substring of the stored `<project>+<name>`, not a prefix.
    let fuzzy = Call::get("/api/v2.0/robots?q=Level=project,ProjectID=1,name=~vid-1&page_size=100")
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(fuzzy.header("x-total-count"), Some("2"), "{}", fuzzy.body);
    // `q` is unescaped once more, so a `+` has to arrive as `%2B` after the first decoding.
    let plus_once = Call::get("/api/v2.0/robots?q=Level=project,ProjectID=1,name=team-a%2Bsvid-03")
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(
        plus_once.header("x-total-count"),
        Some("0"),
        "{}",
        plus_once.body
    );
    let plus_twice =
        Call::get("/api/v2.0/robots?q=Level=project,ProjectID=1,name=team-a%252Bsvid-03")
            .admin()
            .send(&harbor)
            .await;
    assert_eq!(
        plus_twice.header("x-total-count"),
        Some("1"),
        "{}",
        plus_twice.body
    );
    let sorted = Call::get("/api/v2.0/robots?q=Level=project,ProjectID=1&sort=-name&page_size=1")
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(sorted.json()[0]["name"], "robot$team-a+svid-11");
}

#[tokio::test]
async fn robots_list_and_delete_only_where_they_hold_the_permission() {
    let harbor = harbor();
    let m = manager(&harbor);
    let me = (m.name.as_str(), m.secret.expose_secret());
    let in_b = harbor
        .add_robot("team-b", "victim", &[("repository", "pull")], 1)
        .unwrap();
    let b_id = harbor
        .robots()
        .iter()
        .find(|r| r.name == in_b.name)
        .unwrap()
        .id;
    let list_b = Call::get("/api/v2.0/robots?q=Level=project,ProjectID=2")
        .auth(me.0, me.1)
        .send(&harbor)
        .await;
    assert_eq!(list_b.status, 403, "{}", list_b.body);
    let list_system = Call::get("/api/v2.0/robots")
        .auth(me.0, me.1)
        .send(&harbor)
        .await;
    assert_eq!(
        list_system.status, 403,
        "no Level means system robots: {}",
        list_system.body
    );
    let del_b = Call::new(Method::DELETE, format!("/api/v2.0/robots/{b_id}"))
        .auth(me.0, me.1)
        .send(&harbor)
        .await;
    assert_eq!(del_b.status, 403);
    let missing = Call::new(Method::DELETE, "/api/v2.0/robots/9999")
        .auth(me.0, me.1)
        .send(&harbor)
        .await;
    missing.assert_error(404, "NOT_FOUND");
    let not_int = Call::new(Method::DELETE, "/api/v2.0/robots/abc")
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(not_int.status, 422);

    let child = create_robot(&harbor, me, "child", "team-a", &[("repository", "pull")], 1)
        .await
        .json();
    let child_id = child["id"].as_i64().unwrap();
    let got = Call::get(format!("/api/v2.0/robots/{child_id}"))
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(got.json()["creator_type"], "robot");
    let del = Call::new(Method::DELETE, format!("/api/v2.0/robots/{child_id}"))
        .auth(me.0, me.1)
        .send(&harbor)
        .await;
    assert_eq!(del.status, 200, "{}", del.body);
    assert_eq!(harbor.robots_deleted(), 1);
    let again = Call::new(Method::DELETE, format!("/api/v2.0/robots/{child_id}"))
        .auth(me.0, me.1)
        .send(&harbor)
        .await;
    assert_eq!(again.status, 404);
    let puller = harbor
        .add_robot("team-a", "puller", &[("repository", "pull")], 1)
        .unwrap();
    let m_id = harbor
        .robots()
        .iter()
        .find(|r| r.name == m.name)
        .unwrap()
        .id;
    let by_puller = Call::new(Method::DELETE, format!("/api/v2.0/robots/{m_id}"))
        .auth(&puller.name, puller.secret.expose_secret())
        .send(&harbor)
        .await;
    assert_eq!(by_puller.status, 403);
}

// === projects ===

#[tokio::test]
async fn projects_are_found_by_substring_name_or_id_and_visible_as_harbor_decides() {
    let harbor = FakeHarbor::start(
        HarborSpec::new(["team-a", "team-b", "123"])
            .public_project("library")
            .admin("admin", ADMIN_PASSWORD),
    )
    .unwrap();
    let listed = Call::get("/api/v2.0/projects?name=TEAM")
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.header("x-total-count"), Some("2"), "{}", listed.body);
    assert_eq!(listed.json()[0]["name"], "team-a");
    assert_eq!(listed.json()[0]["project_id"], 1);
    assert_eq!(listed.json()[0]["metadata"]["public"], "false");

    let anon = Call::get("/api/v2.0/projects").send(&harbor).await;
    assert_eq!(
        anon.status, 200,
        "anonymous lists public projects: {}",
        anon.body
    );
    assert_eq!(
        anon.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].clone())
            .collect::<Vec<_>>(),
        [json!("library")]
    );
    let m = manager(&harbor);
    let robot = Call::get("/api/v2.0/projects")
        .auth(&m.name, m.secret.expose_secret())
        .send(&harbor)
        .await;
    let names: Vec<Value> = robot
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, [json!("library"), json!("team-a")]);

    let by_name = Call::get("/api/v2.0/projects/team-b")
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(by_name.json()["project_id"], 2);
    let by_id = Call::get("/api/v2.0/projects/2")
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(by_id.json()["name"], "team-b");
    let numeric_name = Call::get("/api/v2.0/projects/123")
        .admin()
        .header("X-Is-Resource-Name", "true")
        .send(&harbor)
        .await;
    assert_eq!(
        numeric_name.json()["project_id"],
        3,
        "{}",
        numeric_name.body
    );
    let as_id = Call::get("/api/v2.0/projects/123")
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(
        as_id.status, 404,
        "123 is an id unless X-Is-Resource-Name: {}",
        as_id.body
    );
    let private_anon = Call::get("/api/v2.0/projects/team-a").send(&harbor).await;
    assert_eq!(private_anon.status, 401);
    // A robot needs project:read to read its project, which the manager lacks.
    let no_read = Call::get("/api/v2.0/projects/team-a")
        .auth(&m.name, m.secret.expose_secret())
        .send(&harbor)
        .await;
    assert_eq!(no_read.status, 403, "{}", no_read.body);
    let too_big = Call::get("/api/v2.0/projects?page_size=500")
        .admin()
        .send(&harbor)
        .await;
    assert_eq!(too_big.status, 422);
}

// === token service ===

#[tokio::test]
async fn the_token_service_grants_what_the_robot_may_do_in_the_project() {
    let harbor = harbor();
    let pusher = harbor
        .add_robot("team-a", "pusher", &[("repository", "push")], 1)
        .unwrap();
    let auth = (pusher.name.as_str(), pusher.secret.expose_secret());
    let service = harbor.service().to_owned();
    let resp = Call::get(token_path(
        &service,
        &[
            "repository:team-a/app:pull",
            "repository:team-b/app:pull,push",
        ],
    ))
    .auth(auth.0, auth.1)
    .send(&harbor)
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let body = resp.json();
    assert_eq!(body["access_token"], "", "Harbor never fills access_token");
    assert_eq!(body["expires_in"], 1800);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
    // Harbor answers with every registry action the robot holds (push brings pull), not the
    // requested ones; nothing in another project.
    assert_eq!(
        actions_of(&resp),
        [vec!["pull".to_owned(), "push".to_owned()], vec![]]
    );
    let c = claims(body["token"].as_str().unwrap());
    assert_eq!(c["sub"], pusher.name);
    assert_eq!(c["aud"], service, "aud is a string");
    assert_eq!(c["iss"], harbor.issuer());
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        1800
    );
    assert_eq!(
        c["access"][0],
        json!({"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]})
    );

    // `account` is ignored (the credentials decide), and a name may hold colons.
    let mut with_account = token_path(&service, &["repository:team-a/app:extra:pull"]);
    with_account.push_str("&account=someone-else");
    let colon = Call::get(with_account)
        .auth(auth.0, auth.1)
        .send(&harbor)
        .await;
    let c = claims(colon.json()["token"].as_str().unwrap());
    assert_eq!(c["sub"], pusher.name);
    assert_eq!(c["access"][0]["name"], "team-a/app:extra");
    assert_eq!(actions_of(&colon), [vec!["pull", "push"]]);

    let admin = Call::get(token_path(
        &service,
        &["repository:team-b/app:pull registry:catalog:*"],
    ))
    .admin()
    .send(&harbor)
    .await;
    assert_eq!(
        actions_of(&admin),
        [vec!["pull", "push", "delete", "scanner-pull"], vec!["*"]]
    );
    let odd = Call::get(token_path(
        &service,
        &[
            "repository:nosuchproject/app:pull",
            "repository:noslash:pull",
            "plugin:x:pull",
        ],
    ))
    .auth(auth.0, auth.1)
    .send(&harbor)
    .await;
    assert_eq!(actions_of(&odd), [Vec::<String>::new(), vec![], vec![]]);
}

#[tokio::test]
async fn bad_robots_get_empty_tokens_with_a_scope_and_401_without() {
    let harbor = harbor();
    let service = harbor.service().to_owned();
    let scoped = token_path(&service, &["repository:team-a/app:pull"]);
    let bad = Call::get(&scoped)
        .auth("robot$team-a+ghost", "Secret123")
        .send(&harbor)
        .await;
    assert_eq!(bad.status, 200, "{}", bad.body);
    assert_eq!(actions_of(&bad), [Vec::<String>::new()]);
    assert_eq!(claims(bad.json()["token"].as_str().unwrap())["sub"], "");
    let login = Call::get(token_path(&service, &[]))
        .auth("robot$team-a+ghost", "Secret123")
        .send(&harbor)
        .await;
    assert_eq!((login.status, login.body.as_str()), (401, ""));
    let wrong_service = Call::get(token_path(
        "other-registry",
        &["repository:team-a/app:pull"],
    ))
    .admin()
    .send(&harbor)
    .await;
    assert_eq!(wrong_service.status, 400);
    assert_eq!(
        wrong_service.body,
        "Unable to handle service: other-registry"
    );
    // A valid robot logging in (no scope) gets a token with `access: null`.
    let puller = harbor
        .add_robot("team-a", "puller", &[("repository", "pull")], 1)
        .unwrap();
    let ok = Call::get(token_path(&service, &[]))
        .auth(&puller.name, puller.secret.expose_secret())
        .send(&harbor)
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        claims(ok.json()["token"].as_str().unwrap())["access"],
        Value::Null
    );
    // Expired: back to the anonymous answers.
    harbor.advance_clock(Duration::from_secs(2 * 86_400));
    let expired = Call::get(&scoped)
        .auth(&puller.name, puller.secret.expose_secret())
        .send(&harbor)
        .await;
    assert_eq!(actions_of(&expired), [Vec::<String>::new()]);
}

#[tokio::test]
async fn public_projects_grant_pull_to_anyone() {
    let harbor = FakeHarbor::start(HarborSpec::new(["team-a"]).public_project("library")).unwrap();
    let resp = Call::get(token_path(
        harbor.service(),
        &["repository:library/busybox:pull,push"],
    ))
    .send(&harbor)
    .await;
    assert_eq!(actions_of(&resp), [vec!["pull"]]);
}

#[tokio::test]
async fn registry_tokens_are_es256_signed_by_a_leaf_of_the_published_ca() {
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    let harbor = harbor();
    let resp = Call::get(token_path(
        harbor.service(),
        &["repository:team-a/app:pull"],
    ))
    .admin()
    .send(&harbor)
    .await;
    let token = resp.json()["token"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    let leaf_der = STANDARD.decode(header["x5c"][0].as_str().unwrap()).unwrap();
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    let ca_pem = harbor.token_ca_pem();
    let (_, ca_block) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).unwrap();
    let ca = ca_block.parse_x509().unwrap();
    assert_eq!(leaf.issuer(), ca.subject());
    let ca_key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        ca.public_key().subject_public_key.data.as_ref(),
    );
    ca_key
        .verify(
            leaf.tbs_certificate.as_ref(),
            leaf.signature_value.data.as_ref(),
        )
        .expect("the CA signed the leaf");
    let leaf_key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        leaf.public_key().subject_public_key.data.as_ref(),
    );
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    assert_eq!(signature.len(), 64, "raw r || s");
    leaf_key
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("the leaf signed the token");
}

// === faults ===

#[tokio::test]
async fn queued_faults_hit_the_next_api_calls_then_stop() {
    let harbor = harbor();
    let list = "/api/v2.0/robots?q=Level=project,ProjectID=1";
    harbor.fail_next(Fault::Status(503), 2);
    for _ in 0..2 {
        let r = Call::get(list).admin().send(&harbor).await;
        r.assert_error(503, "UNKNOWN");
    }
    assert_eq!(Call::get(list).admin().send(&harbor).await.status, 200);
    harbor.fail_next(Fault::Status(429), 1);
    let limited = Call::get(list).admin().send(&harbor).await;
    assert_eq!(
        (limited.status, limited.header("retry-after")),
        (429, Some("1"))
    );
    harbor.fail_next(Fault::Malformed, 1);
    let malformed = Call::new(Method::POST, "/api/v2.0/robots")
        .admin()
        .json(&robot_body("m", "team-a", &[("repository", "pull")], 1))
        .send(&harbor)
        .await;
    assert_eq!(malformed.status, 201);
    assert!(
        serde_json::from_str::<Value>(&malformed.body).is_err(),
        "{}",
        malformed.body
    );
    assert!(harbor.robots().is_empty(), "a faulted call changes nothing");
    harbor.fail_next(Fault::Hangup, 1);
    let hung = tokio::time::timeout(CALL_TIMEOUT, Call::get(list).admin().try_send(&harbor))
        .await
        .unwrap();
    assert!(hung.is_err(), "{hung:?}");
    harbor.fail_next(Fault::Slow(Duration::from_millis(50)), 1);
    assert_eq!(Call::get(list).admin().send(&harbor).await.status, 200);
    // The token service is not under /api/v2.0 and never faulted.
    harbor.fail_next(Fault::Status(500), 1);
    let token = Call::get(token_path(
        harbor.service(),
        &["repository:team-a/app:pull"],
    ))
    .send(&harbor)
    .await;
    assert_eq!(token.status, 200);
    assert_eq!(harbor.api_calls(), 7);
}

#[test]
fn a_sync_caller_can_start_query_and_drop_the_fake() {
    let harbor = FakeHarbor::start(HarborSpec::new(["p"])).unwrap();
    assert!(harbor.url().starts_with("http://127.0.0.1:"));
    assert_eq!(
        harbor.token_realm(),
        format!("{}/service/token", harbor.url())
    );
    let line = harbor.admin_credential_line();
    let (user, password) = line.expose_secret().split_once(':').unwrap();
    assert_eq!(user, "admin");
    assert!(
        super::rules::is_valid_secret(password),
        "a random password meeting Harbor's rules"
    );
    let refused = harbor
        .add_robot("nope", "x", &[("repository", "pull")], 1)
        .unwrap_err();
    assert!(
        matches!(refused, super::FakeError::Refused { status: 404, .. }),
        "{refused}"
    );
    let r = harbor
        .add_robot("p", "x", &[("repository", "pull")], 1)
        .unwrap();
    assert_eq!(r.name, "robot$p+x");
    assert!(
        !format!("{r:?}").contains(r.secret.expose_secret()),
        "Debug redacts the secret"
    );
    drop(harbor);
}

// === real docker-registry ===

/// Whether `program` is on PATH; under `CI=true` a missing one fails the test.
fn require(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()));
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{program} is required under CI=true"
        );
        eprintln!("SKIPPED: {program} is not installed");
    }
    found
}

fn skopeo(args: &[&str], home: &std::path::Path) -> std::process::Output {
    let mut child = std::process::Command::new("skopeo")
        .args(args)
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", home)
        .env_remove("REGISTRY_AUTH_FILE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn docker_registry_accepts_the_fakes_tokens_for_what_the_robot_may_do() {
    use crate::registry::{RegistryChild, RegistrySpec, TokenAuth, free_loopback_addr};
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let harbor =
        FakeHarbor::start(HarborSpec::new(["team-a", "team-b"]).admin("admin", ADMIN_PASSWORD))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("token-ca.pem");
    std::fs::write(&ca, harbor.token_ca_pem()).unwrap();
    let registry_dir = dir.path().join("registry");
    std::fs::create_dir_all(&registry_dir).unwrap();
    let registry = RegistryChild::start(
        RegistrySpec::new(&registry_dir, free_loopback_addr().unwrap()).token_auth(TokenAuth {
            realm: harbor.token_realm(),
            service: harbor.service().to_owned(),
            issuer: harbor.issuer().to_owned(),
            rootcertbundle: ca,
        }),
    )
    .unwrap();
    let image =
        crate::oci::write_image(&dir.path().join("image"), "v1", "hello.txt", b"hello\n").unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let created = runtime
        .block_on(create(
            &harbor,
            ("admin", ADMIN_PASSWORD),
            &robot_body(
                "ci",
                "team-a",
                &[("repository", "pull"), ("repository", "push")],
                1,
            ),
        ))
        .json();
    let creds = format!(
        "{}:{}",
        created["name"].as_str().unwrap(),
        created["secret"].as_str().unwrap()
    );
    let at = |repo: &str| format!("docker://{}/{repo}:v1", registry.addr());

    let push = skopeo(
        &[
            "copy",
            "--dest-creds",
            &creds,
            "--dest-tls-verify=false",
            &image.reference(),
            &at("team-a/app"),
        ],
        &home,
    );
    assert!(
        push.status.success(),
        "push: {}\n{}",
        String::from_utf8_lossy(&push.stderr),
        registry.log()
    );
    let pulled = dir.path().join("pulled");
    let pull_to = format!("oci:{}:v1", pulled.display());
    let pull = skopeo(
        &[
            "copy",
            "--src-creds",
            &creds,
            "--src-tls-verify=false",
            &at("team-a/app"),
            &pull_to,
        ],
        &home,
    );
    assert!(
        pull.status.success(),
        "pull: {}",
        String::from_utf8_lossy(&pull.stderr)
    );

    let other = skopeo(
        &[
            "copy",
            "--dest-creds",
            &creds,
            "--dest-tls-verify=false",
            &image.reference(),
            &at("team-b/app"),
        ],
        &home,
    );
    assert!(
        !other.status.success(),
        "a push to another project must fail"
    );
    let other_err = String::from_utf8_lossy(&other.stderr);
    assert!(
        other_err.contains("denied") || other_err.contains("unauthorized"),
        "{other_err}"
    );

    let id = created["id"].as_i64().unwrap();
    let deleted = runtime.block_on(
        Call::new(Method::DELETE, format!("/api/v2.0/robots/{id}"))
            .admin()
            .send(&harbor),
    );
    assert_eq!(deleted.status, 200);
    let gone = dir.path().join("gone");
    let gone_to = format!("oci:{}:v1", gone.display());
    let after = skopeo(
        &[
            "copy",
            "--src-creds",
            &creds,
            "--src-tls-verify=false",
            &at("team-a/app"),
            &gone_to,
        ],
        &home,
    );
    assert!(!after.status.success(), "a deleted robot's pull must fail");
    let after_err = String::from_utf8_lossy(&after.stderr);
    assert!(
        after_err.contains("denied") || after_err.contains("unauthorized"),
        "{after_err}"
    );
    eprintln!("push to team-b: {other_err}\npull after delete: {after_err}");
}

#[test]
fn the_robot_count_is_bounded() {
    let harbor = FakeHarbor::start(HarborSpec::new(["p"])).unwrap();
    for i in 0..super::MAX_ROBOTS {
        harbor
            .add_robot("p", &format!("r{i}"), &[("repository", "pull")], 1)
            .unwrap();
    }
    let refused = harbor
        .add_robot("p", "one-more", &[("repository", "pull")], 1)
        .unwrap_err();
    assert!(
        matches!(refused, super::FakeError::Refused { status: 500, .. }),
        "{refused}"
    );
    assert_eq!(harbor.robots().len(), super::MAX_ROBOTS);
}
