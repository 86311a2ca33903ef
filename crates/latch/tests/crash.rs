//! Crash consistency: a mixed load (auto-approved requests, requests that
//! need two approvals and their approvals, token issues, revocations, user
//! creations, session recordings started and appended to) runs against a real server from several client threads, and
//! the server is killed with SIGKILL at a random moment while requests are in
//! flight — many times, on one data directory (SQLite) or database
//! (PostgreSQL), so state accumulates across rounds.
//!
//! After every restart: each change the server acknowledged (a 2xx response
//! that reached the client) is present; nothing is half-applied (states of
//! requests, grants, approvals and tokens agree with each other and with the
//! audit events committed beside them); `latch audit verify` passes; and
//! grants still expire through the sweeper once the clock passes their end;
//! every acknowledged recording chunk reads back byte for byte, and a chunk
//! in doubt, sent again as a gateway would, is taken once.
//!
//! Kill points and operation choices come from a small PRNG. The base seed is
//! printed; rerun with `LATCH_CRASH_SEED=N` to repeat a run's choices (thread
//! scheduling still varies), `LATCH_CRASH_ROUNDS=N` to change the round count.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{BIN, Server, eventually, on_postgres};
use latch_core::Clock;
use serde_json::{Value, json};

const PW: &str = "correct horse battery";
const THREADS: usize = 4;
const LEADS: [&str; 2] = ["lead1", "lead2"];
/// How far the clock moves after each restart's checks: past every grant the load makes (≤ 1h).
const EXPIRY_STEP_SECS: u64 = 2 * 3600;
/// Written every second, so kills also land around checkpoint writes.
const EXTRA: &[&str] = &["--checkpoint-interval", "1s"];

const ROLES: &[(&str, &str)] = &[
    (
        "roles/ops-auto.toml",
        r#"name = "ops-auto"
description = "Operate production services; auto-approved for up to an hour"
max_duration = "2h"
default_duration = "30m"
[approval]
required = 1
approvers = ["group:leads"]
[credentials.token]
audiences = ["https://ops.internal"]
max_ttl = "20m"
[credentials.ssh]
principals = ["ops"]
"#,
    ),
    (
        "roles/ops-two.toml",
        r#"name = "ops-two"
description = "Two-person rule"
max_duration = "2h"
default_duration = "1h"
[approval]
required = 2
approvers = ["group:leads"]
[credentials.token]
audiences = ["https://ops.internal"]
max_ttl = "20m"
[credentials.ssh]
principals = ["ops"]
"#,
    ),
];

const POLICIES: &str = r#"@id("eng-may-request")
permit(principal in Group::"eng", action == Action::"request", resource);

@id("eng-auto-ops")
permit(principal in Group::"eng", action == Action::"activate", resource == Role::"ops-auto")
when { context.duration_secs <= 3600 };

@id("leads-approve")
permit(principal in Group::"leads", action == Action::"approve", resource);
"#;

/// splitmix64: small, deterministic, good enough to pick kill points and operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the server acknowledged (a complete 2xx response), with the ids it returned.
#[derive(Default)]
struct Acks {
    /// name → id
    users: BTreeMap<String, String>,
    /// grant id → (request id, round)
    grants: BTreeMap<String, (String, usize)>,
    /// approval-flow request id → acknowledged approvers, and the grant the last approval returned
    requests: BTreeMap<String, (usize, Vec<String>, Option<String>)>,
    tokens: Vec<TokenAck>,
    /// grant id → jtis the revocation reported
    revoked: BTreeMap<String, Vec<String>>,
    /// Revocations sent, acknowledged or not: their grant may be revoked or active.
    revoke_sent: BTreeSet<String>,
    /// recording id → (chunks acknowledged, round started)
    recordings: BTreeMap<String, (i64, usize)>,
    /// recording id → the seq of a chunk sent and never answered
    chunks_in_doubt: BTreeMap<String, i64>,
    /// Requests whose fate the client never learned (one per thread per kill).
    in_doubt: Vec<InDoubt>,
    /// Non-2xx answers (none are expected).
    refused: Vec<String>,
    ops: usize,
}

/// A change sent but never answered: either outcome is allowed, half of one is not.
/// `probe` counts rows on the server; more than `before` means it was applied.
struct InDoubt {
    what: String,
    probe: String,
    before: usize,
}

struct TokenAck {
    jti: String,
    token: String,
    grant_id: String,
    round: usize,
}

