//! Recorded sessions: the gateway starts a recording under a grant, appends
//! its asciicast v2 events in ordered chunks while the session runs, and ends
//! it; the holder and administrators list, inspect and export them.
//!
//! Everything is validated before anything is stored: the terminal size (real
//! sizes only: asciinema cannot play a 0×0 terminal), every event line
//! (`[time, "o"|"i"|"r", data]`, times never going back), and each chunk's
//! size. Chunks are numbered from 0; a repeated chunk with the same content
//! is accepted again without change (a retry), a gap is refused with the seq
//! expected.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use latch_core::{Principal, Timestamp};
use latch_store::{ChunkOutcome, NewRecording, Recording, RecordingChunk, RecordingFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Caller, Ctx};
use crate::state::AppState;

/// Largest chunk upload, in bytes (the rest of the API takes 64 KiB).
pub const CHUNK_LIMIT: usize = 1024 * 1024;
/// Largest terminal side accepted, in cells.
const MAX_SIDE: i64 = 2000;
/// Latest event time accepted, in seconds from the start (about 30 years).
const MAX_TIME_SECS: f64 = 1.0e9;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRecording {
    /// The grant the session runs under: yours, or anyone's for the gateway or an administrator.
    pub grant_id: String,
    /// The target host.
    pub target: String,
    /// The login on the target; one of the role's SSH principals.
    pub login: String,
    /// `shell` or `exec`.
    pub kind: String,
    /// Terminal columns (1–2000).
    pub width: i64,
    /// Terminal rows (1–2000).
    pub height: i64,
    /// The terminal type (`TERM`), for the asciicast header; `xterm-256color` when omitted.
    #[serde(default)]
    pub term: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendChunk {
    /// The chunk's number: 0 for the first, then one more each time.
    pub seq: i64,
    /// asciicast v2 event lines, one JSON array `[time, "o"|"i"|"r", data]` per line.
    pub events: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RecordingView {
    pub id: String,
    /// Whose session it is: the grant's holder.
    pub user: String,
    pub user_kind: String,
    pub grant_id: String,
    /// Who writes it (the gateway, or the holder).
    pub recorded_by: String,
    pub target: String,
    pub login: String,
    /// `shell` or `exec`.
    pub kind: String,
    pub width: i64,
    pub height: i64,
    pub term: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// `active` or `ended`.
    pub state: String,
    /// Chunks stored; the next one expected has this seq.
    pub chunks: i64,
    pub events: i64,
    /// Bytes of recorded terminal data (output and input).
    pub bytes: i64,
    /// Seconds from the start to the last event.
    pub duration: f64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RecordingList {
    pub recordings: Vec<RecordingView>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ChunkAck {
    pub recording: RecordingView,
    /// True when this chunk had been stored before (a retry): nothing changed.
    pub duplicate: bool,
    /// The seq of the next chunk to send.
    pub next_seq: i64,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RecordingsQuery {
    /// Only sessions still running.
    #[serde(default)]
    pub active: bool,
    /// At most this many, newest first (default 1000).
    pub limit: Option<usize>,
}

pub(crate) fn recording_view(r: &Recording) -> RecordingView {
    RecordingView {
        id: r.id.clone(),
        user: r.principal_name.clone(),
        user_kind: r.principal_kind.as_str().into(),
        grant_id: r.grant_id.clone(),
        recorded_by: r.started_by.clone(),
        target: r.target.clone(),
        login: r.login.clone(),
        kind: r.kind.clone(),
        width: r.width,
        height: r.height,
        term: r.term.clone(),
        started_at: r.started_at.to_rfc3339(),
        ended_at: r.ended_at.map(Timestamp::to_rfc3339),
        state: r.state.clone(),
        chunks: r.next_seq,
        events: r.events,
        bytes: r.bytes,
        duration: r.last_time_us as f64 / 1e6,
    }
}

/// Administrators see every recording; others only their own sessions (and
/// what they record themselves). Anything else is not found, not forbidden:
/// a recording's existence is not revealed.
fn may_read(p: &Principal, r: &Recording) -> bool {
    p.is_admin() || r.principal_id == p.id || r.started_by_id == p.id
}

async fn load_readable(st: &AppState, p: &Principal, id: &str) -> ApiResult<Recording> {
    latch_core::validate_name("recording id", id)?;
    st.store
        .get_recording(id)
        .await?
        .filter(|r| may_read(p, r))
        .ok_or_else(|| ApiError::NotFound(format!("recording {id:?} not found")))
}

/// Only the writer (the gateway that started it, or the holder recording
/// themselves) and administrators change a recording; the holder of a
/// session a gateway records may read it, never rewrite it.
async fn load_writable(st: &AppState, p: &Principal, id: &str) -> ApiResult<Recording> {
    let r = load_readable(st, p, id).await?;
    if !p.is_admin() && r.started_by_id != p.id {
        return Err(ApiError::Forbidden(format!(
            "recording {id} is written by {}, which started it: you may read it, not change it",
            r.started_by
        )));
    }
    Ok(r)
}

pub(crate) fn valid_host(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
        && !s.starts_with(['.', '-'])
}

/// The target host (lowercased) and login of a session, checked.
pub(crate) fn target_and_login(target: &str, login: &str) -> ApiResult<String> {
    let host = target.trim().to_ascii_lowercase();
    if !valid_host(&host) {
        return Err(ApiError::BadRequest(format!(
            "target {target:?} is not a host name (letters, digits, '.' and '-'; at most 253)"
        )));
    }
    if !latch_policy::role::valid_login(login) {
        return Err(ApiError::BadRequest(format!(
            "login {login:?} is not a login name (lowercase letters, digits, _ . -; at most 32)"
        )));
    }
    Ok(host)
}

/// `*` matches any run of characters, `?` any one.
pub(crate) fn host_matches(pattern: &str, host: &str) -> bool {
    let (p, h): (Vec<char>, Vec<char>) = (pattern.chars().collect(), host.chars().collect());
    let (mut pi, mut hi, mut star, mut mark) = (0, 0, None, 0);
    while hi < h.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == h[hi]) {
            pi += 1;
            hi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = hi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            hi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn check_size(what: &str, v: i64) -> ApiResult<()> {
    if (1..=MAX_SIDE).contains(&v) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{what} is {v}: give the real terminal size, 1 to {MAX_SIDE} cells (asciinema cannot play a 0-sized terminal)"
        )))
    }
}

#[utoipa::path(post, path = "/v1/recordings", tag = "recordings", request_body = StartRecording,
    responses((status = 201, body = RecordingView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn start(
    State(st): State<AppState>,
    ctx: Ctx,
    Caller(p): Caller,
    ApiJson(req): ApiJson<StartRecording>,
) -> ApiResult<(StatusCode, Json<RecordingView>)> {
    latch_core::validate_name("grant id", &req.grant_id)?;
    let target = target_and_login(&req.target, &req.login)?;
    if req.kind != "shell" && req.kind != "exec" {
        return Err(ApiError::BadRequest(format!("kind {:?} is unknown: use shell or exec", req.kind)));
    }
    check_size("width", req.width)?;
    check_size("height", req.height)?;
    let term = req.term.unwrap_or_else(|| "xterm-256color".into());
    if term.is_empty() || term.len() > 64 || !term.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c)) {
        return Err(ApiError::BadRequest(format!(
            "term {term:?} is not a terminal type (letters, digits, . _ + -; at most 64)"
        )));
    }
    let grant = st
        .store
        .get_grant(&req.grant_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("grant {:?} not found", req.grant_id)))?;
    if grant.principal_id != p.id && !p.is_admin() && !p.is_gateway() {
        return Err(ApiError::Forbidden(format!(
            "grant {} belongs to {}, not to you: record sessions under your own grant",
            grant.id, grant.principal_name
        )));
    }
    if !grant.is_live(st.clock.now()) {
        return Err(ApiError::Conflict(format!("grant {} is no longer active: request the role again", grant.id)));
    }
    let policy = st.policy();
    let role =
        policy.role(&grant.role).ok_or_else(|| ApiError::Conflict(format!("role {} no longer exists", grant.role)))?;
    let spec = role
        .ssh
        .as_ref()
        .ok_or_else(|| ApiError::BadRequest(format!("role {} does not allow SSH sessions", role.name)))?;
    if !spec.principals.contains(&req.login) {
        return Err(ApiError::BadRequest(format!(
            "login {:?} is not allowed for role {}: use one of {:?}",
            req.login, role.name, spec.principals
        )));
    }
    if !spec.hosts.is_empty() && !spec.hosts.iter().any(|h| host_matches(h, &target)) {
        return Err(ApiError::BadRequest(format!(
            "target {target} is not a host of role {}: it reaches {:?}",
            role.name, spec.hosts
        )));
    }
    let id = latch_crypto::new_id("rec")?;
    let ev = ctx.audit(p.audit_name(), "recording.start", format!("recording:{id}")).details(json!({
        "grant_id": grant.id, "role": grant.role, "user": format!("{}:{}", grant.principal_kind.as_str(), grant.principal_name),
        "target": target, "login": req.login, "kind": req.kind, "width": req.width, "height": req.height,
        "breakglass": grant.breakglass,
    }));
    let rec = NewRecording {
        id,
        grant_id: grant.id,
        started_by_id: p.id.clone(),
        started_by: p.audit_name(),
        target,
        login: req.login,
        kind: req.kind,
        width: req.width,
        height: req.height,
        term,
    };
    let r = st.store.start_recording(rec, ev).await?;
    Ok((StatusCode::CREATED, Json(recording_view(&r))))
}

/// A validated chunk: its normalized lines and totals.
pub struct Parsed {
    pub body: String,
    pub events: i64,
    pub bytes: i64,
    pub first_us: i64,
    pub last_us: i64,
}

/// One event line as sent: `[time, code, data]`.
#[derive(Deserialize)]
struct WireEvent<'a>(f64, #[serde(borrow)] std::borrow::Cow<'a, str>, Data);

