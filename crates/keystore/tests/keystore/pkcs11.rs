//! PKCS#11 against Debian's SoftHSM2: keys generated in a fresh token, signatures verified
//! here with aws-lc-rs against the public key the token holds, every refusal by its variant,
//! a session the token lost reopened, and the signing CA's leaves signed through the token.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once, at `C_Initialize`, and the module is initialized once
//! per process; the workspace forbids `unsafe`, so `std::env::set_var` is out. Hence the
//! re-exec: [`pkcs11_against_softhsm2`] makes a token in a temporary directory and runs each
//! ignored inner test in a child of this very binary with `SOFTHSM2_CONF` set, one process
//! per inner test (the recovery test finalizes the module under the others' feet otherwise).

#![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
    VerificationAlgorithm,
};
use base64::Engine as _;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use svid_broker_identity::report::ErrorChain;
use svid_broker_identity::secret::SecretString;
use svid_broker_keystore::pkcs11::{
    ObjectType, Pkcs11Error, Pkcs11Key, Pkcs11Module, Pkcs11Token, Pkcs11Uri,
};
use svid_broker_token::external::{ExternalAlgorithm, ExternalKey, ExternalKeyError, ExternalMac};
use svid_broker_token::{KeyError, KeyRing, KeyRingConfig, SigningCa};
use zeroize::Zeroizing;

// The testkit's bounded child processes, without making the testkit (and the server it
// pulls in) a dependency of this crate.
#[path = "../../../testkit/src/process.rs"]
#[allow(
    dead_code,
    unreachable_pub,
    clippy::expect_used,
    clippy::panic,
    clippy::unwrap_used,
    reason = "shared test harness: only a part is used here, and a failed step fails the test"
)]
mod process;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "svid-broker-test";
const PIN_ENV: &str = "SVID_BROKER_TEST_PIN";
const PIN: &str = "246810";
const SO_PIN: &str = "13579135";
const CONF_ENV: &str = "SOFTHSM2_CONF";
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// The inner tests, each run alone in a child with the token's config.
const INNER: &[&str] = &[
    "generated_keys_sign_verify_and_sign_the_ca_leaves",
    "unsuitable_keys_and_bad_names_are_refused",
    "a_session_the_token_lost_is_reopened",
];

#[test]
fn pkcs11_against_softhsm2() {
    if !process::require("softhsm2-util") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let init = process::run(
        Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", TOKEN])
            .args(["--pin", PIN, "--so-pin", SO_PIN])
            .env(CONF_ENV, &conf),
        None,
    );
    assert!(init.success(), "softhsm2-util --init-token: {init:?}");

    let exe = std::env::current_exe().unwrap();
    // Test names are relative to the binary's root: `pkcs11::<name>`.
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    for name in INNER {
        let path = format!("{module}::{name}");
        let out = process::run(
            Command::new(&exe)
                .args([path.as_str(), "--exact", "--ignored", "--nocapture"])
                .env(CONF_ENV, &conf)
                .env(PIN_ENV, PIN),
            None,
        );
        assert!(
            out.success(),
            "{path} failed:\n--- stdout\n{}\n--- stderr\n{}",
            out.stdout,
            out.stderr
        );
        assert!(
            out.stdout.contains("test result: ok. 1 passed"),
            "{path} did not run:\n{}",
            out.stdout
        );
    }
}

// === Helpers ===

fn pin() -> SecretString {
    assert!(
        std::env::var_os(CONF_ENV).is_some(),
        "run by pkcs11_against_softhsm2, which sets {CONF_ENV}"
    );
    let pin = std::env::var(PIN_ENV)
        .unwrap_or_else(|_| panic!("run by pkcs11_against_softhsm2, which sets {PIN_ENV}"));
    SecretString::from(pin)
}

fn uri(object: &str) -> Pkcs11Uri {
    Pkcs11Uri::parse(&format!("pkcs11:token={TOKEN};object={object}")).unwrap()
}

fn open() -> Arc<Pkcs11Token> {
    let module = Pkcs11Module::load(Path::new(MODULE)).unwrap();
    Pkcs11Token::open(module, &uri("any"), pin()).unwrap()
}

fn initialize(context: &Pkcs11) {
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
}

