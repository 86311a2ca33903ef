//! What latch measures about itself, served at `/metrics` in the Prometheus
//! text format (see [`text`] for the format).
//!
//! Two kinds of series:
//! - **this node's**, counted in process since it started (HTTP requests,
//!   policy decisions, time-to-grant, revocation and audit-append latency,
//!   webhook deliveries): reset on restart, and summed across nodes;
//! - **the cluster's**, computed from the store at scrape time (grants by role
//!   and state, pending requests, credentials issued and revoked, break-glass
//!   uses, recorded sessions, the audit head): the same on every node sharing
//!   a database, so aggregate them with `max`, not `sum`. Their counters never
//!   go back, as the store never deletes the rows they count.
//!
//! Names follow Prometheus conventions: prefix `latch_`, base units
//! (seconds), `_total` on counters. Label values are bounded: routes are
//! templates (`/v1/requests/{id}`), never raw paths.

pub mod text;

use std::sync::Arc;
use std::time::Duration;

use latch_core::{Histogram, Timestamp};
use latch_store::StoreStats;

use crate::state::AppState;
use text::{Counter, CounterVec, Encoder, HistogramVec, Kind};

/// Members of this group (and administrators) may read `/metrics`.
pub const METRICS_READERS_GROUP: &str = "metrics-readers";

/// HTTP request latency buckets, in seconds.
pub const HTTP_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Time-to-grant buckets, in seconds: from an automatic activation (milliseconds)
/// to a human approval the next day; 300 s is the guide's M2 target.
pub const TIME_TO_GRANT_BUCKETS: &[f64] =
    &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0, 86400.0];

/// Revocation latency buckets, in seconds; 60 s is the guide's M6 target.
pub const REVOCATION_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The Cedar action a decision was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionAction {
    /// Requesting a role (the role's own rules, then `request` and `activate`).
    Request,
    /// Approving or denying someone's request.
    Approve,
    Breakglass,
}

impl DecisionAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionAction::Request => "request",
            DecisionAction::Approve => "approve",
            DecisionAction::Breakglass => "breakglass",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionOutcome {
    Allow,
    Deny,
    /// Permitted to request, not to activate: it waits for approvers.
    NeedsApproval,
}

impl DecisionOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionOutcome::Allow => "allow",
            DecisionOutcome::Deny => "deny",
            DecisionOutcome::NeedsApproval => "needs_approval",
        }
    }
}

/// How a grant came to be active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approval {
    /// Activated by policy when requested.
    Auto,
    /// Activated by the approval that reached the role's threshold.
    Human,
    Breakglass,
}

impl Approval {
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::Auto => "auto",
            Approval::Human => "human",
            Approval::Breakglass => "breakglass",
        }
    }
}

/// This node's counters and histograms.
#[derive(Debug)]
pub struct Metrics {
    http_requests: CounterVec,
    http_duration: HistogramVec,
    decisions: CounterVec,
    time_to_grant: HistogramVec,
    revocation: Histogram,
    siem: CounterVec,
    revocation_failures: Counter,
    /// Recorded by the store's writer.
    audit_append: Arc<Histogram>,
    started_at: f64,
}

impl Metrics {
    /// `audit_append` is the store's histogram of audited-write latency;
    /// `started` the node's start time.
    pub fn new(audit_append: Arc<Histogram>, started: Timestamp) -> Self {
        let m = Metrics {
            http_requests: CounterVec::new(&["method", "route", "code"]),
            http_duration: HistogramVec::new(&["method", "route"], HTTP_BUCKETS),
            decisions: CounterVec::new(&["action", "outcome"]),
            time_to_grant: HistogramVec::new(&["approval"], TIME_TO_GRANT_BUCKETS),
            revocation: Histogram::new(REVOCATION_BUCKETS),
            siem: CounterVec::new(&["sink", "result"]),
            revocation_failures: Counter::default(),
            audit_append,
            started_at: started.secs() as f64,
        };
        // Every series that can exist is there from the start, at zero, so
        // that rate() and alerts see the first event rather than a new series.
        use DecisionAction as A;
        use DecisionOutcome as O;
        for (a, o) in [
            (A::Request, O::Allow),
            (A::Request, O::NeedsApproval),
            (A::Request, O::Deny),
            (A::Approve, O::Allow),
            (A::Approve, O::Deny),
            (A::Breakglass, O::Allow),
            (A::Breakglass, O::Deny),
        ] {
            m.decisions.with(&[a.as_str(), o.as_str()]);
        }
        for a in [Approval::Auto, Approval::Human, Approval::Breakglass] {
            m.time_to_grant.with(&[a.as_str()]);
        }
        m
    }

