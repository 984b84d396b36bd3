//! The fake's state and decisions, synchronous: IAM OIDC providers, roles (trust and
//! permissions), STS sessions, ECR authorization tokens, and IAM policy evaluation (the
//! subset the broker's session policies and the tests' role policies use).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};
use svid_broker_identity::secret::{ExposeSecret as _, SecretString};

use super::{Condition, RoleTrust, Statement};
use crate::fake::federation::VerifiedJwt;

/// Most providers, roles, live sessions and tokens held. The fake's bounds.
pub(super) const MAX_PROVIDERS: usize = 64;
pub(super) const MAX_ROLES: usize = 64;
pub(super) const MAX_SESSIONS: usize = 10_000;
/// The claim session tags come in (`principal_tags` and `transitive_tag_keys` inside it).
pub(super) const TAGS_CLAIM: &str = "https://aws.amazon.com/tags";
/// STS: at most 50 session tags, keys 1 to 128 characters, values at most 256.
pub(super) const MAX_TAGS: usize = 50;

/// A refusal as AWS words it: status, error code (`__type` for JSON) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AwsError {
    pub(super) status: u16,
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl AwsError {
    pub(super) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `ValidationError` (STS's parameter constraints).
    pub(super) fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationError", message)
    }

    /// 400 `InvalidIdentityToken`.
    pub(super) fn invalid_token(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidIdentityToken", message)
    }

    /// 403 `AccessDenied`: the role's trust policy does not let this token in.
    pub(super) fn access_denied() -> Self {
        Self::new(
            403,
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        )
    }
}

/// An IAM OIDC provider: its URL as registered and its client ids (audiences).
#[derive(Debug, Clone)]
pub(super) struct Provider {
    pub(super) url: String,
    pub(super) client_ids: Vec<String>,
}

/// An IAM role: its ARN's parts, its trust policy and its permissions.
#[derive(Debug, Clone)]
pub(super) struct Role {
    pub(super) partition: String,
    pub(super) account: String,
    pub(super) name: String,
    pub(super) trust: RoleTrust,
    pub(super) permissions: Vec<PolicyStatement>,
}

/// One evaluated policy statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PolicyStatement {
    pub(super) allow: bool,
    pub(super) actions: Vec<String>,
    pub(super) resources: Vec<String>,
}

impl From<&Statement> for PolicyStatement {
    fn from(s: &Statement) -> Self {
        Self {
            allow: true,
            actions: s.actions.clone(),
            resources: s.resources.clone(),
        }
    }
}

/// What a session (and every ECR token it made) may do: the role's permissions, narrowed
/// by the session policy when one was passed.
#[derive(Debug, Clone)]
pub(super) struct Permissions {
    pub(super) role: Vec<PolicyStatement>,
    pub(super) session: Option<Vec<PolicyStatement>>,
}

impl Permissions {
    /// Allowed by the role and (when present) by the session policy: their intersection.
    pub(super) fn allows(&self, action: &str, resource: &str) -> bool {
        evaluate(&self.role, action, resource)
            && self
                .session
                .as_ref()
                .is_none_or(|session| evaluate(session, action, resource))
    }
}

/// Allowed when some Allow statement matches and no Deny statement does.
fn evaluate(statements: &[PolicyStatement], action: &str, resource: &str) -> bool {
    let matches = |s: &PolicyStatement| {
        s.actions
            .iter()
            .any(|a| glob(&a.to_ascii_lowercase(), &action.to_ascii_lowercase()))
            && s.resources.iter().any(|r| glob(r, resource))
    };
    statements.iter().any(|s| s.allow && matches(s))
        && !statements.iter().any(|s| !s.allow && matches(s))
}

