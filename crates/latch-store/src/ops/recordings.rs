//! `RecordingStore`: recorded sessions and their asciicast content, stored
//! as ordered chunks so a gateway can append while the session runs.
//!
//! Starting and ending a session each commit with their audit event; chunk
//! appends are not audited one by one (the end event carries the totals).
//! On SQLite a chunk's lines go to the recording's file and its row names
//! their range (see [`crate::chunk_files`]); on PostgreSQL they are in the row.

use async_trait::async_trait;
use latch_audit::AuditDraft;
use latch_core::{PrincipalKind, Timestamp};

use crate::args;
use crate::chunk_files::ChunkFiles;
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

const CHUNK_COLS: &str = "body, file_offset, file_len";

/// A stored chunk's lines, from its row or from the recording's file.
fn chunk_text(files: Option<&ChunkFiles>, id: &str, r: &Row) -> Result<String> {
    if let Some(body) = r.get::<Option<String>>(0)? {
        return Ok(body);
    }
    let (offset, len) = (r.get::<i64>(1)?, r.get::<i64>(2)?);
    let files = files.ok_or_else(|| {
        StoreError::Backend(format!("recording {id}: a chunk is in a file, and this store keeps no files"))
    })?;
    let range = u64::try_from(offset).ok().zip(u64::try_from(len).ok());
    let (offset, len) =
        range.ok_or_else(|| StoreError::Backend(format!("recording {id}: a chunk's range is negative")))?;
    files.read_at(id, offset, len)
}

