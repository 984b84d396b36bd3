use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use svid_broker_dev::DevTrustDomain;
use svid_broker_identity::TrustDomain;
use svid_broker_identity::bundle::{
    EcCurve, JwtAuthority, JwtBundle, JwtPublicKey, SpiffeBundle, X509Bundle,
};

use super::*;

const T0: u64 = 1_800_000_000;
const AUDIENCE: &str = "svid-broker";
const SUB: &str = "spiffe://example.org/ns/ci/sa/builder";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn digest(n: u32) -> TokenDigest {
    TokenDigest::of_token(CredentialDomain::JwtSvid, &n.to_be_bytes())
}

fn window(from: u64, until: u64) -> Validity {
    Validity::new(at(from), at(until))
}

type TestCache = VerifiedCache<Arc<u32>, SpiffeId>;

// === the cache itself ===

#[test]
fn stored_verification_is_a_hit_inside_its_window() {
    let cache = TestCache::new(CacheLimits::default());
    let snap = Arc::new(1);
    assert_eq!(cache.get(&digest(1), &snap, at(T0)), None);
    cache.insert(
        digest(1),
        snap.clone(),
        id(SUB),
        window(T0, T0 + 300),
        at(T0),
    );
    assert_eq!(cache.get(&digest(1), &snap, at(T0)), Some(id(SUB)));
    assert_eq!(cache.get(&digest(1), &snap, at(T0 + 299)), Some(id(SUB)));
    assert_eq!(cache.get(&digest(2), &snap, at(T0)), None);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (2, 2, 1));
}

#[test]
fn another_snapshot_with_equal_content_misses() {
    let cache = TestCache::new(CacheLimits::default());
    let old = Arc::new(7);
    let new = Arc::new(7);
    cache.insert(
        digest(1),
        old.clone(),
        id(SUB),
        window(T0, T0 + 300),
        at(T0),
    );
    assert_eq!(cache.get(&digest(1), &new, at(T0)), None);
    assert_eq!(cache.get(&digest(1), &old, at(T0)), Some(id(SUB)));
    // The first insertion under the new snapshot drops the old snapshot's entries.
    cache.insert(
        digest(2),
        new.clone(),
        id(SUB),
        window(T0, T0 + 300),
        at(T0),
    );
    assert_eq!(cache.stats().entries, 1);
    assert_eq!(cache.get(&digest(1), &old, at(T0)), None);
    assert_eq!(cache.get(&digest(1), &new, at(T0)), None);
    assert_eq!(cache.get(&digest(2), &new, at(T0)), Some(id(SUB)));
}

#[test]
fn no_hit_at_or_after_expiry_nor_before_the_window() {
    let cache = TestCache::new(CacheLimits::default());
    let snap = Arc::new(1);
    cache.insert(
        digest(1),
        snap.clone(),
        id(SUB),
        window(T0, T0 + 300),
        at(T0 - 5),
    );
    assert_eq!(
        cache.get(&digest(1), &snap, at(T0) - Duration::from_nanos(1)),
        None
    );
    assert_eq!(
        cache.get(&digest(1), &snap, at(T0 + 300) - Duration::from_nanos(1)),
        Some(id(SUB))
    );
    assert_eq!(cache.get(&digest(1), &snap, at(T0 + 300)), None);
    // Expired entries are dropped when found.
    assert_eq!(cache.stats().entries, 0);
    assert_eq!(cache.get(&digest(1), &snap, at(T0 + 1)), None);
}

#[test]
fn window_never_opens_before_the_epoch() {
    let cache = TestCache::new(CacheLimits::default());
    let snap = Arc::new(1);
    let before = UNIX_EPOCH - Duration::from_secs(10);
    cache.insert(
        digest(1),
        snap.clone(),
        id(SUB),
        Validity::new(before, at(T0)),
        before,
    );
    assert_eq!(
        cache.get(&digest(1), &snap, UNIX_EPOCH - Duration::from_secs(1)),
        None
    );
    assert_eq!(cache.get(&digest(1), &snap, UNIX_EPOCH), Some(id(SUB)));
}

#[test]
fn a_window_already_over_is_not_stored() {
    let cache = TestCache::new(CacheLimits::default());
    let snap = Arc::new(1);
    cache.insert(digest(1), snap, id(SUB), window(T0, T0 + 1), at(T0 + 1));
    assert_eq!(cache.stats().entries, 0);
}

