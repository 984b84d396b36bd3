//! SPIFFE bundle documents (JWK Sets) and bundle maps, read and written.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rustls_pki_types::CertificateDer;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value, json};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer as _;

use super::key::KeyParams;
use super::{
    BundleError, BundleSet, EcCurve, EntryError, JwtAuthority, JwtBundle, JwtPublicKey, KeyError,
    MAX_BUNDLE_DOCUMENT_BYTES, MAX_BUNDLE_KEYS, MAX_BUNDLE_MAP_BYTES, MAX_BUNDLE_MAP_TRUST_DOMAINS,
    SpiffeBundle, X509Bundle,
};
use crate::id::TrustDomain;
use crate::jwt::JwsAlgorithm;

/// A document entry that was skipped, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IgnoredEntry {
    /// Position in the document's `keys` array.
    pub index: usize,
    /// Why it was skipped.
    pub reason: IgnoreReason,
}

/// Why a bundle document entry was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IgnoreReason {
    /// No `kty` member.
    MissingKty,
    /// A `kty` this use does not support (for example `OKP` for `jwt-svid`, or `oct`).
    UnsupportedKty,
    /// No `use` member.
    MissingUse,
    /// A `use` other than `x509-svid` or `jwt-svid` (for example `wit-svid`).
    UnknownUse,
    /// An `x509-svid` entry with a missing or empty `x5c`.
    MissingX5c,
    /// A `jwt-svid` entry without `kid`, or with an empty one.
    MissingKid,
    /// An EC `crv` other than P-256, P-384 or P-521.
    UnsupportedCurve,
    /// A JWK `alg` that is not one of the nine JWT-SVID algorithms.
    UnsupportedAlg,
    /// A JWK `alg` that the key cannot be used with (for example ES384 on a P-256 key).
    AlgKeyMismatch,
    /// An RSA key with a modulus below [`MIN_RSA_BITS`](super::MIN_RSA_BITS).
    WeakRsaKey,
    /// An RSA key with a modulus above [`MAX_RSA_BITS`](super::MAX_RSA_BITS).
    RsaKeyTooLarge,
    /// An `x509-svid` CA certificate whose public key cannot be expressed as a JWK (a compressed
    /// EC point, a curve other than P-256/P-384/P-521, RSASSA-PSS or another key type).
    UnsupportedCertificateKey,
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingKty => "missing kty",
            Self::UnsupportedKty => "unsupported kty",
            Self::MissingUse => "missing use",
            Self::UnknownUse => "unknown use",
            Self::MissingX5c => "missing or empty x5c",
            Self::MissingKid => "jwt-svid key without kid",
            Self::UnsupportedCurve => "unsupported curve",
            Self::UnsupportedAlg => "unsupported alg",
            Self::AlgKeyMismatch => "alg does not fit the key",
            Self::WeakRsaKey => "rsa key too small",
            Self::RsaKeyTooLarge => "rsa key too large",
            Self::UnsupportedCertificateKey => "ca certificate key not expressible as a jwk",
        })
    }
}

// Base64url for JWK members: RFC 7518 says unpadded, but padded input is harmless and some
// publishers emit it.
const JWK_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

// === raw serde shapes ===

#[derive(Deserialize)]
struct RawDocument<'a> {
    #[serde(borrow)]
    keys: CappedKeys<'a>,
    #[serde(default)]
    spiffe_sequence: Option<u64>,
    #[serde(default)]
    spiffe_refresh_hint: Option<u64>,
}

#[derive(Deserialize)]
struct RawJwk<'a> {
    #[serde(default, borrow)]
    kty: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "use")]
    use_: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    alg: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    crv: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    x: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    y: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    n: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    e: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    x5c: FirstX5c<'a>,
}

/// The `keys` array, collected up to the cap; the rest is skipped without allocating.
struct CappedKeys<'a> {
    keys: Vec<RawJwk<'a>>,
    overflow: bool,
}

impl<'de: 'a, 'a> Deserialize<'de> for CappedKeys<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CappedKeys<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of JWKs")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut keys = Vec::new();
                let mut overflow = false;
                while keys.len() < MAX_BUNDLE_KEYS {
                    match seq.next_element::<RawJwk<'a>>()? {
                        Some(key) => keys.push(key),
                        None => return Ok(CappedKeys { keys, overflow }),
                    }
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    overflow = true;
                }
                Ok(CappedKeys { keys, overflow })
            }
        }
        deserializer.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// The first `x5c` value; the rest are skipped (X509-SVID §6: use the first).
