//! The broker's token realm against the real registry and client: Debian's `docker-registry`
//! (distribution 2.8.2) trusts the broker's signing CA through `rootcertbundle`, and `skopeo`
//! (1.9.3) authenticates with JWT-SVIDs from a dev trust domain, or with a broker refresh token
//! in an auth file. The broker runs in-process so the test can move its clock and rotate its
//! signing leaf.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use svid_broker_dev::DevTrustDomain;
use svid_broker_identity::clock::Clock;
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_identity::{SpiffeId, TrustDomain};
use svid_broker_server::ServerHandle;

use crate::fixtures::{
    ADMIN, AUDIENCE, BUILDER, BrokerFixture, BrokerSpec, ISSUER, POLICY, READER, SERVICE, STRANGER,
};
use crate::registry::{Registry, TokenAuth, require, skopeo, write_oci_image};

/// The system clock shifted by an adjustable number of seconds.
#[derive(Debug, Default)]
struct ShiftedClock(AtomicI64);

impl ShiftedClock {
    fn set_offset(&self, secs: i64) {
        self.0.store(secs, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> SystemTime {
        let off = self.0.load(Ordering::SeqCst);
        let now = SystemTime::now();
        if off >= 0 {
            now + Duration::from_secs(off.unsigned_abs())
        } else {
            now - Duration::from_secs(off.unsigned_abs())
        }
    }
}

/// A running broker (on its own runtime) and the dev trust domain whose JWT-SVIDs it trusts.
pub(crate) struct Broker {
    td: Arc<DevTrustDomain>,
    clock: Arc<ShiftedClock>,
    fixture: BrokerFixture,
}

impl Broker {
    pub(crate) fn start() -> Broker {
        let td = Arc::new(
            DevTrustDomain::new(
                TrustDomain::parse("example.org").unwrap(),
                [SpiffeId::parse("spiffe://example.org/workload").unwrap()],
            )
            .unwrap(),
        );
        let clock = Arc::new(ShiftedClock::default());
        let fixture = BrokerSpec::new(Arc::clone(&td))
            .clock(clock.clone())
            .start();
        Broker { td, clock, fixture }
    }

    pub(crate) fn handle(&self) -> &ServerHandle {
        self.fixture.handle()
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.fixture.http_addr()
    }

    pub(crate) fn realm(&self) -> String {
        self.fixture.realm_url()
    }

    pub(crate) fn ca_path(&self) -> std::path::PathBuf {
        self.fixture.ca_path()
    }

    pub(crate) fn audit(&self) -> String {
        self.fixture.audit()
    }

    /// A JWT-SVID for `who`, valid at the broker's current (possibly shifted) time.
    pub(crate) fn jwt(&self, who: &str, audience: &str) -> String {
        self.td
            .issue_jwt_svid_at(
                &SpiffeId::parse(who).unwrap(),
                &[audience],
                self.clock.now(),
                Duration::from_secs(300),
            )
            .unwrap()
            .token()
            .expose_secret()
            .to_owned()
    }

    /// `ID:JWT-SVID` for skopeo's `--creds`.
    pub(crate) fn creds(&self, who: &str) -> String {
        format!("{who}:{}", self.jwt(who, AUDIENCE))
    }
}

/// One HTTP/1.1 request over a fresh loopback connection: (status, headers, body).
pub(crate) fn http(
    addr: SocketAddr,
    path: &str,
    authorization: Option<&str>,
) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_owned(), body.to_owned())
}

pub(crate) fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Asks the realm for a token (GET, Basic JWT-SVID) and returns the parsed response.
pub(crate) fn realm_token(
    broker: &Broker,
    who: &str,
    scopes: &[&str],
    extra: &str,
) -> serde_json::Value {
    let mut path = format!("/token?service={SERVICE}&account={}{extra}", enc(who));
    for s in scopes {
        path.push_str(&format!("&scope={}", enc(s)));
    }
    let basic = format!("Basic {}", STANDARD.encode(broker.creds(who)));
    let (status, _, body) = http(broker.addr(), &path, Some(&basic));
    assert_eq!(status, 200, "realm refused: {body}");
    serde_json::from_str(&body).unwrap()
}

pub(crate) fn jws_part(token: &str, index: usize) -> serde_json::Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

pub(crate) fn start_registry(broker: &Broker) -> Registry {
    let realm = broker.realm();
    let ca = broker.ca_path();
    Registry::start(Some(&TokenAuth {
        realm: &realm,
        service: SERVICE,
        issuer: ISSUER,
        rootcertbundle: &ca,
    }))
}

