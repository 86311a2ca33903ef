//! The audit log is tamper-evident: `latch audit verify` passes on an
//! untouched store and names the first bad sequence number after each kind
//! of tampering. Tests edit the SQLite file directly, as an attacker with
//! database access would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Server, eventually};
use rusqlite::Connection;

const PW: &str = "correct horse battery";

/// A stopped server's data directory with ~20 events and a final checkpoint.
fn populated() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start_in(&data, &[]);
    s.cli(&["group", "create", "ops"]).ok();
    for name in ["u1", "u2", "u3"] {
        s.create_user(name, PW, &["ops"]);
        s.login(name, PW, None).unwrap();
        assert!(s.login(name, "wrong password", None).is_err());
    }
    s.cli(&["sp", "create", "ci"]).ok();
    assert_eq!(s.stop(), 0);
    (tmp, data)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn verify_dir(data: &Path) -> common::Out {
    let out = std::process::Command::new(BIN).args(["audit", "verify", "--data"]).arg(data).output().unwrap();
    common::Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Applies `sql` to a fresh copy of `data` and returns `audit verify` on it.
fn tampered(data: &Path, sql: &str) -> common::Out {
    let dir = tempfile::tempdir().unwrap().keep();
    let copy = dir.join("data");
    copy_dir(data, &copy);
    let conn = Connection::open(copy.join("latch.db")).unwrap();
    conn.execute_batch(sql).unwrap();
    drop(conn);
    let out = verify_dir(&copy);
    let _ = std::fs::remove_dir_all(dir);
    out
}

fn head(data: &Path) -> i64 {
    let conn = Connection::open(data.join("latch.db")).unwrap();
    conn.query_row("SELECT MAX(seq) FROM audit_events", [], |r| r.get(0)).unwrap()
}

const CONTENT: &str = "time, actor, action, target, outcome, request_id, source, details, hash";

#[test]
fn verify_passes_untouched_and_names_the_seq_of_each_tampering() {
    if common::on_postgres() {
        return; // `audit verify --data DIR` reads a SQLite file; the API test below covers PostgreSQL.
    }
    let (_tmp, data) = populated();
    let ok = verify_dir(&data).ok();
    assert!(ok.stdout.contains("audit chain OK"), "{}", ok.stdout);
    assert!(ok.stdout.contains("1 signed checkpoints verified"), "{}", ok.stdout);
    let last = head(&data);
    assert!(last > 15);

    // A row's content edited.
    let out = tampered(&data, "UPDATE audit_events SET target = 'user:mallory' WHERE seq = 7");
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("seq 7"), "{}", out.stderr);

    // The outcome of a failed login rewritten to success.
    let out = tampered(&data, "UPDATE audit_events SET outcome = 'success' WHERE outcome = 'failure'");
    assert_ne!(out.code, 0, "{}", out.stderr);

    // An outcome no code writes.
    let out = tampered(&data, "UPDATE audit_events SET outcome = 'bogus' WHERE seq = 9");
    assert!(out.code == 1 && out.stderr.contains("seq 9"), "{}", out.stderr);

    // A row deleted.
    let out = tampered(&data, "DELETE FROM audit_events WHERE seq = 5");
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("seq 5"), "{}", out.stderr);

    // Two rows swapped (contents exchanged, sequence numbers kept).
    let swap = format!(
        "CREATE TEMP TABLE a AS SELECT {CONTENT} FROM audit_events WHERE seq = 10;
         CREATE TEMP TABLE b AS SELECT {CONTENT} FROM audit_events WHERE seq = 11;
         UPDATE audit_events SET (time, actor, action, target, outcome, request_id, source, details, hash) =
             (SELECT {CONTENT} FROM b) WHERE seq = 10;
         UPDATE audit_events SET (time, actor, action, target, outcome, request_id, source, details, hash) =
             (SELECT {CONTENT} FROM a) WHERE seq = 11;"
    );
    let out = tampered(&data, &swap);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("seq 10"), "{}", out.stderr);

    // A row appended without the chain.
    let next = last + 1;
    let append = format!(
        "INSERT INTO audit_events (seq, {CONTENT}) SELECT {next}, time, actor, action, 'user:backdoor', outcome,
         request_id, source, details, hash FROM audit_events WHERE seq = {last}"
    );
    let out = tampered(&data, &append);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains(&format!("seq {next}")), "{}", out.stderr);

    // A row inserted in the middle (shifting later rows).
    let out = tampered(
        &data,
        &format!("UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 12; UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1012;
          INSERT INTO audit_events (seq, {CONTENT}) SELECT 12, time, actor, action, target, outcome, request_id, source, details, hash
          FROM audit_events WHERE seq = 11"),
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("seq 12"), "{}", out.stderr);

    // The tail cut off: the signed checkpoint still vouches for it.
    let out = tampered(&data, &format!("DELETE FROM audit_events WHERE seq = {last}"));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("truncated"), "{}", out.stderr);

    // A forged checkpoint (no key): its signature does not verify.
    let out = tampered(&data, "UPDATE audit_checkpoints SET hash = '00'");
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("invalid signature"), "{}", out.stderr);
}

