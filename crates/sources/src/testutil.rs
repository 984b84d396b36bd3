//! Test fixtures: rcgen CAs and leaves, and a tiny HTTPS server on 127.0.0.1 whose canned
//! response each test controls (so redirects, garbage and oversized bodies are easy to serve).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use svid_broker_identity::bundle::{JwtBundle, SpiffeBundle, X509Bundle};
use svid_broker_identity::id::TrustDomain;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::snapshot::AbortOnDrop;

/// A self-signed CA. With `spiffe_td`, it is a SPIFFE signing certificate (URI SAN, no path).
pub(crate) struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub(crate) fn new(name: &str, spiffe_td: Option<&str>) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        if let Some(td) = spiffe_td {
            params.subject_alt_names =
                vec![SanType::URI(format!("spiffe://{td}").try_into().unwrap())];
        }
        let key = KeyPair::generate().unwrap();
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    pub(crate) fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A bundle of `td` holding this CA as the one X.509 authority.
    pub(crate) fn spiffe_bundle(&self, td: &str) -> SpiffeBundle {
        let td = TrustDomain::parse(td).unwrap();
        let x509 = X509Bundle::new(td.clone(), vec![self.der()]).unwrap();
        SpiffeBundle::new(x509, JwtBundle::empty(td)).unwrap()
    }

    /// The same as a SPIFFE bundle document, with an optional `spiffe_sequence`.
    pub(crate) fn bundle_document(&self, td: &str, sequence: Option<u64>) -> String {
        let mut bundle = self
            .spiffe_bundle(td)
            .with_refresh_hint(Duration::from_secs(60));
        if let Some(seq) = sequence {
            bundle = bundle.with_sequence(seq);
        }
        bundle.to_document_json()
    }

    /// A Web PKI server certificate for 127.0.0.1.
    pub(crate) fn server_cert(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
        params
            .distinguished_name
            .push(DnType::CommonName, "bundle endpoint");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.leaf(&params)
    }

    /// An X.509-SVID for `id`: cA false, one URI SAN, keyUsage digitalSignature.
    pub(crate) fn svid(&self, id: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.leaf(&params)
    }

    fn leaf(
        &self,
        params: &CertificateParams,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone()], key)
    }
}

/// The canned response the test server sends: status line, extra headers, body.
#[derive(Clone, Debug)]
pub(crate) struct Canned {
    pub(crate) status: &'static str,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Send no `content-length`: the body runs until the connection closes.
    pub(crate) omit_length: bool,
}

impl Canned {
    pub(crate) fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: "200 OK",
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            omit_length: false,
        }
    }

    pub(crate) fn status(status: &'static str, headers: &[(&str, &str)]) -> Self {
        Self {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: Vec::new(),
            omit_length: false,
        }
    }
}

/// An HTTPS server on 127.0.0.1 answering every request with the current [`Canned`] response.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    response: Arc<Mutex<Canned>>,
    requests: Arc<AtomicUsize>,
    _task: AbortOnDrop,
}

impl TestServer {
    pub(crate) async fn start(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        first: Canned,
    ) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let response = Arc::new(Mutex::new(first));
        let requests = Arc::new(AtomicUsize::new(0));
        let (resp, reqs) = (Arc::clone(&response), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let (resp, reqs) = (Arc::clone(&resp), Arc::clone(&reqs));
                tokio::spawn(async move {
                    // A client that rejects our certificate fails the handshake; nothing to do.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    reqs.fetch_add(1, Ordering::SeqCst);
                    let canned = resp.lock().unwrap().clone();
                    let mut out = format!("HTTP/1.1 {}\r\nconnection: close\r\n", canned.status);
                    if !canned.omit_length {
                        out.push_str(&format!("content-length: {}\r\n", canned.body.len()));
                    }
                    for (k, v) in &canned.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    let mut bytes = out.into_bytes();
                    bytes.extend_from_slice(&canned.body);
                    let _ = tls.write_all(&bytes).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self {
            addr,
            response,
            requests,
            _task: AbortOnDrop(task),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    pub(crate) fn set(&self, canned: Canned) {
        *self.response.lock().unwrap() = canned;
    }

    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}
