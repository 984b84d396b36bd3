//! Kubernetes service-account tokens as exchange subjects (KEP-4412 `serviceAccountToken`).
//!
//! The kubelet credential provider runs as a host process, so its SVID proves "trusted plugin on
//! this node", not "this pod". Per-pod identity comes from the projected service-account token
//! the kubelet hands the plugin; the plugin forwards it as the `subject_token` and the broker
//! maps it to a SPIFFE ID. [`ServiceAccountValidator::validate`] checks, in this order:
//!
//! 1. size: at most [`MAX_SA_TOKEN_LEN`] bytes;
//! 2. the unverified `iss` picks the configured issuer (exact string match); nothing else is
//!    read before the signature verifies;
//! 3. compact JWS form, header allow-list, `alg` one of RS/ES/PS 256/384/512 (rejected before
//!    any key lookup), `kid` required and present in that issuer's JWK Set, key type bound to
//!    `alg`, signature (all by [`svid_broker_identity::jwt::verify_compact_jws`]);
//! 4. the verified claims: `iss` equal to the issuer; `exp` required, then `nbf` and `iat`, with
//!    [`SA_LEEWAY`]; `aud` required, any-of the issuer's configured audiences;
//! 5. `kubernetes.io.namespace` and `kubernetes.io.serviceaccount.name` present and valid SPIFFE
//!    path segments; `sub`, when present, equal to `system:serviceaccount:<ns>:<name>`;
//! 6. node binding: when the trusted-actor pattern that admitted the caller captured `{node}`,
//!    `kubernetes.io.node.name` must be present and equal to it (see [`Admission`]);
//! 7. mapping: the issuer's [`IdTemplate`] rendered with namespace and name.
//!
//! Pod name and UID (`kubernetes.io.pod`) are kept for the audit log only.
//!
//! What the configuration refuses at load, so that no issuer can speak for another's accounts:
//! two templates that can render the same SPIFFE ID ([`IdTemplate::overlaps`]), a template
//! without `{name}` unless the issuer opts in, and trusted-actor patterns ending in `**` or with
//! a capture other than `{node}` ([`TrustedActors::parse`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use svid_broker_identity::authorize::PathPattern;
use svid_broker_identity::jwt::{JwtSvidError, MAX_NUMERIC_DATE, verify_compact_jws};
use svid_broker_identity::{IdError, SpiffeId, TrustDomain};

pub mod keys;
#[cfg(test)]
mod tests;

pub use keys::{IssuerKeys, KeySource};

/// Longest service-account token accepted, in bytes: the Exchange wire's subject-token limit,
/// owned by [`svid_broker_identity::limits`].
pub use svid_broker_identity::limits::MAX_SUBJECT_TOKEN_LEN as MAX_SA_TOKEN_LEN;
/// Most `aud` values read from a token.
pub const MAX_SA_TOKEN_AUDIENCES: usize = 32;
/// Most configured issuers.
pub const MAX_SA_ISSUERS: usize = 32;
/// Most configured audiences per issuer.
pub const MAX_SA_AUDIENCES: usize = 16;
/// Most trusted actor entries.
pub const MAX_TRUSTED_ACTORS: usize = 256;
/// Longest Kubernetes name read from a token (DNS subdomain names are at most 253).
pub const MAX_K8S_NAME_LEN: usize = 253;
/// Clock leeway for `exp`, `nbf` and `iat`.
pub const SA_LEEWAY: Duration = Duration::from_secs(30);
/// The default SPIFFE ID template; `{trust_domain}` is the issuer's configured trust domain.
pub const DEFAULT_ID_TEMPLATE: &str = "spiffe://{trust_domain}/ns/{namespace}/sa/{name}";
/// The claim holding the namespace, as error messages name it.
pub const CLAIM_NAMESPACE: &str = "kubernetes.io.namespace";
/// The claim holding the service-account name, as error messages name it.
pub const CLAIM_SA_NAME: &str = "kubernetes.io.serviceaccount.name";
/// The claim holding the name of the node the pod is bound to (Kubernetes 1.30+), as error
/// messages name it.
pub const CLAIM_NODE_NAME: &str = "kubernetes.io.node.name";
/// The trusted-actor capture that binds a plugin to the pods of its own node.
pub const NODE_CAPTURE: &str = "node";

