//! A client for the Exchange listener over SPIFFE TLS, for tests, the load generator and tools:
//! the server is authenticated by its X.509-SVID (not its host name), and the client presents
//! its own X.509-SVID or none (then it sends a JWT-SVID bearer per call).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use svid_broker_identity::authorize::Authorizer;
use svid_broker_identity::bundle::BundleProvider;
use svid_broker_identity::tls::SpiffeServerCertVerifier;
use svid_broker_proto::exchange::token_exchange_client::TokenExchangeClient;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::codegen::Service;
use tonic::codegen::http::Uri;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use super::GrpcError;
use super::tls::ALPN_H2;

/// The TLS server name sent in SNI. The SPIFFE verifier ignores it (the [`Authorizer`] is the
/// name check), but rustls needs one.
pub const SERVER_NAME: &str = "svid-broker";

/// A rustls client configuration for the Exchange listener: TLS 1.3 only, aws-lc-rs, ALPN `h2`,
/// the server's X.509-SVID verified against `bundles` and authorized by `server`, and
/// `identity` (chain leaf first, key) as the client certificate when given.
///
/// # Errors
/// [`GrpcError::TlsConfig`] if rustls rejects the configuration or the client key.
pub fn client_tls_config(
    bundles: Arc<dyn BundleProvider>,
    server: Authorizer,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, GrpcError> {
    let builder = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|source| GrpcError::TlsConfig { source })?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(SpiffeServerCertVerifier::new(bundles, server)));
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|source| GrpcError::TlsConfig { source })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Connects an HTTP/2 channel to the Exchange listener at `addr` with `tls` (see
/// [`client_tls_config`]). The channel reconnects on its own, with a fresh handshake each time.
///
/// # Errors
/// [`GrpcError::Connect`] if the first connection (TCP or TLS) fails.
pub async fn connect(addr: SocketAddr, tls: Arc<ClientConfig>) -> Result<Channel, GrpcError> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|source| GrpcError::Connect { addr, source })?;
    endpoint
        .connect_with_connector(SpiffeConnector { addr, tls })
        .await
        .map_err(|source| GrpcError::Connect { addr, source })
}

/// [`connect`], wrapped in the generated Exchange client.
///
/// # Errors
/// As [`connect`].
pub async fn exchange_client(
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
) -> Result<TokenExchangeClient<Channel>, GrpcError> {
    Ok(TokenExchangeClient::new(connect(addr, tls).await?))
}

/// `message` as a request carrying `authorization: Bearer <jwt_svid>`, for callers without a
/// client certificate.
///
/// # Errors
/// [`GrpcError::InvalidBearer`] if the token is not visible ASCII (it is never echoed).
pub fn with_bearer<T>(message: T, jwt_svid: &str) -> Result<tonic::Request<T>, GrpcError> {
    let value = MetadataValue::try_from(format!("Bearer {jwt_svid}"))
        .map_err(|_| GrpcError::InvalidBearer)?;
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// Opens TCP plus TLS to one fixed address, whatever URI tonic asks for.
#[derive(Clone)]
struct SpiffeConnector {
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TokioIo<TlsStream<TcpStream>>>> + Send>>;

impl Service<Uri> for SpiffeConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Connecting {
        let addr = self.addr;
        let connector = TlsConnector::from(Arc::clone(&self.tls));
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(SERVER_NAME)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tls =
                tokio::time::timeout(super::tls::HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "tls handshake timed out")
                    })??;
            Ok(TokioIo::new(tls))
        })
    }
}
