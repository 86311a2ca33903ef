//! Vault's `sys/leases/…` (and the older `sys/renew`, `sys/revoke`) over the
//! leases of dynamic database credentials: the same checks as latch's own
//! `/v1/db/leases/…` routes, which these call, in Vault's wire format.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{MaybeCaller, VaultResult, body, caller, envelope, no_content, parse_vault_duration};
use crate::error::ApiError;
use crate::extract::{ApiJson, Caller, Ctx};
use crate::routes::db;
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LeaseBody {
    #[serde(default)]
    lease_id: Option<String>,
    #[serde(default)]
    increment: Option<Value>,
    #[serde(default)]
    sync: Option<bool>,
}

fn lease_id(b: &LeaseBody, from_path: Option<&str>) -> Result<String, ApiError> {
    b.lease_id
        .clone()
        .or_else(|| from_path.filter(|p| !p.is_empty()).map(str::to_string))
        .ok_or_else(|| ApiError::BadRequest("missing lease_id".into()))
}

/// `sys/leases/{op}` and `sys/leases/{op}/{lease}`; `sys/renew`, `sys/revoke`.
pub async fn dispatch(
    State(st): State<AppState>,
    ctx: Ctx,
    who: MaybeCaller,
    method: Method,
    Path(rest): Path<String>,
    bytes: Bytes,
) -> VaultResult {
    let p = caller(who)?;
    let (op, tail) = rest.split_once('/').unwrap_or((rest.as_str(), ""));
    let b: LeaseBody = body(&bytes)?;
    let _ = b.sync;
    let write = matches!(method, Method::POST | Method::PUT);
    match op {
        "lookup" if write => {
            let id = lease_id(&b, Some(tail))?;
            let axum::Json(v) = db::lookup(State(st), Caller(p), ApiJson(db::LeaseRef { lease_id: id })).await?;
            Ok(envelope(json!({
                "id": v.id,
                "issue_time": v.issue_time,
                "expire_time": v.expire_time,
                "last_renewal": null,
                "renewable": v.renewable,
                "ttl": v.ttl,
            })))
        }
        "renew" if write => {
            let id = lease_id(&b, Some(tail))?;
            let increment = match &b.increment {
                None => None,
                Some(v) => match parse_vault_duration("increment", v)? {
                    0 => None,
                    ms => Some(format!("{}s", (ms / 1000).max(1))),
                },
            };
            let axum::Json(v) =
                db::renew(State(st), ctx, Caller(p), ApiJson(db::RenewLease { lease_id: id, increment })).await?;
            Ok((
                StatusCode::OK,
                axum::Json(json!({
                    "request_id": "", "lease_id": v.id, "renewable": v.renewable, "lease_duration": v.ttl,
                    "data": null, "wrap_info": null, "warnings": null, "auth": null,
                })),
            )
                .into_response())
        }
        "revoke" if write => {
            let id = lease_id(&b, Some(tail))?;
            let _ = db::revoke(State(st), ctx, Caller(p), ApiJson(db::LeaseRef { lease_id: id })).await?;
            Ok(no_content())
        }
        "revoke-prefix" if write => {
            if !p.is_admin() {
                return Err(ApiError::Forbidden("only latch administrators may revoke leases by prefix".into()).into());
            }
            let prefix = tail.to_string();
            let _ = db::revoke_prefix(State(st), ctx, crate::extract::Admin(p), ApiJson(db::RevokePrefix { prefix }))
                .await?;
            Ok(no_content())
        }
        "lookup" | "renew" | "revoke" | "revoke-prefix" => {
            Err(super::method_not_allowed(&method, &format!("sys/leases/{op}")))
        }
        other => Err(ApiError::NotFound(format!(
            "no route sys/leases/{}: latch supports lookup, renew, revoke and revoke-prefix",
            other.chars().take(40).collect::<String>()
        ))
        .into()),
    }
}

/// The older `sys/renew/{lease}`.
pub async fn renew_legacy(
    st: State<AppState>,
    ctx: Ctx,
    who: MaybeCaller,
    method: Method,
    Path(lease): Path<String>,
    bytes: Bytes,
) -> VaultResult {
    dispatch(st, ctx, who, method, Path(format!("renew/{lease}")), bytes).await
}

/// The older `sys/revoke/{lease}`.
pub async fn revoke_legacy(
    st: State<AppState>,
    ctx: Ctx,
    who: MaybeCaller,
    method: Method,
    Path(lease): Path<String>,
    bytes: Bytes,
) -> VaultResult {
    dispatch(st, ctx, who, method, Path(format!("revoke/{lease}")), bytes).await
}
