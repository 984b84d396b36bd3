//! `validate --kubelet-config FILE [--config FILE]`: lints a kubelet `CredentialProviderConfig`
//! (YAML or JSON, as the kubelet reads both) and, when given, our config against it, with the
//! kubelet's own matcher.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use crate::config::Config;
use crate::kubelet::API_VERSIONS;
use crate::matcher;

/// Largest kubelet config `validate` reads, in bytes; a larger file is an error.
pub const MAX_KUBELET_CONFIG_SIZE: usize = 1024 * 1024;

const CONFIG_VERSIONS: [&str; 3] = [
    "kubelet.config.k8s.io/v1",
    "kubelet.config.k8s.io/v1beta1",
    "kubelet.config.k8s.io/v1alpha1",
];
const PROVIDER_FIELDS: [&str; 7] = [
    "name",
    "matchImages",
    "defaultCacheDuration",
    "apiVersion",
    "args",
    "env",
    "tokenAttributes",
];

/// How bad a finding is: any [`Severity::Error`] makes the lint exit with failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    /// The kubelet refuses the config, or a provider silently does nothing.
    Error,
    /// Probably not what was meant.
    Warning,
}

/// One lint result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub(crate) severity: Severity,
    pub(crate) field: String,
    pub(crate) message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}: {}", self.field, self.message)
    }
}

/// Lints `text` (a kubelet config) and, with `ours`, its coverage by our config.
pub(crate) fn lint(text: &str, ours: Option<&Config>) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut push = |severity, field: &str, message: String| {
        out.push(Finding {
            severity,
            field: field.to_owned(),
            message,
        });
    };
    if text.len() > MAX_KUBELET_CONFIG_SIZE {
        push(Severity::Error, "file", "larger than 1 MiB".into());
        return out;
    }
    let root = match parse(text) {
        Ok(v) => v,
        Err(message) => {
            push(Severity::Error, "file", message);
            return out;
        }
    };
    let config_version = root.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if !CONFIG_VERSIONS.contains(&config_version) {
        push(
            Severity::Error,
            "apiVersion",
            format!("{config_version:?} is not one of {CONFIG_VERSIONS:?}"),
        );
    }
    if root.get("kind").and_then(Value::as_str) != Some("CredentialProviderConfig") {
        push(
            Severity::Error,
            "kind",
            "must be CredentialProviderConfig".into(),
        );
    }
    let providers = root.get("providers").and_then(Value::as_array);
    let Some(providers) = providers.filter(|p| !p.is_empty()) else {
        push(
            Severity::Error,
            "providers",
            "required: at least one provider".into(),
        );
        return out;
    };
    let mut names = BTreeSet::new();
    let mut our_patterns: Vec<(String, String)> = Vec::new();
    for (i, p) in providers.iter().enumerate() {
        let at = |f: &str| format!("providers[{i}].{f}");
        let Some(obj) = p.as_object() else {
            push(
                Severity::Error,
                &format!("providers[{i}]"),
                "must be an object".into(),
            );
            continue;
        };
        for key in obj.keys() {
            if key == "cacheKeyType" {
                push(
                    Severity::Error,
                    &at(key),
                    "cacheKeyType is a field of the plugin's response, not of the kubelet config; strict decoding refuses it".into(),
                );
            } else if !PROVIDER_FIELDS.contains(&key.as_str()) {
                push(
                    Severity::Error,
                    &at(key),
                    "unknown field (strict decoding refuses it)".into(),
                );
            }
        }
        let name = obj.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            push(Severity::Error, &at("name"), "required".into());
        } else if name.contains('/') || name.contains(' ') || name == "." || name == ".." {
            push(
                Severity::Error,
                &at("name"),
                "must be a plain file name (no '/', no spaces, not . or ..)".into(),
            );
        } else if !names.insert(name.to_owned()) {
            push(
                Severity::Error,
                &at("name"),
                format!("duplicate provider name {name:?}"),
            );
        }
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        if !API_VERSIONS.contains(&api_version) {
            push(
                Severity::Error,
                &at("apiVersion"),
                format!("{api_version:?} is not one of {API_VERSIONS:?}"),
            );
        }
        match obj.get("defaultCacheDuration") {
            None => push(
                Severity::Error,
                &at("defaultCacheDuration"),
                "missing: required (use \"0s\" to rely on the plugin's cacheDuration)".into(),
            ),
            Some(Value::String(d)) if d.starts_with('-') => {
                push(
                    Severity::Error,
                    &at("defaultCacheDuration"),
                    "must be >= 0".into(),
                );
            }
            Some(Value::String(_)) => {}
            Some(_) => push(
                Severity::Error,
                &at("defaultCacheDuration"),
                "must be a duration string".into(),
            ),
        }
        let patterns: Vec<&str> = obj
            .get("matchImages")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if patterns.is_empty() {
            push(
                Severity::Error,
                &at("matchImages"),
                "required: at least one pattern".into(),
            );
        }
        for (j, pattern) in patterns.iter().enumerate() {
            let field = at(&format!("matchImages[{j}]"));
            match matcher::parse(pattern) {
                Err(e) => push(
                    Severity::Error,
                    &field,
                    format!("{pattern:?} is invalid: {e}"),
                ),
                Ok(parsed) if matcher::path_has_glob(&parsed) => push(
                    Severity::Error,
                    &field,
                    format!(
                        "{pattern:?} has a glob in its path; the kubelet matches paths as plain prefixes, so it never matches"
                    ),
                ),
                Ok(_) => {}
            }
        }
        if let Some(token) = obj.get("tokenAttributes") {
            lint_token_attributes(
                token,
                config_version,
                api_version,
                &at("tokenAttributes"),
                &mut push,
            );
        }
        if name.contains("svid") {
            our_patterns.extend(
                patterns
                    .iter()
                    .map(|p| (at("matchImages"), (*p).to_owned())),
            );
        }
    }
    if let Some(ours) = ours {
        for (field, pattern) in &our_patterns {
            let covered = ours.registries.iter().any(|r| {
                r.match_images
                    .iter()
                    .any(|q| q == pattern || matcher::matches(q, pattern).unwrap_or(false))
            });
            if !covered {
                push(
                    Severity::Warning,
                    field,
                    format!(
                        "{pattern:?} is not covered by our config: those images get an empty answer"
                    ),
                );
            }
        }
    }
    out
}

