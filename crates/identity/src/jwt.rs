//! JWT-SVID validation (JWT-SVID spec §2–§3, Workload API §6.3).
//!
//! [`JwtSvidValidator::validate`] checks, in this order:
//!
//! 1. size: the token is at most [`JwtSvidValidator::max_token_len`] bytes;
//! 2. form: JWS Compact only, exactly three base64url segments without padding (a token starting
//!    with `{` is reported as JWS JSON serialization);
//! 3. header: a JSON object with no duplicate members and no members other than `alg`, `kid`
//!    and `typ` (`crit`, `jku`, `jwk`, `x5u`, `x5c`, `b64`, ... are rejected by name); `typ`, if
//!    present, is `JWT` or `JOSE` (case-sensitive, as every peer does);
//! 4. `alg`: one of the nine JWT-SVID algorithms ([`JwsAlgorithm`]); `none`, `HS*`, `EdDSA` and
//!    anything else are rejected here, before any key is looked up;
//! 5. `kid`: present and non-empty (`""` counts as absent), unless
//!    [`KidMode::TryTrustDomainKeys`] is chosen;
//! 6. claims: a JSON object without duplicate members; `sub`, `aud` and `exp` present with the
//!    right types; `aud` a string or a non-empty array of strings, at most
//!    [`JwtSvidValidator::max_audiences`]; `exp`, `nbf`, `iat` integers; every other member's
//!    value representable as a JSON value (numbers within `f64` range, valid Unicode strings,
//!    nesting at most [`MAX_CLAIM_NESTING`] deep), so [`JwtSvidClaims::claims_map`] cannot fail;
//! 7. `sub` is a SPIFFE ID (strict parse) whose trust domain has a bundle in the given
//!    [`BundleSet`]; only that trust domain's JWT authorities are used from here on;
//! 8. key: the authority named by `kid`, whose key type and curve fit `alg` (ES256↔P-256,
//!    ES384↔P-384, ES512↔P-521, RS*/PS*↔RSA ≥ 2048 bits) and whose declared JWK `alg`, if any,
//!    equals the token's;
//! 9. signature;
//! 10. time: `exp`, then `nbf`, then `iat`, all against the one `now` argument, and each within
//!     [`MIN_NUMERIC_DATE`]..=[`MAX_NUMERIC_DATE`];
//! 11. audience: at least one `aud` value is in the validator's expected set (any-of, the
//!     spec's rule), or, with [`AudienceMatch::Single`], `aud` is exactly one value and it is
//!     expected.
//!
//! # Why time and audience come after the signature
//!
//! Until the signature is verified every claim is attacker-chosen, so unverified claims are used
//! for one thing only: `sub`'s trust domain picks the bundle (the spec requires that). Checking
//! `exp` or `aud` first would save a verification only for tokens an attacker could as easily have
//! made unexpired, so it buys no protection against load; checking them after means a failure
//! report about time or audience always describes a token our authority really signed, and errors
//! raised before the signature never carry claim values.
//!
//! # Time semantics
//!
//! NumericDates are whole seconds; a non-integer `exp`, `nbf` or `iat` is rejected. `now` is
//! truncated to whole seconds. With `leeway` L (default [`DEFAULT_LEEWAY`], at most
//! [`MAX_LEEWAY`]): the token is expired when `exp <= now - L` (so with L = 0, `exp == now` is
//! expired), not yet valid when `nbf > now + L`, and issued in the future when `iat > now + L`.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeSeed as _;

use crate::bundle::{BundleSet, JwtAuthority, JwtBundle, VerifyFailure};
use crate::id::{IdError, SpiffeId};
use crate::secret::{ExposeSecret, SecretString};

mod parse;
#[cfg(test)]
mod tests;

use parse::{Audience, Problem};

/// Default cap on the token length, in bytes.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 16 * 1024;
/// Highest value [`JwtSvidValidator::with_max_token_len`] accepts.
pub const MAX_TOKEN_LEN_LIMIT: usize = 64 * 1024;
/// Default cap on the number of `aud` values.
pub const DEFAULT_MAX_AUDIENCES: usize = crate::limits::MAX_JWT_AUDIENCES;
/// Highest value [`JwtSvidValidator::with_max_audiences`] accepts.
pub const MAX_AUDIENCES_LIMIT: usize = 1024;
/// Default clock leeway.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Highest leeway [`JwtSvidValidator::with_leeway`] accepts.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// Default cap on the keys tried for a token without `kid` in [`KidMode::TryTrustDomainKeys`].
pub const DEFAULT_MAX_KIDLESS_CANDIDATES: usize = 8;
/// Highest value [`JwtSvidValidator::with_max_kidless_candidates`] accepts.
pub const MAX_KIDLESS_CANDIDATES_LIMIT: usize = 64;
/// Cap on the number of members of the claims object.
pub const MAX_CLAIMS_MEMBERS: usize = 256;
/// Longest signature accepted, in bytes (an RSA-8192 signature).
pub const MAX_SIGNATURE_LEN: usize = 1024;
/// Deepest nesting of arrays and objects allowed inside one claim's value (well below
/// serde_json's own recursion limit of 128, so [`JwtSvidClaims::claims_map`] can always parse
/// what validation accepted).
pub const MAX_CLAIM_NESTING: usize = 64;
/// Latest NumericDate accepted for `exp`, `nbf` and `iat`: 9999-12-31T23:59:59Z. Later values
/// would give [`SystemTime`]s close to the platform maximum, where callers' arithmetic overflows.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;
/// Earliest NumericDate accepted: 0001-01-01T00:00:00Z (the mirror of [`MAX_NUMERIC_DATE`]).
pub const MIN_NUMERIC_DATE: i64 = -62_135_596_800;