impl Acks {
    fn merge(&mut self, o: Acks) {
        self.users.extend(o.users);
        self.grants.extend(o.grants);
        self.requests.extend(o.requests);
        self.tokens.extend(o.tokens);
        self.revoked.extend(o.revoked);
        self.revoke_sent.extend(o.revoke_sent);
        self.recordings.extend(o.recordings);
        self.chunks_in_doubt.extend(o.chunks_in_doubt);
        self.in_doubt.extend(o.in_doubt);
        self.refused.extend(o.refused);
        self.ops += o.ops;
    }
}

/// One client of the load: its own connection pool, no panics on a dead server.
struct Client {
    addr: String,
    agent: ureq::Agent,
}

impl Client {
    fn new(addr: &str) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Client { addr: addr.to_string(), agent }
    }

    /// `None` when no complete response arrived (the server died): the change is in doubt.
    fn call(&self, method: &str, path: &str, token: &str, body: &Value) -> Option<(u16, Value)> {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.addr))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .body(body.to_string().into_bytes())
            .unwrap();
        let mut resp = self.agent.run(req).ok()?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().ok()?;
        // The tokens the load is issued are checked for in logs like the harness's own (F5).
        if status < 400 {
            common::secrets::harvest(&text);
        } else {
            common::secrets::assert_clean(&format!("the error body of {method} {path} ({status})"), &text);
        }
        let v = serde_json::from_str(&text).ok()?;
        Some((status, v))
    }
}

struct Sessions {
    requesters: Vec<String>,
    leads: Vec<String>,
    admin: String,
}

/// The approver whose session `token` is.
fn lead_of(leads: &[String], token: &str) -> &'static str {
    LEADS[leads.iter().position(|l| l == token).unwrap()]
}

/// A JSON string as an SQL literal (the load's names and reasons hold no quotes).
fn sql_str(v: &Value) -> String {
    let s = v.as_str().unwrap();
    assert!(!s.contains('\''));
    format!("'{s}'")
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_string()
}

/// Chunk `seq` of recording `rec`: what a gateway sends, a few KiB of
/// terminal output naming the recording and chunk on every line.
fn chunk_events(rec: &str, seq: i64) -> String {
    let pad = "x".repeat(60);
    (0..40).map(|i| format!("[{seq}.{i:03}, \"o\", \"{rec} chunk {seq} line {i} {pad}\\r\\n\"]\n")).collect()
}

fn chunk_body(rec: &str, seq: i64) -> Value {
    json!({"seq": seq, "events": chunk_events(rec, seq)})
}

