//! `GET /v1/slo` and `latch slo`: the SLIs M1–M6 after a scripted scenario
//! with known answers.
//!
//! The server's test clock is frozen, so it moves only when the test moves
//! it and every duration is exact: 3 automatic grants (0 s to grant), 1 human
//! approval 90 s after its request, 1 break-glass use in the window (and one
//! 91 days before it), a revocation whose recorded session ends 2 s after
//! it, one with no session, and one whose session is still running.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Server;
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

const OPS: &str = r#"name = "ops"
description = "Operate production"
max_duration = "48h"
default_duration = "1h"
[approval]
required = 1
approvers = ["group:leads"]
[breakglass]
allowed = true
max_duration = "1h"
[credentials.token]
audiences = ["https://ops.internal"]
[credentials.ssh]
principals = ["deploy"]
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
const SSH_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAuHzBzV4qVek1pB96sfjdk8C5XAQvJND+lHbhephlVn slo";

/// One request that must succeed; returns its JSON body.
#[track_caller]
fn call(s: &Server, method: &str, path: &str, token: &str, body: Value) -> Value {
    let body = (!body.is_null()).then_some(body);
    let (status, v) = s.http(method, path, Some(token), body.as_ref());
    assert!((200..300).contains(&status), "{method} {path}: {status} {v}");
    v
}

fn str_of(v: &Value, ptr: &str) -> String {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_else(|| panic!("no {ptr} in {v}")).to_string()
}

/// The report of `window` as `token` sees it over HTTP.
#[track_caller]
fn slo(s: &Server, token: &str, window: &str) -> Value {
    call(s, "GET", &format!("/v1/slo?window={window}"), token, Value::Null)
}

/// Freezes the server's clock: from now on it moves only by `advance`.
fn freeze(s: &Server) {
    let (status, body) = s.http("POST", "/v1/sys/test/clock", Some(&s.token), Some(&json!({ "freeze": true })));
    assert_eq!(status, 200, "{body}");
}

fn now_ms(s: &Server) -> i64 {
    let (status, body) = s.http("POST", "/v1/sys/test/clock", Some(&s.token), Some(&json!({ "advance": "1s" })));
    assert_eq!(status, 200, "{body}");
    body["now_ms"].as_i64().unwrap()
}

struct Ids {
    auto: Vec<String>,
    human: String,
    breakglass: String,
    recorded_grant_session: String,
}

