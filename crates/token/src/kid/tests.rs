use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;

/// A fixed P-256 SPKI (private scalar 0x1234…cdef, repeated) and its IDs, computed once with
/// python3 `hashlib` + `base64.b32encode` + `json.dumps(sort_keys=True)` (an implementation
/// independent of this crate) and pinned here.
const P256_SPKI_HEX: &str = "3059301306072a8648ce3d020106082a8648ce3d03010703420004471c3e758c4904285bba7e53118ed0f524adeb0757d25bd2f8e7b0d76dfa714cdd520f7aca8a8b917acc37f51de8f0c9bbe3ad858382e702dc25a12d09f7a858";
const P256_LIBTRUST_KID: &str = "YTMR:CQZD:BUZQ:PAEQ:5WE4:EBY6:XCT3:4KS2:H4RY:ZPNK:F6FS:PH2K";
const P256_X: &str = "Rxw-dYxJBChbun5TEY7Q9SSt6wdX0lvS-Oew1236cUw";
const P256_Y: &str = "3VIPesqKi5F6zDf1HejwybvjrYWDgucC3CWhLQn3qFg";
const P256_THUMBPRINT: &str = "D8HvZq-fumkXpCwYIpjAPoqJx7WoEcJUS7tPPyIEJKI";

/// RFC 7638 §3.1: the example RSA key and its published thumbprint.
const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
const RFC7638_THUMBPRINT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn base32_matches_rfc4648_vectors() {
    // RFC 4648 §10, padding removed.
    for (input, want) in [
        ("", ""),
        ("f", "MY"),
        ("fo", "MZXQ"),
        ("foo", "MZXW6"),
        ("foob", "MZXW6YQ"),
        ("fooba", "MZXW6YTB"),
        ("foobar", "MZXW6YTBOI"),
    ] {
        assert_eq!(base32_nopad(input.as_bytes()), want, "{input:?}");
    }
    assert_eq!(base32_nopad(&[0xff; 5]), "77777777");
    assert_ne!(base32_nopad(b"foobar"), base32_nopad(b"foobaz"));
}

#[test]
fn libtrust_kid_matches_pinned_vector() {
    let kid = libtrust_key_id(&hex(P256_SPKI_HEX));
    assert_eq!(kid, P256_LIBTRUST_KID);
    assert_eq!(kid.len(), 48 + 11);
    assert_eq!(kid.split(':').count(), 12);
    assert!(kid.split(':').all(|g| g.len() == 4));
    // A single changed byte of the key gives another ID.
    let mut other = hex(P256_SPKI_HEX);
    let last = other.len() - 1;
    other[last] ^= 1;
    assert_ne!(libtrust_key_id(&other), P256_LIBTRUST_KID);
}

#[test]
fn ec_thumbprint_matches_pinned_vector() {
    let spki = hex(P256_SPKI_HEX);
    // The uncompressed point is the last 65 bytes of this SPKI.
    let point = &spki[spki.len() - 65..];
    let jwk = PublicJwk::Ec {
        crv: "P-256",
        x: point[1..33].to_vec(),
        y: point[33..].to_vec(),
    };
    assert_eq!(URL_SAFE_NO_PAD.encode(&point[1..33]), P256_X);
    assert_eq!(URL_SAFE_NO_PAD.encode(&point[33..]), P256_Y);
    assert_eq!(jwk.thumbprint(), P256_THUMBPRINT);
    let other = PublicJwk::Ec {
        crv: "P-384",
        x: point[1..33].to_vec(),
        y: point[33..].to_vec(),
    };
    assert_ne!(other.thumbprint(), P256_THUMBPRINT);
}

#[test]
fn rsa_thumbprint_matches_rfc7638_example() {
    let jwk = PublicJwk::Rsa {
        n: URL_SAFE_NO_PAD.decode(RFC7638_N).unwrap(),
        e: vec![1, 0, 1],
    };
    assert_eq!(jwk.thumbprint(), RFC7638_THUMBPRINT);
    let wrong_e = PublicJwk::Rsa {
        n: URL_SAFE_NO_PAD.decode(RFC7638_N).unwrap(),
        e: vec![3],
    };
    assert_ne!(wrong_e.thumbprint(), RFC7638_THUMBPRINT);
}

#[test]
fn jwk_members_are_the_required_ones() {
    let jwk = PublicJwk::Rsa {
        n: vec![0xc0, 0x01],
        e: vec![1, 0, 1],
    };
    let m = jwk.members();
    assert_eq!(
        m.keys().map(String::as_str).collect::<Vec<_>>(),
        ["e", "kty", "n"]
    );
    assert_eq!(m["e"], "AQAB");
}

#[test]
fn leading_zeros_are_stripped() {
    assert_eq!(strip_leading_zeros(&[0, 0, 0x80, 0]), &[0x80, 0]);
    assert_eq!(strip_leading_zeros(&[1, 0]), &[1, 0]);
    assert_eq!(strip_leading_zeros(&[0]), &[] as &[u8]);
}
