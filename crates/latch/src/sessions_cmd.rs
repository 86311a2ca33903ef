//! `latch sessions [--active] | show ID | export ID` and `latch replay ID`:
//! recorded SSH sessions (asciicast v2).

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::UsageError;
use crate::cli::{Global, Output, SessionsArgs, SessionsCmd};
use crate::client::{Client, seg};
use crate::out::{emit, s, table};

pub fn run(a: SessionsArgs, g: &Global) -> anyhow::Result<()> {
    let c = Client::new(g)?;
    match a.cmd {
        None => {
            let path = if a.active { "/v1/recordings?active=true" } else { "/v1/recordings" };
            let v: Value = c.get(path)?;
            emit(g, &v, |v| {
                let rows = v["recordings"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        vec![
                            s(r, "id"),
                            s(r, "user"),
                            format!("{}@{}", s(r, "login"), s(r, "target")),
                            s(r, "kind"),
                            s(r, "state"),
                            s(r, "started_at"),
                            format!("{:.1}s", r["duration"].as_f64().unwrap_or(0.0)),
                            s(r, "bytes"),
                        ]
                    })
                    .collect();
                table(&["id", "user", "session", "kind", "state", "started", "duration", "bytes"], rows);
            });
            Ok(())
        }
        Some(SessionsCmd::Show { id }) => {
            let v: Value = c.get(&format!("/v1/recordings/{}", seg(&id)))?;
            emit(g, &v, |v| {
                println!("{} ({})", s(v, "id"), s(v, "state"));
                println!("user: {} ({})  grant: {}", s(v, "user"), s(v, "user_kind"), s(v, "grant_id"));
                println!(
                    "session: {} {}@{}  recorded by {}",
                    s(v, "kind"),
                    s(v, "login"),
                    s(v, "target"),
                    s(v, "recorded_by")
                );
                println!("terminal: {}x{} {}", s(v, "width"), s(v, "height"), s(v, "term"));
                println!("started: {}  ended: {}", s(v, "started_at"), s(v, "ended_at"));
                println!(
                    "{} events in {} chunks, {} bytes, {:.1}s",
                    s(v, "events"),
                    s(v, "chunks"),
                    s(v, "bytes"),
                    v["duration"].as_f64().unwrap_or(0.0)
                );
            });
            Ok(())
        }
        Some(SessionsCmd::Export { id, out }) => {
            let cast = c.get_bytes(&format!("/v1/recordings/{}/cast", seg(&id)))?;
            match (&out, g.output) {
                (Some(path), _) => {
                    std::fs::write(path, &cast).with_context(|| format!("cannot write {}", path.display()))?;
                    emit(g, &json!({ "id": id, "file": path, "bytes": cast.len() }), |_| {
                        eprintln!("wrote {} ({} bytes)", path.display(), cast.len());
                    });
                }
                (None, Output::Json) => {
                    let text = String::from_utf8(cast).context("the recording is not UTF-8 text")?;
                    crate::out::json(&json!({ "id": id, "cast": text }));
                }
                (None, Output::Text) => {
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(&cast).context("cannot write the recording to stdout")?;
                    stdout.flush()?;
                }
            }
            Ok(())
        }
    }
}

/// Plays the output events of a recording with their timing, scaled by `speed`
/// (0: no waiting). With `-o json`, prints the output and totals instead.
pub fn replay(id: &str, speed: f64, g: &Global) -> anyhow::Result<()> {
    if !speed.is_finite() || speed < 0.0 {
        return Err(UsageError(format!(
            "--speed {speed}: give a factor ≥ 0 (1 real time, 2 twice as fast, 0 no waiting)"
        ))
        .into());
    }
    let c = Client::new(g)?;
    let cast = c.get_bytes(&format!("/v1/recordings/{}/cast", seg(id)))?;
    let text = String::from_utf8(cast).context("the recording is not UTF-8 text")?;
    let mut lines = text.lines();
    let header: Value =
        serde_json::from_str(lines.next().unwrap_or("")).context("the recording has no asciicast header")?;
    let mut events: Vec<(f64, String)> = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("bad event line in the recording: {line}"))?;
        if v[1] == "o" {
            events.push((v[0].as_f64().unwrap_or(0.0), v[2].as_str().unwrap_or("").to_string()));
        }
    }
    if g.output == Output::Json {
        let output: String = events.iter().map(|(_, d)| d.as_str()).collect();
        crate::out::json(&json!({
            "id": id, "width": header["width"], "height": header["height"],
            "events": events.len(), "duration": events.last().map_or(0.0, |e| e.0), "output": output,
        }));
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    let mut at = 0.0;
    for (t, data) in &events {
        if speed > 0.0 && *t > at {
            wait(Duration::from_secs_f64(((t - at) / speed).min(3600.0)));
        }
        at = at.max(*t);
        stdout.write_all(data.as_bytes()).context("cannot write to the terminal")?;
        stdout.flush()?;
    }
    Ok(())
}

/// Replay waits on wall time: it plays a recording, it decides nothing.
#[allow(clippy::disallowed_methods)]
fn wait(d: Duration) {
    std::thread::sleep(d);
}
