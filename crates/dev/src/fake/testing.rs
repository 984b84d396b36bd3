//! What the fakes' tests share: one request on a fresh connection with a hyper client
//! ([`Call`]), the answer as plain data ([`Resp`]), and RS256 JWTs signed by hand with shared
//! RSA keys ([`test_rsa_key`], [`rsa_jwk`], [`sign_rs256`]) for the fakes that verify an
//! external issuer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::fake::gitlab::FakeGitlab;
use crate::fake::harbor::FakeHarbor;
use crate::fake::nexus::FakeNexus;

/// How long [`Call::send`] waits for a whole answer.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A running fake a [`Call`] can reach.
pub(super) trait Listening {
    fn addr(&self) -> SocketAddr;
}

impl Listening for FakeHarbor {
    fn addr(&self) -> SocketAddr {
        FakeHarbor::addr(self)
    }
}

impl Listening for FakeGitlab {
    fn addr(&self) -> SocketAddr {
        FakeGitlab::addr(self)
    }
}

impl Listening for FakeNexus {
    fn addr(&self) -> SocketAddr {
        FakeNexus::addr(self)
    }
}

/// An answer: status, headers and the body as text.
#[derive(Debug)]
pub(super) struct Resp {
    pub(super) status: u16,
    pub(super) headers: HeaderMap,
    pub(super) body: String,
}

impl Resp {
    /// The body as JSON; panics with the body when it is not.
    pub(super) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// A header's value, when present and visible ASCII.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request, built up then sent on a fresh connection.
pub(super) struct Call<'a> {
    method: Method,
    path: String,
    authorization: Option<String>,
    headers: Vec<(&'a str, String)>,
    body: Option<Vec<u8>>,
}

impl<'a> Call<'a> {
    pub(super) fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            authorization: None,
            headers: Vec::new(),
            body: None,
        }
    }

    pub(super) fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    /// `Authorization: Basic base64(user:password)`, replacing any earlier one.
    pub(super) fn auth(mut self, user: &str, password: &str) -> Self {
        let encoded = STANDARD.encode(format!("{user}:{password}"));
        self.authorization = Some(format!("Basic {encoded}"));
        self
    }

    pub(super) fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// `body` as `application/json`.
    pub(super) fn json(self, body: &Value) -> Self {
        self.body("application/json", body.to_string().into_bytes())
    }

    /// `bytes` labelled `content_type`.
    pub(super) fn body(self, content_type: &'a str, bytes: Vec<u8>) -> Self {
        self.unlabelled_body(bytes)
            .header("content-type", content_type)
    }

    /// `bytes` without a `Content-Type`.
    pub(super) fn unlabelled_body(mut self, bytes: Vec<u8>) -> Self {
        self.body = Some(bytes);
        self
    }

    /// Sends the request on a fresh connection; `Err` when the connection ends unanswered.
    pub(super) async fn try_send(self, fake: &impl Listening) -> Result<Resp, hyper::Error> {
        let stream = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(self.method)
            .uri(self.path)
            .header("host", fake.addr().to_string());
        if let Some(authorization) = self.authorization {
            req = req.header("authorization", authorization);
        }
        for (name, value) in self.headers {
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(Bytes::from(self.body.unwrap_or_default())))
            .unwrap();
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// [`Call::try_send`] within [`CALL_TIMEOUT`]; panics without a whole answer.
    pub(super) async fn send(self, fake: &impl Listening) -> Resp {
        tokio::time::timeout(CALL_TIMEOUT, self.try_send(fake))
            .await
            .expect("answer in time")
            .expect("an answer")
    }
}

// === hand-signed RS256 JWTs ===

/// Three RSA keys shared by every test (generating one is slow in debug builds).
pub(super) fn test_rsa_key(index: usize) -> &'static RsaKeyPair {
    static KEYS: OnceLock<Vec<RsaKeyPair>> = OnceLock::new();
    &KEYS.get_or_init(|| {
        (0..3)
            .map(|_| RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
            .collect()
    })[index]
}

/// `key`'s public JWK as an issuer publishes it: RSA, `use` sig, `alg` RS256, `kid`.
pub(super) fn rsa_jwk(kid: &str, key: &RsaKeyPair) -> Value {
    let public = key.public_key();
    json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    })
}

/// A compact JWS of `header` and `claims` (as given, whatever they say) signed RS256 by `key`.
pub(super) fn sign_jws(key: &RsaKeyPair, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0u8; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// [`sign_jws`] with the header `{"alg": "RS256", "typ": "JWT", "kid": kid}`.
pub(super) fn sign_rs256(kid: &str, key: &RsaKeyPair, claims: &Value) -> String {
    sign_jws(
        key,
        &json!({ "alg": "RS256", "typ": "JWT", "kid": kid }),
        claims,
    )
}
