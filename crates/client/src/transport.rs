//! TLS 1.3 to the broker, authenticated by the broker's X.509-SVID (not a host name), and the
//! raw-API helpers tools and tests use to speak `Exchange` directly.

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

/// The TLS server name sent in SNI. The SPIFFE verifier ignores it (the [`Authorizer`] is the
/// name check), but rustls needs one.
pub const SERVER_NAME: &str = "svid-broker";

/// ALPN protocol for gRPC.
const ALPN_H2: &[u8] = b"h2";

/// A rustls client configuration for the broker's Exchange listener: TLS 1.3 only, aws-lc-rs,
/// ALPN `h2`, the server's X.509-SVID verified against `bundles` and authorized by `broker`,
/// and `identity` (chain leaf first, key) as the client certificate when given.
///
/// # Errors
/// rustls' error if it rejects the configuration or the key.
pub fn client_tls_config(
    bundles: Arc<dyn BundleProvider>,
    broker: Authorizer,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(SpiffeServerCertVerifier::new(bundles, broker)));
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Opens an HTTP/2 channel to the Exchange listener at `addr` over TCP plus `tls` (see
/// [`client_tls_config`]). The channel reconnects on its own, with a fresh handshake each time.
/// The caller bounds the time.
///
/// # Errors
/// tonic's error if the first connection (TCP or TLS) fails.
pub async fn connect(
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
) -> Result<Channel, tonic::transport::Error> {
    // The URI is only used for the `:authority` header; the connector ignores it.
    Endpoint::from_static("http://svid-broker")
        .connect_with_connector(SpiffeConnector { addr, tls })
        .await
}

/// [`connect`], wrapped in the generated Exchange client, for tools that speak the raw API (the
/// load generator, tests); programs that just want a credential use [`crate::BrokerClient`].
///
/// # Errors
/// As [`connect`].
pub async fn exchange_client(
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
) -> Result<TokenExchangeClient<Channel>, tonic::transport::Error> {
    Ok(TokenExchangeClient::new(connect(addr, tls).await?))
}

/// A bearer token that cannot travel as gRPC metadata (not visible ASCII); it is never echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the bearer token is not valid header text")]
pub struct InvalidBearer;

/// `message` as a request carrying `authorization: Bearer <jwt_svid>`, for callers without a
/// client certificate. The header is marked sensitive so HTTP/2 header compression never
/// indexes it.
///
/// # Errors
/// [`InvalidBearer`] if the token is not visible ASCII.
pub fn with_bearer<T>(message: T, jwt_svid: &str) -> Result<tonic::Request<T>, InvalidBearer> {
    let mut value =
        MetadataValue::try_from(format!("Bearer {jwt_svid}")).map_err(|_| InvalidBearer)?;
    value.set_sensitive(true);
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
            let tls = connector.connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

/// The first rustls error in `error`'s cause chain: a handshake failure, which retrying does
/// not fix.
pub(crate) fn find_tls_error(error: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        if let Some(tls) = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.clone());
        }
        next = e.source();
    }
    None
}
