//! What can go wrong talking to a registry's API, named by registry and step.
//!
//! [`BackendError`] is what every backend operation returns. Its `Display` reads as one line an
//! operator can act on without the code:
//!
//! ```text
//! harbor registry "corp": create robot in project "team-a": Harbor answered 403 Forbidden: ...
//! ```
//!
//! The fields are structured (the lead's metrics and audit read [`Step::name`] and
//! [`Failure::outcome`]), and the error is `Clone` so one failed creation can be handed to every
//! caller that waited for it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Longest vendor message kept in a [`Failure`], in characters (after dropping non-printable
/// ones): enough for Harbor's one-sentence errors, short enough for a log line and an audit
/// record, and a bound on what a misbehaving registry can push into them.
pub const MAX_VENDOR_MESSAGE_CHARS: usize = 200;

/// Most project names kept in [`Failure::GrantSpansProjects`] (the grant's scope count is
/// bounded by the policy crate, but an error line need not list them all).
pub const MAX_LISTED_PROJECTS: usize = 8;

/// Which registry product a backend speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum BackendKind {
    /// Harbor (goharbor/harbor), through its v2.0 API.
    Harbor,
    /// GitLab, through its REST API v4 (project deploy tokens).
    Gitlab,
    /// Sonatype Nexus Repository, through its security REST API (local users).
    Nexus,
    /// Quay 3.13+, through robot federation (the broker is the OIDC issuer a robot trusts).
    Quay,
    /// JFrog Artifactory, through its OIDC token exchange (the broker is the OIDC provider).
    Artifactory,
    /// Amazon ECR, through AWS STS `AssumeRoleWithWebIdentity` (the broker is the OIDC
    /// provider the IAM role trusts) and ECR `GetAuthorizationToken`.
    Ecr,
    /// Google Artifact Registry, through Google STS (workload identity federation) and IAM
    /// Credentials `generateAccessToken`.
    Gar,
    /// Azure Container Registry, through Entra ID client credentials with the broker's JWT as
    /// the assertion (a federated identity credential) and ACR's `/oauth2/exchange`.
    Acr,
}

impl BackendKind {
    /// The kind as the policy file spells it (`harbor`); also the first word of every error.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Harbor => "harbor",
            Self::Gitlab => "gitlab",
            Self::Nexus => "nexus",
            Self::Quay => "quay",
            Self::Artifactory => "artifactory",
            Self::Ecr => "ecr",
            Self::Gar => "gar",
            Self::Acr => "acr",
        }
    }

    /// The product's name as its vendor writes it (`Harbor`), for "Harbor answered ...".
    pub fn product(self) -> &'static str {
        match self {
            Self::Harbor => "Harbor",
            Self::Gitlab => "GitLab",
            Self::Nexus => "Nexus",
            Self::Quay => "Quay",
            Self::Artifactory => "Artifactory",
            Self::Ecr => "Amazon ECR",
            Self::Gar => "Google Artifact Registry",
            Self::Acr => "Azure Container Registry",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation on one registry failed.
///
/// `Display`: `<kind> registry "<registry>": <step>: <failure>`. It never contains a password,
/// secret or token: the vendor message is the registry's error text, not the request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendError {
    /// The registry's name in the policy (`corp`).
    pub registry: String,
    /// Which product the registry is configured as; the first word of `Display`.
    pub kind: BackendKind,
    /// The step that failed; [`Step::name`] is its metrics label.
    pub step: Step,
    /// Why the step failed; [`Failure::outcome`] is its metrics label.
    pub failure: Failure,
}

impl BackendError {
    /// An error of `kind` registry `registry` at `step`.
    pub fn new(
        registry: impl Into<String>,
        kind: BackendKind,
        step: Step,
        failure: Failure,
    ) -> Self {
        Self {
            registry: registry.into(),
            kind,
            step,
            failure,
        }
    }

