//! `latch bench cluster`: latch nodes sharing one PostgreSQL database.
//!
//! Two runs on fresh databases, one after the other on the same machine and
//! PostgreSQL server: 1 node, then N nodes with the clients spread over them,
//! each timing auto-approved request + token pairs end to end. Then, on the
//! N-node cluster, revocation propagation: a token is introspected (and so
//! cached) on the last node, its grant revoked on the second, and the last
//! node polled until it reports the token inactive.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::bench::pct;
use crate::bench_jit::{DevServer, agent, post, start_dev_server_in};
use crate::cli::Global;
use crate::out::emit;

/// `dsn` with its database replaced by `db`.
fn with_db(dsn: &str, db: &str) -> anyhow::Result<String> {
    let scheme_end = dsn.find("://").context("storage must be a URL such as postgres://user@host/db")? + 3;
    let (base, rest) = dsn.split_at(scheme_end);
    let (authority, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let query = tail.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
    Ok(format!("{base}{authority}/{db}{query}"))
}

fn admin(dsn: &str) -> anyhow::Result<postgres::Client> {
    postgres::Client::connect(dsn, postgres::NoTls).context("cannot connect to the benchmark's PostgreSQL")
}

fn copy_keys(from: &Path, to: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dst = to.join("keys");
    std::fs::create_dir_all(&dst)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))?;
    for e in std::fs::read_dir(from.join("keys"))? {
        let e = e?;
        std::fs::copy(e.path(), dst.join(e.file_name()))?;
    }
    Ok(())
}

/// `n` dev nodes on database `dsn`, sharing the first node's keys.
fn start_nodes(n: usize, dsn: &str, dir: &Path) -> anyhow::Result<Vec<DevServer>> {
    let mut nodes = Vec::new();
    for i in 0..n {
        let data = dir.join(format!("node{i}"));
        if i > 0 {
            copy_keys(&dir.join("node0"), &data)?;
        }
        nodes.push(start_dev_server_in(&data, &["--storage", dsn])?);
    }
    Ok(nodes)
}

const BUNDLE: &str = r#"{ "files": {
  "roles/bench.toml": "name = \"bench\"\nmax_duration = \"1h\"\n[approval]\nrequired = 1\napprovers = [\"group:admins\"]\n[credentials.token]\naudiences = [\"https://bench.internal\"]\n",
  "policies/bench.cedar": "@id(\"admins-request\")\npermit(principal in Group::\"admins\", action == Action::\"request\", resource == Role::\"bench\");\n@id(\"admins-activate\")\npermit(principal in Group::\"admins\", action == Action::\"activate\", resource == Role::\"bench\");\n"
}}"#;

