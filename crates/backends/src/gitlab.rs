//! GitLab: short-lived project deploy tokens made through GitLab's REST API v4.
//!
//! For a grant of `repository:team-a/app/web:pull` the backend creates, in project
//! `team-a/app`, the deploy token `svid-<revoke_unix>-<random>` (its username is the same
//! string) with scope `read_registry` (`push` adds `write_registry`), and hands out that
//! username and the token. The token's `expires_at` is the broker's revocation time rounded up
//! to the second, so GitLab ends it on its own even if the broker never gets to; the broker's
//! `DELETE` at that time is the prompt end. Registry tokens GitLab already issued for a deploy
//! token stay valid up to 5 minutes after it is revoked.
//!
//! Nothing is kept in memory that a restart would lose: the revocation time is in the token's
//! name, so [`GitlabBackend::sweep`] (run by any replica, after any restart) finds and deletes
//! the broker's expired tokens and leaves every other token alone.
//!
//! The broker authenticates with a `PRIVATE-TOKEN` (a personal, project or group access token
//! with the `api` scope) whose user has at least the Maintainer role in every project it
//! serves: GitLab refuses deploy token management to Developers (403).
//!
//! The project is the first two components of the repository name (`group/project`); projects
//! in nested subgroups are not supported (see the `grant` module).

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use http::Method;
use svid_broker_identity::secret::{SecretString, seal_string};
use zeroize::Zeroizing;

use crate::api::{ApiShape, Deleted, RegistryApi, config_error, limits_of, parse_json};
use crate::credential::{BackendCredential, BackendGrant, CredentialHandle, SweepReport};
use crate::error::{
    BackendError, BackendKind, ConfigError, Failure, Step, sanitize_vendor_message,
};
use crate::figures::ApiMeter;
use crate::http::{
    ApiClient, ApiResponse, ClientSettings, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_REQUEST_DEADLINE, encode_query_component,
};
use crate::naming::{check_prefix, encoded_revoke_time, timed_name, unix_seconds_ceil};
use crate::sweep::{CredentialSweep, NamespaceSweep, sweep_namespaces};

mod grant;
mod naming;
mod wire;

use grant::{ProjectGrant, map_grant};
use naming::rfc3339_seconds;

/// The default deploy token name prefix.
pub const DEFAULT_NAME_PREFIX: &str = "svid";
/// The header that carries the broker's GitLab token.
pub const TOKEN_HEADER: &str = "PRIVATE-TOKEN";
/// Deploy tokens per listing page: GitLab's largest `per_page`.
pub const LIST_PAGE_SIZE: usize = 100;
/// Most listing pages one sweep reads per project (so at most 5,000 tokens); a project with
/// more is reported as truncated and the rest waits for the next sweep.
pub const MAX_SWEEP_PAGES: usize = 50;
/// Longest deploy token value accepted from GitLab, in bytes (GitLab's are about 26).
pub const MAX_TOKEN_LEN: usize = 1024;
/// GitLab answers an unknown project (or one the token cannot see) with `404 Project Not
/// Found`; other 404s (a route a proxy does not pass) are refusals.
const PROJECT_NOT_FOUND: &str = "Project Not Found";

/// GitLab's API in the shared plumbing.
const API_SHAPE: ApiShape = ApiShape {
    kind: BackendKind::Gitlab,
    vendor_message,
    missing_project_text: Some(PROJECT_NOT_FOUND),
};

/// How to reach one GitLab and what to call the broker's deploy tokens there.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GitlabConfig {
    /// The registry's name in the policy (labels errors and figures).
    pub registry: String,
    /// GitLab's base URL (`https://gitlab.example.com`); the API is under `/api/v4`.
    pub url: String,
    /// The broker's GitLab access token (sent as `PRIVATE-TOKEN`); its user needs the
    /// Maintainer role in every project the broker serves.
    pub token: SecretString,
    /// PEM CA certificates to trust instead of the public web roots.
    pub ca_file: Option<PathBuf>,
    /// The first part of every deploy token name the broker makes, and what the sweeper looks
    /// for: `[a-z0-9]` runs joined by single `.`, `_` or `-`, at most 32 characters. Replicas
    /// sharing a GitLab must share the prefix; two brokers that must not sweep each other's
    /// tokens must not.
    pub name_prefix: String,
    /// The deadline of one API request (connect, TLS and the whole answer).
    pub request_deadline: Duration,
    /// The cap on API requests in flight to this GitLab.
    pub max_in_flight: usize,
    /// The cap on one answer's body, in bytes.
    pub max_response_bytes: usize,
}

