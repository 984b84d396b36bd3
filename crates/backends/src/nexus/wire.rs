//! Nexus Repository 3 security REST API bodies (`/service/rest/v1/security/users`), only the
//! fields the broker uses. Unknown fields are ignored: newer Nexus versions add some.

use serde::{Deserialize, Serialize};

/// `ApiCreateUser`: every field is required (`userId` not blank, the others not empty,
/// `emailAddress` a well-formed address, `status` one of `active`, `locked`, `disabled`,
/// `changepassword`, `roles` a non-empty set). Not `Debug`: it holds the password.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateUser<'a> {
    pub(crate) user_id: &'a str,
    pub(crate) first_name: &'a str,
    pub(crate) last_name: &'a str,
    pub(crate) email_address: &'a str,
    pub(crate) password: &'a str,
    pub(crate) status: &'static str,
    pub(crate) roles: [&'a str; 1],
}

/// One `ApiUser` (the create answer and each entry of a listing).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiUser {
    pub(crate) user_id: String,
    #[serde(default)]
    pub(crate) source: Option<String>,
}

/// One `ValidationErrorXO`: `{"id": "PARAMETER userId" | "*", "message": ...}`; a 400 carries a
/// JSON array of them.
#[derive(Debug, Deserialize)]
pub(crate) struct ValidationError {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<String>,
}
