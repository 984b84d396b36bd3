//! Quay 3.13+: short-lived robot tokens through robot federation, with the broker as the
//! OIDC issuer the robot trusts.
//!
//! For a grant of `repository:team-a/app:pull` the backend signs its own JWT
//! ([`FederationIssuer::mint`]: `iss` the broker's issuer URL, `sub` from
//! [`QuayConfig::subject_template`], `aud` [`QuayConfig::audience`]) and exchanges it at
//! `GET /oauth2/federation/robot/token` with Basic `team-a+<pull robot>:<JWT>`. Quay finds the
//! robot's federation entries whose issuer is the JWT's `iss`, verifies the JWT through that
//! issuer's OIDC discovery and JWKS (fetched anew for each exchange), checks `exp` (and `aud`
//! when the entry lists audiences), requires `sub` to equal an entry's subject exactly, and
//! answers `{"token": ...}`: a robot token valid for [`ROBOT_TOKEN_LIFETIME`], the docker
//! password for user `team-a+<robot>`.
//!
//! What the credential reaches is what the operator gave the robot in Quay (repository read
//! or write); the broker's policy decides whether a workload gets it at all. Quay cannot end
//! one robot token early: revoking (through [`crate::Backend::revoke`]) does nothing, and
//! the credential's `expires_at` is the earlier of the policy's revocation time and the
//! token's own expiry (`registry_expires_at` the token's own). Removing the robot's federation entry stops new
//! exchanges only: Quay checks an issued token's signature, `sub` and `aud`, not the entry.
//! Deleting the robot ends its tokens (re-creating one of the same name revives the unexpired
//! ones).
//!
//! Nothing is made in Quay that could outlive the broker's knowledge of it, so there is
//! nothing to sweep. Operator setup per organization: two robots (pull with read, push with
//! write on the repositories the policy grants), each with the federation entry
//! `{"issuer": <the broker's issuer URL>, "subject": <the rendered template>}`
//! (`POST /api/v1/organization/<org>/robots/<short>/federation`).
//!
//! Written from quay/quay at ffba0c70 (2026-08-21): `endpoints/oauth/robot_identity_federation.py`,
//! `util/security/federated_robot_auth.py`, `oauth/oidc.py`, `endpoints/decorated.py`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::Method;
use svid_broker_identity::secret::{ExposeSecret as _, SecretString, seal_string};
use svid_broker_token::federation::{FederatedClaims, FederationIssuer};
use zeroize::Zeroizing;

use crate::api::{ApiShape, RegistryApi, config_error, limits_of, sign_failure};
use crate::credential::{BackendCredential, BackendGrant, CredentialHandle};
use crate::error::{
    BackendError, BackendKind, ConfigError, ConfigProblem, Failure, Step, sanitize_vendor_message,
};
use crate::figures::ApiMeter;
use crate::http::{
    ApiClient, ApiResponse, Auth, ClientSettings, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_REQUEST_DEADLINE,
};

mod grant;
mod wire;

use grant::{RobotGrant, map_grant, valid_robot_name};
use svid_broker_policy::subject::{DEFAULT_SUBJECT_TEMPLATE, Placeholders, SubjectTemplate};

/// How long a robot token Quay hands out lives (`TMP_ROBOT_TOKEN_VALIDITY_LIFETIME_S`,
/// `data/model/user.py`): fixed by Quay, not asked for.
pub const ROBOT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// The exchange endpoint, under the base URL.
pub const FEDERATION_TOKEN_PATH: &str = "/oauth2/federation/robot/token";
/// Longest robot token accepted, in bytes. Quay's is a JWT of about 1 KiB signed by its
/// instance key; anything far larger is not one.
pub const MAX_ROBOT_TOKEN_LEN: usize = 16 * 1024;

/// Quay's API in the shared plumbing.
const API_SHAPE: ApiShape = ApiShape {
    kind: BackendKind::Quay,
    vendor_message,
    missing_project_text: None,
};

/// How to reach one Quay, which robots to ask for, and what the broker's JWT says.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QuayConfig {
    /// The registry's name in the policy (labels errors and figures).
    pub registry: String,
    /// Quay's base URL (`https://quay.example.com`).
    pub url: String,
    /// The broker's OIDC issuer: signs the JWT; the robots' federation entries name its URL.
    /// Quay fetches its discovery document and JWKS, so they must be reachable from Quay.
    pub issuer: Arc<FederationIssuer>,
    /// The short name of the robot asked for when a grant only pulls (`<org>+<pull_robot>`,
    /// in each organization the policy grants): the operator gives it read on the repositories.
    /// Quay's rule: runs of `[a-z0-9]` joined by single `.`, `_` or `-`, 2 to 255 characters.
    pub pull_robot: String,
    /// The short name of the robot asked for when a grant pushes (`<org>+<push_robot>`): write.
    /// May equal [`Self::pull_robot`].
    pub push_robot: String,
    /// The JWT's `aud`, one string. Quay checks it only when the robot's federation entry
    /// lists audiences. Default: [`Self::url`].
    pub audience: String,
    /// The JWT's `sub`, which Quay compares with the entry's subject exactly. Placeholders:
    /// `{spiffe_id}` (the workload), `{project}` (the organization), `{access}` (`pull` or
    /// `push`); any other `{...}` is refused when the backend is built. Default
    /// `{spiffe_id}`.
    pub subject_template: String,
    /// PEM CA certificates to trust instead of the public web roots.
    pub ca_file: Option<PathBuf>,
    /// The deadline of one exchange (connect, TLS and the whole answer; Quay fetches the
    /// issuer's discovery document and JWKS within it).
    pub request_deadline: Duration,
    /// The cap on exchanges in flight to this Quay.
    pub max_in_flight: usize,
    /// The cap on one answer's body, in bytes.
    pub max_response_bytes: usize,
}

