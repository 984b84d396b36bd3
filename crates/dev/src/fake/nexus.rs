//! A fake Sonatype Nexus Repository 3 (its security REST API for users) on 127.0.0.1 that
//! enforces what real Nexus enforces, for the broker's `nexus` registry kind: local users made,
//! listed and deleted through `/service/rest/v1/security/users`, and [`FakeNexus::authenticate`]
//! to check that a made user can log in and a deleted one cannot.
//!
//! Written from sonatype/nexus-public at aec50e47 (2025-02-04); each rule's doc comment in
//! `rules.rs` names its source. Rules kept:
//!
//! - Basic auth on every call: no, bad or non-active credentials are 401 with
//!   `WWW-Authenticate: BASIC realm="Sonatype Nexus Repository Manager"` and no body.
//! - Privileges through roles: `nx-users-create`, `nx-users-read`, `nx-users-delete` (or
//!   `nx-users-all`, or `nx-all`, which the built-in `nx-admin` role holds); else 403, no body.
//! - `ApiCreateUser` validation: `userId` not blank, names, address and password not empty, a
//!   well-formed address, `status` not null and one of the four values, `roles` not empty; 400
//!   with `[{"id":"PARAMETER <field>","message":...}]` listing every violation.
//! - An optional password rule (Nexus's `nexus.password.validator`): 400
//!   `[{"id":"*","message":...}]`.
//! - Role ids are NOT checked at creation (as in Nexus): an unknown one is stored and dropped
//!   when the user is read, so the user logs in but holds nothing.
//! - A duplicate `userId` is Nexus's unmapped `DuplicateUserException`: 500 with an
//!   `ERROR: (ID ...)` text body.
//! - Create answers 200 with the `ApiUser`; delete 204, an unknown user 404 (no body).
//! - The `userId` filter of the listing is a case-insensitive prefix; the listing is not paged;
//!   a `source` other than `default` lists nothing.
//!
//! | endpoint | answers |
//! | --- | --- |
//! | `GET /service/rest/v1/security/users?userId=&source=` | `[ApiUser]` |
//! | `POST /service/rest/v1/security/users` | 200 `ApiUser` |
//! | `DELETE /service/rest/v1/security/users/{userId}` | 204 |
//!
//! ```no_run
//! use svid_broker_dev::fake::nexus::{FakeNexus, NexusSpec};
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let nexus = FakeNexus::start(
//!     NexusSpec::new(["docker-pull", "docker-push"])
//!         .role("broker-ops", &["nx-users-create", "nx-users-read", "nx-users-delete"]),
//! )?;
//! nexus.add_user("broker", "Broker-password-1", &["broker-ops"])?;
//! println!("API at {}/service/rest", nexus.url());
//! # Ok(())
//! # }
//! ```

mod http;
mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use svid_broker_identity::secret::{ExposeSecret, SecretString, seal_string};
use zeroize::Zeroizing;

pub use crate::fake::harbor::{FakeError, Fault};
use crate::fake::random_alphanumeric;
use crate::fake::server::{Control, FakeServer, lock};
use rules::{ApiError, PasswordRule, State};

/// Largest request body read; larger ones get 413. Not a Nexus figure: the fake's bound.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most users held at once; creating more answers 500. The fake's bound.
pub const MAX_USERS: usize = rules::MAX_USERS;
/// The built-in administrator role, holding `nx-all`.
pub const ADMIN_ROLE: &str = rules::ADMIN_ROLE;

/// What to start: the roles that exist (and their privileges), the admin, a password rule.
#[derive(Debug, Clone)]
pub struct NexusSpec {
    roles: BTreeMap<String, BTreeSet<String>>,
    admin_user: String,
    admin_password: Option<SecretString>,
    password_rule: Option<PasswordRule>,
}

impl NexusSpec {
    /// A Nexus whose roles are `roles` (with no privileges of the users API: e.g. the Docker
    /// pull and push roles an operator made) plus the built-in [`ADMIN_ROLE`], the admin
    /// `admin` with a random password, and no password rule.
    pub fn new(roles: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            roles: roles
                .into_iter()
                .map(|r| (r.into(), BTreeSet::new()))
                .collect(),
            admin_user: "admin".to_owned(),
            admin_password: None,
            password_rule: None,
        }
    }

    /// Adds (or replaces) role `id` holding `privileges` (privilege ids such as
    /// `nx-users-read`).
    #[must_use]
    pub fn role(mut self, id: &str, privileges: &[&str]) -> Self {
        self.roles.insert(
            id.to_owned(),
            privileges.iter().map(|p| (*p).to_owned()).collect(),
        );
        self
    }

    /// The admin's user id and password.
    #[must_use]
    pub fn admin(mut self, user_id: &str, password: &str) -> Self {
        user_id.clone_into(&mut self.admin_user);
        self.admin_password = Some(SecretString::from(password.to_owned()));
        self
    }

    /// A password rule: at least `min_len` characters with an upper-case letter, a lower-case
    /// letter and a digit; other passwords are refused (400) with `message`.
    #[must_use]
    pub fn password_rule(mut self, min_len: usize, message: &str) -> Self {
        self.password_rule = Some(PasswordRule {
            min_len,
            message: message.to_owned(),
        });
        self
    }
}

/// A user as the fake holds it, without its password.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserInfo {
    /// The user id as created (`userId`), unique in the fake; the Basic auth user name.
    pub user_id: String,
    /// `firstName`.
    pub first_name: String,
    /// `lastName`.
    pub last_name: String,
    /// `emailAddress`.
    pub email: String,
    /// `active`, `locked`, `disabled` or `changepassword`.
    pub status: String,
    /// The roles that exist among those it was given (what the API lists).
    pub roles: Vec<String>,
    /// The roles it was given, unknown ones included.
    pub requested_roles: Vec<String>,
    /// Creation, Unix seconds (the fake's clock).
    pub created: i64,
}

