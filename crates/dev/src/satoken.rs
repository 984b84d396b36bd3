//! A development Kubernetes service-account token issuer: one RS256 or ES256 key, its JWK Set
//! (what `kube-apiserver` serves at `/openid/v1/jwks`), and tokens shaped like the projected
//! tokens the kubelet requests through TokenRequest (KEP-4412 `serviceAccountToken`).
//!
//! The claim shape follows Kubernetes' bound tokens:
//!
//! ```json
//! {"aud":["svid-broker"],"exp":1700003600,"iat":1700000000,"nbf":1700000000,
//!  "iss":"https://kubernetes.default.svc","jti":"…",
//!  "sub":"system:serviceaccount:team-a:app",
//!  "kubernetes.io":{"namespace":"team-a",
//!                   "pod":{"name":"app-0","uid":"…"},
//!                   "serviceaccount":{"name":"app","uid":"…"}}}
//! ```
//!
//! ```no_run
//! use std::time::SystemTime;
//! use svid_broker_dev::satoken::{DevSaAlgorithm, DevServiceAccountIssuer, SaTokenRequest};
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let issuer = DevServiceAccountIssuer::new("https://kubernetes.default.svc", DevSaAlgorithm::Es256)?;
//! issuer.write_jwks("sa.jwks.json")?;
//! let token = issuer.mint(&SaTokenRequest::new("team-a", "app", "svid-broker").pod("app-0"))?;
//! # let _ = (token, SystemTime::now());
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use svid_broker_identity::secret::SecretString;

use crate::jwks::{p256_thumbprint, split_p256_point};

/// Default token lifetime: the TokenRequest API default the kubelet leaves in place.
pub const DEFAULT_SA_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The signing algorithm of a [`DevServiceAccountIssuer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DevSaAlgorithm {
    /// RSA-2048, RS256 (what kube-apiserver uses by default).
    Rs256,
    /// P-256, ES256.
    Es256,
}

impl DevSaAlgorithm {
    /// The JOSE `alg` name the tokens' header and the JWK carry (`RS256`, `ES256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }
}

/// Why the dev issuer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevSaError {
    /// Key generation failed.
    #[error("service-account signing key generation failed")]
    KeyGeneration,
    /// Signing failed.
    #[error("service-account token signing failed")]
    Signing,
    /// A time is before the epoch or out of range.
    #[error("token time out of range")]
    TimeOutOfRange,
    /// Writing the JWK Set failed.
    #[error("cannot write the jwk set")]
    Io(#[source] std::io::Error),
}

enum SigningKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A dev service-account issuer. `Debug` shows the issuer, algorithm and `kid` only.
pub struct DevServiceAccountIssuer {
    issuer: String,
    alg: DevSaAlgorithm,
    kid: String,
    key: SigningKey,
    jwk: Value,
}

impl fmt::Debug for DevServiceAccountIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevServiceAccountIssuer")
            .field("issuer", &self.issuer)
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// What to put in one token; see [`DevServiceAccountIssuer::mint`].
#[derive(Debug, Clone)]
pub struct SaTokenRequest {
    namespace: String,
    name: String,
    audiences: Vec<String>,
    pod: Option<String>,
    node: Option<String>,
    issued_at: Option<SystemTime>,
    ttl: Duration,
}

