//! Public keys sent for signing: parsed strictly, refused with an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = latch_ssh::parse_user_key(s);
    }
});
