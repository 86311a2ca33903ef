//! The service-level indicators M1–M6 of the PIM guide ("How to Measure"),
//! their objectives and what is left of each error budget, computed from the
//! store over a window that ends at the server's clock (`GET /v1/slo`,
//! `latch slo`).
//!
//! Every figure is derived from rows the store keeps anyway (requests,
//! grants, tokens, SSH certificates, recordings, service principals, CA keys)
//! and from the audit log, so any node answers the same for the same window
//! and a report can be recomputed after the fact. The definitions below are
//! returned with every report, so a reader never has to guess what a number
//! counts.
//!
//! Conventions:
//! - Percentiles are nearest-rank over the observed values (no
//!   interpolation): p50 of 1, 2, 3, 4 is 2; p99 of fewer than 100 values is
//!   the largest.
//! - An objective with no events in the window is met, with its whole error
//!   budget left, and its value is `null`.
//! - The error budget of "at least T good" (or "pN at most X") over n events
//!   is the (1 − T)·n events allowed to be bad; what remains is
//!   `1 − bad / allowed`: 1 untouched, 0 spent, below 0 overspent.

use std::collections::BTreeMap;
use std::time::Duration;

use latch_core::{Timestamp, format_duration, parse_duration};
use latch_store::{SloData, StoreStats};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::state::SloSettings;

/// The window when none is given.
pub const DEFAULT_WINDOW: &str = "30d";

/// Successful audit actions that only a standing administrator (a member of
/// `admins`, not a grant) can take: the standing operations of M3.
pub const STANDING_ACTIONS: &[&str] = &[
    "user.create",
    "user.delete",
    "user.disable",
    "user.enable",
    "user.set_password",
    "user.reset_mfa",
    "group.create",
    "group.delete",
    "group.add_member",
    "group.remove_member",
    "sp.create",
    "sp.delete",
    "sp.disable",
    "sp.enable",
    "sp.rotate_secret",
    "policy.apply",
    "key.rotate",
];

pub const M1_DEFINITION: &str = "Share of privileged SSH access that was recorded, counted per grant. A grant \
    is used in the window when a certificate was issued to its holder under it, or a recorded session started \
    under it; it is recorded when at least one session under it was recorded (the gateway records every \
    session it lets through and refuses any it cannot record). A grant whose holder took a certificate but \
    never went through the gateway may have been used directly against hosts that trust latch's CA, which \
    latch cannot see: it counts as unrecorded. Signed tokens are not counted here: what they are used for \
    happens in the services that accept them (see M3).";

pub const M2_DEFINITION: &str = "Time from a request's creation to its grant becoming active, for grants \
    activated in the window: for automatic activations (policy), to the commit of the request; for human \
    approvals, to the commit of the approval that reached the role's threshold. Break-glass activations are \
    reported apart, without a target.";

pub const M3_DEFINITION: &str = "Share of privileged operations in the window done with just-in-time \
    credentials. Every signed token and SSH certificate issued under a grant (the gateway's per-login \
    certificates included) is one JIT operation; every successful administrative change made with standing \
    administrator rights (membership of group admins: users, groups, service principals, policy, token-key \
    rotation) is one standing operation. M3 = JIT / (JIT + standing).";

pub const M4_DEFINITION: &str = "Long-lived privileged credentials as they stand at the end of the window: \
    enabled service principals whose secret was last set longer ago than sp_secret_max_age; signing keys (the \
    SSH user CA, the active token key) older than signing_key_max_age; stored secrets (KV) whose current value \
    was written longer ago than static_secret_max_age; unexpired, unrevoked signed tokens and \
    SSH certificates issued for longer than credential_max_lifetime.";

pub const M5_DEFINITION: &str = "Break-glass activations in the window, against a budget of breakglass_budget \
    per breakglass_period scaled to the window. Burn rate = uses / budget for the window: 1 spends the budget \
    exactly at the allowed pace, 4 four times as fast.";

pub const M6_DEFINITION: &str = "Time from a grant revocation being received to everything it ended being \
    unusable, for revocations in the window: the commit that revokes the grant with its tokens and SSH \
    certificates (introspection, the revoked-token list and the KRL change with it), and the end of every \
    recorded session that was running under the grant (the gateway ends them); a session still running \
    counts until now. Hosts that fetch the KRL and offline JWT verifiers follow within their own refresh \
    interval, which latch cannot see.";

