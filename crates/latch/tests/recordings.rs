//! Session recordings, black box: a gateway-like client uploads an asciicast
//! v2 recording in chunks (with a retried chunk and an out-of-order one),
//! ends it, and the holder lists, shows, exports and replays it through the
//! CLI. The export is checked by the real `asciinema` (installed by the test
//! when missing and running as root). Also: who may start, write and read a
//! recording, and bad input refused with nothing stored.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, asciinema_cat};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

const ROLE: &str = r#"name = "ops-ssh"
description = "Shell on the database hosts"
max_duration = "2h"
default_duration = "1h"
[approval]
required = 1
approvers = ["group:leads"]
[credentials.ssh]
principals = ["deploy"]
hosts = ["db-*.internal"]
"#;

const LOGS_ROLE: &str = r#"name = "read-logs"
max_duration = "1h"
[approval]
required = 1
approvers = ["group:leads"]
[credentials.token]
audiences = ["https://logs.internal"]
"#;

const POLICIES: &str = r#"@id("eng-auto")
permit(principal in Group::"eng", action in [Action::"request", Action::"activate"], resource);
"#;

struct Setup {
    s: Server,
    alice: String,
    bob: String,
    grant: String,
}

impl Setup {
    fn start() -> Setup {
        let s = Server::start();
        s.cli(&["group", "create", "eng"]).ok();
        s.cli(&["group", "create", "leads"]).ok();
        s.create_user("alice", PW, &["eng"]);
        s.create_user("bob", PW, &["eng"]);
        s.apply_bundle(&[
            ("roles/ops-ssh.toml", ROLE),
            ("roles/read-logs.toml", LOGS_ROLE),
            ("policies/main.cedar", POLICIES),
        ]);
        let alice = s.login("alice", PW, None).unwrap();
        let bob = s.login("bob", PW, None).unwrap();
        let grant = grant_of(&s, &alice, "ops-ssh");
        Setup { s, alice, bob, grant }
    }

    /// Starts a recording as `token`; returns status and body.
    fn start_as(&self, token: &str, body: Value) -> (u16, Value) {
        self.s.http("POST", "/v1/recordings", Some(token), Some(&body))
    }

