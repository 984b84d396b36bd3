//! Registry access policy for svid-broker.

pub mod scope;
