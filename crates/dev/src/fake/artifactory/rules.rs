//! The fake's state and decisions: OIDC integrations, their identity mappings, the access
//! tokens handed out, and what an exchange request must satisfy. Synchronous; the JWT's
//! signature and times are checked by [`crate::fake::federation::FederatedJwtVerifier`] in the
//! HTTP shell before [`State::exchange`] picks a mapping.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};
use svid_broker_identity::secret::{ExposeSecret as _, SecretString};

use super::TokenSpec;
use crate::fake::federation::VerifiedJwt;

/// The token exchange grant (RFC 8693), the only one accepted.
pub(super) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The only subject token type accepted: an OIDC ID token.
pub(super) const SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// What the answer's `issued_token_type` says.
pub(super) const ISSUED_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Most access tokens held at once; expired ones are dropped first. The fake's bound.
pub(super) const MAX_TOKENS: usize = 10_000;
/// Most integrations, and most mappings per integration. The fake's bound.
pub(super) const MAX_PROVIDERS: usize = 64;
pub(super) const MAX_MAPPINGS: usize = 64;

/// A refusal, as Access words it: the status, its `code` and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ApiError {
    pub(super) status: u16,
    pub(super) message: String,
}

impl ApiError {
    /// 400 `BAD_REQUEST`: a malformed request, an unknown integration, and (as Access answers
    /// `Invalid audience`, jfrog/setup-jfrog-cli#270) a JWT that fails validation.
    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }

    /// 401 `UNAUTHORIZED`: a valid JWT that no identity mapping accepts (the status is an
    /// inference; the docs do not say), or bad Basic credentials on the registry API.
    pub(super) fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: 401,
            message: message.into(),
        }
    }
}

/// Access's error `code` for a status.
pub(super) fn code_of(status: u16) -> &'static str {
    match status {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        413 => "PAYLOAD_TOO_LARGE",
        429 => "TOO_MANY_REQUESTS",
        s if s >= 500 => "INTERNAL_SERVER_ERROR",
        _ => "BAD_REQUEST",
    }
}

/// One identity mapping of an integration.
#[derive(Debug, Clone)]
pub(super) struct Mapping {
    pub(super) name: String,
    pub(super) priority: u32,
    pub(super) claims: Map<String, Value>,
    pub(super) spec: TokenSpec,
}

/// One OIDC integration ("provider").
#[derive(Debug, Clone)]
pub(super) struct Provider {
    pub(super) issuer_url: String,
    pub(super) audience: Option<String>,
    /// Sorted by priority (lower first), then name.
    pub(super) mappings: Vec<Mapping>,
}

/// An access token handed out: what the fake keeps of it, keyed by its text.
#[derive(Debug, Clone)]
pub(super) struct Issued {
    pub(super) username: String,
    pub(super) scope: String,
    pub(super) provider: String,
    pub(super) mapping: String,
    pub(super) subject: String,
    pub(super) expires_at: i64,
}

/// What an exchange request says, decoded.
#[derive(Debug)]
pub(super) struct ExchangeRequest {
    pub(super) subject_token: SecretString,
    pub(super) provider_name: String,
    pub(super) identity_mapping_name: Option<String>,
}

/// Every integration and every live token.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) providers: BTreeMap<String, Provider>,
    /// By the token's text.
    pub(super) tokens: HashMap<String, Issued>,
}

