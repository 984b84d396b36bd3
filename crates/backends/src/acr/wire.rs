//! The bodies of Entra's token endpoint and ACR's `/oauth2/exchange`, only the fields the
//! broker reads, and the pieces of a refresh token's payload. Unknown answer fields are
//! ignored. Nothing here is `Debug` that holds a token.

use serde::Deserialize;

/// The `grant_type` of Entra's token request: client credentials, the assertion standing in for a
/// secret.
pub(crate) const GRANT_TYPE: &str = "client_credentials";
/// A JWT client assertion (RFC 7523), what a federated credential takes.
pub(crate) const CLIENT_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The exchange's grant: an Entra access token.
pub(crate) const EXCHANGE_GRANT_TYPE: &str = "access_token";
/// The form content type both requests use.
pub(crate) const FORM: &str = "application/x-www-form-urlencoded";

/// Entra's token answer. `expires_in` is read as an unsigned integer (the v2.0 endpoint sends
/// a number), so a string, a negative or a fraction is malformed.
#[derive(Deserialize)]
pub(crate) struct EntraTokenResponse {
    pub(crate) token_type: String,
    pub(crate) expires_in: u64,
    pub(crate) access_token: String,
}

/// Entra's error body: `{"error", "error_description": "AADSTSnnn: ...", "error_codes": [nnn],
/// "timestamp", "trace_id", "correlation_id", "error_uri"}`.
#[derive(Debug, Deserialize)]
pub(crate) struct EntraErrorBody {
    #[serde(default)]
    pub(crate) error: Option<String>,
    #[serde(default)]
    pub(crate) error_description: Option<String>,
    #[serde(default)]
    pub(crate) error_codes: Vec<serde_json::Value>,
}

/// ACR's exchange answer: `{"refresh_token": "<JWT>"}`.
#[derive(Deserialize)]
pub(crate) struct ExchangeResponse {
    pub(crate) refresh_token: String,
}

/// ACR's error body: `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug, Deserialize)]
pub(crate) struct AcrErrorBody {
    #[serde(default)]
    pub(crate) errors: Vec<AcrErrorEntry>,
}

/// One entry of [`AcrErrorBody`].
#[derive(Debug, Deserialize)]
pub(crate) struct AcrErrorEntry {
    #[serde(default)]
    pub(crate) code: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) message: Option<String>,
}
