//! AWS KMS keys behind the `ExternalKey` and `ExternalMac` seams (feature `kms`).
//!
//! [`KmsKey::open`] reads an asymmetric key's public key (`GetPublicKey`) and checks its
//! usage, spec and algorithms; each [`ExternalKey::sign`] is one KMS `Sign` call
//! (`MessageType=RAW` for messages up to 4096 bytes, KMS's bound; otherwise `DIGEST` with the
//! hash computed here). [`KmsMac::open`] checks an HMAC key (`DescribeKey`) for
//! [`ExternalMac::hmac_sha256`], one `GenerateMac` call each. The private key never leaves
//! KMS.
//!
//! Requests are AWS JSON 1.1 (`POST /`, `X-Amz-Target: TrentService.<Operation>`), signed
//! with SigV4 by AWS's own `aws-sigv4`, sent over a small blocking HTTPS client (the seam
//! is synchronous; see the `transport` module for why it is hand-written).
//!
//! Credentials ([`KmsCredentialSource`]) come from the environment as the AWS SDKs read it:
//! static keys (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), or a web
//! identity (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`, `AWS_ROLE_SESSION_NAME`)
//! exchanged at STS for a session cached until five minutes before it ends. On EKS the web
//! identity is IAM Roles for Service Accounts: the kubelet writes and rotates a projected
//! service-account token, so the broker holds no long-lived AWS secret at all (the signing
//! key stays in KMS, the session lasts an hour). Static keys are for hosts without a workload
//! identity; they are long-lived secrets and should be a last resort. When both are set,
//! static keys win, as in the SDKs' chain: see [`KmsCredentialSource::from_env`].

mod credentials;
mod signer;
mod transport;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use svid_broker_identity::secret::SecretString;
use svid_broker_token::external::{
    ExternalAlgorithm, ExternalKey, ExternalKeyError, ExternalMac, MAX_SPKI_LEN, ecdsa_der_to_jws,
};
use zeroize::Zeroizing;

use credentials::{CredentialError, Credentials, WebIdentity, printable};
use transport::{Endpoint, TransportError};

/// KMS's bound on `Sign`'s and `GenerateMac`'s `Message`; longer messages are signed as a
/// digest.
pub const MAX_RAW_MESSAGE: usize = 4096;
/// The per-call timeout when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest per-call timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The role session name used when `AWS_ROLE_SESSION_NAME` is unset.
pub const DEFAULT_SESSION_NAME: &str = "svid-broker-kms";
/// Largest extra CA PEM accepted, in bytes; a larger one is a configuration error.
const MAX_CA_PEM: usize = 256 * 1024;
/// SigV4's service name.
const SERVICE: &str = "kms";
/// JSON 1.1's content type.
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Why a KMS key could not be configured or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// A configuration value broke a rule.
    #[error("KMS configuration: {field}: {rule}")]
    Config {
        /// The setting (`key_id`, `region`, `endpoint`, ...).
        field: &'static str,
        /// The rule it broke, as a fixed phrase.
        rule: &'static str,
    },
    /// The credentials could not be read from the environment.
    #[error("KMS credentials: {rule}")]
    Credentials {
        /// The rule the environment broke, as a fixed phrase (never a variable's value).
        rule: &'static str,
    },
    /// KMS (or STS) could not be reached, refused, or answered something unusable.
    #[error(transparent)]
    Store(#[from] ExternalKeyError),
    /// The key is not one the broker can use.
    #[error("KMS key {key}: {rule}")]
    Unsuitable {
        /// The key's ARN as KMS answered it (else the key id as configured).
        key: String,
        /// What is wrong with it, quoting KMS's value where one is wrong (cut to 64 printable
        /// characters).
        rule: String,
    },
}

