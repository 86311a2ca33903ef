//! Dynamic PostgreSQL credentials, like Vault's database secrets engine: a
//! grant's holder gets a PostgreSQL role of their own, with a random
//! password, valid until the grant ends; when the grant ends (revoked,
//! expired) or the lease is revoked, the role's sessions are terminated and
//! the role is dropped.
//!
//! Talking to the target database is network IO that can fail or hang, so it
//! never happens inside a store transaction: a credential is recorded
//! (`issuing`) before its role is created, and ending a grant only marks its
//! credentials `revoking` (in the grant's transaction); [`revoker`], a
//! background job on the leader, drops the roles, recording every failure
//! (`latch_revocation_failures_total`, `GET /v1/db/creds`) and retrying with
//! backoff until the role is gone.
//!
//! Secrets: the connection's administrator password is stored sealed
//! ([`PasswordSealer`]); issued passwords are returned once and kept nowhere.
//! Neither is ever logged, audited or put in an error message: error text
//! from PostgreSQL passes through [`scrub`] first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use latch_audit::{AuditDraft, Outcome};
use latch_core::Timestamp;
use latch_policy::pg_template::{Template, Values, quote_ident};
use latch_store::{DbConnection, DbCredential, LeaseSelector};
use serde_json::json;
use tokio_postgres::NoTls;
use zeroize::Zeroizing;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// How long connecting to a target may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one batch of statements may take.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Idle connections kept per registered connection.
const POOL_IDLE: usize = 32;
/// Retries of a failed drop: 1 s doubling up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often the revoker looks for due work without being woken.
const REVOKE_POLL: Duration = Duration::from_secs(1);
/// Drops run at once, per pass.
const REVOKE_CONCURRENCY: usize = 8;
/// Length of generated passwords (alphanumeric: ~238 bits).
pub const PASSWORD_LEN: usize = 40;
/// PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1).
pub const MAX_ROLE_NAME: usize = 63;

/// The sealed server hook: while latch is sealed (no master key in memory)
/// nothing here may run, and every route answers 503. latch has no sealed
/// state yet, so this always passes; the seal work makes it real.
pub fn ensure_unsealed(st: &AppState) -> ApiResult<()> {
    if st.barrier.is_sealed() {
        return Err(ApiError::Unavailable(
            "latch is sealed: dynamic credentials are unavailable until it is unsealed with `latch operator unseal`"
                .into(),
        ));
    }
    Ok(())
}

/// Seals and opens the administrator passwords of registered connections
/// under the master keyring (see [`crate::barrier`]): each password
/// encrypted under its own data key, bound to `db-connection:NAME` so a
/// sealed value cannot be moved to another connection. A sealed node can
/// neither register connections nor use them. The one place that knows how.
pub struct PasswordSealer {
    barrier: std::sync::Arc<crate::barrier::Barrier>,
    store: std::sync::Arc<dyn latch_store::Store>,
}

/// Stored form: `mk:VERSION:WRAPPED_KEY_HEX:CIPHERTEXT_HEX`.
const SEALED_PREFIX: &str = "mk";

impl PasswordSealer {
    pub fn new(
        barrier: std::sync::Arc<crate::barrier::Barrier>,
        store: std::sync::Arc<dyn latch_store::Store>,
    ) -> Self {
        PasswordSealer { barrier, store }
    }

    fn context(connection: &str) -> String {
        format!("db-connection:{connection}")
    }

    async fn keyring(&self) -> Result<std::sync::Arc<latch_crypto::keyring::Keyring>, ApiError> {
        self.barrier.keyring(self.store.as_ref(), std::time::Instant::now()).await
    }

    /// The sealed password, for storage.
    pub async fn seal(&self, connection: &str, password: &str) -> Result<String, ApiError> {
        Ok(seal_with(&*self.keyring().await?, connection, password)?)
    }

    pub async fn open(&self, connection: &str, sealed: &str) -> Result<Zeroizing<String>, String> {
        let ring = self.keyring().await.map_err(|e| e.to_string())?;
        open_with(&ring, connection, sealed)
    }
}

