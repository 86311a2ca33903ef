//! Names of users, groups and service principals.
//!
//! Names flow into audit events, policy entities, SSH key ids and log lines,
//! so they are restricted to a small, printable, injection-free alphabet and
//! a bounded length. Rejecting early keeps every later consumer simple.

use thiserror::Error;

pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{kind} name is empty: give a name of 1 to {MAX_NAME_LEN} characters")]
    Empty { kind: &'static str },
    #[error("{kind} name is {len} characters long: the maximum is {MAX_NAME_LEN}")]
    TooLong { kind: &'static str, len: usize },
    #[error(
        "{kind} name contains {what} at position {pos}: use letters, digits and . _ @ - only, starting with a letter or digit"
    )]
    BadChar { kind: &'static str, what: String, pos: usize },
}

/// Check a name; `kind` ("user", "group", …) makes the message precise.
pub fn validate_name(kind: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        return Err(NameError::TooLong { kind, len });
    }
    for (pos, ch) in name.chars().enumerate() {
        let ok = ch.is_ascii_alphanumeric() || (pos > 0 && matches!(ch, '.' | '_' | '@' | '-'));
        if !ok {
            let what = if ch.is_control() {
                format!("a control character (U+{:04X})", u32::from(ch))
            } else {
                format!("the character {ch:?}")
            };
            return Err(NameError::BadChar { kind, what, pos });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["alice", "bob.smith", "ci-deploy", "ops_team", "a", "alice@example.com", "A1"] {
            assert_eq!(validate_name("user", n), Ok(()), "{n}");
        }
    }

    #[test]
    fn rejects_hostile_names() {
        assert_eq!(validate_name("user", ""), Err(NameError::Empty { kind: "user" }));
        assert!(matches!(validate_name("user", &"a".repeat(10_000)), Err(NameError::TooLong { len: 10_000, .. })));
        for n in ["al\nice", "x'; DROP TABLE users;--", "-x", ".hidden", "a b", "ünï", "a\u{0}b", "a/b", "%s"] {
            assert!(matches!(validate_name("user", n), Err(NameError::BadChar { .. })), "{n:?}");
        }
        let msg = validate_name("group", "a\u{7}").unwrap_err().to_string();
        assert!(msg.contains("control character (U+0007)"), "{msg}");
    }
}