#[derive(Default)]
struct FirstX5c<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstX5c<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = FirstX5c<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of base64 certificates")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(FirstX5c(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<Cow<'a, str>>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstX5c(first))
            }
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct RawMap<'a> {
    #[serde(borrow)]
    trust_domains: MapEntries<'a>,
}

/// Every `trust_domains` entry in document order, duplicates included: serde_json's own map
/// handling keeps only the last of a duplicated key, and the spec wants duplicates rejected.
struct MapEntries<'a> {
    entries: Vec<(Cow<'a, str>, RawDocument<'a>)>,
    overflow: bool,
}

impl<'de: 'a, 'a> Deserialize<'de> for MapEntries<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = MapEntries<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of trust domain to bundle document")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                let mut overflow = false;
                while let Some(key) = map.next_key::<Cow<'a, str>>()? {
                    if entries.len() < MAX_BUNDLE_MAP_TRUST_DOMAINS {
                        let doc = map.next_value::<RawDocument<'a>>()?;
                        entries.push((key, doc));
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        overflow = true;
                    }
                }
                Ok(MapEntries { entries, overflow })
            }
        }
        deserializer.deserialize_map(V(std::marker::PhantomData))
    }
}

// === parsing ===

pub(super) fn parse_document(
    trust_domain: TrustDomain,
    bytes: &[u8],
) -> Result<SpiffeBundle, BundleError> {
    if bytes.len() > MAX_BUNDLE_DOCUMENT_BYTES {
        return Err(BundleError::TooLarge {
            what: "bundle document",
            len: bytes.len(),
            max: MAX_BUNDLE_DOCUMENT_BYTES,
        });
    }
    let raw: RawDocument<'_> =
        serde_json::from_slice(bytes).map_err(|source| BundleError::Json { source })?;
    from_raw(trust_domain, raw)
}

/// A plain JWK Set (RFC 7517 §5, the shape an OIDC `jwks_uri` serves) read as JWT signing keys:
/// entries whose `use` is absent or `sig` are keys, other uses are skipped, and so is what
/// a `jwt-svid` entry would skip (no `kid`, unsupported `kty`, curve or `alg`, RSA size).
pub(super) fn parse_jwks(
    trust_domain: TrustDomain,
    bytes: &[u8],
) -> Result<(JwtBundle, Vec<IgnoredEntry>), BundleError> {
    if bytes.len() > MAX_BUNDLE_DOCUMENT_BYTES {
        return Err(BundleError::TooLarge {
            what: "jwk set",
            len: bytes.len(),
            max: MAX_BUNDLE_DOCUMENT_BYTES,
        });
    }
    let raw: RawDocument<'_> =
        serde_json::from_slice(bytes).map_err(|source| BundleError::Json { source })?;
    if raw.keys.overflow {
        return Err(BundleError::TooManyKeys {
            max: MAX_BUNDLE_KEYS,
        });
    }
    let mut authorities = Vec::new();
    let mut ignored = Vec::new();
    for (index, jwk) in raw.keys.keys.into_iter().enumerate() {
        let skip = match (jwk.kty.as_deref(), jwk.use_.as_deref(), jwk.kid.as_deref()) {
            (None, _, _) => Some(IgnoreReason::MissingKty),
            (_, Some(use_), _) if use_ != "sig" => Some(IgnoreReason::UnknownUse),
            (Some(kty), _, _) if !matches!(kty, "EC" | "RSA") => Some(IgnoreReason::UnsupportedKty),
            (_, _, None | Some("")) => Some(IgnoreReason::MissingKid),
            _ => None,
        };
        if let Some(reason) = skip {
            ignored.push(IgnoredEntry { index, reason });
            continue;
        }
        let kid = jwk.kid.as_deref().unwrap_or_default().to_owned();
        match jwt_key(&jwk).map_err(|reason| BundleError::InvalidEntry { index, reason })? {
            JwtKey::Use(key, alg) => authorities.push(JwtAuthority { kid, key, alg }),
            JwtKey::Ignore(reason) => ignored.push(IgnoredEntry { index, reason }),
        }
    }
    Ok((JwtBundle::new(trust_domain, authorities)?, ignored))
}

