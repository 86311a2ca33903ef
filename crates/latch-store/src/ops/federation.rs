//! `FederationStore`: service principals' trust in external OpenID Connect
//! issuers, and the tokens already exchanged (replay protection).

use async_trait::async_trait;
use latch_audit::AuditDraft;
use latch_core::Timestamp;
use latch_core::federation::Condition;

use crate::args;
use crate::model::*;
use crate::ops::identity::{insert_session, require_sp};
use crate::sql::{Db, Row, map_opt, map_rows};
use crate::{FederationStore, Result, SqlStore, StoreError};

const COLS: &str = "f.id, f.sp_id, sp.name, sp.disabled, f.name, f.issuer, f.audience, f.conditions, f.created_at";
const FROM: &str = "federations f JOIN service_principals sp ON sp.id = f.sp_id";

fn from_row(r: &Row) -> Result<Federation> {
    let conditions: String = r.get(7)?;
    let conditions: Vec<Condition> = serde_json::from_str(&conditions)
        .map_err(|e| StoreError::Backend(format!("column 7: stored conditions do not decode: {e}")))?;
    Ok(Federation {
        id: r.get(0)?,
        sp_id: r.get(1)?,
        sp_name: r.get(2)?,
        sp_disabled: r.get(3)?,
        name: r.get(4)?,
        issuer: r.get(5)?,
        audience: r.get(6)?,
        conditions,
        created_at: r.get(8)?,
    })
}

fn of_sp(db: &dyn Db, sp_id: &str) -> Result<Vec<Federation>> {
    map_rows(db, &format!("SELECT {COLS} FROM {FROM} WHERE f.sp_id = ?1 ORDER BY f.name"), args![sp_id], from_row)
}

