//! A fake JFrog Platform (Access's OIDC token exchange and Artifactory's Docker login check)
//! on 127.0.0.1 that enforces what the real one enforces, for the broker's `artifactory`
//! registry kind.
//!
//! The operator's side is [`FakeArtifactory::add_provider`] (an OIDC integration: its name, the
//! issuer URL it trusts, an optional audience) and [`FakeArtifactory::add_identity_mapping`]
//! (claims that must all match, a priority, and the token spec). Rules kept:
//!
//! - `POST /access/api/v1/oidc/token` takes a JSON body of at most [`MAX_BODY_BYTES`] (else
//!   413); `grant_type` must be `urn:ietf:params:oauth:grant-type:token-exchange` and
//!   `subject_token_type` `urn:ietf:params:oauth:token-type:id_token` exactly; `subject_token`
//!   and `provider_name` are required; optional fields must have their types (JFrog REST docs,
//!   "OIDC Token Exchange"). Each violation is 400 `BAD_REQUEST`.
//! - The named integration must exist (400; the status is an inference).
//! - The JWT is verified as an OIDC relying party does, trusting only the integration's issuer
//!   ([`FederatedJwtVerifier`]: discovery, JWKS with refetch on an unknown `kid`, RS256,
//!   `exp`/`nbf`/`iat` on the fake's clock). A failure is 400 `BAD_REQUEST` naming the rule.
//! - When the integration has an audience, the JWT's `aud` must contain it: 400 `Invalid
//!   audience`, as Access answers (jfrog/setup-jfrog-cli#270).
//! - The identity mappings are tried by priority (lower first); the first whose every claim
//!   equals the JWT's (exact JSON equality) gives the token spec; `identity_mapping_name`
//!   restricts the choice to that mapping. None matching is 401 `UNAUTHORIZED` (inference).
//! - The answer is 200 `{access_token, token_type: "Bearer", expires_in, scope,
//!   issued_token_type, username}` (jfrog/jfrog-credentials-provider's `OidcAccessResponse`).
//! - Errors are Access's `{"errors":[{"code","message"}]}`.
//! - `GET /v2/` and `GET /artifactory/api/docker/<repo>/v2/` with Basic
//!   `<username>:<access token>` answer 200 while the token lives on the fake's clock, else
//!   401 with `WWW-Authenticate: Basic realm="Artifactory Realm"` and Artifactory's
//!   `{"errors":[{"status":401,"message":"Bad credentials"}]}`.
//!
//! Tokens are not revocable here either: the fake has no revocation endpoint, as tokens under
//! the persistency threshold are not stored by Access. There is no Docker Bearer token realm
//! (a real `docker-registry` cannot be put behind this fake).
//!
//! | endpoint | answers |
//! | --- | --- |
//! | `POST /access/api/v1/oidc/token` | 200 access token |
//! | `GET /v2/`, `GET /artifactory/api/docker/<repo>/v2/` | 200 / 401 |
//!
//! ```no_run
//! use svid_broker_dev::fake::artifactory::{FakeArtifactory, TokenSpec};
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let jfrog = FakeArtifactory::start()?;
//! jfrog.add_provider("svid-broker", "https://broker.example.org", Some(jfrog.url()));
//! let mut claims = serde_json::Map::new();
//! claims.insert("svid_broker_access".into(), "pull".into());
//! jfrog.add_identity_mapping(
//!     "svid-broker",
//!     "pull",
//!     1,
//!     claims,
//!     TokenSpec::new("svid-puller", "applied-permissions/groups:readers", 300),
//! )?;
//! println!("Access at {}/access", jfrog.url());
//! # Ok(())
//! # }
//! ```

mod http;
mod rules;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::fake::federation::FederatedJwtVerifier;
pub use crate::fake::harbor::{FakeError, Fault};
use crate::fake::server::{Control, FakeServer, lock};
use rules::{Mapping, Provider, State};

/// Largest request body read; larger ones get 413. Not a JFrog figure: the fake's bound.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most access tokens held at once (expired ones are dropped first). The fake's bound.
pub const MAX_TOKENS: usize = rules::MAX_TOKENS;
/// The token exchange's path (`/access/api/v1/oidc/token`), relative to [`FakeArtifactory::url`].
pub const OIDC_TOKEN_PATH: &str = http::OIDC_TOKEN;

/// What an identity mapping's token gets: Access's `token_spec`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenSpec {
    /// The username the token is for (a transient user when no such user exists).
    pub username: String,
    /// The scope (`applied-permissions/groups:readers`, ...), echoed in the answer.
    pub scope: String,
    /// The token's lifetime in seconds.
    pub expires_in: u64,
}

impl TokenSpec {
    /// A token spec; `expires_in` is in seconds.
    pub fn new(username: impl Into<String>, scope: impl Into<String>, expires_in: u64) -> Self {
        Self {
            username: username.into(),
            scope: scope.into(),
            expires_in,
        }
    }
}

/// An access token as the fake holds it, without its text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenInfo {
    /// The username it was issued for: the matched mapping's `token_spec` username.
    pub username: String,
    /// Its scope.
    pub scope: String,
    /// The OIDC integration's name, as the exchange request's `provider_name` gave it.
    pub provider: String,
    /// The name of the identity mapping that matched.
    pub mapping: String,
    /// The JWT's `sub`.
    pub subject: String,
    /// When it expires, Unix seconds on the fake's clock.
    pub expires_at: i64,
}

/// The fake's own counters, beside [`Control`]'s.
#[derive(Debug, Default)]
struct Counts {
    exchanges: u64,
    refusals: u64,
    registry_logins: u64,
}

