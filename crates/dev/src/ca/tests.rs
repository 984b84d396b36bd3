use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use svid_broker_identity::clock::FixedClock;
use svid_broker_identity::id::{SpiffeId, TrustDomain};
use svid_broker_identity::secret::ExposeSecret as _;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::*;

/// 2026-01-01T00:00:00Z, a fixed issuing time.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn td() -> TrustDomain {
    TrustDomain::parse("example.org").unwrap()
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn dev(ids: &[&str]) -> DevTrustDomain {
    DevTrustDomain::builder(td())
        .identities(ids.iter().map(|s| id(s)))
        .clock(Arc::new(FixedClock(t0())))
        .build()
        .unwrap()
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty());
    cert
}

fn uri_sans(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject_alternative_name()
        .unwrap()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some((*u).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn signed_by(child: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    let key = UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_ASN1,
        issuer.public_key().subject_public_key.data.to_vec(),
    );
    key.verify(child.tbs_certificate.as_ref(), &child.signature_value.data)
        .is_ok()
}

fn secs(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

#[test]
fn root_is_a_spiffe_signing_certificate() {
    let dev = dev(&["spiffe://example.org/a"]);
    let roots = dev.ca_certificates();
    assert_eq!(roots.len(), 1);
    let root = parse(&roots[0]);

    let bc = root.basic_constraints().unwrap().unwrap();
    assert!(bc.value.ca);
    let ku = root.key_usage().unwrap().unwrap();
    assert!(ku.value.key_cert_sign() && ku.value.crl_sign());
    assert!(!ku.value.digital_signature());
    assert_eq!(uri_sans(&root), vec!["spiffe://example.org".to_owned()]);
    assert!(signed_by(&root, &root), "self-signed");
    assert_eq!(
        root.validity().not_before.timestamp(),
        secs(t0() - CA_BACKDATE)
    );
    assert_eq!(
        root.validity().not_after.timestamp(),
        secs(t0() + DEFAULT_CA_TTL)
    );
    assert_eq!(dev.ca_not_after(), t0() + DEFAULT_CA_TTL);
}

#[test]
fn leaf_follows_the_x509_svid_profile() {
    let dev = dev(&["spiffe://example.org/a"]);
    let svid = dev.x509_svid(&id("spiffe://example.org/a")).unwrap();
    assert_eq!(svid.chain().len(), 1);
    let leaf = parse(svid.leaf());
    let roots = dev.ca_certificates();
    let root = parse(&roots[0]);

    assert_eq!(uri_sans(&leaf), vec!["spiffe://example.org/a".to_owned()]);
    let bc = leaf.basic_constraints().unwrap().unwrap();
    assert!(!bc.value.ca, "leaf must not be a CA");
    let ku = leaf.key_usage().unwrap().unwrap();
    assert!(ku.critical, "keyUsage must be critical");
    assert!(ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap();
    assert!(eku.value.server_auth && eku.value.client_auth);
    assert!(signed_by(&leaf, &root));
    assert_eq!(leaf.issuer(), root.subject());
    assert_eq!(
        leaf.validity().not_before.timestamp(),
        secs(t0() - X509_SVID_BACKDATE)
    );
    assert_eq!(
        leaf.validity().not_after.timestamp(),
        secs(t0() + DEFAULT_X509_SVID_TTL)
    );
    assert_eq!(svid.not_after(), t0() + DEFAULT_X509_SVID_TTL);

    // The key is the leaf's key: PKCS#8 that aws-lc-rs accepts and whose public half is the
    // certificate's.
    let pair = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        svid.private_key().pkcs8_der(),
    )
    .unwrap();
    assert_eq!(
        pair.public_key().as_ref(),
        leaf.public_key().subject_public_key.data.as_ref()
    );
    assert_eq!(svid.chain_der(), svid.leaf().as_ref());
}

#[test]
fn spiffe_crate_accepts_our_svid_and_bundle() {
    let dev = dev(&["spiffe://example.org/a"]);
    let svid = &dev.x509_svids()[0];
    let parsed =
        spiffe::X509Svid::parse_from_der(&svid.chain_der(), svid.private_key().pkcs8_der())
            .unwrap();
    assert_eq!(parsed.spiffe_id().to_string(), "spiffe://example.org/a");
    let bundle = spiffe::X509Bundle::parse_from_der(
        spiffe::TrustDomain::new("example.org").unwrap(),
        &dev.x509_bundle_der(),
    )
    .unwrap();
    assert_eq!(bundle.authorities().len(), 1);
    let jwt = spiffe::JwtBundle::from_jwt_authorities(
        spiffe::TrustDomain::new("example.org").unwrap(),
        &dev.jwt_bundle_jwks_json(),
    )
    .unwrap();
    assert!(jwt.find_jwt_authority(&dev.jwt_key_ids()[0]).is_some());
}

#[test]
fn identities_keep_their_order_and_default_comes_first() {
    let dev = dev(&["spiffe://example.org/b", "spiffe://example.org/a"]);
    let ids: Vec<String> = dev
        .x509_svids()
        .iter()
        .map(|s| s.spiffe_id().to_string())
        .collect();
    assert_eq!(ids, ["spiffe://example.org/b", "spiffe://example.org/a"]);
    assert_eq!(dev.identities().len(), 2);
    assert!(dev.x509_svid(&id("spiffe://example.org/c")).is_none());
}

#[test]
fn builder_rejects_bad_identities() {
    let cases: Vec<(Vec<&str>, DevCaError)> = vec![
        (
            vec!["spiffe://other.org/a"],
            DevCaError::ForeignTrustDomain {
                id: id("spiffe://other.org/a"),
                trust_domain: td(),
            },
        ),
        (
            vec!["spiffe://example.org"],
            DevCaError::MissingPath {
                id: id("spiffe://example.org"),
            },
        ),
        (
            vec!["spiffe://example.org/a", "spiffe://example.org/a"],
            DevCaError::DuplicateIdentity {
                id: id("spiffe://example.org/a"),
            },
        ),
    ];
    for (ids, want) in cases {
        let got = DevTrustDomain::new(td(), ids.iter().map(|s| id(s))).unwrap_err();
        assert_eq!(got, want, "{ids:?}");
    }

    let many = (0..=MAX_IDENTITIES).map(|i| id(&format!("spiffe://example.org/w{i}")));
    assert_eq!(
        DevTrustDomain::new(td(), many).unwrap_err(),
        DevCaError::TooManyIdentities {
            count: MAX_IDENTITIES + 1,
            max: MAX_IDENTITIES
        }
    );
    let at_cap = (0..MAX_IDENTITIES).map(|i| id(&format!("spiffe://example.org/w{i}")));
    assert_eq!(
        DevTrustDomain::new(td(), at_cap)
            .unwrap()
            .x509_svids()
            .len(),
        MAX_IDENTITIES
    );
}

#[test]
fn builder_rejects_zero_ttls() {
    let b = || DevTrustDomain::builder(td());
    assert_eq!(
        b().ca_ttl(Duration::ZERO).build().unwrap_err(),
        DevCaError::ZeroTtl { kind: TtlKind::Ca }
    );
    assert_eq!(
        b().x509_svid_ttl(Duration::ZERO).build().unwrap_err(),
        DevCaError::ZeroTtl {
            kind: TtlKind::X509Svid
        }
    );
    assert_eq!(
        b().jwt_svid_ttl(Duration::ZERO).build().unwrap_err(),
        DevCaError::ZeroTtl {
            kind: TtlKind::JwtSvid
        }
    );
    assert!(
        b().build().is_ok(),
        "no identities is a valid (empty) trust domain"
    );
}

#[test]
fn issue_on_demand_checks_the_id() {
    let dev = dev(&[]);
    let ok = dev.issue_x509_svid(&id("spiffe://example.org/x")).unwrap();
    assert_eq!(ok.spiffe_id().as_str(), "spiffe://example.org/x");
    assert!(matches!(
        dev.issue_x509_svid(&id("spiffe://evil.org/x")),
        Err(DevCaError::ForeignTrustDomain { .. })
    ));
    assert!(matches!(
        dev.issue_jwt_svid(&id("spiffe://example.org"), &["aud"]),
        Err(DevCaError::MissingPath { .. })
    ));
}

#[test]
fn past_now_mints_expired_svids() {
    let dev = dev(&[]);
    let now = t0() - Duration::from_secs(7200);
    let svid = dev
        .issue_x509_svid_at(
            &id("spiffe://example.org/x"),
            now,
            Duration::from_secs(3600),
        )
        .unwrap();
    assert!(svid.not_after() < t0());
    let leaf = parse(svid.leaf());
    assert_eq!(leaf.validity().not_after.timestamp(), secs(t0()) - 3600);

    assert_eq!(
        dev.issue_x509_svid_at(&id("spiffe://example.org/x"), now, Duration::ZERO)
            .unwrap_err(),
        DevCaError::ZeroTtl {
            kind: TtlKind::X509Svid
        }
    );
    assert_eq!(
        dev.issue_x509_svid_at(
            &id("spiffe://example.org/x"),
            UNIX_EPOCH,
            Duration::from_secs(1)
        )
        .unwrap_err(),
        DevCaError::TimeOutOfRange {
            kind: TtlKind::X509Svid
        },
        "back-dating before 1970"
    );
}

#[test]
fn leaf_never_outlives_the_root() {
    let dev = DevTrustDomain::builder(td())
        .ca_ttl(Duration::from_secs(600))
        .x509_svid_ttl(Duration::from_secs(3600))
        .identity(id("spiffe://example.org/a"))
        .clock(Arc::new(FixedClock(t0())))
        .build()
        .unwrap();
    let svid = &dev.x509_svids()[0];
    assert_eq!(svid.not_after(), dev.ca_not_after());
    assert_eq!(
        parse(svid.leaf()).validity().not_after.timestamp(),
        secs(t0()) + 600
    );
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn jwt_parts(token: &str) -> (Value, Value, Vec<u8>, String) {
    let mut it = token.split('.');
    let (h, c, s) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    assert!(it.next().is_none());
    (
        decode_part(h),
        decode_part(c),
        URL_SAFE_NO_PAD.decode(s).unwrap(),
        format!("{h}.{c}"),
    )
}

fn jwk_point(jwk: &Value) -> Vec<u8> {
    let mut point = vec![0x04];
    point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
    point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
    point
}

#[test]
fn jwt_svid_is_es256_with_spiffe_claims() {
    let dev = dev(&["spiffe://example.org/a"]);
    let jwt = dev
        .issue_jwt_svid(&id("spiffe://example.org/a"), &["registry", "other"])
        .unwrap();
    let (header, claims, sig, signing_input) = jwt_parts(jwt.token().expose_secret());
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], jwt.key_id());
    assert_eq!(header.as_object().unwrap().len(), 3);
    assert_eq!(claims["sub"], "spiffe://example.org/a");
    assert_eq!(claims["aud"], serde_json::json!(["registry", "other"]));
    assert_eq!(claims["iat"], secs(t0()));
    assert_eq!(claims["exp"], secs(t0() + DEFAULT_JWT_SVID_TTL));
    assert_eq!(
        jwt.expiry(),
        u64::try_from(secs(t0() + DEFAULT_JWT_SVID_TTL)).unwrap()
    );
    assert_eq!(sig.len(), 64, "fixed-width r||s");

    let jwks: Value = serde_json::from_slice(&dev.jwt_bundle_jwks_json()).unwrap();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == jwt.key_id())
        .unwrap();
    let verifier = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, jwk_point(key));
    assert!(verifier.verify(signing_input.as_bytes(), &sig).is_ok());
    let mut tampered = signing_input.into_bytes();
    tampered[0] ^= 1;
    assert!(verifier.verify(&tampered, &sig).is_err());
}

