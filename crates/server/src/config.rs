//! The broker's configuration file (TOML), parsed strictly and validated before any runtime
//! starts. Unknown keys are errors with line and column. Relative paths are resolved against
//! the configuration file's directory.
//!
//! ```toml
//! [server]
//! http_addr = "127.0.0.1:8080"        # the token realm, JWKS, discovery, health, metrics
//! grpc_addr = "127.0.0.1:8443"        # optional: the gRPC Exchange listener (needs workload_api)
//! public_url = "http://127.0.0.1:8080" # realm = public_url + "/token"; OIDC issuer
//! shutdown_grace_seconds = 10         # in-flight requests get this long to finish (1..=300)
//! max_connections = 1024              # per listener; past a cap a connection is closed at once
//! max_connections_per_ip = 64         # per listener and source address
//! max_pending_handshakes_per_ip = 16  # connections still in their handshake, per source address
//! first_request_timeout_seconds = 10  # accept -> first request (TLS, HTTP/2 preface, head)
//! idle_timeout_seconds = 60           # no request in flight for this long: closed
//! header_read_timeout_seconds = 10    # realm: a request head must arrive within this
//! body_read_timeout_seconds = 10      # realm: a request body must arrive within this
//! h2c = false                         # realm: also serve HTTP/2 (prior knowledge / ALPN h2)
//!
//! [server.tls]                        # optional: the realm over HTTPS (TLS 1.2 and 1.3)
//! cert_file = "realm.pem"             # PEM chain, leaf first; re-read on change, last good kept
//! key_file = "realm.key"              # PEM private key (PKCS#8, SEC1 or PKCS#1)
//! poll_seconds = 5                    # change detection period (1..=3600)
//!
//! [identity]
//! audience = "svid-broker"            # JWT-SVIDs presented to the broker must carry it
//! audience_policy = "single"          # "single": aud must be exactly [audience];
//! #                                   # "any": aud must contain it (SPIFFE's any-of)
//! bundle_files = [{ trust_domain = "example.org", path = "bundle.jwks.json" }]
//! bundle_poll_seconds = 5             # how often bundle files are re-read (1..=3600)
//! workload_api = "unix:///run/spire/agent.sock"  # optional: own SVID (gRPC TLS) and bundles
//!
//! [policy]
//! file = "policy.toml"                # reloaded on change and on SIGHUP; last good kept
//! poll_seconds = 5                    # change detection period (1..=3600)
//!
//! [signing]
//! ca_cert_file = "ca.pem"             # signing CA first, then its issuers
//! ca_key_file = "ca.key"              # unencrypted PKCS#8
//! # generate = true                   # instead of the two files: dev only, single replica
//! algorithm = "ES256"                 # ES256, ES384 or RS256 (signing leaves)
//!
//! # Optional: the broker as an OIDC issuer, for registries that trust it (kind = "quay",
//! # "artifactory"). Issuer = public_url + "/federation" (https, or http on a loopback address);
//! # its discovery document and JWKS are served there, apart from the registry-token keys.
//! [federation]
//! key_files = ["federation-b.pem", "federation-a.pem"]  # 1..=10 RSA keys (PKCS#8 or
//! #                                   # PKCS#1, 2048..=4096 bits), owner-only files; the first
//! #                                   # signs, all are published (rotation with overlap)
//! # generate = true                   # instead of key_files: an in-memory key (dev, one replica)
//! token_ttl_seconds = 300             # 60..=600: life of the JWTs the broker exchanges
//!
//! [credentials]
//! login_credential_ttl_seconds = 1800 # 60..=3600
//! refresh_token_ttl_seconds = 3600    # 60..=86400
//! max_session_seconds = 28800         # 60..=604800: no refresh-token renewal reaches past the
//! #                                   # original SVID/login authentication plus this
//!
//! [limits]
//! requests_per_second_per_subject = 50  # 0 disables the limit
//! burst = 100
//! token_cache = true
//! failed_auth_per_second_per_ip = 10  # refills of a source address's budget of requests
//! #                                   # failing before authentication; 0 disables
//! failed_auth_burst_per_ip = 100      # that budget; spent: 429 before any credential check
//! preauth_audit_interval_seconds = 10 # 1..=3600: refusals before authentication are
//! #                                   # audited once per address and reason, then summed
//!
//! [log]
//! format = "text"                     # or "json"
//! audit = "stderr"                    # or "stdout", or a file path; its own stream
//! audit_on_error = "deny"             # or "continue": an issuance that cannot be audited
//! #                                   # is refused (503), or served and only counted
//!
//! # Optional: Kubernetes service-account tokens as subjects (KEP-4412 credential provider).
//! # A caller in trusted_actors (authenticated by its SVID) may send a pod's service-account
//! # token as `subject_token`; the credential is issued to the mapped SPIFFE ID and policy
//! # applies to that ID. Empty (or absent) trusted_actors: subject tokens are refused.
//! [service_account]
//! trusted_actors = ["spiffe://example.org/k8s/node/{node}/credential-provider"]  # ids or
//! #                                   # patterns; not ending in **; {node}: the token's
//! #                                   # kubernetes.io.node.name must be the captured node
//!
//! [[service_account.issuers]]         # 1..=32 issuers, each `issuer` once
//! issuer = "https://kubernetes.default.svc.cluster.local"  # the tokens' `iss`, exact
//! audiences = ["svid-broker"]         # required, non-empty: `aud` must contain one of them
//! trust_domain = "example.org"        # the trust domain mapped identities are in
//! spiffe_id_template = "spiffe://{trust_domain}/ns/{namespace}/sa/{name}"  # the default;
//! #                                   # placeholders fill whole path segments only; no two
//! #                                   # issuers' templates may be able to render one ID
//! # allow_shared_identity = true      # only for a template without {name}: every account
//! #                                   # of a namespace then shares one identity
//! jwks_file = "cluster-a.jwks.json"   # the issuer's JWK Set (kube-apiserver /openid/v1/jwks);
//! jwks_poll_seconds = 5               # re-read on change (1..=3600); last good kept
//! # oidc_discovery = true             # instead of jwks_file: fetch
//! #                                   # {issuer}/.well-known/openid-configuration → jwks_uri
//! # discovery_url = "https://…/.well-known/openid-configuration"  # override the derived URL
//! # discovery_ca_file = "cluster-ca.pem"  # trust these CAs, not the public web roots
//! # discovery_refresh_seconds = 300   # 30..=86400; an unknown kid refreshes early
//! #                                   # (at most every 10 s); https only; last good kept
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use svid_broker_identity::TrustDomain;
use svid_broker_identity::jwt::AudienceMatch;
use svid_broker_policy::Location;
use svid_broker_token::SigningAlgorithm;
use svid_broker_token::federation::{
    DEFAULT_FEDERATION_TOKEN_TTL, MAX_FEDERATION_KEYS, MAX_FEDERATION_TOKEN_TTL,
    MIN_FEDERATION_TOKEN_TTL,
};

