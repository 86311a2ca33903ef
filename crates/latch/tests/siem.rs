//! Continuous audit export to a SIEM, with real receivers: `rsyslog` taking
//! RFC 5424 over TCP (octet-counted) and UDP, a strict RFC 5424 parser
//! (Python `syslog-rfc5424-parser`), and a JSON-lines file. The server is
//! killed with SIGKILL mid-export: the receivers still end with every event,
//! exactly once after de-duplication by sequence number, and the chain
//! verifies from the exported stream alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Server, eventually_within};
use serde_json::Value;

struct Rsyslog {
    child: Child,
    tcp: u16,
    udp: u16,
    raw: PathBuf,
    fields: PathBuf,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn need(tool: &str, package: &str) {
    let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap().status.success();
    assert!(found, "{tool} is missing: apt-get install -y {package} (./scripts/test installs it)");
}

impl Rsyslog {
    /// rsyslogd in the foreground with only our inputs: TCP and UDP on
    /// loopback, every message written raw to one file and as parsed
    /// RFC 5424 fields to another.
    fn start(dir: &Path) -> Rsyslog {
        need("rsyslogd", "rsyslog");
        let (tcp, udp) = (free_port(), free_port());
        let raw = dir.join("raw.log");
        let fields = dir.join("fields.log");
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).unwrap();
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}")
module(load="imtcp")
module(load="imudp")
template(name="raw" type="string" string="%rawmsg%\n")
template(name="fields" type="string" string="%pri%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
ruleset(name="latch") {{
  action(type="omfile" file="{raw}" template="raw")
  action(type="omfile" file="{fields}" template="fields")
}}
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="latch")
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="latch")
"#,
                work = work.display(),
                raw = raw.display(),
                fields = fields.display(),
            ),
        )
        .unwrap();
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("rsyslog.err")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", tcp)).is_err() {
            assert!(Instant::now() < deadline, "rsyslogd did not start");
            std::thread::park_timeout(Duration::from_millis(20));
        }
        Rsyslog { child, tcp, udp, raw, fields }
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// `seq` → how many times it arrived, from JSON records found in `text`
/// (one per line, possibly behind a syslog header).
fn seqs(text: &str) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let Some(start) = line.find("{\"") else { continue };
        let v: Value = serde_json::from_str(&line[start..]).unwrap();
        *m.entry(v["seq"].as_i64().unwrap()).or_default() += 1;
    }
    m
}

fn head(s: &Server) -> i64 {
    let out = s.cli(&["audit", "list", "--since", "0", "--limit", "100000", "-o", "json"]).ok().json();
    out["events"].as_array().unwrap().last().unwrap()["seq"].as_i64().unwrap()
}

/// Checks syslog lines with the strict parser; returns how many it accepted.
fn strict_parse(lines: &str) -> usize {
    let script = r#"
import sys
from syslog_rfc5424_parser import SyslogMessage, ParseError
n = 0
for line in sys.stdin.read().splitlines():
    if not line.strip():
        continue
    m = SyslogMessage.parse(line)
    assert m.appname == "latch", m.appname
    assert "latch@32473" in m.sd and m.sd["latch@32473"]["seq"], m.sd
    n += 1
print(n)
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), lines.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the strict RFC 5424 parser refused a message (pip install syslog-rfc5424-parser): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn syslog_reaches_rsyslog_and_a_strict_parser_over_tcp_and_udp() {
    let dir = tempfile::tempdir().unwrap();
    let rs = Rsyslog::start(dir.path());
    let tcp = format!("syslog-tcp=127.0.0.1:{}", rs.tcp);
    let udp = format!("syslog-udp=127.0.0.1:{}", rs.udp);
    let s = Server::start_in(&dir.path().join("data"), &["--siem", &tcp, "--siem", &udp]);
    s.cli(&["group", "create", "eng"]).ok();
    let last = head(&s);
    eventually_within("every event reaches rsyslog twice (TCP and UDP)", Duration::from_secs(20), || {
        let got = seqs(&read(&rs.raw));
        (1..=last).all(|q| got.get(&q).copied().unwrap_or(0) >= 2)
    });
    // rsyslog parsed them as RFC 5424: facility authpriv, app latch, msgid the action, our SD element.
    let fields = read(&rs.fields);
    let group = fields.lines().find(|l| l.contains("|group.create|")).expect("group.create parsed");
    let parts: Vec<&str> = group.splitn(6, '|').collect();
    assert_eq!((parts[0], parts[1]), ("86", "latch"), "{group}");
    assert!(parts[4].starts_with("[latch@32473 seq=\""), "{group}");
    // The strict parser takes every message rsyslog received, and the one-off export's too.
    assert!(strict_parse(&read(&rs.raw)) >= 2 * last as usize);
    let exported = s.cli(&["audit", "export", "--format", "syslog"]).ok().stdout;
    assert_eq!(strict_parse(&exported), last as usize);
    // Failed deliveries are counted where monitoring sees them.
    let (_, _, metrics) = s.http_raw("GET", "/metrics", Some(&s.token), None, &[]);
    assert!(metrics.contains("latch_siem_batches_total{sink=\"syslog-tcp\",result=\"delivered\"}"), "{metrics}");
}

