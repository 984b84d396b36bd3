//! Mint a registry token with `svid-broker-token`, then verify it offline the way an unmodified
//! distribution 2.8 registry (`docker-registry`) does before serving a request: `x5c` chain to
//! the configured root bundle (webpki), `alg` matching the leaf key, signature, `iss`, `aud` as
//! one JSON string, `exp`/`nbf` with 60 s of leeway. Then show what each check refuses.
//!
//! ```text
//! cargo run -p svid-broker-examples --example mint_verify_token
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, RSA_PKCS1_2048_8192_SHA256,
    UnparsedPublicKey, VerificationAlgorithm,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::Value;
use svid_broker_identity::SpiffeId;
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_token::{
    Access, KeyRing, KeyRingConfig, MintRequest, Profile, SigningAlgorithm, SigningCa, TokenMinter,
};

/// The registry's `auth.token.issuer`.
const ISSUER: &str = "svid-broker";
/// The registry's `auth.token.service`.
const SERVICE: &str = "registry.local";
/// distribution's clock-skew allowance on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;

type Error = Box<dyn std::error::Error>;

/// Why the registry would answer `401 invalid_token`.
#[derive(Debug)]
struct Rejected(&'static str);

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "registry answers 401 invalid_token: {}", self.0)
    }
}

impl std::error::Error for Rejected {}

/// What a registry's `auth.token` block configures, and the checks it runs on every request.
struct Registry {
    issuer: &'static str,
    service: &'static str,
    /// `rootcertbundle`: the signing CA, nothing else.
    roots: Vec<CertificateDer<'static>>,
}

/// distribution accepts any extended key usage on the `x5c` leaf (Go's `ExtKeyUsageAny`).
struct AnyExtendedKeyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyExtendedKeyUsage {
    fn validate(&self, _purposes: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

impl Registry {
    fn verify(&self, token: &str, now: SystemTime) -> Result<Value, Rejected> {
        let [header_b64, claims_b64, signature_b64] = token.split('.').collect::<Vec<_>>()[..]
        else {
            return Err(Rejected("not three dot-separated parts"));
        };
        let json = |part: &str| -> Result<Value, Rejected> {
            let bytes = URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| Rejected("a part is not base64url"))?;
            serde_json::from_slice(&bytes).map_err(|_| Rejected("a part is not JSON"))
        };
        let (header, claims) = (json(header_b64)?, json(claims_b64)?);

        // Claims first, as distribution does: issuer and audience, then time.
        if claims["iss"].as_str() != Some(self.issuer) {
            return Err(Rejected("iss is not the configured issuer"));
        }
        // distribution 2.8 decodes `aud` into a Go string: an array does not even parse.
        match &claims["aud"] {
            Value::String(aud) if aud == self.service => {}
            Value::String(_) => return Err(Rejected("aud is not the configured service")),
            _ => return Err(Rejected("aud is not a single JSON string")),
        }
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Rejected("clock before 1970"))?
            .as_secs();
        let exp = claims["exp"].as_u64().unwrap_or(0);
        let nbf = claims["nbf"].as_u64().unwrap_or(0);
        if now_secs > exp + LEEWAY_SECS {
            return Err(Rejected("token expired"));
        }
        if now_secs + LEEWAY_SECS < nbf {
            return Err(Rejected("token not yet valid"));
        }

        // The signing key: the leaf of the `x5c` chain, which must chain to the root bundle.
        let chain: Vec<CertificateDer<'static>> = header["x5c"]
            .as_array()
            .ok_or(Rejected("no x5c header"))?
            .iter()
            .map(|c| {
                let der = STANDARD
                    .decode(c.as_str().unwrap_or(""))
                    .map_err(|_| Rejected("x5c entry is not base64"))?;
                Ok(CertificateDer::from(der))
            })
            .collect::<Result<_, Rejected>>()?;
        let (leaf, intermediates) = chain.split_first().ok_or(Rejected("empty x5c"))?;
        let anchors: Vec<_> = self
            .roots
            .iter()
            .map(|r| webpki::anchor_from_trusted_cert(r).map(|a| a.to_owned()))
            .collect::<Result<_, _>>()
            .map_err(|_| Rejected("unusable root bundle"))?;
        let end_entity =
            webpki::EndEntityCert::try_from(leaf).map_err(|_| Rejected("x5c leaf unparsable"))?;
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                intermediates,
                UnixTime::since_unix_epoch(Duration::from_secs(now_secs)),
                AnyExtendedKeyUsage,
                None,
                None,
            )
            .map_err(|_| Rejected("x5c does not chain to the root bundle"))?;

