//! Service principals: identities for pipelines and services (admins only).
//! Their secret is shown once at creation or rotation; latch keeps a hash.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latch_core::validate_name;
use latch_crypto::{new_id, new_token, token_hash};
use latch_store::{NewServicePrincipal, ServicePrincipal};
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
        }
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
    let secret = new_token("ltsp")?;
    let id = new_id("sp")?;
    let ev = ctx
        .audit(admin.audit_name(), "sp.create", format!("service_principal:{}", req.name))
        .details(json!({ "client_id": id, "groups": req.groups }));
    let sp = NewServicePrincipal {
        id,
        name: req.name,
        description: req.description,
        secret_hash: token_hash(secret.expose()),
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

#[utoipa::path(post, path = "/v1/service-principals/{name}/rotate-secret", tag = "service-principals",
    responses((status = 200, body = SpCredentials), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn rotate_secret(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<SpCredentials>> {
    path_name("service principal", &name)?;
    let secret = new_token("ltsp")?;
    let ev = ctx.audit(admin.audit_name(), "sp.rotate_secret", format!("service_principal:{name}"));
    let sp = st.store.rotate_sp_secret(&name, token_hash(secret.expose()), ev).await?;
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
