//! Workload identity federation, black-box: a real OIDC-style issuer on
//! loopback (`support/oidc_issuer.py`: discovery, JWKS, RS256/ES256/EdDSA
//! tokens minted with PyJWT) stands in for a CI system. A pipeline trades its
//! token for a latch session, an auto-approved grant and a latch token with
//! `latch exchange`; every way a token can be wrong is refused with the check
//! that failed, and audited; the issuer's key rotation is picked up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::oidc::Provider;
use common::{Server, run_cli};
use serde_json::{Value, json};

const B64: data_encoding::Encoding = data_encoding::BASE64URL_NOPAD;
const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The test's OIDC issuer, a child process stopped (by its pid) on drop.
struct Issuer {
    child: Child,
    url: String,
}

impl Issuer {
    fn start() -> Issuer {
        let ok = Command::new("python3").args(["-c", "import jwt, cryptography"]).status().unwrap().success();
        assert!(
            ok,
            "python3 with PyJWT and cryptography is needed: run ./scripts/test (pip install pyjwt cryptography)"
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/oidc_issuer.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        // Keep reading: a closed pipe would kill the issuer at its next write.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let url = line.trim().strip_prefix("ISSUER=").unwrap_or_else(|| panic!("issuer said {line:?}")).to_string();
        Issuer { child, url }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(true).build().into();
        let url = format!("{}{path}", self.url);
        let mut resp = match body {
            Some(b) => agent.post(&url).send_json(b).unwrap(),
            None => agent.get(&url).call().unwrap(),
        };
        let _ = method;
        resp.body_mut().read_json().unwrap()
    }

    /// A token with `claims`, as `/mint` takes them (`alg`, `key`, `kid`, `no_kid` in `opts`).
    fn mint(&self, claims: &Value, opts: Value) -> String {
        let mut body = opts;
        body["claims"] = claims.clone();
        self.call("POST", "/mint", Some(body))["token"].as_str().unwrap().to_string()
    }

    fn rotate(&self, alg: &str) -> (String, String) {
        let v = self.call("POST", "/rotate", Some(json!({ "alg": alg })));
        (v["kid"].as_str().unwrap().to_string(), v["retired"].as_str().unwrap().to_string())
    }

    fn jwks_fetches(&self) -> i64 {
        self.call("GET", "/stats", None)["jwks"].as_i64().unwrap()
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ROLE: &str = r#"name = "deploy"
description = "Deploy the app"
max_duration = "1h"
default_duration = "15m"
[approval]
required = 1
approvers = ["group:leads"]
[credentials.token]
audiences = ["https://deploy.internal"]
"#;

const GATED: &str = r#"name = "prod-db"
description = "Production database"
max_duration = "1h"
default_duration = "15m"
[approval]
required = 1
approvers = ["group:leads"]
[credentials.token]
audiences = ["https://db.internal"]
"#;

const POLICIES: &str = r#"@id("ci-requests")
permit(principal in Group::"ci", action == Action::"request", resource);

@id("ci-deploys-without-approval")
permit(principal in Group::"ci", action == Action::"activate", resource == Role::"deploy")
when { context.duration_secs <= 1800 };
"#;

/// A server with group `ci`, service principal `deployer` (in `ci`), the
/// roles above, and `deployer` federated with the issuer for audience
/// `latch` when `repository` is org/app and `ref` is main.
fn setup() -> (Server, Issuer) {
    let issuer = Issuer::start();
    let s = Server::start();
    s.cli(&["group", "create", "ci"]).ok();
    s.cli(&["group", "create", "leads"]).ok();
    s.cli(&["sp", "create", "deployer", "--group", "ci"]).ok();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("roles")).unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("roles/deploy.toml"), ROLE).unwrap();
    std::fs::write(dir.path().join("roles/prod-db.toml"), GATED).unwrap();
    std::fs::write(dir.path().join("policies/ci.cedar"), POLICIES).unwrap();
    s.cli(&["apply", dir.path().to_str().unwrap()]).ok();
    let out = s
        .cli(&[
            "sp",
            "federate",
            "deployer",
            "--issuer",
            &issuer.url,
            "--audience",
            "latch",
            "--claim",
            "repository=org/app",
            "--claim",
            "ref=refs/heads/main",
            "--name",
            "main",
        ])
        .ok();
    assert!(out.stdout.contains("federation main: repository = \"org/app\", ref = \"refs/heads/main\""), "{out:?}");
    (s, issuer)
}

/// The claims a CI job's token carries, valid now on the server's clock.
fn ci_claims(s: &Server, issuer: &Issuer, jti: &str) -> Value {
    let now = s.now_ms() / 1000;
    json!({
        "iss": issuer.url, "aud": "latch", "sub": "repo:org/app:ref:refs/heads/main",
        "repository": "org/app", "ref": "refs/heads/main", "workflow": "deploy",
        "iat": now, "nbf": now, "exp": now + 300, "jti": jti,
    })
}

fn write_token(dir: &Path, name: &str, token: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{token}\n")).unwrap();
    p
}

fn exchange_http(s: &Server, token: &str) -> (u16, Value) {
    let body = json!({ "grant_type": GRANT, "subject_token": token, "subject_token_type": JWT });
    s.http("POST", "/v1/auth/exchange", None, Some(&body))
}

/// The newest `auth.exchange` event.
fn last_exchange_event(s: &Server) -> Value {
    s.audit("auth.exchange").last().cloned().unwrap()
}

#[test]
fn a_ci_pipeline_trades_its_oidc_token_for_a_latch_token_once() {
    let (s, issuer) = setup();
    let tmp = tempfile::tempdir().unwrap();
    let token = issuer.mint(&ci_claims(&s, &issuer, "run-1-attempt-1"), json!({ "alg": "RS256" }));
    let file = write_token(tmp.path(), "oidc-token", &token);
    let f = file.to_str().unwrap();

    // One step, no LATCH_TOKEN: OIDC token -> session -> auto-approved grant -> latch token.
    let args = ["exchange", "--token-file", f, "--role", "deploy", "--for", "15m", "-o", "json"];
    let out = run_cli(&s.addr, "", &args, None).ok();
    let v = out.json();
    assert_eq!(v["service_principal"], "deployer", "{v}");
    assert_eq!((v["role"].as_str(), v["federation"].as_str()), (Some("deploy"), Some("main")));
    assert_eq!(v["audience"], "https://deploy.internal");
    let jwt = v["token"].as_str().unwrap();
    assert!(!out.stdout.contains(&token) && !out.stderr.contains(&token));

    // The latch token is live, for deployer under the grant.
    let (status, intro) = s.http("POST", "/v1/tokens/introspect", Some(&s.token), Some(&json!({ "token": jwt })));
    assert_eq!(status, 200, "{intro}");
    assert_eq!((intro["active"].as_bool(), intro["sub"].as_str()), (Some(true), Some("deployer")), "{intro}");
    assert_eq!(intro["grant_id"], v["grant_id"]);

    // Audited: the exchange (who, by which trust, which token id) and the
    // request; the session was closed once the token was minted.
    let ev = last_exchange_event(&s);
    assert_eq!((ev["actor"].as_str(), ev["outcome"].as_str()), (Some("service_principal:deployer"), Some("success")));
    let d = &ev["details"];
    assert_eq!((d["issuer"].as_str(), d["federation"].as_str()), (Some(issuer.url.as_str()), Some("main")), "{ev}");
    assert_eq!(
        (d["sub"].as_str(), d["jti"].as_str()),
        (Some("repo:org/app:ref:refs/heads/main"), Some("run-1-attempt-1"))
    );
    assert_eq!(d["method"], "token_exchange");
    let created = s.audit("request.create");
    assert_eq!(created.last().unwrap()["details"]["decision"], "auto_approved");
    let logout = s.audit("auth.logout");
    assert_eq!(logout.last().unwrap()["actor"], "service_principal:deployer");
    assert!(!serde_json::to_string(&s.audit("auth.exchange")).unwrap().contains(&token), "the token is never audited");

    // The same token again: refused as a replay, and audited.
    let again = run_cli(&s.addr, "", &args, None);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("token exchange refused (replay)"), "{}", again.stderr);
    let ev = last_exchange_event(&s);
    assert_eq!((ev["outcome"].as_str(), ev["details"]["reason"].as_str()), (Some("failure"), Some("replay")), "{ev}");
    assert_eq!(ev["target"], "service_principal:deployer");

