//! The `aws`, `gcp` and `azure` tables of a cloud registry entry (`kind = "ecr"`, `"gar"`,
//! `"acr"`): which cloud identity the broker's JWT is exchanged for, and where that cloud's
//! token services are. Each table belongs to exactly one kind and is required there.
//!
//! The loader checks shapes a typo would break (an ARN, a region, a provider resource name,
//! GUIDs, endpoint URLs: `https://`, or `http://` only on a loopback address); the backend
//! checks the rest when it is built, before the server starts.

use serde::Deserialize;
use svid_broker_identity::report::redact_url_userinfo;
use toml::Spanned;

use super::{Loader, check_api_url, is_token_text};
use crate::error::{Location, PolicyError};
use crate::kind::RegistryKind;

/// Longest value of a cloud setting, in bytes.
pub const MAX_CLOUD_FIELD_LEN: usize = 255;
/// The shortest STS session `aws.session_duration_seconds` may ask for (STS's own floor).
pub const MIN_AWS_SESSION_SECONDS: u64 = 900;
/// The longest STS session `aws.session_duration_seconds` may ask for (STS's own ceiling;
/// the role's `MaxSessionDuration` may be lower).
pub const MAX_AWS_SESSION_SECONDS: u64 = 43_200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAws {
    role_arn: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    sts_endpoint: Option<Spanned<String>>,
    ecr_endpoint: Option<Spanned<String>>,
    session_duration_seconds: Option<Spanned<i64>>,
    session_tags: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGcp {
    workload_identity_provider: Option<Spanned<String>>,
    service_account: Option<Spanned<String>>,
    sts_endpoint: Option<Spanned<String>>,
    iamcredentials_endpoint: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAzure {
    tenant_id: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    authority_host: Option<Spanned<String>>,
}

/// The cloud identity a cloud registry's credentials are made for.
///
/// Exhaustive on purpose, like [`RegistryKind`]: the server matches on it to build a backend,
/// and a new cloud must fail to compile there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CloudAccount {
    /// `kind = "ecr"`: the `aws` table.
    Aws(AwsAccount),
    /// `kind = "gar"`: the `gcp` table.
    Gcp(GcpAccount),
    /// `kind = "acr"`: the `azure` table.
    Azure(AzureAccount),
}

/// `aws.*`: the IAM role the broker's JWT assumes through STS `AssumeRoleWithWebIdentity`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct AwsAccount {
    /// `aws.role_arn` (required): `arn:<partition>:iam::<12-digit account>:role/<name>`.
    pub role_arn: String,
    /// `aws.region` (required): the region of the registry and of the STS and ECR endpoints.
    pub region: String,
    /// `aws.sts_endpoint`: an STS override; `None` means `https://sts.<region>.amazonaws.com`.
    pub sts_endpoint: Option<String>,
    /// `aws.ecr_endpoint`: an ECR API override; `None` means
    /// `https://api.ecr.<region>.amazonaws.com`.
    pub ecr_endpoint: Option<String>,
    /// `aws.session_duration_seconds`: the STS session asked for, 900 to 43,200; `None` means
    /// 900. The ECR token lives 12 hours whatever it is.
    pub session_duration_seconds: Option<u64>,
    /// `aws.session_tags`: a SPIFFE ID path pattern whose captures become principal tags in
    /// the JWT (`/ns/{namespace}/sa/{service_account}`), so one role can serve many workloads.
    pub session_tags: Option<String>,
}

/// `gcp.*`: the workload identity pool provider that trusts the broker, and the service
/// account it impersonates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct GcpAccount {
    /// `gcp.workload_identity_provider` (required): the full
    /// `//iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`.
    pub workload_identity_provider: String,
    /// `gcp.service_account` (required): the service account's email.
    pub service_account: String,
    /// `gcp.sts_endpoint`: a Google STS override; `None` means `https://sts.googleapis.com`.
    pub sts_endpoint: Option<String>,
    /// `gcp.iamcredentials_endpoint`: an IAM Credentials override; `None` means
    /// `https://iamcredentials.googleapis.com`.
    pub iamcredentials_endpoint: Option<String>,
}

