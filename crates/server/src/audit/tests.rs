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

/// An append-only file that takes `room` more bytes, then fails like a full disk.
struct ShortFile {
    bytes: Vec<u8>,
    room: usize,
}

impl std::io::Write for ShortFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        // At most 7 bytes per call, so an event takes several writes.
        let n = buf.len().min(self.room).min(7);
        self.bytes.extend_from_slice(&buf[..n]);
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The file behind a `RefCell`, as the trait cuts through `&self` like `File::set_len`;
/// `refuse_cut` makes the cut-back fail too.
struct Cut<'a> {
    file: &'a std::cell::RefCell<ShortFile>,
    refuse_cut: bool,
}

impl std::io::Write for Cut<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.borrow_mut().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AppendOnly for Cut<'_> {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.file.borrow().bytes.len() as u64)
    }
    fn truncate(&self, len: u64) -> std::io::Result<()> {
        if self.refuse_cut {
            return Err(std::io::Error::from_raw_os_error(5));
        }
        self.file
            .borrow_mut()
            .bytes
            .truncate(usize::try_from(len).unwrap());
        Ok(())
    }
}

/// The audit file after a write cut short holds exactly the lines written before it: the
/// partial event is cut back by the bytes it wrote, without asking the length beforehand.
#[test]
fn a_partial_write_to_the_audit_file_is_cut_back_to_the_previous_line() {
    let file = std::cell::RefCell::new(ShortFile {
        bytes: Vec::new(),
        room: 1 << 20,
    });
    let mut cut = Cut {
        file: &file,
        refuse_cut: false,
    };
    append_whole_line(&mut cut, b"first line\n").unwrap();
    file.borrow_mut().room = 9;
    let failure = append_whole_line(&mut cut, b"second line, cut short\n").unwrap_err();
    assert_eq!(failure.error.raw_os_error(), Some(28));
    assert!(!failure.partial_line_left);
    assert_eq!(
        file.borrow().bytes,
        b"first line\n",
        "the partial event is cut back"
    );
    file.borrow_mut().room = 1 << 20;
    append_whole_line(&mut cut, b"third line\n").unwrap();
    assert_eq!(file.borrow().bytes, b"first line\nthird line\n");

    // When the cut-back fails too, the failure says a partial line is left.
    file.borrow_mut().room = 5;
    cut.refuse_cut = true;
    let failure = append_whole_line(&mut cut, b"fourth line\n").unwrap_err();
    assert!(failure.partial_line_left);
    assert_eq!(file.borrow().bytes, b"first line\nthird line\nfourt");
}

/// Through the sink: after a partial line that could not be cut back, the next event still
/// parses, on a line of its own.
#[test]
fn an_event_after_an_uncut_partial_line_starts_a_line_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let sink = AuditSink::file(&path).unwrap();
    let AuditSink::File(state) = &sink else {
        unreachable!()
    };
    // What a failed cut-back leaves: half an event, and the flag set.
    {
        let mut state = state.lock().unwrap();
        std::io::Write::write_all(&mut state.file, b"{\"half\":").unwrap();
        state.broken_line = true;
    }
    sink.emit(&event()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let last = text.lines().last().unwrap();
    serde_json::from_str::<serde_json::Value>(last).unwrap();
    assert!(!state.lock().unwrap().broken_line);
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
