//! Service principals: identities for pipelines and services (admins only).
//! Their secret is shown once at creation or rotation; latch keeps a hash.
//!
//! A secret has a lifetime (per principal, else `[auth] sp_secret_lifetime`;
//! `never` for none): past it, it stops authenticating. Rotation is either
//! rolling — the previous secret stays valid for an overlap, its sessions
//! too, so a pipeline switches without downtime — or immediate (no overlap:
//! the old secret and its sessions end at once, as after a leak).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latch_core::{Timestamp, format_duration, parse_duration, validate_name};
use latch_crypto::{new_id, new_token, token_hash};
use latch_store::{NewServicePrincipal, ServicePrincipal, SpSecretRotation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, Ctx};
use crate::routes::groups::check_description;
use crate::routes::path_name;
use crate::routes::users::validate_groups;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSp {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// How long each secret of this principal is valid, e.g. `30d`, or
    /// `never`; the server's `[auth] sp_secret_lifetime` when omitted.
    #[serde(default)]
    pub secret_lifetime: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the previous secret (and its sessions) stays valid, e.g.
    /// `1h`. Omitted or `0s`: it ends at once, its sessions revoked.
    #[serde(default)]
    pub overlap: Option<String>,
    /// Changes the principal's secret lifetime (`30d`, `never`, or `default`
    /// for the server's), starting with this secret.
    #[serde(default)]
    pub secret_lifetime: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SpView {
    /// Also the client id used to log in.
    pub id: String,
    pub name: String,
    pub description: String,
    pub disabled: bool,
    pub groups: Vec<String>,
    pub created_at: String,
    pub secret_rotated_at: String,
    /// When the current secret stops authenticating; absent: never.
    pub secret_expires_at: Option<String>,
    /// The principal's own secret lifetime (`30d`, `never`); absent: the server's.
    pub secret_lifetime: Option<String>,
    /// After a rolling rotation: until when the previous secret still works.
    pub previous_secret_expires_at: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SpList {
    pub service_principals: Vec<SpView>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SpCredentials {
    pub service_principal: SpView,
    pub client_id: String,
    /// Shown once. Store it in the pipeline's secret store.
    pub client_secret: String,
}

impl From<ServicePrincipal> for SpView {
    fn from(s: ServicePrincipal) -> Self {
        SpView {
            id: s.id,
            name: s.name,
            description: s.description,
            disabled: s.disabled,
            groups: s.groups,
            created_at: s.created_at.to_rfc3339(),
            secret_rotated_at: s.secret_rotated_at.to_rfc3339(),
            secret_expires_at: s.secret_expires_at.map(Timestamp::to_rfc3339),
            secret_lifetime: s.secret_lifetime_ms.map(lifetime_word),
            previous_secret_expires_at: s.previous_secret_expires_at.map(Timestamp::to_rfc3339),
        }
    }
}

fn lifetime_word(ms: i64) -> String {
    if ms <= 0 { "never".into() } else { format_duration(std::time::Duration::from_millis(ms.unsigned_abs())) }
}

/// A lifetime as given: `Some(0)` for `never`, milliseconds otherwise.
fn parse_lifetime(text: &str) -> Result<i64, ApiError> {
    if text == "never" {
        return Ok(0);
    }
    let d = parse_duration(text)
        .map_err(|e| ApiError::BadRequest(format!("secret_lifetime: {e} (or `never` for no expiry)")))?;
    if d < std::time::Duration::from_secs(60) {
        return Err(ApiError::BadRequest("secret_lifetime must be at least 1m (or `never`)".into()));
    }
    Ok(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// When a secret made now expires, given the principal's lifetime setting.
fn expiry(st: &AppState, now: Timestamp, lifetime_ms: Option<i64>) -> Option<Timestamp> {
    match lifetime_ms {
        Some(0) => None,
        Some(ms) => Some(Timestamp(now.millis().saturating_add(ms))),
        None => st.auth.sp_secret_lifetime.map(|d| now.plus(d)),
    }
}

fn credentials(sp: ServicePrincipal, secret: &latch_crypto::Secret) -> SpCredentials {
    SpCredentials { client_id: sp.id.clone(), client_secret: secret.expose().to_string(), service_principal: sp.into() }
}

#[utoipa::path(post, path = "/v1/service-principals", tag = "service-principals", request_body = CreateSp,
    responses((status = 201, body = SpCredentials), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    ApiJson(req): ApiJson<CreateSp>,
) -> ApiResult<(StatusCode, Json<SpCredentials>)> {
    validate_name("service principal", &req.name)?;
    check_description(&req.description)?;
    validate_groups(&req.groups)?;
    let lifetime = req.secret_lifetime.as_deref().map(parse_lifetime).transpose()?;
    let expires_at = expiry(&st, st.clock.now(), lifetime);
    let secret = new_token("ltsp")?;
    let id = new_id("sp")?;
    let ev = ctx.audit(admin.audit_name(), "sp.create", format!("service_principal:{}", req.name)).details(json!({
        "client_id": id, "groups": req.groups, "secret_expires_at": expires_at.map(Timestamp::to_rfc3339),
    }));
    let sp = NewServicePrincipal {
        id,
        name: req.name,
        description: req.description,
        secret_hash: token_hash(secret.expose()),
        secret_lifetime_ms: lifetime,
        secret_expires_at: expires_at,
    };
    let created = st.store.create_sp(sp, req.groups, ev).await?;
    Ok((StatusCode::CREATED, Json(credentials(created, &secret))))
}

#[utoipa::path(get, path = "/v1/service-principals", tag = "service-principals",
    responses((status = 200, body = SpList)), security(("bearer" = [])))]
pub async fn list(State(st): State<AppState>, _admin: Admin) -> ApiResult<Json<SpList>> {
    let sps = st.store.list_sps().await?;
    Ok(Json(SpList { service_principals: sps.into_iter().map(SpView::from).collect() }))
}

#[utoipa::path(get, path = "/v1/service-principals/{name}", tag = "service-principals",
    responses((status = 200, body = SpView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(State(st): State<AppState>, _admin: Admin, Path(name): Path<String>) -> ApiResult<Json<SpView>> {
    path_name("service principal", &name)?;
    let sp = st
        .store
        .get_sp(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("service principal {name:?} not found")))?;
    Ok(Json(sp.into()))
}

/// Issues a new secret (shown once). With `overlap`, the previous one keeps
/// working that long (rolling rotation); without, it ends at once.
#[utoipa::path(post, path = "/v1/service-principals/{name}/rotate-secret", tag = "service-principals",
    request_body = RotateSecret,
    responses((status = 200, body = SpCredentials), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate_secret(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    Path(name): Path<String>,
    body: Option<ApiJson<RotateSecret>>,
) -> ApiResult<Json<SpCredentials>> {
    path_name("service principal", &name)?;
    let req = body.map(|b| b.0).unwrap_or_default();
    let overlap = match req.overlap.as_deref() {
        None | Some("0" | "0s") => std::time::Duration::ZERO,
        Some(o) => parse_duration(o).map_err(|e| ApiError::BadRequest(format!("overlap: {e}")))?,
    };
    let lifetime = match req.secret_lifetime.as_deref() {
        None => None,
        Some("default") => Some(None),
        Some(l) => Some(Some(parse_lifetime(l)?)),
    };
    let sp = st
        .store
        .get_sp(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("service principal {name:?} not found")))?;
    let now = st.clock.now();
    let expires_at = expiry(&st, now, lifetime.unwrap_or(sp.secret_lifetime_ms));
    if let Some(e) = expires_at
        && now.plus(overlap) > e
    {
        return Err(ApiError::BadRequest(format!(
            "overlap {} is longer than the new secret's lifetime: choose a shorter overlap",
            format_duration(overlap)
        )));
    }
    let overlap_until = (!overlap.is_zero()).then(|| now.plus(overlap));
    let secret = new_token("ltsp")?;
    let ev = ctx.audit(admin.audit_name(), "sp.rotate_secret", format!("service_principal:{name}")).details(json!({
        "overlap": format_duration(overlap),
        "previous_valid_until": overlap_until.map(Timestamp::to_rfc3339),
        "secret_expires_at": expires_at.map(Timestamp::to_rfc3339),
        "sessions_revoked": overlap_until.is_none(),
    }));
    let rotation =
        SpSecretRotation { secret_hash: token_hash(secret.expose()), expires_at, lifetime_ms: lifetime, overlap_until };
    let sp = st.store.rotate_sp_secret(&name, rotation, ev).await?;
    Ok(Json(credentials(sp, &secret)))
}

async fn set_disabled(
    st: AppState,
    ctx: Ctx,
    admin: latch_core::Principal,
    name: String,
    disabled: bool,
) -> ApiResult<Json<SpView>> {
    path_name("service principal", &name)?;
    let action = if disabled { "sp.disable" } else { "sp.enable" };
    let ev = ctx.audit(admin.audit_name(), action, format!("service_principal:{name}"));
    Ok(Json(st.store.set_sp_disabled(&name, disabled, ev).await?.into()))
}

#[utoipa::path(post, path = "/v1/service-principals/{name}/disable", tag = "service-principals",
    responses((status = 200, body = SpView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn disable(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<SpView>> {
    set_disabled(st, ctx, admin, name, true).await
}

#[utoipa::path(post, path = "/v1/service-principals/{name}/enable", tag = "service-principals",
    responses((status = 200, body = SpView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn enable(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<SpView>> {
    set_disabled(st, ctx, admin, name, false).await
}

#[utoipa::path(delete, path = "/v1/service-principals/{name}", tag = "service-principals",
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    path_name("service principal", &name)?;
    let ev = ctx.audit(admin.audit_name(), "sp.delete", format!("service_principal:{name}"));
    st.store.delete_sp(&name, ev).await?;
    Ok(StatusCode::NO_CONTENT)
}
