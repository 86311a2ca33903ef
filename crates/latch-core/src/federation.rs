//! Federation: a service principal trusts an external OpenID Connect issuer
//! (a CI system, a cloud's workload identity) to vouch for it, so a pipeline
//! can trade the short-lived token its platform gives it for a latch session
//! instead of holding a static secret.
//!
//! A binding names the issuer, the audience the token must carry, and claim
//! conditions that must all hold (e.g. `repository` equals `org/app` and
//! `ref` equals `refs/heads/main`). The condition language is small on
//! purpose: exact string equality, or a glob whose only wildcard is `*`
//! (any run of characters other than `/`). Everything is validated when the
//! binding is made, with an error that says what to fix.

use serde::{Deserialize, Serialize};

/// The most conditions one binding may have.
pub const MAX_CONDITIONS: usize = 16;
/// The longest value (or glob) a condition may compare against.
pub const MAX_VALUE_LEN: usize = 256;
/// The longest issuer URL or audience.
pub const MAX_URL_LEN: usize = 512;

/// Claims checked by dedicated rules (issuer, audience, lifetime, replay),
/// never by conditions.
pub const RESERVED_CLAIMS: [&str; 6] = ["iss", "aud", "exp", "nbf", "iat", "jti"];

/// One claim condition: exactly one of `equals` and `glob`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// A top-level claim of the token, e.g. `repository`, `ref`, `sub`.
    pub claim: String,
    /// The claim must be this string, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// The claim must match this pattern: `*` is any run of characters other
    /// than `/`; every other character stands for itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
}

/// A configuration mistake, in words that say what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FederationError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, FederationError> {
    Err(FederationError(msg.into()))
}

/// What a token says for a claim, as conditions see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim<'a> {
    Missing,
    /// Present, but a number, object, array, boolean or null.
    NotString,
    Str(&'a str),
}

/// Why a condition does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmet {
    pub claim: String,
    /// What the token has, for the audit log and the error: a quoted value,
    /// "missing" or "not a string".
    pub found: String,
    /// What the condition wants, e.g. `= "refs/heads/main"` or `~ "v*"`.
    pub wanted: String,
}

impl std::fmt::Display for Unmet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "claim {} is {}", self.claim, self.found)
    }
}

fn quoted(s: &str) -> String {
    let short: String = s.chars().take(MAX_VALUE_LEN).collect();
    if short.len() < s.len() { format!("{short:?}…") } else { format!("{short:?}") }
}

impl Condition {
    pub fn equals(claim: &str, value: &str) -> Self {
        Condition { claim: claim.into(), equals: Some(value.into()), glob: None }
    }

    pub fn glob(claim: &str, pattern: &str) -> Self {
        Condition { claim: claim.into(), equals: None, glob: Some(pattern.into()) }
    }

    /// The condition as people write it: `ref=refs/heads/main`, `ref~refs/tags/v*`.
    pub fn describe(&self) -> String {
        match (&self.equals, &self.glob) {
            (Some(v), _) => format!("{} = {}", self.claim, quoted(v)),
            (_, Some(g)) => format!("{} ~ {}", self.claim, quoted(g)),
            _ => format!("{} (empty)", self.claim),
        }
    }

    /// Whether `value` (the token's claim) satisfies this condition.
    pub fn check(&self, value: Claim<'_>) -> Result<(), Unmet> {
        let holds = match (value, &self.equals, &self.glob) {
            (Claim::Str(v), Some(want), _) => v == want,
            (Claim::Str(v), None, Some(pattern)) => glob_match(pattern, v),
            _ => false,
        };
        if holds {
            return Ok(());
        }
        let found = match value {
            Claim::Missing => "missing".to_string(),
            Claim::NotString => "not a string".to_string(),
            Claim::Str(v) => quoted(v),
        };
        let wanted = self.describe().split_off(self.claim.len() + 1);
        Err(Unmet { claim: self.claim.clone(), found, wanted })
    }
}

/// Checks every condition against `claims`; the first that fails, if any.
pub fn evaluate<'a>(conditions: &[Condition], claims: impl Fn(&str) -> Claim<'a>) -> Result<(), Unmet> {
    conditions.iter().try_for_each(|c| c.check(claims(&c.claim)))
}

