//! A fake Quay (3.13+ robot federation) on 127.0.0.1 that enforces what real Quay enforces,
//! for the broker's `quay` registry kind: `GET /oauth2/federation/robot/token` exchanges an
//! external OIDC JWT, sent as the password of Basic `<org>+<robot>`, for a one-hour robot
//! token, and `GET /v2/` tells whether a robot token works (200) or not (401).
//!
//! Written from quay/quay at ffba0c70 (2026-08-21); each rule's doc comment in `rules.rs`
//! names its source. Rules kept, in Quay's order:
//!
//! - The Basic header (`auth/basic.py` `_parse_basic_auth_header`): missing, not two
//!   space-separated parts with scheme `basic`, not base64 of UTF-8, or without a `:` is 401
//!   `{"error": ...}` with Quay's text; a user name without `+` is 401 `"Invalid robot"`.
//! - The robot must exist: else 400 `{"message": "Could not find robot with specified
//!   username"}` (`InvalidRobotException` is a `DataModelException`, which
//!   `endpoints/decorated.py` answers with 400 `{"message"}`).
//! - The JWT's `iss`, read unverified: a token that is not a JWT is an unhandled `DecodeError`
//!   (500, Flask's HTML page); no `iss` is 400 "Token does not contain issuer"; a robot
//!   without federation entries 400 "Robot does not have federated login configured"; an
//!   `iss` no entry names 400 "issuer `<iss>` not configured for this robot".
//! - Verification through the issuer's OIDC discovery and JWKS, fetched anew for every
//!   exchange (Quay builds a new `OIDCLoginService` per request), with
//!   [`FederatedJwtVerifier`]: a failure to fetch or find the key (`DiscoveryFailureException`,
//!   `PublicKeyLoadException`, which Quay does not catch: an unknown `kid` too) is 500; any
//!   other invalid token (signature, `exp`, a future `iat`, `kid` missing, discovery naming
//!   another issuer) is 400 "Invalid token: ...". `nbf` is not Quay's rule but the verifier's;
//!   the broker sets it to `iat`. Quay allows 30 s of clock skew on `exp`; the fake allows
//!   none (stricter, never looser).
//! - `aud` only when a matching entry lists audiences (the token's must include one): else
//!   400 "Invalid token: Audience doesn't match". Without, Quay logs that audience-less
//!   federation is deprecated.
//! - `sub` must equal a matching entry's subject exactly: else 400 "Token does not match
//!   robot".
//! - Success: 200 `{"token": <random>}`, valid [`ROBOT_TOKEN_LIFETIME`] on the fake's clock.
//!   A deleted robot's tokens stop working at once; a removed federation entry does not end
//!   tokens already issued (Quay's temporary tokens live to their `exp`).
//!
//! | endpoint | answers |
//! | --- | --- |
//! | `GET /oauth2/federation/robot/token` | `{"token"}`, or Quay's refusals above |
//! | `GET /v2/` | 200 `{}` with Basic `<org>+<robot>:<token>` while the token is valid; 401 |
//! | `GET /v2/auth?service=&scope=` | `{"token"}`: a registry token for a real docker-registry |
//!
//! `GET /v2/` accepting Basic stands for a docker login's whole round trip (Quay's real
//! `/v2/` wants a bearer token from its `/v2/auth` realm). The realm
//! (`endpoints/v2/v2auth.py`) takes Basic `<robot>:<robot token>` and signs a registry token
//! valid one hour (`TOKEN_VALIDITY_LIFETIME_S`) whose `access` holds, per requested
//! repository, the actions the robot's role allows (`pull` for read; `push` and `pull` for
//! write and admin; `*` too for admin), none for a repository it has no role on; bad
//! credentials are 401, no credentials and no scope 401, a scope that does not parse 400.
//! Quay signs with its instance key; the fake signs ES256 with an `x5c` leaf of its own CA
//! ([`FakeQuay::token_ca_pem`]), the form Debian's docker-registry 2.8 verifies.
//!
//! ```no_run
//! use svid_broker_dev::fake::quay::{FakeQuay, FederationEntry, QuayRole};
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let quay = FakeQuay::start()?;
//! quay.add_robot("team-a", "puller")?;
//! quay.grant_repository("team-a", "puller", "team-a/app", QuayRole::Read)?;
//! quay.set_federation(
//!     "team-a",
//!     "puller",
//!     vec![FederationEntry::new("https://broker.example.org", "spiffe://example.org/app")],
//! )?;
//! println!("exchange at {}/oauth2/federation/robot/token", quay.url());
//! # Ok(())
//! # }
//! ```

