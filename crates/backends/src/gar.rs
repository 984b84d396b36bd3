//! Google Artifact Registry: short-lived OAuth 2.0 access tokens of a service account, reached
//! through workload identity federation with the broker as the OIDC provider Google trusts.
//! No Google key exists anywhere.
//!
//! For a grant the backend signs its own JWT ([`FederationIssuer::mint`]): `iss` the
//! broker's issuer URL, `sub` from [`GarConfig::subject_template`] (`{spiffe_id}` by default),
//! `aud` [`GarConfig::audience`]. Then two calls:
//!
//! 1. **Google STS** `POST {sts_endpoint}/v1/token` with the JSON body `grantType`
//!    `urn:ietf:params:oauth:grant-type:token-exchange`, `audience` the provider's full
//!    resource name, `scope` `https://www.googleapis.com/auth/cloud-platform`,
//!    `requestedTokenType` `urn:ietf:params:oauth:token-type:access_token`, `subjectToken` the
//!    JWT, `subjectTokenType` `urn:ietf:params:oauth:token-type:jwt`. Google fetches the
//!    broker's discovery document and JWKS from the provider's issuer URI, verifies the JWT,
//!    maps `google.subject = assertion.sub`, applies the provider's attribute condition and
//!    answers a federated token `{access_token, issued_token_type, token_type, expires_in}`
//!    ([`Step::ExchangeStsToken`]).
//! 2. **IAM Credentials** `POST {iamcredentials_endpoint}/v1/projects/-/serviceAccounts/
//!    <email>:generateAccessToken` with `Authorization: Bearer <federated token>` and
//!    `{"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "<n>s"}`,
//!    `n` the seconds left in the grant, rounded up, at most 3600 (Google's default maximum).
//!    The principal must hold `roles/iam.workloadIdentityUser` on the service account; the
//!    answer is `{"accessToken", "expireTime"}` ([`Step::GenerateAccessToken`]).
//!
//! The workload logs in to `<location>-docker.pkg.dev` as [`DOCKER_USERNAME`]
//! (`oauth2accesstoken`) with the access token as password.
//!
//! **Granularity.** The token reaches whatever the service account's IAM bindings reach
//! (`roles/artifactregistry.reader` or `writer` on repositories or the project): the whole
//! registry as far as the broker knows. Pull and push grants are kept apart for reuse only;
//! use one backend (one service account) per access level when they must differ.
//!
//! **Lifetime and revocation.** Google lets the broker ask for the exact lifetime, and an
//! access token cannot be revoked by the broker (it holds no credential of its own): revoking
//! is a no-op and the backend is not revocable. The caller is told `expires_at` = the earlier
//! of the grant's `revoke_at` and the token's `expireTime`; the registry-side end is
//! `expireTime`. A token whose `expireTime` is more than [`OUTLIVE_SLACK`] after `revoke_at`
//! is refused ([`Failure::OutlivesGrant`]) and never handed out. Nothing is left to sweep.
//!
//! # Setting Google up
//!
//! ```text
//! gcloud iam workload-identity-pools create svid-broker \
//!     --project=PROJECT_ID --location=global --display-name="svid-broker"
//! gcloud iam workload-identity-pools providers create-oidc svid-broker \
//!     --project=PROJECT_ID --location=global --workload-identity-pool=svid-broker \
//!     --issuer-uri="https://broker.example.org/federation" \
//!     --attribute-mapping="google.subject=assertion.sub" \
//!     [--attribute-condition="assertion.sub.startsWith('spiffe://example.org/ns/team-a/')"] \
//!     [--allowed-audiences="AUDIENCE"]
//! gcloud iam service-accounts add-iam-policy-binding \
//!     puller@PROJECT_ID.iam.gserviceaccount.com \
//!     --role=roles/iam.workloadIdentityUser \
//!     --member="principal://iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/svid-broker/subject/spiffe://example.org/ns/team-a/sa/app"
//! gcloud artifacts repositories add-iam-policy-binding REPOSITORY \
//!     --project=PROJECT_ID --location=LOCATION \
//!     --member="serviceAccount:puller@PROJECT_ID.iam.gserviceaccount.com" \
//!     --role=roles/artifactregistry.reader   # roles/artifactregistry.writer to push
//! ```
//!
//! `--issuer-uri` is the broker's issuer URL (`{public_url}/federation`, HTTPS: Google
//! requires it); Google reads `{issuer-uri}/.well-known/openid-configuration`. Without
//! `--allowed-audiences` the JWT's `aud` must be the provider's full name with or without
//! `https:` ([`GarConfig::audience`]'s default); with it, set [`GarConfig::audience`] to one
//! of them. `google.subject` may be at most 127 bytes, so a longer rendered subject is
//! refused before anything is signed. `principalSet://iam.googleapis.com/projects/
//! PROJECT_NUMBER/locations/global/workloadIdentityPools/svid-broker/*` as `--member` lets
//! every identity of the pool (that passed the attribute condition) impersonate the account.
//!
//! Facts from Google's REST references (STS `v1/TopLevel/token`; IAM Credentials
//! `projects.serviceAccounts.generateAccessToken`: the 1 h default maximum `lifetime`; IAM
//! `WorkloadIdentityPoolProvider`: `attributeMapping`'s 127-byte `google.subject`,
//! `oidc.allowedAudiences`' default, the 4-32 `[a-z0-9-]` ids), the gcloud reference
//! (`providers create-oidc`), and google-github-actions/auth's troubleshooting notes.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, header};
use svid_broker_identity::secret::{ExposeSecret as _, SecretString, seal_string};
use svid_broker_policy::subject::{Placeholders, SubjectTemplate};
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
    DEFAULT_REQUEST_DEADLINE, OutgoingRequest,
};

