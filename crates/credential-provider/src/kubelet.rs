//! The `credentialprovider.kubelet.k8s.io` exec protocol: one `CredentialProviderRequest` on
//! stdin, one `CredentialProviderResponse` on stdout.
//!
//! The kubelet decodes the response strictly (unknown or mis-cased fields fail, and a failure
//! silently becomes an anonymous pull), so the response type has exactly the five fields of the
//! API, in the kubelet's casing. The request is decoded leniently: unknown fields are ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use svid_broker_client::{ExposeSecret as _, SecretString};

use crate::reference::{self, ReferenceError};

/// The three API versions the kubelet speaks.
pub(crate) const API_VERSIONS: [&str; 3] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
];
/// The only version whose requests carry service-account tokens.
pub(crate) const API_V1: &str = "credentialprovider.kubelet.k8s.io/v1";
/// Largest request read from stdin, in bytes (a request with a service-account token and
/// annotations is a few KiB).
pub const MAX_REQUEST_SIZE: usize = 64 * 1024;
/// Longest image name accepted, in bytes; a longer one is refused, not cut.
pub const MAX_IMAGE_LEN: usize = 4096;

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RequestError {
    /// More than [`MAX_REQUEST_SIZE`] bytes.
    #[error("request larger than {MAX_REQUEST_SIZE} bytes")]
    TooLarge,
    /// Not JSON, or a field missing or of the wrong type. Only the position is kept: serde's
    /// message may quote request values, and the request can hold a token.
    #[error(
        "request is not a valid CredentialProviderRequest ({kind} at line {line}, column {column})"
    )]
    Json {
        /// What serde_json found: `syntax error`, `missing or mistyped field`, `unexpected
        /// end` or `io`.
        kind: &'static str,
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
    },
    /// An `apiVersion` other than the three known ones.
    #[error("unsupported apiVersion {0:?}")]
    ApiVersion(String),
    /// A `kind` other than `CredentialProviderRequest`.
    #[error("unexpected kind {0:?}, want CredentialProviderRequest")]
    Kind(String),
    /// An empty image, or one longer than [`MAX_IMAGE_LEN`].
    #[error("image is empty or longer than {MAX_IMAGE_LEN} bytes")]
    Image,
    /// An image that is not an image reference.
    #[error("image is not a valid image reference")]
    Reference(#[from] ReferenceError),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRequest {
    api_version: String,
    kind: String,
    image: String,
    #[serde(default)]
    service_account_token: Option<String>,
    #[serde(default)]
    service_account_annotations: Option<BTreeMap<String, String>>,
}

/// A validated request. `Debug` shows the token only as `[REDACTED]`.
#[derive(Debug)]
pub(crate) struct Request {
    /// One of [`API_VERSIONS`]; echoed in the response.
    pub(crate) api_version: String,
    /// The image's repository name, `host[:port]/path`: the request's image without its tag
    /// or digest, so that no scope or cache key ever carries them.
    pub(crate) image: String,
    /// The pod's service-account token (v1 only).
    pub(crate) service_account_token: Option<SecretString>,
    /// The passed service-account annotations (v1 only).
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "parsed and shape-checked for v1 requests; nothing decides on them yet"
        )
    )]
    pub(crate) service_account_annotations: BTreeMap<String, String>,
}

