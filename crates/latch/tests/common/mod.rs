//! Black-box test harness: starts the real `latch` binary as a dev server on a
//! free loopback port in a throwaway data directory, drives it through the CLI
//! and HTTP, and stops it. Time moves through the server's test clock, never
//! by sleeping.
//!
//! The same tests run against both storage backends: with
//! `LATCH_TEST_BACKEND=postgres` every server keeps its state in its own
//! database of a real PostgreSQL cluster started for the test process
//! (`pg.rs`); otherwise in SQLite in its data directory.
#![allow(dead_code)]

pub mod oidc;
pub mod pg;
pub mod secrets;
pub mod sshd;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_latch");

/// Whether this run tests the PostgreSQL backend.
pub fn on_postgres() -> bool {
    std::env::var("LATCH_TEST_BACKEND").is_ok_and(|v| v == "postgres")
}

pub struct Server {
    child: Option<Child>,
    pub addr: String,
    pub token: String,
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub log: PathBuf,
    /// The PostgreSQL database of this server, on the PostgreSQL backend.
    pub pgdb: Option<String>,
}

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed: stdout={} stderr={}", self.stdout, self.stderr);
        self
    }
}

impl Server {
    /// A dev server with the test clock enabled, in a fresh data directory.
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut s = Server::start_in(&data, &[]);
        s._tmp = Some(tmp);
        s
    }

    /// A dev server on an existing data directory (restarts keep state).
    pub fn start_in(data: &Path, extra: &[&str]) -> Server {
        let pgdb = on_postgres().then(|| {
            std::fs::create_dir_all(data.parent().unwrap()).unwrap();
            pg::cluster().db_for(data)
        });
        Server::launch(data, pgdb, extra)
    }

    /// One node of several sharing PostgreSQL database `db`.
    pub fn start_node(data: &Path, db: &str, extra: &[&str]) -> Server {
        Server::launch(data, Some(db.to_string()), extra)
    }

    fn launch(data: &Path, pgdb: Option<String>, extra: &[&str]) -> Server {
        let log = data.with_extension(format!("log.{}", std::process::id()));
        let log = unique(&log);
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["server", "--dev", "--test-clock", "--data"]).arg(data);
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(extra).env_remove("LATCH_STORAGE");
        if let Some(db) = &pgdb {
            cmd.args(["--storage", &pg::cluster().dsn(db)]);
        }
        cmd.env("LATCH_LOG", "info").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(logf);
        let mut child = cmd.spawn().expect("spawn latch server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut addr, mut token) = (String::new(), String::new());
        let deadline = Instant::now() + Duration::from_secs(60);
        while addr.is_empty() || token.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(v) = line.strip_prefix("LATCH_ADDR=") {
                        addr = v.to_string();
                    } else if let Some(v) = line.strip_prefix("LATCH_TOKEN=") {
                        token = v.to_string();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("server did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
                }
            }
        }
        secrets::note(&token);
        Server { child: Some(child), addr, token, data: data.to_path_buf(), _tmp: None, log, pgdb }
    }

    /// Runs SQL on this server's database behind its back, as an attacker
    /// with database access (or a test) would; returns the rows, fields
    /// joined by `|`.
    pub fn sql(&self, sql: &str) -> Vec<String> {
        match &self.pgdb {
            Some(db) => pg::cluster().psql(db, sql),
            None => {
                let conn = rusqlite::Connection::open(self.db()).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                if !sql.trim_start().to_ascii_uppercase().starts_with("SELECT") {
                    conn.execute_batch(sql).unwrap();
                    return Vec::new();
                }
                let mut st = conn.prepare(sql).unwrap();
                let n = st.column_count();
                st.query_map([], |r| {
                    Ok((0..n)
                        .map(|i| match r.get_ref(i).unwrap() {
                            rusqlite::types::ValueRef::Null => String::new(),
                            rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                            rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                            other => format!("{other:?}"),
                        })
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
            }
        }
    }

    pub fn db(&self) -> PathBuf {
        self.data.join("latch.db")
    }

    /// Runs `latch ARGS` as the bootstrap admin.
    pub fn cli(&self, args: &[&str]) -> Out {
        self.cli_as(&self.token, args, None)
    }

    /// Runs `latch ARGS` with `token` and optional stdin.
    pub fn cli_as(&self, token: &str, args: &[&str], stdin: Option<&str>) -> Out {
        run_cli(&self.addr, token, args, stdin)
    }

    /// Applies a policy bundle of `files` (`("roles/ops.toml", text)`,
    /// `("policies/main.cedar", text)`, …) with `latch apply`, as the
    /// bootstrap admin; returns what apply printed (`-o json`).
    pub fn apply_bundle(&self, files: &[(&str, &str)]) -> Value {
        let dir = tempfile::tempdir().unwrap();
        write_bundle(dir.path(), files);
        self.cli(&["apply", dir.path().to_str().unwrap(), "-o", "json"]).ok().json()
    }

    /// A user with a password, in the given groups; returns nothing.
    pub fn create_user(&self, name: &str, password: &str, groups: &[&str]) {
        let mut args = vec!["user", "create", name, "--password-stdin"];
        for g in groups {
            args.push("--group");
            args.push(g);
        }
        self.cli_as(&self.token, &args, Some(password)).ok();
    }

    /// Logs in with a password (and optional TOTP code); returns the token.
    pub fn login(&self, user: &str, password: &str, totp: Option<&str>) -> Result<String, Out> {
        let mut args = vec!["login", "--user", user, "--password-stdin", "-o", "json"];
        if let Some(code) = totp {
            args.push("--totp");
            args.push(code);
        }
        let out = run_cli(&self.addr, "", &args, Some(password));
        if out.code == 0 { Ok(out.json()["token"].as_str().unwrap().to_string()) } else { Err(out) }
    }

    /// Moves the server's clock forward.
    pub fn advance(&self, d: &str) {
        let (status, body) =
            self.http("POST", "/v1/sys/test/clock", Some(&self.token), Some(&serde_json::json!({ "advance": d })));
        assert_eq!(status, 200, "{body}");
    }

    /// One HTTP request; returns status and JSON body (Null when empty).
    pub fn http(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
        let raw = body.map(|b| b.to_string());
        let (status, _headers, text) = self.http_raw(method, path, token, raw.as_deref(), &[]);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// One HTTP request with a raw body and extra headers.
    pub fn http_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Vec<(String, String)>, String) {
        if let Some(b) = body {
            secrets::harvest_json(b, secrets::SENT_FIELDS);
        }
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        let mut req = ureq::http::Request::builder().method(method).uri(format!("{}{path}", self.addr));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if body.is_some() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            req = req.header("Content-Type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = agent.run(req.body(body.unwrap_or("").as_bytes().to_vec()).unwrap()).unwrap();
        let status = resp.status().as_u16();
        let hs = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if status >= 400 {
            secrets::assert_clean(&format!("the error body of {method} {path} ({status})"), &text);
        } else {
            secrets::harvest(&text);
        }
        (status, hs, text)
    }

    /// Audit events (as JSON) matching an action.
    pub fn audit(&self, action: &str) -> Vec<Value> {
        let out = self.cli(&["audit", "list", "--action", action, "-o", "json"]).ok();
        out.json()["events"].as_array().unwrap().clone()
    }

    /// SIGTERM, then wait; returns the exit code.
    pub fn stop(&mut self) -> i32 {
        let Some(mut child) = self.child.take() else { return -1 };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not stop within 30 s of SIGTERM");
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the server to exit (after a signal sent by the test).
    pub fn wait(&mut self) -> i32 {
        let Some(mut child) = self.child.take() else { return -1 };
        child.wait().unwrap().code().unwrap_or(-1)
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // F5: no secret the harness saw in this process is in the server's
        // log or its audit events. Skipped while a test is already failing.
        if !std::thread::panicking() {
            if let Some(hint) = secrets::find(&self.server_log()) {
                panic!("F5: a secret ({hint}) reached the server log, kept at {}", self.log.display());
            }
            if let Some(hint) = self.audit_text().and_then(|t| secrets::find(&t)) {
                let _ = std::fs::remove_file(&self.log);
                panic!("F5: a secret ({hint}) reached the audit events of the server in {}", self.data.display());
            }
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Server {
    /// Every audit event's fields as text, read from the database behind
    /// the server's back (works after it stopped or was killed); `None` when
    /// the database cannot be read (gone, or PostgreSQL down).
    fn audit_text(&self) -> Option<String> {
        const SQL: &str = "SELECT actor, action, target, outcome, request_id, source, details FROM audit_events";
        match &self.pgdb {
            Some(db) => pg::cluster().try_psql(db, SQL).map(|rows| rows.join("\n")),
            None => {
                let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = rusqlite::Connection::open_with_flags(self.db(), flags).ok()?;
                conn.busy_timeout(Duration::from_secs(10)).ok()?;
                let mut st = conn.prepare(SQL).ok()?;
                let mut rows = st.query([]).ok()?;
                let mut text = String::new();
                while let Some(r) = rows.next().ok()? {
                    for i in 0..7 {
                        text.push_str(&r.get::<_, String>(i).ok()?);
                        text.push('\n');
                    }
                }
                Some(text)
            }
        }
    }
}

fn unique(p: &Path) -> PathBuf {
    let mut n = 0;
    loop {
        let cand = PathBuf::from(format!("{}.{n}", p.display()));
        if !cand.exists() {
            return cand;
        }
        n += 1;
    }
}

/// Polls until `f` holds or 10 s pass, for work the server does on wall time
/// (background jobs); never a fixed sleep.
/// Writes a policy bundle: each `(relative path, text)` of `files` under `dir`.
pub fn write_bundle(dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

pub fn eventually(what: &str, f: impl FnMut() -> bool) {
    eventually_within(what, Duration::from_secs(10), f);
}

/// [`eventually`] with its own limit.
pub fn eventually_within(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// Copies a node's key files to another node's data directory, as an
/// operator does for nodes sharing one database (like TLS keys).
pub fn copy_keys(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let dst = to.join("keys");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(from.join("keys")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

pub fn run_cli(addr: &str, token: &str, args: &[&str], stdin: Option<&str>) -> Out {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("LATCH_ADDR", addr)
        .env_remove("LATCH_CACERT")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if token.is_empty() {
        cmd.env_remove("LATCH_TOKEN");
    } else {
        cmd.env("LATCH_TOKEN", token);
    }
    let mut child = cmd.spawn().expect("spawn latch");
    if let Some(input) = stdin {
        if args.iter().any(|a| *a == "--password-stdin" || *a == "set-password") {
            secrets::note(input);
        }
        child.stdin.take().unwrap().write_all(format!("{input}\n").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let out = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    secrets::harvest(&out.stdout);
    secrets::assert_clean(&format!("the stderr of `latch {}`", args.join(" ")), &out.stderr);
    out
}

/// The current TOTP code for a base32 secret at the server's clock `now_ms`.
pub fn totp_at(secret: &str, now_ms: i64) -> String {
    latch_crypto::totp::code_at(secret, latch_crypto::totp::step_at(now_ms / 1000)).unwrap()
}

/// The secret from an otpauth:// URI.
pub fn secret_from_uri(uri: &str) -> String {
    uri.split("secret=").nth(1).unwrap().split('&').next().unwrap().to_string()
}

impl Server {
    /// The server's current time in ms (nudges its test clock forward by 1 s).
    pub fn now_ms(&self) -> i64 {
        let (status, body) =
            self.http("POST", "/v1/sys/test/clock", Some(&self.token), Some(&serde_json::json!({ "advance": "1s" })));
        assert_eq!(status, 200, "{body}");
        body["now_ms"].as_i64().unwrap()
    }
}

/// `asciinema` on PATH: installed with apt-get when missing and running as root.
pub fn asciinema() -> &'static str {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let present = || Command::new("sh").args(["-c", "command -v asciinema"]).output().unwrap().status.success();
        if present() {
            return;
        }
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        assert!(root, "asciinema is missing: apt-get install -y asciinema (or run ./scripts/test)");
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "asciinema"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .unwrap()
                .success()
        };
        if !install() {
            Command::new("apt-get").args(["update", "-qq"]).status().unwrap();
            assert!(install(), "apt-get install -y asciinema failed");
        }
        assert!(present(), "asciinema is still missing after apt-get install");
    });
    "asciinema"
}

/// `asciinema cat FILE` under a pseudo-terminal (asciinema 2.2 wants one).
pub fn asciinema_cat(file: &std::path::Path) -> std::process::Output {
    let cmd = format!("{} cat {}", asciinema(), file.display());
    Command::new("script").args(["-qec", &cmd, "/dev/null"]).stdin(std::process::Stdio::null()).output().unwrap()
}

/// A webhook receiver on loopback: answers the first `failures` posts with
/// HTTP 500 (not kept), then 200, keeping each accepted JSON body.
pub struct Webhook {
    pub url: String,
    /// Bodies accepted, in order.
    pub received: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    /// Every post, refused or not.
    pub posts: std::sync::Arc<std::sync::Mutex<usize>>,
}

pub fn webhook(failures: usize) -> Webhook {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let posts = Arc::new(Mutex::new(0usize));
    let (sink, seen) = (received.clone(), posts.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let (sink, seen) = (sink.clone(), seen.clone());
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
                    let n = {
                        let mut n = seen.lock().unwrap();
                        *n += 1;
                        *n
                    };
                    if n <= failures {
                        conn.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n").unwrap();
                        continue;
                    }
                    sink.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                    conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").unwrap();
                }
            });
        }
    });
    Webhook { url, received, posts }
}