/// Where the credentials that sign KMS requests come from. `Debug` prints no secret.
#[derive(Clone)]
#[non_exhaustive]
pub enum KmsCredentialSource {
    /// Long-term (or externally refreshed) keys. A last resort: a secret the broker holds.
    Static {
        /// `AKIA...` or `ASIA...`.
        access_key_id: String,
        /// The secret access key (`AWS_SECRET_ACCESS_KEY` when read from the environment); `Debug`
        /// never shows it.
        secret_access_key: SecretString,
        /// The session token, for temporary keys.
        session_token: Option<SecretString>,
    },
    /// A web identity token (EKS IRSA's projected service-account token) exchanged at STS
    /// `AssumeRoleWithWebIdentity`; the file is re-read for each exchange.
    WebIdentity {
        /// The token file (`AWS_WEB_IDENTITY_TOKEN_FILE`).
        token_file: PathBuf,
        /// The role to assume (`AWS_ROLE_ARN`).
        role_arn: String,
        /// The role session name (`AWS_ROLE_SESSION_NAME`, else [`DEFAULT_SESSION_NAME`]).
        session_name: String,
    },
}

impl fmt::Debug for KmsCredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Static { .. } => f.write_str("Static { .. }"),
            Self::WebIdentity {
                token_file,
                role_arn,
                session_name,
            } => f
                .debug_struct("WebIdentity")
                .field("token_file", token_file)
                .field("role_arn", role_arn)
                .field("session_name", session_name)
                .finish(),
        }
    }
}

impl KmsCredentialSource {
    /// Reads the process environment in the AWS SDKs' order:
    ///
    /// 1. static keys, whenever `AWS_ACCESS_KEY_ID` is set (non-empty): then
    ///    `AWS_SECRET_ACCESS_KEY` is required, `AWS_SESSION_TOKEN` optional, and any
    ///    `AWS_WEB_IDENTITY_TOKEN_FILE` is ignored;
    /// 2. otherwise a web identity, when `AWS_WEB_IDENTITY_TOKEN_FILE` is set: then
    ///    `AWS_ROLE_ARN` is required, `AWS_ROLE_SESSION_NAME` optional
    ///    ([`DEFAULT_SESSION_NAME`]);
    /// 3. otherwise an error. No other source (profiles, instance metadata) is read.
    ///
    /// So on EKS with IRSA, an `AWS_ACCESS_KEY_ID` left in the pod's environment takes
    /// precedence over the projected token: leave it unset there.
    ///
    /// # Errors
    /// [`KmsError::Credentials`] naming what is missing.
    pub fn from_env() -> Result<Self, KmsError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over `var` instead of the process environment, in the same order:
    /// static keys when `AWS_ACCESS_KEY_ID` is set, else a web identity. An empty value
    /// counts as unset.
    ///
    /// # Errors
    /// [`KmsError::Credentials`] naming what is missing.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, KmsError> {
        let get = |name| var(name).filter(|v| !v.is_empty());
        let missing = |rule| KmsError::Credentials { rule };
        if let Some(access_key_id) = get("AWS_ACCESS_KEY_ID") {
            let secret = get("AWS_SECRET_ACCESS_KEY").ok_or(missing(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
            ))?;
            return Self::static_keys(
                access_key_id,
                SecretString::from(secret),
                get("AWS_SESSION_TOKEN").map(SecretString::from),
            );
        }
        let Some(token_file) = get("AWS_WEB_IDENTITY_TOKEN_FILE") else {
            return Err(missing(
                "neither AWS_ACCESS_KEY_ID nor AWS_WEB_IDENTITY_TOKEN_FILE is set",
            ));
        };
        let role_arn = get("AWS_ROLE_ARN").ok_or(missing(
            "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not",
        ))?;
        Self::web_identity(
            token_file,
            role_arn,
            get("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| DEFAULT_SESSION_NAME.to_owned()),
        )
    }

