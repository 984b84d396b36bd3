use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use super::*;
use crate::authorize::AuthorizeError;
use crate::bundle::{BundleSet, JwtBundle, SpiffeBundle, X509Bundle};
use crate::id::TrustDomain;
use crate::x509::fixtures::{self, Ca};

const CLIENT_ID: &str = "spiffe://example.org/ns/prod/sa/client";
const SERVER_ID: &str = "spiffe://example.org/ns/prod/sa/server";

/// rustls asks this for "now" during the handshake: pinned inside the fixtures' validity window.
#[derive(Debug)]
struct FixedTime;

impl TimeProvider for FixedTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_secs(
            fixtures::NOW_SECS,
        )))
    }
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn provider_with(td: &str, roots: Vec<CertificateDer<'static>>) -> Arc<dyn BundleProvider> {
    let td = TrustDomain::parse(td).unwrap();
    let x509 = X509Bundle::new(td.clone(), roots).unwrap();
    let mut set = BundleSet::new();
    set.insert(SpiffeBundle::new(x509, JwtBundle::empty(td)).unwrap())
        .unwrap();
    Arc::new(Arc::new(set))
}

struct Party {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn party(ca: &Ca, spiffe_id: &str) -> Party {
    let (cert, key) = ca.leaf(spiffe_id);
    Party {
        chain: vec![cert],
        key: PrivateKeyDer::from(key),
    }
}

fn connections(
    client: Party,
    server: Party,
    server_bundles: Arc<dyn BundleProvider>,
    client_authorizes: Authorizer,
    client_bundles: Arc<dyn BundleProvider>,
    server_authorizes: Authorizer,
) -> (ClientConnection, ServerConnection) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let time: Arc<dyn TimeProvider> = Arc::new(FixedTime);
    let server_cfg = ServerConfig::builder_with_details(Arc::clone(&provider), Arc::clone(&time))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(Arc::new(SpiffeClientCertVerifier::new(
            server_bundles,
            client_authorizes,
        )))
        .with_single_cert(server.chain, server.key)
        .unwrap();
    let client_cfg = ClientConfig::builder_with_details(provider, time)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerCertVerifier::new(
            client_bundles,
            server_authorizes,
        )))
        .with_client_auth_cert(client.chain, client.key)
        .unwrap();
    // The name is deliberately unrelated to the server's certificate: it is not checked.
    let name = ServerName::try_from("not-checked.invalid").unwrap();
    (
        ClientConnection::new(Arc::new(client_cfg), name).unwrap(),
        ServerConnection::new(Arc::new(server_cfg)).unwrap(),
    )
}

#[derive(Debug)]
enum Failed {
    Client(Error),
    Server(Error),
}

/// Moves bytes one way; returns whether any moved.
fn transfer(from: &mut Connection, to: &mut Connection) -> bool {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let moved = !buf.is_empty();
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
    }
    moved
}

/// Pumps both sides until neither has anything to send; bounded.
fn handshake(
    client: ClientConnection,
    server: ServerConnection,
) -> Result<(Connection, Connection), Failed> {
    let mut c = Connection::from(client);
    let mut s = Connection::from(server);
    for _ in 0..16 {
        let a = transfer(&mut c, &mut s);
        s.process_new_packets().map_err(Failed::Server)?;
        let b = transfer(&mut s, &mut c);
        c.process_new_packets().map_err(Failed::Client)?;
        if !a && !b && !c.is_handshaking() && !s.is_handshaking() {
            return Ok((c, s));
        }
    }
    panic!("handshake did not settle in 16 rounds");
}

fn other_error<T: std::error::Error + 'static>(e: &Error) -> &T {
    match e {
        Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<T>().unwrap()
        }
        other => panic!("not an OtherError: {other:?}"),
    }
}

#[test]
fn authorized_mutual_tls_succeeds_and_exposes_peer_ids() {
    let root = Ca::root(fixtures::TD);
    let bundles = provider_with(fixtures::TD, vec![root.cert().clone()]);
    let (client, server) = connections(
        party(&root, CLIENT_ID),
        party(&root, SERVER_ID),
        Arc::clone(&bundles),
        Authorizer::exact(id(CLIENT_ID)),
        bundles,
        Authorizer::exact(id(SERVER_ID)),
    );
    let (c, s) = handshake(client, server).unwrap();
    assert_eq!(
        peer_spiffe_id(s.peer_certificates().unwrap()),
        Some(id(CLIENT_ID))
    );
    assert_eq!(
        peer_spiffe_id(c.peer_certificates().unwrap()),
        Some(id(SERVER_ID))
    );
}

