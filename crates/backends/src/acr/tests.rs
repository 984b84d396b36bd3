use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use svid_broker_token::federation::{FederationIssuer, FederationKey};

use super::*;
use crate::backend::Backend as _;
use crate::grant::{Access, pull_or_push as map_grant};
use crate::test_support::scopes;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "AF3110BA-0BA9-4412-B1A0-59F50B7E9273";

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

fn config() -> AcrConfig {
    let mut config = AcrConfig::new("corp", issuer(), "http://127.0.0.1:1", TENANT, CLIENT);
    "http://127.0.0.1:1".clone_into(&mut config.authority_host);
    config
}

fn backend() -> AcrBackend {
    AcrBackend::new(config()).unwrap()
}

fn jwt_with_payload(payload: &str) -> String {
    format!(
        "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
        URL_SAFE_NO_PAD.encode(payload)
    )
}

#[test]
fn defaults_are_the_public_clouds() {
    let c = AcrConfig::new("corp", issuer(), "https://corp.azurecr.io", TENANT, CLIENT);
    assert_eq!(c.authority_host, "https://login.microsoftonline.com");
    assert_eq!(c.audience, "api://AzureADTokenExchange");
    assert_eq!(c.scope, "https://containerregistry.azure.net/.default");
    assert_eq!(c.subject_template, "{spiffe_id}");
    let b = AcrBackend::new(c).unwrap();
    assert_eq!(b.login_server(), "corp.azurecr.io");
}

#[test]
fn guids_are_checked() {
    for good in [TENANT, CLIENT, "00000000-0000-0000-0000-000000000000"] {
        assert!(is_guid(good), "{good}");
    }
    for bad in [
        "",
        "contoso.onmicrosoft.com",
        "72f988bf86f141af91ab2d7cd011db47",
        "72f988bf-86f1-41af-91ab-2d7cd011db4",
        "72f988bf-86f1-41af-91ab-2d7cd011db477",
        "72f988bf-86f1-41af-91ab-2d7cd011db47-0",
        "72f988bg-86f1-41af-91ab-2d7cd011db47",
        "{72f988bf-86f1-41af-91ab-2d7cd011db47}",
        "72f988bf-86f1-41af-91ab-2d7cd011db47\n",
    ] {
        assert!(!is_guid(bad), "{bad:?}");
    }
}

#[test]
fn configuration_is_checked() {
    assert!(AcrBackend::new(config()).is_ok());
    let refused = |change: &dyn Fn(&mut AcrConfig)| {
        let mut c = config();
        change(&mut c);
        let error = AcrBackend::new(c).unwrap_err();
        assert_eq!(
            (error.kind, error.registry.as_str()),
            (BackendKind::Acr, "corp")
        );
        error.problem
    };
    let setting_of = |problem: ConfigProblem| match problem {
        ConfigProblem::InvalidSetting { setting, .. } => setting,
        other => panic!("not an invalid setting: {other:?}"),
    };
    assert_eq!(
        setting_of(refused(
            &|c| "contoso.onmicrosoft.com".clone_into(&mut c.tenant_id)
        )),
        "tenant_id"
    );
    assert_eq!(
        setting_of(refused(&|c| "my-app".clone_into(&mut c.client_id))),
        "client_id"
    );
    assert_eq!(
        setting_of(refused(&|c| c.audience = String::new())),
        "audience"
    );
    assert_eq!(
        setting_of(refused(&|c| c.audience = "a".repeat(601))),
        "audience"
    );
    assert_eq!(
        setting_of(refused(
            &|c| "https://containerregistry.azure.net".clone_into(&mut c.scope)
        )),
        "scope"
    );
    assert_eq!(
        setting_of(refused(
            &|c| "a/.default b/.default".clone_into(&mut c.scope)
        )),
        "scope"
    );
    assert_eq!(
        setting_of(refused(
            &|c| "{spiffe_id}/{project}".clone_into(&mut c.subject_template)
        )),
        "subject_template"
    );
    assert!(matches!(
        refused(&|c| "http://login.example.com".clone_into(&mut c.authority_host)),
        ConfigProblem::PlainHttpNotLoopback { .. }
    ));
    assert!(matches!(
        refused(&|c| "http://corp.azurecr.io".clone_into(&mut c.url)),
        ConfigProblem::PlainHttpNotLoopback { .. }
    ));
    assert!(matches!(
        refused(&|c| c.max_in_flight = 0),
        ConfigProblem::ZeroLimit { .. }
    ));
}

