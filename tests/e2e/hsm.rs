//! The signing CA key and the federation issuer key in a real PKCS#11 token: Debian's
//! SoftHSM2, in a token directory of the test's own (its `SOFTHSM2_CONF`), the keys generated
//! inside the token by `svid-broker keystore init`, the broker run as a process against it,
//! and the real docker-registry and skopeo checking every token it signs.
//!
//! SoftHSM2 is a software token: it runs inside the broker's process and keeps its objects in
//! files encrypted under the user PIN. What these tests prove of the broker holds for a
//! hardware or network HSM too: the broker never reads a private key, writes none, and signs
//! only through `C_Sign`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use svid_broker_dev::DevTrustDomain;
use svid_broker_identity::TrustDomain;
use svid_broker_identity::secret::ExposeSecret as _;

use crate::fixtures::{AUDIENCE, BUILDER, ISSUER, POLICY, SERVICE, id};
use crate::realm::{http, jws_part, pull, push};
use crate::registry::{Registry, TokenAuth, free_port, require};
use crate::support::{Daemon, Output, broker};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "4711-svid-broker-test-pin";
const TOKEN_LABEL: &str = "svid-broker";

/// A SoftHSM2 token directory of this test's own, with one initialized token.
struct SoftHsm {
    dir: tempfile::TempDir,
}

