//! The writer thread and its group commit, shared by both backends.
//!
//! One thread per store owns the only read-write connection. Callers send it
//! closures; it runs every closure that is waiting in one transaction, each
//! inside a savepoint (a failing closure rolls back alone, its audit events
//! with it), and answers them all after the single commit: concurrent writers
//! share one fsync without weakening durability.

use std::sync::Arc;
use std::sync::mpsc::Receiver;

use latch_audit::{AuditDraft, AuditEvent, GENESIS_HASH};
use latch_core::{Clock, Timestamp};

use crate::cache::Invalidation;
use crate::sql::{Db, Row, Value};
use crate::{Result, StoreError, args};

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

/// The newest event of the chain (genesis when empty).
pub(crate) fn load_head(db: &dyn Db) -> Result<Head> {
    let row = db.query_opt("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1", args![])?;
    match row {
        Some(r) => Ok(Head { seq: r.get(0)?, hash: r.get(1)? }),
        None => Ok(Head::genesis()),
    }
}

/// A connection the writer can run transactions on.
pub(crate) trait TxConn: Send {
    fn db(&self) -> &dyn Db;
    /// Opens the batch's transaction and returns the chain head it must
    /// extend. A backend shared by several nodes takes the chain lock here
    /// and reads the head under it; a single-writer backend may return its
    /// cached head.
    fn begin(&mut self, cached: &Head) -> Result<Head>;
    fn commit(&mut self) -> Result<()>;
    /// Tells other nodes, on commit, that cached reads may be stale.
    fn announce_invalidation(&mut self) -> Result<()> {
        Ok(())
    }
    /// Abandons the open transaction (after a failed commit or a lost connection).
    fn rollback(&mut self);
}

/// What a write closure sees: the open transaction, the time, and the
/// audit chain head, so that it can append events in its own transaction.
pub struct WriteCtx<'a> {
    db: &'a dyn Db,
    head: &'a mut Head,
    now: Timestamp,
    invalidated: bool,
}

impl WriteCtx<'_> {
    pub fn db(&self) -> &dyn Db {
        self.db
    }
    pub fn now(&self) -> Timestamp {
        self.now
    }
    /// Runs one statement in this transaction.
    pub fn exec(&self, sql: &str, args: &[Value]) -> Result<u64> {
        self.db.exec(sql, args)
    }
    pub fn query(&self, sql: &str, args: &[Value]) -> Result<Vec<Row>> {
        self.db.query(sql, args)
    }
    pub fn head(&self) -> (i64, &str) {
        (self.head.seq, &self.head.hash)
    }
    /// Marks this change as one that can make cached reads stale (a
    /// revocation, disable, deletion or membership change): every node drops
    /// its caches once it commits. See [`crate::cache`].
    pub fn invalidate(&mut self) -> Result<()> {
        self.db.exec("UPDATE invalidations SET n = n + 1 WHERE id = 1", args![])?;
        self.invalidated = true;
        Ok(())
    }
    /// Appends `draft` as the next event of the chain, in this transaction.
    pub fn audit(&mut self, draft: AuditDraft) -> Result<AuditEvent> {
        let ev = draft.seal(self.head.seq + 1, self.now, &self.head.hash);
        self.db.exec(
            "INSERT INTO audit_events (seq, time, actor, action, target, outcome, request_id, source, details, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            args![
                ev.seq,
                ev.time,
                ev.actor.as_str(),
                ev.action.as_str(),
                ev.target.as_str(),
                ev.outcome.as_str(),
                ev.request_id.as_str(),
                ev.source.as_str(),
                latch_audit::canonical::canonical_json(&ev.details),
                ev.hash.as_str(),
            ],
        )?;
        self.head.seq = ev.seq;
        self.head.hash = ev.hash.clone();
        Ok(ev)
    }
}

