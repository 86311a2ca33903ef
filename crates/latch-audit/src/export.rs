//! Audit events as other systems read them: JSON lines, OCSF-shaped JSON,
//! and RFC 5424 syslog messages — and the check that an exported stream,
//! on its own, is an unbroken piece of the hash chain.
//!
//! Every exported record carries the event's `seq`, its `hash` and the
//! `prev_hash` it chains to, with every field the hash covers (the time in
//! milliseconds, exactly as hashed). A receiver de-duplicates by `seq`
//! (delivery is at least once) and can recompute every link without access
//! to latch; [`verify_export`] does exactly that.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::event::{AuditEvent, Outcome, chain_hash};

/// The record every format carries: the event, its time readable, and the
/// hash it chains to.
pub fn record(ev: &AuditEvent, prev_hash: &str) -> Value {
    json!({
        "seq": ev.seq,
        "time": ev.time.millis(),
        "time_rfc3339": ev.time.to_rfc3339(),
        "actor": ev.actor,
        "action": ev.action,
        "target": ev.target,
        "outcome": ev.outcome,
        "request_id": ev.request_id,
        "source": ev.source,
        "details": ev.details,
        "hash": ev.hash,
        "prev_hash": prev_hash,
    })
}

/// One JSON line (no trailing newline).
pub fn jsonl(ev: &AuditEvent, prev_hash: &str) -> String {
    record(ev, prev_hash).to_string()
}

/// OCSF 1.1-shaped event: Authentication (3002) for sign-ins and sign-outs,
/// Account Change (3001) for identities, User Access Management (3005) for
/// grants, API Activity (6003) for the rest. The full latch record rides in
/// `unmapped.latch`, so nothing is lost in the mapping.
pub fn ocsf(ev: &AuditEvent, prev_hash: &str) -> Value {
    let (class_uid, class_name, activity_id, activity_name) = ocsf_class(&ev.action);
    let category_uid = class_uid / 1000;
    let (status_id, status) = match ev.outcome {
        Outcome::Success => (1, "Success"),
        _ => (2, "Failure"),
    };
    let severity_id = match ev.outcome {
        Outcome::Success if ev.action.starts_with("breakglass") => 4,
        Outcome::Success => 1,
        _ => 3,
    };
    let (actor_kind, actor_name) = ev.actor.split_once(':').unwrap_or(("", ev.actor.as_str()));
    json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "time": ev.time.millis(),
        "severity_id": severity_id,
        "status_id": status_id,
        "status": status,
        "message": format!("{} {} {}", ev.actor, ev.action, ev.target),
        "metadata": {
            "version": "1.1.0",
            "product": { "name": "latch", "vendor_name": "latch" },
            "uid": ev.seq.to_string(),
            "correlation_uid": ev.request_id,
            "log_name": "audit",
        },
        "actor": { "user": { "name": actor_name, "type": actor_kind } },
        "src_endpoint": { "ip": ev.source },
        "unmapped": { "latch": record(ev, prev_hash) },
    })
}

