//! What the store's unit tests share: a store on a test clock, and a live
//! grant to hang credentials and recordings on.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use latch_audit::AuditDraft;
use latch_core::{Clock, ManualClock, PrincipalKind, RequestState, Timestamp};
use serde_json::json;

use crate::model::*;
use crate::{JitStore, SqlStore};

/// A SQLite store in a temporary directory, its clock at a fixed time.
pub(crate) fn open() -> (tempfile::TempDir, SqlStore, ManualClock) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let store = SqlStore::open_sqlite(&dir.path().join("t.db"), Arc::new(clock.clone())).unwrap();
    (dir, store, clock)
}

pub(crate) fn ev(action: &str) -> AuditDraft {
    AuditDraft::new("test", action, "t")
}

/// An active grant `id` of one hour for alice.
pub(crate) async fn grant(store: &SqlStore, clock: &ManualClock, id: &str) -> Timestamp {
    let now = clock.now();
    let req = AccessRequest {
        id: format!("req_{id}"),
        requester_id: "usr_alice".into(),
        requester_kind: PrincipalKind::User,
        requester_name: "alice".into(),
        role: "app".into(),
        reason: "r".into(),
        ticket: String::new(),
        duration_ms: 3_600_000,
        state: RequestState::Active,
        breakglass: false,
        approvals_required: 0,
        policy_hash: "h".into(),
        context: json!({}),
        decision: json!({}),
        created_at: now,
        pending_until: now.plus(Duration::from_secs(3600)),
        decided_at: None,
        decided_by: None,
        decision_note: None,
        grant_id: None,
        reviewed_at: None,
        reviewed_by: None,
        review_comment: None,
        approvals: Vec::new(),
    };
    let g = Grant {
        id: id.into(),
        request_id: req.id.clone(),
        principal_id: "usr_alice".into(),
        principal_kind: PrincipalKind::User,
        principal_name: "alice".into(),
        role: "app".into(),
        breakglass: false,
        starts_at: now,
        expires_at: now.plus(Duration::from_secs(3600)),
        state: GrantState::Active,
        ended_at: None,
        revoked_by: None,
        revoke_reason: None,
    };
    let end = g.expires_at;
    store.create_request(req, Some(g), ev("request.create")).await.unwrap();
    end
}