use crate::audit::AuditOnError;
use crate::credential::{
    DEFAULT_LOGIN_CREDENTIAL_TTL, DEFAULT_MAX_SESSION, DEFAULT_REFRESH_TOKEN_TTL,
    MAX_LOGIN_CREDENTIAL_TTL, MAX_MAX_SESSION, MAX_REFRESH_TOKEN_TTL,
};
use crate::satoken::keys::{
    DEFAULT_DISCOVERY_REFRESH, DEFAULT_MIN_REFRESH_SPACING, DiscoveryConfig,
};
use crate::satoken::{
    IdTemplate, KeySource, MAX_SA_AUDIENCES, MAX_SA_ISSUERS, TrustedActorError, TrustedActors,
};
use crate::throttle::DEFAULT_PREAUTH_AUDIT_INTERVAL;

mod key_store;

pub use key_store::{
    AwsKmsSettings, KeyReference, KeyStoreConfig, MAX_KMS_KEY_ID_LEN, MAX_PIN_ENV_NAME_LEN,
    PinSource, Pkcs11Settings,
};

/// Largest configuration file accepted, in bytes.
pub const MAX_CONFIG_FILE_BYTES: u64 = 256 * 1024;
/// Most `identity.bundle_files` entries accepted.
pub const MAX_BUNDLE_FILES: usize = 256;
/// Largest `server.shutdown_grace_seconds` accepted (the smallest is 1).
pub const MAX_SHUTDOWN_GRACE_SECONDS: u64 = 300;
/// Largest `*poll_seconds` and `preauth_audit_interval_seconds` accepted; the smallest is 1.
pub const MAX_POLL_SECONDS: u64 = 3600;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Opening or reading the file failed, or its text is not UTF-8.
    #[error("cannot read {path}")]
    Io {
        /// The file, as given.
        path: PathBuf,
        /// The underlying error (printed by the error chain, not by this `Display`).
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_FILE_BYTES`].
    #[error("{path} is larger than {max} bytes")]
    TooLarge {
        /// The file, as given.
        path: PathBuf,
        /// [`MAX_CONFIG_FILE_BYTES`].
        max: u64,
    },
    /// TOML syntax, an unknown key or a wrongly typed value.
    #[error("line {}, column {}: {message}", location.line, location.column)]
    Parse {
        /// Where in the file: line and column, 1-based.
        location: Location,
        /// The parser's message (the file holds paths and addresses, never secrets).
        message: String,
    },
    /// A value parsed but breaks a rule; only the key and rule are reported, never the value.
    #[error("{key}: {rule}")]
    Invalid {
        /// The key, e.g. `server.http_addr`.
        key: &'static str,
        /// The rule in words, with its bounds (e.g. `must be 1..=300`); static text.
        rule: &'static str,
    },
    /// A `pkcs11:` URI breaks a rule (printed by the error chain).
    #[error("{key}")]
    InvalidPkcs11Uri {
        /// The key, e.g. `signing.key`.
        key: &'static str,
        /// The URI parser's rule.
        #[source]
        source: svid_broker_keystore::pkcs11::Pkcs11Error,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    identity: RawIdentity,
    policy: RawPolicy,
    signing: RawSigning,
    #[serde(default)]
    credentials: RawCredentials,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    service_account: Option<RawServiceAccount>,
    #[serde(default)]
    federation: Option<RawFederation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFederation {
    #[serde(default)]
    key_files: Vec<PathBuf>,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    generate: bool,
    #[serde(default = "default_federation_ttl")]
    token_ttl_seconds: u64,
}

fn default_federation_ttl() -> u64 {
    DEFAULT_FEDERATION_TOKEN_TTL.as_secs()
}

/// `[federation]`: the broker as an OIDC issuer for registries that exchange its JWTs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FederationConfig {
    /// Where the RSA signing keys come from.
    pub keys: FederationKeySource,
    /// Lifetime of each JWT the broker signs for an exchange.
    pub token_ttl: Duration,
}

/// Where the federation issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FederationKeySource {
    /// PEM files, the first signing and all published (production; replicas share them).
    Files(Vec<PathBuf>),
    /// One key generated in memory at start-up (development, single replica: another replica
    /// or a restart publishes a different key, and registries' cached JWKS go stale).
    Generate,
    /// RSA keys in a key store (`keys`: `pkcs11:` URIs or `awskms:` keys), the first signing
    /// and all published; never read.
    KeyStore(Vec<KeyReference>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServiceAccount {
    #[serde(default)]
    trusted_actors: Vec<String>,
    #[serde(default)]
    issuers: Vec<RawSaIssuer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSaIssuer {
    issuer: String,
    audiences: Vec<String>,
    trust_domain: String,
    spiffe_id_template: Option<String>,
    #[serde(default)]
    allow_shared_identity: bool,
    jwks_file: Option<PathBuf>,
    #[serde(default = "default_poll")]
    jwks_poll_seconds: u64,
    #[serde(default)]
    oidc_discovery: bool,
    discovery_url: Option<String>,
    discovery_ca_file: Option<PathBuf>,
    #[serde(default = "default_discovery_refresh")]
    discovery_refresh_seconds: u64,
}

fn default_discovery_refresh() -> u64 {
    DEFAULT_DISCOVERY_REFRESH.as_secs()
}

/// `[service_account]`: subject tokens from Kubernetes service-account issuers.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ServiceAccountConfig {
    /// Who may present subject tokens (exact SPIFFE IDs or patterns); empty = mode off.
    pub trusted_actors: Vec<String>,
    /// The cluster issuers in file order: each `issuer` once, no two templates rendering one ID.
    pub issuers: Vec<SaIssuerConfig>,
}

/// One `[[service_account.issuers]]` entry.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SaIssuerConfig {
    /// The tokens' `iss`, matched exactly as written here (1 to 1024 bytes).
    pub issuer: String,
    /// 1 to 16 accepted values; a token's `aud` must contain one of them.
    pub audiences: Vec<String>,
    /// The trust domain every mapped SPIFFE ID is in (`template` is bound to it).
    pub trust_domain: TrustDomain,
    /// Renders the SPIFFE ID from a token's namespace and account name (trust domain fixed).
    pub template: IdTemplate,
    /// The template may lack `{name}` (every account of a namespace shares one identity).
    pub allow_shared_identity: bool,
    /// Where the keys come from.
    pub keys: KeySource,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    http_addr: String,
    grpc_addr: Option<String>,
    public_url: String,
    #[serde(default = "default_grace")]
    shutdown_grace_seconds: u64,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_max_connections_per_ip")]
    max_connections_per_ip: usize,
    #[serde(default = "default_max_pending_handshakes_per_ip")]
    max_pending_handshakes_per_ip: usize,
    #[serde(default = "default_first_request_timeout")]
    first_request_timeout_seconds: u64,
    #[serde(default = "default_idle_timeout")]
    idle_timeout_seconds: u64,
    #[serde(default = "default_read_timeout")]
    header_read_timeout_seconds: u64,
    #[serde(default = "default_read_timeout")]
    body_read_timeout_seconds: u64,
    #[serde(default)]
    h2c: bool,
    tls: Option<RawServerTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServerTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default = "default_poll")]
    poll_seconds: u64,
}

fn default_max_connections() -> usize {
    crate::listen::DEFAULT_MAX_CONNECTIONS
}

fn default_max_connections_per_ip() -> usize {
    crate::listen::DEFAULT_MAX_CONNECTIONS_PER_IP
}

fn default_max_pending_handshakes_per_ip() -> usize {
    crate::listen::DEFAULT_MAX_PENDING_HANDSHAKES_PER_IP
}

fn default_first_request_timeout() -> u64 {
    crate::listen::DEFAULT_FIRST_REQUEST_TIMEOUT.as_secs()
}

fn default_idle_timeout() -> u64 {
    crate::listen::DEFAULT_IDLE_TIMEOUT.as_secs()
}

fn default_read_timeout() -> u64 {
    crate::http_listener::DEFAULT_HEADER_READ_TIMEOUT.as_secs()
}

/// `[server]`'s listener settings: connection limits for both listeners, the realm's read
/// timeouts, HTTP/2 and TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerConfig {
    /// Caps and timeouts of each listener's connections.
    pub limits: crate::listen::ConnectionLimits,
    /// Time a realm request head has to arrive in (1..=300 s).
    pub header_read_timeout: Duration,
    /// Time a realm request body has to arrive in (1..=300 s).
    pub body_read_timeout: Duration,
    /// Whether the realm serves HTTP/2 (prior knowledge, or ALPN `h2` over TLS).
    pub h2c: bool,
    /// `[server.tls]`: the realm over HTTPS.
    pub tls: Option<ServerTlsConfig>,
}

/// `[server.tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerTlsConfig {
    /// PEM certificate chain, leaf first; resolved against the config file's directory.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1); resolved like `cert_file`.
    pub key_file: PathBuf,
    /// How often both files are checked for a content change (1..=3600 s); last good pair kept.
    pub poll: Duration,
}

fn listener_config(
    raw: &RawServer,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<ListenerConfig, ConfigError> {
    use crate::listen::{
        MAX_FIRST_REQUEST_TIMEOUT_SECONDS, MAX_IDLE_TIMEOUT_SECONDS, MAX_MAX_CONNECTIONS,
        MAX_PENDING_HANDSHAKES,
    };
    let invalid = |key, rule| Err(ConfigError::Invalid { key, rule });
    if !(1..=MAX_MAX_CONNECTIONS).contains(&raw.max_connections) {
        return invalid("server.max_connections", "must be 1..=65536");
    }
    // Each key is checked on its own (a per-address cap above the listener's cap simply never
    // binds), so one key can be changed without touching the others.
    if !(1..=MAX_MAX_CONNECTIONS).contains(&raw.max_connections_per_ip) {
        return invalid("server.max_connections_per_ip", "must be 1..=65536");
    }
    if !(1..=MAX_PENDING_HANDSHAKES).contains(&raw.max_pending_handshakes_per_ip) {
        return invalid("server.max_pending_handshakes_per_ip", "must be 1..=256");
    }
    if !(1..=MAX_FIRST_REQUEST_TIMEOUT_SECONDS).contains(&raw.first_request_timeout_seconds) {
        return invalid("server.first_request_timeout_seconds", "must be 1..=300");
    }
    if !(1..=MAX_IDLE_TIMEOUT_SECONDS).contains(&raw.idle_timeout_seconds) {
        return invalid("server.idle_timeout_seconds", "must be 1..=3600");
    }
    let max_read = crate::http_listener::MAX_READ_TIMEOUT_SECONDS;
    if !(1..=max_read).contains(&raw.header_read_timeout_seconds) {
        return invalid("server.header_read_timeout_seconds", "must be 1..=300");
    }
    if !(1..=max_read).contains(&raw.body_read_timeout_seconds) {
        return invalid("server.body_read_timeout_seconds", "must be 1..=300");
    }
    let tls = match &raw.tls {
        None => None,
        Some(tls) => {
            if !(1..=MAX_POLL_SECONDS).contains(&tls.poll_seconds) {
                return invalid("server.tls.poll_seconds", "must be 1..=3600");
            }
            Some(ServerTlsConfig {
                cert_file: resolve(&tls.cert_file),
                key_file: resolve(&tls.key_file),
                poll: Duration::from_secs(tls.poll_seconds),
            })
        }
    };
    let limits = crate::listen::ConnectionLimits {
        max_connections: raw.max_connections,
        max_connections_per_ip: raw.max_connections_per_ip,
        max_pending_handshakes_per_ip: raw.max_pending_handshakes_per_ip,
        first_request_timeout: Duration::from_secs(raw.first_request_timeout_seconds),
        idle_timeout: Duration::from_secs(raw.idle_timeout_seconds),
    };
    Ok(ListenerConfig {
        limits,
        header_read_timeout: Duration::from_secs(raw.header_read_timeout_seconds),
        body_read_timeout: Duration::from_secs(raw.body_read_timeout_seconds),
        h2c: raw.h2c,
        tls,
    })
}

fn default_grace() -> u64 {
    10
}

fn default_poll() -> u64 {
    5
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBundleFile {
    trust_domain: String,
    path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    audience: String,
    #[serde(default = "default_audience_policy")]
    audience_policy: String,
    #[serde(default)]
    bundle_files: Vec<RawBundleFile>,
    #[serde(default = "default_poll")]
    bundle_poll_seconds: u64,
    workload_api: Option<String>,
}

fn default_audience_policy() -> String {
    "single".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    file: PathBuf,
    #[serde(default = "default_poll")]
    poll_seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    ca_cert_file: Option<PathBuf>,
    ca_key_file: Option<PathBuf>,
    key: Option<String>,
    mac_key: Option<String>,
    pkcs11_module: Option<PathBuf>,
    pin_file: Option<PathBuf>,
    pin_env: Option<String>,
    aws_region: Option<String>,
    aws_kms_endpoint: Option<String>,
    aws_sts_endpoint: Option<String>,
    #[serde(default)]
    generate: bool,
    #[serde(default = "default_algorithm")]
    algorithm: String,
}

fn default_algorithm() -> String {
    "ES256".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    #[serde(default = "default_login_ttl")]
    login_credential_ttl_seconds: u64,
    #[serde(default = "default_refresh_ttl")]
    refresh_token_ttl_seconds: u64,
    #[serde(default = "default_max_session")]
    max_session_seconds: u64,
}

fn default_max_session() -> u64 {
    DEFAULT_MAX_SESSION.as_secs()
}

fn default_login_ttl() -> u64 {
    DEFAULT_LOGIN_CREDENTIAL_TTL.as_secs()
}

fn default_refresh_ttl() -> u64 {
    DEFAULT_REFRESH_TOKEN_TTL.as_secs()
}

impl Default for RawCredentials {
    fn default() -> Self {
        Self {
            login_credential_ttl_seconds: default_login_ttl(),
            refresh_token_ttl_seconds: default_refresh_ttl(),
            max_session_seconds: default_max_session(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default = "default_rps")]
    requests_per_second_per_subject: u32,
    #[serde(default = "default_burst")]
    burst: u32,
    #[serde(default = "default_true")]
    token_cache: bool,
    #[serde(default = "default_verified_cache_entries")]
    verified_cache_entries: usize,
    #[serde(default = "default_verified_cache_bytes")]
    verified_cache_bytes: usize,
    #[serde(default = "default_failed_auth_rps")]
    failed_auth_per_second_per_ip: u32,
    #[serde(default = "default_failed_auth_burst")]
    failed_auth_burst_per_ip: u32,
    #[serde(default = "default_preauth_interval")]
    preauth_audit_interval_seconds: u64,
}

fn default_rps() -> u32 {
    50
}

fn default_verified_cache_entries() -> usize {
    crate::verified_cache::DEFAULT_MAX_ENTRIES
}

fn default_verified_cache_bytes() -> usize {
    crate::verified_cache::DEFAULT_MAX_BYTES
}

fn default_failed_auth_rps() -> u32 {
    10
}

fn default_failed_auth_burst() -> u32 {
    100
}

fn default_preauth_interval() -> u64 {
    DEFAULT_PREAUTH_AUDIT_INTERVAL.as_secs()
}

fn default_burst() -> u32 {
    100
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            requests_per_second_per_subject: default_rps(),
            burst: default_burst(),
            token_cache: true,
            verified_cache_entries: default_verified_cache_entries(),
            verified_cache_bytes: default_verified_cache_bytes(),
            failed_auth_per_second_per_ip: default_failed_auth_rps(),
            failed_auth_burst_per_ip: default_failed_auth_burst(),
            preauth_audit_interval_seconds: default_preauth_interval(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default = "default_format")]
    format: String,
    #[serde(default = "default_audit")]
    audit: String,
    #[serde(default = "default_audit_on_error")]
    audit_on_error: String,
}

fn default_audit_on_error() -> String {
    "deny".to_owned()
}

fn default_format() -> String {
    "text".to_owned()
}

fn default_audit() -> String {
    "stderr".to_owned()
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: default_format(),
            audit: default_audit(),
            audit_on_error: default_audit_on_error(),
        }
    }
}

/// Where the signing CA comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigningSource {
    /// PEM files (production; replicas share them).
    Files {
        /// Certificate chain, signing CA first.
        cert: PathBuf,
        /// Unencrypted PKCS#8 private key.
        key: PathBuf,
    },
    /// Generated in memory at start-up (development, single replica).
    Generate,
    /// The certificate chain from a file, the CA key in a key store (never read).
    KeyStore {
        /// Certificate chain, signing CA first (`svid-broker keystore init` writes it).
        cert: PathBuf,
        /// The CA key in the key store (`signing.key`: a `pkcs11:` URI or `awskms:` key).
        key: KeyReference,
        /// The HMAC key the credential MAC keys are derived through (`signing.mac_key`).
        mac: KeyReference,
    },
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where audit events go.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditTarget {
    /// Standard error.
    Stderr,
    /// Standard output.
    Stdout,
    /// A file, appended to; resolved against the config file's directory.
    File(PathBuf),
}

/// A configuration that passed every rule; relative paths are already resolved.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// `server.http_addr`: realm, JWKS, discovery, health and metrics listener.
    pub http_addr: SocketAddr,
    /// `server.grpc_addr`: the gRPC Exchange listener; only set together with `workload_api`.
    pub grpc_addr: Option<SocketAddr>,
    /// The URL clients and registries reach the realm at (no trailing slash).
    pub public_url: String,
    /// How long shutdown waits for in-flight requests (1..=300 s).
    pub shutdown_grace: Duration,
    /// Connection limits, the realm's read timeouts, HTTP/2 and TLS.
    pub listener: ListenerConfig,
    /// The `aud` a JWT-SVID presented to the broker must carry (1 to 1024 bytes).
    pub audience: String,
    /// How a JWT-SVID's `aud` is matched against `audience`.
    pub audience_policy: AudienceMatch,
    /// Trust bundle files, resolved, each trust domain at most once (up to [`MAX_BUNDLE_FILES`]).
    pub bundle_files: Vec<(TrustDomain, PathBuf)>,
    /// How often the bundle files are re-read (1..=3600 s).
    pub bundle_poll: Duration,
    /// The Workload API endpoint as written (e.g. `unix:///run/spire/agent.sock`), unchecked here.
    pub workload_api: Option<String>,
    /// The policy file, resolved against the config file's directory.
    pub policy_file: PathBuf,
    /// How often the policy file is checked for change (1..=3600 s); SIGHUP also reloads it.
    pub policy_poll: Duration,
    /// The signing CA: PEM files, a key store, or generated (dev); set by `[signing]`.
    pub signing: SigningSource,
    /// `signing.algorithm` of the signing leaves: ES256 (the default), ES384 or RS256.
    pub algorithm: SigningAlgorithm,
    /// Lifetime of each login credential issued (60..=3600 s).
    pub login_credential_ttl: Duration,
    /// Lifetime of each refresh token issued (60..=86400 s).
    pub refresh_token_ttl: Duration,
    /// Absolute bound on a refresh-token session, from the original authentication.
    pub max_session: Duration,
    /// Per-subject requests per second; 0 = unlimited.
    pub requests_per_second_per_subject: u32,
    /// Per-subject bucket size; at least 1 when `requests_per_second_per_subject` is set.
    pub burst: u32,
    /// Whether issued tokens are cached.
    pub token_cache: bool,
    /// The caps of each verified-credential cache.
    pub verified_cache: crate::verified_cache::CacheLimits,
    /// Per-source-address refill rate of the failed-authentication budget; 0 = unlimited.
    pub failed_auth_per_second_per_ip: u32,
    /// The failed-authentication budget per source address; once spent, 429 before any check.
    pub failed_auth_burst_per_ip: u32,
    /// Aggregation interval of refusals before authentication.
    pub preauth_audit_interval: Duration,
    /// What an audit write failure does.
    pub audit_on_error: AuditOnError,
    /// Format of the diagnostic log (`log.format`).
    pub log_format: LogFormat,
    /// Where audit events go (`log.audit`), apart from the diagnostic log.
    pub audit: AuditTarget,
    /// Service-account token mode, when configured.
    pub service_account: Option<ServiceAccountConfig>,
    /// The OIDC issuer for federated registries, when configured.
    pub federation: Option<FederationConfig>,
    /// The key stores `signing.key` and `federation.keys` live in.
    pub key_store: KeyStoreConfig,
}

impl BrokerConfig {
    /// The realm URL registries put in `auth.token.realm`.
    pub fn realm_url(&self) -> String {
        format!("{}/token", self.public_url)
    }

    /// The federation issuer's URL (`iss` of its JWTs): `public_url` + [`FEDERATION_PATH`].
    pub fn federation_issuer_url(&self) -> String {
        format!("{}{FEDERATION_PATH}", self.public_url)
    }

    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the rule that failed.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        use std::io::Read as _;
        let io = |source| ConfigError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut text = String::new();
        file.take(MAX_CONFIG_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > MAX_CONFIG_FILE_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
                max: MAX_CONFIG_FILE_BYTES,
            });
        }
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_toml_str(&text, base)
    }

    /// Parses and validates configuration text; relative paths resolve against `base_dir`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the rule that failed.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            location: Location::from_offset(text, e.span().map_or(0, |s| s.start)),
            message: e.message().to_owned(),
        })?;
        let invalid = |key, rule| Err(ConfigError::Invalid { key, rule });
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base_dir.join(p)
            }
        };

        let Ok(http_addr) = raw.server.http_addr.parse::<SocketAddr>() else {
            return invalid("server.http_addr", "must be an ip:port socket address");
        };
        let grpc_addr = match raw.server.grpc_addr.as_deref() {
            None => None,
            Some(a) => match a.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => return invalid("server.grpc_addr", "must be an ip:port socket address"),
            },
        };
        let public_url = raw.server.public_url.trim_end_matches('/').to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://"))
            || public_url.len() <= "https://".len()
            || public_url.contains(['?', '#', ' '])
        {
            return invalid(
                "server.public_url",
                "must be an http:// or https:// url without query or fragment",
            );
        }
        let grace = raw.server.shutdown_grace_seconds;
        if grace == 0 || grace > MAX_SHUTDOWN_GRACE_SECONDS {
            return invalid("server.shutdown_grace_seconds", "must be 1..=300");
        }
        let listener = listener_config(&raw.server, &resolve)?;

        if raw.identity.audience.is_empty() || raw.identity.audience.len() > 1024 {
            return invalid("identity.audience", "must be 1 to 1024 bytes");
        }
        let audience_policy = match raw.identity.audience_policy.as_str() {
            "single" => AudienceMatch::Single,
            "any" => AudienceMatch::AnyOf,
            _ => return invalid("identity.audience_policy", "must be \"single\" or \"any\""),
        };
        if raw.identity.bundle_files.is_empty() && raw.identity.workload_api.is_none() {
            return invalid(
                "identity.bundle_files",
                "at least one bundle file (or identity.workload_api) is required",
            );
        }
        if raw.identity.bundle_files.len() > MAX_BUNDLE_FILES {
            return invalid("identity.bundle_files", "at most 256 entries");
        }
        let mut bundle_files = Vec::with_capacity(raw.identity.bundle_files.len());
        for b in &raw.identity.bundle_files {
            let Ok(td) = TrustDomain::parse_id_or_name(&b.trust_domain) else {
                return invalid("identity.bundle_files.trust_domain", "not a trust domain");
            };
            if bundle_files.iter().any(|(t, _)| *t == td) {
                return invalid(
                    "identity.bundle_files.trust_domain",
                    "each trust domain may appear once",
                );
            }
            bundle_files.push((td, resolve(&b.path)));
        }
        if !(1..=MAX_POLL_SECONDS).contains(&raw.identity.bundle_poll_seconds) {
            return invalid("identity.bundle_poll_seconds", "must be 1..=3600");
        }
        if grpc_addr.is_some() && raw.identity.workload_api.is_none() {
            return invalid(
                "server.grpc_addr",
                "the grpc listener needs identity.workload_api for its own x509-svid",
            );
        }
        if !(1..=MAX_POLL_SECONDS).contains(&raw.policy.poll_seconds) {
            return invalid("policy.poll_seconds", "must be 1..=3600");
        }

        let signing_key = raw
            .signing
            .key
            .as_deref()
            .map(|text| KeyReference::parse("signing.key", text))
            .transpose()?;
        let signing = match (
            raw.signing.generate,
            raw.signing.ca_cert_file,
            raw.signing.ca_key_file,
            signing_key,
        ) {
            (true, None, None, None) => SigningSource::Generate,
            (false, Some(cert), Some(key), None) => SigningSource::Files {
                cert: resolve(&cert),
                key: resolve(&key),
            },
            (false, Some(cert), None, Some(key)) => SigningSource::KeyStore {
                cert: resolve(&cert),
                mac: key_store::mac_key(&key, raw.signing.mac_key.as_deref())?,
                key,
            },
            (true, ..) => {
                return invalid(
                    "signing.generate",
                    "cannot be combined with ca_cert_file, ca_key_file or key",
                );
            }
            (false, _, Some(_), Some(_)) => {
                return invalid(
                    "signing.key",
                    "cannot be combined with ca_key_file: the key is in a file or in a key store",
                );
            }
            _ => {
                return invalid(
                    "signing",
                    "set ca_cert_file with ca_key_file (a PEM key) or with key (in a key store), or generate = true",
                );
            }
        };
        if raw.signing.mac_key.is_some() && !matches!(signing, SigningSource::KeyStore { .. }) {
            return invalid("signing.mac_key", "applies only with signing.key");
        }
        let Ok(algorithm) = SigningAlgorithm::from_jws_name(&raw.signing.algorithm) else {
            return invalid("signing.algorithm", "must be ES256, ES384 or RS256");
        };

        use crate::verified_cache::{CacheLimits, MAX_MAX_BYTES, MAX_MAX_ENTRIES, MIN_MAX_BYTES};
        if raw.limits.verified_cache_entries > MAX_MAX_ENTRIES {
            return invalid(
                "limits.verified_cache_entries",
                "must be 0..=1048576 (0 disables)",
            );
        }
        if !(MIN_MAX_BYTES..=MAX_MAX_BYTES).contains(&raw.limits.verified_cache_bytes) {
            return invalid("limits.verified_cache_bytes", "must be 65536..=1073741824");
        }
        let verified_cache = CacheLimits::new(
            raw.limits.verified_cache_entries,
            raw.limits.verified_cache_bytes,
        );

        let login = raw.credentials.login_credential_ttl_seconds;
        if !(60..=MAX_LOGIN_CREDENTIAL_TTL.as_secs()).contains(&login) {
            return invalid(
                "credentials.login_credential_ttl_seconds",
                "must be 60..=3600",
            );
        }
        let refresh = raw.credentials.refresh_token_ttl_seconds;
        if !(60..=MAX_REFRESH_TOKEN_TTL.as_secs()).contains(&refresh) {
            return invalid(
                "credentials.refresh_token_ttl_seconds",
                "must be 60..=86400",
            );
        }
        let max_session = raw.credentials.max_session_seconds;
        if !(60..=MAX_MAX_SESSION.as_secs()).contains(&max_session) {
            return invalid("credentials.max_session_seconds", "must be 60..=604800");
        }
        if raw.limits.requests_per_second_per_subject > 0 && raw.limits.burst == 0 {
            return invalid(
                "limits.burst",
                "must be at least 1 when a rate limit is set",
            );
        }
        if raw.limits.failed_auth_per_second_per_ip > 0 && raw.limits.failed_auth_burst_per_ip == 0
        {
            return invalid(
                "limits.failed_auth_burst_per_ip",
                "must be at least 1 when failed_auth_per_second_per_ip is set",
            );
        }
        if !(1..=MAX_POLL_SECONDS).contains(&raw.limits.preauth_audit_interval_seconds) {
            return invalid("limits.preauth_audit_interval_seconds", "must be 1..=3600");
        }
        let audit_on_error = match raw.log.audit_on_error.as_str() {
            "deny" => AuditOnError::Deny,
            "continue" => AuditOnError::Continue,
            _ => return invalid("log.audit_on_error", "must be \"deny\" or \"continue\""),
        };
        let log_format = match raw.log.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return invalid("log.format", "must be \"text\" or \"json\""),
        };
        let audit = match raw.log.audit.as_str() {
            "stderr" => AuditTarget::Stderr,
            "stdout" => AuditTarget::Stdout,
            "" => return invalid("log.audit", "must be stderr, stdout or a file path"),
            path => AuditTarget::File(resolve(Path::new(path))),
        };

        let federation = federation_config(raw.federation, &resolve)?;
        let mut store_keys = Vec::new();
        if let SigningSource::KeyStore { key, mac, .. } = &signing {
            store_keys.extend([key, mac]);
        }
        if let Some(FederationConfig {
            keys: FederationKeySource::KeyStore(keys),
            ..
        }) = &federation
        {
            store_keys.extend(keys);
        }
        let key_store = key_store::key_store_config(
            &store_keys,
            key_store::RawKeyStoreFields {
                pkcs11_module: raw.signing.pkcs11_module,
                pin_file: raw.signing.pin_file,
                pin_env: raw.signing.pin_env,
                aws_region: raw.signing.aws_region,
                aws_kms_endpoint: raw.signing.aws_kms_endpoint,
                aws_sts_endpoint: raw.signing.aws_sts_endpoint,
            },
            &resolve,
        )?;
        let service_account = match raw.service_account {
            None => None,
            Some(sa) => Some(service_account(sa, &resolve)?),
        };

        Ok(Self {
            http_addr,
            grpc_addr,
            public_url,
            shutdown_grace: Duration::from_secs(grace),
            listener,
            audience: raw.identity.audience,
            audience_policy,
            bundle_files,
            bundle_poll: Duration::from_secs(raw.identity.bundle_poll_seconds),
            workload_api: raw.identity.workload_api,
            policy_file: resolve(&raw.policy.file),
            policy_poll: Duration::from_secs(raw.policy.poll_seconds),
            signing,
            algorithm,
            login_credential_ttl: Duration::from_secs(login),
            refresh_token_ttl: Duration::from_secs(refresh),
            max_session: Duration::from_secs(max_session),
            requests_per_second_per_subject: raw.limits.requests_per_second_per_subject,
            burst: raw.limits.burst,
            token_cache: raw.limits.token_cache,
            verified_cache,
            failed_auth_per_second_per_ip: raw.limits.failed_auth_per_second_per_ip,
            failed_auth_burst_per_ip: raw.limits.failed_auth_burst_per_ip,
            preauth_audit_interval: Duration::from_secs(raw.limits.preauth_audit_interval_seconds),
            audit_on_error,
            log_format,
            audit,
            service_account,
            federation,
            key_store,
        })
    }
}

