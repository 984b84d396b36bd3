use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, StatusCode};
use svid_broker_identity::secret::{ExposeSecret as _, SecretString};

use super::grant::{RepositoryAction, map_grant};
use super::naming::{MAX_DESCRIPTION_CHARS, encoded_revoke_time, robot_description};
use super::*;
use crate::naming::{MAX_PREFIX_LEN, timed_name as robot_name, unix_seconds_ceil, valid_prefix};
use crate::test_support::{at, scopes};

/// The failure Harbor's non-2xx answer stands for, read as the backend reads it.
fn expect_success(client: &ApiClient, response: &ApiResponse) -> Result<(), Failure> {
    crate::api::expect_success(client, response, vendor_message, None)
}

// === naming ===

#[test]
fn robot_prefixes_follow_harbors_name_rule() {
    for good in ["svid", "svid-broker", "a.b_c-d", "x1", "0"] {
        assert!(valid_prefix(good), "{good}");
    }
    let too_long = "a".repeat(MAX_PREFIX_LEN + 1);
    for bad in [
        "", "Svid", "svid-", "-svid", "svid--x", "svid+x", "svid$", "sv id", "svíd", &too_long,
    ] {
        assert!(!valid_prefix(bad), "{bad}");
    }
}

#[test]
fn robot_names_carry_their_revocation_time_and_parse_back() {
    let name = robot_name(
        "svid",
        1_764_760_000,
        [0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 0xff],
    );
    assert_eq!(name, "svid-1764760000-deadbeef000102ff");
    assert_eq!(encoded_revoke_time("svid", &name), Some(1_764_760_000));
    // As Harbor lists it: the full name.
    let full = format!("robot$team-a+{name}");
    assert_eq!(encoded_revoke_time("svid", &full), Some(1_764_760_000));
    // A Harbor with another robot prefix setting.
    assert_eq!(
        encoded_revoke_time("svid", &format!("bot_team-a+{name}")),
        Some(1_764_760_000)
    );
}

#[test]
fn names_that_only_look_alike_are_not_ours() {
    for name in [
        "robot$team-a+svid-ci",
        "robot$team-a+svid-2024-backup",
        "robot$team-a+svid-1764760000",
        "robot$team-a+svid-1764760000-deadbeef",
        "robot$team-a+svid-1764760000-deadbeef000102ffaa",
        "robot$team-a+svid-1764760000-DEADBEEF000102FF",
        "robot$team-a+svid-17x4760000-deadbeef000102ff",
        "robot$team-a+svid--deadbeef000102ff",
        "robot$team-a+svid-1234567890123-deadbeef000102ff",
        "robot$team-a+other-1764760000-deadbeef000102ff",
        "robot$team-a+svidx-1764760000-deadbeef000102ff",
        // Another broker whose prefix extends ours.
        "robot$team-a+svid-1-1764760000-deadbeef000102ff",
        // Ours by shape, but the `+` makes the project part hide it.
        "robot$svid-1764760000-deadbeef000102ff+ci",
    ] {
        assert_eq!(encoded_revoke_time("svid", name), None, "{name}");
    }
}

#[test]
fn encoded_times_round_up_so_robots_never_go_early() {
    assert_eq!(unix_seconds_ceil(at(100)), 100);
    assert_eq!(unix_seconds_ceil(at(100) + Duration::from_millis(1)), 101);
    assert_eq!(unix_seconds_ceil(UNIX_EPOCH - Duration::from_secs(5)), 0);
}

