//! The backend's pure parts (names, the grant, RFC 3339, the lifetime asked for, error
//! classification) and its answers to a hostile Google, served by a canned HTTP server.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use svid_broker_identity::clock::Rfc3339;
use svid_broker_token::federation::{FederationIssuer, FederationKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::names::{Access, map_grant, parse_provider, parse_rfc3339, valid_service_account};
use super::*;
use crate::backend::Backend as _;
use crate::test_support::scopes;

const PROVIDER: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/svid-broker/providers/broker";
const SA: &str = "puller@my-project.iam.gserviceaccount.com";

/// One issuer for every test: RSA key generation is slow in debug builds.
fn issuer() -> Arc<FederationIssuer> {
    static ISSUER: OnceLock<Arc<FederationIssuer>> = OnceLock::new();
    Arc::clone(ISSUER.get_or_init(|| {
        Arc::new(
            FederationIssuer::new(
                "http://127.0.0.1:1/federation",
                vec![FederationKey::generate().unwrap()],
                Duration::from_secs(300),
            )
            .unwrap(),
        )
    }))
}

fn config() -> GarConfig {
    let mut config = GarConfig::new("corp", issuer(), PROVIDER, SA);
    "http://127.0.0.1:1".clone_into(&mut config.sts_endpoint);
    "http://127.0.0.1:1".clone_into(&mut config.iamcredentials_endpoint);
    config
}

fn setting_refused(config: GarConfig) -> &'static str {
    match GarBackend::new(config).unwrap_err().problem {
        ConfigProblem::InvalidSetting { setting, .. } => setting,
        other => panic!("{other:?}"),
    }
}

// === names and settings ===

#[test]
fn providers_must_be_full_names_with_googles_id_rules() {
    let parsed = parse_provider(PROVIDER).unwrap();
    assert_eq!(
        (
            parsed.project_number.as_str(),
            parsed.pool.as_str(),
            parsed.provider.as_str()
        ),
        ("123456789012", "svid-broker", "broker")
    );
    let base = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools";
    for bad in [
        // The pool, not the provider.
        base.to_owned() + "/pool",
        // Without the leading `//iam.googleapis.com/`.
        "projects/123/locations/global/workloadIdentityPools/pool/providers/prov".to_owned(),
        // A project id, not its number.
        "//iam.googleapis.com/projects/my-project/locations/global/workloadIdentityPools/pool/providers/prov".to_owned(),
        "//iam.googleapis.com/projects/123/locations/us/workloadIdentityPools/pool/providers/prov".to_owned(),
        base.to_owned() + "/abc/providers/prov",
        base.to_owned() + "/pool/providers/" + &"p".repeat(33),
        base.to_owned() + "/Pool/providers/prov",
        base.to_owned() + "/gcp-pool/providers/prov",
        base.to_owned() + "/pool/providers/prov/extra",
        base.to_owned() + "/pool/providers/pr_v",
        "https://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/prov".to_owned(),
    ] {
        assert_eq!(parse_provider(&bad), None, "{bad}");
    }
    assert!(parse_provider(&(base.to_owned() + "/pool/providers/" + &"p".repeat(32))).is_some());
}

#[test]
fn service_accounts_must_be_service_account_emails() {
    for good in [
        SA,
        "123456789012-compute@developer.gserviceaccount.com",
        "my-project@appspot.gserviceaccount.com",
        "sa@my-project.example.com:proj.iam.gserviceaccount.com",
    ] {
        assert!(valid_service_account(good), "{good}");
    }
    for bad in [
        "",
        "puller",
        "puller@gmail.com",
        "Puller@my-project.iam.gserviceaccount.com",
        "-puller@my-project.iam.gserviceaccount.com",
        "pul ler@my-project.iam.gserviceaccount.com",
        "puller@.iam.gserviceaccount.com",
        "puller@gserviceaccount.com",
        "puller@my-project.iam.gserviceaccount.com/x",
        "a@b@c.iam.gserviceaccount.com",
    ] {
        assert!(!valid_service_account(bad), "{bad}");
    }
}