fn seal_with(
    ring: &latch_crypto::keyring::Keyring,
    connection: &str,
    password: &str,
) -> Result<String, latch_crypto::CryptoError> {
    let env = ring.encrypt(&PasswordSealer::context(connection), password.as_bytes())?;
    Ok(format!(
        "{SEALED_PREFIX}:{}:{}:{}",
        env.master_version,
        latch_crypto::hex(&env.wrapped_key),
        latch_crypto::hex(&env.ciphertext)
    ))
}

fn open_with(
    ring: &latch_crypto::keyring::Keyring,
    connection: &str,
    sealed: &str,
) -> Result<Zeroizing<String>, String> {
    let why = || does_not_open(connection);
    let env = parse_sealed(sealed).ok_or_else(why)?;
    let plain = ring.decrypt(&PasswordSealer::context(connection), &env).map_err(|_| why())?;
    String::from_utf8(plain.to_vec()).map(Zeroizing::new).map_err(|_| why())
}

fn does_not_open(connection: &str) -> String {
    format!(
        "the stored password of database connection {connection:?} does not open with this keyring: \
         register the connection again"
    )
}

fn parse_sealed(sealed: &str) -> Option<latch_crypto::keyring::Envelope> {
    let mut parts = sealed.split(':');
    let (Some(SEALED_PREFIX), Some(v), Some(w), Some(c), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some(latch_crypto::keyring::Envelope {
        master_version: v.parse().ok()?,
        wrapped_key: latch_crypto::hex_decode(w).ok()?,
        ciphertext: latch_crypto::hex_decode(c).ok()?,
    })
}

/// `sealed` with its data key wrapped by the active master key version, or
/// `None` when it is already (the password itself is never decrypted).
fn rewrap_with(
    ring: &latch_crypto::keyring::Keyring,
    connection: &str,
    sealed: &str,
) -> Result<Option<String>, String> {
    let env = parse_sealed(sealed).ok_or_else(|| does_not_open(connection))?;
    if env.master_version >= ring.active() {
        return Ok(None);
    }
    let new = ring.rewrap(&PasswordSealer::context(connection), &env).map_err(|_| does_not_open(connection))?;
    Ok(Some(format!(
        "{SEALED_PREFIX}:{}:{}:{}",
        new.master_version,
        latch_crypto::hex(&new.wrapped_key),
        latch_crypto::hex(&new.ciphertext)
    )))
}

/// Whether `sealed` waits for a re-wrap: sealed under a master key version
/// older than `active` (one that does not parse counts too: it needs an
/// administrator, and hiding it would hide that).
fn waits_for_rewrap(sealed: &str, active: u32) -> bool {
    parse_sealed(sealed).is_none_or(|env| env.master_version < active)
}

/// How many connection passwords are sealed under an older master key version.
pub async fn passwords_to_rewrap(store: &dyn latch_store::Store, active: u32) -> Result<u64, ApiError> {
    let conns = store.list_db_connections().await?;
    Ok(conns.iter().filter(|c| waits_for_rewrap(&c.sealed_password, active)).count() as u64)
}

/// Re-wraps every connection password sealed under an older master key
/// version; returns how many this node re-wrapped.
pub async fn rewrap_passwords(
    store: &dyn latch_store::Store,
    ring: &latch_crypto::keyring::Keyring,
) -> Result<u64, ApiError> {
    let mut n = 0;
    for conn in store.list_db_connections().await? {
        if let Some(new) = rewrap_with(ring, &conn.name, &conn.sealed_password).map_err(ApiError::internal)?
            && store.store_rewrapped_db_password(&conn.name, &conn.sealed_password, &new).await?
        {
            n += 1;
        }
    }
    Ok(n)
}

/// Server-wide state of dynamic credentials: the sealer, pooled clients per
/// connection, and the revoker's doorbell.
pub struct DbCreds {
    pub sealer: PasswordSealer,
    pools: Mutex<HashMap<String, Pool>>,
    /// Rung whenever a credential is marked for revocation on this node.
    wake: tokio::sync::Notify,
}

struct Pool {
    /// Which registration the clients belong to (a connection removed and
    /// added again under the same name must not reuse the old clients).
    created_at: Timestamp,
    idle: Vec<tokio_postgres::Client>,
}

impl DbCreds {
    pub fn new(sealer: PasswordSealer) -> Self {
        DbCreds { sealer, pools: Mutex::new(HashMap::new()), wake: tokio::sync::Notify::new() }
    }

    /// Asks the revoker to run now rather than at its next poll.
    pub fn wake_revoker(&self) {
        self.wake.notify_one();
    }

    fn pools(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pool>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the pooled clients of a connection (removed or replaced).
    pub fn forget(&self, name: &str) {
        self.pools().remove(name);
    }

    /// A client for `conn`: an idle pooled one, or a new connection.
    async fn client(&self, conn: &DbConnection) -> Result<tokio_postgres::Client, TargetError> {
        loop {
            let pooled = {
                let mut pools = self.pools();
                match pools.get_mut(&conn.name) {
                    Some(p) if p.created_at == conn.created_at => p.idle.pop(),
                    _ => None,
                }
            };
            match pooled {
                Some(c) if !c.is_closed() => return Ok(c),
                Some(_) => continue,
                None => break,
            }
        }
        let password = self.sealer.open(&conn.name, &conn.sealed_password).await.map_err(TargetError::Config)?;
        connect(conn, &password).await
    }

    /// Returns a client that is still healthy to the pool.
    fn give_back(&self, conn: &DbConnection, c: tokio_postgres::Client) {
        if c.is_closed() {
            return;
        }
        let mut pools = self.pools();
        let pool =
            pools.entry(conn.name.clone()).or_insert_with(|| Pool { created_at: conn.created_at, idle: Vec::new() });
        if pool.created_at != conn.created_at {
            *pool = Pool { created_at: conn.created_at, idle: Vec::new() };
        }
        if pool.idle.len() < POOL_IDLE {
            pool.idle.push(c);
        }
    }
}

/// What went wrong talking to a target database; messages are scrubbed.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Cannot reach it (network, timeout, server down).
    #[error("{0}")]
    Unreachable(String),
    /// It answered with an error (authentication, privileges, SQL).
    #[error("{0}")]
    Refused(String),
    /// A conflict with concurrent work that a retry resolves (serialization
    /// failure, deadlock, "tuple concurrently updated" from concurrent
    /// GRANTs on one object).
    #[error("{0}")]
    Transient(String),
    /// latch's own configuration is wrong (connection missing, key mismatch).
    #[error("{0}")]
    Config(String),
}

/// `text` with every secret in `secrets` replaced: PostgreSQL sometimes
/// echoes values back (e.g. in syntax errors), and error text goes to logs,
/// audit events and clients.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(*s, "[redacted]");
    }
    out
}