/// Reads the request body's fields: `grant_type` and `subject_token_type` exactly the token
/// exchange's, `subject_token` and `provider_name` non-empty strings; the optional
/// `provider_type`, `audience`, `identity_mapping_name`, `project_key` strings when present,
/// and `include_reference_token` a boolean.
///
/// # Errors
/// 400, naming the field.
pub(super) fn decode_exchange(body: &Value) -> Result<ExchangeRequest, ApiError> {
    let Some(object) = body.as_object() else {
        return Err(ApiError::bad_request("Request body must be a JSON object"));
    };
    let text = |name: &str| -> Result<Option<&str>, ApiError> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ApiError::bad_request(format!("{name} must be a string"))),
        }
    };
    let required = |name: &str| -> Result<&str, ApiError> {
        match text(name)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(ApiError::bad_request(format!("{name} is required"))),
        }
    };
    if required("grant_type")? != GRANT_TYPE {
        return Err(ApiError::bad_request("Unsupported grant_type"));
    }
    if required("subject_token_type")? != SUBJECT_TOKEN_TYPE {
        return Err(ApiError::bad_request("Unsupported subject_token_type"));
    }
    let subject_token = SecretString::from(required("subject_token")?.to_owned());
    let provider_name = required("provider_name")?.to_owned();
    for optional in ["provider_type", "audience", "project_key"] {
        text(optional)?;
    }
    let identity_mapping_name = text("identity_mapping_name")?.map(str::to_owned);
    if object
        .get("include_reference_token")
        .is_some_and(|v| !v.is_boolean() && !v.is_null())
    {
        return Err(ApiError::bad_request(
            "include_reference_token must be a boolean",
        ));
    }
    Ok(ExchangeRequest {
        subject_token,
        provider_name,
        identity_mapping_name,
    })
}

impl State {
    /// The integration a request names, with its issuer (what the verifier trusts).
    ///
    /// # Errors
    /// 400 when there is no integration of that name.
    pub(super) fn provider(&self, name: &str) -> Result<&Provider, ApiError> {
        self.providers.get(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "OIDC integration '{}' was not found",
                name.chars().take(64).collect::<String>()
            ))
        })
    }

    /// After the JWT verified against the integration's issuer: the audience rule, then the
    /// first mapping (by priority) whose every claim equals the JWT's (or the one named by
    /// `identity_mapping_name`, which must match too); records and returns the token's facts.
    ///
    /// # Errors
    /// 400 `Invalid audience` (the integration has an audience the JWT's `aud` lacks); 401
    /// when no mapping matches; 500 when the token table is full of live tokens.
    pub(super) fn exchange(
        &mut self,
        request: &ExchangeRequest,
        jwt: &VerifiedJwt,
        token: &SecretString,
        now: i64,
    ) -> Result<Issued, ApiError> {
        let provider = self.provider(&request.provider_name)?;
        if let Some(audience) = &provider.audience
            && !jwt.audiences.iter().any(|a| a == audience)
        {
            return Err(ApiError::bad_request("Invalid audience"));
        }
        let candidates = provider.mappings.iter().filter(|m| {
            request
                .identity_mapping_name
                .as_deref()
                .is_none_or(|name| m.name == name)
        });
        let matched = candidates
            .into_iter()
            .find(|m| claims_match(&m.claims, &jwt.claims))
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "Failed to authenticate: no identity mapping matches the token's claims",
                )
            })?;
        let issued = Issued {
            username: matched.spec.username.clone(),
            scope: matched.spec.scope.clone(),
            provider: request.provider_name.clone(),
            mapping: matched.name.clone(),
            subject: jwt.subject.clone(),
            expires_at: now
                .saturating_add(i64::try_from(matched.spec.expires_in).unwrap_or(i64::MAX)),
        };
        if self.tokens.len() >= MAX_TOKENS {
            self.tokens.retain(|_, t| t.expires_at > now);
        }
        if self.tokens.len() >= MAX_TOKENS {
            return Err(ApiError {
                status: 500,
                message: "too many live tokens (the fake's bound)".to_owned(),
            });
        }
        self.tokens
            .insert(token.expose_secret().to_owned(), issued.clone());
        Ok(issued)
    }

    /// True when `token` was handed out to `username` and has not expired at `now`: what the
    /// registry API's Basic auth accepts.
    pub(super) fn token_valid(&self, username: &str, token: &str, now: i64) -> bool {
        self.tokens
            .get(token)
            .is_some_and(|t| t.username == username && t.expires_at > now)
    }
}

/// Every claim of the mapping is in the token with an equal JSON value (exact: no pattern, no
/// case folding).
pub(super) fn claims_match(wanted: &Map<String, Value>, token: &Map<String, Value>) -> bool {
    wanted
        .iter()
        .all(|(name, value)| token.get(name) == Some(value))
}