/// Why a service-account token was rejected. Errors never carry the token or claim values an
/// attacker could choose, except the time values of a verified token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaTokenError {
    /// The token is longer than [`MAX_SA_TOKEN_LEN`].
    #[error("service-account token is {len} bytes, the maximum is {max}")]
    TooLarge {
        /// Its length, in bytes.
        len: usize,
        /// [`MAX_SA_TOKEN_LEN`].
        max: usize,
    },
    /// The payload could not be read to find `iss` (not three segments, not base64url, not a
    /// JSON object).
    #[error("service-account token is not a compact jws with a json payload")]
    Malformed,
    /// `iss` is absent or null in the unverified payload (non-string: [`Self::Malformed`]).
    #[error("service-account token has no iss")]
    MissingIssuer,
    /// No configured issuer has this `iss`.
    #[error("service-account token issuer is not configured")]
    UnknownIssuer,
    /// The issuer's keys have not been loaded yet (discovery still pending or failing).
    #[error("keys of issuer {issuer} are not available")]
    KeysUnavailable {
        /// The configured issuer (`iss`) whose keys are missing.
        issuer: String,
    },
    /// The JWS layer rejected the token (form, header, `alg`, `kid`, key, signature).
    #[error("service-account token signature check failed")]
    Jws(#[source] JwtSvidError),
    /// The verified claims are not a JSON object of the expected member types (or have a
    /// duplicate member).
    #[error("service-account token claims are malformed (column {column})")]
    MalformedClaims {
        /// 1-based column in the verified claims JSON (a position, never its text).
        column: usize,
    },
    /// A claim the checks need is absent (`exp`, `aud`, namespace, name, or node when bound).
    #[error("service-account token claim {claim} is missing")]
    MissingClaim {
        /// The claim's name (a fixed string, never token text).
        claim: &'static str,
    },
    /// The verified `iss` differs from the issuer the unverified one selected (cannot happen
    /// for a well-formed token; checked all the same).
    #[error("service-account token iss does not match")]
    IssuerMismatch,
    /// The token has expired: `exp <= now - leeway`.
    #[error("service-account token expired at {exp} (now {now})")]
    Expired {
        /// The verified `exp`, in Unix seconds.
        exp: i64,
        /// The current time in Unix seconds, without the leeway.
        now: i64,
    },
    /// `nbf > now + leeway`.
    #[error("service-account token is not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The verified `nbf`, in Unix seconds.
        nbf: i64,
        /// The current time in Unix seconds, without the leeway.
        now: i64,
    },
    /// `iat > now + leeway`.
    #[error("service-account token issued in the future at {iat} (now {now})")]
    IssuedInFuture {
        /// The verified `iat`, in Unix seconds.
        iat: i64,
        /// The current time in Unix seconds, without the leeway.
        now: i64,
    },
    /// `now` is before 1970.
    #[error("the current time is before the unix epoch")]
    ClockBeforeEpoch,
    /// `exp` is after [`svid_broker_identity::jwt::MAX_NUMERIC_DATE`] (year 9999).
    #[error("service-account token exp is out of range")]
    ExpOutOfRange,
    /// `aud` is empty or has more than [`MAX_SA_TOKEN_AUDIENCES`] values.
    #[error("service-account token aud has {count} values, 1 to {max} are allowed")]
    AudienceCount {
        /// How many `aud` values the token has.
        count: usize,
        /// [`MAX_SA_TOKEN_AUDIENCES`].
        max: usize,
    },
    /// None of the token's audiences is one the issuer is configured with.
    #[error("service-account token audience is not accepted")]
    AudienceMismatch,
    /// A Kubernetes name is not usable as a SPIFFE path segment (empty, `.`, `..`, longer than
    /// [`MAX_K8S_NAME_LEN`], or a character outside `[A-Za-z0-9._-]`).
    #[error("{claim} is not a valid spiffe path segment")]
    InvalidSegment {
        /// The claim ([`CLAIM_NAMESPACE`] or [`CLAIM_SA_NAME`]).
        claim: &'static str,
    },
    /// `sub` is not `system:serviceaccount:<namespace>:<name>` for the token's own claims.
    #[error("service-account token sub does not match its kubernetes.io claims")]
    SubjectMismatch,
    /// The caller was admitted by a trusted-actor pattern capturing `{node}`, and the token's
    /// [`CLAIM_NODE_NAME`] is a different node: a node's plugin speaks only for pods bound to
    /// that node. (A token without the claim is [`Self::MissingClaim`].)
    #[error(
        "service-account token is bound to another node than the caller's ({CLAIM_NODE_NAME} must equal the {{node}} the trusted actor pattern captured)"
    )]
    NodeMismatch,
    /// The rendered SPIFFE ID does not parse (for example too long).
    #[error("mapped spiffe id is invalid")]
    Mapping(#[source] IdError),
}

