//! The fake's rules: SigV4 against AWS's published `get-vanilla` vector, then STS's and ECR's
//! rules driven over real HTTP with JWTs signed here by a test issuer a [`DocumentHost`]
//! publishes, and requests signed here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method};
use serde_json::{Map, Value, json};

use super::rules::{Permissions, PolicyStatement, glob, parse_policy, session_tags};
use super::{Condition, Endpoint, FakeAws, Fault, RoleTrust, Statement, sigv4};
use crate::fake::federation::DocumentHost;
use crate::fake::testing::{Call, Listening, Resp, rsa_jwk, sign_rs256, test_rsa_key};

const ROLE: &str = "arn:aws:iam::111122223333:role/ecr-puller";
const AUDIENCE: &str = "sts.amazonaws.com";
const SUBJECT: &str = "spiffe://example.org/ns/team-a/sa/app";
const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";

// === SigV4: AWS's test vector ===

#[test]
fn sigv4_matches_the_published_get_vanilla_vector() {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("example.amazonaws.com"));
    headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
    let signed = ["host".to_owned(), "x-amz-date".to_owned()];
    let canonical = sigv4::canonical_request("GET", "/", "", &headers, &signed, b"").unwrap();
    assert_eq!(
        canonical,
        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let to_sign = sigv4::string_to_sign(
        "20150830T123600Z",
        "20150830/us-east-1/service/aws4_request",
        &canonical,
    );
    assert_eq!(
        to_sign,
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
         bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
    );
    let signature = sigv4::signature(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "20150830",
        "us-east-1",
        "service",
        &to_sign,
    );
    assert_eq!(
        signature,
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    );
    let header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    let auth = sigv4::parse_authorization(header).unwrap();
    assert_eq!(auth.access_key_id, "AKIDEXAMPLE");
    assert_eq!(auth.signed_headers, signed);
    assert_eq!(
        sigv4::parse_amz_date("20150830T123600Z"),
        Some(1_440_938_160)
    );
    assert_eq!(sigv4::amz_date(1_440_938_160), "20150830T123600Z");
    assert_eq!(sigv4::iso8601(1_440_938_160), "2015-08-30T12:36:00Z");
}

/// More vectors of AWS's SigV4 test suite (as shipped with smithy-rs's `aws-sigv4`): a query
/// to sort, header values to trim, and a signed body.
#[test]
fn sigv4_matches_more_published_vectors() {
    struct Vector {
        method: &'static str,
        query: &'static str,
        headers: &'static [(&'static str, &'static str)],
        body: &'static [u8],
        signature: &'static str,
    }
    let vectors = [
        Vector {
            method: "GET",
            query: "Param2=value2&Param1=value1",
            headers: &[("host", "example.amazonaws.com")],
            body: b"",
            signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        },
        Vector {
            method: "GET",
            query: "",
            headers: &[
                ("host", "example.amazonaws.com"),
                ("my-header1", " value1"),
                ("my-header2", " \"a   b   c\""),
            ],
            body: b"",
            signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        },
        Vector {
            method: "POST",
            query: "",
            headers: &[
                ("content-length", "13"),
                ("content-type", "application/x-www-form-urlencoded"),
                ("host", "example.amazonaws.com"),
                (
                    "x-amz-content-sha256",
                    "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
                ),
            ],
            body: b"Param1=value1",
            signature: "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
        },
    ];
    for vector in vectors {
        let mut headers = HeaderMap::new();
        for (name, value) in vector.headers {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        let mut signed: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
        signed.sort();
        let canonical = sigv4::canonical_request(
            vector.method,
            "/",
            vector.query,
            &headers,
            &signed,
            vector.body,
        )
        .unwrap();
        let to_sign = sigv4::string_to_sign(
            "20150830T123600Z",
            "20150830/us-east-1/service/aws4_request",
            &canonical,
        );
        let signature = sigv4::signature(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830",
            "us-east-1",
            "service",
            &to_sign,
        );
        assert_eq!(signature, vector.signature, "{canonical}");
    }
}

#[test]
fn malformed_authorization_headers_and_unsorted_signed_headers_are_refused() {
    let good = "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/ecr/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    assert!(sigv4::parse_authorization(good).is_some());
    for bad in [
        good.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"),
        good.replace("aws4_request", "aws5_request"),
        good.replace("Signature=5f", "Signature=5F"),
        good.replace(
            ", Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            "",
        ),
        good.replace("SignedHeaders=host", "SignedHeaders=Host"),
        format!("{good}, Signature=00"),
    ] {
        assert!(sigv4::parse_authorization(&bad).is_none(), "{bad}");
    }
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("h"));
    headers.insert("x-amz-date", HeaderValue::from_static("d"));
    let unsorted = ["x-amz-date".to_owned(), "host".to_owned()];
    assert!(sigv4::canonical_request("GET", "/", "", &headers, &unsorted, b"").is_none());
    let missing = ["host".to_owned(), "x-amz-target".to_owned()];
    assert!(sigv4::canonical_request("GET", "/", "", &headers, &missing, b"").is_none());
}