#[test]
fn the_login_server_drops_only_a_default_port() {
    assert_eq!(
        login_server_of("https://corp.azurecr.io", "corp.azurecr.io"),
        "corp.azurecr.io"
    );
    assert_eq!(
        login_server_of("https://Corp.azurecr.io:443", "Corp.azurecr.io:443"),
        "corp.azurecr.io"
    );
    assert_eq!(
        login_server_of("https://corp.azurecr.io:8443", "corp.azurecr.io:8443"),
        "corp.azurecr.io:8443"
    );
    assert_eq!(
        login_server_of("http://127.0.0.1:5000", "127.0.0.1:5000"),
        "127.0.0.1:5000"
    );
    assert_eq!(
        login_server_of("http://127.0.0.1:80", "127.0.0.1:80"),
        "127.0.0.1"
    );
}

#[test]
fn grants_map_to_pull_or_push_and_the_reuse_key_names_the_app() {
    assert_eq!(
        map_grant(&scopes(&["repository:a:pull", "repository:b/c:pull"])),
        Ok(Access::Pull)
    );
    assert_eq!(
        map_grant(&scopes(&["repository:a:pull", "repository:b:push"])),
        Ok(Access::Push)
    );
    let every =
        svid_broker_policy::ResourceScope::every_repository([svid_broker_policy::Action::PULL]);
    assert_eq!(map_grant(&[every]), Ok(Access::Pull));
    assert!(matches!(
        map_grant(&scopes(&["repository:a:delete"])),
        Err(Failure::UnsupportedAction { .. })
    ));
    assert!(matches!(
        map_grant(&scopes(&["registry:catalog:*"])),
        Err(Failure::UnsupportedResource { .. })
    ));
    assert_eq!(map_grant(&[]), Err(Failure::NoRepository));

    let backend = backend();
    let at = SystemTime::now() + Duration::from_secs(300);
    let pull = BackendGrant::new("corp", "spiffe://a/b", scopes(&["repository:x:pull"]), at);
    let push = BackendGrant::new("corp", "spiffe://a/b", scopes(&["repository:x:push"]), at);
    let client = CLIENT.to_ascii_lowercase();
    assert_eq!(backend.reuse_key(&pull).unwrap(), format!("pull {client}"));
    assert_eq!(backend.reuse_key(&push).unwrap(), format!("push {client}"));
    assert!(!backend.revocable());
    assert_eq!(backend.kind(), BackendKind::Acr);
}

#[test]
fn a_subject_longer_than_a_credential_holds_is_refused_when_mapping() {
    let backend = backend();
    let at = SystemTime::now() + Duration::from_secs(300);
    let fits = format!("spiffe://example.org/{}", "x".repeat(600 - 21));
    assert_eq!(fits.chars().count(), 600);
    let ok = BackendGrant::new("corp", fits.clone(), scopes(&["repository:x:pull"]), at);
    assert!(backend.reuse_key(&ok).is_ok());
    let long = BackendGrant::new(
        "corp",
        format!("{fits}y"),
        scopes(&["repository:x:pull"]),
        at,
    );
    let error = backend.reuse_key(&long).unwrap_err();
    assert_eq!(error.step, Step::MapGrant);
    assert!(error.to_string().contains("600 characters"), "{error}");
}

#[tokio::test]
async fn an_expired_grant_is_refused_before_signing() {
    let backend = backend();
    let now = SystemTime::now();
    let grant = BackendGrant::new("corp", "spiffe://a/b", scopes(&["repository:x:pull"]), now);
    let error = backend.issue(&grant, now).await.unwrap_err();
    assert_eq!(
        (error.step, error.failure),
        (Step::MapGrant, Failure::GrantExpired)
    );
}

#[tokio::test]
async fn revoke_and_sweep_do_nothing() {
    let backend = backend();
    crate::Backend::revoke(&backend, &CredentialHandle::new(0, "x", "y"))
        .await
        .unwrap();
    let report = crate::Backend::sweep(&backend, &[], SystemTime::now())
        .await
        .unwrap();
    assert_eq!(report, crate::SweepReport::default());
}

