//! RFC 7512 `pkcs11:` URIs, as far as the broker takes them.
//!
//! Path attributes (`;`-separated `name=value`, percent-encoded): `token`, `manufacturer`,
//! `serial`, `model` and `slot-id` pick the token; `object` (the label), `id` (`CKA_ID`
//! bytes) and `type` pick the object. Refused, each with its rule: a repeated attribute, an
//! unknown one (a typo must not widen the match), `library-*` and `slot-description` /
//! `slot-manufacturer` (not matched here), and every query attribute: `pin-value` and
//! `pin-source` would move the PIN into the URI (the config names a PIN file or environment
//! variable), `module-name` / `module-path` would give a second place to name the module.

use std::fmt;

use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::slot::TokenInfo;

use super::Pkcs11Error;

/// Longest URI accepted, in bytes; a longer one is [`Pkcs11Error::InvalidUri`].
pub const MAX_URI_LEN: usize = 4096;
/// Longest decoded attribute value (token labels are 32 bytes, `CKA_LABEL` is free-form).
const MAX_VALUE_LEN: usize = 256;

/// The `type` attribute: which object class the URI names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectType {
    /// `private`: a private key.
    Private,
    /// `public`: a public key.
    Public,
    /// `secret-key`: a secret key (the HMAC key).
    SecretKey,
    /// `cert`: a certificate.
    Cert,
    /// `data`: a data object.
    Data,
}

impl ObjectType {
    fn name(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Public => "public",
            Self::SecretKey => "secret-key",
            Self::Cert => "cert",
            Self::Data => "data",
        }
    }
}

/// A parsed `pkcs11:` URI. It never holds a PIN (the parser refuses one), so `Display` and
/// `Debug` are safe to log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pkcs11Uri {
    token: Option<String>,
    manufacturer: Option<String>,
    serial: Option<String>,
    model: Option<String>,
    slot_id: Option<u64>,
    object: Option<String>,
    id: Option<Vec<u8>>,
    object_type: Option<ObjectType>,
}

impl Pkcs11Uri {
    /// Parses `text`; the URI must pick a token (`token`, `serial` or `slot-id`) and an
    /// object (`object` or `id`).
    ///
    /// # Errors
    /// [`Pkcs11Error::InvalidUri`] naming the rule.
    pub fn parse(text: &str) -> Result<Self, Pkcs11Error> {
        let invalid = |rule: String| Err(Pkcs11Error::InvalidUri { rule });
        if text.len() > MAX_URI_LEN {
            return invalid(format!("longer than {MAX_URI_LEN} bytes"));
        }
        let Some(rest) = text.strip_prefix("pkcs11:") else {
            return invalid("does not start with `pkcs11:`".into());
        };
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        if let Some(query) = query {
            let name = query.split(['&', '=']).next().unwrap_or_default();
            return invalid(match name {
                "pin-value" | "pin-source" => format!(
                    "`{name}` is refused: a PIN does not belong in the uri; name a PIN file or \
                     environment variable in the config"
                ),
                "module-name" | "module-path" => {
                    format!("`{name}` is refused: the module is the config's pkcs11_module")
                }
                _ => format!("query attribute `{}` is not supported", printable(name)),
            });
        }
        let mut uri = Self::default();
        for attribute in path.split(';').filter(|a| !a.is_empty()) {
            let Some((name, raw)) = attribute.split_once('=') else {
                return invalid(format!("attribute `{}` has no `=`", printable(attribute)));
            };
            let value = percent_decode(raw)?;
            if value.is_empty() {
                // An empty label would match blank token labels or unlabelled objects.
                return invalid(format!("`{}` has an empty value", printable(name)));
            }
            let text_value = || {
                String::from_utf8(value.clone()).map_err(|_| Pkcs11Error::InvalidUri {
                    rule: format!("`{name}` is not UTF-8 text"),
                })
            };
            let repeated = match name {
                "token" => uri.token.replace(text_value()?).is_some(),
                "manufacturer" => uri.manufacturer.replace(text_value()?).is_some(),
                "serial" => uri.serial.replace(text_value()?).is_some(),
                "model" => uri.model.replace(text_value()?).is_some(),
                "object" => uri.object.replace(text_value()?).is_some(),
                "id" => uri.id.replace(value.clone()).is_some(),
                "slot-id" => {
                    let Ok(id) = text_value()?.parse::<u64>() else {
                        return invalid("`slot-id` is not a decimal number".into());
                    };
                    uri.slot_id.replace(id).is_some()
                }
                "type" => {
                    let kind = match text_value()?.as_str() {
                        "private" => ObjectType::Private,
                        "public" => ObjectType::Public,
                        "secret-key" => ObjectType::SecretKey,
                        "cert" => ObjectType::Cert,
                        "data" => ObjectType::Data,
                        _ => {
                            return invalid(
                                "`type` must be private, public, secret-key, cert or data".into(),
                            );
                        }
                    };
                    uri.object_type.replace(kind).is_some()
                }
                "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-description"
                | "slot-manufacturer" => {
                    return invalid(format!(
                        "`{name}` is not supported; pick the token by token, serial or slot-id"
                    ));
                }
                _ => {
                    return invalid(format!(
                        "unknown attribute `{}` (a typo must not widen the match)",
                        printable(name)
                    ));
                }
            };
            if repeated {
                return invalid(format!("`{name}` appears twice"));
            }
        }
        if uri.token.is_none() && uri.serial.is_none() && uri.slot_id.is_none() {
            return invalid("names no token: give token, serial or slot-id".into());
        }
        if uri.object.is_none() && uri.id.is_none() {
            return invalid("names no object: give object (the label) or id".into());
        }
        Ok(uri)
    }

