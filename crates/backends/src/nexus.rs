//! Sonatype Nexus Repository 3: short-lived local users made through its security REST API.
//!
//! For a grant the backend creates the local user `<prefix>-<revoke_unix>-<random>` with a
//! random 40-character password and ONE role the operator made in Nexus: the pull role (browse
//! and read on the Docker repository) when the grant only pulls, the push role (pull and push)
//! when any scope pushes. It hands out that user id and password, and deletes the user at the
//! policy's lifetime. Nexus users have no expiry of their own: the broker's `DELETE` is the
//! revocation, and a deleted user's next request is refused at once (Basic auth is checked per
//! request; with the Docker Bearer Token realm, tokens Nexus already issued are not covered).
//!
//! Granularity is the whole registry per action set: the role decides what the user reaches,
//! and the broker cannot narrow below it (see [`NexusConfig::pull_role`]).
//!
//! Nothing is kept in memory that a restart would lose: the revocation time is in the user id,
//! so [`NexusBackend::sweep`] (run by any replica, after any restart) lists the users whose id
//! starts with the prefix and deletes the broker's expired ones, leaving every other user alone.
//!
//! [`BackendService`](crate::BackendService) sweeps only when its sweep namespaces are not
//! empty: give a Nexus service one empty namespace (`set_sweep_projects(vec![String::new()])`).
//!
//! The broker authenticates with Basic auth as an admin or as a user whose roles hold the
//! privileges `nx-users-create`, `nx-users-read` and `nx-users-delete` (Nexus answers 403
//! otherwise). Written from sonatype/nexus-public at aec50e47 (2025-02-04):
//! `UserApiResource`, `ApiCreateUser`, `AbstractUserManager` (the `userId` filter is a
//! case-insensitive prefix match over every user of the source; the answer is not paged).

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use http::Method;
use svid_broker_identity::secret::{SecretString, seal_string};
use zeroize::Zeroizing;

use crate::api::{ApiShape, RegistryApi, config_error, limits_of, parse_json};
use crate::credential::{BackendCredential, BackendGrant, CredentialHandle, SweepReport};
use crate::error::{
    BackendError, BackendKind, ConfigError, ConfigProblem, Failure, Step, sanitize_vendor_message,
};
use crate::figures::ApiMeter;
use crate::http::{
    ApiClient, ClientSettings, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_REQUEST_DEADLINE, encode_query_component,
};
use crate::naming::{check_prefix, encoded_revoke_time, timed_name, unix_seconds_ceil};
use crate::sweep::{CredentialSweep, delete_due};

mod grant;
mod naming;
mod wire;

use grant::{UserGrant, map_grant};
use naming::{PASSWORD_RANDOM_CHARS, password, subject_name};

/// The user id prefix when none is configured: ids are `<prefix>-<revoke_unix>-<16 hex>`, and
/// a sweep deletes only users with the configured one.
pub const DEFAULT_USER_PREFIX: &str = "svid";
/// The users API, under the base URL.
pub const USERS_PATH: &str = "/service/rest/v1/security/users";
/// The domain of the placeholder e-mail address every broker user gets (Nexus requires a
/// well-formed one; `.invalid` is reserved, RFC 2606, so no mail can ever reach it).
pub const EMAIL_DOMAIN: &str = "svid-broker.invalid";
/// Most listing requests one sweep makes. Nexus does not page its user listing, so when an
/// answer is larger than the response cap the sweep splits the `userId` prefix by the next
/// character of the broker's id shape (`svid-1`, `svid-17`, ..., `svid-1764760000-`,
/// `svid-1764760000-a`) and lists each part; past this many requests the rest is reported as
/// truncated (by filter) and waits for the next sweep. A split costs up to 17 requests, so
/// ids whose times share many leading digits take several levels.
pub const MAX_SWEEP_LISTINGS: usize = 256;
/// Most users one sweep holds, over all its listings.
pub const MAX_SWEEP_USERS: usize = 100_000;

/// Nexus's API in the shared plumbing.
const API_SHAPE: ApiShape = ApiShape {
    kind: BackendKind::Nexus,
    vendor_message,
    missing_project_text: None,
};

