//! Azure Container Registry: refresh tokens through a Microsoft Entra ID federated identity
//! credential, with the broker as the external OIDC issuer the application trusts.
//!
//! For a grant the backend signs its own JWT ([`FederationIssuer::mint`]): `iss` the broker's
//! issuer URL, `sub` from [`AcrConfig::subject_template`], `aud` [`AcrConfig::audience`]
//! (`api://AzureADTokenExchange`, what Entra's federated credentials expect). Then:
//!
//! 1. **Entra** `POST {authority_host}/{tenant_id}/oauth2/v2.0/token`, a form with
//!    `client_id`, `scope` ([`DEFAULT_SCOPE`]), `grant_type=client_credentials`,
//!    `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and
//!    `client_assertion=<the JWT>`. Entra fetches the broker's discovery document and JWKS,
//!    verifies the JWT and finds a federated credential of the application with its issuer,
//!    subject (case-sensitive) and audience; it answers `{token_type, expires_in,
//!    ext_expires_in, access_token}`. A refusal names an AADSTS code: the assertion's
//!    (AADSTS700211 issuer, 700213 subject, 700212 audience, 700024 time range, 7000272 key
//!    not in the issuer's metadata, 70021/70025 no credential, ...) is
//!    [`Failure::JwtRefused`]; the rest (an unknown tenant AADSTS90002, an unknown application
//!    AADSTS700016, a bad scope AADSTS1002012) is [`Failure::Rejected`], at
//!    [`Step::GetEntraToken`].
//! 2. **ACR** `POST {url}/oauth2/exchange`, a form with `grant_type=access_token`,
//!    `service=<login server>`, `tenant` and `access_token=<the Entra token>`; ACR answers
//!    `{"refresh_token": "<JWT>"}` (Azure/acr `docs/AAD-OAuth.md`). Errors are ACR's
//!    `{"errors":[{"code","message"}]}`, at [`Step::ExchangeAcrRefreshToken`].
//!
//! The workload logs in to Docker as [`REFRESH_TOKEN_USERNAME`] (the null GUID, which tells
//! ACR the password is a refresh token) with the refresh token as password; Docker trades it
//! at `/oauth2/token` for access tokens as it goes.
//!
//! **Scope.** The Entra token asks for the ACR audience,
//! `https://containerregistry.azure.net/.default` ([`DEFAULT_SCOPE`]): ACR accepts it always,
//! while ARM-audience tokens (`https://management.azure.com/.default`) stop working once the
//! registry's "authentication as ARM" policy is disabled (Azure Policy "Container registries
//! should have ARM audience token authentication disabled"; `az acr config
//! authentication-as-arm`). The .NET Aspire ACR login service asks for the same scope.
//!
//! **Granularity.** A refresh token reaches what the application's role assignments reach:
//! the whole registry with `AcrPull`/`AcrPush`, or, on a registry in the "RBAC Registry + ABAC
//! Repository Permissions" mode (where `AcrPull`/`AcrPush` are not honoured), the
//! repositories the assignments' conditions name with `Container Registry Repository
//! Reader`/`Writer` (the whole registry without a condition). The broker cannot narrow it:
//! the policy must only grant what the application may reach as a whole. The reuse key is the
//! access (`pull`/`push`) and the client id. `{access}` in the subject template lets the
//! operator trust only a workload's pull (or push) JWTs; the application's roles still decide
//! what the token reaches, so pull and push that must differ take two registry entries with
//! two applications.
//!
//! **Lifetime and revocation.** The refresh token lives three hours (its `exp` claim, read
//! from its payload without trusting it; [`DEFAULT_REFRESH_TOKEN_LIFETIME`] when it cannot be
//! read, the lifetime the azure-sdk-for-js token credential documents). The broker cannot
//! revoke it: the credential's `expires_at` is the earlier of the grant's revocation time and
//! `exp` (when the broker stops handing it out) and `registry_expires_at` is `exp` (until when
//! ACR may honour it). [`crate::Backend::revoke`] does nothing and nothing is left to sweep.
//! Whether removing the role assignment ends a refresh token already made is not documented:
//! do not count on it.
//!
//! # Azure setup
//!
//! ```text
//! # 1. an application and its service principal
//! az ad app create --display-name svid-broker-acr          # its appId is the client id
//! az ad sp create --id <appId>
//!
//! # 2. trust the broker's JWT: the issuer is the broker's federation issuer URL, the subject
//! #    the rendered subject_template (the workload's SPIFFE ID by default), one audience
//! az ad app federated-credential create --id <appId> --parameters '{
//!   "name": "svid-broker-team-a-app",
//!   "issuer": "https://broker.example.org/federation",
//!   "subject": "spiffe://example.org/ns/team-a/sa/app",
//!   "audiences": ["api://AzureADTokenExchange"]
//! }'
//!
//! # 3. what the refresh token reaches, on a registry in the "RBAC Registry Permissions" mode
//! scope=$(az acr show --name corp --query id --output tsv)
//! az role assignment create --assignee <appId> --role AcrPull --scope "$scope"   # or AcrPush
//!
//! # 3'. or, on a registry in the "RBAC Registry + ABAC Repository Permissions" mode
//! #     (az acr update --name corp --role-assignment-mode rbac-abac), where AcrPull and
//! #     AcrPush are not honoured: a repository role, registry-wide without a condition, or
//! #     narrowed to repositories by one
//! condition="((!(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'}) AND !(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/metadata/read'})) OR (@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringStartsWithIgnoreCase 'team-a/'))"
//! az role assignment create --assignee <appId> --role "Container Registry Repository Reader" \
//!   --scope "$scope" --condition "$condition" --condition-version "2.0"
//! #     (push: "Container Registry Repository Writer", its condition built in the portal's
//! #     visual editor, which lists the role's actions)
//! ```
//!
//! `--assignee-object-id <service principal object id> --assignee-principal-type
//! ServicePrincipal` may replace `--assignee <appId>` where the caller cannot read Microsoft
//! Graph. The policy's `url` is `https://corp.azurecr.io`, `tenant_id` the directory's GUID,
//! `client_id` the appId.
//!
//! An application holds at most 20 federated credentials (Microsoft Graph), each subject at
//! most 600 characters ([`MAX_SUBJECT_CHARS`]; a longer rendered subject is refused at
//! [`Step::MapGrant`]), matched exactly and case-sensitively: one credential per workload
//! identity, or a subject template that maps many workloads to one subject.
//!
//! Facts from: Microsoft identity platform "OAuth 2.0 client credentials flow" and the AADSTS
//! error code reference; Microsoft Graph `federatedIdentityCredential` (limits); Azure
//! Container Registry "Microsoft Entra ABAC for repository permissions" (the mode, the
//! roles, the condition, legacy roles not honoured); Azure/acr
//! `docs/AAD-OAuth.md` (exchange, null-GUID login, refresh token claims); azure-sdk-for-js
//! `containerRegistryTokenCredential.ts` (refresh token `exp`, three hours) and its recordings
//! (exchange form and answer); Azure/azure-workload-identity#1232 (AADSTS7000272),
//! external-secrets/external-secrets#2783 (401 `invalid_client` for a credential mismatch).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::Method;
use svid_broker_identity::secret::{ExposeSecret as _, SecretString, seal_string};
use svid_broker_policy::subject::{Placeholders, SubjectTemplate};
use svid_broker_token::federation::{FederatedClaims, FederationIssuer};
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
    DEFAULT_REQUEST_DEADLINE, OutgoingRequest, form_body,
};

