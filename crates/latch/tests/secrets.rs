//! The seal and the KV v2 secrets engine: Shamir shares and thresholds,
//! restarts while sealed, encryption at rest (the database files hold no
//! plaintext), master key rotation without downtime, and bad input.
//! `vault_clients.rs` drives the same engine with unmodified Vault clients.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{Server, secrets};
use serde_json::{Value, json};

/// A value no one could guess, noted so the harness fails the test if it
/// ever reaches a log, an audit event or an error body.
fn secret_value(tag: &str) -> String {
    let v = format!("{tag}-{}", random_hex());
    secrets::note(&v);
    v
}

fn random_hex() -> String {
    let mut b = [0u8; 16];
    getrandom(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom").unwrap().read_exact(buf).unwrap();
}

fn vault(s: &Server, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let raw = body.map(|b| b.to_string());
    let (st, _, text) = s.http_raw(method, path, None, raw.as_deref(), &[("X-Vault-Token", &s.token)]);
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn enable_kv(s: &Server, mount: &str) {
    let (st, body) =
        vault(s, "POST", &format!("/v1/sys/mounts/{mount}"), Some(&json!({"type": "kv", "options": {"version": "2"}})));
    assert_eq!(st, 204, "{body}");
}

fn put(s: &Server, path: &str, data: Value) -> Value {
    let (st, body) = vault(s, "POST", &format!("/v1/secret/data/{path}"), Some(&json!({ "data": data })));
    assert_eq!(st, 200, "{body}");
    body
}

fn get(s: &Server, path: &str) -> (u16, Value) {
    vault(s, "GET", &format!("/v1/secret/data/{path}"), None)
}

/// Every byte of every file in the data directory (database, WAL, keys).
fn data_files_contain(dir: &Path, needle: &str) -> Option<String> {
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            return Some(entry.display().to_string());
        }
    }
    None
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

fn seal_status(s: &Server) -> Value {
    let (st, body) = s.http("GET", "/v1/sys/seal-status", None, None);
    assert_eq!(st, 200, "{body}");
    body
}

fn unseal(s: &Server, share: &str) -> (u16, Value) {
    s.http("PUT", "/v1/sys/unseal", None, Some(&json!({ "key": share })))
}

#[test]
fn shares_unseal_at_the_threshold_and_nothing_is_stored_in_the_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start_in(&data, &["--dev-sealed"]);

    // Not initialized: secrets are unavailable, everything else works.
    let st = seal_status(&s);
    assert_eq!((st["initialized"].clone(), st["sealed"].clone()), (json!(false), json!(true)));
    let (code, body) = get(&s, "x");
    assert_eq!(code, 503, "{body}");
    assert!(body["errors"][0].as_str().unwrap().contains("sealed"), "{body}");
    let (code, health) = s.http("GET", "/v1/sys/health", None, None);
    assert_eq!((code, health["sealed"].clone(), health["status"].clone()), (200, json!(true), json!("ok")));
    assert!(s.cli(&["operator", "status"]).ok().stdout.contains("not initialized"));
    // Vault's health parameters: a load balancer can ask for other codes.
    assert_eq!(s.http("GET", "/v1/sys/health?uninitcode=501", None, None).0, 501);
    assert_eq!(s.http("GET", "/v1/sys/health?sealedcode=42", None, None).0, 400);
    assert_eq!(s.http("GET", "/v1/sys/health?standbyok=true&nosuch=1", None, None).0, 400);

    // Init: five shares, threshold three, shown once; this node is unsealed.
    let out = s.cli(&["operator", "init", "--shares", "5", "--threshold", "3", "-o", "json"]).ok().json();
    let shares: Vec<String> = out["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    assert_eq!(shares.len(), 5);
    shares.iter().for_each(|k| secrets::note(k));
    assert_eq!(shares.iter().collect::<std::collections::HashSet<_>>().len(), 5);
    let again = s.cli(&["operator", "init"]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("already initialized"), "{}", again.stderr);

    enable_kv(&s, "secret");
    let password = secret_value("db-password");
    let v = put(&s, "prod/db", json!({ "password": password, "user": "app" }));
    assert_eq!(v["data"]["version"], 1);
    let (code, body) = get(&s, "prod/db");
    assert_eq!(code, 200);
    assert_eq!(body["data"]["data"]["password"], json!(password));

    // Encryption at rest: no file of the data directory holds the value.
    s.stop();
    assert_eq!(data_files_contain(&data, &password), None, "plaintext secret found in the data directory");
    assert!(s.sql("SELECT count(*) FROM kv_versions")[0] == "1");

    // Restart: sealed. Health answers; secrets say "sealed".
    let s2 = Server::start_in(&data, &["--dev-sealed"]);
    let st = seal_status(&s2);
    assert_eq!(
        (st["initialized"].clone(), st["sealed"].clone(), st["t"].clone(), st["n"].clone()),
        (json!(true), json!(true), json!(3), json!(5))
    );
    assert_eq!(get(&s2, "prod/db").0, 503);
    assert_eq!(s2.http("GET", "/v1/sys/health", None, None).0, 200);
    assert_eq!(s2.http("GET", "/v1/sys/health?sealedcode=503&standbyok=true", None, None).0, 503);

    // One share: progress 1. The same share again does not count twice.
    assert_eq!(unseal(&s2, &shares[0]).1["progress"], 1);
    assert_eq!(unseal(&s2, &shares[0]).1["progress"], 1);
    // A wrong share completes the threshold, fails to combine, and resets.
    let mut wrong = hex_to_bytes(&shares[1]);
    wrong[0] ^= 0x55;
    let (code, body) = unseal(&s2, &bytes_to_hex(&wrong));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["progress"], 2);
    let (code, body) = unseal(&s2, &shares[2]);
    assert_eq!(code, 400, "{body}");
    assert!(body["errors"][0].as_str().unwrap().contains("do not combine"), "{body}");
    let st = seal_status(&s2);
    assert_eq!((st["sealed"].clone(), st["progress"].clone()), (json!(true), json!(0)));
    // Malformed shares are refused before they count.
    let (code, body) = unseal(&s2, "not a share");
    assert_eq!(code, 400, "{body}");
    let (code, _) = unseal(&s2, &shares[0][..20]);
    assert_eq!(code, 400);
    assert_eq!(seal_status(&s2)["progress"], 0);
    assert_eq!(get(&s2, "prod/db").0, 503);

    // Any three right shares unseal (through the CLI, share on stdin).
    for (i, share) in [&shares[4], &shares[1], &shares[3]].into_iter().enumerate() {
        let out = s2.cli_as("", &["operator", "unseal"], Some(share)).ok();
        if i < 2 {
            assert!(out.stdout.contains(&format!("sealed: {} of", i + 1)), "{}", out.stdout);
        } else {
            assert!(out.stdout.contains("unsealed"), "{}", out.stdout);
        }
    }
    let (code, body) = get(&s2, "prod/db");
    assert_eq!((code, body["data"]["data"]["password"].clone()), (200, json!(password)));
    assert_eq!(s2.http("GET", "/v1/sys/health?sealedcode=503", None, None).0, 200);

    // Sealing is for administrators, and takes the keys away again.
    s2.create_user("mallory", "correct horse battery", &[]);
    let mallory = s2.login("mallory", "correct horse battery", None).unwrap();
    let (code, _) = s2.http("PUT", "/v1/sys/seal", Some(&mallory), None);
    assert_eq!(code, 403);
    s2.cli(&["operator", "seal"]).ok();
    assert_eq!(get(&s2, "prod/db").0, 503);
    assert_eq!(s2.http("GET", "/v1/sys/health", None, None).1["sealed"], json!(true));

    // Every step is in the audit log; no share is (the harness checks the
    // log and audit rows for every noted share when the server stops).
    assert_eq!(s2.audit("seal.init").len(), 1);
    let unseals = s2.audit("seal.unseal");
    assert_eq!(unseals.iter().filter(|e| e["outcome"] == "failure").count(), 1, "{unseals:?}");
    assert_eq!(unseals.iter().filter(|e| e["outcome"] == "success").count(), 1, "{unseals:?}");
    assert_eq!(s2.audit("seal.seal").len(), 1);
    assert_eq!(s2.audit("secret.write").len(), 1);
    assert!(s2.audit("secret.write")[0]["details"]["value_hmac"].as_str().unwrap().starts_with("hmac-sha256:"));
}

