//! A fake Harbor (v2.0 API and core's token service) on 127.0.0.1 that enforces what real
//! Harbor enforces, for the broker's `harbor` registry kind: robots made, listed and deleted
//! through `/api/v2.0`, and registry tokens from `/service/token` that Debian's real
//! docker-registry 2.8 accepts.
//!
//! Written from goharbor/harbor at c50c7dd (2026-08-21): `api/v2.0/swagger.yaml`,
//! `src/server/v2.0/handler/robot.go`, `src/controller/robot/controller.go`,
//! `src/core/service/token/`, `src/server/middleware/security/` and `src/common/rbac/`. Each
//! rule's doc comment in `rules.rs` names its file. Deliberate differences from Harbor:
//! registry tokens are ES256 with an `x5c` chain to [`FakeHarbor::token_ca_pem`] (Harbor signs
//! RS256 with a `kid`), and only the endpoints below exist.
//!
//! | endpoint | answers |
//! | --- | --- |
//! | `GET /api/v2.0/projects?name=&public=&page=&page_size=` | projects the caller may see |
//! | `GET /api/v2.0/projects/{name_or_id}` (`X-Is-Resource-Name`) | one project (`project:read`) |
//! | `POST /api/v2.0/robots` | 201 `RobotCreated` + `Location` |
//! | `GET /api/v2.0/robots?q=Level=project,ProjectID=N&page=&page_size=&sort=` | robots, `X-Total-Count` |
//! | `GET /api/v2.0/robots/{id}`, `DELETE /api/v2.0/robots/{id}` | one robot / 200 |
//! | `GET /service/token?service=&scope=` | `{token, access_token, expires_in, issued_at}` |
//!
//! ```no_run
//! use svid_broker_dev::fake::harbor::{FakeHarbor, HarborSpec};
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let harbor = FakeHarbor::start(HarborSpec::new(["team-a", "team-b"]))?;
//! let manager = harbor.add_robot("team-a", "broker", &[("robot", "create"), ("robot", "list"),
//!     ("robot", "delete"), ("repository", "pull"), ("repository", "push")], -1)?;
//! println!("API at {}/api/v2.0, manager {}", harbor.url(), manager.name);
//! # Ok(())
//! # }
//! ```

mod decode;
mod http;
mod policies;
mod rules;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use svid_broker_identity::secret::{ExposeSecret, SecretString, seal_string};
use zeroize::Zeroizing;

use crate::fake::jwt::{SignerError, TokenSigner};
use crate::fake::random_alphanumeric;
use crate::fake::server::{Control, FakeServer, StartError, lock};
use rules::{Project, State};

/// The token service's default `service` (`src/core/service/token/creator.go`, `Registry`).
pub const DEFAULT_REGISTRY_SERVICE: &str = "harbor-registry";
/// Harbor's token issuer (`src/pkg/token/claims/v2/claims.go`, `Issuer`).
pub const DEFAULT_TOKEN_ISSUER: &str = "harbor-token-issuer";
/// Harbor's default `token_expiration` (30 minutes).
pub const DEFAULT_REGISTRY_TOKEN_TTL: Duration = Duration::from_secs(30 * 60);
/// Largest request body read; larger ones get 413. Not a Harbor figure: the fake's bound.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most robots held at once; creating more answers 500. The fake's bound.
pub const MAX_ROBOTS: usize = rules::MAX_ROBOTS;

/// What to start: the projects that exist and the credentials and token settings.
#[derive(Debug, Clone)]
pub struct HarborSpec {
    projects: Vec<(String, bool)>,
    admin_user: String,
    admin_password: Option<SecretString>,
    service: String,
    issuer: String,
    token_ttl: Duration,
}

impl HarborSpec {
    /// A Harbor whose projects are `projects` (private, ids 1, 2, … in this order), with the
    /// admin `admin` and a random password, service [`DEFAULT_REGISTRY_SERVICE`], issuer
    /// [`DEFAULT_TOKEN_ISSUER`] and tokens valid [`DEFAULT_REGISTRY_TOKEN_TTL`].
    pub fn new(projects: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let mut spec = Self {
            projects: Vec::new(),
            admin_user: "admin".to_owned(),
            admin_password: None,
            service: DEFAULT_REGISTRY_SERVICE.to_owned(),
            issuer: DEFAULT_TOKEN_ISSUER.to_owned(),
            token_ttl: DEFAULT_REGISTRY_TOKEN_TTL,
        };
        for p in projects {
            spec.add_project(p.into(), false);
        }
        spec
    }

    /// Adds `project` as a public project (anyone may pull and read it), or makes it public.
    #[must_use]
    pub fn public_project(mut self, project: &str) -> Self {
        self.add_project(project.to_owned(), true);
        self
    }

