//! Aggregates for `/metrics`: a handful of COUNTs, computed at scrape time;
//! and the facts behind the SLIs of `/v1/slo` over a window.

use std::collections::HashMap;

use latch_core::Timestamp;

use crate::args;
use crate::model::{Activation, BreakglassUse, Revocation, SloData, SloQuery, StoreStats};
use crate::sql::{Db, Value, map_rows};
use crate::{Result, SqlStore};

fn count(db: &dyn Db, sql: &str) -> Result<i64> {
    Ok(db.query_opt(sql, args![])?.map(|r| r.get::<i64>(0)).transpose()?.unwrap_or(0))
}

fn collect(db: &dyn Db, now: Timestamp) -> Result<StoreStats> {
    let grants = map_rows(
        db,
        "SELECT role, CASE WHEN state = 'active' AND expires_at <= ?1 THEN 'expired' ELSE state END AS st, COUNT(*)
           FROM grants GROUP BY role, st ORDER BY role, st",
        args![now],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (pending_requests, oldest_pending) = db
        .query_opt("SELECT COUNT(*), MIN(created_at) FROM access_requests WHERE state = 'pending'", args![])?
        .map(|r| Ok::<_, crate::StoreError>((r.get::<i64>(0)?, r.get::<Option<Timestamp>>(1)?)))
        .transpose()?
        .unwrap_or((0, None));
    Ok(StoreStats {
        grants,
        pending_requests,
        oldest_pending,
        breakglass_total: count(db, "SELECT COUNT(*) FROM access_requests WHERE breakglass")?,
        breakglass_unreviewed: count(
            db,
            "SELECT COUNT(*) FROM access_requests WHERE breakglass AND state <> 'denied' AND reviewed_at IS NULL",
        )?,
        tokens_issued: count(db, "SELECT COUNT(*) FROM tokens")?,
        tokens_revoked: count(db, "SELECT COUNT(*) FROM tokens WHERE revoked_at IS NOT NULL")?,
        ssh_certs_issued: count(db, "SELECT COUNT(*) FROM ssh_certs")?,
        ssh_certs_revoked: count(db, "SELECT COUNT(*) FROM ssh_certs WHERE revoked_at IS NOT NULL")?,
        active_recordings: count(db, "SELECT COUNT(*) FROM recordings WHERE state = 'active'")?,
        audit_head_seq: count(db, "SELECT COALESCE(MAX(seq), 0) FROM audit_events")?,
    })
}

/// Most revocations and activations one report reads (the newest are dropped past it).
const MAX_ROWS: i64 = 100_000;

fn count_in(db: &dyn Db, sql: &str, args: &[Value]) -> Result<i64> {
    Ok(db.query_opt(sql, args)?.map(|r| r.get::<i64>(0)).transpose()?.unwrap_or(0))
}

/// A field of an audit event's JSON details.
fn detail(details: &str, key: &str) -> Option<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_str(details).ok()?;
    Some(v.get_mut(key)?.take())
}

fn detail_str(details: &str, key: &str) -> Option<String> {
    match detail(details, key)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    }
}

