//! `RecordingStore`: recorded sessions and their asciicast content, stored
//! as ordered chunks so a gateway can append while the session runs.
//!
//! Starting and ending a session each commit with their audit event; chunk
//! appends are not audited one by one (the end event carries the totals).

use async_trait::async_trait;
use latch_audit::AuditDraft;
use latch_core::{PrincipalKind, Timestamp};

use crate::args;
use crate::model::*;
use crate::sql::{Db, Row, map_opt, map_rows};
use crate::{RecordingAudit, RecordingStore, Result, SqlStore, StoreError};

const COLS: &str = "id, principal_id, principal_kind, principal_name, grant_id, started_by_id, started_by, target, \
                    login, kind, width, height, term, started_at, ended_at, state, next_seq, events, bytes, last_time_us";

fn from_row(r: &Row) -> Result<Recording> {
    let kind = r.get::<String>(2)?;
    Ok(Recording {
        id: r.get(0)?,
        principal_id: r.get(1)?,
        principal_kind: PrincipalKind::parse(&kind)
            .ok_or_else(|| StoreError::Backend(format!("column 2: unknown principal kind {kind:?}")))?,
        principal_name: r.get(3)?,
        grant_id: r.get(4)?,
        started_by_id: r.get(5)?,
        started_by: r.get(6)?,
        target: r.get(7)?,
        login: r.get(8)?,
        kind: r.get(9)?,
        width: r.get(10)?,
        height: r.get(11)?,
        term: r.get(12)?,
        started_at: r.get(13)?,
        ended_at: r.get(14)?,
        state: r.get(15)?,
        next_seq: r.get(16)?,
        events: r.get(17)?,
        bytes: r.get(18)?,
        last_time_us: r.get(19)?,
    })
}

fn load(db: &dyn Db, id: &str) -> Result<Option<Recording>> {
    map_opt(db, &format!("SELECT {COLS} FROM recordings WHERE id = ?1"), args![id], from_row)
}

fn must_load(db: &dyn Db, id: &str) -> Result<Recording> {
    load(db, id)?.ok_or_else(|| StoreError::not_found("recording", id))
}

