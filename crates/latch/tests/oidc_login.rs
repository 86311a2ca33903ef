//! People sign in through a real OpenID Provider: panva's certified
//! `oidc-provider` (npm), started on loopback by the test
//! (`support/oidc_provider.mjs`), driven through its authorization code flow
//! over plain HTTP as a browser would (cookies, redirects), with
//! `latch login --oidc` listening for the callback. Users are provisioned
//! from the ID token, mapped groups follow the IdP, and `amr` tells policy
//! whether MFA was used.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStderr, Command, Stdio};

use common::oidc::{Browser, Provider, SECRET, absolute};
use common::{BIN, Out, Server};
use serde_json::{Value, json};

/// `latch login --oidc corp -o json FLAGS…` running, its stderr read as it comes.
struct Login {
    child: Child,
    stderr: BufReader<ChildStderr>,
    seen: String,
}

impl Login {
    fn start(s: &Server, timeout: &str, flags: &[&str]) -> Login {
        let mut child = Command::new(BIN)
            .args(["login", "--oidc", "corp", "--timeout", timeout, "-o", "json"])
            .args(flags)
            .env("LATCH_ADDR", &s.addr)
            .env_remove("LATCH_TOKEN")
            .env_remove("LATCH_CACERT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        Login { child, stderr, seen: String::new() }
    }

    /// The next line of stderr, or None once it is closed.
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        if self.stderr.read_line(&mut line).unwrap() == 0 {
            return None;
        }
        self.seen.push_str(&line);
        Some(line)
    }

    /// Waits for the CLI to end; everything it said.
    fn finish(self) -> Out {
        let Login { child, mut stderr, mut seen } = self;
        let rest = std::thread::spawn(move || {
            let mut t = String::new();
            stderr.read_to_string(&mut t).unwrap();
            t
        });
        let out = child.wait_with_output().unwrap();
        seen.push_str(&rest.join().unwrap());
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: seen,
        }
    }
}

/// `latch login --oidc corp --no-device -o json`, signing in at the
/// provider as `login` (with a second factor when `mfa`; `name@ACR` also
/// has the provider assert that acr); returns the CLI's result.
fn sign_in(s: &Server, p: &Provider, login: &str, mfa: bool) -> Out {
    sign_in_with(s, p, login, mfa, &["--no-device"])
}

/// [`sign_in`] with other `latch login` flags (none: the CLI picks the flow).
fn sign_in_with(s: &Server, p: &Provider, login: &str, mfa: bool, flags: &[&str]) -> Out {
    let mut cli = Login::start(s, "30s", flags);
    let url = loop {
        match cli.line() {
            None => return cli.finish(),
            Some(line) if line.starts_with("http") => break line.trim().to_string(),
            Some(_) => {}
        }
    };
    assert!(url.starts_with(&format!("{}/auth?", p.issuer)), "{url}");
    assert!(url.contains("code_challenge_method=S256") && url.contains("nonce="), "{url}");

    // The user's browser: authorize -> login form -> resume -> back to the CLI.
    let mut b = Browser::default();
    let (status, loc) = b.go("GET", &url, None);
    assert_eq!(status, 303, "authorize");
    let interaction = absolute(&p.issuer, &loc.unwrap());
    let (login, acr) = login.split_once('@').unwrap_or((login, ""));
    let form = format!("login={login}&mfa={}&acr={acr}", if mfa { 1 } else { 0 });
    let (status, loc) = b.go("POST", &format!("{interaction}/login"), Some(&form));
    assert_eq!(status, 303, "login");
    let (status, loc) = b.go("GET", &absolute(&p.issuer, &loc.unwrap()), None);
    assert_eq!(status, 303, "resume");
    let callback = loc.unwrap();
    assert!(callback.starts_with("http://127.0.0.1:") && callback.contains("/callback?code="), "{callback}");
    let (status, _) = b.go("GET", &callback, None);
    assert_eq!(status, 200, "the CLI answers the browser");
    cli.finish()
}

