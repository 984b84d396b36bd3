//! Test-only key material and token minting, shared by the bundle and jwt tests.

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::CertificateDer;

use super::{BundleSet, EcCurve, JwtAuthority, JwtBundle, JwtPublicKey, SpiffeBundle, X509Bundle};
use crate::id::TrustDomain;
use crate::jwt::JwsAlgorithm;

pub(crate) enum TestKey {
    Ec(EcCurve, EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl TestKey {
    pub(crate) fn ec(curve: EcCurve) -> Self {
        let alg = match curve {
            EcCurve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            EcCurve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            EcCurve::P521 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
        };
        Self::Ec(curve, EcdsaKeyPair::generate(alg).unwrap())
    }

    pub(crate) fn public(&self) -> JwtPublicKey {
        match self {
            Self::Ec(curve, pair) => {
                JwtPublicKey::ec_point(*curve, pair.public_key().as_ref()).unwrap()
            }
            Self::Rsa(pair) => {
                let public = pair.public_key();
                JwtPublicKey::rsa(
                    public.modulus().big_endian_without_leading_zero(),
                    public.exponent().big_endian_without_leading_zero(),
                )
                .unwrap()
            }
        }
    }

    pub(crate) fn authority(&self, kid: &str) -> JwtAuthority {
        JwtAuthority {
            kid: kid.to_owned(),
            key: self.public(),
            alg: None,
        }
    }

    /// Signs `message` with `alg`; the caller picks an alg that fits the key.
    pub(crate) fn sign(&self, alg: JwsAlgorithm, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Self::Ec(_, pair) => pair.sign(&rng, message).unwrap().as_ref().to_vec(),
            Self::Rsa(pair) => {
                let encoding = match alg {
                    JwsAlgorithm::Rs256 => &signature::RSA_PKCS1_SHA256,
                    JwsAlgorithm::Rs384 => &signature::RSA_PKCS1_SHA384,
                    JwsAlgorithm::Rs512 => &signature::RSA_PKCS1_SHA512,
                    JwsAlgorithm::Ps256 => &signature::RSA_PSS_SHA256,
                    JwsAlgorithm::Ps384 => &signature::RSA_PSS_SHA384,
                    _ => &signature::RSA_PSS_SHA512,
                };
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(encoding, &rng, message, &mut sig).unwrap();
                sig
            }
        }
    }

    /// A compact JWS over exactly these header and claims bytes.
    pub(crate) fn jws(&self, alg: JwsAlgorithm, header: &str, claims: &str) -> String {
        let signing_input = format!("{}.{}", b64(header), b64(claims));
        let sig = self.sign(alg, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

pub(crate) fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s.as_bytes())
}

/// One shared RSA-2048 key: generation is slow, and sharing does not couple the tests.
pub(crate) fn rsa2048() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap()))
}

pub(crate) fn p256() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::ec(EcCurve::P256))
}

pub(crate) fn td(name: &str) -> TrustDomain {
    TrustDomain::parse(name).unwrap()
}

/// A bundle set with one trust domain holding these JWT authorities.
pub(crate) fn jwt_set(trust_domain: &str, authorities: Vec<JwtAuthority>) -> BundleSet {
    let td = td(trust_domain);
    let jwt = JwtBundle::new(td.clone(), authorities).unwrap();
    let bundle = SpiffeBundle::new(X509Bundle::empty(td), jwt).unwrap();
    let mut set = BundleSet::new();
    set.insert(bundle).unwrap();
    set
}

/// A self-signed CA certificate minted with rcgen.
pub(crate) fn ca_cert(alg: &'static rcgen::SignatureAlgorithm) -> CertificateDer<'static> {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().der().clone()
}
