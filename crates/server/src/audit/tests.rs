use super::*;
use crate::testutil::BUILDER;

#[test]
fn audit_memory_sink_keeps_json_lines() {
    let (sink, lines) = AuditSink::memory();
    sink.emit(&AuditEvent {
        time: rfc3339(UNIX_EPOCH),
        event: "svid-broker.exchange",
        decision: "allow",
        code: None,
        reason: "granted".into(),
        subject: Some(BUILDER),
        actor: "jwt-svid".into(),
        service: "s",
        requested: String::new(),
        granted: String::new(),
        kind: "access_token",
        ceiling: None,
        jti: Some("j"),
        backend: None,
        credential_id: None,
        expires_at: None,
        valid_until: None,
        cached: false,
        peer: None,
        endpoint: "grpc",
        subject_token: None,
        count: None,
        interval_seconds: None,
    })
    .unwrap();
    let lines = lines.lock().unwrap();
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["time"], "1970-01-01T00:00:00Z");
    assert_eq!(v["subject"], BUILDER);
    assert!(v.get("code").is_none());
}

#[test]
fn audit_file_sink_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let sink = AuditSink::file(&path).unwrap();
    let ev = AuditEvent {
        time: rfc3339(UNIX_EPOCH),
        event: "svid-broker.exchange",
        decision: "deny",
        code: Some("unauthenticated"),
        reason: "r".into(),
        subject: None,
        actor: "unauthenticated".into(),
        service: "s",
        requested: String::new(),
        granted: String::new(),
        kind: "access_token",
        ceiling: None,
        jti: None,
        backend: None,
        credential_id: None,
        expires_at: None,
        valid_until: None,
        cached: false,
        peer: None,
        endpoint: "realm_get",
        subject_token: None,
        count: None,
        interval_seconds: None,
    };
    sink.emit(&ev).unwrap();
    sink.emit(&ev).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
}

fn event() -> AuditEvent<'static> {
    AuditEvent {
        time: rfc3339(UNIX_EPOCH),
        event: "svid-broker.exchange",
        decision: "allow",
        code: None,
        reason: "granted".into(),
        subject: Some(BUILDER),
        actor: "jwt-svid".into(),
        service: "s",
        requested: String::new(),
        granted: String::new(),
        kind: "access_token",
        ceiling: None,
        jti: None,
        backend: None,
        credential_id: None,
        expires_at: None,
        valid_until: None,
        cached: false,
        peer: None,
        endpoint: "grpc",
        subject_token: None,
        count: None,
        interval_seconds: None,
    }
}

#[test]
fn audit_log_failures_are_counted_and_follow_the_policy() {
    let metrics = Metrics::default();
    let deny = AuditLog::new(AuditSink::writer(FailingWriter), AuditOnError::Deny);
    assert_eq!(deny.record(&event(), &metrics), Err(AuditUnavailable));
    let first_warning = deny.last_warning.load(Ordering::Relaxed);
    assert!(first_warning > 0);
    // Further failures within the interval count but do not log again.
    for _ in 0..100 {
        assert!(deny.record(&event(), &metrics).is_err());
    }
    assert_eq!(deny.last_warning.load(Ordering::Relaxed), first_warning);
    let go_on = AuditLog::new(AuditSink::writer(FailingWriter), AuditOnError::Continue);
    assert_eq!(go_on.record(&event(), &metrics), Ok(()));
    assert_eq!(metrics.audit_write_errors(), 102);
    let ok = AuditLog::new(AuditSink::Discard, AuditOnError::Deny);
    assert_eq!(ok.record(&event(), &metrics), Ok(()));
    assert_eq!(metrics.audit_write_errors(), 102);
}

/// A sink that takes `room` bytes, then fails with ENOSPC until `room` is raised again.
struct ShortDisk {
    written: Arc<Mutex<Vec<u8>>>,
    room: Arc<Mutex<usize>>,
}

impl std::io::Write for ShortDisk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut room = self.room.lock().unwrap();
        if *room == 0 {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        let n = buf.len().min(*room);
        *room -= n;
        self.written.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An event cut short by a full disk leaves at most itself unreadable: the next one starts on
/// a line of its own and parses.
#[test]
fn a_partial_audit_write_does_not_corrupt_the_next_event() {
    let written = Arc::new(Mutex::new(Vec::new()));
    let room = Arc::new(Mutex::new(100));
    let sink = AuditSink::writer(ShortDisk {
        written: Arc::clone(&written),
        room: Arc::clone(&room),
    });
    let log = AuditLog::new(sink, AuditOnError::Deny);
    let metrics = Metrics::default();
    let mut first = event();
    first.reason = "first".into();
    assert!(log.record(&first, &metrics).is_err());
    *room.lock().unwrap() = 1 << 20;
    let mut second = event();
    second.reason = "second".into();
    assert!(log.record(&second, &metrics).is_ok());
    let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
    let last = text.lines().last().unwrap();
    let event: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(event["reason"], "second", "{text}");
}

struct FailingWriter;

impl std::io::Write for FailingWriter {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::from_raw_os_error(28))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