#[test]
fn jwt_audience_rules() {
    let dev = dev(&[]);
    let who = id("spiffe://example.org/a");
    let none: [&str; 0] = [];
    assert_eq!(
        dev.issue_jwt_svid(&who, &none).unwrap_err(),
        DevCaError::NoAudience
    );
    assert_eq!(
        dev.issue_jwt_svid(&who, &["a", ""]).unwrap_err(),
        DevCaError::EmptyAudience { index: 1 }
    );
    let many: Vec<String> = (0..=MAX_JWT_AUDIENCES).map(|i| format!("a{i}")).collect();
    assert_eq!(
        dev.issue_jwt_svid(&who, &many).unwrap_err(),
        DevCaError::TooManyAudiences {
            count: MAX_JWT_AUDIENCES + 1,
            max: MAX_JWT_AUDIENCES
        }
    );
    assert!(dev.issue_jwt_svid(&who, &many[..MAX_JWT_AUDIENCES]).is_ok());
    let long = "x".repeat(MAX_JWT_AUDIENCE_LEN + 1);
    assert_eq!(
        dev.issue_jwt_svid(&who, &[long.as_str()]).unwrap_err(),
        DevCaError::AudienceTooLong {
            index: 0,
            len: MAX_JWT_AUDIENCE_LEN + 1,
            max: MAX_JWT_AUDIENCE_LEN
        }
    );
    assert!(dev.issue_jwt_svid(&who, &[&long[1..]]).is_ok());
}