impl QuayConfig {
    /// A configuration whose audience is `url`, whose subject is the workload's SPIFFE ID,
    /// with public web roots, a 10 s deadline, 4 requests in flight and a 1 MiB answer cap.
    pub fn new(
        registry: impl Into<String>,
        url: impl Into<String>,
        issuer: Arc<FederationIssuer>,
        pull_robot: impl Into<String>,
        push_robot: impl Into<String>,
    ) -> Self {
        let url = url.into();
        Self {
            registry: registry.into(),
            audience: url.clone(),
            url,
            issuer,
            pull_robot: pull_robot.into(),
            push_robot: push_robot.into(),
            subject_template: DEFAULT_SUBJECT_TEMPLATE.to_owned(),
            ca_file: None,
            request_deadline: DEFAULT_REQUEST_DEADLINE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// One Quay, spoken to through its robot federation endpoint.
pub struct QuayBackend {
    api: RegistryApi,
    issuer: Arc<FederationIssuer>,
    pull_robot: String,
    push_robot: String,
    audience: String,
    subject: SubjectTemplate,
}

impl QuayBackend {
    /// Checks the configuration and builds the API client (reading the CA file now).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the registry: a bad URL, plain http to a host that is not a
    /// loopback address, an unusable CA file, a zero limit, a robot short name outside Quay's
    /// rule, an empty audience or one with a control character, or a subject template that
    /// does not parse.
    pub fn new(config: QuayConfig) -> Result<Self, ConfigError> {
        let fail = config_error(&config.registry, BackendKind::Quay);
        for (setting, robot) in [
            ("pull_robot", &config.pull_robot),
            ("push_robot", &config.push_robot),
        ] {
            if !valid_robot_name(robot) {
                return Err(fail(invalid_setting(
                    setting,
                    robot,
                    "must be runs of [a-z0-9] joined by single '.', '_' or '-', 2 to 255 characters (Quay's robot name rule)",
                )));
            }
        }
        if config.audience.is_empty() || config.audience.chars().any(char::is_control) {
            return Err(fail(invalid_setting(
                "audience",
                &config.audience,
                "must be 1 or more characters without a control character",
            )));
        }
        let subject = SubjectTemplate::parse(&config.subject_template, Placeholders::WithProject)
            .map_err(|rule| {
            fail(invalid_setting(
                "subject_template",
                &config.subject_template,
                rule,
            ))
        })?;
        let settings = ClientSettings::with_auth(config.url.clone(), Auth::None);
        let api = RegistryApi::new(
            config.registry.clone(),
            API_SHAPE,
            settings,
            limits_of!(config),
        )
        .map_err(&fail)?;
        Ok(Self {
            api,
            issuer: config.issuer,
            pull_robot: config.pull_robot,
            push_robot: config.push_robot,
            audience: config.audience,
            subject,
        })
    }

    /// Signs the broker's JWT for `grant` and exchanges it for a robot token of
    /// `<org>+<pull or push robot>`. The credential's user name is the robot's full name, its
    /// password the token, and `expires_at` the earlier of the grant's `revoke_at` and
    /// `now` + [`ROBOT_TOKEN_LIFETIME`].
    ///
    /// # Errors
    /// At [`Step::MapGrant`] when the grant is not `pull`/`push` on repositories of one
    /// organization (or its time has passed); at [`Step::SignFederatedToken`] when the JWT
    /// cannot be signed (a rendered subject over 1024 bytes); at [`Step::ExchangeRobotToken`]
    /// when Quay refuses (400 with Quay's reason: unknown robot, no federation, issuer not
    /// configured, invalid token, subject mismatch; 401 a header Quay cannot read) or fails
    /// (500 also when Quay cannot fetch the issuer's keys or find the JWT's `kid` there).
    pub async fn issue(
        &self,
        grant: &BackendGrant,
        now: SystemTime,
    ) -> Result<BackendCredential, BackendError> {
        let mapped = self.map(grant)?;
        self.api.ensure_unexpired(grant, now)?;
        let robot = mapped.robot.clone();
        let subject = self
            .subject
            .render(&grant.subject, &mapped.grant.org, mapped.grant.access());
        let claims = FederatedClaims::new(subject, &self.audience);
        let minted = crate::api::mint_federated(&self.issuer, claims, now)
            .await
            .map_err(|error| {
                self.api.error(
                    Step::SignFederatedToken,
                    sign_failure(BackendKind::Quay, &error),
                )
            })?;
        let step = Step::ExchangeRobotToken {
            robot: robot.clone(),
        };
        let result = self.exchange(&robot, &minted.token).await;
        let token = self.api.finish(&step, result)?;
        tracing::info!(
            registry = %self.api.registry,
            robot = %robot,
            subject = %grant.subject,
            jti = %minted.jti,
            "quay robot token exchanged"
        );
        let token_end = now + ROBOT_TOKEN_LIFETIME;
        Ok(BackendCredential::new(
            robot.clone(),
            token,
            format!("robot {robot} (federated jwt {})", minted.jti),
            grant.revoke_at.min(token_end),
            CredentialHandle::new(0, robot, mapped.grant.org),
        )
        .valid_at_registry_until(token_end))
    }

    /// This backend's API request counts by step and outcome since it was made (for `/metrics`).
    pub fn meter(&self) -> &ApiMeter {
        &self.api.meter
    }

    /// The robot a grant gets (`<org>+<short>`, the reuse key) and its organization.
    fn map(&self, grant: &BackendGrant) -> Result<QuayGrant, BackendError> {
        let grant =
            map_grant(&grant.scopes).map_err(|failure| self.api.error(Step::MapGrant, failure))?;
        let robot = grant.robot(&self.pull_robot, &self.push_robot);
        Ok(QuayGrant { grant, robot })
    }

    /// `GET /oauth2/federation/robot/token` with Basic `robot:jwt`, then the token read from
    /// the answer.
    async fn exchange(&self, robot: &str, jwt: &SecretString) -> Result<SecretString, Failure> {
        let auth = Auth::Basic {
            username: robot.to_owned(),
            password: jwt.clone(),
        };
        let mut response = self
            .api
            .client
            .send_authorized(Method::GET, FEDERATION_TOKEN_PATH, None, &auth)
            .await?;
        if !response.status.is_success() {
            // A proxy or a verbose Quay may echo the JWT or the whole header: scrub both
            // before the shared code reads (and caps) the text.
            let pair = Zeroizing::new(format!("{robot}:{}", jwt.expose_secret()));
            let encoded = seal_string(Zeroizing::new(
                base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()),
            ));
            let text = String::from_utf8_lossy(&response.body).into_owned();
            response.body = self
                .api
                .client
                .scrub_also(&text, &[jwt, &encoded])
                .into_bytes();
            // The broker has no credential of its own here: a 401 is about the Basic pair
            // carrying its JWT, and Quay's reason is what the operator needs.
            if let Err(failure) = self.api.expect_success(&response) {
                return Err(match failure {
                    Failure::Unauthorized => Failure::JwtRefused {
                        message: vendor_message(&self.api.client, &response.body),
                    },
                    other => other,
                });
            }
        }
        read_token(response)
    }
}

/// A mapped grant and the robot's full name.
struct QuayGrant {
    grant: RobotGrant,
    robot: String,
}

impl QuayGrant {
    /// What makes two grants the same credential: the robot's full name.
    fn reuse_key(&self) -> String {
        self.robot.clone()
    }
}

impl fmt::Debug for QuayBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuayBackend")
            .field("registry", &self.api.registry)
            .field("issuer", &self.issuer)
            .field("pull_robot", &self.pull_robot)
            .field("push_robot", &self.push_robot)
            .field("audience", &self.audience)
            .field("client", &self.api.client)
            .finish_non_exhaustive()
    }
}