    /// One HTTP request answered: `route` is the matched template.
    pub fn http_request(&self, method: &str, route: &str, code: u16, elapsed: Duration) {
        let method = match method {
            "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS" => method,
            _ => "other",
        };
        self.http_requests.with(&[method, route, &code.to_string()]).inc();
        self.http_duration.with(&[method, route]).observe_duration(elapsed);
    }

    /// A policy decision that was made and audited.
    pub fn decision(&self, action: DecisionAction, outcome: DecisionOutcome) {
        self.decisions.with(&[action.as_str(), outcome.as_str()]).inc();
    }

    pub fn decisions(&self, action: DecisionAction, outcome: DecisionOutcome) -> u64 {
        self.decisions.value(&[action.as_str(), outcome.as_str()])
    }

    /// From a request's creation to its grant being active.
    pub fn time_to_grant(&self, approval: Approval, d: Duration) {
        self.time_to_grant.with(&[approval.as_str()]).observe_duration(d);
    }

    /// From receiving a revocation to its commit (grant, tokens and certificates ended).
    pub fn revocation(&self, d: Duration) {
        self.revocation.observe_duration(d);
    }

    /// A revocation this node could not commit (the store failed), or a
    /// failed attempt to drop a database credential's role.
    pub fn revocation_failed(&self) {
        self.revocation_failures.inc();
    }

    pub fn revocation_failures(&self) -> u64 {
        self.revocation_failures.get()
    }

    /// One batch of audit events delivered to (or failed at) a SIEM sink.
    pub fn siem_delivery(&self, sink: &str, ok: bool) {
        self.siem.with(&[sink, if ok { "delivered" } else { "failed" }]).inc();
    }

