//! Vault's token auth (`auth/token/…`) over latch sessions.
//!
//! A token made with `auth/token/create` is a latch session of the same
//! principal as its parent: it carries exactly its creator's rights (Vault
//! policies do not exist in latch, so only `default` is accepted), never
//! outlives its parent, and is revoked with it. The accessor is the session
//! id, a handle that is not a credential. Creating, renewing and revoking
//! tokens are audited; tokens themselves never are.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latch_core::{Principal, Timestamp};
use latch_crypto::{new_id, new_token, token_hash};
use latch_store::{ChildToken, NewSession, SessionInfo};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{MaybeCaller, VaultResult, body, caller, envelope, no_content, parse_vault_duration};
use crate::error::ApiError;
use crate::extract::Ctx;
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    role_name: Option<String>,
    #[serde(default)]
    policies: Option<Vec<String>>,
    #[serde(default)]
    meta: Option<Map<String, Value>>,
    #[serde(default)]
    no_parent: Option<bool>,
    #[serde(default)]
    no_default_policy: Option<bool>,
    #[serde(default)]
    renewable: Option<bool>,
    #[serde(default)]
    lease: Option<Value>,
    #[serde(default)]
    ttl: Option<Value>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    explicit_max_ttl: Option<Value>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    num_uses: Option<i64>,
    #[serde(default)]
    period: Option<Value>,
    #[serde(default)]
    entity_alias: Option<String>,
}

fn unsupported(what: &str) -> ApiError {
    ApiError::BadRequest(format!("{what} is not supported by latch tokens"))
}

/// `auth/token/create` (and `create-orphan`): a child of the caller's token.
pub async fn create(
    State(st): State<AppState>,
    ctx: Ctx,
    who: MaybeCaller,
    Path(variant): Path<String>,
    bytes: Bytes,
) -> VaultResult {
    let p = caller(who)?;
    let b: CreateBody = body(&bytes)?;
    let orphan = variant == "create-orphan" || b.no_parent == Some(true);
    if variant != "create" && variant != "create-orphan" {
        return Err(ApiError::NotFound(format!("no route auth/token/{variant}")).into());
    }
    if orphan && !p.is_admin() {
        return Err(ApiError::Forbidden("only latch administrators may create orphan tokens".into()).into());
    }
    check_create(&b)?;
    let now = st.clock.now();
    let parent = st.store.session_by_id(&p.session_id).await.map_err(ApiError::from)?;
    let parent_end = parent.as_ref().map(|s| s.expires_at).unwrap_or(now);
    let cap = if orphan { now.plus(st.auth.session_ttl) } else { parent_end };
    let explicit_max = dur_ms(b.explicit_max_ttl.as_ref(), "explicit_max_ttl")?;
    let max_end = match explicit_max {
        Some(ms) if ms > 0 => Timestamp(cap.0.min(now.0.saturating_add(ms))),
        _ => cap,
    };
    let ttl_ms = dur_ms(b.ttl.as_ref().or(b.lease.as_ref()), "ttl")?.filter(|ms| *ms > 0);
    let expires_at = match ttl_ms {
        Some(ms) => Timestamp(max_end.0.min(now.0.saturating_add(ms))),
        None => max_end,
    };
    if expires_at <= now {
        return Err(ApiError::BadRequest("the parent token expires now: log in again".into()).into());
    }
    let display_name = display_name(b.display_name.as_deref(), &p)?;
    let meta = meta_json(b.meta.as_ref())?;
    let token = new_token("lts")?;
    let session = NewSession {
        id: new_id("ses")?,
        token_hash: token_hash(token.expose()),
        principal_id: p.id.clone(),
        principal_kind: p.kind,
        mfa: p.mfa,
        source: "auth/token/create".into(),
        expires_at,
        clears_failures: None,
    };
    let child = ChildToken {
        parent_id: (!orphan).then(|| p.session_id.clone()),
        display_name: display_name.clone(),
        meta: meta.clone(),
        renewable: b.renewable.unwrap_or(true),
        ttl_ms: ttl_ms.unwrap_or(expires_at.0 - now.0),
        max_expires_at: max_end,
    };
    let audit = ctx
        .audit(p.audit_name(), "token.create", format!("session:{}", session.id))
        .detail("parent", child.parent_id.clone().unwrap_or_default())
        .detail("expires_at", expires_at.to_rfc3339());
    let accessor = session.id.clone();
    let renewable = child.renewable;
    st.store.create_child_session(session, child, audit).await.map_err(precondition_400)?;
    Ok(auth_response(token.expose(), &accessor, &meta, (expires_at.0 - now.0) / 1000, renewable, orphan))
}

