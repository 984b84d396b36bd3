//! A fake AWS (STS `AssumeRoleWithWebIdentity`, ECR `GetAuthorizationToken` and an ECR
//! registry's login check, KMS `Sign`/`GetPublicKey`/`GenerateMac`/`DescribeKey`) on
//! 127.0.0.1 that enforces what AWS enforces, for the broker's `ecr` registry kind and its
//! KMS key store (`svid-broker-keystore`'s `kms`).
//!
//! Three listeners: STS ([`FakeAws::sts_url`]), ECR ([`FakeAws::ecr_url`]), which also
//! serves the registry's `/v2/` ([`FakeAws::registry_url`]), and KMS ([`FakeAws::kms_url`];
//! its rules are in the private `kms` module's documentation: keys from
//! [`FakeAws::create_kms_key`], callers from STS sessions or [`FakeAws::add_iam_user`]). The operator's side is
//! [`FakeAws::add_oidc_provider`] (an IAM OIDC provider: its URL, named without the scheme,
//! and its client ids) and [`FakeAws::add_role`] (the trust policy as a [`RoleTrust`], and
//! the role's permission [`Statement`]s). Rules kept, from the STS API reference
//! (`AssumeRoleWithWebIdentity`; botocore's `sts/2011-06-15/service-2.json` for every
//! constraint and error code/status), the IAM user guide (session tags, OIDC providers), the
//! ECR API reference (`GetAuthorizationToken`, common errors) and the SigV4 documentation:
//!
//! **STS** (`POST /`, a form body of at most 64 KiB, Query API XML answers with
//! `ErrorResponse/Error/{Type,Code,Message}` and `RequestId`):
//! - `Action` must be `AssumeRoleWithWebIdentity` and `Version` `2011-06-15` exactly (400
//!   `InvalidAction`);
//! - `RoleArn` 20 to 2048 characters, `RoleSessionName` 2 to 64 of `[\w+=,.@-]`,
//!   `WebIdentityToken` 4 to 20,000, `DurationSeconds` an integer 900 to 43,200, `Policy` 1 to
//!   2,048 characters of tab, newline, carriage return and `\u0020`-`\u00FF`: otherwise 400
//!   `ValidationError`. A policy that is not a policy document: 400 `MalformedPolicyDocument`;
//! - the JWT: no provider for its `iss` is 400 `InvalidIdentityToken` "No OpenIDConnect
//!   provider found in your account for ..." (nothing fetched); then
//!   [`FederatedJwtVerifier`] (discovery and JWKS over HTTP, a refetch on an unknown `kid`,
//!   RS256): a bad signature or unknown key is 400 `InvalidIdentityToken`; unreachable
//!   discovery is 400 `InvalidIdentityToken` "Couldn't retrieve verification key from your
//!   identity provider" (AWS's wording, from its forums: an inference); `exp` passed is 400
//!   `ExpiredTokenException`; an `aud` that is not a client id is 400 `InvalidIdentityToken`
//!   "Incorrect token audience";
//! - the role missing, its trust's provider, `sub` (`StringEquals` or `StringLike`) or
//!   `aud` condition failing, or session tags without `sts:TagSession`: 403 `AccessDenied`
//!   "Not authorized to perform sts:AssumeRoleWithWebIdentity";
//! - session tags (claim `https://aws.amazon.com/tags`): at most 50; keys 1 to 128, values
//!   at most 256 characters of `[\p{L}\p{Z}\p{N}_.:/=+\-@]`; otherwise 400
//!   `InvalidIdentityToken` (the code is an inference);
//! - `DurationSeconds` above the role's maximum: 400 `ValidationError` "The requested
//!   DurationSeconds exceeds the MaxSessionDuration set for this role.";
//! - the answer: `Credentials/{AccessKeyId (ASIA...), SecretAccessKey, SessionToken,
//!   Expiration}`, `SubjectFromWebIdentityToken`, `AssumedRoleUser`, `Audience`, `Provider`.
//!
//! **ECR** (`POST /`, JSON 1.1 errors `{"__type", "message"}`, statuses of the common errors):
//! - `X-Amz-Target` must be `AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken`
//!   (400 `UnknownOperationException`), `Content-Type` `application/x-amz-json-1.1` (400
//!   `SerializationException`), the body a JSON object;
//! - SigV4, verified independently (the private `sigv4` module, on `aws_lc_rs`): no `Authorization` is 400
//!   `MissingAuthenticationTokenException`; a malformed one 400 `IncompleteSignature`; a scope
//!   other than `<date>/<this region>/ecr/aws4_request`, or `host`/`x-amz-date` unsigned, is
//!   403 `InvalidSignatureException`; `X-Amz-Date` more than 15 minutes from the fake's clock
//!   403 `InvalidSignatureException` "Signature expired: ..."; an access key the fake's STS
//!   did not issue, or an `x-amz-security-token` that is not that session's, 403
//!   `UnrecognizedClientException` "The security token included in the request is
//!   invalid."; the session expired 403 `ExpiredTokenException`; a signature mismatch 403
//!   `InvalidSignatureException`;
//! - the session's effective permission (role ∩ session policy) must allow
//!   `ecr:GetAuthorizationToken` on `*`: else 403 `AccessDeniedException`;
//! - the answer: `authorizationToken` base64 `AWS:<random password>`, `expiresAt` now + 12
//!   hours (seconds, fractional), `proxyEndpoint` `https://<account>.dkr.ecr.<region>.amazonaws.com`.
//!
//! **Registry**: `GET /v2/` with Basic `AWS:<password>` answers 200 while the token lives
//! (12 hours on the fake's clock, whatever the session's end: whether ECR ends it with the
//! session is not documented), else 401; `GET /v2/<repo>/tags/list` answers 200 only when the
//! token's effective permission allows `ecr:BatchGetImage` on
//! `arn:<partition>:ecr:<region>:<account>:repository/<repo>`, else 403 `DENIED`, so a test
//! sees the session policy narrow the credential.
//!
//! The fake's IAM policy evaluation knows `Effect`, `Action`, `Resource` and `*`/`?`
//! wildcards only; a session policy with other elements is refused as malformed.