// === IAM policy evaluation ===

#[test]
fn policies_intersect_and_wildcards_match_as_iam_does() {
    assert!(glob(
        "arn:aws:ecr:*:1:repository/team-a/*",
        "arn:aws:ecr:us-east-1:1:repository/team-a/app"
    ));
    assert!(!glob(
        "arn:aws:ecr:*:1:repository/team-a/*",
        "arn:aws:ecr:us-east-1:1:repository/team-b/app"
    ));
    assert!(glob(
        "ecr:Get?uthorizationToken",
        "ecr:GetAuthorizationToken"
    ));
    assert!(!glob("arn:x", "*"));
    let role = vec![PolicyStatement::from(&Statement::allow(&["ecr:*"], &["*"]))];
    let session = parse_policy(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:BatchGetImage"],"Resource":"arn:aws:ecr:us-east-1:1:repository/team-a/app"},{"Effect":"Deny","Action":"ecr:*","Resource":"arn:aws:ecr:us-east-1:1:repository/team-a/app-secret"}]}"#,
    )
    .unwrap();
    let narrowed = Permissions {
        role: role.clone(),
        session: Some(session),
    };
    let app = "arn:aws:ecr:us-east-1:1:repository/team-a/app";
    assert!(narrowed.allows("ecr:BatchGetImage", app));
    assert!(
        narrowed.allows("ECR:batchgetimage", app),
        "action names ignore case"
    );
    assert!(
        !narrowed.allows("ecr:PutImage", app),
        "the session policy narrows"
    );
    assert!(!narrowed.allows(
        "ecr:BatchGetImage",
        "arn:aws:ecr:us-east-1:1:repository/team-b/x"
    ));
    let only_role = Permissions {
        role,
        session: None,
    };
    assert!(only_role.allows("ecr:PutImage", app));
    let none = Permissions {
        role: vec![PolicyStatement::from(&Statement::allow(
            &["ecr:BatchGetImage"],
            &[app],
        ))],
        session: Some(
            parse_policy(r#"{"Statement":{"Effect":"Allow","Action":"ecr:*","Resource":"*"}}"#)
                .unwrap(),
        ),
    };
    assert!(
        !none.allows("ecr:GetAuthorizationToken", "*"),
        "the role limits the session"
    );
    for bad in [
        "not json",
        "[]",
        r#"{"Statement":[]}x"#,
        r#"{"Statement":[{"Effect":"Maybe","Action":"a","Resource":"*"}]}"#,
        r#"{"Statement":[{"Effect":"Allow","Resource":"*"}]}"#,
        r#"{"Statement":[{"Effect":"Allow","NotAction":"a","Resource":"*"}]}"#,
    ] {
        assert_eq!(
            parse_policy(bad).unwrap_err().code,
            "MalformedPolicyDocument",
            "{bad}"
        );
    }
}

#[test]
fn session_tags_follow_sts_rules() {
    let with = |tags: Value| {
        let mut claims = Map::new();
        claims.insert(super::rules::TAGS_CLAIM.to_owned(), tags);
        session_tags(&claims)
    };
    assert_eq!(session_tags(&Map::new()).unwrap(), None);
    let ok = with(json!({"principal_tags": {"namespace": ["team-a"], "sa": "app"}, "transitive_tag_keys": ["sa"]}))
        .unwrap()
        .unwrap();
    assert_eq!(ok.get("namespace").map(String::as_str), Some("team-a"));
    assert_eq!(ok.get("sa").map(String::as_str), Some("app"));
    let many: Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!(["v"]))).collect();
    for bad in [
        json!(["principal_tags"]),
        json!({"principal_tags": {"aws:name": ["x"]}}),
        json!({"principal_tags": {"k": ["a", "b"]}}),
        json!({"principal_tags": {"k": ["x".repeat(257)]}}),
        json!({"principal_tags": {"k": ["bad!"]}}),
        json!({"principal_tags": {"Team": ["a"], "team": ["b"]}}),
        json!({"principal_tags": {"k": ["v"]}, "transitive_tag_keys": ["other"]}),
        json!({ "principal_tags": many }),
    ] {
        assert_eq!(
            with(bad.clone()).unwrap_err().code,
            "InvalidIdentityToken",
            "{bad}"
        );
    }
}

