//! A fake Google (Security Token Service, IAM Credentials and an Artifact Registry login
//! check) on one 127.0.0.1 listener that enforces what Google enforces, for the broker's
//! `gar` registry kind.
//!
//! The operator's side: [`FakeGoogle::add_provider`] (a workload identity pool's OIDC
//! provider: its full name, the issuer URI it trusts, allowed audiences, an attribute
//! condition as the subjects it lets in; the attribute mapping is `google.subject =
//! assertion.sub`), [`FakeGoogle::add_service_account`],
//! [`FakeGoogle::grant_workload_identity_user`] (`roles/iam.workloadIdentityUser` for a
//! `principal://` or `principalSet://.../*` member) and [`FakeGoogle::set_registry_role`]
//! (`roles/artifactregistry.reader`/`writer`, for the Docker check). Rules kept:
//!
//! **STS `POST /v1/token`** (STS REST reference `v1/TopLevel/token`):
//! - A JSON body of at most [`MAX_BODY_BYTES`] (else 413); only the request message's fields
//!   (`grantType`, `audience`, `scope`, `requestedTokenType`, `subjectToken`,
//!   `subjectTokenType`, `options`): any other is refused as Google's JSON parser does
//!   (`Unknown name "x": Cannot find field.`). The form-encoded body STS also takes is not
//!   served.
//! - `grantType` the token exchange, `requestedTokenType` an access token, `subjectTokenType`
//!   `jwt` or `id_token`, `scope` including cloud-platform, all required: else 400
//!   `invalid_request` (the wording of a missing field is an inference).
//! - `audience` must be a provider's full name, else 400 `invalid_request` `Invalid value for
//!   "audience". This value should be the full resource name of the Identity Provider...`
//!   (google-github-actions/auth#60); an unknown provider is 400 `invalid_target` `The target
//!   service indicated by the "audience" parameters is invalid...` (auth#202).
//! - The JWT is verified against the provider's issuer URI ([`FederatedJwtVerifier`]:
//!   discovery, JWKS with refetch on an unknown `kid`, RS256, `exp`/`nbf`/`iat` on the fake's
//!   clock). An untrusted issuer is `invalid_grant` `The issuer in ID Token <iss> does not
//!   match the expected ones: <issuer uri>` (auth's TROUBLESHOOTING.md); an expired token
//!   `invalid_grant` `ID Token issued at <iat> is stale to sign-in.` (fullsend-ai/fullsend#705,
//!   an expired GitHub token); an unreachable issuer `invalid_grant` `Error connecting to the
//!   given credential's issuer.` (GoogleCloudPlatform/gcs-fuse-csi-driver#1471); other
//!   failures `invalid_grant` naming the rule (the wording is the fake's).
//! - `aud` must be one of the allowed audiences or, with none, the provider's name with or
//!   without `https:` (IAM `Oidc.allowedAudiences`), else `invalid_grant` `The audience in ID
//!   Token [<aud>] does not match the expected audience.` (observed at sts.googleapis.com).
//! - `google.subject` (the `sub`) at most 127 bytes (IAM `attributeMapping`), else
//!   `invalid_grant` `The size of mapped attribute google.subject exceeds the 127 bytes
//!   limit...` (the code is an inference; the text as google-github-actions reports it).
//! - The attribute condition false: `unauthorized_client` `The given credential is rejected by
//!   the attribute condition.` (terraform-example-foundation#1362). All STS refusals are 400
//!   (RFC 6749 section 5.2; the status of `unauthorized_client` is an inference).
//! - The answer: `{access_token, issued_token_type, token_type: "Bearer", expires_in: 3600}`,
//!   the token random and recorded with its principal for an hour.
//!
//! **IAM Credentials `POST /v1/projects/-/serviceAccounts/<email>:generateAccessToken`**
//! (REST reference `projects.serviceAccounts.generateAccessToken`):
//! - `Authorization: Bearer` a live federated token of this fake, else 401 `UNAUTHENTICATED`
//!   with Google's text; the project segment must be `-` (400).
//! - The body: only `delegates` (which must be empty here), `scope` (a non-empty array,
//!   required) and `lifetime` (`<n>s`, 1 to 3600, default 3600: "By default, the maximum
//!   allowed value is 1 hour"); else 400 `INVALID_ARGUMENT` (`The access token lifetime cannot
//!   exceed 3600 seconds.`, as google-github-actions/auth reports it).
//! - An unknown account is 404 `NOT_FOUND` `Not found; Gaia id not found for email <email>`
//!   (inference: a caller without project-wide permissions may see the 403 below instead).
//! - The caller's `principal://.../subject/<sub>` or its pool's `principalSet://.../*` must
//!   hold `roles/iam.workloadIdentityUser` on the account, else 403 `PERMISSION_DENIED`
//!   `Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not
//!   exist).`
//! - The answer: `{accessToken, expireTime}`, `expireTime` RFC 3339 UTC `Z`.
//!
//! **`GET /v2/`** with Basic `oauth2accesstoken:<access token>` answers 200 while the token
//! lives and its account has a registry role, else 401 with a Bearer challenge.
//!
//! Errors are Google's shapes: STS `{"error", "error_description"}`, IAM Credentials
//! `{"error": {"code", "message", "status"}}`.
//!
//! | endpoint | answers |
//! | --- | --- |
//! | `POST /v1/token` | 200 federated token |
//! | `POST /v1/projects/-/serviceAccounts/<email>:generateAccessToken` | 200 access token |
//! | `GET /v2/` | 200 / 401 |
//!
//! ```no_run
//! use svid_broker_dev::fake::google::FakeGoogle;
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let google = FakeGoogle::start()?;
//! let provider = "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/svid-broker/providers/broker";
//! google.add_provider(provider, "http://127.0.0.1:8443/federation", Vec::new(), None)?;
//! google.add_service_account("puller@my-project.iam.gserviceaccount.com");
//! google.grant_workload_identity_user(
//!     "puller@my-project.iam.gserviceaccount.com",
//!     "principalSet://iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/svid-broker/*",
//! )?;
//! println!("STS and IAM Credentials at {}", google.url());
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
use rules::{Provider, ServiceAccount, State, parse_provider};