fn describe(e: &tokio_postgres::Error, secrets: &[&str]) -> TargetError {
    match e.as_db_error() {
        Some(db) => {
            let mut msg = format!("{}: {}", db.code().code(), db.message());
            if let Some(d) = db.detail() {
                msg.push_str(&format!(" ({d})"));
            }
            let code = db.code();
            let transient = *code == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                || *code == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                || (*code == tokio_postgres::error::SqlState::INTERNAL_ERROR && db.message().contains("concurrently"));
            if transient {
                TargetError::Transient(scrub(&msg, secrets))
            } else {
                TargetError::Refused(scrub(&msg, secrets))
            }
        }
        None => {
            // The cause says what failed (e.g. the certificate check of a TLS handshake).
            let mut msg = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                let text = c.to_string();
                if !msg.contains(&text) {
                    msg.push_str(&format!(": {text}"));
                }
                cause = c.source();
            }
            TargetError::Unreachable(scrub(&msg, secrets))
        }
    }
}

/// One connection to a target, with latch's timeouts. `disable` speaks
/// plain text; `prefer` uses TLS when the server offers it; `require` and
/// `verify-full` insist on it. TLS is always verified (see [`latch_store::pg_tls`]).
pub async fn connect(conn: &DbConnection, password: &str) -> Result<tokio_postgres::Client, TargetError> {
    let port =
        u16::try_from(conn.port).map_err(|_| TargetError::Config(format!("port {} is out of range", conn.port)))?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&conn.host)
        .port(port)
        .dbname(&conn.database)
        .user(&conn.username)
        .password(password)
        .application_name("latch")
        .connect_timeout(CONNECT_TIMEOUT);
    let where_ = format!("{}@{}:{}/{}", conn.username, conn.host, conn.port, conn.database);
    let timed_out =
        || TargetError::Unreachable(format!("connecting to {where_} timed out after {} s", CONNECT_TIMEOUT.as_secs()));
    let connecting = match conn.sslmode.as_str() {
        "disable" => {
            cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
            tokio::time::timeout(CONNECT_TIMEOUT, cfg.connect(NoTls)).await.map_err(|_| timed_out())?.map(run)
        }
        mode => {
            let tls = latch_store::pg_tls::VerifiedTls::new(conn.ca_cert.as_deref(), "ca_cert")
                .map_err(TargetError::Config)?;
            cfg.ssl_mode(if mode == "prefer" {
                tokio_postgres::config::SslMode::Prefer
            } else {
                tokio_postgres::config::SslMode::Require
            });
            tokio::time::timeout(CONNECT_TIMEOUT, cfg.connect(tls)).await.map_err(|_| timed_out())?.map(run)
        }
    };
    connecting.map_err(|e| match describe(&e, &[password]) {
        TargetError::Refused(m) => TargetError::Refused(format!("{where_}: {m}")),
        TargetError::Unreachable(m) => TargetError::Unreachable(format!("cannot connect to {where_}: {m}")),
        other => other,
    })
}

