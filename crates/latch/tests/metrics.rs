//! `/metrics`: who may read it, and exact values after scripted scenarios.
//!
//! Every scrape is checked three ways: by `promtool check metrics` (the
//! Prometheus project's own linter), by Python's `prometheus_client` parser
//! (which must read exactly the samples our own parser reads), and by the
//! assertions here. With `CI=true` a missing tool fails the test; elsewhere
//! the check is skipped with a loud note.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{Server, eventually};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

const OPS: &str = r#"name = "ops"
description = "Operate production"
max_duration = "4h"
default_duration = "1h"
[approval]
required = 1
approvers = ["group:leads"]
[requirements]
reason = true
[breakglass]
allowed = true
max_duration = "1h"
[credentials.token]
audiences = ["https://ops.internal"]
[credentials.ssh]
principals = ["deploy"]
"#;

const SECRET: &str = r#"name = "secret"
description = "Nobody may ask for this"
max_duration = "1h"
[approval]
required = 1
approvers = ["group:leads"]
"#;

const POLICIES: &str = r#"@id("eng-may-request-ops")
permit(principal in Group::"eng", action == Action::"request", resource == Role::"ops");

@id("eng-auto-activate-short")
permit(principal in Group::"eng", action == Action::"activate", resource == Role::"ops")
when { context.duration_secs <= 1800 };

@id("leads-approve")
permit(principal in Group::"leads", action == Action::"approve", resource);

@id("eng-breakglass")
permit(principal in Group::"eng", action == Action::"breakglass", resource);
"#;

/// A public key to certify (its private half was thrown away).
const SSH_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAuHzBzV4qVek1pB96sfjdk8C5XAQvJND+lHbhephlVn metrics";

/// One sample: name and labels (sorted), value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A parsed exposition.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// The value of the sample with exactly these labels, if present.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples.iter().find(|(n, l, _)| n == name && *l == want).map(|s| s.2)
    }

    #[track_caller]
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{}", self.text))
    }

    /// A counter's value, 0 when the series does not exist yet.
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.get(name, labels).map_or(0, |v| v as u64)
    }

    fn decisions(&self, action: &str, outcome: &str) -> u64 {
        self.count("latch_policy_decisions_total", &[("action", action), ("outcome", outcome)])
    }

    fn http(&self, method: &str, route: &str, code: &str) -> u64 {
        self.count("latch_http_requests_total", &[("method", method), ("route", route), ("code", code)])
    }

    /// (cumulative bucket counts by `le`, sum, count) of one histogram series.
    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> (BTreeMap<String, u64>, f64, u64) {
        let base: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut buckets = BTreeMap::new();
        for (n, l, v) in &self.samples {
            if n == &format!("{name}_bucket") {
                let mut rest = l.clone();
                let le = rest.remove("le").expect("bucket without le");
                if rest == base {
                    buckets.insert(le, *v as u64);
                }
            }
        }
        assert!(!buckets.is_empty(), "no histogram {name}{labels:?}");
        let sum = self.value(&format!("{name}_sum"), labels);
        let count = self.value(&format!("{name}_count"), labels) as u64;
        assert_eq!(buckets.get("+Inf"), Some(&count), "{name}: +Inf bucket differs from _count");
        (buckets, sum, count)
    }

    fn type_of(&self, family: &str) -> Option<&str> {
        self.text.lines().find_map(|l| l.strip_prefix(&format!("# TYPE {family} ")))
    }
}

/// Parses the text format (the subset latch writes, strictly).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                (name.to_string(), parse_labels(body))
            }
        };
        out.push((name, labels, value));
    }
    out
}