/// Most unrecorded grants, break-glass uses and revocations a report lists one by one.
const MAX_LISTED: usize = 100;

/// The window in a query: `30d` when absent; any duration latch reads (up to 366d).
pub fn parse_window(w: Option<&str>) -> Result<(String, Duration), String> {
    let label = w.map(str::trim).filter(|s| !s.is_empty()).unwrap_or(DEFAULT_WINDOW);
    let d = parse_duration(label).map_err(|e| format!("window: {e}"))?;
    Ok((label.to_string(), d))
}

/// Nearest-rank percentile `p` (1..=100) of ascending `sorted` values.
pub fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    let n = u64::try_from(sorted.len()).ok().filter(|n| *n > 0)?;
    let rank = (u64::from(p.clamp(1, 100)) * n).div_ceil(100).clamp(1, n);
    sorted.get(usize::try_from(rank - 1).ok()?).copied()
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    // `+ 0.0` turns a rounded -0.0 into 0.0.
    (v * f).round() / f + 0.0
}

/// What remains of an error budget of `allowed` bad events when `bad` happened.
fn remaining(bad: f64, allowed: f64) -> f64 {
    if bad <= 0.0 {
        1.0
    } else if allowed <= 0.0 {
        // No budget at all and something spent it: as overspent as it gets, but finite for JSON.
        -bad
    } else {
        round(1.0 - bad / allowed, 4)
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `250ms`, `1.5s`, `1m30s`.
pub fn human_ms(ms: i64) -> String {
    match ms {
        i64::MIN..=999 => format!("{ms}ms"),
        1000..=59_999 if ms % 1000 != 0 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format_duration(Duration::from_millis(ms.unsigned_abs())),
    }
}

fn percent(v: f64) -> String {
    let s = format!("{:.2}", v * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// A latency distribution.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: Option<i64>,
    pub p99_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

impl Latency {
    fn of(samples: &mut [i64]) -> Latency {
        samples.sort_unstable();
        Latency {
            count: samples.len() as u64,
            p50_ms: percentile(samples, 50),
            p99_ms: percentile(samples, 99),
            max_ms: samples.last().copied(),
        }
    }
}

/// A latency distribution with an objective on one of its percentiles.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct LatencyObjective {
    pub count: u64,
    pub p50_ms: Option<i64>,
    pub p99_ms: Option<i64>,
    pub max_ms: Option<i64>,
    /// e.g. `p99 <= 5s`.
    pub target: String,
    pub target_ms: i64,
    pub met: bool,
    pub error_budget_remaining: f64,
}

impl LatencyObjective {
    /// Objective "percentile `p` at most `limit`" over `samples` (milliseconds).
    fn of(samples: &mut [i64], p: u32, limit: Duration) -> LatencyObjective {
        let l = Latency::of(samples);
        let target_ms = millis(limit);
        let value = if p == 50 { l.p50_ms } else { percentile(samples, p) };
        let bad = samples.iter().filter(|v| **v > target_ms).count() as f64;
        let allowed = f64::from(100 - p.clamp(1, 99)) / 100.0 * samples.len() as f64;
        LatencyObjective {
            count: l.count,
            p50_ms: l.p50_ms,
            p99_ms: l.p99_ms,
            max_ms: l.max_ms,
            target: format!("p{p} <= {}", format_duration(limit)),
            target_ms,
            met: value.is_none_or(|v| v <= target_ms),
            error_budget_remaining: remaining(bad, allowed),
        }
    }

    fn shown(&self, p: u32) -> String {
        let v = if p == 50 { self.p50_ms } else { self.p99_ms };
        match v {
            Some(ms) => format!("p{p} {} (n={})", human_ms(ms), self.count),
            None => "no data".into(),
        }
    }
}

/// "At least `target` of `total` good": (value, met, error budget remaining).
fn share(good: u64, total: u64, target: f64) -> (Option<f64>, bool, f64) {
    if total == 0 {
        return (None, true, 1.0);
    }
    let (good, total) = (good as f64, total as f64);
    let value = good / total;
    let met = good >= target * total - 1e-9;
    (Some(round(value, 6)), met, remaining(total - good, (1.0 - target) * total))
}

/// M1.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordedShare {
    pub definition: String,
    /// grants_recorded / grants_used; null when no grant was used for SSH in the window.
    pub value: Option<f64>,
    pub target: f64,
    pub met: bool,
    pub error_budget_remaining: f64,
    pub grants_used: u64,
    pub grants_recorded: u64,
    /// Ids of the used grants without any recorded session (at most 100).
    pub unrecorded_grants: Vec<String>,
    /// Recorded sessions started in the window.
    pub sessions_recorded: i64,
    /// Recorded sessions running now.
    pub sessions_active: i64,
}

/// M2.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TimeToGrant {
    pub definition: String,
    /// Activated by policy when requested.
    pub auto: LatencyObjective,
    /// Activated by the approval that reached the role's threshold.
    pub human: LatencyObjective,
    pub breakglass: Latency,
    /// Both objectives met.
    pub met: bool,
}

/// M3.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct JitShare {
    pub definition: String,
    /// jit_operations / (jit_operations + standing_operations); null when there were none.
    pub value: Option<f64>,
    pub target: f64,
    pub met: bool,
    pub error_budget_remaining: f64,
    pub jit_operations: i64,
    pub tokens_issued: i64,
    pub ssh_certificates_issued: i64,
    pub standing_operations: i64,
    /// Standing operations by audit action.
    pub standing_by_action: BTreeMap<String, i64>,
}

