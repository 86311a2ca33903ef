//! Benchmarks of policy decisions and of the JIT path over HTTP.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use latch_core::PrincipalKind;
use latch_policy::{Action, Bundle, DecisionContext, PrincipalInfo};
use serde_json::{Value, json};

use crate::bench::pct;
use crate::cli::Global;
use crate::out::emit;

/// A bundle of `roles` roles with policies referring to groups, and the
/// principals that will be decided for.
fn synthetic_bundle(roles: usize) -> anyhow::Result<Bundle> {
    let mut files = BTreeMap::new();
    let mut cedar = String::new();
    for i in 0..roles {
        files.insert(
            format!("roles/r{i}.toml"),
            format!("name = \"r{i}\"\ndescription = \"role {i}\"\nmax_duration = \"4h\"\n[approval]\nrequired = 1\napprovers = [\"group:leads{}\"]\n", i % 10),
        );
        cedar.push_str(&format!(
            "@id(\"request-r{i}\")\npermit(principal in Group::\"team{}\", action == Action::\"request\", resource == Role::\"r{i}\");\n\
             @id(\"activate-r{i}\")\npermit(principal in Group::\"team{}\", action == Action::\"activate\", resource == Role::\"r{i}\") \
             when {{ context.mfa && context.duration_secs <= 3600 && context.hour >= 6 }};\n",
            i % 50,
            i % 50
        ));
    }
    cedar.push_str("@id(\"no-contractors\")\nforbid(principal in Group::\"contractors\", action == Action::\"activate\", resource);\n");
    files.insert("policies/main.cedar".into(), cedar);
    Bundle::from_files(&files).map_err(|e| anyhow::anyhow!("synthetic bundle invalid: {e}"))
}

pub fn policy(g: &Global, roles: usize, principals: usize, decisions: usize) -> anyhow::Result<()> {
    let bundle = synthetic_bundle(roles)?;
    let people: Vec<PrincipalInfo> = (0..principals)
        .map(|i| PrincipalInfo {
            kind: PrincipalKind::User,
            name: format!("user{i}"),
            groups: {
                let mut gs = vec![format!("team{}", i % 50), format!("team{}", (i * 7) % 50)];
                if i.is_multiple_of(13) {
                    gs.push("contractors".into());
                }
                gs
            },
        })
        .collect();
    let ctx = |i: usize| DecisionContext {
        mfa: !i.is_multiple_of(3),
        acr: String::new(),
        amr: Vec::new(),
        duration_secs: if i.is_multiple_of(5) { 7200 } else { 1800 },
        hour: i64::try_from(i % 24).unwrap_or(0),
        weekday: "wed".into(),
        source_ip: "10.1.2.3".into(),
        ticket: "INC-1".into(),
        reason: "benchmark".into(),
        breakglass: false,
    };
    // Warm up, then time each decision.
    for i in 0..1000 {
        let _ = bundle.decide(Action::Activate, &people[i % principals], &format!("r{}", i % roles), &ctx(i));
    }
    let names: Vec<String> = (0..roles).map(|i| format!("r{i}")).collect();
    let mut lat = Vec::with_capacity(decisions);
    let mut allowed = 0usize;
    let t0 = Instant::now();
    for i in 0..decisions {
        let action = if i % 2 == 0 { Action::Request } else { Action::Activate };
        let c = ctx(i);
        let t = Instant::now();
        let d = bundle.decide(action, &people[(i * 31) % principals], &names[(i * 17) % roles], &c);
        lat.push(t.elapsed());
        allowed += usize::from(d.allowed);
    }
    let total = t0.elapsed().as_secs_f64();
    lat.sort();
    let us = |p: f64| pct(&lat, p) * 1000.0;
    let v = json!({
        "roles": roles, "principals": principals, "policies": bundle.policy_ids().len(), "decisions": decisions,
        "allowed": allowed, "decisions_per_sec": (decisions as f64 / total).round(),
        "latency_us_p50": us(0.50), "latency_us_p99": us(0.99), "latency_us_max": us(1.0),
    });
    emit(g, &v, |v| {
        println!(
            "policy decisions: {} roles, {} principals, {} policies: p50 {:.1} µs, p99 {:.1} µs ({} decisions/s single-threaded)",
            v["roles"],
            v["principals"],
            v["policies"],
            v["latency_us_p50"].as_f64().unwrap_or_default(),
            v["latency_us_p99"].as_f64().unwrap_or_default(),
            v["decisions_per_sec"]
        );
    });
    Ok(())
}

