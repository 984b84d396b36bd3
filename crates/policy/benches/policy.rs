//! Criterion benchmark for `Policy::decide`, the per-token-request hot path.
//!
//! Run: `cargo bench -p svid-broker-policy --bench policy -- --warm-up-time 1 --measurement-time 3`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark setup should fail loudly"
)]

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use svid_broker_identity::SpiffeId;
use svid_broker_policy::{Policy, scope};

/// One registry; `teams` namespaces each with an exact-ID push rule, plus shared pattern,
/// trust-domain and deny rules that every request has to look at.
fn policy(teams: usize) -> Policy {
    let mut text = String::from(
        r#"
[[registries]]
name = "local"
service = "registry.local"
issuer = "svid-broker"
profile = "distribution-2"
hosts = ["127.0.0.1:5000"]

[[rules]]
id = "teams-pull-own-namespace"
subject = "spiffe://example.org/ns/{ns}/sa/*"
registry = "local"
repositories = ["team-{ns}/**"]
actions = ["pull"]

[[rules]]
id = "everyone-pulls-base-images"
trust_domain = "example.org"
registry = "local"
repositories = ["base/*"]
actions = ["pull"]

[[rules]]
id = "no-delete"
trust_domain = "example.org"
registry = "local"
repositories = ["**"]
actions = ["delete"]
effect = "deny"
"#,
    );
    for i in 0..teams {
        write!(
            text,
            "\n[[rules]]\nid = \"ci-{i}\"\nsubject = \"spiffe://example.org/ns/team{i}/sa/ci\"\nregistry = \"local\"\nrepositories = [\"team-team{i}/**\"]\nactions = [\"push\", \"pull\"]\n"
        )
        .unwrap();
    }
    Policy::from_toml_str(&text).unwrap()
}

fn decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_decide");
    let who = SpiffeId::parse("spiffe://example.org/ns/team7/sa/ci").unwrap();
    let requested =
        scope::parse_scopes(["repository:team-team7/app:pull,push repository:base/debian:pull"])
            .unwrap();
    for teams in [10, 1000] {
        let p = policy(teams);
        let d = p.decide(&who, "registry.local", &requested).unwrap();
        assert_eq!(
            d.granted_scope(),
            "repository:base/debian:pull repository:team-team7/app:pull,push"
        );
        group.bench_function(format!("{teams}_teams"), |b| {
            b.iter(|| {
                p.decide(black_box(&who), "registry.local", black_box(&requested))
                    .unwrap()
            });
        });
    }
    group.bench_function("parse_scopes", |b| {
        b.iter(|| {
            scope::parse_scopes(black_box([
                "repository:team-team7/app:pull,push repository:base/debian:pull",
            ]))
            .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
