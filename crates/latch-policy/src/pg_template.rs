//! Statement templates of `[credentials.postgres]`, in the shape of Vault's
//! database engine: SQL with `{{name}}`, `{{password}}` and `{{expiration}}`
//! placeholders that latch fills when it creates or drops a role.
//!
//! Values are never pasted as raw text. Each placeholder is replaced by a
//! value quoted for where it stands:
//! - `"{{name}}"` or a bare `{{name}}`: a quoted identifier (`"latch_alice_x"`);
//! - `'{{name}}'`, `'{{password}}'`, `'{{expiration}}'`, or a bare
//!   `{{password}}` / `{{expiration}}`: a string literal (`'…'`).
//!
//! So Vault-style templates (`CREATE ROLE "{{name}}" … PASSWORD '{{password}}'`)
//! and bare ones (`CREATE ROLE {{name}} … PASSWORD {{password}}`) both work,
//! and a placeholder inside a longer string or identifier — where quoting
//! cannot be right — is refused when the role file is validated. latch also
//! generates the values from a small alphabet (`[a-z0-9_]` names,
//! alphanumeric passwords), so quoting is a second line of defence.

use std::fmt;

use serde::{Serialize, Serializer};

/// A value a template can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder {
    /// The PostgreSQL role latch creates (`{{name}}`, or Vault's `{{username}}`).
    Name,
    Password,
    /// When the role stops being valid (`VALID UNTIL`), as an ISO 8601 UTC time.
    Expiration,
}

impl Placeholder {
    fn parse(s: &str) -> Option<Placeholder> {
        match s {
            "name" | "username" => Some(Placeholder::Name),
            "password" => Some(Placeholder::Password),
            "expiration" => Some(Placeholder::Expiration),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Placeholder::Name => "name",
            Placeholder::Password => "password",
            Placeholder::Expiration => "expiration",
        }
    }
}

/// How a value is written into the SQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quoting {
    Identifier,
    Literal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Value(Placeholder, Quoting),
}

/// A validated statement template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

/// The values of one credential.
#[derive(Clone, Copy)]
pub struct Values<'a> {
    pub name: &'a str,
    pub password: &'a str,
    pub expiration: &'a str,
}

impl fmt::Debug for Values<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password, even in a debug dump.
        f.debug_struct("Values").field("name", &self.name).field("expiration", &self.expiration).finish()
    }
}

/// `"…"` with inner double quotes doubled: a PostgreSQL identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A PostgreSQL string literal holding exactly `s`, whatever
/// `standard_conforming_strings` says: with a backslash in it, an escape
/// string (`E'…'`) with backslashes doubled; either way quotes doubled.
pub fn quote_literal(s: &str) -> String {
    let body = s.replace('\'', "''");
    if s.contains('\\') { format!("E'{}'", body.replace('\\', "\\\\")) } else { format!("'{body}'") }
}

impl Template {
    /// Parses and checks one statement; the error says what to change.
    pub fn parse(src: &str) -> Result<Template, String> {
        if src.trim().is_empty() {
            return Err("the statement is empty".into());
        }
        let b = src.as_bytes();
        let mut pieces = Vec::new();
        let mut text = String::new();
        // Which quoted token we are inside, to refuse placeholders within one.
        let mut inside: Option<u8> = None;
        let mut i = 0;
        while i < b.len() {
            if b[i..].starts_with(b"{{") {
                let close =
                    src[i + 2..].find("}}").ok_or_else(|| "a \"{{\" is never closed by \"}}\"".to_string())? + i + 2;
                let word = src[i + 2..close].trim();
                let p = Placeholder::parse(word).ok_or_else(|| {
                    format!(
                        "unknown placeholder {{{{{word}}}}}: use {{{{name}}}}, {{{{password}}}} or {{{{expiration}}}}"
                    )
                })?;
                let end = close + 2;
                let (before, after) = (text.as_bytes().last().copied(), b.get(end).copied());
                let quoting = match (inside, before, after) {
                    (Some(q), Some(bq), Some(aq)) if bq == q && aq == q => {
                        // Exactly `'{{x}}'` or `"{{x}}"`: the quotes are ours to write.
                        text.pop();
                        inside = None;
                        i = end + 1;
                        if q == b'"' { Quoting::Identifier } else { Quoting::Literal }
                    }
                    (Some(_), _, _) => {
                        return Err(format!(
                            "{{{{{}}}}} is inside a longer quoted string or identifier: latch quotes values \
                             itself, so write it alone, as '{{{{{0}}}}}' or \"{{{{{0}}}}}\" or bare",
                            p.label()
                        ));
                    }
                    (None, _, _) => {
                        i = end;
                        if p == Placeholder::Name { Quoting::Identifier } else { Quoting::Literal }
                    }
                };
                if quoting == Quoting::Identifier && p != Placeholder::Name {
                    return Err(format!(
                        "{{{{{}}}}} in double quotes would be an identifier: write '{{{{{0}}}}}' (a string)",
                        p.label()
                    ));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Value(p, quoting));
                continue;
            }
            let c = b[i];
            match (inside, c) {
                (None, b'\'' | b'"') => inside = Some(c),
                (Some(q), c) if c == q => inside = None,
                _ => {}
            }
            // Copy one whole UTF-8 character.
            let len = src[i..].chars().next().map_or(1, char::len_utf8);
            text.push_str(&src[i..i + len]);
            i += len;
        }
        if inside.is_some() {
            return Err("a quoted string or identifier is never closed".into());
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template { source: src.to_string(), pieces })
    }

