//! Service-principal secrets with a lifetime, rolled without downtime:
//! `latch sp rotate` prints a new secret while the previous one keeps
//! working for the overlap; past its lifetime a secret stops authenticating
//! with an error naming the expiry; an alert fires before that; the
//! inventory shows expiry and rotation status. Time moves by the test clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Out, Server, eventually, run_cli};
use serde_json::{Value, json};

fn sp_login(s: &Server, id: &str, secret: &str) -> Out {
    run_cli(&s.addr, "", &["login", "--sp", id, "--password-stdin", "-o", "json"], Some(secret))
}

fn session(s: &Server, id: &str, secret: &str) -> String {
    sp_login(s, id, secret).ok().json()["token"].as_str().unwrap().to_string()
}

fn inventory_entry(s: &Server, name: &str) -> Value {
    let inv = s.cli(&["inventory", "-o", "json"]).ok().json();
    inv["service_principal_secrets"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap()
}

const PW: &str = "correct horse battery";

/// Moves the clock, then logs the administrator in again (sessions last 8h).
fn advance(s: &mut Server, d: &str) {
    s.advance(d);
    s.token = s.login("admin", PW, None).unwrap();
}

fn admin_password(s: &Server) {
    let (code, body) = s.http("PUT", "/v1/users/admin/password", Some(&s.token), Some(&json!({ "password": PW })));
    assert!(code < 300, "{body}");
}

fn alerts(s: &Server) -> Vec<Value> {
    s.audit("alert.raise").into_iter().filter(|e| e["details"]["rule"] == "sp-secret-expiring").collect()
}

#[test]
fn a_rolling_rotation_keeps_the_previous_secret_for_the_overlap_and_secrets_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(&tmp.path().join("data"), &["--alert-interval", "1s"]);
    admin_password(&s);
    s.cli(&["group", "create", "deployers"]).ok();
    let created =
        s.cli(&["sp", "create", "ci", "--group", "deployers", "--secret-lifetime", "30d", "-o", "json"]).ok().json();
    let id = created["client_id"].as_str().unwrap().to_string();
    let first = created["client_secret"].as_str().unwrap().to_string();
    assert_eq!(created["service_principal"]["secret_lifetime"], "30d");
    let expires = created["service_principal"]["secret_expires_at"].as_str().unwrap().to_string();
    assert_eq!(inventory_entry(&s, "sp:ci")["expires_at"], expires.as_str());
    assert_eq!(inventory_entry(&s, "sp:ci")["rotation"], "ok");
    let old_session = session(&s, &id, &first);

    // Bad input is refused and changes nothing.
    for (args, why) in [
        (vec!["--overlap", "31d"], "longer than the new secret's lifetime"),
        (vec!["--overlap", "soon"], "overlap"),
        (vec!["--overlap", "1h", "--secret-lifetime", "5s"], "at least 1m"),
    ] {
        let mut cmd = vec!["sp", "rotate", "ci"];
        cmd.extend(args);
        let out = s.cli(&cmd);
        assert!(out.code != 0 && out.stderr.contains(why), "{cmd:?}: {}", out.stderr);
    }
    assert_eq!(s.audit("sp.rotate_secret").len(), 0);
    session(&s, &id, &first);

    // Roll: a new secret, the previous one (and its sessions) good for 2h.
    let rolled = s.cli(&["sp", "rotate", "ci", "--overlap", "2h", "-o", "json"]).ok().json();
    let second = rolled["client_secret"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert!(rolled["service_principal"]["previous_secret_expires_at"].is_string(), "{rolled}");
    assert_eq!(inventory_entry(&s, "sp:ci")["rotation"], "rolling");
    s.cli_as(&old_session, &["whoami"], None).ok();
    session(&s, &id, &first);
    let new_session = session(&s, &id, &second);
    s.cli_as(&new_session, &["whoami"], None).ok();
    let logins = s.audit("auth.login");
    assert!(logins.iter().any(|e| e["details"]["method"] == "client_secret_previous"), "{logins:?}");

    // The overlap ends: the previous secret stops, naming when.
    s.advance("2h");
    s.advance("1s");
    let out = sp_login(&s, &id, &first);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("expired at") && out.stderr.contains("latch sp rotate ci"), "{}", out.stderr);
    session(&s, &id, &second);
    assert_eq!(inventory_entry(&s, "sp:ci")["rotation"], "ok");

    // Nearing the end of its lifetime: an alert (the warning window is 14 days).
    assert!(alerts(&s).is_empty());
    advance(&mut s, "17d");
    eventually("the expiry alert", || !alerts(&s).is_empty());
    let a = &alerts(&s)[0]["details"];
    assert_eq!((a["severity"].clone(), a["user"].clone()), (json!("warning"), json!("service_principal:ci")));
    assert!(a["message"].as_str().unwrap().contains("latch sp rotate ci"), "{a}");

    // Past its lifetime: refused, the error names the expiry; the inventory and M4 show it.
    advance(&mut s, "14d");
    let second_expiry =
        s.cli(&["sp", "show", "ci", "-o", "json"]).ok().json()["secret_expires_at"].as_str().unwrap().to_string();
    let out = sp_login(&s, &id, &second);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains(&format!("expired at {second_expiry}")), "{}", out.stderr);
    let entry = inventory_entry(&s, "sp:ci");
    assert_eq!((entry["rotation"].clone(), entry["long_lived"].clone()), (json!("expired"), json!(true)));
    let slo = s.cli(&["slo", "-o", "json"]).ok().json();
    let m4 = slo["m4"]["service_principal_secrets"].as_array().unwrap();
    assert!(m4.iter().any(|c| c["name"] == "sp:ci" && c["rotation"] == "expired"), "{m4:?}");
    eventually("the expired alert", || alerts(&s).iter().any(|e| e["details"]["severity"] == "critical"));
    let failures: Vec<Value> = s
        .audit("auth.login")
        .into_iter()
        .filter(|e| e["outcome"] == "failure" && e["details"]["reason"] == "secret_expired")
        .collect();
    assert_eq!(failures.len(), 2, "{failures:?}");

    // An immediate rotation (no overlap) ends the old secret and its sessions at once.
    let third = s.cli(&["sp", "rotate", "ci", "--overlap", "0s", "-o", "json"]).ok().json();
    let third = third["client_secret"].as_str().unwrap().to_string();
    let t = session(&s, &id, &third);
    let fourth = s.cli(&["sp", "rotate-secret", "ci", "-o", "json"]).ok().json();
    assert_eq!(s.cli_as(&t, &["whoami"], None).code, 1, "sessions revoked");
    assert_eq!(sp_login(&s, &id, &third).code, 1);
    session(&s, &id, fourth["client_secret"].as_str().unwrap());

    // Every change audited; no secret in the audit log.
    let rotations = s.audit("sp.rotate_secret");
    assert_eq!(rotations.len(), 3);
    assert_eq!(rotations[0]["details"]["overlap"], "2h");
    assert_eq!(rotations[0]["details"]["sessions_revoked"], false);
    let all = s.cli(&["audit", "list", "-o", "json"]).ok().stdout;
    for secret in [&first, &second, &third] {
        assert!(!all.contains(secret.as_str()), "a secret in the audit log");
    }
}

