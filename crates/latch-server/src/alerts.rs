//! Built-in alerts, evaluated by latch itself (for teams without
//! Prometheus; `deploy/prometheus/latch-alerts.yml` covers those with it).
//!
//! An alert is an audit event, `alert.raise`: tamper-evident, exported to
//! the SIEM, and delivered to the webhook like request notifications. Each
//! alert has a key (rule, user, target); the same key is raised at most
//! once per cooldown, so a flapping condition or a restart does not flood
//! on-call. Evaluation runs on the leader only, on the server's clock.
//!
//! Rules: an approval waiting longer than its SLA; break-glass used; a user
//! denied repeatedly within minutes; denies across all users above 4× their
//! daily rate; a session recording that stays empty; the break-glass budget
//! (SLI M5) burning over 4× its allowed rate over the last day; the approval
//! queue growing for half an hour; revocations failing to commit (counted on
//! the leader; each node's count is in `latch_revocation_failures_total`).

use std::collections::HashMap;
use std::time::Duration;

use latch_audit::{AuditDraft, AuditEvent, Outcome};
use latch_core::{RequestState, Timestamp};
use latch_store::{AuditQuery, RecordingFilter, RequestFilter};
use serde_json::json;

use crate::state::AppState;

pub const ACTION: &str = "alert.raise";
const ACTOR: &str = "system:alerts";
const CURSOR: &str = "alerts";
/// Window in which repeated denies of one user, or a burst of all denies, count.
const DENY_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Baseline for the all-users deny rate.
const BASELINE: Duration = Duration::from_secs(24 * 3600);
/// A burst must also be at least this many denies to count.
const MIN_BURST: usize = 10;
/// The approval queue counts as growing when it rose through this window…
const QUEUE_WINDOW: Duration = Duration::from_secs(30 * 60);
/// …and holds at least this many requests.
const QUEUE_MIN: i64 = 10;
/// A live recording with nothing stored this long after its start.
const SILENT_RECORDING: Duration = Duration::from_secs(10 * 60);

/// `[alerts]` settings.
#[derive(Clone, Debug)]
pub struct AlertSettings {
    /// How often the conditions are checked.
    pub interval: Duration,
    /// A pending request older than this raises `approval-waiting`.
    pub approval_sla: Duration,
    /// Denies of one user within 5 minutes that raise `user-denied-repeatedly`.
    pub user_denies: usize,
    /// The same alert (rule, user, target) is raised at most once per cooldown.
    pub cooldown: Duration,
    /// A service-principal secret expiring within this raises `sp-secret-expiring`.
    pub sp_secret_warning: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            interval: Duration::from_secs(30),
            approval_sla: Duration::from_secs(3600),
            user_denies: 5,
            cooldown: Duration::from_secs(3600),
            sp_secret_warning: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

/// One condition found.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub rule: &'static str,
    pub severity: &'static str,
    /// Who it is about (`user:alice`), or `-`.
    pub user: String,
    /// What it is about (`request:req_…`, `role:prod`), or `-`.
    pub target: String,
    pub message: String,
}

impl Alert {
    fn key(&self) -> String {
        format!("{}|{}|{}", self.rule, self.user, self.target)
    }
}

/// What the evaluator remembers between rounds.
#[derive(Default)]
struct Memory {
    /// Key → when last raised.
    raised: HashMap<String, Timestamp>,
    /// Deny times seen in the audit log (all users), oldest first, for a day.
    denies: Vec<(Timestamp, String)>,
    cursor: i64,
    /// Pending-request counts seen each round, for the last half hour.
    pending: Vec<(Timestamp, i64)>,
    /// This node's failed revocations when last looked at.
    revocation_failures: u64,
}

/// Runs forever; evaluates every `interval` while this node leads.
pub async fn run(st: AppState, settings: AlertSettings) {
    let mut memory: Option<Memory> = None;
    let mut first = true;
    loop {
        // Evaluate at once on start: the cursor of a first run is the
        // present, and nothing after it may be missed.
        if !std::mem::take(&mut first) {
            tokio::time::sleep(settings.interval).await;
        }
        if !st.store.is_leader() {
            memory = None;
            tokio::time::sleep(settings.interval).await;
            continue;
        }
        let mem = match memory.take() {
            Some(m) => m,
            None => match recall(&st).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "alerts: cannot read their state");
                    continue;
                }
            },
        };
        match round(&st, &settings, mem).await {
            Ok(m) => memory = Some(m),
            Err(e) => tracing::warn!(error = %e, "alerts: evaluation failed; retrying"),
        }
    }
}