    /// The statement as written in the role file.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn uses(&self, p: Placeholder) -> bool {
        self.pieces.iter().any(|x| matches!(x, Piece::Value(q, _) if *q == p))
    }

    /// The SQL to run, each value quoted for its place.
    pub fn render(&self, v: &Values<'_>) -> String {
        let mut out = String::with_capacity(self.source.len() + 64);
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Value(p, q) => {
                    let raw = match p {
                        Placeholder::Name => v.name,
                        Placeholder::Password => v.password,
                        Placeholder::Expiration => v.expiration,
                    };
                    out.push_str(&match q {
                        Quoting::Identifier => quote_ident(raw),
                        Quoting::Literal => quote_literal(raw),
                    });
                }
            }
        }
        out
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// Dropping a role when no `revocation_statements` are given: end its
/// sessions, hand what it owns to the connection's administrator (who runs
/// these statements: `CURRENT_USER`), drop what remains (privileges), then
/// the role. The `GRANT` comes first because terminating the role's sessions
/// and `REASSIGN`/`DROP OWNED` need membership in it, which an administrator
/// with only `CREATEROLE` lacks until it takes it (which it may: it created
/// the role).
pub const DEFAULT_REVOCATION: &[&str] = &[
    "GRANT {{name}} TO CURRENT_USER",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}' AND pid <> pg_backend_pid()",
    "REASSIGN OWNED BY {{name}} TO CURRENT_USER",
    "DROP OWNED BY {{name}}",
    "DROP ROLE IF EXISTS {{name}}",
];

#[cfg(test)]
mod tests {
    use super::*;

    const V: Values<'static> =
        Values { name: "latch_alice_ab12", password: "Secr3tPassw0rd", expiration: "2026-01-01T00:00:00.000Z" };

    #[test]
    fn vault_style_templates_render_with_our_quoting() {
        let t = Template::parse(
            "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
        )
        .unwrap();
        assert_eq!(
            t.render(&V),
            "CREATE ROLE \"latch_alice_ab12\" WITH LOGIN PASSWORD 'Secr3tPassw0rd' VALID UNTIL '2026-01-01T00:00:00.000Z';"
        );
        assert!(t.uses(Placeholder::Name) && t.uses(Placeholder::Password) && t.uses(Placeholder::Expiration));
    }

    #[test]
    fn bare_placeholders_are_quoted_for_their_kind() {
        let t = Template::parse("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {{name}}; -- {{ username }}").unwrap();
        assert_eq!(
            t.render(&V),
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"latch_alice_ab12\"; -- \"latch_alice_ab12\""
        );
        let t = Template::parse("ALTER ROLE {{name}} PASSWORD {{password}} VALID UNTIL {{expiration}}").unwrap();
        assert_eq!(
            t.render(&V),
            "ALTER ROLE \"latch_alice_ab12\" PASSWORD 'Secr3tPassw0rd' VALID UNTIL '2026-01-01T00:00:00.000Z'"
        );
        let t = Template::parse("SELECT 1 FROM pg_roles WHERE rolname = '{{name}}'").unwrap();
        assert_eq!(t.render(&V), "SELECT 1 FROM pg_roles WHERE rolname = 'latch_alice_ab12'");
    }

    #[test]
    fn hostile_values_cannot_leave_their_quotes() {
        let evil = Values { name: "x\"; DROP TABLE t; --", password: "a'; DROP TABLE t; --\\", expiration: "e" };
        let t = Template::parse("CREATE ROLE {{name}} PASSWORD '{{password}}'").unwrap();
        assert_eq!(t.render(&evil), "CREATE ROLE \"x\"\"; DROP TABLE t; --\" PASSWORD E'a''; DROP TABLE t; --\\\\'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn refuses_what_cannot_be_quoted_right() {
        for (src, needle) in [
            ("CREATE ROLE {{nme}}", "unknown placeholder {{nme}}"),
            ("CREATE ROLE {{name", "never closed"),
            ("COMMENT ON ROLE {{name}} IS 'for {{name}}'", "inside a longer quoted string"),
            ("CREATE ROLE \"latch_{{name}}\"", "inside a longer quoted string"),
            ("ALTER ROLE {{name}} PASSWORD \"{{password}}\"", "would be an identifier"),
            ("SELECT 'unclosed", "never closed"),
            ("   ", "empty"),
        ] {
            let e = Template::parse(src).unwrap_err();
            assert!(e.contains(needle), "{src}: {e}");
        }
        // quotes that do not hold a placeholder are plain SQL
        assert!(Template::parse("SELECT 'a' || \"b\" FROM t WHERE x = 'it''s'").is_ok());
    }

    #[test]
    fn default_revocation_parses() {
        for s in DEFAULT_REVOCATION {
            let t = Template::parse(s).unwrap();
            assert!(t.uses(Placeholder::Name), "{s}");
        }
        let t = Template::parse(DEFAULT_REVOCATION[1]).unwrap();
        assert!(t.render(&V).contains("usename = 'latch_alice_ab12'"));
        assert!(format!("{V:?}").contains("latch_alice_ab12") && !format!("{V:?}").contains("Secr3t"));
    }
}
