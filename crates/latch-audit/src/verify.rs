//! Streaming verification of the chain against its checkpoints.
//!
//! Events are pushed in ascending `seq` order as read from storage (so a
//! million events need no more memory than one), and the first break is
//! reported with its sequence number and what kind of tampering it suggests.

use std::collections::BTreeMap;

use latch_crypto::VerifyingKey;
use serde::Serialize;
use thiserror::Error;

use crate::event::{AuditEvent, Checkpoint, GENESIS_HASH, chain_hash};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error(
        "audit chain broken at seq {seq}: the stored hash does not match the event's content and its predecessor (edited, inserted or reordered row)"
    )]
    HashMismatch { seq: i64 },
    #[error("audit chain broken at seq {expected}: found seq {found} instead (row deleted or inserted)")]
    Sequence { expected: i64, found: i64 },
    #[error("audit chain broken at seq {seq}: the stored event cannot be decoded (edited row)")]
    Undecodable { seq: i64 },
    #[error("audit checkpoint at seq {seq} has an invalid signature (forged or signed by another key)")]
    CheckpointSignature { seq: i64 },
    #[error("audit chain broken at seq {seq}: the head hash differs from the signed checkpoint")]
    CheckpointMismatch { seq: i64 },
    #[error("audit chain truncated: a signed checkpoint vouches for seq {seq} but the log ends at seq {last}")]
    Truncated { seq: i64, last: i64 },
}

impl VerifyError {
    /// The first sequence number at which the log is not what was written.
    pub fn seq(&self) -> i64 {
        match self {
            VerifyError::HashMismatch { seq }
            | VerifyError::Undecodable { seq }
            | VerifyError::CheckpointSignature { seq }
            | VerifyError::CheckpointMismatch { seq } => *seq,
            VerifyError::Sequence { expected, .. } => *expected,
            VerifyError::Truncated { last, .. } => last + 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub events: u64,
    pub checkpoints: u64,
    pub head_seq: i64,
    pub head_hash: String,
}

pub struct ChainVerifier {
    key: VerifyingKey,
    pending: BTreeMap<i64, Checkpoint>,
    prev_hash: String,
    next_seq: i64,
    events: u64,
    checkpoints: u64,
}

impl ChainVerifier {
    /// Checkpoint signatures are checked up front, before any event is read.
    pub fn new(key: VerifyingKey, checkpoints: Vec<Checkpoint>) -> Result<Self, VerifyError> {
        let mut pending = BTreeMap::new();
        for cp in checkpoints {
            if !cp.verify(&key) {
                return Err(VerifyError::CheckpointSignature { seq: cp.seq });
            }
            pending.insert(cp.seq, cp);
        }
        Ok(ChainVerifier { key, pending, prev_hash: GENESIS_HASH.to_string(), next_seq: 1, events: 0, checkpoints: 0 })
    }

    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    pub fn push(&mut self, ev: &AuditEvent) -> Result<(), VerifyError> {
        if ev.seq != self.next_seq {
            return Err(VerifyError::Sequence { expected: self.next_seq, found: ev.seq });
        }
        let expected = chain_hash(&self.prev_hash, ev);
        if !latch_crypto::ct_eq(expected.as_bytes(), ev.hash.as_bytes()) {
            return Err(VerifyError::HashMismatch { seq: ev.seq });
        }
        if let Some(cp) = self.pending.remove(&ev.seq) {
            if cp.hash != ev.hash {
                return Err(VerifyError::CheckpointMismatch { seq: ev.seq });
            }
            self.checkpoints += 1;
        }
        self.prev_hash = expected;
        self.next_seq += 1;
        self.events += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<VerifyReport, VerifyError> {
        let last = self.next_seq - 1;
        if let Some((&seq, _)) = self.pending.iter().next() {
            return Err(VerifyError::Truncated { seq, last });
        }
        Ok(VerifyReport {
            events: self.events,
            checkpoints: self.checkpoints,
            head_seq: last,
            head_hash: self.prev_hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::AuditDraft;
    use latch_core::Timestamp;
    use latch_crypto::SigningKey;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let e = AuditDraft::new("system", "test.event", format!("t:{seq}")).seal(seq, Timestamp(seq), &prev);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn run(key: &SigningKey, events: &[AuditEvent], cps: Vec<Checkpoint>) -> Result<VerifyReport, VerifyError> {
        let mut v = ChainVerifier::new(key.verifying_key(), cps)?;
        for e in events {
            v.push(e)?;
        }
        v.finish()
    }

    #[test]
    fn detects_each_kind_of_tampering() {
        let key = SigningKey::generate().unwrap();
        let events = chain(10);
        let cp = Checkpoint::sign(&key, 10, &events[9].hash, Timestamp(99));
        assert_eq!(run(&key, &events, vec![cp.clone()]).unwrap().head_seq, 10);

        let mut edited = events.clone();
        edited[4].target = "t:evil".into();
        assert_eq!(run(&key, &edited, vec![]), Err(VerifyError::HashMismatch { seq: 5 }));

        let mut deleted = events.clone();
        deleted.remove(3);
        assert_eq!(run(&key, &deleted, vec![]).unwrap_err().seq(), 4);

        let mut swapped = events.clone();
        swapped.swap(5, 6);
        (swapped[5].seq, swapped[6].seq) = (6, 7);
        assert_eq!(run(&key, &swapped, vec![]), Err(VerifyError::HashMismatch { seq: 6 }));

        let mut appended = events.clone();
        let mut fake = events[9].clone();
        fake.seq = 11;
        appended.push(fake);
        assert_eq!(run(&key, &appended, vec![]), Err(VerifyError::HashMismatch { seq: 11 }));

        let truncated = &events[..8];
        assert_eq!(run(&key, truncated, vec![cp.clone()]), Err(VerifyError::Truncated { seq: 10, last: 8 }));

        let mut forged = cp.clone();
        forged.hash = events[8].hash.clone();
        assert_eq!(run(&key, &events, vec![forged]), Err(VerifyError::CheckpointSignature { seq: 10 }));
    }
}
