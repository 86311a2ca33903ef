//! Authentication: password (+TOTP) login, service-principal login, logout,
//! whoami and TOTP enrollment.
//!
//! Every failed login is audited with its reason and counted against both the
//! identity and the source address; either limit locks further attempts
//! (even correct ones) until the window passes. The response never says which
//! of user name or password was wrong.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use latch_audit::Outcome;
use latch_core::ratelimit::Limit;
use latch_core::{PrincipalKind, Timestamp, validate_name};
use latch_crypto::{Secret, new_id, new_token, token_hash, totp};
use latch_store::{NewSession, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, Caller, Ctx};
use crate::routes::blocking;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
    /// The current 6-digit TOTP code, required once MFA is enrolled.
    #[serde(default)]
    pub totp: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpLoginRequest {
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// The session token. Shown once; latch keeps only its hash.
    pub token: String,
    pub session_id: String,
    pub expires_at: String,
    pub mfa: bool,
    pub name: String,
    #[schema(value_type = String)]
    pub kind: PrincipalKind,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub id: String,
    pub name: String,
    #[schema(value_type = String)]
    pub kind: PrincipalKind,
    pub groups: Vec<String>,
    pub mfa: bool,
    pub admin: bool,
    pub session_id: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct MfaEnrollment {
    /// Import into an authenticator app; then confirm with a code.
    pub otpauth_uri: String,
    pub secret: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaConfirm {
    pub code: String,
}

/// Attempted names can be hostile; audit them only when they are valid names.
fn attempted(kind: &str, name: &str) -> String {
    match validate_name("user", name) {
        Ok(()) => format!("{kind}:{name}"),
        Err(_) => format!("{kind}:<invalid name>"),
    }
}

/// The throttling key of a source address.
pub(crate) fn source_key(source: &str) -> String {
    format!("source:{source}")
}

/// A login refused while its identity or source is locked out.
fn locked_out(retry_after_secs: u64) -> ApiError {
    ApiError::RateLimited { what: "too many failed attempts", retry_after_secs }
}

/// Seconds until `identity` or `source` may try again, if either is locked.
async fn limited(st: &AppState, identity: &str, source: &str, now: Timestamp) -> ApiResult<Option<u64>> {
    let src = source_key(source);
    retry_after(st, &[(identity, st.auth.per_identity), (&src, st.auth.per_source)], now).await
}

/// Seconds until the first of `keys` that is over its limit may try again,
/// if any is. Attempts are counted in the store (the login-failure
/// bookkeeping, under distinct keys for distinct uses), so every node sees
/// the same ones.
pub(crate) async fn retry_after(st: &AppState, keys: &[(&str, Limit)], now: Timestamp) -> ApiResult<Option<u64>> {
    let window = keys.iter().map(|(_, l)| l.window).max().unwrap_or_default();
    let names = keys.iter().map(|(k, _)| k.to_string()).collect();
    let failures = st.store.login_failures(names, now.minus(window)).await?;
    let locked = keys.iter().filter_map(|(key, limit)| {
        let times: Vec<Timestamp> = failures.iter().filter(|(k, _)| k == key).map(|(_, t)| *t).collect();
        limit.locked_for(&times, now)
    });
    Ok(locked.max().map(|d| d.as_secs().max(1)))
}

/// A failed attempt: counted against the identity and the source, and
/// audited, in one transaction (a failing store is a 5xx, not a silent refusal).
async fn fail(st: &AppState, ctx: &Ctx, target: &str, reason: &str, err: ApiError) -> ApiError {
    let ev =
        ctx.audit("anonymous", "auth.login", target).outcome(Outcome::Failure).details(json!({ "reason": reason }));
    match st.store.record_login_failure(vec![target.to_string(), source_key(&ctx.source)], ev).await {
        Ok(_) => err,
        Err(e) => ApiError::from(e),
    }
}

/// Audits a failed attempt; the audit append must succeed for the refusal to
/// be reported as such (a failing store is a 5xx, not a silent refusal).
async fn refuse(st: &AppState, ctx: &Ctx, target: &str, reason: &str, err: ApiError) -> ApiError {
    let ev = ctx
        .audit("anonymous", "auth.login", target)
        .outcome(if matches!(err, ApiError::RateLimited { .. }) { Outcome::Denied } else { Outcome::Failure })
        .details(json!({ "reason": reason }));
    match st.store.append_audit(ev).await {
        Ok(_) => err,
        Err(e) => ApiError::from(e),
    }
}

/// How a caller proved who they are, and what that proof bounds.
struct Proof<'a> {
    /// For the audit event: `password`, `password+totp`, `client_secret`, …
    method: &'a str,
    mfa: bool,
    /// The TOTP step used, so it cannot be used again.
    totp_step: Option<i64>,
    /// When the credential itself stops being valid: no session opened with
    /// it outlives it (a service principal's expiring secret).
    not_after: Option<Timestamp>,
}

async fn open_session(
    st: &AppState,
    ctx: &Ctx,
    principal: (&str, &str, PrincipalKind),
    proof: Proof<'_>,
    throttle_key: &str,
) -> ApiResult<LoginResponse> {
    let (id, name, kind) = principal;
    let Proof { method, mfa, totp_step, not_after } = proof;
    let ttl = match kind {
        PrincipalKind::User => st.auth.session_ttl,
        PrincipalKind::ServicePrincipal => st.auth.sp_session_ttl,
    };
    let end = st.clock.now().plus(ttl);
    let expires_at = not_after.map_or(end, |t| t.min(end));
    let token: Secret = new_token("lts")?;
    let session = NewSession {
        id: new_id("ses")?,
        token_hash: token_hash(token.expose()),
        principal_id: id.to_string(),
        principal_kind: kind,
        mfa,
        source: ctx.source.clone(),
        expires_at,
        clears_failures: Some(throttle_key.to_string()),
    };
    let target = format!("{}:{name}", kind.as_str());
    let ev = ctx
        .audit(target.clone(), "auth.login", target)
        .details(json!({ "session_id": session.id, "method": method, "mfa": mfa }));
    let s = st.store.login(session, totp_step, ev).await?;
    Ok(LoginResponse {
        token: token.expose().to_string(),
        session_id: s.id,
        expires_at: s.expires_at.to_rfc3339(),
        mfa: s.mfa,
        name: name.to_string(),
        kind,
    })
}

#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let now = st.clock.now();
    let target = attempted("user", &req.user);
    let bad = || ApiError::Unauthenticated("invalid user name or password".into());
    if let Some(secs) = limited(&st, &target, &ctx.source, now).await? {
        return Err(refuse(&st, &ctx, &target, "rate_limited", locked_out(secs)).await);
    }
    let user = match validate_name("user", &req.user) {
        Ok(()) => st.store.get_user(&req.user).await?,
        Err(_) => None,
    };
    let hash = user.as_ref().and_then(|u| u.password_hash.clone()).unwrap_or_else(|| st.dummy_hash.clone());
    let password = Secret::new(req.password);
    let ok = blocking(move || latch_crypto::password::verify_password(password.expose(), &hash)).await?;
    let user = match user {
        Some(u) if ok && u.password_hash.is_some() && !u.disabled => u,
        other => {
            let reason = match other {
                None => "unknown_user",
                Some(u) if u.disabled => "disabled",
                Some(u) if u.password_hash.is_none() => "no_password",
                Some(_) => "bad_password",
            };
            return Err(fail(&st, &ctx, &target, reason, bad()).await);
        }
    };

    let (mfa, step) = match (user.totp_confirmed, user.totp_secret.as_deref(), req.totp.as_deref()) {
        (true, Some(_), None) => {
            let err = ApiError::MfaRequired(format!(
                "user {} has MFA enrolled: add the current code from the authenticator (--totp CODE)",
                user.name
            ));
            return Err(refuse(&st, &ctx, &target, "mfa_required", err).await);
        }
        (true, Some(secret), Some(code)) => match totp::verify(secret, code, now.secs(), None) {
            Some(step) if user.totp_last_step.is_none_or(|last| step > last) => (true, Some(step)),
            matched => {
                let reason = if matched.is_some() { "totp_replayed" } else { "bad_totp" };
                let err = ApiError::Unauthenticated("invalid or already used TOTP code".into());
                return Err(fail(&st, &ctx, &target, reason, err).await);
            }
        },
        (_, _, Some(_)) => {
            let err = ApiError::BadRequest(format!(
                "user {} has no MFA enrolled: log in without a TOTP code, then run `latch mfa enroll`",
                user.name
            ));
            return Err(refuse(&st, &ctx, &target, "mfa_not_enrolled", err).await);
        }
        _ => (false, None),
    };

    let method = if mfa { "password+totp" } else { "password" };
    let proof = Proof { method, mfa, totp_step: step, not_after: None };
    match open_session(&st, &ctx, (&user.id, &user.name, PrincipalKind::User), proof, &target).await {
        Ok(resp) => Ok(Json(resp)),
        // Lost a race with another login using the same code.
        Err(ApiError::Conflict(_)) => {
            let err = ApiError::Unauthenticated("invalid or already used TOTP code".into());
            Err(fail(&st, &ctx, &target, "totp_replayed", err).await)
        }
        Err(e) => Err(e),
    }
}