/// One load thread: its own requester, shared approvers and administrator.
fn load(c: &Client, s: &Sessions, t: usize, round: usize, seed: u64, stop: &AtomicBool) -> Acks {
    let mut rng = Rng(seed);
    let mut acks = Acks::default();
    let me = &s.requesters[t];
    // Grants of this thread that are live and not (being) revoked.
    let mut live: Vec<String> = Vec::new();
    // Approval-flow requests still pending: id, approvals acknowledged so far.
    let mut pending: Vec<(String, usize)> = Vec::new();
    // This round's recordings of this thread (id, next seq), and the grants they are under.
    let mut recs: Vec<(String, i64)> = Vec::new();
    let mut recorded: BTreeSet<String> = BTreeSet::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let pick = rng.below(100);
        let (what, method, path, token, body) = match pick {
            25..45 if !pending.is_empty() && rng.below(3) != 0 => {
                let i = rng.below(pending.len() as u64) as usize;
                let (id, have) = &pending[i];
                ("approve", "POST", format!("/v1/requests/{id}/approve"), &s.leads[*have], json!({"comment": "ok"}))
            }
            25..45 => (
                "request-approval",
                "POST",
                "/v1/requests".to_string(),
                me,
                json!({"role": "ops-two", "duration": "1h", "reason": format!("change r{round} t{t} #{n}")}),
            ),
            45..58 if !live.is_empty() => {
                let g = &live[rng.below(live.len() as u64) as usize];
                ("token", "POST", format!("/v1/grants/{g}/token"), me, json!({"ttl": "15m"}))
            }
            58..70 if live.iter().any(|g| !recorded.contains(g)) && (recs.is_empty() || rng.below(4) == 0) => {
                let g = live.iter().find(|g| !recorded.contains(*g)).unwrap().clone();
                recorded.insert(g.clone());
                let body = json!({"grant_id": g, "target": "db1", "login": "ops", "kind": "shell",
                                  "width": 120, "height": 40});
                ("record-start", "POST", "/v1/recordings".to_string(), me, body)
            }
            58..70 if !recs.is_empty() => {
                let (id, seq) = &recs[rng.below(recs.len() as u64) as usize];
                ("chunk", "POST", format!("/v1/recordings/{id}/chunks"), me, chunk_body(id, *seq))
            }
            70..85 if !live.is_empty() => {
                let g = live.remove(rng.below(live.len() as u64) as usize);
                acks.revoke_sent.insert(g.clone());
                ("revoke", "POST", format!("/v1/grants/{g}/revoke"), me, json!({"reason": "done"}))
            }
            85.. => (
                "user",
                "POST",
                "/v1/users".to_string(),
                &s.admin,
                json!({"name": format!("u-r{round}-t{t}-{n}"), "groups": ["eng"]}),
            ),
            _ => (
                "request-auto",
                "POST",
                "/v1/requests".to_string(),
                me,
                json!({"role": "ops-auto", "duration": if rng.below(2) == 0 { "30m" } else { "1h" },
                       "reason": format!("incident r{round} t{t} #{n}")}),
            ),
        };
        let Some((status, v)) = c.call(method, &path, token, &body) else {
            let seg = |i: usize| path.split('/').nth(i).unwrap_or_default().to_string();
            let (probe, before) = match what {
                "approve" => {
                    let lead = lead_of(&s.leads, token);
                    (
                        format!(
                            "SELECT COUNT(*) FROM approvals WHERE request_id = '{}' AND approver_name = '{lead}'",
                            seg(3)
                        ),
                        0,
                    )
                }
                "token" => {
                    let g = seg(3);
                    let known = acks.tokens.iter().filter(|t| t.grant_id == g).count();
                    (format!("SELECT COUNT(*) FROM tokens WHERE grant_id = '{g}'"), known)
                }
                "revoke" => (format!("SELECT COUNT(*) FROM grants WHERE id = '{}' AND state = 'revoked'", seg(3)), 0),
                "record-start" => {
                    (format!("SELECT COUNT(*) FROM recordings WHERE grant_id = {}", sql_str(&body["grant_id"])), 0)
                }
                "chunk" => {
                    let seq = body["seq"].as_i64().unwrap();
                    acks.chunks_in_doubt.insert(seg(3), seq);
                    (
                        format!(
                            "SELECT COUNT(*) FROM recording_chunks WHERE recording_id = '{}' AND seq = {seq}",
                            seg(3)
                        ),
                        0,
                    )
                }
                "user" => (format!("SELECT COUNT(*) FROM users WHERE name = {}", sql_str(&body["name"])), 0),
                _ => (format!("SELECT COUNT(*) FROM access_requests WHERE reason = {}", sql_str(&body["reason"])), 0),
            };
            acks.in_doubt.push(InDoubt { what: format!("{what} {path} {body}"), probe, before });
            return acks;
        };
        if !(200..300).contains(&status) {
            acks.refused.push(format!("{what} {path} {body}: {status} {v}"));
            continue;
        }
        acks.ops += 1;
        match what {
            "request-auto" => {
                assert_eq!(v["request"]["state"], "active", "{v}");
                let g = id_of(&v["grant"]);
                acks.grants.insert(g.clone(), (id_of(&v["request"]), round));
                live.push(g);
            }
            "request-approval" => {
                assert_eq!(v["request"]["state"], "pending", "{v}");
                let id = id_of(&v["request"]);
                acks.requests.insert(id.clone(), (round, Vec::new(), None));
                pending.push((id, 0));
            }
            "approve" => {
                let id = id_of(&v["request"]);
                let i = pending.iter().position(|(p, _)| *p == id).unwrap();
                let entry = acks.requests.get_mut(&id).unwrap();
                entry.1.push(LEADS[pending[i].1].to_string());
                pending[i].1 += 1;
                if v["grant"].is_object() {
                    let g = id_of(&v["grant"]);
                    entry.2 = Some(g.clone());
                    acks.grants.insert(g.clone(), (id, round));
                    live.push(g);
                    pending.remove(i);
                } else {
                    assert_eq!(v["request"]["state"], "pending", "{v}");
                }
            }
            "token" => acks.tokens.push(TokenAck {
                jti: v["jti"].as_str().unwrap().to_string(),
                token: v["token"].as_str().unwrap().to_string(),
                grant_id: v["grant_id"].as_str().unwrap().to_string(),
                round,
            }),
            "record-start" => {
                let id = id_of(&v);
                acks.recordings.insert(id.clone(), (0, round));
                recs.push((id, 0));
            }
            "chunk" => {
                let id = v["recording"]["id"].as_str().unwrap();
                assert_eq!(v["duplicate"], false, "{v}");
                let next = v["next_seq"].as_i64().unwrap();
                acks.recordings.get_mut(id).unwrap().0 = next;
                recs.iter_mut().find(|(r, _)| r == id).unwrap().1 = next;
            }
            "revoke" => {
                let jtis = v["tokens_revoked"].as_array().unwrap().iter().map(|j| j.as_str().unwrap().to_string());
                acks.revoked.insert(id_of(&v["grant"]), jtis.collect());
            }
            "user" => {
                acks.users.insert(v["name"].as_str().unwrap().to_string(), id_of(&v));
            }
            _ => unreachable!(),
        }
    }
    acks
}

