//! Issue 8 item 2: the realm listener under slowloris and oversized heads from one address,
//! and HTTP/2 prior knowledge refused unless `h2c`.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use base64::Engine as _;
use svid_broker_identity::clock::SystemClock;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

use super::*;
use crate::realm::{self, RealmState};
use crate::testutil::{AUDIENCE, BUILDER, Fixture, closed_within, connect_from, fds_and_rss};

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const SLOWLORIS: usize = 2_000;
const BIG_HEADERS: usize = 250;
const DEADLINE: Duration = Duration::from_secs(2);
const MARGIN: Duration = Duration::from_secs(3);

/// A realm on 127.0.0.1 under `options`; the governor for its counters.
async fn realm(
    fixture: &Fixture,
    options: HttpListenerOptions,
) -> (SocketAddr, Arc<Governor>, tokio::sync::oneshot::Sender<()>) {
    let state = RealmState::new(
        Arc::clone(&fixture.broker),
        Arc::new(SystemClock),
        "http://127.0.0.1:1",
        Arc::new(AtomicBool::new(true)),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let governor = Governor::new(options.limits);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_governed(
        listener,
        realm::router(state),
        Arc::clone(&governor),
        options,
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, governor, stop)
}

fn get_token(addr: SocketAddr, auth: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /token?service=registry.local&scope=repository:team/app:pull HTTP/1.1\r\n\
         Host: {addr}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_oversized_heads_from_one_address_neither_lock_out_others_nor_stay_open() {
    let fixture = Fixture::new();
    let options = HttpListenerOptions {
        limits: ConnectionLimits {
            first_request_timeout: DEADLINE,
            ..ConnectionLimits::default()
        },
        header_read_timeout: DEADLINE,
        ..HttpListenerOptions::default()
    };
    let (addr, governor, stop) = realm(&fixture, options).await;
    let (fds_before, rss_before) = fds_and_rss();

    let opened = Arc::new(AtomicUsize::new(0));
    let mut attackers = JoinSet::new();
    for n in 0..SLOWLORIS + BIG_HEADERS {
        // In bursts: the test's own connects must not overflow the kernel's accept queue
        // (connections the server never saw are not the server's to close).
        if n % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let opened = opened.clone();
        attackers.spawn(async move {
            let mut tcp = connect_from(ATTACKER, addr).await.unwrap();
            let t = Instant::now();
            if n < SLOWLORIS {
                // A request head that never ends.
                let _ = tcp
                    .write_all(b"GET /token HTTP/1.1\r\nHost: x\r\nX-Slow: a")
                    .await;
            } else {
                // Half of a 384 KiB header, sent as far as the server reads it.
                let mut head = b"GET /token HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
                head.resize(192 * 1024, b'a');
                let _ = tokio::time::timeout(DEADLINE, tcp.write_all(&head)).await;
            }
            opened.fetch_add(1, Ordering::SeqCst);
            let left = (DEADLINE + MARGIN).saturating_sub(t.elapsed());
            closed_within(tcp, left).await
        });
    }
    while opened.load(Ordering::SeqCst) < SLOWLORIS + BIG_HEADERS {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (fds_peak, rss_peak) = fds_and_rss();
    let open_peak = governor.open();
    assert!(
        open_peak > 0,
        "no attacker connection is open: the test proves nothing"
    );

    // A legitimate GET /token from 127.0.0.1 meanwhile.
    let jwt = fixture.jwt(BUILDER, AUDIENCE);
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{BUILDER}:{jwt}"))
    );
    let started = Instant::now();
    let (status, response) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::task::spawn_blocking(move || get_token(addr, &auth)),
    )
    .await
    .expect("legitimate GET /token took longer than 2 s")
    .unwrap();
    let served_in = started.elapsed();
    assert_eq!(status, 200, "{response}");

    let mut closed = 0;
    while let Some(result) = attackers.join_next().await {
        assert!(
            result.unwrap(),
            "an attacker connection outlived the deadline"
        );
        closed += 1;
    }
    assert_eq!(closed, SLOWLORIS + BIG_HEADERS);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (fds_after, rss_after) = fds_and_rss();
    assert_eq!(governor.open(), 0);
    eprintln!(
        "item 2: {SLOWLORIS} slowloris + {BIG_HEADERS} half-sent 384 KiB heads from {ATTACKER}; \
         open at peak {open_peak}, refused {}; GET /token in {served_in:?}; \
         fds {fds_before} -> {fds_peak} (both ends in this process) -> {fds_after}; \
         rss {rss_before} KiB -> {rss_peak} KiB -> {rss_after} KiB",
        governor.refused()
    );
    let _ = stop.send(());
}

/// The HTTP/2 connection preface and an empty SETTINGS frame; returns the first bytes back.
async fn send_h2_preface(addr: SocketAddr) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut reply = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut reply))
        .await
        .unwrap()
        .unwrap_or(0);
    reply.truncate(n);
    reply
}