#[test]
fn server_refuses_an_unauthorized_client_id() {
    let root = Ca::root(fixtures::TD);
    let bundles = provider_with(fixtures::TD, vec![root.cert().clone()]);
    let (client, server) = connections(
        party(&root, "spiffe://example.org/ns/prod/sa/intruder"),
        party(&root, SERVER_ID),
        Arc::clone(&bundles),
        Authorizer::exact(id(CLIENT_ID)),
        bundles,
        Authorizer::exact(id(SERVER_ID)),
    );
    match handshake(client, server) {
        Err(Failed::Server(e)) => {
            let AuthorizeError::NotExact { id: got, .. } = other_error::<AuthorizeError>(&e) else {
                panic!("{e:?}");
            };
            assert_eq!(got.as_str(), "spiffe://example.org/ns/prod/sa/intruder");
        }
        other => panic!("expected a server-side failure, got {other:?}"),
    }
}

#[test]
fn client_refuses_an_unauthorized_server_id() {
    let root = Ca::root(fixtures::TD);
    let bundles = provider_with(fixtures::TD, vec![root.cert().clone()]);
    let (client, server) = connections(
        party(&root, CLIENT_ID),
        party(&root, "spiffe://example.org/ns/prod/sa/impostor"),
        Arc::clone(&bundles),
        Authorizer::exact(id(CLIENT_ID)),
        bundles,
        Authorizer::exact(id(SERVER_ID)),
    );
    match handshake(client, server) {
        Err(Failed::Client(e)) => {
            assert!(matches!(
                other_error::<AuthorizeError>(&e),
                AuthorizeError::NotExact { .. }
            ));
        }
        other => panic!("expected a client-side failure, got {other:?}"),
    }
}

#[test]
fn client_from_another_trust_domain_is_refused() {
    let root = Ca::root(fixtures::TD);
    let other_root = Ca::root(fixtures::OTHER_TD);
    let server_bundles = provider_with(fixtures::TD, vec![root.cert().clone()]);
    let client_bundles = provider_with(fixtures::TD, vec![root.cert().clone()]);
    let (client, server) = connections(
        party(&other_root, "spiffe://other.example/ns/prod/sa/client"),
        party(&root, SERVER_ID),
        server_bundles,
        // Even an authorizer that would accept the ID cannot help: there is no bundle for it.
        Authorizer::member_of(TrustDomain::parse(fixtures::OTHER_TD).unwrap()),
        client_bundles,
        Authorizer::exact(id(SERVER_ID)),
    );
    match handshake(client, server) {
        Err(Failed::Server(e)) => {
            assert_eq!(
                other_error::<X509SvidError>(&e),
                &X509SvidError::NoBundle {
                    trust_domain: TrustDomain::parse(fixtures::OTHER_TD).unwrap()
                }
            );
        }
        other => panic!("expected a server-side failure, got {other:?}"),
    }
}

#[test]
fn client_signed_by_an_untrusted_ca_is_unknown_issuer() {
    let root = Ca::root(fixtures::TD);
    let rogue = Ca::root_named(fixtures::TD, "rogue root");
    let bundles = provider_with(fixtures::TD, vec![root.cert().clone()]);
    let (client, server) = connections(
        party(&rogue, CLIENT_ID),
        party(&root, SERVER_ID),
        Arc::clone(&bundles),
        Authorizer::exact(id(CLIENT_ID)),
        bundles,
        Authorizer::exact(id(SERVER_ID)),
    );
    match handshake(client, server) {
        Err(Failed::Server(e)) => assert_eq!(
            e,
            Error::InvalidCertificate(CertificateError::UnknownIssuer)
        ),
        other => panic!("expected a server-side failure, got {other:?}"),
    }
}

