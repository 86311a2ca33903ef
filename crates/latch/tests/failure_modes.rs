//! The guide's failure modes, exercised against the real binary:
//!
//! - F1, approval path unavailable: [`f1_with_no_approver_reachable_on_call_breaks_glass_flagged_audited_alerted_and_reviewed`].
//! - F2, recorder or storage failure: `gateway::a_session_that_cannot_be_recorded_is_refused`
//!   and `gateway::recordings_wait_in_the_spool_while_the_server_is_down_and_arrive_after`.
//! - F3, token replay after revocation: `jit::expiry_via_the_clock_and_revocation_cascade`
//!   (JWT inactive, jti on the revoked list), `auth::sessions_expire_and_logout_revokes`
//!   (session after logout), `ssh::a_certificate_from_a_grant_logs_in_and_revocation_locks_it_out`
//!   (certificate in the KRL, refused by sshd); replays also run in the F5 scenario below.
//! - F4, a spike of denies: `metrics::a_spike_of_denies_shows_in_the_metrics`.
//! - F5, secrets in logs: [`f5_no_issued_secret_reaches_a_log_the_audit_export_stderr_or_an_error_body`],
//!   and in every test of every suite the harness's own check (`common/secrets.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, eventually_within, run_cli, secret_from_uri, secrets, totp_at};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

const PROD_DB: &str = r#"name = "prod-db"
description = "Administer the production database"
max_duration = "4h"
default_duration = "1h"
[approval]
required = 1
approvers = ["group:dba-leads"]
[breakglass]
allowed = true
max_duration = "1h"
[credentials.token]
audiences = ["https://db.internal"]
"#;

const READ_LOGS: &str = r#"name = "read-logs"
max_duration = "2h"
default_duration = "30m"
[approval]
required = 0
[credentials.token]
audiences = ["https://logs.internal"]
"#;

const POLICIES: &str = r#"@id("eng-may-request")
permit(principal in Group::"eng", action == Action::"request", resource);

@id("eng-auto-logs")
permit(principal in Group::"eng", action == Action::"activate", resource == Role::"read-logs");

@id("dba-leads-approve")
permit(principal in Group::"dba-leads", action == Action::"approve", resource == Role::"prod-db");

@id("oncall-breakglass")
permit(principal in Group::"oncall", action == Action::"breakglass", resource == Role::"prod-db");
"#;

fn apply_roles(s: &Server) {
    s.apply_bundle(&[
        ("roles/prod-db.toml", PROD_DB),
        ("roles/read-logs.toml", READ_LOGS),
        ("policies/main.cedar", POLICIES),
    ]);
}

fn json_as(s: &Server, token: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    s.cli_as(token, &a, None).ok().json()
}

/// One webhook post as the receiver saw it: the event, and whether it was accepted.
#[derive(Clone, Debug)]
struct Post {
    body: Value,
    accepted: bool,
}

/// A webhook receiver that answers 503 while `down` is set and keeps every
/// attempt, so a failed delivery is visible at the receiving end too.
fn webhook_receiver(down: Arc<AtomicBool>) -> (String, Arc<Mutex<Vec<Post>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let posts = Arc::new(Mutex::new(Vec::new()));
    let sink = posts.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let (sink, down) = (sink.clone(), down.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0;
                    loop {
                        line.clear();
                        reader.read_line(&mut line).unwrap();
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    let accepted = !down.load(Ordering::SeqCst);
                    sink.lock().unwrap().push(Post { body: serde_json::from_slice(&body).unwrap(), accepted });
                    let answer: &[u8] = if accepted {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
                    } else {
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
                    };
                    conn.write_all(answer).unwrap();
                }
            });
        }
    });
    (url, posts)
}

