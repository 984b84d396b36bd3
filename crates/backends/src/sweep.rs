//! The sweep loop every backend shares: list the broker's credentials, delete those whose
//! encoded revocation time has passed, count the rest, and go on past failures.
//!
//! The backends plug in through traits whose futures are boxed and `Send` by signature, so
//! the shared loop stays `Send` for [`Backend::sweep`](crate::Backend::sweep).

use std::time::SystemTime;

use futures_util::future::BoxFuture;

use crate::credential::SweepReport;
use crate::error::BackendError;
use crate::naming::unix_seconds_floor;

/// How a backend reads and deletes the credentials one listing returns.
pub(crate) trait CredentialSweep: Sync {
    /// One listed credential.
    type Listed: Sync;

    /// The revocation time encoded in its name, when it is one of the broker's.
    fn revoke_time(&self, listed: &Self::Listed) -> Option<u64>;

    /// Deletes an expired credential of `namespace` (and logs it).
    fn delete_expired<'a>(
        &'a self,
        namespace: &'a str,
        listed: &'a Self::Listed,
    ) -> BoxFuture<'a, Result<(), BackendError>>;
}

/// A backend whose credentials are listed per namespace (Harbor and GitLab projects).
pub(crate) trait NamespaceSweep: CredentialSweep {
    /// Every credential of `namespace` (up to the backend's page cap; a cut listing is noted
    /// in `report`).
    fn list<'a>(
        &'a self,
        namespace: &'a str,
        report: &'a mut SweepReport,
    ) -> BoxFuture<'a, Result<Vec<Self::Listed>, BackendError>>;
}

/// Sweeps each namespace in turn: lists its credentials, then deletes every one whose
/// revocation time is not after `now`. A namespace that cannot be listed, or a failed delete,
/// goes into the report and the sweep goes on.
///
/// # Errors
/// Only when no namespace could be listed: the first listing error.
pub(crate) async fn sweep_namespaces<B: NamespaceSweep>(
    backend: &B,
    namespaces: &[String],
    now: SystemTime,
) -> Result<SweepReport, BackendError> {
    let mut report = SweepReport::default();
    for namespace in namespaces {
        let listed = match backend.list(namespace, &mut report).await {
            Ok(listed) => listed,
            Err(error) => {
                report.failures.push(error);
                continue;
            }
        };
        report.namespaces_listed += 1;
        report.credentials_seen += listed.len();
        delete_due(backend, &mut report, namespace, listed, now).await;
    }
    if report.namespaces_listed == 0 && !report.failures.is_empty() {
        return Err(report.failures.swap_remove(0));
    }
    Ok(report)
}

/// Deletes every listed credential whose revocation time is not after `now` (counted in
/// `deleted`, or its failure kept), counts those whose time is ahead as `not_due`, and leaves
/// those with no readable time (not the broker's) alone.
pub(crate) async fn delete_due<B: CredentialSweep>(
    backend: &B,
    report: &mut SweepReport,
    namespace: &str,
    listed: impl IntoIterator<Item = B::Listed>,
    now: SystemTime,
) {
    let now_unix = unix_seconds_floor(now);
    for credential in listed {
        match backend.revoke_time(&credential) {
            Some(at) if at <= now_unix => {
                match backend.delete_expired(namespace, &credential).await {
                    Ok(()) => report.deleted += 1,
                    Err(error) => report.failures.push(error),
                }
            }
            Some(_) => report.not_due += 1,
            None => {}
        }
    }
}

#[cfg(test)]
mod tests;
