use std::fs;

use rustls_pki_types::CertificateDer;

use super::*;
use crate::testutil::TestCa;

fn td(name: &str) -> TrustDomain {
    TrustDomain::parse(name).unwrap()
}

/// Replaces `path` atomically, as a ConfigMap update or `mv` would, so a poll never sees half.
fn write_atomic(path: &Path, content: impl AsRef<[u8]>) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, path).unwrap();
}

fn authorities(source: &FileBundleSource, name: &str) -> Vec<CertificateDer<'static>> {
    source
        .bundles()
        .x509(&td(name))
        .map(|b| b.authorities().to_vec())
        .unwrap_or_default()
}

/// Waits (bounded) for the next publication.
async fn next_update(updates: &mut Updates) {
    tokio::time::timeout(Duration::from_secs(10), updates.changed())
        .await
        .expect("no update within 10 s")
        .unwrap();
}

#[test]
fn loads_pem_document_and_map_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_a, ca_b, ca_c) = (
        TestCa::new("a", None),
        TestCa::new("b", None),
        TestCa::new("c", None),
    );
    let pem = dir.path().join("a.pem");
    fs::write(&pem, ca_a.pem()).unwrap();
    // Leading blank space must not hide the `{` of a document.
    let doc = dir.path().join("b.json");
    fs::write(
        &doc,
        format!("\n  {}", ca_b.bundle_document("b.test", Some(3))),
    )
    .unwrap();
    let map = dir.path().join("map.json");
    fs::write(
        &map,
        format!(
            r#"{{"trust_domains":{{"c.test":{}}}}}"#,
            ca_c.bundle_document("c.test", None)
        ),
    )
    .unwrap();

    let source = FileBundleSource::load(
        FileSourceConfig::new()
            .bundle_file(td("a.test"), &pem)
            .bundle_file(td("b.test"), &doc)
            .bundle_map(&map),
    )
    .unwrap();
    assert_eq!(authorities(&source, "a.test"), [ca_a.der()]);
    assert_eq!(authorities(&source, "b.test"), [ca_b.der()]);
    assert_eq!(authorities(&source, "c.test"), [ca_c.der()]);
    assert_eq!(
        source.bundles().get(&td("b.test")).unwrap().sequence(),
        Some(3)
    );
    assert_eq!(source.bundles().len(), 3);
    assert!(source.last_error().is_none());
}

