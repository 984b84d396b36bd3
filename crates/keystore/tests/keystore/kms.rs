//! AWS KMS against the fake AWS of `svid_broker_dev::fake::aws`: keys generated in the fake
//! and never exported, every request's SigV4 signature verified there by its own verifier,
//! the caller's permission on the key ARN, key usage, message limits and key state enforced;
//! signatures verified here with aws-lc-rs against the public key KMS gave.

#![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
    VerificationAlgorithm,
};
use base64::Engine as _;
use svid_broker_dev::fake::aws::{
    Condition, Endpoint, FakeAws, Fault, IamAccessKey, KmsKeyInfo, KmsKeySpec, RoleTrust, Statement,
};
use svid_broker_dev::fake::federation::DocumentHost;
use svid_broker_identity::secret::{ExposeSecret as _, SecretString};
use svid_broker_keystore::kms::{KmsConfig, KmsCredentialSource, KmsError, KmsKey, KmsMac};
use svid_broker_token::external::{ExternalAlgorithm, ExternalKey, ExternalKeyError, ExternalMac};
use svid_broker_token::federation::{FederatedClaims, FederationIssuer, FederationKey};
use svid_broker_token::{KeyRing, KeyRingConfig, SigningCa};
use zeroize::Zeroizing;

const USER: &str = "arn:aws:iam::111122223333:user/svid-broker";
const ROLE: &str = "arn:aws:iam::111122223333:role/svid-broker-kms";
const ALL_KMS: &[&str] = &[
    "kms:Sign",
    "kms:GetPublicKey",
    "kms:GenerateMac",
    "kms:DescribeKey",
];

/// A fake with one key of `spec` (alias `alias/broker`) and a user allowed `actions` on it.
fn fake_with(spec: KmsKeySpec, actions: &[&str]) -> (FakeAws, KmsKeyInfo, IamAccessKey) {
    let fake = FakeAws::start().unwrap();
    let key = fake.create_kms_key(spec).unwrap();
    fake.create_kms_alias("alias/broker", &key.key_id).unwrap();
    let access = fake
        .add_iam_user(USER, &[Statement::allow(actions, &[key.arn.as_str()])])
        .unwrap();
    (fake, key, access)
}

fn static_credentials(access: &IamAccessKey) -> KmsCredentialSource {
    KmsCredentialSource::static_keys(
        access.access_key_id.clone(),
        access.secret_access_key.clone(),
        None,
    )
    .unwrap()
}

fn config_for(fake: &FakeAws, key_id: &str, credentials: KmsCredentialSource) -> KmsConfig {
    KmsConfig::new(key_id, fake.region(), credentials)
        .unwrap()
        .with_endpoint(&fake.kms_url())
        .unwrap()
        .with_sts_endpoint(&fake.sts_url())
        .unwrap()
        .with_timeout(Duration::from_secs(5))
        .unwrap()
}

fn open(fake: &FakeAws, access: &IamAccessKey) -> KmsKey {
    KmsKey::open(&config_for(
        fake,
        "alias/broker",
        static_credentials(access),
    ))
    .unwrap()
}

fn verify(alg: &'static dyn VerificationAlgorithm, key: &KmsKey, message: &[u8], sig: &[u8]) {
    UnparsedPublicKey::new(alg, key.public_key_spki())
        .verify(message, sig)
        .unwrap();
}

fn refused_reason(error: ExternalKeyError) -> String {
    match error {
        ExternalKeyError::Refused { reason, .. } => reason,
        other => panic!("not a refusal: {other}"),
    }
}

#[test]
fn p256_signs_raw_and_long_messages_as_digests() {
    let (fake, info, access) =
        fake_with(KmsKeySpec::EccNistP256, &["kms:Sign", "kms:GetPublicKey"]);
    let key = open(&fake, &access);
    assert_eq!(key.algorithm(), ExternalAlgorithm::EcdsaP256Sha256);
    assert_eq!(key.describe(), info.arn);
    assert!(!format!("{key:?}").contains(access.secret_access_key.expose_secret()));
    let short = b"tbsCertificate bytes".to_vec();
    let long = vec![7u8; 5000];
    for message in [&short, &long] {
        let signature = key.sign(message).unwrap();
        // The DER form the trait promises, verifiable as X.509 carries it.
        assert_eq!(signature[0], 0x30);
        verify(&ECDSA_P256_SHA256_ASN1, &key, message, &signature);
        assert!(
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key_spki())
                .verify(b"another message", &signature)
                .is_err()
        );
    }
    let signs: Vec<_> = fake
        .kms_audit()
        .into_iter()
        .filter(|c| c.operation == "Sign")
        .collect();
    assert_eq!(signs.len(), 2);
    assert_eq!(signs[0].message_type.as_deref(), Some("RAW"));
    assert_eq!(signs[1].message_type.as_deref(), Some("DIGEST"));
    assert!(signs.iter().all(|c| c.outcome == "ok"
        && c.principal.as_deref() == Some(USER)
        && c.key_arn.as_deref() == Some(info.arn.as_str())));
}