#[test]
fn entry_cap_evicts_the_oldest_unreferenced_entry() {
    let limits = CacheLimits {
        max_entries: 3,
        max_bytes: DEFAULT_MAX_BYTES,
    };
    let cache = TestCache::new(limits);
    let snap = Arc::new(1);
    for n in 0..3 {
        cache.insert(
            digest(n),
            snap.clone(),
            id(SUB),
            window(T0, T0 + 300),
            at(T0),
        );
    }
    // 0 is hit, so it gets a second chance; 1 is the oldest unreferenced entry.
    assert!(cache.get(&digest(0), &snap, at(T0)).is_some());
    cache.insert(
        digest(3),
        snap.clone(),
        id(SUB),
        window(T0, T0 + 300),
        at(T0),
    );
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.evictions), (3, 1));
    assert!(cache.get(&digest(0), &snap, at(T0)).is_some());
    assert!(cache.get(&digest(1), &snap, at(T0)).is_none());
    assert!(cache.get(&digest(2), &snap, at(T0)).is_some());
    assert!(cache.get(&digest(3), &snap, at(T0)).is_some());
    // A long run of insertions never exceeds the cap.
    for n in 10..1000 {
        cache.insert(
            digest(n),
            snap.clone(),
            id(SUB),
            window(T0, T0 + 300),
            at(T0),
        );
        assert!(cache.stats().entries <= 3);
    }
}

#[test]
fn byte_cap_bounds_the_estimated_memory() {
    let per_entry = entry_overhead::<String>() + allocation(1000);
    let limits = CacheLimits {
        max_entries: 1000,
        max_bytes: per_entry * 4 + per_entry / 2,
    };
    let cache: VerifiedCache<Arc<u32>, String> = VerifiedCache::new(limits);
    let snap = Arc::new(1);
    for n in 0..20 {
        cache.insert(
            digest(n),
            snap.clone(),
            "x".repeat(1000),
            window(T0, T0 + 300),
            at(T0),
        );
        let stats = cache.stats();
        assert!(stats.bytes <= limits.max_bytes, "{stats:?}");
    }
    let stats = cache.stats();
    assert_eq!(stats.entries, 4);
    assert_eq!(stats.bytes, per_entry * 4);
    // The newest entries stayed.
    assert!(cache.get(&digest(19), &snap, at(T0)).is_some());
    assert!(cache.get(&digest(15), &snap, at(T0)).is_none());
    // An entry larger than the whole cap is never stored (and evicts nothing).
    cache.insert(
        digest(99),
        snap.clone(),
        "x".repeat(limits.max_bytes),
        window(T0, T0 + 300),
        at(T0),
    );
    assert!(cache.get(&digest(99), &snap, at(T0)).is_none());
    assert_eq!(cache.stats().entries, 4);
}

#[test]
fn disabled_cache_stores_nothing() {
    let cache = TestCache::new(CacheLimits {
        max_entries: 0,
        max_bytes: 0,
    });
    let snap = Arc::new(1);
    cache.insert(
        digest(1),
        snap.clone(),
        id(SUB),
        window(T0, T0 + 300),
        at(T0),
    );
    assert_eq!(cache.get(&digest(1), &snap, at(T0)), None);
    assert_eq!(cache.stats().entries, 0);
}

#[test]
fn replacing_and_expiring_entries_keeps_the_queue_bounded() {
    let cache = TestCache::new(CacheLimits::default());
    let snap = Arc::new(1);
    for round in 0..2000u64 {
        cache.insert(
            digest(1),
            snap.clone(),
            id(SUB),
            window(T0, T0 + 300),
            at(T0),
        );
        cache.insert(
            digest(2),
            snap.clone(),
            id(SUB),
            window(T0, T0 + 1 + round),
            at(T0),
        );
        assert!(cache.get(&digest(2), &snap, at(T0 + 1 + round)).is_none());
    }
    assert_eq!(cache.stats().entries, 1);
    // Compaction keeps at most twice the live entries plus 64 slack slots, plus the newest.
    let live = cache.stats().entries;
    assert!(
        cache.queue_len() <= 2 * live + 64 + 1,
        "{}",
        cache.queue_len()
    );
}

