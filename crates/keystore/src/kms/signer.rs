//! SigV4 by AWS's own signer (`aws-sigv4`), over exactly the `Host`, headers and body the
//! transport sends (the approach of the ECR backend's signer).

use std::time::SystemTime;

use aws_credential_types::Credentials as AwsCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use svid_broker_identity::secret::ExposeSecret as _;
use zeroize::Zeroizing;

use super::credentials::Credentials;

/// The headers SigV4 adds (`x-amz-date`, `authorization`, `x-amz-security-token` with a
/// session), as `(name, value)` pairs, for a `POST /` of `body` to `authority` carrying
/// `headers` (besides `host`). The values are wiped on drop: they hold the session token.
///
/// # Errors
/// The rule when the signer refuses its input.
pub(super) fn signed_headers(
    credentials: &Credentials,
    region: &str,
    service: &str,
    authority: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    now: SystemTime,
) -> Result<Vec<(String, Zeroizing<String>)>, &'static str> {
    let failed = "the SigV4 signer refused the request";
    let identity: Identity = AwsCredentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.expose_secret(),
        credentials
            .session_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned()),
        credentials.expires_at,
        "svid-broker-kms",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| failed)?
        .into();
    // The scheme is not signed; the Host header is what the canonical request holds.
    let uri = format!("https://{authority}/");
    let all = std::iter::once(("host", authority)).chain(headers.iter().copied());
    let request =
        SignableRequest::new("POST", uri, all, SignableBody::Bytes(body)).map_err(|_| failed)?;
    // The signer logs its canonical request (which holds the session token) at trace level:
    // no subscriber sees anything while it runs, whatever the broker's log filter.
    let signed =
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::new(), || {
            sign(request, &params)
        })
        .map_err(|_| failed)?;
    let (instructions, _signature) = signed.into_parts();
    let (headers, _params) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|header| {
            (
                header.name().to_owned(),
                Zeroizing::new(header.value().to_owned()),
            )
        })
        .collect())
}
