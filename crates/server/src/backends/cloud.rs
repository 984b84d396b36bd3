//! The cloud registry kinds (`ecr`, `gar`, `acr`): the policy's `aws`, `gcp` or `azure` table
//! and the broker's OIDC issuer turned into the backend, each behind its cargo feature.
//!
//! A build without a kind's feature still loads a policy naming it (the policy crate knows
//! every kind), and refuses the entry here, before the server starts, naming the feature.

#![cfg_attr(
    not(all(feature = "ecr", feature = "gar", feature = "acr")),
    allow(
        dead_code,
        reason = "a build without a cloud kind refuses its entries before reading them"
    )
)]

use std::path::Path;
use std::sync::Arc;

use svid_broker_backends::Backend;
use svid_broker_policy::{CloudAccount, Federation, RegistryApi};
use svid_broker_token::federation::FederationIssuer;

use super::{BackendsError, BackendsOptions};

/// What every cloud backend is built from.
pub(super) struct CloudEntry<'a> {
    pub(super) name: &'a str,
    pub(super) api: &'a RegistryApi,
    pub(super) federation: &'a Federation,
    pub(super) issuer: Arc<FederationIssuer>,
    pub(super) options: &'a BackendsOptions,
}

impl CloudEntry<'_> {
    fn config_error(&self) -> impl Fn(svid_broker_backends::ConfigError) -> BackendsError + '_ {
        |source| BackendsError::Config {
            registry: self.name.to_owned(),
            source,
        }
    }

    /// The JWT's `aud` and `sub` template as the policy resolved them, and the CA file.
    fn audience(&self) -> String {
        // `jwt_audience` is resolved by the policy (the cloud's default when unset), so the
        // broker and `svid-broker policy explain` agree on it.
        self.api.jwt_audience().unwrap_or_default()
    }

    fn ca_file(&self) -> Option<std::path::PathBuf> {
        self.api.ca_file().map(Path::to_owned)
    }
}

/// Sets what every cloud configuration takes from its entry the same way: the JWT's `aud`
/// and `sub` template, the CA file and the request deadline. (A macro: the three config
/// structs share these field names but no trait.)
#[cfg(any(feature = "ecr", feature = "gar", feature = "acr"))]
macro_rules! set_shared {
    ($config:ident, $entry:ident) => {
        $config.audience = $entry.audience();
        if let Some(template) = $entry.federation.subject_template() {
            template.clone_into(&mut $config.subject_template);
        }
        $config.ca_file = $entry.ca_file();
        $config.request_deadline = $entry.options.request_deadline;
    };
}

/// The backend of a cloud entry, or why it cannot be built.
pub(super) fn build(
    entry: &CloudEntry<'_>,
    cloud: &CloudAccount,
) -> Result<Arc<dyn Backend>, BackendsError> {
    match cloud {
        CloudAccount::Aws(aws) => build_ecr(entry, aws),
        CloudAccount::Gcp(gcp) => build_gar(entry, gcp),
        CloudAccount::Azure(azure) => build_acr(entry, azure),
    }
}

#[cfg(feature = "ecr")]
fn build_ecr(
    entry: &CloudEntry<'_>,
    aws: &svid_broker_policy::AwsAccount,
) -> Result<Arc<dyn Backend>, BackendsError> {
    use svid_broker_backends::ecr::{EcrBackend, EcrConfig};
    let mut config = EcrConfig::new(
        entry.name,
        entry.issuer.clone(),
        aws.role_arn.clone(),
        aws.region.clone(),
    );
    if let Some(endpoint) = &aws.sts_endpoint {
        endpoint.clone_into(&mut config.sts_endpoint);
    }
    if let Some(endpoint) = &aws.ecr_endpoint {
        endpoint.clone_into(&mut config.ecr_endpoint);
    }
    if let Some(seconds) = aws.session_duration_seconds {
        config.session_duration = std::time::Duration::from_secs(seconds);
    }
    config.session_tags.clone_from(&aws.session_tags);
    set_shared!(config, entry);
    Ok(Arc::new(
        EcrBackend::new(config).map_err(entry.config_error())?,
    ))
}

#[cfg(feature = "gar")]
fn build_gar(
    entry: &CloudEntry<'_>,
    gcp: &svid_broker_policy::GcpAccount,
) -> Result<Arc<dyn Backend>, BackendsError> {
    use svid_broker_backends::gar::{GarBackend, GarConfig};
    let mut config = GarConfig::new(
        entry.name,
        entry.issuer.clone(),
        gcp.workload_identity_provider.clone(),
        gcp.service_account.clone(),
    );
    if let Some(endpoint) = &gcp.sts_endpoint {
        endpoint.clone_into(&mut config.sts_endpoint);
    }
    if let Some(endpoint) = &gcp.iamcredentials_endpoint {
        endpoint.clone_into(&mut config.iamcredentials_endpoint);
    }
    set_shared!(config, entry);
    Ok(Arc::new(
        GarBackend::new(config).map_err(entry.config_error())?,
    ))
}

#[cfg(feature = "acr")]
fn build_acr(
    entry: &CloudEntry<'_>,
    azure: &svid_broker_policy::AzureAccount,
) -> Result<Arc<dyn Backend>, BackendsError> {
    use svid_broker_backends::acr::{AcrBackend, AcrConfig};
    let mut config = AcrConfig::new(
        entry.name,
        entry.issuer.clone(),
        entry.api.url(),
        azure.tenant_id.clone(),
        azure.client_id.clone(),
    );
    if let Some(host) = &azure.authority_host {
        host.clone_into(&mut config.authority_host);
    }
    set_shared!(config, entry);
    Ok(Arc::new(
        AcrBackend::new(config).map_err(entry.config_error())?,
    ))
}

/// The refusal of a kind whose cargo feature this build lacks.
#[cfg(any(not(feature = "ecr"), not(feature = "gar"), not(feature = "acr")))]
fn not_in_build(entry: &CloudEntry<'_>, kind: svid_broker_policy::RegistryKind) -> BackendsError {
    BackendsError::KindNotInBuild {
        registry: entry.name.to_owned(),
        kind,
    }
}

#[cfg(not(feature = "ecr"))]
fn build_ecr(
    entry: &CloudEntry<'_>,
    _aws: &svid_broker_policy::AwsAccount,
) -> Result<Arc<dyn Backend>, BackendsError> {
    Err(not_in_build(entry, svid_broker_policy::RegistryKind::Ecr))
}

#[cfg(not(feature = "gar"))]
fn build_gar(
    entry: &CloudEntry<'_>,
    _gcp: &svid_broker_policy::GcpAccount,
) -> Result<Arc<dyn Backend>, BackendsError> {
    Err(not_in_build(entry, svid_broker_policy::RegistryKind::Gar))
}

#[cfg(not(feature = "acr"))]
fn build_acr(
    entry: &CloudEntry<'_>,
    _azure: &svid_broker_policy::AzureAccount,
) -> Result<Arc<dyn Backend>, BackendsError> {
    Err(not_in_build(entry, svid_broker_policy::RegistryKind::Acr))
}
