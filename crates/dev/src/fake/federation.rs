//! Verifying the broker's federated JWTs as a registry or cloud does, for the fakes of
//! services that trust an external OIDC issuer (Quay's robot federation, Artifactory's OIDC
//! integration; later AWS STS, Google STS, Entra).
//!
//! [`FederatedJwtVerifier::verify_from`] does what those services do with an external issuer's
//! token: it refuses an `iss` the caller does not trust before fetching anything, fetches
//! `{iss}/.well-known/openid-configuration`, requires its `issuer` to equal `iss` exactly,
//! fetches its `jwks_uri`, finds the header `kid` there, requires RS256 and an RSA signing key,
//! verifies the signature and checks `exp` (no leeway), `nbf` and `iat`. Keys are cached per
//! issuer; an unknown `kid` refetches the JWKS once per verification, as real verifiers do on
//! rotation. The caller checks `aud` and `sub` against its own trust configuration.
//!
//! The fakes reach only loopback over plain HTTP: there is no TLS client here, so an `https`
//! issuer or a non-loopback host is refused. Each fetch has a 2 s deadline, a 64 KiB body cap
//! and no redirects.
//!
//! [`DocumentHost`] serves the discovery document and JWKS of a test issuer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, Request, header};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};

pub use crate::fake::harbor::FakeError;
use crate::fake::http::{Hangup, Reply, Service, empty_reply, reply};
use crate::fake::server::{FakeServer, lock};

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest discovery document or JWKS read, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Deadline of one fetch (connect, request and whole body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Most keys read from one JWKS (AWS resolves a `kid` among the first 100).
pub const MAX_JWKS_KEYS: usize = 100;
/// The only JWS algorithm accepted: the header `alg` must be exactly this.
pub const ACCEPTED_ALGORITHM: &str = "RS256";
/// Appended to `iss` to find the discovery document.
pub const DISCOVERY_SUFFIX: &str = "/.well-known/openid-configuration";

// === JwtRejection ===

/// Why a federated JWT was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtRejection {
    /// The token is not a compact JWS with JSON header and payload, or is over
    /// [`MAX_TOKEN_BYTES`], or a claim has the wrong type.
    #[error("malformed token: {what}")]
    Malformed {
        /// What is wrong.
        what: &'static str,
    },
    /// `iss` is not among the caller's trusted issuers (nothing was fetched).
    #[error("issuer {issuer:?} is not trusted")]
    UntrustedIssuer {
        /// The token's `iss`.
        issuer: String,
    },
    /// The discovery document or JWKS could not be fetched or read.
    #[error("issuer discovery failed: {what}")]
    Discovery {
        /// What failed.
        what: String,
    },
    /// The discovery document's `issuer` is not the token's `iss`, exactly.
    #[error("discovery document names issuer {document:?}, the token {token:?}")]
    IssuerMismatch {
        /// The document's `issuer`.
        document: String,
        /// The token's `iss`.
        token: String,
    },
    /// No key of the JWKS has the header `kid`, even after refetching it.
    #[error("no published key has kid {kid:?}")]
    UnknownKid {
        /// The token header's `kid`, as sent (matched nowhere in the issuer's JWKS).
        kid: String,
    },
    /// The published key with the header `kid` cannot verify RS256.
    #[error("published key {kid:?} is unusable: {rule}")]
    UnusableKey {
        /// The token header's `kid`: the JWKS key it names.
        kid: String,
        /// Why.
        rule: &'static str,
    },
    /// The header `alg` is not RS256.
    #[error("algorithm {alg:?} is not accepted, only RS256")]
    UnsupportedAlgorithm {
        /// The header `alg` (cut to 32 characters).
        alg: String,
    },
    /// The signature does not verify with the published key.
    #[error("signature does not verify")]
    BadSignature,
    /// `exp` is not after now (no leeway).
    #[error("token expired at {exp}, now is {now} (unix seconds)")]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The verifier's now.
        now: i64,
    },
    /// `nbf` or `iat` is after now.
    #[error("token is not valid yet (nbf or iat is in the future)")]
    NotYetValid,
    /// A required claim (or the header `kid`) is missing.
    #[error("token has no {name}")]
    MissingClaim {
        /// The claim's name.
        name: &'static str,
    },
}

// === VerifiedJwt ===

