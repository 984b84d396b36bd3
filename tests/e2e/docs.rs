//! The operator documentation, executed: every snippet in `docs/*.md` that a reader would copy
//! is run against the real binary or checked against the code, so the docs cannot drift.
//!
//! Markers the docs use (each is a fenced block's info string, or an HTML comment):
//! - ` ```toml policy=NAME `: a policy file. It must load (`svid-broker policy explain` gets past
//!   `--policy`), unless the info string also says `invalid`, in which case loading must fail.
//!   Every one is used by a command or a config block of the same page.
//! - ` ```toml config=NAME `: a broker config file; it must load with the policy it names.
//! - ` ```console test ` (optionally `exit=N`): `$ svid-broker ARGS` (with `\` continuation
//!   lines), then the exact output: stdout when the exit code is 0, else stderr (stdout must then
//!   be empty). Runs in a directory holding the page's named files and a freshly generated
//!   signing CA (`ca.pem`, `ca.key`); `--out-dir DIR` is redirected there and mapped back.
//! - ` ```yaml contains-output ` (any language): must contain one checked command's output.
//! - `<!-- checked-messages -->` ... `<!-- /checked-messages -->`: in each table row, every code
//!   span of the first column is an error text that must still be in the crates' sources (`…`
//!   stands for a formatted value).
//! - `<!-- checked-consts -->` ... `<!-- /checked-consts -->`: rows `` `NAME` | crate | value ``;
//!   the const must exist in that crate with exactly that value (seconds for durations), and be
//!   used somewhere in the crates' code (not only declared, not only in tests or comments).
//! - `<!-- checked-metrics -->` and `<!-- checked-audit-fields -->` sections: the metric names
//!   and audit event fields, both ways against the code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::markdown::{Block, blocks};
use crate::support::{Output, run};

/// Every page this test covers.
const PAGES: [&str; 6] = [
    "architecture.md",
    "security.md",
    "policy-guide.md",
    "registry-setup.md",
    "operations.md",
    "troubleshooting.md",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn page(name: &str) -> String {
    let path = repo_root().join("docs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut in_word) = (false, false);
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    assert!(!quoted, "unbalanced quote in {line:?}");
    if in_word {
        words.push(cur);
    }
    words
}

/// A `console test` block split into the command's arguments (without `svid-broker`) and the
/// expected output.
fn command_and_output(block: &Block) -> (Vec<String>, String) {
    let mut lines = block.body.lines();
    let mut command = lines
        .next()
        .and_then(|l| l.strip_prefix("$ "))
        .unwrap_or_else(|| panic!("line {}: a console block starts with `$ `", block.line))
        .to_owned();
    while let Some(stripped) = command.strip_suffix('\\') {
        let next = lines.next().expect("continuation line");
        command = format!("{stripped} {}", next.trim_start());
    }
    let mut words = shell_words(&command);
    assert_eq!(
        words.first().map(String::as_str),
        Some("svid-broker"),
        "line {}: only svid-broker commands are run",
        block.line
    );
    words.remove(0);
    let output: String = lines.map(|l| format!("{l}\n")).collect();
    (words, output)
}

/// A self-signed P-256 signing CA, as an operator would provide it.
fn write_ca(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, "docs signing ca");
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("ca.key"), key.serialize_pem()).unwrap();
}

/// A page's named files written to a fresh directory (plus a signing CA).
struct Workspace {
    dir: tempfile::TempDir,
    files: BTreeMap<String, bool>,
}