/// How to reach one Nexus and which roles its broker users get.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NexusConfig {
    /// The registry's name in the policy (labels errors and figures).
    pub registry: String,
    /// Nexus's base URL (`https://nexus.example.com`); the API is under `/service/rest`.
    pub url: String,
    /// The broker's Nexus user (an admin, or a user holding `nx-users-create`, `nx-users-read`
    /// and `nx-users-delete`).
    pub username: String,
    /// The password of `username`: a secret, redacted in `Debug`.
    pub password: SecretString,
    /// The role id given to users of pull-only grants: the operator's role with
    /// `nx-repository-view-docker-<repo>-browse` and `-read` on the Docker repository (or
    /// repositories) the policy's Nexus grants name. Nexus does not check role ids when it
    /// creates a user (an unknown one is dropped silently), so a typo yields users that can
    /// log in but reach nothing.
    pub pull_role: String,
    /// The role id given to users of grants with any push: pull's privileges plus `-add` and
    /// `-edit`.
    pub push_role: String,
    /// PEM CA certificates to trust instead of the public web roots.
    pub ca_file: Option<PathBuf>,
    /// The first part of every user id the broker makes, and what the sweeper looks for: runs
    /// of `[a-z0-9]` joined by single `.`, `_` or `-`, at most 32 characters. Replicas sharing
    /// a Nexus must share the prefix; two brokers that must not sweep each other's users must
    /// not, and no prefix may extend another's (`svid` and `svid-1`).
    pub user_prefix: String,
    /// The deadline of one API request (connect, TLS and the whole answer).
    pub request_deadline: Duration,
    /// The cap on API requests in flight to this Nexus.
    pub max_in_flight: usize,
    /// The cap on one answer's body, in bytes (a sweep's listing splits past it).
    pub max_response_bytes: usize,
}

