//! The kubelet's view of a response: strict (unknown fields refused), case-sensitive, exactly
//! one JSON object on stdout.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `CredentialProviderResponse`, as the kubelet's strict codec decodes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StrictResponse {
    pub(crate) kind: String,
    #[serde(rename = "apiVersion")]
    pub(crate) api_version: String,
    #[serde(rename = "cacheKeyType")]
    pub(crate) cache_key_type: String,
    #[serde(rename = "cacheDuration")]
    pub(crate) cache_duration: Option<String>,
    pub(crate) auth: Option<BTreeMap<String, StrictAuth>>,
}

/// One `auth` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StrictAuth {
    pub(crate) username: String,
    pub(crate) password: String,
}

/// Decodes `stdout` as the kubelet would and checks the rules it applies before using it:
/// one object plus an optional trailing newline, the expected apiVersion and kind, a valid
/// `cacheKeyType`, and a Go duration.
pub(crate) fn decode(stdout: &str, api_version: &str) -> StrictResponse {
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout must be one line: {stdout:?}"
    );
    assert!(stdout.ends_with('\n'));
    let response: StrictResponse = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("strict decoding failed: {e}: {stdout:?}"));
    assert_eq!(response.api_version, api_version);
    assert_eq!(response.kind, "CredentialProviderResponse");
    assert!(
        ["Image", "Registry", "Global"].contains(&response.cache_key_type.as_str()),
        "{}",
        response.cache_key_type
    );
    if let Some(d) = &response.cache_duration {
        go_duration_secs(d);
    }
    response
}

/// Seconds of a Go duration string of the forms we emit (`0s`, `45s`, `9m30s`, `1h0m0s`).
pub(crate) fn go_duration_secs(text: &str) -> u64 {
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number
            .parse()
            .unwrap_or_else(|_| panic!("bad duration {text:?}"));
        number.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => panic!("bad duration unit in {text:?}"),
        };
    }
    assert!(number.is_empty(), "bad duration {text:?}");
    total
}

#[test]
fn the_strict_schema_refuses_extra_and_miscased_fields() {
    let ok = r#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Image","cacheDuration":"0s","auth":{}}"#;
    assert!(serde_json::from_str::<StrictResponse>(ok).is_ok());
    let extra = ok.replace("\"auth\":{}", "\"auth\":{},\"extra\":1");
    assert!(serde_json::from_str::<StrictResponse>(&extra).is_err());
    let miscased = ok.replace("cacheKeyType", "CacheKeyType");
    assert!(serde_json::from_str::<StrictResponse>(&miscased).is_err());
    let auth_extra = ok.replace(
        "\"auth\":{}",
        "\"auth\":{\"r\":{\"username\":\"u\",\"password\":\"p\",\"auth\":\"x\"}}",
    );
    assert!(serde_json::from_str::<StrictResponse>(&auth_extra).is_err());
    assert_eq!(go_duration_secs("1h2m3s"), 3723);
    assert_eq!(go_duration_secs("0s"), 0);
}
