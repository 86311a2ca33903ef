//! A policy bundle: one role file and one Cedar file, split at the first NUL.
//! Validation must return errors with locations, never panic.
#![no_main]
use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (role, cedar) = s.split_once('\0').unwrap_or((s, ""));
    let mut files = BTreeMap::new();
    files.insert("roles/fuzz.toml".to_string(), role.to_string());
    files.insert("policies/fuzz.cedar".to_string(), cedar.to_string());
    if let Ok(b) = latch_policy::Bundle::from_files(&files) {
        let _ = b.policy_ids();
        for r in b.roles() {
            let _ = r.name.len();
            if let Some(s) = &r.secrets {
                let _ = s.covers("secret", "prod/db/main");
            }
        }
    }
});