#[test]
fn past_now_mints_expired_jwt() {
    let dev = dev(&[]);
    let jwt = dev
        .issue_jwt_svid_at(
            &id("spiffe://example.org/a"),
            &["aud"],
            t0() - Duration::from_secs(600),
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(jwt.expiry(), u64::try_from(secs(t0()) - 540).unwrap());
    assert_eq!(
        dev.issue_jwt_svid_at(
            &id("spiffe://example.org/a"),
            &["aud"],
            t0(),
            Duration::ZERO
        )
        .unwrap_err(),
        DevCaError::ZeroTtl {
            kind: TtlKind::JwtSvid
        }
    );
}

#[test]
fn rotate_reissues_svids_and_notifies() {
    let dev = dev(&["spiffe://example.org/a", "spiffe://example.org/b"]);
    let mut rx = dev.subscribe();
    assert_eq!(*rx.borrow_and_update(), 1);
    let before = dev.x509_svids();
    assert_eq!(dev.rotate().unwrap(), 2);
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), 2);
    let after = dev.x509_svids();
    assert_eq!(after.len(), 2);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.spiffe_id(), a.spiffe_id());
        assert_ne!(b.leaf(), a.leaf(), "fresh certificate");
        assert_ne!(
            b.private_key().pkcs8_der(),
            a.private_key().pkcs8_der(),
            "fresh key"
        );
    }
    assert_eq!(dev.ca_certificates(), dev.ca_certificates(), "same root");
    assert_eq!(dev.generation(), 2);
}