    /// True when the same call may succeed later without anyone changing configuration: the
    /// registry was unreachable, slow, rate limiting, failing on its side, or the broker's own
    /// in-flight cap was full. A refusal (401, 403, other 4xx), a malformed answer or a grant
    /// that cannot be mapped is not retryable.
    pub fn retryable(&self) -> bool {
        self.failure.retryable()
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} registry {:?}: {}: ",
            self.kind, self.registry, self.step
        )?;
        // A cloud backend's steps talk to more than one service: name the one that answered.
        let answered = self.step.service().unwrap_or(self.kind.product());
        self.failure.describe(answered, f)
    }
}

impl std::error::Error for BackendError {}

/// The step of a backend operation that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Turning the policy's grant into the registry's terms (before any API call).
    MapGrant,
    /// Issuing a credential as a whole (a failure of the service around the backend's own
    /// steps, such as a creation cut off under its waiters).
    Issue,
    /// Finding a project's numeric id (Harbor `GET /projects?name=`).
    LookUpProject {
        /// The Harbor project's name (`team-a`), from the grant's repositories or the sweep's list.
        project: String,
    },
    /// Creating a robot account (Harbor `POST /robots`).
    CreateRobot {
        /// The Harbor project the robot was to belong to, read from the grant (`team-a`).
        project: String,
    },
    /// Listing a project's robot accounts (Harbor `GET /robots?q=...`).
    ListRobots {
        /// The Harbor project being swept (`team-a`).
        project: String,
    },
    /// Deleting a robot account (Harbor `DELETE /robots/{id}`).
    DeleteRobot {
        /// Harbor's numeric robot id, from its creation answer or a listing.
        robot_id: i64,
        /// The robot's full name as Harbor answered it (`robot$team-a+svid-...`).
        name: String,
    },
    /// Listing the projects the broker's credential can see (Harbor `GET /projects`), for a
    /// sweep whose policy reaches projects it does not name.
    ListProjects,
    /// Creating a project deploy token (GitLab `POST /projects/:id/deploy_tokens`).
    CreateDeployToken {
        /// The GitLab project's path (`group/project`): the first two components of the grant's
        /// repository.
        project: String,
    },
    /// Listing a project's deploy tokens (GitLab `GET /projects/:id/deploy_tokens`).
    ListDeployTokens {
        /// The GitLab project's path (`group/project`) being swept.
        project: String,
    },
    /// Revoking a deploy token (GitLab `DELETE /projects/:id/deploy_tokens/:token_id`).
    DeleteDeployToken {
        /// The GitLab project's path (`group/project`) the token belongs to.
        project: String,
        /// GitLab's numeric deploy token id, from its creation answer or a listing.
        token_id: i64,
    },
    /// Creating a local user (Nexus `POST /service/rest/v1/security/users`).
    CreateUser {
        /// The Nexus user id the broker chose, `<prefix>-<revoke_unix>-<16 hex>`.
        user: String,
    },
    /// Listing local users (Nexus `GET /service/rest/v1/security/users`).
    ListUsers,
    /// Deleting a local user (Nexus `DELETE /service/rest/v1/security/users/{userId}`).
    DeleteUser {
        /// The Nexus user id, `<prefix>-<revoke_unix>-<16 hex>`, as the broker made it.
        user: String,
    },
    /// Signing the broker's own JWT for a federated exchange (Quay, Artifactory), before any
    /// API call.
    SignFederatedToken,
    /// Exchanging the broker's JWT for a robot token (Quay
    /// `GET /oauth2/federation/robot/token`).
    ExchangeRobotToken {
        /// The Quay robot's full name, `<org>+<short>`: the grant's organization and the
        /// configured pull or push robot.
        robot: String,
    },
    /// Exchanging the broker's JWT for an access token (Artifactory
    /// `POST /access/api/v1/oidc/token`).
    ExchangeOidcToken {
        /// The OIDC integration's name in Artifactory, as configured (`provider_name`).
        provider: String,
    },
    /// Exchanging the broker's JWT for temporary AWS credentials (AWS STS
    /// `AssumeRoleWithWebIdentity`).
    AssumeRoleWithWebIdentity {
        /// The IAM role's ARN as configured (checked to be a role ARN).
        role_arn: String,
    },
    /// Getting a Docker credential from Amazon ECR with the temporary credentials, signed with
    /// SigV4 (`GetAuthorizationToken`).
    GetAuthorizationToken {
        /// The AWS region as configured (`us-east-1`).
        region: String,
    },
    /// Exchanging the broker's JWT for a federated access token (Google STS `POST /v1/token`).
    ExchangeStsToken {
        /// The workload identity pool provider's full resource name as configured (the token
        /// exchange's audience).
        provider: String,
    },
    /// Impersonating a service account with the federated token (Google IAM Credentials
    /// `generateAccessToken`).
    GenerateAccessToken {
        /// The service account's email as configured (checked to be one).
        service_account: String,
    },
    /// Getting an Entra ID access token with the broker's JWT as the client assertion
    /// (`POST /{tenant}/oauth2/v2.0/token`).
    GetEntraToken {
        /// The application (client) id as configured, lowercased (a GUID).
        client_id: String,
    },
    /// Exchanging the Entra ID access token for an ACR refresh token
    /// (`POST /oauth2/exchange`).
    ExchangeAcrRefreshToken {
        /// The registry's login server: the API URL's `host[:port]`, lowercased, default port
        /// dropped.
        login_server: String,
    },
}

