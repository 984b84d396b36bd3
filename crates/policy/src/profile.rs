//! [`Profile`]: the token shape a registry flavour needs, named once for the policy file, the
//! token crate and the server.

use std::fmt;

use serde::Deserialize;

/// The header shape a registry flavour needs. Every profile carries `typ: JWT`, `alg` and the
/// `x5c` chain (leaf first, standard base64 DER), which distribution 2.8 and 3.x both check
/// before anything else; the profiles differ only in the header `kid`.
///
/// The policy file names it (`profile = "distribution-2"`); the token crate maps it to a `kid`
/// format; nothing maps it to anything else.
///
/// Exhaustive on purpose, unlike the error enums: every crate that shapes a token matches on
/// it, and a new registry flavour must fail to compile there rather than fall into a default
/// arm that shapes its tokens like some other flavour's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Profile {
    /// Distribution 2.x (Debian's docker-registry 2.8), Harbor and GitLab: `kid` is the libtrust
    /// key ID of the signing leaf's public key. 2.8 uses the `x5c` chain and ignores `kid` when
    /// `x5c` is present; the `kid` helps tooling that indexes keys by it.
    #[serde(rename = "distribution-2")]
    Distribution2,
    /// Distribution 3.x: `kid` is the RFC 7638 JWK thumbprint, matching how v3 indexes keys from
    /// `rootcertbundle` and its `jwks` file. (v3.0.0 computes EC thumbprints wrongly; the `x5c`
    /// chain still verifies there because it is checked first.)
    #[serde(rename = "distribution-3")]
    Distribution3,
    /// zot's classic bearer mode: `kid` is the RFC 7638 thumbprint. What zot checks (read from
    /// `pkg/api/bearer.go` and `bearer_auth.go`): golang-jwt v5 with zero leeway and
    /// `WithIssuedAt`, so `iat` must not be in the future (the token crate back-dates `iat` and
    /// `nbf`); no `iss` or `aud` check; `access` matched literally (type, name, and the action
    /// by exact string: `*` is not a wildcard there).
    ///
    /// zot ignores `x5c` and `kid`: it verifies with the one public key loaded at startup from
    /// its `cert` setting (a certificate or a bare public key). Unlike distribution, which
    /// trusts the CA, zot in this mode needs its `cert` replaced, and a restart, whenever the
    /// signing leaf rotates.
    #[serde(rename = "zot")]
    Zot,
}

impl Profile {
    /// Every profile, in a stable order.
    pub const ALL: [Self; 3] = [Self::Distribution2, Self::Distribution3, Self::Zot];

    /// The name used in the policy file: `distribution-2`, `distribution-3` or `zot`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Distribution2 => "distribution-2",
            Self::Distribution3 => "distribution-3",
            Self::Zot => "zot",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        profile: Profile,
    }

    #[test]
    fn file_names_round_trip_and_unknown_names_are_refused() {
        for p in Profile::ALL {
            let text = format!("profile = \"{p}\"");
            let parsed: Holder = toml::from_str(&text).unwrap();
            assert_eq!(parsed.profile, p);
            assert_eq!(p.to_string(), p.as_str());
        }
        for bad in [
            "",
            "Distribution-2",
            "distribution",
            "harbor",
            "quay",
            "zot ",
        ] {
            let text = format!("profile = \"{bad}\"");
            assert!(toml::from_str::<Holder>(&text).is_err(), "{bad:?} accepted");
        }
    }
}
