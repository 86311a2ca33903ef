//! The PostgreSQL backend, for several latch nodes sharing one database.
//!
//! The same domain SQL as SQLite runs here (see [`crate::sql`]). What
//! changes is how writers agree:
//! - **One chain across nodes.** Each node has one writer thread doing group
//!   commit, and every write transaction starts by taking
//!   `LOCK TABLE audit_events IN EXCLUSIVE MODE` and reading the chain head
//!   under it. Writers of all nodes are therefore serialised (plain reads
//!   are not blocked), the chain stays a single total order, and every
//!   compare-and-set in the domain code sees the latest committed state.
//! - **Background work on one node.** A leader thread holds a session-level
//!   advisory lock; jobs run only while [`PgEngine::is_leader`] says so.
//!   When a node dies its connection closes, the lock is released, and
//!   another node's leader thread takes it within a second.
//! - **Fail closed.** A lost connection surfaces as
//!   [`StoreError::Unavailable`]; nothing is acknowledged that was not
//!   committed, and the next operation reconnects.
//!
//! The blocking `postgres` client runs only on threads that belong to no
//! async runtime (the writer, the leader, the blocking pool); clients are
//! also dropped there, as the client blocks while closing.

use std::cell::RefCell;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use latch_core::Clock;
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};

use crate::pg_tls::VerifiedTls;

use crate::cache::Invalidation;
use crate::migrations::{BOOKKEEPING, LATEST, MIGRATIONS};
use crate::sql::{Db, Row, Value, dollar_placeholders};
use crate::writer::{Head, TxConn, load_head};
use crate::{Result, StoreError, args};

/// Advisory lock keys (arbitrary, fixed): one for migrations, one for leadership.
const MIGRATE_LOCK: i64 = 0x6c61_7463_6801;
const LEADER_LOCK: i64 = 0x6c61_7463_6802;

/// Connection settings from `[storage]`.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Most connections one node opens for reads (the writer and the leader
    /// use one more each).
    pub max_connections: usize,
    pub connect_timeout: Duration,
    /// How often a follower tries to become the leader, and the leader checks it still is.
    pub leader_poll: Duration,
    /// Cache session and token lookups, dropped on every invalidation (see [`crate::cache`]).
    pub cache: bool,
    /// How often the invalidation counter is reconciled, should a NOTIFY be lost.
    pub reconcile: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 16,
            connect_timeout: Duration::from_secs(3),
            leader_poll: Duration::from_millis(500),
            cache: true,
            reconcile: Duration::from_millis(250),
        }
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::BOOL => (*i != 0).to_sql(ty, out),
            Value::Int(i) => i.to_sql(ty, out),
            Value::Bool(b) if *ty == Type::BOOL => b.to_sql(ty, out),
            Value::Bool(b) => i64::from(*b).to_sql(ty, out),
            Value::Text(s) => s.as_str().to_sql(ty, out),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

/// Maps a driver error: lost connections become `Unavailable` (fail closed),
/// uniqueness violations `Conflict`, the rest `Backend`.
pub(crate) fn pg_err(e: postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::UNIQUE_VIOLATION {
            return StoreError::Conflict("already exists".into());
        }
        if [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW].contains(code) {
            return StoreError::Unavailable(format!("the database is unavailable: {}", db.message()));
        }
        return StoreError::Backend(format!("{}: {}", db.severity(), db.message()));
    }
    if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) {
        return StoreError::Unavailable(format!("the database is unreachable: {e}"));
    }
    StoreError::Backend(e.to_string())
}

/// One client with its own statement cache.
pub(crate) struct PgConn {
    client: RefCell<Client>,
    stmts: RefCell<HashMap<String, Statement>>,
}

impl PgConn {
    fn connect(dial: &Dial) -> Result<Self> {
        let client = match &dial.tls {
            None => dial.cfg.connect(NoTls),
            Some(tls) => dial.cfg.connect(tls.clone()),
        };
        let client = client.map_err(|e| match crate::pg_tls::refused_certificate(&e) {
            Some(why) => StoreError::Backend(format!(
                "the database's TLS certificate is not trusted ({why}): give the CA that signed it as \
                 sslrootcert=FILE in the storage URL"
            )),
            None => pg_err(e),
        })?;
        Ok(PgConn { client: RefCell::new(client), stmts: RefCell::new(HashMap::new()) })
    }

