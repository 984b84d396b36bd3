use super::*;

const FULL: &str = r#"
[server]
http_addr = "127.0.0.1:8080"
grpc_addr = "127.0.0.1:8443"
public_url = "http://127.0.0.1:8080/"
shutdown_grace_seconds = 5

[identity]
audience = "svid-broker"
bundle_files = [{ trust_domain = "example.org", path = "bundle.jwks.json" }]
workload_api = "unix:///run/spire/agent.sock"

[policy]
file = "policy.toml"

[signing]
ca_cert_file = "ca.pem"
ca_key_file = "/etc/broker/ca.key"
algorithm = "ES384"

[credentials]
login_credential_ttl_seconds = 600

[limits]
requests_per_second_per_subject = 0
token_cache = false

[log]
format = "json"
audit = "audit.log"
"#;

const MINIMAL: &str = r#"
[server]
http_addr = "127.0.0.1:0"
public_url = "http://broker.example"
[identity]
audience = "svid-broker"
bundle_files = [{ trust_domain = "spiffe://example.org", path = "b.json" }]
[policy]
file = "p.toml"
[signing]
generate = true
"#;

fn parse(text: &str) -> Result<BrokerConfig, ConfigError> {
    BrokerConfig::from_toml_str(text, Path::new("/cfg"))
}

fn rule(text: &str) -> (&'static str, &'static str) {
    match parse(text) {
        Err(ConfigError::Invalid { key, rule }) => (key, rule),
        other => panic!("{other:?}"),
    }
}

#[test]
fn full_config_parses_and_resolves_paths() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.http_addr, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.grpc_addr, Some("127.0.0.1:8443".parse().unwrap()));
    assert_eq!(c.public_url, "http://127.0.0.1:8080");
    assert_eq!(c.realm_url(), "http://127.0.0.1:8080/token");
    assert_eq!(c.shutdown_grace, Duration::from_secs(5));
    assert_eq!(c.bundle_files[0].1, PathBuf::from("/cfg/bundle.jwks.json"));
    assert_eq!(c.policy_file, PathBuf::from("/cfg/policy.toml"));
    assert_eq!(
        c.signing,
        SigningSource::Files {
            cert: "/cfg/ca.pem".into(),
            key: "/etc/broker/ca.key".into()
        }
    );
    assert_eq!(c.algorithm, SigningAlgorithm::Es384);
    assert_eq!(c.login_credential_ttl, Duration::from_secs(600));
    assert_eq!(c.refresh_token_ttl, DEFAULT_REFRESH_TOKEN_TTL);
    assert_eq!(c.max_session, DEFAULT_MAX_SESSION);
    assert_eq!(c.requests_per_second_per_subject, 0);
    assert!(!c.token_cache);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.audit, AuditTarget::File("/cfg/audit.log".into()));
}

#[test]
fn minimal_config_takes_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.signing, SigningSource::Generate);
    assert_eq!(c.grpc_addr, None);
    assert_eq!(c.algorithm, SigningAlgorithm::Es256);
    assert_eq!(c.requests_per_second_per_subject, 50);
    assert_eq!(c.burst, 100);
    assert!(c.token_cache);
    assert_eq!(c.audit, AuditTarget::Stderr);
    assert_eq!(c.policy_poll, Duration::from_secs(5));
}

