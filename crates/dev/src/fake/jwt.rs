//! Registry-token signing for the fakes: a fresh P-256 CA (what a registry lists in its
//! `rootcertbundle`) and one leaf it certifies, whose key signs ES256 JWTs carrying the leaf in
//! `x5c`, the form Debian's docker-registry 2.8 verifies (chain to the bundle, then the leaf's
//! key; `alg` must match the curve; the signature is raw `r || s`).
//!
//! The keys exist only in memory: the CA key is dropped once the leaf is certified (nothing
//! else is ever signed with it), and the leaf key lives in aws-lc-rs.

use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SignatureAlgorithm,
};

/// How far the certificates' validity reaches back and forward from start-up: wide, because
/// the fakes' clocks can be advanced while the registry checks the chain at the real time.
const CERT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);

/// One entry of a registry token's `access` claim (the Docker token spec's resource actions,
/// which Harbor and GitLab both grant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AccessEntry {
    /// `repository`, `registry`, ...
    pub(super) kind: String,
    /// The resource's name (a repository path).
    pub(super) name: String,
    /// The actions granted (`pull`, `push`, ...).
    pub(super) actions: Vec<String>,
}

impl AccessEntry {
    /// `{"type", "name", "actions"}`, as the claim carries it.
    pub(super) fn claim(&self) -> serde_json::Value {
        serde_json::json!({ "type": self.kind, "name": self.name, "actions": self.actions })
    }
}

/// Why the signing material could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// aws-lc-rs could not generate or use a P-256 key.
    #[error("cannot generate a P-256 key")]
    KeyGeneration,
    /// rcgen could not build a certificate.
    #[error("cannot build the token certificates")]
    Certificate(#[source] rcgen::Error),
    /// A JWT could not be signed (aws-lc-rs refused; no token is returned).
    #[error("cannot sign a registry token")]
    Signing,
}

/// An ES256 JWT signer whose leaf certificate chains to its own CA.
pub(crate) struct TokenSigner {
    ca_pem: String,
    leaf_der_b64: String,
    key: EcdsaKeyPair,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").finish_non_exhaustive()
    }
}

/// The leaf's public key (an uncompressed P-256 point) for rcgen.
struct LeafPublicKey(Vec<u8>);

impl PublicKeyData for LeafPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl TokenSigner {
    /// A fresh CA and leaf; `common_name` names both (e.g. the token issuer).
    pub(crate) fn generate(common_name: &str, now: SystemTime) -> Result<Self, SignerError> {
        let not_before = now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now);
        let not_after = now.checked_add(CERT_VALIDITY).unwrap_or(now);

        let ca_key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(SignerError::Certificate)?;
        let mut ca_params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{common_name} CA"));
        ca_params.distinguished_name = dn;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params.not_before = not_before.into();
        ca_params.not_after = not_after.into();
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(SignerError::Certificate)?;

        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| SignerError::KeyGeneration)?;
        let mut leaf_params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        leaf_params.distinguished_name = dn;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.not_before = not_before.into();
        leaf_params.not_after = not_after.into();
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let leaf = leaf_params
            .signed_by(&LeafPublicKey(key.public_key().as_ref().to_vec()), &issuer)
            .map_err(SignerError::Certificate)?;

        Ok(Self {
            ca_pem: ca_cert.pem(),
            leaf_der_b64: STANDARD.encode(leaf.der()),
            key,
        })
    }

    /// PEM of the CA certificate.
    pub(crate) fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A compact JWS over `claims` with header `{typ, alg: ES256, x5c: [leaf]}`.
    pub(crate) fn sign(&self, claims: &serde_json::Value) -> Result<String, SignerError> {
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [self.leaf_der_b64],
        });
        let mut jws = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), jws.as_bytes())
            .map_err(|_| SignerError::Signing)?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(jws)
    }
}
