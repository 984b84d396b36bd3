//! A small blocking HTTPS/1.1 client: one request per connection.
//!
//! Hand-written rather than hyper or reqwest: the `ExternalKey` seam is synchronous (rcgen
//! calls it from its signing callback, and the federation issuer from `mint`), and hyper needs
//! an async runtime, which a blocking call may not start or block on from inside the broker's
//! own. One POST per call, `Connection: close`, a `Content-Length` body: there is little to
//! write, and every bound is ours to choose.
//!
//! - `std::net::TcpStream` under one overall deadline per request: name resolution waited
//!   for only until the deadline, the connect timeout cut to what is left, and every read and
//!   write syscall (rustls' own included, see [`DeadlineStream`]) given only what is left;
//! - TLS 1.3 through rustls (`aws_lc_rs` provider, webpki-roots plus an optional extra CA);
//!   plain TCP only for an `http://` endpoint on a loopback IP literal (tests);
//! - the answer read by httparse: a `Content-Length` of ASCII digits is required, the head
//!   capped at 16 KiB and the body at 64 KiB, and a byte beyond the `Content-Length` is an
//!   error.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

/// Largest response head read.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest response body read (KMS answers are well under 4 KiB, STS's under 8 KiB).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most response headers parsed.
const MAX_HEADERS: usize = 64;

/// Where requests go: parsed from an `https://` (or loopback `http://`) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Whether the connection is TLS.
    tls: bool,
    /// The host as written (a name or an IP literal, without brackets).
    host: String,
    port: u16,
    /// The `Host` header: `host` or `host:port` when the port is not the scheme's default.
    authority: String,
}

impl Endpoint {
    /// Parses `url`: `https://host[:port][/]`, or `http://` with a loopback IP literal host;
    /// no userinfo, path, query or fragment.
    ///
    /// # Errors
    /// The rule the URL broke, as a fixed phrase.
    pub(crate) fn parse(url: &str) -> Result<Self, &'static str> {
        if url.len() > 512 {
            return Err("endpoint is longer than 512 bytes");
        }
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err("endpoint must be an https:// URL (http:// only on a loopback IP)");
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty()
            || authority
                .bytes()
                .any(|b| matches!(b, b'/' | b'?' | b'#' | b'@') || !b.is_ascii_graphic())
        {
            return Err("endpoint must be scheme://host[:port] without path, query or userinfo");
        }
        let (host, port) = split_host_port(authority)?;
        let port = port.unwrap_or(if tls { 443 } else { 80 });
        if !tls {
            let loopback = host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err("an http:// endpoint must be a loopback IP literal (127.0.0.1, [::1])");
            }
        } else if ServerName::try_from(host.clone()).is_err() {
            return Err("endpoint host is not a DNS name or IP address");
        }
        let default_port = if tls { 443 } else { 80 };
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let authority = if port == default_port {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        Ok(Self {
            tls,
            host,
            port,
            authority,
        })
    }

    /// The `Host` header value: `host`, or `host:port` off the scheme's default port.
    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }

    /// The URL, for errors.
    pub(crate) fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.authority
        )
    }
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), &'static str> {
    let bad_port = "endpoint port is not a number from 1 to 65535";
    let parse_port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or(bad_port);
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("endpoint has an unclosed IPv6 bracket")?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("endpoint's bracketed host is not an IPv6 address");
        }
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':').ok_or(bad_port)?)?),
        };
        return Ok((host.to_owned(), port));
    }
    match authority.split_once(':') {
        Some((host, port)) if !host.is_empty() => Ok((host.to_owned(), Some(parse_port(port)?))),
        Some(_) => Err("endpoint has no host"),
        None => Ok((authority.to_owned(), None)),
    }
}

/// Why a request got no usable HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TransportError {
    /// Could not connect, the connection failed, or the deadline passed.
    Unavailable(String),
    /// The answer broke HTTP/1.1 or a bound.
    Malformed(&'static str),
}