    /// The admin's user name and password.
    #[must_use]
    pub fn admin(mut self, username: &str, password: &str) -> Self {
        username.clone_into(&mut self.admin_user);
        self.admin_password = Some(SecretString::from(password.to_owned()));
        self
    }

    /// The token service's `service` (the tokens' `aud`); other values get 400.
    #[must_use]
    pub fn registry_service(mut self, service: &str) -> Self {
        service.clone_into(&mut self.service);
        self
    }

    /// The tokens' `iss`.
    #[must_use]
    pub fn token_issuer(mut self, issuer: &str) -> Self {
        issuer.clone_into(&mut self.issuer);
        self
    }

    /// How long registry tokens are valid (`expires_in`, `exp - iat`), in whole seconds.
    #[must_use]
    pub fn registry_token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    fn add_project(&mut self, name: String, public: bool) {
        match self.projects.iter_mut().find(|(n, _)| *n == name) {
            Some(existing) => existing.1 |= public,
            None => self.projects.push((name, public)),
        }
    }
}

/// How the next `/api/v2.0` calls fail ([`FakeHarbor::fail_next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Close the connection without answering.
    Hangup,
    /// Answer 200 (201 for `POST`) with a body that is not the schema (truncated JSON).
    Malformed,
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// Answer this status with Harbor's errors body (429 adds `Retry-After: 1`).
    Status(u16),
}

/// Why the fake could not start or could not make a robot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FakeError {
    /// The listener could not be bound or set up.
    #[error("cannot listen on 127.0.0.1")]
    Listen(#[source] std::io::Error),
    /// The server thread or its runtime could not start.
    #[error("cannot start the fake's thread")]
    Thread(#[source] std::io::Error),
    /// The server thread did not report ready within the start timeout.
    #[error("the fake did not start within {waited:?}")]
    NotReady {
        /// How long the start waited: the fakes' start timeout (10 s); zero when the Nexus fake's
        /// random generator failed instead.
        waited: Duration,
    },
    /// The token signing material could not be made.
    #[error("cannot make the token signer")]
    Signer(#[source] SignerError),
    /// [`FakeHarbor::add_robot`] was refused by Harbor's rules (`status`, `code` and `message`
    /// as the API would answer).
    #[error("robot refused: {status} {code}: {message}")]
    Refused {
        /// The HTTP status the API would answer.
        status: u16,
        /// Harbor's error code.
        code: &'static str,
        /// Harbor's message.
        message: String,
    },
}

/// A robot's credentials: the full name (`robot$<project>+<name>`) and its secret.
#[derive(Debug)]
#[non_exhaustive]
pub struct RobotSecret {
    /// `robot$<project>+<name>`.
    pub name: String,
    /// The secret Harbor generated (shown once).
    pub secret: SecretString,
}

/// A robot as the fake holds it, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RobotInfo {
    /// Harbor's id.
    pub id: i64,
    /// The full name, `robot$<project>+<name>` (system robots: `robot$<name>`).
    pub name: String,
    /// The project a project robot belongs to; `None` for a system robot.
    pub project: Option<String>,
    /// The description as given at creation (empty when none; at most 1024 bytes).
    pub description: String,
    /// Creation, Unix seconds (the fake's clock).
    pub creation_time: i64,
    /// Expiry, Unix seconds; -1 for never.
    pub expires_at: i64,
    /// Whether it was created disabled.
    pub disabled: bool,
    /// Its (resource, action) pairs, over all its permissions.
    pub access: Vec<(String, String)>,
}

/// Harbor's own counters, beside [`Control`]'s.
#[derive(Debug, Default)]
struct Counts {
    robots_created: u64,
    robots_deleted: u64,
}

/// What the server thread and the handle share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    control: Control<Counts>,
    signer: TokenSigner,
    service: String,
    issuer: String,
    token_ttl: Duration,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way later
        // calls could misread (each operation checks before it inserts), so keep serving.
        lock(&self.state)
    }
}

/// A running fake Harbor; dropping it stops the server and joins its thread.
#[derive(Debug)]
pub struct FakeHarbor {
    shared: Arc<Shared>,
    admin_password: SecretString,
    server: FakeServer,
}