/// Where the federation issuer lives under `public_url`: its own path, so its discovery
/// document and JWKS never list the registry-token keys (a verifier trusting the issuer must
/// not accept a registry token as an identity token, nor the reverse).
pub const FEDERATION_PATH: &str = "/federation";

fn federation_config(
    raw: Option<RawFederation>,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<Option<FederationConfig>, ConfigError> {
    let invalid = |key, rule| Err(ConfigError::Invalid { key, rule });
    let Some(raw) = raw else {
        return Ok(None);
    };
    let keys = match (raw.generate, raw.key_files.is_empty(), raw.keys.is_empty()) {
        (true, true, true) => FederationKeySource::Generate,
        (false, false, true) if raw.key_files.len() <= MAX_FEDERATION_KEYS => {
            FederationKeySource::Files(raw.key_files.iter().map(|p| resolve(p)).collect())
        }
        (false, false, true) => return invalid("federation.key_files", "at most 10 keys"),
        (false, true, false) if raw.keys.len() <= MAX_FEDERATION_KEYS => {
            FederationKeySource::KeyStore(
                raw.keys
                    .iter()
                    .map(|text| KeyReference::parse("federation.keys", text))
                    .collect::<Result<_, _>>()?,
            )
        }
        (false, true, false) => return invalid("federation.keys", "at most 10 keys"),
        (true, ..) => {
            return invalid(
                "federation.generate",
                "cannot be combined with key_files or keys",
            );
        }
        (false, false, false) => {
            return invalid(
                "federation.keys",
                "cannot be combined with key_files: the keys are in files or in a key store",
            );
        }
        (false, true, true) => {
            return invalid(
                "federation",
                "set key_files (1..=10 PEM files) or keys (1..=10 key store keys), or generate = true",
            );
        }
    };
    let ttl = Duration::from_secs(raw.token_ttl_seconds);
    if !(MIN_FEDERATION_TOKEN_TTL..=MAX_FEDERATION_TOKEN_TTL).contains(&ttl) {
        return invalid("federation.token_ttl_seconds", "must be 60..=600");
    }
    Ok(Some(FederationConfig {
        keys,
        token_ttl: ttl,
    }))
}

/// Longest `issuer`, audience or URL accepted in `[service_account]`.
pub const MAX_SA_CONFIG_STRING_LEN: usize = 1024;
/// Longest `discovery_refresh_seconds`.
pub const MAX_DISCOVERY_REFRESH_SECONDS: u64 = 86_400;
/// Shortest `discovery_refresh_seconds`.
pub const MIN_DISCOVERY_REFRESH_SECONDS: u64 = 30;

fn service_account(
    raw: RawServiceAccount,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<ServiceAccountConfig, ConfigError> {
    let invalid = |key, rule| Err(ConfigError::Invalid { key, rule });
    match TrustedActors::parse(&raw.trusted_actors) {
        Ok(_) => {}
        Err(TrustedActorError::TrailingDoubleStar { .. }) => {
            return invalid(
                "service_account.trusted_actors",
                "a pattern may not end in \"**\" (it admits every ID below its prefix): name the plugin's ID, with * or {node} for one segment",
            );
        }
        Err(TrustedActorError::UnknownCapture { .. }) => {
            return invalid(
                "service_account.trusted_actors",
                "{node} is the only capture a trusted actor pattern may have (use * for any other segment)",
            );
        }
        Err(_) => {
            return invalid(
                "service_account.trusted_actors",
                "each entry must be a spiffe id or a path pattern (at most 256 entries)",
            );
        }
    }
    if !raw.trusted_actors.is_empty() && raw.issuers.is_empty() {
        return invalid(
            "service_account.issuers",
            "at least one issuer is required when trusted_actors is set",
        );
    }
    if raw.issuers.len() > MAX_SA_ISSUERS {
        return invalid("service_account.issuers", "at most 32 issuers");
    }
    let mut issuers: Vec<SaIssuerConfig> = Vec::with_capacity(raw.issuers.len());
    for i in raw.issuers {
        if i.issuer.is_empty() || i.issuer.len() > MAX_SA_CONFIG_STRING_LEN {
            return invalid("service_account.issuers.issuer", "must be 1 to 1024 bytes");
        }
        if issuers.iter().any(|o| o.issuer == i.issuer) {
            return invalid(
                "service_account.issuers.issuer",
                "each issuer may appear once",
            );
        }
        if i.audiences.is_empty() {
            return invalid(
                "service_account.issuers.audiences",
                "must not be empty: the broker requires an audience made for it",
            );
        }
        if i.audiences.len() > MAX_SA_AUDIENCES
            || i.audiences
                .iter()
                .any(|a| a.is_empty() || a.len() > MAX_SA_CONFIG_STRING_LEN)
        {
            return invalid(
                "service_account.issuers.audiences",
                "1 to 16 audiences of 1 to 1024 bytes each",
            );
        }
        let Ok(trust_domain) = TrustDomain::parse_id_or_name(&i.trust_domain) else {
            return invalid("service_account.issuers.trust_domain", "not a trust domain");
        };
        let template = match &i.spiffe_id_template {
            None => IdTemplate::default_for(&trust_domain),
            Some(t) => match IdTemplate::parse(t, &trust_domain) {
                Ok(t) => t,
                Err(_) => {
                    return invalid(
                        "service_account.issuers.spiffe_id_template",
                        "must be spiffe://<trust_domain>/... with {namespace} exactly once and {name} at most once, as whole path segments",
                    );
                }
            },
        };
        // Without `{name}`, every account of a namespace (`default`, a CI runner, anything a
        // namespace admin creates) gets the one identity: only on purpose.
        if !template.has_name() && !i.allow_shared_identity {
            return invalid(
                "service_account.issuers.spiffe_id_template",
                "a template without {name} gives every account of a namespace one identity: set allow_shared_identity = true on the issuer if that is intended",
            );
        }
        if template.has_name() && i.allow_shared_identity {
            // Left set, it would let a later edit drop `{name}` unnoticed.
            return invalid(
                "service_account.issuers.allow_shared_identity",
                "only for a template without {name}",
            );
        }
        if !(1..=MAX_POLL_SECONDS).contains(&i.jwks_poll_seconds) {
            return invalid(
                "service_account.issuers.jwks_poll_seconds",
                "must be 1..=3600",
            );
        }
        let keys = match (i.jwks_file, i.oidc_discovery) {
            (Some(path), false) => {
                if i.discovery_url.is_some() || i.discovery_ca_file.is_some() {
                    return invalid(
                        "service_account.issuers.discovery_url",
                        "discovery settings need oidc_discovery = true",
                    );
                }
                KeySource::File {
                    path: resolve(&path),
                    poll: Duration::from_secs(i.jwks_poll_seconds),
                }
            }
            (None, true) => {
                let mut d = DiscoveryConfig::for_issuer(&i.issuer);
                if let Some(url) = i.discovery_url {
                    d.url = url;
                }
                if !d.url.starts_with("https://")
                    || d.url.len() > MAX_SA_CONFIG_STRING_LEN
                    || d.url.parse::<http::Uri>().is_err()
                {
                    return invalid(
                        "service_account.issuers.discovery_url",
                        "oidc discovery needs an https:// url (from the issuer or discovery_url)",
                    );
                }
                if !(MIN_DISCOVERY_REFRESH_SECONDS..=MAX_DISCOVERY_REFRESH_SECONDS)
                    .contains(&i.discovery_refresh_seconds)
                {
                    return invalid(
                        "service_account.issuers.discovery_refresh_seconds",
                        "must be 30..=86400",
                    );
                }
                d.ca_file = i.discovery_ca_file.map(|p| resolve(&p));
                d.refresh = Duration::from_secs(i.discovery_refresh_seconds);
                d.min_spacing = DEFAULT_MIN_REFRESH_SPACING;
                KeySource::Discovery(d)
            }
            _ => {
                return invalid(
                    "service_account.issuers",
                    "set exactly one of jwks_file and oidc_discovery = true",
                );
            }
        };
        // Two clusters mapping into the same IDs would let a namespace and account created in
        // one cluster act as one of the other: not only equal templates, any two that can
        // render one ID (`.../sa/{name}` and `.../sa/builder` both render `.../sa/builder`).
        if issuers.iter().any(|o| o.template.overlaps(&template)) {
            return invalid(
                "service_account.issuers.spiffe_id_template",
                "two issuers map service accounts to the same SPIFFE IDs: give each cluster its own trust domain or path prefix",
            );
        }
        issuers.push(SaIssuerConfig {
            issuer: i.issuer,
            audiences: i.audiences,
            trust_domain,
            template,
            allow_shared_identity: i.allow_shared_identity,
            keys,
        });
    }
    Ok(ServiceAccountConfig {
        trusted_actors: raw.trusted_actors,
        issuers,
    })
}

#[cfg(test)]
mod tests;
