//! The request plumbing every backend shares: one registry's [`ApiClient`], its
//! [`ApiMeter`], and the registry's name and kind that label every [`BackendError`].
//!
//! What differs between products stays with each backend, handed over as an [`ApiShape`]:
//! how the vendor words an error, and which 404 means "no such project".

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use svid_broker_token::federation::{
    FederatedClaims, FederationError, FederationIssuer, MintedFederatedToken,
};

use crate::credential::BackendGrant;
use crate::error::{BackendError, BackendKind, ConfigError, ConfigProblem, Failure, Step};
use crate::figures::ApiMeter;
use crate::http::{ApiClient, ApiResponse, ClientSettings};

/// Reads a vendor's error text from an answer's body, scrubbed of the broker's credential.
pub(crate) type VendorMessage = fn(&ApiClient, &[u8]) -> String;

/// What tells one registry product's API apart in the shared plumbing.
#[derive(Clone, Copy)]
pub(crate) struct ApiShape {
    /// Which product this is: the first word of its errors.
    pub(crate) kind: BackendKind,
    /// Reads the product's error text (JSON shape, field names) out of an answer's body.
    pub(crate) vendor_message: VendorMessage,
    /// A 404 whose vendor text holds this means the project is unknown (GitLab's
    /// `404 Project Not Found`); without it every 404 is a refusal.
    pub(crate) missing_project_text: Option<&'static str>,
}

/// The connection limits every backend configuration carries (see [`limits_of`]).
pub(crate) struct Limits {
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) request_deadline: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) max_response_bytes: usize,
}

/// One registry's API as a backend speaks to it.
pub(crate) struct RegistryApi {
    /// The registry's name in the policy.
    pub(crate) registry: String,
    /// Which product the registry is configured as: the first word of its errors.
    pub(crate) kind: BackendKind,
    pub(crate) client: ApiClient,
    pub(crate) meter: ApiMeter,
    vendor_message: VendorMessage,
    missing_project_text: Option<&'static str>,
    random: &'static dyn rustls::crypto::SecureRandom,
}

/// What a `DELETE` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deleted {
    /// The credential was there and is gone now.
    Now,
    /// The registry answered 404: it was already gone, which counts as deleted.
    AlreadyGone,
}

impl RegistryApi {
    /// Builds the client from `settings` (its authentication) and `limits`.
    ///
    /// # Errors
    /// What [`ApiClient::new`] refuses.
    pub(crate) fn new(
        registry: String,
        shape: ApiShape,
        mut settings: ClientSettings,
        limits: Limits,
    ) -> Result<Self, ConfigProblem> {
        settings.ca_file = limits.ca_file;
        settings.request_deadline = limits.request_deadline;
        settings.max_in_flight = limits.max_in_flight;
        settings.max_response_bytes = limits.max_response_bytes;
        let client = ApiClient::new(&settings)?;
        Ok(Self {
            registry,
            kind: shape.kind,
            client,
            meter: ApiMeter::new(),
            vendor_message: shape.vendor_message,
            missing_project_text: shape.missing_project_text,
            random: rustls::crypto::aws_lc_rs::default_provider().secure_random,
        })
    }

    /// A failure at `step`, labelled with this registry.
    pub(crate) fn error(&self, step: Step, failure: Failure) -> BackendError {
        BackendError::new(self.registry.clone(), self.kind, step, failure)
    }

    /// Counts one request's outcome and names the registry and step of a failure.
    pub(crate) fn finish<T>(
        &self,
        step: &Step,
        result: Result<T, Failure>,
    ) -> Result<T, BackendError> {
        match result {
            Ok(value) => {
                self.meter.record(step.name(), "ok");
                Ok(value)
            }
            Err(failure) => {
                self.meter.record(step.name(), failure.outcome());
                Err(self.error(step.clone(), failure))
            }
        }
    }

    /// [`Failure::GrantExpired`] at [`Step::MapGrant`] when `grant`'s time is not after `now`.
    pub(crate) fn ensure_unexpired(
        &self,
        grant: &BackendGrant,
        now: SystemTime,
    ) -> Result<(), BackendError> {
        if grant.revoke_at <= now {
            return Err(self.error(Step::MapGrant, Failure::GrantExpired));
        }
        Ok(())
    }

    /// Fills `buffer` from the system's secure random source.
    pub(crate) fn fill_random(&self, buffer: &mut [u8]) -> Result<(), Failure> {
        self.random.fill(buffer).map_err(|_| Failure::Internal {
            what: "the random number generator failed",
        })
    }

    /// The failure a non-2xx answer stands for.
    pub(crate) fn expect_success(&self, response: &ApiResponse) -> Result<(), Failure> {
        expect_success(
            &self.client,
            response,
            self.vendor_message,
            self.missing_project_text,
        )
    }

