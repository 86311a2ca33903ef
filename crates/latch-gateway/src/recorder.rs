//! Recording a session: every byte the target prints (and, where the role
//! asks, every byte typed) becomes an asciicast v2 event, events are cut into
//! numbered chunks, and each chunk is written to the local spool before
//! anything else happens to it. An uploader per recording then sends the
//! spooled chunks to the server in order and deletes each once stored.
//!
//! So a server that is down or slow (guide failure mode F2) only delays
//! uploads: chunks wait on disk, are retried with backoff, and survive a
//! gateway restart ([`Spool::resume`]). A chunk that cannot be written to the
//! spool cannot be secured at all: the recorder stops, and the session it
//! records is ended rather than run unrecorded.
//!
//! The usual case never reads the spool back: the chunk just written is also
//! handed to the uploader in memory (a few at most; a lagging uploader reads
//! the files). Every byte of every session passes here, so each copy counts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::cast::{SecretGuard, Utf8Stream, push_event};
use crate::control::{Control, ControlError};

/// A chunk is cut before its events, escaped once more as a JSON string,
/// pass this many bytes: the server takes bodies up to 1 MiB (JSON or raw
/// lines), and a chunk it refused for size would be lost.
const CHUNK_WIRE_BYTES: usize = 960 * 1024;
/// Most data bytes in one event; longer output becomes several events.
const EVENT_DATA: usize = 16 * 1024;
/// The most one event can add to the upload body: a control byte becomes
/// `\u00XX` in the line and `\\u00XX` in the body (7 bytes), plus framing.
const MAX_EVENT_WIRE: usize = EVENT_DATA * 7 + 64;
/// …or when its oldest event is this old, so recordings stay close to live.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const ENDED: &str = "ended";
/// Spooled chunks kept in memory for the uploader, per recording.
const FRESH_CHUNKS: usize = 4;

/// Chunks already in the spool, by seq, that the uploader may take from
/// memory instead of reading their files.
#[derive(Clone, Default)]
struct Fresh(Arc<Mutex<BTreeMap<u64, String>>>);

impl Fresh {
    fn keep(&self, seq: u64, events: String) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if m.len() < FRESH_CHUNKS {
            m.insert(seq, events);
        }
    }

    fn take(&self, seq: u64) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(&seq)
    }
}

/// The local directory holding chunks not yet stored by the server.
#[derive(Clone)]
pub struct Spool {
    dir: PathBuf,
    control: Arc<dyn Control>,
}

enum Event {
    Output(Bytes, Instant),
    Input(Bytes, Instant),
    Resize(u32, u32, Instant),
}

/// Feeds one recording. Cheap to clone; every clone records into the same
/// recording. An error from any method means the recording can no longer be
/// secured: end the session.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    record_input: bool,
}

/// The recording cannot be secured (the spool is not writable).
#[derive(Debug, thiserror::Error)]
#[error("the session recording cannot be stored")]
pub struct RecorderGone;

impl Recorder {
    pub async fn output(&self, data: Bytes) -> Result<(), RecorderGone> {
        self.send(Event::Output(data, Instant::now())).await
    }

    pub async fn input(&self, data: Bytes) -> Result<(), RecorderGone> {
        if !self.record_input {
            return Ok(());
        }
        self.send(Event::Input(data, Instant::now())).await
    }

    pub async fn resize(&self, cols: u32, rows: u32) -> Result<(), RecorderGone> {
        self.send(Event::Resize(cols, rows, Instant::now())).await
    }

    async fn send(&self, e: Event) -> Result<(), RecorderGone> {
        self.tx.send(e).await.map_err(|_| RecorderGone)
    }
}