/// Runs the connection object, which does the IO, in the background; it
/// ends when the client is dropped.
fn run<S, T>((client, connection): (tokio_postgres::Client, tokio_postgres::Connection<S, T>)) -> tokio_postgres::Client
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "target database connection ended");
        }
    });
    client
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    secrets: &[&str],
) -> Result<T, TargetError> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| describe(&e, secrets)),
        Err(_) => Err(TargetError::Unreachable(format!("{what} timed out after {} s", STATEMENT_TIMEOUT.as_secs()))),
    }
}

/// Checks a connection about to be registered: it logs in, and its user
/// may create roles. The error says what to fix.
pub async fn check_connection(conn: &DbConnection, password: &str) -> Result<String, TargetError> {
    let client = connect(conn, password).await?;
    let row = timed(
        "checking the administrator's privileges",
        client.query_one(
            "SELECT rolsuper OR rolcreaterole, current_setting('server_version') FROM pg_roles WHERE rolname = current_user",
            &[],
        ),
        &[password],
    )
    .await?;
    let may: bool = row.get(0);
    if !may {
        return Err(TargetError::Refused(format!(
            "user {:?} may not create roles on {}:{}: grant it CREATEROLE (ALTER ROLE {} CREATEROLE) or use another",
            conn.username,
            conn.host,
            conn.port,
            quote_ident(&conn.username)
        )));
    }
    Ok(row.get(1))
}

/// A role name latch owns: `latch_<user>_<random>`, only `[a-z0-9_]`, at
/// most 63 bytes, with 50 random bits so names never repeat.
pub fn role_name(user: &str) -> Result<String, latch_crypto::CryptoError> {
    let mut who: String = user
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '_' })
        .collect();
    let suffix = random_from(b"abcdefghijklmnopqrstuvwxyz234567", 10)?;
    // "latch_" + who + "_" + suffix
    who.truncate(MAX_ROLE_NAME - 6 - 1 - suffix.len());
    Ok(format!("latch_{who}_{suffix}"))
}