    /// Static keys: an access key id of 16 to 128 letters and digits, a non-empty secret.
    ///
    /// # Errors
    /// [`KmsError::Credentials`].
    pub fn static_keys(
        access_key_id: impl Into<String>,
        secret_access_key: SecretString,
        session_token: Option<SecretString>,
    ) -> Result<Self, KmsError> {
        use svid_broker_identity::secret::ExposeSecret as _;
        let access_key_id = access_key_id.into();
        if !(16..=128).contains(&access_key_id.len())
            || !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(KmsError::Credentials {
                rule: "the access key id must be 16 to 128 letters and digits",
            });
        }
        let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        if !printable(secret_access_key.expose_secret())
            || session_token
                .as_ref()
                .is_some_and(|t| !printable(t.expose_secret()))
        {
            return Err(KmsError::Credentials {
                rule: "the secret access key and session token must be printable ASCII",
            });
        }
        Ok(Self::Static {
            access_key_id,
            secret_access_key,
            session_token,
        })
    }

    /// A web identity: the token file, a role ARN (`arn:<partition>:iam::<account>:role/...`,
    /// 20 to 2048 characters) and a session name (2 to 64 of `[\w+=,.@-]`), STS's rules.
    ///
    /// # Errors
    /// [`KmsError::Credentials`].
    pub fn web_identity(
        token_file: impl Into<PathBuf>,
        role_arn: impl Into<String>,
        session_name: impl Into<String>,
    ) -> Result<Self, KmsError> {
        let (role_arn, session_name) = (role_arn.into(), session_name.into());
        if !(20..=2048).contains(&role_arn.len())
            || !role_arn.starts_with("arn:")
            || !role_arn.contains(":role/")
        {
            return Err(KmsError::Credentials {
                rule: "the role ARN must be arn:<partition>:iam::<account>:role/<name>, 20 to 2048 characters",
            });
        }
        if !(2..=64).contains(&session_name.len())
            || !session_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
        {
            return Err(KmsError::Credentials {
                rule: "the role session name must be 2 to 64 of [A-Za-z0-9_+=,.@-]",
            });
        }
        Ok(Self::WebIdentity {
            token_file: token_file.into(),
            role_arn,
            session_name,
        })
    }
}

/// Which KMS key, where, and how to sign in.
#[derive(Debug, Clone)]
pub struct KmsConfig {
    key_id: String,
    region: String,
    endpoint: Endpoint,
    sts_endpoint: Endpoint,
    timeout: Duration,
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    credentials: KmsCredentialSource,
}

impl KmsConfig {
    /// The key `key_id` (a key id, key ARN, `alias/<name>` or alias ARN; 1 to 2048
    /// characters) in `region` (e.g. `us-east-1`), at `https://kms.<region>.amazonaws.com`
    /// with STS at `https://sts.<region>.amazonaws.com`, a [`DEFAULT_TIMEOUT`] per call.
    ///
    /// # Errors
    /// [`KmsError::Config`] naming the setting and the rule.
    pub fn new(
        key_id: impl Into<String>,
        region: impl Into<String>,
        credentials: KmsCredentialSource,
    ) -> Result<Self, KmsError> {
        let (key_id, region) = (key_id.into(), region.into());
        if key_id.is_empty()
            || key_id.chars().count() > 2048
            || key_id.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(KmsError::Config {
                field: "key_id",
                rule: "must be 1 to 2048 characters without spaces: a key id, key ARN, alias/<name> or alias ARN",
            });
        }
        if region.is_empty()
            || region.len() > 32
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || region.starts_with('-')
            || region.ends_with('-')
        {
            return Err(KmsError::Config {
                field: "region",
                rule: "must be 1 to 32 of [a-z0-9-], like us-east-1",
            });
        }
        let endpoint =
            Endpoint::parse(&format!("https://kms.{region}.amazonaws.com")).map_err(|rule| {
                KmsError::Config {
                    field: "region",
                    rule,
                }
            })?;
        let sts_endpoint = Endpoint::parse(&format!("https://sts.{region}.amazonaws.com"))
            .map_err(|rule| KmsError::Config {
                field: "region",
                rule,
            })?;
        Ok(Self {
            key_id,
            region,
            endpoint,
            sts_endpoint,
            timeout: DEFAULT_TIMEOUT,
            extra_roots: Vec::new(),
            credentials,
        })
    }

    /// KMS at `url` instead (a VPC endpoint, a FIPS endpoint, a test's fake): `https://host[:port]`,
    /// or `http://` only on a loopback IP literal.
    ///
    /// # Errors
    /// [`KmsError::Config`] for `endpoint`.
    pub fn with_endpoint(mut self, url: &str) -> Result<Self, KmsError> {
        self.endpoint = Endpoint::parse(url).map_err(|rule| KmsError::Config {
            field: "endpoint",
            rule,
        })?;
        Ok(self)
    }

    /// STS at `url` instead, same rules as [`Self::with_endpoint`].
    ///
    /// # Errors
    /// [`KmsError::Config`] for `sts_endpoint`.
    pub fn with_sts_endpoint(mut self, url: &str) -> Result<Self, KmsError> {
        self.sts_endpoint = Endpoint::parse(url).map_err(|rule| KmsError::Config {
            field: "sts_endpoint",
            rule,
        })?;
        Ok(self)
    }

    /// Each call (connect, send, answer) within `timeout`: 1 ms to [`MAX_TIMEOUT`].
    ///
    /// # Errors
    /// [`KmsError::Config`] for `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, KmsError> {
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(KmsError::Config {
                field: "timeout",
                rule: "must be more than 0 and at most 60 s",
            });
        }
        self.timeout = timeout;
        Ok(self)
    }

    /// Trusts the CA certificates of `pem` as well as webpki-roots' (a private endpoint's CA).
    ///
    /// # Errors
    /// [`KmsError::Config`] for `ca_pem`.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<Self, KmsError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let bad = |rule| KmsError::Config {
            field: "ca_pem",
            rule,
        };
        if pem.len() > MAX_CA_PEM {
            return Err(bad("is longer than 256 KiB"));
        }
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|_| bad("is not PEM"))?;
        if certs.is_empty() {
            return Err(bad("holds no CERTIFICATE block"));
        }
        // Checked now, so a bad CA is a configuration error rather than a first-call failure.
        transport::tls_config(&certs).map_err(bad)?;
        self.extra_roots = certs;
        Ok(self)
    }

    /// The key id, key ARN, alias or alias ARN as configured (before KMS resolves it).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The AWS region as configured (checked: `[a-z0-9-]`, like `us-east-1`).
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The per-call timeout (connect, send, answer): [`DEFAULT_TIMEOUT`] unless set.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

