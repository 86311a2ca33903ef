//! `GET /v1/slo`: the SLIs M1–M6 over a window, with their objectives and
//! error budgets (see [`crate::slo`]).
//!
//! Readable by administrators and members of group `metrics-readers`, as
//! `/metrics` is — but always with a token, even where `[metrics] public =
//! true`: the report names service principals, grants and the people who
//! broke glass.

use axum::Json;
use axum::extract::State;
use latch_store::SloQuery;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiQuery, Caller};
use crate::metrics::METRICS_READERS_GROUP;
use crate::routes::metrics::is_metrics_reader;
use crate::slo::{self, STANDING_ACTIONS, SloReport};
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SloParams {
    /// How far back from now, e.g. `30d`, `7d`, `24h` (default `30d`, at most `366d`).
    pub window: Option<String>,
}

/// The SLIs M1–M6 of the window ending now, each with its definition,
/// value, target, whether it is met and the error budget left.
#[utoipa::path(get, path = "/v1/slo", tag = "sys", params(SloParams),
    responses((status = 200, body = SloReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn slo(
    State(st): State<AppState>,
    Caller(p): Caller,
    ApiQuery(q): ApiQuery<SloParams>,
) -> ApiResult<Json<SloReport>> {
    if !is_metrics_reader(&p) {
        return Err(ApiError::Forbidden(format!(
            "{} may not read service-level reports: add it to group {METRICS_READERS_GROUP:?}",
            p.audit_name()
        )));
    }
    Ok(Json(compute(&st, q.window.as_deref()).await?))
}

/// The report for `window` (default 30d) ending now; no authorization here.
pub(crate) async fn compute(st: &AppState, window: Option<&str>) -> ApiResult<SloReport> {
    let (label, window) = slo::parse_window(window).map_err(ApiError::BadRequest)?;
    let now = st.clock.now();
    let cfg = &st.slo;
    let query = SloQuery {
        from: now.minus(window),
        to: now,
        secret_rotated_before: now.minus(cfg.sp_secret_max_age),
        long_lived_ms: i64::try_from(cfg.credential_max_lifetime.as_millis()).unwrap_or(i64::MAX),
        standing_actions: STANDING_ACTIONS.iter().map(|a| (*a).to_string()).collect(),
    };
    let data = st.store.slo_data(query).await?;
    let stats = st.store.stats(now).await?;
    let kid = st.token_keys().kid();
    Ok(slo::report(&label, window, now, cfg, &data, &stats, &kid))
}
