//! The policy file, its load-time validation, and the decision.

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use svid_broker_identity::limits::{MAX_ISSUER_LEN, MAX_SCOPES, MAX_SERVICE_LEN};
use svid_broker_identity::report::redact_url_userinfo;
use svid_broker_identity::{Captures, PathPattern, SpiffeId, TrustDomain};
use toml::Spanned;

use crate::decision::{ActionSet, Decision, RuleHit, ScopeTrace};
use crate::error::{DecisionError, Location, PolicyError};
use crate::kind::{Reach, RegistryKind};
use crate::profile::Profile;
use crate::repository::{RepoPatternError, RepositoryPattern};
use crate::scope::{self, Action, ResourceScope};
use crate::subject::{Placeholders, SubjectTemplate};

mod cloud;

pub use cloud::{
    AWS_DEFAULT_JWT_AUDIENCE, AZURE_DEFAULT_JWT_AUDIENCE, AwsAccount, AzureAccount, CloudAccount,
    GcpAccount, MAX_AWS_SESSION_SECONDS, MAX_CLOUD_FIELD_LEN, MIN_AWS_SESSION_SECONDS, aws_domain,
};
use cloud::{RawAws, RawAzure, RawClouds, RawGcp};

/// Largest policy file [`Policy::load`] reads, in bytes.
pub const MAX_POLICY_FILE_BYTES: u64 = 1024 * 1024;
/// Most `[[registries]]` entries.
pub const MAX_REGISTRIES: usize = 256;
/// Most `[[rules]]` entries.
pub const MAX_RULES: usize = 10_000;
/// Most entries in one list (`hosts`, `repositories`, `actions`).
pub const MAX_LIST_LEN: usize = 256;
/// Default token lifetime when `token_ttl_seconds` is absent.
pub const DEFAULT_TOKEN_TTL_SECONDS: u64 = 300;
/// Shortest token lifetime: clients treat anything shorter as 60 s anyway (token.md).
pub const MIN_TOKEN_TTL_SECONDS: u64 = 60;
/// Longest token lifetime: registry tokens are meant to be short-lived.
pub const MAX_TOKEN_TTL_SECONDS: u64 = 3600;
/// Longest registry name, in bytes.
pub const MAX_REGISTRY_NAME_LEN: usize = 64;
/// Longest rule id, in bytes.
pub const MAX_RULE_ID_LEN: usize = 128;

/// The action string that grants the registry catalog (`GET /v2/_catalog`).
pub const CATALOG_ACTION: &str = "registry:catalog:*";

/// Whether a rule grants or takes away actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Effect {
    /// Grants the rule's actions.
    #[default]
    Allow,
    /// Takes the rule's actions away, whatever any allow rule says.
    Deny,
}

/// Longest `url`, in bytes.
pub const MAX_API_URL_LEN: usize = 2048;
/// Longest `credential_file` or `ca_file` path, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// One registry the broker issues credentials for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    name: String,
    service: String,
    kind: RegistryKind,
    /// `kind = "token"` only.
    signing: Option<(String, Profile)>,
    /// Every other kind.
    api: Option<RegistryApi>,
    token_ttl: Duration,
    hosts: Vec<String>,
}

/// Where the broker reaches a registry's own API (every kind but `token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryApi {
    url: String,
    credential_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    /// Nexus only: (pull role, push role).
    roles: Option<(String, String)>,
    /// Quay, Artifactory and the cloud kinds: the broker's JWT for the registry.
    federation: Option<Federation>,
    /// `ecr`, `gar`, `acr` only: the cloud identity the JWT is exchanged for.
    cloud: Option<CloudAccount>,
}

/// What the broker's own JWT says to a registry that trusts the broker as an OIDC issuer
/// (`kind = "quay"` or `"artifactory"`), and whom it is exchanged for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Federation {
    audience: Option<String>,
    subject: Option<String>,
    /// Quay: (pull robot, push robot), short names.
    robots: Option<(String, String)>,
    /// Artifactory: the OIDC integration's name.
    provider_name: Option<String>,
}

impl Federation {
    /// `jwt_audience`: the JWT's `aud`, as the registry's federation config expects it; `None`
    /// means the default (the registry's `url`).
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// `jwt_subject`: the template of the JWT's `sub`; `None` means the default
    /// (`{spiffe_id}`). It parses as a [`SubjectTemplate`] with the kind's
    /// [`Placeholders`] (checked at load).
    pub fn subject_template(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// Quay (both required): the short names of the robot a pull-only grant is exchanged for
    /// (`pull_robot`) and of the one a grant with any push is (`push_robot`), in the grant's
    /// organization (`<org>+<name>`).
    pub fn quay_robots(&self) -> Option<(&str, &str)> {
        self.robots
            .as_ref()
            .map(|(pull, push)| (pull.as_str(), push.as_str()))
    }

    /// Artifactory (required): `provider_name`, the OIDC integration that trusts the broker.
    pub fn provider_name(&self) -> Option<&str> {
        self.provider_name.as_deref()
    }
}

/// Longest `jwt_audience`, `jwt_subject`, robot name or `provider_name`, in bytes.
pub const MAX_FEDERATION_FIELD_LEN: usize = 255;

impl RegistryApi {
    /// The API base URL (`url`), without a trailing `/`: `https://`, or `http://` only on a
    /// loopback IP address (`127.0.0.0/8`, `[::1]`; not the name `localhost`, which a resolver
    /// may map elsewhere); no user info, query or fragment.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The file holding the broker's own credential for the API (`credential_file`): present
    /// exactly for the kinds whose [`RegistryKind::needs_credential_file`] is true. An absolute
    /// path; the policy never reads it (the server does, at start and on each reload).
    pub fn credential_file(&self) -> Option<&Path> {
        self.credential_file.as_deref()
    }

    /// PEM file of the CA certificates the API's TLS certificate must chain to (`ca_file`);
    /// absent means the public web roots.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// For `kind = "nexus"` (where both are required): the Nexus role a pull-only user gets
    /// (`pull_role`), and the one a user that may push gets (`push_role`). The operator makes
    /// them in Nexus; what they reach is what the broker's users reach.
    pub fn nexus_roles(&self) -> Option<(&str, &str)> {
        self.roles
            .as_ref()
            .map(|(pull, push)| (pull.as_str(), push.as_str()))
    }

    /// For `kind = "quay"` and `"artifactory"`: what the broker's JWT says and whom it is
    /// exchanged for.
    pub fn federation(&self) -> Option<&Federation> {
        self.federation.as_ref()
    }

    /// For `kind = "ecr"`, `"gar"` and `"acr"` (where it is required): the `aws`, `gcp` or
    /// `azure` table.
    pub fn cloud(&self) -> Option<&CloudAccount> {
        self.cloud.as_ref()
    }