/// Nexus's own counters, beside [`Control`]'s.
#[derive(Debug, Default)]
struct Counts {
    users_created: u64,
    users_deleted: u64,
}

/// What the server thread and the handle share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    control: Control<Counts>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Each operation checks before it changes anything, so a panic elsewhere cannot leave
        // the maps half-updated: keep serving.
        lock(&self.state)
    }
}

/// A running fake Nexus; dropping it stops the server and joins its thread.
#[derive(Debug)]
pub struct FakeNexus {
    shared: Arc<Shared>,
    admin_password: SecretString,
    server: FakeServer,
}

impl FakeNexus {
    /// Runs on its own thread with its own tokio runtime (so sync and async tests can both use
    /// it), plain HTTP on 127.0.0.1 at a free port; returns once it accepts connections.
    ///
    /// # Errors
    /// [`FakeError`] naming what could not be set up.
    pub fn start(spec: NexusSpec) -> Result<Self, FakeError> {
        let admin_password = match spec.admin_password {
            Some(p) => p,
            None => random_password()?,
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(
                &spec.admin_user,
                admin_password.expose_secret(),
                spec.roles,
                spec.password_rule,
                now,
            )),
            control: Control::default(),
        });
        let server =
            FakeServer::start("fake-nexus", Arc::clone(&shared)).map_err(FakeError::from_start)?;
        Ok(Self {
            shared,
            admin_password,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`; the API is at `url() + "/service/rest"`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The address it listens on: 127.0.0.1 and a free port.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `admin:<password>`, what the broker's credential file holds for this Nexus.
    pub fn admin_credential_line(&self) -> SecretString {
        let user = self.shared.state().admin_user.clone();
        seal_string(Zeroizing::new(format!(
            "{user}:{}",
            self.admin_password.expose_secret()
        )))
    }

    /// A local user made out of band, as an operator would in the UI (e.g. the broker's own
    /// account with a role holding the `nx-users-*` privileges, or a human user): active, with
    /// these roles. The API's validation and the password rule apply. Not counted in
    /// [`FakeNexus::users_created`].
    ///
    /// # Errors
    /// [`FakeError::Refused`] with the status the API would answer (400 a field or the
    /// password rule, 500 a duplicate id).
    pub fn add_user(&self, user_id: &str, password: &str, roles: &[&str]) -> Result<(), FakeError> {
        let body = serde_json::json!({
            "userId": user_id,
            "firstName": user_id,
            "lastName": "user",
            "emailAddress": format!("{user_id}@example.org"),
            "password": password,
            "status": "active",
            "roles": roles,
        });
        let now = self.shared.control.now_unix();
        let refused = |e: ApiError| {
            let (status, message) = match e {
                ApiError::Validation(list) => (
                    400,
                    list.into_iter()
                        .map(|(id, m)| format!("{id}: {m}"))
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                ApiError::Unexpected(what) => (500, what),
                other => (500, format!("{other:?}")),
            };
            FakeError::Refused {
                status,
                code: "nexus",
                message,
            }
        };
        let new = rules::decode_new_user(&body).map_err(refused)?;
        self.shared
            .state()
            .create_user(new, now)
            .map(|_| ())
            .map_err(refused)
    }

    /// Every local user (the admin included), by id; never a password.
    pub fn users(&self) -> Vec<UserInfo> {
        let state = self.shared.state();
        state
            .users
            .values()
            .map(|u| UserInfo {
                user_id: u.user_id.clone(),
                first_name: u.first_name.clone(),
                last_name: u.last_name.clone(),
                email: u.email.clone(),
                status: u.status.as_str().to_owned(),
                roles: state.effective_roles(u).into_iter().collect(),
                requested_roles: u.roles.iter().cloned().collect(),
                created: u.created,
            })
            .collect()
    }

    /// True when `user_id` can log in with `password` now (exists, active, right password):
    /// what Nexus's Basic auth (and its Docker login) would accept.
    pub fn authenticate(&self, user_id: &str, password: &str) -> bool {
        self.shared.state().password_matches(user_id, password)
    }

    /// Users created through `POST /service/rest/v1/security/users`.
    pub fn users_created(&self) -> u64 {
        self.shared.control.stats().counts.users_created
    }

    /// Users deleted through `DELETE /service/rest/v1/security/users/{userId}`.
    pub fn users_deleted(&self) -> u64 {
        self.shared.control.stats().counts.users_deleted
    }

    /// Requests under `/service/rest`, faulted ones included.
    pub fn api_calls(&self) -> u64 {
        self.shared.control.stats().api_calls
    }

    /// Makes the next `count` calls under `/service/rest` fail with `fault` (replacing any
    /// queued fault): [`Fault::Hangup`] closes unanswered; [`Fault::Malformed`] answers 200
    /// with truncated JSON; [`Fault::Slow`] waits, then answers; [`Fault::Status`] answers that
    /// status as Nexus would (401 with its realm, 403 and 404 with no body, 429 with
    /// `Retry-After: 1`, 5xx with an `ERROR:` text, other 4xx with a validation error list).
    pub fn fail_next(&self, fault: Fault, count: u32) {
        self.shared.control.fail_next(fault, count);
    }

    /// Moves the fake's clock (users' creation times) forward by `by`.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.control.advance_clock(by);
    }
}

/// 24 random characters with an upper-case letter, a lower-case letter and a digit.
fn random_password() -> Result<SecretString, FakeError> {
    random_alphanumeric("Aa1", 21).ok_or(FakeError::NotReady {
        waited: Duration::ZERO,
    })
}

#[cfg(test)]
mod tests;