mod wire;

use crate::grant::{Access, pull_or_push as map_grant};

pub use svid_broker_policy::subject::DEFAULT_SUBJECT_TEMPLATE;

/// Microsoft Entra ID's authority host in Azure's public cloud (sovereign clouds have their
/// own: `https://login.microsoftonline.us`, `https://login.chinacloudapi.cn`).
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The JWT's audience a federated identity credential expects (Microsoft Graph: "should be
/// set to `api://AzureADTokenExchange` for Microsoft Entra ID").
pub const DEFAULT_AUDIENCE: &str = svid_broker_policy::AZURE_DEFAULT_JWT_AUDIENCE;
/// The Entra token's scope: the ACR audience (see the module docs for why not ARM's).
pub const DEFAULT_SCOPE: &str = "https://containerregistry.azure.net/.default";
/// The Docker username of a login with an ACR refresh token: the null GUID.
pub const REFRESH_TOKEN_USERNAME: &str = "00000000-0000-0000-0000-000000000000";
/// The exchange endpoint, under the login server URL.
pub const EXCHANGE_PATH: &str = "/oauth2/exchange";
/// Longest subject (and audience) a federated identity credential holds, in characters.
pub const MAX_SUBJECT_CHARS: usize = 600;
/// An ACR refresh token's lifetime, assumed when its `exp` cannot be read.
pub const DEFAULT_REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// Longest token accepted from Entra or ACR, in bytes (both are JWTs of a few KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest `expires_in` accepted from Entra, in seconds (Entra's tokens live at most about a
/// day): a larger one is taken as a malformed answer.
pub const MAX_EXPIRES_IN_SECS: u64 = 2 * 86_400;
/// Latest refresh token `exp` accepted, from now: a later one is taken as malformed.
pub const MAX_REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(366 * 86_400);
/// Longest refresh token payload decoded to read `exp`, in base64 characters.
const MAX_PAYLOAD_B64: usize = 8 * 1024;
/// Longest scope accepted, in characters.
const MAX_SCOPE_CHARS: usize = 1024;