/// A credential and how old it is.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AgedCredential {
    /// `sp:NAME`, `ssh-ca:NAME` or `token-key:KID`.
    pub name: String,
    /// When it was made or last rotated.
    pub since: String,
    pub age_days: f64,
    /// Older than its limit (or, for a service-principal secret, expired): counted in M4.
    pub long_lived: bool,
    /// Service-principal secrets: when it stops authenticating (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Service-principal secrets: `ok`, `no-expiry`, `rolling` (the previous
    /// secret still valid after a rotation) or `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<String>,
}

/// The rotation status of a service-principal secret at `now`.
pub fn sp_secret_status(expires: Option<Timestamp>, previous_until: Option<Timestamp>, now: Timestamp) -> &'static str {
    match expires {
        Some(e) if e <= now => "expired",
        _ if previous_until.is_some_and(|p| p > now) => "rolling",
        None => "no-expiry",
        Some(_) => "ok",
    }
}

/// M4.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LongLived {
    pub definition: String,
    /// How many long-lived privileged credentials there are.
    pub value: u64,
    /// At most this many.
    pub max: u64,
    pub met: bool,
    /// Enabled service principals whose secret is overdue for rotation.
    pub service_principal_secrets: Vec<AgedCredential>,
    /// Every signing key, long-lived or not.
    pub signing_keys: Vec<AgedCredential>,
    /// Stored secrets whose value is overdue for rotation.
    pub static_secrets: Vec<AgedCredential>,
    pub long_lived_tokens: i64,
    pub long_lived_ssh_certificates: i64,
    pub sp_secret_max_age: String,
    pub signing_key_max_age: String,
    pub static_secret_max_age: String,
    pub credential_max_lifetime: String,
}

/// One break-glass activation.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BreakglassUseView {
    pub request_id: String,
    pub requester: String,
    pub role: String,
    pub at: String,
    pub reviewed: bool,
}

/// M5.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BreakglassRate {
    pub definition: String,
    /// Break-glass activations in the window.
    pub value: u64,
    /// Uses allowed in this window: budget_per_period × window / period.
    pub budget: f64,
    pub budget_per_period: u64,
    pub period: String,
    /// value / budget; null when the budget is zero.
    pub burn_rate: Option<f64>,
    pub met: bool,
    pub error_budget_remaining: f64,
    /// Break-glass uses (of all time) still waiting for their post-incident review.
    pub unreviewed: i64,
    /// The uses, oldest first (at most 100).
    pub uses: Vec<BreakglassUseView>,
}

/// One revocation and how long it took.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RevocationView {
    pub grant_id: String,
    pub requested_at: String,
    /// When the last of what it ended was over (now, for a session still running).
    pub done_at: String,
    pub ms: i64,
    /// Recorded sessions under the grant still running.
    pub sessions_open: i64,
}

