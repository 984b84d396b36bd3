//! Runnable examples of the svid-broker library crates; see the `[[example]]` targets:
//!
//! - `validate_svids`: validate a JWT-SVID and verify an X.509-SVID chain offline with
//!   `svid-broker-identity`, and see the exact rule a bad one fails.
//! - `workload_api_source`: run the dev trust domain's Workload API server and consume it with the
//!   real `spiffe` crate's `X509Source`, then verify what it hands out.
//! - `mint_verify_token`: mint a registry token with `svid-broker-token` and verify it offline
//!   the way distribution 2.8 does (`x5c` chain to the root bundle, `alg`, signature, `iss`,
//!   `aud` as a string, `exp`), then see what each check refuses.
//! - `embed_server`: start `BrokerServer` from `svid-broker-server` inside another program, get
//!   a registry token from its token realm with a JWT-SVID over HTTP, and shut it down.
//! - `exchange_client`: call the gRPC `Exchange` API with `svid-broker-client` (X.509-SVID over
//!   mTLS) for a login credential and an access token; in-process without arguments, or
//!   against a real broker with `BROKER_ADDR BROKER_SPIFFE_ID REGISTRY_SERVICE`.
//!
//! Each runs in seconds with no external service (127.0.0.1 and temporary directories only),
//! prints what it did, and exits non-zero on any failure; `scripts/test.sh` runs them all.
//! Run one with `cargo run -p svid-broker-examples --example validate_svids`.
