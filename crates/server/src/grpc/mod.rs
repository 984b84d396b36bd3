//! The gRPC `svid_broker.v1.TokenExchange` listener: TLS 1.3 with optional SPIFFE client
//! authentication, the `Exchange` service over the engine, and the standard gRPC health service.
//!
//! # Wiring (for `BrokerServer`)
//! ```text
//! pub fn certified_key(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>)
//!     -> Result<Arc<rustls::sign::CertifiedKey>, GrpcError>;
//! pub type ServerSvid = arc_swap::ArcSwap<rustls::sign::CertifiedKey>;
//! pub fn server_tls_config(svid: Arc<ServerSvid>, verifier: Arc<dyn ClientCertVerifier>)
//!     -> Result<Arc<rustls::ServerConfig>, GrpcError>;
//! pub async fn serve(broker: Arc<Broker>, clock: Arc<dyn Clock>,
//!     listener: tokio::net::TcpListener, tls: Arc<rustls::ServerConfig>,
//!     shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), GrpcError>;
//! ```
//! 1. Turn the broker's own X.509-SVID (`OwnX509Svid::chain()` and
//!    `private_key().to_rustls()`) into a key with [`certified_key`], and keep it in an
//!    `Arc<ServerSvid>`; on every SVID update, `store` the new one (no restart needed: the
//!    resolver reads it at each handshake).
//! 2. Build the TLS configuration once with [`server_tls_config`], passing the SPIFFE client
//!    verifier ([`Broker::tls_client_verifier`], or a
//!    [`SpiffeClientCertVerifier`](svid_broker_identity::tls::SpiffeClientCertVerifier)); it is
//!    wrapped in [`OptionalClientAuth`], so a certificate is never required, whatever the
//!    verifier says. A client certificate that is presented must pass it; each call then
//!    verifies the chain again with [`Authenticator::authenticate_x509`](crate::authn::Authenticator::authenticate_x509) at the call's time.
//! 3. Bind the listener and run [`serve`] (with the same clock the realm uses, so an injected
//!    clock governs both listeners) until `shutdown` resolves; it then stops accepting,
//!    marks the service `NOT_SERVING` and drains in-flight calls before returning.
//!
//! Clients: `svid-broker-client` (`BrokerClient` for programs, `transport::{client_tls_config,
//! exchange_client, with_bearer}` for tools and tests that speak the raw API).
//!
//! Caps: [`MAX_MESSAGE_SIZE`], [`MAX_CONCURRENT_STREAMS`], [`MAX_HEADER_LIST_SIZE`],
//! [`tls::HANDSHAKE_TIMEOUT`], [`tls::MAX_PENDING_HANDSHAKES`], the connection limits of
//! [`crate::listen`],
//! [`service::MAX_AUDIENCE_LEN`], [`service::MAX_AUTHORIZATION_LEN`], and the scope caps of
//! `svid_broker_policy::scope`.

pub mod service;
pub mod tls;

#[cfg(test)]
mod governor_tests;
#[cfg(test)]
mod satoken_tests;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use svid_broker_identity::clock::Clock;
use svid_broker_proto::exchange::token_exchange_server::{self, TokenExchangeServer};
use tokio::net::TcpListener;

pub use service::{ExchangeService, RequestError};
/// The generated messages, client and server of `svid_broker.v1` (re-exported so embedders need
/// no direct dependency on the proto crate).
pub use svid_broker_proto::exchange as proto;
pub use tls::{
    OptionalClientAuth, PeerInfo, ServerSvid, SvidCertResolver, TlsConn, certified_key,
    server_tls_config,
};

use crate::engine::Broker;
use crate::listen::{ActivityLayer, Governor};

