//! The fake's state and decisions: workload identity pool providers, service accounts and
//! their `roles/iam.workloadIdentityUser` members, the federated and access tokens handed
//! out, and what each request must satisfy. Synchronous; the JWT's signature and times are
//! checked by [`crate::fake::federation::FederatedJwtVerifier`] in the HTTP shell before
//! [`State::exchange`] applies the provider's rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value};
use svid_broker_identity::secret::{ExposeSecret as _, SecretString};

use super::{RegistryRole, VerifiedJwtRecord};
use crate::fake::federation::VerifiedJwt;

/// The token exchange grant (RFC 8693), the only one accepted.
pub(super) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The only requested token type accepted (and the answer's `issued_token_type`).
pub(super) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The subject token types STS takes for an OIDC provider.
pub(super) const SUBJECT_TOKEN_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
];
/// The scope every request must include.
pub(super) const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// `google.subject`'s limit (IAM `attributeMapping`: "Cannot exceed 127 bytes").
pub(super) const MAX_GOOGLE_SUBJECT_BYTES: usize = 127;
/// IAM Credentials' default maximum `lifetime`, in seconds.
pub(super) const MAX_LIFETIME_SECS: u64 = 3600;
/// How long a federated token lives, in seconds (STS answers `expires_in: 3600`).
pub(super) const FEDERATED_LIFETIME_SECS: i64 = 3600;
/// Most tokens of each kind, and audit entries, held at once. The fake's bound.
pub(super) const MAX_TOKENS: usize = 10_000;
/// Most providers, service accounts and members per account. The fake's bound.
pub(super) const MAX_ENTRIES: usize = 256;
/// Where a provider's name starts.
const PROVIDER_PREFIX: &str = "//iam.googleapis.com/projects/";
/// The request fields STS knows (its JSON parser refuses any other).
const STS_FIELDS: [&str; 7] = [
    "grantType",
    "audience",
    "scope",
    "requestedTokenType",
    "subjectToken",
    "subjectTokenType",
    "options",
];
/// The request fields `generateAccessToken` knows.
const GENERATE_FIELDS: [&str; 3] = ["delegates", "scope", "lifetime"];

/// An STS refusal: the status and RFC 6749's `{"error", "error_description"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StsError {
    pub(super) status: u16,
    pub(super) error: &'static str,
    pub(super) description: String,
}

impl StsError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: 400,
            error,
            description: description.into(),
        }
    }

    /// `invalid_request` (400).
    pub(super) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }

    /// `invalid_grant` (400): the subject token is refused.
    pub(super) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", description)
    }
}

/// A Google API refusal: `{"error": {"code", "message", "status"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GoogleError {
    pub(super) code: u16,
    pub(super) status: &'static str,
    pub(super) message: String,
}

impl GoogleError {
    pub(super) fn invalid_argument(message: impl Into<String>) -> Self {
        Self {
            code: 400,
            status: "INVALID_ARGUMENT",
            message: message.into(),
        }
    }

    /// 401 `UNAUTHENTICATED` with Google's wording.
    pub(super) fn unauthenticated() -> Self {
        Self {
            code: 401,
            status: "UNAUTHENTICATED",
            message: "Request had invalid authentication credentials. Expected OAuth 2 access \
                      token, login cookie or other valid authentication credential. See \
                      https://developers.google.com/identity/sign-in/web/devconsole-project."
                .to_owned(),
        }
    }
}

/// The canonical status name of an HTTP status, as Google's error bodies carry it.
pub(super) fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        413 => "INVALID_ARGUMENT",
        429 => "RESOURCE_EXHAUSTED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if s >= 500 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

/// The OAuth error code an injected STS status is worded with.
pub(super) fn oauth_code(status: u16) -> &'static str {
    match status {
        401 => "invalid_client",
        403 => "access_denied",
        429 => "temporarily_unavailable",
        s if s >= 500 => "server_error",
        _ => "invalid_request",
    }
}

/// A provider's parts, from its full resource name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProviderName {
    pub(super) project_number: String,
    pub(super) pool: String,
}

impl ProviderName {
    /// `principal://.../workloadIdentityPools/<pool>/subject/<sub>`.
    pub(super) fn principal(&self, subject: &str) -> String {
        format!(
            "principal://iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/{}/subject/{subject}",
            self.project_number, self.pool
        )
    }

    /// `principalSet://.../workloadIdentityPools/<pool>/*`: every identity of the pool.
    pub(super) fn pool_set(&self) -> String {
        format!(
            "principalSet://iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/{}/*",
            self.project_number, self.pool
        )
    }
}

