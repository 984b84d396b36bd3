use std::time::Duration;

use super::*;

fn harbor_error(step: Step, failure: Failure) -> BackendError {
    BackendError::new("corp", BackendKind::Harbor, step, failure)
}

fn create_in_team_a() -> Step {
    Step::CreateRobot {
        project: "team-a".to_owned(),
    }
}

#[test]
fn display_names_kind_registry_step_and_vendor_answer() {
    let error = harbor_error(
        create_in_team_a(),
        Failure::Forbidden {
            message: "permission scope is invalid".to_owned(),
        },
    );
    assert_eq!(
        error.to_string(),
        "harbor registry \"corp\": create robot in project \"team-a\": Harbor answered 403 \
         Forbidden: permission scope is invalid"
    );
}

#[test]
fn display_of_every_step_names_its_object() {
    let cases = [
        (Step::MapGrant, "map the grant"),
        (Step::Issue, "issue a credential"),
        (
            Step::LookUpProject {
                project: "team-a".to_owned(),
            },
            "look up project \"team-a\"",
        ),
        (create_in_team_a(), "create robot in project \"team-a\""),
        (
            Step::ListRobots {
                project: "team-b".to_owned(),
            },
            "list robots of project \"team-b\"",
        ),
        (
            Step::DeleteRobot {
                robot_id: 42,
                name: "robot$team-a+svid-1-0011223344556677".to_owned(),
            },
            "delete robot 42 \"robot$team-a+svid-1-0011223344556677\"",
        ),
    ];
    for (step, shown) in cases {
        assert_eq!(step.to_string(), shown);
    }
}

#[test]
fn display_of_failures_reads_as_a_sentence() {
    let cases = [
        (
            Failure::Unreachable { during: "connect" },
            "cannot reach Harbor (connect failed)",
        ),
        (
            Failure::Timeout {
                after: Duration::from_secs(10),
            },
            "Harbor did not answer within 10s",
        ),
        (
            Failure::Timeout {
                after: Duration::from_millis(1500),
            },
            "Harbor did not answer within 1.5s",
        ),
        (
            Failure::Unauthorized,
            "Harbor answered 401 Unauthorized: the broker's credential was refused",
        ),
        (
            Failure::Forbidden {
                message: String::new(),
            },
            "Harbor answered 403 Forbidden",
        ),
        (
            Failure::RateLimited {
                retry_after: Some(Duration::from_secs(3)),
            },
            "Harbor answered 429 Too Many Requests (retry after 3s)",
        ),
        (
            Failure::RateLimited { retry_after: None },
            "Harbor answered 429 Too Many Requests",
        ),
        (
            Failure::ServerError { status: 502 },
            "Harbor answered 502 Bad Gateway",
        ),
        (
            Failure::Rejected {
                status: 409,
                message: "already exists".to_owned(),
            },
            "Harbor answered 409 Conflict: already exists",
        ),
        (
            Failure::Rejected {
                status: 499,
                message: String::new(),
            },
            "Harbor answered 499",
        ),
        (
            Failure::Malformed {
                what: "robot created: no secret",
            },
            "Harbor's answer is malformed: robot created: no secret",
        ),
        (
            Failure::TooLarge { max: 1024 },
            "Harbor's answer is larger than 1024 bytes",
        ),
        (Failure::NoSuchProject, "Harbor has no project of that name"),
        (
            Failure::GrantSpansProjects {
                projects: vec!["team-a".to_owned(), "team-b".to_owned()],
            },
            "the grant spans projects \"team-a\", \"team-b\"; one Harbor credential serves one project",
        ),
        (
            Failure::UnsupportedAction {
                action: "delete".to_owned(),
            },
            "action \"delete\" cannot be granted through Harbor (only pull and push)",
        ),
        (
            Failure::UnsupportedResource {
                resource_type: "registry".to_owned(),
            },
            "resource type \"registry\" cannot be granted through Harbor (only repository)",
        ),
        (
            Failure::RepositoryOutsideProject {
                repository: "app".to_owned(),
            },
            "repository \"app\" names no Harbor project (expected \"project/name\")",
        ),
        (
            Failure::NoRepository,
            "the grant names no repository with an action (a registry-wide request cannot be served: ask for a repository scope; the kubelet plugin: scope = \"repository\")",
        ),
        (
            Failure::GrantExpired,
            "the grant's revocation time has already passed",
        ),
        (
            Failure::BudgetExhausted {
                max_in_flight: 4,
                waited: Duration::from_secs(10),
            },
            "all 4 in-flight API call slots for Harbor stayed busy for 10s",
        ),
        (Failure::Interrupted, "the operation was interrupted"),
        (Failure::Internal { what: "rng" }, "internal error: rng"),
    ];
    for (failure, shown) in cases {
        let error = harbor_error(create_in_team_a(), failure);
        let expected =
            format!("harbor registry \"corp\": create robot in project \"team-a\": {shown}");
        assert_eq!(error.to_string(), expected);
    }
}

