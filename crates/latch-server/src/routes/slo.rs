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
    let kid = st.issuers().active_kid().unwrap_or_default();
    Ok(slo::report(&label, window, now, cfg, &data, &stats, &kid))
}

/// Every long-lived privileged credential latch knows of, with its age and
/// whether it is past its limit (the guide's M4, itemized).
#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Inventory {
    pub generated_at: String,
    /// How many are past their limit: M4's value.
    pub long_lived: u64,
    /// Enabled service principals: their secrets never expire, so each is listed with its age.
    pub service_principal_secrets: Vec<slo::AgedCredential>,
    /// SSH CA, token signing key and master key versions.
    pub signing_keys: Vec<slo::AgedCredential>,
    /// Stored secrets (KV), by the age of their current value.
    pub static_secrets: Vec<slo::AgedCredential>,
    pub long_lived_tokens: i64,
    pub long_lived_ssh_certificates: i64,
    pub sp_secret_max_age: String,
    pub signing_key_max_age: String,
    pub static_secret_max_age: String,
}

/// The inventory of long-lived privileged credentials.
#[utoipa::path(get, path = "/v1/inventory", tag = "sys",
    responses((status = 200, body = Inventory), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn inventory(State(st): State<AppState>, Caller(p): Caller) -> ApiResult<Json<Inventory>> {
    if !is_metrics_reader(&p) {
        return Err(ApiError::Forbidden(format!(
            "{} may not read the credential inventory: add it to group {METRICS_READERS_GROUP:?}",
            p.audit_name()
        )));
    }
    let report = compute(&st, None).await?;
    let m4 = report.m4;
    let now = st.clock.now();
    let cfg = &st.slo;
    let aged = |name: String, since_ms: i64, limit: std::time::Duration| {
        let age = now.millis().saturating_sub(since_ms);
        slo::AgedCredential {
            name,
            since: latch_core::Timestamp(since_ms).to_rfc3339(),
            age_days: (age as f64 / 86_400_000.0 * 10.0).round() / 10.0,
            long_lived: age > i64::try_from(limit.as_millis()).unwrap_or(i64::MAX),
            expires_at: None,
            rotation: None,
        }
    };
    let sps = st.store.list_sps().await?;
    let service_principal_secrets = sps
        .iter()
        .filter(|sp| !sp.disabled)
        .map(|sp| {
            let a = aged(format!("sp:{}", sp.name), sp.secret_rotated_at.millis(), cfg.sp_secret_max_age);
            let status = slo::sp_secret_status(sp.secret_expires_at, sp.previous_secret_expires_at, now);
            slo::AgedCredential {
                long_lived: a.long_lived || status == "expired",
                expires_at: sp.secret_expires_at.map(latch_core::Timestamp::to_rfc3339),
                rotation: Some(status.into()),
                ..a
            }
        })
        .collect();
    let mut signing_keys = m4.signing_keys;
    if let Ok(ring) = st.barrier.keyring(st.store.as_ref(), std::time::Instant::now()).await {
        let active = ring.active();
        if let Some((v, created)) = ring.versions().into_iter().find(|(v, _)| *v == active) {
            signing_keys.push(aged(format!("master-key:v{v}"), created, cfg.signing_key_max_age));
        }
    }
    let data = st
        .store
        .slo_data(SloQuery {
            from: now,
            to: now,
            secret_rotated_before: now.minus(cfg.sp_secret_max_age),
            long_lived_ms: i64::try_from(cfg.credential_max_lifetime.as_millis()).unwrap_or(i64::MAX),
            standing_actions: Vec::new(),
        })
        .await?;
    let static_secrets = data
        .static_secrets
        .iter()
        .map(|(path, at)| aged(format!("secret:{path}"), at.millis(), cfg.static_secret_max_age))
        .collect();
    Ok(Json(Inventory {
        generated_at: now.to_rfc3339(),
        long_lived: m4.value,
        service_principal_secrets,
        signing_keys,
        static_secrets,
        long_lived_tokens: m4.long_lived_tokens,
        long_lived_ssh_certificates: m4.long_lived_ssh_certificates,
        sp_secret_max_age: m4.sp_secret_max_age,
        signing_key_max_age: m4.signing_key_max_age,
        static_secret_max_age: m4.static_secret_max_age,
    }))
}
