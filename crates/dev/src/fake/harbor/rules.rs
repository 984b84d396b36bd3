//! Harbor's state and rules, synchronous and free of HTTP: who a request is, what it may do,
//! and what each API operation answers. Every rule names the Harbor file it comes from
//! (goharbor/harbor at c50c7dd, 2026-08-21); the code is our own.

use std::collections::{BTreeMap, HashSet};

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use serde_json::{Map, Value, json};
use svid_broker_identity::clock::Rfc3339;

use super::decode::{Keyword, RobotCreate, parse_keywords};
use super::policies::{PROJECT_POLICIES, PUBLIC_PROJECT_POLICIES, SYSTEM_POLICIES, TOKEN_ACTIONS};
use crate::fake::http::parse_basic;

/// `robot_name_prefix`'s default (`src/lib/config/metadata/metadatalist.go`).
pub(super) const ROBOT_PREFIX: &str = "robot$";
/// The robot table's `name varchar(255)` and `description varchar(1024)`
/// (`make/migrations/postgresql/0004_1.8.0_schema.up.sql`): longer values fail in the database,
/// which Harbor reports as a 500.
const MAX_STORED_NAME: usize = 255;
const MAX_DESCRIPTION: usize = 1024;
/// Not a Harbor limit: the fake's bound on its own memory.
pub(super) const MAX_ROBOTS: usize = 10_000;
/// `isValidDuration` accepts `0 < d < math.MaxInt32` (`src/server/v2.0/handler/robot.go`).
const MAX_INT32: i64 = i32::MAX as i64;
/// The admin's user id (Harbor's built-in `admin` is user 1).
const ADMIN_USER_ID: i64 = 1;

// === errors ===

/// An API error: HTTP status plus Harbor's `{"errors":[{code, message}]}` body
/// (`src/lib/http/error.go`, `src/lib/errors/const.go`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ApiError {
    pub(super) status: u16,
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl ApiError {
    pub(super) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BAD_REQUEST", message)
    }

    /// `errors.UnauthorizedError(nil)` (`src/server/v2.0/handler/base.go`).
    pub(super) fn unauthorized() -> Self {
        Self::new(401, "UNAUTHORIZED", "unauthorized")
    }

    /// `errors.ForbiddenError(nil)` (`src/server/v2.0/handler/base.go`).
    pub(super) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "FORBIDDEN", message)
    }

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NOT_FOUND", message)
    }

    /// go-swagger's parameter validation, re-wrapped by Harbor (`src/lib/http/error.go`).
    pub(super) fn unprocessable(detail: impl std::fmt::Display) -> Self {
        Self::new(
            422,
            "UNPROCESSABLE_ENTITY",
            format!("validation failure list:\n{detail}"),
        )
    }

    /// Anything at or above 500 is sent as `UNKNOWN` / "internal server error"
    /// (`src/lib/http/error.go`, `SendError`).
    pub(super) fn internal() -> Self {
        Self::new(500, "UNKNOWN", "internal server error")
    }

    /// Harbor's error body.
    pub(super) fn body(&self) -> String {
        errors_body(self.code, &self.message)
    }
}

/// `{"errors":[{"code":..,"message":..}]}` followed by a newline, as `SendError` writes it.
pub(super) fn errors_body(code: &str, message: &str) -> String {
    let mut body = json!({ "errors": [{ "code": code, "message": message }] }).to_string();
    body.push('\n');
    body
}

// === model ===

/// Who a request is (`src/server/middleware/security/`): the first generator that recognises
/// the credentials wins, and a request none recognises is anonymous, not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Principal {
    Anonymous,
    Admin,
    Robot(i64),
}

#[derive(Debug, Clone)]
pub(super) struct Project {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) public: bool,
    pub(super) created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Access {
    pub(super) resource: String,
    pub(super) action: String,
    pub(super) effect: String,
}