#[test]
fn startup_errors_name_the_file_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("a", None);
    let good = dir.path().join("good.pem");
    fs::write(&good, ca.pem()).unwrap();

    // Garbage PEM.
    let bad = dir.path().join("bad.pem");
    fs::write(
        &bad,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = FileBundleSource::load(FileSourceConfig::new().bundle_file(td("a.test"), &bad))
        .unwrap_err();
    assert!(
        matches!(&err, FileSourceError::Parse { path, format: FileFormat::Pem, .. } if path == &bad),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad.pem"), "{err}");

    // Broken document.
    let bad_doc = dir.path().join("bad.json");
    fs::write(&bad_doc, r#"{"keys": 7}"#).unwrap();
    let err = FileBundleSource::load(FileSourceConfig::new().bundle_file(td("a.test"), &bad_doc))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            FileSourceError::Parse {
                format: FileFormat::BundleDocument,
                ..
            }
        ),
        "{err:?}"
    );

    // Missing file.
    let missing = dir.path().join("missing.pem");
    let err = FileBundleSource::load(FileSourceConfig::new().bundle_file(td("a.test"), &missing))
        .unwrap_err();
    assert!(
        matches!(&err, FileSourceError::Read { path, kind: io::ErrorKind::NotFound } if path == &missing),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing.pem"), "{err}");

    // Oversized file.
    let big = dir.path().join("big.pem");
    fs::write(&big, vec![b'x'; MAX_BUNDLE_FILE_BYTES + 1]).unwrap();
    let err = FileBundleSource::load(FileSourceConfig::new().bundle_file(td("a.test"), &big))
        .unwrap_err();
    assert!(
        matches!(&err, FileSourceError::TooLarge { path, .. } if path == &big),
        "{err:?}"
    );

    // One trust domain, two files.
    let err = FileBundleSource::load(
        FileSourceConfig::new()
            .bundle_file(td("a.test"), &good)
            .bundle_file(td("a.test"), &good),
    )
    .unwrap_err();
    assert!(
        matches!(err, FileSourceError::DuplicateTrustDomain { .. }),
        "{err:?}"
    );

    // A map that repeats a file's trust domain.
    let map = dir.path().join("map.json");
    fs::write(
        &map,
        format!(
            r#"{{"trust_domains":{{"a.test":{}}}}}"#,
            ca.bundle_document("a.test", None)
        ),
    )
    .unwrap();
    let err = FileBundleSource::load(
        FileSourceConfig::new()
            .bundle_file(td("a.test"), &good)
            .bundle_map(&map),
    )
    .unwrap_err();
    assert!(
        matches!(&err, FileSourceError::MapConflict { path, trust_domain, other }
            if path == &map && trust_domain.as_str() == "a.test" && other == &good),
        "{err:?}"
    );

    // Nothing to read, or a busy-loop poll interval.
    assert!(matches!(
        FileBundleSource::load(FileSourceConfig::new()),
        Err(FileSourceError::NothingConfigured)
    ));
    assert!(matches!(
        FileBundleSource::load(
            FileSourceConfig::new()
                .bundle_file(td("a.test"), &good)
                .poll_interval(Duration::ZERO)
        ),
        Err(FileSourceError::PollInterval { .. })
    ));

    // And the good file alone loads.
    assert!(
        FileBundleSource::load(FileSourceConfig::new().bundle_file(td("a.test"), &good)).is_ok()
    );
}

#[test]
fn start_needs_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.pem");
    fs::write(&path, TestCa::new("a", None).pem()).unwrap();
    let err = FileBundleSource::start(FileSourceConfig::new().bundle_file(td("a.test"), &path))
        .unwrap_err();
    assert!(matches!(err, FileSourceError::NoRuntime), "{err:?}");
}

#[tokio::test]
async fn poller_picks_up_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (TestCa::new("old", None), TestCa::new("new", None));
    let path = dir.path().join("a.pem");
    fs::write(&path, old.pem()).unwrap();
    let source = FileBundleSource::start(
        FileSourceConfig::new()
            .bundle_file(td("a.test"), &path)
            .poll_interval(Duration::from_millis(20)),
    )
    .unwrap();
    let mut updates = source.subscribe();
    assert_eq!(authorities(&source, "a.test"), [old.der()]);

    write_atomic(&path, new.pem());
    next_update(&mut updates).await;
    assert_eq!(authorities(&source, "a.test"), [new.der()]);
    assert_eq!(source.error_count(), 0);
}

