//! End-to-end tests of the `svid-broker` binary: the CLI contracts scripts rely on, and the dev
//! trust domain driven by the real `spiffe` crate client.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test harness helpers: a failed step must fail the test, with the step named"
)]

mod doccheck;
mod fixtures;
mod markdown;
mod support;

mod audit_html;
mod backends;
mod cloud;
mod config_reference;
mod containerd;
mod credential_helper_backends;
mod demo;
mod deploy;
mod dev;
mod docs;
mod faults;
mod federated;
mod grpc;
mod harbor;
mod hsm;
mod inspect;
mod oauth2;
mod pyspiffe;
mod readme;
mod realm;
mod realm_tls;
mod registry;
mod satoken;
mod serve;
mod verify;
