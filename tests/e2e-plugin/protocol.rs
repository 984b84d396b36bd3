//! The exec protocol without a broker: golden files, failures before any network, the
//! diagnostics subcommands and the Docker credential-helper verbs.

use std::path::Path;

use crate::strict;
use crate::support::{PLUGIN, data, plugin, run};

const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha1"];

/// A config whose registry is `registry.test:5000` and whose Workload API does not exist.
fn config(dir: &Path) -> String {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "broker = \"127.0.0.1:1\"\nbroker_id = \"spiffe://broker.test/svid-broker\"\n\
             deadline_seconds = 5\n[svid]\nworkload_api = \"unix://{}\"\n\
             [[registries]]\nservice = \"registry.test\"\nmatch_images = [\"registry.test:5000\"]\n",
            dir.join("missing.sock").display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn golden_not_ours_responses_for_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    for v in VERSIONS {
        let request = std::fs::read_to_string(data(&format!("{v}/request-not-ours.json"))).unwrap();
        let want = std::fs::read_to_string(data(&format!("{v}/response-not-ours.json"))).unwrap();
        let out = plugin(&["--config", &config], &[], &request);
        assert!(out.success(), "{v}: {out:?}");
        assert_eq!(out.stdout, want, "{v}: golden response differs");
        assert_eq!(out.stderr, "", "{v}: stderr must stay empty on success");
        let response = strict::decode(
            &out.stdout,
            &format!("credentialprovider.kubelet.k8s.io/{v}"),
        );
        assert_eq!(response.cache_duration.as_deref(), Some("0s"));
        assert!(response.auth.unwrap().is_empty());
    }
}

/// An image of ours whose Workload API is down: non-zero exit, nothing on stdout, one stderr
/// line naming the cause.
#[test]
fn ours_with_the_workload_api_down_fails_loudly_for_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    for v in VERSIONS {
        let request = std::fs::read_to_string(data(&format!("{v}/request-ours.json"))).unwrap();
        let out = plugin(&["--config", &config], &[], &request);
        assert!(!out.success(), "{v}: {out:?}");
        assert_eq!(out.stdout, "", "{v}");
        let line = out.one_stderr_line();
        assert!(
            line.starts_with("svid-credential-provider: workload api unreachable"),
            "{v}: {line}"
        );
    }
}

#[test]
fn malformed_requests_fail_without_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let cases = [
        ("not json", "invalid request"),
        (
            r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v2","image":"a"}"#,
            "unsupported apiVersion",
        ),
        (
            r#"{"kind":"Other","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"a"}"#,
            "unexpected kind",
        ),
        ("", "invalid request"),
    ];
    for (input, want) in cases {
        let out = plugin(&["--config", &config], &[], input);
        assert!(!out.success());
        assert_eq!(out.stdout, "");
        let line = out.one_stderr_line();
        assert!(line.contains(want), "{input:?}: {line}");
    }
    let big = format!(
        r#"{{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"{}"}}"#,
        "a".repeat(70_000)
    );
    let out = plugin(&["--config", &config], &[], &big);
    assert!(out.one_stderr_line().contains("larger than"), "{out:?}");
}

#[test]
fn a_missing_or_bad_config_fails_without_stdout() {
    let request = std::fs::read_to_string(data("v1/request-ours.json")).unwrap();
    let out = plugin(&["--config", "/nonexistent/config.toml"], &[], &request);
    assert!(!out.success());
    assert_eq!(out.stdout, "");
    assert!(
        out.one_stderr_line()
            .starts_with("svid-credential-provider: config error: cannot read")
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "broker = \"127.0.0.1:1\"\nbroker_id = \"spiffe://td/b\"\nbogus = 1\n",
    )
    .unwrap();
    let out = plugin(&["--config", path.to_str().unwrap()], &[], &request);
    assert!(!out.success());
    let line = out.one_stderr_line();
    assert!(
        line.contains("bogus") && line.contains("config error"),
        "{line}"
    );

    // The config path may also come from the environment, as a kubelet `env` entry sets it.
    let good = config(dir.path());
    let not_ours = std::fs::read_to_string(data("v1/request-not-ours.json")).unwrap();
    let out = plugin(
        &[],
        &[("SVID_CREDENTIAL_PROVIDER_CONFIG", &good)],
        &not_ours,
    );
    assert!(out.success(), "{out:?}");
}