/// A session of this test's own, beside the broker's: same module and process (PKCS#11 login
/// state is per application), for making keys the broker must refuse and reading attributes.
fn raw_session() -> Session {
    let context = Pkcs11::new(MODULE).unwrap();
    initialize(&context);
    let slot = context
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|&slot| context.get_token_info(slot).unwrap().label().trim_end() == TOKEN)
        .unwrap();
    let session = context.open_rw_session(slot).unwrap();
    match session.login(UserType::User, Some(&pin())) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("C_Login: {e}"),
    }
    session
}

fn find(session: &Session, class: ObjectClass, label: &str) -> Vec<ObjectHandle> {
    session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap()
}

fn one(session: &Session, class: ObjectClass, label: &str) -> ObjectHandle {
    let found = find(session, class, label);
    assert_eq!(found.len(), 1, "{label}: {class:?}");
    found[0]
}

fn attribute(session: &Session, object: ObjectHandle, kind: AttributeType) -> Attribute {
    session
        .get_attributes(object, &[kind])
        .unwrap()
        .pop()
        .unwrap_or_else(|| panic!("{kind:?} unavailable"))
}

fn flag(session: &Session, object: ObjectHandle, kind: AttributeType) -> bool {
    match attribute(session, object, kind) {
        Attribute::Sensitive(v)
        | Attribute::Extractable(v)
        | Attribute::Token(v)
        | Attribute::Private(v)
        | Attribute::AlwaysSensitive(v)
        | Attribute::NeverExtractable(v) => v,
        other => panic!("{other:?}"),
    }
}

/// What the broker relies on of every key it generates: on the token, behind the login,
/// never readable, and never was.
fn assert_kept_in_token(session: &Session, object: ObjectHandle, what: &str) {
    for (kind, want) in [
        (AttributeType::Token, true),
        (AttributeType::Private, true),
        (AttributeType::Sensitive, true),
        (AttributeType::Extractable, false),
        (AttributeType::AlwaysSensitive, true),
        (AttributeType::NeverExtractable, true),
    ] {
        assert_eq!(flag(session, object, kind), want, "{what}: {kind:?}");
    }
}

fn verify(alg: &'static dyn VerificationAlgorithm, key: &dyn ExternalKey, message: &[u8]) {
    let signature = key.sign(message).unwrap();
    UnparsedPublicKey::new(alg, key.public_key_spki())
        .verify(message, &signature)
        .unwrap_or_else(|_| panic!("{} signature does not verify", key.describe()));
    assert!(
        UnparsedPublicKey::new(alg, key.public_key_spki())
            .verify(b"another message", &signature)
            .is_err()
    );
}

/// One DER TLV at the start of `bytes`: (the whole TLV, its contents, what follows).
fn tlv(bytes: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let (len, header) = match bytes[1] {
        short @ 0..=0x7f => (usize::from(short), 2),
        0x81 => (usize::from(bytes[2]), 3),
        0x82 => (usize::from(bytes[2]) << 8 | usize::from(bytes[3]), 4),
        other => panic!("DER length form {other:#x}"),
    };
    let end = header + len;
    (&bytes[..end], &bytes[header..end], &bytes[end..])
}

/// Checks `cert` (DER) is signed by `issuer`'s key: the signature over its TBSCertificate.
fn assert_signed_by(cert: &[u8], issuer: &dyn ExternalKey) {
    let (_, body, _) = tlv(cert);
    let (tbs, _, rest) = tlv(body);
    let (_, _, rest) = tlv(rest); // signatureAlgorithm
    let (_, bits, _) = tlv(rest);
    assert_eq!(bits[0], 0, "no unused bits in the signature");
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, issuer.public_key_spki())
        .verify(tbs, &bits[1..])
        .unwrap_or_else(|_| panic!("certificate not signed by {}", issuer.describe()));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// === Inner tests ===

