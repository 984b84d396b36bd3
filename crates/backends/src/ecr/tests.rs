#![allow(clippy::unwrap_used, reason = "test code")]

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Value, json};
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_token::federation::{FederationIssuer, FederationKey};

use super::grant::map_grant;
use super::wire::{
    assume_role_body, epoch_seconds, parse_credentials, parse_iso8601, parse_sts_error,
    role_session_name,
};
use super::*;
use crate::test_support::scopes;

const ROLE: &str = "arn:aws:iam::111122223333:role/team/svid-broker-ecr";
const PREFIX: &str = "arn:aws:ecr:us-east-1:111122223333:repository/";

fn success(fields: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <AssumeRoleWithWebIdentityResult><SubjectFromWebIdentityToken>s</SubjectFromWebIdentityToken>\
         <Credentials>{fields}</Credentials></AssumeRoleWithWebIdentityResult>\
         <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>"
    )
}

const GOOD_FIELDS: &str = "<SessionToken>FwoG&amp;token+/=</SessionToken>\
     <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY</SecretAccessKey>\
     <Expiration>2026-12-03T19:00:00Z</Expiration><AccessKeyId>ASIAEXAMPLE000000000</AccessKeyId>";

#[test]
fn sts_credentials_are_read_from_awss_xml() {
    let credentials = parse_credentials(success(GOOD_FIELDS).as_bytes()).unwrap();
    assert_eq!(credentials.access_key_id, "ASIAEXAMPLE000000000");
    assert_eq!(credentials.session_token.expose_secret(), "FwoG&token+/=");
    assert_eq!(
        credentials.secret_access_key.expose_secret(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    );
    assert_eq!(
        credentials.expiration,
        UNIX_EPOCH + Duration::from_secs(1_796_324_400)
    );
    // Namespace prefixes and CDATA are XML too.
    let prefixed = success(GOOD_FIELDS)
        .replace(
            "<SessionToken>FwoG&amp;token+/=</SessionToken>",
            "<SessionToken><![CDATA[FwoG&token+/=]]></SessionToken>",
        )
        .replace(
            "AssumeRoleWithWebIdentityResponse",
            "sts:AssumeRoleWithWebIdentityResponse",
        );
    let credentials = parse_credentials(prefixed.as_bytes()).unwrap();
    assert_eq!(credentials.session_token.expose_secret(), "FwoG&token+/=");
}

#[test]
fn hostile_or_wrong_xml_is_malformed() {
    let long = "A".repeat(20 * 1024);
    let deep = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
    let cases = [
        "".to_owned(),
        "not xml".to_owned(),
        "<ErrorResponse>".to_owned(),
        deep,
        success(GOOD_FIELDS).replace("<AccessKeyId>ASIAEXAMPLE000000000</AccessKeyId>", ""),
        success(&format!(
            "{GOOD_FIELDS}<AccessKeyId>ASIAOTHER00000000000</AccessKeyId>"
        )),
        success(GOOD_FIELDS).replace("ASIAEXAMPLE000000000", "ASIA-short"),
        success(GOOD_FIELDS).replace("2026-12-03T19:00:00Z", "tomorrow"),
        success(GOOD_FIELDS).replace("2026-12-03T19:00:00Z", "2026-02-30T19:00:00Z"),
        success(GOOD_FIELDS).replace("FwoG&amp;token", "Fwo G"),
        success(GOOD_FIELDS).replace("&amp;", "&xxe;"),
        format!(
            "<!DOCTYPE x [<!ENTITY e \"boom\">]>{}",
            success(GOOD_FIELDS)
        ),
        success(GOOD_FIELDS).replace("FwoG&amp;token+/=", &long),
        success(GOOD_FIELDS).replace("<SessionToken>", "<SessionToken><b>x</b>"),
        format!("{}<second/>", success(GOOD_FIELDS)),
    ];
    for case in cases {
        assert!(
            matches!(
                parse_credentials(case.as_bytes()),
                Err(Failure::Malformed { .. })
            ),
            "{}",
            case.chars().take(120).collect::<String>()
        );
    }
}

#[test]
fn sts_errors_are_read_and_odd_bodies_are_not() {
    let body = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
                <Code>InvalidIdentityToken</Code><Message>Incorrect token audience &lt;x&gt;</Message></Error>\
                <RequestId>r</RequestId></ErrorResponse>";
    let error = parse_sts_error(body.as_bytes()).unwrap();
    assert_eq!(error.code, "InvalidIdentityToken");
    assert_eq!(error.message, "Incorrect token audience <x>");
    assert_eq!(parse_sts_error(b"<html>502 Bad Gateway</html>"), None);
    assert_eq!(parse_sts_error(b"{\"json\": true}"), None);
}

#[test]
fn iso8601_and_epoch_seconds_are_strict() {
    assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
    assert_eq!(
        parse_iso8601("2024-02-29T12:00:00.500Z"),
        Some(UNIX_EPOCH + Duration::from_millis(1_709_208_000_500))
    );
    for bad in [
        "2024-02-29 12:00:00Z",
        "2024-02-29T12:00:00",
        "2024-02-29T12:00:00+01:00",
        "2023-02-29T12:00:00Z",
        "2024-13-01T12:00:00Z",
        "1969-12-31T23:59:59Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T12:00:00.Z",
    ] {
        assert_eq!(parse_iso8601(bad), None, "{bad}");
    }
    assert_eq!(
        epoch_seconds(1_700_000_000.25),
        Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_250))
    );
    for bad in [-1.0, f64::NAN, f64::INFINITY, 1e12] {
        assert_eq!(epoch_seconds(bad), None, "{bad}");
    }
}