/// As much of an event's data as the checks need: its length, and the text
/// only when it is short enough to be a resize (`COLSxROWS`). Output is
/// escaped JSON (every newline is), and decoding it into a string of its own
/// for every event would copy each recorded byte once more.
struct Data {
    len: usize,
    short: Option<String>,
}

/// The longest resize, `2000x2000`, with room to say what is wrong with a longer one.
const SHORT_DATA: usize = 32;

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Data;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Data, E> {
                Ok(Data { len: s.len(), short: (s.len() <= SHORT_DATA).then(|| s.to_string()) })
            }
        }
        d.deserialize_str(V)
    }
}

/// Checks every line of `events`; the first bad one is named, nothing is kept.
///
/// The normalized body is `events` itself when it is normal already (what
/// the gateway sends: one event per `\n`-terminated line), so that every
/// byte of a session is not copied once more; it is rebuilt only from the
/// first line that needs it.
pub fn parse_events(events: String) -> ApiResult<Parsed> {
    let mut out = Parsed { body: String::new(), events: 0, bytes: 0, first_us: 0, last_us: 0 };
    // `Some` from the first line that is not already in normal form.
    let mut rebuilt: Option<String> = None;
    let mut offset = 0;
    for (i, raw) in events.split('\n').enumerate() {
        let line_start = offset;
        offset += raw.len() + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw).trim();
        let terminated = offset <= events.len();
        // Kept as it is: a trimmed, non-empty, terminated line, or the nothing after the last newline.
        let normal = (!line.is_empty() && line.len() == raw.len() && terminated) || (raw.is_empty() && !terminated);
        if rebuilt.is_none() && !normal {
            rebuilt = Some(events[..line_start].to_string());
        }
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let bad = |why: String| {
            ApiError::BadRequest(format!(
                "events line {n}: {why}; each line must be an asciicast v2 event [time, \"o\"|\"i\"|\"r\", data]"
            ))
        };
        // The common case decodes straight into its parts; anything else is
        // looked at as a JSON value to say precisely what is wrong with it.
        let (t, code, data) = match serde_json::from_str::<WireEvent<'_>>(line) {
            Ok(WireEvent(t, code, data)) => (Some(t), Value::String(code.into_owned()), data),
            Err(_) => {
                let v: Value = serde_json::from_str(line).map_err(|e| bad(format!("not JSON ({e})")))?;
                let Some([t, code, data]) = v.as_array().map(Vec::as_slice) else {
                    return Err(bad("not a JSON array of 3 elements".into()));
                };
                let data = data.as_str().ok_or_else(|| bad("the data is not a string".into()))?;
                (t.as_f64(), code.clone(), Data { len: data.len(), short: Some(data.to_string()) })
            }
        };
        let t = t.filter(|t| t.is_finite() && (0.0..=MAX_TIME_SECS).contains(t));
        let t = t.ok_or_else(|| bad("the time is not a number of seconds from 0".into()))?;
        match code.as_str() {
            Some("o" | "i") => out.bytes += i64::try_from(data.len).unwrap_or(i64::MAX),
            Some("r") => {
                let size = data.short.as_deref().and_then(|d| {
                    d.split_once('x').and_then(|(w, h)| Some((w.parse::<i64>().ok()?, h.parse::<i64>().ok()?)))
                });
                match size {
                    Some((w, h)) if (1..=MAX_SIDE).contains(&w) && (1..=MAX_SIDE).contains(&h) => {}
                    _ => {
                        let given =
                            data.short.map_or_else(|| format!("{} bytes of text", data.len), |d| format!("{d:?}"));
                        return Err(bad(format!(
                            "a resize must be \"COLSxROWS\" with 1 to {MAX_SIDE} each, not {given}"
                        )));
                    }
                }
            }
            _ => return Err(bad(format!("unknown event type {code}"))),
        }
        let us = (t * 1e6).round() as i64;
        if out.events > 0 && us < out.last_us {
            return Err(bad(format!("the time {t} is before the previous event's: times never go back")));
        }
        if out.events == 0 {
            out.first_us = us;
        }
        out.last_us = us;
        out.events += 1;
        if let Some(body) = rebuilt.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if out.events == 0 {
        return Err(ApiError::BadRequest("events holds no event lines: send at least one".into()));
    }
    out.body = rebuilt.unwrap_or(events);
    Ok(out)
}

