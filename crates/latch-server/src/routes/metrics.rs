//! `GET /metrics`: Prometheus text exposition of [`crate::metrics`].
//!
//! Like Vault's `unauthenticated_metrics_access`, the endpoint is open only
//! when the operator says so (`[metrics] public = true`, or `--metrics-public`
//! on a dev server); otherwise it takes the bearer token of an administrator
//! or of a member of group `metrics-readers` (a service principal, for a
//! scraper). The series carry counts and role names, never secrets or
//! principals' names, but role names and volumes are still worth keeping
//! from strangers.

use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use latch_core::Principal;

use crate::error::{ApiError, ErrorBody};
use crate::extract::Caller;
use crate::metrics::METRICS_READERS_GROUP;
use crate::metrics::text::CONTENT_TYPE;
use crate::state::AppState;

/// A caller allowed to read `/metrics` (anyone, when they are public).
pub struct MetricsReader;

impl FromRequestParts<AppState> for MetricsReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if state.metrics_settings.public {
            return Ok(MetricsReader);
        }
        let Caller(p) = Caller::from_request_parts(parts, state).await?;
        if is_metrics_reader(&p) {
            Ok(MetricsReader)
        } else {
            Err(ApiError::Forbidden(format!(
                "{} may not read metrics: add it to group {METRICS_READERS_GROUP:?} \
                 (or set [metrics] public = true)",
                p.audit_name()
            )))
        }
    }
}

/// Administrators and members of group `metrics-readers`.
pub fn is_metrics_reader(p: &Principal) -> bool {
    p.is_admin() || p.groups.iter().any(|g| g == METRICS_READERS_GROUP)
}

/// This node's metrics and the cluster's, in the Prometheus text format 0.0.4.
#[utoipa::path(get, path = "/metrics", tag = "sys",
    responses((status = 200, body = String, content_type = "text/plain; version=0.0.4"),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security((), ("bearer" = [])))]
pub async fn metrics(State(st): State<AppState>, _reader: MetricsReader) -> impl IntoResponse {
    let body = st.metrics.render(&st).await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body)
}