/// An HTTP answer: its status, `Content-Type` and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// Connects, sends one `POST /` of `body` with `headers`, and reads the answer, all within
/// `timeout`.
pub(crate) fn post(
    endpoint: &Endpoint,
    tls: &Arc<rustls::ClientConfig>,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response, TransportError> {
    let deadline = Instant::now() + timeout;
    let tcp = DeadlineStream {
        tcp: connect(endpoint, deadline)?,
        deadline,
    };
    let mut request = Vec::with_capacity(512 + body.len());
    request.extend_from_slice(b"POST / HTTP/1.1\r\n");
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    request.extend_from_slice(b"connection: close\r\n\r\n");
    request.extend_from_slice(body);
    // The request holds a session token and, for STS, the web identity JWT: wiped on drop.
    let request = zeroize::Zeroizing::new(request);
    if endpoint.tls {
        let name = ServerName::try_from(endpoint.host.clone())
            .map_err(|_| TransportError::Malformed("endpoint host is not a server name"))?;
        let conn = rustls::ClientConnection::new(Arc::clone(tls), name)
            .map_err(|e| unavailable(endpoint, &format!("TLS setup failed: {e}")))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        exchange(&mut stream, endpoint, &request)
    } else {
        let mut stream = tcp;
        exchange(&mut stream, endpoint, &request)
    }
}

/// A `TcpStream` whose every read and write syscall may block only until `deadline`.
///
/// rustls' `StreamOwned` loops inside one `read` or `write` (`complete_io`: the handshake,
/// a record arriving a byte at a time), so timeouts set between the client's own calls would
/// give each of its socket reads the whole remaining time again, and a peer trickling bytes
/// could hold a call far past its deadline. Set here, before each syscall, they cannot.
struct DeadlineStream {
    tcp: TcpStream,
    deadline: Instant,
}

impl DeadlineStream {
    /// What is left of the deadline, never zero: std refuses `Some(Duration::ZERO)` as a
    /// timeout, and zero left means the deadline has passed.
    fn left(&self) -> std::io::Result<Duration> {
        self.deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "the call's deadline passed")
            })
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.left()?;
        self.tcp.set_read_timeout(Some(left))?;
        self.tcp.read(buf)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.left()?;
        self.tcp.set_write_timeout(Some(left))?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // A `TcpStream` has no buffer of its own: nothing to wait for.
        self.tcp.flush()
    }
}

fn unavailable(endpoint: &Endpoint, why: &str) -> TransportError {
    TransportError::Unavailable(format!("{}: {why}", endpoint.url()))
}

/// What is left of the deadline, or the error saying it passed.
fn remaining(endpoint: &Endpoint, deadline: Instant) -> Result<Duration, TransportError> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| unavailable(endpoint, "timed out"))
}

fn connect(endpoint: &Endpoint, deadline: Instant) -> Result<TcpStream, TransportError> {
    let addrs: Vec<SocketAddr> = match endpoint.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, endpoint.port)],
        Err(_) => resolve(endpoint, deadline)?,
    };
    let mut last = String::from("no address");
    for addr in addrs {
        let left = remaining(endpoint, deadline)?;
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                // Nagle would hold the small request back a round trip.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(unavailable(endpoint, &last))
}

/// The host's first eight addresses, or an error once the deadline passes.
///
/// The system resolver (`getaddrinfo`) takes no timeout and cannot be cancelled, so it runs
/// on a thread of its own and the call waits for its answer only until the deadline; a
/// resolver that hangs longer leaves that thread to finish (or hang) on its own, holding
/// nothing but the host name.
fn resolve(endpoint: &Endpoint, deadline: Instant) -> Result<Vec<SocketAddr>, TransportError> {
    let (send, answer) = std::sync::mpsc::sync_channel(1);
    let (host, port) = (endpoint.host.clone(), endpoint.port);
    std::thread::Builder::new()
        .name("kms-resolve".to_owned())
        .spawn(move || {
            let addrs = (host.as_str(), port)
                .to_socket_addrs()
                .map(|addrs| addrs.take(8).collect::<Vec<_>>());
            // The caller may have stopped waiting: nobody to tell.
            let _ = send.send(addrs);
        })
        .map_err(|e| unavailable(endpoint, &format!("cannot start the resolver: {e}")))?;
    match answer.recv_timeout(remaining(endpoint, deadline)?) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(unavailable(
            endpoint,
            &format!("cannot resolve the host: {e}"),
        )),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            Err(unavailable(endpoint, "timed out resolving the host"))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err(unavailable(endpoint, "the resolver thread failed"))
        }
    }
}

