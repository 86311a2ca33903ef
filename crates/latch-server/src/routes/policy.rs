//! Policy as code: apply a bundle (roles + Cedar policies), show what is in
//! force, simulate a decision, and replay past requests under a new bundle.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use latch_core::{PrincipalKind, Timestamp, parse_duration};
use latch_policy::{Action, Bundle, DecisionContext, PrincipalInfo};
use latch_store::{PolicyVersion, RequestFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, Caller, Ctx};
use crate::state::AppState;

/// Most files in one bundle; bodies are also bounded by the request size limit.
const MAX_FILES: usize = 500;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// Relative path (`roles/x.toml`, `policies/y.cedar`) to content.
    pub files: BTreeMap<String, String>,
    /// Only show what would change.
    #[serde(default)]
    pub plan: bool,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ApplyResponse {
    pub applied: bool,
    pub hash: String,
    pub previous_hash: String,
    #[schema(value_type = Object)]
    pub plan: Value,
    pub warnings: Vec<String>,
}

fn parse_bundle(files: &BTreeMap<String, String>) -> ApiResult<Bundle> {
    if files.len() > MAX_FILES {
        return Err(ApiError::BadRequest(format!("a bundle has at most {MAX_FILES} files")));
    }
    Bundle::from_files(files)
        .map_err(|e| ApiError::BadRequest(format!("the policy bundle is invalid; nothing was applied:\n{e}")))
}