#[test]
fn the_configuration_is_checked() {
    let backend = GarBackend::new(config()).unwrap();
    assert_eq!(backend.audience, format!("https:{PROVIDER}"));
    assert_eq!(
        backend.generate_path,
        format!("/v1/projects/-/serviceAccounts/{SA}:generateAccessToken")
    );
    let defaults = GarConfig::new("corp", issuer(), PROVIDER, SA);
    assert_eq!(defaults.sts_endpoint, DEFAULT_STS_ENDPOINT);
    assert_eq!(
        defaults.iamcredentials_endpoint,
        DEFAULT_IAMCREDENTIALS_ENDPOINT
    );
    assert_eq!(defaults.subject_template, "{spiffe_id}");

    let mut c = config();
    c.workload_identity_provider = "projects/1/locations/global".to_owned();
    assert_eq!(setting_refused(c), "workload_identity_provider");
    let mut c = config();
    c.service_account = "someone@example.com".to_owned();
    assert_eq!(setting_refused(c), "service_account");
    let mut c = config();
    c.audience = " ".to_owned();
    assert_eq!(setting_refused(c), "audience");
    let mut c = config();
    c.subject_template = "{project}".to_owned();
    assert_eq!(setting_refused(c), "subject_template");
    let mut c = config();
    c.iamcredentials_endpoint = "http://iamcredentials.example.com".to_owned();
    assert!(matches!(
        GarBackend::new(c).unwrap_err().problem,
        ConfigProblem::PlainHttpNotLoopback { .. }
    ));
    let mut c = config();
    c.sts_endpoint = "http://sts.example.com".to_owned();
    assert!(matches!(
        GarBackend::new(c).unwrap_err().problem,
        ConfigProblem::PlainHttpNotLoopback { .. }
    ));
}

#[test]
fn grants_map_to_pull_or_push_and_the_key_names_the_account() {
    assert_eq!(
        map_grant(&scopes(&["repository:a/app:pull"])),
        Ok(Access::Pull)
    );
    assert_eq!(
        map_grant(&scopes(&["repository:a:pull", "repository:b:push"])),
        Ok(Access::Push)
    );
    assert_eq!(
        map_grant(&scopes(&["repository:a:delete"])),
        Err(Failure::UnsupportedAction {
            action: "delete".to_owned()
        })
    );
    assert_eq!(map_grant(&[]), Err(Failure::NoRepository));
    let backend = GarBackend::new(config()).unwrap();
    let at = SystemTime::now() + Duration::from_secs(300);
    let pull = BackendGrant::new("corp", "spiffe://x/a", scopes(&["repository:a:pull"]), at);
    let push = BackendGrant::new("corp", "spiffe://x/a", scopes(&["repository:b:push"]), at);
    assert_eq!(backend.reuse_key(&pull).unwrap(), format!("pull {SA}"));
    assert_eq!(backend.reuse_key(&push).unwrap(), format!("push {SA}"));
    assert!(!backend.revocable());
    let bad = BackendGrant::new("corp", "spiffe://x/a", scopes(&["registry:catalog:*"]), at);
    assert_eq!(backend.reuse_key(&bad).unwrap_err().step, Step::MapGrant);
}

#[test]
fn the_lifetime_asked_for_is_the_grant_rounded_up_at_most_an_hour() {
    assert_eq!(requested_lifetime(Duration::from_secs(300)), 300);
    assert_eq!(requested_lifetime(Duration::from_millis(299_001)), 300);
    assert_eq!(requested_lifetime(Duration::from_millis(1)), 1);
    assert_eq!(requested_lifetime(Duration::ZERO), 1);
    assert_eq!(requested_lifetime(Duration::from_secs(3600)), 3600);
    assert_eq!(requested_lifetime(Duration::from_secs(7200)), 3600);
}

// === RFC 3339 ===