#[test]
fn get_or_verify_caches_successes_only() {
    let cache = TestCache::new(CacheLimits::default());
    let snap = Arc::new(1);
    let mut calls = 0;
    let mut verify = |ok: bool| {
        calls += 1;
        if ok {
            Ok((id(SUB), window(T0, T0 + 300)))
        } else {
            Err("refused")
        }
    };
    assert_eq!(
        cache.get_or_verify(digest(1), &snap, at(T0), || verify(false)),
        Err("refused")
    );
    assert_eq!(
        cache.get_or_verify(digest(1), &snap, at(T0), || verify(false)),
        Err("refused")
    );
    assert_eq!(
        cache.get_or_verify(digest(1), &snap, at(T0), || verify(true)),
        Ok(id(SUB))
    );
    assert_eq!(
        cache.get_or_verify(digest(1), &snap, at(T0), || verify(false)),
        Ok(id(SUB))
    );
    assert_eq!(calls, 3);
}

#[test]
fn digests_separate_kinds_and_chain_splits() {
    let token = b"same bytes";
    assert_ne!(
        TokenDigest::of_token(CredentialDomain::JwtSvid, token),
        TokenDigest::of_token(CredentialDomain::LoginCredential, token)
    );
    let ab_c = [
        CertificateDer::from(&b"ab"[..]),
        CertificateDer::from(&b"c"[..]),
    ];
    let a_bc = [
        CertificateDer::from(&b"a"[..]),
        CertificateDer::from(&b"bc"[..]),
    ];
    assert_ne!(TokenDigest::of_chain(&ab_c), TokenDigest::of_chain(&a_bc));
    assert_eq!(
        TokenDigest::of_chain(&ab_c),
        TokenDigest::of_chain(&ab_c.clone())
    );
    assert_eq!(
        format!("{:?}", TokenDigest::of_chain(&ab_c)),
        "TokenDigest(<redacted>)"
    );
}

// === a hit decides exactly as a miss: the JWT-SVID corpus ===

struct Key {
    pair: EcdsaKeyPair,
}

impl Key {
    fn new() -> Self {
        Self {
            pair: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
        }
    }

    fn authority(&self, kid: &str) -> JwtAuthority {
        JwtAuthority {
            kid: kid.to_owned(),
            key: JwtPublicKey::ec_point(EcCurve::P256, self.pair.public_key().as_ref()).unwrap(),
            alg: None,
        }
    }

    /// A compact JWS over `header` and `claims` (JSON text) signed ES256.
    fn jws(&self, header: &str, claims: &str) -> String {
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let sig = self
            .pair
            .sign(&SystemRandom::new(), token.as_bytes())
            .unwrap();
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
        token
    }
}

fn bundle_set(authorities: Vec<JwtAuthority>) -> Arc<BundleSet> {
    let td = TrustDomain::parse("example.org").unwrap();
    let jwt = JwtBundle::new(td.clone(), authorities).unwrap();
    let mut set = BundleSet::new();
    set.insert(SpiffeBundle::new(X509Bundle::empty(td), jwt).unwrap())
        .unwrap();
    Arc::new(set)
}

fn header(kid: &str) -> String {
    format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"JWT"}}"#)
}