enum SpSecret {
    Current,
    /// The secret before a rolling rotation, inside its overlap.
    Previous,
    Expired(Timestamp),
    Wrong,
}

/// Which of the principal's secrets `presented` (a hash) is, at `now`. Both
/// are compared, in constant time, whatever the first answer.
fn sp_secret_state(sp: &latch_store::ServicePrincipal, presented: &str, now: Timestamp) -> SpSecret {
    let current = latch_crypto::ct_eq(presented.as_bytes(), sp.secret_hash.as_bytes());
    let previous =
        sp.previous_secret_hash.as_deref().is_some_and(|h| latch_crypto::ct_eq(presented.as_bytes(), h.as_bytes()));
    let live = |until: Option<Timestamp>| until.is_none_or(|t| now < t);
    match (current, previous) {
        (true, _) if live(sp.secret_expires_at) => SpSecret::Current,
        (true, _) => SpSecret::Expired(sp.secret_expires_at.unwrap_or(now)),
        (false, true) if sp.previous_secret_expires_at.is_some_and(|t| now < t) => SpSecret::Previous,
        (false, true) => SpSecret::Expired(sp.previous_secret_expires_at.unwrap_or(now)),
        (false, false) => SpSecret::Wrong,
    }
}

#[utoipa::path(post, path = "/v1/auth/sp/login", tag = "auth", request_body = SpLoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn sp_login(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<SpLoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let now = st.clock.now();
    let target = attempted("service_principal", &req.client_id);
    let bad = || ApiError::Unauthenticated("invalid client id or secret".into());
    if let Some(secs) = limited(&st, &target, &ctx.source, now).await? {
        return Err(refuse(&st, &ctx, &target, "rate_limited", locked_out(secs)).await);
    }
    let sp = match validate_name("service principal", &req.client_id) {
        Ok(()) => st.store.get_sp(&req.client_id).await?.filter(|sp| sp.id == req.client_id),
        Err(_) => None,
    };
    let secret = Secret::new(req.client_secret);
    let presented = token_hash(secret.expose());
    let (sp, method, not_after) = match sp.map(|sp| (sp_secret_state(&sp, &presented, now), sp)) {
        Some((SpSecret::Current, sp)) if !sp.disabled => {
            let until = sp.secret_expires_at;
            (sp, "client_secret", until)
        }
        Some((SpSecret::Previous, sp)) if !sp.disabled => {
            let until = sp.previous_secret_expires_at;
            (sp, "client_secret_previous", until)
        }
        Some((SpSecret::Expired(at), sp)) if !sp.disabled => {
            // The caller proved it holds the secret: telling it why is safe, and saves a debugging session.
            let msg = format!(
                "this client secret expired at {}: an administrator issues a new one with `latch sp rotate {}`",
                at.to_rfc3339(),
                sp.name
            );
            return Err(fail(&st, &ctx, &target, "secret_expired", ApiError::Unauthenticated(msg)).await);
        }
        other => {
            let reason = match other {
                None => "unknown_client",
                Some((_, sp)) if sp.disabled => "disabled",
                Some(_) => "bad_secret",
            };
            return Err(fail(&st, &ctx, &target, reason, bad()).await);
        }
    };
    let proof = Proof { method, mfa: false, totp_step: None, not_after };
    let resp = open_session(&st, &ctx, (&sp.id, &sp.name, PrincipalKind::ServicePrincipal), proof, &target).await?;
    Ok(Json(resp))
}

