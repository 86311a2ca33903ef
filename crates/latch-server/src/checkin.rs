//! Check-in: when a grant ends (expiry, revocation, or its holder being
//! disabled or deleted), the secrets of its role listed for rotation get
//! fresh random values, so whatever the holder saw stops working — the
//! CyberArk pattern of check-out, check-in, rotate.
//!
//! Driven by the audit log (grant-ending events after a stored cursor), so a
//! crash or a sealed node delays rotations but never loses one: the cursor
//! moves only past events whose rotations were written.
//!
//! Roles with a `rotation_period` also get their secrets rotated on schedule:
//! a value older than the period is regenerated once no grant of the role is
//! live (never under someone who has it checked out).

use std::time::{Duration, Instant};

use latch_audit::{AuditDraft, AuditEvent};
use latch_policy::SecretsSpec;
use latch_store::{AuditQuery, KvWrite};
use serde_json::{Map, Value};

use crate::barrier::{from_envelope, kv_context, to_envelope};
use crate::error::ApiError;
use crate::state::AppState;

const CURSOR: &str = "secrets-checkin";
const EVERY: Duration = Duration::from_secs(1);
/// Random characters of a rotated value (~190 bits).
const ROTATED_LEN: usize = 32;

pub async fn run(st: AppState) {
    // Where a first run starts: the log's head now, at start-up, before any
    // request can end a grant.
    let start = st.store.audit_head().await.map(|(seq, _)| seq).unwrap_or(0);
    let mut cursor: Option<i64> = None;
    loop {
        tokio::time::sleep(EVERY).await;
        if !st.store.is_leader() || st.barrier.is_sealed() {
            cursor = None;
            continue;
        }
        match round(&st, cursor, start).await {
            Ok(c) => cursor = Some(c),
            Err(e) => tracing::warn!(error = %e, "secrets check-in: rotation failed; retrying"),
        }
        // Cheap when no role has a rotation period: nothing is read then.
        if let Err(e) = scheduled(&st).await {
            tracing::warn!(error = %e, "secrets: scheduled rotation failed; retrying");
        }
    }
}

/// Rotates role-owned secrets older than their role's `rotation_period`
/// while no grant of the role is live.
async fn scheduled(st: &AppState) -> Result<(), ApiError> {
    let policy = st.policy();
    let due: Vec<_> = policy
        .roles()
        .filter_map(|r| r.secrets.as_ref().and_then(|s| s.rotation_period.map(|p| (r.name.clone(), s.clone(), p))))
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    let now = st.clock.now();
    let live = st.store.list_grants(None, Some(now)).await?;
    for (role, spec, period) in due {
        if live.iter().any(|g| g.role == role) {
            continue;
        }
        for (mount, path) in covered_secrets(st, &spec).await? {
            let Some((_, v)) = st.store.kv_version(&mount, &path, None).await? else { continue };
            if now.minus(period) > v.created_at {
                rotate(st, &mount, &path, &spec.rotate_on_end, Cause::Schedule, &role).await?;
            }
        }
    }
    Ok(())
}

/// Why a secret is rotated.
#[derive(Clone, Copy)]
enum Cause<'a> {
    GrantEnded(&'a str),
    Schedule,
}

/// The grants an event ended.
fn ended_grants(ev: &AuditEvent) -> Vec<String> {
    let mut out = Vec::new();
    if (ev.action.starts_with("grant.revoke") || ev.action.starts_with("grant.expire"))
        && let Some(id) = ev.target.strip_prefix("grant:")
    {
        out.push(id.to_string());
    }
    if let Some(ids) = ev.details.get("grants_revoked").and_then(Value::as_array) {
        out.extend(ids.iter().filter_map(Value::as_str).map(str::to_string));
    }
    out
}