#[test]
fn rfc3339_times_parse_as_protobuf_json_writes_them() {
    let at = |secs: u64, nanos: u32| UNIX_EPOCH + Duration::new(secs, nanos);
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(at(0, 0)));
    assert_eq!(
        parse_rfc3339("2026-12-03T18:00:00Z"),
        Some(at(1_796_320_800, 0))
    );
    assert_eq!(
        parse_rfc3339("2026-12-03T18:00:00.5Z"),
        Some(at(1_796_320_800, 500_000_000))
    );
    assert_eq!(
        parse_rfc3339("2026-12-03T18:00:00.123456789Z"),
        Some(at(1_796_320_800, 123_456_789))
    );
    assert_eq!(
        parse_rfc3339("2026-12-03T19:30:00+01:30"),
        Some(at(1_796_320_800, 0))
    );
    assert_eq!(
        parse_rfc3339("2026-12-03T16:00:00-02:00"),
        Some(at(1_796_320_800, 0))
    );
    assert_eq!(
        parse_rfc3339("2024-02-29T00:00:00z"),
        Some(at(1_709_164_800, 0))
    );
    // The workspace's own formatter round-trips.
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_123);
    assert_eq!(parse_rfc3339(&Rfc3339(now).to_string()), Some(now));
    for bad in [
        "",
        "2026-12-03",
        "2026-12-03T18:00:00",
        "2026-12-03 18:00:00Z",
        "2026-13-03T18:00:00Z",
        "2026-02-29T18:00:00Z",
        "2026-04-31T18:00:00Z",
        "2026-12-00T18:00:00Z",
        "2026-12-03T24:00:00Z",
        "2026-12-03T18:60:00Z",
        "2026-12-03T18:00:60Z",
        "2026-12-03T18:00:00.Z",
        "2026-12-03T18:00:00.1234567890Z",
        "2026-12-03T18:00:00+1:00",
        "2026-12-03T18:00:00+24:00",
        "2026-12-03T18:00:00ZZ",
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:00:00+00:01",
        "+2026-12-03T18:00:00Z",
        "2026-12-03T18:00:00Z\u{0}",
        "１９７０-01-01T00:00:00Z",
        "10000-01-01T00:00:00Z",
        "2026-12-03T18:00:00.000000000000000000000000000000001Z",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
    }
    assert!(parse_rfc3339("9999-12-31T23:59:59Z").is_some());
}

// === error classification ===

