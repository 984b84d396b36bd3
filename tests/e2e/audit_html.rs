//! `svid-broker audit report --format html` rendered by a real browser: headless Chromium
//! (Debian's `chromium`, which `scripts/test.sh` installs) loads the page from a file and
//! dumps its DOM (the charts are there, the identities are in the table, an identity and a
//! repository named with a `<script>` stayed text) and takes a screenshot (a PNG of the page).
//! Without Chromium the test fails under `CI=true` and is skipped loudly otherwise.
//!
//! With `SVID_BROKER_WRITE_SCREENSHOT=1` the screenshot is also written to
//! `docs/images/audit-report.png`, the one docs/operations.md shows.

use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use svid_broker_testkit::process::{require, wait_bounded};

use crate::support::{STEP_TIMEOUT, broker, run};

const CHROMIUM: &str = "/usr/bin/chromium";

const PAYMENTS: &str = "spiffe://prod.example/ns/payments/sa/api";
const BUILDER: &str = "spiffe://prod.example/ns/ci/sa/builder";
const FRONTEND: &str = "spiffe://prod.example/ns/web/sa/frontend";
const ETL: &str = "spiffe://prod.example/ns/batch/sa/etl";
const PROMETHEUS: &str = "spiffe://prod.example/ns/monitoring/sa/prometheus";
const SANDBOX: &str = "spiffe://dev.example/ns/sandbox/sa/dev";
/// Clients choose what they send: a SPIFFE ID path and a repository name with markup in them.
const HOSTILE: &str = "spiffe://prod.example/ns/<script>alert(1)</script>/sa/x";
const HOSTILE_REPOSITORY: &str = "evil/<script>alert(2)</script>";

const PROD: &str = "registry.prod.example";
const MIRROR: &str = "mirror.prod.example";
const HARBOR: &str = "harbor.dev.example";
const ECR: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

/// The first hour of the generated log: 2026-12-01T00:00:00Z.
const START: i64 = 1_796_083_200;
const HOURS: i64 = 48;

