//! Starting and stopping a server: open the store and keys, bootstrap the
//! first administrator, listen (TLS or loopback HTTP), write checkpoints
//! periodically, and on SIGTERM/SIGINT drain requests and seal the log with
//! a final checkpoint.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum_server::Handle;
use latch_audit::AuditDraft;
use latch_core::principal::ADMIN_GROUP;
use latch_core::{Clock, OffsetClock, PrincipalKind, SystemClock};
use latch_crypto::{Secret, SigningKey, new_id, new_token, token_hash};
use latch_store::{NewSession, NewUser, SqlStore, Store, StoreError};
use serde_json::json;

use crate::config::{Config, Storage};
use crate::jobs;
use crate::keys::{self, KeyError};
use crate::state::{AppState, Inner, NotifyStatus};
use latch_policy::Bundle;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot use data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot load TLS certificate or key: {0}")]
    Tls(std::io::Error),
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Crypto(#[from] latch_crypto::CryptoError),
    #[error("the stored policy version no longer validates: {0}")]
    Policy(String),
    #[error("issuer keys (SSH CA, token signing keys): {0}")]
    SshCa(String),
    #[error("seal: {0}")]
    Seal(String),
}

pub struct ServeOptions {
    pub config: Config,
    /// Dev mode: a bootstrap admin token is minted on every start.
    pub dev: bool,
    /// Dev only: let admins move the clock forward through the API.
    pub test_clock: bool,
    /// Dev mode: initialize the seal with one share kept in the data
    /// directory, and unseal with it on every start.
    pub auto_unseal: bool,
}

/// What the binary prints once the server listens.
pub struct Ready {
    pub url: String,
    pub data_dir: PathBuf,
    /// Where state lives, for people: "SQLite in DIR" or "PostgreSQL".
    pub storage: String,
    pub bootstrap_token: Option<Secret>,
}

/// The bootstrap admin's name, created on first start.
pub const BOOTSTRAP_ADMIN: &str = "admin";