#[test]
fn descriptions_name_the_subject_and_the_time_within_the_cap() {
    let text = robot_description("spiffe://example.org/ns/a/sa/app", at(1_764_760_000));
    assert_eq!(
        text,
        "svid-broker: spiffe://example.org/ns/a/sa/app until 2025-12-03T11:06:40Z"
    );
    let long_id = format!("spiffe://example.org/{}", "p".repeat(2000));
    let text = robot_description(&long_id, at(1_764_760_000));
    assert_eq!(text.chars().count(), MAX_DESCRIPTION_CHARS);
    assert!(
        text.starts_with("svid-broker: spiffe://example.org/ppp"),
        "{text}"
    );
    assert!(text.ends_with("... until 2025-12-03T11:06:40Z"), "{text}");
    let odd = robot_description("spiffe://x/\n", at(0));
    assert!(!odd.contains('\n'));
}

// === grant mapping ===

#[test]
fn one_project_with_pull_and_push_maps_to_one_robot() {
    let grant = map_grant(&scopes(&[
        "repository:team-a/app:pull,push",
        "repository:team-a/lib:pull",
        "repository:team-a/other:",
    ]))
    .unwrap();
    assert_eq!(grant.project, "team-a");
    assert_eq!(
        grant.actions.iter().copied().collect::<Vec<_>>(),
        [RepositoryAction::Pull, RepositoryAction::Push]
    );
    assert_eq!(grant.reuse_key(), "team-a pull push");
    let pull_only = map_grant(&scopes(&["repository:team-a/deep/path/app:pull"])).unwrap();
    assert_eq!(pull_only.reuse_key(), "team-a pull");
}

#[test]
fn grants_harbor_cannot_serve_are_refused() {
    let cases: [(&[&str], Failure); 8] = [
        (
            &["repository:team-a/app:pull", "repository:team-b/app:pull"],
            Failure::GrantSpansProjects {
                projects: vec!["team-a".to_owned(), "team-b".to_owned()],
            },
        ),
        (
            &["repository:team-a/app:pull,delete"],
            Failure::UnsupportedAction {
                action: "delete".to_owned(),
            },
        ),
        (
            &["repository:team-a/app:*"],
            Failure::UnsupportedAction {
                action: "*".to_owned(),
            },
        ),
        (
            &["registry:catalog:*"],
            Failure::UnsupportedResource {
                resource_type: "registry".to_owned(),
            },
        ),
        (
            &["repository(plugin):team-a/p:pull"],
            Failure::UnsupportedResource {
                resource_type: "repository(plugin)".to_owned(),
            },
        ),
        (
            &["repository:app:pull"],
            Failure::RepositoryOutsideProject {
                repository: "app".to_owned(),
            },
        ),
        (&["repository:team-a/app:"], Failure::NoRepository),
        (&[], Failure::NoRepository),
    ];
    for (texts, expected) in cases {
        assert_eq!(map_grant(&scopes(texts)), Err(expected), "{texts:?}");
    }
}

#[test]
fn a_grant_over_many_projects_lists_a_bounded_number() {
    let texts: Vec<String> = (0..20)
        .map(|i| format!("repository:p{i:02}/app:pull"))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    match map_grant(&scopes(&refs)) {
        Err(Failure::GrantSpansProjects { projects }) => {
            assert_eq!(projects.len(), crate::error::MAX_LISTED_PROJECTS);
            assert_eq!(projects[0], "p00");
        }
        other => panic!("{other:?}"),
    }
}

// === lifetimes and answers ===

#[test]
fn harbor_lifetimes_are_whole_days_at_least_one() {
    let now = at(1_000_000);
    assert_eq!(lifetime_days(now, now + Duration::from_secs(900)), 1);
    assert_eq!(lifetime_days(now, now + Duration::from_secs(86_400)), 1);
    assert_eq!(lifetime_days(now, now + Duration::from_secs(86_401)), 2);
    assert_eq!(lifetime_days(now, now - Duration::from_secs(5)), 1);
    assert_eq!(
        lifetime_days(now, now + Duration::from_secs(86_400 * 40)),
        40
    );
}

fn answer(status: u16, body: &str) -> ApiResponse {
    ApiResponse {
        status: StatusCode::from_u16(status).unwrap(),
        headers: HeaderMap::new(),
        body: body.as_bytes().to_vec(),
    }
}

