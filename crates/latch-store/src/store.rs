//! [`SqlStore`]: the one implementation of [`crate::Store`], over either engine.

use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use latch_core::{Clock, Histogram};

use crate::cache::{Invalidation, ReadCache};
use crate::chunk_files::ChunkFiles;
use crate::postgres::{PgEngine, PgOptions};
use crate::sql::Db;
use crate::sqlite::SqliteEngine;
use crate::writer::{self, Job, WriteCtx};
use crate::{Result, StoreError};

pub(crate) enum Engine {
    Sqlite(SqliteEngine),
    // Boxed: the PostgreSQL engine is much larger, and there is one per store.
    Postgres(Box<PgEngine>),
}

/// The store: a writer thread doing group commit, and a read path, over
/// SQLite or PostgreSQL.
pub struct SqlStore {
    pub(crate) engine: Engine,
    /// Cached hot reads (see [`crate::cache`]).
    pub(crate) cache: Option<ReadCache>,
    /// Where recording chunks go: files beside a SQLite database; `None`
    /// keeps them in their rows (PostgreSQL, shared by every node).
    pub(crate) chunk_files: Option<Arc<ChunkFiles>>,
    pub(crate) inv: Invalidation,
    jobs: Mutex<Option<Sender<Box<dyn Job>>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    /// Seconds from submitting a change that appends audit events to its commit.
    audit_latency: Arc<Histogram>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SqlStore {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    pub fn open_sqlite(path: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        let (engine, conn, head) = SqliteEngine::open(path, clock.as_ref())?;
        let reopen = {
            let path = path.to_path_buf();
            let clock = clock.clone();
            move || SqliteEngine::open(&path, clock.as_ref()).map(|(_, c, _)| c)
        };
        // One process is the only writer: its own commits are the only
        // invalidations, so the feed is live from the start.
        let inv = Invalidation::default();
        inv.set_live(true);
        let files = Arc::new(ChunkFiles::beside(path));
        let mut store = Self::start(Engine::Sqlite(engine), reopen, conn, head, clock, inv, true)?;
        store.chunk_files = Some(files);
        Ok(store)
    }

    /// Connects to PostgreSQL at `dsn`, migrates (one node at a time) and
    /// starts the writer and leader threads.
    pub async fn open_postgres(dsn: &str, opts: PgOptions, clock: Arc<dyn Clock>) -> Result<Self> {
        let dsn = dsn.to_string();
        // The blocking client must not run on an async worker.
        tokio::task::spawn_blocking(move || {
            let inv = Invalidation::default();
            let (engine, conn, head) = PgEngine::open(&dsn, &opts, clock.as_ref(), inv.clone())?;
            let connect = engine.connector();
            Self::start(Engine::Postgres(Box::new(engine)), connect, conn, head, clock, inv, opts.cache)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    fn start<C: writer::TxConn + 'static>(
        engine: Engine,
        connect: impl FnMut() -> Result<C> + Send + 'static,
        conn: C,
        head: writer::Head,
        clock: Arc<dyn Clock>,
        inv: Invalidation,
        cached: bool,
    ) -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn Job>>();
        let cache = cached.then(|| ReadCache::new(inv.clone()));
        let store_inv = inv.clone();
        let handle = std::thread::Builder::new()
            .name("latch-store-writer".into())
            .spawn(move || writer::run(connect, rx, clock, head, Some(conn), inv))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(SqlStore {
            engine,
            cache,
            chunk_files: None,
            inv: store_inv,
            jobs: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(handle)),
            audit_latency: Arc::new(Histogram::new(latch_core::histogram::LATENCY_BUCKETS)),
        })
    }

    /// The SQLite file, for the SQLite backend.
    pub fn path(&self) -> Option<&Path> {
        match &self.engine {
            Engine::Sqlite(e) => Some(&e.path),
            Engine::Postgres(_) => None,
        }
    }

    /// Finishes queued writes and stops the writer (and leader) threads.
    pub fn close(&self) {
        drop(lock(&self.jobs).take());
        if let Some(h) = lock(&self.writer_thread).take() {
            let _ = h.join();
        }
        if let Engine::Postgres(e) = &self.engine {
            e.close();
        }
    }

    /// Runs `f` in the writer's current transaction; resolves after commit.
    /// A committed change that appended audit events has its latency (from
    /// here to the commit) recorded in [`SqlStore::audit_latency`].
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> Result<T> + Send + 'static,
    {
        let started = std::time::Instant::now();
        let audited = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = audited.clone();
        let out = writer::submit(&self.jobs, move |ctx: &mut WriteCtx<'_>| {
            let before = ctx.head().0;
            let out = f(ctx);
            flag.store(ctx.head().0 != before, std::sync::atomic::Ordering::Relaxed);
            out
        })
        .await;
        if out.is_ok() && audited.load(std::sync::atomic::Ordering::Relaxed) {
            self.audit_latency.observe_duration(started.elapsed());
        }
        out
    }

    /// Latency of audited writes: submit to durable commit, in seconds.
    pub fn audit_latency(&self) -> Arc<Histogram> {
        self.audit_latency.clone()
    }

    /// A point lookup: inline on SQLite, on the blocking pool for PostgreSQL.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Db) -> Result<T> + Send + 'static,
    {
        match &self.engine {
            Engine::Sqlite(e) => e.read(f),
            Engine::Postgres(e) => e.read(f).await,
        }
    }

    /// A scan that may take a while: always off the async workers.
    pub(crate) async fn scan<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Db) -> Result<T> + Send + 'static,
    {
        match &self.engine {
            Engine::Sqlite(e) => e.scan(f).await,
            Engine::Postgres(e) => e.read(f).await,
        }
    }
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        self.close();
    }
}
