//! `svid-broker federation-key --out FILE`: a new RSA key for the broker's OIDC issuer, so an
//! operator needs no other tool to make or rotate one (docs/registry-setup.md, "The broker as an
//! OIDC issuer").

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_token::federation::FederationKey;

use crate::cli::FederationKeyArgs;
use crate::error::CliError;

pub(crate) fn run(args: &FederationKeyArgs) -> Result<(), CliError> {
    let key = FederationKey::generate().map_err(CliError::rejected)?;
    let pem = key.to_pkcs8_pem().map_err(CliError::rejected)?;
    // Created with mode 600 in one step (never a moment readable by others), and never over an
    // existing file: that may be the key replicas sign with.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.out)
        .map_err(|e| CliError::Usage {
            arg: "--out",
            reason: format!("cannot create {}: {e}", args.out.display()),
        })?;
    file.write_all(pem.expose_secret().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(CliError::Output)?;
    println!("{}", key.kid());
    Ok(())
}
