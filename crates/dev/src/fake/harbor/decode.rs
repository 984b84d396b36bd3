//! What Harbor's decoders make of a request before any rule runs: Go's `encoding/json` for the
//! RobotCreate body, go-swagger's binding of `page`/`page_size`, Harbor's `q` syntax and Go's
//! `Request.BasicAuth`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::rules::{Access, ApiError, Paging, Permission};

/// The swagger's `pageSize` parameter: default 10, maximum 100 (`api/v2.0/swagger.yaml`).
const DEFAULT_PAGE_SIZE: i64 = 10;
const MAX_PAGE_SIZE: i64 = 100;

// === request decoding ===

/// The RobotCreate body as Harbor's Go decoder sees it (`api/v2.0/swagger.yaml`): unknown
/// fields ignored, member names matched case-insensitively, `null` as the zero value, a wrong
/// type refused, and `secret` type-checked but never used.
#[derive(Debug, Clone)]
pub(super) struct RobotCreate {
    pub(super) name: String,
    pub(super) description: String,
    pub(super) level: String,
    pub(super) disable: bool,
    pub(super) duration: i64,
    /// Each permission with whether one of its access entries was JSON `null`; a `null`
    /// permission is `None`.
    pub(super) permissions: Vec<Option<(Permission, bool)>>,
}

impl RobotCreate {
    /// Decodes a parsed JSON body; a type mismatch is go-openapi's 400 parse error.
    pub(super) fn from_json(value: &Value) -> Result<Self, ApiError> {
        let empty = Map::new();
        let obj = match value {
            Value::Object(m) => m,
            Value::Null => &empty,
            other => return Err(parse_error("", "models.RobotCreate", other)),
        };
        let mut permissions = Vec::new();
        match field(obj, "permissions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::Null => permissions.push(None),
                        Value::Object(p) => permissions.push(Some(decode_permission(p)?)),
                        other => {
                            return Err(parse_error(
                                "permissions",
                                "models.RobotPermission",
                                other,
                            ));
                        }
                    }
                }
            }
            Some(other) => {
                return Err(parse_error(
                    "permissions",
                    "[]*models.RobotPermission",
                    other,
                ));
            }
        }
        let _ignored_secret = string_field(obj, "secret", "RobotCreate")?;
        let duration = match field(obj, "duration") {
            None | Some(Value::Null) => 0,
            Some(v @ Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| parse_error("duration", "int64", v))?,
            Some(other) => return Err(parse_error("duration", "int64", other)),
        };
        let disable = match field(obj, "disable") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(parse_error("disable", "bool", other)),
        };
        let body = Self {
            name: string_field(obj, "name", "RobotCreate")?,
            description: string_field(obj, "description", "RobotCreate")?,
            level: string_field(obj, "level", "RobotCreate")?,
            disable,
            duration,
            permissions,
        };
        Ok(body)
    }
}

fn decode_permission(p: &Map<String, Value>) -> Result<(Permission, bool), ApiError> {
    let mut access = Vec::new();
    let mut nulls = false;
    match field(p, "access") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::Null => nulls = true,
                    Value::Object(a) => access.push(Access {
                        resource: string_field(a, "resource", "Access")?,
                        action: string_field(a, "action", "Access")?,
                        effect: string_field(a, "effect", "Access")?,
                    }),
                    other => return Err(parse_error("access", "models.Access", other)),
                }
            }
        }
        Some(other) => return Err(parse_error("access", "[]*models.Access", other)),
    }
    Ok((
        Permission {
            kind: string_field(p, "kind", "RobotPermission")?,
            namespace: string_field(p, "namespace", "RobotPermission")?,
            access,
        },
        nulls,
    ))
}

/// Go's `encoding/json` field lookup: the exact name, else the first case-insensitive match.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn string_field(obj: &Map<String, Value>, name: &str, model: &str) -> Result<String, ApiError> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(parse_error(&format!("{model}.{name}"), "string", other)),
    }
}

fn parse_error(field: &str, go_type: &str, got: &Value) -> ApiError {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let target = if field.is_empty() {
        format!("Go value of type {go_type}")
    } else {
        format!("Go struct field {field} of type {go_type}")
    };
    ApiError::bad_request(format!(
        "parsing robot body from \"\" failed, because json: cannot unmarshal {kind} into {target}"
    ))
}

// === queries ===

/// One `q` keyword value (`src/lib/q/builder.go`); ranges and lists are parsed but never match
/// in this fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Keyword {
    Exact(String),
    Fuzzy(String),
    Other,
}

/// `parseKeywords` (`src/lib/q/builder.go`): the value is query-unescaped once more (so a `+`
/// must arrive as `%2B` twice encoded to survive), split on `,`, each `k=v` with both sides
/// non-empty; `~v` is a substring match, `[..]`, `{..}`, `(..)` ranges and lists.
pub(super) fn parse_keywords(q: &str) -> Result<BTreeMap<String, Keyword>, ApiError> {
    let mut keywords = BTreeMap::new();
    if q.is_empty() {
        return Ok(keywords);
    }
    let q = query_unescape(q).unwrap_or_else(|| q.to_owned());
    for param in q.split(',') {
        let Some((key, value)) = param
            .split_once('=')
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        else {
            return Err(ApiError::bad_request(
                "the query string must contain \"=\" and the key/value cannot be empty",
            ));
        };
        let invalid = || ApiError::bad_request(format!("invalid query string value: {value}"));
        let keyword = match value.as_bytes()[0] {
            b'~' if value.len() >= 2 => Keyword::Fuzzy(value[1..].to_owned()),
            b'~' => return Err(invalid()),
            b'[' if value.ends_with(']') && value.matches('~').count() == 1 && value.len() > 3 => {
                Keyword::Other
            }
            b'[' => return Err(invalid()),
            b'{' if value.ends_with('}') => Keyword::Other,
            b'(' if value.ends_with(')') => Keyword::Other,
            b'{' | b'(' => return Err(invalid()),
            b'\\' => Keyword::Exact(value[1..].to_owned()),
            _ => Keyword::Exact(value.to_owned()),
        };
        keywords.insert(key.to_owned(), keyword);
    }
    Ok(keywords)
}

/// Go's `url.QueryUnescape`: `%XX` decoded, `+` as space; `None` on a bad escape.
fn query_unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// go-swagger's binding of `page` and `page_size` (`api/v2.0/swagger.yaml`: int64, defaults 1
/// and 10, `page_size` at most 100): failures are 422.
pub(super) fn parse_paging(
    page: Option<&str>,
    page_size: Option<&str>,
) -> Result<Paging, ApiError> {
    let int = |name: &str, v: Option<&str>, default: i64| -> Result<i64, ApiError> {
        match v {
            None => Ok(default),
            Some(s) => s.parse::<i64>().map_err(|_| {
                ApiError::unprocessable(format!("{name} in query must be of type int64: \"{s}\""))
            }),
        }
    };
    let page = int("page", page, 1)?;
    let page_size = int("page_size", page_size, DEFAULT_PAGE_SIZE)?;
    if page_size > MAX_PAGE_SIZE {
        return Err(ApiError::unprocessable(format!(
            "page_size in query should be less than or equal to {MAX_PAGE_SIZE}"
        )));
    }
    Ok(Paging { page, page_size })
}
