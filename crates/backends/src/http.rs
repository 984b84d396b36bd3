//! A small HTTP/1.1 JSON client for one registry API: one connection per request, one deadline
//! per request, capped answers, a cap on requests in flight, Basic auth or a token header
//! ([`Auth`]).
//!
//! - `https://` uses rustls (aws-lc-rs) with TLS 1.3 only, trusting either the certificates of
//!   a CA PEM file or the public web roots.
//! - `http://` is accepted only when the host is a loopback IP address (a registry on the same
//!   machine, a test fake): anywhere else the broker's credential would cross the network in
//!   the clear.
//! - The deadline covers connect, TLS and the whole answer; the wait for an in-flight slot has
//!   its own deadline of the same length.
//! - Neither bodies nor credentials are ever logged; the credential's header (`Authorization`
//!   or a token header such as GitLab's `PRIVATE-TOKEN`) is marked sensitive so hyper never
//!   shows it either.

use std::fmt::{self, Write as _};
use std::io::Read as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use svid_broker_identity::secret::{ExposeSecret as _, SecretString, seal_string};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::error::{ConfigProblem, Failure};

/// Default deadline of one request (connect, TLS and the whole answer).
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Default cap on an answer's body: far above any registry API page we read (100 robots with
/// their permissions are a few tens of KiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Default cap on requests in flight to one registry, whatever the number of callers.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;
/// Largest CA file read, in bytes.
pub const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// How to reach one registry API: where, with which credential, within which limits; checked
/// by [`ApiClient::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientSettings {
    /// The API's base URL (`https://harbor.example.com`, or `http://127.0.0.1:8080`); request
    /// paths are appended to its path.
    pub base_url: String,
    /// PEM CA certificates to trust instead of the public web roots (`https://` only).
    pub ca_file: Option<PathBuf>,
    /// The broker's own credential, sent on every request that carries no credential of its own.
    pub auth: Auth,
    /// The deadline of one request; also the longest wait for an in-flight slot.
    pub request_deadline: Duration,
    /// The cap on an answer's body, in bytes.
    pub max_response_bytes: usize,
    /// The cap on requests in flight to this registry, shared by the client's clones.
    pub max_in_flight: usize,
}

/// How a client authenticates to the registry API. `Debug` never shows the secret.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Auth {
    /// `Authorization: Basic base64(username:password)` (Harbor, Nexus).
    Basic {
        /// The user name (no `:`, no control character).
        username: String,
        /// The password; [`ApiClient::scrub`] removes it (4 bytes or more) and its Basic base64
        /// form from echoed error texts.
        password: SecretString,
    },
    /// One header carrying a token as it is (GitLab's `PRIVATE-TOKEN: <token>`).
    Header {
        /// The header's name (`PRIVATE-TOKEN`).
        name: String,
        /// The token, sent as the header's whole value (non-empty printable ASCII); removed from
        /// echoed error texts by [`ApiClient::scrub`] (4 bytes or more).
        value: SecretString,
    },
    /// No credential of the broker's own (Quay, Artifactory): each request that needs one
    /// carries the broker's freshly signed JWT, given to [`ApiClient::send_authorized`].
    None,
}

impl ClientSettings {
    /// Settings with Basic auth and the default deadline, body cap and in-flight cap.
    pub fn new(
        base_url: impl Into<String>,
        username: impl Into<String>,
        password: SecretString,
    ) -> Self {
        Self::with_auth(
            base_url,
            Auth::Basic {
                username: username.into(),
                password,
            },
        )
    }

    /// Settings with a token in header `name` and the default deadline, body cap and
    /// in-flight cap.
    pub fn with_header(
        base_url: impl Into<String>,
        name: impl Into<String>,
        value: SecretString,
    ) -> Self {
        Self::with_auth(
            base_url,
            Auth::Header {
                name: name.into(),
                value,
            },
        )
    }