impl NexusConfig {
    /// A configuration with the default prefix ([`DEFAULT_USER_PREFIX`]), public web roots, a
    /// 10 s deadline, 4 requests in flight and a 1 MiB answer cap.
    pub fn new(
        registry: impl Into<String>,
        url: impl Into<String>,
        username: impl Into<String>,
        password: SecretString,
        pull_role: impl Into<String>,
        push_role: impl Into<String>,
    ) -> Self {
        Self {
            registry: registry.into(),
            url: url.into(),
            username: username.into(),
            password,
            pull_role: pull_role.into(),
            push_role: push_role.into(),
            ca_file: None,
            user_prefix: DEFAULT_USER_PREFIX.to_owned(),
            request_deadline: DEFAULT_REQUEST_DEADLINE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// One Nexus Repository 3, spoken to through its security REST API.
pub struct NexusBackend {
    api: RegistryApi,
    prefix: String,
    pull_role: String,
    push_role: String,
}

impl NexusBackend {
    /// Checks the configuration and builds the API client (reading the CA file now).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the registry: a bad URL, plain http to a host that is not a
    /// loopback address, an unusable CA file, a bad user name or user prefix
    /// ([`ConfigProblem::InvalidRobotPrefix`]), an empty or blank role id or a zero limit
    /// ([`ConfigProblem::ZeroLimit`]).
    pub fn new(config: NexusConfig) -> Result<Self, ConfigError> {
        let fail = config_error(&config.registry, BackendKind::Nexus);
        check_prefix(&config.user_prefix).map_err(&fail)?;
        for (what, role) in [
            ("the pull role's length", &config.pull_role),
            ("the push role's length", &config.push_role),
        ] {
            if role.trim().is_empty() || role.chars().any(char::is_control) {
                return Err(fail(ConfigProblem::ZeroLimit { what }));
            }
        }
        let settings = ClientSettings::new(
            config.url.clone(),
            config.username.clone(),
            config.password.clone(),
        );
        let api = RegistryApi::new(
            config.registry.clone(),
            API_SHAPE,
            settings,
            limits_of!(config),
        )
        .map_err(fail)?;
        Ok(Self {
            api,
            prefix: config.user_prefix,
            pull_role: config.pull_role,
            push_role: config.push_role,
        })
    }

    /// Creates a local user for `grant`: active, the pull or push role, a random password, the
    /// revocation time in its id. `expires_at` of the answer is the grant's `revoke_at`.
    ///
    /// # Errors
    /// At [`Step::MapGrant`] when the grant is not `pull`/`push` on repositories (or its time
    /// has passed); at [`Step::CreateUser`] when Nexus refuses or fails. A user Nexus made but
    /// whose answer was lost is left to the sweeper.
    pub async fn issue(
        &self,
        grant: &BackendGrant,
        now: SystemTime,
    ) -> Result<BackendCredential, BackendError> {
        let mapped = self.map(grant)?;
        self.api.ensure_unexpired(grant, now)?;
        let mut id_random = [0u8; 8];
        let mut password_random = Zeroizing::new([0u8; PASSWORD_RANDOM_CHARS]);
        let id_filled = self.api.fill_random(&mut id_random);
        let id = timed_name(&self.prefix, unix_seconds_ceil(grant.revoke_at), id_random);
        let step = Step::CreateUser { user: id.clone() };
        id_filled
            .and_then(|()| self.api.fill_random(password_random.as_mut()))
            .map_err(|failure| self.api.error(step.clone(), failure))?;
        let secret = password(&password_random);
        let email = format!("{id}@{EMAIL_DOMAIN}");
        let last_name = subject_name(&grant.subject);
        let role = if mapped.pushes() {
            &self.push_role
        } else {
            &self.pull_role
        };
        let body = wire::CreateUser {
            user_id: &id,
            first_name: "svid-broker",
            last_name: &last_name,
            email_address: &email,
            password: &secret,
            status: "active",
            roles: [role],
        };
        let result = async {
            // The encoded body holds the password. It is moved (not copied) into the request;
            // hyper's buffer of it cannot be wiped.
            let json = serde_json::to_vec(&body).map_err(|_| Failure::Internal {
                what: "cannot encode the user",
            })?;
            let response = self.api.call(Method::POST, USERS_PATH, Some(json)).await?;
            let created: wire::ApiUser = parse_json(
                &response.body,
                "user created: not a JSON user with a userId",
            )?;
            if created.user_id != id {
                return Err(Failure::Malformed {
                    what: "user created: the userId is not the one asked for",
                });
            }
            Ok(())
        }
        .await;
        self.api.finish(&step, result)?;
        tracing::info!(
            registry = %self.api.registry,
            user = %id,
            role = %role,
            subject = %grant.subject,
            "nexus user created"
        );
        Ok(BackendCredential::new(
            id.clone(),
            seal_string(secret),
            format!("user {id}"),
            grant.revoke_at,
            CredentialHandle::new(0, id, ""),
        ))
    }

    /// Deletes a user; one already gone (404) counts as deleted.
    ///
    /// # Errors
    /// At [`Step::DeleteUser`].
    pub async fn revoke(&self, handle: &CredentialHandle) -> Result<(), BackendError> {
        self.delete_user(&handle.name).await
    }

    /// Lists the users whose id starts with `<prefix>-` (in the `default` source; split by the
    /// next character of our id shape when an answer is over the response cap, at most
    /// [`MAX_SWEEP_LISTINGS`] requests), then deletes every one whose id has exactly this backend's shape and a
    /// revocation time that is not after `now`. Every other user is left alone. `namespaces`
    /// is ignored (Nexus users are registry-wide): the report counts one namespace listed.
    ///
    /// # Errors
    /// Only when nothing could be listed (the first error); other failures are in the report
    /// and the sweep goes on.
    pub async fn sweep(
        &self,
        _namespaces: &[String],
        now: SystemTime,
    ) -> Result<SweepReport, BackendError> {
        let mut report = SweepReport::default();
        let users = self.broker_users(&mut report).await?;
        report.namespaces_listed = 1;
        report.credentials_seen = users.len();
        // The filter is case-insensitive and other sources could answer: only our exact
        // shape in the local source is ours.
        let local = users
            .into_iter()
            .filter(|user| user.source.as_deref().is_none_or(|s| s == "default"));
        delete_due(self, &mut report, "", local, now).await;
        Ok(report)
    }

    /// This backend's API request counts by step and outcome since it was made (for `/metrics`).
    pub fn meter(&self) -> &ApiMeter {
        &self.api.meter
    }

    fn map(&self, grant: &BackendGrant) -> Result<UserGrant, BackendError> {
        map_grant(&grant.scopes).map_err(|failure| self.api.error(Step::MapGrant, failure))
    }

    async fn delete_user(&self, id: &str) -> Result<(), BackendError> {
        let step = Step::DeleteUser {
            user: id.to_owned(),
        };
        let path = format!("{USERS_PATH}/{}", encode_query_component(id));
        self.api.delete(&step, &path).await?;
        Ok(())
    }

    /// Every listed user whose id starts with `<prefix>-`, reading every part before anything
    /// is deleted. A part still too large at the deepest split, or past the request budget, is
    /// noted in `report.truncated` (as its `userId` filter).
    async fn broker_users(
        &self,
        report: &mut SweepReport,
    ) -> Result<Vec<wire::ApiUser>, BackendError> {
        let root = format!("{}-", self.prefix);
        let root_len = root.len();
        let mut pending = VecDeque::from([root]);
        let mut users = Vec::new();
        let mut listings = 0usize;
        let mut first_error = None;
        let mut listed_any = false;
        while let Some(filter) = pending.pop_front() {
            if listings == MAX_SWEEP_LISTINGS || users.len() >= MAX_SWEEP_USERS {
                report.truncated.push(filter);
                continue;
            }
            listings += 1;
            match self.list_users(&filter).await {
                Ok(listed) => {
                    listed_any = true;
                    let room = MAX_SWEEP_USERS - users.len();
                    if listed.len() > room {
                        report.truncated.push(filter);
                    }
                    users.extend(listed.into_iter().take(room));
                }
                Err(error) if matches!(error.failure, Failure::TooLarge { .. }) => {
                    let parts = narrower_filters(&filter, root_len);
                    if parts.is_empty() {
                        report.truncated.push(filter);
                    } else {
                        pending.extend(parts);
                    }
                }
                Err(error) => {
                    if first_error.is_none() {
                        first_error = Some(error.clone());
                    }
                    report.failures.push(error);
                }
            }
        }
        match first_error {
            Some(error) if !listed_any => Err(error),
            _ => Ok(users),
        }
    }

    async fn list_users(&self, filter: &str) -> Result<Vec<wire::ApiUser>, BackendError> {
        let path = format!(
            "{USERS_PATH}?userId={}&source=default",
            encode_query_component(filter)
        );
        let result = self
            .api
            .get_json(&path, "user list is not a JSON array of users")
            .await;
        self.api.finish(&Step::ListUsers, result)
    }
}

impl fmt::Debug for NexusBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NexusBackend")
            .field("registry", &self.api.registry)
            .field("prefix", &self.prefix)
            .field("pull_role", &self.pull_role)
            .field("push_role", &self.push_role)
            .field("client", &self.api.client)
            .finish_non_exhaustive()
    }
}

impl CredentialSweep for NexusBackend {
    type Listed = wire::ApiUser;