/// A JWS algorithm allowed for JWT-SVIDs (JWT-SVID §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum JwsAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// ECDSA on P-521 with SHA-512.
    Es512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
}

impl JwsAlgorithm {
    /// All nine algorithms.
    pub const ALL: [Self; 9] = [
        Self::Rs256,
        Self::Rs384,
        Self::Rs512,
        Self::Es256,
        Self::Es384,
        Self::Es512,
        Self::Ps256,
        Self::Ps384,
        Self::Ps512,
    ];

    /// The JOSE name (`RS256`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
        }
    }

    /// Parses a JOSE name; case-sensitive, as JOSE names are.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.as_str() == name)
    }

    /// Whether this is an RSA algorithm (RS* or PS*).
    pub fn is_rsa(self) -> bool {
        !self.is_ec()
    }

    /// Whether this is an ECDSA algorithm (ES*).
    pub fn is_ec(self) -> bool {
        matches!(self, Self::Es256 | Self::Es384 | Self::Es512)
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JwsAlgorithm {
    type Err = JwtSvidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or(JwtSvidError::UnsupportedAlgorithm {
            kind: RejectedAlgorithm::classify(s),
        })
    }
}

/// The family of a rejected `alg` value (the value itself is attacker-chosen and not reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectedAlgorithm {
    /// `none`: an unsecured JWS.
    None,
    /// `HS256`/`HS384`/`HS512`: a shared-secret MAC, never valid for an SVID.
    Hmac,
    /// `EdDSA`: not in the JWT-SVID set.
    EdDsa,
    /// Anything else.
    Other,
}

impl RejectedAlgorithm {
    fn classify(alg: &str) -> Self {
        match alg {
            "none" => Self::None,
            "EdDSA" => Self::EdDsa,
            _ if alg.starts_with("HS") => Self::Hmac,
            _ => Self::Other,
        }
    }
}

impl fmt::Display for RejectedAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Hmac => "an hmac algorithm",
            Self::EdDsa => "EdDSA",
            Self::Other => "an unknown algorithm",
        })
    }
}

/// Why a claim value is syntactically valid JSON but still unacceptable: a JSON value model
/// (`serde_json::Value`, as [`JwtSvidClaims::claims_map`] builds) could not hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimValueProblem {
    /// Arrays or objects nested deeper than the cap.
    TooDeep {
        /// The cap ([`MAX_CLAIM_NESTING`]).
        max: usize,
    },
    /// A number outside the range of a 64-bit float (for example `1e400`).
    NumberOutOfRange,
    /// A string with a lone UTF-16 surrogate escape (for example `"\ud800"`) or invalid UTF-8.
    InvalidString,
}

impl fmt::Display for ClaimValueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooDeep { max } => write!(f, "a value nested deeper than {max} levels"),
            Self::NumberOutOfRange => f.write_str("a number out of range"),
            Self::InvalidString => f.write_str("a string that is not valid unicode"),
        }
    }
}

/// How the validator picks the JWT authority whose key checks the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KidMode {
    /// The header must carry `kid`, and the authority with that `kid` is used (what SPIRE and
    /// every peer library do).
    #[default]
    Required,
    /// A token with `kid` is handled as in `Required`; a token without `kid` is tried against
    /// each JWT authority of the subject's trust domain that fits `alg`, up to
    /// [`JwtSvidValidator::with_max_kidless_candidates`] keys (the spec makes `kid` optional; some
    /// non-SPIRE issuers omit it).
    TryTrustDomainKeys,
}

/// How `aud` is matched against the expected set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AudienceMatch {
    /// At least one `aud` value is expected (JWT-SVID spec §3.2: what SPIRE and every peer
    /// library do).
    #[default]
    AnyOf,
    /// `aud` holds exactly one value and it is expected. A token minted for several relying
    /// parties can be replayed by any of them to the others; this refuses such tokens.
    Single,
}

/// Which of a compact JWS's three `.`-separated segments an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenPart {
    /// The first segment: the JOSE header.
    Header,
    /// The second segment: the claims set (payload).
    Claims,
    /// The third segment: the signature.
    Signature,
}

impl fmt::Display for TokenPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Header => "header",
            Self::Claims => "claims",
            Self::Signature => "signature",
        })
    }
}