impl Access {
    /// `resource:action:effect`, the string `isValidPermissionScope` compares
    /// (`src/server/v2.0/handler/robot.go`): the effect as stored, empty included.
    fn scope_key(&self) -> String {
        format!("{}:{}:{}", self.resource, self.action, self.effect)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Permission {
    pub(super) kind: String,
    pub(super) namespace: String,
    pub(super) access: Vec<Access>,
}

#[derive(Debug, Clone)]
pub(super) struct Robot {
    pub(super) id: i64,
    /// As stored: `<project>+<name>` for project robots, `<name>` for system robots; the API
    /// shows it with [`ROBOT_PREFIX`].
    pub(super) stored_name: String,
    /// 0 for a system robot.
    pub(super) project_id: i64,
    pub(super) description: String,
    secret_digest: Vec<u8>,
    pub(super) duration: i64,
    pub(super) expires_at: i64,
    pub(super) disabled: bool,
    pub(super) creator_type: String,
    pub(super) creator_ref: i64,
    pub(super) created: i64,
    pub(super) permissions: Vec<Permission>,
}

impl Robot {
    pub(super) fn full_name(&self) -> String {
        format!("{ROBOT_PREFIX}{}", self.stored_name)
    }

    fn is_system(&self) -> bool {
        self.project_id == 0
    }

    /// Expired when `expires_at != -1 && expires_at <= now`
    /// (`src/server/middleware/security/robot.go`).
    fn expired(&self, now: i64) -> bool {
        self.expires_at != -1 && self.expires_at <= now
    }

    /// The Robot model of the API, never with the secret (`src/server/v2.0/handler/model/robot.go`);
    /// the generated model omits empty strings, zero numbers and empty lists (`omitempty`)
    /// except `editable` and `disable`.
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), self.id.into());
        m.insert("name".into(), self.full_name().into());
        if !self.description.is_empty() {
            m.insert("description".into(), self.description.clone().into());
        }
        m.insert(
            "level".into(),
            if self.is_system() {
                "system"
            } else {
                "project"
            }
            .into(),
        );
        m.insert("duration".into(), self.duration.into());
        m.insert("editable".into(), true.into());
        m.insert("disable".into(), self.disabled.into());
        m.insert("expires_at".into(), self.expires_at.into());
        if !self.permissions.is_empty() {
            let perms: Vec<Value> = self.permissions.iter().map(permission_json).collect();
            m.insert("permissions".into(), perms.into());
        }
        m.insert("creator_type".into(), self.creator_type.clone().into());
        if self.creator_ref != 0 {
            m.insert("creator_ref".into(), self.creator_ref.into());
        }
        m.insert("creation_time".into(), datetime(self.created).into());
        m.insert("update_time".into(), datetime(self.created).into());
        Value::Object(m)
    }
}

fn permission_json(p: &Permission) -> Value {
    let access: Vec<Value> = p
        .access
        .iter()
        .map(|a| {
            // The generated Access model omits an empty effect (`omitempty`).
            let mut m = Map::new();
            m.insert("resource".into(), a.resource.clone().into());
            m.insert("action".into(), a.action.clone().into());
            if !a.effect.is_empty() {
                m.insert("effect".into(), a.effect.clone().into());
            }
            Value::Object(m)
        })
        .collect();
    json!({ "kind": p.kind, "namespace": p.namespace, "access": access })
}

/// go-openapi's `strfmt.DateTime`: RFC 3339 with milliseconds, UTC.
pub(super) fn datetime(unix: i64) -> String {
    let at =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    let whole = Rfc3339(at).to_string();
    match whole.strip_suffix('Z') {
        Some(stem) => format!("{stem}.000Z"),
        None => whole,
    }
}

/// What `POST /robots` created, secret included (shown once, as Harbor does).
#[derive(Debug)]
pub(super) struct Created {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) secret: zeroize::Zeroizing<String>,
    pub(super) creation_time: i64,
    pub(super) expires_at: i64,
}

/// Page and size as go-swagger binds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Paging {
    pub(super) page: i64,
    pub(super) page_size: i64,
}

/// One entry of a registry token's `access` claim (Harbor's `ResourceActions`).
pub(super) use crate::fake::jwt::AccessEntry as ResourceActions;

// === state ===

/// Everything the fake Harbor holds.
#[derive(Debug)]
pub(super) struct State {
    admin_user: String,
    admin_digest: Vec<u8>,
    pub(super) projects: Vec<Project>,
    pub(super) robots: BTreeMap<i64, Robot>,
    /// (project id, stored name) of every robot: the table's unique key.
    names: HashSet<(i64, String)>,
    next_robot_id: i64,
}

fn secret_digest(secret: &str) -> Vec<u8> {
    digest(&SHA256, secret.as_bytes()).as_ref().to_vec()
}

impl State {
    pub(super) fn new(admin_user: &str, admin_password: &str, projects: Vec<Project>) -> Self {
        Self {
            admin_user: admin_user.to_owned(),
            admin_digest: secret_digest(admin_password),
            projects,
            robots: BTreeMap::new(),
            names: HashSet::new(),
            next_robot_id: 1,
        }
    }

