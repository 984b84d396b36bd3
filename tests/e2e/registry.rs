//! Real-component harness: Debian's `docker-registry` (distribution 2.8.2) on 127.0.0.1 and
//! `skopeo` (1.9.3) as the client, plus a tiny OCI image built here so no network is needed;
//! all from the shared harness (`svid_broker_testkit::registry`, over `svid_broker_dev`'s
//! registry child and OCI writer, which `svid-broker demo` uses too).
//!
//! `scripts/test.sh` installs both packages. When one is missing, tests that need it fail under
//! `CI=true` and are skipped loudly otherwise; they never pass silently.

pub(crate) use svid_broker_testkit::process::{Output as SkopeoOutput, free_port, require};
pub(crate) use svid_broker_testkit::registry::{
    Registry, TokenAuth, skopeo, skopeo_with_env, write_oci_image,
};

/// The harness itself, against an unauthenticated registry: push an image built here, then read
/// it back. Proves the registry, skopeo and the OCI layout work before any auth is layered on.
#[test]
fn harness_pushes_and_pulls_through_a_real_registry() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let registry = Registry::start(None);
    let work = tempfile::tempdir().unwrap();
    let image = write_oci_image(&work.path().join("image"), "v1", "hello from svid-broker\n");
    let src = format!("oci:{}:v1", image.display());
    let dest = registry.image_ref("team/app", "v1");
    let out = skopeo(
        &["copy", "--dest-tls-verify=false", &src, &dest],
        work.path(),
    );
    assert!(
        out.success(),
        "push failed: {}\n{}",
        out.stderr,
        registry.log()
    );
    let out = skopeo(&["inspect", "--tls-verify=false", &dest], work.path());
    assert!(out.success(), "inspect failed: {}", out.stderr);
    let manifest: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        manifest["Layers"].as_array().map(Vec::len),
        Some(1),
        "{manifest}"
    );
    let pulled = work.path().join("pulled");
    let out = skopeo(
        &[
            "copy",
            "--src-tls-verify=false",
            &dest,
            &format!("oci:{}:v1", pulled.display()),
        ],
        work.path(),
    );
    assert!(out.success(), "pull failed: {}", out.stderr);
}