/// The scenario; returns the grants and sessions it made. `s.token` ends as
/// an administrator's session valid at the end.
fn scenario(s: &mut Server) -> Ids {
    let boot = s.token.clone();
    freeze(s);
    call(s, "PUT", "/v1/users/admin/password", &boot, json!({ "password": PW }));
    for g in ["eng", "leads", "metrics-readers"] {
        call(s, "POST", "/v1/groups", &boot, json!({ "name": g }));
    }
    s.create_user("alice", PW, &["eng"]);
    s.create_user("lead", PW, &["leads"]);
    s.create_user("bob", PW, &["metrics-readers"]);
    call(s, "POST", "/v1/service-principals", &boot, json!({ "name": "ci", "groups": ["eng"] }));
    s.apply_bundle(&[("roles/ops.toml", OPS), ("policies/main.cedar", POLICIES)]);

    // 91 days before the window's end: a break-glass use (reviewed), outside a 30-day window.
    let alice = s.login("alice", PW, None).unwrap();
    let lead = s.login("lead", PW, None).unwrap();
    let old = call(s, "POST", "/v1/breakglass", &alice, json!({ "role": "ops", "reason": "long ago" }));
    let old_req = str_of(&old, "/request/id");
    call(s, "POST", &format!("/v1/requests/{old_req}/review"), &lead, json!({ "comment": "fine" }));

    // Everything above falls out of a 30-day window; service principal ci's
    // secret becomes 91 days old (over the 90-day rotation period).
    s.advance("91d");
    s.token = s.login("admin", PW, None).unwrap();
    let admin = s.token.clone();
    let alice = s.login("alice", PW, None).unwrap();
    let lead = s.login("lead", PW, None).unwrap();

    // M2: three automatic grants, activated in the request itself.
    let request =
        |dur: &str| call(s, "POST", "/v1/requests", &alice, json!({ "role": "ops", "duration": dur, "reason": "slo" }));
    let auto: Vec<String> = (0..3)
        .map(|_| {
            let v = request("30m");
            assert_eq!(v["request"]["state"], "active", "{v}");
            str_of(&v, "/grant/id")
        })
        .collect();
    // One human approval, 90 s after the request.
    let pending = request("36h");
    assert_eq!(pending["request"]["state"], "pending", "{pending}");
    let req = str_of(&pending, "/request/id");
    s.advance("90s");
    let approved = call(s, "POST", &format!("/v1/requests/{req}/approve"), &lead, json!({ "comment": "ok" }));
    let human = str_of(&approved, "/grant/id");
    // M5: one break-glass use in the window, not yet reviewed.
    let bg = call(s, "POST", "/v1/breakglass", &alice, json!({ "role": "ops", "reason": "primary down" }));
    let breakglass = str_of(&bg, "/grant/id");

    // M3: three credentials under grants; one standing administrative change.
    call(s, "POST", &format!("/v1/grants/{}/token", auto[0]), &alice, json!({}));
    // M4: a token valid for 30 h (over the 24 h limit), under the 36 h grant.
    call(s, "POST", &format!("/v1/grants/{human}/token"), &alice, json!({ "ttl": "30h" }));
    call(s, "POST", &format!("/v1/grants/{}/ssh", auto[1]), &alice, json!({ "public_key": SSH_KEY }));
    call(s, "POST", "/v1/users", &admin, json!({ "name": "carol" }));

    // M1: a recorded session under auto[0]; auto[1] got a certificate and no session.
    let rec = call(
        s,
        "POST",
        "/v1/recordings",
        &alice,
        json!({ "grant_id": auto[0], "target": "db-1", "login": "deploy", "kind": "shell", "width": 80, "height": 24 }),
    );
    let rec = str_of(&rec, "/id");

    // M6: auto[0] is revoked while its session runs; the session ends 2 s later.
    call(s, "POST", &format!("/v1/grants/{}/revoke", auto[0]), &admin, json!({ "reason": "done" }));
    s.advance("2s");
    call(s, "POST", &format!("/v1/recordings/{rec}/end"), &alice, Value::Null);
    // auto[2] is revoked with nothing running: unusable at its commit.
    call(s, "POST", &format!("/v1/grants/{}/revoke", auto[2]), &alice, json!({}));

    Ids { auto, human, breakglass, recorded_grant_session: rec }
}