    /// A recording of alice's session started by the admin (as the gateway); returns its id.
    fn recording(&self) -> String {
        let (st, v) = self.start_as(&self.s.token.clone(), self.body());
        assert_eq!(st, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    fn body(&self) -> Value {
        json!({ "grant_id": self.grant, "target": "db-1.internal", "login": "deploy", "kind": "shell",
                "width": 100, "height": 30 })
    }

    fn chunk(&self, token: &str, id: &str, seq: i64, events: &str) -> (u16, Value) {
        self.s.http(
            "POST",
            &format!("/v1/recordings/{id}/chunks"),
            Some(token),
            Some(&json!({ "seq": seq, "events": events })),
        )
    }

    fn show(&self, token: &str, id: &str) -> (u16, Value) {
        self.s.http("GET", &format!("/v1/recordings/{id}"), Some(token), None)
    }
}

fn grant_of(s: &Server, token: &str, role: &str) -> String {
    let out = s.cli_as(token, &["request", role, "--for", "1h", "--reason", "maintenance", "-o", "json"], None).ok();
    out.json()["grant"]["id"].as_str().unwrap().to_string()
}

#[test]
fn a_recording_uploaded_in_chunks_lists_shows_exports_and_replays() {
    let t = Setup::start();
    let admin = t.s.token.clone();
    let id = t.recording();
    assert!(id.starts_with("rec_"), "{id}");

    // Chunk 0, then chunk 1, then chunk 1 again (a gateway retrying after a lost answer).
    let c0 = "[0.10, \"o\", \"$ \"]\n[0.50, \"i\", \"e\"]\n[0.60, \"i\", \"cho hi\\r\"]\n";
    let c1 = "[0.70, \"o\", \"echo hi\\r\\n\"]\n[0.80, \"o\", \"hi-from-the-target\\r\\n\"]\n";
    let c2 = "[1.20, \"r\", \"120x40\"]\n[1.50, \"o\", \"$ exit\\r\\n\"]\n";
    let (st, v) = t.chunk(&admin, &id, 0, c0);
    assert_eq!((st, v["duplicate"].as_bool(), v["next_seq"].as_i64()), (200, Some(false), Some(1)), "{v}");
    let (st, v) = t.chunk(&admin, &id, 1, c1);
    assert_eq!((st, v["next_seq"].as_i64()), (200, Some(2)), "{v}");
    let (st, v) = t.chunk(&admin, &id, 1, c1);
    assert_eq!((st, v["duplicate"].as_bool(), v["next_seq"].as_i64()), (200, Some(true), Some(2)), "retry: {v}");
    // The same seq with other content is not a retry.
    let (st, v) = t.chunk(&admin, &id, 1, "[0.9, \"o\", \"forged\"]");
    assert_eq!(st, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("different content"), "{v}");
    // A gap: chunk 3 before chunk 2.
    let (st, v) = t.chunk(&admin, &id, 3, "[2.0, \"o\", \"later\"]");
    assert_eq!(st, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("expected seq 2"), "{v}");
    // Chunk 2 as raw asciicast lines, the way the gateway sends them; its retry too.
    let path = format!("/v1/recordings/{id}/chunks?seq=2");
    for duplicate in [false, true] {
        let (st, _, text) =
            t.s.http_raw("POST", &path, Some(&admin), Some(c2), &[("Content-Type", "application/x-asciicast")]);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!((st, v["duplicate"].as_bool(), v["next_seq"].as_i64()), (200, Some(duplicate), Some(3)), "{v}");
    }

    // Running: listed as active, for its holder and the admin; bob sees nothing.
    let active = t.s.cli_as(&t.alice, &["sessions", "--active", "-o", "json"], None).ok().json();
    let ids = |v: &Value| -> Vec<String> {
        v["recordings"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(&active), std::slice::from_ref(&id), "{active}");
    assert!(ids(&t.s.cli(&["sessions", "-o", "json"]).ok().json()).contains(&id));
    assert!(ids(&t.s.cli_as(&t.bob, &["sessions", "-o", "json"], None).ok().json()).is_empty());

    // End it (twice: a retried end changes nothing).
    let (st, v) = t.s.http("POST", &format!("/v1/recordings/{id}/end"), Some(&admin), None);
    assert_eq!((st, v["state"].as_str()), (200, Some("ended")), "{v}");
    let ended_at = v["ended_at"].clone();
    let (st, v) = t.s.http("POST", &format!("/v1/recordings/{id}/end"), Some(&admin), None);
    assert_eq!((st, &v["ended_at"]), (200, &ended_at), "{v}");
    // No chunk after the end; a retry of a stored one still answers.
    assert_eq!(t.chunk(&admin, &id, 3, "[2.0, \"o\", \"late\"]").0, 409);
    assert_eq!(t.chunk(&admin, &id, 2, c2).0, 200);
    let active = t.s.cli_as(&t.alice, &["sessions", "--active", "-o", "json"], None).ok().json();
    assert!(ids(&active).is_empty(), "{active}");
    let text = t.s.cli_as(&t.alice, &["sessions"], None).ok().stdout;
    assert!(text.contains(&id) && text.contains("deploy@db-1.internal") && text.contains("ended"), "{text}");

    // Show: metadata and totals.
    let v = t.s.cli_as(&t.alice, &["sessions", "show", &id, "-o", "json"], None).ok().json();
    assert_eq!(v["user"], "alice");
    assert_eq!(v["grant_id"], t.grant.as_str());
    assert_eq!(v["recorded_by"], "user:admin");
    assert_eq!(
        (v["target"].as_str(), v["login"].as_str(), v["kind"].as_str()),
        (Some("db-1.internal"), Some("deploy"), Some("shell"))
    );
    assert_eq!((v["width"].as_i64(), v["height"].as_i64()), (Some(100), Some(30)));
    assert_eq!((v["chunks"].as_i64(), v["events"].as_i64(), v["state"].as_str()), (Some(3), Some(7), Some("ended")));
    let bytes = ["$ ", "e", "cho hi\r", "echo hi\r\n", "hi-from-the-target\r\n", "$ exit\r\n"]
        .iter()
        .map(|d| d.len())
        .sum::<usize>();
    assert_eq!(v["bytes"].as_u64(), Some(bytes as u64), "{v}");
    assert!((v["duration"].as_f64().unwrap() - 1.5).abs() < 1e-9, "{v}");
    assert!(v["ended_at"].is_string());
    let text = t.s.cli_as(&t.alice, &["sessions", "show", &id], None).ok().stdout;
    assert!(text.contains("7 events in 3 chunks"), "{text}");

    // Export: the asciicast v2 file, validated by asciinema itself.
    let (st, headers, body) = t.s.http_raw("GET", &format!("/v1/recordings/{id}/cast"), Some(&t.alice), None, &[]);
    assert_eq!(st, 200, "{body}");
    assert!(headers.iter().any(|(k, v)| k == "content-type" && v == "application/x-asciicast"), "{headers:?}");
    let export = t.s.cli_as(&t.alice, &["sessions", "export", &id], None).ok().stdout;
    assert_eq!(export, body);
    let mut lines = export.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(
        (header["version"].as_i64(), header["width"].as_i64(), header["height"].as_i64()),
        (Some(2), Some(100), Some(30))
    );
    assert_eq!(lines.count(), 7);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.cast");
    std::fs::write(&file, &export).unwrap();
    let cat = asciinema_cat(&file);
    let shown = String::from_utf8_lossy(&cat.stdout);
    assert!(cat.status.success(), "asciinema cat refused the export: {cat:?}");
    assert!(shown.contains("hi-from-the-target"), "{shown}");
    // The --out form, with -o json.
    let out_file = dir.path().join("out.cast");
    let v =
        t.s.cli_as(&t.alice, &["sessions", "export", &id, "--out", out_file.to_str().unwrap(), "-o", "json"], None)
            .ok()
            .json();
    assert_eq!(v["bytes"].as_u64(), Some(export.len() as u64));
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), export);
    assert!(asciinema_cat(&out_file).status.success());
    let v = t.s.cli_as(&t.alice, &["sessions", "export", &id, "-o", "json"], None).ok().json();
    assert_eq!(v["cast"].as_str(), Some(export.as_str()));

    // Replay: output events only, in order; --speed 0 does not wait.
    let started = std::time::Instant::now();
    let out = t.s.cli_as(&t.alice, &["replay", &id, "--speed", "0"], None).ok().stdout;
    assert_eq!(out, "$ echo hi\r\nhi-from-the-target\r\n$ exit\r\n");
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "--speed 0 waited");
    // At 3x, 1.5 s of recording takes about half a second.
    let started = std::time::Instant::now();
    t.s.cli_as(&t.alice, &["replay", &id, "--speed", "3"], None).ok();
    assert!(started.elapsed() >= std::time::Duration::from_millis(450), "{:?}", started.elapsed());
    let v = t.s.cli_as(&t.alice, &["replay", &id, "-o", "json"], None).ok().json();
    assert_eq!(
        (v["events"].as_i64(), v["output"].as_str()),
        (Some(4), Some("$ echo hi\r\nhi-from-the-target\r\n$ exit\r\n"))
    );
    let bad = t.s.cli_as(&t.alice, &["replay", &id, "--speed", "-1"], None);
    assert_eq!(bad.code, 2, "{bad:?}");