    /// The `type` attribute, if any.
    pub fn object_type(&self) -> Option<ObjectType> {
        self.object_type
    }

    /// The `object` attribute (the label), if any.
    pub fn object_label(&self) -> Option<&str> {
        self.object.as_deref()
    }

    /// The `id` attribute (`CKA_ID`), if any.
    pub fn object_id(&self) -> Option<&[u8]> {
        self.id.as_deref()
    }

    /// A copy of this URI with `type` set to `object_type`, replacing any `type` it had.
    pub fn with_type(&self, object_type: ObjectType) -> Self {
        Self {
            object_type: Some(object_type),
            ..self.clone()
        }
    }

    /// The URI with its token attributes only, for errors about the token.
    pub fn token_part(&self) -> String {
        Self {
            object: None,
            id: None,
            object_type: None,
            ..self.clone()
        }
        .to_string()
    }

    /// Whether the token in slot `slot_id` is the one this URI names.
    pub(crate) fn matches_token(&self, slot_id: u64, info: &TokenInfo) -> bool {
        // Token info strings are blank-padded fixed-width fields.
        let same = |want: &Option<String>, have: &str| {
            want.as_deref()
                .is_none_or(|want| want == have.trim_end_matches([' ', '\0']))
        };
        self.slot_id.is_none_or(|id| id == slot_id)
            && same(&self.token, info.label())
            && same(&self.manufacturer, info.manufacturer_id())
            && same(&self.serial, info.serial_number())
            && same(&self.model, info.model())
    }

    /// Templates that find any object of `class` sharing this URI's label, or its id: what
    /// must not exist before a key is generated under the URI.
    pub(crate) fn existing_object_templates(&self, class: ObjectClass) -> Vec<Vec<Attribute>> {
        let mut templates = Vec::new();
        if let Some(label) = &self.object {
            templates.push(vec![
                Attribute::Class(class),
                Attribute::Label(label.as_bytes().to_vec()),
            ]);
        }
        if let Some(id) = &self.id {
            templates.push(vec![Attribute::Class(class), Attribute::Id(id.clone())]);
        }
        templates
    }

    /// The `C_FindObjects` template for objects of `class` this URI names.
    pub(crate) fn object_template(&self, class: ObjectClass) -> Vec<Attribute> {
        let mut template = vec![Attribute::Class(class)];
        if let Some(label) = &self.object {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &self.id {
            template.push(Attribute::Id(id.clone()));
        }
        template
    }
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pkcs11:")?;
        let mut first = true;
        let mut attribute = |f: &mut fmt::Formatter<'_>, name: &str, value: &[u8]| {
            if !first {
                f.write_str(";")?;
            }
            first = false;
            write!(f, "{name}=")?;
            percent_encode(f, value)
        };
        for (name, value) in [
            ("token", &self.token),
            ("manufacturer", &self.manufacturer),
            ("serial", &self.serial),
            ("model", &self.model),
            ("object", &self.object),
        ] {
            if let Some(value) = value {
                attribute(f, name, value.as_bytes())?;
            }
        }
        if let Some(id) = &self.slot_id {
            attribute(f, "slot-id", id.to_string().as_bytes())?;
        }
        if let Some(id) = &self.id {
            attribute(f, "id", id)?;
        }
        if let Some(kind) = self.object_type {
            attribute(f, "type", kind.name().as_bytes())?;
        }
        Ok(())
    }
}

