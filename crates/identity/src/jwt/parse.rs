//! Typed, borrowing parsers for the JOSE header and the claims set.
//!
//! The visitors never fail on a semantic problem (unknown header member, duplicate member, wrong
//! type): they record it and keep consuming, so the validator can report a structured error.
//! Only JSON syntax errors come out of serde_json.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Longest unknown header member name kept for an error message.
const MAX_REPORTED_MEMBER_LEN: usize = 64;

/// A problem found while reading a JSON object, recorded instead of failing mid-parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Problem {
    /// A header member outside the allow-list (name truncated).
    NotAllowed(String),
    /// A member that occurs twice (its name, when it is one we know).
    Duplicate(Option<&'static str>),
    /// A known member with the wrong JSON type.
    WrongType(&'static str),
    /// More members than the cap.
    TooManyMembers,
    /// More audiences than the cap.
    TooManyAudiences,
}

pub(super) struct Header<'a> {
    pub(super) alg: Option<Cow<'a, str>>,
    pub(super) kid: Option<Cow<'a, str>>,
    pub(super) typ: Option<Cow<'a, str>>,
    pub(super) problem: Option<Problem>,
}

pub(super) enum Audience<'a> {
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

pub(super) struct Claims<'a> {
    pub(super) sub: Option<Cow<'a, str>>,
    pub(super) aud: Option<Audience<'a>>,
    pub(super) exp: Option<i64>,
    pub(super) nbf: Option<i64>,
    pub(super) iat: Option<i64>,
    pub(super) problem: Option<Problem>,
}

fn note(slot: &mut Option<Problem>, problem: Problem) {
    if slot.is_none() {
        *slot = Some(problem);
    }
}

// === header ===

impl<'de> Deserialize<'de> for Header<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Header<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JOSE header object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut header = Header {
                    alg: None,
                    kid: None,
                    typ: None,
                    problem: None,
                };
                while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
                    let (slot, name) = match &*key {
                        "alg" => (&mut header.alg, "alg"),
                        "kid" => (&mut header.kid, "kid"),
                        "typ" => (&mut header.typ, "typ"),
                        other => {
                            let shown = other.chars().take(MAX_REPORTED_MEMBER_LEN).collect();
                            note(&mut header.problem, Problem::NotAllowed(shown));
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    let value = map.next_value::<StrOrOther<'de>>()?;
                    if slot.is_some() {
                        note(&mut header.problem, Problem::Duplicate(Some(name)));
                        continue;
                    }
                    match value {
                        StrOrOther::Str(s) => *slot = Some(s),
                        StrOrOther::Other => note(&mut header.problem, Problem::WrongType(name)),
                    }
                }
                Ok(header)
            }
        }
        deserializer.deserialize_map(V)
    }
}

// === claims ===

/// Claims parser; the audience cap is carried in through a seed.
pub(super) struct ClaimsSeed<'a> {
    pub(super) max_audiences: usize,
    pub(super) max_members: usize,
    /// Deepest nesting allowed inside an unknown claim's value.
    pub(super) max_nesting: usize,
    /// Set when an unknown claim's value nests deeper than `max_nesting` (the parse then fails,
    /// and this tells the caller why).
    pub(super) too_deep: &'a Cell<bool>,
}

impl<'de> de::DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Claims<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Claims<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut claims = Claims {
            sub: None,
            aud: None,
            exp: None,
            nbf: None,
            iat: None,
            problem: None,
        };
        // Names of the other members, for duplicate detection; few in practice, capped anyway.
        let mut others: Vec<Cow<'de, str>> = Vec::new();
        let mut count = 0usize;
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            count += 1;
            if count > self.max_members {
                note(&mut claims.problem, Problem::TooManyMembers);
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            match &*key {
                "sub" => {
                    let value = map.next_value::<StrOrOther<'de>>()?;
                    if claims.sub.is_some() {
                        note(&mut claims.problem, Problem::Duplicate(Some("sub")));
                    } else if let StrOrOther::Str(s) = value {
                        claims.sub = Some(s);
                    } else {
                        note(&mut claims.problem, Problem::WrongType("sub"));
                    }
                }
                "aud" => {
                    let value = map.next_value_seed(AudSeed {
                        max: self.max_audiences,
                    })?;
                    if claims.aud.is_some() {
                        note(&mut claims.problem, Problem::Duplicate(Some("aud")));
                        continue;
                    }
                    match value {
                        AudValue::Ok(aud) => claims.aud = Some(aud),
                        AudValue::WrongType => note(&mut claims.problem, Problem::WrongType("aud")),
                        AudValue::TooMany => note(&mut claims.problem, Problem::TooManyAudiences),
                    }
                }
                "exp" | "nbf" | "iat" => {
                    let (slot, name) = match &*key {
                        "exp" => (&mut claims.exp, "exp"),
                        "nbf" => (&mut claims.nbf, "nbf"),
                        _ => (&mut claims.iat, "iat"),
                    };
                    let value = map.next_value::<NumericDate>()?;
                    if slot.is_some() {
                        note(&mut claims.problem, Problem::Duplicate(Some(name)));
                    } else if let NumericDate::Int(v) = value {
                        *slot = Some(v);
                    } else {
                        note(&mut claims.problem, Problem::WrongType(name));
                    }
                }
                _ => {
                    // Not `IgnoredAny`: it skips without range-checking numbers, checking
                    // strings or bounding depth, so a token could validate whose claims
                    // `JwtSvidClaims::claims_map` then cannot parse.
                    map.next_value_seed(Skip {
                        depth: 0,
                        max_depth: self.max_nesting,
                        too_deep: self.too_deep,
                    })?;
                    if others.contains(&key) {
                        note(&mut claims.problem, Problem::Duplicate(None));
                    } else {
                        others.push(key);
                    }
                }
            }
        }
        Ok(claims)
    }
}

