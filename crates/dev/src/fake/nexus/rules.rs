//! What Nexus decides, as plain functions over the fake's state: who is calling, what their
//! roles allow, and what the users API accepts. Written from sonatype/nexus-public at aec50e47
//! (`components/nexus-security/.../internal/rest/UserApiResource.java`, `ApiCreateUser.java`,
//! `user/AbstractUserManager.java`, `internal/UserManagerImpl.java`,
//! `internal/PasswordValidator.java`, `nexus-siesta/.../ResteasyViolationExceptionMapper.java`,
//! `AuthorizationExceptionMapper.java`, `UnexpectedExceptionMapper.java`). No I/O here.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::fake::http::parse_basic;

/// Most users held at once; creating more answers 500. The fake's bound.
pub(super) const MAX_USERS: usize = 10_000;
/// Longest field value accepted (user id, names, address, password, role id), in bytes; longer
/// ones answer 400. The fake's bound (Nexus's database columns have their own).
pub(super) const MAX_FIELD_BYTES: usize = 1024;
/// Most roles one user may be given; more answer 400. The fake's bound.
pub(super) const MAX_ROLES_PER_USER: usize = 64;
/// The built-in administrator role (`nx-admin`), holding `nx-all`.
pub(super) const ADMIN_ROLE: &str = "nx-admin";

/// A refusal as Nexus answers it: each variant fixes the status and the body shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ApiError {
    /// 401 with `WWW-Authenticate` and no body: no or bad credentials.
    Unauthorized,
    /// 403 with no body (`AuthorizationExceptionMapper` for an authenticated user).
    Forbidden,
    /// 400 with a JSON array of `{id, message}` (`ValidationErrorXO`).
    Validation(Vec<(String, String)>),
    /// 404 with no body (`WebappExceptionMapper` drops the message, CVE-2020-25633).
    NotFound,
    /// 413 with no body: a request body over the fake's bound.
    TooLarge,
    /// 500 with `ERROR: (ID ...) <exception>` as text (`UnexpectedExceptionMapper`).
    Unexpected(String),
}

impl ApiError {
    fn one(id: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![(id.to_owned(), message.into())])
    }
}

/// A user's status (`ApiUserStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Active,
    Locked,
    Disabled,
    ChangePassword,
}

impl Status {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "locked" => Some(Self::Locked),
            "disabled" => Some(Self::Disabled),
            "changepassword" => Some(Self::ChangePassword),
            _ => None,
        }
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Locked => "locked",
            Self::Disabled => "disabled",
            Self::ChangePassword => "changepassword",
        }
    }
}

/// A local user. The password is kept as given (the fake's stand-in for Nexus's hash).
#[derive(Debug)]
pub(super) struct User {
    pub(super) user_id: String,
    pub(super) first_name: String,
    pub(super) last_name: String,
    pub(super) email: String,
    pub(super) password: Zeroizing<String>,
    pub(super) status: Status,
    /// The role ids as given at creation, unknown ones included (Nexus stores the mapping
    /// unchecked).
    pub(super) roles: BTreeSet<String>,
    pub(super) created: i64,
}

/// A password rule (`nexus.password.validator`): at least `min_len` characters with an
/// upper-case letter, a lower-case letter and a digit; else 400 with `message`.
#[derive(Debug, Clone)]
pub(super) struct PasswordRule {
    pub(super) min_len: usize,
    pub(super) message: String,
}

/// The users, the roles and their privileges.
#[derive(Debug)]
pub(super) struct State {
    /// Role id to privilege ids.
    pub(super) roles: BTreeMap<String, BTreeSet<String>>,
    pub(super) users: BTreeMap<String, User>,
    pub(super) admin_user: String,
    pub(super) password_rule: Option<PasswordRule>,
}

/// What a user create carries, decoded and checked.
#[derive(Debug)]
pub(super) struct NewUser {
    pub(super) user_id: String,
    pub(super) first_name: String,
    pub(super) last_name: String,
    pub(super) email: String,
    pub(super) password: Zeroizing<String>,
    pub(super) status: Status,
    pub(super) roles: BTreeSet<String>,
}

/// What a caller may do on the users API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UsersAction {
    Create,
    Read,
    Delete,
}

impl UsersAction {
    fn privilege(self) -> &'static str {
        match self {
            Self::Create => "nx-users-create",
            Self::Read => "nx-users-read",
            Self::Delete => "nx-users-delete",
        }
    }
}

