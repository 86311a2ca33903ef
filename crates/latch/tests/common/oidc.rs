//! A real OpenID Provider for tests: panva's certified `oidc-provider`
//! (npm), started on loopback by `support/oidc_provider.mjs`, and a minimal
//! scripted browser (cookies, manual redirects) to drive its pages.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;

use serde_json::Value;

pub const SECRET: &str = "s3cret-for-tests-only";

/// `oidc-provider` from npm, installed once under the target directory.
pub fn oidc_provider_module() -> PathBuf {
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
pub struct Provider {
    child: Child,
    pub issuer: String,
}

impl Provider {
    pub fn start(accounts: &Value) -> Provider {
        Provider::start_with(accounts, &[])
    }

    /// With extra environment, e.g. `DEVICE_FLOW=0`.
    ///
    /// Node has been seen to hang for good while starting (its main thread
    /// waiting on a lock, before printing the issuer, in two runs at once on
    /// a loaded machine): a provider that has not started within 30 s is
    /// killed and started again, up to three times.
    pub fn start_with(accounts: &Value, env: &[(&str, &str)]) -> Provider {
        for attempt in 1..=3 {
            match Provider::try_start(accounts, env, std::time::Duration::from_secs(30)) {
                Some(p) => return p,
                None => {
                    eprintln!("the OpenID Provider did not start within 30 s (attempt {attempt}); starting it again")
                }
            }
        }
        panic!("the OpenID Provider (node tests/support/oidc_provider.mjs) did not start in three attempts");
    }

    fn try_start(accounts: &Value, env: &[(&str, &str)], within: std::time::Duration) -> Option<Provider> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/oidc_provider.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .env("OIDC_PROVIDER_MODULE", oidc_provider_module())
            .env("CLIENT_SECRET", SECRET)
            .env("ACCOUNTS", accounts.to_string())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = out.read_line(&mut line);
            let _ = tx.send(line);
            // Keep reading: a closed pipe would kill the provider at its next write.
            std::io::copy(&mut out, &mut std::io::sink())
        });
        let Ok(line) = rx.recv_timeout(within) else {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        };
        let issuer =
            line.trim().strip_prefix("ISSUER=").unwrap_or_else(|| panic!("provider said {line:?}")).to_string();
        Some(Provider { child, issuer })
    }

    pub fn set_accounts(&self, accounts: &Value) {
        let agent = agent(true);
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
pub struct Browser {
    cookies: BTreeMap<String, String>,
}

impl Browser {
    /// One request; returns the status and the Location header.
    pub fn go(&mut self, method: &str, url: &str, form: Option<&str>) -> (u16, Option<String>) {
        let (status, location, _) = self.page(method, url, form);
        (status, location)
    }

    /// One request; returns the status, the Location header and the body.
    pub fn page(&mut self, method: &str, url: &str, form: Option<&str>) -> (u16, Option<String>, String) {
        let agent = agent(false);
        let mut req = ureq::http::Request::builder().method(method).uri(url);
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("Cookie", jar.join("; "));
        }
        if form.is_some() {
            req = req.header("Content-Type", "application/x-www-form-urlencoded");
        }
        let mut resp = agent
            .run(req.body(form.unwrap_or("").as_bytes().to_vec()).unwrap())
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        for v in resp.headers().get_all("set-cookie") {
            let pair = v.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.insert(k.trim().to_string(), v.to_string());
        }
        let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_string());
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        (resp.status().as_u16(), location, body)
    }

    /// Follows redirects (GET) from `url` until a page answers; returns its status, URL and body.
    pub fn follow(&mut self, base: &str, url: &str) -> (u16, String, String) {
        let mut url = absolute(base, url);
        for _ in 0..10 {
            let (status, location, body) = self.page("GET", &url, None);
            match location {
                Some(l) if (300..400).contains(&status) => url = absolute(base, &l),
                _ => return (status, url, body),
            }
        }
        panic!("too many redirects from {url}")
    }
}

/// The value of hidden input `name` in an HTML form.
pub fn hidden(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

impl Provider {
    /// Replaces the provider's signing key (a new kid; the old key is withdrawn); returns the new kid.
    pub fn rotate(&self) -> String {
        let agent = agent(true);
        let v: Value =
            agent.post(&format!("{}/test/rotate", self.issuer)).send_empty().unwrap().body_mut().read_json().unwrap();
        v["kid"].as_str().unwrap().to_string()
    }

    /// A JWT access token the provider issues to client `ci` (audience `latch`) by client_credentials.
    pub fn ci_token(&self) -> String {
        self.ci_token_for("https://latch.test")
    }

    /// [`Provider::ci_token`] for another resource (`https://elsewhere.test`: audience `elsewhere`).
    pub fn ci_token_for(&self, resource: &str) -> String {
        let agent = agent(true);
        let basic = data_encoding::BASE64.encode(format!("ci:{SECRET}").as_bytes());
        let v: Value = agent
            .post(&format!("{}/token", self.issuer))
            .header("Authorization", format!("Basic {basic}"))
            .send_form([("grant_type", "client_credentials"), ("scope", "deploy"), ("resource", resource)])
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    /// Acts as the user at the provider's device pages: enters `user_code`,
    /// then confirms and signs in as `login` (with `acr` when given), or aborts.
    pub fn answer_device_code(&self, user_code: &str, login: &str, approve: bool) {
        let mut b = Browser::default();
        let (status, _, html) = b.page("GET", &format!("{}/device", self.issuer), None);
        assert_eq!(status, 200, "device page: {html}");
        let xsrf = hidden(&html, "xsrf");
        let device = format!("{}/device", self.issuer);
        let (status, _, html) = b.page("POST", &device, Some(&format!("xsrf={xsrf}&user_code={user_code}")));
        assert_eq!(status, 200, "code entered: {html}");
        assert!(html.contains("Confirm Device"), "{html}");
        if !approve {
            let (status, _, html) =
                b.page("POST", &device, Some(&format!("xsrf={xsrf}&user_code={user_code}&abort=yes")));
            assert!(html.contains("interrupted"), "{status} {html}");
            return;
        }
        let (status, loc, _) = b.page("POST", &device, Some(&format!("xsrf={xsrf}&user_code={user_code}&confirm=yes")));
        assert!((300..400).contains(&status), "confirm: {status}");
        let (status, url, html) = b.follow(&self.issuer, &loc.unwrap());
        assert!(status == 200 && url.contains("/interaction/"), "{status} {url} {html}");
        let (status, loc, _) = b.page("POST", &format!("{url}/login"), Some(&format!("login={login}&mfa=1")));
        assert_eq!(status, 303, "login");
        let (status, url, html) = b.follow(&self.issuer, &loc.unwrap());
        assert_eq!(status, 200, "{url}: {html}");
        assert!(html.contains("Sign-in Success"), "{url}: {html}");
    }
}

/// An HTTP client that never follows redirects and gives up after 30 s (a
/// stuck provider fails the test instead of hanging it).
fn agent(status_as_error: bool) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(status_as_error)
        .max_redirects(0)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into()
}

/// Resolves a Location against the provider's origin.
pub fn absolute(issuer: &str, location: &str) -> String {
    if location.starts_with("http") { location.to_string() } else { format!("{issuer}{location}") }
}