impl Workspace {
    fn new(blocks: &[Block]) -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        write_ca(dir.path());
        let mut files = BTreeMap::new();
        for b in blocks {
            for key in ["policy", "config"] {
                if let Some(name) = b.attr(key) {
                    assert_eq!(
                        b.lang(),
                        "toml",
                        "line {}: {key}= on a non-toml block",
                        b.line
                    );
                    assert!(
                        files.insert(name.to_owned(), key == "policy").is_none(),
                        "line {}: {name} is defined twice",
                        b.line
                    );
                    std::fs::write(dir.path().join(name), &b.body).unwrap();
                }
            }
        }
        Workspace { dir, files }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Runs `args` with file names and `--out-dir` mapped into the workspace; returns the
    /// output with the workspace paths mapped back.
    fn run(&self, args: &[String]) -> (Output, String) {
        let out_dir = self.dir.path().join("out");
        let mut mapped = Vec::new();
        let mut documented_out_dir = None;
        let mut iter = args.iter();
        while let Some(a) = iter.next() {
            if a == "--out-dir" {
                let value = iter.next().expect("--out-dir value");
                documented_out_dir = Some(value.clone());
                mapped.push(a.clone());
                mapped.push(out_dir.display().to_string());
            } else if self.files.contains_key(a) {
                mapped.push(self.path(a));
            } else {
                mapped.push(a.clone());
            }
        }
        let refs: Vec<&str> = mapped.iter().map(String::as_str).collect();
        let out = run(&refs, None);
        let mut text = if out.code() == Some(0) {
            out.stdout.clone()
        } else {
            assert_eq!(out.stdout, "", "a failing command printed on stdout");
            out.stderr.clone()
        };
        if let Some(doc_dir) = documented_out_dir
            && let Ok(real) = std::fs::canonicalize(&out_dir)
        {
            text = text.replace(&real.display().to_string(), &doc_dir);
        }
        let root = self.dir.path().display().to_string();
        text = text.replace(&format!("{root}/"), "");
        (out, text)
    }
}

/// Runs every `console test` block of `name` and checks every named file; returns how many
/// commands ran.
fn check_page_snippets(name: &str) -> usize {
    let md = page(name);
    let blocks = blocks(&md);
    let ws = Workspace::new(&blocks);
    let mut ran = 0;
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut outputs = Vec::new();
    for b in blocks
        .iter()
        .filter(|b| b.lang() == "console" && b.has("test"))
    {
        let (args, expected) = command_and_output(b);
        used.extend(args.iter().filter(|a| ws.files.contains_key(*a)).cloned());
        let want_code: i32 = b.attr("exit").map_or(0, |c| c.parse().unwrap());
        let (out, text) = ws.run(&args);
        assert_eq!(
            out.code(),
            Some(want_code),
            "{name} line {}: `svid-broker {}` exited with {:?}: {}",
            b.line,
            args.join(" "),
            out.code(),
            out.stderr
        );
        assert_eq!(
            text,
            expected,
            "{name} line {}: output of `svid-broker {}` differs from the page",
            b.line,
            args.join(" ")
        );
        if args.first().map(String::as_str) == Some("registry-config") && want_code == 0 {
            check_root_bundle(&ws, &args);
        }
        outputs.push(expected);
        ran += 1;
    }
    // Hand-assembled files that embed a command's output must embed it verbatim.
    for b in blocks.iter().filter(|b| b.has("contains-output")) {
        assert!(
            outputs.iter().any(|o| b.body.contains(o.as_str())),
            "{name} line {}: the block does not contain any checked command's output",
            b.line
        );
    }
    for b in &blocks {
        if let Some(file) = b.attr("config") {
            used.extend(
                ws.files
                    .keys()
                    .filter(|f| b.body.contains(&format!("\"{f}\"")))
                    .cloned(),
            );
            check_config_loads(name, b, &ws, file);
        }
        if let Some(file) = b.attr("policy") {
            check_policy_loads(name, b, &ws, file);
        }
    }
    for (file, is_policy) in &ws.files {
        assert!(
            !is_policy || used.contains(file),
            "{name}: policy {file} is used by no command or config on the page"
        );
    }
    ran
}

/// `registry-config` wrote the CA certificate (the trust anchor) as the root bundle.
fn check_root_bundle(ws: &Workspace, args: &[String]) {
    let registry = args
        .windows(2)
        .find(|w| w[0] == "--registry")
        .map(|w| w[1].clone())
        .expect("--registry");
    let written = ws
        .dir
        .path()
        .join("out")
        .join(format!("{registry}-rootcertbundle.pem"));
    assert_eq!(
        std::fs::read_to_string(written).unwrap().trim(),
        std::fs::read_to_string(ws.dir.path().join("ca.pem"))
            .unwrap()
            .trim()
    );
}

