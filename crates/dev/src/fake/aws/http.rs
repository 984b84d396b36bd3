//! The fake's HTTP shells: STS's Query API, ECR's JSON 1.1 API with its SigV4 check, and the
//! registry's `/v2/` login and repository checks. Connection bounds, fault queue and body cap
//! are the fakes' shared ones (`fake::http`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use http::{HeaderValue, Method, Request, header};
use hyper::body::Incoming;
use serde_json::{Value, json};
use svid_broker_identity::secret::{ExposeSecret as _, SecretString, seal_string};
use zeroize::Zeroizing;

use super::rules::{
    AssumeRequest, AwsError, Caller, Permissions, RegistryToken, parse_policy, session_tags,
};
use super::{
    EcrService, MAX_BODY_BYTES, MAX_CLOCK_SKEW, REGION, Shared, StsService, TOKEN_LIFETIME,
    VerifiedToken, sigv4,
};
use crate::fake::federation::JwtRejection;
use crate::fake::http::{
    BodyError, Hangup, Reply, Service, header_str, inject_fault, parse_basic, read_body, reply,
    retry_after_on_429,
};
use crate::fake::random_alphanumeric;
use crate::fake::server::lock;

/// STS's XML namespace.
const STS_NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// The only STS `Version` accepted.
const STS_VERSION: &str = "2011-06-15";
/// ECR's JSON 1.1 content type.
const ECR_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// The one ECR operation served: the `X-Amz-Target` a request must carry.
const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
/// SigV4's service name for ECR.
const ECR_SERVICE: &str = "ecr";
/// Most audit records kept.
const MAX_AUDIT: usize = 10_000;

impl Service for StsService {
    async fn call(&self, req: Request<Incoming>) -> Result<Reply, Hangup> {
        let shared = &*self.0;
        let malformed = |_: &Method| {
            reply(
                200,
                "text/xml",
                "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>".to_owned(),
            )
        };
        if let Some(reply) = inject_fault(&shared.sts, req.method(), malformed, sts_fault).await? {
            return Ok(reply);
        }
        if req.uri().path() != "/" {
            return Ok(sts_error(&AwsError::new(404, "NotFound", "Not Found")));
        }
        if req.method() != Method::POST {
            return Ok(sts_error(&AwsError::new(
                405,
                "MethodNotAllowed",
                "Only POST is served by the fake",
            )));
        }
        Ok(match assume(shared, req).await {
            Ok(xml) => {
                shared.sts.stats().counts.sessions += 1;
                reply(200, "text/xml", xml)
            }
            Err(e) => sts_error(&e),
        })
    }
}

impl Service for EcrService {
    async fn call(&self, req: Request<Incoming>) -> Result<Reply, Hangup> {
        let shared = &*self.0;
        let path = req.uri().path().to_owned();
        if path == "/v2" || path.starts_with("/v2/") {
            return Ok(registry_check(shared, &req, &path));
        }
        let malformed = |_: &Method| {
            reply(
                200,
                ECR_CONTENT_TYPE,
                "{\"authorizationData\":[{".to_owned(),
            )
        };
        if let Some(reply) = inject_fault(&shared.ecr, req.method(), malformed, ecr_fault).await? {
            return Ok(reply);
        }
        if path != "/" || req.method() != Method::POST {
            return Ok(ecr_error(&AwsError::new(
                404,
                "UnknownOperationException",
                "The requested operation is not supported",
            )));
        }
        Ok(match authorization_token(shared, req).await {
            Ok(body) => {
                shared.sts.stats().counts.tokens += 1;
                reply(200, ECR_CONTENT_TYPE, body)
            }
            Err(e) => ecr_error(&e),
        })
    }
}

// === STS ===