// === the client ===

/// Where the client's credentials come from at run time.
enum Source {
    Static(Credentials),
    WebIdentity(WebIdentity),
}

/// A KMS client for one key: endpoint, region, TLS, credentials.
struct Client {
    /// The key's ARN once known (what errors and `describe` name), else the configured id.
    describe: String,
    region: String,
    endpoint: Endpoint,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    source: Source,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("key", &self.describe)
            .field("endpoint", &self.endpoint.url())
            .finish_non_exhaustive()
    }
}

/// KMS error types that say "later": throttling, KMS's own or a dependency's failure.
const TRANSIENT: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "LimitExceededException",
    "KMSInternalException",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    "ServiceUnavailableException",
    "InternalFailure",
    "RequestTimeoutException",
];

impl Client {
    fn new(config: &KmsConfig) -> Result<Self, KmsError> {
        let tls = transport::tls_config(&config.extra_roots).map_err(|rule| KmsError::Config {
            field: "ca_pem",
            rule,
        })?;
        let source = match &config.credentials {
            KmsCredentialSource::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => Source::Static(Credentials {
                access_key_id: access_key_id.clone(),
                secret_access_key: secret_access_key.clone(),
                session_token: session_token.clone(),
                expires_at: None,
            }),
            KmsCredentialSource::WebIdentity {
                token_file,
                role_arn,
                session_name,
            } => Source::WebIdentity(WebIdentity {
                token_file: token_file.clone(),
                role_arn: role_arn.clone(),
                session_name: session_name.clone(),
                endpoint: config.sts_endpoint.clone(),
                tls: Arc::clone(&tls),
                timeout: config.timeout,
                cache: Mutex::new(None),
            }),
        };
        Ok(Self {
            describe: config.key_id.clone(),
            region: config.region.clone(),
            endpoint: config.endpoint.clone(),
            tls,
            timeout: config.timeout,
            source,
        })
    }

    fn unavailable(&self, reason: String) -> ExternalKeyError {
        ExternalKeyError::Unavailable {
            store: self.describe.clone(),
            reason,
        }
    }

