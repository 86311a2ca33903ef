//! latch-audit: the tamper-evident audit log.
//!
//! Every state change in latch appends an [`AuditEvent`] in the same database
//! transaction as the change. Events form a hash chain,
//! `hash_n = SHA-256(hash_{n-1} || canonical_bytes(event_n))` with
//! `hash_0` = 32 zero bytes, and a [`Checkpoint`] periodically signs
//! `(seq, hash)` with an Ed25519 key kept outside the database.
//!
//! What this detects: anyone who can write the database but not read the
//! checkpoint key can edit, delete, insert or reorder rows, but
//! [`verify::ChainVerifier`] will name the first sequence number where the
//! chain breaks, and truncating the tail is caught by the newest checkpoint.
//! What it does not: an attacker holding the checkpoint key who rewrites the
//! whole chain; ship checkpoints to a SIEM to narrow that.
#![forbid(unsafe_code)]

pub mod canonical;
pub mod event;
pub mod export;
pub mod verify;

pub use event::{AuditDraft, AuditEvent, Checkpoint, GENESIS_HASH, Outcome, chain_hash};
pub use export::{ExportError, ExportReport, verify_export};
pub use verify::{ChainVerifier, VerifyError, VerifyReport};
