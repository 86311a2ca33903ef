//! `latch login --oidc PROVIDER`: the authorization code flow for a CLI.
//!
//! The CLI listens on a loopback port (RFC 8252), asks the server to start a
//! sign-in with that `redirect_uri`, prints the provider's URL for the user
//! to open, receives the browser's redirect with the code, and hands state
//! and code to the server, which redeems the code (it holds the client secret
//! and the PKCE verifier) and answers a session.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::client::{Client, seg};
use crate::out::s;

/// Percent-decoding of one query value (`+` is a space).
fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(x) => {
                        out.push(x);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            x => out.push(x),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query parameters of a request line `GET /path?query HTTP/1.1`, if its path is `path`.
fn query_of(request_line: &str, path: &str) -> Option<Vec<(String, String)>> {
    let target = request_line.split_whitespace().nth(1)?;
    let (p, q) = target.split_once('?').unwrap_or((target, ""));
    (p == path).then(|| {
        q.split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (decode(k), decode(v))
            })
            .collect()
    })
}

fn reply(mut stream: &TcpStream, status: &str, text: &str) {
    let body = format!("<!doctype html><title>latch</title><p>{text}</p>");
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Reads the request head (up to 16 KiB) and returns its first line.
fn request_line(mut stream: &TcpStream) -> Option<String> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).lines().next().map(str::to_string)
}

/// Waits for the browser's redirect to `/callback`; returns (code, state).
fn wait_for_code(listener: TcpListener, expected_state: &str, limit: Duration) -> anyhow::Result<(String, String)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let Some(line) = request_line(&stream) else { continue };
            let Some(params) = query_of(&line, "/callback") else {
                reply(&stream, "404 Not Found", "Not here: this port waits for the sign-in callback only.");
                continue;
            };
            let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if let Some(err) = get("error") {
                let why = format!("{err}: {}", get("error_description").unwrap_or_default());
                reply(&stream, "200 OK", "The sign-in was refused by the provider. Back in the terminal for details.");
                let _ = tx.send(Err(why));
                return;
            }
            match (get("code"), get("state")) {
                (Some(code), Some(state)) => {
                    reply(&stream, "200 OK", "Signed in to latch: you can close this window.");
                    let _ = tx.send(Ok((code, state)));
                    return;
                }
                _ => reply(&stream, "400 Bad Request", "The callback has no code and state."),
            }
        }
    });
    let (code, state) = match rx.recv_timeout(limit) {
        Ok(Ok(pair)) => pair,
        Ok(Err(why)) => anyhow::bail!("the provider refused the sign-in: {why}"),
        Err(_) => {
            anyhow::bail!("no answer from the browser within {} s: run `latch login --oidc` again", limit.as_secs())
        }
    };
    if state != expected_state {
        anyhow::bail!("the callback's state is not this sign-in's: it was not started here; try again");
    }
    Ok((code, state))
}

pub fn login(c: &Client, provider: &str, limit: Duration) -> anyhow::Result<Value> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen on a loopback port for the callback")?;
    let port = listener.local_addr()?.port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let started: Value =
        c.post(&format!("/v1/auth/oidc/{}/start", seg(provider)), &json!({ "redirect_uri": redirect_uri }))?;
    let url = s(&started, "authorization_url");
    eprintln!("To sign in through {provider}, open this URL in a browser (waiting {} s):", limit.as_secs());
    eprintln!("{url}");
    let (code, state) = wait_for_code(listener, &s(&started, "state"), limit)?;
    let v: Value =
        c.post(&format!("/v1/auth/oidc/{}/callback", seg(provider)), &json!({ "state": state, "code": code }))?;
    Ok(v)
}

/// Whether the server says `provider` offers the device authorization grant.
pub fn offers_device_grant(c: &Client, provider: &str) -> anyhow::Result<bool> {
    let list: Value = c.get("/v1/auth/oidc")?;
    let found = list["providers"].as_array().and_then(|ps| ps.iter().find(|p| p["name"] == provider));
    match found {
        Some(p) => Ok(p["device_grant"].as_bool().unwrap_or(false)),
        None => {
            let names: Vec<&str> =
                list["providers"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
            anyhow::bail!("no OIDC provider named {provider:?} (the server has: {})", names.join(", "))
        }
    }
}

/// The device authorization grant (RFC 8628): the server starts it at the
/// provider, the user enters the code at the provider's page (on any
/// device), and the CLI polls the server, which redeems the device code.
pub fn login_device(c: &Client, provider: &str, limit: Duration) -> anyhow::Result<Value> {
    let base = format!("/v1/auth/oidc/{}/device", seg(provider));
    let started: Value = c.post(&base, &json!({}))?;
    let mut interval = Duration::from_secs(started["interval_secs"].as_u64().unwrap_or(5).max(1));
    eprintln!(
        "To sign in through {provider}, open {} and enter the code {}",
        s(&started, "verification_uri"),
        s(&started, "user_code")
    );
    if let Some(u) = started["verification_uri_complete"].as_str() {
        eprintln!("(or open {u})");
    }
    eprintln!("Waiting for the approval (up to {} s)…", limit.as_secs());
    let handle = s(&started, "handle");
    let deadline = std::time::Instant::now() + limit;
    loop {
        let v: Value = c.post(&format!("{base}/poll"), &json!({ "handle": handle }))?;
        if v.get("token").is_some() {
            return Ok(v);
        }
        if v["status"] == "slow_down" {
            interval += Duration::from_secs(v["slow_down_secs"].as_u64().unwrap_or(5));
        }
        if std::time::Instant::now() + interval > deadline {
            anyhow::bail!(
                "the sign-in was not approved within {} s: run `latch login --oidc {provider}` again",
                limit.as_secs()
            );
        }
        wait(interval);
    }
}

/// The CLI waits in real time between polls: the provider's interval is
/// wall-clock time, and no server logic depends on it.
#[allow(clippy::disallowed_methods)]
fn wait(d: Duration) {
    std::thread::sleep(d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_queries_are_decoded() {
        let q = query_of("GET /callback?code=a%2Fb+c&state=x%3D&iss=http%3A%2F%2Fh HTTP/1.1", "/callback").unwrap();
        assert_eq!(q[0], ("code".to_string(), "a/b c".to_string()));
        assert_eq!(q[1].1, "x=");
        assert_eq!(q[2].1, "http://h");
        assert!(query_of("GET /favicon.ico HTTP/1.1", "/callback").is_none());
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
