//! The fake's HTTP shell: routes the exchange endpoint and `/v2/`, words the queued faults,
//! runs the verifier between the rules' steps, and turns refusals into Quay's answers. The
//! connection bounds and fault queue are the fakes' shared ones (`fake::http`).

use http::{HeaderValue, Method, Request, header};
use hyper::body::Incoming;
use serde_json::json;
use svid_broker_identity::secret::ExposeSecret as _;

use super::rules::{
    Refusal, allowed_actions, check_claims, matching, parse_federated_basic, rejection,
    unverified_issuer,
};
use super::{REGISTRY_TOKEN_LIFETIME, ROBOT_TOKEN_LIFETIME, Shared, TOKEN_ISSUER};
use crate::fake::http::{
    Hangup, Query, Reply, Service, header_str, inject_fault, parse_basic, reply, retry_after_on_429,
};
use crate::fake::random_alphanumeric;

/// The exchange endpoint (`web.py` mounts the federation blueprint under `/oauth2`).
const EXCHANGE: &str = "/oauth2/federation/robot/token";
/// Most `scope` parameters read by the token realm. The fake's bound.
const MAX_SCOPES: usize = 64;
/// Characters of a robot token the fake makes.
const TOKEN_CHARS: usize = 64;
/// Flask's page for an unhandled exception (its text, not Quay's).
const FLASK_500: &str = "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to complete your request. Either the server is overloaded or there is an error in the application.</p>\n";

impl Service for Shared {
    async fn call(&self, req: Request<Incoming>) -> Result<Reply, Hangup> {
        let path = req.uri().path().to_owned();
        if path == "/v2/" || path == "/v2" {
            return Ok(registry_base(self, &req));
        }
        if path == "/v2/auth" {
            return Ok(token_realm(self, &req));
        }
        if path != EXCHANGE {
            return Ok(reply(
                404,
                "text/html; charset=utf-8",
                "<h1>Not Found</h1>".to_owned(),
            ));
        }
        let malformed = |_: &Method| json_reply(200, "{\"token\":".to_owned());
        if let Some(reply) =
            inject_fault(&self.control, req.method(), malformed, fault_reply).await?
        {
            return Ok(reply);
        }
        if req.method() != Method::GET {
            return Ok(reply(
                405,
                "text/html; charset=utf-8",
                "<h1>Method Not Allowed</h1>".to_owned(),
            ));
        }
        Ok(match exchange(self, &req).await {
            Ok(reply) => {
                self.control.stats().counts.exchanges += 1;
                reply
            }
            Err(refusal) => {
                self.control.stats().counts.refusals += 1;
                refusal_reply(&refusal)
            }
        })
    }
}

/// The exchange, rule by rule in Quay's order (see `rules.rs`).
async fn exchange(shared: &Shared, req: &Request<Incoming>) -> Result<Reply, Refusal> {
    let (robot, jwt) = parse_federated_basic(header_str(req, header::AUTHORIZATION))?;
    let entries = shared.state().federation_of(&robot)?;
    let issuer = unverified_issuer(&jwt)?;
    let matched = matching(&entries, issuer.as_deref())?;
    let issuer = issuer.unwrap_or_default();
    // Quay builds a new OIDC service, with empty caches, for every exchange: discovery and
    // JWKS are fetched each time.
    shared.verifier.clear_cache();
    let now = shared.control.now_unix();
    let verified = shared
        .verifier
        .verify_from(&jwt, &[issuer.as_str()], now)
        .await
        .map_err(|rejected| rejection(&rejected))?;
    check_claims(&matched, &verified)?;
    let Some(token) = random_alphanumeric("", TOKEN_CHARS) else {
        return Err(Refusal {
            status: 500,
            message: "random generator failed".to_owned(),
        });
    };
    let lifetime = i64::try_from(ROBOT_TOKEN_LIFETIME.as_secs()).unwrap_or(i64::MAX);
    shared
        .state()
        .issue(&robot, token.expose_secret(), now.saturating_add(lifetime));
    shared.control.stats().counts.tokens_issued += 1;
    Ok(json_reply(
        200,
        json!({ "token": token.expose_secret() }).to_string(),
    ))
}

/// `GET /v2/` with Basic `<robot>:<token>`: 200 while the token works, else the registry's
/// 401 with its bearer challenge.
fn registry_base(shared: &Shared, req: &Request<Incoming>) -> Reply {
    let works = header_str(req, header::AUTHORIZATION)
        .and_then(parse_basic)
        .is_some_and(|(user, token)| {
            let now = shared.control.now_unix();
            shared.state().token_works(&user, &token, now)
        });
    let mut r = if works {
        json_reply(200, "{}".to_owned())
    } else {
        let mut r = registry_error(401, "UNAUTHORIZED", "Invalid Username or Password");
        let host = header_str(req, header::HOST)
            .unwrap_or("localhost")
            .to_owned();
        let challenge = format!("Bearer realm=\"http://{host}/v2/auth\",service=\"{host}\"");
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        r
    };
    r.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    r
}

