//! A fake GitLab (REST API v4, project deploy tokens) on 127.0.0.1 that enforces what real
//! GitLab enforces, for the broker's `gitlab` registry kind: deploy tokens made, listed and
//! revoked through `/api/v4/projects/:id/deploy_tokens` by callers holding a `PRIVATE-TOKEN`
//! with the Maintainer role.
//!
//! Written from GitLab's public documentation (deploy tokens API, REST API authentication,
//! status codes and pagination) and its deploy token model and API (`app/models/deploy_token.rb`,
//! `lib/api/deploy_tokens.rb`); each rule's doc comment in `rules.rs` says what it follows.
//! Deliberate differences from GitLab: only the endpoints below exist, bodies must be JSON
//! (GitLab also takes forms), an `expires_at` in the past is refused, and the registry token
//! service (`/jwt/auth`) serves deploy tokens only, signing ES256 with an `x5c` chain to
//! [`FakeGitlab::token_ca_pem`] (GitLab signs RS256 with a `kid`).
//!
//! | endpoint | answers |
//! | --- | --- |
//! | `GET /api/v4/projects/:id/deploy_tokens?active=&page=&per_page=` | tokens, `X-Total`, `X-Next-Page`, ... |
//! | `POST /api/v4/projects/:id/deploy_tokens` | 201 `DeployTokenWithToken` (the token, once) |
//! | `GET /api/v4/projects/:id/deploy_tokens/:token_id` | one token, without its value |
//! | `DELETE /api/v4/projects/:id/deploy_tokens/:token_id` | 204 |
//! | `GET /jwt/auth?service=container_registry&scope=` (Basic: deploy token) | `{token}` |
//!
//! `:id` is a project's number or its URL-encoded path (`team-a%2Fapp`). Every call needs a
//! valid `PRIVATE-TOKEN` (401 `{"message":"401 Unauthorized"}`); a project the caller is not
//! a member of answers like a missing one (404 `{"message":"404 Project Not Found"}`); a
//! member below Maintainer gets 403 `{"message":"403 Forbidden"}`.
//!
//! ```no_run
//! use svid_broker_dev::fake::gitlab::{FakeGitlab, GitlabSpec, Role};
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let gitlab = FakeGitlab::start(GitlabSpec::new(["team-a/app", "team-b/web"]))?;
//! let maintainer = gitlab.admin_token();
//! let developer = gitlab.add_user_token(Role::Developer, &["team-a/app"])?;
//! println!("API at {}/api/v4", gitlab.url());
//! # let _ = (maintainer, developer);
//! # Ok(())
//! # }
//! ```

mod http;
mod rules;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use svid_broker_identity::secret::{ExposeSecret as _, SecretString, seal_string};

use crate::fake::jwt::{SignerError, TokenSigner};
use crate::fake::random_alphanumeric;
use crate::fake::server::{Control, FakeServer, StartError, lock, unix_seconds};

/// How the next `/api/v4` calls fail ([`FakeGitlab::fail_next`]): the Harbor fake's faults.
/// `Status` answers GitLab's `{"message":"<status> <reason>"}` (429 adds `Retry-After: 1`);
/// `Malformed` answers 200 (201 for `POST`) with truncated JSON.
pub use crate::fake::harbor::Fault;
pub use rules::Role;
use rules::{DeployTokenCreate, Project, State};

/// The registry token service's `service` (the tokens' `aud`), GitLab's default.
pub const REGISTRY_SERVICE: &str = "container_registry";
/// The registry tokens' `iss`, GitLab's default.
pub const TOKEN_ISSUER: &str = "gitlab-issuer";
/// How long registry tokens are valid: GitLab's default `container_registry_token_expire_delay`
/// (5 minutes), which is also how long one outlives a revoked deploy token.
pub const REGISTRY_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);
/// Largest request body read; larger ones get 413. Not a GitLab figure: the fake's bound.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most deploy tokens held at once; creating more answers 500. The fake's bound.
pub const MAX_DEPLOY_TOKENS: usize = rules::MAX_DEPLOY_TOKENS;

/// What to start: the projects that exist.
#[derive(Debug, Clone)]
pub struct GitlabSpec {
    projects: Vec<String>,
}