    /// The `aud` of the broker's JWT for this registry: `jwt_audience` when set, else the
    /// kind's default (the cloud's fixed audience, or the registry's `url`). `None` for a kind
    /// that signs no JWT.
    pub fn jwt_audience(&self) -> Option<String> {
        let federation = self.federation.as_ref()?;
        Some(match (federation.audience(), &self.cloud) {
            (Some(audience), _) => audience.to_owned(),
            (None, Some(cloud)) => cloud.default_jwt_audience(),
            (None, None) => self.url.clone(),
        })
    }
}

/// Longest `pull_role` / `push_role`, in bytes.
pub const MAX_ROLE_LEN: usize = 256;

impl Registry {
    /// The `name` rules refer to it by; unique within the policy.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `service` the registry sends in its challenge; the token's `aud`.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// How its credentials are made (`kind`, default `token`).
    pub fn kind(&self) -> RegistryKind {
        self.kind
    }

    /// The token's `iss` (the registry's `auth.token.issuer`): present exactly for
    /// `kind = "token"`, where it is required.
    pub fn issuer(&self) -> Option<&str> {
        self.signing.as_ref().map(|(issuer, _)| issuer.as_str())
    }

    /// The registry flavour (`profile` in the file): decides the shape of the tokens minted
    /// for it, such as the header `kid`. Present exactly for `kind = "token"`, where it is
    /// required (no default).
    pub fn profile(&self) -> Option<Profile> {
        self.signing.as_ref().map(|(_, profile)| *profile)
    }

    /// The registry's own API: present exactly for the kinds other than `token`.
    pub fn api(&self) -> Option<&RegistryApi> {
        self.api.as_ref()
    }

    /// How long credentials for this registry live: `token_ttl_seconds`, default
    /// [`DEFAULT_TOKEN_TTL_SECONDS`], between [`MIN_TOKEN_TTL_SECONDS`] and
    /// [`MAX_TOKEN_TTL_SECONDS`].
    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    /// The `host[:port]`s the registry answers on: lowercase, at least one, and unique across
    /// the policy's registries.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }
}

#[derive(Debug)]
enum SubjectMatcher {
    Exact(SpiffeId),
    TrustDomain(TrustDomain),
    Pattern(PathPattern),
}

#[derive(Debug)]
enum Target {
    Repositories(Vec<RepositoryPattern>),
    Catalog,
}

#[derive(Debug)]
struct Rule {
    id: Arc<str>,
    subject: SubjectMatcher,
    target: Target,
    actions: ActionSet,
    effect: Effect,
}

/// Rules of one registry, indexed by what the subject matcher needs to look at first.
#[derive(Debug, Default)]
struct RegistryRules {
    exact: HashMap<SpiffeId, Vec<usize>>,
    /// Trust-domain rules and pattern rules (patterns have a literal trust domain).
    by_trust_domain: HashMap<TrustDomain, Vec<usize>>,
}

/// A validated policy. Immutable and cheap to share (`Arc<Policy>` behind an `ArcSwap` for
/// hot reload).
///
/// Decisions are default deny, deny overrides allow, and never depend on rule order: for
/// each requested resource the grant is (the union of what matching allow rules allow) minus
/// (the union of what matching deny rules deny), intersected with what was asked.
#[derive(Debug)]
pub struct Policy {
    registries: Vec<Arc<Registry>>,
    by_service: HashMap<String, usize>,
    by_name: HashMap<String, usize>,
    /// Sorted by id, so traces list rules in the same order whatever the file order.
    rules: Vec<Rule>,
    /// Parallel to `registries`.
    index: Vec<RegistryRules>,
}

// The TOML shapes. Spans point errors at the offending value.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    registries: Vec<Spanned<RawRegistry>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    name: Spanned<String>,
    service: Spanned<String>,
    #[serde(default)]
    kind: RegistryKind,
    issuer: Option<Spanned<String>>,
    profile: Option<Spanned<Profile>>,
    url: Option<Spanned<String>>,
    credential_file: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    pull_role: Option<Spanned<String>>,
    push_role: Option<Spanned<String>>,
    pull_robot: Option<Spanned<String>>,
    push_robot: Option<Spanned<String>>,
    provider_name: Option<Spanned<String>>,
    jwt_audience: Option<Spanned<String>>,
    jwt_subject: Option<Spanned<String>>,
    aws: Option<Spanned<RawAws>>,
    gcp: Option<Spanned<RawGcp>>,
    azure: Option<Spanned<RawAzure>>,
    token_ttl_seconds: Option<Spanned<i64>>,
    hosts: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    subject: Option<Spanned<String>>,
    trust_domain: Option<Spanned<String>>,
    registry: Spanned<String>,
    repositories: Option<Spanned<Vec<Spanned<String>>>>,
    actions: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    effect: Effect,
    whole_registry: Option<Spanned<bool>>,
}

struct Loader<'s> {
    source: &'s str,
}

