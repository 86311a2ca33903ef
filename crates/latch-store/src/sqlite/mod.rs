//! The embedded SQLite backend.
//!
//! Concurrency model: one writer thread owns the only read-write connection
//! and the in-memory head of the audit chain (see [`crate::writer`]). Reads
//! go to a small pool of `query_only` connections, which WAL lets run beside
//! the writer.

pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use latch_core::Clock;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::migrations::{BOOKKEEPING, LATEST, MIGRATIONS};
use crate::sql::{Db, Row, Value};
use crate::writer::{Head, TxConn, load_head};
use crate::{Result, StoreError};

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

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput::Borrowed;
        Ok(match self {
            Value::Null => Borrowed(ValueRef::Null),
            Value::Int(i) => Borrowed(ValueRef::Integer(*i)),
            Value::Bool(b) => Borrowed(ValueRef::Integer(i64::from(*b))),
            Value::Text(s) => Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn value_of(v: ValueRef<'_>) -> Result<Value> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Real(_) | ValueRef::Blob(_) => return Err(StoreError::Backend("unexpected column type".into())),
    })
}

impl Db for Connection {
    fn exec(&self, sql: &str, args: &[Value]) -> Result<u64> {
        let n =
            self.prepare_cached(sql).and_then(|mut s| s.execute(rusqlite::params_from_iter(args))).map_err(sql_err)?;
        Ok(n as u64)
    }

    fn query(&self, sql: &str, args: &[Value]) -> Result<Vec<Row>> {
        let mut st = self.prepare_cached(sql).map_err(sql_err)?;
        let width = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(args)).map_err(sql_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(sql_err)? {
            let mut vals = Vec::with_capacity(width);
            for i in 0..width {
                vals.push(value_of(r.get_ref(i).map_err(backend)?)?);
            }
            out.push(Row(vals));
        }
        Ok(out)
    }
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

/// The writer's connection: the only writer, so its cached head is the truth.
pub(crate) struct SqliteTx(Connection);

impl TxConn for SqliteTx {
    fn db(&self) -> &dyn Db {
        &self.0
    }
    fn begin(&mut self, cached: &Head) -> Result<Head> {
        self.0.exec("BEGIN IMMEDIATE", &[])?;
        Ok(cached.clone())
    }
    fn commit(&mut self) -> Result<()> {
        self.0.exec("COMMIT", &[]).map(|_| ())
    }
    fn rollback(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

/// SQLite's half of a [`crate::SqlStore`].
pub(crate) struct SqliteEngine {
    readers: Arc<ReaderPool>,
    pub path: PathBuf,
}

impl SqliteEngine {
    /// Opens (creating if needed) and migrates the database; returns the
    /// engine and the writer's connection with the chain head.
    pub fn open(path: &Path, clock: &dyn Clock) -> Result<(Self, SqliteTx, Head)> {
        let mut conn = open_conn(path)?;
        migrate(&mut conn, clock)?;
        let head = load_head(&conn)?;
        let engine = SqliteEngine {
            readers: Arc::new(ReaderPool { path: path.to_path_buf(), idle: Mutex::new(Vec::new()) }),
            path: path.to_path_buf(),
        };
        Ok((engine, SqliteTx(conn), head))
    }

    /// Runs `f` on a pooled read connection, inline on the calling task.
    ///
    /// Reads are indexed point lookups of tens of microseconds (WAL readers
    /// never wait for the writer), which is less than the cost of handing
    /// them to the blocking pool and back: measured, the hand-off made the
    /// request path context-switch-bound.
    pub fn read<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
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
        F: FnOnce(&dyn Db) -> Result<T> + Send + 'static,
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
