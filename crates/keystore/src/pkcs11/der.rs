//! The few DER structures PKCS#11 tokens hand out in pieces: a SubjectPublicKeyInfo built
//! from `CKA_EC_PARAMS` and `CKA_EC_POINT` or `CKA_MODULUS` and `CKA_PUBLIC_EXPONENT`, and
//! the DER `ECDSA-Sig-Value` of a token's fixed `r || s` signature. Written here: a few
//! fixed prefixes and a length encoder, where a DER crate would be a new dependency for
//! forty lines.

use svid_broker_token::external::ExternalAlgorithm;

/// `CKA_EC_PARAMS` of P-256: the DER OID 1.2.840.10045.3.1.7.
pub(crate) const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// `CKA_EC_PARAMS` of P-384: the DER OID 1.3.132.0.34.
pub(crate) const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// id-ecPublicKey, 1.2.840.10045.2.1.
const EC_PUBLIC_KEY_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// rsaEncryption, 1.2.840.113549.1.1.1, with its NULL parameters.
const RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// The longest SubjectPublicKeyInfo built here: RSA-4096 with a 4-byte exponent, rounded up.
pub(crate) const MAX_BUILT_SPKI_LEN: usize = 600;

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xff {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
}

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(tag);
    push_len(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// A positive INTEGER from unsigned big-endian bytes: leading zeros dropped, one added when
/// the top bit is set.
fn unsigned_integer(value: &[u8]) -> Vec<u8> {
    let start = value.iter().position(|&b| b != 0).unwrap_or(value.len());
    let value = &value[start..];
    let mut body = Vec::with_capacity(value.len() + 1);
    if value.first().is_none_or(|&b| b & 0x80 != 0) {
        body.push(0);
    }
    body.extend_from_slice(value);
    tlv(0x02, &body)
}

fn spki(algorithm: &[u8], key_bits: &[u8]) -> Vec<u8> {
    let mut bit_string = Vec::with_capacity(key_bits.len() + 1);
    bit_string.push(0); // no unused bits
    bit_string.extend_from_slice(key_bits);
    let mut body = tlv(0x30, algorithm);
    body.extend(tlv(0x03, &bit_string));
    tlv(0x30, &body)
}

/// The SPKI of an EC public key from its PKCS#11 attributes. `CKA_EC_POINT` is a DER OCTET
/// STRING holding the point (PKCS#11 2.40 and later); a few tokens give the bare point, which
/// is taken too.
pub(crate) fn ec_spki(
    params: &[u8],
    point: &[u8],
) -> Result<(ExternalAlgorithm, Vec<u8>), &'static str> {
    let (algorithm, curve, point_len) = if params == P256_OID {
        (ExternalAlgorithm::EcdsaP256Sha256, P256_OID, 65)
    } else if params == P384_OID {
        (ExternalAlgorithm::EcdsaP384Sha384, P384_OID, 97)
    } else {
        return Err("the EC key is on neither P-256 nor P-384");
    };
    let point = match point {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() && rest.len() == point_len => {
            rest
        }
        [0x04, 0x81, len, rest @ ..]
            if usize::from(*len) == rest.len() && rest.len() == point_len =>
        {
            rest
        }
        bare if bare.len() == point_len => bare,
        _ => return Err("the EC point is not an uncompressed point of its curve"),
    };
    if point.first() != Some(&0x04) {
        return Err("the EC point is not an uncompressed point of its curve");
    }
    let mut algorithm_id = EC_PUBLIC_KEY_OID.to_vec();
    algorithm_id.extend_from_slice(curve);
    Ok((algorithm, spki(&algorithm_id, point)))
}

/// The SPKI of an RSA public key from its modulus and exponent (unsigned big-endian).
pub(crate) fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Result<Vec<u8>, &'static str> {
    let start = modulus
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(modulus.len());
    let bits = (modulus.len() - start) * 8;
    if !(2048..=4096).contains(&bits) {
        return Err("the RSA key must be 2048 to 4096 bits");
    }
    if exponent.is_empty() || exponent.len() > 4 {
        return Err("the RSA public exponent is empty or longer than 4 bytes");
    }
    let mut body = unsigned_integer(modulus);
    body.extend(unsigned_integer(exponent));
    Ok(spki(RSA_ENCRYPTION, &tlv(0x30, &body)))
}

/// A token's fixed-length `r || s` ECDSA signature as DER `SEQUENCE { r, s }`.
pub(crate) fn ecdsa_fixed_to_der(
    signature: &[u8],
    scalar_len: usize,
) -> Result<Vec<u8>, &'static str> {
    if signature.len() != 2 * scalar_len {
        return Err("ECDSA signature is not twice the curve's scalar length");
    }
    let (r, s) = signature.split_at(scalar_len);
    let mut body = unsigned_integer(r);
    body.extend(unsigned_integer(s));
    Ok(tlv(0x30, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
        RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey,
    };

    #[test]
    fn built_ec_spki_is_the_one_aws_lc_rs_writes() {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = pair.public_key().as_ref();
        let (algorithm, built) = ec_spki(P256_OID, &tlv(0x04, point)).unwrap();
        assert_eq!(algorithm, ExternalAlgorithm::EcdsaP256Sha256);
        let expected = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
            pair.public_key(),
        )
        .unwrap();
        assert_eq!(built, expected.as_ref());
        // The bare point is taken too; another curve's OID is not.
        assert_eq!(ec_spki(P256_OID, point).unwrap().1, built);
        assert!(ec_spki(P384_OID, point).is_err());
        assert!(ec_spki(&[0x06, 0x01, 0x00], point).is_err());
    }

    #[test]
    fn built_rsa_spki_parses_and_verifies() {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let public = pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero();
        let e = public.exponent().big_endian_without_leading_zero();
        let built = rsa_spki(n, e).unwrap();
        let expected =
            aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(public)
                .unwrap();
        assert_eq!(built, expected.as_ref());
        let mut signature = vec![0u8; pair.public_modulus_len()];
        pair.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            b"m",
            &mut signature,
        )
        .unwrap();
        assert!(rsa_spki(&n[..128], e).is_err(), "1024-bit keys are refused");
    }

    #[test]
    fn fixed_signatures_convert_to_der_that_verifies() {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, pair.public_key().as_ref());
        for i in 0..200u32 {
            let message = i.to_be_bytes();
            let fixed = pair.sign(&SystemRandom::new(), &message).unwrap();
            let der = ecdsa_fixed_to_der(fixed.as_ref(), 32).unwrap();
            public.verify(&message, &der).unwrap();
            let back = svid_broker_token::external::ecdsa_der_to_jws(&der, 32).unwrap();
            assert_eq!(back, fixed.as_ref());
        }
        assert!(ecdsa_fixed_to_der(&[0u8; 63], 32).is_err());
    }
}
