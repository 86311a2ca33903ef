//! `DbCredStore`: registered target databases and the PostgreSQL roles
//! issued on them under grants.
//!
//! Creating and dropping roles happens on another server, outside any of our
//! transactions, so the state here is what makes it safe:
//! - a credential is recorded (`issuing`, with its audit event) *before* its
//!   role is created, and only then becomes `active`, so a role can never
//!   exist that no row will drop;
//! - ending a grant marks its credentials `revoking` in the grant's own
//!   transaction (like its SSH certificates), and a background job drops the
//!   roles, recording each failure and retrying until the role is gone.

use async_trait::async_trait;
use latch_audit::AuditDraft;
use latch_core::Timestamp;
use serde_json::json;

use crate::args;
use crate::model::*;
use crate::sql::{Db, Row, map_opt, map_rows};
use crate::{DbCredStore, Result, SqlStore, StoreError, SweepAudit, WriteCtx};

const CONN_COLS: &str =
    "name, host, port, database_name, username, sslmode, sealed_password, created_at, created_by, ca_cert";
const CRED_COLS: &str = "lease_id, grant_id, principal_id, principal_name, role, connection, username, revocation, \
     issued_at, expires_at, state, revoke_requested_at, revoked_at, revoke_attempts, last_error, next_attempt_at";

fn bad(i: usize, what: &str) -> StoreError {
    StoreError::Backend(format!("column {i}: bad {what}"))
}

fn conn_from_row(r: &Row) -> Result<DbConnection> {
    Ok(DbConnection {
        name: r.get(0)?,
        host: r.get(1)?,
        port: r.get(2)?,
        database: r.get(3)?,
        username: r.get(4)?,
        sslmode: r.get(5)?,
        ca_cert: r.get(9)?,
        sealed_password: r.get(6)?,
        created_at: r.get(7)?,
        created_by: r.get(8)?,
    })
}

fn cred_from_row(r: &Row) -> Result<DbCredential> {
    let revocation: String = r.get(7)?;
    Ok(DbCredential {
        lease_id: r.get(0)?,
        grant_id: r.get(1)?,
        principal_id: r.get(2)?,
        principal_name: r.get(3)?,
        role: r.get(4)?,
        connection: r.get(5)?,
        username: r.get(6)?,
        revocation: serde_json::from_str(&revocation).map_err(|_| bad(7, "revocation statements"))?,
        issued_at: r.get(8)?,
        expires_at: r.get(9)?,
        state: DbCredState::parse(&r.get::<String>(10)?).ok_or_else(|| bad(10, "credential state"))?,
        revoke_requested_at: r.get(11)?,
        revoked_at: r.get(12)?,
        revoke_attempts: r.get(13)?,
        last_error: r.get(14)?,
        next_attempt_at: r.get(15)?,
    })
}

fn load_cred(c: &dyn Db, lease_id: &str) -> Result<Option<DbCredential>> {
    map_opt(c, &format!("SELECT {CRED_COLS} FROM db_credentials WHERE lease_id = ?1"), args![lease_id], cred_from_row)
}

/// Marks the live credentials of `grant_id` for dropping, in the
/// transaction that ends the grant; returns their lease ids.
pub(crate) fn revoke_db_creds_of_grant(ctx: &WriteCtx<'_>, grant_id: &str) -> Result<Vec<String>> {
    let leases = map_rows(
        ctx.db(),
        "SELECT lease_id FROM db_credentials WHERE grant_id = ?1 AND state IN ('issuing', 'active') ORDER BY lease_id",
        args![grant_id],
        |r| r.get(0),
    )?;
    if !leases.is_empty() {
        ctx.exec(
            "UPDATE db_credentials SET state = 'revoking', revoke_requested_at = ?2, next_attempt_at = NULL
             WHERE grant_id = ?1 AND state IN ('issuing', 'active')",
            args![grant_id, ctx.now()],
        )?;
    }
    Ok(leases)
}

/// Adds `key: value` to an audit draft's details.
fn with_detail(audit: AuditDraft, key: &str, value: serde_json::Value) -> AuditDraft {
    let mut details = audit.details.clone();
    if let Some(m) = details.as_object_mut() {
        m.insert(key.into(), value);
    }
    audit.details(details)
}

