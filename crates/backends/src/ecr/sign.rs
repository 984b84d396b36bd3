//! SigV4 for the one ECR request, by AWS's own signer (`aws-sigv4`): the headers to add to
//! the request the [`ApiClient`](crate::http::ApiClient) sends, computed over exactly the
//! `Host`, path, `Content-Type`, `X-Amz-Target` and body it sends.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderName, HeaderValue};
use svid_broker_identity::secret::ExposeSecret as _;

use super::wire::{ECR_CONTENT_TYPE, ECR_TARGET, StsCredentials};
use crate::error::Failure;

/// The SigV4 service name of Amazon ECR's API.
pub(crate) const SERVICE: &str = "ecr";

/// The headers SigV4 adds (`x-amz-date`, `authorization`, `x-amz-security-token`), for a
/// `POST` of `body` to `target` (the request target the client sends) on `authority` (the
/// `Host` it sends). The session token's header is marked sensitive.
///
/// # Errors
/// [`Failure::Internal`] when the signer refuses its input.
pub(crate) fn signed_headers(
    credentials: &StsCredentials,
    region: &str,
    authority: &str,
    target: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<Vec<(HeaderName, HeaderValue)>, Failure> {
    let failed = || Failure::Internal {
        what: "cannot sign the ECR request (SigV4)",
    };
    let identity: Identity = Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.expose_secret(),
        Some(credentials.session_token.expose_secret().to_owned()),
        Some(credentials.expiration),
        "svid-broker-sts",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| failed())?
        .into();
    // The scheme is not signed; the Host header below is what the canonical request holds.
    let uri = format!("https://{authority}{target}");
    let headers = [
        ("host", authority),
        ("content-type", ECR_CONTENT_TYPE),
        ("x-amz-target", ECR_TARGET),
    ];
    let request = SignableRequest::new("POST", uri, headers.into_iter(), SignableBody::Bytes(body))
        .map_err(|_| failed())?;
    // The signer logs its canonical request (which holds the session token) at trace level:
    // no subscriber sees anything while it runs, whatever the broker's log filter.
    let signed =
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::new(), || {
            sign(request, &params)
        })
        .map_err(|_| failed())?;
    let (instructions, _signature) = signed.into_parts();
    let (headers, _params) = instructions.into_parts();
    headers
        .into_iter()
        .map(|header| {
            let name = HeaderName::from_bytes(header.name().as_bytes()).map_err(|_| failed())?;
            let mut value = HeaderValue::from_str(header.value()).map_err(|_| failed())?;
            value.set_sensitive(header.sensitive() || name == http::header::AUTHORIZATION);
            Ok((name, value))
        })
        .collect()
}
