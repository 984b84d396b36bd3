//! Embed the exchange server in another program: start `BrokerServer` in-process with a
//! development trust domain, get registry tokens from its Docker/OCI token realm with a JWT-SVID
//! over plain HTTP (as `docker` or `skopeo` would, with the SVID as the bearer), and shut it down.
//!
//! ```text
//! cargo run -p svid-broker-examples --example embed_server
//! ```

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use svid_broker_dev::DevTrustDomain;
use svid_broker_identity::clock::SystemClock;
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_identity::{SpiffeId, TrustDomain};
use svid_broker_server::{BrokerConfig, BrokerServer};

type Error = Box<dyn std::error::Error>;

const POLICY: &str = r#"
[[registries]]
name = "local"
service = "registry.local"
issuer = "svid-broker"
profile = "distribution-2"
hosts = ["127.0.0.1:5000"]

[[rules]]
id = "ci-pulls-team-images"
subject = "spiffe://example.org/ns/ci/sa/*"
registry = "local"
repositories = ["team/*"]
actions = ["pull"]
"#;

// Port 0: the system picks free ports. `public_url` is what registries are told (the realm and
// the token issuer's discovery URL); this example never hands it out.
const CONFIG: &str = r#"
[server]
http_addr = "127.0.0.1:0"
public_url = "http://127.0.0.1"
shutdown_grace_seconds = 2

[identity]
audience = "svid-broker"
bundle_files = [{ trust_domain = "example.org", path = "example.org.bundle.json" }]

[policy]
file = "policy.toml"

[signing]
generate = true

[log]
audit = "audit.log"
"#;

fn main() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let workload = SpiffeId::parse("spiffe://example.org/ns/ci/sa/builder")?;
    let dev = DevTrustDomain::new(TrustDomain::parse("example.org")?, [workload.clone()])?;
    std::fs::write(
        dir.path().join("example.org.bundle.json"),
        dev.bundle_document_json(),
    )?;
    std::fs::write(dir.path().join("policy.toml"), POLICY)?;
    // Relative paths in the config resolve against the directory given here.
    let config = BrokerConfig::from_toml_str(CONFIG, dir.path())?;

    // The host program owns the runtime; the broker runs on its worker threads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let handle = runtime.block_on(BrokerServer::start(config, Arc::new(SystemClock)))?;
    let addr = handle.http_addr();
    println!("1. broker started in-process; token realm at http://{addr}/token");

    let outcome = use_the_realm(addr, &dev, &workload, dir.path());

    runtime.block_on(handle.shutdown());
    println!("5. broker shut down");
    outcome
}

fn use_the_realm(
    addr: SocketAddr,
    dev: &DevTrustDomain,
    workload: &SpiffeId,
    dir: &Path,
) -> Result<(), Error> {
    let (status, _) = get(addr, "/readyz", None)?;
    if status != 200 {
        return Err(format!("/readyz answered {status}").into());
    }
    println!("2. /readyz answers 200");

    // What a workload gets from its SPIFFE Workload API: a JWT-SVID for the broker's audience.
    let svid = dev.issue_jwt_svid(workload, &["svid-broker"])?;
    let target = "/token?service=registry.local&scope=repository:team/app:pull,push";
    let (status, body) = get(addr, target, Some(svid.token().expose_secret()))?;
    if status != 200 {
        return Err(format!("the realm answered {status}: {body}").into());
    }
    let response: Value = serde_json::from_str(&body)?;
    let token = response["token"]
        .as_str()
        .ok_or("no token in the response")?;
    let claims = claims_of(token)?;
    println!(
        "3. {workload} asked for team/app pull,push with its JWT-SVID: 200, token valid {} s",
        response["expires_in"]
    );
    println!(
        "     sub {}  aud {}  granted {} (policy allows pull only)",
        claims["sub"], claims["aud"], claims["access"]
    );
    let granted = claims["access"][0]["actions"].clone();
    if granted != serde_json::json!(["pull"]) {
        return Err(format!("expected only pull to be granted, got {granted}").into());
    }

    let (status, _) = get(addr, target, None)?;
    if status != 401 {
        return Err(format!("a request without credentials answered {status}").into());
    }
    println!("4. the same request without credentials: 401");

    let audit = std::fs::read_to_string(dir.join("audit.log"))?;
    println!(
        "     audit log: {} events (one JSON object per exchange)",
        audit.lines().count()
    );
    Ok(())
}

/// The claims of a JWS, decoded without verification (see `mint_verify_token` for that).
fn claims_of(token: &str) -> Result<Value, Error> {
    let payload = token.split('.').nth(1).ok_or("not a JWS")?;
    Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?)
}

/// A minimal HTTP/1.1 GET: status and body.
fn get(addr: SocketAddr, target: &str, bearer: Option<&str>) -> Result<(u16, String), Error> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = bearer {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("malformed http response")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no http status")?;
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> Result<String, Error> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").ok_or("bad chunk")?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).ok_or("short chunk")?);
        body = rest.get(size + 2..).ok_or("short chunk")?;
    }
}
