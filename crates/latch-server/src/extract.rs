//! Request extractors: strict JSON bodies, the request context, and the
//! authenticated caller.

use std::net::SocketAddr;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use latch_audit::AuditDraft;
use latch_core::Principal;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body; every rejection becomes an [`ApiError`] in our format.
/// Request types use `deny_unknown_fields`, so typos are errors, not no-ops.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType {
                message: "send the body as JSON with the header Content-Type: application/json".into(),
            });
        }
        let bytes = body_bytes(req, state).await?;
        parse_object(&bytes).map(ApiJson)
    }
}

/// An optional JSON body: an empty body is `None`; anything else must parse.
impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        parse_object(&bytes).map(|v| Some(ApiJson(v)))
    }
}

pub(crate) fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
        })
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<axum::body::Bytes, ApiError> {
    axum::body::Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                message: format!("request body exceeds the limit of {} bytes", crate::BODY_LIMIT),
            }
        } else {
            ApiError::BadRequest(e.body_text())
        }
    })
}

/// Request bodies are JSON objects. Serde would also accept a struct written
/// as an array of its fields by position, which no client means to send.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let parsed = axum::Json::<T>::from_bytes(bytes).map(|axum::Json(v)| v).map_err(json_rejection);
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => parsed,
        _ => parsed.and(Err(ApiError::BadRequest("invalid request body: it must be a JSON object ({ … })".into()))),
    }
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    match rej {
        JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(format!(
            "malformed JSON: {}",
            e.body_text().replace("Failed to parse the request body as JSON: ", "")
        )),
        JsonRejection::JsonDataError(e) => ApiError::BadRequest(format!(
            "invalid request body: {}",
            e.body_text().replace("Failed to deserialize the JSON body into the target type: ", "")
        )),
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType {
            message: "send the body as JSON with the header Content-Type: application/json".into(),
        },
        JsonRejection::BytesRejection(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge {
                message: format!("request body exceeds the limit of {} bytes", crate::BODY_LIMIT),
            }
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// Query parameters, with rejections in our format.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))
            }
            Err(other) => Err(ApiError::BadRequest(other.body_text())),
        }
    }
}

/// The request id set by the request-id middleware.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Who is calling from where, for audit events.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub request_id: String,
    pub source: String,
}

impl Ctx {
    /// An audit draft stamped with this request's id and source address.
    pub fn audit(&self, actor: impl Into<String>, action: &str, target: impl Into<String>) -> AuditDraft {
        AuditDraft::new(actor, action, target).context(&self.request_id, &self.source)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ci| ci.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        Ok(Ctx { request_id, source })
    }
}

/// An authenticated caller. Resolved from the store on every request, so a
/// disabled identity or revoked session stops working immediately.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        let hash = latch_crypto::token_hash(token);
        match state.store.authenticate(&hash, state.clock.now()).await? {
            Some(p) => Ok(Caller(p)),
            None => Err(ApiError::Unauthenticated(
                "the token is invalid, expired or revoked: log in again with `latch login`".into(),
            )),
        }
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    // Vault clients send their token in `X-Vault-Token`.
    if let Some(v) = parts.headers.get("x-vault-token") {
        let t =
            v.to_str().map_err(|_| ApiError::Unauthenticated("the X-Vault-Token header is not valid text".into()))?;
        if !t.trim().is_empty() {
            return Ok(t.trim());
        }
    }
    let Some(value) = parts.headers.get(AUTHORIZATION) else {
        return Err(ApiError::Unauthenticated(
            "missing token: send `Authorization: Bearer <token>` (the CLI reads LATCH_TOKEN)".into(),
        ));
    };
    let value =
        value.to_str().map_err(|_| ApiError::Unauthenticated("the Authorization header is not valid text".into()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(ApiError::Unauthenticated("the Authorization header must be `Bearer <token>`".into())),
    }
}

/// An authenticated member of the `admins` group.
pub struct Admin(pub Principal);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Caller(p) = Caller::from_request_parts(parts, state).await?;
        if p.is_admin() {
            Ok(Admin(p))
        } else {
            Err(ApiError::Forbidden(format!(
                "{} is not a latch administrator (member of group {:?})",
                p.audit_name(),
                latch_core::principal::ADMIN_GROUP
            )))
        }
    }
}
