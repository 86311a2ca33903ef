//! `latch slo`: the service-level report of `GET /v1/slo`.

use serde_json::Value;

use crate::cli::Global;
use crate::client::{Client, seg};
use crate::out::{emit, s, table};

pub fn run(window: &str, g: &Global) -> anyhow::Result<()> {
    let c = Client::new(g)?;
    let v: Value = c.get(&format!("/v1/slo?window={}", seg(window)))?;
    emit(g, &v, print);
    Ok(())
}

fn budget(v: &Value) -> String {
    match v.as_f64() {
        Some(b) => format!("{:.0}%", b * 100.0),
        None => "-".into(),
    }
}

fn print(v: &Value) {
    println!("window {} ({} to {})", s(v, "window"), s(v, "from"), s(v, "to"));
    let rows = v["objectives"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| {
                    vec![
                        s(o, "sli"),
                        s(o, "name"),
                        s(o, "value"),
                        s(o, "target"),
                        if o["met"] == Value::Bool(true) { "yes".into() } else { "NO".into() },
                        budget(&o["error_budget_remaining"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["sli", "objective", "value", "target", "met", "budget left"], rows);
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string)).collect())
            .unwrap_or_default()
    };
    let unrecorded = list(&v["m1"]["unrecorded_grants"]);
    if !unrecorded.is_empty() {
        println!("M1: grants used without a recorded session: {}", unrecorded.join(", "));
    }
    let long: Vec<String> = ["service_principal_secrets", "signing_keys"]
        .iter()
        .flat_map(|k| v["m4"][*k].as_array().cloned().unwrap_or_default())
        .filter(|c| c["long_lived"] == Value::Bool(true))
        .map(|c| format!("{} ({} days)", s(&c, "name"), s(&c, "age_days")))
        .collect();
    if !long.is_empty() {
        println!("M4: long-lived: {}", long.join(", "));
    }
    for (key, what) in [("long_lived_tokens", "tokens"), ("long_lived_ssh_certificates", "SSH certificates")] {
        if v["m4"][key].as_i64().unwrap_or(0) > 0 {
            println!("M4: {} {what} valid for more than {}", s(&v["m4"], key), s(&v["m4"], "credential_max_lifetime"));
        }
    }
    if v["m5"]["unreviewed"].as_i64().unwrap_or(0) > 0 {
        println!(
            "M5: {} break-glass uses await their review (latch review REQ --comment …)",
            s(&v["m5"], "unreviewed")
        );
    }
    if v["m6"]["in_progress"].as_i64().unwrap_or(0) > 0 {
        println!("M6: {} revoked grants still have recorded sessions running", s(&v["m6"], "in_progress"));
    }
    println!("(definitions of each SLI: latch slo -o json)");
}

/// `latch inventory`.
pub fn inventory(g: &Global) -> anyhow::Result<()> {
    let c = Client::new(g)?;
    let v: Value = c.get("/v1/inventory")?;
    emit(g, &v, |v| {
        let mut rows = Vec::new();
        for (kind, key, limit) in [
            ("service-principal secret", "service_principal_secrets", "sp_secret_max_age"),
            ("signing key", "signing_keys", "signing_key_max_age"),
            ("stored secret", "static_secrets", "static_secret_max_age"),
        ] {
            for c in v[key].as_array().into_iter().flatten() {
                rows.push(vec![
                    kind.to_string(),
                    s(c, "name"),
                    format!("{:.1}", c["age_days"].as_f64().unwrap_or_default()),
                    s(v, limit),
                    c["expires_at"].as_str().unwrap_or("-").to_string(),
                    match (c["long_lived"] == Value::Bool(true), c["rotation"].as_str()) {
                        (_, Some("expired")) => "EXPIRED".into(),
                        (true, _) => "OVERDUE".into(),
                        (false, Some(r)) => r.to_string(),
                        (false, None) => "ok".into(),
                    },
                ]);
            }
        }
        table(&["kind", "credential", "age (days)", "limit", "expires", "status"], rows);
        println!(
            "long-lived tokens: {}, long-lived SSH certificates: {}; past their limit in all: {} (M4)",
            v["long_lived_tokens"], v["long_lived_ssh_certificates"], v["long_lived"]
        );
    });
    Ok(())
}