const ROLE: &str = r#"name = "prod-db"
description = "Production database"
max_duration = "1h"
default_duration = "15m"
[approval]
required = 1
approvers = ["group:leads"]
[requirements]
mfa = true
[credentials.token]
audiences = ["https://db.internal"]
"#;

const REPORTS: &str = r#"name = "reports"
description = "Read the finance reports"
max_duration = "1h"
default_duration = "15m"
[approval]
required = 1
approvers = ["group:leads"]
"#;

const POLICIES: &str = r#"@id("eng-reports-after-a-strong-sign-in")
permit(principal in Group::"eng", action == Action::"request", resource == Role::"reports")
when { context.acr == "urn:latch:test:loa2" && context.amr.contains("pwd") };

@id("dbas-request")
permit(principal in Group::"dbas", action == Action::"request", resource);

@id("dbas-activate-with-mfa")
permit(principal in Group::"dbas", action == Action::"activate", resource == Role::"prod-db")
when { context.mfa };
"#;

fn setup(accounts: &Value) -> (tempfile::TempDir, Server, Provider) {
    let p = Provider::start(accounts);
    let (tmp, s) = serve(&p);
    (tmp, s, p)
}

/// A latch with provider `corp` (groups engineering → eng, database-admins → dbas), the roles and policies above.
fn serve(p: &Provider) -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("secret"), SECRET).unwrap();
    let conf = format!(
        r#"[[oidc]]
name = "corp"
issuer = "{}"
client_id = "latch"
client_secret_file = "secret"
scopes = ["openid", "profile", "groups"]
mfa_acr = ["urn:latch:test:loa2"]
[oidc.groups]
"engineering" = "eng"
"database-admins" = "dbas"
"#,
        p.issuer
    );
    let file = tmp.path().join("oidc.toml");
    std::fs::write(&file, conf).unwrap();
    let s = Server::start_in(&tmp.path().join("data"), &["--oidc", file.to_str().unwrap()]);
    for g in ["eng", "dbas", "leads"] {
        s.cli(&["group", "create", g]).ok();
    }
    s.apply_bundle(&[("roles/prod-db.toml", ROLE), ("roles/reports.toml", REPORTS), ("policies/main.cedar", POLICIES)]);
    (tmp, s)
}

fn last_login(s: &Server) -> Value {
    s.audit("auth.login").last().cloned().unwrap()
}

