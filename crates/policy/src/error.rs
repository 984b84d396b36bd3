//! Errors from loading a policy and from deciding a request.

use std::fmt;
use std::path::PathBuf;

use svid_broker_identity::{IdError, PatternError};

use crate::repository::RepoPatternError;

/// A 1-based line and column (in characters) in the policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Line, starting at 1.
    pub line: usize,
    /// Column in characters, starting at 1.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `source` (clamped to the end, and to a char boundary).
    pub fn from_offset(source: &str, offset: usize) -> Self {
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &source[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Self {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

fn fmt_at(location: Option<&Location>) -> String {
    location.map_or_else(String::new, |l| format!(" at {l}"))
}

/// Why a policy file was rejected. Every variant about a rule names the rule's `id`; every
/// variant about a registry names the registry; `at` points at the offending value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be opened or read, or is not UTF-8.
    #[error("cannot read policy file {path}", path = path.display())]
    Io {
        /// The file's path as the caller gave it.
        path: PathBuf,
        /// From opening or reading; `InvalidData` when the text is not UTF-8.
        source: std::io::Error,
    },
    /// The file is larger than [`crate::MAX_POLICY_FILE_BYTES`].
    #[error("policy file {path} is over {max} bytes", path = path.display())]
    FileTooLarge {
        /// The file's path as the caller gave it.
        path: PathBuf,
        /// Bytes read: `max + 1`, as reading stops one byte past the cap (not the file's size).
        len: u64,
        /// The cap, [`crate::MAX_POLICY_FILE_BYTES`], in bytes.
        max: u64,
    },
    /// TOML syntax, an unknown key, a missing key or a value of the wrong type.
    #[error("invalid policy{}: {message}", fmt_at(at.as_ref()))]
    Syntax {
        /// Where the parser stopped, when it says.
        at: Option<Location>,
        /// The `toml` parser's message, trailing whitespace trimmed; the position is in `at`.
        message: String,
    },
    /// No `[[registries]]` at all.
    #[error("policy defines no registries")]
    NoRegistries,
    /// More `[[registries]]` entries than [`crate::MAX_REGISTRIES`].
    #[error("policy defines {count} registries, the maximum is {max}")]
    TooManyRegistries {
        /// `[[registries]]` entries in the file.
        count: usize,
        /// The cap, [`crate::MAX_REGISTRIES`].
        max: usize,
    },
    /// More `[[rules]]` entries than [`crate::MAX_RULES`].
    #[error("policy defines {count} rules, the maximum is {max}")]
    TooManyRules {
        /// `[[rules]]` entries in the file.
        count: usize,
        /// The cap, [`crate::MAX_RULES`].
        max: usize,
    },
    /// A list is longer than [`crate::MAX_LIST_LEN`].
    #[error("{owner:?}: {field} has {len} entries, the maximum is {max} (at {at})")]
    ListTooLong {
        /// The (already valid) `name` of the registry for `hosts`, or `id` of the rule otherwise.
        owner: String,
        /// The list's key: `hosts`, `actions` or `repositories`.
        field: &'static str,
        /// Entries in the list as written.
        len: usize,
        /// The cap, [`crate::MAX_LIST_LEN`].
        max: usize,
        /// The list's opening `[` in the policy file.
        at: Location,
    },
    /// A list that must not be empty is empty.
    #[error("{owner:?}: {field} must not be empty (at {at})")]
    EmptyList {
        /// The (already valid) `name` of the registry for `hosts`, or `id` of the rule otherwise.
        owner: String,
        /// The list's key: `hosts`, `actions` or `repositories`.
        field: &'static str,
        /// The list's opening `[` in the policy file.
        at: Location,
    },
    /// A registry name is not `[a-z0-9][a-z0-9._-]*` (at most 64 bytes).
    #[error(
        "invalid registry name {name:?} at {at} (expected [a-z0-9][a-z0-9._-]*, at most 64 bytes)"
    )]
    InvalidRegistryName {
        /// The `name` value exactly as written, not truncated.
        name: String,
        /// Start of the `name` value in the policy file.
        at: Location,
    },
    /// Two registries with one name.
    #[error("duplicate registry name {name:?} at {at}")]
    DuplicateRegistryName {
        /// The repeated `name` (a valid registry name).
        name: String,
        /// Start of the later entry's `name` value (entries are checked in file order).
        at: Location,
    },
    /// A `service` that is empty, too long, or has spaces, quotes or control characters.
    #[error(
        "registry {registry:?}: invalid service at {at} (visible ascii without quotes or backslashes, at most 255 bytes)"
    )]
    InvalidService {
        /// The registry's `name`, as written in the file.
        registry: String,
        /// Start of the `service` value in the policy file.
        at: Location,
    },
    /// Two Quay or Artifactory registries whose JWTs would carry the same `aud` (their
    /// `jwt_audience`, or their `url` when unset): either registry would accept the JWTs the
    /// broker signs for the other.
    #[error(
        "registry {registry:?} at {at}: its JWT audience {audience:?} is also registry {other:?}'s; give each federated registry its own jwt_audience"
    )]
    SharedJwtAudience {
        /// `name` of the later registry in the file, the one refused.
        registry: String,
        /// `name` of the earlier registry already given that audience.
        other: String,
        /// The `aud` both would get: `jwt_audience`, else the cloud's default, else `url`.
        audience: String,
        /// Start of the later registry's `[[registries]]` entry.
        at: Location,
    },
    /// Two registries with one `service` (the realm picks the registry by service).
    #[error("registry {registry:?}: duplicate service {service:?} at {at}")]
    DuplicateService {
        /// `name` of the later registry in the file, the one refused.
        registry: String,
        /// The `service` value both registries set.
        service: String,
        /// Start of the later registry's `service` value.
        at: Location,
    },
    /// An `issuer` that is empty, too long, or has spaces, quotes or control characters.
    #[error(
        "registry {registry:?}: invalid issuer at {at} (visible ascii without quotes or backslashes, at most 255 bytes)"
    )]
    InvalidIssuer {
        /// The registry's `name`, as written in the file.
        registry: String,
        /// Start of the `issuer` value in the policy file.
        at: Location,
    },
    /// A registry key that this registry's `kind` does not use (`issuer` and `profile` belong
    /// to `kind = "token"`, whose tokens the broker signs; `url` and `credential_file` to the
    /// kinds whose credentials are made through the registry's API).
    #[error("registry {registry:?}: `{field}` at {at} does not apply to kind = \"{kind}\" ({why})")]
    FieldNotForKind {
        /// The registry's `name`, as written in the file.
        registry: String,
        /// The registry's `kind` (`token` when the key is absent).
        kind: crate::RegistryKind,
        /// The key as written: `url`, `pull_robot`, ..., or a table name (`aws`, `gcp`, `azure`).
        field: &'static str,
        /// Why the key has no meaning there.
        why: &'static str,
        /// Start of the key's value (or table) in the policy file.
        at: Location,
    },
    /// A registry key that this registry's `kind` requires is absent.
    #[error("registry {registry:?} at {at}: kind = \"{kind}\" requires `{field}` ({why})")]
    FieldRequiredForKind {
        /// The registry's `name`, as written in the file.
        registry: String,
        /// The registry's `kind` (`token` when the key is absent).
        kind: crate::RegistryKind,
        /// The absent key: `issuer`, `url`, ..., or dotted within a cloud table (`aws.role_arn`).
        field: &'static str,
        /// What it is needed for.
        why: &'static str,
        /// Start of the registry's `[[registries]]` entry (an absent key has no position).
        at: Location,
    },
    /// `pull_role`, `push_role`, `provider_name`, `jwt_audience` or `jwt_subject` is empty,
    /// too long or not printable ASCII.
    #[error(
        "registry {registry:?}: `{field}` at {at} must be 1 to {max} printable ASCII characters"
    )]
    InvalidRole {
        /// The registry's `name`, as written in the file.
        registry: String,
        /// `pull_role`, `push_role`, `provider_name`, `jwt_audience` or `jwt_subject`.
        field: &'static str,
        /// Longest value accepted for that key, in bytes: [`crate::MAX_ROLE_LEN`] for the roles,
        /// [`crate::MAX_FEDERATION_FIELD_LEN`] for the others.
        max: usize,
        /// Start of the value in the policy file.
        at: Location,
    },
    /// `pull_robot` or `push_robot` is not a Quay robot's short name.
    #[error(
        "registry {registry:?}: `{field}` at {at} must be a Quay robot's short name (the part after `<org>+`): 2 to 255 characters, runs of [a-z0-9] joined by single '.', '_' or '-'"
    )]
    InvalidRobotName {
        /// The registry's `name`, as written in the file.
        registry: String,
        /// `pull_robot` or `push_robot`.
        field: &'static str,
        /// Start of the value in the policy file.
        at: Location,
    },
    /// `jwt_subject` is not a template of the registry's kind: an unknown placeholder, an
    /// unbalanced brace, two placeholders with no text between them, a control character, or
    /// over 1024 bytes.
    #[error("registry {registry:?}: `jwt_subject` at {at} {rule}")]
    InvalidSubjectTemplate {
        /// The registry's `name`, as written in the file.
        registry: String,
        /// The rule it breaks (`has an unknown placeholder (known: {spiffe_id}, {access})`).
        rule: &'static str,
        /// Start of the `jwt_subject` value in the policy file.
        at: Location,
    },
    /// A value in a cloud table (`aws.role_arn`, `gcp.service_account`, `azure.tenant_id`, ...)
    /// that does not have the cloud's shape.
    #[error("registry {registry:?}: `{field}` at {at} {rule}")]
    InvalidCloudSetting {
        /// The registry's `name`, as written in the file.
        registry: String,
        /// The key (`aws.role_arn`).
        field: &'static str,
        /// The shape the value must have, worded to follow the key (`must be an AWS region: ...`).
        rule: &'static str,
        /// Start of the value in the policy file.
        at: Location,
    },
    /// `url` (or a cloud endpoint override) is not an API base URL the broker will call.
    #[error("registry {registry:?}: {field} {url:?} at {at} is not usable: {reason}")]
    InvalidApiUrl {
        /// The registry's `name`, as written in the file.
        registry: String,
        /// The key (`url`, `aws.sts_endpoint`, ...).
        field: &'static str,
        /// The value as written with any user info replaced by `***` (a URL is refused for
        /// carrying a password, which the message must not repeat), cut to 200 characters.
        url: String,
        /// The rule the URL breaks (`the scheme must be https:// ...`).
        reason: &'static str,
        /// Start of the value in the policy file.
        at: Location,
    },
    /// A path key (`credential_file`, `ca_file`) that is empty, relative or too long.
    #[error(
        "registry {registry:?}: `{field}` at {at} must be an absolute path of at most {max} bytes"
    )]
    InvalidPath {
        /// The registry's `name`, as written in the file.
        registry: String,
        /// `credential_file` or `ca_file`.
        field: &'static str,
        /// The cap, [`crate::MAX_PATH_LEN`], in bytes.
        max: usize,
        /// Start of the value in the policy file.
        at: Location,
    },
    /// A rule for a registry whose credentials reach more than one repository (a Harbor or
    /// GitLab project, a whole Nexus registry) names less than that reach: the registry would
    /// hand out the rest too, so the rule would not mean what it says.
    #[error(
        "rule {rule:?}: repository pattern {pattern:?} at {at} is narrower than what registry {registry:?} (kind = \"{kind}\") grants: its credentials reach {}; write {}",
        .kind.reach().description(),
        .kind.reach().rule_shape()
    )]
    PatternNarrowerThanReach {
        /// The rule's `id`.
        rule: String,
        /// The rule's `registry`: the registry's `name`.
        registry: String,
        /// The registry's kind (its [`crate::RegistryKind::reach`] is what the rule must cover).
        kind: crate::RegistryKind,
        /// The `repositories` entry as written.
        pattern: String,
        /// Start of that entry in the policy file.
        at: Location,
    },
    /// A catalog rule (`registry:catalog:*`) for a registry whose credentials cannot carry the
    /// catalog.
    #[error(
        "rule {rule:?} at {at}: registry {registry:?} is kind = \"{kind}\", whose credentials cannot grant the catalog"
    )]
    CatalogNotForKind {
        /// The rule's `id`.
        rule: String,
        /// The rule's `registry`: the registry's `name`.
        registry: String,
        /// The registry's `kind`, one whose credentials are made through its API.
        kind: crate::RegistryKind,
        /// Start of the rule's `[[rules]]` entry in the policy file.
        at: Location,
    },
    /// `token_ttl_seconds` below [`crate::MIN_TOKEN_TTL_SECONDS`].
    #[error(
        "registry {registry:?}: token_ttl_seconds = {seconds} at {at} is below the minimum of {min}"
    )]
    TtlTooShort {
        /// The registry's `name`, as written in the file.
        registry: String,
        /// The `token_ttl_seconds` value as written; may be zero or negative.
        seconds: i64,
        /// The floor, [`crate::MIN_TOKEN_TTL_SECONDS`].
        min: u64,
        /// Start of the `token_ttl_seconds` value in the policy file.
        at: Location,
    },
    /// `token_ttl_seconds` above [`crate::MAX_TOKEN_TTL_SECONDS`].
    #[error(
        "registry {registry:?}: token_ttl_seconds = {seconds} at {at} is above the maximum of {max}"
    )]
    TtlTooLong {
        /// The registry's `name`, as written in the file.
        registry: String,
        /// The `token_ttl_seconds` value as written.
        seconds: i64,
        /// The cap, [`crate::MAX_TOKEN_TTL_SECONDS`].
        max: u64,
        /// Start of the `token_ttl_seconds` value in the policy file.
        at: Location,
    },
    /// A host that is not a lowercase `host[:port]`.
    #[error(
        "registry {registry:?}: invalid host {host:?} at {at} (expected lowercase host[:port])"
    )]
    InvalidHost {
        /// The registry's `name`, as written in the file.
        registry: String,
        /// The `hosts` entry as written (perhaps with uppercase), not truncated.
        host: String,
        /// Start of that entry in the policy file.
        at: Location,
    },
    /// One host listed twice (in one registry or across registries).
    #[error("registry {registry:?}: duplicate host {host:?} at {at}")]
    DuplicateHost {
        /// The registry listing it the second time.
        registry: String,
        /// The repeated host (valid and lowercase).
        host: String,
        /// Start of its later `hosts` entry (registries are checked in file order).
        at: Location,
    },
    /// A rule id that is empty, too long or not `[A-Za-z0-9._:/-]+`.
    #[error("invalid rule id {rule:?} at {at} (expected [A-Za-z0-9._:/-]+, at most 128 bytes)")]
    InvalidRuleId {
        /// The `id` value as written, not truncated.
        rule: String,
        /// Start of the `id` value in the policy file.
        at: Location,
    },
    /// Two rules with one id.
    #[error("duplicate rule id {rule:?} at {at}")]
    DuplicateRuleId {
        /// The repeated `id` (a valid rule id).
        rule: String,
        /// Start of the later rule's `id` value (rules are checked in file order).
        at: Location,
    },
    /// A rule with both or neither of `subject` and `trust_domain`.
    #[error("rule {rule:?} at {at}: set exactly one of subject and trust_domain")]
    SubjectMatcher {
        /// The rule's `id`, as written in the file.
        rule: String,
        /// Start of the rule's `[[rules]]` entry in the policy file.
        at: Location,
    },
    /// `subject` without wildcards is not a valid SPIFFE ID.
    #[error("rule {rule:?}: invalid subject at {at}")]
    InvalidSubject {
        /// The rule's `id`, as written in the file.
        rule: String,
        /// Start of the `subject` value in the policy file.
        at: Location,
        /// The parse error, also returned by `source()`.
        source: IdError,
    },
    /// `subject` with wildcards or captures is not a valid pattern.
    #[error("rule {rule:?}: invalid subject pattern at {at}")]
    InvalidSubjectPattern {
        /// The rule's `id`, as written in the file.
        rule: String,
        /// Start of the `subject` value in the policy file.
        at: Location,
        /// The parse error, also returned by `source()`.
        source: PatternError,
    },
    /// `trust_domain` is not a valid trust domain.
    #[error("rule {rule:?}: invalid trust_domain at {at}")]
    InvalidTrustDomain {
        /// The rule's `id`, as written in the file.
        rule: String,
        /// Start of the `trust_domain` value in the policy file.
        at: Location,
        /// The parse error, also returned by `source()`.
        source: IdError,
    },
    /// `registry` names no `[[registries]]` entry.
    #[error("rule {rule:?}: unknown registry {registry:?} at {at}")]
    UnknownRegistry {
        /// The rule's `id`, as written in the file.
        rule: String,
        /// The rule's `registry` value as written, which no registry has as its `name`.
        registry: String,
        /// Start of the `registry` value in the policy file.
        at: Location,
    },
    /// A repository pattern does not parse.
    #[error("rule {rule:?}: invalid repository pattern {pattern:?} at {at}")]
    InvalidRepositoryPattern {
        /// The rule's `id`, as written in the file.
        rule: String,
        /// The `repositories` entry as written.
        pattern: String,
        /// Start of that entry in the policy file.
        at: Location,
        /// The parse error, also returned by `source()`.
        source: RepoPatternError,
    },
    /// A repository pattern uses a capture the subject does not define.
    #[error(
        "rule {rule:?}: undefined capture {{{capture}}} at {at}: the subject does not define it"
    )]
    UndefinedCapture {
        /// The rule's `id`, as written in the file.
        rule: String,
        /// The capture's name, without braces.
        capture: String,
        /// Start of the `repositories` entry that uses it.
        at: Location,
    },
    /// The subject defines a capture that no repository pattern uses (the rule then grants
    /// the same to every value, which is rarely what was meant; use `*` instead).
    #[error(
        "rule {rule:?}: unused capture {{{capture}}} at {at}: no repository pattern uses it (use '*' in the subject instead)"
    )]
    UnusedCapture {
        /// The rule's `id`, as written in the file.
        rule: String,
        /// The first unused capture's name, without braces.
        capture: String,
        /// Start of the `subject` value in the policy file.
        at: Location,
    },
    /// An action other than `pull`, `push`, `delete`, `*` and `registry:catalog:*`.
    #[error(
        "rule {rule:?}: invalid action {action:?} at {at} (expected pull, push, delete, * or registry:catalog:*)"
    )]
    InvalidAction {
        /// The rule's `id`, as written in the file.
        rule: String,
        /// The `actions` entry as written.
        action: String,
        /// Start of that entry in the policy file.
        at: Location,
    },
    /// A catalog rule that also lists repositories.
    #[error("rule {rule:?} at {at}: a registry:catalog:* rule must not list repositories")]
    CatalogWithRepositories {
        /// The rule's `id`, as written in the file.
        rule: String,
        /// The `repositories` list's opening `[` in the policy file.
        at: Location,
    },
    /// `registry:catalog:*` listed together with repository actions.
    #[error(
        "rule {rule:?} at {at}: registry:catalog:* cannot be mixed with repository actions; use a separate rule"
    )]
    CatalogMixedActions {
        /// The rule's `id`, as written in the file.
        rule: String,
        /// The `actions` list's opening `[` in the policy file.
        at: Location,
    },
    /// A repository rule without `repositories`.
    #[error(
        "rule {rule:?} at {at}: repositories is required (unless actions is [\"registry:catalog:*\"])"
    )]
    MissingRepositories {
        /// The rule's `id`, as written in the file.
        rule: String,
        /// Start of the rule's `[[rules]]` entry in the policy file.
        at: Location,
    },
    /// An allow rule whose pattern matches every repository, without `whole_registry = true`.
    #[error(
        "rule {rule:?}: repository pattern {pattern:?} at {at} grants every repository; set whole_registry = true if that is intended"
    )]
    WholeRegistryNotMarked {
        /// The rule's `id`, as written in the file.
        rule: String,
        /// The registry-wide `repositories` entry as written (`*`, `**`, ...).
        pattern: String,
        /// Start of that entry in the policy file.
        at: Location,
    },
    /// `whole_registry = true` on a rule with no registry-wide pattern (a stale marker would
    /// hide a later broadening).
    #[error(
        "rule {rule:?}: whole_registry = true at {at} but no repository pattern grants every repository"
    )]
    WholeRegistryUnused {
        /// The rule's `id`, as written in the file.
        rule: String,
        /// Start of the `whole_registry` value in the policy file.
        at: Location,
    },
}

