//! Background work: expiry sweeper, webhook notifications, token-key pruning.
//!
//! None of these is on a request path. The sweeper makes expiry happen even
//! when nobody calls the API (verification paths also check `expires_at`
//! themselves, so a lagging sweeper never extends access). Notifications are
//! read from the audit log with a persisted cursor — the log is the outbox —
//! so a change and its notification cannot diverge and restarts lose nothing.
//!
//! With several nodes on one PostgreSQL database, only the node that holds
//! the store's leadership lock does this work ([`latch_store::Store::is_leader`]);
//! another node takes over within a second of the leader's death, and
//! picks the notification cursor up from the database.

use std::sync::Arc;
use std::time::Duration;

use latch_audit::{AuditDraft, AuditEvent, Outcome};
use latch_store::AuditQuery;
use serde_json::{Value, json};

use crate::state::AppState;

/// How often the sweeper looks for due expiries and timeouts (wall time).
pub const SWEEP_EVERY: Duration = Duration::from_millis(500);

pub async fn sweeper(st: AppState) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    loop {
        tick.tick().await;
        if !st.store.is_leader() {
            continue;
        }
        ticks += 1;
        if ticks % 120 == 1 {
            prune_login_failures(&st).await;
            prune_exchanged_tokens(&st).await;
        }
        let expire = Box::new(|g: &latch_store::Grant| {
            AuditDraft::new("system", "grant.expire", format!("grant:{}", g.id)).details(json!({
                "role": g.role, "principal": format!("{}:{}", g.principal_kind.as_str(), g.principal_name),
                "request_id": g.request_id, "breakglass": g.breakglass,
            }))
        });
        let timeout = Box::new(|r: &latch_store::AccessRequest| {
            AuditDraft::new("system", "request.timeout", format!("request:{}", r.id)).details(json!({
                "role": r.role, "requester": r.requester_name, "approvals": r.approvals.len(), "required": r.approvals_required,
            }))
        });
        match st.store.sweep(st.clock.now(), expire, timeout).await {
            Ok(s) if !s.expired.is_empty() || !s.timed_out.is_empty() => {
                tracing::info!(expired = s.expired.len(), timed_out = s.timed_out.len(), "sweeper");
                // Expired grants may have database roles to drop.
                st.db.wake_revoker();
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "sweeper failed"),
        }
        expire_db_leases(&st).await;
    }
}

/// Database leases shorter than their grant end on their own.
async fn expire_db_leases(st: &AppState) {
    let audit = Box::new(|c: &latch_store::DbCredential| {
        AuditDraft::new("system", "db.lease.expire", format!("lease:{}", c.lease_id)).details(json!({
            "lease_id": c.lease_id, "grant_id": c.grant_id, "username": c.username, "connection": c.connection,
        }))
    });
    match st.store.expire_db_credentials(st.clock.now(), audit).await {
        Ok(l) if !l.is_empty() => st.db.wake_revoker(),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot expire database leases"),
    }
}

/// Forgets failed logins that no throttling window can still count.
async fn prune_login_failures(st: &AppState) {
    let keep = st.auth.per_identity.window.max(st.auth.per_source.window);
    let before = st.clock.now().minus(keep);
    if let Err(e) = st.store.prune_login_failures(before).await {
        tracing::warn!(error = %e, "cannot prune failed-login records");
    }
}

/// Forgets exchanged tokens that have expired: they can no longer be
/// presented, so there is nothing left to refuse a replay of.
async fn prune_exchanged_tokens(st: &AppState) {
    if let Err(e) = st.store.prune_exchanged_tokens(st.clock.now()).await {
        tracing::warn!(error = %e, "cannot prune exchanged-token records");
    }
}

/// Audit actions that are sent to the webhook.
pub const NOTIFY_ACTIONS: &[&str] = &[
    "request.create",
    "request.approve",
    "request.deny",
    "request.timeout",
    "breakglass.activate",
    "breakglass.review",
    crate::alerts::ACTION,
];

