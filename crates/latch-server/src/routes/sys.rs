//! Health, and the dev-only test clock.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiQuery, Ctx};
use crate::state::AppState;

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the store cannot be read.
    pub status: String,
    pub version: String,
    pub audit_head_seq: Option<i64>,
    /// `sqlite` or `postgres`.
    pub storage: String,
    /// `ok`, or `unreachable`: privileged operations are refused until it returns.
    pub database: String,
    /// Whether this node runs the background work (always true on SQLite).
    pub leader: bool,
    /// The content hash of the policy version this node decides with.
    pub policy_version: String,
    /// Vault's fields: whether the seal was initialized, and whether this
    /// node is sealed (secrets answer 503 "sealed"; everything else works).
    pub initialized: bool,
    pub sealed: bool,
    /// Always false: every latch node serves requests itself.
    pub standby: bool,
    pub server_time_utc: i64,
}

/// Vault's health parameters: the status to answer with in each state, so a
/// load balancer can, e.g., route secrets traffic only to unsealed nodes
/// (`?sealedcode=503`). By default latch answers 200 while sealed or not yet
/// initialized, as it serves everything but secrets then.
#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
pub struct HealthParams {
    /// Status when this node is sealed (default 200).
    pub sealedcode: Option<u16>,
    /// Status when the seal was never initialized (default 200).
    pub uninitcode: Option<u16>,
    /// Status when unsealed and healthy (default 200).
    pub activecode: Option<u16>,
    /// Accepted for Vault clients; latch has no standby nodes.
    pub standbyok: Option<bool>,
    pub perfstandbyok: Option<bool>,
    pub standbycode: Option<u16>,
    pub performancestandbycode: Option<u16>,
    pub drsecondarycode: Option<u16>,
    pub haunhealthycode: Option<u16>,
    pub removedcode: Option<u16>,
}

fn status_code(name: &str, code: Option<u16>) -> Result<StatusCode, ApiError> {
    match code {
        None => Ok(StatusCode::OK),
        Some(c) => StatusCode::from_u16(c)
            .ok()
            .filter(|s| (200..600).contains(&s.as_u16()))
            .ok_or_else(|| ApiError::BadRequest(format!("{name} must be an HTTP status between 200 and 599"))),
    }
}

#[utoipa::path(get, path = "/v1/sys/health", tag = "sys", params(HealthParams),
    responses((status = 200, body = Health), (status = 400, body = ErrorBody), (status = 503, body = Health)))]
pub async fn health(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<HealthParams>,
) -> ApiResult<(StatusCode, Json<Health>)> {
    let (sealed_code, uninit_code, active_code) = (
        status_code("sealedcode", q.sealedcode)?,
        status_code("uninitcode", q.uninitcode)?,
        status_code("activecode", q.activecode)?,
    );
    let version = env!("CARGO_PKG_VERSION").to_string();
    let storage = st.store.backend_name().to_string();
    let leader = st.store.is_leader();
    let policy_version = st.policy().hash().to_string();
    let initialized = matches!(st.store.seal_config().await, Ok(Some(_)));
    let sealed = st.barrier.is_sealed();
    let server_time_utc = st.clock.now().secs();
    match st.store.audit_head().await {
        Ok((seq, _)) => Ok((
            match (initialized, sealed) {
                (false, _) => uninit_code,
                (true, true) => sealed_code,
                (true, false) => active_code,
            },
            Json(Health {
                status: "ok".into(),
                version,
                audit_head_seq: Some(seq),
                storage,
                database: "ok".into(),
                leader,
                policy_version,
                initialized,
                sealed,
                standby: false,
                server_time_utc,
            }),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "health: store unreachable");
            let health = Health {
                status: "degraded".into(),
                version,
                audit_head_seq: None,
                storage,
                database: "unreachable".into(),
                leader,
                policy_version,
                initialized,
                sealed,
                standby: false,
                server_time_utc,
            };
            Ok((StatusCode::SERVICE_UNAVAILABLE, Json(health)))
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    /// How far to move the server's clock forward, e.g. `31s`, `8h`.
    #[serde(default)]
    pub advance: Option<String>,
    /// `true` stops the clock (it then moves only when advanced, so tests can
    /// assert exact durations); `false` lets it run with system time again.
    #[serde(default)]
    pub freeze: Option<bool>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ClockNow {
    pub now: String,
    pub now_ms: i64,
}

/// Moves the clock of a dev server started with `--test-clock`, so black-box
/// tests exercise expiry without sleeping. Absent (404) everywhere else.
#[utoipa::path(post, path = "/v1/sys/test/clock", tag = "sys", request_body = AdvanceClock,
    responses((status = 200, body = ClockNow), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn advance_clock(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(admin): Admin,
    ApiJson(req): ApiJson<AdvanceClock>,
) -> ApiResult<Json<ClockNow>> {
    let Some(clock) = &st.test_clock else {
        return Err(ApiError::NotFound("the test clock is only available on `latch server --dev --test-clock`".into()));
    };
    if req.advance.is_none() && req.freeze.is_none() {
        return Err(ApiError::BadRequest("give advance (e.g. \"90s\"), freeze (true or false), or both".into()));
    }
    let d = match &req.advance {
        Some(a) => Some(latch_core::parse_duration(a).map_err(|e| ApiError::BadRequest(e.to_string()))?),
        None => None,
    };
    if let Some(f) = req.freeze {
        clock.freeze(f);
    }
    if let Some(d) = d {
        clock.advance(d);
    }
    let now = st.clock.now();
    let ev = ctx.audit(admin.audit_name(), "system.test_clock", "system:clock").details(json!({
        "advance": req.advance, "freeze": req.freeze, "frozen": clock.is_frozen(), "now": now.to_rfc3339()
    }));
    st.store.append_audit(ev).await?;
    Ok(Json(ClockNow { now: now.to_rfc3339(), now_ms: now.millis() }))
}

#[utoipa::path(get, path = "/v1/sys/notifications", tag = "sys",
    responses((status = 200, body = crate::state::NotifyStatus)), security(("bearer" = [])))]
pub async fn notifications(State(st): State<AppState>, _admin: Admin) -> Json<crate::state::NotifyStatus> {
    Json(st.notify_status().clone())
}
