//! Why the demo stopped: the step, and a typed cause that never holds a secret.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// The demo's steps, in order; [`Step::Setup`] is the unnumbered preparation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Setup,
    Identities,
    Broker,
    Kubelet,
    Realm,
    Harbor,
    RealRegistry,
}

impl Step {
    /// The numbered steps, for the `[n/N]` headers.
    pub(crate) const NUMBERED: [Step; 6] = [
        Step::Identities,
        Step::Broker,
        Step::Kubelet,
        Step::Realm,
        Step::Harbor,
        Step::RealRegistry,
    ];

    /// `n` of the `[n/N]` header (0 for the preparation).
    pub(crate) fn number(self) -> usize {
        match self {
            Step::Setup => 0,
            Step::Identities => 1,
            Step::Broker => 2,
            Step::Kubelet => 3,
            Step::Realm => 4,
            Step::Harbor => 5,
            Step::RealRegistry => 6,
        }
    }

    pub(crate) fn title(self) -> &'static str {
        match self {
            Step::Setup => "setup",
            Step::Identities => "identities: development SPIFFE trust domains",
            Step::Broker => "the broker: token realm, Exchange API and policy",
            Step::Kubelet => "the kubelet runs the credential provider plugin",
            Step::Realm => "containerd trades the credential for a registry token",
            Step::Harbor => {
                "a Harbor-kind registry, through a FAKE of Harbor's API (no real Harbor)"
            }
            Step::RealRegistry => "a real registry: push and pull with skopeo",
        }
    }
}

/// A step failed; the cause is the error's source (printed by the CLI's error chain).
#[derive(Debug, thiserror::Error)]
#[error("demo step {} ({}) failed", step.number(), step.title())]
pub(crate) struct DemoFailed {
    pub(crate) step: Step,
    // Boxed: the error travels up through every step's `Result`.
    #[source]
    pub(crate) source: Box<DemoError>,
}

/// What went wrong inside a step. Fields name the file, program, address or value involved;
/// none holds a credential, token or key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum DemoError {
    #[error("cannot create a temporary directory")]
    TempDir {
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the async runtime")]
    Runtime {
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{id:?} is not a SPIFFE ID")]
    SpiffeId {
        id: String,
        #[source]
        source: svid_broker_identity::IdError,
    },
    #[error("dev trust domain")]
    DevCa {
        #[source]
        source: svid_broker_dev::DevCaError,
    },
    #[error("dev Workload API")]
    WorkloadApi {
        #[source]
        source: svid_broker_dev::ServerError,
    },
    #[error("the sample policy")]
    Policy {
        #[source]
        source: svid_broker_policy::PolicyError,
    },
    #[error("the policy cannot decide the sample request")]
    Decision {
        #[source]
        source: svid_broker_policy::DecisionError,
    },
    #[error("the sample scope")]
    Scope {
        #[source]
        source: svid_broker_policy::ScopeError,
    },
    #[error("the policy granted {granted:?}, expected {expected:?}")]
    UnexpectedGrant {
        granted: String,
        expected: &'static str,
    },
    #[error("broker config")]
    BrokerConfig {
        #[source]
        source: svid_broker_server::ConfigError,
    },
    #[error("the broker did not start")]
    BrokerStart {
        #[source]
        source: svid_broker_server::ServerError,
    },
    #[error("the gRPC listener did not start")]
    NoGrpcListener,
    #[error("cannot find this binary")]
    CurrentExe {
        #[source]
        source: std::io::Error,
    },
    #[error("cannot link {}", path.display())]
    Link {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {program}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} did not finish within {limit:?}")]
    Timeout { program: String, limit: Duration },
    #[error("the plugin exited with {status}: {stderr}")]
    PluginFailed { status: ExitStatus, stderr: String },
    #[error("the plugin wrote to stderr on success: {stderr}")]
    PluginStderr { stderr: String },
    #[error("the plugin's response {problem}")]
    PluginResponse { problem: &'static str },
    #[error("the plugin's stdout is not JSON")]
    PluginJson {
        #[source]
        source: serde_json::Error,
    },
    #[error("the credential is for {got}, expected {expected}")]
    WrongSubject { got: String, expected: &'static str },
    #[error("realm at {addr}")]
    RealmIo {
        addr: SocketAddr,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the realm answered HTTP {status}")]
    RealmStatus { status: u16 },
    #[error("the realm's response {problem}")]
    RealmResponse { problem: &'static str },
    #[error("the registry token's {part} is not base64url JSON")]
    TokenPart { part: &'static str },
    #[error("expected exactly pull on {repository}, the token grants {granted}")]
    TokenGrant {
        repository: &'static str,
        granted: String,
    },
    #[error(
        "skipped: docker-registry/skopeo not installed (apt-get install docker-registry \
         skopeo); missing: {}; CI=true requires this step",
        missing.join(", ")
    )]
    ToolsMissing { missing: Vec<&'static str> },
    #[error("cannot find a free port on 127.0.0.1 for the registry")]
    FreePort {
        #[source]
        source: std::io::Error,
    },
    #[error("the registry")]
    Registry {
        #[source]
        source: svid_broker_dev::registry::RegistryError,
    },
    #[error("the OCI image")]
    Image {
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed: {stderr_tail}")]
    Skopeo {
        what: &'static str,
        stderr_tail: String,
    },
    #[error("the pulled image has no index.json")]
    PulledImageIncomplete,
    #[error("the fake Harbor API")]
    FakeHarbor {
        #[source]
        source: svid_broker_dev::fake::harbor::FakeError,
    },
    #[error("Harbor step: {problem}")]
    HarborRobot { problem: &'static str },
    #[error(
        "a push with the pull-only node credential was not refused (exit ok: {exit_ok}): \
         {stderr_tail}"
    )]
    PushNotRefused { exit_ok: bool, stderr_tail: String },
}