impl SaTokenError {
    /// Whether the failure is the broker's (keys not loaded), not the token's.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::KeysUnavailable { .. })
    }
}

/// Why a SPIFFE ID template is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The template does not start with `spiffe://<trust domain>/` (the trust domain is
    /// literal and must be the issuer's configured one, or `{trust_domain}`).
    #[error("template must start with spiffe://<the issuer's trust domain>/")]
    TrustDomain,
    /// A path segment mixes a placeholder with other text, or names an unknown placeholder.
    #[error("path segment {index} must be literal or exactly {{namespace}} or {{name}}")]
    Segment {
        /// Zero-based index of the segment after the trust domain.
        index: usize,
    },
    /// `{namespace}` is missing or repeated, or `{name}` is repeated. Without the namespace a
    /// service account of the same name in any namespace would map to the same identity.
    #[error(
        "template must use {{namespace}} exactly once and {{name}} at most once (without the namespace, an account of the same name in any namespace would share the identity)"
    )]
    Placeholders,
    /// The template, rendered with sample values, is not a SPIFFE ID.
    #[error("template does not render to a spiffe id")]
    Render(#[source] IdError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Namespace,
    Name,
}

/// A SPIFFE ID template with whole-segment placeholders `{namespace}` and `{name}`, bound to one
/// trust domain. Placeholders fill whole path segments only, and values are checked to be single
/// valid segments, so a token can never choose the trust domain or add path segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTemplate {
    trust_domain: TrustDomain,
    parts: Vec<Part>,
    text: String,
}

impl IdTemplate {
    /// Parses `template` for `trust_domain`; `{trust_domain}` may stand for it.
    ///
    /// # Errors
    /// A [`TemplateError`] naming the rule.
    pub fn parse(template: &str, trust_domain: &TrustDomain) -> Result<Self, TemplateError> {
        let text = template.replace("{trust_domain}", trust_domain.as_str());
        let prefix = format!("spiffe://{}/", trust_domain.as_str());
        let path = text
            .strip_prefix(&prefix)
            .ok_or(TemplateError::TrustDomain)?;
        let mut parts = Vec::new();
        let (mut namespaces, mut names) = (0, 0);
        for (index, segment) in path.split('/').enumerate() {
            let part = match segment {
                "{namespace}" => {
                    namespaces += 1;
                    Part::Namespace
                }
                "{name}" => {
                    names += 1;
                    Part::Name
                }
                s if s.contains(['{', '}']) => return Err(TemplateError::Segment { index }),
                s => Part::Literal(s.to_owned()),
            };
            parts.push(part);
        }
        if namespaces != 1 || names > 1 {
            return Err(TemplateError::Placeholders);
        }
        let template = Self {
            trust_domain: trust_domain.clone(),
            parts,
            text,
        };
        template
            .render("namespace", "name")
            .map_err(TemplateError::Render)?;
        Ok(template)
    }

    /// The default template ([`DEFAULT_ID_TEMPLATE`]) for `trust_domain`.
    pub fn default_for(trust_domain: &TrustDomain) -> Self {
        let literal = |s: &str| Part::Literal(s.to_owned());
        Self {
            trust_domain: trust_domain.clone(),
            parts: vec![literal("ns"), Part::Namespace, literal("sa"), Part::Name],
            text: DEFAULT_ID_TEMPLATE.replace("{trust_domain}", trust_domain.as_str()),
        }
    }

    /// The template text, with the trust domain filled in.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The trust domain every rendered ID is in.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Whether the template has `{name}`. Without it, every account of a namespace maps to one
    /// shared identity, which the configuration accepts only with an explicit opt-in.
    pub fn has_name(&self) -> bool {
        self.parts.contains(&Part::Name)
    }

