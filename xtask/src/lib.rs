//! Repository tasks for svid-broker.
//!
//! `codegen` turns `proto/**/*.proto` into Rust with `protox` (a pure-Rust protobuf compiler,
//! so no `protoc` is needed) and `tonic-prost-build`, and writes the result to
//! `crates/proto/src/gen/`, where it is checked in. The drift check regenerates into a temporary
//! directory and compares byte for byte, so `cargo test -p xtask` fails when someone edits a
//! `.proto` file (or bumps the generators) without regenerating.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One `.proto` file to compile and the name its generated Rust gets under the output directory.
#[derive(Debug, Clone, Copy)]
pub struct ProtoFile {
    /// Path relative to `proto/`.
    pub proto: &'static str,
    /// The file prost-build writes (named after the proto package; `_` for no package).
    pub generated: &'static str,
    /// The name it is checked in under, in `crates/proto/src/gen/`.
    pub checked_in: &'static str,
}

/// Every proto file the workspace generates code for.
pub const PROTO_FILES: &[ProtoFile] = &[
    ProtoFile {
        proto: "spiffe/workload.proto",
        // The Workload API has no proto package (its wire paths are `/SpiffeWorkloadAPI/...`).
        generated: "_.rs",
        checked_in: "workload.rs",
    },
    ProtoFile {
        proto: "svid_broker/v1/exchange.proto",
        generated: "svid_broker.v1.rs",
        checked_in: "exchange.rs",
    },
];

/// Messages generated without `#[derive(Debug)]`, because they hold a private key or a token;
/// `svid-broker-proto` implements a redacting `Debug` for each.
pub const REDACTED_DEBUG: &[&str] = &[
    ".X509SVID",
    ".JWTSVID",
    ".ValidateJWTSVIDRequest",
    ".svid_broker.v1.ExchangeRequest",
    ".svid_broker.v1.ExchangeResponse",
];

/// The proto include directory, relative to the workspace root.
pub const PROTO_DIR: &str = "proto";

/// Where generated code is checked in, relative to the workspace root.
pub const GEN_DIR: &str = "crates/proto/src/gen";

/// The command that regenerates the checked-in code.
pub const REGENERATE: &str = "cargo run -p xtask -- codegen";

/// What went wrong while generating or checking code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodegenError {
    /// protox could not compile the proto files.
    #[error("compiling proto files")]
    Protox(#[from] Box<protox::Error>),
    /// Reading or writing a file failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The generator did not produce the file we expected.
    #[error("code generator did not write {0}")]
    MissingOutput(PathBuf),
    /// Checked-in code differs from what the proto files generate.
    #[error(
        "generated code is out of date: {}; regenerate with `{REGENERATE}` and commit the result",
        .0.join(", ")
    )]
    Drift(Vec<String>),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CodegenError + use<> {
    let path = path.to_owned();
    move |source| CodegenError::Io {
        action,
        path,
        source,
    }
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_owned()
}

/// Generates Rust for every [`PROTO_FILES`] entry from `root/proto` into `out_dir`, under the
/// checked-in names. Returns the files written.
pub fn generate(root: &Path, out_dir: &Path) -> Result<Vec<PathBuf>, CodegenError> {
    let include = root.join(PROTO_DIR);
    // Relative names keep absolute paths of the checkout out of the descriptors, so the output
    // does not depend on where the repository lives.
    let fds = protox::compile(PROTO_FILES.iter().map(|f| f.proto), [&include])
        .map_err(|e| CodegenError::Protox(Box::new(e)))?;
    let scratch = tempfile::tempdir().map_err(io_err(
        "creating a temporary directory in",
        &std::env::temp_dir(),
    ))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Only tonic's `codegen` feature is needed by the proto crate; transports are the
        // callers' business.
        .build_transport(false)
        // These messages carry a private key or a bearer token; the proto crate gives them
        // hand-written Debug impls that redact those fields.
        .skip_debug(REDACTED_DEBUG)
        .out_dir(scratch.path())
        .compile_fds(fds)
        .map_err(io_err("generating code into", scratch.path()))?;
    fs::create_dir_all(out_dir).map_err(io_err("creating", out_dir))?;
    let mut written = Vec::with_capacity(PROTO_FILES.len());
    for file in PROTO_FILES {
        let from = scratch.path().join(file.generated);
        if !from.is_file() {
            return Err(CodegenError::MissingOutput(from));
        }
        let to = out_dir.join(file.checked_in);
        fs::copy(&from, &to).map_err(io_err("copying generated code to", &to))?;
        written.push(to);
    }
    Ok(written)
}

/// Regenerates the checked-in code under `root`.
pub fn codegen(root: &Path) -> Result<Vec<PathBuf>, CodegenError> {
    generate(root, &root.join(GEN_DIR))
}

/// Regenerates into a temporary directory and compares with the checked-in code; any
/// difference (changed, missing or extra file) is [`CodegenError::Drift`].
pub fn check(root: &Path) -> Result<(), CodegenError> {
    let scratch = tempfile::tempdir().map_err(io_err(
        "creating a temporary directory in",
        &std::env::temp_dir(),
    ))?;
    generate(root, scratch.path())?;
    let gen_dir = root.join(GEN_DIR);
    let mut drift = Vec::new();
    for file in PROTO_FILES {
        let fresh_path = scratch.path().join(file.checked_in);
        let fresh = fs::read(&fresh_path).map_err(io_err("reading", &fresh_path))?;
        let path = gen_dir.join(file.checked_in);
        match fs::read(&path) {
            Ok(current) if current == fresh => {}
            Ok(_) => drift.push(format!("{GEN_DIR}/{} differs", file.checked_in)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                drift.push(format!("{GEN_DIR}/{} is missing", file.checked_in));
            }
            Err(e) => return Err(io_err("reading", &path)(e)),
        }
    }
    let entries = fs::read_dir(&gen_dir).map_err(io_err("listing", &gen_dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("listing", &gen_dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !PROTO_FILES.iter().any(|f| f.checked_in == name) {
            drift.push(format!(
                "{GEN_DIR}/{name} is not generated by any proto file"
            ));
        }
    }
    if drift.is_empty() {
        Ok(())
    } else {
        Err(CodegenError::Drift(drift))
    }
}