/// Reads `//iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/
/// <pool>/providers/<provider>`, ids 4 to 32 of `[a-z0-9-]` not starting `gcp-` (IAM REST
/// reference, `providers.create`); `None` otherwise.
pub(super) fn parse_provider(name: &str) -> Option<ProviderName> {
    let rest = name.strip_prefix(PROVIDER_PREFIX)?;
    let parts: Vec<&str> = rest.splitn(8, '/').collect();
    let [
        number,
        "locations",
        "global",
        "workloadIdentityPools",
        pool,
        "providers",
        provider,
    ] = parts.as_slice()
    else {
        return None;
    };
    let id = |s: &str| {
        (4..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with("gcp-")
    };
    let number_ok = (1..=20).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit());
    (number_ok && id(pool) && id(provider)).then(|| ProviderName {
        project_number: (*number).to_owned(),
        pool: (*pool).to_owned(),
    })
}

/// One workload identity pool provider (OIDC).
#[derive(Debug, Clone)]
pub(super) struct Provider {
    pub(super) name: ProviderName,
    pub(super) issuer_uri: String,
    /// Empty: the provider's own name, with or without `https:`.
    pub(super) allowed_audiences: Vec<String>,
    /// The attribute condition, as the subjects it lets in (`None`: every subject).
    pub(super) allowed_subjects: Option<Vec<String>>,
}

/// One service account.
#[derive(Debug, Clone, Default)]
pub(super) struct ServiceAccount {
    /// The members holding `roles/iam.workloadIdentityUser` on it.
    pub(super) workload_identity_users: BTreeSet<String>,
    /// What its Artifact Registry bindings reach, for the Docker check.
    pub(super) role: Option<RegistryRole>,
}

/// A federated token STS handed out, keyed by its text: the `principal://` of the JWT's `sub` in
/// the pool, and when it ends.
#[derive(Debug, Clone)]
pub(super) struct Federated {
    pub(super) principal: String,
    pub(super) pool_set: String,
    pub(super) expires_at: i64,
}

/// An access token IAM Credentials handed out.
#[derive(Debug, Clone)]
pub(super) struct Access {
    pub(super) service_account: String,
    pub(super) expires_at: i64,
}

/// What an exchange request says, decoded.
#[derive(Debug)]
pub(super) struct ExchangeRequest {
    pub(super) audience: String,
    pub(super) subject_token: SecretString,
}

/// Every provider, account and live token.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) providers: BTreeMap<String, Provider>,
    pub(super) service_accounts: BTreeMap<String, ServiceAccount>,
    /// By the token's text.
    pub(super) federated: HashMap<String, Federated>,
    pub(super) access: HashMap<String, Access>,
    pub(super) audit: Vec<VerifiedJwtRecord>,
}

/// Reads an exchange body: a JSON object of STS's fields only, `grantType`,
/// `requestedTokenType`, `subjectTokenType`, `scope` (including cloud-platform),
/// `subjectToken` and `audience` present as strings with the values STS takes.
///
/// # Errors
/// `invalid_request` naming the field.
pub(super) fn decode_exchange(body: &Value) -> Result<ExchangeRequest, StsError> {
    let Some(object) = body.as_object() else {
        return Err(StsError::invalid_request(
            "Invalid JSON payload received. Expected an object.",
        ));
    };
    unknown_field(object, &STS_FIELDS).map_err(StsError::invalid_request)?;
    let field = |name: &'static str| -> Result<&str, StsError> {
        match object.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.as_str()),
            Some(Value::String(_)) | None | Some(Value::Null) => Err(StsError::invalid_request(
                format!("The request is missing a required parameter: {name}."),
            )),
            Some(_) => Err(StsError::invalid_request(format!(
                "Invalid JSON payload received. Invalid value at '{name}'."
            ))),
        }
    };
    let invalid = |name: &str| StsError::invalid_request(format!("Invalid value for \"{name}\"."));
    if field("grantType")? != GRANT_TYPE {
        return Err(invalid("grant_type"));
    }
    if field("requestedTokenType")? != ACCESS_TOKEN_TYPE {
        return Err(invalid("requested_token_type"));
    }
    if !SUBJECT_TOKEN_TYPES.contains(&field("subjectTokenType")?) {
        return Err(invalid("subject_token_type"));
    }
    if !field("scope")?
        .split(' ')
        .any(|scope| scope == CLOUD_PLATFORM_SCOPE)
    {
        return Err(invalid("scope"));
    }
    let subject_token = SecretString::from(field("subjectToken")?.to_owned());
    let audience = field("audience")?.to_owned();
    if parse_provider(&audience).is_none() {
        return Err(StsError::invalid_request(
            "Invalid value for \"audience\". This value should be the full resource name of the \
             Identity Provider. See https://cloud.google.com/iam/docs/reference/sts/rest/v1/\
             TopLevel/token for the list of possible formats.",
        ));
    }
    Ok(ExchangeRequest {
        audience,
        subject_token,
    })
}

