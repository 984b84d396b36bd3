//! Google STS's and IAM Credentials' bodies, only the fields the broker uses. Unknown answer
//! fields are ignored: Google adds fields to its APIs without notice.

use serde::{Deserialize, Serialize};

/// The OAuth 2.0 token exchange grant (RFC 8693), the only one STS takes.
pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// What the broker asks STS for: an OAuth 2.0 access token (the federated token).
pub(crate) const REQUESTED_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The subject token is a JWT (the broker's, verified against the provider's issuer).
pub(crate) const SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// `POST /v1/token` (STS REST reference `v1/TopLevel/token`). Not `Debug`: it holds the
/// broker's JWT.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExchangeRequest<'a> {
    pub(crate) grant_type: &'static str,
    /// The provider's full resource name, `//iam.googleapis.com/projects/...`.
    pub(crate) audience: &'a str,
    pub(crate) scope: &'static str,
    pub(crate) requested_token_type: &'static str,
    pub(crate) subject_token: &'a str,
    pub(crate) subject_token_type: &'static str,
}

/// STS's answer. Not `Debug`: it holds the federated token. `expires_in` is read as an
/// unsigned integer, so a negative, fractional or string value is malformed.
#[derive(Deserialize)]
pub(crate) struct ExchangeResponse {
    pub(crate) access_token: String,
    pub(crate) issued_token_type: String,
    pub(crate) token_type: String,
    pub(crate) expires_in: u64,
}

/// STS's OAuth 2.0 error body (RFC 6749 section 5.2): `{"error", "error_description"}`.
#[derive(Debug, Deserialize)]
pub(crate) struct OAuthError {
    pub(crate) error: String,
    #[serde(default)]
    pub(crate) error_description: Option<String>,
}

/// `POST /v1/projects/-/serviceAccounts/<email>:generateAccessToken`.
#[derive(Serialize)]
pub(crate) struct GenerateRequest<'a> {
    pub(crate) scope: [&'static str; 1],
    /// A protobuf `Duration` in JSON: whole seconds with an `s`.
    pub(crate) lifetime: &'a str,
}

/// IAM Credentials' answer. Not `Debug`: it holds the access token.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateResponse {
    pub(crate) access_token: String,
    /// A protobuf `Timestamp` in JSON: RFC 3339, `Z`-normalized.
    pub(crate) expire_time: String,
}

/// Google's API error body: `{"error": {"code", "message", "status"}}`.
#[derive(Debug, Deserialize)]
pub(crate) struct GoogleErrorBody {
    pub(crate) error: GoogleError,
}

/// The inner object of [`GoogleErrorBody`].
#[derive(Debug, Deserialize)]
pub(crate) struct GoogleError {
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) status: Option<String>,
}