#[async_trait]
impl RecordingStore for SqlStore {
    async fn start_recording(&self, r: NewRecording, audit: AuditDraft) -> Result<Recording> {
        self.write(move |ctx| {
            let g = map_opt(
                ctx.db(),
                "SELECT state, expires_at, principal_id, principal_kind, principal_name FROM grants WHERE id = ?1",
                args![r.grant_id],
                |row| {
                    Ok((
                        row.get::<String>(0)?,
                        row.get::<Timestamp>(1)?,
                        row.get::<String>(2)?,
                        row.get::<String>(3)?,
                        row.get::<String>(4)?,
                    ))
                },
            )?
            .ok_or_else(|| StoreError::not_found("grant", &r.grant_id))?;
            // Checked in the same transaction as the insert: a revocation
            // committed a moment earlier cannot be missed.
            if g.0 != "active" || ctx.now() >= g.1 {
                return Err(StoreError::Conflict(format!(
                    "grant {} is not active: a session can be recorded only under a live grant",
                    r.grant_id
                )));
            }
            ctx.exec(
                "INSERT INTO recordings (id, principal_id, principal_kind, principal_name, grant_id, started_by_id,
                     started_by, target, login, kind, width, height, term, started_at, ended_at, state, next_seq,
                     events, bytes, last_time_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, NULL, 'active', 0, 0, 0, 0)",
                args![
                    r.id,
                    g.2,
                    g.3,
                    g.4,
                    r.grant_id,
                    r.started_by_id,
                    r.started_by,
                    r.target,
                    r.login,
                    r.kind,
                    r.width,
                    r.height,
                    r.term,
                    ctx.now()
                ],
            )?;
            ctx.audit(audit)?;
            must_load(ctx.db(), &r.id)
        })
        .await
    }

    async fn get_recording(&self, id: &str) -> Result<Option<Recording>> {
        let id = id.to_string();
        self.read(move |c| load(c, &id)).await
    }

    async fn list_recordings(&self, f: RecordingFilter) -> Result<Vec<Recording>> {
        self.scan(move |c| {
            let state = f.active.then_some("active");
            let limit = i64::try_from(f.limit.clamp(1, 10_000)).unwrap_or(10_000);
            map_rows(
                c,
                &format!(
                    "SELECT {COLS} FROM recordings
                     WHERE (CAST(?1 AS TEXT) IS NULL OR principal_id = ?1) AND (CAST(?2 AS TEXT) IS NULL OR state = ?2)
                     ORDER BY started_at DESC, id LIMIT ?3"
                ),
                args![f.principal_id, state, limit],
                from_row,
            )
        })
        .await
    }

    async fn append_recording_chunk(&self, c: RecordingChunk) -> Result<ChunkOutcome> {
        self.write(move |ctx| {
            let rec = must_load(ctx.db(), &c.recording_id)?;
            if c.seq < rec.next_seq {
                let stored = map_opt(
                    ctx.db(),
                    "SELECT digest FROM recording_chunks WHERE recording_id = ?1 AND seq = ?2",
                    args![c.recording_id, c.seq],
                    |r| r.get::<String>(0),
                )?;
                return match stored {
                    Some(d) if d == c.digest => Ok(ChunkOutcome::Duplicate(rec)),
                    _ => Err(StoreError::Conflict(format!(
                        "chunk {} of recording {} was already stored with different content: the next chunk expected is seq {}",
                        c.seq, c.recording_id, rec.next_seq
                    ))),
                };
            }
            if rec.state != "active" {
                return Err(StoreError::Conflict(format!(
                    "recording {} has ended: it takes no more chunks",
                    c.recording_id
                )));
            }
            if c.seq > rec.next_seq {
                return Err(StoreError::Conflict(format!(
                    "chunk seq {} is out of order: expected seq {} (send chunks in order, from 0)",
                    c.seq, rec.next_seq
                )));
            }
            if c.first_time_us < rec.last_time_us {
                return Err(StoreError::Conflict(format!(
                    "chunk {} starts at {:.6} s, before the last stored event ({:.6} s): event times never go back",
                    c.seq,
                    c.first_time_us as f64 / 1e6,
                    rec.last_time_us as f64 / 1e6
                )));
            }
            ctx.exec(
                "INSERT INTO recording_chunks (recording_id, seq, body, digest, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                args![c.recording_id, c.seq, c.body, c.digest, ctx.now()],
            )?;
            ctx.exec(
                "UPDATE recordings SET next_seq = next_seq + 1, events = events + ?2, bytes = bytes + ?3,
                     last_time_us = ?4 WHERE id = ?1",
                args![c.recording_id, c.events, c.bytes, c.last_time_us.max(rec.last_time_us)],
            )?;
            Ok(ChunkOutcome::Appended(must_load(ctx.db(), &c.recording_id)?))
        })
        .await
    }

    async fn end_recording(&self, id: &str, audit: RecordingAudit) -> Result<(Recording, bool)> {
        let id = id.to_string();
        self.write(move |ctx| {
            let rec = must_load(ctx.db(), &id)?;
            if rec.state != "active" {
                return Ok((rec, false));
            }
            ctx.exec("UPDATE recordings SET state = 'ended', ended_at = ?2 WHERE id = ?1", args![id, ctx.now()])?;
            let rec = must_load(ctx.db(), &id)?;
            ctx.audit(audit(&rec))?;
            Ok((rec, true))
        })
        .await
    }

    async fn recording_chunks(&self, id: &str) -> Result<Vec<String>> {
        let id = id.to_string();
        self.scan(move |c| {
            map_rows(c, "SELECT body FROM recording_chunks WHERE recording_id = ?1 ORDER BY seq", args![&id], |r| {
                r.get(0)
            })
        })
        .await
    }
}