    // Audited: start and end (with the totals), not each chunk.
    let start = t.s.audit("recording.start");
    assert_eq!(start.len(), 1, "{start:?}");
    assert_eq!(start[0]["target"], format!("recording:{id}"));
    assert_eq!(start[0]["details"]["grant_id"], t.grant.as_str());
    assert_eq!(start[0]["details"]["user"], "user:alice");
    let end = t.s.audit("recording.end");
    assert_eq!(end.len(), 1, "ended twice, audited once: {end:?}");
    assert_eq!((end[0]["details"]["events"].as_i64(), end[0]["details"]["chunks"].as_i64()), (Some(7), Some(3)));
    assert_eq!(end[0]["details"]["bytes"].as_u64(), Some(bytes as u64));
    assert!(!end[0]["details"].to_string().contains("hi-from-the-target"), "session content in the audit log");
    t.s.cli(&["audit", "verify"]).ok();
}

#[test]
fn only_the_holder_the_writer_and_admins_see_or_touch_a_recording() {
    let t = Setup::start();
    let admin = t.s.token.clone();
    let id = t.recording();
    assert_eq!(t.chunk(&admin, &id, 0, "[0.1, \"o\", \"secret-ish output\"]").0, 200);

    // Another user: neither read nor write, and the recording's existence is not revealed.
    for path in [format!("/v1/recordings/{id}"), format!("/v1/recordings/{id}/cast")] {
        let (st, v) = t.s.http("GET", &path, Some(&t.bob), None);
        assert_eq!(st, 404, "{path}: {v}");
    }
    assert_eq!(t.chunk(&t.bob, &id, 1, "[0.2, \"o\", \"x\"]").0, 404);
    assert_eq!(t.s.http("POST", &format!("/v1/recordings/{id}/end"), Some(&t.bob), None).0, 404);
    let out = t.s.cli_as(&t.bob, &["sessions", "show", &id], None);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
    let out = t.s.cli_as(&t.bob, &["sessions", "export", &id], None);
    assert_ne!(out.code, 0);
    assert!(out.stdout.is_empty());

    // The holder reads the gateway's recording of her session, but cannot rewrite it.
    assert_eq!(t.show(&t.alice, &id).0, 200);
    let (st, v) = t.chunk(&t.alice, &id, 1, "[0.2, \"o\", \"x\"]");
    assert_eq!(st, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("user:admin"), "{v}");
    assert_eq!(t.s.http("POST", &format!("/v1/recordings/{id}/end"), Some(&t.alice), None).0, 403);

    // Starting: only under one's own live grant (or as an admin).
    let (st, v) = t.start_as(&t.bob, t.body());
    assert_eq!(st, 403, "bob with alice's grant: {v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("belongs to alice"), "{v}");
    let mut no_grant = t.body();
    no_grant["grant_id"] = json!("grt_doesnotexist");
    assert_eq!(t.start_as(&t.bob, no_grant).0, 404);
    assert_eq!(t.s.http("POST", "/v1/recordings", None, Some(&t.body())).0, 401);
    let (st, v) = t.start_as(&t.alice, t.body());
    assert_eq!(st, 201, "alice under her own grant: {v}");
    assert_eq!(v["recorded_by"], "user:alice");
    // A grant of a role without SSH, and a revoked grant.
    let logs = grant_of(&t.s, &t.bob, "read-logs");
    let mut body = t.body();
    body["grant_id"] = json!(logs);
    let (st, v) = t.start_as(&t.bob, body);
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("does not allow SSH"), "{v}");
    let bobs = grant_of(&t.s, &t.bob, "ops-ssh");
    t.s.cli_as(&t.bob, &["revoke", &bobs], None).ok();
    let mut body = t.body();
    body["grant_id"] = json!(bobs);
    let (st, v) = t.start_as(&admin, body);
    assert_eq!(st, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("no longer active"), "{v}");
    // Refusals start nothing.
    let all = t.s.cli(&["sessions", "-o", "json"]).ok().json();
    assert_eq!(all["recordings"].as_array().unwrap().len(), 2, "{all}");
    assert_eq!(t.s.audit("recording.start").len(), 2);
}

