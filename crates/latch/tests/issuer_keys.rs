//! The keys latch signs with — the SSH user CA and the token signing keys —
//! under the master keyring: nothing private in the data directory, signing
//! refused while sealed (public keys, the KRL and introspection still
//! served), re-wrapped by a master key rotation, and migrated from a data
//! directory of an older release (CA sealed under a node key file, token
//! keys in key files) without changing the keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{Server, eventually};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

const ROLE: &str = r#"name = "ops"
description = "Operate the ops hosts"
max_duration = "2h"
[approval]
required = 1
approvers = ["group:leads"]
[credentials.token]
audiences = ["https://ops.internal"]
[credentials.ssh]
principals = ["ops"]
hosts = ["127.0.0.1"]
max_validity = "1h"
"#;

const POLICIES: &str = r#"@id("eng-request")
permit(principal in Group::"eng", action == Action::"request", resource);

@id("eng-auto")
permit(principal in Group::"eng", action == Action::"activate", resource == Role::"ops");
"#;

/// alice in `eng`, the role applied; returns alice's session and an active grant.
fn setup(s: &Server) -> (String, String) {
    s.cli(&["group", "create", "eng"]).ok();
    s.cli(&["group", "create", "leads"]).ok();
    s.create_user("alice", PW, &["eng"]);
    s.apply_bundle(&[("roles/ops.toml", ROLE), ("policies/main.cedar", POLICIES)]);
    let alice = s.login("alice", PW, None).unwrap();
    let out =
        s.cli_as(&alice, &["request", "ops", "--for", "1h", "--reason", "deploy", "-o", "json"], None).ok().json();
    assert_eq!(out["request"]["state"], "active", "{out}");
    (alice, out["grant"]["id"].as_str().unwrap().to_string())
}

fn user_key() -> String {
    let mut seed = [0u8; 32];
    getrandom(&mut seed);
    latch_ssh::user_key_pair(&seed, "alice@laptop").unwrap().1
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom").unwrap().read_exact(buf).unwrap();
}

fn sign_cert(s: &Server, alice: &str, grant: &str) -> (u16, Value) {
    let body = json!({ "public_key": user_key(), "principals": ["ops"] });
    s.http("POST", &format!("/v1/grants/{grant}/ssh"), Some(alice), Some(&body))
}

fn issue_token(s: &Server, alice: &str, grant: &str) -> (u16, Value) {
    s.http("POST", &format!("/v1/grants/{grant}/token"), Some(alice), Some(&json!({})))
}

fn ca_line(s: &Server) -> (u16, String) {
    let (code, _, body) = s.http_raw("GET", "/v1/ssh/ca", None, None, &[]);
    (code, body.trim().to_string())
}

fn kids(s: &Server) -> Vec<String> {
    let (code, jwks) = s.http("GET", "/.well-known/jwks.json", None, None);
    assert_eq!(code, 200, "{jwks}");
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
}

fn introspect(s: &Server, token: &str) -> Value {
    let (code, body) = s.http("POST", "/v1/tokens/introspect", Some(&s.token), Some(&json!({ "token": token })));
    assert_eq!(code, 200, "{body}");
    body
}

fn unseal_dev(s: &Server) {
    let share = std::fs::read_to_string(s.data.join("keys/unseal-dev.share")).unwrap();
    let (code, body) = s.http("PUT", "/v1/sys/unseal", None, Some(&json!({ "key": share.trim() })));
    assert_eq!((code, body["sealed"].clone()), (200, json!(false)), "{body}");
}

fn key_files(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every file under `dir` (the SQLite database, its WAL, key files).
fn files_containing(dir: &Path, needles: &[Vec<u8>]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                for n in needles {
                    if bytes.windows(n.len()).any(|w| w == n.as_slice()) {
                        hits.push(p.display().to_string());
                    }
                }
            }
        }
    }
    hits
}