/// Google's JSON parser's refusal of a field the message does not have.
fn unknown_field(object: &Map<String, Value>, known: &[&str]) -> Result<(), String> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        Some(name) => Err(format!(
            "Invalid JSON payload received. Unknown name \"{}\": Cannot find field.",
            name.chars().take(64).collect::<String>()
        )),
        None => Ok(()),
    }
}

/// What a `generateAccessToken` body asks for: its lifetime in seconds.
///
/// # Errors
/// 400 `INVALID_ARGUMENT`: not an object, an unknown field, no `scope` (a non-empty array of
/// strings), `delegates` given (the fake has no delegation chains), a `lifetime` that is not
/// a protobuf `Duration` (`<n>s`), zero, or over 3600 s.
pub(super) fn decode_generate(body: &Value) -> Result<u64, GoogleError> {
    let Some(object) = body.as_object() else {
        return Err(GoogleError::invalid_argument(
            "Invalid JSON payload received. Expected an object.",
        ));
    };
    unknown_field(object, &GENERATE_FIELDS).map_err(GoogleError::invalid_argument)?;
    let scopes_ok = object
        .get("scope")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty() && s.iter().all(Value::is_string));
    if !scopes_ok {
        return Err(GoogleError::invalid_argument("Scope required."));
    }
    if object
        .get("delegates")
        .is_some_and(|d| d.as_array().is_none_or(|d| !d.is_empty()))
    {
        return Err(GoogleError::invalid_argument(
            "The fake supports no delegation chain: delegates must be empty.",
        ));
    }
    let lifetime = match object.get("lifetime") {
        None | Some(Value::Null) => MAX_LIFETIME_SECS,
        Some(Value::String(text)) => parse_duration(text).ok_or_else(|| {
            GoogleError::invalid_argument(format!(
                "Invalid value at 'lifetime' (type.googleapis.com/google.protobuf.Duration), \
                 Field 'lifetime', Illegal duration format; duration must end with 's': {}",
                text.chars().take(32).collect::<String>()
            ))
        })?,
        Some(_) => {
            return Err(GoogleError::invalid_argument(
                "Invalid value at 'lifetime' (type.googleapis.com/google.protobuf.Duration)",
            ));
        }
    };
    if lifetime == 0 {
        return Err(GoogleError::invalid_argument(
            "The access token lifetime must be positive.",
        ));
    }
    if lifetime > MAX_LIFETIME_SECS {
        return Err(GoogleError::invalid_argument(
            "The access token lifetime cannot exceed 3600 seconds.",
        ));
    }
    Ok(lifetime)
}

/// A protobuf JSON `Duration` (`3600s`, `1.5s`) in whole seconds, rounded up.
fn parse_duration(text: &str) -> Option<u64> {
    let number = text.strip_suffix('s')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 12
        || !digits(whole)
        || fraction.len() > 9
        || !digits(fraction)
    {
        return None;
    }
    let seconds: u64 = whole.parse().ok()?;
    Some(seconds + u64::from(fraction.bytes().any(|b| b != b'0')))
}

impl State {
    /// The provider a request names, with its issuer URI (what the verifier trusts).
    ///
    /// # Errors
    /// 400 `invalid_target` when there is no such provider.
    pub(super) fn provider(&self, name: &str) -> Result<&Provider, StsError> {
        self.providers.get(name).ok_or_else(|| {
            StsError::new(
                "invalid_target",
                "The target service indicated by the \"audience\" parameters is invalid. This \
                 might either be because the pool or provider is disabled or deleted or because \
                 it doesn't exist.",
            )
        })
    }

    /// Records a JWT whose signature and times verified.
    pub(super) fn audit(&mut self, jwt: &VerifiedJwt) {
        if self.audit.len() < MAX_TOKENS {
            self.audit.push(VerifiedJwtRecord {
                issuer: jwt.issuer.clone(),
                subject: jwt.subject.clone(),
                audiences: jwt.audiences.clone(),
                kid: jwt.kid.clone(),
            });
        }
    }

