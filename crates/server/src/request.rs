//! What a client asks for, checked once at its edge.
//!
//! The realm and the gRPC service each turn their wire form into an [`ExchangeRequest`]
//! (syntax: sizes, parameters, scope grammar) and a [`Presented`] credential; nothing after
//! them parses caller text again. What needs the policy (is the `service` known, how many
//! scopes it allows) is the engine's, in one place, before anything is authenticated.
//!
//! A request that fails at its edge is still audited: [`RequestContext`] is the part of a
//! request that can always be recorded (capped, printable), built before anything is checked.

use std::net::SocketAddr;

use rustls_pki_types::CertificateDer;
use svid_broker_policy::ResourceScope;
use svid_broker_policy::scope;

use crate::audit::{cut, printable};
use crate::error::{AuthFailure, InvalidRequest};

/// Longest realm username accepted (Basic user or password-grant `username`): a SPIFFE ID is
/// at most 2048 bytes.
pub const MAX_USERNAME_LEN: usize = 2048;
/// Longest `client_id` accepted at the realm (printable ASCII only).
pub const MAX_CLIENT_ID_LEN: usize = 128;
/// Longest `service` recorded in the audit log; longer ones are cut. The wire limit: no
/// registry's service is longer, so an issued credential's event always names it in full.
pub const MAX_AUDIT_SERVICE_LEN: usize = svid_broker_identity::limits::MAX_SERVICE_LEN;
/// Longest `requested` text recorded in the audit log; longer ones are cut.
pub const MAX_AUDIT_REQUESTED_LEN: usize = 4096;

/// Where a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `GET /token`.
    RealmGet,
    /// `POST /token`.
    RealmPost,
    /// gRPC `Exchange`.
    Grpc,
    /// `POST /oauth2/token` (RFC 8693 token exchange over HTTP).
    OAuth2Token,
}

impl Endpoint {
    /// The metrics and audit label.
    pub fn label(self) -> &'static str {
        match self {
            Self::RealmGet => "realm_get",
            Self::RealmPost => "realm_post",
            Self::Grpc => "grpc",
            Self::OAuth2Token => "oauth2_token",
        }
    }

    /// Whether the request came in at the token realm (an empty grant is then an empty token,
    /// as the token spec's clients expect; over gRPC it is a refusal).
    pub fn is_realm(self) -> bool {
        match self {
            Self::RealmGet | Self::RealmPost => true,
            Self::Grpc | Self::OAuth2Token => false,
        }
    }
}

/// What the caller wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExchangeKind {
    /// A registry bearer token for the given scopes.
    AccessToken,
    /// A registry login credential (username and password for the realm).
    LoginCredential,
}

impl ExchangeKind {
    /// The metrics and audit label.
    pub fn label(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::LoginCredential => "login_credential",
        }
    }
}

/// The recordable part of a request: known before anything is checked, and safe to write to
/// the audit log whatever the caller sent (caller text is cut and reduced to printable ASCII).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestContext {
    /// What was asked for (an access token when the edge could not tell).
    pub kind: ExchangeKind,
    /// The edge it came in at.
    pub endpoint: Endpoint,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// The `service` as sent, cut to [`MAX_AUDIT_SERVICE_LEN`], printable.
    pub service: String,
    /// The scopes as sent, space-joined, cut to [`MAX_AUDIT_REQUESTED_LEN`], printable.
    pub requested: String,
    /// The client's `client_id`, only once it passed [`is_valid_client_id`].
    pub client_id: Option<String>,
}

impl RequestContext {
    /// A context for a request of `kind` from `peer` at `endpoint`, naming nothing yet.
    pub fn new(kind: ExchangeKind, endpoint: Endpoint, peer: Option<SocketAddr>) -> Self {
        Self {
            kind,
            endpoint,
            peer,
            service: String::new(),
            requested: String::new(),
            client_id: None,
        }
    }

    /// Records the `service` as sent.
    #[must_use]
    pub fn with_service(mut self, service: &str) -> Self {
        self.service = printable(cut(service, MAX_AUDIT_SERVICE_LEN));
        self
    }

    /// Records the scope parameters as sent.
    #[must_use]
    pub fn with_scopes(mut self, scopes: &[String]) -> Self {
        let joined = scopes
            .iter()
            .filter(|s| !s.is_empty())
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        self.requested = printable(cut(&joined, MAX_AUDIT_REQUESTED_LEN));
        self
    }

    /// Records a `client_id` that passed [`is_valid_client_id`] (others are dropped: the
    /// edge refuses them).
    #[must_use]
    pub fn with_client_id(mut self, client_id: Option<&str>) -> Self {
        self.client_id = client_id
            .filter(|id| is_valid_client_id(id))
            .map(str::to_owned);
        self
    }
}

/// One request, checked: the service is named and the scopes parse. Built only by
/// [`ExchangeRequest::parse`], so holding one means the edge checks passed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExchangeRequest {
    /// What can be recorded of it.
    pub context: RequestContext,
    /// The registry's `service`, as sent (not empty).
    pub service: String,
    /// The scopes asked for, parsed and canonical; empty when none were asked for.
    pub scopes: Vec<ResourceScope>,
    /// The realm also returns a refresh token (`offline_token=true`, `access_type=offline`
    /// or a `refresh_token` grant).
    pub refresh_token: bool,
}