mod http;
mod kms;
mod rules;
mod sigv4;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::fake::federation::FederatedJwtVerifier;
pub use crate::fake::harbor::{FakeError, Fault};
use crate::fake::server::{Control, FakeServer, lock};
pub use kms::{IamAccessKey, KMS_ACCOUNT, KmsCall, KmsKeyInfo, KmsKeySpec, MAX_KMS_MESSAGE};
use rules::{PolicyStatement, Provider, Role, State};

/// The region the fake is in: SigV4 requests must be signed for it, and ARNs and endpoints
/// it answers name it.
pub const REGION: &str = "us-east-1";
/// Largest request body read; larger ones get 413. The fake's bound.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long an ECR authorization token lives (ECR's documented 12 hours).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How far `X-Amz-Date` may be from the fake's clock (SigV4's 15 minutes).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// A trust policy condition on a JWT claim.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Condition {
    /// `StringEquals`: the claim equals the value exactly.
    StringEquals(String),
    /// `StringLike`: the claim matches the pattern (`*` any run, `?` one character).
    StringLike(String),
}

/// A role's trust policy for one OIDC provider: who may assume it with
/// `AssumeRoleWithWebIdentity`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoleTrust {
    /// The trusted provider's issuer URL (compared without its scheme).
    pub provider: String,
    /// The `<provider>:sub` condition.
    pub sub: Condition,
    /// The `<provider>:aud` condition.
    pub aud: Condition,
    /// Whether the trust policy allows `sts:TagSession` (needed for a JWT with session tags).
    pub allow_tag_session: bool,
    /// The role's maximum session duration (IAM: 1 to 12 hours, default 1 hour).
    pub max_session_duration: Duration,
}

impl RoleTrust {
    /// Trust of `provider`'s tokens whose `sub` and `aud` meet the conditions; no
    /// `sts:TagSession`; a one-hour maximum session.
    pub fn new(provider: impl Into<String>, sub: Condition, aud: Condition) -> Self {
        Self {
            provider: provider.into(),
            sub,
            aud,
            allow_tag_session: false,
            max_session_duration: Duration::from_secs(3600),
        }
    }

    /// The same trust, allowing `sts:TagSession` too.
    #[must_use]
    pub fn with_tag_session(mut self) -> Self {
        self.allow_tag_session = true;
        self
    }
}

/// An `Allow` statement of a role's permission policy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Statement {
    /// Actions (`ecr:BatchGetImage`, `ecr:*`).
    pub actions: Vec<String>,
    /// Resources (`arn:aws:ecr:us-east-1:111122223333:repository/team-a/*`, `*`).
    pub resources: Vec<String>,
}

impl Statement {
    /// Allows `actions` on `resources`.
    pub fn allow(actions: &[&str], resources: &[&str]) -> Self {
        Self {
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            resources: resources.iter().map(|r| (*r).to_owned()).collect(),
        }
    }
}