impl State {
    pub(super) fn new(
        admin_user: &str,
        admin_password: &str,
        roles: BTreeMap<String, BTreeSet<String>>,
        password_rule: Option<PasswordRule>,
        now: i64,
    ) -> Self {
        let mut roles = roles;
        roles.insert(ADMIN_ROLE.to_owned(), BTreeSet::from(["nx-all".to_owned()]));
        let mut users = BTreeMap::new();
        users.insert(
            admin_user.to_owned(),
            User {
                user_id: admin_user.to_owned(),
                first_name: "Administrator".to_owned(),
                last_name: "User".to_owned(),
                email: "admin@example.org".to_owned(),
                password: Zeroizing::new(admin_password.to_owned()),
                status: Status::Active,
                roles: BTreeSet::from([ADMIN_ROLE.to_owned()]),
                created: now,
            },
        );
        Self {
            roles,
            users,
            admin_user: admin_user.to_owned(),
            password_rule,
        }
    }

    /// The caller behind an `Authorization` header: Basic with an active local user's
    /// password. Nexus answers anything else on this API with 401.
    pub(super) fn authenticate(&self, authorization: Option<&str>) -> Result<String, ApiError> {
        let (user, password) = authorization
            .and_then(parse_basic)
            .ok_or(ApiError::Unauthorized)?;
        if self.password_matches(&user, &password) {
            Ok(user)
        } else {
            Err(ApiError::Unauthorized)
        }
    }

    /// True when `user` exists, is active and has `password` (a locked, disabled or
    /// change-password user cannot log in).
    pub(super) fn password_matches(&self, user: &str, password: &str) -> bool {
        self.users.get(user).is_some_and(|u| {
            u.status == Status::Active
                && constant_time_eq(u.password.as_bytes(), password.as_bytes())
        })
    }

    /// The roles of `user` that exist (Nexus drops unknown role ids when it reads a user).
    pub(super) fn effective_roles(&self, user: &User) -> BTreeSet<String> {
        user.roles
            .iter()
            .filter(|r| self.roles.contains_key(*r))
            .cloned()
            .collect()
    }