fn check_create(b: &CreateBody) -> Result<(), ApiError> {
    if b.id.is_some() {
        return Err(unsupported("choosing the token value (id)"));
    }
    if b.role_name.is_some() {
        return Err(unsupported("role_name (token roles)"));
    }
    if b.policies.as_ref().is_some_and(|ps| ps.iter().any(|p| p != "default")) {
        return Err(ApiError::BadRequest(
            "latch tokens carry their creator's rights; Vault policies other than \"default\" do not exist in latch: \
             omit policies"
                .into(),
        ));
    }
    if b.num_uses.unwrap_or(0) != 0 {
        return Err(unsupported("num_uses"));
    }
    if b.period
        .as_ref()
        .is_some_and(|p| !matches!(p, Value::String(s) if s.is_empty() || s == "0" || s == "0s") && *p != json!(0))
    {
        return Err(unsupported("periodic tokens (period)"));
    }
    if b.kind.as_deref().is_some_and(|t| t != "service" && t != "default") {
        return Err(unsupported("batch tokens"));
    }
    if b.entity_alias.as_deref().is_some_and(|a| !a.is_empty()) {
        return Err(unsupported("entity_alias"));
    }
    let _ = b.no_default_policy;
    Ok(())
}

fn dur_ms(v: Option<&Value>, field: &str) -> Result<Option<i64>, ApiError> {
    v.map(|v| parse_vault_duration(field, v)).transpose()
}

fn display_name(given: Option<&str>, p: &Principal) -> Result<String, ApiError> {
    let name = given.filter(|s| !s.is_empty()).unwrap_or(&p.name);
    if name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest("display_name: at most 64 printable characters".into()));
    }
    Ok(format!("token-{name}"))
}

fn meta_json(meta: Option<&Map<String, Value>>) -> Result<String, ApiError> {
    let Some(m) = meta else { return Ok("{}".into()) };
    if m.len() > 32 || m.iter().any(|(k, v)| k.len() > 128 || v.as_str().is_none_or(|s| s.len() > 512)) {
        return Err(ApiError::BadRequest("meta: at most 32 string values (keys ≤ 128 bytes, values ≤ 512)".into()));
    }
    Ok(Value::Object(m.clone()).to_string())
}

fn precondition_400(e: latch_store::StoreError) -> super::VaultError {
    match e {
        latch_store::StoreError::Precondition(m) => super::VaultError(ApiError::BadRequest(m)),
        other => super::VaultError(other.into()),
    }
}

fn auth_response(token: &str, accessor: &str, meta: &str, ttl_secs: i64, renewable: bool, orphan: bool) -> Response {
    let meta: Value = serde_json::from_str(meta).unwrap_or(Value::Null);
    let meta = if meta.as_object().is_some_and(|m| m.is_empty()) { Value::Null } else { meta };
    (
        StatusCode::OK,
        Json(json!({
            "request_id": "", "lease_id": "", "renewable": false, "lease_duration": 0, "data": null,
            "wrap_info": null, "warnings": null,
            "auth": {
                "client_token": token,
                "accessor": accessor,
                "policies": ["default"],
                "token_policies": ["default"],
                "identity_policies": null,
                "metadata": meta,
                "lease_duration": ttl_secs,
                "renewable": renewable,
                "entity_id": "",
                "token_type": "service",
                "orphan": orphan,
                "mfa_requirement": null,
                "num_uses": 0,
            },
        })),
    )
        .into_response()
}