#[test]
fn exp_is_read_from_a_refresh_tokens_payload() {
    assert_eq!(
        refresh_token_exp(&jwt_with_payload(r#"{"exp":1497990801,"tenant":"t"}"#)),
        Some(1_497_990_801)
    );
    assert_eq!(
        refresh_token_exp(&jwt_with_payload(r#"{"exp":1497990801.9}"#)),
        Some(1_497_990_801)
    );
    // The azure-sdk recordings' sanitized shape, padded base64 tolerated.
    assert_eq!(
        refresh_token_exp("sanitized.eyJleHAiOjg2NDAwMDAwMDAwMDB9.sanitized"),
        Some(8_640_000_000_000)
    );
    assert_eq!(refresh_token_exp("a.eyJleHAiOjF9==.b"), Some(1));
}

#[test]
fn hostile_refresh_tokens_yield_no_exp() {
    let huge = format!("a.{}.b", "A".repeat(MAX_PAYLOAD_B64 + 4));
    for token in [
        String::new(),
        "no-dots".to_owned(),
        "a.b".to_owned(),
        "a.b.c.d".to_owned(),
        "a.!!!.b".to_owned(),
        huge,
        jwt_with_payload("not json"),
        jwt_with_payload("[1,2]"),
        jwt_with_payload(r#"{"exp":"1497990801"}"#),
        jwt_with_payload(r#"{"exp":-5}"#),
        jwt_with_payload(r#"{"exp":1e300}"#),
        jwt_with_payload(r#"{"exp":null}"#),
        jwt_with_payload(r#"{"nbf":1}"#),
    ] {
        assert_eq!(refresh_token_exp(&token), None, "{token:.80}");
    }
}

#[test]
fn the_refresh_tokens_end_is_its_exp_or_three_hours() {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let in_an_hour = jwt_with_payload(r#"{"exp":1700003600}"#);
    assert_eq!(
        refresh_token_end(&in_an_hour, now),
        Ok(now + Duration::from_secs(3600))
    );
    assert_eq!(
        refresh_token_end("opaque", now),
        Ok(now + DEFAULT_REFRESH_TOKEN_LIFETIME)
    );
    for dead in [
        r#"{"exp":1700000000}"#,
        r#"{"exp":1600000000}"#,
        r#"{"exp":1800000000}"#,
    ] {
        assert!(
            matches!(
                refresh_token_end(&jwt_with_payload(dead), now),
                Err(Failure::Malformed { .. })
            ),
            "{dead}"
        );
    }
}

fn classify(failure: Failure, body: &str) -> Failure {
    entra_failure(failure, body.as_bytes(), || entra_text(body.as_bytes()))
}

#[test]
fn entra_refusals_of_the_assertion_are_jwt_refused() {
    let mismatch = r#"{"error":"invalid_client","error_description":"AADSTS700213: No matching federated identity record found for presented assertion subject 'x'.","error_codes":[700213]}"#;
    assert_eq!(
        classify(Failure::Unauthorized, mismatch),
        Failure::JwtRefused {
            message: "invalid_client: AADSTS700213: No matching federated identity record found for presented assertion subject 'x'.".to_owned()
        }
    );
    // The older 400 invalid_request form of the generic mismatch.
    let old = r#"{"error":"invalid_request","error_description":"AADSTS70021: No matching federated identity record found for presented assertion.","error_codes":[70021]}"#;
    assert!(matches!(
        classify(
            Failure::Rejected {
                status: 400,
                message: String::new()
            },
            old
        ),
        Failure::JwtRefused { .. }
    ));
    // The code only in the description.
    let no_codes = r#"{"error":"invalid_request","error_description":"AADSTS700024: Client assertion is not within its valid time range."}"#;
    assert!(matches!(
        classify(
            Failure::Rejected {
                status: 400,
                message: String::new()
            },
            no_codes
        ),
        Failure::JwtRefused { .. }
    ));
    // A 401 with a body that is not Entra's is still about the JWT: the broker has no other
    // credential.
    assert!(matches!(
        classify(Failure::Unauthorized, "<html>"),
        Failure::JwtRefused { .. }
    ));
}

#[test]
fn entra_refusals_of_the_request_are_rejected() {
    let app = r#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application with identifier 'x' was not found in the directory 'y'.","error_codes":[700016]}"#;
    assert!(matches!(
        classify(Failure::Rejected { status: 400, message: String::new() }, app),
        Failure::Rejected { status: 400, message } if message.starts_with("unauthorized_client: AADSTS700016")
    ));
    // Some replies carry an unknown application as 401 invalid_client.
    let app_401 = r#"{"error":"invalid_client","error_description":"AADSTS700016: Application was not found.","error_codes":[700016]}"#;
    assert!(matches!(
        classify(Failure::Unauthorized, app_401),
        Failure::Rejected { status: 401, .. }
    ));
    let scope = r#"{"error":"invalid_scope","error_description":"AADSTS1002012: The provided value for scope x is not valid.","error_codes":[1002012]}"#;
    assert!(matches!(
        classify(
            Failure::Rejected {
                status: 400,
                message: String::new()
            },
            scope
        ),
        Failure::Rejected { status: 400, .. }
    ));
    // Other failures pass through.
    assert_eq!(
        classify(Failure::ServerError { status: 503 }, app),
        Failure::ServerError { status: 503 }
    );
    assert!(matches!(
        classify(Failure::Forbidden { message: String::new() }, app),
        Failure::Forbidden { message } if message.contains("AADSTS700016")
    ));
}

#[test]
fn aadsts_codes_are_bounded_and_read_from_both_places() {
    let body: wire::EntraErrorBody = serde_json::from_str(
        r#"{"error_description":"AADSTS50013: x","error_codes":[1,2,3,4,5,6,7,8,9,"10",-1]}"#,
    )
    .unwrap();
    assert_eq!(aadsts_codes(&body), [1, 2, 3, 4, 5, 6, 7, 8, 50013]);
    let long: wire::EntraErrorBody = serde_json::from_str(&format!(
        r#"{{"error_description":"AADSTS{}"}}"#,
        "9".repeat(40)
    ))
    .unwrap();
    assert!(aadsts_codes(&long).is_empty());
}

#[test]
fn error_texts_become_one_line() {
    assert_eq!(
        acr_text(br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"registry"}]}]}"#),
        "UNAUTHORIZED: authentication required"
    );
    assert_eq!(
        acr_text(b"<html>bad gateway</html>"),
        "<html>bad gateway</html>"
    );
    assert_eq!(
        entra_text(br#"{"error":"invalid_client"}"#),
        "invalid_client"
    );
    assert_eq!(entra_text(b"plain"), "plain");
}

#[test]
fn answers_are_read_strictly() {
    for body in [
        r#"{"token_type":"Bearer","expires_in":"3599","access_token":"t"}"#,
        r#"{"token_type":"Bearer","expires_in":-1,"access_token":"t"}"#,
        r#"{"token_type":"Bearer","access_token":"t"}"#,
        r#"{"expires_in":3599,"access_token":"t"}"#,
    ] {
        assert!(
            parse_json::<wire::EntraTokenResponse>(body.as_bytes(), "x").is_err(),
            "{body}"
        );
    }
    assert!(parse_json::<wire::EntraTokenResponse>(
        br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"t"}"#,
        "x"
    )
    .is_ok());
    assert!(parse_json::<wire::ExchangeResponse>(br#"{"access_token":"t"}"#, "x").is_err());
    assert!(printable_token("eyJ.a.b"));
    assert!(!printable_token(""));
    assert!(!printable_token("a b"));
    assert!(!printable_token(&"x".repeat(MAX_TOKEN_BYTES + 1)));
}

#[test]
fn forms_are_percent_encoded() {
    let body = form_body(&[
        ("scope", "https://containerregistry.azure.net/.default"),
        ("a", "x y&z"),
    ]);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "scope=https%3A%2F%2Fcontainerregistry.azure.net%2F.default&a=x%20y%26z"
    );
}

#[test]
fn an_echoed_token_is_scrubbed() {
    let backend = backend();
    let jwt = SecretString::from(format!("eyJ{}", "a".repeat(300)));
    let body = format!(
        r#"{{"error":"invalid_client","error_description":"AADSTS50027: bad {}"}}"#,
        jwt.expose_secret()
    );
    let text = sanitize_vendor_message(
        &backend
            .entra
            .scrub_also(&entra_text(body.as_bytes()), &[&jwt]),
    );
    assert_eq!(text, "invalid_client: AADSTS50027: bad [REDACTED]");
}

#[test]
fn debug_shows_no_secret() {
    let shown = format!("{:?}", backend());
    assert!(shown.contains(TENANT), "{shown}");
    assert!(!shown.contains("PRIVATE"), "{shown}");
}