#[test]
fn unknown_keys_are_refused_with_line_and_column() {
    let text = MINIMAL.replace("[policy]\n", "[policy]\nfiel = \"x\"\n");
    match parse(&text) {
        Err(ConfigError::Parse { location, message }) => {
            assert_eq!(location.line, 9, "{message}");
            assert_eq!(location.column, 1);
            assert!(message.contains("fiel"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse("[bogus]\n"), Err(ConfigError::Parse { .. })));
}

#[test]
fn each_rule_is_enforced() {
    let cases: [(&str, &str, &str); 12] = [
        (
            "http_addr = \"127.0.0.1:0\"",
            "http_addr = \"localhost\"",
            "server.http_addr",
        ),
        (
            "public_url = \"http://broker.example\"",
            "public_url = \"ftp://x\"",
            "server.public_url",
        ),
        (
            "public_url = \"http://broker.example\"",
            "public_url = \"http://x?y\"",
            "server.public_url",
        ),
        (
            "[server]\n",
            "[server]\nshutdown_grace_seconds = 0\n",
            "server.shutdown_grace_seconds",
        ),
        (
            "audience = \"svid-broker\"",
            "audience = \"\"",
            "identity.audience",
        ),
        (
            "bundle_files = [{ trust_domain = \"spiffe://example.org\", path = \"b.json\" }]",
            "bundle_files = []",
            "identity.bundle_files",
        ),
        (
            "trust_domain = \"spiffe://example.org\"",
            "trust_domain = \"Not A TD\"",
            "identity.bundle_files.trust_domain",
        ),
        (
            "[server]\n",
            "[server]\ngrpc_addr = \"127.0.0.1:1\"\n",
            "server.grpc_addr",
        ),
        (
            "generate = true",
            "generate = true\nca_key_file = \"k\"",
            "signing.generate",
        ),
        ("generate = true", "ca_key_file = \"k\"", "signing"),
        (
            "generate = true",
            "generate = true\nalgorithm = \"EdDSA\"",
            "signing.algorithm",
        ),
        (
            "[policy]\n",
            "[log]\nformat = \"xml\"\n[policy]\n",
            "log.format",
        ),
    ];
    for (from, to, key) in cases {
        assert!(MINIMAL.contains(from), "{from}");
        let text = MINIMAL.replacen(from, to, 1);
        assert_eq!(rule(&text).0, key, "{to}");
    }
    let text = format!("{MINIMAL}[credentials]\nlogin_credential_ttl_seconds = 7200\n");
    assert_eq!(rule(&text).0, "credentials.login_credential_ttl_seconds");
    let text = format!("{MINIMAL}[credentials]\nrefresh_token_ttl_seconds = 59\n");
    assert_eq!(rule(&text).0, "credentials.refresh_token_ttl_seconds");
    for bad in [59, 604_801] {
        let text = format!("{MINIMAL}[credentials]\nmax_session_seconds = {bad}\n");
        assert_eq!(rule(&text).0, "credentials.max_session_seconds");
    }
    let text = format!("{MINIMAL}[credentials]\nmax_session_seconds = 7200\n");
    assert_eq!(
        BrokerConfig::from_toml_str(&text, Path::new("/cfg"))
            .unwrap()
            .max_session,
        Duration::from_secs(7200)
    );
    let text = format!("{MINIMAL}[limits]\nburst = 0\n");
    assert_eq!(rule(&text).0, "limits.burst");
    let dup = MINIMAL.replace(
        "bundle_files = [{ trust_domain = \"spiffe://example.org\", path = \"b.json\" }]",
        "bundle_files = [{ trust_domain = \"example.org\", path = \"a\" }, { trust_domain = \"example.org\", path = \"b\" }]",
    );
    assert_eq!(rule(&dup).0, "identity.bundle_files.trust_domain");
}

#[test]
fn load_reads_files_and_caps_their_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let c = BrokerConfig::load(&path).unwrap();
    assert_eq!(c.policy_file, dir.path().join("p.toml"));
    assert!(matches!(
        BrokerConfig::load(&dir.path().join("missing.toml")),
        Err(ConfigError::Io { .. })
    ));
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat(MAX_CONFIG_FILE_BYTES as usize + 1)).unwrap();
    assert!(matches!(
        BrokerConfig::load(&big),
        Err(ConfigError::TooLarge { .. })
    ));
}

// === [service_account] ===

fn with_sa(section: &str) -> String {
    format!("{MINIMAL}\n{section}")
}

const SA_FILE: &str = r#"
[service_account]
trusted_actors = ["spiffe://example.org/k8s/node/*/credential-provider", "spiffe://example.org/plugin"]
[[service_account.issuers]]
issuer = "https://kubernetes.default.svc"
audiences = ["svid-broker"]
trust_domain = "example.org"
jwks_file = "sa.jwks.json"
"#;

#[test]
fn service_account_absent_is_none() {
    assert_eq!(parse(MINIMAL).unwrap().service_account, None);
}

#[test]
fn service_account_with_a_jwks_file_and_the_default_template() {
    let sa = parse(&with_sa(SA_FILE)).unwrap().service_account.unwrap();
    assert_eq!(sa.trusted_actors.len(), 2);
    let issuer = &sa.issuers[0];
    assert_eq!(issuer.issuer, "https://kubernetes.default.svc");
    assert_eq!(issuer.audiences, ["svid-broker"]);
    assert_eq!(
        issuer.template.as_str(),
        "spiffe://example.org/ns/{namespace}/sa/{name}"
    );
    assert_eq!(
        issuer.keys,
        KeySource::File {
            path: PathBuf::from("/cfg/sa.jwks.json"),
            poll: Duration::from_secs(5)
        }
    );
}

#[test]
fn service_account_with_oidc_discovery() {
    let text = with_sa(
        r#"
[service_account]
trusted_actors = ["spiffe://example.org/plugin"]
[[service_account.issuers]]
issuer = "https://oidc.example/cluster-a/"
audiences = ["a", "b"]
trust_domain = "spiffe://example.org"
spiffe_id_template = "spiffe://{trust_domain}/k8s/a/{namespace}/{name}"
oidc_discovery = true
discovery_ca_file = "ca.pem"
discovery_refresh_seconds = 60
"#,
    );
    let sa = parse(&text).unwrap().service_account.unwrap();
    let issuer = &sa.issuers[0];
    assert_eq!(
        issuer.template.as_str(),
        "spiffe://example.org/k8s/a/{namespace}/{name}"
    );
    let KeySource::Discovery(d) = &issuer.keys else {
        panic!("{:?}", issuer.keys)
    };
    assert_eq!(
        d.url,
        "https://oidc.example/cluster-a/.well-known/openid-configuration"
    );
    assert_eq!(d.issuer, "https://oidc.example/cluster-a/");
    assert_eq!(d.ca_file.as_deref(), Some(Path::new("/cfg/ca.pem")));
    assert_eq!(d.refresh, Duration::from_secs(60));
}