#[test]
fn verify_through_the_api_detects_edits_made_under_a_running_server() {
    let s = Server::start();
    s.create_user("alice", PW, &[]);
    s.login("alice", PW, None).unwrap();
    let ok = s.cli(&["audit", "verify", "-o", "json"]).ok().json();
    assert!(ok["events"].as_u64().unwrap() >= 6);

    s.sql("UPDATE audit_events SET actor = 'user:nobody' WHERE action = 'user.create' AND target = 'user:alice'");
    let seq = &s.sql("SELECT seq FROM audit_events WHERE target = 'user:alice' AND action = 'user.create'")[0];
    let bad = s.cli(&["audit", "verify"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains(&format!("seq {seq}")), "{}", bad.stderr);
}

#[test]
fn audit_list_filters_and_tail() {
    let s = Server::start();
    s.create_user("alice", PW, &[]);
    s.create_user("bob", PW, &[]);
    let creates = s.cli(&["audit", "list", "--action", "user.create", "-o", "json"]).ok().json();
    let targets: Vec<_> = creates["events"].as_array().unwrap().iter().map(|e| e["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["user:admin", "user:alice", "user:bob"]);
    let by_admin = s.cli(&["audit", "list", "--actor", "user:admin", "-o", "json"]).ok().json();
    assert!(by_admin["events"].as_array().unwrap().iter().all(|e| e["actor"] == "user:admin"));
    let since = creates["events"][1]["seq"].as_i64().unwrap();
    let after = s.cli(&["audit", "list", "--since", &since.to_string(), "-o", "json"]).ok().json();
    assert!(after["events"].as_array().unwrap().iter().all(|e| e["seq"].as_i64().unwrap() > since));
    let tail = s.cli(&["audit", "tail"]).ok().stdout;
    assert!(tail.contains("user.create") && tail.contains("user:bob"), "{tail}");
    // Every event carries the fields the contract names.
    for e in by_admin["events"].as_array().unwrap() {
        for k in ["seq", "time", "actor", "action", "target", "outcome", "request_id", "source", "details", "hash"] {
            assert!(e.get(k).is_some(), "{k} missing in {e}");
        }
    }
}

#[test]
fn audit_tail_follow_prints_events_as_they_are_appended() {
    let s = Server::start();
    let mut child = Command::new(BIN)
        .args(["audit", "tail", "-f"])
        .env("LATCH_ADDR", &s.addr)
        .env("LATCH_TOKEN", &s.token)
        .env_remove("LATCH_CACERT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let next_line = |what: &str| match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(line) => line,
        Err(e) => panic!("no {what} from `latch audit tail -f` ({e})"),
    };
    // The recent history first: from here on, new lines come from following.
    let first = next_line("history");
    assert!(!first.contains("user:zoe"), "{first}");
    s.create_user("zoe", PW, &[]);
    loop {
        let line = next_line("line for zoe's creation");
        if line.contains("user.create") && line.contains("user:zoe") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn checkpoints_are_written_periodically_while_the_server_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_in(&tmp.path().join("data"), &["--checkpoint-interval", "1s"]);
    let head = || s.http("GET", "/v1/sys/health", None, None).1["audit_head_seq"].as_i64().unwrap();
    let covered = |seq: i64| {
        let (status, body) = s.http("GET", "/v1/audit/checkpoints", Some(&s.token), None);
        assert_eq!(status, 200, "{body}");
        body["checkpoints"].as_array().unwrap().iter().any(|c| c["seq"].as_i64().unwrap() >= seq)
    };
    s.create_user("alice", PW, &[]);
    let first = head();
    eventually("a checkpoint over alice's creation", || covered(first));
    s.create_user("bob", PW, &[]);
    let second = head();
    assert!(second > first);
    eventually("a checkpoint over bob's creation", || covered(second));
    let report = s.cli(&["audit", "verify", "-o", "json"]).ok().json();
    assert!(report["checkpoints"].as_u64().unwrap() >= 2, "{report}");
}
