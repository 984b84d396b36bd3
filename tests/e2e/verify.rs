//! `svid-broker verify jwt|x509`: exit codes and the failed rule, with SVIDs minted by the dev CA.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use svid_broker_dev::DevTrustDomain;
use svid_broker_identity::secret::ExposeSecret as _;
use svid_broker_identity::{SpiffeId, TrustDomain};

use crate::support::{Output, run};

const AUDIENCE: &str = "svid-broker";

struct Fixture {
    dir: tempfile::TempDir,
    td: DevTrustDomain,
    id: SpiffeId,
}

impl Fixture {
    fn new(trust_domain: &str) -> Self {
        let id = SpiffeId::parse(&format!("spiffe://{trust_domain}/ns/ci/sa/builder")).unwrap();
        let td =
            DevTrustDomain::new(TrustDomain::parse(trust_domain).unwrap(), [id.clone()]).unwrap();
        Self {
            dir: tempfile::tempdir().unwrap(),
            td,
            id,
        }
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn bundle_document(&self) -> PathBuf {
        self.write("bundle.jwks.json", &self.td.bundle_document_json())
    }

    fn bundle_pem(&self) -> PathBuf {
        self.write("bundle.pem", &self.td.bundle_pem())
    }

    fn jwt(&self, audience: &str) -> (String, u64) {
        let svid = self.td.issue_jwt_svid(&self.id, &[audience]).unwrap();
        (svid.token().expose_secret().to_owned(), svid.expiry())
    }
}

fn bundle_arg(td: &str, path: &Path) -> String {
    format!("{td}={}", path.display())
}

fn assert_rejected(out: &Output, rule: &str) {
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout when rejected: {out:?}"
    );
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "one stderr line: {lines:?}");
    assert!(
        lines[0].contains(rule),
        "stderr should name the rule ({rule}): {}",
        lines[0]
    );
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn jwt_valid_token_prints_spiffe_id() {
    let f = Fixture::new("example.org");
    let bundle = bundle_arg("example.org", &f.bundle_document());
    let (token, _) = f.jwt(AUDIENCE);
    let out = run(
        &[
            "verify",
            "jwt",
            "--bundle",
            &bundle,
            "--audience",
            AUDIENCE,
            &token,
        ],
        None,
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, format!("{}\n", f.id));
}

#[test]
fn jwt_token_from_stdin_and_any_of_audiences() {
    let f = Fixture::new("example.org");
    let bundle = bundle_arg("spiffe://example.org", &f.bundle_document());
    let (token, _) = f.jwt("registry");
    let args = [
        "verify",
        "jwt",
        "--bundle",
        &bundle,
        "--audience",
        "other",
        "--audience",
        "registry",
        "-",
    ];
    let out = run(&args, Some(&format!("{token}\n")));
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), f.id.as_str());
}

#[test]
fn jwt_wrong_audience_is_rejected_and_token_never_echoed() {
    let f = Fixture::new("example.org");
    let bundle = bundle_arg("example.org", &f.bundle_document());
    let (token, _) = f.jwt("someone-else");
    let out = run(
        &[
            "verify",
            "jwt",
            "--bundle",
            &bundle,
            "--audience",
            AUDIENCE,
            &token,
        ],
        None,
    );
    assert_rejected(&out, "audience");
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !out.stderr.contains(signature),
        "the token must never be printed"
    );
}