#[test]
fn verifiers_declare_tls13_only_behaviour() {
    let root = Ca::root(fixtures::TD);
    let bundles = provider_with(fixtures::TD, vec![root.cert().clone()]);
    let cv = SpiffeClientCertVerifier::new(Arc::clone(&bundles), Authorizer::exact(id(CLIENT_ID)));
    let sv = SpiffeServerCertVerifier::new(bundles, Authorizer::exact(id(SERVER_ID)));
    assert!(cv.offer_client_auth());
    assert!(cv.client_auth_mandatory());
    assert!(cv.root_hint_subjects().is_empty());
    assert!(!cv.supported_verify_schemes().is_empty());
    assert_eq!(cv.supported_verify_schemes(), sv.supported_verify_schemes());

    // rustls offers no public constructor for a handshake signature, and the workspace builds
    // rustls without TLS 1.2, so the refusal is checked on the error the trait methods return.
    match tls12_refused() {
        Error::Other(OtherError(inner)) => assert_eq!(
            inner.downcast_ref::<TlsVerifyError>(),
            Some(&TlsVerifyError::Tls12NotSupported)
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn peer_spiffe_id_needs_a_single_valid_uri_san() {
    assert_eq!(peer_spiffe_id(&[]), None);
    let fx = fixtures::leaf_two_uri_sans();
    assert_eq!(peer_spiffe_id(&fx.chain), None);
    let fx = fixtures::good_p256();
    assert_eq!(peer_spiffe_id(&fx.chain), Some(id(fixtures::LEAF_ID)));
}

#[test]
fn expired_client_certificate_reason_survives() {
    let root = Ca::root(fixtures::TD);
    let bundles = provider_with(fixtures::TD, vec![root.cert().clone()]);
    let expired = fixtures::expired_signed_by(&root);
    let client = Party {
        chain: expired.chain,
        key: PrivateKeyDer::from(expired.leaf_key),
    };
    let (client, server) = connections(
        client,
        party(&root, SERVER_ID),
        Arc::clone(&bundles),
        Authorizer::member_of(TrustDomain::parse(fixtures::TD).unwrap()),
        bundles,
        Authorizer::exact(id(SERVER_ID)),
    );
    match handshake(client, server) {
        Err(Failed::Server(e)) => assert!(matches!(
            other_error::<X509SvidError>(&e),
            X509SvidError::CertExpired { index: 0, .. }
        )),
        other => panic!("expected a server-side failure, got {other:?}"),
    }
}

#[test]
fn verifiers_read_the_current_bundles_at_each_handshake() {
    let root = Ca::root(fixtures::TD);
    let swap = Arc::new(arc_swap::ArcSwap::from_pointee(BundleSet::new()));
    let server_bundles: Arc<dyn BundleProvider> = Arc::clone(&swap) as Arc<dyn BundleProvider>;
    let client_bundles = provider_with(fixtures::TD, vec![root.cert().clone()]);
    let attempt = || {
        let (client, server) = connections(
            party(&root, CLIENT_ID),
            party(&root, SERVER_ID),
            Arc::clone(&server_bundles),
            Authorizer::exact(id(CLIENT_ID)),
            Arc::clone(&client_bundles),
            Authorizer::exact(id(SERVER_ID)),
        );
        handshake(client, server)
    };

    // No bundle for the client's trust domain yet: refused.
    assert!(matches!(attempt(), Err(Failed::Server(_))));

    let td = TrustDomain::parse(fixtures::TD).unwrap();
    let x509 = X509Bundle::new(td.clone(), vec![root.cert().clone()]).unwrap();
    let mut set = BundleSet::new();
    set.insert(SpiffeBundle::new(x509, JwtBundle::empty(td)).unwrap())
        .unwrap();
    swap.store(Arc::new(set));

    // Same verifier type, new snapshot: accepted.
    attempt().unwrap();
}

// === review additions: chain defects are refused through both verifiers ===

/// A party presenting a fixture's chain and key.
fn fixture_party(fx: &fixtures::Fixture) -> Party {
    Party {
        chain: fx.chain.clone(),
        key: PrivateKeyDer::from(fx.leaf_key.clone_key()),
    }
}

/// Handshakes with the fixture on the client side (the server verifies it), then on the server
/// side (the client verifies it); returns the two refusals.
fn refused_both_ways(fx: &fixtures::Fixture) -> (Error, Error) {
    let td = TrustDomain::parse(fixtures::TD).unwrap();
    let other = Ca::root(fixtures::TD);
    let fixture_bundles = provider_with(fx.bundle_td, fx.roots.clone());
    let other_bundles = provider_with(fixtures::TD, vec![other.cert().clone()]);

    let (client, server) = connections(
        fixture_party(fx),
        party(&other, SERVER_ID),
        Arc::clone(&fixture_bundles),
        Authorizer::member_of(td.clone()),
        Arc::clone(&other_bundles),
        Authorizer::exact(id(SERVER_ID)),
    );
    let by_server = match handshake(client, server) {
        Err(Failed::Server(e)) => e,
        other => panic!("expected the server to refuse, got {other:?}"),
    };

    let (client, server) = connections(
        party(&other, CLIENT_ID),
        fixture_party(fx),
        other_bundles,
        Authorizer::exact(id(CLIENT_ID)),
        fixture_bundles,
        Authorizer::member_of(td),
    );
    let by_client = match handshake(client, server) {
        Err(Failed::Client(e)) => e,
        other => panic!("expected the client to refuse, got {other:?}"),
    };
    (by_server, by_client)
}

#[test]
fn good_fixture_chains_pass_both_verifiers() {
    // The control for the refusals below: the same plumbing accepts well-formed chains.
    for fx in [fixtures::good_p256(), fixtures::good_with_intermediate()] {
        let td = TrustDomain::parse(fixtures::TD).unwrap();
        let other = Ca::root(fixtures::TD);
        let fixture_bundles = provider_with(fx.bundle_td, fx.roots.clone());
        let other_bundles = provider_with(fixtures::TD, vec![other.cert().clone()]);
        let (client, server) = connections(
            fixture_party(&fx),
            party(&other, SERVER_ID),
            Arc::clone(&fixture_bundles),
            Authorizer::member_of(td.clone()),
            Arc::clone(&other_bundles),
            Authorizer::exact(id(SERVER_ID)),
        );
        handshake(client, server).unwrap();
        let (client, server) = connections(
            party(&other, CLIENT_ID),
            fixture_party(&fx),
            other_bundles,
            Authorizer::exact(id(CLIENT_ID)),
            fixture_bundles,
            Authorizer::member_of(td),
        );
        handshake(client, server).unwrap();
    }
}

#[test]
fn leaf_and_intermediate_defects_are_refused_with_their_reason() {
    let cases = [
        (fixtures::leaf_ca_true(), X509SvidError::LeafIsCa),
        (
            fixtures::leaf_two_uri_sans(),
            X509SvidError::LeafMultipleUriSans { count: 2 },
        ),
        (
            fixtures::leaf_no_key_usage(),
            X509SvidError::LeafMissingKeyUsage,
        ),
        (
            fixtures::intermediate_not_ca(),
            X509SvidError::IntermediateNotCa { index: 1 },
        ),
    ];
    for (fx, expected) in cases {
        let (by_server, by_client) = refused_both_ways(&fx);
        assert_eq!(other_error::<X509SvidError>(&by_server), &expected);
        assert_eq!(other_error::<X509SvidError>(&by_client), &expected);
    }
}

#[test]
fn verifier_methods_refuse_defects_directly() {
    let now = UnixTime::since_unix_epoch(Duration::from_secs(fixtures::NOW_SECS));
    for (fx, expected) in [
        (fixtures::leaf_ca_true(), X509SvidError::LeafIsCa),
        (
            fixtures::intermediate_not_ca(),
            X509SvidError::IntermediateNotCa { index: 1 },
        ),
    ] {
        let td = TrustDomain::parse(fixtures::TD).unwrap();
        let bundles = provider_with(fx.bundle_td, fx.roots.clone());
        let client =
            SpiffeClientCertVerifier::new(Arc::clone(&bundles), Authorizer::member_of(td.clone()));
        let e = client
            .verify_client_cert(&fx.chain[0], &fx.chain[1..], now)
            .unwrap_err();
        assert_eq!(other_error::<X509SvidError>(&e), &expected);
        let server = SpiffeServerCertVerifier::new(bundles, Authorizer::member_of(td));
        let name = ServerName::try_from("not-checked.invalid").unwrap();
        let e = server
            .verify_server_cert(&fx.chain[0], &fx.chain[1..], &name, &[], now)
            .unwrap_err();
        assert_eq!(other_error::<X509SvidError>(&e), &expected);
    }
}

#[test]
fn authenticate_only_accepts_any_id_of_a_trusted_domain_and_nothing_else() {
    let root = Ca::root(fixtures::TD);
    let verifier = SpiffeClientCertVerifier::authenticate_only(provider_with(
        fixtures::TD,
        vec![root.cert().clone()],
    ));
    assert!(verifier.authorizer().is_none());
    let now = UnixTime::since_unix_epoch(fixtures::now().duration_since(UNIX_EPOCH).unwrap());
    // Any workload of the trusted domain passes the handshake: authorization comes later.
    for who in [CLIENT_ID, "spiffe://example.org/anything/else"] {
        let (cert, _) = root.leaf(who);
        assert!(
            verifier.verify_client_cert(&cert, &[], now).is_ok(),
            "{who}"
        );
    }
    // Authentication still holds: a rogue CA with the same name, and another trust domain, fail.
    let rogue = Ca::root_named(fixtures::TD, "rogue root");
    let (cert, _) = rogue.leaf(CLIENT_ID);
    assert!(verifier.verify_client_cert(&cert, &[], now).is_err());
    let other = Ca::root(fixtures::OTHER_TD);
    let (cert, _) = other.leaf("spiffe://other.example/ns/prod/sa/client");
    let err = verifier.verify_client_cert(&cert, &[], now).unwrap_err();
    assert!(matches!(
        other_error::<X509SvidError>(&err),
        X509SvidError::NoBundle { .. }
    ));
}
