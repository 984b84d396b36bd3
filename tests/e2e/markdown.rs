//! Fenced code blocks of the Markdown pages, for the tests that run documented snippets
//! (`docs.rs`, `deploy.rs`): the info string's words carry each block's marker.

/// One fenced code block.
#[derive(Debug)]
pub(crate) struct Block {
    /// The words of the info string (`toml`, `policy=x.toml`, ...).
    pub(crate) info: Vec<String>,
    pub(crate) body: String,
    /// 1-based line of the opening fence, for failure messages.
    pub(crate) line: usize,
}

impl Block {
    pub(crate) fn attr(&self, key: &str) -> Option<&str> {
        self.info
            .iter()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }

    pub(crate) fn has(&self, word: &str) -> bool {
        self.info.iter().any(|w| w == word)
    }

    pub(crate) fn lang(&self) -> &str {
        self.info.first().map_or("", String::as_str)
    }
}

/// Every fenced block of `md`, in order; an unterminated block fails the test.
pub(crate) fn blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in md.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.split_whitespace().map(str::to_owned).collect(),
                    body: String::new(),
                    line: i + 1,
                });
            }
            (Some(_), Some(rest)) if rest.trim().is_empty() => out.extend(open.take()),
            (Some(b), _) => {
                b.body.push_str(line);
                b.body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "unterminated code block");
    out
}
