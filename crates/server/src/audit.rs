//! The audit log: one JSON line per decision, on a stream of its own, never carrying a token
//! or a secret. What goes into an event is decided in `engine::record`; this module owns the
//! sinks, the event shape and what a failed write means.

use std::fmt;
use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use svid_broker_identity::clock::Rfc3339;

use crate::metrics::Metrics;

/// Most audit lines the in-memory sink keeps (tests only read the last few).
pub const MAX_MEMORY_AUDIT_LINES: usize = 10_000;

/// Where audit events go: one JSON object per line, on a stream of their own.
#[derive(Clone)]
pub enum AuditSink {
    /// Standard error.
    Stderr,
    /// Standard output.
    Stdout,
    /// An append-only file.
    File(Arc<Mutex<AuditFile>>),
    /// Kept in memory (tests), at most [`MAX_MEMORY_AUDIT_LINES`].
    Memory(Arc<Mutex<Vec<String>>>),
    /// Any writer (tests: one that fails like a full filesystem).
    Writer(Arc<Mutex<SinkWriter>>),
    /// Dropped.
    Discard,
}

impl fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stderr => "AuditSink::Stderr",
            Self::Stdout => "AuditSink::Stdout",
            Self::File(_) => "AuditSink::File",
            Self::Memory(_) => "AuditSink::Memory",
            Self::Writer(_) => "AuditSink::Writer",
            Self::Discard => "AuditSink::Discard",
        })
    }
}

impl AuditSink {
    /// Opens `path` for appending (created if missing).
    ///
    /// # Errors
    /// The I/O error.
    pub fn file(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self::File(Arc::new(Mutex::new(AuditFile {
            file,
            broken_line: false,
        }))))
    }

    /// An in-memory sink and the handle to read it.
    pub fn memory() -> (Self, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (Self::Memory(lines.clone()), lines)
    }

    /// A sink writing to `writer`.
    pub fn writer(writer: impl std::io::Write + Send + 'static) -> Self {
        Self::Writer(Arc::new(Mutex::new(SinkWriter {
            inner: Box::new(writer),
            broken_line: false,
        })))
    }

    /// Writes one event as a JSON line, under the sink's lock so concurrent events never
    /// interleave. What a failure means (refuse the decision or serve on) is
    /// [`AuditLog`]'s business, so this only reports it.
    ///
    /// # Errors
    /// The I/O error (`ENOSPC`, `EPIPE`, ...).
    pub fn emit(&self, event: &AuditEvent<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_string(event).map_err(std::io::Error::other)?;
        line.push('\n');
        match self {
            Self::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            Self::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
            Self::File(state) => {
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                // A half line left by an earlier failure that could not be cut back: end it,
                // so this event is a line of its own.
                if state.broken_line {
                    line.insert(0, '\n');
                }
                match append_whole_line(&mut state.file, line.as_bytes()) {
                    Ok(()) => {
                        state.broken_line = false;
                        Ok(())
                    }
                    Err(failure) => {
                        state.broken_line |= failure.partial_line_left;
                        Err(failure.error)
                    }
                }
            }
            Self::Memory(lines) => {
                let mut lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
                if lines.len() >= MAX_MEMORY_AUDIT_LINES {
                    lines.remove(0);
                }
                line.pop();
                lines.push(line);
                Ok(())
            }
            Self::Writer(w) => {
                let mut w = w.lock().unwrap_or_else(PoisonError::into_inner);
                // A stream cannot be cut back: after a failed write, start the next event on
                // a line of its own so at most the broken one is unreadable.
                if w.broken_line {
                    line.insert(0, '\n');
                }
                let result = w
                    .inner
                    .write_all(line.as_bytes())
                    .and_then(|()| w.inner.flush());
                w.broken_line = result.is_err();
                result
            }
            Self::Discard => Ok(()),
        }
    }
}

/// An append-only audit file ([`AuditSink::file`]), and whether a failed write left a partial
/// line in it.
#[derive(Debug)]
pub struct AuditFile {
    file: File,
    broken_line: bool,
}

/// A failed [`append_whole_line`]: the error, and whether part of the line stayed in the file
/// (the cut-back failed too).
#[derive(Debug)]
struct AppendFailure {
    error: std::io::Error,
    partial_line_left: bool,
}