    /// After the JWT verified against the provider's issuer: the audience rule,
    /// `google.subject = assertion.sub` within 127 bytes, the attribute condition; records
    /// the federated `token` (an hour) for the principal.
    ///
    /// # Errors
    /// 400 `invalid_grant` (audience, subject size), 400 `unauthorized_client` (attribute
    /// condition), 500 when the token table is full of live tokens.
    pub(super) fn exchange(
        &mut self,
        audience: &str,
        jwt: &VerifiedJwt,
        token: &SecretString,
        now: i64,
    ) -> Result<(), StsError> {
        let provider = self.provider(audience)?;
        let audience_ok = if provider.allowed_audiences.is_empty() {
            let https = format!("https:{audience}");
            jwt.audiences.iter().any(|a| a == audience || *a == https)
        } else {
            jwt.audiences
                .iter()
                .any(|a| provider.allowed_audiences.contains(a))
        };
        if !audience_ok {
            return Err(StsError::invalid_grant(format!(
                "The audience in ID Token [{}] does not match the expected audience.",
                jwt.audiences
                    .join(", ")
                    .chars()
                    .take(512)
                    .collect::<String>()
            )));
        }
        if jwt.subject.len() > MAX_GOOGLE_SUBJECT_BYTES {
            return Err(StsError::invalid_grant(
                "The size of mapped attribute google.subject exceeds the 127 bytes limit. Either \
                 modify your attribute mapping or the incoming assertion to produce a mapped \
                 attribute that is less than 127 bytes.",
            ));
        }
        if provider
            .allowed_subjects
            .as_ref()
            .is_some_and(|allowed| !allowed.contains(&jwt.subject))
        {
            return Err(StsError::new(
                "unauthorized_client",
                "The given credential is rejected by the attribute condition.",
            ));
        }
        let federated = Federated {
            principal: provider.name.principal(&jwt.subject),
            pool_set: provider.name.pool_set(),
            expires_at: now.saturating_add(FEDERATED_LIFETIME_SECS),
        };
        if self.federated.len() >= MAX_TOKENS {
            self.federated.retain(|_, t| t.expires_at > now);
        }
        if self.federated.len() >= MAX_TOKENS {
            return Err(StsError {
                status: 500,
                error: "server_error",
                description: "too many live tokens (the fake's bound)".to_owned(),
            });
        }
        self.federated
            .insert(token.expose_secret().to_owned(), federated);
        Ok(())
    }

    /// The live federated token `bearer` stands for.
    ///
    /// # Errors
    /// 401 `UNAUTHENTICATED` when it is not one (unknown or expired).
    pub(super) fn federated(&self, bearer: &str, now: i64) -> Result<Federated, GoogleError> {
        self.federated
            .get(bearer)
            .filter(|t| t.expires_at > now)
            .cloned()
            .ok_or_else(GoogleError::unauthenticated)
    }

    /// Impersonation: the account exists and `caller` holds `roles/iam.workloadIdentityUser`
    /// on it (as its principal or its pool's principal set); records `token` for `lifetime`
    /// seconds and returns its expiry.
    ///
    /// # Errors
    /// 404 `NOT_FOUND` (no such account), 403 `PERMISSION_DENIED` (no binding), 500 when the
    /// token table is full of live tokens.
    pub(super) fn generate(
        &mut self,
        email: &str,
        caller: &Federated,
        lifetime: u64,
        token: &SecretString,
        now: i64,
    ) -> Result<i64, GoogleError> {
        let Some(account) = self.service_accounts.get(email) else {
            return Err(GoogleError {
                code: 404,
                status: "NOT_FOUND",
                message: format!(
                    "Not found; Gaia id not found for email {}",
                    email.chars().take(254).collect::<String>()
                ),
            });
        };
        let users = &account.workload_identity_users;
        if !users.contains(&caller.principal) && !users.contains(&caller.pool_set) {
            return Err(GoogleError {
                code: 403,
                status: "PERMISSION_DENIED",
                message: "Permission 'iam.serviceAccounts.getAccessToken' denied on resource \
                          (or it may not exist)."
                    .to_owned(),
            });
        }
        if self.access.len() >= MAX_TOKENS {
            self.access.retain(|_, t| t.expires_at > now);
        }
        if self.access.len() >= MAX_TOKENS {
            return Err(GoogleError {
                code: 500,
                status: "INTERNAL",
                message: "too many live tokens (the fake's bound)".to_owned(),
            });
        }
        let expires_at = now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX));
        self.access.insert(
            token.expose_secret().to_owned(),
            Access {
                service_account: email.to_owned(),
                expires_at,
            },
        );
        Ok(expires_at)
    }

    /// The role a live access token reaches at the registry, if any.
    pub(super) fn registry_role(&self, token: &str, now: i64) -> Option<RegistryRole> {
        let access = self.access.get(token).filter(|t| t.expires_at > now)?;
        self.service_accounts.get(&access.service_account)?.role
    }
}
