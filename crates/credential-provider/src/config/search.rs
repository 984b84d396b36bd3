//! Which config file a run uses.
//!
//! - Kubelet mode: `--config FILE`, else `$SVID_CREDENTIAL_PROVIDER_CONFIG`, else the node's
//!   [`DEFAULT_CONFIG_PATH`]. The kubelet runs the plugin as root with its own environment, so
//!   no per-user file is consulted.
//! - Credential-helper mode (`docker-credential-svid` has no flags):
//!   `$SVID_CREDENTIAL_PROVIDER_CONFIG`, else the per-user file
//!   `$XDG_CONFIG_HOME/svid-credential-provider/config.toml` (`$HOME/.config/…` when
//!   `XDG_CONFIG_HOME` is unset, empty or relative, as the XDG base directory spec says) if it
//!   exists, else the node's file. The caller says so on stderr when it falls back to the node's
//!   file: a helper run by a user on a node must never act as the node without a word.
//!
//! The environment is passed in, so tests never touch the process's own.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{CONFIG_ENV, ConfigError, DEFAULT_CONFIG_PATH};

/// The per-user config file, relative to the XDG config directory.
pub const USER_CONFIG_FILE: &str = "svid-credential-provider/config.toml";

/// Where the config file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigSource {
    /// `--config`.
    Flag,
    /// `$SVID_CREDENTIAL_PROVIDER_CONFIG`.
    Env,
    /// The per-user file (helper mode only).
    User,
    /// [`DEFAULT_CONFIG_PATH`], when nothing else named a file.
    Node,
}

/// The file to load, and why that one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located {
    /// The config file's path, as the flag or variable gives it (not resolved) or the default.
    pub(crate) path: PathBuf,
    /// Which rule chose it.
    pub(crate) source: ConfigSource,
}

/// A lookup of one environment variable.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// Where a kubelet-mode run's config is: `--config`, else the variable, else the node's file.
pub(crate) fn for_kubelet(flag: Option<&Path>, env: Env<'_>) -> Result<Located, ConfigError> {
    if let Some(path) = flag {
        return Ok(Located {
            path: path.to_owned(),
            source: ConfigSource::Flag,
        });
    }
    Ok(from_env(env)?.unwrap_or_else(node))
}

/// Where a credential-helper run's config is: the variable, else an existing per-user file,
/// else the node's file.
pub(crate) fn for_helper(env: Env<'_>) -> Result<Located, ConfigError> {
    if let Some(located) = from_env(env)? {
        return Ok(located);
    }
    if let Some(path) = user_config_path(env)
        && exists(&path)
    {
        return Ok(Located {
            path,
            source: ConfigSource::User,
        });
    }
    Ok(node())
}

