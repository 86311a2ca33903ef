//! Authentication, sessions and identities, driven through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, run_cli, secret_from_uri, totp_at};
use serde_json::json;

const PW: &str = "correct horse battery";

#[test]
fn bootstrap_token_is_an_admin_session_and_audited() {
    let s = Server::start();
    let who = s.cli(&["whoami", "-o", "json"]).ok().json();
    assert_eq!(who["name"], "admin");
    assert_eq!(who["admin"], true);
    let boot = s.audit("auth.bootstrap_token");
    assert_eq!(boot.len(), 1);
    assert_eq!(boot[0]["target"], "user:admin");
    assert!(!boot[0].to_string().contains(&s.token), "the token itself is never audited");
}

#[test]
fn password_login_and_wrong_password_audited() {
    let s = Server::start();
    s.create_user("alice", PW, &["admins"]);
    let token = s.login("alice", PW, None).unwrap();
    let who = s.cli_as(&token, &["whoami", "-o", "json"], None).ok().json();
    assert_eq!(who["name"], "alice");
    assert_eq!(who["mfa"], false);

    let bad = s.login("alice", "wrong password!", None).unwrap_err();
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("invalid user name or password"), "{}", bad.stderr);
    let ghost = s.login("nobody", PW, None).unwrap_err();
    assert!(ghost.stderr.contains("invalid user name or password"), "same message for unknown users");

    let logins = s.audit("auth.login");
    let reasons: Vec<_> =
        logins.iter().map(|e| (e["outcome"].as_str().unwrap(), e["details"]["reason"].clone())).collect();
    assert_eq!(reasons[0], ("success", serde_json::Value::Null));
    assert_eq!(reasons[1], ("failure", json!("bad_password")));
    assert_eq!(reasons[2], ("failure", json!("unknown_user")));
    for e in &logins {
        assert!(!e.to_string().contains(PW) && !e.to_string().contains("wrong password!"), "no password in audit");
    }
}

#[test]
fn totp_enrollment_login_replay_and_skew() {
    let s = Server::start();
    s.create_user("bob", PW, &[]);
    let t0 = s.login("bob", PW, None).unwrap();
    let uri = s.cli_as(&t0, &["mfa", "enroll"], None).ok().stdout;
    assert!(uri.starts_with("otpauth://totp/latch:bob?secret="), "{uri}");
    let secret = secret_from_uri(uri.trim());
    // A wrong code does not confirm.
    let wrong = s.cli_as(&t0, &["mfa", "confirm", "000000"], None);
    let right = totp_at(&secret, s.now_ms());
    if right != "000000" {
        assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    }
    s.cli_as(&t0, &["mfa", "confirm", &right], None).ok();

    // Enrolled: password alone is not enough.
    let no_code = s.login("bob", PW, None).unwrap_err();
    assert!(no_code.stderr.contains("MFA enrolled"), "{}", no_code.stderr);
    // The confirmation code cannot be reused to log in.
    let reused = s.login("bob", PW, Some(&right)).unwrap_err();
    assert!(reused.stderr.contains("already used"), "{}", reused.stderr);

    s.advance("30s");
    let code = totp_at(&secret, s.now_ms());
    let t1 = s.login("bob", PW, Some(&code)).unwrap();
    assert_eq!(s.cli_as(&t1, &["whoami", "-o", "json"], None).ok().json()["mfa"], true);
    // Replay of the same code is refused.
    let replay = s.login("bob", PW, Some(&code)).unwrap_err();
    assert!(replay.stderr.contains("already used"), "{}", replay.stderr);

    // Skew: the previous step's code is accepted, two steps back is not.
    s.advance("60s");
    let now = s.now_ms();
    let prev = totp_at(&secret, now - 30_000);
    s.login("bob", PW, Some(&prev)).unwrap();
    s.advance("90s");
    let now = s.now_ms();
    let stale = totp_at(&secret, now - 60_000);
    if stale != totp_at(&secret, now)
        && stale != totp_at(&secret, now + 30_000)
        && stale != totp_at(&secret, now - 30_000)
    {
        assert!(s.login("bob", PW, Some(&stale)).is_err(), "a code two steps old is refused");
    }

    let reasons: Vec<String> =
        s.audit("auth.login").iter().filter_map(|e| e["details"]["reason"].as_str().map(str::to_string)).collect();
    assert!(reasons.contains(&"mfa_required".to_string()));
    assert!(reasons.contains(&"totp_replayed".to_string()));
    assert_eq!(s.audit("mfa.confirm").len(), 1);
    let dump = s.cli(&["audit", "list", "-o", "json"]).ok().stdout;
    assert!(!dump.contains(&secret), "the TOTP secret never reaches the audit log");
}