impl SaTokenRequest {
    /// A token for service account `namespace/name` with one audience, issued now, valid
    /// [`DEFAULT_SA_TOKEN_TTL`], without pod binding.
    pub fn new(namespace: &str, name: &str, audience: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            audiences: vec![audience.to_owned()],
            pod: None,
            node: None,
            issued_at: None,
            ttl: DEFAULT_SA_TOKEN_TTL,
        }
    }

    /// Replaces the audiences.
    #[must_use]
    pub fn audiences<S: AsRef<str>>(mut self, audiences: &[S]) -> Self {
        self.audiences = audiences.iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    /// Binds the token to a pod (a random UID is generated).
    #[must_use]
    pub fn pod(mut self, name: &str) -> Self {
        self.pod = Some(name.to_owned());
        self
    }

    /// Binds the token to a node: `kubernetes.io.node` (Kubernetes 1.30+ puts it in
    /// pod-bound tokens; a random UID is generated).
    #[must_use]
    pub fn node(mut self, name: &str) -> Self {
        self.node = Some(name.to_owned());
        self
    }

    /// Sets `iat` and `nbf` (default: now).
    #[must_use]
    pub fn issued_at(mut self, at: SystemTime) -> Self {
        self.issued_at = Some(at);
        self
    }

    /// Sets the lifetime (`exp - iat`).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

impl DevServiceAccountIssuer {
    /// A new issuer with a fresh key, generated in memory and never persisted; `issuer` is
    /// used verbatim as every token's `iss`.
    ///
    /// # Errors
    /// [`DevSaError::KeyGeneration`].
    pub fn new(issuer: impl Into<String>, alg: DevSaAlgorithm) -> Result<Self, DevSaError> {
        let (key, kid, jwk) = match alg {
            DevSaAlgorithm::Es256 => {
                let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| DevSaError::KeyGeneration)?;
                let (x, y) = split_p256_point(pair.public_key().as_ref())
                    .ok_or(DevSaError::KeyGeneration)?;
                let kid = p256_thumbprint(&x, &y);
                let jwk = json!({"use":"sig","kty":"EC","kid":kid,"crv":"P-256","alg":"ES256","x":x,"y":y});
                (SigningKey::Ec(pair), kid, jwk)
            }
            DevSaAlgorithm::Rs256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048)
                    .map_err(|_| DevSaError::KeyGeneration)?;
                let public = pair.public_key();
                let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
                let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
                // RFC 7638 §3.2: required members, lexicographic order.
                let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
                let digest =
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
                let kid = URL_SAFE_NO_PAD.encode(digest.as_ref());
                let jwk = json!({"use":"sig","kty":"RSA","kid":kid,"alg":"RS256","n":n,"e":e});
                (SigningKey::Rsa(pair), kid, jwk)
            }
        };
        Ok(Self {
            issuer: issuer.into(),
            alg,
            kid,
            key,
            jwk,
        })
    }

    /// The `iss` of every token, exactly as given to [`new`](Self::new).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The algorithm every token is signed with, fixed at [`new`](Self::new).
    pub fn algorithm(&self) -> DevSaAlgorithm {
        self.alg
    }

    /// The key id: the `kid` of every token's header and of the JWK, its RFC 7638 thumbprint.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWK Set, as kube-apiserver serves it at `/openid/v1/jwks`.
    pub fn jwks_json(&self) -> String {
        json!({ "keys": [self.jwk] }).to_string()
    }

    /// Writes [`Self::jwks_json`] to `path` (replacing it atomically, so a watcher never reads
    /// half a file).
    ///
    /// # Errors
    /// [`DevSaError::Io`].
    pub fn write_jwks(&self, path: impl AsRef<Path>) -> Result<(), DevSaError> {
        let path = path.as_ref();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.jwks_json()).map_err(DevSaError::Io)?;
        std::fs::rename(&tmp, path).map_err(DevSaError::Io)
    }

    /// The OIDC discovery document for this issuer, with `jwks_uri` as given.
    pub fn openid_configuration_json(&self, jwks_uri: &str) -> String {
        json!({
            "issuer": self.issuer,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.alg.as_str()],
        })
        .to_string()
    }

    /// The claims of a Kubernetes-shaped token for `request` (see the [module docs](self)).
    ///
    /// # Errors
    /// [`DevSaError::TimeOutOfRange`].
    pub fn claims(&self, request: &SaTokenRequest) -> Result<Value, DevSaError> {
        let now = request.issued_at.unwrap_or_else(SystemTime::now);
        let iat = unix(now)?;
        let exp = unix(
            now.checked_add(request.ttl)
                .ok_or(DevSaError::TimeOutOfRange)?,
        )?;
        let mut kubernetes = json!({
            "namespace": request.namespace,
            "serviceaccount": { "name": request.name, "uid": uid()? },
        });
        if let (Some(pod), Some(map)) = (&request.pod, kubernetes.as_object_mut()) {
            map.insert("pod".to_owned(), json!({ "name": pod, "uid": uid()? }));
        }
        if let (Some(node), Some(map)) = (&request.node, kubernetes.as_object_mut()) {
            map.insert("node".to_owned(), json!({ "name": node, "uid": uid()? }));
        }
        Ok(json!({
            "aud": request.audiences,
            "exp": exp,
            "iat": iat,
            "nbf": iat,
            "iss": self.issuer,
            "jti": uid()?,
            "kubernetes.io": kubernetes,
            "sub": format!("system:serviceaccount:{}:{}", request.namespace, request.name),
        }))
    }

    /// Mints a token for `request`.
    ///
    /// # Errors
    /// [`DevSaError::TimeOutOfRange`] or [`DevSaError::Signing`].
    pub fn mint(&self, request: &SaTokenRequest) -> Result<SecretString, DevSaError> {
        self.sign_claims(&self.claims(request)?)
    }

    /// Signs arbitrary claims with this issuer's key and header (tests of claim rules).
    ///
    /// # Errors
    /// [`DevSaError::Signing`].
    pub fn sign_claims(&self, claims: &Value) -> Result<SecretString, DevSaError> {
        let header = json!({ "alg": self.alg.as_str(), "kid": self.kid });
        self.sign_raw(&header.to_string(), &claims.to_string())
    }

    /// Signs exactly these header and claims texts (tests of header rules).
    ///
    /// # Errors
    /// [`DevSaError::Signing`].
    pub fn sign_raw(&self, header: &str, claims: &str) -> Result<SecretString, DevSaError> {
        let mut token = String::with_capacity(1024);
        token.push_str(&URL_SAFE_NO_PAD.encode(header));
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let rng = SystemRandom::new();
        let sig = match &self.key {
            SigningKey::Ec(pair) => pair
                .sign(&rng, token.as_bytes())
                .map_err(|_| DevSaError::Signing)?
                .as_ref()
                .to_vec(),
            SigningKey::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, token.as_bytes(), &mut sig)
                    .map_err(|_| DevSaError::Signing)?;
                sig
            }
        };
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(SecretString::from(token))
    }
}