pub(crate) fn push(
    registry: &Registry,
    work: &Path,
    creds: &str,
    repo: &str,
) -> crate::registry::SkopeoOutput {
    let image = work.join(format!("image-{}", repo.replace('/', "-")));
    write_oci_image(&image, "v1", "hello from svid-broker\n");
    skopeo(
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds,
            &format!("oci:{}:v1", image.display()),
            &registry.image_ref(repo, "v1"),
        ],
        work,
    )
}

pub(crate) fn pull(
    registry: &Registry,
    work: &Path,
    args: &[&str],
    repo: &str,
    into: &str,
) -> crate::registry::SkopeoOutput {
    let dest = format!("oci:{}:v1", work.join(into).display());
    let src = registry.image_ref(repo, "v1");
    let mut all = vec!["copy", "--src-tls-verify=false"];
    all.extend_from_slice(args);
    all.push(&src);
    all.push(&dest);
    skopeo(&all, work)
}

/// Push and pull with JWT-SVIDs as Basic credentials, pull with a refresh token in an auth
/// file, and keep pulling across a signing-leaf rotation with no registry restart.
#[test]
fn skopeo_pushes_and_pulls_with_spiffe_credentials() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let broker = Broker::start();
    let registry = start_registry(&broker);
    let work = tempfile::tempdir().unwrap();

    let out = push(&registry, work.path(), &broker.creds(BUILDER), "team/app");
    assert!(
        out.success(),
        "push failed: {}\n{}",
        out.stderr,
        registry.log()
    );

    let creds = broker.creds(READER);
    let out = pull(
        &registry,
        work.path(),
        &["--src-creds", &creds],
        "team/app",
        "pulled-1",
    );
    assert!(
        out.success(),
        "pull failed: {}\n{}",
        out.stderr,
        registry.log()
    );

    // Auth file with a broker refresh token: containers/image POSTs a refresh_token grant
    // with a chunked body.
    let offline = realm_token(&broker, READER, &[], "&offline_token=true&client_id=e2e");
    let refresh = offline["refresh_token"].as_str().unwrap();
    assert!(refresh.starts_with("sbr2."));
    let authfile = work.path().join("auth.json");
    let auths = serde_json::json!({
        "auths": { registry.addr.to_string(): {
            "auth": STANDARD.encode("<token>:"),
            "identitytoken": refresh,
        }}
    });
    std::fs::write(&authfile, auths.to_string()).unwrap();
    let authfile = authfile.display().to_string();
    let out = pull(
        &registry,
        work.path(),
        &["--authfile", &authfile],
        "team/app",
        "pulled-2",
    );
    assert!(
        out.success(),
        "pull with refresh token failed: {}\n{}",
        out.stderr,
        registry.log()
    );
    let audit = broker.audit();
    assert!(
        audit.contains("\"actor\":\"refresh-token client_id=containers/image\""),
        "no refresh-token grant in the audit log:\n{audit}"
    );

    // Rotate the signing leaf: new tokens carry a new x5c leaf, and the registry (never
    // restarted) still accepts them through the CA.
    let before = realm_token(&broker, READER, &["repository:team/app:pull"], "");
    broker
        .handle()
        .rotate_signing_key(SystemTime::now())
        .unwrap();
    let after = realm_token(&broker, READER, &["repository:team/app:pull"], "");
    let leaf = |v: &serde_json::Value| jws_part(v["token"].as_str().unwrap(), 0)["x5c"][0].clone();
    assert_ne!(
        leaf(&before),
        leaf(&after),
        "rotation did not change the signing leaf"
    );
    let creds = broker.creds(READER);
    let out = pull(
        &registry,
        work.path(),
        &["--src-creds", &creds],
        "team/app",
        "pulled-3",
    );
    assert!(
        out.success(),
        "pull after rotation failed: {}\n{}",
        out.stderr,
        registry.log()
    );
    let (status, _, body) = http(
        registry.addr,
        "/v2/team/app/tags/list",
        Some(&format!("Bearer {}", after["token"].as_str().unwrap())),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"v1\""), "{body}");
}

