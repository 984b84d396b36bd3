//! Amazon ECR: a Docker login per grant through AWS STS web identity federation, with the
//! broker as the OpenID Connect provider an IAM role trusts. No AWS key exists anywhere.
//!
//! For a grant the backend:
//!
//! 1. maps it to a **session policy** that always narrows the session to the granted
//!    repositories (`arn:<partition>:ecr:<region>:<account>:repository/<name>`, or
//!    `repository/*` for a registry-wide grant): `ecr:GetAuthorizationToken` on `*`, the pull
//!    actions (`ecr:BatchGetImage`, `ecr:GetDownloadUrlForLayer`,
//!    `ecr:BatchCheckLayerAvailability`) on every granted repository, and the push actions
//!    (`ecr:PutImage`, `ecr:InitiateLayerUpload`, `ecr:UploadLayerPart`,
//!    `ecr:CompleteLayerUpload`) on the pushed ones. STS intersects it with the role's own
//!    permissions, so the credential reaches at most what both allow. A policy longer than
//!    STS's 2,048-character limit ([`MAX_SESSION_POLICY_CHARS`]) is refused before any call;
//! 2. signs its own JWT ([`FederationIssuer::mint`]): `iss` the broker's issuer URL, `sub`
//!    from [`EcrConfig::subject_template`], `aud` [`EcrConfig::audience`], and, with
//!    [`EcrConfig::session_tags`], the claim [`TAGS_CLAIM`] =
//!    `{"principal_tags": {"namespace": ["team-a"], ...}, "transitive_tag_keys": []}` (the
//!    shape of IAM's "Passing session tags using AssumeRoleWithWebIdentity");
//! 3. calls STS `AssumeRoleWithWebIdentity` (Query API, `POST /`, no AWS credentials) for
//!    [`EcrConfig::session_duration`] with the role session name `svid-<24 hex>` (a keyed hash
//!    of the workload's SPIFFE ID, logged with it);
//! 4. calls ECR `GetAuthorizationToken` with the temporary credentials, signed with SigV4 by
//!    AWS's own signer (`aws-sigv4`);
//! 5. hands out username `AWS` and the token's password.
//!
//! **Lifetime and revocation.** An ECR authorization token is valid for 12 hours whatever the
//! STS session's duration, and nothing can revoke it one by one. The credential's
//! `expires_at` is the earlier of the grant's revocation time and the token's `expiresAt`
//! (what the caller is told, and when the broker stops handing it out);
//! `registry_expires_at` is the token's own `expiresAt` (12 hours). Whether ECR still accepts
//! the token after the (shorter) STS session that made it has expired is not documented and
//! is **unverified** here: assume it lives 12 hours. Revoking is a no-op
//! ([`Backend::revocable`](crate::Backend::revocable) is false). Revoking the role's active
//! sessions in IAM (the console's "Revoke active sessions", an `aws:TokenIssueTime` deny)
//! ends the STS sessions; whether it also ends ECR tokens already made from them is not
//! documented either: keep the policy's lifetime in mind when granting ECR.
//!
//! # IAM setup
//!
//! The broker's issuer URL (`<public_url>/federation`, here
//! `https://broker.example.org/federation`) must be reachable by AWS over https, without a
//! port or query (IAM's `CreateOpenIDConnectProvider`: "The URL should not contain a port
//! number"): IAM fetches `/.well-known/openid-configuration` and the JWKS from it.
//!
//! 1. An IAM OIDC identity provider for the issuer, with the audience
//!    ([`EcrConfig::audience`], default `sts.amazonaws.com`) as client id. AWS checks the
//!    JWKS endpoint's certificate against its trusted root CAs; the thumbprint is used only
//!    for a certificate that does not chain to one (IAM API reference,
//!    `UpdateOpenIDConnectProviderThumbprint`), so with a public certificate any value the
//!    CLI accepts will do:
//!
//!    ```text
//!    aws iam create-open-id-connect-provider \
//!      --url https://broker.example.org/federation \
//!      --client-id-list sts.amazonaws.com \
//!      --thumbprint-list 0000000000000000000000000000000000000000
//!    ```
//!
//! 2. A role trusting it, with conditions on the JWT's `sub` and `aud`, named by the
//!    provider's URL without its scheme (`broker.example.org/federation:sub`); add
//!    `sts:TagSession` to the actions when [`EcrConfig::session_tags`] is set (STS refuses a
//!    JWT with tags otherwise):
//!
//!    ```text
//!    cat > trust.json <<'EOF'
//!    {
//!      "Version": "2012-10-17",
//!      "Statement": [{
//!        "Effect": "Allow",
//!        "Principal": {
//!          "Federated": "arn:aws:iam::111122223333:oidc-provider/broker.example.org/federation"
//!        },
//!        "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"],
//!        "Condition": {
//!          "StringEquals": { "broker.example.org/federation:aud": "sts.amazonaws.com" },
//!          "StringLike": { "broker.example.org/federation:sub": "spiffe://example.org/ns/team-a/*" }
//!        }
//!      }]
//!    }
//!    EOF
//!    aws iam create-role --role-name svid-broker-ecr \
//!      --assume-role-policy-document file://trust.json \
//!      --max-session-duration 3600
//!    ```
//!
//! 3. The role's permissions: at least what any grant may need (the session policy only
//!    narrows them). For example every repository under `team-a/`:
//!
//!    ```text
//!    cat > ecr.json <<'EOF'
//!    {
//!      "Version": "2012-10-17",
//!      "Statement": [
//!        { "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*" },
//!        { "Effect": "Allow",
//!          "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
//!                     "ecr:BatchCheckLayerAvailability", "ecr:PutImage",
//!                     "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
//!                     "ecr:CompleteLayerUpload"],
//!          "Resource": "arn:aws:ecr:us-east-1:111122223333:repository/team-a/*" }
//!      ]
//!    }
//!    EOF
//!    aws iam put-role-policy --role-name svid-broker-ecr \
//!      --policy-name svid-broker-ecr --policy-document file://ecr.json
//!    ```
//!
//!    With session tags (`session_tags = "/ns/{namespace}/sa/{service_account}"`), one role can
//!    serve every namespace: `"Resource": "arn:aws:ecr:us-east-1:111122223333:repository/${aws:PrincipalTag/namespace}/*"`.
//!
//! Facts from the STS API reference (`AssumeRoleWithWebIdentity`: parameters, length limits,
//! errors; botocore's `sts/2011-06-15/service-2.json`), the IAM user guide ("Pass session
//! tags in AWS STS", "Create an OpenID Connect identity provider"), the ECR API reference
//! (`GetAuthorizationToken`, `AuthorizationData`, common errors) and ECR's user guide ("IAM
//! permissions for pushing an image").

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::{HeaderName, HeaderValue, Method};
use serde_json::{Map, Value};
use svid_broker_identity::secret::{SecretString, seal_string};
use svid_broker_identity::{PathPattern, SpiffeId};
use svid_broker_policy::subject::{Placeholders, SubjectTemplate};
use svid_broker_token::federation::{FederatedClaims, FederationIssuer, MAX_AUDIENCE_LEN};
use zeroize::Zeroizing;