fn client() -> ApiClient {
    let settings = ClientSettings::new(
        "http://127.0.0.1:1",
        "admin",
        SecretString::from("hunter2-secret".to_owned()),
    );
    ApiClient::new(&settings).unwrap()
}

#[test]
fn echoed_credentials_never_reach_an_error() {
    // What a proxy that echoes the request would answer.
    let echo = "bad request: Authorization: Basic YWRtaW46aHVudGVyMi1zZWNyZXQ= (pw hunter2-secret)";
    match expect_success(&client(), &answer(400, echo)) {
        Err(Failure::Rejected { message, .. }) => {
            assert_eq!(
                message,
                "bad request: Authorization: Basic [REDACTED] (pw [REDACTED])"
            );
        }
        other => panic!("{other:?}"),
    }
    let json = r#"{"errors":[{"message":"user admin:hunter2-secret denied"}]}"#;
    assert_eq!(
        expect_success(&client(), &answer(403, json)),
        Err(Failure::Forbidden {
            message: "user admin:[REDACTED] denied".to_owned()
        })
    );
}

#[test]
fn statuses_map_to_failures() {
    let harbor_errors = r#"{"errors":[{"code":"DENIED","message":"not allowed\nhere"}]}"#;
    assert_eq!(expect_success(&client(), &answer(200, "")), Ok(()));
    assert_eq!(expect_success(&client(), &answer(201, "")), Ok(()));
    assert_eq!(
        expect_success(&client(), &answer(401, harbor_errors)),
        Err(Failure::Unauthorized)
    );
    assert_eq!(
        expect_success(&client(), &answer(403, harbor_errors)),
        Err(Failure::Forbidden {
            message: "not allowed here".to_owned()
        })
    );
    assert_eq!(
        expect_success(&client(), &answer(503, harbor_errors)),
        Err(Failure::ServerError { status: 503 })
    );
    assert_eq!(
        expect_success(
            &client(),
            &answer(400, r#"{"errors":[{"code":"BAD_REQUEST"}]}"#)
        ),
        Err(Failure::Rejected {
            status: 400,
            message: "BAD_REQUEST".to_owned()
        })
    );
    assert_eq!(
        expect_success(&client(), &answer(404, "<html>nope</html>")),
        Err(Failure::Rejected {
            status: 404,
            message: "<html>nope</html>".to_owned()
        })
    );
    assert_eq!(
        expect_success(&client(), &answer(302, "")),
        Err(Failure::Rejected {
            status: 302,
            message: String::new()
        })
    );
    let mut limited = answer(429, "");
    limited
        .headers
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("7"));
    assert_eq!(
        expect_success(&client(), &limited),
        Err(Failure::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        })
    );
}

