//! Audit events and checkpoints.

use latch_core::Timestamp;
use latch_crypto::{SigningKey, VerifyingKey, hex, sha256};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{Encoder, canonical_json};

/// The chain's starting point: 32 zero bytes, hex.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            "denied" => Some(Outcome::Denied),
            _ => None,
        }
    }
}

/// What a caller hands the store; the store assigns `seq`, `time` and the hash
/// inside the transaction that makes the change.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditDraft {
    /// `user:alice`, `service_principal:ci`, `system`, or `anonymous`.
    pub actor: String,
    /// Dotted verb, e.g. `user.create`, `auth.login`.
    pub action: String,
    /// What was acted on, e.g. `user:bob`.
    pub target: String,
    pub outcome: Outcome,
    pub request_id: String,
    pub source: String,
    /// Extra facts. Never a secret: references and hashes only.
    pub details: Value,
}

impl AuditDraft {
    pub fn new(actor: impl Into<String>, action: impl Into<String>, target: impl Into<String>) -> Self {
        AuditDraft {
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            outcome: Outcome::Success,
            request_id: String::new(),
            source: String::new(),
            details: Value::Object(Default::default()),
        }
    }
    pub fn outcome(mut self, o: Outcome) -> Self {
        self.outcome = o;
        self
    }
    pub fn details(mut self, d: Value) -> Self {
        self.details = d;
        self
    }
    /// Adds one fact to `details` (an object), keeping the others.
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        if !self.details.is_object() {
            self.details = Value::Object(Default::default());
        }
        if let Value::Object(m) = &mut self.details {
            m.insert(key.to_string(), value.into());
        }
        self
    }
    pub fn context(mut self, request_id: &str, source: &str) -> Self {
        self.request_id = request_id.to_string();
        self.source = source.to_string();
        self
    }
    /// Seal the draft as event `seq`, chained to `prev_hash`.
    pub fn seal(self, seq: i64, time: Timestamp, prev_hash: &str) -> AuditEvent {
        let mut ev = AuditEvent {
            seq,
            time,
            actor: self.actor,
            action: self.action,
            target: self.target,
            outcome: self.outcome,
            request_id: self.request_id,
            source: self.source,
            details: self.details,
            hash: String::new(),
        };
        ev.hash = chain_hash(prev_hash, &ev);
        ev
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: i64,
    pub time: Timestamp,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: Outcome,
    pub request_id: String,
    pub source: String,
    pub details: Value,
    /// Hex SHA-256 chaining this event to its predecessor.
    pub hash: String,
}

impl AuditEvent {
    pub fn canonical_bytes(&self) -> Vec<u8> {
        Encoder::new()
            .i64(self.seq)
            .i64(self.time.millis())
            .str(&self.actor)
            .str(&self.action)
            .str(&self.target)
            .str(self.outcome.as_str())
            .str(&self.request_id)
            .str(&self.source)
            .str(&canonical_json(&self.details))
            .finish()
    }
}

/// `hex(SHA-256(bytes(prev_hash) || canonical_bytes(event)))`. A `prev_hash`
/// that is not 64 hex digits is hashed as its text, which simply breaks the chain.
pub fn chain_hash(prev_hash: &str, ev: &AuditEvent) -> String {
    let mut input = data_encoding::HEXLOWER_PERMISSIVE
        .decode(prev_hash.as_bytes())
        .unwrap_or_else(|_| prev_hash.as_bytes().to_vec());
    input.extend_from_slice(&ev.canonical_bytes());
    hex(&sha256(&input))
}

/// A signed statement "the chain had head `hash` at `seq`".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub time: Timestamp,
    pub key_id: String,
    /// Hex Ed25519 signature over [`Checkpoint::signed_bytes`].
    pub signature: String,
}

impl Checkpoint {
    fn signed_bytes(seq: i64, hash: &str, time: Timestamp) -> Vec<u8> {
        Encoder::new().str("latch-audit-checkpoint").i64(seq).str(hash).i64(time.millis()).finish()
    }
    pub fn sign(key: &SigningKey, seq: i64, hash: &str, time: Timestamp) -> Self {
        let sig = key.sign(&Self::signed_bytes(seq, hash, time));
        Checkpoint { seq, hash: hash.to_string(), time, key_id: key.verifying_key().key_id(), signature: hex(&sig) }
    }
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Ok(sig) = data_encoding::HEXLOWER_PERMISSIVE.decode(self.signature.as_bytes()) else { return false };
        key.verify(&Self::signed_bytes(self.seq, &self.hash, self.time), &sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chain_depends_on_every_field_and_predecessor() {
        let base = AuditDraft::new("user:alice", "user.create", "user:bob")
            .context("req-1", "127.0.0.1")
            .details(json!({"groups": ["ops"]}));
        let e1 = base.clone().seal(1, Timestamp(1000), GENESIS_HASH);
        assert_eq!(e1.hash, chain_hash(GENESIS_HASH, &e1));
        let variants = [
            base.clone().seal(2, Timestamp(1000), GENESIS_HASH),
            base.clone().seal(1, Timestamp(1001), GENESIS_HASH),
            base.clone().outcome(Outcome::Failure).seal(1, Timestamp(1000), GENESIS_HASH),
            base.clone().details(json!({"groups": ["dev"]})).seal(1, Timestamp(1000), GENESIS_HASH),
            base.clone().seal(1, Timestamp(1000), &e1.hash),
        ];
        for v in variants {
            assert_ne!(v.hash, e1.hash);
        }
    }

    #[test]
    fn checkpoint_signature() {
        let k = SigningKey::generate().unwrap();
        let cp = Checkpoint::sign(&k, 7, GENESIS_HASH, Timestamp(5));
        assert!(cp.verify(&k.verifying_key()));
        let mut bad = cp.clone();
        bad.seq = 8;
        assert!(!bad.verify(&k.verifying_key()));
        let other = SigningKey::generate().unwrap();
        assert!(!cp.verify(&other.verifying_key()));
    }
}
