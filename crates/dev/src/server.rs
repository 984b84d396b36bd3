//! A SPIFFE Workload API server (SPIFFE Workload API and Workload Endpoint specs) on a Unix
//! socket, serving the material of a [`DevTrustDomain`].

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{Stream, StreamExt as _, TryStreamExt as _};
use svid_broker_identity::id::SpiffeId;
use svid_broker_identity::jwt::JwtSvidValidator;
use svid_broker_identity::report::ErrorChain;
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_proto::workload::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use svid_broker_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
    ValidateJwtsvidRequest, ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse,
    X509svid, X509svidRequest, X509svidResponse,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{UnixListenerStream, WatchStream};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::ca::{DevCaError, DevTrustDomain};

mod authority;

/// The gRPC metadata key every Workload API request must carry, with the value `"true"`
/// (Workload Endpoint §6).
pub const SECURITY_HEADER: &str = "workload.spiffe.io";
/// The socket file name used when [`WorkloadApiServer::start`] is given a directory.
pub const DEFAULT_SOCKET_NAME: &str = "api.sock";
/// Largest request message accepted. Workload API requests are a handful of short strings; a
/// JWT-SVID to validate is the largest and stays far below this.
pub const MAX_REQUEST_MESSAGE_BYTES: usize = 64 * 1024;
/// Most concurrent RPCs (HTTP/2 streams) per client connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;
/// How long [`WorkloadApiHandle::shutdown`] waits for connections to drain before it aborts
/// the server task.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The trust domain has no configured identity, so there is nothing to serve.
    #[error("trust domain {trust_domain} has no workload identities to serve")]
    NoIdentities {
        /// The trust domain's name (`example.org`), not a SPIFFE ID.
        trust_domain: String,
    },
    /// Something accepts connections on the socket path already.
    #[error("socket {path} is in use by a running server")]
    SocketInUse {
        /// The socket's path: the one given, or [`DEFAULT_SOCKET_NAME`] in the given directory.
        path: PathBuf,
    },
    /// The path exists and is not a socket; it is never removed.
    #[error("{path} exists and is not a socket")]
    NotASocket {
        /// The path as resolved (the one given, or [`DEFAULT_SOCKET_NAME`] in the given directory).
        path: PathBuf,
    },
    /// Checking whether an existing socket is stale failed.
    #[error("cannot check existing socket {path}")]
    Probe {
        /// The socket's path: the one given, or [`DEFAULT_SOCKET_NAME`] in the given directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The stale socket could not be removed.
    #[error("cannot remove stale socket {path}")]
    RemoveStale {
        /// The socket's path: the one given, or [`DEFAULT_SOCKET_NAME`] in the given directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Binding the listener failed.
    #[error("cannot bind socket {path}")]
    Bind {
        /// The path being bound: the socket's path, or the temporary name beside it
        /// (`<name>.<pid>-<n>.tmp`).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Restricting the socket to mode 0600, or moving it into place, failed.
    #[error("cannot set up socket file {path}")]
    SocketFile {
        /// The socket's path: the one given, or [`DEFAULT_SOCKET_NAME`] in the given directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The gRPC server stopped with an error.
    #[error("workload api server failed")]
    Serve(#[source] tonic::transport::Error),
    /// The server did not drain within [`SHUTDOWN_GRACE`] and was aborted.
    #[error("workload api server did not stop within {grace:?}")]
    ShutdownTimeout {
        /// Always [`SHUTDOWN_GRACE`].
        grace: Duration,
    },
    /// The server task panicked or was cancelled.
    #[error("workload api server task ended abnormally")]
    Task(#[source] tokio::task::JoinError),
}

// === impl WorkloadApiServer ===

/// Starts SPIFFE Workload API servers for a [`DevTrustDomain`].
///
/// Served RPCs: `FetchX509SVID`, `FetchX509Bundles`, `FetchJWTSVID`, `FetchJWTBundles`,
/// `ValidateJWTSVID`. Every request must carry [`SECURITY_HEADER`]`: true`.
#[derive(Debug)]
pub struct WorkloadApiServer {
    trust_domain: Arc<DevTrustDomain>,
    auto_rotate: Option<Duration>,
}

impl WorkloadApiServer {
    /// Configures a server. By default it rotates the SVIDs at half their lifetime, so a
    /// long-running dev server never hands out expired material.
    pub fn builder(trust_domain: Arc<DevTrustDomain>) -> Self {
        let auto_rotate = Some(trust_domain.x509_svid_ttl() / 2).filter(|d| !d.is_zero());
        Self {
            trust_domain,
            auto_rotate,
        }
    }

    /// Rotates every `period` (`None` turns automatic rotation off; [`WorkloadApiHandle::rotate`]
    /// still works).
    #[must_use]
    pub fn auto_rotate(mut self, period: Option<Duration>) -> Self {
        self.auto_rotate = period.filter(|d| !d.is_zero());
        self
    }

    /// Starts a server with the default settings; see [`serve`](Self::serve).
    ///
    /// # Errors
    /// See [`serve`](Self::serve).
    pub async fn start(
        dir_or_socket_path: impl AsRef<Path>,
        trust_domain: Arc<DevTrustDomain>,
    ) -> Result<WorkloadApiHandle, ServerError> {
        Self::builder(trust_domain).serve(dir_or_socket_path).await
    }

    /// Binds the socket and starts serving in a background task.
    ///
    /// `dir_or_socket_path` is either a directory (the socket is [`DEFAULT_SOCKET_NAME`] inside
    /// it) or the socket path itself. The socket file gets mode 0600 before it appears under its
    /// final name. An existing socket is replaced only if nothing accepts connections on it.
    ///
    /// When this returns `Ok`, the socket is bound and listening: connections succeed from then
    /// on, so a caller may report readiness right away.
    ///
    /// # Errors
    /// [`ServerError`] naming the step that failed.
    pub async fn serve(
        self,
        dir_or_socket_path: impl AsRef<Path>,
    ) -> Result<WorkloadApiHandle, ServerError> {
        let td = self.trust_domain;
        if td.identities().is_empty() {
            return Err(ServerError::NoIdentities {
                trust_domain: td.trust_domain().to_string(),
            });
        }
        let path = resolve_socket_path(dir_or_socket_path.as_ref());
        remove_stale_socket(&path).await?;
        let (listener, socket_id) = bind_private(&path)?;

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let service = WorkloadApiService {
            td: Arc::clone(&td),
            shutdown: shutdown_rx.clone(),
        };
        let grpc = SpiffeWorkloadApiServer::new(service)
            .max_decoding_message_size(MAX_REQUEST_MESSAGE_BYTES);
        let grpc = InterceptedService::new(grpc, check_security_header);
        let mut server_shutdown = shutdown_rx.clone();
        // grpc-core and grpc-java send an `:authority` h2 refuses; the front fixes it up before
        // h2 reads the connection (see `authority.rs`).
        let incoming = UnixListenerStream::new(listener).map_ok(authority::AuthorityFront::new);
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
                // The front accepts and emits header frames up to this size; announcing it
                // keeps the client, the front and h2 on one limit.
                .max_frame_size(Some(authority::MAX_FRAME_SIZE))
                .add_service(grpc)
                .serve_with_incoming_shutdown(incoming, async move {
                    // A dropped sender also means "stop".
                    let _ = server_shutdown.wait_for(|stop| *stop).await;
                }),
        );
        let rotator = self
            .auto_rotate
            .map(|period| tokio::spawn(rotate_every(Arc::clone(&td), period, shutdown_rx)));
        tracing::info!(socket = %path.display(), trust_domain = %td.trust_domain(), "workload api listening");
        Ok(WorkloadApiHandle {
            socket_path: path,
            socket_id,
            td,
            shutdown_tx,
            task: Some(task),
            rotator,
        })
    }
}

async fn rotate_every(
    td: Arc<DevTrustDomain>,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {
                if let Err(error) = td.rotate() {
                    tracing::warn!(error = %ErrorChain::new(&error), "automatic rotation failed; serving the previous svids");
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

fn resolve_socket_path(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.join(DEFAULT_SOCKET_NAME)
    } else {
        p.to_owned()
    }
}

async fn remove_stale_socket(path: &Path) -> Result<(), ServerError> {
    let meta = match tokio::fs::symlink_metadata(path).await {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ServerError::Probe {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotASocket {
            path: path.to_owned(),
        });
    }
    match UnixStream::connect(path).await {
        Ok(_) => Err(ServerError::SocketInUse {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "removing stale socket");
            tokio::fs::remove_file(path)
                .await
                .map_err(|source| ServerError::RemoveStale {
                    path: path.to_owned(),
                    source,
                })
        }
        Err(source) => Err(ServerError::Probe {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Identifies the socket file we created, so cleanup never removes someone else's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SocketId {
    dev: u64,
    ino: u64,
}

/// Binds under a temporary name, restricts it to 0600, then renames it into place: the socket
/// is never reachable under its public name with looser permissions.
fn bind_private(path: &Path) -> Result<(UnixListener, SocketId), ServerError> {
    static NEXT_TMP: AtomicU64 = AtomicU64::new(0);
    let file_name = path.file_name().ok_or_else(|| ServerError::Bind {
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "socket path has no file name"),
    })?;
    let mut tmp_name = file_name.to_owned();
    tmp_name.push(format!(
        ".{}-{}.tmp",
        std::process::id(),
        NEXT_TMP.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = path.with_file_name(tmp_name);
    // A leftover from a crashed run with the same pid is ours to replace.
    let _ = std::fs::remove_file(&tmp);
    let (listener, bound) = match UnixListener::bind(&tmp) {
        Ok(listener) => (listener, tmp),
        // The longer temporary name can exceed sun_path (about 108 bytes) when the final one
        // does not; then bind in place and narrow the mode right away. The brief window only
        // matters under a umask that lets others write, which 0600 then closes.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            let listener = UnixListener::bind(path).map_err(|source| ServerError::Bind {
                path: path.to_owned(),
                source,
            })?;
            (listener, path.to_owned())
        }
        Err(source) => return Err(ServerError::Bind { path: tmp, source }),
    };
    let setup = || -> io::Result<SocketId> {
        std::fs::set_permissions(&bound, std::fs::Permissions::from_mode(0o600))?;
        if bound != path {
            std::fs::rename(&bound, path)?;
        }
        let meta = std::fs::symlink_metadata(path)?;
        Ok(SocketId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    };
    match setup() {
        Ok(id) => Ok((listener, id)),
        Err(source) => {
            let _ = std::fs::remove_file(&bound);
            Err(ServerError::SocketFile {
                path: path.to_owned(),
                source,
            })
        }
    }
}

fn remove_own_socket(path: &Path, id: SocketId) {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.dev() == id.dev
        && meta.ino() == id.ino
        && let Err(error) = std::fs::remove_file(path)
    {
        tracing::warn!(socket = %path.display(), %error, "cannot remove socket");
    }
}

// === impl WorkloadApiHandle ===

/// A running Workload API server. Dropping it stops the server in the background; call
/// [`shutdown`](Self::shutdown) to wait for it and remove the socket file.
pub struct WorkloadApiHandle {
    socket_path: PathBuf,
    socket_id: SocketId,
    td: Arc<DevTrustDomain>,
    shutdown_tx: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    rotator: Option<JoinHandle<()>>,
}

impl fmt::Debug for WorkloadApiHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadApiHandle")
            .field("socket_path", &self.socket_path)
            .field("trust_domain", self.td.trust_domain())
            .finish_non_exhaustive()
    }
}

impl WorkloadApiHandle {
    /// The socket's path as resolved: the one given, or [`DEFAULT_SOCKET_NAME`] in the given
    /// directory (relative if given so; see [`endpoint`](Self::endpoint)).
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The endpoint address for clients and `SPIFFE_ENDPOINT_SOCKET`: `unix://<absolute path>`
    /// (the path is made absolute against the current directory if needed).
    pub fn endpoint(&self) -> String {
        let abs =
            std::path::absolute(&self.socket_path).unwrap_or_else(|_| self.socket_path.clone());
        format!("unix://{}", abs.display())
    }

    /// The trust domain being served, shared: a rotation made on it directly reaches this
    /// server's streams too.
    pub fn trust_domain(&self) -> &Arc<DevTrustDomain> {
        &self.td
    }

    /// Rotates the trust domain; every open stream receives the new material.
    ///
    /// # Errors
    /// See [`DevTrustDomain::rotate`].
    pub fn rotate(&self) -> Result<u64, DevCaError> {
        self.td.rotate()
    }

    /// Ends all streams, stops accepting connections, waits up to [`SHUTDOWN_GRACE`] for the
    /// server to drain and removes the socket file.
    ///
    /// # Errors
    /// [`ServerError::Serve`], [`ServerError::ShutdownTimeout`] or [`ServerError::Task`]; the
    /// socket file is removed in every case.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        self.shutdown_tx.send_replace(true);
        let result = match self.task.take() {
            Some(mut task) => match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(e))) => Err(ServerError::Serve(e)),
                Ok(Err(e)) => Err(ServerError::Task(e)),
                Err(_) => {
                    task.abort();
                    Err(ServerError::ShutdownTimeout {
                        grace: SHUTDOWN_GRACE,
                    })
                }
            },
            None => Ok(()),
        };
        if let Some(rotator) = self.rotator.take() {
            rotator.abort();
        }
        remove_own_socket(&self.socket_path, self.socket_id);
        tracing::info!(socket = %self.socket_path.display(), "workload api stopped");
        result
    }
}

impl Drop for WorkloadApiHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.shutdown_tx.send_replace(true);
            if let Some(rotator) = self.rotator.take() {
                rotator.abort();
            }
            remove_own_socket(&self.socket_path, self.socket_id);
        }
    }
}