pub(crate) struct DevServer {
    child: std::process::Child,
    pub addr: String,
    pub token: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

fn start_dev_server() -> anyhow::Result<DevServer> {
    let dir = tempfile::Builder::new().prefix("latch-bench-").tempdir()?;
    let mut srv = start_dev_server_in(&dir.path().join("data"), &[])?;
    srv._dir = Some(dir);
    Ok(srv)
}

/// A dev server on data directory `data`, with extra arguments (e.g. `--storage`).
pub(crate) fn start_dev_server_in(data: &std::path::Path, extra: &[&str]) -> anyhow::Result<DevServer> {
    let exe = std::env::current_exe().context("cannot find the latch binary")?;
    let mut child = Command::new(exe)
        .args(["server", "--dev", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra)
        .env_remove("LATCH_STORAGE")
        .env("LATCH_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the dev server")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (mut addr, mut token) = (String::new(), String::new());
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(v) = line.strip_prefix("LATCH_ADDR=") {
            addr = v.into();
        } else if let Some(v) = line.strip_prefix("LATCH_TOKEN=") {
            token = v.into();
        }
        if !addr.is_empty() && !token.is_empty() {
            break;
        }
    }
    anyhow::ensure!(!token.is_empty(), "the dev server did not start");
    Ok(DevServer { child, addr, token, _dir: None })
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).max_idle_connections_per_host(64).build().into()
}

pub(crate) fn post(agent: &ureq::Agent, url: &str, token: &str, body: &Value) -> anyhow::Result<Value> {
    let mut resp = agent.post(url).header("Authorization", &format!("Bearer {token}")).send_json(body)?;
    let status = resp.status().as_u16();
    let v: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
    anyhow::ensure!((200..300).contains(&status), "HTTP {status} from {url}: {v}");
    Ok(v)
}

