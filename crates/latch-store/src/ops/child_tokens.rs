//! `ChildTokenStore`: sessions made from other sessions (Vault's
//! `auth/token/create`), their renewal, and revocation that takes every
//! descendant with it.

use async_trait::async_trait;
use latch_audit::AuditDraft;
use latch_core::{PrincipalKind, Timestamp};

use crate::args;
use crate::model::*;
use crate::sql::{Db, Row, map_opt, map_rows};
use crate::{ChildTokenStore, Result, SqlStore, StoreError, WriteCtx};

const COLS: &str = "s.id, s.principal_id, s.principal_kind, s.source, s.created_at, s.expires_at, s.revoked_at, \
                    c.session_id, c.parent_id, c.display_name, c.meta, c.renewable, c.ttl_ms, c.max_expires_at";

fn from_row(r: &Row) -> Result<SessionInfo> {
    let kind: String = r.get(2)?;
    let child = match r.get::<Option<String>>(7)? {
        Some(_) => Some(ChildToken {
            parent_id: r.get(8)?,
            display_name: r.get(9)?,
            meta: r.get(10)?,
            renewable: r.get(11)?,
            ttl_ms: r.get(12)?,
            max_expires_at: r.get(13)?,
        }),
        None => None,
    };
    Ok(SessionInfo {
        id: r.get(0)?,
        principal_id: r.get(1)?,
        principal_kind: PrincipalKind::parse(&kind)
            .ok_or_else(|| StoreError::Backend(format!("unknown principal kind {kind:?}")))?,
        source: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        revoked_at: r.get(6)?,
        child,
    })
}

fn load(db: &dyn Db, column: &str, value: &str) -> Result<Option<SessionInfo>> {
    map_opt(
        db,
        &format!("SELECT {COLS} FROM sessions s LEFT JOIN child_tokens c ON c.session_id = s.id WHERE s.{column} = ?1"),
        args![value],
        from_row,
    )
}

/// Revokes the sessions made from `id`, and theirs, transitively; returns their ids.
pub(crate) fn revoke_descendants(ctx: &WriteCtx<'_>, id: &str) -> Result<Vec<String>> {
    let mut revoked = Vec::new();
    let mut frontier = vec![id.to_string()];
    while let Some(parent) = frontier.pop() {
        let children: Vec<String> =
            map_rows(ctx.db(), "SELECT session_id FROM child_tokens WHERE parent_id = ?1", args![parent], |r| {
                r.get(0)
            })?;
        for c in children {
            ctx.exec("UPDATE sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL", args![c, ctx.now()])?;
            revoked.push(c.clone());
            frontier.push(c);
        }
    }
    Ok(revoked)
}

#[async_trait]
impl ChildTokenStore for SqlStore {
    async fn create_child_session(&self, s: NewSession, t: ChildToken, audit: AuditDraft) -> Result<Session> {
        self.write(move |ctx| {
            if let Some(parent) = &t.parent_id {
                // The parent must still be live when its child is made.
                let live = map_opt(
                    ctx.db(),
                    "SELECT id FROM sessions WHERE id = ?1 AND revoked_at IS NULL AND expires_at > ?2",
                    args![parent, ctx.now()],
                    |r| r.get::<String>(0),
                )?;
                if live.is_none() {
                    return Err(StoreError::Precondition("the parent token is no longer valid".into()));
                }
            }
            let session = crate::ops::identity::insert_session(ctx, &s)?;
            ctx.exec(
                "INSERT INTO child_tokens (session_id, parent_id, display_name, meta, renewable, ttl_ms, max_expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                args![s.id, t.parent_id, t.display_name, t.meta, t.renewable, t.ttl_ms, t.max_expires_at],
            )?;
            ctx.audit(audit)?;
            Ok(session)
        })
        .await
    }

    async fn session_by_hash(&self, token_hash: &str) -> Result<Option<SessionInfo>> {
        let h = token_hash.to_string();
        self.read(move |db| load(db, "token_hash", &h)).await
    }

    async fn session_by_id(&self, id: &str) -> Result<Option<SessionInfo>> {
        let id = id.to_string();
        self.read(move |db| load(db, "id", &id)).await
    }

    async fn renew_session(&self, id: &str, expires_at: Timestamp, audit: AuditDraft) -> Result<()> {
        let id = id.to_string();
        self.write(move |ctx| {
            let n = ctx.exec(
                "UPDATE sessions SET expires_at = ?2 WHERE id = ?1 AND revoked_at IS NULL AND expires_at > ?3",
                args![id, expires_at, ctx.now()],
            )?;
            if n == 0 {
                return Err(StoreError::Precondition("the token is no longer valid".into()));
            }
            ctx.invalidate()?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }
}
