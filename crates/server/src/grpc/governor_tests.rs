//! Issue 8 item 1: idle TLS connections and silent TCP connections from one address neither
//! lock out a client on another address nor stay open past the first-request deadline.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use svid_broker_client::transport::{client_tls_config, connect, with_bearer};
use svid_broker_identity::authorize::Authorizer;
use svid_broker_identity::bundle::BundleProvider;
use svid_broker_identity::clock::SystemClock;
use svid_broker_identity::tls::SpiffeClientCertVerifier;
use svid_broker_proto::exchange::token_exchange_client::TokenExchangeClient;
use svid_broker_proto::exchange::{ExchangeRequest, TokenType};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

use super::{ServerSvid, certified_key, serve_governed, server_tls_config};
use crate::listen::{ConnectionLimits, Governor};
use crate::testutil::{BUILDER, Fixture, SERVICE, closed_within, connect_from, fds_and_rss, id};

const BROKER_ID: &str = "spiffe://example.org/svid-broker";
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const IDLE_TLS: usize = 2_000;
const SILENT_TCP: usize = 500;
/// The configured first-request deadline.
const DEADLINE: Duration = Duration::from_secs(3);
/// Slack on top of the deadline for a loaded 2-core machine.
const MARGIN: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_silent_connections_from_one_address_neither_lock_out_others_nor_stay_open() {
    let fixture = Fixture::new();
    let bundles: Arc<dyn BundleProvider> = Arc::new(Arc::new(fixture.td.bundle_set().unwrap()));
    let own = fixture.td.issue_x509_svid(&id(BROKER_ID)).unwrap();
    let svid = Arc::new(ServerSvid::new(
        certified_key(own.chain().to_vec(), own.private_key().to_rustls()).unwrap(),
    ));
    let verifier = Arc::new(SpiffeClientCertVerifier::new(
        Arc::clone(&bundles),
        Authorizer::MemberOf(fixture.td.trust_domain().clone()),
    ));
    let server_config = server_tls_config(svid, verifier).unwrap();
    let client_config =
        client_tls_config(Arc::clone(&bundles), Authorizer::Exact(id(BROKER_ID)), None).unwrap();

    let limits = ConnectionLimits {
        first_request_timeout: DEADLINE,
        ..ConnectionLimits::default()
    };
    let governor = Governor::new(limits);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_governed(
        Arc::clone(&fixture.broker),
        Arc::new(SystemClock),
        listener,
        server_config,
        Arc::clone(&governor),
        async move {
            let _ = stopped.await;
        },
    ));

    let (fds_before, rss_before) = fds_and_rss();
    // 2,000 TLS connections that finish the handshake (those the governor admits) and then
    // send nothing, at most 16 handshakes at a time; then 500 TCP connections that never
    // send a ClientHello.
    let handshakes = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let mut attackers = JoinSet::new();
    for _ in 0..IDLE_TLS {
        let (handshakes, opened, gate) = (handshakes.clone(), opened.clone(), gate.clone());
        let connector = TlsConnector::from(Arc::clone(&client_config));
        attackers.spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let tcp = connect_from(ATTACKER, addr).await.unwrap();
            let opened_at = Instant::now();
            let name = ServerName::try_from("svid-broker").unwrap();
            let tls = tokio::time::timeout(MARGIN, connector.connect(name, tcp)).await;
            drop(permit);
            opened.fetch_add(1, Ordering::SeqCst);
            match tls {
                Ok(Ok(stream)) => {
                    handshakes.fetch_add(1, Ordering::SeqCst);
                    let limit = (DEADLINE + MARGIN).saturating_sub(opened_at.elapsed());
                    ("idle tls", closed_within(stream, limit).await)
                }
                // Refused at accept: closed at once.
                Ok(Err(_)) => ("refused tls", true),
                Err(_) => ("stalled tls handshake", false),
            }
        });
    }
    while opened.load(Ordering::SeqCst) < IDLE_TLS {
        assert!(!attackers.is_empty());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in 0..SILENT_TCP {
        // In bursts of 50: the test's own connects must not overflow the kernel's accept queue
        // (connections the server never saw are not the server's to close).
        if n % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let opened = opened.clone();
        attackers.spawn(async move {
            let tcp = connect_from(ATTACKER, addr).await.unwrap();
            opened.fetch_add(1, Ordering::SeqCst);
            let t = Instant::now();
            let ok = closed_within(tcp, DEADLINE + MARGIN).await;
            if !ok {
                eprintln!("silent tcp still open after {:?}", t.elapsed());
            }
            ("silent tcp", ok)
        });
    }
    while opened.load(Ordering::SeqCst) < IDLE_TLS + SILENT_TCP {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let idle_admitted = handshakes.load(Ordering::SeqCst);
    assert!(
        idle_admitted > 0,
        "no idle tls connection got through the handshake"
    );
    assert!(
        idle_admitted <= limits.max_connections_per_ip,
        "{idle_admitted}"
    );
    let open_during_attack = governor.open();
    let (fds_peak, rss_peak) = fds_and_rss();
    assert!(open_during_attack > 0);

    // A client on 127.0.0.1 meanwhile: connect, handshake and Exchange well within 2 s.
    let started = Instant::now();
    let channel = tokio::time::timeout(Duration::from_secs(2), connect(addr, client_config))
        .await
        .expect("legitimate client locked out")
        .unwrap();
    let mut client = TokenExchangeClient::new(channel);
    let request = ExchangeRequest {
        requested_token_type: TokenType::RegistryAccessToken.into(),
        audience: SERVICE.to_owned(),
        scope: vec!["repository:team/app:pull".to_owned()],
        ..Default::default()
    };
    let response = tokio::time::timeout(
        Duration::from_secs(2).saturating_sub(started.elapsed()),
        client.exchange(
            with_bearer(request, &fixture.jwt(BUILDER, crate::testutil::AUDIENCE)).unwrap(),
        ),
    )
    .await
    .expect("legitimate exchange took longer than 2 s")
    .unwrap()
    .into_inner();
    let served_in = started.elapsed();
    assert_eq!(response.scope, ["repository:team/app:pull"]);

    // Every attacker connection is closed by the server within the deadline (plus margin).
    let mut closed = 0;
    while let Some(result) = attackers.join_next().await {
        let (kind, ok) = result.unwrap();
        assert!(
            ok,
            "an attacker {kind} connection outlived the deadline (open {}, refused {}, idle admitted {})",
            governor.open(),
            governor.refused(),
            handshakes.load(Ordering::SeqCst)
        );
        closed += 1;
    }
    assert_eq!(closed, IDLE_TLS + SILENT_TCP);
    let (fds_after, rss_after) = fds_and_rss();
    eprintln!(
        "item 1: {IDLE_TLS} idle tls ({idle_admitted} admitted) + {SILENT_TCP} silent tcp from {ATTACKER}; \
         open at attack peak {open_during_attack}; refused at accept {}; legitimate exchange in {served_in:?}; \
         fds {fds_before} -> {fds_peak} (both ends in this process) -> {fds_after}; \
         rss {rss_before} KiB -> {rss_peak} KiB -> {rss_after} KiB",
        governor.refused()
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
