use std::net::{IpAddr, Ipv4Addr};

use super::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn limits(total: usize, per_ip: usize, pending: usize) -> ConnectionLimits {
    ConnectionLimits {
        max_connections: total,
        max_connections_per_ip: per_ip,
        max_pending_handshakes_per_ip: pending,
        ..ConnectionLimits::default()
    }
}

#[test]
fn pending_handshakes_are_capped_per_ip_and_released_when_done() {
    let governor = Governor::new(limits(100, 10, 2));
    let mut a = governor.admit(ip(2)).unwrap();
    let _b = governor.admit(ip(2)).unwrap();
    assert_eq!(governor.admit(ip(2)).unwrap_err(), Refusal::PeerHandshakes);
    // Another source is not affected.
    let _other = governor.admit(ip(1)).unwrap();
    a.handshake_done();
    let _c = governor.admit(ip(2)).unwrap();
    assert_eq!(governor.refused(), 1);
}

#[test]
fn open_connections_are_capped_per_ip_and_overall_and_released_on_drop() {
    let governor = Governor::new(limits(3, 2, 2));
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut a = governor.admit(ip(2)).unwrap();
        a.handshake_done();
        held.push(a);
    }
    assert_eq!(governor.admit(ip(2)).unwrap_err(), Refusal::PeerFull);
    let third = governor.admit(ip(3)).unwrap();
    assert_eq!(governor.admit(ip(4)).unwrap_err(), Refusal::ListenerFull);
    drop(third);
    drop(held);
    assert_eq!(governor.open(), 0);
    // IPv4-mapped IPv6 counts as the same address.
    let _v4 = governor.admit(ip(9)).unwrap();
    let _v4b = governor.admit(ip(9)).unwrap();
    let mapped = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 9).to_ipv6_mapped());
    assert_eq!(governor.admit(mapped).unwrap_err(), Refusal::PeerFull);
}

#[tokio::test]
async fn a_connection_without_a_request_fails_its_reads_after_the_deadline() {
    use tokio::io::AsyncReadExt as _;
    let mut l = limits(10, 10, 10);
    l.first_request_timeout = Duration::from_millis(300);
    l.idle_timeout = Duration::from_secs(5);
    let governor = Governor::new(l);
    let (client, server) = tokio::io::duplex(64);
    let mut io = GovernedIo::new(server, governor.admit(ip(2)).unwrap());
    let start = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(10), io.read(&mut [0u8; 8]))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    // Not before the deadline (the upper bound is the liveness timeout above).
    assert!(start.elapsed() >= Duration::from_millis(300));
    drop(client);
}

#[tokio::test]
async fn a_request_in_flight_holds_the_connection_and_idle_counts_from_its_end() {
    use tokio::io::AsyncReadExt as _;
    let mut l = limits(10, 10, 10);
    l.first_request_timeout = Duration::from_millis(100);
    l.idle_timeout = Duration::from_millis(300);
    let governor = Governor::new(l);
    let (_client, server) = tokio::io::duplex(64);
    let mut io = GovernedIo::new(server, governor.admit(ip(2)).unwrap());
    let activity = Arc::clone(io.activity());
    let start = Instant::now();
    let request = InFlight::start(&activity);
    let ender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        drop(request);
    });
    let err = tokio::time::timeout(Duration::from_secs(10), io.read(&mut [0u8; 8]))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    // Held past the first-request deadline while in flight (800 ms), then idle 300 ms more.
    assert!(
        start.elapsed() >= Duration::from_millis(1100),
        "{:?}",
        start.elapsed()
    );
    ender.await.unwrap();
    drop(io);
    assert_eq!(governor.open(), 0);
}

/// Writes to `io` until a write fails, at most `limit` long; the error, if any.
async fn write_until_error(
    io: &mut GovernedIo<tokio::io::DuplexStream>,
    limit: Duration,
) -> Option<io::Error> {
    use tokio::io::AsyncWriteExt as _;
    let chunk = [0u8; 1024];
    let stop = Instant::now() + limit;
    // Bounded by `limit`: each turn either fails, makes progress or times out.
    loop {
        let left = stop.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, io.write(&chunk)).await {
            Err(_) => return None,
            Ok(Err(error)) => return Some(error),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_write_the_peer_never_takes_fails_after_the_idle_timeout_even_in_flight() {
    let mut l = limits(10, 10, 10);
    l.idle_timeout = Duration::from_millis(300);
    let governor = Governor::new(l);
    // The peer never reads: the duplex buffer fills and writes stay pending.
    let (_client, server) = tokio::io::duplex(64);
    let mut io = GovernedIo::new(server, governor.admit(ip(2)).unwrap());
    // A request in flight (a response being written) does not exempt a stalled write.
    let _request = InFlight::start(io.activity());
    let start = Instant::now();
    let error = write_until_error(&mut io, Duration::from_secs(10))
        .await
        .expect("a write the peer never took stayed pending");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert!(
        error.to_string().contains("read nothing we sent"),
        "{error}"
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn an_expired_connection_fails_its_writes_and_flushes_without_a_read() {
    use tokio::io::AsyncWriteExt as _;
    let mut l = limits(10, 10, 10);
    l.first_request_timeout = Duration::from_millis(200);
    let governor = Governor::new(l);
    let (_client, server) = tokio::io::duplex(1 << 20);
    let mut io = GovernedIo::new(server, governor.admit(ip(2)).unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let error = io.write(b"late").await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    let error = io.flush().await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
}

#[tokio::test]
async fn a_request_past_its_bound_closes_the_connection() {
    use tokio::io::AsyncReadExt as _;
    let l = limits(10, 10, 10);
    let governor = Governor::new(l);
    let (_client, server) = tokio::io::duplex(64);
    let bounds = ActivityBounds::new(Duration::from_millis(300), None);
    let mut io = GovernedIo::new(server, governor.admit(ip(2)).unwrap()).with_bounds(bounds);
    // Held for good, as by an HTTP/2 response whose body the client's window never lets out.
    let _request = InFlight::start(io.activity());
    let start = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(10), io.read(&mut [0u8; 8]))
        .await
        .expect("a request in flight past its bound held the connection")
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn past_its_maximum_age_a_connection_closes_once_idle() {
    use tokio::io::AsyncReadExt as _;
    let mut l = limits(10, 10, 10);
    l.idle_timeout = Duration::from_secs(30);
    let governor = Governor::new(l);
    let (_client, server) = tokio::io::duplex(64);
    let bounds = ActivityBounds::new(Duration::from_secs(30), Some(Duration::from_millis(300)));
    let mut io = GovernedIo::new(server, governor.admit(ip(2)).unwrap()).with_bounds(bounds);
    drop(InFlight::start(io.activity()));
    let err = tokio::time::timeout(Duration::from_secs(10), io.read(&mut [0u8; 8]))
        .await
        .expect("an idle connection past its maximum age stayed open")
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}
