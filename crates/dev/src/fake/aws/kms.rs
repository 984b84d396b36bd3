//! The fake's AWS KMS: keys generated here with `aws_lc_rs` and never exported, and the four
//! operations the broker's key store calls (`Sign`, `GetPublicKey`, `GenerateMac`,
//! `DescribeKey`), with KMS's rules from the AWS KMS API reference (botocore's
//! `kms/2014-11-01/service-2.json` for shapes and error codes):
//!
//! - JSON 1.1 over `POST /`: `X-Amz-Target` `TrentService.<Operation>` (else 400
//!   `UnknownOperationException`), `Content-Type` `application/x-amz-json-1.1` and a JSON
//!   object body (else 400 `SerializationException`), errors `{"__type", "message"}`;
//! - SigV4 for service `kms` (the shared check of `http::authenticate`): a session the
//!   fake's STS issued or an IAM user's access key ([`FakeAws::add_iam_user`]);
//! - `KeyId` 1 to 2048 characters: a key id, key ARN, `alias/<name>` or alias ARN; unknown:
//!   400 `NotFoundException`;
//! - the caller's identity policy must allow `kms:<Operation>` on the key's ARN (whatever
//!   name the request used): else 400 `AccessDeniedException`. The fake has no key policies
//!   or grants: identity policies stand in for both;
//! - a disabled key: 400 `DisabledException` (`DescribeKey` still answers);
//! - `Sign`: `Message` 1 to 4096 bytes; `MessageType` `RAW` (default) or `DIGEST`, a digest
//!   exactly as long as the algorithm's hash (else 400 `ValidationException`); the key's
//!   usage `SIGN_VERIFY` and `SigningAlgorithm` one of the key's (else 400
//!   `InvalidKeyUsageException`); ECDSA answers DER `ECDSA-Sig-Value`, RSA the PKCS#1 bytes;
//! - `GetPublicKey`: DER SubjectPublicKeyInfo, `KeySpec`, `KeyUsage`, `SigningAlgorithms`;
//!   an HMAC key is 400 `UnsupportedOperationException`;
//! - `GenerateMac`: `Message` 1 to 4096 bytes, usage `GENERATE_VERIFY_MAC` and
//!   `MacAlgorithm` the key's (else 400 `InvalidKeyUsageException`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{Method, Request, header};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use svid_broker_identity::secret::SecretString;

use super::http::{authenticate, cut, new_key_triple};
use super::rules::{AwsError, IamUser, PolicyStatement, parse_user_arn};
use super::{FakeAws, FakeError, KmsService, MAX_BODY_BYTES, REGION, Shared, Statement, sigv4};
use crate::fake::http::{Hangup, Reply, Service, header_str, inject_fault, read_body, reply};
use crate::fake::server::lock;

/// The account the fake's KMS keys are in.
pub const KMS_ACCOUNT: &str = "111122223333";
/// KMS's `Message` bound (`Sign`, `GenerateMac`), bytes.
pub const MAX_KMS_MESSAGE: usize = 4096;
/// Most keys, aliases, users and audit records held. The fake's bounds.
const MAX_KEYS: usize = 256;
const MAX_USERS: usize = 64;
const MAX_AUDIT: usize = 10_000;
/// JSON 1.1's content type.
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// SigV4's service name for KMS.
const SERVICE: &str = "kms";

/// A key spec the fake's KMS generates (KMS `KeySpec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KmsKeySpec {
    /// `ECC_NIST_P256`, `SIGN_VERIFY`, `ECDSA_SHA_256`.
    EccNistP256,
    /// `ECC_NIST_P384`, `SIGN_VERIFY`, `ECDSA_SHA_384`.
    EccNistP384,
    /// `RSA_2048`, `SIGN_VERIFY`, the PKCS#1 v1.5 and PSS algorithms over SHA-256/384/512.
    Rsa2048,
    /// `HMAC_256`, `GENERATE_VERIFY_MAC`, `HMAC_SHA_256`.
    Hmac256,
}

