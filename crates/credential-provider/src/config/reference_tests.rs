//! The plugin half of the configuration reference: `docs/configuration.md`'s
//! `<!-- config-keys plugin -->` table checked against [`Config::from_toml_str`] (keys derived
//! from the parser both ways, defaults, allowed values and ranges, the complete example). The
//! broker config and policy halves are in `tests/e2e/config_reference.rs`, whose harness this
//! includes.

#[path = "../../../../tests/e2e/config_reference/harness.rs"]
mod harness;

use std::path::Path;

use svid_broker_dev::DevTrustDomain;
use svid_broker_identity::{SpiffeId, TrustDomain};

use super::Config;
use harness::{Base, check};

const BASE: Base<'static> = &[
    ("broker", "\"127.0.0.1:8443\""),
    ("broker_id", "\"spiffe://example.org/svid-broker\""),
    ("registries[].service", "\"registry.local\""),
    ("registries[].match_images", "[\"127.0.0.1:5000\"]"),
];

const JWT: Base<'static> = &[
    ("broker", "\"127.0.0.1:8443\""),
    ("broker_id", "\"spiffe://example.org/svid-broker\""),
    ("svid.auth", "\"jwt\""),
    ("svid.jwt_audience", "\"svid-broker\""),
    ("registries[].service", "\"registry.local\""),
    ("registries[].match_images", "[\"127.0.0.1:5000\"]"),
];

/// Everything the validated config holds, for comparing two parses.
fn fingerprint(c: &Config) -> String {
    format!(
        "{} {} bundles={} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        c.broker,
        c.broker_id,
        c.broker_bundles.is_some(),
        c.deadline,
        c.safety_margin,
        c.log_file,
        c.workload_api,
        c.auth,
        c.jwt_audience,
        c.registries
    )
}

#[test]
fn plugin_config_reference_matches_the_parser() {
    // The documented `broker_bundle_file` example names a file next to the config.
    let dir = tempfile::tempdir().unwrap();
    let broker = SpiffeId::parse("spiffe://example.org/svid-broker").unwrap();
    let td = DevTrustDomain::new(TrustDomain::parse("example.org").unwrap(), [broker]).unwrap();
    std::fs::write(
        dir.path().join("broker-bundle.json"),
        td.bundle_document_json(),
    )
    .unwrap();
    let parse = |text: &str| {
        Config::from_toml_str(text, Path::new("config.toml"), dir.path())
            .map(|c| fingerprint(&c))
            .map_err(|e| e.to_string())
    };
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let md = std::fs::read_to_string(page).unwrap();
    let checked = check(&md, "plugin", &parse, &[BASE, JWT]);
    assert!(checked >= 13, "only {checked} plugin keys");
}
