//! Losing the database: nodes fail closed (privileged operations refused
//! with a clear error, health degraded), recover on their own when it
//! returns, and lose nothing they acknowledged. Three nodes, one of them
//! started from a configuration file. A test binary of its own, because it
//! stops its PostgreSQL cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Server, copy_keys, eventually_within, pg};
use serde_json::json;

const PW: &str = "correct horse battery";

/// `latch server --config FILE` (no bootstrap token: the store is not empty).
struct ConfigNode {
    child: std::process::Child,
    addr: String,
}

impl ConfigNode {
    fn start(config: &Path) -> ConfigNode {
        use std::io::BufRead;
        let mut child = std::process::Command::new(common::BIN)
            .args(["server", "--config"])
            .arg(config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = std::io::BufReader::new(stdout).lines().map_while(Result::ok).find(|l| l.starts_with("LATCH_ADDR="));
        let addr = line.expect("the configured node did not start").trim_start_matches("LATCH_ADDR=").to_string();
        ConfigNode { child, addr }
    }

    fn health(&self) -> (u16, serde_json::Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut r = agent.get(format!("{}/v1/sys/health", self.addr)).call().unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap_or_default())
    }
}

impl Drop for ConfigNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn nodes_fail_closed_without_the_database_and_recover_losing_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = pg::cluster().fresh_db();
    let a = Server::start_node(&tmp.path().join("a"), &db, &[]);
    copy_keys(&tmp.path().join("a"), &tmp.path().join("b"));
    let b = Server::start_node(&tmp.path().join("b"), &db, &[]);
    // The third node runs from a configuration file, as in production.
    copy_keys(&tmp.path().join("a"), &tmp.path().join("c"));
    let config = tmp.path().join("latch.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nlog_format = \"text\"\nstorage = {:?}\n[postgres]\nmax_connections = 4\nconnect_timeout = \"2s\"\n",
            tmp.path().join("c").display().to_string(),
            pg::cluster().dsn(&db)
        ),
    )
    .unwrap();
    let c = ConfigNode::start(&config);
    let mut acknowledged = Vec::new();
    for i in 0..6 {
        let node = if i % 2 == 0 { &a } else { &b };
        let name = format!("user{i}");
        node.create_user(&name, PW, &[]);
        acknowledged.push(name);
    }
    let alice_token = {
        a.create_user("alice", PW, &[]);
        a.login("alice", PW, None).unwrap()
    };
    let head_before = a.cli(&["audit", "verify", "-o", "json"]).ok().json()["events"].as_u64().unwrap();

    let (status, h) = c.health();
    assert_eq!((status, h["storage"].as_str(), h["database"].as_str()), (200, Some("postgres"), Some("ok")), "{h}");

    pg::cluster().kill();

    eventually_within("the configured node to report the database unreachable", Duration::from_secs(10), || {
        let (status, h) = c.health();
        status == 503 && h["database"] == "unreachable"
    });
    for node in [&a, &b] {
        eventually_within("health to report the database unreachable", Duration::from_secs(10), || {
            let (status, h) = node.http("GET", "/v1/sys/health", None, None);
            status == 503 && h["status"] == "degraded" && h["database"] == "unreachable"
        });
        // Privileged operations are refused, with an error that says why.
        let out = node.cli(&["user", "create", "mallory"]);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("database") && out.stderr.contains("retry"), "{}", out.stderr);
        let (status, body) = node.http("GET", "/v1/auth/whoami", Some(&alice_token), None);
        assert_eq!(status, 503, "a session cannot be checked, so it is not honoured: {body}");
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        let (status, _) = node.http("POST", "/v1/auth/login", None, Some(&json!({ "user": "alice", "password": PW })));
        assert_eq!(status, 503);
    }

    pg::cluster().restart();
    eventually_within("the configured node to recover", Duration::from_secs(20), || c.health().0 == 200);

    for node in [&a, &b] {
        eventually_within("the node to recover", Duration::from_secs(20), || {
            node.http("GET", "/v1/sys/health", None, None).0 == 200
        });
        let (status, me) = node.http("GET", "/v1/auth/whoami", Some(&alice_token), None);
        assert_eq!(status, 200, "{me}");
    }
    b.create_user("after", PW, &[]);
    let users = a.cli(&["user", "list", "-o", "json"]).ok().json();
    let names: Vec<&str> = users["users"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    for name in &acknowledged {
        assert!(names.contains(&name.as_str()), "acknowledged {name} lost: {names:?}");
    }
    assert!(!names.contains(&"mallory"), "a refused change must not appear");
    let report = b.cli(&["audit", "verify", "-o", "json"]).ok().json();
    assert!(report["events"].as_u64().unwrap() > head_before, "{report}");
}