impl KmsKeySpec {
    /// KMS's name of the spec.
    pub fn name(self) -> &'static str {
        match self {
            Self::EccNistP256 => "ECC_NIST_P256",
            Self::EccNistP384 => "ECC_NIST_P384",
            Self::Rsa2048 => "RSA_2048",
            Self::Hmac256 => "HMAC_256",
        }
    }

    fn usage(self) -> &'static str {
        match self {
            Self::Hmac256 => "GENERATE_VERIFY_MAC",
            _ => "SIGN_VERIFY",
        }
    }

    fn signing_algorithms(self) -> &'static [&'static str] {
        match self {
            Self::EccNistP256 => &["ECDSA_SHA_256"],
            Self::EccNistP384 => &["ECDSA_SHA_384"],
            Self::Rsa2048 => &[
                "RSASSA_PSS_SHA_256",
                "RSASSA_PSS_SHA_384",
                "RSASSA_PSS_SHA_512",
                "RSASSA_PKCS1_V1_5_SHA_256",
                "RSASSA_PKCS1_V1_5_SHA_384",
                "RSASSA_PKCS1_V1_5_SHA_512",
            ],
            Self::Hmac256 => &[],
        }
    }
}

/// A key the fake's KMS made: its id and ARN (the private part stays in the fake).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KmsKeyInfo {
    /// The key id (a UUID).
    pub key_id: String,
    /// `arn:aws:kms:<region>:<account>:key/<key id>`.
    pub arn: String,
}

/// An IAM user's long-term access key ([`FakeAws::add_iam_user`]). `Debug` redacts the secret.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IamAccessKey {
    /// `AKIA...`.
    pub access_key_id: String,
    /// The secret access key the fake made for the user; SigV4 requests signed with it authenticate
    /// as that user.
    pub secret_access_key: SecretString,
}

/// One KMS request the fake answered (faults and unknown operations are not recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KmsCall {
    /// `Sign`, `GetPublicKey`, `GenerateMac`, `DescribeKey`.
    pub operation: String,
    /// The access key id the request was signed with (empty without an `Authorization`).
    pub access_key_id: String,
    /// The caller's ARN when the SigV4 signature verified.
    pub principal: Option<String>,
    /// The key's ARN when `KeyId` named one.
    pub key_arn: Option<String>,
    /// `Sign`'s `MessageType` (`RAW`, `DIGEST`).
    pub message_type: Option<String>,
    /// `ok`, or the error code answered.
    pub outcome: String,
}

/// A key's private material. `Debug` prints the kind only.
enum Material {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Hmac(Box<aws_lc_rs::hmac::Key>),
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ec(_) => "Ec(..)",
            Self::Rsa(_) => "Rsa(..)",
            Self::Hmac(_) => "Hmac(..)",
        })
    }
}

#[derive(Debug)]
struct FakeKey {
    arn: String,
    spec: KmsKeySpec,
    enabled: bool,
    created: i64,
    material: Material,
    /// DER SubjectPublicKeyInfo (empty for HMAC).
    spki: Vec<u8>,
}

/// The fake's KMS keys and aliases.
#[derive(Debug, Default)]
pub(super) struct KmsState {
    /// By key id.
    keys: BTreeMap<String, FakeKey>,
    /// `alias/<name>` to key id.
    aliases: BTreeMap<String, String>,
}

impl KmsState {
    /// The key id `name` (id, key ARN, alias name or alias ARN) designates.
    fn resolve(&self, name: &str) -> Result<String, AwsError> {
        let key_prefix = format!("arn:aws:kms:{REGION}:{KMS_ACCOUNT}:key/");
        let alias_prefix = format!("arn:aws:kms:{REGION}:{KMS_ACCOUNT}:");
        let not_found = |message: String| AwsError::new(400, "NotFoundException", message);
        let alias = if name.starts_with("alias/") {
            Some(name)
        } else {
            name.strip_prefix(&alias_prefix)
                .filter(|rest| rest.starts_with("alias/"))
        };
        if let Some(alias) = alias {
            return self.aliases.get(alias).cloned().ok_or_else(|| {
                not_found(format!("Alias {alias_prefix}{} is not found.", cut(alias)))
            });
        }
        let id = name.strip_prefix(&key_prefix).unwrap_or(name);
        if self.keys.contains_key(id) {
            Ok(id.to_owned())
        } else {
            Err(not_found(format!(
                "Key '{key_prefix}{}' does not exist",
                cut(id)
            )))
        }
    }
}

// === the handle's side ===

