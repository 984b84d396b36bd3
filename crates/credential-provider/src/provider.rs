//! The kubelet flow: match the image, decide key and scope, exchange, answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use svid_broker_client::{
    ClientOptions, Credential, ExchangeParams, ExposeSecret as _, RetryPolicy, SubjectToken,
};

use crate::config::{Config, Scope, SvidAuth};
use crate::kubelet::{AuthConfig, CacheKeyType, Request, Response};

/// Why a matched image cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PlanError {
    /// A repository-scoped entry matched an image without a repository path.
    #[error("image {image:?} has no repository path, but its registry entry is repository-scoped")]
    NoRepository {
        /// The image as the kubelet sent it: a host with no repository path.
        image: String,
    },
}

/// What to ask the broker for, and how to key the answer.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The `auth` key: `host[:port]` or `host[:port]/path`.
    pub(crate) key: String,
    /// Matches the key's scope.
    pub(crate) cache_key_type: CacheKeyType,
    /// The exchange to make: a login credential for the entry's `service`, with the repository
    /// scope (repository-scoped entries) and the service-account token when the kubelet sent one.
    pub(crate) params: ExchangeParams,
    /// Expiry of the service-account token, when one is sent: the answer is never cached
    /// beyond it.
    pub(crate) subject_expiry: Option<SystemTime>,
}

/// `None` when no registry entry matches the image (not ours).
pub(crate) fn plan(config: &Config, request: &Request) -> Result<Option<Plan>, PlanError> {
    let Some(entry) = config.entry_for(&request.image) else {
        return Ok(None);
    };
    let (host, path) = request
        .image
        .split_once('/')
        .unwrap_or((request.image.as_str(), ""));
    let (key, cache_key_type, scopes) = match entry.scope {
        Scope::Registry => (host.to_owned(), CacheKeyType::Registry, Vec::new()),
        Scope::Repository => {
            if path.is_empty() {
                return Err(PlanError::NoRepository {
                    image: request.image.clone(),
                });
            }
            (
                request.image.clone(),
                CacheKeyType::Image,
                vec![format!("repository:{path}:{}", entry.actions.join(","))],
            )
        }
    };
    let mut params = ExchangeParams::login_credential(entry.service.clone()).scopes(scopes);
    let mut subject_expiry = None;
    if let Some(token) = &request.service_account_token {
        subject_expiry = jwt_expiry(token.expose_secret());
        params = params.subject_token(SubjectToken::kubernetes_service_account(token.clone()));
    }
    Ok(Some(Plan {
        key,
        cache_key_type,
        params,
        subject_expiry,
    }))
}

/// The client options this config describes.
pub(crate) fn client_options(config: &Config) -> ClientOptions {
    let mut options = ClientOptions::new(config.broker.clone(), config.broker_id.clone())
        .deadline(config.deadline)
        .retry(RetryPolicy::default().backoff(Duration::from_millis(100), Duration::from_secs(1)));
    if let Some(endpoint) = &config.workload_api {
        options = options.workload_api(endpoint.clone());
    }
    if config.auth == SvidAuth::Jwt
        && let Some(audience) = &config.jwt_audience
    {
        options = options.jwt_svid(audience.clone());
    }
    if let Some(bundles) = &config.broker_bundles {
        options = options.broker_bundles(bundles.clone());
    }
    options
}

/// The response for `credential`: cached for its remaining life (capped by the subject
/// token's) minus `margin`, never negative.
pub(crate) fn respond(
    request: &Request,
    plan: Plan,
    credential: Credential,
    now: SystemTime,
    margin: Duration,
) -> Response {
    let mut life = credential.remaining(now);
    if let Some(expiry) = plan.subject_expiry {
        life = life.min(expiry.duration_since(now).unwrap_or_default());
    }
    Response::credential(
        &request.api_version,
        plan.key,
        plan.cache_key_type,
        life.saturating_sub(margin),
        AuthConfig {
            username: credential.username,
            password: credential.secret,
        },
    )
}

/// The `exp` claim of a compact JWT, read without verifying it (the broker verifies); only
/// used to bound caching.
fn jwt_expiry(token: &str) -> Option<SystemTime> {
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<u64>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(claims.exp?))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use svid_broker_client::{CredentialKind, SecretString, SubjectTokenKind};

    use super::*;

    const CONFIG: &str = r#"