#[test]
#[ignore = "run by pkcs11_against_softhsm2 with SOFTHSM2_CONF set"]
fn generated_keys_sign_verify_and_sign_the_ca_leaves() {
    let token = open();
    let raw = raw_session();
    let p256 = Pkcs11Uri::parse(&format!("pkcs11:token={TOKEN};object=ca-p256;id=%01")).unwrap();
    let p384 = uri("ca-p384");
    let rsa = uri("federation-rsa");
    token
        .generate_ca_key(
            &p256,
            &p256.with_type(ObjectType::SecretKey),
            ExternalAlgorithm::EcdsaP256Sha256,
        )
        .unwrap();
    token
        .generate_ca_key(
            &p384,
            &p384.with_type(ObjectType::SecretKey),
            ExternalAlgorithm::EcdsaP384Sha384,
        )
        .unwrap();
    token.generate_federation_key(&rsa).unwrap();

    // Each opens as a key of its algorithm whose SPKI is the token's public key, and signs.
    let key256 = token
        .signing_key(&p256.with_type(ObjectType::Private))
        .unwrap();
    let key384 = token.signing_key(&p384).unwrap();
    let key_rsa = token.signing_key(&rsa).unwrap();
    assert_eq!(key256.algorithm(), ExternalAlgorithm::EcdsaP256Sha256);
    assert_eq!(key384.algorithm(), ExternalAlgorithm::EcdsaP384Sha384);
    assert_eq!(key_rsa.algorithm(), ExternalAlgorithm::RsaPkcs1Sha256);
    for message in [&b""[..], b"x", &[0xa5; 5000]] {
        verify(&ECDSA_P256_SHA256_ASN1, &key256, message);
        verify(&ECDSA_P384_SHA384_ASN1, &key384, message);
        verify(&RSA_PKCS1_2048_8192_SHA256, &key_rsa, message);
    }
    assert!(!key256.describe().contains(PIN));
    for (key, label, oid, point_len) in [
        (&key256, "ca-p256", P256_OID, 65),
        (&key384, "ca-p384", P384_OID, 97),
    ] {
        let public = one(&raw, ObjectClass::PUBLIC_KEY, label);
        let Attribute::EcParams(params) = attribute(&raw, public, AttributeType::EcParams) else {
            panic!("EcParams")
        };
        assert_eq!(params, oid);
        let Attribute::EcPoint(point) = attribute(&raw, public, AttributeType::EcPoint) else {
            panic!("EcPoint")
        };
        // A DER OCTET STRING holding the uncompressed point; the SPKI ends with the point.
        let (_, point, _) = tlv(&point);
        assert_eq!(point.len(), point_len);
        assert!(key.public_key_spki().ends_with(point), "{label}");
        assert!(contains(key.public_key_spki(), oid), "{label}");
        assert_kept_in_token(&raw, one(&raw, ObjectClass::PRIVATE_KEY, label), label);
        let secret = one(&raw, ObjectClass::SECRET_KEY, label);
        assert_kept_in_token(&raw, secret, label);
        // CKA_VALUE of a sensitive key is never handed out.
        assert!(
            raw.get_attributes(secret, &[AttributeType::Value])
                .unwrap()
                .is_empty()
        );
    }
    let public = one(&raw, ObjectClass::PUBLIC_KEY, "federation-rsa");
    let Attribute::Modulus(modulus) = attribute(&raw, public, AttributeType::Modulus) else {
        panic!("Modulus")
    };
    assert_eq!(modulus.len(), 256, "RSA-2048");
    assert!(contains(key_rsa.public_key_spki(), &modulus));
    assert_kept_in_token(
        &raw,
        one(&raw, ObjectClass::PRIVATE_KEY, "federation-rsa"),
        "federation-rsa",
    );
    assert!(find(&raw, ObjectClass::SECRET_KEY, "federation-rsa").is_empty());
    assert_eq!(
        raw.get_attributes(
            one(&raw, ObjectClass::PUBLIC_KEY, "ca-p256"),
            &[AttributeType::Id]
        )
        .unwrap(),
        vec![Attribute::Id(vec![1])]
    );

    // Generating again is refused, whichever generator, and nothing is replaced.
    for refused in [
        token.generate_ca_key(
            &p256,
            &p256.with_type(ObjectType::SecretKey),
            ExternalAlgorithm::EcdsaP256Sha256,
        ),
        token.generate_ca_key(
            &rsa,
            &rsa.with_type(ObjectType::SecretKey),
            ExternalAlgorithm::EcdsaP256Sha256,
        ),
        token.generate_federation_key(&p384),
        token.generate_federation_key(&rsa),
    ] {
        assert!(
            matches!(refused, Err(Pkcs11Error::ObjectExists { .. })),
            "{refused:?}"
        );
    }
    for label in ["ca-p256", "ca-p384", "federation-rsa"] {
        assert_eq!(find(&raw, ObjectClass::PRIVATE_KEY, label).len(), 1);
        assert_eq!(find(&raw, ObjectClass::PUBLIC_KEY, label).len(), 1);
    }
    assert_eq!(
        token.signing_key(&p256).unwrap().public_key_spki(),
        key256.public_key_spki()
    );
    assert_eq!(
        token.signing_key(&rsa).unwrap().public_key_spki(),
        key_rsa.public_key_spki()
    );

    // The HMAC key under the CA's label: the same tag for the same message, 32 bytes.
    let mac = token
        .mac_key(&p256.with_type(ObjectType::SecretKey))
        .unwrap();
    let first = mac.hmac_sha256(b"credential mac key v1").unwrap();
    assert_eq!(*first, *mac.hmac_sha256(b"credential mac key v1").unwrap());
    assert_ne!(*first, *mac.hmac_sha256(b"credential mac key v2").unwrap());
    assert_ne!(*first, [0u8; 32]);
    let other = token.mac_key(&p384).unwrap();
    assert_ne!(
        *first,
        *other.hmac_sha256(b"credential mac key v1").unwrap()
    );
    assert!(
        mac.describe().contains("type=secret-key"),
        "{}",
        mac.describe()
    );

    // Through the seam: the CA certificate and both leaves are signed by the token.
    let now = SystemTime::now();
    let ca_key: Arc<dyn ExternalKey> = Arc::new(key256);
    let pem = SigningCa::self_signed_external_pem(
        Arc::clone(&ca_key),
        "pkcs11 ca",
        Duration::from_secs(86_400 * 30),
        now,
    )
    .unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    assert_signed_by(&der, ca_key.as_ref());
    assert!(contains(&der, ca_key.public_key_spki()));
    let ca =
        SigningCa::with_external_key(&pem, Arc::clone(&ca_key), Zeroizing::new([7u8; 32]), now)
            .unwrap();
    let ring = KeyRing::new(ca, KeyRingConfig::default(), now).unwrap();
    ring.rotate(now + Duration::from_secs(1)).unwrap();
    let previous = ring.previous().unwrap();
    let current = ring.current();
    assert_ne!(previous.certificate(), current.certificate());
    assert_signed_by(previous.certificate(), ca_key.as_ref());
    assert_signed_by(current.certificate(), ca_key.as_ref());

    // Another token key than the certificate's is refused: same curve, and another curve.
    let p256_b = uri("ca-p256-b");
    token
        .generate_ca_key(
            &p256_b,
            &p256_b.with_type(ObjectType::SecretKey),
            ExternalAlgorithm::EcdsaP256Sha256,
        )
        .unwrap();
    for other in [
        token.signing_key(&p256_b).unwrap(),
        token.signing_key(&p384).unwrap(),
    ] {
        let result =
            SigningCa::with_external_key(&pem, Arc::new(other), Zeroizing::new([7u8; 32]), now);
        assert!(
            matches!(result, Err(KeyError::KeyMismatch)),
            "{:?}",
            result.err()
        );
    }
}