    /// Settings with `auth` and the default deadline, body cap and in-flight cap.
    pub fn with_auth(base_url: impl Into<String>, auth: Auth) -> Self {
        Self {
            base_url: base_url.into(),
            ca_file: None,
            auth,
            request_deadline: DEFAULT_REQUEST_DEADLINE,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// One request for [`ApiClient::send_request`]: what the JSON helpers cannot say (a form
/// body, a vendor's own content type, headers a request signature covers).
///
/// `Debug` shows the method, path, header names and the body's length only: a body may carry
/// the broker's JWT (a web identity token, a client assertion).
#[non_exhaustive]
pub struct OutgoingRequest {
    /// The HTTP method, sent as is.
    pub method: Method,
    /// The path and query, appended to the base URL's path; it must start with `/`.
    pub path_and_query: String,
    /// The body and its `Content-Type`; `None` sends an empty body and no `Content-Type`.
    pub body: Option<RequestBody>,
    /// Extra headers, in order. Mark a credential's value sensitive
    /// ([`HeaderValue::set_sensitive`]) so hyper never shows it.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl OutgoingRequest {
    /// A request of `method` to `path_and_query` without a body or extra headers.
    pub fn new(method: Method, path_and_query: impl Into<String>) -> Self {
        Self {
            method,
            path_and_query: path_and_query.into(),
            body: None,
            headers: Vec::new(),
        }
    }

    /// With `bytes` as the body, sent as `content_type`.
    #[must_use]
    pub fn with_body(mut self, content_type: &'static str, bytes: Vec<u8>) -> Self {
        self.body = Some(RequestBody {
            content_type,
            bytes,
        });
        self
    }

    /// With one more header.
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl fmt::Debug for OutgoingRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&HeaderName> = self.headers.iter().map(|(name, _)| name).collect();
        f.debug_struct("OutgoingRequest")
            .field("method", &self.method)
            .field("path_and_query", &self.path_and_query)
            .field("headers", &names)
            .field("body_len", &self.body.as_ref().map(|body| body.bytes.len()))
            .finish()
    }
}

/// A request body and its content type. `Debug` shows the content type and the length only.
#[non_exhaustive]
pub struct RequestBody {
    /// The `Content-Type` (`application/x-www-form-urlencoded`).
    pub content_type: &'static str,
    /// The body as sent, byte for byte (it may hold the broker's JWT: `Debug` shows its length
    /// only).
    pub bytes: Vec<u8>,
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("content_type", &self.content_type)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A registry API client. Cheap to clone; clones share the in-flight cap.
#[derive(Clone)]
pub struct ApiClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    target: Target,
    // `None` for plain http to a loopback address.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    // The header that carries the credential, and its value (`None` for `Auth::None`).
    auth: Option<(HeaderName, SecretString)>,
    // Kept only to scrub them from error texts a peer echoes back: the password or token as
    // configured, and (Basic) its base64 form.
    scrubbed: Vec<SecretString>,
    deadline: Duration,
    max_response_bytes: usize,
    max_in_flight: usize,
    slots: Semaphore,
}

/// A registry's answer: status, headers and the whole (capped) body.
///
/// `Debug` shows the status, the header names and the body's length only: a body may hold a
/// secret the registry just made (a robot's, a deploy token's).
#[derive(Clone)]
#[non_exhaustive]
pub struct ApiResponse {
    /// The status as the registry answered it (redirects are not followed).
    pub status: StatusCode,
    /// The headers as the registry sent them.
    pub headers: HeaderMap,
    /// The body. A plain `Vec` so that a caller reading a secret from it can wipe it
    /// (`zeroize::Zeroizing::new(response.body)`).
    pub body: Vec<u8>,
}

impl fmt::Debug for ApiResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiResponse")
            .field("status", &self.status)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl ApiResponse {
    /// The `Retry-After` header when it is a number of seconds (an HTTP date is ignored),
    /// capped at one hour so a registry cannot park the broker.
    pub fn retry_after(&self) -> Option<Duration> {
        let seconds: u64 = self
            .headers
            .get(header::RETRY_AFTER)?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some(Duration::from_secs(seconds.min(3600)))
    }
}

impl ApiClient {
    /// Builds a client; reads the CA file now.
    ///
    /// # Errors
    /// [`ConfigProblem::InvalidUrl`], [`ConfigProblem::CredentialsInUrl`],
    /// [`ConfigProblem::PlainHttpNotLoopback`], [`ConfigProblem::CaFile`],
    /// [`ConfigProblem::Tls`], [`ConfigProblem::InvalidUsername`] (a Basic user name that is
    /// empty or has a `:` or a control character; or, for [`Auth::Header`], a header name
    /// that is not one, or a token that is empty or not printable ASCII) or
    /// [`ConfigProblem::ZeroLimit`].
    pub fn new(settings: &ClientSettings) -> Result<Self, ConfigProblem> {
        let target = Target::parse(&settings.base_url)?;
        for (what, zero) in [
            ("request deadline", settings.request_deadline.is_zero()),
            ("max response bytes", settings.max_response_bytes == 0),
            ("max in-flight requests", settings.max_in_flight == 0),
        ] {
            if zero {
                return Err(ConfigProblem::ZeroLimit { what });
            }
        }
        let (auth, scrubbed) = match auth_header(&settings.auth)? {
            Some((name, value, scrubbed)) => (Some((name, value)), scrubbed),
            None => (None, Vec::new()),
        };
        let tls = if target.tls {
            let connector = tls_connector(settings.ca_file.as_deref())?;
            let name =
                ServerName::try_from(target.host.clone()).map_err(|_| ConfigProblem::InvalidUrl)?;
            Some((connector, name))
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(ClientInner {
                target,
                tls,
                auth,
                scrubbed,
                deadline: settings.request_deadline,
                max_response_bytes: settings.max_response_bytes,
                max_in_flight: settings.max_in_flight,
                slots: Semaphore::new(settings.max_in_flight),
            }),
        })
    }

    /// The configured request deadline: the limit on one request and on its wait for a slot.
    pub fn deadline(&self) -> Duration {
        self.inner.deadline
    }

    /// `text` with this client's password or token (and, for Basic, its base64 form) replaced
    /// by `[REDACTED]`: for a registry's error text, which a misconfigured proxy may build from
    /// the request.
    pub fn scrub(&self, text: &str) -> String {
        self.scrub_also(text, &[])
    }

    /// As [`Self::scrub`], and `extra` too (the per-request credential of
    /// [`Self::send_authorized`]).
    pub fn scrub_also(&self, text: &str, extra: &[&SecretString]) -> String {
        let mut out = text.to_owned();
        for secret in self.inner.scrubbed.iter().chain(extra.iter().copied()) {
            let secret = secret.expose_secret();
            // A very short password would match ordinary words; it cannot be told apart.
            if secret.len() >= 4 && out.contains(secret) {
                out = out.replace(secret, "[REDACTED]");
            }
        }
        out
    }

    /// Sends one request to `path_and_query` (appended to the base URL's path; it must start
    /// with `/`), with a JSON body when given, and reads the whole answer. Any status is an
    /// answer; interpreting it is the caller's job.
    ///
    /// # Errors
    /// [`Failure::BudgetExhausted`] (no in-flight slot within the deadline),
    /// [`Failure::Unreachable`], [`Failure::Timeout`], [`Failure::TooLarge`] or
    /// [`Failure::Internal`] (a path that is not a valid request target).
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        json_body: Option<Vec<u8>>,
    ) -> Result<ApiResponse, Failure> {
        self.send_inner(method, path_and_query, json_body, None)
            .await
    }

