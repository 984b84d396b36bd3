//! A blocking wrapper over [`crate::BrokerClient`] for one-shot programs (credential helpers,
//! scripts): each client owns a current-thread tokio runtime. Do not call these from inside an
//! async runtime.
//!
//! ```no_run
//! use svid_broker_client::{ClientOptions, ExchangeParams, blocking};
//! use svid_broker_identity::SpiffeId;
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let options = ClientOptions::new(
//!     "127.0.0.1:8443",
//!     SpiffeId::parse("spiffe://example.org/svid-broker")?,
//! );
//! let credential = blocking::exchange_once(
//!     options,
//!     &ExchangeParams::login_credential("registry.example.org"),
//! )?;
//! assert!(!credential.username.is_empty());
//! # Ok(()) }
//! ```

use tokio::runtime::{Builder, Runtime};

use crate::{ClientError, ClientOptions, Credential, ExchangeParams};

fn runtime() -> Result<Runtime, ClientError> {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ClientError::Runtime { source })
}

/// [`crate::exchange_once`] on a fresh current-thread runtime.
///
/// # Errors
/// As [`crate::exchange_once`], plus [`ClientError::Runtime`].
pub fn exchange_once(
    options: ClientOptions,
    params: &ExchangeParams,
) -> Result<Credential, ClientError> {
    runtime()?.block_on(crate::exchange_once(options, params))
}

/// A [`crate::BrokerClient`] with its own runtime.
#[derive(Debug)]
pub struct BrokerClient {
    // Field order matters: the client (and its Workload API tasks) drops before the runtime.
    inner: crate::BrokerClient,
    runtime: Runtime,
}

impl BrokerClient {
    /// [`crate::BrokerClient::connect`], blocking.
    ///
    /// # Errors
    /// As [`crate::BrokerClient::connect`], plus [`ClientError::Runtime`].
    pub fn connect(options: ClientOptions) -> Result<Self, ClientError> {
        let runtime = runtime()?;
        let inner = runtime.block_on(crate::BrokerClient::connect(options))?;
        Ok(Self { inner, runtime })
    }

    /// [`crate::BrokerClient::exchange`], blocking.
    ///
    /// # Errors
    /// As [`crate::BrokerClient::exchange`].
    pub fn exchange(&self, params: &ExchangeParams) -> Result<Credential, ClientError> {
        self.runtime.block_on(self.inner.exchange(params))
    }

    /// The async client, for callers that also run futures on [`Self::runtime`].
    pub fn as_async(&self) -> &crate::BrokerClient {
        &self.inner
    }

    /// The current-thread runtime this client owns and blocks on for every call; it is dropped
    /// with the client. Do not call the blocking API from inside another runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }
}
