//! HTTP conventions and bad input: every malformed, oversized or hostile
//! request gets a clear 4xx in `{"error":{"code","message"}}` and changes
//! nothing in the store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::Server;
use serde_json::{Value, json};

/// Row counts of every table plus the audit head: "the store is unchanged".
fn snapshot(s: &Server) -> Vec<String> {
    let tables = if s.pgdb.is_some() {
        s.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    } else {
        s.sql("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
    };
    // One query for all counts: each psql run costs a process.
    let counts: Vec<String> = tables
        .iter()
        .map(|t| format!("SELECT '{t}', COUNT(*) FROM \"{t}\""))
        .chain(std::iter::once("SELECT 'head', COALESCE(MAX(seq), 0) FROM audit_events".to_string()))
        .collect();
    s.sql(&counts.join(" UNION ALL "))
}

/// Sends a raw request and asserts a 4xx with our error shape, the given
/// status, a message containing `needle`, and an unchanged store.
#[track_caller]
fn refused(s: &Server, method: &str, path: &str, body: Option<&str>, status: u16, needle: &str) -> Value {
    refused_with(s, method, path, body, &[], status, needle)
}

#[track_caller]
fn refused_with(
    s: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
    status: u16,
    needle: &str,
) -> Value {
    let before = snapshot(s);
    let (got, hs, text) = s.http_raw(method, path, Some(&s.token), body, headers);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
    assert_eq!(got, status, "{method} {path}: {text}");
    assert!(v["error"]["code"].is_string(), "{text}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains(needle), "{method} {path}: message {msg:?} lacks {needle:?}");
    assert!(hs.iter().any(|(k, _)| k == "x-request-id"));
    assert_eq!(snapshot(s), before, "{method} {path} changed the store");
    v
}

#[test]
fn malformed_unknown_and_oversized_bodies_change_nothing() {
    let s = Server::start();
    for path in ["/v1/users", "/v1/groups", "/v1/service-principals"] {
        refused(&s, "POST", path, Some(r#"{"name": "x""#), 400, "malformed JSON");
        refused(&s, "POST", path, Some("not json at all"), 400, "malformed JSON");
        refused(&s, "POST", path, Some(r#"{"name": 42}"#), 400, "invalid request body");
        refused(&s, "POST", path, Some(r#"{"name": "x", "bogus": 1}"#), 400, "unknown field `bogus`");
        refused(&s, "POST", path, Some(r#"["name"]"#), 400, "invalid request body");
        refused_with(
            &s,
            "POST",
            path,
            Some(r#"{"name":"x"}"#),
            &[("content-type", "text/plain")],
            415,
            "Content-Type: application/json",
        );
        let huge = format!(r#"{{"name": "x", "description": "{}"}}"#, "a".repeat(70 * 1024));
        refused(&s, "POST", path, Some(&huge), 413, "exceeds the limit of 65536 bytes");
    }
    refused(
        &s,
        "POST",
        "/v1/auth/login",
        Some(r#"{"user":"admin","password":"x","otp":"1"}"#),
        400,
        "unknown field `otp`",
    );
    refused(&s, "POST", "/v1/users", Some(r#"{"name":"short","password":"1234567"}"#), 400, "8 to 1024 characters");
    refused(&s, "POST", "/v1/sys/test/clock", Some(r#"{"advance":"5x"}"#), 400, "unknown unit 'x'");
    refused(&s, "POST", "/v1/requests", Some(r#"{"role":"r","duration":"-5m"}"#), 404, "does not exist");
    refused(&s, "GET", "/v1/audit/events?since=abc", None, 400, "invalid query string");
    refused(&s, "GET", "/v1/audit/events?bogus=1", None, 400, "unknown field `bogus`");
}

#[test]
fn hostile_names_are_refused_in_bodies_and_paths() {
    let s = Server::start();
    let long = "a".repeat(10_000);
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "is empty"),
        (long.clone(), "the maximum is 64"),
        ("al\nice".into(), "control character (U+000A)"),
        ("nul\u{0}byte".into(), "control character (U+0000)"),
        ("bell\u{7}".into(), "control character (U+0007)"),
        ("x'; DROP TABLE users;--".into(), "letters, digits and . _ @ -"),
        ("a\"b".into(), "letters, digits"),
        ("100%".into(), "letters, digits"),
        ("two words".into(), "letters, digits"),
        ("ünïcode".into(), "letters, digits"),
        ("-leading".into(), "starting with a letter or digit"),
    ];
    for (name, needle) in &cases {
        for path in ["/v1/users", "/v1/groups", "/v1/service-principals"] {
            let body = json!({ "name": name }).to_string();
            refused(&s, "POST", path, Some(&body), 400, needle);
        }
        let body = json!({ "name": "ok", "groups": [name] }).to_string();
        refused(&s, "POST", "/v1/users", Some(&body), 400, needle);
    }
    // In URL paths (percent-encoded).
    for (raw, needle) in [
        (long.as_str(), "the maximum is 64"),
        ("x%27%3B%20DROP%20TABLE%20users%3B--", "letters, digits"),
        ("al%0Aice", "control character"),
        ("%00", "control character"),
    ] {
        refused(&s, "GET", &format!("/v1/users/{raw}"), None, 400, needle);
        refused(&s, "DELETE", &format!("/v1/groups/{raw}"), None, 400, needle);
        refused(&s, "POST", &format!("/v1/service-principals/{raw}/disable"), None, 400, needle);
    }
    // The hostile strings were never stored and the tables are intact.
    let users = s.cli(&["user", "list", "-o", "json"]).ok().json();
    assert_eq!(users["users"].as_array().unwrap().len(), 1);
}

#[test]
fn routes_methods_and_authentication_errors() {
    let s = Server::start();
    let (st, _, text) = s.http_raw("GET", "/v1/nope", None, None, &[]);
    assert_eq!(st, 404);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"]["code"], "not_found");
    let (st, _, text) = s.http_raw("PATCH", "/v1/users", Some(&s.token), None, &[]);
    assert_eq!(st, 405, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"]["code"], "method_not_allowed");
    for auth in [None, Some("Bearer"), Some("Basic YWxpY2U6eA=="), Some("Bearer lts_forged")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
        let (st, _, text) = s.http_raw("GET", "/v1/users", None, None, &headers);
        assert_eq!(st, 401, "{auth:?}: {text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"]["code"], "unauthenticated");
    }
    s.create_user("mallory", "correct horse battery", &[]);
    let t = s.login("mallory", "correct horse battery", None).unwrap();
    for (m, p) in
        [("GET", "/v1/users"), ("POST", "/v1/groups"), ("GET", "/v1/audit/events"), ("POST", "/v1/policy/apply")]
    {
        let body = (m == "POST").then_some(r#"{"name":"x","files":{}}"#);
        let (st, _, text) = s.http_raw(m, p, Some(&t), body, &[]);
        assert_eq!(st, 403, "{m} {p}: {text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"]["code"], "forbidden");
    }
    let (st, _, text) = s.http_raw("GET", "/v1/sys/health", None, None, &[]);
    assert_eq!(st, 200);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["status"], "ok");
}

#[test]
fn request_ids_are_echoed_and_audited() {
    let s = Server::start();
    let body = r#"{"name":"ops"}"#;
    let (st, hs, _) = s.http_raw("POST", "/v1/groups", Some(&s.token), Some(body), &[("x-request-id", "test-req-123")]);
    assert_eq!(st, 201);
    assert!(hs.iter().any(|(k, v)| k == "x-request-id" && v == "test-req-123"));
    let ev = s.audit("group.create");
    let mine = ev.iter().find(|e| e["target"] == "group:ops").unwrap();
    assert_eq!(mine["request_id"], "test-req-123");
    assert_eq!(mine["source"], "127.0.0.1");
    for bad in ["has spaces", &"x".repeat(200), "semi;colon"] {
        let (_, hs, _) = s.http_raw("GET", "/v1/sys/health", None, None, &[("x-request-id", bad)]);
        let id = hs.iter().find(|(k, _)| k == "x-request-id").map(|(_, v)| v.clone()).unwrap();
        assert!(id.starts_with("req_") && id != bad, "{id}");
    }
}

#[test]
fn openapi_documents_every_route() {
    let s = Server::start();
    let (st, doc) = s.http("GET", "/v1/openapi.json", None, None);
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| format!("{} {path}", m.to_uppercase())))
        .collect();
    let expected: BTreeSet<String> = [
        "GET /v1/sys/health",
        "GET /metrics",
        "GET /v1/slo",
        "GET /v1/inventory",
        "POST /v1/grants/{id}/ssh",
        "POST /v1/recordings",
        "GET /v1/recordings",
        "GET /v1/recordings/{id}",
        "POST /v1/recordings/{id}/chunks",
        "POST /v1/recordings/{id}/end",
        "GET /v1/recordings/{id}/cast",
        "GET /v1/ssh/ca",
        "GET /v1/ssh/krl",
        "POST /v1/sys/test/clock",
        "GET /v1/sys/notifications",
        "POST /v1/sys/keys/token/rotate",
        "POST /v1/auth/login",
        "POST /v1/auth/sp/login",
        "POST /v1/auth/exchange",
        "GET /v1/auth/oidc",
        "POST /v1/auth/oidc/{provider}/start",
        "POST /v1/auth/oidc/{provider}/callback",
        "POST /v1/auth/oidc/{provider}/device",
        "POST /v1/auth/oidc/{provider}/device/poll",
        "POST /v1/auth/logout",
        "GET /v1/auth/whoami",
        "POST /v1/auth/mfa/enroll",
        "POST /v1/auth/mfa/confirm",
        "GET /v1/users",
        "POST /v1/users",
        "GET /v1/users/{name}",
        "DELETE /v1/users/{name}",
        "POST /v1/users/{name}/disable",
        "POST /v1/users/{name}/enable",
        "PUT /v1/users/{name}/password",
        "DELETE /v1/users/{name}/mfa",
        "GET /v1/groups",
        "POST /v1/groups",
        "GET /v1/groups/{name}",
        "DELETE /v1/groups/{name}",
        "POST /v1/groups/{name}/members",
        "DELETE /v1/groups/{name}/members/{kind}/{member}",
        "GET /v1/service-principals",
        "POST /v1/service-principals",
        "GET /v1/service-principals/{name}",
        "DELETE /v1/service-principals/{name}",
        "POST /v1/service-principals/{name}/rotate-secret",
        "POST /v1/service-principals/{name}/disable",
        "POST /v1/service-principals/{name}/enable",
        "POST /v1/service-principals/{name}/federations",
        "GET /v1/service-principals/{name}/federations",
        "DELETE /v1/service-principals/{name}/federations/{federation}",
        "GET /v1/audit/events",
        "GET /v1/audit/checkpoints",
        "GET /v1/audit/key",
        "POST /v1/policy/apply",
        "GET /v1/policy",
        "POST /v1/policy/simulate",
        "POST /v1/policy/replay",
        "GET /v1/requests",
        "POST /v1/requests",
        "GET /v1/requests/{id}",
        "POST /v1/requests/{id}/approve",
        "POST /v1/requests/{id}/deny",
        "POST /v1/requests/{id}/cancel",
        "POST /v1/requests/{id}/review",
        "POST /v1/breakglass",
        "POST /v1/gateway/authorize",
        "POST /v1/gateway/grants",
        "GET /v1/grants",
        "GET /v1/grants/{id}",
        "POST /v1/grants/{id}/revoke",
        "POST /v1/grants/{id}/token",
        "POST /v1/grants/{id}/db-creds",
        "POST /v1/db/connections",
        "GET /v1/db/connections",
        "GET /v1/db/connections/{name}",
        "DELETE /v1/db/connections/{name}",
        "GET /v1/db/creds",
        "POST /v1/db/leases/lookup",
        "POST /v1/db/leases/renew",
        "POST /v1/db/leases/revoke",
        "POST /v1/db/leases/revoke-prefix",
        "GET /.well-known/jwks.json",
        "GET /.well-known/openid-configuration",
        "POST /v1/tokens/introspect",
        "GET /v1/tokens/revoked",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(documented, expected, "the OpenAPI document and the route list disagree");
    // Every documented route is really served (not a 404 from the fallback).
    for route in &expected {
        let (m, p) = route.split_once(' ').unwrap();
        let path = p
            .replace("{name}", "nobody")
            .replace("{id}", "nothing")
            .replace("{kind}", "user")
            .replace("{member}", "nobody")
            .replace("{federation}", "nothing")
            .replace("{provider}", "nothing");
        let (_, _, text) = s.http_raw(m, &path, None, None, &[]);
        assert!(!text.contains("no route for"), "{route} is documented but not served");
    }
}