fn hex_to_bytes(h: &str) -> Vec<u8> {
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()
}

fn bytes_to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn rotating_the_master_key_rewraps_every_data_key_while_secrets_stay_readable() {
    let s = Server::start();
    enable_kv(&s, "secret");
    let values: Vec<String> = (0..300).map(|i| format!("value-{i}-{}", random_hex())).collect();
    for (i, v) in values.iter().enumerate() {
        put(&s, &format!("app/{i}"), json!({ "v": v }));
    }
    let status = |s: &Server| vault(s, "GET", "/v1/sys/key-status", None).1["data"].clone();
    assert_eq!(status(&s)["term"], 1);

    let out = s.cli(&["operator", "rotate-master"]).ok();
    assert!(out.stdout.contains("master key version 2 is active"), "{}", out.stdout);
    // Reads and writes go on while the data keys are re-wrapped.
    for i in (0..300).step_by(37) {
        assert_eq!(get(&s, &format!("app/{i}")).1["data"]["data"]["v"], json!(values[i]));
    }
    put(&s, "app/new", json!({ "v": "after" }));
    common::eventually("every data key re-wrapped", || status(&s)["pending_rewrap"] == 0);
    assert_eq!(s.sql("SELECT DISTINCT master_version FROM kv_versions"), vec!["2"]);
    // The SSH CA and the token keys are counted, and re-wrapped, too.
    assert_eq!(status(&s)["pending_rewrap_by_kind"], json!({ "secrets": 0, "issuer_keys": 0, "db_passwords": 0 }));
    assert_eq!(s.sql("SELECT DISTINCT master_version FROM issuer_keys"), vec!["2"]);
    for (i, v) in values.iter().enumerate() {
        assert_eq!(get(&s, &format!("app/{i}")).1["data"]["data"]["v"], json!(v), "app/{i}");
    }
    assert_eq!(s.audit("seal.rotate_master").len(), 1);
    common::eventually("the re-wrap audited", || {
        s.audit("seal.rewrap").first().is_some_and(|e| e["details"]["rewrapped"] == 300)
    });
    // A second rotation: both old versions stay in the keyring, all reads work.
    s.cli(&["operator", "rotate-master"]).ok();
    common::eventually("re-wrapped again", || status(&s)["pending_rewrap"] == 0);
    assert_eq!(status(&s)["versions"], json!([1, 2, 3]));
    assert_eq!(get(&s, "app/7").1["data"]["data"]["v"], json!(values[7]));
}

