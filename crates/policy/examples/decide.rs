//! Load a registry access policy and decide requests with it: a subject pattern with a capture,
//! a deny rule that overrides an allow, and the `explain` report an operator reads.
//!
//! ```text
//! cargo run -p svid-broker-policy --example decide
//! ```

use svid_broker_identity::SpiffeId;
use svid_broker_policy::{Policy, scope};

const POLICY: &str = r#"
[[registries]]
name = "main"
service = "registry.example.org"
issuer = "svid-broker"
profile = "distribution-2"
hosts = ["registry.example.org"]

[[rules]]
id = "teams-own-namespace"
subject = "spiffe://example.org/ns/{ns}/sa/*"
registry = "main"
repositories = ["team-{ns}/*"]
actions = ["pull", "push"]

[[rules]]
id = "nobody-pushes-releases"
trust_domain = "example.org"
registry = "main"
repositories = ["*/release"]
actions = ["push"]
effect = "deny"
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Strict parsing: an unknown key or an unused capture is an error with a line and column.
    let policy = Policy::from_toml_str(POLICY)?;
    let web = SpiffeId::parse("spiffe://example.org/ns/shop/sa/web")?;

    let asked = scope::parse_scopes([
        "repository:team-shop/frontend:pull,push",
        "repository:team-shop/release:pull,push",
        "repository:team-billing/api:pull",
    ])?;
    let decision = policy.decide(&web, "registry.example.org", &asked)?;
    // Only what was both asked for and allowed: the release push is denied, billing is not its
    // namespace.
    let granted = decision.granted_scope();
    println!("granted: {granted}");
    if granted != "repository:team-shop/frontend:pull,push repository:team-shop/release:pull" {
        return Err(format!("unexpected grant {granted:?}").into());
    }
    println!("{}", decision.explain());

    // A service the policy does not know is an error, not an empty grant.
    match policy.decide(&web, "elsewhere.example.org", &asked) {
        Ok(_) => Err("an unknown service must not be decided".into()),
        Err(e) => {
            println!("unknown service: {e}");
            Ok(())
        }
    }
}
