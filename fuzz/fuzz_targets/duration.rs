//! Durations as users type them (`30m`, `1h30m`): any text gets a value or
//! an error, never a panic or an overflow.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(d) = latch_core::parse_duration(s) {
            // What we print, we must read back.
            let again = latch_core::parse_duration(&latch_core::duration::format_duration(d));
            assert_eq!(again.ok(), Some(d), "{s:?}");
        }
    }
});
