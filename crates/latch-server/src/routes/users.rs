//! User administration (admins only).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latch_core::validate_name;
use latch_crypto::{Secret, new_id};
use latch_store::{NewUser, User};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, Ctx};
use crate::routes::{blocking, check_password_policy, path_name};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Initial password; without one the user cannot log in until one is set.
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    pub password: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub name: String,
    pub disabled: bool,
    pub has_password: bool,
    pub mfa_enrolled: bool,
    pub groups: Vec<String>,
    pub created_at: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            id: u.id,
            name: u.name,
            disabled: u.disabled,
            has_password: u.password_hash.is_some(),
            mfa_enrolled: u.totp_confirmed,
            groups: u.groups,
            created_at: u.created_at.to_rfc3339(),
        }
    }
}

pub(crate) fn validate_groups(groups: &[String]) -> ApiResult<()> {
    if groups.len() > 100 {
        return Err(ApiError::BadRequest("at most 100 groups at once".into()));
    }
    for g in groups {
        validate_name("group", g)?;
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = UserView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    ApiJson(req): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    validate_name("user", &req.name)?;
    validate_groups(&req.groups)?;
    let password_hash = match req.password {
        Some(pw) => {
            check_password_policy(&pw)?;
            let pw = Secret::new(pw);
            Some(blocking(move || latch_crypto::password::hash_password(pw.expose())).await?)
        }
        None => None,
    };
    let ev = ctx
        .audit(admin.audit_name(), "user.create", format!("user:{}", req.name))
        .details(json!({ "groups": req.groups, "password_set": password_hash.is_some() }));
    let user = NewUser { id: new_id("usr")?, name: req.name, password_hash };
    let created = st.store.create_user(user, req.groups, ev).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

#[utoipa::path(get, path = "/v1/users", tag = "users", responses((status = 200, body = UserList)), security(("bearer" = [])))]
pub async fn list(State(st): State<AppState>, _admin: Admin) -> ApiResult<Json<UserList>> {
    let users = st.store.list_users().await?;
    Ok(Json(UserList { users: users.into_iter().map(UserView::from).collect() }))
}

async fn find(st: &AppState, name: &str) -> ApiResult<User> {
    path_name("user", name)?;
    st.store.get_user(name).await?.ok_or_else(|| ApiError::NotFound(format!("user {name:?} not found")))
}

#[utoipa::path(get, path = "/v1/users/{name}", tag = "users",
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(State(st): State<AppState>, _admin: Admin, Path(name): Path<String>) -> ApiResult<Json<UserView>> {
    Ok(Json(find(&st, &name).await?.into()))
}

fn not_self(admin: &latch_core::Principal, name: &str, what: &str) -> ApiResult<()> {
    if admin.kind == latch_core::PrincipalKind::User && admin.name == name {
        return Err(ApiError::Conflict(format!("you cannot {what} yourself: ask another administrator")));
    }
    Ok(())
}

async fn set_disabled(
    st: AppState,
    ctx: Ctx,
    admin: latch_core::Principal,
    name: String,
    disabled: bool,
) -> ApiResult<Json<UserView>> {
    path_name("user", &name)?;
    if disabled {
        not_self(&admin, &name, "disable")?;
    }
    let action = if disabled { "user.disable" } else { "user.enable" };
    let ev = ctx.audit(admin.audit_name(), action, format!("user:{name}"));
    Ok(Json(st.store.set_user_disabled(&name, disabled, ev).await?.into()))
}

#[utoipa::path(post, path = "/v1/users/{name}/disable", tag = "users",
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn disable(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<UserView>> {
    set_disabled(st, ctx, admin, name, true).await
}

#[utoipa::path(post, path = "/v1/users/{name}/enable", tag = "users",
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn enable(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<UserView>> {
    set_disabled(st, ctx, admin, name, false).await
}

#[utoipa::path(delete, path = "/v1/users/{name}", tag = "users",
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    path_name("user", &name)?;
    not_self(&admin, &name, "delete")?;
    let ev = ctx.audit(admin.audit_name(), "user.delete", format!("user:{name}"));
    st.store.delete_user(&name, ev).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/v1/users/{name}/password", tag = "users", request_body = SetPassword,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn set_password(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<SetPassword>,
) -> ApiResult<StatusCode> {
    path_name("user", &name)?;
    check_password_policy(&req.password)?;
    let pw = Secret::new(req.password);
    let hash = blocking(move || latch_crypto::password::hash_password(pw.expose())).await?;
    let ev = ctx.audit(admin.audit_name(), "user.set_password", format!("user:{name}"));
    st.store.set_password(&name, hash, ev).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/users/{name}/mfa", tag = "users",
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn reset_mfa(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    path_name("user", &name)?;
    let ev = ctx.audit(admin.audit_name(), "user.reset_mfa", format!("user:{name}"));
    st.store.reset_totp(&name, ev).await?;
    Ok(StatusCode::NO_CONTENT)
}
