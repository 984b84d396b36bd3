use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_token::federation::{FederationIssuer, FederationKey};

use super::grant::{map_grant, valid_robot_name};
use super::*;
use crate::backend::Backend as _;
use crate::test_support::scopes;

/// One issuer for every test: RSA key generation is slow.
fn issuer() -> Arc<FederationIssuer> {
    static ISSUER: OnceLock<Arc<FederationIssuer>> = OnceLock::new();
    Arc::clone(ISSUER.get_or_init(|| {
        let key = FederationKey::generate().unwrap();
        Arc::new(
            FederationIssuer::new(
                "https://broker.example.org",
                vec![key],
                Duration::from_secs(300),
            )
            .unwrap(),
        )
    }))
}

fn config() -> QuayConfig {
    QuayConfig::new("corp", "http://127.0.0.1:1", issuer(), "puller", "pusher")
}

fn backend() -> QuayBackend {
    QuayBackend::new(config()).unwrap()
}

fn grant_of(list: &[&str]) -> BackendGrant {
    BackendGrant::new(
        "corp",
        "spiffe://example.org/ns/team-a/sa/app",
        scopes(list),
        SystemTime::now() + Duration::from_secs(300),
    )
}

#[test]
fn grants_map_to_the_org_and_the_pull_or_push_robot() {
    let pull = map_grant(&scopes(&[
        "repository:team-a/app:pull",
        "repository:team-a/lib/x:pull",
    ]))
    .unwrap();
    assert_eq!(pull.org, "team-a");
    assert!(!pull.pushes());
    assert_eq!(pull.access(), "pull");
    assert_eq!(pull.robot("puller", "pusher"), "team-a+puller");
    let push = map_grant(&scopes(&[
        "repository:team-a/app:pull",
        "repository:team-a/app:push",
    ]))
    .unwrap();
    assert_eq!(push.access(), "push");
    assert_eq!(push.robot("puller", "pusher"), "team-a+pusher");
}

#[test]
fn grants_quay_cannot_serve_are_refused() {
    assert_eq!(
        map_grant(&scopes(&[
            "repository:team-a/app:pull",
            "repository:team-b/app:pull"
        ])),
        Err(Failure::GrantSpansProjects {
            projects: vec!["team-a".to_owned(), "team-b".to_owned()]
        })
    );
    assert_eq!(
        map_grant(&scopes(&["repository:app:pull"])),
        Err(Failure::RepositoryOutsideProject {
            repository: "app".to_owned()
        })
    );
    assert_eq!(
        map_grant(&scopes(&["repository:team-a/app:pull,delete"])),
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
fn the_reuse_key_is_the_robot() {
    let backend = backend();
    assert_eq!(
        backend
            .reuse_key(&grant_of(&["repository:team-a/app:pull"]))
            .unwrap(),
        "team-a+puller"
    );
    assert_eq!(
        backend
            .reuse_key(&grant_of(&["repository:team-a/app:pull,push"]))
            .unwrap(),
        "team-a+pusher"
    );
    let error = backend
        .reuse_key(&grant_of(&["repository:a/x:pull", "repository:b/x:pull"]))
        .unwrap_err();
    assert_eq!(error.kind, BackendKind::Quay);
    assert_eq!(error.step, Step::MapGrant);
    assert!(
        error
            .to_string()
            .starts_with("quay registry \"corp\": map the grant"),
        "{error}"
    );
}

#[test]
fn robot_names_follow_quays_rule() {
    for good in ["puller", "ci_bot", "a.b-c", "x1", &"a".repeat(255)] {
        assert!(valid_robot_name(good), "{good}");
    }
    for bad in [
        "",
        "a",
        "Puller",
        "team+puller",
        "pull:er",
        "_bot",
        "bot_",
        "a__b",
        "sp ace",
        &"a".repeat(256),
    ] {
        assert!(!valid_robot_name(bad), "{bad}");
    }
}

#[test]
fn configuration_is_checked() {
    assert!(QuayBackend::new(config()).is_ok());
    let mut bad_robot = config();
    "Team+Bot".clone_into(&mut bad_robot.push_robot);
    let error = QuayBackend::new(bad_robot).unwrap_err();
    assert_eq!(error.kind, BackendKind::Quay);
    assert_eq!(error.registry, "corp");
    assert!(matches!(
        error.problem,
        ConfigProblem::InvalidSetting {
            setting: "push_robot",
            ..
        }
    ));
    assert!(
        error.to_string().contains("\"Team+Bot\" is invalid"),
        "{error}"
    );

    let mut bad_template = config();
    "{spiffe_id}-{namespace}".clone_into(&mut bad_template.subject_template);
    let error = QuayBackend::new(bad_template).unwrap_err();
    assert_eq!(
        error.to_string(),
        "quay registry \"corp\": subject_template \"{spiffe_id}-{namespace}\" is invalid: has an unknown placeholder (known: {spiffe_id}, {project}, {access})"
    );

    let mut no_audience = config();
    no_audience.audience.clear();
    let error = QuayBackend::new(no_audience).unwrap_err();
    assert!(error.to_string().contains("audience"), "{error}");

    let mut remote = config();
    "http://quay.example.com".clone_into(&mut remote.url);
    assert!(matches!(
        QuayBackend::new(remote).unwrap_err().problem,
        ConfigProblem::PlainHttpNotLoopback { .. }
    ));
}

#[test]
fn the_audience_defaults_to_the_url() {
    let config = config();
    assert_eq!(config.audience, "http://127.0.0.1:1");
    assert_eq!(config.subject_template, "{spiffe_id}");
}

#[test]
fn tokens_cannot_be_revoked_and_nothing_is_swept() {
    let backend = backend();
    assert!(!backend.revocable());
    assert_eq!(backend.kind(), BackendKind::Quay);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let handle = CredentialHandle::new(0, "team-a+puller", "team-a");
        assert!(QuayBackend::revoke(&backend, &handle).await.is_ok());
        let report = QuayBackend::sweep(&backend, &["team-a".to_owned()], SystemTime::now())
            .await
            .unwrap();
        assert_eq!(report, crate::SweepReport::default());
    });
}

