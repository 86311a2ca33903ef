//! The server's life: clean shutdown with a final checkpoint, restarts that
//! keep state, `--config` with TLS, configuration errors caught before start,
//! and no secret in the logs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{BIN, Server, run_cli};
use rusqlite::Connection;

const PW: &str = "correct horse battery";

fn max_seq(db: &Path, table: &str) -> i64 {
    let conn = Connection::open(db).unwrap();
    conn.query_row(&format!("SELECT COALESCE(MAX(seq), 0) FROM {table}"), [], |r| r.get(0)).unwrap()
}

fn verify(data: &Path) -> common::Out {
    let out = Command::new(BIN).args(["audit", "verify", "--data"]).arg(data).output().unwrap();
    common::Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn sigterm_drains_and_seals_the_log_and_restarts_keep_state() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start_in(&data, &[]);
    s.create_user("alice", PW, &["admins"]);
    let alice = s.login("alice", PW, None).unwrap();
    let first_token = s.token.clone();
    assert_eq!(s.stop(), 0, "SIGTERM is a clean exit");
    let db = data.join("latch.db");
    assert_eq!(
        max_seq(&db, "audit_checkpoints"),
        max_seq(&db, "audit_events"),
        "the final checkpoint covers the last event"
    );
    let conn = Connection::open(&db).unwrap();
    let last: String =
        conn.query_row("SELECT action FROM audit_events ORDER BY seq DESC LIMIT 1", [], |r| r.get(0)).unwrap();
    assert_eq!(last, "system.stop");
    drop(conn);
    assert!(verify(&data).ok().stdout.contains("audit chain OK"));

    // Restart: users and sessions survive; the chain continues and verifies.
    let mut s = Server::start_in(&data, &[]);
    assert_ne!(s.token, first_token, "dev mode mints a fresh bootstrap token");
    assert_eq!(s.cli_as(&alice, &["whoami", "-o", "json"], None).ok().json()["name"], "alice");
    assert_eq!(s.audit("system.start").len(), 2);
    s.cli(&["audit", "verify"]).ok();
    // SIGINT is as clean as SIGTERM.
    let child_pid = s.pid();
    Command::new("kill").args(["-INT", &child_pid.to_string()]).status().unwrap();
    assert_eq!(s.wait(), 0);
    assert_eq!(max_seq(&db, "audit_checkpoints"), max_seq(&db, "audit_events"));
    verify(&data).ok();
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `latch server --config FILE`; returns the process and the lines it
/// printed up to LATCH_ADDR (and LATCH_TOKEN if it printed one right after).
fn start_config(config: &Path, log: &Path) -> (Proc, String, Option<String>) {
    let mut child = Command::new(BIN)
        .args(["server", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let addr =
        line.trim().strip_prefix("LATCH_ADDR=").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_string();
    // The token line, if any, is written together with the address.
    let mut rest = String::new();
    let proc = Proc(child);
    std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            let mut l = String::new();
            let _ = reader.read_line(&mut l);
            l
        });
        // Ask the server something; by then both lines were flushed.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while !h.is_finished() && std::time::Instant::now() < deadline {
            std::thread::park_timeout(std::time::Duration::from_millis(20));
        }
        if h.is_finished() {
            rest = h.join().unwrap();
        } else {
            // No second line: the server printed only its address.
            let _ = Command::new("kill").args(["-TERM", &proc.0.id().to_string()]).status();
            rest = h.join().unwrap();
        }
    });
    let token = rest.trim().strip_prefix("LATCH_TOKEN=").map(str::to_string);
    (proc, addr, token)
}

#[test]
fn config_with_tls_serves_https_and_prints_the_bootstrap_token_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth", "-keyout"])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl failed");
    let config = dir.join("latch.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nlog_level = \"info\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.join("data").display(),
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        ),
    )
    .unwrap();
    let log = dir.join("server.log");
    let (proc, addr, token) = start_config(&config, &log);
    assert!(addr.starts_with("https://127.0.0.1:"), "{addr}");
    let token = token.expect("the first start prints a bootstrap token");
    let cli = |ca: Option<&Path>, args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args).env("LATCH_ADDR", &addr).env("LATCH_TOKEN", &token).env_remove("LATCH_CACERT");
        if let Some(ca) = ca {
            c.env("LATCH_CACERT", ca);
        }
        c.output().unwrap()
    };
    let ok = cli(Some(&dir.join("cert.pem")), &["whoami", "-o", "json"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let untrusted = cli(None, &["whoami"]);
    assert_eq!(untrusted.status.code(), Some(1), "an untrusted certificate is refused");
    // Logs are JSON lines carrying the request id.
    let mut text = String::new();
    std::fs::File::open(&log).unwrap().read_to_string(&mut text).unwrap();
    assert!(
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| v["request_id"].is_string()),
        "{text}"
    );
    let _ = Command::new("kill").args(["-TERM", &proc.0.id().to_string()]).status();
    drop(proc);
    // Second start on the same data: no token is printed.
    let (proc2, addr2, token2) = start_config(&config, &log);
    assert!(addr2.starts_with("https://"));
    assert_eq!(token2, None, "the bootstrap token is printed only on the first start");
    drop(proc2);
}

fn expect_config_error(toml: &str, needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("latch.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(BIN).args(["server", "--config"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{stderr:?} lacks {n:?}");
    }
}

#[test]
fn configuration_errors_are_caught_before_starting() {
    expect_config_error(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"/tmp/x\"\nlog_levle = \"info\"\n",
        &["line 3", "log_levle"],
    );
    expect_config_error(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"/tmp/x\"\n[auth]\nsession_ttl = \"8x\"\n",
        &["[auth] session_ttl", "unknown unit"],
    );
    expect_config_error("listen = \"0.0.0.0:0\"\ndata_dir = \"/tmp/x\"\n", &["not a loopback address", "[tls]"]);
    expect_config_error(
        "listen = \"0.0.0.0:0\"\ndata_dir = \"/tmp/x\"\n[tls]\ncert = \"/nonexistent.pem\"\nkey = \"/nonexistent.key\"\n",
        &["no such file"],
    );
    let out = Command::new(BIN).args(["server", "--dev", "--listen", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
    let out = Command::new(BIN).args(["server"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn no_secret_reaches_the_server_log() {
    let mut s = Server::start();
    s.create_user("alice", PW, &[]);
    let t = s.login("alice", PW, None).unwrap();
    assert!(s.login("alice", "the wrong password", None).is_err());
    let sp = s.cli(&["sp", "create", "ci", "-o", "json"]).ok().json();
    let secret = sp["client_secret"].as_str().unwrap().to_string();
    let spt = run_cli(
        &s.addr,
        "",
        &["login", "--sp", sp["client_id"].as_str().unwrap(), "--password-stdin", "-o", "json"],
        Some(&secret),
    )
    .ok()
    .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let bootstrap = s.token.clone();
    s.stop();
    let log = s.server_log();
    assert!(log.contains("request"), "the log has request lines: {log}");
    for needle in [PW, "the wrong password", t.as_str(), secret.as_str(), spt.as_str(), bootstrap.as_str()] {
        assert!(!log.contains(needle), "a secret reached the server log");
    }
}