/// Writes the request and reads the whole answer from `stream`, whose every syscall is
/// bounded by the call's deadline ([`DeadlineStream`]).
///
/// One answer per connection (`Connection: close`): reading stops as soon as the head and
/// `Content-Length` bytes are in, and any byte received beyond them, whichever read brought
/// it, is an error. Bytes a server sends after the reads that completed the answer are never
/// read, since the connection is dropped right after: no later answer exists for them to be
/// mistaken for.
fn exchange<S: Read + Write>(
    stream: &mut S,
    endpoint: &Endpoint,
    request: &[u8],
) -> Result<Response, TransportError> {
    let io = |e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            unavailable(endpoint, "timed out")
        } else {
            unavailable(endpoint, &format!("connection failed: {e}"))
        }
    };
    let mut written = 0;
    while written < request.len() {
        match stream.write(&request[written..]) {
            Ok(0) => return Err(unavailable(endpoint, "connection closed while sending")),
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    stream.flush().map_err(io)?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let mut head: Option<(u16, usize, usize)> = None;
    loop {
        if let Some((status, head_len, body_len)) = head {
            let whole = head_len + body_len;
            if buf.len() > whole {
                return Err(TransportError::Malformed(
                    "the answer is longer than its Content-Length",
                ));
            }
            if buf.len() == whole {
                let body = buf.split_off(head_len);
                return Ok(Response { status, body });
            }
        }
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            return Err(match head {
                Some(_) => TransportError::Malformed("the answer ended before its Content-Length"),
                None if buf.is_empty() => {
                    unavailable(endpoint, "connection closed without an answer")
                }
                None => TransportError::Malformed("the answer ended inside its head"),
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        if head.is_none() {
            head = parse_head(&buf)?;
        }
    }
}

/// `(status, head length, body length)` once the whole head is in `buf`.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, usize)>, TransportError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD_BYTES {
                return Err(TransportError::Malformed(
                    "the answer's head is longer than 16 KiB",
                ));
            }
            return Ok(None);
        }
        Err(_) => return Err(TransportError::Malformed("the answer is not HTTP/1.1")),
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(TransportError::Malformed(
            "the answer's head is longer than 16 KiB",
        ));
    }
    let status = response
        .code
        .ok_or(TransportError::Malformed("the answer has no status"))?;
    let mut length: Option<usize> = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(TransportError::Malformed(
                "the answer is chunked; a Content-Length is required",
            ));
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            // ASCII digits only (RFC 9110's `1*DIGIT`): Rust's integer parse would also take
            // a sign (`+5`), which another parser on the path might read differently.
            let value = std::str::from_utf8(header.value)
                .ok()
                .map(|v| v.trim_matches([' ', '\t']))
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(TransportError::Malformed(
                    "the answer's Content-Length is not ASCII digits",
                ))?;
            if length.replace(value).is_some_and(|old| old != value) {
                return Err(TransportError::Malformed(
                    "the answer has two different Content-Lengths",
                ));
            }
        }
    }
    let length = length.ok_or(TransportError::Malformed(
        "the answer has no Content-Length",
    ))?;
    if length > MAX_BODY_BYTES {
        return Err(TransportError::Malformed(
            "the answer's body is longer than 64 KiB",
        ));
    }
    Ok(Some((status, head_len, length)))
}

