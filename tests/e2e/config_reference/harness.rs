//! The generic half of the configuration-reference check: `docs/configuration.md` against a
//! real parser. Shared by the broker's end-to-end test (broker config and policy file) and by
//! the plugin crate's unit test, which includes this file by path because only that crate can
//! reach the plugin's parser.
//!
//! A page section `<!-- check:config-keys NAME -->` ... `<!-- /check:config-keys -->` holds one table whose
//! rows are `` | `key` | type | default | allowed | meaning | ``:
//! - `key`: the full dotted path; `name[]` steps into an array of tables (`registries[].name`).
//! - default: `required`, `unset, e.g. `VALUE``, or `` `VALUE` `` (the default), as TOML.
//! - allowed: its code spans are TOML values that must be accepted, or an inclusive integer
//!   range `A..=B` whose ends must be accepted and whose outsides (`A-1`, `B+1`) refused.
//!
//! Fenced ` ```toml reference=NAME ` blocks must parse as a whole.
//!
//! The key set the parser accepts is derived from the parser itself: every config struct
//! refuses unknown fields, and serde's refusal lists the fields it expected.

use std::collections::{BTreeMap, BTreeSet};

/// A parser under test: `Ok` with a fingerprint of the parsed configuration (equal
/// fingerprints mean equal configurations), or `Err` with the error text.
pub(crate) type Parser<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// Valid configurations as `(key path, TOML value)` assignments.
pub(crate) type Base<'a> = &'a [(&'a str, &'a str)];

/// The key injected to make the parser list the fields it knows.
const PROBE: &str = "__probe";

/// How a documented key behaves when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    Required,
    Optional,
    Defaulted,
}

#[derive(Debug)]
struct Row {
    key: String,
    presence: Presence,
    /// The default or example, as TOML.
    value: String,
    /// The allowed column's code spans.
    allowed: Vec<String>,
    line: usize,
}

fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

fn rows(md: &str, name: &str) -> Vec<Row> {
    let (open, close) = (
        format!("<!-- check:config-keys {name} -->"),
        "<!-- /check:config-keys -->",
    );
    let mut out = Vec::new();
    let mut inside = false;
    let mut sections = 0;
    for (i, line) in md.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed == open {
            inside = true;
            sections += 1;
            continue;
        }
        if trimmed == close {
            inside = false;
            continue;
        }
        if !inside {
            continue;
        }
        let Some(inner) = trimmed.strip_prefix('|').and_then(|l| l.strip_suffix('|')) else {
            continue;
        };
        if inner.chars().all(|c| matches!(c, '-' | '|' | ':' | ' ')) {
            continue;
        }
        let cells: Vec<&str> = inner.split('|').map(str::trim).collect();
        assert!(cells.len() >= 5, "line {}: expected 5 columns", i + 1);
        if cells[0] == "key" {
            continue;
        }
        let key = code_spans(cells[0])
            .first()
            .unwrap_or_else(|| panic!("line {}: no key", i + 1))
            .to_string();
        let presence = if cells[2].starts_with("required") {
            Presence::Required
        } else if cells[2].starts_with("unset") {
            Presence::Optional
        } else {
            Presence::Defaulted
        };
        let value = code_spans(cells[2])
            .first()
            .unwrap_or_else(|| panic!("line {}: {key}: no default or example value", i + 1))
            .to_string();
        let allowed = code_spans(cells[3])
            .into_iter()
            .map(str::to_owned)
            .collect();
        out.push(Row {
            key,
            presence,
            value,
            allowed,
            line: i + 1,
        });
    }
    assert!(!inside, "<!-- check:config-keys {name} --> is not closed");
    assert!(sections > 0, "no <!-- check:config-keys {name} --> section");
    out
}

/// A TOML value tree, rendered with inline tables only, so that any assignment can be added
/// or removed without caring about section headers.
#[derive(Debug)]
enum Node {
    Leaf(String),
    Table(BTreeMap<String, Node>),
    /// An array of tables (one element is all a check needs).
    Array(Vec<Node>),
}

fn insert(node: &mut Node, path: &[&str], value: &str) {
    let Node::Table(map) = node else {
        panic!("{path:?}: parent is not a table")
    };
    let (head, rest) = path.split_first().expect("empty path");
    if rest.is_empty() {
        assert!(
            map.insert((*head).to_owned(), Node::Leaf(value.to_owned()))
                .is_none(),
            "{head} assigned twice"
        );
        return;
    }
    let child = if let Some(name) = head.strip_suffix("[]") {
        let array = map
            .entry(name.to_owned())
            .or_insert_with(|| Node::Array(vec![Node::Table(BTreeMap::new())]));
        let Node::Array(items) = array else {
            panic!("{name} is not an array of tables")
        };
        &mut items[0]
    } else {
        map.entry((*head).to_owned())
            .or_insert_with(|| Node::Table(BTreeMap::new()))
    };
    insert(child, rest, value);
}