/// The whole `AssumeRoleWithWebIdentity`: the form, its constraints, the JWT, the trust.
async fn assume(shared: &Shared, req: Request<Incoming>) -> Result<String, AwsError> {
    let form = header_str(&req, header::CONTENT_TYPE)
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let bytes = read_body(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TimedOut => AwsError::new(400, "RequestTimeout", "request body timed out"),
            BodyError::TooLarge => {
                AwsError::new(413, "RequestEntityTooLarge", "Request body too large")
            }
        })?;
    if !form {
        return Err(AwsError::new(400, "MissingAction", "Missing Action"));
    }
    let bytes = Zeroizing::new(bytes.to_vec());
    let mut params: BTreeMap<String, Zeroizing<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(&bytes) {
        params
            .entry(k.into_owned())
            .or_insert_with(|| Zeroizing::new(v.into_owned()));
    }
    let get = |name: &str| params.get(name).map(|v| v.as_str());
    let action = get("Action").unwrap_or_default();
    let version = get("Version").unwrap_or_default();
    if action != "AssumeRoleWithWebIdentity" || version != STS_VERSION {
        return Err(AwsError::new(
            400,
            "InvalidAction",
            format!(
                "Could not find operation {} for version {}",
                cut(action),
                cut(version)
            ),
        ));
    }
    let request = checked_parameters(&get)?;
    let token = get("WebIdentityToken").unwrap_or_default();
    let now = shared.now();
    let trusted: Vec<String> = shared
        .state()
        .providers
        .values()
        .map(|p| p.url.clone())
        .collect();
    let trusted: Vec<&str> = trusted.iter().map(String::as_str).collect();
    let jwt = shared
        .verifier
        .verify_from(token, &trusted, now)
        .await
        .map_err(|rejection| rejection_error(&rejection, now))?;
    let tags = session_tags(&jwt.claims);
    let mut record = VerifiedToken {
        issuer: jwt.issuer.clone(),
        subject: jwt.subject.clone(),
        audiences: jwt.audiences.clone(),
        kid: jwt.kid.clone(),
        session_tags: tags.clone().ok().flatten().unwrap_or_default(),
        role_arn: request.role_arn.to_owned(),
        role_session_name: request.session_name.to_owned(),
        outcome: "issued".to_owned(),
    };
    let result = tags.and_then(|tags| {
        let credentials = new_credentials()?;
        let access_key_id = credentials.0.clone();
        let session = shared
            .state()
            .assume(request, &jwt, tags.as_ref(), credentials, now)?;
        Ok((access_key_id, session))
    });
    if let Err(e) = &result {
        e.code.clone_into(&mut record.outcome);
    }
    {
        let mut audit = lock(&shared.audit);
        if audit.len() >= MAX_AUDIT {
            audit.remove(0);
        }
        audit.push(record);
    }
    let (access_key_id, session) = result?;
    let provider = super::rules::without_scheme(&jwt.issuer).to_owned();
    let mut xml = String::new();
    let _ = write!(
        xml,
        "<AssumeRoleWithWebIdentityResponse xmlns=\"{STS_NAMESPACE}\">\
         <AssumeRoleWithWebIdentityResult>\
         <SubjectFromWebIdentityToken>{}</SubjectFromWebIdentityToken>\
         <Audience>{}</Audience>\
         <AssumedRoleUser><Arn>{}</Arn><AssumedRoleId>AROAFAKEROLEID0000000:{}</AssumedRoleId></AssumedRoleUser>\
         <Credentials>\
         <SessionToken>{}</SessionToken>\
         <SecretAccessKey>{}</SecretAccessKey>\
         <Expiration>{}</Expiration>\
         <AccessKeyId>{}</AccessKeyId>\
         </Credentials>\
         <Provider>{}</Provider>\
         </AssumeRoleWithWebIdentityResult>\
         <ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata>\
         </AssumeRoleWithWebIdentityResponse>",
        escape(&jwt.subject),
        escape(jwt.audiences.first().map_or("", String::as_str)),
        escape(&assumed_role_arn(
            &session.partition,
            &session.account,
            &session.role_name,
            &session.session_name
        )),
        escape(&session.session_name),
        escape(session.session_token.expose_secret()),
        escape(session.secret_access_key.expose_secret()),
        sigv4::iso8601(session.expires_at),
        escape(&access_key_id),
        escape(&provider),
        request_id(),
    );
    Ok(xml)
}

