//! `svid-broker keystore init --config FILE`: what a key store deployment needs before the
//! first `serve`, made with the broker's own code so the operator runs no other tool against
//! the token: the keys generated inside the PKCS#11 token (never extractable), and the signing
//! CA certificate self-signed by the key store. Idempotent: whatever exists is kept, and a kept
//! certificate must match the key.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use svid_broker_keystore::pkcs11::Pkcs11Error;
use svid_broker_server::BrokerConfig;
use svid_broker_server::config::{FederationKeySource, KeyReference, SigningSource};
use svid_broker_server::key_stores::KeyStores;
use svid_broker_token::SigningCa;
use svid_broker_token::external::{ExternalAlgorithm, ExternalKey};
use svid_broker_token::federation::FederationKey;
use zeroize::Zeroizing;

use crate::cli::KeystoreInitArgs;
use crate::error::CliError;

/// Longest CA lifetime `--ca-days` takes (20 years).
const MAX_CA_DAYS: u64 = 7300;

pub(crate) fn init(args: &KeystoreInitArgs) -> Result<(), CliError> {
    let config = BrokerConfig::load(&args.config).map_err(|source| CliError::Config {
        source: Box::new(source),
    })?;
    if !(1..=MAX_CA_DAYS).contains(&args.ca_days) {
        return Err(CliError::Usage {
            arg: "--ca-days",
            reason: format!("must be 1..={MAX_CA_DAYS}"),
        });
    }
    let algorithm = match args.ca_algorithm.as_str() {
        "ES256" => ExternalAlgorithm::EcdsaP256Sha256,
        "ES384" => ExternalAlgorithm::EcdsaP384Sha384,
        _ => {
            return Err(CliError::Usage {
                arg: "--ca-algorithm",
                reason: "must be ES256 or ES384".into(),
            });
        }
    };
    let mut stores = KeyStores::new(&config.key_store);
    let mut keys_seen = 0usize;

    if let SigningSource::KeyStore { cert, key, mac } = &config.signing {
        keys_seen += 1;
        if let (KeyReference::Pkcs11(uri), KeyReference::Pkcs11(mac_uri)) = (key, mac) {
            let token = stores
                .pkcs11_token("signing key", uri)
                .map_err(CliError::key_store)?;
            match token.generate_ca_key(uri, mac_uri, algorithm) {
                Ok(()) => println!("generated {uri} (the CA key pair and its HMAC key)"),
                Err(Pkcs11Error::ObjectExists { .. }) => println!("kept {uri}"),
                Err(error) => return Err(CliError::key_store(error)),
            }
        }
        let signer = stores
            .signing_key("signing key", key)
            .map_err(CliError::key_store)?;
        // Opened to prove it is there: `serve` needs it as much as the signing key.
        stores.mac_key(mac).map_err(CliError::key_store)?;
        write_or_check_ca(cert, signer, args)?;
    }

    if let Some(federation) = &config.federation
        && let FederationKeySource::KeyStore(references) = &federation.keys
    {
        for reference in references {
            keys_seen += 1;
            if let KeyReference::Pkcs11(uri) = reference {
                let token = stores
                    .pkcs11_token("federation key", uri)
                    .map_err(CliError::key_store)?;
                match token.generate_federation_key(uri) {
                    Ok(()) => println!("generated {uri} (an RSA-2048 federation key)"),
                    Err(Pkcs11Error::ObjectExists { .. }) => println!("kept {uri}"),
                    Err(error) => return Err(CliError::key_store(error)),
                }
            }
            let key = stores
                .signing_key("federation key", reference)
                .map_err(CliError::key_store)?;
            let key = FederationKey::external(key).map_err(CliError::key_store)?;
            println!("federation kid {}", key.kid());
        }
    }

    if keys_seen == 0 {
        return Err(CliError::Usage {
            arg: "--config",
            reason: "it names no key store key (signing.key or federation.keys)".into(),
        });
    }
    Ok(())
}

/// Writes the self-signed CA certificate when `cert` is absent; else checks that it is the
/// key's (the same check `serve` makes, so a mismatch shows here first).
fn write_or_check_ca(
    cert: &Path,
    signer: Arc<dyn ExternalKey>,
    args: &KeystoreInitArgs,
) -> Result<(), CliError> {
    let now = SystemTime::now();
    if cert.exists() {
        // The derived secret is not needed to check the match; zeros stand in.
        SigningCa::with_external_key_file(cert, signer, Zeroizing::new([0u8; 32]), now)
            .map_err(CliError::key_store)?;
        println!("kept {} (it is the key's certificate)", cert.display());
        return Ok(());
    }
    let lifetime = Duration::from_secs(args.ca_days * 86_400);
    let pem = SigningCa::self_signed_external_pem(signer, &args.common_name, lifetime, now)
        .map_err(CliError::key_store)?;
    // A certificate is public; never written over an existing file (checked again here
    // against a race with another `init`).
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(cert)
        .map_err(|e| CliError::Usage {
            arg: "--config",
            reason: format!("cannot create signing.ca_cert_file {}: {e}", cert.display()),
        })?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(CliError::Output)?;
    println!("written {}", cert.display());
    Ok(())
}