/// Enabled service principals whose secret expires within the warning
/// window, or has expired: a pipeline is about to lose (or has lost) access.
/// The target names the expiry, so each new secret is warned about anew.
async fn expiring_sp_secrets(
    st: &AppState,
    s: &AlertSettings,
    now: Timestamp,
) -> Result<Vec<Alert>, latch_store::StoreError> {
    Ok(st
        .store
        .list_sps()
        .await?
        .into_iter()
        .filter(|sp| !sp.disabled)
        .filter_map(|sp| {
            let exp = sp.secret_expires_at.filter(|e| *e <= now.plus(s.sp_secret_warning))?;
            let (severity, when) = if exp <= now { ("critical", "expired at") } else { ("warning", "expires at") };
            Some(Alert {
                rule: "sp-secret-expiring",
                severity,
                user: format!("service_principal:{}", sp.name),
                target: format!("secret-expiry:{}", exp.to_rfc3339()),
                message: format!(
                    "the secret of service principal {} {when} {}: roll it with `latch sp rotate {} --overlap 1h` \
                     and update the pipeline",
                    sp.name,
                    exp.to_rfc3339(),
                    sp.name
                ),
            })
        })
        .collect())
}

/// Rebuilds memory on becoming leader: recent raises (for the cooldown) and the cursor.
async fn recall(st: &AppState) -> Result<Memory, latch_store::StoreError> {
    let mut m = Memory { cursor: st.store.cursor(CURSOR).await?, ..Memory::default() };
    if m.cursor == 0 {
        // First run: rules look at what happens from now on, with a day of denies as baseline.
        let head = st.store.audit_head().await?.0;
        m.cursor = head;
    }
    let q = AuditQuery { since: 0, action: Some(ACTION.into()), limit: 100_000, ..Default::default() };
    for ev in st.store.list_audit(q).await? {
        if let Some(key) = ev.details["key"].as_str() {
            m.raised.insert(key.to_string(), ev.time);
        }
    }
    Ok(m)
}

async fn round(st: &AppState, s: &AlertSettings, mut m: Memory) -> Result<Memory, latch_store::StoreError> {
    let now = st.clock.now();
    let mut found = Vec::new();
    let start = m.cursor;
    // Events since the last round.
    loop {
        let page = st.store.list_audit(AuditQuery { since: m.cursor, limit: 1000, ..Default::default() }).await?;
        let Some(last) = page.last().map(|e| e.seq) else { break };
        for ev in &page {
            found.extend(from_event(ev));
            if ev.outcome == Outcome::Denied && is_decision(&ev.action) {
                m.denies.push((ev.time, ev.actor.clone()));
            }
        }
        m.cursor = last;
    }
    m.denies.retain(|(t, _)| *t > now.minus(BASELINE));
    found.extend(deny_bursts(&m.denies, now, s.user_denies));
    found.extend(waiting_approvals(st, s, now).await?);
    found.extend(silent_recordings(st, now).await?);
    found.extend(expiring_sp_secrets(st, s, now).await?);
    found.extend(slo_burn(st).await);
    let pending = st.store.stats(now).await?.pending_requests;
    m.pending.push((now, pending));
    m.pending.retain(|(t, _)| *t > now.minus(QUEUE_WINDOW));
    found.extend(queue_growing(&m.pending, now));
    let failed = st.metrics.revocation_failures();
    if failed > m.revocation_failures {
        found.push(Alert {
            rule: "revocation-failing",
            severity: "critical",
            user: "-".into(),
            target: "-".into(),
            message: format!(
                "{} revocations failed since the last check (a grant whose revocation did not commit stays active: \
                 retry it; a database role not yet dropped is retried on its own: see `latch db creds list --state revoking`)",
                failed - m.revocation_failures
            ),
        });
    }
    m.revocation_failures = failed;
    for a in found {
        let key = a.key();
        if m.raised.get(&key).is_some_and(|t| *t > now.minus(s.cooldown)) {
            continue;
        }
        let ev = AuditDraft::new(ACTOR, ACTION, format!("alert:{}", a.rule)).outcome(Outcome::Success).details(json!({
            "rule": a.rule, "severity": a.severity, "user": a.user, "target": a.target,
            "message": a.message, "key": key,
        }));
        st.store.append_audit(ev).await?;
        tracing::warn!(rule = a.rule, user = %a.user, target = %a.target, "alert: {}", a.message);
        m.raised.insert(key, now);
    }
    // Written only when events were read: a quiet server's store stays untouched.
    if m.cursor != start {
        st.store.set_cursor(CURSOR, m.cursor).await?;
    }
    Ok(m)
}