impl Spool {
    /// Opens (creating) the spool directory and checks it is writable.
    pub fn open(dir: &Path, control: Arc<dyn Control>) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let probe = dir.join(".probe");
        std::fs::write(&probe, b"ok")?;
        std::fs::remove_file(&probe)?;
        Ok(Spool { dir: dir.to_path_buf(), control })
    }

    /// Uploads what a previous run left: its sessions are over, so each
    /// recording is ended once its chunks are stored.
    pub fn resume(&self) -> std::io::Result<usize> {
        let mut n = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let id = entry.file_name().to_string_lossy().into_owned();
            std::fs::write(entry.path().join(ENDED), b"")?;
            info!(recording = %id, "resuming the upload of a spooled recording");
            tokio::spawn(upload(entry.path(), id, self.control.clone(), Arc::new(Notify::new()), Fresh::default()));
            n += 1;
        }
        Ok(n)
    }

    /// Starts recording into `recording` (already started on the server).
    /// Dropping every clone of the recorder ends the recording.
    pub fn begin(&self, recording: &str, record_input: bool) -> std::io::Result<Recorder> {
        let dir = self.dir.join(recording);
        std::fs::create_dir(&dir)?;
        let (tx, rx) = mpsc::channel(256);
        let (wake, fresh) = (Arc::new(Notify::new()), Fresh::default());
        tokio::spawn(upload(dir.clone(), recording.to_string(), self.control.clone(), wake.clone(), fresh.clone()));
        let cutter = Cutter { dir, seq: 0, pending: String::new(), wire: 0, wake, fresh, start: Instant::now() };
        tokio::spawn(record(rx, cutter));
        Ok(Recorder { tx, record_input })
    }
}

/// Cuts events into spooled chunks.
struct Cutter {
    dir: PathBuf,
    seq: u64,
    pending: String,
    /// `pending`'s size once escaped into the upload body.
    wire: usize,
    wake: Arc<Notify>,
    fresh: Fresh,
    start: Instant,
}

impl Cutter {
    fn secs(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.start).as_secs_f64()
    }

    /// Writes the pending events as the next chunk (atomically: the uploader
    /// never sees half a file).
    async fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let name = format!("{:010}.events", self.seq);
        let (tmp, path) = (self.dir.join(format!("{name}.tmp")), self.dir.join(name));
        // The next chunk is likely the size of this one (bulk output or keystrokes).
        let next = String::with_capacity(self.pending.len());
        let events = std::mem::replace(&mut self.pending, next);
        let events = tokio::task::spawn_blocking(move || {
            std::fs::write(&tmp, events.as_bytes())?;
            std::fs::rename(&tmp, &path)?;
            Ok::<_, std::io::Error>(events)
        })
        .await
        .map_err(std::io::Error::other)??;
        self.fresh.keep(self.seq, events);
        self.wire = 0;
        self.seq += 1;
        self.wake.notify_one();
        Ok(())
    }

    /// Adds an event, split into pieces of at most [`EVENT_DATA`] bytes,
    /// cutting a chunk whenever the next piece might not fit in one upload.
    async fn event(&mut self, at: Instant, code: char, text: &str) -> std::io::Result<()> {
        let secs = self.secs(at);
        let mut rest = text;
        while !rest.is_empty() {
            let mut end = rest.len().min(EVENT_DATA);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            let (piece, tail) = rest.split_at(end);
            self.wire += push_event(&mut self.pending, secs, code, piece);
            if self.wire + MAX_EVENT_WIRE > CHUNK_WIRE_BYTES {
                self.flush().await?;
            }
            rest = tail;
        }
        Ok(())
    }

    async fn finish(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        tokio::fs::write(self.dir.join(ENDED), b"").await?;
        self.wake.notify_one();
        Ok(())
    }
}

async fn record(mut rx: mpsc::Receiver<Event>, mut cut: Cutter) {
    let (mut out, mut typed, mut guard) = (Utf8Stream::default(), Utf8Stream::default(), SecretGuard::default());
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = tick.tick() => {
                if let Err(e) = cut.flush().await {
                    return fail(&cut, e);
                }
                continue;
            }
        };
        let Some(event) = event else { break };
        match event {
            Event::Output(b, at) => {
                let text = out.push(&b);
                if !text.is_empty() {
                    guard.saw_output(&text);
                    if let Err(e) = cut.event(at, 'o', &text).await {
                        return fail(&cut, e);
                    }
                }
            }
            Event::Input(b, at) => {
                let text = guard.recordable(typed.push(&b).as_ref());
                if !text.is_empty()
                    && let Err(e) = cut.event(at, 'i', &text).await
                {
                    return fail(&cut, e);
                }
            }
            Event::Resize(w, h, at) => {
                if let Err(e) = cut.event(at, 'r', &format!("{w}x{h}")).await {
                    return fail(&cut, e);
                }
            }
        }
    }
    if let Err(e) = cut.finish().await {
        fail(&cut, e);
    }
}