#[tokio::test]
async fn bad_new_file_keeps_last_good_and_reports_once() {
    let dir = tempfile::tempdir().unwrap();
    let (good, newer) = (TestCa::new("good", None), TestCa::new("newer", None));
    let path = dir.path().join("a.json");
    fs::write(&path, good.bundle_document("a.test", Some(1))).unwrap();
    let source =
        FileBundleSource::load(FileSourceConfig::new().bundle_file(td("a.test"), &path)).unwrap();
    let before = source.bundles();

    fs::write(&path, "{ not json").unwrap();
    let outcome = source.reload_now().await;
    assert!(!outcome.updated);
    assert_eq!(outcome.errors.len(), 1);
    assert!(
        Arc::ptr_eq(&before, &source.bundles()),
        "last good bundle set must stay"
    );
    assert!(
        matches!(&*source.last_error().unwrap(), FileSourceError::Parse { path: p, .. } if p == &path)
    );
    assert_eq!(source.error_count(), 1);

    // The poller does not report the same bad content again...
    let outcome = source.inner.reload(false);
    assert!(outcome.errors.is_empty() && !outcome.updated);
    assert_eq!(source.error_count(), 1);
    assert!(source.last_error().is_some(), "still failing");
    // ...but SIGHUP does.
    assert_eq!(source.reload_now().await.errors.len(), 1);
    assert_eq!(source.error_count(), 2);

    // A missing file is a failure too, and also keeps the last good.
    fs::remove_file(&path).unwrap();
    let outcome = source.inner.reload(false);
    assert!(matches!(
        &*outcome.errors[0],
        FileSourceError::Read {
            kind: io::ErrorKind::NotFound,
            ..
        }
    ));
    assert!(Arc::ptr_eq(&before, &source.bundles()));

    // A good file again: published, error cleared.
    fs::write(&path, newer.bundle_document("a.test", Some(2))).unwrap();
    let outcome = source.inner.reload(false);
    assert!(outcome.updated && outcome.errors.is_empty());
    assert_eq!(authorities(&source, "a.test"), [newer.der()]);
    assert!(source.last_error().is_none());
}

#[tokio::test]
async fn poller_reports_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("a", None);
    let path = dir.path().join("a.pem");
    fs::write(&path, ca.pem()).unwrap();
    let source = FileBundleSource::start(
        FileSourceConfig::new()
            .bundle_file(td("a.test"), &path)
            .poll_interval(Duration::from_millis(10)),
    )
    .unwrap();
    write_atomic(
        &path,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let mut waited = 0;
    while source.error_count() == 0 {
        assert!(waited < 1000, "the poller never reported the bad file");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert!(matches!(
        &*source.last_error().unwrap(),
        FileSourceError::Parse {
            format: FileFormat::Pem,
            ..
        }
    ));
    assert_eq!(authorities(&source, "a.test"), [ca.der()]);
}

#[tokio::test]
async fn same_length_rewrite_is_detected_by_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.json");
    let (one, two) = (TestCa::new("one", None), TestCa::new("two", None));
    let mut doc_one = one.bundle_document("a.test", Some(1));
    let mut doc_two = two.bundle_document("a.test", Some(1));
    // Same length, written within the same mtime tick as the first write.
    let len = doc_one.len().max(doc_two.len());
    for doc in [&mut doc_one, &mut doc_two] {
        while doc.len() < len {
            doc.push(' ');
        }
    }
    fs::write(&path, &doc_one).unwrap();
    let source =
        FileBundleSource::load(FileSourceConfig::new().bundle_file(td("a.test"), &path)).unwrap();
    fs::write(&path, &doc_two).unwrap();
    assert!(source.inner.reload(false).updated);
    assert_eq!(authorities(&source, "a.test"), [two.der()]);
    // Unchanged content: nothing published.
    let revision = *source.subscribe().borrow();
    assert!(!source.inner.reload(false).updated);
    assert!(!source.reload_now().await.updated);
    assert_eq!(*source.subscribe().borrow(), revision);
}