#[test]
fn secrets_without_a_lifetime_never_expire_and_show_so() {
    let mut s = Server::start();
    admin_password(&s);
    let created = s.cli(&["sp", "create", "batch", "-o", "json"]).ok().json();
    assert!(created["service_principal"]["secret_expires_at"].is_null(), "{created}");
    let id = created["client_id"].as_str().unwrap().to_string();
    advance(&mut s, "200d");
    advance(&mut s, "200d");
    session(&s, &id, created["client_secret"].as_str().unwrap());
    let entry = inventory_entry(&s, "sp:batch");
    assert_eq!((entry["rotation"].clone(), entry["long_lived"].clone()), (json!("no-expiry"), json!(true)));
    // A lifetime given later applies from the next secret on.
    let rolled = s.cli(&["sp", "rotate", "batch", "--secret-lifetime", "7d", "-o", "json"]).ok().json();
    assert_eq!(rolled["service_principal"]["secret_lifetime"], "7d");
    assert!(rolled["service_principal"]["secret_expires_at"].is_string());
    let out = s.cli(&["sp", "list"]).ok().stdout;
    assert!(out.contains("SECRET_EXPIRES_AT") && out.contains("batch"), "{out}");
}

#[test]
fn a_session_never_outlives_the_secret_it_was_opened_with() {
    let mut s = Server::start();
    admin_password(&s);
    let created = s.cli(&["sp", "create", "short", "--secret-lifetime", "2h", "-o", "json"]).ok().json();
    let id = created["client_id"].as_str().unwrap().to_string();
    let secret = created["client_secret"].as_str().unwrap().to_string();
    let secret_end = created["service_principal"]["secret_expires_at"].as_str().unwrap().to_string();

    // Early in the secret's life the session gets its usual TTL (1h)...
    let early = sp_login(&s, &id, &secret).ok().json();
    assert_ne!(early["expires_at"], secret_end.as_str(), "{early}");
    // ...ten minutes before its end, only those ten minutes.
    advance(&mut s, "110m");
    let late = sp_login(&s, &id, &secret).ok().json();
    assert_eq!(late["expires_at"], secret_end.as_str(), "{late}");
    let token = late["token"].as_str().unwrap().to_string();
    s.cli_as(&token, &["whoami"], None).ok();

    // The previous secret of a rolling rotation bounds its sessions the same way.
    let rolled = s.cli(&["sp", "rotate", "short", "--overlap", "5m", "-o", "json"]).ok().json();
    let overlap_end = rolled["service_principal"]["previous_secret_expires_at"].as_str().unwrap().to_string();
    let previous = sp_login(&s, &id, &secret).ok().json();
    assert_eq!(previous["expires_at"], overlap_end.as_str(), "{previous}");
    let previous_token = previous["token"].as_str().unwrap().to_string();

    advance(&mut s, "6m");
    assert_eq!(s.cli_as(&previous_token, &["whoami"], None).code, 1, "the overlap is over");
    s.cli_as(&token, &["whoami"], None).ok();
    advance(&mut s, "5m");
    assert_eq!(s.cli_as(&token, &["whoami"], None).code, 1, "the secret it was opened with has expired");
    session(&s, &id, rolled["client_secret"].as_str().unwrap());
}