mod http;
mod rules;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use crate::fake::federation::FederatedJwtVerifier;
pub use crate::fake::harbor::{FakeError, Fault};
use crate::fake::jwt::TokenSigner;
use crate::fake::server::{Control, FakeServer, lock};
use rules::State;
use svid_broker_identity::secret::{ExposeSecret as _, SecretString};

/// How long a robot token lives (`TMP_ROBOT_TOKEN_VALIDITY_LIFETIME_S`, `data/model/user.py`).
pub const ROBOT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Most robots held; more are refused. The fake's bound.
pub const MAX_ROBOTS: usize = rules::MAX_ROBOTS;
/// Most live robot tokens held; the oldest go first past it. The fake's bound.
pub const MAX_TOKENS: usize = rules::MAX_TOKENS;
/// How long a registry token of the `/v2/auth` realm lives (`TOKEN_VALIDITY_LIFETIME_S`,
/// `endpoints/v2/v2auth.py`).
pub const REGISTRY_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// The registry tokens' `iss` (Quay's `SERVER_HOSTNAME`, as the registry's `auth.token.issuer`).
pub const TOKEN_ISSUER: &str = "fake-quay";

/// One federation entry of a robot: tokens of `issuer` whose `sub` is `subject` may become
/// the robot. Quay's API stores `{issuer, subject}`; `audiences` exists in the stored config
/// only (set out of band), and when not empty the token's `aud` must include one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FederationEntry {
    /// The issuer URL, compared with the token's `iss` exactly.
    pub issuer: String,
    /// The subject, compared with the token's `sub` exactly.
    pub subject: String,
    /// Accepted audiences; empty: `aud` is not checked.
    pub audiences: Vec<String>,
}

impl FederationEntry {
    /// An entry without audiences: any `aud` is accepted.
    pub fn new(issuer: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            subject: subject.into(),
            audiences: Vec::new(),
        }
    }

    /// The same entry, accepting only tokens whose `aud` includes one of `audiences`.
    #[must_use]
    pub fn with_audiences(
        mut self,
        audiences: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }
}

/// A repository permission of a robot (Quay's `read`, `write`, `admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum QuayRole {
    /// Pull.
    Read,
    /// Pull and push.
    Write,
    /// Pull, push and administer.
    Admin,
}

/// Quay's own counters, beside [`Control`]'s.
#[derive(Debug, Default)]
struct Counts {
    exchanges: u64,
    refusals: u64,
    tokens_issued: u64,
}

/// What the server thread and the handle share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    control: Control<Counts>,
    verifier: FederatedJwtVerifier,
    signer: TokenSigner,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Each operation checks before it changes anything: keep serving after a panic.
        lock(&self.state)
    }
}

/// A running fake Quay; dropping it stops the server and joins its thread.
#[derive(Debug)]
pub struct FakeQuay {
    shared: Arc<Shared>,
    server: FakeServer,
}