/// What the server thread and the handle share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    control: Control<Counts>,
    verifier: FederatedJwtVerifier,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Each operation checks before it changes anything: keep serving after a panic.
        lock(&self.state)
    }
}

/// A running fake JFrog Platform; dropping it stops the server and joins its thread.
#[derive(Debug)]
pub struct FakeArtifactory {
    shared: Arc<Shared>,
    server: FakeServer,
}

impl FakeArtifactory {
    /// Runs on its own thread with its own tokio runtime, plain HTTP on 127.0.0.1 at a free
    /// port, with no integration; returns once it accepts connections.
    ///
    /// # Errors
    /// [`FakeError`] naming what could not be set up.
    pub fn start() -> Result<Self, FakeError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            control: Control::default(),
            verifier: FederatedJwtVerifier::new(),
        });
        let server = FakeServer::start("fake-artifactory", Arc::clone(&shared))
            .map_err(FakeError::from_start)?;
        Ok(Self { shared, server })
    }

    /// `http://127.0.0.1:PORT`, the platform's base URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The address it listens on: 127.0.0.1 and a free port.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Adds (or replaces, keeping its mappings) the OIDC integration `name` trusting
    /// `issuer_url` (compared exactly with the JWT's `iss`), with an audience the JWT's `aud`
    /// must contain, if any. Past 64 integrations a new one is ignored.
    pub fn add_provider(&self, name: &str, issuer_url: &str, audience: Option<String>) {
        let mut state = self.shared.state();
        if let Some(provider) = state.providers.get_mut(name) {
            issuer_url.clone_into(&mut provider.issuer_url);
            provider.audience = audience;
            return;
        }
        if state.providers.len() < rules::MAX_PROVIDERS {
            state.providers.insert(
                name.to_owned(),
                Provider {
                    issuer_url: issuer_url.to_owned(),
                    audience,
                    mappings: Vec::new(),
                },
            );
        }
    }

    /// Adds (or replaces) identity mapping `name` of integration `provider`: a JWT whose
    /// every claim in `claims` has an equal value gets `spec`; mappings are tried by
    /// `priority`, lower first.
    ///
    /// # Errors
    /// [`FakeError::Refused`] 404 when there is no such integration, 400 past 64 mappings.
    pub fn add_identity_mapping(
        &self,
        provider: &str,
        name: &str,
        priority: u32,
        claims: Map<String, Value>,
        spec: TokenSpec,
    ) -> Result<(), FakeError> {
        let mut state = self.shared.state();
        let Some(integration) = state.providers.get_mut(provider) else {
            return Err(FakeError::Refused {
                status: 404,
                code: "NOT_FOUND",
                message: format!("OIDC integration '{provider}' was not found"),
            });
        };
        integration.mappings.retain(|m| m.name != name);
        if integration.mappings.len() >= rules::MAX_MAPPINGS {
            return Err(FakeError::Refused {
                status: 400,
                code: "BAD_REQUEST",
                message: "too many identity mappings (the fake's bound)".to_owned(),
            });
        }
        integration.mappings.push(Mapping {
            name: name.to_owned(),
            priority,
            claims,
            spec,
        });
        integration
            .mappings
            .sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
        Ok(())
    }

    /// True when `username` with `access_token` passes the registry API's Basic auth now (a
    /// token handed to that username, not expired on the fake's clock).
    pub fn authenticate(&self, username: &str, access_token: &str) -> bool {
        self.shared
            .state()
            .token_valid(username, access_token, self.shared.control.now_unix())
    }

    /// Every access token handed out (expired ones until they are dropped); never its text.
    pub fn tokens(&self) -> Vec<TokenInfo> {
        self.shared
            .state()
            .tokens
            .values()
            .map(|t| TokenInfo {
                username: t.username.clone(),
                scope: t.scope.clone(),
                provider: t.provider.clone(),
                mapping: t.mapping.clone(),
                subject: t.subject.clone(),
                expires_at: t.expires_at,
            })
            .collect()
    }

    /// Successful exchanges.
    pub fn exchanges(&self) -> u64 {
        self.shared.control.stats().counts.exchanges
    }

    /// Exchanges refused by the rules (not by injected faults).
    pub fn refusals(&self) -> u64 {
        self.shared.control.stats().counts.refusals
    }

    /// Registry API requests whose Basic credentials were accepted.
    pub fn registry_logins(&self) -> u64 {
        self.shared.control.stats().counts.registry_logins
    }

    /// Requests under `/access/api`, faulted ones included.
    pub fn api_calls(&self) -> u64 {
        self.shared.control.stats().api_calls
    }

    /// The verifier's discovery document fetches.
    pub fn discovery_fetches(&self) -> u64 {
        self.shared.verifier.discovery_fetches()
    }

    /// The verifier's JWKS fetches.
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.verifier.jwks_fetches()
    }

    /// Makes the next `count` calls under `/access/api` fail with `fault` (replacing any
    /// queued fault): [`Fault::Hangup`] closes unanswered; [`Fault::Malformed`] answers 200
    /// with truncated JSON; [`Fault::Slow`] waits, then answers; [`Fault::Status`] answers
    /// that status with Access's error body (429 adds `Retry-After: 1`).
    pub fn fail_next(&self, fault: Fault, count: u32) {
        self.shared.control.fail_next(fault, count);
    }

    /// Moves the fake's clock (JWT checks and token expiry) forward by `by`.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.control.advance_clock(by);
    }
}

#[cfg(test)]
mod tests;