impl Request {
    /// Decodes and checks one request.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, RequestError> {
        if bytes.len() > MAX_REQUEST_SIZE {
            return Err(RequestError::TooLarge);
        }
        let raw: RawRequest = serde_json::from_slice(bytes).map_err(|e| RequestError::Json {
            kind: match e.classify() {
                serde_json::error::Category::Io => "io",
                serde_json::error::Category::Syntax => "syntax error",
                serde_json::error::Category::Data => "missing or mistyped field",
                serde_json::error::Category::Eof => "unexpected end",
            },
            line: e.line(),
            column: e.column(),
        })?;
        if !API_VERSIONS.contains(&raw.api_version.as_str()) {
            return Err(RequestError::ApiVersion(truncate(&raw.api_version)));
        }
        if raw.kind != "CredentialProviderRequest" {
            return Err(RequestError::Kind(truncate(&raw.kind)));
        }
        if raw.image.is_empty() || raw.image.len() > MAX_IMAGE_LEN {
            return Err(RequestError::Image);
        }
        let image = reference::parse(&raw.image)?.name.to_owned();
        // v1beta1 and v1alpha1 have no service-account fields; the kubelet never sends them
        // there, so they are ignored like any other unknown field.
        let v1 = raw.api_version == API_V1;
        Ok(Self {
            image,
            service_account_token: raw
                .service_account_token
                .filter(|t| v1 && !t.is_empty())
                .map(SecretString::from),
            service_account_annotations: if v1 {
                raw.service_account_annotations.unwrap_or_default()
            } else {
                BTreeMap::new()
            },
            api_version: raw.api_version,
        })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// `cacheKeyType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum CacheKeyType {
    /// Cache per image.
    Image,
    /// Cache per registry (`host[:port]`).
    Registry,
}

/// One `auth` entry.
#[derive(Serialize)]
pub(crate) struct AuthConfig {
    pub(crate) username: String,
    #[serde(serialize_with = "expose")]
    pub(crate) password: SecretString,
}

fn expose<S: serde::Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

/// The response, field for field as the kubelet's types define it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Response {
    kind: &'static str,
    api_version: String,
    cache_key_type: CacheKeyType,
    cache_duration: String,
    auth: BTreeMap<String, AuthConfig>,
}

impl Response {
    /// "Not ours": no credentials, and `0s` so the kubelet does not cache the empty answer.
    pub(crate) fn empty(api_version: &str) -> Self {
        Self {
            kind: "CredentialProviderResponse",
            api_version: api_version.to_owned(),
            cache_key_type: CacheKeyType::Image,
            cache_duration: go_duration(Duration::ZERO),
            auth: BTreeMap::new(),
        }
    }

    /// One credential under `key`.
    pub(crate) fn credential(
        api_version: &str,
        key: String,
        cache_key_type: CacheKeyType,
        cache_duration: Duration,
        auth: AuthConfig,
    ) -> Self {
        Self {
            kind: "CredentialProviderResponse",
            api_version: api_version.to_owned(),
            cache_key_type,
            cache_duration: go_duration(cache_duration),
            auth: BTreeMap::from([(key, auth)]),
        }
    }