#[test]
fn rotate_keeps_old_jwt_key_only_while_its_tokens_live() {
    let now = Arc::new(Mutex::new(t0()));
    #[derive(Debug)]
    struct SharedClock(Arc<Mutex<SystemTime>>);
    impl Clock for SharedClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }
    let dev = DevTrustDomain::builder(td())
        .clock(Arc::new(SharedClock(now.clone())))
        .build()
        .unwrap();
    let first_kid = dev.jwt_key_ids()[0].clone();

    // No token was signed: the old key can go at once.
    dev.rotate().unwrap();
    assert_eq!(dev.jwt_key_ids().len(), 1);
    assert_ne!(dev.jwt_key_ids()[0], first_kid);

    // A live token keeps its key in the bundle after rotation...
    let jwt = dev
        .issue_jwt_svid(&id("spiffe://example.org/a"), &["aud"])
        .unwrap();
    dev.rotate().unwrap();
    let kids = dev.jwt_key_ids();
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[1], jwt.key_id());
    assert_ne!(kids[0], jwt.key_id(), "new tokens use the new key");

    // ...until it has expired.
    *now.lock().unwrap() = t0() + DEFAULT_JWT_SVID_TTL;
    dev.rotate().unwrap();
    assert_eq!(dev.jwt_key_ids().len(), 1);
    assert!(!dev.jwt_key_ids().contains(&jwt.key_id().to_owned()));
}

#[test]
fn bundle_pem_and_der_carry_the_root() {
    let dev = dev(&[]);
    let root = dev.ca_certificates()[0].clone();
    assert_eq!(dev.x509_bundle_der(), root.as_ref());
    let pem = dev.bundle_pem();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert_eq!(STANDARD.decode(body).unwrap(), root.as_ref());
}

#[test]
fn bundle_document_lists_both_authority_kinds() {
    let dev = DevTrustDomain::builder(td())
        .refresh_hint(Duration::from_secs(42))
        .build()
        .unwrap();
    dev.rotate().unwrap();
    let doc: Value = serde_json::from_str(&dev.bundle_document_json()).unwrap();
    assert_eq!(doc["spiffe_sequence"], 2);
    assert_eq!(doc["spiffe_refresh_hint"], 42);
    let keys = doc["keys"].as_array().unwrap();
    let x509: Vec<&Value> = keys.iter().filter(|k| k["use"] == "x509-svid").collect();
    let jwt: Vec<&Value> = keys.iter().filter(|k| k["use"] == "jwt-svid").collect();
    assert_eq!(x509.len(), 1);
    assert_eq!(jwt.len(), 1);
    assert_eq!(jwt[0]["kid"], dev.jwt_key_ids()[0].as_str());

    let x5c = STANDARD
        .decode(x509[0]["x5c"][0].as_str().unwrap())
        .unwrap();
    let roots = dev.ca_certificates();
    assert_eq!(x5c, roots[0].as_ref());
    let root = parse(&roots[0]);
    assert_eq!(
        jwk_point(x509[0]),
        root.public_key().subject_public_key.data.as_ref(),
        "x/y are the root's key"
    );
    for k in keys {
        assert_eq!(k["kty"], "EC");
        assert_eq!(k["crv"], "P-256");
    }
}

