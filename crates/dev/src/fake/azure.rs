//! A fake Microsoft Entra ID (the client-credentials token endpoint with federated client
//! assertions) and a fake Azure Container Registry (`/oauth2/exchange` and a Docker login
//! check) on two 127.0.0.1 listeners, enforcing what the real services enforce, for the
//! broker's `acr` registry kind.
//!
//! The operator's side is [`FakeAzure::add_app`] (an application in a tenant),
//! [`FakeAzure::add_federated_credential`] (issuer, subject, audiences; at most
//! [`MAX_FEDERATED_CREDENTIALS`] per application, each field at most [`MAX_FIC_FIELD_CHARS`]
//! characters, one audience, issuer and subject unique together: Microsoft Graph's
//! federatedIdentityCredential resource) and [`FakeAzure::assign_role`] (`AcrPull`,
//! `AcrPush`, or the ABAC-mode `Container Registry Repository Reader`/`Writer` on the
//! registry).
//!
//! **Entra** (`POST {authority_url}/{tenant}/oauth2/v2.0/token`, Microsoft identity platform
//! "OAuth 2.0 client credentials flow", the certificate/federated assertion form):
//!
//! - Only `POST` (else 400 AADSTS900561); a form body (`application/x-www-form-urlencoded`)
//!   of at most [`MAX_BODY_BYTES`] (else 413); `grant_type`, `client_id`, `scope`,
//!   `client_assertion_type` and `client_assertion` are required (400 `invalid_request`
//!   AADSTS900144 naming the missing one).
//! - The tenant segment must be a GUID (400 AADSTS900023: the fake knows no domain names)
//!   of a known tenant (400 AADSTS90002 "Tenant '…' not found").
//! - `grant_type` must be `client_credentials` (400 `unsupported_grant_type` AADSTS70003);
//!   `client_assertion_type` `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
//!   exactly (400 `invalid_request`; the code AADSTS7000219 is an inference); `scope` one
//!   value ending in `/.default` (400 `invalid_scope` AADSTS1002012) naming ACR
//!   (`https://containerregistry.azure.net`) or ARM (400 `invalid_resource` AADSTS500011).
//! - The application must exist in the tenant (400 `unauthorized_client` AADSTS700016) and
//!   have a federated credential (401 `invalid_client` AADSTS70025).
//! - The assertion is verified as Entra verifies an external issuer's token
//!   ([`FederatedJwtVerifier`]: discovery and JWKS over HTTP with a refetch on an unknown
//!   `kid`, RS256, `exp`/`nbf`/`iat` on the fake's clock), trusting only the issuers of the
//!   app's credentials: another issuer is AADSTS700211; expired or not yet valid AADSTS700024;
//!   an unpublished `kid` AADSTS7000272 ("The certificate with identifier … used to sign the
//!   federated credential could not be found in the metadata of identity provider …",
//!   Azure/azure-workload-identity#1232); a bad signature AADSTS50013 (inference); discovery
//!   failing AADSTS90061 (Azure/azure-workload-identity#605); malformed AADSTS50027. Then a
//!   credential with that issuer must have the assertion's `sub`, case-sensitively
//!   (AADSTS700213), and an audience in its `aud` (AADSTS700212). These refusals are 401
//!   `invalid_client`, as current replies show (external-secrets/external-secrets#2783,
//!   microsoft/Agents#202; older ones were 400 `invalid_request`).
//! - The answer is `{token_type: "Bearer", expires_in: 3599, ext_expires_in: 3599,
//!   access_token}`; the token is opaque here (JWT-shaped, not signed), recorded with its
//!   tenant, app, resource and one-hour expiry.
//! - Errors are Entra's `{error, error_description: "AADSTSnnn: …", error_codes: [nnn],
//!   timestamp, trace_id, correlation_id, error_uri}` (the AADSTS error code reference).
//!
//! **ACR** (`POST {registry_url}/oauth2/exchange`, Azure/acr `docs/AAD-OAuth.md` and the
//! azure-sdk recordings):
//!
//! - Only `POST` (else 404, as ACR answers, Azure/acr#166); a form body with `grant_type`
//!   `access_token` (the deprecated refresh-token grants are refused: 400), `service` equal to
//!   the registry's login server, here [`FakeAzure::login_server`] (`127.0.0.1:PORT`, else 400),
//!   `access_token` required, `tenant` optional and, when present, the token's tenant.
//! - The access token must be a live token of this fake's Entra for the ACR resource, or ARM
//!   while ARM-audience tokens are allowed (the default; see
//!   [`FakeAzure::disable_arm_audience_tokens`]), else 401; the app must hold a role on the
//!   registry, else 401 (an inference: the real registry may mint a refresh token without
//!   permissions and refuse at `/oauth2/token` instead). In the ABAC mode
//!   ([`FakeAzure::enable_abac_repository_permissions`]) `AcrPull`/`AcrPush` are not honoured
//!   (ACR's "Microsoft Entra ABAC for repository permissions"); conditions are not modelled.
//! - The answer is `{"refresh_token": <JWT>}` whose payload carries ACR's claim set (`jti`,
//!   `sub`, `nbf`, `exp`, `iat`, `iss: "Azure Container Registry"`, `aud` the login server,
//!   `version`, `grant_type: "refresh_token"`, `tenant`, `permissions`, `roles`), `exp` three
//!   hours on (the azure-sdk-for-js token credential: "ACR refresh token expires after three
//!   hours"; [`FakeAzure::set_refresh_token_lifetime`] changes it). The signature is random:
//!   nobody but the fake reads it.
//! - Errors are ACR's `{"errors":[{"code","message"}]}`.
//! - `GET /v2/` with Basic `00000000-0000-0000-0000-000000000000:<refresh token>` answers 200
//!   while the token lives, else 401 with ACR's Bearer challenge. A simplification: the real
//!   registry wants Docker to trade the refresh token at `/oauth2/token` for an access token
//!   first; the fake checks the refresh token directly.
//!
//! | listener | endpoint | answers |
//! | --- | --- | --- |
//! | Entra | `POST /{tenant}/oauth2/v2.0/token` | 200 access token |
//! | ACR | `POST /oauth2/exchange` | 200 refresh token |
//! | ACR | `GET /v2/` | 200 / 401 |
//!
//! ```no_run
//! use svid_broker_dev::fake::azure::FakeAzure;
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let azure = FakeAzure::start()?;
//! let tenant = "11111111-2222-3333-4444-555555555555";
//! let app = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
//! azure.add_app(tenant, app)?;
//! azure.add_federated_credential(
//!     app,
//!     "https://broker.example.org/federation",
//!     "spiffe://example.org/ns/team-a/sa/app",
//!     &["api://AzureADTokenExchange"],
//! )?;
//! azure.assign_role(app, "AcrPull")?;
//! println!("Entra at {}, ACR at {}", azure.authority_url(), azure.registry_url());
//! # Ok(())
//! # }
//! ```

