//! The recording SSH gateway, end to end with real parts: the `latch`
//! server, `latch gateway` signed in as a service principal of the
//! `ssh-gateways` group, a stock OpenSSH `sshd` trusting latch's CA as the
//! target, the stock `ssh` client (under a real pseudo-terminal for the
//! interactive session), and `asciinema` checking the exported recording.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::sshd::{LOGIN, Sshd};
use common::{BIN, Server, asciinema_cat, eventually};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

const OPS: &str = r#"name = "ops-ssh"
max_duration = "2h"
default_duration = "1h"
[approval]
required = 0
[credentials.ssh]
principals = ["latchssh"]
hosts = ["127.0.0.1"]
record_input = true
"#;

const TUNNEL: &str = r#"name = "tunnel"
max_duration = "1h"
[approval]
required = 0
[credentials.ssh]
principals = ["latchssh"]
hosts = ["127.0.0.1"]
extensions = ["permit-pty", "permit-port-forwarding"]
"#;

const DB: &str = r#"name = "db-ssh"
max_duration = "1h"
[approval]
required = 0
[credentials.ssh]
principals = ["latchssh"]
hosts = ["db-*.internal"]
"#;

const POLICIES: &str = r#"@id("eng-ssh")
permit(principal in Group::"eng", action in [Action::"request", Action::"activate"], resource);
"#;

struct Gateway {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // F5: no secret the harness saw (the gateway's client secret among them) is in its log.
        if !std::thread::panicking() {
            common::secrets::assert_clean("the gateway log", &self.log());
        }
    }
}

impl Gateway {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

struct Setup {
    s: Server,
    alice: String,
    dir: tempfile::TempDir,
    sshd: Sshd,
    gw: Gateway,
    spool: PathBuf,
}

impl Setup {
    fn start() -> Setup {
        let s = Server::start();
        s.cli(&["group", "create", "eng"]).ok();
        s.cli(&["group", "create", "ssh-gateways"]).ok();
        s.create_user("alice", PW, &["eng"]);
        let dir = tempfile::tempdir().unwrap();
        s.apply_bundle(&[
            ("roles/ops-ssh.toml", OPS),
            ("roles/tunnel.toml", TUNNEL),
            ("roles/db-ssh.toml", DB),
            ("policies/main.cedar", POLICIES),
        ]);
        let alice = s.login("alice", PW, None).unwrap();
        let ca_pub = dir.path().join("ca.pub");
        std::fs::write(&ca_pub, s.cli(&["ssh", "ca"]).ok().stdout).unwrap();
        let krl = dir.path().join("krl.bin");
        s.cli(&["ssh", "krl", "--out", krl.to_str().unwrap()]).ok();
        let sshd = Sshd::start(dir.path(), &ca_pub, &krl);
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, sshd.known_hosts_line()).unwrap();
        let creds = s.cli(&["sp", "create", "gw-1", "--group", "ssh-gateways", "-o", "json"]).ok().json();
        let secret = dir.path().join("gw.secret");
        std::fs::write(&secret, creds["client_secret"].as_str().unwrap()).unwrap();
        let spool = dir.path().join("spool");
        let gw =
            start_gateway(&s.addr, dir.path(), creds["client_id"].as_str().unwrap(), &secret, &known_hosts, &spool);
        Setup { s, alice, dir, sshd, gw, spool }
    }

    fn grant(&self, role: &str) -> String {
        let out = self.s.cli_as(&self.alice, &["request", role, "--for", "1h", "--reason", "work", "-o", "json"], None);
        out.ok().json()["grant"]["id"].as_str().unwrap().to_string()
    }

    /// Alice's key with a certificate for `grant`.
    fn key(&self, grant: &str, name: &str) -> PathBuf {
        let key = self.dir.path().join(name);
        self.s.cli_as(&self.alice, &["ssh", "login", "--grant", grant, "--key", key.to_str().unwrap()], None).ok();
        key
    }

