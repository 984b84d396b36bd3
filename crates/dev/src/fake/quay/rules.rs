//! The fake's decisions, each as Quay makes it (quay/quay at ffba0c70): robots and their
//! federation entries and permissions, the Basic header, the unverified `iss`, the matching
//! entries, what a verifier rejection becomes, `aud` and `sub`, and the robot tokens handed
//! out. No I/O here: `http.rs` runs the verifier between these steps.

use std::collections::{BTreeMap, HashMap, VecDeque};

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::{FederationEntry, QuayRole};
use crate::fake::federation::{JwtRejection, VerifiedJwt};

/// Most robots held. The fake's bound.
pub(super) const MAX_ROBOTS: usize = 10_000;
/// Most live tokens held; past it the oldest is forgotten. The fake's bound.
pub(super) const MAX_TOKENS: usize = 100_000;
/// Most federation entries per robot. The fake's bound.
pub(super) const MAX_ENTRIES: usize = 100;
/// Most repository permissions per robot. The fake's bound.
pub(super) const MAX_PERMISSIONS: usize = 1_000;
/// Longest text of a refusal kept from a rejection, in characters.
const MAX_REASON_CHARS: usize = 300;

/// A refusal: the status and Quay's text (`http.rs` words it by status: 401 `{"error"}`,
/// 400 `{"message"}`, 500 Flask's HTML page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) message: String,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// The view's own 401 `{"error": ...}` (`robot_identity_federation.py`).
    fn header(message: &str) -> Self {
        Self::new(401, message)
    }

    /// A `DataModelException`: 400 `{"message": ...}` (`endpoints/decorated.py` `handle_dme`).
    fn data_model(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// An exception nothing catches: Flask's 500.
    fn unhandled(what: impl Into<String>) -> Self {
        Self::new(500, what)
    }
}

/// One robot.
#[derive(Debug, Default)]
struct Robot {
    federation: Vec<FederationEntry>,
    repositories: BTreeMap<String, QuayRole>,
}

/// A robot token handed out: whose, and until when (unix seconds).
#[derive(Debug)]
struct Issued {
    robot: String,
    expires_at: i64,
}

/// Every robot and live token.
#[derive(Debug, Default)]
pub(super) struct State {
    robots: BTreeMap<String, Robot>,
    // Keyed by the token's SHA-256: the fake keeps no token it could leak.
    tokens: HashMap<[u8; 32], Issued>,
    order: VecDeque<[u8; 32]>,
}

/// What the entries naming the token's issuer accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Matched {
    pub(super) subjects: Vec<String>,
    /// The audiences of the last matching entry that lists any (Quay keeps the last).
    pub(super) audiences: Vec<String>,
}

impl State {
    pub(super) fn add_robot(&mut self, org: &str, short: &str) -> Result<(), Refusal> {
        for (what, name) in [("organization", org), ("robot", short)] {
            if !valid_name(name) {
                return Err(Refusal::new(
                    400,
                    format!(
                        "The name for the {what} '{name}' is invalid: must match ^([a-z0-9]+(?:[._-][a-z0-9]+)*)$, 2 to 255 characters"
                    ),
                ));
            }
        }
        let full = format!("{org}+{short}");
        if self.robots.contains_key(&full) {
            return Err(Refusal::new(
                400,
                format!("Existing robot with name: {full}"),
            ));
        }
        if self.robots.len() >= MAX_ROBOTS {
            return Err(Refusal::new(500, "the fake holds too many robots"));
        }
        self.robots.insert(full, Robot::default());
        Ok(())
    }

    pub(super) fn delete_robot(&mut self, org: &str, short: &str) -> Result<(), Refusal> {
        let full = format!("{org}+{short}");
        self.robots
            .remove(&full)
            .map(|_| ())
            .ok_or_else(|| unknown_robot(&full))
    }

    /// Quay's `_parse_federation_config` (`endpoints/api/robot.py`): both fields present and
    /// not empty, the issuer an `http://` or `https://` URL, no duplicate pair.
    pub(super) fn set_federation(
        &mut self,
        org: &str,
        short: &str,
        entries: Vec<FederationEntry>,
    ) -> Result<(), Refusal> {
        let full = format!("{org}+{short}");
        let robot = self
            .robots
            .get_mut(&full)
            .ok_or_else(|| unknown_robot(&full))?;
        if entries.len() > MAX_ENTRIES {
            return Err(Refusal::new(400, "too many federation entries"));
        }
        let mut seen = Vec::with_capacity(entries.len());
        for entry in &entries {
            if entry.issuer.is_empty() || entry.subject.is_empty() {
                return Err(Refusal::new(
                    400,
                    "Missing one or more required fields (issuer, subject)",
                ));
            }
            if !(entry.issuer.starts_with("http://") || entry.issuer.starts_with("https://")) {
                return Err(Refusal::new(
                    400,
                    "Issuer must be a URL (http:// or https://)",
                ));
            }
            let pair = (&entry.issuer, &entry.subject);
            if seen.contains(&pair) {
                return Err(Refusal::new(400, "Duplicate federation config entry"));
            }
            seen.push(pair);
        }
        robot.federation = entries;
        Ok(())
    }