/// With the broker's `policy`: a warning for each node-mode provider (no `tokenAttributes`) of
/// ours whose images our config sends to a registry the policy grants per identity.
///
/// Why it matters (KEP-2535, beta and on by default since Kubernetes 1.35): the kubelet records
/// an image pulled with a node-mode plugin's credential as usable by every pod on the node, so
/// a rule that lets one workload pull an image and not another holds only until the first pull.
/// Service-account mode keeps the grant per pod's service account. `text` is linted already.
pub(crate) fn lint_node_mode_sharing(
    text: &str,
    ours: &Config,
    policy: &svid_broker_policy::Policy,
) -> Vec<Finding> {
    let Ok(root) = parse(text) else {
        return Vec::new();
    };
    let providers = root
        .get("providers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, provider) in providers.iter().enumerate() {
        let name = provider.get("name").and_then(Value::as_str).unwrap_or("");
        if !name.contains("svid") || provider.get("tokenAttributes").is_some() {
            continue;
        }
        let patterns = provider
            .get("matchImages")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
            .unwrap_or_default();
        // (service, the repository prefix the kubelet's pattern sends to the plugin)
        let mut served = BTreeSet::new();
        let path = |p: &str| p.split_once('/').map_or("", |(_, path)| path).to_owned();
        for pattern in patterns {
            for entry in &ours.registries {
                for ours_pattern in &entry.match_images {
                    // Node mode shares whatever images both patterns admit: either may be
                    // the broader one (`*.local` over `registry.local`, or the reverse).
                    let overlap = ours_pattern == pattern
                        || matcher::matches(ours_pattern, pattern).unwrap_or(false)
                        || matcher::matches(pattern, ours_pattern).unwrap_or(false);
                    if overlap {
                        // The narrower path is the repositories both reach.
                        let (a, b) = (path(pattern), path(ours_pattern));
                        let prefix = if a.len() >= b.len() { a } else { b };
                        served.insert((entry.service.as_str(), prefix));
                    }
                }
            }
        }
        let mut warned = BTreeSet::new();
        for (service, prefix) in served {
            let rules = policy.per_identity_rules(service, &prefix);
            if rules.is_empty() || !warned.insert(service) {
                continue;
            }
            out.push(Finding {
                severity: Severity::Warning,
                field: format!("providers[{i}]"),
                message: format!(
                    "node mode serves registry service {service:?}, which the policy grants per identity (rules {}): since Kubernetes 1.35 (KEP-2535) an image pulled with the node's credential is usable by every pod on the node; use service-account mode (tokenAttributes) for per-pod grants",
                    rules.join(", ")
                ),
            });
        }
    }
    out
}