pub(super) fn parse_bundle_map(bytes: &[u8]) -> Result<BundleSet, BundleError> {
    if bytes.len() > MAX_BUNDLE_MAP_BYTES {
        return Err(BundleError::TooLarge {
            what: "bundle map",
            len: bytes.len(),
            max: MAX_BUNDLE_MAP_BYTES,
        });
    }
    let raw: RawMap<'_> =
        serde_json::from_slice(bytes).map_err(|source| BundleError::Json { source })?;
    if raw.trust_domains.overflow {
        return Err(BundleError::TooManyTrustDomains {
            max: MAX_BUNDLE_MAP_TRUST_DOMAINS,
        });
    }
    let mut set = BundleSet::new();
    for (index, (key, doc)) in raw.trust_domains.entries.into_iter().enumerate() {
        let trust_domain = TrustDomain::parse_id_or_name(&key)
            .map_err(|source| BundleError::InvalidTrustDomain { index, source })?;
        // Check before parsing the bundle so a duplicate is reported as such.
        if set.get(&trust_domain).is_some() {
            return Err(BundleError::DuplicateTrustDomain { trust_domain });
        }
        let bundle = from_raw(trust_domain.clone(), doc).map_err(|source| BundleError::InMap {
            trust_domain,
            source: Box::new(source),
        })?;
        set.insert(bundle)?;
    }
    Ok(set)
}

fn from_raw(trust_domain: TrustDomain, raw: RawDocument<'_>) -> Result<SpiffeBundle, BundleError> {
    if raw.keys.overflow {
        return Err(BundleError::TooManyKeys {
            max: MAX_BUNDLE_KEYS,
        });
    }
    let mut certs = Vec::new();
    let mut authorities = Vec::new();
    let mut ignored = Vec::new();
    for (index, jwk) in raw.keys.keys.into_iter().enumerate() {
        let invalid = |reason: EntryError| BundleError::InvalidEntry { index, reason };
        match classify(&jwk) {
            Entry::Ignore(reason) => ignored.push(IgnoredEntry { index, reason }),
            Entry::X509(x5c) => {
                let der = STANDARD
                    .decode(x5c.as_bytes())
                    .map_err(|_| invalid(EntryError::Base64 { member: "x5c" }))?;
                let cert = CertificateDer::from(der);
                // A certificate that does not parse stays fatal (X509Bundle::new reports it); one
                // that parses but whose key has no JWK form is skipped like any other key we do
                // not support, rather than failing the whole document.
                if webpki::anchor_from_trusted_cert(&cert).is_ok()
                    && OwnedKeyParams::from_certificate(&cert).is_none()
                {
                    ignored.push(IgnoredEntry {
                        index,
                        reason: IgnoreReason::UnsupportedCertificateKey,
                    });
                    continue;
                }
                certs.push((index, cert));
            }
            Entry::Jwt(kid) => match jwt_key(&jwk).map_err(invalid)? {
                JwtKey::Use(key, alg) => authorities.push(JwtAuthority {
                    kid: kid.to_owned(),
                    key,
                    alg,
                }),
                JwtKey::Ignore(reason) => ignored.push(IgnoredEntry { index, reason }),
            },
        }
    }
    let (indexes, certs): (Vec<usize>, Vec<_>) = certs.into_iter().unzip();
    let x509 = X509Bundle::new(trust_domain.clone(), certs).map_err(|err| match err {
        BundleError::AuthorityUnparsable { index, .. } => BundleError::InvalidEntry {
            index: indexes.get(index).copied().unwrap_or(index),
            reason: EntryError::Certificate,
        },
        BundleError::UnsupportedAuthorityKey { index } => BundleError::InvalidEntry {
            index: indexes.get(index).copied().unwrap_or(index),
            reason: EntryError::CertificateKey,
        },
        other => other,
    })?;
    let jwt = JwtBundle::new(trust_domain, authorities)?;
    let mut bundle = SpiffeBundle::new(x509, jwt)?;
    bundle.sequence = raw.spiffe_sequence;
    bundle.refresh_hint = raw.spiffe_refresh_hint.map(Duration::from_secs);
    bundle.ignored = ignored;
    Ok(bundle)
}