impl Step {
    /// A stable label for metrics: the variant's name in snake case (`map_grant`, `issue`,
    /// `create_robot`, `exchange_sts_token`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::MapGrant => "map_grant",
            Self::Issue => "issue",
            Self::LookUpProject { .. } => "look_up_project",
            Self::CreateRobot { .. } => "create_robot",
            Self::ListRobots { .. } => "list_robots",
            Self::DeleteRobot { .. } => "delete_robot",
            Self::ListProjects => "list_projects",
            Self::CreateDeployToken { .. } => "create_deploy_token",
            Self::ListDeployTokens { .. } => "list_deploy_tokens",
            Self::DeleteDeployToken { .. } => "delete_deploy_token",
            Self::CreateUser { .. } => "create_user",
            Self::ListUsers => "list_users",
            Self::DeleteUser { .. } => "delete_user",
            Self::SignFederatedToken => "sign_federated_token",
            Self::ExchangeRobotToken { .. } => "exchange_robot_token",
            Self::ExchangeOidcToken { .. } => "exchange_oidc_token",
            Self::AssumeRoleWithWebIdentity { .. } => "assume_role_with_web_identity",
            Self::GetAuthorizationToken { .. } => "get_authorization_token",
            Self::ExchangeStsToken { .. } => "exchange_sts_token",
            Self::GenerateAccessToken { .. } => "generate_access_token",
            Self::GetEntraToken { .. } => "get_entra_token",
            Self::ExchangeAcrRefreshToken { .. } => "exchange_acr_refresh_token",
        }
    }

    /// The service a cloud backend's step talks to (`AWS STS`), when it is not the registry
    /// product itself: what "... answered 403" names.
    pub fn service(&self) -> Option<&'static str> {
        match self {
            Self::AssumeRoleWithWebIdentity { .. } => Some("AWS STS"),
            Self::GetAuthorizationToken { .. } => Some("Amazon ECR"),
            Self::ExchangeStsToken { .. } => Some("Google STS"),
            Self::GenerateAccessToken { .. } => Some("Google IAM Credentials"),
            Self::GetEntraToken { .. } => Some("Microsoft Entra ID"),
            Self::ExchangeAcrRefreshToken { .. } => Some("Azure Container Registry"),
            // Spelled out, not `_`: a new step must say which service it talks to.
            Self::MapGrant
            | Self::Issue
            | Self::LookUpProject { .. }
            | Self::CreateRobot { .. }
            | Self::ListRobots { .. }
            | Self::DeleteRobot { .. }
            | Self::ListProjects
            | Self::CreateDeployToken { .. }
            | Self::ListDeployTokens { .. }
            | Self::DeleteDeployToken { .. }
            | Self::CreateUser { .. }
            | Self::ListUsers
            | Self::DeleteUser { .. }
            | Self::SignFederatedToken
            | Self::ExchangeRobotToken { .. }
            | Self::ExchangeOidcToken { .. } => None,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MapGrant => f.write_str("map the grant"),
            Self::Issue => f.write_str("issue a credential"),
            Self::LookUpProject { project } => write!(f, "look up project {project:?}"),
            Self::CreateRobot { project } => write!(f, "create robot in project {project:?}"),
            Self::ListRobots { project } => write!(f, "list robots of project {project:?}"),
            Self::DeleteRobot { robot_id, name } => write!(f, "delete robot {robot_id} {name:?}"),
            Self::ListProjects => f.write_str("list projects"),
            Self::CreateDeployToken { project } => {
                write!(f, "create deploy token in project {project:?}")
            }
            Self::ListDeployTokens { project } => {
                write!(f, "list deploy tokens of project {project:?}")
            }
            Self::DeleteDeployToken { project, token_id } => {
                write!(f, "delete deploy token {token_id} of project {project:?}")
            }
            Self::CreateUser { user } => write!(f, "create user {user:?}"),
            Self::ListUsers => f.write_str("list users"),
            Self::DeleteUser { user } => write!(f, "delete user {user:?}"),
            Self::SignFederatedToken => f.write_str("sign the broker's federated token"),
            Self::ExchangeRobotToken { robot } => {
                write!(f, "exchange the broker's token for robot {robot:?}")
            }
            Self::ExchangeOidcToken { provider } => {
                write!(
                    f,
                    "exchange the broker's token with OIDC provider {provider:?}"
                )
            }
            Self::AssumeRoleWithWebIdentity { role_arn } => {
                write!(
                    f,
                    "assume role {role_arn:?} with the broker's token (AWS STS)"
                )
            }
            Self::GetAuthorizationToken { region } => {
                write!(f, "get an ECR authorization token in region {region:?}")
            }
            Self::ExchangeStsToken { provider } => {
                write!(
                    f,
                    "exchange the broker's token at Google STS for provider {provider:?}"
                )
            }
            Self::GenerateAccessToken { service_account } => {
                write!(
                    f,
                    "generate an access token for service account {service_account:?}"
                )
            }
            Self::GetEntraToken { client_id } => {
                write!(
                    f,
                    "get an Entra ID token for application {client_id:?} with the broker's token"
                )
            }
            Self::ExchangeAcrRefreshToken { login_server } => {
                write!(
                    f,
                    "exchange the Entra ID token for an ACR refresh token at {login_server:?}"
                )
            }
        }
    }
}