const CURSOR: &str = "webhook";

/// The JSON a webhook receives: the event, a human-readable `text` for
/// Slack-style receivers, and the chain position for de-duplication.
pub fn notification(ev: &AuditEvent) -> Value {
    let d = &ev.details;
    let role =
        d["role"].as_str().map(str::to_string).unwrap_or_else(|| ev.target.trim_start_matches("role:").to_string());
    let text = match ev.action.as_str() {
        "request.create" => format!(
            "{} requested role {} for {} ({}): {}",
            ev.actor,
            role,
            d["duration"].as_str().unwrap_or("?"),
            d["decision"].as_str().unwrap_or("?"),
            d["reason"].as_str().unwrap_or("")
        ),
        "request.approve" if ev.outcome == Outcome::Denied => {
            format!("{} was refused approving {}: {}", ev.actor, ev.target, d["message"].as_str().unwrap_or(""))
        }
        "request.approve" => format!("{} approved {} ({} of {})", ev.actor, ev.target, d["approvals"], d["required"]),
        "request.deny" => format!("{} denied {}: {}", ev.actor, ev.target, d["reason"].as_str().unwrap_or("")),
        "request.timeout" => format!("{} for role {} timed out waiting for approval", ev.target, role),
        "breakglass.activate" if ev.outcome == Outcome::Denied => format!(
            "BREAK-GLASS REFUSED: {} tried to take role {}: {}",
            ev.actor,
            role,
            d["message"].as_str().unwrap_or("")
        ),
        "breakglass.activate" => format!(
            "BREAK-GLASS: {} took role {} for {}: {}",
            ev.actor,
            role,
            d["duration"].as_str().unwrap_or("?"),
            d["reason"].as_str().unwrap_or("")
        ),
        "breakglass.review" => {
            format!("{} reviewed break-glass {}: {}", ev.actor, ev.target, d["comment"].as_str().unwrap_or(""))
        }
        "alert.raise" => format!(
            "ALERT {} ({}): {}",
            d["rule"].as_str().unwrap_or("?"),
            d["severity"].as_str().unwrap_or("?"),
            d["message"].as_str().unwrap_or("")
        ),
        other => format!("{other} by {} on {}", ev.actor, ev.target),
    };
    json!({
        "event": ev.action, "text": text, "seq": ev.seq, "hash": ev.hash, "time": ev.time.to_rfc3339(),
        "actor": ev.actor, "target": ev.target, "outcome": ev.outcome, "request_id": ev.request_id, "details": ev.details,
        "breakglass": ev.action.starts_with("breakglass."),
    })
}

