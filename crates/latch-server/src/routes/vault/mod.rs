//! The Vault-compatible API subset, so existing Vault clients (the `bao` and
//! `vault` CLIs, `hvac`, the Go `api` package) work against latch unchanged:
//! `sys/seal-status`, `sys/init`, `sys/unseal`, `sys/seal`, `sys/mounts`,
//! `sys/key-status`, `sys/rotate` and KV version 2 engines.
//!
//! These routes speak Vault's dialect: the token comes in `X-Vault-Token`
//! (or `Authorization: Bearer`), responses are wrapped in Vault's envelope,
//! errors are `{"errors": ["…"]}`, listing is the `LIST` method or
//! `?list=true`. Authentication and authorization are latch's: the token is
//! a latch session or API token, and the caller's rights are latch's.
//! Request bodies are still parsed strictly (a field Vault does not define
//! for that endpoint is an error naming it).

pub mod kv;
pub mod leases;
pub mod sys;
pub mod token;

use axum::Json;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::Caller;
use crate::state::AppState;

/// The first segments of latch's own routes, and Vault's reserved ones: a
/// secrets engine cannot be mounted at any of them.
pub const RESERVED_MOUNTS: &[&str] = &[
    "sys",
    "auth",
    "identity",
    "cubbyhole",
    "audit",
    "federations",
    "gateway",
    "grants",
    "groups",
    "metrics",
    "oidc",
    "openapi.json",
    "policy",
    "recordings",
    "requests",
    "slo",
    "sps",
    "ssh",
    "tokens",
    "users",
    ".well-known",
    "ui",
    "db",
    "database",
];

/// An error in Vault's wire format: `{"errors": ["message"]}`.
pub struct VaultError(pub ApiError);

impl<E: Into<ApiError>> From<E> for VaultError {
    fn from(e: E) -> Self {
        VaultError(e.into())
    }
}

impl IntoResponse for VaultError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let message = match &self.0 {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error: see the server log for this request id".to_string()
            }
            other => other.to_string(),
        };
        (status, Json(json!({ "errors": [message] }))).into_response()
    }
}

pub type VaultResult<T = Response> = Result<T, VaultError>;

/// Vault's response envelope around `data`.
pub fn envelope(data: Value) -> Response {
    (
        StatusCode::OK,
        Json(json!({
            "request_id": "",
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": data,
            "wrap_info": null,
            "warnings": null,
            "auth": null,
        })),
    )
        .into_response()
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// The caller, or Vault's 403 "permission denied"-style error; Vault
/// clients read only `errors`.
pub fn caller(c: Result<Caller, ApiError>) -> VaultResult<latch_core::Principal> {
    Ok(c.map_err(VaultError)?.0)
}

pub fn admin(c: Result<Caller, ApiError>) -> VaultResult<latch_core::Principal> {
    let p = caller(c)?;
    if !p.is_admin() {
        return Err(VaultError(ApiError::Forbidden(format!(
            "permission denied: {} is not a latch administrator (member of group {:?})",
            p.audit_name(),
            latch_core::principal::ADMIN_GROUP
        ))));
    }
    Ok(p)
}

/// A JSON body into `T` (unknown fields refused by `T`); an empty body is `{}`.
/// Vault clients do not always send a JSON content type, so none is required.
pub fn body<T: DeserializeOwned>(bytes: &[u8]) -> VaultResult<T> {
    let b: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    crate::extract::parse_object(b).map_err(VaultError)
}

/// Whether the request asks for a listing: the `LIST` method or `?list=true`.
pub fn is_list(method: &Method, list_param: Option<&str>) -> bool {
    method.as_str().eq_ignore_ascii_case("LIST") || list_param.is_some_and(|v| v == "true" || v == "1")
}

pub fn method_not_allowed(method: &Method, what: &str) -> VaultError {
    VaultError(ApiError::BadRequest(format!("{method} is not supported on {what}")))
}

/// Go's `time.Duration` string for whole seconds (`0s`, `1h0m0s`), as Vault prints them.
pub fn go_duration(ms: i64) -> String {
    let secs = ms / 1000;
    if secs == 0 {
        return "0s".into();
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// A Vault duration parameter: a number of seconds or a duration string;
/// `0`/`0s` means "none".
pub fn parse_vault_duration(field: &str, v: &Value) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!("{field} must be a duration such as \"30m\" or \"24h\", or a number of seconds"))
    };
    match v {
        Value::Number(n) => n.as_i64().filter(|s| *s >= 0).map(|s| s.saturating_mul(1000)).ok_or_else(bad),
        Value::String(s) if s.trim() == "0" || s.trim() == "0s" || s.trim().is_empty() => Ok(0),
        Value::String(s) => {
            if let Ok(n) = s.trim().parse::<i64>() {
                return if n >= 0 { Ok(n.saturating_mul(1000)) } else { Err(bad()) };
            }
            latch_core::parse_duration(s)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .map_err(|e| ApiError::BadRequest(format!("{field}: {e}")))
        }
        _ => Err(bad()),
    }
}

