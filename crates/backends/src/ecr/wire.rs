//! The bytes the ECR backend sends and reads: the STS Query API request, its XML answer (read
//! with `quick-xml`'s pull reader, strictly and boundedly), ECR's JSON 1.1 answer, and the
//! small formats around them (ISO 8601 times, the role session name).
//!
//! Shapes from the STS API reference (`AssumeRoleWithWebIdentity`, `Credentials`, the Query
//! API's `ErrorResponse`) and the ECR API reference (`GetAuthorizationToken`,
//! `AuthorizationData`), checked against botocore's `sts/2011-06-15/service-2.json`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quick_xml::Reader;
use quick_xml::events::Event;
use serde::Deserialize;
use svid_broker_identity::secret::{SecretString, seal_string};
use zeroize::Zeroizing;

use crate::error::Failure;
use crate::http::form_body;

/// The STS Query API version every request's `Version` names.
pub(crate) const STS_VERSION: &str = "2011-06-15";
/// ECR's JSON 1.1 content type.
pub(crate) const ECR_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// ECR's operation header value for `GetAuthorizationToken`.
pub(crate) const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
/// The STS form body's content type.
pub(crate) const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// Deepest XML nesting read (the success answer is 4 deep).
const MAX_XML_DEPTH: usize = 16;
/// Most XML events read from one answer: a bound on work whatever the body's size.
const MAX_XML_EVENTS: usize = 4096;
/// Longest access key id (STS: 16 to 128 word characters).
pub(crate) const MAX_ACCESS_KEY_ID_CHARS: usize = 128;
/// Longest secret access key or session token accepted, in bytes. STS says not to assume a
/// session token's size; packed session tags and policies make it a few KiB at most.
pub(crate) const MAX_SECRET_BYTES: usize = 16 * 1024;
/// Longest decoded ECR password accepted, in bytes (real ones are about 2 KiB).
pub(crate) const MAX_ECR_PASSWORD_BYTES: usize = 16 * 1024;

/// The `AssumeRoleWithWebIdentity` form body. The JWT is in it: the caller moves the bytes
/// into the request and never logs them.
pub(crate) fn assume_role_body(
    role_arn: &str,
    session_name: &str,
    jwt: &str,
    duration_secs: u64,
    policy: &str,
) -> Vec<u8> {
    let duration = duration_secs.to_string();
    form_body(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", STS_VERSION),
        ("RoleArn", role_arn),
        ("RoleSessionName", session_name),
        ("WebIdentityToken", jwt),
        ("DurationSeconds", &duration),
        ("Policy", policy),
    ])
}

/// The temporary credentials of an `AssumeRoleWithWebIdentity` answer. Not `Debug`.
pub(crate) struct StsCredentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: SecretString,
    pub(crate) session_token: SecretString,
    pub(crate) expiration: SystemTime,
}

/// An STS Query API error: `ErrorResponse/Error/{Code,Message}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct StsError {
    pub(crate) code: String,
    pub(crate) message: String,
}

/// The fields read from an STS answer, by their element path.
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
    /// The slot of the element at `path`, if it is one the backend reads.
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