impl Loader<'_> {
    fn at<T>(&self, s: &Spanned<T>) -> Location {
        Location::from_offset(self.source, s.span().start)
    }

    fn list<'v, T>(
        &self,
        owner: &str,
        field: &'static str,
        list: &'v Spanned<Vec<T>>,
    ) -> Result<&'v [T], PolicyError> {
        let at = self.at(list);
        let items = list.get_ref();
        if items.is_empty() {
            return Err(PolicyError::EmptyList {
                owner: owner.to_owned(),
                field,
                at,
            });
        }
        if items.len() > MAX_LIST_LEN {
            return Err(PolicyError::ListTooLong {
                owner: owner.to_owned(),
                field,
                len: items.len(),
                max: MAX_LIST_LEN,
                at,
            });
        }
        Ok(items)
    }

    fn path(
        &self,
        registry: &str,
        field: &'static str,
        value: &Spanned<String>,
    ) -> Result<PathBuf, PolicyError> {
        let text = value.get_ref();
        let path = Path::new(text);
        if text.is_empty() || text.len() > MAX_PATH_LEN || !path.is_absolute() {
            return Err(PolicyError::InvalidPath {
                registry: registry.to_owned(),
                field,
                max: MAX_PATH_LEN,
                at: self.at(value),
            });
        }
        Ok(path.to_owned())
    }

    /// Refuses the first of `fields` that is set: they do not belong to the entry's kind, and
    /// `why` says so.
    fn refuse_set(
        &self,
        fields: &[(&'static str, &Option<Spanned<String>>)],
        why: &'static str,
        not_for: &dyn Fn(&'static str, &'static str, Location) -> PolicyError,
    ) -> Result<(), PolicyError> {
        match fields
            .iter()
            .find_map(|(field, value)| Some((*field, value.as_ref()?)))
        {
            Some((field, value)) => Err(not_for(field, why, self.at(value))),
            None => Ok(()),
        }
    }

    /// The federation keys of a `quay` or `artifactory` entry (refused on every other kind).
    fn federation(
        &self,
        raw: &RawRegistry,
        kind: RegistryKind,
        not_for: &dyn Fn(&'static str, &'static str, Location) -> PolicyError,
        required: &dyn Fn(&'static str, &'static str) -> PolicyError,
    ) -> Result<Option<Federation>, PolicyError> {
        let name = raw.name.get_ref();
        let text = |field: &'static str, value: &Spanned<String>| {
            if is_token_text(value.get_ref(), MAX_FEDERATION_FIELD_LEN) {
                Ok(value.get_ref().clone())
            } else {
                Err(PolicyError::InvalidRole {
                    registry: name.clone(),
                    field,
                    max: MAX_FEDERATION_FIELD_LEN,
                    at: self.at(value),
                })
            }
        };
        let Some(placeholders) = Placeholders::of(kind) else {
            self.refuse_set(
                &[
                    ("pull_robot", &raw.pull_robot),
                    ("push_robot", &raw.push_robot),
                    ("provider_name", &raw.provider_name),
                    ("jwt_audience", &raw.jwt_audience),
                    ("jwt_subject", &raw.jwt_subject),
                ],
                "only Quay, Artifactory and the cloud kinds exchange a JWT the broker signs",
                not_for,
            )?;
            return Ok(None);
        };
        let robots = if kind == RegistryKind::Quay {
            let robot = |field: &'static str, value: &Option<Spanned<String>>| {
                let value = value.as_ref().ok_or_else(|| {
                    required(field, "the Quay robot whose federation trusts the broker")
                })?;
                if !is_quay_robot_name(value.get_ref()) {
                    return Err(PolicyError::InvalidRobotName {
                        registry: name.clone(),
                        field,
                        at: self.at(value),
                    });
                }
                Ok(value.get_ref().clone())
            };
            Some((
                robot("pull_robot", &raw.pull_robot)?,
                robot("push_robot", &raw.push_robot)?,
            ))
        } else {
            self.refuse_set(
                &[
                    ("pull_robot", &raw.pull_robot),
                    ("push_robot", &raw.push_robot),
                ],
                "only Quay has robots that federate",
                not_for,
            )?;
            None
        };
        let provider_name = if kind == RegistryKind::Artifactory {
            let value = raw.provider_name.as_ref().ok_or_else(|| {
                required(
                    "provider_name",
                    "the Artifactory OIDC integration that trusts the broker",
                )
            })?;
            Some(text("provider_name", value)?)
        } else {
            self.refuse_set(
                &[("provider_name", &raw.provider_name)],
                "only Artifactory names an OIDC provider",
                not_for,
            )?;
            None
        };
        let audience = raw
            .jwt_audience
            .as_ref()
            .map(|v| text("jwt_audience", v))
            .transpose()?;
        let subject = match &raw.jwt_subject {
            None => None,
            Some(v) => {
                let template = text("jwt_subject", v)?;
                if let Err(rule) = SubjectTemplate::parse(&template, placeholders) {
                    return Err(PolicyError::InvalidSubjectTemplate {
                        registry: name.clone(),
                        rule,
                        at: self.at(v),
                    });
                }
                Some(template)
            }
        };
        Ok(Some(Federation {
            audience,
            subject,
            robots,
            provider_name,
        }))
    }

    fn registry(&self, raw: &RawRegistry, entry_at: Location) -> Result<Registry, PolicyError> {
        let name = raw.name.get_ref();
        if !is_registry_name(name) {
            return Err(PolicyError::InvalidRegistryName {
                name: name.clone(),
                at: self.at(&raw.name),
            });
        }
        if !is_token_text(raw.service.get_ref(), MAX_SERVICE_LEN) {
            return Err(PolicyError::InvalidService {
                registry: name.clone(),
                at: self.at(&raw.service),
            });
        }
        let kind = raw.kind;
        let not_for =
            |field: &'static str, why: &'static str, at: Location| PolicyError::FieldNotForKind {
                registry: name.clone(),
                kind,
                field,
                why,
                at,
            };
        let required = |field: &'static str, why: &'static str| PolicyError::FieldRequiredForKind {
            registry: name.clone(),
            kind,
            field,
            why,
            at: entry_at,
        };
        let cloud = self.cloud_account(
            name,
            kind,
            &RawClouds {
                aws: &raw.aws,
                gcp: &raw.gcp,
                azure: &raw.azure,
            },
            entry_at,
        )?;
        let (signing, api) = if kind.is_broker_signed() {
            let issuer = raw.issuer.as_ref().ok_or_else(|| {
                required(
                    "issuer",
                    "the registry checks the `iss` of the tokens the broker signs",
                )
            })?;
            if !is_token_text(issuer.get_ref(), MAX_ISSUER_LEN) {
                return Err(PolicyError::InvalidIssuer {
                    registry: name.clone(),
                    at: self.at(issuer),
                });
            }
            let profile = raw.profile.as_ref().ok_or_else(|| {
                required(
                    "profile",
                    "it decides the shape of the tokens the broker signs",
                )
            })?;
            self.refuse_set(
                &[
                    ("url", &raw.url),
                    ("credential_file", &raw.credential_file),
                    ("ca_file", &raw.ca_file),
                    ("pull_role", &raw.pull_role),
                    ("push_role", &raw.push_role),
                    ("pull_robot", &raw.pull_robot),
                    ("push_robot", &raw.push_robot),
                    ("provider_name", &raw.provider_name),
                    ("jwt_audience", &raw.jwt_audience),
                    ("jwt_subject", &raw.jwt_subject),
                ],
                "the broker signs this registry's tokens and never calls its API",
                &not_for,
            )?;
            (Some((issuer.get_ref().clone(), *profile.get_ref())), None)
        } else {
            const SIGNED_ELSEWHERE: &str = "this registry's own service signs its tokens";
            self.refuse_set(&[("issuer", &raw.issuer)], SIGNED_ELSEWHERE, &not_for)?;
            if let Some(v) = &raw.profile {
                return Err(not_for("profile", SIGNED_ELSEWHERE, self.at(v)));
            }
            let url_text = match (cloud.as_ref().and_then(CloudAccount::api_url), &raw.url) {
                // ECR and Artifact Registry: the broker calls the cloud's token services,
                // never the registry, so its API is the cloud's (the `aws`/`gcp` endpoints).
                (Some(_), Some(url)) => {
                    return Err(not_for(
                        "url",
                        "the broker calls the cloud's token services (the aws.* or gcp.* endpoints), never the registry",
                        self.at(url),
                    ));
                }
                (Some(api_url), None) => api_url,
                (None, url) => {
                    let url = url.as_ref().ok_or_else(|| {
                        required(
                            "url",
                            "the broker makes this registry's credentials through its API",
                        )
                    })?;
                    check_api_url(url.get_ref()).map_err(|reason| PolicyError::InvalidApiUrl {
                        registry: name.clone(),
                        field: "url",
                        url: redact_url_userinfo(url.get_ref())
                            .chars()
                            .take(200)
                            .collect(),
                        reason,
                        at: self.at(url),
                    })?
                }
            };
            let credential_file = match (&raw.credential_file, kind.needs_credential_file()) {
                (Some(path), true) => Some(self.path(name, "credential_file", path)?),
                (None, true) => {
                    return Err(required(
                        "credential_file",
                        "the broker's own credential for the registry's API",
                    ));
                }
                (Some(path), false) => {
                    return Err(not_for(
                        "credential_file",
                        "the registry trusts the broker as an OIDC issuer and needs no broker secret",
                        self.at(path),
                    ));
                }
                (None, false) => None,
            };
            let ca_file = raw
                .ca_file
                .as_ref()
                .map(|path| self.path(name, "ca_file", path))
                .transpose()?;
            let roles = if kind == RegistryKind::Nexus {
                let role = |field: &'static str, value: &Option<Spanned<String>>| {
                    let value = value.as_ref().ok_or_else(|| {
                        required(field, "the Nexus role the broker's users of that kind get")
                    })?;
                    if !is_token_text(value.get_ref(), MAX_ROLE_LEN) {
                        return Err(PolicyError::InvalidRole {
                            registry: name.clone(),
                            field,
                            max: MAX_ROLE_LEN,
                            at: self.at(value),
                        });
                    }
                    Ok(value.get_ref().clone())
                };
                Some((
                    role("pull_role", &raw.pull_role)?,
                    role("push_role", &raw.push_role)?,
                ))
            } else {
                self.refuse_set(
                    &[("pull_role", &raw.pull_role), ("push_role", &raw.push_role)],
                    "only Nexus users get roles",
                    &not_for,
                )?;
                None
            };
            let federation = self.federation(raw, kind, &not_for, &required)?;
            (
                None,
                Some(RegistryApi {
                    url: url_text,
                    credential_file,
                    ca_file,
                    roles,
                    federation,
                    cloud,
                }),
            )
        };
        let ttl = match &raw.token_ttl_seconds {
            None => DEFAULT_TOKEN_TTL_SECONDS,
            Some(t) => {
                let seconds = *t.get_ref();
                let at = self.at(t);
                let s = u64::try_from(seconds)
                    .ok()
                    .filter(|s| *s >= MIN_TOKEN_TTL_SECONDS)
                    .ok_or_else(|| PolicyError::TtlTooShort {
                        registry: name.clone(),
                        seconds,
                        min: MIN_TOKEN_TTL_SECONDS,
                        at,
                    })?;
                if s > MAX_TOKEN_TTL_SECONDS {
                    return Err(PolicyError::TtlTooLong {
                        registry: name.clone(),
                        seconds,
                        max: MAX_TOKEN_TTL_SECONDS,
                        at,
                    });
                }
                s
            }
        };
        let mut hosts = Vec::new();
        for host in self.list(name, "hosts", &raw.hosts)? {
            let h = host.get_ref();
            if h.bytes().any(|b| b.is_ascii_uppercase()) || !scope::is_host(h) {
                return Err(PolicyError::InvalidHost {
                    registry: name.clone(),
                    host: h.clone(),
                    at: self.at(host),
                });
            }
            hosts.push(h.clone());
        }
        Ok(Registry {
            name: name.clone(),
            service: raw.service.get_ref().clone(),
            kind,
            signing,
            api,
            token_ttl: Duration::from_secs(ttl),
            hosts,
        })
    }

    /// A registry that grants whole projects can only honour rules written project-wide:
    /// anything narrower (an allow on `team-a/app`, a deny on `team-a/secret`) would be
    /// silently widened to the project by the registry, so it is refused here.
    fn check_rule_fits_kind(
        &self,
        raw: &Spanned<RawRule>,
        rule: &Rule,
        registry: &Registry,
    ) -> Result<(), PolicyError> {
        let kind = registry.kind;
        if kind.is_broker_signed() {
            return Ok(());
        }
        match &rule.target {
            Target::Catalog => Err(PolicyError::CatalogNotForKind {
                rule: rule.id.to_string(),
                registry: registry.name.clone(),
                kind,
                at: self.at(raw),
            }),
            Target::Repositories(patterns) => {
                let reach = kind.reach();
                let spans = raw.get_ref().repositories.as_ref().map(Spanned::get_ref);
                for (i, pattern) in patterns.iter().enumerate() {
                    let fits = match reach {
                        Reach::Repository => true,
                        Reach::Project { components } => pattern.is_project_wide(components),
                        Reach::Registry => pattern.is_everything(),
                    };
                    if !fits {
                        let at = spans
                            .and_then(|items| items.get(i))
                            .map_or_else(|| self.at(raw), |item| self.at(item));
                        return Err(PolicyError::PatternNarrowerThanReach {
                            rule: rule.id.to_string(),
                            registry: registry.name.clone(),
                            kind,
                            pattern: pattern.as_str().to_owned(),
                            at,
                        });
                    }
                }
                Ok(())
            }
        }
    }

    fn rule(
        &self,
        raw: &Spanned<RawRule>,
        by_name: &HashMap<String, usize>,
    ) -> Result<(Rule, usize), PolicyError> {
        let rule_at = self.at(raw);
        let raw = raw.get_ref();
        let id = raw.id.get_ref();
        if !is_rule_id(id) {
            return Err(PolicyError::InvalidRuleId {
                rule: id.clone(),
                at: self.at(&raw.id),
            });
        }
        let rule = || id.clone();

        let subject = match (&raw.subject, &raw.trust_domain) {
            (Some(s), None) => {
                let text = s.get_ref();
                let at = self.at(s);
                if text.contains(['*', '{', '}']) {
                    SubjectMatcher::Pattern(PathPattern::parse(text).map_err(|source| {
                        PolicyError::InvalidSubjectPattern {
                            rule: rule(),
                            at,
                            source,
                        }
                    })?)
                } else {
                    SubjectMatcher::Exact(SpiffeId::parse(text).map_err(|source| {
                        PolicyError::InvalidSubject {
                            rule: rule(),
                            at,
                            source,
                        }
                    })?)
                }
            }
            (None, Some(td)) => {
                SubjectMatcher::TrustDomain(TrustDomain::parse_id_or_name(td.get_ref()).map_err(
                    |source| PolicyError::InvalidTrustDomain {
                        rule: rule(),
                        at: self.at(td),
                        source,
                    },
                )?)
            }
            // Exactly one of `subject` and `trust_domain` is required.
            (Some(_), Some(_)) | (None, None) => {
                return Err(PolicyError::SubjectMatcher {
                    rule: rule(),
                    at: rule_at,
                });
            }
        };

        let registry =
            *by_name
                .get(raw.registry.get_ref())
                .ok_or_else(|| PolicyError::UnknownRegistry {
                    rule: rule(),
                    registry: raw.registry.get_ref().clone(),
                    at: self.at(&raw.registry),
                })?;

        let mut catalog = false;
        let mut repo_actions = ActionSet::EMPTY;
        for action in self.list(id, "actions", &raw.actions)? {
            match action.get_ref().as_str() {
                CATALOG_ACTION => catalog = true,
                text => {
                    let parsed = Action::parse(text).ok().filter(Action::is_known);
                    let Some(a) = parsed else {
                        return Err(PolicyError::InvalidAction {
                            rule: rule(),
                            action: text.to_owned(),
                            at: self.at(action),
                        });
                    };
                    let set = if a == Action::ALL {
                        ActionSet::EVERYTHING
                    } else {
                        ActionSet::from_actions([&a])
                    };
                    repo_actions = repo_actions.union(set);
                }
            }
        }
        if catalog && !repo_actions.is_empty() {
            return Err(PolicyError::CatalogMixedActions {
                rule: rule(),
                at: self.at(&raw.actions),
            });
        }

        let capture_names: Vec<&str> = match &subject {
            SubjectMatcher::Pattern(p) => p.capture_names().collect(),
            SubjectMatcher::Exact(_) | SubjectMatcher::TrustDomain(_) => Vec::new(),
        };
        let subject_at = raw.subject.as_ref().map_or(rule_at, |s| self.at(s));
        let (target, actions, registry_wide) = if catalog {
            if let Some(repos) = &raw.repositories {
                return Err(PolicyError::CatalogWithRepositories {
                    rule: rule(),
                    at: self.at(repos),
                });
            }
            (Target::Catalog, ActionSet::STAR, false)
        } else {
            let Some(repos) = &raw.repositories else {
                return Err(PolicyError::MissingRepositories {
                    rule: rule(),
                    at: rule_at,
                });
            };
            let mut patterns = Vec::new();
            let mut registry_wide = false;
            for item in self.list(id, "repositories", repos)? {
                let at = self.at(item);
                let p =
                    RepositoryPattern::parse(item.get_ref(), &capture_names).map_err(|source| {
                        match source {
                            RepoPatternError::UndefinedCapture { name, .. } => {
                                PolicyError::UndefinedCapture {
                                    rule: rule(),
                                    capture: name,
                                    at,
                                }
                            }
                            source => PolicyError::InvalidRepositoryPattern {
                                rule: rule(),
                                pattern: item.get_ref().clone(),
                                at,
                                source,
                            },
                        }
                    })?;
                if p.is_registry_wide() {
                    registry_wide = true;
                    let marked = raw.whole_registry.as_ref().is_some_and(|w| *w.get_ref());
                    if raw.effect == Effect::Allow && !marked {
                        return Err(PolicyError::WholeRegistryNotMarked {
                            rule: rule(),
                            pattern: item.get_ref().clone(),
                            at,
                        });
                    }
                }
                patterns.push(p);
            }
            (Target::Repositories(patterns), repo_actions, registry_wide)
        };

        // Every capture the subject defines must be used by some repository pattern.
        let mut used = vec![false; capture_names.len()];
        if let Target::Repositories(patterns) = &target {
            for i in patterns.iter().flat_map(RepositoryPattern::captures_used) {
                used[i] = true;
            }
        }
        if let Some(i) = used.iter().position(|u| !u) {
            return Err(PolicyError::UnusedCapture {
                rule: rule(),
                capture: capture_names[i].to_owned(),
                at: subject_at,
            });
        }

        if let Some(w) = &raw.whole_registry
            && *w.get_ref()
            && !registry_wide
        {
            return Err(PolicyError::WholeRegistryUnused {
                rule: rule(),
                at: self.at(w),
            });
        }

        Ok((
            Rule {
                id: Arc::from(id.as_str()),
                subject,
                target,
                actions,
                effect: raw.effect,
            },
            registry,
        ))
    }
}