impl FakeAws {
    /// `http://127.0.0.1:PORT` of KMS.
    pub fn kms_url(&self) -> String {
        self.kms_server.url()
    }

    /// The KMS listener's address.
    pub fn kms_addr(&self) -> SocketAddr {
        self.kms_server.addr()
    }

    /// Requests to KMS, faulted ones included.
    pub fn kms_calls(&self) -> u64 {
        self.shared.kms.stats().api_calls
    }

    /// Every KMS request answered, oldest first.
    pub fn kms_audit(&self) -> Vec<KmsCall> {
        lock(&self.shared.kms_audit).clone()
    }

    /// Adds the IAM user `user_arn` (`arn:<partition>:iam::<12 digits>:user/<name>`) with
    /// `permissions` and a new long-term access key (`AKIA...`), which signs requests to KMS
    /// and ECR without a session token.
    ///
    /// # Errors
    /// [`FakeError::Refused`] 400 when the ARN is not a user ARN, or past 64 users.
    pub fn add_iam_user(
        &self,
        user_arn: &str,
        permissions: &[Statement],
    ) -> Result<IamAccessKey, FakeError> {
        let (partition, account) =
            parse_user_arn(user_arn).ok_or_else(|| refused("ValidationError", "not a user ARN"))?;
        let (access_key_id, secret_access_key, _) = new_key_triple("AKIA")
            .map_err(|_| refused("InternalFailure", "random generator failed"))?;
        let mut state = self.shared.state();
        if state.users.len() >= MAX_USERS {
            return Err(refused(
                "LimitExceeded",
                "too many users (the fake's bound)",
            ));
        }
        state.users.insert(
            access_key_id.clone(),
            IamUser {
                arn: user_arn.to_owned(),
                partition,
                account,
                secret_access_key: secret_access_key.clone(),
                permissions: permissions.iter().map(PolicyStatement::from).collect(),
            },
        );
        Ok(IamAccessKey {
            access_key_id,
            secret_access_key,
        })
    }

    /// Generates a KMS key of `spec` in [`KMS_ACCOUNT`] (enabled).
    ///
    /// # Errors
    /// [`FakeError::Refused`] when key generation fails or past 256 keys.
    pub fn create_kms_key(&self, spec: KmsKeySpec) -> Result<KmsKeyInfo, FakeError> {
        let failed = || refused("KMSInternalException", "key generation failed");
        let (material, spki) = match spec {
            KmsKeySpec::EccNistP256 | KmsKeySpec::EccNistP384 => {
                let alg = if spec == KmsKeySpec::EccNistP256 {
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING
                } else {
                    &signature::ECDSA_P384_SHA384_ASN1_SIGNING
                };
                let pair = EcdsaKeyPair::generate(alg).map_err(|_| failed())?;
                let spki = pair.public_key().as_der().map_err(|_| failed())?;
                let spki = spki.as_ref().to_vec();
                (Material::Ec(pair), spki)
            }
            KmsKeySpec::Rsa2048 => {
                let pair =
                    RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| failed())?;
                let spki = pair.public_key().as_der().map_err(|_| failed())?;
                let spki = spki.as_ref().to_vec();
                (Material::Rsa(pair), spki)
            }
            KmsKeySpec::Hmac256 => {
                let key = aws_lc_rs::hmac::Key::generate(
                    aws_lc_rs::hmac::HMAC_SHA256,
                    &SystemRandom::new(),
                )
                .map_err(|_| failed())?;
                (Material::Hmac(Box::new(key)), Vec::new())
            }
        };
        let key_id = new_key_id().ok_or_else(failed)?;
        let arn = format!("arn:aws:kms:{REGION}:{KMS_ACCOUNT}:key/{key_id}");
        let created = self.shared.now();
        let mut kms = lock(&self.shared.kms_state);
        if kms.keys.len() >= MAX_KEYS {
            return Err(refused(
                "LimitExceededException",
                "too many keys (the fake's bound)",
            ));
        }
        kms.keys.insert(
            key_id.clone(),
            FakeKey {
                arn: arn.clone(),
                spec,
                enabled: true,
                created,
                material,
                spki,
            },
        );
        Ok(KmsKeyInfo { key_id, arn })
    }

    /// Points `alias` (`alias/<name>`, not `alias/aws/...`) at the key `key_id`.
    ///
    /// # Errors
    /// [`FakeError::Refused`] for a bad alias name or an unknown key.
    pub fn create_kms_alias(&self, alias: &str, key_id: &str) -> Result<(), FakeError> {
        let name = alias.strip_prefix("alias/").unwrap_or_default();
        if name.is_empty()
            || name.len() > 250
            || name.starts_with("aws/")
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
        {
            return Err(refused(
                "ValidationException",
                "an alias is alias/ and 1 to 250 of [a-zA-Z0-9/_-], not alias/aws/",
            ));
        }
        let mut kms = lock(&self.shared.kms_state);
        if !kms.keys.contains_key(key_id) {
            return Err(refused("NotFoundException", "no such key"));
        }
        if kms.aliases.len() >= MAX_KEYS && !kms.aliases.contains_key(alias) {
            return Err(refused(
                "LimitExceededException",
                "too many aliases (the fake's bound)",
            ));
        }
        kms.aliases.insert(alias.to_owned(), key_id.to_owned());
        Ok(())
    }

    /// Enables or disables the key `key_id` (KMS `EnableKey` / `DisableKey`).
    ///
    /// # Errors
    /// [`FakeError::Refused`] for an unknown key.
    pub fn set_kms_key_enabled(&self, key_id: &str, enabled: bool) -> Result<(), FakeError> {
        let mut kms = lock(&self.shared.kms_state);
        let key = kms
            .keys
            .get_mut(key_id)
            .ok_or_else(|| refused("NotFoundException", "no such key"))?;
        key.enabled = enabled;
        Ok(())
    }

    /// HMAC-SHA256 of `message` under the HMAC key `key_id`, computed by the fake's own copy
    /// (for a test to compare `GenerateMac` answers with); `None` for another key.
    pub fn kms_hmac_sha256(&self, key_id: &str, message: &[u8]) -> Option<Vec<u8>> {
        let kms = lock(&self.shared.kms_state);
        match &kms.keys.get(key_id)?.material {
            Material::Hmac(key) => Some(aws_lc_rs::hmac::sign(key, message).as_ref().to_vec()),
            _ => None,
        }
    }
}