/// The parameters' constraints (botocore's shapes), then the policy's JSON.
fn checked_parameters<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
) -> Result<AssumeRequest<'a>, AwsError> {
    let constraint = |value: &str, member: &str, rule: &str| {
        AwsError::validation(format!(
            "1 validation error detected: Value '{}' at '{member}' failed to satisfy constraint: {rule}",
            cut(value)
        ))
    };
    let required = |name: &'static str, member: &str| {
        get(name).ok_or_else(|| {
            AwsError::validation(format!(
                "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
            ))
        })
    };
    let role_arn = required("RoleArn", "roleArn")?;
    if !(20..=2048).contains(&role_arn.chars().count()) {
        return Err(constraint(
            role_arn,
            "roleArn",
            "Member must have length between 20 and 2048",
        ));
    }
    let session_name = required("RoleSessionName", "roleSessionName")?;
    if !(2..=64).contains(&session_name.len()) {
        return Err(constraint(
            session_name,
            "roleSessionName",
            "Member must have length between 2 and 64",
        ));
    }
    if !session_name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
    {
        return Err(constraint(
            session_name,
            "roleSessionName",
            "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
        ));
    }
    let token = required("WebIdentityToken", "webIdentityToken")?;
    if !(4..=20_000).contains(&token.chars().count()) {
        // The token is not echoed: it is a credential.
        return Err(AwsError::validation(
            "1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length between 4 and 20000",
        ));
    }
    let duration = match get("DurationSeconds") {
        None => None,
        Some(text) => {
            let value: u64 = text
                .parse()
                .map_err(|_| constraint(text, "durationSeconds", "Member must be an integer"))?;
            if !(900..=43_200).contains(&value) {
                return Err(constraint(
                    text,
                    "durationSeconds",
                    "Member must have value between 900 and 43200",
                ));
            }
            Some(value)
        }
    };
    let policy = match get("Policy") {
        None => None,
        Some(text) => {
            let chars = text.chars().count();
            let charset = text
                .chars()
                .all(|c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FF}'));
            if !(1..=2048).contains(&chars) {
                return Err(constraint(
                    text,
                    "policy",
                    "Member must have length less than or equal to 2048",
                ));
            }
            if !charset {
                return Err(constraint(
                    text,
                    "policy",
                    "Member must satisfy regular expression pattern: [\\u0009\\u000A\\u000D\\u0020-\\u00FF]+",
                ));
            }
            Some(parse_policy(text)?)
        }
    };
    Ok(AssumeRequest {
        role_arn,
        session_name,
        duration,
        policy,
    })
}

/// How STS words a JWT the verifier refused.
fn rejection_error(rejection: &JwtRejection, now: i64) -> AwsError {
    match rejection {
        JwtRejection::UntrustedIssuer { issuer } => AwsError::invalid_token(format!(
            "No OpenIDConnect provider found in your account for {issuer}"
        )),
        JwtRejection::Expired { exp, .. } => AwsError::new(
            400,
            "ExpiredTokenException",
            format!(
                "Token expired: current date/time {} must be before the expiration date/time {}",
                sigv4::iso8601(now),
                sigv4::iso8601(*exp)
            ),
        ),
        JwtRejection::Discovery { .. } => AwsError::invalid_token(
            "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements",
        ),
        other => AwsError::invalid_token(format!(
            "The web identity token could not be validated: {other}"
        )),
    }
}

/// A new session's access key id (`ASIA` and 16 of `[A-Z0-9]`), secret and token.
fn new_credentials() -> Result<(String, SecretString, SecretString), AwsError> {
    new_key_triple("ASIA")
}

/// An access key id (`prefix` and 16 of `[A-Z2-7]`), a 40-character secret and a session token.
pub(super) fn new_key_triple(
    prefix: &str,
) -> Result<(String, SecretString, SecretString), AwsError> {
    let failed = || AwsError::new(500, "InternalFailure", "random generator failed");
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| failed())?;
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let key: String = std::iter::once(prefix.to_owned())
        .chain(
            bytes
                .iter()
                .map(|b| char::from(UPPER[usize::from(*b) % UPPER.len()]).to_string()),
        )
        .collect();
    let secret = random_alphanumeric("", 40).ok_or_else(failed)?;
    let token = random_alphanumeric("IQoJb3JpZ2luX2VjEFAKE", 320).ok_or_else(failed)?;
    Ok((key, secret, token))
}