    fn malformed(&self, rule: &'static str) -> ExternalKeyError {
        ExternalKeyError::Malformed {
            store: self.describe.clone(),
            rule,
        }
    }

    /// One KMS operation: credentials, SigV4, the round trip, the answer's JSON object or the
    /// error KMS named.
    fn call(&self, operation: &str, input: &Value) -> Result<Value, ExternalKeyError> {
        let now = SystemTime::now();
        let credentials = match &self.source {
            Source::Static(credentials) => credentials.clone(),
            Source::WebIdentity(web) => web.credentials(now).map_err(|e| match e {
                CredentialError::Unavailable(why) => self.unavailable(why),
                CredentialError::Refused(reason) => ExternalKeyError::Refused {
                    store: self.describe.clone(),
                    reason,
                },
                CredentialError::Malformed(rule) => self.malformed(rule),
            })?,
        };
        // The body can hold a message to sign: not secret, but not ours to leave around.
        let body = Zeroizing::new(input.to_string().into_bytes());
        let target = format!("TrentService.{operation}");
        let signed = signer::signed_headers(
            &credentials,
            &self.region,
            SERVICE,
            self.endpoint.authority(),
            &[("content-type", CONTENT_TYPE), ("x-amz-target", &target)],
            &body,
            now,
        )
        .map_err(|rule| self.malformed(rule))?;
        let mut headers: Vec<(&str, &str)> = vec![
            ("host", self.endpoint.authority()),
            ("content-type", CONTENT_TYPE),
            ("x-amz-target", &target),
        ];
        headers.extend(signed.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let response = transport::post(&self.endpoint, &self.tls, &headers, &body, self.timeout)
            .map_err(|e| match e {
                TransportError::Unavailable(why) => {
                    self.unavailable(format!("KMS {operation}: {why}"))
                }
                TransportError::Malformed(rule) => self.malformed(rule),
            })?;
        let parsed: Option<serde_json::Map<String, Value>> =
            serde_json::from_slice(&response.body).ok();
        if response.status == 200 {
            return parsed
                .map(Value::Object)
                .ok_or_else(|| self.malformed("KMS's answer is not a JSON object"));
        }
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|p| p.get(name))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        // `__type` may carry a namespace (`com.amazonaws.kms#NotFoundException`).
        let kind = field("__type");
        let kind = kind.rsplit('#').next().unwrap_or_default();
        let message = match field("message") {
            m if m.is_empty() => field("Message"),
            m => m,
        };
        let reason = format!(
            "KMS {operation} answered {}: {}: {}",
            response.status,
            printable(kind, 64),
            printable(&message, 256)
        );
        if response.status >= 500 || response.status == 429 || TRANSIENT.contains(&kind) {
            Err(self.unavailable(reason))
        } else {
            Err(ExternalKeyError::Refused {
                store: self.describe.clone(),
                reason,
            })
        }
    }
}

/// A string member of an answer, or the rule it broke.
fn string_member<'a>(answer: &'a Value, name: &str) -> Option<&'a str> {
    answer.get(name).and_then(Value::as_str)
}

/// A base64 member of an answer, decoded, at most `max` bytes.
fn blob_member(answer: &Value, name: &str, max: usize) -> Option<Vec<u8>> {
    let text = string_member(answer, name)?;
    if text.len() > max.div_ceil(3) * 4 + 4 {
        return None;
    }
    STANDARD.decode(text).ok().filter(|b| b.len() <= max)
}

// === KmsKey ===

/// An asymmetric KMS key signing for the broker (the signing CA's key, or the federation
/// issuer's RSA key). `Debug` prints the key's ARN and endpoint only.
#[derive(Debug)]
pub struct KmsKey {
    client: Client,
    algorithm: ExternalAlgorithm,
    /// KMS's name of the algorithm.
    signing_algorithm: &'static str,
    spki: Vec<u8>,
    /// The RSA signature length (the modulus length), for RSA keys.
    rsa_signature_len: Option<usize>,
}