async fn round(st: &AppState, cursor: Option<i64>, start: i64) -> Result<i64, ApiError> {
    let mut cursor = match cursor {
        Some(c) => c,
        None => match st.store.cursor(CURSOR).await? {
            // First run: grants that end from start-up on.
            0 => start,
            c => c,
        },
    };
    loop {
        let events = st.store.list_audit(AuditQuery { since: cursor, limit: 500, ..Default::default() }).await?;
        let Some(last) = events.last().map(|e| e.seq) else { return Ok(cursor) };
        for ev in &events {
            for grant in ended_grants(ev) {
                rotate_for_grant(st, &grant).await?;
            }
        }
        cursor = last;
        st.store.set_cursor(CURSOR, cursor).await?;
    }
}

async fn rotate_for_grant(st: &AppState, grant_id: &str) -> Result<(), ApiError> {
    let Some(g) = st.store.get_grant(grant_id).await? else { return Ok(()) };
    let policy = st.policy();
    let Some(spec) = policy.role(&g.role).and_then(|r| r.secrets.clone()) else { return Ok(()) };
    if spec.rotate_on_end.is_empty() {
        return Ok(());
    }
    for (mount, path) in covered_secrets(st, &spec).await? {
        rotate(st, &mount, &path, &spec.rotate_on_end, Cause::GrantEnded(grant_id), &g.role).await?;
    }
    Ok(())
}

/// Every stored secret the role's patterns cover.
async fn covered_secrets(st: &AppState, spec: &SecretsSpec) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for pattern in &spec.paths {
        let Some((mount, rest)) = pattern.split_once('/') else { continue };
        let prefix = rest.split('*').next().unwrap_or("");
        for path in st.store.kv_paths(mount, prefix).await? {
            let item = (mount.to_string(), path);
            if spec.covers(&item.0, &item.1) && !out.contains(&item) {
                out.push(item);
            }
        }
    }
    Ok(out)
}

/// A new version with `fields` set to fresh random values.
async fn rotate(
    st: &AppState,
    mount: &str,
    path: &str,
    fields: &[String],
    cause: Cause<'_>,
    role: &str,
) -> Result<(), ApiError> {
    let ring = st.barrier.keyring(st.store.as_ref(), Instant::now()).await?;
    let Some((meta, v)) = st.store.kv_version(mount, path, None).await? else { return Ok(()) };
    let mut data = match v.envelope.as_ref() {
        Some(env) if !v.destroyed && v.deleted_at.is_none() => {
            let plain = ring.decrypt(&kv_context(mount, path), &to_envelope(env)?)?;
            match serde_json::from_slice::<Value>(&plain) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            }
        }
        _ => Map::new(),
    };
    for f in fields {
        let fresh = latch_crypto::new_token("r")?;
        let value: String = fresh.expose().chars().skip(2).take(ROTATED_LEN).collect();
        data.insert(f.clone(), Value::String(value));
    }
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(&Value::Object(data)).map_err(ApiError::internal)?);
    let env = ring.encrypt(&kv_context(mount, path), &plain)?;
    let audit = AuditDraft::new("system", "secret.rotate", format!("secret:{mount}/{path}"));
    let audit = match cause {
        Cause::GrantEnded(grant) => audit.detail("grant", grant).detail("reason", "grant ended"),
        Cause::Schedule => audit.detail("reason", "rotation period"),
    }
    .detail("role", role)
    .detail("fields", fields.to_vec())
    .detail("value_hmac", ring.hmac(&plain));
    let w = KvWrite {
        mount: mount.into(),
        path: path.into(),
        cas: Some(meta.current_version),
        envelope: from_envelope(&env),
    };
    match st.store.kv_put(w, audit).await {
        Ok(_) => Ok(()),
        // Written meanwhile (by someone else, or a retry that got through): the next
        // round sees the event again only if the cursor did not move, so rotate again.
        Err(latch_store::StoreError::Precondition(_)) => Box::pin(rotate(st, mount, path, fields, cause, role)).await,
        Err(e) => Err(e.into()),
    }
}