/// M6.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TimeToRevoke {
    pub definition: String,
    pub count: u64,
    pub p50_ms: Option<i64>,
    pub p99_ms: Option<i64>,
    pub max_ms: Option<i64>,
    pub target: String,
    pub target_ms: i64,
    pub met: bool,
    pub error_budget_remaining: f64,
    /// Revocations whose sessions are still running (counted until now).
    pub in_progress: u64,
    /// The revocations, oldest first (at most 100).
    pub revocations: Vec<RevocationView>,
}

/// One objective, as `latch slo` prints it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Objective {
    /// `M1` … `M6`.
    pub sli: String,
    pub name: String,
    /// The measured value, for people.
    pub value: String,
    pub target: String,
    pub met: bool,
    /// 1 untouched, 0 spent, below 0 overspent; null where an objective has no budget (M4).
    pub error_budget_remaining: Option<f64>,
}

/// The SLIs M1–M6 over a window, with their objectives.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SloReport {
    /// The window as asked, e.g. `30d`.
    pub window: String,
    pub window_seconds: u64,
    pub from: String,
    /// The server's clock when the report was made.
    pub to: String,
    /// Every objective met.
    pub met: bool,
    pub objectives: Vec<Objective>,
    pub m1: RecordedShare,
    pub m2: TimeToGrant,
    pub m3: JitShare,
    pub m4: LongLived,
    pub m5: BreakglassRate,
    pub m6: TimeToRevoke,
}

fn days(ms: i64) -> f64 {
    round(ms as f64 / 86_400_000.0, 2)
}

fn m1(cfg: &SloSettings, d: &SloData, stats: &StoreStats) -> RecordedShare {
    let used = d.ssh_grants.len() as u64;
    let recorded = d.ssh_grants.iter().filter(|(_, r)| *r).count() as u64;
    let (value, met, budget) = share(recorded, used, cfg.recorded_target);
    RecordedShare {
        definition: M1_DEFINITION.into(),
        value,
        target: cfg.recorded_target,
        met,
        error_budget_remaining: budget,
        grants_used: used,
        grants_recorded: recorded,
        unrecorded_grants: d.ssh_grants.iter().filter(|(_, r)| !*r).map(|(g, _)| g.clone()).take(MAX_LISTED).collect(),
        sessions_recorded: d.sessions_recorded,
        sessions_active: stats.active_recordings,
    }
}

fn m2(cfg: &SloSettings, d: &SloData) -> TimeToGrant {
    let (mut auto, mut human, mut breakglass) = (Vec::new(), Vec::new(), Vec::new());
    for a in &d.activations {
        let ms = a.activated_at.millis().saturating_sub(a.created_at.millis()).max(0);
        match (a.breakglass, a.approvals_required) {
            (true, _) => breakglass.push(ms),
            (false, 0) => auto.push(ms),
            (false, _) => human.push(ms),
        }
    }
    let auto = LatencyObjective::of(&mut auto, 99, cfg.time_to_grant_auto_p99);
    let human = LatencyObjective::of(&mut human, 50, cfg.time_to_grant_human_p50);
    TimeToGrant {
        definition: M2_DEFINITION.into(),
        met: auto.met && human.met,
        auto,
        human,
        breakglass: Latency::of(&mut breakglass),
    }
}

fn m3(cfg: &SloSettings, d: &SloData) -> JitShare {
    let jit = d.tokens_issued + d.ssh_certs_issued;
    let standing: i64 = d.standing_ops.iter().map(|(_, n)| n).sum();
    let total = u64::try_from(jit + standing).unwrap_or(0);
    let (value, met, budget) = share(u64::try_from(jit).unwrap_or(0), total, cfg.jit_target);
    JitShare {
        definition: M3_DEFINITION.into(),
        value,
        target: cfg.jit_target,
        met,
        error_budget_remaining: budget,
        jit_operations: jit,
        tokens_issued: d.tokens_issued,
        ssh_certificates_issued: d.ssh_certs_issued,
        standing_operations: standing,
        standing_by_action: d.standing_ops.iter().cloned().collect(),
    }
}