impl KmsKey {
    /// Opens the key: `GetPublicKey`, then checks `KeyUsage` is `SIGN_VERIFY`, maps `KeySpec`
    /// (`ECC_NIST_P256` to ES256, `ECC_NIST_P384` to ES384, `RSA_2048`/`RSA_3072`/`RSA_4096`
    /// to RS256) and checks `SigningAlgorithms` lists the algorithm used. The key is named by
    /// its ARN from then on.
    ///
    /// # Errors
    /// [`KmsError::Store`] when KMS is unreachable or refuses (`NotFoundException`,
    /// `AccessDeniedException` for `kms:GetPublicKey`, `DisabledException`, ...),
    /// [`KmsError::Unsuitable`] for a key of another usage or spec.
    pub fn open(config: &KmsConfig) -> Result<Self, KmsError> {
        let mut client = Client::new(config)?;
        let answer = client.call("GetPublicKey", &json!({ "KeyId": config.key_id }))?;
        if let Some(arn) = string_member(&answer, "KeyId")
            .filter(|arn| arn.starts_with("arn:") && arn.len() <= 2048)
        {
            client.describe = printable(arn, 2048);
        }
        let unsuitable = |rule: String| KmsError::Unsuitable {
            key: client.describe.clone(),
            rule,
        };
        let usage = string_member(&answer, "KeyUsage").unwrap_or_default();
        if usage != "SIGN_VERIFY" {
            return Err(unsuitable(format!(
                "KeyUsage is {}, not SIGN_VERIFY",
                printable(usage, 64)
            )));
        }
        let spec = string_member(&answer, "KeySpec")
            .or_else(|| string_member(&answer, "CustomerMasterKeySpec"))
            .unwrap_or_default();
        let (algorithm, signing_algorithm, rsa_signature_len) = match spec {
            "ECC_NIST_P256" => (ExternalAlgorithm::EcdsaP256Sha256, "ECDSA_SHA_256", None),
            "ECC_NIST_P384" => (ExternalAlgorithm::EcdsaP384Sha384, "ECDSA_SHA_384", None),
            "RSA_2048" => (
                ExternalAlgorithm::RsaPkcs1Sha256,
                "RSASSA_PKCS1_V1_5_SHA_256",
                Some(256),
            ),
            "RSA_3072" => (
                ExternalAlgorithm::RsaPkcs1Sha256,
                "RSASSA_PKCS1_V1_5_SHA_256",
                Some(384),
            ),
            "RSA_4096" => (
                ExternalAlgorithm::RsaPkcs1Sha256,
                "RSASSA_PKCS1_V1_5_SHA_256",
                Some(512),
            ),
            other => {
                return Err(unsuitable(format!(
                    "KeySpec {} is not ECC_NIST_P256, ECC_NIST_P384 or RSA_2048/3072/4096",
                    printable(other, 64)
                )));
            }
        };
        let listed = answer
            .get("SigningAlgorithms")
            .and_then(Value::as_array)
            .is_some_and(|list| list.iter().any(|a| a.as_str() == Some(signing_algorithm)));
        if !listed {
            return Err(unsuitable(format!(
                "SigningAlgorithms does not list {signing_algorithm}"
            )));
        }
        let spki = blob_member(&answer, "PublicKey", MAX_SPKI_LEN).ok_or_else(|| {
            client.malformed("GetPublicKey's PublicKey is not base64 DER of at most 2048 bytes")
        })?;
        Ok(Self {
            client,
            algorithm,
            signing_algorithm,
            spki,
            rsa_signature_len,
        })
    }

    /// KMS's name of the signing algorithm used (`ECDSA_SHA_256`, ...).
    pub fn signing_algorithm(&self) -> &'static str {
        self.signing_algorithm
    }
}

impl ExternalKey for KmsKey {
    fn describe(&self) -> &str {
        &self.client.describe
    }

    fn algorithm(&self) -> ExternalAlgorithm {
        self.algorithm
    }

