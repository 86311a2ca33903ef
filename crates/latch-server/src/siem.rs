//! Continuous export of the audit log to a SIEM: a rotated JSON-lines file,
//! syslog (RFC 5424) over TCP or UDP, or an HTTPS webhook — JSON or OCSF.
//!
//! Delivery is at least once: each sink has a cursor in the store, moved
//! only after a batch has been delivered (written and synced, sent, or
//! acknowledged with a 2xx). A crash between delivery and the cursor's move
//! sends that batch again; receivers de-duplicate by `seq`, and every record
//! carries `hash` and `prev_hash`, so the chain can be checked from the
//! exported stream alone (`latch audit verify --export FILE`). Export runs on
//! the leader node only, from the beginning of the log.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use latch_audit::AuditEvent;
use latch_audit::export::{jsonl, ocsf, octet_counted, syslog};
use latch_store::AuditQuery;

use crate::state::AppState;

/// Events per delivered batch.
const BATCH: usize = 500;
/// Largest UDP datagram sent; longer messages are cut (and say so).
const UDP_MAX: usize = 8192;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Ocsf,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkKind {
    /// JSON lines appended to `path`, rotated to `path.1` … `path.{keep}` past `max_bytes`.
    File {
        path: PathBuf,
        max_bytes: u64,
        keep: u32,
        format: Format,
    },
    SyslogTcp {
        address: String,
    },
    SyslogUdp {
        address: String,
    },
    /// A JSON array of records POSTed per batch.
    Webhook {
        url: String,
        format: Format,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiemSink {
    /// Names the sink's cursor (`siem:NAME`): renaming a sink starts it over.
    pub name: String,
    pub kind: SinkKind,
}

pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;
pub const DEFAULT_KEEP: u32 = 5;

impl SiemSink {
    /// `KIND=TARGET` as the dev server's `--siem` takes it: `jsonl=PATH`,
    /// `ocsf=PATH`, `syslog-tcp=HOST:PORT`, `syslog-udp=HOST:PORT`,
    /// `webhook=URL`, `ocsf-webhook=URL`.
    pub fn parse_spec(spec: &str) -> Result<SiemSink, String> {
        let (kind, target) = spec
            .split_once('=')
            .filter(|(_, t)| !t.is_empty())
            .ok_or_else(|| format!("--siem {spec:?}: write KIND=TARGET, e.g. syslog-tcp=127.0.0.1:6514"))?;
        let file = |format| SinkKind::File {
            path: PathBuf::from(target),
            max_bytes: DEFAULT_MAX_BYTES,
            keep: DEFAULT_KEEP,
            format,
        };
        let kind = match kind {
            "jsonl" => file(Format::Json),
            "ocsf" => file(Format::Ocsf),
            "syslog-tcp" => SinkKind::SyslogTcp { address: target.into() },
            "syslog-udp" => SinkKind::SyslogUdp { address: target.into() },
            "webhook" => SinkKind::Webhook { url: target.into(), format: Format::Json },
            "ocsf-webhook" => SinkKind::Webhook { url: target.into(), format: Format::Ocsf },
            other => {
                return Err(format!(
                    "--siem: unknown kind {other:?}: use jsonl, ocsf, syslog-tcp, syslog-udp, webhook or ocsf-webhook"
                ));
            }
        };
        let sink = SiemSink { name: kind_name(&kind).into(), kind };
        sink.validate()?;
        Ok(sink)
    }

    /// Checks addresses and URLs before the server starts.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(format!("siem name {:?} may hold only letters, digits, '-', '_' and '.'", self.name));
        }
        match &self.kind {
            SinkKind::SyslogTcp { address } | SinkKind::SyslogUdp { address } => {
                let ok = address.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !ok {
                    return Err(format!("siem {}: address {address:?} must be HOST:PORT", self.name));
                }
            }
            SinkKind::Webhook { url, .. } if !(url.starts_with("https://") || url.starts_with("http://")) => {
                return Err(format!("siem {}: url {url:?} must start with https:// or http://", self.name));
            }
            SinkKind::File { max_bytes, keep, .. } if *max_bytes < 4096 || *keep == 0 => {
                return Err(format!("siem {}: max_bytes must be at least 4096 and keep at least 1", self.name));
            }
            _ => {}
        }
        Ok(())
    }
}