    /// The whole exposition: this node's series, then the cluster's from the store.
    pub async fn render(&self, st: &AppState) -> String {
        let now = st.clock.now();
        let stats = match st.store.stats(now).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot read aggregates from the store");
                None
            }
        };
        let notify = st.notify_status().clone();
        let mut e = Encoder::new();

        e.header("latch_build_info", Kind::Gauge, "Always 1; the version of latch this node runs.");
        e.sample("latch_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        e.gauge(
            "latch_start_time_seconds",
            "When this node started, in seconds since the Unix epoch.",
            self.started_at,
        );
        e.gauge(
            "latch_leader",
            "1 when this node runs the background work (sweeper, timeouts, notifications).",
            if st.store.is_leader() { 1.0 } else { 0.0 },
        );
        e.gauge(
            "latch_store_up",
            "1 when the store answered this scrape; the cluster-wide series are absent when 0.",
            if stats.is_some() { 1.0 } else { 0.0 },
        );

        e.counter_vec(
            "latch_http_requests_total",
            "HTTP requests answered by this node, by method, route template and status code.",
            &self.http_requests,
        );
        e.histogram_vec(
            "latch_http_request_duration_seconds",
            "Time to answer an HTTP request on this node, by method and route template.",
            &self.http_duration,
        );
        e.counter_vec(
            "latch_policy_decisions_total",
            "Policy decisions made on this node, by action (request: asking for a role; approve: acting \
             as an approver, to approve or deny; breakglass) and outcome (allow, deny, needs_approval); \
             a role's own rules refusing a request count as deny.",
            &self.decisions,
        );
        e.histogram_vec(
            "latch_time_to_grant_seconds",
            "From a request's creation to its grant being active, by approval: auto (policy, \
             measured in the request), human (the approval that reached the threshold) or breakglass.",
            &self.time_to_grant,
        );
        e.histogram(
            "latch_revocation_duration_seconds",
            "From receiving a grant revocation to its commit, with every token and certificate under it revoked.",
            &self.revocation,
        );
        e.histogram(
            "latch_audit_append_duration_seconds",
            "From submitting a change with its audit events to their durable commit on this node.",
            &self.audit_append,
        );
        e.counter(
            "latch_webhook_deliveries_total",
            "Notifications this node delivered to the webhook.",
            notify.delivered,
        );
        e.counter(
            "latch_webhook_delivery_failures_total",
            "Failed webhook delivery attempts on this node (each is retried).",
            notify.failures,
        );
        e.counter(
            "latch_revocation_failures_total",
            "Revocations that failed on this node: grant revocations the store could not commit (the grant stays active: \
             retry), and attempts to drop a database credential's role (retried with backoff; see GET /v1/db/creds).",
            self.revocation_failures.get(),
        );
        e.counter_vec(
            "latch_siem_batches_total",
            "Batches of audit events this node exported, by SIEM sink and result (delivered, failed: retried).",
            &self.siem,
        );
        e.gauge(
            "latch_webhook_consecutive_failures",
            "Failed webhook delivery attempts since the last success on this node.",
            notify.consecutive_failures as f64,
        );

        if let Some(s) = stats {
            store_series(&mut e, &s, now);
        }
        e.finish()
    }
}

/// The cluster-wide series, from the store's aggregates.
fn store_series(e: &mut Encoder, s: &StoreStats, now: Timestamp) {
    e.header("latch_grants", Kind::Gauge, "Grants by role and state (active, expired, revoked); cluster-wide.");
    for (role, state, n) in &s.grants {
        e.sample("latch_grants", &[("role", role), ("state", state)], *n as f64);
    }
    e.gauge("latch_requests_pending", "Requests waiting for approval; cluster-wide.", s.pending_requests as f64);
    let oldest = s.oldest_pending.map_or(0.0, |t| (now.millis().saturating_sub(t.millis())).max(0) as f64 / 1000.0);
    e.gauge(
        "latch_requests_pending_oldest_age_seconds",
        "Age of the oldest request waiting for approval (0 when none); cluster-wide.",
        oldest,
    );
    e.counter(
        "latch_breakglass_activations_total",
        "Break-glass activations; cluster-wide.",
        s.breakglass_total.max(0).unsigned_abs(),
    );
    e.gauge(
        "latch_breakglass_unreviewed",
        "Break-glass activations still waiting for their post-incident review; cluster-wide.",
        s.breakglass_unreviewed as f64,
    );
    e.counter(
        "latch_tokens_issued_total",
        "Signed tokens issued; cluster-wide.",
        s.tokens_issued.max(0).unsigned_abs(),
    );
    e.counter(
        "latch_tokens_revoked_total",
        "Signed tokens revoked before their expiry (with their grant or principal); cluster-wide.",
        s.tokens_revoked.max(0).unsigned_abs(),
    );
    e.counter(
        "latch_ssh_certificates_issued_total",
        "SSH user certificates signed; cluster-wide.",
        s.ssh_certs_issued.max(0).unsigned_abs(),
    );
    e.counter(
        "latch_ssh_certificates_revoked_total",
        "SSH user certificates revoked (listed in the KRL); cluster-wide.",
        s.ssh_certs_revoked.max(0).unsigned_abs(),
    );
    e.gauge(
        "latch_recording_sessions_active",
        "Recorded sessions started and not yet ended; cluster-wide.",
        s.active_recordings as f64,
    );
    e.gauge(
        "latch_audit_head_sequence",
        "Sequence number of the newest audit event (the head of the hash chain); cluster-wide.",
        s.audit_head_seq as f64,
    );
}
