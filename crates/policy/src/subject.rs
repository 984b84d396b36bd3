//! The `jwt_subject` grammar: the federated JWT's `sub`, rendered from the operator's template,
//! for every registry kind that exchanges a JWT the broker signs (Quay, Artifactory, and the
//! clouds: ECR, Artifact Registry, ACR). One parser, used by the policy loader (a bad template
//! is refused when the policy loads) and by the backends (which render it).
//!
//! Quay matches `sub` against a robot's federation entries by exact equality, and Artifactory's
//! identity mappings may match on it, so the operator chooses what the broker writes there: the
//! workload's SPIFFE ID (`{spiffe_id}`, the default: one entry per workload), or something
//! coarser (`svid-broker:{access}`: one entry or mapping for every workload, the broker's policy
//! having decided already). The template is parsed once, when the backend is built, so a typo
//! is a policy error rather than a refused exchange.

/// The default template: the workload's SPIFFE ID as it is.
pub const DEFAULT_SUBJECT_TEMPLATE: &str = "{spiffe_id}";

/// Longest template accepted, in bytes (the issuer caps the rendered `sub` too).
pub const MAX_SUBJECT_TEMPLATE_BYTES: usize = 1024;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    SpiffeId,
    Project,
    Access,
}

/// Which placeholders a kind fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholders {
    /// `{spiffe_id}`, `{project}` (the organization) and `{access}`: Quay.
    WithProject,
    /// `{spiffe_id}` and `{access}`: Artifactory, whose credential is registry-wide.
    WithoutProject,
}

impl Placeholders {
    /// The placeholders `kind`'s `jwt_subject` may use; `None` for a kind that signs no JWT.
    pub const fn of(kind: crate::RegistryKind) -> Option<Self> {
        match kind {
            crate::RegistryKind::Quay => Some(Self::WithProject),
            crate::RegistryKind::Artifactory
            | crate::RegistryKind::Ecr
            | crate::RegistryKind::Gar
            | crate::RegistryKind::Acr => Some(Self::WithoutProject),
            crate::RegistryKind::Token
            | crate::RegistryKind::Harbor
            | crate::RegistryKind::Gitlab
            | crate::RegistryKind::Nexus => None,
        }
    }
}

/// A `jwt_subject` template that [`SubjectTemplate::parse`] accepted, split into its literals
/// and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTemplate {
    parts: Vec<Part>,
}

/// Why a template was refused: the rule it breaks.
pub type TemplateRule = &'static str;

impl SubjectTemplate {
    /// Parses `template`: literal text and the placeholders `placeholders` allows, with text
    /// between any two placeholders.
    ///
    /// # Errors
    /// The rule broken: an empty or over-long template, a control character, an unknown
    /// placeholder or a brace that opens or closes none.
    pub fn parse(template: &str, placeholders: Placeholders) -> Result<Self, TemplateRule> {
        if template.is_empty() || template.len() > MAX_SUBJECT_TEMPLATE_BYTES {
            return Err("must be 1 to 1024 bytes");
        }
        if template.chars().any(char::is_control) {
            return Err("must not contain a control character");
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            let Some(open) = rest.find(['{', '}']) else {
                parts.push(Part::Literal(rest.to_owned()));
                break;
            };
            if rest[open..].starts_with('}') {
                return Err("has a '}' that closes no placeholder");
            }
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            } else if parts.last().is_some_and(|p| !matches!(p, Part::Literal(_))) {
                // `{spiffe_id}{project}` renders `x` + `yz` as `xy` + `z` does: a registry
                // matching `sub` exactly could not tell those grants apart.
                return Err("has two placeholders with no text between them");
            }
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return Err("has a '{' that is never closed");
            };
            parts.push(match (&after[..close], placeholders) {
                ("spiffe_id", _) => Part::SpiffeId,
                ("access", _) => Part::Access,
                ("project", Placeholders::WithProject) => Part::Project,
                (_, Placeholders::WithProject) => {
                    return Err(
                        "has an unknown placeholder (known: {spiffe_id}, {project}, {access})",
                    );
                }
                (_, Placeholders::WithoutProject) => {
                    return Err("has an unknown placeholder (known: {spiffe_id}, {access})");
                }
            });
            rest = &after[close + 1..];
        }
        Ok(Self { parts })
    }

    /// The subject for workload `spiffe_id` with `access` (`pull` or `push`), in organization
    /// `project` (empty where the backend has none: a template for it cannot name one).
    pub fn render(&self, spiffe_id: &str, project: &str, access: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            out.push_str(match part {
                Part::Literal(text) => text,
                Part::SpiffeId => spiffe_id,
                Part::Project => project,
                Part::Access => access,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_their_placeholders() {
        let default = SubjectTemplate::parse("{spiffe_id}", Placeholders::WithProject).unwrap();
        assert_eq!(
            default.render("spiffe://a/b", "team-a", "pull"),
            "spiffe://a/b"
        );
        let all = SubjectTemplate::parse(
            "broker:{project}:{access}:{spiffe_id}!",
            Placeholders::WithProject,
        )
        .unwrap();
        assert_eq!(
            all.render("spiffe://a/b", "team-a", "push"),
            "broker:team-a:push:spiffe://a/b!"
        );
        let twice = SubjectTemplate::parse(
            "{access}/{spiffe_id}/{access}",
            Placeholders::WithoutProject,
        )
        .unwrap();
        assert_eq!(twice.render("x", "", "pull"), "pull/x/pull");
        // A fixed mapping is the operator's choice: one entry serves every admitted workload.
        let constant = SubjectTemplate::parse("svid-broker", Placeholders::WithoutProject).unwrap();
        assert_eq!(constant.render("spiffe://a/b", "", "pull"), "svid-broker");
    }

    #[test]
    fn templates_with_unknown_or_broken_placeholders_are_refused() {
        let long = format!("{{spiffe_id}}{}", "x".repeat(2000));
        for bad in [
            "",
            "{spiffe}",
            "{SPIFFE_ID}",
            "{ spiffe_id }",
            "{spiffe_id",
            "spiffe_id}",
            "{}",
            "{{spiffe_id}}",
            "{spiffe_id}{access}",
            "a\nb",
            long.as_str(),
        ] {
            for placeholders in [Placeholders::WithProject, Placeholders::WithoutProject] {
                assert!(
                    SubjectTemplate::parse(bad, placeholders).is_err(),
                    "{bad:?}"
                );
            }
        }
        assert!(SubjectTemplate::parse("{project}", Placeholders::WithProject).is_ok());
        let refused = SubjectTemplate::parse("{project}", Placeholders::WithoutProject);
        assert_eq!(
            refused,
            Err("has an unknown placeholder (known: {spiffe_id}, {access})")
        );
    }
}