impl Policy {
    /// Parses and validates a policy from TOML text.
    pub fn from_toml_str(source: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = toml::from_str(source).map_err(|e| PolicyError::Syntax {
            at: e.span().map(|s| Location::from_offset(source, s.start)),
            message: e.message().trim_end().to_owned(),
        })?;
        let loader = Loader { source };

        if raw.registries.is_empty() {
            return Err(PolicyError::NoRegistries);
        }
        if raw.registries.len() > MAX_REGISTRIES {
            return Err(PolicyError::TooManyRegistries {
                count: raw.registries.len(),
                max: MAX_REGISTRIES,
            });
        }
        if raw.rules.len() > MAX_RULES {
            return Err(PolicyError::TooManyRules {
                count: raw.rules.len(),
                max: MAX_RULES,
            });
        }

        let mut registries = Vec::with_capacity(raw.registries.len());
        let mut by_name = HashMap::new();
        let mut by_service = HashMap::new();
        let mut hosts = HashSet::new();
        let mut audiences: HashMap<String, (String, RegistryKind)> = HashMap::new();
        for spanned in &raw.registries {
            let r = spanned.get_ref();
            let registry = loader.registry(r, loader.at(spanned))?;
            // One JWT audience per federated registry: the broker's JWTs for one registry
            // must not be accepted by another that trusts the same issuer.
            if let Some(api) = &registry.api
                && let Some(federation) = &api.federation
            {
                let audience = federation
                    .audience()
                    .map(str::to_owned)
                    .or_else(|| api.cloud.as_ref().map(CloudAccount::default_jwt_audience))
                    .unwrap_or_else(|| api.url.clone());
                // Entries of one cloud kind share that cloud's audience by design: their JWTs
                // all go to the same relying party (AWS STS, Entra ID), which tells them apart
                // by `sub` and the role or application. Any other sharing would let one
                // relying party replay a JWT meant for another.
                let same_cloud =
                    |other_kind: RegistryKind| other_kind == registry.kind && api.cloud.is_some();
                match audiences.get(&audience) {
                    Some((other, other_kind)) if !same_cloud(*other_kind) => {
                        return Err(PolicyError::SharedJwtAudience {
                            registry: registry.name,
                            other: other.clone(),
                            audience,
                            at: loader.at(spanned),
                        });
                    }
                    Some(_) => {}
                    None => {
                        audiences.insert(audience, (registry.name.clone(), registry.kind));
                    }
                }
            }
            let i = registries.len();
            if by_name.insert(registry.name.clone(), i).is_some() {
                return Err(PolicyError::DuplicateRegistryName {
                    name: registry.name,
                    at: loader.at(&r.name),
                });
            }
            if by_service.insert(registry.service.clone(), i).is_some() {
                return Err(PolicyError::DuplicateService {
                    registry: registry.name,
                    service: registry.service,
                    at: loader.at(&r.service),
                });
            }
            for (host, spanned_host) in registry.hosts.iter().zip(r.hosts.get_ref()) {
                if !hosts.insert(host.clone()) {
                    return Err(PolicyError::DuplicateHost {
                        registry: registry.name.clone(),
                        host: host.clone(),
                        at: loader.at(spanned_host),
                    });
                }
            }
            registries.push(Arc::new(registry));
        }

        let mut rules = Vec::with_capacity(raw.rules.len());
        let mut ids = HashSet::new();
        for spanned in &raw.rules {
            let (rule, registry) = loader.rule(spanned, &by_name)?;
            loader.check_rule_fits_kind(spanned, &rule, &registries[registry])?;
            if !ids.insert(rule.id.clone()) {
                return Err(PolicyError::DuplicateRuleId {
                    rule: rule.id.to_string(),
                    at: loader.at(&spanned.get_ref().id),
                });
            }
            rules.push((rule, registry));
        }
        rules.sort_by(|a, b| a.0.id.cmp(&b.0.id));

        let mut index: Vec<RegistryRules> = registries
            .iter()
            .map(|_| RegistryRules::default())
            .collect();
        let mut table = Vec::with_capacity(rules.len());
        for (i, (rule, registry)) in rules.into_iter().enumerate() {
            let idx = &mut index[registry];
            match &rule.subject {
                SubjectMatcher::Exact(id) => idx.exact.entry(id.clone()).or_default().push(i),
                SubjectMatcher::TrustDomain(td) => {
                    idx.by_trust_domain.entry(td.clone()).or_default().push(i);
                }
                SubjectMatcher::Pattern(p) => idx
                    .by_trust_domain
                    .entry(p.trust_domain().clone())
                    .or_default()
                    .push(i),
            }
            table.push(rule);
        }

        Ok(Self {
            registries,
            by_service,
            by_name,
            rules: table,
            index,
        })
    }

