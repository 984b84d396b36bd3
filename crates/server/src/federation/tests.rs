use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use svid_broker_identity::secret::ExposeSecret as _;

use super::*;
use crate::config::FederationConfig;

fn write_key(dir: &Path, name: &str, key: &FederationKey, mode: u32) -> PathBuf {
    let path = dir.join(name);
    let pem = key.to_pkcs8_pem().unwrap();
    std::fs::write(&path, pem.expose_secret()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

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

fn minimal_config() -> BrokerConfig {
    BrokerConfig::from_toml_str(MINIMAL, Path::new("/cfg")).unwrap()
}

fn config_with(keys: FederationKeySource) -> BrokerConfig {
    let mut config = minimal_config();
    config.public_url = "https://broker.example.org".to_owned();
    config.federation = Some(FederationConfig {
        keys,
        token_ttl: Duration::from_secs(300),
    });
    config
}

#[test]
fn key_files_load_in_order_the_first_signing_and_all_published() {
    let dir = tempfile::tempdir().unwrap();
    let (new, old) = (
        FederationKey::generate().unwrap(),
        FederationKey::generate().unwrap(),
    );
    let paths = vec![
        write_key(dir.path(), "new.pem", &new, 0o600),
        write_key(dir.path(), "old.pem", &old, 0o400),
    ];
    let issuer = load_federation(&config_with(FederationKeySource::Files(paths)))
        .unwrap()
        .unwrap();
    assert_eq!(issuer.issuer(), "https://broker.example.org/federation");
    assert_eq!(issuer.signing_kid(), new.kid());
    assert_eq!(
        issuer.published_kids(),
        vec![new.kid().to_owned(), old.kid().to_owned()]
    );
}

#[test]
fn a_key_file_others_can_read_is_refused_with_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_key(
        dir.path(),
        "k.pem",
        &FederationKey::generate().unwrap(),
        0o640,
    );
    let err = load_federation(&config_with(FederationKeySource::Files(vec![path]))).unwrap_err();
    assert!(
        matches!(err, FederationSetupError::KeyFileMode { mode: 0o640, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn a_file_without_an_rsa_key_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.pem");
    std::fs::write(
        &path,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err =
        load_federation(&config_with(FederationKeySource::Files(vec![path.clone()]))).unwrap_err();
    assert!(matches!(err, FederationSetupError::Key { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let missing = dir.path().join("missing.pem");
    let err = load_federation(&config_with(FederationKeySource::Files(vec![missing]))).unwrap_err();
    assert!(
        matches!(err, FederationSetupError::KeyFile { .. }),
        "{err:?}"
    );
}

#[test]
fn a_plain_http_public_url_off_loopback_cannot_be_an_issuer() {
    let mut config = config_with(FederationKeySource::Generate);
    config.public_url = "http://broker.example.org".to_owned();
    let err = load_federation(&config).unwrap_err();
    assert!(
        matches!(err, FederationSetupError::Issuer { .. }),
        "{err:?}"
    );
    config.public_url = "http://127.0.0.1:8080".to_owned();
    assert!(load_federation(&config).unwrap().is_some());
}

#[test]
fn no_federation_section_means_no_issuer() {
    let config = minimal_config();
    assert!(load_federation(&config).unwrap().is_none());
}