// === impl WorkloadApiService ===

fn check_security_header(request: Request<()>) -> Result<Request<()>, Status> {
    let mut values = request.metadata().get_all(SECURITY_HEADER).iter();
    match (values.next(), values.next()) {
        (Some(value), None) if value.as_bytes() == b"true" => Ok(request),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

struct WorkloadApiService {
    td: Arc<DevTrustDomain>,
    shutdown: watch::Receiver<bool>,
}

impl WorkloadApiService {
    /// A stream that sends `build()` now and after every rotation, and ends on shutdown.
    fn updates<T, F>(&self, build: F) -> ResponseStream<T>
    where
        T: Send + 'static,
        F: Fn(&DevTrustDomain) -> Result<T, Status> + Send + 'static,
    {
        let td = Arc::clone(&self.td);
        let mut shutdown = self.shutdown.clone();
        let stream = WatchStream::new(td.subscribe())
            .map(move |_generation| build(&td))
            .take_until(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            });
        Box::pin(stream)
    }
}

fn td_key(td: &DevTrustDomain) -> String {
    td.trust_domain().id_str().to_owned()
}

fn x509_svid_response(td: &DevTrustDomain) -> Result<X509svidResponse, Status> {
    let bundle = td.x509_bundle_der();
    let svids: Vec<X509svid> = td
        .x509_svids()
        .iter()
        .map(|svid| X509svid {
            spiffe_id: svid.spiffe_id().to_string(),
            x509_svid: svid.chain_der(),
            x509_svid_key: svid.private_key().pkcs8_der().to_vec(),
            bundle: bundle.clone(),
            hint: String::new(),
        })
        .collect();
    if svids.is_empty() {
        return Err(Status::permission_denied("no identity issued"));
    }
    Ok(X509svidResponse {
        svids,
        ..Default::default()
    })
}

fn x509_bundles_response(td: &DevTrustDomain) -> Result<X509BundlesResponse, Status> {
    Ok(X509BundlesResponse {
        bundles: HashMap::from([(td_key(td), td.x509_bundle_der())]),
        ..Default::default()
    })
}

fn jwt_bundles_response(td: &DevTrustDomain) -> Result<JwtBundlesResponse, Status> {
    Ok(JwtBundlesResponse {
        bundles: HashMap::from([(td_key(td), td.jwt_bundle_jwks_json())]),
    })
}

fn ca_error_status(error: &DevCaError) -> Status {
    match error {
        DevCaError::NoAudience
        | DevCaError::EmptyAudience { .. }
        | DevCaError::TooManyAudiences { .. }
        | DevCaError::AudienceTooLong { .. } => Status::invalid_argument(error.to_string()),
        // Every other failure is the dev CA's own, not the caller's; spelled out so a new
        // variant must be placed on one side or the other.
        DevCaError::ForeignTrustDomain { .. }
        | DevCaError::MissingPath { .. }
        | DevCaError::DuplicateIdentity { .. }
        | DevCaError::TooManyIdentities { .. }
        | DevCaError::ZeroTtl { .. }
        | DevCaError::TimeOutOfRange { .. }
        | DevCaError::KeyGeneration
        | DevCaError::JwtSigning
        | DevCaError::Certificate(_) => {
            tracing::error!(error = %ErrorChain::new(error), "issuing failed");
            Status::internal("issuing failed")
        }
    }
}

/// Converts a JSON value into a protobuf `Value`. The input comes from a validated token whose
/// claims serde_json already parsed (with its nesting limit), so the recursion is bounded.
fn json_to_prost(value: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    use serde_json::Value as J;
    let kind = match value {
        J::Null => Kind::NullValue(prost_types::NullValue::NullValue.into()),
        J::Bool(b) => Kind::BoolValue(b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        J::String(s) => Kind::StringValue(s),
        J::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(json_to_prost).collect(),
        }),
        J::Object(map) => Kind::StructValue(prost_types::Struct {
            fields: map
                .into_iter()
                .map(|(k, v)| (k, json_to_prost(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApiService {
    type FetchX509SVIDStream = ResponseStream<X509svidResponse>;
    type FetchX509BundlesStream = ResponseStream<X509BundlesResponse>;
    type FetchJWTBundlesStream = ResponseStream<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        _request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        tracing::debug!("FetchX509SVID");
        Ok(Response::new(self.updates(x509_svid_response)))
    }

    async fn fetch_x509_bundles(
        &self,
        _request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        tracing::debug!("FetchX509Bundles");
        Ok(Response::new(self.updates(x509_bundles_response)))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        let request = request.into_inner();
        if request.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        let ids: Vec<SpiffeId> = if request.spiffe_id.is_empty() {
            self.td.identities().to_vec()
        } else {
            let id = SpiffeId::parse(&request.spiffe_id)
                .map_err(|e| Status::invalid_argument(format!("invalid spiffe_id: {e}")))?;
            if !self.td.identities().contains(&id) {
                return Err(Status::permission_denied("no identity issued"));
            }
            vec![id]
        };
        tracing::debug!(count = ids.len(), "FetchJWTSVID");
        let svids = ids
            .iter()
            .map(|id| {
                self.td
                    .issue_jwt_svid(id, &request.audience)
                    .map(|jwt| Jwtsvid {
                        spiffe_id: id.to_string(),
                        svid: jwt.token().expose_secret().to_owned(),
                        hint: String::new(),
                    })
                    .map_err(|e| ca_error_status(&e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(JwtsvidResponse { svids }))
    }

    async fn fetch_jwt_bundles(
        &self,
        _request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        tracing::debug!("FetchJWTBundles");
        Ok(Response::new(self.updates(jwt_bundles_response)))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        let request = request.into_inner();
        if request.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if request.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        let validator = JwtSvidValidator::new([request.audience])
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let bundles = self.td.bundle_set().map_err(|error| {
            tracing::error!(error = %ErrorChain::new(&error), "dev bundle rejected by the identity crate");
            Status::internal("bundle unavailable")
        })?;
        let claims = validator
            .validate(&request.svid, &bundles, self.td.clock().now())
            .map_err(|e| {
                Status::invalid_argument(format!("invalid jwt-svid: {}", ErrorChain::new(&e)))
            })?;
        let fields = claims.claims_map().map_err(|error| {
            tracing::error!(%error, "validated claims are not a json object");
            Status::internal("claims unavailable")
        })?;
        let spiffe_id = claims.spiffe_id.to_string();
        let claims = prost_types::Struct {
            fields: fields
                .into_iter()
                .map(|(k, v)| (k, json_to_prost(v)))
                .collect(),
        };
        Ok(Response::new(ValidateJwtsvidResponse {
            spiffe_id,
            claims: Some(claims),
        }))
    }
}

#[cfg(test)]
mod tests;