use crate::api::{ApiShape, RegistryApi, config_error, limits_of, parse_json, sign_failure};
use crate::credential::{BackendCredential, BackendGrant, CredentialHandle};
use crate::error::{
    BackendError, BackendKind, ConfigError, ConfigProblem, Failure, Step, sanitize_vendor_message,
};
use crate::figures::ApiMeter;
use crate::http::{
    ApiClient, ApiResponse, Auth, ClientSettings, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_REQUEST_DEADLINE, OutgoingRequest,
};

mod grant;
mod sign;
mod wire;

use grant::{EcrGrant, map_grant};
pub use grant::{GET_AUTHORIZATION_TOKEN, MAX_SESSION_POLICY_CHARS, PULL_ACTIONS, PUSH_ACTIONS};
pub use svid_broker_policy::subject::DEFAULT_SUBJECT_TEMPLATE;
use wire::{MAX_ECR_PASSWORD_BYTES, StsCredentials};

/// The JWT audience the IAM OIDC provider's client id must equal, by default.
pub const DEFAULT_AUDIENCE: &str = svid_broker_policy::AWS_DEFAULT_JWT_AUDIENCE;
/// The claim AWS reads session tags from.
pub const TAGS_CLAIM: &str = "https://aws.amazon.com/tags";
/// The default STS session duration (STS's minimum).
pub const DEFAULT_SESSION_DURATION: Duration = Duration::from_secs(900);
/// The shortest STS session (`DurationSeconds` minimum).
pub const MIN_SESSION_DURATION: Duration = Duration::from_secs(900);
/// The longest STS session (`DurationSeconds` maximum; the role's own maximum may be lower).
pub const MAX_SESSION_DURATION: Duration = Duration::from_secs(43_200);
/// The username of every ECR Docker login.
pub const ECR_USERNAME: &str = "AWS";
/// ECR's documented token lifetime.
pub const ECR_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The furthest `expiresAt` accepted: ECR's 12 hours and an hour of clock difference. A
/// later one is not ECR's, and is taken as a malformed answer.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(13 * 3600);
/// Most session tags STS takes in one `AssumeRoleWithWebIdentity`.
pub const MAX_SESSION_TAGS: usize = 50;
/// Longest session tag value, in characters.
pub const MAX_TAG_VALUE_CHARS: usize = 256;
/// Longest region name accepted, in ASCII characters (`[a-z0-9-]`).
pub const MAX_REGION_CHARS: usize = 32;