/// Why a validator could not be built or a JWT-SVID was rejected.
///
/// Errors raised before the signature is verified carry no claim values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtSvidError {
    /// The validator was built with no expected audience (that would accept any audience).
    #[error("the expected audience set is empty")]
    NoExpectedAudience,
    /// An expected audience is the empty string.
    #[error("expected audience {index} is empty")]
    EmptyExpectedAudience {
        /// Position in the list given.
        index: usize,
    },
    /// A leeway that is over [`MAX_LEEWAY`] or not a whole number of seconds.
    #[error("leeway must be whole seconds and at most {max_secs} s")]
    InvalidLeeway {
        /// Whole seconds of [`MAX_LEEWAY`], the highest leeway accepted.
        max_secs: u64,
    },
    /// A validator limit outside its allowed range.
    #[error("option {option} must be between 1 and {max}, got {value}")]
    InvalidLimit {
        /// The builder option: `max_token_len`, `max_audiences` or `max_kidless_candidates`.
        option: &'static str,
        /// The value passed: 0, or above `max`.
        value: usize,
        /// The option's `MAX_*_LIMIT` constant (the lowest allowed value is 1).
        max: usize,
    },
    /// The token is longer than the cap.
    #[error("token is {len} bytes, the maximum is {max}")]
    TokenTooLarge {
        /// The token's length in bytes, measured before anything is decoded.
        len: usize,
        /// The cap in force, in bytes: the validator's `max_token_len`, or for
        /// [`verify_compact_jws`] the caller's cap cut to [`MAX_TOKEN_LEN_LIMIT`].
        max: usize,
    },
    /// The token uses JWS JSON serialization, which JWT-SVIDs must not use (§1).
    #[error("token uses jws json serialization; only compact serialization is allowed")]
    JsonSerialization,
    /// The token does not have exactly three `.`-separated segments.
    #[error("token has {segments} segments, a compact jws has 3")]
    SegmentCount {
        /// Number of segments found.
        segments: usize,
    },
    /// A segment is not unpadded base64url.
    #[error("token {part} is not unpadded base64url")]
    Base64 {
        /// Which of the three JWS segments (header, claims or signature).
        part: TokenPart,
    },
    /// A segment is not a JSON object.
    #[error("token {part} is not a json object (column {column})")]
    MalformedJson {
        /// Which of the three JWS segments (header, claims or signature).
        part: TokenPart,
        /// serde_json's column (1-based) in the segment's decoded JSON.
        column: usize,
    },
    /// A JSON member occurs twice.
    #[error("token {part} has a duplicate member{}", member.map(|m| format!(" {m:?}")).unwrap_or_default())]
    DuplicateMember {
        /// Which of the three JWS segments (header, claims or signature).
        part: TokenPart,
        /// The member, when it is one the validator reads.
        member: Option<&'static str>,
    },
    /// The header has a member other than `alg`, `kid` and `typ` (JWT-SVID §2).
    #[error("header member {member:?} is not allowed in a jwt-svid")]
    HeaderMemberNotAllowed {
        /// The member name (at most 64 characters).
        member: String,
    },
    /// A member has the wrong JSON type.
    #[error("token {part} member {member:?} has the wrong type")]
    WrongType {
        /// Which of the three JWS segments (header, claims or signature).
        part: TokenPart,
        /// `alg`, `kid` or `typ` in the header; `sub`, `aud`, `exp`, `nbf` or `iat` in the claims.
        member: &'static str,
    },
    /// The header has no `alg`.
    #[error("header has no alg")]
    MissingAlg,
    /// `alg` is not one of the nine JWT-SVID algorithms (§2.1).
    #[error("alg is {kind}, which is not allowed for a jwt-svid")]
    UnsupportedAlgorithm {
        /// What kind of algorithm it was.
        kind: RejectedAlgorithm,
    },
    /// `typ` is present but not `JWT` or `JOSE` (§2.3).
    #[error("typ must be \"JWT\" or \"JOSE\"")]
    InvalidTyp,
    /// The header has no `kid`, or an empty one, and [`KidMode::Required`] is in force.
    #[error("header has no kid")]
    MissingKid,
    /// A required claim is missing.
    #[error("claim {claim:?} is missing")]
    MissingClaim {
        /// The claim: `sub`, `aud` or `exp`.
        claim: &'static str,
    },
    /// A claim value is valid JSON syntax but not representable as a JSON value (the claims
    /// could not be returned by [`JwtSvidClaims::claims_map`]).
    #[error("token claims hold {problem} (column {column})")]
    InvalidClaimValue {
        /// What is wrong with the value.
        problem: ClaimValueProblem,
        /// Column of the problem in the decoded claims JSON.
        column: usize,
    },
    /// The claims object has more than [`MAX_CLAIMS_MEMBERS`] members.
    #[error("claims have more than {max} members")]
    TooManyClaims {
        /// The fixed cap, [`MAX_CLAIMS_MEMBERS`].
        max: usize,
    },
    /// `aud` is an empty array (§3.2 requires one or more values).
    #[error("aud is empty")]
    EmptyAudience,
    /// `aud` has more values than the cap.
    #[error("aud has more than {max} values")]
    TooManyAudiences {
        /// The validator's `max_audiences` (default [`DEFAULT_MAX_AUDIENCES`]).
        max: usize,
    },
    /// `sub` is not a SPIFFE ID.
    #[error("sub is not a spiffe id")]
    InvalidSubject {
        /// Why `sub` does not parse: the rule, an offset, at most the one offending byte.
        #[source]
        source: IdError,
    },
    /// There is no bundle for the subject's trust domain, so the token is untrusted.
    #[error("no bundle for the subject's trust domain")]
    NoBundle,
    /// No JWT authority of the subject's trust domain has the token's `kid`.
    #[error("no jwt authority of the subject's trust domain has the token's kid")]
    UnknownKid,
    /// The authority's key type, curve or declared `alg` does not fit the token's `alg`.
    #[error("the jwt authority's key cannot be used with {alg}")]
    AlgorithmKeyMismatch {
        /// The header's `alg`, one of the JWT-SVID algorithms.
        alg: JwsAlgorithm,
    },
    /// Without `kid`: no authority of the trust domain fits `alg`.
    #[error("no jwt authority of the subject's trust domain fits {alg}")]
    NoCandidateKey {
        /// The header's `alg`, one of the JWT-SVID algorithms.
        alg: JwsAlgorithm,
    },
    /// Without `kid`: more authorities fit `alg` than the validator may try.
    #[error("{count} jwt authorities fit the token, the validator tries at most {max}")]
    TooManyCandidateKeys {
        /// Authorities of the subject's trust domain whose key fits `alg`.
        count: usize,
        /// The validator's `max_kidless_candidates` (default [`DEFAULT_MAX_KIDLESS_CANDIDATES`]).
        max: usize,
    },
    /// The signature does not verify.
    #[error("signature does not verify")]
    InvalidSignature,
    /// `now` is before 1970.
    #[error("the current time is before the unix epoch")]
    ClockBeforeEpoch,
    /// The token has expired: `exp <= now - leeway`.
    #[error("token expired at {exp} (now {now}, leeway {leeway_secs} s)")]
    Expired {
        /// `exp`, seconds since the epoch.
        exp: i64,
        /// `now`, seconds since the epoch.
        now: i64,
        /// The validator's clock leeway, in seconds, that was allowed and still not enough.
        leeway_secs: u64,
    },
    /// The token is not valid yet: `nbf > now + leeway`.
    #[error("token is not valid before {nbf} (now {now}, leeway {leeway_secs} s)")]
    NotYetValid {
        /// `nbf`, seconds since the epoch.
        nbf: i64,
        /// `now`, seconds since the epoch.
        now: i64,
        /// The validator's clock leeway, in seconds, that was allowed and still not enough.
        leeway_secs: u64,
    },
    /// The token was issued in the future: `iat > now + leeway`.
    #[error("token issued in the future at {iat} (now {now}, leeway {leeway_secs} s)")]
    IssuedInFuture {
        /// `iat`, seconds since the epoch.
        iat: i64,
        /// `now`, seconds since the epoch.
        now: i64,
        /// The validator's clock leeway, in seconds, that was allowed and still not enough.
        leeway_secs: u64,
    },
    /// A NumericDate is outside [`MIN_NUMERIC_DATE`]..=[`MAX_NUMERIC_DATE`] (years 1 to 9999).
    #[error("claim {claim:?} is out of range")]
    TimeOutOfRange {
        /// `exp`, `nbf` or `iat`.
        claim: &'static str,
    },
    /// None of the token's audiences is expected.
    #[error("none of the token's audiences is expected")]
    AudienceMismatch,
    /// [`AudienceMatch::Single`]: `aud` has more than one value.
    #[error("aud has {count} values; exactly one (this relying party's audience) is required")]
    AudienceNotSingle {
        /// Values in `aud`: two or more.
        count: usize,
    },
}

