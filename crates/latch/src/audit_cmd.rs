//! `latch audit list|tail|verify`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use latch_audit::{AuditEvent, ChainVerifier, Checkpoint, VerifyReport};
use latch_core::Timestamp;
use latch_crypto::VerifyingKey;
use serde_json::{Value, json};

use crate::cli::{AuditCmd, ExportFormat, Global, Output};
use crate::client::Client;
use crate::out::{emit, s};

pub fn run(cmd: AuditCmd, g: &Global) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::List { since, actor, action, limit } => {
            let c = Client::new(g)?;
            let page = fetch(&c, since, actor.as_deref(), action.as_deref(), limit)?;
            emit(g, &page, |v| {
                for e in v["events"].as_array().into_iter().flatten() {
                    print_event(e);
                }
            });
            Ok(())
        }
        AuditCmd::Tail { follow, since } => tail(g, follow, since),
        AuditCmd::Verify { export: Some(file), .. } => verify_export_file(g, &file),
        AuditCmd::Export { format, since } => export(g, format, since),
        AuditCmd::Verify { data, export: None } => {
            let report = match data {
                Some(dir) => verify_dir(&dir)?,
                None => verify_api(&Client::new(g)?)?,
            };
            emit(g, &serde_json::to_value(&report)?, |_| {
                println!(
                    "audit chain OK: {} events, {} signed checkpoints verified, head seq {} hash {}",
                    report.events, report.checkpoints, report.head_seq, report.head_hash
                );
            });
            Ok(())
        }
    }
}

fn fetch(c: &Client, since: i64, actor: Option<&str>, action: Option<&str>, limit: usize) -> anyhow::Result<Value> {
    let mut q = format!("/v1/audit/events?since={since}&limit={limit}");
    for (k, v) in [("actor", actor), ("action", action)] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", crate::client::seg(v)));
        }
    }
    Ok(c.get(&q)?)
}

fn print_event(e: &Value) {
    let details = match &e["details"] {
        Value::Object(m) if m.is_empty() => String::new(),
        d => d.to_string(),
    };
    println!(
        "{:>6}  {}  {:<8} {:<22} {:<28} {:<28} {}",
        s(e, "seq"),
        s(e, "time_rfc3339"),
        s(e, "outcome"),
        s(e, "action"),
        s(e, "actor"),
        s(e, "target"),
        details
    );
}

#[allow(clippy::disallowed_methods)] // a CLI polling loop, not server logic
fn tail(g: &Global, follow: bool, since: Option<i64>) -> anyhow::Result<()> {
    let c = Client::new(g)?;
    let mut since = match since {
        Some(s) => s,
        None => {
            let h: Value = c.get("/v1/sys/health")?;
            (h["audit_head_seq"].as_i64().unwrap_or(0) - 10).max(0)
        }
    };
    loop {
        let page = fetch(&c, since, None, None, 1000)?;
        for e in page["events"].as_array().into_iter().flatten() {
            match g.output {
                Output::Json => println!("{e}"),
                Output::Text => print_event(e),
            }
        }
        since = page["next_since"].as_i64().unwrap_or(since);
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn event_from(v: &Value) -> anyhow::Result<AuditEvent> {
    let mut ev: AuditEvent = serde_json::from_value(json!({
        "seq": v["seq"], "time": v["time"], "actor": v["actor"], "action": v["action"], "target": v["target"],
        "outcome": v["outcome"], "request_id": v["request_id"], "source": v["source"], "details": v["details"],
        "hash": v["hash"],
    }))
    .context("the server sent a malformed audit event")?;
    ev.time = Timestamp(v["time"].as_i64().unwrap_or_default());
    Ok(ev)
}

/// Prints every event after `since` in `format`, one per line, each
/// carrying the hash it chains to.
fn export(g: &Global, format: ExportFormat, since: i64) -> anyhow::Result<()> {
    use std::io::Write;
    let c = Client::new(g)?;
    let mut prev = latch_audit::GENESIS_HASH.to_string();
    if since > 0 {
        let page = fetch(&c, since - 1, None, None, 1)?;
        if let Some(e) = page["events"].as_array().and_then(|a| a.first()) {
            prev = s(e, "hash");
        }
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut cursor = since;
    loop {
        let page = fetch(&c, cursor, None, None, 10_000)?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            break;
        }
        for e in &events {
            let ev = event_from(e)?;
            let line = match format {
                ExportFormat::Jsonl => latch_audit::export::jsonl(&ev, &prev),
                ExportFormat::Ocsf => latch_audit::export::ocsf(&ev, &prev).to_string(),
                ExportFormat::Syslog => latch_audit::export::syslog(&ev, &prev, &host, std::process::id()),
            };
            writeln!(out, "{line}")?;
            prev = ev.hash;
        }
        cursor = page["next_since"].as_i64().unwrap_or(cursor);
    }
    out.flush()?;
    Ok(())
}

/// Checks an exported stream on its own (de-duplicated by seq).
fn verify_export_file(g: &Global, file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let r = latch_audit::verify_export(text.lines()).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let v = json!({ "records": r.records, "duplicates": r.duplicates, "first_seq": r.first, "last_seq": r.last,
                    "head_hash": r.head_hash, "from_genesis": r.from_genesis });
    emit(g, &v, |_| {
        println!(
            "exported chain OK: seq {}–{} ({} records, {} duplicates ignored){}, head hash {}",
            r.first,
            r.last,
            r.records,
            r.duplicates,
            if r.from_genesis { " from the start of the log" } else { "" },
            r.head_hash
        );
    });
    Ok(())
}

/// Verifies through the API: pages through every event and recomputes the chain here.
fn verify_api(c: &Client) -> anyhow::Result<VerifyReport> {
    let key: Value = c.get("/v1/audit/key")?;
    let pk = latch_crypto::hex_decode(&s(&key, "public_key")).context("the server's audit key is not hex")?;
    let key = VerifyingKey::from_bytes(&pk)?;
    let cps: Value = c.get("/v1/audit/checkpoints")?;
    let checkpoints: Vec<Checkpoint> = cps["checkpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|cp| {
            Ok(Checkpoint {
                seq: cp["seq"].as_i64().unwrap_or_default(),
                hash: s(cp, "hash"),
                time: Timestamp(cp["time"].as_i64().unwrap_or_default()),
                key_id: s(cp, "key_id"),
                signature: s(cp, "signature"),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let mut v = ChainVerifier::new(key, checkpoints)?;
    let mut since = 0;
    loop {
        let page = fetch(c, since, None, None, 10_000)?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            break;
        }
        for e in &events {
            v.push(&event_from(e)?)?;
        }
        since = page["next_since"].as_i64().unwrap_or(since);
    }
    Ok(v.finish()?)
}

/// Verifies a data directory directly (server stopped or running).
pub fn verify_dir(dir: &Path) -> anyhow::Result<VerifyReport> {
    let key = latch_server::keys::load(&latch_server::keys::audit_key_path(dir))?;
    let db = dir.join("latch.db");
    if !db.is_file() {
        anyhow::bail!("{} has no latch.db: is it a latch data directory?", dir.display());
    }
    Ok(latch_store::sqlite::verify::verify_file(&db, key.verifying_key())?)
}