#[test]
fn a_sealed_node_serves_public_keys_and_introspection_but_refuses_to_sign() {
    let s = Server::start();
    let (alice, grant) = setup(&s);
    // Only the audit key and the dev share are files: the issuer keys are in the store.
    assert_eq!(key_files(&s.data), ["audit-ed25519.key", "unseal-dev.share"]);
    let rows = s.sql("SELECT id, kind, active, master_version FROM issuer_keys ORDER BY kind");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0].starts_with("ssh-user|ssh-user-ca|") && rows[1].starts_with("token:"), "{rows:?}");

    let (code, cert) = sign_cert(&s, &alice, &grant);
    assert_eq!(code, 200, "{cert}");
    let (code, tok) = issue_token(&s, &alice, &grant);
    assert_eq!(code, 200, "{tok}");
    let jwt = tok["token"].as_str().unwrap().to_string();
    let (_, ca_before) = ca_line(&s);
    let kids_before = kids(&s);
    assert!(ca_before.starts_with("ssh-ed25519 "), "{ca_before}");

    s.cli(&["operator", "seal"]).ok();
    // Signing needs the private keys: 503, saying to unseal.
    for (code, body) in [sign_cert(&s, &alice, &grant), issue_token(&s, &alice, &grant)] {
        let msg = body["error"]["message"].as_str().unwrap_or_default().to_string();
        assert_eq!(code, 503, "{body}");
        assert!(msg.contains("sealed") && msg.contains("latch operator unseal"), "{msg}");
    }
    let (code, body) = s.http("POST", "/v1/sys/keys/token/rotate", Some(&s.token), None);
    assert_eq!(code, 503, "{body}");
    // Verification needs only public keys: all still served.
    assert_eq!(ca_line(&s), (200, ca_before.clone()));
    assert_eq!(kids(&s), kids_before);
    let (code, _, _) = s.http_raw("GET", "/v1/ssh/krl", None, None, &[]);
    assert_eq!(code, 200);
    assert_eq!(introspect(&s, &jwt)["active"], true);

    unseal_dev(&s);
    let (code, cert) = sign_cert(&s, &alice, &grant);
    assert_eq!(code, 200, "{cert}");
    let (code, tok) = issue_token(&s, &alice, &grant);
    assert_eq!(code, 200, "{tok}");
    assert_eq!(introspect(&s, tok["token"].as_str().unwrap())["active"], true);
    assert_eq!(ca_line(&s), (200, ca_before), "the same CA after unseal");
    assert_eq!(kids(&s), kids_before, "the same token key after unseal");
    assert_eq!(s.audit("ssh.ca.create").len(), 1);
    assert_eq!(s.audit("key.create").len(), 1);
}

#[test]
fn rotating_the_master_key_rewraps_issuer_keys_and_they_open_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start_in(&data, &[]);
    let (alice, grant) = setup(&s);
    let (_, ca) = ca_line(&s);
    let (code, rotated) = s.http("POST", "/v1/sys/keys/token/rotate", Some(&s.token), None);
    assert_eq!(code, 200, "{rotated}");
    assert_eq!(s.sql("SELECT DISTINCT master_version FROM issuer_keys"), ["1"]);

    s.cli(&["operator", "rotate-master"]).ok();
    eventually("the re-wrap to finish", || {
        s.audit("seal.rewrap").first().is_some_and(|e| e["details"]["issuer_keys"] == 3)
    });
    assert_eq!(s.sql("SELECT DISTINCT master_version FROM issuer_keys"), ["2"]);
    s.stop();

    let s = Server::start_in(&data, &[]);
    assert_eq!(ca_line(&s), (200, ca.clone()));
    let alice2 = s.login("alice", PW, None).unwrap();
    let _ = alice;
    let (code, cert) = sign_cert(&s, &alice2, &grant);
    assert_eq!(code, 200, "{cert}");
    let (code, tok) = issue_token(&s, &alice2, &grant);
    assert_eq!(code, 200, "{tok}");
    let jwt = tok["token"].as_str().unwrap();
    assert_eq!(introspect(&s, jwt)["active"], true);
    assert_eq!(kids(&s)[0], rotated["active_kid"].as_str().unwrap(), "the rotated key still signs");
}

/// What an older latch left: the CA in `ca_keys` sealed under the node key
/// file, the token keys as key files.
struct Legacy {
    ca_seed: [u8; 32],
    token_seed: [u8; 32],
    retired_seed: [u8; 32],
    ca_line: String,
    kid: String,
    retired_kid: String,
}