#[async_trait]
impl FederationStore for SqlStore {
    async fn create_federation(&self, sp: &str, f: NewFederation, audit: AuditDraft) -> Result<Federation> {
        let sp = sp.to_string();
        let conditions = serde_json::to_string(&f.conditions).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.write(move |ctx| {
            let sp = require_sp(ctx.db(), &sp)?;
            let n = ctx.exec(
                "INSERT INTO federations (id, sp_id, name, issuer, audience, conditions, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (sp_id, name) DO NOTHING",
                args![f.id, sp.id, f.name, f.issuer, f.audience, conditions, ctx.now()],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict(format!(
                    "service principal {} already has a federation named {:?}: remove it first, or choose another --name",
                    sp.name, f.name
                )));
            }
            ctx.audit(audit)?;
            map_opt(ctx.db(), &format!("SELECT {COLS} FROM {FROM} WHERE f.id = ?1"), args![f.id], from_row)?
                .ok_or_else(|| StoreError::not_found("federation", &f.name))
        })
        .await
    }

    async fn list_federations(&self, sp: &str) -> Result<Vec<Federation>> {
        let sp = sp.to_string();
        self.read(move |c| {
            let sp = require_sp(c, &sp)?;
            of_sp(c, &sp.id)
        })
        .await
    }

    async fn federations_by_issuer(&self, issuer: &str) -> Result<Vec<Federation>> {
        let issuer = issuer.to_string();
        self.read(move |c| {
            map_rows(
                c,
                &format!("SELECT {COLS} FROM {FROM} WHERE f.issuer = ?1 ORDER BY sp.name, f.name"),
                args![issuer],
                from_row,
            )
        })
        .await
    }

    async fn delete_federation(&self, sp: &str, name: &str, audit: AuditDraft) -> Result<()> {
        let (sp, name) = (sp.to_string(), name.to_string());
        self.write(move |ctx| {
            let sp = require_sp(ctx.db(), &sp)?;
            let n = ctx.exec("DELETE FROM federations WHERE sp_id = ?1 AND name = ?2", args![sp.id, name])?;
            if n == 0 {
                return Err(StoreError::not_found("federation", format!("{} of service principal {}", name, sp.name)));
            }
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn exchange(&self, session: NewSession, token: ExchangedToken, audit: AuditDraft) -> Result<Session> {
        self.write(move |ctx| {
            // First, so that a replay changes nothing: the insert is the
            // compare-and-set that lets only one of two racing exchanges win.
            let n = ctx.exec(
                "INSERT INTO exchanged_tokens (issuer, jti, sp_id, exchanged_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (issuer, jti) DO NOTHING",
                args![token.issuer, token.jti, session.principal_id, ctx.now(), token.expires_at],
            )?;
            if n == 0 {
                return Err(StoreError::Precondition("this token was already exchanged".into()));
            }
            let s = insert_session(ctx, &session)?;
            ctx.audit(audit)?;
            Ok(s)
        })
        .await
    }

    async fn prune_exchanged_tokens(&self, before: Timestamp) -> Result<u64> {
        self.write(move |ctx| ctx.exec("DELETE FROM exchanged_tokens WHERE expires_at < ?1", args![before])).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use latch_core::{Clock, PrincipalKind};

    use super::*;
    use crate::Store;

    use crate::ops::test_support::open;

    use crate::ops::test_support::ev;

    fn session(id: &str, sp_id: &str, expires_at: Timestamp) -> NewSession {
        NewSession {
            id: id.into(),
            token_hash: format!("hash-{id}"),
            principal_id: sp_id.into(),
            principal_kind: PrincipalKind::ServicePrincipal,
            mfa: false,
            source: "127.0.0.1".into(),
            expires_at,
            clears_failures: None,
        }
    }

    #[tokio::test]
    async fn bindings_live_and_die_with_their_principal() {
        let (_dir, store, _) = open();
        let sp = NewServicePrincipal {
            id: "sp_1".into(),
            name: "ci".into(),
            description: String::new(),
            secret_hash: "x".into(),
            secret_lifetime_ms: None,
            secret_expires_at: None,
        };
        store.create_sp(sp, vec![], ev("sp.create")).await.unwrap();
        let conds = vec![Condition::equals("repository", "org/app"), Condition::glob("ref", "refs/heads/*")];
        let f = NewFederation {
            id: "fed_1".into(),
            name: "main".into(),
            issuer: "https://ci.example".into(),
            audience: "latch".into(),
            conditions: conds.clone(),
        };
        let made = store.create_federation("ci", f.clone(), ev("sp.federate")).await.unwrap();
        assert_eq!((made.sp_name.as_str(), made.conditions.clone()), ("ci", conds));
        let dup = store.create_federation("sp_1", f.clone(), ev("sp.federate")).await.unwrap_err();
        assert!(matches!(dup, StoreError::Conflict(m) if m.contains("already has a federation named \"main\"")));
        let missing = store.create_federation("nobody", f, ev("sp.federate")).await.unwrap_err();
        assert!(matches!(missing, StoreError::NotFound { .. }));
        assert_eq!(store.federations_by_issuer("https://ci.example").await.unwrap(), vec![made.clone()]);
        assert!(store.federations_by_issuer("https://ci.example/").await.unwrap().is_empty(), "exact match");
        assert_eq!(store.list_federations("ci").await.unwrap().len(), 1);
        store.delete_sp("ci", ev("sp.delete")).await.unwrap();
        assert!(store.federations_by_issuer("https://ci.example").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_token_is_exchanged_once_until_it_is_forgotten() {
        let (_dir, store, clock) = open();
        let sp = NewServicePrincipal {
            id: "sp_1".into(),
            name: "ci".into(),
            description: String::new(),
            secret_hash: "x".into(),
            secret_lifetime_ms: None,
            secret_expires_at: None,
        };
        store.create_sp(sp, vec![], ev("sp.create")).await.unwrap();
        let now = clock.now();
        let token = ExchangedToken {
            issuer: "https://ci.example".into(),
            jti: "j1".into(),
            expires_at: now.plus(Duration::from_secs(60)),
        };
        let (head, _) = store.audit_head().await.unwrap();
        store
            .exchange(session("ses_1", "sp_1", now.plus(Duration::from_secs(900))), token.clone(), ev("auth.exchange"))
            .await
            .unwrap();
        let again =
            store.exchange(session("ses_2", "sp_1", now), token.clone(), ev("auth.exchange")).await.unwrap_err();
        assert!(matches!(again, StoreError::Precondition(_)));
        assert_eq!(store.audit_head().await.unwrap().0, head + 1, "the refused replay appended nothing");
        // The same jti from another issuer is another token.
        let other = ExchangedToken { issuer: "https://other.example".into(), ..token.clone() };
        store.exchange(session("ses_3", "sp_1", now), other, ev("auth.exchange")).await.unwrap();
        assert_eq!(store.prune_exchanged_tokens(now).await.unwrap(), 0, "kept until it expires");
        assert_eq!(store.prune_exchanged_tokens(now.plus(Duration::from_secs(61))).await.unwrap(), 2);
    }
}