#[test]
fn the_session_policy_narrows_to_the_granted_repositories() {
    let grant = map_grant(&scopes(&[
        "repository:team-a/app:pull",
        "repository:team-a/lib:push,pull",
        "repository:team-a/app:pull",
    ]))
    .unwrap();
    assert_eq!(grant.key(), "team-a/app=pull team-a/lib=pull,push");
    let policy: Value = serde_json::from_str(&grant.session_policy(PREFIX)).unwrap();
    assert_eq!(
        policy,
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {"Effect": "Allow", "Action": PULL_ACTIONS,
             "Resource": [format!("{PREFIX}team-a/app"), format!("{PREFIX}team-a/lib")]},
            {"Effect": "Allow", "Action": PUSH_ACTIONS, "Resource": [format!("{PREFIX}team-a/lib")]},
        ]})
    );
    // Push alone (a policy denying pull there): the push actions, never a pull action, and a
    // key of its own, so a push-only credential is never reused for a pull-and-push grant.
    let push_only = map_grant(&scopes(&["repository:team-a/secret:push"])).unwrap();
    assert_eq!(push_only.key(), "team-a/secret=push");
    let policy: Value = serde_json::from_str(&push_only.session_policy(PREFIX)).unwrap();
    assert_eq!(
        policy["Statement"],
        json!([
            {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {"Effect": "Allow", "Action": PUSH_ACTIONS, "Resource": [format!("{PREFIX}team-a/secret")]},
        ])
    );
    for pull in ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"] {
        assert!(!policy.to_string().contains(pull), "{policy}");
    }
    let pull_only = map_grant(&scopes(&["repository:team-a/app:pull"])).unwrap();
    let policy: Value = serde_json::from_str(&pull_only.session_policy(PREFIX)).unwrap();
    assert_eq!(policy["Statement"].as_array().unwrap().len(), 2);
    let every = map_grant(&[svid_broker_policy::ResourceScope::every_repository([
        svid_broker_policy::Action::PULL,
    ])])
    .unwrap();
    assert!(every.session_policy(PREFIX).contains("repository/*\""));
    assert!(matches!(
        map_grant(&scopes(&["repository:team-a/app:delete"])),
        Err(Failure::UnsupportedAction { .. })
    ));
    assert!(matches!(map_grant(&[]), Err(Failure::NoRepository)));
}

fn issuer() -> Arc<FederationIssuer> {
    Arc::new(
        FederationIssuer::new(
            "https://broker.example.org/federation",
            vec![FederationKey::generate().unwrap()],
            Duration::from_secs(300),
        )
        .unwrap(),
    )
}

fn backend(configure: impl FnOnce(&mut EcrConfig)) -> Result<EcrBackend, ConfigError> {
    let mut config = EcrConfig::new("corp", issuer(), ROLE, "us-east-1");
    configure(&mut config);
    EcrBackend::new(config)
}