#[test]
fn people_sign_in_through_a_real_oidc_provider_with_groups_and_mfa() {
    let accounts = json!({
        "alice": { "groups": ["engineering", "database-admins", "unmapped-idp-group"] },
        "admin": { "groups": ["engineering"] },
    });
    let (_tmp, s, p) = setup(&accounts);
    let (status, v) = s.http("GET", "/v1/auth/oidc", None, None);
    assert_eq!((status, v["providers"][0]["name"].as_str()), (200, Some("corp")), "{v}");

    // First sign-in, with a second factor: alice is provisioned, in the mapped groups.
    let out = sign_in(&s, &p, "alice", true).ok();
    let v = out.json();
    assert_eq!((v["name"].as_str(), v["kind"].as_str(), v["mfa"].as_bool()), (Some("alice"), Some("user"), Some(true)));
    let token = v["token"].as_str().unwrap().to_string();
    let (_, who) = s.http("GET", "/v1/auth/whoami", Some(&token), None);
    assert_eq!(who["groups"], json!(["dbas", "eng"]), "{who}");
    let ev = last_login(&s);
    assert_eq!((ev["actor"].as_str(), ev["outcome"].as_str()), (Some("user:alice"), Some("success")));
    let d = &ev["details"];
    assert_eq!(
        (d["method"].as_str(), d["provider"].as_str(), d["provisioned"].as_bool()),
        (Some("oidc"), Some("corp"), Some(true))
    );
    assert_eq!(d["amr"], json!(["pwd", "otp"]));
    assert_eq!(d["groups_added"], json!(["dbas", "eng"]));
    let alice = s.cli(&["user", "show", "alice", "-o", "json"]).ok().json();
    assert_eq!(alice["name"], "alice");

    // The MFA claim reaches policy: prod-db needs MFA, and alice's session has it.
    let req = json!({ "role": "prod-db", "duration": "15m", "reason": "migration" });
    let (status, v) = s.http("POST", "/v1/requests", Some(&token), Some(&req));
    assert_eq!((status, v["request"]["state"].as_str()), (201, Some("active")), "{v}");

    // Without a second factor: the same user (linked by sub), no MFA, refused by the role.
    let out = sign_in(&s, &p, "alice", false).ok();
    let v = out.json();
    assert_eq!(v["mfa"], false);
    assert_eq!(last_login(&s)["details"]["provisioned"], false);
    let (status, v) = s.http("POST", "/v1/requests", Some(v["token"].as_str().unwrap()), Some(&req));
    assert_eq!(status, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("requires a session with MFA"), "{v}");

    // The IdP takes alice out of database-admins: the next sign-in removes her from dbas.
    p.set_accounts(&json!({ "alice": { "groups": ["engineering"] } }));
    let v = sign_in(&s, &p, "alice", true).ok().json();
    let (_, who) = s.http("GET", "/v1/auth/whoami", Some(v["token"].as_str().unwrap()), None);
    assert_eq!(who["groups"], json!(["eng"]));
    assert_eq!(last_login(&s)["details"]["groups_removed"], json!(["dbas"]));

    // A provider account named like a local user does not become that user.
    let out = sign_in(&s, &p, "admin", true);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("refused (account): the name") && out.stderr.contains("belongs to a local user"),
        "{}",
        out.stderr
    );
    let ev = last_login(&s);
    assert_eq!((ev["outcome"].as_str(), ev["details"]["reason"].as_str()), (Some("failure"), Some("account")), "{ev}");

    // A disabled user cannot sign in through the provider either.
    s.cli(&["user", "disable", "alice"]).ok();
    let out = sign_in(&s, &p, "alice", true);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("user alice is disabled"), "{}", out.stderr);
}

#[test]
fn forged_or_replayed_callbacks_are_refused_and_audited() {
    let (_tmp, s, p) = setup(&json!({}));
    // An unknown state (a forged callback): refused before the provider is asked.
    let (status, v) =
        s.http("POST", "/v1/auth/oidc/corp/callback", None, Some(&json!({ "state": "forged", "code": "x" })));
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("refused (state): unknown or already used state"), "{v}");
    assert_eq!(last_login(&s)["details"]["reason"], "state");

    // A real state with a made-up code: the provider refuses to redeem it; the state is spent.
    let (status, started) = s.http(
        "POST",
        "/v1/auth/oidc/corp/start",
        None,
        Some(&json!({ "redirect_uri": "http://127.0.0.1:9/callback" })),
    );
    assert_eq!(status, 200, "{started}");
    assert!(started["authorization_url"].as_str().unwrap().starts_with(&p.issuer));
    let body = json!({ "state": started["state"], "code": "made-up" });
    let (status, v) = s.http("POST", "/v1/auth/oidc/corp/callback", None, Some(&body));
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("refused (code): the provider did not redeem the code"),
        "{v}"
    );
    let (status, v) = s.http("POST", "/v1/auth/oidc/corp/callback", None, Some(&body));
    assert_eq!(status, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("already used state"), "{v}");

    // Only loopback redirect URIs; unknown providers are named.
    let (status, v) = s.http(
        "POST",
        "/v1/auth/oidc/corp/start",
        None,
        Some(&json!({ "redirect_uri": "https://evil.example/callback" })),
    );
    assert_eq!(status, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("must be a loopback URL"), "{v}");
    let (status, v) =
        s.http("POST", "/v1/auth/oidc/nope/start", None, Some(&json!({ "redirect_uri": "http://127.0.0.1:9/cb" })));
    assert_eq!(status, 404);
    assert!(v["error"]["message"].as_str().unwrap().contains("no OIDC provider named \"nope\""), "{v}");
}