#[test]
fn a_failure_alone_speaks_of_the_registry() {
    assert_eq!(
        Failure::Unauthorized.to_string(),
        "the registry answered 401 Unauthorized: the broker's credential was refused"
    );
}

#[test]
fn names_with_quotes_or_control_characters_are_escaped() {
    let error = BackendError::new(
        "co\"rp\n",
        BackendKind::Harbor,
        Step::LookUpProject {
            project: "a\u{1b}[31m".to_owned(),
        },
        Failure::NoSuchProject,
    );
    let shown = error.to_string();
    assert!(
        !shown.contains('\n') && !shown.contains('\u{1b}'),
        "{shown}"
    );
    assert!(
        shown.starts_with("harbor registry \"co\\\"rp\\n\": look up project"),
        "{shown}"
    );
}

#[test]
fn only_transient_failures_are_retryable() {
    let retryable = [
        Failure::Unreachable { during: "connect" },
        Failure::Timeout {
            after: Duration::from_secs(1),
        },
        Failure::RateLimited { retry_after: None },
        Failure::ServerError { status: 503 },
        Failure::BudgetExhausted {
            max_in_flight: 4,
            waited: Duration::from_secs(1),
        },
        Failure::Interrupted,
    ];
    let final_ = [
        Failure::Unauthorized,
        Failure::Forbidden {
            message: String::new(),
        },
        Failure::Rejected {
            status: 400,
            message: String::new(),
        },
        Failure::Malformed { what: "x" },
        Failure::TooLarge { max: 1 },
        Failure::NoSuchProject,
        Failure::NoRepository,
        Failure::GrantExpired,
        Failure::GrantSpansProjects { projects: vec![] },
        Failure::UnsupportedAction {
            action: "delete".to_owned(),
        },
        Failure::Internal { what: "x" },
    ];
    for failure in retryable {
        assert!(
            harbor_error(Step::MapGrant, failure.clone()).retryable(),
            "{failure:?}"
        );
    }
    for failure in final_ {
        assert!(
            !harbor_error(Step::MapGrant, failure.clone()).retryable(),
            "{failure:?}"
        );
    }
}

#[test]
fn metric_labels_are_stable() {
    assert_eq!(create_in_team_a().name(), "create_robot");
    assert_eq!(Failure::Unauthorized.outcome(), "unauthorized");
    assert_eq!(Failure::NoRepository.outcome(), "grant_refused");
    assert_eq!(
        Failure::RateLimited { retry_after: None }.outcome(),
        "rate_limited"
    );
}

#[test]
fn vendor_messages_are_printable_and_capped() {
    assert_eq!(
        sanitize_vendor_message("  bad\n\trequest \u{7}  "),
        "bad  request"
    );
    let long = "x".repeat(1000);
    let kept = sanitize_vendor_message(&long);
    assert_eq!(kept.len(), MAX_VENDOR_MESSAGE_CHARS + 3);
    assert!(kept.ends_with("..."));
    let exact = "y".repeat(MAX_VENDOR_MESSAGE_CHARS);
    assert_eq!(sanitize_vendor_message(&exact), exact);
    // Multi-byte characters count as one each and are never split.
    let wide = "é".repeat(300);
    assert_eq!(
        sanitize_vendor_message(&wide).chars().count(),
        MAX_VENDOR_MESSAGE_CHARS + 3
    );
}

#[test]
fn config_errors_name_the_registry() {
    let error = ConfigError {
        registry: "corp".to_owned(),
        kind: BackendKind::Harbor,
        problem: ConfigProblem::PlainHttpNotLoopback {
            host: "harbor.example.com".to_owned(),
        },
    };
    assert_eq!(
        error.to_string(),
        "harbor registry \"corp\": plain http is allowed only to a loopback address, not to \
         \"harbor.example.com\"; use https"
    );
}