/// The STS error codes that are about the broker's JWT: its issuer, signature, lifetime or
/// claims.
const JWT_ERROR_CODES: [&str; 4] = [
    "InvalidIdentityToken",
    "ExpiredTokenException",
    "IDPRejectedClaim",
    "IDPCommunicationError",
];

/// STS's answers in the shared plumbing (ECR's are read by [`ecr_failure`]).
const API_SHAPE: ApiShape = ApiShape {
    kind: BackendKind::Ecr,
    vendor_message: sts_vendor_message,
    missing_project_text: None,
};

/// How to reach one AWS account's ECR and which IAM role trusts the broker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EcrConfig {
    /// The registry's name in the policy (labels errors and figures).
    pub registry: String,
    /// The broker as OIDC provider: it signs the JWT, and serves the discovery document and
    /// JWKS IAM fetches.
    pub issuer: Arc<FederationIssuer>,
    /// The role to assume: `arn:<partition>:iam::<12 digits>:role/<path/name>`; its account
    /// owns the repositories.
    pub role_arn: String,
    /// The AWS region of the registry (`us-east-1`).
    pub region: String,
    /// STS's endpoint. Defaults to `https://sts.{region}.amazonaws.com` (`.amazonaws.com.cn`
    /// in `aws-cn`).
    pub sts_endpoint: String,
    /// ECR's API endpoint. Defaults to `https://api.ecr.{region}.amazonaws.com`.
    pub ecr_endpoint: String,
    /// The JWT's `aud`: a client id of the IAM OIDC provider. Defaults to
    /// [`DEFAULT_AUDIENCE`].
    pub audience: String,
    /// The JWT's `sub`: `{spiffe_id}` and `{access}` (`pull` or `push`) are replaced.
    /// Defaults to [`DEFAULT_SUBJECT_TEMPLATE`].
    pub subject_template: String,
    /// The STS session's duration: 900 to 43,200 whole seconds, at most the role's maximum.
    pub session_duration: Duration,
    /// A SPIFFE ID pattern with captures (`/ns/{namespace}/sa/{service_account}`, matched in
    /// the workload's own trust domain, or a whole `spiffe://td/...` pattern): each capture
    /// becomes a principal tag. A workload whose ID does not match is refused.
    pub session_tags: Option<String>,
    /// PEM CA certificates to trust instead of the public web roots (both endpoints).
    pub ca_file: Option<PathBuf>,
    /// The deadline of one API request (connect, TLS and the whole answer).
    pub request_deadline: Duration,
    /// The cap on API requests in flight, to each endpoint.
    pub max_in_flight: usize,
    /// The cap on one answer's body, in bytes.
    pub max_response_bytes: usize,
}

