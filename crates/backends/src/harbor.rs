//! Harbor: short-lived project robots made through Harbor's v2.0 API.
//!
//! For a grant of `repository:team-a/app:pull,push` the backend creates the robot
//! `robot$team-a+svid-<revoke_unix>-<random>` with `repository` `pull` and `push` in project
//! `team-a`, and hands out that name and its secret. Harbor's shortest robot lifetime is one
//! day (`duration: 1`), so the broker's `DELETE` at the policy's lifetime is the real
//! revocation; registry tokens Harbor already issued for the robot stay valid up to their own
//! expiry (30 minutes by default) after it.
//!
//! Nothing is kept in memory that a restart would lose: the revocation time is in the robot's
//! name, so [`HarborBackend::sweep`] (run by any replica, after any restart) finds and deletes
//! the broker's expired robots and leaves every other robot alone.
//!
//! The broker may authenticate as a Harbor admin or, from Harbor v2.12, as a project "manager"
//! robot holding `repository` `pull`/`push` and `robot` `create`/`list`/`delete` in that
//! project: a robot may create robots whose permissions are no wider than its own.

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
    BackendError, BackendKind, ConfigError, Failure, Step, sanitize_vendor_message,
};
use crate::figures::ApiMeter;
use crate::http::{
    ApiClient, ApiResponse, ClientSettings, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_REQUEST_DEADLINE, encode_query_component,
};
use crate::naming::{check_prefix, timed_name, unix_seconds_ceil};
use crate::sweep::{CredentialSweep, NamespaceSweep, sweep_namespaces};

mod grant;
mod naming;
mod wire;

use grant::{ProjectGrant, map_grant};
use naming::{encoded_revoke_time, robot_description};

/// The robot name prefix when none is configured: local names are
/// `<prefix>-<revoke_unix>-<16 hex>`, and a sweep deletes only robots with the configured one.
pub const DEFAULT_ROBOT_PREFIX: &str = "svid";
/// Robots per listing page: Harbor refuses a `page_size` over 100 (422).
pub const LIST_PAGE_SIZE: usize = 100;
/// Most listing pages one sweep reads per project (so at most 5,000 robots); a project with
/// more is reported as truncated and the rest waits for the next sweep.
pub const MAX_SWEEP_PAGES: usize = 50;
/// Most project listing pages read to find one project by name (`name=` matches substrings,
/// so the exact match may not be on the first page).
pub const MAX_PROJECT_LOOKUP_PAGES: usize = 10;
/// Most pages of projects one sweep lists when the policy reaches projects it does not name
/// (1,000 projects).
pub const MAX_VISIBLE_PROJECT_PAGES: usize = 10;
/// Longest robot secret accepted from Harbor, in bytes (Harbor's are 32 characters).
pub const MAX_SECRET_LEN: usize = 1024;

const SECONDS_PER_DAY: u64 = 86_400;

/// Harbor's API in the shared plumbing.
const API_SHAPE: ApiShape = ApiShape {
    kind: BackendKind::Harbor,
    vendor_message,
    missing_project_text: None,
};

/// How to reach one Harbor and what to call the broker's robots there.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HarborConfig {
    /// The registry's name in the policy (labels errors and figures).
    pub registry: String,
    /// Harbor's base URL (`https://harbor.example.com`); the API is under `/api/v2.0`.
    pub url: String,
    /// The broker's Harbor user (an admin, or a manager robot's full name).
    pub username: String,
    /// Its password (or the manager robot's secret).
    pub password: SecretString,
    /// PEM CA certificates to trust instead of the public web roots.
    pub ca_file: Option<PathBuf>,
    /// The first part of every robot name the broker makes, and what the sweeper looks for:
    /// Harbor's robot name rule (`[a-z0-9]` runs joined by single `.`, `_` or `-`), at most
    /// 32 characters. Replicas sharing a Harbor must share the prefix; two brokers that must
    /// not sweep each other's robots must not.
    pub robot_prefix: String,
    /// The deadline of one API request (connect, TLS and the whole answer).
    pub request_deadline: Duration,
    /// The cap on API requests in flight to this Harbor.
    pub max_in_flight: usize,
    /// The cap on one answer's body, in bytes.
    pub max_response_bytes: usize,
}