fn unix(at: SystemTime) -> Result<u64, DevSaError> {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| DevSaError::TimeOutOfRange)
}

/// A random RFC 4122 version-4 UUID, like Kubernetes object UIDs.
fn uid() -> Result<String, DevSaError> {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| DevSaError::KeyGeneration)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

#[cfg(test)]
mod tests {
    use svid_broker_identity::secret::ExposeSecret as _;

    use super::*;

    fn decode(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn es256_token_has_the_kubernetes_claim_shape() {
        let issuer =
            DevServiceAccountIssuer::new("https://k8s.local", DevSaAlgorithm::Es256).unwrap();
        let token = issuer
            .mint(&SaTokenRequest::new("team-a", "app", "svid-broker").pod("app-0"))
            .unwrap();
        let parts: Vec<&str> = token.expose_secret().split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = decode(parts[0]);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], issuer.kid());
        let claims = decode(parts[1]);
        assert_eq!(claims["iss"], "https://k8s.local");
        assert_eq!(claims["sub"], "system:serviceaccount:team-a:app");
        assert_eq!(claims["aud"], json!(["svid-broker"]));
        assert_eq!(claims["kubernetes.io"]["namespace"], "team-a");
        assert_eq!(claims["kubernetes.io"]["serviceaccount"]["name"], "app");
        assert_eq!(claims["kubernetes.io"]["pod"]["name"], "app-0");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            3600
        );
        let jwks: Value = serde_json::from_str(&issuer.jwks_json()).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], issuer.kid());
        assert!(!format!("{issuer:?}").contains(&*jwks["keys"][0]["x"].to_string()));
    }

    #[test]
    fn rs256_without_pod_and_jwks_file() {
        let issuer =
            DevServiceAccountIssuer::new("https://k8s.local", DevSaAlgorithm::Rs256).unwrap();
        let claims = issuer
            .claims(&SaTokenRequest::new("ns", "sa", "aud"))
            .unwrap();
        assert!(claims["kubernetes.io"].get("pod").is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        issuer.write_jwks(&path).unwrap();
        let jwks: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(jwks["keys"][0]["kty"], "RSA");
        let token = issuer
            .mint(&SaTokenRequest::new("ns", "sa", "aud"))
            .unwrap();
        assert_eq!(
            decode(token.expose_secret().split('.').next().unwrap())["alg"],
            "RS256"
        );
    }
}