#[test]
fn service_account_rules() {
    let base = SA_FILE;
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"audiences = ["svid-broker"]"#,
            "audiences = []",
            "service_account.issuers.audiences",
        ),
        (
            r#"audiences = ["svid-broker"]"#,
            r#"audiences = [""]"#,
            "service_account.issuers.audiences",
        ),
        (
            r#"trust_domain = "example.org""#,
            r#"trust_domain = "Not A TD""#,
            "service_account.issuers.trust_domain",
        ),
        (
            r#"jwks_file = "sa.jwks.json""#,
            "",
            "service_account.issuers",
        ),
        (
            r#"jwks_file = "sa.jwks.json""#,
            "jwks_file = \"a\"\noidc_discovery = true",
            "service_account.issuers",
        ),
        (
            r#"jwks_file = "sa.jwks.json""#,
            "jwks_file = \"a\"\nspiffe_id_template = \"spiffe://other.org/{namespace}/{name}\"",
            "service_account.issuers.spiffe_id_template",
        ),
        (
            r#"jwks_file = "sa.jwks.json""#,
            "jwks_file = \"a\"\njwks_poll_seconds = 0",
            "service_account.issuers.jwks_poll_seconds",
        ),
        (
            r#"jwks_file = "sa.jwks.json""#,
            "jwks_file = \"a\"\ndiscovery_url = \"https://x\"",
            "service_account.issuers.discovery_url",
        ),
        (
            r#"trusted_actors = ["spiffe://example.org/k8s/node/*/credential-provider", "spiffe://example.org/plugin"]"#,
            r#"trusted_actors = ["not-an-id"]"#,
            "service_account.trusted_actors",
        ),
    ];
    for (from, to, key) in cases {
        assert!(base.contains(from), "{from}");
        let text = with_sa(&base.replace(from, to));
        assert_eq!(rule(&text).0, *key, "{to}");
    }
}

#[test]
fn service_account_discovery_needs_https_and_a_sane_refresh() {
    let discovery = |issuer: &str, extra: &str| {
        with_sa(&format!(
            "[service_account]\n[[service_account.issuers]]\nissuer = \"{issuer}\"\naudiences = [\"a\"]\ntrust_domain = \"example.org\"\noidc_discovery = true\n{extra}"
        ))
    };
    assert_eq!(
        rule(&discovery("http://k8s", "")).0,
        "service_account.issuers.discovery_url"
    );
    assert_eq!(
        rule(&discovery("https://k8s", "discovery_refresh_seconds = 5")).0,
        "service_account.issuers.discovery_refresh_seconds"
    );
    // An explicit https discovery_url fixes an issuer that is not itself a URL.
    assert!(
        parse(&discovery(
            "kubernetes",
            "discovery_url = \"https://k8s/.well-known/openid-configuration\""
        ))
        .is_ok()
    );
}

#[test]
fn service_account_trusted_actors_need_an_issuer_and_issuers_are_unique() {
    assert_eq!(
        rule(&with_sa(
            "[service_account]\ntrusted_actors = [\"spiffe://example.org/plugin\"]"
        ))
        .0,
        "service_account.issuers"
    );
    let twice = format!(
        "{SA_FILE}\n[[service_account.issuers]]\nissuer = \"https://kubernetes.default.svc\"\naudiences = [\"x\"]\ntrust_domain = \"example.org\"\njwks_file = \"b\"\n"
    );
    assert_eq!(
        rule(&with_sa(&twice)),
        (
            "service_account.issuers.issuer",
            "each issuer may appear once"
        )
    );
    // A second cluster mapping into the same IDs is refused; its own path prefix is fine.
    let second = |template: &str| {
        format!(
            "{SA_FILE}\n[[service_account.issuers]]\nissuer = \"https://other-cluster\"\naudiences = [\"x\"]\ntrust_domain = \"example.org\"\njwks_file = \"b\"\n{template}"
        )
    };
    assert_eq!(
        rule(&with_sa(&second(""))),
        (
            "service_account.issuers.spiffe_id_template",
            "two issuers map service accounts to the same SPIFFE IDs: give each cluster its own trust domain or path prefix"
        )
    );
    let own_prefix = second(
        "spiffe_id_template = \"spiffe://example.org/cluster/other/ns/{namespace}/sa/{name}\"\n",
    );
    assert!(BrokerConfig::from_toml_str(&with_sa(&own_prefix), Path::new("/")).is_ok());
    // Issuers without trusted actors: mode off, still a valid file.
    let off = SA_FILE.replace(
        r#"trusted_actors = ["spiffe://example.org/k8s/node/*/credential-provider", "spiffe://example.org/plugin"]"#,
        "",
    );
    assert!(
        parse(&with_sa(&off))
            .unwrap()
            .service_account
            .unwrap()
            .trusted_actors
            .is_empty()
    );
    assert!(matches!(
        parse(&with_sa("[service_account]\nunknown = 1")),
        Err(ConfigError::Parse { .. })
    ));
}