    /// As [`Self::send`], authenticated by `auth` for this one request instead of the
    /// client's own [`Auth`] (Quay's Basic `<org>+<robot>:<the broker's JWT>`).
    ///
    /// # Errors
    /// As [`Self::send`]; [`Failure::Internal`] when `auth` cannot be encoded (an empty user
    /// name, one with a `:`, or [`Auth::None`]).
    pub async fn send_authorized(
        &self,
        method: Method,
        path_and_query: &str,
        json_body: Option<Vec<u8>>,
        auth: &Auth,
    ) -> Result<ApiResponse, Failure> {
        let Ok(Some((name, value, _))) = auth_header(auth) else {
            return Err(Failure::Internal {
                what: "cannot encode the request's credential",
            });
        };
        self.send_inner(method, path_and_query, json_body, Some((name, value)))
            .await
    }

    /// Sends `request` as it is: its body with its own content type, its extra headers
    /// after `Host`, `Accept` and `Connection` (the cloud APIs: form bodies, AWS's
    /// `X-Amz-Target` and SigV4 headers). The client's own [`Auth`] is added unless
    /// `request` carries an `Authorization` header itself.
    ///
    /// # Errors
    /// As [`Self::send`].
    pub async fn send_request(&self, request: OutgoingRequest) -> Result<ApiResponse, Failure> {
        self.send_built(request, None).await
    }

    /// The `Host` header every request carries (`api.ecr.us-east-1.amazonaws.com`,
    /// `127.0.0.1:8080`): what a request signature covers.
    pub fn authority(&self) -> &str {
        &self.inner.target.authority
    }

