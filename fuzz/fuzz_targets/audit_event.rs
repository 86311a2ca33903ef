//! Audit event details as read back from a (possibly tampered) database:
//! canonical encoding and chain hashing take any JSON without panicking, and
//! canonical encoding is stable.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let c = latch_audit::canonical::canonical_json(&v);
    let back: serde_json::Value = serde_json::from_str(&c).expect("canonical JSON parses");
    assert_eq!(latch_audit::canonical::canonical_json(&back), c);
    let ev = latch_audit::AuditDraft::new("user:fuzz", "fuzz.event", "fuzz:1").details(v).seal(
        1,
        latch_core::Timestamp(0),
        latch_audit::GENESIS_HASH,
    );
    let _ = latch_audit::chain_hash(latch_audit::GENESIS_HASH, &ev);
});