    pub(super) fn admin_user(&self) -> &str {
        &self.admin_user
    }

    fn project_by_name(&self, name: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.name == name)
    }

    fn project_by_id(&self, id: i64) -> Option<&Project> {
        self.projects.iter().find(|p| p.id == id)
    }

    /// Identifies the caller from `Authorization: Basic` (`src/server/middleware/security/`):
    /// a `robot$` name is a robot, found by its stored name, with the right secret, not
    /// disabled, not expired (`robot.go`); otherwise the admin's name and password
    /// (`basic_auth.go`); anything else is anonymous.
    pub(super) fn authenticate(&self, authorization: Option<&str>, now: i64) -> Principal {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Principal::Anonymous;
        };
        if let Some(stored) = user.strip_prefix(ROBOT_PREFIX)
            && let Some(robot) = self.robots.values().find(|r| r.stored_name == stored)
            && verify_slices_are_equal(&robot.secret_digest, &secret_digest(&password)).is_ok()
            && !robot.disabled
            && !robot.expired(now)
        {
            return Principal::Robot(robot.id);
        }
        if user == self.admin_user
            && verify_slices_are_equal(&self.admin_digest, &secret_digest(&password)).is_ok()
        {
            return Principal::Admin;
        }
        Principal::Anonymous
    }

    /// Whether `who` may do `action` on `resource` of `project` (`None`: system level).
    ///
    /// The admin may do anything. In a public project everyone gets the public policies
    /// (`src/common/rbac/project/rbac_user.go`). A robot's policies match when the resource
    /// (or `*`, which does not cover the project itself) and the action (or `*`) match, one
    /// allows (an empty effect means allow) and none denies (`src/pkg/permission/types/types.go`,
    /// `src/pkg/permission/evaluator/rbac/casbin.go`). A project robot holds only project
    /// policies and gets `pull` with every `push` (`filterRobotPolicies`); a system robot's
    /// project policies apply to the named project or, with namespace `*`, to all
    /// (`src/common/security/robot/context.go`).
    pub(super) fn can(
        &self,
        who: Principal,
        project: Option<&Project>,
        resource: &str,
        action: &str,
    ) -> bool {
        match who {
            Principal::Admin => return true,
            Principal::Anonymous | Principal::Robot(_) => {}
        }
        if let Some(p) = project
            && p.public
            && PUBLIC_PROJECT_POLICIES.contains(&(resource, action))
        {
            return true;
        }
        let Principal::Robot(id) = who else {
            return false;
        };
        let Some(robot) = self.robots.get(&id) else {
            return false;
        };
        let mut policies: Vec<(&str, &str, &str)> = Vec::new();
        for perm in &robot.permissions {
            let applies = match project {
                Some(p) => {
                    perm.kind == "project" && (perm.namespace == p.name || perm.namespace == "*")
                }
                None => perm.kind == "system" && robot.is_system(),
            };
            if !applies {
                continue;
            }
            for a in &perm.access {
                policies.push((&a.resource, &a.action, &a.effect));
                if !robot.is_system() && a.action == "push" {
                    policies.push((&a.resource, "pull", ""));
                }
            }
        }
        let matches = |(res, act, _): &&(&str, &str, &str)| {
            (*res == resource || (*res == "*" && resource != "project"))
                && (*act == action || *act == "*")
        };
        let allowed = policies
            .iter()
            .filter(matches)
            .any(|(_, _, eft)| eft.is_empty() || *eft == "allow");
        let denied = policies
            .iter()
            .filter(matches)
            .any(|(_, _, eft)| *eft == "deny");
        allowed && !denied
    }

    /// `RequireProjectAccess` (`src/server/v2.0/handler/base.go`): an unknown project counts as
    /// project 0, where only the admin may act; a refusal is 401 when anonymous, else 403.
    fn require_project_access(
        &self,
        who: Principal,
        project: ProjectRef<'_>,
        action: &str,
        resource: &str,
    ) -> Result<(), ApiError> {
        let found = match project {
            ProjectRef::Name(name) => self.project_by_name(name),
            ProjectRef::Id(id) => self.project_by_id(id),
        };
        let has = match found {
            Some(p) => self.can(who, Some(p), resource, action),
            None => who == Principal::Admin,
        };
        if has {
            Ok(())
        } else if who == Principal::Anonymous {
            Err(ApiError::unauthorized())
        } else {
            Err(ApiError::forbidden("forbidden"))
        }
    }

    /// `RequireSystemAccess` (`src/server/v2.0/handler/base.go`): 403 names the caller.
    fn require_system_access(
        &self,
        who: Principal,
        action: &str,
        resource: &str,
    ) -> Result<(), ApiError> {
        match who {
            Principal::Anonymous => Err(ApiError::unauthorized()),
            _ if self.can(who, None, resource, action) => Ok(()),
            _ => Err(ApiError::forbidden(self.username(who))),
        }
    }

    fn username(&self, who: Principal) -> String {
        match who {
            Principal::Anonymous => String::new(),
            Principal::Admin => self.admin_user.clone(),
            Principal::Robot(id) => self
                .robots
                .get(&id)
                .map(Robot::full_name)
                .unwrap_or_default(),
        }
    }

    /// `requireAccess` of the robot API (`src/server/v2.0/handler/robot.go`).
    fn require_robot_access(
        &self,
        who: Principal,
        system_level: bool,
        project: ProjectRef<'_>,
        action: &str,
    ) -> Result<(), ApiError> {
        if system_level {
            self.require_system_access(who, action, "robot")
        } else {
            self.require_project_access(who, project, action, "robot")
        }
    }

    // === robots ===

    /// `POST /api/v2.0/robots` after the body was decoded, in `CreateRobot`'s order
    /// (`src/server/v2.0/handler/robot.go`): name, then duration/level/permissions, then the
    /// caller's `robot:create`, then (for a robot caller) the subset rule, then the project,
    /// then the controller's naming, expiry and secret (`src/controller/robot/controller.go`).
    pub(super) fn create_robot(
        &mut self,
        who: Principal,
        body: &RobotCreate,
        now: i64,
    ) -> Result<Created, ApiError> {
        validate_name(&body.name)?;
        validate_request(body.duration, &body.level, &body.permissions)?;
        let permissions: Vec<Permission> = body
            .permissions
            .iter()
            .flatten()
            .map(|(p, _)| p.clone())
            .collect();
        let Some(first) = permissions.first() else {
            return Err(ApiError::bad_request("bad request empty permission"));
        };
        let system_level = body.level == "system";
        self.require_robot_access(
            who,
            system_level,
            ProjectRef::Name(&first.namespace),
            "create",
        )?;

        let (creator_type, creator_ref) = match who {
            Principal::Admin => ("local", ADMIN_USER_ID),
            Principal::Robot(id) => {
                let creator = self.robots.get(&id).ok_or_else(ApiError::internal)?;
                if !is_valid_permission_scope(&permissions, &creator.permissions) {
                    return Err(ApiError::new(
                        403,
                        "DENIED",
                        format!(
                            "permission scope is invalid. It must be equal to or more restrictive \
                             than the creator robot's permissions: {}",
                            creator.full_name()
                        ),
                    ));
                }
                ("robot", id)
            }
            Principal::Anonymous => return Err(ApiError::unauthorized()),
        };

        // `SetProject` (`src/controller/robot/controller.go`).
        let (project_id, stored_name) = if system_level {
            (0, body.name.clone())
        } else {
            let project = self.project_by_name(&first.namespace).ok_or_else(|| {
                ApiError::not_found(format!("project {} not found", first.namespace))
            })?;
            (project.id, format!("{}+{}", project.name, body.name))
        };
        if stored_name.len() > MAX_STORED_NAME || body.description.len() > MAX_DESCRIPTION {
            return Err(ApiError::internal());
        }
        // `unique_robot UNIQUE (name, project_id)`, reported as a conflict (`src/pkg/robot/dao/dao.go`).
        if self.names.contains(&(project_id, stored_name.clone())) {
            return Err(ApiError::new(
                409,
                "CONFLICT",
                format!("robot account {project_id}:{stored_name} already exists"),
            ));
        }
        // `toScope` (`src/controller/robot/controller.go`); the request runs in one
        // transaction, so a failure here leaves no robot behind.
        for perm in &permissions {
            match perm.kind.as_str() {
                "system" if perm.namespace != "/" => {
                    return Err(ApiError::bad_request("unknown namespace"));
                }
                "project"
                    if perm.namespace != "*" && self.project_by_name(&perm.namespace).is_none() =>
                {
                    return Err(ApiError::not_found(format!(
                        "project {} not found",
                        perm.namespace
                    )));
                }
                _ => {}
            }
        }
        if self.robots.len() >= MAX_ROBOTS {
            return Err(ApiError::internal());
        }
        let secret = generate_secret().ok_or_else(ApiError::internal)?;
        let expires_at = expiry(now, body.duration);
        let id = self.next_robot_id;
        self.next_robot_id += 1;
        let robot = Robot {
            id,
            stored_name,
            project_id,
            description: body.description.clone(),
            secret_digest: secret_digest(&secret),
            duration: body.duration,
            expires_at,
            disabled: body.disable,
            creator_type: creator_type.to_owned(),
            creator_ref,
            created: now,
            permissions,
        };
        let name = robot.full_name();
        self.names.insert((project_id, robot.stored_name.clone()));
        self.robots.insert(id, robot);
        Ok(Created {
            id,
            name,
            secret,
            creation_time: now,
            expires_at,
        })
    }

    /// A robot made out of band, as an operator would in the UI: one project permission whose
    /// access entries carry an empty effect. Names and pairs follow the API's rules.
    pub(super) fn add_robot(
        &mut self,
        project: &str,
        name: &str,
        access: &[(&str, &str)],
        duration_days: i64,
        now: i64,
    ) -> Result<Created, ApiError> {
        let body = RobotCreate {
            name: name.to_owned(),
            description: String::new(),
            level: "project".to_owned(),
            disable: false,
            duration: duration_days,
            permissions: vec![Some((
                Permission {
                    kind: "project".to_owned(),
                    namespace: project.to_owned(),
                    access: access
                        .iter()
                        .map(|(resource, action)| Access {
                            resource: (*resource).to_owned(),
                            action: (*action).to_owned(),
                            effect: String::new(),
                        })
                        .collect(),
                },
                false,
            ))],
        };
        self.create_robot(Principal::Admin, &body, now)
    }

    /// `GET /api/v2.0/robots` (`ListRobot`, `src/server/v2.0/handler/robot.go`): 401, then the
    /// `q` syntax (`src/lib/q/builder.go`), then `Level`/`ProjectID`, then `robot:list`.
    /// Returns the page and the total.
    pub(super) fn list_robots(
        &self,
        who: Principal,
        q: Option<&str>,
        sort: Option<&str>,
        paging: Paging,
    ) -> Result<(Vec<Value>, usize), ApiError> {
        if who == Principal::Anonymous {
            return Err(ApiError::unauthorized());
        }
        let keywords = parse_keywords(q.unwrap_or(""))?;
        let (system_level, project_id) = match keywords.get("Level") {
            Some(Keyword::Exact(level)) if level == "project" => {
                let pid = match keywords.get("ProjectID") {
                    None => {
                        return Err(ApiError::bad_request(
                            "must with project ID when to query project robots",
                        ));
                    }
                    Some(Keyword::Exact(v)) => v.parse::<i64>().ok().filter(|p| *p > 0),
                    Some(_) => None,
                };
                let pid = pid
                    .ok_or_else(|| ApiError::bad_request("ProjectID must be a positive integer"))?;
                (false, pid)
            }
            Some(Keyword::Exact(level)) if level == "system" => (true, 0),
            Some(_) => return Err(ApiError::bad_request("bad request error level input")),
            None => (true, 0),
        };
        self.require_robot_access(who, system_level, ProjectRef::Id(project_id), "list")?;

        let mut matched: Vec<&Robot> = self
            .robots
            .values()
            .filter(|r| r.project_id == project_id)
            .filter(|r| keyword_matches(keywords.get("name"), &r.stored_name))
            .filter(|r| keyword_matches(keywords.get("description"), &r.description))
            .collect();
        sort_robots(&mut matched, sort);
        let total = matched.len();
        Ok((
            page_of(&matched, paging)
                .iter()
                .map(|r| r.to_json())
                .collect(),
            total,
        ))
    }

    /// `GET /api/v2.0/robots/{id}` (`GetRobotByID`): 401, 404, then `robot:read`.
    pub(super) fn get_robot(&self, who: Principal, id: i64) -> Result<Value, ApiError> {
        let robot = self.robot_for(who, id, "read")?;
        Ok(robot.to_json())
    }

    /// `DELETE /api/v2.0/robots/{id}` (`DeleteRobot`): 401, 404, then `robot:delete`.
    pub(super) fn delete_robot(&mut self, who: Principal, id: i64) -> Result<(), ApiError> {
        self.robot_for(who, id, "delete")?;
        if let Some(robot) = self.robots.remove(&id) {
            self.names.remove(&(robot.project_id, robot.stored_name));
        }
        Ok(())
    }

    fn robot_for(&self, who: Principal, id: i64, action: &str) -> Result<&Robot, ApiError> {
        if who == Principal::Anonymous {
            return Err(ApiError::unauthorized());
        }
        let robot = self
            .robots
            .get(&id)
            .ok_or_else(|| ApiError::not_found(format!("robot {id} not found")))?;
        self.require_robot_access(
            who,
            robot.is_system(),
            ProjectRef::Id(robot.project_id),
            action,
        )?;
        Ok(robot)
    }

    // === projects ===

    /// `GET /api/v2.0/projects` (`ListProjects`, `src/server/v2.0/handler/project.go`): `name`
    /// is a case-insensitive substring; the admin sees every project, a robot the public ones
    /// plus those its permissions name (all with a `*` namespace), anyone else the public ones.
    pub(super) fn list_projects(
        &self,
        who: Principal,
        name: Option<&str>,
        public: Option<bool>,
        paging: Paging,
    ) -> (Vec<Value>, usize) {
        if who == Principal::Anonymous && public == Some(false) {
            return (Vec::new(), 0);
        }
        let robot = match who {
            Principal::Robot(id) => self.robots.get(&id),
            _ => None,
        };
        let cover_all = robot.is_some_and(|r| {
            r.permissions
                .iter()
                .any(|p| p.kind == "project" && p.namespace == "*")
        });
        let visible = |p: &Project| match who {
            Principal::Admin => true,
            Principal::Anonymous => p.public,
            Principal::Robot(_) => {
                cover_all
                    || (p.public && public != Some(false))
                    || robot
                        .is_some_and(|r| r.permissions.iter().any(|perm| perm.namespace == p.name))
            }
        };
        let mut matched: Vec<&Project> = self
            .projects
            .iter()
            .filter(|p| visible(p))
            .filter(|p| name.is_none_or(|n| n.is_empty() || contains_ignore_case(&p.name, n)))
            .filter(|p| public.is_none_or(|want| p.public == want))
            .collect();
        matched.sort_by(|a, b| a.name.cmp(&b.name));
        let total = matched.len();
        let page = page_of(&matched, paging)
            .iter()
            .map(|p| self.project_json(p))
            .collect();
        (page, total)
    }

    /// `GET /api/v2.0/projects/{project_name_or_id}` (`GetProject`): a number is an id unless
    /// `X-Is-Resource-Name: true` (`src/server/v2.0/handler/util.go`); needs `project:read`.
    pub(super) fn get_project(
        &self,
        who: Principal,
        name_or_id: &str,
        is_resource_name: bool,
    ) -> Result<Value, ApiError> {
        let reference = match name_or_id.parse::<i64>() {
            Ok(id) if !is_resource_name => ProjectRef::Id(id),
            _ => ProjectRef::Name(name_or_id),
        };
        self.require_project_access(who, reference, "read", "project")?;
        let found = match reference {
            ProjectRef::Id(id) => self.project_by_id(id),
            ProjectRef::Name(name) => self.project_by_name(name),
        };
        let project =
            found.ok_or_else(|| ApiError::not_found(format!("project {name_or_id} not found")))?;
        Ok(self.project_json(project))
    }

    fn project_json(&self, p: &Project) -> Value {
        json!({
            "project_id": p.id,
            "owner_id": ADMIN_USER_ID,
            "name": p.name,
            "creation_time": datetime(p.created),
            "update_time": datetime(p.created),
            "owner_name": self.admin_user,
            // `x-omitempty: false`; the role ids are omitted when zero.
            "repo_count": 0,
            "metadata": { "public": if p.public { "true" } else { "false" } },
            "cve_allowlist": { "id": 0, "project_id": p.id, "items": [] },
        })
    }

    // === token service ===

    /// The token service's answer for `who` and the `scope` parameters, each split on spaces
    /// (`src/core/service/token/creator.go`): `None` (401) when anonymous without any scope;
    /// otherwise the subject and the access list (`None` when no scope was asked, which the
    /// token carries as `null`).
    ///
    /// For `repository:<project>/<repo>` Harbor replaces the requested actions with every one
    /// of `pull`, `push`, `delete`, `scanner-pull` the caller may do in that project
    /// (`repositoryFilter`, `resourceScopes`); an unknown project or unparsable name gets none.
    /// `registry:catalog` keeps its actions for the admin only; other types get none
    /// (`filterAccess`, `src/core/service/token/authutils.go`).
    pub(super) fn token_access(
        &self,
        who: Principal,
        scopes: &[String],
    ) -> Option<(String, Option<Vec<ResourceActions>>)> {
        if who == Principal::Anonymous && scopes.is_empty() {
            return None;
        }
        let mut access = Vec::new();
        for scope in scopes.iter().filter(|s| !s.is_empty()) {
            let mut entry = parse_scope(scope);
            entry.actions = match entry.kind.as_str() {
                "repository" => self.repository_actions(who, &entry.name),
                "registry" if entry.name == "catalog" && who == Principal::Admin => entry.actions,
                _ => Vec::new(),
            };
            access.push(entry);
        }
        let access = (!scopes.is_empty()).then_some(access);
        Some((self.username(who), access))
    }

    fn repository_actions(&self, who: Principal, name: &str) -> Vec<String> {
        let Some((namespace, _repo)) = name.split_once('/') else {
            return Vec::new();
        };
        let Some(project) = self.project_by_name(namespace) else {
            return Vec::new();
        };
        TOKEN_ACTIONS
            .iter()
            .filter(|a| self.can(who, Some(project), "repository", a))
            .map(|a| (*a).to_owned())
            .collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum ProjectRef<'a> {
    Name(&'a str),
    Id(i64),
}

/// `GetResourceActions` (`src/core/service/token/authutils.go`): `type`, `type:name`, or
/// `type:name...:actions` where the name may hold colons and the actions are comma-separated.
fn parse_scope(scope: &str) -> ResourceActions {
    let items: Vec<&str> = scope.split(':').collect();
    let (kind, name, actions) = match items.as_slice() {
        [kind] => (*kind, String::new(), Vec::new()),
        [kind, name] => (*kind, (*name).to_owned(), Vec::new()),
        [kind, middle @ .., last] => {
            let actions = if last.is_empty() {
                Vec::new()
            } else {
                last.split(',').map(str::to_owned).collect()
            };
            (*kind, middle.join(":"), actions)
        }
        [] => ("", String::new(), Vec::new()),
    };
    ResourceActions {
        kind: kind.to_owned(),
        name,
        actions,
    }
}

/// `expiresAt = now.AddDate(0, 0, duration)`, or -1 for -1 (`src/controller/robot/controller.go`);
/// Harbor runs in UTC, so a day is 86,400 s.
fn expiry(now: i64, duration: i64) -> i64 {
    if duration == -1 {
        -1
    } else {
        now.saturating_add(duration.saturating_mul(86_400))
    }
}

/// A random secret as `CreateSec` makes it: 32 characters of `[a-zA-Z0-9]`, drawn again until
/// `IsValidSec` holds (8-128 characters, a lower-case letter, an upper-case letter and a digit;
/// `src/controller/robot/controller.go`, `src/common/utils/utils.go`).
fn generate_secret() -> Option<zeroize::Zeroizing<String>> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for _ in 0..64 {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(bytes.as_mut()).ok()?;
        let secret: zeroize::Zeroizing<String> = zeroize::Zeroizing::new(
            bytes
                .iter()
                .map(|b| char::from(CHARS[usize::from(*b) % CHARS.len()]))
                .collect(),
        );
        if is_valid_secret(&secret) {
            return Some(secret);
        }
    }
    None
}