/// What went wrong at a [`Step`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// No connection could be made or kept: refused, reset, TLS handshake failed, or the
    /// registry hung up before answering.
    Unreachable {
        /// What failed (`connect`, `tls handshake`, `connection closed`, ...).
        during: &'static str,
    },
    /// The request's deadline (connect, TLS and the whole answer) passed.
    Timeout {
        /// The configured request deadline, not a measured time.
        after: Duration,
    },
    /// 401: the registry refused the broker's own credential (wrong user or password).
    Unauthorized,
    /// A federated exchange refused the broker's JWT (Quay and Artifactory answer 401; the
    /// clouds' token services 400 with `InvalidIdentityToken`, `invalid_grant`, `AADSTS7002..`):
    /// its issuer, subject or audience is not what the registry's federation entry, OIDC
    /// integration or cloud trust accepts, or it matched no identity mapping.
    JwtRefused {
        /// The registry's message, printable characters only, at most
        /// [`MAX_VENDOR_MESSAGE_CHARS`], the JWT scrubbed.
        message: String,
    },
    /// 403: the broker's credential lacks a permission (e.g. a manager robot asked to grant
    /// more than it holds).
    Forbidden {
        /// The registry's message, printable characters only, at most
        /// [`MAX_VENDOR_MESSAGE_CHARS`].
        message: String,
    },
    /// 429: the registry is rate limiting the broker.
    RateLimited {
        /// The registry's `Retry-After`, when it sent a number of seconds (capped at an hour).
        retry_after: Option<Duration>,
    },
    /// 5xx: the registry failed on its side.
    ServerError {
        /// The HTTP status as answered, 500 to 599.
        status: u16,
    },
    /// Another 4xx: the registry refused the request as such.
    Rejected {
        /// The HTTP status as answered: not 2xx, 403, 429 or 5xx (401 only where the refused
        /// credential is not the broker's own).
        status: u16,
        /// The registry's message, printable characters only, at most
        /// [`MAX_VENDOR_MESSAGE_CHARS`].
        message: String,
    },
    /// A 2xx answer that is not what the API's schema says.
    Malformed {
        /// What was wrong (`robot created: no secret`, ...).
        what: &'static str,
    },
    /// The registry made a credential that outlives the grant and that the broker cannot
    /// revoke (an Artifactory identity mapping whose `expires_in` is longer than the policy's
    /// lifetime): it is not handed out, since nothing could end it at the policy's time.
    OutlivesGrant {
        /// How long the registry's credential lives from issue, as the registry answered.
        lives: Duration,
        /// The time left until the grant's revocation time at issue.
        granted: Duration,
    },
    /// The answer's body was larger than the cap.
    TooLarge {
        /// The configured `max_response_bytes` cap, in bytes (not the body's size).
        max: usize,
    },
    /// The registry has no project of the name the step names.
    NoSuchProject,
    /// The grant names repositories in more than one project; one credential serves one project.
    GrantSpansProjects {
        /// The projects (sorted, at most [`MAX_LISTED_PROJECTS`]).
        projects: Vec<String>,
    },
    /// The grant has an action the backend cannot grant (only `pull` and `push` map).
    UnsupportedAction {
        /// The action as the grant spells it (neither `pull` nor `push`).
        action: String,
    },
    /// The grant has a scope of a resource type other than `repository`.
    UnsupportedResource {
        /// The resource type (`registry`, `repository(plugin)`).
        resource_type: String,
    },
    /// The grant names a repository with no project part (`app` rather than `team-a/app`).
    RepositoryOutsideProject {
        /// The repository name as granted, in which no project could be read.
        repository: String,
    },
    /// The grant names no repository with any action.
    NoRepository,
    /// The grant's revocation time is not in the future, so no credential may be made for it.
    GrantExpired,
    /// The grant cannot be served under the cloud's own rules (an ECR session policy past
    /// STS's 2,048 characters, a workload outside the session-tag pattern, a subject longer
    /// than a federated credential may name).
    GrantRefused {
        /// The rule the grant breaks, as a fixed sentence (no grant data).
        rule: &'static str,
    },
    /// Every one of the broker's in-flight API call slots for this registry stayed busy for a
    /// whole request deadline.
    BudgetExhausted {
        /// The registry's configured in-flight cap (`max_in_flight`).
        max_in_flight: usize,
        /// How long the call waited for a slot: the configured request deadline.
        waited: Duration,
    },
    /// The operation was cut off before it finished (the runtime shut down under it).
    Interrupted,
    /// The broker failed on its side (its random number generator, encoding a request).
    Internal {
        /// What failed, as a fixed phrase (`cannot encode the robot`); never request data.
        what: &'static str,
    },
}