fn fail(cut: &Cutter, e: std::io::Error) {
    warn!(spool = %cut.dir.display(), error = %e, "cannot write the session recording to the spool: ending the session");
}

/// Sends the spooled chunks of one recording in order, then ends it.
async fn upload(dir: PathBuf, id: String, control: Arc<dyn Control>, wake: Arc<Notify>, fresh: Fresh) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let step = upload_step(&dir, &id, control.as_ref(), &fresh).await;
        match step {
            Step::Progress => backoff = BACKOFF_MIN,
            Step::Idle => {
                let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            }
            Step::Retry(why) => {
                warn!(recording = %id, error = %why, "recording upload failed; kept in the spool, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Step::Done => {
                info!(recording = %id, "recording stored");
                return;
            }
        }
    }
}

enum Step {
    Progress,
    Idle,
    Retry(String),
    Done,
}

async fn upload_step(dir: &Path, id: &str, control: &dyn Control, fresh: &Fresh) -> Step {
    let (first, ended) = match next_chunk(dir).await {
        Ok(v) => v,
        Err(e) => return Step::Retry(format!("cannot read the spool: {e}")),
    };
    if let Some((seq, path)) = first {
        // A retry finds it gone from memory and reads the file.
        let events = match fresh.take(seq) {
            Some(t) => t,
            None => match tokio::fs::read_to_string(&path).await {
                Ok(t) => t,
                Err(e) => return Step::Retry(format!("cannot read {}: {e}", path.display())),
            },
        };
        return match control.append_chunk(id, seq, events).await {
            Ok(()) => match tokio::fs::remove_file(&path).await {
                Ok(()) => Step::Progress,
                Err(e) => Step::Retry(format!("cannot remove {}: {e}", path.display())),
            },
            Err(ControlError::Unavailable(m)) => Step::Retry(m),
            Err(ControlError::Refused(m)) => {
                // Kept for an operator to look at, out of the upload's way.
                warn!(recording = %id, seq, error = %m, "the server refused a recording chunk; kept as .rejected");
                let _ = tokio::fs::rename(&path, path.with_extension("rejected")).await;
                Step::Progress
            }
        };
    }
    if !ended {
        return Step::Idle;
    }
    match control.end_recording(id).await {
        Ok(()) | Err(ControlError::Refused(_)) => {
            let _ = tokio::fs::remove_file(dir.join(ENDED)).await;
            let _ = tokio::fs::remove_dir(dir).await;
            Step::Done
        }
        Err(ControlError::Unavailable(m)) => Step::Retry(m),
    }
}