impl FakeQuay {
    /// Runs on its own thread with its own tokio runtime, plain HTTP on 127.0.0.1 at a free
    /// port, with no robots; returns once it accepts connections.
    ///
    /// # Errors
    /// [`FakeError`] naming what could not be set up.
    pub fn start() -> Result<Self, FakeError> {
        let signer = TokenSigner::generate(TOKEN_ISSUER, std::time::SystemTime::now())
            .map_err(FakeError::Signer)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            control: Control::default(),
            verifier: FederatedJwtVerifier::new(),
            signer,
        });
        let server =
            FakeServer::start("fake-quay", Arc::clone(&shared)).map_err(FakeError::from_start)?;
        Ok(Self { shared, server })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The address it listens on: 127.0.0.1 and a free port.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `url() + "/v2/auth"`, a docker-registry's `auth.token.realm`; its `service` is what
    /// the client sends (Quay writes it into `aud` as it is), its `issuer` [`TOKEN_ISSUER`].
    pub fn token_realm(&self) -> String {
        format!("{}/v2/auth", self.url())
    }

    /// A token for robot `<org>+<short>` valid one hour on the fake's clock, as an operator
    /// gets one out of band (Quay shows each robot's token in its UI): for tests that seed an
    /// image before the broker is involved. Refused for a robot that does not exist.
    ///
    /// # Errors
    /// [`FakeError::Refused`] for an unknown robot (or, status 500, a failed random
    /// generator).
    pub fn robot_token(&self, org: &str, short: &str) -> Result<SecretString, FakeError> {
        let robot = format!("{org}+{short}");
        self.shared.state().federation_of(&robot).map_err(refused)?;
        let Some(token) = crate::fake::random_alphanumeric("", 64) else {
            return Err(refused(rules::Refusal {
                status: 500,
                message: "random generator failed".to_owned(),
            }));
        };
        let lifetime = i64::try_from(ROBOT_TOKEN_LIFETIME.as_secs()).unwrap_or(i64::MAX);
        let now = self.shared.control.now_unix();
        self.shared
            .state()
            .issue(&robot, token.expose_secret(), now.saturating_add(lifetime));
        Ok(token)
    }

    /// PEM of the CA whose leaf signs registry tokens (the registry's `rootcertbundle`).
    pub fn token_ca_pem(&self) -> String {
        self.shared.signer.ca_pem().to_owned()
    }

    /// Creates robot `<org>+<short>` (the organization exists implicitly), without
    /// federation or permissions.
    ///
    /// # Errors
    /// [`FakeError::Refused`]: 400 when `org` or `short` breaks Quay's name rule (runs of
    /// `[a-z0-9]` joined by single `.`, `_` or `-`, 2 to 255 characters) or the robot
    /// exists, 500 past [`MAX_ROBOTS`].
    pub fn add_robot(&self, org: &str, short: &str) -> Result<(), FakeError> {
        self.shared.state().add_robot(org, short).map_err(refused)
    }

    /// Deletes robot `<org>+<short>`: its exchanges are refused and its tokens stop working.
    ///
    /// # Errors
    /// [`FakeError::Refused`] 404 when there is no such robot.
    pub fn delete_robot(&self, org: &str, short: &str) -> Result<(), FakeError> {
        self.shared
            .state()
            .delete_robot(org, short)
            .map_err(refused)
    }

    /// Replaces the robot's federation entries (`POST .../robots/<short>/federation`); an
    /// empty list removes federation. Tokens already issued stay valid to their expiry.
    ///
    /// # Errors
    /// [`FakeError::Refused`]: 404 no such robot; 400 an entry with an empty issuer or
    /// subject, an issuer that is not `http(s)://`, or a duplicate (Quay's
    /// `_parse_federation_config`).
    pub fn set_federation(
        &self,
        org: &str,
        short: &str,
        entries: Vec<FederationEntry>,
    ) -> Result<(), FakeError> {
        self.shared
            .state()
            .set_federation(org, short, entries)
            .map_err(refused)
    }

    /// Gives the robot `role` on `repository` (`<org>/<name>`, in the robot's organization).
    ///
    /// # Errors
    /// [`FakeError::Refused`]: 404 no such robot; 400 a repository outside its organization.
    pub fn grant_repository(
        &self,
        org: &str,
        short: &str,
        repository: &str,
        role: QuayRole,
    ) -> Result<(), FakeError> {
        self.shared
            .state()
            .grant_repository(org, short, repository, role)
            .map_err(refused)
    }

    /// The robot's role on `repository`, if any.
    pub fn role_of(&self, org: &str, short: &str, repository: &str) -> Option<QuayRole> {
        self.shared.state().role_of(org, short, repository)
    }

    /// True when `username:token` is a live robot token now (what `GET /v2/` answers 200 to).
    pub fn token_works(&self, username: &str, token: &str) -> bool {
        let now = self.shared.control.now_unix();
        self.shared.state().token_works(username, token, now)
    }

    /// Successful exchanges.
    pub fn exchanges(&self) -> u64 {
        self.shared.control.stats().counts.exchanges
    }

    /// Exchanges Quay's rules refused (injected faults are not counted).
    pub fn refusals(&self) -> u64 {
        self.shared.control.stats().counts.refusals
    }

    /// Robot tokens handed out (one per successful exchange).
    pub fn tokens_issued(&self) -> u64 {
        self.shared.control.stats().counts.tokens_issued
    }

    /// Requests to the exchange endpoint, faulted ones included.
    pub fn api_calls(&self) -> u64 {
        self.shared.control.stats().api_calls
    }

    /// Discovery documents fetched by the fake's verifier (one per verified exchange).
    pub fn discovery_fetches(&self) -> u64 {
        self.shared.verifier.discovery_fetches()
    }

    /// JWKS fetched by the fake's verifier.
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.verifier.jwks_fetches()
    }

    /// Makes the next `count` exchange requests fail with `fault` (replacing any queued
    /// fault): [`Fault::Hangup`] closes unanswered; [`Fault::Malformed`] answers 200 with
    /// truncated JSON; [`Fault::Slow`] waits, then answers; [`Fault::Status`] answers that
    /// status as Quay's stack would (401 `{"error"}`, other 4xx `{"message"}`, 429 with
    /// `Retry-After: 1`, 5xx Flask's HTML page).
    pub fn fail_next(&self, fault: Fault, count: u32) {
        self.shared.control.fail_next(fault, count);
    }

    /// Moves the fake's clock (token expiry, the verifier's now) forward by `by`.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.control.advance_clock(by);
    }
}

fn refused(e: rules::Refusal) -> FakeError {
    FakeError::Refused {
        status: e.status,
        code: "quay",
        message: e.message,
    }
}

#[cfg(test)]
mod tests;
