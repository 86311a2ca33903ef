//! Certificates the gateway passes on from users for the server to check
//! (`POST /v1/gateway/authorize` → `latch_ssh::verify_user_cert`): any text
//! is refused with an error or verified, never a panic; whatever verifies was
//! signed by the CA and is valid at that moment.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// 2027-01-15, inside the validity of the seed certificates (2026–2031).
const NOW: u64 = 1_800_000_000;

/// The CA whose Ed25519 seed is 32 bytes of 9: the seeds in
/// `seeds/ssh_certificate/` are signed by it (its public key: `ca_pub`).
fn ca() -> &'static latch_ssh::UserCa {
    static CA: OnceLock<latch_ssh::UserCa> = OnceLock::new();
    CA.get_or_init(|| latch_ssh::UserCa::from_seed(&[9u8; 32]))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = latch_ssh::verify_user_cert(ca().public_key(), text, NOW) {
        assert!(c.valid_after <= NOW && NOW <= c.valid_before, "{c:?}");
        assert!(c.fingerprint.starts_with("SHA256:"), "{c:?}");
    }
});
