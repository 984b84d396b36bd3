//! AWS credentials for signing KMS requests: static keys, or a web identity token exchanged
//! at STS (`AssumeRoleWithWebIdentity`, the Query API, answered in XML) and cached.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quick_xml::Reader;
use quick_xml::events::Event;
use svid_broker_identity::secret::SecretString;
use zeroize::Zeroizing;

use super::transport::{self, Endpoint, TransportError};

/// Refresh cached session credentials this long before they expire (what the AWS SDKs do).
pub(crate) const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Largest web identity token file read (STS takes at most 20,000 characters).
const MAX_TOKEN_FILE: u64 = 20_000;
/// Bounds on the STS answer's XML.
const MAX_XML_DEPTH: usize = 8;
const MAX_XML_EVENTS: usize = 512;
const MAX_FIELD_BYTES: usize = 8 * 1024;

/// Credentials for one request.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: SecretString,
    pub(crate) session_token: Option<SecretString>,
    /// When they stop working (`None` for long-term keys).
    pub(crate) expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why no credentials could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CredentialError {
    /// STS could not be reached or answered 5xx or throttled: retry later.
    Unavailable(String),
    /// STS refused, or the token file is unreadable: `code: message`.
    Refused(String),
    /// STS's answer broke a rule.
    Malformed(&'static str),
}

/// The web identity exchange's settings.
#[derive(Debug)]
pub(crate) struct WebIdentity {
    pub(crate) token_file: std::path::PathBuf,
    pub(crate) role_arn: String,
    pub(crate) session_name: String,
    pub(crate) endpoint: Endpoint,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) timeout: Duration,
    /// The session credentials from the last STS exchange, until they near their end.
    pub(crate) cache: Mutex<Option<Credentials>>,
}

impl WebIdentity {
    /// The cached session, or a new one when none is cached or it ends within
    /// [`REFRESH_MARGIN`]. The token file is re-read for every exchange: the kubelet rotates it.
    pub(crate) fn credentials(&self, now: SystemTime) -> Result<Credentials, CredentialError> {
        // One exchange at a time: concurrent signers wait for it rather than each calling STS.
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cached) = cache.as_ref()
            && cached
                .expires_at
                .is_some_and(|end| now + REFRESH_MARGIN < end)
        {
            return Ok(cached.clone());
        }
        let fresh = self.assume(now)?;
        *cache = Some(fresh.clone());
        Ok(fresh)
    }

    fn assume(&self, now: SystemTime) -> Result<Credentials, CredentialError> {
        let token = read_token_file(&self.token_file)?;
        let mut body = Zeroizing::new(String::with_capacity(token.len() + 256));
        for (i, (name, value)) in [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", self.role_arn.as_str()),
            ("RoleSessionName", self.session_name.as_str()),
            ("WebIdentityToken", token.as_str()),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                body.push('&');
            }
            body.push_str(name);
            body.push('=');
            form_encode(&mut body, value);
        }
        let headers = [
            ("host", self.endpoint.authority()),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "text/xml"),
        ];
        let response = transport::post(
            &self.endpoint,
            &self.tls,
            &headers,
            body.as_bytes(),
            self.timeout,
        )
        .map_err(|e| match e {
            TransportError::Unavailable(why) => CredentialError::Unavailable(why),
            TransportError::Malformed(rule) => CredentialError::Malformed(rule),
        })?;
        let fields = read_sts_xml(&response.body);
        if response.status != 200 {
            let (code, message) = match &fields {
                Ok(f) => (
                    f.code.as_deref().map_or("", |c| c.as_str()).to_owned(),
                    f.message.as_deref().map_or("", |m| m.as_str()).to_owned(),
                ),
                Err(_) => (String::new(), String::new()),
            };
            let reason = format!(
                "STS AssumeRoleWithWebIdentity answered {}: {}: {}",
                response.status,
                printable(&code, 64),
                printable(&message, 256)
            );
            // Throttling and 5xx pass; every other refusal is the configuration's.
            return Err(
                if response.status >= 500 || code == "Throttling" || response.status == 429 {
                    CredentialError::Unavailable(reason)
                } else {
                    CredentialError::Refused(reason)
                },
            );
        }
        let fields = fields.map_err(CredentialError::Malformed)?;
        let (Some(key), Some(secret), Some(token), Some(expiration)) = (
            fields.access_key_id,
            fields.secret_access_key,
            fields.session_token,
            fields.expiration,
        ) else {
            return Err(CredentialError::Malformed(
                "STS's Credentials lack AccessKeyId, SecretAccessKey, SessionToken or Expiration",
            ));
        };
        let key = key.trim();
        if !(16..=128).contains(&key.len()) || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(CredentialError::Malformed(
                "STS's AccessKeyId is not 16 to 128 letters and digits",
            ));
        }
        let printable_secret = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        if !printable_secret(secret.trim()) || !printable_secret(token.trim()) {
            return Err(CredentialError::Malformed(
                "STS's SecretAccessKey or SessionToken is not printable ASCII",
            ));
        }
        let expires_at = parse_iso8601(expiration.trim()).ok_or(CredentialError::Malformed(
            "STS's Expiration is not an ISO 8601 UTC time",
        ))?;
        if expires_at <= now {
            return Err(CredentialError::Malformed(
                "STS's credentials are already expired",
            ));
        }
        Ok(Credentials {
            access_key_id: key.to_owned(),
            secret_access_key: SecretString::from(secret.trim().to_owned()),
            session_token: Some(SecretString::from(token.trim().to_owned())),
            expires_at: Some(expires_at),
        })
    }
}

