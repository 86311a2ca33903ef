//! Signed tokens (EdDSA JWTs) issued under a grant, their public keys, and
//! their revocation: introspection (RFC 7662 shape) for online verifiers and
//! a revoked-jti list for offline ones.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use latch_core::{Timestamp, parse_duration};
use latch_crypto::{jwt, new_id};
use latch_store::IssuedToken;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, Caller, Ctx};
use crate::state::AppState;

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    /// One of the role's allowed audiences; the first when omitted.
    #[serde(default)]
    pub audience: Option<String>,
    /// Lifetime, e.g. `15m`; capped by the role and the grant's end.
    #[serde(default)]
    pub ttl: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct IssuedTokenView {
    pub token: String,
    pub jti: String,
    pub audience: String,
    pub expires_at: String,
    pub grant_id: String,
}

/// Default token lifetime when neither caller nor role says otherwise.
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

#[utoipa::path(post, path = "/v1/grants/{id}/token", tag = "tokens", request_body = IssueToken,
    responses((status = 200, body = IssuedTokenView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)), security(("bearer" = [])))]
pub async fn issue(
    State(st): State<AppState>,
    ctx: Ctx,
    Caller(p): Caller,
    Path(id): Path<String>,
    body: Option<ApiJson<IssueToken>>,
) -> ApiResult<Json<IssuedTokenView>> {
    let req = body.map(|ApiJson(b)| b).unwrap_or_default();
    let grant = st.store.get_grant(&id).await?.ok_or_else(|| ApiError::NotFound(format!("grant {id:?} not found")))?;
    if grant.principal_id != p.id {
        return Err(ApiError::Forbidden(format!("grant {id} belongs to {}, not to you", grant.principal_name)));
    }
    let now = st.clock.now();
    if !grant.is_live(now) {
        return Err(ApiError::Conflict(format!(
            "grant {id} is {}: request the role again",
            grant_state_word(&grant, now)
        )));
    }
    let policy = st.policy();
    let role =
        policy.role(&grant.role).ok_or_else(|| ApiError::Conflict(format!("role {} no longer exists", grant.role)))?;
    let spec = role
        .token
        .as_ref()
        .ok_or_else(|| ApiError::BadRequest(format!("role {} does not allow signed tokens", role.name)))?;
    let audience = match req.audience {
        Some(a) if spec.audiences.contains(&a) => a,
        Some(a) => {
            return Err(ApiError::BadRequest(format!(
                "audience {a:?} is not allowed for role {}: use one of {:?}",
                role.name, spec.audiences
            )));
        }
        None => spec
            .audiences
            .first()
            .cloned()
            .ok_or_else(|| ApiError::BadRequest(format!("role {} lists no token audiences", role.name)))?,
    };
    let mut ttl = match &req.ttl {
        Some(t) => parse_duration(t).map_err(|e| ApiError::BadRequest(format!("ttl: {e}")))?,
        None => DEFAULT_TOKEN_TTL,
    };
    if let Some(max) = spec.max_ttl {
        ttl = ttl.min(max);
    }
    // A credential never outlives its grant.
    let expires_at = now.plus(ttl).min(grant.expires_at);
    let (kid, signer) = st.issuers().token_signer()?;
    let jti = new_id("jti")?;
    let claims = json!({
        "iss": st.issuer,
        "sub": grant.principal_name,
        "aud": audience,
        "iat": now.secs(),
        "nbf": now.secs(),
        "exp": expires_at.secs(),
        "jti": jti,
        "grant_id": grant.id,
        "role": grant.role,
        "principal_kind": grant.principal_kind.as_str(),
    });
    let token = jwt::sign(&signer, &kid, &claims);
    let record = IssuedToken {
        jti: jti.clone(),
        grant_id: grant.id.clone(),
        kid,
        audience: audience.clone(),
        issued_at: now,
        expires_at: Timestamp(expires_at.secs() * 1000),
        revoked_at: None,
    };
    let ev = ctx.audit(p.audit_name(), "token.issue", format!("grant:{}", grant.id)).details(
        json!({ "jti": jti, "audience": audience, "role": grant.role, "expires_at": record.expires_at.to_rfc3339(),
                         "breakglass": grant.breakglass }),
    );
    st.store.record_token(record.clone(), ev).await?;
    Ok(Json(IssuedTokenView { token, jti, audience, expires_at: record.expires_at.to_rfc3339(), grant_id: grant.id }))
}

fn grant_state_word(g: &latch_store::Grant, now: Timestamp) -> &'static str {
    if g.state == latch_store::GrantState::Active && now >= g.expires_at { "expired" } else { g.state.as_str() }
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens", responses((status = 200, body = Object)))]
pub async fn jwks(State(st): State<AppState>) -> Json<Value> {
    let keys: Vec<Value> = st.issuers().published().iter().map(jwt::jwk).collect();
    Json(json!({ "keys": keys }))
}