/// RFC 3339 with nanoseconds, as Vault prints times; "" for none.
pub fn vault_time(t: Option<latch_core::Timestamp>) -> String {
    t.map(|t| t.to_rfc3339()).unwrap_or_default()
}

/// The `X-Vault-Token`-or-bearer caller, for handlers taking the whole state.
pub type MaybeCaller = Result<Caller, ApiError>;

/// Headers are passed to handlers that need `Content-Type` (merge patch).
pub fn content_type(h: &HeaderMap) -> &str {
    h.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The Vault routes, merged into latch's router.
pub fn router() -> axum::Router<AppState> {
    use axum::routing::{any, get, post};
    axum::Router::new()
        .route("/v1/sys/seal-status", get(sys::seal_status))
        .route("/v1/sys/leader", get(sys::leader))
        .route("/v1/sys/init", get(sys::init_status).post(sys::init).put(sys::init))
        .route("/v1/sys/unseal", post(sys::unseal).put(sys::unseal))
        .route("/v1/sys/seal", post(sys::seal).put(sys::seal))
        .route("/v1/sys/key-status", get(sys::key_status))
        .route("/v1/sys/rotate", post(sys::rotate).put(sys::rotate))
        .route("/v1/sys/leases/{*rest}", any(leases::dispatch))
        .route("/v1/sys/renew/{*lease}", any(leases::renew_legacy))
        .route("/v1/sys/revoke/{*lease}", any(leases::revoke_legacy))
        .route("/v1/sys/mounts", get(sys::list_mounts))
        .route("/v1/sys/mounts/{*path}", any(sys::mount))
        .route("/v1/sys/internal/ui/mounts/{*path}", get(sys::ui_mount))
        .route("/v1/auth/token/{op}", any(token::dispatch))
        .route("/v1/{mount}/config", any(kv::config))
        .route("/v1/{mount}/data/{*path}", any(kv::data))
        .route("/v1/{mount}/metadata", any(kv::metadata_root))
        .route("/v1/{mount}/metadata/", any(kv::metadata_root))
        .route("/v1/{mount}/metadata/{*path}", any(kv::metadata))
        .route("/v1/{mount}/delete/{*path}", any(kv::delete_versions))
        .route("/v1/{mount}/undelete/{*path}", any(kv::undelete_versions))
        .route("/v1/{mount}/destroy/{*path}", any(kv::destroy_versions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(45_000), "45s");
        assert_eq!(go_duration(90_000), "1m30s");
        assert_eq!(go_duration(3_600_000), "1h0m0s");
    }

    #[test]
    fn vault_durations_parse() {
        assert_eq!(parse_vault_duration("d", &json!("0s")).unwrap(), 0);
        assert_eq!(parse_vault_duration("d", &json!(30)).unwrap(), 30_000);
        assert_eq!(parse_vault_duration("d", &json!("30")).unwrap(), 30_000);
        assert_eq!(parse_vault_duration("d", &json!("1h30m")).unwrap(), 5_400_000);
        assert!(parse_vault_duration("d", &json!(-1)).is_err());
        assert!(parse_vault_duration("d", &json!("soon")).is_err());
        assert!(parse_vault_duration("d", &json!(true)).is_err());
    }
}