/// One series' value from `GET /metrics` (as the administrator).
fn metric(s: &Server, series: &str) -> f64 {
    let (status, _, text) = s.http_raw("GET", "/metrics", Some(&s.token), None, &[]);
    assert_eq!(status, 200, "{text}");
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(series));
    let line = line.unwrap_or_else(|| panic!("no series {series} in /metrics:\n{text}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn notifications(s: &Server) -> Value {
    let (status, v) = s.http("GET", "/v1/sys/notifications", Some(&s.token), None);
    assert_eq!(status, 200, "{v}");
    v
}

/// F1, "approval service down": the role's approvers cannot act (its
/// approvers' group is empty) and the webhook that would reach them is down.
/// Requests wait, and the waiting shows in the metrics. The documented
/// on-call fallback is break-glass: the on-call engineer gets access at once,
/// flagged in every event, audited, alerted (the attempt is visible while the
/// webhook is down, and delivered when it returns), and left unreviewed until
/// someone other than the user records a post-incident review — here an
/// administrator, as the role has no approver who could.
#[test]
fn f1_with_no_approver_reachable_on_call_breaks_glass_flagged_audited_alerted_and_reviewed() {
    let down = Arc::new(AtomicBool::new(true));
    let (url, posts) = webhook_receiver(down.clone());
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(&dir.path().join("data"), &["--webhook", &url]);
    for g in ["eng", "dba-leads", "oncall"] {
        s.cli(&["group", "create", g]).ok();
    }
    s.create_user("alice", PW, &["eng"]);
    s.create_user("olga", PW, &["eng", "oncall"]);
    apply_roles(&s);
    let alice = s.login("alice", PW, None).unwrap();
    let olga = s.login("olga", PW, None).unwrap();

    // The approval path is down: the request waits and nobody can approve it.
    let req = json_as(&s, &alice, &["request", "prod-db", "--for", "1h", "--reason", "replica lag"]);
    assert_eq!(req["request"]["state"], "pending", "{req}");
    let req_id = req["request"]["id"].as_str().unwrap().to_string();
    assert_eq!(json_as(&s, &olga, &["requests", "--to-review"])["requests"], json!([]));
    assert_eq!(json_as(&s, &s.token, &["requests", "--to-review"])["requests"], json!([]));
    for approver in [&olga, &s.token] {
        let no = s.cli_as(approver, &["approve", &req_id, "--comment", "lgtm"], None);
        assert_eq!(no.code, 3, "only dba-leads approve prod-db: {no:?}");
    }
    // The signal the guide names for F1: the pending queue grows and ages.
    s.advance("10m");
    assert_eq!(metric(&s, "latch_requests_pending"), 1.0);
    assert!(metric(&s, "latch_requests_pending_oldest_age_seconds") >= 600.0);
    // The webhook is down as well: the request's notification fails, is retried, and the failures show.
    eventually_within("a failed webhook delivery", Duration::from_secs(30), || {
        notifications(&s)["failures"].as_u64().unwrap() >= 1
    });

    // The fallback: break-glass, active at once although no alert has got through.
    let bg = json_as(&s, &olga, &["breakglass", "prod-db", "--for", "30m", "--reason", "primary down, INC-42"]);
    assert_eq!(bg["request"]["state"], "active", "{bg}");
    assert_eq!(bg["request"]["breakglass"], true);
    assert_eq!(bg["request"]["reviewed"], false);
    assert_eq!(bg["grant"]["breakglass"], true);
    assert_eq!(bg["grant"]["state"], "active");
    let bg_id = bg["request"]["id"].as_str().unwrap().to_string();
    let grant = bg["grant"]["id"].as_str().unwrap().to_string();
    assert!(posts.lock().unwrap().iter().all(|p| !p.accepted), "nothing was delivered yet");
    let jwt = json_as(&s, &olga, &["token", "--grant", &grant])["token"].as_str().unwrap().to_string();
    let (status, claims) = s.http("POST", "/v1/tokens/introspect", Some(&s.token), Some(&json!({ "token": jwt })));
    assert_eq!((status, &claims["active"], &claims["role"]), (200, &json!(true), &json!("prod-db")), "{claims}");

    // Audited and flagged in every event about it.
    let activated = s.audit("breakglass.activate");
    assert_eq!(activated.len(), 1, "{activated:?}");
    let ev = &activated[0];
    assert_eq!((ev["outcome"].as_str(), ev["actor"].as_str()), (Some("success"), Some("user:olga")), "{ev}");
    assert_eq!(ev["details"]["breakglass"], true);
    assert_eq!(ev["details"]["review"], "required");
    assert_eq!(ev["details"]["grant_id"], grant.as_str());
    assert_eq!(ev["details"]["reason"], "primary down, INC-42");
    assert_eq!(ev["details"]["policies"], json!(["oncall-breakglass"]));
    assert_eq!(s.audit("token.issue").last().unwrap()["details"]["breakglass"], true);
    assert_eq!(metric(&s, "latch_breakglass_activations_total"), 1.0);
    assert_eq!(metric(&s, "latch_breakglass_unreviewed"), 1.0);

    // Alerted: the failed attempts are visible (receiver, status, metrics); once the webhook is
    // back, every notification arrives in order, the break-glass alert among them.
    let failures = notifications(&s)["failures"].as_u64().unwrap();
    assert!(failures >= 1);
    assert!(notifications(&s)["last_error"].as_str().unwrap().contains("503"), "{}", notifications(&s));
    assert!(metric(&s, "latch_webhook_delivery_failures_total") >= 1.0);
    assert!(posts.lock().unwrap().iter().any(|p| !p.accepted && p.body["event"] == "request.create"));
    down.store(false, Ordering::SeqCst);
    let alerted = |p: &Post| p.accepted && p.body["event"] == "breakglass.activate";
    eventually_within("the break-glass alert", Duration::from_secs(70), || posts.lock().unwrap().iter().any(alerted));
    let alert = posts.lock().unwrap().iter().find(|p| alerted(p)).unwrap().body.clone();
    assert!(alert["text"].as_str().unwrap().starts_with("BREAK-GLASS: user:olga took role prod-db"), "{alert}");
    assert_eq!((&alert["breakglass"], &alert["outcome"]), (&json!(true), &json!("success")), "{alert}");
    // In the audit log's order, each event once.
    let delivered: Vec<(i64, String)> = posts
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.accepted)
        .map(|p| (p.body["seq"].as_i64().unwrap(), p.body["event"].as_str().unwrap().to_string()))
        .collect();
    assert!(delivered.windows(2).all(|w| w[0].0 < w[1].0), "{delivered:?}");
    assert_eq!(delivered.first().map(|d| d.1.as_str()), Some("request.create"), "{delivered:?}");
    assert_eq!(delivered.iter().filter(|d| d.1 == "breakglass.activate").count(), 1, "{delivered:?}");
    let after = notifications(&s);
    assert_eq!(after["consecutive_failures"], 0, "{after}");
    assert_eq!(after["delivered"].as_u64(), Some(delivered.len() as u64), "{after}");

    // The post-incident review is required: not by the user, not by a bystander; with no
    // approver able to act, an administrator records it.
    let own = s.cli_as(&olga, &["review", &bg_id, "--comment", "all fine"], None);
    assert_eq!(own.code, 3, "{own:?}");
    assert_eq!(s.cli_as(&alice, &["review", &bg_id, "--comment", "fine"], None).code, 3);
    let reviewed = json_as(&s, &s.token, &["review", &bg_id, "--comment", "failover verified; dba-leads restaffed"]);
    assert_eq!((&reviewed["reviewed"], &reviewed["reviewed_by"]), (&json!(true), &json!("admin")), "{reviewed}");
    let rev = s.audit("breakglass.review");
    assert_eq!(rev.len(), 1);
    assert_eq!((rev[0]["actor"].as_str(), rev[0]["details"]["requester"].as_str()), (Some("user:admin"), Some("olga")));
    assert_eq!(metric(&s, "latch_breakglass_unreviewed"), 0.0);
    // The ordinary request still waits; the audit chain verifies.
    assert_eq!(json_as(&s, &alice, &["show", &req_id])["request"]["state"], "pending");
    s.cli(&["audit", "verify"]).ok();
}

