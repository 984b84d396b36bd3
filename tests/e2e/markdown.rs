//! The one doc-check vocabulary and its parser: how the pages mark what is checked. `docs.rs`
//! (operator pages), `deploy.rs` (setup pages and `deploy/`) and `config_reference.rs` (the
//! configuration reference) read the pages through it and `doccheck.rs`; it uses std only, so
//! the plugin crate's doc tests (`crates/credential-provider/src/config/doc_tests.rs`) include
//! it by `#[path]` as well.
//!
//! # The marker vocabulary
//!
//! A fenced block's info string is ` ```LANG [ROLE] [KEY=VALUE ...] [FLAG ...] `; every word
//! after the language must be one of these, or the page fails:
//!
//! - Roles (at most one): `policy` (a policy file; it must load), `broker-config` (a broker
//!   config; it must load with the policy it names), `broker-fragment` (tables that replace
//!   those of `deploy/base/config/broker.toml`; the result must load), `plugin-config` (the
//!   plugin's parser must load it), `kubelet-config` (`svid-credential-provider validate` must
//!   accept it), `cluster-spiffeid`, `spire-agent` (facts checked against `deploy/`),
//!   `audit-example` (one audit event per line, real fields only), `kubelet-log` (kubelet lines
//!   quoting the plugin's stderr), `run` (`$ PROGRAM ARGS` lines, `svid-broker` or
//!   `svid-credential-provider`, each followed by its exact output: stdout when the exit code
//!   is 0, else stderr), `install` (`deploy/node/install-plugin.sh`, run into a temporary root),
//!   `kubectl`, `spire` (commands checked against the manifests, not run), `sh` (shell run in a
//!   temporary directory).
//! - Keys: `file=NAME` (the block is a file of the page's workspace, named by commands and
//!   configs of the page), `exit=N` (`run`: the expected exit code, default 0),
//!   `same-as=PATH` (YAML: every document equals one of `PATH`), `subset-of=PATH` (TOML: every
//!   key and value is as in `PATH`), `reference=KIND` (TOML: the whole example of the
//!   `check:config-keys KIND` table; it must parse).
//! - Flags: `invalid` (a `policy` or `broker-config` that must be refused), `contains-output`
//!   (the block must contain one checked command's output verbatim).
//!
//! A section is `<!-- check:NAME -->` ... `<!-- /check:NAME -->`, with NAME one of
//! `messages` (every code span of a table row's first column is still in the crates' sources;
//! `…` stands for a formatted value), `limits` (rows `` `NAME` | `crate` | value ``, checked
//! against the compiled table `doccheck::limits()`), `metrics` and `audit-fields` (both ways against the
//! exported metrics and the audit event), and `config-keys KIND` (the configuration reference,
//! `config_reference/harness.rs`).

/// What a marked block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Policy,
    BrokerConfig,
    BrokerFragment,
    PluginConfig,
    KubeletConfig,
    ClusterSpiffeid,
    SpireAgent,
    AuditExample,
    KubeletLog,
    Run,
    Install,
    Kubectl,
    Spire,
    Sh,
}

impl Role {
    const ALL: [Role; 14] = [
        Role::Policy,
        Role::BrokerConfig,
        Role::BrokerFragment,
        Role::PluginConfig,
        Role::KubeletConfig,
        Role::ClusterSpiffeid,
        Role::SpireAgent,
        Role::AuditExample,
        Role::KubeletLog,
        Role::Run,
        Role::Install,
        Role::Kubectl,
        Role::Spire,
        Role::Sh,
    ];

    fn word(self) -> &'static str {
        match self {
            Role::Policy => "policy",
            Role::BrokerConfig => "broker-config",
            Role::BrokerFragment => "broker-fragment",
            Role::PluginConfig => "plugin-config",
            Role::KubeletConfig => "kubelet-config",
            Role::ClusterSpiffeid => "cluster-spiffeid",
            Role::SpireAgent => "spire-agent",
            Role::AuditExample => "audit-example",
            Role::KubeletLog => "kubelet-log",
            Role::Run => "run",
            Role::Install => "install",
            Role::Kubectl => "kubectl",
            Role::Spire => "spire",
            Role::Sh => "sh",
        }
    }

    fn parse(word: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.word() == word)
    }
}

