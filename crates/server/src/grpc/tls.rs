//! TLS for the Exchange listener: a TLS 1.3-only rustls server configuration whose certificate
//! is always the broker's current X.509-SVID, optional SPIFFE client authentication, and the
//! accept loop that hands verified connections to tonic.
//!
//! # Decisions
//! - **Own `Connected` type instead of tonic's `tls-connect-info`.** [`TlsConn`] carries the
//!   peer chain (plus the remote address and the connection's activity record) in
//!   [`PeerInfo`], which tonic puts into every request's extensions.
//! - **TLS 1.3 only.** The workspace compiles rustls with TLS 1.2 for the realm's HTTPS
//!   listener; this listener selects TLS 1.3 alone, so a 1.2-only client gets a
//!   `protocol_version` alert.
//! - **No session resumption.** A resumed TLS 1.3 session restores the peer certificates from the
//!   first handshake without running the verifier again, so a client whose trust domain was
//!   removed from the bundles could keep resuming. Exchange clients keep long-lived HTTP/2
//!   connections, so a full handshake per connection costs little.
//! - **Handshakes never block `accept`, and a full listener still accepts.** Every accepted
//!   connection goes through the listener's [`Governor`]: past its
//!   caps (open connections, per source IP open connections and pending handshakes) the
//!   connection is closed at once, so an attacker cannot park legitimate clients in the
//!   kernel backlog. Each admitted handshake runs in its own task under
//!   [`HANDSHAKE_TIMEOUT`].
//! - **Idle connections are closed.** The TCP stream under TLS is a
//!   [`GovernedIo`]: the TLS handshake, the HTTP/2 preface and the
//!   first request must arrive within the first-request deadline, and a connection with no
//!   call in flight for the idle timeout is dropped. Calls are marked by
//!   [`ActivityLayer`](crate::listen::ActivityLayer) (see `super::serve`); keepalive PINGs
//!   do not count. Every connection is also closed after [`super::MAX_CONNECTION_AGE`]
//!   (which re-runs client verification on reconnect).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::GrpcError;
#[cfg(test)]
use crate::listen::ConnectionLimits;
use crate::listen::{ConnActivity, GovernedIo, Governor, HasActivity};

/// Longest a client may take from TCP accept to a finished TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most TLS handshakes in progress at once; further connections are closed at accept.
pub const MAX_PENDING_HANDSHAKES: usize = 256;
/// Default most open connections (`server.max_connections`; see the module docs).
pub const MAX_CONNECTIONS: usize = 1024;
/// The only ALPN protocol offered: gRPC runs over HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";

/// The broker's current server certificate and key. Whoever owns the SVID (the Workload API
/// watcher, or a file loader) stores a new [`CertifiedKey`] here on rotation; the next handshake
/// serves it, with no restart.
pub type ServerSvid = ArcSwap<CertifiedKey>;

/// The one crypto stack of the workspace.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the [`CertifiedKey`] for an X.509-SVID: `chain` leaf first, `key` its private key.
///
/// # Errors
/// [`GrpcError::ServerKey`] when the key cannot be loaded or does not match the leaf.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, GrpcError> {
    if chain.is_empty() {
        return Err(GrpcError::EmptyServerChain);
    }
    CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(|source| GrpcError::ServerKey { source })
}

/// The rustls server configuration of the Exchange listener: TLS 1.3 only, aws-lc-rs, ALPN
/// `h2`, the certificate read from `svid` at every handshake, and `verifier` run on client
/// certificates that are presented (client authentication is optional: see
/// [`OptionalClientAuth`]). Session resumption is off (see the module docs).
///
/// # Errors
/// [`GrpcError::TlsConfig`] if rustls rejects the protocol selection (it does not with the
/// aws-lc-rs provider; the error is kept rather than a panic).
pub fn server_tls_config(
    svid: Arc<ServerSvid>,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<Arc<ServerConfig>, GrpcError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| GrpcError::TlsConfig { source })?
        .with_client_cert_verifier(Arc::new(OptionalClientAuth::new(verifier)))
        .with_cert_resolver(Arc::new(SvidCertResolver::new(svid)));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

// === impl SvidCertResolver ===

/// Serves whatever [`CertifiedKey`] the shared [`ServerSvid`] holds at handshake time.
pub struct SvidCertResolver {
    current: Arc<ServerSvid>,
}

impl SvidCertResolver {
    /// A resolver reading `current` at every handshake.
    pub fn new(current: Arc<ServerSvid>) -> Self {
        Self { current }
    }
}

impl fmt::Debug for SvidCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The chain length only: the key must never be printed, and rustls' own `Debug` of a
        // `CertifiedKey` is more than a log line needs.
        f.debug_struct("SvidCertResolver")
            .field("chain_len", &self.current.load().cert.len())
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SvidCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

// === impl OptionalClientAuth ===

/// Wraps a client-certificate verifier (normally
/// [`SpiffeClientCertVerifier`](svid_broker_identity::tls::SpiffeClientCertVerifier)) so a
/// client certificate is requested but not required. A client that presents one gets the full
/// verification of the wrapped verifier, and a failure aborts the handshake; a client that
/// presents none completes the handshake and must then authenticate with a JWT-SVID bearer.
#[derive(Debug)]
pub struct OptionalClientAuth {
    inner: Arc<dyn ClientCertVerifier>,
}

