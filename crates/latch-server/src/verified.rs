//! Tokens whose signature has verified, remembered by their exact bytes.
//!
//! An Ed25519 verification is the costliest step of introspection, and
//! resource servers present the same token on every call. A signature over
//! given bytes under a given key never changes its verdict, so the verdict
//! can be kept; everything that *can* change is still checked on every
//! call by the caller: the key must still be published (a pruned key drops
//! its tokens), and expiry, revocation and the grant's state come from the
//! clock and the store. Bounded: a full memo is emptied.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub struct VerifiedTokens {
    map: Mutex<HashMap<String, (String, Value)>>,
}

impl VerifiedTokens {
    /// The claims of `token` if it verified before under a key that
    /// `published` still accepts.
    pub fn get(&self, token: &str, published: impl Fn(&str) -> bool) -> Option<Value> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (kid, claims) = map.get(token)?;
        published(kid).then(|| claims.clone())
    }

    pub fn put(&self, token: &str, kid: String, claims: Value) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(token.to_string(), (kid, claims));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_memo_dies_with_its_key() {
        let v = VerifiedTokens::default();
        v.put("a.b.c", "k1".into(), json!({ "jti": "x" }));
        assert_eq!(v.get("a.b.c", |k| k == "k1"), Some(json!({ "jti": "x" })));
        assert_eq!(v.get("a.b.c", |_| false), None, "key no longer published");
        assert_eq!(v.get("a.b.x", |_| true), None, "other bytes, no memo");
    }
}