/// `latch login --oidc corp` where the provider offers the device grant: the
/// CLI prints a code; the user enters it at the provider's pages and
/// approves (signing in as `login`) or aborts.
fn sign_in_device(s: &Server, p: &Provider, login: &str, approve: bool) -> Out {
    let mut cli = Login::start(s, "60s", &[]);
    let code = loop {
        let line = cli.line().unwrap_or_else(|| panic!("the CLI printed no code: {}", cli.seen));
        if let Some((_, code)) = line.trim().split_once("enter the code ") {
            break code.to_string();
        }
    };
    assert!(cli.seen.contains(&format!("{}/device", p.issuer)), "{}", cli.seen);
    p.answer_device_code(&code, login, approve);
    cli.finish()
}

#[test]
fn the_device_grant_signs_in_where_the_provider_offers_it_and_a_denial_is_refused() {
    let (_tmp, s, p) = setup(&json!({ "alice": { "groups": ["database-admins"] } }));
    let (_, v) = s.http("GET", "/v1/auth/oidc", None, None);
    assert_eq!(v["providers"][0]["device_grant"], true, "{v}");

    // No flag: the CLI takes the device grant; the same ID-token checks and provisioning.
    let out = sign_in_device(&s, &p, "alice", true).ok();
    assert!(out.stderr.contains("Waiting for the approval"), "{}", out.stderr);
    let v = out.json();
    assert_eq!((v["name"].as_str(), v["mfa"].as_bool()), (Some("alice"), Some(true)), "{v}");
    let (_, who) = s.http("GET", "/v1/auth/whoami", Some(v["token"].as_str().unwrap()), None);
    assert_eq!(who["groups"], json!(["dbas"]), "{who}");
    let ev = last_login(&s);
    assert_eq!((ev["actor"].as_str(), ev["details"]["provisioned"].as_bool()), (Some("user:alice"), Some(true)));

    // The user aborts at the provider: refused, saying so, and audited.
    let out = sign_in_device(&s, &p, "alice", false);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("refused (access denied): the sign-in was denied at the provider"), "{}", out.stderr);
    let ev = last_login(&s);
    assert_eq!((ev["outcome"].as_str(), ev["details"]["reason"].as_str()), (Some("failure"), Some("access_denied")));

    // Polling a made-up handle, or one whose code expired, is refused by latch before the provider is asked.
    let (status, v) = s.http("POST", "/v1/auth/oidc/corp/device/poll", None, Some(&json!({ "handle": "forged" })));
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("refused (state): unknown or already used"), "{v}");
    let (status, started) = s.http("POST", "/v1/auth/oidc/corp/device", None, Some(&json!({})));
    assert_eq!(status, 200, "{started}");
    let handle = json!({ "handle": started["handle"] });
    let (status, v) = s.http("POST", "/v1/auth/oidc/corp/device/poll", None, Some(&handle));
    assert_eq!((status, v["status"].as_str()), (202, Some("authorization_pending")), "{v}");
    // A device handle is not a code-flow state.
    let (status, v) =
        s.http("POST", "/v1/auth/oidc/corp/callback", None, Some(&json!({ "state": started["handle"], "code": "x" })));
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("another kind of sign-in"), "{v}");
    let (status, started) = s.http("POST", "/v1/auth/oidc/corp/device", None, Some(&json!({})));
    assert_eq!(status, 200);
    s.advance("11m");
    let (status, v) =
        s.http("POST", "/v1/auth/oidc/corp/device/poll", None, Some(&json!({ "handle": started["handle"] })));
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("expired before it was approved"), "{v}");
}