// === over HTTP ===

/// A test OIDC issuer at a document host, publishing key 0 as `k0`.
struct Issuer {
    /// Kept so the documents stay served.
    _host: DocumentHost,
    url: String,
}

impl Issuer {
    fn start() -> Self {
        let host = DocumentHost::start().unwrap();
        let url = format!("{}/issuer", host.url());
        host.set(
            "/issuer/.well-known/openid-configuration",
            "application/json",
            json!({ "issuer": url, "jwks_uri": format!("{url}/jwks.json") }).to_string(),
        );
        host.set(
            "/issuer/jwks.json",
            "application/json",
            json!({ "keys": [rsa_jwk("k0", test_rsa_key(0))] }).to_string(),
        );
        Self { _host: host, url }
    }

    /// A token with `extra` claims over the defaults.
    fn token(&self, extra: &Value) -> String {
        let now = unix_now();
        let mut claims = json!({
            "iss": self.url, "sub": SUBJECT, "aud": AUDIENCE,
            "iat": now, "nbf": now, "exp": now + 300, "jti": "j1",
        });
        for (name, value) in extra.as_object().unwrap() {
            claims[name] = value.clone();
        }
        sign_rs256("k0", test_rsa_key(0), &claims)
    }
}

fn unix_now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// One of the fake's listeners.
struct At(SocketAddr);

impl Listening for At {
    fn addr(&self) -> SocketAddr {
        self.0
    }
}

fn fake(issuer: &Issuer, trust: RoleTrust) -> FakeAws {
    let fake = FakeAws::start().unwrap();
    fake.add_oidc_provider(&issuer.url, &[AUDIENCE]);
    fake.add_role(
        ROLE,
        trust,
        &[
            Statement::allow(&["ecr:GetAuthorizationToken"], &["*"]),
            Statement::allow(
                &["ecr:*"],
                &["arn:aws:ecr:us-east-1:111122223333:repository/*"],
            ),
        ],
    )
    .unwrap();
    fake
}

fn trust(issuer: &Issuer) -> RoleTrust {
    RoleTrust::new(
        issuer.url.clone(),
        Condition::StringLike("spiffe://example.org/ns/team-a/*".to_owned()),
        Condition::StringEquals(AUDIENCE.to_owned()),
    )
}

fn params(token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Action", "AssumeRoleWithWebIdentity".to_owned()),
        ("Version", "2011-06-15".to_owned()),
        ("RoleArn", ROLE.to_owned()),
        ("RoleSessionName", "svid-test".to_owned()),
        ("WebIdentityToken", token.to_owned()),
        ("DurationSeconds", "900".to_owned()),
        (
            "Policy",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"},{"Effect":"Allow","Action":"ecr:BatchGetImage","Resource":"arn:aws:ecr:us-east-1:111122223333:repository/team-a/app"}]}"#.to_owned(),
        ),
    ]
}

async fn sts(fake: &FakeAws, params: &[(&str, String)]) -> Resp {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    Call::new(Method::POST, "/")
        .body("application/x-www-form-urlencoded", body.into_bytes())
        .send(&At(fake.sts_addr()))
        .await
}

/// The text of the first `<tag>` of an XML answer.
fn xml(resp: &Resp, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = resp
        .body
        .find(&open)
        .unwrap_or_else(|| panic!("{tag}: {}", resp.body))
        + open.len();
    let end = resp.body[start..].find(&format!("</{tag}>")).unwrap() + start;
    resp.body[start..end].to_owned()
}

