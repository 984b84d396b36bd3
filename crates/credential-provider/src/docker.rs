//! Docker credential helper protocol, when run as `docker-credential-svid` (a link to this
//! binary): `get`, `list`, `version`; `store` and `erase` refuse. Per that protocol, errors go to
//! **stdout** with exit status 1.
//!
//! `get` always asks for a registry-wide login credential (a server URL names no repository);
//! the broker's policy still bounds what it can do.

use std::io::{Read, Write};
use std::process::ExitCode;

use serde::Serialize;
use svid_broker_client::{ExchangeParams, ExposeSecret as _, blocking};

use crate::config::Config;
use crate::matcher;

/// Largest server URL read from stdin.
pub const MAX_SERVER_URL_LEN: usize = 4096;
/// The protocol's not-found sentinel.
const NOT_FOUND: &str = "credentials not found in native keychain";

#[derive(Serialize)]
struct GetResponse<'a> {
    #[serde(rename = "ServerURL")]
    server_url: &'a str,
    #[serde(rename = "Username")]
    username: &'a str,
    #[serde(rename = "Secret")]
    secret: &'a str,
}

/// `host[:port]` of a server URL as Docker passes it (`https://index.docker.io/v1/`,
/// `reg.io:5000`, `http://reg.io/v2/`).
pub(crate) fn server_host(url: &str) -> &str {
    let url = url.trim();
    let url = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    url.split('/').next().unwrap_or(url)
}

/// Whether a `match_images` pattern's host part (ignoring its path) matches `host`.
pub(crate) fn pattern_covers_host(pattern: &str, host: &str) -> bool {
    let (Ok(mut p), Ok(h)) = (matcher::parse(pattern), matcher::parse(host)) else {
        return false;
    };
    p.path.clear();
    matcher::urls_match(&p, &h).unwrap_or(false)
}

/// What one helper run did, for the log file (never the secret).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct HelperLog {
    /// `ok`, `not-ours` (the protocol's not-found answer) or `error`.
    pub(crate) outcome: &'static str,
    /// The server URL's `host[:port]` (`get` only).
    pub(crate) server: String,
    /// The subject on success, else the message printed.
    pub(crate) detail: String,
}

/// Runs one helper verb; `load` yields the config.
pub(crate) fn run(
    verb: Option<&str>,
    load: impl FnOnce() -> Result<Config, String>,
    stdout: &mut impl Write,
) -> (ExitCode, HelperLog) {
    let mut log = HelperLog::default();
    let result = match verb {
        Some("get") => get(load, stdout, &mut log),
        Some("list") => list(load, stdout, &mut log),
        Some("version" | "--version" | "-v") => writeln!(
            stdout,
            "docker-credential-svid (svid-credential-provider) {}",
            env!("CARGO_PKG_VERSION")
        )
        .map_err(|e| e.to_string()),
        Some(verb @ ("store" | "erase")) => {
            // Drain the input the caller sends, then refuse.
            let _ = std::io::stdin()
                .take(64 * 1024)
                .read_to_end(&mut Vec::new());
            Err(format!(
                "{verb} is not supported: credentials are issued on demand from this workload's spiffe identity"
            ))
        }
        Some(other) => Err(format!(
            "unknown command {:?}: use get, list or version",
            other.chars().take(32).collect::<String>()
        )),
        None => Err("usage: docker-credential-svid get|list|version".to_owned()),
    };
    match result {
        Ok(()) => {
            log.outcome = "ok";
            (ExitCode::SUCCESS, log)
        }
        Err(message) => {
            let message = message.replace('\n', " ");
            let _ = writeln!(stdout, "{message}");
            log.outcome = if message == NOT_FOUND {
                "not-ours"
            } else {
                "error"
            };
            log.detail = message;
            (ExitCode::FAILURE, log)
        }
    }
}

fn get(
    load: impl FnOnce() -> Result<Config, String>,
    stdout: &mut impl Write,
    log: &mut HelperLog,
) -> Result<(), String> {
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_SERVER_URL_LEN as u64 + 1)
        .read_to_end(&mut input)
        .map_err(|e| format!("cannot read the server url: {e}"))?;
    if input.len() > MAX_SERVER_URL_LEN {
        return Err("server url too long".to_owned());
    }
    let url = String::from_utf8(input).map_err(|_| "server url is not utf-8".to_owned())?;
    let url = url.trim();
    let host = server_host(url);
    if host.is_empty() {
        return Err("no server url given".to_owned());
    }
    log.server = host.chars().take(256).collect();
    let config = load()?;
    let Some(entry) = config
        .registries
        .iter()
        .find(|r| r.match_images.iter().any(|p| pattern_covers_host(p, host)))
    else {
        return Err(NOT_FOUND.to_owned());
    };
    let options = crate::provider::client_options(&config);
    let credential = blocking::exchange_once(
        options,
        &ExchangeParams::login_credential(entry.service.clone()),
    )
    .map_err(|e| format!("{}: {}", e.class(), e.one_line()))?;
    let body = zeroize::Zeroizing::new(
        serde_json::to_string(&GetResponse {
            server_url: url,
            username: &credential.username,
            secret: credential.secret.expose_secret(),
        })
        .map_err(|e| e.to_string())?,
    );
    writeln!(stdout, "{}", body.as_str()).map_err(|e| e.to_string())?;
    log.detail = format!("subject={}", credential.subject);
    Ok(())
}

/// Nothing is stored, so nothing has a user name yet: the literal registry hosts map to `""`.
fn list(
    load: impl FnOnce() -> Result<Config, String>,
    stdout: &mut impl Write,
    log: &mut HelperLog,
) -> Result<(), String> {
    let config = load()?;
    let mut hosts = std::collections::BTreeMap::new();
    for entry in &config.registries {
        for pattern in &entry.match_images {
            let host = pattern.split('/').next().unwrap_or(pattern);
            if !host.contains(['*', '?', '[']) {
                hosts.insert(host.to_owned(), String::new());
            }
        }
    }
    let text = serde_json::to_string(&hosts).map_err(|e| e.to_string())?;
    writeln!(stdout, "{text}").map_err(|e| e.to_string())?;
    log.detail = format!("hosts={}", hosts.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_reduce_to_host_and_port() {
        assert_eq!(
            server_host("https://index.docker.io/v1/"),
            "index.docker.io"
        );
        assert_eq!(server_host("reg.io:5000"), "reg.io:5000");
        assert_eq!(server_host(" http://reg.io/v2/\n"), "reg.io");
    }

    #[test]
    fn pattern_hosts_cover_server_hosts() {
        assert!(pattern_covers_host("127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(pattern_covers_host("127.0.0.1:5000/team", "127.0.0.1:5000"));
        assert!(pattern_covers_host("*.example.org", "a.example.org"));
        assert!(!pattern_covers_host("*.example.org", "example.org"));
        assert!(!pattern_covers_host("127.0.0.1:5000", "127.0.0.1:5001"));
    }

    #[test]
    fn store_and_unknown_verbs_refuse_on_stdout() {
        let mut out = Vec::new();
        let (code, log) = run(Some("frobnicate"), || Err("unused".into()), &mut out);
        assert_eq!(code, ExitCode::FAILURE);
        assert_eq!(log.outcome, "error");
        assert!(
            String::from_utf8(out)
                .unwrap()
                .starts_with("unknown command")
        );
        let mut out = Vec::new();
        assert_eq!(
            run(Some("version"), || Err("unused".into()), &mut out).0,
            ExitCode::SUCCESS
        );
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("docker-credential-svid")
        );
    }
}