fn render_node(node: &Node, out: &mut String) {
    match node {
        Node::Leaf(v) => out.push_str(v),
        Node::Table(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                out.push_str(if i == 0 { " " } else { ", " });
                out.push_str(k);
                out.push_str(" = ");
                render_node(v, out);
            }
            out.push_str(" }");
        }
        Node::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_node(v, out);
            }
            out.push(']');
        }
    }
}

/// The TOML text of `assignments`.
pub(crate) fn render(assignments: &[(&str, &str)]) -> String {
    let mut root = Node::Table(BTreeMap::new());
    for (path, value) in assignments {
        let parts: Vec<&str> = path.split('.').collect();
        insert(&mut root, &parts, value);
    }
    let Node::Table(map) = root else {
        unreachable!()
    };
    let mut out = String::new();
    for (k, v) in &map {
        out.push_str(k);
        out.push_str(" = ");
        render_node(v, &mut out);
        out.push('\n');
    }
    out
}

/// `path` itself or anything below it.
fn under(key: &str, path: &str) -> bool {
    key == path
        || key
            .strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with("[]"))
}

fn without<'a>(base: Base<'a>, path: &str) -> Vec<(&'a str, &'a str)> {
    base.iter()
        .copied()
        .filter(|(k, _)| !under(k, path))
        .collect()
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// The fields of the table at `table` as the parser lists them, or `None` if it is not a
/// table there.
fn probe(parse: Parser<'_>, base: Base<'_>, table: &str) -> Option<Vec<String>> {
    let probe_key = join(table, PROBE);
    let mut text = without(base, table.strip_suffix("[]").unwrap_or(table));
    text.push((&probe_key, "1"));
    let err = parse(&render(&text)).err()?;
    let rest = err.split(&format!("unknown field `{PROBE}`")).nth(1)?;
    if rest.contains("there are no fields") {
        return Some(Vec::new());
    }
    let expected = rest.split("expected").nth(1)?;
    Some(
        code_spans(expected)
            .into_iter()
            .map(str::to_owned)
            .collect(),
    )
}

/// Every leaf key the parser accepts, as documented paths, derived by probing.
fn accepted_keys(parse: Parser<'_>, base: Base<'_>, table: &str, out: &mut BTreeSet<String>) {
    let fields = probe(parse, base, table)
        .unwrap_or_else(|| panic!("the parser does not list the fields of `{table}`"));
    assert!(!fields.is_empty(), "`{table}` has no fields");
    for field in fields {
        let path = join(table, &field);
        if probe(parse, base, &path).is_some() {
            accepted_keys(parse, base, &path, out);
        } else if probe(parse, base, &format!("{path}[]")).is_some() {
            accepted_keys(parse, base, &format!("{path}[]"), out);
        } else {
            out.insert(path);
        }
    }
}

/// Parses `base` with `key` set to `value` (replacing any base value).
fn with(parse: Parser<'_>, base: Base<'_>, key: &str, value: &str) -> Result<String, String> {
    let mut a = without(base, key);
    a.push((key, value));
    parse(&render(&a))
}

/// The index of the first base that accepts `key = value`, or every base's error.
fn accepted_in(
    parse: Parser<'_>,
    bases: &[Base<'_>],
    key: &str,
    value: &str,
) -> Result<usize, Vec<String>> {
    let mut errors = Vec::new();
    for (i, base) in bases.iter().enumerate() {
        match with(parse, base, key, value) {
            Ok(_) => return Ok(i),
            Err(e) => errors.push(format!("base {i}: {e}")),
        }
    }
    Err(errors)
}

/// Runs every check for the `<!-- check:config-keys NAME -->` table of `md`; returns the number of
/// documented keys.
pub(crate) fn check(md: &str, name: &str, parse: Parser<'_>, bases: &[Base<'_>]) -> usize {
    for (i, base) in bases.iter().enumerate() {
        if let Err(e) = parse(&render(base)) {
            panic!("{name}: base {i} does not parse: {e}");
        }
    }
    let rows = rows(md, name);
    let mut documented = BTreeSet::new();
    for row in &rows {
        assert!(
            documented.insert(row.key.clone()),
            "{name}: `{}` is documented twice",
            row.key
        );
    }

    // Every key the parser accepts is documented, and nothing else is.
    let mut accepted = BTreeSet::new();
    accepted_keys(parse, bases[0], "", &mut accepted);
    let missing: Vec<_> = accepted.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&accepted).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{name}: keys the parser accepts but the page does not document: {missing:?}; \
         documented keys the parser does not know: {extra:?}"
    );

    for row in &rows {
        let what = format!("{name} line {}: `{}`", row.line, row.key);
        // The documented default or example is accepted.
        if let Err(errors) = accepted_in(parse, bases, &row.key, &row.value) {
            panic!("{what} = {} is refused: {errors:#?}", row.value);
        }
        match row.presence {
            Presence::Required => {
                let holders: Vec<_> = bases
                    .iter()
                    .filter(|b| b.iter().any(|(k, _)| *k == row.key))
                    .collect();
                assert!(
                    !holders.is_empty(),
                    "{what}: no base sets this required key"
                );
                for b in holders {
                    assert!(
                        parse(&render(&without(b, &row.key))).is_err(),
                        "{what} is documented as required, but a config without it parses"
                    );
                }
            }
            Presence::Optional | Presence::Defaulted => {
                assert!(
                    bases
                        .iter()
                        .any(|b| parse(&render(&without(b, &row.key))).is_ok()),
                    "{what} is documented as optional, but no config without it parses"
                );
            }
        }
        if row.presence == Presence::Defaulted {
            // Setting the documented default changes nothing, wherever the key is accepted.
            // Where some base has the key's table, only those count: a table's presence can
            // matter by itself (`[service_account]` turns a mode on).
            let parent = row.key.rsplit_once('.').map_or("", |(p, _)| p);
            let has_parent =
                |b: &Base<'_>| parent.is_empty() || b.iter().any(|(k, _)| under(k, parent));
            let any_parent = bases.iter().any(has_parent);
            let mut compared = 0;
            for (i, b) in bases.iter().enumerate() {
                if any_parent && !has_parent(b) {
                    continue;
                }
                let absent = parse(&render(&without(b, &row.key)));
                let set = with(parse, b, &row.key, &row.value);
                if let (Ok(absent), Ok(set)) = (absent, set) {
                    assert_eq!(
                        absent, set,
                        "{what}: the documented default {} is not the code's (base {i})",
                        row.value
                    );
                    compared += 1;
                }
            }
            assert!(compared > 0, "{what}: the default could not be compared");
        }
        for allowed in &row.allowed {
            check_allowed(parse, bases, &what, &row.key, allowed);
        }
    }

    for block in reference_blocks(md, name) {
        if let Err(e) = parse(&block) {
            panic!("{name}: the ```toml reference={name} block does not parse: {e}");
        }
    }
    rows.len()
}

