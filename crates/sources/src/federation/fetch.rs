//! One bundle fetch: TCP, TLS (the caller's rustls config decides what is trusted), one HTTP/1.1
//! GET, a capped body. Redirects are never followed (see [`FetchError::Redirect`]).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use svid_broker_identity::report::ErrorChain;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::url::BundleEndpointUrl;
use crate::snapshot::AbortOnDrop;

/// Largest response header block we read; bundle endpoints send a handful of headers.
pub const MAX_RESPONSE_HEADER_BYTES: usize = 16 * 1024;

/// What went wrong while fetching a bundle over HTTPS. Every variant keeps the last good bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The whole fetch (connect, handshake, headers and body) took longer than the timeout.
    #[error("bundle fetch timed out after {timeout:?}")]
    Timeout {
        /// [`crate::federation::FederationOptions::fetch_timeout`], which ran out.
        timeout: Duration,
    },
    /// The TCP connection could not be opened.
    #[error("cannot connect to bundle endpoint: {kind}")]
    Connect {
        /// The I/O error kind.
        kind: io::ErrorKind,
    },
    /// The TLS handshake failed, including certificate rejection by the profile's verifier.
    #[error("tls handshake with bundle endpoint failed")]
    Tls {
        /// rustls' reason (a certificate error, an alert, a protocol error).
        #[source]
        source: rustls::Error,
    },
    /// The TLS handshake failed on the socket rather than in rustls (peer closed, reset).
    #[error("tls handshake with bundle endpoint failed: {kind}")]
    TlsIo {
        /// The I/O error kind.
        kind: io::ErrorKind,
    },
    /// HTTP protocol error (malformed response, connection closed early).
    #[error("http exchange with bundle endpoint failed")]
    Http {
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// The endpoint answered with a redirect. Federation §5.2 says clients SHOULD follow
    /// redirects only under the same checks; we do not follow them at all, so a moved endpoint
    /// needs a configuration change rather than silently trusting a new location.
    #[error("bundle endpoint answered with redirect status {status}, redirects are not followed")]
    Redirect {
        /// The 3xx status code.
        status: u16,
    },
    /// Any status other than 200 and 3xx.
    #[error("bundle endpoint answered with status {status}")]
    Status {
        /// The HTTP status the endpoint answered with (neither 200 nor 3xx).
        status: u16,
    },
    /// The body (declared or actual) exceeds the configured cap.
    #[error("bundle endpoint response is larger than {limit} bytes")]
    TooLarge {
        /// [`crate::federation::FederationOptions::max_response_bytes`], in bytes.
        limit: usize,
    },
}

/// Fetches `url` with `tls`, within `timeout`, reading at most `max_body` bytes.
pub(crate) async fn fetch_bundle(
    url: &BundleEndpointUrl,
    tls: Arc<ClientConfig>,
    timeout: Duration,
    max_body: usize,
) -> Result<Vec<u8>, FetchError> {
    tokio::time::timeout(timeout, fetch_inner(url, tls, max_body))
        .await
        .map_err(|_| FetchError::Timeout { timeout })?
}

async fn fetch_inner(
    url: &BundleEndpointUrl,
    tls: Arc<ClientConfig>,
    max_body: usize,
) -> Result<Vec<u8>, FetchError> {
    let tcp = TcpStream::connect((url.host(), url.port()))
        .await
        .map_err(|e| FetchError::Connect { kind: e.kind() })?;
    let stream = TlsConnector::from(tls)
        .connect(url.server_name(), tcp)
        .await
        .map_err(|e| tls_error(&e))?;

    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_RESPONSE_HEADER_BYTES.max(8192))
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(http_error)?;
    // The connection future drives the socket; it ends when `sender` is dropped. Aborting it on
    // every return path keeps a stalled peer from pinning a task.
    let _conn = AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %ErrorChain::new(&e), "bundle endpoint connection ended with an error");
        }
    }));

    let mut request = Request::new(Empty::<Bytes>::new());
    *request.uri_mut() = url.path_and_query().into();
    let headers = request.headers_mut();
    headers.insert(header::HOST, url.host_header());
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("svid-broker/", env!("CARGO_PKG_VERSION"))),
    );
    let response = sender.send_request(request).await.map_err(http_error)?;

    let status = response.status();
    if status.is_redirection() {
        return Err(FetchError::Redirect {
            status: status.as_u16(),
        });
    }
    if status != StatusCode::OK {
        return Err(FetchError::Status {
            status: status.as_u16(),
        });
    }
    // Reject a declared oversize body before reading any of it.
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body as u64) {
        return Err(FetchError::TooLarge { limit: max_body });
    }

    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(http_error)?;
        if let Ok(data) = frame.into_data() {
            if out.len().saturating_add(data.len()) > max_body {
                return Err(FetchError::TooLarge { limit: max_body });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

fn http_error(source: hyper::Error) -> FetchError {
    FetchError::Http { source }
}

/// tokio-rustls reports handshake failures as an `io::Error` wrapping the `rustls::Error`.
fn tls_error(e: &io::Error) -> FetchError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => FetchError::Tls {
            source: tls.clone(),
        },
        None => FetchError::TlsIo { kind: e.kind() },
    }
}