enum Entry<'j> {
    Ignore(IgnoreReason),
    X509(&'j str),
    Jwt(&'j str),
}

fn classify<'j>(jwk: &'j RawJwk<'_>) -> Entry<'j> {
    let Some(kty) = jwk.kty.as_deref() else {
        return Entry::Ignore(IgnoreReason::MissingKty);
    };
    let Some(use_) = jwk.use_.as_deref() else {
        return Entry::Ignore(IgnoreReason::MissingUse);
    };
    match use_ {
        "x509-svid" => {
            if !matches!(kty, "EC" | "RSA" | "OKP") {
                return Entry::Ignore(IgnoreReason::UnsupportedKty);
            }
            match jwk.x5c.0.as_deref() {
                Some(x5c) if !x5c.is_empty() => Entry::X509(x5c),
                _ => Entry::Ignore(IgnoreReason::MissingX5c),
            }
        }
        "jwt-svid" => {
            if !matches!(kty, "EC" | "RSA") {
                return Entry::Ignore(IgnoreReason::UnsupportedKty);
            }
            // An empty `kid` names no key: tokens always need a real key id to select it.
            match jwk.kid.as_deref() {
                Some(kid) if !kid.is_empty() => Entry::Jwt(kid),
                _ => Entry::Ignore(IgnoreReason::MissingKid),
            }
        }
        _ => Entry::Ignore(IgnoreReason::UnknownUse),
    }
}

enum JwtKey {
    Use(JwtPublicKey, Option<JwsAlgorithm>),
    Ignore(IgnoreReason),
}

/// The key of a `jwt-svid` entry: `Err` for a malformed entry.
fn jwt_key(jwk: &RawJwk<'_>) -> Result<JwtKey, EntryError> {
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) => match JwsAlgorithm::from_name(name) {
            Some(alg) => Some(alg),
            None => return Ok(JwtKey::Ignore(IgnoreReason::UnsupportedAlg)),
        },
    };
    let key = match jwk.kty.as_deref() {
        Some("EC") => {
            let crv = member(jwk.crv.as_deref(), "crv")?;
            let Some(curve) = EcCurve::from_jwk_name(crv) else {
                return Ok(JwtKey::Ignore(IgnoreReason::UnsupportedCurve));
            };
            let x = b64url(member(jwk.x.as_deref(), "x")?, "x")?;
            let y = b64url(member(jwk.y.as_deref(), "y")?, "y")?;
            JwtPublicKey::ec(curve, &x, &y)?
        }
        Some("RSA") => {
            let n = b64url(member(jwk.n.as_deref(), "n")?, "n")?;
            let e = b64url(member(jwk.e.as_deref(), "e")?, "e")?;
            match JwtPublicKey::rsa(&n, &e) {
                Err(KeyError::RsaTooSmall { .. }) => {
                    return Ok(JwtKey::Ignore(IgnoreReason::WeakRsaKey));
                }
                Err(KeyError::RsaTooLarge { .. }) => {
                    return Ok(JwtKey::Ignore(IgnoreReason::RsaKeyTooLarge));
                }
                other => other?,
            }
        }
        // Both callers pass only `EC` and `RSA` entries (`classify` and the JWKS reader);
        // anything else is skipped, never read as RSA.
        _ => return Ok(JwtKey::Ignore(IgnoreReason::UnsupportedKty)),
    };
    if alg.is_some_and(|alg| !key.supports(alg)) {
        return Ok(JwtKey::Ignore(IgnoreReason::AlgKeyMismatch));
    }
    Ok(JwtKey::Use(key, alg))
}

fn member<'v>(value: Option<&'v str>, member: &'static str) -> Result<&'v str, EntryError> {
    value.ok_or(EntryError::MissingMember { member })
}

fn b64url(value: &str, member: &'static str) -> Result<Vec<u8>, EntryError> {
    JWK_B64
        .decode(value.as_bytes())
        .map_err(|_| EntryError::Base64 { member })
}

// === writing ===

/// JWK members of an X.509 authority's public key, extracted once when the bundle is built.
#[derive(Clone)]
pub(super) enum OwnedKeyParams {
    Ec {
        curve: EcCurve,
        x: Box<[u8]>,
        y: Box<[u8]>,
    },
    Rsa {
        n: Box<[u8]>,
        e: Box<[u8]>,
    },
    Ed25519 {
        x: Box<[u8]>,
    },
}