/// IAM's wildcard matching: `*` any run of characters, `?` one character.
pub(super) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Reads a session policy document: `Statement` (one or a list) of `Effect` `Allow`/`Deny`,
/// `Action` and `Resource` (a string or a list). Other elements (`NotAction`, `Condition`,
/// `Principal`) are refused: the fake does not evaluate them (a limitation, not AWS's rule).
///
/// # Errors
/// 400 `MalformedPolicyDocument`.
pub(super) fn parse_policy(text: &str) -> Result<Vec<PolicyStatement>, AwsError> {
    let bad = |why: &str| {
        AwsError::new(
            400,
            "MalformedPolicyDocument",
            format!("The policy is not in the valid JSON format: {why}"),
        )
    };
    let doc: Value = serde_json::from_str(text).map_err(|_| bad("not JSON"))?;
    let Some(doc) = doc.as_object() else {
        return Err(bad("not a JSON object"));
    };
    let statements = match doc.get("Statement") {
        Some(Value::Array(list)) => list.clone(),
        Some(one @ Value::Object(_)) => vec![one.clone()],
        _ => return Err(bad("no Statement")),
    };
    let strings = |v: Option<&Value>, name: &str| -> Result<Vec<String>, AwsError> {
        match v {
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(&format!("{name} is not a string list"))),
            _ => Err(bad(&format!("a statement has no {name}"))),
        }
    };
    statements
        .iter()
        .map(|s| {
            let Some(s) = s.as_object() else {
                return Err(bad("a statement is not an object"));
            };
            if let Some(key) = s
                .keys()
                .find(|k| !matches!(k.as_str(), "Sid" | "Effect" | "Action" | "Resource"))
            {
                return Err(bad(&format!("{key} is not supported by the fake")));
            }
            let allow = match s.get("Effect").and_then(Value::as_str) {
                Some("Allow") => true,
                Some("Deny") => false,
                _ => return Err(bad("Effect is not Allow or Deny")),
            };
            Ok(PolicyStatement {
                allow,
                actions: strings(s.get("Action"), "Action")?,
                resources: strings(s.get("Resource"), "Resource")?,
            })
        })
        .collect()
}

/// An STS session the fake issued, keyed by its access key id; dropped once expired when
/// the table is full.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) secret_access_key: SecretString,
    pub(super) session_token: SecretString,
    pub(super) expires_at: i64,
    pub(super) partition: String,
    pub(super) account: String,
    pub(super) role_name: String,
    pub(super) session_name: String,
    pub(super) permissions: Permissions,
}

/// An ECR authorization token the fake made.
#[derive(Debug, Clone)]
pub(super) struct RegistryToken {
    pub(super) expires_at: i64,
    pub(super) partition: String,
    pub(super) account: String,
    pub(super) assumed_role_arn: String,
    pub(super) permissions: Permissions,
}

/// Every provider, role, session and token.
#[derive(Debug, Default)]
pub(super) struct State {
    /// By URL without its scheme (how IAM names a provider).
    pub(super) providers: BTreeMap<String, Provider>,
    pub(super) roles: BTreeMap<String, Role>,
    /// By access key id.
    pub(super) sessions: HashMap<String, Session>,
    /// By password.
    pub(super) tokens: HashMap<String, RegistryToken>,
    /// IAM users' long-term access keys, by access key id.
    pub(super) users: HashMap<String, IamUser>,
}

/// An IAM user with one long-term access key.
#[derive(Debug, Clone)]
pub(super) struct IamUser {
    pub(super) arn: String,
    pub(super) partition: String,
    pub(super) account: String,
    pub(super) secret_access_key: SecretString,
    pub(super) permissions: Vec<PolicyStatement>,
}

/// Who signed a request, once its SigV4 signature verified: a session's assumed-role ARN or
/// an IAM user's ARN, and what it may do.
#[derive(Debug, Clone)]
pub(super) struct Caller {
    pub(super) arn: String,
    pub(super) partition: String,
    pub(super) account: String,
    pub(super) permissions: Permissions,
}

