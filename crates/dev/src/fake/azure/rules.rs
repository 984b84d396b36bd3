//! The fake's state and decisions: tenants and applications with their federated identity
//! credentials and role assignments, the Entra access tokens and ACR refresh tokens handed
//! out, and what each request must satisfy. Synchronous; the assertion's signature and times
//! are checked by [`crate::fake::federation::FederatedJwtVerifier`] in the HTTP shell before
//! [`State::match_credential`] looks for a matching credential.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::fake::federation::{JwtRejection, VerifiedJwt};

/// The only grant the fake's token endpoint serves.
pub(super) const CLIENT_CREDENTIALS: &str = "client_credentials";
/// The client assertion type of a JWT client assertion (RFC 7523).
pub(super) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The ACR audience's resource (what `https://containerregistry.azure.net/.default` asks for).
pub(super) const ACR_RESOURCE: &str = "https://containerregistry.azure.net";
/// The ARM audience's resources (both spellings Entra knows).
pub(super) const ARM_RESOURCES: [&str; 2] = [
    "https://management.azure.com",
    "https://management.core.windows.net",
];
/// Most federated identity credentials per application (Microsoft Graph, "Create
/// federatedIdentityCredential": "Maximum of 20 objects can be added to an application").
pub const MAX_FEDERATED_CREDENTIALS: usize = 20;
/// Longest issuer, subject and audience of a federated identity credential, in characters
/// (Microsoft Graph, federatedIdentityCredential resource type).
pub const MAX_FIC_FIELD_CHARS: usize = 600;
/// The roles that give access to a registry's content (AcrPull/AcrPush; in the ABAC mode the
/// repository roles).
pub const ROLES: [&str; 4] = [
    "AcrPull",
    "AcrPush",
    "Container Registry Repository Reader",
    "Container Registry Repository Writer",
];
/// Most tokens of each kind held at once (expired ones are dropped first). The fake's bound.
pub(super) const MAX_TOKENS: usize = 10_000;
/// Most applications, and most audit entries kept. The fake's bounds.
pub(super) const MAX_APPS: usize = 256;
pub(super) const MAX_AUDIT: usize = 10_000;

/// A refusal of Entra's token endpoint: status, OAuth `error`, AADSTS code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EntraError {
    pub(super) status: u16,
    pub(super) error: &'static str,
    pub(super) code: u32,
    pub(super) description: String,
}

impl EntraError {
    fn new(status: u16, error: &'static str, code: u32, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            code,
            description: description.into(),
        }
    }

    /// 400 `invalid_request`.
    pub(super) fn invalid_request(code: u32, description: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", code, description)
    }

    /// 401 `invalid_client`: what Entra answers for a client assertion it refuses
    /// (external-secrets/external-secrets#2783, microsoft/Agents#202 show 401 with
    /// `invalid_client`; older answers were 400 `invalid_request`,
    /// Azure/azure-workload-identity#340).
    pub(super) fn invalid_client(code: u32, description: impl Into<String>) -> Self {
        Self::new(401, "invalid_client", code, description)
    }
}

/// A refusal of ACR's exchange: status, ACR error `code`, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AcrError {
    pub(super) status: u16,
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl AcrError {
    pub(super) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

/// One federated identity credential of an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fic {
    pub(super) issuer: String,
    pub(super) subject: String,
    pub(super) audiences: Vec<String>,
}

/// One application (client) registration with its service principal.
#[derive(Debug, Clone, Default)]
pub(super) struct App {
    pub(super) tenant: String,
    pub(super) fics: Vec<Fic>,
    pub(super) roles: BTreeSet<String>,
}

/// An Entra access token handed out, keyed by its text; tenant and client id lowercased.
#[derive(Debug, Clone)]
pub(super) struct EntraToken {
    pub(super) tenant: String,
    pub(super) client_id: String,
    /// The scope's resource (`https://containerregistry.azure.net`).
    pub(super) resource: String,
    pub(super) expires_at: i64,
}

/// An ACR refresh token handed out, keyed by its text; tenant and client id as its Entra
/// token had them.
#[derive(Debug, Clone)]
pub(super) struct RefreshToken {
    pub(super) tenant: String,
    pub(super) client_id: String,
    pub(super) roles: Vec<String>,
    pub(super) expires_at: i64,
}

