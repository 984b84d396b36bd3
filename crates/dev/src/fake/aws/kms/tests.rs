//! KMS's request rules the broker's client never breaks, driven over real HTTP with requests
//! signed here by an IAM user's key (the client's own tests cover the paths it takes).
#![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{Value, json};
use svid_broker_identity::secret::ExposeSecret as _;

use super::super::{FakeAws, Statement, sigv4};
use super::{IamAccessKey, KmsKeySpec};
use crate::fake::testing::{Call, Listening, Resp};

const USER: &str = "arn:aws:iam::111122223333:user/tester";

struct At(SocketAddr);

impl Listening for At {
    fn addr(&self) -> SocketAddr {
        self.0
    }
}

/// `TrentService.<target>` with `body`, signed with `access` for service `kms` at now.
async fn call(fake: &FakeAws, access: &IamAccessKey, target: &str, body: &Value) -> Resp {
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let amz_date = sigv4::amz_date(now);
    let host = fake.kms_addr().to_string();
    let target = format!("TrentService.{target}");
    let bytes = body.to_string().into_bytes();
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    headers.insert("host", HeaderValue::from_str(&host).unwrap());
    headers.insert("x-amz-date", HeaderValue::from_str(&amz_date).unwrap());
    headers.insert("x-amz-target", HeaderValue::from_str(&target).unwrap());
    let signed: Vec<String> = ["content-type", "host", "x-amz-date", "x-amz-target"]
        .map(str::to_owned)
        .to_vec();
    let canonical = sigv4::canonical_request("POST", "/", "", &headers, &signed, &bytes).unwrap();
    let date = &amz_date[..8];
    let scope = format!("{date}/us-east-1/kms/aws4_request");
    let signature = sigv4::signature(
        access.secret_access_key.expose_secret(),
        date,
        "us-east-1",
        "kms",
        &sigv4::string_to_sign(&amz_date, &scope, &canonical),
    );
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
        access.access_key_id,
        signed.join(";")
    );
    Call::new(Method::POST, "/")
        .body("application/x-amz-json-1.1", bytes)
        .header("x-amz-date", amz_date)
        .header("x-amz-target", target)
        .header("authorization", authorization)
        .send(&At(fake.kms_addr()))
        .await
}

fn refused(resp: &Resp, kind: &str) -> String {
    assert_eq!(resp.status, 400, "{}", resp.body);
    let body = resp.json();
    assert_eq!(body["__type"], kind, "{}", resp.body);
    body["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn sign_checks_lengths_types_and_algorithms() {
    let fake = FakeAws::start().unwrap();
    let ec = fake.create_kms_key(KmsKeySpec::EccNistP256).unwrap();
    let mac = fake.create_kms_key(KmsKeySpec::Hmac256).unwrap();
    let access = fake
        .add_iam_user(USER, &[Statement::allow(&["kms:*"], &["*"])])
        .unwrap();
    let sign = |message: Vec<u8>, message_type: &str, algorithm: &str, key: &str| {
        json!({
            "KeyId": key,
            "Message": STANDARD.encode(message),
            "MessageType": message_type,
            "SigningAlgorithm": algorithm,
        })
    };
    let ok = call(
        &fake,
        &access,
        "Sign",
        &sign(vec![1; 32], "DIGEST", "ECDSA_SHA_256", &ec.key_id),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["KeyId"], ec.arn.as_str());
    let message = refused(
        &call(
            &fake,
            &access,
            "Sign",
            &sign(vec![1; 31], "DIGEST", "ECDSA_SHA_256", &ec.key_id),
        )
        .await,
        "ValidationException",
    );
    assert!(message.contains("Digest is invalid length"), "{message}");
    let message = refused(
        &call(
            &fake,
            &access,
            "Sign",
            &sign(vec![1; 4097], "RAW", "ECDSA_SHA_256", &ec.key_id),
        )
        .await,
        "ValidationException",
    );
    assert!(message.contains("between 1 and 4096"), "{message}");
    refused(
        &call(
            &fake,
            &access,
            "Sign",
            &sign(vec![1; 8], "RAW", "ECDSA_SHA_384", &ec.key_id),
        )
        .await,
        "InvalidKeyUsageException",
    );
    refused(
        &call(
            &fake,
            &access,
            "Sign",
            &sign(vec![1; 8], "RAW", "ECDSA_SHA_256", &mac.key_id),
        )
        .await,
        "InvalidKeyUsageException",
    );
    refused(
        &call(
            &fake,
            &access,
            "Sign",
            &sign(vec![1; 8], "RAW", "NOT_AN_ALG", &ec.key_id),
        )
        .await,
        "ValidationException",
    );
    let message = refused(
        &call(&fake, &access, "Sign", &json!({ "KeyId": ec.key_id })).await,
        "ValidationException",
    );
    assert!(
        message.contains("'message'") && message.contains("not be null"),
        "{message}"
    );
    let mac_on_ec = json!({
        "KeyId": ec.key_id,
        "Message": STANDARD.encode(b"m"),
        "MacAlgorithm": "HMAC_SHA_256",
    });
    refused(
        &call(&fake, &access, "GenerateMac", &mac_on_ec).await,
        "InvalidKeyUsageException",
    );
    let unknown = call(&fake, &access, "Encrypt", &json!({})).await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.json()["__type"], "UnknownOperationException");
    let described = call(&fake, &access, "DescribeKey", &json!({ "KeyId": mac.arn })).await;
    assert_eq!(
        described.json()["KeyMetadata"]["KeyUsage"],
        "GENERATE_VERIFY_MAC"
    );
    assert_eq!(
        described.json()["KeyMetadata"]["MacAlgorithms"][0],
        "HMAC_SHA_256"
    );
    let audit = fake.kms_audit();
    assert_eq!(audit[0].outcome, "ok");
    assert_eq!(audit[1].outcome, "ValidationException");
    assert!(audit.iter().all(|c| c.principal.as_deref() == Some(USER)));
}