/// A password from the OS CSPRNG: letters and digits only, so it needs no
/// escaping anywhere it travels (SQL, JSON, shells, connection URLs).
pub fn new_password() -> Result<Zeroizing<String>, latch_crypto::CryptoError> {
    random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", PASSWORD_LEN).map(Zeroizing::new)
}

/// `n` characters drawn uniformly from `alphabet` (rejection sampling, no modulo bias).
fn random_from(alphabet: &[u8], n: usize) -> Result<String, latch_crypto::CryptoError> {
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(n);
    while out.len() < n {
        for b in Zeroizing::new(latch_crypto::random_bytes(n * 2)?).iter() {
            if usize::from(*b) < limit && out.len() < n {
                out.push(char::from(alphabet[usize::from(*b) % alphabet.len()]));
            }
        }
    }
    Ok(out)
}

/// A lease id in Vault's shape: `database/creds/<role>/<random>`.
pub fn lease_id(role: &str) -> Result<String, latch_crypto::CryptoError> {
    Ok(format!(
        "database/creds/{role}/{}",
        random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 24)?
    ))
}

/// `VALID UNTIL` / `{{expiration}}`: ISO 8601 in UTC, which PostgreSQL reads as `timestamptz`.
pub fn expiration(t: Timestamp) -> String {
    t.to_rfc3339()
}

/// The advisory lock key creation transactions queue on (arbitrary, fixed).
const CREATION_LOCK: i64 = 0x6c61_7463_6864;
/// Attempts at a creation transaction that conflicts with concurrent ones.
const CREATE_ATTEMPTS: u32 = 8;

