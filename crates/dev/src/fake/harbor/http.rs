//! The fake's HTTP shell: routes requests, words the queued faults and turns the rules'
//! answers into Harbor's responses. The connection bounds, fault queue and body cap are the
//! fakes' shared ones (`fake::http`). No decision is made here.

use http::{HeaderValue, Method, Request, header};
use hyper::body::Incoming;
use serde_json::{Value, json};
use svid_broker_identity::secret::ExposeSecret as _;

use super::decode::{RobotCreate, parse_paging};
use super::rules::{ApiError, Paging, datetime};
use super::{MAX_BODY_BYTES, Shared};
use crate::fake::http::{
    BodyError, Hangup, Query, Reply, Service, empty_reply, header_str, inject_fault,
    percent_decode, read_body, reply, retry_after_on_429, success_status,
};
use crate::fake::random_alphanumeric;
use crate::fake::server::unix_seconds;

/// `scope` values (after splitting on spaces) one token request may carry. The fake's bound.
const MAX_SCOPES: usize = 64;

/// Every request: the API root counted and faulted, then routed.
impl Service for Shared {
    async fn call(&self, req: Request<Incoming>) -> Result<Reply, Hangup> {
        let path = req.uri().path().to_owned();
        if path == "/api/v2.0" || path.starts_with("/api/v2.0/") {
            let malformed = |method: &Method| {
                json_reply(
                    success_status(method),
                    "{\"id\":1,\"name\":\"robot$".to_owned(),
                )
            };
            if let Some(reply) =
                inject_fault(&self.control, req.method(), malformed, fault_reply).await?
            {
                return Ok(reply);
            }
            return Ok(match api(self, req, &path).await {
                Ok(reply) => reply,
                Err(e) => error_reply(&e),
            });
        }
        if path == "/service/token" {
            return Ok(token(self, &req));
        }
        Ok(text_reply(404, "404 page not found\n"))
    }
}

/// Routes `/api/v2.0/...`.
async fn api(shared: &Shared, req: Request<Incoming>, path: &str) -> Result<Reply, ApiError> {
    let rest = path.trim_start_matches("/api/v2.0").trim_end_matches('/');
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let query = Query::parse(req.uri().query());
    let now = shared.control.now_unix();
    let authorization = header_str(&req, header::AUTHORIZATION).map(str::to_owned);
    let who = shared.state().authenticate(authorization.as_deref(), now);
    let method = req.method().clone();
    match (segments.as_slice(), &method) {
        (["projects"], &Method::GET) => {
            let paging = parse_paging(query.first("page"), query.first("page_size"))?;
            let public = match query.first("public") {
                None => None,
                Some(v) => Some(parse_bool(v).ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "public in query must be of type boolean: \"{v}\""
                    ))
                })?),
            };
            let (page, total) =
                shared
                    .state()
                    .list_projects(who, query.first("name"), public, paging);
            Ok(list_reply(page, total, path, &query, paging))
        }
        (["projects", name_or_id], &Method::GET) => {
            let name_or_id = percent_decode(name_or_id);
            let is_name = match req
                .headers()
                .get("X-Is-Resource-Name")
                .map(HeaderValue::to_str)
            {
                None => false,
                Some(Ok(v)) => parse_bool(v).ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "X-Is-Resource-Name in header must be of type boolean: \"{v}\""
                    ))
                })?,
                Some(Err(_)) => {
                    return Err(ApiError::unprocessable(
                        "X-Is-Resource-Name in header must be of type boolean",
                    ));
                }
            };
            let project = shared.state().get_project(who, &name_or_id, is_name)?;
            Ok(json_reply(200, project.to_string()))
        }
        (["robots"], &Method::GET) => {
            let paging = parse_paging(query.first("page"), query.first("page_size"))?;
            let (page, total) =
                shared
                    .state()
                    .list_robots(who, query.first("q"), query.first("sort"), paging)?;
            Ok(list_reply(page, total, path, &query, paging))
        }
        (["robots"], &Method::POST) => {
            let body = read_json_body(req).await?;
            let robot = RobotCreate::from_json(&body)?;
            let created = shared.state().create_robot(who, &robot, now)?;
            shared.control.stats().counts.robots_created += 1;
            let location = format!("{}/{}", path.trim_end_matches('/'), created.id);
            let payload = json!({
                "id": created.id,
                "name": created.name,
                "secret": created.secret.as_str(),
                "creation_time": datetime(created.creation_time),
                "expires_at": created.expires_at,
            });
            let mut reply = json_reply(201, payload.to_string());
            if let Ok(v) = HeaderValue::from_str(&location) {
                reply.headers_mut().insert(header::LOCATION, v);
            }
            Ok(reply)
        }
        (["robots", id], &Method::GET | &Method::DELETE) => {
            let id = id.parse::<i64>().map_err(|_| {
                ApiError::unprocessable(format!("robot_id in path must be of type int64: \"{id}\""))
            })?;
            if method == Method::GET {
                let robot = shared.state().get_robot(who, id)?;
                Ok(json_reply(200, robot.to_string()))
            } else {
                shared.state().delete_robot(who, id)?;
                shared.control.stats().counts.robots_deleted += 1;
                Ok(empty_reply(200))
            }
        }
        (["projects"] | ["projects", _] | ["robots"] | ["robots", _], _) => Err(ApiError::new(
            405,
            "METHOD_NOT_ALLOWED",
            format!("method {method} is not allowed, but [GET] are"),
        )),
        _ => Err(ApiError::not_found(format!("path {path} was not found"))),
    }
}

