//! The web dashboard: in headless Chromium (Debian's `chromium` driven by
//! `playwright-core` from npm) an approver signs in, sees a pending request,
//! approves it, sees the grant, revokes it; screenshots of the three
//! dashboards are saved. Over plain HTTP: the CSP and other headers, CSRF
//! refusals (no token, wrong token, cross-origin), and hostile strings shown
//! escaped. People also sign in through a real OpenID Provider
//! (`oidc-provider`) in Chromium; a callback replayed in another browser is
//! refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;
use common::oidc::{Provider, SECRET};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

const ROLE: &str = r#"name = "prod"
max_duration = "2h"
[approval]
required = 1
approvers = ["group:leads"]
"#;

const POLICIES: &str = r#"@id("eng-request")
permit(principal in Group::"eng", action == Action::"request", resource);
@id("leads-approve")
permit(principal in Group::"leads", action == Action::"approve", resource);
"#;

fn setup() -> (Server, tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_in(&tmp.path().join("data"), &[]);
    s.cli(&["group", "create", "eng"]).ok();
    s.cli(&["group", "create", "leads"]).ok();
    s.create_user("alice", PW, &["eng"]);
    s.create_user("lead", PW, &["leads", "admins"]);
    s.apply_bundle(&[("roles/prod.toml", ROLE), ("policies/main.cedar", POLICIES)]);
    let alice = s.login("alice", PW, None).unwrap();
    let reason = "<script>alert(1)</script> db migration";
    let out = s.cli_as(&alice, &["request", "prod", "--for", "1h", "--reason", reason, "-o", "json"], None).ok();
    let req = out.json()["request"]["id"].as_str().unwrap().to_string();
    (s, tmp, req)
}

/// Signs in over plain HTTP; returns the session cookie.
fn sign_in(s: &Server, user: &str) -> String {
    let (_, headers, _) = s.http_raw("GET", "/ui/login", None, None, &[]);
    let login_cookie = set_cookie(&headers, "latch_login_csrf");
    let body = format!("user={user}&password={}&csrf={login_cookie}", PW.replace(' ', "+"));
    let cookie = format!("latch_login_csrf={login_cookie}");
    let form = [("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", cookie.as_str())];
    let (status, headers, _) = s.http_raw("POST", "/ui/login", None, Some(&body), &form);
    assert_eq!(status, 303);
    set_cookie(&headers, "latch_session")
}

