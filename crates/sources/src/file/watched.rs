//! Reading a file the broker watches (policy, bundle files, JWK Sets, TLS certificates): regular
//! files only, capped, never blocking on open.
//!
//! A FIFO blocks `open(2)` until a writer appears and `/dev/zero` never ends; a poller that
//! opened either would hang a thread for good. The file is opened with `O_NONBLOCK` (which a
//! regular file ignores) and `O_NOCTTY` (a terminal never becomes ours), its type checked on the open handle (no window between a `stat` and
//! the `open`), and at most `cap + 1` bytes read. Callers run this off the async runtime
//! (`spawn_blocking` or their own thread): even a capped read of a slow network file system
//! must not stall a runtime worker.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read as _};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// Why a watched file was not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchedFileError {
    /// Opening or reading failed.
    #[error("cannot read {}", .path.display())]
    Io {
        /// The file's path as the caller gave it.
        path: PathBuf,
        /// From opening, inspecting or reading the file.
        #[source]
        source: io::Error,
    },
    /// The path is not a regular file.
    #[error("{} is a {kind}: a watched file must be a regular file", .path.display())]
    NotRegular {
        /// The file's path as the caller gave it.
        path: PathBuf,
        /// What it is instead (`directory`, `fifo`, `character device`, ...).
        kind: &'static str,
    },
    /// A file holding a secret ([`read_owner_only_file`]) may be read by others than its
    /// owner.
    #[error(
        "{} has mode {mode:o}; a {what} must be readable by its owner only (chmod 600)",
        .path.display()
    )]
    NotOwnerOnly {
        /// The file's path as the caller gave it.
        path: PathBuf,
        /// The kind of file (`credential file`, `federation key file`).
        what: &'static str,
        /// Its permission bits (`mode & 0o777`), with some group or other bit set.
        mode: u32,
    },
    /// The file is larger than its cap.
    #[error("{} is larger than {max} bytes, the cap for a {what}", .path.display())]
    TooLarge {
        /// The file's path as the caller gave it.
        path: PathBuf,
        /// The kind of file (`policy file`, `tls certificate file`, ...).
        what: &'static str,
        /// The caller's cap for this kind of file, in bytes.
        max: usize,
    },
}

impl WatchedFileError {
    /// The path the error is about, as the caller gave it.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::NotRegular { path, .. }
            | Self::NotOwnerOnly { path, .. }
            | Self::TooLarge { path, .. } => path,
        }
    }
}

/// Opens `path` without blocking and checks on the handle that it is a regular file.
///
/// # Errors
/// [`WatchedFileError::Io`], [`WatchedFileError::NotRegular`].
pub fn open_regular(path: &Path) -> Result<(File, Metadata), WatchedFileError> {
    let io = |source| WatchedFileError::Io {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        // O_NOCTTY: were the path a terminal, opening it must not make it the broker's
        // controlling terminal before the type check below refuses it.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let kind = if kind.is_dir() {
            "directory"
        } else if kind.is_fifo() {
            "fifo"
        } else if kind.is_char_device() {
            "character device"
        } else if kind.is_block_device() {
            "block device"
        } else if kind.is_socket() {
            "socket"
        } else {
            "special file"
        };
        return Err(WatchedFileError::NotRegular {
            path: path.to_owned(),
            kind,
        });
    }
    Ok((file, meta))
}

/// Reads at most `max` bytes from `file` (already opened with [`open_regular`]); `what` names
/// the kind of file in the error.
///
/// # Errors
/// [`WatchedFileError::Io`], [`WatchedFileError::TooLarge`].
pub fn read_open_capped(
    path: &Path,
    file: File,
    meta: &Metadata,
    max: usize,
    what: &'static str,
) -> Result<Vec<u8>, WatchedFileError> {
    let too_large = || WatchedFileError::TooLarge {
        path: path.to_owned(),
        what,
        max,
    };
    if meta.len() > max as u64 {
        return Err(too_large());
    }
    // The file may grow between the stat and the read; `take` keeps the cap authoritative.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).min(max));
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| WatchedFileError::Io {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Reads the regular file `path`, at most `max` bytes. Blocking: call it off the runtime.
///
/// # Errors
/// A [`WatchedFileError`] naming the rule.
pub fn read_watched_file(
    path: &Path,
    max: usize,
    what: &'static str,
) -> Result<Vec<u8>, WatchedFileError> {
    let (file, meta) = open_regular(path)?;
    read_open_capped(path, file, &meta, max, what)
}

/// As [`read_watched_file`], for a file holding a secret: refused when its group or others
/// may read it (checked on the opened handle, so the file read is the file checked). A secret
/// others can read has leaked already; starting with it would hide that.
///
/// # Errors
/// [`WatchedFileError::NotOwnerOnly`], or as [`read_watched_file`].
pub fn read_owner_only_file(
    path: &Path,
    max: usize,
    what: &'static str,
) -> Result<Vec<u8>, WatchedFileError> {
    use std::os::unix::fs::PermissionsExt as _;
    let (file, meta) = open_regular(path)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(WatchedFileError::NotOwnerOnly {
            path: path.to_owned(),
            what,
            mode,
        });
    }
    read_open_capped(path, file, &meta, max, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_others_may_read_is_refused_with_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, b"s3cret").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_owner_only_file(&path, 64, "key file").unwrap_err();
        assert!(
            matches!(err, WatchedFileError::NotOwnerOnly { mode: 0o640, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(
            read_owner_only_file(&path, 64, "key file").unwrap(),
            b"s3cret"
        );
    }

    #[test]
    fn a_regular_file_within_its_cap_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(read_watched_file(&path, 5, "test file").unwrap(), b"hello");
    }

    #[test]
    fn a_file_over_its_cap_is_refused_with_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello!").unwrap();
        let err = read_watched_file(&path, 5, "test file").unwrap_err();
        assert!(
            matches!(
                err,
                WatchedFileError::TooLarge {
                    max: 5,
                    what: "test file",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("larger than 5 bytes"), "{err}");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        // Nobody ever opens the FIFO for writing: a blocking open would hang here.
        let err = read_watched_file(&path, 1024, "test file").unwrap_err();
        assert!(
            matches!(err, WatchedFileError::NotRegular { kind: "fifo", .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("must be a regular file"), "{err}");
    }

    #[test]
    fn dev_zero_and_directories_are_refused() {
        let err = read_watched_file(Path::new("/dev/zero"), 1024, "test file").unwrap_err();
        assert!(
            matches!(
                err,
                WatchedFileError::NotRegular {
                    kind: "character device",
                    ..
                }
            ),
            "{err:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let err = read_watched_file(dir.path(), 1024, "test file").unwrap_err();
        assert!(
            matches!(
                err,
                WatchedFileError::NotRegular {
                    kind: "directory",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
