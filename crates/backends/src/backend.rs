//! The seam every registry product implements, so a [`BackendService`](crate::BackendService)
//! can hold any of them.

use std::fmt;
use std::time::SystemTime;

use futures_util::future::BoxFuture;

use crate::credential::{BackendCredential, BackendGrant, CredentialHandle, SweepReport};
use crate::error::{BackendError, BackendKind};
use crate::figures::ApiMeter;

/// One registry's native credential API: make a credential for a grant, delete one, and sweep
/// away the expired ones this broker (or an earlier run of it) made.
///
/// Implementations keep no state a restart would lose: what a sweep needs is in the registry
/// (Harbor: the revocation time is in the robot's name).
pub trait Backend: Send + Sync + fmt::Debug {
    /// The registry product.
    fn kind(&self) -> BackendKind;

    /// The registry's name in the policy.
    fn registry(&self) -> &str;

    /// What makes two grants interchangeable for reuse, apart from the subject (Harbor: the
    /// project and the action set), or why the grant cannot be served. Pure: no API call.
    ///
    /// # Errors
    /// A [`BackendError`] at [`Step::MapGrant`](crate::Step::MapGrant).
    fn reuse_key(&self, grant: &BackendGrant) -> Result<String, BackendError>;

    /// Makes a new credential for `grant` (never reused: `reused` is false). `now` is the
    /// current time, for the registry-side lifetime.
    fn issue<'a>(
        &'a self,
        grant: &'a BackendGrant,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<BackendCredential, BackendError>>;

    /// Deletes a credential. One already gone counts as deleted.
    fn revoke<'a>(
        &'a self,
        handle: &'a CredentialHandle,
    ) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Deletes the broker's credentials in `namespaces` whose revocation time is before `now`,
    /// leaving every other credential alone.
    ///
    /// # Errors
    /// Only when no namespace could be listed (the first such error); otherwise failures are
    /// in the report.
    fn sweep<'a>(
        &'a self,
        namespaces: &'a [String],
        now: SystemTime,
    ) -> BoxFuture<'a, Result<SweepReport, BackendError>>;

    /// Every namespace the broker's credential can see (bounded), for a sweep whose policy
    /// reaches namespaces it does not name (a rule on `team-{ns}/**`). A backend without such
    /// a listing sees none.
    ///
    /// # Errors
    /// The listing's [`BackendError`].
    fn visible_namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, BackendError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The backend's API request counters.
    fn meter(&self) -> &ApiMeter;
}
