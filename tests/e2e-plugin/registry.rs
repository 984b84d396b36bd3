//! Debian's `docker-registry` and `skopeo`, from the shared harness.

pub(crate) use crate::testkit::process::{Output as SkopeoOutput, require};
pub(crate) use crate::testkit::registry::{
    Registry, TokenAuth, skopeo, skopeo_with_env, write_oci_image,
};