impl Failure {
    /// See [`BackendError::retryable`].
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. }
                | Self::Timeout { .. }
                | Self::RateLimited { .. }
                | Self::ServerError { .. }
                | Self::BudgetExhausted { .. }
                | Self::Interrupted
        )
    }

    /// A stable label for metrics: `unreachable`, `timeout`, `unauthorized`, `forbidden`,
    /// `jwt_refused`, `rate_limited`, `server_error`, `rejected`, `malformed`, `too_large`,
    /// `outlives_grant`,
    /// `no_such_project`, `budget_exhausted`, `interrupted`, `internal`, or `grant_refused` for every
    /// grant-mapping failure.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::Timeout { .. } => "timeout",
            Self::Unauthorized => "unauthorized",
            Self::JwtRefused { .. } => "jwt_refused",
            Self::Forbidden { .. } => "forbidden",
            Self::RateLimited { .. } => "rate_limited",
            Self::ServerError { .. } => "server_error",
            Self::Rejected { .. } => "rejected",
            Self::Malformed { .. } => "malformed",
            Self::TooLarge { .. } => "too_large",
            Self::OutlivesGrant { .. } => "outlives_grant",
            Self::NoSuchProject => "no_such_project",
            Self::GrantSpansProjects { .. }
            | Self::UnsupportedAction { .. }
            | Self::UnsupportedResource { .. }
            | Self::RepositoryOutsideProject { .. }
            | Self::NoRepository
            | Self::GrantExpired
            | Self::GrantRefused { .. } => "grant_refused",
            Self::BudgetExhausted { .. } => "budget_exhausted",
            Self::Interrupted => "interrupted",
            Self::Internal { .. } => "internal",
        }
    }

    /// Writes the failure with the product's name (`Harbor answered ...`).
    fn describe(&self, product: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable { during } => write!(f, "cannot reach {product} ({during} failed)"),
            Self::Timeout { after } => {
                write!(f, "{product} did not answer within {}", Seconds(*after))
            }
            Self::Unauthorized => write!(
                f,
                "{product} answered 401 Unauthorized: the broker's credential was refused"
            ),
            Self::JwtRefused { message } => {
                // No status: Quay and Artifactory answer 401, the clouds' token services 400
                // (`InvalidIdentityToken`, `invalid_grant`); the vendor's reason says which.
                write!(f, "{product} refused the broker's JWT")?;
                with_message(f, message)
            }
            Self::Forbidden { message } => {
                write!(f, "{product} answered 403 Forbidden")?;
                with_message(f, message)
            }
            Self::RateLimited { retry_after } => {
                write!(f, "{product} answered 429 Too Many Requests")?;
                match retry_after {
                    Some(after) => write!(f, " (retry after {})", Seconds(*after)),
                    None => Ok(()),
                }
            }
            Self::ServerError { status } => {
                write!(f, "{product} answered {}", Status(*status))
            }
            Self::Rejected { status, message } => {
                write!(f, "{product} answered {}", Status(*status))?;
                with_message(f, message)
            }
            Self::Malformed { what } => write!(f, "{product}'s answer is malformed: {what}"),
            Self::TooLarge { max } => write!(f, "{product}'s answer is larger than {max} bytes"),
            Self::OutlivesGrant { lives, granted } => write!(
                f,
                "{product}'s credential lives {}, longer than the {} the policy grants, and cannot be revoked: not handed out (shorten the registry's lifetime to at most token_ttl_seconds)",
                Seconds(*lives),
                Seconds(*granted)
            ),
            Self::NoSuchProject => write!(f, "{product} has no project of that name"),
            Self::GrantSpansProjects { projects } => {
                f.write_str("the grant spans projects ")?;
                for (i, project) in projects.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{project:?}")?;
                }
                write!(f, "; one {product} credential serves one project")
            }
            Self::UnsupportedAction { action } => write!(
                f,
                "action {action:?} cannot be granted through {product} (only pull and push)"
            ),
            Self::UnsupportedResource { resource_type } => write!(
                f,
                "resource type {resource_type:?} cannot be granted through {product} (only repository)"
            ),
            Self::RepositoryOutsideProject { repository } => write!(
                f,
                "repository {repository:?} names no {product} project (expected \"project/name\")"
            ),
            Self::NoRepository => f.write_str(
                "the grant names no repository with an action (a registry-wide request cannot be served: ask for a repository scope; the kubelet plugin: scope = \"repository\")",
            ),
            Self::GrantExpired => f.write_str("the grant's revocation time has already passed"),
            Self::GrantRefused { rule } => {
                write!(f, "the grant cannot be served through {product}: {rule}")
            }
            Self::BudgetExhausted {
                max_in_flight,
                waited,
            } => write!(
                f,
                "all {max_in_flight} in-flight API call slots for {product} stayed busy for {}",
                Seconds(*waited)
            ),
            Self::Interrupted => f.write_str("the operation was interrupted"),
            Self::Internal { what } => write!(f, "internal error: {what}"),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe("the registry", f)
    }
}

