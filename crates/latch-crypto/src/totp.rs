//! TOTP (RFC 6238): HMAC-SHA1, 6 digits, 30-second steps — what every
//! authenticator app speaks.
//!
//! Replay protection lives with the caller: [`verify`] returns the matched
//! time step, and the store accepts it only if it is later than the last step
//! this user has used (a compare-and-set), so each code works once.

use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::{CryptoError, random_bytes};

pub const STEP_SECS: i64 = 30;
pub const DIGITS: u32 = 6;
/// Steps either side of now that are accepted, for clock skew.
pub const SKEW_STEPS: i64 = 1;

/// A fresh 160-bit secret, base32 (no padding) as authenticator apps expect.
pub fn generate_secret() -> Result<String, CryptoError> {
    Ok(data_encoding::BASE32_NOPAD.encode(&random_bytes(20)?))
}

pub fn step_at(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS)
}

/// The code for `step`; `None` if the secret is not valid base32.
pub fn code_at(secret_b32: &str, step: i64) -> Option<String> {
    let key = data_encoding::BASE32_NOPAD.decode(secret_b32.as_bytes()).ok()?;
    let mut mac = Hmac::<Sha1>::new_from_slice(&key).ok()?;
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = usize::from(h[h.len() - 1] & 0x0f);
    let bin = (u32::from(h[off] & 0x7f) << 24)
        | (u32::from(h[off + 1]) << 16)
        | (u32::from(h[off + 2]) << 8)
        | u32::from(h[off + 3]);
    Some(format!("{:0width$}", bin % 10u32.pow(DIGITS), width = DIGITS as usize))
}

/// The step whose code matches `code` within ±[`SKEW_STEPS`] of `unix_secs`,
/// and later than `last_used_step`. Comparison is constant-time.
pub fn verify(secret_b32: &str, code: &str, unix_secs: i64, last_used_step: Option<i64>) -> Option<i64> {
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_at(unix_secs);
    let mut found = None;
    for step in (now - SKEW_STEPS)..=(now + SKEW_STEPS) {
        let expected = code_at(secret_b32, step)?;
        let fresh = last_used_step.is_none_or(|last| step > last);
        if crate::ct_eq(expected.as_bytes(), code.as_bytes()) && fresh && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// The `otpauth://` URI that authenticator apps import (Key Uri Format).
pub fn otpauth_uri(issuer: &str, account: &str, secret_b32: &str) -> String {
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret_b32}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        issuer = pct(issuer),
        account = pct(account),
    )
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows; the seed is ASCII "12345678901234567890"
    /// and the RFC prints 8 digits, of which ours are the last 6.
    #[test]
    fn rfc6238_vectors() {
        let secret = data_encoding::BASE32_NOPAD.encode(b"12345678901234567890");
        for (t, code8) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_at(&secret, step_at(t)).unwrap(), code8[2..], "t={t}");
        }
    }

    #[test]
    fn skew_window_and_replay() {
        let secret = generate_secret().unwrap();
        let t = 1_800_000_000;
        let now = step_at(t);
        let prev = code_at(&secret, now - 1).unwrap();
        let old = code_at(&secret, now - 2).unwrap();
        let next = code_at(&secret, now + 1).unwrap();
        assert_eq!(verify(&secret, &prev, t, None), Some(now - 1));
        assert_eq!(verify(&secret, &next, t, None), Some(now + 1));
        if old != prev && old != next && old != code_at(&secret, now).unwrap() {
            assert_eq!(verify(&secret, &old, t, None), None);
        }
        assert_eq!(verify(&secret, &prev, t, Some(now - 1)), None, "a used step is refused");
        assert_eq!(verify(&secret, "12345", t, None), None);
        assert_eq!(verify(&secret, "abcdef", t, None), None);
    }

    #[test]
    fn uri_shape() {
        let u = otpauth_uri("latch", "alice@example.com", "JBSWY3DPEHPK3PXP");
        assert_eq!(
            u,
            "otpauth://totp/latch:alice%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=latch&algorithm=SHA1&digits=6&period=30"
        );
    }
}
