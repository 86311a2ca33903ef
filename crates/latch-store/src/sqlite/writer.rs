//! The single writer thread and its group commit.

use std::sync::Arc;
use std::sync::mpsc::Receiver;

use latch_audit::{AuditDraft, AuditEvent, GENESIS_HASH};
use latch_core::{Clock, Timestamp};
use rusqlite::Connection;

use super::{backend, load_head};
use crate::{Result, StoreError};

/// Most closures folded into one transaction. Bounds commit latency under load.
const MAX_BATCH: usize = 512;

#[derive(Clone, Debug)]
pub(crate) struct Head {
    pub seq: i64,
    pub hash: String,
}

impl Head {
    pub fn genesis() -> Self {
        Head { seq: 0, hash: GENESIS_HASH.to_string() }
    }
}

/// What a write closure sees: the open transaction, the time, and the
/// audit chain head, so that it can append events in its own transaction.
pub struct WriteCtx<'a> {
    conn: &'a Connection,
    head: &'a mut Head,
    now: Timestamp,
}

impl WriteCtx<'_> {
    pub fn conn(&self) -> &Connection {
        self.conn
    }
    pub fn now(&self) -> Timestamp {
        self.now
    }
    /// Runs one statement through the connection's statement cache.
    pub fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql)?.execute(params)
    }
    pub fn head(&self) -> (i64, &str) {
        (self.head.seq, &self.head.hash)
    }
    /// Appends `draft` as the next event of the chain, in this transaction.
    pub fn audit(&mut self, draft: AuditDraft) -> Result<AuditEvent> {
        let ev = draft.seal(self.head.seq + 1, self.now, &self.head.hash);
        self.exec(
            "INSERT INTO audit_events (seq, time, actor, action, target, outcome, request_id, source, details, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            rusqlite::params![
                ev.seq,
                ev.time.millis(),
                ev.actor,
                ev.action,
                ev.target,
                ev.outcome.as_str(),
                ev.request_id,
                ev.source,
                latch_audit::canonical::canonical_json(&ev.details),
                ev.hash,
            ],
        )
        .map_err(backend)?;
        self.head.seq = ev.seq;
        self.head.hash = ev.hash.clone();
        Ok(ev)
    }
}

pub(crate) trait Job: Send {
    fn run(&mut self, ctx: &mut WriteCtx<'_>) -> bool;
    fn complete(self: Box<Self>, commit: Result<(), String>);
}

pub(crate) struct TypedJob<T, F> {
    f: Option<F>,
    result: Option<Result<T>>,
    reply: tokio::sync::oneshot::Sender<Result<T>>,
}

impl<T, F> TypedJob<T, F> {
    pub fn new(f: F, reply: tokio::sync::oneshot::Sender<Result<T>>) -> Self {
        TypedJob { f: Some(f), result: None, reply }
    }
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&mut WriteCtx<'_>) -> Result<T> + Send,
{
    fn run(&mut self, ctx: &mut WriteCtx<'_>) -> bool {
        let out = match self.f.take() {
            Some(f) => f(ctx),
            None => Err(StoreError::Backend("write job ran twice".into())),
        };
        let ok = out.is_ok();
        self.result = Some(out);
        ok
    }

    fn complete(self: Box<Self>, commit: Result<(), String>) {
        let out = match (commit, self.result) {
            // A job that failed was rolled back alone; its own error stands.
            (_, Some(Err(e))) => Err(e),
            (Err(msg), _) => Err(StoreError::Backend(format!("commit failed: {msg}"))),
            (Ok(()), Some(Ok(v))) => Ok(v),
            (Ok(()), None) => Err(StoreError::Backend("write job never ran".into())),
        };
        // The caller may have gone away (request cancelled); the write stands.
        let _ = self.reply.send(out);
    }
}

pub(crate) fn run(conn: Connection, rx: Receiver<Box<dyn Job>>, clock: Arc<dyn Clock>, mut head: Head) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let outcome = run_batch(&conn, &mut batch, clock.as_ref(), &mut head);
        if outcome.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
            // The in-memory head may include rolled-back events: reload it.
            head = load_head(&conn).unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot reload audit head after failed commit");
                head.clone()
            });
        }
        let outcome = outcome.map_err(|e| e.to_string());
        for job in batch {
            job.complete(outcome.clone());
        }
    }
}

fn stmt(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ()).map_err(backend)
}

fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>], clock: &dyn Clock, head: &mut Head) -> Result<()> {
    stmt(conn, "BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        stmt(conn, "SAVEPOINT job")?;
        let saved = head.clone();
        let mut ctx = WriteCtx { conn, head, now: clock.now() };
        if job.run(&mut ctx) {
            stmt(conn, "RELEASE job")?;
        } else {
            stmt(conn, "ROLLBACK TO job")?;
            stmt(conn, "RELEASE job")?;
            *head = saved;
        }
    }
    stmt(conn, "COMMIT")
}