/// Pending requests never fell during the last half hour, rose over it, and are many.
fn queue_growing(samples: &[(Timestamp, i64)], now: Timestamp) -> Option<Alert> {
    let (first_t, first) = *samples.first()?;
    let (_, last) = *samples.last()?;
    let covers = first_t <= now.minus(QUEUE_WINDOW).plus(Duration::from_secs(120));
    let rising = samples.windows(2).all(|w| w[1].1 >= w[0].1) && last > first;
    (covers && rising && last >= QUEUE_MIN).then(|| Alert {
        rule: "approval-queue-growing",
        severity: "warning",
        user: "-".into(),
        target: "-".into(),
        message: format!("{last} requests wait for approval, up from {first} half an hour ago"),
    })
}

fn is_decision(action: &str) -> bool {
    matches!(action, "request.create" | "breakglass.activate" | "request.approve")
}

/// Alerts that one event raises by itself.
fn from_event(ev: &AuditEvent) -> Option<Alert> {
    if ev.action == "breakglass.activate" && ev.outcome == Outcome::Success {
        let role = ev.target.strip_prefix("role:").unwrap_or(&ev.target);
        return Some(Alert {
            rule: "breakglass-used",
            severity: "critical",
            user: ev.actor.clone(),
            target: format!("role:{role}"),
            message: format!(
                "{} used break-glass for role {role}: {}",
                ev.actor,
                ev.details["reason"].as_str().unwrap_or("")
            ),
        });
    }
    None
}

/// Repeated denies of one user, and a burst of all denies against the day's rate.
fn deny_bursts(denies: &[(Timestamp, String)], now: Timestamp, per_user: usize) -> Vec<Alert> {
    let since = now.minus(DENY_WINDOW);
    let recent: Vec<&(Timestamp, String)> = denies.iter().filter(|(t, _)| *t > since).collect();
    let mut by_user: HashMap<&str, usize> = HashMap::new();
    for (_, who) in &recent {
        *by_user.entry(who.as_str()).or_default() += 1;
    }
    let mut out: Vec<Alert> = by_user
        .into_iter()
        .filter(|(_, n)| *n >= per_user)
        .map(|(who, n)| Alert {
            rule: "user-denied-repeatedly",
            severity: "warning",
            user: who.to_string(),
            target: "-".into(),
            message: format!("{who} was denied {n} times in 5 minutes"),
        })
        .collect();
    // The day's rate per 5 minutes, excluding the current window.
    let windows = (BASELINE.as_secs() / DENY_WINDOW.as_secs()).max(1) as f64;
    let baseline = (denies.len() - recent.len()) as f64 / windows;
    if recent.len() >= MIN_BURST && recent.len() as f64 > 4.0 * baseline {
        out.push(Alert {
            rule: "deny-spike",
            severity: "warning",
            user: "-".into(),
            target: "-".into(),
            message: format!(
                "{} denies in 5 minutes, above 4× the day's rate ({baseline:.1} per 5 minutes)",
                recent.len()
            ),
        });
    }
    out.sort_by(|a, b| a.user.cmp(&b.user));
    out
}