    // ES256 and EdDSA tokens work too; without --role the session token is printed.
    for (alg, jti) in [("ES256", "run-2"), ("EdDSA", "run-3")] {
        let t = issuer.mint(&ci_claims(&s, &issuer, jti), json!({ "alg": alg }));
        let f = write_token(tmp.path(), jti, &t);
        let out = run_cli(&s.addr, "", &["exchange", "--token-file", f.to_str().unwrap()], None).ok();
        let session = out.stdout.trim().strip_prefix("LATCH_TOKEN=").unwrap().to_string();
        let (status, who) = s.http("GET", "/v1/auth/whoami", Some(&session), None);
        assert_eq!(status, 200);
        assert_eq!((who["name"].as_str(), who["kind"].as_str()), (Some("deployer"), Some("service_principal")));
        // Short-lived: 15 minutes by default.
        s.advance("16m");
        assert_eq!(s.http("GET", "/v1/auth/whoami", Some(&session), None).0, 401);
    }

    // A role that needs approval: refused (exit 3), and the request withdrawn.
    let t = issuer.mint(&ci_claims(&s, &issuer, "run-4"), json!({}));
    let f = write_token(tmp.path(), "run-4", &t);
    let out = run_cli(&s.addr, "", &["exchange", "--token-file", f.to_str().unwrap(), "--role", "prod-db"], None);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("is pending, not active") && out.stderr.contains("was cancelled"), "{}", out.stderr);
    let cancelled = s.audit("request.cancel");
    assert_eq!(cancelled.last().unwrap()["actor"], "service_principal:deployer");

    // From stdin, as `… | latch exchange --token-file -`.
    let t = issuer.mint(&ci_claims(&s, &issuer, "run-5"), json!({}));
    let out = run_cli(&s.addr, "", &["exchange", "--token-file", "-", "-o", "json"], Some(&t)).ok();
    assert_eq!(out.json()["token_type"], "Bearer");
    assert_eq!(out.json()["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
}

/// Replaces the claims of `token` (keeping header and signature).
fn with_claims(token: &str, claims: &Value) -> String {
    let p: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", p[0], B64.encode(claims.to_string().as_bytes()), p[2])
}

fn unsigned(header: &Value, claims: &Value, sig: &str) -> String {
    format!("{}.{}.{sig}", B64.encode(header.to_string().as_bytes()), B64.encode(claims.to_string().as_bytes()))
}

#[test]
fn every_failed_check_is_named_audited_and_never_echoes_the_token() {
    let (s, issuer) = setup();
    let good = ci_claims(&s, &issuer, "unused");
    let now = good["iat"].as_i64().unwrap();
    let claims = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let mint = |patch: Value, opts: Value| issuer.mint(&claims(patch), opts);
    let real = mint(json!({ "jti": "tamper" }), json!({}));
    let cases: Vec<(&str, String, &str, &str)> = vec![
        // (case, token, reason in the audit event, text in the error message)
        (
            "wrong audience",
            mint(json!({ "jti": "a1", "aud": "someone-else" }), json!({})),
            "audience",
            "(audience): the token's audience [\"someone-else\"]",
        ),
        (
            "audience array without ours",
            mint(json!({ "jti": "a2", "aud": ["x", "y"] }), json!({})),
            "audience",
            "not one latch trusts",
        ),
        ("no audience", mint(json!({ "jti": "a3", "aud": null }), json!({})), "audience", "no aud claim"),
        (
            "expired",
            mint(json!({ "jti": "e1", "iat": now - 900, "nbf": now - 900, "exp": now - 120 }), json!({})),
            "expiry",
            "(expiry): the token expired at",
        ),
        ("no exp", mint(json!({ "jti": "e2", "exp": null }), json!({})), "expiry", "no exp claim"),
        (
            "not yet valid",
            mint(json!({ "jti": "n1", "nbf": now + 600 }), json!({})),
            "not_yet_valid",
            "(not yet valid): the token is not valid before",
        ),
        (
            "issued in the future",
            mint(json!({ "jti": "n2", "iat": now + 600, "nbf": null }), json!({})),
            "not_yet_valid",
            "issued in the future",
        ),
        (
            "tampered claims",
            with_claims(&real, &claims(json!({ "jti": "tamper", "repository": "org/evil" }))),
            "signature",
            "(signature): the signature does not verify with the issuer's key rsa-1",
        ),
        (
            "missing kid",
            mint(json!({ "jti": "k1" }), json!({ "no_kid": true })),
            "missing_kid",
            "(missing kid): the token header has no kid",
        ),
        (
            "unknown kid",
            mint(json!({ "jti": "k2" }), json!({ "kid": "made-up" })),
            "unknown_kid",
            "(unknown kid): the issuer's JWKS has no key with kid \"made-up\"",
        ),
        (
            "key of another algorithm",
            mint(json!({ "jti": "k3" }), json!({ "alg": "ES256", "kid": "rsa-1" })),
            "algorithm",
            "key rsa-1 is for RS256, but the token says ES256",
        ),
        (
            "untrusted issuer",
            mint(json!({ "jti": "i1", "iss": "https://evil.example" }), json!({})),
            "issuer",
            "(issuer): issuer \"https://evil.example\" is not trusted",
        ),
        (
            "issuer with a trailing slash",
            mint(json!({ "jti": "i2", "iss": format!("{}/", issuer.url) }), json!({})),
            "issuer",
            "is not trusted",
        ),
        (
            "failing claim condition",
            mint(json!({ "jti": "c1", "ref": "refs/heads/dev" }), json!({})),
            "claim_condition",
            "(claim condition): no federation's conditions hold: deployer/main: claim ref is \"refs/heads/dev\"",
        ),
        (
            "condition claim missing",
            mint(json!({ "jti": "c2", "repository": null }), json!({})),
            "claim_condition",
            "claim repository is missing",
        ),
        (
            "condition claim not a string",
            mint(json!({ "jti": "c3", "ref": ["refs/heads/main"] }), json!({})),
            "claim_condition",
            "claim ref is not a string",
        ),
        ("no jti", mint(json!({ "jti": null }), json!({})), "missing_jti", "(missing jti)"),
        (
            "alg none",
            unsigned(&json!({ "alg": "none", "kid": "rsa-1" }), &good, ""),
            "algorithm",
            "(algorithm): algorithm \"none\" is not accepted",
        ),
        (
            "HMAC",
            unsigned(&json!({ "alg": "HS256", "kid": "rsa-1" }), &good, "c2lnbmF0dXJl"),
            "algorithm",
            "algorithm \"HS256\" is not accepted: use RS256, ES256 or EdDSA",
        ),
        ("not a JWT", "not-a-jwt".to_string(), "malformed", "(malformed): the token is not a compact JWS"),
    ];
    let mut seen = 0;
    for (case, token, reason, needle) in &cases {
        let (status, v) = exchange_http(&s, token);
        assert_eq!(status, 400, "{case}: {v}");
        assert_eq!(v["error"]["code"], "invalid_grant", "{case}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{case}: message {msg:?} lacks {needle:?}");
        let ev = last_exchange_event(&s);
        assert_eq!(ev["outcome"], "failure", "{case}: {ev}");
        assert_eq!(ev["details"]["reason"], *reason, "{case}: {ev}");
        assert_eq!(ev["actor"], "anonymous");
        assert!(ev["seq"].as_i64().unwrap() > seen, "{case}: audited once more");
        seen = ev["seq"].as_i64().unwrap();
        // Neither the reply nor the audit event carries the token (or its signature).
        let sig = token.rsplit('.').next().unwrap_or_default();
        for text in [v.to_string(), ev.to_string()] {
            assert!(token.len() < 12 || !text.contains(token.as_str()), "{case}: token echoed");
            assert!(sig.len() < 12 || !text.contains(sig), "{case}: signature echoed");
        }
    }
    // Claims were audited for what they say, once the signature held.
    let events = s.audit("auth.exchange");
    let cond = events.iter().find(|e| e["details"]["reason"] == "claim_condition").unwrap();
    assert_eq!(cond["details"]["unmet"][0]["wanted"], "= \"refs/heads/main\"", "{cond}");
    assert_eq!(cond["details"]["sub"], "repo:org/app:ref:refs/heads/main");
    assert_eq!(cond["target"], "service_principal:deployer");

    // None of them opened a session, and the tokens that failed were not
    // burnt: the unknown-kid and condition failures did not record their jti.
    assert!(events.iter().all(|e| e["outcome"] == "failure"));
    let fine = mint(json!({ "jti": "c1" }), json!({}));
    assert_eq!(exchange_http(&s, &fine).0, 200, "jti c1 was refused before, not remembered");

    // Bad requests are refused before the token is looked at.
    let bad = [
        (
            json!({ "grant_type": "client_credentials", "subject_token": fine, "subject_token_type": JWT }),
            "grant_type must be urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        (
            json!({ "grant_type": GRANT, "subject_token": fine, "subject_token_type": "urn:ietf:params:oauth:token-type:saml2" }),
            "subject_token_type must be",
        ),
        (
            json!({ "grant_type": GRANT, "subject_token": fine, "subject_token_type": JWT, "scope": "x" }),
            "unknown field `scope`",
        ),
    ];
    for (body, needle) in bad {
        let (status, v) = s.http("POST", "/v1/auth/exchange", None, Some(&body));
        assert_eq!(status, 400, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(needle), "{v}");
    }
}

#[test]
fn the_issuers_key_rotation_is_picked_up_and_unknown_kids_do_not_hammer_it() {
    let (s, issuer) = setup();
    let first = issuer.mint(&ci_claims(&s, &issuer, "before-rotation"), json!({ "alg": "RS256" }));
    assert_eq!(exchange_http(&s, &first).0, 200);
    assert_eq!(issuer.jwks_fetches(), 1);

    // The issuer rotates: rsa-2 replaces rsa-1 in its JWKS.
    let (new_kid, old_kid) = issuer.rotate("RS256");
    assert_eq!((new_kid.as_str(), old_kid.as_str()), ("rsa-2", "rsa-1"));
    let rotated = issuer.mint(&ci_claims(&s, &issuer, "after-rotation"), json!({ "alg": "RS256" }));
    // Within 30 s of the last fetch latch does not refetch, however many unknown kids arrive.
    for i in 0..5 {
        let t = issuer.mint(&ci_claims(&s, &issuer, &format!("bogus-{i}")), json!({ "kid": format!("bogus-{i}") }));
        let (status, v) = exchange_http(&s, &t);
        assert_eq!(status, 400, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("at most every 30 s"), "{v}");
    }
    let (status, v) = exchange_http(&s, &rotated);
    assert_eq!(status, 400, "{v}");
    assert_eq!(last_exchange_event(&s)["details"]["reason"], "unknown_kid");
    assert_eq!(issuer.jwks_fetches(), 1, "no refetch within the interval");

    // After the interval, the new kid triggers one refetch and is accepted.
    s.advance("31s");
    let (status, v) = exchange_http(&s, &rotated);
    assert_eq!(status, 200, "{v}");
    assert_eq!(issuer.jwks_fetches(), 2);

    // The retired key no longer works.
    let old = issuer.mint(&ci_claims(&s, &issuer, "old-key"), json!({ "key": "rsa-1" }));
    let (status, v) = exchange_http(&s, &old);
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("no key with kid \"rsa-1\""), "{v}");

    // Keys are refetched once they are 10 minutes old, without an unknown kid.
    s.advance("11m");
    let later = issuer.mint(&ci_claims(&s, &issuer, "later"), json!({ "alg": "ES256" }));
    assert_eq!(exchange_http(&s, &later).0, 200);
    assert_eq!(issuer.jwks_fetches(), 3);
}

