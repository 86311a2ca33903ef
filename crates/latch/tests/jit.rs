//! Just-in-time elevation end to end: policy as code, requests, approvals,
//! grants, tokens, revocation, expiry, break-glass and notifications —
//! driven through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{Server, run_cli, secret_from_uri, totp_at};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

const ROLES: &[(&str, &str)] = &[
    (
        "roles/read-logs.toml",
        r#"name = "read-logs"
description = "Read production logs"
max_duration = "2h"
default_duration = "30m"
[approval]
required = 1
approvers = ["group:leads"]
[credentials.token]
audiences = ["https://logs.internal", "https://metrics.internal"]
max_ttl = "20m"
"#,
    ),
    (
        "roles/prod-db.toml",
        r#"name = "prod-db"
description = "Administer the production database"
max_duration = "4h"
default_duration = "1h"
[approval]
required = 2
approvers = ["group:dba-leads"]
[requirements]
ticket = true
ticket_pattern = "^(INC|CHG)-[0-9]+$"
[breakglass]
allowed = true
max_duration = "1h"
[credentials.token]
audiences = ["https://db.internal"]
"#,
    ),
    (
        "roles/root.toml",
        r#"name = "root"
description = "Root on every server"
max_duration = "1h"
[approval]
required = 1
approvers = ["group:leads"]
[requirements]
mfa = true
"#,
    ),
];

const POLICIES: &str = r#"@id("eng-may-request")
permit(principal in Group::"eng", action == Action::"request", resource);

@id("eng-auto-logs")
permit(principal in Group::"eng", action == Action::"activate", resource == Role::"read-logs")
when { context.duration_secs <= 3600 };

@id("leads-approve")
permit(principal in Group::"leads", action == Action::"approve", resource);

@id("dba-leads-approve")
permit(principal in Group::"dba-leads", action == Action::"approve", resource == Role::"prod-db");

@id("oncall-breakglass")
permit(principal in Group::"oncall", action == Action::"breakglass", resource == Role::"prod-db");

@id("no-interns")
forbid(principal in Group::"interns", action, resource);
"#;

fn write_bundle(dir: &Path, policies: &str) {
    common::write_bundle(dir, ROLES);
    common::write_bundle(dir, &[("policies/main.cedar", policies)]);
}

/// A server with the bundle applied and users: alice, erin (eng); lead (leads);
/// dba1..dba3 (dba-leads, eng); oncall (oncall, eng); intern (eng, interns).
struct Jit {
    s: Server,
    dir: tempfile::TempDir,
}

