//! Fails when the checked-in generated code no longer matches `proto/`.

#[test]
fn checked_in_code_matches_proto_files() {
    let root = xtask::workspace_root();
    if let Err(e) = xtask::check(&root) {
        panic!("{e}");
    }
}

#[test]
fn drift_is_detected() {
    // Copy the inputs into a scratch workspace, damage the checked-in file, and expect a
    // drift error that tells how to regenerate.
    let root = xtask::workspace_root();
    let scratch = tempfile::tempdir().unwrap();
    for file in xtask::PROTO_FILES {
        let dst = scratch.path().join(xtask::PROTO_DIR).join(file.proto);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(root.join(xtask::PROTO_DIR).join(file.proto), dst).unwrap();
    }
    let written = xtask::codegen(scratch.path()).unwrap();
    assert_eq!(written.len(), xtask::PROTO_FILES.len());
    xtask::check(scratch.path()).unwrap();

    let gen_file = &written[0];
    let mut text = std::fs::read_to_string(gen_file).unwrap();
    text.push_str("// hand edit\n");
    std::fs::write(gen_file, text).unwrap();
    let err = xtask::check(scratch.path()).unwrap_err().to_string();
    assert!(err.contains("workload.rs differs"), "{err}");
    assert!(err.contains(xtask::REGENERATE), "{err}");

    std::fs::remove_file(gen_file).unwrap();
    let err = xtask::check(scratch.path()).unwrap_err().to_string();
    assert!(err.contains("workload.rs is missing"), "{err}");

    std::fs::write(gen_file.with_file_name("stale.rs"), "").unwrap();
    let err = xtask::check(scratch.path()).unwrap_err().to_string();
    assert!(err.contains("stale.rs is not generated"), "{err}");
}