    /// `RequiresPermissions("nexus:users:<action>")`: `nx-all`, `nx-users-all` or the action's
    /// own privilege through any existing role; else 403.
    pub(super) fn require(&self, who: &str, action: UsersAction) -> Result<(), ApiError> {
        let Some(user) = self.users.get(who) else {
            return Err(ApiError::Forbidden);
        };
        let allowed = self.effective_roles(user).iter().any(|role| {
            self.roles.get(role).is_some_and(|privileges| {
                privileges
                    .iter()
                    .any(|p| p == "nx-all" || p == "nx-users-all" || p == action.privilege())
            })
        });
        if allowed {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    /// `POST /v1/security/users` after authentication and the privilege check: the password
    /// rule, then the store (a duplicate id is the unmapped `DuplicateUserException`, 500).
    pub(super) fn create_user(&mut self, new: NewUser, now: i64) -> Result<Value, ApiError> {
        if let Some(rule) = &self.password_rule
            && !rule_allows(rule, &new.password)
        {
            return Err(ApiError::one("*", rule.message.clone()));
        }
        if self.users.contains_key(&new.user_id) {
            return Err(ApiError::Unexpected(format!(
                "org.sonatype.nexus.security.user.DuplicateUserException: User {} already exists.",
                new.user_id
            )));
        }
        if self.users.len() >= MAX_USERS {
            return Err(ApiError::Unexpected(
                "java.lang.IllegalStateException: too many users (the fake's bound)".to_owned(),
            ));
        }
        // The answer echoes the request's roles, unknown ones included (`fromUser` of the
        // object given to `addUser`).
        let answer = json!({
            "userId": new.user_id,
            "firstName": new.first_name,
            "lastName": new.last_name,
            "emailAddress": new.email,
            "source": "default",
            "status": new.status.as_str(),
            "readOnly": false,
            "roles": new.roles,
            "externalRoles": [],
        });
        self.users.insert(
            new.user_id.clone(),
            User {
                user_id: new.user_id,
                first_name: new.first_name,
                last_name: new.last_name,
                email: new.email,
                password: new.password,
                status: new.status,
                roles: new.roles,
                created: now,
            },
        );
        Ok(answer)
    }

    /// `GET /v1/security/users?userId=&source=`: every local user whose id starts with
    /// `user_id`, ignoring case (blank: all), when `source` is absent or `default`; another
    /// source has no users here. Not paged.
    pub(super) fn list_users(&self, user_id: Option<&str>, source: Option<&str>) -> Vec<Value> {
        if source.is_some_and(|s| !s.trim().is_empty() && s != "default") {
            return Vec::new();
        }
        let filter = user_id
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_lowercase);
        self.users
            .values()
            .filter(|u| {
                filter
                    .as_deref()
                    .is_none_or(|f| u.user_id.to_lowercase().starts_with(f))
            })
            .map(|u| self.api_user(u))
            .collect()
    }

    /// `DELETE /v1/security/users/{userId}`: 404 for an unknown user.
    pub(super) fn delete_user(&mut self, user_id: &str) -> Result<(), ApiError> {
        self.users
            .remove(user_id)
            .map(|_| ())
            .ok_or(ApiError::NotFound)
    }

    fn api_user(&self, u: &User) -> Value {
        json!({
            "userId": u.user_id,
            "firstName": u.first_name,
            "lastName": u.last_name,
            "emailAddress": u.email,
            "source": "default",
            "status": u.status.as_str(),
            "readOnly": false,
            "roles": self.effective_roles(u),
            "externalRoles": [],
        })
    }
}

/// Decodes and validates an `ApiCreateUser` body the way Jackson and the bean validation
/// annotations do: a wrong JSON type or an unknown `status` is a mapping error (400, id = the
/// field); then every constraint is checked and all violations are answered together
/// (`PARAMETER <field>`).
pub(super) fn decode_new_user(body: &Value) -> Result<NewUser, ApiError> {
    let Value::Object(obj) = body else {
        return Err(ApiError::one(
            "*",
            "Cannot deserialize value of type `ApiCreateUser` from a non-object",
        ));
    };
    let user_id = string(obj, "userId")?;
    let first_name = string(obj, "firstName")?;
    let last_name = string(obj, "lastName")?;
    let email = string(obj, "emailAddress")?;
    let password = Zeroizing::new(string(obj, "password")?.unwrap_or_default());
    let status = match obj.get("status") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::one(
                "status",
                format!(
                    "Cannot deserialize value of type `ApiUserStatus` from String \"{}\": not one of the values accepted for Enum class: [changepassword, disabled, active, locked]",
                    s.chars().take(64).collect::<String>()
                ),
            )
        })?),
        Some(_) => {
            return Err(ApiError::one(
                "status",
                "Cannot deserialize value of type `ApiUserStatus`",
            ));
        }
    };
    let roles = match obj.get("roles") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut roles = BTreeSet::new();
            for item in items {
                match item {
                    Value::String(s) => {
                        roles.insert(s.clone());
                    }
                    _ => {
                        return Err(ApiError::one(
                            "roles",
                            "Cannot deserialize value of type `java.lang.String` from a non-string",
                        ));
                    }
                }
            }
            Some(roles)
        }
        Some(_) => {
            return Err(ApiError::one(
                "roles",
                "Cannot deserialize value of type `java.util.Set<java.lang.String>`",
            ));
        }
    };

    let mut violations = Vec::new();
    let mut violate = |field: &str, message: &str| {
        violations.push((format!("PARAMETER {field}"), message.to_owned()));
    };
    if user_id.as_deref().is_none_or(|s| s.trim().is_empty()) {
        violate("userId", "must not be blank");
    }
    for (field, value) in [
        ("firstName", &first_name),
        ("lastName", &last_name),
        ("emailAddress", &email),
    ] {
        if value.as_deref().is_none_or(str::is_empty) {
            violate(field, "must not be empty");
        }
    }
    if email
        .as_deref()
        .is_some_and(|e| !e.is_empty() && !well_formed_email(e))
    {
        violate("emailAddress", "must be a well-formed email address");
    }
    if password.is_empty() {
        violate("password", "must not be empty");
    }
    if status.is_none() {
        violate("status", "must not be null");
    }
    if roles.as_ref().is_none_or(BTreeSet::is_empty) {
        violate("roles", "must not be empty");
    }
    let too_long = [&user_id, &first_name, &last_name, &email]
        .iter()
        .any(|v| v.as_deref().is_some_and(|s| s.len() > MAX_FIELD_BYTES))
        || password.len() > MAX_FIELD_BYTES;
    if too_long {
        violate("*", "a field is longer than the fake's bound");
    }
    if roles.as_ref().is_some_and(|r| {
        r.len() > MAX_ROLES_PER_USER || r.iter().any(|role| role.len() > MAX_FIELD_BYTES)
    }) {
        violate("roles", "more roles than the fake's bound");
    }
    if !violations.is_empty() {
        return Err(ApiError::Validation(violations));
    }
    // Every `None` was a violation above.
    Ok(NewUser {
        user_id: user_id.unwrap_or_default(),
        first_name: first_name.unwrap_or_default(),
        last_name: last_name.unwrap_or_default(),
        email: email.unwrap_or_default(),
        password,
        status: status.unwrap_or(Status::Active),
        roles: roles.unwrap_or_default(),
    })
}

/// A string member (`null` or absent: `None`); another JSON type is a mapping error.
fn string(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::one(
            field,
            "Cannot deserialize value of type `java.lang.String` from a non-string",
        )),
    }
}

/// Hibernate Validator's `@Email`, simplified: one `@`, a local part of atext characters
/// and single dots, a domain of letter/digit/hyphen labels joined by dots (no dot needed).
fn well_formed_email(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(atext));
    let domain_ok = !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

fn rule_allows(rule: &PasswordRule, password: &str) -> bool {
    password.chars().count() >= rule.min_len
        && password.chars().any(|c| c.is_ascii_uppercase())
        && password.chars().any(|c| c.is_ascii_lowercase())
        && password.chars().any(|c| c.is_ascii_digit())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