fn set_cookie(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .find_map(|(_, v)| v.strip_prefix(&format!("{name}=")).map(|r| r.split(';').next().unwrap().to_string()))
        .unwrap_or_else(|| panic!("no {name} cookie in {headers:?}"))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

#[test]
fn pages_are_locked_down_and_forms_need_the_csrf_token() {
    let (s, _tmp, req) = setup();
    // Not signed in: sent to sign in.
    let (status, headers, _) = s.http_raw("GET", "/ui/oncall", None, None, &[]);
    assert_eq!((status, header(&headers, "location")), (303, "/ui/login"));
    // A login post without the form's cookie is refused.
    let (status, _, _) = s.http_raw(
        "POST",
        "/ui/login",
        None,
        Some("user=lead&password=x&csrf=forged"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(status, 403);

    let session = sign_in(&s, "lead");
    let cookie = format!("latch_session={session}");
    let (status, headers, html) = s.http_raw("GET", "/ui/oncall", None, None, &[("Cookie", &cookie)]);
    assert_eq!(status, 200);
    let csp = header(&headers, "content-security-policy");
    assert!(csp.starts_with("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("http"), "no inline code, no other origins: {csp}");
    assert_eq!(header(&headers, "x-frame-options"), "DENY");
    assert_eq!(header(&headers, "cache-control"), "no-store");
    assert!(!html.contains("<script"), "the pages run no script");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; db migration"), "hostile text shown escaped");
    assert!(html.contains(&req));
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();

    let approve = format!("/ui/requests/{req}/approve");
    let post = |body: &str, extra: &[(&str, &str)]| {
        let mut h = vec![("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", cookie.as_str())];
        h.extend_from_slice(extra);
        s.http_raw("POST", &approve, None, Some(body), &h)
    };
    assert_eq!(post("text=ok", &[]).0, 403, "no CSRF token");
    assert_eq!(post("text=ok&csrf=0000", &[]).0, 403, "wrong CSRF token");
    let good = format!("text=ok&csrf={csrf}");
    assert_eq!(post(&good, &[("Origin", "https://evil.example")]).0, 403, "cross-origin post");
    let state = |s: &Server| s.cli(&["show", &req, "-o", "json"]).ok().json()["request"]["state"].clone();
    assert_eq!(state(&s), Value::from("pending"), "nothing refused changed anything");
    let (status, headers, _) = post(&good, &[]);
    assert_eq!((status, header(&headers, "location")), (303, format!("/ui/oncall?done=approved%20{req}").as_str()));
    assert_eq!(state(&s), Value::from("active"));
    let approvals = s.audit("request.approve");
    assert!(approvals.iter().any(|e| e["actor"] == "user:lead" && e["details"]["comment"] == "ok"), "{approvals:?}");
    // The CSS is ours; nothing else is fetched.
    let (status, headers, _) = s.http_raw("GET", "/ui/style.css", None, None, &[]);
    assert_eq!((status, header(&headers, "content-type")), (200, "text/css; charset=utf-8"));
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Chromium and playwright-core: installed by scripts/test; in CI their absence fails.
fn browser_ready() -> bool {
    let have_chromium = Path::new("/usr/bin/chromium").exists();
    let have_playwright = browser_dir().join("node_modules/playwright-core").exists();
    if !(have_chromium && have_playwright) {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "headless Chromium tests need Debian's chromium and `npm ci` in crates/latch/tests/browser (scripts/test does both)"
        );
        eprintln!("SKIPPED: browser test (chromium: {have_chromium}, playwright-core: {have_playwright})");
    }
    have_chromium && have_playwright
}

#[test]
fn an_approver_approves_and_revokes_in_headless_chromium() {
    if !browser_ready() {
        return;
    }
    let (s, _tmp, req) = setup();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let last = run_browser("dashboard.mjs", &[s.addr.as_str(), "lead", PW, req.as_str(), shots.to_str().unwrap()]);
    let grant = last["grant"].as_str().unwrap();
    for name in ["oncall", "executive", "debug"] {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{name}.png is a real screenshot");
    }
    // What the browser did is what the log says.
    assert!(s.audit("request.approve").iter().any(|e| e["actor"] == "user:lead"));
    let revokes = s.audit("grant.revoke");
    assert!(
        revokes.iter().any(|e| e["target"] == format!("grant:{grant}") && e["actor"] == "user:lead"),
        "{revokes:?}"
    );
}

/// Runs a Playwright script of `tests/browser` with `args`; it must succeed.
/// Returns the JSON of its last output line (what it saw).
fn run_browser(script: &str, args: &[&str]) -> Value {
    let out =
        Command::new("node").arg(browser_dir().join(script)).args(args).current_dir(browser_dir()).output().unwrap();
    let said = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script}: {said}");
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap()
}

/// A dev server whose dashboard offers sign-in through provider `corp`
/// (IdP group engineering → eng, database-admins → dbas).
fn serve_with_provider(p: &Provider) -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("secret"), SECRET).unwrap();
    let conf = format!(
        "[[oidc]]\nname = \"corp\"\nissuer = \"{}\"\nclient_id = \"latch\"\nclient_secret_file = \"secret\"\n\
         scopes = [\"openid\", \"profile\", \"groups\"]\n[oidc.groups]\n\"engineering\" = \"eng\"\n\"database-admins\" = \"dbas\"\n",
        p.issuer
    );
    std::fs::write(tmp.path().join("oidc.toml"), conf).unwrap();
    let file = tmp.path().join("oidc.toml");
    let s = Server::start_in(&tmp.path().join("data"), &["--oidc", file.to_str().unwrap()]);
    for g in ["eng", "dbas"] {
        s.cli(&["group", "create", g]).ok();
    }
    (tmp, s)
}

#[test]
fn people_sign_in_to_the_dashboard_through_a_real_oidc_provider_in_chromium() {
    if !browser_ready() {
        return;
    }
    let p = Provider::start(&json!({ "alice": { "groups": ["engineering", "database-admins", "other"] } }));
    let (_tmp, s) = serve_with_provider(&p);
    let last = run_browser("oidc_signin.mjs", &[s.addr.as_str(), "alice"]);
    assert_eq!(last["callback"], format!("{}/ui/oidc/corp/callback", s.addr));

    // Provisioned from the ID token, in the mapped groups.
    let alice = s.cli(&["user", "show", "alice", "-o", "json"]).ok().json();
    assert_eq!(alice["name"], "alice", "{alice}");
    let logins = s.audit("auth.login");
    let ok: Vec<&Value> = logins.iter().filter(|e| e["outcome"] == "success").collect();
    assert_eq!(ok.len(), 1, "one sign-in: {logins:?}");
    let d = &ok[0]["details"];
    assert_eq!((ok[0]["actor"].as_str(), d["provider"].as_str()), (Some("user:alice"), Some("corp")));
    assert_eq!((d["provisioned"].as_bool(), d["mfa"].as_bool()), (Some(true), Some(true)));
    assert_eq!(d["groups_added"], json!(["dbas", "eng"]));

    // The replays were refused as not this browser's, before the code was redeemed, and audited.
    let refused: Vec<&Value> = logins.iter().filter(|e| e["outcome"] == "failure").collect();
    let bindings: Vec<&str> = refused.iter().filter_map(|e| e["details"]["binding"].as_str()).collect();
    assert_eq!(bindings, ["mismatch", "missing", "missing"], "{refused:?}");
    assert!(refused.iter().all(|e| e["details"]["reason"] == "state" && e["target"] == "oidc:corp"), "{refused:?}");
    // Each start was counted and audited.
    assert_eq!(s.audit("auth.oidc_start").len(), 2);
}

#[test]
fn dashboard_oidc_callbacks_without_this_browsers_cookie_are_refused() {
    let p = Provider::start(&json!({}));
    let (_tmp, s) = serve_with_provider(&p);
    let (status, _, html) = s.http_raw("GET", "/ui/login", None, None, &[]);
    assert_eq!(status, 200);
    assert!(html.contains("href=\"/ui/oidc/corp/start\""), "the sign-in page offers the provider: {html}");

    // Start: to the provider, with a state that is a hash of this browser's cookie.
    let (status, headers, _) = s.http_raw("GET", "/ui/oidc/corp/start", None, None, &[]);
    assert_eq!(status, 303);
    let to = header(&headers, "location").to_string();
    assert!(to.starts_with(&format!("{}/auth?", p.issuer)), "{to}");
    let redirect = format!("redirect_uri={}", url_encode(&format!("{}/ui/oidc/corp/callback", s.addr)));
    assert!(to.contains(&redirect) && to.contains("code_challenge_method=S256"), "{to}");
    let cookie = headers.iter().find(|(k, v)| k == "set-cookie" && v.starts_with("latch_oidc=")).unwrap().1.clone();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/ui/oidc/corp/callback"), "{cookie}");
    let state = to.split("state=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let binding = cookie.split(';').next().unwrap().to_string();
    assert!(!binding.contains(&state), "the cookie is not the state");

    // The callback URL alone (a forged or replayed one) is refused and audited.
    let path = format!("/ui/oidc/corp/callback?code=x&state={state}");
    let (status, headers, _) = s.http_raw("GET", &path, None, None, &[]);
    assert_eq!(status, 303);
    assert!(header(&headers, "location").contains("not%20started%20in%20this%20browser"), "{headers:?}");
    let ev = s.audit("auth.login").last().cloned().unwrap();
    assert_eq!((ev["details"]["reason"].as_str(), ev["details"]["binding"].as_str()), (Some("state"), Some("missing")));
    let forged = "/ui/oidc/corp/callback?code=x&state=forged";
    let (_, headers, _) = s.http_raw("GET", forged, None, None, &[("Cookie", &binding)]);
    assert!(header(&headers, "location").contains("not%20started%20in%20this%20browser"), "{headers:?}");
    assert_eq!(s.audit("auth.login").last().unwrap()["details"]["binding"], "mismatch");

    // With the cookie, the state is this browser's: the provider refuses the made-up code; the sign-in is spent.
    let (_, headers, _) = s.http_raw("GET", &path, None, None, &[("Cookie", &binding)]);
    assert!(header(&headers, "location").contains("refused%20%28code%29"), "{headers:?}");
    let (_, headers, _) = s.http_raw("GET", &path, None, None, &[("Cookie", &binding)]);
    assert!(header(&headers, "location").contains("already%20used%20state"), "{headers:?}");

    // The provider's own refusal (the user declined) is shown and audited.
    let (_, headers, _) = s.http_raw("GET", "/ui/oidc/corp/start", None, None, &[]);
    let to = header(&headers, "location").to_string();
    let state = to.split("state=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let binding = set_cookie(&headers, "latch_oidc");
    let declined = format!("/ui/oidc/corp/callback?error=access_denied&error_description=no&state={state}");
    let (_, headers, _) = s.http_raw("GET", &declined, None, None, &[("Cookie", &format!("latch_oidc={binding}"))]);
    assert!(header(&headers, "location").contains("refused%20%28access%20denied%29"), "{headers:?}");
    assert_eq!(s.audit("auth.login").last().unwrap()["details"]["reason"], "access_denied");
    let (status, _, html) = s.http_raw("GET", "/ui/oidc/nope/start", None, None, &[]);
    assert_eq!(status, 404);
    assert!(html.contains("no OIDC provider named"), "{html}");
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