fn ocsf_class(action: &str) -> (i64, &'static str, i64, &'static str) {
    const AUTH: (i64, &str) = (3002, "Authentication");
    const ACCOUNT: (i64, &str) = (3001, "Account Change");
    const ACCESS: (i64, &str) = (3005, "User Access Management");
    const API: (i64, &str) = (6003, "API Activity");
    let with = |c: (i64, &'static str), id: i64, name: &'static str| (c.0, c.1, id, name);
    match action {
        a if a.starts_with("auth.login") || a == "auth.sp.login" => with(AUTH, 1, "Logon"),
        a if a.starts_with("auth.logout") => with(AUTH, 2, "Logoff"),
        a if a.ends_with(".create") && (a.starts_with("user") || a.starts_with("sp")) => with(ACCOUNT, 1, "Create"),
        a if a.ends_with(".enable") => with(ACCOUNT, 2, "Enable"),
        a if a.contains("password") || a.contains("rotate_secret") => with(ACCOUNT, 3, "Password Change"),
        a if a.ends_with(".disable") => with(ACCOUNT, 5, "Disable"),
        a if a.ends_with(".delete") && (a.starts_with("user") || a.starts_with("sp")) => with(ACCOUNT, 6, "Delete"),
        a if a.starts_with("auth.mfa") => with(ACCOUNT, 10, "MFA Factor Enable"),
        a if a.starts_with("grant.activate") || a.starts_with("breakglass.activate") => {
            with(ACCESS, 1, "Assign Privileges")
        }
        a if a.starts_with("grant.revoke") || a.starts_with("grant.expire") => with(ACCESS, 2, "Revoke Privileges"),
        _ => with(API, 99, "Other"),
    }
}

/// Syslog facility `authpriv` (10).
const FACILITY: u8 = 10;

/// One RFC 5424 message (no framing): `<PRI>1 TIME HOST latch PROCID MSGID
/// [latch@32473 seq hash prev outcome] JSON-record`. `host` and `procid`
/// are the sender's.
pub fn syslog(ev: &AuditEvent, prev_hash: &str, host: &str, procid: u32) -> String {
    let severity: u8 = match ev.outcome {
        Outcome::Success if ev.action.starts_with("breakglass") => 4,
        Outcome::Success => 6,
        _ => 5,
    };
    let pri = FACILITY * 8 + severity;
    let time = ev.time.to_rfc3339();
    let msgid = printable_token(&ev.action, 32);
    let host = printable_token(host, 255);
    format!(
        "<{pri}>1 {time} {host} latch {procid} {msgid} [latch@32473 seq=\"{}\" hash=\"{}\" prev_hash=\"{}\" outcome=\"{}\"] {}",
        ev.seq,
        sd_escape(&ev.hash),
        sd_escape(prev_hash),
        ev.outcome.as_str(),
        jsonl(ev, prev_hash),
    )
}

/// RFC 5424 header fields: printable US-ASCII without spaces, bounded; `-` when empty.
fn printable_token(s: &str, max: usize) -> String {
    let t: String = s.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if t.is_empty() { "-".into() } else { t }
}

/// PARAM-VALUE escaping: `"`, `\` and `]` get a backslash.
fn sd_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '"' | '\\' | ']' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

/// Octet-counted framing for syslog over TCP (RFC 6587 §3.4.1).
pub fn octet_counted(msg: &str) -> String {
    format!("{} {msg}", msg.len())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExportError {
    #[error("line {line}: not an exported audit record ({why})")]
    Malformed { line: usize, why: String },
    #[error("seq {seq} appears twice with different content")]
    Conflicting { seq: i64 },
    #[error("seq {seq}: the hash does not match the event's content and prev_hash (edited record)")]
    HashMismatch { seq: i64 },
    #[error("seq {seq}: prev_hash is not the hash of seq {prev} (a record missing or reordered)")]
    Broken { seq: i64, prev: i64 },
    #[error("seq {seq} is missing between {from} and {to}")]
    Gap { seq: i64, from: i64, to: i64 },
    #[error("the stream holds no records")]
    Empty,
}

/// What [`verify_export`] vouches for: the records from `first` to `last`
/// form an unbroken piece of the chain ending in `head_hash`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportReport {
    pub records: usize,
    pub duplicates: usize,
    pub first: i64,
    pub last: i64,
    pub head_hash: String,
    /// The first record chains to the genesis hash: the stream is the log from its start.
    pub from_genesis: bool,
}

/// Checks an exported stream (JSON lines, possibly repeated and out of
/// order, as at-least-once delivery leaves it): de-duplicates by `seq`,
/// then recomputes every hash and link. Takes lines in the `jsonl` record
/// shape (or OCSF events, whose `unmapped.latch` holds it).
pub fn verify_export<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<ExportReport, ExportError> {
    let mut by_seq: BTreeMap<i64, (AuditEvent, String)> = BTreeMap::new();
    let mut duplicates = 0;
    for (i, raw) in lines.into_iter().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let (ev, prev) = parse_record(line).map_err(|why| ExportError::Malformed { line: i + 1, why })?;
        match by_seq.get(&ev.seq) {
            Some((seen, seen_prev)) if *seen == ev && *seen_prev == prev => duplicates += 1,
            Some(_) => return Err(ExportError::Conflicting { seq: ev.seq }),
            None => {
                by_seq.insert(ev.seq, (ev, prev));
            }
        }
    }
    let (first, last) = match (by_seq.keys().next(), by_seq.keys().next_back()) {
        (Some(f), Some(l)) => (*f, *l),
        _ => return Err(ExportError::Empty),
    };
    let mut expected_prev: Option<(i64, String)> = None;
    let mut from_genesis = false;
    for (seq, (ev, prev)) in &by_seq {
        if let Some((p, h)) = &expected_prev {
            if *seq != p + 1 {
                return Err(ExportError::Gap { seq: p + 1, from: first, to: last });
            }
            if prev != h {
                return Err(ExportError::Broken { seq: *seq, prev: *p });
            }
        } else {
            from_genesis = prev == crate::GENESIS_HASH && *seq == 1;
        }
        if chain_hash(prev, ev) != ev.hash {
            return Err(ExportError::HashMismatch { seq: *seq });
        }
        expected_prev = Some((*seq, ev.hash.clone()));
    }
    let head_hash = expected_prev.map(|(_, h)| h).unwrap_or_default();
    Ok(ExportReport { records: by_seq.len(), duplicates, first, last, head_hash, from_genesis })
}