/// Runs the creation statements of a credential in one transaction on its
/// target; nothing is left behind when one fails. Concurrent creations can
/// conflict inside PostgreSQL (two `GRANT`s on one table: "tuple
/// concurrently updated"); the transaction rolled back, so it is retried
/// after a short random pause.
pub async fn create_role(
    st: &AppState,
    conn: &DbConnection,
    statements: &[Template],
    values: &Values<'_>,
) -> Result<(), TargetError> {
    let mut attempt = 1;
    loop {
        match create_role_once(st, conn, statements, values).await {
            Err(TargetError::Transient(m)) if attempt < CREATE_ATTEMPTS => {
                tracing::debug!(attempt, error = %m, "creation conflicted with a concurrent one; retrying");
                tokio::time::sleep(jitter(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Whether a statement is a `CREATE ROLE`/`CREATE USER` (and nothing else).
fn creates_role(sql: &str) -> bool {
    let words: Vec<String> = sql.split_whitespace().take(2).map(str::to_ascii_uppercase).collect();
    words.len() == 2
        && words[0] == "CREATE"
        && (words[1] == "ROLE" || words[1] == "USER")
        && !sql.trim_end_matches([';', ' ', '\n']).contains(';')
}

/// A short random pause before retry `attempt`, so conflicting transactions spread out.
fn jitter(attempt: u32) -> Duration {
    let r = latch_crypto::random_bytes(1).ok().and_then(|b| b.first().copied()).map_or(128, u64::from);
    Duration::from_millis(2 + r % (8 * u64::from(attempt)))
}

async fn create_role_once(
    st: &AppState,
    conn: &DbConnection,
    statements: &[Template],
    values: &Values<'_>,
) -> Result<(), TargetError> {
    let mut client = st.db.client(conn).await?;
    let secrets = [values.password];
    let result = async {
        let tx = timed("BEGIN", client.transaction(), &secrets).await?;
        let mut locked = false;
        for s in statements {
            // One creation at a time per target database, from every latch
            // node, past its CREATE ROLE: the statements after it typically
            // GRANT on shared objects, and concurrent GRANTs on one object
            // fail ("tuple concurrently updated") rather than wait. CREATE
            // ROLE itself (where PostgreSQL hashes the password) runs
            // concurrently.
            if !locked && !creates_role(s.source()) {
                timed(
                    "waiting for the creation lock",
                    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CREATION_LOCK]),
                    &secrets,
                )
                .await?;
                locked = true;
            }
            timed("a creation statement", tx.batch_execute(&s.render(values)), &secrets).await?;
        }
        timed("COMMIT", tx.commit(), &secrets).await
    }
    .await;
    if result.is_ok() || matches!(result, Err(TargetError::Refused(_) | TargetError::Transient(_))) {
        // A refused statement rolled back cleanly: the client is still good.
        st.db.give_back(conn, client);
    }
    result
}

/// Sets a live role's `VALID UNTIL` (lease renewal).
pub async fn set_valid_until(
    st: &AppState,
    conn: &DbConnection,
    role: &str,
    until: Timestamp,
) -> Result<(), TargetError> {
    let client = st.db.client(conn).await?;
    let sql = format!(
        "ALTER ROLE {} VALID UNTIL {}",
        quote_ident(role),
        latch_policy::pg_template::quote_literal(&expiration(until))
    );
    let r = timed("ALTER ROLE", client.batch_execute(&sql), &[]).await;
    st.db.give_back(conn, client);
    r
}

/// Drops a credential's role: no new logins (`NOLOGIN`, committed first, so
/// nobody slips in while sessions are being ended), then the revocation
/// statements in one transaction, then a check that the role is gone.
/// Ok(false) when the role did not exist (never created, or dropped by hand).
pub async fn drop_role(st: &AppState, cred: &DbCredential) -> Result<bool, TargetError> {
    let conn =
        st.store.db_connection(&cred.connection).await.map_err(|e| TargetError::Config(e.to_string()))?.ok_or_else(
            || {
                TargetError::Config(format!(
                    "database connection {:?} no longer exists: add it again so the role can be dropped",
                    cred.connection
                ))
            },
        )?;
    let mut client = st.db.client(&conn).await?;
    let exists = async |client: &tokio_postgres::Client| -> Result<bool, TargetError> {
        let rows = timed(
            "looking the role up",
            client.query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&cred.username]),
            &[],
        )
        .await?;
        Ok(!rows.is_empty())
    };
    let result = async {
        if !exists(&client).await? {
            return Ok(false);
        }
        let ident = quote_ident(&cred.username);
        timed("ALTER ROLE … NOLOGIN", client.batch_execute(&format!("ALTER ROLE {ident} NOLOGIN")), &[]).await?;
        let values = Values { name: &cred.username, password: "", expiration: "" };
        let tx = timed("BEGIN", client.transaction(), &[]).await?;
        for s in &cred.revocation {
            let t = Template::parse(s).map_err(|e| TargetError::Config(format!("stored revocation statement: {e}")))?;
            timed("a revocation statement", tx.batch_execute(&t.render(&values)), &[]).await?;
        }
        timed("COMMIT", tx.commit(), &[]).await?;
        if exists(&client).await? {
            return Err(TargetError::Config(format!(
                "the revocation statements ran but role {:?} still exists: they must DROP ROLE {{{{name}}}}",
                cred.username
            )));
        }
        Ok(true)
    }
    .await;
    if !matches!(result, Err(TargetError::Unreachable(_))) {
        st.db.give_back(&conn, client);
    }
    result
}

/// The delay before retry number `attempts` (1-based): 1 s doubling, at most [`MAX_BACKOFF`].
pub fn backoff(attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    Duration::from_secs(1u64 << exp).min(MAX_BACKOFF)
}

/// Drops the roles of credentials marked `revoking`, on the leader only:
/// promptly when woken (a revocation on this node) or when the store's
/// invalidation feed moves (one on another node), else every second.
pub async fn revoker(st: AppState) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = st.store.invalidation_epoch();
    let mut last_pass = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = st.db.wake.notified() => {}
            _ = tick.tick() => {
                let epoch = st.store.invalidation_epoch();
                if epoch == seen && last_pass.elapsed() < REVOKE_POLL {
                    continue;
                }
                seen = epoch;
            }
        }
        last_pass = tokio::time::Instant::now();
        if !st.store.is_leader() || ensure_unsealed(&st).is_err() {
            continue;
        }
        revoke_due(&st).await;
    }
}

