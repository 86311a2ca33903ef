//! A per-node cache of the two hottest reads: resolving a session token to
//! its principal (every API call) and a token id to its token and grant
//! (every introspection). On SQLite the only invalidations are this
//! process's own commits; on PostgreSQL they also come from other nodes.
//!
//! Why it cannot extend access: an entry is served only while
//! - the node's invalidation **epoch** is the one it was read under: every
//!   change that could make an entry stale (revocation, disable, deletion,
//!   membership change) bumps a counter in the same transaction, and every
//!   node bumps its epoch when it hears of it — at once through
//!   LISTEN/NOTIFY, and within one poll through reconciliation with the
//!   counter, should a notification be lost;
//! - the invalidation feed is **live**: a node that lost its listener
//!   connection serves nothing from cache until it is back;
//! - it is younger than [`MAX_AGE`], and the session it names has not
//!   expired (expiry is judged by the caller's clock on every hit).
//!
//! The epoch is read *before* the database, so a result read just before a
//! concurrent revocation commits is tagged with the old epoch and is never
//! served after the bump.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latch_core::{Principal, Timestamp};

use crate::model::{Grant, IssuedToken};

/// Longest an entry is served, whatever else holds.
pub const MAX_AGE: Duration = Duration::from_secs(10);
/// Entries per map; a full map is emptied (revocations empty it anyway).
const MAX_ENTRIES: usize = 50_000;

/// The invalidation state shared by a store, its writer and its listener.
#[derive(Clone, Debug, Default)]
pub struct Invalidation {
    epoch: Arc<AtomicU64>,
    live: Arc<AtomicBool>,
}

impl Invalidation {
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }
    /// Something may be stale: every cached entry becomes unusable.
    pub fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
    pub fn set_live(&self, live: bool) {
        if !live {
            self.bump();
        }
        self.live.store(live, Ordering::Release);
    }
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }
}

struct Entry<T> {
    epoch: u64,
    at: Instant,
    value: T,
}

struct Map<T>(Mutex<HashMap<String, Entry<T>>>);

impl<T: Clone> Map<T> {
    fn new() -> Self {
        Map(Mutex::new(HashMap::new()))
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry<T>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn get(&self, key: &str, epoch: u64) -> Option<T> {
        let map = self.lock();
        let e = map.get(key)?;
        (e.epoch == epoch && e.at.elapsed() < MAX_AGE).then(|| e.value.clone())
    }
    fn put(&self, key: &str, epoch: u64, value: T) {
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key.to_string(), Entry { epoch, at: Instant::now(), value });
    }
}

/// The cached reads of one node.
pub struct ReadCache {
    pub inv: Invalidation,
    sessions: Map<(Principal, Timestamp)>,
    tokens: Map<(IssuedToken, Grant)>,
}

impl ReadCache {
    pub fn new(inv: Invalidation) -> Self {
        ReadCache { inv, sessions: Map::new(), tokens: Map::new() }
    }

    /// The epoch to tag a database read with, or None when the cache must
    /// not be used (the invalidation feed is down).
    pub fn ticket(&self) -> Option<u64> {
        self.inv.is_live().then(|| self.inv.epoch())
    }

    pub fn session(&self, token_hash: &str, now: Timestamp) -> Option<Principal> {
        let epoch = self.ticket()?;
        let (p, expires_at) = self.sessions.get(token_hash, epoch)?;
        (now < expires_at).then_some(p)
    }

    pub fn put_session(&self, token_hash: &str, ticket: u64, p: Principal, expires_at: Timestamp) {
        self.sessions.put(token_hash, ticket, (p, expires_at));
    }

    pub fn token(&self, jti: &str) -> Option<(IssuedToken, Grant)> {
        let epoch = self.ticket()?;
        self.tokens.get(jti, epoch)
    }

    pub fn put_token(&self, jti: &str, ticket: u64, v: (IssuedToken, Grant)) {
        self.tokens.put(jti, ticket, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latch_core::PrincipalKind;

    fn principal() -> Principal {
        Principal {
            id: "usr_1".into(),
            name: "alice".into(),
            kind: PrincipalKind::User,
            groups: vec![],
            mfa: false,
            session_id: "ses_1".into(),
            acr: String::new(),
            amr: vec![],
        }
    }

    #[test]
    fn entries_die_with_the_epoch_and_with_the_feed() {
        let inv = Invalidation::default();
        let c = ReadCache::new(inv.clone());
        assert!(c.ticket().is_none(), "no feed, no cache");
        inv.set_live(true);
        let t = c.ticket().unwrap();
        c.put_session("h", t, principal(), Timestamp(1_000));
        assert!(c.session("h", Timestamp(999)).is_some());
        assert!(c.session("h", Timestamp(1_000)).is_none(), "expired sessions are never served");
        inv.bump();
        assert!(c.session("h", Timestamp(0)).is_none(), "a bump invalidates");
        // A read tagged before a bump is never served after it.
        let stale = c.ticket().unwrap();
        inv.bump();
        c.put_session("h", stale, principal(), Timestamp(1_000));
        assert!(c.session("h", Timestamp(0)).is_none());
        let t = c.ticket().unwrap();
        c.put_session("h", t, principal(), Timestamp(1_000));
        inv.set_live(false);
        assert!(c.session("h", Timestamp(0)).is_none(), "feed down, cache off");
    }
}