#[tokio::test]
async fn bundle_map_is_replaced_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        TestCa::new("a", None),
        TestCa::new("b", None),
        TestCa::new("c", None),
    );
    let file = dir.path().join("a.pem");
    fs::write(&file, a.pem()).unwrap();
    let map = dir.path().join("map.json");
    let write_map = |entries: &[(&str, &TestCa)]| {
        let body: Vec<String> = entries
            .iter()
            .map(|(name, ca)| format!(r#""{name}":{}"#, ca.bundle_document(name, None)))
            .collect();
        fs::write(
            &map,
            format!(r#"{{"trust_domains":{{{}}}}}"#, body.join(",")),
        )
        .unwrap();
    };
    write_map(&[("b.test", &b)]);
    let source = FileBundleSource::load(
        FileSourceConfig::new()
            .bundle_file(td("a.test"), &file)
            .bundle_map(&map),
    )
    .unwrap();

    // The new map drops b and adds c: state of the world.
    write_map(&[("c.test", &c)]);
    assert!(source.reload_now().await.updated);
    let tds: Vec<String> = source
        .bundles()
        .trust_domains()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(tds, ["a.test", "c.test"]);

    // A map that claims a.test (owned by a file) is rejected whole.
    write_map(&[("a.test", &b), ("d.test", &b)]);
    let outcome = source.reload_now().await;
    assert!(!outcome.updated);
    assert!(matches!(
        &*outcome.errors[0],
        FileSourceError::MapConflict { .. }
    ));
    assert_eq!(authorities(&source, "a.test"), [a.der()]);
    assert!(source.bundles().get(&td("d.test")).is_none());
    assert_eq!(authorities(&source, "c.test"), [c.der()]);

    // A map with a duplicate key is rejected too (the identity crate's rule).
    fs::write(
        &map,
        format!(
            r#"{{"trust_domains":{{"e.test":{d},"e.test":{d}}}}}"#,
            d = c.bundle_document("e.test", None)
        ),
    )
    .unwrap();
    let outcome = source.reload_now().await;
    assert!(matches!(
        &*outcome.errors[0],
        FileSourceError::Parse {
            format: FileFormat::BundleMap,
            ..
        }
    ));
    assert_eq!(authorities(&source, "c.test"), [c.der()]);
}

#[test]
fn document_detection() {
    assert!(looks_like_document(b"{}"));
    assert!(looks_like_document(b" \n\t{\"keys\":[]}"));
    assert!(looks_like_document(b"\xEF\xBB\xBF{}"));
    assert!(!looks_like_document(b"-----BEGIN CERTIFICATE-----"));
    assert!(!looks_like_document(b""));
    assert!(!looks_like_document(b"[{}]"));
}

#[test]
fn debug_lists_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.pem");
    fs::write(&path, TestCa::new("a", None).pem()).unwrap();
    let source =
        FileBundleSource::load(FileSourceConfig::new().bundle_file(td("a.test"), &path)).unwrap();
    let shown = format!("{source:?}");
    assert!(
        shown.contains("a.pem") && shown.contains("revision"),
        "{shown}"
    );
}

/// Issue 8 item 4: a FIFO or a device in a bundle file's place is refused without blocking
/// (at start-up and on reload), and the last good bundle stays.
#[tokio::test]
async fn a_fifo_or_a_device_is_refused_and_the_last_good_bundle_stays() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.pem");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let err = FileBundleSource::load(FileSourceConfig::new().bundle_file(td("a.test"), &fifo))
        .unwrap_err();
    assert!(
        matches!(&err, FileSourceError::NotRegular { path, kind: "fifo" } if path == &fifo),
        "{err:?}"
    );
    assert!(err.to_string().contains("must be a regular file"), "{err}");
    let err = FileBundleSource::load(
        FileSourceConfig::new().bundle_file(td("a.test"), Path::new("/dev/zero")),
    )
    .unwrap_err();
    assert!(
        matches!(
            &err,
            FileSourceError::NotRegular {
                kind: "character device",
                ..
            }
        ),
        "{err:?}"
    );

    let good = TestCa::new("good", None);
    let path = dir.path().join("a.pem");
    fs::write(&path, good.pem()).unwrap();
    let source =
        FileBundleSource::load(FileSourceConfig::new().bundle_file(td("a.test"), &path)).unwrap();
    let before = source.bundles();
    fs::remove_file(&path).unwrap();
    std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), source.reload_now())
        .await
        .expect("reload blocked on a fifo");
    assert!(!outcome.updated);
    assert!(
        matches!(
            &*outcome.errors[0],
            FileSourceError::NotRegular { kind: "fifo", .. }
        ),
        "{:?}",
        outcome.errors
    );
    assert!(Arc::ptr_eq(&before, &source.bundles()));
}