/// One pass: every credential due, a few at a time.
pub async fn revoke_due(st: &AppState) {
    let due = match st.store.due_db_revocations(st.clock.now(), 200).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the database credentials to revoke");
            return;
        }
    };
    let mut running = tokio::task::JoinSet::new();
    for cred in due {
        while running.len() >= REVOKE_CONCURRENCY {
            let _ = running.join_next().await;
        }
        let st = st.clone();
        running.spawn(async move { revoke_one(&st, cred).await });
    }
    while running.join_next().await.is_some() {}
}

async fn revoke_one(st: &AppState, cred: DbCredential) {
    let target = format!("lease:{}", cred.lease_id);
    let facts = json!({ "lease_id": cred.lease_id, "grant_id": cred.grant_id, "username": cred.username,
                        "connection": cred.connection, "role": cred.role });
    let mut result = drop_role(st, &cred).await;
    // Conflicts with concurrent drops (privileges on one shared object) are
    // not failures worth an alert: retry them at once.
    for attempt in 1..CREATE_ATTEMPTS {
        if !matches!(result, Err(TargetError::Transient(_))) {
            break;
        }
        tokio::time::sleep(jitter(attempt)).await;
        result = drop_role(st, &cred).await;
    }
    match result {
        Ok(existed) => {
            let mut details = facts;
            details["role_existed"] = json!(existed);
            if let Some(at) = cred.revoke_requested_at {
                details["seconds_since_requested"] = json!((st.clock.now().millis() - at.millis()) as f64 / 1000.0);
            }
            let ev = AuditDraft::new("system", "db.creds.revoked", target).details(details);
            match st.store.finish_db_revocation(&cred.lease_id, ev).await {
                Ok(_) => tracing::info!(lease_id = %cred.lease_id, username = %cred.username, "database role dropped"),
                Err(e) => {
                    tracing::error!(error = %e, lease_id = %cred.lease_id, "cannot record a dropped database role")
                }
            }
        }
        Err(e) => {
            st.metrics.revocation_failed();
            let error = e.to_string();
            let attempts = cred.revoke_attempts + 1;
            let next = st.clock.now().plus(backoff(attempts));
            tracing::warn!(lease_id = %cred.lease_id, username = %cred.username, attempts, error = %error,
                           "cannot drop a database role; will retry");
            let mut details = facts;
            details["error"] = json!(error);
            details["next_attempt_at"] = json!(next.to_rfc3339());
            let ev =
                AuditDraft::new("system", "db.creds.revoke_failed", target).outcome(Outcome::Failure).details(details);
            if let Err(e) = st.store.fail_db_revocation(&cred.lease_id, &error, next, ev).await {
                tracing::error!(error = %e, lease_id = %cred.lease_id, "cannot record a failed database role drop");
            }
        }
    }
}

/// Marks one lease or a prefix for revocation and wakes the revoker.
pub async fn request_revocation(st: &AppState, sel: LeaseSelector, audit: AuditDraft) -> ApiResult<Vec<String>> {
    let leases = st.store.request_db_revocation(sel, audit).await?;
    if !leases.is_empty() {
        st.db.wake_revoker();
    }
    Ok(leases)
}