fn login(srv: &Server, user: &str) -> String {
    let (status, v) = srv.http("POST", "/v1/auth/login", None, Some(&json!({"user": user, "password": PW})));
    assert_eq!(status, 200, "login {user}: {v}");
    v["token"].as_str().unwrap().to_string()
}

/// A GET (or POST) as the administrator that must succeed.
fn api(srv: &Server, method: &str, path: &str, body: Option<&Value>) -> Value {
    let (status, v) = srv.http(method, path, Some(&srv.token), body);
    assert!((200..300).contains(&status), "{method} {path}: {status} {v}");
    v
}

fn introspect(srv: &Server, token: &str) -> Value {
    api(srv, "POST", "/v1/tokens/introspect", Some(&json!({ "token": token })))
}

/// Every audit event, through the API.
fn all_events(srv: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    let mut since = 0;
    loop {
        let page = api(srv, "GET", &format!("/v1/audit/events?since={since}&limit=10000"), None);
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            return out;
        }
        out.extend(events.iter().cloned());
        since = page["next_since"].as_i64().unwrap();
    }
}

/// Targets (`grant:ID`) of every `grant.expire` event, through the API.
fn expire_targets(srv: &Server) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut since = 0;
    loop {
        let page = api(srv, "GET", &format!("/v1/audit/events?since={since}&limit=10000&action=grant.expire"), None);
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            return out;
        }
        out.extend(events.iter().map(|e| e["target"].as_str().unwrap().to_string()));
        since = page["next_since"].as_i64().unwrap();
    }
}

/// Rows of a read-only query on the server's own database, split into fields.
fn rows(srv: &Server, sql: &str) -> Vec<Vec<String>> {
    srv.sql(sql).into_iter().map(|r| r.split('|').map(str::to_string).collect()).collect()
}

/// Restarts on the same data after a kill: the clock is put back where it
/// was (the test clock's offset lives in the process) and the administrator
/// gets a session at that time.
fn restart(data: &Path, offset_secs: u64) -> Server {
    let mut srv = Server::start_in(data, EXTRA);
    if offset_secs > 0 {
        srv.advance(&format!("{offset_secs}s"));
    }
    srv.token = login(&srv, "boss");
    srv
}