/// The lowest-numbered complete chunk in `dir`, and whether the recording has ended.
async fn next_chunk(dir: &Path) -> std::io::Result<(Option<(u64, PathBuf)>, bool)> {
    let mut rd = tokio::fs::read_dir(dir).await?;
    let (mut best, mut ended): (Option<(u64, PathBuf)>, bool) = (None, false);
    while let Some(e) = rd.next_entry().await? {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == ENDED {
            ended = true;
        } else if let Some(seq) = name.strip_suffix(".events").and_then(|s| s.parse::<u64>().ok())
            && best.as_ref().is_none_or(|(b, _)| seq < *b)
        {
            best = Some((seq, e.path()));
        }
    }
    Ok((best, ended))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{AuthorizeRequest, Authorized, EndedGrant, StartRecording};
    use std::sync::Mutex;

    /// A server that is down until told otherwise, then stores chunks.
    #[derive(Default)]
    struct FlakyServer {
        up: Mutex<bool>,
        chunks: Mutex<Vec<(u64, String)>>,
        ended: Mutex<bool>,
    }

    #[async_trait::async_trait]
    impl Control for FlakyServer {
        async fn authorize(&self, _: AuthorizeRequest) -> Result<Authorized, ControlError> {
            Err(ControlError::Refused("not here".into()))
        }
        async fn start_recording(&self, _: StartRecording) -> Result<String, ControlError> {
            Ok("rec_1".into())
        }
        async fn append_chunk(&self, _: &str, seq: u64, events: String) -> Result<(), ControlError> {
            if !*self.up.lock().unwrap() {
                return Err(ControlError::Unavailable("connection refused".into()));
            }
            self.chunks.lock().unwrap().push((seq, events));
            Ok(())
        }
        async fn end_recording(&self, _: &str) -> Result<(), ControlError> {
            if !*self.up.lock().unwrap() {
                return Err(ControlError::Unavailable("connection refused".into()));
            }
            *self.ended.lock().unwrap() = true;
            Ok(())
        }
        async fn ended_grants(&self, _: Vec<String>) -> Result<Vec<EndedGrant>, ControlError> {
            Ok(vec![])
        }
    }

    #[test]
    fn memory_holds_a_few_chunks_at_most_whatever_the_uploader_lags() {
        let fresh = Fresh::default();
        for seq in 0..100 {
            fresh.keep(seq, format!("chunk {seq}"));
        }
        let kept: Vec<u64> = (0..100).filter(|s| fresh.take(*s).is_some()).collect();
        assert_eq!(kept, (0..FRESH_CHUNKS as u64).collect::<Vec<_>>(), "the rest is read from the spool");
        assert!(fresh.take(0).is_none(), "taken once");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn chunks_wait_in_the_spool_while_the_server_is_down() {
        let dir = tempfile::tempdir().unwrap();
        let server = Arc::new(FlakyServer::default());
        let spool = Spool::open(dir.path(), server.clone()).unwrap();
        let rec = spool.begin("rec_1", true).unwrap();
        rec.output(Bytes::from_static(b"$ ")).await.unwrap();
        rec.input(Bytes::from_static(b"echo hi\r")).await.unwrap();
        rec.output(Bytes::from_static(b"echo hi\r\nhi\r\n$ ")).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let spooled = std::fs::read_dir(dir.path().join("rec_1")).unwrap().count();
        assert!(spooled >= 1, "the chunk waits on disk");
        assert!(server.chunks.lock().unwrap().is_empty());
        drop(rec);
        *server.up.lock().unwrap() = true;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let chunks = server.chunks.lock().unwrap().clone();
        let all: String = chunks.iter().map(|c| c.1.clone()).collect();
        assert!(all.contains("\"i\", \"echo hi\\r\"") && all.contains("hi\\r\\n$ "), "{all}");
        assert!(chunks.windows(2).all(|w| w[0].0 + 1 == w[1].0), "in order, no gap");
        assert!(*server.ended.lock().unwrap());
        assert!(!dir.path().join("rec_1").exists(), "the spool is emptied once stored");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn no_chunk_is_too_large_for_the_server_whatever_is_printed() {
        let dir = tempfile::tempdir().unwrap();
        let server = Arc::new(FlakyServer::default());
        *server.up.lock().unwrap() = true;
        let spool = Spool::open(dir.path(), server.clone()).unwrap();
        let rec = spool.begin("rec_3", false).unwrap();
        // 3 MiB of the worst bytes for JSON, in large packets.
        let hostile: Vec<u8> = (0..256 * 1024).map(|i| [0x1b, b'"', b'\\', 0x01][i % 4]).collect();
        for _ in 0..12 {
            rec.output(Bytes::from(hostile.clone())).await.unwrap();
        }
        drop(rec);
        tokio::time::sleep(Duration::from_secs(30)).await;
        let chunks = server.chunks.lock().unwrap().clone();
        assert!(chunks.len() > 3 && *server.ended.lock().unwrap());
        for (seq, events) in &chunks {
            let body = serde_json::json!({ "seq": seq, "events": events }).to_string();
            assert!(body.len() <= 1024 * 1024, "chunk {seq} is {} bytes", body.len());
        }
        let total: usize = chunks
            .iter()
            .flat_map(|(_, e)| e.lines())
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[2].as_str().unwrap().len())
            .sum();
        assert_eq!(total, 12 * 256 * 1024, "every byte recorded");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_spool_that_cannot_be_written_stops_the_recorder() {
        let dir = tempfile::tempdir().unwrap();
        let server = Arc::new(FlakyServer::default());
        let spool = Spool::open(dir.path(), server).unwrap();
        let rec = spool.begin("rec_2", false).unwrap();
        // The recording's directory replaced by a file: nothing can be spooled.
        std::fs::remove_dir_all(dir.path().join("rec_2")).unwrap();
        std::fs::write(dir.path().join("rec_2"), b"not a directory").unwrap();
        let mut gone = false;
        for _ in 0..100 {
            if rec.output(Bytes::from_static(&[b'x'; 4096])).await.is_err() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "the recorder reports it can no longer secure the recording");
    }
}