fn parse_record(line: &str) -> Result<(AuditEvent, String), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let r = if v.get("class_uid").is_some() { &v["unmapped"]["latch"] } else { &v };
    let s = |k: &str| r[k].as_str().map(str::to_string).ok_or_else(|| format!("{k} is missing or not text"));
    let outcome = r["outcome"].as_str().and_then(Outcome::parse).ok_or("outcome is missing or unknown")?;
    let ev = AuditEvent {
        seq: r["seq"].as_i64().ok_or("seq is missing")?,
        time: latch_core::Timestamp(r["time"].as_i64().ok_or("time (milliseconds) is missing")?),
        actor: s("actor")?,
        action: s("action")?,
        target: s("target")?,
        outcome,
        request_id: s("request_id")?,
        source: s("source")?,
        details: r.get("details").cloned().unwrap_or(Value::Null),
        hash: s("hash")?,
    };
    Ok((ev, s("prev_hash")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{AuditDraft, GENESIS_HASH};
    use latch_core::Timestamp;

    fn chain(n: i64) -> Vec<(AuditEvent, String)> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|i| {
                let ev = AuditDraft::new("user:alice", if i % 2 == 0 { "grant.activate" } else { "auth.login" }, "x")
                    .details(json!({ "i": i, "quote": "a\"]b" }))
                    .seal(i, Timestamp(1_700_000_000_000 + i), &prev);
                let p = std::mem::replace(&mut prev, ev.hash.clone());
                (ev, p)
            })
            .collect()
    }

    #[test]
    fn a_stream_with_duplicates_in_any_order_verifies() {
        let evs = chain(5);
        let mut lines: Vec<String> = evs.iter().map(|(e, p)| jsonl(e, p)).collect();
        lines.push(lines[2].clone());
        lines.push(ocsf(&evs[1].0, &evs[1].1).to_string());
        lines.reverse();
        let r = verify_export(lines.iter().map(String::as_str)).unwrap();
        assert_eq!((r.records, r.duplicates, r.first, r.last, r.from_genesis), (5, 2, 1, 5, true));
        assert_eq!(r.head_hash, evs[4].0.hash);
        // A piece from the middle verifies too, not from genesis.
        let tail: Vec<String> = evs[2..].iter().map(|(e, p)| jsonl(e, p)).collect();
        assert!(!verify_export(tail.iter().map(String::as_str)).unwrap().from_genesis);
    }

    #[test]
    fn edits_gaps_and_conflicts_are_named() {
        let evs = chain(4);
        let lines: Vec<String> = evs.iter().map(|(e, p)| jsonl(e, p)).collect();
        let gap = [lines[0].as_str(), lines[1].as_str(), lines[3].as_str()];
        assert_eq!(verify_export(gap), Err(ExportError::Gap { seq: 3, from: 1, to: 4 }));
        let edited = lines[2].replace("\"i\":3", "\"i\":30");
        assert_ne!(edited, lines[2]);
        let r = verify_export([lines[0].as_str(), lines[1].as_str(), &edited, lines[3].as_str()]);
        assert_eq!(r, Err(ExportError::HashMismatch { seq: 3 }));
        let other = lines[1].replace("\"i\":2", "\"i\":20");
        assert_eq!(verify_export([lines[1].as_str(), &other]), Err(ExportError::Conflicting { seq: 2 }));
        assert!(matches!(verify_export(["{}"]), Err(ExportError::Malformed { line: 1, .. })));
        assert_eq!(verify_export([""]), Err(ExportError::Empty));
    }

    #[test]
    fn syslog_messages_follow_rfc_5424() {
        let evs = chain(2);
        let m = syslog(&evs[0].0, &evs[0].1, "host one", 42);
        assert!(
            m.starts_with("<86>1 2023-11-14T22:13:20.001Z hostone latch 42 auth.login [latch@32473 seq=\"1\" "),
            "{m}"
        );
        let msg = m.split_once("] ").unwrap().1;
        assert_eq!(serde_json::from_str::<Value>(msg).unwrap()["seq"], 1);
        assert_eq!(sd_escape("a\"b]c\\"), "a\\\"b\\]c\\\\");
        assert_eq!(octet_counted("abc"), "3 abc");
        let v = ocsf(&evs[1].0, &evs[1].1);
        assert_eq!(
            (v["class_uid"].as_i64(), v["activity_id"].as_i64(), v["type_uid"].as_i64()),
            (Some(3005), Some(1), Some(300501))
        );
        assert_eq!(ocsf(&evs[0].0, &evs[0].1)["class_uid"], 3002);
    }
}