/// How Vault's lookups show a token; `token` only when the caller presented it.
fn lookup_json(st: &AppState, s: &SessionInfo, token: Option<&str>, owner: &str) -> Value {
    let now = st.clock.now();
    let c = s.child.as_ref();
    let meta: Value = c.and_then(|c| serde_json::from_str(&c.meta).ok()).unwrap_or(Value::Null);
    let meta = if meta.as_object().is_some_and(|m| m.is_empty()) { Value::Null } else { meta };
    json!({
        "accessor": s.id,
        "creation_time": s.created_at.secs(),
        "creation_ttl": (s.expires_at.0 - s.created_at.0).max(0) / 1000,
        "display_name": c.map(|c| c.display_name.clone()).unwrap_or_else(|| format!("latch-{owner}")),
        "entity_id": "",
        "expire_time": s.expires_at.to_rfc3339(),
        "explicit_max_ttl": c.map(|c| (c.max_expires_at.0 - s.created_at.0).max(0) / 1000).unwrap_or(0),
        "id": token.unwrap_or(""),
        "issue_time": s.created_at.to_rfc3339(),
        "meta": meta,
        "num_uses": 0,
        "orphan": c.is_none_or(|c| c.parent_id.is_none()),
        "path": if c.is_some() { "auth/token/create".to_string() } else { format!("latch/{}", s.source) },
        "policies": ["default"],
        "renewable": c.is_some_and(|c| c.renewable),
        "ttl": (s.expires_at.0 - now.0).max(0) / 1000,
        "type": "service",
    })
}

/// A live session by token or accessor, visible to its own principal and to
/// administrators; anything else is "bad token" (as Vault answers).
async fn find(st: &AppState, p: &Principal, key: Lookup<'_>) -> VaultResult<SessionInfo> {
    let found = match key {
        Lookup::Token(t) => st.store.session_by_hash(&token_hash(t)).await,
        Lookup::Accessor(a) => st.store.session_by_id(a).await,
    }
    .map_err(ApiError::from)?;
    let now = st.clock.now();
    match found {
        Some(s) if s.revoked_at.is_none() && s.expires_at > now && (s.principal_id == p.id || p.is_admin()) => Ok(s),
        _ => Err(ApiError::Forbidden("bad token: it is invalid, expired, revoked or not yours".into()).into()),
    }
}

enum Lookup<'a> {
    Token(&'a str),
    Accessor(&'a str),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    accessor: Option<String>,
    #[serde(default)]
    increment: Option<Value>,
}

fn need<'a>(v: &'a Option<String>, what: &str) -> Result<&'a str, ApiError> {
    v.as_deref().filter(|s| !s.trim().is_empty()).ok_or_else(|| ApiError::BadRequest(format!("missing {what}")))
}