/// What policy refuses, the registry refuses: push to a pull-only repository, an identity no
/// rule names, `_catalog` without a catalog grant, an expired token, a wrong audience.
#[test]
fn the_registry_enforces_what_the_broker_grants() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let broker = Broker::start();
    let registry = start_registry(&broker);
    let work = tempfile::tempdir().unwrap();
    let out = push(&registry, work.path(), &broker.creds(BUILDER), "team/app");
    assert!(
        out.success(),
        "push failed: {}\n{}",
        out.stderr,
        registry.log()
    );

    // Pull-only subject pushing: the realm grants pull only, the registry refuses the push.
    let out = push(&registry, work.path(), &broker.creds(READER), "team/other");
    assert!(!out.success(), "a pull-only identity pushed");
    assert!(
        out.stderr.contains("denied") || out.stderr.contains("unauthorized"),
        "{}",
        out.stderr
    );
    // An identity no rule allows can neither push nor pull.
    let out = push(&registry, work.path(), &broker.creds(STRANGER), "team/app");
    assert!(!out.success(), "an unknown identity pushed");
    let creds = broker.creds(STRANGER);
    let out = pull(
        &registry,
        work.path(),
        &["--src-creds", &creds],
        "team/app",
        "stranger",
    );
    assert!(!out.success(), "an unknown identity pulled");
    let audit = broker.audit();
    assert!(
        audit.contains(&format!("\"subject\":\"{STRANGER}\""))
            && audit.contains("\"granted\":\"\""),
        "{audit}"
    );

    // _catalog needs registry:catalog:*: the builder's token for it grants nothing.
    let catalog = "registry:catalog:*";
    let tok = realm_token(&broker, BUILDER, &[catalog], "");
    assert_eq!(
        jws_part(tok["token"].as_str().unwrap(), 1)["access"],
        serde_json::json!([])
    );
    let (status, head, _) = http(
        registry.addr,
        "/v2/_catalog",
        Some(&format!("Bearer {}", tok["token"].as_str().unwrap())),
    );
    assert_eq!(status, 401, "{head}");
    assert!(head.contains("insufficient_scope"), "{head}");
    let tok = realm_token(&broker, ADMIN, &[catalog], "");
    let (status, _, body) = http(
        registry.addr,
        "/v2/_catalog",
        Some(&format!("Bearer {}", tok["token"].as_str().unwrap())),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("team/app"), "{body}");

    // A token minted with the broker's clock ten minutes behind is expired for the registry
    // (exp five minutes ago, beyond its 60 s leeway).
    broker.clock.set_offset(-600);
    let old = realm_token(&broker, READER, &["repository:team/app:pull"], "");
    broker.clock.set_offset(0);
    let (status, head, _) = http(
        registry.addr,
        "/v2/team/app/tags/list",
        Some(&format!("Bearer {}", old["token"].as_str().unwrap())),
    );
    assert_eq!(status, 401, "an expired token was accepted");
    assert!(head.contains("invalid_token"), "{head}");
    let fresh = realm_token(&broker, READER, &["repository:team/app:pull"], "");
    let (status, _, body) = http(
        registry.addr,
        "/v2/team/app/tags/list",
        Some(&format!("Bearer {}", fresh["token"].as_str().unwrap())),
    );
    assert_eq!(status, 200, "{body}");

    // A JWT-SVID for another audience is refused by the realm itself.
    let wrong = broker.jwt(READER, "not-the-broker");
    let basic = format!("Basic {}", STANDARD.encode(format!("{READER}:{wrong}")));
    let (status, head, _) = http(
        broker.addr(),
        &format!("/token?service={SERVICE}&scope=repository:team/app:pull"),
        Some(&basic),
    );
    assert_eq!(status, 401);
    assert!(
        head.to_lowercase()
            .contains("www-authenticate: basic realm=\"svid-broker\""),
        "{head}"
    );
    let creds = format!("{READER}:{wrong}");
    let out = pull(
        &registry,
        work.path(),
        &["--src-creds", &creds],
        "team/app",
        "wrong-aud",
    );
    assert!(!out.success(), "a wrong-audience JWT-SVID pulled");
    let (_, _, metrics) = http(broker.addr(), "/metrics", None);
    let denied: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "svid_broker_denied_total{endpoint=\"realm_get\",code=\"unauthenticated\"} ",
            )
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(denied >= 2, "{metrics}");
}

/// A self-signed P-256 CA named `common_name` that may sign leaves only: its certificate, and
/// its parameters and key as an rcgen issuer for signing them.
pub(crate) fn self_signed_ca(
    common_name: &str,
) -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let cert = params.self_signed(&key).unwrap();
    (cert, Issuer::new(params, key))
}

/// A signing CA on disk (P-256, self-signed), as an operator would provide it.
pub(crate) fn write_ca_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, issuer) = self_signed_ca("e2e broker signing ca");
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, issuer.key().serialize_pem()).unwrap();
    (cert_path, key_path)
}