/// `arn:<partition>:sts::<account>:assumed-role/<role>/<session>`.
fn assumed_role_arn(partition: &str, account: &str, role: &str, session: &str) -> String {
    format!("arn:{partition}:sts::{account}:assumed-role/{role}/{session}")
}

/// A queued fault's status in STS's words (429 adds `Retry-After: 1`).
fn sts_fault(status: u16) -> Reply {
    let code = match status {
        400 => "ValidationError",
        403 => "AccessDenied",
        429 => "Throttling",
        s if s >= 500 => "InternalFailure",
        _ => "InvalidClientTokenId",
    };
    retry_after_on_429(
        status,
        sts_error(&AwsError::new(status, code, "injected fault")),
    )
}

/// STS's Query API error body.
fn sts_error(e: &AwsError) -> Reply {
    let kind = if e.status >= 500 {
        "Receiver"
    } else {
        "Sender"
    };
    let body = format!(
        "<ErrorResponse xmlns=\"{STS_NAMESPACE}\"><Error><Type>{kind}</Type><Code>{}</Code>\
         <Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        e.code,
        escape(&e.message),
        request_id()
    );
    reply(e.status, "text/xml", body)
}

// === ECR ===

/// `GetAuthorizationToken`: the operation, the SigV4 check, the session, the permission.
async fn authorization_token(shared: &Shared, req: Request<Incoming>) -> Result<String, AwsError> {
    if header_str(&req, "x-amz-target") != Some(ECR_TARGET) {
        return Err(AwsError::new(
            400,
            "UnknownOperationException",
            "The requested operation is not recognized by the service",
        ));
    }
    if header_str(&req, header::CONTENT_TYPE) != Some(ECR_CONTENT_TYPE) {
        return Err(AwsError::new(
            400,
            "SerializationException",
            "Content-Type must be application/x-amz-json-1.1",
        ));
    }
    let (parts, body) = req.into_parts();
    let bytes = read_body(body, MAX_BODY_BYTES).await.map_err(|_| {
        AwsError::new(
            413,
            "RequestEntityTooLargeException",
            "Request body too large",
        )
    })?;
    if !serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| v.is_object()) {
        return Err(AwsError::new(
            400,
            "SerializationException",
            "The body is not a JSON object",
        ));
    }
    let now = shared.now();
    let caller = authenticate(shared, &parts, &bytes, ECR_SERVICE, now)?;
    let assumed = caller.arn.clone();
    if !caller.permissions.allows("ecr:GetAuthorizationToken", "*") {
        return Err(AwsError::new(
            403,
            "AccessDeniedException",
            format!(
                "User: {assumed} is not authorized to perform: ecr:GetAuthorizationToken on resource: * because no identity-based or session policy allows the ecr:GetAuthorizationToken action"
            ),
        ));
    }
    let password = random_alphanumeric("eyJwYXlsb2FkIjoiZmFrZS1lY3Ii", 96)
        .ok_or_else(|| AwsError::new(500, "ServerException", "random generator failed"))?;
    let expires_at = now.saturating_add(i64::try_from(TOKEN_LIFETIME.as_secs()).unwrap_or(43_200));
    shared.state().add_token(
        &password,
        RegistryToken {
            expires_at,
            partition: caller.partition.clone(),
            account: caller.account.clone(),
            assumed_role_arn: assumed,
            permissions: caller.permissions.clone(),
        },
        now,
    );
    let login = seal_string(Zeroizing::new(format!("AWS:{}", password.expose_secret())));
    let encoded =
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(login.expose_secret()));
    #[allow(
        clippy::cast_precision_loss,
        reason = "Unix seconds fit an f64 exactly"
    )]
    let answered_expiry = lock(&shared.forced_expires_at).unwrap_or(expires_at as f64 + 0.25);
    let body = json!({
        "authorizationData": [{
            "authorizationToken": encoded.as_str(),
            "expiresAt": answered_expiry,
            "proxyEndpoint": format!("https://{}.dkr.ecr.{REGION}.amazonaws.com", caller.account),
        }]
    });
    Ok(body.to_string())
}