    /// Whether some namespace and name rendered by `self` and some (possibly other) namespace
    /// and name rendered by `other` give the same SPIFFE ID.
    ///
    /// Exact, not a heuristic: a rendered ID has exactly the template's segments, placeholders
    /// fill whole segments with values that pass [`is_valid_segment`], and each placeholder
    /// occurs at most once per template, so the positions are independent. Two templates
    /// therefore overlap iff they share the trust domain, have as many segments, and at every
    /// position two literals are equal, or a literal meets a placeholder that can take its value,
    /// or two placeholders meet. (The SPIFFE ID length cap could only rule out some of those
    /// renderings, so the answer errs towards refusing.)
    pub fn overlaps(&self, other: &Self) -> bool {
        self.trust_domain == other.trust_domain
            && self.parts.len() == other.parts.len()
            && self.parts.iter().zip(&other.parts).all(|pair| match pair {
                (Part::Literal(a), Part::Literal(b)) => a == b,
                (Part::Literal(l), _) | (_, Part::Literal(l)) => is_valid_segment(l),
                _ => true,
            })
    }

    /// Renders the ID. Callers check the values with [`is_valid_segment`] first; the SPIFFE
    /// parser re-checks the result.
    ///
    /// # Errors
    /// The parse error of the rendered text.
    pub fn render(&self, namespace: &str, name: &str) -> Result<SpiffeId, IdError> {
        let mut out = format!("spiffe://{}", self.trust_domain.as_str());
        for part in &self.parts {
            out.push('/');
            out.push_str(match part {
                Part::Literal(s) => s,
                Part::Namespace => namespace,
                Part::Name => name,
            });
        }
        SpiffeId::parse(&out)
    }
}

/// Whether `value` is one valid SPIFFE path segment (SPIFFE ID §2.2) of at most
/// [`MAX_K8S_NAME_LEN`] bytes.
pub fn is_valid_segment(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_K8S_NAME_LEN
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// One trusted cluster service-account issuer.
#[derive(Debug, Clone)]
pub struct SaIssuer {
    issuer: String,
    audiences: Vec<String>,
    template: IdTemplate,
    keys: Arc<IssuerKeys>,
}

impl SaIssuer {
    /// An issuer whose tokens must carry one of `audiences` (non-empty) and map by `template`.
    ///
    /// An empty `audiences` makes every token fail [`SaTokenError::AudienceMismatch`] (the
    /// configuration refuses it earlier).
    pub fn new(
        issuer: impl Into<String>,
        audiences: Vec<String>,
        template: IdTemplate,
        keys: Arc<IssuerKeys>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            template,
            keys,
        }
    }

    /// The `iss` value tokens of this issuer must carry, exactly.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The accepted audiences: a token's `aud` must contain one of them.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The template that maps a validated token to a SPIFFE ID.
    pub fn template(&self) -> &IdTemplate {
        &self.template
    }

    /// The issuer's key holder (refreshed by the server's background task).
    pub fn keys(&self) -> &Arc<IssuerKeys> {
        &self.keys
    }
}

/// A validated service-account token, mapped to a SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceAccountIdentity {
    /// The issuer's template rendered with `namespace` and `name`; policy applies to this ID.
    pub spiffe_id: SpiffeId,
    /// The token's `iss` (one of the configured issuers).
    pub issuer: String,
    /// The verified `kubernetes.io.namespace`, a valid SPIFFE path segment.
    pub namespace: String,
    /// The verified `kubernetes.io.serviceaccount.name`, a valid SPIFFE path segment.
    pub name: String,
    /// `kubernetes.io.pod.name` if pod-bound, for the audit log: no control chars, at most 253.
    pub pod_name: Option<String>,
    /// `kubernetes.io.pod.uid` if pod-bound, for the audit log: no control chars, at most 253.
    pub pod_uid: Option<String>,
    /// `kubernetes.io.node.name`, when the token carries it: checked against the caller's node
    /// when its trusted-actor pattern captured `{node}`, otherwise for the audit log only.
    pub node_name: Option<String>,
    /// The verified `exp` (at most year 9999).
    pub expires_at: SystemTime,
}