/// Largest request or response message, in bytes (an Exchange message is well under 8 KiB).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// Most concurrent HTTP/2 streams (in-flight calls) per connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;
/// Largest HTTP/2 header list a client may send, in bytes (it carries the bearer JWT-SVID).
pub const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
/// Longest one call may run before the server cancels it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Every connection is closed (gracefully) after this long: idle connections cannot hold one of
/// [`tls::MAX_CONNECTIONS`] forever, and a reconnecting client is verified again.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(10 * 60);
/// In-flight calls on an aged-out connection get this long to finish.
pub const MAX_CONNECTION_AGE_GRACE: Duration = Duration::from_secs(30);
/// HTTP/2 keepalive: a ping after this much silence...
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// ...and the connection is dropped if the peer does not answer within this.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The gRPC service name the health service reports on (`svid_broker.v1.TokenExchange`).
pub const SERVICE_NAME: &str = token_exchange_server::SERVICE_NAME;

/// Failures setting up or running the gRPC listener.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrpcError {
    /// rustls rejected the TLS configuration.
    #[error("invalid tls configuration")]
    TlsConfig {
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The server certificate chain is empty.
    #[error("the server certificate chain is empty")]
    EmptyServerChain,
    /// The server's private key could not be loaded or does not match its certificate.
    #[error("the server private key is unusable or does not match the certificate")]
    ServerKey {
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The HTTP/2 server failed.
    #[error("the grpc server failed")]
    Serve {
        /// tonic's reason.
        #[source]
        source: tonic::transport::Error,
    },
}

/// Serves `Exchange` and `grpc.health.v1.Health` on `listener` with `tls` until `shutdown`
/// resolves, then drains in-flight calls; connections under the default
/// [`ConnectionLimits`](crate::listen::ConnectionLimits).
///
/// # Errors
/// [`GrpcError::Serve`] if the HTTP/2 server fails.
pub async fn serve(
    broker: Arc<Broker>,
    clock: Arc<dyn Clock>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GrpcError> {
    let governor = Governor::new(crate::listen::ConnectionLimits::default());
    serve_governed(broker, clock, listener, tls, governor, shutdown).await
}

/// [`serve`] with every connection under `governor` (the `[server]` connection limits).
///
/// # Errors
/// [`GrpcError::Serve`] if the HTTP/2 server fails.
pub async fn serve_governed(
    broker: Arc<Broker>,
    clock: Arc<dyn Clock>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    governor: Arc<Governor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GrpcError> {
    let backends = Arc::new(crate::backends::Backends::none());
    serve_with_backends(broker, clock, backends, listener, tls, governor, shutdown).await
}

/// [`serve_governed`] taking backend grants (Harbor registries) to `backends`.
///
/// # Errors
/// [`GrpcError::Serve`] if the HTTP/2 server fails.
pub async fn serve_with_backends(
    broker: Arc<Broker>,
    clock: Arc<dyn Clock>,
    backends: Arc<crate::backends::Backends>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    governor: Arc<Governor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GrpcError> {
    let exchange =
        TokenExchangeServer::new(ExchangeService::with_backends(broker, clock, backends))
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE_NAME, tonic_health::ServingStatus::Serving)
        .await;
    let shutdown = async move {
        shutdown.await;
        // Load balancers that watch health stop routing here while in-flight calls drain.
        reporter
            .set_service_status(SERVICE_NAME, tonic_health::ServingStatus::NotServing)
            .await;
        reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    };
    let incoming = tls::incoming_governed(listener, tls, tls::HANDSHAKE_TIMEOUT, governor);
    tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .http2_max_header_list_size(MAX_HEADER_LIST_SIZE)
        .timeout(REQUEST_TIMEOUT)
        .max_connection_age(MAX_CONNECTION_AGE)
        .max_connection_age_grace(MAX_CONNECTION_AGE_GRACE)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        // Marks each call in flight on its connection, so the governor's idle timeout only
        // closes connections with no call running.
        .layer(ActivityLayer::<PeerInfo>::new())
        .add_service(exchange)
        .add_service(health)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|source| GrpcError::Serve { source })
}