async fn waiting_approvals(
    st: &AppState,
    s: &AlertSettings,
    now: Timestamp,
) -> Result<Vec<Alert>, latch_store::StoreError> {
    let f = RequestFilter { state: Some(RequestState::Pending), limit: 10_000, ..Default::default() };
    let late = now.minus(s.approval_sla);
    Ok(st
        .store
        .list_requests(f)
        .await?
        .into_iter()
        .filter(|r| r.created_at <= late)
        .map(|r| Alert {
            rule: "approval-waiting",
            severity: "warning",
            user: format!("{}:{}", r.requester_kind.as_str(), r.requester_name),
            target: format!("request:{}", r.id),
            message: format!(
                "{} has waited {} for approval of role {} (SLA {})",
                r.id,
                latch_core::format_duration(Duration::from_millis(u64::try_from(now.0 - r.created_at.0).unwrap_or(0))),
                r.role,
                latch_core::format_duration(s.approval_sla)
            ),
        })
        .collect())
}

/// The break-glass budget (SLI M5) burning over 4× as fast as it may over the
/// last day: a burn rate of 1 spends exactly the budget over its period.
async fn slo_burn(st: &AppState) -> Option<Alert> {
    let r = match crate::routes::slo::compute(st, Some("1d")).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "alerts: cannot compute the service levels");
            return None;
        }
    };
    let burn = r.m5.burn_rate.filter(|b| *b > 4.0)?;
    Some(Alert {
        rule: "slo-burn",
        severity: "critical",
        user: "-".into(),
        target: "slo:M5".into(),
        message: format!(
            "break-glass budget burning at {burn:.1}× over the last day ({} uses; budget {} per {})",
            r.m5.value, r.m5.budget_per_period, r.m5.period
        ),
    })
}

async fn silent_recordings(st: &AppState, now: Timestamp) -> Result<Vec<Alert>, latch_store::StoreError> {
    let f = RecordingFilter { principal_id: None, active: true, limit: 10_000 };
    let quiet_since = now.minus(SILENT_RECORDING);
    Ok(st
        .store
        .list_recordings(f)
        .await?
        .into_iter()
        .filter(|r| r.next_seq == 0 && r.started_at <= quiet_since)
        .map(|r| Alert {
            rule: "recording-empty",
            severity: "critical",
            user: format!("{}:{}", r.principal_kind.as_str(), r.principal_name),
            target: format!("recording:{}", r.id),
            message: format!(
                "recording {} of {}@{} has stored nothing for 10 minutes: is {}'s upload failing?",
                r.id, r.login, r.target, r.started_by
            ),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_grows_only_when_it_rose_for_half_an_hour() {
        let now = Timestamp(10_000_000);
        let at = |mins: i64, n: i64| (Timestamp(now.0 - mins * 60_000), n);
        let rising: Vec<_> = (0..=30).rev().map(|m| at(m, 30 - m)).collect();
        assert_eq!(queue_growing(&rising, now).map(|a| a.rule), Some("approval-queue-growing"));
        assert!(queue_growing(&rising[20..], now).is_none(), "too short a history");
        let mut dipped = rising.clone();
        dipped[15].1 = 0;
        assert!(queue_growing(&dipped, now).is_none(), "it fell meanwhile");
        let small: Vec<_> = (0..=30).rev().map(|m| at(m, (30 - m) / 10)).collect();
        assert!(queue_growing(&small, now).is_none(), "few requests");
    }

    #[test]
    fn deny_bursts_per_user_and_against_the_baseline() {
        let now = Timestamp(1_000_000_000);
        let at = |secs_ago: i64| Timestamp(now.0 - secs_ago * 1000);
        let mut d: Vec<(Timestamp, String)> = (0..4).map(|i| (at(i * 10), "user:bob".into())).collect();
        assert!(deny_bursts(&d, now, 5).is_empty(), "4 of 5");
        d.push((at(60), "user:bob".into()));
        let a = deny_bursts(&d, now, 5);
        assert_eq!((a.len(), a[0].rule, a[0].user.as_str()), (1, "user-denied-repeatedly", "user:bob"));
        // 10 users once each: no user alert, but a burst against an empty day.
        let d: Vec<(Timestamp, String)> = (0..10).map(|i| (at(i), format!("user:u{i}"))).collect();
        assert_eq!(deny_bursts(&d, now, 5).iter().map(|a| a.rule).collect::<Vec<_>>(), ["deny-spike"]);
        // The same 10 against a day that always had that many: no spike.
        let mut busy = d.clone();
        busy.extend((0..2880).map(|i| (at(600 + i * 30), format!("user:v{i}"))));
        assert!(deny_bursts(&busy, now, 5).is_empty());
    }
}