#[test]
fn the_configuration_is_checked_setting_by_setting() {
    let config = EcrConfig::new("corp", issuer(), ROLE, "eu-west-1");
    assert_eq!(config.sts_endpoint, "https://sts.eu-west-1.amazonaws.com");
    assert_eq!(
        config.ecr_endpoint,
        "https://api.ecr.eu-west-1.amazonaws.com"
    );
    assert_eq!(config.audience, "sts.amazonaws.com");
    let china = EcrConfig::new(
        "corp",
        issuer(),
        "arn:aws-cn:iam::111122223333:role/r",
        "cn-north-1",
    );
    assert_eq!(
        china.ecr_endpoint,
        "https://api.ecr.cn-north-1.amazonaws.com.cn"
    );
    assert!(backend(|_| {}).is_ok());
    let setting_of = |result: Result<EcrBackend, ConfigError>| match result.unwrap_err().problem {
        ConfigProblem::InvalidSetting { setting, .. } => setting,
        other => panic!("{other:?}"),
    };
    for arn in [
        "arn:aws:iam::11112222333:role/r",
        "arn:aws:iam::111122223333:user/r",
        "arn:aws:iam:us-east-1:111122223333:role/r",
        "arn:aws:iam::111122223333:role/",
        "arn:aws:iam::111122223333:role/a b",
    ] {
        let arn = arn.to_owned();
        assert_eq!(setting_of(backend(|c| c.role_arn = arn)), "role_arn");
    }
    assert_eq!(
        setting_of(backend(|c| c.region = "US-EAST-1".to_owned())),
        "region"
    );
    assert_eq!(setting_of(backend(|c| c.region = String::new())), "region");
    assert_eq!(
        setting_of(backend(|c| c.audience = " ".to_owned())),
        "audience"
    );
    assert_eq!(
        setting_of(backend(|c| c.subject_template = "{project}".to_owned())),
        "subject_template"
    );
    for seconds in [899, 43_201] {
        assert_eq!(
            setting_of(backend(
                |c| c.session_duration = Duration::from_secs(seconds)
            )),
            "session_duration"
        );
    }
    assert_eq!(
        setting_of(backend(
            |c| c.session_duration = Duration::from_millis(900_500)
        )),
        "session_duration"
    );
    for pattern in ["/ns/*/sa/*", "ns/{ns}", "/ns/{Bad}"] {
        let pattern = pattern.to_owned();
        assert_eq!(
            setting_of(backend(|c| c.session_tags = Some(pattern))),
            "session_tags"
        );
    }
    assert!(
        backend(|c| c.session_tags = Some("spiffe://example.org/ns/{ns}/**".to_owned())).is_ok()
    );
    let plain = backend(|c| c.sts_endpoint = "http://sts.example.com".to_owned());
    assert!(matches!(
        plain.unwrap_err().problem,
        ConfigProblem::PlainHttpNotLoopback { .. }
    ));
}

#[test]
fn the_reuse_key_names_role_region_and_repositories_and_tags_follow_the_pattern() {
    let tagged =
        backend(|c| c.session_tags = Some("/ns/{namespace}/sa/{service_account}".to_owned()))
            .unwrap();
    let now = SystemTime::now();
    let grant = BackendGrant::new(
        "corp",
        "spiffe://example.org/ns/team-a/sa/app",
        scopes(&["repository:team-a/app:pull"]),
        now + Duration::from_secs(300),
    );
    let mapped = tagged.map(&grant).unwrap();
    assert_eq!(
        mapped.reuse_key(),
        format!("{ROLE} us-east-1 team-a/app=pull")
    );
    assert_eq!(
        Value::Object(mapped.tags.unwrap()),
        json!({"principal_tags": {"namespace": ["team-a"], "service_account": ["app"]},
               "transitive_tag_keys": []})
    );
    let mut other = grant.clone();
    other.subject = "spiffe://example.org/team-a/app".to_owned();
    let error = tagged.map(&other).unwrap_err();
    assert_eq!(error.step, Step::MapGrant);
    let many: Vec<String> = (0..60)
        .map(|i| format!("repository:team-a/a-long-repository-name-{i}:pull"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let mut big = grant;
    big.scopes = scopes(&many);
    let error = tagged.map(&big).unwrap_err();
    assert!(
        error.to_string().contains("2048-character limit"),
        "{error}"
    );
}

#[test]
fn the_role_session_name_is_stable_and_fits_stss_rule() {
    let name = role_session_name("spiffe://example.org/ns/team-a/sa/app");
    assert_eq!(
        name,
        role_session_name("spiffe://example.org/ns/team-a/sa/app")
    );
    assert_ne!(
        name,
        role_session_name("spiffe://example.org/ns/team-a/sa/other")
    );
    assert_eq!(name.len(), 29);
    assert!(name.starts_with("svid-"));
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
    );
}

#[test]
fn the_form_body_encodes_every_parameter() {
    let body = assume_role_body(ROLE, "svid-x", "a.b.c", 900, "{\"V\":1}");
    let text = String::from_utf8(body).unwrap();
    assert_eq!(
        text,
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15\
         &RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fteam%2Fsvid-broker-ecr\
         &RoleSessionName=svid-x&WebIdentityToken=a.b.c&DurationSeconds=900\
         &Policy=%7B%22V%22%3A1%7D"
    );
}

#[test]
fn the_login_must_be_aws_and_a_printable_password() {
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    assert_eq!(
        decode_login(&encode("AWS:pass:word"))
            .unwrap()
            .expose_secret(),
        "pass:word"
    );
    for bad in ["AWS:", "aws:x", "AWSx", "AWS:two words"] {
        assert!(decode_login(&encode(bad)).is_err(), "{bad}");
    }
    assert!(decode_login("%%%").is_err());
}

#[test]
fn ecr_error_texts_drop_the_namespace() {
    let body: wire::EcrErrorBody = serde_json::from_str(
        r#"{"__type":"com.amazonaws.ecr#AccessDeniedException","Message":"no"}"#,
    )
    .unwrap();
    assert_eq!(body.text(), "AccessDeniedException: no");
}
