//! Bundle endpoint URLs (SPIFFE_Federation.md §5.1: `https` only, no userinfo).

use std::fmt;

use http::Uri;
use http::uri::{PathAndQuery, Scheme};
use rustls_pki_types::ServerName;

/// Longest bundle endpoint URL we accept; anything longer is a configuration mistake.
pub const MAX_ENDPOINT_URL_LEN: usize = 2048;

/// Why a bundle endpoint URL was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointUrlError {
    /// The URL is longer than [`MAX_ENDPOINT_URL_LEN`].
    #[error("endpoint url is {len} bytes, longer than the limit of {limit}")]
    TooLong {
        /// Length of the rejected URL.
        len: usize,
        /// The limit, [`MAX_ENDPOINT_URL_LEN`].
        limit: usize,
    },
    /// The text is not a URI at all.
    #[error("endpoint url is not a valid uri")]
    Malformed,
    /// Federation §5.1: the scheme must be `https`.
    #[error("endpoint url scheme must be https")]
    NotHttps,
    /// There is no host.
    #[error("endpoint url has no host")]
    MissingHost,
    /// Federation §5.1: the URL must not carry userinfo.
    #[error("endpoint url must not contain userinfo")]
    Userinfo,
    /// A fragment is meaningless for a fetch and hints at a typo.
    #[error("endpoint url must not contain a fragment")]
    Fragment,
    /// The host is neither a DNS name nor an IP address rustls can check a certificate against.
    #[error("endpoint url host is not a valid dns name or ip address")]
    InvalidHost,
}

/// A validated `https://` bundle endpoint URL.
#[derive(Clone, PartialEq, Eq)]
pub struct BundleEndpointUrl {
    uri: Uri,
    host: String,
    port: u16,
}

impl BundleEndpointUrl {
    /// Parses and checks a bundle endpoint URL: `https` scheme, a host, no userinfo, no fragment.
    ///
    /// # Errors
    ///
    /// [`EndpointUrlError`] naming the rule that failed.
    pub fn parse(text: &str) -> Result<Self, EndpointUrlError> {
        if text.len() > MAX_ENDPOINT_URL_LEN {
            return Err(EndpointUrlError::TooLong {
                len: text.len(),
                limit: MAX_ENDPOINT_URL_LEN,
            });
        }
        // http::Uri silently drops fragments, so look for one before parsing.
        if text.contains('#') {
            return Err(EndpointUrlError::Fragment);
        }
        let uri: Uri = text.parse().map_err(|_| EndpointUrlError::Malformed)?;
        if uri.scheme() != Some(&Scheme::HTTPS) {
            return Err(EndpointUrlError::NotHttps);
        }
        let authority = uri.authority().ok_or(EndpointUrlError::MissingHost)?;
        if authority.as_str().contains('@') {
            return Err(EndpointUrlError::Userinfo);
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(EndpointUrlError::MissingHost);
        }
        // IPv6 literals keep their brackets in `host()`; rustls wants the bare address.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if ServerName::try_from(host.as_str()).is_err() {
            return Err(EndpointUrlError::InvalidHost);
        }
        let port = authority.port_u16().unwrap_or(443);
        Ok(Self { uri, host, port })
    }

    /// The host (DNS name or IP address, without IPv6 brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, 443 when the URL names none.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `Host` header value: the authority as written (never userinfo, see [`Self::parse`]).
    pub(crate) fn host_header(&self) -> http::HeaderValue {
        let authority = self.uri.authority().map_or("", |a| a.as_str());
        // An authority that parsed as a URI is always a valid header value.
        http::HeaderValue::from_str(authority)
            .unwrap_or_else(|_| http::HeaderValue::from_static("invalid"))
    }

    /// The request target: path and query, `/` when the URL has no path.
    pub(crate) fn path_and_query(&self) -> PathAndQuery {
        self.uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"))
    }

    /// The server name rustls sends as SNI and, for `https_web`, checks the certificate against.
    pub(crate) fn server_name(&self) -> ServerName<'static> {
        // parse() already proved this conversion succeeds; the fallback is unreachable.
        ServerName::try_from(self.host.clone())
            .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()))
    }
}

impl fmt::Display for BundleEndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.uri, f)
    }
}

impl fmt::Debug for BundleEndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BundleEndpointUrl")
            .field(&self.uri.to_string())
            .finish()
    }
}

impl std::str::FromStr for BundleEndpointUrl {
    type Err = EndpointUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_https_urls() {
        let u = BundleEndpointUrl::parse("https://example.org/bundle?x=1").unwrap();
        assert_eq!(u.host(), "example.org");
        assert_eq!(u.port(), 443);
        assert_eq!(u.path_and_query().as_str(), "/bundle?x=1");
        assert_eq!(u.host_header(), "example.org");

        let u = BundleEndpointUrl::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!(u.host(), "127.0.0.1");
        assert_eq!(u.port(), 8443);
        assert_eq!(u.path_and_query().as_str(), "/");

        let u = BundleEndpointUrl::parse("https://[::1]:9/b").unwrap();
        assert_eq!(u.host(), "::1");
        assert!(matches!(u.server_name(), ServerName::IpAddress(_)));
    }

    #[test]
    fn rejects_each_rule() {
        let cases = [
            ("http://example.org/b", EndpointUrlError::NotHttps),
            ("ftp://example.org/b", EndpointUrlError::NotHttps),
            ("example.org/b", EndpointUrlError::Malformed),
            ("https://user:pw@example.org/b", EndpointUrlError::Userinfo),
            ("https://user@example.org/b", EndpointUrlError::Userinfo),
            ("https://example.org/b#frag", EndpointUrlError::Fragment),
            ("https://exa mple.org/", EndpointUrlError::Malformed),
            ("https://exa_mple!.org/", EndpointUrlError::InvalidHost),
        ];
        for (text, want) in cases {
            assert_eq!(BundleEndpointUrl::parse(text), Err(want), "{text}");
        }
        let long = format!("https://example.org/{}", "a".repeat(MAX_ENDPOINT_URL_LEN));
        assert!(matches!(
            BundleEndpointUrl::parse(&long),
            Err(EndpointUrlError::TooLong { .. })
        ));
    }
}