/// One JWT STS verified (signature, issuer and times good), and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedToken {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `aud`.
    pub audiences: Vec<String>,
    /// The token header's `kid`: the key of the issuer's JWKS that verified it.
    pub kid: String,
    /// The session tags the token asked for (empty without the claim).
    pub session_tags: BTreeMap<String, String>,
    /// The role ARN as the request's `RoleArn` gave it, whether or not such a role exists (see
    /// `outcome`).
    pub role_arn: String,
    /// The role session name as the request's `RoleSessionName` gave it.
    pub role_session_name: String,
    /// `issued`, or the error code STS answered (`AccessDenied`, ...).
    pub outcome: String,
}

/// Which of the fake's APIs a fault or count is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// STS.
    Sts,
    /// ECR's API (not the registry's `/v2/`).
    Ecr,
    /// KMS.
    Kms,
}

/// The fake's own counters.
#[derive(Debug, Default)]
struct Counts {
    sessions: u64,
    tokens: u64,
    registry_checks: u64,
}

/// What the server threads and the handle share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    audit: Mutex<Vec<VerifiedToken>>,
    sts: Control<Counts>,
    ecr: Control<()>,
    kms: Control<()>,
    kms_state: Mutex<kms::KmsState>,
    kms_audit: Mutex<Vec<KmsCall>>,
    verifier: FederatedJwtVerifier,
    /// An `expiresAt` to answer instead of now + 12 h (a moto-like answer), seconds.
    forced_expires_at: Mutex<Option<f64>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Each operation checks before it changes anything: keep serving after a panic.
        lock(&self.state)
    }

    /// The fake's clock (both controls move together), Unix seconds.
    fn now(&self) -> i64 {
        self.sts.now_unix()
    }
}

/// The STS listener's service.
#[derive(Debug)]
struct StsService(Arc<Shared>);

/// The ECR listener's service (API and registry).
#[derive(Debug)]
struct EcrService(Arc<Shared>);

/// The KMS listener's service.
#[derive(Debug)]
struct KmsService(Arc<Shared>);

/// A running fake AWS; dropping it stops both servers and joins their threads.
#[derive(Debug)]
pub struct FakeAws {
    shared: Arc<Shared>,
    sts_server: FakeServer,
    ecr_server: FakeServer,
    kms_server: FakeServer,
}