/// Issue 8 item 5: a second cluster whose template renders `.../sa/builder` for every account
/// would make each of its accounts the first cluster's `builder`. Before the fix this loaded.
#[test]
fn service_account_templates_that_can_render_the_same_id_are_refused() {
    let second = |template: &str, extra: &str| {
        with_sa(&format!(
            "{SA_FILE}\n[[service_account.issuers]]\nissuer = \"https://cluster-b\"\naudiences = [\"x\"]\ntrust_domain = \"example.org\"\njwks_file = \"b\"\nspiffe_id_template = \"{template}\"\n{extra}"
        ))
    };
    let overlap = (
        "service_account.issuers.spiffe_id_template",
        "two issuers map service accounts to the same SPIFFE IDs: give each cluster its own trust domain or path prefix",
    );
    assert_eq!(
        rule(&second(
            "spiffe://example.org/ns/{namespace}/sa/builder",
            "allow_shared_identity = true"
        )),
        overlap
    );
    // Overlap, not equality: a fixed namespace, or the placeholders swapped, collide too.
    for (template, extra) in [
        (
            "spiffe://example.org/ns/prod/sa/{namespace}",
            "allow_shared_identity = true",
        ),
        ("spiffe://example.org/ns/{name}/sa/{namespace}", ""),
        ("spiffe://{trust_domain}/ns/{namespace}/sa/{name}", ""),
    ] {
        assert_eq!(rule(&second(template, extra)), overlap, "{template}");
    }
    // Disjoint: another prefix, another segment count, another trust domain.
    for template in [
        "spiffe://example.org/cluster/b/ns/{namespace}/sa/{name}",
        "spiffe://example.org/ns/{namespace}/{name}",
    ] {
        assert!(parse(&second(template, "")).is_ok(), "{template}");
    }
    let other_td = with_sa(&format!(
        "{SA_FILE}\n[[service_account.issuers]]\nissuer = \"https://cluster-b\"\naudiences = [\"x\"]\ntrust_domain = \"b.example.org\"\njwks_file = \"b\"\n"
    ));
    assert!(parse(&other_td).is_ok());
}

#[test]
fn service_account_templates_without_name_need_the_opt_in() {
    let issuer = |template: &str, extra: &str| {
        with_sa(&SA_FILE.replace(
            "jwks_file = \"sa.jwks.json\"",
            &format!("jwks_file = \"sa.jwks.json\"\nspiffe_id_template = \"{template}\"\n{extra}"),
        ))
    };
    let shared = "spiffe://example.org/ns/{namespace}/sa/builder";
    assert_eq!(
        rule(&issuer(shared, "")),
        (
            "service_account.issuers.spiffe_id_template",
            "a template without {name} gives every account of a namespace one identity: set allow_shared_identity = true on the issuer if that is intended"
        )
    );
    assert_eq!(
        rule(&issuer(shared, "allow_shared_identity = false")).1,
        "a template without {name} gives every account of a namespace one identity: set allow_shared_identity = true on the issuer if that is intended"
    );
    let sa = parse(&issuer(shared, "allow_shared_identity = true"))
        .unwrap()
        .service_account
        .unwrap();
    assert!(sa.issuers[0].allow_shared_identity);
    assert!(!sa.issuers[0].template.has_name());
    // Left set on a template with `{name}`, the opt-in would let a later edit drop it unseen.
    assert_eq!(
        rule(&issuer(
            "spiffe://example.org/ns/{namespace}/sa/{name}",
            "allow_shared_identity = true"
        )),
        (
            "service_account.issuers.allow_shared_identity",
            "only for a template without {name}"
        )
    );
    assert!(
        !parse(&with_sa(SA_FILE))
            .unwrap()
            .service_account
            .unwrap()
            .issuers[0]
            .allow_shared_identity
    );
}

#[test]
fn service_account_trusted_actor_patterns_are_narrow() {
    let actors = |list: &str| {
        with_sa(&SA_FILE.replace(
            r#"trusted_actors = ["spiffe://example.org/k8s/node/*/credential-provider", "spiffe://example.org/plugin"]"#,
            &format!("trusted_actors = [{list}]"),
        ))
    };
    for list in [
        r#""spiffe://example.org/**""#,
        r#""spiffe://example.org/plugin", "spiffe://example.org/k8s/node/**""#,
        r#""spiffe://example.org/k8s/node/{node}/**""#,
    ] {
        assert_eq!(
            rule(&actors(list)),
            (
                "service_account.trusted_actors",
                "a pattern may not end in \"**\" (it admits every ID below its prefix): name the plugin's ID, with * or {node} for one segment"
            ),
            "{list}"
        );
    }
    assert_eq!(
        rule(&actors(
            r#""spiffe://example.org/k8s/node/{name}/credential-provider""#
        )),
        (
            "service_account.trusted_actors",
            "{node} is the only capture a trusted actor pattern may have (use * for any other segment)"
        )
    );
    let sa = parse(&actors(
        r#""spiffe://example.org/k8s/node/{node}/credential-provider""#,
    ))
    .unwrap()
    .service_account
    .unwrap();
    assert_eq!(
        sa.trusted_actors,
        ["spiffe://example.org/k8s/node/{node}/credential-provider"]
    );
}

