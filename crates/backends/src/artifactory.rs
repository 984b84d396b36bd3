//! JFrog Artifactory: short-lived access tokens through JFrog Access's OIDC token exchange,
//! with the broker as the OIDC provider Artifactory trusts.
//!
//! For a grant the backend signs its own JWT ([`FederationIssuer::mint`]): `iss` the
//! broker's issuer URL, `sub` from [`ArtifactoryConfig::subject_template`], `aud`
//! [`ArtifactoryConfig::audience`], and the claim [`ACCESS_CLAIM`] = `pull` or `push`. It
//! posts that JWT to `POST /access/api/v1/oidc/token` naming the operator's OIDC integration
//! ([`ArtifactoryConfig::provider_name`]). Artifactory fetches the broker's discovery document
//! and JWKS, verifies the JWT (issuer, signature, lifetime, and the audience when the
//! integration names one), then takes the first identity mapping (by priority) whose claims
//! all equal the JWT's; the mapping's token spec (scope, `expires_in`, username) shapes the
//! access token it answers with. The workload logs in to Docker as that username with the
//! access token as password.
//!
//! The operator makes two identity mappings: `{"svid_broker_access": "pull"}` with a read
//! scope and `{"svid_broker_access": "push"}` with a deploy scope (other claims, such as
//! `sub`, may narrow them further). Granularity is what the mapping's scope reaches: the
//! broker cannot narrow below it.
//!
//! **Revocation.** The broker holds no Artifactory credential of its own, and Access does not
//! store tokens shorter than its persistency threshold (10,800 s by default), so they cannot
//! be revoked one by one. Revoking (through [`crate::Backend::revoke`]) is therefore a no-op
//! and the backend says it is not revocable ([`Backend::revocable`](crate::Backend::revocable)): the
//! credential's `expires_at` is the earlier of the grant's revocation time and the token's own
//! `expires_in`, and the token lives to its own expiry. Keep the mappings' `expires_in` at or
//! below the policy's lifetime. Nothing is left to sweep.
//!
//! Facts from JFrog's REST API docs ("OIDC Token Exchange", since Artifactory 7.73.1 cloud,
//! 7.77.3 self-hosted), jfrog/jfrog-credentials-provider (`internal/handlers/jfrog.go`: the
//! request and answer fields) and the Pulumi/Terraform docs of scoped tokens (the persistency
//! threshold).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::Method;
use svid_broker_identity::secret::{SecretString, seal_string};
use svid_broker_token::federation::{FederatedClaims, FederationIssuer, MAX_AUDIENCE_LEN};
use zeroize::Zeroizing;

use crate::api::{
    ApiShape, RegistryApi, config_error, expect_success, limits_of, no_message, parse_json,
    sign_failure,
};
use crate::credential::{BackendCredential, BackendGrant, CredentialHandle};
use crate::error::{
    BackendError, BackendKind, ConfigError, ConfigProblem, Failure, Step, sanitize_vendor_message,
};
use crate::figures::ApiMeter;
use crate::http::{
    ApiClient, Auth, ClientSettings, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_REQUEST_DEADLINE,
};

mod wire;

use crate::grant::{Access, pull_or_push as map_grant};
use svid_broker_policy::subject::{Placeholders, SubjectTemplate};

/// The token exchange endpoint, under the base URL.
pub const OIDC_TOKEN_PATH: &str = "/access/api/v1/oidc/token";
/// The claim every broker JWT carries, `pull` or `push`: what the identity mappings match on,
/// so the operator maps pull and push to two token specs.
pub const ACCESS_CLAIM: &str = "svid_broker_access";
pub use svid_broker_policy::subject::DEFAULT_SUBJECT_TEMPLATE;
/// Longest access token accepted, in bytes (Access tokens are JWTs of about 1 KiB; a
/// reference token is shorter).
pub const MAX_ACCESS_TOKEN_BYTES: usize = 16 * 1024;
/// Longest username accepted, in characters.
pub const MAX_USERNAME_CHARS: usize = 256;
/// Largest `expires_in` accepted, in seconds (one year): a larger one is not a short-lived
/// token, and is taken as a malformed answer.
pub const MAX_EXPIRES_IN_SECS: u64 = 365 * 86_400;
/// Access's default persistency threshold: tokens with a shorter `expires_in` are not stored,
/// so they cannot be revoked one by one.
pub const PERSISTENCY_THRESHOLD_SECS: u64 = 10_800;
/// How much longer than the grant an access token may live and still be handed out: the
/// rounding of a whole-second `expires_in` and the clock difference between the broker and
/// Artifactory.
pub const OUTLIVE_SLACK: Duration = Duration::from_secs(60);
/// Longest provider name accepted, in characters.
pub const MAX_PROVIDER_NAME_CHARS: usize = 255;