    fn statement(&self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.stmts.borrow().get(sql) {
            return Ok(s.clone());
        }
        let st = self.client.borrow_mut().prepare(&dollar_placeholders(sql)).map_err(pg_err)?;
        self.stmts.borrow_mut().insert(sql.to_string(), st.clone());
        Ok(st)
    }

    fn is_closed(&self) -> bool {
        self.client.borrow().is_closed()
    }

    fn batch(&self, sql: &str) -> Result<()> {
        self.client.borrow_mut().batch_execute(sql).map_err(pg_err)
    }
}

fn params(args: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn value_at(row: &postgres::Row, i: usize) -> Result<Value> {
    let ty = row.columns().get(i).map(|c| c.type_().clone()).unwrap_or(Type::TEXT);
    let conv = |e: postgres::Error| StoreError::Backend(format!("column {i}: {e}"));
    Ok(if ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i).map_err(conv)?.map_or(Value::Null, Value::Bool)
    } else if ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i).map_err(conv)?.map_or(Value::Null, Value::Int)
    } else if ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i).map_err(conv)?.map_or(Value::Null, |v| Value::Int(v.into()))
    } else if ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(i).map_err(conv)?.map_or(Value::Null, |v| Value::Int(v.into()))
    } else {
        row.try_get::<_, Option<String>>(i).map_err(conv)?.map_or(Value::Null, Value::Text)
    })
}

impl Db for PgConn {
    fn exec(&self, sql: &str, args: &[Value]) -> Result<u64> {
        let st = self.statement(sql)?;
        self.client.borrow_mut().execute(&st, &params(args)).map_err(pg_err)
    }

    fn query(&self, sql: &str, args: &[Value]) -> Result<Vec<Row>> {
        let st = self.statement(sql)?;
        let rows = self.client.borrow_mut().query(&st, &params(args)).map_err(pg_err)?;
        rows.iter().map(|r| (0..r.len()).map(|i| value_at(r, i)).collect::<Result<Vec<_>>>().map(Row)).collect()
    }
}

/// The channel on which committed invalidations are announced.
const INVALIDATE_CHANNEL: &str = "latch_invalidate";

/// The writer's connection: takes the chain lock at the start of each batch.
pub(crate) struct PgTx(PgConn);

impl TxConn for PgTx {
    fn db(&self) -> &dyn Db {
        &self.0
    }
    fn begin(&mut self, _cached: &Head) -> Result<Head> {
        self.0.batch("BEGIN; LOCK TABLE audit_events IN EXCLUSIVE MODE")?;
        load_head(&self.0)
    }
    fn commit(&mut self) -> Result<()> {
        self.0.batch("COMMIT")
    }
    fn announce_invalidation(&mut self) -> Result<()> {
        // Delivered to every listener when (and only if) the transaction commits.
        self.0.batch(&format!("NOTIFY {INVALIDATE_CHANNEL}"))
    }
    fn rollback(&mut self) {
        if !self.0.is_closed() {
            let _ = self.0.batch("ROLLBACK");
        }
    }
}

/// How to reach the database: the driver's settings and, when the URL asks
/// for TLS, a verified TLS connector.
#[derive(Clone)]
pub(crate) struct Dial {
    cfg: postgres::Config,
    tls: Option<VerifiedTls>,
}

/// The storage URL's TLS options, taken out of it: the driver knows only
/// `sslmode=disable|prefer|require` and no `sslrootcert`, while a libpq
/// user writes `sslmode=verify-full&sslrootcert=/etc/latch/db-ca.pem`.
/// Every mode but `disable` (the default) verifies the certificate and the
/// host name (so `verify-ca` is refused rather than made stricter): see
/// [`crate::pg_tls`]. Returns the URL left for the driver, the mode, and
/// the CA file.
fn take_tls_options(dsn: &str) -> Result<(String, String, Option<String>)> {
    let (mut mode, mut root) = (None, None);
    let mut take = |key: &str, value: &str| -> Result<bool> {
        match key {
            "sslmode" => {
                // verify-ca is refused, not taken as verify-full: latch always checks the host name.
                let known = ["disable", "prefer", "require", "verify-full"];
                if !known.contains(&value) {
                    return Err(StoreError::Backend(format!(
                        "sslmode={value} is not offered: use verify-full (with sslrootcert=FILE), require, \
                         prefer or disable (every mode but disable verifies the certificate and the host name)"
                    )));
                }
                mode = Some(value.to_string());
            }
            "sslrootcert" => root = Some(value.to_string()),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if let Some((base, query)) = dsn.split_once('?').filter(|_| dsn.contains("://")) {
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(k, &percent_encoding::percent_decode_str(v).decode_utf8_lossy())? {
                kept.push(pair);
            }
        }
        if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) }
    } else if dsn.contains("://") {
        dsn.to_string()
    } else {
        let mut kept = Vec::new();
        for word in dsn.split_whitespace() {
            let (k, v) = word.split_once('=').unwrap_or((word, ""));
            if !take(k, v.trim_matches('\''))? {
                kept.push(word);
            }
        }
        kept.join(" ")
    };
    Ok((rest, mode.unwrap_or_else(|| "disable".into()), root))
}