broker = "127.0.0.1:8443"
broker_id = "spiffe://example.org/svid-broker"
[[registries]]
service = "registry.local"
match_images = ["127.0.0.1:5000"]
[[registries]]
service = "other.local"
match_images = ["*.example.org/team"]
scope = "repository"
actions = ["pull", "push"]
"#;

    fn config() -> Config {
        Config::from_toml_str(CONFIG, Path::new("c"), Path::new("/")).unwrap()
    }

    fn request(image: &str, token: Option<&str>) -> Request {
        let mut text = format!(
            r#"{{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"{image}""#
        );
        if let Some(t) = token {
            text.push_str(&format!(r#","serviceAccountToken":"{t}""#));
        }
        text.push('}');
        Request::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn registry_scope_keys_by_host_and_port() {
        let plan = plan(&config(), &request("127.0.0.1:5000/team/app", None))
            .unwrap()
            .unwrap();
        assert_eq!(plan.key, "127.0.0.1:5000");
        assert_eq!(plan.cache_key_type, CacheKeyType::Registry);
        assert_eq!(plan.params.kind, CredentialKind::LoginCredential);
        assert_eq!(plan.params.audience, "registry.local");
        assert!(plan.params.scopes.is_empty());
        assert!(plan.params.subject_token.is_none());
    }

    #[test]
    fn repository_scope_keys_by_image_with_a_ceiling() {
        let plan = plan(&config(), &request("a.example.org/team/app", None))
            .unwrap()
            .unwrap();
        assert_eq!(plan.key, "a.example.org/team/app");
        assert_eq!(plan.cache_key_type, CacheKeyType::Image);
        assert_eq!(plan.params.scopes, ["repository:team/app:pull,push"]);
    }

    #[test]
    fn scopes_and_keys_never_carry_a_tag_or_digest() {
        let digest = format!("sha256:{}", "0f".repeat(32));
        for image in [
            "a.example.org/team/app:v1".to_owned(),
            format!("a.example.org/team/app@{digest}"),
            format!("a.example.org/team/app:v1@{digest}"),
        ] {
            let plan = plan(&config(), &request(&image, None)).unwrap().unwrap();
            assert_eq!(plan.key, "a.example.org/team/app", "{image}");
            assert_eq!(
                plan.params.scopes,
                ["repository:team/app:pull,push"],
                "{image}"
            );
        }
        let plan = plan(&config(), &request("127.0.0.1:5000/team/app:v1", None))
            .unwrap()
            .unwrap();
        assert_eq!(plan.key, "127.0.0.1:5000");
    }

    #[test]
    fn images_of_no_entry_are_not_ours() {
        assert!(
            plan(&config(), &request("docker.io/library/nginx", None))
                .unwrap()
                .is_none()
        );
        // Port must match exactly.
        assert!(
            plan(&config(), &request("127.0.0.1:5001/team/app", None))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn service_account_token_becomes_the_subject_token() {
        let claims =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":2000000000}"#);
        let token = format!("eyJhbGciOiJSUzI1NiJ9.{claims}.sig");
        let plan = plan(&config(), &request("127.0.0.1:5000/team/app", Some(&token)))
            .unwrap()
            .unwrap();
        let subject = plan.params.subject_token.as_ref().unwrap();
        assert_eq!(subject.kind, SubjectTokenKind::KubernetesServiceAccount);
        assert_eq!(subject.token.expose_secret(), token);
        assert_eq!(
            plan.subject_expiry,
            Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );
        assert_eq!(jwt_expiry("not-a-jwt"), None);
    }

    #[test]
    fn cache_duration_is_remaining_life_minus_margin_capped_by_the_subject_token() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let credential = |life: u64| {
            Credential::new(
                CredentialKind::LoginCredential,
                "spiffe://td/node".into(),
                SecretString::from("pw"),
                now + Duration::from_secs(life),
            )
        };
        let req = request("127.0.0.1:5000/team/app", None);
        let line = |plan: Plan, life| {
            respond(&req, plan, credential(life), now, Duration::from_secs(60))
                .to_json_line()
                .unwrap()
                .to_string()
        };
        let p = || plan(&config(), &req).unwrap().unwrap();
        assert!(line(p(), 1800).contains(r#""cacheDuration":"29m0s""#));
        assert!(line(p(), 30).contains(r#""cacheDuration":"0s""#));
        let mut capped = p();
        capped.subject_expiry = Some(now + Duration::from_secs(600));
        assert!(line(capped, 1800).contains(r#""cacheDuration":"9m0s""#));
    }
}