/// A token that passed [`FederatedJwtVerifier::verify_from`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VerifiedJwt {
    /// `iss`, one of the trusted issuers.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `aud`, a string or an array of strings in the token.
    pub audiences: Vec<String>,
    /// The token header's `kid`: the key of the issuer's JWKS that verified it.
    pub kid: String,
    /// `exp`, unix seconds.
    pub expires_at: i64,
    /// Every claim of the payload.
    pub claims: Map<String, Value>,
}

// === FederatedJwtVerifier ===

/// One issuer's cached JWKS.
#[derive(Debug, Clone)]
struct IssuerKeys {
    jwks_uri: String,
    keys: Vec<Map<String, Value>>,
}

#[derive(Debug, Default)]
struct Inner {
    cache: Mutex<HashMap<String, IssuerKeys>>,
    discovery_fetches: AtomicU64,
    jwks_fetches: AtomicU64,
}

/// Verifies federated JWTs as a relying service does (see the module docs). Clones share one
/// key cache and one set of counters.
#[derive(Debug, Clone, Default)]
pub struct FederatedJwtVerifier {
    inner: Arc<Inner>,
}

/// What the token says before it is verified.
struct Unverified {
    kid: String,
    issuer: String,
    signing_input: String,
    signature: Vec<u8>,
    claims: Map<String, Value>,
}

impl FederatedJwtVerifier {
    /// A verifier with an empty key cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Verifies `token` at `now_unix`, trusting only issuers in `trusted_issuers` (compared
    /// exactly): an untrusted `iss`, a `none`/HS*/ES* algorithm or a malformed token is refused
    /// before anything is fetched.
    ///
    /// # Errors
    /// A [`JwtRejection`] naming the first rule the token breaks.
    pub async fn verify_from(
        &self,
        token: &str,
        trusted_issuers: &[&str],
        now_unix: i64,
    ) -> Result<VerifiedJwt, JwtRejection> {
        let parsed = parse(token)?;
        if !trusted_issuers.contains(&parsed.issuer.as_str()) {
            return Err(JwtRejection::UntrustedIssuer {
                issuer: parsed.issuer.chars().take(256).collect(),
            });
        }
        let key = self.key_for(&parsed.issuer, &parsed.kid).await?;
        check_key(&key, &parsed.kid)?;
        let (Some(n), Some(e)) = (b64_member(&key, "n"), b64_member(&key, "e")) else {
            return Err(JwtRejection::UnusableKey {
                kid: parsed.kid,
                rule: "n or e is missing or not base64url",
            });
        };
        RsaPublicKeyComponents { n: &n, e: &e }
            .verify(
                &RSA_PKCS1_2048_8192_SHA256,
                parsed.signing_input.as_bytes(),
                &parsed.signature,
            )
            .map_err(|_| JwtRejection::BadSignature)?;
        let expires_at = check_times(&parsed.claims, now_unix)?;
        let subject = match parsed.claims.get("sub") {
            None => return Err(JwtRejection::MissingClaim { name: "sub" }),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(malformed("sub is not a string")),
        };
        let audiences = match parsed.claims.get("aud") {
            None => return Err(JwtRejection::MissingClaim { name: "aud" }),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(malformed("aud is not a string or an array of strings"))?,
            Some(_) => return Err(malformed("aud is not a string or an array of strings")),
        };
        Ok(VerifiedJwt {
            issuer: parsed.issuer,
            subject,
            audiences,
            kid: parsed.kid,
            expires_at,
            claims: parsed.claims,
        })
    }

    /// How many discovery documents were fetched (successfully or not).
    pub fn discovery_fetches(&self) -> u64 {
        self.inner.discovery_fetches.load(Ordering::Relaxed)
    }

    /// How many JWKS were fetched (successfully or not).
    pub fn jwks_fetches(&self) -> u64 {
        self.inner.jwks_fetches.load(Ordering::Relaxed)
    }

    /// Drops every cached key, so the next verification fetches discovery again.
    pub fn clear_cache(&self) {
        lock(&self.inner.cache).clear();
    }

