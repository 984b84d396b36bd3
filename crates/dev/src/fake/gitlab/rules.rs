//! GitLab's state and rules for project deploy tokens, synchronous and free of HTTP: who a
//! request is, what it may do, and what each API operation answers. Written from GitLab's
//! public REST API documentation (deploy tokens API, REST API status codes, pagination) and
//! the deploy token model (`app/models/deploy_token.rb`, `lib/api/deploy_tokens.rb`); the code
//! is our own.

use std::collections::BTreeMap;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use serde_json::{Value, json};

/// The scopes `POST /projects/:id/deploy_tokens` accepts (`DeployToken::AVAILABLE_SCOPES`).
pub(super) const AVAILABLE_SCOPES: [&str; 7] = [
    "read_repository",
    "read_registry",
    "write_registry",
    "read_package_registry",
    "write_package_registry",
    "read_virtual_registry",
    "write_virtual_registry",
];
/// GitLab's largest `per_page`; larger values are served as 100.
pub(super) const MAX_PER_PAGE: i64 = 100;
/// `per_page` when none is given.
const DEFAULT_PER_PAGE: i64 = 20;
/// The deploy token username's length limit (`validates :username, length: { maximum: 255 }`);
/// the fake holds the name to the same bound (GitLab's own name limit was not checked).
const MAX_NAME_LEN: usize = 255;
/// Not a GitLab limit: the fake's bound on its own memory.
pub(super) const MAX_DEPLOY_TOKENS: usize = 10_000;
/// Not a GitLab limit: the fake's bound on access tokens made with `add_user_token`.
pub(super) const MAX_USER_TOKENS: usize = 1_000;

// === errors ===

/// An API error: HTTP status plus GitLab's body (`{"message": ...}` from `render_api_error!`,
/// or `{"error": "..."}` from parameter validation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ApiError {
    pub(super) status: u16,
    pub(super) body: Value,
}

impl ApiError {
    pub(super) fn message(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "message": message.into() }),
        }
    }

    /// Grape's parameter validation: 400 `{"error": "<param> is missing"}` and the like.
    pub(super) fn param(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            body: json!({ "error": message.into() }),
        }
    }

    /// `unauthorized!`: 401 `{"message":"401 Unauthorized"}`.
    pub(super) fn unauthorized() -> Self {
        Self::message(401, "401 Unauthorized")
    }

    /// `forbidden!`: 403 `{"message":"403 Forbidden"}`.
    pub(super) fn forbidden() -> Self {
        Self::message(403, "403 Forbidden")
    }

    /// `not_found!('Project')`: also what a caller who may not see a project gets.
    pub(super) fn project_not_found() -> Self {
        Self::message(404, "404 Project Not Found")
    }

    pub(super) fn not_found(what: &str) -> Self {
        Self::message(404, format!("404 {what} Not Found"))
    }

    pub(super) fn internal() -> Self {
        Self::message(500, "500 Internal Server Error")
    }
}

// === model ===

/// A project member's role (`Gitlab::Access`); deploy tokens need Maintainer or above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Role {
    /// Guest (10).
    Guest,
    /// Reporter (20).
    Reporter,
    /// Developer (30): may push images, may not manage deploy tokens.
    Developer,
    /// Maintainer (40): may manage deploy tokens.
    Maintainer,
    /// Owner (50).
    Owner,
}

#[derive(Debug, Clone)]
pub(super) struct Project {
    pub(super) id: i64,
    /// `group/project`.
    pub(super) path: String,
}

/// An access token (`PRIVATE-TOKEN`) with one role in some projects.
#[derive(Debug)]
struct UserToken {
    id: usize,
    digest: Vec<u8>,
    role: Role,
    /// Project ids; `None` for every project.
    projects: Option<Vec<i64>>,
}

/// A caller that presented a valid access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Caller(usize);