impl OwnedKeyParams {
    pub(super) fn from_certificate(cert: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert).ok()?;
        let spki = cert.public_key();
        let oid = &spki.algorithm.algorithm;
        let key = spki.subject_public_key.data.as_ref();
        if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve_oid = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
            let curve = if curve_oid == OID_EC_P256 {
                EcCurve::P256
            } else if curve_oid == OID_NIST_EC_P384 {
                EcCurve::P384
            } else if curve_oid == OID_NIST_EC_P521 {
                EcCurve::P521
            } else {
                return None;
            };
            let len = curve.coordinate_len();
            if key.len() != 1 + 2 * len || key.first() != Some(&0x04) {
                return None;
            }
            let (x, y) = key.get(1..)?.split_at(len);
            Some(Self::Ec {
                curve,
                x: x.into(),
                y: y.into(),
            })
        } else if *oid == OID_PKCS1_RSAENCRYPTION {
            let x509_parser::public_key::PublicKey::RSA(rsa) = spki.parsed().ok()? else {
                return None;
            };
            Some(Self::Rsa {
                n: strip_zeros(rsa.modulus).into(),
                e: strip_zeros(rsa.exponent).into(),
            })
        } else if *oid == OID_SIG_ED25519 {
            Some(Self::Ed25519 { x: key.into() })
        } else {
            None
        }
    }
}

fn strip_zeros(mut bytes: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

fn b64(bytes: &[u8]) -> Value {
    Value::String(URL_SAFE_NO_PAD.encode(bytes))
}

fn insert_params(jwk: &mut Map<String, Value>, params: KeyParams<'_>) {
    match params {
        KeyParams::Ec { curve, x, y } => {
            jwk.insert("kty".into(), "EC".into());
            jwk.insert("crv".into(), curve.jwk_name().into());
            jwk.insert("x".into(), b64(x));
            jwk.insert("y".into(), b64(y));
        }
        KeyParams::Rsa { n, e } => {
            jwk.insert("kty".into(), "RSA".into());
            jwk.insert("n".into(), b64(n));
            jwk.insert("e".into(), b64(e));
        }
    }
}

pub(super) fn to_document_json(bundle: &SpiffeBundle) -> String {
    let mut keys = Vec::with_capacity(bundle.x509.authorities.len() + bundle.jwt.len());
    for (cert, params) in bundle
        .x509
        .authorities
        .iter()
        .zip(bundle.x509.key_params.iter())
    {
        let mut jwk = Map::new();
        match params {
            OwnedKeyParams::Ec { curve, x, y } => insert_params(
                &mut jwk,
                KeyParams::Ec {
                    curve: *curve,
                    x,
                    y,
                },
            ),
            OwnedKeyParams::Rsa { n, e } => insert_params(&mut jwk, KeyParams::Rsa { n, e }),
            OwnedKeyParams::Ed25519 { x } => {
                jwk.insert("kty".into(), "OKP".into());
                jwk.insert("crv".into(), "Ed25519".into());
                jwk.insert("x".into(), b64(x));
            }
        }
        jwk.insert("use".into(), "x509-svid".into());
        jwk.insert("x5c".into(), json!([STANDARD.encode(cert.as_ref())]));
        keys.push(Value::Object(jwk));
    }
    for authority in bundle.jwt.authorities() {
        let mut jwk = Map::new();
        insert_params(&mut jwk, authority.key.params());
        jwk.insert("use".into(), "jwt-svid".into());
        jwk.insert("kid".into(), authority.kid.clone().into());
        if let Some(alg) = authority.alg {
            jwk.insert("alg".into(), alg.as_str().into());
        }
        keys.push(Value::Object(jwk));
    }
    let mut doc = Map::new();
    doc.insert("keys".into(), Value::Array(keys));
    if let Some(sequence) = bundle.sequence {
        doc.insert("spiffe_sequence".into(), sequence.into());
    }
    if let Some(hint) = bundle.refresh_hint {
        doc.insert("spiffe_refresh_hint".into(), hint.as_secs().into());
    }
    Value::Object(doc).to_string()
}