#[test]
fn p384_and_rsa_keys_sign_verifiably() {
    let (fake, _, access) = fake_with(KmsKeySpec::EccNistP384, &["kms:Sign", "kms:GetPublicKey"]);
    let key = open(&fake, &access);
    assert_eq!(key.algorithm(), ExternalAlgorithm::EcdsaP384Sha384);
    for message in [vec![1u8; 4096], vec![2u8; 4097]] {
        verify(
            &ECDSA_P384_SHA384_ASN1,
            &key,
            &message,
            &key.sign(&message).unwrap(),
        );
    }
    let (fake, _, access) = fake_with(KmsKeySpec::Rsa2048, &["kms:Sign", "kms:GetPublicKey"]);
    let key = open(&fake, &access);
    assert_eq!(key.algorithm(), ExternalAlgorithm::RsaPkcs1Sha256);
    assert_eq!(key.signing_algorithm(), "RSASSA_PKCS1_V1_5_SHA_256");
    for message in [b"header.payload".to_vec(), vec![3u8; 10_000]] {
        let signature = key.sign(&message).unwrap();
        assert_eq!(signature.len(), 256);
        verify(&RSA_PKCS1_2048_8192_SHA256, &key, &message, &signature);
    }
}

#[test]
fn a_wrong_secret_or_unknown_key_id_is_refused() {
    let (fake, _, access) = fake_with(KmsKeySpec::EccNistP256, ALL_KMS);
    let wrong = KmsCredentialSource::static_keys(
        access.access_key_id.clone(),
        SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned()),
        None,
    )
    .unwrap();
    let Err(KmsError::Store(error)) = KmsKey::open(&config_for(&fake, "alias/broker", wrong))
    else {
        panic!("opened with a wrong secret");
    };
    assert!(refused_reason(error).contains("InvalidSignatureException"));
    let unknown =
        KmsCredentialSource::static_keys("AKIAUNKNOWN000000000", access.secret_access_key, None)
            .unwrap();
    let Err(KmsError::Store(error)) = KmsKey::open(&config_for(&fake, "alias/broker", unknown))
    else {
        panic!("opened with an unknown access key");
    };
    assert!(refused_reason(error).contains("UnrecognizedClientException"));
    let audit = fake.kms_audit();
    assert_eq!(audit.len(), 2);
    assert!(audit.iter().all(|c| c.principal.is_none()));
}

#[test]
fn permission_key_state_and_names_are_enforced() {
    let (fake, info, access) = fake_with(KmsKeySpec::EccNistP256, &["kms:GetPublicKey"]);
    let key = open(&fake, &access);
    let reason = refused_reason(key.sign(b"m").unwrap_err());
    assert!(
        reason.contains("AccessDeniedException") && reason.contains("kms:Sign"),
        "{reason}"
    );
    let Err(KmsError::Store(error)) = KmsKey::open(&config_for(
        &fake,
        "alias/missing",
        static_credentials(&access),
    )) else {
        panic!("opened a missing alias");
    };
    assert!(refused_reason(error).contains("NotFoundException"));

    let (fake, info2, access) = fake_with(KmsKeySpec::EccNistP256, ALL_KMS);
    assert_ne!(info.arn, info2.arn);
    // By key id and by ARN too.
    for name in [info2.key_id.as_str(), info2.arn.as_str()] {
        KmsKey::open(&config_for(&fake, name, static_credentials(&access))).unwrap();
    }
    let key = open(&fake, &access);
    key.sign(b"before").unwrap();
    fake.set_kms_key_enabled(&info2.key_id, false).unwrap();
    let reason = refused_reason(key.sign(b"after").unwrap_err());
    assert!(reason.contains("DisabledException"), "{reason}");
    fake.set_kms_key_enabled(&info2.key_id, true).unwrap();
    key.sign(b"again").unwrap();
}