    pub(super) fn grant_repository(
        &mut self,
        org: &str,
        short: &str,
        repository: &str,
        role: QuayRole,
    ) -> Result<(), Refusal> {
        let full = format!("{org}+{short}");
        let robot = self
            .robots
            .get_mut(&full)
            .ok_or_else(|| unknown_robot(&full))?;
        let in_org = repository
            .split_once('/')
            .is_some_and(|(owner, name)| owner == org && !name.is_empty());
        if !in_org {
            return Err(Refusal::new(
                400,
                format!("repository {repository:?} is not in organization {org:?}"),
            ));
        }
        if robot.repositories.len() >= MAX_PERMISSIONS {
            return Err(Refusal::new(400, "too many repository permissions"));
        }
        robot.repositories.insert(repository.to_owned(), role);
        Ok(())
    }

    pub(super) fn role_of(&self, org: &str, short: &str, repository: &str) -> Option<QuayRole> {
        self.robots
            .get(&format!("{org}+{short}"))?
            .repositories
            .get(repository)
            .copied()
    }

    /// The federation entries of robot `username` (`lookup_robot`, `data/model/user.py`):
    /// a name that is not ASCII or not a robot's is 400 "Could not find robot with specified
    /// username".
    pub(super) fn federation_of(&self, username: &str) -> Result<Vec<FederationEntry>, Refusal> {
        if !username.is_ascii() {
            return Err(no_such_robot());
        }
        self.robots
            .get(username)
            .map(|robot| robot.federation.clone())
            .ok_or_else(no_such_robot)
    }

    /// Keeps `token` for `robot` until `expires_at`, forgetting the oldest past
    /// [`MAX_TOKENS`].
    pub(super) fn issue(&mut self, robot: &str, token: &str, expires_at: i64) {
        while self.order.len() >= MAX_TOKENS {
            if let Some(oldest) = self.order.pop_front() {
                self.tokens.remove(&oldest);
            }
        }
        let key = digest_of(token);
        self.order.push_back(key);
        self.tokens.insert(
            key,
            Issued {
                robot: robot.to_owned(),
                expires_at,
            },
        );
    }

    /// True when `token` was issued to `username`, the robot still exists, and `now` is
    /// before its expiry (Quay's `verify_robot` of a temporary token: its JWT `exp`).
    pub(super) fn token_works(&self, username: &str, token: &str, now: i64) -> bool {
        self.robots.contains_key(username)
            && self
                .tokens
                .get(&digest_of(token))
                .is_some_and(|issued| issued.robot == username && now < issued.expires_at)
    }
}

/// The actions `role` allows of `requested` (`_authorize_or_downscope_request`, in Quay's
/// order: `push`, then `pull`, then `*`).
pub(super) fn allowed_actions(role: Option<QuayRole>, requested: &[&str]) -> Vec<String> {
    let Some(role) = role else {
        return Vec::new();
    };
    let mut actions = Vec::new();
    for (action, allowed) in [
        ("push", role >= QuayRole::Write),
        ("pull", true),
        ("*", role == QuayRole::Admin),
    ] {
        if allowed && requested.contains(&action) {
            actions.push(action.to_owned());
        }
    }
    actions
}

impl State {
    /// The role of robot `username` (`<org>+<short>`) on `repository`.
    pub(super) fn role_of_robot(&self, username: &str, repository: &str) -> Option<QuayRole> {
        self.robots
            .get(username)?
            .repositories
            .get(repository)
            .copied()
    }
}

/// The Basic header as `validate_federated_auth` reads it (`auth/basic.py`
/// `_parse_basic_auth_header`, then `parse_robot_username`): the robot's full name and the
/// JWT.
pub(super) fn parse_federated_basic(
    header: Option<&str>,
) -> Result<(String, Zeroizing<String>), Refusal> {
    let header = header.unwrap_or("");
    if header.is_empty() {
        return Err(Refusal::header("No auth header"));
    }
    let parts: Vec<&str> = header.split(' ').filter(|p| !p.is_empty()).collect();
    let [scheme, encoded] = parts.as_slice() else {
        return Err(Refusal::header("Invalid basic auth header"));
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Refusal::header("Invalid basic auth header"));
    }
    let decoded = Zeroizing::new(
        STANDARD
            .decode(encoded.trim())
            .map_err(|_| Refusal::header("Could not parse basic auth header"))?,
    );
    let text = std::str::from_utf8(&decoded)
        .map_err(|_| Refusal::header("Could not parse basic auth header"))?;
    let Some((user, password)) = text.split_once(':') else {
        return Err(Refusal::header(
            "Unexpected number of credentials found in basic auth header",
        ));
    };
    if !user.contains('+') {
        return Err(Refusal::header("Invalid robot"));
    }
    Ok((user.to_owned(), Zeroizing::new(password.to_owned())))
}