#[derive(Debug, Clone)]
pub(super) struct DeployToken {
    pub(super) id: i64,
    pub(super) project_id: i64,
    pub(super) name: String,
    pub(super) username: String,
    /// Unix seconds; `None` for never.
    pub(super) expires_at: Option<i64>,
    pub(super) scopes: Vec<String>,
    pub(super) revoked: bool,
    pub(super) created: i64,
    value_digest: Vec<u8>,
}

impl DeployToken {
    fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// `Entities::DeployToken` (never the token).
    fn to_json(&self, now: i64) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "username": self.username,
            "expires_at": self.expires_at.map(datetime_millis),
            "revoked": self.revoked,
            "expired": self.expired(now),
            "scopes": self.scopes,
        })
    }
}

/// What a deploy token creation asks for, decoded from the body.
#[derive(Debug, Clone)]
pub(super) struct DeployTokenCreate {
    pub(super) name: String,
    pub(super) scopes: Vec<String>,
    pub(super) expires_at: Option<i64>,
    pub(super) username: Option<String>,
}

impl DeployTokenCreate {
    /// Grape's checks of `lib/api/deploy_tokens.rb`: `name` (String) and `scopes` (array of
    /// [`AVAILABLE_SCOPES`], a comma-separated string also accepted) are required,
    /// `expires_at` (DateTime) and `username` (String) optional; an empty `expires_at` is
    /// "never".
    pub(super) fn from_json(body: &Value) -> Result<Self, ApiError> {
        let Value::Object(obj) = body else {
            return Err(ApiError::param("name is missing, scopes is missing"));
        };
        let name = match obj.get("name") {
            None | Some(Value::Null) => return Err(ApiError::param("name is missing")),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(ApiError::param("name is invalid")),
        };
        let scopes: Vec<String> = match obj.get("scopes") {
            None | Some(Value::Null) => return Err(ApiError::param("scopes is missing")),
            Some(Value::String(s)) => s.split(',').map(|p| p.trim().to_owned()).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| ApiError::param("scopes is invalid"))?,
            Some(_) => return Err(ApiError::param("scopes is invalid")),
        };
        if scopes
            .iter()
            .any(|s| !AVAILABLE_SCOPES.contains(&s.as_str()))
        {
            return Err(ApiError::param("scopes does not have a valid value"));
        }
        let expires_at = match obj.get("expires_at") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(
                parse_datetime(s.trim()).ok_or_else(|| ApiError::param("expires_at is invalid"))?,
            ),
            Some(_) => return Err(ApiError::param("expires_at is invalid")),
        };
        let username = match obj.get("username") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ApiError::param("username is invalid")),
        };
        Ok(Self {
            name,
            scopes,
            expires_at,
            username,
        })
    }
}

/// One `access` entry of a registry token.
pub(super) use crate::fake::jwt::AccessEntry as RegistryAccess;

/// A deploy token just made, with its value (shown once).
#[derive(Debug)]
pub(super) struct Created {
    pub(super) token: DeployToken,
    pub(super) value: zeroize::Zeroizing<String>,
}

/// Which page of a listing (`page`, `per_page`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Paging {
    pub(super) page: i64,
    pub(super) per_page: i64,
}

impl Paging {
    /// GitLab's offset pagination: a missing, non-numeric or non-positive `page` is 1
    /// (`page` must be an Integer: non-numeric is 400), `per_page` at most 100.
    pub(super) fn parse(page: Option<&str>, per_page: Option<&str>) -> Result<Self, ApiError> {
        let number = |name: &str, raw: Option<&str>, default: i64| match raw {
            None | Some("") => Ok(default),
            Some(v) => v
                .parse::<i64>()
                .map_err(|_| ApiError::param(format!("{name} is invalid"))),
        };
        let page = number("page", page, 1)?.max(1);
        let per_page = number("per_page", per_page, DEFAULT_PER_PAGE)?;
        let per_page = if per_page < 1 {
            DEFAULT_PER_PAGE
        } else {
            per_page.min(MAX_PER_PAGE)
        };
        Ok(Self { page, per_page })
    }
}

