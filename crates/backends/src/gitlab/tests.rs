use std::time::{Duration, UNIX_EPOCH};

use http::HeaderMap;
use svid_broker_identity::secret::ExposeSecret as _;

use super::grant::RegistryScope;
use super::*;
use crate::error::ConfigProblem;
use crate::naming::{timed_name as token_name, unix_seconds_floor, valid_prefix};
use crate::test_support::scopes;
use http::StatusCode;

/// The failure GitLab's non-2xx answer stands for, read as the backend reads it.
fn expect_success(client: &ApiClient, response: &ApiResponse) -> Result<(), Failure> {
    crate::api::expect_success(client, response, vendor_message, Some(PROJECT_NOT_FOUND))
}

fn config() -> GitlabConfig {
    GitlabConfig::new(
        "corp",
        "http://127.0.0.1:9",
        SecretString::from("glpat-broker-token-123".to_owned()),
    )
}

fn response(status: u16, body: &str) -> ApiResponse {
    ApiResponse {
        status: StatusCode::from_u16(status).unwrap(),
        headers: HeaderMap::new(),
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn pull_maps_to_read_registry_and_push_adds_write_registry() {
    let pull = map_grant(&scopes(&["repository:team-a/app:pull"])).unwrap();
    assert_eq!(pull.project, "team-a/app");
    assert_eq!(
        pull.scopes.iter().copied().collect::<Vec<_>>(),
        [RegistryScope::Read]
    );
    assert_eq!(pull.reuse_key(), "team-a/app read_registry");

    let push = map_grant(&scopes(&[
        "repository:team-a/app/web:push",
        "repository:team-a/app:pull",
    ]))
    .unwrap();
    assert_eq!(push.project, "team-a/app");
    assert_eq!(push.reuse_key(), "team-a/app read_registry write_registry");
}

#[test]
fn grants_outside_one_project_are_refused() {
    assert!(matches!(
        map_grant(&scopes(&["repository:team-a/app:pull", "repository:team-a/lib:pull"])),
        Err(Failure::GrantSpansProjects { projects }) if projects == ["team-a/app", "team-a/lib"]
    ));
    assert_eq!(
        map_grant(&scopes(&["repository:app:pull"])),
        Err(Failure::RepositoryOutsideProject {
            repository: "app".to_owned()
        })
    );
    assert_eq!(
        map_grant(&scopes(&["repository:team-a/app:delete"])),
        Err(Failure::UnsupportedAction {
            action: "delete".to_owned()
        })
    );
    assert!(matches!(
        map_grant(&scopes(&["registry:catalog:*"])),
        Err(Failure::UnsupportedResource { .. })
    ));
    assert_eq!(map_grant(&[]), Err(Failure::NoRepository));
}

#[test]
fn names_carry_the_revocation_time_and_only_ours_are_read() {
    let name = token_name("svid", 1_800_000_000, [0xab; 8]);
    assert_eq!(name, "svid-1800000000-abababababababab");
    assert_eq!(encoded_revoke_time("svid", &name), Some(1_800_000_000));
    for other in [
        "svid-ci",
        "svid-2024-backup",
        "svid-1800000000-ABABABABABABABAB",
        "svid-1800000000-abab",
        "gitlab+deploy-token-3",
        "svidx-1800000000-abababababababab",
        "other-1800000000-abababababababab",
    ] {
        assert_eq!(encoded_revoke_time("svid", other), None, "{other}");
    }
    assert!(valid_prefix("svid") && valid_prefix("broker.eu-1"));
    for bad in ["", "Svid", "a--b", "-a", "a-", "a+b", &"a".repeat(33)] {
        assert!(!valid_prefix(bad), "{bad}");
    }
}

#[test]
fn expiry_is_rounded_up_to_the_second() {
    let at = UNIX_EPOCH + Duration::from_millis(1_800_000_000_001);
    assert_eq!(unix_seconds_ceil(at), 1_800_000_001);
    assert_eq!(unix_seconds_floor(at), 1_800_000_000);
    assert_eq!(rfc3339_seconds(1_800_000_001), "2027-01-15T08:00:01Z");
}

#[test]
fn bad_configurations_are_refused() {
    let mut bad_prefix = config();
    bad_prefix.name_prefix = "Svid!".to_owned();
    let error = GitlabBackend::new(bad_prefix).unwrap_err();
    assert!(matches!(
        error.problem,
        ConfigProblem::InvalidRobotPrefix { .. }
    ));
    assert_eq!(error.kind, BackendKind::Gitlab);

    let mut remote_http = config();
    remote_http.url = "http://gitlab.example.com".to_owned();
    assert!(matches!(
        GitlabBackend::new(remote_http).unwrap_err().problem,
        ConfigProblem::PlainHttpNotLoopback { .. }
    ));

    for token in ["", "has space", "line\nbreak"] {
        let mut bad_token = config();
        bad_token.token = SecretString::from(token.to_owned());
        assert_eq!(
            GitlabBackend::new(bad_token).unwrap_err().problem,
            ConfigProblem::InvalidUsername
        );
    }
}

#[test]
fn debug_output_has_no_token() {
    let backend = GitlabBackend::new(config()).unwrap();
    let shown = format!("{backend:?} {:?}", config());
    assert!(!shown.contains("glpat-broker-token-123"), "{shown}");
}

#[test]
fn gitlab_error_bodies_become_failures_without_the_token() {
    let backend = GitlabBackend::new(config()).unwrap();
    let client = &backend.api.client;
    assert_eq!(
        expect_success(client, &response(401, r#"{"message":"401 Unauthorized"}"#)),
        Err(Failure::Unauthorized)
    );
    assert_eq!(
        expect_success(client, &response(403, r#"{"message":"403 Forbidden"}"#)),
        Err(Failure::Forbidden {
            message: "403 Forbidden".to_owned()
        })
    );
    assert_eq!(
        expect_success(
            client,
            &response(404, r#"{"message":"404 Project Not Found"}"#)
        ),
        Err(Failure::NoSuchProject)
    );
    assert_eq!(
        expect_success(
            client,
            &response(
                400,
                r#"{"message":{"username":["is too long"],"name":["can't be blank"]}}"#
            )
        ),
        Err(Failure::Rejected {
            status: 400,
            message: "name can't be blank; username is too long".to_owned()
        })
    );
    assert_eq!(
        expect_success(
            client,
            &response(400, r#"{"error":"scopes does not have a valid value"}"#)
        ),
        Err(Failure::Rejected {
            status: 400,
            message: "scopes does not have a valid value".to_owned()
        })
    );
    // A proxy that echoes the request back does not leak the token into the error.
    let Err(Failure::Rejected { message, .. }) = expect_success(
        client,
        &response(400, "bad request: PRIVATE-TOKEN: glpat-broker-token-123"),
    ) else {
        panic!("not rejected");
    };
    assert_eq!(message, "bad request: PRIVATE-TOKEN: [REDACTED]");
    assert_eq!(expect_success(client, &response(204, "")), Ok(()));
}

#[test]
fn created_answers_are_checked() {
    let name = "svid-1800000000-abababababababab";
    let good = format!(
        r#"{{"id":7,"name":"{name}","username":"{name}","expires_at":"2027-01-15T08:00:00.000Z","token":"gldt-secret","revoked":false,"expired":false,"scopes":["read_registry"]}}"#
    );
    let (id, token) = parse_created(response(201, &good), name).unwrap();
    assert_eq!((id, token.expose_secret()), (7, "gldt-secret"));

    let default_username = good.replace(
        &format!(r#""username":"{name}""#),
        r#""username":"gitlab+deploy-token-7""#,
    );
    for bad in [
        "{\"id\":7".to_owned(),
        good.replace("\"id\":7", "\"id\":0"),
        good.replace("gldt-secret", ""),
        default_username,
    ] {
        assert!(
            matches!(
                parse_created(response(201, &bad), name),
                Err(Failure::Malformed { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn project_paths_are_url_encoded() {
    assert_eq!(
        tokens_path("team-a/app.x"),
        "/api/v4/projects/team-a%2Fapp.x/deploy_tokens"
    );
}
