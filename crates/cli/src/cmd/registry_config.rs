//! `svid-broker registry-config`: the `auth.token` block for one registry, and its root
//! certificate bundle.

use std::io::Write;
use std::path::{Path, PathBuf};

use svid_broker_identity::report::ErrorChain;
use svid_broker_policy::Policy;
use svid_broker_server::config::{BrokerConfig, SigningSource};

use crate::cli::RegistryConfigArgs;
use crate::error::CliError;

/// Largest certificate file read, in bytes.
const MAX_CERT_FILE_BYTES: u64 = 64 * 1024;

pub(crate) fn run(args: &RegistryConfigArgs) -> Result<(), CliError> {
    let usage = |arg, reason: String| CliError::Usage { arg, reason };
    let config = BrokerConfig::load(&args.config)
        .map_err(|e| usage("--config", ErrorChain::new(&e).to_string()))?;
    let policy = Policy::load(&config.policy_file)
        .map_err(|e| usage("--config", format!("policy: {}", ErrorChain::new(&e))))?;
    let registry = policy.registry_by_name(&args.registry).ok_or_else(|| {
        usage(
            "--registry",
            format!("no registry named {:?} in the policy", args.registry),
        )
    })?;
    let Some(issuer) = registry.issuer() else {
        return Err(usage(
            "--registry",
            format!(
                "registry {:?} is kind = \"{}\": its own service signs its tokens, so it has no \
                 auth.token block to point at the broker (docs/registry-setup.md has its setup)",
                registry.name(),
                registry.kind()
            ),
        ));
    };
    // Only the certificate is read: the key may be in a file or in a key store.
    // Only the certificate is read: the key may be in a file or in a key store.
    let (SigningSource::Files { cert, .. } | SigningSource::KeyStore { cert, .. }) =
        &config.signing
    else {
        return Err(usage(
            "--config",
            "signing.generate = true: a generated CA lives only inside `serve`; configure \
             signing.ca_cert_file and signing.ca_key_file"
                .to_owned(),
        ));
    };
    let anchor = trust_anchor_pem(cert)?;
    std::fs::create_dir_all(&args.out_dir).map_err(|source| CliError::Read {
        path: args.out_dir.clone(),
        source,
    })?;
    let bundle_path = args
        .out_dir
        .join(format!("{}-rootcertbundle.pem", registry.name()));
    std::fs::write(&bundle_path, anchor).map_err(CliError::Output)?;
    let bundle_path = std::fs::canonicalize(&bundle_path).unwrap_or(bundle_path);
    let block = format!(
        "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
        yaml_scalar(&config.realm_url()),
        yaml_scalar(registry.service()),
        yaml_scalar(issuer),
        yaml_scalar(&bundle_path.display().to_string()),
    );
    std::io::stdout()
        .lock()
        .write_all(block.as_bytes())
        .map_err(CliError::Output)
}

/// The last certificate of the CA chain file: what registries trust. Only the certificate
/// file is read, so this command never needs the CA's private key.
fn trust_anchor_pem(path: &Path) -> Result<String, CliError> {
    use std::io::Read as _;
    let read = |source| CliError::Read {
        path: PathBuf::from(path),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read)?
        .take(MAX_CERT_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(read)?;
    let blocks = pem::parse_many(text.as_bytes()).map_err(|e| CliError::Usage {
        arg: "--config",
        reason: format!("signing.ca_cert_file {}: {e}", path.display()),
    })?;
    let last = blocks
        .into_iter()
        .rfind(|b| b.tag() == "CERTIFICATE")
        .ok_or_else(|| CliError::Usage {
            arg: "--config",
            reason: format!(
                "signing.ca_cert_file {} holds no certificate",
                path.display()
            ),
        })?;
    Ok(pem::encode_config(
        &last,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    ))
}

/// A YAML plain scalar when safe, else a double-quoted one.
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c))
        && !s.starts_with(['-', ':', '@']);
    if plain {
        s.to_owned()
    } else {
        serde_json::Value::from(s).to_string()
    }
}
