//! Terminal bytes to asciicast v2 event lines.
//!
//! A session's output arrives in arbitrary pieces: a UTF-8 character may be
//! split across two of them, so an incomplete tail is carried over to the
//! next piece rather than turned into U+FFFD. Bytes that are not UTF-8 at all
//! become U+FFFD, as `asciinema rec` does.
//!
//! Input is recorded only when the role asks for it, and never while a
//! password prompt is showing: the gateway cannot see the remote terminal's
//! echo flag, so it treats output whose last line ends like a prompt for a
//! secret (`Password:`, `[sudo] password for alice:`, `Enter passphrase …:`,
//! `PIN:`) as echo off, and drops what is typed until Enter.

/// Seconds from the session's start, to the microsecond.
pub fn event_line(secs: f64, code: char, data: &str) -> String {
    let mut out = String::new();
    push_event(&mut out, secs, code, data);
    out
}

/// Appends one event line to `out`; returns how many bytes it adds once
/// `out` is itself sent as a JSON string (every `"`, `\` and newline grows).
pub fn push_event(out: &mut String, secs: f64, code: char, data: &str) -> usize {
    use std::fmt::Write;
    let start = out.len();
    let _ = write!(out, "[{secs:.6}, \"{code}\", ");
    // Framing: the 2 quotes around code, and the line's newline.
    let grows = 2 + push_json_str(out, data) + 1;
    out.push_str("]\n");
    (out.len() - start) + grows
}