/// Validates service-account tokens of the configured issuers.
#[derive(Debug, Clone)]
pub struct ServiceAccountValidator {
    issuers: Vec<SaIssuer>,
}

#[derive(Deserialize)]
struct IssOnly<'a> {
    #[serde(borrow, default)]
    iss: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
}

#[derive(Deserialize)]
struct KubernetesClaims {
    namespace: Option<String>,
    serviceaccount: Option<ObjectRef>,
    pod: Option<ObjectRef>,
    node: Option<ObjectRef>,
}

#[derive(Deserialize)]
struct ObjectRef {
    name: Option<String>,
    uid: Option<String>,
}

impl ServiceAccountValidator {
    /// Tries `issuers` by exact `iss`, first match wins (the configuration keeps each `iss` once).
    pub fn new(issuers: Vec<SaIssuer>) -> Self {
        Self { issuers }
    }

    /// The configured issuers, in configuration order.
    pub fn issuers(&self) -> &[SaIssuer] {
        &self.issuers
    }

    /// Validates `token`, presented by the caller that `admission` admitted, at `now`; see the
    /// [module docs](self) for the order of the checks. Taking the [`Admission`] (which only
    /// [`TrustedActors::admits`] makes) means no caller can skip the node binding.
    ///
    /// # Errors
    /// The first [`SaTokenError`], in the module docs' order; later checks do not run.
    pub fn validate(
        &self,
        token: &str,
        admission: &Admission<'_>,
        now: SystemTime,
    ) -> Result<ServiceAccountIdentity, SaTokenError> {
        if token.len() > MAX_SA_TOKEN_LEN {
            return Err(SaTokenError::TooLarge {
                len: token.len(),
                max: MAX_SA_TOKEN_LEN,
            });
        }
        let issuer = self.select_issuer(token)?;
        let Some(bundle) = issuer.keys.current() else {
            // Discovery may be failing: a token arriving is a reason to try again (rate limited).
            issuer.keys.request_refresh();
            return Err(SaTokenError::KeysUnavailable {
                issuer: issuer.issuer.clone(),
            });
        };
        let verified = match verify_compact_jws(token, &bundle, MAX_SA_TOKEN_LEN) {
            Ok(v) => v,
            Err(e) => {
                if e == JwtSvidError::UnknownKid {
                    // The issuer may have rotated its key: ask the refresher (rate limited).
                    issuer.keys.request_refresh();
                }
                return Err(SaTokenError::Jws(e));
            }
        };
        let claims: Claims = serde_json::from_slice(verified.claims_json())
            .map_err(|e| SaTokenError::MalformedClaims { column: e.column() })?;

        // From here the claims are the issuer's word.
        if claims.iss.as_deref() != Some(issuer.issuer.as_str()) {
            return Err(SaTokenError::IssuerMismatch);
        }
        let exp = claims
            .exp
            .ok_or(SaTokenError::MissingClaim { claim: "exp" })?;
        check_times(exp, claims.nbf, claims.iat, now)?;
        // Not expired, so `exp` is positive; bounded so the SystemTime cannot overflow.
        if exp > MAX_NUMERIC_DATE {
            return Err(SaTokenError::ExpOutOfRange);
        }
        let expires_at = UNIX_EPOCH + Duration::from_secs(exp.unsigned_abs());
        let aud = claims
            .aud
            .ok_or(SaTokenError::MissingClaim { claim: "aud" })?;
        let audiences = match aud {
            Audience::One(a) => vec![a],
            Audience::Many(v) => v,
        };
        if audiences.is_empty() || audiences.len() > MAX_SA_TOKEN_AUDIENCES {
            return Err(SaTokenError::AudienceCount {
                count: audiences.len(),
                max: MAX_SA_TOKEN_AUDIENCES,
            });
        }
        if !audiences.iter().any(|a| issuer.audiences.contains(a)) {
            return Err(SaTokenError::AudienceMismatch);
        }

        let kubernetes = claims.kubernetes.ok_or(SaTokenError::MissingClaim {
            claim: CLAIM_NAMESPACE,
        })?;
        let namespace = kubernetes.namespace.ok_or(SaTokenError::MissingClaim {
            claim: CLAIM_NAMESPACE,
        })?;
        let name =
            kubernetes
                .serviceaccount
                .and_then(|sa| sa.name)
                .ok_or(SaTokenError::MissingClaim {
                    claim: CLAIM_SA_NAME,
                })?;
        if !is_valid_segment(&namespace) {
            return Err(SaTokenError::InvalidSegment {
                claim: CLAIM_NAMESPACE,
            });
        }
        if !is_valid_segment(&name) {
            return Err(SaTokenError::InvalidSegment {
                claim: CLAIM_SA_NAME,
            });
        }
        if let Some(sub) = &claims.sub
            && *sub != format!("system:serviceaccount:{namespace}:{name}")
        {
            return Err(SaTokenError::SubjectMismatch);
        }
        let node_name = kubernetes.node.and_then(|n| n.name);
        if let Some(actor_node) = admission.node {
            // A node's plugin speaks only for pods bound to that node: with the claim absent
            // (an unbound token, or a cluster before 1.30) there is nothing to hold it to.
            let token_node = node_name.as_deref().ok_or(SaTokenError::MissingClaim {
                claim: CLAIM_NODE_NAME,
            })?;
            if token_node != actor_node {
                return Err(SaTokenError::NodeMismatch);
            }
        }
        let spiffe_id = issuer
            .template
            .render(&namespace, &name)
            .map_err(SaTokenError::Mapping)?;
        let (pod_name, pod_uid) = kubernetes
            .pod
            .map(|p| {
                (
                    p.name.as_deref().map(audit_text),
                    p.uid.as_deref().map(audit_text),
                )
            })
            .unwrap_or_default();
        Ok(ServiceAccountIdentity {
            spiffe_id,
            issuer: issuer.issuer.clone(),
            namespace,
            name,
            pod_name,
            pod_uid,
            node_name: node_name.as_deref().map(audit_text),
            expires_at,
        })
    }

