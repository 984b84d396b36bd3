//! The plugin's own configuration (`--config FILE`, TOML, unknown keys refused).
//!
//! ```toml
//! broker = "broker.example.org:8443"          # gRPC Exchange listener, host:port
//! broker_id = "spiffe://example.org/svid-broker"
//! broker_bundle_file = "/etc/svid/broker.json" # optional: bundle of the broker's trust domain
//!                                              # (PEM or SPIFFE bundle document), when the
//!                                              # Workload API does not federate with it
//! deadline_seconds = 10                        # overall, default 10, at most 55
//! safety_margin_seconds = 60                   # subtracted from the credential's life
//! log_file = "/var/log/svid-credential-provider.log"  # optional, one line per run
//!
//! [svid]
//! workload_api = "unix:///run/spire/agent.sock" # optional, else SPIFFE_ENDPOINT_SOCKET
//! auth = "x509"                                 # or "jwt" (then jwt_audience is required)
//! jwt_audience = "svid-broker"
//!
//! [[registries]]
//! service = "registry.example.org"              # the registry's token `service`
//! match_images = ["registry.example.org"]       # the kubelet's matchImages rule
//! scope = "registry"                            # or "repository"
//! actions = ["pull"]                            # repository scope: the credential's ceiling
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use svid_broker_identity::SpiffeId;
use svid_broker_identity::bundle::{BundleProvider, BundleSet, SpiffeBundle, X509Bundle};
use svid_broker_identity::report::ErrorChain;

use crate::matcher;

/// Deadline of the whole broker exchange (SVID, connect, `Exchange`, retries) when
/// `deadline_seconds` is not set.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// Largest deadline accepted: well under the kubelet's hard 60 s kill.
pub const MAX_DEADLINE: Duration = Duration::from_secs(55);
/// Default `safety_margin_seconds`: subtracted from a credential's remaining life to give the
/// kubelet's cache duration.
pub const DEFAULT_SAFETY_MARGIN: Duration = Duration::from_secs(60);
/// Largest config file read, in bytes; a larger file is refused, not cut.
pub const MAX_CONFIG_SIZE: u64 = 256 * 1024;
/// Largest broker bundle file read (`broker_bundle_file`), in bytes; a larger file is refused.
pub const MAX_BUNDLE_FILE_SIZE: u64 = 1024 * 1024;
/// Most `[[registries]]` entries in one config file; more is an error.
pub const MAX_REGISTRIES: usize = 64;
/// Most `match_images` patterns in one entry (at least one is required).
pub const MAX_PATTERNS: usize = 64;
/// The node's config file: read when nothing else names one (see the `config::search` module).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/svid-credential-provider/config.toml";
/// Environment variable naming the config file when no `--config` is given (both modes).
pub const CONFIG_ENV: &str = "SVID_CREDENTIAL_PROVIDER_CONFIG";

