//! Federations of service principals (admins only): trust in an external
//! OpenID Connect issuer, for one audience, under claim conditions — what
//! Entra calls a federated identity credential and Vault a JWT auth role with
//! `bound_claims`. A pipeline then trades its platform's token for a session
//! at `POST /v1/auth/exchange`, with no static secret.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latch_core::federation::{Condition, validate_audience, validate_conditions, validate_issuer};
use latch_core::validate_name;
use latch_crypto::new_id;
use latch_store::{Federation, NewFederation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, Ctx};
use crate::routes::path_name;
use crate::state::AppState;

/// The name a federation gets when none is given.
pub const DEFAULT_NAME: &str = "default";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFederation {
    /// Unique per service principal; `default` when omitted.
    #[serde(default)]
    pub name: Option<String>,
    /// The issuer URL, compared with the token's `iss` exactly: https, or
    /// plain http for a loopback issuer only.
    pub issuer: String,
    /// One of the token's `aud` values must be this.
    pub audience: String,
    /// Claim conditions, at least one, all of which must hold: `{"claim":
    /// "ref", "equals": "refs/heads/main"}` or `{"claim": "ref", "glob":
    /// "refs/tags/v*"}` (`*`: any run of characters other than `/`).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct FederationView {
    pub id: String,
    pub name: String,
    pub service_principal: String,
    pub issuer: String,
    pub audience: String,
    #[schema(value_type = Vec<Object>)]
    pub conditions: Vec<Condition>,
    pub created_at: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct FederationList {
    pub federations: Vec<FederationView>,
}

impl From<Federation> for FederationView {
    fn from(f: Federation) -> Self {
        FederationView {
            id: f.id,
            name: f.name,
            service_principal: f.sp_name,
            issuer: f.issuer,
            audience: f.audience,
            conditions: f.conditions,
            created_at: f.created_at.to_rfc3339(),
        }
    }
}

#[utoipa::path(post, path = "/v1/service-principals/{name}/federations", tag = "service-principals",
    request_body = CreateFederation,
    responses((status = 201, body = FederationView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    Path(sp): Path<String>,
    ApiJson(req): ApiJson<CreateFederation>,
) -> ApiResult<(StatusCode, Json<FederationView>)> {
    path_name("service principal", &sp)?;
    let name = req.name.unwrap_or_else(|| DEFAULT_NAME.to_string());
    validate_name("federation", &name)?;
    validate_issuer(&req.issuer).map_err(|e| ApiError::BadRequest(e.0))?;
    validate_audience(&req.audience).map_err(|e| ApiError::BadRequest(e.0))?;
    validate_conditions(&req.conditions).map_err(|e| ApiError::BadRequest(e.0))?;
    let described: Vec<String> = req.conditions.iter().map(Condition::describe).collect();
    let ev = ctx.audit(admin.audit_name(), "sp.federate", format!("service_principal:{sp}")).details(json!({
        "federation": name, "issuer": req.issuer, "audience": req.audience, "conditions": described,
    }));
    let f = NewFederation {
        id: new_id("fed")?,
        name,
        issuer: req.issuer,
        audience: req.audience,
        conditions: req.conditions,
    };
    let made = st.store.create_federation(&sp, f, ev).await?;
    Ok((StatusCode::CREATED, Json(made.into())))
}

#[utoipa::path(get, path = "/v1/service-principals/{name}/federations", tag = "service-principals",
    responses((status = 200, body = FederationList), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    _admin: Admin,
    Path(sp): Path<String>,
) -> ApiResult<Json<FederationList>> {
    path_name("service principal", &sp)?;
    let all = st.store.list_federations(&sp).await?;
    Ok(Json(FederationList { federations: all.into_iter().map(FederationView::from).collect() }))
}

#[utoipa::path(delete, path = "/v1/service-principals/{name}/federations/{federation}", tag = "service-principals",
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    Path((sp, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    path_name("service principal", &sp)?;
    path_name("federation", &name)?;
    let ev = ctx
        .audit(admin.audit_name(), "sp.unfederate", format!("service_principal:{sp}"))
        .details(json!({ "federation": name }));
    st.store.delete_federation(&sp, &name, ev).await?;
    Ok(StatusCode::NO_CONTENT)
}