/// Largest request body read; larger ones get 413. Not a Google figure: the fake's bound.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// STS's token exchange.
pub const STS_TOKEN_PATH: &str = "/v1/token";
/// `google.subject`'s limit, in bytes.
pub const MAX_GOOGLE_SUBJECT_BYTES: usize = rules::MAX_GOOGLE_SUBJECT_BYTES;
/// IAM Credentials' default maximum `lifetime`, in seconds.
pub const MAX_LIFETIME_SECS: u64 = rules::MAX_LIFETIME_SECS;

/// What a service account's Artifact Registry bindings reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryRole {
    /// `roles/artifactregistry.reader`: pull.
    Reader,
    /// `roles/artifactregistry.writer`: pull and push.
    Writer,
}

/// A JWT whose signature and times STS verified (whatever the provider's rules then said).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedJwtRecord {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `aud`.
    pub audiences: Vec<String>,
    /// The token header's `kid`: the key of the issuer's JWKS that verified it.
    pub kid: String,
}

/// The fake's own counters, beside [`Control`]'s.
#[derive(Debug, Default)]
struct Counts {
    exchanges: u64,
    sts_refusals: u64,
    generated: u64,
    generate_refusals: u64,
    registry_logins: u64,
}

/// What the server thread and the handle share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// STS's calls and faults, the clock, and every counter.
    sts: Control<Counts>,
    /// IAM Credentials' calls and faults.
    iam: Control<()>,
    verifier: FederatedJwtVerifier,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Each operation checks before it changes anything: keep serving after a panic.
        lock(&self.state)
    }
}

/// A running fake Google; dropping it stops the server and joins its thread.
#[derive(Debug)]
pub struct FakeGoogle {
    shared: Arc<Shared>,
    server: FakeServer,
}

