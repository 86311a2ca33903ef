//! latch as an OpenSSH certificate authority, against the real thing: a
//! stock `sshd` started on a loopback port with `TrustedUserCAKeys` (latch's
//! CA) and `RevokedKeys` (latch's KRL), and the stock `ssh` client and
//! `ssh-keygen` as the reference parsers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use common::sshd::{LOGIN, Sshd};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

const ROLE: &str = r#"name = "ops-ssh"
description = "Shell on the ops hosts"
max_duration = "2h"
default_duration = "1h"
[approval]
required = 1
approvers = ["group:leads"]
[credentials.ssh]
principals = ["latchssh", "otheruser"]
hosts = ["127.0.0.1"]
max_validity = "1h"
"#;

const LOGS_ROLE: &str = r#"name = "read-logs"
max_duration = "1h"
[approval]
required = 1
approvers = ["group:leads"]
[credentials.token]
audiences = ["https://logs.internal"]
"#;

const POLICIES: &str = r#"@id("eng-ssh")
permit(principal in Group::"eng", action in [Action::"request", Action::"activate"], resource);
"#;

/// A latch server with the SSH role applied, alice in `eng`, and a running sshd trusting its CA.
struct Setup {
    s: Server,
    alice: String,
    dir: tempfile::TempDir,
    sshd: Sshd,
}

impl Setup {
    fn start() -> Setup {
        let s = Server::start();
        s.cli(&["group", "create", "eng"]).ok();
        s.cli(&["group", "create", "leads"]).ok();
        s.create_user("alice", PW, &["eng"]);
        s.create_user("erin", PW, &["eng"]);
        let dir = tempfile::tempdir().unwrap();
        s.apply_bundle(&[
            ("roles/ops-ssh.toml", ROLE),
            ("roles/read-logs.toml", LOGS_ROLE),
            ("policies/main.cedar", POLICIES),
        ]);
        let alice = s.login("alice", PW, None).unwrap();
        let ca = s.cli(&["ssh", "ca"]).ok().stdout;
        assert!(ca.starts_with("ssh-ed25519 AAAA") && ca.trim_end().ends_with("latch-user-ca"), "{ca}");
        let ca_pub = dir.path().join("ca.pub");
        std::fs::write(&ca_pub, &ca).unwrap();
        let krl = dir.path().join("krl.bin");
        s.cli(&["ssh", "krl", "--out", krl.to_str().unwrap()]).ok();
        let sshd = Sshd::start(dir.path(), &ca_pub, &krl);
        Setup { s, alice, dir, sshd }
    }

    fn grant(&self, duration: &str) -> String {
        let out = self
            .s
            .cli_as(
                &self.alice,
                &["request", "ops-ssh", "--for", duration, "--reason", "maintenance", "-o", "json"],
                None,
            )
            .ok()
            .json();
        out["grant"]["id"].as_str().unwrap().to_string()
    }