#[tokio::test]
async fn http2_prior_knowledge_is_refused_unless_h2c_is_on() {
    let fixture = Fixture::new();
    let (addr, _, _stop) = realm(&fixture, HttpListenerOptions::default()).await;
    let reply = send_h2_preface(addr).await;
    // An HTTP/2 server answers with its SETTINGS frame (type 4 at offset 3).
    assert!(
        reply.is_empty() || reply.starts_with(b"HTTP/1.1 "),
        "answered http/2 by default: {reply:02x?}"
    );

    let (addr, _, _stop2) = realm(
        &fixture,
        HttpListenerOptions {
            h2c: true,
            ..HttpListenerOptions::default()
        },
    )
    .await;
    let reply = send_h2_preface(addr).await;
    assert_eq!(reply.get(3), Some(&0x04), "{reply:02x?}");
}

#[tokio::test]
async fn a_body_slower_than_the_body_read_timeout_is_cut_off() {
    let fixture = Fixture::new();
    let (addr, _, _stop) = realm(
        &fixture,
        HttpListenerOptions {
            body_read_timeout: Duration::from_millis(500),
            ..HttpListenerOptions::default()
        },
    )
    .await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 1000\r\n\r\ngrant_type=",
    )
    .await
    .unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut reply)).await;
    assert!(
        read.is_ok(),
        "the server waited for the body past its timeout"
    );
    assert!(
        !reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
}

/// Waits (bounded) until `governor` has no open connection.
async fn all_closed_within(governor: &Governor, limit: Duration) -> bool {
    let stop = Instant::now() + limit;
    while Instant::now() < stop {
        if governor.open() == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    governor.open() == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pipelines_requests_and_never_reads_is_closed_after_the_idle_timeout() {
    let fixture = Fixture::new();
    let idle = Duration::from_secs(1);
    let (addr, governor, _stop) = realm(
        &fixture,
        HttpListenerOptions {
            limits: ConnectionLimits {
                idle_timeout: idle,
                ..ConnectionLimits::default()
            },
            ..HttpListenerOptions::default()
        },
    )
    .await;
    // A small receive buffer, so the replies back up quickly into the server's send path.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let one = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let batch = one.repeat(64 * 1024 / one.len());
    // Pipeline until the server stops reading (a write that does not finish in 500 ms), at
    // most 64 MiB: hyper waits on its reply writes and reads nothing more.
    let mut sent = 0usize;
    while sent < 64 << 20 {
        match tokio::time::timeout(Duration::from_millis(500), tcp.write_all(batch.as_bytes()))
            .await
        {
            Ok(Ok(())) => sent += batch.len(),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    assert_eq!(
        governor.open(),
        1,
        "the connection closed before the test held it"
    );
    // Never read. The reply writes stall, so the idle timeout must close it even though the
    // server reads nothing (bound: idle timeout plus a generous margin).
    assert!(
        all_closed_within(&governor, idle + MARGIN + MARGIN).await,
        "a client that never read its replies held the connection (sent {sent} bytes)"
    );
    drop(tcp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_never_opens_its_window_does_not_hold_the_connection() {
    let fixture = Fixture::new();
    let (addr, governor, _stop) = realm(
        &fixture,
        HttpListenerOptions {
            limits: ConnectionLimits {
                idle_timeout: Duration::from_secs(1),
                ..ConnectionLimits::default()
            },
            body_read_timeout: Duration::from_millis(500),
            response_send_timeout: Duration::from_millis(500),
            h2c: true,
            ..HttpListenerOptions::default()
        },
    )
    .await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    // Window 0: the server can send response heads but not one byte of any body.
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(0)
        .handshake::<_, http_body_util::Empty<hyper::body::Bytes>>(TokioIo::new(tcp))
        .await
        .unwrap();
    let client = tokio::spawn(connection);
    let mut heads = Vec::new();
    for _ in 0..4 {
        let request = hyper::Request::get(format!("http://{addr}/healthz"))
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .unwrap();
        let head = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
            .await
            .expect("no response head")
            .unwrap();
        heads.push(head);
    }
    assert_eq!(governor.open(), 1);
    // The bodies never leave; the connection must close one request bound (1 s) later, well
    // inside the liveness bound.
    assert!(
        all_closed_within(&governor, Duration::from_secs(1) + MARGIN + MARGIN).await,
        "responses stuck behind a zero window held the connection"
    );
    drop(heads);
    drop(sender);
    let _ = tokio::time::timeout(Duration::from_secs(10), client).await;
}
