//! Harbor v2.0 API bodies (`api/v2.0/swagger.yaml`), only the fields the broker uses.
//! Unknown fields are ignored: newer Harbors add some.

use serde::{Deserialize, Serialize};

/// `RobotCreate`. No `secret` (Harbor ignores it and generates one) and no `effect` in the
/// access entries: a manager robot's permissions are compared as exact
/// `resource:action:effect` strings, and robots made in Harbor's UI have an empty effect, so
/// sending `allow` would be refused.
#[derive(Debug, Serialize)]
pub(crate) struct RobotCreate<'a> {
    pub(crate) name: &'a str,
    pub(crate) description: &'a str,
    pub(crate) level: &'static str,
    pub(crate) duration: i64,
    pub(crate) disable: bool,
    pub(crate) permissions: [RobotPermission<'a>; 1],
}

/// `RobotPermission`.
#[derive(Debug, Serialize)]
pub(crate) struct RobotPermission<'a> {
    pub(crate) kind: &'static str,
    pub(crate) namespace: &'a str,
    pub(crate) access: Vec<Access>,
}

/// `Access`, without `effect` (see [`RobotCreate`]).
#[derive(Debug, Serialize)]
pub(crate) struct Access {
    pub(crate) resource: &'static str,
    pub(crate) action: &'static str,
}

/// `RobotCreated`. The secret is read into a plain `String` only for as long as it takes to
/// move it into a `SecretString`.
#[derive(Deserialize)]
pub(crate) struct RobotCreated {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) secret: String,
}

/// One `Robot` of a listing.
#[derive(Debug, Deserialize)]
pub(crate) struct ListedRobot {
    pub(crate) id: i64,
    pub(crate) name: String,
}

/// One `Project` of a listing.
#[derive(Debug, Deserialize)]
pub(crate) struct ListedProject {
    pub(crate) project_id: i64,
    pub(crate) name: String,
}

/// `Errors`: `{"errors":[{"code":..,"message":..}]}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Errors {
    #[serde(default)]
    pub(crate) errors: Vec<ErrorEntry>,
}

/// One `Error`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorEntry {
    #[serde(default)]
    pub(crate) code: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<String>,
}