/// Why the config is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The config file's path as located (flag, environment, per-user or node file).
        path: PathBuf,
        /// The I/O error (`InvalidData` when the file is not UTF-8).
        #[source]
        source: std::io::Error,
    },
    /// Larger than [`MAX_CONFIG_SIZE`].
    #[error("{} is larger than {MAX_CONFIG_SIZE} bytes", .path.display())]
    TooLarge {
        /// The config file's path as given.
        path: PathBuf,
    },
    /// A FIFO, device, directory or other non-regular file.
    #[error("{} is not a regular file: the config must be a regular file", .path.display())]
    NotRegular {
        /// The config file's path as given.
        path: PathBuf,
    },
    /// Not valid TOML for this schema (the message carries line and column).
    #[error("{}: {}", .path.display(), .message.trim_end().replace('\n', " "))]
    Parse {
        /// The config file's path as given.
        path: PathBuf,
        /// The TOML parser's message, with the line and column in the config file.
        message: String,
    },
    /// A rule on a value.
    #[error("{field}: {rule}")]
    Invalid {
        /// The key's path in the config file (`deadline_seconds`, `registries[2].actions`).
        field: String,
        /// The rule the value breaks, as a fixed phrase.
        rule: &'static str,
    },
    /// A `match_images` pattern the kubelet matcher cannot parse.
    #[error("{field}: pattern {pattern:?} is invalid")]
    Pattern {
        /// The pattern's key (`registries[0].match_images[1]`).
        field: String,
        /// The pattern as written in the config file.
        pattern: String,
        /// Why the kubelet's matcher refuses it.
        #[source]
        source: matcher::MatchError,
    },
    /// `$SVID_CREDENTIAL_PROVIDER_CONFIG` names no file.
    #[error("{CONFIG_ENV} is set but empty")]
    EmptyEnv,
    /// The broker bundle file is unusable.
    #[error("broker_bundle_file {}: {reason}", .path.display())]
    Bundle {
        /// The bundle file's path, resolved against the config file's directory.
        path: PathBuf,
        /// Why it is unusable (too large, not a regular file, an I/O or bundle parse error).
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    broker: String,
    broker_id: String,
    broker_bundle_file: Option<PathBuf>,
    deadline_seconds: Option<u64>,
    safety_margin_seconds: Option<u64>,
    log_file: Option<PathBuf>,
    #[serde(default)]
    svid: RawSvid,
    #[serde(default)]
    registries: Vec<RawRegistry>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSvid {
    workload_api: Option<String>,
    #[serde(default)]
    auth: SvidAuth,
    jwt_audience: Option<String>,
}

/// How the plugin authenticates to the broker.
#[derive(Deserialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SvidAuth {
    /// mTLS with the X.509-SVID.
    #[default]
    X509,
    /// A JWT-SVID bearer.
    Jwt,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    service: String,
    match_images: Vec<String>,
    #[serde(default)]
    scope: Scope,
    actions: Option<Vec<String>>,
}

/// What one credential covers.
#[derive(Deserialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scope {
    /// The whole registry: key `host[:port]`, `cacheKeyType: Registry`.
    #[default]
    Registry,
    /// One repository: key `host[:port]/path`, `cacheKeyType: Image`.
    Repository,
}

/// One `[[registries]]` entry, validated: `service` non-empty, 1 to [`MAX_PATTERNS`] parsed
/// `match_images`, at least one action (`pull` when none is given).
#[derive(Debug, Clone)]
pub(crate) struct RegistryEntry {
    pub(crate) service: String,
    pub(crate) match_images: Vec<String>,
    pub(crate) scope: Scope,
    pub(crate) actions: Vec<String>,
}