fn m4(cfg: &SloSettings, d: &SloData, now: Timestamp, token_kid: &str) -> LongLived {
    let aged = |name: String, since: Timestamp, limit: Duration| {
        let age = now.millis().saturating_sub(since.millis());
        AgedCredential {
            name,
            since: since.to_rfc3339(),
            age_days: days(age),
            long_lived: age > millis(limit),
            expires_at: None,
            rotation: None,
        }
    };
    let secrets: Vec<AgedCredential> = d
        .stale_sp_secrets
        .iter()
        .map(|(name, at, expires)| AgedCredential {
            long_lived: true,
            expires_at: expires.map(Timestamp::to_rfc3339),
            rotation: Some(sp_secret_status(*expires, None, now).into()),
            ..aged(format!("sp:{name}"), *at, cfg.sp_secret_max_age)
        })
        .collect();
    let mut keys: Vec<AgedCredential> =
        d.ca_keys.iter().map(|(name, at)| aged(format!("ssh-ca:{name}"), *at, cfg.signing_key_max_age)).collect();
    // The active token key was made by the last rotation naming it, or, never
    // rotated, at the store's first start (when the data directory was made).
    let token_key_since =
        d.token_key_rotations.iter().find(|(_, kid)| kid == token_kid).map(|(t, _)| *t).or(d.first_event);
    if let Some(since) = token_key_since {
        keys.push(aged(format!("token-key:{token_kid}"), since, cfg.signing_key_max_age));
    }
    let overdue_keys = keys.iter().filter(|k| k.long_lived).count() as u64;
    let statics: Vec<AgedCredential> = d
        .static_secrets
        .iter()
        .map(|(path, at)| aged(format!("secret:{path}"), *at, cfg.static_secret_max_age))
        .filter(|a| a.long_lived)
        .collect();
    let value = secrets.len() as u64
        + statics.len() as u64
        + overdue_keys
        + u64::try_from(d.long_lived_tokens).unwrap_or(0)
        + u64::try_from(d.long_lived_ssh_certs).unwrap_or(0);
    LongLived {
        definition: M4_DEFINITION.into(),
        value,
        max: cfg.long_lived_max,
        met: value <= cfg.long_lived_max,
        service_principal_secrets: secrets,
        signing_keys: keys,
        static_secrets: statics,
        long_lived_tokens: d.long_lived_tokens,
        long_lived_ssh_certificates: d.long_lived_ssh_certs,
        sp_secret_max_age: format_duration(cfg.sp_secret_max_age),
        signing_key_max_age: format_duration(cfg.signing_key_max_age),
        static_secret_max_age: format_duration(cfg.static_secret_max_age),
        credential_max_lifetime: format_duration(cfg.credential_max_lifetime),
    }
}

fn m5(cfg: &SloSettings, d: &SloData, window: Duration, stats: &StoreStats) -> BreakglassRate {
    let uses = d.breakglass.len() as u64;
    let budget = cfg.breakglass_budget as f64 * window.as_secs_f64() / cfg.breakglass_period.as_secs_f64();
    let burn_rate = (budget > 0.0).then(|| round(uses as f64 / budget, 4));
    BreakglassRate {
        definition: M5_DEFINITION.into(),
        value: uses,
        budget: round(budget, 4),
        budget_per_period: cfg.breakglass_budget,
        period: format_duration(cfg.breakglass_period),
        burn_rate,
        met: uses as f64 <= budget + 1e-9,
        error_budget_remaining: remaining(uses as f64, budget),
        unreviewed: stats.breakglass_unreviewed,
        uses: d
            .breakglass
            .iter()
            .take(MAX_LISTED)
            .map(|u| BreakglassUseView {
                request_id: u.request_id.clone(),
                requester: u.requester.clone(),
                role: u.role.clone(),
                at: u.at.to_rfc3339(),
                reviewed: u.reviewed,
            })
            .collect(),
    }
}

fn m6(cfg: &SloSettings, d: &SloData, now: Timestamp) -> TimeToRevoke {
    let mut samples = Vec::with_capacity(d.revocations.len());
    let mut listed = Vec::new();
    let mut in_progress = 0;
    for r in &d.revocations {
        let mut done = r.committed_at.max(r.credentials_revoked_at.unwrap_or(r.committed_at));
        done = done.max(r.sessions_ended_at.unwrap_or(done));
        if r.sessions_open > 0 {
            done = done.max(now);
            in_progress += 1;
        }
        let ms = done.millis().saturating_sub(r.requested_at.millis()).max(0);
        samples.push(ms);
        if listed.len() < MAX_LISTED {
            listed.push(RevocationView {
                grant_id: r.grant_id.clone(),
                requested_at: r.requested_at.to_rfc3339(),
                done_at: done.to_rfc3339(),
                ms,
                sessions_open: r.sessions_open,
            });
        }
    }
    let o = LatencyObjective::of(&mut samples, 99, cfg.time_to_revoke_p99);
    TimeToRevoke {
        definition: M6_DEFINITION.into(),
        count: o.count,
        p50_ms: o.p50_ms,
        p99_ms: o.p99_ms,
        max_ms: o.max_ms,
        target: o.target,
        target_ms: o.target_ms,
        met: o.met,
        error_budget_remaining: o.error_budget_remaining,
        in_progress,
        revocations: listed,
    }
}