/// Why [`crate::Policy::decide`] could not decide. A denial is not an error: it is an empty
/// or partial grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecisionError {
    /// No registry has this `service` (the realm answers 400).
    #[error("unknown service {service:?}")]
    UnknownService {
        /// The service asked for, cut to [`svid_broker_identity::limits::MAX_SERVICE_LEN`] bytes.
        service: String,
    },
    /// More requested scopes than [`svid_broker_identity::limits::MAX_SCOPES`].
    #[error("{count} scopes requested, the maximum is {max}")]
    TooManyScopes {
        /// Scopes passed to [`crate::Policy::decide`].
        count: usize,
        /// The cap, [`svid_broker_identity::limits::MAX_SCOPES`].
        max: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_from_offset() {
        let src = "ab\ncdé\nf";
        assert_eq!(
            Location::from_offset(src, 0),
            Location { line: 1, column: 1 }
        );
        assert_eq!(
            Location::from_offset(src, 3),
            Location { line: 2, column: 1 }
        );
        // `é` is two bytes but one column.
        assert_eq!(
            Location::from_offset(src, 7),
            Location { line: 2, column: 4 }
        );
        // Inside a multi-byte char: clamp back to its start.
        assert_eq!(
            Location::from_offset(src, 6),
            Location { line: 2, column: 3 }
        );
        assert_eq!(
            Location::from_offset(src, 999),
            Location { line: 3, column: 2 }
        );
        assert_eq!(
            Location { line: 4, column: 2 }.to_string(),
            "line 4, column 2"
        );
    }
}