fn refused(code: &'static str, message: &str) -> FakeError {
    FakeError::Refused {
        status: 400,
        code,
        message: message.to_owned(),
    }
}

/// A UUID-shaped key id from 16 random bytes.
fn new_key_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

// === the server's side ===

/// The KMS operations served (the `X-Amz-Target` after `TrentService.`); any other one is refused.
const OPERATIONS: [&str; 4] = ["Sign", "GetPublicKey", "GenerateMac", "DescribeKey"];

impl Service for KmsService {
    async fn call(&self, req: Request<Incoming>) -> Result<Reply, Hangup> {
        let shared = &*self.0;
        let malformed = |_: &Method| reply(200, CONTENT_TYPE, "{\"KeyId\":\"arn:".to_owned());
        if let Some(reply) = inject_fault(&shared.kms, req.method(), malformed, kms_fault).await? {
            return Ok(reply);
        }
        if req.uri().path() != "/" || req.method() != Method::POST {
            return Ok(kms_error(&AwsError::new(
                404,
                "UnknownOperationException",
                "The requested operation is not supported",
            )));
        }
        let operation = header_str(&req, "x-amz-target")
            .and_then(|t| t.strip_prefix("TrentService."))
            .filter(|op| OPERATIONS.contains(op))
            .map(str::to_owned);
        let Some(operation) = operation else {
            return Ok(kms_error(&AwsError::new(
                400,
                "UnknownOperationException",
                "The requested operation is not recognized by the service",
            )));
        };
        let mut call = KmsCall {
            operation: operation.clone(),
            access_key_id: header_str(&req, header::AUTHORIZATION)
                .and_then(sigv4::parse_authorization)
                .map(|a| a.access_key_id)
                .unwrap_or_default(),
            principal: None,
            key_arn: None,
            message_type: None,
            outcome: "ok".to_owned(),
        };
        let result = answer(shared, req, &operation, &mut call).await;
        if let Err(e) = &result {
            e.code.clone_into(&mut call.outcome);
        }
        {
            let mut audit = lock(&shared.kms_audit);
            if audit.len() >= MAX_AUDIT {
                audit.remove(0);
            }
            audit.push(call);
        }
        Ok(match result {
            Ok(body) => reply(200, CONTENT_TYPE, body.to_string()),
            Err(e) => kms_error(&e),
        })
    }
}