/// `IsValidSec` (`src/controller/robot/controller.go`).
pub(super) fn is_valid_secret(secret: &str) -> bool {
    (8..=128).contains(&secret.len())
        && secret.bytes().any(|b| b.is_ascii_lowercase())
        && secret.bytes().any(|b| b.is_ascii_uppercase())
        && secret.bytes().any(|b| b.is_ascii_digit())
}

/// `validateName` (`src/server/v2.0/handler/robot.go`): `^[a-z0-9]+(?:[._-][a-z0-9]+)*$`, so no
/// upper case, no `+`, no leading, trailing or doubled separator.
fn validate_name(name: &str) -> Result<(), ApiError> {
    let segments_ok = name.split(['.', '_', '-']).all(|seg| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if segments_ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "robot name is not in lower case or contains illegal characters",
        ))
    }
}

/// `validate` (`src/server/v2.0/handler/robot.go`): duration -1 or 1..MaxInt32, level `system`
/// or `project`, at least one permission and each with at least one access (JSON `null`
/// entries count as empty), one permission only for a project robot, every access a known
/// pair for its kind (`containsAccess`), and no other kind.
fn validate_request(
    duration: i64,
    level: &str,
    permissions: &[Option<(Permission, bool)>],
) -> Result<(), ApiError> {
    if !(duration == -1 || (duration > 0 && duration < MAX_INT32)) {
        return Err(ApiError::bad_request(format!(
            "bad request error duration input: {duration}, duration must be either -1(Never) or a positive integer"
        )));
    }
    if level != "system" && level != "project" {
        return Err(ApiError::bad_request(format!(
            "bad request error level input: {level}"
        )));
    }
    if permissions.is_empty() {
        return Err(ApiError::bad_request("bad request empty permission"));
    }
    for perm in permissions {
        let Some((perm, null_access)) = perm else {
            return Err(ApiError::bad_request("bad request empty permission"));
        };
        if perm.access.is_empty() || *null_access {
            return Err(ApiError::bad_request("bad request empty access"));
        }
    }
    if level == "project" && permissions.len() > 1 {
        return Err(ApiError::bad_request("bad request permission"));
    }
    for (perm, _) in permissions.iter().flatten() {
        let known = match perm.kind.as_str() {
            "system" => SYSTEM_POLICIES,
            "project" => PROJECT_POLICIES,
            other => {
                return Err(ApiError::bad_request(format!(
                    "bad request permission level: {other}"
                )));
            }
        };
        for a in &perm.access {
            if !known.contains(&(a.resource.as_str(), a.action.as_str())) {
                return Err(ApiError::bad_request(format!(
                    "bad request permission: {}:{}",
                    a.resource, a.action
                )));
            }
        }
    }
    Ok(())
}