fn parse_config(dsn: &str, opts: &PgOptions) -> Result<Dial> {
    let (rest, mode, root) = take_tls_options(dsn)?;
    let mut cfg = postgres::Config::from_str(&rest)
        .map_err(|e| StoreError::Backend(format!("storage: not a valid PostgreSQL connection string: {e}")))?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(opts.connect_timeout);
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("latch");
    }
    let tls = match mode.as_str() {
        "disable" => {
            if root.is_some() {
                return Err(StoreError::Backend(
                    "sslrootcert is given but sslmode is disable: say sslmode=verify-full to use TLS".into(),
                ));
            }
            cfg.ssl_mode(postgres::config::SslMode::Disable);
            None
        }
        mode => {
            let pem = match &root {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| StoreError::Backend(format!("cannot read sslrootcert {path}: {e}")))?,
                ),
                None => None,
            };
            let what = root.as_ref().map_or_else(|| "the public roots".to_string(), |p| format!("sslrootcert {p}"));
            let tls = VerifiedTls::new(pem.as_deref(), &what)
                .map_err(|e| StoreError::Backend(format!("TLS to the database: {e}")))?;
            let required = mode != "prefer";
            cfg.ssl_mode(if required { postgres::config::SslMode::Require } else { postgres::config::SslMode::Prefer });
            Some(tls)
        }
    };
    Ok(Dial { cfg, tls })
}

/// Drops clients on a thread of their own: a client blocks while closing,
/// which must not happen on an async worker.
fn drop_off_runtime<T: Send + 'static>(v: T) {
    let _ = std::thread::spawn(move || drop(v)).join();
}

/// Applies pending migrations, one node at a time (advisory lock).
fn migrate(conn: &PgConn, clock: &dyn Clock) -> Result<()> {
    conn.exec("SELECT pg_advisory_lock(?1)", args![MIGRATE_LOCK])?;
    let out = migrate_locked(conn, clock);
    let _ = conn.exec("SELECT pg_advisory_unlock(?1)", args![MIGRATE_LOCK]);
    out
}

fn migrate_locked(conn: &PgConn, clock: &dyn Clock) -> Result<()> {
    conn.batch(BOOKKEEPING)?;
    let current: i64 = conn
        .query_opt("SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations", args![])?
        .map(|r| r.get(0))
        .transpose()?
        .unwrap_or(0);
    if current > LATEST {
        return Err(StoreError::SchemaTooNew { found: current, known: LATEST });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        conn.batch("BEGIN")?;
        let applied = conn
            .batch(m.sql)
            .map_err(|e| StoreError::Backend(format!("migration {} ({}) failed: {e}", m.version, m.name)))
            .and_then(|()| {
                conn.exec(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                    args![m.version, m.name, clock.now()],
                )
            });
        match applied {
            Ok(_) => conn.batch("COMMIT")?,
            Err(e) => {
                let _ = conn.batch("ROLLBACK");
                return Err(e);
            }
        }
        tracing::info!(version = m.version, name = m.name, "applied schema migration");
    }
    Ok(())
}