mod http;
mod rules;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::fake::federation::FederatedJwtVerifier;
pub use crate::fake::harbor::{FakeError, Fault};
use crate::fake::server::{Control, FakeServer, lock};
use rules::{App, Fic, State};
pub use rules::{MAX_FEDERATED_CREDENTIALS, MAX_FIC_FIELD_CHARS, ROLES};

/// Largest request body read; larger ones get 413. Not an Azure figure: the fake's bound.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The username of a Docker login with an ACR refresh token (the null GUID).
pub const REFRESH_TOKEN_USERNAME: &str = "00000000-0000-0000-0000-000000000000";
/// The ACR exchange's path (`POST`), relative to the fake's URL.
pub const EXCHANGE_PATH: &str = "/oauth2/exchange";
/// An ACR refresh token's default lifetime: three hours.
pub const DEFAULT_REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// An Entra access token's lifetime here (`expires_in`).
pub const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

/// Which of the fake's endpoints a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// Entra's token endpoint (`/{tenant}/oauth2/v2.0/token`).
    Entra,
    /// ACR's `/oauth2/exchange` (not its `/v2/` login check).
    Acr,
}

/// One assertion Entra verified (signature, times, and a matching credential).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedAssertion {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `aud`.
    pub audiences: Vec<String>,
    /// The assertion header's `kid`: which key of the issuer's JWKS verified it.
    pub kid: String,
    /// The application (client) id it authenticated as, lowercased.
    pub client_id: String,
}