        // `alg` picks the verification; a key of another type simply fails it.
        let algorithm: &dyn VerificationAlgorithm = match header["alg"].as_str() {
            Some("ES256") => &ECDSA_P256_SHA256_FIXED,
            Some("ES384") => &ECDSA_P384_SHA384_FIXED,
            Some("RS256") => &RSA_PKCS1_2048_8192_SHA256,
            _ => return Err(Rejected("alg not accepted")),
        };
        let (_, cert) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|_| Rejected("x5c leaf unparsable"))?;
        let key = cert.public_key().subject_public_key.data.to_vec();
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| Rejected("signature is not base64url"))?;
        let signed = format!("{header_b64}.{claims_b64}");
        UnparsedPublicKey::new(algorithm, key)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| Rejected("signature does not verify with the x5c leaf key"))?;
        Ok(claims)
    }
}

fn main() -> Result<(), Error> {
    let now = SystemTime::now();

    // In production the CA comes from PEM files shared by all replicas (SigningCa::from_pem).
    let ca = SigningCa::generate(
        SigningAlgorithm::Es256,
        "example signing ca",
        Duration::from_secs(24 * 60 * 60),
        now,
    )?;
    let minter = TokenMinter::new(KeyRing::new(ca, KeyRingConfig::default(), now)?);
    let root_pem = minter.key_ring().ca_bundle_pem();
    println!("1. signing CA generated; the registry's rootcertbundle is its certificate only");

    let subject = SpiffeId::parse("spiffe://example.org/ns/ci/sa/builder")?;
    let access = [Access::new("repository", "team/app", ["push", "pull"])];
    let minted = minter.mint(&MintRequest::new(
        ISSUER,
        SERVICE,
        &subject,
        &access,
        Profile::Distribution2,
        now,
    ))?;
    println!(
        "2. minted a token for {subject}: jti {}, kid {}, valid {} s (the token itself is a secret and is not printed)",
        minted.jti,
        minted.key_id,
        minted.expires_in().as_secs()
    );

    let roots = pem::parse_many(&root_pem)?
        .into_iter()
        .map(|p| CertificateDer::from(p.into_contents()))
        .collect();
    let registry = Registry {
        issuer: ISSUER,
        service: SERVICE,
        roots,
    };
    let token = minted.token.expose_secret();
    let claims = registry.verify(token, now)?;
    println!("3. verified as distribution 2.8 would; claims:");
    for name in ["iss", "sub", "aud", "iat", "nbf", "exp", "access"] {
        println!("     {name:<6} {}", claims[name]);
    }

    // Each check, failing.
    let expected_failures: [(&str, Result<Value, Rejected>); 3] = [
        (
            "the same token at another registry",
            Registry {
                service: "registry.other",
                issuer: ISSUER,
                roots: registry.roots.clone(),
            }
            .verify(token, now),
        ),
        (
            "the same token 10 minutes later",
            registry.verify(token, now + Duration::from_secs(600)),
        ),
        ("a token with a changed signature", {
            // A character well inside the signature: all six of its bits are signature bits.
            let at = token.len() - 10;
            let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
            let tampered = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
            registry.verify(&tampered, now)
        }),
    ];
    println!("4. what the registry refuses:");
    for (what, outcome) in expected_failures {
        match outcome {
            Ok(_) => return Err(format!("{what} must be refused").into()),
            Err(rule) => println!("     {what}: {rule}"),
        }
    }
    let stranger_ca = SigningCa::generate(
        SigningAlgorithm::Es256,
        "someone else's ca",
        Duration::from_secs(3600),
        now,
    )?;
    let stranger = TokenMinter::new(KeyRing::new(stranger_ca, KeyRingConfig::default(), now)?);
    let forged = stranger.mint(&MintRequest::new(
        ISSUER,
        SERVICE,
        &subject,
        &access,
        Profile::Distribution2,
        now,
    ))?;
    match registry.verify(forged.token.expose_secret(), now) {
        Ok(_) => return Err("a token from another CA must be refused".into()),
        Err(rule) => println!("     a token signed under another CA: {rule}"),
    }
    Ok(())
}