/// The TLS client configuration: TLS 1.3 only, webpki-roots plus `extra_roots`.
///
/// TLS 1.3 only: the workspace enables rustls `tls12` for the realm's listener, and the safe
/// defaults would let this client negotiate 1.2 too. AWS's KMS and STS endpoints offer 1.3.
pub(crate) fn tls_config(
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<Arc<rustls::ClientConfig>, &'static str> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots
            .add(cert.clone())
            .map_err(|_| "the extra CA certificate is not a usable CA certificate")?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|_| "TLS 1.3 is not available from the crypto provider")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn endpoints_parse_by_rule() {
        let e = Endpoint::parse("https://kms.us-east-1.amazonaws.com").unwrap();
        assert_eq!(e.authority(), "kms.us-east-1.amazonaws.com");
        assert_eq!(e.port, 443);
        let e = Endpoint::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(e.authority(), "127.0.0.1:8080");
        let e = Endpoint::parse("http://[::1]:9").unwrap();
        assert_eq!(e.authority(), "[::1]:9");
        assert_eq!(e.host, "::1");
        for (url, rule) in [
            ("http://kms.example.com", "loopback"),
            ("http://10.0.0.1:80", "loopback"),
            ("ftp://x", "https://"),
            ("https://h/path", "without path"),
            ("https://u@h", "userinfo"),
            ("https://h:0", "port"),
            ("https://h:99999", "port"),
            ("https://[::1", "bracket"),
        ] {
            let error = Endpoint::parse(url).unwrap_err();
            assert!(error.contains(rule), "{url}: {error}");
        }
    }

    #[test]
    fn heads_need_a_bounded_content_length() {
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap(),
            Some((200, 38, 2))
        );
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le").unwrap(), None);
        for (head, rule) in [
            (&b"HTTP/1.1 200 OK\r\n\r\n"[..], "no Content-Length"),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                "chunked",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 70000\r\n\r\n",
                "64 KiB",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                "two",
            ),
            (b"garbage\r\n\r\n", "not HTTP"),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
                "ASCII digits",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: -0\r\n\r\n",
                "ASCII digits",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 0x2\r\n\r\n",
                "ASCII digits",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
                "ASCII digits",
            ),
        ] {
            let Err(TransportError::Malformed(error)) = parse_head(head) else {
                panic!("{head:?} accepted");
            };
            assert!(error.contains(rule), "{error}");
        }
    }

    #[test]
    fn heads_are_capped_in_size_and_header_count() {
        let mut long = b"HTTP/1.1 200 OK\r\nx-filler: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        let Err(TransportError::Malformed(error)) = parse_head(&long) else {
            panic!("an endless head was waited for");
        };
        assert!(error.contains("longer than 16 KiB"), "{error}");
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend(format!("x-h{i}: v\r\n").as_bytes());
        }
        many.extend(b"content-length: 0\r\n\r\n");
        let Err(TransportError::Malformed(error)) = parse_head(&many) else {
            panic!("{} headers accepted", MAX_HEADERS + 1);
        };
        assert!(error.contains("not HTTP/1.1"), "{error}");
    }

    /// A one-connection server on loopback: reads the request head, then runs `answer`
    /// on the socket. Ends with the connection, or when `answer` gives up.
    fn serve(answer: impl FnOnce(&mut TcpStream) + Send + 'static) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            answer(&mut socket);
        });
        port
    }

    /// Sends `bytes` one at a time, `gap` apart, until the client hangs up.
    fn trickle(socket: &mut TcpStream, bytes: &[u8], gap: Duration) {
        for byte in bytes {
            if socket.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(gap);
        }
    }

    /// Reads until the end of the request head, so the client's write is not refused.
    fn read_head(socket: &mut TcpStream) {
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"\r\n\r\n") && socket.read(&mut byte).is_ok_and(|n| n == 1) {
            seen.push(byte[0]);
        }
    }

    fn call(url: &str, timeout: Duration) -> (Result<Response, TransportError>, Duration) {
        let endpoint = Endpoint::parse(url).unwrap();
        let tls = tls_config(&[]).unwrap();
        let started = Instant::now();
        let result = post(&endpoint, &tls, &[("host", "x")], b"{}", timeout);
        (result, started.elapsed())
    }

    #[test]
    fn a_trickled_http_answer_cannot_outlast_the_deadline() {
        let port = serve(|socket| {
            read_head(socket);
            let head =
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
            trickle(socket, head, Duration::from_millis(300));
        });
        let timeout = Duration::from_secs(1);
        let (result, elapsed) = call(&format!("http://127.0.0.1:{port}"), timeout);
        let Err(TransportError::Unavailable(why)) = result else {
            panic!("a trickled answer was read: {result:?}");
        };
        assert!(why.contains("timed out"), "{why}");
        // A safety bound, not a speed claim: the trickle alone would take over 20 s.
        assert!(elapsed < timeout * 3, "took {elapsed:?}");
    }

    #[test]
    fn a_trickled_tls_record_cannot_outlast_the_deadline() {
        let port = serve(|socket| {
            // The start of a 16 KiB handshake record, then its body a byte at a time: rustls
            // keeps reading inside one call, which the per-syscall deadline must cut short.
            let mut record = vec![0x16, 0x03, 0x03, 0x40, 0x00];
            record.extend_from_slice(&[0u8; 60]);
            trickle(socket, &record, Duration::from_millis(300));
        });
        let timeout = Duration::from_secs(1);
        let (result, elapsed) = call(&format!("https://127.0.0.1:{port}"), timeout);
        let Err(TransportError::Unavailable(why)) = result else {
            panic!("a trickled TLS record was not unavailable: {result:?}");
        };
        assert!(why.contains("timed out"), "{why}");
        // A safety bound, not a speed claim: the trickle alone would take over 19 s.
        assert!(elapsed < timeout * 3, "took {elapsed:?}");
    }

    #[test]
    fn bytes_beyond_the_content_length_are_an_error_in_any_read() {
        // All in one write, and the body with the excess arriving after the head was parsed.
        let together = serve(|socket| {
            read_head(socket);
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}extra");
            std::thread::sleep(Duration::from_secs(1));
        });
        let apart = serve(|socket| {
            read_head(socket);
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n");
            let _ = socket.flush();
            std::thread::sleep(Duration::from_millis(200));
            let _ = socket.write_all(b"{}extra");
            std::thread::sleep(Duration::from_secs(1));
        });
        for port in [together, apart] {
            let (result, _) = call(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5));
            let Err(TransportError::Malformed(rule)) = result else {
                panic!("an over-long answer was accepted: {result:?}");
            };
            assert!(rule.contains("longer than its Content-Length"), "{rule}");
        }
        let exact = serve(|socket| {
            read_head(socket);
            let _ = socket.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}");
            std::thread::sleep(Duration::from_secs(1));
        });
        let (result, _) = call(&format!("http://127.0.0.1:{exact}"), Duration::from_secs(5));
        let response = result.unwrap();
        assert_eq!(
            (response.status, response.body.as_slice()),
            (201, &b"{}"[..])
        );
    }

    #[test]
    fn host_names_resolve_within_the_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let endpoint = Endpoint::parse(&format!("https://localhost:{port}")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let addrs = resolve(&endpoint, deadline).unwrap();
        assert!(
            addrs
                .iter()
                .all(|a| a.port() == port && a.ip().is_loopback()),
            "{addrs:?}"
        );
        let stream = connect(&endpoint, deadline).unwrap();
        assert_eq!(stream.peer_addr().unwrap().port(), port);
        // A deadline already past fails before waiting on the resolver.
        let Err(TransportError::Unavailable(why)) = resolve(&endpoint, Instant::now()) else {
            panic!("resolved past the deadline");
        };
        assert!(why.contains("timed out"), "{why}");
    }

    /// A server key and certificate chain (leaf, then CA) for `names`, and the CA alone.
    struct Pki {
        ca: rustls::pki_types::CertificateDer<'static>,
        chain: Vec<rustls::pki_types::CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    }

    /// A fresh CA and a leaf it signed for `names` (DNS names or IP literals).
    fn pki(names: &[&str]) -> Pki {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "transport test CA");
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf_params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
        Pki {
            ca: ca.der().clone(),
            chain: vec![leaf.der().clone(), ca.der().clone()],
            key: rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        }
    }

    /// What the TLS server saw of its one connection.
    #[derive(Debug, Default)]
    struct Seen {
        version: Option<rustls::ProtocolVersion>,
        sni: Option<String>,
        /// Whether the handshake completed: the client's Finished arrived.
        handshaken: bool,
        /// Why the handshake failed, as the server's rustls put it.
        handshake_error: Option<String>,
        /// The decrypted request head, when the handshake completed.
        request: Vec<u8>,
    }

    /// A one-connection TLS server on 127.0.0.1 offering TLS 1.2 and 1.3 (so the version it
    /// reports is the client's choice): completes the handshake, reads the request head and
    /// its `Content-Length` body, and sends `answer`.
    fn tls_server(pki: &Pki, answer: &'static [u8]) -> (u16, std::thread::JoinHandle<Seen>) {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            // Only so a broken test cannot hang the thread forever.
            tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
            let mut seen = Seen::default();
            while conn.is_handshaking() {
                if let Err(e) = conn.complete_io(&mut tcp) {
                    seen.handshake_error = Some(e.to_string());
                    break;
                }
            }
            seen.handshaken = !conn.is_handshaking();
            seen.sni = conn.server_name().map(str::to_owned);
            seen.version = conn.protocol_version();
            if seen.handshake_error.is_some() {
                return seen;
            }
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            let mut byte = [0u8; 1];
            while !seen.request.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).unwrap() == 0 {
                    return seen;
                }
                seen.request.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&seen.request).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let mut body = vec![0u8; length];
            stream.read_exact(&mut body).unwrap();
            stream.write_all(answer).unwrap();
            stream.conn.send_close_notify();
            stream.flush().unwrap();
            seen
        });
        (port, server)
    }

    const CANNED: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\n\
        content-length: 27\r\n\r\n{\"KeyId\":\"alias/transport\"}";

    fn tls_call(
        url: &str,
        roots: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<Response, TransportError> {
        let endpoint = Endpoint::parse(url).unwrap();
        let tls = tls_config(roots).unwrap();
        post(
            &endpoint,
            &tls,
            &[("host", endpoint.authority())],
            b"{}",
            Duration::from_secs(10),
        )
    }

    #[test]
    fn https_with_the_extra_ca_is_tls13_with_the_host_as_sni() {
        let pki = pki(&["localhost", "127.0.0.1"]);
        // A DNS name goes out as SNI; an IP literal cannot (RFC 6066), and the certificate's
        // IP SAN is what matches it.
        for (host, sni) in [("localhost", Some("localhost")), ("127.0.0.1", None)] {
            let (port, server) = tls_server(&pki, CANNED);
            let response = tls_call(
                &format!("https://{host}:{port}"),
                std::slice::from_ref(&pki.ca),
            )
            .unwrap();
            assert_eq!(response.status, 200);
            assert_eq!(response.body, b"{\"KeyId\":\"alias/transport\"}");
            let seen = server.join().unwrap();
            assert!(
                seen.handshaken && seen.handshake_error.is_none(),
                "{seen:?}"
            );
            assert_eq!(
                seen.version,
                Some(rustls::ProtocolVersion::TLSv1_3),
                "{host}"
            );
            assert_eq!(seen.sni.as_deref(), sni, "{host}");
            let request = String::from_utf8(seen.request).unwrap();
            assert!(request.starts_with("POST / HTTP/1.1\r\n"), "{request}");
            assert!(
                request.contains(&format!("\r\nhost: {host}:{port}\r\n")),
                "{request}"
            );
        }
    }

    /// Asserts `result` is an Unavailable naming a certificate problem `rule`, and that the
    /// server's handshake never completed and no request reached it.
    fn refused_before_any_request(
        result: Result<Response, TransportError>,
        server: std::thread::JoinHandle<Seen>,
        rule: &str,
    ) {
        let Err(TransportError::Unavailable(why)) = result else {
            panic!("an untrusted server was answered: {result:?}");
        };
        assert!(why.contains("certificate") && why.contains(rule), "{why}");
        let seen = server.join().unwrap();
        // The client hung up before its Finished: without application traffic keys no
        // request can have been sent, and the server read none.
        assert!(!seen.handshaken, "{seen:?}");
        assert!(seen.handshake_error.is_some(), "{seen:?}");
        assert!(seen.request.is_empty(), "{seen:?}");
    }

    #[test]
    fn https_without_the_ca_is_refused_before_the_request() {
        let pki = pki(&["localhost", "127.0.0.1"]);
        let (port, server) = tls_server(&pki, CANNED);
        let result = tls_call(&format!("https://127.0.0.1:{port}"), &[]);
        refused_before_any_request(result, server, "UnknownIssuer");
    }

    #[test]
    fn https_to_a_certificate_for_another_name_is_refused() {
        let pki = pki(&["other.example"]);
        for host in ["127.0.0.1", "localhost"] {
            let (port, server) = tls_server(&pki, CANNED);
            let result = tls_call(
                &format!("https://{host}:{port}"),
                std::slice::from_ref(&pki.ca),
            );
            refused_before_any_request(result, server, "not valid for name");
        }
    }
}
