//! Command-line grammar. Parsing only: every value is validated before any runtime starts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Exchange SPIFFE identities for short-lived registry credentials.
#[derive(Debug, Parser)]
#[command(name = "svid-broker", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show the whole flow once, with no external service: a dev trust domain, the broker with
    /// a sample policy, the kubelet plugin run as a kubelet runs it, the token realm, and (when
    /// docker-registry and skopeo are installed) a real push and pull.
    ///
    /// Prints each step; exits 0 only if every step worked.
    Demo,
    /// Run a development SPIFFE trust domain: a CA and a Workload API server on a Unix socket.
    ///
    /// Runs in the foreground until SIGINT or SIGTERM. Writes DIR/workload.sock,
    /// DIR/bundle.pem and DIR/bundle.jwks.json, then prints `ready` on stdout.
    Dev(DevArgs),
    /// Check a SPIFFE ID offline.
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// Verify an SVID offline against trust bundles.
    #[command(subcommand)]
    Verify(VerifyCommand),
    /// Run the token-exchange service (token realm, JWKS, metrics, gRPC Exchange).
    ///
    /// Runs in the foreground; SIGHUP reloads the policy (the last good one is kept when the
    /// new one is invalid); SIGINT or SIGTERM drain in-flight requests and stop.
    Serve(ServeArgs),
    /// Ask a policy file, offline, what it grants.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print a registry's `auth.token` configuration and write its root certificate bundle.
    RegistryConfig(RegistryConfigArgs),
    /// Write a new RSA key for the broker's OIDC issuer (`[federation] key_files`).
    ///
    /// The file is created readable by its owner only and never overwritten; the key's `kid`
    /// (its RFC 7638 thumbprint, as the issuer's JWKS will list it) is printed on stdout.
    FederationKey(FederationKeyArgs),
    /// Key store tools, for `[signing] key` and `[federation] keys` in a PKCS#11 token or AWS
    /// KMS.
    #[command(subcommand)]
    Keystore(KeystoreCommand),
    /// Summarize an audit log file, offline.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeystoreCommand {
    /// Make what a configuration's key store keys need, leaving whatever exists.
    ///
    /// In a PKCS#11 token: generates the signing CA's key pair and its HMAC key
    /// (`signing.key`, `signing.mac_key`) and each `federation.keys` RSA key that is absent,
    /// all sensitive and never extractable. Then writes `signing.ca_cert_file`, when absent,
    /// as a CA certificate self-signed by the key store (PKCS#11 or AWS KMS). Prints one line
    /// per key and file: `generated`, `kept` or `written`.
    Init(KeystoreInitArgs),
}

#[derive(Debug, Args)]
pub(crate) struct KeystoreInitArgs {
    /// The broker's configuration file (the same one `serve` takes).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: PathBuf,
    /// The CA certificate's common name.
    #[arg(long, value_name = "NAME", default_value = "svid-broker signing ca")]
    pub(crate) common_name: String,
    /// The CA certificate's lifetime in days (1..=7300).
    #[arg(long, value_name = "DAYS", default_value_t = 1825)]
    pub(crate) ca_days: u64,
    /// The CA key's algorithm when it is generated (ES256 or ES384; the leaves' algorithm
    /// stays `signing.algorithm`).
    #[arg(long, value_name = "ALG", default_value = "ES256")]
    pub(crate) ca_algorithm: String,
}