/// The verified content of a JWT-SVID.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwtSvidClaims {
    /// `sub`, parsed as a SPIFFE ID; its trust domain's bundle verified the signature.
    pub spiffe_id: SpiffeId,
    /// `aud`, as a list even when the token had a single string.
    pub audiences: Vec<String>,
    /// `exp`, later than the validation time minus the leeway.
    pub expires_at: SystemTime,
    /// `iat`, when present.
    pub issued_at: Option<SystemTime>,
    /// `nbf`, when present.
    pub not_before: Option<SystemTime>,
    /// The `kid` of the authority that verified the signature (the header's `kid`, or in
    /// [`KidMode::TryTrustDomainKeys`] the key that matched).
    pub kid: String,
    /// The header's `alg`, which the verifying authority's key fits.
    pub alg: JwsAlgorithm,
    claims_json: Box<[u8]>,
}

impl JwtSvidClaims {
    /// The claims set as JSON bytes, exactly as signed.
    pub fn claims_json(&self) -> &[u8] {
        &self.claims_json
    }

    /// All claims as a JSON map (for `ValidateJWTSVID` responses). Parsed on demand so that
    /// validation itself never builds a `serde_json::Value`.
    ///
    /// # Errors
    /// Never for a validated token: validation walked every member, known or not, through the
    /// same serde_json parser and rejected what a `Value` cannot hold (numbers out of `f64`
    /// range, lone surrogates, invalid UTF-8, nesting deeper than [`MAX_CLAIM_NESTING`]; see
    /// [`JwtSvidError::InvalidClaimValue`]). The `Result` is kept rather than a panic.
    pub fn claims_map(
        &self,
    ) -> Result<serde_json::Map<String, serde_json::Value>, serde_json::Error> {
        serde_json::from_slice(&self.claims_json)
    }
}

impl fmt::Debug for JwtSvidClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSvidClaims")
            .field("spiffe_id", &self.spiffe_id)
            .field("audiences", &self.audiences)
            .field("expires_at", &self.expires_at)
            .field("issued_at", &self.issued_at)
            .field("not_before", &self.not_before)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A JWT-SVID bearer token held by a caller: a [`SecretString`], so it is wiped on drop,
/// `Debug` prints no part of it, and there is no `Display`. The text comes out only through
/// [`ExposeSecret::expose_secret`].
#[derive(Debug, Clone)]
pub struct JwtSvid(SecretString);

impl JwtSvid {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(SecretString::from(token.into()))
    }

    /// The token's length in bytes.
    pub fn len(&self) -> usize {
        self.0.expose_secret().len()
    }

    /// Whether the token text is empty (such a token never validates).
    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }
}