/// AADSTS codes that mean Entra refused the broker's assertion (its issuer, subject,
/// audience, time range, key or signature), from the AADSTS reference and the replies the
/// module docs name: `JwtRefused` rather than `Rejected`.
const ASSERTION_CODES: &[u64] = &[
    50_013, 50_027, 70_021, 70_025, 700_024, 700_027, 700_211, 700_212, 700_213, 700_222,
    7_000_272, 7_002_121, 7_002_137, 7_002_138, 90_061,
];
/// AADSTS codes about the request or the configuration, never the assertion, even when they
/// come as 401 `invalid_client` (an unknown application).
const CONFIGURATION_CODES: &[u64] = &[
    700_016, 90_002, 900_023, 1_002_012, 500_011, 70_003, 900_144,
];

/// ACR's API in the shared plumbing (the Entra client is the backend's second client).
const API_SHAPE: ApiShape = ApiShape {
    kind: BackendKind::Acr,
    vendor_message,
    missing_project_text: None,
};

/// How to reach one registry and which Entra application trusts the broker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AcrConfig {
    /// The registry's name in the policy (labels errors and figures).
    pub registry: String,
    /// The broker as OIDC issuer: it signs the JWT and serves the discovery document and JWKS
    /// Entra fetches (the federated credential's `issuer` is its issuer URL).
    pub issuer: Arc<FederationIssuer>,
    /// The login server URL (`https://corp.azurecr.io`); the exchange is at
    /// `{url}/oauth2/exchange` and the login server (`corp.azurecr.io`) is its `service`.
    pub url: String,
    /// The Entra tenant (directory) id, a GUID. Entra also takes a verified domain name; the
    /// broker keeps to the GUID, which cannot be renamed.
    pub tenant_id: String,
    /// The application (client) id, a GUID.
    pub client_id: String,
    /// Entra's authority host. Defaults to [`DEFAULT_AUTHORITY_HOST`].
    pub authority_host: String,
    /// The JWT's `aud`: the federated credential's audience. Defaults to [`DEFAULT_AUDIENCE`].
    pub audience: String,
    /// The Entra token's scope. Defaults to [`DEFAULT_SCOPE`]; it must end in `/.default`.
    pub scope: String,
    /// The JWT's `sub`: `{spiffe_id}` (the workload) and `{access}` (`pull` or `push`) are
    /// replaced, every other character is kept; any other `{...}` is refused. Defaults to
    /// [`DEFAULT_SUBJECT_TEMPLATE`].
    pub subject_template: String,
    /// PEM CA certificates to trust instead of the public web roots (both hosts).
    pub ca_file: Option<PathBuf>,
    /// The deadline of one request (connect, TLS and the whole answer), each host.
    pub request_deadline: Duration,
    /// The cap on requests in flight, each host.
    pub max_in_flight: usize,
    /// The cap on one answer's body, in bytes.
    pub max_response_bytes: usize,
}