impl FakeAws {
    /// Runs STS, ECR and KMS on their own threads, plain HTTP on 127.0.0.1 at free ports, with no
    /// provider, role, user or key; returns once all three accept connections.
    ///
    /// # Errors
    /// [`FakeError`] naming what could not be set up.
    pub fn start() -> Result<Self, FakeError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            audit: Mutex::new(Vec::new()),
            sts: Control::default(),
            ecr: Control::default(),
            kms: Control::default(),
            kms_state: Mutex::new(kms::KmsState::default()),
            kms_audit: Mutex::new(Vec::new()),
            verifier: FederatedJwtVerifier::new(),
            forced_expires_at: Mutex::new(None),
        });
        let sts_server =
            FakeServer::start("fake-aws-sts", Arc::new(StsService(Arc::clone(&shared))))
                .map_err(FakeError::from_start)?;
        let ecr_server =
            FakeServer::start("fake-aws-ecr", Arc::new(EcrService(Arc::clone(&shared))))
                .map_err(FakeError::from_start)?;
        let kms_server =
            FakeServer::start("fake-aws-kms", Arc::new(KmsService(Arc::clone(&shared))))
                .map_err(FakeError::from_start)?;
        Ok(Self {
            shared,
            sts_server,
            ecr_server,
            kms_server,
        })
    }

    /// `http://127.0.0.1:PORT` of STS.
    pub fn sts_url(&self) -> String {
        self.sts_server.url()
    }

    /// `http://127.0.0.1:PORT` of ECR's API.
    pub fn ecr_url(&self) -> String {
        self.ecr_server.url()
    }

    /// `http://127.0.0.1:PORT` of the registry (`/v2/`): ECR's listener.
    pub fn registry_url(&self) -> String {
        self.ecr_server.url()
    }

    /// The STS listener's address.
    pub fn sts_addr(&self) -> SocketAddr {
        self.sts_server.addr()
    }

    /// The ECR listener's address.
    pub fn ecr_addr(&self) -> SocketAddr {
        self.ecr_server.addr()
    }

    /// The fake's region, [`REGION`].
    pub fn region(&self) -> &'static str {
        REGION
    }

    /// Adds (or replaces) the IAM OIDC provider of `issuer_url` (named by the URL without
    /// its scheme, as IAM does), accepting JWTs whose `aud` is one of `client_ids`. Past 64
    /// providers a new one is ignored.
    pub fn add_oidc_provider(&self, issuer_url: &str, client_ids: &[&str]) {
        let mut state = self.shared.state();
        let key = rules::without_scheme(issuer_url)
            .trim_end_matches('/')
            .to_owned();
        if state.providers.len() >= rules::MAX_PROVIDERS && !state.providers.contains_key(&key) {
            return;
        }
        state.providers.insert(
            key,
            Provider {
                url: issuer_url.to_owned(),
                client_ids: client_ids.iter().map(|c| (*c).to_owned()).collect(),
            },
        );
    }

    /// Adds (or replaces) the role `role_arn` with its trust policy and permission policy.
    ///
    /// # Errors
    /// [`FakeError::Refused`] 400 when the ARN is not `arn:<partition>:iam::<12 digits>:role/...`
    /// or past 64 roles.
    pub fn add_role(
        &self,
        role_arn: &str,
        trust: RoleTrust,
        permissions: &[Statement],
    ) -> Result<(), FakeError> {
        let refused = |message: &str| FakeError::Refused {
            status: 400,
            code: "ValidationError",
            message: message.to_owned(),
        };
        let (partition, account, name) =
            rules::parse_role_arn(role_arn).ok_or_else(|| refused("not a role ARN"))?;
        let mut state = self.shared.state();
        if state.roles.len() >= rules::MAX_ROLES && !state.roles.contains_key(role_arn) {
            return Err(refused("too many roles (the fake's bound)"));
        }
        state.roles.insert(
            role_arn.to_owned(),
            Role {
                partition,
                account,
                name,
                trust,
                permissions: permissions.iter().map(PolicyStatement::from).collect(),
            },
        );
        Ok(())
    }

    /// Every JWT STS verified, oldest first.
    pub fn audit(&self) -> Vec<VerifiedToken> {
        lock(&self.shared.audit).clone()
    }

    /// Requests to STS, faulted ones included.
    pub fn sts_calls(&self) -> u64 {
        self.shared.sts.stats().api_calls
    }

    /// Requests to ECR's API, faulted ones included (not the registry's `/v2/`).
    pub fn ecr_calls(&self) -> u64 {
        self.shared.ecr.stats().api_calls
    }

    /// Sessions STS issued.
    pub fn sessions_issued(&self) -> u64 {
        self.shared.sts.stats().counts.sessions
    }

    /// Authorization tokens ECR issued.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.sts.stats().counts.tokens
    }

    /// Registry requests with a live token.
    pub fn registry_logins(&self) -> u64 {
        self.shared.sts.stats().counts.registry_checks
    }

    /// The verifier's discovery document fetches.
    pub fn discovery_fetches(&self) -> u64 {
        self.shared.verifier.discovery_fetches()
    }

    /// The verifier's JWKS fetches.
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.verifier.jwks_fetches()
    }

    /// True when `password` is a live ECR token at the fake's clock.
    pub fn token_is_live(&self, password: &str) -> bool {
        self.shared
            .state()
            .live_token(password, self.shared.now())
            .is_some()
    }

    /// Makes the next `count` calls to `endpoint` fail with `fault` (replacing any queued
    /// fault there): [`Fault::Hangup`] closes unanswered; [`Fault::Malformed`] answers 200
    /// with a truncated body; [`Fault::Slow`] waits, then answers; [`Fault::Status`] answers
    /// that status with the service's error body (429 adds `Retry-After: 1`).
    pub fn fail_next(&self, endpoint: Endpoint, fault: Fault, count: u32) {
        match endpoint {
            Endpoint::Sts => self.shared.sts.fail_next(fault, count),
            Endpoint::Ecr => self.shared.ecr.fail_next(fault, count),
            Endpoint::Kms => self.shared.kms.fail_next(fault, count),
        }
    }

    /// Makes ECR answer `expiresAt` = `at` (Unix seconds) instead of now + 12 hours (`None`
    /// to stop): what moto, which answers a 2015 date, looks like.
    pub fn force_expires_at(&self, at: Option<f64>) {
        *lock(&self.shared.forced_expires_at) = at;
    }

    /// Moves the fake's clock (JWT checks, session and token expiry, SigV4 dates) by `by`.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.sts.advance_clock(by);
        self.shared.ecr.advance_clock(by);
        self.shared.kms.advance_clock(by);
    }
}

#[cfg(test)]
mod tests;