#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "tokens", responses((status = 200, body = Object)))]
pub async fn openid_configuration(State(st): State<AppState>) -> Json<Value> {
    Json(json!({
        "issuer": st.issuer,
        "jwks_uri": format!("{}/.well-known/jwks.json", st.issuer),
        "introspection_endpoint": format!("{}/v1/tokens/introspect", st.issuer),
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "claims_supported": ["iss", "sub", "aud", "iat", "nbf", "exp", "jti", "grant_id", "role"],
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectRequest {
    pub token: String,
    #[serde(default)]
    pub token_type_hint: Option<String>,
}

/// RFC 7662: `{"active": false}` for anything not currently valid, with no reason
/// given to the caller (the reason is in the server log at debug level).
#[utoipa::path(post, path = "/v1/tokens/introspect", tag = "tokens", request_body = IntrospectRequest,
    responses((status = 200, body = Object), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn introspect(
    State(st): State<AppState>,
    _caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let token = introspect_token(&headers, &body)?;
    Ok(Json(match check(&st, &token).await? {
        Ok(claims) => {
            let mut v = claims;
            if let Some(m) = v.as_object_mut() {
                m.insert("active".into(), json!(true));
                m.insert("token_type".into(), json!("Bearer"));
            }
            v
        }
        Err(reason) => {
            tracing::debug!(reason, "introspection: inactive token");
            json!({ "active": false })
        }
    }))
}

/// Accepts the RFC's form encoding (`token=…`) and JSON.
fn introspect_token(headers: &HeaderMap, body: &[u8]) -> ApiResult<String> {
    let ct = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/json") {
        let r: IntrospectRequest =
            serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))?;
        return Ok(r.token);
    }
    if ct.starts_with("application/x-www-form-urlencoded") {
        let text = std::str::from_utf8(body).map_err(|_| ApiError::BadRequest("form body is not UTF-8".into()))?;
        for pair in text.split('&') {
            if let Some(v) = pair.strip_prefix("token=") {
                return Ok(v.replace("%2E", ".").replace("%2e", ".").replace('+', " "));
            }
        }
        return Err(ApiError::BadRequest("missing form field `token`".into()));
    }
    Err(ApiError::UnsupportedMediaType {
        message:
            "send `token=…` as application/x-www-form-urlencoded (RFC 7662) or {\"token\":\"…\"} as application/json"
                .into(),
    })
}

/// Full validation of a latch token at the server's current time.
async fn check(st: &AppState, token: &str) -> ApiResult<Result<Value, &'static str>> {
    let mut keys = st.issuers();
    if let Ok(kid) = jwt::peek_kid(token)
        && keys.find(&kid).is_none()
        && st.issuer_keys.follow_unknown_kid(&st.store, &st.barrier, &st.data_dir).await?
    {
        keys = st.issuers();
    }
    let claims = match st.verified.get(token, |kid| keys.find(kid).is_some()) {
        Some(c) => c,
        None => match (jwt::verify(token, |kid| keys.find(kid)), jwt::peek_kid(token)) {
            (Ok(c), Ok(kid)) => {
                st.verified.put(token, kid, c.clone());
                c
            }
            _ => return Ok(Err("signature")),
        },
    };
    let now = st.clock.now().secs();
    let exp = claims["exp"].as_i64().unwrap_or(0);
    let nbf = claims["nbf"].as_i64().unwrap_or(0);
    if now >= exp || now < nbf {
        return Ok(Err("expired"));
    }
    let Some(jti) = claims["jti"].as_str() else { return Ok(Err("no jti")) };
    let Some((record, grant)) = st.store.get_token(jti).await? else { return Ok(Err("unknown jti")) };
    if record.revoked_at.is_some() {
        return Ok(Err("revoked"));
    }
    if !grant.is_live(st.clock.now()) {
        return Ok(Err("grant ended"));
    }
    Ok(Ok(claims))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RevokedToken {
    pub jti: String,
    pub grant_id: String,
    pub expires_at: i64,
    pub revoked_at: i64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RevokedList {
    pub revoked: Vec<RevokedToken>,
}

/// Revoked tokens not yet expired: what an offline verifier must refuse.
/// Public, like a CRL: jtis are identifiers, not secrets.
#[utoipa::path(get, path = "/v1/tokens/revoked", tag = "tokens", responses((status = 200, body = RevokedList)))]
pub async fn revoked(State(st): State<AppState>) -> ApiResult<Json<RevokedList>> {
    let list = st.store.revoked_tokens(st.clock.now()).await?;
    Ok(Json(RevokedList {
        revoked: list
            .into_iter()
            .map(|t| RevokedToken {
                jti: t.jti,
                grant_id: t.grant_id,
                expires_at: t.expires_at.secs(),
                revoked_at: t.revoked_at.map_or(0, Timestamp::secs),
            })
            .collect(),
    }))
}

#[utoipa::path(post, path = "/v1/sys/keys/token/rotate", tag = "tokens",
    responses((status = 200, body = Object), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn rotate_key(State(st): State<AppState>, ctx: Ctx, Admin(admin): Admin) -> ApiResult<Json<Value>> {
    let ev = ctx.audit(admin.audit_name(), "key.rotate", "key:token");
    let (old, new_kid) = st.issuer_keys.rotate_token_key(&st.store, &st.barrier, &st.data_dir, ev).await?;
    Ok(Json(json!({ "active_kid": new_kid, "retired_kid": old })))
}