pub(crate) trait Job: Send {
    fn run(&mut self, ctx: &mut WriteCtx<'_>) -> bool;
    fn complete(self: Box<Self>, commit: Result<(), StoreError>);
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

    fn complete(self: Box<Self>, commit: Result<(), StoreError>) {
        let out = match (commit, self.result) {
            // A transaction that never committed: nothing of the job stands.
            (Err(e), _) => Err(e),
            // A job that failed was rolled back alone; its own error stands.
            (Ok(()), Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(v))) => Ok(v),
            (Ok(()), None) => Err(StoreError::Backend("write job never ran".into())),
        };
        // The caller may have gone away (request cancelled); the write stands.
        let _ = self.reply.send(out);
    }
}

/// Sends `f` to the writer behind `jobs` and waits for its commit.
pub(crate) async fn submit<T, F>(
    jobs: &std::sync::Mutex<Option<std::sync::mpsc::Sender<Box<dyn Job>>>>,
    f: F,
) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut WriteCtx<'_>) -> Result<T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = Box::new(TypedJob::new(f, tx));
    {
        let guard = jobs.lock().unwrap_or_else(|p| p.into_inner());
        let sender = guard.as_ref().ok_or(StoreError::Closed)?;
        sender.send(job).map_err(|_| StoreError::Closed)?;
    }
    rx.await.map_err(|_| StoreError::Closed)?
}

/// The writer loop: batches whatever is queued, until every sender is gone.
/// `conn` is asked for again after a failure, so a backend can reconnect.
pub(crate) fn run<C: TxConn>(
    mut connect: impl FnMut() -> Result<C>,
    rx: Receiver<Box<dyn Job>>,
    clock: Arc<dyn Clock>,
    mut head: Head,
    mut conn: Option<C>,
    inv: Invalidation,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let outcome =
            begin(&mut conn, &mut connect, &mut head).and_then(|c| run_batch(c, &mut batch, clock.as_ref(), &mut head));
        if let Ok(true) = outcome {
            inv.bump();
        }
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, "write transaction failed");
            // The in-memory head may include rolled-back events: reload it.
            if let Some(c) = conn.as_mut() {
                c.rollback();
                match load_head(c.db()) {
                    Ok(h) => head = h,
                    Err(_) => conn = None,
                }
            }
            if matches!(e, StoreError::Unavailable(_)) {
                conn = None;
            }
        }
        for job in batch {
            job.complete(outcome.clone().map(|_| ()));
        }
    }
}

/// Opens the batch's transaction. A connection that turns out dead at this
/// point (the database restarted while it sat idle) is replaced once: no job
/// has run yet, so nothing can be applied twice.
fn begin<'c, C: TxConn>(
    conn: &'c mut Option<C>,
    connect: &mut impl FnMut() -> Result<C>,
    head: &mut Head,
) -> Result<&'c mut C> {
    if let Some(c) = conn.as_mut() {
        match c.begin(head) {
            Ok(h) => {
                *head = h;
            }
            Err(StoreError::Unavailable(_)) => {
                *conn = None;
            }
            Err(e) => return Err(e),
        }
    }
    if conn.is_none() {
        let mut fresh = connect()?;
        *head = fresh.begin(head)?;
        *conn = Some(fresh);
    }
    conn.as_mut().ok_or(StoreError::Closed)
}

/// Runs one batch in the transaction [`begin`] opened; returns whether a
/// committed job invalidated cached reads.
fn run_batch<C: TxConn>(conn: &mut C, batch: &mut [Box<dyn Job>], clock: &dyn Clock, head: &mut Head) -> Result<bool> {
    let mut invalidated = false;
    let db = conn.db();
    for job in batch.iter_mut() {
        db.exec("SAVEPOINT job", args![])?;
        let saved = head.clone();
        let mut ctx = WriteCtx { db, head, now: clock.now(), invalidated: false };
        if job.run(&mut ctx) {
            invalidated |= ctx.invalidated;
            db.exec("RELEASE SAVEPOINT job", args![])?;
        } else {
            db.exec("ROLLBACK TO SAVEPOINT job", args![])?;
            db.exec("RELEASE SAVEPOINT job", args![])?;
            *head = saved;
        }
    }
    if invalidated {
        conn.announce_invalidation()?;
    }
    conn.commit()?;
    Ok(invalidated)
}