    /// The request target sent for `path_and_query`: the base URL's path prefix and it.
    pub fn request_target(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.inner.target.path_prefix)
    }

    async fn send_inner(
        &self,
        method: Method,
        path_and_query: &str,
        json_body: Option<Vec<u8>>,
        auth: Option<(HeaderName, SecretString)>,
    ) -> Result<ApiResponse, Failure> {
        let mut request = OutgoingRequest::new(method, path_and_query);
        if let Some(bytes) = json_body {
            request = request.with_body("application/json", bytes);
        }
        self.send_built(request, auth).await
    }

    async fn send_built(
        &self,
        request: OutgoingRequest,
        auth: Option<(HeaderName, SecretString)>,
    ) -> Result<ApiResponse, Failure> {
        let inner = &*self.inner;
        // The semaphore is never closed; a closed one would mean the same to the caller.
        let Ok(Ok(_slot)) = tokio::time::timeout(inner.deadline, inner.slots.acquire()).await
        else {
            return Err(Failure::BudgetExhausted {
                max_in_flight: inner.max_in_flight,
                waited: inner.deadline,
            });
        };
        let request = self.build_request(request, auth.as_ref())?;
        tokio::time::timeout(inner.deadline, self.exchange(request))
            .await
            .map_err(|_| Failure::Timeout {
                after: inner.deadline,
            })?
    }

    fn build_request(
        &self,
        request: OutgoingRequest,
        auth: Option<&(HeaderName, SecretString)>,
    ) -> Result<Request<Full<Bytes>>, Failure> {
        let inner = &*self.inner;
        let cannot_build = || Failure::Internal {
            what: "cannot build the request",
        };
        let mut builder = Request::builder()
            .method(request.method)
            .uri(self.request_target(&request.path_and_query))
            .header(header::HOST, &inner.target.authority)
            .header(header::ACCEPT, "application/json")
            // One connection per request: say so, so the registry closes its side at once.
            .header(header::CONNECTION, "close");
        let signed_itself = request
            .headers
            .iter()
            .any(|(name, _)| name == header::AUTHORIZATION);
        if !signed_itself && let Some((name, value)) = auth.or(inner.auth.as_ref()) {
            let mut credential =
                HeaderValue::from_str(value.expose_secret()).map_err(|_| cannot_build())?;
            credential.set_sensitive(true);
            builder = builder.header(name.clone(), credential);
        }
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        let body = match request.body {
            Some(body) => {
                builder = builder.header(header::CONTENT_TYPE, body.content_type);
                Bytes::from(body.bytes)
            }
            None => Bytes::new(),
        };
        builder.body(Full::new(body)).map_err(|_| cannot_build())
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<ApiResponse, Failure> {
        let inner = &*self.inner;
        let tcp = tokio::net::TcpStream::connect((inner.target.host.as_str(), inner.target.port))
            .await
            .map_err(|_| Failure::Unreachable { during: "connect" })?;
        match &inner.tls {
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await.map_err(|_| {
                    Failure::Unreachable {
                        during: "tls handshake",
                    }
                })?;
                exchange_on(tls, request, inner.max_response_bytes).await
            }
            None => exchange_on(tcp, request, inner.max_response_bytes).await,
        }
    }
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("ApiClient")
            .field("scheme", &if inner.target.tls { "https" } else { "http" })
            .field("authority", &inner.target.authority)
            .field("path_prefix", &inner.target.path_prefix)
            .field("deadline", &inner.deadline)
            .field("max_response_bytes", &inner.max_response_bytes)
            .field("max_in_flight", &inner.max_in_flight)
            .finish_non_exhaustive()
    }
}

async fn exchange_on<IO>(
    io: IO,
    request: Request<Full<Bytes>>,
    max: usize,
) -> Result<ApiResponse, Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let closed = || Failure::Unreachable {
        during: "http exchange",
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|_| closed())?;
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender.send_request(request).await.map_err(|_| closed())?;
        let (parts, mut body) = response.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            return Err(Failure::TooLarge { max });
        }
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| closed())?;
            if let Some(data) = frame.data_ref() {
                if out.len() + data.len() > max {
                    return Err(Failure::TooLarge { max });
                }
                out.extend_from_slice(data);
            }
        }
        Ok(ApiResponse {
            status: parts.status,
            headers: parts.headers,
            body: out,
        })
    }
    .await;
    driver.abort();
    result
}

/// Where requests go, parsed once from the base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    tls: bool,
    // Without IPv6 brackets, for connecting and for the TLS server name.
    host: String,
    port: u16,
    // As in the URL (brackets and port kept), for the `Host` header.
    authority: String,
    // The base URL's path without a trailing `/` (empty for the root).
    path_prefix: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, ConfigProblem> {
        let uri: Uri = url.parse().map_err(|_| ConfigProblem::InvalidUrl)?;
        let authority = uri.authority().ok_or(ConfigProblem::InvalidUrl)?;
        if authority.as_str().contains('@') {
            return Err(ConfigProblem::CredentialsInUrl);
        }
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(ConfigProblem::InvalidUrl),
        };
        if uri.query().is_some() {
            return Err(ConfigProblem::InvalidUrl);
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(ConfigProblem::InvalidUrl);
        }
        if !tls && !host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
            return Err(ConfigProblem::PlainHttpNotLoopback { host });
        }
        Ok(Self {
            tls,
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            path_prefix: uri.path().trim_end_matches('/').to_owned(),
            host,
        })
    }
}