#[test]
fn bad_input_is_refused_with_a_clear_message_and_nothing_stored() {
    let t = Setup::start();
    let admin = t.s.token.clone();
    let starts = |patch: Value, want: &str| {
        let mut body = t.body();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (st, v) = t.start_as(&admin, body);
        assert_eq!(st, 400, "{patch}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{patch}: {msg}");
    };
    starts(json!({ "width": 0 }), "width is 0");
    starts(json!({ "height": 0 }), "height is 0");
    starts(json!({ "width": 100000 }), "real terminal size");
    starts(json!({ "kind": "tty" }), "use shell or exec");
    starts(json!({ "login": "root" }), "not allowed for role ops-ssh");
    starts(json!({ "login": "Bad Login" }), "not a login name");
    starts(json!({ "target": "web-1.internal" }), "not a host of role ops-ssh");
    starts(json!({ "target": "db-1;rm -rf" }), "not a host name");
    starts(json!({ "term": "xterm\n" }), "not a terminal type");
    let (st, v) = t.s.http("POST", "/v1/recordings", Some(&admin), Some(&json!({ "grant_id": t.grant })));
    assert_eq!(st, 400, "{v}");
    assert!(t.s.cli(&["sessions", "-o", "json"]).ok().json()["recordings"].as_array().unwrap().is_empty());

    let id = t.recording();
    let refused = |seq: i64, events: &str, want: &str| {
        let (st, v) = t.chunk(&admin, &id, seq, events);
        assert_eq!(st, 400, "{events:?}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{events:?}: {msg}");
    };
    refused(0, "[0.1, \"o\", \"ok\"]\n{\"not\": \"an event\"}", "events line 2");
    refused(0, "[0.1, \"o\"]", "3 elements");
    refused(0, "[0.1, \"x\", \"a\"]", "unknown event type");
    refused(0, "[-1, \"o\", \"a\"]", "seconds from 0");
    refused(0, "[0.1, \"o\", 42]", "not a string");
    refused(0, "[0.1, \"r\", \"0x24\"]", "COLSxROWS");
    refused(0, "[0.5, \"o\", \"a\"]\n[0.2, \"o\", \"b\"]", "never go back");
    refused(0, "not json at all", "not JSON");
    refused(0, "\n\n", "no event lines");
    refused(-1, "[0.1, \"o\", \"a\"]", "numbered from 0");
    let (st, _, v) = t.s.http_raw(
        "POST",
        &format!("/v1/recordings/{id}/chunks"),
        Some(&admin),
        Some(r#"{"seq": 0, "events": "[0.1, \"o\", \"a\"]", "extra": 1}"#),
        &[],
    );
    assert_eq!(st, 400, "{v}");

    // The same checks for chunks sent as raw asciicast lines (`?seq=N`), as the gateway sends them.
    let raw = |query: &str, ctype: &str, body: &str| {
        let path = format!("/v1/recordings/{id}/chunks{query}");
        let (st, _, text) = t.s.http_raw("POST", &path, Some(&admin), Some(body), &[("Content-Type", ctype)]);
        (st, serde_json::from_str::<Value>(&text).unwrap_or(Value::Null))
    };
    for (query, ctype, body, status, want) in [
        ("", "application/x-asciicast", "[0.1, \"o\", \"a\"]\n", 400, "?seq=N"),
        ("?seq=x", "application/x-asciicast", "[0.1, \"o\", \"a\"]\n", 400, "?seq=N"),
        ("?seq=0&more=1", "application/x-asciicast", "[0.1, \"o\", \"a\"]\n", 400, "?seq=N"),
        ("?seq=0", "application/x-asciicast", "[0.1, \"o\"]\n", 400, "3 elements"),
        ("?seq=0", "text/plain", "[0.1, \"o\", \"a\"]\n", 415, "application/x-asciicast"),
    ] {
        let (st, v) = raw(query, ctype, body);
        assert_eq!(st, status, "{query} {ctype}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(want), "{v}");
    }

    // Larger than the API's 64 KiB: accepted here, up to 1 MiB per chunk.
    let big = format!("[0.1, \"o\", \"{}\"]\n", "x".repeat(200 * 1024));
    let (st, v) = t.chunk(&admin, &id, 0, &big);
    assert_eq!(st, 200, "{v}");
    let huge = format!("[0.2, \"o\", \"{}\"]\n", "y".repeat(1024 * 1024 + 10));
    let (st, v) = t.chunk(&admin, &id, 1, &huge);
    assert_eq!(st, 413, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("1 MiB"), "{v}");
    // Times never go back across chunks either.
    let (st, v) = t.chunk(&admin, &id, 1, "[0.05, \"o\", \"earlier\"]");
    assert_eq!(st, 409, "{v}");
    // Nothing of the refused chunks was stored.
    let (_, v) = t.show(&admin, &id);
    assert_eq!(
        (v["chunks"].as_i64(), v["events"].as_i64(), v["bytes"].as_i64()),
        (Some(1), Some(1), Some(200 * 1024)),
        "{v}"
    );
    let (st, _, cast) = t.s.http_raw("GET", &format!("/v1/recordings/{id}/cast"), Some(&admin), None, &[]);
    assert_eq!(st, 200);
    assert_eq!(cast.lines().count(), 2);
    // Other routes keep the 64 KiB limit.
    let padded = json!({ "grant_id": t.grant, "target": "db-1.internal", "login": "deploy", "kind": "shell",
                         "width": 80, "height": 24, "term": "x".repeat(100 * 1024) });
    assert_eq!(t.start_as(&admin, padded).0, 413);
}
