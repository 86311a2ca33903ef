//! The live connections, by grant, and the watch that ends them: the server
//! is asked every poll interval which of their grants have ended (revoked or
//! expired), and those connections are closed at once — the user is told
//! why, then both SSH connections are cut.
//!
//! If the server cannot be reached, revocations cannot be learned: sessions
//! go on for at most `max_offline`, then are closed too (fail closed, after
//! a grace that rides out a server restart).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use russh::client;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::control::Control;
use crate::session::Upstream;

/// Time between the user being told and the connections being cut.
const GRACE: Duration = Duration::from_millis(100);

struct Entry {
    grant: String,
    handle: russh::server::Handle,
    upstream: Option<Arc<client::Handle<Upstream>>>,
    kill: Arc<watch::Sender<Option<String>>>,
}

/// A registered connection's key.
#[derive(Debug)]
pub(crate) struct Registration(u64);

#[derive(Default)]
pub(crate) struct Live {
    next: Mutex<u64>,
    conns: Mutex<HashMap<u64, Entry>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Live {
    pub(crate) fn register(
        &self,
        grant: String,
        handle: russh::server::Handle,
        kill: Arc<watch::Sender<Option<String>>>,
    ) -> Registration {
        let id = {
            let mut n = lock(&self.next);
            *n += 1;
            *n
        };
        lock(&self.conns).insert(id, Entry { grant, handle, upstream: None, kill });
        Registration(id)
    }

    pub(crate) fn set_upstream(&self, r: &Registration, up: Arc<client::Handle<Upstream>>) {
        if let Some(e) = lock(&self.conns).get_mut(&r.0) {
            e.upstream = Some(up);
        }
    }

    pub(crate) fn unregister(&self, r: Registration) {
        lock(&self.conns).remove(&r.0);
    }

    /// Grants with live connections.
    pub fn grants(&self) -> Vec<String> {
        let mut g: Vec<String> = lock(&self.conns).values().map(|e| e.grant.clone()).collect();
        g.sort();
        g.dedup();
        g
    }

    /// Ends every connection whose grant is in `grants` (all when None).
    pub fn end(&self, grants: Option<&[String]>, why: &str) -> usize {
        let doomed: Vec<Entry> = {
            let mut conns = lock(&self.conns);
            let ids: Vec<u64> =
                conns.iter().filter(|(_, e)| grants.is_none_or(|g| g.contains(&e.grant))).map(|(id, _)| *id).collect();
            ids.iter().filter_map(|id| conns.remove(id)).collect()
        };
        let n = doomed.len();
        for e in doomed {
            info!(grant = %e.grant, "ending session: {why}");
            let _ = e.kill.send(Some(why.to_string()));
            let why = why.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(GRACE).await;
                let reason = format!("latch: {why}");
                let _ = e.handle.disconnect(russh::Disconnect::ByApplication, reason.clone(), "en".into()).await;
                if let Some(up) = e.upstream {
                    let _ = up.disconnect(russh::Disconnect::ByApplication, &reason, "en").await;
                }
            });
        }
        n
    }
}

/// Polls the server about the grants of live connections, forever.
pub(crate) async fn watch_grants(live: Arc<Live>, control: Arc<dyn Control>, every: Duration, max_offline: Duration) {
    let mut last_ok = Instant::now();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let grants = live.grants();
        if grants.is_empty() {
            last_ok = Instant::now();
            continue;
        }
        match control.ended_grants(grants).await {
            Ok(ended) => {
                last_ok = Instant::now();
                for g in ended {
                    live.end(Some(std::slice::from_ref(&g.id)), &format!("grant {} was {}", g.id, g.state));
                }
            }
            Err(e) => {
                let offline = last_ok.elapsed();
                warn!(error = %e, offline_ms = offline.as_millis() as u64, "cannot confirm the grants of live sessions");
                if offline >= max_offline {
                    live.end(None, "the latch server has been unreachable too long to confirm the grant");
                }
            }
        }
    }
}