impl ExposeSecret<str> for JwtSvid {
    /// The token itself, for sending or validating. Do not log it.
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<String> for JwtSvid {
    fn from(token: String) -> Self {
        Self::new(token)
    }
}

/// Validates JWT-SVIDs against a [`BundleSet`]; see the [module docs](self) for the checks.
///
/// Built once and shared; `validate` takes `&self`.
#[derive(Debug, Clone)]
pub struct JwtSvidValidator {
    audiences: Box<[Box<str>]>,
    audience_match: AudienceMatch,
    leeway_secs: u64,
    kid_mode: KidMode,
    max_token_len: usize,
    max_audiences: usize,
    max_kidless_candidates: usize,
}

impl JwtSvidValidator {
    /// A validator accepting tokens whose `aud` contains any of `audiences`, with default options.
    ///
    /// # Errors
    /// [`JwtSvidError::NoExpectedAudience`] for an empty set (never "accept all"),
    /// [`JwtSvidError::EmptyExpectedAudience`] for an empty string.
    pub fn new<I, S>(audiences: I) -> Result<Self, JwtSvidError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let audiences: Box<[Box<str>]> = audiences
            .into_iter()
            .map(|aud| aud.into().into_boxed_str())
            .collect();
        if audiences.is_empty() {
            return Err(JwtSvidError::NoExpectedAudience);
        }
        if let Some(index) = audiences.iter().position(|aud| aud.is_empty()) {
            return Err(JwtSvidError::EmptyExpectedAudience { index });
        }
        Ok(Self {
            audiences,
            audience_match: AudienceMatch::default(),
            leeway_secs: DEFAULT_LEEWAY.as_secs(),
            kid_mode: KidMode::default(),
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            max_audiences: DEFAULT_MAX_AUDIENCES,
            max_kidless_candidates: DEFAULT_MAX_KIDLESS_CANDIDATES,
        })
    }

    /// Sets the clock leeway (default [`DEFAULT_LEEWAY`]).
    ///
    /// # Errors
    /// [`JwtSvidError::InvalidLeeway`] when over [`MAX_LEEWAY`] or not whole seconds.
    pub fn with_leeway(mut self, leeway: Duration) -> Result<Self, JwtSvidError> {
        if leeway > MAX_LEEWAY || leeway.subsec_nanos() != 0 {
            return Err(JwtSvidError::InvalidLeeway {
                max_secs: MAX_LEEWAY.as_secs(),
            });
        }
        self.leeway_secs = leeway.as_secs();
        Ok(self)
    }

    /// Sets how `aud` is matched (default [`AudienceMatch::AnyOf`]).
    #[must_use]
    pub fn with_audience_match(mut self, audience_match: AudienceMatch) -> Self {
        self.audience_match = audience_match;
        self
    }

    /// How `aud` is matched against [`JwtSvidValidator::audiences`] (default
    /// [`AudienceMatch::AnyOf`], the spec's rule).
    pub fn audience_match(&self) -> AudienceMatch {
        self.audience_match
    }

    /// Sets how the signing key is chosen (default [`KidMode::Required`]).
    #[must_use]
    pub fn with_kid_mode(mut self, kid_mode: KidMode) -> Self {
        self.kid_mode = kid_mode;
        self
    }

    /// Sets the token length cap (default [`DEFAULT_MAX_TOKEN_LEN`]).
    ///
    /// # Errors
    /// [`JwtSvidError::InvalidLimit`] outside 1..=[`MAX_TOKEN_LEN_LIMIT`].
    pub fn with_max_token_len(mut self, max: usize) -> Result<Self, JwtSvidError> {
        self.max_token_len = limit("max_token_len", max, MAX_TOKEN_LEN_LIMIT)?;
        Ok(self)
    }

    /// Sets the `aud` count cap (default [`DEFAULT_MAX_AUDIENCES`]).
    ///
    /// # Errors
    /// [`JwtSvidError::InvalidLimit`] outside 1..=[`MAX_AUDIENCES_LIMIT`].
    pub fn with_max_audiences(mut self, max: usize) -> Result<Self, JwtSvidError> {
        self.max_audiences = limit("max_audiences", max, MAX_AUDIENCES_LIMIT)?;
        Ok(self)
    }

    /// Sets how many keys a token without `kid` may be tried against (default
    /// [`DEFAULT_MAX_KIDLESS_CANDIDATES`]); only used with [`KidMode::TryTrustDomainKeys`].
    ///
    /// # Errors
    /// [`JwtSvidError::InvalidLimit`] outside 1..=[`MAX_KIDLESS_CANDIDATES_LIMIT`].
    pub fn with_max_kidless_candidates(mut self, max: usize) -> Result<Self, JwtSvidError> {
        self.max_kidless_candidates =
            limit("max_kidless_candidates", max, MAX_KIDLESS_CANDIDATES_LIMIT)?;
        Ok(self)
    }