#[test]
fn without_a_device_grant_the_cli_falls_back_to_the_browser_redirect() {
    let p = Provider::start_with(&json!({}), &[("DEVICE_FLOW", "0")]);
    let (_tmp, s) = serve(&p);
    let (_, v) = s.http("GET", "/v1/auth/oidc", None, None);
    assert_eq!(v["providers"][0]["device_grant"], false, "{v}");
    // No flag: the loopback redirect.
    let v = sign_in_with(&s, &p, "carol", true, &[]).ok().json();
    assert_eq!(v["name"], "carol");
    // Forcing the device grant says what is missing.
    let out = s.cli(&["login", "--oidc", "corp", "--device"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("offers no device authorization grant"), "{}", out.stderr);
}

#[test]
fn the_providers_acr_reaches_policy_and_can_count_as_mfa() {
    let (_tmp, s, p) = setup(&json!({ "alice": { "groups": ["engineering"] } }));
    let req = json!({ "role": "reports", "duration": "15m", "reason": "quarterly close" });

    // The provider asserts loa2 (a password only, by amr): a policy asking for it permits;
    // mfa_acr makes that acr count as MFA.
    let v = sign_in(&s, &p, "alice@urn:latch:test:loa2", false).ok().json();
    assert_eq!(v["mfa"], true, "{v}");
    let d = &last_login(&s)["details"];
    assert_eq!((d["acr"].as_str(), &d["amr"]), (Some("urn:latch:test:loa2"), &json!(["pwd"])), "{d}");
    let (status, r) = s.http("POST", "/v1/requests", Some(v["token"].as_str().unwrap()), Some(&req));
    assert_eq!(status, 201, "{r}");

    // Another acr, or none: the same user, the same policy, forbidden; no MFA either.
    for login in ["alice@urn:latch:test:loa1", "alice"] {
        let v = sign_in(&s, &p, login, false).ok().json();
        assert_eq!(v["mfa"], false, "{login}: {v}");
        let (status, r) = s.http("POST", "/v1/requests", Some(v["token"].as_str().unwrap()), Some(&req));
        assert_eq!(status, 403, "{login}: {r}");
    }
    assert!(last_login(&s)["details"]["acr"].is_null());
}

#[test]
fn anonymous_sign_in_starts_are_throttled_per_source() {
    let (_tmp, s, _p) = setup(&json!({}));
    let start = json!({ "redirect_uri": "http://127.0.0.1:9/callback" });
    for i in 0..30 {
        let (status, v) = s.http("POST", "/v1/auth/oidc/corp/start", None, Some(&start));
        assert_eq!(status, 200, "{i}: {v}");
    }
    let starts = s.audit("auth.oidc_start");
    assert_eq!(starts.len(), 30, "every start is audited");
    assert!(starts.iter().all(|e| e["outcome"] == "success" && e["target"] == "oidc:corp"));

    // The 31st within failure_window: 429, saying when to retry; no row stored.
    let pending = |s: &Server| s.sql("SELECT COUNT(*) FROM oidc_logins")[0].clone();
    let before = pending(&s);
    let body = start.to_string();
    let json = [("Content-Type", "application/json")];
    let (status, headers, text) = s.http_raw("POST", "/v1/auth/oidc/corp/start", None, Some(&body), &json);
    assert_eq!(status, 429, "{text}");
    let retry: u64 = headers.iter().find(|(k, _)| k == "retry-after").unwrap().1.parse().unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    let said = format!("too many OIDC sign-ins started from this address: try again in {retry} s");
    assert!(text.contains(&said), "{text}");
    assert_eq!(pending(&s), before);
    let ev = s.audit("auth.oidc_start").last().cloned().unwrap();
    assert_eq!((ev["outcome"].as_str(), ev["details"]["reason"].as_str()), (Some("denied"), Some("rate_limited")));
    // The device grant and the dashboard count against the same budget.
    let (status, v) = s.http("POST", "/v1/auth/oidc/corp/device", None, Some(&json!({})));
    assert_eq!(status, 429, "{v}");
    let (status, headers, html) = s.http_raw("GET", "/ui/oidc/corp/start", None, None, &[]);
    assert_eq!(status, 429, "{html}");
    assert!(html.contains("too many OIDC sign-ins started") && headers.iter().any(|(k, _)| k == "retry-after"));

    // Once the window has passed, starts are accepted again.
    s.advance("5m");
    let (status, v) = s.http("POST", "/v1/auth/oidc/corp/start", None, Some(&start));
    assert_eq!(status, 200, "{v}");
}