#[test]
fn slis_of_a_scripted_scenario_have_exact_values() {
    let mut s = Server::start();
    let ids = scenario(&mut s);
    let admin = s.token.clone();
    let r = slo(&s, &admin, "30d");
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert_eq!(r["window"], "30d");
    assert_eq!(r["window_seconds"], 30 * 86_400);

    // M1: auto[0] was used and recorded, auto[1] used (a certificate) without a recording.
    let m1 = &r["m1"];
    assert_eq!((m1["grants_used"].as_u64(), m1["grants_recorded"].as_u64()), (Some(2), Some(1)), "{m1}");
    assert_eq!(m1["value"], 0.5);
    assert_eq!(m1["unrecorded_grants"], json!([ids.auto[1]]));
    assert_eq!(m1["sessions_recorded"], 1);
    assert_eq!(m1["met"], false);
    assert_eq!(m1["error_budget_remaining"], -49.0);
    assert!(m1["definition"].as_str().unwrap().contains("per grant"));

    // M2: exact, since the clock stands still but for the 90 s the approval waited.
    let m2 = &r["m2"];
    assert_eq!(m2["auto"]["count"], 3, "{m2}");
    assert_eq!((m2["auto"]["p50_ms"].as_i64(), m2["auto"]["p99_ms"].as_i64()), (Some(0), Some(0)));
    assert_eq!(m2["auto"]["target"], "p99 <= 5s");
    assert_eq!(m2["auto"]["met"], true);
    assert_eq!(m2["human"]["count"], 1);
    assert_eq!((m2["human"]["p50_ms"].as_i64(), m2["human"]["p99_ms"].as_i64()), (Some(90_000), Some(90_000)));
    assert_eq!(m2["human"]["target"], "p50 <= 5m");
    assert_eq!((m2["human"]["met"].as_bool(), m2["human"]["error_budget_remaining"].as_f64()), (Some(true), Some(1.0)));
    assert_eq!((m2["breakglass"]["count"].as_u64(), m2["breakglass"]["p50_ms"].as_i64()), (Some(1), Some(0)));

    // M3: 2 tokens + 1 certificate under grants, 1 standing change (user.create):
    // the setup's standing changes are 91 days old.
    let m3 = &r["m3"];
    assert_eq!((m3["jit_operations"].as_i64(), m3["standing_operations"].as_i64()), (Some(3), Some(1)), "{m3}");
    assert_eq!((m3["tokens_issued"].as_i64(), m3["ssh_certificates_issued"].as_i64()), (Some(2), Some(1)));
    assert_eq!(m3["standing_by_action"], json!({ "user.create": 1 }));
    assert_eq!(m3["value"], 0.75);
    assert_eq!((m3["met"].as_bool(), m3["error_budget_remaining"].as_f64()), (Some(false), Some(-1.5)));

    // M4: ci's 91-day-old secret and the 30-hour token; the CA and token key are 91 days old (limit 365).
    let m4 = &r["m4"];
    assert_eq!(m4["value"], 2, "{m4}");
    assert_eq!((m4["met"].as_bool(), m4["max"].as_u64()), (Some(true), Some(4)));
    let secrets = m4["service_principal_secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0]["name"], "sp:ci");
    assert!(secrets[0]["age_days"].as_f64().unwrap() >= 91.0);
    assert_eq!((m4["long_lived_tokens"].as_i64(), m4["long_lived_ssh_certificates"].as_i64()), (Some(1), Some(0)));
    let keys: Vec<&str> = m4["signing_keys"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert!(keys.contains(&"ssh-ca:ssh-user"), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("token-key:")), "{keys:?}");
    assert!(m4["signing_keys"].as_array().unwrap().iter().all(|k| k["long_lived"] == false));

    // M5: one use in 30 days against 2 per 30 days.
    let m5 = &r["m5"];
    assert_eq!(m5["value"], 1, "{m5}");
    assert_eq!((m5["budget"].as_f64(), m5["burn_rate"].as_f64()), (Some(2.0), Some(0.5)));
    assert_eq!((m5["met"].as_bool(), m5["error_budget_remaining"].as_f64()), (Some(true), Some(0.5)));
    assert_eq!(m5["unreviewed"], 1, "the old use was reviewed, the new one not yet");
    assert_eq!(m5["uses"][0]["requester"], "user:alice");
    assert_eq!(m5["uses"][0]["reviewed"], false);

    // M6: 2 s (the session under auto[0] ended 2 s after the revocation) and 0 s.
    let m6 = &r["m6"];
    assert_eq!(m6["count"], 2, "{m6}");
    assert_eq!((m6["p50_ms"].as_i64(), m6["p99_ms"].as_i64()), (Some(0), Some(2_000)));
    assert_eq!((m6["met"].as_bool(), m6["in_progress"].as_u64()), (Some(true), Some(0)));
    let by_grant: Vec<(String, i64)> = m6["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (str_of(v, "/grant_id"), v["ms"].as_i64().unwrap()))
        .collect();
    assert_eq!(by_grant, vec![(ids.auto[0].clone(), 2_000), (ids.auto[2].clone(), 0)]);
    // The revocation records when it was asked for.
    let ev = s.audit("grant.revoke");
    assert!(ev.iter().all(|e| e["details"]["requested_at"].as_i64().is_some()), "{ev:?}");

    let objectives = r["objectives"].as_array().unwrap();
    let ids_of: Vec<&str> = objectives.iter().map(|o| o["sli"].as_str().unwrap()).collect();
    assert_eq!(ids_of, ["M1", "M2", "M2", "M3", "M4", "M5", "M6"]);
    assert_eq!(r["met"], false, "M1 and M3 are not met");
    assert_eq!(objectives[2]["value"], "p50 1m30s (n=1)");

    // A wider window takes in the old break-glass use: 2 in 100 days.
    let wide = slo(&s, &admin, "100d");
    assert_eq!(wide["m5"]["value"], 2);
    assert_eq!((wide["m5"]["budget"].as_f64(), wide["m5"]["burn_rate"].as_f64()), (Some(6.6667), Some(0.3)));
    assert_eq!(wide["m2"]["breakglass"]["count"], 2);
    // … and the setup's standing changes (groups, users, a service principal, the policy, a password).
    assert!(wide["m3"]["standing_operations"].as_i64().unwrap() > 1);
    // A narrower one, after the human approval: only what came later (its token, the revocations).
    let narrow = slo(&s, &admin, "1m");
    assert_eq!(narrow["m2"]["human"]["count"], 1, "approved 2 s ago");
    assert_eq!(narrow["m5"]["value"], 1);

    // M6 counts a session still running under a revoked grant until now.
    let rec = call(
        &s,
        "POST",
        "/v1/recordings",
        &admin,
        json!({ "grant_id": ids.breakglass, "target": "db-2", "login": "deploy", "kind": "exec", "width": 80, "height": 24 }),
    );
    let rec = str_of(&rec, "/id");
    call(&s, "POST", &format!("/v1/grants/{}/revoke", ids.breakglass), &admin, json!({}));
    s.advance("5s");
    let r = slo(&s, &admin, "30d");
    assert_eq!((r["m6"]["count"].as_u64(), r["m6"]["in_progress"].as_u64()), (Some(3), Some(1)), "{}", r["m6"]);
    assert_eq!((r["m6"]["p50_ms"].as_i64(), r["m6"]["p99_ms"].as_i64()), (Some(2_000), Some(5_000)));
    s.advance("1s");
    call(&s, "POST", &format!("/v1/recordings/{rec}/end"), &admin, Value::Null);
    s.advance("10s");
    let r = slo(&s, &admin, "30d");
    assert_eq!((r["m6"]["p99_ms"].as_i64(), r["m6"]["in_progress"].as_u64()), (Some(6_000), Some(0)));
    // The break-glass grant is now used (a recorded session): M1 counts it as recorded.
    assert_eq!((r["m1"]["grants_used"].as_u64(), r["m1"]["grants_recorded"].as_u64()), (Some(3), Some(2)));
    let _ = (&ids.human, &ids.recorded_grant_session);

    // The CLI prints the same report, and a table for people.
    let out = s.cli(&["slo", "-o", "json"]).ok().json();
    assert_eq!(out["m6"], r["m6"]);
    assert_eq!(out["m2"]["human"], r["m2"]["human"]);
    let text = s.cli(&["slo", "--window", "100d"]).ok().stdout;
    for needle in ["window 100d", "M1", "time to grant, human approval", "p50 1m30s", "M6", "NO", "sp:ci"] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

#[test]
fn who_may_read_the_report_and_bad_windows() {
    let s = Server::start();
    call(&s, "POST", "/v1/groups", &s.token, json!({ "name": "metrics-readers" }));
    s.create_user("bob", PW, &["metrics-readers"]);
    s.create_user("alice", PW, &[]);
    let bob = s.login("bob", PW, None).unwrap();
    let alice = s.login("alice", PW, None).unwrap();

    // Nothing privileged happened yet: every objective without data is met, untouched.
    let r = slo(&s, &bob, "30d");
    assert_eq!(r["m1"]["value"], Value::Null, "{r}");
    assert_eq!((r["m1"]["met"].as_bool(), r["m1"]["error_budget_remaining"].as_f64()), (Some(true), Some(1.0)));
    assert_eq!(r["m2"]["auto"]["p99_ms"], Value::Null);
    assert_eq!((r["m5"]["value"].as_u64(), r["m5"]["met"].as_bool()), (Some(0), Some(true)));
    assert_eq!((r["m6"]["met"].as_bool(), r["m6"]["error_budget_remaining"].as_f64()), (Some(true), Some(1.0)));
    assert_eq!((r["m4"]["value"].as_u64(), r["m4"]["met"].as_bool()), (Some(0), Some(true)));
    // … except M3: the admin's three changes above (a group, two users) used standing rights,
    // and nothing was done with JIT credentials (the bootstrap by `system` does not count).
    assert_eq!(r["m3"]["standing_by_action"], json!({ "group.create": 1, "user.create": 2 }));
    assert_eq!((r["m3"]["value"].as_f64(), r["m3"]["met"].as_bool()), (Some(0.0), Some(false)));
    // The default window is 30 days.
    let (status, v) = s.http("GET", "/v1/slo", Some(&bob), None);
    assert_eq!((status, v["window"].as_str()), (200, Some("30d")), "{v}");

    let (status, v) = s.http("GET", "/v1/slo", None, None);
    assert_eq!(status, 401, "{v}");
    let (status, v) = s.http("GET", "/v1/slo", Some(&alice), None);
    assert_eq!(status, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("metrics-readers"), "{v}");
    let out = s.cli_as(&alice, &["slo"], None);
    assert_eq!(out.code, 3, "{out:?}");

    for (q, needle) in [("?window=0d", "greater than zero"), ("?window=400d", "366d"), ("?window=5x", "unknown unit")] {
        let (status, v) = s.http("GET", &format!("/v1/slo{q}"), Some(&bob), None);
        assert_eq!(status, 400, "{q}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with("window:") && msg.contains(needle), "{q}: {msg}");
    }
    let (status, v) = s.http("GET", "/v1/slo?windw=7d", Some(&bob), None);
    assert_eq!(status, 400, "{v}");
    let out = s.cli_as(&bob, &["slo", "--window", "1w"], None);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("window"), "{}", out.stderr);

    // `[metrics] public` opens /metrics, never the report.
    let tmp = tempfile::tempdir().unwrap();
    let public = Server::start_in(&tmp.path().join("data"), &["--metrics-public"]);
    assert_eq!(public.http_raw("GET", "/metrics", None, None, &[]).0, 200);
    assert_eq!(public.http("GET", "/v1/slo", None, None).0, 401);
    assert_eq!(public.http("GET", "/v1/slo", Some(&public.token), None).0, 200);
}

#[test]
fn the_test_clock_freezes_and_thaws() {
    let s = Server::start();
    freeze(&s);
    let a = now_ms(&s);
    let b = now_ms(&s);
    assert_eq!(b - a, 1_000, "a frozen clock moves only when advanced");
    let (status, v) = s.http("POST", "/v1/sys/test/clock", Some(&s.token), Some(&json!({ "freeze": false })));
    assert_eq!(status, 200, "{v}");
    assert!(v["now_ms"].as_i64().unwrap() >= b, "thawing never goes back");
    let (status, v) = s.http("POST", "/v1/sys/test/clock", Some(&s.token), Some(&json!({})));
    assert_eq!(status, 400, "{v}");
}
