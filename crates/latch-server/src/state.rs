//! Shared server state.

use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latch_core::ratelimit::{FailureLimiter, Limit};
use latch_core::{Clock, OffsetClock};
use latch_crypto::SigningKey;
use latch_store::Store;

/// Tunables of authentication, from `[auth]` in latch.toml.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    pub session_ttl: Duration,
    pub sp_session_ttl: Duration,
    pub per_identity: Limit,
    pub per_source: Limit,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            session_ttl: Duration::from_secs(8 * 3600),
            sp_session_ttl: Duration::from_secs(3600),
            per_identity: Limit { max_failures: 5, window: Duration::from_secs(300) },
            per_source: Limit { max_failures: 20, window: Duration::from_secs(300) },
        }
    }
}

pub struct Limiters {
    pub identity: FailureLimiter,
    pub source: FailureLimiter,
}

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub audit_key: Arc<SigningKey>,
    pub auth: AuthSettings,
    pub limiters: Mutex<Limiters>,
    /// Present only on a dev server started with `--test-clock`.
    pub test_clock: Option<OffsetClock>,
    /// Verified against when a login names no user, to equalise timing.
    pub dummy_hash: String,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn limiters(&self) -> std::sync::MutexGuard<'_, Limiters> {
        self.limiters.lock().unwrap_or_else(|p| p.into_inner())
    }
}