#[test]
fn federations_are_validated_managed_by_admins_and_scoped_to_one_principal() {
    let (s, issuer) = setup();
    // Precise refusals at configuration time (exit 1), nothing stored.
    let fed = |extra: &[&str]| {
        let mut args = vec!["sp", "federate", "deployer", "--audience", "latch", "--name", "x"];
        args.extend_from_slice(extra);
        s.cli(&args)
    };
    for (extra, needle) in [
        (vec!["--issuer", "http://ci.example.com"], "must use https: plain http is allowed only for a loopback issuer"),
        (vec!["--issuer", "https://ci.example.com?x=1"], "must not have a query or fragment"),
        (vec!["--issuer", "https://ci.example.com", "--claim", "aud=latch"], "claim aud cannot be a condition"),
        (vec!["--issuer", "https://ci.example.com", "--claim-glob", "ref=refs/**"], "has **"),
        (vec!["--issuer", "https://ci.example.com", "--claim-glob", "ref=*"], "no fixed text"),
        (
            vec!["--issuer", "https://ci.example.com", "--claim-glob", "ref=refs/heads/main"],
            "has no *: compare with equals",
        ),
        (
            vec!["--issuer", "https://ci.example.com", "--claim", "ref=a", "--claim-glob", "ref=b*"],
            "condition 2 (ref): the claim has another condition",
        ),
        (vec!["--issuer", "https://ci.example.com", "--claim", "a.b=c"], "top-level claim name"),
    ] {
        let out = fed(&extra);
        assert_eq!(out.code, 1, "{extra:?}: {out:?}");
        assert!(out.stderr.contains(needle), "{extra:?}: {} lacks {needle:?}", out.stderr);
    }
    let out = fed(&["--issuer", "https://ci.example.com"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("at least one claim condition is required"), "{}", out.stderr);
    let out = fed(&["--issuer", "https://ci.example.com", "--claim", "no-equals-sign"]);
    assert_eq!(out.code, 2, "{out:?}");
    // A name is unique per principal.
    let dup = s.cli(&[
        "sp",
        "federate",
        "deployer",
        "--issuer",
        &issuer.url,
        "--audience",
        "latch",
        "--name",
        "main",
        "--claim",
        "sub=x",
    ]);
    assert_eq!(dup.code, 1);
    assert!(dup.stderr.contains("already has a federation named \"main\""), "{}", dup.stderr);

    // A second federation, for release tags by glob; listed with both.
    s.cli(&[
        "sp",
        "federate",
        "deployer",
        "--issuer",
        &issuer.url,
        "--audience",
        "latch",
        "--name",
        "tags",
        "--claim",
        "repository=org/app",
        "--claim-glob",
        "ref=refs/tags/v*",
    ])
    .ok();
    let list = s.cli(&["sp", "federations", "deployer", "-o", "json"]).ok().json();
    let names: Vec<&str> =
        list["federations"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["main", "tags"]);
    assert_eq!(list["federations"][1]["conditions"][1], json!({ "claim": "ref", "glob": "refs/tags/v*" }));
    let ev = s.audit("sp.federate");
    assert_eq!(
        ev.last().unwrap()["details"]["conditions"],
        json!(["repository = \"org/app\"", "ref ~ \"refs/tags/v*\""])
    );
    let tag = |jti: &str, r: &str| {
        let mut c = ci_claims(&s, &issuer, jti);
        c["ref"] = json!(r);
        issuer.mint(&c, json!({ "alg": "EdDSA" }))
    };
    let (status, v) = exchange_http(&s, &tag("t1", "refs/tags/v1.2.0"));
    assert_eq!((status, v["federation"].as_str()), (200, Some("tags")), "{v}");
    assert_eq!(exchange_http(&s, &tag("t2", "refs/tags/v1/evil")).0, 400, "* does not cross /");

    // Only administrators manage federations.
    let session = exchange_http(&s, &tag("t3", "refs/tags/v2")).1["access_token"].as_str().unwrap().to_string();
    let (status, _) = s.http("GET", "/v1/service-principals/deployer/federations", Some(&session), None);
    assert_eq!(status, 403);

    // Two principals trusting the same tokens: the caller must say which.
    s.cli(&["sp", "create", "other", "--group", "ci"]).ok();
    s.cli(&[
        "sp",
        "federate",
        "other",
        "--issuer",
        &issuer.url,
        "--audience",
        "latch",
        "--claim",
        "repository=org/app",
    ])
    .ok();
    let t = issuer.mint(&ci_claims(&s, &issuer, "amb"), json!({}));
    let (status, v) = exchange_http(&s, &t);
    assert_eq!(status, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("several service principals (deployer, other)"), "{v}");
    let tmp = tempfile::tempdir().unwrap();
    let f = write_token(tmp.path(), "amb", &t);
    let out =
        run_cli(&s.addr, "", &["exchange", "--token-file", f.to_str().unwrap(), "--sp", "other", "-o", "json"], None);
    assert_eq!(out.ok().json()["name"], "other");

    // A disabled principal cannot be exchanged into.
    s.cli(&["sp", "disable", "other"]).ok();
    let mut c = ci_claims(&s, &issuer, "dis");
    c["ref"] = json!("refs/heads/feature");
    let (status, v) = exchange_http(&s, &issuer.mint(&c, json!({})));
    assert_eq!(status, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("(disabled): service principal other is disabled"), "{v}");

    // Removing a federation stops its tokens at once; deleting the principal removes the rest.
    s.cli(&["sp", "delete", "other"]).ok();
    s.cli(&["sp", "unfederate", "deployer", "--name", "tags"]).ok();
    let (status, v) = exchange_http(&s, &tag("t4", "refs/tags/v3"));
    assert_eq!(status, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("(claim condition)"), "{v}");
    assert_eq!(s.audit("sp.unfederate").len(), 1);
    s.cli(&["sp", "delete", "deployer"]).ok();
    let t = issuer.mint(&ci_claims(&s, &issuer, "gone"), json!({}));
    let (status, v) = exchange_http(&s, &t);
    assert_eq!(status, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("is not trusted"), "{v}");
}

/// deployer federated with the real provider `p` for audience `latch`, when
/// the token's `client_id` is `ci` (its client_credentials tokens).
fn federate_with_provider(s: &Server, p: &Provider) {
    let args = ["sp", "federate", "deployer", "--issuer", &p.issuer, "--audience", "latch"];
    s.cli(&[&args[..], &["--claim", "client_id=ci", "--name", "provider"]].concat()).ok();
}

/// The check a refusal names, having made sure it is audited and echoes nothing of the token.
fn refused(s: &Server, token: &str) -> (String, String) {
    let (status, v) = exchange_http(s, token);
    assert_eq!(status, 400, "{v}");
    let message = v["error"]["message"].as_str().unwrap().to_string();
    let signature = token.rsplit('.').next().unwrap();
    assert!(!message.contains(token) && !message.contains(signature), "the token is echoed: {message}");
    let ev = last_exchange_event(s);
    assert_eq!(ev["outcome"], "failure", "{ev}");
    let audited = ev.to_string();
    assert!(!audited.contains(signature), "the token is audited: {audited}");
    (ev["details"]["reason"].as_str().unwrap().to_string(), message)
}

/// Swaps the header of `token` for `header` (payload and signature kept).
fn with_header(token: &str, header: &Value) -> String {
    let p: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", B64.encode(header.to_string().as_bytes()), p[1], p[2])
}

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&B64.decode(token.split('.').nth(1).unwrap().as_bytes()).unwrap()).unwrap()
}