impl EcrConfig {
    /// A configuration with the default endpoints of `region`, audience `sts.amazonaws.com`,
    /// subject `{spiffe_id}`, 900 s sessions, no session tags, public web roots, a 10 s
    /// deadline, 4 requests in flight and a 1 MiB answer cap.
    pub fn new(
        registry: impl Into<String>,
        issuer: Arc<FederationIssuer>,
        role_arn: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        let role_arn = role_arn.into();
        let region = region.into();
        let domain = svid_broker_policy::aws_domain(&role_arn);
        Self {
            registry: registry.into(),
            issuer,
            sts_endpoint: format!("https://sts.{region}.{domain}"),
            ecr_endpoint: format!("https://api.ecr.{region}.{domain}"),
            role_arn,
            region,
            audience: DEFAULT_AUDIENCE.to_owned(),
            subject_template: DEFAULT_SUBJECT_TEMPLATE.to_owned(),
            session_duration: DEFAULT_SESSION_DURATION,
            session_tags: None,
            ca_file: None,
            request_deadline: DEFAULT_REQUEST_DEADLINE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// How the session tags are read from the workload's SPIFFE ID.
#[derive(Debug, Clone)]
enum TagPattern {
    /// A whole pattern, trust domain included.
    Whole(PathPattern),
    /// A path pattern, matched in the workload's own trust domain.
    Path(String),
}

/// One AWS account's ECR, spoken to through STS web identity federation.
pub struct EcrBackend {
    /// STS (its meter counts both steps).
    api: RegistryApi,
    ecr: ApiClient,
    issuer: Arc<FederationIssuer>,
    role_arn: String,
    region: String,
    /// `arn:<partition>:ecr:<region>:<account>:repository/`.
    repository_arn_prefix: String,
    audience: String,
    subject: SubjectTemplate,
    session_duration: Duration,
    tags: Option<TagPattern>,
}

/// A grant in ECR's terms: what makes two grants the same credential, and what it asks for.
#[derive(Debug)]
struct Mapped {
    key: String,
    grant: EcrGrant,
    policy: String,
    tags: Option<Map<String, Value>>,
}

impl Mapped {
    fn reuse_key(&self) -> String {
        self.key.clone()
    }
}

impl EcrBackend {
    /// Checks the configuration and builds both API clients (reading the CA file now).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the registry: a bad endpoint URL, plain http to a host that is
    /// not a loopback address, an unusable CA file, a zero limit, or
    /// ([`ConfigProblem::InvalidSetting`]) a role ARN, region, audience, subject template,
    /// session duration or session tag pattern that breaks its rule.
    pub fn new(config: EcrConfig) -> Result<Self, ConfigError> {
        let fail = config_error(&config.registry, BackendKind::Ecr);
        let Some((partition, account)) = parse_role_arn(&config.role_arn) else {
            return Err(fail(invalid_setting(
                "role_arn",
                "must be arn:<partition>:iam::<12 digits>:role/<path/name> (20 to 2048 characters, names of [A-Za-z0-9+=,.@_-])",
                &config.role_arn,
            )));
        };
        let region_ok = !config.region.is_empty()
            && config.region.len() <= MAX_REGION_CHARS
            && config
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(fail(invalid_setting(
                "region",
                "must be 1 to 32 characters of [a-z0-9-]",
                &config.region,
            )));
        }
        let audience = &config.audience;
        if audience.trim().is_empty()
            || audience.len() > MAX_AUDIENCE_LEN
            || audience.chars().any(char::is_control)
        {
            return Err(fail(invalid_setting(
                "audience",
                "1 to 1024 printable characters",
                audience,
            )));
        }
        let subject =
            SubjectTemplate::parse(&config.subject_template, Placeholders::WithoutProject)
                .map_err(|rule| {
                    fail(invalid_setting(
                        "subject_template",
                        rule,
                        &config.subject_template,
                    ))
                })?;
        let duration = config.session_duration;
        if duration.subsec_nanos() != 0
            || duration < MIN_SESSION_DURATION
            || duration > MAX_SESSION_DURATION
        {
            return Err(fail(invalid_setting(
                "session_duration",
                "must be 900 to 43200 whole seconds (STS's DurationSeconds)",
                &format!("{duration:?}"),
            )));
        }
        let tags = match &config.session_tags {
            None => None,
            Some(text) => Some(
                parse_tag_pattern(text)
                    .map_err(|rule| fail(invalid_setting("session_tags", rule, text)))?,
            ),
        };
        let settings = ClientSettings::with_auth(config.sts_endpoint.clone(), Auth::None);
        let api = RegistryApi::new(
            config.registry.clone(),
            API_SHAPE,
            settings,
            limits_of!(config),
        )
        .map_err(&fail)?;
        let mut ecr_settings = ClientSettings::with_auth(config.ecr_endpoint.clone(), Auth::None);
        ecr_settings.ca_file.clone_from(&config.ca_file);
        ecr_settings.request_deadline = config.request_deadline;
        ecr_settings.max_in_flight = config.max_in_flight;
        ecr_settings.max_response_bytes = config.max_response_bytes;
        let ecr = ApiClient::new(&ecr_settings).map_err(&fail)?;
        Ok(Self {
            api,
            ecr,
            repository_arn_prefix: format!(
                "arn:{partition}:ecr:{}:{account}:repository/",
                config.region
            ),
            issuer: config.issuer,
            role_arn: config.role_arn,
            region: config.region,
            audience: config.audience,
            subject,
            session_duration: duration,
            tags,
        })
    }

    /// Trades the broker's JWT for an STS session narrowed to `grant`, and that session for
    /// an ECR Docker login. `expires_at` of the answer is the earlier of the grant's
    /// `revoke_at` and the token's `expiresAt`; `registry_expires_at` is `expiresAt`.
    ///
    /// # Errors
    /// At [`Step::MapGrant`] when the grant is not `pull`/`push` on repositories, its time
    /// has passed, its session policy is over [`MAX_SESSION_POLICY_CHARS`], or the workload
    /// does not match [`EcrConfig::session_tags`]; at [`Step::SignFederatedToken`] when the
    /// JWT cannot be signed; at [`Step::AssumeRoleWithWebIdentity`] when STS refuses
    /// ([`Failure::JwtRefused`] for `InvalidIdentityToken`, `ExpiredTokenException`,
    /// `IDPRejectedClaim` and `IDPCommunicationError`, [`Failure::Forbidden`] for
    /// `AccessDenied`: the role's trust policy), fails or answers malformed XML; at
    /// [`Step::GetAuthorizationToken`] when ECR refuses ([`Failure::Forbidden`] with its
    /// `__type` and message), fails, or answers a token that is not `AWS:<password>` or an
    /// `expiresAt` in the past or more than [`MAX_TOKEN_LIFETIME`] away.
    pub async fn issue(
        &self,
        grant: &BackendGrant,
        now: SystemTime,
    ) -> Result<BackendCredential, BackendError> {
        let mapped = self.map(grant)?;
        self.api.ensure_unexpired(grant, now)?;
        let access = mapped.grant.overall_access();
        let mut claims = FederatedClaims::new(
            self.subject.render(&grant.subject, "", access),
            self.audience.clone(),
        );
        if let Some(tags) = &mapped.tags {
            claims = claims.with_object_claim(TAGS_CLAIM, tags.clone());
        }
        let minted = crate::api::mint_federated(&self.issuer, claims, now)
            .await
            .map_err(|error| {
                self.api.error(
                    Step::SignFederatedToken,
                    sign_failure(BackendKind::Ecr, &error),
                )
            })?;
        let session_name = wire::role_session_name(&grant.subject);
        let sts_step = Step::AssumeRoleWithWebIdentity {
            role_arn: self.role_arn.clone(),
        };
        let result = self
            .assume_role(&minted.token, &session_name, &mapped.policy, now)
            .await;
        let credentials = self.api.finish(&sts_step, result)?;
        let ecr_step = Step::GetAuthorizationToken {
            region: self.region.clone(),
        };
        let result = self.authorization_token(&credentials, now).await;
        let (password, token_end) = self.api.finish(&ecr_step, result)?;
        tracing::info!(
            registry = %self.api.registry,
            role_arn = %self.role_arn,
            role_session_name = %session_name,
            access_key_id = %credentials.access_key_id,
            jti = %minted.jti,
            subject = %grant.subject,
            repositories = %mapped.grant.key(),
            "ecr authorization token issued"
        );
        Ok(BackendCredential::new(
            ECR_USERNAME,
            password,
            format!("ecr session {session_name} (federated jwt {})", minted.jti),
            token_end.min(grant.revoke_at),
            CredentialHandle::new(0, session_name, self.region.clone()),
        )
        .valid_at_registry_until(token_end))
    }

    /// The API request counters (both steps).
    pub fn meter(&self) -> &ApiMeter {
        &self.api.meter
    }

    fn map(&self, grant: &BackendGrant) -> Result<Mapped, BackendError> {
        let refuse = |failure| self.api.error(Step::MapGrant, failure);
        let ecr_grant = map_grant(&grant.scopes).map_err(refuse)?;
        let policy = ecr_grant.session_policy(&self.repository_arn_prefix);
        if policy.chars().count() > MAX_SESSION_POLICY_CHARS {
            return Err(refuse(grant_refused(
                "the grant's session policy is longer than STS's 2048-character limit; grant fewer repositories at once (or a registry-wide scope)",
            )));
        }
        let tags = match &self.tags {
            None => None,
            Some(pattern) => Some(session_tags(pattern, &grant.subject).map_err(refuse)?),
        };
        Ok(Mapped {
            key: format!("{} {} {}", self.role_arn, self.region, ecr_grant.key()),
            grant: ecr_grant,
            policy,
            tags,
        })
    }

    /// `AssumeRoleWithWebIdentity`, read strictly.
    async fn assume_role(
        &self,
        jwt: &SecretString,
        session_name: &str,
        policy: &str,
        now: SystemTime,
    ) -> Result<StsCredentials, Failure> {
        use svid_broker_identity::secret::ExposeSecret as _;
        // The JWT is a short-lived bearer credential: the body is moved (not copied) into the
        // request; hyper's buffer of it cannot be wiped.
        let body = wire::assume_role_body(
            &self.role_arn,
            session_name,
            jwt.expose_secret(),
            self.session_duration.as_secs(),
            policy,
        );
        let request =
            OutgoingRequest::new(Method::POST, "/").with_body(wire::FORM_CONTENT_TYPE, body);
        let response = self.api.client.send_request(request).await?;
        if !response.status.is_success() {
            let failure = sts_failure(&self.api.client, &response, jwt);
            // Wiped: an error answer may echo the JWT (a `ValidationError` quoting it).
            drop(Zeroizing::new(response.body));
            return Err(failure);
        }
        let body = Zeroizing::new(response.body);
        let credentials = wire::parse_credentials(&body)?;
        if credentials.expiration <= now {
            return Err(Failure::Malformed {
                what: "AssumeRoleWithWebIdentity: the credentials' Expiration has already passed",
            });
        }
        Ok(credentials)
    }

    /// `GetAuthorizationToken` signed with the session's credentials: the password and the
    /// token's `expiresAt`.
    async fn authorization_token(
        &self,
        credentials: &StsCredentials,
        now: SystemTime,
    ) -> Result<(SecretString, SystemTime), Failure> {
        let body = b"{}".to_vec();
        let target = self.ecr.request_target("/");
        let signed = sign::signed_headers(
            credentials,
            &self.region,
            self.ecr.authority(),
            &target,
            &body,
            now,
        )?;
        let mut request = OutgoingRequest::new(Method::POST, "/")
            .with_body(wire::ECR_CONTENT_TYPE, body)
            .with_header(
                HeaderName::from_static("x-amz-target"),
                HeaderValue::from_static(wire::ECR_TARGET),
            );
        for (name, value) in signed {
            request = request.with_header(name, value);
        }
        let response = self.ecr.send_request(request).await?;
        if !response.status.is_success() {
            return Err(ecr_failure(&self.ecr, &response, credentials));
        }
        let body = Zeroizing::new(response.body);
        let answer: wire::AuthorizationAnswer = parse_json(
            &body,
            "GetAuthorizationToken: not a JSON object with authorizationData",
        )?;
        let Some(data) = answer.authorization_data.into_iter().next() else {
            return Err(Failure::Malformed {
                what: "GetAuthorizationToken: authorizationData is empty",
            });
        };
        let token = Zeroizing::new(data.authorization_token);
        let password = decode_login(&token)?;
        let malformed_expiry = Failure::Malformed {
            what: "GetAuthorizationToken: expiresAt is in the past or more than 13 hours away",
        };
        let expires_at = wire::epoch_seconds(data.expires_at).ok_or(malformed_expiry.clone())?;
        let latest = now.checked_add(MAX_TOKEN_LIFETIME).unwrap_or(now);
        if expires_at <= now || expires_at > latest {
            return Err(malformed_expiry);
        }
        if let Some(endpoint) = &data.proxy_endpoint {
            tracing::debug!(registry = %self.api.registry, proxy_endpoint = %endpoint, "ecr proxy endpoint");
        }
        Ok((password, expires_at))
    }
}

impl fmt::Debug for EcrBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrBackend")
            .field("registry", &self.api.registry)
            .field("issuer", &self.issuer.issuer())
            .field("role_arn", &self.role_arn)
            .field("region", &self.region)
            .field("audience", &self.audience)
            .field("sts", &self.api.client)
            .field("ecr", &self.ecr)
            .finish_non_exhaustive()
    }
}