fn sts_refused(resp: &Resp, status: u16, code: &str) -> String {
    assert_eq!(resp.status, status, "{}", resp.body);
    assert_eq!(xml(resp, "Code"), code, "{}", resp.body);
    assert!(resp.body.contains("<RequestId>"), "{}", resp.body);
    xml(resp, "Message")
}

#[tokio::test]
async fn sts_refuses_requests_that_break_the_parameter_constraints() {
    let issuer = Issuer::start();
    let fake = fake(&issuer, trust(&issuer));
    let token = issuer.token(&json!({}));
    let with = |name: &str, value: &str| {
        let mut p = params(&token);
        for (k, v) in &mut p {
            if *k == name {
                *v = value.to_owned();
            }
        }
        p
    };
    for (name, value, code) in [
        ("Action", "AssumeRole", "InvalidAction"),
        ("Version", "2011-06-16", "InvalidAction"),
        ("RoleArn", "arn:aws:iam::1:role", "ValidationError"),
        ("RoleSessionName", "x", "ValidationError"),
        ("RoleSessionName", "has space", "ValidationError"),
        ("RoleSessionName", &"x".repeat(65), "ValidationError"),
        ("WebIdentityToken", "abc", "ValidationError"),
        ("DurationSeconds", "899", "ValidationError"),
        ("DurationSeconds", "43201", "ValidationError"),
        ("DurationSeconds", "ten", "ValidationError"),
        ("Policy", &"x".repeat(2049), "ValidationError"),
        ("Policy", "{\"Statement\": \"\u{0100}\"}", "ValidationError"),
        ("Policy", "{not json", "MalformedPolicyDocument"),
    ] {
        let resp = sts(&fake, &with(name, value)).await;
        sts_refused(&resp, 400, code);
    }
    let mut missing = params(&token);
    missing.retain(|(k, _)| *k != "RoleArn");
    sts_refused(&sts(&fake, &missing).await, 400, "ValidationError");
    let resp = Call::new(Method::POST, "/")
        .body("application/json", b"{}".to_vec())
        .send(&At(fake.sts_addr()))
        .await;
    sts_refused(&resp, 400, "MissingAction");
    assert_eq!(fake.sessions_issued(), 0);
    assert!(fake.audit().is_empty(), "nothing got as far as the JWT");
}

#[tokio::test]
async fn sts_verifies_the_token_then_the_trust_policy() {
    let issuer = Issuer::start();
    let fake = fake(&issuer, trust(&issuer));
    // A role max of one hour.
    let mut long = params(&issuer.token(&json!({})));
    long[5].1 = "3601".to_owned();
    let message = sts_refused(&sts(&fake, &long).await, 400, "ValidationError");
    assert!(message.contains("MaxSessionDuration"), "{message}");

    let cases = [
        (
            json!({"iss": "http://127.0.0.1:1/other"}),
            400,
            "InvalidIdentityToken",
            "No OpenIDConnect provider found in your account for http://127.0.0.1:1/other",
        ),
        (
            json!({"aud": "someone-else"}),
            400,
            "InvalidIdentityToken",
            "Incorrect token audience",
        ),
        (
            json!({"sub": "spiffe://example.org/ns/team-b/sa/app"}),
            403,
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        ),
        (
            json!({"https://aws.amazon.com/tags": {"principal_tags": {"ns": ["team-a"]}}}),
            403,
            "AccessDenied",
            "Not authorized",
        ),
        (
            json!({"exp": unix_now() - 1}),
            400,
            "ExpiredTokenException",
            "Token expired",
        ),
    ];
    for (claims, status, code, says) in cases {
        let resp = sts(&fake, &params(&issuer.token(&claims))).await;
        let message = sts_refused(&resp, status, code);
        assert!(message.contains(says), "{claims}: {message}");
    }
    // A token signed by a key the issuer never published.
    let foreign = sign_rs256(
        "k9",
        test_rsa_key(1),
        &json!({
            "iss": issuer.url, "sub": SUBJECT, "aud": AUDIENCE,
            "iat": unix_now(), "exp": unix_now() + 300,
        }),
    );
    sts_refused(
        &sts(&fake, &params(&foreign)).await,
        400,
        "InvalidIdentityToken",
    );
    // A role that does not exist.
    let mut other_role = params(&issuer.token(&json!({})));
    other_role[2].1 = "arn:aws:iam::111122223333:role/nobody".to_owned();
    sts_refused(&sts(&fake, &other_role).await, 403, "AccessDenied");
    assert_eq!(fake.sessions_issued(), 0);
    let outcomes: Vec<String> = fake.audit().into_iter().map(|a| a.outcome).collect();
    // Refusals before the signature verified (no provider, expired, unknown key) are not
    // in the audit; the others are, with the code STS answered.
    assert_eq!(
        outcomes,
        [
            "ValidationError",
            "InvalidIdentityToken",
            "AccessDenied",
            "AccessDenied",
            "AccessDenied"
        ]
    );
}

