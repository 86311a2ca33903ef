//! Shared server state.

use std::ops::Deref;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use latch_core::ratelimit::Limit;
use latch_core::{Clock, OffsetClock};
use latch_crypto::SigningKey;
use latch_policy::Bundle;
use latch_store::Store;

/// Tunables of authentication, from `[auth]` in latch.toml.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    pub session_ttl: Duration,
    pub sp_session_ttl: Duration,
    pub per_identity: Limit,
    pub per_source: Limit,
    /// Lifetime of a session from token exchange (workload identity).
    pub exchange_session_ttl: Duration,
    /// Lifetime of a service principal's secret unless it sets its own; `None`: never expires.
    pub sp_secret_lifetime: Option<Duration>,
    /// Refused token exchanges per source address (not login lockouts).
    pub exchange_refusals_per_source: Limit,
    /// Anonymous OIDC sign-in starts (each stores a pending row) per source.
    pub oidc_starts_per_source: Limit,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            session_ttl: Duration::from_secs(8 * 3600),
            sp_session_ttl: Duration::from_secs(3600),
            per_identity: Limit { max_failures: 5, window: Duration::from_secs(300) },
            per_source: Limit { max_failures: 20, window: Duration::from_secs(300) },
            exchange_session_ttl: Duration::from_secs(15 * 60),
            sp_secret_lifetime: None,
            exchange_refusals_per_source: Limit { max_failures: 30, window: Duration::from_secs(300) },
            oidc_starts_per_source: Limit { max_failures: 30, window: Duration::from_secs(300) },
        }
    }
}

/// Tunables of the request workflow, from `[requests]` and `[notify]`.
#[derive(Clone, Debug)]
pub struct JitSettings {
    /// How long a request may wait for approval before it times out.
    pub request_timeout: Duration,
    /// Where request and break-glass notifications are POSTed.
    pub webhook: Option<String>,
}

impl Default for JitSettings {
    fn default() -> Self {
        JitSettings { request_timeout: Duration::from_secs(24 * 3600), webhook: None }
    }
}

/// Who may read `/metrics`, from `[metrics]`.
#[derive(Clone, Debug, Default)]
pub struct MetricsSettings {
    /// Serve `/metrics` without authentication (for a scraper on a trusted
    /// network). Otherwise it takes the bearer token of an administrator or of
    /// a member of group `metrics-readers`.
    pub public: bool,
}

/// Targets of the service-level objectives reported by `/v1/slo`, from `[slo]`
/// (see [`crate::slo`] for what each SLI measures).
#[derive(Clone, Debug, PartialEq)]
pub struct SloSettings {
    /// M1: share of privileged SSH access that was recorded, at least (0 < t < 1).
    pub recorded_target: f64,
    /// M2: p99 of time-to-grant for automatic activations, at most.
    pub time_to_grant_auto_p99: Duration,
    /// M2: median time-to-grant for human approvals, at most.
    pub time_to_grant_human_p50: Duration,
    /// M3: share of privileged operations done with JIT credentials, at least (0 < t < 1).
    pub jit_target: f64,
    /// M4: long-lived privileged credentials, at most.
    pub long_lived_max: u64,
    /// M4: a service principal's secret older than this is long-lived.
    pub sp_secret_max_age: Duration,
    /// M4: a signing key (SSH CA, token key) older than this is long-lived.
    pub signing_key_max_age: Duration,
    /// M4: a stored secret whose current value is older than this is long-lived.
    pub static_secret_max_age: Duration,
    /// M4: a token or SSH certificate valid for longer than this is long-lived.
    pub credential_max_lifetime: Duration,
    /// M5: break-glass uses allowed per `breakglass_period`.
    pub breakglass_budget: u64,
    pub breakglass_period: Duration,
    /// M6: p99 of time-to-revoke, at most.
    pub time_to_revoke_p99: Duration,
}

impl Default for SloSettings {
    /// The guide's starting targets (pim-guide, "How to Measure"), tightened
    /// where latch does better by construction (automatic grants in seconds).
    fn default() -> Self {
        const DAY: u64 = 86_400;
        SloSettings {
            recorded_target: 0.99,
            time_to_grant_auto_p99: Duration::from_secs(5),
            time_to_grant_human_p50: Duration::from_secs(5 * 60),
            jit_target: 0.90,
            long_lived_max: 4,
            sp_secret_max_age: Duration::from_secs(90 * DAY),
            signing_key_max_age: Duration::from_secs(365 * DAY),
            static_secret_max_age: Duration::from_secs(90 * DAY),
            credential_max_lifetime: Duration::from_secs(DAY),
            breakglass_budget: 2,
            breakglass_period: Duration::from_secs(30 * DAY),
            time_to_revoke_p99: Duration::from_secs(60),
        }
    }
}

/// What the webhook deliverer last saw; failures are visible, never silent.
#[derive(Clone, Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct NotifyStatus {
    pub configured: bool,
    pub delivered: u64,
    pub failures: u64,
    pub consecutive_failures: u64,
    pub last_error: Option<String>,
    pub cursor: i64,
}

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub audit_key: Arc<SigningKey>,
    pub auth: AuthSettings,
    /// Present only on a dev server started with `--test-clock`.
    pub test_clock: Option<OffsetClock>,
    /// Verified against when a login names no user, to equalise timing.
    pub dummy_hash: String,
    /// The policy bundle in force; replaced whole by `apply`.
    pub policy: RwLock<Arc<Bundle>>,
    /// The SSH user CA and token signing keys (private halves only while unsealed).
    pub issuer_keys: crate::issuer_keys::IssuerKeyring,
    /// Where this node keeps its key files.
    pub data_dir: std::path::PathBuf,
    /// `iss` of issued tokens: the server's public URL.
    pub issuer: String,
    pub jit: JitSettings,
    pub notify: Mutex<NotifyStatus>,
    /// Tokens whose signature verified (see [`crate::verified`]).
    pub verified: crate::verified::VerifiedTokens,
    /// This node's counters and histograms, served at `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    pub metrics_settings: MetricsSettings,
    /// Signing keys of trusted external OpenID Connect issuers.
    pub oidc_keys: Arc<crate::oidc::IssuerKeys>,
    /// Identity providers people sign in with.
    pub oidc_providers: Vec<crate::oidc_providers::OidcProvider>,
    /// Targets of `/v1/slo`.
    pub slo: SloSettings,
    /// Whether this node holds the keys to stored secrets.
    pub barrier: Arc<crate::barrier::Barrier>,
    /// Dynamic database credentials: sealed connection passwords, pooled
    /// clients, the revoker's doorbell.
    pub db: Arc<crate::db_creds::DbCreds>,
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
    pub fn policy(&self) -> Arc<Bundle> {
        self.policy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn set_policy(&self, b: Arc<Bundle>) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = b;
    }
    /// The issuer keys as they stand (see [`crate::issuer_keys`]).
    pub fn issuers(&self) -> Arc<crate::issuer_keys::Issuers> {
        self.issuer_keys.get()
    }
    /// Re-reads the issuer keys: after unseal (opens, migrates or creates them) and changes.
    pub async fn reload_issuers(&self) -> Result<(), crate::error::ApiError> {
        self.issuer_keys.reload(&self.store, &self.barrier, &self.data_dir).await
    }
    pub fn notify_status(&self) -> std::sync::MutexGuard<'_, NotifyStatus> {
        self.notify.lock().unwrap_or_else(|p| p.into_inner())
    }
}