/// One fenced code block and its markers.
#[derive(Debug)]
pub(crate) struct Block {
    /// The info string's first word (`toml`, `console`, ...).
    pub(crate) lang: String,
    pub(crate) role: Option<Role>,
    pub(crate) file: Option<String>,
    pub(crate) exit: Option<i32>,
    pub(crate) same_as: Option<String>,
    pub(crate) subset_of: Option<String>,
    /// `reference=KIND`: the configuration reference's whole example for `check:config-keys
    /// KIND` (read by `config_reference/harness.rs`).
    pub(crate) reference: Option<String>,
    pub(crate) invalid: bool,
    pub(crate) contains_output: bool,
    pub(crate) body: String,
    /// 1-based line of the opening fence, for failure messages.
    pub(crate) line: usize,
}

impl Block {
    /// Whether the block has `role`.
    pub(crate) fn is(&self, role: Role) -> bool {
        self.role == Some(role)
    }

    /// Whether the block carries any marker (an unmarked block is prose, checked by nothing).
    pub(crate) fn is_marked(&self) -> bool {
        self.role.is_some()
            || self.file.is_some()
            || self.same_as.is_some()
            || self.subset_of.is_some()
            || self.reference.is_some()
            || self.contains_output
    }

    /// Reads the info string's words after the language; anything outside the vocabulary fails
    /// naming `at`.
    fn mark(&mut self, words: &[&str], at: &str) {
        for word in words {
            match word.split_once('=') {
                Some(("file", v)) => set(&mut self.file, v, word, at),
                Some(("same-as", v)) => set(&mut self.same_as, v, word, at),
                Some(("subset-of", v)) => set(&mut self.subset_of, v, word, at),
                Some(("reference", v)) => set(&mut self.reference, v, word, at),
                Some(("exit", v)) => {
                    let code = v
                        .parse()
                        .unwrap_or_else(|_| panic!("{at}: `{word}` is not an exit code"));
                    assert!(self.exit.replace(code).is_none(), "{at}: two exit=");
                }
                Some((key, _)) => panic!("{at}: `{key}=` is not a doc-check marker"),
                None if *word == "invalid" => self.invalid = true,
                None if *word == "contains-output" => self.contains_output = true,
                None => {
                    let role = Role::parse(word)
                        .unwrap_or_else(|| panic!("{at}: `{word}` is not a doc-check marker"));
                    assert!(
                        self.role.replace(role).is_none(),
                        "{at}: a block has one role"
                    );
                }
            }
        }
        assert!(
            !self.invalid || self.is(Role::Policy) || self.is(Role::BrokerConfig),
            "{at}: `invalid` marks a policy or broker-config block"
        );
        assert!(
            self.exit.is_none() || self.is(Role::Run),
            "{at}: `exit=` marks a run block"
        );
    }
}

fn set(slot: &mut Option<String>, value: &str, word: &str, at: &str) {
    assert!(!value.is_empty(), "{at}: `{word}` has no value");
    assert!(
        slot.replace(value.to_owned()).is_none(),
        "{at}: `{word}` given twice"
    );
}

/// Every fenced block of `md` (named `page` in failures), in order, markers parsed; an
/// unterminated block or a word outside the vocabulary fails the test.
pub(crate) fn blocks_of(page: &str, md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in md.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                let words: Vec<&str> = info.split_whitespace().collect();
                let mut block = Block {
                    lang: words.first().copied().unwrap_or("").to_owned(),
                    role: None,
                    file: None,
                    exit: None,
                    same_as: None,
                    subset_of: None,
                    reference: None,
                    invalid: false,
                    contains_output: false,
                    body: String::new(),
                    line: i + 1,
                };
                block.mark(
                    words.get(1..).unwrap_or(&[]),
                    &format!("{page} line {}", i + 1),
                );
                open = Some(block);
            }
            (Some(_), Some(rest)) if rest.trim().is_empty() => out.extend(open.take()),
            (Some(b), _) => {
                b.body.push_str(line);
                b.body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{page}: unterminated code block");
    out
}

/// The section kinds of `<!-- check:NAME -->`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Messages,
    Limits,
    Metrics,
    AuditFields,
    /// `<!-- check:config-keys KIND -->`, read by `config_reference/harness.rs` (which the
    /// plugin crate includes too, so it parses its own sections).
    ConfigKeys,
}

impl Section {
    const ALL: [Section; 5] = [
        Section::Messages,
        Section::Limits,
        Section::Metrics,
        Section::AuditFields,
        Section::ConfigKeys,
    ];

    fn name(self) -> &'static str {
        match self {
            Section::Messages => "messages",
            Section::Limits => "limits",
            Section::Metrics => "metrics",
            Section::AuditFields => "audit-fields",
            Section::ConfigKeys => "config-keys",
        }
    }
}