#[test]
fn a_key_of_the_wrong_usage_is_refused() {
    let (fake, _, access) = fake_with(KmsKeySpec::EccNistP256, ALL_KMS);
    let error = KmsMac::open(&config_for(
        &fake,
        "alias/broker",
        static_credentials(&access),
    ))
    .unwrap_err();
    assert!(
        matches!(&error, KmsError::Unsuitable { rule, .. } if rule.contains("SIGN_VERIFY")),
        "{error}"
    );
    let (fake, _, access) = fake_with(KmsKeySpec::Hmac256, ALL_KMS);
    let Err(KmsError::Store(error)) = KmsKey::open(&config_for(
        &fake,
        "alias/broker",
        static_credentials(&access),
    )) else {
        panic!("opened an HMAC key for signing");
    };
    assert!(refused_reason(error).contains("UnsupportedOperationException"));
}

#[test]
fn generate_mac_is_the_keys_hmac_and_deterministic() {
    let (fake, info, access) =
        fake_with(KmsKeySpec::Hmac256, &["kms:DescribeKey", "kms:GenerateMac"]);
    let mac = KmsMac::open(&config_for(
        &fake,
        "alias/broker",
        static_credentials(&access),
    ))
    .unwrap();
    assert_eq!(mac.describe(), info.arn);
    let first = mac.hmac_sha256(b"registry corp/credential 1").unwrap();
    let second = mac.hmac_sha256(b"registry corp/credential 1").unwrap();
    let other = mac.hmac_sha256(b"registry corp/credential 2").unwrap();
    assert_eq!(*first, *second);
    assert_ne!(*first, *other);
    assert_eq!(
        fake.kms_hmac_sha256(&info.key_id, b"registry corp/credential 1")
            .unwrap(),
        first.to_vec()
    );
    let reason = refused_reason(mac.hmac_sha256(&[0u8; 4097]).unwrap_err());
    assert!(reason.contains("1 to 4096"), "{reason}");
}

/// The broker's own federation issuer, published by a document host, for STS to trust.
fn published_issuer() -> (DocumentHost, FederationIssuer) {
    let host = DocumentHost::start().unwrap();
    let issuer = FederationIssuer::new(
        format!("{}/federation", host.url()),
        vec![FederationKey::generate().unwrap()],
        Duration::from_secs(600),
    )
    .unwrap();
    let path = |url: &str| url.strip_prefix(host.url().as_str()).unwrap().to_owned();
    host.set(
        &path(&issuer.discovery_url()),
        "application/json",
        issuer.discovery_json(),
    );
    host.set(
        &path(&issuer.jwks_uri()),
        "application/json",
        issuer.jwks_json(),
    );
    (host, issuer)
}

#[test]
fn web_identity_credentials_come_from_sts_and_are_cached() {
    let fake = FakeAws::start().unwrap();
    let key = fake.create_kms_key(KmsKeySpec::EccNistP256).unwrap();
    let (_host, issuer) = published_issuer();
    fake.add_oidc_provider(issuer.issuer(), &["sts.amazonaws.com"]);
    fake.add_role(
        ROLE,
        RoleTrust::new(
            issuer.issuer(),
            Condition::StringEquals("system:serviceaccount:spire:svid-broker".to_owned()),
            Condition::StringEquals("sts.amazonaws.com".to_owned()),
        ),
        &[Statement::allow(
            &["kms:Sign", "kms:GetPublicKey"],
            &[key.arn.as_str()],
        )],
    )
    .unwrap();
    let token = issuer
        .mint(
            &FederatedClaims::new(
                "system:serviceaccount:spire:svid-broker",
                "sts.amazonaws.com",
            ),
            SystemTime::now(),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token.token.expose_secret()).unwrap();
    let source = KmsCredentialSource::web_identity(&token_file, ROLE, "svid-broker").unwrap();
    let kms_key = KmsKey::open(&config_for(&fake, &key.arn, source)).unwrap();
    for message in [b"one".as_slice(), b"two"] {
        verify(
            &ECDSA_P256_SHA256_ASN1,
            &kms_key,
            message,
            &kms_key.sign(message).unwrap(),
        );
    }
    // One session for GetPublicKey and both signatures.
    assert_eq!(fake.sessions_issued(), 1);
    let assumed = "arn:aws:sts::111122223333:assumed-role/svid-broker-kms/svid-broker";
    assert!(
        fake.kms_audit()
            .iter()
            .all(|c| c.principal.as_deref() == Some(assumed) && c.outcome == "ok")
    );
    assert_eq!(fake.audit()[0].outcome, "issued");

    // A token STS does not trust (wrong subject for the role): refused, naming STS's code.
    std::fs::write(
        &token_file,
        issuer
            .mint(
                &FederatedClaims::new("system:serviceaccount:other:app", "sts.amazonaws.com"),
                SystemTime::now(),
            )
            .unwrap()
            .token
            .expose_secret(),
    )
    .unwrap();
    let source = KmsCredentialSource::web_identity(&token_file, ROLE, "svid-broker").unwrap();
    let Err(KmsError::Store(error)) = KmsKey::open(&config_for(&fake, &key.arn, source)) else {
        panic!("opened with an untrusted token");
    };
    assert!(refused_reason(error).contains("AccessDenied"));
}