/// Check 1: every acknowledged change is present, with the right state.
fn check_acknowledged(srv: &Server, acks: &Acks, round: usize) {
    let users: BTreeMap<String, String> = api(srv, "GET", "/v1/users", None)["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["name"].as_str().unwrap().to_string(), id_of(u)))
        .collect();
    for (name, id) in &acks.users {
        assert_eq!(users.get(name), Some(id), "acknowledged user {name} lost");
    }
    let grants: BTreeMap<String, Value> = api(srv, "GET", "/v1/grants?all=true", None)["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (id_of(g), g.clone()))
        .collect();
    for (id, (request, r)) in &acks.grants {
        let g = grants.get(id).unwrap_or_else(|| panic!("acknowledged grant {id} (round {r}) lost"));
        assert_eq!(g["request_id"], request.as_str(), "{g}");
        let state = g["state"].as_str().unwrap();
        let ok: &[&str] = match (acks.revoked.contains_key(id), acks.revoke_sent.contains(id), *r == round) {
            (true, _, _) => &["revoked"],
            (false, true, true) => &["active", "revoked"],
            (false, false, true) => &["active"],
            (false, true, false) => &["expired", "revoked"],
            (false, false, false) => &["expired"],
        };
        assert!(ok.contains(&state), "grant {id} (round {r}) is {state}, expected one of {ok:?}: {g}");
    }
    let requests: BTreeMap<String, Value> = api(srv, "GET", "/v1/requests?limit=10000", None)["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (id_of(r), r.clone()))
        .collect();
    for (id, (r, approvers, grant)) in &acks.requests {
        let req = requests.get(id).unwrap_or_else(|| panic!("acknowledged request {id} (round {r}) lost"));
        let have: BTreeSet<&str> =
            req["approvals"].as_array().unwrap().iter().map(|a| a["approver"].as_str().unwrap()).collect();
        for a in approvers {
            assert!(have.contains(a.as_str()), "acknowledged approval of {id} by {a} lost: {req}");
        }
        let state = req["state"].as_str().unwrap();
        match grant {
            Some(g) => {
                assert_eq!(req["grant_id"], g.as_str(), "{req}");
                assert!(["active", "revoked", "expired"].contains(&state), "{req}");
            }
            // The approval in doubt may have completed it.
            None if *r == round => assert!(["pending", "active"].contains(&state), "{req}"),
            None => {}
        }
    }
    let jtis: BTreeSet<String> = srv.sql("SELECT jti FROM tokens").into_iter().collect();
    for t in &acks.tokens {
        assert!(jtis.contains(&t.jti), "acknowledged token {} (round {}) lost", t.jti, t.round);
    }
    // This round's tokens: active exactly while their grant is.
    for t in acks.tokens.iter().filter(|t| t.round == round) {
        let claims = introspect(srv, &t.token);
        let grant_state = grants[&t.grant_id]["state"].as_str().unwrap();
        assert_eq!(claims["active"], grant_state == "active", "token {} of {grant_state} grant: {claims}", t.jti);
        if claims["active"] == true {
            assert_eq!(claims["jti"], t.jti.as_str());
        }
        if acks.revoked.contains_key(&t.grant_id) {
            assert_eq!(claims["active"], false, "token {} of an acknowledged revocation is active", t.jti);
        }
    }
    let (status, revoked_list) = srv.http("GET", "/v1/tokens/revoked", None, None);
    assert_eq!(status, 200);
    let listed: BTreeSet<&str> =
        revoked_list["revoked"].as_array().unwrap().iter().map(|r| r["jti"].as_str().unwrap()).collect();
    let this_round: BTreeSet<&String> = acks.grants.iter().filter(|(_, (_, r))| *r == round).map(|(g, _)| g).collect();
    for (g, jtis) in acks.revoked.iter().filter(|(g, _)| this_round.contains(g)) {
        for j in jtis {
            assert!(listed.contains(j.as_str()), "token {j} of revoked grant {g} missing from /v1/tokens/revoked");
        }
    }
}

/// Check 1b: every acknowledged chunk of every recording reads back byte for
/// byte, in order, with nothing else; a chunk in doubt is stored whole or
/// not at all.
fn check_recordings(srv: &Server, acks: &Acks) {
    for (id, (acked, r)) in &acks.recordings {
        let (status, v) = srv.http("GET", &format!("/v1/recordings/{id}"), Some(&srv.token), None);
        assert_eq!(status, 200, "acknowledged recording {id} (round {r}) lost: {v}");
        let stored = v["chunks"].as_i64().unwrap();
        let doubt = acks.chunks_in_doubt.get(id) == Some(acked);
        assert!(
            stored == *acked || (doubt && stored == acked + 1),
            "recording {id}: {stored} chunks, {acked} acknowledged"
        );
        let (status, _, cast) = srv.http_raw("GET", &format!("/v1/recordings/{id}/cast"), Some(&srv.token), None, &[]);
        assert_eq!(status, 200, "{cast}");
        let events = cast.split_once('\n').map_or("", |(_, rest)| rest);
        let want: String = (0..stored).map(|seq| chunk_events(id, seq)).collect();
        assert!(events == want, "recording {id}: the {stored} stored chunks do not read back as sent");
    }
}

/// What a gateway does after an outage: sends the chunk it never saw
/// answered again (once stored, a duplicate), then the next one. On SQLite
/// the next one is written over whatever the killed commit left in the file.
fn resume_recordings(srv: &Server, acks: &mut Acks) -> usize {
    let in_doubt = std::mem::take(&mut acks.chunks_in_doubt);
    let n = in_doubt.len();
    for (id, seq) in in_doubt {
        let (status, v) =
            srv.http("POST", &format!("/v1/recordings/{id}/chunks"), Some(&srv.token), Some(&chunk_body(&id, seq)));
        assert_eq!(status, 200, "chunk {seq} of {id} sent again: {v}");
        let (status, v) =
            srv.http("POST", &format!("/v1/recordings/{id}/chunks"), Some(&srv.token), Some(&chunk_body(&id, seq + 1)));
        assert_eq!((status, &v["duplicate"]), (200, &json!(false)), "chunk {} of {id}: {v}", seq + 1);
        acks.recordings.get_mut(&id).unwrap().0 = seq + 2;
    }
    n
}

/// Check 2: nothing half-applied. The stored requests, approvals, grants and
/// tokens agree with each other, and with the audit events that commit
/// beside them (one event per state change, none without its change).
fn check_consistent(srv: &Server, user_baseline: &BTreeSet<String>) -> usize {
    let requests = rows(srv, "SELECT id, state, approvals_required, COALESCE(grant_id, '') FROM access_requests");
    let grants = rows(srv, "SELECT id, request_id, state, expires_at FROM grants");
    let approvals = rows(srv, "SELECT request_id, approver_name FROM approvals");
    let tokens =
        rows(srv, "SELECT jti, grant_id, expires_at, CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END FROM tokens");
    let users: BTreeSet<String> = srv.sql("SELECT name FROM users").into_iter().collect();

    let grant_by_id: BTreeMap<&str, &Vec<String>> = grants.iter().map(|g| (g[0].as_str(), g)).collect();
    let mut grants_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for g in &grants {
        grants_of.entry(g[1].as_str()).or_default().push(g[0].as_str());
    }
    let mut approvals_of: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &approvals {
        *approvals_of.entry(a[0].as_str()).or_default() += 1;
    }
    let granted = ["active", "revoked", "expired"];
    let req_by_id: BTreeMap<&str, &Vec<String>> = requests.iter().map(|r| (r[0].as_str(), r)).collect();
    for g in &grants {
        let r = req_by_id.get(g[1].as_str()).unwrap_or_else(|| panic!("grant {} has no request {}", g[0], g[1]));
        assert_eq!(r[1], g[2], "grant {} is {} but its request {} is {}", g[0], g[2], r[0], r[1]);
        assert_eq!(r[3], g[0], "request {} names grant {:?}, not its grant {}", r[0], r[3], g[0]);
    }
    for r in &requests {
        let (id, state, need) = (r[0].as_str(), r[1].as_str(), r[2].parse::<usize>().unwrap());
        let n_grants = grants_of.get(id).map_or(0, Vec::len);
        let have = approvals_of.get(id).copied().unwrap_or(0);
        assert_eq!(granted.contains(&state), n_grants == 1, "request {id} is {state} with {n_grants} grant(s)");
        assert!(n_grants <= 1, "request {id} has {n_grants} grants");
        assert!(r[3].is_empty() || grant_by_id.contains_key(r[3].as_str()), "request {id} names a missing grant");
        if need > 0 {
            assert!(have <= need, "request {id} has {have} approvals of {need}");
            assert_eq!(
                have == need,
                n_grants == 1,
                "request {id}: {have}/{need} approvals, {n_grants} grant(s), {state}"
            );
        } else {
            assert_eq!(have, 0, "auto-approved request {id} has approvals");
        }
    }
    for t in &tokens {
        let g = grant_by_id.get(t[1].as_str()).unwrap_or_else(|| panic!("token {} has no grant {}", t[0], t[1]));
        assert_eq!(t[3] == "1", g[2] == "revoked", "token {} revoked={} under a {} grant", t[0], t[3], g[2]);
        assert!(t[2].parse::<i64>().unwrap() <= g[3].parse::<i64>().unwrap(), "token {} outlives its grant", t[0]);
    }

    // The audit log says exactly what the tables say.
    let events = all_events(srv);
    let mut created_grants = BTreeSet::new();
    let mut created_requests = BTreeSet::new();
    let mut issued = BTreeSet::new();
    let mut revoked_events = Vec::new();
    let mut expired_events = Vec::new();
    let mut approved = BTreeSet::new();
    let mut user_events = BTreeSet::new();
    let mut recording_events = BTreeSet::new();
    for e in events.iter().filter(|e| e["outcome"] == "success") {
        let d = &e["details"];
        let target = e["target"].as_str().unwrap();
        match e["action"].as_str().unwrap() {
            "request.create" => {
                created_requests.insert(d["request_id"].as_str().unwrap().to_string());
                if let Some(g) = d["grant_id"].as_str() {
                    created_grants.insert(g.to_string());
                }
            }
            "grant.activate" => {
                assert!(created_grants.insert(d["grant_id"].as_str().unwrap().to_string()), "{e}");
            }
            "request.approve" => {
                let r = target.strip_prefix("request:").unwrap();
                let by = e["actor"].as_str().unwrap().strip_prefix("user:").unwrap();
                assert!(approved.insert((r.to_string(), by.to_string())), "approval audited twice: {e}");
            }
            "token.issue" => {
                assert!(issued.insert(d["jti"].as_str().unwrap().to_string()), "{e}");
            }
            "grant.revoke" => revoked_events.push(target.strip_prefix("grant:").unwrap().to_string()),
            "grant.expire" => expired_events.push(target.strip_prefix("grant:").unwrap().to_string()),
            "user.create" => {
                user_events.insert(target.strip_prefix("user:").unwrap().to_string());
            }
            "recording.start" => {
                assert!(recording_events.insert(target.strip_prefix("recording:").unwrap().to_string()), "{e}");
            }
            _ => {}
        }
    }
    let set = |v: &Vec<Vec<String>>, f: &dyn Fn(&Vec<String>) -> bool| -> BTreeSet<String> {
        v.iter().filter(|r| f(r)).map(|r| r[0].clone()).collect()
    };
    let diff = |what: &str, table: &BTreeSet<String>, audit: &BTreeSet<String>| {
        let only_table: Vec<_> = table.difference(audit).collect();
        let only_audit: Vec<_> = audit.difference(table).collect();
        assert!(
            only_table.is_empty() && only_audit.is_empty(),
            "{what}: stored without their event {only_table:?}; audited but not stored {only_audit:?}"
        );
    };
    diff("requests", &set(&requests, &|_| true), &created_requests);
    diff("grants", &set(&grants, &|_| true), &created_grants);
    diff("tokens", &set(&tokens, &|_| true), &issued);
    let recordings = rows(srv, "SELECT id FROM recordings");
    diff("recordings", &set(&recordings, &|_| true), &recording_events);
    let approvals_set: BTreeSet<String> = approvals.iter().map(|a| format!("{}/{}", a[0], a[1])).collect();
    diff("approvals", &approvals_set, &approved.iter().map(|(r, a)| format!("{r}/{a}")).collect());
    let revoked_set: BTreeSet<String> = revoked_events.iter().cloned().collect();
    assert_eq!(revoked_set.len(), revoked_events.len(), "a grant revoked twice in the audit log");
    diff("revoked grants", &set(&grants, &|g| g[2] == "revoked"), &revoked_set);
    let expired_set: BTreeSet<String> = expired_events.iter().cloned().collect();
    assert_eq!(expired_set.len(), expired_events.len(), "a grant expired twice in the audit log");
    diff("expired grants", &set(&grants, &|g| g[2] == "expired"), &expired_set);
    let created_users: BTreeSet<String> = users.difference(user_baseline).cloned().collect();
    diff("users", &created_users, &user_events.difference(user_baseline).cloned().collect());
    events.len()
}

/// Check 3: the chain and its signed checkpoints verify.
fn check_audit(srv: &Server) -> Value {
    let report = srv.cli(&["audit", "verify", "-o", "json"]).ok().json();
    if !on_postgres() {
        let out = Command::new(BIN).args(["audit", "verify", "--data"]).arg(&srv.data).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "offline verify: {stdout} {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("audit chain OK"), "{stdout}");
    }
    report
}

/// Check 4: once the clock passes their end, the sweeper expires every live
/// grant (one `grant.expire` event each) and their tokens stop working.
fn check_expiry(srv: &Server, acks: &Acks, round: usize) -> usize {
    let live: Vec<String> = api(srv, "GET", "/v1/grants?all=true&active=true", None)["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    srv.advance(&format!("{EXPIRY_STEP_SECS}s"));
    eventually("the sweeper to expire every live grant", || {
        let expired = expire_targets(srv);
        live.iter().all(|g| expired.contains(&format!("grant:{g}")))
    });
    let still = api(srv, "GET", "/v1/grants?all=true&active=true", None);
    assert_eq!(still["grants"], json!([]), "grants live after their end");
    let grants: BTreeMap<String, Value> = api(srv, "GET", "/v1/grants?all=true", None)["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (id_of(g), g.clone()))
        .collect();
    for g in &live {
        assert_eq!(grants[g]["state"], "expired", "{}", grants[g]);
        let req = api(srv, "GET", &format!("/v1/requests/{}", grants[g]["request_id"].as_str().unwrap()), None);
        assert_eq!(req["request"]["state"], "expired", "{req}");
    }
    for t in acks.tokens.iter().filter(|t| t.round == round) {
        assert_eq!(introspect(srv, &t.token)["active"], false, "token {} outlived its grant", t.jti);
    }
    live.len()
}

fn setup(srv: &mut Server) {
    for g in ["eng", "leads"] {
        srv.cli(&["group", "create", g]).ok();
    }
    for t in 0..THREADS {
        srv.create_user(&format!("req{t}"), PW, &["eng"]);
    }
    for l in LEADS {
        srv.create_user(l, PW, &["leads"]);
    }
    srv.create_user("boss", PW, &["admins"]);
    srv.apply_bundle(&[ROLES, &[("policies/main.cedar", POLICIES)]].concat());
    srv.token = login(srv, "boss");
}

#[test]
fn acknowledged_changes_survive_sigkill_and_nothing_is_half_applied() {
    let started = Instant::now();
    let base: u64 = std::env::var("LATCH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| latch_core::SystemClock.now().millis().unsigned_abs());
    let rounds: usize = std::env::var("LATCH_CRASH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    println!(
        "crash test: {} backend, {rounds} rounds, {THREADS} load threads, base seed {base} (LATCH_CRASH_SEED={base} repeats it)",
        if on_postgres() { "postgres" } else { "sqlite" }
    );
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut srv = Server::start_in(&data, EXTRA);
    setup(&mut srv);
    let user_baseline: BTreeSet<String> = srv.sql("SELECT name FROM users").into_iter().collect();
    let mut acks = Acks::default();
    let mut offset_secs = 0;
    // In-doubt changes found applied and not applied after restarts.
    let mut doubt_totals = (0, 0);
    // Chunks in doubt at a kill, sent again after the restart.
    let mut chunks_resent = 0;

    for round in 0..rounds {
        let t0 = Instant::now();
        let seed = base ^ Rng(round as u64).next();
        let mut rng = Rng(seed);
        let kill_after = Duration::from_millis(50 + rng.below(351));
        let sessions = Sessions {
            requesters: (0..THREADS).map(|t| login(&srv, &format!("req{t}"))).collect(),
            leads: LEADS.iter().map(|l| login(&srv, l)).collect(),
            admin: srv.token.clone(),
        };
        let stop = AtomicBool::new(false);
        let go = Arc::new(Barrier::new(THREADS + 1));
        let thread_seeds: Vec<u64> = (0..THREADS).map(|_| rng.next()).collect();
        let mut round_acks = std::thread::scope(|sc| {
            let handles: Vec<_> = thread_seeds
                .iter()
                .enumerate()
                .map(|(t, &s)| {
                    let (sessions, stop, go, addr) = (&sessions, &stop, go.clone(), srv.addr.clone());
                    sc.spawn(move || {
                        let c = Client::new(&addr);
                        go.wait();
                        load(&c, sessions, t, round, s, stop)
                    })
                })
                .collect();
            go.wait();
            // The kill point itself: deliberately a wait of random length while the load runs.
            let deadline = Instant::now() + kill_after;
            while Instant::now() < deadline {
                std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
            }
            let killed = Command::new("kill").args(["-KILL", &srv.pid().to_string()]).status().unwrap();
            assert!(killed.success());
            srv.wait();
            stop.store(true, Ordering::SeqCst);
            let mut all = Acks::default();
            for h in handles {
                all.merge(h.join().unwrap());
            }
            all
        });
        assert!(round_acks.refused.is_empty(), "the server refused load requests: {:#?}", round_acks.refused);
        let ops = round_acks.ops;
        let in_doubt = std::mem::take(&mut round_acks.in_doubt);
        acks.merge(round_acks);
        drop(srv);

        srv = restart(&data, offset_secs);
        let applied = in_doubt
            .iter()
            .filter(|d| {
                let n: usize = srv.sql(&d.probe)[0].parse().unwrap();
                assert!(n <= d.before + 1, "in doubt {}: {n} rows for one request", d.what);
                n > d.before
            })
            .count();
        doubt_totals.0 += applied;
        doubt_totals.1 += in_doubt.len() - applied;
        check_acknowledged(&srv, &acks, round);
        check_recordings(&srv, &acks);
        chunks_resent += resume_recordings(&srv, &mut acks);
        check_recordings(&srv, &acks);
        let events = check_consistent(&srv, &user_baseline);
        let report = check_audit(&srv);
        let expired = check_expiry(&srv, &acks, round);
        offset_secs += EXPIRY_STEP_SECS;
        println!(
            "round {round:>2}: seed {seed:>20} kill after {:>3} ms: {ops:>3} acknowledged, {applied}/{} in doubt applied; \
             {events} events, {} checkpoints verified; {expired} live grants expired after restart ({} ms)",
            kill_after.as_millis(),
            in_doubt.len(),
            report["checkpoints"],
            t0.elapsed().as_millis()
        );
    }
    // A final clean stop still seals the log.
    assert_eq!(srv.stop(), 0);
    let srv = restart(&data, offset_secs);
    check_consistent(&srv, &user_baseline);
    check_audit(&srv);
    println!(
        "crash test: {} users, {} grants, {} approval requests, {} tokens, {} revocations, \
         {} recordings with {} chunks acknowledged ({} chunks in doubt sent again); in doubt at the kills: {} applied, {} not; {:.1} s",
        acks.users.len(),
        acks.grants.len(),
        acks.requests.len(),
        acks.tokens.len(),
        acks.revoked.len(),
        acks.recordings.len(),
        acks.recordings.values().map(|(n, _)| n).sum::<i64>(),
        chunks_resent,
        doubt_totals.0,
        doubt_totals.1,
        started.elapsed().as_secs_f64()
    );
}
