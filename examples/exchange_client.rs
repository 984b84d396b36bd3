//! Call the broker's gRPC `Exchange` API from a Rust tool with `svid-broker-client`: the
//! workload's X.509-SVID (from its SPIFFE Workload API) authenticates it over mTLS, and a
//! registry login credential and an access token come back. The password and the token are
//! secrets: this prints only who they are for, what they grant and when they expire.
//!
//! Without arguments everything runs in-process on 127.0.0.1 and Unix sockets in a temporary
//! directory: two dev trust domains with real Workload API servers (the broker's and the
//! workload's) and the broker itself.
//!
//! ```text
//! cargo run -p svid-broker-examples --example exchange_client
//! ```
//!
//! With arguments it is the real tool, against a running broker and SPIRE agent:
//!
//! ```text
//! SPIFFE_ENDPOINT_SOCKET=unix:///run/spire/agent.sock \
//!   cargo run -p svid-broker-examples --example exchange_client -- \
//!   broker.example.org:8443 spiffe://example.org/svid-broker registry.example.org
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use svid_broker_client::{ClientOptions, Credential, ExchangeParams, blocking};
use svid_broker_dev::{DevTrustDomain, WorkloadApiServer};
use svid_broker_identity::clock::SystemClock;
use svid_broker_identity::{SpiffeId, TrustDomain};
use svid_broker_server::{BrokerConfig, BrokerServer};

type Error = Box<dyn std::error::Error>;

const BROKER_ID: &str = "spiffe://broker.test/svid-broker";
const WORKLOAD_ID: &str = "spiffe://example.org/ns/ci/sa/builder";
const SERVICE: &str = "registry.local";

const POLICY: &str = r#"
[[registries]]
name = "local"
service = "registry.local"
issuer = "svid-broker"
profile = "distribution-2"
hosts = ["127.0.0.1:5000"]

[[rules]]
id = "ci-builds-team-images"
subject = "spiffe://example.org/ns/ci/sa/*"
registry = "local"
repositories = ["team/*"]
actions = ["pull", "push"]
"#;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.as_slice() {
        [] => in_process(),
        [broker, broker_id, service] => against(broker, broker_id, service),
        _ => {
            eprintln!("usage: exchange_client [BROKER_ADDR BROKER_SPIFFE_ID REGISTRY_SERVICE]");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exchange_client: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The tool itself: one login credential from a real broker, identity from
/// `SPIFFE_ENDPOINT_SOCKET`.
fn against(broker: &str, broker_id: &str, service: &str) -> Result<(), Error> {
    let options = ClientOptions::new(broker, SpiffeId::parse(broker_id)?);
    let credential = blocking::exchange_once(options, &ExchangeParams::login_credential(service))
        .map_err(|e| e.one_line())?;
    describe("login credential", &credential);
    Ok(())
}

fn in_process() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    // A dev Workload API hands out the first identity of its trust domain, so the broker and
    // the workload each get their own trust domain (as two SPIRE agents would serve them).
    let broker_id = SpiffeId::parse(BROKER_ID)?;
    let workload_id = SpiffeId::parse(WORKLOAD_ID)?;
    let broker_td = Arc::new(DevTrustDomain::new(
        TrustDomain::parse("broker.test")?,
        [broker_id.clone()],
    )?);
    let workload_td = Arc::new(DevTrustDomain::new(
        TrustDomain::parse("example.org")?,
        [workload_id],
    )?);
    let broker_agent = runtime.block_on(
        WorkloadApiServer::builder(Arc::clone(&broker_td)).serve(dir.path().join("broker.sock")),
    )?;
    let workload_agent = runtime.block_on(
        WorkloadApiServer::builder(Arc::clone(&workload_td))
            .serve(dir.path().join("workload.sock")),
    )?;
    println!(
        "1. dev Workload APIs: {} (broker) and {} (workload)",
        broker_agent.endpoint(),
        workload_agent.endpoint()
    );

    // The broker trusts the workload's trust domain through its bundle file.
    std::fs::write(
        dir.path().join("example.org.bundle.json"),
        workload_td.bundle_document_json(),
    )?;
    std::fs::write(dir.path().join("policy.toml"), POLICY)?;
    let config = BrokerConfig::from_toml_str(
        &format!(
            r#"
[server]
http_addr = "127.0.0.1:0"
grpc_addr = "127.0.0.1:0"
public_url = "http://127.0.0.1"
shutdown_grace_seconds = 2
[identity]
audience = "svid-broker"
workload_api = "{}"
bundle_files = [{{ trust_domain = "example.org", path = "example.org.bundle.json" }}]
[policy]
file = "policy.toml"
[signing]
generate = true
[log]
audit = "audit.log"
"#,
            broker_agent.endpoint()
        ),
        dir.path(),
    )?;
    let broker = runtime.block_on(BrokerServer::start(config, Arc::new(SystemClock)))?;
    let grpc = broker.grpc_addr().ok_or("no grpc listener")?;
    println!("2. broker started; Exchange API at {grpc} (mTLS, broker SVID {broker_id})");

    // The client's side: where the broker is, who it must be, and (because this workload's
    // Workload API does not federate with broker.test) the broker's trust bundle.
    let options = ClientOptions::new(grpc.to_string(), broker_id)
        .workload_api(workload_agent.endpoint())
        .broker_bundles(Arc::new(Arc::new(broker_td.bundle_set()?)))
        .deadline(Duration::from_secs(10));
    // The blocking API runs its own runtime: call it from outside the host's.
    let outcome = exchange(options);

    runtime.block_on(broker.shutdown());
    for agent in [broker_agent, workload_agent] {
        runtime.block_on(agent.shutdown())?;
    }
    println!("5. broker and Workload APIs shut down");
    outcome
}

fn exchange(options: ClientOptions) -> Result<(), Error> {
    let client = blocking::BrokerClient::connect(options).map_err(|e| e.one_line())?;
    let login = client
        .exchange(&ExchangeParams::login_credential(SERVICE))
        .map_err(|e| e.one_line())?;
    print!("3. ");
    describe("login credential", &login);
    if login.username != WORKLOAD_ID {
        return Err(format!("unexpected user {}", login.username).into());
    }

    let scopes = ["repository:team/app:pull,push", "repository:other/app:pull"];
    let token = client
        .exchange(&ExchangeParams::access_token(SERVICE, scopes))
        .map_err(|e| e.one_line())?;
    print!("4. asked for {scopes:?}; ");
    describe("access token", &token);
    if token.scopes != ["repository:team/app:pull,push"] {
        return Err(format!("unexpected grant {:?}", token.scopes).into());
    }
    Ok(())
}

fn describe(what: &str, credential: &Credential) {
    println!(
        "{what} for {} (user {:?}), grants {:?}, expires in {} s; secret not printed",
        credential.subject,
        credential.username,
        credential.scopes,
        credential.remaining(SystemTime::now()).as_secs()
    );
}