/// Artifactory's API in the shared plumbing.
const API_SHAPE: ApiShape = ApiShape {
    kind: BackendKind::Artifactory,
    vendor_message,
    missing_project_text: None,
};

/// How to reach one Artifactory and which of its OIDC integrations trusts the broker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ArtifactoryConfig {
    /// The registry's name in the policy (labels errors and figures).
    pub registry: String,
    /// The JFrog Platform's base URL (`https://acme.jfrog.io`); the exchange is at
    /// `{url}/access/api/v1/oidc/token`.
    pub url: String,
    /// The broker as OIDC issuer: it signs the JWT, and serves the discovery document and JWKS
    /// Artifactory fetches (the OIDC integration's provider URL is its issuer URL).
    pub issuer: Arc<FederationIssuer>,
    /// The OIDC integration's name in Artifactory (`provider_name` of the exchange).
    pub provider_name: String,
    /// The JWT's `aud`, also sent as the request's informational `audience`: what the
    /// integration's audience setting must equal. Defaults to [`Self::url`].
    pub audience: String,
    /// The JWT's `sub`: `{spiffe_id}` (the workload) and `{access}` (`pull` or `push`) are
    /// replaced, every other character is kept; any other `{...}` is refused. Defaults to
    /// [`DEFAULT_SUBJECT_TEMPLATE`].
    pub subject_template: String,
    /// PEM CA certificates to trust instead of the public web roots.
    pub ca_file: Option<PathBuf>,
    /// The deadline of one API request (connect, TLS and the whole answer).
    pub request_deadline: Duration,
    /// The cap on API requests in flight to this Artifactory.
    pub max_in_flight: usize,
    /// The cap on one answer's body, in bytes.
    pub max_response_bytes: usize,
}