#[tokio::test]
async fn sts_issues_a_session_in_aws_shapes_and_records_the_token() {
    let issuer = Issuer::start();
    let fake = fake(&issuer, trust(&issuer).with_tag_session());
    let token = issuer.token(&json!({"https://aws.amazon.com/tags": {"principal_tags": {"namespace": ["team-a"]}, "transitive_tag_keys": []}}));
    let resp = sts(&fake, &params(&token)).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(resp.body.starts_with(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
    ));
    let key = xml(&resp, "AccessKeyId");
    assert!(key.starts_with("ASIA") && key.len() == 20, "{key}");
    assert_eq!(xml(&resp, "SubjectFromWebIdentityToken"), SUBJECT);
    assert_eq!(xml(&resp, "Audience"), AUDIENCE);
    assert_eq!(
        xml(&resp, "Arn"),
        "arn:aws:sts::111122223333:assumed-role/ecr-puller/svid-test"
    );
    assert!(xml(&resp, "Expiration").ends_with('Z'));
    let audit = fake.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].kid.as_str(), audit[0].outcome.as_str()),
        ("k0", "issued")
    );
    assert_eq!(
        audit[0].session_tags.get("namespace").map(String::as_str),
        Some("team-a")
    );
    assert_eq!(fake.sessions_issued(), 1);
}

/// A session's credentials, from STS.
struct Creds {
    key: String,
    secret: String,
    token: String,
}

async fn session(fake: &FakeAws, issuer: &Issuer) -> Creds {
    let resp = sts(fake, &params(&issuer.token(&json!({})))).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    Creds {
        key: xml(&resp, "AccessKeyId"),
        secret: xml(&resp, "SecretAccessKey"),
        token: xml(&resp, "SessionToken"),
    }
}

/// `GetAuthorizationToken` signed here at `at` (Unix seconds) with `creds`, `tamper` applied
/// to the finished Authorization header.
async fn get_token(
    fake: &FakeAws,
    creds: &Creds,
    at: i64,
    tamper: impl Fn(String) -> String,
) -> Resp {
    let host = fake.ecr_addr().to_string();
    let amz_date = sigv4::amz_date(at);
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    headers.insert("host", HeaderValue::from_str(&host).unwrap());
    headers.insert("x-amz-date", HeaderValue::from_str(&amz_date).unwrap());
    headers.insert(
        "x-amz-security-token",
        HeaderValue::from_str(&creds.token).unwrap(),
    );
    headers.insert("x-amz-target", HeaderValue::from_static(TARGET));
    let signed: Vec<String> = [
        "content-type",
        "host",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-target",
    ]
    .map(str::to_owned)
    .to_vec();
    let canonical = sigv4::canonical_request("POST", "/", "", &headers, &signed, b"{}").unwrap();
    let date = &amz_date[..8];
    let scope = format!("{date}/us-east-1/ecr/aws4_request");
    let signature = sigv4::signature(
        &creds.secret,
        date,
        "us-east-1",
        "ecr",
        &sigv4::string_to_sign(&amz_date, &scope, &canonical),
    );
    let authorization = tamper(format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
        creds.key,
        signed.join(";")
    ));
    Call::new(Method::POST, "/")
        .body("application/x-amz-json-1.1", b"{}".to_vec())
        .header("x-amz-date", amz_date)
        .header("x-amz-security-token", creds.token.clone())
        .header("x-amz-target", TARGET)
        .header("authorization", authorization)
        .send(&At(fake.ecr_addr()))
        .await
}