/// The configuration after every rule passed, with `broker_bundle_file` and `log_file`
/// resolved against the config file's directory.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) broker: String,
    pub(crate) broker_id: SpiffeId,
    pub(crate) broker_bundles: Option<Arc<dyn BundleProvider>>,
    pub(crate) deadline: Duration,
    pub(crate) safety_margin: Duration,
    pub(crate) log_file: Option<PathBuf>,
    pub(crate) workload_api: Option<String>,
    pub(crate) auth: SvidAuth,
    pub(crate) jwt_audience: Option<String>,
    pub(crate) registries: Vec<RegistryEntry>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("broker", &self.broker)
            .field("broker_id", &self.broker_id)
            .field("registries", &self.registries.len())
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads and validates `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let read = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let bytes = match read_regular_capped(path, MAX_CONFIG_SIZE) {
            Ok(bytes) => bytes,
            Err(CappedReadError::TooLarge) => {
                return Err(ConfigError::TooLarge {
                    path: path.to_owned(),
                });
            }
            Err(CappedReadError::NotRegular) => {
                return Err(ConfigError::NotRegular {
                    path: path.to_owned(),
                });
            }
            Err(CappedReadError::Io(source)) => return Err(read(source)),
        };
        let text = String::from_utf8(bytes).map_err(|_| {
            read(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the config file is not UTF-8",
            ))
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_toml_str(&text, path, base)
    }

    /// Parses `text` (named `path` in errors); relative file names resolve against `base`.
    pub(crate) fn from_toml_str(text: &str, path: &Path, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |field: &str, rule| ConfigError::Invalid {
            field: field.to_owned(),
            rule,
        };
        if raw
            .broker
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(invalid("broker", "must be host:port"));
        }
        let broker_id = SpiffeId::parse(&raw.broker_id)
            .map_err(|_| invalid("broker_id", "must be a spiffe id"))?;
        let deadline = match raw.deadline_seconds {
            None => DEFAULT_DEADLINE,
            Some(0) => return Err(invalid("deadline_seconds", "must be at least 1")),
            Some(s) if Duration::from_secs(s) > MAX_DEADLINE => {
                return Err(invalid(
                    "deadline_seconds",
                    "must be at most 55 (the kubelet kills at 60)",
                ));
            }
            Some(s) => Duration::from_secs(s),
        };
        let safety_margin = raw
            .safety_margin_seconds
            .map_or(DEFAULT_SAFETY_MARGIN, Duration::from_secs);
        if raw.svid.auth == SvidAuth::Jwt
            && raw.svid.jwt_audience.as_deref().is_none_or(str::is_empty)
        {
            return Err(invalid(
                "svid.jwt_audience",
                "is required when svid.auth = \"jwt\"",
            ));
        }
        if raw.registries.len() > MAX_REGISTRIES {
            return Err(invalid("registries", "too many entries"));
        }
        let mut registries = Vec::with_capacity(raw.registries.len());
        for (i, r) in raw.registries.into_iter().enumerate() {
            let field = |name: &str| format!("registries[{i}].{name}");
            if r.service.is_empty() {
                return Err(ConfigError::Invalid {
                    field: field("service"),
                    rule: "must not be empty",
                });
            }
            if r.match_images.is_empty() || r.match_images.len() > MAX_PATTERNS {
                return Err(ConfigError::Invalid {
                    field: field("match_images"),
                    rule: "needs between 1 and 64 patterns",
                });
            }
            for (j, pattern) in r.match_images.iter().enumerate() {
                let parsed = matcher::parse(pattern).map_err(|source| ConfigError::Pattern {
                    field: field(&format!("match_images[{j}]")),
                    pattern: pattern.clone(),
                    source,
                })?;
                if matcher::path_has_glob(&parsed) {
                    return Err(ConfigError::Invalid {
                        field: field(&format!("match_images[{j}]")),
                        rule: "has a glob in its path, which the kubelet never expands (it would never match)",
                    });
                }
                for label in &parsed.labels {
                    matcher::glob_match(label, "").map_err(|source| ConfigError::Pattern {
                        field: field(&format!("match_images[{j}]")),
                        pattern: pattern.clone(),
                        source,
                    })?;
                }
            }
            let actions = r.actions.unwrap_or_else(|| vec!["pull".to_owned()]);
            if actions.is_empty()
                || actions.iter().any(|a| {
                    a.is_empty() || !a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'*')
                })
            {
                return Err(ConfigError::Invalid {
                    field: field("actions"),
                    rule: "must be non-empty action names like \"pull\"",
                });
            }
            registries.push(RegistryEntry {
                service: r.service,
                match_images: r.match_images,
                scope: r.scope,
                actions,
            });
        }
        let broker_bundles = match raw.broker_bundle_file {
            Some(file) => Some(load_bundle(&base.join(file), &broker_id)?),
            None => None,
        };
        Ok(Self {
            broker: raw.broker,
            broker_id,
            broker_bundles,
            deadline,
            safety_margin,
            log_file: raw.log_file.map(|f| base.join(f)),
            workload_api: raw.svid.workload_api,
            auth: raw.svid.auth,
            jwt_audience: raw.svid.jwt_audience,
            registries,
        })
    }

    /// The first entry one of whose patterns matches `image`, with that pattern.
    pub(crate) fn entry_for(&self, image: &str) -> Option<&RegistryEntry> {
        self.registries.iter().find(|r| {
            r.match_images
                .iter()
                .any(|p| matcher::matches(p, image).unwrap_or(false))
        })
    }
}

/// The broker's trust-domain bundle: PEM certificates or a SPIFFE bundle document.
fn load_bundle(path: &Path, broker_id: &SpiffeId) -> Result<Arc<dyn BundleProvider>, ConfigError> {
    let fail = |reason: String| ConfigError::Bundle {
        path: path.to_owned(),
        reason,
    };
    let bytes = read_regular_capped(path, MAX_BUNDLE_FILE_SIZE).map_err(|e| match e {
        CappedReadError::TooLarge => fail(format!("larger than {MAX_BUNDLE_FILE_SIZE} bytes")),
        CappedReadError::NotRegular => fail("not a regular file".to_owned()),
        CappedReadError::Io(e) => fail(e.to_string()),
    })?;
    let td = broker_id.trust_domain().clone();
    let bundle = if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        SpiffeBundle::parse_document(td, &bytes)
            .map_err(|e| fail(ErrorChain::new(&e).to_string()))?
    } else {
        let x509 = X509Bundle::from_pem(td.clone(), &bytes)
            .map_err(|e| fail(ErrorChain::new(&e).to_string()))?;
        SpiffeBundle::new(x509, svid_broker_identity::bundle::JwtBundle::empty(td))
            .map_err(|e| fail(ErrorChain::new(&e).to_string()))?
    };
    let mut set = BundleSet::new();
    set.insert(bundle)
        .map_err(|e| fail(ErrorChain::new(&e).to_string()))?;
    Ok(Arc::new(Arc::new(set)))
}

/// Why [`read_regular_capped`] read nothing.
#[derive(Debug)]
enum CappedReadError {
    Io(std::io::Error),
    NotRegular,
    TooLarge,
}

/// Reads the regular file `path`, at most `max` bytes.
///
/// Opened with `O_NONBLOCK | O_NOCTTY` and its type checked on the open handle, so a FIFO
/// (which blocks `open(2)` until a writer appears) or a device such as `/dev/zero` (which never
/// ends) is refused instead of hanging the kubelet's plugin run. Kept here rather than using
/// `svid_broker_sources::file::watched`: that crate brings the Workload API client and
/// federation stack this binary does not need.
fn read_regular_capped(path: &Path, max: u64) -> Result<Vec<u8>, CappedReadError> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(CappedReadError::Io)?;
    let meta = file.metadata().map_err(CappedReadError::Io)?;
    if !meta.is_file() {
        return Err(CappedReadError::NotRegular);
    }
    if meta.len() > max {
        return Err(CappedReadError::TooLarge);
    }
    // The file may grow between the stat and the read; `take` keeps the cap authoritative.
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(CappedReadError::Io)?;
    if bytes.len() as u64 > max {
        return Err(CappedReadError::TooLarge);
    }
    Ok(bytes)
}

pub(crate) mod search;

#[cfg(test)]
mod doc_tests;
#[cfg(test)]
mod reference_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
broker = "127.0.0.1:8443"
broker_id = "spiffe://example.org/svid-broker"
[[registries]]
service = "registry.local"
match_images = ["127.0.0.1:5000"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, Path::new("c.toml"), Path::new("/etc"))
    }

    #[test]
    fn minimal_config_has_the_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.deadline, DEFAULT_DEADLINE);
        assert_eq!(c.safety_margin, DEFAULT_SAFETY_MARGIN);
        assert_eq!(c.auth, SvidAuth::X509);
        assert_eq!(c.registries[0].scope, Scope::Registry);
        assert_eq!(c.registries[0].actions, ["pull"]);
        assert!(c.entry_for("127.0.0.1:5000/team/app").is_some());
        assert!(c.entry_for("127.0.0.1:5001/team/app").is_none());
        assert!(c.entry_for("docker.io/library/nginx").is_none());
    }

    #[test]
    fn unknown_keys_are_refused_with_a_position() {
        let e = parse(&format!("{MINIMAL}\nbrokr = 1\n")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("brokr") && text.contains("line"), "{text}");
        assert!(!text.contains('\n'));
    }

    #[test]
    fn value_rules() {
        let field = |text: &str| match parse(text) {
            Err(ConfigError::Invalid { field, .. } | ConfigError::Pattern { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(&MINIMAL.replace("127.0.0.1:8443", "nohost")),
            "broker"
        );
        assert_eq!(
            field(&MINIMAL.replace("spiffe://example.org/svid-broker", "x")),
            "broker_id"
        );
        assert_eq!(
            field(&format!("deadline_seconds = 0\n{MINIMAL}")),
            "deadline_seconds"
        );
        assert_eq!(
            field(&format!("deadline_seconds = 60\n{MINIMAL}")),
            "deadline_seconds"
        );
        assert_eq!(
            field(&MINIMAL.replace("\"127.0.0.1:5000\"", "\"127.0.0.1:5000/*\"")),
            "registries[0].match_images[0]"
        );
        assert_eq!(
            field(&MINIMAL.replace("\"127.0.0.1:5000\"", "\"%bad%\"")),
            "registries[0].match_images[0]"
        );
        assert_eq!(
            field(&MINIMAL.replace("\"127.0.0.1:5000\"", "\"reg[.io\"")),
            "registries[0].match_images[0]"
        );
        assert_eq!(
            field(&MINIMAL.replace("[\"127.0.0.1:5000\"]", "[]")),
            "registries[0].match_images"
        );
        assert_eq!(
            field(&format!("{MINIMAL}actions = [\"pull,push\"]\n")),
            "registries[0].actions"
        );
        assert_eq!(
            field(&MINIMAL.replace("[[registries]]", "[svid]\nauth = \"jwt\"\n[[registries]]")),
            "svid.jwt_audience"
        );
        let ok = parse(&format!("deadline_seconds = 55\n{MINIMAL}")).unwrap();
        assert_eq!(ok.deadline, MAX_DEADLINE);
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let c = parse(&format!("log_file = \"p.log\"\n{MINIMAL}")).unwrap();
        assert_eq!(c.log_file.unwrap(), Path::new("/etc/p.log"));
        let e = parse(&format!("broker_bundle_file = \"missing.pem\"\n{MINIMAL}")).unwrap_err();
        assert!(matches!(e, ConfigError::Bundle { .. }), "{e:?}");
    }

    /// Runs `load` on its own thread and waits at most 10 s for it: a read that blocks (a FIFO
    /// with no writer) fails the test instead of hanging it.
    fn load_bounded(path: &Path) -> Result<Config, ConfigError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let path = path.to_owned();
        std::thread::spawn(move || {
            let _ = tx.send(Config::load(&path));
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("Config::load blocked on a non-regular file")
    }

    #[test]
    fn a_config_or_bundle_that_is_not_a_regular_file_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("config.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = load_bounded(&fifo).unwrap_err();
        assert!(matches!(e, ConfigError::NotRegular { .. }), "{e:?}");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        // A device that never ends: refused, not read.
        let e = load_bounded(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(e, ConfigError::NotRegular { .. }), "{e:?}");
        // The broker bundle file goes through the same read.
        let config = dir.path().join("real.toml");
        let bundle = dir.path().join("bundle.pem");
        std::process::Command::new("mkfifo")
            .arg(&bundle)
            .status()
            .unwrap();
        std::fs::write(
            &config,
            format!("broker_bundle_file = \"bundle.pem\"\n{MINIMAL}"),
        )
        .unwrap();
        let e = load_bounded(&config).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Bundle { reason, .. } if reason == "not a regular file"),
            "{e:?}"
        );
        std::fs::write(
            &config,
            format!("broker_bundle_file = \"/dev/zero\"\n{MINIMAL}"),
        )
        .unwrap();
        let e = load_bounded(&config).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Bundle { reason, .. } if reason == "not a regular file"),
            "{e:?}"
        );
    }

    #[test]
    fn an_oversized_bundle_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("c.toml");
        let bundle = dir.path().join("bundle.pem");
        let size = usize::try_from(MAX_BUNDLE_FILE_SIZE).unwrap() + 1;
        std::fs::write(&bundle, vec![b' '; size]).unwrap();
        std::fs::write(
            &config,
            format!("broker_bundle_file = \"bundle.pem\"\n{MINIMAL}"),
        )
        .unwrap();
        let e = Config::load(&config).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Bundle { reason, .. } if reason.starts_with("larger than")),
            "{e:?}"
        );
    }

    #[test]
    fn first_matching_entry_wins() {
        let text = format!(
            "{MINIMAL}\n[[registries]]\nservice = \"second\"\nmatch_images = [\"*.example.org\", \"127.0.0.1:5000/other\"]\nscope = \"repository\"\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(
            c.entry_for("127.0.0.1:5000/other/x").unwrap().service,
            "registry.local"
        );
        assert_eq!(c.entry_for("a.example.org/x").unwrap().service, "second");
        assert_eq!(
            c.entry_for("a.example.org/x").unwrap().scope,
            Scope::Repository
        );
    }
}