/// Everything the fake knows. `Debug` shows counts only: the tables are keyed by tokens.
#[derive(Default)]
pub(super) struct State {
    /// By client id (lowercase).
    pub(super) apps: BTreeMap<String, App>,
    /// By the token's text.
    pub(super) entra_tokens: HashMap<String, EntraToken>,
    pub(super) refresh_tokens: HashMap<String, RefreshToken>,
    /// When false, the registry refuses ARM-audience tokens (`az acr config
    /// authentication-as-arm update --status disabled`).
    pub(super) arm_audience_disabled: bool,
    /// The "RBAC Registry + ABAC Repository Permissions" mode, where `AcrPull` and `AcrPush`
    /// are not honoured.
    pub(super) abac_mode: bool,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("apps", &self.apps.len())
            .field("entra_tokens", &self.entra_tokens.len())
            .field("refresh_tokens", &self.refresh_tokens.len())
            .field("arm_audience_disabled", &self.arm_audience_disabled)
            .field("abac_mode", &self.abac_mode)
            .finish()
    }
}

/// A GUID in its 8-4-4-4-12 hexadecimal form (either case).
pub(super) fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The resource a client-credentials `scope` names: one value ending in `/.default`.
///
/// # Errors
/// 400 `invalid_scope` AADSTS1002012 (not `/.default`, or more than one value), or 400
/// `invalid_resource` AADSTS500011 (a resource the fake does not know).
pub(super) fn scope_resource(scope: &str) -> Result<String, EntraError> {
    let Some(resource) = scope
        .strip_suffix("/.default")
        .filter(|_| !scope.contains(' '))
    else {
        return Err(EntraError::new(
            400,
            "invalid_scope",
            1_002_012,
            format!(
                "The provided value for scope {} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
                cut(scope)
            ),
        ));
    };
    let resource = resource.trim_end_matches('/');
    if resource != ACR_RESOURCE && !ARM_RESOURCES.contains(&resource) {
        return Err(EntraError::new(
            400,
            "invalid_resource",
            500_011,
            format!(
                "The resource principal named {} was not found in the tenant.",
                cut(resource)
            ),
        ));
    }
    Ok(resource.to_owned())
}

/// What a refused assertion is answered with (codes from the AADSTS reference and the
/// replies quoted in the module docs).
pub(super) fn assertion_refusal(rejection: &JwtRejection, issuer_hint: &str) -> EntraError {
    match rejection {
        JwtRejection::UntrustedIssuer { issuer } => EntraError::invalid_client(
            700_211,
            format!(
                "No matching federated identity record found for presented assertion issuer '{}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
                cut(issuer)
            ),
        ),
        JwtRejection::Expired { .. } | JwtRejection::NotYetValid => EntraError::invalid_client(
            700_024,
            format!("Client assertion is not within its valid time range. {rejection}"),
        ),
        JwtRejection::UnknownKid { kid } => EntraError::invalid_client(
            7_000_272,
            format!(
                "The certificate with identifier {} used to sign the federated credential could not be found in the metadata of identity provider {}.",
                cut(kid),
                cut(issuer_hint)
            ),
        ),
        JwtRejection::BadSignature | JwtRejection::UnusableKey { .. } => {
            EntraError::invalid_client(
                50_013,
                format!("Assertion failed signature validation. {rejection}"),
            )
        }
        JwtRejection::Discovery { .. } | JwtRejection::IssuerMismatch { .. } => {
            EntraError::invalid_request(
                90_061,
                format!("Request to External OIDC endpoint failed. {rejection}"),
            )
        }
        _ => EntraError::invalid_request(
            50_027,
            format!("JWT token is invalid or malformed. {rejection}"),
        ),
    }
}

impl State {
    /// The application `client_id` of `tenant`.
    ///
    /// # Errors
    /// 400 `invalid_request` AADSTS90002 (no such tenant), 400 `unauthorized_client`
    /// AADSTS700016 (no such application in it).
    pub(super) fn app(&self, tenant: &str, client_id: &str) -> Result<&App, EntraError> {
        let tenant = tenant.to_ascii_lowercase();
        if !self.apps.values().any(|a| a.tenant == tenant) {
            return Err(EntraError::invalid_request(
                90_002,
                format!("Tenant '{}' not found.", cut(&tenant)),
            ));
        }
        self.apps
            .get(&client_id.to_ascii_lowercase())
            .filter(|a| a.tenant == tenant)
            .ok_or_else(|| {
                EntraError::new(
                    400,
                    "unauthorized_client",
                    700_016,
                    format!(
                        "Application with identifier '{}' was not found in the directory '{tenant}'.",
                        cut(client_id)
                    ),
                )
            })
    }