#[test]
fn kv_versions_cas_delete_undelete_destroy_and_metadata() {
    let s = Server::start();
    enable_kv(&s, "secret");
    for i in 1..=3 {
        put(&s, "svc/api", json!({ "key": format!("k{i}") }));
    }
    assert_eq!(vault(&s, "GET", "/v1/secret/data/svc/api?version=2", None).1["data"]["data"]["key"], "k2");
    // Check-and-set: a stale version is refused (400), the right one accepted.
    let (code, body) =
        vault(&s, "POST", "/v1/secret/data/svc/api", Some(&json!({"data": {"key": "x"}, "options": {"cas": 2}})));
    assert_eq!(code, 400, "{body}");
    assert!(body["errors"][0].as_str().unwrap().contains("check-and-set"), "{body}");
    let (code, body) =
        vault(&s, "POST", "/v1/secret/data/svc/api", Some(&json!({"data": {"key": "k4"}, "options": {"cas": 3}})));
    assert_eq!((code, body["data"]["version"].clone()), (200, json!(4)));
    // cas 0: only when absent.
    let (code, _) = vault(&s, "POST", "/v1/secret/data/svc/api", Some(&json!({"data": {}, "options": {"cas": 0}})));
    assert_eq!(code, 400);

    // Soft delete hides the latest version; undelete brings it back.
    assert_eq!(vault(&s, "DELETE", "/v1/secret/data/svc/api", None).0, 204);
    let (code, body) = get(&s, "svc/api");
    assert_eq!(code, 404);
    assert_ne!(body["data"]["metadata"]["deletion_time"], "", "{body}");
    assert_eq!(vault(&s, "POST", "/v1/secret/undelete/svc/api", Some(&json!({"versions": [4]}))).0, 204);
    assert_eq!(get(&s, "svc/api").1["data"]["data"]["key"], "k4");
    // Destroy erases the ciphertext of version 1 for good.
    assert_eq!(vault(&s, "PUT", "/v1/secret/destroy/svc/api", Some(&json!({"versions": [1]}))).0, 204);
    let (code, body) = vault(&s, "GET", "/v1/secret/data/svc/api?version=1", None);
    assert_eq!((code, body["data"]["metadata"]["destroyed"].clone()), (404, json!(true)));
    assert_eq!(s.sql("SELECT count(*) FROM kv_versions WHERE version = 1 AND ciphertext IS NULL"), vec!["1"]);
    assert_eq!(vault(&s, "POST", "/v1/secret/undelete/svc/api", Some(&json!({"versions": [1]}))).0, 204);
    assert_eq!(vault(&s, "GET", "/v1/secret/data/svc/api?version=1", None).0, 404, "destroyed stays destroyed");

    // Metadata: max_versions prunes, custom metadata merges under PATCH.
    let (code, _) = vault(
        &s,
        "POST",
        "/v1/secret/metadata/svc/api",
        Some(&json!({"max_versions": 2, "custom_metadata": {"owner": "ops", "tier": "1"}})),
    );
    assert_eq!(code, 204);
    put(&s, "svc/api", json!({ "key": "k5" }));
    let meta = vault(&s, "GET", "/v1/secret/metadata/svc/api", None).1["data"].clone();
    assert_eq!((meta["current_version"].clone(), meta["oldest_version"].clone()), (json!(5), json!(4)));
    assert_eq!(meta["versions"].as_object().unwrap().len(), 2);
    let (code, _) = s
        .http_raw(
            "PATCH",
            "/v1/secret/metadata/svc/api",
            None,
            Some(r#"{"custom_metadata": {"tier": null, "team": "db"}}"#),
            &[("X-Vault-Token", &s.token), ("Content-Type", "application/merge-patch+json")],
        )
        .into_status();
    assert_eq!(code, 204);
    let meta = vault(&s, "GET", "/v1/secret/metadata/svc/api", None).1["data"].clone();
    assert_eq!(meta["custom_metadata"], json!({"owner": "ops", "team": "db"}));

    // Data PATCH merges into the current value.
    let (code, _) = s
        .http_raw(
            "PATCH",
            "/v1/secret/data/svc/api",
            None,
            Some(r#"{"data": {"extra": "e"}}"#),
            &[("X-Vault-Token", &s.token), ("Content-Type", "application/merge-patch+json")],
        )
        .into_status();
    assert_eq!(code, 200);
    assert_eq!(get(&s, "svc/api").1["data"]["data"], json!({"key": "k5", "extra": "e"}));

    // Listing: folders end in "/".
    put(&s, "svc/web/tls", json!({ "crt": "x" }));
    let (code, body) = vault(&s, "GET", "/v1/secret/metadata/svc?list=true", None);
    assert_eq!((code, body["data"]["keys"].clone()), (200, json!(["api", "web/"])));
    let (_, body) = vault(&s, "GET", "/v1/secret/metadata/?list=true", None);
    assert_eq!(body["data"]["keys"], json!(["svc/"]));
    assert_eq!(vault(&s, "GET", "/v1/secret/metadata/nothing/?list=true", None).0, 404);

    // Deleting the metadata removes every version.
    assert_eq!(vault(&s, "DELETE", "/v1/secret/metadata/svc/api", None).0, 204);
    assert_eq!(get(&s, "svc/api").0, 404);
    assert_eq!(s.sql("SELECT count(*) FROM kv_versions WHERE path = 'svc/api'"), vec!["0"]);
}

trait IntoStatus {
    fn into_status(self) -> (u16, String);
}

impl IntoStatus for (u16, Vec<(String, String)>, String) {
    fn into_status(self) -> (u16, String) {
        (self.0, self.2)
    }
}

#[test]
fn bad_input_is_refused_precisely_and_changes_nothing() {
    let s = Server::start();
    enable_kv(&s, "secret");
    put(&s, "a", json!({ "v": "1" }));
    s.create_user("eve", "correct horse battery", &[]);
    let eve = s.login("eve", "correct horse battery", None).unwrap();
    let audit_rows = || s.sql("SELECT count(*) FROM audit_events")[0].clone();
    let before = audit_rows();
    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        ("POST", "/v1/secret/data/a", Some(json!({"data": {"v": "2"}, "extra": 1})), 400, "unknown field"),
        ("POST", "/v1/secret/data/a", Some(json!({"v": "2"})), 400, "unknown field"),
        ("POST", "/v1/secret/data/a", Some(json!({})), 400, "no data provided"),
        ("POST", "/v1/secret/data/a", Some(json!({"data": "text"})), 400, "data"),
        ("POST", "/v1/secret/data/a/../b", Some(json!({"data": {}})), 400, "segment"),
        ("POST", "/v1/secret/data/a", Some(json!({"data": {}, "options": {"cas": -1}})), 400, "cas"),
        ("GET", "/v1/secret/data/a?version=x", None, 400, "version"),
        ("POST", "/v1/nosuch/data/a", Some(json!({"data": {}})), 404, "no secrets engine"),
        ("POST", "/v1/sys/mounts/users", Some(json!({"type": "kv", "options": {"version": "2"}})), 400, "reserved"),
        ("POST", "/v1/sys/mounts/kv1", Some(json!({"type": "kv"})), 400, "version 2"),
        ("POST", "/v1/sys/mounts/db", Some(json!({"type": "database"})), 400, "reserved"),
        ("POST", "/v1/sys/mounts/secret", Some(json!({"type": "kv-v2"})), 400, "already in use"),
        ("POST", "/v1/secret/metadata/a", Some(json!({"custom_metadata": {"k": 1}})), 400, "strings"),
        ("POST", "/v1/secret/metadata/a", Some(json!({"max_versions": -1})), 400, "max_versions"),
        ("POST", "/v1/secret/metadata/a", Some(json!({"delete_version_after": "soon"})), 400, "delete_version_after"),
        ("POST", "/v1/secret/delete/a", Some(json!({"versions": []})), 400, "no versions"),
        ("POST", "/v1/secret/destroy/a", Some(json!({"versions": ["x"]})), 400, "positive"),
        ("PUT", "/v1/sys/unseal", Some(json!({"key": "zz"})), 400, "hex or base64"),
    ];
    for (method, path, body, want, says) in cases {
        let (code, resp) = vault(&s, method, path, body.as_ref());
        assert_eq!(code, want, "{method} {path}: {resp}");
        let msg = resp["errors"][0].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{method} {path}: {msg:?} should say {says:?}");
    }
    // PATCH needs the merge-patch content type.
    let (code, text) = s
        .http_raw("PATCH", "/v1/secret/data/a", None, Some(r#"{"data":{}}"#), &[("X-Vault-Token", &s.token)])
        .into_status();
    assert_eq!(code, 415, "{text}");
    // Oversize bodies are refused before parsing.
    let big = json!({ "data": { "v": "x".repeat(70 * 1024) } });
    assert_eq!(vault(&s, "POST", "/v1/secret/data/big", Some(&big)).0, 413);
    // Without a token, or as a non-administrator.
    assert_eq!(s.http("GET", "/v1/secret/data/a", None, None).0, 401);
    let (code, _, _) = s.http_raw("GET", "/v1/secret/data/a", None, None, &[("X-Vault-Token", &eve)]);
    assert_eq!(code, 403);
    assert_eq!(audit_rows(), before, "refused requests wrote nothing");
    assert_eq!(get(&s, "a").1["data"]["data"], json!({"v": "1"}));
    assert_eq!(s.sql("SELECT count(*) FROM kv_secrets"), vec!["1"]);
}

const DB_ROLE: &str = r#"name = "prod-db"
max_duration = "2h"
[approval]
required = 0
[credentials.secrets]
paths = ["secret/prod/db/*"]
rotate_on_end = ["password"]
"#;

const ELIGIBLE: &str = r#"@id("eng")
permit(principal in Group::"eng", action in [Action::"request", Action::"activate"], resource);
"#;

fn vault_as(s: &Server, token: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let raw = body.map(|b| b.to_string());
    let (st, _, text) = s.http_raw(method, path, None, raw.as_deref(), &[("X-Vault-Token", token)]);
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn a_role_bound_secret_is_read_only_under_a_grant_and_rotated_when_the_grant_ends() {
    let s = Server::start();
    s.cli(&["group", "create", "eng"]).ok();
    s.create_user("alice", "correct horse battery", &["eng"]);
    s.apply_bundle(&[("roles/prod-db.toml", DB_ROLE), ("policies/main.cedar", ELIGIBLE)]);
    let alice = s.login("alice", "correct horse battery", None).unwrap();
    enable_kv(&s, "secret");
    let password = secret_value("prod-db");
    put(&s, "prod/db/main", json!({ "user": "app", "password": password }));

    // Nobody reads it without a grant — administrators neither.
    let (code, body) = get(&s, "prod/db/main");
    assert_eq!(code, 403, "{body}");
    assert!(body["errors"][0].as_str().unwrap().contains("latch request prod-db"), "{body}");
    assert_eq!(vault_as(&s, &alice, "GET", "/v1/secret/data/prod/db/main", None).0, 403);
    // Secrets of no role stay with administrators.
    put(&s, "other/x", json!({ "k": "v" }));
    assert_eq!(vault_as(&s, &alice, "GET", "/v1/secret/data/other/x", None).0, 403);

    // Check-out: a grant of the role opens it, and the read names the grant.
    let out = s.cli_as(&alice, &["request", "prod-db", "--reason", "migration", "-o", "json"], None).ok().json();
    let grant = out["grant"]["id"].as_str().unwrap().to_string();
    let (code, body) = vault_as(&s, &alice, "GET", "/v1/secret/data/prod/db/main", None);
    assert_eq!((code, body["data"]["data"]["password"].clone()), (200, json!(password)));
    let read = s.audit("secret.read");
    assert_eq!(read.last().unwrap()["details"]["grant"], json!(grant), "{read:?}");
    // Read access only: no writes, no deletes, no listing.
    let (code, _) =
        vault_as(&s, &alice, "POST", "/v1/secret/data/prod/db/main", Some(&json!({"data": {"password": "mine"}})));
    assert_eq!(code, 403);
    assert_eq!(vault_as(&s, &alice, "DELETE", "/v1/secret/data/prod/db/main", None).0, 403);
    assert_eq!(vault_as(&s, &alice, "GET", "/v1/secret/metadata/prod/db?list=true", None).0, 403);

    // Check-in: revoking the grant rotates the password; the other field stays.
    s.cli(&["revoke", &grant, "--reason", "done"]).ok();
    common::eventually("the password rotated after revocation", || {
        vault(&s, "GET", "/v1/secret/metadata/prod/db/main", None).1["data"]["current_version"] == 2
    });
    assert_eq!(vault_as(&s, &alice, "GET", "/v1/secret/data/prod/db/main", None).0, 403, "the grant is over");
    let rotated = s.audit("secret.rotate");
    assert_eq!(rotated.len(), 1);
    assert_eq!(
        (rotated[0]["details"]["grant"].clone(), rotated[0]["details"]["fields"].clone()),
        (json!(grant), json!(["password"]))
    );

    // Expiry rotates too: a second grant, then time passes.
    let out =
        s.cli_as(&alice, &["request", "prod-db", "--for", "30m", "--reason", "again", "-o", "json"], None).ok().json();
    let grant2 = out["grant"]["id"].as_str().unwrap().to_string();
    let (_, body) = vault_as(&s, &alice, "GET", "/v1/secret/data/prod/db/main", None);
    let second = body["data"]["data"]["password"].as_str().unwrap().to_string();
    secrets::note(&second);
    assert_ne!(second, password);
    assert_eq!(body["data"]["data"]["user"], "app");
    assert_eq!(second.len(), 32);
    s.advance("31m");
    common::eventually("the password rotated after expiry", || {
        vault(&s, "GET", "/v1/secret/metadata/prod/db/main", None).1["data"]["current_version"] == 3
    });
    assert_eq!(s.audit("secret.rotate").last().unwrap()["details"]["grant"], json!(grant2));
    // Nothing was rotated that the role does not cover.
    assert_eq!(vault(&s, "GET", "/v1/secret/metadata/other/x", None).1["data"]["current_version"], 1);
}

#[test]
fn the_inventory_lists_long_lived_credentials_with_their_age() {
    let s = Server::start();
    enable_kv(&s, "secret");
    put(&s, "old/static", json!({ "k": "v" }));
    let sp = s.cli(&["sp", "create", "deployer", "-o", "json"]).ok().json();
    if let Some(secret) = sp["client_secret"].as_str() {
        secrets::note(secret);
    }
    let inv = s.cli(&["inventory", "-o", "json"]).ok().json();
    assert_eq!(inv["static_secrets"][0]["name"], "secret:secret/old/static", "{inv}");
    assert_eq!(inv["static_secrets"][0]["long_lived"], false);
    assert!(inv["signing_keys"].as_array().unwrap().iter().any(|k| k["name"] == "master-key:v1"), "{inv}");
    assert_eq!(inv["service_principal_secrets"][0]["name"], "sp:deployer");
    let before = inv["long_lived"].as_u64().unwrap();

    // 91 days later the stored secret and the service principal's secret are
    // overdue (the bootstrap session is long gone: sign in again).
    s.create_user("ops", "correct horse battery", &["admins"]);
    s.advance("91d");
    let ops = s.login("ops", "correct horse battery", None).unwrap();
    let (code, _) = vault_as(&s, &ops, "POST", "/v1/secret/data/fresh/one", Some(&json!({"data": {"k": "v"}})));
    assert_eq!(code, 200);
    let inv = s.cli_as(&ops, &["inventory", "-o", "json"], None).ok().json();
    let by_name = |list: &str, name: &str| {
        inv[list].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap_or(Value::Null)
    };
    assert_eq!(by_name("static_secrets", "secret:secret/old/static")["long_lived"], true, "{inv}");
    assert_eq!(by_name("static_secrets", "secret:secret/fresh/one")["long_lived"], false, "{inv}");
    assert_eq!(by_name("service_principal_secrets", "sp:deployer")["long_lived"], true, "{inv}");
    assert_eq!(inv["long_lived"].as_u64().unwrap(), before + 2, "{inv}");
    // The same count is M4 of the SLO report.
    let slo = s.cli_as(&ops, &["slo", "-o", "json"], None).ok().json();
    assert_eq!(slo["m4"]["value"], inv["long_lived"]);
    let text = s.cli_as(&ops, &["inventory"], None).ok().stdout;
    assert!(text.contains("secret:secret/old/static") && text.contains("OVERDUE"), "{text}");
}

#[test]
fn a_rotation_period_rotates_role_secrets_when_nobody_has_them_checked_out() {
    let s = Server::start();
    s.cli(&["group", "create", "eng"]).ok();
    s.create_user("alice", "correct horse battery", &["eng"]);
    let role =
        DB_ROLE.replace("rotate_on_end = [\"password\"]", "rotate_on_end = [\"password\"]\nrotation_period = \"1h\"");
    s.apply_bundle(&[("roles/prod-db.toml", &role), ("policies/main.cedar", ELIGIBLE)]);
    enable_kv(&s, "secret");
    put(&s, "prod/db/main", json!({ "user": "app", "password": secret_value("scheduled") }));
    let version = || vault(&s, "GET", "/v1/secret/metadata/prod/db/main", None).1["data"]["current_version"].clone();
    let reasons =
        || -> Vec<Value> { s.audit("secret.rotate").iter().map(|e| e["details"]["reason"].clone()).collect() };

    // Nobody holds it: an hour later the value is rotated on schedule.
    s.advance("61m");
    common::eventually("the overdue secret rotated", || version() == 2);
    assert_eq!(reasons(), vec![json!("rotation period")]);

    // Alice has it checked out when the next period passes: nothing is
    // rotated under her; her grant's end rotates it (check-in).
    let alice = s.login("alice", "correct horse battery", None).unwrap();
    let out =
        s.cli_as(&alice, &["request", "prod-db", "--for", "2h", "--reason", "work", "-o", "json"], None).ok().json();
    let grant = out["grant"]["id"].as_str().unwrap().to_string();
    s.advance("61m");
    // Proving that something does not happen takes waiting: two of the
    // job's one-second rounds.
    #[allow(clippy::disallowed_methods)]
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(version(), 2, "rotated while checked out");
    s.cli(&["revoke", &grant, "--reason", "done"]).ok();
    common::eventually("rotated at check-in", || version() == 3);
    assert_eq!(reasons(), vec![json!("rotation period"), json!("grant ended")]);
}

/// Vault's routes × callers: anonymous, a plain user, an administrator.
/// `N` 401, `F` 403, anything else is the status itself.
#[test]
fn vault_routes_refuse_the_wrong_callers() {
    let s = Server::start();
    enable_kv(&s, "secret");
    put(&s, "a", json!({ "v": "1" }));
    s.create_user("bob", "correct horse battery", &[]);
    let bob = s.login("bob", "correct horse battery", None).unwrap();
    let table: &[(&str, &str, Option<Value>, [u16; 3])] = &[
        // method, path, body, [anonymous, user, admin]
        ("GET", "/v1/sys/seal-status", None, [200, 200, 200]),
        ("GET", "/v1/sys/leader", None, [200, 200, 200]),
        ("GET", "/v1/sys/init", None, [200, 200, 200]),
        ("PUT", "/v1/sys/init", Some(json!({"secret_shares": 1, "secret_threshold": 1})), [401, 403, 409]),
        ("GET", "/v1/sys/key-status", None, [401, 403, 200]),
        ("GET", "/v1/sys/mounts", None, [401, 403, 200]),
        ("POST", "/v1/sys/mounts/other", Some(json!({"type": "kv-v2"})), [401, 403, 204]),
        ("GET", "/v1/sys/internal/ui/mounts/secret/a", None, [401, 200, 200]),
        ("GET", "/v1/secret/config", None, [401, 403, 200]),
        ("GET", "/v1/secret/data/a", None, [401, 403, 200]),
        ("POST", "/v1/secret/data/b", Some(json!({"data": {"k": "v"}})), [401, 403, 200]),
        ("GET", "/v1/secret/metadata/a", None, [401, 403, 200]),
        ("GET", "/v1/secret/metadata/?list=true", None, [401, 403, 200]),
        ("POST", "/v1/secret/delete/a", Some(json!({"versions": [1]})), [401, 403, 204]),
        ("POST", "/v1/secret/undelete/a", Some(json!({"versions": [1]})), [401, 403, 204]),
        ("GET", "/v1/auth/token/lookup-self", None, [401, 200, 200]),
        ("POST", "/v1/auth/token/create", Some(json!({"ttl": "1m"})), [401, 200, 200]),
        ("POST", "/v1/auth/token/create-orphan", Some(json!({"ttl": "1m"})), [401, 403, 200]),
        ("POST", "/v1/sys/leases/lookup", Some(json!({"lease_id": "database/creds/x/y"})), [401, 404, 404]),
        ("POST", "/v1/sys/leases/revoke-prefix/database/creds/x/", None, [401, 403, 204]),
        ("POST", "/v1/secret/destroy/a", Some(json!({"versions": [1]})), [401, 403, 204]),
        ("PUT", "/v1/sys/rotate", None, [401, 403, 204]),
        ("PUT", "/v1/sys/seal", None, [401, 403, 204]),
    ];
    for (method, path, body, want) in table {
        for (who, token) in [("anonymous", None), ("user", Some(bob.as_str())), ("admin", Some(s.token.as_str()))] {
            let raw = body.as_ref().map(|b| b.to_string());
            let headers: Vec<(&str, &str)> = token.map(|t| vec![("X-Vault-Token", t)]).unwrap_or_default();
            let (code, _, text) = s.http_raw(method, path, None, raw.as_deref(), &headers);
            let i = ["anonymous", "user", "admin"].iter().position(|w| *w == who).unwrap();
            assert_eq!(code, want[i], "{method} {path} as {who}: {text}");
        }
    }
}
