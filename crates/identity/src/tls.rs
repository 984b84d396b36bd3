//! rustls certificate verifiers for SPIFFE mTLS (feature `rustls`).
//!
//! [`SpiffeClientCertVerifier`] (server side, client authentication mandatory) and
//! [`SpiffeServerCertVerifier`] (client side) both run exactly the code path of
//! [`crate::x509::verify`] (leaf profile, per-trust-domain bundle, path validation) against the
//! bundles their [`BundleProvider`] returns at handshake time, and then the [`Authorizer`]. There
//! is no second implementation that could drift from the non-TLS path.
//!
//! # Decisions
//! - **The DNS server name is ignored.** SPIFFE authorizes peers by SPIFFE ID, not by host name
//!   (X509-SVID §5.2); the [`Authorizer`] is the name check. Pass any `ServerName` to rustls.
//! - **TLS 1.3 only.** `verify_tls12_signature` always fails with
//!   [`TlsVerifyError::Tls12NotSupported`]; configure rustls with `TLS13` only. TLS 1.3 handshake
//!   signatures are checked with the aws-lc-rs provider's algorithms.
//! - **Same options as [`crate::x509::verify`]**: by default the leaf's EKU must be absent or hold
//!   both serverAuth and clientAuth ([`EkuPolicy::Spiffe`](crate::x509::EkuPolicy::Spiffe)),
//!   which satisfies either TLS role; `with_options` changes caps and EKU policy.
//! - **No root hints**: `root_hint_subjects` is empty, since the acceptable roots depend on the
//!   peer's trust domain, which is only known from its certificate.
//! - **Errors**: [`X509SvidError::UnknownIssuer`] and [`X509SvidError::BadSignature`] map to the
//!   matching [`CertificateError`]; every other verification or authorization failure is carried
//!   whole in `CertificateError::Other(OtherError(..))`, so logs show which rule failed (downcast
//!   to [`X509SvidError`] or [`AuthorizeError`](crate::authorize::AuthorizeError)).

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::authorize::Authorizer;
use crate::bundle::BundleProvider;
use crate::id::SpiffeId;
use crate::x509::{self, X509SvidError, X509VerifyOptions};

/// Failures specific to the TLS adapters (not about the certificate itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsVerifyError {
    /// A TLS 1.2 handshake signature was presented; the SPIFFE verifiers run TLS 1.3 only.
    #[error("tls 1.2 handshake signatures are not accepted: spiffe verifiers run tls 1.3 only")]
    Tls12NotSupported,
}

/// The SPIFFE ID of the peer's leaf certificate, re-read from its single URI SAN.
///
/// Use after a handshake that one of this module's verifiers accepted (for example with
/// `ServerConnection::peer_certificates()`); it does not verify anything. `None` when there is
/// no certificate or the leaf has no single valid SPIFFE ID.
pub fn peer_spiffe_id(peer_certificates: &[CertificateDer<'_>]) -> Option<SpiffeId> {
    peer_certificates
        .first()
        .and_then(|leaf| x509::leaf_spiffe_id(leaf).ok())
}

// === shared core ===

struct Core {
    bundles: Arc<dyn BundleProvider>,
    /// `None` only for [`SpiffeClientCertVerifier::authenticate_only`].
    authorizer: Option<Authorizer>,
    options: X509VerifyOptions,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Core {
    fn new(bundles: Arc<dyn BundleProvider>, authorizer: Option<Authorizer>) -> Self {
        Self {
            bundles,
            authorizer,
            options: X509VerifyOptions::default(),
            algorithms: rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms,
        }
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<SpiffeId, Error> {
        let now = unix_to_system(now);
        // One snapshot for the whole verification, even if the provider rotates meanwhile.
        let bundles = self.bundles.bundles();
        let verified = x509::verify_parts(end_entity, intermediates, &bundles, now, &self.options)
            .map_err(svid_error)?;
        if let Some(authorizer) = &self.authorizer {
            authorizer.authorize(verified.spiffe_id()).map_err(|e| {
                Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
            })?;
        }
        Ok(verified.into_spiffe_id())
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("bundles", &self.bundles)
            .field("authorizer", &self.authorizer)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn unix_to_system(now: UnixTime) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(now.as_secs()))
        .unwrap_or(UNIX_EPOCH)
}

fn svid_error(e: X509SvidError) -> Error {
    Error::InvalidCertificate(match e {
        X509SvidError::UnknownIssuer => CertificateError::UnknownIssuer,
        X509SvidError::BadSignature => CertificateError::BadSignature,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    })
}

fn tls12_refused() -> Error {
    Error::Other(OtherError(Arc::new(TlsVerifyError::Tls12NotSupported)))
}

// === impl SpiffeClientCertVerifier ===

/// A rustls server's verifier of client certificates: the client must present an X.509-SVID
/// that verifies against the bundle of its trust domain and passes the [`Authorizer`].
#[derive(Debug)]
pub struct SpiffeClientCertVerifier {
    core: Core,
}

impl SpiffeClientCertVerifier {
    /// A verifier using `bundles` at each handshake and `authorizer` on the client's ID, with
    /// default [`X509VerifyOptions`].
    pub fn new(bundles: Arc<dyn BundleProvider>, authorizer: Authorizer) -> Self {
        Self {
            core: Core::new(bundles, Some(authorizer)),
        }
    }

    /// A verifier that authenticates only: any X.509-SVID that verifies against the bundle of
    /// its own trust domain passes the handshake, whichever trust domain that is. For servers
    /// that authorize each request themselves after the handshake (the broker's policy decides
    /// per call what an identity may do); everyone else wants [`new`](Self::new).
    pub fn authenticate_only(bundles: Arc<dyn BundleProvider>) -> Self {
        Self {
            core: Core::new(bundles, None),
        }
    }

    /// Replaces the X.509-SVID verification options (caps, EKU policy).
    #[must_use]
    pub fn with_options(mut self, options: X509VerifyOptions) -> Self {
        self.core.options = options;
        self
    }

    /// The authorizer applied to client IDs; `None` for [`authenticate_only`](Self::authenticate_only).
    pub fn authorizer(&self) -> Option<&Authorizer> {
        self.core.authorizer.as_ref()
    }
}

impl ClientCertVerifier for SpiffeClientCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.core.verify(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.core.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.core.schemes()
    }
}

// === impl SpiffeServerCertVerifier ===

/// A rustls client's verifier of server certificates: the server must present an X.509-SVID
/// that verifies against the bundle of its trust domain and passes the [`Authorizer`]. The DNS
/// server name is ignored by design (see the module docs).
#[derive(Debug)]
pub struct SpiffeServerCertVerifier {
    core: Core,
}

impl SpiffeServerCertVerifier {
    /// A verifier using `bundles` at each handshake and `authorizer` on the server's ID, with
    /// default [`X509VerifyOptions`].
    pub fn new(bundles: Arc<dyn BundleProvider>, authorizer: Authorizer) -> Self {
        Self {
            core: Core::new(bundles, Some(authorizer)),
        }
    }

    /// Replaces the X.509-SVID verification options (caps, EKU policy).
    #[must_use]
    pub fn with_options(mut self, options: X509VerifyOptions) -> Self {
        self.core.options = options;
        self
    }

    /// The authorizer applied to server IDs (always set: a client must know whom it talks to).
    pub fn authorizer(&self) -> Option<&Authorizer> {
        self.core.authorizer.as_ref()
    }
}

impl ServerCertVerifier for SpiffeServerCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.core.verify(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.core.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.core.schemes()
    }
}
