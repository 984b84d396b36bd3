//! The pass for a registry whose own API makes the credential (Harbor, Nexus): the engine stops
//! at the decided grant, and records what the backend answered exactly once; a registry-wide
//! request (no scope) is decided for every repository where one credential reaches them all,
//! and refused where credentials are per project.

use std::time::Duration;

use svid_broker_backends::{
    BackendCredential, BackendError, BackendKind, CredentialHandle, Failure, Step,
};
use svid_broker_identity::secret::SecretString;
use svid_broker_policy::ResourceScope;

use super::*;
use crate::authn::{AuthMethod, Authenticated, Caller};
use crate::error::{ErrorCode, InvalidRequest};
use crate::request::{Endpoint, ExchangeKind, ExchangeRequest, Presented, RequestContext};
use crate::testutil::{AUDIENCE, BUILDER, Fixture, POLICY, READER, id, t0};

const HARBOR_SERVICE: &str = "harbor-registry";
const ROBOT_SECRET: &str = "Robot-Secret-1";

fn harbor_policy() -> String {
    format!(
        r#"{POLICY}
[[registries]]
name = "corp"
service = "harbor-registry"
kind = "harbor"
url = "http://127.0.0.1:1"
credential_file = "/nonexistent/harbor.credential"
token_ttl_seconds = 600
hosts = ["harbor.example.org"]

[[rules]]
id = "builder-team-b"
subject = "{BUILDER}"
registry = "corp"
repositories = ["team-b/**"]
actions = ["pull", "push"]
"#
    )
}

fn fixture() -> Fixture {
    Fixture::with_policy(&harbor_policy(), |_| {})
}

fn request(kind: ExchangeKind, scopes: &[&str], endpoint: Endpoint) -> ExchangeRequest {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    let context = RequestContext::new(kind, endpoint, Some("127.0.0.1:4000".parse().unwrap()))
        .with_service(HARBOR_SERVICE)
        .with_scopes(&scopes);
    ExchangeRequest::parse(context, HARBOR_SERVICE, &scopes).unwrap()
}

fn login(scopes: &[&str]) -> ExchangeRequest {
    request(ExchangeKind::LoginCredential, scopes, Endpoint::Grpc)
}

fn subject(who: &str) -> Subject {
    Subject {
        authenticated: Authenticated::svid(Caller {
            spiffe_id: id(who),
            method: AuthMethod::JwtSvid,
        }),
        on_behalf: None,
    }
}

fn begun_pass(f: &Fixture, who: &str, scopes: &[&str]) -> BackendPass {
    match f
        .broker
        .begin_exchange_for(&subject(who), &login(scopes), t0())
        .unwrap()
    {
        Begun::Backend(pass) => pass,
        Begun::Done(done) => panic!("issued without the backend: {done:?}"),
    }
}

fn robot(expires_at: SystemTime) -> BackendCredential {
    BackendCredential::new(
        "robot$team-b+svid-1-ab",
        SecretString::from(ROBOT_SECRET.to_owned()),
        "robot 42 robot$team-b+svid-1-ab",
        expires_at,
        CredentialHandle::new(42, "robot$team-b+svid-1-ab", "team-b"),
    )
}

#[test]
fn a_harbor_login_credential_stops_at_the_decided_grant_and_records_nothing_yet() {
    let f = fixture();
    let now = t0();
    let pass = begun_pass(&f, BUILDER, &["repository:team-b/app:pull"]);
    assert_eq!(pass.grant().registry.name(), "corp");
    assert_eq!(
        pass.grant().granted,
        [ResourceScope::parse("repository:team-b/app:pull").unwrap()]
    );
    assert_eq!(pass.subject().spiffe_id().as_str(), BUILDER);
    assert_eq!(pass.revoke_at(now), now + Duration::from_secs(600));
    assert!(f.audit_lines().is_empty(), "{:?}", f.audit_lines());
}

#[test]
fn the_policy_still_decides_before_any_backend_is_asked() {
    let f = fixture();
    // READER has no rule on corp: refused by the policy, recorded, and no pass comes out.
    let err = f
        .broker
        .begin_exchange_for(
            &subject(READER),
            &login(&["repository:team-b/app:pull"]),
            t0(),
        )
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied, "{err:?}");
    let lines = f.audit_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["decision"], "deny");
}