/// Why a backend could not be built from its configuration.
///
/// `Display`: `<kind> registry "<registry>": <problem>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} registry {registry:?}: {problem}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The registry's name in the policy.
    pub registry: String,
    /// Which product the registry is configured as; the first word of `Display`.
    pub kind: BackendKind,
    /// What is wrong; its `Display` names the setting or the rule.
    pub problem: ConfigProblem,
}

/// What is wrong with a backend's configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// The API URL is not an absolute `http://` or `https://` URL with a host (or it has a
    /// query).
    #[error("the API url is not an absolute http(s) url with a host and no query")]
    InvalidUrl,
    /// The API URL carries a user name or password; credentials belong in their own settings,
    /// where they are kept secret.
    #[error("the API url carries credentials (user@host); configure them separately")]
    CredentialsInUrl,
    /// `http://` to a host that is not a loopback address: credentials would cross the network
    /// in the clear.
    #[error("plain http is allowed only to a loopback address, not to {host:?}; use https")]
    PlainHttpNotLoopback {
        /// The API URL's host as written (an IPv6 literal without its brackets).
        host: String,
    },
    /// The CA file could not be read or holds no usable certificate.
    #[error("cannot use the CA file {path:?}: {reason}")]
    CaFile {
        /// The CA file's path as configured.
        path: PathBuf,
        /// Why (`unreadable`, `too large`, `not PEM`, `no certificate`, `bad certificate`).
        reason: &'static str,
    },
    /// The TLS client configuration could not be built.
    #[error("cannot build the TLS client configuration")]
    Tls,
    /// The user name is empty or has a `:` or a control character (Basic auth cannot carry
    /// them).
    #[error("the user name is empty or has a ':' or a control character")]
    InvalidUsername,
    /// The robot name prefix does not follow the registry's robot name rule.
    #[error(
        "robot prefix {prefix:?} must be 1 to {max} characters of [a-z0-9] separated by single '.', '_' or '-'"
    )]
    InvalidRobotPrefix {
        /// The prefix as configured.
        prefix: String,
        /// The longest prefix allowed, in ASCII characters.
        max: usize,
    },
    /// A limit is zero (a deadline, an in-flight cap).
    #[error("{what} must be greater than zero")]
    ZeroLimit {
        /// The setting, as a fixed phrase (`request deadline`, `max in-flight requests`).
        what: &'static str,
    },
    /// A setting breaks the registry's rule (Quay's robot short name, a subject template, an
    /// OIDC provider's name).
    #[error("{setting} {value:?} is invalid: {rule}")]
    InvalidSetting {
        /// The setting (`pull_robot`, `subject_template`).
        setting: &'static str,
        /// Its value (cut to 256 characters).
        value: String,
        /// The rule it breaks, as a fixed sentence.
        rule: &'static str,
    },
}

/// Keeps a vendor's message fit for a log line: printable characters only (others become a
/// space), surrounding whitespace trimmed, at most [`MAX_VENDOR_MESSAGE_CHARS`] characters
/// (`...` marks a cut).
pub fn sanitize_vendor_message(text: &str) -> String {
    let mut out = String::new();
    for (kept, c) in text.trim().chars().enumerate() {
        if kept == MAX_VENDOR_MESSAGE_CHARS {
            out.push_str("...");
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out.trim_end().to_owned()
}

fn with_message(f: &mut fmt::Formatter<'_>, message: &str) -> fmt::Result {
    if message.is_empty() {
        Ok(())
    } else {
        write!(f, ": {message}")
    }
}

/// A duration as `10s` or `1.5s`.
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_millis() == 0 {
            write!(f, "{}s", self.0.as_secs())
        } else {
            write!(f, "{}s", self.0.as_secs_f64())
        }
    }
}

/// A status code with its reason phrase (`500 Internal Server Error`).
struct Status(u16);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = http::StatusCode::from_u16(self.0)
            .ok()
            .and_then(|s| s.canonical_reason());
        match reason {
            Some(reason) => write!(f, "{} {reason}", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests;
