//! What Vault clients send latch: the bodies of `sys/init`, `sys/unseal`,
//! `sys/mounts`, token creation and lookups, KV writes and version lists,
//! metadata updates, unseal shares, secret paths, Vault durations and JSON
//! merge patches. Any bytes give a value or an error, never a panic; a merge
//! patch applied twice changes nothing more (RFC 7386 is idempotent).
#![no_main]
use latch_server::barrier::decode_share;
use latch_server::extract::parse_object;
use latch_server::routes::vault::{kv, parse_vault_duration, sys, token};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let _ = parse_object::<sys::InitBody>(data);
    let _ = parse_object::<sys::UnsealBody>(data);
    let _ = parse_object::<sys::MountBody>(data);
    let _ = parse_object::<token::CreateBody>(data);
    let _ = parse_object::<token::TokenBody>(data);
    let _ = parse_object::<kv::WriteBody>(data);
    let _ = kv::versions_of(data);
    if let Ok(m) = parse_object::<Map<String, Value>>(data) {
        let _ = kv::meta_update(&m, None);
        let _ = sys::mount_update(&m);
        for v in m.values() {
            let _ = parse_vault_duration("d", v);
        }
        let patch = Value::Object(m);
        let mut target = serde_json::json!({"a": "b", "c": {"d": 1}});
        kv::merge_patch(&mut target, &patch);
        let once = target.clone();
        kv::merge_patch(&mut target, &patch);
        assert_eq!(once, target, "merge patch is idempotent");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode_share(text);
        if let Ok(p) = kv::secret_path(text) {
            assert!(!p.is_empty() && !p.ends_with('/') && !p.split('/').any(|s| s == ".."));
        }
    }
});