#[test]
fn hardening_defaults_are_the_documented_ones() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.audience_policy, AudienceMatch::Single);
    assert_eq!(c.max_session, Duration::from_secs(8 * 3600));
    assert_eq!(c.refresh_token_ttl, Duration::from_secs(3600));
    assert_eq!(c.failed_auth_per_second_per_ip, 10);
    assert_eq!(c.failed_auth_burst_per_ip, 100);
    assert_eq!(c.preauth_audit_interval, Duration::from_secs(10));
    assert_eq!(c.audit_on_error, AuditOnError::Deny);
}

#[test]
fn audience_policy_limits_and_audit_on_error_parse_and_are_checked() {
    let text = MINIMAL
        .replace(
            "audience = \"svid-broker\"\n",
            "audience = \"svid-broker\"\naudience_policy = \"any\"\n",
        )
        .replace(
            "[signing]\n",
            "[limits]\nfailed_auth_per_second_per_ip = 0\nfailed_auth_burst_per_ip = 0\npreauth_audit_interval_seconds = 60\n[log]\naudit_on_error = \"continue\"\n[signing]\n",
        );
    let c = parse(&text).unwrap();
    assert_eq!(c.audience_policy, AudienceMatch::AnyOf);
    assert_eq!(c.failed_auth_per_second_per_ip, 0);
    assert_eq!(c.preauth_audit_interval, Duration::from_secs(60));
    assert_eq!(c.audit_on_error, AuditOnError::Continue);

    let with = |section: &str| MINIMAL.replace("[signing]\n", &format!("{section}\n[signing]\n"));
    let bad_policy = MINIMAL.replace(
        "audience = \"svid-broker\"\n",
        "audience = \"svid-broker\"\naudience_policy = \"all\"\n",
    );
    assert_eq!(
        rule(&bad_policy),
        ("identity.audience_policy", "must be \"single\" or \"any\"")
    );
    assert_eq!(
        rule(&with("[log]\naudit_on_error = \"ignore\"")),
        ("log.audit_on_error", "must be \"deny\" or \"continue\"")
    );
    assert_eq!(
        rule(&with("[limits]\nfailed_auth_burst_per_ip = 0")),
        (
            "limits.failed_auth_burst_per_ip",
            "must be at least 1 when failed_auth_per_second_per_ip is set"
        )
    );
    assert_eq!(
        rule(&with("[limits]\npreauth_audit_interval_seconds = 0")),
        ("limits.preauth_audit_interval_seconds", "must be 1..=3600")
    );
}

#[test]
fn the_federation_section_takes_key_files_or_generate_and_a_bounded_ttl() {
    assert_eq!(parse(MINIMAL).unwrap().federation, None);
    let c = parse(&format!(
        "{MINIMAL}[federation]\nkey_files = [\"b.pem\", \"/keys/a.pem\"]\n"
    ))
    .unwrap();
    let federation = c.federation.clone().unwrap();
    assert_eq!(
        federation.keys,
        FederationKeySource::Files(vec![
            PathBuf::from("/cfg/b.pem"),
            PathBuf::from("/keys/a.pem")
        ])
    );
    assert_eq!(federation.token_ttl, Duration::from_secs(300));
    assert_eq!(
        c.federation_issuer_url(),
        "http://broker.example/federation"
    );
    let generated = parse(&format!(
        "{MINIMAL}[federation]\ngenerate = true\ntoken_ttl_seconds = 60\n"
    ))
    .unwrap();
    assert_eq!(
        generated.federation.unwrap(),
        FederationConfig {
            keys: FederationKeySource::Generate,
            token_ttl: Duration::from_secs(60)
        }
    );
    for (section, key) in [
        ("[federation]\n", "federation"),
        (
            "[federation]\ngenerate = true\nkey_files = [\"a.pem\"]\n",
            "federation.generate",
        ),
        (
            "[federation]\ngenerate = true\ntoken_ttl_seconds = 59\n",
            "federation.token_ttl_seconds",
        ),
        (
            "[federation]\ngenerate = true\ntoken_ttl_seconds = 601\n",
            "federation.token_ttl_seconds",
        ),
        (
            "[federation]\nkey_files = [\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\"]\n",
            "federation.key_files",
        ),
    ] {
        assert_eq!(rule(&format!("{MINIMAL}{section}")).0, key, "{section}");
    }
}

// === Key stores: signing.key / mac_key / pkcs11_module / pin_* / aws_*, federation.keys ===

const P11_KEY: &str = "pkcs11:token=broker;object=ca";
const KMS_ARN: &str =
    "awskms:arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// [`MINIMAL`] with `body` as its `[signing]` section (the last section).