#[utoipa::path(post, path = "/v1/policy/apply", tag = "policy", request_body = ApplyRequest,
    responses((status = 200, body = ApplyResponse), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn apply(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    ApiJson(req): ApiJson<ApplyRequest>,
) -> ApiResult<Json<ApplyResponse>> {
    let next = parse_bundle(&req.files)?;
    // Plan against the version in force in the store, which another node may have changed.
    let current = crate::jobs::refresh_policy(&st).await?;
    let plan = serde_json::to_value(current.plan(&next)).map_err(ApiError::internal)?;
    let unchanged = next.hash() == current.hash();
    let mut resp = ApplyResponse {
        applied: false,
        hash: next.hash().to_string(),
        previous_hash: current.hash().to_string(),
        plan,
        warnings: next.warnings().to_vec(),
    };
    if req.plan || unchanged {
        return Ok(Json(resp));
    }
    let ev = ctx.audit(admin.audit_name(), "policy.apply", format!("policy:{}", next.hash())).details(json!({
        "hash": next.hash(),
        "previous_hash": current.hash(),
        "plan": resp.plan,
        "files": req.files.keys().collect::<Vec<_>>(),
    }));
    let version = PolicyVersion {
        hash: next.hash().to_string(),
        files: req.files,
        created_at: st.clock.now(),
        created_by: admin.audit_name(),
    };
    st.store.apply_policy(version, ev).await?;
    st.set_policy(Arc::new(next));
    resp.applied = true;
    Ok(Json(resp))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RoleSummary {
    pub name: String,
    pub description: String,
    pub max_duration: String,
    pub default_duration: String,
    pub approvals_required: u32,
    pub approvers: Vec<String>,
    pub requires_mfa: bool,
    pub requires_reason: bool,
    pub requires_ticket: bool,
    pub ticket_pattern: Option<String>,
    pub breakglass_max_duration: Option<String>,
    pub token_audiences: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    pub hash: String,
    pub roles: Vec<RoleSummary>,
    pub policies: Vec<String>,
}

#[utoipa::path(get, path = "/v1/policy", tag = "policy", responses((status = 200, body = PolicyView)), security(("bearer" = [])))]
pub async fn show(State(st): State<AppState>, _caller: Caller) -> Json<PolicyView> {
    let b = st.policy();
    let fmt = latch_core::format_duration;
    Json(PolicyView {
        hash: b.hash().to_string(),
        roles: b
            .roles()
            .map(|r| RoleSummary {
                name: r.name.clone(),
                description: r.description.clone(),
                max_duration: fmt(r.max_duration),
                default_duration: fmt(r.default_duration),
                approvals_required: r.approvals_required,
                approvers: r.approvers.iter().map(|a| a.to_string()).collect(),
                requires_mfa: r.require_mfa,
                requires_reason: r.require_reason,
                requires_ticket: r.require_ticket,
                ticket_pattern: r.ticket_pattern.clone(),
                breakglass_max_duration: r.breakglass.map(fmt),
                token_audiences: r.token.as_ref().map(|t| t.audiences.clone()).unwrap_or_default(),
            })
            .collect(),
        policies: b.policy_ids(),
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulateRequest {
    /// The user or service principal to decide for (their current groups are used).
    pub principal: String,
    #[serde(default)]
    #[schema(value_type = String)]
    pub kind: Option<PrincipalKind>,
    pub role: String,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub mfa: bool,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub ticket: String,
    #[serde(default)]
    pub source_ip: Option<String>,
    /// Override of the clock's hour, 0–23 (UTC).
    #[serde(default)]
    pub hour: Option<i64>,
    /// mon … sun
    #[serde(default)]
    pub weekday: Option<String>,
    /// Decide under this bundle instead of the one in force.
    #[serde(default)]
    pub files: Option<BTreeMap<String, String>>,
}

#[utoipa::path(post, path = "/v1/policy/simulate", tag = "policy", request_body = SimulateRequest,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn simulate(
    State(st): State<AppState>,
    _admin: Admin,
    ApiJson(req): ApiJson<SimulateRequest>,
) -> ApiResult<Json<Value>> {
    let bundle = match &req.files {
        Some(files) => Arc::new(parse_bundle(files)?),
        None => st.policy(),
    };
    latch_core::validate_name("principal", &req.principal)?;
    let kind = req.kind.unwrap_or(PrincipalKind::User);
    let groups = match kind {
        PrincipalKind::User => st.store.get_user(&req.principal).await?.map(|u| u.groups),
        PrincipalKind::ServicePrincipal => st.store.get_sp(&req.principal).await?.map(|s| s.groups),
    }
    .ok_or_else(|| ApiError::NotFound(format!("{} {:?} not found", kind.as_str(), req.principal)))?;
    let role =
        bundle.role(&req.role).ok_or_else(|| ApiError::NotFound(format!("role {:?} does not exist", req.role)))?;
    let d = match &req.duration {
        Some(s) => parse_duration(s).map_err(|e| ApiError::BadRequest(format!("duration: {e}")))?,
        None => role.default_duration,
    };
    let who = PrincipalInfo { kind, name: req.principal.clone(), groups };
    let mut dctx = DecisionContext::at(st.clock.now().millis());
    dctx.mfa = req.mfa;
    dctx.duration_secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    if let Some(h) = req.hour {
        dctx.hour = h;
    }
    if let Some(w) = &req.weekday {
        dctx.weekday = w.clone();
    }
    dctx.source_ip = req.source_ip.clone().unwrap_or_else(|| "127.0.0.1".into());
    dctx.ticket = req.ticket.clone();
    dctx.reason = req.reason.clone();
    let problems = role.check_request(&dctx);
    let request = bundle.decide(Action::Request, &who, &role.name, &dctx);
    let activate = bundle.decide(Action::Activate, &who, &role.name, &dctx);
    dctx.breakglass = true;
    let breakglass = bundle.decide(Action::Breakglass, &who, &role.name, &dctx);
    let outcome = if !problems.is_empty() || !request.allowed || (!activate.allowed && role.approvals_required == 0) {
        "deny"
    } else if activate.allowed {
        "auto_approve"
    } else {
        "needs_approval"
    };
    Ok(Json(json!({
        "outcome": outcome,
        "allowed": outcome != "deny",
        "approvals_required": if activate.allowed { 0 } else { role.approvals_required },
        "approvers": role.approvers.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "requirement_violations": problems,
        "request": request,
        "activate": activate,
        "breakglass": if role.breakglass.is_some() { json!(breakglass) } else { json!({ "allowed": false, "policies": [], "errors": ["the role does not allow break-glass"] }) },
        "policy_version": bundle.hash(),
    })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Re-evaluate requests created within this long before now, e.g. `7d`.
    #[serde(default)]
    pub since: Option<String>,
    /// A proposed bundle; the one in force when omitted.
    #[serde(default)]
    pub files: Option<BTreeMap<String, String>>,
}

fn outcome_of(request_allowed: bool, activate_allowed: bool) -> &'static str {
    match (request_allowed, activate_allowed) {
        (false, _) => "deny",
        (true, true) => "auto_approve",
        (true, false) => "needs_approval",
    }
}

#[utoipa::path(post, path = "/v1/policy/replay", tag = "policy", request_body = ReplayRequest,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn replay(
    State(st): State<AppState>,
    _admin: Admin,
    ApiJson(req): ApiJson<ReplayRequest>,
) -> ApiResult<Json<Value>> {
    let bundle = match &req.files {
        Some(files) => Arc::new(parse_bundle(files)?),
        None => st.policy(),
    };
    let since = match &req.since {
        Some(s) => parse_duration(s).map_err(|e| ApiError::BadRequest(format!("since: {e}")))?,
        None => Duration::from_secs(30 * 86_400),
    };
    let cutoff = st.clock.now().minus(since);
    let requests = st.store.list_requests(RequestFilter { limit: 10_000, ..Default::default() }).await?;
    let mut changed = Vec::new();
    let mut evaluated = 0;
    for r in requests.iter().filter(|r| r.created_at >= cutoff && !r.breakglass) {
        let (Ok(who), Ok(dctx)) = (
            serde_json::from_value::<StoredPrincipal>(r.context["principal"].clone()),
            serde_json::from_value::<DecisionContext>(r.context["context"].clone()),
        ) else {
            continue;
        };
        evaluated += 1;
        let who = PrincipalInfo { kind: who.kind, name: who.name, groups: who.groups };
        let was = outcome_of(
            r.decision["request"]["allowed"].as_bool().unwrap_or(false),
            r.decision["activate"]["allowed"].as_bool().unwrap_or(false),
        );
        let req_d = bundle.decide(Action::Request, &who, &r.role, &dctx);
        let act_d = bundle.decide(Action::Activate, &who, &r.role, &dctx);
        let now_outcome = outcome_of(req_d.allowed, act_d.allowed);
        if was != now_outcome {
            changed.push(json!({
                "request_id": r.id, "requester": r.requester_name, "role": r.role, "created_at": r.created_at.to_rfc3339(),
                "was": was, "now": now_outcome, "policies": req_d.policies.iter().chain(act_d.policies.iter()).collect::<Vec<_>>(),
            }));
        }
    }
    // Denied requests are not stored as requests; they live in the audit log.
    Ok(Json(
        json!({ "policy_version": bundle.hash(), "evaluated": evaluated, "changed": changed, "since": Timestamp::to_rfc3339(cutoff) }),
    ))
}

#[derive(Deserialize)]
struct StoredPrincipal {
    kind: PrincipalKind,
    name: String,
    groups: Vec<String>,
}
