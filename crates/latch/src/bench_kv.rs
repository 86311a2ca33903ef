//! `latch bench kv`: KV version 2 write and read rates over HTTP against any
//! server that speaks Vault's API — latch or OpenBao — with the same client,
//! so the two can be compared side by side in one run
//! (`scripts/bench-secrets`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::bench::pct;
use crate::bench_jit::agent;
use crate::cli::Global;
use crate::out::emit;

fn call(a: &ureq::Agent, method: &str, url: &str, token: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let req = ureq::http::Request::builder().method(method).uri(url).header("X-Vault-Token", token);
    let mut resp = match body {
        Some(b) => a.run(req.header("Content-Type", "application/json").body(b.to_string().into_bytes())?)?,
        None => a.run(req.body(Vec::new())?)?,
    };
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    anyhow::ensure!((200..300).contains(&status), "HTTP {status} from {method} {url}: {text}");
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Runs `n` operations from `concurrency` threads; returns (ops/s, sorted latencies).
fn run_ops(
    n: usize,
    concurrency: usize,
    op: impl Fn(&ureq::Agent, usize) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let next = AtomicUsize::new(0);
    let lat = Mutex::new(Vec::with_capacity(n));
    let failure = Mutex::new(None);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency.max(1) {
            s.spawn(|| {
                let a = agent();
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let t = Instant::now();
                    if let Err(e) = op(&a, i) {
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return;
                    }
                    mine.push(t.elapsed());
                }
                lat.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    let mut lat = lat.into_inner().unwrap_or_else(|p| p.into_inner());
    lat.sort();
    Ok((rate, lat))
}

pub fn run(g: &Global, addr: &str, token: &str, mount: &str, ops: usize, concurrency: usize) -> anyhow::Result<()> {
    let base = addr.trim_end_matches('/');
    let a = agent();
    // A fresh engine, so runs do not disturb each other.
    let _ = call(&a, "DELETE", &format!("{base}/v1/sys/mounts/{mount}"), token, None);
    call(
        &a,
        "POST",
        &format!("{base}/v1/sys/mounts/{mount}"),
        token,
        Some(&json!({"type": "kv", "options": {"version": "2"}})),
    )
    .context("cannot enable the KV v2 engine for the benchmark")?;
    // A new KV v2 engine may need a moment before it takes writes (OpenBao
    // upgrades it in the background): wait for the first one.
    let warm = format!("{base}/v1/{mount}/data/warm-up");
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = call(&a, "POST", &warm, token, Some(&json!({ "data": { "k": "v" } }))) {
        anyhow::ensure!(Instant::now() < deadline, "the engine does not take writes: {e}");
        // A benchmark client polling another server, not latch's logic.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(100));
    }
    let keys = 1000.min(ops.max(1));
    let value =
        |i: usize| json!({ "data": { "username": format!("svc-{i}"), "password": format!("{:032x}", i * 7919) } });
    let data = |i: usize| format!("{base}/v1/{mount}/data/bench/{}", i % keys);
    let (write_rate, write_lat) =
        run_ops(ops, concurrency, |a, i| call(a, "POST", &data(i), token, Some(&value(i))).map(|_| ()))?;
    let (read_rate, read_lat) = run_ops(ops, concurrency, |a, i| call(a, "GET", &data(i), token, None).map(|_| ()))?;
    let v = json!({
        "addr": base, "ops": ops, "concurrency": concurrency, "keys": keys,
        "writes_per_sec": write_rate.round(), "write_ms_p50": pct(&write_lat, 0.5), "write_ms_p99": pct(&write_lat, 0.99),
        "reads_per_sec": read_rate.round(), "read_ms_p50": pct(&read_lat, 0.5), "read_ms_p99": pct(&read_lat, 0.99),
    });
    emit(g, &v, |v| {
        println!(
            "KV v2 at {}: {} writes/s (p50 {:.2} ms, p99 {:.2} ms), {} reads/s (p50 {:.2} ms, p99 {:.2} ms), {} clients",
            v["addr"].as_str().unwrap_or_default(),
            v["writes_per_sec"],
            v["write_ms_p50"].as_f64().unwrap_or_default(),
            v["write_ms_p99"].as_f64().unwrap_or_default(),
            v["reads_per_sec"],
            v["read_ms_p50"].as_f64().unwrap_or_default(),
            v["read_ms_p99"].as_f64().unwrap_or_default(),
            v["concurrency"]
        );
    });
    Ok(())
}