#[test]
fn created_robots_are_checked_against_the_request() {
    let local = "svid-100-0011223344556677";
    let good =
        format!(r#"{{"id":7,"name":"robot$team-a+{local}","secret":"Abc123def","expires_at":1}}"#);
    let (id, name, secret) = parse_created(answer(201, &good), "team-a", local).unwrap();
    assert_eq!(
        (id, name.as_str()),
        (7, "robot$team-a+svid-100-0011223344556677")
    );
    assert_eq!(secret.expose_secret(), "Abc123def");

    let long_secret = "s".repeat(MAX_SECRET_LEN + 1);
    let bad_bodies = [
        "{\"id\":7,\"name\":\"robot$team-a+svid".to_owned(),
        format!(r#"{{"id":7,"name":"robot$team-a+{local}"}}"#),
        format!(r#"{{"id":0,"name":"robot$team-a+{local}","secret":"x"}}"#),
        format!(r#"{{"id":7,"name":"robot$team-b+{local}","secret":"x"}}"#),
        format!(r#"{{"id":7,"name":"{local}","secret":"x"}}"#),
        format!(r#"{{"id":7,"name":"robot$team-a+{local}","secret":""}}"#),
        format!(r#"{{"id":7,"name":"robot$team-a+{local}","secret":"{long_secret}"}}"#),
    ];
    for body in bad_bodies {
        assert!(
            matches!(
                parse_created(answer(201, &body), "team-a", local),
                Err(Failure::Malformed { .. })
            ),
            "{body}"
        );
    }
}

#[test]
fn the_create_body_has_no_effect_and_no_secret() {
    let body = wire::RobotCreate {
        name: "svid-1-0011223344556677",
        description: "d",
        level: "project",
        duration: 1,
        disable: false,
        permissions: [wire::RobotPermission {
            kind: "project",
            namespace: "team-a",
            access: vec![wire::Access {
                resource: "repository",
                action: "pull",
            }],
        }],
    };
    let json: serde_json::Value = serde_json::to_value(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "name": "svid-1-0011223344556677",
            "description": "d",
            "level": "project",
            "duration": 1,
            "disable": false,
            "permissions": [{
                "kind": "project",
                "namespace": "team-a",
                "access": [{"resource": "repository", "action": "pull"}]
            }]
        })
    );
}

// === configuration and redaction ===

fn config(url: &str) -> HarborConfig {
    HarborConfig::new(
        "corp",
        url,
        "admin",
        SecretString::from("hunter2-secret".to_owned()),
    )
}

#[test]
fn bad_configurations_are_refused_with_the_registry_named() {
    let mut bad_prefix = config("http://127.0.0.1:1");
    bad_prefix.robot_prefix = "Svid".to_owned();
    let mut zero_deadline = config("http://127.0.0.1:1");
    zero_deadline.request_deadline = Duration::ZERO;
    let mut bad_user = config("http://127.0.0.1:1");
    bad_user.username = "ad:min".to_owned();
    let cases = [
        (config("http://harbor.example.com"), "plain http"),
        (config("http://localhost:80"), "plain http"),
        (config("ftp://127.0.0.1"), "not an absolute http(s) url"),
        (
            config("https://user:pw@harbor.example.com"),
            "carries credentials",
        ),
        (
            config("https://harbor.example.com/?x=1"),
            "not an absolute http(s) url",
        ),
        (bad_prefix, "robot prefix \"Svid\""),
        (zero_deadline, "request deadline must be greater than zero"),
        (bad_user, "user name"),
    ];
    for (config, expected) in cases {
        let error = HarborBackend::new(config).unwrap_err();
        let shown = error.to_string();
        assert!(shown.starts_with("harbor registry \"corp\": "), "{shown}");
        assert!(shown.contains(expected), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    assert!(HarborBackend::new(config("http://127.0.0.1:1")).is_ok());
    assert!(HarborBackend::new(config("http://[::1]:1")).is_ok());
    assert!(HarborBackend::new(config("https://harbor.example.com/base/")).is_ok());
}

#[test]
fn debug_output_never_shows_passwords_or_secrets() {
    let harbor_config = config("http://127.0.0.1:1");
    let backend = HarborBackend::new(harbor_config.clone()).unwrap();
    let credential = BackendCredential {
        username: "robot$team-a+svid-1-0011223344556677".to_owned(),
        password: SecretString::from("robot-secret-Abc123".to_owned()),
        credential_id: "robot 7 robot$team-a+svid-1-0011223344556677".to_owned(),
        expires_at: at(1),
        registry_expires_at: None,
        reused: false,
        handle: CredentialHandle::new(7, "robot$team-a+svid-1-0011223344556677", "team-a"),
    };
    let shown = format!("{harbor_config:?} {backend:?} {credential:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("robot-secret"), "{shown}");
    assert!(shown.contains("REDACTED"), "{shown}");
    assert!(
        shown.contains("robot 7 robot$team-a+svid-1-0011223344556677"),
        "{shown}"
    );
}