/// `azure.*`: the Entra ID application whose federated identity credential trusts the broker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct AzureAccount {
    /// `azure.tenant_id` (required): the directory (tenant) id.
    pub tenant_id: String,
    /// `azure.client_id` (required): the application (client) id.
    pub client_id: String,
    /// `azure.authority_host`: an Entra ID override; `None` means
    /// `https://login.microsoftonline.com`.
    pub authority_host: Option<String>,
}

/// The JWT audience AWS STS expects by default (the IAM OIDC provider's client id).
pub const AWS_DEFAULT_JWT_AUDIENCE: &str = "sts.amazonaws.com";
/// The JWT audience an Entra ID federated identity credential expects by default.
pub const AZURE_DEFAULT_JWT_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The DNS suffix of AWS's public endpoints for the partition of `role_arn`
/// (`amazonaws.com.cn` for `aws-cn`, else `amazonaws.com`).
pub fn aws_domain(role_arn: &str) -> &'static str {
    if role_arn.starts_with("arn:aws-cn:") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

impl AwsAccount {
    /// `aws.sts_endpoint`, or the region's public STS endpoint in the role's partition.
    pub fn sts_url(&self) -> String {
        self.sts_endpoint.clone().unwrap_or_else(|| {
            format!("https://sts.{}.{}", self.region, aws_domain(&self.role_arn))
        })
    }

    /// `aws.ecr_endpoint`, or the region's public ECR API endpoint in the role's partition.
    pub fn ecr_url(&self) -> String {
        self.ecr_endpoint.clone().unwrap_or_else(|| {
            format!(
                "https://api.ecr.{}.{}",
                self.region,
                aws_domain(&self.role_arn)
            )
        })
    }
}

impl CloudAccount {
    /// The `aud` of the broker's JWT when `jwt_audience` is not set: `sts.amazonaws.com`
    /// (AWS), `https:` + the workload identity provider (what a Google provider without
    /// allowed audiences accepts), `api://AzureADTokenExchange` (Entra ID).
    pub fn default_jwt_audience(&self) -> String {
        match self {
            Self::Aws(_) => AWS_DEFAULT_JWT_AUDIENCE.to_owned(),
            Self::Gcp(gcp) => format!("https:{}", gcp.workload_identity_provider),
            Self::Azure(_) => AZURE_DEFAULT_JWT_AUDIENCE.to_owned(),
        }
    }

    /// The API that makes the registry's credential, when it is not the registry's own
    /// (`url`): ECR's API endpoint, Google IAM Credentials. `None` for Azure, whose
    /// credential comes from the registry (its login server's `/oauth2/exchange`).
    pub fn api_url(&self) -> Option<String> {
        match self {
            Self::Aws(aws) => Some(aws.ecr_url()),
            Self::Gcp(gcp) => Some(
                gcp.iamcredentials_endpoint
                    .clone()
                    .unwrap_or_else(|| "https://iamcredentials.googleapis.com".to_owned()),
            ),
            Self::Azure(_) => None,
        }
    }
}

/// The cloud tables as written, for [`Loader::cloud_account`].
pub(super) struct RawClouds<'r> {
    pub(super) aws: &'r Option<Spanned<RawAws>>,
    pub(super) gcp: &'r Option<Spanned<RawGcp>>,
    pub(super) azure: &'r Option<Spanned<RawAzure>>,
}