fn ecr_refused(resp: &Resp, status: u16, kind: &str) -> String {
    assert_eq!(resp.status, status, "{}", resp.body);
    let body = resp.json();
    assert_eq!(body["__type"], kind, "{}", resp.body);
    body["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn ecr_verifies_the_signature_the_session_and_the_clock() {
    let issuer = Issuer::start();
    let fake = fake(&issuer, trust(&issuer));
    let creds = session(&fake, &issuer).await;
    let now = unix_now();

    let resp = get_token(&fake, &creds, now, |a| a).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let data = &resp.json()["authorizationData"][0];
    let decoded = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        data["authorizationToken"].as_str().unwrap(),
    )
    .unwrap();
    let decoded = String::from_utf8(decoded).unwrap();
    let password = decoded.strip_prefix("AWS:").unwrap();
    assert!(fake.token_is_live(password));
    let expires_at = data["expiresAt"].as_f64().unwrap();
    #[allow(clippy::cast_precision_loss, reason = "test")]
    let twelve_hours = (now + 12 * 3600) as f64;
    assert!((expires_at - twelve_hours).abs() < 5.0, "{expires_at}");
    assert_eq!(
        data["proxyEndpoint"],
        "https://111122223333.dkr.ecr.us-east-1.amazonaws.com"
    );

    // A tampered signature.
    let tampered = get_token(&fake, &creds, now, |a| {
        let last = a.chars().last().unwrap();
        let flipped = if last == '0' { '1' } else { '0' };
        format!("{}{flipped}", &a[..a.len() - 1])
    })
    .await;
    let message = ecr_refused(&tampered, 403, "InvalidSignatureException");
    assert!(
        message.starts_with("The request signature we calculated does not match"),
        "{message}"
    );
    // A key the fake's STS never issued.
    let foreign = Creds {
        key: "ASIAFOREIGNKEY000000".to_owned(),
        secret: creds.secret.clone(),
        token: creds.token.clone(),
    };
    let message = ecr_refused(
        &get_token(&fake, &foreign, now, |a| a).await,
        403,
        "UnrecognizedClientException",
    );
    assert_eq!(
        message,
        "The security token included in the request is invalid."
    );
    // Another session's token.
    let wrong_token = Creds {
        key: creds.key.clone(),
        secret: creds.secret.clone(),
        token: "IQoJbogus".to_owned(),
    };
    ecr_refused(
        &get_token(&fake, &wrong_token, now, |a| a).await,
        403,
        "UnrecognizedClientException",
    );
    // The wrong secret: the signature does not match.
    let wrong_secret = Creds {
        key: creds.key.clone(),
        secret: "x".repeat(40),
        token: creds.token.clone(),
    };
    ecr_refused(
        &get_token(&fake, &wrong_secret, now, |a| a).await,
        403,
        "InvalidSignatureException",
    );
    // A stale X-Amz-Date.
    let message = ecr_refused(
        &get_token(&fake, &creds, now - 16 * 60, |a| a).await,
        403,
        "InvalidSignatureException",
    );
    assert!(message.starts_with("Signature expired: "), "{message}");
    // Another region or service in the scope.
    let other_region = get_token(&fake, &creds, now, |a| {
        a.replace("/us-east-1/", "/eu-west-1/")
    })
    .await;
    ecr_refused(&other_region, 403, "InvalidSignatureException");
    // Unsigned host.
    let unsigned = get_token(&fake, &creds, now, |a| {
        a.replace("content-type;host;", "content-type;")
    })
    .await;
    ecr_refused(&unsigned, 403, "InvalidSignatureException");
    ecr_refused(
        &get_token(&fake, &creds, now, |_| "Bearer x".to_owned()).await,
        403,
        "IncompleteSignature",
    );

    // The session (900 s) expires; the request is signed at the fake's later time.
    fake.advance_clock(Duration::from_secs(901));
    let message = ecr_refused(
        &get_token(&fake, &creds, now + 901, |a| a).await,
        403,
        "ExpiredTokenException",
    );
    assert_eq!(
        message,
        "The security token included in the request is expired"
    );
    // ECR's token outlives the session (12 hours).
    assert!(fake.token_is_live(password));
    assert_eq!(fake.tokens_issued(), 1);
}