/// One request: the content type, the body, the signature, the key, the permission, then
/// the operation.
async fn answer(
    shared: &Shared,
    req: Request<Incoming>,
    operation: &str,
    call: &mut KmsCall,
) -> Result<Value, AwsError> {
    let serialization = |message: &str| AwsError::new(400, "SerializationException", message);
    if header_str(&req, header::CONTENT_TYPE) != Some(CONTENT_TYPE) {
        return Err(serialization(
            "Content-Type must be application/x-amz-json-1.1",
        ));
    }
    let (parts, body) = req.into_parts();
    let bytes = read_body(body, MAX_BODY_BYTES).await.map_err(|_| {
        AwsError::new(
            413,
            "RequestEntityTooLargeException",
            "Request body too large",
        )
    })?;
    let Ok(Value::Object(input)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(serialization("The body is not a JSON object"));
    };
    let now = shared.now();
    let caller = authenticate(shared, &parts, &bytes, SERVICE, now)?;
    call.principal = Some(caller.arn.clone());
    let key_name = required_string(&input, "KeyId", "keyId")?;
    if !(1..=2048).contains(&key_name.chars().count()) {
        return Err(constraint(
            key_name,
            "keyId",
            "Member must have length between 1 and 2048",
        ));
    }
    let mut kms = lock(&shared.kms_state);
    let key_id = kms.resolve(key_name)?;
    let key = kms
        .keys
        .get_mut(&key_id)
        .ok_or_else(|| AwsError::new(500, "KMSInternalException", "key vanished"))?;
    call.key_arn = Some(key.arn.clone());
    let action = format!("kms:{operation}");
    if !caller.permissions.allows(&action, &key.arn) {
        return Err(AwsError::new(
            400,
            "AccessDeniedException",
            format!(
                "User: {} is not authorized to perform: {action} on resource: {} because no identity-based policy allows the {action} action",
                caller.arn, key.arn
            ),
        ));
    }
    if operation == "DescribeKey" {
        return Ok(describe(key_id.as_str(), key));
    }
    if !key.enabled {
        return Err(AwsError::new(
            400,
            "DisabledException",
            format!("{} is disabled.", key.arn),
        ));
    }
    match operation {
        "Sign" => sign(&input, key, call),
        "GetPublicKey" => public_key(key),
        _ => generate_mac(&input, key),
    }
}

fn describe(key_id: &str, key: &FakeKey) -> Value {
    let mut metadata = json!({
        "AWSAccountId": KMS_ACCOUNT,
        "KeyId": key_id,
        "Arn": key.arn,
        "CreationDate": key.created,
        "Enabled": key.enabled,
        "Description": "",
        "KeyUsage": key.spec.usage(),
        "KeyState": if key.enabled { "Enabled" } else { "Disabled" },
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": key.spec.name(),
        "KeySpec": key.spec.name(),
        "MultiRegion": false,
    });
    if key.spec == KmsKeySpec::Hmac256 {
        metadata["MacAlgorithms"] = json!(["HMAC_SHA_256"]);
    } else {
        metadata["SigningAlgorithms"] = json!(key.spec.signing_algorithms());
    }
    json!({ "KeyMetadata": metadata })
}

fn public_key(key: &FakeKey) -> Result<Value, AwsError> {
    if key.spec == KmsKeySpec::Hmac256 {
        return Err(AwsError::new(
            400,
            "UnsupportedOperationException",
            format!(
                "{} key usage is GENERATE_VERIFY_MAC; GetPublicKey needs an asymmetric key",
                key.arn
            ),
        ));
    }
    Ok(json!({
        "KeyId": key.arn,
        "PublicKey": STANDARD.encode(&key.spki),
        "CustomerMasterKeySpec": key.spec.name(),
        "KeySpec": key.spec.name(),
        "KeyUsage": key.spec.usage(),
        "SigningAlgorithms": key.spec.signing_algorithms(),
    }))
}

