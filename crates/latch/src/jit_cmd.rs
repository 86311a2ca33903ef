//! Client commands for policy, requests, approvals, grants, tokens and break-glass.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::UsageError;
use crate::cli::{Command, Global, PolicyCmd, RequestArgs};
use crate::client::{ApiFailure, Client, seg};
use crate::out::{emit, s, table};

pub fn run(cmd: Command, g: &Global) -> anyhow::Result<()> {
    let c = Client::new(g)?;
    match cmd {
        Command::Apply { dir, plan } => apply(&c, g, &dir, plan),
        Command::Roles => {
            let v: Value = c.get("/v1/policy")?;
            emit(g, &v["roles"], |roles| {
                let rows = roles
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|r| {
                                vec![
                                    s(r, "name"),
                                    s(r, "max_duration"),
                                    s(r, "approvals_required"),
                                    s(r, "approvers"),
                                    s(r, "requires_mfa"),
                                    s(r, "breakglass_max_duration"),
                                    s(r, "description"),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                table(&["role", "max", "approvals", "approvers", "mfa", "breakglass", "description"], rows);
            });
            Ok(())
        }
        Command::Policy(p) => policy(&c, g, p),
        Command::Request(a) => request(&c, g, a),
        Command::Requests { state, mine, to_review } => {
            let mut q = format!("/v1/requests?mine={mine}&to_review={to_review}");
            if let Some(st) = state {
                q.push_str(&format!("&state={}", seg(&st)));
            }
            let v: Value = c.get(&q)?;
            emit(g, &v, |v| {
                let rows = v["requests"].as_array().map(|a| a.iter().map(request_row).collect()).unwrap_or_default();
                table(&["id", "state", "requester", "role", "duration", "approvals", "created", "reason"], rows);
            });
            Ok(())
        }
        Command::Show { id } => {
            let v: Value = c.get(&format!("/v1/requests/{}", seg(&id)))?;
            emit(g, &v, print_outcome);
            Ok(())
        }
        Command::Approve { id, comment } => {
            let v: Value = c.post(&format!("/v1/requests/{}/approve", seg(&id)), &json!({ "comment": comment }))?;
            emit(g, &v, |v| {
                let r = &v["request"];
                if v["grant"].is_null() {
                    println!(
                        "approved {}: {} of {} approvals",
                        s(r, "id"),
                        r["approvals"].as_array().map_or(0, Vec::len),
                        s(r, "approvals_required")
                    );
                } else {
                    println!("approved {}: granted ({})", s(r, "id"), s(&v["grant"], "id"));
                }
            });
            Ok(())
        }
        Command::Deny { id, reason } => {
            let v: Value = c.post(&format!("/v1/requests/{}/deny", seg(&id)), &json!({ "reason": reason }))?;
            emit(g, &v, |v| println!("denied {}", s(v, "id")));
            Ok(())
        }
        Command::Cancel { id } => {
            let v: Value = c.call("POST", &format!("/v1/requests/{}/cancel", seg(&id)), None::<&()>)?;
            emit(g, &v, |v| println!("cancelled {}", s(v, "id")));
            Ok(())
        }
        Command::Grants { mine: _, all, active } => {
            let v: Value = c.get(&format!("/v1/grants?all={all}&active={active}"))?;
            emit(g, &v, |v| {
                let rows = v["grants"].as_array().map(|a| a.iter().map(grant_row).collect()).unwrap_or_default();
                table(&["grant", "state", "principal", "role", "expires", "breakglass"], rows);
            });
            Ok(())
        }
        Command::Revoke { grant_id, reason } => {
            let v: Value = c.post(&format!("/v1/grants/{}/revoke", seg(&grant_id)), &json!({ "reason": reason }))?;
            emit(g, &v, |v| {
                println!(
                    "revoked {}; tokens revoked: {}",
                    s(&v["grant"], "id"),
                    v["tokens_revoked"].as_array().map_or(0, Vec::len)
                );
            });
            Ok(())
        }
        Command::Token { grant, audience, ttl } => {
            let v: Value =
                c.post(&format!("/v1/grants/{}/token", seg(&grant)), &json!({ "audience": audience, "ttl": ttl }))?;
            emit(g, &v, |v| {
                println!("{}", s(v, "token"));
                eprintln!("jti {} for {} until {}", s(v, "jti"), s(v, "audience"), s(v, "expires_at"));
            });
            Ok(())
        }
        Command::Introspect { token } => {
            let v: Value = c.post("/v1/tokens/introspect", &json!({ "token": token }))?;
            emit(g, &v, |v| {
                if v["active"] == true {
                    println!(
                        "active: {} as role {} (grant {}) until {}",
                        s(v, "sub"),
                        s(v, "role"),
                        s(v, "grant_id"),
                        s(v, "exp")
                    );
                } else {
                    println!("inactive");
                }
            });
            Ok(())
        }
        Command::Breakglass { role, reason, duration, ticket } => {
            let v: Value = c.post(
                "/v1/breakglass",
                &json!({ "role": role, "reason": reason, "duration": duration, "ticket": ticket }),
            )?;
            emit(g, &v, |v| {
                print_outcome(v);
                eprintln!(
                    "BREAK-GLASS: security has been alerted; an approver must review {} afterwards",
                    s(&v["request"], "id")
                );
            });
            Ok(())
        }
        Command::Review { id, comment } => {
            let v: Value = c.post(&format!("/v1/requests/{}/review", seg(&id)), &json!({ "comment": comment }))?;
            emit(g, &v, |v| println!("reviewed {}", s(v, "id")));
            Ok(())
        }
        _ => Err(anyhow::anyhow!("not a JIT command")),
    }
}

fn request_row(r: &Value) -> Vec<String> {
    let approvals = format!("{}/{}", r["approvals"].as_array().map_or(0, Vec::len), s(r, "approvals_required"));
    let state = if r["breakglass"] == true { format!("{} (break-glass)", s(r, "state")) } else { s(r, "state") };
    vec![
        s(r, "id"),
        state,
        s(r, "requester"),
        s(r, "role"),
        s(r, "duration"),
        approvals,
        s(r, "created_at"),
        s(r, "reason"),
    ]
}

fn grant_row(g: &Value) -> Vec<String> {
    vec![s(g, "id"), s(g, "state"), s(g, "principal"), s(g, "role"), s(g, "expires_at"), s(g, "breakglass")]
}

fn print_outcome(v: &Value) {
    table(
        &["id", "state", "requester", "role", "duration", "approvals", "created", "reason"],
        vec![request_row(&v["request"])],
    );
    if !v["grant"].is_null() {
        println!();
        table(&["grant", "state", "principal", "role", "expires", "breakglass"], vec![grant_row(&v["grant"])]);
    }
}

/// Reads `roles/*.toml` and `policies/*.cedar` under `dir`.
pub fn read_bundle(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for (sub, ext) in [("roles", "toml"), ("policies", "cedar")] {
        let d = dir.join(sub);
        if !d.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) == Some(ext) {
                let name = path.file_name().and_then(|n| n.to_str()).context("file names must be UTF-8")?;
                let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                files.insert(format!("{sub}/{name}"), text);
            }
        }
    }
    if files.is_empty() {
        return Err(UsageError(format!("{} has no roles/*.toml or policies/*.cedar files", dir.display())).into());
    }
    Ok(files)
}