#[test]
fn killed_mid_export_the_receivers_end_with_every_event_once_and_the_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let rs = Rsyslog::start(dir.path());
    let file = dir.path().join("export/audit.jsonl");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let sinks = [format!("jsonl={}", file.display()), format!("syslog-tcp=127.0.0.1:{}", rs.tcp)];
    let extra: Vec<&str> = sinks.iter().flat_map(|s| ["--siem", s.as_str()]).collect();
    let data = dir.path().join("data");
    let mut s = Server::start_in(&data, &extra);
    for round in 0..4 {
        // A burst of events, and the server killed while exporting it.
        for i in 0..40 {
            let _ = common::run_cli(&s.addr, &s.token, &["group", "create", &format!("g{round}x{i}")], None);
        }
        let killed = Command::new("kill").args(["-KILL", &s.pid().to_string()]).status().unwrap();
        assert!(killed.success());
        s.wait();
        s = Server::start_in(&data, &extra);
    }
    let last = head(&s);
    assert!(last > 160, "{last}");
    eventually_within("the export catches up after the last restart", Duration::from_secs(30), || {
        seqs(&read(&file)).keys().next_back() == Some(&last) && seqs(&read(&rs.raw)).keys().next_back() == Some(&last)
    });
    for (what, text) in [("the JSON-lines file", read(&file)), ("rsyslog", read(&rs.raw))] {
        let got = seqs(&text);
        let missing: Vec<i64> = (1..=last).filter(|q| !got.contains_key(q)).collect();
        assert!(missing.is_empty(), "{what} lacks {missing:?}");
        assert_eq!(got.len() as i64, last, "{what}: exactly the log's events after de-duplication");
    }
    // The chain, checked from the exported file alone (no server).
    let out = Command::new(BIN).args(["audit", "verify", "--export"]).arg(&file).args(["-o", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["records"].as_i64(), v["from_genesis"].as_bool()), (Some(last), Some(true)), "{v}");
    // And the same records as rsyslog received them (JSON after the syslog header).
    let records: String =
        read(&rs.raw).lines().filter_map(|l| l.find("{\"").map(|i| format!("{}\n", &l[i..]))).collect();
    let from_syslog = dir.path().join("from-syslog.jsonl");
    std::fs::write(&from_syslog, records).unwrap();
    let out = Command::new(BIN).args(["audit", "verify", "--export"]).arg(&from_syslog).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // An edited record is caught, naming its seq.
    let text = read(&file);
    let tampered = text.replacen("\"group.create\"", "\"group.delete\"", 1);
    std::fs::write(&file, tampered).unwrap();
    let out = Command::new(BIN).args(["audit", "verify", "--export"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("seq "), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn one_off_exports_in_every_format() {
    let s = Server::start();
    s.cli(&["group", "create", "eng"]).ok();
    let last = head(&s);
    let jsonl = s.cli(&["audit", "export", "--format", "jsonl"]).ok().stdout;
    assert_eq!(jsonl.lines().count() as i64, last);
    let ocsf = s.cli(&["audit", "export", "--format", "ocsf", "--since", "1"]).ok().stdout;
    let first: Value = serde_json::from_str(ocsf.lines().next().unwrap()).unwrap();
    assert_eq!(first["metadata"]["product"]["name"], "latch");
    assert_eq!(first["unmapped"]["latch"]["seq"], 2);
    assert!(first["class_uid"].as_i64().is_some() && first["type_uid"].as_i64().is_some());
    // An export from the middle still verifies (it carries the hash it chains to).
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tail.ocsf");
    std::fs::write(&f, &ocsf).unwrap();
    let out = Command::new(BIN).args(["audit", "verify", "--export"]).arg(&f).args(["-o", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["first_seq"].as_i64(), v["from_genesis"].as_bool()), (Some(2), Some(false)));
    // Bad sink specifications stop the server before it starts, saying what to write.
    let out =
        Command::new(BIN).args(["server", "--dev", "--listen", "127.0.0.1:0", "--siem", "kafka=x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown kind"));
}