impl HarborConfig {
    /// A configuration with the default prefix ([`DEFAULT_ROBOT_PREFIX`]), public web roots,
    /// a 10 s deadline, 4 requests in flight and a 1 MiB answer cap.
    pub fn new(
        registry: impl Into<String>,
        url: impl Into<String>,
        username: impl Into<String>,
        password: SecretString,
    ) -> Self {
        Self {
            registry: registry.into(),
            url: url.into(),
            username: username.into(),
            password,
            ca_file: None,
            robot_prefix: DEFAULT_ROBOT_PREFIX.to_owned(),
            request_deadline: DEFAULT_REQUEST_DEADLINE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// One Harbor, spoken to through its v2.0 API.
pub struct HarborBackend {
    api: RegistryApi,
    prefix: String,
}

impl HarborBackend {
    /// Checks the configuration and builds the API client (reading the CA file now).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the registry: a bad URL, plain http to a host that is not a
    /// loopback address, an unusable CA file, a bad user name or robot prefix, a zero limit.
    pub fn new(config: HarborConfig) -> Result<Self, ConfigError> {
        let fail = config_error(&config.registry, BackendKind::Harbor);
        check_prefix(&config.robot_prefix).map_err(&fail)?;
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
            prefix: config.robot_prefix,
        })
    }

    /// Creates a project robot for `grant`: one project, `repository` `pull` and/or `push`,
    /// Harbor lifetime in whole days (at least one) covering the grant, the revocation time in
    /// its name. `expires_at` of the answer is the grant's `revoke_at`.
    ///
    /// # Errors
    /// At [`Step::MapGrant`] when the grant does not map to one project with `pull`/`push`
    /// (or its time has passed); at [`Step::CreateRobot`] when Harbor refuses or fails. A
    /// robot Harbor made but whose answer was lost is left to the sweeper.
    pub async fn issue(
        &self,
        grant: &BackendGrant,
        now: SystemTime,
    ) -> Result<BackendCredential, BackendError> {
        let mapped = self.map(grant)?;
        self.api.ensure_unexpired(grant, now)?;
        let step = Step::CreateRobot {
            project: mapped.project.clone(),
        };
        let mut random = [0u8; 8];
        self.api
            .fill_random(&mut random)
            .map_err(|failure| self.api.error(step.clone(), failure))?;
        let local_name = timed_name(&self.prefix, unix_seconds_ceil(grant.revoke_at), random);
        let description = robot_description(&grant.subject, grant.revoke_at);
        let body = wire::RobotCreate {
            name: &local_name,
            description: &description,
            level: "project",
            duration: lifetime_days(now, grant.revoke_at),
            disable: false,
            permissions: [wire::RobotPermission {
                kind: "project",
                namespace: &mapped.project,
                access: mapped
                    .actions
                    .iter()
                    .map(|action| wire::Access {
                        resource: "repository",
                        action: action.as_str(),
                    })
                    .collect(),
            }],
        };
        let result = async {
            let json = serde_json::to_vec(&body).map_err(|_| Failure::Internal {
                what: "cannot encode the robot",
            })?;
            let response = self
                .api
                .call(Method::POST, "/api/v2.0/robots", Some(json))
                .await?;
            parse_created(response, &mapped.project, &local_name)
        }
        .await;
        let (id, name, secret) = self.api.finish(&step, result)?;
        tracing::info!(
            registry = %self.api.registry,
            robot_id = id,
            robot = %name,
            subject = %grant.subject,
            "harbor robot created"
        );
        Ok(BackendCredential::new(
            name.clone(),
            secret,
            format!("robot {id} {name}"),
            grant.revoke_at,
            CredentialHandle::new(id, name, mapped.project),
        ))
    }

    /// Deletes a robot; one already gone (404) counts as deleted.
    ///
    /// # Errors
    /// At [`Step::DeleteRobot`].
    pub async fn revoke(&self, handle: &CredentialHandle) -> Result<(), BackendError> {
        self.delete_robot(handle.id, &handle.name).await
    }

    /// For each project: finds its id, reads its robots (page by page, at most
    /// [`MAX_SWEEP_PAGES`] pages of [`LIST_PAGE_SIZE`]), then deletes every robot whose name
    /// has this backend's prefix and a readable revocation time that is not after `now`.
    /// Robots with another name, or whose time is ahead, are left alone.
    ///
    /// # Errors
    /// Only when no project could be listed (the first error); other failures are in the
    /// report and the sweep goes on.
    pub async fn sweep(
        &self,
        projects: &[String],
        now: SystemTime,
    ) -> Result<SweepReport, BackendError> {
        sweep_namespaces(self, projects, now).await
    }

    /// This backend's API request counts by step and outcome since it was made (for `/metrics`).
    pub fn meter(&self) -> &ApiMeter {
        &self.api.meter
    }

    fn map(&self, grant: &BackendGrant) -> Result<ProjectGrant, BackendError> {
        map_grant(&grant.scopes).map_err(|failure| self.api.error(Step::MapGrant, failure))
    }

    async fn delete_robot(&self, id: i64, name: &str) -> Result<(), BackendError> {
        let step = Step::DeleteRobot {
            robot_id: id,
            name: name.to_owned(),
        };
        self.api
            .delete(&step, &format!("/api/v2.0/robots/{id}"))
            .await?;
        Ok(())
    }

    /// All robots of one project (up to the page cap; a cut listing is noted in `report`).
    async fn project_robots(
        &self,
        project: &str,
        report: &mut SweepReport,
    ) -> Result<Vec<wire::ListedRobot>, BackendError> {
        let project_id = self.project_id(project).await?;
        let step = Step::ListRobots {
            project: project.to_owned(),
        };
        let query = encode_query_component(&format!("Level=project,ProjectID={project_id}"));
        let mut robots = Vec::new();
        // Every page is read before anything is deleted, so deletions cannot shift the pages.
        for page in 1..=MAX_SWEEP_PAGES {
            let path = format!("/api/v2.0/robots?q={query}&page={page}&page_size={LIST_PAGE_SIZE}");
            let result = async {
                let response = self.api.call(Method::GET, &path, None).await?;
                let total = total_count(&response);
                let listed: Option<Vec<wire::ListedRobot>> =
                    parse_json(&response.body, "robot list is not a JSON array of robots")?;
                Ok((listed.unwrap_or_default(), total))
            }
            .await;
            let (listed, total) = self.api.finish(&step, result)?;
            let full_page = listed.len() >= LIST_PAGE_SIZE;
            robots.extend(listed);
            let all_seen = total.is_some_and(|total| robots.len() as u64 >= total);
            if !full_page || all_seen {
                return Ok(robots);
            }
        }
        report.truncated.push(project.to_owned());
        Ok(robots)
    }

    /// The names of the projects the broker's credential can see (`GET /projects`, at most
    /// [`MAX_VISIBLE_PROJECT_PAGES`] pages of [`LIST_PAGE_SIZE`]): where a sweep looks when the
    /// policy reaches projects through templates or `*` it cannot list itself. A manager robot
    /// sees its own project; an admin sees all.
    ///
    /// # Errors
    /// A [`BackendError`] at [`Step::ListProjects`].
    pub async fn visible_projects(&self) -> Result<Vec<String>, BackendError> {
        let step = Step::ListProjects;
        let mut names = Vec::new();
        for page in 1..=MAX_VISIBLE_PROJECT_PAGES {
            let path = format!("/api/v2.0/projects?page={page}&page_size={LIST_PAGE_SIZE}");
            let listed = self.project_page(&step, &path).await?;
            let full_page = listed.len() >= LIST_PAGE_SIZE;
            names.extend(listed.into_iter().map(|p| p.name));
            if !full_page {
                break;
            }
        }
        Ok(names)
    }

    /// The numeric id of a project (`name=` matches substrings: the exact name is picked).
    async fn project_id(&self, project: &str) -> Result<i64, BackendError> {
        let step = Step::LookUpProject {
            project: project.to_owned(),
        };
        let name = encode_query_component(project);
        for page in 1..=MAX_PROJECT_LOOKUP_PAGES {
            let path =
                format!("/api/v2.0/projects?name={name}&page={page}&page_size={LIST_PAGE_SIZE}");
            let listed = self.project_page(&step, &path).await?;
            let full_page = listed.len() >= LIST_PAGE_SIZE;
            if let Some(found) = listed.iter().find(|p| p.name == project) {
                if found.project_id <= 0 {
                    return Err(self.api.error(
                        step,
                        Failure::Malformed {
                            what: "project id is not positive",
                        },
                    ));
                }
                return Ok(found.project_id);
            }
            if !full_page {
                break;
            }
        }
        Err(self.api.error(step, Failure::NoSuchProject))
    }

    /// One page of a project listing (`GET /projects?...`) at `step`.
    async fn project_page(
        &self,
        step: &Step,
        path: &str,
    ) -> Result<Vec<wire::ListedProject>, BackendError> {
        let result: Result<Option<Vec<wire::ListedProject>>, Failure> = self
            .api
            .get_json(path, "project list is not a JSON array of projects")
            .await;
        Ok(self.api.finish(step, result)?.unwrap_or_default())
    }
}

impl fmt::Debug for HarborBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HarborBackend")
            .field("registry", &self.api.registry)
            .field("prefix", &self.prefix)
            .field("client", &self.api.client)
            .finish_non_exhaustive()
    }
}

