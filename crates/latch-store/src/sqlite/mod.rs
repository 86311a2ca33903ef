//! The embedded SQLite backend.
//!
//! Concurrency model: one writer thread owns the only read-write connection
//! and the in-memory head of the audit chain. Callers send it closures; it
//! runs every closure that is waiting in one `BEGIN IMMEDIATE … COMMIT`, each
//! inside a savepoint (a failing closure rolls back alone), and answers them
//! all after the single fsync of the commit (group commit). Reads go to a
//! small pool of `query_only` connections, which WAL lets run beside the writer.

mod jit;
mod queries;
pub mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use latch_core::Clock;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::migrations::{BOOKKEEPING, LATEST, MIGRATIONS};
use crate::{Result, StoreError};
pub use writer::WriteCtx;
use writer::{Head, Job, TypedJob};

pub struct SqliteStore {
    jobs: Mutex<Option<std::sync::mpsc::Sender<Box<dyn Job>>>>,
    readers: Arc<ReaderPool>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
}

pub(crate) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Map SQLite errors, turning uniqueness violations into conflicts.
pub(crate) fn sql_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && f.code == rusqlite::ErrorCode::ConstraintViolation
    {
        return StoreError::Conflict("already exists".into());
    }
    backend(e)
}

fn open_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Backend(format!("cannot open database {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(backend)?;
    // WAL + FULL: every commit is fsynced before it is acknowledged.
    conn.pragma_update(None, "journal_mode", "WAL").map_err(backend)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(backend)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

fn migrate(conn: &mut Connection, clock: &dyn Clock) -> Result<()> {
    conn.execute_batch(BOOKKEEPING).map_err(backend)?;
    let current: i64 =
        conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0)).map_err(backend)?;
    if current > LATEST {
        return Err(StoreError::SchemaTooNew { found: current, known: LATEST });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(m.sql)
            .map_err(|e| StoreError::Backend(format!("migration {} ({}) failed: {e}", m.version, m.name)))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![m.version, m.name, clock.now().millis()],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        tracing::info!(version = m.version, name = m.name, "applied schema migration");
    }
    Ok(())
}

pub(crate) fn load_head(conn: &Connection) -> Result<Head> {
    let row = conn
        .query_row("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok(Head { seq: r.get(0)?, hash: r.get(1)? })
        })
        .optional()
        .map_err(backend)?;
    Ok(row.unwrap_or_else(Head::genesis))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        let mut conn = open_conn(path)?;
        migrate(&mut conn, clock.as_ref())?;
        let head = load_head(&conn)?;
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn Job>>();
        let handle = std::thread::Builder::new()
            .name("latch-sqlite-writer".into())
            .spawn(move || writer::run(conn, rx, clock, head))
            .map_err(backend)?;
        Ok(SqliteStore {
            jobs: Mutex::new(Some(tx)),
            readers: Arc::new(ReaderPool { path: path.to_path_buf(), idle: Mutex::new(Vec::new()) }),
            writer_thread: Mutex::new(Some(handle)),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Finishes queued writes and stops the writer thread.
    pub fn close(&self) {
        drop(lock(&self.jobs).take());
        if let Some(h) = lock(&self.writer_thread).take() {
            let _ = h.join();
        }
    }

    /// Runs `f` in the writer's current transaction; resolves after commit.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Box::new(TypedJob::new(f, tx));
        {
            let guard = lock(&self.jobs);
            let sender = guard.as_ref().ok_or(StoreError::Closed)?;
            sender.send(job).map_err(|_| StoreError::Closed)?;
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a pooled read connection, inline on the calling task.
    ///
    /// Reads are indexed point lookups of tens of microseconds (WAL readers
    /// never wait for the writer), which is less than the cost of handing
    /// them to the blocking pool and back: measured, the hand-off made the
    /// request path context-switch-bound.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.readers.take()?;
        let out = f(&conn);
        self.readers.give(conn);
        out
    }

    /// Runs `f` on a pooled read connection on the blocking thread pool: for
    /// scans (lists, audit pages) that may take long enough to stall a worker.
    pub async fn scan<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let out = f(&conn);
            pool.give(conn);
            out
        })
        .await
        .map_err(backend)?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    const MAX_IDLE: usize = 8;

    fn take(&self) -> Result<Connection> {
        if let Some(c) = lock(&self.idle).pop() {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(backend)?;
        conn.pragma_update(None, "query_only", "ON").map_err(backend)?;
        conn.set_prepared_statement_cache_capacity(128);
        Ok(conn)
    }

    fn give(&self, c: Connection) {
        let mut idle = lock(&self.idle);
        if idle.len() < Self::MAX_IDLE {
            idle.push(c);
        }
    }
}
