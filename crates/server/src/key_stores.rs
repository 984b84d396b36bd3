//! Opens the keys `[signing] key` / `mac_key` and `[federation] keys` name, in the key stores
//! `[signing]` configures: one logged-in session per PKCS#11 token however many keys it
//! holds, the PIN read once per token and kept only as a `SecretString`.
//!
//! Blocking (a token or KMS round trip per key): called before the runtime serves anything,
//! and by `svid-broker keystore init`.

use std::collections::HashMap;
use std::sync::Arc;

use svid_broker_identity::secret::{SecretString, seal_string};
use svid_broker_keystore::pkcs11::{Pkcs11Error, Pkcs11Module, Pkcs11Token, Pkcs11Uri};
use svid_broker_sources::file::watched::{WatchedFileError, read_owner_only_file};
use svid_broker_token::external::{ExternalKey, ExternalMac};
use zeroize::Zeroizing;

use crate::config::{KeyReference, KeyStoreConfig, PinSource};

/// Longest PIN taken (PKCS#11 tokens cap theirs far lower).
pub const MAX_PIN_LEN: usize = 256;

/// Why a configured key could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// The PIN file could not be read, or others may read it.
    #[error("reading the pkcs11 pin file")]
    PinFile {
        /// Why.
        #[source]
        source: WatchedFileError,
    },
    /// The PIN environment variable is unset or not UTF-8.
    #[error("the pkcs11 pin environment variable {name} is not set (or not utf-8)")]
    PinEnv {
        /// The variable's name.
        name: String,
    },
    /// The PIN is empty or longer than [`MAX_PIN_LEN`].
    #[error("the pkcs11 pin is empty or longer than {MAX_PIN_LEN} bytes")]
    PinLength,
    /// A PKCS#11 key references a token while the configuration has no `[signing]` PKCS#11
    /// settings (the configuration's own checks make this unreachable from a file).
    #[error("a pkcs11: key needs signing.pkcs11_module and a pin source")]
    Pkcs11NotConfigured,
    /// The PKCS#11 module, token or key refused.
    #[error("{role} {uri}")]
    Pkcs11 {
        /// What the key is for (`signing key`, `federation key`, `credential mac key`).
        role: &'static str,
        /// The key's URI (never holds a PIN).
        uri: String,
        /// Why.
        #[source]
        source: Pkcs11Error,
    },
    /// An `awskms:` key while the configuration has no AWS settings (the configuration's own
    /// checks make this unreachable from a file).
    #[error("an awskms: key needs the configuration's aws settings")]
    KmsNotConfigured,
    /// An `awskms:` key in a broker built without the `kms` feature.
    #[error("awskms: keys need the broker built with the `kms` cargo feature")]
    KmsNotInBuild,
    /// AWS KMS refused or could not be reached.
    #[cfg(feature = "kms")]
    #[error("{role} awskms:{key_id}")]
    Kms {
        /// What the key is for.
        role: &'static str,
        /// What followed `awskms:` (key id, key ARN, alias or alias ARN); a name, not key material.
        key_id: String,
        /// Why.
        #[source]
        source: svid_broker_keystore::kms::KmsError,
    },
}

/// The key stores of one configuration, opened on demand.
#[derive(Debug)]
pub struct KeyStores<'a> {
    config: &'a KeyStoreConfig,
    tokens: HashMap<String, Arc<Pkcs11Token>>,
}

impl<'a> KeyStores<'a> {
    /// Nothing is opened until a key is asked for.
    pub fn new(config: &'a KeyStoreConfig) -> Self {
        Self {
            config,
            tokens: HashMap::new(),
        }
    }

    /// The token `uri` names, logged in (once per token).
    ///
    /// # Errors
    /// [`KeyStoreError`] naming the PIN source, module or token.
    pub fn pkcs11_token(
        &mut self,
        role: &'static str,
        uri: &Pkcs11Uri,
    ) -> Result<Arc<Pkcs11Token>, KeyStoreError> {
        let token_part = uri.token_part();
        if let Some(token) = self.tokens.get(&token_part) {
            return Ok(token.clone());
        }
        let settings = self
            .config
            .pkcs11
            .as_ref()
            .ok_or(KeyStoreError::Pkcs11NotConfigured)?;
        let pkcs11_error = |source| KeyStoreError::Pkcs11 {
            role,
            uri: uri.to_string(),
            source,
        };
        let pin = read_pin(&settings.pin)?;
        let module = Pkcs11Module::load(&settings.module).map_err(pkcs11_error)?;
        let token = Pkcs11Token::open(module, uri, pin).map_err(pkcs11_error)?;
        self.tokens.insert(token_part, token.clone());
        Ok(token)
    }

    /// The signing key `reference` names, for `role`.
    ///
    /// # Errors
    /// [`KeyStoreError`] naming the key and why.
    pub fn signing_key(
        &mut self,
        role: &'static str,
        reference: &KeyReference,
    ) -> Result<Arc<dyn ExternalKey>, KeyStoreError> {
        match reference {
            KeyReference::Pkcs11(uri) => {
                let token = self.pkcs11_token(role, uri)?;
                let key = token
                    .signing_key(uri)
                    .map_err(|source| KeyStoreError::Pkcs11 {
                        role,
                        uri: uri.to_string(),
                        source,
                    })?;
                Ok(Arc::new(key))
            }
            KeyReference::AwsKms { key_id } => self.kms_signing_key(role, key_id),
        }
    }