/// An ACR refresh token as the fake holds it, without its text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefreshTokenInfo {
    /// The tenant id of the Entra token it was exchanged for, lowercased.
    pub tenant: String,
    /// The application (client) id, lowercased; also the token's `sub`.
    pub client_id: String,
    /// The app's roles on the registry when it was made.
    pub roles: Vec<String>,
    /// `exp`, Unix seconds on the fake's clock.
    pub expires_at: i64,
}

/// The counters beside each listener's [`Control`].
#[derive(Debug, Default)]
struct Counts {
    issued: u64,
    refused: u64,
    logins: u64,
}

/// What the two server threads and the handle share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    entra: Control<Counts>,
    acr: Control<Counts>,
    verifier: FederatedJwtVerifier,
    audit: Mutex<Vec<VerifiedAssertion>>,
    /// The login server (`127.0.0.1:PORT`), set once the ACR listener is bound.
    login_server: Mutex<String>,
    refresh_lifetime: Mutex<Duration>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Each operation checks before it changes anything: keep serving after a panic.
        lock(&self.state)
    }

    /// The fake's one clock (both listeners' offsets move together).
    fn now_unix(&self) -> i64 {
        self.entra.now_unix()
    }
}

/// A running fake Entra ID and ACR; dropping it stops both servers and joins their threads.
#[derive(Debug)]
pub struct FakeAzure {
    shared: Arc<Shared>,
    entra: FakeServer,
    acr: FakeServer,
}