/// Appends `line` to the append-only audit file, whole or not at all when it can.
///
/// A write cut short (ENOSPC after a partial write) would leave half a line that the next
/// event is appended to, making both unreadable, so the file is cut back by what this event
/// wrote. Counting the bytes written, rather than asking the file's length before every
/// event, keeps a `statx` off every request (about 1% of a realm exchange in a profile); the
/// length is asked only after a failure. When even the cut-back fails, the failure says so
/// and the caller starts the next event on a new line.
fn append_whole_line(file: &mut impl AppendOnly, line: &[u8]) -> Result<(), AppendFailure> {
    let mut written = 0;
    while written < line.len() {
        let error = match file.write(&line[written..]) {
            Ok(0) => std::io::Error::from(std::io::ErrorKind::WriteZero),
            Ok(n) => {
                written += n;
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => e,
        };
        let cut_back = written == 0
            || file
                .len()
                .and_then(|len| file.truncate(len.saturating_sub(written as u64)))
                .is_ok();
        return Err(AppendFailure {
            error,
            partial_line_left: !cut_back,
        });
    }
    Ok(())
}

/// What [`append_whole_line`] needs of the audit file: a tests double stands in for [`File`].
trait AppendOnly: std::io::Write {
    /// The file's length now.
    fn len(&self) -> std::io::Result<u64>;
    /// Cuts the file to `len` bytes.
    fn truncate(&self, len: u64) -> std::io::Result<()>;
}

impl AppendOnly for File {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn truncate(&self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
}

/// A caller-supplied audit stream, and whether its last write may have left a partial line.
pub struct SinkWriter {
    inner: Box<dyn std::io::Write + Send>,
    broken_line: bool,
}

impl fmt::Debug for SinkWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkWriter")
            .field("broken_line", &self.broken_line)
            .finish_non_exhaustive()
    }
}

/// What the broker does when an audit event cannot be written (`[log] audit_on_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuditOnError {
    /// A credential whose issuance cannot be audited is not handed out: the request fails
    /// with 503 / UNAVAILABLE (as Vault refuses requests it cannot audit). Refusals are still
    /// answered (an unwritten denial hides nothing issued).
    #[default]
    Deny,
    /// Serve on; the lost events are only counted.
    Continue,
}

impl AuditOnError {
    /// The config spelling.
    pub fn label(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Continue => "continue",
        }
    }
}

/// Shortest time between two log lines about audit write failures: a full disk fails every
/// write, and one log line per request would fill the next disk.
pub const AUDIT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The audit sink with its failure policy: counts write errors in
/// `svid_broker_audit_write_errors_total`, logs them at most once per
/// [`AUDIT_ERROR_LOG_INTERVAL`], never panics.
#[derive(Debug)]
pub struct AuditLog {
    sink: AuditSink,
    on_error: AuditOnError,
    /// Unix seconds of the last warning (0: none yet).
    last_warning: AtomicU64,
}

/// An audit event could not be written and `audit_on_error = "deny"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the audit log cannot be written (audit_on_error = \"deny\")")]
#[non_exhaustive]
pub struct AuditUnavailable;

impl AuditLog {
    /// A log writing to `sink` that reacts to failures as `on_error` says.
    pub fn new(sink: AuditSink, on_error: AuditOnError) -> Self {
        Self {
            sink,
            on_error,
            last_warning: AtomicU64::new(0),
        }
    }

    /// The failure policy.
    pub fn on_error(&self) -> AuditOnError {
        self.on_error
    }

    /// Writes `event`. On failure the error is counted in `metrics` and logged (rate-limited);
    /// the result says whether the decision may stand.
    ///
    /// # Errors
    /// [`AuditUnavailable`] when the write failed and the policy is [`AuditOnError::Deny`].
    pub fn record(
        &self,
        event: &AuditEvent<'_>,
        metrics: &Metrics,
    ) -> Result<(), AuditUnavailable> {
        let Err(error) = self.sink.emit(event) else {
            return Ok(());
        };
        metrics.audit_write_error();
        let now = unix_secs(SystemTime::now());
        let last = self.last_warning.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= AUDIT_ERROR_LOG_INTERVAL.as_secs())
            && self
                .last_warning
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(
                %error,
                audit_on_error = self.on_error.label(),
                "audit events cannot be written (further failures are only counted in svid_broker_audit_write_errors_total for a minute)"
            );
        }
        match self.on_error {
            AuditOnError::Deny => Err(AuditUnavailable),
            AuditOnError::Continue => Ok(()),
        }
    }
}