pub(crate) fn send_signal(daemon: &crate::support::Daemon, signal: &str) {
    let pid = daemon.child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-s", signal, &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -s {signal} {pid} failed");
}

/// The operator path: `svid-broker serve --config` with a CA from files,
/// `svid-broker registry-config` for the registry's `auth.token` block, a real push, then a
/// policy change picked up on SIGHUP and a clean exit on SIGTERM.
#[test]
fn serve_and_registry_config_from_the_command_line() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_ca_files(dir.path());
    let td = DevTrustDomain::new(
        TrustDomain::parse("example.org").unwrap(),
        [SpiffeId::parse("spiffe://example.org/workload").unwrap()],
    )
    .unwrap();
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    std::fs::write(dir.path().join("bundle.json"), td.bundle_document_json()).unwrap();
    let port = crate::registry::free_port();
    let config_path = dir.path().join("broker.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[server]
http_addr = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[identity]
audience = "svid-broker"
bundle_files = [{{ trust_domain = "example.org", path = "bundle.json" }}]
[policy]
file = "policy.toml"
poll_seconds = 3600
[signing]
ca_cert_file = "{}"
ca_key_file = "{}"
[log]
audit = "audit.log"
"#,
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let config = config_path.display().to_string();

    // registry-config: the auth.token block and the root bundle, from the config alone.
    let out_dir = dir.path().join("registry");
    let out_dir_arg = out_dir.display().to_string();
    let rc = crate::support::run(
        &[
            "registry-config",
            "--config",
            &config,
            "--registry",
            "local",
            "--out-dir",
            &out_dir_arg,
        ],
        None,
    );
    assert_eq!(rc.code(), Some(0), "{}", rc.stderr);
    let bundle = std::fs::canonicalize(out_dir.join("local-rootcertbundle.pem")).unwrap();
    assert_eq!(
        rc.stdout,
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{port}/token\n    service: registry.local\n    issuer: svid-broker\n    rootcertbundle: {}\n",
            bundle.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(&bundle).unwrap().trim(),
        std::fs::read_to_string(&cert).unwrap().trim()
    );
    let unknown = crate::support::run(
        &["registry-config", "--config", &config, "--registry", "nope"],
        None,
    );
    assert_eq!(unknown.code(), Some(2));

    let mut daemon = crate::support::daemon(&["serve", "--config", &config]);
    let addr_line = daemon.next_line(Duration::from_secs(10)).unwrap();
    assert_eq!(addr_line, format!("http=127.0.0.1:{port}"));
    let broker_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let realm = format!("http://127.0.0.1:{port}/token");
    let registry = Registry::start(Some(&TokenAuth {
        realm: &realm,
        service: SERVICE,
        issuer: ISSUER,
        rootcertbundle: &bundle,
    }));
    let jwt = |who: &str| {
        td.issue_jwt_svid(&SpiffeId::parse(who).unwrap(), &[AUDIENCE])
            .unwrap()
            .token()
            .expose_secret()
            .to_owned()
    };
    let work = tempfile::tempdir().unwrap();
    let image = write_oci_image(&work.path().join("image"), "v1", "cli\n");
    let creds = format!("{BUILDER}:{}", jwt(BUILDER));
    let out = skopeo(
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &format!("oci:{}:v1", image.display()),
            &registry.image_ref("team/app", "v1"),
        ],
        work.path(),
    );
    assert!(
        out.success(),
        "push failed: {}\n{}",
        out.stderr,
        registry.log()
    );

    // Take push away from the builder; SIGHUP applies it without a restart.
    let granted_push = || {
        let basic = format!(
            "Basic {}",
            STANDARD.encode(format!("{BUILDER}:{}", jwt(BUILDER)))
        );
        let (status, _, body) = http(
            broker_addr,
            &format!("/token?service={SERVICE}&scope=repository:team/app:push"),
            Some(&basic),
        );
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        jws_part(v["token"].as_str().unwrap(), 1)["access"] != serde_json::json!([])
    };
    assert!(granted_push());
    let pull_only = POLICY.replace("actions = [\"pull\", \"push\"]", "actions = [\"pull\"]");
    std::fs::write(dir.path().join("policy.toml"), pull_only).unwrap();
    send_signal(&daemon, "HUP");
    let mut reloaded = false;
    for _ in 0..100 {
        if !granted_push() {
            reloaded = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(reloaded, "SIGHUP did not reload the policy");

    let status = daemon.signal_and_wait("TERM");
    assert!(status.success(), "serve exited with {status}");
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(audit.lines().count() >= 3, "{audit}");
    assert!(!audit.contains(&jwt(BUILDER)[..40]));
}
