//! The one error type at the HTTP edge, with the one `IntoResponse`.
//!
//! Every failure leaves as `{"error":{"code","message"}}`. Messages say what
//! to fix; they never carry secrets, and 5xx messages never carry internals
//! (those go to the log under the request id).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latch_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// A refused token exchange (RFC 6749 `invalid_grant`): the presented
    /// token failed a check, which the message names.
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    MfaRequired(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    PayloadTooLarge { message: String },
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    /// `what` was done too often from here (the answer carries Retry-After).
    #[error("{what}: try again in {retry_after_secs} s")]
    RateLimited { what: &'static str, retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `invalid_json`.
    pub code: &'static str,
    /// What went wrong and what to do about it.
    pub message: String,
}

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidGrant(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) | ApiError::MfaRequired(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::InvalidGrant(_) => "invalid_grant",
            ApiError::MfaRequired(_) => "mfa_required",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Precondition(m) => ApiError::Conflict(m),
            StoreError::Closed => ApiError::Unavailable("the server is shutting down".into()),
            // Fail closed: refuse rather than guess; the client may retry.
            StoreError::Unavailable(m) => ApiError::Unavailable(format!("{m}; retry shortly")),
            other => ApiError::internal(other),
        }
    }
}

impl From<latch_crypto::CryptoError> for ApiError {
    fn from(e: latch_crypto::CryptoError) -> Self {
        ApiError::internal(e)
    }
}

impl From<latch_core::NameError> for ApiError {
    fn from(e: latch_core::NameError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error: see the server log for this request id".to_string()
            }
            other => other.to_string(),
        };
        let mut resp = (status, Json(ErrorBody { error: ErrorDetail { code: self.code(), message } })).into_response();
        if let ApiError::RateLimited { retry_after_secs, .. } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