#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn logout(State(st): State<AppState>, ctx: Ctx, Caller(p): Caller) -> ApiResult<StatusCode> {
    let ev = ctx.audit(p.audit_name(), "auth.logout", p.audit_name()).details(json!({ "session_id": p.session_id }));
    st.store.revoke_session(&p.session_id, ev).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/auth/whoami", tag = "auth",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn whoami(Caller(p): Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        admin: p.is_admin(),
        id: p.id,
        name: p.name,
        kind: p.kind,
        groups: p.groups,
        mfa: p.mfa,
        session_id: p.session_id,
    })
}

fn require_user(p: &latch_core::Principal) -> ApiResult<()> {
    if p.kind == PrincipalKind::User {
        Ok(())
    } else {
        Err(ApiError::Forbidden("only users enroll MFA; service principals authenticate with their secret".into()))
    }
}

#[utoipa::path(post, path = "/v1/auth/mfa/enroll", tag = "auth",
    responses((status = 200, body = MfaEnrollment), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn mfa_enroll(State(st): State<AppState>, ctx: Ctx, Caller(p): Caller) -> ApiResult<Json<MfaEnrollment>> {
    require_user(&p)?;
    let user = st.store.get_user(&p.name).await?.ok_or_else(|| ApiError::NotFound("user not found".into()))?;
    // Replacing an active second factor needs that factor: a stolen password
    // alone must not be enough to move MFA to the thief's phone.
    if user.totp_confirmed && !p.mfa {
        return Err(ApiError::Forbidden(
            "MFA is already enrolled: log in with your current code first, or ask an admin to run `latch user reset-mfa`"
                .into(),
        ));
    }
    let secret = totp::generate_secret()?;
    let ev = ctx.audit(p.audit_name(), "mfa.enroll", p.audit_name()).details(json!({ "method": "totp" }));
    st.store.set_totp_pending(&user.id, secret.clone(), ev).await?;
    Ok(Json(MfaEnrollment { otpauth_uri: totp::otpauth_uri("latch", &user.name, &secret), secret }))
}

#[utoipa::path(post, path = "/v1/auth/mfa/confirm", tag = "auth", request_body = MfaConfirm,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn mfa_confirm(
    State(st): State<AppState>,
    ctx: Ctx,
    Caller(p): Caller,
    ApiJson(req): ApiJson<MfaConfirm>,
) -> ApiResult<StatusCode> {
    require_user(&p)?;
    let user = st.store.get_user(&p.name).await?.ok_or_else(|| ApiError::NotFound("user not found".into()))?;
    let Some(secret) = user.totp_secret.filter(|_| !user.totp_confirmed) else {
        return Err(ApiError::Conflict("no pending MFA enrollment: run `latch mfa enroll` first".into()));
    };
    let Some(step) = totp::verify(&secret, &req.code, st.clock.now().secs(), user.totp_last_step) else {
        return Err(ApiError::BadRequest(
            "the code does not match: enter the current 6-digit code and check the device's clock".into(),
        ));
    };
    let ev = ctx.audit(p.audit_name(), "mfa.confirm", p.audit_name()).details(json!({ "method": "totp" }));
    match st.store.confirm_totp(&user.id, step, ev).await {
        Err(StoreError::Precondition(m)) => Err(ApiError::BadRequest(m)),
        other => other.map(|()| StatusCode::NO_CONTENT).map_err(ApiError::from),
    }
}
