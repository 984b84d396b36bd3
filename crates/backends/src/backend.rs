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
    /// Which product the backend speaks to: the first word of its errors and the `kind` of its
    /// `/metrics` figures.
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

    /// Whether [`Backend::revoke`] can end a credential before its own expiry. Quay's robot
    /// tokens and Artifactory's short access tokens cannot be revoked one by one: for them
    /// the service drops the credential from reuse at its time and counts it `expired`
    /// instead of calling `revoke`.
    fn revocable(&self) -> bool {
        true
    }

    /// The backend's API request counters.
    fn meter(&self) -> &ApiMeter;
}

/// `impl Backend for $backend` by its inherent `issue`, `revoke`, `sweep` (and, when named,
/// the method listing visible namespaces), with the kind, registry name and meter of its
/// `api` field. With `revocable = false` (a registry that ends its credentials only at their
/// own expiry, and where the broker leaves nothing to sweep) the backend has no `revoke` or
/// `sweep` of its own: revoking does nothing, a sweep finds nothing.
macro_rules! delegate_backend {
    ($backend:ident, revocable = false) => {
        impl $crate::backend::Backend for $backend {
            $crate::backend::delegate_backend!(@methods $backend);

            fn revocable(&self) -> bool {
                false
            }

            fn revoke<'a>(
                &'a self,
                _handle: &'a $crate::credential::CredentialHandle,
            ) -> futures_util::future::BoxFuture<'a, Result<(), $crate::error::BackendError>> {
                Box::pin(async { Ok(()) })
            }

            fn sweep<'a>(
                &'a self,
                _namespaces: &'a [String],
                _now: std::time::SystemTime,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<$crate::credential::SweepReport, $crate::error::BackendError>,
            > {
                Box::pin(async { Ok($crate::credential::SweepReport::default()) })
            }
        }
    };
    ($backend:ident $(, visible_namespaces = $visible:ident)?) => {
        impl $crate::backend::Backend for $backend {
            $crate::backend::delegate_backend!(@methods $backend);

            fn revoke<'a>(
                &'a self,
                handle: &'a $crate::credential::CredentialHandle,
            ) -> futures_util::future::BoxFuture<'a, Result<(), $crate::error::BackendError>> {
                Box::pin($backend::revoke(self, handle))
            }

            fn sweep<'a>(
                &'a self,
                namespaces: &'a [String],
                now: std::time::SystemTime,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<$crate::credential::SweepReport, $crate::error::BackendError>,
            > {
                Box::pin($backend::sweep(self, namespaces, now))
            }

            $(
                fn visible_namespaces(
                    &self,
                ) -> futures_util::future::BoxFuture<
                    '_,
                    Result<Vec<String>, $crate::error::BackendError>,
                > {
                    Box::pin($backend::$visible(self))
                }
            )?
        }
    };
    (@methods $backend:ident) => {
        fn kind(&self) -> $crate::error::BackendKind {
            self.api.kind
        }

        fn registry(&self) -> &str {
            &self.api.registry
        }

        fn reuse_key(
            &self,
            grant: &$crate::credential::BackendGrant,
        ) -> Result<String, $crate::error::BackendError> {
            Ok(self.map(grant)?.reuse_key())
        }

        fn issue<'a>(
            &'a self,
            grant: &'a $crate::credential::BackendGrant,
            now: std::time::SystemTime,
        ) -> futures_util::future::BoxFuture<
            'a,
            Result<$crate::credential::BackendCredential, $crate::error::BackendError>,
        > {
            Box::pin($backend::issue(self, grant, now))
        }

        fn meter(&self) -> &$crate::figures::ApiMeter {
            &self.api.meter
        }
    };
}

pub(crate) use delegate_backend;