fn is_asciicast(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-asciicast"))
}

/// `seq=N` from the query string, the only parameter allowed.
fn seq_param(query: Option<&str>) -> ApiResult<i64> {
    let bad = || ApiError::BadRequest("give the chunk's number as ?seq=N (N from 0) and nothing else".into());
    let q = query.ok_or_else(bad)?;
    let v = q.strip_prefix("seq=").filter(|v| !v.contains('&')).ok_or_else(bad)?;
    v.parse::<i64>().map_err(|_| bad())
}

fn too_large() -> ApiError {
    ApiError::PayloadTooLarge {
        message: format!("a chunk may be at most {CHUNK_LIMIT} bytes (1 MiB): split the events into more chunks"),
    }
}

/// Appends chunk `seq`. Sending the chunk already stored under that seq again
/// is a no-op (`duplicate: true`); skipping ahead is a 409 naming the seq
/// expected. Bodies up to 1 MiB: JSON (`{"seq", "events"}`), or the event
/// lines themselves as `application/x-asciicast` with `?seq=N` (what the
/// gateway sends: no second layer of escaping).
#[utoipa::path(post, path = "/v1/recordings/{id}/chunks", tag = "recordings", request_body = AppendChunk,
    responses((status = 200, body = ChunkAck), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)), security(("bearer" = [])))]
