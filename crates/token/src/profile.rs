//! Token profiles: which `kid` a registry flavour looks for.

use std::fmt;
use std::str::FromStr;

/// The header shape a registry flavour needs. Every profile carries `typ: JWT`, `alg` and the
/// `x5c` chain (leaf first, standard base64 DER), which distribution 2.8 and 3.x both check
/// before anything else; the profiles differ only in `kid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TokenProfile {
    /// Distribution 2.x (Debian's docker-registry 2.8), Harbor and GitLab: `kid` is the libtrust
    /// key ID of the signing leaf's public key. 2.8 uses the `x5c` chain and ignores `kid` when
    /// `x5c` is present; the `kid` helps tooling that indexes keys by it.
    #[default]
    Distribution2,
    /// Distribution 3.x: `kid` is the RFC 7638 JWK thumbprint, matching how v3 indexes keys from
    /// `rootcertbundle` and its `jwks` file. (v3.0.0 computes EC thumbprints wrongly; the `x5c`
    /// chain still verifies there because it is checked first.)
    Distribution3,
    /// zot's classic bearer mode: `kid` is the RFC 7638 thumbprint. What zot checks (read from
    /// `pkg/api/bearer.go` and `bearer_auth.go`): golang-jwt v5 with zero leeway and
    /// `WithIssuedAt`, so `iat` must not be in the future (covered by back-dating `iat`/`nbf`
    /// by [`crate::CLOCK_BACKDATE`]); no `iss` or `aud` check; `access` matched literally
    /// (type, name, and the action by exact string: `*` is not a wildcard there).
    ///
    /// zot ignores `x5c` and `kid`: it verifies with the one public key loaded at startup from
    /// its `cert` setting (a certificate or a bare public key). Unlike distribution, which
    /// trusts the CA, zot in this mode needs its `cert` replaced, and a restart, whenever the
    /// signing leaf rotates.
    Zot,
}

impl TokenProfile {
    /// Every profile, in a stable order.
    pub const ALL: [Self; 3] = [Self::Distribution2, Self::Distribution3, Self::Zot];

    /// The configuration name: `distribution-2`, `distribution-3` or `zot`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Distribution2 => "distribution-2",
            Self::Distribution3 => "distribution-3",
            Self::Zot => "zot",
        }
    }

    /// Whether `kid` is the libtrust key ID (else the RFC 7638 thumbprint).
    pub(crate) const fn uses_libtrust_kid(self) -> bool {
        matches!(self, Self::Distribution2)
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Distribution2 => 0,
            Self::Distribution3 => 1,
            Self::Zot => 2,
        }
    }
}

impl fmt::Display for TokenProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A profile name that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown token profile {name:?}; expected distribution-2 (also harbor, gitlab), distribution-3 or zot"
)]
#[non_exhaustive]
pub struct ProfileError {
    /// The rejected name (truncated to 64 bytes).
    pub name: String,
}

impl FromStr for TokenProfile {
    type Err = ProfileError;

    /// Accepts the configuration names, plus `harbor` and `gitlab` for [`Self::Distribution2`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "distribution-2" | "harbor" | "gitlab" => Ok(Self::Distribution2),
            "distribution-3" => Ok(Self::Distribution3),
            "zot" => Ok(Self::Zot),
            other => Err(ProfileError {
                name: other.chars().take(64).collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_aliases_map_to_distribution_2() {
        for p in TokenProfile::ALL {
            assert_eq!(p.name().parse::<TokenProfile>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!("harbor".parse(), Ok(TokenProfile::Distribution2));
        assert_eq!("gitlab".parse(), Ok(TokenProfile::Distribution2));
        assert_eq!(TokenProfile::default(), TokenProfile::Distribution2);
    }

    #[test]
    fn unknown_names_are_rejected() {
        for bad in ["", "Distribution-2", "distribution", "quay", "zot "] {
            let err = bad.parse::<TokenProfile>().unwrap_err();
            assert_eq!(err.name, bad);
        }
        let long = "x".repeat(1000);
        assert_eq!(long.parse::<TokenProfile>().unwrap_err().name.len(), 64);
    }

    #[test]
    fn only_distribution_2_uses_libtrust_kids() {
        assert!(TokenProfile::Distribution2.uses_libtrust_kid());
        assert!(!TokenProfile::Distribution3.uses_libtrust_kid());
        assert!(!TokenProfile::Zot.uses_libtrust_kid());
        let mut idx: Vec<usize> = TokenProfile::ALL.iter().map(|p| p.index()).collect();
        idx.dedup();
        assert_eq!(idx, vec![0, 1, 2]);
    }
}
