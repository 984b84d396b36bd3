use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::error::{BackendKind, Failure, Step};

/// The revocation times a namespace lists, or `Err` when it cannot be listed.
type Listed = Result<Vec<Option<u64>>, ()>;

/// Credentials named by their revocation time (`None`: not the broker's); deleting `fails`
/// fails.
#[derive(Default)]
struct Listing {
    namespaces: Vec<(&'static str, Listed)>,
    fails: Option<u64>,
    deleted: Mutex<Vec<(String, u64)>>,
}

fn failure(step: Step) -> BackendError {
    BackendError::new("mock", BackendKind::Harbor, step, Failure::NoSuchProject)
}

impl CredentialSweep for Listing {
    type Listed = Option<u64>;

    fn revoke_time(&self, listed: &Option<u64>) -> Option<u64> {
        *listed
    }

    fn delete_expired<'a>(
        &'a self,
        namespace: &'a str,
        listed: &'a Option<u64>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let at = listed.unwrap_or_default();
            if self.fails == Some(at) {
                return Err(failure(Step::ListProjects));
            }
            self.deleted
                .lock()
                .unwrap()
                .push((namespace.to_owned(), at));
            Ok(())
        })
    }
}

impl NamespaceSweep for Listing {
    fn list<'a>(
        &'a self,
        namespace: &'a str,
        _report: &'a mut SweepReport,
    ) -> BoxFuture<'a, Result<Vec<Option<u64>>, BackendError>> {
        Box::pin(async move {
            let found = self.namespaces.iter().find(|(name, _)| *name == namespace);
            match found {
                Some((_, Ok(listed))) => Ok(listed.clone()),
                _ => Err(failure(Step::LookUpProject {
                    project: namespace.to_owned(),
                })),
            }
        })
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

#[tokio::test]
async fn due_credentials_are_deleted_the_rest_counted_and_failures_kept() {
    let listing = Listing {
        namespaces: vec![
            ("a", Ok(vec![Some(100), Some(200), None, Some(99)])),
            ("b", Err(())),
            ("c", Ok(vec![Some(50)])),
        ],
        fails: Some(99),
        ..Listing::default()
    };
    let now = UNIX_EPOCH + Duration::from_millis(150_500);
    let report = sweep_namespaces(&listing, &names(&["a", "b", "c"]), now)
        .await
        .unwrap();
    assert_eq!(report.namespaces_listed, 2);
    assert_eq!(report.credentials_seen, 5);
    assert_eq!(report.deleted, 2);
    assert_eq!(report.not_due, 1);
    assert_eq!(report.failures.len(), 2, "{report:?}");
    assert_eq!(
        *listing.deleted.lock().unwrap(),
        [("a".to_owned(), 100), ("c".to_owned(), 50)]
    );
}

#[tokio::test]
async fn a_time_equal_to_now_is_due() {
    let listing = Listing {
        namespaces: vec![("a", Ok(vec![Some(150), Some(151)]))],
        ..Listing::default()
    };
    let now = UNIX_EPOCH + Duration::from_millis(150_999);
    let report = sweep_namespaces(&listing, &names(&["a"]), now)
        .await
        .unwrap();
    assert_eq!((report.deleted, report.not_due), (1, 1));
}

#[tokio::test]
async fn nothing_listed_is_the_first_listing_error() {
    let listing = Listing::default();
    let error = sweep_namespaces(&listing, &names(&["x", "y"]), UNIX_EPOCH)
        .await
        .unwrap_err();
    assert_eq!(
        error.step,
        Step::LookUpProject {
            project: "x".to_owned()
        }
    );
    let empty = sweep_namespaces(&listing, &[], UNIX_EPOCH).await.unwrap();
    assert_eq!(empty, SweepReport::default());
}