impl FakeGoogle {
    /// Runs on its own thread with its own tokio runtime, plain HTTP on 127.0.0.1 at a free
    /// port, with no provider or account; returns once it accepts connections.
    ///
    /// # Errors
    /// [`FakeError`] naming what could not be set up.
    pub fn start() -> Result<Self, FakeError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            sts: Control::default(),
            iam: Control::default(),
            verifier: FederatedJwtVerifier::new(),
        });
        let server =
            FakeServer::start("fake-google", Arc::clone(&shared)).map_err(FakeError::from_start)?;
        Ok(Self { shared, server })
    }

    /// `http://127.0.0.1:PORT`: the STS, IAM Credentials and registry base URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The address it listens on: 127.0.0.1 and a free port.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Adds (or replaces) the OIDC provider `name` (its full resource name) trusting
    /// `issuer_uri` (compared exactly with the JWT's `iss`), accepting `allowed_audiences`
    /// (empty: its own name, with or without `https:`), and, when `allowed_subjects` is
    /// given, only JWTs whose `sub` is one of them (the attribute condition).
    ///
    /// # Errors
    /// [`FakeError::Refused`] 400 when `name` is not a provider's full name, past 256
    /// providers, or with more than 10 allowed audiences (IAM's limit).
    pub fn add_provider(
        &self,
        name: &str,
        issuer_uri: &str,
        allowed_audiences: Vec<String>,
        allowed_subjects: Option<Vec<String>>,
    ) -> Result<(), FakeError> {
        let Some(parsed) = parse_provider(name) else {
            return Err(invalid("not a workload identity pool provider's full name"));
        };
        if allowed_audiences.len() > 10 {
            return Err(invalid("at most 10 allowed audiences"));
        }
        let mut state = self.shared.state();
        if !state.providers.contains_key(name) && state.providers.len() >= rules::MAX_ENTRIES {
            return Err(invalid("too many providers (the fake's bound)"));
        }
        state.providers.insert(
            name.to_owned(),
            Provider {
                name: parsed,
                issuer_uri: issuer_uri.to_owned(),
                allowed_audiences,
                allowed_subjects,
            },
        );
        Ok(())
    }

    /// Adds the service account `email` (no bindings, no registry role) if it is not there;
    /// past 256 accounts a new one is ignored.
    pub fn add_service_account(&self, email: &str) {
        let mut state = self.shared.state();
        if state.service_accounts.len() < rules::MAX_ENTRIES {
            state.service_accounts.entry(email.to_owned()).or_default();
        }
    }

    /// Grants `member` (`principal://...subject/<sub>` or `principalSet://.../*`)
    /// `roles/iam.workloadIdentityUser` on the account `email`.
    ///
    /// # Errors
    /// [`FakeError::Refused`] 404 when there is no such account, 400 past 256 members.
    pub fn grant_workload_identity_user(&self, email: &str, member: &str) -> Result<(), FakeError> {
        self.with_account(email, |account| {
            if account.workload_identity_users.len() >= rules::MAX_ENTRIES {
                return Err(invalid("too many members (the fake's bound)"));
            }
            account.workload_identity_users.insert(member.to_owned());
            Ok(())
        })
    }

    /// Removes `member`'s `roles/iam.workloadIdentityUser` on the account `email`.
    ///
    /// # Errors
    /// [`FakeError::Refused`] 404 when there is no such account.
    pub fn revoke_workload_identity_user(
        &self,
        email: &str,
        member: &str,
    ) -> Result<(), FakeError> {
        self.with_account(email, |account| {
            account.workload_identity_users.remove(member);
            Ok(())
        })
    }

    /// Sets what the account `email`'s Artifact Registry bindings reach (`None`: nothing).
    ///
    /// # Errors
    /// [`FakeError::Refused`] 404 when there is no such account.
    pub fn set_registry_role(
        &self,
        email: &str,
        role: Option<RegistryRole>,
    ) -> Result<(), FakeError> {
        self.with_account(email, |account| {
            account.role = role;
            Ok(())
        })
    }

    /// `principal://iam.googleapis.com/projects/<n>/locations/global/workloadIdentityPools/
    /// <pool>/subject/<subject>` for the pool of `provider` (a full name); `None` when it is
    /// not one.
    pub fn principal(provider: &str, subject: &str) -> Option<String> {
        parse_provider(provider).map(|p| p.principal(subject))
    }

    /// `principalSet://iam.googleapis.com/projects/<n>/locations/global/workloadIdentityPools/
    /// <pool>/*` for the pool of `provider`; `None` when it is not a full name.
    pub fn pool_principal_set(provider: &str) -> Option<String> {
        parse_provider(provider).map(|p| p.pool_set())
    }

    /// The role the Docker check grants `access_token` now (a live access token of an account
    /// with a registry role), if any.
    pub fn registry_role(&self, access_token: &str) -> Option<RegistryRole> {
        self.shared
            .state()
            .registry_role(access_token, self.shared.sts.now_unix())
    }

    /// Every JWT whose signature and times verified, in order (at most 10,000).
    pub fn verified_jwts(&self) -> Vec<VerifiedJwtRecord> {
        self.shared.state().audit.clone()
    }

    /// Requests to STS's `/v1/token`, faulted ones included.
    pub fn sts_calls(&self) -> u64 {
        self.shared.sts.stats().api_calls
    }

    /// Requests to `generateAccessToken`, faulted ones included.
    pub fn generate_calls(&self) -> u64 {
        self.shared.iam.stats().api_calls
    }

    /// Federated tokens handed out.
    pub fn exchanges(&self) -> u64 {
        self.shared.sts.stats().counts.exchanges
    }

    /// Exchanges refused by the rules (not by injected faults).
    pub fn sts_refusals(&self) -> u64 {
        self.shared.sts.stats().counts.sts_refusals
    }

    /// Access tokens handed out.
    pub fn generated(&self) -> u64 {
        self.shared.sts.stats().counts.generated
    }

    /// `generateAccessToken` calls refused by the rules.
    pub fn generate_refusals(&self) -> u64 {
        self.shared.sts.stats().counts.generate_refusals
    }

    /// Docker checks whose credential was accepted.
    pub fn registry_logins(&self) -> u64 {
        self.shared.sts.stats().counts.registry_logins
    }

    /// The verifier's discovery document fetches.
    pub fn discovery_fetches(&self) -> u64 {
        self.shared.verifier.discovery_fetches()
    }

    /// The verifier's JWKS fetches.
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.verifier.jwks_fetches()
    }

    /// Makes the next `count` STS calls fail with `fault` (replacing any queued one):
    /// [`Fault::Hangup`] closes unanswered; [`Fault::Malformed`] answers 200 with truncated
    /// JSON; [`Fault::Slow`] waits, then answers; [`Fault::Status`] answers that status with
    /// an OAuth error body (`invalid_request` for 400, `invalid_client` 401, `access_denied`
    /// 403, `server_error` 5xx; 429 adds `Retry-After: 1`).
    pub fn fail_next_sts(&self, fault: Fault, count: u32) {
        self.shared.sts.fail_next(fault, count);
    }

    /// As [`Self::fail_next_sts`], for `generateAccessToken` (Google's error body).
    pub fn fail_next_generate(&self, fault: Fault, count: u32) {
        self.shared.iam.fail_next(fault, count);
    }

    /// Moves the fake's clock (JWT checks and token expiry) forward by `by`.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.sts.advance_clock(by);
    }

    fn with_account(
        &self,
        email: &str,
        change: impl FnOnce(&mut ServiceAccount) -> Result<(), FakeError>,
    ) -> Result<(), FakeError> {
        let mut state = self.shared.state();
        let Some(account) = state.service_accounts.get_mut(email) else {
            return Err(FakeError::Refused {
                status: 404,
                code: "NOT_FOUND",
                message: format!("service account {email} does not exist"),
            });
        };
        change(account)
    }
}

fn invalid(message: &str) -> FakeError {
    FakeError::Refused {
        status: 400,
        code: "INVALID_ARGUMENT",
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests;