fn check_policy_loads(page: &str, b: &Block, ws: &Workspace, file: &str) {
    let out = run(
        &[
            "policy",
            "explain",
            "--policy",
            &ws.path(file),
            "--subject",
            "spiffe://example.org/docs-check",
            "--service",
            "docs-check.invalid",
            "--scope",
            "repository:docs/check:pull",
        ],
        None,
    );
    assert_eq!(
        out.code(),
        Some(2),
        "{page} line {}: {}",
        b.line,
        out.stderr
    );
    if b.has("invalid") {
        assert!(
            out.stderr.starts_with("svid-broker: invalid --policy: "),
            "{page} line {}: {file} is marked invalid but loads: {}",
            b.line,
            out.stderr
        );
    } else {
        // Getting as far as the service lookup means the policy loaded.
        assert_eq!(
            out.stderr, "svid-broker: invalid --service: unknown service \"docs-check.invalid\"\n",
            "{page} line {}: {file} does not load",
            b.line
        );
    }
}

fn check_config_loads(page: &str, b: &Block, ws: &Workspace, file: &str) {
    let out = run(
        &[
            "registry-config",
            "--config",
            &ws.path(file),
            "--registry",
            "docs-check-none",
            "--out-dir",
            &ws.path("out"),
        ],
        None,
    );
    if b.has("invalid") {
        assert!(
            out.stderr.starts_with("svid-broker: invalid --config: "),
            "{page} line {}: {file} is marked invalid but loads: {}",
            b.line,
            out.stderr
        );
    } else {
        // Getting as far as the registry lookup means the config and its policy loaded.
        assert_eq!(
            out.stderr,
            "svid-broker: invalid --registry: no registry named \"docs-check-none\" in the policy\n",
            "{page} line {}: {file} does not load",
            b.line
        );
    }
}

/// Lines between `<!-- TAG -->` and `<!-- /TAG -->` (every such section of the page).
fn sections<'a>(md: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<!-- {tag} -->"), format!("<!-- /{tag} -->"));
    let mut out = Vec::new();
    let mut inside = false;
    for line in md.lines() {
        if line.trim() == open {
            inside = true;
        } else if line.trim() == close {
            inside = false;
        } else if inside {
            out.push(line);
        }
    }
    assert!(!inside, "<!-- {tag} --> is not closed");
    out
}

/// The cells of a Markdown table row (`None` for anything else, including the header
/// separator).
fn cells(line: &str) -> Option<Vec<&str>> {
    let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    if inner.chars().all(|c| matches!(c, '-' | '|' | ':' | ' ')) {
        return None;
    }
    Some(inner.split(" | ").map(str::trim).collect())
}

/// The contents of the code spans in `text`.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Every `.rs` file under `dir`, tests excluded.
fn sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "tests" {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            out.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
        }
    }
}

fn crate_sources(krate: &str) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    sources(
        &repo_root().join("crates").join(krate).join("src"),
        &mut out,
    );
    assert!(!out.is_empty(), "no sources for crate {krate}");
    out
}

/// The string-literal view of source text: escapes undone, `\`-newline continuations joined,
/// format braces unescaped.
fn literal_text(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('"') => {
                    out.push('"');
                    chars.next();
                }
                Some('\n') => {
                    while chars.peek().is_some_and(|c| c.is_whitespace()) {
                        chars.next();
                    }
                }
                _ => out.push(c),
            }
        } else {
            out.push(c);
        }
    }
    out.replace("{{", "{").replace("}}", "}")
}

#[test]
fn policy_guide_examples_run_as_documented() {
    let ran = check_page_snippets("policy-guide.md");
    assert!(ran >= 7, "policy-guide.md: only {ran} checked commands");
}

#[test]
fn registry_setup_output_is_what_registry_config_prints() {
    let ran = check_page_snippets("registry-setup.md");
    assert!(ran >= 2, "registry-setup.md: only {ran} checked commands");
}

#[test]
fn troubleshooting_and_operations_snippets_run_as_documented() {
    let ran = check_page_snippets("troubleshooting.md");
    assert!(ran >= 3, "troubleshooting.md: only {ran} checked commands");
    for name in ["architecture.md", "security.md", "operations.md"] {
        check_page_snippets(name);
    }
}