pub async fn run(opts: ServeOptions, on_ready: impl FnOnce(Ready)) -> Result<(), ServeError> {
    let cfg = &opts.config;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data_dir = cfg.data_dir.clone();
    let dir_err = |source| ServeError::DataDir { path: data_dir.clone(), source };
    std::fs::create_dir_all(&data_dir).map_err(dir_err)?;
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700)).map_err(dir_err)?;

    let test_clock = (opts.dev && opts.test_clock).then(OffsetClock::new);
    let clock: Arc<dyn Clock> = match &test_clock {
        Some(c) => Arc::new(c.clone()),
        None => Arc::new(SystemClock),
    };
    let sql_store = Arc::new(match &cfg.storage {
        Storage::Sqlite => SqlStore::open_sqlite(&data_dir.join("latch.db"), clock.clone())?,
        Storage::Postgres { dsn, options } => SqlStore::open_postgres(dsn, options.clone(), clock.clone()).await?,
    });
    let store: Arc<dyn Store> = sql_store.clone();
    let audit_key = Arc::new(keys::load_or_create(&keys::audit_key_path(&data_dir))?);
    let dummy_hash = tokio::task::spawn_blocking(latch_crypto::password::dummy_hash)
        .await
        .map_err(|e| ServeError::Io(std::io::Error::other(e)))??;

    let listener =
        std::net::TcpListener::bind(cfg.listen).map_err(|source| ServeError::Listen { addr: cfg.listen, source })?;
    let local = listener.local_addr()?;
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{local}");
    let issuer = cfg.public_url.clone().unwrap_or_else(|| url.clone());
    let policy = match store.active_policy().await? {
        Some(v) => Bundle::from_files(&v.files).map_err(|e| ServeError::Policy(e.to_string()))?,
        None => Bundle::empty(),
    };

    let barrier = Arc::new(crate::barrier::Barrier::default());
    let state = AppState(Arc::new(Inner {
        store: store.clone(),
        clock: clock.clone(),
        audit_key: audit_key.clone(),
        auth: cfg.auth.clone(),
        test_clock,
        dummy_hash,
        policy: RwLock::new(Arc::new(policy)),
        issuer_keys: Default::default(),
        data_dir: data_dir.clone(),
        issuer,
        jit: cfg.jit.clone(),
        notify: Mutex::new(NotifyStatus::default()),
        verified: Default::default(),
        metrics: Arc::new(crate::metrics::Metrics::new(sql_store.audit_latency(), clock.now())),
        metrics_settings: cfg.metrics.clone(),
        oidc_keys: Arc::new(crate::oidc::IssuerKeys::new(Arc::new(crate::oidc::HttpFetch::new()))),
        oidc_providers: cfg.oidc.clone(),
        slo: cfg.slo.clone(),
        barrier: barrier.clone(),
        db: Arc::new(crate::db_creds::DbCreds::new(crate::db_creds::PasswordSealer::new(
            barrier.clone(),
            store.clone(),
        ))),
    }));
    if opts.auto_unseal {
        dev_unseal(&state, &data_dir).await?;
    }
    // Sealed, this loads the public halves only; unsealed (dev mode) it also
    // opens the private ones, first creating or migrating them.
    state.reload_issuers().await.map_err(|e| ServeError::SshCa(e.to_string()))?;

    store
        .append_audit(
            AuditDraft::new("system", "system.start", "system:server")
                .details(json!({ "version": env!("CARGO_PKG_VERSION"), "dev": opts.dev })),
        )
        .await?;
    let bootstrap_token = bootstrap(&state, opts.dev).await?;

    let (router, _doc) = crate::api(state.clone());
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    let handle: Handle<SocketAddr> = Handle::new();

    let signals = tokio::spawn(shutdown_on_signal(handle.clone()));
    let mut background = vec![
        tokio::spawn(checkpoint_ticker(store.clone(), audit_key.clone(), cfg.checkpoint_interval)),
        tokio::spawn(jobs::sweeper(state.clone())),
        tokio::spawn(jobs::prune_token_keys(state.clone())),
        tokio::spawn(jobs::follow_issuer_keys(state.clone())),
        tokio::spawn(jobs::follow_policy(state.clone())),
        tokio::spawn(crate::checkin::run(state.clone())),
        tokio::spawn(crate::db_creds::revoker(state.clone())),
    ];
    if let Some(url) = cfg.jit.webhook.clone() {
        background.push(tokio::spawn(jobs::notifier(state.clone(), url)));
    }
    background.push(tokio::spawn(crate::alerts::run(state.clone(), cfg.alerts.clone())));
    for sink in cfg.siem.clone() {
        background.push(tokio::spawn(crate::siem::export(state.clone(), sink)));
    }

    let storage = match &cfg.storage {
        Storage::Sqlite => format!("data in {} (SQLite, WAL)", data_dir.display()),
        Storage::Postgres { .. } => format!("data in PostgreSQL, keys in {}", data_dir.display()),
    };
    on_ready(Ready { url, data_dir: data_dir.clone(), storage, bootstrap_token });
    tracing::info!(addr = %local, tls = cfg.tls.is_some(), dev = opts.dev, "latch listening");

    let served = match &cfg.tls {
        Some(files) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
                .await
                .map_err(ServeError::Tls)?;
            axum_server::from_tcp_rustls(listener, tls)?.handle(handle).serve(app).await
        }
        None => axum_server::from_tcp(listener)?.handle(handle).serve(app).await,
    };
    signals.abort();
    for task in background {
        task.abort();
    }

    // Seal the log: the stop event and a checkpoint over it.
    let stop = store.append_audit(AuditDraft::new("system", "system.stop", "system:server")).await;
    let cp = store.write_checkpoint(audit_key).await;
    sql_store.close();
    served?;
    stop?;
    cp?;
    tracing::info!("latch stopped");
    Ok(())
}

async fn shutdown_on_signal(handle: Handle<SocketAddr>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    handle.graceful_shutdown(Some(Duration::from_secs(10)));
}

