//! `svid-broker demo`, the README's first command: the real binary, its exit code, its step
//! headers, the real-registry step, and that no secret reaches its output.

use std::process::Stdio;

use crate::registry::require;
use crate::support::{Output, broker};

const HEADERS: [&str; 6] = [
    "[1/6] identities:",
    "[2/6] the broker:",
    "[3/6] the kubelet runs the credential provider plugin",
    "[4/6] containerd trades the credential for a registry token",
    "[5/6] a Harbor-kind registry, through a FAKE of Harbor's API (no real Harbor)",
    "[6/6] a real registry:",
];

/// Runs `svid-broker demo` with `env` on top of the inherited environment (minus `RUST_LOG`,
/// so library logs cannot hide in the output) and `CI` unless `env` sets it.
fn demo(env: &[(&str, &str)]) -> Output {
    let mut command = broker();
    command
        .arg("demo")
        .env_remove("RUST_LOG")
        .env_remove("CI")
        .envs(env.iter().copied());
    svid_broker_testkit::process::run(&mut command, None)
}

/// No credential, registry token, refresh token or key in `text`: `sbl1.` is never followed by
/// the credential's base64url payload, and there is no JWT at all (a JWS header, and so every
/// token, starts with `eyJ`).
fn assert_no_secret(text: &str) {
    for (at, _) in text.match_indices("sbl1.") {
        let next = text[at + "sbl1.".len()..].chars().next();
        assert!(
            !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "an unredacted credential: {}",
            &text[at..text.len().min(at + 40)]
        );
    }
    for leak in ["eyJ", "sbr2.", "PRIVATE KEY"] {
        assert!(!text.contains(leak), "{leak:?} in the output:\n{text}");
    }
}

#[test]
fn demo_runs_every_step_through_a_real_registry_and_prints_no_secret() {
    let out = demo(&[]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stderr, "", "nothing on stderr when every step works");
    let mut from = 0;
    for header in HEADERS {
        let at = out.stdout[from..]
            .find(header)
            .unwrap_or_else(|| panic!("{header:?} missing or out of order:\n{}", out.stdout));
        from += at;
    }
    for shown in [
        "X.509-SVID     spiffe://example.org/node/worker-1/credential-provider",
        "allowed pull by rule nodes-pull-team-images",
        "\"password\": \"sbl1.… (REDACTED,",
        "\"cacheKeyType\": \"Registry\"",
        r#"access   [{"actions":["pull"],"name":"team-a/hello","type":"repository"}]"#,
        "FAKE Harbor API",
        "NOT a real Harbor",
        "the same robot again (reused while it lives)",
        "robots made: 1",
        "Harbor step (FAKE Harbor API): robot made for",
    ] {
        assert!(
            out.stdout.contains(shown),
            "{shown:?} missing:\n{}",
            out.stdout
        );
    }
    if require("docker-registry") && require("skopeo") {
        assert!(
            out.stdout
                .contains("real registry: push ok, pull ok, denied push refused"),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains("demo ok: all 6 steps worked"));
    } else {
        assert!(
            out.stdout
                .contains("skipped: docker-registry/skopeo not installed")
        );
    }
    assert_no_secret(&out.stdout);
}

#[test]
fn without_the_registry_tools_the_demo_says_skipped_and_fails_only_under_ci() {
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().to_str().unwrap();

    let out = demo(&[("PATH", path)]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.contains(
            "skipped: docker-registry/skopeo not installed (apt-get install docker-registry skopeo)"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("demo ok: steps 1-5 worked, the real-registry step was skipped")
    );
    assert_no_secret(&out.stdout);

    let out = demo(&[("PATH", path), ("CI", "true")]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stdout.contains("  FAILED: skipped:"), "{}", out.stdout);
    assert!(!out.stdout.contains("demo ok"), "{}", out.stdout);
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{:?}", out.stderr);
    assert!(
        lines[0].starts_with("svid-broker: demo step 6 (a real registry:"),
        "{}",
        lines[0]
    );
    assert_no_secret(&out.stdout);
}

#[test]
fn run_under_the_plugins_name_the_binary_is_the_kubelet_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("svid-credential-provider");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_svid-broker"), &link).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(&link)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&["match-image", "127.0.0.1:5000", "127.0.0.1:5000/team/app"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "true\n");
    let out = run(&["match-image", "127.0.0.1:5000", "127.0.0.1:5001/team/app"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "false\n");
    // Under its own name the binary stays svid-broker.
    let out = crate::support::run(&["match-image"], None);
    assert_eq!(out.code(), Some(2), "{out:?}");
}