/// The token file's content, trimmed; a regular file of at most 20,000 bytes.
///
/// Regular files only, checked before opening: opening a FIFO for reading blocks until a
/// writer appears, and reading a device (`/dev/zero`) or a FIFO need never end. The path is
/// followed through symlinks (the kubelet's projected token is one, into `..data/`). Checked
/// again on the open file, so a file swapped in between is still refused before any read;
/// a FIFO swapped in during that window could still block the open, a race only whoever
/// controls the token's directory can run.
fn read_token_file(path: &Path) -> Result<Zeroizing<String>, CredentialError> {
    use std::io::Read as _;
    let refused = |why: &str| {
        CredentialError::Refused(format!("web identity token file {}: {why}", path.display()))
    };
    let unreadable = |e: std::io::Error| refused(&format!("unreadable: {}", e.kind()));
    let not_regular = || refused("not a regular file");
    if !std::fs::metadata(path).map_err(unreadable)?.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(not_regular());
    }
    if metadata.len() > MAX_TOKEN_FILE {
        return Err(refused("longer than 20000 bytes"));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    // Capped again while reading: the file may grow after the size was checked.
    file.take(MAX_TOKEN_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_TOKEN_FILE {
        return Err(refused("longer than 20000 bytes"));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| refused("not UTF-8"))?;
    let text = text.trim();
    if text.len() < 4 {
        return Err(refused("empty"));
    }
    Ok(Zeroizing::new(text.to_owned()))
}

/// `application/x-www-form-urlencoded` of `value` onto `out`.
fn form_encode(out: &mut String, value: &str) {
    use std::fmt::Write as _;
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// At most `max` characters of `text`, control characters dropped: a remote's words in an error.
pub(crate) fn printable(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

#[derive(Default)]
struct StsFields {
    access_key_id: Option<Zeroizing<String>>,
    secret_access_key: Option<Zeroizing<String>>,
    session_token: Option<Zeroizing<String>>,
    expiration: Option<Zeroizing<String>>,
    code: Option<Zeroizing<String>>,
    message: Option<Zeroizing<String>>,
}

const CREDENTIALS_PATH: [&str; 3] = [
    "AssumeRoleWithWebIdentityResponse",
    "AssumeRoleWithWebIdentityResult",
    "Credentials",
];
const ERROR_PATH: [&str; 2] = ["ErrorResponse", "Error"];

impl StsFields {
    fn slot(&mut self, path: &[String]) -> Option<&mut Option<Zeroizing<String>>> {
        let (leaf, parent) = path.split_last()?;
        if parent.iter().map(String::as_str).eq(CREDENTIALS_PATH) {
            return match leaf.as_str() {
                "AccessKeyId" => Some(&mut self.access_key_id),
                "SecretAccessKey" => Some(&mut self.secret_access_key),
                "SessionToken" => Some(&mut self.session_token),
                "Expiration" => Some(&mut self.expiration),
                _ => None,
            };
        }
        if parent.iter().map(String::as_str).eq(ERROR_PATH) {
            return match leaf.as_str() {
                "Code" => Some(&mut self.code),
                "Message" => Some(&mut self.message),
                _ => None,
            };
        }
        None
    }
}

/// Reads STS's credentials and error fields. Strict: one root, no DTD, bounded depth, events
/// and field lengths, each field at most once, only the predefined entities.
fn read_sts_xml(body: &[u8]) -> Result<StsFields, &'static str> {
    let mut reader = Reader::from_reader(body);
    let mut path: Vec<String> = Vec::new();
    let mut fields = StsFields::default();
    let mut text: Option<Zeroizing<String>> = None;
    let mut roots = 0usize;
    for _ in 0..MAX_XML_EVENTS {
        match reader
            .read_event()
            .map_err(|_| "STS's answer is not well-formed XML")?
        {
            Event::Start(start) => {
                if path.len() >= MAX_XML_DEPTH {
                    return Err("STS's XML is nested too deep");
                }
                if path.is_empty() {
                    roots += 1;
                    if roots > 1 {
                        return Err("STS's XML has more than one root");
                    }
                }
                if text.is_some() {
                    return Err("an STS credential field holds elements");
                }
                let name = std::str::from_utf8(start.local_name().as_ref())
                    .map_err(|_| "an STS element name is not UTF-8")?
                    .to_owned();
                path.push(name);
                if fields.slot(&path).is_some() {
                    text = Some(Zeroizing::new(String::new()));
                }
            }
            Event::End(_) => {
                if let Some(done) = text.take() {
                    let slot = fields.slot(&path).ok_or("STS's XML changed shape")?;
                    if slot.replace(done).is_some() {
                        return Err("an STS field appears twice");
                    }
                }
                path.pop();
            }
            Event::Text(part) => {
                let part = part.decode().map_err(|_| "STS's text is not UTF-8")?;
                append(&mut text, &part)?;
            }
            Event::CData(part) => {
                let part = part.decode().map_err(|_| "STS's CDATA is not UTF-8")?;
                append(&mut text, &part)?;
            }
            Event::GeneralRef(reference) => {
                let resolved = if reference.is_char_ref() {
                    reference
                        .resolve_char_ref()
                        .ok()
                        .flatten()
                        .ok_or("a bad character reference in STS's XML")?
                } else {
                    match reference
                        .decode()
                        .map_err(|_| "a bad entity in STS's XML")?
                        .as_ref()
                    {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        _ => return Err("an undeclared entity in STS's XML"),
                    }
                };
                append(&mut text, resolved.encode_utf8(&mut [0; 4]))?;
            }
            Event::DocType(_) => return Err("STS's XML has a DTD"),
            Event::Empty(_) | Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => {
                if !path.is_empty() || roots == 0 {
                    return Err("STS's XML is incomplete");
                }
                return Ok(fields);
            }
        }
    }
    Err("STS's XML has too many parts")
}

fn append(text: &mut Option<Zeroizing<String>>, part: &str) -> Result<(), &'static str> {
    if let Some(text) = text {
        if text.len() + part.len() > MAX_FIELD_BYTES {
            return Err("an STS field is longer than 8 KiB");
        }
        text.push_str(part);
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` as a time.
fn parse_iso8601(text: &str) -> Option<SystemTime> {
    // ASCII first: the byte offsets below are then character boundaries, and slicing STS's
    // text at them cannot panic (`0é` in the seconds would put one inside a character).
    if !text.is_ascii() {
        return None;
    }
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let fraction = text.get(19..text.len() - 1)?;
    if !(fraction.is_empty()
        || (fraction.len() >= 2
            && fraction.starts_with('.')
            && fraction.bytes().skip(1).all(|c| c.is_ascii_digit())))
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Hinnant's days_from_civil.
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + h * 3600 + mi * 60 + s).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn sts_answers_parse_strictly() {
        let ok = b"<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
            <AccessKeyId>ASIAEXAMPLE000000000</AccessKeyId><SecretAccessKey>s&amp;t</SecretAccessKey>\
            <SessionToken>tok</SessionToken><Expiration>2030-01-02T03:04:05.123Z</Expiration>\
            </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        let fields = read_sts_xml(ok).unwrap();
        assert_eq!(fields.secret_access_key.unwrap().as_str(), "s&t");
        assert_eq!(
            parse_iso8601(fields.expiration.unwrap().as_str()),
            Some(UNIX_EPOCH + Duration::from_secs(1_893_553_445))
        );
        let error = b"<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>";
        let fields = read_sts_xml(error).unwrap();
        assert_eq!(fields.code.unwrap().as_str(), "AccessDenied");
        for (xml, rule) in [
            (&b"<!DOCTYPE x><a/>"[..], "DTD"),
            (b"<a></a><b></b>", "more than one root"),
            (b"<a>", "incomplete"),
            (b"<a>&ent;</a>", "entity"),
        ] {
            let error = read_sts_xml(xml).err().unwrap();
            assert!(error.contains(rule), "{error}");
        }
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_XML_DEPTH + 1),
            "</a>".repeat(MAX_XML_DEPTH + 1)
        );
        let many = format!("<a>{}</a>", "<b/>".repeat(MAX_XML_EVENTS));
        let long_field = format!(
            "<ErrorResponse><Error><Message>{}</Message></Error></ErrorResponse>",
            "m".repeat(MAX_FIELD_BYTES + 1)
        );
        let twice = "<ErrorResponse><Error><Code>A</Code><Code>B</Code></Error></ErrorResponse>";
        for (xml, rule) in [
            (deep.as_str(), "nested too deep"),
            (many.as_str(), "too many parts"),
            (long_field.as_str(), "longer than 8 KiB"),
            (twice, "appears twice"),
        ] {
            let error = read_sts_xml(xml.as_bytes()).err().unwrap();
            assert!(error.contains(rule), "{error}");
        }
        assert_eq!(parse_iso8601("2030-01-02 03:04:05Z"), None);
        assert_eq!(parse_iso8601("2030-01-02T03:04:05"), None);
    }

    #[test]
    fn form_encoding_escapes_reserved_bytes() {
        let mut out = String::new();
        form_encode(&mut out, "a b/c=d&e~");
        assert_eq!(out, "a%20b%2Fc%3Dd%26e~");
    }

    #[test]
    fn non_ascii_expirations_are_refused_without_panicking() {
        for text in [
            "2030-01-02T03:04:0éZ",
            "2030-01-02T03:04:05.1éZ",
            "2030-01-02T03:04:05é",
            "2030-01-02T03:04:05.12345678901234567890Z\u{1F600}",
            "éééééééééééééééééééé",
        ] {
            assert_eq!(parse_iso8601(text), None, "{text}");
        }
        assert_eq!(
            parse_iso8601("2030-01-02T03:04:05Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_893_553_445))
        );
    }

    fn refusal(result: Result<Zeroizing<String>, CredentialError>) -> String {
        match result {
            Err(CredentialError::Refused(why)) => why,
            Err(other) => panic!("not a refusal: {other:?}"),
            Ok(_) => panic!("read"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn token_files_must_be_small_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "  header.payload.signature\n").unwrap();
        assert_eq!(
            read_token_file(&token).unwrap().as_str(),
            "header.payload.signature"
        );
        // Through a symlink, as the kubelet projects it.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&token, &link).unwrap();
        assert_eq!(
            read_token_file(&link).unwrap().as_str(),
            "header.payload.signature"
        );

        let why = refusal(read_token_file(dir.path()));
        assert!(why.contains("not a regular file"), "{why}");
        // A FIFO with no writer: opening it would block forever; refused before the open.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo failed");
        let why = refusal(read_token_file(&fifo));
        assert!(why.contains("not a regular file"), "{why}");
        // An endless device likewise.
        let why = refusal(read_token_file(Path::new("/dev/zero")));
        assert!(why.contains("not a regular file"), "{why}");

        std::fs::write(&token, "x".repeat(20_001)).unwrap();
        let why = refusal(read_token_file(&token));
        assert!(why.contains("longer than 20000"), "{why}");
        let why = refusal(read_token_file(&dir.path().join("missing")));
        assert!(why.contains("unreadable"), "{why}");
        std::fs::write(&token, " \n").unwrap();
        let why = refusal(read_token_file(&token));
        assert!(why.contains("empty"), "{why}");
    }
}
