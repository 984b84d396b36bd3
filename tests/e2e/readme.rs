//! The README's CLI synopsis cannot drift from the binary: every line names a real subcommand,
//! and every flag it shows is one that subcommand's `--help` lists; and every subcommand the
//! binary has appears in the synopsis.

use std::path::Path;

use crate::support::run;

fn synopsis() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let section = readme
        .split("## CLI")
        .nth(1)
        .expect("README has a CLI section");
    let block = section
        .split("```text")
        .nth(1)
        .expect("a text block")
        .split("```")
        .next()
        .unwrap();
    block
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("svid-broker "))
        .map(str::to_owned)
        .collect()
}

/// The subcommand words of a synopsis line: everything before the first flag or placeholder.
fn subcommand(line: &str) -> Vec<&str> {
    line.split_whitespace()
        .skip(1)
        .take_while(|w| {
            w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !w.starts_with('-')
        })
        .collect()
}

fn flags(line: &str) -> Vec<&str> {
    line.split_whitespace()
        .map(|w| w.trim_start_matches('['))
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches(']'))
        .collect()
}

#[test]
fn every_synopsis_line_matches_the_binarys_help() {
    let lines = synopsis();
    assert!(lines.len() >= 8, "{lines:?}");
    for line in &lines {
        let words = subcommand(line);
        assert!(!words.is_empty(), "{line}");
        let mut args = words.clone();
        args.push("--help");
        let out = run(&args, None);
        assert_eq!(
            out.code(),
            Some(0),
            "`svid-broker {}` is not a command: {out:?}",
            words.join(" ")
        );
        for flag in flags(line) {
            assert!(
                out.stdout.contains(flag),
                "README shows `{flag}` for `svid-broker {}`, which its --help does not list",
                words.join(" ")
            );
        }
    }
}

#[test]
fn every_subcommand_of_the_binary_is_in_the_synopsis() {
    let lines = synopsis();
    let out = run(&["--help"], None);
    let commands = out
        .stdout
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect::<Vec<_>>();
    assert!(commands.len() >= 7, "{commands:?}");
    for command in commands {
        assert!(
            lines
                .iter()
                .any(|l| subcommand(l).first() == Some(&command)),
            "`svid-broker {command}` is missing from the README's CLI synopsis"
        );
    }
}