struct AudSeed {
    max: usize,
}

enum AudValue<'a> {
    Ok(Audience<'a>),
    WrongType,
    TooMany,
}

impl<'de> de::DeserializeSeed<'de> for AudSeed {
    type Value = AudValue<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AudSeed {
    type Value = AudValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(AudValue::Ok(Audience::One(Cow::Borrowed(v))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(AudValue::Ok(Audience::One(Cow::Owned(v.to_owned()))))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::new();
        let mut wrong_type = false;
        let mut too_many = false;
        while let Some(value) = seq.next_element::<StrOrOther<'de>>()? {
            match value {
                StrOrOther::Str(_) if values.len() >= self.max => too_many = true,
                StrOrOther::Str(s) => values.push(s),
                StrOrOther::Other => wrong_type = true,
            }
        }
        Ok(if wrong_type {
            AudValue::WrongType
        } else if too_many {
            AudValue::TooMany
        } else {
            AudValue::Ok(Audience::Many(values))
        })
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(AudValue::WrongType)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(AudValue::WrongType)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(AudValue::WrongType)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(AudValue::WrongType)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(AudValue::WrongType)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(AudValue::WrongType)
    }
}

// === value helpers ===

/// Walks a JSON value it does not keep, through the same serde_json paths a
/// `serde_json::Value` parse takes, so the value fails here exactly when it could not become a
/// `Value` later: numbers outside `f64` range, strings with lone surrogates or invalid UTF-8
/// (serde_json reports both while parsing), and nesting deeper than `max_depth` (checked here,
/// below serde_json's own limit of 128).
struct Skip<'a> {
    depth: usize,
    max_depth: usize,
    too_deep: &'a Cell<bool>,
}

impl Skip<'_> {
    fn nested<E: de::Error>(&self) -> Result<Self, E> {
        if self.depth >= self.max_depth {
            self.too_deep.set(true);
            return Err(E::custom("claim value nested too deeply"));
        }
        Ok(Skip {
            depth: self.depth + 1,
            max_depth: self.max_depth,
            too_deep: self.too_deep,
        })
    }

    fn same_level(&self) -> Self {
        Skip {
            depth: self.depth,
            max_depth: self.max_depth,
            too_deep: self.too_deep,
        }
    }
}

impl<'de> de::DeserializeSeed<'de> for Skip<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while seq.next_element_seed(inner.same_level())?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while map.next_key_seed(inner.same_level())?.is_some() {
            map.next_value_seed(inner.same_level())?;
        }
        Ok(())
    }
}

/// A string that borrows from the input when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// Any JSON value: a string is kept, anything else is consumed and reported as the wrong type.
enum StrOrOther<'a> {
    Str(Cow<'a, str>),
    Other,
}

impl<'de> Deserialize<'de> for StrOrOther<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrOrOtherVisitor)
    }
}

/// An integer NumericDate; any other JSON value (including non-integer numbers) is the wrong type.
enum NumericDate {
    Int(i64),
    Other,
}

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(NumericDate::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v).map_or(NumericDate::Other, NumericDate::Int))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(NumericDate::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(NumericDate::Other)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(NumericDate::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(NumericDate::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(NumericDate::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(NumericDate::Other)
            }
        }
        deserializer.deserialize_any(V)
    }
}

struct StrOrOtherVisitor;

impl<'de> Visitor<'de> for StrOrOtherVisitor {
    type Value = StrOrOther<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(StrOrOther::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(StrOrOther::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(StrOrOther::Other)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(StrOrOther::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(StrOrOther::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(StrOrOther::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(StrOrOther::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(StrOrOther::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(StrOrOther::Other)
    }
}