/// `GET /v2/auth` (`endpoints/v2/v2auth.py` `generate_registry_jwt`): see the module docs.
fn token_realm(shared: &Shared, req: &Request<Incoming>) -> Reply {
    if req.method() != Method::GET {
        return registry_error(405, "UNSUPPORTED", "method not allowed");
    }
    let query = Query::parse(req.uri().query());
    let service = query.first("service").unwrap_or("").to_owned();
    let scopes: Vec<&str> = query.all("scope").collect();
    if scopes.len() > MAX_SCOPES {
        return registry_error(400, "INVALID_REQUEST", "too many scopes");
    }
    let now = shared.control.now_unix();
    let robot = match header_str(req, header::AUTHORIZATION) {
        // Credentials sent but not valid: `InvalidLogin`.
        Some(value) => match parse_basic(value) {
            Some((user, token)) if shared.state().token_works(&user, &token, now) => Some(user),
            _ => return registry_error(401, "UNAUTHORIZED", "Invalid Username or Password"),
        },
        None => None,
    };
    if robot.is_none() && scopes.is_empty() {
        return registry_error(401, "UNAUTHORIZED", "authentication required");
    }
    let mut access = Vec::with_capacity(scopes.len());
    for scope in scopes {
        let Some((name, requested)) = parse_scope(scope) else {
            return registry_error(
                400,
                "INVALID_REQUEST",
                &format!("Unable to decode repository and actions: {scope}"),
            );
        };
        let role = robot
            .as_deref()
            .and_then(|robot| shared.state().role_of_robot(robot, name));
        let actions = allowed_actions(role, &requested);
        access.push(json!({ "type": "repository", "name": name, "actions": actions }));
    }
    let Some(jti) = random_alphanumeric("", 16) else {
        return registry_error(500, "UNKNOWN", "random generator failed");
    };
    let lifetime = i64::try_from(REGISTRY_TOKEN_LIFETIME.as_secs()).unwrap_or(i64::MAX);
    let claims = json!({
        "iss": TOKEN_ISSUER,
        "sub": robot.unwrap_or_else(|| "(anonymous)".to_owned()),
        // Quay writes the client's `service` into `aud` as it is.
        "aud": service,
        "exp": now.saturating_add(lifetime),
        "nbf": now,
        "iat": now,
        "jti": jti.expose_secret(),
        "access": access,
    });
    match shared.signer.sign(&claims) {
        Ok(token) => json_reply(200, json!({ "token": token }).to_string()),
        Err(_) => registry_error(500, "UNKNOWN", "cannot sign"),
    }
}

/// `repository:<name>:<actions>` with a name of `[a-z0-9._/-]` and actions among `push`,
/// `pull` and `*` (Quay's scope regex, without its optional hostname prefix).
fn parse_scope(scope: &str) -> Option<(&str, Vec<&str>)> {
    let rest = scope.strip_prefix("repository:")?;
    let (name, actions) = rest.rsplit_once(':')?;
    let name_ok = !name.is_empty()
        && !name.starts_with('/')
        && !name.ends_with('/')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b));
    let actions: Vec<&str> = actions.split(',').collect();
    let actions_ok = actions.iter().all(|a| matches!(*a, "push" | "pull" | "*"));
    (name_ok && actions_ok).then_some((name, actions))
}

/// The registry API's error body, `{"errors": [{"code", "detail", "message"}]}`.
fn registry_error(status: u16, code: &str, message: &str) -> Reply {
    let body = json!({"errors": [{ "code": code, "detail": {}, "message": message }]});
    json_reply(status, body.to_string())
}

/// A refusal as Quay words it: the view's 401 `{"error"}`, the data-model handler's
/// `{"message"}`, or Flask's 500 page (the reason is not shown).
fn refusal_reply(refusal: &Refusal) -> Reply {
    match refusal.status {
        401 => json_reply(401, json!({ "error": refusal.message }).to_string()),
        s if s >= 500 => reply(s, "text/html; charset=utf-8", FLASK_500.to_owned()),
        s => json_reply(s, json!({ "message": refusal.message }).to_string()),
    }
}

fn fault_reply(status: u16) -> Reply {
    let reply = match status {
        401 => json_reply(401, json!({ "error": "injected fault" }).to_string()),
        s if s >= 500 => reply(s, "text/html; charset=utf-8", FLASK_500.to_owned()),
        s => json_reply(s, json!({ "message": "injected fault" }).to_string()),
    };
    retry_after_on_429(status, reply)
}

fn json_reply(status: u16, body: String) -> Reply {
    reply(status, "application/json", body)
}