crate::backend::delegate_backend!(QuayBackend, revocable = false);

/// The configuration problem of `setting` (holding `value`) breaking `rule`.
fn invalid_setting(setting: &'static str, value: &str, rule: &'static str) -> ConfigProblem {
    ConfigProblem::InvalidSetting {
        setting,
        value: value.chars().take(256).collect(),
        rule,
    }
}

/// Reads `{"token": ...}`, wiping the body (it holds the token) when done.
fn read_token(response: ApiResponse) -> Result<SecretString, Failure> {
    let body = Zeroizing::new(response.body);
    let answer: wire::RobotToken =
        serde_json::from_slice(&body).map_err(|_| Failure::Malformed {
            what: "robot token: not a JSON object with a token string",
        })?;
    let token = Zeroizing::new(answer.token);
    // The token becomes a Basic password in a docker config: visible ASCII only.
    let usable = !token.is_empty()
        && token.len() <= MAX_ROBOT_TOKEN_LEN
        && token.bytes().all(|b| b.is_ascii_graphic());
    if !usable {
        return Err(Failure::Malformed {
            what: "robot token: empty, longer than 16 KiB or not visible ASCII",
        });
    }
    Ok(seal_string(token))
}

/// Quay's error text: `error` (the endpoint's 401s), `message` (the data-model handler's
/// 400s), `error_message` or `detail` (the API's), else the body's text (a proxy's page, the
/// HTML of an unhandled 500); scrubbed, made printable and capped.
fn vendor_message(client: &ApiClient, body: &[u8]) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| {
            ["error", "message", "error_message", "detail"]
                .iter()
                .find_map(|key| value.get(key)?.as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    sanitize_vendor_message(&client.scrub(&text))
}

#[cfg(test)]
mod tests;
