//! Shared fixtures for the unit tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use svid_broker_identity::id::SpiffeId;

use crate::keys::{KeyRing, KeyRingConfig, SigningAlgorithm, SigningCa};
use crate::mint::TokenMinter;

/// A fixed "now" (2027-01-15T08:00:00Z) so every time computation is reproducible.
pub(crate) fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

pub(crate) const CA_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);

pub(crate) fn ca(algorithm: SigningAlgorithm) -> SigningCa {
    SigningCa::generate(algorithm, "svid-broker test ca", CA_LIFETIME, t0()).unwrap()
}

pub(crate) fn config(algorithm: SigningAlgorithm) -> KeyRingConfig {
    KeyRingConfig {
        algorithm,
        ..KeyRingConfig::default()
    }
}

pub(crate) fn ring(algorithm: SigningAlgorithm) -> KeyRing {
    KeyRing::new(ca(SigningAlgorithm::Es256), config(algorithm), t0()).unwrap()
}

pub(crate) fn minter(algorithm: SigningAlgorithm) -> TokenMinter {
    TokenMinter::new(ring(algorithm))
}

pub(crate) fn subject() -> SpiffeId {
    SpiffeId::parse("spiffe://example.org/ns/ci/sa/builder").unwrap()
}

/// Splits a compact JWS into decoded header JSON, claims JSON and signature bytes.
pub(crate) fn decode(token: &str) -> (Value, Value, Vec<u8>) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS");
    let json = |s: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    (
        json(parts[0]),
        json(parts[1]),
        URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
    )
}