    /// The published key `kid` of `issuer`: from the cache, else after one (re)fetch.
    async fn key_for(&self, issuer: &str, kid: &str) -> Result<Map<String, Value>, JwtRejection> {
        let cached = lock(&self.inner.cache).get(issuer).cloned();
        let jwks_uri = match cached {
            Some(entry) => {
                if let Some(key) = find_key(&entry.keys, kid) {
                    return Ok(key);
                }
                // An unknown kid: the issuer may have rotated, so refetch its JWKS once.
                entry.jwks_uri
            }
            None => self.discover(issuer).await?,
        };
        let keys = self.fetch_jwks(&jwks_uri).await?;
        let found = find_key(&keys, kid);
        lock(&self.inner.cache).insert(issuer.to_owned(), IssuerKeys { jwks_uri, keys });
        found.ok_or_else(|| JwtRejection::UnknownKid {
            kid: kid.chars().take(256).collect(),
        })
    }

    /// Fetches `issuer`'s discovery document; returns its `jwks_uri`.
    async fn discover(&self, issuer: &str) -> Result<String, JwtRejection> {
        self.inner.discovery_fetches.fetch_add(1, Ordering::Relaxed);
        let url = format!("{issuer}{DISCOVERY_SUFFIX}");
        let body = fetch(&url).await.map_err(|what| JwtRejection::Discovery {
            what: format!("discovery document: {what}"),
        })?;
        let doc: Map<String, Value> =
            serde_json::from_slice(&body).map_err(|_| JwtRejection::Discovery {
                what: "discovery document is not a JSON object".to_owned(),
            })?;
        let Some(document_issuer) = doc.get("issuer").and_then(Value::as_str) else {
            return Err(JwtRejection::Discovery {
                what: "discovery document has no issuer".to_owned(),
            });
        };
        if document_issuer != issuer {
            return Err(JwtRejection::IssuerMismatch {
                document: document_issuer.chars().take(256).collect(),
                token: issuer.to_owned(),
            });
        }
        let Some(jwks_uri) = doc.get("jwks_uri").and_then(Value::as_str) else {
            return Err(JwtRejection::Discovery {
                what: "discovery document has no jwks_uri".to_owned(),
            });
        };
        Ok(jwks_uri.to_owned())
    }

    async fn fetch_jwks(&self, jwks_uri: &str) -> Result<Vec<Map<String, Value>>, JwtRejection> {
        self.inner.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        let failed = |what: String| JwtRejection::Discovery {
            what: format!("jwks: {what}"),
        };
        let body = fetch(jwks_uri).await.map_err(failed)?;
        let doc: Map<String, Value> =
            serde_json::from_slice(&body).map_err(|_| failed("not a JSON object".to_owned()))?;
        let Some(Value::Array(keys)) = doc.get("keys") else {
            return Err(failed("no keys array".to_owned()));
        };
        Ok(keys
            .iter()
            .take(MAX_JWKS_KEYS)
            .filter_map(|k| k.as_object().cloned())
            .collect())
    }
}

fn malformed(what: &'static str) -> JwtRejection {
    JwtRejection::Malformed { what }
}

/// Splits and decodes the token; checks `alg`, `kid` and `iss` are there (nothing verified).
fn parse(token: &str) -> Result<Unverified, JwtRejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed("token is longer than 16 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not three dot-separated parts"));
    };
    let json_object = |part: &str, what| -> Result<Map<String, Value>, JwtRejection> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| malformed(what))?;
        serde_json::from_slice(&bytes).map_err(|_| malformed(what))
    };
    let header = json_object(header_b64, "header is not base64url JSON object")?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg,
        None => return Err(JwtRejection::MissingClaim { name: "alg" }),
        Some(_) => return Err(malformed("alg is not a string")),
    };
    if alg != ACCEPTED_ALGORITHM {
        return Err(JwtRejection::UnsupportedAlgorithm {
            alg: alg.chars().take(32).collect(),
        });
    }
    // No extension is understood, so a token demanding one is refused (RFC 7515 4.1.11).
    if header.contains_key("crit") {
        return Err(malformed("crit header parameters are not supported"));
    }
    let kid = match header.get("kid") {
        Some(Value::String(kid)) => kid.clone(),
        None => return Err(JwtRejection::MissingClaim { name: "kid" }),
        Some(_) => return Err(malformed("kid is not a string")),
    };
    let claims = json_object(payload_b64, "payload is not base64url JSON object")?;
    let issuer = match claims.get("iss") {
        Some(Value::String(iss)) => iss.clone(),
        None => return Err(JwtRejection::MissingClaim { name: "iss" }),
        Some(_) => return Err(malformed("iss is not a string")),
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| malformed("signature is not base64url"))?;
    Ok(Unverified {
        kid,
        issuer,
        signing_input: format!("{header_b64}.{payload_b64}"),
        signature,
        claims,
    })
}

