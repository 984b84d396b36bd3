use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use svid_broker_token::federation::{FederationIssuer, FederationKey};

use super::*;
use crate::backend::Backend as _;
use crate::grant::{Access, pull_or_push as map_grant};
use crate::test_support::scopes;

/// One issuer for every test: RSA key generation is slow in debug builds.
fn issuer() -> Arc<FederationIssuer> {
    static ISSUER: OnceLock<Arc<FederationIssuer>> = OnceLock::new();
    Arc::clone(ISSUER.get_or_init(|| {
        Arc::new(
            FederationIssuer::new(
                "http://127.0.0.1:1/federation",
                vec![FederationKey::generate().unwrap()],
                Duration::from_secs(300),
            )
            .unwrap(),
        )
    }))
}

fn config() -> ArtifactoryConfig {
    ArtifactoryConfig::new("corp", "http://127.0.0.1:1", issuer(), "svid-broker")
}

fn backend() -> ArtifactoryBackend {
    ArtifactoryBackend::new(config()).unwrap()
}

#[test]
fn grants_map_to_pull_or_push_over_all_repositories() {
    assert_eq!(
        map_grant(&scopes(&["repository:a/app:pull", "repository:b:pull"])),
        Ok(Access::Pull)
    );
    assert_eq!(
        map_grant(&scopes(&["repository:a/app:pull", "repository:b:push"])),
        Ok(Access::Push)
    );
    assert_eq!(
        map_grant(&scopes(&["repository:a:pull,delete"])),
        Err(Failure::UnsupportedAction {
            action: "delete".to_owned()
        })
    );
    assert_eq!(map_grant(&[]), Err(Failure::NoRepository));
    assert!(matches!(
        map_grant(&scopes(&["registry:catalog:*"])),
        Err(Failure::UnsupportedResource { .. })
    ));
}

#[test]
fn the_reuse_key_is_the_access_and_tokens_are_not_revocable() {
    let backend = backend();
    let at = SystemTime::now() + Duration::from_secs(300);
    let pull = BackendGrant::new("corp", "spiffe://a/b", scopes(&["repository:x:pull"]), at);
    let push = BackendGrant::new(
        "corp",
        "spiffe://a/b",
        scopes(&["repository:x:pull", "repository:y:push"]),
        at,
    );
    assert_eq!(backend.reuse_key(&pull).unwrap(), "pull");
    assert_eq!(backend.reuse_key(&push).unwrap(), "push");
    assert!(!backend.revocable());
    assert_eq!(backend.kind(), BackendKind::Artifactory);
    let refused = BackendGrant::new("corp", "spiffe://a/b", scopes(&["repository:x:*"]), at);
    let error = backend.reuse_key(&refused).unwrap_err();
    assert_eq!(error.step, Step::MapGrant);
    assert!(
        error
            .to_string()
            .starts_with("artifactory registry \"corp\": map the grant: "),
        "{error}"
    );
}

#[tokio::test]
async fn revoke_and_sweep_do_nothing() {
    let backend = backend();
    crate::Backend::revoke(&backend, &CredentialHandle::new(0, "someone", ""))
        .await
        .unwrap();
    let report = crate::Backend::sweep(&backend, &[], SystemTime::now())
        .await
        .unwrap();
    assert_eq!(report, crate::SweepReport::default());
    assert_eq!(backend.meter().snapshot().len(), 0);
}

#[tokio::test]
async fn a_subject_the_issuer_cannot_sign_fails_at_signing_before_any_request() {
    let backend = backend();
    let now = SystemTime::now();
    let grant = BackendGrant::new(
        "corp",
        format!("spiffe://example.org/{}", "x".repeat(2000)),
        scopes(&["repository:x:pull"]),
        now + Duration::from_secs(300),
    );
    // The URL points at a closed port: reaching it would be `unreachable`, not this.
    let error = backend.issue(&grant, now).await.unwrap_err();
    assert_eq!(error.step, Step::SignFederatedToken);
    assert!(matches!(error.failure, Failure::Internal { .. }));
    assert!(
        error
            .to_string()
            .starts_with("artifactory registry \"corp\": sign the broker's federated token: "),
        "{error}"
    );
}

#[tokio::test]
async fn an_expired_grant_is_refused_before_signing() {
    let backend = backend();
    let now = SystemTime::now();
    let grant = BackendGrant::new("corp", "spiffe://a/b", scopes(&["repository:x:pull"]), now);
    let error = backend.issue(&grant, now).await.unwrap_err();
    assert_eq!(
        (error.step, error.failure),
        (Step::MapGrant, Failure::GrantExpired)
    );
}