impl GitlabConfig {
    /// A configuration with the default prefix ([`DEFAULT_NAME_PREFIX`]), public web roots,
    /// a 10 s deadline, 4 requests in flight and a 1 MiB answer cap.
    pub fn new(registry: impl Into<String>, url: impl Into<String>, token: SecretString) -> Self {
        Self {
            registry: registry.into(),
            url: url.into(),
            token,
            ca_file: None,
            name_prefix: DEFAULT_NAME_PREFIX.to_owned(),
            request_deadline: DEFAULT_REQUEST_DEADLINE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// One GitLab, spoken to through its REST API v4.
pub struct GitlabBackend {
    api: RegistryApi,
    prefix: String,
}

impl GitlabBackend {
    /// Checks the configuration and builds the API client (reading the CA file now).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the registry: a bad URL, plain http to a host that is not a
    /// loopback address, an unusable CA file, an empty or unprintable token (reported as
    /// [`ConfigProblem::InvalidUsername`](crate::ConfigProblem::InvalidUsername) for now), a bad name prefix, a zero limit.
    pub fn new(config: GitlabConfig) -> Result<Self, ConfigError> {
        let fail = config_error(&config.registry, BackendKind::Gitlab);
        check_prefix(&config.name_prefix).map_err(&fail)?;
        let settings =
            ClientSettings::with_header(config.url.clone(), TOKEN_HEADER, config.token.clone());
        let api = RegistryApi::new(
            config.registry.clone(),
            API_SHAPE,
            settings,
            limits_of!(config),
        )
        .map_err(fail)?;
        Ok(Self {
            api,
            prefix: config.name_prefix,
        })
    }

    /// Creates a project deploy token for `grant`: one project, `read_registry` (and
    /// `write_registry` for push), `expires_at` the grant's `revoke_at` rounded up to the
    /// second, the revocation time in its name, the name as its username. `expires_at` of the
    /// answer is the grant's `revoke_at`.
    ///
    /// # Errors
    /// At [`Step::MapGrant`] when the grant does not map to one project with `pull`/`push`
    /// (or its time has passed); at [`Step::CreateDeployToken`] when GitLab refuses or fails
    /// ([`Failure::NoSuchProject`] for its 404). A token GitLab made but whose answer was lost
    /// is left to the sweeper (and to GitLab's own expiry).
    pub async fn issue(
        &self,
        grant: &BackendGrant,
        now: SystemTime,
    ) -> Result<BackendCredential, BackendError> {
        let mapped = self.map(grant)?;
        self.api.ensure_unexpired(grant, now)?;
        let step = Step::CreateDeployToken {
            project: mapped.project.clone(),
        };
        let mut random = [0u8; 8];
        self.api
            .fill_random(&mut random)
            .map_err(|failure| self.api.error(step.clone(), failure))?;
        let revoke_unix = unix_seconds_ceil(grant.revoke_at);
        let name = timed_name(&self.prefix, revoke_unix, random);
        let expires_at = rfc3339_seconds(revoke_unix);
        let body = wire::DeployTokenCreate {
            name: &name,
            scopes: mapped.scopes.iter().map(|s| s.as_str()).collect(),
            expires_at: &expires_at,
            username: &name,
        };
        let result = async {
            let json = serde_json::to_vec(&body).map_err(|_| Failure::Internal {
                what: "cannot encode the deploy token",
            })?;
            let response = self
                .api
                .call(Method::POST, &tokens_path(&mapped.project), Some(json))
                .await?;
            parse_created(response, &name)
        }
        .await;
        let (id, token) = self.api.finish(&step, result)?;
        tracing::info!(
            registry = %self.api.registry,
            token_id = id,
            token_name = %name,
            project = %mapped.project,
            subject = %grant.subject,
            "gitlab deploy token created"
        );
        Ok(BackendCredential::new(
            name.clone(),
            token,
            format!("deploy token {id} {name} of {}", mapped.project),
            grant.revoke_at,
            CredentialHandle::new(id, name, mapped.project),
        ))
    }

    /// Revokes a deploy token (`DELETE`); one already gone (404) counts as revoked.
    ///
    /// # Errors
    /// At [`Step::DeleteDeployToken`].
    pub async fn revoke(&self, handle: &CredentialHandle) -> Result<(), BackendError> {
        self.delete_token(&handle.namespace, handle.id, &handle.name)
            .await
    }

    /// For each project path (`group/project`): reads its deploy tokens (page by page, at
    /// most [`MAX_SWEEP_PAGES`] pages of [`LIST_PAGE_SIZE`]), then deletes every token whose
    /// name has this backend's prefix and a readable revocation time that is not after `now`,
    /// including those GitLab has already expired (so they do not pile up past the page cap;
    /// that is also why GitLab's `active` filter is not used). Tokens with another name, or
    /// whose time is ahead, are left alone.
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

    async fn delete_token(&self, project: &str, id: i64, name: &str) -> Result<(), BackendError> {
        let step = Step::DeleteDeployToken {
            project: project.to_owned(),
            token_id: id,
        };
        let path = format!("{}/{id}", tokens_path(project));
        if self.api.delete(&step, &path).await? == Deleted::AlreadyGone {
            tracing::debug!(
                registry = %self.api.registry,
                token_id = id,
                token_name = %name,
                "gitlab deploy token already gone"
            );
        }
        Ok(())
    }

    /// All deploy tokens of one project (up to the page cap; a cut listing is noted in
    /// `report`).
    async fn project_tokens(
        &self,
        project: &str,
        report: &mut SweepReport,
    ) -> Result<Vec<wire::ListedDeployToken>, BackendError> {
        let step = Step::ListDeployTokens {
            project: project.to_owned(),
        };
        let mut tokens = Vec::new();
        // Every page is read before anything is deleted, so deletions cannot shift the pages.
        for page in 1..=MAX_SWEEP_PAGES {
            let path = format!(
                "{}?per_page={LIST_PAGE_SIZE}&page={page}",
                tokens_path(project)
            );
            let result = async {
                let response = self.api.call(Method::GET, &path, None).await?;
                let last = is_last_page(&response);
                let listed: Vec<wire::ListedDeployToken> = parse_json(
                    &response.body,
                    "deploy token list is not a JSON array of tokens",
                )?;
                Ok((listed, last))
            }
            .await;
            let (listed, last) = self.api.finish(&step, result)?;
            let full_page = listed.len() >= LIST_PAGE_SIZE;
            tokens.extend(listed);
            if !full_page || last {
                return Ok(tokens);
            }
        }
        report.truncated.push(project.to_owned());
        Ok(tokens)
    }
}

impl fmt::Debug for GitlabBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitlabBackend")
            .field("registry", &self.api.registry)
            .field("prefix", &self.prefix)
            .field("client", &self.api.client)
            .finish_non_exhaustive()
    }
}

impl CredentialSweep for GitlabBackend {
    type Listed = wire::ListedDeployToken;