    /// The audiences a token may be for, in the order given to [`JwtSvidValidator::new`]:
    /// never empty, and none is the empty string.
    pub fn audiences(&self) -> impl Iterator<Item = &str> + '_ {
        self.audiences.iter().map(|aud| &**aud)
    }

    /// The clock leeway applied to `exp`, `nbf` and `iat`, in whole seconds (default
    /// [`DEFAULT_LEEWAY`], at most [`MAX_LEEWAY`]).
    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.leeway_secs)
    }

    /// How the signing key is chosen (default [`KidMode::Required`]: a token without `kid` is
    /// refused).
    pub fn kid_mode(&self) -> KidMode {
        self.kid_mode
    }

    /// The longest token accepted, in bytes (default [`DEFAULT_MAX_TOKEN_LEN`], at most
    /// [`MAX_TOKEN_LEN_LIMIT`]); a longer one is refused before it is decoded.
    pub fn max_token_len(&self) -> usize {
        self.max_token_len
    }

    /// The most `aud` values a token may carry (default [`DEFAULT_MAX_AUDIENCES`], at most
    /// [`MAX_AUDIENCES_LIMIT`]).
    pub fn max_audiences(&self) -> usize {
        self.max_audiences
    }

    /// Validates `token` against the JWT authorities in `bundles` at time `now`.
    ///
    /// # Errors
    /// The first rule the token breaks, in the order given in the [module docs](self).
    pub fn validate(
        &self,
        token: &str,
        bundles: &BundleSet,
        now: SystemTime,
    ) -> Result<JwtSvidClaims, JwtSvidError> {
        let bytes = token.as_bytes();
        if bytes.len() > self.max_token_len {
            return Err(JwtSvidError::TokenTooLarge {
                len: bytes.len(),
                max: self.max_token_len,
            });
        }
        if bytes.first() == Some(&b'{') {
            return Err(JwtSvidError::JsonSerialization);
        }
        let segments = Segments::split(token)?;

        let header_json = decode(segments.header, TokenPart::Header)?;
        let (alg, kid) = self.check_header(&header_json)?;

        let claims_json = decode(segments.claims, TokenPart::Claims)?;
        let claims = self.parse_claims(&claims_json)?;
        let (sub, aud, exp) = required_claims(&claims)?;

        // Unverified `sub` is used for one thing only: choosing the trust domain's bundle.
        let spiffe_id =
            SpiffeId::parse(sub).map_err(|source| JwtSvidError::InvalidSubject { source })?;
        let bundle = bundles
            .jwt(spiffe_id.trust_domain())
            .ok_or(JwtSvidError::NoBundle)?;

        let mut signature = [0u8; MAX_SIGNATURE_LEN + 3];
        let signature_len = URL_SAFE_NO_PAD
            .decode_slice(segments.signature, &mut signature)
            .map_err(|_| JwtSvidError::Base64 {
                part: TokenPart::Signature,
            })?;
        let signature = signature.get(..signature_len).unwrap_or_default();
        let message = segments.signing_input;
        let authority = match kid.as_deref() {
            Some(kid) => {
                let authority = bundle.find(kid).ok_or(JwtSvidError::UnknownKid)?;
                verify_with(authority, alg, message, signature)?;
                authority
            }
            None => self.verify_kidless(bundle.authorities(), alg, message, signature)?,
        };

        // The signature is valid: from here on the claims are our authority's word.
        self.check_times(exp, claims.nbf, claims.iat, now)?;
        let audiences = self.match_audience(aud)?;
        let expires_at = numeric_date(exp, "exp")?;
        let issued_at = claims.iat.map(|iat| numeric_date(iat, "iat")).transpose()?;
        let not_before = claims.nbf.map(|nbf| numeric_date(nbf, "nbf")).transpose()?;
        let kid = authority.kid.clone();
        drop(claims);
        Ok(JwtSvidClaims {
            spiffe_id,
            audiences,
            expires_at,
            issued_at,
            not_before,
            kid,
            alg,
            claims_json: claims_json.into_boxed_slice(),
        })
    }

    /// Header allow-list, `alg`, `typ` and `kid` presence.
    fn check_header<'h>(
        &self,
        header_json: &'h [u8],
    ) -> Result<(JwsAlgorithm, Option<Cow<'h, str>>), JwtSvidError> {
        check_header(header_json, self.kid_mode)
    }

    fn parse_claims<'c>(&self, claims_json: &'c [u8]) -> Result<parse::Claims<'c>, JwtSvidError> {
        let mut de = serde_json::Deserializer::from_slice(claims_json);
        let too_deep = Cell::new(false);
        let mut claims = parse::ClaimsSeed {
            max_audiences: self.max_audiences,
            max_members: MAX_CLAIMS_MEMBERS,
            max_nesting: MAX_CLAIM_NESTING,
            too_deep: &too_deep,
        }
        .deserialize(&mut de)
        .and_then(|claims| de.end().map(|()| claims))
        .map_err(|err| {
            let problem = if too_deep.get() {
                Some(ClaimValueProblem::TooDeep {
                    max: MAX_CLAIM_NESTING,
                })
            } else {
                value_problem(&err)
            };
            match problem {
                Some(problem) => JwtSvidError::InvalidClaimValue {
                    problem,
                    column: err.column(),
                },
                None => malformed(TokenPart::Claims, &err),
            }
        })?;
        match claims.problem.take() {
            Some(Problem::TooManyAudiences) => Err(JwtSvidError::TooManyAudiences {
                max: self.max_audiences,
            }),
            problem => check_problem(problem, TokenPart::Claims),
        }?;
        Ok(claims)
    }

    /// `exp`, `nbf`, `iat` against the one `now`, in whole seconds.
    fn check_times(
        &self,
        exp: i64,
        nbf: Option<i64>,
        iat: Option<i64>,
        now: SystemTime,
    ) -> Result<(), JwtSvidError> {
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| JwtSvidError::ClockBeforeEpoch)?
            .as_secs();
        let now = i64::try_from(now_secs).unwrap_or(i64::MAX);
        let leeway_secs = self.leeway_secs;
        let leeway = i64::try_from(leeway_secs).unwrap_or(i64::MAX);
        if exp.saturating_add(leeway) <= now {
            return Err(JwtSvidError::Expired {
                exp,
                now,
                leeway_secs,
            });
        }
        if let Some(nbf) = nbf
            && nbf > now.saturating_add(leeway)
        {
            return Err(JwtSvidError::NotYetValid {
                nbf,
                now,
                leeway_secs,
            });
        }
        if let Some(iat) = iat
            && iat > now.saturating_add(leeway)
        {
            return Err(JwtSvidError::IssuedInFuture {
                iat,
                now,
                leeway_secs,
            });
        }
        Ok(())
    }

    /// Any-of or single match; returns the token's audiences as a list.
    fn match_audience(&self, aud: &Audience<'_>) -> Result<Vec<String>, JwtSvidError> {
        let expected = |value: &str| self.audiences.iter().any(|aud| **aud == *value);
        let values: &[Cow<'_, str>] = match aud {
            Audience::One(value) => std::slice::from_ref(value),
            Audience::Many(values) => values,
        };
        // `["a", "a"]` still names one relying party, but a token with a repeated value was not
        // minted by a conforming issuer: counted as sent.
        if self.audience_match == AudienceMatch::Single && values.len() != 1 {
            return Err(JwtSvidError::AudienceNotSingle {
                count: values.len(),
            });
        }
        if !values.iter().any(|value| expected(value)) {
            return Err(JwtSvidError::AudienceMismatch);
        }
        Ok(values
            .iter()
            .map(|value| value.clone().into_owned())
            .collect())
    }

    fn verify_kidless<'b>(
        &self,
        authorities: &'b [JwtAuthority],
        alg: JwsAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<&'b JwtAuthority, JwtSvidError> {
        // Count first so the cost of a token is bounded before any verification is spent.
        let count = authorities.iter().filter(|a| a.accepts(alg)).count();
        if count == 0 {
            return Err(JwtSvidError::NoCandidateKey { alg });
        }
        if count > self.max_kidless_candidates {
            return Err(JwtSvidError::TooManyCandidateKeys {
                count,
                max: self.max_kidless_candidates,
            });
        }
        authorities
            .iter()
            .filter(|a| a.accepts(alg))
            .find(|a| a.key.verify(alg, message, signature).is_ok())
            .ok_or(JwtSvidError::InvalidSignature)
    }
}