/// The per-user config file's path, when `XDG_CONFIG_HOME` or `HOME` is an absolute path.
pub(crate) fn user_config_path(env: Env<'_>) -> Option<PathBuf> {
    let absolute = |name: &str| env(name).map(PathBuf::from).filter(|p| p.is_absolute());
    absolute("XDG_CONFIG_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".config")))
        .map(|dir| dir.join(USER_CONFIG_FILE))
}

/// The stderr line of a helper run that falls back to the node's file.
pub(crate) fn node_fallback_notice(env: Env<'_>) -> String {
    let user = user_config_path(env).map_or_else(
        || "no per-user config (neither XDG_CONFIG_HOME nor HOME is an absolute path)".to_owned(),
        |p| format!("no {}", p.display()),
    );
    format!(
        "using the node's config {DEFAULT_CONFIG_PATH}: {CONFIG_ENV} is unset and there is {user}"
    )
}

fn from_env(env: Env<'_>) -> Result<Option<Located>, ConfigError> {
    match env(CONFIG_ENV) {
        None => Ok(None),
        Some(value) if value.is_empty() => Err(ConfigError::EmptyEnv),
        Some(value) => Ok(Some(Located {
            path: PathBuf::from(value),
            source: ConfigSource::Env,
        })),
    }
}

fn node() -> Located {
    Located {
        path: PathBuf::from(DEFAULT_CONFIG_PATH),
        source: ConfigSource::Node,
    }
}

/// Anything but "not found" counts as present, so that an unreadable per-user file is an error
/// the user sees rather than a silent switch to the node's identity.
fn exists(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// An environment of exactly `vars`.
    fn env_of(vars: &[(&str, &Path)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let map: BTreeMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_os_str().to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn write(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }

    #[test]
    fn helper_order_is_env_then_user_then_node() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let xdg = dir.path().join("xdg");
        let named = dir.path().join("named.toml");
        let home_file = home.join(".config").join(USER_CONFIG_FILE);
        let xdg_file = xdg.join(USER_CONFIG_FILE);

        // Nothing exists yet: the node's file, and the notice names the per-user path.
        let env = env_of(&[("HOME", &home)]);
        assert_eq!(for_helper(&env).unwrap(), node());
        let notice = node_fallback_notice(&env);
        assert!(
            notice.starts_with("using the node's config /etc/svid-credential-provider/config.toml")
                && notice.contains(&home_file.display().to_string()),
            "{notice}"
        );

        write(&home_file);
        let got = for_helper(&env).unwrap();
        assert_eq!(
            (got.path, got.source),
            (home_file.clone(), ConfigSource::User)
        );

        // XDG_CONFIG_HOME replaces $HOME/.config, even when only the $HOME file exists.
        let env = env_of(&[("HOME", &home), ("XDG_CONFIG_HOME", &xdg)]);
        assert_eq!(for_helper(&env).unwrap(), node());
        write(&xdg_file);
        assert_eq!(for_helper(&env).unwrap().path, xdg_file);

        // A relative or empty XDG_CONFIG_HOME is ignored.
        for bad in ["relative/dir", ""] {
            let env = env_of(&[("HOME", &home), ("XDG_CONFIG_HOME", Path::new(bad))]);
            assert_eq!(for_helper(&env).unwrap().path, home_file, "{bad:?}");
        }

        // The variable wins over an existing per-user file, even a missing file it names.
        let env = env_of(&[
            ("HOME", &home),
            ("XDG_CONFIG_HOME", &xdg),
            (CONFIG_ENV, &named),
        ]);
        let got = for_helper(&env).unwrap();
        assert_eq!((got.path, got.source), (named.clone(), ConfigSource::Env));
    }

    #[test]
    fn without_a_usable_home_the_helper_says_so() {
        let env = env_of(&[("HOME", Path::new("not/absolute"))]);
        assert_eq!(user_config_path(&env), None);
        assert_eq!(for_helper(&env).unwrap(), node());
        assert!(
            node_fallback_notice(&env).ends_with(
                "there is no per-user config (neither XDG_CONFIG_HOME nor HOME is an absolute path)"
            ),
            "{}",
            node_fallback_notice(&env)
        );
        assert_eq!(for_helper(&env_of(&[])).unwrap(), node());
    }

    #[test]
    fn an_unreadable_per_user_file_is_used_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        // `.config` is a file, so the per-user path cannot be looked at: not "not found".
        std::fs::write(dir.path().join(".config"), "").unwrap();
        let env = env_of(&[("HOME", dir.path())]);
        assert_eq!(for_helper(&env).unwrap().source, ConfigSource::User);
        // A dangling link is there, too.
        let xdg = dir.path().join("xdg");
        std::fs::create_dir_all(xdg.join("svid-credential-provider")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", xdg.join(USER_CONFIG_FILE)).unwrap();
        let env = env_of(&[("XDG_CONFIG_HOME", &xdg)]);
        assert_eq!(for_helper(&env).unwrap().source, ConfigSource::User);
    }

    #[test]
    fn kubelet_mode_never_reads_a_per_user_file() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join(".config").join(USER_CONFIG_FILE));
        let env = env_of(&[("HOME", dir.path())]);
        assert_eq!(for_kubelet(None, &env).unwrap(), node());
        let flag = Path::new("/x/flag.toml");
        let named = dir.path().join("named.toml");
        let env = env_of(&[("HOME", dir.path()), (CONFIG_ENV, &named)]);
        assert_eq!(for_kubelet(None, &env).unwrap().path, named);
        let got = for_kubelet(Some(flag), &env).unwrap();
        assert_eq!((got.path.as_path(), got.source), (flag, ConfigSource::Flag));
    }

    #[test]
    fn an_empty_variable_is_refused_in_both_modes() {
        let env = env_of(&[(CONFIG_ENV, Path::new(""))]);
        for result in [for_helper(&env), for_kubelet(None, &env)] {
            let e = result.unwrap_err();
            assert_eq!(
                e.to_string(),
                "SVID_CREDENTIAL_PROVIDER_CONFIG is set but empty"
            );
        }
    }
}