/// Applies the one-role bundle on node 0 and waits until every node follows it.
fn apply(nodes: &[DevServer]) -> anyhow::Result<()> {
    let a = agent();
    let bundle: Value = serde_json::from_str(BUNDLE)?;
    let out = post(&a, &format!("{}/v1/policy/apply", nodes[0].addr), &nodes[0].token, &bundle)?;
    let hash = out["hash"].as_str().context("no policy hash")?.to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in nodes {
        loop {
            let mut r = a.get(&format!("{}/v1/sys/health", n.addr)).call()?;
            let h: Value = r.body_mut().read_json()?;
            if h["policy_version"] == hash.as_str() {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "a node did not follow the policy");
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Request + token pairs from `concurrency` clients, client i on node i mod n.
fn pairs(nodes: &[DevServer], requests: usize, concurrency: usize) -> anyhow::Result<(f64, Vec<Duration>)> {
    let next = AtomicUsize::new(0);
    let lat = Mutex::new(Vec::with_capacity(requests));
    let failure = Mutex::new(None);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for c in 0..concurrency.max(1) {
            let (next, lat, failure) = (&next, &lat, &failure);
            let node = &nodes[c % nodes.len()];
            s.spawn(move || {
                let a = agent();
                let mut mine = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let t = Instant::now();
                    let r = post(
                        &a,
                        &format!("{}/v1/requests", node.addr),
                        &node.token,
                        &json!({ "role": "bench", "duration": "10m", "reason": "bench" }),
                    )
                    .and_then(|v| {
                        let grant = v["grant"]["id"].as_str().context("request was not auto-approved")?.to_string();
                        post(&a, &format!("{}/v1/grants/{grant}/token", node.addr), &node.token, &json!({}))
                    });
                    match r {
                        Ok(_) => mine.push(t.elapsed()),
                        Err(e) => {
                            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            return;
                        }
                    }
                }
                lat.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let rate = requests as f64 / t0.elapsed().as_secs_f64();
    let mut lat = lat.into_inner().unwrap_or_else(|p| p.into_inner());
    lat.sort();
    Ok((rate, lat))
}

fn active(a: &ureq::Agent, node: &DevServer, jwt: &str) -> anyhow::Result<bool> {
    let v = post(a, &format!("{}/v1/tokens/introspect", node.addr), &node.token, &json!({ "token": jwt }))?;
    Ok(v["active"] == true)
}

/// Revoke on node 1, poll node n-1: the time until it reports the token inactive.
fn propagation(nodes: &[DevServer], trials: usize) -> anyhow::Result<Vec<Duration>> {
    let (issuer, revoker, watcher) = (&nodes[0], &nodes[1], &nodes[nodes.len() - 1]);
    let a = agent();
    let mut lags = Vec::with_capacity(trials);
    for _ in 0..trials {
        let v = post(
            &a,
            &format!("{}/v1/requests", issuer.addr),
            &issuer.token,
            &json!({ "role": "bench", "duration": "10m", "reason": "bench" }),
        )?;
        let grant = v["grant"]["id"].as_str().context("no grant")?.to_string();
        let tok = post(&a, &format!("{}/v1/grants/{grant}/token", issuer.addr), &issuer.token, &json!({}))?;
        let jwt = tok["token"].as_str().context("no token")?.to_string();
        anyhow::ensure!(active(&a, watcher, &jwt)? && active(&a, watcher, &jwt)?, "token not active");
        post(&a, &format!("{}/v1/grants/{grant}/revoke", revoker.addr), &revoker.token, &json!({ "reason": "bench" }))?;
        let t = Instant::now();
        while active(&a, watcher, &jwt)? {
            anyhow::ensure!(t.elapsed() < Duration::from_secs(10), "a revocation did not propagate in 10 s");
        }
        lags.push(t.elapsed());
    }
    lags.sort();
    Ok(lags)
}

pub fn run(
    g: &Global,
    storage: &str,
    nodes: usize,
    requests: usize,
    concurrency: usize,
    trials: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(nodes >= 2, "--nodes must be at least 2 (the 1-node run is always made)");
    let mut admin = admin(storage)?;
    let mut runs = Vec::new();
    let mut lags = Vec::new();
    for n in [1, nodes] {
        let db = format!("latch_bench_{}_{n}", std::process::id());
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))?;
        admin.batch_execute(&format!("CREATE DATABASE {db}"))?;
        let dir = tempfile::Builder::new().prefix("latch-bench-cluster-").tempdir()?;
        let servers = start_nodes(n, &with_db(storage, &db)?, dir.path())?;
        apply(&servers)?;
        let (rate, lat) = pairs(&servers, requests, concurrency)?;
        runs.push(json!({
            "nodes": n, "request_plus_token_per_sec": rate.round(),
            "latency_ms_p50": pct(&lat, 0.50), "latency_ms_p99": pct(&lat, 0.99),
        }));
        if n > 1 {
            lags = propagation(&servers, trials)?;
        }
        drop(servers);
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))?;
    }
    let v = json!({
        "requests": requests, "concurrency": concurrency, "runs": runs,
        "propagation": { "trials": trials, "ms_p50": pct(&lags, 0.50), "ms_p99": pct(&lags, 0.99), "ms_max": pct(&lags, 1.0) },
        "durability": "PostgreSQL, fsync on; every request and token issue commits its audit event",
    });
    emit(g, &v, |v| {
        for r in v["runs"].as_array().into_iter().flatten() {
            println!(
                "{} node(s): {} request+token pairs/s with {} clients (p50 {:.2} ms, p99 {:.2} ms per pair)",
                r["nodes"],
                r["request_plus_token_per_sec"],
                v["concurrency"],
                r["latency_ms_p50"].as_f64().unwrap_or_default(),
                r["latency_ms_p99"].as_f64().unwrap_or_default()
            );
        }
        let p = &v["propagation"];
        println!(
            "revocation propagation over {} trials: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            p["trials"],
            p["ms_p50"].as_f64().unwrap_or_default(),
            p["ms_p99"].as_f64().unwrap_or_default(),
            p["ms_max"].as_f64().unwrap_or_default()
        );
    });
    Ok(())
}