/// `*` matches any run (possibly empty) of characters other than `/`.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    // row[j]: whether p[..i] matches v[..j], for the current i.
    let mut row = vec![false; v.len() + 1];
    row[0] = true;
    for &pc in &p {
        let mut next = vec![false; v.len() + 1];
        if pc == '*' {
            next[0] = row[0];
            for j in 1..=v.len() {
                next[j] = row[j] || (next[j - 1] && v[j - 1] != '/');
            }
        } else {
            for j in 1..=v.len() {
                next[j] = row[j - 1] && v[j - 1] == pc;
            }
        }
        row = next;
    }
    row[v.len()]
}

fn check_text(what: &str, s: &str, max: usize) -> Result<(), FederationError> {
    if s.is_empty() {
        return err(format!("{what} is empty"));
    }
    if s.chars().count() > max {
        return err(format!("{what} is longer than {max} characters"));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return err(format!("{what} contains the control character U+{:04X}", u32::from(c)));
    }
    Ok(())
}

/// A claim name: letters, digits, `_` and `-`, at most 64, and not one of
/// the [`RESERVED_CLAIMS`].
pub fn validate_claim_name(name: &str) -> Result<(), FederationError> {
    if name.is_empty() {
        return err("a claim name is empty");
    }
    if name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return err(format!(
            "claim name {:?} is not valid: use a top-level claim name of at most 64 letters, digits, _ and -",
            name.chars().take(80).collect::<String>()
        ));
    }
    if RESERVED_CLAIMS.contains(&name) {
        let by = match name {
            "iss" => "the issuer of the binding",
            "aud" => "the audience of the binding",
            "jti" => "replay protection",
            _ => "the token's lifetime checks",
        };
        return err(format!("claim {name} cannot be a condition: it is checked by {by}"));
    }
    Ok(())
}