crate::backend::delegate_backend!(EcrBackend, revocable = false);

/// `(partition, account)` of `arn:<partition>:iam::<12 digits>:role/<path/name>`.
fn parse_role_arn(arn: &str) -> Option<(&str, &str)> {
    if !(20..=2048).contains(&arn.len()) {
        return None;
    }
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let role = resource.strip_prefix("role/")?;
    let partition_ok = !partition.is_empty()
        && partition
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-');
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let role_ok = !role.is_empty()
        && !role.starts_with('/')
        && !role.ends_with('/')
        && role.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        });
    (partition_ok && account_ok && role_ok).then_some((partition, account))
}

/// Parses [`EcrConfig::session_tags`].
fn parse_tag_pattern(text: &str) -> Result<TagPattern, &'static str> {
    let (pattern, kept) = if text.starts_with('/') {
        // Checked in a placeholder trust domain; matched later in the workload's own.
        let pattern = PathPattern::parse(&format!("spiffe://trust-domain.invalid{text}"))
            .map_err(|_| "not a SPIFFE ID path pattern (segments, *, ** last, {capture})")?;
        (pattern, TagPattern::Path(text.to_owned()))
    } else {
        let pattern = PathPattern::parse(text)
            .map_err(|_| "not a SPIFFE ID pattern (spiffe://td/... or /path with {capture})")?;
        (pattern.clone(), TagPattern::Whole(pattern))
    };
    let names = pattern.capture_names().len();
    if names == 0 {
        return Err("the pattern has no {capture}: it would make no session tag");
    }
    if names > MAX_SESSION_TAGS {
        return Err("more than 50 captures (STS takes at most 50 session tags)");
    }
    Ok(kept)
}