    fn public_key_spki(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ExternalKeyError> {
        // KMS takes 1 to 4096 bytes raw; anything else goes as the digest, hashed here.
        let (message_type, payload) = if (1..=MAX_RAW_MESSAGE).contains(&message.len()) {
            ("RAW", message.to_vec())
        } else {
            let hash = match self.algorithm {
                ExternalAlgorithm::EcdsaP384Sha384 => &aws_lc_rs::digest::SHA384,
                _ => &aws_lc_rs::digest::SHA256,
            };
            (
                "DIGEST",
                aws_lc_rs::digest::digest(hash, message).as_ref().to_vec(),
            )
        };
        let input = json!({
            "KeyId": self.client.describe,
            "Message": STANDARD.encode(&payload),
            "MessageType": message_type,
            "SigningAlgorithm": self.signing_algorithm,
        });
        let answer = self.client.call("Sign", &input)?;
        if string_member(&answer, "SigningAlgorithm").is_some_and(|a| a != self.signing_algorithm) {
            return Err(self
                .client
                .malformed("KMS signed with another algorithm than asked"));
        }
        let signature = blob_member(&answer, "Signature", 1024).ok_or_else(|| {
            self.client
                .malformed("Sign's Signature is not base64 of at most 1024 bytes")
        })?;
        match (self.algorithm.ecdsa_scalar_len(), self.rsa_signature_len) {
            (Some(scalar), _) => {
                ecdsa_der_to_jws(&signature, scalar).map_err(|rule| self.client.malformed(rule))?;
            }
            (None, Some(len)) if signature.len() != len => {
                return Err(self
                    .client
                    .malformed("RSA signature is not as long as the modulus"));
            }
            (None, _) => {}
        }
        Ok(signature)
    }
}

// === KmsMac ===

/// An HMAC_256 KMS key (`GENERATE_VERIFY_MAC`) computing HMAC-SHA256 for the broker.
#[derive(Debug)]
pub struct KmsMac {
    client: Client,
}

impl KmsMac {
    /// Opens the key: `DescribeKey`, then checks `KeyUsage` `GENERATE_VERIFY_MAC`, `KeySpec`
    /// `HMAC_256`, `MacAlgorithms` listing `HMAC_SHA_256`, and that it is enabled.
    ///
    /// # Errors
    /// [`KmsError::Store`] when KMS is unreachable or refuses, [`KmsError::Unsuitable`] for
    /// another kind of key or a disabled one.
    pub fn open(config: &KmsConfig) -> Result<Self, KmsError> {
        let mut client = Client::new(config)?;
        let answer = client.call("DescribeKey", &json!({ "KeyId": config.key_id }))?;
        let metadata = answer
            .get("KeyMetadata")
            .ok_or_else(|| client.malformed("DescribeKey's answer has no KeyMetadata"))?;
        if let Some(arn) = string_member(metadata, "Arn")
            .filter(|arn| arn.starts_with("arn:") && arn.len() <= 2048)
        {
            client.describe = printable(arn, 2048);
        }
        let unsuitable = |rule: String| KmsError::Unsuitable {
            key: client.describe.clone(),
            rule,
        };
        let usage = string_member(metadata, "KeyUsage").unwrap_or_default();
        if usage != "GENERATE_VERIFY_MAC" {
            return Err(unsuitable(format!(
                "KeyUsage is {}, not GENERATE_VERIFY_MAC",
                printable(usage, 64)
            )));
        }
        let spec = string_member(metadata, "KeySpec").unwrap_or_default();
        let listed = metadata
            .get("MacAlgorithms")
            .and_then(Value::as_array)
            .is_some_and(|list| list.iter().any(|a| a.as_str() == Some("HMAC_SHA_256")));
        if spec != "HMAC_256" || !listed {
            return Err(unsuitable(format!(
                "KeySpec is {}, not HMAC_256 with HMAC_SHA_256",
                printable(spec, 64)
            )));
        }
        if string_member(metadata, "KeyState") != Some("Enabled") {
            return Err(unsuitable("the key is not Enabled".to_owned()));
        }
        Ok(Self { client })
    }
}

impl ExternalMac for KmsMac {
    fn describe(&self) -> &str {
        &self.client.describe
    }