#[test]
fn quoted_error_messages_still_exist_in_the_code() {
    let corpus: String = ["server", "policy", "token", "identity", "cli", "sources"]
        .iter()
        .flat_map(|k| crate_sources(k))
        .map(|(_, text)| literal_text(&text))
        .collect();
    let mut checked = 0;
    for name in PAGES {
        let md = page(name);
        for line in sections(&md, "checked-messages") {
            let Some(cells) = cells(line) else { continue };
            for span in code_spans(cells[0]) {
                for fragment in span.split('…').map(str::trim).filter(|f| !f.is_empty()) {
                    assert!(
                        corpus.contains(fragment),
                        "{name}: {fragment:?} (from `{span}`) is no longer in the sources"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "only {checked} messages are checked");
}

/// The value of `pub const NAME` in a crate, evaluated when it is a product of integer
/// literals (optionally inside `Duration::from_secs`).
fn const_value(krate: &str, name: &str) -> u64 {
    let needle = format!("pub const {name}:");
    let srcs = crate_sources(krate);
    let (path, text) = srcs
        .iter()
        .find(|(_, t)| t.contains(&needle))
        .unwrap_or_else(|| panic!("no `{needle}` in crate {krate}"));
    let start = text.find(&needle).unwrap();
    let decl = &text[start..];
    let expr = &decl[decl.find('=').unwrap() + 1..decl.find(';').unwrap()];
    let expr = expr
        .trim()
        .trim_start_matches("Duration::from_secs(")
        .trim_end_matches(')');
    expr.split('*')
        .map(|f| {
            f.trim()
                .replace('_', "")
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{}: {name} = {expr} is not a literal", path.display()))
        })
        .product()
}

/// Whether `name` is an identifier character.
fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Where the constant `name` is used in code (not tests, not comments, not its own
/// declaration) anywhere in the workspace's crates: a limit that is documented and declared
/// but never read enforces nothing.
fn const_uses(name: &str) -> Vec<String> {
    let mut srcs = Vec::new();
    for krate in std::fs::read_dir(repo_root().join("crates")).unwrap() {
        sources(&krate.unwrap().path().join("src"), &mut srcs);
    }
    let declaration = format!("const {name}:");
    let mut uses = Vec::new();
    for (path, text) in &srcs {
        // Test-only modules in their own files (`foo_tests.rs`, `testutil.rs`) prove nothing.
        let file = path.file_name().unwrap().to_string_lossy();
        if file.ends_with("_tests.rs") || file == "testutil.rs" {
            continue;
        }
        // Code after an in-file `mod tests {` is a test as well.
        let code = text.split("\nmod tests {").next().unwrap_or(text);
        for (n, line) in code.lines().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") || line.contains(&declaration) {
                continue;
            }
            let mut rest = line;
            while let Some(at) = rest.find(name) {
                let before = rest[..at].chars().next_back();
                let after = rest[at + name.len()..].chars().next();
                if !before.is_some_and(ident_char) && !after.is_some_and(ident_char) {
                    uses.push(format!("{}:{}", path.display(), n + 1));
                    break;
                }
                rest = &rest[at + name.len()..];
            }
        }
    }
    uses
}

#[test]
fn cited_limits_match_the_code() {
    let mut checked = 0;
    let mut unused = Vec::new();
    for name in PAGES {
        let md = page(name);
        for line in sections(&md, "checked-consts") {
            let Some(cells) = cells(line) else { continue };
            let Some(konst) = code_spans(cells[0]).first().copied() else {
                continue;
            };
            let krate = code_spans(cells[1])
                .first()
                .copied()
                .unwrap_or_else(|| panic!("{name}: no crate for {konst}"));
            let krate = krate
                .strip_prefix("svid-broker-")
                .unwrap_or_else(|| panic!("{name}: {krate} is not a workspace crate"));
            let documented: u64 = cells[2]
                .split_whitespace()
                .next()
                .and_then(|v| v.replace(['_', ','], "").parse().ok())
                .unwrap_or_else(|| panic!("{name}: no number for {konst}: {:?}", cells[2]));
            assert_eq!(
                const_value(krate, konst),
                documented,
                "{name}: {konst} is documented as {documented}"
            );
            if const_uses(konst).is_empty() {
                unused.push(format!("{name}: {konst}"));
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} consts are checked");
    assert!(
        unused.is_empty(),
        "documented limits that no code uses (declared only): {unused:?}"
    );
}

#[test]
fn documented_metrics_are_the_exported_ones() {
    let rendered = svid_broker_server::ops::Metrics::default().render();
    let exported: BTreeSet<String> = rendered
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(exported.len() >= 5, "{rendered}");
    let md = page("operations.md");
    let documented: BTreeSet<String> = sections(&md, "checked-metrics")
        .into_iter()
        .filter_map(cells)
        .filter_map(|c| code_spans(c[0]).first().map(|s| (*s).to_owned()))
        .collect();
    assert_eq!(documented, exported, "operations.md metrics table");
    // Every label value the page names is one the exposition uses.
    for line in sections(&md, "checked-metrics") {
        let Some(c) = cells(line) else { continue };
        if c.len() < 3 {
            continue;
        }
        for span in code_spans(c[2]) {
            assert!(
                rendered.contains(&format!("\"{span}\"")),
                "operations.md: label value {span:?} is not exported"
            );
        }
    }
}

/// The `pub` field names of `struct NAME` in ops.rs.
fn struct_fields(src: &str, name: &str) -> BTreeSet<String> {
    let start = src
        .find(&format!("pub struct {name}"))
        .unwrap_or_else(|| panic!("no struct {name}"));
    let body = &src[start..];
    let body = &body[..body.find("\n}").unwrap()];
    body.lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_owned()))
        .filter(|n| !n.contains(' '))
        .collect()
}

#[test]
fn documented_audit_fields_are_the_emitted_ones() {
    let ops = std::fs::read_to_string(repo_root().join("crates/server/src/ops.rs")).unwrap();
    // `subject_token`'s members belong to service-account token mode (documented with it).
    let event = struct_fields(&ops, "AuditEvent");
    assert!(
        event.contains("subject") && event.contains("jti"),
        "{event:?}"
    );
    let md = page("operations.md");
    let mut documented = BTreeSet::new();
    for line in sections(&md, "checked-audit-fields") {
        if let Some(c) = cells(line)
            && let Some(span) = code_spans(c[0]).first()
        {
            documented.insert((*span).to_owned());
        }
    }
    assert_eq!(documented, event, "operations.md audit field table");
    // The example events use only real fields, each line one JSON object.
    let mut examples = 0;
    for b in blocks(&md)
        .into_iter()
        .filter(|b| b.lang() == "json" && b.has("audit-example"))
    {
        for line in b.body.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            for key in value.as_object().unwrap().keys() {
                assert!(
                    event.contains(key),
                    "example audit field {key} is not emitted"
                );
            }
            assert!(
                value["event"] == "svid-broker.exchange"
                    || value["event"] == svid_broker_server::ops::PREAUTH_SUMMARY_EVENT,
                "{line}"
            );
            examples += 1;
        }
    }
    assert!(examples >= 2, "operations.md: no audit examples");
}

#[test]
fn every_page_is_linked_from_the_readme() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    // credential-helper.md's snippets and messages are checked by the plugin crate's own
    // doc tests (crates/credential-provider/src/config/doc_tests.rs); its link is checked here.
    for name in PAGES.iter().copied().chain(["credential-helper.md"]) {
        assert!(
            readme.contains(&format!("](docs/{name})")),
            "README.md does not link docs/{name}"
        );
    }
}

#[test]
fn the_harness_reads_blocks_and_words_as_documented() {
    let md = "x\n```toml policy=a.toml\nk = 1\n```\n```console test exit=2\n$ svid-broker a \\\n  'b c'\nout\n```\n";
    let b = blocks(md);
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].attr("policy"), Some("a.toml"));
    assert_eq!(b[0].body, "k = 1\n");
    assert_eq!(b[1].attr("exit"), Some("2"));
    let (args, output) = command_and_output(&b[1]);
    assert_eq!(args, ["a", "b c"]);
    assert_eq!(output, "out\n");
    assert_eq!(cells("| `a` | b |"), Some(vec!["`a`", "b"]));
    assert_eq!(cells("|---|---|"), None);
    assert_eq!(
        literal_text("\"a \\\"b\\\" \\\n   c {{x}}\""),
        "\"a \"b\" c {x}\""
    );
}