fn with_signing(body: &str) -> String {
    let text = MINIMAL.replace("generate = true\n", body);
    assert_ne!(text, MINIMAL, "MINIMAL's [signing] section moved");
    text
}

/// A valid PKCS#11 signing section, plus `extra`.
fn pkcs11_signing(extra: &str) -> String {
    with_signing(&format!(
        "ca_cert_file = \"ca.pem\"\nkey = \"{P11_KEY}\"\npkcs11_module = \"lib/p11.so\"\npin_file = \"pin\"\n{extra}"
    ))
}

/// An AWS KMS signing section with key `key` and an HMAC key alias, plus `extra`.
fn kms_signing(key: &str, extra: &str) -> String {
    with_signing(&format!(
        "ca_cert_file = \"ca.pem\"\nkey = \"{key}\"\nmac_key = \"awskms:arn:aws:kms:eu-west-1:111122223333:alias/broker-mac\"\n{extra}"
    ))
}

fn p11(text: &str) -> KeyReference {
    KeyReference::Pkcs11(Box::new(
        svid_broker_keystore::pkcs11::Pkcs11Uri::parse(text).unwrap(),
    ))
}

/// Without the `kms` feature an awskms: key gets this far and no further: every rule before
/// it passed.
const NO_KMS_FEATURE: (&str, &str) = (
    "signing.key",
    "awskms: keys need the broker built with the `kms` cargo feature",
);

#[test]
fn a_pkcs11_signing_key_takes_its_secret_key_as_the_mac_and_the_module_resolved() {
    let c = parse(&pkcs11_signing("")).unwrap();
    assert_eq!(
        c.signing,
        SigningSource::KeyStore {
            cert: "/cfg/ca.pem".into(),
            key: p11(P11_KEY),
            mac: p11("pkcs11:token=broker;object=ca;type=secret-key"),
        }
    );
    assert_eq!(
        c.key_store,
        KeyStoreConfig {
            pkcs11: Some(Pkcs11Settings {
                module: "/cfg/lib/p11.so".into(),
                pin: PinSource::File("/cfg/pin".into()),
            }),
            aws_kms: None,
        }
    );
    // An explicit mac_key is taken as written; pin_env instead of pin_file.
    let text = with_signing(&format!(
        "ca_cert_file = \"ca.pem\"\nkey = \"{P11_KEY}\"\nmac_key = \"pkcs11:token=broker;object=hmac\"\npkcs11_module = \"/usr/lib/softhsm/libsofthsm2.so\"\npin_env = \"BROKER_PIN_1\"\n"
    ));
    let c = parse(&text).unwrap();
    let SigningSource::KeyStore { mac, .. } = &c.signing else {
        panic!("{:?}", c.signing)
    };
    assert_eq!(*mac, p11("pkcs11:token=broker;object=hmac"));
    assert_eq!(
        c.key_store.pkcs11,
        Some(Pkcs11Settings {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            pin: PinSource::Env("BROKER_PIN_1".into()),
        })
    );
    // Federation keys in the token need the same module settings, with a generated CA too.
    let text = format!(
        "{}[federation]\nkeys = [\"pkcs11:token=broker;object=fed-b\", \"pkcs11:token=broker;object=fed-a\"]\n",
        with_signing("generate = true\npkcs11_module = \"/m.so\"\npin_env = \"PIN\"\n")
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.federation.unwrap().keys,
        FederationKeySource::KeyStore(vec![
            p11("pkcs11:token=broker;object=fed-b"),
            p11("pkcs11:token=broker;object=fed-a"),
        ])
    );
    assert_eq!(c.key_store.pkcs11.unwrap().module, PathBuf::from("/m.so"));
}

#[test]
fn a_pkcs11_uri_with_a_pin_is_refused_and_the_pin_never_printed() {
    for (text, key) in [
        (
            pkcs11_signing("").replace(P11_KEY, "pkcs11:token=broker;object=ca?pin-value=98765"),
            "signing.key",
        ),
        (
            pkcs11_signing("mac_key = \"pkcs11:token=broker;object=m?pin-value=98765\"\n"),
            "signing.mac_key",
        ),
    ] {
        let error = parse(&text).unwrap_err();
        assert!(
            matches!(error, ConfigError::InvalidPkcs11Uri { key: k, .. } if k == key),
            "{error:?}"
        );
        let chain = svid_broker_identity::report::ErrorChain::new(&error).to_string();
        assert!(chain.starts_with(key), "{chain}");
        assert!(chain.contains("a PIN does not belong"), "{chain}");
        assert!(!chain.contains("98765"), "{chain}");
    }
    let federation = format!(
        "{}[federation]\nkeys = [\"pkcs11:token=broker\"]\n",
        pkcs11_signing("")
    );
    let error = parse(&federation).unwrap_err();
    let chain = svid_broker_identity::report::ErrorChain::new(&error).to_string();
    assert!(
        chain.starts_with("federation.keys") && chain.contains("names no object"),
        "{chain}"
    );
}