impl Loader<'_> {
    /// The cloud table of a cloud kind (required), refusing every table that does not belong
    /// to `kind`.
    pub(super) fn cloud_account(
        &self,
        registry: &str,
        kind: RegistryKind,
        raw: &RawClouds<'_>,
        entry_at: Location,
    ) -> Result<Option<CloudAccount>, PolicyError> {
        let tables: [(&'static str, Option<Location>, RegistryKind); 3] = [
            (
                "aws",
                raw.aws.as_ref().map(|t| self.at(t)),
                RegistryKind::Ecr,
            ),
            (
                "gcp",
                raw.gcp.as_ref().map(|t| self.at(t)),
                RegistryKind::Gar,
            ),
            (
                "azure",
                raw.azure.as_ref().map(|t| self.at(t)),
                RegistryKind::Acr,
            ),
        ];
        for (field, at, owner) in tables {
            if let Some(at) = at
                && owner != kind
            {
                return Err(PolicyError::FieldNotForKind {
                    registry: registry.to_owned(),
                    kind,
                    field,
                    why: match owner {
                        RegistryKind::Ecr => "only an `ecr` registry assumes an AWS role",
                        RegistryKind::Gar => "only a `gar` registry federates with Google",
                        _ => "only an `acr` registry federates with Entra ID",
                    },
                    at,
                });
            }
        }
        let fields = Fields {
            loader: self,
            registry,
            kind,
            entry_at,
        };
        let account = match kind {
            RegistryKind::Ecr => {
                let table =
                    fields.table("aws", raw.aws, "the IAM role the broker's JWT assumes")?;
                let role_arn = fields.required("aws.role_arn", &table.role_arn, is_role_arn)?;
                let region = fields.required("aws.region", &table.region, is_region)?;
                let session_duration_seconds = table
                    .session_duration_seconds
                    .as_ref()
                    .map(|value| {
                        u64::try_from(*value.get_ref())
                            .ok()
                            .filter(|s| {
                                (MIN_AWS_SESSION_SECONDS..=MAX_AWS_SESSION_SECONDS).contains(s)
                            })
                            .ok_or_else(|| {
                                fields.invalid(
                                    "aws.session_duration_seconds",
                                    "must be 900 to 43200 (STS's own bounds)",
                                    self.at(value),
                                )
                            })
                    })
                    .transpose()?;
                CloudAccount::Aws(AwsAccount {
                    role_arn,
                    region,
                    sts_endpoint: fields.endpoint("aws.sts_endpoint", &table.sts_endpoint)?,
                    ecr_endpoint: fields.endpoint("aws.ecr_endpoint", &table.ecr_endpoint)?,
                    session_duration_seconds,
                    session_tags: fields.optional(
                        "aws.session_tags",
                        &table.session_tags,
                        |t| t.starts_with('/'),
                    )?,
                })
            }
            RegistryKind::Gar => {
                let table = fields.table(
                    "gcp",
                    raw.gcp,
                    "the workload identity provider and service account",
                )?;
                CloudAccount::Gcp(GcpAccount {
                    workload_identity_provider: fields.required(
                        "gcp.workload_identity_provider",
                        &table.workload_identity_provider,
                        |p| p.starts_with("//iam.googleapis.com/projects/"),
                    )?,
                    service_account: fields.required(
                        "gcp.service_account",
                        &table.service_account,
                        |s| {
                            s.split_once('@')
                                .is_some_and(|(n, d)| !n.is_empty() && !d.is_empty())
                        },
                    )?,
                    sts_endpoint: fields.endpoint("gcp.sts_endpoint", &table.sts_endpoint)?,
                    iamcredentials_endpoint: fields.endpoint(
                        "gcp.iamcredentials_endpoint",
                        &table.iamcredentials_endpoint,
                    )?,
                })
            }
            RegistryKind::Acr => {
                let table = fields.table(
                    "azure",
                    raw.azure,
                    "the Entra ID application that trusts the broker",
                )?;
                CloudAccount::Azure(AzureAccount {
                    tenant_id: fields.required("azure.tenant_id", &table.tenant_id, is_guid)?,
                    client_id: fields.required("azure.client_id", &table.client_id, is_guid)?,
                    authority_host: fields
                        .endpoint("azure.authority_host", &table.authority_host)?,
                })
            }
            RegistryKind::Token
            | RegistryKind::Harbor
            | RegistryKind::Gitlab
            | RegistryKind::Quay
            | RegistryKind::Artifactory
            | RegistryKind::Nexus => return Ok(None),
        };
        Ok(Some(account))
    }
}

/// One entry's context for reading its cloud table.
struct Fields<'l, 's> {
    loader: &'l Loader<'s>,
    registry: &'l str,
    kind: RegistryKind,
    entry_at: Location,
}