/// The [`TAGS_CLAIM`] object for `subject`: each capture as a principal tag.
fn session_tags(pattern: &TagPattern, subject: &str) -> Result<Map<String, Value>, Failure> {
    let id = SpiffeId::parse(subject)
        .map_err(|_| grant_refused("the workload's SPIFFE ID does not parse: no session tags"))?;
    let owned;
    let pattern = match pattern {
        TagPattern::Whole(pattern) => pattern,
        TagPattern::Path(path) => {
            owned = PathPattern::parse(&format!("spiffe://{}{path}", id.trust_domain().as_str()))
                .map_err(|_| {
                grant_refused(
                    "the session tag pattern does not apply in the workload's trust domain",
                )
            })?;
            &owned
        }
    };
    let captures = pattern.matches(&id).ok_or_else(|| {
        grant_refused(
            "the workload's SPIFFE ID does not match the session_tags pattern, so its session tags cannot be made",
        )
    })?;
    let mut principal = Map::new();
    for (name, value) in captures.iter() {
        if value.chars().count() > MAX_TAG_VALUE_CHARS {
            return Err(grant_refused(
                "a session tag value (a SPIFFE ID segment) is longer than STS's 256 characters",
            ));
        }
        principal.insert(name.to_owned(), Value::from(vec![Value::from(value)]));
    }
    let mut claim = Map::new();
    claim.insert("principal_tags".to_owned(), Value::Object(principal));
    claim.insert("transitive_tag_keys".to_owned(), Value::Array(Vec::new()));
    Ok(claim)
}