    /// The issuer named by the unverified `iss`: the only claim read before the signature.
    fn select_issuer(&self, token: &str) -> Result<&SaIssuer, SaTokenError> {
        let mut segments = token.split('.');
        let (Some(_), Some(payload), Some(_), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(SaTokenError::Malformed);
        };
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| SaTokenError::Malformed)?;
        let iss: IssOnly<'_> =
            serde_json::from_slice(&json).map_err(|_| SaTokenError::Malformed)?;
        let iss = iss.iss.ok_or(SaTokenError::MissingIssuer)?;
        self.issuers
            .iter()
            .find(|i| i.issuer == iss)
            .ok_or(SaTokenError::UnknownIssuer)
    }
}

/// Pod names and UIDs go to the audit log as given by the (verified) issuer, but bounded and
/// without control characters.
fn audit_text(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_K8S_NAME_LEN)
        .collect()
}

fn check_times(
    exp: i64,
    nbf: Option<i64>,
    iat: Option<i64>,
    now: SystemTime,
) -> Result<(), SaTokenError> {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| SaTokenError::ClockBeforeEpoch)?
        .as_secs();
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let leeway = i64::try_from(SA_LEEWAY.as_secs()).unwrap_or(0);
    if exp.saturating_add(leeway) <= now {
        return Err(SaTokenError::Expired { exp, now });
    }
    if let Some(nbf) = nbf
        && nbf > now.saturating_add(leeway)
    {
        return Err(SaTokenError::NotYetValid { nbf, now });
    }
    if let Some(iat) = iat
        && iat > now.saturating_add(leeway)
    {
        return Err(SaTokenError::IssuedInFuture { iat, now });
    }
    Ok(())
}

/// Which actors (plugin identities) may present subject tokens: exact SPIFFE IDs or
/// [`PathPattern`]s. Empty = service-account mode disabled.
///
/// A pattern may capture `{node}` (`spiffe://example.org/k8s/node/{node}/credential-provider`):
/// a caller it admits may then present only tokens whose [`CLAIM_NODE_NAME`] is the captured
/// segment, so a compromised node plugin cannot speak for pods of other nodes.
#[derive(Clone, Default)]
pub struct TrustedActors {
    entries: Vec<(String, ActorRule)>,
}

#[derive(Clone)]
enum ActorRule {
    Exact(SpiffeId),
    Pattern(PathPattern),
}

impl fmt::Debug for TrustedActors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(t, _)| t))
            .finish()
    }
}