#[test]
fn tokens_the_real_oidc_provider_minted_are_exchanged_once_and_every_tampering_is_named() {
    let (s, _issuer) = setup();
    let p = Provider::start(&json!({}));
    federate_with_provider(&s, &p);
    let tmp = tempfile::tempdir().unwrap();

    // CI-style: the provider's JWT -> latch session -> auto-approved role -> latch token; then a replay.
    let token = p.ci_token();
    assert_eq!(claims_of(&token)["iss"], p.issuer.as_str());
    let file = write_token(tmp.path(), "provider-token", &token);
    let args = ["exchange", "--token-file", file.to_str().unwrap(), "--role", "deploy", "-o", "json"];
    let v = run_cli(&s.addr, "", &args, None).ok().json();
    assert_eq!((v["service_principal"].as_str(), v["federation"].as_str()), (Some("deployer"), Some("provider")));
    assert!(v["token"].as_str().unwrap().starts_with("ey"), "{v}");
    assert_eq!(last_exchange_event(&s)["details"]["jti"], claims_of(&token)["jti"]);
    let again = run_cli(&s.addr, "", &args, None);
    assert!(again.stderr.contains("token exchange refused (replay)"), "{}", again.stderr);
    assert_eq!(last_exchange_event(&s)["details"]["reason"], "replay");

    // Tampered: a changed signature, changed claims under the provider's signature.
    let fresh = p.ci_token();
    // The signature's first character, not its last: the last one of an RS256
    // signature carries 2 bits and 4 that must be zero, so changing it to 'B'
    // made the token malformed base64url, not a bad signature (1 run in 4).
    let at = fresh.rfind('.').unwrap() + 1;
    let mut sig = fresh.clone();
    let first = if fresh[at..].starts_with('A') { "B" } else { "A" };
    sig.replace_range(at..at + 1, first);
    assert_eq!(refused(&s, &sig).0, "signature");
    let mut claims = claims_of(&fresh);
    claims["client_id"] = "someone-else".into();
    assert_eq!(refused(&s, &with_claims(&fresh, &claims)).0, "signature");
    // No kid in the header.
    let (reason, message) = refused(&s, &with_header(&fresh, &json!({ "alg": "RS256", "typ": "at+jwt" })));
    assert_eq!(reason, "missing_kid", "{message}");
    // For another audience (the provider's token for another resource).
    let (reason, message) = refused(&s, &p.ci_token_for("https://elsewhere.test"));
    assert_eq!(reason, "audience", "{message}");
    assert!(message.contains("[\"elsewhere\"]"), "{message}");
    // From an issuer nobody is federated with: another provider, just as real.
    let stranger = Provider::start(&json!({}));
    let (reason, message) = refused(&s, &stranger.ci_token());
    assert_eq!(reason, "issuer", "{message}");
    assert!(message.contains("is not trusted"), "{message}");
    // The provider rotates its key: a token under the new kid is accepted once
    // latch may refetch the JWKS; one under the withdrawn kid no longer is.
    let before = p.ci_token();
    let kid = p.rotate();
    let after = p.ci_token();
    assert_eq!(
        serde_json::from_slice::<Value>(&B64.decode(after.split('.').next().unwrap().as_bytes()).unwrap()).unwrap()["kid"],
        kid.as_str()
    );
    s.advance("31s");
    let (status, v) = exchange_http(&s, &after);
    assert_eq!(status, 200, "{v}");
    let (reason, message) = refused(&s, &before);
    assert_eq!(reason, "unknown_kid", "{message}");
    // Expired: the provider's tokens live 10 minutes.
    let old = p.ci_token();
    s.advance("12m");
    let (reason, message) = refused(&s, &old);
    assert_eq!(reason, "expiry", "{message}");
}