    /// Reads, parses and validates a policy file of at most [`MAX_POLICY_FILE_BYTES`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        let io = |source| PolicyError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // Read one byte past the cap instead of trusting metadata, which a FIFO or a file
        // growing under us would get wrong.
        // Bytes first, the size checked before UTF-8: the cap may cut a character in two, and
        // an oversized file must be reported as oversized, not as invalid UTF-8.
        let mut bytes = Vec::new();
        file.take(MAX_POLICY_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        let len = bytes.len() as u64;
        if len > MAX_POLICY_FILE_BYTES {
            return Err(PolicyError::FileTooLarge {
                path: path.to_owned(),
                len,
                max: MAX_POLICY_FILE_BYTES,
            });
        }
        let text = String::from_utf8(bytes)
            // `utf8_error`, not the `FromUtf8Error`, which would keep the whole file inside the
            // error (and print it in `Debug`).
            .map_err(|e| {
                io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    e.utf8_error(),
                ))
            })?;
        Self::from_toml_str(&text)
    }

    /// All registries, in file order.
    pub fn registries(&self) -> impl ExactSizeIterator<Item = &Arc<Registry>> {
        self.registries.iter()
    }

    /// The registry whose `service` this is.
    pub fn registry_by_service(&self, service: &str) -> Option<&Arc<Registry>> {
        self.by_service.get(service).map(|&i| &self.registries[i])
    }

    /// The registry whose `name` is exactly `name` (no case folding; names are unique).
    pub fn registry_by_name(&self, name: &str) -> Option<&Arc<Registry>> {
        self.by_name.get(name).map(|&i| &self.registries[i])
    }

    /// The projects (first repository-name components) that this registry's rules name
    /// literally, sorted: for a registry that grants per project, where a replica that has
    /// just started looks for credentials an earlier one left behind. Projects reached only
    /// through a template or `*` cannot be listed from the policy.
    pub fn literal_projects(&self, registry: &str) -> Vec<String> {
        let mut projects: Vec<String> = self
            .repository_patterns(registry)
            .filter_map(RepositoryPattern::literal_first_component)
            .map(str::to_owned)
            .collect();
        projects.sort_unstable();
        projects.dedup();
        projects
    }

    /// Whether every repository pattern of this registry's rules starts with a literal
    /// project ([`Self::literal_projects`] then lists every project the rules reach); false
    /// when some rule reaches projects through a template, `*` or `**`.
    pub fn names_every_project_literally(&self, registry: &str) -> bool {
        self.repository_patterns(registry)
            .all(|p| p.literal_first_component().is_some())
    }

    /// The ids (sorted) of the rules of the registry whose `service` this is that are for
    /// particular identities (a `subject`, exact or a pattern) rather than a whole trust
    /// domain (allow rules, and deny rules, which take a grant away from one identity only),
    /// and that may reach a repository whose name starts with `repository_prefix`
    /// (`""`: any; the kubelet's `matchImages` path is such a string prefix). Where they
    /// exist, the policy grants those repositories per identity, and a credential every pod of
    /// a node shares (the kubelet plugin in node mode) defeats that. Conservative: a pattern
    /// reaches the prefix when its literal text up to its first `*` or `{` and the prefix
    /// agree as far as both go. Empty for an unknown service.
    pub fn per_identity_rules(&self, service: &str, repository_prefix: &str) -> Vec<String> {
        let Some(&reg) = self.by_service.get(service) else {
            return Vec::new();
        };
        let reaches = |pattern: &RepositoryPattern| {
            let text = pattern.as_str();
            match text.find(['*', '{']) {
                Some(cut) => {
                    let literal = &text[..cut];
                    literal.starts_with(repository_prefix) || repository_prefix.starts_with(literal)
                }
                None => text.starts_with(repository_prefix),
            }
        };
        let index = &self.index[reg];
        let mut ids: Vec<String> = index
            .exact
            .values()
            .chain(index.by_trust_domain.values())
            .flatten()
            .map(|&r| &self.rules[r])
            .filter(|rule| {
                matches!(
                    rule.subject,
                    SubjectMatcher::Exact(_) | SubjectMatcher::Pattern(_)
                ) && match &rule.target {
                    Target::Repositories(patterns) => patterns.iter().any(reaches),
                    Target::Catalog => false,
                }
            })
            .map(|rule| rule.id.to_string())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Every repository pattern of the rules of the registry named `registry` (none for an
    /// unknown name).
    fn repository_patterns(&self, registry: &str) -> impl Iterator<Item = &RepositoryPattern> {
        let index = self.by_name.get(registry).map(|&i| &self.index[i]);
        index
            .into_iter()
            .flat_map(|index| index.exact.values().chain(index.by_trust_domain.values()))
            .flatten()
            .filter_map(|&r| match &self.rules[r].target {
                Target::Repositories(patterns) => Some(patterns),
                Target::Catalog => None,
            })
            .flatten()
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Decides what `subject` may do on the registry named by `service`.
    ///
    /// Default deny; deny overrides allow; rule order never matters. A rule's `*` allows
    /// `pull`, `push`, `delete` and `*`; a requested `*` is granted only by a rule allowing `*`,
    /// and is withdrawn by any deny rule matching the resource. `registry:catalog:*` is granted
    /// only by a catalog rule. Rules for `repository` also cover `repository(plugin)` (the same
    /// repositories; the grant keeps the requested type). Actions other than `pull`, `push`,
    /// `delete` and `*` are never granted.
    pub fn decide(
        &self,
        subject: &SpiffeId,
        service: &str,
        requested: &[ResourceScope],
    ) -> Result<Decision, DecisionError> {
        let Some(&reg) = self.by_service.get(service) else {
            let mut cut = service.len().min(MAX_SERVICE_LEN);
            while !service.is_char_boundary(cut) {
                cut -= 1;
            }
            return Err(DecisionError::UnknownService {
                service: service[..cut].to_owned(),
            });
        };
        if requested.len() > MAX_SCOPES {
            return Err(DecisionError::TooManyScopes {
                count: requested.len(),
                max: MAX_SCOPES,
            });
        }

        // The rules whose subject matcher accepts this subject, with its captures; in id
        // order, because both index lists are ascending and are merged.
        let idx = &self.index[reg];
        let exact = idx.exact.get(subject).map_or(&[][..], Vec::as_slice);
        let by_td = idx
            .by_trust_domain
            .get(subject.trust_domain())
            .map_or(&[][..], Vec::as_slice);
        let mut matched: Vec<(&Rule, Option<Captures<'_, '_>>)> = Vec::new();
        for i in merge_sorted(exact, by_td) {
            let rule = &self.rules[i];
            match &rule.subject {
                SubjectMatcher::Exact(_) | SubjectMatcher::TrustDomain(_) => {
                    matched.push((rule, None));
                }
                SubjectMatcher::Pattern(p) => {
                    if let Some(c) = p.matches(subject) {
                        matched.push((rule, Some(c)));
                    }
                }
            }
        }

        let mut trace = Vec::with_capacity(requested.len());
        for req in requested {
            let wanted = ActionSet::from_actions(&req.actions);
            let mut allowed = ActionSet::EMPTY;
            let mut denied = ActionSet::EMPTY;
            let mut allowed_by = Vec::new();
            let mut denied_by = Vec::new();
            if !wanted.is_empty() {
                for (rule, captures) in &matched {
                    if !rule_covers(rule, req, captures.as_ref()) {
                        continue;
                    }
                    let (acc, hits, effective) = match rule.effect {
                        Effect::Allow => (&mut allowed, &mut allowed_by, rule.actions),
                        Effect::Deny => (&mut denied, &mut denied_by, rule.actions.deny_closure()),
                    };
                    let hit = effective.intersect(wanted);
                    if !hit.is_empty() {
                        *acc = acc.union(hit);
                        hits.push(RuleHit {
                            rule: rule.id.clone(),
                            actions: hit,
                        });
                    }
                }
            }
            trace.push(ScopeTrace {
                requested: req.clone(),
                granted: allowed.minus(denied),
                allowed_by,
                denied_by,
            });
        }

        let mut granted: Vec<ResourceScope> = trace
            .iter()
            .filter(|t| !t.granted.is_empty())
            .map(|t| ResourceScope {
                resource_type: t.requested.resource_type,
                name: t.requested.name.clone(),
                actions: t.granted.to_set(),
            })
            .collect();
        granted.sort_by(|a, b| (a.resource_type, &a.name).cmp(&(b.resource_type, &b.name)));
        // Callers that skipped `parse_scopes` may repeat a resource: merge, never duplicate.
        granted.dedup_by(|later, kept| {
            let same = later.resource_type == kept.resource_type && later.name == kept.name;
            if same {
                kept.actions.append(&mut later.actions);
            }
            same
        });

        Ok(Decision {
            registry: self.registries[reg].clone(),
            subject: subject.clone(),
            granted,
            trace,
        })
    }
}

impl Policy {
    /// Whether any allow rule of the registry named by `service` matches `subject` (whatever
    /// resources it names): "may this subject use this registry at all", which the broker asks
    /// before issuing a registry login credential. Deny rules are not weighed here: the
    /// tokens later obtained with the credential are still decided by [`Self::decide`].
    ///
    /// # Errors
    /// [`DecisionError::UnknownService`].
    pub fn has_allow_rule(&self, subject: &SpiffeId, service: &str) -> Result<bool, DecisionError> {
        let Some(&reg) = self.by_service.get(service) else {
            let mut cut = service.len().min(MAX_SERVICE_LEN);
            while !service.is_char_boundary(cut) {
                cut -= 1;
            }
            return Err(DecisionError::UnknownService {
                service: service[..cut].to_owned(),
            });
        };
        let idx = &self.index[reg];
        let exact = idx.exact.get(subject).map_or(&[][..], Vec::as_slice);
        let by_td = idx
            .by_trust_domain
            .get(subject.trust_domain())
            .map_or(&[][..], Vec::as_slice);
        Ok(merge_sorted(exact, by_td).any(|i| {
            let rule = &self.rules[i];
            rule.effect == Effect::Allow
                && match &rule.subject {
                    SubjectMatcher::Exact(_) | SubjectMatcher::TrustDomain(_) => true,
                    SubjectMatcher::Pattern(p) => p.matches(subject).is_some(),
                }
        }))
    }

    /// Decides the registry-wide request "pull and push on every repository" for `subject` on
    /// the registry named by `service`: what a credential that reaches the whole registry may
    /// carry, for a request that names no repository (a Docker server URL, a plugin entry with
    /// `scope = "registry"`).
    ///
    /// What a caller may rely on:
    ///
    /// - Only for a registry whose kind can serve such a request
    ///   ([`RegistryKind::serves_every_repository`]: `nexus`, `artifactory`, `gar`, `acr`,
    ///   whose credentials reach the whole registry, and `ecr`, whose session policy can name
    ///   every repository). For any other registry the decision grants nothing and has an empty
    ///   trace: no credential of such a kind reaches every repository, so the question is not
    ///   put to its rules.
    /// - Only rules whose repository patterns cover every repository (`**`, written with
    ///   `whole_registry = true`) grant; for the registry-wide kinds the policy refuses any other
    ///   rule at load. For `ecr`, where rules may be narrower, a matching deny rule on part of
    ///   the registry denies its actions for the whole request (one credential cannot leave a
    ///   hole), and a narrower allow grants nothing here.
    /// - The grant is (what matching allow rules allow) minus (what matching deny rules deny),
    ///   of `pull` and `push` only (the actions a backend credential can carry; `delete` and
    ///   `*` are never asked for), exactly as [`Self::decide`] would decide
    ///   `repository:<any name>:pull,push`.
    /// - [`Decision::granted`] is empty or one [`ResourceScope::every_repository`] scope
    ///   (`repository:**:pull`, `repository:**:push` or `repository:**:pull,push`), and
    ///   [`Decision::trace`] holds one entry whose requested scope is
    ///   `repository:**:pull,push`, so [`Decision::explain`] names the rules that decided it.
    ///
    /// # Errors
    /// [`DecisionError::UnknownService`].
    pub fn decide_every_repository(
        &self,
        subject: &SpiffeId,
        service: &str,
    ) -> Result<Decision, DecisionError> {
        let reg = self.registry_index(service)?;
        let registry = self.registries[reg].clone();
        if !registry.kind.serves_every_repository() {
            return Ok(Decision {
                registry,
                subject: subject.clone(),
                granted: Vec::new(),
                trace: Vec::new(),
            });
        }
        let requested = ResourceScope::every_repository([Action::PULL, Action::PUSH]);
        let wanted = ActionSet::from_actions(&requested.actions);
        let mut allowed = ActionSet::EMPTY;
        let mut denied = ActionSet::EMPTY;
        let mut allowed_by = Vec::new();
        let mut denied_by = Vec::new();
        for rule in self.rules_for_subject(reg, subject) {
            let covers_every_repository = match &rule.target {
                Target::Repositories(patterns) => {
                    patterns.iter().any(RepositoryPattern::is_everything)
                }
                Target::Catalog => false,
            };
            if !covers_every_repository {
                // Where rules may be narrower than the registry (ECR), a deny on part of it
                // cannot be carved out of one credential for every repository: it denies its
                // actions for the registry-wide request as a whole (fail closed). A narrower
                // allow grants nothing registry-wide.
                if rule.effect == Effect::Deny {
                    let hit = rule.actions.deny_closure().intersect(wanted);
                    if !hit.is_empty() {
                        denied = denied.union(hit);
                        denied_by.push(RuleHit {
                            rule: rule.id.clone(),
                            actions: hit,
                        });
                    }
                }
                continue;
            }
            let (acc, hits, effective) = match rule.effect {
                Effect::Allow => (&mut allowed, &mut allowed_by, rule.actions),
                Effect::Deny => (&mut denied, &mut denied_by, rule.actions.deny_closure()),
            };
            let hit = effective.intersect(wanted);
            if !hit.is_empty() {
                *acc = acc.union(hit);
                hits.push(RuleHit {
                    rule: rule.id.clone(),
                    actions: hit,
                });
            }
        }
        let granted = allowed.minus(denied);
        Ok(Decision {
            registry,
            subject: subject.clone(),
            granted: if granted.is_empty() {
                Vec::new()
            } else {
                vec![ResourceScope::every_repository(granted.iter())]
            },
            trace: vec![ScopeTrace {
                requested,
                granted,
                allowed_by,
                denied_by,
            }],
        })
    }

    /// The index of the registry whose `service` this is.
    fn registry_index(&self, service: &str) -> Result<usize, DecisionError> {
        self.by_service.get(service).copied().ok_or_else(|| {
            let mut cut = service.len().min(MAX_SERVICE_LEN);
            while !service.is_char_boundary(cut) {
                cut -= 1;
            }
            DecisionError::UnknownService {
                service: service[..cut].to_owned(),
            }
        })
    }

    /// The rules of registry `reg` whose subject matcher accepts `subject`, in id order.
    /// (Captures are dropped: a rule that covers every repository has no template to fill.)
    fn rules_for_subject<'p>(
        &'p self,
        reg: usize,
        subject: &'p SpiffeId,
    ) -> impl Iterator<Item = &'p Rule> + 'p {
        let idx = &self.index[reg];
        let exact = idx.exact.get(subject).map_or(&[][..], Vec::as_slice);
        let by_td = idx
            .by_trust_domain
            .get(subject.trust_domain())
            .map_or(&[][..], Vec::as_slice);
        merge_sorted(exact, by_td)
            .map(|i| &self.rules[i])
            .filter(move |rule| match &rule.subject {
                SubjectMatcher::Exact(_) | SubjectMatcher::TrustDomain(_) => true,
                SubjectMatcher::Pattern(p) => p.matches(subject).is_some(),
            })
    }
}

/// Whether `rule`'s target (its repository patterns, or the catalog) covers `req`.
fn rule_covers(rule: &Rule, req: &ResourceScope, captures: Option<&Captures<'_, '_>>) -> bool {
    match &rule.target {
        Target::Catalog => req.is_catalog(),
        Target::Repositories(patterns) => {
            req.resource_type.is_repository()
                && patterns.iter().any(|p| p.is_match(&req.name, captures))
        }
    }
}

/// Merges two ascending index lists (they never share an index: a rule is indexed once).
fn merge_sorted<'a>(a: &'a [usize], b: &'a [usize]) -> impl Iterator<Item = usize> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || match (a.get(i), b.get(j)) {
        (Some(&x), Some(&y)) if x <= y => {
            i += 1;
            Some(x)
        }
        (_, Some(&y)) => {
            j += 1;
            Some(y)
        }
        (Some(&x), None) => {
            i += 1;
            Some(x)
        }
        (None, None) => None,
    })
}