impl GitlabSpec {
    /// A GitLab whose projects are `projects` (paths `group/project`, ids 1, 2, … in this
    /// order; repeats are ignored).
    pub fn new(projects: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let mut spec = Self {
            projects: Vec::new(),
        };
        for p in projects {
            let p = p.into();
            if !spec.projects.contains(&p) {
                spec.projects.push(p);
            }
        }
        spec
    }
}

/// Why the fake could not start or could not make what a test asked for.
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
        /// How long the start waited: the fakes' start timeout (10 s).
        waited: Duration,
    },
    /// The token signing material could not be made.
    #[error("cannot make the token signer")]
    Signer(#[source] SignerError),
    /// GitLab's rules refused it (`status` and `message` as the API would answer).
    #[error("refused: {status}: {message}")]
    Refused {
        /// The HTTP status the API would answer.
        status: u16,
        /// GitLab's message (`404 Project Not Found`, `Scopes can't be blank`, ...).
        message: String,
    },
}

/// A deploy token as the fake holds it, without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeployTokenInfo {
    /// GitLab's id.
    pub id: i64,
    /// The project's path.
    pub project: String,
    /// The token's name as given at creation.
    pub name: String,
    /// The username (given, or `gitlab+deploy-token-<id>`).
    pub username: String,
    /// Expiry, Unix seconds; `None` for never.
    pub expires_at: Option<i64>,
    /// The scopes, in GitLab's order.
    pub scopes: Vec<String>,
    /// Creation, Unix seconds (the fake's clock).
    pub created: i64,
}

/// A deploy token made out of band ([`FakeGitlab::add_deploy_token`]), with its value.
#[derive(Debug)]
#[non_exhaustive]
pub struct DeployTokenSecret {
    /// What the fake holds of the token (everything but its value).
    pub info: DeployTokenInfo,
    /// Its value (shown once).
    pub token: SecretString,
}

/// GitLab's own counters, beside [`Control`]'s.
#[derive(Debug, Default)]
struct Counts {
    tokens_created: u64,
    tokens_revoked: u64,
}

/// What the server thread and the handle share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    control: Control<Counts>,
    signer: TokenSigner,
    token_ttl: Duration,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Each operation checks before it changes anything, so a panic under the lock cannot
        // leave the state half-updated: keep serving.
        lock(&self.state)
    }
}

/// A running fake GitLab; dropping it stops the server and joins its thread.
#[derive(Debug)]
pub struct FakeGitlab {
    shared: Arc<Shared>,
    admin_token: SecretString,
    server: FakeServer,
}

