//! People sign in through a real OpenID Provider: panva's certified
//! `oidc-provider` (npm), started on loopback by the test
//! (`support/oidc_provider.mjs`), driven through its authorization code flow
//! over plain HTTP as a browser would (cookies, redirects), with
//! `latch login --oidc` listening for the callback. Users are provisioned
//! from the ID token, mapped groups follow the IdP, and `amr` tells policy
//! whether MFA was used.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;

use common::{BIN, Out, Server};
use serde_json::{Value, json};

const SECRET: &str = "s3cret-for-tests-only";

/// `oidc-provider` from npm, installed once under the target directory.
fn oidc_provider_module() -> PathBuf {
    static ONCE: Once = Once::new();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oidc-provider-npm");
    let module = dir.join("node_modules/oidc-provider/lib/index.js");
    ONCE.call_once(|| {
        if module.exists() {
            return;
        }
        let node = Command::new("node").arg("--version").output();
        assert!(
            node.is_ok_and(|o| o.status.success()),
            "node is needed: apt-get install -y nodejs npm (or ./scripts/test)"
        );
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&dir)
            .arg("oidc-provider@9")
            .status()
            .unwrap()
            .success();
        assert!(ok && module.exists(), "npm install oidc-provider@9 failed");
    });
    module
}

/// The OpenID Provider, a child process stopped (by its pid) on drop.
struct Provider {
    child: Child,
    issuer: String,
}

impl Provider {
    fn start(accounts: &Value) -> Provider {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/oidc_provider.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .env("OIDC_PROVIDER_MODULE", oidc_provider_module())
            .env("CLIENT_SECRET", SECRET)
            .env("ACCOUNTS", accounts.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        // Keep reading: a closed pipe would kill the provider at its next write.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let issuer =
            line.trim().strip_prefix("ISSUER=").unwrap_or_else(|| panic!("provider said {line:?}")).to_string();
        Provider { child, issuer }
    }

    fn set_accounts(&self, accounts: &Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(true).build().into();
        agent.post(&format!("{}/test/accounts", self.issuer)).send_json(accounts).unwrap();
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser, as far as the code flow needs one: cookies, no automatic redirects.
#[derive(Default)]
struct Browser {
    cookies: BTreeMap<String, String>,
}

impl Browser {
    /// One request; returns the status and the Location header.
    fn go(&mut self, method: &str, url: &str, form: Option<&str>) -> (u16, Option<String>) {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        let mut req = ureq::http::Request::builder().method(method).uri(url);
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("Cookie", jar.join("; "));
        }
        if form.is_some() {
            req = req.header("Content-Type", "application/x-www-form-urlencoded");
        }
        let resp = agent
            .run(req.body(form.unwrap_or("").as_bytes().to_vec()).unwrap())
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        for v in resp.headers().get_all("set-cookie") {
            let pair = v.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.insert(k.trim().to_string(), v.to_string());
        }
        let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_string());
        (resp.status().as_u16(), location)
    }
}

/// Resolves a Location against the provider's origin.
fn absolute(issuer: &str, location: &str) -> String {
    if location.starts_with("http") { location.to_string() } else { format!("{issuer}{location}") }
}

/// `latch login --oidc corp -o json`, signing in at the provider as `login`
/// (with a second factor when `mfa`); returns the CLI's result.
fn sign_in(s: &Server, p: &Provider, login: &str, mfa: bool) -> Out {
    let mut child = Command::new(BIN)
        .args(["login", "--oidc", "corp", "--timeout", "30s", "-o", "json"])
        .env("LATCH_ADDR", &s.addr)
        .env_remove("LATCH_TOKEN")
        .env_remove("LATCH_CACERT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let url = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            let out = child.wait_with_output().unwrap();
            return Out {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: seen,
            };
        }
        seen.push_str(&line);
        if line.starts_with("http") {
            break line.trim().to_string();
        }
    };
    assert!(url.starts_with(&format!("{}/auth?", p.issuer)), "{url}");
    assert!(url.contains("code_challenge_method=S256") && url.contains("nonce="), "{url}");

    // The user's browser: authorize -> login form -> resume -> back to the CLI.
    let mut b = Browser::default();
    let (status, loc) = b.go("GET", &url, None);
    assert_eq!(status, 303, "authorize");
    let interaction = absolute(&p.issuer, &loc.unwrap());
    let form = format!("login={login}&mfa={}", if mfa { 1 } else { 0 });
    let (status, loc) = b.go("POST", &format!("{interaction}/login"), Some(&form));
    assert_eq!(status, 303, "login");
    let (status, loc) = b.go("GET", &absolute(&p.issuer, &loc.unwrap()), None);
    assert_eq!(status, 303, "resume");
    let callback = loc.unwrap();
    assert!(callback.starts_with("http://127.0.0.1:") && callback.contains("/callback?code="), "{callback}");
    let (status, _) = b.go("GET", &callback, None);
    assert_eq!(status, 200, "the CLI answers the browser");

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

const POLICIES: &str = r#"@id("dbas-request")
permit(principal in Group::"dbas", action == Action::"request", resource);

@id("dbas-activate-with-mfa")
permit(principal in Group::"dbas", action == Action::"activate", resource == Role::"prod-db")
when { context.mfa };
"#;

fn setup(accounts: &Value) -> (tempfile::TempDir, Server, Provider) {
    let p = Provider::start(accounts);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("secret"), SECRET).unwrap();
    let conf = format!(
        r#"[[oidc]]
name = "corp"
issuer = "{}"
client_id = "latch"
client_secret_file = "secret"
scopes = ["openid", "profile", "groups"]
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
    let dir = tmp.path().join("policy");
    std::fs::create_dir_all(dir.join("roles")).unwrap();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("roles/prod-db.toml"), ROLE).unwrap();
    std::fs::write(dir.join("policies/main.cedar"), POLICIES).unwrap();
    s.cli(&["apply", dir.to_str().unwrap()]).ok();
    (tmp, s, p)
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