#[test]
fn refused_exchanges_are_throttled_per_source() {
    let (s, issuer) = setup();
    // 30 refusals from this address within failure_window (5 minutes)…
    for i in 0..30 {
        let (status, v) = exchange_http(&s, &format!("not-a-jwt-{i}"));
        assert_eq!(status, 400, "{i}: {v}");
    }
    // …then even a good token waits, told when to retry; nothing is checked or remembered.
    let good = issuer.mint(&ci_claims(&s, &issuer, "after-the-flood"), json!({}));
    let body = json!({ "grant_type": GRANT, "subject_token": good, "subject_token_type": JWT }).to_string();
    let (status, headers, text) =
        s.http_raw("POST", "/v1/auth/exchange", None, Some(&body), &[("Content-Type", "application/json")]);
    assert_eq!(status, 429, "{text}");
    let retry: u64 = headers.iter().find(|(k, _)| k == "retry-after").unwrap().1.parse().unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    assert!(
        text.contains(&format!("too many refused token exchanges from this address: try again in {retry} s")),
        "{text}"
    );
    let ev = last_exchange_event(&s);
    assert_eq!(
        (ev["outcome"].as_str(), ev["details"]["reason"].as_str()),
        (Some("denied"), Some("rate_limited")),
        "{ev}"
    );
    // Password login from the same address is not locked by them.
    assert!(s.login("admin", "wrong", None).is_err_and(|o| !o.stderr.contains("try again in")));
    // Once the window has passed, the same token is exchanged.
    s.advance("5m");
    let (status, v) = exchange_http(&s, &good);
    assert_eq!(status, 200, "{v}");
}