fn answer(status: u16, body: &str) -> ApiResponse {
    ApiResponse {
        status: StatusCode::from_u16(status).unwrap(),
        headers: HeaderMap::new(),
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn the_token_answer_is_checked() {
    let token = read_token(answer(200, r#"{"token":"eyJhbGc.abc.def"}"#)).unwrap();
    assert_eq!(token.expose_secret(), "eyJhbGc.abc.def");
    let long = format!(r#"{{"token":"{}"}}"#, "a".repeat(MAX_ROBOT_TOKEN_LEN + 1));
    for bad in [
        "",
        "{",
        "[]",
        r#"{"token":1}"#,
        r#"{"token":""}"#,
        r#"{"token":"has space"}"#,
        r#"{"token":"new\nline"}"#,
        r#"{"tok":"x"}"#,
        &long,
    ] {
        assert!(
            matches!(read_token(answer(200, bad)), Err(Failure::Malformed { .. })),
            "{bad}"
        );
    }
}

#[test]
fn quays_error_texts_are_read() {
    let backend = backend();
    let client = &backend.api.client;
    assert_eq!(
        vendor_message(client, br#"{"message":"Token does not match robot"}"#),
        "Token does not match robot"
    );
    assert_eq!(
        vendor_message(client, br#"{"error":"Invalid robot"}"#),
        "Invalid robot"
    );
    assert_eq!(
        vendor_message(
            client,
            br#"{"status":400,"error_message":"bad","detail":{"x":1}}"#
        ),
        "bad"
    );
    assert_eq!(
        vendor_message(client, b"<title>500 Internal Server Error</title>"),
        "<title>500 Internal Server Error</title>"
    );
    let failure = backend
        .api
        .expect_success(&answer(
            400,
            r#"{"message":"issuer x not configured for this robot"}"#,
        ))
        .unwrap_err();
    assert_eq!(
        failure,
        Failure::Rejected {
            status: 400,
            message: "issuer x not configured for this robot".to_owned()
        }
    );
}

#[test]
fn debug_shows_the_robots_not_the_keys() {
    let shown = format!("{:?}", backend());
    assert!(shown.contains("puller"), "{shown}");
    assert!(!shown.contains("PRIVATE"), "{shown}");
}

/// A registry that answers 400 with the request's credential in its text, as a verbose proxy
/// might: the JWT and the whole Basic header.
async fn echoing_server() -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0);
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8(head).unwrap();
        let basic = head
            .lines()
            .find_map(|l| l.strip_prefix("authorization: Basic "))
            .unwrap()
            .trim()
            .to_owned();
        let pair = base64::engine::general_purpose::STANDARD
            .decode(&basic)
            .unwrap();
        let jwt = String::from_utf8(pair).unwrap();
        let jwt = jwt.split_once(':').unwrap().1.to_owned();
        let body = serde_json::json!({
            "message": format!("Invalid token: {jwt} (header Basic {basic})")
        })
        .to_string();
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(answer.as_bytes()).await.unwrap();
    });
    (url, task)
}

#[test]
fn a_jwt_echoed_back_is_scrubbed_from_the_error() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (url, server) = echoing_server().await;
        let mut config = config();
        config.url = url;
        let backend = QuayBackend::new(config).unwrap();
        let error = QuayBackend::issue(
            &backend,
            &grant_of(&["repository:team-a/app:pull"]),
            SystemTime::now(),
        )
        .await
        .unwrap_err();
        server.await.unwrap();
        let Failure::Rejected {
            status: 400,
            message,
        } = &error.failure
        else {
            panic!("{error}");
        };
        assert!(
            message.starts_with("Invalid token: [REDACTED] (header Basic [REDACTED])"),
            "{message}"
        );
        // No piece of a JWT (they all start with the base64 of `{"`) survives.
        assert!(!error.to_string().contains("eyJ"), "{error}");
    });
}