/// A compact JWS whose signature verified against a [`JwtBundle`]; its claims are not
/// interpreted (see [`verify_compact_jws`]). `Debug` omits the claims.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedJws {
    /// The header's `alg`, one of [`JwsAlgorithm::ALL`], which the verifying key fits.
    pub alg: JwsAlgorithm,
    /// The `kid` of the authority that verified the signature.
    pub kid: String,
    claims_json: Box<[u8]>,
}

impl VerifiedJws {
    /// The payload (claims set) as JSON bytes, exactly as signed. Not parsed or checked: the
    /// caller owns every claim rule, including duplicate-member and nesting limits.
    pub fn claims_json(&self) -> &[u8] {
        &self.claims_json
    }
}

impl fmt::Debug for VerifiedJws {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedJws")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Verifies a compact JWS signed by one of `bundle`'s authorities, for JWTs that are not
/// JWT-SVIDs (for example Kubernetes service-account tokens) but come from an issuer whose keys
/// are held as a [`JwtBundle`].
///
/// The checks are steps 1–5, 8 and 9 of [`JwtSvidValidator::validate`] (size, compact form,
/// header allow-list, `alg` one of [`JwsAlgorithm::ALL`] before any key lookup, `kid` required,
/// the authority with that `kid`, key type bound to `alg`, signature). The payload is only
/// base64url-decoded: no claim is read, so `iss`, `aud`, times and everything else are the
/// caller's to check on [`VerifiedJws::claims_json`].
///
/// # Errors
/// The first rule the token breaks; `max_token_len` is capped at [`MAX_TOKEN_LEN_LIMIT`].
pub fn verify_compact_jws(
    token: &str,
    bundle: &JwtBundle,
    max_token_len: usize,
) -> Result<VerifiedJws, JwtSvidError> {
    let max = max_token_len.min(MAX_TOKEN_LEN_LIMIT);
    let bytes = token.as_bytes();
    if bytes.len() > max {
        return Err(JwtSvidError::TokenTooLarge {
            len: bytes.len(),
            max,
        });
    }
    if bytes.first() == Some(&b'{') {
        return Err(JwtSvidError::JsonSerialization);
    }
    let segments = Segments::split(token)?;
    let header_json = decode(segments.header, TokenPart::Header)?;
    let (alg, kid) = check_header(&header_json, KidMode::Required)?;
    let kid = kid.ok_or(JwtSvidError::MissingKid)?;
    let claims_json = decode(segments.claims, TokenPart::Claims)?;
    let authority = bundle.find(&kid).ok_or(JwtSvidError::UnknownKid)?;
    let mut signature = [0u8; MAX_SIGNATURE_LEN + 3];
    let signature_len = URL_SAFE_NO_PAD
        .decode_slice(segments.signature, &mut signature)
        .map_err(|_| JwtSvidError::Base64 {
            part: TokenPart::Signature,
        })?;
    let signature = signature.get(..signature_len).unwrap_or_default();
    verify_with(authority, alg, segments.signing_input, signature)?;
    Ok(VerifiedJws {
        alg,
        kid: authority.kid.clone(),
        claims_json: claims_json.into_boxed_slice(),
    })
}

/// Header allow-list, `alg`, `typ` and `kid` presence (shared by JWT-SVIDs and
/// [`verify_compact_jws`]).
fn check_header(
    header_json: &[u8],
    kid_mode: KidMode,
) -> Result<(JwsAlgorithm, Option<Cow<'_, str>>), JwtSvidError> {
    let header: parse::Header<'_> =
        serde_json::from_slice(header_json).map_err(|err| malformed(TokenPart::Header, &err))?;
    check_problem(header.problem, TokenPart::Header)?;
    let alg: JwsAlgorithm = header
        .alg
        .as_deref()
        .ok_or(JwtSvidError::MissingAlg)?
        .parse()?;
    if header
        .typ
        .as_deref()
        .is_some_and(|typ| typ != "JWT" && typ != "JOSE")
    {
        return Err(JwtSvidError::InvalidTyp);
    }
    // An empty `kid` names no key; taking it as one would let an authority published with
    // `"kid": ""` match tokens that carry no real key id.
    let kid = header.kid.filter(|kid| !kid.is_empty());
    if kid.is_none() && kid_mode == KidMode::Required {
        return Err(JwtSvidError::MissingKid);
    }
    Ok((alg, kid))
}

/// `sub`, `aud` (non-empty) and `exp`, all required.
fn required_claims<'c>(
    claims: &'c parse::Claims<'_>,
) -> Result<(&'c str, &'c Audience<'c>, i64), JwtSvidError> {
    let sub = claims
        .sub
        .as_deref()
        .ok_or(JwtSvidError::MissingClaim { claim: "sub" })?;
    let aud = claims
        .aud
        .as_ref()
        .ok_or(JwtSvidError::MissingClaim { claim: "aud" })?;
    if matches!(aud, Audience::Many(values) if values.is_empty()) {
        return Err(JwtSvidError::EmptyAudience);
    }
    let exp = claims
        .exp
        .ok_or(JwtSvidError::MissingClaim { claim: "exp" })?;
    Ok((sub, aud, exp))
}