mod names;
mod wire;

use names::{Access, map_grant, parse_provider, parse_rfc3339, valid_service_account};

pub use svid_broker_policy::subject::DEFAULT_SUBJECT_TEMPLATE;

/// Google STS's public endpoint.
pub const DEFAULT_STS_ENDPOINT: &str = "https://sts.googleapis.com";
/// IAM Credentials' public endpoint.
pub const DEFAULT_IAMCREDENTIALS_ENDPOINT: &str = "https://iamcredentials.googleapis.com";
/// STS's token exchange, under [`GarConfig::sts_endpoint`].
pub const STS_TOKEN_PATH: &str = "/v1/token";
/// The only OAuth scope asked for, of both the federated and the access token.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The Docker username of an OAuth 2.0 access token at Artifact Registry.
pub const DOCKER_USERNAME: &str = "oauth2accesstoken";
/// Google's limit on `google.subject` (mapped from the JWT's `sub`), in bytes.
pub const MAX_GOOGLE_SUBJECT_BYTES: usize = 127;
/// The longest `lifetime` asked of IAM Credentials: Google's default maximum (longer needs
/// the `iam.allowServiceAccountCredentialLifetimeExtension` organization policy).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// How much later than the grant's end an access token's `expireTime` may be and still be
/// handed out: Google rounds and the clocks differ.
pub const OUTLIVE_SLACK: Duration = Duration::from_secs(60);
/// Longest federated or access token accepted, in bytes (Google's are about 1-2 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest `expires_in` of a federated token accepted, in seconds (Google's live 1 h).
pub const MAX_FEDERATED_EXPIRES_IN_SECS: u64 = 12 * 3600;
/// Longest time after now an `expireTime` is read as (12 h, the extended maximum); a later
/// one is malformed.
pub const MAX_EXPIRE_AHEAD: Duration = Duration::from_secs(12 * 3600);

/// Google's APIs in the shared plumbing.
const API_SHAPE: ApiShape = ApiShape {
    kind: BackendKind::Gar,
    vendor_message,
    missing_project_text: None,
};

/// How the broker reaches Google and which provider and service account it goes through.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GarConfig {
    /// The registry's name in the policy (labels errors and figures).
    pub registry: String,
    /// The broker as OIDC issuer: it signs the JWT and serves the discovery document and JWKS
    /// Google fetches (the provider's `--issuer-uri` is its issuer URL).
    pub issuer: Arc<FederationIssuer>,
    /// The workload identity pool provider's full resource name,
    /// `//iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`:
    /// STS's `audience`.
    pub workload_identity_provider: String,
    /// The service account impersonated (`puller@my-project.iam.gserviceaccount.com`).
    pub service_account: String,
    /// Google STS's base URL. Defaults to [`DEFAULT_STS_ENDPOINT`].
    pub sts_endpoint: String,
    /// IAM Credentials' base URL. Defaults to [`DEFAULT_IAMCREDENTIALS_ENDPOINT`].
    pub iamcredentials_endpoint: String,
    /// The JWT's `aud`. Defaults to `https:` + the provider's name, what a provider without
    /// allowed audiences accepts; set it to one of `--allowed-audiences` otherwise.
    pub audience: String,
    /// The JWT's `sub` (Google's `google.subject`, at most 127 bytes): `{spiffe_id}` and
    /// `{access}` (`pull` or `push`) are replaced, every other character is kept; any other
    /// `{...}` is refused. Defaults to [`DEFAULT_SUBJECT_TEMPLATE`].
    pub subject_template: String,
    /// PEM CA certificates to trust instead of the public web roots (both endpoints).
    pub ca_file: Option<PathBuf>,
    /// The deadline of one API request (connect, TLS and the whole answer).
    pub request_deadline: Duration,
    /// The cap on API requests in flight to each endpoint.
    pub max_in_flight: usize,
    /// The cap on one answer's body, in bytes.
    pub max_response_bytes: usize,
}

