//! `SshStore`: the CA key and the certificates it signed.

use async_trait::async_trait;
use latch_audit::AuditDraft;
use latch_core::Timestamp;

use crate::args;
use crate::model::*;
use crate::sql::{Row, map_opt, map_rows};
use crate::{Result, SqlStore, SshStore, StoreError};

fn ca_from_row(r: &Row) -> Result<StoredCaKey> {
    Ok(StoredCaKey { name: r.get(0)?, public_key: r.get(1)?, sealed: r.get(2)?, created_at: r.get(3)? })
}

fn cert_from_row(r: &Row) -> Result<IssuedSshCert> {
    let principals: String = r.get(3)?;
    Ok(IssuedSshCert {
        serial: r.get(0)?,
        grant_id: r.get(1)?,
        key_id: r.get(2)?,
        principals: serde_json::from_str(&principals).map_err(|e| StoreError::Backend(e.to_string()))?,
        fingerprint: r.get(4)?,
        valid_after: r.get(5)?,
        valid_before: r.get(6)?,
        issued_at: r.get(7)?,
        revoked_at: r.get(8)?,
    })
}

/// Marks the certificates of `grant_id` revoked at `now`; returns their serials.
pub(crate) fn revoke_certs_of_grant(ctx: &crate::WriteCtx<'_>, grant_id: &str) -> Result<Vec<i64>> {
    let serials = map_rows(
        ctx.db(),
        "SELECT serial FROM ssh_certs WHERE grant_id = ?1 AND revoked_at IS NULL ORDER BY serial",
        args![grant_id],
        |r| r.get(0),
    )?;
    if !serials.is_empty() {
        ctx.exec(
            "UPDATE ssh_certs SET revoked_at = ?2 WHERE grant_id = ?1 AND revoked_at IS NULL",
            args![grant_id, ctx.now()],
        )?;
    }
    Ok(serials)
}

#[async_trait]
impl SshStore for SqlStore {
    async fn ca_key(&self, name: &str) -> Result<Option<StoredCaKey>> {
        let name = name.to_string();
        self.read(move |c| {
            map_opt(
                c,
                "SELECT name, public_key, sealed, created_at FROM ca_keys WHERE name = ?1",
                args![&name],
                ca_from_row,
            )
        })
        .await
    }

    async fn create_ca_key(&self, key: StoredCaKey, audit: AuditDraft) -> Result<StoredCaKey> {
        self.write(move |ctx| {
            let n = ctx.exec(
                "INSERT INTO ca_keys (name, public_key, sealed, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING",
                args![key.name, key.public_key, key.sealed, ctx.now()],
            )?;
            if n == 1 {
                ctx.audit(audit)?;
            }
            map_opt(
                ctx.db(),
                "SELECT name, public_key, sealed, created_at FROM ca_keys WHERE name = ?1",
                args![key.name],
                ca_from_row,
            )?
            .ok_or_else(|| StoreError::not_found("CA key", &key.name))
        })
        .await
    }

    async fn record_ssh_cert(&self, c: IssuedSshCert, audit: AuditDraft) -> Result<()> {
        self.write(move |ctx| {
            let g = map_opt(ctx.db(), "SELECT state, expires_at FROM grants WHERE id = ?1", args![c.grant_id], |r| {
                Ok((r.get::<String>(0)?, r.get::<Timestamp>(1)?))
            })?
            .ok_or_else(|| StoreError::not_found("grant", &c.grant_id))?;
            // Checked in the same transaction as the insert: a revocation
            // committed a moment earlier cannot be missed.
            if g.0 != "active" || ctx.now() >= g.1 {
                return Err(StoreError::Conflict(format!("grant {} is not active", c.grant_id)));
            }
            if c.valid_before.saturating_mul(1000) > g.1.millis() {
                return Err(StoreError::Precondition("a certificate cannot outlive its grant".into()));
            }
            let principals = serde_json::to_string(&c.principals).map_err(|e| StoreError::Backend(e.to_string()))?;
            ctx.exec(
                "INSERT INTO ssh_certs (serial, grant_id, key_id, principals, fingerprint, valid_after, valid_before, issued_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                args![c.serial, c.grant_id, c.key_id, principals, c.fingerprint, c.valid_after, c.valid_before, c.issued_at],
            )?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn ssh_cert(&self, serial: i64) -> Result<Option<IssuedSshCert>> {
        self.read(move |c| {
            map_opt(
                c,
                "SELECT serial, grant_id, key_id, principals, fingerprint, valid_after, valid_before, issued_at, revoked_at
                 FROM ssh_certs WHERE serial = ?1",
                args![serial],
                cert_from_row,
            )
        })
        .await
    }

    async fn revoked_ssh_serials(&self, now_unix: i64) -> Result<RevokedSerials> {
        self.scan(move |c| {
            let serials = map_rows(
                c,
                "SELECT serial FROM ssh_certs WHERE revoked_at IS NOT NULL AND valid_before > ?1 ORDER BY serial",
                args![now_unix],
                |r| r.get(0),
            )?;
            let version = map_opt(c, "SELECT COALESCE(MAX(revoked_at), 0) FROM ssh_certs", args![], |r| r.get(0))?;
            Ok(RevokedSerials { serials, version: version.unwrap_or(0) })
        })
        .await
    }
}