/// `isValidPermissionScope` (`src/server/v2.0/handler/robot.go`, v2.12+): every new permission
/// needs a creator permission of the same `kind:namespace` (or `kind:*`), and every new access
/// must appear among that permission's accesses as the exact string `resource:action:effect`.
fn is_valid_permission_scope(creating: &[Permission], creator: &[Permission]) -> bool {
    creating.iter().all(|new| {
        let holder = creator
            .iter()
            .find(|c| c.kind == new.kind && c.namespace == new.namespace)
            .or_else(|| {
                creator
                    .iter()
                    .find(|c| c.kind == new.kind && c.namespace == "*")
            });
        holder.is_some_and(|holder| {
            new.access.iter().all(|a| {
                let key = a.scope_key();
                holder.access.iter().any(|h| h.scope_key() == key)
            })
        })
    })
}

/// Exact equality or (fuzzy) case-insensitive substring (`__icontains`, `src/lib/orm/query.go`);
/// an absent keyword matches everything, a range or list nothing.
fn keyword_matches(keyword: Option<&Keyword>, value: &str) -> bool {
    match keyword {
        None => true,
        Some(Keyword::Exact(want)) => value == want,
        Some(Keyword::Fuzzy(part)) => contains_ignore_case(value, part),
        Some(Keyword::Other) => false,
    }
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// `sort=k1,-k2` on `name`, `id`, `creation_time`, `expires_at`; unknown keys are ignored and
/// the default is by name (`sort:"default"` on the robot model's `Name`).
fn sort_robots(robots: &mut [&Robot], sort: Option<&str>) {
    let keys: Vec<(&str, bool)> = sort
        .unwrap_or("")
        .split(',')
        .filter(|k| !k.is_empty())
        .map(|k| k.strip_prefix('-').map_or((k, false), |k| (k, true)))
        .collect();
    robots.sort_by(|a, b| {
        for (key, desc) in &keys {
            let ord = match *key {
                "name" => a.stored_name.cmp(&b.stored_name),
                "id" => a.id.cmp(&b.id),
                "creation_time" => a.created.cmp(&b.created),
                "expires_at" => a.expires_at.cmp(&b.expires_at),
                _ => std::cmp::Ordering::Equal,
            };
            let ord = if *desc { ord.reverse() } else { ord };
            if ord.is_ne() {
                return ord;
            }
        }
        a.stored_name.cmp(&b.stored_name)
    });
}

/// `limit page_size offset (page-1)*page_size`, no limit when `page_size <= 0`
/// (`src/lib/orm/query.go`).
fn page_of<T>(items: &[T], paging: Paging) -> &[T] {
    if paging.page_size <= 0 {
        return items;
    }
    let size = usize::try_from(paging.page_size).unwrap_or(usize::MAX);
    let offset = if paging.page > 0 {
        usize::try_from(paging.page - 1)
            .unwrap_or(usize::MAX)
            .saturating_mul(size)
    } else {
        0
    };
    let start = offset.min(items.len());
    let end = start.saturating_add(size).min(items.len());
    &items[start..end]
}
