//! Aggregates for `/metrics`: a handful of COUNTs, computed at scrape time.

use latch_core::Timestamp;

use crate::args;
use crate::model::StoreStats;
use crate::sql::{Db, map_rows};
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

impl SqlStore {
    pub(crate) async fn collect_stats(&self, now: Timestamp) -> Result<StoreStats> {
        self.scan(move |db| collect(db, now)).await
    }
}
