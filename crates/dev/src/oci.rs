//! A one-layer OCI image layout written to disk, so the demo and the tests push a real image
//! (`skopeo copy oci:DIR:TAG docker://...`) without any network.
//!
//! The layer is an uncompressed POSIX ustar archive holding one regular file; the config,
//! manifest and index are the OCI image-spec v1 media types every registry accepts.
//!
//! ```no_run
//! # fn demo() -> std::io::Result<()> {
//! let image = svid_broker_dev::oci::write_image(
//!     std::path::Path::new("/tmp/image"),
//!     "v1",
//!     "hello.txt",
//!     b"hello\n",
//! )?;
//! println!("skopeo copy {} docker://127.0.0.1:5000/team/app:v1", image.reference());
//! # Ok(())
//! # }
//! ```

use std::io::{Error, ErrorKind};
use std::path::{Path, PathBuf};

use serde_json::json;

/// Size of a ustar header and of its data blocks.
const TAR_BLOCK: usize = 512;
/// The ustar header's name field: longer file names need extensions this writer does not emit.
pub const MAX_FILE_NAME_LEN: usize = 100;

/// An OCI image layout [`write_image`] wrote: one manifest with one layer, tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciImage {
    dir: PathBuf,
    tag: String,
    manifest_digest: String,
}

impl OciImage {
    /// The layout directory, as given to [`write_image`] (`index.json`, `oci-layout`, `blobs/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `oci:DIR:TAG`, the transport reference skopeo and containers-image tools take.
    pub fn reference(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.tag)
    }

    /// `sha256:HEX` of the manifest: what a registry reports as the pushed image's digest.
    pub fn manifest_digest(&self) -> &str {
        &self.manifest_digest
    }
}

/// Writes an image layout into `dir` (created if missing) tagged `tag`, whose single layer holds
/// `file_name` with `contents` (mode 0644).
///
/// # Errors
/// [`ErrorKind::InvalidInput`] when `file_name` is empty, longer than [`MAX_FILE_NAME_LEN`]
/// bytes or holds a NUL; otherwise the file system's error.
pub fn write_image(
    dir: &Path,
    tag: &str,
    file_name: &str,
    contents: &[u8],
) -> std::io::Result<OciImage> {
    let layer = tar_one_file(file_name, contents)?;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |bytes: &[u8]| -> std::io::Result<(String, usize)> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(blobs.join(&hex), bytes)?;
        Ok((format!("sha256:{hex}"), bytes.len()))
    };
    let (layer_digest, layer_size) = put(&layer)?;
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        // Uncompressed, so the diff ID is the layer's own digest.
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "config": {},
    });
    let (config_digest, config_size) = put(config.to_string().as_bytes())?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer_size,
        }],
    });
    let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes())?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string())?;
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(OciImage {
        dir: dir.to_path_buf(),
        tag: tag.to_owned(),
        manifest_digest,
    })
}

/// A POSIX ustar archive with one regular file: a header block, the data padded to a whole
/// block, and the two zero blocks that end an archive.
fn tar_one_file(name: &str, data: &[u8]) -> std::io::Result<Vec<u8>> {
    if name.is_empty() || name.len() > MAX_FILE_NAME_LEN || name.contains('\0') {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("tar member name must be 1 to {MAX_FILE_NAME_LEN} bytes without NUL"),
        ));
    }
    let mut header = [0u8; TAR_BLOCK];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], value: u64| {
        let text = format!("{value:0width$o}\0", width = field.len() - 1);
        field.copy_from_slice(text.as_bytes());
    };
    octal(&mut header[100..108], 0o644); // mode
    octal(&mut header[108..116], 0); // uid
    octal(&mut header[116..124], 0); // gid
    octal(&mut header[124..136], data.len() as u64); // size
    octal(&mut header[136..148], 0); // mtime: fixed, so the digest depends on the content only
    header[156] = b'0'; // regular file
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    header[148..156].copy_from_slice(b"        ");
    let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(TAR_BLOCK) * TAR_BLOCK, 0);
    out.extend_from_slice(&[0u8; 2 * TAR_BLOCK]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn tar_headers_are_well_formed() {
        let tar = tar_one_file("hello.txt", b"hi\n").unwrap();
        assert_eq!(tar.len(), 4 * TAR_BLOCK);
        assert_eq!(&tar[..9], b"hello.txt");
        assert_eq!(&tar[257..262], b"ustar");
        assert_eq!(&tar[TAR_BLOCK..TAR_BLOCK + 3], b"hi\n");
        let stored = std::str::from_utf8(&tar[148..154])
            .ok()
            .and_then(|s| u32::from_str_radix(s, 8).ok())
            .unwrap();
        let mut header = tar[..TAR_BLOCK].to_vec();
        header[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, header.iter().map(|&b| u32::from(b)).sum::<u32>());
    }

    #[test]
    fn names_a_ustar_header_cannot_hold_are_refused() {
        for name in ["", "a\0b", &"x".repeat(MAX_FILE_NAME_LEN + 1)] {
            let err = tar_one_file(name, b"").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{name:?}");
        }
        assert!(tar_one_file(&"x".repeat(MAX_FILE_NAME_LEN), b"").is_ok());
    }

    #[test]
    fn the_layout_indexes_the_tag_and_every_blob_matches_its_digest() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("image");
        let image = write_image(&dir, "v1", "hello.txt", b"hello\n").unwrap();
        assert_eq!(image.reference(), format!("oci:{}:v1", dir.display()));
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap())
                .unwrap();
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "v1"
        );
        assert_eq!(index["manifests"][0]["digest"], image.manifest_digest());
        for entry in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
            let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(path.file_name().unwrap().to_string_lossy(), hex);
        }
    }
}
