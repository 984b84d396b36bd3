//! The broker as an OIDC issuer (`[federation]`): its RSA keys read from owner-only files (or
//! generated for a single development replica) into one [`FederationIssuer`], shared by the
//! realm
//! (which publishes its discovery document and JWKS) and the Quay and Artifactory backends
//! (which sign with it).
//!
//! Rotation with overlap, across replicas that share the files: publish the new key second
//! (`key_files = [old, new]`), roll out, move it first (`[new, old]`: it signs, the old one is
//! still published for JWTs already out), roll out, then drop the old one once every JWT it
//! signed has expired (`token_ttl_seconds`, plus the registries' JWKS caches).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use svid_broker_sources::file::watched::{WatchedFileError, read_owner_only_file};
use svid_broker_token::federation::{FederationError, FederationIssuer, FederationKey};
use zeroize::Zeroizing;

use crate::config::{BrokerConfig, FederationKeySource};

/// Largest key file read, in bytes (an RSA-4096 PKCS#8 PEM is about 3.3 KiB).
pub const MAX_FEDERATION_KEY_FILE_BYTES: usize = 64 * 1024;

/// Why the federation issuer could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationSetupError {
    /// A key in a key store (`federation.keys`) could not be opened.
    #[error("a federation key in a key store is unusable")]
    KeyStore {
        /// Why.
        #[source]
        source: crate::key_stores::KeyStoreError,
    },
    /// A key file may be read by others than its owner: the key has leaked already.
    #[error(
        "federation key file {path} has mode {mode:o}; it must be readable by its owner only (chmod 600)"
    )]
    KeyFileMode {
        /// The key file as listed in `federation.key_files`, resolved against the config directory.
        path: PathBuf,
        /// Its permission bits (`mode & 0o777`), with some group or other bit set.
        mode: u32,
    },
    /// A key file is unreadable, not a regular file, or over [`MAX_FEDERATION_KEY_FILE_BYTES`].
    #[error("cannot read federation key file {path}")]
    KeyFile {
        /// The key file as listed in `federation.key_files`, resolved against the config directory.
        path: PathBuf,
        /// Why (printed by the error chain).
        #[source]
        source: WatchedFileError,
    },
    /// A key file does not hold a usable RSA key.
    #[error("federation key file {path}")]
    Key {
        /// The key file whose contents were refused (no key bytes are kept in the error).
        path: PathBuf,
        /// Why (printed by the error chain).
        #[source]
        source: FederationError,
    },
    /// The issuer refused its URL, key set or lifetime.
    #[error("federation issuer {issuer}")]
    Issuer {
        /// `public_url` + `/federation`: the `iss` the issuer would sign with.
        issuer: String,
        /// Why (printed by the error chain).
        #[source]
        source: FederationError,
    },
}

/// The issuer `config` asks for, or `None` without `[federation]`. Reads the key files
/// (blocking, capped, owner-only).
///
/// # Errors
/// [`FederationSetupError`] naming the file or the rule.
pub fn load_federation(
    config: &BrokerConfig,
) -> Result<Option<Arc<FederationIssuer>>, FederationSetupError> {
    let Some(federation) = &config.federation else {
        return Ok(None);
    };
    let issuer = config.federation_issuer_url();
    let keys = match &federation.keys {
        FederationKeySource::Generate => {
            vec![
                FederationKey::generate().map_err(|source| FederationSetupError::Issuer {
                    issuer: issuer.clone(),
                    source,
                })?,
            ]
        }
        FederationKeySource::Files(paths) => read_keys(paths)?,
        FederationKeySource::KeyStore(references) => {
            let mut stores = crate::key_stores::KeyStores::new(&config.key_store);
            references
                .iter()
                .map(|reference| {
                    let key = stores
                        .signing_key("federation key", reference)
                        .map_err(|source| FederationSetupError::KeyStore { source })?;
                    FederationKey::external(key).map_err(|source| FederationSetupError::Issuer {
                        issuer: issuer.clone(),
                        source,
                    })
                })
                .collect::<Result<_, _>>()?
        }
    };
    FederationIssuer::new(issuer.clone(), keys, federation.token_ttl)
        .map(|issuer| Some(Arc::new(issuer)))
        .map_err(|source| FederationSetupError::Issuer { issuer, source })
}

/// Every key file, in order.
///
/// # Errors
/// As [`load_federation`].
pub fn read_keys(paths: &[PathBuf]) -> Result<Vec<FederationKey>, FederationSetupError> {
    paths.iter().map(|path| read_key(path)).collect()
}

fn read_key(path: &Path) -> Result<FederationKey, FederationSetupError> {
    // As for registry credential files: a key others may read has leaked, and starting with
    // it would hide that (checked on the opened file).
    let bytes = Zeroizing::new(
        read_owner_only_file(path, MAX_FEDERATION_KEY_FILE_BYTES, "federation key file").map_err(
            |source| match source {
                WatchedFileError::NotOwnerOnly { mode, .. } => FederationSetupError::KeyFileMode {
                    path: path.to_owned(),
                    mode,
                },
                source => FederationSetupError::KeyFile {
                    path: path.to_owned(),
                    source,
                },
            },
        )?,
    );
    FederationKey::from_pem(&bytes).map_err(|source| FederationSetupError::Key {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;
