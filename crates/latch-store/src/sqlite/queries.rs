//! `Store` for SQLite: the domain operations as SQL.

use std::sync::Arc;

use async_trait::async_trait;
use latch_audit::{AuditDraft, AuditEvent, Checkpoint, Outcome};
use latch_core::{Principal, PrincipalKind, Timestamp};
use latch_crypto::SigningKey;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqliteStore, WriteCtx, backend, sql_err};
use crate::model::*;
use crate::{AuditQuery, Result, Store, StoreError};

const USER_COLS: &str = "id, name, password_hash, disabled, totp_secret, totp_confirmed, totp_last_step, created_at";
const SP_COLS: &str = "id, name, description, secret_hash, secret_rotated_at, disabled, created_at";
const AUDIT_COLS: &str = "seq, time, actor, action, target, outcome, request_id, source, details, hash";

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        password_hash: r.get(2)?,
        disabled: r.get(3)?,
        totp_secret: r.get(4)?,
        totp_confirmed: r.get(5)?,
        totp_last_step: r.get(6)?,
        created_at: Timestamp(r.get(7)?),
        groups: Vec::new(),
    })
}

fn sp_from_row(r: &Row<'_>) -> rusqlite::Result<ServicePrincipal> {
    Ok(ServicePrincipal {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        secret_hash: r.get(3)?,
        secret_rotated_at: Timestamp(r.get(4)?),
        disabled: r.get(5)?,
        created_at: Timestamp(r.get(6)?),
        groups: Vec::new(),
    })
}

pub(crate) fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    let outcome: String = r.get(5)?;
    let details: String = r.get(8)?;
    Ok(AuditEvent {
        seq: r.get(0)?,
        time: Timestamp(r.get(1)?),
        actor: r.get(2)?,
        action: r.get(3)?,
        target: r.get(4)?,
        // An unknown outcome can only come from tampering: refuse to decode
        // (the verifier reports the row's seq). Undecodable details are kept as
        // raw text, which changes their canonical bytes and breaks the chain.
        outcome: Outcome::parse(&outcome).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, "unknown audit outcome".into())
        })?,
        request_id: r.get(6)?,
        source: r.get(7)?,
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
        hash: r.get(9)?,
    })
}

pub(crate) fn checkpoint_from_row(r: &Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint {
        seq: r.get(0)?,
        hash: r.get(1)?,
        time: Timestamp(r.get(2)?),
        key_id: r.get(3)?,
        signature: r.get(4)?,
    })
}

fn groups_of(conn: &Connection, principal_id: &str) -> Result<Vec<String>> {
    let mut st = conn
        .prepare_cached(
            "SELECT g.name FROM group_members m JOIN groups g ON g.id = m.group_id
             WHERE m.principal_id = ?1 ORDER BY g.name",
        )
        .map_err(backend)?;
    let rows = st.query_map([principal_id], |r| r.get(0)).map_err(backend)?;
    rows.collect::<rusqlite::Result<Vec<String>>>().map_err(backend)
}

fn find_user(conn: &Connection, name: &str) -> Result<Option<User>> {
    let sql = format!("SELECT {USER_COLS} FROM users WHERE name = ?1");
    let user =
        conn.prepare_cached(&sql).map_err(backend)?.query_row([name], user_from_row).optional().map_err(backend)?;
    match user {
        Some(mut u) => {
            u.groups = groups_of(conn, &u.id)?;
            Ok(Some(u))
        }
        None => Ok(None),
    }
}

fn require_user(conn: &Connection, name: &str) -> Result<User> {
    find_user(conn, name)?.ok_or_else(|| StoreError::not_found("user", name))
}

fn find_sp(conn: &Connection, name_or_id: &str) -> Result<Option<ServicePrincipal>> {
    let sql = format!("SELECT {SP_COLS} FROM service_principals WHERE name = ?1 OR id = ?1");
    let sp =
        conn.prepare_cached(&sql).map_err(backend)?.query_row([name_or_id], sp_from_row).optional().map_err(backend)?;
    match sp {
        Some(mut s) => {
            s.groups = groups_of(conn, &s.id)?;
            Ok(Some(s))
        }
        None => Ok(None),
    }
}