fn write_legacy(s: &Server) -> Legacy {
    let (mut ca_seed, mut token_seed, mut retired_seed, mut kek) = ([0u8; 32], [0u8; 32], [0u8; 32], [0u8; 32]);
    for b in [&mut ca_seed, &mut token_seed, &mut retired_seed, &mut kek] {
        getrandom(b);
    }
    let ca_line = latch_ssh::UserCa::from_seed(&ca_seed).public_line();
    let sealed = latch_crypto::hex(&latch_crypto::seal::seal(&kek, "latch ca_keys ssh-user", &ca_seed).unwrap());
    s.sql(&format!(
        "INSERT INTO ca_keys (name, public_key, sealed, created_at) VALUES ('ssh-user', '{ca_line}', '{sealed}', 1)"
    ));
    let keys = s.data.join("keys");
    std::fs::write(keys.join("kek-aes256.key"), latch_crypto::hex(&kek)).unwrap();
    std::fs::write(keys.join("token-ed25519.key"), latch_crypto::hex(&token_seed)).unwrap();
    let kid = latch_crypto::SigningKey::from_seed(&token_seed).unwrap().verifying_key().key_id();
    let retired_kid = latch_crypto::SigningKey::from_seed(&retired_seed).unwrap().verifying_key().key_id();
    std::fs::write(keys.join(format!("token-retired-{retired_kid}.key")), latch_crypto::hex(&retired_seed)).unwrap();
    Legacy { ca_seed, token_seed, retired_seed, ca_line, kid, retired_kid }
}

#[test]
fn an_older_data_directory_migrates_on_first_unseal_keeping_the_same_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // A data directory as an older release left it: never initialized here
    // (so no issuer keys in the store yet), the keys in the old places.
    let mut s = Server::start_in(&data, &["--dev-sealed"]);
    assert_eq!(s.sql("SELECT COUNT(*) FROM issuer_keys"), ["0"]);
    let legacy = write_legacy(&s);
    s.stop();

    // Sealed after the upgrade: the old public keys are served as they were.
    let s = Server::start_in(&data, &["--dev-sealed"]);
    assert_eq!(ca_line(&s), (200, legacy.ca_line.clone()));
    let published = kids(&s);
    assert_eq!(published, [legacy.kid.clone(), legacy.retired_kid.clone()]);

    // The first unseal (here: init) moves them under the master keyring.
    let (code, init) =
        s.http("PUT", "/v1/sys/init", Some(&s.token), Some(&json!({"secret_shares": 1, "secret_threshold": 1})));
    assert_eq!(code, 200, "{init}");
    assert_eq!(ca_line(&s), (200, legacy.ca_line.clone()), "targets keep trusting the same CA");
    assert_eq!(kids(&s), published, "the same token keys, the old active one still active");
    assert_eq!(s.sql("SELECT COUNT(*) FROM ca_keys"), ["0"]);
    let rows = s.sql("SELECT id, CASE WHEN active THEN 'active' ELSE 'retired' END FROM issuer_keys ORDER BY id");
    let mut expected = vec![format!("token:{}|active", legacy.kid), format!("token:{}|retired", legacy.retired_kid)];
    expected.sort();
    expected.insert(0, "ssh-user|active".into());
    assert_eq!(rows, expected);
    assert_eq!(key_files(&s.data), ["audit-ed25519.key"], "the old key files are gone");
    assert_eq!(s.audit("issuer_key.migrate").len(), 3);
    // No private key anywhere in the data directory, in any encoding.
    let mut needles = Vec::new();
    for seed in [legacy.ca_seed, legacy.token_seed, legacy.retired_seed] {
        needles.push(seed.to_vec());
        needles.push(latch_crypto::hex(&seed).into_bytes());
    }
    assert_eq!(files_containing(&s.data, &needles), Vec::<String>::new());

    // The migrated CA signs: certificates verify against the old public key.
    let (alice, grant) = setup(&s);
    let (code, cert) = sign_cert(&s, &alice, &grant);
    assert_eq!(code, 200, "{cert}");
    let ca = latch_ssh::parse_user_key(&legacy.ca_line).unwrap();
    let now = s.now_ms() / 1000;
    let verified = latch_ssh::verify_user_cert(&ca, cert["certificate"].as_str().unwrap(), u64::try_from(now).unwrap());
    assert!(verified.is_ok(), "{verified:?}");
    let (code, tok) = issue_token(&s, &alice, &grant);
    assert_eq!(code, 200, "{tok}");
    assert_eq!(introspect(&s, tok["token"].as_str().unwrap())["active"], true);
}
