//! `[signing] key` / `mac_key` / `pkcs11_module` / `pin_file` / `pin_env` / `aws_*` and
//! `[federation] keys`: signing keys held by a PKCS#11 token or AWS KMS, checked here before
//! anything starts (the token and the KMS are only reached when the broker starts).

use std::path::{Path, PathBuf};

use svid_broker_keystore::pkcs11::{ObjectType, Pkcs11Uri};

use super::ConfigError;

/// Longest `awskms:` key id, ARN or alias (KMS's own limit on `KeyId`).
pub const MAX_KMS_KEY_ID_LEN: usize = 2048;
/// Longest `pin_env` variable name.
pub const MAX_PIN_ENV_NAME_LEN: usize = 128;

/// A key in a key store, as the config names it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyReference {
    /// `pkcs11:...`: an RFC 7512 URI (never with a PIN); boxed, as a URI is eight fields.
    Pkcs11(Box<Pkcs11Uri>),
    /// `awskms:<key id, key ARN, alias name or alias ARN>`.
    AwsKms {
        /// What follows `awskms:`.
        key_id: String,
    },
}

impl KeyReference {
    /// Parses `text` for `key`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] or [`ConfigError::InvalidPkcs11Uri`].
    pub fn parse(key: &'static str, text: &str) -> Result<Self, ConfigError> {
        if text.starts_with("pkcs11:") {
            return Pkcs11Uri::parse(text)
                .map(|uri| Self::Pkcs11(Box::new(uri)))
                .map_err(|source| ConfigError::InvalidPkcs11Uri { key, source });
        }
        if let Some(key_id) = text.strip_prefix("awskms:") {
            let valid = !key_id.is_empty()
                && key_id.len() <= MAX_KMS_KEY_ID_LEN
                && key_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_/:".contains(&b));
            if !valid {
                return Err(ConfigError::Invalid {
                    key,
                    rule: "an awskms: key is 1..=2048 characters of [A-Za-z0-9_/:-] (a key id, key ARN, alias/name or alias ARN)",
                });
            }
            return Ok(Self::AwsKms {
                key_id: key_id.to_owned(),
            });
        }
        Err(ConfigError::Invalid {
            key,
            rule: "must be a pkcs11: URI (RFC 7512) or awskms:<key id or ARN>",
        })
    }

    fn is_pkcs11(&self) -> bool {
        matches!(self, Self::Pkcs11(_))
    }
}

/// Where the PKCS#11 PIN comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinSource {
    /// `pin_file`: an owner-only file holding the PIN (one trailing newline ignored).
    File(PathBuf),
    /// `pin_env`: an environment variable of the broker's process.
    Env(String),
}

/// How the broker reaches PKCS#11 tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pkcs11Settings {
    /// `signing.pkcs11_module`: the module (shared library) path.
    pub module: PathBuf,
    /// The PIN's source.
    pub pin: PinSource,
}

/// `signing.aws_*`: region and endpoint overrides (credentials come from the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AwsKmsSettings {
    /// `signing.aws_region`: the region of every `awskms:` key that is not an ARN (an ARN
    /// names its own).
    pub region: Option<String>,
    /// `signing.aws_kms_endpoint`: an override of `https://kms.{region}.amazonaws.com`.
    pub kms_endpoint: Option<String>,
    /// `signing.aws_sts_endpoint`: an override of STS, for web identity credentials.
    pub sts_endpoint: Option<String>,
}

impl AwsKmsSettings {
    /// The region `key_id` lives in: its ARN's, else `aws_region` (the configuration makes
    /// sure one of the two exists for every key it names).
    pub fn region_for<'a>(&'a self, key_id: &'a str) -> Option<&'a str> {
        region_of_arn(key_id).or(self.region.as_deref())
    }
}

/// Every key store the configuration uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct KeyStoreConfig {
    /// When any key is a `pkcs11:` URI.
    pub pkcs11: Option<Pkcs11Settings>,
    /// When any key is an `awskms:` key.
    pub aws_kms: Option<AwsKmsSettings>,
}

/// The raw `[signing]` fields this module validates.
pub(super) struct RawKeyStoreFields {
    pub(super) pkcs11_module: Option<PathBuf>,
    pub(super) pin_file: Option<PathBuf>,
    pub(super) pin_env: Option<String>,
    pub(super) aws_region: Option<String>,
    pub(super) aws_kms_endpoint: Option<String>,
    pub(super) aws_sts_endpoint: Option<String>,
}

/// The signing key's HMAC companion: `mac_key`, or for a PKCS#11 key the secret key under the
/// same URI (`svid-broker keystore init` makes both).
pub(super) fn mac_key(
    signing_key: &KeyReference,
    raw: Option<&str>,
) -> Result<KeyReference, ConfigError> {
    let invalid = |rule| {
        Err(ConfigError::Invalid {
            key: "signing.mac_key",
            rule,
        })
    };
    let mac = match (raw, signing_key) {
        (Some(text), _) => KeyReference::parse("signing.mac_key", text)?,
        (None, KeyReference::Pkcs11(uri)) => {
            KeyReference::Pkcs11(Box::new(uri.with_type(ObjectType::SecretKey)))
        }
        (None, KeyReference::AwsKms { .. }) => {
            return invalid(
                "required with an awskms: signing key: an HMAC_256 KMS key (every replica derives its credential MAC keys through it)",
            );
        }
    };
    if mac.is_pkcs11() != signing_key.is_pkcs11() {
        return invalid("must be in the same kind of key store as signing.key");
    }
    Ok(mac)
}

