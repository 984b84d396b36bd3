//! PKCS#11 against SoftHSM2 (being written).