impl FakeHarbor {
    /// Runs on its own thread with its own tokio runtime (so sync and async tests can both use
    /// it), plain HTTP on 127.0.0.1 at a free port; returns once it accepts connections.
    ///
    /// # Errors
    /// [`FakeError`] naming what could not be set up.
    pub fn start(spec: HarborSpec) -> Result<Self, FakeError> {
        let admin_password = match spec.admin_password {
            Some(p) => p,
            None => random_password()?,
        };
        let now = SystemTime::now();
        let created = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let projects = spec
            .projects
            .iter()
            .zip(1..)
            .map(|((name, public), id)| Project {
                id,
                name: name.clone(),
                public: *public,
                created,
            })
            .collect();
        let signer = TokenSigner::generate(&spec.issuer, now).map_err(FakeError::Signer)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(
                &spec.admin_user,
                admin_password.expose_secret(),
                projects,
            )),
            control: Control::default(),
            signer,
            service: spec.service,
            issuer: spec.issuer,
            token_ttl: spec.token_ttl,
        });
        let server =
            FakeServer::start("fake-harbor", Arc::clone(&shared)).map_err(FakeError::from_start)?;
        Ok(Self {
            shared,
            admin_password,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`; the API is at `url() + "/api/v2.0"`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The address it listens on: 127.0.0.1 and a free port.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `url() + "/service/token"`, the registry's `auth.token.realm`.
    pub fn token_realm(&self) -> String {
        format!("{}/service/token", self.url())
    }

    /// The token service's `service` (the tokens' `aud`).
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// The tokens' `iss`.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// PEM of the CA whose leaf signs registry tokens (the registry's `rootcertbundle`).
    pub fn token_ca_pem(&self) -> String {
        self.shared.signer.ca_pem().to_owned()
    }

    /// `admin:<password>`, what the broker's credential file holds for this Harbor.
    pub fn admin_credential_line(&self) -> SecretString {
        let user = self.shared.state().admin_user().to_owned();
        seal_string(Zeroizing::new(format!(
            "{user}:{}",
            self.admin_password.expose_secret()
        )))
    }

    /// A robot made out of band, as an operator would in the UI (e.g. the broker's manager
    /// robot): one permission of kind `project` in `project` with these (resource, action)
    /// pairs, stored with an EMPTY effect as UI-made robots are. Harbor's name, pair and
    /// duration rules apply. Not counted in [`FakeHarbor::robots_created`].
    ///
    /// # Errors
    /// [`FakeError::Refused`] with the status the API would answer (unknown project 404, bad
    /// name or pair 400, duplicate 409).
    pub fn add_robot(
        &self,
        project: &str,
        name: &str,
        access: &[(&str, &str)],
        duration_days: i64,
    ) -> Result<RobotSecret, FakeError> {
        let now = self.shared.control.now_unix();
        let created = self
            .shared
            .state()
            .add_robot(project, name, access, duration_days, now)
            .map_err(|e| FakeError::Refused {
                status: e.status,
                code: e.code,
                message: e.message,
            })?;
        Ok(RobotSecret {
            name: created.name,
            secret: seal_string(created.secret),
        })
    }

    /// Every robot, by id.
    pub fn robots(&self) -> Vec<RobotInfo> {
        let state = self.shared.state();
        state
            .robots
            .values()
            .map(|r| RobotInfo {
                id: r.id,
                name: r.full_name(),
                project: state
                    .projects
                    .iter()
                    .find(|p| p.id == r.project_id)
                    .map(|p| p.name.clone()),
                description: r.description.clone(),
                creation_time: r.created,
                expires_at: r.expires_at,
                disabled: r.disabled,
                access: r
                    .permissions
                    .iter()
                    .flat_map(|p| p.access.iter())
                    .map(|a| (a.resource.clone(), a.action.clone()))
                    .collect(),
            })
            .collect()
    }

    /// Robots created through `POST /api/v2.0/robots`.
    pub fn robots_created(&self) -> u64 {
        self.shared.control.stats().counts.robots_created
    }

    /// Robots deleted through `DELETE /api/v2.0/robots/{id}`.
    pub fn robots_deleted(&self) -> u64 {
        self.shared.control.stats().counts.robots_deleted
    }

    /// Requests under `/api/v2.0`, faulted ones included.
    pub fn api_calls(&self) -> u64 {
        self.shared.control.stats().api_calls
    }

    /// Makes the next `count` `/api/v2.0` calls fail with `fault` (replacing any queued fault).
    pub fn fail_next(&self, fault: Fault, count: u32) {
        self.shared.control.fail_next(fault, count);
    }

    /// Moves the fake's clock (robot expiry, token times) forward by `by`.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.control.advance_clock(by);
    }
}

impl FakeError {
    /// Also Nexus's, which shares this error type.
    pub(super) fn from_start(e: StartError) -> Self {
        match e {
            StartError::Listen(e) => Self::Listen(e),
            StartError::Thread(e) => Self::Thread(e),
            StartError::NotReady { waited } => Self::NotReady { waited },
        }
    }
}

/// 24 random characters that meet Harbor's password rules (upper, lower, digit).
fn random_password() -> Result<SecretString, FakeError> {
    random_alphanumeric("Aa1", 21).ok_or(FakeError::Signer(SignerError::KeyGeneration))
}

#[cfg(test)]
mod tests;