/// `(partition, account)` of a user ARN `arn:<partition>:iam::<12 digits>:user/<path/>name`.
pub(super) fn parse_user_arn(arn: &str) -> Option<(String, String)> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let name = resource.strip_prefix("user/")?.rsplit('/').next()?;
    if partition.is_empty()
        || account.len() != 12
        || !account.bytes().all(|b| b.is_ascii_digit())
        || name.is_empty()
    {
        return None;
    }
    Some((partition.to_owned(), account.to_owned()))
}

/// What a verified `AssumeRoleWithWebIdentity` request asks.
pub(super) struct AssumeRequest<'a> {
    pub(super) role_arn: &'a str,
    pub(super) session_name: &'a str,
    pub(super) duration: Option<u64>,
    pub(super) policy: Option<Vec<PolicyStatement>>,
}

/// The URL without `https://` or `http://`: IAM's name of an OIDC provider, and the prefix of
/// its condition keys.
pub(super) fn without_scheme(url: &str) -> &str {
    url.strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url)
}

/// `(partition, account, name)` of a role ARN.
pub(super) fn parse_role_arn(arn: &str) -> Option<(String, String, String)> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let path = resource.strip_prefix("role/")?;
    let name = path.rsplit('/').next()?;
    if partition.is_empty()
        || account.len() != 12
        || !account.bytes().all(|b| b.is_ascii_digit())
        || name.is_empty()
    {
        return None;
    }
    Some((partition.to_owned(), account.to_owned(), name.to_owned()))
}

/// The session tags of a verified JWT: `{"principal_tags": {key: [value] or value},
/// "transitive_tag_keys": [...]}`, checked as STS checks tags (at most 50; keys 1 to 128 and
/// values at most 256 characters of letters, digits, spaces and `_.:/=+-@`; no `aws:` key;
/// keys unique regardless of case). `None` without the claim.
///
/// # Errors
/// 400 `InvalidIdentityToken` (the code is an inference: the docs do not name it).
pub(super) fn session_tags(
    claims: &Map<String, Value>,
) -> Result<Option<BTreeMap<String, String>>, AwsError> {
    let Some(claim) = claims.get(TAGS_CLAIM) else {
        return Ok(None);
    };
    let bad = |why: &str| AwsError::invalid_token(format!("Invalid session tags: {why}"));
    let Some(claim) = claim.as_object() else {
        return Err(bad("the tags claim is not an object"));
    };
    let Some(principal) = claim.get("principal_tags").and_then(Value::as_object) else {
        return Err(bad("no principal_tags object"));
    };
    if principal.len() > MAX_TAGS {
        return Err(bad("more than 50 session tags"));
    }
    let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
    let mut tags = BTreeMap::new();
    let mut lower = std::collections::BTreeSet::new();
    for (key, value) in principal {
        let value = match value {
            Value::String(v) => v.clone(),
            Value::Array(items) if items.len() == 1 && items[0].is_string() => {
                items[0].as_str().unwrap_or_default().to_owned()
            }
            _ => return Err(bad("a tag value is not one string")),
        };
        let key_len = key.chars().count();
        if key_len == 0
            || key_len > 128
            || !key.chars().all(allowed)
            || key.to_ascii_lowercase().starts_with("aws:")
        {
            return Err(bad("a tag key breaks the key rule"));
        }
        if value.chars().count() > 256 || !value.chars().all(allowed) {
            return Err(bad("a tag value breaks the value rule"));
        }
        if !lower.insert(key.to_lowercase()) {
            return Err(bad("two tag keys differ only in case"));
        }
        tags.insert(key.clone(), value);
    }
    match claim.get("transitive_tag_keys") {
        None => {}
        Some(Value::Array(keys))
            if keys
                .iter()
                .all(|k| k.as_str().is_some_and(|k| tags.contains_key(k))) => {}
        Some(_) => return Err(bad("transitive_tag_keys names a key that is not a tag")),
    }
    Ok(Some(tags))
}

