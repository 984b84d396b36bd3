//! Quay's answers at `GET /oauth2/federation/robot/token`, only the fields the broker reads.
//! Unknown fields are ignored.

use serde::Deserialize;

/// The success answer, `{"token": "<robot token>"}`. Read into a plain `String` only for as
/// long as it takes to check it and move it into a `SecretString`; not `Debug`.
#[derive(Deserialize)]
pub(crate) struct RobotToken {
    pub(crate) token: String,
}
