//! `IssuerKeyStore`: the SSH CA and token signing keys, already encrypted
//! under the master keyring by the caller.

use async_trait::async_trait;
use latch_audit::AuditDraft;

use crate::args;
use crate::model::*;
use crate::sql::{Row, map_rows};
use crate::{IssuerKeyStore, Result, SqlStore, StoreError};

const COLS: &str = "id, kind, public_key, active, master_version, wrapped_key, ciphertext, created_at, retired_at";

fn from_row(r: &Row) -> Result<StoredIssuerKey> {
    Ok(StoredIssuerKey {
        id: r.get(0)?,
        kind: r.get(1)?,
        public_key: r.get(2)?,
        active: r.get(3)?,
        envelope: StoredEnvelope { master_version: r.get(4)?, wrapped_key: r.get(5)?, ciphertext: r.get(6)? },
        created_at: r.get(7)?,
        retired_at: r.get(8)?,
    })
}

fn insert(ctx: &crate::WriteCtx<'_>, k: &StoredIssuerKey) -> Result<u64> {
    ctx.exec(
        &format!("INSERT INTO issuer_keys ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING"),
        args![
            k.id,
            k.kind,
            k.public_key,
            k.active,
            k.envelope.master_version,
            k.envelope.wrapped_key,
            k.envelope.ciphertext,
            ctx.now(),
            (!k.active).then(|| ctx.now())
        ],
    )
}

#[async_trait]
impl IssuerKeyStore for SqlStore {
    async fn issuer_keys(&self) -> Result<Vec<StoredIssuerKey>> {
        self.read(move |db| {
            map_rows(
                db,
                &format!("SELECT {COLS} FROM issuer_keys ORDER BY active DESC, created_at, id"),
                args![],
                from_row,
            )
        })
        .await
    }

    async fn create_issuer_key(
        &self,
        key: StoredIssuerKey,
        legacy_ca: Option<String>,
        audit: AuditDraft,
    ) -> Result<bool> {
        self.write(move |ctx| {
            if insert(ctx, &key)? == 0 {
                return Ok(false);
            }
            if let Some(name) = &legacy_ca {
                ctx.exec("DELETE FROM ca_keys WHERE name = ?1", args![name])?;
            }
            ctx.audit(audit)?;
            Ok(true)
        })
        .await
    }

    async fn rotate_issuer_key(&self, retiring: &str, next: StoredIssuerKey, audit: AuditDraft) -> Result<()> {
        let retiring = retiring.to_string();
        self.write(move |ctx| {
            let n = ctx.exec(
                "UPDATE issuer_keys SET active = FALSE, retired_at = ?3 WHERE id = ?1 AND kind = ?2 AND active",
                args![retiring, next.kind, ctx.now()],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict(format!(
                    "key {retiring} is no longer the active one (rotated meanwhile, perhaps on another node)"
                )));
            }
            if insert(ctx, &next)? == 0 {
                return Err(StoreError::Conflict(format!("key {} exists already", next.id)));
            }
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn delete_retired_issuer_key(&self, id: &str, audit: AuditDraft) -> Result<bool> {
        let id = id.to_string();
        self.write(move |ctx| {
            let n = ctx.exec("DELETE FROM issuer_keys WHERE id = ?1 AND NOT active", args![id])?;
            if n > 0 {
                ctx.audit(audit)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn store_rewrapped_issuer_key(&self, id: &str, old: StoredEnvelope, new: StoredEnvelope) -> Result<bool> {
        let id = id.to_string();
        self.write(move |ctx| {
            let n = ctx.exec(
                "UPDATE issuer_keys SET master_version = ?2, wrapped_key = ?3
                  WHERE id = ?1 AND master_version = ?4 AND wrapped_key = ?5",
                args![id, new.master_version, new.wrapped_key, old.master_version, old.wrapped_key],
            )?;
            Ok(n > 0)
        })
        .await
    }
}