/// A queued fault's status in ECR's words (429 adds `Retry-After: 1`).
fn ecr_fault(status: u16) -> Reply {
    let code = match status {
        400 => "InvalidParameterException",
        401 => "NotAuthorized",
        403 => "AccessDeniedException",
        429 => "ThrottlingException",
        s if s >= 500 => "ServerException",
        _ => "ValidationException",
    };
    retry_after_on_429(
        status,
        ecr_error(&AwsError::new(status, code, "injected fault")),
    )
}

/// ECR's JSON 1.1 error body.
fn ecr_error(e: &AwsError) -> Reply {
    let body = json!({ "__type": e.code, "message": e.message });
    reply(e.status, ECR_CONTENT_TYPE, body.to_string())
}

// === registry ===

/// `/v2/` and `/v2/<repo>/tags/list` with Basic `AWS:<password>`.
fn registry_check(shared: &Shared, req: &Request<Incoming>, path: &str) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return registry_error(405, "UNSUPPORTED", "Method Not Allowed");
    }
    let now = shared.now();
    let state = shared.state();
    let token = header_str(req, header::AUTHORIZATION)
        .and_then(parse_basic)
        .filter(|(user, _)| user == "AWS")
        .and_then(|(_, password)| state.live_token(&password, now).cloned());
    drop(state);
    let Some(token) = token else {
        let mut r = registry_error(401, "UNAUTHORIZED", "Not Authorized");
        let realm = format!(
            "Basic realm=\"https://{REGION}.dkr.ecr.amazonaws.com/\",service=\"ecr.amazonaws.com\""
        );
        if let Ok(value) = HeaderValue::from_str(&realm) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        return r;
    };
    shared.sts.stats().counts.registry_checks += 1;
    if path == "/v2" || path == "/v2/" {
        let mut r = reply(200, "application/json", "{}".to_owned());
        r.headers_mut().insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        return r;
    }
    let Some(repository) = path
        .strip_prefix("/v2/")
        .and_then(|rest| rest.strip_suffix("/tags/list"))
        .filter(|r| !r.is_empty())
    else {
        return registry_error(404, "NAME_UNKNOWN", "not served by the fake");
    };
    let arn = format!(
        "arn:{}:ecr:{REGION}:{}:repository/{repository}",
        token.partition, token.account
    );
    if !token.permissions.allows("ecr:BatchGetImage", &arn) {
        return registry_error(
            403,
            "DENIED",
            &format!(
                "User: {} is not authorized to perform: ecr:BatchGetImage on resource: {arn}",
                token.assumed_role_arn
            ),
        );
    }
    let body = json!({ "name": repository, "tags": ["latest"] });
    reply(200, "application/json", body.to_string())
}

/// The registry API's error body.
fn registry_error(status: u16, code: &str, message: &str) -> Reply {
    let body = json!({ "errors": [{ "code": code, "message": message }] });
    reply(status, "application/json", body.to_string())
}

// === helpers ===

/// XML text escaping.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A value echoed in an error, cut to 64 characters.
pub(super) fn cut(text: &str) -> String {
    text.chars().take(64).collect()
}

/// A request id shaped like AWS's.
pub(super) fn request_id() -> String {
    random_alphanumeric("", 32)
        .map(|id| id.expose_secret().to_ascii_lowercase())
        .unwrap_or_default()
}

// === SigV4 authentication (ECR and KMS) ===