/// The kubelet decodes `.json` with a JSON decoder and YAML by converting it to JSON first, so a
/// document that starts with `{` gets JSON's error messages and anything else is read as YAML,
/// into the same JSON value the lints walk.
fn parse(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| format!("not valid json: {e}"));
    }
    // Through the YAML crate's own value first: its mappings refuse duplicate keys, as the
    // kubelet's strict YAML-to-JSON conversion does (a JSON map would keep the last silently).
    // libyaml's messages name the construct, a key at most, and the position, never a value, so
    // nothing from `env` is echoed.
    let yaml: serde_norway::Value =
        serde_norway::from_str(text).map_err(|e| format!("not valid yaml: {e}"))?;
    let root = serde_json::to_value(yaml).map_err(|e| {
        format!("not a JSON-compatible document (the kubelet converts YAML to JSON): {e}")
    })?;
    if root.is_object() {
        Ok(root)
    } else {
        Err("not a CredentialProviderConfig object (a YAML mapping or JSON object)".into())
    }
}

fn lint_token_attributes(
    token: &Value,
    config_version: &str,
    api_version: &str,
    field: &str,
    push: &mut impl FnMut(Severity, &str, String),
) {
    if config_version != "kubelet.config.k8s.io/v1" {
        push(
            Severity::Error,
            field,
            "tokenAttributes exists only in kubelet.config.k8s.io/v1 (strict decoding refuses it here)".into(),
        );
    }
    if api_version != crate::kubelet::API_V1 {
        push(
            Severity::Error,
            field,
            "tokenAttributes needs apiVersion credentialprovider.kubelet.k8s.io/v1".into(),
        );
    }
    let sub = |f: &str| format!("{field}.{f}");
    if token
        .get("serviceAccountTokenAudience")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        push(
            Severity::Error,
            &sub("serviceAccountTokenAudience"),
            "required".into(),
        );
    }
    if token
        .get("requireServiceAccount")
        .and_then(Value::as_bool)
        .is_none()
    {
        push(
            Severity::Error,
            &sub("requireServiceAccount"),
            "required (true or false)".into(),
        );
    }
    match token.get("cacheType").and_then(Value::as_str) {
        None => push(
            Severity::Error,
            &sub("cacheType"),
            "required since 1.34: Token or ServiceAccount".into(),
        ),
        Some("Token" | "ServiceAccount") => {}
        Some(v @ ("Image" | "Registry" | "Global")) => push(
            Severity::Error,
            &sub("cacheType"),
            format!(
                "{v:?} is a cacheKeyType (response) value; cacheType takes Token or ServiceAccount"
            ),
        ),
        Some(v) => push(
            Severity::Error,
            &sub("cacheType"),
            format!("{v:?}: supported values are Token, ServiceAccount"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const GOOD: &str = r#"{
      "apiVersion": "kubelet.config.k8s.io/v1",
      "kind": "CredentialProviderConfig",
      "providers": [
        {"name": "svid-credential-provider", "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
         "matchImages": ["127.0.0.1:5000"], "defaultCacheDuration": "0s",
         "args": ["--config", "/etc/svid/config.toml"]},
        {"name": "svid-credential-provider-sa", "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
         "matchImages": ["127.0.0.1:5000"], "defaultCacheDuration": "0s",
         "tokenAttributes": {"serviceAccountTokenAudience": "svid-broker", "requireServiceAccount": true, "cacheType": "ServiceAccount"}}
      ]
    }"#;

    fn fields(text: &str) -> Vec<String> {
        lint(text, None).into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn a_good_config_has_no_findings() {
        assert_eq!(lint(GOOD, None), vec![]);
    }

    #[test]
    fn each_lint_fires() {
        assert_eq!(
            fields(&GOOD.replace(
                "\"127.0.0.1:5000\"], \"defaultCacheDuration\": \"0s\",\n         \"args\"",
                "\"127.0.0.1:5000/*\"], \"defaultCacheDuration\": \"0s\",\n         \"args\""
            )),
            ["providers[0].matchImages[0]"]
        );
        assert_eq!(
            fields(&GOOD.replacen("\"defaultCacheDuration\": \"0s\",", "", 1)),
            ["providers[0].defaultCacheDuration"]
        );
        assert_eq!(
            fields(&GOOD.replace("\"ServiceAccount\"", "\"Registry\"")),
            ["providers[1].tokenAttributes.cacheType"]
        );
        assert_eq!(
            fields(&GOOD.replace(", \"cacheType\": \"ServiceAccount\"", "")),
            ["providers[1].tokenAttributes.cacheType"]
        );
        assert_eq!(
            fields(&GOOD.replace(
                "kubelet.config.k8s.io/v1\"",
                "kubelet.config.k8s.io/v1beta1\""
            )),
            ["providers[1].tokenAttributes"]
        );
        assert_eq!(
            fields(&GOOD.replacen("credentialprovider.kubelet.k8s.io/v1\",\n         \"matchImages\": [\"127.0.0.1:5000\"], \"defaultCacheDuration\": \"0s\",\n         \"tokenAttributes", "credentialprovider.kubelet.k8s.io/v1beta1\",\n         \"matchImages\": [\"127.0.0.1:5000\"], \"defaultCacheDuration\": \"0s\",\n         \"tokenAttributes", 1)),
            ["providers[1].tokenAttributes"]
        );
        assert_eq!(
            fields(&GOOD.replacen("\"args\"", "\"cacheKeyType\": \"Image\", \"args\"", 1)),
            ["providers[0].cacheKeyType"]
        );
        assert_eq!(
            fields(&GOOD.replace("svid-credential-provider-sa", "svid-credential-provider")),
            ["providers[1].name"]
        );
        assert_eq!(fields("[not, a, mapping]\n"), ["file"]);
        assert_eq!(
            fields(
                r#"{"apiVersion":"kubelet.config.k8s.io/v1","kind":"CredentialProviderConfig","providers":[]}"#
            ),
            ["providers"]
        );
    }

    const GOOD_YAML: &str = "\
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: svid-credential-provider
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    matchImages:
      - \"127.0.0.1:5000\"
    defaultCacheDuration: 0s
    args: [--config, /etc/svid/config.toml]
  - name: svid-credential-provider-sa
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    matchImages: [\"127.0.0.1:5000\"]
    defaultCacheDuration: \"0s\"
    tokenAttributes:
      serviceAccountTokenAudience: svid-broker
      requireServiceAccount: true
      cacheType: ServiceAccount
";

    #[test]
    fn yaml_is_read_like_json() {
        assert_eq!(lint(GOOD_YAML, None), vec![]);
        let yaml_value: Value = serde_norway::from_str(GOOD_YAML).unwrap();
        let json_value: Value = serde_json::from_str(GOOD).unwrap();
        assert_eq!(yaml_value, json_value);
        // The same lints fire on YAML input.
        assert_eq!(
            fields(&GOOD_YAML.replace("cacheType: ServiceAccount", "cacheType: Image")),
            ["providers[1].tokenAttributes.cacheType"]
        );
        assert_eq!(
            fields(&GOOD_YAML.replace("    defaultCacheDuration: 0s\n", "")),
            ["providers[0].defaultCacheDuration"]
        );
        assert_eq!(
            fields(&GOOD_YAML.replace("\"127.0.0.1:5000\"\n", "\"127.0.0.1:5000/*\"\n")),
            ["providers[0].matchImages[0]"]
        );
        // A bare `0` is a number after YAML-to-JSON conversion, which the kubelet's duration
        // decoder refuses.
        assert_eq!(
            fields(&GOOD_YAML.replace("defaultCacheDuration: 0s", "defaultCacheDuration: 0")),
            ["providers[0].defaultCacheDuration"]
        );
    }

    #[test]
    fn unusable_yaml_is_one_file_finding() {
        for text in [
            "apiVersion: [unclosed\n",
            "just a string\n",
            "providers:\n  - name: a\n---\nkind: CredentialProviderConfig\n",
            "kind: CredentialProviderConfig\nkind: Other\n",
            "? [a, b]\n: c\n",
            "",
        ] {
            let findings = lint(text, None);
            assert_eq!(findings.len(), 1, "{text:?}: {findings:?}");
            assert_eq!(findings[0].field, "file", "{text:?}");
            assert_eq!(findings[0].severity, Severity::Error);
        }
        assert!(
            lint("apiVersion: [unclosed\n", None)[0]
                .message
                .starts_with("not valid yaml: ")
        );
        assert!(
            lint("{\"a\": }", None)[0]
                .message
                .starts_with("not valid json: ")
        );
        assert!(
            lint("kind: CredentialProviderConfig\nkind: Other\n", None)[0]
                .message
                .contains("duplicate entry with key \"kind\""),
            "a duplicate key is refused, not overwritten"
        );
    }

    #[test]
    fn an_alias_bomb_is_refused_not_expanded() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for name in 'b'..='k' {
            text.push_str(&format!(
                "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = name;
        }
        let findings = lint(&text, None);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].field, "file");
    }

    #[test]
    fn coverage_by_our_config() {
        let ours = |pattern: &str| {
            Config::from_toml_str(
                &format!(
                    "broker = \"127.0.0.1:1\"\nbroker_id = \"spiffe://td/b\"\n[[registries]]\nservice = \"s\"\nmatch_images = [\"{pattern}\"]\n"
                ),
                Path::new("c"),
                Path::new("/"),
            )
            .unwrap()
        };
        assert_eq!(lint(GOOD, Some(&ours("127.0.0.1:5000"))), vec![]);
        let findings = lint(GOOD, Some(&ours("other.io")));
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(findings.iter().all(|f| f.severity == Severity::Warning));
        assert!(
            findings[0]
                .to_string()
                .starts_with("warning: providers[0].matchImages: ")
        );
    }

    #[test]
    fn node_mode_over_a_per_identity_registry_is_warned_about() {
        let ours = Config::from_toml_str(
            "broker = \"127.0.0.1:1\"\nbroker_id = \"spiffe://td/b\"\n[[registries]]\n\
             service = \"registry.local\"\nmatch_images = [\"127.0.0.1:5000\"]\n",
            Path::new("c"),
            Path::new("/"),
        )
        .unwrap();
        let registry = "[[registries]]\nname = \"local\"\nservice = \"registry.local\"\n\
                        issuer = \"svid-broker\"\nprofile = \"distribution-2\"\n\
                        hosts = [\"127.0.0.1:5000\"]\n";
        let per_identity = svid_broker_policy::Policy::from_toml_str(&format!(
            "{registry}[[rules]]\nid = \"team-a\"\nsubject = \"spiffe://td/ns/a/sa/app\"\n\
             registry = \"local\"\nrepositories = [\"team-a/*\"]\nactions = [\"pull\"]\n"
        ))
        .unwrap();
        let findings = lint_node_mode_sharing(GOOD, &ours, &per_identity);
        // Only the node-mode provider (providers[0]); the service-account one keeps it per pod.
        assert_eq!(findings.len(), 1, "{findings:?}");
        let shown = findings[0].to_string();
        assert!(
            shown.starts_with(
                "warning: providers[0]: node mode serves registry service \"registry.local\""
            ) && shown.contains("rules team-a")
                && shown.contains("KEP-2535"),
            "{shown}"
        );
        let everyone = svid_broker_policy::Policy::from_toml_str(&format!(
            "{registry}[[rules]]\nid = \"all\"\ntrust_domain = \"td\"\nregistry = \"local\"\n\
             repositories = [\"base/*\"]\nactions = [\"pull\"]\n"
        ))
        .unwrap();
        assert!(lint_node_mode_sharing(GOOD, &ours, &everyone).is_empty());
        // A kubelet pattern broader than ours (`*.0.0.1:5000` over `127.0.0.1:5000`) shares
        // just the same.
        let broad = GOOD.replace("\"matchImages\": [\"127.0.0.1:5000\"], \"defaultCacheDuration\": \"0s\",\n         \"args\"", "\"matchImages\": [\"*.0.0.1:5000\"], \"defaultCacheDuration\": \"0s\",\n         \"args\"");
        assert_ne!(broad, GOOD);
        assert_eq!(
            lint_node_mode_sharing(&broad, &ours, &per_identity).len(),
            1
        );
    }
}