    /// The `ssh` command through the gateway to the sshd as `login`.
    fn ssh(&self, key: &Path, login: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-F", "/dev/null", "-p", &self.gw.port.to_string()])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes"])
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
            .arg("-i")
            .arg(key)
            .args(["-o", &format!("CertificateFile={}-cert.pub", key.display())])
            .args(["-l", &format!("{login}@127.0.0.1:{}", self.sshd.port)])
            .arg("127.0.0.1");
        c
    }

    fn exec(&self, key: &Path, command: &str) -> Output {
        self.ssh(key, LOGIN).arg(command).stdin(Stdio::null()).output().unwrap()
    }

    fn recordings(&self) -> Vec<Value> {
        self.s.cli(&["sessions", "-o", "json"]).ok().json()["recordings"].as_array().unwrap().clone()
    }

    fn cast(&self, id: &str) -> String {
        self.s.cli(&["sessions", "export", id]).ok().stdout
    }

    /// Waits for the one recording of `grant` to be stored completely.
    fn ended_recording(&self, grant: &str) -> Value {
        let mut found = Value::Null;
        eventually("the recording is stored and ended", || {
            found = self
                .recordings()
                .into_iter()
                .find(|r| r["grant_id"] == grant && r["state"] == "ended")
                .unwrap_or(Value::Null);
            !found.is_null()
        });
        found
    }
}