/// The target error as an API error: unreachable is 503 (retry), the rest
/// 409 naming what to fix.
pub fn api_error(context: &str, e: TargetError) -> ApiError {
    match e {
        TargetError::Unreachable(m) | TargetError::Transient(m) => {
            ApiError::Unavailable(format!("{context}: {m}; retry shortly"))
        }
        TargetError::Refused(m) | TargetError::Config(m) => ApiError::Conflict(format!("{context}: {m}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_safe_and_bounded() {
        let n = role_name("alice").unwrap();
        assert!(n.starts_with("latch_alice_") && n.len() == "latch_alice_".len() + 10, "{n}");
        let long = "A-very.Long-name".repeat(10);
        let n = role_name(&long).unwrap();
        assert!(n.len() <= MAX_ROLE_NAME, "{n}");
        assert!(n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{n}");
        assert_ne!(role_name("alice").unwrap(), role_name("alice").unwrap());
    }

    #[test]
    fn passwords_are_long_alphanumeric_and_fresh() {
        let (a, b) = (new_password().unwrap(), new_password().unwrap());
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(*a, *b);
    }

    #[test]
    fn lease_ids_have_vaults_shape() {
        let l = lease_id("app-read").unwrap();
        let parts: Vec<&str> = l.split('/').collect();
        assert_eq!(parts[..3], ["database", "creds", "app-read"]);
        assert_eq!(parts[3].len(), 24);
    }

    #[test]
    fn sealed_passwords_open_only_for_their_connection() {
        let ring = latch_crypto::keyring::Keyring::generate(0).unwrap();
        let sealed = seal_with(&ring, "app-db", "hunter2-but-longer").unwrap();
        assert!(!sealed.contains("hunter2") && sealed.starts_with("mk:1:"));
        assert_eq!(open_with(&ring, "app-db", &sealed).unwrap().as_str(), "hunter2-but-longer");
        let e = open_with(&ring, "other-db", &sealed).unwrap_err();
        assert!(e.contains("does not open") && !e.contains("hunter2"), "{e}");
        let other = latch_crypto::keyring::Keyring::generate(0).unwrap();
        assert!(open_with(&other, "app-db", &sealed).is_err());
        assert!(open_with(&ring, "app-db", "not-sealed").is_err());
        // Still opens after a master key rotation.
        assert!(open_with(&ring.rotated(1).unwrap(), "app-db", &sealed).is_ok());
    }

    #[test]
    fn rewrapping_moves_a_password_to_the_active_master_key_and_keeps_it() {
        let ring = latch_crypto::keyring::Keyring::generate(0).unwrap();
        let sealed = seal_with(&ring, "app-db", "hunter2-but-longer").unwrap();
        assert_eq!(rewrap_with(&ring, "app-db", &sealed).unwrap(), None, "already under the active key");
        let rotated = ring.rotated(1).unwrap();
        let new = rewrap_with(&rotated, "app-db", &sealed).unwrap().unwrap();
        assert!(new.starts_with(&format!("mk:{}:", rotated.active())) && !new.contains("hunter2"), "{new}");
        assert_eq!(open_with(&rotated, "app-db", &new).unwrap().as_str(), "hunter2-but-longer");
        assert_eq!(rewrap_with(&rotated, "app-db", &new).unwrap(), None);
        assert!(waits_for_rewrap(&sealed, rotated.active()) && !waits_for_rewrap(&new, rotated.active()));
        assert!(waits_for_rewrap("not-sealed", rotated.active()), "an unreadable one is counted, not hidden");
        // Bound to its connection still: a re-wrap does not launder it to another.
        assert!(open_with(&rotated, "other-db", &new).is_err());
        assert!(rewrap_with(&rotated, "other-db", &sealed).is_err());
    }

    #[test]
    fn only_a_lone_create_role_runs_outside_the_creation_lock() {
        assert!(creates_role("CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';"));
        assert!(creates_role("  create user {{name}} password {{password}}"));
        assert!(!creates_role("GRANT SELECT ON items TO {{name}}"));
        assert!(!creates_role("CREATE ROLE {{name}}; GRANT SELECT ON items TO {{name}}"));
        assert!(!creates_role("CREATE TABLE t (x INT)"));
    }

    #[test]
    fn errors_are_scrubbed_and_backoff_is_capped() {
        assert_eq!(scrub("bad value 'Secr3t' near x", &["Secr3t"]), "bad value '[redacted]' near x");
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(40), MAX_BACKOFF);
        assert_eq!(backoff(0), Duration::from_secs(1));
    }
}
