//! Runnable examples of the svid-broker library crates; see the `[[example]]` targets:
//!
//! - `validate_svids`: validate a JWT-SVID and verify an X.509-SVID chain offline with
//!   `svid-broker-identity`, and see the exact rule a bad one fails.
//! - `workload_api_source`: run the dev trust domain's Workload API server and consume it with the
//!   real `spiffe` crate's `X509Source`, then verify what it hands out.
//!
//! Run one with `cargo run -p svid-broker-examples --example validate_svids`.
