//! Verifying the audit chain straight from a database file, without a
//! server: what an auditor runs against a copy of the data directory.

use std::path::Path;

use latch_audit::{ChainVerifier, VerifyError, VerifyReport};
use latch_crypto::VerifyingKey;
use rusqlite::{Connection, OpenFlags};

use super::backend;
use crate::StoreError;
use crate::ops::identity::{audit_from_row, checkpoint_from_row};
use crate::sql::{Row, map_rows};

#[derive(Debug, thiserror::Error)]
pub enum FileVerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Chain(#[from] VerifyError),
}

/// Streams every event in `seq` order through a [`ChainVerifier`].
pub fn verify_file(path: &Path, key: VerifyingKey) -> Result<VerifyReport, FileVerifyError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| StoreError::Backend(format!("cannot open database {}: {e}", path.display())))?;
    let checkpoints = map_rows(
        &conn,
        "SELECT seq, hash, time, key_id, signature FROM audit_checkpoints ORDER BY seq",
        &[],
        checkpoint_from_row,
    )?;
    let mut verifier = ChainVerifier::new(key, checkpoints)?;
    // Streamed rather than collected: a million events stay out of memory.
    let mut st = conn
        .prepare(
            "SELECT seq, time, actor, action, target, outcome, request_id, source, details, hash
             FROM audit_events ORDER BY seq",
        )
        .map_err(backend)?;
    let mut rows = st.query([]).map_err(backend)?;
    while let Some(row) = rows.next().map_err(backend)? {
        let seq: i64 = row.get(0).map_err(backend)?;
        let vals =
            (0..10).map(|i| row.get_ref(i).map_err(backend).and_then(super::value_of)).collect::<Result<Vec<_>, _>>();
        let ev = vals.and_then(|v| audit_from_row(&Row(v))).map_err(|_| VerifyError::Undecodable { seq })?;
        verifier.push(&ev)?;
    }
    Ok(verifier.finish()?)
}