/// Where the next chunk goes in the recording's file: after the last one there.
fn file_end(db: &dyn Db, id: &str) -> Result<u64> {
    let end = map_opt(
        db,
        "SELECT file_offset + file_len FROM recording_chunks
         WHERE recording_id = ?1 AND file_offset IS NOT NULL ORDER BY seq DESC LIMIT 1",
        args![id],
        |r| r.get::<i64>(0),
    )?;
    u64::try_from(end.unwrap_or(0))
        .map_err(|_| StoreError::Backend(format!("recording {id}: a chunk's range is negative")))
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
        let files = self.chunk_files.clone();
        self.write(move |ctx| {
            let rec = must_load(ctx.db(), &c.recording_id)?;
            if c.seq < rec.next_seq {
                let stored = map_opt(
                    ctx.db(),
                    &format!("SELECT {CHUNK_COLS} FROM recording_chunks WHERE recording_id = ?1 AND seq = ?2"),
                    args![c.recording_id, c.seq],
                    |r| chunk_text(files.as_deref(), &c.recording_id, r),
                )?;
                return match stored {
                    Some(body) if body == c.body => Ok(ChunkOutcome::Duplicate(rec)),
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
            match files.as_deref() {
                Some(files) => {
                    let offset = file_end(ctx.db(), &c.recording_id)?;
                    // Synced before the row naming it commits: see crate::chunk_files.
                    files.write_at(&c.recording_id, offset, c.body.as_bytes())?;
                    let len = i64::try_from(c.body.len()).unwrap_or(i64::MAX);
                    ctx.exec(
                        "INSERT INTO recording_chunks (recording_id, seq, body, file_offset, file_len, created_at)
                         VALUES (?1, ?2, NULL, ?3, ?4, ?5)",
                        args![c.recording_id, c.seq, i64::try_from(offset).unwrap_or(i64::MAX), len, ctx.now()],
                    )?;
                }
                None => {
                    ctx.exec(
                        "INSERT INTO recording_chunks (recording_id, seq, body, created_at) VALUES (?1, ?2, ?3, ?4)",
                        args![c.recording_id, c.seq, c.body, ctx.now()],
                    )?;
                }
            }
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
        let files = self.chunk_files.clone();
        self.scan(move |c| {
            map_rows(
                c,
                &format!("SELECT {CHUNK_COLS} FROM recording_chunks WHERE recording_id = ?1 ORDER BY seq"),
                args![&id],
                |r| chunk_text(files.as_deref(), &id, r),
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::io::Write;
    use std::path::{Path, PathBuf};

    use latch_core::ManualClock;

    use super::*;
    use crate::ops::test_support::{ev, grant, open};

    async fn start(store: &SqlStore, clock: &ManualClock) {
        grant(store, clock, "g1").await;
        let r = NewRecording {
            id: "rec_a".into(),
            grant_id: "g1".into(),
            started_by_id: "usr_alice".into(),
            started_by: "user:alice".into(),
            target: "db1".into(),
            login: "ops".into(),
            kind: "shell".into(),
            width: 80,
            height: 24,
            term: "xterm".into(),
        };
        store.start_recording(r, ev("recording.start")).await.unwrap();
    }

    fn lines(seq: i64, text: &str) -> String {
        (0..3).map(|i| format!("[{seq}.{i}, \"o\", \"{text} {i}\\r\\n\"]\n")).collect()
    }

    fn chunk(seq: i64, body: String) -> RecordingChunk {
        RecordingChunk {
            recording_id: "rec_a".into(),
            seq,
            bytes: 3,
            body,
            events: 3,
            first_time_us: seq * 1_000_000,
            last_time_us: seq * 1_000_000 + 200_000,
        }
    }

    fn file(dir: &Path) -> PathBuf {
        dir.join("t.db-recordings/rec_a.events")
    }

    /// `(body in the row, file_offset, file_len)` of every chunk of rec_a.
    async fn rows(store: &SqlStore) -> Vec<(bool, Option<i64>, Option<i64>)> {
        store
            .scan(|db| {
                map_rows(
                    db,
                    "SELECT body IS NOT NULL, file_offset, file_len FROM recording_chunks
                     WHERE recording_id = 'rec_a' ORDER BY seq",
                    args![],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn chunks_are_written_once_to_the_recordings_file_and_read_back_in_order() {
        let (dir, store, clock) = open();
        start(&store, &clock).await;
        let bodies: Vec<String> = (0..3).map(|seq| lines(seq, &format!("chunk {seq}"))).collect();
        for (seq, b) in bodies.iter().enumerate() {
            let out = store.append_recording_chunk(chunk(seq as i64, b.clone())).await.unwrap();
            assert!(matches!(out, ChunkOutcome::Appended(r) if r.next_seq == seq as i64 + 1));
        }
        assert_eq!(std::fs::read_to_string(file(dir.path())).unwrap(), bodies.concat());
        let len = bodies[0].len() as i64;
        assert_eq!(
            rows(&store).await,
            vec![(false, Some(0), Some(len)), (false, Some(len), Some(len)), (false, Some(2 * len), Some(len))]
        );
        assert_eq!(store.recording_chunks("rec_a").await.unwrap(), bodies);

        // A retry of a stored chunk is told apart by its bytes.
        let again = store.append_recording_chunk(chunk(1, bodies[1].clone())).await.unwrap();
        assert!(matches!(again, ChunkOutcome::Duplicate(r) if r.next_seq == 3));
        let other = store.append_recording_chunk(chunk(1, lines(1, "something else"))).await.unwrap_err();
        assert!(other.to_string().contains("already stored with different content"), "{other}");
        let gap = store.append_recording_chunk(chunk(5, lines(5, "skipped ahead"))).await.unwrap_err();
        assert!(gap.to_string().contains("out of order"), "{gap}");
        let mut back = chunk(3, lines(3, "back in time"));
        back.first_time_us = 0;
        let back = store.append_recording_chunk(back).await.unwrap_err();
        assert!(back.to_string().contains("never go back"), "{back}");
        assert_eq!(
            std::fs::read_to_string(file(dir.path())).unwrap(),
            bodies.concat(),
            "a refused chunk wrote nothing"
        );
        assert_eq!(store.recording_chunks("rec_a").await.unwrap(), bodies);
    }

    #[tokio::test]
    async fn bytes_a_lost_commit_left_in_the_file_are_written_over_and_never_read() {
        let (dir, store, clock) = open();
        start(&store, &clock).await;
        let first = lines(0, "kept");
        store.append_recording_chunk(chunk(0, first.clone())).await.unwrap();
        // A crash after the write and before the commit leaves bytes past the
        // end that rows name (longer than the chunk that follows).
        let mut f = std::fs::OpenOptions::new().append(true).open(file(dir.path())).unwrap();
        f.write_all(lines(1, "lost with its commit, and much longer than the retry").as_bytes()).unwrap();
        assert_eq!(store.recording_chunks("rec_a").await.unwrap(), vec![first.clone()], "unnamed bytes are not read");
        let second = lines(1, "retry");
        store.append_recording_chunk(chunk(1, second.clone())).await.unwrap();
        assert_eq!(store.recording_chunks("rec_a").await.unwrap(), vec![first.clone(), second.clone()]);
        let on_disk = std::fs::read_to_string(file(dir.path())).unwrap();
        assert!(on_disk.starts_with(&(first + &second)), "{on_disk}");
    }

    #[tokio::test]
    async fn a_database_from_before_the_files_keeps_its_chunks_and_adds_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let old_body = lines(0, "from v13");
        {
            // A v13 database holding a recording with one chunk in its row.
            let conn = rusqlite::Connection::open(&path).unwrap();
            // The recording's grant is left out: what is tested is its chunk.
            conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
            conn.execute_batch(crate::migrations::BOOKKEEPING).unwrap();
            for m in crate::migrations::MIGRATIONS.iter().filter(|m| m.version <= 13) {
                conn.execute_batch(m.sql).unwrap();
                conn.execute("INSERT INTO schema_migrations VALUES (?1, ?2, 0)", rusqlite::params![m.version, m.name])
                    .unwrap();
            }
            conn.execute(
                "INSERT INTO recordings VALUES ('rec_a', 'usr_alice', 'user', 'alice', 'g1', 'usr_alice', 'user:alice',
                     'db1', 'ops', 'shell', 80, 24, 'xterm', 0, NULL, 'active', 1, 3, 3, 200000)",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO recording_chunks VALUES ('rec_a', 0, ?1, 'digest', 0)",
                rusqlite::params![old_body],
            )
            .unwrap();
        }
        let clock = ManualClock::new(Timestamp(1_800_000_000_000));
        let store = SqlStore::open_sqlite(&path, std::sync::Arc::new(clock)).unwrap();
        assert_eq!(store.recording_chunks("rec_a").await.unwrap(), vec![old_body.clone()]);
        let again = store.append_recording_chunk(chunk(0, old_body.clone())).await.unwrap();
        assert!(matches!(again, ChunkOutcome::Duplicate(_)), "a retry of a chunk in its row");
        let new_body = lines(1, "after the upgrade");
        store.append_recording_chunk(chunk(1, new_body.clone())).await.unwrap();
        assert_eq!(store.recording_chunks("rec_a").await.unwrap(), vec![old_body, new_body.clone()]);
        assert_eq!(rows(&store).await, vec![(true, None, None), (false, Some(0), Some(new_body.len() as i64))]);
        assert_eq!(std::fs::read_to_string(file(dir.path())).unwrap(), new_body);
    }
}