impl OptionalClientAuth {
    /// Makes `inner` optional.
    pub fn new(inner: Arc<dyn ClientCertVerifier>) -> Self {
        Self { inner }
    }
}

impl ClientCertVerifier for OptionalClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}

// === impl TlsConn ===

/// What the Exchange handler learns about the connection: set once, after the handshake.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    remote_addr: Option<SocketAddr>,
    chain: Option<Arc<[CertificateDer<'static>]>>,
    activity: Option<Arc<ConnActivity>>,
}

impl PeerInfo {
    /// The client's address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The client's certificate chain, leaf first, exactly as the handshake's verifier accepted
    /// it; `None` when the client presented no certificate.
    pub fn peer_chain(&self) -> Option<&[CertificateDer<'static>]> {
        self.chain.as_deref()
    }
}

impl HasActivity for PeerInfo {
    fn activity(&self) -> Option<&Arc<ConnActivity>> {
        self.activity.as_ref()
    }
}

/// A server-side TLS connection that finished its handshake, with the [`PeerInfo`] tonic puts
/// into every request's extensions. Its governor admission is released when it is dropped.
pub struct TlsConn {
    stream: TlsStream<GovernedIo<TcpStream>>,
    info: PeerInfo,
}

impl TlsConn {
    fn new(mut stream: TlsStream<GovernedIo<TcpStream>>, peer: SocketAddr) -> Self {
        stream.get_mut().0.handshake_done();
        let (io, session) = stream.get_ref();
        let info = PeerInfo {
            remote_addr: Some(peer),
            chain: session
                .peer_certificates()
                .filter(|chain| !chain.is_empty())
                .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect()),
            activity: Some(Arc::clone(io.activity())),
        };
        Self { stream, info }
    }
}

impl fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConn")
            .field("remote_addr", &self.info.remote_addr)
            .field("client_cert", &self.info.chain.is_some())
            .finish_non_exhaustive()
    }
}

impl Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

// `TlsStream<TcpStream>` is `Unpin`, so plain delegation needs no pin projection.
impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

// === accept loop ===

/// Connections that finished a TLS handshake, in the shape tonic's
/// `serve_with_incoming_shutdown` takes, under the default [`ConnectionLimits`]. Dropping the
/// stream (tonic does on shutdown) stops the accept loop and closes `listener`.
#[cfg(test)]
pub(crate) fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> ReceiverStream<Result<TlsConn, io::Error>> {
    incoming_governed(
        listener,
        config,
        HANDSHAKE_TIMEOUT,
        Governor::new(ConnectionLimits::default()),
    )
}

/// [`incoming`] with another handshake timeout and connection cap (tests use small ones).
#[cfg(test)]
pub(crate) fn incoming_with(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
    max_connections: usize,
) -> ReceiverStream<Result<TlsConn, io::Error>> {
    let limits = ConnectionLimits {
        max_connections,
        max_connections_per_ip: max_connections.min(crate::listen::DEFAULT_MAX_CONNECTIONS_PER_IP),
        ..ConnectionLimits::default()
    };
    incoming_governed(listener, config, handshake_timeout, Governor::new(limits))
}

/// [`incoming`] under `governor`.
pub(crate) fn incoming_governed(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
    governor: Arc<Governor>,
) -> ReceiverStream<Result<TlsConn, io::Error>> {
    let (tx, rx) = mpsc::channel(MAX_PENDING_HANDSHAKES);
    tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(config),
        handshake_timeout,
        governor,
        tx,
    ));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    governor: Arc<Governor>,
    tx: mpsc::Sender<Result<TlsConn, io::Error>>,
) {
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Per-connection failures (ECONNABORTED) and resource exhaustion (EMFILE) both
                // land here; a short pause keeps the latter from spinning.
                tracing::warn!(%error, "grpc: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admission = match governor.admit(peer.ip()) {
            Ok(admission) => admission,
            Err(refusal) => {
                // Closed at once (see the module docs). Debug level: a flood must not become a
                // log flood; the governor counts refusals.
                tracing::debug!(%peer, %refusal, "grpc: connection refused");
                drop(tcp);
                continue;
            }
        };
        // Exchange responses are small and latency-bound.
        let _ = tcp.set_nodelay(true);
        let io = GovernedIo::new(tcp, admission);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(handshake_timeout, acceptor.accept(io)).await {
                Ok(Ok(stream)) => {
                    // A send error means the server stopped; dropping the connection closes it.
                    let _ = tx.send(Ok(TlsConn::new(stream, peer))).await;
                }
                Ok(Err(error)) => {
                    tracing::info!(%peer, error = %svid_broker_identity::report::ErrorChain::new(&error), "grpc: tls handshake failed");
                }
                Err(_) => {
                    tracing::info!(%peer, timeout = ?handshake_timeout, "grpc: tls handshake timed out");
                }
            }
        });
    }
}
