//! svid-broker's token-exchange service: the async shell around the sync identity, policy and
//! token crates.
//!
//! A request goes through one pass (see [`engine`]); each step has its module:
//!
//! - [`request`]: what a client asks for, checked once at its edge ([`ExchangeRequest`]).
//! - [`authn`]: what the caller presented becomes a typed [`Subject`].
//! - [`decision`]: the policy decision, as a value ([`Grant`](decision::Grant)).
//! - [`issue`]: the [`CredentialIssuer`] trait and one implementation per credential kind.
//! - [`backends`]: the async shell around registries whose own API makes the credential
//!   (Harbor): the engine stops at the decided grant ([`engine::Begun::Backend`]), the gRPC
//!   edge takes it to the backend, and the engine records what came back.
//! - [`engine`]: [`Broker`], which runs the pass and records each outcome once.
//! - [`audit`], [`metrics`]: where outcomes are recorded.
//! - [`throttle`]: per-subject rate limits, the per-address failure budget, the aggregation of
//!   refusals before authentication. [`token_cache`]: the issued-token cache.
//! - [`error`]: the error vocabulary, in classes that map onto HTTP and gRPC codes.
//! - [`credential`]: stateless login credentials and refresh tokens (HMAC keys derived from
//!   the signing CA key).
//! - [`satoken`]: Kubernetes service-account tokens as exchange subjects (KEP-4412).
//!
//! The edges: [`realm`] (the HTTP token realm, JWKS, OIDC discovery, health, metrics),
//! [`oauth2`] (RFC 8693 token exchange over HTTP, on the realm's router), [`grpc`] (the
//! `Exchange` service), served by [`http_listener`] and [`listen`]'s connection governor;
//! [`config`] and [`server`] ([`BrokerServer`]) wire them.

pub mod audit;
pub mod authn;
pub mod backends;
pub mod config;
pub mod credential;
pub mod decision;
pub mod engine;
pub mod error;
pub mod federation;
pub mod grpc;
pub mod http_listener;
pub mod issue;
pub mod key_stores;
pub mod listen;
pub mod metrics;
pub mod oauth2;
pub mod realm;
pub mod request;
pub mod satoken;
pub mod server;
pub mod throttle;
pub mod tls_files;
pub mod token_cache;
pub(crate) mod verified_cache;

#[cfg(test)]
mod testutil;

pub use authn::{AuthMethod, Authenticated, Caller, Subject};
pub use config::{BrokerConfig, ConfigError};
pub use credential::{CredentialError, CredentialKeys, CredentialKind};
pub use engine::{
    BackendPass, Begun, Broker, BrokerOptions, ExchangeOutput, Exchanged, RealmTokens,
};
pub use error::{AuthFailure, Denial, ErrorCode, ExchangeError, InvalidRequest, Unavailability};
pub use issue::CredentialIssuer;
pub use request::{Endpoint, ExchangeKind, ExchangeRequest, Presented, RequestContext};
pub use server::{BrokerServer, ServerError, ServerHandle};
pub use verified_cache::CacheLimits;