fn require_sp(conn: &Connection, name: &str) -> Result<ServicePrincipal> {
    find_sp(conn, name)?.ok_or_else(|| StoreError::not_found("service principal", name))
}

fn group_id(conn: &Connection, name: &str) -> Result<String> {
    conn.query_row("SELECT id FROM groups WHERE name = ?1", [name], |r| r.get(0))
        .optional()
        .map_err(backend)?
        .ok_or_else(|| StoreError::not_found("group", name))
}

fn add_memberships(ctx: &WriteCtx<'_>, principal_id: &str, kind: PrincipalKind, groups: &[String]) -> Result<()> {
    for g in groups {
        let gid = group_id(ctx.conn(), g)?;
        ctx.exec(
            "INSERT INTO group_members (group_id, principal_id, principal_kind, added_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (group_id, principal_id) DO NOTHING",
            params![gid, principal_id, kind.as_str(), ctx.now().millis()],
        )
        .map_err(backend)?;
    }
    Ok(())
}

fn revoke_sessions_of(ctx: &WriteCtx<'_>, principal_id: &str) -> Result<usize> {
    ctx.exec(
        "UPDATE sessions SET revoked_at = ?2 WHERE principal_id = ?1 AND revoked_at IS NULL",
        params![principal_id, ctx.now().millis()],
    )
    .map_err(backend)
}

/// Ends everything a principal holds: sessions, active grants (and their
/// requests) and the tokens issued under them. Returns the grant ids ended.
fn revoke_everything_of(ctx: &WriteCtx<'_>, principal_id: &str, by: &str, reason: &str) -> Result<Vec<String>> {
    revoke_sessions_of(ctx, principal_id)?;
    let now = ctx.now().millis();
    let grants: Vec<(String, String)> = {
        let mut st = ctx
            .conn()
            .prepare_cached(
                "SELECT id, request_id FROM grants WHERE principal_id = ?1 AND state = 'active' ORDER BY id",
            )
            .map_err(backend)?;
        let rows = st.query_map([principal_id], |r| Ok((r.get(0)?, r.get(1)?))).map_err(backend)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)?
    };
    for (grant, request) in &grants {
        ctx.exec(
                "UPDATE grants SET state = 'revoked', ended_at = ?2, revoked_by = ?3, revoke_reason = ?4 WHERE id = ?1 AND state = 'active'",
                params![grant, now, by, reason],
            )
            .map_err(backend)?;
        ctx.exec(
            "UPDATE access_requests SET state = 'revoked', decided_at = ?2, decided_by = ?3, decision_note = ?4
                 WHERE id = ?1 AND state = 'active'",
            params![request, now, by, reason],
        )
        .map_err(backend)?;
        ctx.exec("UPDATE tokens SET revoked_at = ?2 WHERE grant_id = ?1 AND revoked_at IS NULL", params![grant, now])
            .map_err(backend)?;
    }
    Ok(grants.into_iter().map(|(g, _)| g).collect())
}

/// `audit` with the ended grants added to its details.
fn with_ended(audit: AuditDraft, grants: Vec<String>) -> AuditDraft {
    let mut details = audit.details.clone();
    if let Some(m) = details.as_object_mut() {
        m.insert("grants_revoked".into(), serde_json::json!(grants));
    }
    audit.details(details)
}

fn conflict(e: StoreError, what: String) -> StoreError {
    match e {
        StoreError::Conflict(_) => StoreError::Conflict(what),
        other => other,
    }
}

fn group_members(conn: &Connection, gid: &str) -> Result<Vec<Member>> {
    let mut st = conn
        .prepare_cached(
            "SELECT m.principal_kind, COALESCE(u.name, sp.name, m.principal_id) AS n FROM group_members m
             LEFT JOIN users u ON m.principal_kind = 'user' AND u.id = m.principal_id
             LEFT JOIN service_principals sp ON m.principal_kind = 'service_principal' AND sp.id = m.principal_id
             WHERE m.group_id = ?1 ORDER BY n",
        )
        .map_err(backend)?;
    let rows = st.query_map([gid], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, name) = row.map_err(backend)?;
        let kind = PrincipalKind::parse(&kind).unwrap_or(PrincipalKind::User);
        out.push(Member { kind, name });
    }
    Ok(out)
}

