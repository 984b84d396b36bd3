//! `docker-credential-svid` without a broker: which config file it uses (the variable, the
//! per-user file, the node's file said out loud) and the log line it appends. Each run gets
//! exactly the environment it names (see [`run`]), never this process's.

use std::path::{Path, PathBuf};

use crate::support::{Output, PLUGIN, plugin, run};

const NODE_CONFIG: &str = "/etc/svid-credential-provider/config.toml";
const NOTICE: &str = "docker-credential-svid: using the node's config /etc/svid-credential-provider/config.toml: SVID_CREDENTIAL_PROVIDER_CONFIG is unset and there is no ";

/// A temporary directory with the helper linked into it.
struct Helper {
    dir: tempfile::TempDir,
    link: PathBuf,
}

impl Helper {
    fn new() -> Helper {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("docker-credential-svid");
        std::os::unix::fs::symlink(PLUGIN, &link).unwrap();
        Helper { dir, link }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run(&self, verb: &str, env: &[(&str, &Path)], stdin: &str) -> Output {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.to_str().unwrap())).collect();
        run(&self.link, &[verb], &env, stdin)
    }
}

/// A config at `path` serving the one registry `host` (its Workload API does not exist), with
/// `extra` top-level lines.
fn write_config(path: &Path, host: &str, extra: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let missing = path.parent().unwrap().join("missing.sock");
    std::fs::write(
        path,
        format!(
            "broker = \"127.0.0.1:1\"\nbroker_id = \"spiffe://broker.test/svid-broker\"\n\
             deadline_seconds = 5\n{extra}\n[svid]\nworkload_api = \"unix://{}\"\n\
             [[registries]]\nservice = \"{host}\"\nmatch_images = [\"{host}\"]\n",
            missing.display()
        ),
    )
    .unwrap();
}

fn listed(host: &str) -> String {
    format!("{{\"{host}\":\"\"}}\n")
}

#[test]
fn helper_config_search_is_variable_then_per_user_file_then_node_file() {
    let h = Helper::new();
    let home = h.path("home");
    let xdg = h.path("xdg");
    let home_file = home.join(".config/svid-credential-provider/config.toml");
    std::fs::create_dir_all(&home).unwrap();

    // Nothing names a config and there is no per-user file: the node's file, said on stderr.
    let out = h.run("list", &[("HOME", &home)], "");
    assert_eq!(
        out.one_stderr_line(),
        format!("{NOTICE}{}", home_file.display()),
        "{out:?}"
    );
    if !Path::new(NODE_CONFIG).exists() {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        // One line naming the file (and, through the error chain, the OS's reason).
        assert!(
            out.stdout
                .starts_with(&format!("config error: cannot read {NODE_CONFIG}"))
                && out.stdout.lines().count() == 1,
            "{out:?}"
        );
    }
    // No usable HOME at all: the same fallback, and the notice says why.
    let out = h.run("list", &[], "");
    assert!(
        out.one_stderr_line()
            .ends_with("no per-user config (neither XDG_CONFIG_HOME nor HOME is an absolute path)"),
        "{out:?}"
    );

    // $HOME/.config/svid-credential-provider/config.toml, silently.
    write_config(&home_file, "home.test:5000", "");
    let out = h.run("list", &[("HOME", &home)], "");
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, listed("home.test:5000"));
    assert_eq!(out.stderr, "");

    // $XDG_CONFIG_HOME replaces $HOME/.config.
    write_config(
        &xdg.join("svid-credential-provider/config.toml"),
        "xdg.test:5000",
        "",
    );
    let out = h.run("list", &[("HOME", &home), ("XDG_CONFIG_HOME", &xdg)], "");
    assert_eq!(out.stdout, listed("xdg.test:5000"), "{out:?}");
    assert_eq!(out.stderr, "");

    // The variable wins over both.
    let named = h.path("named.toml");
    write_config(&named, "env.test:5000", "");
    let env = [
        ("HOME", home.as_path()),
        ("XDG_CONFIG_HOME", xdg.as_path()),
        ("SVID_CREDENTIAL_PROVIDER_CONFIG", named.as_path()),
    ];
    let out = h.run("list", &env, "");
    assert_eq!(out.stdout, listed("env.test:5000"), "{out:?}");
    assert_eq!(out.stderr, "");

    // A variable naming a missing file is an error, never a fallback.
    let env = [
        ("HOME", home.as_path()),
        (
            "SVID_CREDENTIAL_PROVIDER_CONFIG",
            Path::new("/nonexistent/c.toml"),
        ),
    ];
    let out = h.run("list", &env, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout
            .starts_with("config error: cannot read /nonexistent/c.toml")
            && out.stdout.lines().count() == 1,
        "{out:?}"
    );
    assert_eq!(out.stderr, "");

    // Kubelet mode never reads the per-user file.
    let request = r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"home.test:5000/team/app"}"#;
    if !Path::new(NODE_CONFIG).exists() {
        let out = plugin(&[], &[("HOME", home.to_str().unwrap())], request);
        assert!(!out.success());
        assert!(
            out.one_stderr_line().starts_with(&format!(
                "svid-credential-provider: config error: cannot read {NODE_CONFIG}"
            )),
            "{out:?}"
        );
    }
}

#[test]
fn helper_runs_append_to_the_configured_log_file() {
    let h = Helper::new();
    let config = h.path("conf/config.toml");
    write_config(&config, "registry.test:5000", "log_file = \"helper.log\"");
    let env = [("SVID_CREDENTIAL_PROVIDER_CONFIG", config.as_path())];

    assert!(h.run("list", &env, "").success());
    let out = h.run("get", &env, "https://index.docker.io/v1/\n");
    assert_eq!(out.stdout, "credentials not found in native keychain\n");
    let out = h.run("get", &env, "registry.test:5000\n");
    assert!(
        out.stdout.starts_with("workload api unreachable"),
        "{out:?}"
    );
    // Verbs that read no config log nothing (they know no log file).
    assert!(h.run("version", &env, "").success());

    // Relative to the config's directory, like every path in it.
    let log = std::fs::read_to_string(h.path("conf/helper.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    let config = format!("config={:?}", config.display().to_string());
    for (line, want) in lines.iter().zip([
        "outcome=ok helper=list server=\"\" ",
        "outcome=not-ours helper=get server=\"index.docker.io\" ",
        "outcome=error helper=get server=\"registry.test:5000\" ",
    ]) {
        assert!(line.starts_with("ts="), "{line}");
        assert!(line.contains(want), "want {want:?} in {line}");
        assert!(line.contains(&config), "{line}");
        assert!(line.contains(" elapsed_ms="), "{line}");
    }
    assert!(lines[0].ends_with(" hosts=1"), "{}", lines[0]);
    assert!(
        lines[1].ends_with(" credentials not found in native keychain"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("workload api unreachable"),
        "{}",
        lines[2]
    );
}
