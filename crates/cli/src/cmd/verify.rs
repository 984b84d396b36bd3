//! `svid-broker verify jwt` and `svid-broker verify x509`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use svid_broker_identity::TrustDomain;
use svid_broker_identity::bundle::{BundleSet, JwtBundle, SpiffeBundle, X509Bundle};
use svid_broker_identity::jwt::JwtSvidValidator;

use super::inspect::Prefixed;
use crate::cli::VerifyCommand;
use crate::error::CliError;

/// Largest bundle or chain file we read; far above any real bundle, small enough to refuse junk.
const MAX_INPUT_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Largest token read from stdin; the validator applies its own, smaller cap.
const MAX_STDIN_TOKEN_BYTES: u64 = 1024 * 1024;

pub(crate) fn run(cmd: VerifyCommand) -> Result<(), CliError> {
    match cmd {
        VerifyCommand::Jwt {
            bundles,
            audiences,
            at,
            leeway,
            token,
        } => {
            let bundles = load_bundles(&bundles, BundleKind::Document)?;
            let mut validator =
                JwtSvidValidator::new(audiences).map_err(|err| CliError::Usage {
                    arg: "--audience",
                    reason: err.to_string(),
                })?;
            if let Some(seconds) = leeway {
                validator = validator
                    .with_leeway(Duration::from_secs(seconds))
                    .map_err(|err| CliError::Usage {
                        arg: "--leeway",
                        reason: err.to_string(),
                    })?;
            }
            let token = read_token(&token)?;
            let claims = validator
                .validate(token.trim(), &bundles, time_at(at))
                .map_err(|err| CliError::rejected(Prefixed("JWT-SVID rejected", err)))?;
            print_line(claims.spiffe_id.as_str())
        }
        VerifyCommand::X509 { bundles, at, chain } => {
            let bundles = load_bundles(&bundles, BundleKind::PemOrDocument)?;
            let chain = read_chain(&chain)?;
            let verified = svid_broker_identity::x509::verify(&chain, &bundles, time_at(at))
                .map_err(|err| CliError::rejected(Prefixed("X.509-SVID rejected", err)))?;
            print_line(verified.spiffe_id().as_str())
        }
    }
}

fn print_line(line: &str) -> Result<(), CliError> {
    writeln!(std::io::stdout().lock(), "{line}").map_err(CliError::Output)
}

fn time_at(at: Option<u64>) -> SystemTime {
    at.map_or_else(SystemTime::now, |secs| {
        UNIX_EPOCH + Duration::from_secs(secs)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BundleKind {
    /// JWT authorities only come in SPIFFE bundle documents.
    Document,
    /// X.509 authorities may also come as PEM.
    PemOrDocument,
}

fn load_bundles(specs: &[String], kind: BundleKind) -> Result<BundleSet, CliError> {
    let mut set = BundleSet::new();
    for spec in specs {
        let (td, path) = spec.split_once('=').ok_or_else(|| CliError::Usage {
            arg: "--bundle",
            reason: format!("expected TD=FILE, got {spec:?}"),
        })?;
        let td = TrustDomain::parse_id_or_name(td).map_err(|err| CliError::Usage {
            arg: "--bundle",
            reason: err.to_string(),
        })?;
        let path = PathBuf::from(path);
        let bytes = read_capped(&path)?;
        let bundle_error = |source| CliError::Bundle {
            path: path.clone(),
            source,
        };
        let is_document = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        let bundle = if is_document {
            SpiffeBundle::parse_document(td, &bytes).map_err(bundle_error)?
        } else if kind == BundleKind::PemOrDocument {
            let x509 = X509Bundle::from_pem(td.clone(), &bytes).map_err(bundle_error)?;
            SpiffeBundle::new(x509, JwtBundle::empty(td)).map_err(bundle_error)?
        } else {
            return Err(CliError::Usage {
                arg: "--bundle",
                reason: format!("{} is not a SPIFFE bundle document (JSON)", path.display()),
            });
        };
        set.insert(bundle).map_err(bundle_error)?;
    }
    Ok(set)
}

fn read_capped(path: &Path) -> Result<Vec<u8>, CliError> {
    let read_error = |source| CliError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_INPUT_FILE_BYTES {
        return Err(CliError::Usage {
            arg: "file",
            reason: format!(
                "{} is larger than {MAX_INPUT_FILE_BYTES} bytes",
                path.display()
            ),
        });
    }
    Ok(bytes)
}

fn read_token(arg: &str) -> Result<String, CliError> {
    if arg != "-" {
        return Ok(arg.to_owned());
    }
    let mut token = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_STDIN_TOKEN_BYTES)
        .read_to_string(&mut token)
        .map_err(|source| CliError::Read {
            path: PathBuf::from("<stdin>"),
            source,
        })?;
    Ok(token)
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CliError> {
    use rustls_pki_types::pem::PemObject;
    let bytes = read_capped(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| CliError::Usage {
            arg: "CHAIN_PEM",
            reason: format!("{}: {err}", path.display()),
        })?;
    if chain.is_empty() {
        return Err(CliError::Usage {
            arg: "CHAIN_PEM",
            reason: format!("{} holds no CERTIFICATE block", path.display()),
        });
    }
    Ok(chain)
}