#[test]
fn finishing_records_one_event_with_the_credential_id_and_never_the_secret() {
    let f = fixture();
    let now = t0();
    let pass = begun_pass(&f, BUILDER, &["repository:team-b/app:pull,push"]);
    let revoke_at = pass.revoke_at(now);
    let exchanged = f
        .broker
        .finish_exchange(
            &login(&["repository:team-b/app:pull,push"]),
            pass,
            Ok(robot(revoke_at)),
            now,
        )
        .unwrap();
    let ExchangeOutput::RegistryCredential(c) = &exchanged.output else {
        panic!("{exchanged:?}");
    };
    assert_eq!(c.backend, svid_broker_policy::RegistryKind::Harbor);
    assert_eq!(c.credential.username, "robot$team-b+svid-1-ab");
    assert!(!format!("{exchanged:?}").contains(ROBOT_SECRET));

    let lines = f.audit_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let event = &lines[0];
    assert_eq!(event["decision"], "allow");
    assert_eq!(event["kind"], "registry_credential");
    assert_eq!(event["backend"], "harbor");
    assert_eq!(event["credential_id"], "robot 42 robot$team-b+svid-1-ab");
    assert!(event.get("jti").is_none(), "{event}");
    assert_eq!(event["reason"], "registry credential created");
    assert_eq!(event["granted"], "repository:team-b/app:pull,push");
    assert_eq!(event["subject"], BUILDER);
    assert!(!lines[0].to_string().contains(ROBOT_SECRET));
    let metrics = f.broker.metrics().render();
    assert!(
        metrics.contains(r#"svid_broker_issued_total{endpoint="grpc",kind="login_credential"} 1"#),
        "{metrics}"
    );
}

#[test]
fn a_backend_failure_is_recorded_naming_the_registry_and_the_step() {
    let f = fixture();
    let now = t0();
    for (failure, code) in [
        (Failure::ServerError { status: 503 }, ErrorCode::Unavailable),
        (Failure::Unauthorized, ErrorCode::Unavailable),
        (
            Failure::GrantSpansProjects {
                projects: vec!["team-a".to_owned(), "team-b".to_owned()],
            },
            ErrorCode::InvalidArgument,
        ),
    ] {
        let pass = begun_pass(&f, BUILDER, &["repository:team-b/app:pull"]);
        let failure_text = format!("{failure:?}");
        let err = f
            .broker
            .finish_exchange(
                &login(&["repository:team-b/app:pull"]),
                pass,
                Err(BackendError::new(
                    "corp",
                    BackendKind::Harbor,
                    Step::CreateRobot {
                        project: "team-b".to_owned(),
                    },
                    failure,
                )),
                now,
            )
            .unwrap_err();
        assert_eq!(err.code(), code, "{failure_text}: {err:?}");
        let shown = err.to_string();
        assert!(shown.contains("\"corp\""), "{shown}");
        assert!(shown.contains("team-b"), "{shown}");
    }
    let lines = f.audit_lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in &lines {
        assert_eq!(line["decision"], "deny");
        assert!(line["reason"].as_str().unwrap().contains("corp"), "{line}");
    }
}

#[test]
fn the_synchronous_exchange_refuses_a_backend_grant_and_records_it() {
    let f = fixture();
    let err = f
        .broker
        .exchange_for(
            &subject(BUILDER),
            &login(&["repository:team-b/app:pull"]),
            t0(),
        )
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ExchangeError::InvalidArgument {
                reason: InvalidRequest::NeedsBackend { registry }
            } if registry == "corp"
        ),
        "{err:?}"
    );
    assert_eq!(f.audit_lines().len(), 1);
}

#[test]
fn a_broker_signed_token_for_a_harbor_registry_is_refused_before_authentication() {
    let f = fixture();
    let jwt = f.jwt(BUILDER, AUDIENCE);
    for endpoint in [Endpoint::Grpc, Endpoint::RealmGet] {
        let req = request(
            ExchangeKind::AccessToken,
            &["repository:team-b/app:pull"],
            endpoint,
        );
        let presented = Presented::JwtSvid(&jwt);
        let err = match endpoint {
            Endpoint::Grpc => f
                .broker
                .begin_exchange(&req, &presented, None, t0())
                .map(|_| ())
                .unwrap_err(),
            _ => f
                .broker
                .realm_token(&req, &presented, t0())
                .map(|_| ())
                .unwrap_err(),
        };
        let text = err.to_string();
        assert_eq!(err.code(), ErrorCode::InvalidArgument, "{text}");
        assert!(
            text.contains("kind = \"harbor\"") && text.contains("login credential"),
            "{text}"
        );
    }
}

// A registry-wide login credential (no scope: the Docker credential helper, a plugin entry with
// `scope = "registry"`) for the backend kinds.

const NEXUS_SERVICE: &str = "nexus-docker";
/// Allowed only pull on the Nexus registry.
const PARTNER: &str = "spiffe://partner.org/puller";

fn nexus_fixture() -> Fixture {
    let policy = format!(
        r#"{}
[[registries]]
name = "nexus"
service = "nexus-docker"
kind = "nexus"
url = "http://127.0.0.1:1"
credential_file = "/nonexistent/nexus.credential"
pull_role = "nx-docker-pull"
push_role = "nx-docker-push"
token_ttl_seconds = 600
hosts = ["nexus.example.org"]

[[rules]]
id = "reader-pulls-nexus"
subject = "{READER}"
registry = "nexus"
repositories = ["**"]
whole_registry = true
actions = ["pull"]

[[rules]]
id = "ci-pushes-nexus"
trust_domain = "example.org"
registry = "nexus"
repositories = ["**"]
whole_registry = true
actions = ["pull", "push"]

[[rules]]
id = "partner-pulls-nexus"
subject = "{PARTNER}"
registry = "nexus"
repositories = ["**"]
whole_registry = true
actions = ["pull"]

[[rules]]
id = "no-push-for-prod"
subject = "spiffe://example.org/ns/prod/sa/*"
registry = "nexus"
repositories = ["**"]
effect = "deny"
actions = ["push"]
"#,
        harbor_policy()
    );
    Fixture::with_policy(&policy, |_| {})
}