fn start_gateway(addr: &str, dir: &Path, client_id: &str, secret: &Path, known_hosts: &Path, spool: &Path) -> Gateway {
    let log = dir.join("gateway.log");
    let mut child = Command::new(BIN)
        .args(["gateway", "--listen", "127.0.0.1:0", "--client-id", client_id])
        .arg("--client-secret-file")
        .arg(secret)
        .arg("--known-hosts")
        .arg(known_hosts)
        .arg("--spool")
        .arg(spool)
        .arg("--host-key")
        .arg(dir.join("gateway_host_ed25519"))
        .env("LATCH_ADDR", addr)
        .env_remove("LATCH_TOKEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut port = 0;
    for line in stdout.lines().map_while(Result::ok) {
        if let Some(a) = line.strip_prefix("LATCH_GATEWAY_ADDR=") {
            port = a.rsplit(':').next().unwrap().parse().unwrap();
            break;
        }
    }
    assert!(port > 0, "the gateway did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
    Gateway { child, port, log }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The data of the cast's events of one kind (`o` or `i`), concatenated.
fn events(cast: &str, kind: &str) -> String {
    cast.lines()
        .skip(1)
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e[1] == kind)
        .map(|e| e[2].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn bulk_output_arrives_byte_for_byte_and_is_recorded_whole() {
    // Megabytes in packets as large as the client allows (the gateway writes
    // whole buffers), across many recording chunks: nothing lost, reordered
    // or duplicated on the way to the user or into the recording.
    let t = Setup::start();
    let grant = t.grant("ops-ssh");
    let key = t.key(&grant, "alice_key");
    // stderr is 1000 letters E: told apart from stdout wherever the two interleave.
    let out = t.exec(&key, "seq 1 400000; printf 'E%.0s' $(seq 1000) >&2");
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), t.gw.log());
    let want: String = (1..=400_000).map(|i| format!("{i}\n")).collect();
    assert!(text(&out.stdout) == want, "{} bytes arrived of {}", out.stdout.len(), want.len());
    assert_eq!(text(&out.stderr), "E".repeat(1000));
    let rec = t.ended_recording(&grant);
    let recorded = events(&t.cast(rec["id"].as_str().unwrap()), "o");
    assert_eq!(recorded.matches('E').count(), 1000, "stderr recorded once");
    assert!(recorded.replace('E', "") == want, "stdout recorded whole and in order ({} bytes)", recorded.len());
    assert!(rec["chunks"].as_i64().unwrap() >= 3, "{rec}");
}

#[test]
fn exec_and_interactive_sessions_are_recorded_and_export_to_asciinema() {
    let t = Setup::start();
    let grant = t.grant("ops-ssh");
    let key = t.key(&grant, "alice_key");

    // An exec session: output and exit status come back through the gateway.
    let out = t.exec(&key, "echo gateway-$((6*7)); echo to-stderr >&2; exit 3");
    assert_eq!(out.status.code(), Some(3), "{out:?}\n{}", t.gw.log());
    assert!(t.gw.log().contains("authorized"));
    assert_eq!(text(&out.stdout).trim(), "gateway-42");
    assert!(text(&out.stderr).contains("to-stderr"));
    let rec = t.ended_recording(&grant);
    assert_eq!((rec["kind"].as_str(), rec["login"].as_str()), (Some("exec"), Some(LOGIN)));
    assert_eq!((rec["target"].as_str(), rec["user"].as_str()), (Some("127.0.0.1"), Some("alice")));
    assert_eq!(rec["recorded_by"], "service_principal:gw-1");
    let cast = t.cast(rec["id"].as_str().unwrap());
    assert!(events(&cast, "o").contains("gateway-42"), "{cast}");

    // An interactive shell under a real terminal of 100×30.
    let drive = |script: Value| {
        let mut ssh = t.ssh(&key, LOGIN);
        ssh.arg("-tt");
        let mut c = Command::new("python3");
        c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/pty_drive.py"))
            .args(["100", "30", &script.to_string(), "--"])
            .arg(ssh.get_program())
            .args(ssh.get_args());
        c.output().unwrap()
    };
    let out = drive(json!([
        ["expect", "$ "],
        ["send", "echo inter-$((7*6))\r"],
        ["expect", "inter-42"],
        ["send", "stty -echo; printf 'Pass''word: '; read pw; stty echo; echo; echo got-${#pw}\r"],
        ["expect", "Password: "],
        ["send", "hunter2secret\r"],
        ["expect", "got-13"],
        ["send", "exit\r"],
    ]));
    assert!(out.status.success(), "{}\n{}\n{}", text(&out.stdout), text(&out.stderr), t.gw.log());
    let mut shell = Value::Null;
    eventually("the shell's recording is stored", || {
        shell =
            t.recordings().into_iter().find(|r| r["kind"] == "shell" && r["state"] == "ended").unwrap_or(Value::Null);
        !shell.is_null()
    });
    assert_eq!((shell["width"].as_i64(), shell["height"].as_i64()), (Some(100), Some(30)), "the real terminal size");
    let id = shell["id"].as_str().unwrap();
    let cast = t.cast(id);
    let header: Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
    assert_eq!((header["version"].as_i64(), header["width"].as_i64()), (Some(2), Some(100)));
    assert!(events(&cast, "o").contains("inter-42"), "the command's output is recorded");
    assert!(events(&cast, "i").contains("echo inter-"), "the role records input too");
    assert!(
        !cast.contains("hunter2secret"),
        "a secret typed at a password prompt is never recorded:\n{cast}\n{}",
        t.gw.log()
    );
    let file = t.dir.path().join("shell.cast");
    std::fs::write(&file, &cast).unwrap();
    let cat = asciinema_cat(&file);
    assert!(cat.status.success(), "asciinema refused the export: {cat:?}");
    assert!(text(&cat.stdout).contains("inter-42"));

    // Linked to the audit log by the recording's id.
    let starts = t.s.audit("recording.start");
    assert!(starts.iter().any(|e| e["target"] == format!("recording:{id}") && e["details"]["grant_id"] == grant));
    let signed = t.s.audit("ssh.gateway.authorize");
    assert!(signed.len() >= 2 && signed.iter().all(|e| e["actor"] == "service_principal:gw-1"));
}

#[test]
fn revoking_the_grant_ends_a_live_session_within_a_second() {
    let t = Setup::start();
    let grant = t.grant("ops-ssh");
    let key = t.key(&grant, "alice_key");
    let mut ssh = t
        .ssh(&key, LOGIN)
        .arg("echo started; sleep 600")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(ssh.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
    assert_eq!(first.trim(), "started", "{}", t.gw.log());
    let active = t.s.cli(&["sessions", "--active", "-o", "json"]).ok().json();
    assert_eq!(active["recordings"].as_array().unwrap().len(), 1);

    let revoked_at = Instant::now();
    t.s.cli(&["revoke", &grant, "--reason", "incident"]).ok();
    let status = loop {
        if let Some(st) = ssh.try_wait().unwrap() {
            break st;
        }
        assert!(revoked_at.elapsed() < Duration::from_secs(10), "the session outlived its grant");
        std::thread::park_timeout(Duration::from_millis(5));
    };
    let took = revoked_at.elapsed();
    assert!(took < Duration::from_secs(1), "ended {took:?} after the revocation, not within 1 s");
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(ssh.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("revoked"), "the user is told why: {err}");
    t.ended_recording(&grant);
    // And the certificate no longer opens a session.
    let out = t.exec(&key, "true");
    assert_eq!(out.status.code(), Some(255));
}

#[test]
fn refusals_are_audited_and_forwarding_follows_the_role() {
    let t = Setup::start();
    // A grant whose role reaches other hosts only.
    let db = t.grant("db-ssh");
    let db_key = t.key(&db, "db_key");
    let out = t.exec(&db_key, "echo should-not-run");
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(!text(&out.stdout).contains("should-not-run"));
    let refusals = t.s.audit("ssh.gateway.refuse");
    let r = refusals.last().expect("the refusal is audited");
    assert_eq!(r["outcome"], "denied");
    assert_eq!(r["actor"], "service_principal:gw-1");
    assert!(r["details"]["reason"].as_str().unwrap().contains("does not reach host 127.0.0.1"), "{r}");
    assert!(t.recordings().is_empty(), "nothing ran, nothing recorded");

    // A login the certificate does not carry.
    let ops = t.grant("ops-ssh");
    let ops_key = t.key(&ops, "ops_key");
    let out = t.ssh(&ops_key, "root").arg("true").stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(255));
    let r = t.s.audit("ssh.gateway.refuse");
    assert!(r.last().unwrap()["details"]["reason"].as_str().unwrap().contains("login \"root\""), "{r:?}");

    // Port forwarding: refused for ops-ssh, allowed for tunnel (-W reaches sshd's banner).
    let forward = |key: &Path| {
        let mut c = t.ssh(key, LOGIN);
        c.args(["-W", &format!("127.0.0.1:{}", t.sshd.port)]).stdin(Stdio::null()).output().unwrap()
    };
    let out = forward(&ops_key);
    assert!(!text(&out.stdout).contains("SSH-2.0-OpenSSH"), "{out:?}");
    let tunnel = t.grant("tunnel");
    let tunnel_key = t.key(&tunnel, "tunnel_key");
    let out = forward(&tunnel_key);
    assert!(text(&out.stdout).starts_with("SSH-2.0-OpenSSH"), "{out:?}\n{}", t.gw.log());

    // A user without any grant has no certificate: a plain key is refused.
    let plain = t.dir.path().join("plain");
    let keygen = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&plain).output().unwrap();
    assert!(keygen.status.success());
    let out = t.exec(&plain, "true");
    assert_eq!(out.status.code(), Some(255));
}

#[test]
fn recordings_wait_in_the_spool_while_the_server_is_down_and_arrive_after() {
    let mut t = Setup::start();
    let grant = t.grant("ops-ssh");
    let key = t.key(&grant, "alice_key");
    let mut ssh = t
        .ssh(&key, LOGIN)
        .arg("echo started; read x; echo after-$x")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(ssh.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "started", "{}", t.gw.log());

    // The server goes away mid-session; the session goes on, recorded to disk.
    let addr = t.s.addr.clone();
    let data = t.s.data.clone();
    t.s.stop();
    let mut stdin = ssh.stdin.take().unwrap();
    stdin.write_all(b"outage\n").unwrap();
    drop(stdin);
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "after-outage");
    assert!(ssh.wait().unwrap().success());
    eventually("the gateway reports the failed upload", || t.gw.log().contains("kept in the spool"));
    let spooled: usize =
        std::fs::read_dir(&t.spool).unwrap().map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count()).sum();
    assert!(spooled >= 1, "chunks wait in the spool");

    // Back on the same address: the spool drains, the recording is whole.
    let listen = addr.trim_start_matches("http://").to_string();
    t.s = Server::start_in(&data, &["--listen", &listen]);
    let rec = t.ended_recording(&grant);
    let cast = t.cast(rec["id"].as_str().unwrap());
    let out = events(&cast, "o");
    assert!(out.contains("started") && out.contains("after-outage"), "{cast}");
    eventually("the spool is empty", || std::fs::read_dir(&t.spool).unwrap().count() == 0);
}

#[test]
fn a_session_that_cannot_be_recorded_is_refused() {
    let t = Setup::start();
    let grant = t.grant("ops-ssh");
    let key = t.key(&grant, "alice_key");
    // The spool is gone and a file stands in its way: nothing can be recorded.
    std::fs::remove_dir_all(&t.spool).unwrap();
    std::fs::write(&t.spool, b"not a directory").unwrap();
    let out = t.exec(&key, "echo should-not-run");
    assert_eq!(out.status.code(), Some(254), "{out:?}");
    assert!(!text(&out.stdout).contains("should-not-run"));
    assert!(text(&out.stderr).contains("cannot be recorded"), "{out:?}");
}