#[test]
fn debug_output_redacts_keys_and_tokens() {
    let dev = dev(&["spiffe://example.org/a"]);
    let svid = dev.x509_svids()[0].clone();
    let jwt = dev.issue_jwt_svid(svid.spiffe_id(), &["aud"]).unwrap();
    let shown = format!("{svid:?} {jwt:?} {dev:?}");
    assert!(shown.contains("REDACTED"), "{shown}");
    assert!(!shown.contains(jwt.token().expose_secret()));
    let token_sig = jwt.token().expose_secret().rsplit('.').next().unwrap();
    assert!(!shown.contains(token_sig));
    assert!(shown.contains("spiffe://example.org/a"));
}

// === the identity crate's validators accept what we issue ===

#[test]
fn bundle_document_parses_into_the_identity_bundle() {
    let dev = dev(&["spiffe://example.org/a"]);
    let bundle = dev.spiffe_bundle().unwrap();
    assert!(bundle.ignored().is_empty(), "{:?}", bundle.ignored());
    assert_eq!(bundle.trust_domain(), &td());
    assert_eq!(
        bundle.x509().authorities(),
        dev.ca_certificates().as_slice()
    );
    assert_eq!(bundle.jwt().len(), 1);
    assert!(bundle.jwt().find(&dev.jwt_key_ids()[0]).is_some());
    assert_eq!(bundle.sequence(), Some(1));
    assert_eq!(bundle.refresh_hint(), Some(DEFAULT_REFRESH_HINT));
    let set = dev.bundle_set().unwrap();
    assert_eq!(set.len(), 1);
    assert!(set.get(&td()).is_some());
}

#[test]
fn issued_x509_svids_pass_identity_verify() {
    use svid_broker_identity::x509::{X509SvidError, verify};
    let dev = dev(&["spiffe://example.org/a"]);
    let bundles = dev.bundle_set().unwrap();
    let svid = &dev.x509_svids()[0];
    let verified = verify(svid.chain(), &bundles, t0()).unwrap();
    assert_eq!(verified.spiffe_id(), svid.spiffe_id());

    let expired = dev
        .issue_x509_svid_at(
            svid.spiffe_id(),
            t0() - Duration::from_secs(7200),
            Duration::from_secs(3600),
        )
        .unwrap();
    let err = verify(expired.chain(), &bundles, t0()).unwrap_err();
    assert!(matches!(err, X509SvidError::CertExpired { .. }), "{err:?}");

    // Same trust domain name, different CA: the signature does not verify.
    let impostor = DevTrustDomain::builder(td())
        .identity(id("spiffe://example.org/a"))
        .clock(Arc::new(FixedClock(t0())))
        .build()
        .unwrap();
    let forged = &impostor.x509_svids()[0];
    assert!(verify(forged.chain(), &bundles, t0()).is_err());
}

#[test]
fn issued_jwt_svids_pass_identity_validator() {
    use svid_broker_identity::jwt::{JwtSvidError, JwtSvidValidator};
    let dev = dev(&["spiffe://example.org/a"]);
    let bundles = dev.bundle_set().unwrap();
    let who = id("spiffe://example.org/a");
    let jwt = dev.issue_jwt_svid(&who, &["registry"]).unwrap();
    let validator = JwtSvidValidator::new(["registry"]).unwrap();
    let claims = validator
        .validate(jwt.token().expose_secret(), &bundles, t0())
        .unwrap();
    assert_eq!(claims.spiffe_id, who);
    assert_eq!(claims.kid, jwt.key_id());
    assert_eq!(claims.audiences, ["registry"]);

    let other = JwtSvidValidator::new(["elsewhere"]).unwrap();
    assert_eq!(
        other
            .validate(jwt.token().expose_secret(), &bundles, t0())
            .unwrap_err(),
        JwtSvidError::AudienceMismatch
    );

    let expired = dev
        .issue_jwt_svid_at(
            &who,
            &["registry"],
            t0() - Duration::from_secs(3600),
            Duration::from_secs(60),
        )
        .unwrap();
    let err = validator
        .validate(expired.token().expose_secret(), &bundles, t0())
        .unwrap_err();
    assert!(matches!(err, JwtSvidError::Expired { .. }), "{err:?}");

    // A token signed before rotation still validates against the rotated bundle while it lives.
    dev.rotate().unwrap();
    let rotated = dev.bundle_set().unwrap();
    assert!(
        validator
            .validate(jwt.token().expose_secret(), &rotated, t0())
            .is_ok()
    );
}