    fn revoke_time(&self, token: &wire::ListedDeployToken) -> Option<u64> {
        encoded_revoke_time(&self.prefix, &token.name)
    }

    fn delete_expired<'a>(
        &'a self,
        project: &'a str,
        token: &'a wire::ListedDeployToken,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.delete_token(project, token.id, &token.name).await?;
            tracing::info!(
                registry = %self.api.registry,
                token_id = token.id,
                token_name = %token.name,
                project = %project,
                "gitlab sweep deleted an expired deploy token"
            );
            Ok(())
        })
    }
}

impl NamespaceSweep for GitlabBackend {
    fn list<'a>(
        &'a self,
        project: &'a str,
        report: &'a mut SweepReport,
    ) -> BoxFuture<'a, Result<Vec<wire::ListedDeployToken>, BackendError>> {
        Box::pin(self.project_tokens(project, report))
    }
}

crate::backend::delegate_backend!(GitlabBackend);

/// `/api/v4/projects/<group%2Fproject>/deploy_tokens`: GitLab takes the URL-encoded path
/// wherever it takes a project id.
fn tokens_path(project: &str) -> String {
    format!(
        "/api/v4/projects/{}/deploy_tokens",
        encode_query_component(project)
    )
}

/// GitLab's `X-Next-Page` is empty on the last page; absent (offset pagination turned off by
/// a proxy) says nothing, and the page's length decides.
fn is_last_page(response: &ApiResponse) -> bool {
    response
        .headers
        .get("x-next-page")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().is_empty())
}

/// GitLab's error text: `{"message": "..."}`, `{"message": {"field": ["..."]}}` (model
/// validation) or `{"error": "..."}` (parameter validation); otherwise the body's text (a
/// proxy's page). Scrubbed of the broker's token, made printable and capped.
fn vendor_message(client: &ApiClient, body: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => match map.get("message").or_else(|| map.get("error"))
        {
            Some(serde_json::Value::String(text)) => text.clone(),
            Some(serde_json::Value::Object(fields)) => fields
                .iter()
                .map(|(field, problems)| match problems {
                    serde_json::Value::Array(list) => {
                        let list: Vec<&str> =
                            list.iter().filter_map(serde_json::Value::as_str).collect();
                        format!("{field} {}", list.join(", "))
                    }
                    other => format!("{field} {other}"),
                })
                .collect::<Vec<_>>()
                .join("; "),
            Some(other) => other.to_string(),
            None => String::from_utf8_lossy(body).into_owned(),
        },
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    sanitize_vendor_message(&client.scrub(&text))
}

/// Reads `DeployTokenWithToken`, wiping the body (it holds the token) when done.
fn parse_created(response: ApiResponse, name: &str) -> Result<(i64, SecretString), Failure> {
    let body = Zeroizing::new(response.body);
    let created: wire::DeployTokenCreated =
        serde_json::from_slice(&body).map_err(|_| Failure::Malformed {
            what: "deploy token created: not a JSON token with id, name, username and token",
        })?;
    let token = Zeroizing::new(created.token);
    if created.id <= 0 {
        return Err(Failure::Malformed {
            what: "deploy token created: id is not positive",
        });
    }
    if created.name != name || created.username != name {
        return Err(Failure::Malformed {
            what: "deploy token created: the name or username is not the one asked for",
        });
    }
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(Failure::Malformed {
            what: "deploy token created: the token is empty or too long",
        });
    }
    Ok((created.id, seal_string(token)))
}

#[cfg(test)]
mod tests;