#[async_trait]
impl DbCredStore for SqlStore {
    async fn create_db_connection(&self, c: DbConnection, audit: AuditDraft) -> Result<DbConnection> {
        self.write(move |ctx| {
            ctx.exec(
                &format!("INSERT INTO db_connections ({CONN_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                args![
                    c.name,
                    c.host,
                    c.port,
                    c.database,
                    c.username,
                    c.sslmode,
                    c.sealed_password,
                    c.created_at,
                    c.created_by,
                    c.ca_cert
                ],
            )
            .map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::Conflict(format!(
                    "database connection {:?} already exists: remove it first (`latch db connection rm`)",
                    c.name
                )),
                other => other,
            })?;
            ctx.audit(audit)?;
            Ok(c)
        })
        .await
    }

    async fn db_connection(&self, name: &str) -> Result<Option<DbConnection>> {
        let name = name.to_string();
        self.read(move |c| {
            map_opt(c, &format!("SELECT {CONN_COLS} FROM db_connections WHERE name = ?1"), args![&name], conn_from_row)
        })
        .await
    }

    async fn store_rewrapped_db_password(&self, name: &str, old: &str, new: &str) -> Result<bool> {
        let (name, old, new) = (name.to_string(), old.to_string(), new.to_string());
        self.write(move |ctx| {
            let n = ctx.exec(
                "UPDATE db_connections SET sealed_password = ?2 WHERE name = ?1 AND sealed_password = ?3",
                args![name, new, old],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_db_connections(&self) -> Result<Vec<DbConnection>> {
        self.scan(|c| {
            map_rows(c, &format!("SELECT {CONN_COLS} FROM db_connections ORDER BY name"), args![], conn_from_row)
        })
        .await
    }

    async fn delete_db_connection(&self, name: &str, audit: AuditDraft) -> Result<()> {
        let name = name.to_string();
        self.write(move |ctx| {
            // The revocation job needs the connection to drop these roles.
            let live: i64 = map_opt(
                ctx.db(),
                "SELECT COUNT(*) FROM db_credentials WHERE connection = ?1 AND state <> 'revoked'",
                args![&name],
                |r| r.get(0),
            )?
            .unwrap_or(0);
            if live > 0 {
                return Err(StoreError::Precondition(format!(
                    "database connection {name:?} still has {live} credential(s) not yet revoked: revoke them \
                     (`latch db lease revoke-prefix database/creds/`) and wait until `latch db creds list` shows them revoked"
                )));
            }
            let n = ctx.exec("DELETE FROM db_connections WHERE name = ?1", args![&name])?;
            if n == 0 {
                return Err(StoreError::not_found("database connection", &name));
            }
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn record_db_credential(&self, c: DbCredential, audit: AuditDraft) -> Result<()> {
        self.write(move |ctx| {
            let g = map_opt(ctx.db(), "SELECT state, expires_at FROM grants WHERE id = ?1", args![c.grant_id], |r| {
                Ok((r.get::<String>(0)?, r.get::<Timestamp>(1)?))
            })?
            .ok_or_else(|| StoreError::not_found("grant", &c.grant_id))?;
            // In the transaction of the insert: a revocation committed a moment
            // earlier cannot be missed.
            if g.0 != "active" || ctx.now() >= g.1 {
                return Err(StoreError::Conflict(format!("grant {} is not active", c.grant_id)));
            }
            if c.expires_at > g.1 {
                return Err(StoreError::Precondition("a database credential cannot outlive its grant".into()));
            }
            if map_opt(ctx.db(), "SELECT 1 FROM db_connections WHERE name = ?1", args![c.connection], |_| Ok(()))?
                .is_none()
            {
                return Err(StoreError::not_found("database connection", &c.connection));
            }
            let revocation = serde_json::to_string(&c.revocation).map_err(|e| StoreError::Backend(e.to_string()))?;
            ctx.exec(
                &format!(
                    "INSERT INTO db_credentials ({CRED_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'issuing',
                     NULL, NULL, 0, NULL, NULL)"
                ),
                args![
                    c.lease_id,
                    c.grant_id,
                    c.principal_id,
                    c.principal_name,
                    c.role,
                    c.connection,
                    c.username,
                    revocation,
                    c.issued_at,
                    c.expires_at
                ],
            )?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn activate_db_credential(&self, lease_id: &str) -> Result<bool> {
        let lease_id = lease_id.to_string();
        self.write(move |ctx| {
            // Completes the audited issue: no event of its own.
            let n = ctx.exec(
                "UPDATE db_credentials SET state = 'active' WHERE lease_id = ?1 AND state = 'issuing'",
                args![lease_id],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn db_credential(&self, lease_id: &str) -> Result<Option<DbCredential>> {
        let lease_id = lease_id.to_string();
        self.read(move |c| load_cred(c, &lease_id)).await
    }

    async fn list_db_credentials(&self, f: DbCredFilter) -> Result<Vec<DbCredential>> {
        self.scan(move |c| {
            let limit = i64::try_from(f.limit.clamp(1, 10_000)).unwrap_or(10_000);
            map_rows(
                c,
                &format!(
                    "SELECT {CRED_COLS} FROM db_credentials WHERE (CAST(?1 AS TEXT) IS NULL OR state = ?1)
                     AND (CAST(?2 AS TEXT) IS NULL OR grant_id = ?2) ORDER BY issued_at DESC, lease_id LIMIT ?3"
                ),
                args![f.state.map(DbCredState::as_str), f.grant_id, limit],
                cred_from_row,
            )
        })
        .await
    }

    async fn request_db_revocation(&self, sel: LeaseSelector, audit: AuditDraft) -> Result<Vec<String>> {
        self.write(move |ctx| {
            let (filter, arg, n) = match &sel {
                LeaseSelector::One(id) => ("lease_id = ?1", id.clone(), 0i64),
                LeaseSelector::Prefix(p) => {
                    ("SUBSTR(lease_id, 1, ?2) = ?1", p.clone(), i64::try_from(p.chars().count()).unwrap_or(i64::MAX))
                }
            };
            let all = map_rows(
                ctx.db(),
                &format!("SELECT lease_id, state FROM db_credentials WHERE {filter} AND (?2 >= 0) ORDER BY lease_id"),
                args![arg, n],
                |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
            )?;
            if let LeaseSelector::One(id) = &sel
                && all.is_empty()
            {
                return Err(StoreError::not_found("lease", id));
            }
            let marked: Vec<String> =
                all.iter().filter(|(_, s)| s == "issuing" || s == "active").map(|(l, _)| l.clone()).collect();
            // Revoking one already being revoked means "try again now".
            let retried: Vec<String> = all.iter().filter(|(_, s)| s == "revoking").map(|(l, _)| l.clone()).collect();
            if marked.is_empty() && retried.is_empty() {
                return Ok(Vec::new());
            }
            ctx.exec(
                &format!(
                    "UPDATE db_credentials SET state = 'revoking', revoke_requested_at = ?3, next_attempt_at = NULL
                     WHERE {filter} AND (?2 >= 0) AND state IN ('issuing', 'active')"
                ),
                args![arg, n, ctx.now()],
            )?;
            ctx.exec(
                &format!(
                    "UPDATE db_credentials SET next_attempt_at = NULL WHERE {filter} AND (?2 >= 0) AND state = 'revoking'"
                ),
                args![arg, n],
            )?;
            ctx.invalidate()?;
            ctx.audit(with_detail(with_detail(audit, "leases", json!(marked)), "retried", json!(retried)))?;
            Ok(marked.into_iter().chain(retried).collect())
        })
        .await
    }

    async fn expire_db_credentials(&self, now: Timestamp, audit: SweepAudit<DbCredential>) -> Result<Vec<String>> {
        self.write(move |ctx| {
            let due = map_rows(
                ctx.db(),
                &format!(
                    "SELECT {CRED_COLS} FROM db_credentials WHERE state IN ('issuing', 'active') AND expires_at <= ?1
                     ORDER BY expires_at LIMIT 1000"
                ),
                args![now],
                cred_from_row,
            )?;
            let mut out = Vec::new();
            for c in due {
                ctx.exec(
                    "UPDATE db_credentials SET state = 'revoking', revoke_requested_at = ?2, next_attempt_at = NULL
                     WHERE lease_id = ?1 AND state IN ('issuing', 'active')",
                    args![c.lease_id, now],
                )?;
                ctx.audit(audit(&c))?;
                out.push(c.lease_id);
            }
            Ok(out)
        })
        .await
    }

    async fn due_db_revocations(&self, now: Timestamp, limit: usize) -> Result<Vec<DbCredential>> {
        self.scan(move |c| {
            let limit = i64::try_from(limit.clamp(1, 10_000)).unwrap_or(10_000);
            map_rows(
                c,
                &format!(
                    "SELECT {CRED_COLS} FROM db_credentials WHERE state = 'revoking'
                     AND (next_attempt_at IS NULL OR next_attempt_at <= ?1) ORDER BY revoke_requested_at, lease_id LIMIT ?2"
                ),
                args![now, limit],
                cred_from_row,
            )
        })
        .await
    }

    async fn finish_db_revocation(&self, lease_id: &str, audit: AuditDraft) -> Result<bool> {
        let lease_id = lease_id.to_string();
        self.write(move |ctx| {
            let c = load_cred(ctx.db(), &lease_id)?.ok_or_else(|| StoreError::not_found("lease", &lease_id))?;
            // Issuing too: the issuer drops a role it created after the grant
            // ended, and records that here.
            let n = ctx.exec(
                "UPDATE db_credentials SET state = 'revoked', revoked_at = ?2, next_attempt_at = NULL,
                 revoke_requested_at = COALESCE(revoke_requested_at, ?2)
                 WHERE lease_id = ?1 AND state IN ('revoking', 'issuing')",
                args![lease_id, ctx.now()],
            )?;
            if n == 0 {
                return Ok(false);
            }
            ctx.audit(with_detail(audit, "attempts", json!(c.revoke_attempts + 1)))?;
            Ok(true)
        })
        .await
    }

    async fn fail_db_revocation(
        &self,
        lease_id: &str,
        error: &str,
        next_attempt_at: Timestamp,
        audit: AuditDraft,
    ) -> Result<i64> {
        let (lease_id, error) = (lease_id.to_string(), error.to_string());
        self.write(move |ctx| {
            let n = ctx.exec(
                "UPDATE db_credentials SET revoke_attempts = revoke_attempts + 1, last_error = ?2, next_attempt_at = ?3
                 WHERE lease_id = ?1 AND state = 'revoking'",
                args![lease_id, error, next_attempt_at],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("lease {lease_id} is not being revoked")));
            }
            let attempts: i64 = map_opt(
                ctx.db(),
                "SELECT revoke_attempts FROM db_credentials WHERE lease_id = ?1",
                args![lease_id],
                |r| r.get(0),
            )?
            .unwrap_or(0);
            ctx.audit(with_detail(audit, "attempts", json!(attempts)))?;
            Ok(attempts)
        })
        .await
    }

    async fn renew_db_credential(
        &self,
        lease_id: &str,
        expires_at: Timestamp,
        audit: AuditDraft,
    ) -> Result<DbCredential> {
        let lease_id = lease_id.to_string();
        self.write(move |ctx| {
            let c = load_cred(ctx.db(), &lease_id)?.ok_or_else(|| StoreError::not_found("lease", &lease_id))?;
            if c.state != DbCredState::Active {
                return Err(StoreError::Conflict(format!("lease {lease_id} is {}, not active", c.state.as_str())));
            }
            let g = map_opt(ctx.db(), "SELECT state, expires_at FROM grants WHERE id = ?1", args![c.grant_id], |r| {
                Ok((r.get::<String>(0)?, r.get::<Timestamp>(1)?))
            })?
            .ok_or_else(|| StoreError::not_found("grant", &c.grant_id))?;
            if g.0 != "active" || ctx.now() >= g.1 {
                return Err(StoreError::Conflict(format!("grant {} is not active", c.grant_id)));
            }
            if expires_at > g.1 {
                return Err(StoreError::Precondition("a database credential cannot outlive its grant".into()));
            }
            ctx.exec(
                "UPDATE db_credentials SET expires_at = ?2 WHERE lease_id = ?1 AND state = 'active'",
                args![lease_id, expires_at],
            )?;
            ctx.audit(audit)?;
            load_cred(ctx.db(), &lease_id)?.ok_or_else(|| StoreError::not_found("lease", &lease_id))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use latch_core::{Clock, ManualClock};

    use super::*;
    use crate::{JitStore, Store};

    use crate::ops::test_support::{ev, grant};

    async fn open() -> (tempfile::TempDir, SqlStore, ManualClock) {
        let (dir, store, clock) = crate::ops::test_support::open();
        let conn = DbConnection {
            name: "app".into(),
            host: "127.0.0.1".into(),
            port: 5432,
            database: "app".into(),
            username: "admin".into(),
            sslmode: "disable".into(),
            ca_cert: None,
            sealed_password: "00".into(),
            created_at: clock.now(),
            created_by: "user:admin".into(),
        };
        store.create_db_connection(conn.clone(), ev("db.connection.create")).await.unwrap();
        let dup = store.create_db_connection(conn, ev("db.connection.create")).await.unwrap_err();
        assert!(dup.to_string().contains("already exists"), "{dup}");
        (dir, store, clock)
    }

    fn cred(lease: &str, grant: &str, expires_at: Timestamp, now: Timestamp) -> DbCredential {
        DbCredential {
            lease_id: lease.into(),
            grant_id: grant.into(),
            principal_id: "usr_alice".into(),
            principal_name: "alice".into(),
            role: "app".into(),
            connection: "app".into(),
            username: format!("latch_{}", lease.rsplit('/').next().unwrap_or("x")),
            revocation: vec!["DROP ROLE {{name}}".into()],
            issued_at: now,
            expires_at,
            state: DbCredState::Issuing,
            revoke_requested_at: None,
            revoked_at: None,
            revoke_attempts: 0,
            last_error: None,
            next_attempt_at: None,
        }
    }

    async fn state(store: &SqlStore, lease: &str) -> DbCredState {
        store.db_credential(lease).await.unwrap().unwrap().state
    }

    #[tokio::test]
    async fn a_credential_lives_and_dies_with_its_grant() {
        let (_d, store, clock) = open().await;
        let end = grant(&store, &clock, "g1").await;
        let now = clock.now();
        // Never past the grant, never on a missing connection.
        let e = store
            .record_db_credential(cred("database/creds/app/a", "g1", end.plus(Duration::from_secs(1)), now), ev("x"))
            .await;
        assert!(matches!(e, Err(StoreError::Precondition(_))), "{e:?}");
        let mut other = cred("database/creds/app/a", "g1", end, now);
        other.connection = "nope".into();
        assert!(matches!(store.record_db_credential(other, ev("x")).await, Err(StoreError::NotFound { .. })));

        store.record_db_credential(cred("database/creds/app/a", "g1", end, now), ev("db.creds.issue")).await.unwrap();
        store.record_db_credential(cred("database/creds/app/b", "g1", end, now), ev("db.creds.issue")).await.unwrap();
        assert!(store.activate_db_credential("database/creds/app/a").await.unwrap());
        assert!(!store.activate_db_credential("database/creds/app/a").await.unwrap(), "once");
        // The connection cannot go while they live.
        let e = store.delete_db_connection("app", ev("db.connection.delete")).await.unwrap_err();
        assert!(e.to_string().contains("not yet revoked"), "{e}");

        // Revoking the grant marks both (the one still issuing too) in its transaction.
        let (_, _) = store.revoke_grant("g1", "alice", "done", ev("grant.revoke")).await.unwrap();
        assert_eq!(state(&store, "database/creds/app/a").await, DbCredState::Revoking);
        assert_eq!(state(&store, "database/creds/app/b").await, DbCredState::Revoking);
        let last = store.list_audit(crate::AuditQuery { limit: 1000, ..Default::default() }).await.unwrap();
        let revoke = last.iter().find(|e| e.action == "grant.revoke").unwrap();
        assert_eq!(revoke.details["db_leases_revoking"], json!(["database/creds/app/a", "database/creds/app/b"]));
        // An issuer finishing late cannot make it active again.
        assert!(!store.activate_db_credential("database/creds/app/b").await.unwrap());
        let e = store.renew_db_credential("database/creds/app/a", end, ev("db.lease.renew")).await.unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)), "{e}");

        // A failed drop is counted and scheduled; it is not due before its time.
        assert_eq!(store.due_db_revocations(clock.now(), 10).await.unwrap().len(), 2);
        let next = clock.now().plus(Duration::from_secs(4));
        assert_eq!(
            store.fail_db_revocation("database/creds/app/a", "boom", next, ev("db.creds.revoke_failed")).await.unwrap(),
            1
        );
        let due: Vec<String> =
            store.due_db_revocations(clock.now(), 10).await.unwrap().into_iter().map(|c| c.lease_id).collect();
        assert_eq!(due, ["database/creds/app/b"]);
        let a = store.db_credential("database/creds/app/a").await.unwrap().unwrap();
        assert_eq!((a.revoke_attempts, a.last_error.as_deref(), a.next_attempt_at), (1, Some("boom"), Some(next)));
        // Revoking it again means "retry now".
        let again = store
            .request_db_revocation(LeaseSelector::One("database/creds/app/a".into()), ev("db.lease.revoke"))
            .await
            .unwrap();
        assert_eq!(again, ["database/creds/app/a"]);
        assert_eq!(store.due_db_revocations(clock.now(), 10).await.unwrap().len(), 2);

        assert!(store.finish_db_revocation("database/creds/app/a", ev("db.creds.revoked")).await.unwrap());
        assert!(!store.finish_db_revocation("database/creds/app/a", ev("db.creds.revoked")).await.unwrap(), "once");
        assert!(store.finish_db_revocation("database/creds/app/b", ev("db.creds.revoked")).await.unwrap());
        store.delete_db_connection("app", ev("db.connection.delete")).await.unwrap();
    }

    #[tokio::test]
    async fn leases_renew_within_the_grant_expire_and_revoke_by_prefix() {
        let (_d, store, clock) = open().await;
        let end = grant(&store, &clock, "g1").await;
        let now = clock.now();
        let short = now.plus(Duration::from_secs(600));
        for l in ["database/creds/app/a", "database/creds/app/b", "database/creds/apps/c"] {
            store.record_db_credential(cred(l, "g1", short, now), ev("db.creds.issue")).await.unwrap();
            store.activate_db_credential(l).await.unwrap();
        }
        let e = store.renew_db_credential("database/creds/app/a", end.plus(Duration::from_secs(1)), ev("r")).await;
        assert!(matches!(e, Err(StoreError::Precondition(_))), "{e:?}");
        let r = store.renew_db_credential("database/creds/app/a", end, ev("db.lease.renew")).await.unwrap();
        assert_eq!(r.expires_at, end);

        // b and c end with their lease; a (renewed) does not.
        clock.advance(Duration::from_secs(601));
        let expired = store.expire_db_credentials(clock.now(), Box::new(|_| ev("db.lease.expire"))).await.unwrap();
        assert_eq!(expired, ["database/creds/app/b", "database/creds/apps/c"]);
        assert_eq!(state(&store, "database/creds/app/a").await, DbCredState::Active);

        // The prefix is literal: `app/` does not reach `apps/`, and `%` or `_` are not wildcards.
        let none =
            store.request_db_revocation(LeaseSelector::Prefix("database/creds/ap%".into()), ev("p")).await.unwrap();
        assert!(none.is_empty());
        let hit =
            store.request_db_revocation(LeaseSelector::Prefix("database/creds/app/".into()), ev("p")).await.unwrap();
        assert_eq!(hit, ["database/creds/app/a", "database/creds/app/b"], "a marked, b retried");
        let missing = store.request_db_revocation(LeaseSelector::One("database/creds/app/zz".into()), ev("p")).await;
        assert!(matches!(missing, Err(StoreError::NotFound { .. })));
        let listed = store
            .list_db_credentials(DbCredFilter { state: Some(DbCredState::Revoking), grant_id: None, limit: 10 })
            .await
            .unwrap();
        assert_eq!(listed.len(), 3);
    }
}