#[test]
fn sts_refusals_of_the_jwt_are_jwt_refused_others_rejected() {
    let rejected = || Failure::Rejected {
        status: 400,
        message: String::new(),
    };
    let body = |code: &str| format!(r#"{{"error":"{code}","error_description":"why"}}"#);
    let message = || "said".to_owned();
    for code in ["invalid_grant", "unauthorized_client"] {
        assert_eq!(
            sts_failure(rejected(), body(code).as_bytes(), message),
            Failure::JwtRefused {
                message: "said".to_owned()
            }
        );
    }
    for code in ["invalid_request", "invalid_target", "invalid_scope"] {
        assert_eq!(
            sts_failure(rejected(), body(code).as_bytes(), message),
            Failure::Rejected {
                status: 400,
                message: "said".to_owned()
            }
        );
    }
    assert!(matches!(
        sts_failure(Failure::Unauthorized, b"", message),
        Failure::JwtRefused { .. }
    ));
    assert_eq!(
        sts_failure(Failure::ServerError { status: 500 }, b"", message),
        Failure::ServerError { status: 500 }
    );
    assert_eq!(
        oauth_text(body("invalid_grant").as_bytes()),
        "invalid_grant: why"
    );
    assert_eq!(oauth_text(br#"{"error":"invalid_grant"}"#), "invalid_grant");
    assert_eq!(
        google_text(br#"{"error":{"code":403,"message":"no","status":"PERMISSION_DENIED"}}"#),
        "PERMISSION_DENIED: no"
    );
    assert_eq!(google_text(b"<html>proxy</html>"), "<html>proxy</html>");
}

// === a hostile Google ===

/// A canned Google on 127.0.0.1: STS answers `sts` (status, body), `generateAccessToken`
/// answers `generate`; it records every request's head and body.
struct Canned {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Canned {
    async fn start(sts: (u16, String), generate: (u16, String)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let request = read_request(&mut stream).await;
                let (status, mut body) = if request.starts_with("POST /v1/token ") {
                    sts.clone()
                } else {
                    generate.clone()
                };
                // `%JWT%` echoes the request's subject token, as a careless proxy might.
                if body.contains("%JWT%") {
                    let sent = request.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                    let sent: serde_json::Value = serde_json::from_str(sent).unwrap_or_default();
                    body = body.replace("%JWT%", sent["subjectToken"].as_str().unwrap_or(""));
                }
                seen.lock().unwrap().push(request);
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        Self { url, requests }
    }

    fn config(&self) -> GarConfig {
        let mut config = GarConfig::new("corp", issuer(), PROVIDER, SA);
        config.sts_endpoint.clone_from(&self.url);
        config.iamcredentials_endpoint.clone_from(&self.url);
        config
    }
}

/// One request's head and body (by `Content-Length`), bounded.
async fn read_request(stream: &mut tokio::net::TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    for _ in 0..64 {
        let n = stream.read(&mut buffer).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length: ")
                        .or_else(|| l.strip_prefix("Content-Length: "))
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn sts_ok() -> (u16, String) {
    (
        200,
        r#"{"access_token":"ya29.federated","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}"#.to_owned(),
    )
}

fn generate_ok(expire: SystemTime) -> (u16, String) {
    (
        200,
        format!(
            r#"{{"accessToken":"ya29.access","expireTime":"{}"}}"#,
            Rfc3339(expire)
        ),
    )
}

async fn issue(canned: &Canned, now: SystemTime) -> Result<BackendCredential, BackendError> {
    let backend = GarBackend::new(canned.config()).unwrap();
    let grant = BackendGrant::new(
        "corp",
        "spiffe://example.org/ns/a/sa/app",
        scopes(&["repository:a/app:pull"]),
        now + Duration::from_secs(300),
    );
    backend.issue(&grant, now).await
}

/// A whole second, so Google's whole-second times compare exactly.
fn whole_second_now() -> SystemTime {
    UNIX_EPOCH
        + Duration::from_secs(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
}

#[tokio::test]
async fn the_requests_are_googles_shapes_and_the_answer_is_read() {
    let now = whole_second_now();
    let canned = Canned::start(sts_ok(), generate_ok(now + Duration::from_secs(300))).await;
    let credential = issue(&canned, now).await.unwrap();
    assert_eq!(credential.username, DOCKER_USERNAME);
    assert_eq!(credential.password.expose_secret(), "ya29.access");
    assert_eq!(credential.expires_at, now + Duration::from_secs(300));
    let requests = canned.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    let (head, body) = requests[0].split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("POST /v1/token HTTP/1.1"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("authorization"),
        "{head}"
    );
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        body["grantType"],
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(body["audience"], PROVIDER);
    assert_eq!(body["scope"], CLOUD_PLATFORM_SCOPE);
    assert_eq!(
        body["requestedTokenType"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(
        body["subjectTokenType"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert!(body["subjectToken"].as_str().unwrap().starts_with("eyJ"));
    assert_eq!(body.as_object().unwrap().len(), 6);
    let (head, body) = requests[1].split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with(&format!(
            "POST /v1/projects/-/serviceAccounts/{SA}:generateAccessToken HTTP/1.1"
        )),
        "{head}"
    );
    assert!(
        head.contains("authorization: Bearer ya29.federated"),
        "{head}"
    );
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"scope": [CLOUD_PLATFORM_SCOPE], "lifetime": "300s"})
    );
}

#[tokio::test]
async fn an_expire_time_past_the_grant_is_refused_as_outliving_it() {
    let now = whole_second_now();
    // An hour against a 300 s grant: Google ignored the lifetime asked for.
    let canned = Canned::start(sts_ok(), generate_ok(now + Duration::from_secs(3600))).await;
    let error = issue(&canned, now).await.unwrap_err();
    assert_eq!(
        error.failure,
        Failure::OutlivesGrant {
            lives: Duration::from_secs(3600),
            granted: Duration::from_secs(300)
        }
    );
    assert_eq!(
        error.step,
        Step::GenerateAccessToken {
            service_account: SA.to_owned()
        }
    );
    // Within the slack it is handed out, told the grant's end.
    let canned = Canned::start(sts_ok(), generate_ok(now + Duration::from_secs(330))).await;
    let credential = issue(&canned, now).await.unwrap();
    assert_eq!(credential.expires_at, now + Duration::from_secs(300));
    assert_eq!(
        credential.registry_expires_at,
        Some(now + Duration::from_secs(330))
    );
}

#[tokio::test]
async fn hostile_sts_answers_are_malformed() {
    let now = whole_second_now();
    let generate = generate_ok(now + Duration::from_secs(300));
    let long = "a".repeat(MAX_TOKEN_BYTES + 1);
    for body in [
        r#"{"access_token":"","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}"#.to_owned(),
        r#"{"access_token":"a b","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}"#.to_owned(),
        format!(r#"{{"access_token":"{long}","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}}"#),
        r#"{"access_token":"t","issued_token_type":"urn:ietf:params:oauth:token-type:id_token","token_type":"Bearer","expires_in":3600}"#.to_owned(),
        r#"{"access_token":"t","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"MAC","expires_in":3600}"#.to_owned(),
        r#"{"access_token":"t","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":0}"#.to_owned(),
        r#"{"access_token":"t","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":-1}"#.to_owned(),
        r#"{"access_token":"t","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":999999}"#.to_owned(),
        r#"{"access_token":"t","token_type":"Bearer","expires_in":3600}"#.to_owned(),
        "[]".to_owned(),
    ] {
        let canned = Canned::start((200, body.clone()), generate.clone()).await;
        let error = issue(&canned, now).await.unwrap_err();
        assert!(matches!(error.failure, Failure::Malformed { .. }), "{body}: {error}");
        assert!(matches!(error.step, Step::ExchangeStsToken { .. }), "{error}");
    }
}

#[tokio::test]
async fn hostile_generate_answers_are_malformed() {
    let now = whole_second_now();
    for body in [
        r#"{"accessToken":"ya29.x","expireTime":"tomorrow"}"#.to_owned(),
        r#"{"accessToken":"ya29.x","expireTime":1796320800}"#.to_owned(),
        r#"{"accessToken":"","expireTime":"2099-01-01T00:00:00Z"}"#.to_owned(),
        "{\"accessToken\":\"ya29\\nx\",\"expireTime\":\"2099-01-01T00:00:00Z\"}".to_owned(),
        format!(
            r#"{{"accessToken":"ya29.x","expireTime":"{}"}}"#,
            Rfc3339(now)
        ),
        format!(
            r#"{{"accessToken":"ya29.x","expireTime":"{}"}}"#,
            Rfc3339(now + Duration::from_secs(13 * 3600))
        ),
        r#"{"expireTime":"2099-01-01T00:00:00Z"}"#.to_owned(),
    ] {
        let canned = Canned::start(sts_ok(), (200, body.clone())).await;
        let error = issue(&canned, now).await.unwrap_err();
        assert!(
            matches!(error.failure, Failure::Malformed { .. }),
            "{body}: {error}"
        );
        assert!(
            matches!(error.step, Step::GenerateAccessToken { .. }),
            "{error}"
        );
    }
}

#[tokio::test]
async fn tokens_echoed_in_error_texts_are_scrubbed() {
    let now = whole_second_now();
    // STS echoes the subject token it was sent: the JWT must not reach the error.
    let echo = r#"{"error":"invalid_grant","error_description":"bad token %JWT%"}"#.to_owned();
    let canned = Canned::start((400, echo), (200, String::new())).await;
    let error = issue(&canned, now).await.unwrap_err();
    let shown = error.to_string();
    assert!(!shown.contains("eyJ"), "{shown}");
    assert!(
        matches!(&error.failure, Failure::JwtRefused { message } if message.contains("invalid_grant: bad token")),
        "{error}"
    );
    // IAM Credentials echoes the federated token: scrubbed too.
    let echo = r#"{"error":{"code":403,"message":"token ya29.federated refused","status":"PERMISSION_DENIED"}}"#;
    let canned = Canned::start(sts_ok(), (403, echo.to_owned())).await;
    let error = issue(&canned, now).await.unwrap_err();
    assert_eq!(
        error.failure,
        Failure::Forbidden {
            message: "PERMISSION_DENIED: token [REDACTED] refused".to_owned()
        }
    );
}