fn condition_holds(condition: &Condition, values: &[String]) -> bool {
    match condition {
        Condition::StringEquals(wanted) => values.iter().any(|v| v == wanted),
        Condition::StringLike(pattern) => values.iter().any(|v| glob(pattern, v)),
    }
}

impl State {
    /// The provider `iss` names (compared without the scheme, as IAM does).
    ///
    /// # Errors
    /// 400 `InvalidIdentityToken` "No OpenIDConnect provider found in your account for ...".
    pub(super) fn provider_for(&self, iss: &str) -> Result<&Provider, AwsError> {
        self.providers.get(without_scheme(iss)).ok_or_else(|| {
            AwsError::invalid_token(format!(
                "No OpenIDConnect provider found in your account for {}",
                iss.chars().take(256).collect::<String>()
            ))
        })
    }

    /// After the JWT verified against its provider: the audience, the role's trust policy
    /// (provider, `sub`, `aud`, `sts:TagSession` when tags come), the duration against the
    /// role's maximum; then a new session.
    ///
    /// # Errors
    /// 400 `InvalidIdentityToken` (audience), 403 `AccessDenied` (no such role, trust),
    /// 400 `ValidationError` (duration), 500 when the session table is full.
    pub(super) fn assume(
        &mut self,
        request: AssumeRequest<'_>,
        jwt: &VerifiedJwt,
        tags: Option<&BTreeMap<String, String>>,
        credentials: (String, SecretString, SecretString),
        now: i64,
    ) -> Result<Session, AwsError> {
        let provider = self.provider_for(&jwt.issuer)?;
        if !jwt
            .audiences
            .iter()
            .any(|a| provider.client_ids.iter().any(|c| c == a))
        {
            return Err(AwsError::invalid_token("Incorrect token audience"));
        }
        let Some(role) = self.roles.get(request.role_arn) else {
            return Err(AwsError::access_denied());
        };
        let trust = &role.trust;
        let trusted = without_scheme(&trust.provider) == without_scheme(&jwt.issuer)
            && condition_holds(&trust.sub, std::slice::from_ref(&jwt.subject))
            && condition_holds(&trust.aud, &jwt.audiences)
            && (tags.is_none() || trust.allow_tag_session);
        if !trusted {
            return Err(AwsError::access_denied());
        }
        let duration = request.duration.unwrap_or(3600);
        if duration > trust.max_session_duration.as_secs() {
            return Err(AwsError::validation(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
            ));
        }
        if self.sessions.len() >= MAX_SESSIONS {
            self.sessions.retain(|_, s| s.expires_at > now);
            if self.sessions.len() >= MAX_SESSIONS {
                return Err(AwsError::new(
                    500,
                    "InternalFailure",
                    "too many sessions (the fake's bound)",
                ));
            }
        }
        let (key, secret, token) = credentials;
        let session = Session {
            secret_access_key: secret,
            session_token: token,
            expires_at: now.saturating_add(i64::try_from(duration).unwrap_or(i64::MAX)),
            partition: role.partition.clone(),
            account: role.account.clone(),
            role_name: role.name.clone(),
            session_name: request.session_name.to_owned(),
            permissions: Permissions {
                role: role.permissions.clone(),
                session: request.policy,
            },
        };
        self.sessions.insert(key, session.clone());
        Ok(session)
    }

    /// The registry token of `password` when it lives at `now`.
    pub(super) fn live_token(&self, password: &str, now: i64) -> Option<&RegistryToken> {
        self.tokens.get(password).filter(|t| t.expires_at > now)
    }

    /// Records a registry token, dropping expired ones when the table is full.
    pub(super) fn add_token(&mut self, password: &SecretString, token: RegistryToken, now: i64) {
        if self.tokens.len() >= MAX_SESSIONS {
            self.tokens.retain(|_, t| t.expires_at > now);
        }
        if self.tokens.len() < MAX_SESSIONS {
            self.tokens
                .insert(password.expose_secret().to_owned(), token);
        }
    }
}