fn percent_decode(raw: &str) -> Result<Vec<u8>, Pkcs11Error> {
    let invalid = |rule: &str| Pkcs11Error::InvalidUri { rule: rule.into() };
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                // Two ASCII hex digits exactly: `from_str_radix` alone would take a sign.
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| invalid("a `%` is not followed by two hex digits"))?;
                out.push(hex);
                i += 3;
            }
            b if b.is_ascii_graphic() && !matches!(b, b';' | b'?' | b'&' | b'=' | b'#') => {
                out.push(b);
                i += 1;
            }
            _ => {
                return Err(invalid(
                    "a value holds a character that must be percent-encoded",
                ));
            }
        }
        if out.len() > MAX_VALUE_LEN {
            return Err(invalid("an attribute value is longer than 256 bytes"));
        }
    }
    Ok(out)
}

fn percent_encode(f: &mut fmt::Formatter<'_>, value: &[u8]) -> fmt::Result {
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            write!(f, "{}", char::from(b))?;
        } else {
            write!(f, "%{b:02X}")?;
        }
    }
    Ok(())
}

/// At most 64 characters of `text`, control characters replaced, for errors.
fn printable(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> String {
        match Pkcs11Uri::parse(text).unwrap_err() {
            Pkcs11Error::InvalidUri { rule } => rule,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_and_prints_the_rfc_examples_it_takes() {
        let uri = Pkcs11Uri::parse("pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;object=my-key;type=private;id=%01%02").unwrap();
        assert_eq!(uri.object_label(), Some("my-key"));
        assert_eq!(uri.object_id(), Some(&[1u8, 2][..]));
        assert_eq!(uri.object_type(), Some(ObjectType::Private));
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;object=my-key;id=%01%02;type=private"
        );
        assert_eq!(Pkcs11Uri::parse(&uri.to_string()).unwrap(), uri);
        assert_eq!(
            uri.token_part(),
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken"
        );
        let by_slot = Pkcs11Uri::parse("pkcs11:slot-id=3;object=k").unwrap();
        assert_eq!(by_slot.to_string(), "pkcs11:object=k;slot-id=3");
    }

    #[test]
    fn refuses_each_rule_by_name() {
        for (text, want) in [
            ("pkcs12:token=a;object=b", "does not start with `pkcs11:`"),
            (
                "pkcs11:token=a;object=b?pin-value=1234",
                "a PIN does not belong in the uri",
            ),
            (
                "pkcs11:token=a;object=b?pin-source=file:/p",
                "a PIN does not belong",
            ),
            ("pkcs11:token=a;object=b?module-path=/x.so", "pkcs11_module"),
            ("pkcs11:token=a;token=b;object=c", "`token` appears twice"),
            ("pkcs11:token=a;objekt=b", "unknown attribute `objekt`"),
            (
                "pkcs11:token=a;object=b;library-version=1",
                "`library-version` is not supported",
            ),
            ("pkcs11:object=b", "names no token"),
            ("pkcs11:token=a", "names no object"),
            ("pkcs11:token=a;object=%zz", "two hex digits"),
            ("pkcs11:token=a;object=%+1", "two hex digits"),
            ("pkcs11:token=;object=b", "`token` has an empty value"),
            ("pkcs11:token=a;object=b c", "must be percent-encoded"),
            ("pkcs11:token=a;object=b;type=secret", "`type` must be"),
            ("pkcs11:slot-id=x;object=b", "not a decimal number"),
            ("pkcs11:token=%FF;object=b", "`token` is not UTF-8 text"),
            ("pkcs11:token;object=b", "has no `=`"),
        ] {
            let got = rule(text);
            assert!(got.contains(want), "{text}: {got}");
        }
        let long = format!("pkcs11:token=a;object={}", "b".repeat(300));
        assert!(rule(&long).contains("longer than 256 bytes"));
        let huge = format!("pkcs11:token=a;object={}", "b".repeat(5000));
        assert!(rule(&huge).contains("longer than 4096 bytes"));
    }
}