#[test]
fn match_image_prints_the_kubelet_rule() {
    let cases = [
        ("registry.io:8080/path", "registry.io:8080/path/app", "true"),
        ("registry.io", "registry.io:8080/app", "false"),
        ("*.io", "a.k8s.io/x", "false"),
        ("*.k8s.io", "a.k8s.io/x", "true"),
        ("reg.io/team-a", "reg.io/team-ab/x", "true"),
        ("reg.io/*", "reg.io/team/app", "false"),
        ("Reg.io", "reg.io/x", "false"),
    ];
    for (pattern, image, want) in cases {
        let out = plugin(&["match-image", pattern, image], &[], "");
        assert!(out.success(), "{out:?}");
        assert_eq!(out.stdout, format!("{want}\n"), "{pattern} vs {image}");
        assert_eq!(out.stderr, "");
    }
    let out = plugin(&["match-image", "%invalid%", "x"], &[], "");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(out.stdout, "");
    assert!(out.one_stderr_line().contains("invalid"));
}

#[test]
fn validate_lints_kubelet_and_plugin_configs() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let good = data("kubelet-config.json");
    let out = plugin(
        &[
            "validate",
            "--kubelet-config",
            good.to_str().unwrap(),
            "--config",
            &config,
        ],
        &[],
        "",
    );
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, "ok\n");

    let bad = data("kubelet-config-bad.json");
    let out = plugin(
        &[
            "validate",
            "--kubelet-config",
            bad.to_str().unwrap(),
            "--config",
            &config,
        ],
        &[],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    for want in [
        "error: providers[0].matchImages[0]: \"registry.test:5000/*\" has a glob in its path",
        "error: providers[0].defaultCacheDuration: missing",
        "error: providers[0].tokenAttributes: tokenAttributes exists only in kubelet.config.k8s.io/v1",
        "error: providers[0].tokenAttributes: tokenAttributes needs apiVersion credentialprovider.kubelet.k8s.io/v1",
        "error: providers[0].tokenAttributes.cacheType: \"Registry\" is a cacheKeyType",
        "warning: providers[0].matchImages: \"other.test\" is not covered by our config",
    ] {
        assert!(
            out.stdout.contains(want),
            "missing {want:?} in:\n{}",
            out.stdout
        );
    }
}

#[test]
fn docker_credential_helper_verbs() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("docker-credential-svid");
    std::os::unix::fs::symlink(PLUGIN, &link).unwrap();
    let config = config(dir.path());
    let env = [("SVID_CREDENTIAL_PROVIDER_CONFIG", config.as_str())];

    let out = run(&link, &["version"], &env, "");
    assert!(out.success());
    assert!(out.stdout.starts_with("docker-credential-svid"), "{out:?}");

    for verb in ["store", "erase"] {
        let out = run(
            &link,
            &[verb],
            &env,
            r#"{"ServerURL":"x","Username":"u","Secret":"s"}"#,
        );
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(out.stdout.contains("is not supported"), "{out:?}");
        assert!(!out.stdout.contains("\"s\""));
    }

    let out = run(&link, &["list"], &env, "");
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, "{\"registry.test:5000\":\"\"}\n");

    // Not a registry of ours: the protocol's not-found sentinel, on stdout.
    let out = run(&link, &["get"], &env, "https://index.docker.io/v1/\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout, "credentials not found in native keychain\n");

    // Ours, but the Workload API is down: a failure naming it, on stdout.
    let out = run(&link, &["get"], &env, "registry.test:5000");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.starts_with("workload api unreachable"),
        "{out:?}"
    );
}