/// One audit event: a decision of the broker. Never carries a token or a secret.
#[derive(Debug, Serialize)]
pub struct AuditEvent<'a> {
    /// Event time, RFC 3339.
    pub time: String,
    /// Always `svid-broker.exchange`.
    pub event: &'static str,
    /// `allow` or `deny` (a request the policy grants nothing is a `deny`).
    pub decision: &'static str,
    /// The error class for denials (`unauthenticated`, ...), absent on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// Why (the error chain for denials, `granted` or `partial` on success).
    pub reason: String,
    /// The authenticated SPIFFE ID, when authentication got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<&'a str>,
    /// How the subject authenticated, plus the client's `client_id` when it sent one.
    pub actor: String,
    /// The registry `service` asked for.
    pub service: &'a str,
    /// What was asked for (scopes, space-joined).
    pub requested: String,
    /// What was granted (scopes, space-joined).
    pub granted: String,
    /// `access_token`, `login_credential`, `refresh_token` or `registry_credential`.
    pub kind: &'static str,
    /// A login credential's or refresh token's ceiling: space-joined scopes, or
    /// `registry-wide` when it carries none (tokens obtained with it get whatever policy
    /// grants at the time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<String>,
    /// The issued token's or credential's `jti`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<&'a str>,
    /// For a credential a registry's own API made: the registry kind (`harbor`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<&'static str>,
    /// For a credential a registry's own API made: the registry's id for it (a Harbor robot's
    /// id and name), to correlate with the registry's own audit log. Never its secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<&'a str>,
    /// Its expiry, RFC 3339: for a registry credential, when the broker stops handing it out
    /// (and, where it can, revokes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// For a registry credential the broker cannot revoke (Quay's robot tokens, Artifactory's
    /// access tokens): when the registry itself ends it, RFC 3339. What an incident responder
    /// needs: the credential works until then, whatever the broker does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// Whether a cached token was reused.
    pub cached: bool,
    /// The client's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Which endpoint.
    pub endpoint: &'static str,
    /// Present when the caller (then `actor`) presented a subject token for the subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_token: Option<SubjectTokenAudit<'a>>,
    /// `svid-broker.preauth_denials` summaries: how many requests of this peer, endpoint and
    /// reason were refused before authentication in the interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// `svid-broker.preauth_denials` summaries: the interval's length in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u64>,
}

/// The `ceiling` audit text of a broker credential.
pub fn ceiling_text(ceiling: &[svid_broker_policy::ResourceScope]) -> String {
    if ceiling.is_empty() {
        REGISTRY_WIDE.to_owned()
    } else {
        svid_broker_policy::scope::join_scopes(ceiling)
    }
}

/// The `ceiling` of a credential without one.
pub const REGISTRY_WIDE: &str = "registry-wide";

/// What the audit log records of a subject token (never the token itself).
#[derive(Debug, Default, Serialize)]
pub struct SubjectTokenAudit<'a> {
    /// The token kind: `kubernetes-service-account`.
    pub kind: &'static str,
    /// How the actor authenticated (`x509-svid`, `jwt-svid`).
    pub actor_method: &'static str,
    /// The token's issuer, once validated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<&'a str>,
    /// `kubernetes.io.namespace`, once validated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
    /// `kubernetes.io.serviceaccount.name`, once validated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<&'a str>,
    /// `kubernetes.io.pod.name`, when the token is pod-bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<&'a str>,
    /// `kubernetes.io.pod.uid`, when the token is pod-bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<&'a str>,
    /// `kubernetes.io.node.name`, when the token names the pod's node (the node a `{node}`
    /// trusted-actor binding checked it against).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<&'a str>,
}

/// RFC 3339 text of `t`.
pub fn rfc3339(t: SystemTime) -> String {
    Rfc3339(t).to_string()
}

/// Formats a peer address for the audit log.
pub fn peer_text(peer: Option<SocketAddr>) -> Option<String> {
    peer.map(|p| p.to_string())
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` with every character that is not printable ASCII (or a space) replaced by `?`, for
/// caller-supplied text in the audit log (no RLO, ZWSP or control characters to disguise a
/// line).
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Seconds since the Unix epoch, 0 before it.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