impl CredentialSweep for HarborBackend {
    type Listed = wire::ListedRobot;

    fn revoke_time(&self, robot: &wire::ListedRobot) -> Option<u64> {
        encoded_revoke_time(&self.prefix, &robot.name)
    }

    fn delete_expired<'a>(
        &'a self,
        _project: &'a str,
        robot: &'a wire::ListedRobot,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.delete_robot(robot.id, &robot.name).await?;
            tracing::info!(
                registry = %self.api.registry,
                robot_id = robot.id,
                robot = %robot.name,
                "harbor sweep deleted an expired robot"
            );
            Ok(())
        })
    }
}

impl NamespaceSweep for HarborBackend {
    fn list<'a>(
        &'a self,
        project: &'a str,
        report: &'a mut SweepReport,
    ) -> BoxFuture<'a, Result<Vec<wire::ListedRobot>, BackendError>> {
        Box::pin(self.project_robots(project, report))
    }
}

crate::backend::delegate_backend!(HarborBackend, visible_namespaces = visible_projects);

/// Harbor's robot lifetime for a grant: whole days, rounded up, at least one (Harbor's floor).
fn lifetime_days(now: SystemTime, revoke_at: SystemTime) -> i64 {
    let seconds = revoke_at.duration_since(now).map_or(0, |left| {
        left.as_secs() + u64::from(left.subsec_nanos() > 0)
    });
    let days = seconds.div_ceil(SECONDS_PER_DAY).max(1);
    // Harbor takes durations below 2^31 - 1 days; no policy lifetime comes near.
    i64::try_from(days.min(i32::MAX as u64 - 1)).unwrap_or(1)
}