#[test]
fn an_unreachable_slow_or_failing_kms_is_unavailable() {
    let (fake, _, access) = fake_with(KmsKeySpec::EccNistP256, ALL_KMS);
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let config = KmsConfig::new("alias/broker", "us-east-1", static_credentials(&access))
        .unwrap()
        .with_endpoint(&format!("http://{closed}"))
        .unwrap();
    let Err(KmsError::Store(ExternalKeyError::Unavailable { reason, .. })) = KmsKey::open(&config)
    else {
        panic!("opened an unreachable KMS");
    };
    assert!(reason.contains("cannot connect"), "{reason}");

    let config = config_for(&fake, "alias/broker", static_credentials(&access))
        .with_timeout(Duration::from_millis(300))
        .unwrap();
    let key = KmsKey::open(&config).unwrap();
    fake.fail_next(Endpoint::Kms, Fault::Slow(Duration::from_secs(3)), 1);
    let Err(ExternalKeyError::Unavailable { reason, .. }) = key.sign(b"m") else {
        panic!("a slow KMS was not unavailable");
    };
    assert!(reason.contains("timed out"), "{reason}");
    for status in [500, 503, 429] {
        fake.fail_next(Endpoint::Kms, Fault::Status(status), 1);
        assert!(matches!(
            key.sign(b"m"),
            Err(ExternalKeyError::Unavailable { .. })
        ));
    }
    fake.fail_next(Endpoint::Kms, Fault::Malformed, 1);
    assert!(matches!(
        key.sign(b"m"),
        Err(ExternalKeyError::Malformed { .. })
    ));
    fake.fail_next(Endpoint::Kms, Fault::Hangup, 1);
    assert!(matches!(
        key.sign(b"m"),
        Err(ExternalKeyError::Unavailable { .. })
    ));
    key.sign(b"m").unwrap();
}

#[test]
fn plain_http_is_refused_off_loopback() {
    let credentials = KmsCredentialSource::static_keys(
        "AKIAEXAMPLE000000000",
        SecretString::from("secret".to_owned()),
        None,
    )
    .unwrap();
    let config = KmsConfig::new("alias/broker", "us-east-1", credentials).unwrap();
    for url in ["http://kms.us-east-1.amazonaws.com", "http://10.1.2.3:8080"] {
        let error = config.clone().with_endpoint(url).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("endpoint: an http:// endpoint must be a loopback IP"),
            "{error}"
        );
        let error = config.clone().with_sts_endpoint(url).unwrap_err();
        assert!(error.to_string().contains("sts_endpoint"), "{error}");
    }
}