/// `GET /service/token` (`src/core/service/token/token.go`): an unknown `service` is 400 with
/// a plain-text message, an anonymous caller without a scope 401 with an empty body, anyone
/// else 200 with a token.
fn token(shared: &Shared, req: &Request<Incoming>) -> Reply {
    if req.method() != Method::GET {
        return text_reply(405, "Method Not Allowed\n");
    }
    let query = Query::parse(req.uri().query());
    let service = query.first("service").unwrap_or("");
    if service != shared.service {
        return text_reply(
            400,
            &format!("Unable to handle service: {}", html_escape(service)),
        );
    }
    let scopes: Vec<String> = query
        .all("scope")
        .flat_map(|s| s.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    if scopes.len() > MAX_SCOPES {
        return text_reply(400, "too many scopes\n");
    }
    let now = shared.control.now();
    let now_unix = unix_seconds(now);
    let authorization = header_str(req, header::AUTHORIZATION);
    let grant = {
        let state = shared.state();
        let who = state.authenticate(authorization, now_unix);
        state.token_access(who, &scopes)
    };
    let Some((subject, access)) = grant else {
        return empty_reply(401);
    };
    let ttl = i64::try_from(shared.token_ttl.as_secs()).unwrap_or(i64::MAX);
    let access = access.map(|list| list.into_iter().map(|a| a.claim()).collect::<Vec<_>>());
    let Some(jti) = random_jti() else {
        return text_reply(500, "");
    };
    let claims = json!({
        "iss": shared.issuer,
        "sub": subject,
        // Harbor sets `MarshalSingleStringAsArray = false`, so `aud` is a string, the only form
        // distribution 2.8 parses (`src/pkg/token/claims/v2/claims.go`).
        "aud": shared.service,
        "exp": now_unix.saturating_add(ttl),
        "nbf": now_unix,
        "iat": now_unix,
        "jti": jti,
        "access": access,
    });
    let Ok(token) = shared.signer.sign(&claims) else {
        return text_reply(500, "");
    };
    // `models.Token` (`src/common/models/token.go`): Harbor never fills `access_token`.
    let body = json!({
        "token": token,
        "access_token": "",
        "expires_in": ttl,
        "issued_at": svid_broker_identity::clock::Rfc3339(now).to_string(),
    });
    json_reply(200, body.to_string())
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`] (within the shared read timeout) the way
/// go-openapi binds it: too large is 413; an empty body is 422 "required" whatever its type;
/// a non-empty one must be `application/json` (415, a missing type counting as
/// `application/octet-stream`) and parse (400).
async fn read_json_body(req: Request<Incoming>) -> Result<Value, ApiError> {
    let content_type = header_str(&req, header::CONTENT_TYPE)
        .unwrap_or("application/octet-stream")
        .to_owned();
    let bytes = read_body(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TimedOut => ApiError::bad_request("timed out reading the request body"),
            BodyError::TooLarge => {
                ApiError::new(413, "REQUEST_ENTITY_TOO_LARGE", "request entity too large")
            }
        })?;
    if bytes.is_empty() {
        return Err(ApiError::unprocessable("robot in body is required"));
    }
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("unsupported media type {content_type:?}, only [application/json] are allowed"),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::unprocessable("robot in body is required"));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!("parsing robot body from \"\" failed, because {e}"))
    })
}

/// A list with `X-Total-Count` and Harbor's `Link` header (`src/server/v2.0/handler/base.go`).
fn list_reply(items: Vec<Value>, total: usize, path: &str, query: &Query, paging: Paging) -> Reply {
    let mut reply = json_reply(200, Value::Array(items).to_string());
    reply
        .headers_mut()
        .insert("X-Total-Count", HeaderValue::from(total as u64));
    let total = i64::try_from(total).unwrap_or(i64::MAX);
    let Paging { page, page_size } = paging;
    let mut links = Vec::new();
    if page_size > 0 {
        if page > 1 && (page - 1).saturating_mul(page_size) < total {
            links.push(format!(
                "<{}>; rel=\"prev\"",
                with_page(query, path, page - 1, page_size)
            ));
        }
        if page_size.saturating_mul(page) < total {
            links.push(format!(
                "<{}>; rel=\"next\"",
                with_page(query, path, page + 1, page_size)
            ));
        }
    }
    if !links.is_empty()
        && let Ok(v) = HeaderValue::from_str(&links.join(" , "))
    {
        reply.headers_mut().insert(header::LINK, v);
    }
    reply
}

fn fault_reply(status: u16) -> Reply {
    let e = match status {
        401 => ApiError::unauthorized(),
        403 => ApiError::forbidden("forbidden"),
        404 => ApiError::not_found("resource not found"),
        409 => ApiError::new(409, "CONFLICT", "resource conflict"),
        429 => ApiError::new(429, "TOO_MANY_REQUEST", "too many requests"),
        s if s >= 500 => ApiError::new(s, "UNKNOWN", "internal server error"),
        s => ApiError::new(s, "BAD_REQUEST", "bad request"),
    };
    retry_after_on_429(status, error_reply(&e))
}

/// Harbor's error body; `SendError` sets no other header (`src/lib/http/error.go`).
fn error_reply(e: &ApiError) -> Reply {
    json_reply(e.status, e.body())
}

fn json_reply(status: u16, body: String) -> Reply {
    reply(status, "application/json; charset=utf-8", body)
}

fn text_reply(status: u16, body: &str) -> Reply {
    reply(status, "text/plain; charset=utf-8", body.to_owned())
}

/// `query` with `page` and `page_size` set, for `Link`.
fn with_page(query: &Query, path: &str, page: i64, page_size: i64) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in query.pairs() {
        if k != "page" && k != "page_size" {
            out.append_pair(k, v);
        }
    }
    out.append_pair("page", &page.to_string());
    out.append_pair("page_size", &page_size.to_string());
    format!("{path}?{}", out.finish())
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// 16 random characters, as `GenerateRandomStringWithLen(16)` makes the `jti`.
fn random_jti() -> Option<String> {
    random_alphanumeric("", 16).map(|jti| jti.expose_secret().to_owned())
}
