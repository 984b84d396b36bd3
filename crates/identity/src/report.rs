//! [`ErrorChain`]: the workspace's one printer of an error and its `source()` chain.
//!
//! It lives here because svid-broker-identity is the lowest crate every other crate (client,
//! server, sources, dev, token, policy, the CLI and the load generator) already depends on;
//! the proto crate, the only lower one, holds generated wire code and nothing else.
//!
//! The workspace's errors follow one rule that makes the chain readable: a `Display` never
//! prints a cause it also returns from `source()`; the chain printer prints each cause once.

use std::error::Error;
use std::fmt;

/// Displays an error followed by its `source()` chain, `a: b: c`, for log lines, audit
/// reasons and command-line messages.
///
/// A cause whose text the previous message already ends with is skipped: our own errors never
/// repeat a cause, but some third-party ones print their cause and also return it.
///
/// ```
/// use svid_broker_identity::report::ErrorChain;
///
/// let err = std::io::Error::other("disk full");
/// assert_eq!(ErrorChain::new(&err).to_string(), "disk full");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(&'a dyn Error);

impl<'a> ErrorChain<'a> {
    /// The chain of `err`.
    pub fn new(err: &'a dyn Error) -> Self {
        Self(err)
    }
}

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !shown.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            next = cause.source();
        }
        Ok(())
    }
}

/// `url` with whatever may be user info (`user:password@`) replaced by `***`, for error
/// messages that quote a configured URL: a URL is often refused *because* it carries a
/// password, and the message must not repeat it.
///
/// Everything between the scheme's `://` (when it comes before the first `@`, or else the
/// start) and the **last** `@` of the whole string is replaced. A password may hold any of
/// `/`, `?`, `#` or `://` unescaped, and the URL may be refused for one of those before its
/// user info is looked at, so no delimiter is trusted; an `@` in a path or query is
/// over-redacted, which costs an error message some detail and nothing else.
///
/// ```
/// use svid_broker_identity::report::redact_url_userinfo;
///
/// assert_eq!(redact_url_userinfo("https://robot:s3cret@harbor.example/api"), "https://***@harbor.example/api");
/// assert_eq!(redact_url_userinfo("https://harbor.example/api"), "https://harbor.example/api");
/// ```
pub fn redact_url_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(last_at) = url.rfind('@') else {
        return std::borrow::Cow::Borrowed(url);
    };
    let first_at = url.find('@').unwrap_or(last_at);
    let start = url
        .find("://")
        .filter(|&i| i < first_at)
        .map_or(0, |i| i + 3);
    std::borrow::Cow::Owned(format!("{}***{}", &url[..start], &url[last_at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    /// A third-party style error that prints its cause and also returns it.
    #[derive(Debug, thiserror::Error)]
    #[error("wrapper: {0}")]
    struct Repeats(#[source] Inner);

    #[test]
    fn prints_every_cause_once_in_order() {
        assert_eq!(
            ErrorChain::new(&Outer(Middle(Inner))).to_string(),
            "outer: middle: inner"
        );
        assert_eq!(ErrorChain::new(&Inner).to_string(), "inner");
        assert_eq!(
            ErrorChain::new(&Repeats(Inner)).to_string(),
            "wrapper: inner"
        );
    }

    #[test]
    fn user_info_is_redacted_wherever_it_may_be() {
        for (url, shown) in [
            ("https://u:p@h.example/x", "https://***@h.example/x"),
            ("https://u:p/w@h.example/x", "https://***@h.example/x"),
            ("u:p@h.example", "***@h.example"),
            ("https://a@b@h.example", "https://***@h.example"),
            (
                "https://robot:pa?ss@harbor.example",
                "https://***@harbor.example",
            ),
            (
                "https://robot:s3c#ret@harbor.example/api",
                "https://***@harbor.example/api",
            ),
            (
                "robot:pw@harbor.example/x?next=https://y",
                "***@harbor.example/x?next=https://y",
            ),
            ("https://u:p:///@h.example", "https://***@h.example"),
            // Over-redacted, never leaked.
            ("https://h.example/x?next=a@b", "https://***@b"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
        ] {
            assert_eq!(redact_url_userinfo(url), shown, "{url}");
        }
    }
}