    fn hmac_sha256(&self, message: &[u8]) -> Result<Zeroizing<[u8; 32]>, ExternalKeyError> {
        if !(1..=MAX_RAW_MESSAGE).contains(&message.len()) {
            // KMS takes no digest for a MAC: the message must fit as it is.
            return Err(ExternalKeyError::Refused {
                store: self.client.describe.clone(),
                reason: "GenerateMac takes a message of 1 to 4096 bytes".to_owned(),
            });
        }
        let input = json!({
            "KeyId": self.client.describe,
            "Message": STANDARD.encode(message),
            "MacAlgorithm": "HMAC_SHA_256",
        });
        let answer = self.client.call("GenerateMac", &input)?;
        let mac = Zeroizing::new(
            blob_member(&answer, "Mac", 64)
                .ok_or_else(|| self.client.malformed("GenerateMac's Mac is not base64"))?,
        );
        let mut out = Zeroizing::new([0u8; 32]);
        if mac.len() != 32 {
            return Err(self
                .client
                .malformed("GenerateMac's Mac is not 32 bytes (HMAC-SHA256)"));
        }
        out.copy_from_slice(&mac);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    fn creds() -> KmsCredentialSource {
        KmsCredentialSource::static_keys(
            "AKIAEXAMPLE000000000",
            SecretString::from("secret".to_owned()),
            None,
        )
        .unwrap()
    }

    #[test]
    fn configuration_rules_are_named() {
        let config = KmsConfig::new("alias/ca", "eu-west-1", creds()).unwrap();
        assert_eq!(config.endpoint.url(), "https://kms.eu-west-1.amazonaws.com");
        assert_eq!(
            config.sts_endpoint.url(),
            "https://sts.eu-west-1.amazonaws.com"
        );
        assert_eq!(config.timeout(), DEFAULT_TIMEOUT);
        let error = KmsConfig::new("", "us-east-1", creds()).unwrap_err();
        assert!(error.to_string().contains("key_id"), "{error}");
        let error = KmsConfig::new("k", "US_EAST", creds()).unwrap_err();
        assert!(error.to_string().contains("region"), "{error}");
        let error = config
            .clone()
            .with_endpoint("http://kms.example.com")
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("endpoint: an http:// endpoint must be a loopback"),
            "{error}"
        );
        let error = config.clone().with_timeout(Duration::ZERO).unwrap_err();
        assert!(error.to_string().contains("timeout"), "{error}");
        let error = config.with_ca_pem(b"not pem").unwrap_err();
        assert!(error.to_string().contains("ca_pem"), "{error}");
    }

    #[test]
    fn credentials_come_from_variables_like_the_sdks() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let web = KmsCredentialSource::from_vars(vars(&[
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
            ),
            ("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/broker"),
        ]))
        .unwrap();
        let shown = format!("{web:?}");
        assert!(
            shown.contains("svid-broker-kms") && shown.contains("role/broker"),
            "{shown}"
        );
        let keys = KmsCredentialSource::from_vars(vars(&[
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE000000000"),
            ("AWS_SECRET_ACCESS_KEY", "do-not-print-me"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/broker"),
        ]))
        .unwrap();
        // Static keys win over a complete web identity, as in the SDKs.
        assert!(
            matches!(keys, KmsCredentialSource::Static { .. }),
            "{keys:?}"
        );
        // An empty AWS_ACCESS_KEY_ID counts as unset: the web identity is used.
        let web = KmsCredentialSource::from_vars(vars(&[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/broker"),
        ]))
        .unwrap();
        assert!(
            matches!(web, KmsCredentialSource::WebIdentity { .. }),
            "{web:?}"
        );
        let shown = format!("{keys:?}");
        assert!(
            !shown.contains("do-not-print-me") && !shown.contains("AKIA"),
            "{shown}"
        );
        let error = KmsCredentialSource::from_vars(vars(&[])).unwrap_err();
        assert!(error.to_string().contains("neither"), "{error}");
        let error =
            KmsCredentialSource::from_vars(vars(&[("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE000000000")]))
                .unwrap_err();
        assert!(
            error.to_string().contains("AWS_SECRET_ACCESS_KEY"),
            "{error}"
        );
        let error = KmsCredentialSource::from_vars(vars(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/t")]))
            .unwrap_err();
        assert!(error.to_string().contains("AWS_ROLE_ARN"), "{error}");
    }
}
