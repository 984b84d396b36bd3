//! svid-broker's token-exchange service: the async shell around the sync identity, policy and
//! token crates.
//!
//! - [`engine`]: [`Broker`], the decisions (authenticate, decide, mint) as sync functions.
//! - [`credential`]: stateless login credentials and refresh tokens (HMAC keys derived from
//!   the signing CA key).
//! - [`realm`]: the HTTP token realm (`GET`/`POST /token`), JWKS, OIDC discovery, health and
//!   metrics, as an axum router.
//! - [`ops`]: audit events, metrics, the per-subject rate limiter, the issued-token cache.
//! - [`config`]: the strict TOML server configuration.
//! - [`server`]: [`BrokerServer`], wiring listeners, policy reload, key rotation and shutdown.
//! - [`grpc`]: the gRPC `Exchange` service.
//! - [`satoken`]: Kubernetes service-account tokens as exchange subjects (KEP-4412), their
//!   issuers' keys and the mapping to SPIFFE IDs.

pub mod config;
pub mod credential;
pub mod engine;
pub mod grpc;
pub mod http_listener;
pub mod listen;
pub mod ops;
pub mod realm;
pub mod satoken;
pub mod server;
pub mod tls_files;

#[cfg(test)]
mod testutil;

pub use config::{BrokerConfig, ConfigError};
pub use credential::{CredentialError, CredentialKeys, CredentialKind, Secret};
pub use engine::{
    AuthFailure, AuthMethod, Authenticated, Broker, BrokerOptions, Caller, Denial, Endpoint,
    ErrorCode, ExchangeError, ExchangeInput, ExchangeKind, ExchangeOutput, InvalidRequest,
    Unavailability,
};
pub use server::{BrokerServer, ServerError, ServerHandle};