impl ArtifactoryConfig {
    /// A configuration with the audience set to `url`, the subject `{spiffe_id}`, public web
    /// roots, a 10 s deadline, 4 requests in flight and a 1 MiB answer cap.
    pub fn new(
        registry: impl Into<String>,
        url: impl Into<String>,
        issuer: Arc<FederationIssuer>,
        provider_name: impl Into<String>,
    ) -> Self {
        let url = url.into();
        Self {
            registry: registry.into(),
            audience: url.clone(),
            url,
            issuer,
            provider_name: provider_name.into(),
            subject_template: DEFAULT_SUBJECT_TEMPLATE.to_owned(),
            ca_file: None,
            request_deadline: DEFAULT_REQUEST_DEADLINE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// One JFrog Platform, spoken to through its OIDC token exchange.
pub struct ArtifactoryBackend {
    api: RegistryApi,
    issuer: Arc<FederationIssuer>,
    provider_name: String,
    audience: String,
    subject: SubjectTemplate,
}

impl ArtifactoryBackend {
    /// Checks the configuration and builds the API client (reading the CA file now).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the registry: a bad URL, plain http to a host that is not a
    /// loopback address, an unusable CA file, a zero limit, or
    /// ([`ConfigProblem::InvalidSetting`]) an empty or non-printable provider name or
    /// audience, or a subject template that is empty or has an unknown placeholder.
    pub fn new(config: ArtifactoryConfig) -> Result<Self, ConfigError> {
        let fail = config_error(&config.registry, BackendKind::Artifactory);
        let bad_text = |text: &str, max: usize| {
            text.trim().is_empty()
                || text.chars().count() > max
                || text.chars().any(char::is_control)
        };
        if bad_text(&config.provider_name, MAX_PROVIDER_NAME_CHARS) {
            return Err(fail(invalid_setting(
                "provider_name",
                "1 to 255 printable characters",
                &config.provider_name,
            )));
        }
        if bad_text(&config.audience, MAX_AUDIENCE_LEN) {
            return Err(fail(invalid_setting(
                "audience",
                "1 to 1024 printable characters",
                &config.audience,
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
        let settings = ClientSettings::with_auth(config.url.clone(), Auth::None);
        let api = RegistryApi::new(
            config.registry.clone(),
            API_SHAPE,
            settings,
            limits_of!(config),
        )
        .map_err(fail)?;
        Ok(Self {
            api,
            issuer: config.issuer,
            provider_name: config.provider_name,
            audience: config.audience,
            subject,
        })
    }

    /// Signs the broker's JWT for `grant` and exchanges it for an access token.
    /// `expires_at` of the answer is the earlier of the grant's `revoke_at` and `now` plus the
    /// token's `expires_in`; the username is the one Artifactory named.
    ///
    /// # Errors
    /// At [`Step::MapGrant`] when the grant is not `pull`/`push` on repositories (or its time
    /// has passed); at [`Step::SignFederatedToken`] when the JWT cannot be signed (a subject
    /// over the claim limits); at [`Step::ExchangeOidcToken`] when Artifactory refuses (400
    /// with Access's reason: a JWT that fails validation, such as `Invalid audience`, or an
    /// unknown provider; 401 when no identity mapping matches, its reason logged), fails, or
    /// answers something malformed (an empty or non-printable `access_token`, an `expires_in`
    /// that is not 1 to [`MAX_EXPIRES_IN_SECS`], a username Basic auth cannot carry).
    pub async fn issue(
        &self,
        grant: &BackendGrant,
        now: SystemTime,
    ) -> Result<BackendCredential, BackendError> {
        let AccessKey(access) = self.map(grant)?;
        self.api.ensure_unexpired(grant, now)?;
        let claims = FederatedClaims::new(
            self.subject.render(&grant.subject, "", access.as_str()),
            self.audience.clone(),
        )
        .with_claim(ACCESS_CLAIM, access.as_str());
        let minted = crate::api::mint_federated(&self.issuer, claims, now)
            .await
            .map_err(|error| {
                self.api.error(
                    Step::SignFederatedToken,
                    sign_failure(BackendKind::Artifactory, &error),
                )
            })?;
        let step = Step::ExchangeOidcToken {
            provider: self.provider_name.clone(),
        };
        let result = self.exchange(&minted.token).await;
        let answer = self.api.finish(&step, result)?;
        let lifetime = Duration::from_secs(answer.expires_in);
        let granted = grant.revoke_at.duration_since(now).unwrap_or_default();
        // The token cannot be revoked: one that outlives the grant (beyond the clock slack a
        // second-granular `expires_in` needs) would defeat the policy's lifetime, so it is
        // refused here and never leaves the broker.
        if lifetime > granted + OUTLIVE_SLACK {
            return Err(self.api.error(
                step,
                Failure::OutlivesGrant {
                    lives: lifetime,
                    granted,
                },
            ));
        }
        let token_end = now.checked_add(lifetime).unwrap_or(grant.revoke_at);
        tracing::info!(
            registry = %self.api.registry,
            provider = %self.provider_name,
            username = %answer.username,
            access = access.as_str(),
            jti = %minted.jti,
            subject = %grant.subject,
            "artifactory access token issued"
        );
        Ok(BackendCredential::new(
            answer.username.clone(),
            answer.token,
            format!(
                "access token for {} via provider {} (federated jwt {})",
                answer.username, self.provider_name, minted.jti
            ),
            token_end.min(grant.revoke_at),
            CredentialHandle::new(0, answer.username, ""),
        )
        .valid_at_registry_until(token_end))
    }

    /// This backend's API request counts by step and outcome since it was made (for `/metrics`).
    pub fn meter(&self) -> &ApiMeter {
        &self.api.meter
    }

    fn map(&self, grant: &BackendGrant) -> Result<AccessKey, BackendError> {
        map_grant(&grant.scopes)
            .map(AccessKey)
            .map_err(|failure| self.api.error(Step::MapGrant, failure))
    }

    /// Posts the exchange and reads the answer strictly.
    async fn exchange(&self, jwt: &SecretString) -> Result<Exchanged, Failure> {
        use svid_broker_identity::secret::ExposeSecret as _;
        let body = wire::ExchangeRequest {
            grant_type: wire::GRANT_TYPE,
            subject_token_type: wire::SUBJECT_TOKEN_TYPE,
            subject_token: jwt.expose_secret(),
            provider_name: &self.provider_name,
            provider_type: wire::PROVIDER_TYPE,
            audience: &self.audience,
        };
        // The JWT is a short-lived bearer credential: the encoded body is moved (not copied)
        // into the request; hyper's buffer of it cannot be wiped.
        let json = serde_json::to_vec(&body).map_err(|_| Failure::Internal {
            what: "cannot encode the token exchange",
        })?;
        let response = self
            .api
            .client
            .send(Method::POST, OIDC_TOKEN_PATH, Some(json))
            .await?;
        if let Err(failure) = expect_success(&self.api.client, &response, no_message, None) {
            // The message is read here rather than by the shared plumbing so that the JWT,
            // which a proxy or Access itself may echo, is scrubbed before the text is cut.
            let message = || exchange_message(&self.api.client, &response.body, jwt);
            return Err(match failure {
                // The broker has no credential of its own here: a 401 is about its JWT, and
                // Access's reason (which check failed) is what the operator needs.
                Failure::Unauthorized => Failure::JwtRefused { message: message() },
                Failure::Forbidden { .. } => Failure::Forbidden { message: message() },
                Failure::Rejected { status, .. } => Failure::Rejected {
                    status,
                    message: message(),
                },
                other => other,
            });
        }
        let body = Zeroizing::new(response.body);
        let answer: wire::ExchangeResponse = parse_json(
            &body,
            "token exchange: not a JSON object with access_token, expires_in and username",
        )?;
        let access_token = Zeroizing::new(answer.access_token);
        check_answer(&access_token, answer.expires_in, &answer.username)?;
        if answer
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(Failure::Malformed {
                what: "token exchange: token_type is not Bearer",
            });
        }
        Ok(Exchanged {
            token: seal_string(access_token),
            expires_in: answer.expires_in,
            username: answer.username,
        })
    }
}

/// What makes two grants the same token: the access alone (the token is registry-wide).
struct AccessKey(Access);

impl AccessKey {
    fn reuse_key(&self) -> String {
        self.0.as_str().to_owned()
    }
}

/// An exchange answer that passed [`check_answer`]: a printable token, 1 s to a year of life, a
/// username Basic auth can carry.
struct Exchanged {
    token: SecretString,
    expires_in: u64,
    username: String,
}

/// The answer's rules: a printable, bounded access token (it becomes a Basic password); a
/// positive, bounded `expires_in`; a username Basic auth can carry.
fn check_answer(access_token: &str, expires_in: u64, username: &str) -> Result<(), Failure> {
    if access_token.is_empty()
        || access_token.len() > MAX_ACCESS_TOKEN_BYTES
        || !access_token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Failure::Malformed {
            what: "token exchange: access_token is empty, too long or not printable ASCII",
        });
    }
    if expires_in == 0 || expires_in > MAX_EXPIRES_IN_SECS {
        return Err(Failure::Malformed {
            what: "token exchange: expires_in is not 1 to 31536000 seconds",
        });
    }
    if username.trim().is_empty()
        || username.chars().count() > MAX_USERNAME_CHARS
        || username.contains(':')
        || username.chars().any(char::is_control)
    {
        return Err(Failure::Malformed {
            what: "token exchange: username is empty, too long, or has a ':' or a control character",
        });
    }
    Ok(())
}

impl fmt::Debug for ArtifactoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactoryBackend")
            .field("registry", &self.api.registry)
            .field("issuer", &self.issuer.issuer())
            .field("provider_name", &self.provider_name)
            .field("audience", &self.audience)
            .field("client", &self.api.client)
            .finish_non_exhaustive()
    }
}

crate::backend::delegate_backend!(ArtifactoryBackend, revocable = false);

/// A setting that breaks `rule`, with its value cut to 256 characters.
fn invalid_setting(setting: &'static str, rule: &'static str, value: &str) -> ConfigProblem {
    ConfigProblem::InvalidSetting {
        setting,
        value: value.chars().take(256).collect(),
        rule,
    }
}

/// An exchange error's text with the broker's JWT scrubbed.
fn exchange_message(client: &ApiClient, body: &[u8], jwt: &SecretString) -> String {
    sanitize_vendor_message(&client.scrub_also(&jfrog_text(body), &[jwt]))
}

/// JFrog's error text: the `errors` entries' messages (`code: message`, joined by `; `), or
/// the body's text when it is not that shape (a proxy's page); scrubbed, printable, capped.
fn vendor_message(client: &ApiClient, body: &[u8]) -> String {
    sanitize_vendor_message(&client.scrub(&jfrog_text(body)))
}

fn jfrog_text(body: &[u8]) -> String {
    match serde_json::from_slice::<wire::ErrorBody>(body) {
        Ok(parsed) if !parsed.errors.is_empty() => parsed
            .errors
            .iter()
            .take(4)
            .map(|e| {
                let code = match &e.code {
                    Some(serde_json::Value::String(code)) => Some(code.clone()),
                    _ => None,
                };
                match (code, &e.message) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    (None, Some(message)) => message.clone(),
                    (Some(code), None) => code,
                    (None, None) => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::from_utf8_lossy(body).into_owned(),
    }
}

#[cfg(test)]
mod tests;