impl GarConfig {
    /// A configuration with Google's public endpoints, the audience `https:` +
    /// `workload_identity_provider`, the subject `{spiffe_id}`, public web roots, a 10 s
    /// deadline, 4 requests in flight and a 1 MiB answer cap.
    pub fn new(
        registry: impl Into<String>,
        issuer: Arc<FederationIssuer>,
        workload_identity_provider: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Self {
        let workload_identity_provider = workload_identity_provider.into();
        Self {
            registry: registry.into(),
            issuer,
            audience: format!("https:{workload_identity_provider}"),
            workload_identity_provider,
            service_account: service_account.into(),
            sts_endpoint: DEFAULT_STS_ENDPOINT.to_owned(),
            iamcredentials_endpoint: DEFAULT_IAMCREDENTIALS_ENDPOINT.to_owned(),
            subject_template: DEFAULT_SUBJECT_TEMPLATE.to_owned(),
            ca_file: None,
            request_deadline: DEFAULT_REQUEST_DEADLINE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// One Google Artifact Registry service account, reached through one workload identity pool
/// provider.
pub struct GarBackend {
    /// STS's client, and the registry's name, kind and meter for both steps.
    api: RegistryApi,
    iam: ApiClient,
    issuer: Arc<FederationIssuer>,
    provider: String,
    service_account: String,
    audience: String,
    subject: SubjectTemplate,
    generate_path: String,
}

impl GarBackend {
    /// Checks the configuration and builds both API clients (reading the CA file now).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the registry: an endpoint that is not an https URL (or http
    /// to a loopback address), an unusable CA file, a zero limit, or
    /// ([`ConfigProblem::InvalidSetting`]) a `workload_identity_provider` that is not a
    /// provider's full name, a `service_account` that is not a service account's email, an
    /// empty or non-printable audience, or a subject template that is empty or has an
    /// unknown placeholder.
    pub fn new(config: GarConfig) -> Result<Self, ConfigError> {
        let fail = config_error(&config.registry, BackendKind::Gar);
        if parse_provider(&config.workload_identity_provider).is_none() {
            return Err(fail(invalid_setting(
                "workload_identity_provider",
                names::PROVIDER_RULE,
                &config.workload_identity_provider,
            )));
        }
        if !valid_service_account(&config.service_account) {
            return Err(fail(invalid_setting(
                "service_account",
                names::SERVICE_ACCOUNT_RULE,
                &config.service_account,
            )));
        }
        if config.audience.trim().is_empty()
            || config.audience.len() > MAX_AUDIENCE_LEN
            || config.audience.chars().any(char::is_control)
        {
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
        let limits = limits_of!(config);
        let mut iam_settings =
            ClientSettings::with_auth(config.iamcredentials_endpoint.clone(), Auth::None);
        iam_settings.ca_file.clone_from(&limits.ca_file);
        iam_settings.request_deadline = limits.request_deadline;
        iam_settings.max_in_flight = limits.max_in_flight;
        iam_settings.max_response_bytes = limits.max_response_bytes;
        let iam = ApiClient::new(&iam_settings).map_err(&fail)?;
        let settings = ClientSettings::with_auth(config.sts_endpoint.clone(), Auth::None);
        let api = RegistryApi::new(config.registry.clone(), API_SHAPE, settings, limits)
            .map_err(&fail)?;
        // The email's characters are all URL-safe ([a-z0-9.@:-]); `@` is allowed in a path.
        let generate_path = format!(
            "/v1/projects/-/serviceAccounts/{}:generateAccessToken",
            config.service_account
        );
        Ok(Self {
            api,
            iam,
            issuer: config.issuer,
            provider: config.workload_identity_provider,
            service_account: config.service_account,
            audience: config.audience,
            subject,
            generate_path,
        })
    }

    /// Signs the broker's JWT for `grant`, exchanges it at Google STS and impersonates the
    /// service account. The credential's username is [`DOCKER_USERNAME`]; `expires_at` is the
    /// earlier of `grant.revoke_at` and the token's `expireTime`.
    ///
    /// # Errors
    /// At [`Step::MapGrant`] when the grant is not `pull`/`push` on repositories, its time has
    /// passed, or the rendered subject is over [`MAX_GOOGLE_SUBJECT_BYTES`]; at
    /// [`Step::SignFederatedToken`] when the JWT cannot be signed; at
    /// [`Step::ExchangeStsToken`] when STS refuses the JWT ([`Failure::JwtRefused`] for
    /// `invalid_grant`/`unauthorized_client`: audience, issuer, expiry, attribute condition),
    /// refuses the request ([`Failure::Rejected`]: `invalid_target`, an unknown provider),
    /// fails or answers something malformed; at [`Step::GenerateAccessToken`] when IAM
    /// Credentials refuses (403 [`Failure::Forbidden`]: the principal lacks
    /// `roles/iam.workloadIdentityUser`; 404 and 400 [`Failure::Rejected`]), fails, answers
    /// something malformed, or an `expireTime` past the grant ([`Failure::OutlivesGrant`]).
    pub async fn issue(
        &self,
        grant: &BackendGrant,
        now: SystemTime,
    ) -> Result<BackendCredential, BackendError> {
        let key = self.map(grant)?;
        self.api.ensure_unexpired(grant, now)?;
        let subject = self.subject.render(&grant.subject, "", key.access.as_str());
        if subject.len() > MAX_GOOGLE_SUBJECT_BYTES {
            return Err(self.api.error(
                Step::MapGrant,
                Failure::GrantRefused {
                    rule: "the rendered subject is longer than google.subject's 127 bytes \
                           (Google's limit): shorten jwt_subject or the SPIFFE ID",
                },
            ));
        }
        let claims = FederatedClaims::new(subject, self.audience.clone());
        let minted = crate::api::mint_federated(&self.issuer, claims, now)
            .await
            .map_err(|error| {
                self.api.error(
                    Step::SignFederatedToken,
                    sign_failure(BackendKind::Gar, &error),
                )
            })?;
        let sts_step = Step::ExchangeStsToken {
            provider: self.provider.clone(),
        };
        let result = self.exchange(&minted.token).await;
        let federated = self.api.finish(&sts_step, result)?;
        let generate_step = Step::GenerateAccessToken {
            service_account: self.service_account.clone(),
        };
        let granted = grant.revoke_at.duration_since(now).unwrap_or_default();
        let result = self.generate(&federated, granted, now).await;
        let (token, expire_time) = self.api.finish(&generate_step, result)?;
        // The token cannot be revoked: one that outlives the grant (beyond the slack) would
        // defeat the policy's lifetime, so it never leaves the broker.
        let latest = grant.revoke_at.checked_add(OUTLIVE_SLACK);
        if latest.is_some_and(|latest| expire_time > latest) {
            return Err(self.api.error(
                generate_step,
                Failure::OutlivesGrant {
                    lives: expire_time.duration_since(now).unwrap_or_default(),
                    granted,
                },
            ));
        }
        tracing::info!(
            registry = %self.api.registry,
            provider = %self.provider,
            service_account = %self.service_account,
            access = key.access.as_str(),
            jti = %minted.jti,
            subject = %grant.subject,
            "google access token issued"
        );
        Ok(BackendCredential::new(
            DOCKER_USERNAME,
            token,
            format!(
                "access token of {} via {} (federated jwt {})",
                self.service_account, self.provider, minted.jti
            ),
            expire_time.min(grant.revoke_at),
            CredentialHandle::new(0, self.service_account.clone(), ""),
        )
        .valid_at_registry_until(expire_time))
    }

    /// The API request counters (both steps).
    pub fn meter(&self) -> &ApiMeter {
        &self.api.meter
    }

    fn map(&self, grant: &BackendGrant) -> Result<ReuseKey<'_>, BackendError> {
        map_grant(&grant.scopes)
            .map(|access| ReuseKey {
                access,
                service_account: &self.service_account,
            })
            .map_err(|failure| self.api.error(Step::MapGrant, failure))
    }

    /// Posts the token exchange and reads the federated token strictly.
    async fn exchange(&self, jwt: &SecretString) -> Result<SecretString, Failure> {
        let body = wire::ExchangeRequest {
            grant_type: wire::GRANT_TYPE,
            audience: &self.provider,
            scope: CLOUD_PLATFORM_SCOPE,
            requested_token_type: wire::REQUESTED_TOKEN_TYPE,
            subject_token: jwt.expose_secret(),
            subject_token_type: wire::SUBJECT_TOKEN_TYPE,
        };
        // The JWT is a short-lived bearer credential: the encoded body is moved (not copied)
        // into the request; hyper's buffer of it cannot be wiped.
        let json = serde_json::to_vec(&body).map_err(|_| Failure::Internal {
            what: "cannot encode the token exchange",
        })?;
        let request =
            OutgoingRequest::new(Method::POST, STS_TOKEN_PATH).with_body("application/json", json);
        let response = self.api.client.send_request(request).await?;
        if let Err(failure) = expect_success(&self.api.client, &response, no_message, None) {
            return Err(sts_failure(failure, &response.body, || {
                sts_message(&self.api.client, &response.body, jwt)
            }));
        }
        let body = Zeroizing::new(response.body);
        let answer: wire::ExchangeResponse = parse_json(
            &body,
            "token exchange: not a JSON object with access_token, issued_token_type, token_type \
             and expires_in",
        )?;
        let token = Zeroizing::new(answer.access_token);
        if !bearer_text(&token) {
            return Err(Failure::Malformed {
                what: "token exchange: access_token is empty, too long or not printable ASCII",
            });
        }
        if answer.issued_token_type != wire::REQUESTED_TOKEN_TYPE {
            return Err(Failure::Malformed {
                what: "token exchange: issued_token_type is not an access token",
            });
        }
        if !answer.token_type.eq_ignore_ascii_case("bearer") {
            return Err(Failure::Malformed {
                what: "token exchange: token_type is not Bearer",
            });
        }
        if answer.expires_in == 0 || answer.expires_in > MAX_FEDERATED_EXPIRES_IN_SECS {
            return Err(Failure::Malformed {
                what: "token exchange: expires_in is not 1 to 43200 seconds",
            });
        }
        Ok(seal_string(token))
    }

    /// Impersonates the service account for `granted` (rounded up, at most an hour); the
    /// access token and its `expireTime`.
    async fn generate(
        &self,
        federated: &SecretString,
        granted: Duration,
        now: SystemTime,
    ) -> Result<(SecretString, SystemTime), Failure> {
        let lifetime = requested_lifetime(granted);
        let lifetime_text = format!("{lifetime}s");
        let body = wire::GenerateRequest {
            scope: [CLOUD_PLATFORM_SCOPE],
            lifetime: &lifetime_text,
        };
        let json = serde_json::to_vec(&body).map_err(|_| Failure::Internal {
            what: "cannot encode the access token request",
        })?;
        let bearer = Zeroizing::new(format!("Bearer {}", federated.expose_secret()));
        let mut value = HeaderValue::from_str(&bearer).map_err(|_| Failure::Internal {
            what: "the federated token cannot be sent in a header",
        })?;
        value.set_sensitive(true);
        let request = OutgoingRequest::new(Method::POST, self.generate_path.clone())
            .with_body("application/json", json)
            .with_header(header::AUTHORIZATION, value);
        let response = self.iam.send_request(request).await?;
        let message = |client: &ApiClient, body: &[u8]| {
            sanitize_vendor_message(&client.scrub_also(&google_text(body), &[federated]))
        };
        if let Err(failure) = expect_success(&self.iam, &response, no_message, None) {
            return Err(match failure {
                // The refused credential is the federated token, not a broker secret: keep
                // Google's reason rather than "the broker's credential was refused".
                Failure::Unauthorized => Failure::Rejected {
                    status: 401,
                    message: message(&self.iam, &response.body),
                },
                Failure::Forbidden { .. } => Failure::Forbidden {
                    message: message(&self.iam, &response.body),
                },
                Failure::Rejected { status, .. } => Failure::Rejected {
                    status,
                    message: message(&self.iam, &response.body),
                },
                other => other,
            });
        }
        let body = Zeroizing::new(response.body);
        let answer: wire::GenerateResponse = parse_json(
            &body,
            "generateAccessToken: not a JSON object with accessToken and expireTime",
        )?;
        let token = Zeroizing::new(answer.access_token);
        if !bearer_text(&token) {
            return Err(Failure::Malformed {
                what: "generateAccessToken: accessToken is empty, too long or not printable ASCII",
            });
        }
        let Some(expire_time) = parse_rfc3339(&answer.expire_time) else {
            return Err(Failure::Malformed {
                what: "generateAccessToken: expireTime is not an RFC 3339 time",
            });
        };
        let ahead = now.checked_add(MAX_EXPIRE_AHEAD);
        if expire_time <= now || ahead.is_none_or(|ahead| expire_time > ahead) {
            return Err(Failure::Malformed {
                what: "generateAccessToken: expireTime is not within 12 hours after now",
            });
        }
        Ok((seal_string(token), expire_time))
    }
}

/// What makes two grants the same token: the access and the service account (the token
/// reaches what the account's bindings reach, whatever the repositories).
struct ReuseKey<'a> {
    access: Access,
    service_account: &'a str,
}

impl ReuseKey<'_> {
    fn reuse_key(&self) -> String {
        crate::grant::reuse_key(self.access.as_str(), [self.service_account])
    }
}

/// The `lifetime` asked for: the grant's time rounded up to whole seconds, 1 to
/// [`MAX_TOKEN_LIFETIME`].
fn requested_lifetime(granted: Duration) -> u64 {
    let seconds = granted.as_secs() + u64::from(granted.subsec_nanos() > 0);
    seconds.clamp(1, MAX_TOKEN_LIFETIME.as_secs())
}

/// A token fit for a header and a Basic password: 1 to [`MAX_TOKEN_BYTES`] printable ASCII.
fn bearer_text(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_BYTES
        && token.bytes().all(|b| b.is_ascii_graphic())
}

/// The failure an STS error answer stands for. The broker has no credential of its own
/// here: `invalid_grant` and `unauthorized_client` (and any 401) are about its JWT.
fn sts_failure(failure: Failure, body: &[u8], message: impl Fn() -> String) -> Failure {
    let code = serde_json::from_slice::<wire::OAuthError>(body)
        .ok()
        .map(|e| e.error);
    let about_the_jwt = matches!(
        code.as_deref(),
        Some("invalid_grant" | "unauthorized_client")
    );
    match failure {
        Failure::Unauthorized => Failure::JwtRefused { message: message() },
        Failure::Forbidden { .. } => Failure::Forbidden { message: message() },
        Failure::Rejected { .. } if about_the_jwt => Failure::JwtRefused { message: message() },
        Failure::Rejected { status, .. } => Failure::Rejected {
            status,
            message: message(),
        },
        other => other,
    }
}

impl fmt::Debug for GarBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GarBackend")
            .field("registry", &self.api.registry)
            .field("issuer", &self.issuer.issuer())
            .field("provider", &self.provider)
            .field("service_account", &self.service_account)
            .field("audience", &self.audience)
            .field("sts", &self.api.client)
            .field("iamcredentials", &self.iam)
            .finish_non_exhaustive()
    }
}

