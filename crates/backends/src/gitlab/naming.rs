//! GitLab's side of the broker's names (see [`crate::naming`]): `<prefix>-<revoke_unix>-<16 hex>`
//! is both the deploy token's name and its username (so whoever reads a registry log sees
//! what it is), and the same time is GitLab's own `expires_at`.

use std::time::{Duration, UNIX_EPOCH};

use svid_broker_identity::clock::Rfc3339;

/// Whole Unix seconds as RFC 3339 UTC (`2026-12-03T08:15:00Z`), GitLab's `expires_at` input.
pub(crate) fn rfc3339_seconds(unix: u64) -> String {
    Rfc3339(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}