#[tokio::test]
async fn ecr_checks_the_operation_and_the_session_policy() {
    let issuer = Issuer::start();
    let fake = fake(&issuer, trust(&issuer));
    let wrong_target = Call::new(Method::POST, "/")
        .body("application/x-amz-json-1.1", b"{}".to_vec())
        .header(
            "x-amz-target",
            "AmazonEC2ContainerRegistry_V20150921.ListImages",
        )
        .send(&At(fake.ecr_addr()))
        .await;
    ecr_refused(&wrong_target, 400, "UnknownOperationException");
    let wrong_type = Call::new(Method::POST, "/")
        .body("application/json", b"{}".to_vec())
        .header("x-amz-target", TARGET)
        .send(&At(fake.ecr_addr()))
        .await;
    ecr_refused(&wrong_type, 400, "SerializationException");
    let unsigned = Call::new(Method::POST, "/")
        .body("application/x-amz-json-1.1", b"{}".to_vec())
        .header("x-amz-target", TARGET)
        .send(&At(fake.ecr_addr()))
        .await;
    ecr_refused(&unsigned, 400, "MissingAuthenticationTokenException");

    // A session policy without ecr:GetAuthorizationToken.
    let mut narrow = params(&issuer.token(&json!({})));
    narrow[6].1 =
        r#"{"Statement":[{"Effect":"Allow","Action":"ecr:BatchGetImage","Resource":"*"}]}"#
            .to_owned();
    let resp = sts(&fake, &narrow).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let creds = Creds {
        key: xml(&resp, "AccessKeyId"),
        secret: xml(&resp, "SecretAccessKey"),
        token: xml(&resp, "SessionToken"),
    };
    let message = ecr_refused(
        &get_token(&fake, &creds, unix_now(), |a| a).await,
        403,
        "AccessDeniedException",
    );
    assert!(message.contains("assumed-role/ecr-puller/svid-test is not authorized to perform: ecr:GetAuthorizationToken"), "{message}");
}

#[tokio::test]
async fn the_registry_lets_a_token_in_and_checks_its_repositories() {
    let issuer = Issuer::start();
    let fake = fake(&issuer, trust(&issuer));
    let creds = session(&fake, &issuer).await;
    let resp = get_token(&fake, &creds, unix_now(), |a| a).await;
    let token = resp.json()["authorizationData"][0]["authorizationToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let login =
        |path: &str| Call::get(path.to_owned()).header("authorization", format!("Basic {token}"));
    let registry = At(fake.ecr_addr());
    assert_eq!(login("/v2/").send(&registry).await.status, 200);
    assert_eq!(
        login("/v2/team-a/app/tags/list")
            .send(&registry)
            .await
            .status,
        200
    );
    let denied = login("/v2/team-a/other/tags/list").send(&registry).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.json()["errors"][0]["code"], "DENIED");
    let anonymous = Call::get("/v2/").send(&registry).await;
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic realm=")
    );
    // Twelve hours later the token is gone.
    fake.advance_clock(Duration::from_secs(12 * 3600 + 1));
    assert_eq!(login("/v2/").send(&registry).await.status, 401);
    assert_eq!(fake.registry_logins(), 3);
}

#[tokio::test]
async fn queued_faults_answer_in_each_services_words() {
    let issuer = Issuer::start();
    let fake = fake(&issuer, trust(&issuer));
    fake.fail_next(Endpoint::Sts, Fault::Status(429), 1);
    let resp = sts(&fake, &params("tokn")).await;
    sts_refused(&resp, 429, "Throttling");
    assert_eq!(resp.header("retry-after"), Some("1"));
    fake.fail_next(Endpoint::Ecr, Fault::Status(403), 1);
    let resp = Call::new(Method::POST, "/")
        .send(&At(fake.ecr_addr()))
        .await;
    ecr_refused(&resp, 403, "AccessDeniedException");
    fake.fail_next(Endpoint::Sts, Fault::Hangup, 1);
    assert!(
        Call::new(Method::POST, "/")
            .try_send(&At(fake.sts_addr()))
            .await
            .is_err()
    );
    assert_eq!((fake.sts_calls(), fake.ecr_calls()), (2, 1));
}
