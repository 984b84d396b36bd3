//! The fake's HTTP shell: routes `/service/rest/v1/security/users`, words the queued faults
//! and turns the rules' answers into Nexus's responses. The connection bounds, fault queue and
//! body cap are the fakes' shared ones (`fake::http`). No decision is made here.

use http::{HeaderValue, Method, Request, header};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::rules::{ApiError, UsersAction, decode_new_user};
use super::{MAX_BODY_BYTES, Shared};
use crate::fake::http::{
    BodyError, Hangup, Query, Reply, Service, empty_reply, header_str, inject_fault,
    percent_decode, read_body, reply, retry_after_on_429,
};

/// Nexus's Basic realm (`WWW-Authenticate` of a 401).
const REALM: &str = "BASIC realm=\"Sonatype Nexus Repository Manager\"";
/// Where the REST API lives; faults and call counts apply below it.
const REST_ROOT: &str = "/service/rest";
const USERS: &str = "/service/rest/v1/security/users";

/// Every request: the API root counted and faulted, then routed.
impl Service for Shared {
    async fn call(&self, req: Request<Incoming>) -> Result<Reply, Hangup> {
        let path = req.uri().path().to_owned();
        if path != REST_ROOT && !path.starts_with("/service/rest/") {
            return Ok(text_reply(404, ""));
        }
        let malformed = |method: &Method| {
            let body = if method == Method::POST {
                "{\"userId\":\""
            } else {
                "[{\"userId\":"
            };
            json_reply(200, body.to_owned())
        };
        if let Some(reply) =
            inject_fault(&self.control, req.method(), malformed, fault_reply).await?
        {
            return Ok(reply);
        }
        Ok(match users_api(self, req, &path).await {
            Ok(reply) => reply,
            Err(e) => error_reply(&e),
        })
    }
}

/// Routes the users API; anything else under `/service/rest` is 404.
async fn users_api(shared: &Shared, req: Request<Incoming>, path: &str) -> Result<Reply, ApiError> {
    let Some(rest) = path.strip_prefix(USERS) else {
        return Err(ApiError::NotFound);
    };
    let rest = rest.trim_start_matches('/');
    let target: Option<String> = (!rest.is_empty()).then(|| percent_decode(rest));
    if target.as_deref().is_some_and(|t| t.contains('/')) {
        return Err(ApiError::NotFound);
    }
    let authorization = header_str(&req, header::AUTHORIZATION).map(str::to_owned);
    // Authentication comes first: an anonymous or bad caller gets 401 whatever it asks.
    let who = shared.state().authenticate(authorization.as_deref())?;
    let method = req.method().clone();
    match (target, &method) {
        (None, &Method::GET) => {
            shared.state().require(&who, UsersAction::Read)?;
            let query = Query::parse(req.uri().query());
            let listed = shared
                .state()
                .list_users(query.first("userId"), query.first("source"));
            Ok(json_reply(200, Value::Array(listed).to_string()))
        }
        (None, &Method::POST) => {
            shared.state().require(&who, UsersAction::Create)?;
            let body = read_json_body(req).await?;
            let new = decode_new_user(&body)?;
            let now = shared.control.now_unix();
            let answer = shared.state().create_user(new, now)?;
            shared.control.stats().counts.users_created += 1;
            Ok(json_reply(200, answer.to_string()))
        }
        (Some(user), &Method::DELETE) => {
            shared.state().require(&who, UsersAction::Delete)?;
            shared.state().delete_user(&user)?;
            shared.control.stats().counts.users_deleted += 1;
            Ok(empty_reply(204))
        }
        _ => Ok(empty_reply(405)),
    }
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`] (within the shared read timeout): too large is
/// 413; a body that is not JSON is Jackson's 400.
async fn read_json_body(req: Request<Incoming>) -> Result<Value, ApiError> {
    let bytes = read_body(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TimedOut => {
                ApiError::Validation(vec![("*".to_owned(), "body read timed out".to_owned())])
            }
            BodyError::TooLarge => ApiError::TooLarge,
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::Validation(vec![("*".to_owned(), format!("Unexpected character: {e}"))])
    })
}

fn fault_reply(status: u16) -> Reply {
    let reply = match status {
        401 => error_reply(&ApiError::Unauthorized),
        403 => error_reply(&ApiError::Forbidden),
        404 => error_reply(&ApiError::NotFound),
        s if s >= 500 => text_reply(
            s,
            "ERROR: (ID 00000000-0000-0000-0000-000000000000) injected",
        ),
        s => {
            let body = json!([{ "id": "*", "message": "injected fault" }]);
            json_reply(s, body.to_string())
        }
    };
    retry_after_on_429(status, reply)
}

fn error_reply(e: &ApiError) -> Reply {
    match e {
        ApiError::Unauthorized => {
            let mut r = empty_reply(401);
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
            r
        }
        ApiError::Forbidden => empty_reply(403),
        ApiError::NotFound => empty_reply(404),
        ApiError::TooLarge => empty_reply(413),
        ApiError::Validation(errors) => {
            let list: Vec<Value> = errors
                .iter()
                .map(|(id, message)| json!({ "id": id, "message": message }))
                .collect();
            json_reply(400, Value::Array(list).to_string())
        }
        ApiError::Unexpected(what) => text_reply(
            500,
            &format!("ERROR: (ID 00000000-0000-0000-0000-000000000000) {what}"),
        ),
    }
}

fn json_reply(status: u16, body: String) -> Reply {
    reply(status, "application/json", body)
}

fn text_reply(status: u16, body: &str) -> Reply {
    reply(status, "text/plain", body.to_owned())
}