/// F5, "secrets in logs": a scenario that is issued, or sends, every kind of
/// secret latch handles — the bootstrap token, passwords (right, wrong and
/// changed), session tokens (password, password + TOTP, service principal),
/// TOTP secrets, client secrets (created and rotated), signed tokens — and
/// replays some after revocation or logout, sends them where they do not
/// belong and gets errors back. The harness notes each secret as it passes
/// and checks every CLI stderr and HTTP error body on the way; at the end the
/// server log and the audit export (`latch audit list -o json`) are scanned
/// for all of them, and the scanner is shown to find each kind when present.
#[test]
fn f5_no_issued_secret_reaches_a_log_the_audit_export_stderr_or_an_error_body() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(&dir.path().join("data"), &[]);
    s.cli(&["group", "create", "eng"]).ok();
    s.create_user("alice", PW, &["eng"]);
    s.create_user("bob", "bob's first password", &["eng"]);
    apply_roles(&s);
    let mut issued: Vec<(&str, String)> = vec![("bootstrap token", s.token.clone()), ("password", PW.into())];

    // Passwords: wrong, changed; sessions.
    let wrong = s.login("alice", "not alice's password", None).unwrap_err();
    assert_eq!(wrong.code, 1);
    let alice = s.login("alice", PW, None).unwrap();
    issued.push(("session token", alice.clone()));
    s.cli_as(&s.token, &["user", "set-password", "bob"], Some("bob's second password")).ok();
    assert!(s.login("bob", "bob's first password", None).is_err());
    let bob = s.login("bob", "bob's second password", None).unwrap();
    issued.push(("changed password", "bob's second password".into()));

    // TOTP: the secret, then a session with a code.
    let uri = s.cli_as(&bob, &["mfa", "enroll"], None).ok().stdout;
    let totp = secret_from_uri(uri.trim());
    issued.push(("TOTP secret", totp.clone()));
    s.cli_as(&bob, &["mfa", "confirm", &totp_at(&totp, s.now_ms())], None).ok();
    s.advance("30s");
    let bob_mfa = s.login("bob", "bob's second password", Some(&totp_at(&totp, s.now_ms()))).unwrap();
    issued.push(("MFA session token", bob_mfa.clone()));

    // A service principal: its secret, a session, a rotation; the old secret is refused.
    let sp = json_as(&s, &s.token, &["sp", "create", "ci", "--group", "eng"]);
    let (client_id, first) = (sp["client_id"].as_str().unwrap().to_string(), sp["client_secret"].as_str().unwrap());
    issued.push(("client secret", first.to_string()));
    let sp_login = |secret: &str| {
        run_cli(&s.addr, "", &["login", "--sp", &client_id, "--password-stdin", "-o", "json"], Some(secret))
    };
    let sp_token = sp_login(first).ok().json()["token"].as_str().unwrap().to_string();
    issued.push(("service principal session token", sp_token.clone()));
    let second = json_as(&s, &s.token, &["sp", "rotate-secret", "ci"])["client_secret"].as_str().unwrap().to_string();
    issued.push(("rotated client secret", second.clone()));
    assert_eq!(sp_login(first).code, 1);
    assert_eq!(s.cli_as(&sp_token, &["whoami"], None).code, 1, "rotation ended the session");
    let sp_token2 = sp_login(&second).ok().json()["token"].as_str().unwrap().to_string();

    // Signed tokens under a grant; replayed after the grant is revoked (F3).
    let grant = json_as(&s, &alice, &["request", "read-logs", "--for", "1h", "--reason", "debugging"]);
    let grant = grant["grant"]["id"].as_str().unwrap().to_string();
    let jwt = json_as(&s, &alice, &["token", "--grant", &grant])["token"].as_str().unwrap().to_string();
    issued.push(("signed token", jwt.clone()));
    let sp_grant = json_as(&s, &sp_token2, &["request", "read-logs", "--for", "1h", "--reason", "deploy"]);
    let sp_grant = sp_grant["grant"]["id"].as_str().unwrap().to_string();
    let sp_jwt = json_as(&s, &sp_token2, &["token", "--grant", &sp_grant])["token"].as_str().unwrap().to_string();
    issued.push(("service principal's signed token", sp_jwt.clone()));
    s.cli_as(&alice, &["revoke", &grant, "--reason", "done"], None).ok();
    let (_, v) = s.http("POST", "/v1/tokens/introspect", Some(&s.token), Some(&json!({ "token": jwt })));
    assert_eq!(v["active"], false);
    let replay = s.cli_as(&alice, &["introspect", &jwt], None);
    assert_eq!(replay.ok().stdout.trim(), "inactive");

    // Secrets where they do not belong: every error body and stderr is checked by the harness.
    for (token, body) in [
        (Some(jwt.as_str()), None),                                        // a JWT as a session
        (Some(second.as_str()), None),                                     // a client secret as a session
        (Some(alice.as_str()), Some(json!({ "token": jwt, "extra": 1 }))), // unknown field
        (Some(alice.as_str()), Some(json!({ "token": 5 }))),               // wrong type
    ] {
        let (status, _) = s.http("POST", "/v1/tokens/introspect", token, body.as_ref());
        assert!(status >= 400, "{status}");
    }
    let (status, _) =
        s.http("POST", "/v1/auth/login", None, Some(&json!({ "user": "alice", "password": PW, "otp": second })));
    assert_eq!(status, 400);
    let (status, _) =
        s.http("POST", "/v1/auth/sp/login", None, Some(&json!({ "client_id": client_id, "client_secret": first })));
    assert_eq!(status, 401);
    let bad = s.cli_as(&alice, &["user", "create", &jwt], None);
    assert_ne!(bad.code, 0);
    // A session after logout is refused (F3).
    s.cli_as(&alice, &["logout"], None).ok();
    assert_eq!(s.cli_as(&alice, &["whoami"], None).code, 1);
    let (status, _) = s.http("GET", "/v1/auth/whoami", Some(&alice), None);
    assert_eq!(status, 401);

    // The scanner finds every kind of secret when it is there (so a clean scan means something).
    for (kind, secret) in &issued {
        assert!(secrets::find(&format!("log line: {kind}={secret}.")).is_some(), "the scanner misses a {kind}");
    }
    assert!(secrets::find(&format!("Bearer {bob_mfa}")).is_some());

    // The audit export: every event, none of the secrets.
    let export = s.cli(&["audit", "list", "-o", "json", "--limit", "100000"]).ok();
    let events = export.json()["events"].as_array().unwrap().len();
    assert!(events >= 25, "the scenario is audited: {events} events");
    secrets::assert_clean("the audit export", &export.stdout);
    let tail = s.cli(&["audit", "tail"]).ok();
    secrets::assert_clean("audit tail", &format!("{}{}", tail.stdout, tail.stderr));

    // The server's log, whole after a clean stop (the harness checks it again at drop).
    assert_eq!(s.stop(), 0);
    let log = s.server_log();
    assert!(log.lines().count() >= 40 && log.contains("/v1/auth/login"), "the log has request lines: {log}");
    secrets::assert_clean("the server log", &log);
}

/// The harness's own F5 check, run when any test's server is dropped, fails
/// the test when the server's log or its audit events hold a secret it saw.
#[test]
fn f5_the_harness_fails_a_test_whose_server_log_or_audit_events_hold_a_secret() {
    for place in ["log", "audit"] {
        let s = Server::start();
        s.create_user("alice", PW, &[]);
        let token = s.login("alice", PW, None).unwrap();
        match place {
            "log" => {
                let mut log = std::fs::OpenOptions::new().append(true).open(&s.log).unwrap();
                writeln!(log, "a careless debug line: Authorization: Bearer {token}").unwrap();
            }
            _ => {
                s.sql(&format!(
                    "UPDATE audit_events SET details = '{{\"oops\": \"{token}\"}}' WHERE action = 'auth.login'"
                ));
            }
        }
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(s)));
        let message = dropped.expect_err("the drop check must fail");
        let message = message.downcast_ref::<String>().unwrap();
        assert!(message.starts_with("F5: a secret (lts_"), "{message}");
        assert!(!message.contains(&token), "the failure does not print the secret: {message}");
    }
}