impl ExchangeRequest {
    /// Checks a request's syntax: a `service` is named and every scope parameter (each may
    /// hold several space-separated scopes) parses. Whether the service is known, and how many
    /// scopes it allows, is the policy's, checked by the engine.
    ///
    /// # Errors
    /// [`InvalidRequest::MissingService`] or [`InvalidRequest::Scope`].
    pub fn parse(
        context: RequestContext,
        service: &str,
        scopes: &[String],
    ) -> Result<Self, InvalidRequest> {
        if service.is_empty() {
            return Err(InvalidRequest::MissingService);
        }
        let scopes = scope::parse_scopes(scopes.iter().map(String::as_str))
            .map_err(InvalidRequest::Scope)?;
        Ok(Self {
            context,
            service: service.to_owned(),
            scopes,
            refresh_token: false,
        })
    }

    /// The same request, also asking for a refresh token.
    #[must_use]
    pub fn with_refresh_token(mut self, refresh_token: bool) -> Self {
        self.refresh_token = refresh_token;
        self
    }
}

/// What a caller presented to prove who it is, as its edge found it.
#[non_exhaustive]
pub enum Presented<'a> {
    /// Nothing.
    Nothing,
    /// The client certificate chain of the mutual-TLS handshake (leaf first).
    X509Chain(&'a [CertificateDer<'a>]),
    /// A JWT-SVID bearer (gRPC `authorization` metadata).
    JwtSvid(&'a str),
    /// A secret sent to the realm: a Basic password or Bearer token, or a password grant. A
    /// login credential (`sbl1.`), a refresh token (`sbr2.`), or else a JWT-SVID; `username`
    /// is the Basic user or the grant's `username`.
    Secret {
        /// The username, if any.
        username: Option<&'a str>,
        /// The secret (only borrowed: the edge owns and wipes it).
        secret: &'a str,
    },
    /// A realm `refresh_token` grant's token.
    RefreshToken(&'a str),
    /// Credentials the edge could not read (a malformed `Authorization` header, say). The
    /// engine reports it after the checks that come first whatever the credentials (so a
    /// client with a typo in `service` learns about the typo, not about a 401).
    Unreadable(AuthFailure),
}

impl std::fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret itself.
        f.write_str(match self {
            Self::Nothing => "Presented::Nothing",
            Self::X509Chain(_) => "Presented::X509Chain",
            Self::JwtSvid(_) => "Presented::JwtSvid",
            Self::Secret { .. } => "Presented::Secret",
            Self::RefreshToken(_) => "Presented::RefreshToken",
            Self::Unreadable(_) => "Presented::Unreadable",
        })
    }
}

/// Whether `client_id` is acceptable: 1 to [`MAX_CLIENT_ID_LEN`] bytes of printable ASCII
/// (`!` to `~`). Client IDs go to the audit log verbatim, where Unicode format characters
/// (RLO, ZWSP) would make a line read differently from what it says.
pub fn is_valid_client_id(client_id: &str) -> bool {
    (1..=MAX_CLIENT_ID_LEN).contains(&client_id.len())
        && client_id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_the_service_and_the_scope_grammar_once() {
        let ctx = RequestContext::new(ExchangeKind::AccessToken, Endpoint::Grpc, None);
        let err = ExchangeRequest::parse(ctx.clone(), "", &[]).unwrap_err();
        assert_eq!(err, InvalidRequest::MissingService);
        let err =
            ExchangeRequest::parse(ctx.clone(), "registry", &["no-colons".into()]).unwrap_err();
        assert!(matches!(err, InvalidRequest::Scope(_)), "{err:?}");
        let ok = ExchangeRequest::parse(
            ctx,
            "registry",
            &["repository:a:pull repository:b:push".into(), String::new()],
        )
        .unwrap();
        assert_eq!(ok.scopes.len(), 2);
    }

    #[test]
    fn the_context_records_only_capped_printable_caller_text() {
        let ctx = RequestContext::new(ExchangeKind::AccessToken, Endpoint::RealmGet, None)
            .with_service(&format!("reg\u{202e}istry{}", "x".repeat(500)))
            .with_scopes(&["repository:a:pull".into(), "\u{200b}".into()])
            .with_client_id(Some("bad id"));
        assert!(ctx.service.starts_with("reg?istry"));
        assert_eq!(ctx.service.len(), MAX_AUDIT_SERVICE_LEN - 2);
        assert_eq!(ctx.requested, "repository:a:pull ?");
        assert_eq!(ctx.client_id, None);
    }
    /// Garbage at the edge: any bytes as service, scopes and client_id (bounded sizes, a fixed
    /// seed) never panic, and what the audit would record stays capped and printable ASCII.
    #[test]
    fn garbage_parses_or_is_refused_and_records_only_capped_printable_text() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const ALPHABET: &[char] = &[
            'a', 'Z', '0', ':', '/', ',', '*', ' ', '.', '-', '_', '\u{0}', '\u{7f}', '\u{202e}',
            '\u{200b}', 'é', '\n', '"', '%',
        ];
        for _ in 0..2000 {
            let mut text = |max: u64| -> String {
                let len = next() % max;
                (0..len)
                    .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                    .collect()
            };
            let service = text(300);
            let scopes: Vec<String> = (0..3).map(|_| text(80)).collect();
            let client_id = text(200);
            let ctx = RequestContext::new(ExchangeKind::AccessToken, Endpoint::RealmGet, None)
                .with_service(&service)
                .with_scopes(&scopes)
                .with_client_id(Some(&client_id));
            for recorded in [&ctx.service, &ctx.requested] {
                assert!(recorded.len() <= MAX_AUDIT_REQUESTED_LEN);
                assert!(recorded.chars().all(|c| c.is_ascii_graphic() || c == ' '));
            }
            assert!(ctx.service.len() <= MAX_AUDIT_SERVICE_LEN);
            if let Some(id) = &ctx.client_id {
                assert!(is_valid_client_id(id), "{id:?}");
            }
            if let Ok(request) = ExchangeRequest::parse(ctx, &service, &scopes) {
                assert!(!request.service.is_empty());
            }
        }
    }
}