fn apply(c: &Client, g: &Global, dir: &Path, plan: bool) -> anyhow::Result<()> {
    let files = read_bundle(dir)?;
    let v: Value = c.post("/v1/policy/apply", &json!({ "files": files, "plan": plan }))?;
    emit(g, &v, |v| {
        let p = &v["plan"];
        for (key, sign) in [
            ("roles_added", "+ role"),
            ("roles_removed", "- role"),
            ("roles_changed", "~ role"),
            ("policies_added", "+ policy"),
            ("policies_removed", "- policy"),
            ("policies_changed", "~ policy"),
        ] {
            for item in p[key].as_array().into_iter().flatten() {
                println!("{sign} {}", item.as_str().unwrap_or_default());
            }
        }
        for w in v["warnings"].as_array().into_iter().flatten() {
            eprintln!("warning: {}", w.as_str().unwrap_or_default());
        }
        if v["applied"] == true {
            println!("applied policy version {}", s(v, "hash"));
        } else if v["hash"] == v["previous_hash"] {
            println!("no changes: version {} is in force", s(v, "hash"));
        } else {
            println!("plan only: nothing applied (version would be {})", s(v, "hash"));
        }
    });
    Ok(())
}

fn policy(c: &Client, g: &Global, cmd: PolicyCmd) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Show => {
            let v: Value = c.get("/v1/policy")?;
            emit(g, &v, |v| {
                println!("version {}", s(v, "hash"));
                println!(
                    "roles: {}",
                    v["roles"]
                        .as_array()
                        .map(|a| a.iter().map(|r| s(r, "name")).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                );
                println!("policies: {}", s(v, "policies"));
            });
        }
        PolicyCmd::Simulate { principal, sp, role, duration, context, dir } => {
            let mut body = json!({ "principal": principal, "kind": if sp { "service_principal" } else { "user" }, "role": role, "duration": duration });
            for kv in &context {
                let (k, val) =
                    kv.split_once('=').ok_or_else(|| UsageError(format!("--context {kv:?}: write KEY=VALUE")))?;
                let value = match k {
                    "mfa" => json!(val == "true"),
                    "hour" => json!(
                        val.parse::<i64>()
                            .map_err(|_| UsageError(format!("hour must be a number 0-23, not {val:?}")))?
                    ),
                    "ticket" | "reason" | "source_ip" | "weekday" => json!(val),
                    other => {
                        return Err(UsageError(format!(
                            "unknown context key {other:?}: use mfa, ticket, reason, source_ip, hour, weekday"
                        ))
                        .into());
                    }
                };
                body[k] = value;
            }
            if let Some(d) = dir {
                body["files"] = json!(read_bundle(&d)?);
            }
            let v: Value = c.post("/v1/policy/simulate", &body)?;
            emit(g, &v, |v| {
                println!("outcome: {}", s(v, "outcome"));
                println!(
                    "request:  {} (policies: {})",
                    if v["request"]["allowed"] == true { "allow" } else { "deny" },
                    s(&v["request"], "policies")
                );
                println!(
                    "activate: {} (policies: {})",
                    if v["activate"]["allowed"] == true { "allow" } else { "deny" },
                    s(&v["activate"], "policies")
                );
                println!("approvals required: {} from {}", s(v, "approvals_required"), s(v, "approvers"));
                for p in v["requirement_violations"].as_array().into_iter().flatten() {
                    println!("violation: {}", p.as_str().unwrap_or_default());
                }
            });
            if v["allowed"] != true {
                return Err(ApiFailure {
                    status: 403,
                    code: "denied".into(),
                    message: "the simulated request would be denied".into(),
                }
                .into());
            }
        }
        PolicyCmd::Replay { since, dir } => {
            let mut body = json!({ "since": since });
            if let Some(d) = dir {
                body["files"] = json!(read_bundle(&d)?);
            }
            let v: Value = c.post("/v1/policy/replay", &body)?;
            emit(g, &v, |v| {
                println!(
                    "{} requests re-evaluated under version {}; {} would change",
                    s(v, "evaluated"),
                    s(v, "policy_version"),
                    v["changed"].as_array().map_or(0, Vec::len)
                );
                for ch in v["changed"].as_array().into_iter().flatten() {
                    println!(
                        "{}  {} {}: {} -> {}",
                        s(ch, "request_id"),
                        s(ch, "requester"),
                        s(ch, "role"),
                        s(ch, "was"),
                        s(ch, "now")
                    );
                }
            });
        }
    }
    Ok(())
}

