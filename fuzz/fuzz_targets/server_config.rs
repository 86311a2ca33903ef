//! `latch.toml`: validated fully, errors name the key and line, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = latch_server::config::Config::parse(std::path::Path::new("latch.toml"), s);
    }
});
