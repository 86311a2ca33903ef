//! Reading the audit log (admins only). Verification happens in the client
//! (`latch audit verify`), which recomputes the chain from these pages and
//! checks checkpoints against the published key, trusting nothing else.

use axum::Json;
use axum::extract::State;
use latch_audit::{AuditEvent, Checkpoint, Outcome};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiQuery};
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Return events with seq greater than this.
    #[serde(default)]
    pub since: i64,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// At most 10,000; default 1,000.
    pub limit: Option<usize>,
}

/// An audit event as served; `time` is milliseconds since the epoch, exactly as hashed.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub seq: i64,
    pub time: i64,
    pub time_rfc3339: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    #[schema(value_type = String)]
    pub outcome: Outcome,
    pub request_id: String,
    pub source: String,
    pub details: serde_json::Value,
    pub hash: String,
}

impl From<AuditEvent> for EventView {
    fn from(e: AuditEvent) -> Self {
        EventView {
            seq: e.seq,
            time: e.time.millis(),
            time_rfc3339: e.time.to_rfc3339(),
            actor: e.actor,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            request_id: e.request_id,
            source: e.source,
            details: e.details,
            hash: e.hash,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// Pass as `since` to get the next page.
    pub next_since: i64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    pub seq: i64,
    pub hash: String,
    pub time: i64,
    pub key_id: String,
    pub signature: String,
}

impl From<Checkpoint> for CheckpointView {
    fn from(c: Checkpoint) -> Self {
        CheckpointView { seq: c.seq, hash: c.hash, time: c.time.millis(), key_id: c.key_id, signature: c.signature }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CheckpointList {
    pub checkpoints: Vec<CheckpointView>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuditKey {
    pub algorithm: String,
    pub key_id: String,
    /// Hex Ed25519 public key that signs checkpoints.
    pub public_key: String,
}

#[utoipa::path(get, path = "/v1/audit/events", tag = "audit", params(EventsQuery),
    responses((status = 200, body = EventPage), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn events(
    State(st): State<AppState>,
    _admin: Admin,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<EventPage>> {
    let query =
        latch_store::AuditQuery { since: q.since, actor: q.actor, action: q.action, limit: q.limit.unwrap_or(1000) };
    let events = st.store.list_audit(query).await?;
    let next_since = events.last().map_or(q.since, |e| e.seq);
    Ok(Json(EventPage { events: events.into_iter().map(EventView::from).collect(), next_since }))
}

#[utoipa::path(get, path = "/v1/audit/checkpoints", tag = "audit",
    responses((status = 200, body = CheckpointList)), security(("bearer" = [])))]
pub async fn checkpoints(State(st): State<AppState>, _admin: Admin) -> ApiResult<Json<CheckpointList>> {
    let cps = st.store.list_checkpoints().await?;
    Ok(Json(CheckpointList { checkpoints: cps.into_iter().map(CheckpointView::from).collect() }))
}

#[utoipa::path(get, path = "/v1/audit/key", tag = "audit", responses((status = 200, body = AuditKey)))]
pub async fn key(State(st): State<AppState>) -> Json<AuditKey> {
    let vk = st.audit_key.verifying_key();
    Json(AuditKey { algorithm: "Ed25519".into(), key_id: vk.key_id(), public_key: latch_crypto::hex(&vk.to_bytes()) })
}
