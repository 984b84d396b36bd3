//! Key IDs: the libtrust fingerprint distribution 2.x expects and the RFC 7638 JWK thumbprint
//! distribution 3 and zot expect, plus the public JWK members both are built from.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::Profile;

/// How a `kid` is derived from a signing key. Each [`Profile`] uses one; the JWKS publishes
/// every key under each of them, so a token of any profile finds its key by `kid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KidFormat {
    /// The libtrust key ID ([`libtrust_key_id`]): distribution 2.x, Harbor and GitLab.
    Libtrust,
    /// The RFC 7638 JWK thumbprint: distribution 3 and zot.
    Thumbprint,
}

impl KidFormat {
    /// Every format, in the order the JWKS lists a key's entries.
    pub const ALL: [Self; 2] = [Self::Libtrust, Self::Thumbprint];

    /// The format of the header `kid` in tokens minted under `profile`.
    pub const fn of(profile: Profile) -> Self {
        match profile {
            Profile::Distribution2 => Self::Libtrust,
            Profile::Distribution3 | Profile::Zot => Self::Thumbprint,
        }
    }

    /// Position in [`Self::ALL`].
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Libtrust => 0,
            Self::Thumbprint => 1,
        }
    }
}

/// The libtrust key ID of a public key, given as DER `SubjectPublicKeyInfo`.
///
/// SHA-256 of the SPKI, first 30 bytes (240 bits), base32 with the RFC 4648 alphabet (exactly 48
/// characters, so no padding), written as 12 groups of 4 joined by `:`. This is what
/// distribution 2.x (`kid` lookup in `rootcertbundle`), Harbor and GitLab compute.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let hash = digest(&SHA256, spki_der);
    let b32 = base32_nopad(&hash.as_ref()[..30]);
    let mut out = String::with_capacity(48 + 11);
    for (i, group) in b32.as_bytes().chunks(4).enumerate() {
        if i > 0 {
            out.push(':');
        }
        // base32 output is ASCII.
        out.extend(group.iter().map(|&b| char::from(b)));
    }
    out
}

/// RFC 4648 base32, standard alphabet, no padding.
pub(crate) fn base32_nopad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u16::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[usize::from((buffer >> bits) & 0x1f)]));
        }
        // Keep only the bits not yet written so the u16 never overflows.
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            ALPHABET[usize::from((buffer << (5 - bits)) & 0x1f)],
        ));
    }
    out
}

/// The public members of a JWK: exactly the ones RFC 7638 hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicJwk {
    /// An EC key: curve name and fixed-length coordinates.
    Ec {
        crv: &'static str,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    /// An RSA key: modulus and exponent, unsigned big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl PublicJwk {
    /// The RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order with no
    /// whitespace, base64url without padding.
    pub(crate) fn thumbprint(&self) -> String {
        // Written by hand rather than through serde_json: the member order must not depend on
        // whether some other crate turns on serde_json's `preserve_order`. Every value is
        // base64url or a fixed curve name, so nothing needs escaping.
        let canonical = match self {
            Self::Ec { crv, x, y } => format!(
                r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(x),
                URL_SAFE_NO_PAD.encode(y)
            ),
            Self::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(e),
                URL_SAFE_NO_PAD.encode(n)
            ),
        };
        URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes()))
    }

    /// The required members as a JSON object (`kty` plus `crv`/`x`/`y` or `n`/`e`).
    pub(crate) fn members(&self) -> Map<String, Value> {
        let mut m = Map::new();
        match self {
            Self::Ec { crv, x, y } => {
                m.insert("crv".into(), (*crv).into());
                m.insert("kty".into(), "EC".into());
                m.insert("x".into(), URL_SAFE_NO_PAD.encode(x).into());
                m.insert("y".into(), URL_SAFE_NO_PAD.encode(y).into());
            }
            Self::Rsa { n, e } => {
                m.insert("e".into(), URL_SAFE_NO_PAD.encode(e).into());
                m.insert("kty".into(), "RSA".into());
                m.insert("n".into(), URL_SAFE_NO_PAD.encode(n).into());
            }
        }
        m
    }
}

/// Strips the sign-padding zeros DER puts in front of a positive INTEGER.
pub(crate) fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests;