fn find_key(keys: &[Map<String, Value>], kid: &str) -> Option<Map<String, Value>> {
    keys.iter()
        .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        .cloned()
}

/// The published key must be an RSA signing key for RS256 (`use` and `alg` when present).
fn check_key(key: &Map<String, Value>, kid: &str) -> Result<(), JwtRejection> {
    let unusable = |rule| {
        Err(JwtRejection::UnusableKey {
            kid: kid.chars().take(256).collect(),
            rule,
        })
    };
    if key.get("kty").and_then(Value::as_str) != Some("RSA") {
        return unusable("kty is not RSA");
    }
    if key.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return unusable("use is not sig");
    }
    if key
        .get("alg")
        .is_some_and(|a| a.as_str() != Some(ACCEPTED_ALGORITHM))
    {
        return unusable("alg is not RS256");
    }
    Ok(())
}

fn b64_member(key: &Map<String, Value>, name: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(key.get(name)?.as_str()?)
        .ok()
        .filter(|v| !v.is_empty())
}

/// `exp` required and after now; `nbf` and `iat`, when present, not after now. Returns `exp`.
fn check_times(claims: &Map<String, Value>, now: i64) -> Result<i64, JwtRejection> {
    let number = |name: &'static str| -> Result<Option<i64>, JwtRejection> {
        match claims.get(name) {
            None => Ok(None),
            // NumericDate may be fractional; whole seconds are what every verifier compares.
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                .map(Some)
                .ok_or(malformed("a time claim is out of range")),
            Some(_) => Err(malformed("a time claim is not a number")),
        }
    };
    let Some(exp) = number("exp")? else {
        return Err(JwtRejection::MissingClaim { name: "exp" });
    };
    if exp <= now {
        return Err(JwtRejection::Expired { exp, now });
    }
    // Quay and the clouds' STS refuse a token without `iat`; `nbf` is optional.
    if number("iat")?.is_none() {
        return Err(JwtRejection::MissingClaim { name: "iat" });
    }
    for name in ["nbf", "iat"] {
        if number(name)?.is_some_and(|t| t > now) {
            return Err(JwtRejection::NotYetValid);
        }
    }
    Ok(exp)
}

// === fetching ===

/// Where a loopback `http://` URL points.
struct Target {
    addr: SocketAddr,
    authority: String,
    path_and_query: String,
}

fn loopback_target(url: &str) -> Result<Target, String> {
    let shown: String = url.chars().take(256).collect();
    if url.starts_with("https://") {
        return Err(format!(
            "{shown}: https is not reachable from the fakes (no tls client); use a loopback http issuer"
        ));
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!("{shown}: not an http url"));
    };
    let rest = rest.split('#').next().unwrap_or(rest);
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') {
        return Err(format!("{shown}: userinfo is not allowed"));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(format!("{shown}: bad ipv6 host"));
        };
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let ip: IpAddr = if let Ok(v4) = host.parse::<Ipv4Addr>() {
        v4.into()
    } else if let Ok(v6) = host.parse::<Ipv6Addr>() {
        v6.into()
    } else {
        return Err(format!(
            "{shown}: host must be a loopback ip literal (the fakes resolve no names)"
        ));
    };
    if !ip.is_loopback() {
        return Err(format!("{shown}: host is not loopback"));
    }
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{shown}: bad port"))?,
    };
    let path_and_query = if path.is_empty() {
        "/".to_owned()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    Ok(Target {
        addr: SocketAddr::new(ip, port),
        authority: authority.to_owned(),
        path_and_query,
    })
}

/// GETs `url` (loopback http only) within [`FETCH_TIMEOUT`]: a 200 body of at most
/// [`MAX_DOCUMENT_BYTES`]; a redirect or any other status is an error.
async fn fetch(url: &str) -> Result<Bytes, String> {
    let target = loopback_target(url)?;
    let shown: String = url.chars().take(256).collect();
    match tokio::time::timeout(FETCH_TIMEOUT, get(&target)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(what)) => Err(format!("GET {shown}: {what}")),
        Err(_) => Err(format!("GET {shown}: no answer within {FETCH_TIMEOUT:?}")),
    }
}