    /// Sends one request and turns a non-2xx answer into its failure.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        json_body: Option<Vec<u8>>,
    ) -> Result<ApiResponse, Failure> {
        let response = self.client.send(method, path, json_body).await?;
        self.expect_success(&response)?;
        Ok(response)
    }

    /// `GET path`, its body read as JSON (`what` names the expected shape in the failure).
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        what: &'static str,
    ) -> Result<T, Failure> {
        let response = self.call(Method::GET, path, None).await?;
        parse_json(&response.body, what)
    }

    /// `DELETE path` at `step`, counted; a 404 counts as deleted.
    pub(crate) async fn delete(&self, step: &Step, path: &str) -> Result<Deleted, BackendError> {
        let result = async {
            let response = self.client.send(Method::DELETE, path, None).await?;
            if response.status == StatusCode::NOT_FOUND {
                return Ok(Deleted::AlreadyGone);
            }
            self.expect_success(&response)?;
            Ok(Deleted::Now)
        }
        .await;
        self.finish(step, result)
    }
}

/// A configuration problem of `registry` as the [`ConfigError`] naming it.
pub(crate) fn config_error(
    registry: &str,
    kind: BackendKind,
) -> impl Fn(ConfigProblem) -> ConfigError + '_ {
    move |problem| ConfigError {
        registry: registry.to_owned(),
        kind,
        problem,
    }
}

/// The [`Limits`] of a backend configuration (every one has these four fields).
macro_rules! limits_of {
    ($config:expr) => {
        $crate::api::Limits {
            ca_file: $config.ca_file.clone(),
            request_deadline: $config.request_deadline,
            max_in_flight: $config.max_in_flight,
            max_response_bytes: $config.max_response_bytes,
        }
    };
}

pub(crate) use limits_of;

/// Reads `body` as JSON; [`Failure::Malformed`] with `what` when it is not that shape.
pub(crate) fn parse_json<T: DeserializeOwned>(
    body: &[u8],
    what: &'static str,
) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|_| Failure::Malformed { what })
}

/// The failure a non-2xx answer stands for, with the vendor's text read by `vendor_message`
/// (only when a failure carries it). A 404 whose text holds `missing_project_text` is
/// [`Failure::NoSuchProject`].
pub(crate) fn expect_success(
    client: &ApiClient,
    response: &ApiResponse,
    vendor_message: VendorMessage,
    missing_project_text: Option<&'static str>,
) -> Result<(), Failure> {
    let status = response.status;
    if status.is_success() {
        return Ok(());
    }
    let message = || vendor_message(client, &response.body);
    Err(match status.as_u16() {
        401 => Failure::Unauthorized,
        403 => Failure::Forbidden { message: message() },
        404 if missing_project_text.is_some_and(|text| message().contains(text)) => {
            Failure::NoSuchProject
        }
        429 => Failure::RateLimited {
            retry_after: response.retry_after(),
        },
        500..=599 => Failure::ServerError {
            status: status.as_u16(),
        },
        code => Failure::Rejected {
            status: code,
            message: message(),
        },
    })
}

#[cfg(test)]
mod tests;

/// Signs the broker's JWT for an exchange. A federation key in a key store (an HSM, a KMS)
/// answers after a round trip, so that signature runs on the blocking pool rather than on a
/// runtime worker; a key in memory signs in place.
pub(crate) async fn mint_federated(
    issuer: &Arc<FederationIssuer>,
    claims: FederatedClaims,
    now: SystemTime,
) -> Result<MintedFederatedToken, FederationError> {
    if !issuer.signs_externally() {
        return issuer.mint(&claims, now);
    }
    let issuer = Arc::clone(issuer);
    tokio::task::spawn_blocking(move || issuer.mint(&claims, now))
        .await
        .unwrap_or(Err(FederationError::Signing))
}

/// Why the broker's own JWT could not be signed (before any API call), as the failure names
/// it; logged once with the kind, since it is the broker's fault, not the registry's.
pub(crate) fn sign_failure(kind: BackendKind, error: &FederationError) -> Failure {
    tracing::warn!(kind = %kind, error = %error, "cannot sign the federated token");
    let what = match error {
        FederationError::InvalidClaim { .. } | FederationError::TooManyClaims { .. } => {
            "the rendered subject, the audience or an extra claim breaks the federated token's claim rules (1 to 1024 bytes, no control character)"
        }
        FederationError::TimeOutOfRange => "the current time cannot be written in a token",
        FederationError::Random => "the random number generator failed",
        _ => "the federation key could not sign",
    };
    Failure::Internal { what }
}

/// A [`VendorMessage`] that reads nothing: for a step whose caller reads (and scrubs) the
/// vendor's text itself, the shared plumbing only classifies the status.
pub(crate) fn no_message(_client: &ApiClient, _body: &[u8]) -> String {
    String::new()
}
