//! End-to-end tests of the `svid-broker` binary: the CLI contracts scripts rely on, and the dev
//! trust domain driven by the real `spiffe` crate client.

mod support;

mod inspect;
mod dev;
mod verify;
