//! JFrog Access's OIDC token exchange bodies (`POST /access/api/v1/oidc/token`), only the
//! fields the broker uses. Unknown answer fields are ignored: Access adds some (`scope`,
//! `refresh_token`, `reference_token`) depending on the identity mapping and the version.

use serde::{Deserialize, Serialize};

/// The OAuth 2.0 token exchange grant (RFC 8693), the only one the endpoint takes.
pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The subject token is an OIDC ID token (a JWT).
pub(crate) const SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// The provider type of an OIDC integration that is not GitHub's or Azure's.
pub(crate) const PROVIDER_TYPE: &str = "Generic OpenID Connect";

/// The exchange request. Not `Debug`: it holds the broker's JWT.
#[derive(Serialize)]
pub(crate) struct ExchangeRequest<'a> {
    pub(crate) grant_type: &'static str,
    pub(crate) subject_token_type: &'static str,
    pub(crate) subject_token: &'a str,
    pub(crate) provider_name: &'a str,
    pub(crate) provider_type: &'static str,
    /// Informational in JFrog's docs; the JWT's own `aud` is what the provider checks.
    pub(crate) audience: &'a str,
}

/// The exchange answer. Not `Debug`: it holds the access token. `expires_in` is read as an
/// unsigned integer, so a negative, fractional or string value is malformed.
#[derive(Deserialize)]
pub(crate) struct ExchangeResponse {
    pub(crate) access_token: String,
    pub(crate) expires_in: u64,
    pub(crate) username: String,
    #[serde(default)]
    pub(crate) token_type: Option<String>,
}

/// JFrog's error body: `{"errors":[{"code": "UNAUTHORIZED", "message": ...}]}` (Access) or
/// `{"errors":[{"status": 401, "message": ...}]}` (Artifactory).
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub(crate) errors: Vec<ErrorEntry>,
}

/// One entry of [`ErrorBody`].
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorEntry {
    #[serde(default)]
    pub(crate) code: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) message: Option<String>,
}
