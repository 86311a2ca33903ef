//! Failure mode F5 of the guide: no secret reaches a log, an audit event, a
//! client's error output or an HTTP error body.
//!
//! The harness notes every secret that passes through it — the bootstrap
//! token, the passwords and client secrets it sends, and the session tokens,
//! client secrets, TOTP secrets and signed tokens (JWTs) it receives — and
//! checks as it goes: the stderr of every `latch` client command and the body
//! of every HTTP error answer. When a [`super::Server`] is dropped, its log
//! file and its audit events are checked too. A hit fails the test and names
//! the secret only by its first characters and length (test output is a log
//! as well).
//!
//! Secrets are kept for the whole test process, so each check looks for the
//! secrets of every test so far: random tokens cannot appear by chance, and
//! fewer than 8 characters are never noted.
//!
//! Cheap by construction: secrets shaped like tokens (`[A-Za-z0-9_-]+`) are
//! looked up word by word in a hash set, in one pass over the text however
//! many there are; only the few that are not (passwords with spaces) are
//! searched for one by one.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

/// Shorter strings are not noted: they could occur by chance.
const MIN_LEN: usize = 8;

#[derive(Default)]
struct Known {
    /// Secrets made only of token characters: matched as whole words.
    words: HashSet<String>,
    /// Everything else (passwords with spaces): matched as substrings.
    phrases: Vec<String>,
}

static KNOWN: Mutex<Option<Known>> = Mutex::new(None);

fn known() -> MutexGuard<'static, Option<Known>> {
    KNOWN.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Notes one secret. A JWT is noted by its signature, the part that makes it
/// a credential (header and claims are not secret).
pub fn note(secret: &str) {
    let s = secret.trim();
    if s.len() < MIN_LEN {
        return;
    }
    if let Some(sig) = jwt_signature(s) {
        return note(sig);
    }
    let mut guard = known();
    let k = guard.get_or_insert_with(Known::default);
    if s.chars().all(word_char) {
        k.words.insert(s.to_string());
    } else if !k.phrases.iter().any(|p| p == s) {
        k.phrases.push(s.to_string());
    }
}

/// The signature segment of a compact JWS (`eyJ….….…`), if `s` is one.
fn jwt_signature(s: &str) -> Option<&str> {
    let mut parts = s.split('.');
    let (h, p, sig) = (parts.next()?, parts.next()?, parts.next()?);
    let b64 = |x: &str| !x.is_empty() && x.chars().all(word_char);
    (parts.next().is_none() && h.starts_with("eyJ") && b64(h) && b64(p) && b64(sig)).then_some(sig)
}

/// JSON fields whose string values are secrets, in what latch answers.
const RECEIVED_FIELDS: &[&str] = &["token", "client_secret", "secret"];
/// JSON fields whose string values are secrets, in what a client sends.
pub const SENT_FIELDS: &[&str] = &["password", "client_secret"];

/// Notes the secrets in something latch printed or answered: its bearer
/// tokens (`lts_…`, `ltsp_…`), JWTs, `secret=` of otpauth URIs, and the
/// `token`, `client_secret` and `secret` fields of JSON.
pub fn harvest(text: &str) {
    for w in text.split(|c: char| !word_char(c)) {
        if (w.starts_with("lts_") || w.starts_with("ltsp_")) && w.len() >= 40 {
            note(w);
        }
    }
    for w in text.split(|c: char| !(word_char(c) || c == '.')) {
        if let Some(sig) = jwt_signature(w) {
            note(sig);
        }
    }
    for rest in text.split("secret=").skip(1) {
        let end = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
        note(&rest[..end]);
    }
    harvest_json(text, RECEIVED_FIELDS);
}

/// Notes the string values of `fields` anywhere in `text`, if it is JSON.
pub fn harvest_json(text: &str, fields: &[&str]) {
    fn walk(v: &Value, fields: &[&str]) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match v {
                        Value::String(s) if fields.contains(&k.as_str()) => note(s),
                        _ => walk(v, fields),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, fields)),
            _ => {}
        }
    }
    let t = text.trim_start();
    if (t.starts_with('{') || t.starts_with('['))
        && let Ok(v) = serde_json::from_str::<Value>(t)
    {
        walk(&v, fields);
    }
}

/// The first known secret in `text`, described without revealing it.
pub fn find(text: &str) -> Option<String> {
    let guard = known();
    let k = guard.as_ref()?;
    let hint = |s: &str| format!("{}… ({} characters)", s.chars().take(4).collect::<String>(), s.len());
    if !k.words.is_empty()
        && let Some(w) = text.split(|c: char| !word_char(c)).find(|w| w.len() >= MIN_LEN && k.words.contains(*w))
    {
        return Some(hint(w));
    }
    k.phrases.iter().find(|p| text.contains(p.as_str())).map(|p| hint(p))
}

/// Fails the test if a known secret occurs in `text`, read from `what`.
#[track_caller]
pub fn assert_clean(what: &str, text: &str) {
    if let Some(hint) = find(text) {
        panic!("F5: a secret ({hint}) reached {what}");
    }
}

/// How many secrets have been noted so far (for tests of the harness).
pub fn count() -> usize {
    known().as_ref().map_or(0, |k| k.words.len() + k.phrases.len())
}