/// Runs `work` from `threads` threads for `secs` seconds; returns requests/s.
fn saturate(
    threads: usize,
    secs: u64,
    work: impl Fn(&ureq::Agent) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<f64> {
    let done = AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let errors = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let a = agent();
                while Instant::now() < deadline {
                    match work(&a) {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            *errors.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = errors.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(done.load(Ordering::Relaxed) as f64 / secs as f64)
}

pub fn http(g: &Global, requests: usize, concurrency: usize, seconds: u64) -> anyhow::Result<()> {
    let srv = start_dev_server()?;
    let a = agent();
    let bundle = json!({ "files": {
        "roles/bench.toml": "name = \"bench\"\nmax_duration = \"1h\"\n[approval]\nrequired = 1\napprovers = [\"group:admins\"]\n[requirements]\nreason = true\n[credentials.token]\naudiences = [\"https://bench.internal\"]\n",
        "policies/bench.cedar": "@id(\"admins-request\")\npermit(principal in Group::\"admins\", action == Action::\"request\", resource == Role::\"bench\");\n@id(\"admins-activate\")\npermit(principal in Group::\"admins\", action == Action::\"activate\", resource == Role::\"bench\");\n",
    }});
    post(&a, &format!("{}/v1/policy/apply", srv.addr), &srv.token, &bundle)?;

    // Auto-approved request + token issue, each pair timed end to end.
    let next = AtomicUsize::new(0);
    let lat = Mutex::new(Vec::with_capacity(requests));
    let issued = Mutex::new(Vec::with_capacity(requests));
    let failure = Mutex::new(None);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency.max(1) {
            s.spawn(|| {
                let a = agent();
                let mut mine = Vec::new();
                let mut tokens = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let t = Instant::now();
                    let r = post(
                        &a,
                        &format!("{}/v1/requests", srv.addr),
                        &srv.token,
                        &json!({ "role": "bench", "duration": "10m", "reason": "bench" }),
                    )
                    .and_then(|v| {
                        let grant = v["grant"]["id"].as_str().context("request was not auto-approved")?.to_string();
                        post(&a, &format!("{}/v1/grants/{grant}/token", srv.addr), &srv.token, &json!({}))
                    });
                    match r {
                        Ok(v) => {
                            mine.push(t.elapsed());
                            tokens.push(v["token"].as_str().unwrap_or_default().to_string());
                        }
                        Err(e) => {
                            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            return;
                        }
                    }
                }
                lat.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
                issued.lock().unwrap_or_else(|p| p.into_inner()).extend(tokens);
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let secs = t0.elapsed().as_secs_f64();
    let issued = issued.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut lat = lat.into_inner().unwrap_or_else(|p| p.into_inner());
    lat.sort();

    // One token to introspect, then saturate introspection and health in turn.
    let v = post(
        &a,
        &format!("{}/v1/requests", srv.addr),
        &srv.token,
        &json!({ "role": "bench", "duration": "1h", "reason": "bench" }),
    )?;
    let grant = v["grant"]["id"].as_str().context("no grant")?.to_string();
    let tok = post(&a, &format!("{}/v1/grants/{grant}/token", srv.addr), &srv.token, &json!({}))?;
    let jwt = tok["token"].as_str().context("no token")?.to_string();
    let introspect_url = format!("{}/v1/tokens/introspect", srv.addr);
    let health_url = format!("{}/v1/sys/health", srv.addr);
    // Cold: every token issued above introspected once (a full signature check each).
    let cursor = AtomicUsize::new(0);
    let t_cold = Instant::now();
    let cold_failure = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..concurrency.max(1) {
            s.spawn(|| {
                let a = agent();
                loop {
                    let i = cursor.fetch_add(1, Ordering::Relaxed);
                    let Some(t) = issued.get(i) else { return };
                    let r = post(&a, &introspect_url, &srv.token, &json!({ "token": t })).and_then(|v| {
                        if v["active"] == true { Ok(()) } else { Err(anyhow::anyhow!("token inactive")) }
                    });
                    if let Err(e) = r {
                        *cold_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = cold_failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let cold_rps = issued.len() as f64 / t_cold.elapsed().as_secs_f64();
    let introspect_rps = saturate(concurrency, seconds, |a| {
        let v = post(a, &introspect_url, &srv.token, &json!({ "token": jwt }))?;
        anyhow::ensure!(v["active"] == true, "token inactive");
        Ok(())
    })?;
    let health_rps = saturate(concurrency, seconds, |a| {
        let mut r = a.get(&health_url).call()?;
        anyhow::ensure!(r.status() == 200, "health {}", r.status());
        let _ = r.body_mut().read_to_string();
        Ok(())
    })?;
    let v = json!({
        "requests": requests, "concurrency": concurrency,
        "request_plus_token_per_sec": (requests as f64 / secs).round(),
        "latency_ms_p50": pct(&lat, 0.50), "latency_ms_p99": pct(&lat, 0.99),
        "introspect_per_sec": introspect_rps.round(), "health_per_sec": health_rps.round(),
        "introspect_cold_per_sec": cold_rps.round(), "introspect_cold_tokens": issued.len(),
        "introspect_vs_health": ((introspect_rps / health_rps) * 1000.0).round() / 1000.0,
        "durability": "SQLite WAL, synchronous=FULL; every request and token issue commits its audit event",
    });
    emit(g, &v, |v| {
        println!(
            "auto-approved request + token over HTTP: {} pairs/s with {} clients (p50 {:.2} ms, p99 {:.2} ms per pair)",
            v["request_plus_token_per_sec"],
            v["concurrency"],
            v["latency_ms_p50"].as_f64().unwrap_or_default(),
            v["latency_ms_p99"].as_f64().unwrap_or_default()
        );
        println!(
            "introspection: {} req/s (one hot token); health: {} req/s; ratio {}",
            v["introspect_per_sec"], v["health_per_sec"], v["introspect_vs_health"]
        );
        println!(
            "introspection of {} distinct tokens, each once (full signature check): {} req/s",
            v["introspect_cold_tokens"], v["introspect_cold_per_sec"]
        );
    });
    Ok(())
}