    /// Opens the HMAC key `reference` names; MACs are computed in the store, the key never read.
    ///
    /// # Errors
    /// [`KeyStoreError`] naming the key and why.
    pub fn mac_key(
        &mut self,
        reference: &KeyReference,
    ) -> Result<Arc<dyn ExternalMac>, KeyStoreError> {
        const ROLE: &str = "credential mac key";
        match reference {
            KeyReference::Pkcs11(uri) => {
                let token = self.pkcs11_token(ROLE, uri)?;
                let key = token.mac_key(uri).map_err(|source| KeyStoreError::Pkcs11 {
                    role: ROLE,
                    uri: uri.to_string(),
                    source,
                })?;
                Ok(Arc::new(key))
            }
            KeyReference::AwsKms { key_id } => self.kms_mac_key(ROLE, key_id),
        }
    }

    #[cfg(feature = "kms")]
    fn kms_config(
        &self,
        role: &'static str,
        key_id: &str,
    ) -> Result<svid_broker_keystore::kms::KmsConfig, KeyStoreError> {
        use svid_broker_keystore::kms::{KmsConfig, KmsCredentialSource};
        let kms_error = |source| KeyStoreError::Kms {
            role,
            key_id: key_id.to_owned(),
            source,
        };
        let settings = self
            .config
            .aws_kms
            .as_ref()
            .ok_or(KeyStoreError::KmsNotConfigured)?;
        // The SDKs' environment chain: static keys when `AWS_ACCESS_KEY_ID` is set, else web
        // identity (IRSA: a projected token the kubelet rotates, so nothing long-lived).
        let credentials = KmsCredentialSource::from_env().map_err(kms_error)?;
        // The configuration made sure every key has a region: its ARN's or `aws_region`.
        let region = settings
            .region_for(key_id)
            .ok_or(KeyStoreError::KmsNotConfigured)?;
        let mut config = KmsConfig::new(key_id, region, credentials).map_err(kms_error)?;
        if let Some(endpoint) = &settings.kms_endpoint {
            config = config.with_endpoint(endpoint).map_err(kms_error)?;
        }
        if let Some(endpoint) = &settings.sts_endpoint {
            config = config.with_sts_endpoint(endpoint).map_err(kms_error)?;
        }
        Ok(config)
    }

    #[cfg(feature = "kms")]
    fn kms_signing_key(
        &mut self,
        role: &'static str,
        key_id: &str,
    ) -> Result<Arc<dyn ExternalKey>, KeyStoreError> {
        let key = self.open_kms(role, key_id, svid_broker_keystore::kms::KmsKey::open)?;
        Ok(Arc::new(key))
    }

    #[cfg(feature = "kms")]
    fn kms_mac_key(
        &mut self,
        role: &'static str,
        key_id: &str,
    ) -> Result<Arc<dyn ExternalMac>, KeyStoreError> {
        let key = self.open_kms(role, key_id, svid_broker_keystore::kms::KmsMac::open)?;
        Ok(Arc::new(key))
    }

    /// `open` on `key_id`'s configuration, its error named by `role` and the key.
    #[cfg(feature = "kms")]
    fn open_kms<K>(
        &self,
        role: &'static str,
        key_id: &str,
        open: impl FnOnce(
            &svid_broker_keystore::kms::KmsConfig,
        ) -> Result<K, svid_broker_keystore::kms::KmsError>,
    ) -> Result<K, KeyStoreError> {
        let config = self.kms_config(role, key_id)?;
        open(&config).map_err(|source| KeyStoreError::Kms {
            role,
            key_id: key_id.to_owned(),
            source,
        })
    }

    #[cfg(not(feature = "kms"))]
    fn kms_signing_key(
        &mut self,
        _role: &'static str,
        _key_id: &str,
    ) -> Result<Arc<dyn ExternalKey>, KeyStoreError> {
        Err(KeyStoreError::KmsNotInBuild)
    }

    #[cfg(not(feature = "kms"))]
    fn kms_mac_key(
        &mut self,
        _role: &'static str,
        _key_id: &str,
    ) -> Result<Arc<dyn ExternalMac>, KeyStoreError> {
        Err(KeyStoreError::KmsNotInBuild)
    }
}

/// The PIN, from its file (owner-only, one trailing newline dropped) or its variable.
fn read_pin(source: &PinSource) -> Result<SecretString, KeyStoreError> {
    let mut pin = match source {
        PinSource::File(path) => {
            let bytes = Zeroizing::new(
                read_owner_only_file(path, MAX_PIN_LEN + 2, "pkcs11 pin file")
                    .map_err(|source| KeyStoreError::PinFile { source })?,
            );
            let text = std::str::from_utf8(&bytes).map_err(|_| KeyStoreError::PinLength)?;
            Zeroizing::new(text.to_owned())
        }
        PinSource::Env(name) => Zeroizing::new(
            std::env::var(name).map_err(|_| KeyStoreError::PinEnv { name: name.clone() })?,
        ),
    };
    if pin.ends_with('\n') {
        pin.pop();
        if pin.ends_with('\r') {
            pin.pop();
        }
    }
    if pin.is_empty() || pin.len() > MAX_PIN_LEN {
        return Err(KeyStoreError::PinLength);
    }
    Ok(seal_string(pin))
}