async fn checkpoint_ticker(store: Arc<dyn Store>, key: Arc<SigningKey>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        if !store.is_leader() {
            continue;
        }
        match store.write_checkpoint(key.clone()).await {
            Ok(Some(cp)) => tracing::debug!(seq = cp.seq, "audit checkpoint written"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot write audit checkpoint"),
        }
    }
}

/// A bootstrap step that another node may have done first.
fn done<T>(r: Result<T, StoreError>) -> Result<(), StoreError> {
    match r {
        Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// On an empty store, creates group `admins` and user `admin` in it. Mints a
/// bootstrap session for `admin` on first start, and on every dev start.
async fn bootstrap(st: &AppState, dev: bool) -> Result<Option<Secret>, ServeError> {
    let first = st.store.is_empty().await?;
    if first {
        let ev = |action: &str, target: String| {
            AuditDraft::new("system", action, target).details(json!({ "bootstrap": true }))
        };
        // Nodes sharing a database may start together: the loser of the race
        // finds the bootstrap done (a conflict), which is fine.
        done(
            st.store
                .create_group(ADMIN_GROUP, "latch administrators", ev("group.create", format!("group:{ADMIN_GROUP}")))
                .await,
        )?;
        let admin = NewUser { id: new_id("usr")?, name: BOOTSTRAP_ADMIN.into(), password_hash: None };
        done(
            st.store
                .create_user(admin, vec![ADMIN_GROUP.into()], ev("user.create", format!("user:{BOOTSTRAP_ADMIN}")))
                .await,
        )?;
    }
    if !(first || dev) {
        return Ok(None);
    }
    let Some(admin) = st.store.get_user(BOOTSTRAP_ADMIN).await? else {
        tracing::warn!("user {BOOTSTRAP_ADMIN:?} no longer exists: no bootstrap token minted");
        return Ok(None);
    };
    let token = new_token("lts")?;
    let session = NewSession {
        id: new_id("ses")?,
        token_hash: token_hash(token.expose()),
        principal_id: admin.id,
        principal_kind: PrincipalKind::User,
        mfa: false,
        source: "bootstrap".into(),
        expires_at: st.clock.now().plus(st.auth.session_ttl),
        clears_failures: None,
    };
    let ev = AuditDraft::new("system", "auth.bootstrap_token", format!("user:{BOOTSTRAP_ADMIN}"))
        .details(json!({ "session_id": session.id }));
    st.store.login(session, None, ev).await?;
    Ok(Some(token))
}

/// Dev mode unseals itself, as Vault's dev server does: on first start it
/// initializes the seal with one share and keeps that share in the data
/// directory (which is what makes dev mode unfit for real secrets).
async fn dev_unseal(st: &AppState, data_dir: &std::path::Path) -> Result<(), ServeError> {
    let path = keys::dev_unseal_path(data_dir);
    let store = st.store.as_ref();
    let err = |e: crate::error::ApiError| ServeError::Seal(e.to_string());
    if store.seal_config().await?.is_none() {
        let audit = AuditDraft::new("system", "seal.init", "system:seal").details(json!({ "dev": true }));
        match st.barrier.init(store, 1, 1, st.clock.now(), audit).await {
            Ok(shares) => {
                let share = shares.first().map(|s| latch_crypto::hex(s)).unwrap_or_default();
                keys::write_secret_file(&path, &share)?;
                return Ok(());
            }
            // Another node initialized first.
            Err(crate::error::ApiError::Conflict(_)) => {}
            Err(e) => return Err(err(e)),
        }
    }
    let share = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                "dev mode: no {} — latch stays sealed: unseal it with `latch operator unseal`",
                path.display()
            );
            return Ok(());
        }
        Err(source) => return Err(KeyError::Read { path, source }.into()),
    };
    let share = crate::barrier::decode_share(&share).map_err(err)?;
    st.barrier.submit_share(store, Some(&share), true).await.map_err(err)?;
    if st.barrier.is_sealed() {
        return Err(ServeError::Seal(format!("{} does not unseal this data directory", path.display())));
    }
    Ok(())
}
