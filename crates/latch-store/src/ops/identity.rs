//! `Store` for SQLite: the domain operations as SQL.

use std::sync::Arc;

use crate::args;
use crate::sql::{Db, Row, map_opt, map_rows};
use async_trait::async_trait;
use latch_audit::{AuditDraft, AuditEvent, Checkpoint, Outcome};
use latch_core::{Principal, PrincipalKind, Timestamp};
use latch_crypto::SigningKey;

use crate::model::*;
use crate::store::Engine;
use crate::{AuditQuery, Result, Store, StoreError};
use crate::{SqlStore, WriteCtx};

const USER_COLS: &str = "id, name, password_hash, disabled, totp_secret, totp_confirmed, totp_last_step, created_at";
const SP_COLS: &str = "id, name, description, secret_hash, secret_rotated_at, disabled, created_at, \
                       secret_expires_at, secret_lifetime_ms, previous_secret_hash, previous_secret_expires_at";
const AUDIT_COLS: &str = "seq, time, actor, action, target, outcome, request_id, source, details, hash";

fn user_from_row(r: &Row) -> Result<User> {
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

fn sp_from_row(r: &Row) -> Result<ServicePrincipal> {
    Ok(ServicePrincipal {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        secret_hash: r.get(3)?,
        secret_rotated_at: Timestamp(r.get(4)?),
        disabled: r.get(5)?,
        created_at: Timestamp(r.get(6)?),
        secret_expires_at: r.get(7)?,
        secret_lifetime_ms: r.get(8)?,
        previous_secret_hash: r.get(9)?,
        previous_secret_expires_at: r.get(10)?,
        groups: Vec::new(),
    })
}

pub(crate) fn audit_from_row(r: &Row) -> Result<AuditEvent> {
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
        outcome: Outcome::parse(&outcome)
            .ok_or_else(|| StoreError::Backend(format!("unknown audit outcome {outcome:?}")))?,
        request_id: r.get(6)?,
        source: r.get(7)?,
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
        hash: r.get(9)?,
    })
}

fn group_from_row(r: &Row) -> Result<Group> {
    Ok(Group {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        created_at: Timestamp(r.get(3)?),
        members: Vec::new(),
    })
}

pub(crate) fn checkpoint_from_row(r: &Row) -> Result<Checkpoint> {
    Ok(Checkpoint {
        seq: r.get(0)?,
        hash: r.get(1)?,
        time: Timestamp(r.get(2)?),
        key_id: r.get(3)?,
        signature: r.get(4)?,
    })
}

pub(crate) fn groups_of(db: &dyn Db, principal_id: &str) -> Result<Vec<String>> {
    map_rows(
        db,
        "SELECT g.name FROM group_members m JOIN groups g ON g.id = m.group_id
         WHERE m.principal_id = ?1 ORDER BY g.name",
        args![principal_id],
        |r| r.get(0),
    )
}

pub(crate) fn find_user(db: &dyn Db, name: &str) -> Result<Option<User>> {
    let sql = format!("SELECT {USER_COLS} FROM users WHERE name = ?1");
    let user = map_opt(db, &sql, args![name], user_from_row)?;
    match user {
        Some(mut u) => {
            u.groups = groups_of(db, &u.id)?;
            Ok(Some(u))
        }
        None => Ok(None),
    }
}

fn require_user(db: &dyn Db, name: &str) -> Result<User> {
    find_user(db, name)?.ok_or_else(|| StoreError::not_found("user", name))
}

fn find_sp(db: &dyn Db, name_or_id: &str) -> Result<Option<ServicePrincipal>> {
    let sql = format!("SELECT {SP_COLS} FROM service_principals WHERE name = ?1 OR id = ?1");
    let sp = map_opt(db, &sql, args![name_or_id], sp_from_row)?;
    match sp {
        Some(mut s) => {
            s.groups = groups_of(db, &s.id)?;
            Ok(Some(s))
        }
        None => Ok(None),
    }
}

pub(crate) fn require_sp(db: &dyn Db, name: &str) -> Result<ServicePrincipal> {
    find_sp(db, name)?.ok_or_else(|| StoreError::not_found("service principal", name))
}