impl FakeAzure {
    /// Runs both listeners (plain HTTP on 127.0.0.1 at free ports, each on its own thread and
    /// runtime) with no tenant; returns once both accept connections.
    ///
    /// # Errors
    /// [`FakeError`] naming what could not be set up.
    pub fn start() -> Result<Self, FakeError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            entra: Control::default(),
            acr: Control::default(),
            verifier: FederatedJwtVerifier::new(),
            audit: Mutex::new(Vec::new()),
            login_server: Mutex::new(String::new()),
            refresh_lifetime: Mutex::new(DEFAULT_REFRESH_TOKEN_LIFETIME),
        });
        let entra = FakeServer::start(
            "fake-entra",
            Arc::new(http::EntraService(Arc::clone(&shared))),
        )
        .map_err(FakeError::from_start)?;
        let acr = FakeServer::start("fake-acr", Arc::new(http::AcrService(Arc::clone(&shared))))
            .map_err(FakeError::from_start)?;
        *lock(&shared.login_server) = acr.addr().to_string();
        Ok(Self { shared, entra, acr })
    }

    /// `http://127.0.0.1:PORT`: the authority host (the broker's `authority_host`).
    pub fn authority_url(&self) -> String {
        self.entra.url()
    }

    /// `http://127.0.0.1:PORT`: the registry's login server URL (the policy's `url`).
    pub fn registry_url(&self) -> String {
        self.acr.url()
    }

    /// `127.0.0.1:PORT`: the login server name the exchange's `service` must be.
    pub fn login_server(&self) -> String {
        self.acr.addr().to_string()
    }

    /// The Entra listener's address.
    pub fn entra_addr(&self) -> SocketAddr {
        self.entra.addr()
    }

    /// The ACR listener's address.
    pub fn acr_addr(&self) -> SocketAddr {
        self.acr.addr()
    }

    /// Registers application `client_id` (a GUID) in `tenant` (a GUID), creating the tenant.
    ///
    /// # Errors
    /// [`FakeError::Refused`] 400 when either is not a GUID or past 256 apps, 409 when the
    /// client id is registered already.
    pub fn add_app(&self, tenant: &str, client_id: &str) -> Result<(), FakeError> {
        if !rules::is_guid(tenant) || !rules::is_guid(client_id) {
            return Err(refused(
                400,
                "Request_BadRequest",
                "tenant and client id must be GUIDs",
            ));
        }
        let mut state = self.shared.state();
        let key = client_id.to_ascii_lowercase();
        if state.apps.contains_key(&key) {
            return Err(refused(
                409,
                "Request_BadRequest",
                "the application exists already",
            ));
        }
        if state.apps.len() >= rules::MAX_APPS {
            return Err(refused(
                400,
                "Request_BadRequest",
                "too many applications (the fake's bound)",
            ));
        }
        state.apps.insert(
            key,
            App {
                tenant: tenant.to_ascii_lowercase(),
                ..App::default()
            },
        );
        Ok(())
    }

    /// Adds a federated identity credential to `client_id`: tokens from `issuer` (compared
    /// exactly with `iss`) whose `sub` is `subject` (case-sensitive) and whose `aud` holds
    /// the audience.
    ///
    /// # Errors
    /// [`FakeError::Refused`] 404 (no such app), 400 (not exactly one audience, an empty
    /// field or one over [`MAX_FIC_FIELD_CHARS`] characters, or already
    /// [`MAX_FEDERATED_CREDENTIALS`]), 409 (the issuer and subject are taken).
    pub fn add_federated_credential(
        &self,
        client_id: &str,
        issuer: &str,
        subject: &str,
        audiences: &[&str],
    ) -> Result<(), FakeError> {
        let mut state = self.shared.state();
        let Some(app) = state.apps.get_mut(&client_id.to_ascii_lowercase()) else {
            return Err(refused(
                404,
                "Request_ResourceNotFound",
                "no such application",
            ));
        };
        let bad = |t: &str| t.is_empty() || t.chars().count() > MAX_FIC_FIELD_CHARS;
        if audiences.len() != 1 || bad(issuer) || bad(subject) || audiences.iter().any(|a| bad(a)) {
            return Err(refused(
                400,
                "Request_BadRequest",
                "issuer, subject and exactly one audience, each 1 to 600 characters",
            ));
        }
        if app.fics.len() >= MAX_FEDERATED_CREDENTIALS {
            return Err(refused(
                400,
                "Request_BadRequest",
                "an application has at most 20 federated identity credentials",
            ));
        }
        if app
            .fics
            .iter()
            .any(|f| f.issuer == issuer && f.subject == subject)
        {
            return Err(refused(
                409,
                "Request_BadRequest",
                "the combination of issuer and subject must be unique within the app",
            ));
        }
        app.fics.push(Fic {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
        });
        Ok(())
    }

    /// Assigns `role` (one of [`ROLES`]) on the registry to `client_id`'s service principal.
    ///
    /// # Errors
    /// [`FakeError::Refused`] 404 (no such app) or 400 (another role).
    pub fn assign_role(&self, client_id: &str, role: &str) -> Result<(), FakeError> {
        if !ROLES.contains(&role) {
            return Err(refused(
                400,
                "InvalidRoleDefinitionId",
                "not a registry role",
            ));
        }
        let mut state = self.shared.state();
        let Some(app) = state.apps.get_mut(&client_id.to_ascii_lowercase()) else {
            return Err(refused(404, "PrincipalNotFound", "no such application"));
        };
        app.roles.insert(role.to_owned());
        Ok(())
    }

    /// Removes every role assignment of `client_id` (refresh tokens already made keep
    /// working to their end, as at the real registry).
    pub fn remove_roles(&self, client_id: &str) {
        if let Some(app) = self
            .shared
            .state()
            .apps
            .get_mut(&client_id.to_ascii_lowercase())
        {
            app.roles.clear();
        }
    }

    /// Makes the registry refuse ARM-audience access tokens (`az acr config
    /// authentication-as-arm update --status disabled`).
    pub fn disable_arm_audience_tokens(&self) {
        self.shared.state().arm_audience_disabled = true;
    }

    /// Switches the registry to the "RBAC Registry + ABAC Repository Permissions" mode (`az
    /// acr update --role-assignment-mode rbac-abac`): `AcrPull` and `AcrPush` are no longer
    /// honoured, the `Container Registry Repository` roles are. The fake keeps no conditions:
    /// a repository role reaches the whole registry, as one without a condition does.
    pub fn enable_abac_repository_permissions(&self) {
        self.shared.state().abac_mode = true;
    }

    /// Sets the lifetime of the refresh tokens made from now on.
    pub fn set_refresh_token_lifetime(&self, lifetime: Duration) {
        *lock(&self.shared.refresh_lifetime) = lifetime;
    }

    /// True when `refresh_token` passes the registry's Basic login now.
    pub fn authenticate(&self, refresh_token: &str) -> bool {
        self.shared
            .state()
            .refresh_valid(refresh_token, self.shared.now_unix())
    }

    /// Every refresh token handed out (expired ones until they are dropped), never its text.
    pub fn refresh_tokens(&self) -> Vec<RefreshTokenInfo> {
        self.shared
            .state()
            .refresh_tokens
            .values()
            .map(|t| RefreshTokenInfo {
                tenant: t.tenant.clone(),
                client_id: t.client_id.clone(),
                roles: t.roles.clone(),
                expires_at: t.expires_at,
            })
            .collect()
    }

    /// The assertions Entra verified and accepted, oldest first (at most 10,000).
    pub fn verified_assertions(&self) -> Vec<VerifiedAssertion> {
        lock(&self.shared.audit).clone()
    }

    /// Requests to Entra's token endpoint, faulted and refused ones included.
    pub fn entra_calls(&self) -> u64 {
        self.shared.entra.stats().api_calls
    }

    /// Entra access tokens issued.
    pub fn entra_tokens_issued(&self) -> u64 {
        self.shared.entra.stats().counts.issued
    }

    /// Token requests Entra refused by its rules (not by injected faults).
    pub fn entra_refusals(&self) -> u64 {
        self.shared.entra.stats().counts.refused
    }

    /// Requests to ACR's `/oauth2/exchange`, faulted and refused ones included.
    pub fn exchange_calls(&self) -> u64 {
        self.shared.acr.stats().api_calls
    }

    /// Refresh tokens issued.
    pub fn refresh_tokens_issued(&self) -> u64 {
        self.shared.acr.stats().counts.issued
    }

    /// Exchanges ACR refused by its rules.
    pub fn exchange_refusals(&self) -> u64 {
        self.shared.acr.stats().counts.refused
    }

    /// `GET /v2/` requests whose Basic credentials were accepted.
    pub fn registry_logins(&self) -> u64 {
        self.shared.acr.stats().counts.logins
    }

    /// The verifier's discovery document fetches.
    pub fn discovery_fetches(&self) -> u64 {
        self.shared.verifier.discovery_fetches()
    }

    /// The verifier's JWKS fetches.
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.verifier.jwks_fetches()
    }

    /// Makes the next `count` calls to `endpoint` fail with `fault` (replacing any fault
    /// queued there): [`Fault::Hangup`] closes unanswered; [`Fault::Malformed`] answers 200
    /// with truncated JSON; [`Fault::Slow`] waits, then answers; [`Fault::Status`] answers that
    /// status with the service's error body (429 adds `Retry-After: 1`).
    pub fn fail_next(&self, endpoint: Endpoint, fault: Fault, count: u32) {
        match endpoint {
            Endpoint::Entra => self.shared.entra.fail_next(fault, count),
            Endpoint::Acr => self.shared.acr.fail_next(fault, count),
        }
    }

    /// Moves the fake's clock (assertion checks and token expiry) forward by `by`.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.entra.advance_clock(by);
        self.shared.acr.advance_clock(by);
    }
}

fn refused(status: u16, code: &'static str, message: &str) -> FakeError {
    FakeError::Refused {
        status,
        code,
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests;