#[test]
#[ignore = "run by pkcs11_against_softhsm2 with SOFTHSM2_CONF set"]
fn unsuitable_keys_and_bad_names_are_refused() {
    let module = Pkcs11Module::load(Path::new(MODULE)).unwrap();
    // First, before any login of this process: PKCS#11 login state is per application, and
    // a later C_Login answers CKR_USER_ALREADY_LOGGED_IN whatever the PIN.
    let wrong = Pkcs11Token::open(
        Arc::clone(&module),
        &uri("any"),
        SecretString::from("000000".to_owned()),
    )
    .unwrap_err();
    let chain = ErrorChain::new(&wrong).to_string();
    assert!(
        matches!(
            &wrong,
            Pkcs11Error::Call { operation, source: CkError::Pkcs11(RvError::PinIncorrect, _), .. }
                if operation.contains("C_Login")
        ),
        "{wrong:?}"
    );
    assert!(chain.contains("PIN is incorrect"), "{chain}");
    assert!(!chain.contains("000000"), "{chain}");

    let nowhere = Pkcs11Uri::parse("pkcs11:token=no-such-token;object=k").unwrap();
    let error = Pkcs11Token::open(Arc::clone(&module), &nowhere, pin()).unwrap_err();
    assert!(
        matches!(error, Pkcs11Error::TokenNotUnique { matched: 0, ref uri } if uri == "pkcs11:token=no-such-token"),
        "{error:?}"
    );

    let token = Pkcs11Token::open(Arc::clone(&module), &uri("any"), pin()).unwrap();
    let raw = raw_session();
    let ec_pair = |label: &str, sensitive: bool, extractable: bool| {
        let label = label.as_bytes().to_vec();
        raw.generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::Label(label.clone()),
                Attribute::Verify(true),
                Attribute::EcParams(P256_OID.to_vec()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Label(label),
                Attribute::Private(true),
                Attribute::Sensitive(sensitive),
                Attribute::Extractable(extractable),
                Attribute::Sign(true),
            ],
        )
        .unwrap();
    };
    ec_pair("extractable", true, true);
    ec_pair("not-sensitive", false, false);
    for label in ["extractable", "not-sensitive"] {
        let error = token.signing_key(&uri(label)).unwrap_err();
        assert!(
            matches!(&error, Pkcs11Error::UnsuitableKey { rule, .. } if rule.contains("CKA_EXTRACTABLE false")),
            "{label}: {error:?}"
        );
    }
    raw.generate_key(
        &Mechanism::GenericSecretKeyGen,
        &[
            Attribute::Token(true),
            Attribute::Label(b"readable-mac".to_vec()),
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::ValueLen(32.into()),
            Attribute::Private(true),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::Sign(true),
        ],
    )
    .unwrap();
    let error = token.mac_key(&uri("readable-mac")).unwrap_err();
    assert!(
        matches!(error, Pkcs11Error::UnsuitableKey { .. }),
        "{error:?}"
    );

    // Two objects under one label: neither is taken, and generating there is refused.
    ec_pair("twice", true, false);
    ec_pair("twice", true, false);
    let error = token.signing_key(&uri("twice")).unwrap_err();
    assert!(
        matches!(
            error,
            Pkcs11Error::ObjectNotUnique {
                matched: 2,
                class: "private key",
                ..
            }
        ),
        "{error:?}"
    );
    let error = token.signing_key(&uri("absent")).unwrap_err();
    assert!(
        matches!(error, Pkcs11Error::ObjectNotUnique { matched: 0, .. }),
        "{error:?}"
    );
    let error = token
        .generate_ca_key(
            &uri("twice"),
            &(uri("twice")).with_type(ObjectType::SecretKey),
            ExternalAlgorithm::EcdsaP256Sha256,
        )
        .unwrap_err();
    assert!(
        matches!(error, Pkcs11Error::ObjectExists { .. }),
        "{error:?}"
    );
    let error = token
        .signing_key(&uri("any").with_type(ObjectType::SecretKey))
        .unwrap_err();
    assert!(matches!(error, Pkcs11Error::InvalidUri { .. }), "{error:?}");

    // The module must be an absolute path to a file only its owner may write.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("libsofthsm2.so");
    std::fs::copy(MODULE, &copy).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    for (path, want) in [
        (copy.as_path(), "group or others"),
        (Path::new("libsofthsm2.so"), "absolute path"),
        (dir.path(), "regular file"),
        (&dir.path().join("absent.so"), "cannot be read"),
    ] {
        let error = Pkcs11Module::load(path).unwrap_err();
        assert!(
            matches!(&error, Pkcs11Error::UnsafeModule { rule, .. } if rule.contains(want)),
            "{}: {error:?}",
            path.display()
        );
    }
}