/// A grant the backend cannot serve under STS's rules.
fn grant_refused(rule: &'static str) -> Failure {
    Failure::GrantRefused { rule }
}

/// The password of a base64 `AWS:<password>` authorization token.
fn decode_login(token: &str) -> Result<SecretString, Failure> {
    let malformed = Failure::Malformed {
        what: "GetAuthorizationToken: authorizationToken is not base64 of AWS:<password>",
    };
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .map_err(|_| malformed.clone())?,
    );
    if decoded.len() > MAX_ECR_PASSWORD_BYTES + ECR_USERNAME.len() + 1 {
        return Err(malformed);
    }
    let text = std::str::from_utf8(&decoded).map_err(|_| malformed.clone())?;
    let Some((user, password)) = text.split_once(':') else {
        return Err(malformed);
    };
    if user != ECR_USERNAME
        || password.is_empty()
        || !password.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(malformed);
    }
    Ok(seal_string(Zeroizing::new(password.to_owned())))
}

/// Why STS refused, with its `Code: Message` (the JWT scrubbed, printable, capped).
fn sts_failure(client: &ApiClient, response: &ApiResponse, jwt: &SecretString) -> Failure {
    let parsed = wire::parse_sts_error(&response.body);
    let text = match &parsed {
        Some(error) if error.message.is_empty() => error.code.clone(),
        Some(error) => format!("{}: {}", error.code, error.message),
        None => String::from_utf8_lossy(&response.body).into_owned(),
    };
    // Scrubbed before the cut, so no prefix of the JWT survives a cut through it.
    let message = sanitize_vendor_message(&client.scrub_also(&text, &[jwt]));
    let code = parsed.as_ref().map_or("", |e| e.code.as_str());
    if JWT_ERROR_CODES.contains(&code) {
        return Failure::JwtRefused { message };
    }
    if code == "Throttling" {
        return Failure::RateLimited {
            retry_after: response.retry_after(),
        };
    }
    by_status(response, message, true)
}

