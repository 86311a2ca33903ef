//! Just-in-time elevation: requests, approvals, grants, revocation and
//! break-glass.
//!
//! Order of checks on a request: the role exists; the role's own rules
//! (duration cap, reason, ticket pattern, MFA) with messages that say what to
//! fix; then Cedar decides `request` and, if permitted, `activate`
//! (auto-approval). Approvers are checked against the role's approver list
//! and Cedar's `approve`; the requester never counts. Every decision is
//! audited with the policy ids that determined it.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latch_audit::Outcome;
use latch_core::{Principal, PrincipalKind, RequestState, Timestamp, format_duration, parse_duration};
use latch_crypto::new_id;
use latch_policy::{Action, Decision, DecisionContext, PrincipalInfo, RoleSpec};
use latch_store::{AccessRequest, Approval, ApprovalOutcome, Grant, GrantState, RequestFilter, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Caller, Ctx};
use crate::metrics::{Approval as Via, DecisionAction, DecisionOutcome};
use crate::state::AppState;

const MAX_TEXT: usize = 1024;
const MAX_TICKET: usize = 128;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub role: String,
    /// e.g. `30m`; the role's default when omitted.
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub ticket: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBreakglass {
    pub role: String,
    #[serde(default)]
    pub duration: Option<String>,
    pub reason: String,
    #[serde(default)]
    pub ticket: String,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Comment {
    #[serde(default)]
    pub comment: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    pub reason: String,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct OptionalReason {
    #[serde(default)]
    pub reason: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ApprovalView {
    pub approver: String,
    pub comment: String,
    pub at: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RequestView {
    pub id: String,
    pub requester: String,
    pub requester_kind: String,
    pub role: String,
    pub reason: String,
    pub ticket: String,
    pub duration: String,
    pub state: String,
    pub breakglass: bool,
    pub approvals_required: i64,
    pub approvals: Vec<ApprovalView>,
    pub created_at: String,
    pub pending_until: String,
    pub decided_at: Option<String>,
    pub decided_by: Option<String>,
    pub decision_note: Option<String>,
    pub grant_id: Option<String>,
    pub reviewed: bool,
    pub reviewed_by: Option<String>,
    pub review_comment: Option<String>,
    /// Ids of the policies that determined the decision.
    pub policies: Vec<String>,
    pub policy_version: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct GrantView {
    pub id: String,
    pub request_id: String,
    pub principal: String,
    pub principal_kind: String,
    pub role: String,
    pub breakglass: bool,
    pub starts_at: String,
    pub expires_at: String,
    /// active, expired or revoked (expired as soon as its end has passed).
    pub state: String,
    pub ended_at: Option<String>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RequestOutcome {
    pub request: RequestView,
    pub grant: Option<GrantView>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RequestList {
    pub requests: Vec<RequestView>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct GrantList {
    pub grants: Vec<GrantView>,
}

pub(crate) fn request_view(r: &AccessRequest) -> RequestView {
    let ts = |t: Option<Timestamp>| t.map(Timestamp::to_rfc3339);
    RequestView {
        id: r.id.clone(),
        requester: r.requester_name.clone(),
        requester_kind: r.requester_kind.as_str().into(),
        role: r.role.clone(),
        reason: r.reason.clone(),
        ticket: r.ticket.clone(),
        duration: format_duration(Duration::from_millis(u64::try_from(r.duration_ms).unwrap_or(0))),
        state: r.state.as_str().into(),
        breakglass: r.breakglass,
        approvals_required: r.approvals_required,
        approvals: r
            .approvals
            .iter()
            .map(|a| ApprovalView {
                approver: a.approver_name.clone(),
                comment: a.comment.clone(),
                at: a.created_at.to_rfc3339(),
            })
            .collect(),
        created_at: r.created_at.to_rfc3339(),
        pending_until: r.pending_until.to_rfc3339(),
        decided_at: ts(r.decided_at),
        decided_by: r.decided_by.clone(),
        decision_note: r.decision_note.clone(),
        grant_id: r.grant_id.clone(),
        reviewed: r.reviewed_at.is_some(),
        reviewed_by: r.reviewed_by.clone(),
        review_comment: r.review_comment.clone(),
        policies: serde_json::from_value(r.decision["policies"].clone()).unwrap_or_default(),
        policy_version: r.policy_hash.clone(),
    }
}

pub(crate) fn grant_view(g: &Grant, now: Timestamp) -> GrantView {
    let state = if g.state == GrantState::Active && now >= g.expires_at { "expired" } else { g.state.as_str() };
    GrantView {
        id: g.id.clone(),
        request_id: g.request_id.clone(),
        principal: g.principal_name.clone(),
        principal_kind: g.principal_kind.as_str().into(),
        role: g.role.clone(),
        breakglass: g.breakglass,
        starts_at: g.starts_at.to_rfc3339(),
        expires_at: g.expires_at.to_rfc3339(),
        state: state.into(),
        ended_at: g.ended_at.map(Timestamp::to_rfc3339),
        revoked_by: g.revoked_by.clone(),
        revoke_reason: g.revoke_reason.clone(),
    }
}

pub(crate) fn principal_info(p: &Principal) -> PrincipalInfo {
    PrincipalInfo { kind: p.kind, name: p.name.clone(), groups: p.groups.clone() }
}

pub(crate) fn context_for(
    st: &AppState,
    p: &Principal,
    d: Duration,
    reason: &str,
    ticket: &str,
    source: &str,
    breakglass: bool,
) -> DecisionContext {
    let mut c = DecisionContext::at(st.clock.now().millis());
    c.mfa = p.mfa;
    c.acr = p.acr.clone();
    c.amr = p.amr.clone();
    c.duration_secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    c.source_ip = source.to_string();
    c.ticket = ticket.to_string();
    c.reason = reason.to_string();
    c.breakglass = breakglass;
    c
}

/// A free-text field that must be present (a denial's reason, a review's comment).
fn required_text(field: &str, v: &str, flag: &str, what: &str) -> ApiResult<()> {
    check_text(field, v, MAX_TEXT)?;
    if v.trim().is_empty() {
        return Err(ApiError::BadRequest(format!("{what} needs a {field}: add --{flag} TEXT")));
    }
    Ok(())
}

fn check_text(field: &str, v: &str, max: usize) -> ApiResult<()> {
    if v.chars().count() > max || v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::BadRequest(format!(
            "{field} must be at most {max} characters without control characters"
        )));
    }
    Ok(())
}

/// The role's own rules (duration cap, reason, ticket pattern, MFA), checked
/// before policy so the caller learns exactly what to fix. A missing second
/// factor is a 403 (the caller must re-authenticate); the rest are 400s.
/// A refusal comes with the audit details that say which rules refused
/// (`reason`, `rules`) and what was asked for.
fn check_role_rules(role: &RoleSpec, dctx: &DecisionContext, policy_version: &str) -> Result<(), (ApiError, Value)> {
    let unmet = role.unmet_requirements(dctx);
    if unmet.is_empty() {
        return Ok(());
    }
    let rules: Vec<&str> = unmet.iter().map(|(rule, _)| *rule).collect();
    let message = unmet.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
    let err = if rules == ["mfa"] { ApiError::Forbidden(message) } else { ApiError::BadRequest(message) };
    let details = json!({
        "role": role.name,
        "decision": "denied",
        "reason": rules.join(","),
        "rules": rules,
        "duration": format_duration(Duration::from_secs(dctx.duration_secs.max(0).unsigned_abs())),
        "max_duration": (if dctx.breakglass { role.breakglass } else { Some(role.max_duration) }).map(format_duration),
        "mfa": dctx.mfa,
        "ticket": dctx.ticket,
        "request_reason": dctx.reason,
        "breakglass": dctx.breakglass,
        "policies": [],
        "policy_version": policy_version,
    });
    Err((err, details))
}

fn parse_requested(d: &Option<String>, default: Duration) -> ApiResult<Duration> {
    match d {
        Some(s) => parse_duration(s).map_err(|e| ApiError::BadRequest(format!("duration: {e}"))),
        None => Ok(default),
    }
}

fn decision_json(request: &Decision, activate: Option<&Decision>) -> Value {
    let mut policies = request.policies.clone();
    if let Some(a) = activate.filter(|a| a.allowed) {
        policies.extend(a.policies.iter().cloned());
    }
    json!({
        "request": { "allowed": request.allowed, "policies": request.policies, "errors": request.errors },
        "activate": activate.map(|a| json!({ "allowed": a.allowed, "policies": a.policies, "errors": a.errors })),
        "policies": policies,
    })
}

fn denied_message(action: &str, role: &str, d: &Decision) -> String {
    if d.policies.is_empty() {
        format!("policy does not permit you to {action} role {role} (no policy permits it)")
    } else {
        format!("policy denies {action} of role {role} (determined by: {})", d.policies.join(", "))
    }
}

#[utoipa::path(post, path = "/v1/requests", tag = "requests", request_body = CreateRequest,
    responses((status = 201, body = RequestOutcome), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(st): State<AppState>,
    ctx: Ctx,
    Caller(p): Caller,
    ApiJson(req): ApiJson<CreateRequest>,
) -> ApiResult<(StatusCode, Json<RequestOutcome>)> {
    let started = std::time::Instant::now();
    let policy = st.policy();
    latch_core::validate_name("role", &req.role)?;
    let role = policy.role(&req.role).ok_or_else(|| {
        ApiError::NotFound(format!("role {:?} does not exist: list roles with `latch roles`", req.role))
    })?;
    let d = parse_requested(&req.duration, role.default_duration)?;
    check_text("reason", &req.reason, MAX_TEXT)?;
    check_text("ticket", &req.ticket, MAX_TICKET)?;
    let dctx = context_for(&st, &p, d, &req.reason, &req.ticket, &ctx.source, false);
    let target = format!("role:{}", role.name);
    if let Err((err, details)) = check_role_rules(role, &dctx, policy.hash()) {
        return Err(refused(&st, &ctx, &p, "request.create", target, details, err).await);
    }
    let who = principal_info(&p);
    let may_request = policy.decide(Action::Request, &who, &role.name, &dctx);
    let activate = if may_request.allowed {
        policy.decide(Action::Activate, &who, &role.name, &dctx)
    } else {
        Decision { allowed: false, policies: Vec::new(), errors: Vec::new() }
    };
    let now = st.clock.now();
    // A role without an approval step can only be activated by policy.
    let state = match (may_request.allowed, activate.allowed, role.approvals_required) {
        (false, _, _) => RequestState::Denied,
        (true, true, _) => RequestState::Active,
        (true, false, 0) => RequestState::Denied,
        (true, false, _) => RequestState::Pending,
    };
    let request = AccessRequest {
        id: new_id("req")?,
        requester_id: p.id.clone(),
        requester_kind: p.kind,
        requester_name: p.name.clone(),
        role: role.name.clone(),
        reason: req.reason.clone(),
        ticket: req.ticket.clone(),
        duration_ms: i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        state,
        breakglass: false,
        approvals_required: if activate.allowed { 0 } else { i64::from(role.approvals_required) },
        policy_hash: policy.hash().to_string(),
        context: json!({ "principal": { "kind": p.kind.as_str(), "name": p.name, "groups": p.groups }, "context": dctx }),
        decision: decision_json(&may_request, Some(&activate)),
        created_at: now,
        pending_until: now.plus(st.jit.request_timeout),
        decided_at: None,
        decided_by: None,
        decision_note: None,
        grant_id: None,
        reviewed_at: None,
        reviewed_by: None,
        review_comment: None,
        approvals: Vec::new(),
    };
    let grant = activate.allowed.then(|| new_grant(&request, now, false)).transpose()?;
    let decision = match state {
        RequestState::Denied => "denied",
        RequestState::Active => "auto_approved",
        _ => "pending",
    };
    let ev = ctx
        .audit(p.audit_name(), "request.create", target)
        .outcome(if may_request.allowed { Outcome::Success } else { Outcome::Denied })
        .details(json!({
            "request_id": request.id,
            "decision": decision,
            "approvals_required": request.approvals_required,
            "duration": format_duration(d),
            "reason": request.reason,
            "ticket": request.ticket,
            "grant_id": grant.as_ref().map(|g| g.id.clone()),
            "policies": request.decision["policies"],
            "policy_version": request.policy_hash,
        }));
    let created = st.store.create_request(request, grant.clone(), ev).await?;
    let outcome = match state {
        RequestState::Active => DecisionOutcome::Allow,
        RequestState::Pending => DecisionOutcome::NeedsApproval,
        _ => DecisionOutcome::Deny,
    };
    st.metrics.decision(DecisionAction::Request, outcome);
    if grant.is_some() {
        st.metrics.time_to_grant(Via::Auto, started.elapsed());
    }
    if !may_request.allowed {
        return Err(ApiError::Forbidden(format!(
            "{} (request {})",
            denied_message("request", &role.name, &may_request),
            created.id
        )));
    }
    if state == RequestState::Denied {
        return Err(ApiError::Forbidden(format!(
            "role {} has no approval step and no policy lets you activate it under these conditions (request {})",
            role.name, created.id
        )));
    }
    Ok((
        StatusCode::CREATED,
        Json(RequestOutcome { request: request_view(&created), grant: grant.as_ref().map(|g| grant_view(g, now)) }),
    ))
}

fn new_grant(r: &AccessRequest, now: Timestamp, breakglass: bool) -> ApiResult<Grant> {
    Ok(Grant {
        id: new_id("grt")?,
        request_id: r.id.clone(),
        principal_id: r.requester_id.clone(),
        principal_kind: r.requester_kind,
        principal_name: r.requester_name.clone(),
        role: r.role.clone(),
        breakglass,
        starts_at: now,
        expires_at: Timestamp(now.millis().saturating_add(r.duration_ms)),
        state: GrantState::Active,
        ended_at: None,
        revoked_by: None,
        revoke_reason: None,
    })
}

async fn load(st: &AppState, id: &str) -> ApiResult<AccessRequest> {
    latch_core::validate_name("request id", id)?;
    st.store.get_request(id).await?.ok_or_else(|| ApiError::NotFound(format!("request {id:?} not found")))
}

/// Approvers are people: a service principal is never one, even one whose
/// name matches an approving user or that sits in an approving group. The
/// one check every approver path (approve, deny, review, show, to-review) uses.
fn is_user_approver(p: &Principal, role: &RoleSpec) -> bool {
    p.kind == PrincipalKind::User && role.is_approver(&p.name, &p.groups)
}

/// Whether `p` may act as an approver of `r` now: an eligible approver of the
/// role (by name or group), a user, not the requester, and permitted by Cedar.
/// Returns Cedar's decision and the role's current maximum duration; a
/// refusal comes with its audit details (the policy ids, when Cedar refused).
fn approver_check(
    st: &AppState,
    p: &Principal,
    r: &AccessRequest,
    source: &str,
) -> Result<(Decision, Duration), (ApiError, Value)> {
    let refusal = |err: ApiError, policies: &[String]| (err, json!({ "role": r.role, "policies": policies }));
    if p.id == r.requester_id {
        let err = ApiError::Forbidden("you cannot approve or deny your own request (separation of duties)".into());
        return Err(refusal(err, &[]));
    }
    let policy = st.policy();
    let Some(role) = policy.role(&r.role) else {
        let err = ApiError::Conflict(format!("role {} no longer exists in the policy in force", r.role));
        return Err(refusal(err, &[]));
    };
    if !is_user_approver(p, role) {
        return Err(refusal(ApiError::Forbidden(format!("you are not an approver of role {}", r.role)), &[]));
    }
    let d = Duration::from_millis(u64::try_from(r.duration_ms).unwrap_or(0));
    let dctx = context_for(st, p, d, &r.reason, &r.ticket, source, false);
    let decision = policy.decide(Action::Approve, &principal_info(p), &r.role, &dctx);
    if !decision.allowed {
        let err = ApiError::Forbidden(denied_message("approve", &r.role, &decision));
        return Err(refusal(err, &decision.policies));
    }
    Ok((decision, role.max_duration))
}

/// Audits a refusal (outcome denied) before returning it. `details` say what
/// was refused; the message the caller gets is added as `message`, and as
/// `reason` unless the details already name one.
pub(crate) async fn refused(
    st: &AppState,
    ctx: &Ctx,
    p: &Principal,
    action: &str,
    target: String,
    mut details: Value,
    err: ApiError,
) -> ApiError {
    if let Some(m) = details.as_object_mut() {
        let message = err.to_string();
        m.entry("reason").or_insert_with(|| json!(message));
        m.insert("message".into(), json!(message));
    }
    let ev = ctx.audit(p.audit_name(), action, target).outcome(Outcome::Denied).details(details);
    match st.store.append_audit(ev).await {
        Ok(_) => {
            // A refusal by role rules or policy; a role gone from the policy (409) decided nothing.
            let decided = match action {
                "request.create" => Some(DecisionAction::Request),
                "request.approve" | "request.deny" => Some(DecisionAction::Approve),
                "breakglass.activate" => Some(DecisionAction::Breakglass),
                _ => None,
            };
            if let Some(a) = decided.filter(|_| !matches!(err, ApiError::Conflict(_))) {
                st.metrics.decision(a, DecisionOutcome::Deny);
            }
            err
        }
        Err(e) => e.into(),
    }
}

#[utoipa::path(post, path = "/v1/requests/{id}/approve", tag = "requests", request_body = Comment,
    responses((status = 200, body = RequestOutcome), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn approve(
    State(st): State<AppState>,
    ctx: Ctx,
    Caller(p): Caller,
    Path(id): Path<String>,
    body: Option<ApiJson<Comment>>,
) -> ApiResult<Json<RequestOutcome>> {
    let comment = body.map(|ApiJson(c)| c.comment).unwrap_or_default();
    check_text("comment", &comment, MAX_TEXT)?;
    let r = load(&st, &id).await?;
    let (decision, max) = match approver_check(&st, &p, &r, &ctx.source) {
        Ok(ok) => ok,
        Err((e, details)) => {
            return Err(refused(&st, &ctx, &p, "request.approve", format!("request:{id}"), details, e).await);
        }
    };
    let approval = Approval {
        approver_id: p.id.clone(),
        approver_name: p.name.clone(),
        comment: comment.clone(),
        created_at: st.clock.now(),
    };
    let ev = ctx.audit(p.audit_name(), "request.approve", format!("request:{id}")).details(
        json!({ "role": r.role, "requester": r.requester_name, "comment": comment, "policies": decision.policies }),
    );
    let grant_ev = ctx.audit("system", "grant.activate", format!("request:{id}")).details(json!({
        "role": r.role,
        "principal": format!("{}:{}", r.requester_kind.as_str(), r.requester_name),
        "policies": decision.policies,
    }));
    // A grant never exceeds the role's maximum in force now, even if it was lowered while the request waited.
    let max_ms = i64::try_from(max.as_millis()).unwrap_or(i64::MAX);
    let outcome = st.store.approve_request(&id, approval, new_id("grt")?, max_ms, ev, grant_ev).await;
    let grant = match outcome {
        Ok(ApprovalOutcome::Granted(g)) => Some(g),
        Ok(ApprovalOutcome::Recorded { .. }) => None,
        Err(StoreError::Precondition(m)) => return Err(ApiError::Forbidden(m)),
        Err(e) => return Err(e.into()),
    };
    st.metrics.decision(DecisionAction::Approve, DecisionOutcome::Allow);
    if let Some(g) = &grant {
        let waited = g.starts_at.millis().saturating_sub(r.created_at.millis()).max(0);
        st.metrics.time_to_grant(Via::Human, Duration::from_millis(waited.unsigned_abs()));
    }
    let r = load(&st, &id).await?;
    let now = st.clock.now();
    Ok(Json(RequestOutcome { request: request_view(&r), grant: grant.as_ref().map(|g| grant_view(g, now)) }))
}

#[utoipa::path(post, path = "/v1/requests/{id}/deny", tag = "requests", request_body = Reason,
    responses((status = 200, body = RequestView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn deny(
    State(st): State<AppState>,
    ctx: Ctx,
    Caller(p): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Reason>,
) -> ApiResult<Json<RequestView>> {
    required_text("reason", &body.reason, "reason", "a denial")?;
    let r = load(&st, &id).await?;
    if let Err((e, details)) = approver_check(&st, &p, &r, &ctx.source) {
        return Err(refused(&st, &ctx, &p, "request.deny", format!("request:{id}"), details, e).await);
    }
    let ev = ctx
        .audit(p.audit_name(), "request.deny", format!("request:{id}"))
        .details(json!({ "role": r.role, "requester": r.requester_name, "reason": body.reason }));
    let r = st.store.close_request(&id, RequestState::Denied, &p.name, &body.reason, ev).await?;
    st.metrics.decision(DecisionAction::Approve, DecisionOutcome::Allow);
    Ok(Json(request_view(&r)))
}

#[utoipa::path(post, path = "/v1/requests/{id}/cancel", tag = "requests",
    responses((status = 200, body = RequestView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(st): State<AppState>,
    ctx: Ctx,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RequestView>> {
    let r = load(&st, &id).await?;
    if r.requester_id != p.id && !p.is_admin() {
        return Err(ApiError::Forbidden("only the requester (or an administrator) can cancel a request".into()));
    }
    let ev = ctx.audit(p.audit_name(), "request.cancel", format!("request:{id}")).details(json!({ "role": r.role }));
    let r = st.store.close_request(&id, RequestState::Cancelled, &p.name, "cancelled", ev).await?;
    Ok(Json(request_view(&r)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RequestsQuery {
    /// pending, active, expired, revoked, denied, cancelled, timed_out
    pub state: Option<String>,
    /// Only my requests (the default for non-administrators).
    #[serde(default)]
    pub mine: bool,
    /// Pending requests I may approve.
    #[serde(default)]
    pub to_review: bool,
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/requests", tag = "requests", params(RequestsQuery),
    responses((status = 200, body = RequestList)), security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Caller(p): Caller,
    ApiQuery(q): ApiQuery<RequestsQuery>,
) -> ApiResult<Json<RequestList>> {
    let state = match q.state.as_deref() {
        Some(s) => Some(RequestState::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown state {s:?}: use pending, active, expired, revoked, denied, cancelled or timed_out"
            ))
        })?),
        None => None,
    };
    let limit = q.limit.unwrap_or(1000);
    let requests = if q.to_review {
        let policy = st.policy();
        let roles: Vec<String> = policy.roles().filter(|r| is_user_approver(&p, r)).map(|r| r.name.clone()).collect();
        let pending = st
            .store
            .list_requests(RequestFilter {
                state: Some(RequestState::Pending),
                requester_id: None,
                roles: Some(roles),
                limit,
            })
            .await?;
        pending
            .into_iter()
            .filter(|r| r.requester_id != p.id && !r.approvals.iter().any(|a| a.approver_id == p.id))
            .collect()
    } else {
        let mine = q.mine || !p.is_admin();
        st.store
            .list_requests(RequestFilter { state, requester_id: mine.then(|| p.id.clone()), roles: None, limit })
            .await?
    };
    Ok(Json(RequestList { requests: requests.iter().map(request_view).collect() }))
}

#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests",
    responses((status = 200, body = RequestOutcome), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    State(st): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RequestOutcome>> {
    let r = load(&st, &id).await?;
    let policy = st.policy();
    let approver = policy.role(&r.role).is_some_and(|role| is_user_approver(&p, role));
    if r.requester_id != p.id && !approver && !p.is_admin() {
        return Err(ApiError::NotFound(format!("request {id:?} not found")));
    }
    let grant = match &r.grant_id {
        Some(g) => st.store.get_grant(g).await?,
        None => None,
    };
    let now = st.clock.now();
    Ok(Json(RequestOutcome { request: request_view(&r), grant: grant.as_ref().map(|g| grant_view(g, now)) }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GrantsQuery {
    /// Every principal's grants (administrators).
    #[serde(default)]
    pub all: bool,
    /// Only grants live now.
    #[serde(default)]
    pub active: bool,
}

#[utoipa::path(get, path = "/v1/grants", tag = "grants", params(GrantsQuery),
    responses((status = 200, body = GrantList), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn grants(
    State(st): State<AppState>,
    Caller(p): Caller,
    ApiQuery(q): ApiQuery<GrantsQuery>,
) -> ApiResult<Json<GrantList>> {
    if q.all && !p.is_admin() {
        return Err(ApiError::Forbidden("only administrators can list everyone's grants".into()));
    }
    let now = st.clock.now();
    let list = st.store.list_grants((!q.all).then_some(p.id.as_str()), q.active.then_some(now)).await?;
    Ok(Json(GrantList { grants: list.iter().map(|g| grant_view(g, now)).collect() }))
}

#[utoipa::path(get, path = "/v1/grants/{id}", tag = "grants",
    responses((status = 200, body = GrantView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn grant(
    State(st): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<GrantView>> {
    latch_core::validate_name("grant id", &id)?;
    let g = st.store.get_grant(&id).await?.filter(|g| g.principal_id == p.id || p.is_admin());
    let g = g.ok_or_else(|| ApiError::NotFound(format!("grant {id:?} not found")))?;
    Ok(Json(grant_view(&g, st.clock.now())))
}

#[utoipa::path(post, path = "/v1/grants/{id}/revoke", tag = "grants", request_body = OptionalReason,
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(st): State<AppState>,
    ctx: Ctx,
    Caller(p): Caller,
    Path(id): Path<String>,
    body: Option<ApiJson<OptionalReason>>,
) -> ApiResult<Json<Value>> {
    let started = std::time::Instant::now();
    // When the revocation was asked for: time-to-revoke (M6 of /v1/slo) runs from here.
    let requested_at = st.clock.now();
    let reason = body.map(|ApiJson(b)| b.reason).unwrap_or_default();
    check_text("reason", &reason, MAX_TEXT)?;
    latch_core::validate_name("grant id", &id)?;
    let g = st.store.get_grant(&id).await?.ok_or_else(|| ApiError::NotFound(format!("grant {id:?} not found")))?;
    if g.principal_id != p.id && !p.is_admin() {
        return Err(ApiError::Forbidden("only the holder of a grant or an administrator can revoke it".into()));
    }
    let ev = ctx
        .audit(p.audit_name(), "grant.revoke", format!("grant:{id}"))
        .details(json!({ "role": g.role, "principal": format!("{}:{}", g.principal_kind.as_str(), g.principal_name),
                         "reason": reason, "breakglass": g.breakglass, "requested_at": requested_at.millis() }));
    let (g, jtis) = match st.store.revoke_grant(&id, &p.name, &reason, ev).await {
        Ok(v) => v,
        Err(e) => {
            let e = ApiError::from(e);
            if e.status().is_server_error() {
                st.metrics.revocation_failed();
            }
            return Err(e);
        }
    };
    st.metrics.revocation(started.elapsed());
    // Its database roles, if any, are dropped by the revoker now rather than at its next poll.
    st.db.wake_revoker();
    Ok(Json(json!({ "grant": grant_view(&g, st.clock.now()), "tokens_revoked": jtis })))
}

#[utoipa::path(post, path = "/v1/breakglass", tag = "requests", request_body = CreateBreakglass,
    responses((status = 201, body = RequestOutcome), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn breakglass(
    State(st): State<AppState>,
    ctx: Ctx,
    Caller(p): Caller,
    ApiJson(req): ApiJson<CreateBreakglass>,
) -> ApiResult<(StatusCode, Json<RequestOutcome>)> {
    let started = std::time::Instant::now();
    let policy = st.policy();
    latch_core::validate_name("role", &req.role)?;
    let role =
        policy.role(&req.role).ok_or_else(|| ApiError::NotFound(format!("role {:?} does not exist", req.role)))?;
    let target = format!("role:{}", role.name);
    let Some(max) = role.breakglass else {
        let err = ApiError::Forbidden(format!("role {} does not allow break-glass access", role.name));
        let details = json!({ "role": role.name, "breakglass": true, "reason": "breakglass_not_allowed", "policies": [],
                              "policy_version": policy.hash() });
        return Err(refused(&st, &ctx, &p, "breakglass.activate", target, details, err).await);
    };
    let d = parse_requested(&req.duration, max)?;
    check_text("reason", &req.reason, MAX_TEXT)?;
    check_text("ticket", &req.ticket, MAX_TICKET)?;
    let dctx = context_for(&st, &p, d, &req.reason, &req.ticket, &ctx.source, true);
    if let Err((err, details)) = check_role_rules(role, &dctx, policy.hash()) {
        return Err(refused(&st, &ctx, &p, "breakglass.activate", target, details, err).await);
    }
    let decision = policy.decide(Action::Breakglass, &principal_info(&p), &role.name, &dctx);
    if !decision.allowed {
        let err = ApiError::Forbidden(denied_message("break-glass into", &role.name, &decision));
        let details = json!({ "role": role.name, "breakglass": true, "duration": format_duration(d),
                              "policies": decision.policies, "errors": decision.errors, "policy_version": policy.hash() });
        return Err(refused(&st, &ctx, &p, "breakglass.activate", target, details, err).await);
    }
    let now = st.clock.now();
    let request = AccessRequest {
        id: new_id("req")?,
        requester_id: p.id.clone(),
        requester_kind: p.kind,
        requester_name: p.name.clone(),
        role: role.name.clone(),
        reason: req.reason.clone(),
        ticket: req.ticket.clone(),
        duration_ms: i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        state: RequestState::Active,
        breakglass: true,
        approvals_required: 0,
        policy_hash: policy.hash().to_string(),
        context: json!({ "principal": { "kind": p.kind.as_str(), "name": p.name, "groups": p.groups }, "context": dctx }),
        decision: json!({ "breakglass": { "allowed": true, "policies": decision.policies }, "policies": decision.policies }),
        created_at: now,
        pending_until: now,
        decided_at: None,
        decided_by: None,
        decision_note: None,
        grant_id: None,
        reviewed_at: None,
        reviewed_by: None,
        review_comment: None,
        approvals: Vec::new(),
    };
    let grant = new_grant(&request, now, true)?;
    let ev = ctx.audit(p.audit_name(), "breakglass.activate", target).details(json!({
        "breakglass": true,
        "request_id": request.id,
        "grant_id": grant.id,
        "duration": format_duration(d),
        "reason": request.reason,
        "ticket": request.ticket,
        "policies": decision.policies,
        "policy_version": request.policy_hash,
        "review": "required",
    }));
    let created = st.store.create_request(request, Some(grant.clone()), ev).await?;
    st.metrics.decision(DecisionAction::Breakglass, DecisionOutcome::Allow);
    st.metrics.time_to_grant(Via::Breakglass, started.elapsed());
    Ok((
        StatusCode::CREATED,
        Json(RequestOutcome { request: request_view(&created), grant: Some(grant_view(&grant, now)) }),
    ))
}

#[utoipa::path(post, path = "/v1/requests/{id}/review", tag = "requests", request_body = Comment,
    responses((status = 200, body = RequestView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn review(
    State(st): State<AppState>,
    ctx: Ctx,
    Caller(p): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Comment>,
) -> ApiResult<Json<RequestView>> {
    required_text("comment", &body.comment, "comment", "a post-incident review")?;
    let r = load(&st, &id).await?;
    if p.id == r.requester_id {
        return Err(ApiError::Forbidden("you cannot review your own break-glass use".into()));
    }
    let policy = st.policy();
    let eligible = policy.role(&r.role).is_some_and(|role| is_user_approver(&p, role));
    if !eligible && !p.is_admin() {
        return Err(ApiError::Forbidden(format!(
            "only approvers of role {} or administrators review its break-glass use",
            r.role
        )));
    }
    let ev = ctx
        .audit(p.audit_name(), "breakglass.review", format!("request:{id}"))
        .details(json!({ "breakglass": true, "role": r.role, "requester": r.requester_name, "comment": body.comment }));
    match st.store.review_request(&id, &p.name, &body.comment, ev).await {
        Ok(r) => Ok(Json(request_view(&r))),
        Err(StoreError::Precondition(m)) => Err(ApiError::BadRequest(m)),
        Err(e) => Err(e.into()),
    }
}
