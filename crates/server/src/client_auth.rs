//! The gRPC listener's client-certificate verifier: any X.509-SVID that verifies against the
//! bundle of its own trust domain is accepted at the TLS layer, whichever trust domain that is;
//! what the identity may do is the policy's decision, made per request. Client certificates
//! are optional (callers without one use a JWT-SVID bearer).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use svid_broker_identity::bundle::BundleProvider;
use svid_broker_identity::x509::{self, X509SvidError};

/// Verifies client X.509-SVIDs of every trust domain the broker has a bundle for.
#[derive(Debug)]
pub struct AnyTrustDomainVerifier {
    bundles: Arc<dyn BundleProvider>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyTrustDomainVerifier {
    /// A verifier reading the current bundles at each handshake.
    pub fn new(bundles: Arc<dyn BundleProvider>) -> Self {
        Self {
            bundles,
            algorithms: rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for AnyTrustDomainVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
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
        let now = UNIX_EPOCH
            .checked_add(Duration::from_secs(now.as_secs()))
            .unwrap_or(UNIX_EPOCH);
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        verify_now(&chain, self.bundles.as_ref(), now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        // The listener speaks TLS 1.3 only; a 1.2 signature here means misconfiguration.
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn verify_now(
    chain: &[CertificateDer<'_>],
    bundles: &dyn BundleProvider,
    now: SystemTime,
) -> Result<(), Error> {
    let set = bundles.bundles();
    x509::verify(chain, &set, now).map(|_| ()).map_err(|e| {
        Error::InvalidCertificate(match e {
            X509SvidError::UnknownIssuer => CertificateError::UnknownIssuer,
            X509SvidError::BadSignature => CertificateError::BadSignature,
            other => CertificateError::Other(OtherError(Arc::new(other))),
        })
    })
}

#[cfg(test)]
mod tests;
