//! What token exchange trusts, as a federation is made and used: issuer URLs
//! and audiences (`federation::parse_url`, `validate_issuer`,
//! `validate_audience`), claim conditions (a JSON array, `validate_conditions`,
//! then `evaluate` against a token's claims) and the globs they match with
//! (`glob_match`). Input: text split at NULs into a URL or conditions, a
//! pattern, and a value or claims object. Errors, never a panic; what parses
//! is what it claims to be; a glob without `*` is plain equality.
#![no_main]
use latch_core::federation::{
    Claim, Condition, evaluate, glob_match, parse_url, validate_audience, validate_conditions, validate_issuer,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let mut parts = s.splitn(3, '\0');
    let (a, pattern, value) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));

    if let Ok(u) = parse_url("issuer", a) {
        assert!(a.starts_with("https://") || a.starts_with("http://"), "{a:?}");
        assert!(!u.host.is_empty() && u.host == u.host.to_ascii_lowercase(), "{u:?}");
        assert!(u.port != Some(0) && (u.path.is_empty() || u.path.starts_with('/')), "{u:?}");
        let authority = a.split_once("://").map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
        assert!(!a.contains(['?', '#']) && !authority.contains('@'), "{a:?}");
    }
    if let Ok(u) = validate_issuer(a) {
        assert!(u.https || u.is_loopback(), "{u:?}");
    }
    let _ = validate_audience(a);

    if let Ok(conditions) = serde_json::from_str::<Vec<Condition>>(a) {
        let _ = validate_conditions(&conditions);
        let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_str(value).unwrap_or_default();
        let _ = evaluate(&conditions, |name| match claims.get(name) {
            None => Claim::Missing,
            Some(serde_json::Value::String(v)) => Claim::Str(v),
            Some(_) => Claim::NotString,
        });
        for c in &conditions {
            let _ = c.describe();
        }
    }

    let m = glob_match(pattern, value);
    if !pattern.contains('*') {
        assert_eq!(m, pattern == value, "{pattern:?} {value:?}");
    } else if pattern.chars().all(|c| c == '*') {
        assert_eq!(m, !value.contains('/'), "{pattern:?} {value:?}");
    }
});