pub async fn append(
    State(st): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    request: Request,
) -> ApiResult<Json<ChunkAck>> {
    let raw_seq = if is_asciicast(request.headers()) {
        Some(seq_param(request.uri().query())?)
    } else if crate::extract::is_json(request.headers()) {
        None
    } else {
        return Err(ApiError::UnsupportedMediaType {
            message: "send the body as JSON with the header Content-Type: application/json \
                      (or the event lines as application/x-asciicast with ?seq=N)"
                .into(),
        });
    };
    let bytes = axum::body::to_bytes(request.into_body(), CHUNK_LIMIT).await.map_err(|_| too_large())?;
    let req: AppendChunk = match raw_seq {
        Some(seq) => AppendChunk {
            seq,
            events: String::from_utf8(Vec::from(bytes))
                .map_err(|_| ApiError::BadRequest("the event lines are not UTF-8".into()))?,
        },
        None => crate::extract::parse_object(&bytes)?,
    };
    let r = load_writable(&st, &p, &id).await?;
    if req.seq < 0 {
        return Err(ApiError::BadRequest(format!("seq is {}: chunks are numbered from 0", req.seq)));
    }
    let parsed = parse_events(req.events)?;
    let chunk = RecordingChunk {
        recording_id: r.id,
        seq: req.seq,
        body: parsed.body,
        events: parsed.events,
        bytes: parsed.bytes,
        first_time_us: parsed.first_us,
        last_time_us: parsed.last_us,
    };
    let (r, duplicate) = match st.store.append_recording_chunk(chunk).await? {
        ChunkOutcome::Appended(r) => (r, false),
        ChunkOutcome::Duplicate(r) => (r, true),
    };
    Ok(Json(ChunkAck { next_seq: r.next_seq, recording: recording_view(&r), duplicate }))
}