/// Reads an STS XML answer's credentials and error fields. Strict: one root, no DTD, at
/// most [`MAX_XML_DEPTH`] deep and [`MAX_XML_EVENTS`] events, each field at most once, only
/// the five predefined entities and character references.
fn read_sts_xml(body: &[u8]) -> Result<StsFields, &'static str> {
    let mut reader = Reader::from_reader(body);
    let mut path: Vec<String> = Vec::new();
    let mut fields = StsFields::default();
    // The text of the element being read, when it is one of the fields.
    let mut text: Option<Zeroizing<String>> = None;
    let mut roots = 0usize;
    for _ in 0..MAX_XML_EVENTS {
        let event = reader.read_event().map_err(|_| "not well-formed XML")?;
        match event {
            Event::Start(start) => {
                if path.len() >= MAX_XML_DEPTH {
                    return Err("XML nested too deep");
                }
                if path.is_empty() {
                    roots += 1;
                    if roots > 1 {
                        return Err("more than one XML root element");
                    }
                }
                if text.is_some() {
                    return Err("a credential field holds elements");
                }
                let name = std::str::from_utf8(start.local_name().as_ref())
                    .map_err(|_| "an element name is not UTF-8")?
                    .to_owned();
                path.push(name);
                if fields.slot(&path).is_some() {
                    text = Some(Zeroizing::new(String::new()));
                }
            }
            Event::End(_) => {
                if let Some(done) = text.take() {
                    let slot = fields.slot(&path).ok_or("XML structure changed")?;
                    if slot.is_some() {
                        return Err("a field appears twice");
                    }
                    *slot = Some(done);
                }
                path.pop();
            }
            Event::Empty(_) => {
                if path.is_empty() {
                    return Err("an empty root element");
                }
            }
            Event::Text(part) => {
                let part = part.decode().map_err(|_| "text is not UTF-8")?;
                append(&mut text, &part)?;
            }
            Event::CData(part) => {
                let part = part.decode().map_err(|_| "CDATA is not UTF-8")?;
                append(&mut text, &part)?;
            }
            Event::GeneralRef(reference) => {
                let resolved = if reference.is_char_ref() {
                    reference
                        .resolve_char_ref()
                        .ok()
                        .flatten()
                        .ok_or("a bad character reference")?
                } else {
                    match reference.decode().map_err(|_| "a bad entity")?.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        _ => return Err("an undeclared entity"),
                    }
                };
                append(&mut text, resolved.encode_utf8(&mut [0; 4]))?;
            }
            // Documents from STS have no DTD: one here is a proxy's page or an attack.
            Event::DocType(_) => return Err("a DTD"),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => {
                if !path.is_empty() || roots == 0 {
                    return Err("the XML document is incomplete");
                }
                return Ok(fields);
            }
        }
    }
    Err("the XML document has too many parts")
}

/// Appends `part` to the field being read (text outside the fields is ignored), capped.
fn append(text: &mut Option<Zeroizing<String>>, part: &str) -> Result<(), &'static str> {
    if let Some(text) = text {
        if text.len() + part.len() > MAX_SECRET_BYTES {
            return Err("a field is too long");
        }
        text.push_str(part);
    }
    Ok(())
}

/// The credentials of a 2xx `AssumeRoleWithWebIdentity` answer.
///
/// # Errors
/// [`Failure::Malformed`]: not the documented XML, a field missing or breaking its rule (an
/// access key id of 16 to 128 word characters; a secret and a session token of printable
/// ASCII, at most [`MAX_SECRET_BYTES`]; an ISO 8601 UTC `Expiration`).
pub(crate) fn parse_credentials(body: &[u8]) -> Result<StsCredentials, Failure> {
    let malformed = |what| Failure::Malformed { what };
    let fields = read_sts_xml(body).map_err(|_| {
        malformed("AssumeRoleWithWebIdentity: the answer is not well-formed bounded XML")
    })?;
    let (Some(key), Some(secret), Some(token), Some(expiration)) = (
        fields.access_key_id,
        fields.secret_access_key,
        fields.session_token,
        fields.expiration,
    ) else {
        return Err(malformed(
            "AssumeRoleWithWebIdentity: Credentials lacks AccessKeyId, SecretAccessKey, SessionToken or Expiration",
        ));
    };
    let key = key.trim();
    if !(16..=MAX_ACCESS_KEY_ID_CHARS).contains(&key.len())
        || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(malformed(
            "AssumeRoleWithWebIdentity: AccessKeyId is not 16 to 128 word characters",
        ));
    }
    let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    let secret = Zeroizing::new(secret.trim().to_owned());
    let token = Zeroizing::new(token.trim().to_owned());
    if !printable(&secret) || !printable(&token) {
        return Err(malformed(
            "AssumeRoleWithWebIdentity: SecretAccessKey or SessionToken is empty or not printable ASCII",
        ));
    }
    let expiration = parse_iso8601(expiration.trim()).ok_or(malformed(
        "AssumeRoleWithWebIdentity: Expiration is not an ISO 8601 UTC time",
    ))?;
    Ok(StsCredentials {
        access_key_id: key.to_owned(),
        secret_access_key: seal_string(secret),
        session_token: seal_string(token),
        expiration,
    })
}