fn verify_with(
    authority: &JwtAuthority,
    alg: JwsAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), JwtSvidError> {
    if !authority.accepts(alg) {
        return Err(JwtSvidError::AlgorithmKeyMismatch { alg });
    }
    authority
        .key
        .verify(alg, message, signature)
        .map_err(|failure| match failure {
            VerifyFailure::KeyMismatch => JwtSvidError::AlgorithmKeyMismatch { alg },
            VerifyFailure::BadSignature => JwtSvidError::InvalidSignature,
        })
}

struct Segments<'t> {
    header: &'t [u8],
    claims: &'t [u8],
    signature: &'t [u8],
    signing_input: &'t [u8],
}

impl<'t> Segments<'t> {
    fn split(token: &'t str) -> Result<Self, JwtSvidError> {
        let bytes = token.as_bytes();
        let mut dots = bytes
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'.')
            .map(|(i, _)| i);
        let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
            let segments = 1 + bytes.iter().filter(|&&b| b == b'.').count();
            return Err(JwtSvidError::SegmentCount { segments });
        };
        let (signing_input, rest) = bytes.split_at(second);
        let (header, claims) = signing_input.split_at(first);
        Ok(Self {
            header,
            claims: claims.get(1..).unwrap_or_default(),
            signature: rest.get(1..).unwrap_or_default(),
            signing_input,
        })
    }
}

fn decode(segment: &[u8], part: TokenPart) -> Result<Vec<u8>, JwtSvidError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtSvidError::Base64 { part })
}

fn malformed(part: TokenPart, err: &serde_json::Error) -> JwtSvidError {
    JwtSvidError::MalformedJson {
        part,
        column: err.column(),
    }
}

/// Names the serde_json syntax errors that valid-looking JSON text can still raise. serde_json
/// exposes only a coarse error category, so its (long-stable) messages are matched; an
/// unrecognised message still rejects the token, as [`JwtSvidError::MalformedJson`].
fn value_problem(err: &serde_json::Error) -> Option<ClaimValueProblem> {
    if !err.is_syntax() {
        return None;
    }
    let message = err.to_string();
    if message.starts_with("number out of range") {
        Some(ClaimValueProblem::NumberOutOfRange)
    } else if message.starts_with("lone leading surrogate")
        || message.starts_with("unexpected end of hex escape")
        || message.starts_with("invalid unicode code point")
    {
        Some(ClaimValueProblem::InvalidString)
    } else {
        None
    }
}

fn check_problem(problem: Option<Problem>, part: TokenPart) -> Result<(), JwtSvidError> {
    match problem {
        None => Ok(()),
        Some(Problem::NotAllowed(member)) => Err(JwtSvidError::HeaderMemberNotAllowed { member }),
        Some(Problem::Duplicate(member)) => Err(JwtSvidError::DuplicateMember { part, member }),
        Some(Problem::WrongType(member)) => Err(JwtSvidError::WrongType { part, member }),
        Some(Problem::TooManyMembers) => Err(JwtSvidError::TooManyClaims {
            max: MAX_CLAIMS_MEMBERS,
        }),
        Some(Problem::TooManyAudiences) => Err(JwtSvidError::TooManyAudiences {
            max: DEFAULT_MAX_AUDIENCES,
        }),
    }
}

fn numeric_date(secs: i64, claim: &'static str) -> Result<SystemTime, JwtSvidError> {
    if !(MIN_NUMERIC_DATE..=MAX_NUMERIC_DATE).contains(&secs) {
        return Err(JwtSvidError::TimeOutOfRange { claim });
    }
    let offset = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    }
    .ok_or(JwtSvidError::TimeOutOfRange { claim })
}

fn limit(option: &'static str, value: usize, max: usize) -> Result<usize, JwtSvidError> {
    if value == 0 || value > max {
        return Err(JwtSvidError::InvalidLimit { option, value, max });
    }
    Ok(value)
}
