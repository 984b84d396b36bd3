//! `docs/credential-helper.md` checked against the code: its ` ```toml plugin-config ` blocks
//! load with the real parser, its JSON and YAML snippets are well formed and name the helper,
//! every code span in the first column of its `<!-- checked-messages -->` table is still in the
//! sources (`…` stands for a formatted value), and the names, paths, limits and the node-file
//! notice it quotes are the code's.

#[allow(dead_code, reason = "shared with tests/e2e: this test uses part of it")]
#[path = "../../../../tests/e2e/markdown.rs"]
mod markdown;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::search::{USER_CONFIG_FILE, node_fallback_notice};
use super::{CONFIG_ENV, Config, DEFAULT_CONFIG_PATH};
use crate::docker::MAX_SERVER_URL_LEN;
use markdown::blocks;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn page() -> String {
    std::fs::read_to_string(manifest_dir().join("../../docs/credential-helper.md")).unwrap()
}

/// The text of every `.rs` file under `dir`, with `\"` unescaped so quoted messages match.
fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(
                &std::fs::read_to_string(&path)
                    .unwrap()
                    .replace("\\\"", "\""),
            );
        }
    }
}

#[test]
fn config_examples_load_with_the_real_parser() {
    let md = page();
    let dir = tempfile::tempdir().unwrap();
    let mut loaded = 0;
    for b in blocks(&md)
        .iter()
        .filter(|b| b.lang() == "toml" && b.has("plugin-config"))
    {
        let config = Config::from_toml_str(&b.body, Path::new("config.toml"), dir.path())
            .unwrap_or_else(|e| panic!("credential-helper.md line {}: {e}", b.line));
        assert!(!config.registries.is_empty(), "line {}", b.line);
        if let Some(log) = &config.log_file {
            assert!(
                log.starts_with(dir.path()),
                "relative to the config's directory"
            );
        }
        loaded += 1;
    }
    assert!(loaded >= 1, "no ```toml plugin-config block");
}

#[test]
fn client_snippets_are_well_formed_and_name_the_helper() {
    let md = page();
    let all = blocks(&md);
    let mut json = 0;
    for b in all.iter().filter(|b| b.lang() == "json") {
        let value: serde_json::Value = serde_json::from_str(&b.body)
            .unwrap_or_else(|e| panic!("credential-helper.md line {}: {e}", b.line));
        let helpers = value["credHelpers"].as_object().unwrap();
        assert!(!helpers.is_empty());
        assert!(helpers.values().all(|v| v == "svid"), "line {}", b.line);
        json += 1;
    }
    assert!(json >= 2, "the docker and containers examples");
    let yaml: Vec<_> = all.iter().filter(|b| b.lang() == "yaml").collect();
    assert_eq!(yaml.len(), 1);
    let value: serde_norway::Value = serde_norway::from_str(&yaml[0].body).unwrap();
    let command = value["proxy"]["exec"]["command"].as_str().unwrap();
    let name = Path::new(command).file_name().unwrap().to_string_lossy();
    assert!(name.starts_with("docker-credential-"), "{command}");
}

#[test]
fn quoted_messages_are_still_in_the_sources() {
    let mut corpus = String::new();
    sources(&manifest_dir().join("src"), &mut corpus);
    sources(&manifest_dir().join("../client/src"), &mut corpus);
    let md = page();
    let section = md
        .split("<!-- check:messages -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- /check:messages -->").next())
        .unwrap();
    let mut checked = 0;
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split(" | ").next().unwrap();
        for span in first.split('`').skip(1).step_by(2) {
            for fragment in span.split('…') {
                // `class: detail` lines are composed; the prefix is one literal, the rest another.
                let fragment = fragment.trim().trim_end_matches(':');
                let parts = match fragment.strip_prefix("config error: ") {
                    Some(rest) => vec!["config error: {", rest],
                    None => vec![fragment],
                };
                for part in parts.into_iter().filter(|p| !p.is_empty()) {
                    assert!(
                        corpus.contains(part),
                        "{part:?} (from `{span}`) is not in the sources"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 14, "only {checked} messages checked");
}

#[test]
fn cited_names_limits_and_the_notice_are_the_code_s() {
    let md = page();
    for text in [
        DEFAULT_CONFIG_PATH.to_owned(),
        CONFIG_ENV.to_owned(),
        format!("$XDG_CONFIG_HOME/{USER_CONFIG_FILE}"),
        format!("$HOME/.config/{USER_CONFIG_FILE}"),
        format!("at most {MAX_SERVER_URL_LEN} bytes"),
        format!("more than {MAX_SERVER_URL_LEN} bytes"),
    ] {
        assert!(
            md.contains(&text),
            "credential-helper.md does not say {text:?}"
        );
    }
    let home = |name: &str| (name == "HOME").then(|| OsString::from("/home/dev"));
    let notice = format!("docker-credential-svid: {}", node_fallback_notice(&home));
    assert!(
        md.lines().any(|l| l.trim() == notice),
        "the page does not show the notice as printed: {notice}"
    );
}