crate::backend::delegate_backend!(GarBackend, revocable = false);

/// A setting that breaks `rule`, with its value cut to 256 characters.
fn invalid_setting(setting: &'static str, rule: &'static str, value: &str) -> ConfigProblem {
    ConfigProblem::InvalidSetting {
        setting,
        value: value.chars().take(256).collect(),
        rule,
    }
}

/// An STS error's text (`invalid_grant: The audience in ID Token [...] ...`) with the JWT
/// scrubbed.
fn sts_message(client: &ApiClient, body: &[u8], jwt: &SecretString) -> String {
    sanitize_vendor_message(&client.scrub_also(&oauth_text(body), &[jwt]))
}

fn oauth_text(body: &[u8]) -> String {
    match serde_json::from_slice::<wire::OAuthError>(body) {
        Ok(e) => match e.error_description {
            Some(description) => format!("{}: {description}", e.error),
            None => e.error,
        },
        Err(_) => google_text(body),
    }
}

/// Google's error text (`PERMISSION_DENIED: Permission ... denied`), or the body's text when
/// it is not that shape (a proxy's page); scrubbed, printable, capped.
fn vendor_message(client: &ApiClient, body: &[u8]) -> String {
    sanitize_vendor_message(&client.scrub(&google_text(body)))
}

fn google_text(body: &[u8]) -> String {
    match serde_json::from_slice::<wire::GoogleErrorBody>(body) {
        Ok(parsed) => match (parsed.error.status, parsed.error.message) {
            (Some(status), Some(message)) => format!("{status}: {message}"),
            (None, Some(message)) => message,
            (Some(status), None) => status,
            (None, None) => String::new(),
        },
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

#[cfg(test)]
mod tests;