fn kind_name(k: &SinkKind) -> &'static str {
    match k {
        SinkKind::File { format: Format::Json, .. } => "jsonl",
        SinkKind::File { format: Format::Ocsf, .. } => "ocsf",
        SinkKind::SyslogTcp { .. } => "syslog-tcp",
        SinkKind::SyslogUdp { .. } => "syslog-udp",
        SinkKind::Webhook { format: Format::Json, .. } => "webhook",
        SinkKind::Webhook { format: Format::Ocsf, .. } => "ocsf-webhook",
    }
}

/// An open sink; its connection is kept between batches and dropped on error.
struct Open {
    kind: SinkKind,
    host: String,
    tcp: Option<TcpStream>,
    agent: ureq::Agent,
}

impl Open {
    fn new(kind: SinkKind) -> Open {
        let host =
            std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        let agent =
            ureq::Agent::config_builder().timeout_global(Some(IO_TIMEOUT)).http_status_as_error(true).build().into();
        Open { kind, host, tcp: None, agent }
    }

    /// Delivers `batch` (event, hash it chains to) completely, or fails.
    fn deliver(&mut self, batch: &[(AuditEvent, String)]) -> Result<(), String> {
        let pid = std::process::id();
        match self.kind.clone() {
            SinkKind::File { path, max_bytes, keep, format } => {
                let mut text = String::new();
                for (ev, prev) in batch {
                    match format {
                        Format::Json => text.push_str(&jsonl(ev, prev)),
                        Format::Ocsf => text.push_str(&ocsf(ev, prev).to_string()),
                    }
                    text.push('\n');
                }
                append_rotating(&path, text.as_bytes(), max_bytes, keep).map_err(|e| format!("{}: {e}", path.display()))
            }
            SinkKind::SyslogTcp { address } => {
                let mut text = String::new();
                for (ev, prev) in batch {
                    text.push_str(&octet_counted(&syslog(ev, prev, &self.host, pid)));
                }
                let result = self.tcp(&address).and_then(|s| s.write_all(text.as_bytes()).and_then(|()| s.flush()));
                result.map_err(|e| {
                    self.tcp = None;
                    format!("syslog to {address}: {e}")
                })
            }
            SinkKind::SyslogUdp { address } => {
                let sock = UdpSocket::bind(if address.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" })
                    .map_err(|e| e.to_string())?;
                for (ev, prev) in batch {
                    let mut msg = syslog(ev, prev, &self.host, pid);
                    if msg.len() > UDP_MAX {
                        let mut cut = UDP_MAX - 16;
                        while !msg.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        msg.truncate(cut);
                        msg.push_str("…[truncated]");
                    }
                    sock.send_to(msg.as_bytes(), &address).map_err(|e| format!("syslog to {address}: {e}"))?;
                }
                Ok(())
            }
            SinkKind::Webhook { url, format } => {
                let records: Vec<serde_json::Value> = batch
                    .iter()
                    .map(|(ev, prev)| match format {
                        Format::Json => latch_audit::export::record(ev, prev),
                        Format::Ocsf => ocsf(ev, prev),
                    })
                    .collect();
                self.agent.post(&url).send_json(&records).map(|_| ()).map_err(|e| format!("POST {url}: {e}"))
            }
        }
    }

    fn tcp(&mut self, address: &str) -> std::io::Result<&mut TcpStream> {
        if self.tcp.is_none() {
            let s = TcpStream::connect(address)?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            s.set_nodelay(true)?;
            self.tcp = Some(s);
        }
        self.tcp.as_mut().ok_or_else(|| std::io::Error::other("no connection"))
    }
}

/// Appends and syncs `bytes` to `path`, first rotating it when it would pass `max_bytes`.
fn append_rotating(path: &Path, bytes: &[u8], max_bytes: u64, keep: u32) -> std::io::Result<()> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > 0 && size + bytes.len() as u64 > max_bytes {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        let _ = std::fs::remove_file(numbered(keep));
        for n in (1..keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(path, numbered(1))?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(bytes)?;
    // The cursor moves after this returns: the batch must be on disk first.
    f.sync_data()
}

/// Exports the audit log to `sink`, forever, while this node leads.
pub async fn export(st: AppState, sink: SiemSink) {
    let cursor_name = format!("siem:{}", sink.name);
    let mut open = Some(Open::new(sink.kind.clone()));
    let mut backoff = Duration::from_secs(1);
    let mut held: Option<(i64, String)> = None;
    loop {
        if !st.store.is_leader() {
            held = None;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let (cursor, prev) = match held.take() {
            Some(h) => h,
            None => match position(&st, &cursor_name).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(sink = %sink.name, error = %e, "SIEM export cannot read its cursor");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            },
        };
        let page = st.store.list_audit(AuditQuery { since: cursor, limit: BATCH, ..Default::default() }).await;
        let events = match page {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(sink = %sink.name, error = %e, "SIEM export cannot read the audit log");
                held = Some((cursor, prev));
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        if events.is_empty() {
            held = Some((cursor, prev));
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let mut batch = Vec::with_capacity(events.len());
        let mut link = prev.clone();
        for ev in events {
            let p = std::mem::replace(&mut link, ev.hash.clone());
            batch.push((ev, p));
        }
        let last = batch.last().map_or(cursor, |(e, _)| e.seq);
        let Some(mut sender) = open.take() else { return };
        let (sender, result) = match tokio::task::spawn_blocking(move || {
            let r = sender.deliver(&batch);
            (sender, r)
        })
        .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(sink = %sink.name, error = %e, "SIEM export task failed");
                return;
            }
        };
        open = Some(sender);
        match result {
            Ok(()) => {
                backoff = Duration::from_secs(1);
                st.metrics.siem_delivery(&sink.name, true);
                if let Err(e) = st.store.set_cursor(&cursor_name, last).await {
                    tracing::error!(sink = %sink.name, error = %e, "SIEM export cannot save its cursor");
                }
                held = Some((last, link));
            }
            Err(e) => {
                st.metrics.siem_delivery(&sink.name, false);
                tracing::warn!(sink = %sink.name, error = %e, "SIEM delivery failed; will retry");
                held = Some((cursor, prev));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// The sink's cursor and the hash of the event it points at.
async fn position(st: &AppState, cursor_name: &str) -> Result<(i64, String), latch_store::StoreError> {
    let cursor = st.store.cursor(cursor_name).await?;
    if cursor == 0 {
        return Ok((0, latch_audit::GENESIS_HASH.to_string()));
    }
    let at = st.store.list_audit(AuditQuery { since: cursor - 1, limit: 1, ..Default::default() }).await?;
    let hash = at.into_iter().next().map(|e| e.hash).unwrap_or_else(|| latch_audit::GENESIS_HASH.to_string());
    Ok((cursor, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_what_to_write() {
        let s = SiemSink::parse_spec("syslog-tcp=127.0.0.1:6514").unwrap();
        assert_eq!((s.name.as_str(), s.kind), ("syslog-tcp", SinkKind::SyslogTcp { address: "127.0.0.1:6514".into() }));
        assert!(matches!(
            SiemSink::parse_spec("ocsf=/tmp/a").unwrap().kind,
            SinkKind::File { format: Format::Ocsf, .. }
        ));
        for (bad, want) in [
            ("syslog-tcp", "KIND=TARGET"),
            ("syslog-tcp=", "KIND=TARGET"),
            ("kafka=x", "unknown kind"),
            ("syslog-udp=nohost", "HOST:PORT"),
            ("webhook=ftp://x", "https://"),
        ] {
            let e = SiemSink::parse_spec(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn files_rotate_and_keep_so_many() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        for i in 0..10 {
            append_rotating(&path, format!("{i:04}{}\n", "x".repeat(2000)).as_bytes(), 4096, 2).unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        // Two 2,005-byte lines fit under 4,096: each file holds two.
        assert!(read(&path).starts_with("0008") && read(&path).contains("0009"));
        assert!(read(&dir.path().join("audit.jsonl.1")).starts_with("0006"));
        assert!(read(&dir.path().join("audit.jsonl.2")).starts_with("0004"));
        assert!(!dir.path().join("audit.jsonl.3").exists(), "only `keep` rotated files");
    }
}