#[test]
fn mfa_cannot_be_replaced_without_the_current_factor() {
    let s = Server::start();
    s.create_user("carol", PW, &[]);
    let t0 = s.login("carol", PW, None).unwrap();
    let secret = secret_from_uri(s.cli_as(&t0, &["mfa", "enroll"], None).ok().stdout.trim());
    s.cli_as(&t0, &["mfa", "confirm", &totp_at(&secret, s.now_ms())], None).ok();
    // The pre-MFA session cannot re-enroll (a stolen password must not move the factor).
    let out = s.cli_as(&t0, &["mfa", "enroll"], None);
    assert_eq!(out.code, 3, "{}", out.stderr);
    // An admin can reset it.
    s.cli(&["user", "reset-mfa", "carol"]).ok();
    s.login("carol", PW, None).unwrap();
}

#[test]
fn rate_limit_engages_per_identity_and_per_source() {
    let s = Server::start();
    s.create_user("dave", PW, &[]);
    for _ in 0..5 {
        assert!(s.login("dave", "not the password", None).is_err());
    }
    // Locked: even the right password is refused, with 429 and Retry-After.
    let (status, body) = s.http("POST", "/v1/auth/login", None, Some(&json!({ "user": "dave", "password": PW })));
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    let denied: Vec<_> =
        s.audit("auth.login").into_iter().filter(|e| e["details"]["reason"] == "rate_limited").collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["outcome"], "denied");
    // Other identities are not locked by dave's failures...
    s.create_user("erin", PW, &[]);
    s.login("erin", PW, None).unwrap();
    // ...until the source address itself passes its limit (20 failures).
    for i in 0..15 {
        assert!(s.login(&format!("ghost{i}"), PW, None).is_err());
    }
    let (status, _) = s.http("POST", "/v1/auth/login", None, Some(&json!({ "user": "erin", "password": PW })));
    assert_eq!(status, 429, "the source address is now locked");
    // The window passes (test clock): logins work again.
    s.advance("6m");
    s.login("dave", PW, None).unwrap();
}

#[test]
fn disabling_or_deleting_a_user_kills_their_sessions_at_once() {
    let s = Server::start();
    s.create_user("frank", PW, &[]);
    let t = s.login("frank", PW, None).unwrap();
    s.cli_as(&t, &["whoami"], None).ok();
    s.cli(&["user", "disable", "frank"]).ok();
    let out = s.cli_as(&t, &["whoami"], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("invalid, expired or revoked"), "{}", out.stderr);
    assert!(s.login("frank", PW, None).is_err(), "a disabled user cannot log in");
    s.cli(&["user", "enable", "frank"]).ok();
    assert_eq!(s.cli_as(&t, &["whoami"], None).code, 1, "re-enabling does not revive old sessions");
    let t2 = s.login("frank", PW, None).unwrap();
    s.cli(&["user", "delete", "frank"]).ok();
    assert_eq!(s.cli_as(&t2, &["whoami"], None).code, 1);
    let disable = s.audit("user.disable");
    assert_eq!(disable[0]["actor"], "user:admin");
    assert_eq!(disable[0]["target"], "user:frank");
    assert_eq!(s.audit("user.delete").len(), 1);
}

#[test]
fn sessions_expire_and_logout_revokes() {
    let s = Server::start();
    s.create_user("gina", PW, &[]);
    let t = s.login("gina", PW, None).unwrap();
    s.cli_as(&t, &["logout"], None).ok();
    assert_eq!(s.cli_as(&t, &["whoami"], None).code, 1);
    assert_eq!(s.audit("auth.logout").len(), 1);

    let t = s.login("gina", PW, None).unwrap();
    s.advance("7h59m");
    s.cli_as(&t, &["whoami"], None).ok();
    s.advance("2m");
    assert_eq!(s.cli_as(&t, &["whoami"], None).code, 1, "sessions end after 8 h");
}