/// PostgreSQL's half of a [`crate::SqlStore`].
pub(crate) struct PgEngine {
    cfg: Dial,
    idle: Arc<Mutex<Vec<PgConn>>>,
    permits: Arc<tokio::sync::Semaphore>,
    leader: Arc<AtomicBool>,
    stop: Mutex<Vec<std::sync::mpsc::Sender<()>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl PgEngine {
    /// Connects, migrates and starts the leader thread. Blocking: call it
    /// off the async runtime (see [`crate::SqlStore::open_postgres`]).
    pub fn open(dsn: &str, opts: &PgOptions, clock: &dyn Clock, inv: Invalidation) -> Result<(Self, PgTx, Head)> {
        let cfg = parse_config(dsn, opts)?;
        let conn = PgConn::connect(&cfg)?;
        migrate(&conn, clock)?;
        let head = load_head(&conn)?;
        let leader = Arc::new(AtomicBool::new(false));
        let (stop_tx, stop_rx) = std::sync::mpsc::channel();
        let spawn_err = |e: std::io::Error| StoreError::Backend(e.to_string());
        let leader_thread = {
            let (cfg, leader, poll) = (cfg.clone(), leader.clone(), opts.leader_poll);
            std::thread::Builder::new()
                .name("latch-pg-leader".into())
                .spawn(move || lead(&cfg, &leader, poll, &stop_rx))
                .map_err(spawn_err)?
        };
        let (stop_listen, listen_rx) = std::sync::mpsc::channel();
        let listener_thread = {
            let (cfg, poll) = (cfg.clone(), opts.reconcile);
            std::thread::Builder::new()
                .name("latch-pg-listen".into())
                .spawn(move || listen(&cfg, &inv, poll, &listen_rx))
                .map_err(spawn_err)?
        };
        let engine = PgEngine {
            cfg,
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Arc::new(tokio::sync::Semaphore::new(opts.max_connections.max(1))),
            leader,
            stop: Mutex::new(vec![stop_tx, stop_listen]),
            threads: Mutex::new(vec![leader_thread, listener_thread]),
        };
        Ok((engine, PgTx(conn), head))
    }

    pub fn connector(&self) -> impl FnMut() -> Result<PgTx> + Send + 'static {
        let cfg = self.cfg.clone();
        move || PgConn::connect(&cfg).map(PgTx)
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// Runs `f` on a pooled connection on the blocking pool, at most
    /// `max_connections` at once. A pooled connection found dead (the
    /// database restarted) empties the pool and `f` runs once more on a
    /// fresh connection: reads are idempotent.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Db) -> Result<T> + Send + 'static,
    {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| StoreError::Closed)?;
        let (idle, cfg) = (self.idle.clone(), self.cfg.clone());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let was_pooled = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                None => PgConn::connect(&cfg)?,
            };
            let mut out = f(&conn);
            if was_pooled && matches!(out, Err(StoreError::Unavailable(_))) {
                idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
                conn = PgConn::connect(&cfg)?;
                out = f(&conn);
            }
            if !conn.is_closed() && !matches!(out, Err(StoreError::Unavailable(_))) {
                idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    pub fn close(&self) {
        self.stop.lock().unwrap_or_else(|p| p.into_inner()).clear();
        for h in std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner())) {
            let _ = h.join();
        }
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        drop_off_runtime(idle);
    }
}

/// The leader loop: hold the advisory lock on a dedicated session; check it
/// (and the session) every `poll`; give leadership up the moment the
/// session is in doubt.
fn lead(cfg: &Dial, leader: &AtomicBool, poll: Duration, stop: &std::sync::mpsc::Receiver<()>) {
    let mut conn: Option<PgConn> = None;
    loop {
        let holds = match conn.as_ref() {
            None => match PgConn::connect(cfg) {
                Ok(c) => {
                    conn = Some(c);
                    continue;
                }
                Err(_) => false,
            },
            Some(c) if leader.load(Ordering::Acquire) => c.query_opt("SELECT 1", args![]).is_ok(),
            Some(c) => c
                .query_opt("SELECT pg_try_advisory_lock(?1)", args![LEADER_LOCK])
                .ok()
                .flatten()
                .and_then(|r| r.get::<bool>(0).ok())
                .unwrap_or(false),
        };
        if leader.swap(holds, Ordering::AcqRel) != holds {
            tracing::info!(leader = holds, "background work leadership changed");
        }
        if !holds && conn.as_ref().is_some_and(PgConn::is_closed) {
            conn = None;
        }
        match stop.recv_timeout(poll) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => break,
        }
    }
    leader.store(false, Ordering::Release);
    drop(conn);
}