/// Ends a recording; the audit event carries its totals. Ending it again
/// changes nothing (for retries).
#[utoipa::path(post, path = "/v1/recordings/{id}/end", tag = "recordings",
    responses((status = 200, body = RecordingView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn end(
    State(st): State<AppState>,
    ctx: Ctx,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RecordingView>> {
    let r = load_writable(&st, &p, &id).await?;
    let actor = p.audit_name();
    let audit = Box::new(move |r: &Recording| {
        ctx.audit(actor, "recording.end", format!("recording:{}", r.id)).details(json!({
            "grant_id": r.grant_id, "user": format!("{}:{}", r.principal_kind.as_str(), r.principal_name),
            "target": r.target, "login": r.login, "chunks": r.next_seq, "events": r.events, "bytes": r.bytes,
            "duration": r.last_time_us as f64 / 1e6,
        }))
    });
    let (r, _) = st.store.end_recording(&r.id, audit).await?;
    Ok(Json(recording_view(&r)))
}

#[utoipa::path(get, path = "/v1/recordings", tag = "recordings", params(RecordingsQuery),
    responses((status = 200, body = RecordingList)), security(("bearer" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Caller(p): Caller,
    ApiQuery(q): ApiQuery<RecordingsQuery>,
) -> ApiResult<Json<RecordingList>> {
    let filter = RecordingFilter {
        principal_id: (!p.is_admin()).then(|| p.id.clone()),
        active: q.active,
        limit: q.limit.unwrap_or(1000),
    };
    let list = st.store.list_recordings(filter).await?;
    Ok(Json(RecordingList { recordings: list.iter().map(recording_view).collect() }))
}

#[utoipa::path(get, path = "/v1/recordings/{id}", tag = "recordings",
    responses((status = 200, body = RecordingView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    State(st): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RecordingView>> {
    let r = load_readable(&st, &p, &id).await?;
    Ok(Json(recording_view(&r)))
}

/// The whole recording as an asciicast v2 file: the header line, then every
/// event stored so far (a running session's too).
#[utoipa::path(get, path = "/v1/recordings/{id}/cast", tag = "recordings",
    responses((status = 200, body = String, content_type = "application/x-asciicast"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cast(
    State(st): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let r = load_readable(&st, &p, &id).await?;
    let chunks = st.store.recording_chunks(&r.id).await?;
    let header = json!({
        "version": 2,
        "width": r.width,
        "height": r.height,
        "timestamp": r.started_at.secs(),
        "title": format!("{}@{} ({})", r.login, r.target, r.id),
        "env": { "TERM": r.term },
    });
    let mut body = String::with_capacity(chunks.iter().map(String::len).sum::<usize>() + 256);
    body.push_str(&header.to_string());
    body.push('\n');
    for c in &chunks {
        body.push_str(c);
    }
    let disposition = format!("attachment; filename=\"{}.cast\"", r.id);
    Ok((
        [(header::CONTENT_TYPE, "application/x-asciicast".to_string()), (header::CONTENT_DISPOSITION, disposition)],
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_match() {
        assert!(host_matches("db-*.prod.internal", "db-1.prod.internal"));
        assert!(host_matches("*", "anything"));
        assert!(host_matches("web-?", "web-1"));
        assert!(!host_matches("web-?", "web-12"));
        assert!(!host_matches("db-*.prod.internal", "db-1.dev.internal"));
    }

    #[test]
    fn events_are_validated_line_by_line() {
        let ok =
            parse_events("[0.1, \"o\", \"hi\"]\r\n\n[0.2, \"r\", \"100x30\"]\n[0.2, \"i\", \"l\"]\n".into()).unwrap();
        assert_eq!((ok.events, ok.bytes, ok.first_us, ok.last_us), (3, 3, 100_000, 200_000));
        assert_eq!(ok.body, "[0.1, \"o\", \"hi\"]\n[0.2, \"r\", \"100x30\"]\n[0.2, \"i\", \"l\"]\n");
        for bad in [
            "",
            "[0.1, \"o\"]",
            "[0.1, \"x\", \"a\"]",
            "[-1, \"o\", \"a\"]",
            "[0.1, \"o\", 5]",
            "{\"a\": 1}",
            "[0.2, \"o\", \"a\"]\n[0.1, \"o\", \"b\"]",
            "[0.1, \"r\", \"0x24\"]",
            "not json",
        ] {
            assert!(parse_events(bad.into()).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn events_in_normal_form_are_kept_as_sent_and_others_are_normalized() {
        let normal = "[0.1, \"o\", \"a\"]\n[0.2, \"o\", \"b\"]\n";
        assert_eq!(parse_events(normal.into()).unwrap().body, normal);
        // Whatever is not normal, wherever it is, ends up as the normal form.
        for odd in [
            "[0.1, \"o\", \"a\"]\n[0.2, \"o\", \"b\"]",
            "[0.1, \"o\", \"a\"]\n\n[0.2, \"o\", \"b\"]\n",
            "\n[0.1, \"o\", \"a\"]\n[0.2, \"o\", \"b\"]\n",
            "[0.1, \"o\", \"a\"]\r\n[0.2, \"o\", \"b\"]\n",
            "[0.1, \"o\", \"a\"]\n  [0.2, \"o\", \"b\"]  \n\n",
        ] {
            let p = parse_events(odd.into()).unwrap();
            assert_eq!((p.body.as_str(), p.events), (normal, 2), "{odd:?}");
        }
    }

    #[test]
    fn escaped_data_counts_its_decoded_bytes_and_a_long_resize_is_named_by_its_size() {
        let out = format!("[0.1, \"o\", \"{}\"]\n", "ab\\r\\n\\u00e9".repeat(1000));
        assert_eq!(parse_events(out).unwrap().bytes, 6000, "a, b, CR, LF and the two bytes of é, 1000 times");
        let long = format!("[0.1, \"r\", \"{}\"]\n", "9".repeat(40));
        let err = parse_events(long).err().unwrap().to_string();
        assert!(err.contains("not 40 bytes of text"), "{err}");
        let err = parse_events("[0.1, \"r\", \"80x\\n\"]\n".into()).err().unwrap().to_string();
        assert!(err.contains(r#"not "80x\n""#), "{err}");
    }
}