#[test]
fn jwt_expiry_honours_at_and_leeway() {
    let f = Fixture::new("example.org");
    let bundle = bundle_arg("example.org", &f.bundle_document());
    let (token, exp) = f.jwt(AUDIENCE);
    let base = [
        "verify",
        "jwt",
        "--bundle",
        bundle.as_str(),
        "--audience",
        AUDIENCE,
    ];

    let late = (exp + 3600).to_string();
    let out = run(&[&base[..], &["--at", &late, &token]].concat(), None);
    assert_rejected(&out, "expired");

    // Ten seconds after exp: inside a 30 s leeway, outside a zero leeway.
    let just_after = (exp + 10).to_string();
    let out = run(
        &[&base[..], &["--at", &just_after, "--leeway", "30", &token]].concat(),
        None,
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    let out = run(
        &[&base[..], &["--at", &just_after, "--leeway", "0", &token]].concat(),
        None,
    );
    assert_rejected(&out, "expired");
}

#[test]
fn jwt_needs_a_bundle_of_the_subjects_own_trust_domain() {
    let ours = Fixture::new("example.org");
    let other = Fixture::new("other.example");
    let bundle = bundle_arg("other.example", &other.bundle_document());
    let (token, _) = ours.jwt(AUDIENCE);
    let out = run(
        &[
            "verify",
            "jwt",
            "--bundle",
            &bundle,
            "--audience",
            AUDIENCE,
            &token,
        ],
        None,
    );
    assert_rejected(&out, "no bundle");
}

#[test]
fn jwt_signed_by_an_impostor_ca_with_the_same_name_is_rejected() {
    let real = Fixture::new("example.org");
    let impostor = Fixture::new("example.org");
    let bundle = bundle_arg("example.org", &real.bundle_document());
    let (token, _) = impostor.jwt(AUDIENCE);
    let out = run(
        &[
            "verify",
            "jwt",
            "--bundle",
            &bundle,
            "--audience",
            AUDIENCE,
            &token,
        ],
        None,
    );
    // The impostor's kid is unknown to the real bundle, so the key lookup fails first.
    assert_rejected(&out, "kid");
}

#[test]
fn jwt_garbage_is_rejected_not_crashed() {
    let f = Fixture::new("example.org");
    let bundle = bundle_arg("example.org", &f.bundle_document());
    for token in [
        "",
        "a.b",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.e30.",
        &"x".repeat(100_000),
    ] {
        let out = run(
            &[
                "verify",
                "jwt",
                "--bundle",
                &bundle,
                "--audience",
                AUDIENCE,
                "-",
            ],
            Some(token),
        );
        assert_eq!(out.code(), Some(1), "{token:.20}: {out:?}");
        assert_eq!(out.stderr_lines().len(), 1, "{out:?}");
    }
}

#[test]
fn jwt_unreadable_or_invalid_bundle_is_a_usage_error() {
    let f = Fixture::new("example.org");
    let (token, _) = f.jwt(AUDIENCE);
    let missing = bundle_arg("example.org", &f.dir.path().join("missing.json"));
    let out = run(
        &[
            "verify",
            "jwt",
            "--bundle",
            &missing,
            "--audience",
            AUDIENCE,
            &token,
        ],
        None,
    );
    assert_eq!(out.code(), Some(2), "{out:?}");
    let junk = bundle_arg("example.org", &f.write("junk.json", "{\"keys\": 5}"));
    let out = run(
        &[
            "verify",
            "jwt",
            "--bundle",
            &junk,
            "--audience",
            AUDIENCE,
            &token,
        ],
        None,
    );
    assert_eq!(out.code(), Some(2), "{out:?}");
    let no_td = format!("{}", f.bundle_document().display());
    let out = run(
        &[
            "verify",
            "jwt",
            "--bundle",
            &no_td,
            "--audience",
            AUDIENCE,
            &token,
        ],
        None,
    );
    assert_eq!(out.code(), Some(2), "{out:?}");
}

#[test]
fn x509_valid_chain_with_pem_or_document_bundle() {
    let f = Fixture::new("example.org");
    let svid = f.td.issue_x509_svid(&f.id).unwrap();
    let chain = f.write("chain.pem", &svid.chain_pem());
    for bundle in [f.bundle_pem(), f.bundle_document()] {
        let bundle = bundle_arg("example.org", &bundle);
        let out = run(
            &[
                "verify",
                "x509",
                "--bundle",
                &bundle,
                chain.to_str().unwrap(),
            ],
            None,
        );
        assert_eq!(out.code(), Some(0), "{out:?}");
        assert_eq!(out.stdout, format!("{}\n", f.id));
    }
}

#[test]
fn x509_expired_at_a_later_time() {
    let f = Fixture::new("example.org");
    let svid = f.td.issue_x509_svid(&f.id).unwrap();
    let chain = f.write("chain.pem", &svid.chain_pem());
    let bundle = bundle_arg("example.org", &f.bundle_pem());
    let later = (now_secs() + Duration::from_secs(10 * 3600).as_secs()).to_string();
    let out = run(
        &[
            "verify",
            "x509",
            "--bundle",
            &bundle,
            "--at",
            &later,
            chain.to_str().unwrap(),
        ],
        None,
    );
    assert_rejected(&out, "expired");
}

#[test]
fn x509_from_an_impostor_ca_or_without_its_bundle_is_rejected() {
    let real = Fixture::new("example.org");
    let impostor = Fixture::new("example.org");
    let other = Fixture::new("other.example");
    let svid = impostor.td.issue_x509_svid(&impostor.id).unwrap();
    let chain = impostor.write("chain.pem", &svid.chain_pem());

    let bundle = bundle_arg("example.org", &real.bundle_pem());
    let out = run(
        &[
            "verify",
            "x509",
            "--bundle",
            &bundle,
            chain.to_str().unwrap(),
        ],
        None,
    );
    // Same subject name as the real CA, so the path builder finds it and the signature fails.
    assert_rejected(&out, "signature");

    let bundle = bundle_arg("other.example", &other.bundle_pem());
    let out = run(
        &[
            "verify",
            "x509",
            "--bundle",
            &bundle,
            chain.to_str().unwrap(),
        ],
        None,
    );
    assert_rejected(&out, "no x.509 bundle for trust domain example.org");
}

#[test]
fn x509_file_without_certificates_is_a_usage_error() {
    let f = Fixture::new("example.org");
    let chain = f.write("chain.pem", "not a pem file\n");
    let bundle = bundle_arg("example.org", &f.bundle_pem());
    let out = run(
        &[
            "verify",
            "x509",
            "--bundle",
            &bundle,
            chain.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.code(), Some(2), "{out:?}");
}
