//! `latch bench`: reproducible throughput measurements on this machine.
//! Results go to BENCHMARKS.md with the command that produced them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use latch_audit::AuditDraft;
use latch_core::SystemClock;
use latch_crypto::SigningKey;
use latch_store::{SqlStore, Store};
use serde_json::json;

use crate::cli::{BenchCmd, Global};
use crate::out::emit;

pub fn run(cmd: BenchCmd, g: &Global) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Audit { events, writers, verify_events, dir } => audit(g, events, writers, verify_events, dir),
        BenchCmd::Policy { roles, principals, decisions } => crate::bench_jit::policy(g, roles, principals, decisions),
        BenchCmd::Http { requests, concurrency, seconds } => crate::bench_jit::http(g, requests, concurrency, seconds),
        BenchCmd::Kv { vault_addr, vault_token, mount, ops, concurrency } => {
            crate::bench_kv::run(g, &vault_addr, &vault_token, &mount, ops, concurrency)
        }
        BenchCmd::Ssh { certs, concurrency } => crate::bench_ssh::run(g, certs, concurrency),
        BenchCmd::Cluster { storage, nodes, requests, concurrency, trials } => {
            crate::bench_cluster::run(g, &storage, nodes, requests, concurrency, trials)
        }
    }
}

fn draft(i: u64) -> AuditDraft {
    AuditDraft::new("user:bench", "bench.append", format!("bench:{i}"))
        .context("req_bench", "127.0.0.1")
        .details(json!({ "i": i, "note": "a typical small event body" }))
}

pub fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn audit(g: &Global, events: u64, writers: u64, verify_events: u64, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let tmp = match &dir {
        Some(d) => tempfile::Builder::new().prefix("latch-bench-").tempdir_in(d),
        None => tempfile::Builder::new().prefix("latch-bench-").tempdir(),
    }
    .context("cannot create a scratch directory")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let writers = writers.max(1);
    let result = rt.block_on(async {
        let store = Arc::new(SqlStore::open_sqlite(&tmp.path().join("append.db"), Arc::new(SystemClock))?);

        // One writer at a time: every append waits for its own fsync.
        let serial_n = (events / 20).clamp(200, 5_000);
        let t0 = Instant::now();
        for i in 0..serial_n {
            store.append_audit(draft(i)).await?;
        }
        let serial_rate = serial_n as f64 / t0.elapsed().as_secs_f64();

        // Many writers: their appends share commits (group commit).
        let next = Arc::new(AtomicU64::new(0));
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..writers {
            let (store, next) = (store.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= events {
                        return Ok::<_, latch_store::StoreError>(lat);
                    }
                    let t = Instant::now();
                    store.append_audit(draft(i)).await?;
                    lat.push(t.elapsed());
                }
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await??);
        }
        let concurrent_secs = t0.elapsed().as_secs_f64();
        lat.sort();
        store.close();

        // A log of verify_events events, written in batches, then verified from the file.
        let key = Arc::new(SigningKey::generate()?);
        let vstore = SqlStore::open_sqlite(&tmp.path().join("verify.db"), Arc::new(SystemClock))?;
        let t0 = Instant::now();
        let mut written = 0;
        while written < verify_events {
            let n = (verify_events - written).min(10_000);
            let base = written;
            vstore
                .write(move |ctx| {
                    for i in base..base + n {
                        ctx.audit(draft(i))?;
                    }
                    Ok(())
                })
                .await?;
            written += n;
        }
        vstore.write_checkpoint(key.clone()).await?;
        let build_secs = t0.elapsed().as_secs_f64();
        vstore.close();
        let path = tmp.path().join("verify.db");
        let t0 = Instant::now();
        let report = latch_store::sqlite::verify::verify_file(&path, key.verifying_key())?;
        let verify_secs = t0.elapsed().as_secs_f64();
        anyhow::Ok(json!({
            "durability": "SQLite WAL, synchronous=FULL (fsync per commit)",
            "serial": { "appends": serial_n, "appends_per_sec": serial_rate.round() as i64 },
            "concurrent": {
                "appends": events,
                "writers": writers,
                "appends_per_sec": (events as f64 / concurrent_secs).round() as i64,
                "latency_ms_p50": pct(&lat, 0.50),
                "latency_ms_p99": pct(&lat, 0.99),
            },
            "verify": {
                "events": report.events,
                "checkpoints": report.checkpoints,
                "build_secs": build_secs,
                "verify_secs": verify_secs,
                "events_per_sec": (report.events as f64 / verify_secs).round() as i64,
            },
        }))
    })?;
    emit(g, &result, |v| {
        println!("audit append ({})", v["durability"].as_str().unwrap_or_default());
        println!("  1 writer:    {} appends/s", v["serial"]["appends_per_sec"]);
        println!(
            "  {} writers:  {} appends/s  (p50 {:.2} ms, p99 {:.2} ms per append)",
            v["concurrent"]["writers"],
            v["concurrent"]["appends_per_sec"],
            v["concurrent"]["latency_ms_p50"].as_f64().unwrap_or_default(),
            v["concurrent"]["latency_ms_p99"].as_f64().unwrap_or_default()
        );
        println!(
            "audit verify: {} events in {:.2} s ({} events/s)",
            v["verify"]["events"],
            v["verify"]["verify_secs"].as_f64().unwrap_or_default(),
            v["verify"]["events_per_sec"]
        );
    });
    Ok(())
}