/// Successful audit events of one action at or after `from`: (time, target, details).
fn events(
    db: &dyn Db,
    action: &str,
    from: Timestamp,
    to: Option<Timestamp>,
) -> Result<Vec<(Timestamp, String, String)>> {
    map_rows(
        db,
        "SELECT time, target, details FROM audit_events
          WHERE action = ?1 AND outcome = 'success' AND time >= ?2 AND (CAST(?3 AS BIGINT) IS NULL OR time <= ?3)
          ORDER BY seq LIMIT ?4",
        args![action, from, to, MAX_ROWS],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}

fn collect_slo(db: &dyn Db, q: &SloQuery) -> Result<SloData> {
    let (from, to) = (q.from, q.to);

    // M1: grants used for SSH in the window, and whether any session under them was recorded.
    // The gateway's own per-login certificates (key id `gateway=…`) are not a use by the holder.
    let ssh_grants = map_rows(
        db,
        "SELECT u.grant_id, CASE WHEN EXISTS (SELECT 1 FROM recordings r WHERE r.grant_id = u.grant_id)
                                 THEN 1 ELSE 0 END
           FROM (SELECT grant_id FROM ssh_certs
                  WHERE issued_at >= ?1 AND issued_at <= ?2 AND key_id NOT LIKE 'gateway=%'
                 UNION
                 SELECT grant_id FROM recordings WHERE started_at >= ?1 AND started_at <= ?2) u
          ORDER BY u.grant_id",
        args![from, to],
        |r| Ok((r.get::<String>(0)?, r.get::<bool>(1)?)),
    )?;
    let sessions_recorded =
        count_in(db, "SELECT COUNT(*) FROM recordings WHERE started_at >= ?1 AND started_at <= ?2", args![from, to])?;

    // M2: a human approval's grant starts in the approving transaction; an
    // automatic or break-glass one is stamped with the request's own time, so
    // its activation is the commit of the event that created it.
    let mut activations = map_rows(
        db,
        "SELECT r.id, r.created_at, g.starts_at, r.breakglass, r.approvals_required
           FROM grants g JOIN access_requests r ON r.id = g.request_id
          WHERE g.starts_at >= ?1 AND g.starts_at <= ?2 ORDER BY g.starts_at, r.id LIMIT ?3",
        args![from, to, MAX_ROWS],
        |r| {
            Ok(Activation {
                request_id: r.get(0)?,
                created_at: r.get(1)?,
                activated_at: r.get(2)?,
                breakglass: r.get(3)?,
                approvals_required: r.get(4)?,
            })
        },
    )?;
    if activations.iter().any(|a| a.breakglass || a.approvals_required == 0) {
        let mut committed: HashMap<String, Timestamp> = HashMap::new();
        for action in ["request.create", "breakglass.activate"] {
            for (time, _, details) in events(db, action, from, None)? {
                if let Some(id) = detail_str(&details, "request_id") {
                    committed.insert(id, time);
                }
            }
        }
        for a in activations.iter_mut().filter(|a| a.breakglass || a.approvals_required == 0) {
            if let Some(t) = committed.get(&a.request_id) {
                a.activated_at = a.activated_at.max(*t);
            }
        }
    }

    // M3: credentials issued under grants, and what standing administrators did
    // (latch's own bootstrap, actor `system`, is no one's standing privilege).
    let tokens_issued =
        count_in(db, "SELECT COUNT(*) FROM tokens WHERE issued_at >= ?1 AND issued_at <= ?2", args![from, to])?;
    let ssh_certs_issued =
        count_in(db, "SELECT COUNT(*) FROM ssh_certs WHERE issued_at >= ?1 AND issued_at <= ?2", args![from, to])?;
    let mut standing_ops = Vec::new();
    for action in &q.standing_actions {
        let n = count_in(
            db,
            "SELECT COUNT(*) FROM audit_events
              WHERE action = ?1 AND outcome = 'success' AND actor <> 'system' AND time >= ?2 AND time <= ?3",
            args![action, from, to],
        )?;
        if n > 0 {
            standing_ops.push((action.clone(), n));
        }
    }

    // M4: long-lived credentials, as they stand at the end of the window.
    let stale_sp_secrets = map_rows(
        db,
        "SELECT name, secret_rotated_at, secret_expires_at FROM service_principals
          WHERE disabled = FALSE AND (secret_rotated_at < ?1 OR secret_expires_at <= ?2)
          ORDER BY secret_rotated_at, name",
        args![q.secret_rotated_before, q.to],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let ca_keys = map_rows(
        db,
        "SELECT name, created_at FROM ca_keys WHERE name NOT IN (SELECT id FROM issuer_keys)
              UNION ALL SELECT id, created_at FROM issuer_keys WHERE kind = 'ssh-user-ca' ORDER BY 1",
        args![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let static_secrets = map_rows(
        db,
        "SELECT s.mount, s.path, v.created_at FROM kv_secrets s
           JOIN kv_versions v ON v.mount = s.mount AND v.path = s.path AND v.version = s.current_version
          WHERE v.destroyed = FALSE AND v.deleted_at IS NULL
          ORDER BY v.created_at, s.mount, s.path",
        args![],
        |r| Ok((format!("{}/{}", r.get::<String>(0)?, r.get::<String>(1)?), r.get(2)?)),
    )?;
    let mut token_key_rotations: Vec<(Timestamp, String)> = events(db, "key.rotate", Timestamp(0), None)?
        .into_iter()
        .filter_map(|(t, _, details)| detail_str(&details, "active_kid").map(|kid| (t, kid)))
        .collect();
    token_key_rotations.reverse();
    let first_event = db
        .query_opt("SELECT time FROM audit_events ORDER BY seq LIMIT 1", args![])?
        .map(|r| r.get::<Timestamp>(0))
        .transpose()?;
    let long_lived_tokens = count_in(
        db,
        "SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL AND expires_at > ?1 AND expires_at - issued_at > ?2",
        args![to, q.long_lived_ms],
    )?;
    // valid_before is in Unix seconds (valid_after is backdated for clock skew: measure from issuance).
    let long_lived_ssh_certs = count_in(
        db,
        "SELECT COUNT(*) FROM ssh_certs
          WHERE revoked_at IS NULL AND valid_before > ?1 AND valid_before * 1000 - issued_at > ?2",
        args![to.secs(), q.long_lived_ms],
    )?;

    // M5: break-glass activations.
    let breakglass = map_rows(
        db,
        "SELECT id, requester_kind, requester_name, role, created_at, reviewed_at FROM access_requests
          WHERE breakglass AND created_at >= ?1 AND created_at <= ?2 ORDER BY created_at, id LIMIT ?3",
        args![from, to, MAX_ROWS],
        |r| {
            Ok(BreakglassUse {
                request_id: r.get(0)?,
                requester: format!("{}:{}", r.get::<String>(1)?, r.get::<String>(2)?),
                role: r.get(3)?,
                at: r.get(4)?,
                reviewed: r.get::<Option<i64>>(5)?.is_some(),
            })
        },
    )?;

    // M6: each revocation, from its request to the end of everything it ended.
    let mut revocations = Vec::new();
    for (committed_at, target, details) in events(db, "grant.revoke", from, Some(to))? {
        let Some(grant_id) = target.strip_prefix("grant:").map(str::to_string) else { continue };
        let requested_at = detail(&details, "requested_at").and_then(|v| v.as_i64()).map_or(committed_at, Timestamp);
        let credentials_revoked_at = db
            .query_opt(
                "SELECT (SELECT MAX(revoked_at) FROM tokens WHERE grant_id = ?1),
                        (SELECT MAX(revoked_at) FROM ssh_certs WHERE grant_id = ?1)",
                args![grant_id],
            )?
            .map(|r| Ok::<_, crate::StoreError>(r.get::<Option<Timestamp>>(0)?.max(r.get::<Option<Timestamp>>(1)?)))
            .transpose()?
            .flatten();
        let sessions: Vec<Option<Timestamp>> = map_rows(
            db,
            "SELECT ended_at FROM recordings
              WHERE grant_id = ?1 AND started_at <= ?2 AND (ended_at IS NULL OR ended_at >= ?2)",
            args![grant_id, committed_at],
            |r| r.get(0),
        )?;
        revocations.push(Revocation {
            grant_id,
            requested_at: requested_at.min(committed_at),
            committed_at,
            credentials_revoked_at,
            sessions_ended_at: sessions.iter().flatten().max().copied(),
            sessions_open: i64::try_from(sessions.iter().filter(|e| e.is_none()).count()).unwrap_or(i64::MAX),
        });
    }

    Ok(SloData {
        ssh_grants,
        sessions_recorded,
        activations,
        tokens_issued,
        ssh_certs_issued,
        standing_ops,
        stale_sp_secrets,
        ca_keys,
        static_secrets,
        token_key_rotations,
        first_event,
        long_lived_tokens,
        long_lived_ssh_certs,
        breakglass,
        revocations,
    })
}

impl SqlStore {
    pub(crate) async fn collect_stats(&self, now: Timestamp) -> Result<StoreStats> {
        self.scan(move |db| collect(db, now)).await
    }

    pub(crate) async fn collect_slo(&self, q: SloQuery) -> Result<SloData> {
        self.scan(move |db| collect_slo(db, &q)).await
    }
}
