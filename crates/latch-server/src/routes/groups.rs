//! Groups and membership (admins only). Groups feed policy decisions.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latch_core::principal::ADMIN_GROUP;
use latch_core::{PrincipalKind, validate_name};
use latch_store::{Group, Member};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, Ctx};
use crate::routes::path_name;
use crate::state::AppState;

const MAX_DESCRIPTION: usize = 1024;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    #[schema(value_type = String)]
    pub kind: PrincipalKind,
    pub name: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    #[schema(value_type = String)]
    pub kind: PrincipalKind,
    pub name: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub created_at: String,
    pub members: Vec<MemberView>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupView>,
}

impl From<Group> for GroupView {
    fn from(g: Group) -> Self {
        GroupView {
            id: g.id,
            name: g.name,
            description: g.description,
            created_at: g.created_at.to_rfc3339(),
            members: g.members.into_iter().map(|Member { kind, name }| MemberView { kind, name }).collect(),
        }
    }
}

pub(crate) fn check_description(d: &str) -> ApiResult<()> {
    if d.chars().count() > MAX_DESCRIPTION || d.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::BadRequest(format!(
            "description must be at most {MAX_DESCRIPTION} characters without control characters"
        )));
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/groups", tag = "groups", request_body = CreateGroup,
    responses((status = 201, body = GroupView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    ApiJson(req): ApiJson<CreateGroup>,
) -> ApiResult<(StatusCode, Json<GroupView>)> {
    validate_name("group", &req.name)?;
    check_description(&req.description)?;
    let ev = ctx.audit(admin.audit_name(), "group.create", format!("group:{}", req.name));
    let g = st.store.create_group(&req.name, &req.description, ev).await?;
    Ok((StatusCode::CREATED, Json(g.into())))
}

#[utoipa::path(get, path = "/v1/groups", tag = "groups", responses((status = 200, body = GroupList)), security(("bearer" = [])))]
pub async fn list(State(st): State<AppState>, _admin: Admin) -> ApiResult<Json<GroupList>> {
    let groups = st.store.list_groups().await?;
    Ok(Json(GroupList { groups: groups.into_iter().map(GroupView::from).collect() }))
}

#[utoipa::path(get, path = "/v1/groups/{name}", tag = "groups",
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(State(st): State<AppState>, _admin: Admin, Path(name): Path<String>) -> ApiResult<Json<GroupView>> {
    path_name("group", &name)?;
    let g = st.store.get_group(&name).await?.ok_or_else(|| ApiError::NotFound(format!("group {name:?} not found")))?;
    Ok(Json(g.into()))
}

#[utoipa::path(delete, path = "/v1/groups/{name}", tag = "groups",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    path_name("group", &name)?;
    if name == ADMIN_GROUP {
        return Err(ApiError::Conflict(format!(
            "group {ADMIN_GROUP:?} holds latch's administrators and cannot be deleted"
        )));
    }
    let ev = ctx.audit(admin.audit_name(), "group.delete", format!("group:{name}"));
    st.store.delete_group(&name, ev).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/groups/{name}/members", tag = "groups", request_body = AddMember,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn add_member(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<AddMember>,
) -> ApiResult<StatusCode> {
    path_name("group", &name)?;
    validate_name("member", &req.name)?;
    let ev = ctx
        .audit(admin.audit_name(), "group.add_member", format!("group:{name}"))
        .details(json!({ "member": format!("{}:{}", req.kind.as_str(), req.name) }));
    st.store.add_member(&name, req.kind, &req.name, ev).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/groups/{name}/members/{kind}/{member}", tag = "groups",
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn remove_member(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    Path((name, kind, member)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    path_name("group", &name)?;
    path_name("member", &member)?;
    let kind = PrincipalKind::parse(&kind)
        .ok_or_else(|| ApiError::BadRequest(format!("member kind must be user or service_principal, not {kind:?}")))?;
    if name == ADMIN_GROUP && kind == admin.kind && member == admin.name {
        return Err(ApiError::Conflict(
            "you cannot remove yourself from the administrators: ask another administrator".into(),
        ));
    }
    let ev = ctx
        .audit(admin.audit_name(), "group.remove_member", format!("group:{name}"))
        .details(json!({ "member": format!("{}:{member}", kind.as_str()) }));
    st.store.remove_member(&name, kind, &member, ev).await?;
    Ok(StatusCode::NO_CONTENT)
}