fn check_allowed(parse: Parser<'_>, bases: &[Base<'_>], what: &str, key: &str, allowed: &str) {
    let Some((lo, hi)) = allowed.split_once("..=") else {
        if let Err(errors) = accepted_in(parse, bases, key, allowed) {
            panic!("{what}: the allowed value {allowed} is refused: {errors:#?}");
        }
        return;
    };
    let number = |s: &str| -> i128 {
        s.replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{what}: {allowed} is not an integer range"))
    };
    let (lo, hi) = (number(lo), number(hi));
    for (inside, outside) in [(lo, lo - 1), (hi, hi + 1)] {
        if let Err(errors) = accepted_in(parse, bases, key, &inside.to_string()) {
            panic!("{what}: {inside}, inside {allowed}, is refused: {errors:#?}");
        }
        let bound_enforced = bases.iter().any(|b| {
            with(parse, b, key, &inside.to_string()).is_ok()
                && with(parse, b, key, &outside.to_string()).is_err()
        });
        assert!(
            bound_enforced,
            "{what}: {outside}, outside {allowed}, is accepted"
        );
    }
}

/// The bodies of the page's ` ```toml reference=NAME ` blocks.
fn reference_blocks(md: &str, name: &str) -> Vec<String> {
    let open = format!("```toml reference={name}");
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        match &mut current {
            None if line.trim_end() == open => current = Some(String::new()),
            None => {}
            Some(body) if line.trim_end() == "```" => {
                out.push(std::mem::take(body));
                current = None;
            }
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    assert!(!out.is_empty(), "no ```toml reference={name} block");
    out
}

#[cfg(test)]
mod self_tests {
    use super::*;

    #[test]
    fn renders_inline_tables_and_arrays_of_tables() {
        let text = render(&[
            ("a.b", "1"),
            ("a.c[].d", "\"x\""),
            ("a.c[].e", "true"),
            ("z", "[]"),
        ]);
        assert_eq!(
            text,
            "a = { b = 1, c = [{ d = \"x\", e = true }] }\nz = []\n"
        );
        assert!(under("a.c[].d", "a.c"));
        assert!(under("a.c", "a.c"));
        assert!(!under("a.cd", "a.c"));
    }

    #[test]
    fn reads_rows_as_documented() {
        let md = "<!-- check:config-keys t -->\n| key | type | default | allowed | meaning |\n\
                  |---|---|---|---|---|\n| `a.b` | integer | `5` | `1..=9` | x |\n\
                  | `c` | string | required, e.g. `\"v\"` | | y |\n<!-- /check:config-keys -->\n";
        let rows = rows(md, "t");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].presence, Presence::Defaulted);
        assert_eq!(rows[0].allowed, ["1..=9"]);
        assert_eq!(rows[1].presence, Presence::Required);
        assert_eq!(rows[1].value, "\"v\"");
    }
}