fn parse_labels(body: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label {key} is not quoted in {body}");
        let mut value = String::new();
        loop {
            match chars.next().unwrap_or_else(|| panic!("unterminated label value in {body}")) {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c @ ('\\' | '"')) => value.push(c),
                    other => panic!("bad escape {other:?} in {body}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

/// Whether an external checker is here. In CI (`CI=true`) a missing one fails
/// the test: `scripts/test` installs it. Elsewhere the check is skipped, loudly.
fn have(what: &str, probe: &mut Command, install: &str) -> bool {
    let ok = probe.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{what} is missing, and CI must run every check: {install} (scripts/test does)"
        );
        eprintln!("SKIPPED: the {what} check of /metrics ({what} is not installed: {install})");
    }
    ok
}

/// `promtool check metrics`: the format, and Prometheus' naming lints.
fn promtool_check(text: &str) {
    if !have("promtool", Command::new("promtool").arg("--version"), "apt-get install prometheus") {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
}

const PY_PARSE: &str = r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
families, samples = {}, []
for f in text_string_to_metric_families(sys.stdin.read()):
    families[f.name] = f.type
    for s in f.samples:
        v = s.value
        samples.append([s.name, s.labels, "+Inf" if v == math.inf else repr(float(v))])
print(json.dumps({"families": families, "samples": samples}))
"#;

/// Python's `prometheus_client` must read exactly the samples we read.
fn python_check(scrape: &Scrape) {
    if !have(
        "prometheus_client",
        Command::new("python3").args(["-c", "import prometheus_client"]),
        "python3 -m pip install prometheus_client",
    ) {
        return;
    }
    let mut child = Command::new("python3")
        .args(["-c", PY_PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(scrape.text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "prometheus_client could not parse:\n{}", String::from_utf8_lossy(&out.stderr));
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut theirs: Vec<String> = parsed["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels: BTreeMap<String, String> = serde_json::from_value(s[1].clone()).unwrap();
            let v: f64 = match s[2].as_str().unwrap() {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap(),
            };
            format!("{} {labels:?} {v:?}", s[0].as_str().unwrap())
        })
        .collect();
    let mut ours: Vec<String> = scrape.samples.iter().map(|(n, l, v)| format!("{n} {l:?} {v:?}")).collect();
    theirs.sort();
    ours.sort();
    assert_eq!(theirs, ours, "prometheus_client reads other samples than we do");
    // Types as Prometheus sees them (the parser drops `_total` from counter family names).
    let families = &parsed["families"];
    for (family, kind) in [
        ("latch_http_requests", "counter"),
        ("latch_http_request_duration_seconds", "histogram"),
        ("latch_policy_decisions", "counter"),
        ("latch_time_to_grant_seconds", "histogram"),
        ("latch_revocation_duration_seconds", "histogram"),
        ("latch_audit_append_duration_seconds", "histogram"),
        ("latch_grants", "gauge"),
        ("latch_requests_pending", "gauge"),
        ("latch_requests_pending_oldest_age_seconds", "gauge"),
        ("latch_breakglass_activations", "counter"),
        ("latch_tokens_issued", "counter"),
        ("latch_tokens_revoked", "counter"),
        ("latch_ssh_certificates_issued", "counter"),
        ("latch_recording_sessions_active", "gauge"),
        ("latch_audit_head_sequence", "gauge"),
        ("latch_webhook_delivery_failures", "counter"),
    ] {
        assert_eq!(families[family], kind, "family {family} in {families}");
    }
}

/// GET /metrics with `token`; checked by promtool and prometheus_client.
#[track_caller]
fn scrape(s: &Server, token: Option<&str>) -> Scrape {
    let scrape = scrape_unchecked(s, token);
    promtool_check(&scrape.text);
    python_check(&scrape);
    scrape
}

/// GET /metrics, parsed by us alone (for polling).
#[track_caller]
fn scrape_unchecked(s: &Server, token: Option<&str>) -> Scrape {
    let (status, headers, text) = s.http_raw("GET", "/metrics", token, None, &[]);
    assert_eq!(status, 200, "{text}");
    let ctype = headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str()).unwrap_or("");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "content-type {ctype}");
    let scrape = Scrape { samples: parse(&text), text };
    for (name, _, _) in &scrape.samples {
        assert!(name.starts_with("latch_"), "{name} lacks the latch_ prefix");
    }
    scrape
}

/// One request that must answer `status`; returns its JSON body.
#[track_caller]
fn expect(s: &Server, method: &str, path: &str, token: &str, body: Value, status: u16) -> Value {
    let body = (!body.is_null()).then_some(body);
    let (got, v) = s.http(method, path, Some(token), body.as_ref());
    assert_eq!(got, status, "{method} {path}: {v}");
    v
}

fn id(v: &Value, ptr: &str) -> String {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_else(|| panic!("no {ptr} in {v}")).to_string()
}

struct World {
    s: Server,
    alice: String,
    bob: String,
    lead: String,
    /// Service principal `prom`, in group metrics-readers.
    prom: String,
    /// The data directory; removed after the server (declared before) is stopped.
    _tmp: tempfile::TempDir,
}

fn world(extra: &[&str]) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(&tmp.path().join("data"), extra);
    let admin = s.token.clone();
    for g in ["eng", "leads", "metrics-readers"] {
        expect(&s, "POST", "/v1/groups", &admin, json!({ "name": g }), 201);
    }
    s.create_user("alice", PW, &["eng"]);
    s.create_user("bob", PW, &["eng"]);
    s.create_user("lead", PW, &["leads"]);
    let files = json!({ "roles/ops.toml": OPS, "roles/secret.toml": SECRET, "policies/main.cedar": POLICIES });
    expect(&s, "POST", "/v1/policy/apply", &admin, json!({ "files": files }), 200);
    let sp = expect(
        &s,
        "POST",
        "/v1/service-principals",
        &admin,
        json!({ "name": "prom", "groups": ["metrics-readers"] }),
        201,
    );
    let (status, login) = s.http(
        "POST",
        "/v1/auth/sp/login",
        None,
        Some(&json!({ "client_id": id(&sp, "/client_id"), "client_secret": id(&sp, "/client_secret") })),
    );
    assert_eq!(status, 200, "{login}");
    let login_as = |u: &str| s.login(u, PW, None).unwrap();
    let (alice, bob, lead) = (login_as("alice"), login_as("bob"), login_as("lead"));
    s.token = admin;
    World { prom: id(&login, "/token"), alice, bob, lead, s, _tmp: tmp }
}

