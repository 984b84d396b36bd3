//! The doc checks' shared half that needs the workspace's crates: the pages, the message
//! corpus, the compiled table of documented limits. The marker vocabulary and its parser are
//! `markdown.rs` (std only, so the plugin crate's doc tests include it too).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::markdown::check_section_markers;
pub(crate) use crate::markdown::{
    Block, Role, Section, blocks_of as blocks, cells, code_spans, commands, sections, words,
};

/// The repository root.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of the repository, by its path from the root.
pub(crate) fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every page that may carry markers: `README.md`, `docs/*.md`, and the Markdown under
/// `deploy/`, by path from the root.
///
/// `docs/credential-helper.md` is left out for now: its one messages table is read by the
/// plugin crate's `config/doc_tests.rs` (outside this harness), still in the old
/// `checked-messages` syntax.
pub(crate) fn marked_pages() -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let root = repo_root();
    let mut pages = vec!["README.md".to_owned()];
    walk(&root.join("docs"), &root, &mut pages);
    walk(&root.join("deploy"), &root, &mut pages);
    pages.sort();
    pages
}

/// The string-literal view of Rust source: `\"` unescaped, `\`-newline continuations joined,
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

/// The string-literal view of every crate's sources (tests excluded): what an error message
/// quoted in the docs must still be found in.
pub(crate) fn message_corpus() -> String {
    fn walk(dir: &Path, out: &mut String) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "tests" {
                    walk(&path, out);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
                out.push_str(&literal_text(&std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut out = String::new();
    for krate in std::fs::read_dir(repo_root().join("crates")).unwrap() {
        walk(&krate.unwrap().path().join("src"), &mut out);
    }
    out
}

/// Checks every `check:messages` section of `page` against `corpus`; returns how many quoted
/// messages it checked.
pub(crate) fn check_messages(page: &str, md: &str, corpus: &str) -> usize {
    let mut checked = 0;
    for line in sections(md, Section::Messages) {
        let Some(cells) = cells(line) else { continue };
        for span in code_spans(cells[0]) {
            for fragment in span.split('…').map(str::trim).filter(|f| !f.is_empty()) {
                assert!(
                    corpus.contains(fragment),
                    "{page}: {fragment:?} (from `{span}`) is no longer in the sources"
                );
            }
            checked += 1;
        }
    }
    checked
}

/// One documented limit: the crate that owns it, its name, its value (durations in seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    pub(crate) krate: &'static str,
    pub(crate) name: &'static str,
    pub(crate) value: u64,
}

/// A constant's value as the docs state it.
trait LimitValue {
    fn documented(self) -> u64;
}

impl LimitValue for usize {
    fn documented(self) -> u64 {
        u64::try_from(self).unwrap()
    }
}

impl LimitValue for u64 {
    fn documented(self) -> u64 {
        self
    }
}

impl LimitValue for u32 {
    fn documented(self) -> u64 {
        u64::from(self)
    }
}

impl LimitValue for Duration {
    fn documented(self) -> u64 {
        assert_eq!(
            self.subsec_nanos(),
            0,
            "limits are documented in whole seconds"
        );
        self.as_secs()
    }
}

/// `limit!("crate", path::to::CONST)`: the table entry for a real `pub const`, so a renamed,
/// moved or removed constant fails to compile here.
macro_rules! limit {
    ($krate:literal, $($segment:ident)::+) => {
        Limit {
            krate: $krate,
            name: last_segment(stringify!($($segment)::+)),
            value: LimitValue::documented($($segment)::+),
        }
    };
}

fn last_segment(path: &'static str) -> &'static str {
    path.rsplit("::").next().unwrap_or(path).trim()
}

/// The limits the docs must state, from the constants themselves. The test below fails when a
/// documented value differs, a documented limit is not here, or one here is undocumented.
pub(crate) fn limits() -> Vec<Limit> {
    vec![
        // svid-broker-server: listeners.
        limit!("server", svid_broker_server::http_listener::MAX_HEAD_BYTES),
        limit!("server", svid_broker_server::listen::MAX_PENDING_HANDSHAKES),
        limit!("server", svid_broker_server::grpc::tls::HANDSHAKE_TIMEOUT),
        limit!(
            "server",
            svid_broker_server::http_listener::TLS_HANDSHAKE_TIMEOUT
        ),
        limit!(
            "server",
            svid_broker_server::http_listener::RESPONSE_SEND_TIMEOUT
        ),
        limit!(
            "server",
            svid_broker_server::http_listener::H2_KEEPALIVE_INTERVAL
        ),
        limit!(
            "server",
            svid_broker_server::http_listener::H2_KEEPALIVE_TIMEOUT
        ),
        limit!(
            "server",
            svid_broker_server::http_listener::H2_MAX_CONNECTION_AGE
        ),
        limit!("server", svid_broker_server::listen::fd_limit::FD_MARGIN),
        limit!(
            "server",
            svid_broker_server::tls_files::MAX_TLS_CERT_FILE_BYTES
        ),
        limit!(
            "server",
            svid_broker_server::tls_files::MAX_TLS_KEY_FILE_BYTES
        ),
        limit!("server", svid_broker_server::config::MAX_CONFIG_FILE_BYTES),
        // svid-broker-server: service-account token mode.
        limit!("server", svid_broker_server::satoken::SA_LEEWAY),
        limit!("server", svid_broker_server::authn::MIN_DERIVED_TTL),
        limit!("server", svid_broker_server::satoken::MAX_TRUSTED_ACTORS),
        // svid-broker-server: credentials and signing keys.
        limit!(
            "server",
            svid_broker_server::credential::DEFAULT_LOGIN_CREDENTIAL_TTL
        ),
        limit!(
            "server",
            svid_broker_server::credential::MAX_LOGIN_CREDENTIAL_TTL
        ),
        limit!(
            "server",
            svid_broker_server::credential::DEFAULT_REFRESH_TOKEN_TTL
        ),
        limit!(
            "server",
            svid_broker_server::credential::MAX_REFRESH_TOKEN_TTL
        ),
        limit!(
            "server",
            svid_broker_server::credential::DEFAULT_MAX_SESSION
        ),
        limit!("server", svid_broker_server::credential::MAX_MAX_SESSION),
        limit!(
            "server",
            svid_broker_server::credential::CREDENTIAL_IAT_LEEWAY
        ),
        limit!("server", svid_broker_server::server::LEAF_LIFETIME),
        limit!("server", svid_broker_server::server::ROTATE_WHEN_REMAINING),
        limit!("server", svid_broker_server::server::ROTATION_CHECK_PERIOD),
        limit!("server", svid_broker_server::server::MAX_TOKEN_TTL),
        limit!("server", svid_broker_server::server::GENERATED_CA_LIFETIME),
        // svid-broker-server: the realm and the gRPC edge.
        limit!("server", svid_broker_server::realm::MAX_BODY_BYTES),
        limit!("server", svid_broker_server::realm::MAX_QUERY_BYTES),
        limit!("server", svid_broker_server::realm::MAX_AUTHORIZATION_BYTES),
        limit!("server", svid_broker_server::realm::MAX_FIELDS),
        limit!("server", svid_broker_server::request::MAX_USERNAME_LEN),
        limit!("server", svid_broker_server::request::MAX_CLIENT_ID_LEN),
        limit!("server", svid_broker_server::grpc::MAX_MESSAGE_SIZE),
        limit!("server", svid_broker_server::grpc::MAX_CONCURRENT_STREAMS),
        limit!("server", svid_broker_server::grpc::MAX_HEADER_LIST_SIZE),
        limit!(
            "server",
            svid_broker_server::grpc::service::MAX_AUTHORIZATION_LEN
        ),
        limit!("server", svid_broker_server::grpc::REQUEST_TIMEOUT),
        // svid-broker-server: throttling, caches, audit.
        limit!(
            "server",
            svid_broker_server::throttle::DEFAULT_PREAUTH_AUDIT_INTERVAL
        ),
        limit!(
            "server",
            svid_broker_server::throttle::MAX_PREAUTH_AGGREGATES
        ),
        limit!(
            "server",
            svid_broker_server::throttle::MAX_PREAUTH_TRACKED_IPS
        ),
        limit!(
            "server",
            svid_broker_server::throttle::MAX_RATE_LIMITED_SUBJECTS
        ),
        limit!("server", svid_broker_server::token_cache::MAX_CACHED_TOKENS),
        limit!(
            "server",
            svid_broker_server::audit::AUDIT_ERROR_LOG_INTERVAL
        ),
        // svid-broker-policy.
        limit!("policy", svid_broker_policy::MAX_POLICY_FILE_BYTES),
        limit!("policy", svid_broker_policy::DEFAULT_TOKEN_TTL_SECONDS),
        limit!("policy", svid_broker_policy::MIN_TOKEN_TTL_SECONDS),
        limit!("policy", svid_broker_policy::MAX_TOKEN_TTL_SECONDS),
        limit!("policy", svid_broker_policy::MAX_RULES),
        limit!("policy", svid_broker_policy::scope::MAX_ACTIONS_PER_SCOPE),
        // svid-broker-token.
        limit!("token", svid_broker_token::REGISTRY_LEEWAY),
        limit!("token", svid_broker_token::CLOCK_BACKDATE),
        limit!("token", svid_broker_token::ROTATION_MARGIN),
        limit!("token", svid_broker_token::LEAF_BACKDATE),
        // svid-broker-identity: JWT-SVIDs and the wire limits every crate shares.
        limit!("identity", svid_broker_identity::jwt::DEFAULT_LEEWAY),
        limit!("identity", svid_broker_identity::jwt::DEFAULT_MAX_TOKEN_LEN),
        limit!(
            "identity",
            svid_broker_identity::limits::MAX_SUBJECT_TOKEN_LEN
        ),
        limit!("identity", svid_broker_identity::limits::MAX_CREDENTIAL_LEN),
        limit!("identity", svid_broker_identity::limits::MAX_SCOPE_PARAMS),
        limit!("identity", svid_broker_identity::limits::MAX_SCOPES),
        limit!(
            "identity",
            svid_broker_identity::limits::MAX_SCOPE_PARAM_LEN
        ),
        limit!(
            "identity",
            svid_broker_identity::limits::MAX_REPOSITORY_NAME_LEN
        ),
        limit!("identity", svid_broker_identity::limits::MAX_SERVICE_LEN),
        limit!("identity", svid_broker_identity::limits::MAX_ISSUER_LEN),
        limit!("identity", svid_broker_identity::limits::MAX_ACTION_LEN),
        limit!(
            "identity",
            svid_broker_identity::limits::MAX_JWT_AUDIENCE_LEN
        ),
        limit!("identity", svid_broker_identity::limits::MAX_JWT_AUDIENCES),
    ]
}

/// Every row of every `check:limits` section: (page, crate, name, documented value).
fn documented_limits() -> Vec<(String, String, String, u64)> {
    let mut rows = Vec::new();
    for page in marked_pages() {
        let md = read(&page);
        for line in sections(&md, Section::Limits) {
            let Some(cells) = cells(line) else { continue };
            let Some(name) = code_spans(cells[0]).first().copied() else {
                continue;
            };
            let krate = code_spans(cells[1])
                .first()
                .and_then(|k| k.strip_prefix("svid-broker-"))
                .unwrap_or_else(|| panic!("{page}: {name}: no `svid-broker-*` crate"));
            let value: u64 = cells[2]
                .split_whitespace()
                .next()
                .and_then(|v| v.replace(['_', ','], "").parse().ok())
                .unwrap_or_else(|| panic!("{page}: no number for {name}: {:?}", cells[2]));
            rows.push((page.clone(), krate.to_owned(), name.to_owned(), value));
        }
    }
    rows
}

#[test]
fn documented_limits_are_the_compiled_constants() {
    let table = limits();
    let rows = documented_limits();
    assert!(
        rows.len() >= 60,
        "only {} limits are documented",
        rows.len()
    );
    for (page, krate, name, value) in &rows {
        let limit = table
            .iter()
            .find(|l| l.name == name && l.krate == krate)
            .unwrap_or_else(|| {
                panic!("{page}: {name} (svid-broker-{krate}) is not in doccheck::limits()")
            });
        assert_eq!(
            limit.value, *value,
            "{page}: {name} is documented as {value}, the constant is {}",
            limit.value
        );
    }
    for limit in &table {
        assert!(
            rows.iter()
                .any(|(_, k, n, _)| n == limit.name && k == limit.krate),
            "{} (svid-broker-{}) is in the table but no page documents it",
            limit.name,
            limit.krate
        );
    }
}

#[test]
fn every_marker_on_every_page_is_in_the_vocabulary() {
    let pages = marked_pages();
    assert!(pages.len() >= 10, "{pages:?}");
    let mut marked = 0;
    for page in &pages {
        let md = read(page);
        check_section_markers(page, &md);
        for block in blocks(page, &md) {
            if block.is(Role::Run) {
                let program = commands(&block)
                    .first()
                    .map(|(cmd, _)| words(cmd).remove(0))
                    .unwrap_or_else(|| panic!("{page} line {}: a run block runs", block.line));
                assert!(
                    ["svid-broker", "svid-credential-provider"].contains(&program.as_str()),
                    "{page} line {}: `{program}` is not one of ours to run",
                    block.line
                );
            }
            marked += usize::from(block.is_marked());
        }
    }
    assert!(marked >= 70, "only {marked} marked blocks");
}

#[test]
fn the_harness_reads_markers_blocks_and_commands_as_documented() {
    let md = "x\n```toml policy file=a.toml\nk = 1\n```\n```console run exit=2\n$ svid-broker a \\\n  'b c'\nout\n```\n```yaml\nplain: 1\n```\n";
    let b = blocks("t.md", md);
    assert_eq!(b.len(), 3);
    assert!(b[0].is(Role::Policy) && b[0].file.as_deref() == Some("a.toml"));
    assert_eq!(b[0].body, "k = 1\n");
    assert!(b[1].is(Role::Run) && b[1].exit == Some(2));
    assert!(!b[2].is_marked());
    assert_eq!(
        commands(&b[1]),
        [("svid-broker a 'b c'".to_owned(), "out\n".to_owned())]
    );
    assert_eq!(
        words("svid-broker a 'b c' \"d\""),
        ["svid-broker", "a", "b c", "d"]
    );
    assert_eq!(cells("| `a` | b |"), Some(vec!["`a`", "b"]));
    assert_eq!(cells("|---|---|"), None);
    assert_eq!(
        literal_text("\"a \\\"b\\\" \\\n   c {{x}}\""),
        "\"a \"b\" c {x}\""
    );
    let unknown = std::panic::catch_unwind(|| blocks("t.md", "```toml polcy=a.toml\n```\n"));
    assert!(unknown.is_err(), "a misspelt marker fails");
    let old = std::panic::catch_unwind(|| {
        check_section_markers(
            "t.md",
            "<!-- checked-consts -->\n<!-- /checked-consts -->\n",
        );
    });
    assert!(old.is_err(), "the old section syntax fails");
    check_section_markers(
        "t.md",
        "<!-- check:limits -->\n| a |\n<!-- /check:limits -->\n<!-- check:config-keys broker -->\n<!-- /check:config-keys -->\n",
    );
    assert_eq!(
        sections(
            "<!-- check:limits -->\n| a |\n<!-- /check:limits -->\n",
            Section::Limits
        ),
        ["| a |"]
    );
}