#[test]
#[ignore = "run by pkcs11_against_softhsm2 with SOFTHSM2_CONF set"]
fn a_session_the_token_lost_is_reopened() {
    let token = open();
    let name = uri("recovered");
    token
        .generate_ca_key(
            &name,
            &name.with_type(ObjectType::SecretKey),
            ExternalAlgorithm::EcdsaP256Sha256,
        )
        .unwrap();
    let key: Pkcs11Key = token.signing_key(&name).unwrap();
    let mac = token.mac_key(&name).unwrap();
    verify(&ECDSA_P256_SHA256_ASN1, &key, b"before");
    let tag = mac.hmac_sha256(b"m").unwrap();

    // C_Finalize from outside the broker's context: the token forgets every session and the
    // login, as when an HSM restarts. While it is down, signing fails as unavailable.
    Pkcs11::new(MODULE).unwrap().finalize().unwrap();
    let error = key.sign(b"down").unwrap_err();
    assert!(
        matches!(error, ExternalKeyError::Unavailable { .. }),
        "{error:?}"
    );
    // Back up: the broker's session handle is stale, and the key reopens and logs in again.
    initialize(&Pkcs11::new(MODULE).unwrap());
    verify(&ECDSA_P256_SHA256_ASN1, &key, b"after");
    assert_eq!(*mac.hmac_sha256(b"m").unwrap(), *tag);
}