fn is_registry_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_REGISTRY_NAME_LEN
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

/// `service` and `issuer` end up in JWT claims and in the registry's config and challenge
/// header, so keep them to visible ASCII that needs no quoting.
/// Checks an API base URL and returns it without a trailing `/`. Plain `http` only on a
/// loopback host: the broker sends its own credential for the registry's API on every call.
fn check_api_url(url: &str) -> Result<String, &'static str> {
    if url.len() > MAX_API_URL_LEN {
        return Err("longer than 2048 bytes");
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("only printable ASCII without spaces is allowed");
    }
    let (secure, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err("the scheme must be https:// (http:// only on a loopback address)");
    };
    if rest.contains(['?', '#']) {
        return Err("a base URL has no query or fragment");
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err("credentials belong in credential_file, never in the URL");
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        let Some((inside, after)) = v6.split_once(']') else {
            return Err("an IPv6 host must be written [addr]");
        };
        if !(after.is_empty() || after.starts_with(':')) {
            return Err("an IPv6 host must be written [addr] or [addr]:port");
        }
        inside
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err("no host");
    }
    if let Some((_, port)) = authority.rsplit_once(':')
        && !authority.ends_with(']')
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err("the port must be a number from 1 to 65535");
    }
    if !secure && !is_loopback_host(host) {
        return Err("http:// is allowed only on a loopback IP address (127.0.0.0/8 or [::1])");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn is_loopback_host(host: &str) -> bool {
    // An IP only: a name (even `localhost`) goes through a resolver, which may answer with
    // an address off the machine, and the broker's credential would then cross the network
    // in the clear.
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn is_token_text(s: &str, max_len: usize) -> bool {
    !s.is_empty()
        && s.len() <= max_len
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

fn is_rule_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_RULE_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'))
}

#[cfg(test)]
mod tests;

/// A Quay robot's short name as Quay's model checks it (the part after `<org>+`): 2 to 255
/// characters, runs of `[a-z0-9]` joined by single `.`, `_` or `-`.
fn is_quay_robot_name(name: &str) -> bool {
    (2..=255).contains(&name.len())
        && name.split(['.', '_', '-']).all(|run| {
            !run.is_empty() && run.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9'))
        })
}