/// Verifies a JSON 1.1 request's SigV4 signature for `service` and says who sent it: a session
/// the fake's STS issued (its `x-amz-security-token` must be the session's) or an IAM user's
/// access key ([`super::FakeAws::add_iam_user`], no token).
///
/// # Errors
/// 400 `MissingAuthenticationTokenException`, 403 `IncompleteSignature`,
/// `InvalidSignatureException` (scope, unsigned headers, date skew, mismatch),
/// `UnrecognizedClientException` (unknown key or wrong token), `ExpiredTokenException`.
pub(super) fn authenticate(
    shared: &Shared,
    parts: &http::request::Parts,
    body: &[u8],
    service: &str,
    now: i64,
) -> Result<Caller, AwsError> {
    let headers = &parts.headers;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(authorization) = text("authorization") else {
        return Err(AwsError::new(
            400,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let incomplete = || {
        AwsError::new(
            403,
            "IncompleteSignature",
            "The request signature does not conform to AWS standards.",
        )
    };
    let auth = sigv4::parse_authorization(authorization).ok_or_else(incomplete)?;
    let invalid_signature =
        |message: String| AwsError::new(403, "InvalidSignatureException", message);
    let amz_date = text("x-amz-date").ok_or_else(incomplete)?;
    let signed_at = sigv4::parse_amz_date(amz_date).ok_or_else(incomplete)?;
    if auth.service != service || auth.region != REGION || !amz_date.starts_with(&auth.date) {
        return Err(invalid_signature(format!(
            "Credential should be scoped to a valid region and service: {}/{}/{}",
            cut(&auth.date),
            cut(&auth.region),
            cut(&auth.service)
        )));
    }
    let signed = |name: &str| auth.signed_headers.iter().any(|h| h == name);
    // AWS requires host and x-amz-date to be signed; the token too when sent (stricter than
    // the documentation says for every service: the SDKs always sign it).
    if !signed("host")
        || !signed("x-amz-date")
        || (headers.contains_key("x-amz-security-token") && !signed("x-amz-security-token"))
    {
        return Err(invalid_signature(
            "'Host' or 'X-Amz-Date' (or 'X-Amz-Security-Token') must be a signed header".to_owned(),
        ));
    }
    let skew = i64::try_from(MAX_CLOCK_SKEW.as_secs()).unwrap_or(900);
    if (now - signed_at).abs() > skew {
        return Err(invalid_signature(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            sigv4::amz_date(now - skew),
            sigv4::amz_date(now)
        )));
    }
    let unrecognized = || {
        AwsError::new(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    };
    let token = text("x-amz-security-token");
    let (secret, caller) = {
        let state = shared.state();
        if let Some(session) = state.sessions.get(&auth.access_key_id) {
            let token_ok = token
                .is_some_and(|t| sigv4::constant_time_eq(t, session.session_token.expose_secret()));
            if !token_ok {
                return Err(unrecognized());
            }
            if session.expires_at <= now {
                return Err(AwsError::new(
                    403,
                    "ExpiredTokenException",
                    "The security token included in the request is expired",
                ));
            }
            let caller = Caller {
                arn: assumed_role_arn(
                    &session.partition,
                    &session.account,
                    &session.role_name,
                    &session.session_name,
                ),
                partition: session.partition.clone(),
                account: session.account.clone(),
                permissions: session.permissions.clone(),
            };
            (session.secret_access_key.clone(), caller)
        } else if let Some(user) = state.users.get(&auth.access_key_id) {
            // A long-term key signs without a session token; one sent anyway is not its own.
            if token.is_some() {
                return Err(unrecognized());
            }
            let caller = Caller {
                arn: user.arn.clone(),
                partition: user.partition.clone(),
                account: user.account.clone(),
                permissions: Permissions {
                    role: user.permissions.clone(),
                    session: None,
                },
            };
            (user.secret_access_key.clone(), caller)
        } else {
            return Err(unrecognized());
        }
    };
    let canonical = sigv4::canonical_request(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        headers,
        &auth.signed_headers,
        body,
    )
    .ok_or_else(incomplete)?;
    let scope = format!(
        "{}/{}/{}/{}",
        auth.date,
        auth.region,
        auth.service,
        sigv4::TERMINATOR
    );
    let string_to_sign = sigv4::string_to_sign(amz_date, &scope, &canonical);
    let expected = sigv4::signature(
        secret.expose_secret(),
        &auth.date,
        &auth.region,
        &auth.service,
        &string_to_sign,
    );
    if !sigv4::constant_time_eq(&expected, &auth.signature) {
        return Err(invalid_signature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".to_owned(),
        ));
    }
    Ok(caller)
}