fn shown_share(value: Option<f64>, good: u64, total: u64, what: &str) -> String {
    match value {
        Some(v) => format!("{} ({good} of {total} {what})", percent(v)),
        None => format!("no {what}"),
    }
}

/// The report for the window `label` (`window` long) ending at `now`.
#[allow(clippy::too_many_arguments)]
pub fn report(
    label: &str,
    window: Duration,
    now: Timestamp,
    cfg: &SloSettings,
    d: &SloData,
    stats: &StoreStats,
    token_kid: &str,
) -> SloReport {
    let m1 = m1(cfg, d, stats);
    let m2 = m2(cfg, d);
    let m3 = m3(cfg, d);
    let m4 = m4(cfg, d, now, token_kid);
    let m5 = m5(cfg, d, window, stats);
    let m6 = m6(cfg, d, now);
    let row = |sli: &str, name: &str, value: String, target: String, met: bool, budget: Option<f64>| Objective {
        sli: sli.into(),
        name: name.into(),
        value,
        target,
        met,
        error_budget_remaining: budget,
    };
    let objectives = vec![
        row(
            "M1",
            "privileged access recorded",
            shown_share(m1.value, m1.grants_recorded, m1.grants_used, "grants used"),
            format!(">= {}", percent(m1.target)),
            m1.met,
            Some(m1.error_budget_remaining),
        ),
        row(
            "M2",
            "time to grant, automatic",
            m2.auto.shown(99),
            m2.auto.target.clone(),
            m2.auto.met,
            Some(m2.auto.error_budget_remaining),
        ),
        row(
            "M2",
            "time to grant, human approval",
            m2.human.shown(50),
            m2.human.target.clone(),
            m2.human.met,
            Some(m2.human.error_budget_remaining),
        ),
        row(
            "M3",
            "privileged operations with JIT credentials",
            shown_share(
                m3.value,
                u64::try_from(m3.jit_operations).unwrap_or(0),
                u64::try_from(m3.jit_operations + m3.standing_operations).unwrap_or(0),
                "operations",
            ),
            format!(">= {}", percent(m3.target)),
            m3.met,
            Some(m3.error_budget_remaining),
        ),
        row("M4", "long-lived privileged credentials", m4.value.to_string(), format!("<= {}", m4.max), m4.met, None),
        row(
            "M5",
            "break-glass uses",
            match m5.burn_rate {
                Some(b) => format!("{} (burn rate {b})", m5.value),
                None => m5.value.to_string(),
            },
            format!("<= {} per {}", m5.budget_per_period, m5.period),
            m5.met,
            Some(m5.error_budget_remaining),
        ),
        row(
            "M6",
            "time to revoke",
            match m6.p99_ms {
                Some(ms) => format!("p99 {} (p50 {}, n={})", human_ms(ms), human_ms(m6.p50_ms.unwrap_or(0)), m6.count),
                None => "no data".into(),
            },
            m6.target.clone(),
            m6.met,
            Some(m6.error_budget_remaining),
        ),
    ];
    SloReport {
        window: label.to_string(),
        window_seconds: window.as_secs(),
        from: now.minus(window).to_rfc3339(),
        to: now.to_rfc3339(),
        met: objectives.iter().all(|o| o.met),
        objectives,
        m1,
        m2,
        m3,
        m4,
        m5,
        m6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latch_store::{Activation, BreakglassUse, Revocation};

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 50), Some(7));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[1, 2, 3, 4], 50), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4, 5], 50), Some(3));
        assert_eq!(percentile(&[1, 2, 3, 4], 99), Some(4));
        let hundred: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 99), Some(99));
        assert_eq!(percentile(&hundred, 50), Some(50));
        assert_eq!(percentile(&hundred, 100), Some(100));
        let thousand: Vec<i64> = (1..=1000).collect();
        assert_eq!(percentile(&thousand, 99), Some(990));
        assert_eq!(percentile(&thousand, 1), Some(10));
        // Out-of-range percentiles are clamped rather than indexing out of bounds.
        assert_eq!(percentile(&[1, 2], 0), Some(1));
        assert_eq!(percentile(&[1, 2], 150), Some(2));
    }

    #[test]
    fn windows_parse_with_a_default_and_bounds() {
        assert_eq!(parse_window(None).unwrap(), ("30d".to_string(), Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_window(Some("")).unwrap().0, "30d");
        assert_eq!(parse_window(Some(" 7d ")).unwrap(), ("7d".to_string(), Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_window(Some("1h30m")).unwrap().1, Duration::from_secs(5400));
        assert_eq!(parse_window(Some("366d")).unwrap().1, Duration::from_secs(366 * 86_400));
        for bad in ["0d", "367d", "30", "thirty days", "-1d", "1w"] {
            let e = parse_window(Some(bad)).unwrap_err();
            assert!(e.starts_with("window: "), "{bad}: {e}");
        }
    }

    #[test]
    fn latency_objectives_and_budgets() {
        // 100 samples, 1 over the limit: p99 still within, budget (1 bad allowed) spent.
        let mut s: Vec<i64> = (0..100).map(|i| if i == 0 { 9_000 } else { 100 }).collect();
        let o = LatencyObjective::of(&mut s, 99, Duration::from_secs(5));
        assert_eq!((o.count, o.p99_ms, o.max_ms), (100, Some(100), Some(9_000)));
        assert!(o.met);
        assert_eq!(o.error_budget_remaining, 0.0);
        assert_eq!(o.target, "p99 <= 5s");
        // 2 over: p99 over the limit, budget overspent twice.
        s[1] = 6_000;
        let o = LatencyObjective::of(&mut s, 99, Duration::from_secs(5));
        assert!(!o.met);
        assert_eq!(o.p99_ms, Some(6_000));
        assert_eq!(o.error_budget_remaining, -1.0);
        // Nothing observed: met, untouched.
        let o = LatencyObjective::of(&mut [], 50, Duration::from_secs(300));
        assert!(o.met && o.p50_ms.is_none() && o.error_budget_remaining == 1.0);
        // A median objective allows half of the events to be slow.
        let mut s = vec![1_000, 400_000, 400_000, 2_000];
        let o = LatencyObjective::of(&mut s, 50, Duration::from_secs(300));
        assert_eq!(o.p50_ms, Some(2_000));
        assert!(o.met);
        assert_eq!(o.error_budget_remaining, 0.0);
    }

    #[test]
    fn shares_and_their_budgets() {
        assert_eq!(share(0, 0, 0.99), (None, true, 1.0));
        assert_eq!(share(99, 100, 0.99), (Some(0.99), true, 0.0));
        assert_eq!(share(100, 100, 0.99), (Some(1.0), true, 1.0));
        assert_eq!(share(1, 2, 0.99), (Some(0.5), false, -49.0));
        assert_eq!(share(19, 20, 0.9), (Some(0.95), true, 0.5));
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(human_ms(0), "0ms");
        assert_eq!(human_ms(250), "250ms");
        assert_eq!(human_ms(1500), "1.5s");
        assert_eq!(human_ms(2000), "2s");
        assert_eq!(human_ms(90_000), "1m30s");
        assert_eq!(percent(0.99), "99%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(2.0 / 3.0), "66.67%");
    }

    fn t(s: i64) -> Timestamp {
        Timestamp(1_800_000_000_000 + s * 1000)
    }

    #[test]
    fn a_report_from_known_facts() {
        let now = t(0);
        let cfg = SloSettings::default();
        let act = |id: &str, created: i64, active: i64, bg: bool, need: i64| Activation {
            request_id: id.into(),
            created_at: t(created),
            activated_at: t(active),
            breakglass: bg,
            approvals_required: need,
        };
        let d = SloData {
            ssh_grants: vec![("grt_a".into(), true), ("grt_b".into(), false)],
            sessions_recorded: 3,
            activations: vec![
                act("r1", -100, -100, false, 0),
                act("r2", -99, -99, false, 0),
                act("r3", -98, -92, false, 0),
                act("r4", -500, -410, false, 1),
                act("r5", -50, -50, true, 0),
            ],
            tokens_issued: 8,
            ssh_certs_issued: 1,
            standing_ops: vec![("user.create".into(), 1)],
            stale_sp_secrets: vec![("ci".into(), t(-91 * 86_400), None)],
            ca_keys: vec![("ssh-user".into(), t(-400 * 86_400))],
            static_secrets: vec![],
            token_key_rotations: vec![(t(-10), "kid-new".into()), (t(-20), "kid-old".into())],
            first_event: Some(t(-500 * 86_400)),
            long_lived_tokens: 1,
            long_lived_ssh_certs: 0,
            breakglass: vec![BreakglassUse {
                request_id: "r5".into(),
                requester: "user:alice".into(),
                role: "ops".into(),
                at: t(-50),
                reviewed: false,
            }],
            revocations: vec![
                Revocation {
                    grant_id: "grt_a".into(),
                    requested_at: t(-40),
                    committed_at: t(-40),
                    credentials_revoked_at: Some(t(-40)),
                    sessions_ended_at: Some(t(-38)),
                    sessions_open: 0,
                },
                Revocation {
                    grant_id: "grt_c".into(),
                    requested_at: t(-30),
                    committed_at: t(-30),
                    credentials_revoked_at: None,
                    sessions_ended_at: None,
                    sessions_open: 1,
                },
            ],
        };
        let stats = StoreStats { breakglass_unreviewed: 1, active_recordings: 1, ..Default::default() };
        let r = report("30d", Duration::from_secs(30 * 86_400), now, &cfg, &d, &stats, "kid-new");
        assert_eq!((r.m1.value, r.m1.met, r.m1.unrecorded_grants.clone()), (Some(0.5), false, vec!["grt_b".into()]));
        assert_eq!((r.m2.auto.count, r.m2.auto.p50_ms, r.m2.auto.p99_ms), (3, Some(0), Some(6_000)));
        assert!(!r.m2.auto.met, "6 s is over the 5 s p99");
        assert_eq!((r.m2.human.count, r.m2.human.p50_ms), (1, Some(90_000)));
        assert!(r.m2.human.met);
        assert_eq!((r.m2.breakglass.count, r.m2.breakglass.p50_ms), (1, Some(0)));
        assert_eq!((r.m3.jit_operations, r.m3.standing_operations, r.m3.value), (9, 1, Some(0.9)));
        assert!(r.m3.met);
        // ci's secret, the 400-day-old CA and one long token; the token key was rotated 10 s ago.
        assert_eq!(r.m4.value, 3);
        assert!(r.m4.met);
        let key = r.m4.signing_keys.iter().find(|k| k.name == "token-key:kid-new").unwrap();
        assert!(!key.long_lived && key.since == t(-10).to_rfc3339());
        assert_eq!((r.m5.value, r.m5.budget, r.m5.burn_rate, r.m5.met), (1, 2.0, Some(0.5), true));
        assert_eq!((r.m5.error_budget_remaining, r.m5.unreviewed), (0.5, 1));
        // 2 s for grt_a; grt_c's session still runs, so 30 s and counting.
        assert_eq!((r.m6.count, r.m6.p50_ms, r.m6.p99_ms, r.m6.in_progress), (2, Some(2_000), Some(30_000), 1));
        assert!(r.m6.met);
        assert!(!r.met);
        assert_eq!(r.objectives.len(), 7);
        assert_eq!(r.objectives[0].value, "50% (1 of 2 grants used)");
        assert_eq!(r.objectives[2].value, "p50 1m30s (n=1)");
        // A shorter window scales the break-glass budget: 1 use in 7 days burns at 2.14×.
        let r = report("7d", Duration::from_secs(7 * 86_400), now, &cfg, &d, &stats, "kid-new");
        assert_eq!((r.m5.budget, r.m5.burn_rate, r.m5.met), (0.4667, Some(2.1429), false));
        // No budget at all: any use is over it.
        let none = SloSettings { breakglass_budget: 0, ..cfg };
        let r = report("30d", Duration::from_secs(30 * 86_400), now, &none, &d, &stats, "kid-new");
        assert_eq!((r.m5.burn_rate, r.m5.met, r.m5.error_budget_remaining), (None, false, -1.0));
    }
}