/// The audit's time format (`YYYY-MM-DDTHH:MM:SSZ`) for Unix seconds in December 2026.
fn time(t: i64) -> String {
    let offset = t - START;
    assert!((0..31 * 86_400).contains(&offset));
    let (day, rest) = (offset / 86_400 + 1, offset % 86_400);
    format!(
        "2026-12-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A small deterministic generator (xorshift64*): the same log on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

struct Log {
    lines: Vec<(i64, String)>,
}

impl Log {
    fn allow(&mut self, t: i64, subject: &str, service: &str, scopes: &[&str], lifetime: i64) {
        let granted = scopes.join(" ");
        let line = serde_json::json!({
            "time": time(t), "event": "svid-broker.exchange", "decision": "allow",
            "code": null, "reason": "granted", "subject": subject, "actor": "x509-svid",
            "service": service, "requested": granted, "granted": granted,
            "kind": "access_token", "jti": format!("j{t}{}", self.lines.len()),
            "expires_at": time(t + lifetime), "cached": false, "peer": "10.0.0.7:41000",
            "endpoint": "realm_get",
        });
        self.lines.push((t, line.to_string()));
    }

    fn deny(&mut self, t: i64, subject: &str, service: &str, code: &str, reason: &str) {
        let line = serde_json::json!({
            "time": time(t), "event": "svid-broker.exchange", "decision": "deny",
            "code": code, "reason": reason, "subject": subject, "actor": "x509-svid",
            "service": service, "requested": "repository:team/app:pull", "granted": "",
            "kind": "access_token", "cached": false, "peer": "10.0.0.9:41000",
            "endpoint": "realm_get",
        });
        self.lines.push((t, line.to_string()));
    }
}

/// Two days of audit: steady workloads with a daily rhythm, a CI builder whose traffic jumps
/// tenfold for an hour (with a repository it never pushed before), a frontend with a burst of
/// refusals, a batch job granted a new repository, an identity that only ever gets refused,
/// the hostile names, a summary of refusals before authentication and a line that is not an
/// audit event.
fn generate() -> String {
    let mut rng = Rng(0x5eed_2026_1201);
    let mut log = Log { lines: Vec::new() };
    for hour in 0..HOURS {
        let base = START + hour * 3600;
        // Busier in the (UTC) working day.
        let day = matches!(hour % 24, 7..=19);
        let at = |rng: &mut Rng| base + i64::try_from(rng.below(3600)).unwrap();
        for _ in 0..(if day { 9 } else { 4 }) + rng.below(3) {
            let t = at(&mut rng);
            let repository = ["payments/api", "payments/worker"][usize::from(t % 2 == 0)];
            let scope = format!("repository:{repository}:pull");
            log.allow(t, PAYMENTS, PROD, &[&scope], 300);
        }
        for _ in 0..(if day { 12 } else { 7 }) + rng.below(4) {
            let t = at(&mut rng);
            log.allow(t, BUILDER, PROD, &["repository:ci/app:pull,push"], 900);
        }
        for _ in 0..3 + rng.below(3) {
            let t = at(&mut rng);
            log.allow(t, BUILDER, MIRROR, &["repository:library/debian:pull"], 900);
        }
        if hour == 30 {
            // The spike: a runaway pipeline.
            for _ in 0..140 {
                let t = at(&mut rng);
                log.allow(t, BUILDER, PROD, &["repository:ci/cache:pull,push"], 900);
            }
        }
        for _ in 0..(if day { 5 } else { 2 }) + rng.below(2) {
            let t = at(&mut rng);
            log.allow(t, FRONTEND, PROD, &["repository:web/frontend:pull"], 600);
        }
        if hour == 40 {
            // The burst: a deployment asking for what its policy does not grant.
            for _ in 0..45 {
                let t = at(&mut rng);
                log.deny(t, FRONTEND, PROD, "permission_denied", "nothing granted");
            }
        }
        if hour % 3 == 0 {
            let t = at(&mut rng);
            log.allow(t, ETL, ECR, &["repository:data/loader:pull"], 43_200);
        }
        if hour == 36 {
            let t = at(&mut rng);
            log.allow(
                t,
                ETL,
                ECR,
                &["repository:data/warehouse-export:pull"],
                43_200,
            );
        }
        for _ in 0..2 {
            let t = at(&mut rng);
            log.allow(
                t,
                PROMETHEUS,
                HARBOR,
                &["repository:monitoring/node-exporter:pull"],
                1800,
            );
        }
        if rng.below(3) == 0 {
            let t = at(&mut rng);
            log.deny(
                t,
                SANDBOX,
                HARBOR,
                "permission_denied",
                "no rule grants repository:team/app:pull",
            );
        }
        if hour % 8 == 5 {
            let t = at(&mut rng);
            log.deny(t, SANDBOX, PROD, "resource_exhausted", "rate limited");
        }
        if hour % 6 == 1 {
            let t = at(&mut rng);
            log.deny(
                t,
                HOSTILE,
                PROD,
                "permission_denied",
                "<b>nothing</b> granted",
            );
        }
        if hour == 20 {
            let t = at(&mut rng);
            let scope = format!("repository:{HOSTILE_REPOSITORY}:pull");
            log.allow(t, HOSTILE, PROD, &[&scope], 300);
        }
    }
    log.lines.push((
        START + 12 * 3600,
        serde_json::json!({
            "time": time(START + 12 * 3600), "event": "svid-broker.preauth_denials",
            "decision": "deny", "code": "unauthenticated", "reason": "no credentials",
            "peer": "203.0.113.5", "endpoint": "realm_get", "count": 57,
        })
        .to_string(),
    ));
    log.lines
        .push((START + 13 * 3600, "not an audit event".to_owned()));
    log.lines.sort_by_key(|(t, _)| *t);
    let mut out = String::new();
    for (_, line) in log.lines {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// Runs Chromium headless on `args` + `page` with a fresh profile, stdout to a file; at most
/// [`STEP_TIMEOUT`], then it and its helpers (its own process group) are killed.
fn chromium(dir: &Path, args: &[String], page: &Path) -> (bool, String, String) {
    let profile = tempfile::tempdir_in(dir).unwrap();
    let stdout = dir.join("chromium.out");
    let stderr = dir.join("chromium.err");
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .env("HOME", profile.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        // Its own group: on a timeout the renderer and other helpers go too.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {CHROMIUM}: {e}"));
    let pid = child.id();
    let status = wait_bounded(&mut child, STEP_TIMEOUT);
    if status.is_none() {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
    }
    let status = status.unwrap_or_else(|| {
        panic!(
            "chromium {args:?} did not finish in {STEP_TIMEOUT:?}: {}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    });
    (
        status.success(),
        std::fs::read_to_string(&stdout).unwrap(),
        std::fs::read_to_string(&stderr).unwrap_or_default(),
    )
}

/// The text between the first `<tag` and its closing `</tag>`.
fn element<'a>(dom: &'a str, open: &str, close: &str) -> &'a str {
    let start = dom
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in the DOM"));
    let end = dom[start..]
        .find(close)
        .unwrap_or_else(|| panic!("no {close} after {open}"));
    &dom[start..start + end]
}

#[test]
fn the_html_report_renders_in_headless_chromium_with_its_charts_and_escaped_names() {
    // The absolute path: `require` joins it to each `PATH` entry, which yields the path itself.
    if !require(CHROMIUM) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    std::fs::write(&audit, generate()).unwrap();
    // Run from the file's directory: the page names its source `audit.log`.
    let out = svid_broker_testkit::process::run(
        broker().current_dir(dir.path()).args([
            "audit",
            "report",
            "--audit",
            "audit.log",
            "--format",
            "html",
        ]),
        None,
    );
    assert!(out.success(), "{out:?}");
    let html = out.stdout;
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("Source <code>audit.log</code>"), "{html}");
    assert!(
        !html.to_ascii_lowercase().contains("<script"),
        "the page holds a script element"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("evil/&lt;script&gt;alert(2)&lt;/script&gt;"));
    // The JSON holds the same series the charts draw.
    let json = run(
        &[
            "audit",
            "report",
            "--audit",
            audit.to_str().unwrap(),
            "--format",
            "json",
        ],
        None,
    );
    assert!(json.success(), "{json:?}");
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let charted = json["hourly"]["identities"].as_array().unwrap();
    assert_eq!(charted.len(), 7, "{}", json["hourly"]);
    assert_eq!(json["hourly"]["events"].as_array().unwrap().len(), 48);
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();

    let (ok, dom, stderr) = chromium(dir.path(), &["--dump-dom".to_owned()], &page);
    assert!(ok, "chromium --dump-dom failed: {stderr}");
    assert!(dom.contains("<svg"), "no chart in the DOM: {stderr}");
    // The all-identities chart, per registry, per code, lifetimes, and one per identity.
    assert_eq!(dom.matches("<svg").count(), 4 + 7, "{dom}");
    assert!(dom.contains("<rect class=\"spike\""), "no spike bin shaded");
    assert!(
        !dom.to_ascii_lowercase().contains("<script"),
        "a name became a script element: {dom}"
    );
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{dom}"
    );
    let table = element(&dom, "<h2>Identities and registries</h2>", "</table>");
    for id in [PAYMENTS, BUILDER, FRONTEND, ETL, PROMETHEUS, SANDBOX] {
        assert!(
            table.contains(&format!("<td class=\"id\">{id}</td>")),
            "{id}: {table}"
        );
    }
    for registry in [PROD, MIRROR, HARBOR, ECR] {
        assert!(table.contains(registry), "{registry}: {table}");
    }
    let first = element(&dom, "<h2>First granted", "</table>");
    for repository in ["ci/cache", "data/warehouse-export", "evil/&lt;script&gt;"] {
        assert!(first.contains(repository), "{repository}: {first}");
    }
    let spikes = element(&dom, "<h2>Hours that stand out", "</table>");
    assert!(spikes.contains("2026-12-02T06:00:00Z"), "{spikes}");
    assert!(spikes.contains("2026-12-02T16:00:00Z"), "{spikes}");

    let png = dir.path().join("report.png");
    let (ok, _, stderr) = chromium(
        dir.path(),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1200,1600".to_owned(),
        ],
        &page,
    );
    assert!(ok, "chromium --screenshot failed: {stderr}");
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot: {e}: {stderr}"));
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    // IHDR: width and height, big-endian, at bytes 16..24.
    let size = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!((size(16), size(20)), (1200, 1600));
    // A blank 1200×1600 page compresses to a few KiB; the report's text and bars do not.
    assert!(bytes.len() > 40_000, "{} bytes", bytes.len());
    if std::env::var("SVID_BROKER_WRITE_SCREENSHOT").as_deref() == Ok("1") {
        let docs: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/images");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&png, docs.join("audit-report.png")).unwrap();
    }
}