#[allow(clippy::disallowed_methods)] // a CLI polling loop, not server logic
fn request(c: &Client, g: &Global, a: RequestArgs) -> anyhow::Result<()> {
    let v: Value = c.post(
        "/v1/requests",
        &json!({ "role": a.role, "duration": a.duration, "reason": a.reason, "ticket": a.ticket }),
    )?;
    let id = s(&v["request"], "id");
    if !a.wait || s(&v["request"], "state") != "pending" {
        emit(g, &v, print_outcome);
        return Ok(());
    }
    let limit = latch_core::parse_duration(&a.wait_timeout).map_err(|e| UsageError(format!("--wait-timeout: {e}")))?;
    if g.output == crate::cli::Output::Text {
        eprintln!("request {id} is pending approval; waiting…");
    }
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let v: Value = c.get(&format!("/v1/requests/{}", seg(&id)))?;
        match s(&v["request"], "state").as_str() {
            "pending" if started.elapsed() < limit => continue,
            "pending" => anyhow::bail!("request {id} still pending after {}", a.wait_timeout),
            "active" => {
                emit(g, &v, print_outcome);
                return Ok(());
            }
            other => {
                emit(g, &v, print_outcome);
                let note = s(&v["request"], "decision_note");
                return Err(ApiFailure {
                    status: 403,
                    code: other.into(),
                    message: format!("request {id} was {other}: {note}"),
                }
                .into());
            }
        }
    }
}