/// The invalidation feed: LISTEN for committed invalidations (bumping the
/// epoch on each), and reconcile with the counter every `poll` in case a
/// notification was lost. While the connection is down the feed is not live
/// and caches are bypassed.
fn listen(cfg: &Dial, inv: &Invalidation, poll: Duration, stop: &std::sync::mpsc::Receiver<()>) {
    let mut conn: Option<PgConn> = None;
    let mut seen: Option<i64> = None;
    loop {
        if conn.is_none() {
            match PgConn::connect(cfg).and_then(|c| c.batch(&format!("LISTEN {INVALIDATE_CHANNEL}")).map(|()| c)) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    inv.set_live(false);
                    tracing::debug!(error = %e, "invalidation feed: cannot connect");
                }
            }
        }
        if let Some(c) = &conn {
            let counter = c
                .query_opt("SELECT n FROM invalidations WHERE id = 1", args![])
                .and_then(|r| r.map(|r| r.get::<i64>(0)).transpose());
            match counter {
                Ok(n) => {
                    if seen.is_some_and(|s| Some(s) != n) {
                        inv.bump();
                    }
                    seen = n;
                    if !inv.is_live() {
                        tracing::info!("invalidation feed live");
                    }
                    inv.set_live(true);
                }
                Err(_) => {
                    inv.set_live(false);
                    conn = None;
                }
            }
        }
        match &conn {
            Some(c) => {
                let mut client = c.client.borrow_mut();
                let mut notes = client.notifications();
                let mut it = notes.timeout_iter(poll);
                loop {
                    match it.next() {
                        Ok(Some(_)) => inv.bump(),
                        Ok(None) => break,
                        Err(_) => {
                            inv.set_live(false);
                            break;
                        }
                    }
                }
            }
            None => {
                if !matches!(stop.recv_timeout(poll), Err(std::sync::mpsc::RecvTimeoutError::Timeout)) {
                    break;
                }
                continue;
            }
        }
        if conn.as_ref().is_some_and(PgConn::is_closed) {
            conn = None;
            seen = None;
        }
        if !matches!(stop.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)) {
            break;
        }
    }
    inv.set_live(false);
    drop(conn);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn libpq_tls_options_are_taken_out_of_the_storage_url() {
        let (rest, mode, root) = take_tls_options(
            "postgres://latch:pw@db:5432/latch?sslmode=verify-full&sslrootcert=%2Fetc%2Flatch%2Fca.pem&application_name=n1",
        )
        .unwrap();
        assert_eq!(rest, "postgres://latch:pw@db:5432/latch?application_name=n1");
        assert_eq!((mode.as_str(), root.as_deref()), ("verify-full", Some("/etc/latch/ca.pem")));
        let (rest, mode, root) = take_tls_options("postgres://latch@db/latch?sslmode=require").unwrap();
        assert_eq!((rest.as_str(), mode.as_str(), root), ("postgres://latch@db/latch", "require", None));
        let (rest, mode, _) = take_tls_options("postgres://latch@db/latch").unwrap();
        assert_eq!((rest.as_str(), mode.as_str()), ("postgres://latch@db/latch", "disable"));
        let (rest, mode, root) =
            take_tls_options("host=db sslmode=verify-full sslrootcert='/ca.pem' dbname=latch").unwrap();
        assert_eq!(
            (rest.as_str(), mode.as_str(), root.as_deref()),
            ("host=db dbname=latch", "verify-full", Some("/ca.pem"))
        );
    }

    #[test]
    fn tls_options_that_cannot_work_are_refused_before_connecting() {
        let opts = PgOptions::default();
        let err = |dsn: &str| parse_config(dsn, &opts).err().unwrap().to_string();
        assert!(err("postgres://db/latch?sslmode=allow").contains("sslmode=allow is not offered"));
        assert!(err("postgres://db/latch?sslmode=verify-ca").contains("sslmode=verify-ca is not offered"));
        assert!(err("postgres://db/latch?sslrootcert=/ca.pem").contains("sslmode is disable"));
        let missing = err("postgres://db/latch?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
        assert!(missing.contains("cannot read sslrootcert /nonexistent/ca.pem"), "{missing}");
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("ca.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let bad = err(&format!("postgres://db/latch?sslmode=verify-full&sslrootcert={}", junk.display()));
        assert!(bad.contains("holds no certificate"), "{bad}");
        let dial = parse_config("postgres://db/latch?sslmode=verify-full", &opts).unwrap();
        assert!(dial.tls.is_some(), "the public roots");
        assert!(parse_config("postgres://db/latch", &opts).unwrap().tls.is_none());
    }
}