/// The hash a signing algorithm signs over.
fn hash_of(algorithm: &str) -> Option<&'static digest::Algorithm> {
    Some(match algorithm {
        "ECDSA_SHA_256" | "RSASSA_PSS_SHA_256" | "RSASSA_PKCS1_V1_5_SHA_256" => &digest::SHA256,
        "ECDSA_SHA_384" | "RSASSA_PSS_SHA_384" | "RSASSA_PKCS1_V1_5_SHA_384" => &digest::SHA384,
        "ECDSA_SHA_512" | "RSASSA_PSS_SHA_512" | "RSASSA_PKCS1_V1_5_SHA_512" => &digest::SHA512,
        _ => return None,
    })
}

fn rsa_encoding(algorithm: &str) -> Option<&'static dyn signature::RsaEncoding> {
    Some(match algorithm {
        "RSASSA_PKCS1_V1_5_SHA_256" => &signature::RSA_PKCS1_SHA256,
        "RSASSA_PKCS1_V1_5_SHA_384" => &signature::RSA_PKCS1_SHA384,
        "RSASSA_PKCS1_V1_5_SHA_512" => &signature::RSA_PKCS1_SHA512,
        "RSASSA_PSS_SHA_256" => &signature::RSA_PSS_SHA256,
        "RSASSA_PSS_SHA_384" => &signature::RSA_PSS_SHA384,
        "RSASSA_PSS_SHA_512" => &signature::RSA_PSS_SHA512,
        _ => return None,
    })
}

/// The `SigningAlgorithmSpec` enum (botocore), ML-DSA and SM2 included.
const SIGNING_ALGORITHM_ENUM: &[&str] = &[
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
    "ECDSA_SHA_256",
    "ECDSA_SHA_384",
    "ECDSA_SHA_512",
    "SM2DSA",
    "ML_DSA_SHAKE_256",
];

fn sign(input: &Map<String, Value>, key: &FakeKey, call: &mut KmsCall) -> Result<Value, AwsError> {
    let message = required_blob(input, "Message", "message")?;
    let message_type = match input.get("MessageType") {
        None => "RAW",
        Some(Value::String(t)) if t == "RAW" || t == "DIGEST" || t == "EXTERNAL_MU" => t,
        Some(other) => {
            return Err(constraint(
                &other.to_string(),
                "messageType",
                "Member must satisfy enum value set: [RAW, DIGEST, EXTERNAL_MU]",
            ));
        }
    };
    call.message_type = Some(message_type.to_owned());
    let algorithm = required_string(input, "SigningAlgorithm", "signingAlgorithm")?;
    if !SIGNING_ALGORITHM_ENUM.contains(&algorithm) {
        return Err(constraint(
            algorithm,
            "signingAlgorithm",
            "Member must satisfy enum value set",
        ));
    }
    if key.spec.usage() != "SIGN_VERIFY" {
        return Err(AwsError::new(
            400,
            "InvalidKeyUsageException",
            format!(
                "{} key usage is GENERATE_VERIFY_MAC which is not valid for signing.",
                key.arn
            ),
        ));
    }
    if !key.spec.signing_algorithms().contains(&algorithm) {
        return Err(AwsError::new(
            400,
            "InvalidKeyUsageException",
            format!(
                "Algorithm {algorithm} is incompatible with key spec {}.",
                key.spec.name()
            ),
        ));
    }
    let hash = hash_of(algorithm)
        .ok_or_else(|| AwsError::new(500, "KMSInternalException", "no hash for the algorithm"))?;
    let digest_value = match message_type {
        "RAW" => None,
        "DIGEST" => {
            if message.len() != hash.output_len() {
                return Err(AwsError::new(
                    400,
                    "ValidationException",
                    format!("Digest is invalid length for algorithm {algorithm}."),
                ));
            }
            Some(
                digest::Digest::import_less_safe(&message, hash)
                    .map_err(|_| AwsError::new(500, "KMSInternalException", "bad digest"))?,
            )
        }
        _ => {
            return Err(AwsError::new(
                400,
                "ValidationException",
                "EXTERNAL_MU is only valid for ML-DSA keys.",
            ));
        }
    };
    let internal = || AwsError::new(500, "KMSInternalException", "signing failed");
    let signature = match &key.material {
        Material::Ec(pair) => match &digest_value {
            None => pair.sign(&SystemRandom::new(), &message),
            Some(d) => pair.sign_digest(d),
        }
        .map_err(|_| internal())?
        .as_ref()
        .to_vec(),
        Material::Rsa(pair) => {
            let encoding = rsa_encoding(algorithm).ok_or_else(internal)?;
            let mut out = vec![0u8; pair.public_modulus_len()];
            match &digest_value {
                None => pair.sign(encoding, &SystemRandom::new(), &message, &mut out),
                Some(d) => pair.sign_digest(encoding, d, &mut out),
            }
            .map_err(|_| internal())?;
            out
        }
        Material::Hmac(_) => return Err(internal()),
    };
    Ok(json!({
        "KeyId": key.arn,
        "Signature": STANDARD.encode(signature),
        "SigningAlgorithm": algorithm,
    }))
}