fn presented(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get("x-vault-token")
        .or_else(|| headers.get(axum::http::header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or(v).trim().to_string())
}

fn owner_name(p: &Principal, s: &SessionInfo) -> String {
    if s.principal_id == p.id { p.name.clone() } else { s.principal_id.clone() }
}

/// The token an operation acts on: `OP-self` the presented one, `OP` the
/// body's `token`, `OP-accessor` the body's `accessor` (the token itself is
/// then unknown, hence `None`).
async fn target(
    st: &AppState,
    p: &Principal,
    variant: &str,
    op: &str,
    headers: &axum::http::HeaderMap,
    b: &TokenBody,
) -> VaultResult<(SessionInfo, Option<String>)> {
    match variant.strip_prefix(op) {
        Some("-self") => {
            let t = presented(headers).unwrap_or_default();
            Ok((find(st, p, Lookup::Token(&t)).await?, Some(t)))
        }
        Some("") => {
            let t = need(&b.token, "token")?.to_string();
            Ok((find(st, p, Lookup::Token(&t)).await?, Some(t)))
        }
        Some("-accessor") => Ok((find(st, p, Lookup::Accessor(need(&b.accessor, "accessor")?)).await?, None)),
        _ => Err(ApiError::NotFound(format!("no route auth/token/{variant}")).into()),
    }
}

/// `auth/token/lookup-self`, `lookup`, `lookup-accessor`.
pub async fn lookup(
    State(st): State<AppState>,
    who: MaybeCaller,
    headers: axum::http::HeaderMap,
    Path(variant): Path<String>,
    bytes: Bytes,
) -> VaultResult {
    let p = caller(who)?;
    let b: TokenBody = body(&bytes)?;
    let (s, token) = target(&st, &p, &variant, "lookup", &headers, &b).await?;
    Ok(envelope(lookup_json(&st, &s, token.as_deref(), &owner_name(&p, &s))))
}

/// `auth/token/renew-self`, `renew`, `renew-accessor`: extends a renewable
/// token by `increment` (or its TTL), never past its maximum or its parent.
pub async fn renew(
    State(st): State<AppState>,
    ctx: Ctx,
    who: MaybeCaller,
    headers: axum::http::HeaderMap,
    Path(variant): Path<String>,
    bytes: Bytes,
) -> VaultResult {
    let p = caller(who)?;
    let b: TokenBody = body(&bytes)?;
    let (s, token) = target(&st, &p, &variant, "renew", &headers, &b).await?;
    let Some(c) = s.child.as_ref().filter(|c| c.renewable) else {
        return Err(ApiError::BadRequest(
            "this token is not renewable (latch sign-in sessions end at their fixed expiry: log in again)".into(),
        )
        .into());
    };
    let now = st.clock.now();
    let mut end = c.max_expires_at;
    if let Some(parent) = &c.parent_id {
        let ps = st.store.session_by_id(parent).await.map_err(ApiError::from)?;
        let parent_end = ps.filter(|ps| ps.revoked_at.is_none()).map(|ps| ps.expires_at).unwrap_or(now);
        end = Timestamp(end.0.min(parent_end.0));
    }
    let inc = dur_ms(b.increment.as_ref(), "increment")?.filter(|ms| *ms > 0).unwrap_or(c.ttl_ms);
    let new_end = Timestamp(end.0.min(now.0.saturating_add(inc)));
    let audit = ctx
        .audit(p.audit_name(), "token.renew", format!("session:{}", s.id))
        .detail("expires_at", new_end.to_rfc3339());
    st.store.renew_session(&s.id, new_end, audit).await.map_err(precondition_400)?;
    let orphan = c.parent_id.is_none();
    Ok(auth_response(token.as_deref().unwrap_or(""), &s.id, &c.meta, (new_end.0 - now.0) / 1000, true, orphan))
}

/// `auth/token/revoke-self`, `revoke`, `revoke-accessor`: the token and
/// every token made from it.
pub async fn revoke(
    State(st): State<AppState>,
    ctx: Ctx,
    who: MaybeCaller,
    headers: axum::http::HeaderMap,
    Path(variant): Path<String>,
    bytes: Bytes,
) -> VaultResult {
    let p = caller(who)?;
    let b: TokenBody = body(&bytes)?;
    let (s, _) = target(&st, &p, &variant, "revoke", &headers, &b).await?;
    let audit = ctx.audit(p.audit_name(), "token.revoke", format!("session:{}", s.id));
    match st.store.revoke_session(&s.id, audit).await {
        Ok(()) | Err(latch_store::StoreError::NotFound { .. }) => Ok(no_content()),
        Err(e) => Err(ApiError::from(e).into()),
    }
}

/// `auth/token/{op}`: one route, dispatched by operation.
pub async fn dispatch(
    State(st): State<AppState>,
    ctx: Ctx,
    who: MaybeCaller,
    method: axum::http::Method,
    headers: axum::http::HeaderMap,
    Path(op): Path<String>,
    bytes: Bytes,
) -> VaultResult {
    use axum::http::Method;
    let read = method == Method::GET;
    let write = matches!(method, Method::POST | Method::PUT);
    match op.as_str() {
        "create" | "create-orphan" if write => create(State(st), ctx, who, Path(op), bytes).await,
        "lookup-self" if read || write => lookup(State(st), who, headers, Path(op), bytes).await,
        "lookup" | "lookup-accessor" if write => lookup(State(st), who, headers, Path(op), bytes).await,
        "renew" | "renew-self" | "renew-accessor" if write => {
            renew(State(st), ctx, who, headers, Path(op), bytes).await
        }
        "revoke" | "revoke-self" | "revoke-accessor" if write => {
            revoke(State(st), ctx, who, headers, Path(op), bytes).await
        }
        "create" | "create-orphan" | "lookup-self" | "lookup" | "lookup-accessor" | "renew" | "renew-self"
        | "renew-accessor" | "revoke" | "revoke-self" | "revoke-accessor" => {
            Err(super::method_not_allowed(&method, &format!("auth/token/{op}")))
        }
        _ => Err(ApiError::NotFound(format!(
            "no route auth/token/{}: latch supports create, create-orphan, lookup(-self, -accessor), \
             renew(-self, -accessor) and revoke(-self, -accessor)",
            op.chars().take(40).collect::<String>()
        ))
        .into()),
    }
}