/// The header that carries `auth`, its value, and the secrets to scrub from vendor texts.
/// The header name, its value and what to scrub from error texts; `None` for [`Auth::None`].
type AuthHeader = Option<(HeaderName, SecretString, Vec<SecretString>)>;

fn auth_header(auth: &Auth) -> Result<AuthHeader, ConfigProblem> {
    match auth {
        Auth::None => Ok(None),
        Auth::Basic { username, password } => {
            if username.is_empty()
                || username.contains(':')
                || username.chars().any(char::is_control)
            {
                return Err(ConfigProblem::InvalidUsername);
            }
            let password_text = password.expose_secret();
            // Both buffers hold the password (in the clear, then base64): wiped on drop.
            let mut pair = Zeroizing::new(String::with_capacity(
                username.len() + 1 + password_text.len(),
            ));
            pair.push_str(username);
            pair.push(':');
            pair.push_str(password_text);
            let mut encoded = Zeroizing::new(String::with_capacity(pair.len().div_ceil(3) * 4));
            base64::engine::general_purpose::STANDARD.encode_string(pair.as_bytes(), &mut encoded);
            let mut value = Zeroizing::new(String::with_capacity(6 + encoded.len()));
            value.push_str("Basic ");
            value.push_str(&encoded);
            Ok(Some((
                header::AUTHORIZATION,
                seal_string(value),
                vec![password.clone(), seal_string(encoded)],
            )))
        }
        Auth::Header { name, value } => {
            // No dedicated problem variant yet: a token header is the user name's counterpart.
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigProblem::InvalidUsername)?;
            let text = value.expose_secret();
            let printable = !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic());
            if !printable {
                return Err(ConfigProblem::InvalidUsername);
            }
            Ok(Some((name, value.clone(), vec![value.clone()])))
        }
    }
}

/// The TLS 1.3 client configuration: the CA file's certificates, or the public web roots.
fn tls_connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, ConfigProblem> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |reason| ConfigProblem::CaFile {
                path: path.to_owned(),
                reason,
            };
            let mut bytes = Vec::new();
            std::fs::File::open(path)
                .and_then(|file| file.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut bytes))
                .map_err(|_| bad("unreadable"))?;
            if bytes.len() as u64 > MAX_CA_FILE_BYTES {
                return Err(bad("too large"));
            }
            let blocks = pem::parse_many(&bytes).map_err(|_| bad("not PEM"))?;
            for block in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
                roots
                    .add(CertificateDer::from(block.contents().to_vec()))
                    .map_err(|_| bad("bad certificate"))?;
            }
            if roots.is_empty() {
                return Err(bad("no certificate"));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // TLS 1.3 only: the workspace enables rustls `tls12` for the realm's HTTPS listener, and
    // the safe defaults would then let this client negotiate 1.2 as well.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|_| ConfigProblem::Tls)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// An `application/x-www-form-urlencoded` body of `fields`, in order. Bodies of the cloud
/// token exchanges carry the broker's JWT or an access token: the text is built in one wiped
/// buffer sized up front (percent-encoding at most triples a value), so no reallocation or
/// temporary leaves a copy behind, and the bytes are moved into the request (whose copy hyper
/// owns and cannot wipe).
pub fn form_body(fields: &[(&str, &str)]) -> Vec<u8> {
    let capacity = fields
        .iter()
        .map(|(name, value)| name.len() + 2 + 3 * value.len())
        .sum();
    let mut body = Zeroizing::new(String::with_capacity(capacity));
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            body.push('&');
        }
        encode_query_component_into(name, &mut body);
        body.push('=');
        encode_query_component_into(value, &mut body);
    }
    std::mem::take(&mut *body).into_bytes()
}

/// Percent-encodes a query component (everything but RFC 3986 unreserved characters).
pub fn encode_query_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    encode_query_component_into(text, &mut out);
    out
}

/// As [`encode_query_component`], appended to `out`: for a secret (a JWT in a form body),
/// encoded straight into the caller's wiped buffer rather than into a temporary copy.
pub fn encode_query_component_into(text: &str, out: &mut String) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

#[cfg(test)]
mod tests;