#[test]
fn each_key_store_rule_is_enforced() {
    let signing_files = "ca_cert_file = \"ca.pem\"\nca_key_file = \"ca.key\"\n";
    let cases: Vec<(String, (&str, &str))> = vec![
        (
            with_signing(&format!("{signing_files}key = \"{P11_KEY}\"\n")),
            (
                "signing.key",
                "cannot be combined with ca_key_file: the key is in a file or in a key store",
            ),
        ),
        (
            with_signing(&format!("generate = true\nkey = \"{P11_KEY}\"\n")),
            (
                "signing.generate",
                "cannot be combined with ca_cert_file, ca_key_file or key",
            ),
        ),
        (
            pkcs11_signing("").replace("ca_cert_file = \"ca.pem\"\n", ""),
            (
                "signing",
                "set ca_cert_file with ca_key_file (a PEM key) or with key (in a key store), or generate = true",
            ),
        ),
        (
            pkcs11_signing("").replace(P11_KEY, "file:/etc/broker/ca.key"),
            (
                "signing.key",
                "must be a pkcs11: URI (RFC 7512) or awskms:<key id or ARN>",
            ),
        ),
        (
            kms_signing("awskms:", ""),
            (
                "signing.key",
                "an awskms: key is 1..=2048 characters of [A-Za-z0-9_/:-] (a key id, key ARN, alias/name or alias ARN)",
            ),
        ),
        (
            kms_signing("awskms:alias/a b", ""),
            (
                "signing.key",
                "an awskms: key is 1..=2048 characters of [A-Za-z0-9_/:-] (a key id, key ARN, alias/name or alias ARN)",
            ),
        ),
        (
            pkcs11_signing("").replace("pkcs11_module = \"lib/p11.so\"\n", ""),
            (
                "signing.pkcs11_module",
                "required with a pkcs11: key: the PKCS#11 module's path",
            ),
        ),
        (
            pkcs11_signing("pin_env = \"PIN\"\n"),
            (
                "signing.pin_file",
                "set exactly one of pin_file and pin_env with a pkcs11: key",
            ),
        ),
        (
            pkcs11_signing("").replace("pin_file = \"pin\"\n", ""),
            (
                "signing.pin_file",
                "set exactly one of pin_file and pin_env with a pkcs11: key",
            ),
        ),
        (
            pkcs11_signing("").replace("pin_file = \"pin\"", "pin_env = \"BROKER-PIN\""),
            (
                "signing.pin_env",
                "must be an environment variable name: 1..=128 of [A-Za-z0-9_]",
            ),
        ),
        (
            pkcs11_signing("").replace("pin_file = \"pin\"", "pin_env = \"\""),
            (
                "signing.pin_env",
                "must be an environment variable name: 1..=128 of [A-Za-z0-9_]",
            ),
        ),
        (
            pkcs11_signing("").replace(
                "pin_file = \"pin\"",
                &format!("pin_env = \"{}\"", "P".repeat(MAX_PIN_ENV_NAME_LEN + 1)),
            ),
            (
                "signing.pin_env",
                "must be an environment variable name: 1..=128 of [A-Za-z0-9_]",
            ),
        ),
        (
            with_signing("generate = true\npkcs11_module = \"/m.so\"\npin_file = \"pin\"\n"),
            (
                "signing.pkcs11_module",
                "pkcs11_module, pin_file and pin_env apply only to pkcs11: keys",
            ),
        ),
        (
            with_signing("generate = true\npin_env = \"PIN\"\n"),
            (
                "signing.pkcs11_module",
                "pkcs11_module, pin_file and pin_env apply only to pkcs11: keys",
            ),
        ),
        (
            kms_signing(KMS_ARN, "pkcs11_module = \"/m.so\"\n"),
            (
                "signing.pkcs11_module",
                "pkcs11_module, pin_file and pin_env apply only to pkcs11: keys",
            ),
        ),
        (
            with_signing("ca_cert_file = \"ca.pem\"\nkey = \"awskms:alias/broker\"\n"),
            (
                "signing.mac_key",
                "required with an awskms: signing key: an HMAC_256 KMS key (every replica derives its credential MAC keys through it)",
            ),
        ),
        (
            kms_signing("awskms:alias/broker", ""),
            (
                "signing.aws_region",
                "required unless every awskms: key is an ARN (which names its region)",
            ),
        ),
        (
            kms_signing("awskms:alias/broker", "aws_region = \"EU_WEST_1\"\n"),
            (
                "signing.aws_region",
                "must be an AWS region name like us-east-1",
            ),
        ),
        (
            kms_signing(KMS_ARN, "aws_kms_endpoint = \"http://kms.internal:4566\"\n"),
            (
                "signing.aws_kms_endpoint",
                "must be an https:// URL, or http:// on a loopback IP address (tests), without path, query or credentials",
            ),
        ),
        (
            kms_signing(KMS_ARN, "aws_kms_endpoint = \"https://kms.example/path\"\n"),
            (
                "signing.aws_kms_endpoint",
                "must be an https:// URL, or http:// on a loopback IP address (tests), without path, query or credentials",
            ),
        ),
        (
            kms_signing(KMS_ARN, "aws_sts_endpoint = \"http://10.0.0.1\"\n"),
            (
                "signing.aws_sts_endpoint",
                "must be an https:// URL, or http:// on a loopback IP address (tests), without path, query or credentials",
            ),
        ),
        (
            with_signing("generate = true\naws_region = \"eu-west-1\"\n"),
            (
                "signing.aws_region",
                "aws_region, aws_kms_endpoint and aws_sts_endpoint apply only to awskms: keys",
            ),
        ),
        (
            pkcs11_signing("aws_kms_endpoint = \"https://kms.example\"\n"),
            (
                "signing.aws_region",
                "aws_region, aws_kms_endpoint and aws_sts_endpoint apply only to awskms: keys",
            ),
        ),
        (
            with_signing("generate = true\nmac_key = \"awskms:alias/broker-mac\"\n"),
            ("signing.mac_key", "applies only with signing.key"),
        ),
        (
            with_signing(&format!("{signing_files}mac_key = \"{P11_KEY}\"\n")),
            ("signing.mac_key", "applies only with signing.key"),
        ),
        (
            pkcs11_signing("mac_key = \"awskms:alias/broker-mac\"\n"),
            (
                "signing.mac_key",
                "must be in the same kind of key store as signing.key",
            ),
        ),
        (
            kms_signing(KMS_ARN, "").replace(
                "awskms:arn:aws:kms:eu-west-1:111122223333:alias/broker-mac",
                P11_KEY,
            ),
            (
                "signing.mac_key",
                "must be in the same kind of key store as signing.key",
            ),
        ),
        (
            format!(
                "{}[federation]\nkey_files = [\"f.pem\"]\nkeys = [\"{P11_KEY}\"]\n",
                pkcs11_signing("")
            ),
            (
                "federation.keys",
                "cannot be combined with key_files: the keys are in files or in a key store",
            ),
        ),
        (
            format!(
                "{}[federation]\ngenerate = true\nkeys = [\"{P11_KEY}\"]\n",
                pkcs11_signing("")
            ),
            (
                "federation.generate",
                "cannot be combined with key_files or keys",
            ),
        ),
        (
            format!(
                "{}[federation]\nkeys = [{}]\n",
                pkcs11_signing(""),
                (0..=MAX_FEDERATION_KEYS)
                    .map(|i| format!("\"pkcs11:token=broker;object=fed-{i}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ("federation.keys", "at most 10 keys"),
        ),
        (
            format!(
                "{}[federation]\nkeys = [\"file:/f.pem\"]\n",
                pkcs11_signing("")
            ),
            (
                "federation.keys",
                "must be a pkcs11: URI (RFC 7512) or awskms:<key id or ARN>",
            ),
        ),
        (
            // A pkcs11: federation key needs the module as much as a signing key does.
            format!("{MINIMAL}[federation]\nkeys = [\"{P11_KEY}\"]\n"),
            (
                "signing.pkcs11_module",
                "required with a pkcs11: key: the PKCS#11 module's path",
            ),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(rule(&text), want, "{text}");
    }
    // Exactly ten is the cap, not past it.
    let ten = format!(
        "{}[federation]\nkeys = [{}]\n",
        pkcs11_signing(""),
        (0..MAX_FEDERATION_KEYS)
            .map(|i| format!("\"pkcs11:token=broker;object=fed-{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(parse(&ten).is_ok());
}

#[test]
fn an_awskms_key_takes_its_region_from_the_arn_or_aws_region() {
    let cases = [
        (kms_signing(KMS_ARN, ""), "eu-west-1", None),
        // An ARN names its own region; `aws_region` is for the keys that are not ARNs.
        (
            kms_signing(KMS_ARN, "aws_region = \"us-east-2\"\n"),
            "eu-west-1",
            None,
        ),
        (
            kms_signing("awskms:alias/broker", "aws_region = \"ap-south-1\"\n"),
            "ap-south-1",
            None,
        ),
        (
            kms_signing(KMS_ARN, "aws_kms_endpoint = \"http://127.0.0.1:4566\"\n"),
            "eu-west-1",
            Some("http://127.0.0.1:4566"),
        ),
    ];
    for (text, region, endpoint) in cases {
        if cfg!(feature = "kms") {
            let c = parse(&text).unwrap();
            let kms = c.key_store.aws_kms.unwrap();
            assert_eq!(kms.kms_endpoint.as_deref(), endpoint);
            assert_eq!(c.key_store.pkcs11, None);
            let SigningSource::KeyStore { key, mac, .. } = c.signing else {
                panic!("{:?}", c.signing)
            };
            let KeyReference::AwsKms { key_id } = &key else {
                panic!("{key:?}")
            };
            assert_eq!(kms.region_for(key_id), Some(region));
            assert_eq!(
                mac,
                KeyReference::AwsKms {
                    key_id: "arn:aws:kms:eu-west-1:111122223333:alias/broker-mac".into()
                }
            );
        } else {
            assert_eq!(rule(&text), NO_KMS_FEATURE, "{text}");
        }
    }
}