/// The `Code` and `Message` of an STS error answer; `None` when the body is not that shape
/// (a proxy's page).
pub(crate) fn parse_sts_error(body: &[u8]) -> Option<StsError> {
    let fields = read_sts_xml(body).ok()?;
    let code = fields.code?;
    Some(StsError {
        code: code.trim().to_owned(),
        message: fields
            .message
            .map(|m| m.trim().to_owned())
            .unwrap_or_default(),
    })
}

/// ECR's `GetAuthorizationToken` answer, only what the backend reads. Not `Debug`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthorizationAnswer {
    pub(crate) authorization_data: Vec<AuthorizationData>,
}

/// One `AuthorizationData`. `expiresAt` is a JSON number of seconds, possibly fractional.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthorizationData {
    pub(crate) authorization_token: String,
    pub(crate) expires_at: f64,
    #[serde(default)]
    pub(crate) proxy_endpoint: Option<String>,
}

/// A JSON 1.1 error body: `{"__type": "...", "message": "..."}` (some services spell it
/// `Message`).
#[derive(Debug, Deserialize)]
pub(crate) struct EcrErrorBody {
    #[serde(rename = "__type", default)]
    pub(crate) error_type: Option<String>,
    #[serde(default, alias = "Message")]
    pub(crate) message: Option<String>,
}

impl EcrErrorBody {
    /// `Type: message`, the type without a namespace prefix (`com.amazon...#Name`).
    pub(crate) fn text(&self) -> String {
        let kind = self
            .error_type
            .as_deref()
            .map(|t| t.rsplit('#').next().unwrap_or(t));
        match (kind, self.message.as_deref()) {
            (Some(kind), Some(message)) => format!("{kind}: {message}"),
            (Some(kind), None) => kind.to_owned(),
            (None, Some(message)) => message.to_owned(),
            (None, None) => String::new(),
        }
    }
}

/// `expiresAt` seconds as a time: `None` when negative, not finite or beyond the clock.
pub(crate) fn epoch_seconds(seconds: f64) -> Option<SystemTime> {
    if !seconds.is_finite() || !(0.0..=1e11).contains(&seconds) {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs_f64(seconds))
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` (what STS answers) as a time; `None` for anything else.
pub(crate) fn parse_iso8601(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes.len() > 40 || !text.is_ascii() {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = text.get(range)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if (bytes[4], bytes[7], bytes[10], bytes[13], bytes[16]) != (b'-', b'-', b'T', b':', b':') {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let rest = &text[19..];
    let fraction = match rest.strip_suffix('Z')? {
        "" => 0.0,
        digits => {
            let digits = digits.strip_prefix('.')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            format!("0.{digits}").parse::<f64>().ok()?
        }
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    let whole = days * 86_400 + hour * 3600 + minute * 60 + second;
    UNIX_EPOCH.checked_add(Duration::from_secs(whole) + Duration::from_secs_f64(fraction))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm);
/// `None` before 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let year = i64::try_from(year).ok()? - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::try_from(month).ok()?;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::try_from(day).ok()? - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    u64::try_from(era * 146_097 + day_of_era - 719_468).ok()
}

/// The role session name for `subject`: `svid-` and 24 hex digits of a keyed SHA-256 of the
/// subject (STS: 2 to 64 characters of `[\w+=,.@-]`). The same workload always gets the same
/// name, so CloudTrail's sessions can be traced back to it (the broker logs the pair).
pub(crate) fn role_session_name(subject: &str) -> String {
    let digest = aws_sigv4::sign::v4::calculate_signature(
        b"svid-broker role session name",
        subject.as_bytes(),
    );
    format!("svid-{}", &digest[..24])
}
