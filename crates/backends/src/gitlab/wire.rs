//! GitLab REST API v4 bodies (deploy tokens), only the fields the broker uses. Unknown fields
//! are ignored: newer GitLabs add some.

use serde::{Deserialize, Serialize};

/// The body of `POST /projects/:id/deploy_tokens`.
#[derive(Debug, Serialize)]
pub(crate) struct DeployTokenCreate<'a> {
    pub(crate) name: &'a str,
    pub(crate) scopes: Vec<&'static str>,
    /// RFC 3339 UTC; GitLab expires the token itself then (absent would mean never).
    pub(crate) expires_at: &'a str,
    pub(crate) username: &'a str,
}

/// `DeployTokenWithToken`. The token is read into a plain `String` only for as long as it
/// takes to move it into a `SecretString`.
#[derive(Deserialize)]
pub(crate) struct DeployTokenCreated {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) username: String,
    pub(crate) token: String,
}

/// One `DeployToken` of a listing.
#[derive(Debug, Deserialize)]
pub(crate) struct ListedDeployToken {
    pub(crate) id: i64,
    pub(crate) name: String,
}
