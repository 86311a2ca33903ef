//! An external OpenID Connect issuer's keys and a token it signed, as token
//! exchange (`POST /v1/auth/exchange`) and OIDC sign-in read them: a JWKS
//! document and a compact JWS, split at the first NUL. The JWKS is parsed
//! (`jose::parse_jwks`: usable keys kept, malformed ones noted), the token is
//! parsed (`jose::parse`: algorithm allow-list, a kid, no crit) and checked
//! with every key: errors, never a panic, and a key is never used for an
//! algorithm other than its own.
#![no_main]
use latch_crypto::jose::{self, JoseError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (doc, token) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let keys = serde_json::from_slice::<serde_json::Value>(doc)
        .ok()
        .and_then(|v| jose::parse_jwks(&v).ok())
        .map(|(keys, _skipped)| keys)
        .unwrap_or_default();
    let Ok(token) = std::str::from_utf8(token) else { return };
    let Ok(jws) = jose::parse(token) else { return };
    assert!(!jws.kid.is_empty(), "a token without a kid was accepted");
    for k in &keys {
        match jws.verify(k) {
            Err(JoseError::KeyMismatch { .. }) => assert_ne!(k.alg, jws.alg),
            Ok(()) => assert_eq!(k.alg, jws.alg, "a key verified a token of another algorithm"),
            Err(_) => {}
        }
    }
});