#[derive(Debug, Args)]
pub(crate) struct FederationKeyArgs {
    /// The PEM file to create (PKCS#8); it must not exist.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The broker configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Summarize an audit log: per identity and registry what was issued and refused, the
    /// credential lifetimes, identity and repository pairs granted for the first time, and hours
    /// that stand out against the identity's own baseline.
    Report(AuditReportArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AuditReportArgs {
    /// The audit log (one JSON object per line, as `[log] audit` writes it).
    #[arg(long, value_name = "FILE")]
    pub(crate) audit: PathBuf,
    /// Only the last DURATION before the log's newest event (30m, 24h, 7d).
    #[arg(long, value_name = "DURATION")]
    pub(crate) since: Option<String>,
    /// How the report is written to stdout.
    #[arg(long, value_enum, default_value_t = AuditFormat::Markdown)]
    pub(crate) format: AuditFormat,
}

/// `audit report --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum AuditFormat {
    /// Markdown with headed sections and tables (the default).
    Markdown,
    /// One JSON object.
    Json,
    /// A self-contained HTML page with charts (inline CSS and SVG, no script).
    Html,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Show what a policy grants a subject, and which rules decided it.
    Explain {
        /// The policy file (TOML).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// The SPIFFE ID the decision is for, e.g. spiffe://example.org/ci/builder.
        #[arg(long, value_name = "ID")]
        subject: String,
        /// The registry `service` (token audience).
        #[arg(long, value_name = "SERVICE")]
        service: String,
        /// A requested scope, e.g. repository:team/app:pull,push; repeat or space-join for more.
        #[arg(long = "scope", value_name = "SCOPE", required = true)]
        scopes: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct RegistryConfigArgs {
    /// The broker configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: PathBuf,
    /// The registry's `name` in the policy.
    #[arg(long, value_name = "NAME")]
    pub(crate) registry: String,
    /// Where to write NAME-rootcertbundle.pem.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub(crate) out_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Directory for the Workload API socket and the bundle files (created if missing).
    #[arg(long, value_name = "DIR", default_value_os_t = default_dev_dir())]
    pub(crate) dir: PathBuf,
    /// SPIFFE ID to issue SVIDs for; repeat for more. The first is the default identity.
    #[arg(
        long = "spiffe-id",
        value_name = "ID",
        default_value = "spiffe://example.org/workload"
    )]
    pub(crate) spiffe_ids: Vec<String>,
    /// Trust domain of the CA; defaults to the trust domain of the first --spiffe-id.
    #[arg(long, value_name = "TD")]
    pub(crate) trust_domain: Option<String>,
}

fn default_dev_dir() -> PathBuf {
    std::env::temp_dir().join("svid-broker-dev")
}

#[derive(Debug, Subcommand)]
pub(crate) enum InspectCommand {
    /// Check a SPIFFE ID against SPIFFE-ID.md (strict: lower-case scheme and trust domain).
    Id {
        /// Print one JSON object with `trust_domain` and `path`.
        #[arg(long)]
        json: bool,
        /// The SPIFFE ID, e.g. spiffe://example.org/ns/prod/sa/api.
        #[arg(value_name = "ID", allow_hyphen_values = true)]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum VerifyCommand {
    /// Validate a JWT-SVID; prints its SPIFFE ID when valid.
    Jwt {
        /// Trust bundle as TD=FILE, FILE a SPIFFE bundle document; repeat for more trust domains.
        #[arg(long = "bundle", value_name = "TD=FILE", required = true)]
        bundles: Vec<String>,
        /// An audience this verifier accepts; repeat for more (the token must name one of them).
        #[arg(long = "audience", value_name = "AUD", required = true)]
        audiences: Vec<String>,
        /// Judge the token at this Unix time instead of now.
        #[arg(long, value_name = "UNIX_SECONDS")]
        at: Option<u64>,
        /// Clock-skew allowance for exp, nbf and iat, in seconds.
        #[arg(long, value_name = "SECONDS")]
        leeway: Option<u64>,
        /// The token, or `-` to read it from stdin.
        #[arg(value_name = "TOKEN", allow_hyphen_values = true)]
        token: String,
    },
    /// Verify an X.509-SVID chain; prints its SPIFFE ID when valid.
    X509 {
        /// Trust bundle as TD=FILE, FILE a PEM bundle or a SPIFFE bundle document; repeatable.
        #[arg(long = "bundle", value_name = "TD=FILE", required = true)]
        bundles: Vec<String>,
        /// Judge the chain at this Unix time instead of now.
        #[arg(long, value_name = "UNIX_SECONDS")]
        at: Option<u64>,
        /// PEM file holding the chain, leaf first.
        #[arg(value_name = "CHAIN_PEM")]
        chain: PathBuf,
    },
}