/// Why ECR refused, with its `__type: message` (the session's secrets scrubbed).
fn ecr_failure(
    client: &ApiClient,
    response: &ApiResponse,
    credentials: &StsCredentials,
) -> Failure {
    let parsed: Option<wire::EcrErrorBody> = serde_json::from_slice(&response.body).ok();
    let text = match &parsed {
        Some(body) if body.error_type.is_some() || body.message.is_some() => body.text(),
        _ => String::from_utf8_lossy(&response.body).into_owned(),
    };
    let message = sanitize_vendor_message(&client.scrub_also(
        &text,
        &[&credentials.session_token, &credentials.secret_access_key],
    ));
    let kind = parsed
        .as_ref()
        .and_then(|b| b.error_type.as_deref())
        .map(|t| t.rsplit('#').next().unwrap_or(t));
    match kind {
        Some("ThrottlingException") => Failure::RateLimited {
            retry_after: response.retry_after(),
        },
        // Refusals of the session itself, whatever status a proxy or region words them with.
        Some(
            "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "IncompleteSignature",
        ) if response.status.is_client_error() => Failure::Forbidden { message },
        _ => by_status(response, message, false),
    }
}

/// The failure a status stands for, with `message`. At STS (`jwt_step`) a 401 is about the
/// broker's JWT: the broker has no AWS credential of its own.
fn by_status(response: &ApiResponse, message: String, jwt_step: bool) -> Failure {
    match response.status.as_u16() {
        401 if jwt_step => Failure::JwtRefused { message },
        // At ECR the refused credential is the STS session's, not a broker secret: keep the
        // vendor's reason rather than "the broker's credential was refused".
        401 => Failure::Rejected {
            status: 401,
            message,
        },
        403 => Failure::Forbidden { message },
        429 => Failure::RateLimited {
            retry_after: response.retry_after(),
        },
        status @ 500..=599 => Failure::ServerError { status },
        status => Failure::Rejected { status, message },
    }
}

/// STS's error text for the shared plumbing: `Code: Message`, scrubbed, printable, capped.
fn sts_vendor_message(client: &ApiClient, body: &[u8]) -> String {
    let text = match wire::parse_sts_error(body) {
        Some(error) => format!("{}: {}", error.code, error.message),
        None => String::from_utf8_lossy(body).into_owned(),
    };
    sanitize_vendor_message(&client.scrub(&text))
}

/// A setting that breaks `rule`, with its value cut to 256 characters.
fn invalid_setting(setting: &'static str, rule: &'static str, value: &str) -> ConfigProblem {
    ConfigProblem::InvalidSetting {
        setting,
        value: value.chars().take(256).collect(),
        rule,
    }
}

#[cfg(test)]
mod tests;