impl Jit {
    fn start() -> Jit {
        Jit::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Jit {
        let dir = tempfile::tempdir().unwrap();
        let s = Server::start_in(&dir.path().join("data"), extra);
        for g in ["eng", "leads", "dba-leads", "oncall", "interns"] {
            s.cli(&["group", "create", g]).ok();
        }
        for (u, gs) in [
            ("alice", &["eng"][..]),
            ("erin", &["eng"]),
            ("lead", &["leads"]),
            ("dba1", &["dba-leads", "eng"]),
            ("dba2", &["dba-leads", "eng"]),
            ("dba3", &["dba-leads", "eng"]),
            ("oncall", &["oncall", "eng"]),
            ("intern", &["eng", "interns"]),
        ] {
            s.create_user(u, PW, gs);
        }
        let bundle = dir.path().join("policy");
        write_bundle(&bundle, POLICIES);
        s.cli(&["apply", bundle.to_str().unwrap()]).ok();
        Jit { s, dir }
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("policy")
    }

    fn token(&self, user: &str) -> String {
        self.s.login(user, PW, None).unwrap()
    }

    fn as_user(&self, token: &str, args: &[&str]) -> common::Out {
        self.s.cli_as(token, args, None)
    }

    fn json(&self, token: &str, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        self.as_user(token, &a).ok().json()
    }

    /// Polls until `f` holds (background work runs on wall time).
    fn eventually(&self, what: &str, f: impl Fn() -> bool) {
        common::eventually(what, f);
    }
}

fn introspect(s: &Server, token: &str) -> Value {
    let (status, body) = s.http("POST", "/v1/tokens/introspect", Some(&s.token), Some(&json!({ "token": token })));
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn auto_approved_activation_issues_a_bounded_token() {
    let j = Jit::start();
    let alice = j.token("alice");
    let out = j.json(&alice, &["request", "read-logs", "--for", "30m", "--reason", "incident INC-7 triage"]);
    assert_eq!(out["request"]["state"], "active");
    let grant = out["grant"]["id"].as_str().unwrap().to_string();
    let ev = j.s.audit("request.create");
    let last = ev.last().unwrap();
    assert_eq!(last["details"]["decision"], "auto_approved");
    assert_eq!(last["details"]["policies"], json!(["eng-may-request", "eng-auto-logs"]));

    let tok = j.json(&alice, &["token", "--grant", &grant, "--audience", "https://metrics.internal", "--ttl", "1h"]);
    let jwt = tok["token"].as_str().unwrap();
    let claims = introspect(&j.s, jwt);
    assert_eq!(claims["active"], true);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "https://metrics.internal");
    assert_eq!(claims["role"], "read-logs");
    assert_eq!(claims["grant_id"], grant.as_str());
    let life = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!(life <= 20 * 60, "the role caps tokens at 20m, got {life}s");
    // A token may not outlive its grant.
    j.s.advance("25m");
    let tok2 = j.json(&alice, &["token", "--grant", &grant]);
    let c2 = introspect(&j.s, tok2["token"].as_str().unwrap());
    let grant_end = j.json(&alice, &["grants"])["grants"][0]["expires_at"].as_str().unwrap().to_string();
    assert!(c2["exp"].as_i64().unwrap() <= parse_rfc3339_secs(&grant_end), "{c2} vs {grant_end}");
    // Someone else cannot mint tokens on alice's grant; a bad audience is refused.
    let erin = j.token("erin");
    assert_eq!(j.as_user(&erin, &["token", "--grant", &grant]).code, 3);
    let bad = j.as_user(&alice, &["token", "--grant", &grant, "--audience", "https://evil"]);
    assert!(bad.code == 1 && bad.stderr.contains("not allowed"), "{}", bad.stderr);
    // Longer than the activation condition allows: pending, not active.
    let out = j.json(&alice, &["request", "read-logs", "--for", "90m", "--reason", "long job"]);
    assert_eq!(out["request"]["state"], "pending");
    assert_eq!(out["request"]["approvals_required"], 1);
}

fn parse_rfc3339_secs(s: &str) -> i64 {
    // Format: 2026-11-25T10:00:00.000Z
    let (date, time) = s.split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let t: Vec<f64> = time.trim_end_matches('Z').split(':').map(|x| x.parse().unwrap()).collect();
    let (y, m, day) = (d[0], d[1], d[2]);
    let a = (14 - m) / 12;
    let yy = y + 4800 - a;
    let mm = m + 12 * a - 3;
    let jdn = day + (153 * mm + 2) / 5 + 365 * yy + yy / 4 - yy / 100 + yy / 400 - 32045;
    (jdn - 2_440_588) * 86_400 + (t[0] as i64) * 3600 + (t[1] as i64) * 60 + t[2] as i64
}

#[test]
fn two_of_three_racing_approvers_give_exactly_one_grant() {
    let j = Jit::start();
    let alice = j.token("alice");
    let approvers: Vec<String> = ["dba1", "dba2", "dba3"].iter().map(|u| j.token(u)).collect();
    for round in 0..8 {
        let out = j.json(
            &alice,
            &["request", "prod-db", "--for", "1h", "--reason", "migration", "--ticket", &format!("CHG-{round}")],
        );
        assert_eq!(out["request"]["state"], "pending");
        let id = out["request"]["id"].as_str().unwrap().to_string();
        let results: Vec<i32> = std::thread::scope(|scope| {
            let handles: Vec<_> = approvers
                .iter()
                .map(|t| {
                    let (addr, id) = (j.s.addr.clone(), id.clone());
                    scope.spawn(move || run_cli(&addr, t, &["approve", &id, "--comment", "lgtm"], None).code)
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|c| **c == 0).count(), 2, "round {round}: two approvals succeed: {results:?}");
        let shown = j.json(&alice, &["show", &id]);
        assert_eq!(shown["request"]["state"], "active");
        assert_eq!(shown["request"]["approvals"].as_array().unwrap().len(), 2);
        let grants = j.json(&j.s.token, &["grants", "--all"]);
        let for_this: Vec<_> =
            grants["grants"].as_array().unwrap().iter().filter(|g| g["request_id"] == id.as_str()).collect();
        assert_eq!(for_this.len(), 1, "round {round}: exactly one grant");
    }
    let activations = j.s.audit("grant.activate");
    assert_eq!(activations.len(), 8);
    // Approvals and the grants they complete name the policies that permitted them.
    for e in activations.iter().chain(&j.s.audit("request.approve")) {
        assert_eq!(e["outcome"], "success", "{e}");
        assert_eq!(e["details"]["policies"], json!(["dba-leads-approve"]), "{e}");
    }
    assert!(activations.iter().all(|e| e["details"].get("clipped").is_none() && e["details"]["duration"] == "1h"));
}

#[test]
fn separation_of_duties_and_role_rules() {
    let j = Jit::start();
    let dba1 = j.token("dba1");
    let alice = j.token("alice");
    // Self-approval is refused, even for an eligible approver, and audited.
    let out = j.json(&dba1, &["request", "prod-db", "--reason", "x", "--ticket", "INC-1"]);
    let id = out["request"]["id"].as_str().unwrap().to_string();
    let own = j.as_user(&dba1, &["approve", &id]);
    assert_eq!(own.code, 3);
    assert!(own.stderr.contains("your own request"), "{}", own.stderr);
    // A non-approver is refused.
    let lead = j.token("lead");
    let not = j.as_user(&lead, &["approve", &id]);
    assert_eq!(not.code, 3);
    assert!(not.stderr.contains("not an approver"), "{}", not.stderr);
    let denied: Vec<_> = j.s.audit("request.approve").into_iter().filter(|e| e["outcome"] == "denied").collect();
    assert_eq!(denied.len(), 2);
    assert!(denied[0]["details"]["reason"].as_str().unwrap().contains("your own request"), "{}", denied[0]);
    assert!(denied.iter().all(|e| e["details"]["policies"] == json!([])), "refused before Cedar: {denied:?}");
    // One approver counts once.
    let dba2 = j.token("dba2");
    j.as_user(&dba2, &["approve", &id]).ok();
    let twice = j.as_user(&dba2, &["approve", &id]);
    assert!(twice.code == 1 && twice.stderr.contains("already approved"), "{}", twice.stderr);

    // Longer than the role maximum: the message names the maximum.
    let long = j.as_user(&alice, &["request", "prod-db", "--for", "8h", "--reason", "x", "--ticket", "INC-1"]);
    assert_eq!(long.code, 1);
    assert!(long.stderr.contains("exceeds the maximum of 4h"), "{}", long.stderr);
    // Ticket required and pattern enforced.
    let none = j.as_user(&alice, &["request", "prod-db", "--reason", "x"]);
    assert!(none.code == 1 && none.stderr.contains("requires a ticket"), "{}", none.stderr);
    let bad = j.as_user(&alice, &["request", "prod-db", "--reason", "x", "--ticket", "JIRA-12"]);
    assert!(bad.code == 1 && bad.stderr.contains("does not match the pattern"), "{}", bad.stderr);
    // MFA-required role refused for a session without MFA...
    let nomfa = j.as_user(&alice, &["request", "root", "--reason", "x"]);
    assert_eq!(nomfa.code, 3);
    assert!(nomfa.stderr.contains("requires a session with MFA"), "{}", nomfa.stderr);
    // ...and accepted once alice logs in with TOTP.
    let secret = secret_from_uri(j.as_user(&alice, &["mfa", "enroll"]).ok().stdout.trim());
    j.as_user(&alice, &["mfa", "confirm", &totp_at(&secret, j.s.now_ms())]).ok();
    j.s.advance("30s");
    let alice_mfa = j.s.login("alice", PW, Some(&totp_at(&secret, j.s.now_ms()))).unwrap();
    let ok = j.json(&alice_mfa, &["request", "root", "--reason", "kernel patch"]);
    assert_eq!(ok["request"]["state"], "pending");
    // Policy forbids interns outright; the denial names the policy and exits 3.
    let intern = j.token("intern");
    let out = j.as_user(&intern, &["request", "read-logs", "--reason", "curious"]);
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("no-interns"), "{}", out.stderr);
    let ev = j.s.audit("request.create");
    let last = ev.last().unwrap();
    assert_eq!(last["outcome"], "denied");
    assert_eq!(last["details"]["policies"], json!(["no-interns"]));
    // An unknown role is a clear 404.
    let unknown = j.as_user(&alice, &["request", "no-such-role", "--reason", "x"]);
    assert!(unknown.code == 1 && unknown.stderr.contains("does not exist"), "{}", unknown.stderr);
}

#[test]
fn deny_cancel_and_timeout() {
    let j = Jit::start_with(&["--request-timeout", "2h"]);
    let alice = j.token("alice");
    let lead = j.token("lead");
    let r1 = j.json(&alice, &["request", "read-logs", "--for", "2h", "--reason", "a"])["request"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    j.as_user(&lead, &["deny", &r1, "--reason", "use the dashboard"]).ok();
    assert_eq!(j.json(&alice, &["show", &r1])["request"]["state"], "denied");
    assert_eq!(j.as_user(&lead, &["approve", &r1]).code, 1, "a denied request cannot be approved");
    let r2 = j.json(&alice, &["request", "read-logs", "--for", "2h", "--reason", "b"])["request"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(j.as_user(&lead, &["cancel", &r2]).code, 3, "only the requester cancels");
    j.as_user(&alice, &["cancel", &r2]).ok();
    assert_eq!(j.json(&alice, &["show", &r2])["request"]["state"], "cancelled");
    // Pending requests time out (here after 2h) even if nobody calls the API.
    let r3 = j.json(&alice, &["request", "read-logs", "--for", "2h", "--reason", "c"])["request"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let to_review = j.json(&lead, &["requests", "--to-review"]);
    assert!(to_review["requests"].as_array().unwrap().iter().any(|r| r["id"] == r3.as_str()));
    j.s.advance("2h1m");
    j.eventually("the request to time out", || j.json(&alice, &["show", &r3])["request"]["state"] == "timed_out");
    assert_eq!(j.s.audit("request.timeout").len(), 1);
    assert_eq!(j.as_user(&lead, &["approve", &r3]).code, 1);
}

#[test]
fn expiry_via_the_clock_and_revocation_cascade() {
    let j = Jit::start();
    let alice = j.token("alice");
    let g1 = j.json(&alice, &["request", "read-logs", "--for", "30m", "--reason", "x"])["grant"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t1 = j.json(&alice, &["token", "--grant", &g1])["token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&j.s, &t1)["active"], true);
    j.s.advance("31m");
    // Inactive at once, before the sweeper has even run.
    assert_eq!(introspect(&j.s, &t1)["active"], false);
    assert_eq!(j.json(&alice, &["grants"])["grants"][0]["state"], "expired");
    j.eventually("the sweeper to expire the grant", || j.s.audit("grant.expire").len() == 1);
    let exp = j.s.audit("grant.expire");
    assert_eq!(exp.len(), 1);
    assert_eq!(exp[0]["actor"], "system");
    assert_eq!(
        j.json(&alice, &["show", exp[0]["details"]["request_id"].as_str().unwrap()])["request"]["state"],
        "expired"
    );
    let late = j.as_user(&alice, &["token", "--grant", &g1]);
    assert!(late.code == 1 && late.stderr.contains("expired"), "{}", late.stderr);

    // Revocation cascades to every token: introspection inactive, jtis listed.
    let g2 = j.json(&alice, &["request", "read-logs", "--for", "1h", "--reason", "y"])["grant"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a = j.json(&alice, &["token", "--grant", &g2]);
    let b = j.json(&alice, &["token", "--grant", &g2]);
    let out = j.json(&j.s.token, &["revoke", &g2, "--reason", "left the incident"]);
    assert_eq!(out["tokens_revoked"].as_array().unwrap().len(), 2);
    for t in [&a, &b] {
        assert_eq!(introspect(&j.s, t["token"].as_str().unwrap())["active"], false);
    }
    let (status, revoked) = j.s.http("GET", "/v1/tokens/revoked", None, None);
    assert_eq!(status, 200);
    let jtis: Vec<&str> = revoked["revoked"].as_array().unwrap().iter().map(|r| r["jti"].as_str().unwrap()).collect();
    assert!(jtis.contains(&a["jti"].as_str().unwrap()) && jtis.contains(&b["jti"].as_str().unwrap()));
    assert_eq!(j.json(&alice, &["grants", "--active"])["grants"].as_array().unwrap().len(), 0);
    // The holder may revoke their own grant; others may not.
    let g3 = j.json(&alice, &["request", "read-logs", "--for", "1h", "--reason", "z"])["grant"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let erin = j.token("erin");
    assert_eq!(j.as_user(&erin, &["revoke", &g3]).code, 3);
    j.as_user(&alice, &["revoke", &g3]).ok();
    assert_eq!(j.as_user(&alice, &["revoke", &g3]).code, 1, "already revoked");
    // Garbage tokens are simply inactive.
    assert_eq!(introspect(&j.s, "not.a.jwt")["active"], false);
    let revokes = j.s.audit("grant.revoke");
    assert_eq!(revokes.len(), 2);
    assert_eq!(revokes[0]["details"]["reason"], "left the incident");
}

/// A minimal HTTP receiver for webhook posts.
fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    webhook_receiver_failing(0)
}

/// A webhook receiver that answers the first `failures` posts with HTTP 500
/// (and does not keep them), then accepts.
fn webhook_receiver_failing(failures: usize) -> (String, Arc<Mutex<Vec<Value>>>) {
    let w = common::webhook(failures);
    (w.url, w.received)
}

#[test]
fn breakglass_is_flagged_alerted_and_reviewable() {
    let (url, hooks) = webhook_receiver();
    let j = Jit::start_with(&["--webhook", &url]);
    let oncall = j.token("oncall");
    let alice = j.token("alice");
    // Only where role and policy allow it.
    let no = j.as_user(&alice, &["breakglass", "prod-db", "--reason", "db down"]);
    assert_eq!(no.code, 3, "{}", no.stderr);
    let no_role = j.as_user(&oncall, &["breakglass", "read-logs", "--reason", "x"]);
    assert!(no_role.code == 3 && no_role.stderr.contains("does not allow break-glass"), "{}", no_role.stderr);
    let too_long = j.as_user(&oncall, &["breakglass", "prod-db", "--reason", "x", "--for", "2h"]);
    assert!(too_long.code == 1 && too_long.stderr.contains("maximum of 1h"), "{}", too_long.stderr);
    // Each refusal is audited: by policy (with the policies, none here), by the role's rules.
    let refusals = j.s.audit("breakglass.activate");
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    assert!(refusals.iter().all(|e| e["outcome"] == "denied" && e["details"]["breakglass"] == true), "{refusals:?}");
    assert_eq!(refusals[0]["actor"], "user:alice");
    assert_eq!(refusals[0]["details"]["policies"], json!([]));
    assert!(refusals[0]["details"]["reason"].as_str().unwrap().contains("no policy permits it"), "{}", refusals[0]);
    assert_eq!(refusals[1]["target"], "role:read-logs");
    assert_eq!(refusals[1]["details"]["reason"], "breakglass_not_allowed");
    assert_eq!(refusals[2]["details"]["reason"], "breakglass_max_duration");
    assert_eq!(refusals[2]["details"]["duration"], "2h");
    assert_eq!(refusals[2]["details"]["max_duration"], "1h");

    let out = j.json(&oncall, &["breakglass", "prod-db", "--reason", "primary is down, INC-911"]);
    assert_eq!(out["request"]["state"], "active");
    assert_eq!(out["request"]["breakglass"], true);
    assert_eq!(out["grant"]["breakglass"], true);
    assert_eq!(out["request"]["reviewed"], false);
    let id = out["request"]["id"].as_str().unwrap().to_string();
    let grant = out["grant"]["id"].as_str().unwrap().to_string();
    // Flagged in every event about it.
    let t = j.json(&oncall, &["token", "--grant", &grant]);
    assert!(!t["token"].as_str().unwrap().is_empty());
    let activated = j.s.audit("breakglass.activate").last().unwrap().clone();
    assert_eq!(activated["outcome"], "success");
    assert_eq!(activated["details"]["breakglass"], true);
    assert_eq!(activated["details"]["policies"], json!(["oncall-breakglass"]));
    assert_eq!(j.s.audit("token.issue").last().unwrap()["details"]["breakglass"], true);
    // The webhook is alerted.
    let is_alert = |h: &Value| h["event"] == "breakglass.activate" && h["outcome"] == "success";
    j.eventually("the break-glass alert", || hooks.lock().unwrap().iter().any(is_alert));
    let alert = hooks.lock().unwrap().iter().find(|h| is_alert(h)).cloned().unwrap();
    assert!(alert["text"].as_str().unwrap().starts_with("BREAK-GLASS: user:oncall took role prod-db"), "{alert}");
    assert_eq!(alert["breakglass"], true);
    // Refused attempts are alerted as refusals, never as access taken.
    let refused: Vec<Value> = hooks
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == "breakglass.activate" && h["outcome"] == "denied")
        .cloned()
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(refused[2]["text"].as_str().unwrap().starts_with("BREAK-GLASS REFUSED: user:oncall"), "{}", refused[2]);
    assert!(refused[2]["text"].as_str().unwrap().contains("maximum of 1h"), "{}", refused[2]);
    // Reviewed afterwards by an approver, not by the user.
    assert_eq!(j.as_user(&oncall, &["review", &id, "--comment", "all good"]).code, 3);
    let dba1 = j.token("dba1");
    let rev = j.json(&dba1, &["review", &id, "--comment", "replica failover verified; runbook updated"]);
    assert_eq!(rev["reviewed"], true);
    assert_eq!(rev["reviewed_by"], "dba1");
    assert_eq!(j.as_user(&dba1, &["review", &id, "--comment", "again"]).code, 1);
    assert_eq!(j.s.audit("breakglass.review").len(), 1);
    // Ordinary requests notify too, with a readable text.
    j.json(&alice, &["request", "prod-db", "--reason", "vacuum", "--ticket", "CHG-5"]);
    j.eventually("the request notification", || hooks.lock().unwrap().iter().any(|h| h["event"] == "request.create"));
    let (status, st) = j.s.http("GET", "/v1/sys/notifications", Some(&j.s.token), None);
    assert_eq!(status, 200);
    assert_eq!(st["failures"], 0);
    assert!(st["delivered"].as_u64().unwrap() >= 2);
}

#[test]
fn apply_plan_changes_nothing_and_invalid_bundles_keep_the_old_version() {
    let j = Jit::start();
    let before = j.json(&j.s.token, &["policy", "show"]);
    let applies = j.s.audit("policy.apply").len();
    assert_eq!(applies, 1);

    // A changed bundle under --plan: the diff is shown, nothing changes.
    let next = j.dir.path().join("next");
    write_bundle(
        &next,
        &format!(
            "{POLICIES}\n@id(\"leads-auto\")\npermit(principal in Group::\"leads\", action == Action::\"activate\", resource);\n"
        ),
    );
    std::fs::remove_file(next.join("roles/root.toml")).unwrap();
    let plan = j.json(&j.s.token, &["apply", next.to_str().unwrap(), "--plan"]);
    assert_eq!(plan["applied"], false);
    assert_eq!(plan["plan"]["roles_removed"], json!(["root"]));
    assert_eq!(plan["plan"]["policies_added"], json!(["leads-auto"]));
    assert_eq!(j.json(&j.s.token, &["policy", "show"]), before);
    assert_eq!(j.s.audit("policy.apply").len(), 1);

    // An invalid policy file: rejected with file and line; the old version stays.
    let bad = j.dir.path().join("bad");
    write_bundle(&bad, POLICIES);
    std::fs::write(bad.join("policies/extra.cedar"), "@id(\"ok\")\npermit(principal, action, resource);\n\npermit(principal, action == Action::\"request\", resource) when { context.nonexistent == 1 };\n").unwrap();
    let out = j.s.cli(&["apply", bad.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("policies/extra.cedar:4"), "{}", out.stderr);
    let bad_role = j.dir.path().join("bad-role");
    write_bundle(&bad_role, POLICIES);
    std::fs::write(bad_role.join("roles/x.toml"), "name = \"x\"\nmax_duration = \"4h\"\nmax_durration = \"1h\"\n")
        .unwrap();
    let out = j.s.cli(&["apply", bad_role.to_str().unwrap()]);
    assert!(out.code == 1 && out.stderr.contains("roles/x.toml:3"), "{}", out.stderr);
    assert_eq!(j.json(&j.s.token, &["policy", "show"]), before);
    // Decisions still follow the old version.
    let alice = j.token("alice");
    assert_eq!(
        j.json(&alice, &["request", "read-logs", "--for", "30m", "--reason", "x"])["request"]["state"],
        "active"
    );

    // Applying for real records a new version with its hash, audited.
    let applied = j.json(&j.s.token, &["apply", next.to_str().unwrap()]);
    assert_eq!(applied["applied"], true);
    let ev = j.s.audit("policy.apply");
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1]["details"]["hash"], applied["hash"]);
    assert_ne!(applied["hash"], before["hash"]);
    // Re-applying the same bundle is a no-op.
    assert_eq!(j.json(&j.s.token, &["apply", next.to_str().unwrap()])["applied"], false);
}

#[test]
fn simulate_and_replay() {
    let j = Jit::start();
    let sim = j.json(
        &j.s.token,
        &["policy", "simulate", "--as", "alice", "--role", "read-logs", "--for", "30m", "--context", "reason=triage"],
    );
    assert_eq!(sim["outcome"], "auto_approve");
    assert_eq!(sim["activate"]["policies"], json!(["eng-auto-logs"]));
    let sim = j.json(
        &j.s.token,
        &[
            "policy",
            "simulate",
            "--as",
            "alice",
            "--role",
            "prod-db",
            "--context",
            "ticket=INC-1",
            "--context",
            "reason=vacuum",
        ],
    );
    assert_eq!(sim["outcome"], "needs_approval");
    assert_eq!(sim["approvals_required"], 2);
    let denied = j.s.cli(&["policy", "simulate", "--as", "intern", "--role", "read-logs"]);
    assert_eq!(denied.code, 3);
    assert!(denied.stdout.contains("no-interns"), "{}", denied.stdout);

    // Past requests re-evaluated under a proposed policy without auto-activation.
    let alice = j.token("alice");
    j.json(&alice, &["request", "read-logs", "--for", "30m", "--reason", "x"]);
    let proposed = j.dir.path().join("proposed");
    let without_auto = POLICIES.replace(
        "@id(\"eng-auto-logs\")\npermit(principal in Group::\"eng\", action == Action::\"activate\", resource == Role::\"read-logs\")\nwhen { context.duration_secs <= 3600 };\n",
        "",
    );
    assert_ne!(without_auto, POLICIES);
    write_bundle(&proposed, &without_auto);
    let replay = j.json(&j.s.token, &["policy", "replay", "--since", "1d", "--dir", proposed.to_str().unwrap()]);
    assert_eq!(replay["evaluated"], 1);
    let changed = replay["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{replay}");
    assert_eq!(changed[0]["was"], "auto_approve");
    assert_eq!(changed[0]["now"], "needs_approval");
    let same = j.json(&j.s.token, &["policy", "replay", "--since", "1d"]);
    assert_eq!(same["changed"].as_array().unwrap().len(), 0);
    let _ = j.bundle();
}

#[test]
fn request_wait_blocks_until_decided() {
    let j = Jit::start();
    let alice = j.token("alice");
    let lead = j.token("lead");
    let addr = j.s.addr.clone();
    let waiter = std::thread::spawn({
        let alice = alice.clone();
        move || {
            run_cli(
                &addr,
                &alice,
                &["request", "read-logs", "--for", "2h", "--reason", "deploy", "--wait", "-o", "json"],
                None,
            )
        }
    });
    j.eventually("the pending request", || {
        !j.json(&lead, &["requests", "--to-review"])["requests"].as_array().unwrap().is_empty()
    });
    let id = j.json(&lead, &["requests", "--to-review"])["requests"][0]["id"].as_str().unwrap().to_string();
    j.as_user(&lead, &["approve", &id]).ok();
    let out = waiter.join().unwrap().ok();
    assert_eq!(out.json()["grant"]["role"], "read-logs");
}

/// An independent JWT library (Python's PyJWT) verifies a latch token against
/// the served JWKS, including issuer and audience; a tampered token fails.
#[test]
fn pyjwt_verifies_latch_tokens_against_the_jwks() {
    let j = Jit::start();
    let alice = j.token("alice");
    let grant = j.json(&alice, &["request", "read-logs", "--for", "30m", "--reason", "x"])["grant"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let jwt = j.json(&alice, &["token", "--grant", &grant])["token"].as_str().unwrap().to_string();
    let (_, conf) = j.s.http("GET", "/.well-known/openid-configuration", None, None);
    assert_eq!(conf["issuer"], j.s.addr.as_str());
    let script = r#"
import json, sys, urllib.request, jwt
conf = json.load(urllib.request.urlopen(sys.argv[1] + "/.well-known/openid-configuration"))
client = jwt.PyJWKClient(conf["jwks_uri"])
token = sys.argv[2]
key = client.get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience="https://logs.internal", issuer=conf["issuer"])
print(json.dumps(claims))
parts = token.split(".")
bad = parts[0] + "." + parts[1][:-2] + ("AA" if parts[1][-2:] != "AA" else "BB") + "." + parts[2]
try:
    jwt.decode(bad, key.key, algorithms=["EdDSA"], audience="https://logs.internal")
    print("TAMPERED-ACCEPTED")
except jwt.exceptions.PyJWTError as e:
    print("tampered refused:", type(e).__name__)
"#;
    let out = std::process::Command::new("python3").args(["-c", script, &j.s.addr, &jwt]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "PyJWT failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let claims: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["grant_id"], grant.as_str());
    assert!(stdout.contains("tampered refused"), "{stdout}");
}

#[test]
fn token_key_rotation_keeps_old_keys_published_until_their_tokens_expire() {
    let j = Jit::start();
    let alice = j.token("alice");
    let grant = j.json(&alice, &["request", "read-logs", "--for", "1h", "--reason", "x"])["grant"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let old = j.json(&alice, &["token", "--grant", &grant, "--ttl", "10m"])["token"].as_str().unwrap().to_string();
    let (status, rotated) = j.s.http("POST", "/v1/sys/keys/token/rotate", Some(&j.s.token), None);
    assert_eq!(status, 200, "{rotated}");
    let (_, jwks) = j.s.http("GET", "/.well-known/jwks.json", None, None);
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids.len(), 2, "{jwks}");
    assert!(kids.contains(&rotated["retired_kid"].as_str().unwrap()));
    assert_eq!(introspect(&j.s, &old)["active"], true, "tokens of the retired key stay valid");
    let new = j.json(&alice, &["token", "--grant", &grant])["token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&j.s, &new)["active"], true);
    assert_ne!(latch_crypto::jwt::peek_kid(&new).unwrap(), latch_crypto::jwt::peek_kid(&old).unwrap());
    assert_eq!(j.s.audit("key.rotate").len(), 1);
    // Once every token of the old key has expired, it leaves the JWKS.
    j.s.advance("11m");
    j.eventually("the retired key to be unpublished", || {
        let (_, jwks) = j.s.http("GET", "/.well-known/jwks.json", None, None);
        jwks["keys"].as_array().unwrap().len() == 1
    });
}

#[test]
fn disabling_a_user_revokes_their_grants_and_tokens() {
    let j = Jit::start();
    let alice = j.token("alice");
    let grant = j.json(&alice, &["request", "read-logs", "--for", "30m", "--reason", "x"])["grant"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let jwt = j.json(&alice, &["token", "--grant", &grant])["token"].as_str().unwrap().to_string();
    j.s.cli(&["user", "disable", "alice"]).ok();
    assert_eq!(introspect(&j.s, &jwt)["active"], false);
    let g = j.json(&j.s.token, &["grants", "--all"]);
    let mine = g["grants"].as_array().unwrap().iter().find(|x| x["id"] == grant.as_str()).unwrap().clone();
    assert_eq!(mine["state"], "revoked");
    let ev = j.s.audit("user.disable");
    assert_eq!(ev[0]["details"]["grants_revoked"], json!([grant]));
}

/// Refusals by the role's own rules are audited like policy denials: outcome
/// denied, the role, the rule that refused and what was asked for — and the
/// caller still gets the same status and message.
#[test]
fn refusals_by_role_rules_are_audited() {
    let j = Jit::start();
    let alice = j.token("alice");
    let refused = |args: &[&str], code: i32, says: &str| -> Value {
        let before = j.s.audit("request.create").len();
        let out = j.as_user(&alice, args);
        assert!(out.code == code && out.stderr.contains(says), "{args:?}: {} {}", out.code, out.stderr);
        let events = j.s.audit("request.create");
        assert_eq!(events.len(), before + 1, "{args:?}: one event per refusal");
        let e = events.last().unwrap().clone();
        assert_eq!(e["outcome"], "denied", "{e}");
        assert_eq!(e["actor"], "user:alice", "{e}");
        assert!(e["details"]["message"].as_str().unwrap().contains(says), "{e}");
        e
    };
    let long = refused(
        &["request", "prod-db", "--for", "8h", "--reason", "x", "--ticket", "INC-1"],
        1,
        "exceeds the maximum of 4h",
    );
    assert_eq!(long["target"], "role:prod-db");
    assert_eq!(long["details"]["role"], "prod-db");
    assert_eq!(long["details"]["reason"], "max_duration");
    assert_eq!(long["details"]["duration"], "8h");
    assert_eq!(long["details"]["max_duration"], "4h");
    assert_eq!(long["details"]["ticket"], "INC-1");
    let no_ticket = refused(&["request", "prod-db", "--reason", "x"], 1, "requires a ticket");
    assert_eq!(no_ticket["details"]["reason"], "ticket");
    let bad_ticket =
        refused(&["request", "prod-db", "--reason", "x", "--ticket", "JIRA-12"], 1, "does not match the pattern");
    assert_eq!(bad_ticket["details"]["reason"], "ticket_pattern");
    assert_eq!(bad_ticket["details"]["ticket"], "JIRA-12");
    let no_mfa = refused(&["request", "root", "--reason", "x"], 3, "requires a session with MFA");
    assert_eq!(no_mfa["details"]["reason"], "mfa");
    assert_eq!(no_mfa["details"]["mfa"], false);
    assert_eq!(no_mfa["details"]["duration"], "1h");
    // Two rules at once: both named.
    let both = refused(
        &["request", "prod-db", "--for", "8h", "--reason", "x", "--ticket", "JIRA-1"],
        1,
        "exceeds the maximum",
    );
    assert_eq!(both["details"]["rules"], json!(["max_duration", "ticket_pattern"]));
    // Refused before any request exists.
    assert_eq!(j.json(&alice, &["requests", "--mine"])["requests"], json!([]));
    j.s.cli(&["audit", "verify"]).ok();
}

/// A grant never exceeds the role's maximum in force when it is granted: a
/// request approved after an apply lowered the maximum is clipped, and the
/// grant's event says so.
#[test]
fn approval_after_the_maximum_was_lowered_clips_the_grant() {
    let j = Jit::start();
    let alice = j.token("alice");
    let lead = j.token("lead");
    let out = j.json(&alice, &["request", "read-logs", "--for", "2h", "--reason", "long job"]);
    assert_eq!(out["request"]["state"], "pending");
    let id = out["request"]["id"].as_str().unwrap().to_string();

    let lowered = j.dir.path().join("lowered");
    write_bundle(&lowered, POLICIES);
    let role = std::fs::read_to_string(lowered.join("roles/read-logs.toml")).unwrap();
    std::fs::write(
        lowered.join("roles/read-logs.toml"),
        role.replace("max_duration = \"2h\"", "max_duration = \"1h\""),
    )
    .unwrap();
    assert_eq!(j.json(&j.s.token, &["apply", lowered.to_str().unwrap()])["applied"], true);

    let approved = j.json(&lead, &["approve", &id]);
    let grant = &approved["grant"];
    let life = parse_rfc3339_secs(grant["expires_at"].as_str().unwrap())
        - parse_rfc3339_secs(grant["starts_at"].as_str().unwrap());
    assert_eq!(life, 3600, "clipped to the current maximum of 1h: {grant}");
    assert_eq!(approved["request"]["duration"], "2h", "the request keeps what was asked");
    let ev = j.s.audit("grant.activate");
    let d = &ev.last().unwrap()["details"];
    assert_eq!(d["grant_id"], grant["id"]);
    assert_eq!(d["clipped"], true, "{d}");
    assert_eq!(d["requested_duration"], "2h");
    assert_eq!(d["max_duration"], "1h");
    assert_eq!(d["duration"], "1h");
}

/// A receiver that fails: the notification is retried with backoff (on wall
/// time) and delivered later; failures are visible meanwhile and afterwards.
#[test]
fn failed_webhook_deliveries_are_retried_and_visible() {
    let (url, hooks) = webhook_receiver_failing(2);
    let j = Jit::start_with(&["--webhook", &url]);
    let alice = j.token("alice");
    let status = || {
        let (code, st) = j.s.http("GET", "/v1/sys/notifications", Some(&j.s.token), None);
        assert_eq!(code, 200, "{st}");
        st
    };
    j.json(&alice, &["request", "prod-db", "--reason", "vacuum", "--ticket", "CHG-7"]);
    j.eventually("a failed delivery", || status()["failures"].as_u64().unwrap() >= 1);
    let failing = status();
    assert!(failing["last_error"].as_str().unwrap().contains("500"), "{failing}");
    assert!(failing["consecutive_failures"].as_u64().unwrap() >= 1, "{failing}");
    assert_eq!(failing["configured"], true);
    // Delivered on the third attempt (after 1 s and 2 s of backoff), in order and once.
    j.eventually("the retried notification", || hooks.lock().unwrap().iter().any(|h| h["event"] == "request.create"));
    let after = status();
    assert_eq!(after["failures"], 2, "{after}");
    assert_eq!(after["consecutive_failures"], 0, "{after}");
    assert_eq!(after["delivered"], 1, "{after}");
    assert!(after["last_error"].as_str().unwrap().contains("500"), "{after}");
    assert_eq!(hooks.lock().unwrap().len(), 1);
}

#[test]
fn deleting_a_user_makes_their_tokens_inactive() {
    let j = Jit::start();
    let alice = j.token("alice");
    let grant = j.json(&alice, &["request", "read-logs", "--for", "30m", "--reason", "x"])["grant"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let jwt = j.json(&alice, &["token", "--grant", &grant])["token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&j.s, &jwt)["active"], true);
    j.s.cli(&["user", "delete", "alice"]).ok();
    assert_eq!(introspect(&j.s, &jwt)["active"], false);
    let ev = j.s.audit("user.delete");
    assert_eq!(ev[0]["details"]["grants_revoked"], json!([grant]));
}