/// A caller [`TrustedActors::admits`] let in: the entry that did, and the node it is bound to.
/// Only `admits` makes one, and [`ServiceAccountValidator::validate`] needs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission<'a> {
    entry: &'a str,
    node: Option<&'a str>,
}

impl<'a> Admission<'a> {
    /// The trusted-actor entry that admitted the caller, as configured.
    pub fn entry(&self) -> &'a str {
        self.entry
    }

    /// The `{node}` segment of the caller's ID, when the entry captures it.
    pub fn node(&self) -> Option<&'a str> {
        self.node
    }
}

/// Why a trusted-actor entry is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustedActorError {
    /// Entry `index` is neither a SPIFFE ID nor a valid pattern.
    #[error("trusted actor {index} is not a spiffe id or pattern")]
    Invalid {
        /// Its 0-based position in the list.
        index: usize,
    },
    /// Entry `index` ends in `**`, which admits any ID below a prefix, however deep: any
    /// workload that can be given such an ID could present every pod's token.
    #[error(
        "trusted actor {index} ends in \"**\": name the plugin's ID, with * or {{node}} for one segment"
    )]
    TrailingDoubleStar {
        /// Its 0-based position in the list.
        index: usize,
    },
    /// Entry `index` captures something other than `{node}`; only `{node}` has a meaning here,
    /// and a misspelt one would silently drop the node binding.
    #[error(
        "trusted actor {index} captures something other than {{node}}; use * for a segment that is not the node"
    )]
    UnknownCapture {
        /// Its 0-based position in the list.
        index: usize,
    },
    /// More than [`MAX_TRUSTED_ACTORS`] entries.
    #[error("more than {max} trusted actors")]
    TooMany {
        /// [`MAX_TRUSTED_ACTORS`].
        max: usize,
    },
}

impl TrustedActors {
    /// Parses entries: one with `*` or `{` is a pattern, anything else an exact SPIFFE ID.
    ///
    /// # Errors
    /// [`TrustedActorError`].
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, TrustedActorError> {
        if entries.len() > MAX_TRUSTED_ACTORS {
            return Err(TrustedActorError::TooMany {
                max: MAX_TRUSTED_ACTORS,
            });
        }
        let mut out = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let entry = entry.as_ref();
            let rule = if entry.contains(['*', '{']) {
                let pattern =
                    PathPattern::parse(entry).map_err(|_| TrustedActorError::Invalid { index })?;
                // The pattern parser allows `**` only as the last segment, so this is the one
                // place it can be.
                if entry.ends_with("**") {
                    return Err(TrustedActorError::TrailingDoubleStar { index });
                }
                if pattern.capture_names().any(|n| n != NODE_CAPTURE) {
                    return Err(TrustedActorError::UnknownCapture { index });
                }
                ActorRule::Pattern(pattern)
            } else {
                ActorRule::Exact(
                    SpiffeId::parse(entry).map_err(|_| TrustedActorError::Invalid { index })?,
                )
            };
            out.push((entry.to_owned(), rule));
        }
        Ok(Self { entries: out })
    }

    /// Whether no actor is trusted (service-account mode off).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry that admits `actor`, with the node it captured, if any.
    ///
    /// When several entries match, one that captures `{node}` wins over the others (else the
    /// first in configured order): a broader entry listed too must not lift the node binding
    /// the operator asked for.
    pub fn admits<'a>(&'a self, actor: &'a SpiffeId) -> Option<Admission<'a>> {
        let mut matching = self.entries.iter().filter_map(|(entry, rule)| {
            let node = match rule {
                ActorRule::Exact(id) => (id == actor).then_some(None)?,
                ActorRule::Pattern(p) => p.matches(actor)?.get(NODE_CAPTURE),
            };
            Some(Admission { entry, node })
        });
        let first = matching.next()?;
        if first.node.is_some() {
            return Some(first);
        }
        Some(matching.find(|a| a.node.is_some()).unwrap_or(first))
    }
}

/// Service-account mode: the trusted actors and the issuers.
#[derive(Debug, Clone)]
pub struct ServiceAccountMode {
    /// Who may present subject tokens.
    pub trusted_actors: TrustedActors,
    /// How tokens are validated and mapped.
    pub validator: ServiceAccountValidator,
}