impl FakeGitlab {
    /// Runs on its own thread with its own tokio runtime (so sync and async tests can both use
    /// it), plain HTTP on 127.0.0.1 at a free port; returns once it accepts connections.
    ///
    /// # Errors
    /// [`FakeError`] naming what could not be set up.
    pub fn start(spec: GitlabSpec) -> Result<Self, FakeError> {
        let projects = spec
            .projects
            .into_iter()
            .zip(1..)
            .map(|(path, id)| Project { id, path })
            .collect();
        let mut state = State::new(projects);
        let admin_token = random_access_token()?;
        state
            .add_user(admin_token.expose_secret(), Role::Maintainer, None)
            .map_err(refused)?;
        let signer =
            TokenSigner::generate(TOKEN_ISSUER, SystemTime::now()).map_err(FakeError::Signer)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            control: Control::default(),
            signer,
            token_ttl: REGISTRY_TOKEN_TTL,
        });
        let server =
            FakeServer::start("fake-gitlab", Arc::clone(&shared)).map_err(FakeError::from_start)?;
        Ok(Self {
            shared,
            admin_token,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`; the API is at `url() + "/api/v4"`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The address it listens on: 127.0.0.1 and a free port.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `url() + "/jwt/auth"`, the registry's `auth.token.realm`.
    pub fn token_realm(&self) -> String {
        format!("{}/jwt/auth", self.url())
    }

    /// PEM of the CA whose leaf signs registry tokens (the registry's `rootcertbundle`).
    pub fn token_ca_pem(&self) -> String {
        self.shared.signer.ca_pem().to_owned()
    }

    /// An access token whose user has the Maintainer role in every project: what the broker's
    /// credential file holds for this GitLab.
    pub fn admin_token(&self) -> SecretString {
        self.admin_token.clone()
    }

    /// A new access token whose user has `role` in `projects` (paths) and no access elsewhere.
    ///
    /// # Errors
    /// [`FakeError::Refused`] for an unknown project (404) or past the fake's token bound.
    pub fn add_user_token(&self, role: Role, projects: &[&str]) -> Result<SecretString, FakeError> {
        let token = random_access_token()?;
        self.shared
            .state()
            .add_user(token.expose_secret(), role, Some(projects))
            .map_err(refused)?;
        Ok(token)
    }

    /// A deploy token made out of band, as a person would in GitLab's UI, under GitLab's model
    /// rules (an `expires_at` in the past included). Not counted in
    /// [`FakeGitlab::tokens_created`].
    ///
    /// # Errors
    /// [`FakeError::Refused`] with the status the API would answer.
    pub fn add_deploy_token(
        &self,
        project: &str,
        name: &str,
        scopes: &[&str],
        expires_at: Option<SystemTime>,
    ) -> Result<DeployTokenSecret, FakeError> {
        let now = self.shared.control.now_unix();
        let request = DeployTokenCreate {
            name: name.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expires_at: expires_at.map(unix_seconds),
            username: None,
        };
        let mut state = self.shared.state();
        let project_id = state
            .projects
            .iter()
            .find(|p| p.path == project)
            .map(|p| p.id)
            .ok_or_else(|| refused(rules::ApiError::project_not_found()))?;
        let created = state
            .insert_token(project_id, &request, now)
            .map_err(refused)?;
        Ok(DeployTokenSecret {
            info: info(&state, &created.token),
            token: seal_string(created.value),
        })
    }

    /// Every deploy token, by id, without values.
    pub fn deploy_tokens(&self) -> Vec<DeployTokenInfo> {
        let state = self.shared.state();
        state.tokens.values().map(|t| info(&state, t)).collect()
    }

    /// Deploy tokens created through `POST /api/v4/projects/:id/deploy_tokens`.
    pub fn tokens_created(&self) -> u64 {
        self.shared.control.stats().counts.tokens_created
    }

    /// Deploy tokens revoked through `DELETE /api/v4/projects/:id/deploy_tokens/:token_id`.
    pub fn tokens_revoked(&self) -> u64 {
        self.shared.control.stats().counts.tokens_revoked
    }

    /// Requests under `/api/v4`, faulted and refused ones included.
    pub fn api_calls(&self) -> u64 {
        self.shared.control.stats().api_calls
    }

    /// Makes the next `count` `/api/v4` calls fail with `fault` (replacing any queued fault).
    pub fn fail_next(&self, fault: Fault, count: u32) {
        self.shared.control.fail_next(fault, count);
    }

    /// Moves the fake's clock (token expiry, `expired`, the `active` filter) forward by `by`.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.control.advance_clock(by);
    }
}

impl FakeError {
    fn from_start(e: StartError) -> Self {
        match e {
            StartError::Listen(e) => Self::Listen(e),
            StartError::Thread(e) => Self::Thread(e),
            StartError::NotReady { waited } => Self::NotReady { waited },
        }
    }
}

fn info(state: &State, t: &rules::DeployToken) -> DeployTokenInfo {
    DeployTokenInfo {
        id: t.id,
        project: state.project_path(t.project_id).unwrap_or("").to_owned(),
        name: t.name.clone(),
        username: t.username.clone(),
        expires_at: t.expires_at,
        scopes: t.scopes.clone(),
        created: t.created,
    }
}

/// The error as [`FakeError::Refused`]: GitLab's `message` (or `error`) text when it is one.
fn refused(e: rules::ApiError) -> FakeError {
    let message = match e.body {
        serde_json::Value::Object(mut body) => {
            match body.remove("message").or_else(|| body.remove("error")) {
                Some(serde_json::Value::String(text)) => text,
                Some(other) => other.to_string(),
                None => serde_json::Value::Object(body).to_string(),
            }
        }
        other => other.to_string(),
    };
    FakeError::Refused {
        status: e.status,
        message,
    }
}

/// `glpat-` and 20 random characters, the shape of a GitLab personal access token.
fn random_access_token() -> Result<SecretString, FakeError> {
    random_alphanumeric("glpat-", 20).ok_or_else(|| FakeError::Refused {
        status: 500,
        message: "the random number generator failed".to_owned(),
    })
}

#[cfg(test)]
mod tests;
