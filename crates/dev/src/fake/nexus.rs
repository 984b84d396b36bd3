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
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use svid_broker_identity::secret::{ExposeSecret, SecretString, seal_string};
use zeroize::Zeroizing;

pub use crate::fake::harbor::{FakeError, Fault};
use rules::{ApiError, PasswordRule, State};

/// Largest request body read; larger ones get 413. Not a Nexus figure: the fake's bound.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most users held at once; creating more answers 500. The fake's bound.
pub const MAX_USERS: usize = rules::MAX_USERS;
/// The built-in administrator role, holding `nx-all`.
pub const ADMIN_ROLE: &str = rules::ADMIN_ROLE;
/// How long [`FakeNexus::start`] waits for its thread to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// The user id.
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

/// Counters and the fault queue, beside the state.
#[derive(Debug, Default)]
struct Stats {
    api_calls: u64,
    users_created: u64,
    users_deleted: u64,
    fault: Option<(Fault, u32)>,
    clock_offset: Duration,
}

/// What the server thread and the handle share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    stats: Mutex<Stats>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Each operation checks before it changes anything, so a panic elsewhere cannot leave
        // the maps half-updated: keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fake's clock: the system clock plus every [`FakeNexus::advance_clock`].
    fn now_unix(&self) -> i64 {
        (SystemTime::now() + self.stats().clock_offset)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    /// Takes one fault off the queue, if any.
    fn next_fault(&self) -> Option<Fault> {
        let mut stats = self.stats();
        let (fault, left) = stats.fault.take()?;
        if left > 1 {
            stats.fault = Some((fault, left - 1));
        }
        Some(fault)
    }
}

/// A running fake Nexus; dropping it stops the server and joins its thread.
#[derive(Debug)]
pub struct FakeNexus {
    shared: Arc<Shared>,
    addr: SocketAddr,
    admin_password: SecretString,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
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
            stats: Mutex::new(Stats::default()),
        });

        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(FakeError::Listen)?;
        listener.set_nonblocking(true).map_err(FakeError::Listen)?;
        let addr = listener.local_addr().map_err(FakeError::Listen)?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), std::io::Error>>();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("fake-nexus".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    http::serve(listener, thread_shared, shutdown_rx).await;
                });
                // Dropping the runtime here cancels every connection task still running.
            })
            .map_err(FakeError::Thread)?;
        let mut nexus = Self {
            shared,
            addr,
            admin_password,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(())) => Ok(nexus),
            Ok(Err(e)) => {
                nexus.stop();
                Err(FakeError::Thread(e))
            }
            Err(_) => {
                nexus.stop();
                Err(FakeError::NotReady {
                    waited: START_TIMEOUT,
                })
            }
        }
    }

    /// `http://127.0.0.1:PORT`; the API is at `url() + "/service/rest"`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
        let now = self.shared.now_unix();
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
        self.shared.stats().users_created
    }

    /// Users deleted through `DELETE /service/rest/v1/security/users/{userId}`.
    pub fn users_deleted(&self) -> u64 {
        self.shared.stats().users_deleted
    }

    /// Requests under `/service/rest`, faulted ones included.
    pub fn api_calls(&self) -> u64 {
        self.shared.stats().api_calls
    }

    /// Makes the next `count` calls under `/service/rest` fail with `fault` (replacing any
    /// queued fault): [`Fault::Hangup`] closes unanswered; [`Fault::Malformed`] answers 200
    /// with truncated JSON; [`Fault::Slow`] waits, then answers; [`Fault::Status`] answers that
    /// status as Nexus would (401 with its realm, 403 and 404 with no body, 429 with
    /// `Retry-After: 1`, 5xx with an `ERROR:` text, other 4xx with a validation error list).
    pub fn fail_next(&self, fault: Fault, count: u32) {
        self.shared.stats().fault = (count > 0).then_some((fault, count));
    }

    /// Moves the fake's clock (users' creation times) forward by `by`.
    pub fn advance_clock(&self, by: Duration) {
        let mut stats = self.shared.stats();
        stats.clock_offset = stats.clock_offset.saturating_add(by);
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FakeNexus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// 24 random characters with an upper-case letter, a lower-case letter and a digit.
fn random_password() -> Result<SecretString, FakeError> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = Zeroizing::new([0u8; 21]);
    aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| FakeError::NotReady {
        waited: Duration::ZERO,
    })?;
    let mut text = Zeroizing::new(String::with_capacity(24));
    text.push_str("Aa1");
    text.extend(
        bytes
            .iter()
            .map(|b| char::from(CHARS[usize::from(*b) % CHARS.len()])),
    );
    Ok(seal_string(text))
}

#[cfg(test)]
mod tests;
