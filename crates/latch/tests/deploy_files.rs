//! The files in `deploy/` for teams that run Prometheus and Grafana: the
//! alerting rules pass `promtool check rules`, and every latch metric that
//! the rules and the dashboard use exists in a real scrape — so renaming a
//! metric cannot silently blind an alert.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;
use serde_json::Value;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy").join(path)
}

/// Metric names (`latch_…`, histogram suffixes removed) used in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text[i..].find("latch_") {
        let start = i + off;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        names.insert(base.to_string());
        i = end;
    }
    names
}

#[test]
fn alert_rules_and_dashboard_use_only_metrics_latch_serves() {
    let rules = deploy("prometheus/latch-alerts.yml");
    match Command::new("promtool").arg("check").arg("rules").arg(&rules).output() {
        Ok(out) => assert!(out.status.success(), "promtool check rules: {}", String::from_utf8_lossy(&out.stdout)),
        Err(_) => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "promtool is missing: apt-get install prometheus"
            );
            eprintln!("SKIPPED: promtool check rules (promtool is not installed)");
        }
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/latch-dashboard.json")).unwrap())
            .expect("the Grafana dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 15, "the dashboard has its panels");
    let mut used = metric_names(&std::fs::read_to_string(&rules).unwrap());
    used.extend(exprs.iter().flat_map(|e| metric_names(e)));

    let s = Server::start();
    let (status, _, scrape) = s.http_raw("GET", "/metrics", Some(&s.token), None, &[]);
    assert_eq!(status, 200);
    let served: BTreeSet<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let missing: Vec<&String> = used.iter().filter(|n| !served.contains(*n)).collect();
    assert!(missing.is_empty(), "deploy/ uses metrics latch does not serve: {missing:?}\nserved: {served:?}");
}