fn generate_mac(input: &Map<String, Value>, key: &FakeKey) -> Result<Value, AwsError> {
    let message = required_blob(input, "Message", "message")?;
    let algorithm = required_string(input, "MacAlgorithm", "macAlgorithm")?;
    if ![
        "HMAC_SHA_224",
        "HMAC_SHA_256",
        "HMAC_SHA_384",
        "HMAC_SHA_512",
    ]
    .contains(&algorithm)
    {
        return Err(constraint(
            algorithm,
            "macAlgorithm",
            "Member must satisfy enum value set: [HMAC_SHA_384, HMAC_SHA_256, HMAC_SHA_224, HMAC_SHA_512]",
        ));
    }
    let Material::Hmac(hmac_key) = &key.material else {
        return Err(AwsError::new(
            400,
            "InvalidKeyUsageException",
            format!(
                "{} key usage is SIGN_VERIFY which is not valid for GenerateMac.",
                key.arn
            ),
        ));
    };
    if algorithm != "HMAC_SHA_256" {
        return Err(AwsError::new(
            400,
            "InvalidKeyUsageException",
            format!("Algorithm {algorithm} is incompatible with key spec HMAC_256."),
        ));
    }
    let mac = aws_lc_rs::hmac::sign(hmac_key, &message);
    Ok(json!({
        "KeyId": key.arn,
        "Mac": STANDARD.encode(mac.as_ref()),
        "MacAlgorithm": algorithm,
    }))
}

// === input and errors ===

fn constraint(value: &str, member: &str, rule: &str) -> AwsError {
    AwsError::new(
        400,
        "ValidationException",
        format!(
            "1 validation error detected: Value '{}' at '{member}' failed to satisfy constraint: {rule}",
            cut(value)
        ),
    )
}

fn required_string<'a>(
    input: &'a Map<String, Value>,
    name: &str,
    member: &str,
) -> Result<&'a str, AwsError> {
    match input.get(name) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(AwsError::new(
            400,
            "ValidationException",
            format!(
                "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
            ),
        )),
        Some(_) => Err(AwsError::new(
            400,
            "SerializationException",
            format!("{name} is not a string"),
        )),
    }
}

/// A base64 blob member of 1 to [`MAX_KMS_MESSAGE`] bytes.
fn required_blob(
    input: &Map<String, Value>,
    name: &str,
    member: &str,
) -> Result<Vec<u8>, AwsError> {
    let text = required_string(input, name, member)?;
    let bytes = STANDARD.decode(text).map_err(|_| {
        AwsError::new(
            400,
            "SerializationException",
            format!("{name} is not base64"),
        )
    })?;
    if bytes.is_empty() || bytes.len() > MAX_KMS_MESSAGE {
        return Err(AwsError::new(
            400,
            "ValidationException",
            format!(
                "1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must have length between 1 and 4096"
            ),
        ));
    }
    Ok(bytes)
}

/// A queued fault's status in KMS's words (429 adds `Retry-After: 1`).
fn kms_fault(status: u16) -> Reply {
    let code = match status {
        400 => "ValidationException",
        429 => "ThrottlingException",
        503 => "DependencyTimeoutException",
        s if s >= 500 => "KMSInternalException",
        _ => "AccessDeniedException",
    };
    crate::fake::http::retry_after_on_429(
        status,
        kms_error(&AwsError::new(status, code, "injected fault")),
    )
}

/// KMS's JSON 1.1 error body.
fn kms_error(e: &AwsError) -> Reply {
    let body = json!({ "__type": e.code, "message": e.message });
    reply(e.status, CONTENT_TYPE, body.to_string())
}

#[cfg(test)]
mod tests;
