//! The token realm over TLS (`[server.tls]`): Debian's docker-registry points its clients at an
//! `https://` realm, and skopeo and containerd's `ctr` (Go clients, which trust the CA named by
//! `SSL_CERT_FILE`; containerd, the CA a `certs.d/HOST/hosts.toml` names, as on a node; no
//! system trust store is changed) push and pull through it, with verification on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, DnType, KeyPair};
use svid_broker_dev::DevTrustDomain;
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_identity::{SpiffeId, TrustDomain};

use crate::containerd::Containerd;
use crate::fixtures::{AUDIENCE, BUILDER, BrokerSpec, ISSUER, READER, SERVICE};
use crate::realm::self_signed_ca;
use crate::registry::{Registry, TokenAuth, free_port, require, skopeo_with_env, write_oci_image};

/// A CA and a server certificate for 127.0.0.1 and localhost signed by it, as PEM files:
/// (CA certificate, server certificate, server key).
pub(crate) fn write_tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (ca_cert, issuer) = self_signed_ca("e2e realm tls ca");
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "svid-broker realm");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let paths = (
        dir.join("realm-ca.pem"),
        dir.join("realm.pem"),
        dir.join("realm.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, leaf_key.serialize_pem()).unwrap();
    paths
}

#[test]
fn skopeo_and_ctr_use_an_https_realm() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (tls_ca, cert, key) = write_tls_files(dir.path());
    let td = Arc::new(
        DevTrustDomain::new(
            TrustDomain::parse("example.org").unwrap(),
            [SpiffeId::parse("spiffe://example.org/workload").unwrap()],
        )
        .unwrap(),
    );
    let port = free_port();
    let realm = format!("https://127.0.0.1:{port}/token");
    // The realm listens with TLS on `port`.
    let broker = BrokerSpec::new(Arc::clone(&td))
        .http_port(port)
        .public_url(&format!("https://127.0.0.1:{port}"))
        .extra_config(&format!(
            "[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        ))
        .start();
    // The registry serves HTTPS with a certificate from the same CA, so the clients run with
    // verification on for both hops and trust exactly `SSL_CERT_FILE`.
    let registry = Registry::start_with_tls(
        Some(&TokenAuth {
            realm: &realm,
            service: SERVICE,
            issuer: ISSUER,
            rootcertbundle: &broker.ca_path(),
        }),
        Some((&cert, &key)),
    );
    let creds = |who: &str| {
        let jwt = td
            .issue_jwt_svid(&SpiffeId::parse(who).unwrap(), &[AUDIENCE])
            .unwrap();
        format!("{who}:{}", jwt.token().expose_secret())
    };
    let tls_ca = tls_ca.display().to_string();
    let trust = [("SSL_CERT_FILE", tls_ca.as_str())];
    let work = tempfile::tempdir().unwrap();
    let image = write_oci_image(&work.path().join("image"), "v1", "over tls\n");
    let src = format!("oci:{}:v1", image.display());
    let dest = registry.image_ref("team/app", "v1");
    let builder = creds(BUILDER);
    let out = skopeo_with_env(
        &["copy", "--dest-creds", &builder, &src, &dest],
        work.path(),
        &trust,
    );
    assert!(
        out.success(),
        "push through the https realm failed: {}\n{}",
        out.stderr,
        registry.log()
    );

    // Without the CA, skopeo refuses: TLS is verified in the path.
    let reader = creds(READER);
    let pulled = format!("oci:{}:v1", work.path().join("pulled").display());
    let untrusted = skopeo_with_env(
        &["copy", "--src-creds", &reader, &dest, &pulled],
        work.path(),
        &[
            ("SSL_CERT_FILE", "/dev/null"),
            ("SSL_CERT_DIR", "/nonexistent"),
        ],
    );
    assert!(
        !untrusted.success(),
        "an untrusted certificate was accepted"
    );
    assert!(
        untrusted.stderr.contains("certificate") || untrusted.stderr.contains("x509"),
        "{}",
        untrusted.stderr
    );
    let out = skopeo_with_env(
        &["copy", "--src-creds", &reader, &dest, &pulled],
        work.path(),
        &trust,
    );
    assert!(
        out.success(),
        "pull through the https realm failed: {}",
        out.stderr
    );

    if let Some(containerd) = Containerd::start() {
        // With another CA (the broker's signing CA) named for the host, containerd refuses:
        // TLS is verified in the path.
        containerd.trust_registry(registry.addr, &broker.ca_path());
        let untrusted = containerd.pull_with(registry.addr, "team/app:v1", &reader, &[], true);
        assert!(
            !untrusted.success(),
            "an untrusted certificate was accepted"
        );
        assert!(
            untrusted.stderr.contains("certificate") || untrusted.stderr.contains("x509"),
            "{}",
            untrusted.stderr
        );
        containerd.trust_registry(registry.addr, Path::new(&tls_ca));
        let out = containerd.pull_with(registry.addr, "team/app:v1", &reader, &[], true);
        assert!(
            out.success(),
            "ctr pull through the https realm failed: {}\n{}",
            out.stderr,
            containerd.log()
        );
    }
}
