//! The API client's https side against a local TLS server with an rcgen-made CA: the CA file
//! is trusted, TLS 1.3 is required, and the public roots do not trust a private CA.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed step is a failed test"
)]

use std::sync::Arc;

use http::Method;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use svid_broker_backends::Failure;
use svid_broker_backends::http::{ApiClient, ClientSettings};
use svid_broker_identity::secret::SecretString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

struct Pki {
    ca_pem: String,
    leaf: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test registry CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    Pki {
        ca_pem: ca.pem(),
        leaf: leaf.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

/// Serves `200 []` over TLS of `version` on 127.0.0.1; the base URL.
async fn tls_server(pki: &Pki, version: &'static rustls::SupportedProtocolVersion) -> String {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![pki.leaf.clone()], pki.key.clone_key())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    url
}

fn settings(url: &str, ca_file: Option<std::path::PathBuf>) -> ClientSettings {
    let mut settings = ClientSettings::new(url, "admin", SecretString::from("pw".to_owned()));
    settings.ca_file = ca_file;
    settings
}

#[tokio::test]
async fn https_with_the_configured_ca_and_tls_1_3_works() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let url = tls_server(&pki, &rustls::version::TLS13).await;
    let client = ApiClient::new(&settings(&url, Some(ca_file))).unwrap();
    let response = client
        .send(Method::GET, "/api/v2.0/projects", None)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"[]");
}

#[tokio::test]
async fn tls_1_2_only_servers_are_refused() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let url = tls_server(&pki, &rustls::version::TLS12).await;
    let client = ApiClient::new(&settings(&url, Some(ca_file))).unwrap();
    assert_eq!(
        client.send(Method::GET, "/", None).await.unwrap_err(),
        Failure::Unreachable {
            during: "tls handshake"
        }
    );
}

#[tokio::test]
async fn the_public_roots_do_not_trust_a_private_ca() {
    let pki = pki();
    let url = tls_server(&pki, &rustls::version::TLS13).await;
    let client = ApiClient::new(&settings(&url, None)).unwrap();
    assert_eq!(
        client.send(Method::GET, "/", None).await.unwrap_err(),
        Failure::Unreachable {
            during: "tls handshake"
        }
    );
}