impl AcrConfig {
    /// A configuration for the public cloud: the audience `api://AzureADTokenExchange`, the
    /// ACR scope, the subject `{spiffe_id}`, public web roots, a 10 s deadline, 4 requests in
    /// flight and a 1 MiB answer cap.
    pub fn new(
        registry: impl Into<String>,
        issuer: Arc<FederationIssuer>,
        login_server_url: impl Into<String>,
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Self {
        Self {
            registry: registry.into(),
            issuer,
            url: login_server_url.into(),
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            authority_host: DEFAULT_AUTHORITY_HOST.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            scope: DEFAULT_SCOPE.to_owned(),
            subject_template: DEFAULT_SUBJECT_TEMPLATE.to_owned(),
            ca_file: None,
            request_deadline: DEFAULT_REQUEST_DEADLINE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// One Azure container registry, reached through Entra ID and ACR's exchange.
pub struct AcrBackend {
    /// ACR's client, the registry's name and the meter of both steps.
    api: RegistryApi,
    entra: ApiClient,
    issuer: Arc<FederationIssuer>,
    tenant_id: String,
    client_id: String,
    audience: String,
    scope: String,
    login_server: String,
    subject: SubjectTemplate,
}

impl AcrBackend {
    /// Checks the configuration and builds both clients (reading the CA file now).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the registry: a bad URL (either host), plain http to a host
    /// that is not a loopback address, an unusable CA file, a zero limit, or
    /// ([`ConfigProblem::InvalidSetting`]) a tenant or client id that is not a GUID, an empty,
    /// non-printable or over-600-character audience, a scope not ending in `/.default`, or a
    /// subject template that is empty or has an unknown placeholder.
    pub fn new(config: AcrConfig) -> Result<Self, ConfigError> {
        let fail = config_error(&config.registry, BackendKind::Acr);
        if !is_guid(&config.tenant_id) {
            return Err(fail(invalid_setting(
                "tenant_id",
                "must be the tenant's GUID (8-4-4-4-12 hexadecimal digits)",
                &config.tenant_id,
            )));
        }
        if !is_guid(&config.client_id) {
            return Err(fail(invalid_setting(
                "client_id",
                "must be the application's GUID (8-4-4-4-12 hexadecimal digits)",
                &config.client_id,
            )));
        }
        if bad_text(&config.audience, MAX_SUBJECT_CHARS) {
            return Err(fail(invalid_setting(
                "audience",
                "1 to 600 printable characters (a federated credential's audience)",
                &config.audience,
            )));
        }
        if bad_text(&config.scope, MAX_SCOPE_CHARS)
            || !config.scope.ends_with("/.default")
            || config.scope.contains(' ')
        {
            return Err(fail(invalid_setting(
                "scope",
                "one resource with /.default (client credentials take no other scope)",
                &config.scope,
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
        let api = RegistryApi::new(
            config.registry.clone(),
            API_SHAPE,
            ClientSettings::with_auth(config.url.clone(), Auth::None),
            limits_of!(config),
        )
        .map_err(&fail)?;
        let mut entra_settings =
            ClientSettings::with_auth(config.authority_host.clone(), Auth::None);
        entra_settings.ca_file = config.ca_file.clone();
        entra_settings.request_deadline = config.request_deadline;
        entra_settings.max_in_flight = config.max_in_flight;
        entra_settings.max_response_bytes = config.max_response_bytes;
        let entra = ApiClient::new(&entra_settings).map_err(&fail)?;
        let login_server = login_server_of(&config.url, api.client.authority());
        Ok(Self {
            api,
            entra,
            issuer: config.issuer,
            tenant_id: config.tenant_id.to_ascii_lowercase(),
            client_id: config.client_id.to_ascii_lowercase(),
            audience: config.audience,
            scope: config.scope,
            login_server,
            subject,
        })
    }

    /// Signs the broker's JWT for `grant`, trades it at Entra for an access token and that at
    /// ACR for a refresh token. `expires_at` of the answer is the earlier of the grant's
    /// `revoke_at` and the refresh token's `exp`; `registry_expires_at` is `exp`.
    ///
    /// # Errors
    /// At [`Step::MapGrant`] when the grant is not `pull`/`push` on repositories, its time has
    /// passed, or the rendered subject is over [`MAX_SUBJECT_CHARS`]; at
    /// [`Step::SignFederatedToken`] when the JWT cannot be signed; at [`Step::GetEntraToken`]
    /// when Entra refuses the assertion ([`Failure::JwtRefused`]) or the request
    /// ([`Failure::Rejected`]), fails, or answers something malformed; at
    /// [`Step::ExchangeAcrRefreshToken`] when ACR refuses (401, e.g. an application without a
    /// role on the registry, is [`Failure::Rejected`] with ACR's message; 403
    /// [`Failure::Forbidden`]), fails, or answers something malformed.
    pub async fn issue(
        &self,
        grant: &BackendGrant,
        now: SystemTime,
    ) -> Result<BackendCredential, BackendError> {
        let mapped = self.map(grant)?;
        self.api.ensure_unexpired(grant, now)?;
        let claims = FederatedClaims::new(mapped.subject, self.audience.clone());
        let minted = crate::api::mint_federated(&self.issuer, claims, now)
            .await
            .map_err(|error| {
                self.api.error(
                    Step::SignFederatedToken,
                    sign_failure(BackendKind::Acr, &error),
                )
            })?;
        let entra_step = Step::GetEntraToken {
            client_id: self.client_id.clone(),
        };
        let result = self.entra_token(&minted.token).await;
        let access_token = self.api.finish(&entra_step, result)?;
        let acr_step = Step::ExchangeAcrRefreshToken {
            login_server: self.login_server.clone(),
        };
        let result = self.exchange(&access_token, &minted.token, now).await;
        let (refresh_token, token_end) = self.api.finish(&acr_step, result)?;
        tracing::info!(
            registry = %self.api.registry,
            client_id = %self.client_id,
            login_server = %self.login_server,
            access = mapped.access.as_str(),
            jti = %minted.jti,
            subject = %grant.subject,
            "acr refresh token issued"
        );
        Ok(BackendCredential::new(
            REFRESH_TOKEN_USERNAME,
            refresh_token,
            format!(
                "acr refresh token of application {} at {} (federated jwt {})",
                self.client_id, self.login_server, minted.jti
            ),
            token_end.min(grant.revoke_at),
            CredentialHandle::new(0, self.client_id.clone(), self.login_server.clone()),
        )
        .valid_at_registry_until(token_end))
    }

    /// The API request counters (both steps).
    pub fn meter(&self) -> &ApiMeter {
        &self.api.meter
    }

    /// The login server, the exchange's `service` (`corp.azurecr.io`).
    pub fn login_server(&self) -> &str {
        &self.login_server
    }

    fn map(&self, grant: &BackendGrant) -> Result<Mapped, BackendError> {
        let refuse = |failure| self.api.error(Step::MapGrant, failure);
        let access = map_grant(&grant.scopes).map_err(refuse)?;
        let subject = self.subject.render(&grant.subject, "", access.as_str());
        if subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(refuse(Failure::GrantRefused {
                rule: "the rendered subject is longer than the 600 characters an Entra federated credential's subject holds: shorten jwt_subject",
            }));
        }
        Ok(Mapped {
            access,
            subject,
            client_id: self.client_id.clone(),
        })
    }

    /// Entra's client-credentials grant with the JWT as the client assertion.
    async fn entra_token(&self, jwt: &SecretString) -> Result<SecretString, Failure> {
        let body = form_body(&[
            ("client_id", &self.client_id),
            ("scope", &self.scope),
            ("grant_type", wire::GRANT_TYPE),
            ("client_assertion_type", wire::CLIENT_ASSERTION_TYPE),
            ("client_assertion", jwt.expose_secret()),
        ]);
        let path = format!("/{}/oauth2/v2.0/token", self.tenant_id);
        let response = self
            .entra
            .send_request(OutgoingRequest::new(Method::POST, path).with_body(wire::FORM, body))
            .await?;
        if let Err(failure) = expect_success(&self.entra, &response, no_message, None) {
            let message = || {
                sanitize_vendor_message(&self.entra.scrub_also(&entra_text(&response.body), &[jwt]))
            };
            return Err(entra_failure(failure, &response.body, message));
        }
        let body = Zeroizing::new(response.body);
        let answer: wire::EntraTokenResponse = parse_json(
            &body,
            "Entra token: not a JSON object with token_type, expires_in and access_token",
        )?;
        let access_token = Zeroizing::new(answer.access_token);
        if !answer.token_type.eq_ignore_ascii_case("bearer") {
            return Err(Failure::Malformed {
                what: "Entra token: token_type is not Bearer",
            });
        }
        if answer.expires_in == 0 || answer.expires_in > MAX_EXPIRES_IN_SECS {
            return Err(Failure::Malformed {
                what: "Entra token: expires_in is not 1 to 172800 seconds",
            });
        }
        if !printable_token(&access_token) {
            return Err(Failure::Malformed {
                what: "Entra token: access_token is empty, too long or not printable ASCII",
            });
        }
        Ok(seal_string(access_token))
    }

    /// ACR's exchange of the Entra token for a refresh token; the token and its end.
    async fn exchange(
        &self,
        access_token: &SecretString,
        jwt: &SecretString,
        now: SystemTime,
    ) -> Result<(SecretString, SystemTime), Failure> {
        let body = form_body(&[
            ("grant_type", wire::EXCHANGE_GRANT_TYPE),
            ("service", &self.login_server),
            ("tenant", &self.tenant_id),
            ("access_token", access_token.expose_secret()),
        ]);
        let response = self
            .api
            .client
            .send_request(
                OutgoingRequest::new(Method::POST, EXCHANGE_PATH).with_body(wire::FORM, body),
            )
            .await?;
        if let Err(failure) = expect_success(&self.api.client, &response, no_message, None) {
            let message = || {
                sanitize_vendor_message(
                    &self
                        .api
                        .client
                        .scrub_also(&acr_text(&response.body), &[access_token, jwt]),
                )
            };
            return Err(match failure {
                // The Entra token was just made: a 401 is about what it may do here (no role
                // on the registry, a tenant or audience ACR does not take), and ACR's message
                // says which, so it is kept.
                Failure::Unauthorized => Failure::Rejected {
                    status: 401,
                    message: message(),
                },
                Failure::Forbidden { .. } => Failure::Forbidden { message: message() },
                Failure::Rejected { status, .. } => Failure::Rejected {
                    status,
                    message: message(),
                },
                other => other,
            });
        }
        let body = Zeroizing::new(response.body);
        let answer: wire::ExchangeResponse =
            parse_json(&body, "ACR exchange: not a JSON object with refresh_token")?;
        let refresh_token = Zeroizing::new(answer.refresh_token);
        if !printable_token(&refresh_token) {
            return Err(Failure::Malformed {
                what: "ACR exchange: refresh_token is empty, too long or not printable ASCII",
            });
        }
        let end = refresh_token_end(&refresh_token, now)?;
        Ok((seal_string(refresh_token), end))
    }
}

/// What makes two grants the same refresh token: the access and the application.
struct Mapped {
    access: Access,
    subject: String,
    client_id: String,
}

impl Mapped {
    fn reuse_key(&self) -> String {
        crate::grant::reuse_key(self.access.as_str(), [self.client_id.as_str()])
    }
}

impl fmt::Debug for AcrBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcrBackend")
            .field("registry", &self.api.registry)
            .field("issuer", &self.issuer.issuer())
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("login_server", &self.login_server)
            .field("audience", &self.audience)
            .field("scope", &self.scope)
            .field("entra", &self.entra)
            .field("client", &self.api.client)
            .finish_non_exhaustive()
    }
}

crate::backend::delegate_backend!(AcrBackend, revocable = false);

/// A GUID in its 8-4-4-4-12 hexadecimal form (either case).
fn is_guid(text: &str) -> bool {
    let mut groups = text.split('-');
    let ok = [8, 4, 4, 4, 12].iter().all(|&len| {
        groups
            .next()
            .is_some_and(|g| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    ok && groups.next().is_none()
}

fn bad_text(text: &str, max: usize) -> bool {
    text.trim().is_empty() || text.chars().count() > max || text.chars().any(char::is_control)
}

/// A bearer token fit to be a Basic password or a form value: 1 to [`MAX_TOKEN_BYTES`] of
/// visible ASCII.
fn printable_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_BYTES
        && token.bytes().all(|b| b.is_ascii_graphic())
}

/// The exchange's `service`: the URL's authority without a default port (ACR's login server
/// is `corp.azurecr.io`, never `corp.azurecr.io:443`).
fn login_server_of(url: &str, authority: &str) -> String {
    let lower = authority.to_ascii_lowercase();
    let default_port = if url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        ":443"
    } else {
        ":80"
    };
    lower
        .strip_suffix(default_port)
        .map_or(lower.clone(), str::to_owned)
}

/// When the refresh token ends: its `exp` (read without trusting the token), or `now` plus
/// [`DEFAULT_REFRESH_TOKEN_LIFETIME`] when the payload cannot be read.
///
/// # Errors
/// [`Failure::Malformed`] when `exp` is readable but not after `now` or more than
/// [`MAX_REFRESH_TOKEN_LIFETIME`] after it.
fn refresh_token_end(token: &str, now: SystemTime) -> Result<SystemTime, Failure> {
    let Some(exp) = refresh_token_exp(token) else {
        tracing::debug!("acr refresh token without a readable exp: assuming three hours");
        return Ok(now + DEFAULT_REFRESH_TOKEN_LIFETIME);
    };
    // Checked: `exp` is the registry's number, and a huge one must not overflow `SystemTime`.
    let end = UNIX_EPOCH.checked_add(Duration::from_secs(exp));
    let latest = now.checked_add(MAX_REFRESH_TOKEN_LIFETIME);
    let Some(end) = end.filter(|end| *end > now && latest.is_some_and(|latest| *end <= latest))
    else {
        return Err(Failure::Malformed {
            what: "ACR exchange: the refresh token's exp is not in the next year",
        });
    };
    Ok(end)
}

/// The `exp` claim of a JWT's payload, unverified: `None` unless the token has three parts, a
/// payload of at most 8 KiB of base64url holding a JSON object, and a non-negative numeric
/// `exp` (a fraction is cut to whole seconds).
fn refresh_token_exp(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_, Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if payload.len() > MAX_PAYLOAD_B64 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_number()?;
    exp.as_u64().or_else(|| {
        exp.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15)
            .map(|f| f as u64)
    })
}

/// What a non-2xx Entra answer stands for: the assertion refused ([`Failure::JwtRefused`]) or
/// the request ([`Failure::Rejected`]), decided by the AADSTS codes first, then by
/// `invalid_client` and the status.
fn entra_failure(failure: Failure, body: &[u8], message: impl Fn() -> String) -> Failure {
    let parsed = serde_json::from_slice::<wire::EntraErrorBody>(body).ok();
    let codes = parsed.as_ref().map(aadsts_codes).unwrap_or_default();
    let about_assertion = codes.iter().any(|c| ASSERTION_CODES.contains(c));
    let about_configuration = codes.iter().any(|c| CONFIGURATION_CODES.contains(c));
    let invalid_client = parsed
        .as_ref()
        .and_then(|p| p.error.as_deref())
        .is_some_and(|e| e == "invalid_client");
    match failure {
        Failure::Unauthorized if about_configuration && !about_assertion => Failure::Rejected {
            status: 401,
            message: message(),
        },
        // With no secret of its own, the broker authenticates to Entra only by its JWT.
        Failure::Unauthorized => Failure::JwtRefused { message: message() },
        Failure::Rejected { .. } if about_assertion || (invalid_client && !about_configuration) => {
            Failure::JwtRefused { message: message() }
        }
        Failure::Rejected { status, .. } => Failure::Rejected {
            status,
            message: message(),
        },
        Failure::Forbidden { .. } => Failure::Forbidden { message: message() },
        other => other,
    }
}

/// The AADSTS codes of an error body: `error_codes` (the first eight) and the code the
/// description starts with.
fn aadsts_codes(body: &wire::EntraErrorBody) -> Vec<u64> {
    let mut codes: Vec<u64> = body
        .error_codes
        .iter()
        .take(8)
        .filter_map(serde_json::Value::as_u64)
        .collect();
    if let Some(rest) = body
        .error_description
        .as_deref()
        .and_then(|d| d.trim_start().strip_prefix("AADSTS"))
    {
        // AADSTS codes have at most 7 digits; a longer run is not one.
        let digits: String = rest
            .chars()
            .take_while(char::is_ascii_digit)
            .take(11)
            .collect();
        if digits.len() <= 10
            && let Ok(code) = digits.parse()
        {
            codes.push(code);
        }
    }
    codes
}

/// Entra's error text: `error: error_description` (the description starts with the AADSTS
/// code), or the body's text when it is not that shape.
fn entra_text(body: &[u8]) -> String {
    match serde_json::from_slice::<wire::EntraErrorBody>(body) {
        Ok(parsed) if parsed.error.is_some() || parsed.error_description.is_some() => {
            match (parsed.error, parsed.error_description) {
                (Some(error), Some(description)) => format!("{error}: {description}"),
                (Some(text), None) | (None, Some(text)) => text,
                (None, None) => String::new(),
            }
        }
        _ => String::from_utf8_lossy(body).into_owned(),
    }
}

/// ACR's error text: the `errors` entries (`code: message`, joined by `; `), or the body's text.
fn acr_text(body: &[u8]) -> String {
    match serde_json::from_slice::<wire::AcrErrorBody>(body) {
        Ok(parsed) if !parsed.errors.is_empty() => parsed
            .errors
            .iter()
            .take(4)
            .map(|e| {
                let code = e.code.as_ref().and_then(|c| c.as_str()).map(str::to_owned);
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

/// ACR's error text for the shared plumbing, scrubbed, printable, capped.
fn vendor_message(client: &ApiClient, body: &[u8]) -> String {
    sanitize_vendor_message(&client.scrub(&acr_text(body)))
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