    fn revoke_time(&self, user: &wire::ApiUser) -> Option<u64> {
        encoded_revoke_time(&self.prefix, &user.user_id)
    }

    fn delete_expired<'a>(
        &'a self,
        _namespace: &'a str,
        user: &'a wire::ApiUser,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.delete_user(&user.user_id).await?;
            tracing::info!(
                registry = %self.api.registry,
                user = %user.user_id,
                "nexus sweep deleted an expired user"
            );
            Ok(())
        })
    }
}

crate::backend::delegate_backend!(NexusBackend);

/// The filters that together cover every id of our shape `filter` covers, one character
/// longer: a time digit, or `-` after at least one digit, then a hex digit of the random part.
/// Empty when `filter` is already a whole id. Ids of another shape drop out, which is right:
/// they are not ours. `root_len` is the length of `<prefix>-`.
fn narrower_filters(filter: &str, root_len: usize) -> Vec<String> {
    const TIME_DIGITS: &str = "0123456789";
    const HEX_DIGITS: &str = "0123456789abcdef";
    let tail = filter.get(root_len..).unwrap_or("");
    let next: Vec<char> = match tail.split_once('-') {
        Some((_, random)) if random.len() < 16 => HEX_DIGITS.chars().collect(),
        Some(_) => Vec::new(),
        None => {
            let mut next: Vec<char> = if tail.len() < 12 {
                TIME_DIGITS.chars().collect()
            } else {
                Vec::new()
            };
            if !tail.is_empty() {
                next.push('-');
            }
            next
        }
    };
    next.into_iter().map(|c| format!("{filter}{c}")).collect()
}

/// Nexus's error text: the validation errors (`[{"id","message"}]`, `id: message` joined by
/// `; `), one such object, a JSON string, or the body's text when it is none of those (a
/// proxy's page); scrubbed of the broker's credential, made printable and capped. Nexus's 403
/// has no body at all.
fn vendor_message(client: &ApiClient, body: &[u8]) -> String {
    let text = if let Ok(errors) = serde_json::from_slice::<Vec<wire::ValidationError>>(body) {
        errors
            .iter()
            .take(4)
            .map(|e| match (&e.id, &e.message) {
                (Some(id), Some(message)) if id != "*" => format!("{id}: {message}"),
                (_, Some(message)) => message.clone(),
                (Some(id), None) => id.clone(),
                (None, None) => String::new(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    } else if let Ok(error) = serde_json::from_slice::<wire::ValidationError>(body) {
        error.message.unwrap_or_default()
    } else if let Ok(text) = serde_json::from_slice::<String>(body) {
        text
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    sanitize_vendor_message(&client.scrub(&text))
}

#[cfg(test)]
mod tests;