    /// The JSON text plus a newline: the only bytes ever written to stdout.
    pub(crate) fn to_json_line(&self) -> Result<zeroize::Zeroizing<String>, serde_json::Error> {
        let mut text = zeroize::Zeroizing::new(serde_json::to_string(self)?);
        text.push('\n');
        Ok(text)
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("api_version", &self.api_version)
            .field("cache_key_type", &self.cache_key_type)
            .field("cache_duration", &self.cache_duration)
            .field("auth_keys", &self.auth.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Go's `time.Duration.String()` for whole seconds: `0s`, `45s`, `9m30s`, `1h0m0s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_format() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_secs(45)), "45s");
        assert_eq!(go_duration(Duration::from_secs(570)), "9m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(1999)), "1s");
        assert_eq!(go_duration(Duration::from_secs(3 * 3600 + 61)), "3h1m1s");
    }

    #[test]
    fn requests_of_all_versions_tolerate_unknown_fields() {
        for v in API_VERSIONS {
            let text = format!(
                r#"{{"kind":"CredentialProviderRequest","apiVersion":"{v}","image":"reg.io/a","future":1}}"#
            );
            let r = Request::parse(text.as_bytes()).unwrap();
            assert_eq!(r.api_version, v);
            assert_eq!(r.image, "reg.io/a");
        }
    }

    #[test]
    fn service_account_fields_count_only_in_v1() {
        let text = |v: &str| {
            format!(
                r#"{{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/{v}","image":"r/a","serviceAccountToken":"tok","serviceAccountAnnotations":{{"a":"b"}}}}"#
            )
        };
        let r = Request::parse(text("v1").as_bytes()).unwrap();
        assert_eq!(r.service_account_token.unwrap().expose_secret(), "tok");
        assert_eq!(r.service_account_annotations["a"], "b");
        let r = Request::parse(text("v1beta1").as_bytes()).unwrap();
        assert!(r.service_account_token.is_none());
        assert!(r.service_account_annotations.is_empty());
    }

    #[test]
    fn bad_requests_are_refused() {
        let bad = |t: &str| Request::parse(t.as_bytes()).unwrap_err();
        assert!(matches!(bad("not json"), RequestError::Json { .. }));
        assert!(matches!(
            bad(
                r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v2","image":"a"}"#
            ),
            RequestError::ApiVersion(_)
        ));
        assert!(matches!(
            bad(
                r#"{"kind":"Other","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"a"}"#
            ),
            RequestError::Kind(_)
        ));
        assert!(matches!(
            bad(
                r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":""}"#
            ),
            RequestError::Image
        ));
        assert!(matches!(
            bad(
                r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1"}"#
            ),
            RequestError::Json { .. }
        ));
        let big = vec![b' '; MAX_REQUEST_SIZE + 1];
        assert!(matches!(Request::parse(&big), Err(RequestError::TooLarge)));
    }

    #[test]
    fn tags_and_digests_are_stripped_and_bad_references_refused() {
        let parse = |image: &str| {
            Request::parse(
                format!(
                    r#"{{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"{image}"}}"#
                )
                .as_bytes(),
            )
        };
        let digest = format!("sha256:{}", "ab".repeat(32));
        for (image, want) in [
            ("reg.io/team/app:v1".to_owned(), "reg.io/team/app"),
            (format!("reg.io/team/app@{digest}"), "reg.io/team/app"),
            (format!("reg.io/team/app:v1@{digest}"), "reg.io/team/app"),
            ("reg.io:5000/team/app:v1".to_owned(), "reg.io:5000/team/app"),
            ("reg.io:5000/team/app".to_owned(), "reg.io:5000/team/app"),
        ] {
            assert_eq!(parse(&image).unwrap().image, want, "{image}");
        }
        let e = parse("reg.io/team/app:v1:v2").unwrap_err();
        assert!(
            matches!(e, RequestError::Reference(ReferenceError::Path { .. })),
            "{e:?}"
        );
        let e = parse("reg.io/team/app@sha256:short").unwrap_err();
        assert_eq!(
            svid_broker_identity::report::ErrorChain::new(&e).to_string(),
            "image is not a valid image reference: digest \"sha256:short\" is invalid: want sha256:, sha384: or sha512: and that many lowercase hex digits"
        );
        assert!(matches!(
            parse("reg.io/Team/app").unwrap_err(),
            RequestError::Reference(ReferenceError::Uppercase { .. })
        ));
    }

    #[test]
    fn json_errors_never_quote_the_request() {
        let e = Request::parse(br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"r/a","serviceAccountToken":{"SECRET":1}}"#).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("missing or mistyped field"), "{text}");
    }

    #[test]
    fn request_debug_redacts_the_token() {
        let r = Request::parse(br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"r/a","serviceAccountToken":"SECRET-TOKEN"}"#).unwrap();
        let shown = format!("{r:?}");
        assert!(!shown.contains("SECRET-TOKEN"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }

    #[test]
    fn response_fields_and_order() {
        let empty = Response::empty(API_V1).to_json_line().unwrap();
        assert_eq!(
            empty.as_str(),
            "{\"kind\":\"CredentialProviderResponse\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"cacheKeyType\":\"Image\",\"cacheDuration\":\"0s\",\"auth\":{}}\n"
        );
        let full = Response::credential(
            API_V1,
            "reg.io:5000".into(),
            CacheKeyType::Registry,
            Duration::from_secs(600),
            AuthConfig {
                username: "u".into(),
                password: SecretString::from("p"),
            },
        );
        assert!(!format!("{full:?}").contains("\"p\""));
        assert_eq!(
            full.to_json_line().unwrap().as_str(),
            "{\"kind\":\"CredentialProviderResponse\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"cacheKeyType\":\"Registry\",\"cacheDuration\":\"10m0s\",\"auth\":{\"reg.io:5000\":{\"username\":\"u\",\"password\":\"p\"}}}\n"
        );
    }
}
