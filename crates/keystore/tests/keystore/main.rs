//! The key stores against real or faithfully faked stores, in one test binary: `pkcs11`
//! against Debian's SoftHSM2, `kms` against the fake AWS KMS of `svid_broker_dev::fake::aws`.

mod pkcs11;

#[cfg(feature = "kms")]
mod kms;