impl SoftHsm {
    /// `None` (after a notice; a failure under `CI=true`) when SoftHSM2 is not installed.
    fn init() -> Option<SoftHsm> {
        if !require("softhsm2-util") {
            return None;
        }
        assert!(
            Path::new(MODULE).exists(),
            "softhsm2-util is installed but {MODULE} is not"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        let hsm = SoftHsm { dir };
        let out = hsm.util(&[
            "--init-token",
            "--free",
            "--label",
            TOKEN_LABEL,
            "--pin",
            PIN,
            "--so-pin",
            "so-pin-for-the-test",
        ]);
        assert!(out.success(), "softhsm2-util --init-token: {out:?}");
        Some(hsm)
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    fn tokens(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    fn util(&self, args: &[&str]) -> Output {
        svid_broker_testkit::process::run(
            Command::new("softhsm2-util")
                .env("SOFTHSM2_CONF", self.conf())
                .args(args),
            None,
        )
    }

    /// `svid-broker ARGS` with this token directory.
    fn broker(&self, args: &[&str]) -> Output {
        svid_broker_testkit::process::run(
            broker().env("SOFTHSM2_CONF", self.conf()).args(args),
            None,
        )
    }

    fn serve(&self, config: &Path) -> Daemon {
        Daemon::start_until_ready(broker().env("SOFTHSM2_CONF", self.conf()).args([
            "serve",
            "--config",
            &config.display().to_string(),
        ]))
    }
}

/// A broker directory: policy, bundle, an owner-only PIN file, and `broker.toml` with
/// `[signing]` (and `extra`) as given.
struct Deployment {
    dir: tempfile::TempDir,
    td: DevTrustDomain,
    http_addr: String,
}

impl Deployment {
    fn new(signing: &str, extra: &str) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let td =
            DevTrustDomain::new(TrustDomain::parse("example.org").unwrap(), [id(BUILDER)]).unwrap();
        std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
        std::fs::write(dir.path().join("bundle.json"), td.bundle_document_json()).unwrap();
        let pin = dir.path().join("hsm.pin");
        std::fs::write(&pin, format!("{PIN}\n")).unwrap();
        std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
        let http_addr = format!("127.0.0.1:{}", free_port());
        std::fs::write(
            dir.path().join("broker.toml"),
            format!(
                r#"[server]
http_addr = "{http_addr}"
public_url = "http://{http_addr}"
[identity]
audience = "{AUDIENCE}"
bundle_files = [{{ trust_domain = "example.org", path = "bundle.json" }}]
[policy]
file = "policy.toml"
[signing]
{signing}
[log]
audit = "audit.log"
{extra}
"#
            ),
        )
        .unwrap();
        Deployment { dir, td, http_addr }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("broker.toml")
    }

    fn config_arg(&self) -> String {
        self.config().display().to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn jwt(&self) -> String {
        self.td
            .issue_jwt_svid_at(
                &id(BUILDER),
                &[AUDIENCE],
                SystemTime::now(),
                Duration::from_secs(300),
            )
            .unwrap()
            .token()
            .expose_secret()
            .to_owned()
    }

    /// A registry token for pushing and pulling `team/app`, straight from the realm.
    fn realm_token(&self) -> String {
        let basic = format!(
            "Basic {}",
            STANDARD.encode(format!("{BUILDER}:{}", self.jwt()))
        );
        let path = format!("/token?service={SERVICE}&scope=repository%3Ateam%2Fapp%3Apull%2Cpush");
        let (status, _, body) = http(self.http_addr.parse().unwrap(), &path, Some(&basic));
        assert_eq!(status, 200, "realm refused: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        answer["token"].as_str().unwrap().to_owned()
    }
}

fn signing_section(pin_line: &str) -> String {
    format!(
        "ca_cert_file = \"ca.pem\"\nkey = \"pkcs11:token={TOKEN_LABEL};object=signing-ca\"\n\
         pkcs11_module = \"{MODULE}\"\n{pin_line}"
    )
}

/// Every file under `dir` but the token directory, and what it holds.
fn files_under(dir: &Path, skip: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.starts_with(skip) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// The CA key generated inside SoftHSM2 signs the signing leaves; the real registry verifies
/// every token up to that CA; a restarted broker issues a new leaf from the same token and the
/// registry (not restarted) takes it; no private key is on disk, the PIN in no output.
#[test]
fn a_ca_key_generated_in_softhsm_signs_leaves_the_real_registry_verifies() {
    let Some(hsm) = SoftHsm::init() else { return };
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let deployment = Deployment::new(&signing_section("pin_file = \"hsm.pin\""), "");
    let config = deployment.config_arg();

    // Generated in the token, then kept: init is idempotent and never replaces a key.
    let first = hsm.broker(&["keystore", "init", "--config", &config]);
    assert!(first.success(), "{first:?}");
    assert!(
        first.stdout.contains(
            "generated pkcs11:token=svid-broker;object=signing-ca (the CA key pair and its HMAC key)"
        ),
        "{first:?}"
    );
    assert!(first.stdout.contains("written "), "{first:?}");
    let again = hsm.broker(&["keystore", "init", "--config", &config]);
    assert!(again.success(), "{again:?}");
    assert!(
        again
            .stdout
            .contains("kept pkcs11:token=svid-broker;object=signing-ca")
            && again.stdout.contains("(it is the key's certificate)"),
        "{again:?}"
    );

    // SoftHSM2's own tool, not ours, says what the token holds: the private key and the HMAC
    // key, with the access flags the broker asked for at generation.
    let listing = hsm.util(&["--show-slots"]);
    assert!(listing.success(), "{listing:?}");
    if require("pkcs11-tool") {
        let objects = svid_broker_testkit::process::run(
            Command::new("pkcs11-tool")
                .env("SOFTHSM2_CONF", hsm.conf())
                .args([
                    "--module",
                    MODULE,
                    "--token-label",
                    TOKEN_LABEL,
                    "--login",
                    "--pin",
                    PIN,
                    "--list-objects",
                ]),
            None,
        );
        assert!(objects.success(), "{objects:?}");
        let private = objects
            .stdout
            .split("\n\n")
            .find(|o| o.contains("Private Key Object"))
            .unwrap_or_else(|| panic!("no private key listed: {}", objects.stdout));
        for flag in [
            "sensitive",
            "always sensitive",
            "never extractable",
            "local",
        ] {
            assert!(
                private.contains(flag),
                "private key is not {flag}: {private}"
            );
        }
        assert!(
            objects.stdout.contains("Secret Key Object"),
            "{}",
            objects.stdout
        );
    }

    let ca = deployment.path("ca.pem");
    let mut daemon = hsm.serve(&deployment.config());
    let registry = Registry::start(Some(&TokenAuth {
        realm: &format!("http://{}/token", deployment.http_addr),
        service: SERVICE,
        issuer: ISSUER,
        rootcertbundle: &ca,
    }));
    let work = tempfile::tempdir().unwrap();
    let creds = format!("{BUILDER}:{}", deployment.jwt());
    let pushed = push(&registry, work.path(), &creds, "team/app");
    assert!(
        pushed.success(),
        "push: {}\n{}",
        pushed.stderr,
        registry.log()
    );
    let leaf_before = jws_part(&deployment.realm_token(), 0)["x5c"][0].clone();
    daemon.signal_and_wait("TERM");

    // A new process: a new signing leaf, from the same CA key in the same token.
    let _daemon = hsm.serve(&deployment.config());
    let leaf_after = jws_part(&deployment.realm_token(), 0)["x5c"][0].clone();
    assert_ne!(
        leaf_before, leaf_after,
        "a restarted broker signs with a new leaf"
    );
    let creds = format!("{BUILDER}:{}", deployment.jwt());
    let pulled = pull(
        &registry,
        work.path(),
        &["--src-creds", &creds],
        "team/app",
        "pulled",
    );
    assert!(
        pulled.success(),
        "pull: {}\n{}",
        pulled.stderr,
        registry.log()
    );

    // Nothing the broker reads or writes holds a private key or the PIN but the PIN file.
    for (path, bytes) in files_under(deployment.dir.path(), &hsm.tokens()) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("PRIVATE KEY"),
            "{} holds a private key",
            path.display()
        );
        if path != deployment.path("hsm.pin") {
            assert!(!text.contains(PIN), "{} holds the PIN", path.display());
        }
    }
    for out in [&first, &again] {
        assert!(!out.stdout.contains(PIN) && !out.stderr.contains(PIN));
    }
    // The broker's parsed configuration, dumped whole: a URI, a module path and where the PIN
    // is, never the PIN or a key.
    let parsed = svid_broker_server::BrokerConfig::load(&deployment.config()).unwrap();
    let dump = format!("{parsed:#?}");
    assert!(
        dump.contains("signing-ca") && dump.contains("hsm.pin"),
        "{dump}"
    );
    assert!(
        !dump.contains(PIN) && !dump.contains("PRIVATE KEY"),
        "{dump}"
    );
}

/// A wrong PIN stops `serve` before it listens, naming the token and `C_Login`, and the PIN
/// is in no message; a PIN file others may read is refused before the token is touched.
#[test]
fn a_wrong_or_exposed_pin_fails_the_start_by_name() {
    let Some(hsm) = SoftHsm::init() else { return };
    let deployment = Deployment::new(&signing_section("pin_env = \"SVID_BROKER_TEST_PIN\""), "");
    let config = deployment.config_arg();
    let out = svid_broker_testkit::process::run(
        broker()
            .env("SOFTHSM2_CONF", hsm.conf())
            .env("SVID_BROKER_TEST_PIN", "not-the-pin")
            .args(["keystore", "init", "--config", &config]),
        None,
    );
    assert_eq!(out.code(), Some(2), "{out:?}");
    let line = out.one_stderr_line();
    assert!(
        line.contains("pkcs11:token=svid-broker: logging in (C_Login) failed")
            && line.contains("PIN is incorrect"),
        "{line}"
    );
    assert!(!line.contains("not-the-pin"), "{line}");

    let unset = hsm.broker(&["serve", "--config", &config]);
    assert_eq!(unset.code(), Some(2), "{unset:?}");
    assert!(
        unset
            .one_stderr_line()
            .contains("the pkcs11 pin environment variable SVID_BROKER_TEST_PIN is not set"),
        "{unset:?}"
    );

    let exposed = Deployment::new(&signing_section("pin_file = \"hsm.pin\""), "");
    std::fs::set_permissions(
        exposed.path("hsm.pin"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = hsm.broker(&["serve", "--config", &exposed.config_arg()]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    let line = out.one_stderr_line();
    assert!(
        line.contains("cannot start the broker") && line.contains("pkcs11 pin file"),
        "{line}"
    );
    assert!(!line.contains(PIN), "{line}");
}

/// The federation issuer's RSA key generated in the token: `keystore init` prints its `kid`
/// and the issuer's JWKS publishes exactly that key.
#[test]
fn a_federation_key_in_softhsm_is_published_under_its_thumbprint() {
    let Some(hsm) = SoftHsm::init() else { return };
    let deployment = Deployment::new(
        "generate = true",
        &format!("[federation]\nkeys = [\"pkcs11:token={TOKEN_LABEL};object=federation-a\"]"),
    );
    // The PKCS#11 settings live in [signing] whatever key uses them.
    let text = std::fs::read_to_string(deployment.config())
        .unwrap()
        .replace(
            "generate = true",
            &format!("generate = true\npkcs11_module = \"{MODULE}\"\npin_file = \"hsm.pin\""),
        );
    std::fs::write(deployment.config(), text).unwrap();
    let init = hsm.broker(&["keystore", "init", "--config", &deployment.config_arg()]);
    assert!(init.success(), "{init:?}");
    assert!(
        init.stdout.contains(
            "generated pkcs11:token=svid-broker;object=federation-a (an RSA-2048 federation key)"
        ),
        "{init:?}"
    );
    let kid = init
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("federation kid "))
        .unwrap()
        .to_owned();
    let _daemon = hsm.serve(&deployment.config());
    let (status, _, body) = http(
        deployment.http_addr.parse().unwrap(),
        "/federation/jwks.json",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let jwks: serde_json::Value = serde_json::from_str(&body).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    assert_eq!(keys[0]["kid"], kid.as_str(), "{jwks}");
    assert_eq!(keys[0]["kty"], "RSA", "{jwks}");
}

/// The same seam with the CA key and its HMAC key in AWS KMS, through the fake KMS of
/// `svid_broker_dev::fake::aws` (tested against a fake of its API here; not against the real
/// service): `keystore init` has KMS self-sign the CA certificate, `serve` has it sign the
/// leaf, the real registry takes the tokens, and the fake's audit shows every call signed by
/// the broker's IAM user and verified.
#[test]
fn a_ca_key_in_aws_kms_signs_leaves_the_real_registry_verifies() {
    use svid_broker_dev::fake::aws::{FakeAws, KmsKeySpec, Statement};
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let fake = FakeAws::start().unwrap();
    let ca_key = fake.create_kms_key(KmsKeySpec::EccNistP256).unwrap();
    let mac_key = fake.create_kms_key(KmsKeySpec::Hmac256).unwrap();
    fake.create_kms_alias("alias/svid-broker-ca", &ca_key.key_id)
        .unwrap();
    fake.create_kms_alias("alias/svid-broker-mac", &mac_key.key_id)
        .unwrap();
    let user = "arn:aws:iam::111122223333:user/svid-broker";
    let access = fake
        .add_iam_user(
            user,
            &[
                Statement::allow(&["kms:Sign", "kms:GetPublicKey"], &[ca_key.arn.as_str()]),
                Statement::allow(
                    &["kms:GenerateMac", "kms:DescribeKey"],
                    &[mac_key.arn.as_str()],
                ),
            ],
        )
        .unwrap();
    let deployment = Deployment::new(
        &format!(
            "ca_cert_file = \"ca.pem\"\nkey = \"awskms:alias/svid-broker-ca\"\n\
             mac_key = \"awskms:alias/svid-broker-mac\"\naws_region = \"{}\"\n\
             aws_kms_endpoint = \"{}\"",
            fake.region(),
            fake.kms_url()
        ),
        "",
    );
    let with_aws = |command: &mut Command| {
        command
            .env("AWS_ACCESS_KEY_ID", &access.access_key_id)
            .env(
                "AWS_SECRET_ACCESS_KEY",
                access.secret_access_key.expose_secret(),
            )
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE");
    };
    let mut init = broker();
    with_aws(&mut init);
    init.args(["keystore", "init", "--config", &deployment.config_arg()]);
    let init = svid_broker_testkit::process::run(&mut init, None);
    assert!(init.success(), "{init:?}");
    assert!(init.stdout.contains("written "), "{init:?}");

    let mut serve = broker();
    with_aws(&mut serve);
    serve.args(["serve", "--config", &deployment.config_arg()]);
    let _daemon = Daemon::start_until_ready(&mut serve);
    let ca = deployment.path("ca.pem");
    let registry = Registry::start(Some(&TokenAuth {
        realm: &format!("http://{}/token", deployment.http_addr),
        service: SERVICE,
        issuer: ISSUER,
        rootcertbundle: &ca,
    }));
    let work = tempfile::tempdir().unwrap();
    let creds = format!("{BUILDER}:{}", deployment.jwt());
    let pushed = push(&registry, work.path(), &creds, "team/app");
    assert!(
        pushed.success(),
        "push: {}\n{}",
        pushed.stderr,
        registry.log()
    );

    let calls = fake.kms_audit();
    let signs: Vec<_> = calls.iter().filter(|c| c.operation == "Sign").collect();
    // One self-signature at init, one leaf at start; every one by the user, verified.
    assert!(signs.len() >= 2, "{calls:?}");
    for call in &calls {
        assert_eq!(call.outcome, "ok", "{call:?}");
        assert_eq!(call.principal.as_deref(), Some(user), "{call:?}");
    }
    assert!(
        calls.iter().any(|c| c.operation == "GenerateMac"),
        "{calls:?}"
    );
    for (path, bytes) in files_under(deployment.dir.path(), Path::new("/nonexistent")) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("PRIVATE KEY"), "{}", path.display());
        assert!(
            !text.contains(access.secret_access_key.expose_secret()),
            "{} holds the AWS secret",
            path.display()
        );
    }
}