/// The token's `iss`, read without verifying anything (`oauth/login_utils.py`
/// `get_jwt_issuer`: PyJWT's unverified decode). Not a JWT (three parts, a base64url JSON
/// header and payload) is PyJWT's `DecodeError`, which Quay does not catch here: 500. `None`
/// when there is no string `iss`.
pub(super) fn unverified_issuer(token: &str) -> Result<Option<String>, Refusal> {
    let not_a_jwt = || Refusal::unhandled("jwt.exceptions.DecodeError");
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(not_a_jwt());
    };
    let object = |part: &str| -> Option<Map<String, Value>> {
        let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    object(header).ok_or_else(not_a_jwt)?;
    let claims = object(payload).ok_or_else(not_a_jwt)?;
    Ok(claims
        .get("iss")
        .and_then(Value::as_str)
        .filter(|iss| !iss.is_empty())
        .map(str::to_owned))
}

/// The entries naming `issuer` (`verify_federated_robot_jwt_token`): no `iss` is 400 "Token
/// does not contain issuer", no entries at all 400 "Robot does not have federated login
/// configured", none for this issuer 400 "issuer `<iss>` not configured for this robot".
pub(super) fn matching(
    entries: &[FederationEntry],
    issuer: Option<&str>,
) -> Result<Matched, Refusal> {
    let Some(issuer) = issuer else {
        return Err(Refusal::data_model("Token does not contain issuer"));
    };
    if entries.is_empty() {
        return Err(Refusal::data_model(
            "Robot does not have federated login configured",
        ));
    }
    let mut matched = Matched {
        subjects: Vec::new(),
        audiences: Vec::new(),
    };
    for entry in entries.iter().filter(|e| e.issuer == issuer) {
        matched.subjects.push(entry.subject.clone());
        if !entry.audiences.is_empty() {
            matched.audiences.clone_from(&entry.audiences);
        }
    }
    if matched.subjects.is_empty() {
        return Err(Refusal::data_model(format!(
            "issuer {} not configured for this robot",
            cut(issuer)
        )));
    }
    Ok(matched)
}

/// What Quay answers for a token its `OIDCLoginService.decode_user_jwt` refuses: the key
/// could not be loaded (discovery or JWKS unreachable, no key with the `kid`: exceptions that
/// are not `InvalidTokenError`, so unhandled: 500), else 400 "Invalid token: ...".
pub(super) fn rejection(rejected: &JwtRejection) -> Refusal {
    match rejected {
        JwtRejection::Discovery { .. }
        | JwtRejection::UnknownKid { .. }
        | JwtRejection::UnusableKey { .. } => Refusal::unhandled(format!(
            "oauth.oidc.PublicKeyLoadException: {}",
            cut(&rejected.to_string())
        )),
        JwtRejection::MissingClaim { name: "kid" } => {
            Refusal::data_model("Invalid token: Missing `kid` header")
        }
        other => Refusal::data_model(format!("Invalid token: {}", cut(&other.to_string()))),
    }
}

/// `aud` (only when an entry lists audiences; PyJWT: any of the token's in the accepted
/// list), then `sub` among the entries' subjects exactly.
pub(super) fn check_claims(matched: &Matched, verified: &VerifiedJwt) -> Result<(), Refusal> {
    if !matched.audiences.is_empty()
        && !verified
            .audiences
            .iter()
            .any(|aud| matched.audiences.contains(aud))
    {
        return Err(Refusal::data_model("Invalid token: Audience doesn't match"));
    }
    if !matched.subjects.contains(&verified.subject) {
        return Err(Refusal::data_model("Token does not match robot"));
    }
    Ok(())
}

/// The admin API's 404 for a robot that does not exist.
fn unknown_robot(full: &str) -> Refusal {
    Refusal::new(404, format!("Could not find robot {full}"))
}

fn no_such_robot() -> Refusal {
    Refusal::data_model("Could not find robot with specified username")
}

/// Quay's `VALID_USERNAME_REGEX` and length bounds (`util/validation.py`), for
/// organizations and robot short names alike.
fn valid_name(name: &str) -> bool {
    if !(2..=255).contains(&name.len()) {
        return false;
    }
    let mut previous_was_separator = true;
    for byte in name.bytes() {
        let separator = matches!(byte, b'.' | b'_' | b'-');
        if separator && previous_was_separator {
            return false;
        }
        if !separator && !byte.is_ascii_lowercase() && !byte.is_ascii_digit() {
            return false;
        }
        previous_was_separator = separator;
    }
    !previous_was_separator
}

fn digest_of(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}

fn cut(text: &str) -> String {
    text.chars().take(MAX_REASON_CHARS).collect()
}
