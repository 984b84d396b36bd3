//! Signing keys svid-broker never holds.
//!
//! [`pkcs11`] opens a key in a PKCS#11 token (a hardware security module, or SoftHSM2) named by
//! an RFC 7512 URI and signs through the token; [`kms`] (feature `kms`) does the same with an
//! AWS KMS key. Both implement `svid_broker_token::external::ExternalKey` (and `ExternalMac`
//! for the HMAC key the broker derives its shared credential MAC keys from), the seam the
//! signing CA and the federation issuer take. Everything is synchronous: a call blocks for one
//! round trip to the token or the KMS.

pub mod pkcs11;

#[cfg(feature = "kms")]
pub mod kms;