impl Fields<'_, '_> {
    fn table<'t, T>(
        &self,
        field: &'static str,
        table: &'t Option<Spanned<T>>,
        why: &'static str,
    ) -> Result<&'t T, PolicyError> {
        table
            .as_ref()
            .map(Spanned::get_ref)
            .ok_or_else(|| PolicyError::FieldRequiredForKind {
                registry: self.registry.to_owned(),
                kind: self.kind,
                field,
                why,
                at: self.entry_at,
            })
    }

    fn invalid(&self, field: &'static str, rule: &'static str, at: Location) -> PolicyError {
        PolicyError::InvalidCloudSetting {
            registry: self.registry.to_owned(),
            field,
            rule,
            at,
        }
    }

    fn required(
        &self,
        field: &'static str,
        value: &Option<Spanned<String>>,
        shape: fn(&str) -> bool,
    ) -> Result<String, PolicyError> {
        self.optional(field, value, shape)?
            .ok_or_else(|| PolicyError::FieldRequiredForKind {
                registry: self.registry.to_owned(),
                kind: self.kind,
                field,
                why: "it names the cloud identity the broker's JWT is exchanged for",
                at: self.entry_at,
            })
    }

    fn optional(
        &self,
        field: &'static str,
        value: &Option<Spanned<String>>,
        shape: fn(&str) -> bool,
    ) -> Result<Option<String>, PolicyError> {
        let Some(value) = value else {
            return Ok(None);
        };
        let text = value.get_ref();
        if !is_token_text(text, MAX_CLOUD_FIELD_LEN) || !shape(text) {
            return Err(self.invalid(field, shape_rule(field), self.loader.at(value)));
        }
        Ok(Some(text.clone()))
    }

    fn endpoint(
        &self,
        field: &'static str,
        value: &Option<Spanned<String>>,
    ) -> Result<Option<String>, PolicyError> {
        let Some(value) = value else {
            return Ok(None);
        };
        check_api_url(value.get_ref())
            .map(Some)
            .map_err(|reason| PolicyError::InvalidApiUrl {
                registry: self.registry.to_owned(),
                field,
                url: redact_url_userinfo(value.get_ref())
                    .chars()
                    .take(200)
                    .collect(),
                reason,
                at: self.loader.at(value),
            })
    }
}

/// The rule a cloud setting's value breaks, for its error.
fn shape_rule(field: &str) -> &'static str {
    match field {
        "aws.role_arn" => {
            "must be an IAM role ARN: arn:<partition>:iam::<12-digit account>:role/<name>"
        }
        "aws.region" => "must be an AWS region: 1 to 32 of [a-z0-9-] (us-east-1)",
        "aws.session_tags" => {
            "must be a SPIFFE ID path pattern starting with '/' (/ns/{namespace}/sa/{service_account})"
        }
        "gcp.workload_identity_provider" => {
            "must be the provider's full name: //iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>"
        }
        "gcp.service_account" => {
            "must be a service account's email (name@project.iam.gserviceaccount.com)"
        }
        "azure.tenant_id" | "azure.client_id" => {
            "must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
        }
        _ => "must be 1 to 255 printable characters",
    }
}

fn is_role_arn(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    !partition.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource
            .strip_prefix("role/")
            .is_some_and(|name| !name.is_empty() && !name.ends_with('/') && !name.starts_with('/'))
}

fn is_region(region: &str) -> bool {
    (1..=32).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_regions_and_guids_have_their_shapes() {
        assert!(is_role_arn("arn:aws:iam::123456789012:role/svid-puller"));
        assert!(is_role_arn(
            "arn:aws-cn:iam::123456789012:role/path/to/puller"
        ));
        for bad in [
            "arn:aws:iam::12345678901:role/x",
            "arn:aws:iam:us-east-1:123456789012:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:sts::123456789012:role/x",
            "role/x",
        ] {
            assert!(!is_role_arn(bad), "{bad}");
        }
        assert!(is_region("eu-west-3"));
        assert!(!is_region("EU-WEST-3") && !is_region("") && !is_region("us_east_1"));
        assert!(is_guid("0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"));
        assert!(!is_guid("0f1e2d3c4b5a69788a9b0c1d2e3f4a5b"));
        assert!(!is_guid("0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5z"));
    }
}