/// Delivers notifications in order, at least once, retrying with backoff
/// (1 s doubling to 60 s). Failures are counted and shown at /v1/sys/notifications.
pub async fn notifier(st: AppState, url: String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(true)
        .build()
        .into();
    let agent = Arc::new(agent);
    st.notify_status().configured = true;
    let mut backoff = Duration::from_secs(1);
    // Read from the database whenever this node (again) becomes the leader.
    let mut held: Option<i64> = None;
    loop {
        if !st.store.is_leader() {
            held = None;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let mut cursor = match held {
            Some(c) => c,
            None => match load_cursor(&st).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "notifier cannot read its cursor");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            },
        };
        let page = st.store.list_audit(AuditQuery { since: cursor, limit: 100, ..Default::default() }).await;
        let events = match page {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "notifier cannot read the audit log");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        if events.is_empty() {
            held = Some(cursor);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        for ev in events {
            if NOTIFY_ACTIONS.contains(&ev.action.as_str()) {
                loop {
                    let body = notification(&ev);
                    let (agent, url2) = (agent.clone(), url.clone());
                    let sent =
                        tokio::task::spawn_blocking(move || agent.post(&url2).send_json(&body).map(|_| ())).await;
                    match sent {
                        Ok(Ok(())) => {
                            let mut s = st.notify_status();
                            s.delivered += 1;
                            s.consecutive_failures = 0;
                            backoff = Duration::from_secs(1);
                            break;
                        }
                        Ok(Err(e)) => record_failure(&st, e.to_string()),
                        Err(e) => record_failure(&st, e.to_string()),
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
            cursor = ev.seq;
            st.notify_status().cursor = cursor;
            if let Err(e) = st.store.set_cursor(CURSOR, cursor).await {
                tracing::error!(error = %e, "notifier cannot save its cursor");
            }
        }
        held = Some(cursor);
    }
}

/// The persisted cursor; a newly configured webhook starts at the present, not at history.
async fn load_cursor(st: &AppState) -> Result<i64, latch_store::StoreError> {
    let mut cursor = st.store.cursor(CURSOR).await?;
    if cursor == 0 {
        cursor = st.store.audit_head().await?.0;
    }
    st.notify_status().cursor = cursor;
    Ok(cursor)
}

fn record_failure(st: &AppState, err: String) {
    tracing::warn!(error = %err, "webhook delivery failed; will retry");
    let mut s = st.notify_status();
    s.failures += 1;
    s.consecutive_failures += 1;
    s.last_error = Some(err);
}

/// Brings this node's policy up to the active version in the store, if
/// another node applied a newer one; returns the policy in force.
pub async fn refresh_policy(st: &AppState) -> Result<Arc<latch_policy::Bundle>, crate::error::ApiError> {
    let current = st.policy();
    let Some(v) = st.store.active_policy().await? else { return Ok(current) };
    if v.hash == current.hash() {
        return Ok(current);
    }
    let next = Arc::new(
        latch_policy::Bundle::from_files(&v.files)
            .map_err(|e| crate::error::ApiError::internal(format!("stored policy {} does not load: {e}", v.hash)))?,
    );
    tracing::info!(hash = %v.hash, previous = %current.hash(), "policy version changed on another node: reloaded");
    st.set_policy(next.clone());
    Ok(next)
}

/// Follows policy applies made on other nodes: at once when the store's
/// invalidation epoch moves (a NOTIFY), and every few seconds regardless.
pub async fn follow_policy(st: AppState) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut seen, mut since_check) = (st.store.invalidation_epoch(), 0u32);
    loop {
        tick.tick().await;
        let epoch = st.store.invalidation_epoch();
        since_check += 1;
        if epoch == seen && since_check < 100 {
            continue;
        }
        since_check = 0;
        match refresh_policy(&st).await {
            Ok(_) => seen = epoch,
            Err(e) => tracing::warn!(error = %e, "cannot refresh the policy from the store"),
        }
    }
}

/// Drops retired token keys once no token they signed is still unexpired
/// (on the leader; every node then follows the change).
pub async fn prune_token_keys(st: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if !st.store.is_leader() {
            continue;
        }
        let now = st.clock.now();
        let mut pruned = false;
        for k in st.issuers().retired() {
            let kid = k.key.key_id();
            if st.store.key_in_use(&kid, now).await.unwrap_or(true) {
                continue;
            }
            let ev = AuditDraft::new("system", "key.prune", format!("key:{}", k.id))
                .detail("reason", "no unexpired token was signed by it");
            match st.store.delete_retired_issuer_key(&k.id, ev).await {
                Ok(deleted) => pruned |= deleted,
                Err(e) => tracing::warn!(error = %e, "cannot prune a retired token key"),
            }
        }
        if pruned && let Err(e) = st.reload_issuers().await {
            tracing::warn!(error = %e, "cannot reload the issuer keys");
        }
    }
}

/// Keeps this node's issuer keys in step with the store and its seal: a
/// rotation or prune on another node, or this node being unsealed or sealed
/// through any path, shows here within a second.
pub async fn follow_issuer_keys(st: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Err(e) = st.issuer_keys.follow(&st.store, &st.barrier, &st.data_dir).await {
            tracing::warn!(error = %e, "cannot follow the issuer keys");
        }
    }
}
