//! Built-in alerts against a real server: each condition raises one
//! `alert.raise` audit event (de-duplicated by rule, user and target) that
//! reaches the webhook. Time moves on the server's test clock; the
//! evaluation runs every second here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, eventually};
use serde_json::Value;

const PW: &str = "correct horse battery";

const OPS: &str = r#"name = "ops"
max_duration = "2h"
[approval]
required = 1
approvers = ["group:leads"]
[breakglass]
allowed = true
max_duration = "1h"
"#;

const POLICIES: &str = r#"@id("eng-request")
permit(principal in Group::"eng", action == Action::"request", resource);
@id("oncall-breakglass")
permit(principal in Group::"oncall", action == Action::"breakglass", resource);
"#;

fn setup(extra: &[&str]) -> (Server, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_in(&tmp.path().join("data"), extra);
    for g in ["eng", "leads", "oncall"] {
        s.cli(&["group", "create", g]).ok();
    }
    s.create_user("alice", PW, &["eng", "oncall"]);
    s.create_user("mallory", PW, &[]);
    s.apply_bundle(&[("roles/ops.toml", OPS), ("policies/main.cedar", POLICIES)]);
    (s, tmp)
}

fn alerts(s: &Server, rule: &str) -> Vec<Value> {
    s.audit("alert.raise").into_iter().filter(|e| e["details"]["rule"] == rule).collect()
}

#[test]
fn each_condition_raises_one_alert_that_reaches_the_webhook() {
    let hook = common::webhook(0);
    let (s, _tmp) = setup(&["--alert-interval", "1s", "--approval-sla", "1h", "--webhook", &hook.url]);
    let alice = s.login("alice", PW, None).unwrap();
    let mallory = s.login("mallory", PW, None).unwrap();

    // Break-glass used: critical, about alice and the role; twice is still one alert.
    for _ in 0..2 {
        s.cli_as(&alice, &["breakglass", "ops", "--reason", "primary down"], None).ok();
    }
    eventually("break-glass raises an alert", || !alerts(&s, "breakglass-used").is_empty());

    // A request waiting past its SLA (1 h on the server's clock).
    let req = s.cli_as(&alice, &["request", "ops", "--for", "30m", "--reason", "deploy", "-o", "json"], None).ok();
    let req_id = req.json()["request"]["id"].as_str().unwrap().to_string();
    assert!(alerts(&s, "approval-waiting").is_empty());
    s.advance("61m");
    eventually("the waiting approval raises an alert", || !alerts(&s, "approval-waiting").is_empty());

    // One user denied again and again (mallory is in no group: policy denies).
    for _ in 0..6 {
        let out = s.cli_as(&mallory, &["request", "ops", "--for", "30m", "--reason", "let me in"], None);
        assert_eq!(out.code, 3, "denied");
    }
    eventually("repeated denies raise an alert", || !alerts(&s, "user-denied-repeatedly").is_empty());

    // Later rounds (seen by oscar's break-glass alert) raise none of these again.
    s.create_user("oscar", PW, &["oncall"]);
    let oscar = s.login("oscar", PW, None).unwrap();
    s.cli_as(&oscar, &["breakglass", "ops", "--reason", "second incident"], None).ok();
    eventually("a later round runs", || alerts(&s, "breakglass-used").len() == 2);
    let all = s.audit("alert.raise");
    let others = all.iter().filter(|e| e["details"]["rule"] != "slo-burn").count();
    assert_eq!(others, 4, "alerts are de-duplicated: {all:?}");
    // Break-glass twice in a day burns the default budget (2 per 30 days) 30× too fast; raised
    // again only once its cooldown (1 h) has passed on the server's clock (the test moved it 61 min).
    let burn = alerts(&s, "slo-burn");
    assert!((1..=2).contains(&burn.len()) && burn.iter().all(|e| e["details"]["target"] == "slo:M5"), "{burn:?}");

    let bg = alerts(&s, "breakglass-used");
    assert_eq!(bg.len(), 2, "{bg:?}");
    assert_eq!(bg[0]["actor"], "system:alerts");
    assert_eq!(
        (bg[0]["details"]["user"].as_str(), bg[0]["details"]["target"].as_str()),
        (Some("user:alice"), Some("role:ops"))
    );
    assert_eq!(bg[0]["details"]["severity"], "critical");
    let waiting = alerts(&s, "approval-waiting");
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0]["details"]["target"], format!("request:{req_id}"));
    assert!(waiting[0]["details"]["message"].as_str().unwrap().contains("SLA 1h"), "{waiting:?}");
    let denied = alerts(&s, "user-denied-repeatedly");
    assert_eq!((denied.len(), denied[0]["details"]["user"].as_str()), (1, Some("user:mallory")));

    // Each alert went to the webhook with a readable line.
    eventually("the webhook received the alerts", || {
        hook.received.lock().unwrap().iter().filter(|n| n["event"] == "alert.raise").count() == all.len()
    });
    let texts: Vec<String> = hook
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|n| n["event"] == "alert.raise")
        .map(|n| n["text"].as_str().unwrap().to_string())
        .collect();
    assert!(
        texts.iter().any(|t| t.starts_with("ALERT breakglass-used (critical): user:alice used break-glass")),
        "{texts:?}"
    );
}