    /// After the assertion verified against the app's credential issuers: a credential with
    /// its issuer and subject (exact, case-sensitive), then one of them with an audience the
    /// assertion's `aud` holds.
    ///
    /// # Errors
    /// 401 `invalid_client` AADSTS700213 (subject) or AADSTS700212 (audience).
    pub(super) fn match_credential(app: &App, jwt: &VerifiedJwt) -> Result<(), EntraError> {
        let by_subject: Vec<&Fic> = app
            .fics
            .iter()
            .filter(|f| f.issuer == jwt.issuer && f.subject == jwt.subject)
            .collect();
        if by_subject.is_empty() {
            return Err(EntraError::invalid_client(
                700_213,
                format!(
                    "No matching federated identity record found for presented assertion subject '{}'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion. The matching is done using a case-sensitive comparison.",
                    cut(&jwt.subject)
                ),
            ));
        }
        let audience_ok = by_subject
            .iter()
            .any(|f| f.audiences.iter().any(|a| jwt.audiences.contains(a)));
        if !audience_ok {
            return Err(EntraError::invalid_client(
                700_212,
                format!(
                    "No matching federated identity record found for presented assertion audience '{}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
                    cut(&jwt.audiences.join(","))
                ),
            ));
        }
        Ok(())
    }

    /// Records an Entra token.
    ///
    /// # Errors
    /// 500 when the table is full of live tokens (the fake's bound).
    pub(super) fn record_entra(
        &mut self,
        text: String,
        token: EntraToken,
        now: i64,
    ) -> Result<(), EntraError> {
        if self.entra_tokens.len() >= MAX_TOKENS {
            self.entra_tokens.retain(|_, t| t.expires_at > now);
        }
        if self.entra_tokens.len() >= MAX_TOKENS {
            return Err(EntraError::new(
                500,
                "server_error",
                90_033,
                "too many live tokens (the fake's bound)",
            ));
        }
        self.entra_tokens.insert(text, token);
        Ok(())
    }

    /// The exchange's rules for a live Entra token: its tenant (when the request names one),
    /// its audience, and a role of the app on the registry.
    ///
    /// # Errors
    /// 401 `UNAUTHORIZED` for each (ACR answers its authentication failures with 401; the
    /// status for a principal without a role is an inference).
    pub(super) fn check_exchange(
        &self,
        access_token: &str,
        tenant: Option<&str>,
        now: i64,
    ) -> Result<(EntraToken, Vec<String>), AcrError> {
        let unauthorized = |message: String| AcrError::new(401, "UNAUTHORIZED", message);
        let Some(token) = self
            .entra_tokens
            .get(access_token)
            .filter(|t| t.expires_at > now)
        else {
            return Err(unauthorized(
                "the access token is invalid or has expired".to_owned(),
            ));
        };
        if tenant.is_some_and(|t| !t.eq_ignore_ascii_case(&token.tenant)) {
            return Err(unauthorized(
                "the access token was not issued for the tenant of the request".to_owned(),
            ));
        }
        let arm = ARM_RESOURCES.contains(&token.resource.as_str());
        if !(token.resource == ACR_RESOURCE || (arm && !self.arm_audience_disabled)) {
            return Err(unauthorized(format!(
                "the access token's audience {} is not accepted by this registry",
                cut(&token.resource)
            )));
        }
        let honoured = |role: &&String| !(self.abac_mode && role.starts_with("Acr"));
        let roles: Vec<String> = self
            .apps
            .get(&token.client_id)
            .map(|a| a.roles.iter().filter(honoured).cloned().collect())
            .unwrap_or_default();
        if roles.is_empty() {
            return Err(unauthorized(format!(
                "the principal {} has no role assignment on this registry",
                token.client_id
            )));
        }
        Ok((token.clone(), roles))
    }

    /// Records a refresh token.
    ///
    /// # Errors
    /// 500 when the table is full of live tokens (the fake's bound).
    pub(super) fn record_refresh(
        &mut self,
        text: String,
        token: RefreshToken,
        now: i64,
    ) -> Result<(), AcrError> {
        if self.refresh_tokens.len() >= MAX_TOKENS {
            self.refresh_tokens.retain(|_, t| t.expires_at > now);
        }
        if self.refresh_tokens.len() >= MAX_TOKENS {
            return Err(AcrError::new(
                500,
                "INTERNAL",
                "too many live tokens (the fake's bound)",
            ));
        }
        self.refresh_tokens.insert(text, token);
        Ok(())
    }

    /// True when `token` is a refresh token of this fake, live at `now`.
    pub(super) fn refresh_valid(&self, token: &str, now: i64) -> bool {
        self.refresh_tokens
            .get(token)
            .is_some_and(|t| t.expires_at > now)
    }
}

/// At most 256 characters of a peer's text for an error message.
pub(super) fn cut(text: &str) -> String {
    text.chars().take(256).collect()
}