#[test]
fn answers_are_read_strictly() {
    assert!(check_answer("eyJhbGciOi.x.y", 300, "svid-puller").is_ok());
    for (token, expires_in, username) in [
        ("", 300, "u"),
        ("has space", 300, "u"),
        ("tab\t", 300, "u"),
        ("tok", 0, "u"),
        ("tok", MAX_EXPIRES_IN_SECS + 1, "u"),
        ("tok", 300, ""),
        ("tok", 300, " "),
        ("tok", 300, "a:b"),
        ("tok", 300, "a\nb"),
    ] {
        assert!(
            matches!(
                check_answer(token, expires_in, username),
                Err(Failure::Malformed { .. })
            ),
            "{token:?} {expires_in} {username:?}"
        );
    }
    let long = "x".repeat(MAX_ACCESS_TOKEN_BYTES + 1);
    assert!(check_answer(&long, 300, "u").is_err());
    let long_user = "u".repeat(MAX_USERNAME_CHARS + 1);
    assert!(check_answer("tok", 300, &long_user).is_err());
}

#[test]
fn answer_fields_of_the_wrong_type_are_malformed() {
    for body in [
        r#"{"access_token":"t","expires_in":-1,"username":"u"}"#,
        r#"{"access_token":"t","expires_in":1.5,"username":"u"}"#,
        r#"{"access_token":"t","expires_in":"300","username":"u"}"#,
        r#"{"access_token":"t","expires_in":300}"#,
        r#"{"expires_in":300,"username":"u"}"#,
        r#"["t"]"#,
    ] {
        assert!(
            parse_json::<wire::ExchangeResponse>(body.as_bytes(), "x").is_err(),
            "{body}"
        );
    }
    let ok: wire::ExchangeResponse = parse_json(
        br#"{"access_token":"t","expires_in":300,"username":"u","scope":"x","token_type":"Bearer","issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}"#,
        "x",
    )
    .unwrap();
    assert_eq!((ok.expires_in, ok.username.as_str()), (300, "u"));
}

#[test]
fn jfrog_error_bodies_become_one_line() {
    assert_eq!(
        jfrog_text(br#"{"errors":[{"code":"UNAUTHORIZED","message":"Token validation failed"}]}"#),
        "UNAUTHORIZED: Token validation failed"
    );
    assert_eq!(
        jfrog_text(br#"{"errors":[{"status":401,"message":"Bad credentials"}]}"#),
        "Bad credentials"
    );
    assert_eq!(
        jfrog_text(br#"{"errors":[{"message":"a"},{"code":"B"}]}"#),
        "a; B"
    );
    assert_eq!(
        jfrog_text(b"<html>bad gateway</html>"),
        "<html>bad gateway</html>"
    );
}

#[test]
fn an_echoed_jwt_is_scrubbed_before_the_message_is_cut() {
    let backend = backend();
    let jwt = SecretString::from(format!("eyJ{}", "a".repeat(500)));
    let body = format!(
        r#"{{"errors":[{{"code":"BAD_REQUEST","message":"bad token {}"}}]}}"#,
        svid_broker_identity::secret::ExposeSecret::expose_secret(&jwt)
    );
    let text = exchange_message(&backend.api.client, body.as_bytes(), &jwt);
    assert_eq!(text, "BAD_REQUEST: bad token [REDACTED]");
}

#[test]
fn configuration_is_checked() {
    assert!(ArtifactoryBackend::new(config()).is_ok());
    let refused = |change: &dyn Fn(&mut ArtifactoryConfig)| {
        let mut c = config();
        change(&mut c);
        let error = ArtifactoryBackend::new(c).unwrap_err();
        assert_eq!(error.kind, BackendKind::Artifactory);
        assert_eq!(error.registry, "corp");
        error.problem
    };
    for (change, setting) in [
        (
            &(|c: &mut ArtifactoryConfig| c.provider_name = " ".to_owned())
                as &dyn Fn(&mut ArtifactoryConfig),
            "provider_name",
        ),
        (
            &|c: &mut ArtifactoryConfig| c.provider_name = "a\nb".to_owned(),
            "provider_name",
        ),
        (
            &|c: &mut ArtifactoryConfig| c.audience = String::new(),
            "audience",
        ),
    ] {
        assert!(
            matches!(refused(change), ConfigProblem::InvalidSetting { setting: s, .. } if s == setting),
            "{setting}"
        );
    }
    let ConfigProblem::InvalidSetting { setting, rule, .. } =
        refused(&|c| c.subject_template = "{spiffe_id}/{namespace}".to_owned())
    else {
        panic!("not the template rule");
    };
    assert_eq!(setting, "subject_template");
    assert!(rule.starts_with("has an unknown placeholder"), "{rule}");
    assert!(matches!(
        refused(&|c| c.url = "http://artifactory.example.com".to_owned()),
        ConfigProblem::PlainHttpNotLoopback { .. }
    ));
    assert!(matches!(
        refused(&|c| c.max_in_flight = 0),
        ConfigProblem::ZeroLimit { .. }
    ));
    let defaults = config();
    assert_eq!(defaults.audience, "http://127.0.0.1:1");
    assert_eq!(defaults.subject_template, "{spiffe_id}");
}

#[test]
fn debug_shows_no_secret() {
    let shown = format!("{:?}", backend());
    assert!(shown.contains("svid-broker"), "{shown}");
    assert!(!shown.contains("PRIVATE"), "{shown}");
}