#[test]
fn metrics_need_an_administrator_or_a_metrics_reader_unless_public() {
    let w = world(&[]);
    let s = &w.s;
    let (status, v) = s.http("GET", "/metrics", None, None);
    assert_eq!((status, v["error"]["code"].as_str()), (401, Some("unauthenticated")), "{v}");
    let (status, v) = s.http("GET", "/metrics", Some(&w.bob), None);
    assert_eq!(status, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("metrics-readers"), "{v}");
    scrape(s, Some(&s.token));
    let m = scrape(s, Some(&w.prom));
    assert_eq!(m.http("GET", "/metrics", "401"), 1);
    assert_eq!(m.http("GET", "/metrics", "403"), 1);
    assert_eq!(m.http("GET", "/metrics", "200"), 1);
    // Joining the group is enough, and takes effect at once.
    expect(s, "POST", "/v1/groups/metrics-readers/members", &s.token, json!({ "kind": "user", "name": "bob" }), 204);
    scrape(s, Some(&w.bob));

    // `[metrics] public = true` (here its dev-mode flag): anyone, with or without a token.
    let open = world(&["--metrics-public"]);
    scrape(&open.s, None);
    scrape(&open.s, Some("lts_not_a_token"));
}

/// Failure mode F4 of the guide: a spike of denied requests shows in the
/// deny counter, one for one, and in nothing else.
#[test]
fn a_spike_of_denies_shows_in_the_metrics() {
    let w = world(&[]);
    let s = &w.s;
    let before = scrape(s, Some(&w.prom));
    const BY_POLICY: u64 = 9;
    const BY_ROLE_RULES: u64 = 3;
    for _ in 0..BY_POLICY {
        // No policy permits requesting role `secret`.
        expect(s, "POST", "/v1/requests", &w.bob, json!({ "role": "secret", "reason": "curious" }), 403);
    }
    for _ in 0..BY_ROLE_RULES {
        // Role `ops` requires a reason.
        expect(s, "POST", "/v1/requests", &w.bob, json!({ "role": "ops", "duration": "30m" }), 400);
    }
    let after = scrape(s, Some(&w.prom));
    assert_eq!(after.decisions("request", "deny") - before.decisions("request", "deny"), BY_POLICY + BY_ROLE_RULES);
    for (action, outcome) in [
        ("request", "allow"),
        ("request", "needs_approval"),
        ("approve", "allow"),
        ("approve", "deny"),
        ("breakglass", "allow"),
        ("breakglass", "deny"),
    ] {
        assert_eq!(after.decisions(action, outcome), before.decisions(action, outcome), "{action}/{outcome}");
    }
    assert_eq!(after.http("POST", "/v1/requests", "403") - before.http("POST", "/v1/requests", "403"), BY_POLICY);
    assert_eq!(after.http("POST", "/v1/requests", "400") - before.http("POST", "/v1/requests", "400"), BY_ROLE_RULES);
    // Every denial is in the audit log too.
    let denied = s.audit("request.create").iter().filter(|e| e["outcome"] == "denied").count() as u64;
    assert_eq!(denied, BY_POLICY + BY_ROLE_RULES);
}