fn member_id(conn: &Connection, kind: PrincipalKind, name: &str) -> Result<String> {
    match kind {
        PrincipalKind::User => Ok(require_user(conn, name)?.id),
        PrincipalKind::ServicePrincipal => Ok(require_sp(conn, name)?.id),
    }
}

fn affected_or_missing(n: usize, kind: &'static str, name: &str) -> Result<()> {
    if n == 0 { Err(StoreError::not_found(kind, name)) } else { Ok(()) }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: NewUser, groups: Vec<String>, audit: AuditDraft) -> Result<User> {
        self.write(move |ctx| {
            let now = ctx.now().millis();
            ctx.exec(
                "INSERT INTO users (id, name, password_hash, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                params![user.id, user.name, user.password_hash, now],
            )
            .map_err(|e| conflict(sql_err(e), format!("user {:?} already exists", user.name)))?;
            add_memberships(ctx, &user.id, PrincipalKind::User, &groups)?;
            ctx.audit(audit)?;
            require_user(ctx.conn(), &user.name)
        })
        .await
    }

    async fn get_user(&self, name: &str) -> Result<Option<User>> {
        let name = name.to_string();
        self.read(move |c| find_user(c, &name)).await
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        self.scan(|c| {
            let sql = format!("SELECT {USER_COLS} FROM users ORDER BY name");
            let mut st = c.prepare(&sql).map_err(backend)?;
            let users = st
                .query_map([], user_from_row)
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            users
                .into_iter()
                .map(|mut u| {
                    u.groups = groups_of(c, &u.id)?;
                    Ok(u)
                })
                .collect()
        })
        .await
    }

    async fn set_user_disabled(&self, name: &str, disabled: bool, audit: AuditDraft) -> Result<User> {
        let name = name.to_string();
        self.write(move |ctx| {
            let user = require_user(ctx.conn(), &name)?;
            ctx.exec(
                "UPDATE users SET disabled = ?2, updated_at = ?3 WHERE id = ?1",
                params![user.id, disabled, ctx.now().millis()],
            )
            .map_err(backend)?;
            let ended =
                if disabled { revoke_everything_of(ctx, &user.id, &audit.actor, "user disabled")? } else { Vec::new() };
            ctx.audit(with_ended(audit, ended))?;
            require_user(ctx.conn(), &name)
        })
        .await
    }

    async fn delete_user(&self, name: &str, audit: AuditDraft) -> Result<()> {
        let name = name.to_string();
        self.write(move |ctx| {
            let user = require_user(ctx.conn(), &name)?;
            let ended = revoke_everything_of(ctx, &user.id, &audit.actor, "user deleted")?;
            ctx.exec("DELETE FROM group_members WHERE principal_id = ?1", [&user.id]).map_err(backend)?;
            ctx.exec("DELETE FROM users WHERE id = ?1", [&user.id]).map_err(backend)?;
            ctx.audit(with_ended(audit, ended))?;
            Ok(())
        })
        .await
    }

    async fn set_password(&self, name: &str, password_hash: String, audit: AuditDraft) -> Result<()> {
        let name = name.to_string();
        self.write(move |ctx| {
            let n = ctx
                .exec(
                    "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE name = ?1",
                    params![name, password_hash, ctx.now().millis()],
                )
                .map_err(backend)?;
            affected_or_missing(n, "user", &name)?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn set_totp_pending(&self, user_id: &str, secret: String, audit: AuditDraft) -> Result<()> {
        let user_id = user_id.to_string();
        self.write(move |ctx| {
            let n = ctx
                .exec(
                    "UPDATE users SET totp_secret = ?2, totp_confirmed = FALSE, totp_last_step = NULL, updated_at = ?3
                     WHERE id = ?1",
                    params![user_id, secret, ctx.now().millis()],
                )
                .map_err(backend)?;
            affected_or_missing(n, "user", &user_id)?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn confirm_totp(&self, user_id: &str, step: i64, audit: AuditDraft) -> Result<()> {
        let user_id = user_id.to_string();
        self.write(move |ctx| {
            let n = ctx
                .exec(
                    "UPDATE users SET totp_confirmed = TRUE, totp_last_step = ?2, updated_at = ?3
                     WHERE id = ?1 AND totp_secret IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < ?2)",
                    params![user_id, step, ctx.now().millis()],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::Precondition("this TOTP code was already used".into()));
            }
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn reset_totp(&self, name: &str, audit: AuditDraft) -> Result<()> {
        let name = name.to_string();
        self.write(move |ctx| {
            let n = ctx.exec(
                    "UPDATE users SET totp_secret = NULL, totp_confirmed = FALSE, totp_last_step = NULL, updated_at = ?2
                     WHERE name = ?1",
                    params![name, ctx.now().millis()],
                )
                .map_err(backend)?;
            affected_or_missing(n, "user", &name)?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn create_group(&self, name: &str, description: &str, audit: AuditDraft) -> Result<Group> {
        let (name, description) = (name.to_string(), description.to_string());
        let id = latch_crypto::new_id("grp").map_err(backend)?;
        self.write(move |ctx| {
            let now = ctx.now();
            ctx.exec(
                "INSERT INTO groups (id, name, description, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, name, description, now.millis()],
            )
            .map_err(|e| conflict(sql_err(e), format!("group {name:?} already exists")))?;
            ctx.audit(audit)?;
            Ok(Group { id, name, description, created_at: now, members: Vec::new() })
        })
        .await
    }

    async fn get_group(&self, name: &str) -> Result<Option<Group>> {
        let name = name.to_string();
        self.read(move |c| {
            let g = c
                .query_row("SELECT id, name, description, created_at FROM groups WHERE name = ?1", [&name], |r| {
                    Ok(Group {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        description: r.get(2)?,
                        created_at: Timestamp(r.get(3)?),
                        members: Vec::new(),
                    })
                })
                .optional()
                .map_err(backend)?;
            match g {
                Some(mut g) => {
                    g.members = group_members(c, &g.id)?;
                    Ok(Some(g))
                }
                None => Ok(None),
            }
        })
        .await
    }

    async fn list_groups(&self) -> Result<Vec<Group>> {
        self.scan(|c| {
            let mut st =
                c.prepare("SELECT id, name, description, created_at FROM groups ORDER BY name").map_err(backend)?;
            let groups = st
                .query_map([], |r| {
                    Ok(Group {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        description: r.get(2)?,
                        created_at: Timestamp(r.get(3)?),
                        members: Vec::new(),
                    })
                })
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            groups
                .into_iter()
                .map(|mut g| {
                    g.members = group_members(c, &g.id)?;
                    Ok(g)
                })
                .collect()
        })
        .await
    }

    async fn delete_group(&self, name: &str, audit: AuditDraft) -> Result<()> {
        let name = name.to_string();
        self.write(move |ctx| {
            let gid = group_id(ctx.conn(), &name)?;
            ctx.exec("DELETE FROM group_members WHERE group_id = ?1", [&gid]).map_err(backend)?;
            ctx.exec("DELETE FROM groups WHERE id = ?1", [&gid]).map_err(backend)?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn add_member(&self, group: &str, kind: PrincipalKind, member: &str, audit: AuditDraft) -> Result<()> {
        let (group, member) = (group.to_string(), member.to_string());
        self.write(move |ctx| {
            let gid = group_id(ctx.conn(), &group)?;
            let pid = member_id(ctx.conn(), kind, &member)?;
            let n = ctx.exec(
                    "INSERT INTO group_members (group_id, principal_id, principal_kind, added_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (group_id, principal_id) DO NOTHING",
                    params![gid, pid, kind.as_str(), ctx.now().millis()],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("{member:?} is already a member of group {group:?}")));
            }
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn remove_member(&self, group: &str, kind: PrincipalKind, member: &str, audit: AuditDraft) -> Result<()> {
        let (group, member) = (group.to_string(), member.to_string());
        self.write(move |ctx| {
            let gid = group_id(ctx.conn(), &group)?;
            let pid = member_id(ctx.conn(), kind, &member)?;
            let n = ctx
                .exec("DELETE FROM group_members WHERE group_id = ?1 AND principal_id = ?2", params![gid, pid])
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::not_found("membership", format!("{member} in {group}")));
            }
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn create_sp(
        &self,
        sp: NewServicePrincipal,
        groups: Vec<String>,
        audit: AuditDraft,
    ) -> Result<ServicePrincipal> {
        self.write(move |ctx| {
            let now = ctx.now().millis();
            ctx.exec(
                "INSERT INTO service_principals (id, name, description, secret_hash, secret_rotated_at, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![sp.id, sp.name, sp.description, sp.secret_hash, now],
            )
            .map_err(|e| conflict(sql_err(e), format!("service principal {:?} already exists", sp.name)))?;
            add_memberships(ctx, &sp.id, PrincipalKind::ServicePrincipal, &groups)?;
            ctx.audit(audit)?;
            require_sp(ctx.conn(), &sp.id)
        })
        .await
    }

    async fn get_sp(&self, name_or_id: &str) -> Result<Option<ServicePrincipal>> {
        let key = name_or_id.to_string();
        self.read(move |c| find_sp(c, &key)).await
    }

    async fn list_sps(&self) -> Result<Vec<ServicePrincipal>> {
        self.scan(|c| {
            let sql = format!("SELECT {SP_COLS} FROM service_principals ORDER BY name");
            let mut st = c.prepare(&sql).map_err(backend)?;
            let sps = st
                .query_map([], sp_from_row)
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            sps.into_iter()
                .map(|mut s| {
                    s.groups = groups_of(c, &s.id)?;
                    Ok(s)
                })
                .collect()
        })
        .await
    }

    async fn rotate_sp_secret(&self, name: &str, secret_hash: String, audit: AuditDraft) -> Result<ServicePrincipal> {
        let name = name.to_string();
        self.write(move |ctx| {
            let sp = require_sp(ctx.conn(), &name)?;
            ctx.exec(
                "UPDATE service_principals SET secret_hash = ?2, secret_rotated_at = ?3 WHERE id = ?1",
                params![sp.id, secret_hash, ctx.now().millis()],
            )
            .map_err(backend)?;
            revoke_sessions_of(ctx, &sp.id)?;
            ctx.audit(audit)?;
            require_sp(ctx.conn(), &sp.id)
        })
        .await
    }

    async fn set_sp_disabled(&self, name: &str, disabled: bool, audit: AuditDraft) -> Result<ServicePrincipal> {
        let name = name.to_string();
        self.write(move |ctx| {
            let sp = require_sp(ctx.conn(), &name)?;
            ctx.exec("UPDATE service_principals SET disabled = ?2 WHERE id = ?1", params![sp.id, disabled])
                .map_err(backend)?;
            let ended = if disabled {
                revoke_everything_of(ctx, &sp.id, &audit.actor, "service principal disabled")?
            } else {
                Vec::new()
            };
            ctx.audit(with_ended(audit, ended))?;
            require_sp(ctx.conn(), &sp.id)
        })
        .await
    }

    async fn delete_sp(&self, name: &str, audit: AuditDraft) -> Result<()> {
        let name = name.to_string();
        self.write(move |ctx| {
            let sp = require_sp(ctx.conn(), &name)?;
            let ended = revoke_everything_of(ctx, &sp.id, &audit.actor, "service principal deleted")?;
            ctx.exec("DELETE FROM group_members WHERE principal_id = ?1", [&sp.id]).map_err(backend)?;
            ctx.exec("DELETE FROM service_principals WHERE id = ?1", [&sp.id]).map_err(backend)?;
            ctx.audit(with_ended(audit, ended))?;
            Ok(())
        })
        .await
    }

    async fn login(&self, s: NewSession, totp_step: Option<i64>, audit: AuditDraft) -> Result<Session> {
        self.write(move |ctx| {
            if let Some(step) = totp_step {
                // Compare-and-set: two logins racing with one code cannot both win.
                let n = ctx.exec(
                        "UPDATE users SET totp_last_step = ?2
                         WHERE id = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
                        params![s.principal_id, step],
                    )
                    .map_err(backend)?;
                if n == 0 {
                    return Err(StoreError::Precondition("this TOTP code was already used".into()));
                }
            }
            let now = ctx.now();
            ctx.exec(
                    "INSERT INTO sessions (id, token_hash, principal_id, principal_kind, mfa, source, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        s.id,
                        s.token_hash,
                        s.principal_id,
                        s.principal_kind.as_str(),
                        s.mfa,
                        s.source,
                        now.millis(),
                        s.expires_at.millis()
                    ],
                )
                .map_err(sql_err)?;
            ctx.audit(audit)?;
            Ok(Session {
                id: s.id,
                principal_id: s.principal_id,
                principal_kind: s.principal_kind,
                mfa: s.mfa,
                created_at: now,
                expires_at: s.expires_at,
            })
        })
        .await
    }

    async fn authenticate(&self, token_hash: &str, now: Timestamp) -> Result<Option<Principal>> {
        let token_hash = token_hash.to_string();
        self.read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT s.id, s.principal_id, s.principal_kind, s.mfa,
                            COALESCE(u.name, sp.name), COALESCE(u.disabled, sp.disabled),
                            (SELECT GROUP_CONCAT(g.name, char(31)) FROM group_members m JOIN groups g ON g.id = m.group_id
                             WHERE m.principal_id = s.principal_id)
                     FROM sessions s
                     LEFT JOIN users u ON s.principal_kind = 'user' AND u.id = s.principal_id
                     LEFT JOIN service_principals sp ON s.principal_kind = 'service_principal' AND sp.id = s.principal_id
                     WHERE s.token_hash = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2",
                )
                .map_err(backend)?
                .query_row(params![token_hash, now.millis()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, bool>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<bool>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                    ))
                })
                .optional()
                .map_err(backend)?;
            let Some((session_id, id, kind, mfa, Some(name), Some(false), groups)) = row else {
                return Ok(None);
            };
            let Some(kind) = PrincipalKind::parse(&kind) else { return Ok(None) };
            let mut groups: Vec<String> =
                groups.map(|g| g.split('\u{1f}').map(str::to_string).collect()).unwrap_or_default();
            groups.sort();
            Ok(Some(Principal { id, name, kind, groups, mfa, session_id }))
        })
        .await
    }

    async fn revoke_session(&self, session_id: &str, audit: AuditDraft) -> Result<()> {
        let session_id = session_id.to_string();
        self.write(move |ctx| {
            let n = ctx
                .exec(
                    "UPDATE sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                    params![session_id, ctx.now().millis()],
                )
                .map_err(backend)?;
            affected_or_missing(n, "session", &session_id)?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn append_audit(&self, audit: AuditDraft) -> Result<AuditEvent> {
        self.write(move |ctx| ctx.audit(audit)).await
    }

    async fn list_audit(&self, q: AuditQuery) -> Result<Vec<AuditEvent>> {
        self.scan(move |c| {
            let sql = format!(
                "SELECT {AUDIT_COLS} FROM audit_events
                 WHERE seq > ?1 AND (?2 IS NULL OR actor = ?2) AND (?3 IS NULL OR action = ?3)
                 ORDER BY seq LIMIT ?4"
            );
            let limit = i64::try_from(q.limit.clamp(1, 10_000)).unwrap_or(10_000);
            let mut st = c.prepare_cached(&sql).map_err(backend)?;
            let rows = st.query_map(params![q.since, q.actor, q.action, limit], audit_from_row).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn audit_head(&self) -> Result<(i64, String)> {
        self.read(|c| super::load_head(c).map(|h| (h.seq, h.hash))).await
    }

    async fn list_checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.scan(|c| {
            let mut st = c
                .prepare("SELECT seq, hash, time, key_id, signature FROM audit_checkpoints ORDER BY seq")
                .map_err(backend)?;
            let rows = st.query_map([], checkpoint_from_row).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn write_checkpoint(&self, key: Arc<SigningKey>) -> Result<Option<Checkpoint>> {
        self.write(move |ctx| {
            let (seq, hash) = ctx.head();
            if seq == 0 {
                return Ok(None);
            }
            let exists: Option<i64> = ctx
                .conn()
                .query_row("SELECT seq FROM audit_checkpoints WHERE seq = ?1", [seq], |r| r.get(0))
                .optional()
                .map_err(backend)?;
            if exists.is_some() {
                return Ok(None);
            }
            let cp = Checkpoint::sign(&key, seq, hash, ctx.now());
            ctx.exec(
                "INSERT INTO audit_checkpoints (seq, hash, time, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![cp.seq, cp.hash, cp.time.millis(), cp.key_id, cp.signature],
            )
            .map_err(backend)?;
            Ok(Some(cp))
        })
        .await
    }

    async fn is_empty(&self) -> Result<bool> {
        self.read(|c| {
            let n: i64 = c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0)).map_err(backend)?;
            Ok(n == 0)
        })
        .await
    }
}
