use super::*;
use crate::test_support::scopes;

fn first_component(repository: &str) -> Option<String> {
    repository
        .split_once('/')
        .map(|(project, _)| project.to_owned())
}

#[test]
fn actions_are_collected_over_every_repository_scope() {
    let actions = repository_actions(
        &scopes(&["repository:a/x:pull", "repository:b/y:push,pull"]),
        |_| Ok(()),
    )
    .unwrap();
    assert_eq!(
        actions.into_iter().collect::<Vec<_>>(),
        [RepositoryAction::Pull, RepositoryAction::Push]
    );
    assert!(repository_actions(&[], |_| Ok(())).unwrap().is_empty());
}

#[test]
fn the_resource_type_is_checked_before_the_project_rule_and_the_project_before_actions() {
    let refused = |_: &ResourceScope| Err(Failure::NoRepository);
    assert!(matches!(
        repository_actions(&scopes(&["registry:catalog:*"]), refused),
        Err(Failure::UnsupportedResource { .. })
    ));
    assert_eq!(
        repository_actions(&scopes(&["repository:a/x:delete"]), refused),
        Err(Failure::NoRepository)
    );
    assert!(matches!(
        repository_actions(&scopes(&["repository:a/x:delete"]), |_| Ok(())),
        Err(Failure::UnsupportedAction { .. })
    ));
}

#[test]
fn one_project_or_the_reason_there_is_none() {
    let (project, actions) = one_project(
        &scopes(&["repository:a/x:pull", "repository:a/y:pull"]),
        first_component,
    )
    .unwrap();
    assert_eq!(project, "a");
    assert_eq!(actions.len(), 1);
    assert!(matches!(
        one_project(
            &scopes(&["repository:a/x:pull", "repository:b/y:pull"]),
            first_component
        ),
        Err(Failure::GrantSpansProjects { .. })
    ));
    assert!(matches!(
        one_project(&scopes(&["repository:lib:pull"]), first_component),
        Err(Failure::RepositoryOutsideProject { .. })
    ));
    assert_eq!(
        one_project(&[], first_component),
        Err(Failure::NoRepository)
    );
}

#[test]
fn reuse_keys_join_their_parts_with_single_spaces() {
    assert_eq!(reuse_key("team-a", ["pull", "push"]), "team-a pull push");
    assert_eq!(reuse_key("", ["pull", "push"]), "pull push");
    assert_eq!(reuse_key("team-a", []), "team-a");
}