#[test]
fn service_principal_login_rotation_and_disable() {
    let s = Server::start();
    s.cli(&["group", "create", "deployers"]).ok();
    let creds = s.cli(&["sp", "create", "ci-deploy", "--group", "deployers", "-o", "json"]).ok().json();
    let id = creds["client_id"].as_str().unwrap().to_string();
    let secret = creds["client_secret"].as_str().unwrap().to_string();
    let sp_login =
        |secret: &str| run_cli(&s.addr, "", &["login", "--sp", &id, "--password-stdin", "-o", "json"], Some(secret));

    let t = sp_login(&secret).ok().json()["token"].as_str().unwrap().to_string();
    let who = s.cli_as(&t, &["whoami", "-o", "json"], None).ok().json();
    assert_eq!(who["kind"], "service_principal");
    assert_eq!(who["groups"], json!(["deployers"]));
    // Not an admin: listing users is denied with exit code 3.
    assert_eq!(s.cli_as(&t, &["user", "list"], None).code, 3);
    assert_eq!(sp_login("ltsp_wrong").code, 1);

    let rotated = s.cli(&["sp", "rotate-secret", "ci-deploy", "-o", "json"]).ok().json();
    let new_secret = rotated["client_secret"].as_str().unwrap().to_string();
    assert_eq!(s.cli_as(&t, &["whoami"], None).code, 1, "rotation revokes existing sessions");
    assert_eq!(sp_login(&secret).code, 1, "the old secret no longer works");
    let t2 = sp_login(&new_secret).ok().json()["token"].as_str().unwrap().to_string();
    s.cli(&["sp", "disable", "ci-deploy"]).ok();
    assert_eq!(s.cli_as(&t2, &["whoami"], None).code, 1);
    assert_eq!(sp_login(&new_secret).code, 1);

    let logins = s.audit("auth.login");
    assert!(logins.iter().any(|e| e["actor"] == "service_principal:ci-deploy" && e["outcome"] == "success"));
    assert!(logins.iter().any(|e| e["details"]["reason"] == "bad_secret"));
    assert!(logins.iter().any(|e| e["details"]["reason"] == "disabled"));
    let all = s.cli(&["audit", "list", "-o", "json"]).ok().stdout;
    assert!(!all.contains(&secret) && !all.contains(&new_secret), "secrets never in audit");
}

#[test]
fn deleting_a_service_principal_ends_its_sessions_at_once() {
    let s = Server::start();
    let creds = s.cli(&["sp", "create", "nightly", "-o", "json"]).ok().json();
    let id = creds["client_id"].as_str().unwrap().to_string();
    let secret = creds["client_secret"].as_str().unwrap().to_string();
    let login = || run_cli(&s.addr, "", &["login", "--sp", &id, "--password-stdin", "-o", "json"], Some(&secret));
    let t = login().ok().json()["token"].as_str().unwrap().to_string();
    s.cli_as(&t, &["whoami"], None).ok();
    s.cli(&["sp", "delete", "nightly"]).ok();
    let out = s.cli_as(&t, &["whoami"], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("invalid, expired or revoked"), "{}", out.stderr);
    assert_eq!(login().code, 1, "a deleted service principal cannot log in");
    let deleted = s.audit("sp.delete");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["target"], "service_principal:nightly");
}

#[test]
fn groups_and_membership() {
    let s = Server::start();
    s.create_user("hank", PW, &[]);
    s.cli(&["group", "create", "dba", "--description", "database admins"]).ok();
    s.cli(&["group", "add", "dba", "hank"]).ok();
    let g = s.cli(&["group", "show", "dba", "-o", "json"]).ok().json();
    assert_eq!(g["members"], json!([{ "kind": "user", "name": "hank" }]));
    let dup = s.cli(&["group", "add", "dba", "hank"]);
    assert_eq!(dup.code, 1);
    assert!(dup.stderr.contains("already a member"), "{}", dup.stderr);
    s.cli(&["group", "remove", "dba", "hank"]).ok();
    assert_eq!(s.cli(&["user", "show", "hank", "-o", "json"]).ok().json()["groups"], json!([]));
    // The admins group and the last admin's own membership are protected.
    assert_eq!(s.cli(&["group", "delete", "admins"]).code, 1);
    assert_eq!(s.cli(&["group", "remove", "admins", "admin"]).code, 1);
    s.cli(&["group", "delete", "dba"]).ok();
    assert_eq!(s.audit("group.add_member").len(), 1);
    assert_eq!(s.audit("group.remove_member").len(), 1);
}

#[test]
fn exit_codes_follow_the_contract() {
    let s = Server::start();
    s.create_user("ivy", PW, &[]);
    let t = s.login("ivy", PW, None).unwrap();
    assert_eq!(s.cli_as(&t, &["user", "list"], None).code, 3, "forbidden is 3");
    assert_eq!(s.cli(&["user", "frobnicate"]).code, 2, "usage error is 2");
    assert_eq!(s.cli(&["login", "--user", "ivy"]).code, 2, "missing --password-stdin is a usage error");
    assert_eq!(s.cli(&["user", "show", "nobody"]).code, 1, "not found is 1");
    let json_err = s.cli(&["user", "show", "nobody", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(json_err.stderr.trim()).unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    let unreachable = run_cli("http://127.0.0.1:1", &s.token, &["whoami"], None);
    assert_eq!(unreachable.code, 1);
    assert!(unreachable.stderr.contains("cannot reach latch"), "{}", unreachable.stderr);
}
