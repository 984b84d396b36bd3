//! Fakes of registry back ends that cannot run on a development machine, for the broker's
//! tests and `svid-broker demo`. Each fake enforces the vendor's own rules (read from the
//! vendor's published code, named in each rule's docs) so a test against it proves something.
//!
//! - [`gitlab`]: GitLab's REST API v4 for project deploy tokens.
//! - [`harbor`]: Harbor's v2.0 robot and project API and core's token service.
//! - [`nexus`]: Nexus Repository 3's security REST API for local users.

pub mod gitlab;
pub mod harbor;
mod http;
mod jwt;
pub mod nexus;
mod server;
#[cfg(test)]
mod testing;

pub use jwt::SignerError;

use svid_broker_identity::secret::{SecretString, seal_string};
use zeroize::Zeroizing;

/// `prefix` then `len` random characters from `[a-zA-Z0-9]`, sealed; `None` when the random
/// number generator fails. The passwords, access tokens and `jti`s the fakes make.
fn random_alphanumeric(prefix: &str, len: usize) -> Option<SecretString> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    aws_lc_rs::rand::fill(bytes.as_mut_slice()).ok()?;
    let mut text = Zeroizing::new(String::with_capacity(prefix.len() + len));
    text.push_str(prefix);
    text.extend(
        bytes
            .iter()
            .map(|b| char::from(CHARS[usize::from(*b) % CHARS.len()])),
    );
    Some(seal_string(text))
}