#[test]
fn kms_keys_sign_the_ca_leaves_and_federation_jwts() {
    let now = SystemTime::now();
    let (fake, _, access) = fake_with(KmsKeySpec::EccNistP256, &["kms:Sign", "kms:GetPublicKey"]);
    let ca_key: Arc<dyn ExternalKey> = Arc::new(open(&fake, &access));
    let pem = SigningCa::self_signed_external_pem(
        Arc::clone(&ca_key),
        "kms ca",
        Duration::from_secs(365 * 86_400),
        now,
    )
    .unwrap();
    let ca = SigningCa::with_external_key(&pem, ca_key, Zeroizing::new([9u8; 32]), now).unwrap();
    let signs_before = fake
        .kms_audit()
        .iter()
        .filter(|c| c.operation == "Sign")
        .count();
    let ring = KeyRing::new(ca, KeyRingConfig::default(), now).unwrap();
    ring.rotate(now + Duration::from_secs(60)).unwrap();
    assert!(ring.previous().is_some());
    let signs = fake
        .kms_audit()
        .iter()
        .filter(|c| c.operation == "Sign" && c.outcome == "ok")
        .count();
    // Before the ring: the self-signed CA (and any probe signatures opening the key takes);
    // the ring then signs exactly the first leaf and the rotated one.
    assert!(signs_before >= 1, "{signs_before}");
    assert_eq!(signs - signs_before, 2);

    let (fake, _, access) = fake_with(KmsKeySpec::Rsa2048, &["kms:Sign", "kms:GetPublicKey"]);
    let rsa = Arc::new(open(&fake, &access));
    let spki = rsa.public_key_spki().to_vec();
    let issuer = FederationIssuer::new(
        "https://broker.example.org/federation",
        vec![FederationKey::external(rsa).unwrap()],
        Duration::from_secs(600),
    )
    .unwrap();
    let minted = issuer
        .mint(
            &FederatedClaims::new(
                "spiffe://example.org/ns/team-a/sa/app",
                "api://AzureADTokenExchange",
            ),
            now,
        )
        .unwrap();
    let token = minted.token.expose_secret();
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .unwrap();
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &spki)
        .verify(signed.as_bytes(), &signature)
        .unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signed.split('.').next().unwrap())
        .unwrap();
    assert!(String::from_utf8(header).unwrap().contains("\"RS256\""));
}

/// A one-connection TLS 1.3 server on 127.0.0.1 with a leaf for `localhost` from a fresh CA:
/// answers one `GetPublicKey` for a P-256 key it made. Gives the port, the CA's PEM, the SPKI
/// and the server thread, which returns the decrypted request head (empty when the client
/// never finished the handshake).
fn tls_kms(arn: &'static str) -> (u16, String, Vec<u8>, std::thread::JoinHandle<String>) {
    use std::io::{Read as _, Write as _};
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone(), ca.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .unwrap();
    let kms_key = rcgen::KeyPair::generate().unwrap();
    let spki = rcgen::PublicKeyData::subject_public_key_info(&kms_key);
    let body = serde_json::json!({
        "KeyId": arn,
        "KeyUsage": "SIGN_VERIFY",
        "KeySpec": "ECC_NIST_P256",
        "SigningAlgorithms": ["ECDSA_SHA_256"],
        "PublicKey": base64::engine::general_purpose::STANDARD.encode(&spki),
    })
    .to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        // Only so a broken test cannot hang the thread forever.
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        while conn.is_handshaking() {
            if conn.complete_io(&mut tcp).is_err() {
                return String::new();
            }
        }
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        stream.read_exact(&mut vec![0u8; length]).unwrap();
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(answer.as_bytes()).unwrap();
        stream.conn.send_close_notify();
        stream.flush().unwrap();
        head
    });
    (port, ca.pem(), spki, server)
}

fn tls_config_for(port: u16) -> KmsConfig {
    let credentials = KmsCredentialSource::static_keys(
        "AKIAIOSFODNN7EXAMPLE",
        SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned()),
        None,
    )
    .unwrap();
    KmsConfig::new("alias/broker", "us-east-1", credentials)
        .unwrap()
        .with_endpoint(&format!("https://localhost:{port}"))
        .unwrap()
}

#[test]
fn kms_over_tls_trusts_the_configured_ca_and_only_it() {
    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/tls-test";
    let (port, ca_pem, spki, server) = tls_kms(ARN);
    let config = tls_config_for(port).with_ca_pem(ca_pem.as_bytes()).unwrap();
    let key = KmsKey::open(&config).unwrap();
    assert_eq!(key.public_key_spki(), spki.as_slice());
    assert_eq!(key.describe(), ARN);
    let head = server.join().unwrap();
    assert!(
        head.starts_with("POST / HTTP/1.1\r\n")
            && head.contains(&format!("\r\nhost: localhost:{port}\r\n"))
            && head.contains("\r\nx-amz-target: TrentService.GetPublicKey\r\n"),
        "{head}"
    );

    // webpki-roots alone do not know the test CA: refused at the handshake, nothing sent.
    let (port, _, _, server) = tls_kms(ARN);
    let error = KmsKey::open(&tls_config_for(port)).unwrap_err();
    let KmsError::Store(ExternalKeyError::Unavailable { reason, .. }) = &error else {
        panic!("an untrusted KMS was not unavailable: {error}");
    };
    assert!(
        reason.contains("certificate") && reason.contains("UnknownIssuer"),
        "{reason}"
    );
    assert_eq!(
        server.join().unwrap(),
        "",
        "a request reached the untrusted server"
    );
}