async fn get(target: &Target) -> Result<Bytes, String> {
    let stream = tokio::net::TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    // The response head is bounded like the body (hyper's minimum buffer is 8 KiB).
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_DOCUMENT_BYTES)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let request = Request::builder()
        .method(Method::GET)
        .uri(target.path_and_query.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::ACCEPT, "application/json")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|_| "bad request url".to_owned())?;
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        // Dropping the sender lets the connection finish once the body is read.
        drop(sender);
        let status = response.status();
        if status.is_redirection() {
            return Err(format!("redirect ({status}) refused"));
        }
        if status.as_u16() != 200 {
            return Err(format!("status {status}"));
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|_| format!("body over {MAX_DOCUMENT_BYTES} bytes or cut short"))?;
        Ok(body.to_bytes())
    };
    // The connection is driven here rather than spawned: the exchange ends when the body is
    // read, and the connection right after (Connection: close).
    let (result, _) = tokio::join!(exchange, conn);
    result
}

// === DocumentHost ===

#[derive(Debug, Default)]
struct Documents {
    bodies: Mutex<HashMap<String, Document>>,
    requests: Mutex<HashMap<String, u64>>,
}

#[derive(Debug, Clone)]
enum Document {
    Body {
        content_type: &'static str,
        body: String,
    },
    Redirect {
        location: String,
    },
}

/// A tiny HTTP document host on 127.0.0.1 for tests: answers `GET` of a path with what was
/// [`set`](Self::set) for it (404 otherwise, 405 for other methods), e.g. an issuer's
/// discovery document and JWKS. Dropping it stops the server.
#[derive(Debug)]
pub struct DocumentHost {
    documents: Arc<Documents>,
    server: FakeServer,
}

impl DocumentHost {
    /// Starts an empty host.
    ///
    /// # Errors
    /// [`FakeError::Listen`], [`FakeError::Thread`] or [`FakeError::NotReady`].
    pub fn start() -> Result<Self, FakeError> {
        let documents = Arc::new(Documents::default());
        let server = FakeServer::start("fake-documents", Arc::clone(&documents))
            .map_err(FakeError::from_start)?;
        Ok(Self { documents, server })
    }

    /// The address it listens on (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`, without a trailing `/`: an issuer URL as is.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Serves `body` with `content_type` at `path` (which starts with `/`), replacing what was
    /// there.
    pub fn set(&self, path: &str, content_type: &'static str, body: String) {
        lock(&self.documents.bodies).insert(path.to_owned(), Document::Body { content_type, body });
    }

    /// Answers `path` with `302 Found` to `location` (to check that verifiers refuse
    /// redirects).
    pub fn redirect(&self, path: &str, location: &str) {
        lock(&self.documents.bodies).insert(
            path.to_owned(),
            Document::Redirect {
                location: location.to_owned(),
            },
        );
    }

    /// Stops serving `path` (404 from now on).
    pub fn remove(&self, path: &str) {
        lock(&self.documents.bodies).remove(path);
    }

    /// How many requests for `path` arrived (any method, served or not).
    pub fn requests(&self, path: &str) -> u64 {
        lock(&self.documents.requests)
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

impl Service for Documents {
    async fn call(&self, req: Request<Incoming>) -> Result<Reply, Hangup> {
        let path = req.uri().path().to_owned();
        {
            let mut requests = lock(&self.requests);
            // Bounded: a test asks for a handful of paths; stop counting new ones past that.
            if requests.len() < 1024 || requests.contains_key(&path) {
                *requests.entry(path.clone()).or_insert(0) += 1;
            }
        }
        if req.method() != Method::GET {
            return Ok(empty_reply(405));
        }
        let document = lock(&self.bodies).get(&path).cloned();
        Ok(match document {
            Some(Document::Body { content_type, body }) => reply(200, content_type, body),
            Some(Document::Redirect { location }) => {
                let mut r = empty_reply(302);
                if let Ok(value) = http::HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, value);
                }
                r
            }
            None => empty_reply(404),
        })
    }
}

#[cfg(test)]
mod tests;