/// The lines inside every `<!-- check:NAME -->` section of `md` for `section`.
pub(crate) fn sections(md: &str, section: Section) -> Vec<&str> {
    let (open, close) = (
        format!("<!-- check:{} -->", section.name()),
        format!("<!-- /check:{} -->", section.name()),
    );
    let mut out = Vec::new();
    let mut inside = false;
    for line in md.lines() {
        if line.trim() == open {
            assert!(!inside, "{open} inside another");
            inside = true;
        } else if line.trim() == close {
            inside = false;
        } else if inside {
            out.push(line);
        }
    }
    assert!(!inside, "{open} is not closed");
    out
}

/// Every HTML comment line of `md` that looks like a doc-check marker must be one of the
/// vocabulary's, opened and closed in pairs.
pub(crate) fn check_section_markers(page: &str, md: &str) {
    let mut open: Option<&str> = None;
    for (i, line) in md.lines().enumerate() {
        let at = format!("{page} line {}", i + 1);
        let Some(comment) = line
            .trim()
            .strip_prefix("<!--")
            .and_then(|c| c.strip_suffix("-->"))
            .map(str::trim)
        else {
            continue;
        };
        assert!(
            !comment.starts_with("checked-") && !comment.starts_with("/checked-"),
            "{at}: `<!-- {comment} -->` is the old marker syntax; use `<!-- check:NAME -->`"
        );
        if let Some(name) = comment.strip_prefix("/check:") {
            assert_eq!(open.take(), Some(name), "{at}: closes what is not open");
        } else if let Some(rest) = comment.strip_prefix("check:") {
            let name = rest.split_whitespace().next().unwrap_or("");
            let section = Section::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .unwrap_or_else(|| panic!("{at}: `check:{name}` is not a doc-check section"));
            assert_eq!(
                rest.split_whitespace().count(),
                if section == Section::ConfigKeys { 2 } else { 1 },
                "{at}: `check:{name}` takes {} argument",
                if section == Section::ConfigKeys {
                    "one"
                } else {
                    "no"
                }
            );
            assert!(
                open.replace(section.name()).is_none(),
                "{at}: nested sections"
            );
        } else {
            assert!(
                !comment.starts_with("check") && !comment.starts_with("/check"),
                "{at}: `<!-- {comment} -->` is not a doc-check marker"
            );
        }
    }
    assert!(open.is_none(), "{page}: section {open:?} is not closed");
}

/// `$ ` command lines of a block (with `\` continuations joined), each with the output lines
/// that follow it.
pub(crate) fn commands(block: &Block) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut continuing = false;
    for line in block.body.lines() {
        if continuing {
            let (cmd, _) = out.last_mut().unwrap();
            let joined = format!("{} {}", cmd.trim_end_matches('\\').trim_end(), line.trim());
            *cmd = joined;
        } else if let Some(cmd) = line.strip_prefix("$ ") {
            out.push((cmd.to_owned(), String::new()));
        } else {
            let (_, output) = out
                .last_mut()
                .unwrap_or_else(|| panic!("line {}: output before a command", block.line));
            output.push_str(line);
            output.push('\n');
        }
        continuing = out.last().is_some_and(|(c, _)| c.ends_with('\\'));
    }
    out
}

/// Splits a command line: whitespace-separated words, double or single quotes group.
pub(crate) fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quote, mut in_word) = (None, false);
    for c in line.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    assert!(quote.is_none(), "unbalanced quote in {line:?}");
    if in_word {
        out.push(cur);
    }
    out
}

/// The cells of a Markdown table row (`None` for anything else, including the header
/// separator).
pub(crate) fn cells(line: &str) -> Option<Vec<&str>> {
    let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    if inner.chars().all(|c| matches!(c, '-' | '|' | ':' | ' ')) {
        return None;
    }
    Some(inner.split(" | ").map(str::trim).collect())
}

/// The contents of the code spans in `text`.
pub(crate) fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Every fenced block of `md`, for callers that name the page themselves.
#[allow(dead_code, reason = "the plugin crate's doc tests' entry point")]
pub(crate) fn blocks(md: &str) -> Vec<Block> {
    blocks_of("page", md)
}

#[allow(
    dead_code,
    reason = "the plugin crate's doc tests read blocks through these"
)]
impl Block {
    /// The language word (the plugin crate's doc tests read blocks through this).
    pub(crate) fn lang(&self) -> &str {
        &self.lang
    }

    /// Whether the block's role or flag is `word` (the plugin crate's doc tests' spelling of
    /// [`Block::is`]).
    pub(crate) fn has(&self, word: &str) -> bool {
        self.role.is_some_and(|r| r.word() == word)
            || (word == "invalid" && self.invalid)
            || (word == "contains-output" && self.contains_output)
    }
}