fn registry_wide(service: &str) -> ExchangeRequest {
    let context = RequestContext::new(
        ExchangeKind::LoginCredential,
        Endpoint::Grpc,
        Some("127.0.0.1:4000".parse().unwrap()),
    )
    .with_service(service);
    ExchangeRequest::parse(context, service, &[]).unwrap()
}

fn begin_registry_wide(f: &Fixture, who: &str, service: &str) -> Result<Begun, ExchangeError> {
    f.broker
        .begin_exchange_for(&subject(who), &registry_wide(service), t0())
}

#[test]
fn a_registry_wide_nexus_request_carries_the_actions_policy_allows_on_every_repository() {
    let f = nexus_fixture();
    // BUILDER is in example.org: pull and push on every repository.
    let Ok(Begun::Backend(pass)) = begin_registry_wide(&f, BUILDER, NEXUS_SERVICE) else {
        panic!("no backend pass");
    };
    assert_eq!(pass.grant().registry.name(), "nexus");
    assert!(pass.grant().requested.is_empty());
    assert_eq!(
        pass.grant().granted,
        [ResourceScope::every_repository([
            svid_broker_policy::Action::PULL,
            svid_broker_policy::Action::PUSH
        ])]
    );
    assert!(f.audit_lines().is_empty(), "{:?}", f.audit_lines());
}

#[test]
fn a_registry_wide_nexus_request_allowed_only_pull_carries_only_pull() {
    let f = nexus_fixture();
    let Ok(Begun::Backend(pass)) = begin_registry_wide(&f, PARTNER, NEXUS_SERVICE) else {
        panic!("no backend pass");
    };
    let granted: Vec<String> = pass.grant().granted.iter().map(|s| s.to_string()).collect();
    assert_eq!(granted, ["repository:**:pull"]);
}

#[test]
fn a_deny_rule_for_every_repository_leaves_a_registry_wide_nexus_grant_pull_only() {
    let f = nexus_fixture();
    // READER: allowed pull (its own rule) and push (the trust-domain rule), denied push.
    let Ok(Begun::Backend(pass)) = begin_registry_wide(&f, READER, NEXUS_SERVICE) else {
        panic!("no backend pass");
    };
    let granted: Vec<String> = pass.grant().granted.iter().map(|s| s.to_string()).collect();
    assert_eq!(granted, ["repository:**:pull"]);
    // What the backend is handed is what the audit event names once it is finished.
    let now = t0();
    let exchanged = f
        .broker
        .finish_exchange(
            &registry_wide(NEXUS_SERVICE),
            pass,
            Ok(BackendCredential::new(
                "svid-1-ab",
                SecretString::from(ROBOT_SECRET.to_owned()),
                "user svid-1-ab",
                now + Duration::from_secs(600),
                CredentialHandle::new(0, "svid-1-ab", ""),
            )),
            now,
        )
        .unwrap();
    assert!(matches!(
        exchanged.output,
        ExchangeOutput::RegistryCredential(_)
    ));
    let lines = f.audit_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[0]["granted"], "repository:**:pull");
    assert_eq!(lines[0]["backend"], "nexus");
}

#[test]
fn a_registry_wide_nexus_request_with_nothing_granted_is_refused_as_today() {
    let f = nexus_fixture();
    // Another trust domain: no rule on nexus at all.
    let err = begin_registry_wide(&f, "spiffe://other.org/ns/x/sa/y", NEXUS_SERVICE)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ExchangeError::PermissionDenied {
                reason: crate::error::Denial::RegistryNotAllowed
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "subject may not use this registry");
    let lines = f.audit_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["decision"], "deny");
}

#[test]
fn a_registry_wide_harbor_request_is_refused_saying_its_credentials_are_per_project() {
    let f = nexus_fixture();
    let err = begin_registry_wide(&f, BUILDER, HARBOR_SERVICE)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err:?}");
    assert!(
        matches!(
            &err,
            ExchangeError::InvalidArgument {
                reason: InvalidRequest::RegistryWideNotServed { registry, kind }
            } if registry == "corp" && *kind == svid_broker_policy::RegistryKind::Harbor
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("its credentials are per project") && text.contains("scope = \"repository\""),
        "{text}"
    );
    let lines = f.audit_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["decision"], "deny");
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("its credentials are per project"),
        "{}",
        lines[0]
    );

    // A subject with no rule on the Harbor registry is told only that.
    let err = begin_registry_wide(&f, READER, HARBOR_SERVICE)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied, "{err:?}");
}

#[test]
fn a_registry_wide_request_for_a_token_registry_is_still_the_brokers_login_credential() {
    let f = nexus_fixture();
    let Ok(Begun::Done(done)) = begin_registry_wide(&f, READER, crate::testutil::SERVICE) else {
        panic!("not issued by the broker");
    };
    assert!(matches!(done.output, ExchangeOutput::LoginCredential(_)));
}
