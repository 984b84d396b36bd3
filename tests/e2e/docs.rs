//! The operator documentation, executed: every snippet in `docs/*.md` that a reader would copy
//! is run against the real binary or checked against the code, so the docs cannot drift. The
//! markers are the one vocabulary of `doccheck.rs`; this file runs, for the operator pages:
//! `run` blocks of `svid-broker` (in a directory holding the page's `file=` blocks and a freshly
//! generated signing CA, `ca.pem` and `ca.key`; `--out-dir DIR` is redirected there and mapped
//! back), `policy` and `broker-config` files (they load, or are refused when `invalid`; every
//! policy is used by a command or config of its page), `contains-output`, and the `messages`,
//! `metrics`, `audit-fields` sections and `audit-example` blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::doccheck::{
    Block, Role, Section, blocks, cells, code_spans, commands, message_corpus, repo_root, sections,
    words,
};
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

fn page(name: &str) -> String {
    let path = repo_root().join("docs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A `run` block of `svid-broker` split into the command's arguments (without the program)
/// and the expected output; `None` for the plugin's commands (run by `deploy.rs`).
fn command_and_output(block: &Block) -> Option<(Vec<String>, String)> {
    let mut commands = commands(block);
    assert_eq!(
        commands.len(),
        1,
        "line {}: one command per run block here",
        block.line
    );
    let (command, output) = commands.remove(0);
    let mut words = words(&command);
    if words.first().map(String::as_str) != Some("svid-broker") {
        return None;
    }
    words.remove(0);
    Some((words, output))
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
            let is_policy = match b.role {
                Some(Role::Policy) => true,
                Some(Role::BrokerConfig) => false,
                // The plugin's and the setup pages' blocks (troubleshooting.md has both kinds)
                // are `deploy.rs`'s; the rest are handled below.
                None
                | Some(
                    Role::BrokerFragment
                    | Role::PluginConfig
                    | Role::KubeletConfig
                    | Role::ClusterSpiffeid
                    | Role::SpireAgent
                    | Role::AuditExample
                    | Role::KubeletLog
                    | Role::Run
                    | Role::Install
                    | Role::Kubectl
                    | Role::Spire
                    | Role::Sh,
                ) => continue,
            };
            let name = b.file.as_deref().unwrap_or_else(|| {
                panic!(
                    "line {}: a policy or broker-config block needs file=",
                    b.line
                )
            });
            assert_eq!(b.lang, "toml", "line {}: {name} is not toml", b.line);
            assert!(
                files.insert(name.to_owned(), is_policy).is_none(),
                "line {}: {name} is defined twice",
                b.line
            );
            std::fs::write(dir.path().join(name), &b.body).unwrap();
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
    let blocks = blocks(name, &md);
    let ws = Workspace::new(&blocks);
    let mut ran = 0;
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut outputs = Vec::new();
    for b in blocks.iter().filter(|b| b.is(Role::Run)) {
        let Some((args, expected)) = command_and_output(b) else {
            assert_eq!(
                name, "troubleshooting.md",
                "line {}: the plugin's commands run on the pages deploy.rs checks",
                b.line
            );
            continue;
        };
        used.extend(args.iter().filter(|a| ws.files.contains_key(*a)).cloned());
        let want_code = b.exit.unwrap_or(0);
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
    for b in blocks.iter().filter(|b| b.contains_output) {
        assert!(
            outputs.iter().any(|o| b.body.contains(o.as_str())),
            "{name} line {}: the block does not contain any checked command's output",
            b.line
        );
    }
    for b in &blocks {
        if let (Some(Role::BrokerConfig), Some(file)) = (b.role, b.file.as_deref()) {
            used.extend(
                ws.files
                    .keys()
                    .filter(|f| b.body.contains(&format!("\"{f}\"")))
                    .cloned(),
            );
            check_config_loads(name, b, &ws, file);
        }
        if let (Some(Role::Policy), Some(file)) = (b.role, b.file.as_deref()) {
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
    if b.invalid {
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
    if b.invalid {
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
    let corpus = message_corpus();
    let mut checked = 0;
    for name in PAGES {
        checked += crate::doccheck::check_messages(name, &page(name), &corpus);
    }
    assert!(checked >= 40, "only {checked} messages are checked");
}

#[test]
fn documented_metrics_are_the_exported_ones() {
    use svid_broker_server::metrics::{Metrics, VerifiedCacheFigures, VerifiedCacheKind};
    // What `/metrics` serves: the counters and every verified cache's figures.
    let caches = VerifiedCacheKind::ALL.map(VerifiedCacheFigures::empty);
    // And a registry backend's, as for a `kind = "harbor"` registry (nothing called yet).
    let harbor = svid_broker_backends::BackendService::harbor(
        svid_broker_backends::HarborConfig::new(
            "corp",
            "http://127.0.0.1:1",
            "admin",
            svid_broker_identity::secret::SecretString::from("unused".to_owned()),
        ),
        svid_broker_backends::ServiceConfig::default(),
    )
    .unwrap();
    let rendered = Metrics::default().render_with(&caches, &[harbor.figures()]);
    let exported: BTreeSet<String> = rendered
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(exported.len() >= 5, "{rendered}");
    let md = page("operations.md");
    let documented: BTreeSet<String> = sections(&md, Section::Metrics)
        .into_iter()
        .filter_map(cells)
        .filter_map(|c| code_spans(c[0]).first().map(|s| (*s).to_owned()))
        .collect();
    assert_eq!(documented, exported, "operations.md metrics table");
    // Every label value the page names is one the exposition uses.
    for line in sections(&md, Section::Metrics) {
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

/// The top-level fields an audit event can carry: an event with every optional field set,
/// serialized. A struct literal, so a field added to `AuditEvent` fails to compile here until
/// the docs' table is looked at.
fn audit_event_fields() -> BTreeSet<String> {
    use svid_broker_server::audit::{AuditEvent, SubjectTokenAudit};
    let event = AuditEvent {
        time: String::new(),
        event: "",
        decision: "",
        code: Some(""),
        reason: String::new(),
        subject: Some(""),
        actor: String::new(),
        service: "",
        requested: String::new(),
        granted: String::new(),
        kind: "",
        ceiling: Some(String::new()),
        jti: Some(""),
        backend: Some(""),
        credential_id: Some(""),
        expires_at: Some(String::new()),
        valid_until: Some(String::new()),
        cached: false,
        peer: Some(String::new()),
        endpoint: "",
        subject_token: Some(SubjectTokenAudit::default()),
        count: Some(0),
        interval_seconds: Some(0),
    };
    let value = serde_json::to_value(&event).unwrap();
    value.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn documented_audit_fields_are_the_emitted_ones() {
    // `subject_token`'s members belong to service-account token mode (documented with it).
    let event = audit_event_fields();
    assert!(
        event.contains("subject") && event.contains("jti"),
        "{event:?}"
    );
    let md = page("operations.md");
    let mut documented = BTreeSet::new();
    for line in sections(&md, Section::AuditFields) {
        if let Some(c) = cells(line)
            && let Some(span) = code_spans(c[0]).first()
        {
            documented.insert((*span).to_owned());
        }
    }
    assert_eq!(documented, event, "operations.md audit field table");
    // The example events use only real fields, each line one JSON object.
    let mut examples = 0;
    for b in blocks("operations.md", &md)
        .into_iter()
        .filter(|b| b.lang == "json" && b.is(Role::AuditExample))
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
                    || value["event"] == svid_broker_server::throttle::PREAUTH_SUMMARY_EVENT,
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