/// The key store settings for every key the configuration names (`keys`), refusing settings
/// no key needs.
pub(super) fn key_store_config(
    keys: &[&KeyReference],
    raw: RawKeyStoreFields,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<KeyStoreConfig, ConfigError> {
    let invalid = |key, rule| Err(ConfigError::Invalid { key, rule });
    let uses_pkcs11 = keys.iter().any(|k| k.is_pkcs11());
    let kms_keys: Vec<&str> = keys
        .iter()
        .filter_map(|k| match k {
            KeyReference::AwsKms { key_id } => Some(key_id.as_str()),
            KeyReference::Pkcs11(_) => None,
        })
        .collect();

    let pkcs11 = match (uses_pkcs11, raw.pkcs11_module, raw.pin_file, raw.pin_env) {
        (false, None, None, None) => None,
        (false, ..) => {
            return invalid(
                "signing.pkcs11_module",
                "pkcs11_module, pin_file and pin_env apply only to pkcs11: keys",
            );
        }
        (true, None, ..) => {
            return invalid(
                "signing.pkcs11_module",
                "required with a pkcs11: key: the PKCS#11 module's path",
            );
        }
        (true, Some(module), pin_file, pin_env) => {
            let pin = match (pin_file, pin_env) {
                (Some(file), None) => PinSource::File(resolve(&file)),
                (None, Some(name)) => {
                    let valid = !name.is_empty()
                        && name.len() <= MAX_PIN_ENV_NAME_LEN
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if !valid {
                        return invalid(
                            "signing.pin_env",
                            "must be an environment variable name: 1..=128 of [A-Za-z0-9_]",
                        );
                    }
                    PinSource::Env(name)
                }
                _ => {
                    return invalid(
                        "signing.pin_file",
                        "set exactly one of pin_file and pin_env with a pkcs11: key",
                    );
                }
            };
            let module = resolve(&module);
            Some(Pkcs11Settings { module, pin })
        }
    };

    let aws_kms = if kms_keys.is_empty() {
        if raw.aws_region.is_some()
            || raw.aws_kms_endpoint.is_some()
            || raw.aws_sts_endpoint.is_some()
        {
            return invalid(
                "signing.aws_region",
                "aws_region, aws_kms_endpoint and aws_sts_endpoint apply only to awskms: keys",
            );
        }
        None
    } else {
        if let Some(region) = &raw.aws_region {
            let valid_region = !region.is_empty()
                && region.len() <= 32
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid_region {
                return invalid(
                    "signing.aws_region",
                    "must be an AWS region name like us-east-1",
                );
            }
        }
        if raw.aws_region.is_none() && kms_keys.iter().any(|k| region_of_arn(k).is_none()) {
            return invalid(
                "signing.aws_region",
                "required unless every awskms: key is an ARN (which names its region)",
            );
        }
        for (key, endpoint) in [
            ("signing.aws_kms_endpoint", &raw.aws_kms_endpoint),
            ("signing.aws_sts_endpoint", &raw.aws_sts_endpoint),
        ] {
            if let Some(endpoint) = endpoint
                && !endpoint_allowed(endpoint)
            {
                return invalid(
                    key,
                    "must be an https:// URL, or http:// on a loopback IP address (tests), without path, query or credentials",
                );
            }
        }
        if !cfg!(feature = "kms") {
            return invalid(
                "signing.key",
                "awskms: keys need the broker built with the `kms` cargo feature",
            );
        }
        Some(AwsKmsSettings {
            region: raw.aws_region,
            kms_endpoint: raw.aws_kms_endpoint,
            sts_endpoint: raw.aws_sts_endpoint,
        })
    };
    Ok(KeyStoreConfig { pkcs11, aws_kms })
}

/// `arn:<partition>:kms:<region>:<account>:key/...` or `...:alias/...`.
pub(crate) fn region_of_arn(key_id: &str) -> Option<&str> {
    let mut parts = key_id.splitn(6, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("kms"), Some(region)) if !region.is_empty() => Some(region),
        _ => None,
    }
}

fn endpoint_allowed(endpoint: &str) -> bool {
    let (scheme_ok_anywhere, rest) = if let Some(rest) = endpoint.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        (false, rest)
    } else {
        return false;
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty()
        || endpoint.len() > 2048
        || authority.contains(['/', '?', '#', '@'])
        || authority
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return false;
    }
    if scheme_ok_anywhere {
        return true;
    }
    // A plain-HTTP endpoint only on a loopback address literal: a name could resolve anywhere.
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(host, _)| host),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_arns() {
        assert!(endpoint_allowed("https://kms.eu-west-1.amazonaws.com"));
        assert!(endpoint_allowed("http://127.0.0.1:4566"));
        assert!(endpoint_allowed("http://[::1]:4566/"));
        assert!(!endpoint_allowed("http://kms.local:4566"));
        assert!(!endpoint_allowed("http://10.0.0.1"));
        assert!(!endpoint_allowed("https://user@kms.example"));
        assert!(!endpoint_allowed("https://kms.example/path"));
        assert!(!endpoint_allowed("ftp://kms.example"));
        assert_eq!(
            region_of_arn("arn:aws:kms:eu-west-1:111122223333:key/abc"),
            Some("eu-west-1")
        );
        assert_eq!(region_of_arn("alias/broker"), None);
    }
}