/// Appends `s` as a JSON string (quotes included) to `out`; returns how
/// many of the bytes written are `"` or `\` (each doubles when the result is
/// escaped again).
///
/// Hand-written rather than through serde: every byte of every session
/// passes here, and runs of plain text are copied whole. A `String`, not
/// bytes: the chunk it builds is uploaded as text without being checked for
/// UTF-8 once more (every cut is at an ASCII byte, so a char boundary).
pub fn push_json_str(out: &mut String, s: &str) -> usize {
    use std::fmt::Write;
    out.push('"');
    let mut specials = 2;
    let bytes = s.as_bytes();
    let (mut plain, mut i) = (0, 0);
    while i < bytes.len() {
        i = next_special(bytes, i);
        let Some(&b) = bytes.get(i) else { break };
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            _ => "",
        };
        out.push_str(&s[plain..i]);
        plain = i + 1;
        i += 1;
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
            specials += 1;
        } else {
            out.push_str(esc);
            specials += if matches!(b, b'"' | b'\\') { 2 } else { 1 };
        }
    }
    out.push_str(&s[plain..]);
    out.push('"');
    specials
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `w` is below 0x20, `"` or `\` (bit tricks on 8
/// bytes at once: terminal output is mostly plain text).
fn any_special(w: u64) -> bool {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    (below_space | zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\')))) != 0
}

fn is_special(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The index of the first byte from `i` on that JSON must escape (or the length).
fn next_special(bytes: &[u8], mut i: usize) -> usize {
    while let Some(block) = bytes.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(block);
        if any_special(u64::from_le_bytes(w)) {
            break;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if is_special(b) {
            return i;
        }
        i += 1;
    }
    i
}

/// Decodes a byte stream as UTF-8, carrying an incomplete trailing
/// character over to the next piece.
#[derive(Default, Debug)]
pub struct Utf8Stream {
    carry: Vec<u8>,
}

impl Utf8Stream {
    pub fn push<'a>(&mut self, data: &'a [u8]) -> std::borrow::Cow<'a, str> {
        if self.carry.is_empty()
            && let Ok(s) = std::str::from_utf8(data)
        {
            return std::borrow::Cow::Borrowed(s);
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(data);
        let cut = incomplete_tail(&buf);
        self.carry = buf.split_off(cut);
        std::borrow::Cow::Owned(String::from_utf8_lossy(&buf).into_owned())
    }
}

/// Where an incomplete UTF-8 sequence at the end of `b` starts (`b.len()` if none).
fn incomplete_tail(b: &[u8]) -> usize {
    for back in 1..=3.min(b.len()) {
        let i = b.len() - back;
        let byte = b[i];
        if byte & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for the start
        }
        let need = match byte {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return b.len(),
        };
        return if back < need { i } else { b.len() };
    }
    b.len()
}

/// Decides whether typed input may be recorded: not while a secret is being typed.
#[derive(Default, Debug)]
pub struct SecretGuard {
    /// The end of the last output line, lowercased, for prompt matching.
    tail: String,
    typing_secret: bool,
}

const PROMPT_TAIL: usize = 160;

impl SecretGuard {
    pub fn saw_output(&mut self, text: &str) {
        match text.rfind(['\n', '\r']) {
            Some(i) => {
                self.tail.clear();
                self.tail.push_str(&text[i + 1..]);
            }
            None => self.tail.push_str(text),
        }
        if self.tail.len() > PROMPT_TAIL {
            let mut cut = self.tail.len() - PROMPT_TAIL;
            while !self.tail.is_char_boundary(cut) {
                cut += 1;
            }
            self.tail.drain(..cut);
        }
        if is_secret_prompt(&self.tail) {
            self.typing_secret = true;
        }
    }

    /// The part of `typed` that may be recorded (empty while a secret is typed).
    pub fn recordable(&mut self, typed: &str) -> String {
        if !self.typing_secret {
            return typed.to_string();
        }
        match typed.find(['\r', '\n']) {
            Some(i) => {
                self.typing_secret = false;
                self.tail.clear();
                typed[i..].to_string()
            }
            None => String::new(),
        }
    }
}

fn is_secret_prompt(line: &str) -> bool {
    let l = line.trim_end().to_lowercase();
    if !l.ends_with(':') {
        return false;
    }
    ["password", "passphrase", "passcode", "pin", "secret", "token", "otp"].iter().any(|w| l.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_asciicast_events() {
        assert_eq!(event_line(1.5, 'o', "a\"b\n"), "[1.500000, \"o\", \"a\\\"b\\n\"]\n");
        let v: serde_json::Value = serde_json::from_str(event_line(0.0, 'i', "\u{1b}[A").trim()).unwrap();
        assert_eq!(v[2], "\u{1b}[A");
    }

    #[test]
    fn events_encode_as_serde_would_and_the_wire_size_is_exact() {
        let all_bytes: String = (0u8..=0x7f).map(char::from).collect();
        for data in ["", "plain text", "a\"b\\c\n", "\u{1b}[31mred\u{1b}[0m\r\n", "é→🎉\t", all_bytes.as_str()] {
            let mut out = String::new();
            let n = push_event(&mut out, 0.5, 'o', data);
            let line = out.as_str();
            let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
            assert_eq!(v, serde_json::json!([0.5, "o", data]), "{line}");
            let as_json = serde_json::to_string(line).unwrap();
            assert_eq!(n, as_json.len() - 2, "{as_json}");
        }
    }

    #[test]
    fn the_block_scan_finds_every_special_byte() {
        for len in 0..40 {
            for pos in 0..len {
                for special in [0u8, 0x1f, b'"', b'\\', b'\n'] {
                    let mut v = vec![b'a'; len];
                    v[pos] = special;
                    assert_eq!(next_special(&v, 0), pos, "len {len} pos {pos} byte {special:#x}");
                }
                let v: Vec<u8> = (0..len).map(|i| 0x20 + (i % 0x5f) as u8).filter(|b| !is_special(*b)).collect();
                assert_eq!(next_special(&v, 0), v.len());
            }
        }
        // Bytes above 0x7f (UTF-8) are never special.
        assert_eq!(next_special("é→🎉ab".as_bytes(), 0), "é→🎉ab".len());
    }

    #[test]
    fn split_characters_are_carried_over() {
        let mut s = Utf8Stream::default();
        let text = "héllo → wörld 🎉".as_bytes();
        let mut out = String::new();
        for chunk in text.chunks(1) {
            out.push_str(&s.push(chunk));
        }
        assert_eq!(out, "héllo → wörld 🎉");
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(&[b'a', 0xFF, b'b']), "a\u{FFFD}b");
        assert_eq!(s.push(&[0xE2, 0x82]), "");
        assert_eq!(s.push(&[0xAC]), "€");
    }

    #[test]
    fn secrets_typed_at_a_prompt_are_not_recorded() {
        let mut g = SecretGuard::default();
        g.saw_output("$ ");
        assert_eq!(g.recordable("sudo -i\r"), "sudo -i\r");
        g.saw_output("sudo -i\r\n[sudo] password for alice: ");
        assert_eq!(g.recordable("hunter2"), "");
        assert_eq!(g.recordable("x\r"), "\r");
        g.saw_output("\r\n# ");
        assert_eq!(g.recordable("id\r"), "id\r");
        for prompt in ["Password:", "Enter passphrase for key '/root/.ssh/id':", "PIN: ", "Verification code / OTP:"] {
            let mut g = SecretGuard::default();
            g.saw_output(prompt);
            assert_eq!(g.recordable("s3cret"), "", "{prompt}");
        }
        let mut g = SecretGuard::default();
        g.saw_output("Pass");
        g.saw_output("word: ");
        assert_eq!(g.recordable("split-prompt"), "", "a prompt split across outputs");
        let mut g = SecretGuard::default();
        g.saw_output("password is stored in vault\r\n$ ");
        assert_eq!(g.recordable("ls\r"), "ls\r", "the word alone is not a prompt");
    }
}