/// A scripted day with known answers: every series has its exact value.
#[test]
fn a_scripted_scenario_gives_exact_values() {
    let w = world(&[]);
    let s = &w.s;
    let (alice, lead, admin) = (&w.alice, &w.lead, &s.token.clone());
    let m0 = scrape(s, Some(&w.prom));
    assert_eq!(m0.value("latch_store_up", &[]), 1.0);
    assert_eq!(m0.value("latch_leader", &[]), 1.0);
    assert_eq!(m0.value("latch_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    for (action, outcome) in [("request", "allow"), ("request", "deny"), ("approve", "allow"), ("breakglass", "deny")] {
        assert_eq!(m0.get("latch_policy_decisions_total", &[("action", action), ("outcome", outcome)]), Some(0.0));
    }
    assert_eq!(m0.value("latch_requests_pending", &[]), 0.0);
    assert_eq!(m0.value("latch_requests_pending_oldest_age_seconds", &[]), 0.0);
    assert_eq!(m0.type_of("latch_grants"), Some("gauge"));

    // Three automatic grants (30 m: policy activates), two pending requests (2 h: approval needed).
    let request = |dur: &str| json!({ "role": "ops", "duration": dur, "reason": "maintenance" });
    let auto: Vec<String> =
        (0..3).map(|_| id(&expect(s, "POST", "/v1/requests", alice, request("30m"), 201), "/grant/id")).collect();
    let pending: Vec<String> =
        (0..2).map(|_| id(&expect(s, "POST", "/v1/requests", alice, request("2h"), 201), "/request/id")).collect();
    // Ninety seconds later the lead approves the first; alice cannot approve her own.
    s.advance("90s");
    expect(s, "POST", &format!("/v1/requests/{}/approve", pending[0]), alice, json!({}), 403);
    let approved = expect(s, "POST", &format!("/v1/requests/{}/approve", pending[0]), lead, json!({}), 200);
    assert_eq!(approved["request"]["state"], "active", "{approved}");
    // Break glass: alice may (eng), the lead may not.
    let bg = expect(s, "POST", "/v1/breakglass", alice, json!({ "role": "ops", "reason": "primary down" }), 201);
    expect(s, "POST", "/v1/breakglass", lead, json!({ "role": "ops", "reason": "me too" }), 403);
    // Credentials: two tokens under the first grant, a certificate under the second.
    for _ in 0..2 {
        expect(s, "POST", &format!("/v1/grants/{}/token", auto[0]), alice, json!({}), 200);
    }
    expect(s, "POST", &format!("/v1/grants/{}/ssh", auto[1]), alice, json!({ "public_key": SSH_KEY }), 200);
    // Two recorded sessions under the third grant; one ends.
    let rec = || {
        let body = json!({ "grant_id": auto[2], "target": "db-1", "login": "deploy", "kind": "shell", "width": 80, "height": 24 });
        id(&expect(s, "POST", "/v1/recordings", alice, body, 201), "/id")
    };
    let (_running, ended) = (rec(), rec());
    expect(s, "POST", &format!("/v1/recordings/{ended}/end"), alice, Value::Null, 200);
    // Revoke the first two grants: their two tokens and the certificate go with them.
    for g in &auto[..2] {
        expect(s, "POST", &format!("/v1/grants/{g}/revoke"), alice, json!({ "reason": "done" }), 200);
    }
    // A request for a path that is no route, with text that must not become a label.
    let (status, _) = s.http("GET", "/v1/no-such-route-xyzzy", Some(admin), None);
    assert_eq!(status, 404);

    let m = scrape(s, Some(&w.prom));
    let (_, health) = s.http("GET", "/v1/sys/health", None, None);

    // Decisions.
    for (action, outcome, n) in [
        ("request", "allow", 3),
        ("request", "needs_approval", 2),
        ("request", "deny", 0),
        ("approve", "allow", 1),
        ("approve", "deny", 1),
        ("breakglass", "allow", 1),
        ("breakglass", "deny", 1),
    ] {
        assert_eq!(m.decisions(action, outcome), n, "{action}/{outcome}");
    }
    // Time to grant: automatic ones within a second; the human one after 90 s (plus
    // the wall time the test took, since the test clock runs on from where it was moved).
    let (b, _, n) = m.histogram("latch_time_to_grant_seconds", &[("approval", "auto")]);
    assert_eq!((n, b["1"]), (3, 3));
    let (b, sum, n) = m.histogram("latch_time_to_grant_seconds", &[("approval", "human")]);
    assert_eq!((n, b["60"], b["120"], b["300"]), (1, 0, 1, 1), "{b:?}");
    assert!((90.0..120.0).contains(&sum), "human time to grant {sum}");
    let (b, _, n) = m.histogram("latch_time_to_grant_seconds", &[("approval", "breakglass")]);
    assert_eq!((n, b["1"]), (1, 1));
    // Grants by role and state: 3 auto + 1 approved + 1 break-glass, 2 of them revoked.
    assert_eq!(m.value("latch_grants", &[("role", "ops"), ("state", "active")]), 3.0);
    assert_eq!(m.value("latch_grants", &[("role", "ops"), ("state", "revoked")]), 2.0);
    assert_eq!(m.get("latch_grants", &[("role", "ops"), ("state", "expired")]), None);
    assert_eq!(m.get("latch_grants", &[("role", "secret"), ("state", "active")]), None);
    // The other request still waits, since before the clock moved 90 s.
    assert_eq!(m.value("latch_requests_pending", &[]), 1.0);
    let age = m.value("latch_requests_pending_oldest_age_seconds", &[]);
    assert!((90.0..120.0).contains(&age), "oldest pending age {age}");
    // Credentials, break-glass, sessions, revocations.
    assert_eq!(m.value("latch_tokens_issued_total", &[]), 2.0);
    assert_eq!(m.value("latch_tokens_revoked_total", &[]), 2.0);
    assert_eq!(m.value("latch_ssh_certificates_issued_total", &[]), 1.0);
    assert_eq!(m.value("latch_ssh_certificates_revoked_total", &[]), 1.0);
    assert_eq!(m.value("latch_breakglass_activations_total", &[]), 1.0);
    assert_eq!(m.value("latch_breakglass_unreviewed", &[]), 1.0);
    assert_eq!(m.value("latch_recording_sessions_active", &[]), 1.0);
    let (b, _, n) = m.histogram("latch_revocation_duration_seconds", &[]);
    assert_eq!((n, b["60"]), (2, 2));
    // The audit chain head, as health reports it.
    assert_eq!(m.value("latch_audit_head_sequence", &[]), health["audit_head_seq"].as_f64().unwrap());
    let (_, _, appended) = m.histogram("latch_audit_append_duration_seconds", &[]);
    assert!(appended > 0);
    // HTTP, by route template (never the raw path) and status code.
    assert_eq!(m.http("POST", "/v1/requests", "201"), 5);
    assert_eq!(m.http("POST", "/v1/requests/{id}/approve", "200"), 1);
    assert_eq!(m.http("POST", "/v1/requests/{id}/approve", "403"), 1);
    assert_eq!(m.http("POST", "/v1/breakglass", "201"), 1);
    assert_eq!(m.http("POST", "/v1/breakglass", "403"), 1);
    assert_eq!(m.http("POST", "/v1/grants/{id}/token", "200"), 2);
    assert_eq!(m.http("POST", "/v1/grants/{id}/revoke", "200"), 2);
    assert_eq!(m.http("GET", "unmatched", "404"), 1);
    assert!(!m.text.contains("xyzzy") && !m.text.contains(&auto[0]), "raw paths leaked into labels");
    let (_, _, n) =
        m.histogram("latch_http_request_duration_seconds", &[("method", "POST"), ("route", "/v1/requests")]);
    assert_eq!(n, 5);

    // One audited change between two scrapes: the audit-append histogram counts exactly it.
    expect(s, "POST", "/v1/groups", admin, json!({ "name": "auditors" }), 201);
    let m2 = scrape(s, Some(&w.prom));
    let (_, _, appended2) = m2.histogram("latch_audit_append_duration_seconds", &[]);
    assert_eq!(appended2, appended + 1);

    // The review closes the break-glass use; four hours on, every live grant has expired.
    let review = format!("/v1/requests/{}/review", id(&bg, "/request/id"));
    expect(s, "POST", &review, lead, json!({ "comment": "checked" }), 200);
    s.advance("4h");
    // (prom's service-principal session has expired by now: 1 h; the administrator's lasts 8 h.)
    let m3 = scrape(s, Some(admin));
    assert_eq!(m3.value("latch_breakglass_unreviewed", &[]), 0.0);
    assert_eq!(m3.value("latch_breakglass_activations_total", &[]), 1.0);
    assert_eq!(m3.get("latch_grants", &[("role", "ops"), ("state", "active")]), None);
    assert_eq!(m3.value("latch_grants", &[("role", "ops"), ("state", "expired")]), 3.0);
    assert_eq!(m3.value("latch_grants", &[("role", "ops"), ("state", "revoked")]), 2.0);
    let age = m3.value("latch_requests_pending_oldest_age_seconds", &[]);
    assert!((4.0 * 3600.0 + 90.0..4.0 * 3600.0 + 120.0).contains(&age), "oldest pending age {age}");
}

/// A webhook receiver that answers the first `failures` posts with 500, then 200.
fn failing_receiver(failures: usize) -> (String, Arc<Mutex<usize>>) {
    let w = common::webhook(failures);
    (w.url, w.posts)
}

#[test]
fn webhook_delivery_failures_are_counted() {
    let (url, posts) = failing_receiver(2);
    let w = world(&["--webhook", &url]);
    let s = &w.s;
    let m = scrape(s, Some(&w.prom));
    assert_eq!(m.value("latch_webhook_delivery_failures_total", &[]), 0.0);
    // A pending request is notified: refused twice (retried after 1 s and 2 s), then delivered.
    let body = json!({ "role": "ops", "duration": "2h", "reason": "upgrade" });
    expect(s, "POST", "/v1/requests", &w.alice, body, 201);
    eventually("a failed delivery to show", || {
        scrape_unchecked(s, Some(&w.prom)).value("latch_webhook_consecutive_failures", &[]) >= 1.0
    });
    common::eventually_within("the delivery", std::time::Duration::from_secs(20), || {
        scrape_unchecked(s, Some(&w.prom)).value("latch_webhook_deliveries_total", &[]) == 1.0
    });
    let m = scrape(s, Some(&w.prom));
    assert_eq!(m.value("latch_webhook_delivery_failures_total", &[]), 2.0);
    assert_eq!(m.value("latch_webhook_consecutive_failures", &[]), 0.0);
    assert_eq!(*posts.lock().unwrap(), 3);
}