/// Validates a binding's conditions: at least one, at most
/// [`MAX_CONDITIONS`], each well formed, at most one per claim.
///
/// At least one, because a CI issuer is shared by everyone who uses the
/// platform, and any of them can ask it for a token with any audience: the
/// issuer and audience alone would let every repository in the world in.
pub fn validate_conditions(conditions: &[Condition]) -> Result<(), FederationError> {
    if conditions.is_empty() {
        return err("at least one claim condition is required: the issuer is shared by everyone who uses it (every \
             repository on a CI platform), and any of them can ask it for a token with your audience; bind the \
             claim that names your repository or project (e.g. --claim repository=org/app, or --claim sub=…)");
    }
    if conditions.len() > MAX_CONDITIONS {
        return err(format!("{} conditions: at most {MAX_CONDITIONS} are allowed", conditions.len()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in conditions.iter().enumerate() {
        let at = |msg: String| FederationError(format!("condition {} ({}): {msg}", i + 1, c.claim));
        validate_claim_name(&c.claim).map_err(|e| FederationError(format!("condition {}: {}", i + 1, e.0)))?;
        if !seen.insert(c.claim.as_str()) {
            return Err(at("the claim has another condition: give each claim one condition".into()));
        }
        match (&c.equals, &c.glob) {
            (Some(v), None) => check_text("the value", v, MAX_VALUE_LEN).map_err(|e| at(e.0))?,
            (None, Some(g)) => {
                check_text("the glob", g, MAX_VALUE_LEN).map_err(|e| at(e.0))?;
                if !g.contains('*') {
                    return Err(at(format!("glob {g:?} has no *: compare with equals instead")));
                }
                if g.contains("**") {
                    return Err(at(format!(
                        "glob {g:?} has **: * already matches any run of characters other than /, and nothing crosses /"
                    )));
                }
                if g.chars().all(|ch| ch == '*' || ch == '/') {
                    return Err(at(format!(
                        "glob {g:?} has no fixed text, so it accepts nearly anything: leave the claim out, or say what it must be"
                    )));
                }
            }
            (Some(_), Some(_)) => return Err(at("give either equals or glob, not both".into())),
            (None, None) => return Err(at("give equals (exact value) or glob (pattern with *)".into())),
        }
    }
    Ok(())
}

/// The parts of an issuer URL that matter to trust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlParts {
    pub https: bool,
    pub host: String,
    pub port: Option<u16>,
    pub path: String,
}

impl UrlParts {
    /// 127.0.0.0/8, ::1 or `localhost`.
    pub fn is_loopback(&self) -> bool {
        let h = self.host.as_str();
        h == "localhost"
            || h == "[::1]"
            || h.strip_prefix("127.").is_some_and(|rest| {
                let parts: Vec<&str> = rest.split('.').collect();
                parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u8>().is_ok())
            })
    }
}

/// Parses an absolute `http(s)://host[:port][/path]` URL with no user
/// information, query or fragment.
pub fn parse_url(what: &str, url: &str) -> Result<UrlParts, FederationError> {
    check_text(what, url, MAX_URL_LEN)?;
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return err(format!("{what} {url:?} must start with https://"));
    };
    if url.contains('?') || url.contains('#') {
        return err(format!("{what} {url:?} must not have a query or fragment"));
    }
    if url.chars().any(char::is_whitespace) {
        return err(format!("{what} {url:?} contains whitespace"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return err(format!("{what} {url:?} must not carry user information"));
    }
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => (&authority[..=end], authority[end + 1..].strip_prefix(':')),
            None => return err(format!("{what} {url:?} has an unclosed [ in its host")),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && (host.starts_with('[') || host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
    if !host_ok {
        return err(format!("{what} {url:?} has no valid host name"));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return err(format!("{what} {url:?} has an invalid port")),
        },
    };
    Ok(UrlParts { https, host: host.to_ascii_lowercase(), port, path: path.to_string() })
}

/// An issuer URL latch may trust: https, or plain http only for a loopback
/// host (an issuer on this machine, as in tests). Compared with the token's
/// `iss` exactly, as OpenID Connect requires.
pub fn validate_issuer(issuer: &str) -> Result<UrlParts, FederationError> {
    let parts = parse_url("issuer", issuer)?;
    if !parts.https && !parts.is_loopback() {
        return err(format!(
            "issuer {issuer:?} must use https: plain http is allowed only for a loopback issuer (127.0.0.1, ::1, localhost)"
        ));
    }
    Ok(parts)
}

/// The audience a token must carry for a binding (any non-empty text, e.g.
/// the latch URL or a name agreed with the CI system).
pub fn validate_audience(audience: &str) -> Result<(), FederationError> {
    check_text("audience", audience, MAX_URL_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_path_segments() {
        assert!(glob_match("refs/heads/release/*", "refs/heads/release/1.2"));
        assert!(glob_match("refs/heads/release/*", "refs/heads/release/"));
        assert!(!glob_match("refs/heads/release/*", "refs/heads/release/1.2/hotfix"));
        assert!(!glob_match("refs/heads/release/*", "refs/heads/main"));
        assert!(glob_match("refs/tags/v*", "refs/tags/v1.0.0"));
        assert!(glob_match("repo:org/*:ref:refs/heads/main", "repo:org/app:ref:refs/heads/main"));
        assert!(!glob_match("repo:org/*:ref:refs/heads/main", "repo:org/app/x:ref:refs/heads/main"));
        assert!(glob_match("*@example.com", "ci@example.com"));
        assert!(!glob_match("*@example.com", "ci@example.com.evil"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(glob_match("a*b*c", "abc"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(glob_match("a*/b*c", "ax/byyc"));
        assert!(!glob_match("a*/b*c", "a/x/bc"));
        assert!(glob_match("ü*ß", "üxyzß"));
        assert!(!glob_match("exact", "exact2"));
    }

    #[test]
    fn conditions_check_exact_strings_only() {
        let conds = vec![Condition::equals("repository", "org/app"), Condition::glob("ref", "refs/heads/*")];
        let claims =
            |repo: Claim<'static>, r: Claim<'static>| move |name: &str| if name == "repository" { repo } else { r };
        assert_eq!(evaluate(&conds, claims(Claim::Str("org/app"), Claim::Str("refs/heads/main"))), Ok(()));
        let e = evaluate(&conds, claims(Claim::Str("org/App"), Claim::Str("refs/heads/main"))).unwrap_err();
        assert_eq!(
            (e.claim.as_str(), e.found.as_str(), e.wanted.as_str()),
            ("repository", "\"org/App\"", "= \"org/app\"")
        );
        assert_eq!(e.to_string(), "claim repository is \"org/App\"");
        let e = evaluate(&conds, claims(Claim::Str("org/app"), Claim::Str("refs/tags/v1"))).unwrap_err();
        assert_eq!((e.claim.as_str(), e.wanted.as_str()), ("ref", "~ \"refs/heads/*\""));
        let e = evaluate(&conds, claims(Claim::Missing, Claim::Str("refs/heads/main"))).unwrap_err();
        assert_eq!(e.found, "missing");
        let e = evaluate(&conds, claims(Claim::NotString, Claim::Str("refs/heads/main"))).unwrap_err();
        assert_eq!(e.found, "not a string");
        // Prefixes, case and trailing text do not pass for equality.
        for v in ["org/app ", "org/ap", "org/app\n", "ORG/APP"] {
            assert!(Condition::equals("repository", "org/app").check(Claim::Str(v)).is_err(), "{v:?}");
        }
        assert_eq!(evaluate(&[], |_| Claim::Missing), Ok(()));
    }

    #[test]
    fn conditions_are_validated_with_precise_errors() {
        let bad = |conds: Vec<Condition>, needle: &str| {
            let e = validate_conditions(&conds).unwrap_err().0;
            assert!(e.contains(needle), "{e:?} lacks {needle:?}");
        };
        validate_conditions(&[Condition::equals("repository", "org/app"), Condition::glob("ref", "refs/heads/*")])
            .unwrap();
        bad(vec![Condition::equals("aud", "x")], "checked by the audience");
        bad(vec![Condition::equals("iss", "x")], "checked by the issuer");
        bad(vec![Condition::equals("exp", "x")], "lifetime");
        bad(vec![Condition::equals("jti", "x")], "replay");
        bad(vec![Condition::equals("repo.name", "x")], "top-level claim name");
        bad(vec![Condition::equals("", "x")], "claim name is empty");
        bad(vec![Condition::equals("ref", "")], "condition 1 (ref): the value is empty");
        bad(vec![Condition::equals("ref", "a\u{7}")], "control character U+0007");
        bad(vec![Condition::equals("ref", &"a".repeat(257))], "longer than 256");
        bad(vec![Condition::glob("ref", "refs/heads/main")], "has no *: compare with equals");
        bad(vec![Condition::glob("ref", "refs/**")], "has **");
        bad(vec![Condition::glob("ref", "*")], "no fixed text");
        bad(vec![Condition::glob("ref", "*/*")], "no fixed text");
        bad(vec![Condition { claim: "ref".into(), equals: Some("a".into()), glob: Some("a*".into()) }], "not both");
        bad(vec![Condition { claim: "ref".into(), equals: None, glob: None }], "give equals");
        bad(
            vec![Condition::equals("ref", "a"), Condition::glob("ref", "b*")],
            "condition 2 (ref): the claim has another",
        );
        bad((0..17).map(|i| Condition::equals(&format!("c{i}"), "x")).collect(), "at most 16");
        bad(vec![], "at least one claim condition is required");
    }

    #[test]
    fn issuers_are_https_or_loopback_http() {
        validate_issuer("https://token.actions.githubusercontent.com").unwrap();
        validate_issuer("https://gitlab.example.com/").unwrap();
        validate_issuer("https://login.example.com/tenant/v2.0").unwrap();
        for ok in ["http://127.0.0.1:8080", "http://localhost:9000/x", "http://[::1]:80", "http://127.1.2.3"] {
            assert!(validate_issuer(ok).unwrap().is_loopback(), "{ok}");
        }
        let bad = |url: &str, needle: &str| {
            let e = validate_issuer(url).unwrap_err().0;
            assert!(e.contains(needle), "{url}: {e:?} lacks {needle:?}");
        };
        bad("http://ci.example.com", "must use https");
        bad("http://127.0.0.1.evil.com", "must use https");
        bad("http://10.0.0.1", "must use https");
        bad("ftp://x", "must start with https://");
        bad("token.actions.githubusercontent.com", "must start with https://");
        bad("https://ci.example.com/?a=b", "query or fragment");
        bad("https://user@ci.example.com", "user information");
        bad("https://", "no valid host");
        bad("https://ci.example.com:99999", "invalid port");
        bad("https://ci example.com", "whitespace");
        bad("", "issuer is empty");
        validate_audience("https://latch.example.com").unwrap();
        assert!(validate_audience("").is_err());
    }
}