    /// `latch ssh login` as alice; returns the key path.
    fn login_key(&self, grant: &str, name: &str, extra: &[&str]) -> PathBuf {
        let key = self.dir.path().join(name);
        let mut args = vec!["ssh", "login", "--grant", grant, "--key", key.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.s.cli_as(&self.alice, &args, None).ok();
        key
    }

    fn refresh_krl(&self) {
        self.s.cli(&["ssh", "krl", "--out", self.dir.path().join("krl.bin").to_str().unwrap()]).ok();
    }
}

/// The principals `ssh-keygen -L` lists.
fn principals(shown: &str) -> Vec<String> {
    let block = shown.split("Principals:").nth(1).unwrap().split("Critical Options:").next().unwrap();
    block.split_whitespace().map(str::to_string).collect()
}

fn keygen(args: &[&str]) -> (i32, String) {
    let out = Command::new("ssh-keygen").args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_certificate_from_a_grant_logs_in_and_revocation_locks_it_out() {
    let t = Setup::start();
    let grant = t.grant("1h");
    let key = t.login_key(&grant, "k1", &["--principal", LOGIN]);
    let cert = format!("{}-cert.pub", key.display());

    // The reference parser sees what latch promised.
    let (code, shown) = keygen(&["-L", "-f", &cert]);
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("ssh-ed25519-cert-v01@openssh.com user certificate"), "{shown}");
    assert!(shown.contains(&format!("Key ID: \"alice grant={grant} role=ops-ssh\"")), "{shown}");
    assert_eq!(principals(&shown), [LOGIN], "only the principal asked for: {shown}");
    assert!(shown.contains("permit-pty"), "{shown}");
    let serial: u64 = shown.split("Serial: ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(serial > 0);
    // Its validity ends with the grant's.
    let grants = t.s.cli_as(&t.alice, &["grants", "-o", "json"], None).ok().json();
    let grant_end = grants["grants"][0]["expires_at"].as_str().unwrap().to_string();
    let valid_to = shown.split(" to ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    assert_eq!(&valid_to[..16], &grant_end[..16], "certificate ends with the grant: {valid_to} vs {grant_end}");

    let (code, out) = t.sshd.run(LOGIN, &key, "echo hello-from-$(whoami)");
    assert_eq!((code, out.as_str()), (0, "hello-from-latchssh"), "{}", t.sshd.log());

    // Revoke the grant: once the KRL file is rewritten, sshd refuses the same certificate.
    t.s.cli_as(&t.alice, &["revoke", &grant, "--reason", "done"], None).ok();
    t.refresh_krl();
    let krl = t.dir.path().join("krl.bin");
    let (code, listed) = keygen(&["-Q", "-l", "-f", krl.to_str().unwrap()]);
    assert_eq!(code, 0, "ssh-keygen parses latch's KRL: {listed}");
    assert!(listed.contains(&serial.to_string()), "{listed}");
    let (code, q) = keygen(&["-Q", "-f", krl.to_str().unwrap(), &cert]);
    assert_eq!(code, 1, "ssh-keygen finds the certificate revoked: {q}");
    let (code, _) = t.sshd.run(LOGIN, &key, "true");
    assert_eq!(code, 255, "a revoked certificate is refused");
    assert!(t.sshd.log().contains("revoked"), "{}", t.sshd.log());

    // Everything is audited: the signing, and the revocation naming the serial.
    let signs = t.s.audit("ssh.sign");
    assert_eq!(signs.len(), 1);
    assert_eq!(signs[0]["details"]["serial"], json!(serial));
    let revokes = t.s.audit("grant.revoke");
    assert_eq!(revokes[0]["details"]["ssh_certs_revoked"], json!([serial]));
    // The grant is gone: no more certificates under it.
    let again = t.s.cli_as(
        &t.alice,
        &["ssh", "login", "--grant", &grant, "--key", t.dir.path().join("k2").to_str().unwrap()],
        None,
    );
    assert_eq!(again.code, 1, "{again:?}");
}

#[test]
fn wrong_principals_and_expired_certificates_are_refused() {
    let t = Setup::start();
    let grant = t.grant("1h");
    // A certificate for another login does not open this one.
    let other = t.login_key(&grant, "other", &["--principal", "otheruser"]);
    let (code, _) = t.sshd.run(LOGIN, &other, "true");
    assert_eq!(code, 255);
    assert!(t.sshd.log().contains("not in principal list") || t.sshd.log().contains("principal"), "{}", t.sshd.log());
    // A login the role does not allow is refused by latch, before any signing.
    let bad = t.s.cli_as(
        &t.alice,
        &["ssh", "login", "--grant", &grant, "--key", t.dir.path().join("x").to_str().unwrap(), "--principal", "root"],
        None,
    );
    assert!(bad.code == 1 && bad.stderr.contains("not allowed for role ops-ssh"), "{bad:?}");

    // A certificate valid for one second: accepted, then refused once expired.
    let short = t.login_key(&grant, "short", &["--principal", LOGIN, "--ttl", "2s"]);
    let (code, _) = t.sshd.run(LOGIN, &short, "true");
    assert_eq!(code, 0, "{}", t.sshd.log());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // sshd judges validity by its own (real) clock: wait for it, polling.
        if t.sshd.run(LOGIN, &short, "true").0 == 255 {
            break;
        }
        assert!(Instant::now() < deadline, "an expired certificate still logs in");
        std::thread::park_timeout(Duration::from_millis(250));
    }
    assert!(t.sshd.log().contains("expired"), "{}", t.sshd.log());
}

#[test]
fn signing_refuses_what_it_should() {
    let t = Setup::start();
    let grant = t.grant("1h");
    let sign = |token: &str, grant: &str, body: Value| {
        t.s.http("POST", &format!("/v1/grants/{grant}/ssh"), Some(token), Some(&body))
    };
    let (status, body) = sign(&t.alice, &grant, json!({ "public_key": "-----BEGIN OPENSSH PRIVATE KEY-----" }));
    assert!(status == 400 && body["error"]["message"].as_str().unwrap().contains("private key"), "{body}");
    let (status, body) = sign(&t.alice, &grant, json!({ "public_key": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAQQC7" }));
    assert_eq!(status, 400, "{body}");
    let key = t.dir.path().join("k");
    let out = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).output().unwrap();
    assert!(out.status.success());
    let public = std::fs::read_to_string(format!("{}.pub", key.display())).unwrap();
    // Someone else's grant.
    let erin = t.s.login("erin", PW, None).unwrap();
    let (status, _) = sign(&erin, &grant, json!({ "public_key": public }));
    assert_eq!(status, 403);
    // A role without SSH.
    let logs = t.s.cli_as(&t.alice, &["request", "read-logs", "--reason", "x", "-o", "json"], None).ok().json();
    let logs_grant = logs["grant"]["id"].as_str().unwrap().to_string();
    let (status, body) = sign(&t.alice, &logs_grant, json!({ "public_key": public }));
    assert!(status == 400 && body["error"]["message"].as_str().unwrap().contains("does not allow SSH"), "{body}");
    // latch ssh sign writes KEY-cert.pub beside the public key; the TTL is capped by the role.
    let out =
        t.s.cli_as(
            &t.alice,
            &["ssh", "sign", "--grant", &grant, "--pubkey", &format!("{}.pub", key.display()), "--ttl", "30h"],
            None,
        )
        .ok();
    assert!(out.stdout.contains("-cert.pub"), "{out:?}");
    let (code, shown) = keygen(&["-L", "-f", &format!("{}-cert.pub", key.display())]);
    assert_eq!(code, 0, "{shown}");
    assert_eq!(principals(&shown), [LOGIN, "otheruser"], "all of the role's principals by default: {shown}");
    let (code, out) = t.sshd.run(LOGIN, &key, "echo ok");
    assert_eq!((code, out.as_str()), (0, "ok"), "{}", t.sshd.log());
    // Nothing of the refused attempts was signed.
    assert_eq!(t.s.audit("ssh.sign").len(), 1);
}