/// Harbor's error message (`{"errors":[{"code","message"}]}`), or the body's text when it is
/// not that shape (a proxy's page), scrubbed of the broker's credential, made printable and
/// capped.
fn vendor_message(client: &ApiClient, body: &[u8]) -> String {
    if let Ok(errors) = serde_json::from_slice::<wire::Errors>(body)
        && let Some(first) = errors.errors.into_iter().next()
    {
        let text = first.message.or(first.code).unwrap_or_default();
        return sanitize_vendor_message(&client.scrub(&text));
    }
    sanitize_vendor_message(&client.scrub(&String::from_utf8_lossy(body)))
}

fn total_count(response: &ApiResponse) -> Option<u64> {
    response
        .headers
        .get("x-total-count")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads `RobotCreated`, wiping the body (it holds the secret) when done.
fn parse_created(
    response: ApiResponse,
    project: &str,
    local_name: &str,
) -> Result<(i64, String, SecretString), Failure> {
    let body = Zeroizing::new(response.body);
    let created: wire::RobotCreated =
        serde_json::from_slice(&body).map_err(|_| Failure::Malformed {
            what: "robot created: not a JSON robot with id, name and secret",
        })?;
    let secret = Zeroizing::new(created.secret);
    if created.id <= 0 {
        return Err(Failure::Malformed {
            what: "robot created: id is not positive",
        });
    }
    // Harbor answers with the full name, `<robot prefix><project>+<local name>` (the robot
    // prefix is Harbor's setting, `robot$` by default): that name is the user name.
    let full_name_ok = created
        .name
        .strip_suffix(local_name)
        .and_then(|head| head.strip_suffix('+'))
        .is_some_and(|head| head.ends_with(project) && head.len() > project.len());
    if !full_name_ok {
        return Err(Failure::Malformed {
            what: "robot created: the name is not the one asked for",
        });
    }
    if secret.is_empty() || secret.len() > MAX_SECRET_LEN {
        return Err(Failure::Malformed {
            what: "robot created: the secret is empty or too long",
        });
    }
    Ok((created.id, created.name, seal_string(secret)))
}

#[cfg(test)]
mod tests;
