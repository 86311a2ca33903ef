//! JSON request bodies, decoded into the structs the handlers take (unknown
//! fields refused): any bytes give a value or an error.
#![no_main]
use latch_server::routes::{auth, jit, ssh, tokens};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<auth::LoginRequest>(data);
    let _ = serde_json::from_slice::<auth::SpLoginRequest>(data);
    let _ = serde_json::from_slice::<jit::CreateRequest>(data);
    let _ = serde_json::from_slice::<ssh::SignSsh>(data);
    let _ = serde_json::from_slice::<tokens::IssueToken>(data);
    let _ = serde_json::from_slice::<tokens::IntrospectRequest>(data);
});