fn group_id(db: &dyn Db, name: &str) -> Result<String> {
    map_opt(db, "SELECT id FROM groups WHERE name = ?1", args![name], |r| r.get(0))?
        .ok_or_else(|| StoreError::not_found("group", name))
}

fn add_memberships(ctx: &WriteCtx<'_>, principal_id: &str, kind: PrincipalKind, groups: &[String]) -> Result<()> {
    for g in groups {
        let gid = group_id(ctx.db(), g)?;
        ctx.exec(
            "INSERT INTO group_members (group_id, principal_id, principal_kind, added_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (group_id, principal_id) DO NOTHING",
            args![gid, principal_id, kind.as_str(), ctx.now()],
        )?;
    }
    Ok(())
}

fn revoke_sessions_of(ctx: &mut WriteCtx<'_>, principal_id: &str) -> Result<u64> {
    ctx.invalidate()?;
    ctx.exec(
        "UPDATE sessions SET revoked_at = ?2 WHERE principal_id = ?1 AND revoked_at IS NULL",
        args![principal_id, ctx.now()],
    )
}

/// Ends everything a principal holds: sessions, active grants (and their
/// requests) and the tokens issued under them. Returns the grant ids ended.
fn revoke_everything_of(ctx: &mut WriteCtx<'_>, principal_id: &str, by: &str, reason: &str) -> Result<Vec<String>> {
    revoke_sessions_of(ctx, principal_id)?;
    let now = ctx.now().millis();
    let grants: Vec<(String, String)> = map_rows(
        ctx.db(),
        "SELECT id, request_id FROM grants WHERE principal_id = ?1 AND state = 'active' ORDER BY id",
        args![principal_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    for (grant, request) in &grants {
        ctx.exec(
                "UPDATE grants SET state = 'revoked', ended_at = ?2, revoked_by = ?3, revoke_reason = ?4 WHERE id = ?1 AND state = 'active'",
                args![grant, now, by, reason],
            )?;
        ctx.exec(
            "UPDATE access_requests SET state = 'revoked', decided_at = ?2, decided_by = ?3, decision_note = ?4
                 WHERE id = ?1 AND state = 'active'",
            args![request, now, by, reason],
        )?;
        ctx.exec("UPDATE tokens SET revoked_at = ?2 WHERE grant_id = ?1 AND revoked_at IS NULL", args![grant, now])?;
        crate::ops::ssh::revoke_certs_of_grant(ctx, grant)?;
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

fn group_members(db: &dyn Db, gid: &str) -> Result<Vec<Member>> {
    map_rows(
        db,
        "SELECT m.principal_kind, COALESCE(u.name, sp.name, m.principal_id) AS n FROM group_members m
         LEFT JOIN users u ON m.principal_kind = 'user' AND u.id = m.principal_id
         LEFT JOIN service_principals sp ON m.principal_kind = 'service_principal' AND sp.id = m.principal_id
         WHERE m.group_id = ?1 ORDER BY n",
        args![gid],
        |r| {
            let kind = PrincipalKind::parse(&r.get::<String>(0)?).unwrap_or(PrincipalKind::User);
            Ok(Member { kind, name: r.get(1)? })
        },
    )
}

fn member_id(db: &dyn Db, kind: PrincipalKind, name: &str) -> Result<String> {
    match kind {
        PrincipalKind::User => Ok(require_user(db, name)?.id),
        PrincipalKind::ServicePrincipal => Ok(require_sp(db, name)?.id),
    }
}

fn affected_or_missing(n: u64, kind: &'static str, name: &str) -> Result<()> {
    if n == 0 { Err(StoreError::not_found(kind, name)) } else { Ok(()) }
}

/// A live session's principal and the session's end, in one query.
fn resolve_session(c: &dyn Db, token_hash: &str, now: Timestamp) -> Result<Option<(Principal, Timestamp)>> {
    // One row per group membership (or one row with a NULL group).
    let rows = c.query(
        "SELECT s.id, s.principal_id, s.principal_kind, s.mfa,
                COALESCE(u.name, sp.name), COALESCE(u.disabled, sp.disabled), g.name, s.expires_at, s.acr, s.amr
         FROM sessions s
         LEFT JOIN users u ON s.principal_kind = 'user' AND u.id = s.principal_id
         LEFT JOIN service_principals sp ON s.principal_kind = 'service_principal' AND sp.id = s.principal_id
         LEFT JOIN group_members m ON m.principal_id = s.principal_id
         LEFT JOIN groups g ON g.id = m.group_id
         WHERE s.token_hash = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2",
        args![token_hash, now],
    )?;
    let Some(r) = rows.first() else { return Ok(None) };
    let (Some(name), Some(false)) = (r.get::<Option<String>>(4)?, r.get::<Option<bool>>(5)?) else {
        return Ok(None);
    };
    let Some(kind) = PrincipalKind::parse(&r.get::<String>(2)?) else { return Ok(None) };
    let (session_id, id, mfa, expires_at, acr) = (r.get(0)?, r.get(1)?, r.get(3)?, r.get(7)?, r.get(8)?);
    let amr = r.get::<String>(9)?.split_whitespace().map(str::to_string).collect();
    let mut groups = rows
        .iter()
        .map(|r| r.get::<Option<String>>(6))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    groups.sort();
    Ok(Some((Principal { id, name, kind, groups, mfa, session_id, acr, amr }, expires_at)))
}

/// Inserts a new session (the caller appends the audit event).
pub(crate) fn insert_session(ctx: &WriteCtx<'_>, s: &NewSession) -> Result<Session> {
    let now = ctx.now();
    ctx.exec(
        "INSERT INTO sessions (id, token_hash, principal_id, principal_kind, mfa, source, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        args![s.id, s.token_hash, s.principal_id, s.principal_kind.as_str(), s.mfa, s.source, now, s.expires_at],
    )?;
    Ok(Session {
        id: s.id.clone(),
        principal_id: s.principal_id.clone(),
        principal_kind: s.principal_kind,
        mfa: s.mfa,
        created_at: now,
        expires_at: s.expires_at,
    })
}

#[async_trait]
impl Store for SqlStore {
    async fn create_user(&self, user: NewUser, groups: Vec<String>, audit: AuditDraft) -> Result<User> {
        self.write(move |ctx| {
            let now = ctx.now().millis();
            ctx.exec(
                "INSERT INTO users (id, name, password_hash, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                args![user.id, user.name, user.password_hash, now],
            )
            .map_err(|e| conflict(e, format!("user {:?} already exists", user.name)))?;
            add_memberships(ctx, &user.id, PrincipalKind::User, &groups)?;
            ctx.audit(audit)?;
            require_user(ctx.db(), &user.name)
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
            map_rows(c, &sql, args![], user_from_row)?
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
            let user = require_user(ctx.db(), &name)?;
            ctx.exec(
                "UPDATE users SET disabled = ?2, updated_at = ?3 WHERE id = ?1",
                args![user.id, disabled, ctx.now()],
            )?;
            let ended =
                if disabled { revoke_everything_of(ctx, &user.id, &audit.actor, "user disabled")? } else { Vec::new() };
            ctx.invalidate()?;
            ctx.audit(with_ended(audit, ended))?;
            require_user(ctx.db(), &name)
        })
        .await
    }

    async fn delete_user(&self, name: &str, audit: AuditDraft) -> Result<()> {
        let name = name.to_string();
        self.write(move |ctx| {
            let user = require_user(ctx.db(), &name)?;
            let ended = revoke_everything_of(ctx, &user.id, &audit.actor, "user deleted")?;
            ctx.exec("DELETE FROM group_members WHERE principal_id = ?1", args![user.id])?;
            ctx.exec("DELETE FROM external_identities WHERE user_id = ?1", args![user.id])?;
            ctx.exec("DELETE FROM users WHERE id = ?1", args![user.id])?;
            ctx.invalidate()?;
            ctx.audit(with_ended(audit, ended))?;
            Ok(())
        })
        .await
    }

    async fn set_password(&self, name: &str, password_hash: String, audit: AuditDraft) -> Result<()> {
        let name = name.to_string();
        self.write(move |ctx| {
            let n = ctx.exec(
                "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE name = ?1",
                args![name, password_hash, ctx.now()],
            )?;
            affected_or_missing(n, "user", &name)?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn set_totp_pending(&self, user_id: &str, secret: String, audit: AuditDraft) -> Result<()> {
        let user_id = user_id.to_string();
        self.write(move |ctx| {
            let n = ctx.exec(
                "UPDATE users SET totp_secret = ?2, totp_confirmed = FALSE, totp_last_step = NULL, updated_at = ?3
                     WHERE id = ?1",
                args![user_id, secret, ctx.now()],
            )?;
            affected_or_missing(n, "user", &user_id)?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn confirm_totp(&self, user_id: &str, step: i64, audit: AuditDraft) -> Result<()> {
        let user_id = user_id.to_string();
        self.write(move |ctx| {
            let n = ctx.exec(
                "UPDATE users SET totp_confirmed = TRUE, totp_last_step = ?2, updated_at = ?3
                     WHERE id = ?1 AND totp_secret IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < ?2)",
                args![user_id, step, ctx.now()],
            )?;
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
                args![name, ctx.now()],
            )?;
            affected_or_missing(n, "user", &name)?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn create_group(&self, name: &str, description: &str, audit: AuditDraft) -> Result<Group> {
        let (name, description) = (name.to_string(), description.to_string());
        let id = latch_crypto::new_id("grp").map_err(|e| StoreError::Backend(e.to_string()))?;
        self.write(move |ctx| {
            let now = ctx.now();
            ctx.exec(
                "INSERT INTO groups (id, name, description, created_at) VALUES (?1, ?2, ?3, ?4)",
                args![id, name, description, now],
            )
            .map_err(|e| conflict(e, format!("group {name:?} already exists")))?;
            ctx.audit(audit)?;
            Ok(Group { id, name, description, created_at: now, members: Vec::new() })
        })
        .await
    }

    async fn get_group(&self, name: &str) -> Result<Option<Group>> {
        let name = name.to_string();
        self.read(move |c| {
            let g = map_opt(
                c,
                "SELECT id, name, description, created_at FROM groups WHERE name = ?1",
                args![&name],
                group_from_row,
            )?;
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
            map_rows(c, "SELECT id, name, description, created_at FROM groups ORDER BY name", args![], group_from_row)?
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
            let gid = group_id(ctx.db(), &name)?;
            ctx.exec("DELETE FROM group_members WHERE group_id = ?1", args![gid])?;
            ctx.exec("DELETE FROM groups WHERE id = ?1", args![gid])?;
            ctx.invalidate()?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn add_member(&self, group: &str, kind: PrincipalKind, member: &str, audit: AuditDraft) -> Result<()> {
        let (group, member) = (group.to_string(), member.to_string());
        self.write(move |ctx| {
            let gid = group_id(ctx.db(), &group)?;
            let pid = member_id(ctx.db(), kind, &member)?;
            let n = ctx.exec(
                "INSERT INTO group_members (group_id, principal_id, principal_kind, added_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (group_id, principal_id) DO NOTHING",
                args![gid, pid, kind.as_str(), ctx.now()],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("{member:?} is already a member of group {group:?}")));
            }
            ctx.invalidate()?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn remove_member(&self, group: &str, kind: PrincipalKind, member: &str, audit: AuditDraft) -> Result<()> {
        let (group, member) = (group.to_string(), member.to_string());
        self.write(move |ctx| {
            let gid = group_id(ctx.db(), &group)?;
            let pid = member_id(ctx.db(), kind, &member)?;
            let n = ctx.exec("DELETE FROM group_members WHERE group_id = ?1 AND principal_id = ?2", args![gid, pid])?;
            if n == 0 {
                return Err(StoreError::not_found("membership", format!("{member} in {group}")));
            }
            ctx.invalidate()?;
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
                "INSERT INTO service_principals (id, name, description, secret_hash, secret_rotated_at, created_at,
                                                 secret_lifetime_ms, secret_expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)",
                args![sp.id, sp.name, sp.description, sp.secret_hash, now, sp.secret_lifetime_ms, sp.secret_expires_at],
            )
            .map_err(|e| conflict(e, format!("service principal {:?} already exists", sp.name)))?;
            add_memberships(ctx, &sp.id, PrincipalKind::ServicePrincipal, &groups)?;
            ctx.audit(audit)?;
            require_sp(ctx.db(), &sp.id)
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
            map_rows(c, &sql, args![], sp_from_row)?
                .into_iter()
                .map(|mut s| {
                    s.groups = groups_of(c, &s.id)?;
                    Ok(s)
                })
                .collect()
        })
        .await
    }

    async fn rotate_sp_secret(&self, name: &str, r: SpSecretRotation, audit: AuditDraft) -> Result<ServicePrincipal> {
        let name = name.to_string();
        self.write(move |ctx| {
            let sp = require_sp(ctx.db(), &name)?;
            // The previous secret lives on only until the overlap ends, and
            // never past its own expiry.
            let previous = r.overlap_until.map(|until| {
                let until = sp.secret_expires_at.map_or(until, |e| e.min(until));
                (sp.secret_hash.clone(), until)
            });
            ctx.exec(
                "UPDATE service_principals SET secret_hash = ?2, secret_rotated_at = ?3, secret_expires_at = ?4,
                        secret_lifetime_ms = ?5, previous_secret_hash = ?6, previous_secret_expires_at = ?7
                  WHERE id = ?1",
                args![
                    sp.id,
                    r.secret_hash,
                    ctx.now(),
                    r.expires_at,
                    r.lifetime_ms.unwrap_or(sp.secret_lifetime_ms),
                    previous.as_ref().map(|p| p.0.clone()),
                    previous.as_ref().map(|p| p.1)
                ],
            )?;
            if previous.is_none() {
                revoke_sessions_of(ctx, &sp.id)?;
            }
            ctx.audit(audit)?;
            require_sp(ctx.db(), &sp.id)
        })
        .await
    }

    async fn set_sp_disabled(&self, name: &str, disabled: bool, audit: AuditDraft) -> Result<ServicePrincipal> {
        let name = name.to_string();
        self.write(move |ctx| {
            let sp = require_sp(ctx.db(), &name)?;
            ctx.exec("UPDATE service_principals SET disabled = ?2 WHERE id = ?1", args![sp.id, disabled])?;
            let ended = if disabled {
                revoke_everything_of(ctx, &sp.id, &audit.actor, "service principal disabled")?
            } else {
                Vec::new()
            };
            ctx.invalidate()?;
            ctx.audit(with_ended(audit, ended))?;
            require_sp(ctx.db(), &sp.id)
        })
        .await
    }

    async fn delete_sp(&self, name: &str, audit: AuditDraft) -> Result<()> {
        let name = name.to_string();
        self.write(move |ctx| {
            let sp = require_sp(ctx.db(), &name)?;
            let ended = revoke_everything_of(ctx, &sp.id, &audit.actor, "service principal deleted")?;
            ctx.exec("DELETE FROM group_members WHERE principal_id = ?1", args![sp.id])?;
            ctx.exec("DELETE FROM federations WHERE sp_id = ?1", args![sp.id])?;
            ctx.exec("DELETE FROM service_principals WHERE id = ?1", args![sp.id])?;
            ctx.invalidate()?;
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
                    args![s.principal_id, step],
                )?;
                if n == 0 {
                    return Err(StoreError::Precondition("this TOTP code was already used".into()));
                }
            }
            let session = insert_session(ctx, &s)?;
            if let Some(key) = &s.clears_failures {
                ctx.exec("DELETE FROM login_failures WHERE key = ?1", args![key])?;
            }
            ctx.audit(audit)?;
            Ok(session)
        })
        .await
    }

    async fn authenticate(&self, token_hash: &str, now: Timestamp) -> Result<Option<Principal>> {
        let ticket = match &self.cache {
            Some(cache) => {
                if let Some(p) = cache.session(token_hash, now) {
                    return Ok(Some(p));
                }
                cache.ticket()
            }
            None => None,
        };
        let key = token_hash.to_string();
        let found = self.read(move |c| resolve_session(c, &key, now)).await?;
        if let (Some(cache), Some(ticket), Some((p, expires_at))) = (&self.cache, ticket, &found) {
            cache.put_session(token_hash, ticket, p.clone(), *expires_at);
        }
        Ok(found.map(|(p, _)| p))
    }

    async fn login_failures(&self, keys: Vec<String>, since: Timestamp) -> Result<Vec<(String, Timestamp)>> {
        self.read(move |c| {
            let mut out = Vec::new();
            for k in &keys {
                out.extend(map_rows(
                    c,
                    "SELECT key, at FROM login_failures WHERE key = ?1 AND at >= ?2 ORDER BY at DESC LIMIT 1000",
                    args![k, since],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?);
            }
            Ok(out)
        })
        .await
    }

    async fn record_login_failure(&self, keys: Vec<String>, audit: AuditDraft) -> Result<AuditEvent> {
        self.write(move |ctx| {
            for k in &keys {
                ctx.exec("INSERT INTO login_failures (key, at) VALUES (?1, ?2)", args![k, ctx.now()])?;
            }
            ctx.audit(audit)
        })
        .await
    }

    async fn prune_login_failures(&self, before: Timestamp) -> Result<u64> {
        self.write(move |ctx| ctx.exec("DELETE FROM login_failures WHERE at < ?1", args![before])).await
    }

    async fn revoke_session(&self, session_id: &str, audit: AuditDraft) -> Result<()> {
        let session_id = session_id.to_string();
        self.write(move |ctx| {
            let n = ctx.exec(
                "UPDATE sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                args![session_id, ctx.now()],
            )?;
            affected_or_missing(n, "session", &session_id)?;
            crate::ops::child_tokens::revoke_descendants(ctx, &session_id)?;
            ctx.invalidate()?;
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
                 WHERE seq > ?1 AND (CAST(?2 AS TEXT) IS NULL OR actor = ?2) AND (CAST(?3 AS TEXT) IS NULL OR action = ?3)
                 ORDER BY seq LIMIT ?4"
            );
            let limit = i64::try_from(q.limit.clamp(1, 10_000)).unwrap_or(10_000);
            map_rows(c, &sql, args![q.since, q.actor, q.action, limit], audit_from_row)
        })
        .await
    }

    async fn audit_head(&self) -> Result<(i64, String)> {
        self.read(|c| crate::writer::load_head(c).map(|h| (h.seq, h.hash))).await
    }

    async fn stats(&self, now: Timestamp) -> Result<StoreStats> {
        self.collect_stats(now).await
    }

    async fn slo_data(&self, q: SloQuery) -> Result<SloData> {
        self.collect_slo(q).await
    }

    async fn list_checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.scan(|c| {
            map_rows(
                c,
                "SELECT seq, hash, time, key_id, signature FROM audit_checkpoints ORDER BY seq",
                args![],
                checkpoint_from_row,
            )
        })
        .await
    }

    async fn write_checkpoint(&self, key: Arc<SigningKey>) -> Result<Option<Checkpoint>> {
        self.write(move |ctx| {
            let (seq, hash) = ctx.head();
            if seq == 0 {
                return Ok(None);
            }
            if ctx.db().query_opt("SELECT seq FROM audit_checkpoints WHERE seq = ?1", args![seq])?.is_some() {
                return Ok(None);
            }
            let cp = Checkpoint::sign(&key, seq, hash, ctx.now());
            ctx.exec(
                "INSERT INTO audit_checkpoints (seq, hash, time, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
                args![cp.seq, &cp.hash, cp.time, &cp.key_id, &cp.signature],
            )?;
            Ok(Some(cp))
        })
        .await
    }

    fn backend_name(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite(_) => "sqlite",
            Engine::Postgres(_) => "postgres",
        }
    }

    fn is_leader(&self) -> bool {
        match &self.engine {
            Engine::Sqlite(_) => true,
            Engine::Postgres(e) => e.is_leader(),
        }
    }

    fn invalidation_epoch(&self) -> u64 {
        self.inv.epoch()
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c| c.query("SELECT 1", args![]).map(|_| ())).await
    }

    async fn is_empty(&self) -> Result<bool> {
        self.read(|c| Ok(c.query_opt("SELECT 1 FROM users LIMIT 1", args![])?.is_none())).await
    }
}