/// One listing page and what GitLab's pagination headers say about it.
#[derive(Debug)]
pub(super) struct Page {
    pub(super) items: Vec<Value>,
    pub(super) total: usize,
    pub(super) paging: Paging,
}

// === state ===

#[derive(Debug)]
pub(super) struct State {
    pub(super) projects: Vec<Project>,
    users: Vec<UserToken>,
    pub(super) tokens: BTreeMap<i64, DeployToken>,
    next_token_id: i64,
}

fn token_digest(secret: &str) -> Vec<u8> {
    digest(&SHA256, secret.as_bytes()).as_ref().to_vec()
}

impl State {
    pub(super) fn new(projects: Vec<Project>) -> Self {
        Self {
            projects,
            users: Vec::new(),
            tokens: BTreeMap::new(),
            next_token_id: 1,
        }
    }

    /// Adds an access token with `role` in `projects` (by path; `None`: every project).
    ///
    /// # Errors
    /// 404 for an unknown project, 500 past [`MAX_USER_TOKENS`].
    pub(super) fn add_user(
        &mut self,
        secret: &str,
        role: Role,
        projects: Option<&[&str]>,
    ) -> Result<(), ApiError> {
        if self.users.len() >= MAX_USER_TOKENS {
            return Err(ApiError::internal());
        }
        let projects = match projects {
            None => None,
            Some(paths) => Some(
                paths
                    .iter()
                    .map(|path| {
                        self.projects
                            .iter()
                            .find(|p| p.path == *path)
                            .map(|p| p.id)
                            .ok_or_else(ApiError::project_not_found)
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let id = self.users.len();
        self.users.push(UserToken {
            id,
            digest: token_digest(secret),
            role,
            projects,
        });
        Ok(())
    }

    /// The caller of a `PRIVATE-TOKEN`; anything else is 401 (every endpoint here needs one).
    pub(super) fn authenticate(&self, private_token: Option<&str>) -> Result<Caller, ApiError> {
        let presented = private_token.ok_or_else(ApiError::unauthorized)?;
        let presented = token_digest(presented);
        self.users
            .iter()
            .find(|u| verify_slices_are_equal(&u.digest, &presented).is_ok())
            .map(|u| Caller(u.id))
            .ok_or_else(ApiError::unauthorized)
    }

    /// The project `id_or_path` names (a numeric id or the decoded `group/project` path) and
    /// the caller's role in it; a project the caller is not a member of is 404 like a missing
    /// one (GitLab does not reveal private projects).
    fn project_for(&self, who: Caller, id_or_path: &str) -> Result<(i64, Role), ApiError> {
        let project = match id_or_path.parse::<i64>() {
            Ok(id) => self.projects.iter().find(|p| p.id == id),
            Err(_) => self.projects.iter().find(|p| p.path == id_or_path),
        }
        .ok_or_else(ApiError::project_not_found)?;
        let user = self.users.get(who.0).ok_or_else(ApiError::unauthorized)?;
        let member = user
            .projects
            .as_ref()
            .is_none_or(|ids| ids.contains(&project.id));
        if !member {
            return Err(ApiError::project_not_found());
        }
        Ok((project.id, user.role))
    }

    /// `authorize!(:<action>_deploy_token, user_project)`: Maintainer or above.
    fn manager_project(&self, who: Caller, id_or_path: &str) -> Result<i64, ApiError> {
        let (id, role) = self.project_for(who, id_or_path)?;
        if role < Role::Maintainer {
            return Err(ApiError::forbidden());
        }
        Ok(id)
    }

    /// `GET /projects/:id/deploy_tokens?active=`: by id, `active` keeps tokens neither
    /// revoked nor expired.
    pub(super) fn list_tokens(
        &self,
        who: Caller,
        id_or_path: &str,
        active: Option<bool>,
        paging: Paging,
        now: i64,
    ) -> Result<Page, ApiError> {
        let project_id = self.manager_project(who, id_or_path)?;
        let matching: Vec<&DeployToken> = self
            .tokens
            .values()
            .filter(|t| t.project_id == project_id)
            .filter(|t| active.is_none_or(|a| a == (!t.revoked && !t.expired(now))))
            .collect();
        let skip = usize::try_from((paging.page - 1).saturating_mul(paging.per_page))
            .unwrap_or(usize::MAX);
        let take = usize::try_from(paging.per_page).unwrap_or(0);
        Ok(Page {
            items: matching
                .iter()
                .skip(skip)
                .take(take)
                .map(|t| t.to_json(now))
                .collect(),
            total: matching.len(),
            paging,
        })
    }

    /// `GET /projects/:id/deploy_tokens/:token_id`.
    pub(super) fn get_token(
        &self,
        who: Caller,
        id_or_path: &str,
        token_id: i64,
        now: i64,
    ) -> Result<Value, ApiError> {
        let project_id = self.manager_project(who, id_or_path)?;
        self.tokens
            .get(&token_id)
            .filter(|t| t.project_id == project_id)
            .map(|t| t.to_json(now))
            .ok_or_else(|| ApiError::not_found("Deploy Token"))
    }

    /// `POST /projects/:id/deploy_tokens` after the caller's role is checked.
    pub(super) fn create_token(
        &mut self,
        who: Caller,
        id_or_path: &str,
        request: &DeployTokenCreate,
        now: i64,
    ) -> Result<Created, ApiError> {
        let project_id = self.manager_project(who, id_or_path)?;
        self.insert_token(project_id, request, now)
    }

    /// The model's validations, then the row. Messages are the model's full messages.
    pub(super) fn insert_token(
        &mut self,
        project_id: i64,
        request: &DeployTokenCreate,
        now: i64,
    ) -> Result<Created, ApiError> {
        validate(request, now)?;
        if self.tokens.len() >= MAX_DEPLOY_TOKENS {
            return Err(ApiError::internal());
        }
        let value = generate_token().ok_or_else(ApiError::internal)?;
        let id = self.next_token_id;
        self.next_token_id += 1;
        let token = DeployToken {
            id,
            project_id,
            name: request.name.clone(),
            username: request
                .username
                .clone()
                .unwrap_or_else(|| format!("gitlab+deploy-token-{id}")),
            expires_at: request.expires_at,
            scopes: AVAILABLE_SCOPES
                .iter()
                .filter(|s| request.scopes.iter().any(|r| r == *s))
                .map(|s| (*s).to_owned())
                .collect(),
            revoked: false,
            created: now,
            value_digest: token_digest(&value),
        };
        self.tokens.insert(id, token.clone());
        Ok(Created { token, value })
    }

    /// `DELETE /projects/:id/deploy_tokens/:token_id`: the token leaves the project.
    pub(super) fn delete_token(
        &mut self,
        who: Caller,
        id_or_path: &str,
        token_id: i64,
    ) -> Result<(), ApiError> {
        let project_id = self.manager_project(who, id_or_path)?;
        match self.tokens.get(&token_id) {
            Some(t) if t.project_id == project_id => {
                self.tokens.remove(&token_id);
                Ok(())
            }
            _ => Err(ApiError::not_found("Deploy Token")),
        }
    }

    /// What the registry token service grants a deploy token asking for `scopes`
    /// (`Auth::ContainerRegistryAuthenticationService`): the caller must be an active deploy
    /// token (right username and value, not revoked, not expired), else `None` (401). Each
    /// `repository:<name>:<actions>` scope gets the requested actions the token holds when
    /// `<name>` is its project's path or below it: `pull` with `read_registry`, `push` with
    /// `write_registry`; anything else gets no action.
    pub(super) fn registry_access(
        &self,
        username: &str,
        value: &str,
        scopes: &[String],
        now: i64,
    ) -> Option<Vec<RegistryAccess>> {
        let presented = token_digest(value);
        let token = self.tokens.values().find(|t| {
            t.username == username
                && verify_slices_are_equal(&t.value_digest, &presented).is_ok()
                && !t.revoked
                && !t.expired(now)
        })?;
        let path = self.project_path(token.project_id)?;
        let holds = |scope: &str| token.scopes.iter().any(|s| s == scope);
        Some(
            scopes
                .iter()
                .filter_map(|scope| {
                    let (kind, rest) = scope.split_once(':')?;
                    let (name, actions) = rest.rsplit_once(':')?;
                    let inside =
                        name == path || name.strip_prefix(path).is_some_and(|r| r.starts_with('/'));
                    let granted = actions
                        .split(',')
                        .filter(|a| {
                            kind == "repository"
                                && inside
                                && match *a {
                                    "pull" => holds("read_registry"),
                                    "push" => holds("write_registry"),
                                    _ => false,
                                }
                        })
                        .map(str::to_owned)
                        .collect();
                    Some(RegistryAccess {
                        kind: kind.to_owned(),
                        name: name.to_owned(),
                        actions: granted,
                    })
                })
                .collect(),
        )
    }

    pub(super) fn project_path(&self, id: i64) -> Option<&str> {
        self.projects
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.path.as_str())
    }
}

/// The deploy token model's checks (`app/models/deploy_token.rb`): at least one scope, a
/// username of `[a-zA-Z0-9.+_-]` up to 255; a name (not blank, at most 255); and an
/// `expires_at` that is not in the past. The last is the fake's strictness: a token that
/// expires before it is made can only be a caller's clock or rounding bug.
fn validate(request: &DeployTokenCreate, now: i64) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    if request.name.trim().is_empty() {
        problems.push("Name can't be blank".to_owned());
    } else if request.name.chars().count() > MAX_NAME_LEN {
        problems.push(format!(
            "Name is too long (maximum is {MAX_NAME_LEN} characters)"
        ));
    }
    if request.scopes.is_empty() {
        problems.push("Scopes can't be blank".to_owned());
    }
    if let Some(username) = &request.username {
        if username.len() > MAX_NAME_LEN {
            problems.push(format!(
                "Username is too long (maximum is {MAX_NAME_LEN} characters)"
            ));
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'_' | b'-');
        if !username.bytes().all(allowed) {
            problems.push(
                "Username can contain only letters, digits, '_', '-', '+', and '.'".to_owned(),
            );
        }
    }
    if request.expires_at.is_some_and(|at| at < now) {
        problems.push("Expires at must be in the future".to_owned());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::message(400, problems.join(", ")))
    }
}

/// `gldt-` and 20 random characters, as GitLab formats deploy tokens.
fn generate_token() -> Option<zeroize::Zeroizing<String>> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    let mut bytes = zeroize::Zeroizing::new([0u8; 20]);
    aws_lc_rs::rand::fill(bytes.as_mut()).ok()?;
    let mut token = zeroize::Zeroizing::new(String::with_capacity(25));
    token.push_str("gldt-");
    token.extend(
        bytes
            .iter()
            .map(|b| char::from(CHARS[usize::from(*b) % CHARS.len()])),
    );
    Some(token)
}

// === time ===

/// Unix seconds as GitLab shows `expires_at`: `2027-01-15T08:00:01.000Z`.
pub(super) fn datetime_millis(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// What Grape's `DateTime` coercion accepts here: `YYYY-MM-DD` (00:00 UTC) or
/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (a space for the `T` too). Unix seconds, rounded
/// down.
pub(super) fn parse_datetime(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let date = days_from_civil(year, month, day) * 86_400;
    if bytes.len() == 10 {
        return Some(date);
    }
    if bytes.len() < 19 || !matches!(bytes[10], b'T' | b't' | b' ') || bytes[13] != b':' {
        return None;
    }
    if bytes[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if end == 0 {
            return None;
        }
        rest = &fraction[end..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    Some(date + hour * 3600 + minute * 60 + second - offset)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month, day) to days since 1970-01-01, proleptic Gregorian (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}