fn claims(sub: &str, aud: &str, exp: i64, extra: &str) -> String {
    format!(r#"{{"sub":"{sub}","aud":{aud},"exp":{exp}{extra}}}"#)
}

/// Named tokens covering every outcome class the validator has: valid ones with each kind of
/// time claim, and one of each way to be refused.
fn corpus(k1: &Key, k2: &Key) -> Vec<(&'static str, String)> {
    let t = T0 as i64;
    let aud = format!(r#""{AUDIENCE}""#);
    let h1 = header("k1");
    let valid = claims(SUB, &aud, t + 300, &format!(r#","iat":{t}"#));
    let mut tampered_sig = k1.jws(&h1, &valid);
    let last = tampered_sig.pop().unwrap();
    tampered_sig.push(if last == 'A' { 'B' } else { 'A' });
    let signed = k1.jws(&h1, &valid);
    let parts: Vec<&str> = signed.split('.').collect();
    let other_claims = URL_SAFE_NO_PAD.encode(claims(
        "spiffe://example.org/ns/ci/sa/admin",
        &aud,
        t + 300,
        "",
    ));
    let tampered_claims = format!("{}.{other_claims}.{}", parts[0], parts[2]);
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{}.", URL_SAFE_NO_PAD.encode(&valid));
    vec![
        ("valid", k1.jws(&h1, &valid)),
        ("valid, same claims, another signature", k1.jws(&h1, &valid)),
        (
            "valid, no iat",
            k1.jws(&h1, &claims(SUB, &aud, t + 120, "")),
        ),
        (
            "valid, aud list",
            k1.jws(
                &h1,
                &claims(SUB, &format!(r#"["x","{AUDIENCE}"]"#), t + 300, ""),
            ),
        ),
        (
            "nbf in the future",
            k1.jws(
                &h1,
                &claims(SUB, &aud, t + 600, &format!(r#","nbf":{}"#, t + 100)),
            ),
        ),
        (
            "iat in the future",
            k1.jws(
                &h1,
                &claims(SUB, &aud, t + 600, &format!(r#","iat":{}"#, t + 200)),
            ),
        ),
        (
            "nbf and iat before the epoch",
            k1.jws(&h1, &claims(SUB, &aud, t + 300, r#","nbf":-100,"iat":-50"#)),
        ),
        ("expired", k1.jws(&h1, &claims(SUB, &aud, t - 100, ""))),
        (
            "wrong aud",
            k1.jws(&h1, &claims(SUB, r#""someone-else""#, t + 300, "")),
        ),
        ("unknown kid", k1.jws(&header("k9"), &valid)),
        (
            "other trust domain",
            k1.jws(&h1, &claims("spiffe://other.org/w", &aud, t + 300, "")),
        ),
        ("alg none", alg_none),
        ("tampered signature", tampered_sig),
        ("tampered claims", tampered_claims),
        ("signed by another key under k1", k2.jws(&h1, &valid)),
        (
            "signed by k2 (valid once k2 is in the bundle)",
            k2.jws(&header("k2"), &valid),
        ),
        ("two segments", "a.b".to_owned()),
        (
            "header member not allowed",
            k1.jws(r#"{"alg":"ES256","kid":"k1","jku":"x"}"#, &valid),
        ),
    ]
}

/// Times around every boundary of every corpus token: the clock before the epoch, then each
/// of `iat`/`nbf` minus the leeway, `exp` and `exp` plus the leeway, each ± a little.
fn times() -> Vec<SystemTime> {
    let t = T0 as i64;
    let mut marks = vec![
        t - 3600,
        t - 100,
        t,
        t + 100,
        t + 120,
        t + 200,
        t + 300,
        t + 600,
    ];
    marks.extend([-100, -50, 0]);
    let mut out = vec![UNIX_EPOCH - Duration::from_secs(1), UNIX_EPOCH];
    let deltas_ms: [i64; 13] = [
        -31_000, -30_000, -29_500, -1_000, -1, 0, 1, 500, 999, 1_000, 29_999, 30_000, 31_000,
    ];
    for mark in marks {
        for d in deltas_ms {
            let ms = mark * 1000 + d;
            if ms >= 0 {
                out.push(UNIX_EPOCH + Duration::from_millis(ms as u64));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn cached_and_uncached_jwt_svid_validation_agree_on_the_corpus() {
    let k1 = Key::new();
    let k2 = Key::new();
    let tokens = corpus(&k1, &k2);
    let first = bundle_set(vec![k1.authority("k1")]);
    // The same content in a new snapshot, then k2 added, then k1 rotated out.
    let snapshots = [
        Arc::clone(&first),
        bundle_set(vec![k1.authority("k1")]),
        bundle_set(vec![k1.authority("k1"), k2.authority("k2")]),
        bundle_set(vec![k2.authority("k2")]),
        first,
    ];
    let validator = JwtSvidValidator::new([AUDIENCE]).unwrap();
    // One cache that lives through every time and snapshot (entries stored earlier are looked
    // up later, the clock also runs backwards), plus a fresh one per case for cold then warm.
    let long_lived = SubjectCache::new(CacheLimits::default());
    let mut times = times();
    let forwards = times.clone();
    times.reverse();
    let mut checked = 0;
    let mut accepted = 0;
    for snapshot in &snapshots {
        for now in forwards.iter().chain(&times) {
            for (name, token) in &tokens {
                let uncached = validator
                    .validate(token, snapshot, *now)
                    .map(|c| c.spiffe_id);
                let fresh = SubjectCache::new(CacheLimits::default());
                let cold = fresh.validate_jwt_svid(&validator, token, snapshot, *now);
                let warm = fresh.validate_jwt_svid(&validator, token, snapshot, *now);
                let lived = long_lived.validate_jwt_svid(&validator, token, snapshot, *now);
                let again = long_lived.validate_jwt_svid(&validator, token, snapshot, *now);
                for (path, got) in [("cold", &cold), ("warm", &warm), ("long-lived", &lived)] {
                    assert_eq!(got, &uncached, "{name}, {path}, at {now:?}");
                }
                assert_eq!(again, uncached, "{name}, long-lived again, at {now:?}");
                checked += 1;
                if uncached.is_ok() {
                    accepted += 1;
                }
            }
        }
    }
    // The comparison means something only if the cache did answer, and both outcomes occur.
    let stats = long_lived.stats();
    assert!(stats.hits > 1000, "{stats:?}");
    assert!(
        accepted > 100 && accepted < checked,
        "{accepted} of {checked}"
    );
}

#[test]
fn warm_validation_is_served_by_the_cache() {
    let k1 = Key::new();
    let bundles = bundle_set(vec![k1.authority("k1")]);
    let validator = JwtSvidValidator::new([AUDIENCE]).unwrap();
    let cached = SubjectCache::new(CacheLimits::default());
    let token = k1.jws(
        &header("k1"),
        &claims(SUB, &format!(r#""{AUDIENCE}""#), T0 as i64 + 300, ""),
    );
    assert_eq!(
        cached.validate_jwt_svid(&validator, &token, &bundles, at(T0)),
        Ok(id(SUB))
    );
    assert_eq!(
        cached.validate_jwt_svid(&validator, &token, &bundles, at(T0 + 10)),
        Ok(id(SUB))
    );
    let stats = cached.stats();
    assert_eq!((stats.hits, stats.misses, stats.insertions), (1, 1, 1));
    // Past `exp` (within the leeway) the cache steps aside and the validator answers.
    assert_eq!(
        cached.validate_jwt_svid(&validator, &token, &bundles, at(T0 + 310)),
        Ok(id(SUB))
    );
    assert_eq!(cached.stats().hits, 1);
}

#[test]
fn cached_and_uncached_chain_verification_agree_around_the_validity_window() {
    let td = DevTrustDomain::builder(TrustDomain::parse("example.org").unwrap())
        .build()
        .unwrap();
    let now = SystemTime::now();
    let start = UNIX_EPOCH + Duration::from_secs(now.duration_since(UNIX_EPOCH).unwrap().as_secs());
    let svid = td
        .issue_x509_svid_at(&id(SUB), start, Duration::from_secs(600))
        .unwrap();
    let other = td
        .issue_x509_svid_at(&id(SUB), start, Duration::from_secs(60))
        .unwrap();
    let first = Arc::new(td.bundle_set().unwrap());
    let snapshots = [
        Arc::clone(&first),
        Arc::new(td.bundle_set().unwrap()),
        first,
    ];
    let (nb, na) = (svid.not_before(), svid.not_after());
    let mut times = Vec::new();
    for mark in [nb, na, other.not_after(), start + Duration::from_secs(30)] {
        for ms in [-1_500i64, -1_000, -1, 0, 1, 500, 999, 1_000, 1_001, 1_500] {
            let d = Duration::from_millis(ms.unsigned_abs());
            times.push(if ms < 0 { mark - d } else { mark + d });
        }
    }
    times.sort();
    let long_lived = SubjectCache::new(CacheLimits::default());
    for snapshot in &snapshots {
        for now in &times {
            for chain in [svid.chain(), other.chain()] {
                let uncached =
                    x509::verify(chain, snapshot, *now).map(VerifiedX509Svid::into_spiffe_id);
                let fresh = SubjectCache::new(CacheLimits::default());
                assert_eq!(
                    fresh.verify_x509(chain, snapshot, *now),
                    uncached,
                    "cold at {now:?}"
                );
                assert_eq!(
                    fresh.verify_x509(chain, snapshot, *now),
                    uncached,
                    "warm at {now:?}"
                );
                assert_eq!(
                    long_lived.verify_x509(chain, snapshot, *now),
                    uncached,
                    "long-lived at {now:?}"
                );
            }
        }
    }
    assert!(long_lived.stats().hits > 10, "{:?}", long_lived.stats());
}
